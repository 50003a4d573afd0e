#if canImport(Glibc)
import Glibc
#endif
import CNookSeccomp
import CNookSys
import NookSupport

/// A path as a process of the sandbox names it, looked at from nook's
/// side (for root emulation's chown and for --explain): resolved the way
/// the process would, inside its own root, never against the host's.
enum ProcessPaths {
    /// The path argument at `address` of `pid`, as raw bytes (a name need
    /// not be UTF-8); ENAMETOOLONG past PATH_MAX, EFAULT when unreadable.
    static func argument(pid: Int32, address: UInt64) -> Result<[UInt8], Errno> {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = nook_read_remote_string(pid, address, &buf, Int32(buf.count))
        guard length >= 0 else { return .failure(Errno(EFAULT)) }
        guard Int(length) < Int(PATH_MAX) else { return .failure(Errno(ENAMETOOLONG)) }
        return .success(buf[0..<Int(length)].map { UInt8(bitPattern: $0) })
    }

    /// Opens (O_PATH) what `pid` names by `path` relative to `dirfd` (its
    /// descriptor, or AT_FDCWD), inside its root: a chroot the process made
    /// is its root, `/proc/self` is the process itself.
    static func open(pid: Int32, dirfd: Int32, path: [UInt8], follow: Bool) -> Result<Int32, Errno> {
        let rootLink = linkBytes("/proc/\(pid)/root") ?? [47]
        var absolute = path
        if path.first != 47 {
            let base = dirfd == AT_FDCWD ? "/proc/\(pid)/cwd" : "/proc/\(pid)/fd/\(dirfd)"
            guard var dir = linkBytes(base), dir.first == 47 else {
                return .failure(Errno(dirfd == AT_FDCWD ? ENOENT : EBADF))
            }
            // The link names the directory from the mount namespace's root;
            // inside a chroot, the process names it from the chroot.
            if rootLink != [47] {
                if dir == rootLink { dir = [47] } else if dir.starts(with: rootLink + [47]) { dir.removeFirst(rootLink.count) }
            }
            absolute = (dir == [47] ? [] : dir) + [47] + path
        }
        absolute = selfMapped(absolute, pid: pid)
        let root = Glibc.open("/proc/\(pid)/root", Int32(NOOK_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { return .failure(Errno(ESRCH)) }
        defer { close(root) }
        let flags = UInt64(Int32(NOOK_O_PATH) | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW))
        let fd = (absolute.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { p in
            nook_openat2(root, p.baseAddress, flags, 0, UInt64(NOOK_RESOLVE_IN_ROOT | NOOK_RESOLVE_NO_MAGICLINKS))
        }
        return fd >= 0 ? .success(fd) : .failure(Errno(-fd))
    }

    /// `/proc/self/...` and `/proc/thread-self/...` as the process's own
    /// entry: resolved from nook, those links would name nook.
    static func selfMapped(_ path: [UInt8], pid: Int32) -> [UInt8] {
        for prefix in ["/proc/self", "/proc/thread-self"] {
            let p = Array(prefix.utf8)
            guard path == p || path.starts(with: p + [47]), let inner = namespacePid(pid) else { continue }
            return Array("/proc/\(inner)".utf8) + path.dropFirst(p.count)
        }
        return path
    }

    /// The process's pid in its own (innermost) pid namespace.
    static func namespacePid(_ pid: Int32) -> Int32? {
        guard let status = readTextFile("/proc/\(pid)/status", limit: 65536) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("NSpid:") {
            return line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { Int32($0) }
        }
        return nil
    }

    static func linkBytes(_ path: String) -> [UInt8]? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return buf[0..<n].map { UInt8(bitPattern: $0) }
    }
}
