import NookSpec
import NookSupport

/// What nook knows about one detached container, as stored in its
/// state.json. Written only by nook (the CLI that created it, its monitor,
/// and stop/rm), always whole and atomically; read back with every field
/// checked, since a file is input even when nook wrote it.
public struct ContainerRecord: Codable, Equatable, Sendable {
    public static let currentVersion = 1

    public enum Status: String, Codable, Sendable {
        /// Made, its monitor starting it.
        case created
        case running
        /// Ended (or never started); `exit` says how.
        case stopped
    }

    /// How the container's command ended.
    public struct Exit: Codable, Equatable, Sendable {
        /// The shell's convention: the exit status, or 128 + the signal.
        public var code: Int32
        /// The signal that ended it, if one did.
        public var signal: Int32?
        /// The OOM killer ended it (code 137).
        public var oomKilled: Bool
        /// In words: "exited", "killed by signal 9", "start failed: ...",
        /// "the monitor was killed", ...
        public var reason: String
        /// Its monitor died before it could record how the command ended
        /// (and took the command with it); nil in records of older nooks.
        public var monitorLost: Bool?

        public init(code: Int32, signal: Int32? = nil, oomKilled: Bool = false, reason: String,
                    monitorLost: Bool? = nil) {
            self.code = code
            self.signal = signal
            self.oomKilled = oomKilled
            self.reason = reason
            self.monitorLost = monitorLost
        }
    }

    public var version = ContainerRecord.currentVersion
    /// 64 lowercase hex digits; its first 12 are the short id.
    public var id: String
    public var name: String
    /// Seconds since the epoch.
    public var created: Double
    /// The image it runs, or nil for a directory or the host's root.
    public var image: String?
    /// The root, for people: an image name, a directory, or "host".
    public var root: String
    /// The container's command as the spec gives it.
    public var command: [String]
    /// `nook run`'s own arguments (without -d), which the monitor runs and
    /// `nook generate systemd` writes into a unit.
    public var runArguments: [String]
    /// The directory `nook run` was started in (relative paths of the
    /// arguments are relative to it).
    public var directory: String
    public var status: Status = .created
    /// The monitor: the nook process that runs the container and records
    /// how it ends.
    public var monitor: ProcessRef?
    /// The sandbox's init (pid 1 inside), while it runs.
    public var initProcess: ProcessRef?
    public var started: Double?
    public var finished: Double?
    public var exit: Exit?
    /// Set by stop, rm and kill -s KILL: the monitor does not restart it.
    public var stopRequested = false
    /// The signal `nook stop` sends first, and how long it waits.
    public var stopSignal: Int32 = 15
    public var stopTimeout: Int = 10
    public var restartPolicy = RestartPolicy.no
    public var restarts = 0
    /// The cgroup directory the container's processes are in, and its
    /// systemd scope, while it runs.
    public var cgroup: String?
    public var scope: String?
    /// The cgroup manager its first start used (systemd, cgroupfs, none):
    /// a restart uses the same one, so a user manager slow to answer then
    /// fails the restart instead of leaving the container without its
    /// cgroup and limits.
    public var cgroupManager: String?
    /// Whether the container has a terminal of its own (-t).
    public var terminal = false
    /// Remove the container once it has stopped (--rm).
    public var autoRemove = false
    /// The largest a log file grows before it is rotated, in bytes.
    public var logMaxBytes = 10 << 20
    /// The health check the monitor runs, resolved when the container was
    /// made (the flags, the profile's [health], the image's Healthcheck).
    public var healthcheck: HealthCheck?
    /// Where its health stands and the last checks, while it has a check.
    public var health: HealthRecord?
    /// Annotations of the resolved spec worth showing (root kind, overlay).
    public var annotations: [String: String] = [:]

    public init(id: String, name: String, created: Double, image: String?, root: String, command: [String],
                runArguments: [String], directory: String) {
        self.id = id
        self.name = name
        self.created = created
        self.image = image
        self.root = root
        self.command = command
        self.runArguments = runArguments
        self.directory = directory
    }

    public var shortID: String { String(id.prefix(12)) }

    /// The most a count (restarts, failed checks in a row) reaches; past
    /// it a count stays, so that adding one never overflows, and a record
    /// with more is refused. A check a millisecond would take 30 years.
    public static let maximumCount = 1 << 40

    /// Checks every field a command acts on; the reason when one is wrong.
    func problem(directoryName: String) -> String? {
        guard version == Self.currentVersion else { return "version \(version), this nook reads \(Self.currentVersion)" }
        guard ContainerStore.isID(id) else { return "its id is not 64 hexadecimal digits" }
        guard id == directoryName else { return "it names container \(id) but lies in \(directoryName)" }
        if let reason = ContainerStore.nameProblem(name) { return "its name: \(reason)" }
        for (what, ref) in [("monitor", monitor), ("init", initProcess)] {
            if let ref, ref.pid <= 1 { return "its \(what) pid \(ref.pid) is not a process nook starts" }
        }
        guard (1...64).contains(stopSignal) else { return "its stop signal \(stopSignal) is not a signal" }
        guard (0...86_400).contains(stopTimeout) else { return "its stop timeout \(stopTimeout) is out of range" }
        guard logMaxBytes >= 4096 else { return "its log size limit \(logMaxBytes) is too small" }
        guard directory.hasPrefix("/") else { return "its directory \(directory) is not absolute" }
        if let cgroup {
            guard cgroup.hasPrefix("/sys/fs/cgroup/"), !cgroup.split(separator: "/").contains("..") else {
                return "its cgroup \(cgroup) is not under /sys/fs/cgroup"
            }
        }
        if let scope, !(scope.hasPrefix("nook-") && scope.hasSuffix(".scope")) || scope.contains("/") {
            return "its scope \(scope) is not one nook makes"
        }
        guard (0...Self.maximumCount).contains(restarts) else { return "its restart count \(restarts) is out of range" }
        if let problem = healthcheck?.problem { return "its health check: \(problem)" }
        if let health, !(0...Self.maximumCount).contains(health.failingStreak) || health.log.count > HealthRecord.kept {
            return "its health record is out of range"
        }
        return nil
    }
}

/// `--restart`: whether the monitor starts the command again when it ends.
public enum RestartPolicy: Codable, Equatable, Sendable, CustomStringConvertible {
    case no
    case always
    /// Only after a non-zero exit, at most `maximum` times (nil: no limit).
    case onFailure(maximum: Int?)

    public init(parsing text: String) throws(UsageFailure) {
        switch text {
        case "no": self = .no
        case "always": self = .always
        case "on-failure": self = .onFailure(maximum: nil)
        default:
            if text.hasPrefix("on-failure:"), let n = Int(text.dropFirst(11)), n > 0, n <= 1_000_000 {
                self = .onFailure(maximum: n)
                return
            }
            throw UsageFailure("--restart \(text): not a restart policy",
                               hint: "no, always, on-failure or on-failure:N (N > 0)")
        }
    }

    public var description: String {
        switch self {
        case .no: "no"
        case .always: "always"
        case .onFailure(let n): n.map { "on-failure:\($0)" } ?? "on-failure"
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            self = try RestartPolicy(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not a restart policy: \(text)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Whether to start again after an exit with `code`, `restarts` done.
    public func restarts(after code: Int32, done restarts: Int) -> Bool {
        switch self {
        case .no: false
        case .always: true
        case .onFailure(let maximum): code != 0 && restarts < (maximum ?? Int.max)
        }
    }
}

/// The health of a container with a check, as docker keeps it: the
/// status, the failures in a row, and the last checks.
public struct HealthRecord: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case starting, healthy, unhealthy
    }

    public struct Check: Codable, Equatable, Sendable {
        public var start: Double
        public var end: Double
        /// The check's exit status; -1 when it timed out or could not run.
        public var exitCode: Int32
        /// What the check printed (stdout and stderr), at most 4 KiB.
        public var output: String

        public init(start: Double, end: Double, exitCode: Int32, output: String) {
            self.start = start
            self.end = end
            self.exitCode = exitCode
            self.output = output
        }

        public var passed: Bool { exitCode == 0 }
    }

    /// Checks kept in the log, and bytes of output per check.
    public static let kept = 5
    public static let outputLimit = 4096

    public var status: Status = .starting
    public var failingStreak = 0
    /// The last five checks, oldest first.
    public var log: [Check] = []

    public init() {}

    /// Takes one check's result; true when the status changed. A pass
    /// makes it healthy. A failure counts unless the container is still
    /// starting (no check has passed) within the start period since
    /// `started`; `retries` counted failures make it unhealthy.
    public mutating func add(_ check: Check, retries: Int, startPeriod: Double, started: Double?) -> Bool {
        let before = status
        log.append(check)
        if log.count > Self.kept { log.removeFirst(log.count - Self.kept) }
        if check.passed {
            failingStreak = 0
            status = .healthy
        } else {
            let grace = status == .starting && check.start - (started ?? check.start) < startPeriod
            if !grace {
                failingStreak = min(failingStreak, ContainerRecord.maximumCount - 1) + 1
                if failingStreak >= retries { status = .unhealthy }
            }
        }
        return status != before
    }
}
