#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// A detached container's output, one line per record in its directory's
/// `log` file, as the CRI logging format has it:
///
///     2026-12-04T20:31:07.123456789Z stdout F the line
///
/// F ends a line; P is a part of a longer one (lines are cut at 16 KiB, and
/// what is left when the stream ends). When `log` passes the size limit it
/// becomes `log.1` (the one before is dropped) and a new `log` starts, so
/// a container's logs never take more than twice the limit.
public final class LogWriter {
    let directory: Int32
    let maxBytes: Int
    private var fd: Int32 = -1
    private var size = 0
    private var pending: [Int: [UInt8]] = [:]
    static let maxLine = 16 << 10

    /// `directory` stays the caller's; the writer keeps a duplicate.
    public init(directory: Int32, maxBytes: Int) throws(SystemFailure) {
        self.directory = dup(directory)
        self.maxBytes = maxBytes
        try openLog()
    }

    deinit {
        if fd >= 0 { close(fd) }
        close(directory)
    }

    func openLog() throws(SystemFailure) {
        fd = openat(directory, "log", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemFailure("open the container's log") }
        var sb = stat()
        size = fstat(fd, &sb) == 0 ? Int(sb.st_size) : 0
    }

    /// Takes bytes read from stream 1 (stdout) or 2 (stderr).
    public func append(_ bytes: ArraySlice<UInt8>, stream: Int) {
        var buffer = (pending[stream] ?? []) + bytes
        var start = 0
        while let newline = buffer[start...].firstIndex(of: 10) {
            record(buffer[start..<newline], stream: stream, partial: false)
            start = newline + 1
        }
        while buffer.count - start >= Self.maxLine {
            record(buffer[start..<(start + Self.maxLine)], stream: stream, partial: true)
            start += Self.maxLine
        }
        buffer.removeFirst(start)
        pending[stream] = buffer
    }

    /// Writes what is left of a stream that has ended without a newline.
    public func flush() {
        // stdout first, then stderr: the same order every time.
        for stream in pending.keys.sorted() where !(pending[stream] ?? []).isEmpty {
            record((pending[stream] ?? [])[...], stream: stream, partial: true)
        }
        pending = [:]
    }

    func record(_ line: ArraySlice<UInt8>, stream: Int, partial: Bool) {
        let head = Array("\(Timestamp.now()) \(stream == 2 ? "stderr" : "stdout") \(partial ? "P" : "F") ".utf8)
        let bytes = head + line + [10]
        if size + bytes.count > maxBytes && size > 0 { rotate() }
        guard fd >= 0 else { return }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }  // a full disk loses log lines, never the container
            done += n
        }
        size += bytes.count
    }

    func rotate() {
        close(fd)
        fd = -1
        _ = renameat(directory, "log", directory, "log.1")
        try? openLog()
    }
}

/// Reads a container's log back, oldest first.
public enum LogReader {
    public struct Line: Sendable, Equatable {
        /// Seconds since the epoch.
        public var time: Double
        public var stream: Int
        public var partial: Bool
        public var text: ArraySlice<UInt8>
    }

    /// Parses one record; nil for a line that is not one.
    public static func parse(_ raw: ArraySlice<UInt8>) -> Line? {
        guard let s1 = raw.firstIndex(of: 32) else { return nil }
        let afterTime = raw.index(after: s1)
        guard let s2 = raw[afterTime...].firstIndex(of: 32) else { return nil }
        let flagAt = raw.index(after: s2)
        guard flagAt < raw.endIndex, raw.index(after: flagAt) <= raw.endIndex else { return nil }
        let stream: Int
        switch String(decoding: raw[afterTime..<s2], as: UTF8.self) {
        case "stdout": stream = 1
        case "stderr": stream = 2
        default: return nil
        }
        guard let time = Timestamp.parse(String(decoding: raw[raw.startIndex..<s1], as: UTF8.self)) else { return nil }
        let textStart = min(raw.endIndex, raw.index(flagAt, offsetBy: 2))
        return Line(time: time, stream: stream, partial: raw[flagAt] == UInt8(ascii: "P"), text: raw[textStart...])
    }
}

/// RFC 3339 times with nanoseconds, in UTC, without Foundation's formatters.
public enum Timestamp {
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return format(seconds: Int(ts.tv_sec), nanoseconds: Int(ts.tv_nsec))
    }

    public static func nowSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public static func format(seconds: Int, nanoseconds: Int = 0) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let nanos = String(nanoseconds)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 9 - nanos.count) + nanos + "Z"
    }

    /// Seconds since the epoch for an RFC 3339 time (section 5.6):
    /// `2026-12-04T20:31:07[.fraction]` and `Z` or an offset (`+01:00`,
    /// `-05:30`); `t` and `z` as well. nil for anything else, a field out
    /// of range included (month 13, February 30, hour 24, minute 60).
    public static func parse(_ text: String) -> Double? {
        let u = Array(text.utf8)
        func digits(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= u.count, u[r].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            return u[r].reduce(0) { $0 * 10 + Int($1 - 48) }
        }
        func at(_ i: Int, _ c: Character) -> Bool { i < u.count && u[i] == c.asciiValue }
        guard let year = digits(0..<4), at(4, "-"), let month = digits(5..<7), at(7, "-"), let day = digits(8..<10),
              at(10, "T") || at(10, "t"), let hour = digits(11..<13), at(13, ":"), let minute = digits(14..<16),
              at(16, ":"), let second = digits(17..<19) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        // 60: a leap second, as RFC 3339 allows; counted as the next second.
        guard (1...12).contains(month), (1...days[month - 1]).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }

        var i = 19
        var fraction = 0.0
        if at(i, ".") {
            let first = i + 1
            i = first
            while i < u.count, u[i] >= 48, u[i] <= 57 { i += 1 }
            guard i > first, let value = Double("0." + String(decoding: u[first..<i], as: UTF8.self)) else { return nil }
            fraction = value
        }
        var offset = 0
        if at(i, "Z") || at(i, "z") {
            i += 1
        } else if at(i, "+") || at(i, "-") {
            guard let hours = digits((i + 1)..<(i + 3)), at(i + 3, ":"), let minutes = digits((i + 4)..<(i + 6)),
                  hours < 24, minutes < 60 else { return nil }
            offset = (hours * 3600 + minutes * 60) * (at(i, "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == u.count else { return nil }

        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Double(timegm(&parts) - offset) + fraction
    }

    /// `5m`, `90s`, `2h`, `1h30m` ago, or an RFC 3339 time: seconds since
    /// the epoch; nil when it is neither.
    public static func since(_ text: String, now: Double = nowSeconds()) -> Double? {
        if let time = parse(text) { return time }
        var total = 0.0
        var number = ""
        for c in text {
            if c.isNumber || c == "." {
                number.append(c)
                continue
            }
            guard let value = Double(number) else { return nil }
            switch c {
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            case "d": total += value * 86400
            default: return nil
            }
            number = ""
        }
        guard number.isEmpty, !text.isEmpty else { return nil }
        return now - total
    }
}
