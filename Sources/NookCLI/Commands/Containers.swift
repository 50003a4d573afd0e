#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookState
import NookSupport

/// What the container commands share: opening the store, finding a
/// container, and bringing a record up to date with what still runs.
enum Containers {
    static func store() throws -> ContainerStore {
        try ContainerStore(environment: HostProbe.currentEnvironment())
    }

    /// The container `reference` names, brought up to date.
    static func find(_ reference: String, in store: ContainerStore) throws -> ContainerRecord {
        try reconcile(try store.lookup(reference), in: store)
    }

    /// A record says running (or starting) but its monitor is gone: the
    /// monitor was killed (its sandbox died with it) or the session ended.
    /// Recorded as stopped, with what can be known.
    static func reconcile(_ record: ContainerRecord, in store: ContainerStore) throws -> ContainerRecord {
        guard record.status != .stopped else { return record }
        let monitorGone = record.monitor.map { !$0.isAlive }
            ?? (Timestamp.nowSeconds() - record.created > 300)
        guard monitorGone else { return record }
        var ended = false
        let updated = try store.update(record.id) { r in
            guard r.status != .stopped, r.monitor.map({ !$0.isAlive }) ?? true else { return }
            ended = true
            let initAlive = r.initProcess?.isAlive ?? false
            if initAlive, let ref = r.initProcess { ref.signal(SIGKILL) }
            r.status = .stopped
            r.finished = Timestamp.nowSeconds()
            r.initProcess = nil
            r.exit = .init(code: 137, signal: SIGKILL, reason: r.monitor == nil
                ? "never started: the nook that made it ended first"
                : "its monitor (pid \(r.monitor?.pid ?? 0)) ended without recording how the command ended; "
                    + "the command went with it", monitorLost: true)
        }
        // The monitor that would have said so is gone: said here, once
        // (the update above is under the record's lock).
        if ended, let exit = updated.exit {
            ContainerEvents.emit("die", updated, ["exitCode": String(exit.code), "signal": String(SIGKILL),
                                                  "reason": exit.reason])
        }
        return updated
    }

    /// Does `act` for each reference, printing the reference when it
    /// worked and the failure when not: 0, or 125 when any failed.
    static func each(_ references: [String], _ act: (String) throws -> Void) throws -> Int32 {
        var failed = false
        for reference in references {
            do {
                try act(reference)
                writeStdout(reference + "\n")
            } catch let failure as any NookFailure {
                Main.report(failure)
                failed = true
            }
        }
        return failed ? 125 : 0
    }

    /// Parses a container command's arguments; nil after printing --help.
    static func parse(_ args: [String], options: [OptionSpec], command: String, help: String,
                      stopAtPositional: Bool = false) throws -> ParsedOptions? {
        let parsed = try OptionParser.parse(args, options: options, command: command,
                                            stopAtPositional: stopAtPositional)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return nil
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        return parsed
    }

    /// "Up 5 minutes", "Exited (0) 3 seconds ago", "Created".
    static func statusText(_ r: ContainerRecord, now: Double = Timestamp.nowSeconds()) -> String {
        switch r.status {
        case .created: return "Created"
        case .running:
            var text = "Up \(duration(now - (r.started ?? now)))"
            // kill -s STOP stops every process, the init first.
            if r.initProcess?.isStopped == true { text += " (Paused)" }
            if let h = r.health { text += " (\(h.status.rawValue))" }
            return text
        case .stopped:
            let code = r.exit?.code ?? 0
            // Between two runs of its restart policy (docker says so too).
            if monitorAlive(r) && !r.stopRequested {
                return "Restarting (\(code)) \(duration(now - (r.finished ?? now))) ago"
            }
            let why = r.exit?.monitorLost == true ? (r.monitor == nil ? " (never started)" : " (monitor killed)")
                : r.exit?.oomKilled == true ? " (OOM killed)" : ""
            return "Exited (\(code)) \(duration(now - (r.finished ?? now))) ago" + why
        }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        if s < 60 { return s == 1 ? "1 second" : "\(s) seconds" }
        if s < 3600 { return s / 60 == 1 ? "1 minute" : "\(s / 60) minutes" }
        if s < 86400 { return s / 3600 == 1 ? "1 hour" : "\(s / 3600) hours" }
        return s / 86400 == 1 ? "1 day" : "\(s / 86400) days"
    }

    /// Waits until the container's init has ended, up to `seconds`; true if it has.
    static func waitForInit(_ record: ContainerRecord, seconds: Double) -> Bool {
        guard let ref = record.initProcess, let fd = ref.openPidfd() else { return true }
        defer { close(fd) }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = Timestamp.nowSeconds() + seconds
        while true {
            let left = deadline - Timestamp.nowSeconds()
            if left <= 0 { return false }
            let r = poll(&p, 1, Int32(min(left, 3600) * 1000) + 1)
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return true }
        }
    }

    /// Whether the container's monitor still runs: while it does, a
    /// stopped container may start again (restart policy, on_unhealthy).
    static func monitorAlive(_ record: ContainerRecord) -> Bool {
        record.monitor?.isAlive ?? false
    }

    /// Stopped for good: stopped, and no monitor left to start it again.
    static func isFinal(_ record: ContainerRecord) -> Bool {
        record.status == .stopped && !monitorAlive(record)
    }

    /// Waits until the record says stopped (the monitor has written how it
    /// ended), up to `seconds`; the last record read.
    static func waitStopped(_ id: String, in store: ContainerStore, seconds: Double) throws -> ContainerRecord {
        let deadline = Timestamp.nowSeconds() + seconds
        var record = try store.record(id)
        while record.status != .stopped && Timestamp.nowSeconds() < deadline {
            usleep(20_000)
            record = try reconcile(try store.record(id), in: store)
        }
        return record
    }
}

/// Events of the user's containers (`nook events`), written by the command
/// or monitor that causes each. Writing one never fails the caller.
enum ContainerEvents {
    static func emit(_ action: String, _ r: ContainerRecord, _ attributes: [String: String] = [:]) {
        guard let log = try? EventLog(environment: HostProbe.currentEnvironment()) else { return }
        log.append(ContainerEvent(action: action, id: r.id, name: r.name, image: r.image ?? r.root,
                                  attributes: attributes))
    }
}
