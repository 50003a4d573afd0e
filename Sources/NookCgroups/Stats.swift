// What a sandbox's cgroup counted, read from its cgroup v2 files
// (cgroup-v2.rst): memory.peak (Linux 5.19), memory.events oom_kill
// (hierarchical, so kills in sub-cgroups the sandbox made count too; the
// wrong counter or the wrong cgroup is containerd#6323), cpu.stat (present
// in every cgroup, controller or not) and pids.peak (Linux 6.1).

import NookSpec
import NookSupport

/// Counters of one cgroup; nil where the cgroup does not have the file.
public struct CgroupStats: Equatable, Sendable {
    public var memoryPeak: UInt64?
    public var oomKills: UInt64?
    public var cpuUsageUSec: UInt64?
    public var cpuUserUSec: UInt64?
    public var cpuSystemUSec: UInt64?
    public var pidsPeak: UInt64?

    public init() {}

    /// The counters of the cgroup directory `directory`.
    public static func read(directory: String) -> CgroupStats {
        var s = CgroupStats()
        s.memoryPeak = CgroupIO.read(directory + "/memory.peak").flatMap { UInt64($0.trimming(" \n")) }
        s.oomKills = CgroupIO.read(directory + "/memory.events").flatMap { keyed($0)["oom_kill"] }
        if let cpu = CgroupIO.read(directory + "/cpu.stat").map(keyed) {
            s.cpuUsageUSec = cpu["usage_usec"]
            s.cpuUserUSec = cpu["user_usec"]
            s.cpuSystemUSec = cpu["system_usec"]
        }
        s.pidsPeak = CgroupIO.read(directory + "/pids.peak").flatMap { UInt64($0.trimming(" \n")) }
        return s
    }

    /// `key value` lines, as memory.events and cpu.stat are written.
    public static func keyed(_ text: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let n = UInt64(parts[1]) { out[String(parts[0])] = n }
        }
        return out
    }
}

/// How the sandbox's cgroup ended, for the lines nook prints at exit.
public struct CgroupOutcome: Equatable, Sendable {
    /// Which manager held the sandbox.
    public var manager: CgroupManagerKind
    /// Why there were no statistics, when there was no cgroup.
    public var noCgroupReason: String?
    public var stats: CgroupStats?
    /// OOM kills during this run.
    public var oomKills: UInt64 = 0
    public var memoryLimit: LimitValue?

    public init(manager: CgroupManagerKind, noCgroupReason: String? = nil, stats: CgroupStats? = nil,
                oomKills: UInt64 = 0, memoryLimit: LimitValue? = nil) {
        self.manager = manager
        self.noCgroupReason = noCgroupReason
        self.stats = stats
        self.oomKills = oomKills
        self.memoryLimit = memoryLimit
    }

    /// The OOM line: an error when the payload itself was killed (it died
    /// of SIGKILL and the cgroup counted a kill), a warning when something
    /// else in the sandbox was and the payload went on. nil: no kill.
    public func oomReport(payloadKilled: Bool) -> (isPayload: Bool, text: String)? {
        guard oomKills > 0 else { return nil }
        var limit = ""
        if let memoryLimit, memoryLimit != .max { limit = "memory limit \(ByteCount.format(memoryLimit))" }
        if let peak = stats?.memoryPeak { limit += (limit.isEmpty ? "" : ", ") + "peak \(ByteCount.format(peak))" }
        let detail = limit.isEmpty ? "" : " (\(limit))"
        if payloadKilled {
            return (true, "the command was OOM-killed: it ran out of memory in its cgroup\(detail)")
        }
        let count = oomKills == 1 ? "a process" : "\(oomKills) processes"
        return (false, "\(count) in the sandbox OOM-killed\(detail); the command went on")
    }

    /// The `--stats` line.
    public var statsLine: String {
        guard let stats else {
            return "stats: not available: \(noCgroupReason ?? "the sandbox had no cgroup of its own")"
        }
        var parts: [String] = []
        if let peak = stats.memoryPeak {
            parts.append("memory peak \(ByteCount.format(peak))")
        } else {
            parts.append("memory peak n/a (no memory controller on the sandbox's cgroup)")
        }
        if let usage = stats.cpuUsageUSec {
            var cpu = "cpu \(Self.seconds(usage))"
            if let user = stats.cpuUserUSec, let system = stats.cpuSystemUSec {
                cpu += " (user \(Self.seconds(user)), system \(Self.seconds(system)))"
            }
            parts.append(cpu)
        } else {
            parts.append("cpu n/a")
        }
        if let peak = stats.pidsPeak {
            parts.append("pids peak \(peak)")
        } else {
            parts.append("pids peak n/a (no pids controller on the sandbox's cgroup)")
        }
        return "stats: " + parts.joined(separator: "; ")
    }

    /// `0.42 s`.
    static func seconds(_ usec: UInt64) -> String {
        let hundredths = (usec + 5000) / 10000
        let rest = hundredths % 100
        return "\(hundredths / 100).\(rest < 10 ? "0" : "")\(rest) s"
    }
}
