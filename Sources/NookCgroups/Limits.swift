// What a sandbox's cgroup is asked for, read back from the spec
// (linux.resources and nook's cgroup annotations), in the terms both cgroup
// managers apply: cgroup v2 files and systemd unit properties.
//
// A bundle's v1-shaped fields are converted the way runc converts them for
// cgroup v2 (libcontainer/cgroups: ConvertCPUSharesToCgroupV2Value,
// ConvertBlkIOToIOWeightValue, memory.swap as memory+swap).

import NookSpec
import NookSupport

/// A cgroup limit nook could not take or apply, with what to do.
public struct CgroupFailure: NookFailure, Equatable {
    public let message: String
    public let hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}

/// The limits of a sandbox's cgroup. `.max` is "no limit" all the way to
/// the kernel ("max") and systemd (infinity), never 0 or 1.
public struct CgroupLimits: Equatable, Sendable {
    /// Bytes (memory.max, MemoryMax).
    public var memoryMax: LimitValue?
    /// Bytes of swap on top of memory (memory.swap.max, MemorySwapMax).
    public var memorySwapMax: LimitValue?
    /// Bytes above which the sandbox is throttled (memory.high, MemoryHigh).
    public var memoryHigh: LimitValue?
    /// Processes and threads (pids.max, TasksMax).
    public var tasksMax: LimitValue?
    /// Microseconds of CPU time per second (CPUQuotaPerSecUSec): 1.5 CPUs
    /// is 1_500_000.
    public var cpuQuotaPerSecUSec: UInt64?
    /// 1..10000 (cpu.weight, CPUWeight).
    public var cpuWeight: UInt64?
    /// 1..10000 (io.weight, IOWeight).
    public var ioWeight: UInt64?
    /// The CPUs the sandbox may run on (cpuset.cpus, AllowedCPUs).
    public var allowedCPUs: [Int]?
    /// The list as it was written, for messages.
    public var allowedCPUsText: String?

    public init() {}

    /// The limits in `resources`; nil resources is no limit at all.
    public init(_ resources: LinuxResources?) throws(CgroupFailure) {
        guard let resources else { return }
        let unified = resources.unified ?? [:]
        for key in unified.keys where !Self.unifiedKeys.contains(key) {
            throw CgroupFailure("linux.resources.unified: nook does not apply \(key)",
                                hint: "nook applies " + Self.unifiedKeys.sorted().joined(separator: ", "))
        }
        func fromUnified(_ key: String) throws(CgroupFailure) -> LimitValue? {
            guard let text = unified[key] else { return nil }
            guard let value = LimitParser.count(text) else {
                throw CgroupFailure("linux.resources.unified \(key) = \(text): not a number or max")
            }
            return value
        }
        func weight(_ key: String) throws(CgroupFailure) -> UInt64? {
            guard let text = unified[key] else { return nil }
            let number = text.hasPrefix("default ") ? String(text.dropFirst(8)) : text
            guard let w = UInt64(number), (1...10000).contains(w) else {
                throw CgroupFailure("linux.resources.unified \(key) = \(text): a weight is 1 to 10000")
            }
            return w
        }

        let memory = resources.memory
        if let limit = memory?.limit, limit != 0 { memoryMax = limit < 0 ? .max : .value(UInt64(limit)) }
        memorySwapMax = try fromUnified("memory.swap.max")
        if memorySwapMax == nil, let swap = memory?.swap, swap != 0 {
            // The v1 meaning: memory plus swap.
            if swap < 0 {
                memorySwapMax = .max
            } else if let limit = memory?.limit, limit > 0, swap >= limit {
                memorySwapMax = .value(UInt64(swap - limit))
            } else {
                throw CgroupFailure("linux.resources.memory.swap \(swap): memory+swap needs a memory limit below it")
            }
        }
        memoryHigh = try fromUnified("memory.high")
        if let pids = resources.pids?.limit, pids != 0 { tasksMax = pids < 0 ? .max : .value(UInt64(pids)) }
        tasksMax = try fromUnified("pids.max") ?? tasksMax
        if let cpu = resources.cpu {
            if let quota = cpu.quota, quota > 0 {
                let period = cpu.period ?? Resolver.cpuPeriod
                guard period >= 1000 else {
                    throw CgroupFailure("linux.resources.cpu.period \(period): below the kernel's 1000 µs")
                }
                cpuQuotaPerSecUSec = UInt64(quota) * 1_000_000 / period
            }
            if let shares = cpu.shares, shares > 0 {
                let clamped = min(max(shares, 2), 262_144)
                cpuWeight = 1 + ((clamped - 2) * 9999) / 262_142
            }
            if let list = cpu.cpus, !list.isEmpty {
                guard let cpus = LimitParser.cpuList(list) else {
                    throw CgroupFailure("linux.resources.cpu.cpus \(list): not a CPU list", hint: "write it as 0-3 or 0,2")
                }
                allowedCPUs = cpus
                allowedCPUsText = list
            }
        }
        if let text = unified["cpu.max"] {
            let parts = text.split(separator: " ")
            guard let first = parts.first, let period = parts.count > 1 ? UInt64(parts[1]) : Resolver.cpuPeriod,
                  period >= 1000 else {
                throw CgroupFailure("linux.resources.unified cpu.max = \(text): expected QUOTA [PERIOD]")
            }
            if first == "max" {
                cpuQuotaPerSecUSec = nil
            } else {
                guard let quota = UInt64(first) else {
                    throw CgroupFailure("linux.resources.unified cpu.max = \(text): expected QUOTA [PERIOD]")
                }
                cpuQuotaPerSecUSec = quota * 1_000_000 / period
            }
        }
        cpuWeight = try weight("cpu.weight") ?? cpuWeight
        if let blkio = resources.blockIO?.weight, blkio > 0 {
            let clamped = UInt64(min(max(blkio, 10), 1000))
            ioWeight = 1 + (clamped - 10) * 9999 / 990
        }
        ioWeight = try weight("io.weight") ?? ioWeight
        if let list = unified["cpuset.cpus"] {
            guard let cpus = LimitParser.cpuList(list) else {
                throw CgroupFailure("linux.resources.unified cpuset.cpus = \(list): not a CPU list")
            }
            allowedCPUs = cpus
            allowedCPUsText = list
        }
    }

    static let unifiedKeys: Set<String> = [
        "memory.swap.max", "memory.high", "pids.max", "cpu.max", "cpu.weight", "io.weight", "cpuset.cpus",
    ]

    public var isEmpty: Bool { asked.isEmpty }

    /// The limits set, each with its value as people read it, in a fixed order.
    public var asked: [(name: LimitName, value: String)] {
        var out: [(LimitName, String)] = []
        if let v = memoryMax { out.append((.memory, ByteCount.format(v))) }
        if let v = memorySwapMax { out.append((.memorySwap, ByteCount.format(v))) }
        if let v = memoryHigh { out.append((.memoryHigh, ByteCount.format(v))) }
        if let v = tasksMax { out.append((.pids, v.description)) }
        if let v = cpuQuotaPerSecUSec { out.append((.cpus, Self.cpus(v))) }
        if let v = cpuWeight { out.append((.cpuWeight, String(v))) }
        if let v = ioWeight { out.append((.ioWeight, String(v))) }
        if let v = allowedCPUs { out.append((.cpusetCPUs, allowedCPUsText ?? v.map(String.init).joined(separator: ","))) }
        return out
    }

    /// Whether a limit needs its controller: a "max" limit asks for
    /// nothing, so it holds without one.
    public func needsController(_ name: LimitName) -> Bool {
        switch name {
        case .memory: memoryMax.map { $0 != .max } ?? false
        case .memorySwap: memorySwapMax.map { $0 != .max } ?? false
        case .memoryHigh: memoryHigh.map { $0 != .max } ?? false
        case .pids: tasksMax.map { $0 != .max } ?? false
        case .cpus: cpuQuotaPerSecUSec != nil
        case .cpuWeight: cpuWeight != nil
        case .ioWeight: ioWeight != nil
        case .cpusetCPUs: allowedCPUs != nil
        }
    }

    /// `1.5 CPUs` for 1_500_000 µs per second.
    static func cpus(_ perSecond: UInt64) -> String {
        let hundredths = (perSecond + 5000) / 10000
        var number = String(hundredths / 100)
        let rest = hundredths % 100
        if rest != 0 {
            let digits = rest < 10 ? "0\(rest)" : String(rest)
            number += "." + (digits.hasSuffix("0") ? String(digits.dropLast()) : digits)
        }
        return number + (hundredths == 100 ? " CPU" : " CPUs")
    }
}

extension LimitName {
    /// The cgroup v2 controller that enforces the limit.
    public var controller: String {
        switch self {
        case .memory, .memorySwap, .memoryHigh: "memory"
        case .pids: "pids"
        case .cpus, .cpuWeight: "cpu"
        case .ioWeight: "io"
        case .cpusetCPUs: "cpuset"
        }
    }
}

/// Everything the cgroup step needs from a spec.
public struct CgroupRequest: Equatable, Sendable {
    public var limits: CgroupLimits
    public var manager: CgroupManagerChoice
    /// Limits that must be enforced, or the sandbox does not start.
    public var required: Set<LimitName>
    /// The slice the systemd scope goes in.
    public var slice: String

    public init(limits: CgroupLimits = CgroupLimits(), manager: CgroupManagerChoice = .auto,
                required: Set<LimitName> = [], slice: String = "nook.slice") {
        self.limits = limits
        self.manager = manager
        self.required = required
        self.slice = slice
    }

    public init(spec: Spec) throws(CgroupFailure) {
        let annotations = spec.annotations ?? [:]
        self.init(limits: try CgroupLimits(spec.linux?.resources))
        if let name = annotations[Annotation.cgroupManager] {
            guard let choice = CgroupManagerChoice(rawValue: name) else {
                throw CgroupFailure("annotation \(Annotation.cgroupManager) = \(name): unknown cgroup manager",
                                    hint: "use auto, systemd, cgroupfs or none")
            }
            manager = choice
        }
        for name in (annotations[Annotation.cgroupRequired] ?? "").split(separator: ",") {
            guard let limit = LimitName(name: String(name).trimming(" ")) else {
                throw CgroupFailure("annotation \(Annotation.cgroupRequired): unknown limit \(name)")
            }
            required.insert(limit)
        }
        if let name = annotations[Annotation.cgroupSlice] {
            guard Resolver.isNookSlice(name) else {
                throw CgroupFailure("annotation \(Annotation.cgroupSlice) = \(name): not a slice below nook.slice")
            }
            slice = name
        }
    }
}
