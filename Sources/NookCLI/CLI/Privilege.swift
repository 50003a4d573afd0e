#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookRuntime
import NookSupport

/// nook is built to run without privileges. Installed setuid or with file
/// capabilities it would hand those to whoever runs it, through a program
/// that parses their input and mounts what they name (bubblewrap's setuid
/// mode: CVE-2020-5291, CVE-2016-8659). It refuses instead.
enum Privilege {
    static func refuseElevated() throws(UsageFailure) {
        let secure = nook_at_secure() != 0
        let uid = getuid()
        let elevatedIDs = uid != geteuid() || getgid() != getegid()
        let caps = uid != 0 ? permittedCapabilities() : 0
        guard !secure && !elevatedIDs && caps == 0 else {
            throw UsageFailure(
                "refusing to run with raised privileges (setuid, setgid or file capabilities on the nook binary)",
                hint: "nook needs none: install it as a plain executable (chmod u-s,g-s; setcap -r)")
        }
    }

    /// CapPrm of this process, from /proc/self/status.
    static func permittedCapabilities() -> UInt64 {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 8192)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return 0 }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("CapPrm:") {
            return UInt64(line.dropFirst(7).trimming(" \t"), radix: 16) ?? 0
        }
        return 0
    }
}

