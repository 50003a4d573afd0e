#if canImport(Glibc)
import Glibc
#endif

/// nook's logger: one line per event on stderr, as text or JSON.
///
/// `error`: the operation failed. `warning`: nook fell back to something
/// weaker; says from what, to what, why, and how to get the better path.
/// `info`: what nook chose. `debug`: each step with its inputs.
/// `trace`: raw calls and bytes.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case error = 0, warning, info, debug, trace

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .error: "error"
        case .warning: "warning"
        case .info: "info"
        case .debug: "debug"
        case .trace: "trace"
        }
    }

    public init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = level
    }
}

public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// Process-wide logging configuration. Set once by the CLI before any work.
public enum Log {
    nonisolated(unsafe) public static var level: LogLevel = .warning
    nonisolated(unsafe) public static var format: LogFormat = .text
    nonisolated(unsafe) private static var warned: Set<String> = []
    /// When the process started logging; debug lines show time since then.
    nonisolated(unsafe) public static var start: timespec = {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return t
    }()

    static func elapsedMilliseconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec - start.tv_sec) * 1000 + Double(now.tv_nsec - start.tv_nsec) / 1_000_000
    }

    public static func error(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        emit(.error, message, fields)
    }

    public static func warning(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        emit(.warning, message, fields)
    }

    /// A warning printed at most once per process for a given key.
    public static func warnOnce(key: String, _ message: String) {
        guard !warned.contains(key) else { return }
        warned.insert(key)
        emit(.warning, message, [:])
    }

    public static func info(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        emit(.info, message, fields)
    }

    public static func debug(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard level >= .debug else { return }
        emit(.debug, message(), fields)
    }

    public static func trace(_ message: @autoclosure () -> String) {
        guard level >= .trace else { return }
        emit(.trace, message(), [:])
    }

    static func emit(_ at: LogLevel, _ message: String, _ fields: KeyValuePairs<String, String>) {
        guard at <= level else { return }
        var line: String
        switch format {
        case .text:
            line = at == .error ? "nook: \(message)" : "nook: \(at.name): \(message)"
            if at >= .debug {
                let ms = (elapsedMilliseconds() * 10).rounded() / 10
                line = "nook: \(at.name) +\(ms)ms: \(message)"
            }
            for (k, v) in fields { line += " \(k)=\(quoteIfNeeded(v))" }
        case .json:
            line = "{\"level\":\(jsonString(at.name)),\"msg\":\(jsonString(message))"
            for (k, v) in fields { line += ",\(jsonString(k)):\(jsonString(v))" }
            line += "}"
        }
        writeStderr(line + "\n")
    }

    static func quoteIfNeeded(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || s.isEmpty ? jsonString(s) : s
    }
}

/// Writes a whole string to stderr, retrying on EINTR and short writes.
public func writeStderr(_ s: String) {
    writeAll(2, s)
}

/// Writes to stdout; the first failure is kept for `StandardOutput.failure`.
public func writeStdout(_ s: String) {
    if let e = writeAll(1, s), StandardOutput.failure == nil { StandardOutput.failure = e }
}

/// What went wrong writing nook's own output (a full disk, a closed pipe):
/// a command whose output was lost must not exit 0 as if it had said it.
public enum StandardOutput {
    nonisolated(unsafe) public static var failure: Errno?
}

/// Writes all of `s`, retrying on EINTR and short writes; the errno when
/// it could not.
@discardableResult
public func writeAll(_ fd: Int32, _ s: String) -> Errno? {
    var bytes = Array(s.utf8)
    return bytes.withUnsafeMutableBytes { buf -> Errno? in
        var off = 0
        while off < buf.count {
            let n = write(fd, buf.baseAddress! + off, buf.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                return Errno.current
            }
            if n == 0 { return Errno(EIO) }
            off += n
        }
        return nil
    }
}

/// A JSON string literal for s.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Seconds on CLOCK_MONOTONIC, which wall-clock changes do not move.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
