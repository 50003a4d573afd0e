#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookState
import NookSupport

/// `nook healthcheck run`: a container's health check, once, now.
enum HealthcheckCommand {
    static let usage = "nook healthcheck run CONTAINER"
    static let summary = "run a container's health check once; exit 0 when it passes"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Run the container's health check now, inside it, as its monitor does (its
        ids, capabilities, seccomp filter and cgroup; killed past its timeout), print
        what the check printed, record the result with the container's other checks
        (it counts towards its status as theirs do), and exit 0 when it passed, 1 when
        it failed or ran past its timeout, 125 when it could not run (the container is
        not running or has no check). on_unhealthy is the monitor's alone to act on:
        after its next check, if the container is unhealthy then.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "healthcheck", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard let verb = parsed.positionals.first else { throw UsageFailure("healthcheck: say run", hint: usage) }
        guard verb == "run" else { throw UsageFailure("healthcheck: unknown subcommand \(verb)", hint: usage) }
        guard parsed.positionals.count == 2 else { throw UsageFailure("healthcheck run: name one container", hint: usage) }
        let reference = parsed.positionals[1]
        let store = try Containers.store()
        let record = try Containers.find(reference, in: store)
        guard let check = record.healthcheck else {
            throw ContainerFailure("container \(reference) has no health check",
                                   hint: "give one when making it: nook run -d --health-cmd ..., or a profile's [health]")
        }
        guard record.status == .running, record.initProcess?.isAlive == true else {
            throw ContainerFailure("container \(reference) is not running (\(Containers.statusText(record)))")
        }

        let running = try RunningCheck.spawn(record)
        let giveUp = Launcher.monotonic() + check.timeout + HealthMonitor.grace
        var forced = false
        while !running.ended {
            let left = giveUp - Launcher.monotonic()
            if left <= 0 {
                forced = true
                break
            }
            var fds = running.descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let r = poll(&fds, nfds_t(fds.count), Int32(min(left, 3600) * 1000) + 1)
            if r < 0 && errno != EINTR { break }
            for p in fds where p.revents != 0 && p.fd != running.pidfd { running.read(p.fd) }
        }
        let result = running.finish(forced: forced)
        writeStdout(result.output + (result.output.isEmpty || result.output.hasSuffix("\n") ? "" : "\n"))
        let recorded = HealthBook.add(result, to: record.id, in: store)
        if result.passed { return 0 }
        var line = "nook: the health check of \(reference) failed"
            + (result.exitCode >= 0 ? " (exit status \(result.exitCode))" : "")
        if let recorded {
            line += "; it is \(recorded.status.rawValue) (\(recorded.record.health?.failingStreak ?? 0) "
                + "failed in a row, \(check.retries) make it unhealthy)"
        }
        writeStderr(line + "\n")
        return 1
    }
}
