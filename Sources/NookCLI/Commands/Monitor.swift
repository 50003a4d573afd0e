#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookCgroups
import NookRuntime
import NookSpec
import NookState
import NookSupport

/// The monitor of a detached container (internal: `nook __monitor ID`,
/// started by `nook run -d`). It runs the container's `nook run` arguments
/// with the command's stdout and stderr going into pipes it reads into the
/// container's log, records in the container's state when the command
/// runs and how it ended, and starts it again as the restart policy says.
/// Its first word goes to `nook run -d` on descriptor 3: "ok" once the
/// command runs, or the error that stopped it.
enum MonitorCommand {
    static let command = "__monitor"
    static let statusFD: Int32 = 3

    static func main(_ args: [String]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let status = StatusChannel(fd: statusFD)
        guard args.count == 1 else {
            status.fail("nook: \(command) takes a container id\n")
            return 125
        }
        func said(_ error: any Error) -> String {
            guard let failure = error as? any NookFailure else { return "nook: \(error)\n" }
            return "nook: \(failure.description)\n" + (failure.hint.map { "  hint: \($0)\n" } ?? "")
        }
        let code = { (error: any Error) in (error as? any NookFailure)?.exitCode ?? 125 }
        let monitor: Monitor
        do {
            monitor = try Monitor(id: args[0], status: status)
        } catch {
            status.fail(said(error))
            return code(error)
        }
        do {
            return try monitor.run()
        } catch {
            monitor.failed(said(error))
            return code(error)
        }
    }
}

/// Says once, to the waiting `nook run -d`, whether the command started.
final class StatusChannel {
    private var fd: Int32

    init(fd: Int32) {
        self.fd = fcntl(fd, F_GETFD) >= 0 ? fd : -1
        if self.fd >= 0 { _ = fcntl(self.fd, F_SETFD, FD_CLOEXEC) }
    }

    var open: Bool { fd >= 0 }

    /// Whether `nook run -d` got the word: false when it is gone (killed
    /// before it could print the id), and nobody knows of the container.
    @discardableResult func ok() -> Bool { send("ok\n") }
    @discardableResult func fail(_ text: String) -> Bool { send(text) }

    /// A warning line before the verdict; the channel stays open.
    func warn(_ text: String) {
        guard fd >= 0 else { return }
        let line = Array((Self.warningPrefix + text.replacingOccurrences(of: "\n", with: " ") + "\n").utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    static let warningPrefix = "nook: warning: "

    private func send(_ text: String) -> Bool {
        guard fd >= 0 else { return false }
        let bytes = Array(text.utf8)
        var n = -1
        repeat {
            n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        } while n < 0 && errno == EINTR
        close(fd)
        fd = -1
        return n == bytes.count
    }
}

final class Monitor {
    let id: String
    let status: StatusChannel
    let environment = HostProbe.currentEnvironment()
    let store: ContainerStore
    var log: LogWriter?
    /// Read ends of the command's stdout and stderr.
    var output: [Int32: Int] = [:]
    /// The health check, when the container has one.
    var health: HealthMonitor?
    /// What on_unhealthy did to the run in progress, if anything.
    var healthAction: HealthAction?
    /// When an on_unhealthy restart's stop signal gives way to SIGKILL.
    var escalation: Double?
    /// OOM kills in the run's cgroup, told as they happen.
    var oomWatch: OOMWatch?
    /// How the last run ended, once one has.
    var lastExit: ContainerRecord.Exit?
    /// `nook run -d` was gone before it could print the id: the container
    /// is ended and removed, as if it had never been made.
    var orphaned = false

    init(id: String, status: StatusChannel) throws {
        self.id = id
        self.status = status
        store = try ContainerStore(environment: environment, create: false)
    }

    /// Runs the container until it stops for good; the exit status is the
    /// command's last one, or 0 when nook stopped it (stop, kill, rm), so a
    /// systemd unit running the container fails only when the command did.
    func run() throws -> Int32 {
        // Without it, wait and ps would take the container as ended at
        // its first exit, whatever its restart policy.
        guard let me = ProcessRef.current(getpid()) else {
            throw SystemFailure("read the monitor's own start time", path: "/proc/\(getpid())/stat")
        }
        var record = try store.update(id) { r in
            guard r.status == .created, r.monitor == nil else {
                throw ContainerFailure("container \(r.shortID) already has a monitor")
            }
            r.monitor = me
        }
        guard chdir(record.directory) == 0 else {
            throw SystemFailure("enter the directory the container was made in", path: record.directory)
        }
        try redirectOutput()
        let directory = try store.openDirectory(id)
        defer { close(directory) }
        log = try LogWriter(directory: directory, maxBytes: record.logMaxBytes)
        if let check = record.healthcheck {
            let monitor = HealthMonitor(id: id, check: check, store: store)
            monitor.turnedUnhealthy = { [unowned self] r in unhealthy(r) }
            health = monitor
        }

        while true {
            let exit: ContainerRecord.Exit
            var oomKills: UInt64 = 0
            healthAction = nil
            escalation = nil
            // nook stop or rm -f may come before the first start (while
            // nook run -d is still making the container): nothing starts.
            if let latest = try? store.record(id), latest.stopRequested {
                record = try store.update(id) { r in
                    r.status = .stopped
                    r.finished = Timestamp.nowSeconds()
                    if r.exit == nil { r.exit = .init(code: 0, reason: "stopped before its command started") }
                }
                status.fail("nook: container \(record.name) was stopped before its command started\n")
                break
            }
            do {
                (exit, oomKills) = try runOnce(record)
            } catch {
                health?.containerEnded()
                let text = (error as? any NookFailure).map { failure in
                    failure.description + (failure.hint.map { " (\($0))" } ?? "")
                } ?? "\(error)"
                // Said in the log too: the monitor's stderr is the container's.
                writeStderr("nook: \(text)\n")
                drain()
                // nook stop or rm -f came while the command was starting
                // and ended what was started (the scope's job then fails):
                // that, not the failure it caused, is what happened.
                if status.open, (try? store.record(id))?.stopRequested == true {
                    record = try store.update(id) { r in
                        r.status = .stopped
                        r.finished = Timestamp.nowSeconds()
                        r.exit = .init(code: 0, reason: "stopped while its command was starting")
                    }
                    status.fail("nook: container \(record.name) was stopped while its command was starting\n")
                    break
                }
                if status.open {
                    record = try store.update(id) { r in
                        r.status = .stopped
                        r.finished = Timestamp.nowSeconds()
                        r.exit = .init(code: 125, reason: "start failed: \(text)")
                    }
                    ContainerEvents.emit("die", record, ["exitCode": "125", "reason": "start failed"])
                    throw error
                }
                exit = .init(code: 125, reason: "start failed: \(text)")
            }
            let action = healthAction
            lastExit = exit
            record = try store.update(id) { r in
                r.status = .stopped
                r.finished = Timestamp.nowSeconds()
                r.exit = exit
                if let action { r.exit?.reason += "; nook \(action == .kill ? "killed" : "stopped") it: unhealthy "
                    + "(on_unhealthy = \(action.rawValue))" }
                r.initProcess = nil
                r.cgroup = nil
                r.scope = nil
            }
            if oomKills > 0 { ContainerEvents.emit("oom", record, ["count": String(oomKills)]) }
            var died = ["exitCode": String(exit.code), "reason": record.exit?.reason ?? exit.reason]
            if let signal = exit.signal { died["signal"] = String(signal) }
            if exit.oomKilled { died["oomKilled"] = "true" }
            ContainerEvents.emit("die", record, died)
            if action == .restart && !record.stopRequested {
                // Started again at once, whatever the restart policy says.
            } else {
                guard !record.stopRequested, record.restartPolicy.restarts(after: exit.code, done: record.restarts)
                else { break }
                // Backoff: 0.1 s doubling to 30 s, cut short by a stop.
                let delay = min(30.0, 0.1 * pow2(record.restarts))
                let until = Timestamp.nowSeconds() + delay
                while Timestamp.nowSeconds() < until {
                    usleep(100_000)
                    if (try? store.record(id))?.stopRequested == true { break }
                }
            }
            record = try store.update(id) { r in
                if !r.stopRequested { r.restarts = min(r.restarts, ContainerRecord.maximumCount - 1) + 1 }
            }
            if record.stopRequested { break }
            ContainerEvents.emit("restart", record, ["restarts": String(record.restarts),
                                                     "reason": action == .restart ? "unhealthy" : "restart policy"])
        }
        log?.flush()
        if record.autoRemove || orphaned {
            try store.remove(record)
            ContainerEvents.emit("remove", record)
        }
        return record.stopRequested ? 0 : record.exit?.code ?? 0
    }

    /// The monitor stops on an error. Before the first start, `nook run -d`
    /// says it; after, nobody waits on the channel, so the log and the
    /// state say it: a container whose restart policy was cut short must
    /// not look as if it had simply ended.
    func failed(_ text: String) {
        if status.open {
            // Nobody to tell the failure to (run -d is gone): nothing of
            // the container is kept, as run -d would have removed it.
            if !status.fail(text), let record = try? store.record(id), (try? store.remove(record)) != nil {
                ContainerEvents.emit("remove", record)
            }
            return
        }
        log?.append(ArraySlice(text.utf8), stream: 2)
        log?.flush()
        let said = text.dropFirst("nook: ".count).split(separator: "\n").first.map(String.init) ?? ""
        let why = "its monitor failed (\(said)); it will not start again"
        guard let record = try? store.update(id, { r in
            r.status = .stopped
            if r.finished == nil || r.exit == nil { r.finished = Timestamp.nowSeconds() }
            var exit = r.exit ?? lastExit ?? .init(code: 125, reason: "")
            exit.reason += exit.reason.isEmpty ? why : "; " + why
            r.exit = exit
            r.initProcess = nil
        }) else { return }
        var died = ["exitCode": String(record.exit?.code ?? 125), "reason": record.exit?.reason ?? why]
        if let signal = record.exit?.signal { died["signal"] = String(signal) }
        ContainerEvents.emit("die", record, died)
    }

    func pow2(_ n: Int) -> Double { n >= 10 ? 1024 : Double(1 << n) }

    /// One run of the command: resolved afresh (an image's lease is held
    /// while it runs), its output logged, its start recorded; how it ended
    /// and the OOM kills its cgroup saw.
    func runOnce(_ record: ContainerRecord) throws -> (ContainerRecord.Exit, UInt64) {
        let parsed = try OptionParser.parse(record.runArguments, options: RunCommand.options, command: "run",
                                            stopAtPositional: true)
        try CommonOptions.apply(parsed, environment: environment)
        // The caller saw the warnings when it made the container.
        if !parsed.has("verbose") && !parsed.has("debug") && parsed.value("log-level") == nil {
            Log.level = .error
        }
        // The image the container was made with, by id: a name loaded or
        // pulled again since, or removed, never changes what a restart runs
        // (a fresh try saw a restart run another image, or pull one).
        var prepared = try RunCommand.prepare(parsed, environment: environment, detached: true,
                                              image: record.annotations[Annotation.imageID])
        if let manager = record.cgroupManager {
            prepared.resolution.spec.annotations = (prepared.resolution.spec.annotations ?? [:])
                .merging([Annotation.cgroupManager: manager]) { _, pinned in pinned }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try store.write(id, file: "spec.json", Array(try encoder.encode(prepared.resolution.spec)))
        let hooks = RunCommand.MonitorHooks(
            started: { [self] pid, cgroup, scope, manager in
                var before: HealthRecord.Status?
                var recorded: ContainerRecord?
                if let r = try? store.update(id, { r in
                    r.cgroupManager = manager
                    r.status = .running
                    r.initProcess = ProcessRef.current(pid)
                    r.started = Timestamp.nowSeconds()
                    r.finished = nil
                    r.exit = nil
                    r.cgroup = cgroup
                    r.scope = scope
                    before = r.health?.status
                    r.health = r.healthcheck == nil ? nil : HealthRecord()
                }) {
                    recorded = r
                    ContainerEvents.emit("start", r)
                    // A restart starts the health over: a change as any other.
                    if let before, before != .starting, let now = r.health?.status {
                        ContainerEvents.emit("health_status", r, ["healthStatus": now.rawValue])
                    }
                }
                health?.containerStarted()
                if let leaf = cgroup {
                    let scope = String(leaf.dropLast(CgroupSession.leaf.count + 1))
                    oomWatch = OOMWatch(directory: scope)
                }
                // A stop that came while this run was being prepared (after
                // the check before it): the run ends at once.
                if let r = recorded, r.stopRequested { StopCommand.kill(r) }
                if status.open, !status.ok(), let r = recorded ?? (try? store.record(id)) {
                    // A fresh try killed run -d in its first milliseconds
                    // and found the container running, its id never shown.
                    orphaned = true
                    if let stopped = try? store.update(id, { $0.stopRequested = true }) { StopCommand.kill(stopped) }
                    else { StopCommand.kill(r) }
                }
            },
            warn: { [self] text in
                // The first start's warnings reach `nook run -d`; a
                // restart's go to the log, which is the monitor's stderr.
                if status.open { status.warn(text) } else { writeStderr("nook: warning: \(text)\n") }
            },
            watch: { [self] in
                var fds = Array(output.keys) + (health?.descriptors ?? [])
                if let watch = oomWatch { fds.append(watch.fd) }
                return fds
            },
            readable: { [self] fd in
                if let watch = oomWatch, fd == watch.fd {
                    let kills = watch.newKills()
                    if kills > 0, let r = try? store.record(id) {
                        ContainerEvents.emit("oom", r, ["count": String(kills)])
                    }
                } else if output[fd] != nil {
                    if !read(fd) { output[fd] = nil }
                } else {
                    health?.readable(fd)
                }
            },
            deadline: { [self] in [health?.deadline, escalation].compactMap { $0 }.min() },
            due: { [self] _ in
                if let at = escalation, at <= Launcher.monotonic() {
                    escalation = nil
                    if let r = try? store.record(id) { StopCommand.kill(r) }
                }
                health?.due()
            })
        let outcome = try withExtendedLifetime(prepared.lease) {
            try RunCommand.launch(prepared.resolution, userName: prepared.host.userName, stats: false,
                                  id: record.shortID, monitor: hooks)
        }
        health?.containerEnded()
        drain()
        // Kills the watch has not told yet (or all, without a watch).
        let told = oomWatch?.counted ?? 0
        oomWatch = nil
        var exit = ContainerRecord.Exit(code: outcome.code, reason: outcome.status.description)
        if case .signaled(let s, _) = outcome.status { exit.signal = s }
        if outcome.oomKilled {
            exit.oomKilled = true
            exit.reason = "killed by the OOM killer (memory limit)"
        }
        return (exit, outcome.oomKills > told ? outcome.oomKills - told : 0)
    }

    /// The container turned unhealthy: on_unhealthy says what to do.
    func unhealthy(_ record: ContainerRecord) {
        guard let check = record.healthcheck, check.onUnhealthy != .none, healthAction == nil,
              record.status == .running else { return }
        let failures = record.health?.failingStreak ?? check.retries
        switch check.onUnhealthy {
        case .none:
            return
        case .kill:
            writeStderr("nook: unhealthy after \(failures) failed checks; killing the container (on_unhealthy = kill)\n")
            healthAction = .kill
            guard let current = try? store.update(id, { $0.stopRequested = true }) else { return }
            ContainerEvents.emit("kill", current, ["signal": String(SIGKILL), "reason": "unhealthy"])
            StopCommand.kill(current)
        case .restart:
            writeStderr("nook: unhealthy after \(failures) failed checks; restarting the container "
                + "(on_unhealthy = restart)\n")
            healthAction = .restart
            ContainerEvents.emit("stop", record, ["signal": String(record.stopSignal), "reason": "unhealthy"])
            if let ref = record.initProcess, ref.signal(record.stopSignal) {
                escalation = Launcher.monotonic() + Double(record.stopTimeout)
            } else {
                StopCommand.kill(record)
            }
        }
    }

    /// The command's stdout and stderr become pipes this process reads.
    func redirectOutput() throws {
        for stream: Int32 in [1, 2] {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { throw SystemFailure("pipe for the container's output") }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(fds[0], F_SETPIPE_SZ_VALUE, 1 << 20)
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            guard dup2(fds[1], stream) == stream else { throw SystemFailure("set up the container's output") }
            close(fds[1])
            output[fds[0]] = Int(stream)
        }
    }

    /// Reads what is waiting on one of the pipes into the log; false at EOF.
    func read(_ fd: Int32) -> Bool {
        guard let stream = output[fd] else { return false }
        var buf = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<16 {
            let n = Glibc.read(fd, &buf, buf.count)
            if n > 0 {
                log?.append(buf[0..<n], stream: stream)
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            return n != 0
        }
        return true
    }

    /// What is left in the pipes once the command has ended.
    func drain() {
        for fd in output.keys { while read(fd) && hasData(fd) {} }
    }

    func hasData(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0 && p.revents & Int16(POLLIN) != 0
    }
}

/// F_SETPIPE_SZ (fcntl.h under _GNU_SOURCE).
let F_SETPIPE_SZ_VALUE: Int32 = 1031
