import NookCgroups
import NookSpec
import Testing

/// The automatic choice of a cgroup manager, and what each limit becomes.
struct ChoiceTests {
    /// This machine: controllers on v1, an empty v2 hierarchy.
    static let hybrid = CgroupHost(v2Mount: "/sys/fs/cgroup/unified",
                                   v1Controllers: ["memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
                                                   "cpu": "/sys/fs/cgroup/cpu"],
                                   ownCgroup: "/user.slice/user-1000.slice/session-1.scope")
    static let unified = CgroupHost(v2Mount: "/sys/fs/cgroup", ownCgroup: "/user.slice/user-1000.slice/session-1.scope")
    static let manager = SystemdFacts(address: "unix:path=/run/user/1000/bus", version: "252",
                                      controlGroup: "/user.slice/user-1000.slice/user@1000.service",
                                      controllers: ["cpu", "cpuset", "io", "memory", "pids"])

    func request(manager: CgroupManagerChoice = .auto, required: Set<LimitName> = [],
                 _ build: (inout ResourceLimits) -> Void = { _ in }) throws -> CgroupRequest {
        var limits = ResourceLimits()
        build(&limits)
        return CgroupRequest(limits: try CgroupLimits(Resolver.resources(limits)), manager: manager, required: required)
    }

    func limits64(_ l: inout ResourceLimits) {
        l.memory = .value(256 << 20)
        l.pids = .value(64)
    }

    @Test func automaticPicksSystemdWhenAUserManagerAnswers() throws {
        let facts = CgroupFacts(host: Self.unified, userName: "ada", systemd: Self.manager,
                                subtree: DelegatedSubtree(parent: "/x", directory: "/sys/fs/cgroup/x", controllers: []))
        let plan = try CgroupPlanner.plan(request(limits64), facts: facts)
        #expect(plan.manager == .systemd)
        #expect(plan.warnings.isEmpty)
        #expect(plan.info.first?.hasPrefix("cgroup manager: systemd (user manager 252 at unix:path=/run/user/1000/bus)")
            == true)
    }

    @Test func automaticPicksCgroupfsInADelegatedSubtreeWithoutAManager() throws {
        let subtree = DelegatedSubtree(parent: "/ci.service", directory: "/sys/fs/cgroup/ci.service",
                                       controllers: ["memory", "pids"])
        let facts = CgroupFacts(host: Self.unified, userName: "ci", systemdProblem: "connect: ENOENT", subtree: subtree)
        let plan = try CgroupPlanner.plan(request(limits64), facts: facts)
        #expect(plan.manager == .cgroupfs)
        #expect(plan.warnings.isEmpty)
    }

    @Test func withoutEitherEachLimitIsOneWarningWithReasonAndFix() throws {
        let facts = CgroupFacts(host: Self.unified, userName: "ada", systemdProblem: "connect to unix:path=/run/user/1000/bus: ENOENT",
                                subtreeProblem: "its parent /user.slice/user-1000.slice is not yours to write")
        let plan = try CgroupPlanner.plan(request(limits64), facts: facts)
        #expect(plan.manager == .none)
        #expect(plan.warnings.count == 2)
        #expect(plan.warnings[0].hasPrefix("memory limit 256 MiB is not enforced: no cgroup manager: no systemd user "
            + "manager answers (connect to unix:path=/run/user/1000/bus: ENOENT), and nook's own cgroup is not in a "
            + "cgroup v2 subtree delegated to ada (its parent"))
        #expect(plan.warnings[1].hasPrefix("pids limit 64 is not enforced: no cgroup manager"))
        #expect(plan.warnings.allSatisfy { $0.contains("Fix: let your systemd user manager run")
            && $0.contains("sudo loginctl enable-linger ada") })
        #expect(plan.noCgroupReason?.hasPrefix("no cgroup manager") == true)
    }

    @Test func noLimitsMeansNoWarningsWhateverTheManager() throws {
        let facts = CgroupFacts(host: Self.hybrid, userName: "ada")
        #expect(try CgroupPlanner.plan(request(), facts: facts).warnings.isEmpty)
        let unlimited = try request { $0.memory = .max; $0.pids = .max }
        #expect(try CgroupPlanner.plan(unlimited, facts: facts).warnings.isEmpty)
        #expect(try CgroupPlanner.plan(unlimited, facts: facts).manager == .none)
    }

    @Test func onAHybridHostTheMissingControllerIsNamedWithItsCause() throws {
        var manager = Self.manager
        manager.controllers = []
        let facts = CgroupFacts(host: Self.hybrid, userName: "ada", systemd: manager)
        let plan = try CgroupPlanner.plan(request(limits64), facts: facts)
        #expect(plan.manager == .systemd)
        #expect(plan.warnings == [
            "memory limit 256 MiB is not enforced: the memory controller is on cgroup v1 (/sys/fs/cgroup/memory): "
                + "this host has hybrid cgroups, and only cgroup v2 controllers can be delegated to your systemd user "
                + "manager (user@1000.service) (it has: none). Fix: boot with systemd.unified_cgroup_hierarchy=1 on "
                + "the kernel command line so that every controller is on cgroup v2 (then check nook doctor)",
            "pids limit 64 is not enforced: the pids controller is on cgroup v1 (/sys/fs/cgroup/pids): this host has "
                + "hybrid cgroups, and only cgroup v2 controllers can be delegated to your systemd user manager "
                + "(user@1000.service) (it has: none). Fix: boot with systemd.unified_cgroup_hierarchy=1 on the kernel "
                + "command line so that every controller is on cgroup v2 (then check nook doctor)",
        ])
    }

    @Test func onAUnifiedHostAnUndelegatedControllerGetsTheDelegateFix() throws {
        var manager = Self.manager
        manager.controllers = ["memory", "pids"]
        let facts = CgroupFacts(host: Self.unified, userName: "ada", systemd: manager)
        let plan = try CgroupPlanner.plan(request { $0.cpus = 2; $0.pids = .value(10) }, facts: facts)
        #expect(plan.warnings.count == 1)
        #expect(plan.warnings[0].hasPrefix("cpus limit 2 CPUs is not enforced: the cpu controller is not delegated to "
            + "your systemd user manager (user@1000.service) (it has: memory pids). Fix: delegate the controllers"))
        #expect(plan.warnings[0].contains("Delegate=cpu cpuset io memory pids"))
    }

    @Test func aRequiredLimitThatCannotHoldIsAnErrorNamingEveryOne() throws {
        let facts = CgroupFacts(host: Self.hybrid, userName: "ada")
        let r = try request(required: [.memory, .pids], limits64)
        #expect {
            try CgroupPlanner.plan(r, facts: facts)
        } throws: { error in
            guard let failure = error as? CgroupFailure else { return false }
            return failure.message.hasPrefix("the required memory limit (256 MiB) cannot be enforced: no cgroup manager")
                && failure.message.contains("; the required pids limit (64) cannot be enforced")
                && failure.hint?.contains("loginctl enable-linger ada") == true
        }
        // Only the required one is an error; the other stays a warning
        // (and the launch does not happen, so it is never printed).
        let one = try request(required: [.pids]) { $0.pids = .value(64); $0.cpuWeight = 10 }
        #expect(throws: CgroupFailure.self) { try CgroupPlanner.plan(one, facts: facts) }
        // A required limit that can hold is fine.
        let held = CgroupFacts(host: Self.unified, userName: "ada", systemd: Self.manager)
        #expect(try CgroupPlanner.plan(r, facts: held).warnings.isEmpty)
    }

    @Test func anExplicitManagerThatIsMissingIsAnErrorAndNoneWarnsPerLimit() throws {
        let facts = CgroupFacts(host: Self.unified, userName: "ada", systemdProblem: "connect: ECONNREFUSED",
                                subtreeProblem: "it is the root cgroup")
        #expect(throws: CgroupFailure("--cgroup-manager systemd: connect: ECONNREFUSED",
                                      hint: "let your systemd user manager run: a login session starts it, and for a "
                                          + "user without one (CI) sudo loginctl enable-linger ada does; nook doctor "
                                          + "checks the rest")) {
            try CgroupPlanner.plan(request(manager: .systemd), facts: facts)
        }
        #expect(throws: CgroupFailure.self) { try CgroupPlanner.plan(request(manager: .cgroupfs), facts: facts) }
        let withManager = CgroupFacts(host: Self.unified, userName: "ada", systemd: Self.manager)
        let none = try CgroupPlanner.plan(request(manager: .none) { $0.pids = .value(5) }, facts: withManager)
        #expect(none.manager == .none)
        #expect(none.warnings == ["pids limit 5 is not enforced: --cgroup-manager none was given. "
            + "Fix: leave out --cgroup-manager none"])
    }

    @Test func cgroupfsNamesAControllerItCouldNotEnable() throws {
        let subtree = DelegatedSubtree(parent: "/ci.service", directory: "/sys/fs/cgroup/ci.service",
                                       controllers: ["pids"],
                                       unavailable: ["memory": "enabling memory in /sys/fs/cgroup/ci.service/"
                                           + "cgroup.subtree_control: EBUSY (Device or resource busy)"])
        let facts = CgroupFacts(host: Self.unified, userName: "ci", subtree: subtree)
        let plan = try CgroupPlanner.plan(request(limits64), facts: facts)
        #expect(plan.manager == .cgroupfs)
        #expect(plan.warnings.count == 1)
        #expect(plan.warnings[0].hasPrefix("memory limit 256 MiB is not enforced: enabling memory in "))
        #expect(plan.warnings[0].contains("Fix: run nook from a leaf cgroup of a subtree delegated to you"))
    }

    @Test func aHostWithoutCgroupV2SaysSo() throws {
        let legacy = CgroupHost(v2Mount: nil, v1Controllers: ["memory": "/sys/fs/cgroup/memory"])
        var manager = Self.manager
        manager.controllers = []
        let plan = try CgroupPlanner.plan(request { $0.memory = .value(1 << 30) },
                                          facts: CgroupFacts(host: legacy, userName: "ada", systemd: manager))
        #expect(plan.warnings.first?.contains("this host has no cgroup v2 hierarchy (cgroup v1 only)") == true)
    }
}
