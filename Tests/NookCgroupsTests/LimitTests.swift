import NookCgroups
import NookSpec
import Testing

/// Limits from the request, through the spec, to systemd properties and
/// cgroup files.
struct LimitTests {
    func limits(_ build: (inout ResourceLimits) -> Void) throws -> CgroupLimits {
        var request = ResourceLimits()
        build(&request)
        return try CgroupLimits(Resolver.resources(request))
    }

    func property(_ name: String, _ properties: [UnitProperty]) -> UnitProperty? {
        properties.first { $0.name == name }
    }

    @Test func maxNeverBecomesZeroOrOneOnTheWayToSystemdOrTheKernel() throws {
        let l = try limits {
            $0.memory = .max
            $0.memorySwap = .max
            $0.memoryHigh = .max
            $0.pids = .max
        }
        #expect(l.memoryMax == .max && l.memorySwapMax == .max && l.memoryHigh == .max && l.tasksMax == .max)
        let p = SystemdScope.properties(l, pid: 42, slice: "nook.slice", description: "d")
        for name in ["MemoryMax", "MemorySwapMax", "MemoryHigh", "TasksMax"] {
            #expect(property(name, p) == .u64(name, UInt64.max), "\(name)")
        }
        let files = Dictionary(uniqueKeysWithValues: CgroupFiles.writes(l).map { ($0.file, $0.value) })
        #expect(files == ["memory.max": "max", "memory.swap.max": "max", "memory.high": "max", "pids.max": "max"])
        // "max" asks for nothing, so it needs no controller.
        #expect(!LimitName.allCases.contains { l.needsController($0) })
    }

    @Test func theSpecWritesNoLimitAsMinusOneAndMax() throws {
        var request = ResourceLimits()
        request.memory = .max
        request.pids = .max
        request.memorySwap = .max
        let r = try #require(try Resolver.resources(request))
        #expect(r.memory?.limit == -1)
        #expect(r.pids?.limit == -1)
        #expect(r.unified == ["memory.swap.max": "max"])
    }

    @Test func smallLimitsStayExact() throws {
        let l = try limits {
            $0.pids = .value(2)  // the least that runs (the init is one)
            $0.memory = .value(64 << 20)
            $0.memorySwap = .value(0)
        }
        let p = SystemdScope.properties(l, pid: 7, slice: "nook.slice", description: "d")
        #expect(property("TasksMax", p) == .u64("TasksMax", 2))
        #expect(property("MemoryMax", p) == .u64("MemoryMax", 67_108_864))
        #expect(property("MemorySwapMax", p) == .u64("MemorySwapMax", 0))
        let files = Dictionary(uniqueKeysWithValues: CgroupFiles.writes(l).map { ($0.file, $0.value) })
        #expect(files["pids.max"] == "2" && files["memory.max"] == "67108864" && files["memory.swap.max"] == "0")
    }

    @Test(arguments: [
        (1.5, UInt64(1_500_000), "150000 100000"), (0.5, 500_000, "50000 100000"), (2, 2_000_000, "200000 100000"),
        (0.01, 10_000, "1000 100000"), (0.333, 333_000, "33300 100000"),
    ])
    func cpusBecomeAQuotaPerSecondAndACpuMax(cpus: Double, perSecond: UInt64, cpuMax: String) throws {
        let l = try limits { $0.cpus = cpus }
        #expect(l.cpuQuotaPerSecUSec == perSecond)
        let p = SystemdScope.properties(l, pid: 1, slice: "nook.slice", description: "d")
        #expect(property("CPUQuotaPerSecUSec", p) == .u64("CPUQuotaPerSecUSec", perSecond))
        #expect(CgroupFiles.writes(l).first { $0.file == "cpu.max" }?.value == cpuMax)
    }

    @Test func aBundlesQuotaWithItsOwnPeriodIsPerSecond() throws {
        var r = LinuxResources()
        var cpu = LinuxCPU()
        cpu.quota = 50_000
        cpu.period = 200_000
        r.cpu = cpu
        #expect(try CgroupLimits(r).cpuQuotaPerSecUSec == 250_000)
        cpu.quota = -1
        r.cpu = cpu
        #expect(try CgroupLimits(r).cpuQuotaPerSecUSec == nil)
    }

    @Test func bundleV1FieldsConvertAsRuncConvertsThem() throws {
        var r = LinuxResources()
        var cpu = LinuxCPU()
        cpu.shares = 1024
        r.cpu = cpu
        var blkio = LinuxBlockIO()
        blkio.weight = 500
        r.blockIO = blkio
        var memory = LinuxMemory(limit: 256 << 20)
        memory.swap = 512 << 20
        r.memory = memory
        r.pids = LinuxPids(limit: 0)
        let l = try CgroupLimits(r)
        #expect(l.cpuWeight == 39)
        #expect(l.ioWeight == 4950)
        #expect(l.memorySwapMax == .value(256 << 20))
        // A pids limit of 0 in a bundle is "not set" (runc), not one process.
        #expect(l.tasksMax == nil)

        memory.swap = -1
        r.memory = memory
        #expect(try CgroupLimits(r).memorySwapMax == .max)
    }

    @Test func unifiedValuesOverrideAndUnknownFilesAreRefused() throws {
        var r = LinuxResources()
        r.unified = ["cpu.weight": "300", "pids.max": "max", "io.weight": "default 20", "cpu.max": "max 100000"]
        let l = try CgroupLimits(r)
        #expect(l.cpuWeight == 300 && l.tasksMax == .max && l.ioWeight == 20 && l.cpuQuotaPerSecUSec == nil)
        r.unified = ["memory.oom.group": "1"]
        #expect(throws: CgroupFailure.self) { try CgroupLimits(r) }
        r.unified = ["cpu.weight": "0"]
        #expect(throws: CgroupFailure.self) { try CgroupLimits(r) }
    }

    @Test func allowedCPUsBecomeAByteMaskAndAList() throws {
        #expect(SystemdScope.cpuMask([0, 1, 2, 3, 6]) == [0b0100_1111])
        #expect(SystemdScope.cpuMask([9]) == [0, 0b10])
        #expect(SystemdScope.cpuMask([]) == [])
        let l = try limits { $0.allowedCPUs = "0-2,8" }
        #expect(l.allowedCPUs == [0, 1, 2, 8])
        #expect(property("AllowedCPUs", SystemdScope.properties(l, pid: 1, slice: "nook.slice", description: ""))
            == .bytes("AllowedCPUs", [0b111, 0b1]))
        #expect(CgroupFiles.writes(l).first?.file == "cpuset.cpus")
        #expect(CgroupFiles.writes(l).first?.value == "0-2,8")
    }

    @Test func theScopeIsDelegatedHoldsThePidAndCollectsItselfInItsSlice() {
        let p = SystemdScope.properties(CgroupLimits(), pid: 4242, slice: "nook-ci.slice", description: "nook sandbox x")
        #expect(p.prefix(5) == [.string("Description", "nook sandbox x"), .string("Slice", "nook-ci.slice"),
                                .bool("Delegate", true), .string("CollectMode", "inactive-or-failed"),
                                .u32s("PIDs", [4242])])
        #expect(!p.contains { $0.name == "MemoryMax" || $0.name == "TasksMax" })
        #expect(SystemdScope.unitName(id: "0123456789ab") == "nook-0123456789ab.scope")
    }

    @Test func weightsMapOneToOneAndIOWeightIsWrittenAsDefault() throws {
        let l = try limits {
            $0.cpuWeight = 200
            $0.ioWeight = 50
        }
        let p = SystemdScope.properties(l, pid: 1, slice: "nook.slice", description: "")
        #expect(property("CPUWeight", p) == .u64("CPUWeight", 200))
        #expect(property("IOWeight", p) == .u64("IOWeight", 50))
        let files = Dictionary(uniqueKeysWithValues: CgroupFiles.writes(l).map { ($0.file, $0.value) })
        #expect(files == ["cpu.weight": "200", "io.weight": "default 50"])
    }

    @Test func theRequestReadsManagerRequiredLimitsAndSliceFromTheSpec() throws {
        var spec = Spec()
        var linux = Linux()
        linux.resources = try Resolver.resources({ var l = ResourceLimits(); l.memory = .value(1 << 30); return l }())
        spec.linux = linux
        spec.annotations = [Annotation.cgroupManager: "cgroupfs", Annotation.cgroupRequired: "memory,pids",
                            Annotation.cgroupSlice: "nook-ci.slice"]
        let r = try CgroupRequest(spec: spec)
        #expect(r.manager == .cgroupfs && r.required == [.memory, .pids] && r.slice == "nook-ci.slice")
        #expect(r.limits.memoryMax == .value(1 << 30))
        spec.annotations = [Annotation.cgroupSlice: "system.slice"]
        #expect(throws: CgroupFailure.self) { try CgroupRequest(spec: spec) }
        #expect(try CgroupRequest(spec: Spec()) == CgroupRequest())
    }

    @Test func askedLimitsReadAsPeopleWriteThem() throws {
        let l = try limits {
            $0.memory = .value(2 << 30)
            $0.pids = .value(64)
            $0.cpus = 1.5
            $0.memoryHigh = .value(1536 << 20)
        }
        #expect(l.asked.map { "\($0.name.rawValue)=\($0.value)" }
            == ["memory=2 GiB", "memory-high=1.5 GiB", "pids=64", "cpus=1.5 CPUs"])
        #expect(try limits { $0.cpus = 1 }.asked.first?.value == "1 CPU")
        #expect(try limits { $0.cpus = 0.25 }.asked.first?.value == "0.25 CPUs")
        #expect(try limits { $0.cpus = 0.05 }.asked.first?.value == "0.05 CPUs")
    }
}
