// Which cgroup manager holds a sandbox, and what becomes of each limit.
//
// Automatic: systemd when a user manager answers (rootless cgroup v2
// belongs to it); cgroupfs when this process sits in a cgroup v2 subtree
// delegated to the user; otherwise none. A limit whose controller the
// chosen manager does not have is not silently dropped: it is a warning
// naming the limit, the reason and the fix, or an error when it is
// required (C38, C39: never a silent unlimited sandbox).

import NookSpec

public enum CgroupManagerKind: String, Equatable, Sendable {
    case systemd, cgroupfs, none
}

/// The user's systemd manager, as it answered.
public struct SystemdFacts: Equatable, Sendable {
    public var address: String
    public var version: String
    /// The manager's own cgroup, `/user.slice/user-1001.slice/user@1001.service`.
    public var controlGroup: String
    /// The controllers its units can use (cgroup.controllers of that cgroup).
    public var controllers: Set<String>

    public init(address: String, version: String, controlGroup: String, controllers: Set<String>) {
        self.address = address
        self.version = version
        self.controlGroup = controlGroup
        self.controllers = controllers
    }

    /// `user@1001.service`.
    public var unit: String { controlGroup.split(separator: "/").last.map(String.init) ?? controlGroup }
}

/// A cgroup v2 subtree delegated to the user, where nook makes sandbox
/// cgroups itself.
public struct DelegatedSubtree: Equatable, Sendable {
    /// The cgroup sandbox cgroups are made in (the parent of nook's own).
    public var parent: String
    /// Its directory.
    public var directory: String
    /// Controllers enabled for its children.
    public var controllers: Set<String>
    /// Why a controller nook needed could not be enabled, by controller.
    public var unavailable: [String: String]

    public init(parent: String, directory: String, controllers: Set<String>, unavailable: [String: String] = [:]) {
        self.parent = parent
        self.directory = directory
        self.controllers = controllers
        self.unavailable = unavailable
    }
}

/// What nook found out about the ways it could place a sandbox.
public struct CgroupFacts: Equatable, Sendable {
    public var host: CgroupHost
    public var userName: String
    public var systemd: SystemdFacts?
    /// Why no systemd manager answered (when asked).
    public var systemdProblem: String?
    public var subtree: DelegatedSubtree?
    /// Why there is no delegated subtree to use (when looked for).
    public var subtreeProblem: String?

    public init(host: CgroupHost, userName: String, systemd: SystemdFacts? = nil, systemdProblem: String? = nil,
                subtree: DelegatedSubtree? = nil, subtreeProblem: String? = nil) {
        self.host = host
        self.userName = userName
        self.systemd = systemd
        self.systemdProblem = systemdProblem
        self.subtree = subtree
        self.subtreeProblem = subtreeProblem
    }
}

/// The manager chosen, and what the user should hear about it.
public struct CgroupPlan: Equatable, Sendable {
    public var manager: CgroupManagerKind
    /// One per limit that will not be enforced.
    public var warnings: [String] = []
    /// What was chosen, for --verbose.
    public var info: [String] = []
    /// Why the sandbox gets no cgroup of its own (manager none).
    public var noCgroupReason: String?

    public init(manager: CgroupManagerKind) { self.manager = manager }
}

public enum CgroupPlanner {
    /// The manager for `request` on a host with `facts`.
    public static func plan(_ request: CgroupRequest, facts: CgroupFacts) throws(CgroupFailure) -> CgroupPlan {
        var none: (reason: String, fix: String)?
        let manager: CgroupManagerKind
        switch request.manager {
        case .systemd:
            guard facts.systemd != nil else {
                throw CgroupFailure("--cgroup-manager systemd: \(facts.systemdProblem ?? "no systemd user manager answers")",
                                    hint: noManagerFix(facts))
            }
            manager = .systemd
        case .cgroupfs:
            guard facts.subtree != nil else {
                throw CgroupFailure("--cgroup-manager cgroupfs: \(facts.subtreeProblem ?? "no delegated cgroup v2 subtree")",
                                    hint: subtreeFix)
            }
            manager = .cgroupfs
        case .none:
            manager = .none
            none = ("--cgroup-manager none was given", "leave out --cgroup-manager none")
        case .auto:
            if facts.systemd != nil {
                manager = .systemd
            } else if facts.subtree != nil {
                manager = .cgroupfs
            } else {
                manager = .none
                none = (noManagerReason(facts), noManagerFix(facts))
            }
        }

        var plan = CgroupPlan(manager: manager)
        switch manager {
        case .systemd:
            if let s = facts.systemd {
                plan.info.append("cgroup manager: systemd (user manager \(s.version) at \(s.address)); a scope in "
                    + "\(request.slice), controllers: \(list(s.controllers))")
            }
        case .cgroupfs:
            if let t = facts.subtree {
                plan.info.append("cgroup manager: cgroupfs (a cgroup in \(t.parent)), controllers: \(list(t.controllers))")
            }
        case .none:
            plan.noCgroupReason = none?.reason
            plan.info.append("cgroup manager: none (\(none?.reason ?? ""))")
        }

        var refused: [(String, String)] = []
        for (name, value) in request.limits.asked where request.limits.needsController(name) {
            let problem: (reason: String, fix: String)?
            switch manager {
            case .none:
                problem = none
            case .systemd:
                let s = facts.systemd
                problem = s.map { $0.controllers.contains(name.controller) } == true ? nil
                    : missingController(name.controller, holder: "your systemd user manager (\(s?.unit ?? "?"))",
                                        has: s?.controllers ?? [], host: facts.host)
            case .cgroupfs:
                let t = facts.subtree
                if t.map({ $0.controllers.contains(name.controller) }) == true {
                    problem = nil
                } else if let why = t?.unavailable[name.controller], facts.host.v1Controllers[name.controller] == nil {
                    problem = (why, subtreeFix)
                } else {
                    problem = missingController(name.controller, holder: t?.parent ?? "the delegated subtree",
                                                has: t?.controllers ?? [], host: facts.host)
                }
            }
            guard let problem else { continue }
            if request.required.contains(name) {
                refused.append(("the required \(name.rawValue) limit (\(value)) cannot be enforced: \(problem.reason)",
                                problem.fix))
            } else {
                plan.warnings.append("\(name.rawValue) limit \(value) is not enforced: \(problem.reason). "
                    + "Fix: \(problem.fix)")
            }
        }
        if let first = refused.first {
            throw CgroupFailure(refused.map(\.0).joined(separator: "; "), hint: first.1)
        }
        return plan
    }

    static func list(_ controllers: Set<String>) -> String {
        controllers.isEmpty ? "none" : controllers.sorted().joined(separator: " ")
    }

    static func noManagerReason(_ facts: CgroupFacts) -> String {
        var parts: [String] = []
        parts.append("no systemd user manager answers" + (facts.systemdProblem.map { " (\($0))" } ?? ""))
        parts.append("nook's own cgroup is not in a cgroup v2 subtree delegated to \(facts.userName)"
            + (facts.subtreeProblem.map { " (\($0))" } ?? ""))
        return "no cgroup manager: " + parts.joined(separator: ", and ")
    }

    static func noManagerFix(_ facts: CgroupFacts) -> String {
        "let your systemd user manager run: a login session starts it, and for a user without one (CI) "
            + "sudo loginctl enable-linger \(facts.userName) does; nook doctor checks the rest"
    }

    static let subtreeFix = "run nook from a leaf cgroup of a subtree delegated to you "
        + "(systemd-run --user -p Delegate=yes ...), or use --cgroup-manager systemd"

    static let delegateFix = "delegate the controllers to user managers: "
        + "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' "
        + "| sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload, "
        + "then log in again"

    static let unifiedFix = "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line so that every "
        + "controller is on cgroup v2 (then check nook doctor)"

    /// Why `controller` is not there, and the fix: a hybrid or v1 host
    /// cannot delegate a v1 controller at all; a v2 host just did not.
    static func missingController(_ controller: String, holder: String, has: Set<String>,
                                  host: CgroupHost) -> (reason: String, fix: String) {
        if host.v2Mount == nil {
            return ("this host has no cgroup v2 hierarchy (cgroup v1 only)", unifiedFix)
        }
        if let v1 = host.v1Controllers[controller] {
            return ("the \(controller) controller is on cgroup v1 (\(v1)): this host has hybrid cgroups, and only "
                + "cgroup v2 controllers can be delegated to \(holder) (it has: \(list(has)))", unifiedFix)
        }
        return ("the \(controller) controller is not delegated to \(holder) (it has: \(list(has)))", delegateFix)
    }
}
