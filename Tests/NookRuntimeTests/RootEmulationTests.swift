#if canImport(Glibc)
import Glibc
#endif
@testable import NookRuntime
import NookSpec
import NookSupport
import Testing

/// The id rules root emulation applies, checked against the kernel's
/// (credentials(7), capabilities(7)) on this test process's own entry.
struct RootEmulationTests {
    let pid = getpid()

    func call(_ e: RootEmulator, _ name: String, _ args: [UInt64]) -> Result<Int64, Errno>? {
        RootEmulator.calls.contains(name) || name == "prctl"
            ? (name.hasPrefix("get") ? e.read(name, pid: pid, args: args + [0, 0, 0])
                                     : e.change(name, pid: pid, args: args + [0, 0, 0]))
            : nil
    }

    /// An emulator whose entry for this process is root with every right,
    /// whoever runs the tests.
    func fresh(keepCaps: Bool = false) -> RootEmulator {
        let e = RootEmulator(hostGID: getgid())
        var c = RootEmulator.Credentials(uid: (0, 0, 0, 0), gid: (0, 0, 0, 0), groups: [0])
        c.keepCaps = keepCaps
        e.store(c, for: pid)
        return e
    }

    func ids(_ e: RootEmulator) -> [UInt32] {
        guard let c = e.credentials(of: pid) else { return [] }
        return [c.uid.real, c.uid.effective, c.uid.saved, c.gid.real, c.gid.effective, c.gid.saved]
    }

    @Test func leavingRootForGoodCannotBeUndone() {
        let e = fresh()
        #expect(call(e, "setgroups", [0, 0]) == .success(0))
        #expect(call(e, "setresgid", [100, 100, 100]) == .success(0))
        #expect(call(e, "setresuid", [100, 100, 100]) == .success(0))
        #expect(ids(e) == [100, 100, 100, 100, 100, 100])
        #expect(call(e, "setuid", [0]) == .failure(Errno(EPERM)))
        #expect(call(e, "setgid", [0]) == .failure(Errno(EPERM)))
        #expect(call(e, "setgroups", [0, 0]) == .failure(Errno(EPERM)))
        #expect(call(e, "getuid", []) == .success(100))
        #expect(call(e, "getgroups", [0]) == .success(0))
    }

    @Test func aSavedRootCanComeBackAndKeepCapsKeepsTheRightToSetIds() {
        let e = fresh()
        #expect(call(e, "setresuid", [UInt64(UInt32.max), 100, UInt64(UInt32.max)]) == .success(0))  // seteuid(100)
        #expect(ids(e)[0...2] == [0, 100, 0])
        #expect(call(e, "setresuid", [UInt64(UInt32.max), 0, UInt64(UInt32.max)]) == .success(0))
        #expect(call(e, "geteuid", []) == .success(0))

        let kept = fresh(keepCaps: true)
        #expect(call(kept, "setresuid", [7, 7, 7]) == .success(0))
        #expect(call(kept, "setresgid", [8, 8, 8]) == .success(0), "CAP_SETGID kept with PR_SET_KEEPCAPS")
    }

    // The second attack report: 4000 processes each setting 65536 groups
    // made nook's own process grow past a gigabyte.
    @Test func whatASandboxCanMakeNookKeepIsBounded() {
        let e = fresh()
        #expect(call(e, "setgroups", [UInt64(RootEmulator.maxGroups + 1), 0]) == .failure(Errno(EINVAL)))
        #expect(call(e, "setuid", [UInt64(UInt32.max)]) == .failure(Errno(EINVAL)), "setuid(-1) is EINVAL, as the kernel says")
    }

    @Test func withoutTheCapabilityOnlyOwnIdsCanBeSet() {
        let e = fresh()
        #expect(call(e, "setreuid", [5, 6]) == .success(0))
        #expect(ids(e)[0...2] == [5, 6, 6], "a new real uid also sets the saved one")
        #expect(call(e, "setreuid", [6, 5]) == .success(0))
        #expect(call(e, "setuid", [9]) == .failure(Errno(EPERM)))
        #expect(call(e, "setfsuid", [9]) == .success(5), "setfsuid answers the old fsuid and ignores a stranger")
        #expect(call(e, "getresuid", []) == .failure(Errno(EFAULT)), "null pointers are the caller's fault")
    }
}
