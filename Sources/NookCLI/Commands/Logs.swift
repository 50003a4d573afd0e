#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookState
import NookSupport

/// `nook logs`: what a detached container printed.
enum LogsCommand {
    static let usage = "nook logs [OPTIONS] CONTAINER"
    static let summary = "print a detached container's output"

    static let options: [OptionSpec] = [
        OptionSpec("follow", short: "f", "keep printing new output until the container stops"),
        OptionSpec("since", value: "WHEN", "only output after WHEN: a duration ago (90s, 5m, 2h, 1d) or a time "
            + "(2026-12-04T20:31:07Z)"),
        OptionSpec("timestamps", "start each line with the time it was printed"),
        OptionSpec("tail", value: "N", "only the last N lines (before following)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print what the container's command wrote: its stdout to stdout and its
        stderr to stderr (one stream with -t, where the terminal merges them), from
        the container's log, which keeps the newest output up to twice
        --log-max-size.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "logs", help: help) else { return 0 }
        guard parsed.positionals.count == 1 else { throw UsageFailure("logs: name one container", hint: usage) }
        var since: Double?
        if let text = parsed.value("since") {
            guard let t = Timestamp.since(text) else {
                throw UsageFailure("--since \(text): not a duration or a time", hint: "as in 90s, 5m, 2h, 1d or 2026-12-04T20:31:07Z")
            }
            since = t
        }
        var tail: Int?
        if let text = parsed.value("tail") {
            guard let n = Int(text), n >= 0 else { throw UsageFailure("--tail \(text): not a number of lines") }
            tail = n
        }
        let store = try Containers.store()
        let record = try Containers.find(parsed.positionals[0], in: store)
        let dir = try store.openDirectory(record.id)
        defer { close(dir) }
        let printer = Printer(timestamps: parsed.has("timestamps"), since: since)

        var lines: [LogReader.Line] = []
        for file in ["log.1", "log"] {
            guard let bytes = readLog(dir, file) else { continue }
            lines += parse(bytes[...]).lines
        }
        if let tail { lines = Array(lines.suffix(tail)) }
        for line in lines { printer.print(line) }
        guard parsed.has("follow") else { return 0 }
        try follow(record, store: store, dir: dir, printer: printer)
        return 0
    }

    /// Prints new records as they come, until the container has stopped
    /// (and is not about to restart) and the log has been read to its end.
    static func follow(_ record: ContainerRecord, store: ContainerStore, dir: Int32, printer: Printer) throws {
        var fd = openat(dir, "log", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        var inode = inodeOf(fd)
        if fd >= 0 { lseek(fd, 0, SEEK_END) }
        var carry: [UInt8] = []
        var current = record
        while true {
            var progressed = false
            if fd >= 0 {
                var buf = [UInt8](repeating: 0, count: 65536)
                let n = read(fd, &buf, buf.count)
                if n > 0 {
                    let (lines, rest) = parse((carry + buf[0..<n])[...])
                    carry = Array(rest)
                    for line in lines { printer.print(line) }
                    progressed = true
                }
            }
            if progressed { continue }
            // Rotated: the new file starts from its beginning.
            let fresh = openat(dir, "log", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            if fresh >= 0 && inodeOf(fresh) != inode {
                if fd >= 0 { close(fd) }
                // Rotated twice since the last look: the file between is
                // log.1 now, not yet read (a fresh try lost most lines of a
                // fast writer under a 4k limit). More than that is gone.
                let between = openat(dir, "log.1", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if between >= 0 {
                    if inodeOf(between) != inode, let bytes = readFileBytes(fd: between, limit: 1 << 30) {
                        let (lines, _) = parse((carry + bytes)[...])
                        for line in lines { printer.print(line) }
                        carry = []
                    }
                    close(between)
                }
                fd = fresh
                inode = inodeOf(fd)
                carry = []
                continue
            } else if fresh >= 0 {
                close(fresh)
            }
            guard let next = try? Containers.reconcile(try store.record(record.id), in: store) else { break }
            current = next
            if current.status == .stopped && !WaitCommand.isRestarting(current) { break }
            // Often: a log rotated more than twice between two looks is
            // lost (only log and log.1 are kept).
            usleep(20_000)
        }
        if fd >= 0 { close(fd) }
    }

    static func inodeOf(_ fd: Int32) -> UInt64 {
        var sb = stat()
        return fd >= 0 && fstat(fd, &sb) == 0 ? UInt64(sb.st_ino) : 0
    }

    static func readLog(_ dir: Int32, _ name: String) -> [UInt8]? {
        let fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readFileBytes(fd: fd, limit: 1 << 30)
    }

    /// Whole records, and the bytes after the last newline.
    static func parse(_ bytes: ArraySlice<UInt8>) -> (lines: [LogReader.Line], rest: ArraySlice<UInt8>) {
        var lines: [LogReader.Line] = []
        var start = bytes.startIndex
        while let newline = bytes[start...].firstIndex(of: 10) {
            if let line = LogReader.parse(bytes[start..<newline]) { lines.append(line) }
            start = newline + 1
        }
        return (lines, bytes[start...])
    }

    struct Printer {
        var timestamps: Bool
        var since: Double?

        func print(_ line: LogReader.Line) {
            if let since, line.time < since { return }
            var out: [UInt8] = []
            if timestamps { out += Array(Timestamp.format(seconds: Int(line.time), nanoseconds: 0).utf8) + [32] }
            out += line.text
            if !line.partial { out.append(10) }
            let fd: Int32 = line.stream == 2 ? 2 : 1
            var done = 0
            while done < out.count {
                let n = out[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                done += n
            }
        }
    }
}
