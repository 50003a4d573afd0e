/// What every nook error can say: a one-line description of what failed
/// (operation, path or id, what the kernel answered) and, where nook knows
/// one, what the user can do about it.
public protocol NookFailure: Error, CustomStringConvertible {
    var hint: String? { get }
    /// The exit status the CLI uses for this failure (125 unless it is the
    /// payload's own: 126 cannot execute, 127 not found).
    var exitCode: Int32 { get }
}

extension NookFailure {
    public var hint: String? { nil }
    public var exitCode: Int32 { 125 }
}

/// A failed system call made by nook itself, outside the sandbox.
public struct SystemFailure: NookFailure {
    public let operation: String
    public let path: String?
    public let errno: Errno
    public let hint: String?

    public init(_ operation: String, path: String? = nil, errno: Errno = .current, hint: String? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        if let path { return "\(operation) \(path): \(errno)" }
        return "\(operation): \(errno)"
    }
}

/// Bad input from the user: a flag, a value, a file.
public struct UsageFailure: NookFailure {
    public let message: String
    public let hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}

/// Another failure, with a hint nook found out afterwards, or with what
/// nook was doing when it happened put first.
public struct HintedFailure: NookFailure {
    public let underlying: any NookFailure
    public let hint: String?
    public let context: String?

    public init(_ underlying: any NookFailure, hint: String) {
        self.underlying = underlying
        self.hint = hint
        context = nil
    }

    /// "CONTEXT: what failed", with the failure's own hint.
    public init(_ underlying: any NookFailure, context: String) {
        self.underlying = underlying
        hint = underlying.hint
        self.context = context
    }

    public var description: String { (context.map { $0 + ": " } ?? "") + underlying.description }
    public var exitCode: Int32 { underlying.exitCode }
}

extension StringProtocol {
    /// The string without leading and trailing characters from `set`.
    public func trimming(_ set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// Bytes as a String only when they are valid UTF-8: nook never replaces
/// what it cannot decode, since a repaired name is another file's name.
public func strictUTF8<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
    String(validating: bytes, as: UTF8.self)
}

/// A C string as a String only when it is valid UTF-8.
public func strictUTF8(cString: UnsafePointer<CChar>) -> String? {
    var length = 0
    while cString[length] != 0 { length += 1 }
    return cString.withMemoryRebound(to: UInt8.self, capacity: length) {
        strictUTF8(UnsafeBufferPointer(start: $0, count: length))
    }
}

/// Bytes shown for an error message: printable ASCII as is, the rest as \xNN.
public func escapedBytes<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    bytes.map { $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }
        .joined()
}

#if canImport(Glibc)
import Glibc
#endif

/// A file's bytes, read whole (at most `limit` bytes; nil beyond that, or
/// when it cannot be read).
public func readFileBytes(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return readFileBytes(fd: fd, limit: limit)
}

/// What is left to read of an open descriptor (at most `limit` bytes).
public func readFileBytes(fd: Int32, limit: Int = 16 << 20) -> [UInt8]? {
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { return bytes }
        bytes += buf[0..<n]
        if bytes.count > limit { return nil }
    }
}

/// A text file (procfs, /etc/passwd, ...); bytes that are not UTF-8 are
/// replaced, which is fine for reading values but never for names.
public func readTextFile(_ path: String, limit: Int = 16 << 20) -> String? {
    readFileBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// The fields of /proc/PID/stat nook uses.
public enum ProcStat {
    public static func read(_ pid: Int32) -> (state: Character, parent: Int32, start: UInt64)? {
        guard let text = readTextFile("/proc/\(pid)/stat", limit: 4096),
              let close = text.lastIndex(of: ")") else { return nil }
        // After the command name (which may hold spaces and parentheses):
        // state (3), ppid (4), ... starttime (22).
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let parent = Int32(fields[1]),
              let start = UInt64(fields[19]) else { return nil }
        return (state, parent, start)
    }

    /// Whether the process exists and has not ended (a zombie has).
    public static func runs(_ pid: Int32) -> Bool {
        guard pid > 0, let s = read(pid) else { return false }
        return s.state != "Z" && s.state != "X"
    }
}
