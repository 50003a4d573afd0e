import NookCgroups
import NookSpec
import Testing

struct HierarchyTests {
    static let hybridMountinfo = """
        30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
        32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
        35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
        36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
        37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpu,cpuacct
        38 30 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
        """

    @Test func aHybridHostHasV2AtUnifiedAndItsControllersOnV1() {
        let m = CgroupHost.parseMountinfo(Self.hybridMountinfo)
        #expect(m.v2 == "/sys/fs/cgroup/unified")
        #expect(m.v1 == ["memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
                         "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                         "io": "/sys/fs/cgroup/blkio"])
        #expect(CgroupHost(v2Mount: m.v2, v1Controllers: m.v1).isHybrid)
    }

    @Test func aUnifiedHostHasOnlyV2AndPrefersSysFsCgroup() {
        let text = """
            40 24 0:40 / /tmp/elsewhere rw - cgroup2 cgroup2 rw
            30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
            """
        let m = CgroupHost.parseMountinfo(text)
        #expect(m.v2 == "/sys/fs/cgroup")
        #expect(m.v1.isEmpty)
        #expect(!CgroupHost(v2Mount: m.v2, v1Controllers: m.v1).isHybrid)
        #expect(CgroupHost.parseMountinfo("30 24 0:26 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw").v2
            == "/mnt/my cgroups")
    }

    @Test func theV2LineOfProcCgroupIsTheCgroup() {
        #expect(CgroupHost.parseProcCgroup("9:name=systemd:/\n4:memory:/x\n0::/user.slice/a.scope\n")
            == "/user.slice/a.scope")
        #expect(CgroupHost.parseProcCgroup("0::/gone (deleted)\n") == "/gone")
        #expect(CgroupHost.parseProcCgroup("4:memory:/x\n") == nil)
        #expect(CgroupHost(v2Mount: "/sys/fs/cgroup/unified").directory(of: "/a/b") == "/sys/fs/cgroup/unified/a/b")
        #expect(CgroupHost(v2Mount: "/sys/fs/cgroup").directory(of: "/") == "/sys/fs/cgroup")
    }
}

struct StatsTests {
    @Test func keyedFilesAreReadLineByLine() {
        #expect(CgroupStats.keyed("low 0\nhigh 3\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n")["oom_kill"] == 1)
        #expect(CgroupStats.keyed("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
            == ["usage_usec": 1500, "user_usec": 1000, "system_usec": 500])
    }

    @Test func anOOMKillOfThePayloadIsAnErrorWithTheLimitAndOfAChildAWarning() {
        var stats = CgroupStats()
        stats.memoryPeak = 64 << 20
        let o = CgroupOutcome(manager: .systemd, stats: stats, oomKills: 1, memoryLimit: .value(64 << 20))
        #expect(o.oomReport(payloadKilled: true)?.isPayload == true)
        #expect(o.oomReport(payloadKilled: true)?.text
            == "the command was OOM-killed: it ran out of memory in its cgroup (memory limit 64 MiB, peak 64 MiB)")
        #expect(o.oomReport(payloadKilled: false)?.text
            == "a process in the sandbox OOM-killed (memory limit 64 MiB, peak 64 MiB); the command went on")
        #expect(CgroupOutcome(manager: .systemd, stats: stats).oomReport(payloadKilled: true) == nil)
    }

    @Test func statsSayWhatTheCgroupCountedAndWhatItCouldNot() {
        var stats = CgroupStats()
        stats.cpuUsageUSec = 1_234_567
        stats.cpuUserUSec = 1_000_000
        stats.cpuSystemUSec = 234_567
        let partial = CgroupOutcome(manager: .systemd, stats: stats)
        #expect(partial.statsLine == "stats: memory peak n/a (no memory controller on the sandbox's cgroup); "
            + "cpu 1.23 s (user 1.00 s, system 0.23 s); pids peak n/a (no pids controller on the sandbox's cgroup)")
        stats.memoryPeak = 5 << 20 + 1 << 19
        stats.pidsPeak = 3
        #expect(CgroupOutcome(manager: .cgroupfs, stats: stats).statsLine
            == "stats: memory peak 5.5 MiB; cpu 1.23 s (user 1.00 s, system 0.23 s); pids peak 3")
        #expect(CgroupOutcome(manager: .none, noCgroupReason: "--cgroup-manager none was given").statsLine
            == "stats: not available: --cgroup-manager none was given")
    }

    @Test(arguments: [
        (UInt64(0), "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1 KiB"), (64 << 20, "64 MiB"),
        (1536 << 20, "1.5 GiB"), (1 << 40, "1 TiB"), (12_345_678, "11.8 MiB"),
    ])
    func byteCountsReadAsPeopleSayThem(bytes: UInt64, text: String) {
        #expect(ByteCount.format(bytes) == text)
    }
}

@Suite struct JoinTests {
    @Test(arguments: [
        ("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/nook.slice/nook-1a.scope/sandbox",
         "nook-1a.scope", "/sandbox"),
        ("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/nook.slice/nook-1a.scope/health",
         "nook-1a.scope", "/health"),
        ("/sys/fs/cgroup/nook.slice/nook-1a.scope", "nook-1a.scope", ""),
    ])
    func theManagerIsAskedForThePathBelowTheScope(_ cgroup: String, _ scope: String, _ expected: String) {
        #expect(CgroupJoin.subcgroup(of: cgroup, in: scope) == expected)
    }

    @Test func aCgroupOutsideTheScopeIsNotAskedFor() {
        #expect(CgroupJoin.subcgroup(of: "/sys/fs/cgroup/nook.slice/nook-2b.scope/sandbox", in: "nook-1a.scope") == nil)
    }
}
