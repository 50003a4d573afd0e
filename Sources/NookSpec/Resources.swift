// The resource part of the OCI runtime spec (config-linux.md, "Control
// groups": linux.resources.memory, cpu, pids, blockIO and unified), and how
// nook's limits are written into it.
//
// nook runs on cgroup v2. The v1-shaped fields carry what they say exactly
// (memory limit, CPU quota and period, CPU list, pids limit); what only v2
// has (memory.high, memory.swap.max, cpu.weight, io.weight) goes into
// `unified`, keyed by the v2 file name, as the spec provides for.
//
// "No limit" is -1 in the numeric fields and "max" in `unified`, never 0:
// runc and the spec read a pids limit of 0 as "not set", podman once turned
// "unlimited" into pids.max=1 (podman#29422), and nook refuses 0 for the
// limits where it cannot mean anything useful.

import NookSupport

/// `linux.resources`: the limits of the sandbox's cgroup.
public struct LinuxResources: Codable, Equatable, Sendable {
    public var memory: LinuxMemory?
    public var cpu: LinuxCPU?
    public var pids: LinuxPids?
    public var blockIO: LinuxBlockIO?
    /// cgroup v2 files and their values, `memory.high: "268435456"`.
    public var unified: [String: String]?
    public init() {}
}

/// `linux.resources.memory`, in bytes; -1 is no limit.
public struct LinuxMemory: Codable, Equatable, Sendable {
    public var limit: Int64?
    public var reservation: Int64?
    /// Memory plus swap (the v1 meaning); nook writes memory.swap.max in
    /// `unified` instead and reads this only from bundles.
    public var swap: Int64?
    public init(limit: Int64? = nil) { self.limit = limit }
}

/// `linux.resources.cpu`.
public struct LinuxCPU: Codable, Equatable, Sendable {
    /// v1 shares, 2..262144; read from bundles only.
    public var shares: UInt64?
    /// Microseconds of CPU time per `period`; -1 is no limit.
    public var quota: Int64?
    /// Microseconds.
    public var period: UInt64?
    /// The CPUs the sandbox may run on, as a cpuset list: `0-3,6`.
    public var cpus: String?
    public var mems: String?
    public init() {}
}

/// `linux.resources.pids`; -1 is no limit.
public struct LinuxPids: Codable, Equatable, Sendable {
    public var limit: Int64
    public init(limit: Int64) { self.limit = limit }
}

/// `linux.resources.blockIO`; the weight is v1's 10..1000, read from
/// bundles only (nook writes io.weight in `unified`).
public struct LinuxBlockIO: Codable, Equatable, Sendable {
    public var weight: UInt16?
    public init() {}
}

/// The names of the limits a sandbox can ask for: the `--memory` ...
/// flags without dashes, and the names a profile's `required` list uses.
public enum LimitName: String, CaseIterable, Sendable, Comparable {
    case memory
    case memorySwap = "memory-swap"
    case memoryHigh = "memory-high"
    case pids
    case cpus
    case cpuWeight = "cpu-weight"
    case ioWeight = "io-weight"
    case cpusetCPUs = "cpuset-cpus"

    /// `memory_high` (as a profile key is written) and `memory-high` (as a
    /// flag is) name the same limit; so do the profile keys `swap` and
    /// `allowed_cpus` and the flags `--memory-swap` and `--cpuset-cpus`.
    public init?(name: String) {
        let dashed = name.lowercased().replacing("_", with: "-")
        switch dashed {
        case "swap": self = .memorySwap
        case "allowed-cpus": self = .cpusetCPUs
        default: self.init(rawValue: dashed)
        }
    }

    public static func < (a: LimitName, b: LimitName) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }
}

/// Parsers for limit values, shared by the command line and profiles.
public enum LimitParser {
    /// `512M`, `1.5G`, `4096`, `64k`, `2GiB`; units are binary (K = 1024), as
    /// systemd and docker read them. `max`, `unlimited`, `infinity` and `-1`
    /// mean no limit. nil: not a size.
    public static func bytes(_ text: String) -> LimitValue? {
        let t = text.trimming(" \t")
        if ["max", "unlimited", "infinity", "-1"].contains(t.lowercased()) { return .max }
        var number = t.lowercased()
        // "KiB", "KB" and "K" are the same unit; a bare "B" is bytes.
        if number.hasSuffix("ib"), let unit = number.dropLast(2).last, "kmgt".contains(unit) {
            number.removeLast(2)
        } else if number.hasSuffix("b") {
            number.removeLast()
        }
        var scale: UInt64 = 1
        if let last = number.last, let power = Array("kmgt").firstIndex(of: last) {
            scale = 1 << (10 * UInt64(power + 1))
            number.removeLast()
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
              number.filter({ $0 == "." }).count <= 1 else { return nil }
        if let whole = UInt64(number) {
            let (product, overflow) = whole.multipliedReportingOverflow(by: scale)
            return overflow || product > UInt64(Int64.max) ? nil : .value(product)
        }
        guard scale > 1, let fraction = Double(number), fraction.isFinite, fraction >= 0 else { return nil }
        let bytes = (fraction * Double(scale)).rounded()
        guard bytes < Double(Int64.max) else { return nil }
        return .value(UInt64(bytes))
    }

    /// `64`; `max`, `unlimited`, `infinity` and `-1` mean no limit.
    public static func count(_ text: String) -> LimitValue? {
        let t = text.trimming(" \t").lowercased()
        if ["max", "unlimited", "infinity", "-1"].contains(t) { return .max }
        guard let n = UInt64(t), n <= UInt64(Int64.max) else { return nil }
        return .value(n)
    }

    /// The CPU numbers of a cpuset list, `0-3,6` -> [0, 1, 2, 3, 6]; nil when
    /// the list is malformed or names a CPU above 8191.
    public static func cpuList(_ text: String) -> [Int]? {
        var cpus: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(ends.count), let low = Int(ends[0]), let high = Int(ends.last ?? ""),
                  low >= 0, low <= high, high < 8192 else { return nil }
            for cpu in low...high { cpus.insert(cpu) }
        }
        return cpus.isEmpty ? nil : cpus.sorted()
    }
}

/// Byte counts as people read them.
public enum ByteCount {
    /// `64 MiB`, `1.5 GiB`, `512 bytes`: exact where the count is a whole
    /// number of a unit, else one decimal.
    public static func format(_ bytes: UInt64) -> String {
        let units: [(String, UInt64)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        for (name, size) in units where bytes >= size {
            if bytes % size == 0 { return "\(bytes / size) \(name)" }
            let tenths = (bytes * 10 + size / 2) / size
            return "\(tenths / 10).\(tenths % 10) \(name)"
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    public static func format(_ value: LimitValue) -> String {
        switch value {
        case .max: "max"
        case .value(let n): format(n)
        }
    }
}

/// Annotation keys for the cgroup choices a spec carries beyond
/// `linux.resources`.
extension Annotation {
    /// `systemd`, `cgroupfs` or `none`; absent: automatic.
    public static let cgroupManager = "org.nook.cgroup.manager"
    /// Limit names, comma-separated, that must be enforced or the sandbox
    /// does not start.
    public static let cgroupRequired = "org.nook.cgroup.required"
    /// The systemd slice for the sandbox's scope (`nook-ci.slice`, below
    /// nook.slice); absent: nook.slice.
    public static let cgroupSlice = "org.nook.cgroup.slice"
}

extension Resolver {
    /// Where the sandbox sees its cgroup (a cgroup2 mount).
    public static let cgroupMountPoint = "/sys/fs/cgroup"

    /// The default CPU period, as systemd and the kernel use: 100 ms.
    public static let cpuPeriod: UInt64 = 100_000

    /// `limits` as `linux.resources`; nil when none was asked for.
    public static func resources(_ limits: ResourceLimits) throws(ResolveError) -> LinuxResources? {
        guard !limits.isEmpty else { return nil }
        var r = LinuxResources()
        var unified: [String: String] = [:]
        if let memory = limits.memory {
            r.memory = LinuxMemory(limit: try signed(memory, .memory, zero: "a memory limit of 0 leaves no memory"))
        }
        if let swap = limits.memorySwap {
            // 0 is meaningful here: no swap at all.
            unified["memory.swap.max"] = swap.description
        }
        if let high = limits.memoryHigh {
            _ = try signed(high, .memoryHigh, zero: "a memory-high of 0 throttles every allocation")
            // As a profile has it refused (the command line took it: a fresh try).
            if case .value(let h) = high, case .value(let m)? = limits.memory, h > m {
                throw ResolveError("--memory-high \(ByteCount.format(h)) is above --memory \(ByteCount.format(m))",
                                   hint: "memory-high throttles before the memory limit kills; keep it lower")
            }
            unified["memory.high"] = high.description
        }
        if let pids = limits.pids {
            // The sandbox's init counts against the limit too: with 1, the
            // payload could not start (a bare EAGAIN, found by the VM tier).
            if pids == .value(1) {
                throw ResolveError("pids limit 1 leaves no room for the command: nook's init in the sandbox is one "
                                   + "of the processes it counts", hint: "give 2 or more (the init and the command)")
            }
            r.pids = LinuxPids(limit: try signed(pids, .pids, zero: "a sandbox needs at least one process"))
        }
        if limits.cpus == .infinity {
            // max: no quota (OCI's -1), and nothing a cgroup must enforce.
            var cpu = r.cpu ?? LinuxCPU()
            cpu.quota = -1
            cpu.period = cpuPeriod
            r.cpu = cpu
        } else if let cpus = limits.cpus {
            guard cpus.isFinite, cpus > 0 else {
                throw ResolveError("cpus limit \(cpus): not a positive number of CPUs",
                                   hint: "give a number such as 0.5 or 2; leave it out for no limit")
            }
            let quota = (cpus * Double(cpuPeriod)).rounded()
            // cpu.max refuses a quota below 1 ms per period.
            guard quota >= 1000 else {
                throw ResolveError("cpus limit \(cpus): below the kernel's smallest quota, 0.01 CPU",
                                   hint: "give 0.01 or more")
            }
            guard quota < Double(Int64.max) else { throw ResolveError("cpus limit \(cpus): too large") }
            var cpu = r.cpu ?? LinuxCPU()
            cpu.quota = Int64(quota)
            cpu.period = cpuPeriod
            r.cpu = cpu
        }
        for (name, weight) in [(LimitName.cpuWeight, limits.cpuWeight), (.ioWeight, limits.ioWeight)] {
            guard let weight else { continue }
            guard (1...10000).contains(weight) else {
                throw ResolveError("\(name.rawValue) \(weight): out of range",
                                   hint: "a weight is 1 to 10000; 100 is the default share")
            }
            unified[name == .cpuWeight ? "cpu.weight" : "io.weight"] = String(weight)
        }
        if let list = limits.allowedCPUs {
            guard LimitParser.cpuList(list) != nil else {
                throw ResolveError("cpuset-cpus \(list): not a CPU list", hint: "write it as 0-3 or 0,2,4-7")
            }
            var cpu = r.cpu ?? LinuxCPU()
            cpu.cpus = list
            r.cpu = cpu
        }
        if !unified.isEmpty { r.unified = unified }
        return r
    }

    /// A byte or count limit as the spec writes it: -1 for no limit.
    static func signed(_ value: LimitValue, _ name: LimitName, zero: String) throws(ResolveError) -> Int64 {
        switch value {
        case .max: return -1
        case .value(0):
            throw ResolveError("\(name.rawValue) limit 0: \(zero)", hint: "give max (or leave it out) for no limit")
        case .value(let n):
            guard n <= UInt64(Int64.max) else { throw ResolveError("\(name.rawValue) limit \(n): too large") }
            return Int64(n)
        }
    }

    /// The names of the limits `limits` asks for.
    public static func askedLimits(_ limits: ResourceLimits) -> [LimitName] {
        var names: [LimitName] = []
        if limits.memory != nil { names.append(.memory) }
        if limits.memorySwap != nil { names.append(.memorySwap) }
        if limits.memoryHigh != nil { names.append(.memoryHigh) }
        if limits.pids != nil { names.append(.pids) }
        if let cpus = limits.cpus, cpus.isFinite { names.append(.cpus) }
        if limits.cpuWeight != nil { names.append(.cpuWeight) }
        if limits.ioWeight != nil { names.append(.ioWeight) }
        if limits.allowedCPUs != nil { names.append(.cpusetCPUs) }
        return names
    }

    /// The required limit names, checked: each known, and asked for
    /// (`all` stands for every limit asked for).
    public static func requiredLimits(_ limits: ResourceLimits) throws(ResolveError) -> [LimitName] {
        let asked = askedLimits(limits)
        var out: Set<LimitName> = []
        for name in limits.required {
            if name.lowercased() == "all" {
                out.formUnion(asked)
                continue
            }
            guard let limit = LimitName(name: name) else {
                throw ResolveError("unknown limit '\(name)' among the required limits",
                                   hint: "names are all, " + LimitName.allCases.map(\.rawValue).joined(separator: ", "))
            }
            guard asked.contains(limit) else {
                throw ResolveError("the \(limit.rawValue) limit is required but not set",
                                   hint: "set it (--\(limit.rawValue)), or drop it from the required limits")
            }
            out.insert(limit)
        }
        return out.sorted()
    }

    /// The cgroup annotations of a request: manager, required limits, slice.
    static func cgroupAnnotations(_ request: SandboxRequest) throws(ResolveError) -> [String: String] {
        var annotations: [String: String] = [:]
        if let manager = request.cgroupManager, manager != .auto {
            annotations[Annotation.cgroupManager] = manager.rawValue
        }
        let required = try requiredLimits(request.limits)
        if !required.isEmpty { annotations[Annotation.cgroupRequired] = required.map(\.rawValue).joined(separator: ",") }
        if let slice = request.cgroupSlice {
            guard isNookSlice(slice) else {
                throw ResolveError("slice \(slice): not a slice below nook.slice",
                                   hint: "name it nook-NAME.slice (letters, digits, '_'; '-' nests it further)")
            }
            annotations[Annotation.cgroupSlice] = slice
        }
        return annotations
    }

    /// `nook.slice`, or a slice nested in it by systemd's dash rule:
    /// `nook-ci.slice` is in nook.slice, `nook-ci-arm.slice` in that one.
    public static func isNookSlice(_ name: String) -> Bool {
        guard name.hasSuffix(".slice") else { return false }
        let stem = name.dropLast(".slice".count)
        guard stem == "nook" || stem.hasPrefix("nook-") else { return false }
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        return name.utf8.count <= 255 && parts.allSatisfy { part in
            !part.isEmpty && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
        }
    }
}
