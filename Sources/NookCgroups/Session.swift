// One sandbox's cgroup from start to end, at the launcher's fixed points:
//
//   prepare   before launch: find the managers, choose, warn or refuse
//   place     after clone, before the payload may run (Hooks.beforeStart):
//             a systemd scope holding the pid, or a cgroupfs directory with
//             the limits written and the pid moved in; the launch waits for
//             this, so the payload never runs outside its cgroup
//
// The sandbox itself lives one level down, in a leaf "sandbox" below the
// scope or directory that carries the limits, and its cgroup namespace is
// rooted at that leaf. Rootless, every file of the scope belongs to the
// user, who is also the sandbox's owner inside (keep-id, or root mapped to
// the user): rooted at the scope, the sandbox could write its own
// memory.max. Below it, it may set limits on its leaf and make sub-cgroups
// (what Delegate= is for), all inside the scope's limits.
//   sample    after the payload ended, while the init still holds the
//             cgroup (Hooks.beforeRelease): the final counters
//   finish    after the init was reaped: stop the scope / remove the cgroup
//
// prepare asks the manager and closes the connection again; place opens its
// own. A descriptor opened before the launch would take a number the
// caller may mean for --preserve-fds, and the child must not inherit it.

#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

public final class CgroupSession {
    public let request: CgroupRequest
    public let facts: CgroupFacts
    public let plan: CgroupPlan
    /// The sandbox's id, which names its scope or cgroup.
    public let id: String
    let description: String

    private var bus: UserBus?
    /// The scope, once systemd made it.
    public private(set) var unit: String?
    /// The sandbox's cgroup directory, once it is in one.
    public private(set) var directory: String?
    private var baselineOOMKills: UInt64 = 0
    private var finalStats: CgroupStats?
    private var finished = false

    init(request: CgroupRequest, facts: CgroupFacts, plan: CgroupPlan, id: String, description: String) {
        self.request = request
        self.facts = facts
        self.plan = plan
        self.id = id
        self.description = description
    }

    /// Finds out what the host offers and chooses a manager. Throws when
    /// an explicit manager is missing or a required limit cannot hold.
    public static func prepare(_ request: CgroupRequest, id: String, command: String,
                               userName: String) throws(CgroupFailure) -> CgroupSession {
        let facts = probe(request, userName: userName)
        let plan = try CgroupPlanner.plan(request, facts: facts)
        let name = command.split(separator: "/").last.map(String.init) ?? command
        let printable = String(name.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.prefix(64))
        return CgroupSession(request: request, facts: facts, plan: plan, id: id,
                             description: "nook sandbox \(id): \(printable)")
    }

    /// Asks only what the choice needs: the user manager unless cgroupfs or
    /// none was chosen, the delegated subtree when there is no manager.
    static func probe(_ request: CgroupRequest, userName: String) -> CgroupFacts {
        var facts = CgroupFacts(host: CgroupHost.probe(), userName: userName)
        if request.manager == .auto || request.manager == .systemd {
            do {
                facts.systemd = try systemdFacts(host: facts.host)
            } catch {
                facts.systemdProblem = error.description
            }
        }
        if request.manager == .cgroupfs || (request.manager == .auto && facts.systemd == nil) {
            let needed = Set(request.limits.asked.filter { request.limits.needsController($0.name) }
                .map(\.name.controller))
            let found = DelegationProbe.subtree(host: facts.host, uid: getuid(), enabling: needed)
            facts.subtree = found.subtree
            facts.subtreeProblem = found.problem
        }
        return facts
    }

    static func systemdFacts(host: CgroupHost) throws(BusFailure) -> SystemdFacts {
        let bus = try UserBus.connect()
        let version = try bus.managerString("Version")
        let group = try bus.managerString("ControlGroup")
        let controllers = host.directory(of: group).flatMap(CgroupHost.controllers(of:)) ?? []
        return SystemdFacts(address: bus.address, version: version, controlGroup: group, controllers: controllers)
    }

    /// The leaf below the limits' cgroup where the sandbox runs.
    public static let leaf = "sandbox"

    /// With a cgroup of its own, the sandbox may write its cgroup mount
    /// (it sees only its leaf and below). Without one it stays read-only:
    /// rooted at nook's own cgroup, it could change what is not its own.
    public func grantCgroupMount(_ spec: inout Spec) {
        guard plan.manager != .none, var mounts = spec.mounts else { return }
        for i in mounts.indices where mounts[i].destination == Resolver.cgroupMountPoint && mounts[i].type == "cgroup2" {
            mounts[i].options = (mounts[i].options ?? []).filter { $0 != "ro" } + ["rw"]
        }
        spec.mounts = mounts
    }

    /// Puts the sandbox's first process `pid` in its cgroup. A failure here
    /// ends the launch (the payload has not run): the spec already gave
    /// the sandbox a writable cgroup mount, which must not be rooted
    /// anywhere but in its own cgroup.
    public func place(_ pid: pid_t) throws(CgroupFailure) {
        do {
            switch plan.manager {
            case .systemd: try placeInScope(pid)
            case .cgroupfs: try placeInSubtree(pid)
            case .none: return
            }
            try descendToLeaf(pid)
        } catch {
            finish()
            throw error
        }
    }

    /// Moves `pid` from the limits' cgroup into its leaf and lets the
    /// controllers through to it (possible now: the parent holds no
    /// process any more).
    func descendToLeaf(_ pid: pid_t) throws(CgroupFailure) {
        guard let directory else { return }
        let leaf = directory + "/" + Self.leaf
        guard mkdir(leaf, 0o755) == 0 || errno == EEXIST else {
            throw CgroupFailure("make cgroup \(leaf): \(Errno.current)")
        }
        if let e = CgroupIO.write(leaf + "/cgroup.procs", String(pid)) {
            throw CgroupFailure("move the sandbox (pid \(pid)) into \(leaf): \(e)")
        }
        let available = CgroupHost.controllers(of: directory) ?? []
        for controller in CgroupHost.limitControllers where available.contains(controller) {
            if let e = CgroupIO.write(directory + "/cgroup.subtree_control", "+" + controller) {
                Log.debug("cannot enable \(controller) below \(directory): \(e)")
            }
        }
    }

    func placeInScope(_ pid: pid_t) throws(CgroupFailure) {
        let name = SystemdScope.unitName(id: id)
        let properties = SystemdScope.properties(request.limits, pid: UInt32(pid), slice: request.slice,
                                                 description: description)
        do {
            let bus = try UserBus.connect()
            self.bus = bus
            let result = try bus.startTransientUnit(name, properties: properties)
            unit = name
            guard result == "done" || result == "unknown" else {
                throw CgroupFailure("start systemd scope \(name): its job ended '\(result)'",
                                    hint: "most often the user manager could not move the sandbox into the scope: "
                                        + Self.moveHint + ". journalctl --user -u \(name) says more")
            }
        } catch let failure as BusFailure {
            throw CgroupFailure("start systemd scope \(name): \(failure.description)", hint: Self.scopeHint(failure))
        } catch let failure as CgroupFailure {
            throw failure
        } catch {
            throw CgroupFailure("start systemd scope \(name): \(error)")
        }
        let cgroup = CgroupHost.parseProcCgroup(CgroupIO.read("/proc/\(pid)/cgroup") ?? "")
        guard let cgroup, cgroup.hasSuffix("/" + name), let dir = facts.host.directory(of: cgroup) else {
            throw CgroupFailure("systemd made \(name) but the sandbox is in \(cgroup ?? "no cgroup v2 cgroup")",
                                hint: "the user manager's log may say why it did not move pid \(pid)")
        }
        directory = dir
        baselineOOMKills = CgroupStats.read(directory: dir).oomKills ?? 0
        Log.info("cgroup: \(name) (\(cgroup))")
    }

    static let moveHint = "it can move only processes that already run in your cgroup subtree (a login "
        + "session, a user service); from elsewhere the system manager moves them, and without one root must "
        + "place nook there first. --cgroup-manager none runs without a cgroup"

    static func scopeHint(_ failure: BusFailure) -> String {
        if failure.errorMessage.contains("move") || failure.errno.rawValue == EACCES
            || failure.errno.rawValue == EPERM {
            return "the user manager " + moveHint
        }
        return "see nook doctor; --cgroup-manager none runs without a cgroup"
    }

    func placeInSubtree(_ pid: pid_t) throws(CgroupFailure) {
        guard let subtree = facts.subtree else { throw CgroupFailure("no delegated cgroup subtree") }
        let dir = subtree.directory + "/nook-\(id)"
        guard mkdir(dir, 0o755) == 0 else {
            throw CgroupFailure("make cgroup \(dir): \(Errno.current)", hint: CgroupPlanner.subtreeFix)
        }
        directory = dir
        for (file, value) in CgroupFiles.writes(request.limits) {
            let controller = String(file.prefix { $0 != "." })
            guard subtree.controllers.contains(controller) else { continue }
            if let e = CgroupIO.write(dir + "/" + file, value) {
                throw CgroupFailure("write \(value) to \(dir)/\(file): \(e)",
                                    hint: e.rawValue == EINVAL ? "the kernel refused the value" : nil)
            }
        }
        if let e = CgroupIO.write(dir + "/cgroup.procs", String(pid)) {
            throw CgroupFailure("move the sandbox (pid \(pid)) into \(dir): \(e)",
                                hint: "moving a process needs write access to cgroup.procs of \(subtree.directory)")
        }
        Log.info("cgroup: \(dir)")
    }

    /// Reads the final counters; the payload has ended and the init still
    /// keeps the cgroup.
    public func sample() {
        guard let directory else { return }
        finalStats = CgroupStats.read(directory: directory)
    }

    /// Removes the sandbox's cgroup: stops the scope (systemd would stop an
    /// empty scope by itself, but not before nook returns) or removes the
    /// cgroupfs directory. Safe to call twice.
    public func finish() {
        guard !finished else { return }
        finished = true
        if finalStats == nil, let directory { finalStats = CgroupStats.read(directory: directory) }
        if let unit, let bus {
            do {
                _ = try bus.stopUnit(unit, timeoutSeconds: 15)
            } catch {
                Log.warning("could not stop \(unit): \(error.description)")
            }
        } else if plan.manager == .cgroupfs, let directory {
            if let e = CgroupIO.removeTree(directory) { Log.warning("could not remove cgroup \(directory): \(e)") }
        }
        bus = nil
    }

    public var outcome: CgroupOutcome {
        let kills = (finalStats?.oomKills ?? 0) >= baselineOOMKills ? (finalStats?.oomKills ?? 0) - baselineOOMKills : 0
        return CgroupOutcome(manager: plan.manager, noCgroupReason: plan.noCgroupReason,
                             stats: directory == nil ? nil : finalStats, oomKills: kills,
                             memoryLimit: request.limits.memoryMax)
    }
}

/// Looking for a cgroup v2 subtree delegated to the user (cgroup-v2.rst
/// "Delegation Containment"): nook makes sandbox cgroups beside its own,
/// in its parent, which must be the user's; moving a process needs write
/// access to cgroup.procs of the common ancestor, and cgroup v2 lets
/// controllers reach only children of a cgroup holding no processes itself.
public enum DelegationProbe {
    public static func subtree(host: CgroupHost, uid: uid_t,
                               enabling needed: Set<String>) -> (subtree: DelegatedSubtree?, problem: String?) {
        guard host.v2Mount != nil else { return (nil, "no cgroup v2 hierarchy is mounted") }
        guard let own = host.ownCgroup else { return (nil, "/proc/self/cgroup has no cgroup v2 line") }
        guard own != "/" else { return (nil, "it is the root cgroup") }
        let parent = own.split(separator: "/").dropLast().reduce("") { $0 + "/" + $1 }
        guard !parent.isEmpty, let directory = host.directory(of: parent) else {
            return (nil, "its parent is the root cgroup")
        }
        for file in [directory, directory + "/cgroup.procs", directory + "/cgroup.subtree_control"] {
            guard CgroupIO.owner(file) == uid, CgroupIO.writable(file) else {
                return (nil, "\(file) is not yours to write")
            }
        }
        let words = { (text: String?) in Set((text ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)) }
        var enabled = words(CgroupIO.read(directory + "/cgroup.subtree_control"))
        let available = CgroupHost.controllers(of: directory) ?? []
        var unavailable: [String: String] = [:]
        for controller in needed.sorted() where !enabled.contains(controller) {
            guard available.contains(controller) else {
                unavailable[controller] = "the \(controller) controller is not available in \(parent) "
                    + "(it has: \(CgroupPlanner.list(available)))"
                continue
            }
            if let e = CgroupIO.write(directory + "/cgroup.subtree_control", "+" + controller) {
                unavailable[controller] = "enabling \(controller) in \(directory)/cgroup.subtree_control: \(e)"
                    + (e.rawValue == EBUSY ? " (\(parent) holds processes of its own)" : "")
            } else {
                enabled.insert(controller)
            }
        }
        return (DelegatedSubtree(parent: parent, directory: directory, controllers: enabled,
                                 unavailable: unavailable), nil)
    }
}
