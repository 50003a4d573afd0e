#if canImport(Glibc)
import Glibc
#endif

/// Where the running nook is installed, for what it ships beside itself.
public enum Installation {
    /// The running executable, from /proc/self/exe.
    public static func executable() -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// PREFIX/share/nook/profiles for an executable in PREFIX/bin.
    public static func stockProfiles(executable: String) -> String {
        let prefix = executable.split(separator: "/").dropLast(2).joined(separator: "/")
        return "/" + prefix + (prefix.isEmpty ? "" : "/") + "share/nook/profiles"
    }
}
