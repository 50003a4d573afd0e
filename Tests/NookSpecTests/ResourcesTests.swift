import FoundationEssentials
import NookSpec
import Testing

/// Limit values as flags and profiles write them, and how resolving puts
/// them into the spec.
struct ResourcesTests {
    @Test(arguments: [
        ("256M", LimitValue.value(268_435_456)), ("256m", .value(268_435_456)), ("1.5G", .value(1_610_612_736)),
        ("64k", .value(65536)), ("2GiB", .value(2_147_483_648)), ("512MB", .value(536_870_912)), ("100", .value(100)),
        ("512B", .value(512)), ("1T", .value(1 << 40)), ("0", .value(0)),
        ("max", .max), ("MAX", .max), ("unlimited", .max), ("infinity", .max), ("-1", .max),
    ])
    func sizesAreBinaryAndNoLimitIsMax(text: String, value: LimitValue) {
        #expect(LimitParser.bytes(text) == value, "\(text)")
    }

    @Test(arguments: ["", "M", "12Q", "1.5", "-2", "1..5M", "99999999999T", "ten", "1 0M", "٣M"])
    func nonSizesAreRefused(text: String) {
        #expect(LimitParser.bytes(text) == nil, "\(text)")
    }

    @Test func countsTakeMaxAndMinusOneAsNoLimit() {
        #expect(LimitParser.count("64") == .value(64))
        #expect(LimitParser.count("1") == .value(1))
        #expect(LimitParser.count("max") == .max)
        #expect(LimitParser.count("-1") == .max)
        #expect(LimitParser.count("unlimited") == .max)
        #expect(LimitParser.count("-5") == nil)
        #expect(LimitParser.count("0") == .value(0))
    }

    @Test func cpuListsExpandAndMalformedOnesAreRefused() {
        #expect(LimitParser.cpuList("0-3,6") == [0, 1, 2, 3, 6])
        #expect(LimitParser.cpuList("2") == [2])
        for bad in ["", "3-1", "a", "0,,1", "0-", "-1", "9000"] { #expect(LimitParser.cpuList(bad) == nil, "\(bad)") }
    }

    @Test func limitNamesAcceptFlagAndProfileSpellings() {
        #expect(LimitName(name: "memory-swap") == .memorySwap)
        #expect(LimitName(name: "memory_swap") == .memorySwap)
        #expect(LimitName(name: "CPUSET_CPUS") == .cpusetCPUs)
        #expect(LimitName(name: "swap") == .memorySwap)
        #expect(LimitName(name: "allowed_cpus") == .cpusetCPUs)
        #expect(LimitName(name: "ram") == nil)
    }

    static let host = HostContext(uid: 1000, gid: 1000, userName: "ada", home: "/home/ada", cwd: "/work",
                                  environment: ["PATH": "/usr/bin"], uidRanges: [IDRange(start: 100_000, count: 65536)],
                                  gidRanges: [IDRange(start: 100_000, count: 65536)])

    func resolve(_ build: (inout SandboxRequest) -> Void) throws -> Spec {
        var r = SandboxRequest()
        r.command = ["true"]
        build(&r)
        return try Resolver.resolve(r, host: Self.host).spec
    }

    @Test func resolvingPutsTheLimitsInLinuxResources() throws {
        let spec = try resolve {
            $0.limits.memory = .value(256 << 20)
            $0.limits.pids = .value(64)
            $0.limits.cpus = 1.5
            $0.limits.memoryHigh = .value(200 << 20)
            $0.limits.memorySwap = .value(0)
            $0.limits.cpuWeight = 200
            $0.limits.ioWeight = 50
            $0.limits.allowedCPUs = "0-1"
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(spec.linux?.resources), as: UTF8.self)
        #expect(json == #"{"cpu":{"cpus":"0-1","period":100000,"quota":150000},"memory":{"limit":268435456},"#
            + #""pids":{"limit":64},"unified":{"cpu.weight":"200","io.weight":"50","memory.high":"209715200","#
            + #""memory.swap.max":"0"}}"#)
        #expect(try resolve { _ in }.linux?.resources == nil)
    }

    /// --cpus max (or -1) was refused as "not a number" although -1 and
    /// max mean no limit everywhere else: no quota, nothing to enforce.
    @Test func cpusMaxIsNoQuotaAndNoLimitToEnforce() throws {
        let spec = try resolve { $0.limits.cpus = .infinity }
        #expect(spec.linux?.resources?.cpu?.quota == -1)
        var limits = ResourceLimits()
        limits.cpus = .infinity
        #expect(Resolver.askedLimits(limits).isEmpty)
    }

    // Refused in a profile, taken from the command line (a fresh try).
    @Test func memoryHighAboveTheMemoryLimitIsRefused() {
        var limits = ResourceLimits()
        limits.memory = .value(1 << 30)
        limits.memoryHigh = .value(2 << 30)
        #expect(throws: ResolveError.self) { try Resolver.resources(limits) }
        limits.memoryHigh = .value(512 << 20)
        #expect((try? Resolver.resources(limits)) != nil)
    }

    @Test func theSandboxSeesItsCgroupReadOnlyUntilItGetsOneOfItsOwn() throws {
        let spec = try resolve { _ in }
        let mount = spec.mounts?.first { $0.destination == "/sys/fs/cgroup" }
        #expect(mount == Mount(destination: "/sys/fs/cgroup", type: "cgroup2", source: "cgroup2",
                               options: ["ro", "nosuid", "noexec", "nodev"]))
        #expect(spec.linux?.namespaces?.contains(Namespace(type: "cgroup")) == true)
    }

    @Test func aDirectoryRootGetsItsCgroupMountToo() throws {
        var host = Self.host
        host.sourceIsDirectory["/images/alpine"] = true
        var r = SandboxRequest()
        r.command = ["true"]
        r.rootfs = "/images/alpine"
        r.readOnly = true
        let mounts = try Resolver.resolve(r, host: host).spec.mounts ?? []
        let sys = try #require(mounts.firstIndex { $0.destination == "/sys" })
        let cgroup = try #require(mounts.firstIndex { $0.destination == "/sys/fs/cgroup" })
        #expect(mounts[cgroup].type == "cgroup2" && mounts[cgroup].options?.contains("ro") == true)
        #expect(sys < cgroup, "the cgroup mount goes over the bound /sys")
    }

    @Test func managerRequiredLimitsAndSliceGoIntoAnnotations() throws {
        let spec = try resolve {
            $0.limits.memory = .value(1 << 30)
            $0.limits.pids = .value(10)
            $0.limits.required = ["all"]
            $0.cgroupManager = .systemd
            $0.cgroupSlice = "nook-ci.slice"
        }
        #expect(spec.annotations?[Annotation.cgroupManager] == "systemd")
        #expect(spec.annotations?[Annotation.cgroupRequired] == "memory,pids")
        #expect(spec.annotations?[Annotation.cgroupSlice] == "nook-ci.slice")
        let auto = try resolve { $0.cgroupManager = .auto }
        #expect(auto.annotations?[Annotation.cgroupManager] == nil)
    }

    static func request(_ build: (inout SandboxRequest) -> Void) -> SandboxRequest {
        var r = SandboxRequest()
        r.command = ["true"]
        build(&r)
        return r
    }

    @Test(arguments: [
        (request { $0.limits.pids = .value(0) }, "pids limit 0: a sandbox needs at least one process"),
        (request { $0.limits.memory = .value(0) }, "memory limit 0: a memory limit of 0 leaves no memory"),
        (request { $0.limits.cpus = 0 }, "cpus limit 0.0: not a positive number of CPUs"),
        (request { $0.limits.cpus = 0.001 }, "cpus limit 0.001: below the kernel's smallest quota, 0.01 CPU"),
        (request { $0.limits.cpuWeight = 0 }, "cpu-weight 0: out of range"),
        (request { $0.limits.ioWeight = 10001 }, "io-weight 10001: out of range"),
        (request { $0.limits.allowedCPUs = "3-1" }, "cpuset-cpus 3-1: not a CPU list"),
        (request { $0.limits.required = ["memory"] }, "the memory limit is required but not set"),
        (request { $0.limits.pids = .value(3); $0.limits.required = ["ram"] },
         "unknown limit 'ram' among the required limits"),
        (request { $0.cgroupSlice = "system.slice" }, "slice system.slice: not a slice below nook.slice"),
    ])
    func badLimitsAreRefusedWithTheWayOut(request: SandboxRequest, message: String) {
        #expect {
            _ = try Resolver.resolve(request, host: Self.host)
        } throws: { error in
            guard let e = error as? ResolveError else { return false }
            return e.message == message && e.hint != nil
        }
    }

    @Test func nookSlicesNestByDashes() {
        #expect(Resolver.isNookSlice("nook.slice"))
        #expect(Resolver.isNookSlice("nook-ci.slice"))
        #expect(Resolver.isNookSlice("nook-ci-arm_64.slice"))
        for bad in ["nook", "nookci.slice", "nook-.slice", "nook--x.slice", "user.slice", "nook-a/b.slice"] {
            #expect(!Resolver.isNookSlice(bad), "\(bad)")
        }
    }
}
