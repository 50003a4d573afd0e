#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookCgroups
import NookRuntime
import NookSpec
import NookState
import NookSupport

/// `nook run -d`: a container that outlives the command that started it.
///
/// nook resolves everything here first, so that bad flags, profiles and
/// images are reported to the caller; then it records the container and
/// starts its monitor, a nook process of its own in a new session (so the
/// terminal closing does not reach it), which runs the same `nook run`
/// arguments with the container's output going to its log. This command
/// returns once the monitor says the command is running, or why not.
enum DetachCommand {
    static let options: [OptionSpec] = [
        OptionSpec("detach", short: "d", "run in the background, as a container: print its id and return"),
        OptionSpec("name", value: "NAME", "with -d: the container's name (default: its short id)"),
        OptionSpec("rm", "with -d: remove the container once it has stopped"),
        OptionSpec("restart", value: "POLICY",
                   "with -d: no (default), always, on-failure or on-failure:N; the monitor starts it again"),
        OptionSpec("stop-signal", value: "SIGNAL",
                   "with -d: the signal nook stop sends first (default: the image's StopSignal, or TERM)"),
        OptionSpec("stop-timeout", value: "SECONDS", "with -d: how long nook stop waits before SIGKILL (default 10)"),
        OptionSpec("log-max-size", value: "SIZE", "with -d: rotate the log above SIZE (default 10M; two files are kept)"),
    ] + healthOptions

    /// The health check of a detached container; each replaces what the
    /// profile's [health] or the image's Healthcheck says.
    static let healthOptions: [OptionSpec] = [
        OptionSpec("health-cmd", value: "COMMAND",
                   "with -d: a health check run inside the container: a shell command (sh -c), a JSON array "
                       + "of strings [\"prog\", \"arg\"] (other text is a shell command), or none"),
        OptionSpec("health-interval", value: "DURATION", "with -d: time between checks (default 30s), as 30s, 500ms, 1m30s"),
        OptionSpec("health-timeout", value: "DURATION", "with -d: a check running longer fails and is killed (default 30s)"),
        OptionSpec("health-start-period", value: "DURATION",
                   "with -d: failures this soon after a start do not count until a check passes (default 0s)"),
        OptionSpec("health-retries", value: "N", "with -d: failed checks in a row that make it unhealthy (default 3)"),
        OptionSpec("health-on-unhealthy", value: "ACTION", "with -d: none (default), kill or restart"),
        OptionSpec("no-healthcheck", "no health check, not even the image's or the profile's (a run without -d has none)"),
    ]

    static let detachOnly = ["name", "restart", "stop-signal", "stop-timeout", "log-max-size"]
        + healthOptions.filter { $0.value != nil }.map(\.long)

    static func refuseWithoutDetach(_ parsed: ParsedOptions) throws {
        // -d --dry-run prints what a container would run.
        guard !parsed.has("detach") else { return }
        // --no-healthcheck is what a run in the foreground has anyway.
        for name in detachOnly where parsed.value(name) != nil || parsed.has(name) {
            throw UsageFailure("--\(name) applies to a detached container", hint: "add -d")
        }
    }

    /// The --health-* flags, checked, as a request layer over the profile.
    static func healthRequest(_ parsed: ParsedOptions) throws(UsageFailure) -> HealthRequest {
        var h = HealthRequest()
        if parsed.has("no-healthcheck") {
            if let other = healthOptions.first(where: { parsed.value($0.long) != nil }) {
                throw UsageFailure("--no-healthcheck and --\(other.long) do not go together",
                                   hint: "--no-healthcheck runs no check at all; drop one of them")
            }
            h.enabled = false
            h.origins["enabled"] = "--no-healthcheck"
            return h
        }
        if let text = parsed.value("health-cmd") {
            h.origins["command"] = "--health-cmd"
            if text == "none" {
                h.enabled = false
            } else {
                h.command = try healthCommand(text)
            }
        }
        func duration(_ flag: String, _ field: String, least: Double) throws(UsageFailure) -> Double? {
            guard let text = parsed.value(flag) else { return nil }
            guard let seconds = Durations.seconds(text) else {
                throw UsageFailure("--\(flag) \(text): not a duration",
                                   hint: "numbers with ms, s, m or h, as 30s, 500ms or 1m30s")
            }
            guard seconds >= least, seconds <= HealthCheck.longest else {
                throw UsageFailure("--\(flag) \(text): out of range", hint: "\(least > 0 ? "1ms" : "0s") to a year (8760h)")
            }
            h.origins[field] = "--" + flag
            return seconds
        }
        h.interval = try duration("health-interval", "interval", least: HealthCheck.shortest)
        h.timeout = try duration("health-timeout", "timeout", least: HealthCheck.shortest)
        h.startPeriod = try duration("health-start-period", "startPeriod", least: 0)
        if let text = parsed.value("health-retries") {
            guard let n = Int(text), (1...HealthCheck.maximumRetries).contains(n) else {
                throw UsageFailure("--health-retries \(text): not a number of retries",
                                   hint: "1 to \(HealthCheck.maximumRetries) failed checks in a row")
            }
            h.retries = n
            h.origins["retries"] = "--health-retries"
        }
        if let action = try parsed.choice("health-on-unhealthy", HealthAction.self) {
            h.onUnhealthy = action
            h.origins["onUnhealthy"] = "--health-on-unhealthy"
        }
        return h
    }

    /// `--health-cmd`: text that parses as a JSON array of strings is the
    /// program and its arguments (a leading "CMD" or "CMD-SHELL" as in an
    /// image's Test); any other text runs with /bin/sh -c, as docker and
    /// podman have it, so `[ -e /run/ready ]` is the shell's test.
    static func healthCommand(_ text: String) throws(UsageFailure) -> [String] {
        guard !text.trimming(" ").isEmpty else {
            throw UsageFailure("--health-cmd is empty", hint: "give a command, or --no-healthcheck for no check")
        }
        guard text.hasPrefix("["), let decoded = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
            return ["/bin/sh", "-c", text]
        }
        var argv = decoded
        if argv.first == "CMD-SHELL" {
            let command = argv.dropFirst().joined(separator: " ")
            guard !command.trimming(" ").isEmpty else {
                throw UsageFailure("--health-cmd \(text): [\"CMD-SHELL\"] without a command",
                                   hint: "as in [\"CMD-SHELL\", \"curl -f http://localhost/\"], or the command alone")
            }
            argv = ["/bin/sh", "-c", command]
        } else if argv.first == "CMD" {
            argv.removeFirst()
        }
        guard let first = argv.first, !first.isEmpty else {
            throw UsageFailure("--health-cmd \(text): names no program", hint: "as in [\"curl\", \"-f\", \"http://localhost/\"]")
        }
        return argv
    }

    static func start(_ args: [String], parsed: ParsedOptions, environment: [String: String]) throws -> Int32 {
        // Under a systemd unit (nook generate systemd), this process tells
        // the manager when the command runs; the socket is for nook alone,
        // not for the monitor or the container's environment.
        let notifySocket = environment["NOTIFY_SOCKET"]
        var environment = environment
        environment["NOTIFY_SOCKET"] = nil
        unsetenv("NOTIFY_SOCKET")
        for (flag, why) in [("interactive", "nothing reads a detached container's input"),
                            ("explain", "its summary is printed when the command ends, which no one sees"),
                            ("stats", "they are printed when the command ends, which no one sees"),
                            ("preserve-fds", "the monitor does not hold your descriptors")]
        where parsed.has(flag) || parsed.value(flag) != nil {
            throw UsageFailure("-d and --\(flag) do not go together: \(why)")
        }
        let settings = try Settings(parsed)
        let prepared = try RunCommand.prepare(parsed, environment: environment, detached: true)
        let spec = prepared.resolution.spec
        let store = try ContainerStore(environment: environment)
        let image = spec.annotations?[Annotation.image]
        let root = image ?? (spec.annotations?[Annotation.root] == "host" ? "host" : spec.root?.path ?? "?")
        let signal = try settings.stopSignal ?? imageStopSignal(spec) ?? SIGTERM
        let record = try store.create({ id, name in
            var r = ContainerRecord(id: id, name: name, created: Timestamp.nowSeconds(), image: image, root: root,
                                    command: spec.process?.args ?? [], runArguments: args,
                                    directory: prepared.host.cwd)
            r.stopSignal = signal
            r.stopTimeout = settings.stopTimeout
            r.restartPolicy = settings.restart
            r.autoRemove = parsed.has("rm")
            r.terminal = spec.process?.terminal ?? false
            r.logMaxBytes = settings.logMaxBytes
            r.annotations = (spec.annotations ?? [:]).filter { $0.key.hasPrefix("org.nook.") }
            r.healthcheck = prepared.resolution.health
            return r
        }, name: parsed.value("name"))
        ContainerEvents.emit("create", record)
        withExtendedLifetime(prepared.lease) {}
        // nook rm -f may remove the container while it is being made: what
        // then fails here (its directory is gone) is said as that.
        let removed = ContainerFailure("container \(record.name) was removed (nook rm -f) before its command started")

        var answer: String
        let monitor: pid_t
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try store.write(record.id, file: "spec.json", Array(try encoder.encode(spec)))
            (answer, monitor) = try spawnMonitor(record.id)
        } catch {
            guard let current = try? store.record(record.id) else { throw removed }
            if current.monitor.map({ !$0.isAlive }) ?? true, (try? store.remove(current)) != nil {
                ContainerEvents.emit("remove", current)
            }
            throw error
        }
        // Warnings of the start (a limit that will not hold) come first.
        while answer.hasPrefix(StatusChannel.warningPrefix), let end = answer.firstIndex(of: "\n") {
            writeStderr(String(answer[...end]))
            answer = String(answer[answer.index(after: end)...])
        }
        if answer.hasPrefix("ok") {
            writeStdout(record.id + "\n")
            if let notifySocket { notifyReady(socket: notifySocket, monitor: monitor, name: record.name) }
            return 0
        }
        // The monitor said why the command did not start (its own output,
        // already in the words nook prints).
        guard let current = try? store.record(record.id) else { throw removed }
        if (try? store.remove(current)) != nil { ContainerEvents.emit("remove", current) }
        writeStderr(answer.hasPrefix("nook:") ? answer : "nook: \(answer)")
        return 125
    }

    /// Type=notify: the command runs, and the monitor (in this unit's
    /// cgroup) is the main process from now on, whose exit ends the unit.
    static func notifyReady(socket: String, monitor: pid_t, name: String) {
        setenv("NOTIFY_SOCKET", socket, 1)
        do {
            try ServiceManager.notify("READY=1\nMAINPID=\(monitor)\nSTATUS=container \(name) runs")
        } catch {
            Log.warning("\(error.description); the unit may not see the container start")
        }
    }

    /// Starts the monitor and waits for its first word: "ok" once the
    /// command runs, or the error that stopped it; and the monitor's pid.
    static func spawnMonitor(_ id: String) throws -> (String, pid_t) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SystemFailure("pipe for the monitor") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(fds[0]) }
        let started = SelfSpawn.start(["nook", MonitorCommand.command, id],
                                      descriptors: [(0, .devNull(write: false)), (1, .devNull(write: true)),
                                                    (2, .devNull(write: true)),
                                                    (MonitorCommand.statusFD, .descriptor(fds[1]))],
                                      newSession: true)
        close(fds[1])
        let pid: pid_t
        switch started {
        case .success(let p): pid = p
        case .failure(let e): throw SystemFailure("start the container's monitor", errno: e)
        }
        // The monitor is not our child to wait for: it reaps itself (nook
        // is gone soon), so it is reaped here only if it ends at once.
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let deadline = Timestamp.nowSeconds() + 180
        while Timestamp.nowSeconds() < deadline {
            let r = poll(&p, 1, 1000)
            if r < 0 && errno == EINTR { continue }
            if r == 0 { continue }
            let n = read(fds[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
        let answer = String(decoding: bytes, as: UTF8.self)
        if answer.isEmpty {
            throw SystemFailure("start the container", errno: Errno(EIO),
                                hint: "its monitor ended without a word; nook logs \(id.prefix(12)) may say more")
        }
        return (answer, pid)
    }

    /// The image's StopSignal, as a number.
    static func imageStopSignal(_ spec: Spec) throws -> Int32? {
        guard let name = spec.annotations?[Annotation.stopSignal] else { return nil }
        return try Signals.number(name, what: "the image's StopSignal")
    }

    /// The detached-only flags, checked.
    struct Settings {
        var stopSignal: Int32?
        var stopTimeout = 10
        var restart = RestartPolicy.no
        var logMaxBytes = 10 << 20

        init(_ parsed: ParsedOptions) throws {
            if let s = parsed.value("stop-signal") { stopSignal = try Signals.number(s, what: "--stop-signal") }
            if let t = parsed.value("stop-timeout") {
                guard let n = Int(t), n >= 0, n <= 86_400 else {
                    throw UsageFailure("--stop-timeout \(t): not a number of seconds", hint: "0 to 86400")
                }
                stopTimeout = n
            }
            if let p = parsed.value("restart") { restart = try RestartPolicy(parsing: p) }
            if let size = parsed.value("log-max-size") {
                guard case .value(let n)? = LimitParser.bytes(size), n >= 4096 else {
                    throw UsageFailure("--log-max-size \(size): not a size of 4K or more", hint: "as in 512K, 10M, 1G")
                }
                logMaxBytes = Int(min(n, UInt64(Int.max)))
            }
        }
    }
}

/// Signal names and numbers, for --stop-signal, kill -s and StopSignal.
enum Signals {
    static let names: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT,
        "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV, "USR2": SIGUSR2,
        "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "STKFLT": 16, "CHLD": SIGCHLD, "CONT": SIGCONT,
        "STOP": SIGSTOP, "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG, "XCPU": SIGXCPU,
        "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM, "PROF": SIGPROF, "WINCH": SIGWINCH, "IO": SIGIO, "PWR": 30,
        "SYS": SIGSYS,
    ]

    /// `TERM`, `SIGTERM`, `15`, `RTMIN+3`: the number.
    static func number(_ text: String, what: String) throws(UsageFailure) -> Int32 {
        let upper = text.uppercased()
        let name = upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper
        if let n = Int32(name), n >= 1, n <= 64 { return n }
        if let n = names[name] { return n }
        // RTMIN, RTMIN+N (N from 0 to 30): nothing below RTMIN, which once
        // let RTMIN-34 through as signal 0 and RTMIN-40 as -6.
        let rest = name.dropFirst(5)
        if name.hasPrefix("RTMIN"), rest.isEmpty || rest.hasPrefix("+"),
           let offset = rest.isEmpty ? 0 : Int32(rest.dropFirst()), offset >= 0, 34 + offset <= 64 {
            return 34 + offset
        }
        throw UsageFailure("\(what) \(text): not a signal", hint: "a name as in TERM, HUP, KILL, or a number 1-64")
    }

    static func name(_ n: Int32) -> String {
        names.first { $0.value == n }.map { "SIG" + $0.key } ?? "signal \(n)"
    }
}
