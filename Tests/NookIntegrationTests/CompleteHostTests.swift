import Foundation
import Testing

/// The VM tier's guard (NOOK_TEST_TIER=vm, vm/run-tests): the host really is
/// the complete one the other suites were told to expect, so that a guest
/// that lost a piece (a controller, the user manager, the session) fails
/// here by name, not somewhere else by accident.
@Suite(.enabled(if: Harness.completeHost, "runs only where the host is complete: NOOK_TEST_TIER=vm (vm/run-tests)"))
struct CompleteHostTests {
    let h = Harness.shared

    @Test func theTestUserRunsNookUnprivilegedWithSubordinateIds() throws {
        #expect(h.problem == nil, "\(h.problem ?? "")")
        let user = try #require(h.user)
        #expect(user.uid != 0)
        let subuid = (try? String(contentsOfFile: "/etc/subuid", encoding: .utf8)) ?? ""
        #expect(subuid.split(separator: "\n").contains { $0.hasPrefix("\(user.name):") }, "\(subuid)")
    }

    @Test func cgroupV2IsTheOnlyHierarchyAndTheUserManagerHasEveryLimitController() {
        let mounts = ((try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(mounts.contains { $0.hasPrefix("cgroup2 /sys/fs/cgroup cgroup2 ") }, "\(mounts)")
        #expect(!mounts.contains { $0.split(separator: " ").dropFirst(2).first == "cgroup" }, "a cgroup v1 hierarchy: \(mounts)")
        #expect(h.userManagerRunning, "no systemd user manager answers for the test user")
        #expect(CgroupHostInfo.userManagerControllers.isSuperset(of: ["cpu", "cpuset", "io", "memory", "pids"]),
                "\(CgroupHostInfo.userManagerControllers.sorted())")
    }

    @Test func theTestsRunInALogindSessionOutsideTheUserManager() {
        // Like a CI job under ssh: a session of its own, whose processes the
        // user manager cannot move by itself (it asks the system manager).
        let env = ProcessInfo.processInfo.environment
        #expect(env["XDG_SESSION_ID"]?.isEmpty == false, "no logind session: \(env)")
        let cgroup = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        #expect(!cgroup.contains("/user@"), "\(cgroup)")
        #expect(env["XDG_RUNTIME_DIR"] == "/run/user/\(getuid())", "\(env)")
    }
}
