#if canImport(Glibc)
import Glibc
#endif
import NookCgroups
import NookDoctor
import NookSpec
import NookSupport
import Testing

/// nook doctor's verdicts on hosts described by hand.
struct CheckTests {
    /// A host where everything nook needs is in place.
    static var healthy: DoctorFacts {
        var f = DoctorFacts(user: "ada", uid: 1000, kernel: "6.8.0", path: "/usr/bin:/bin")
        f.maxUserNamespaces = 63000
        f.subuidRanges = [IDRange(start: 100_000, count: 65536)]
        f.subgidRanges = [IDRange(start: 100_000, count: 65536)]
        f.subuidEntries = [SubidEntry(owner: "ada", start: 100_000, count: 65536),
                           SubidEntry(owner: "bob", start: 165_536, count: 65536)]
        f.subgidEntries = f.subuidEntries
        f.accounts = ["root": 0, "ada": 1000, "bob": 1001, "nobody": 65534]
        f.newuidmap = HelperFacts(path: "/usr/bin/newuidmap", setuidRoot: true, hasCapability: false, nosuidMount: false)
        f.newgidmap = HelperFacts(path: "/usr/bin/newgidmap", setuidRoot: false, hasCapability: true, nosuidMount: false)
        f.fuseOverlayfs = "/usr/bin/fuse-overlayfs"
        f.cgroups = CgroupHost(v2Mount: "/sys/fs/cgroup")
        f.userBus = ManagerAttempt(address: "unix:path=/run/user/1000/bus", version: "255",
                                   controlGroup: "/user.slice/user-1000.slice/user@1000.service")
        f.privateSocket = f.userBus
        f.managerControllers = ["cpu", "cpuset", "io", "memory", "pids"]
        f.linger = true
        f.runtimeDir = "/run/user/1000"
        f.runtimeDirExists = true
        f.runtimeDirOwner = 1000
        f.runtimeDirMode = 0o700
        return f
    }

    func check(_ id: String, _ f: DoctorFacts) throws -> Check {
        try #require(Doctor.checks(f).first { $0.id == id })
    }

    @Test func aHealthyHostIsOkEverywhereWithoutFixes() {
        let checks = Doctor.checks(Self.healthy)
        #expect(checks.map(\.id) == ["userns", "apparmor", "subuid", "subgid", "newuidmap", "newgidmap", "fuse",
                                     "fuse-overlayfs", "overlay", "cgroup-v2", "cgroup-controllers", "user-manager",
                                     "user-bus", "linger", "runtime-dir"])
        for c in checks { #expect(c.status == .ok && c.fix == nil, "\(c.line)") }
    }

    @Test func aMissingSubuidRangeFailsWithAUsermodAboveEveryRange() throws {
        var f = Self.healthy
        f.subuidRanges = []
        let c = try check("subuid", f)
        #expect(c.status == .fail)
        #expect(c.detail.hasPrefix("no range for ada in /etc/subuid"))
        #expect(c.fix == "sudo usermod --add-subuids 262144-327679 --add-subgids 262144-327679 ada")
        f.subidService = "subid: sss"
        #expect(try check("subuid", f).detail.contains("looked up through nsswitch.conf subid: sss"))
    }

    @Test func overlappingRangesAndRangesOverRealUidsAreWarnedAbout() throws {
        var f = Self.healthy
        f.subuidEntries.append(SubidEntry(owner: "carol", start: 150_000, count: 65536))
        let overlap = try check("subuid", f)
        #expect(overlap.status == .warn)
        #expect(overlap.detail.contains("100000-165535 overlaps carol's 150000-215535"), "\(overlap.detail)")
        #expect(overlap.fix?.contains("give every user a range of its own") == true)

        var g = Self.healthy
        g.subgidRanges = [IDRange(start: 1000, count: 65536)]
        let real = try check("subgid", g)
        #expect(real.status == .warn)
        #expect(real.detail.contains("1000-66535 covers real uids of /etc/passwd: ada (1000), bob (1001), nobody (65534)"),
                "\(real.detail)")
    }

    /// A fresh try: a user with 165536:65536 and 200000:65536 could run
    /// nothing (the kernel refused the overlapping map) and doctor said ok.
    @Test func aUsersOwnOverlappingLinesAreWarnedAbout() throws {
        var f = Self.healthy
        f.subuidEntries = [SubidEntry(owner: "ada", start: 165_536, count: 65536),
                           SubidEntry(owner: "ada", start: 200_000, count: 65536)]
        f.subuidRanges = IDRange.merged([IDRange(start: 165_536, count: 65536), IDRange(start: 200_000, count: 65536)])
        let c = try check("subuid", f)
        #expect(c.status == .warn && c.detail.contains("gives ada 165536-231071 and 200000-265535, which overlap"),
                "\(c.line)")
        #expect(c.fix?.contains("remove one of the overlapping lines") == true)
    }

    @Test func aSmallRangeIsWarnedAboutAndSeveralRangesAreAllUsed() throws {
        var f = Self.healthy
        f.subuidRanges = [IDRange(start: 200_000, count: 30000), IDRange(start: 300_000, count: 30000)]
        f.subuidEntries = [SubidEntry(owner: "ada", start: 200_000, count: 30000),
                           SubidEntry(owner: "1000", start: 300_000, count: 30000)]
        let c = try check("subuid", f)
        #expect(c.detail.hasPrefix("200000-229999 (30000 ids), 300000-329999 (30000 ids); all are used"), "\(c.line)")
        #expect(c.status == .warn && c.detail.contains("only 60000 ids"), "\(c.line)")
        f.subuidRanges.append(IDRange(start: 400_000, count: 10000))
        f.subuidEntries.append(SubidEntry(owner: "ada", start: 400_000, count: 10000))
        #expect(try check("subuid", f).status == .ok)
        f.subuidRanges = [IDRange(start: 200_000, count: 1000)]
        f.subuidEntries = [SubidEntry(owner: "ada", start: 200_000, count: 1000)]
        let small = try check("subuid", f)
        #expect(small.status == .warn && small.detail.contains("only 1000 ids"), "\(small.line)")
    }

    @Test func aMissingNewuidmapFailsNamingPathAndPackage() throws {
        var f = Self.healthy
        f.path = "/opt/empty"
        f.newuidmap = nil
        let c = try check("newuidmap", f)
        #expect(c.line == "fail  newuidmap: newuidmap is not on PATH (/opt/empty): sandboxes map only your own id; "
            + "fix: sudo apt install uidmap (Fedora, Arch: shadow-utils / shadow)")
    }

    @Test func aHelperWithoutSetuidOrCapabilityOrOnANosuidMountFails() throws {
        var f = Self.healthy
        f.newuidmap = HelperFacts(path: "/home/ada/bin/newuidmap", setuidRoot: false, hasCapability: false,
                                  nosuidMount: false)
        let plain = try check("newuidmap", f)
        #expect(plain.status == .fail)
        #expect(plain.detail.contains("has neither the setuid bit nor the cap_setuid file capability"))
        #expect(plain.fix?.contains("sudo chmod u+s /home/ada/bin/newuidmap") == true)
        f.newuidmap = HelperFacts(path: "/mnt/usr/bin/newuidmap", setuidRoot: true, hasCapability: false,
                                  nosuidMount: true)
        let nosuid = try check("newuidmap", f)
        #expect(nosuid.status == .fail && nosuid.detail.contains("mounted nosuid, which ignores its setuid bit"))
        #expect(try check("newgidmap", Self.healthy).detail == "/usr/bin/newgidmap: file capability cap_setgid")
    }

    @Test func anUnusableDevFuseFailsWithTheFix() throws {
        var f = Self.healthy
        f.fuse = FuseDeviceFacts(exists: true, openError: Errno(EACCES), mode: 0o600, owner: 0)
        let c = try check("fuse", f)
        #expect(c.line == "fail  /dev/fuse: /dev/fuse cannot be opened by ada: EACCES (Permission denied) (mode 600, "
            + "owner uid 0): fuse-overlayfs cannot work; fix: sudo chmod 0666 /dev/fuse (fuse3's udev rule makes it so); "
            + "in a container, pass the device")
        f.fuse = FuseDeviceFacts(exists: false)
        #expect(try check("fuse", f).fix?.hasPrefix("sudo modprobe fuse") == true)
        f.fuse = FuseDeviceFacts(exists: true, isFuseDevice: false)
        #expect(try check("fuse", f).detail.contains("not the FUSE character device"))
    }

    @Test func withoutNativeOverlayOrFuseOverlayfsTheFallbacksAreNamed() throws {
        var f = Self.healthy
        f.overlay = ProbeResult(ok: false, step: "mount overlay", errno: Errno(EPERM))
        f.kernel = "5.4.0"
        let overlay = try check("overlay", f)
        #expect(overlay.status == .warn && overlay.detail.contains("needs Linux 5.11"), "\(overlay.line)")
        f.fuseOverlayfs = nil
        #expect(try check("fuse-overlayfs", f).status == .fail)
        #expect(try check("overlay", f).fix?.contains("install fuse-overlayfs") == true)
    }

    @Test func userNamespacesBlockedBySysctlsNameTheSysctl() throws {
        var f = Self.healthy
        f.userns = ProbeResult(ok: false, step: "unshare(CLONE_NEWUSER)", errno: Errno(ENOSPC))
        f.maxUserNamespaces = 0
        let max = try check("userns", f)
        #expect(max.status == .fail && max.detail.contains("user.max_user_namespaces is 0"))
        #expect(max.fix?.hasPrefix("sudo sysctl -w user.max_user_namespaces=") == true)
        f.maxUserNamespaces = 1000
        f.unprivilegedUsernsClone = 0
        #expect(try check("userns", f).fix?.contains("kernel.unprivileged_userns_clone=1") == true)
    }

    @Test func ubuntusAppArmorRestrictionWithoutNooksProfileFailsAndSaysHowToInstallIt() throws {
        var f = Self.healthy
        f.osName = "Ubuntu 24.04"
        f.apparmorEnabled = true
        f.apparmorRestrictsUserns = true
        f.apparmorLabel = "unconfined"
        f.userns = ProbeResult(ok: false, step: "write /proc/self/setgroups", errno: Errno(EACCES))
        let apparmor = try check("apparmor", f)
        #expect(apparmor.status == .fail)
        #expect(apparmor.detail.contains("AppArmor restricts unprivileged user namespaces (Ubuntu 24.04)"))
        #expect(apparmor.detail.contains("no AppArmor profile for nook is installed"))
        #expect(apparmor.fix?.contains("sudo install -m 644 contrib/apparmor/nook /etc/apparmor.d/nook") == true)
        #expect(try check("userns", f).detail.contains("AppArmor restricts unprivileged user namespaces"))

        f.apparmorProfilePath = "/etc/apparmor.d/nook"
        f.executable = "/home/ada/bin/nook"
        let elsewhere = try check("apparmor", f)
        #expect(elsewhere.status == .fail && elsewhere.detail.contains("does not apply to /home/ada/bin/nook"))

        f.apparmorLabel = "nook (unconfined)"
        f.userns = .passed
        #expect(try check("apparmor", f).status == .ok)
        #expect(try check("userns", f).status == .ok)
    }

    @Test func hybridCgroupsAreNamedAsTheCauseOfTheMissingControllers() throws {
        var f = Self.healthy
        f.cgroups = CgroupHost(v2Mount: "/sys/fs/cgroup/unified",
                               v1Controllers: ["cpu": "/sys/fs/cgroup/cpu", "cpuset": "/sys/fs/cgroup/cpuset",
                                               "io": "/sys/fs/cgroup/blkio", "memory": "/sys/fs/cgroup/memory",
                                               "pids": "/sys/fs/cgroup/pids"])
        f.managerControllers = []
        let v2 = try check("cgroup-v2", f)
        #expect(v2.status == .warn)
        #expect(v2.detail.hasPrefix("hybrid cgroups: cgroup v2 is at /sys/fs/cgroup/unified but the controllers cpu, "
            + "cpuset, io, memory, pids are on cgroup v1"))
        #expect(v2.fix?.hasPrefix("boot with systemd.unified_cgroup_hierarchy=1") == true)
        let controllers = try check("cgroup-controllers", f)
        #expect(controllers.status == .warn)
        #expect(controllers.detail == "cpu cpuset io memory pids not delegated to user@1000.service (it has: none): "
            + "limits on them are not enforced; cause: hybrid cgroups (cpu cpuset io memory pids are on cgroup v1)")
    }

    @Test func onAUnifiedHostUndelegatedControllersGetTheDelegateDropIn() throws {
        var f = Self.healthy
        f.managerControllers = ["memory", "pids"]
        let c = try check("cgroup-controllers", f)
        #expect(c.status == .warn && c.detail.hasPrefix("cpu cpuset io not delegated to user@1000.service (it has: memory pids)"))
        #expect(c.fix?.contains("Delegate=cpu cpuset io memory pids") == true)
        f.cgroups = CgroupHost(v2Mount: nil, v1Controllers: ["memory": "/sys/fs/cgroup/memory"])
        #expect(try check("cgroup-v2", f).status == .fail)
    }

    @Test func withoutAUserManagerTheFixIsLinger() throws {
        var f = Self.healthy
        f.userBus = ManagerAttempt(address: "unix:path=/run/user/1000/bus", problem: "ENOENT (No such file or directory)")
        f.privateSocket = ManagerAttempt(address: "unix:path=/run/user/1000/systemd/private", problem: "ECONNREFUSED")
        f.managerControllers = nil
        f.linger = false
        for id in ["user-manager", "cgroup-controllers", "linger"] {
            let c = try check(id, f)
            #expect(c.status == .warn && c.fix?.contains("sudo loginctl enable-linger ada") == true, "\(c.line)")
        }
        #expect(try check("user-manager", f).detail.contains("unix:path=/run/user/1000/bus: ENOENT"))
        #expect(try check("user-bus", f).fix?.contains("dbus-user-session") == true)
    }

    @Test func aManagerOnlyOnItsPrivateSocketAsksForTheUserBus() throws {
        var f = Self.healthy
        f.userBus = ManagerAttempt(address: "unix:path=/run/user/1000/bus", problem: "ENOENT")
        let c = try check("user-bus", f)
        #expect(c.status == .warn && c.detail.contains("private socket"))
        #expect(try check("user-manager", f).status == .ok)
    }

    @Test func xdgRuntimeDirMustBeSetOwnedAndPrivate() throws {
        var f = Self.healthy
        f.runtimeDir = nil
        #expect(try check("runtime-dir", f).status == .warn)
        f.runtimeDir = "/run/user/1000"
        f.runtimeDirOwner = 0
        let other = try check("runtime-dir", f)
        #expect(other.status == .fail && other.detail.contains("belongs to uid 0"))
        f.runtimeDirOwner = 1000
        f.runtimeDirMode = 0o755
        #expect(try check("runtime-dir", f).fix == "chmod 0700 /run/user/1000")
        f.runtimeDirExists = false
        #expect(try check("runtime-dir", f).status == .fail)
    }

    @Test func subidAndPasswdFilesParseByNameAndNumber() {
        #expect(DoctorProbe.parseSubid("ada:100000:65536\n1001:200000:10\n# x\nbad\nzero:1:0\n")
            == [SubidEntry(owner: "ada", start: 100_000, count: 65536), SubidEntry(owner: "1001", start: 200_000, count: 10)])
        #expect(DoctorProbe.parsePasswd("root:x:0:0::/root:/bin/sh\nada:x:1000:1000::/home/ada:/bin/bash\n")
            == ["root": 0, "ada": 1000])
    }
}
