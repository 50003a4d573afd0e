// Limits as the two managers take them: properties of a systemd transient
// scope (systemd.resource-control(5), systemd.scope(5),
// org.freedesktop.systemd1(5) "StartTransientUnit") and cgroup v2 files
// (Documentation/admin-guide/cgroup-v2.rst).

import NookSpec

/// One property of a transient unit, typed as D-Bus carries it.
public enum UnitProperty: Equatable, Sendable {
    case bool(String, Bool)
    case u64(String, UInt64)
    case string(String, String)
    case u32s(String, [UInt32])
    case bytes(String, [UInt8])

    public var name: String {
        switch self {
        case .bool(let n, _), .u64(let n, _), .string(let n, _), .u32s(let n, _), .bytes(let n, _): n
        }
    }
}

public enum SystemdScope {
    /// systemd's "infinity" for every limit property: UINT64_MAX.
    public static let infinity = UInt64.max

    /// `nook-<id>.scope`.
    public static func unitName(id: String) -> String { "nook-\(id).scope" }

    /// The properties of the sandbox's scope: in `slice`, delegated (so the
    /// sandbox may make sub-cgroups of its own), holding `pid`, with
    /// accounting on (for --stats) and the limits asked for.
    public static func properties(_ limits: CgroupLimits, pid: UInt32, slice: String,
                                  description: String) -> [UnitProperty] {
        var p: [UnitProperty] = [
            .string("Description", description),
            .string("Slice", slice),
            .bool("Delegate", true),
            // A scope whose payload died of a signal is "failed"; without
            // this it would stay loaded until reset-failed.
            .string("CollectMode", "inactive-or-failed"),
            .u32s("PIDs", [pid]),
            .bool("MemoryAccounting", true),
            .bool("TasksAccounting", true),
            .bool("CPUAccounting", true),
        ]
        if let v = limits.memoryMax { p.append(.u64("MemoryMax", value(v))) }
        if let v = limits.memorySwapMax { p.append(.u64("MemorySwapMax", value(v))) }
        if let v = limits.memoryHigh { p.append(.u64("MemoryHigh", value(v))) }
        if let v = limits.tasksMax { p.append(.u64("TasksMax", value(v))) }
        if let v = limits.cpuQuotaPerSecUSec { p.append(.u64("CPUQuotaPerSecUSec", v)) }
        if let v = limits.cpuWeight { p.append(.u64("CPUWeight", v)) }
        if let v = limits.ioWeight {
            p.append(.bool("IOAccounting", true))
            p.append(.u64("IOWeight", v))
        }
        if let cpus = limits.allowedCPUs { p.append(.bytes("AllowedCPUs", cpuMask(cpus))) }
        return p
    }

    /// A limit as systemd takes it: `max` is infinity, a number is itself.
    public static func value(_ limit: LimitValue) -> UInt64 {
        switch limit {
        case .max: infinity
        case .value(let n): n
        }
    }

    /// A CPU set as systemd's "ay": byte i, bit j is CPU 8i+j.
    public static func cpuMask(_ cpus: [Int]) -> [UInt8] {
        guard let highest = cpus.max(), highest >= 0 else { return [] }
        var mask = [UInt8](repeating: 0, count: highest / 8 + 1)
        for cpu in cpus where cpu >= 0 { mask[cpu / 8] |= UInt8(1) << UInt8(cpu % 8) }
        return mask
    }
}

public enum CgroupFiles {
    /// The files of a cgroup v2 directory that carry `limits`, and what to
    /// write into each, in the order to write them.
    public static func writes(_ limits: CgroupLimits) -> [(file: String, value: String)] {
        var w: [(String, String)] = []
        // cpuset first: the others do not depend on it, and a bad list is
        // the likeliest refusal.
        if let cpus = limits.allowedCPUs {
            w.append(("cpuset.cpus", limits.allowedCPUsText ?? cpus.map(String.init).joined(separator: ",")))
        }
        if let v = limits.memoryMax { w.append(("memory.max", v.description)) }
        if let v = limits.memorySwapMax { w.append(("memory.swap.max", v.description)) }
        if let v = limits.memoryHigh { w.append(("memory.high", v.description)) }
        if let v = limits.tasksMax { w.append(("pids.max", v.description)) }
        if let v = limits.cpuQuotaPerSecUSec {
            let period = Resolver.cpuPeriod
            w.append(("cpu.max", "\(max(v * period / 1_000_000, 1000)) \(period)"))
        }
        if let v = limits.cpuWeight { w.append(("cpu.weight", String(v))) }
        if let v = limits.ioWeight { w.append(("io.weight", "default \(v)")) }
        return w
    }
}
