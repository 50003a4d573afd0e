#if canImport(Glibc)
import Glibc
#endif
import NookCgroups
import NookRuntime
import NookState
import NookSupport

/// `nook stop`, `nook kill`, `nook rm`, `nook wait`: the end of a container.
enum StopCommand {
    static let usage = "nook stop [OPTIONS] CONTAINER..."
    static let summary = "stop detached containers (signal, wait, then SIGKILL)"

    static let options: [OptionSpec] = [
        OptionSpec("time", short: "t", value: "SECONDS",
                   "how long to wait after the stop signal before SIGKILL (default: the container's, 10)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Send each container its stop signal (--stop-signal, the image's StopSignal,
        or TERM), wait until it ends or the time is up, then kill everything in it
        with SIGKILL. A stopped container is not restarted by its restart policy.
        Stopping a stopped container does nothing.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "stop", help: help) else { return 0 }
        guard !parsed.positionals.isEmpty else { throw UsageFailure("stop: name a container", hint: usage) }
        var timeout: Int?
        if let t = parsed.value("time") {
            guard let n = Int(t), n >= 0, n <= 86_400 else {
                throw UsageFailure("--time \(t): not a number of seconds", hint: "0 to 86400")
            }
            timeout = n
        }
        let store = try Containers.store()
        return try Containers.each(parsed.positionals) { reference in
            try stop(try Containers.find(reference, in: store), in: store, timeout: timeout)
        }
    }

    /// Stops one container and waits until its monitor has ended: asked
    /// once (stopRequested), its monitor starts no further run, and a run
    /// it was starting at that moment (a restart, or the first start of a
    /// container still being made) is stopped too. A container removed
    /// meanwhile (--rm) counts as stopped.
    static func stop(_ record: ContainerRecord, in store: ContainerStore, timeout: Int?) throws {
        var current = try store.update(record.id) { $0.stopRequested = true }
        guard current.status != .stopped || Containers.monitorAlive(current) else { return }
        let wait = Double(timeout ?? current.stopTimeout)
        ContainerEvents.emit("stop", current, ["signal": String(current.stopSignal), "timeout": String(Int(wait))])
        var signalled = false
        let deadline = Timestamp.nowSeconds() + wait + 30
        while true {
            if current.status == .running, let ref = current.initProcess, ref.isAlive {
                if signalled {
                    kill(current)  // a run that started after the stop: no second grace
                } else {
                    signalled = true
                    ref.signal(current.stopSignal)
                    // A container stopped with kill -s STOP goes on, to
                    // take the signal (as systemd does after its SIGTERM).
                    for member in ref.namespaceMembers() where member.isStopped { member.signal(SIGCONT) }
                    if !Containers.waitForInit(current, seconds: wait) { kill(current) }
                }
            }
            // No monitor (not yet, or no more) and no run: nothing will
            // start it again (a monitor yet to come sees the mark first).
            if !Containers.monitorAlive(current) && current.status != .running { return }
            // A monitor held stopped (SIGSTOP, a debugger) records nothing:
            // stop and kill hung until their time was up (a fresh try).
            // The run ends either way; rm -f and KILL end the monitor too.
            if let monitor = current.monitor, monitor.isStopped {
                kill(current)
                guard timeout == 0 else {
                    throw ContainerFailure("container \(record.shortID)'s monitor (pid \(monitor.pid)) is stopped "
                        + "(SIGSTOP, or a debugger holds it): its processes were killed, but it cannot record the end",
                                           hint: "kill -CONT \(monitor.pid) lets it go on; nook rm -f \(record.name) ends it")
                }
                monitor.signal(SIGKILL)
            }
            guard Timestamp.nowSeconds() < deadline else {
                throw ContainerFailure("container \(record.shortID) did not stop within \(Int(wait) + 30) seconds",
                                       hint: "its monitor is pid \(current.monitor?.pid ?? 0); nook rm -f removes it")
            }
            usleep(20_000)
            guard let next = try? store.record(record.id) else { return }
            current = (try? Containers.reconcile(next, in: store)) ?? next
        }
    }

    /// SIGKILL for everything in the container: the whole cgroup where
    /// the kernel offers cgroup.kill (Linux 5.14), and the init, whose end
    /// takes every process of its pid namespace with it.
    static func kill(_ record: ContainerRecord) {
        let leaf = "/" + CgroupSession.leaf
        if let cgroup = record.cgroup, cgroup.hasSuffix(leaf) {
            let fd = open(String(cgroup.dropLast(leaf.count)) + "/cgroup.kill", O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
            if fd >= 0 {
                _ = write(fd, "1", 1)
                close(fd)
            }
        }
        record.initProcess?.signal(SIGKILL)
    }
}

enum KillCommand {
    static let usage = "nook kill [OPTIONS] CONTAINER..."
    static let summary = "send a signal to detached containers"

    static let options: [OptionSpec] = [
        OptionSpec("signal", short: "s", value: "SIGNAL", "the signal, by name or number (default KILL)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Send a signal to each container's init, which passes HUP, INT, QUIT, TERM,
        USR1, USR2, WINCH, ALRM, TSTP, TTIN, TTOU and the real-time signals on to
        the command; KILL (the default) ends the whole
        container at once, and is not restarted. STOP and CONT, which no init can
        pass on, go to every process of the container: STOP pauses it, CONT resumes
        it (nook stop resumes a paused container to give it the stop signal).

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "kill", help: help) else { return 0 }
        guard !parsed.positionals.isEmpty else { throw UsageFailure("kill: name a container", hint: usage) }
        let signal = try Signals.number(parsed.value("signal") ?? "KILL", what: "--signal")
        let store = try Containers.store()
        return try Containers.each(parsed.positionals) { reference in
            var record = try Containers.find(reference, in: store)
            let initAlive = record.status == .running && record.initProcess?.isAlive == true
            if signal == SIGKILL && !initAlive && Containers.monitorAlive(record) {
                // Between restarts (or a run just ending): KILL ends the
                // restarting as it ends a run, and a run the monitor was
                // already starting goes too (stop waits for the monitor).
                try StopCommand.stop(record, in: store, timeout: 0)
                ContainerEvents.emit("kill", record, ["signal": String(signal)])
                return
            }
            guard record.status == .running, let ref = record.initProcess, ref.isAlive else {
                let why = record.status == .running ? "its command has just ended"
                    : Containers.monitorAlive(record) && !record.stopRequested ? "it is restarting; only KILL ends that"
                    : Containers.statusText(record)
                throw ContainerFailure("container \(reference) is not running (\(why))")
            }
            if signal == SIGKILL {
                record = try store.update(record.id) { $0.stopRequested = true }
                StopCommand.kill(record)
            } else if signal == SIGSTOP || signal == SIGCONT {
                // Neither can be caught, so the init cannot pass them on:
                // STOP to the init alone froze it and left the command
                // running. Both go to every process of the container.
                let members = ref.namespaceMembers()
                guard !members.isEmpty else {
                    throw ContainerFailure("send \(Signals.name(signal)) to container \(reference): it has ended")
                }
                for member in members { member.signal(signal) }
            } else if !ref.signal(signal) {
                throw ContainerFailure("send \(Signals.name(signal)) to container \(reference): it has ended")
            }
            ContainerEvents.emit("kill", record, ["signal": String(signal)])
        }
    }
}

enum RemoveCommand {
    static let usage = "nook rm [OPTIONS] CONTAINER..."
    static let summary = "remove stopped detached containers"

    static let options: [OptionSpec] = [
        OptionSpec("force", short: "f", "stop running containers first (SIGKILL), and remove broken state"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Remove each container's state and logs. A running container is refused
        unless --force, which kills it first. --force also removes a container
        whose state nook refuses to read (named by its id).

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "rm", help: help) else { return 0 }
        guard !parsed.positionals.isEmpty else { throw UsageFailure("rm: name a container", hint: usage) }
        let store = try Containers.store()
        let force = parsed.has("force")
        return try Containers.each(parsed.positionals) { reference in
            try remove(reference, in: store, force: force)
        }
    }

    static func remove(_ reference: String, in store: ContainerStore, force: Bool) throws {
        let record: ContainerRecord
        do {
            record = try Containers.find(reference, in: store)
        } catch let failure as ContainerFailure where force {
            // Unreadable state: by its name, full id or a unique prefix.
            // (A name left pointing at a container of another name is not
            // that container's: only a record nook refuses goes this way.)
            let named = store.idNamed(reference).flatMap { (try? store.record($0)) == nil ? $0 : nil }
            let matches = named.map { [$0] } ?? store.ids().filter { $0.hasPrefix(reference.lowercased()) }
            guard matches.count == 1 else { throw failure }
            try store.removeBroken(id: matches[0])
            // What is known of it: its id.
            if let log = try? EventLog(environment: HostProbe.currentEnvironment()) {
                log.append(ContainerEvent(action: "remove", id: matches[0], name: "", image: "",
                                          attributes: ["reason": "its state was refused"]))
            }
            return
        }
        // A stopped container whose monitor still lives is about to start
        // again (restart policy) or still being made: removing its record
        // then would leave it running where no command can reach it.
        let restarting = record.status == .stopped && Containers.monitorAlive(record) && !record.stopRequested
        if record.status != .stopped || restarting {
            guard force else {
                let state = restarting ? "restarting (its restart policy)"
                    : Containers.statusText(record).lowercased()
                throw ContainerFailure("container \(reference) is \(state)",
                                       hint: "stop it first (nook stop \(reference)) or use nook rm -f")
            }
        }
        if record.status != .stopped || Containers.monitorAlive(record) {
            try StopCommand.stop(record, in: store, timeout: force ? 0 : nil)
        }
        // Removed by its own monitor meanwhile (--rm): done.
        guard let final = try? store.record(record.id) else { return }
        try store.remove(final)
        ContainerEvents.emit("remove", final)
    }
}

enum WaitCommand {
    static let usage = "nook wait CONTAINER..."
    static let summary = "wait for detached containers to stop; print their exit codes"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Block until each container has stopped, then print its exit code (the
        command's status, or 128+N when signal N ended it; 137 after the OOM killer).
        A --rm container gone before wait began gives its last run's status.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "wait", help: help) else { return 0 }
        guard !parsed.positionals.isEmpty else { throw UsageFailure("wait: name a container", hint: usage) }
        let store = try Containers.store()
        for reference in parsed.positionals {
            var record: ContainerRecord
            do {
                record = try Containers.find(reference, in: store)
            } catch let failure as ContainerFailure {
                // A --rm container that ended (and went) before wait came:
                // its last run's status, from the events.
                guard let code = removedExitCode(reference, store: store) else { throw failure }
                writeStdout("\(code)\n")
                continue
            }
            var unreadable: Double?
            while !Containers.isFinal(record) {
                _ = Containers.waitForInit(record, seconds: 1)
                usleep(20_000)
                do {
                    record = try Containers.find(record.id, in: store)
                    unreadable = nil
                } catch {
                    // A container made with --rm is gone once it has
                    // stopped: its status is the last die event's.
                    guard store.holds(record.id) else {
                        if let code = lastExitCode(record.id) { record.exit = .init(code: code, reason: "") }
                        break
                    }
                    // Still there but unreadable: said if it stays so.
                    let since = unreadable ?? Timestamp.nowSeconds()
                    unreadable = since
                    if Timestamp.nowSeconds() - since > 5 { throw error }
                }
            }
            writeStdout("\(record.exit?.code ?? 0)\n")
        }
        return 0
    }

    /// The exit status of the last container of that name or id that was
    /// removed (nil if none): one with a remove event, or one that ended
    /// and whose directory is gone (its monitor removes it before it
    /// writes the remove event; a fresh try's wait fell in between).
    static func removedExitCode(_ reference: String, store: ContainerStore) -> Int32? {
        let events = allEvents()
        let lowered = reference.lowercased()
        guard let removed = events.last(where: { e in
            (e.action == "remove" || (e.action == "die" && !store.holds(e.id)))
                && (e.name == reference || (lowered.count >= 3 && e.id.hasPrefix(lowered)))
        }) else { return nil }
        return exitCode(of: removed.id, in: events)
    }

    /// The exit code the last `die` event of container `id` recorded.
    static func lastExitCode(_ id: String) -> Int32? { exitCode(of: id, in: allEvents()) }

    static func exitCode(of id: String, in events: [ContainerEvent]) -> Int32? {
        events.last { $0.id == id && $0.action == "die" }.flatMap { $0.attributes["exitCode"] }.flatMap { Int32($0) }
    }

    static func allEvents() -> [ContainerEvent] {
        guard let log = try? EventLog(environment: HostProbe.currentEnvironment()) else { return [] }
        return (try? log.all()) ?? []
    }

    /// Stopped for now, but its monitor lives and may start it again.
    static func isRestarting(_ r: ContainerRecord) -> Bool {
        r.status == .stopped && Containers.monitorAlive(r)
    }
}
