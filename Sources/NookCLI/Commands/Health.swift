#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import FoundationEssentials
import NookCgroups
import NookRuntime
import NookSpec
import NookState
import NookSupport

// How a health check runs. The container's monitor must go on relaying
// output and signals while a check runs, so a check is a process of its
// own: the monitor (or `nook healthcheck run`) starts `nook __health ID`,
// a fresh nook, which joins the container as `nook exec` does (the
// container's ids, capabilities, no_new_privs, rlimits, seccomp filter and
// environment, from nook's own record) and runs the check's command. Its
// stdout and stderr go to a pipe the caller reads, its verdict to another.
//
// Where the container has a cgroup, each check runs in a cgroup of its
// own, `health/check-PID` (PID: the helper's) beside the container's leaf,
// below the scope that carries the limits: it counts against the
// container's limits, and the container cannot see or change that cgroup
// (its cgroup namespace is rooted at its own leaf). Once the check's
// command has ended, and when it runs past its timeout, whatever it
// started is killed through that cgroup's `cgroup.kill` and the cgroup
// removed; as the cgroup is the check's alone, a manual check and the
// monitor's never end each other's. Without a cgroup the helper can only
// have the check's init kill the check's process group past the timeout;
// what a check leaves running in the background after it ended stays in
// the container, as after `nook exec`. The caller waits for nothing: a
// helper that does not end soon after the timeout is killed.

/// The internal `nook __health ID`: runs a container's health check once.
/// stdout and stderr are the check's; descriptor 3 gets one line:
/// "exit N" or "timeout".
enum HealthHelper {
    static let command = "__health"
    static let resultFD: Int32 = 3

    static func main(_ args: [String]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // Only 0-3 are meant for this process.
        _ = nook_close_range(4, ~0, NOOK_CLOSE_RANGE_CLOEXEC)
        guard args.count == 1 else {
            writeStderr("nook: \(command) takes a container id\n")
            return 125
        }
        do {
            let (status, timedOut) = try runCheck(args[0])
            report(timedOut ? "timeout\n" : "exit \(status.code)\n")
            return status.code
        } catch let failure as any NookFailure {
            Main.report(failure)
            report("exit \(failure.exitCode)\n")
            return failure.exitCode
        } catch {
            writeStderr("nook: \(error)\n")
            report("exit 125\n")
            return 125
        }
    }

    static func report(_ line: String) {
        writeAll(resultFD, line)
        close(resultFD)
    }

    static func runCheck(_ id: String) throws -> (ExitStatus, timedOut: Bool) {
        let environment = HostProbe.currentEnvironment()
        let store = try ContainerStore(environment: environment, create: false)
        let record = try store.record(id)
        guard let check = record.healthcheck else {
            throw ContainerFailure("container \(record.name) has no health check",
                                   hint: "give one when making it: nook run -d --health-cmd ..., or a profile's [health]")
        }
        let join = try ContainerJoin(record, reference: record.name, in: store)
        defer { close(join.pidfd) }
        var spec = join.spec
        var process = spec.process ?? Process(user: User(uid: 0, gid: 0), args: [], env: [], cwd: "/")
        process.args = check.command
        process.terminal = false
        process.consoleSize = nil
        spec.process = process
        let namespaces = (spec.linux?.namespaces ?? []).map(\.type)

        var hooks = Launcher.Hooks()
        let healthCgroup = record.cgroup.flatMap { Self.cgroup(beside: $0, helper: getpid(), create: true) }
        defer { if let healthCgroup { Self.clear(healthCgroup, seconds: 2) } }
        if let cgroup = healthCgroup ?? record.cgroup { hooks.beforeStart = { pid in join.place(pid, in: cgroup, scope: record.scope) } }
        // Past the timeout: the whole check (its cgroup, or its process
        // group through its init); 5 s later, if even that did not end it,
        // the init itself.
        let start = Launcher.monotonic()
        final class Kills { var count = 0 }
        let kills = Kills()
        hooks.deadline = { kills.count >= 2 ? nil : start + check.timeout + 5 * Double(kills.count) }
        hooks.due = { pidfd in
            if kills.count == 0 {
                if let cgroup = healthCgroup { Self.killAll(cgroup) }
                Launcher.killPayloadGroup(pidfd: pidfd)
            } else {
                _ = nook_pidfd_send_signal(pidfd, SIGKILL, 0)
            }
            kills.count += 1
        }
        do {
            let status = try Launcher.exec(spec, pidfd: join.pidfd, namespaces: namespaces, interactive: false,
                                           hooks: hooks)
            return (status, kills.count > 0)
        } catch let failure as ChildFailure {
            // The command could not run (not found, not executable): said
            // with where the check came from and how to change it.
            throw ContainerFailure("the health check's command (from \(check.source)) cannot run: \(failure.description)",
                                   hint: failure.hint ?? "fix the command, or run the container with --no-healthcheck",
                                   exitCode: failure.exitCode)
        }
    }

    /// `SCOPE/health/check-PID` for the helper with pid `helper`, beside
    /// the container's leaf `SCOPE/sandbox`, made if `create` (nil when it
    /// cannot be); nil when the container has no such cgroup.
    static func cgroup(beside leaf: String, helper: pid_t, create: Bool) -> String? {
        let suffix = "/" + CgroupSession.leaf
        guard leaf.hasSuffix(suffix) else { return nil }
        let parent = String(leaf.dropLast(suffix.count)) + "/health"
        let dir = parent + "/check-\(helper)"
        guard create else { return dir }
        for path in [parent, dir] where mkdir(path, 0o755) != 0 && errno != EEXIST {
            Log.debug("no cgroup of its own for the check", ["path": path, "errno": "\(Errno.current)"])
            return nil
        }
        return dir
    }

    /// SIGKILL for every process in `cgroup`: cgroup.kill (Linux 5.14),
    /// before that each process it lists.
    static func killAll(_ cgroup: String) {
        let fd = open(cgroup + "/cgroup.kill", O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd >= 0 {
            defer { close(fd) }
            if write(fd, "1", 1) == 1 { return }
        }
        for line in (readTextFile(cgroup + "/cgroup.procs", limit: 1 << 20) ?? "").split(separator: "\n") {
            if let pid = pid_t(line), pid > 1 { kill(pid, SIGKILL) }
        }
    }

    /// Ends whatever a check left in its cgroup and removes the cgroup.
    /// A cgroup answers EBUSY to rmdir until its last process has gone, so
    /// that is retried for up to `seconds`; a cgroup left behind goes with
    /// the container's.
    static func clear(_ cgroup: String, seconds: Double) {
        let tries = max(1, Int(seconds * 100))
        for attempt in 0..<tries {
            if attempt % 20 == 0 { killAll(cgroup) }
            if rmdir(cgroup) == 0 || errno == ENOENT { return }
            guard errno == EBUSY else { break }
            if attempt + 1 < tries { usleep(10_000) }
        }
        Log.debug("the check's cgroup is left for now", ["path": cgroup, "errno": "\(Errno.current)"])
    }
}

/// One check in progress, seen from the process that started it.
final class RunningCheck {
    let pid: pid_t
    let pidfd: Int32
    private(set) var outputFD: Int32
    private(set) var resultFD: Int32
    let started: Double
    let startedMonotonic: Double
    let container: ContainerRecord
    private var output: [UInt8] = []
    private var result: [UInt8] = []
    private var truncated = false

    private init(pid: pid_t, pidfd: Int32, outputFD: Int32, resultFD: Int32, container: ContainerRecord) {
        self.pid = pid
        self.pidfd = pidfd
        self.outputFD = outputFD
        self.resultFD = resultFD
        self.container = container
        started = Timestamp.nowSeconds()
        startedMonotonic = Launcher.monotonic()
    }

    deinit {
        for fd in [pidfd, outputFD, resultFD] where fd >= 0 { close(fd) }
    }

    /// Starts `nook __health ID` with its output and verdict on pipes.
    static func spawn(_ record: ContainerRecord) throws -> RunningCheck {
        var out: [Int32] = [-1, -1], verdict: [Int32] = [-1, -1]
        guard pipe(&out) == 0 else { throw SystemFailure("pipe for a health check") }
        guard pipe(&verdict) == 0 else {
            out.forEach { close($0) }
            throw SystemFailure("pipe for a health check")
        }
        for fd in out + verdict { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let started = SelfSpawn.start(["nook", HealthHelper.command, record.id],
                                      descriptors: [(0, .devNull(write: false)), (1, .descriptor(out[1])),
                                                    (2, .descriptor(out[1])),
                                                    (HealthHelper.resultFD, .descriptor(verdict[1]))])
        close(out[1])
        close(verdict[1])
        let pid: pid_t
        switch started {
        case .success(let p):
            pid = p
        case .failure(let e):
            close(out[0])
            close(verdict[0])
            throw SystemFailure("start a health check", errno: e)
        }
        let pidfd = nook_pidfd_open(pid, 0)
        guard pidfd >= 0 else {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            close(out[0])
            close(verdict[0])
            throw SystemFailure("open a pidfd for the health check", errno: Errno(-pidfd))
        }
        for fd in [out[0], verdict[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return RunningCheck(pid: pid, pidfd: pidfd, outputFD: out[0], resultFD: verdict[0], container: record)
    }

    /// The descriptors to poll: the helper's end, and its pipes until EOF.
    var descriptors: [Int32] { [pidfd, outputFD, resultFD].filter { $0 >= 0 } }

    /// Reads what `fd` (one of the pipes) has; closes it at EOF.
    func read(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return }
            if n == 0 {
                close(fd)
                if fd == outputFD { outputFD = -1 } else if fd == resultFD { resultFD = -1 }
                return
            }
            if fd == resultFD {
                result += buf[0..<min(n, 256)]
            } else {
                let room = HealthRecord.outputLimit - output.count
                if n > room { truncated = true }
                output += buf[0..<min(n, max(room, 0))]
            }
        }
    }

    /// True once the helper has ended (its pidfd is readable).
    var ended: Bool {
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    /// Kills the helper and, through its cgroup, whatever it left.
    func terminate() {
        _ = nook_pidfd_send_signal(pidfd, SIGKILL, 0)
        if let cgroup { HealthHelper.killAll(cgroup) }
    }

    /// The check's own cgroup, which the helper makes, when the container
    /// has a cgroup.
    var cgroup: String? {
        container.cgroup.flatMap { HealthHelper.cgroup(beside: $0, helper: pid, create: false) }
    }

    /// Reaps the helper (which has ended, or is killed now) and says how
    /// the check went. `forced`: the caller gave up waiting for it.
    func finish(forced: Bool = false) -> HealthRecord.Check {
        if forced { terminate() }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        for fd in [outputFD, resultFD] where fd >= 0 { read(fd) }
        // The helper clears its cgroup before its verdict; one killed, or
        // ended some other way, leaves that to its caller, without waiting.
        if let cgroup, forced || result.isEmpty { HealthHelper.clear(cgroup, seconds: 0) }
        let verdict = String(decoding: result, as: UTF8.self).trimming("\n ")
        var text = String(decoding: output, as: UTF8.self)
        if truncated {
            text += (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + "[output cut at \(HealthRecord.outputLimit) bytes]"
        }
        var code: Int32 = -1
        if forced {
            text += (text.isEmpty || text.hasSuffix("\n") ? "" : "\n")
                + "nook: the health check did not end within 10 s of its timeout and was killed"
        } else if verdict == "timeout" {
            text += (text.isEmpty || text.hasSuffix("\n") ? "" : "\n")
                + "nook: the health check ran past its timeout and was killed"
        } else if verdict.hasPrefix("exit "), let n = Int32(verdict.dropFirst(5)) {
            code = n
        } else {
            text += "nook: the health check's helper ended without a verdict (status \(status))"
        }
        return HealthRecord.Check(start: started, end: Timestamp.nowSeconds(), exitCode: code, output: text)
    }
}

/// A check's result into the container's record (and an event when the
/// status changed). Shared by the monitor and `nook healthcheck run`.
enum HealthBook {
    /// The status after `check`, and whether it changed; nil when the
    /// container no longer runs or has no check.
    @discardableResult
    static func add(_ check: HealthRecord.Check, to id: String, in store: ContainerStore)
        -> (status: HealthRecord.Status, changed: Bool, record: ContainerRecord)?
    {
        var changed = false
        var counted = false
        guard let record = try? store.update(id, { r in
            guard let config = r.healthcheck, r.status == .running else { return }
            var health = r.health ?? HealthRecord()
            changed = health.add(check, retries: config.retries, startPeriod: config.startPeriod, started: r.started)
            r.health = health
            counted = true
        }), counted, let health = record.health else { return nil }
        if changed {
            ContainerEvents.emit("health_status", record, ["healthStatus": health.status.rawValue])
        }
        return (health.status, changed, record)
    }
}

/// The monitor's side of a container's health check: when the next check
/// is due, the one in progress, and what it says. Driven by the launch
/// loop's hooks (descriptors, a deadline), so it never blocks the monitor.
final class HealthMonitor {
    let id: String
    let check: HealthCheck
    let store: ContainerStore
    /// Called after each of the monitor's checks that leaves the container
    /// unhealthy (whoever's checks made it so).
    var turnedUnhealthy: (ContainerRecord) -> Void = { _ in }
    private var next: Double?
    private var running: RunningCheck?
    /// When the monitor stops waiting for the check in progress.
    private var giveUp: Double?
    /// How long after its timeout a check's helper may take to end.
    static let grace = 10.0

    init(id: String, check: HealthCheck, store: ContainerStore) {
        self.id = id
        self.check = check
        self.store = store
    }

    /// The container's command runs: the first check is an interval away.
    func containerStarted() { next = Launcher.monotonic() + check.interval }

    /// The container's command has ended: no more checks.
    func containerEnded() {
        if let running { _ = running.finish(forced: !running.ended) }
        running = nil
        next = nil
    }

    var descriptors: [Int32] { running?.descriptors ?? [] }

    var deadline: Double? { running != nil ? giveUp : next }

    func readable(_ fd: Int32) {
        guard let running else { return }
        if fd == running.pidfd {
            complete(running.finish())
        } else {
            running.read(fd)
        }
    }

    func due() {
        let now = Launcher.monotonic()
        if let running, let giveUp, now >= giveUp {
            complete(running.finish(forced: true))
        } else if running == nil, let next, now >= next {
            start()
        }
    }

    private func start() {
        guard let record = try? store.record(id), record.status == .running else {
            next = nil
            return
        }
        do {
            running = try RunningCheck.spawn(record)
            giveUp = Launcher.monotonic() + check.timeout + Self.grace
            next = nil
        } catch {
            let now = Timestamp.nowSeconds()
            complete(HealthRecord.Check(start: now, end: now, exitCode: -1, output: "nook: \(error)"))
        }
    }

    private func complete(_ result: HealthRecord.Check) {
        running = nil
        giveUp = nil
        next = Launcher.monotonic() + check.interval
        // On being unhealthy, not only on turning so: `nook healthcheck run`
        // may have made the change, and then the monitor's own failures
        // change nothing. The monitor acts once per run of the command.
        if let (status, _, record) = HealthBook.add(result, to: id, in: store), status == .unhealthy {
            turnedUnhealthy(record)
        }
    }
}
