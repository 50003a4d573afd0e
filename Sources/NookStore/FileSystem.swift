#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSupport

/// Descriptor-relative file operations for the store. Inside a layer every
/// path is resolved with openat2(2) RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
/// so a name can neither climb out of the directory nor pass through a
/// symlink, whatever an earlier entry or layer put there.
enum FS {
    /// openat2 resolve flags for every lookup inside a layer or the store.
    static let beneath = UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS | NOOK_RESOLVE_NO_MAGICLINKS
        | NOOK_RESOLVE_NO_XDEV)

    /// Opens `path` below `dirfd`: a descriptor, or -errno. An empty path
    /// opens `dirfd`'s directory itself.
    static func openBeneath(_ dirfd: Int32, _ path: String, _ flags: Int32, mode: mode_t = 0) -> Int32 {
        nook_openat2(dirfd, path.isEmpty ? "." : path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode),
                     beneath)
    }

    /// Opens a path the user gave or the store's own, following symlinks in
    /// it as the user's shell would.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0, what: String = "open") throws(SystemFailure) -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemFailure(what, path: path) }
        return fd
    }

    /// Everything readable from fd, up to max bytes (more is an error).
    static func readAll(_ fd: Int32, max: Int, path: String) throws(StoreError) -> [UInt8] {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw .system(SystemFailure("read", path: path)) }
            if n == 0 { return bytes }
            bytes += buf[0..<n]
            if bytes.count > max {
                throw .invalidImage(source: path, message: "larger than \(Size.text(UInt64(max))), more than such a file holds")
            }
        }
    }

    static func readFile(_ path: String, max: Int) throws(StoreError) -> [UInt8] {
        let fd: Int32
        do { fd = try open(path, O_RDONLY) } catch { throw .system(error) }
        defer { close(fd) }
        return try readAll(fd, max: max, path: path)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(SystemFailure) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SystemFailure("write", path: path) }
            off += n
        }
    }

    /// Replaces `path` with `bytes` all at once: a temporary file in the same
    /// directory, flushed, then renamed over it. A reader sees the old or the
    /// new content, never part of either, even if nook is killed midway.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(SystemFailure) {
        let temp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try open(temp, O_WRONLY | O_CREAT | O_EXCL, mode: mode, what: "create")
        do throws(SystemFailure) {
            defer { close(fd) }
            try writeAll(fd, bytes, path: temp)
            guard fsync(fd) == 0 else { throw SystemFailure("flush", path: temp) }
        } catch {
            unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else {
            let failure = SystemFailure("rename \(temp) to", path: path)
            unlink(temp)
            throw failure
        }
    }

    /// Creates a directory and its missing parents with `mode`.
    static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(SystemFailure) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, mode) != 0 && errno != EEXIST { throw SystemFailure("create directory", path: prefix) }
        }
    }

    static func exists(_ path: String) -> Bool {
        var sb = stat()
        return lstat(path, &sb) == 0
    }

    /// `stat` of `name` in `dirfd` without following a final symlink.
    static func kind(_ dirfd: Int32, _ name: String) -> mode_t? {
        var sb = stat()
        guard fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return sb.st_mode
    }

    /// The names in a directory (without `.` and `..`), sorted.
    static func list(_ path: String) -> [String] {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        return list(fd: fd)
    }

    /// The names in the directory open as fd, which this closes.
    static func list(fd: Int32) -> [String] {
        guard let dir = fdopendir(fd) else {
            close(fd)
            return []
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes `name` in `dirfd` and, if it is a directory, everything in it,
    /// never following a symlink and holding one directory open at a time
    /// (a hostile layer may nest deeper than the open-file limit).
    static func removeTree(_ dirfd: Int32, _ name: String) throws(SystemFailure) {
        guard let mode = kind(dirfd, name) else {
            if errno == ENOENT { return }
            throw SystemFailure("remove", path: name)
        }
        guard mode & S_IFMT == S_IFDIR else {
            guard unlinkat(dirfd, name, 0) == 0 || errno == ENOENT else { throw SystemFailure("remove", path: name) }
            return
        }
        var pending = [name]
        var directories: [String] = []
        while let relative = pending.popLast() {
            directories.append(relative)
            var fd = openBeneath(dirfd, relative, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            if fd == -EACCES {
                // Outside a user namespace a directory of the user's own may
                // lack search or write permission (a 0555 layer directory).
                _ = fchmodat(dirfd, relative, 0o700, 0)
                fd = openBeneath(dirfd, relative, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            }
            guard fd >= 0 else { throw SystemFailure("open", path: relative, errno: Errno(-fd)) }
            if faccessat(fd, ".", W_OK, AT_EACCESS) != 0 { _ = fchmod(fd, 0o700) }
            for child in list(fd: dup(fd)) {
                let m = kind(fd, child) ?? 0
                if m & S_IFMT == S_IFDIR {
                    pending.append(relative + "/" + child)
                } else if unlinkat(fd, child, 0) != 0 && errno != ENOENT {
                    let failure = SystemFailure("remove", path: relative + "/" + child)
                    close(fd)
                    throw failure
                }
            }
            close(fd)
        }
        for relative in directories.reversed() {
            let (parent, last) = split(relative)
            let pfd = parent.isEmpty ? dup(dirfd) : openBeneath(dirfd, parent, NOOK_O_PATH | O_DIRECTORY | O_NOFOLLOW)
            guard pfd >= 0 else { throw SystemFailure("open", path: parent, errno: Errno(pfd < 0 ? -pfd : errno)) }
            defer { close(pfd) }
            guard unlinkat(pfd, last, AT_REMOVEDIR) == 0 || errno == ENOENT else {
                throw SystemFailure("remove directory", path: relative)
            }
        }
    }

    /// "a/b/c" -> ("a/b", "c"); "c" -> ("", "c").
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }
}
