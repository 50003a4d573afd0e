#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import FoundationEssentials
import NookSupport

/// One thing that happened to a container, as `nook events` shows it.
public struct ContainerEvent: Codable, Equatable, Sendable {
    /// When, RFC 3339 with nanoseconds, UTC.
    public var time: String
    /// Always "container" (the only kind nook has).
    public var type = "container"
    /// create, start, health_status, oom, die, stop, kill, restart, remove.
    public var action: String
    public var id: String
    public var name: String
    /// The image, or the root for people ("host", a directory).
    public var image: String
    /// What the action adds: exitCode, signal, reason (die), healthStatus
    /// (health_status), signal (kill), count (oom).
    public var attributes: [String: String]

    public init(action: String, id: String, name: String, image: String, attributes: [String: String] = [:],
                time: String = Timestamp.now()) {
        self.time = time
        self.action = action
        self.id = id
        self.name = name
        self.image = image
        self.attributes = attributes
    }

    public static let actions = ["create", "start", "health_status", "oom", "die", "stop", "kill", "restart", "remove"]

    /// Seconds since the epoch.
    public var seconds: Double { Timestamp.parse(time) ?? 0 }

    /// `TIME container ACTION SHORTID (name=..., image=..., key=value, ...)`,
    /// the shape of `docker events`.
    public var line: String {
        let fields = [("name", name), ("image", image)] + attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return "\(time) \(type) \(action) \(id.prefix(12)) ("
            + fields.map { "\($0.0)=\(printable($0.1))" }.joined(separator: ", ") + ")"
    }

    func printable(_ s: String) -> String {
        String(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : Character($0) })
    }
}

/// The events of the user's containers, in `$XDG_RUNTIME_DIR/nook/events`:
///
///     events/log      one JSON object per line, oldest first
///     events/log.1    the file before, once log passed the limit
///     events/lock     taken to append (exclusive) and to read both (shared)
///
/// Written by the commands and monitors that cause them, each event one
/// write(2) of one line under the lock, so that concurrent writers never
/// interleave and a rotation never loses a line; at most twice `maxBytes`
/// are kept (a tmpfs, gone at logout like the containers). The directory
/// is masked in every sandbox with the rest of nook's runtime state.
public final class EventLog: @unchecked Sendable {
    public let path: String
    let dirFD: Int32
    let uid = getuid()
    public let maxBytes: Int

    public init(environment: [String: String], maxBytes: Int = 1 << 20) throws(ContainerFailure) {
        let runtime = ContainerStore.runtimeDirectory(environment)
        path = runtime + "/nook/events"
        self.maxBytes = maxBytes
        do {
            try PrivateDirectory.ensure(runtime + "/nook")
        } catch {
            throw ContainerFailure(error.description, hint: error.hint)
        }
        for dir in [path] where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw ContainerFailure("make the event directory \(dir): \(Errno.current)",
                                   hint: "XDG_RUNTIME_DIR (\(runtime)) must be a directory of yours")
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ContainerFailure("open the event directory \(path): \(Errno.current)") }
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_uid == uid, sb.st_mode & 0o022 == 0 else {
            close(fd)
            throw ContainerFailure("\(path) is not a private directory of yours (owner or mode changed)",
                                   hint: "remove it; it holds only past events")
        }
        dirFD = fd
    }

    deinit { close(dirFD) }

    /// Records an event. Never fails the caller: an event that cannot be
    /// written (a full or broken directory) is said at debug level and lost.
    public func append(_ event: ContainerEvent) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(event) else { return }
        let line = Array(data) + [10]
        do {
            let lock = try LockFile.exclusive(at: dirFD, "lock", what: path + "/lock", seconds: 5)
            defer { lock.release() }
            var fd = try openLog(create: true)
            var sb = stat()
            if fstat(fd, &sb) == 0, Int(sb.st_size) + line.count > maxBytes, sb.st_size > 0 {
                close(fd)
                _ = renameat(dirFD, "log", dirFD, "log.1")
                fd = try openLog(create: true)
            }
            defer { close(fd) }
            let n = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n != line.count { Log.debug("event not written", ["path": path + "/log", "errno": "\(Errno.current)"]) }
        } catch {
            Log.debug("event not written: \(error)", ["action": event.action])
        }
    }

    /// Opens `log` (or `log.1`) for appending or reading, refusing what
    /// nook would not have made there.
    func openLog(_ name: String = "log", create: Bool) throws(ContainerFailure) -> Int32 {
        let flags = create ? O_WRONLY | O_APPEND | O_CREAT : O_RDONLY | O_NONBLOCK
        let fd = openat(dirFD, name, flags | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ContainerFailure("open \(path)/\(name): \(Errno.current)",
                                   hint: errno == ELOOP ? "nook never follows links in its state; remove it" : nil)
        }
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_mode & S_IFMT == S_IFREG, sb.st_uid == uid, sb.st_mode & 0o022 == 0 else {
            close(fd)
            throw ContainerFailure("\(path)/\(name) is refused: not a private file of yours",
                                   hint: "remove it; it holds only past events")
        }
        return fd
    }

    /// Every event kept, oldest first.
    public func all() throws(ContainerFailure) -> [ContainerEvent] {
        let lock = try LockFile.shared(at: dirFD, "lock", what: path + "/lock")
        defer { lock.release() }
        return try allHoldingLock()
    }

    func allHoldingLock() throws(ContainerFailure) -> [ContainerEvent] {
        var events: [ContainerEvent] = []
        for name in ["log.1", "log"] {
            guard let fd = try? openLog(name, create: false) else { continue }
            defer { close(fd) }
            var reader = EventReader()
            events += reader.take(readAvailable(fd))
        }
        return events
    }

    /// A reader of `log` from its current end, for following: `next()`
    /// returns what was appended since (across a rotation too).
    public func tail() throws(ContainerFailure) -> EventTail {
        let lock = try LockFile.shared(at: dirFD, "lock", what: path + "/lock")
        defer { lock.release() }
        return try tailHoldingLock()
    }

    /// Every event kept and a tail from just after the last of them, taken
    /// together so that no event is missed or seen twice.
    public func replayAndTail() throws(ContainerFailure) -> ([ContainerEvent], EventTail) {
        let lock = try LockFile.shared(at: dirFD, "lock", what: path + "/lock")
        defer { lock.release() }
        return (try allHoldingLock(), try tailHoldingLock())
    }

    func tailHoldingLock() throws(ContainerFailure) -> EventTail {
        close(try openLog(create: true))
        let fd = try openLog(create: false)
        _ = lseek(fd, 0, SEEK_END)
        return EventTail(log: self, fd: fd)
    }

    func readAvailable(_ fd: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return bytes
    }

    /// The inode of `log` as it is now.
    func currentInode() -> UInt64? {
        var sb = stat()
        guard fstatat(dirFD, "log", &sb, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return UInt64(sb.st_ino)
    }
}

/// Follows the event log, as `tail -F` does: reads what the file it holds
/// gained, and when `log` was rotated away, the rest of the old file and
/// then the new one from its start.
public final class EventTail {
    let log: EventLog
    var fd: Int32
    var reader = EventReader()

    init(log: EventLog, fd: Int32) {
        self.log = log
        self.fd = fd
    }

    deinit { close(fd) }

    public func next() -> [ContainerEvent] {
        var events = reader.take(log.readAvailable(fd))
        var sb = stat()
        if fstat(fd, &sb) == 0, let now = log.currentInode(), now != UInt64(sb.st_ino),
           let fresh = try? log.openLog(create: false) {
            // Rotated: what the old file gained last, then the new file.
            events += reader.take(log.readAvailable(fd))
            close(fd)
            fd = fresh
            reader = EventReader()
            events += reader.take(log.readAvailable(fd))
        }
        return events
    }
}

/// Splits bytes into lines and decodes each; a line that is not an event
/// (cut short by a full disk, written by hand) is skipped.
struct EventReader {
    var pending: [UInt8] = []

    mutating func take(_ bytes: [UInt8]) -> [ContainerEvent] {
        pending += bytes
        var events: [ContainerEvent] = []
        var start = 0
        let decoder = JSONDecoder()
        while let newline = pending[start...].firstIndex(of: 10) {
            if let event = try? decoder.decode(ContainerEvent.self, from: Data(pending[start..<newline])) {
                events.append(event)
            }
            start = newline + 1
        }
        pending.removeFirst(start)
        return events
    }
}
