#if canImport(Glibc)
import Glibc
#endif
import CNookSeccomp
import NookSpec
import NookSupport

/// Compiled seccomp programs kept between runs.
///
/// libseccomp takes tens of milliseconds to compile the default policy,
/// longer than the rest of a sandbox's start. The result depends only on the
/// rules, the libseccomp version and the architecture, so it is kept in
/// $XDG_RUNTIME_DIR/nook/seccomp (per boot, private to the user). Each file
/// holds the full text of what it was compiled from, compared byte for byte
/// on reading, so a name collision can never load another policy. A file
/// that is not the user's own, is writable by others, or is a symlink is
/// ignored and replaced.
enum SeccompCache {
    static func programs(for seccomp: Seccomp?) throws -> [[UInt8]] {
        guard let seccomp else { return [] }
        let key = keyText(seccomp)
        guard let dir = directory() else { return try SeccompFilters.compile(seccomp) }
        let path = dir + "/" + hexHash(key) + ".bpf"
        if let cached = read(path, key: key) {
            Log.debug("seccomp filter from cache", ["path": path])
            return cached
        }
        let programs = try SeccompFilters.compile(seccomp)
        write(path, key: key, programs: programs)
        return programs
    }

    /// Everything the compiled programs depend on, as text.
    static func keyText(_ s: Seccomp) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        nook_seccomp_version(&buf, Int32(buf.count))
        var text = "nook-seccomp 1\nlibseccomp \(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))\n"
        text += "native \(SeccompFilters.nativeArch)\n"
        text += "default \(s.defaultAction) \(s.defaultErrnoRet.map(String.init) ?? "-")\n"
        text += "arch \((s.architectures ?? []).joined(separator: " "))\n"
        for rule in s.syscalls ?? [] {
            text += "rule \(rule.action) \(rule.errnoRet.map(String.init) ?? "-") \(rule.names.joined(separator: ","))"
            for a in rule.args ?? [] { text += " [\(a.index) \(a.op) \(a.value) \(a.valueTwo.map(String.init) ?? "-")]" }
            text += "\n"
        }
        return text
    }

    static func directory() -> String? {
        let env = HostProbe.currentEnvironment()
        guard let runtime = env["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") else { return nil }
        var sb = stat()
        guard lstat(runtime, &sb) == 0, (sb.st_mode & S_IFMT) == S_IFDIR, sb.st_uid == getuid() else { return nil }
        var path = runtime
        for part in ["nook", "seccomp"] {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST { return nil }
            guard lstat(path, &sb) == 0, (sb.st_mode & S_IFMT) == S_IFDIR, sb.st_uid == getuid(),
                  sb.st_mode & 0o022 == 0 else { return nil }
        }
        return path
    }

    /// FNV-1a, 64 bits: only a file name; the key inside decides.
    static func hexHash(_ text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h &*= 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// File: key length (8 bytes), key, program count (8), then per program
    /// its length (8) and bytes.
    static func read(_ path: String, key: String) -> [[UInt8]]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_uid == getuid(), sb.st_mode & 0o022 == 0, sb.st_size < 4 << 20 else {
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(sb.st_size))
        guard pread(fd, &bytes, bytes.count, 0) == bytes.count else { return nil }
        var off = 0
        func number() -> Int? {
            guard off + 8 <= bytes.count else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[off + i]) << (8 * UInt64(i)) }
            off += 8
            return v < UInt64(bytes.count) ? Int(v) : nil
        }
        let keyBytes = Array(key.utf8)
        guard let keyLength = number(), keyLength == keyBytes.count, off + keyLength <= bytes.count,
              Array(bytes[off..<off + keyLength]) == keyBytes else { return nil }
        off += keyLength
        // A filter compiles to one or two programs, each ending in a return:
        // anything else (none at all would mean no filter) is not ours.
        guard let count = number(), (1...2).contains(count) else { return nil }
        var programs: [[UInt8]] = []
        for _ in 0..<count {
            guard let length = number(), length >= 16, length % 8 == 0, off + length <= bytes.count else { return nil }
            let program = Array(bytes[off..<off + length])
            guard program[length - 8] & 0x07 == 0x06 else { return nil }  // BPF_RET
            programs.append(program)
            off += length
        }
        return off == bytes.count ? programs : nil
    }

    static func write(_ path: String, key: String, programs: [[UInt8]]) {
        var out: [UInt8] = []
        func number(_ n: Int) { for i in 0..<8 { out.append(UInt8((UInt64(n) >> (8 * UInt64(i))) & 0xff)) } }
        let keyBytes = Array(key.utf8)
        number(keyBytes.count)
        out += keyBytes
        number(programs.count)
        for p in programs {
            number(p.count)
            out += p
        }
        let temp = path + ".\(getpid()).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let ok = out.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == out.count
        close(fd)
        if !ok || rename(temp, path) != 0 { unlink(temp) }
    }
}
