#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookRuntime
import NookState
import NookSupport

/// `nook events`: what happened to the user's containers, as it happens.
enum EventsCommand {
    static let usage = "nook events [OPTIONS]"
    static let summary = "show container events (create, start, health_status, die, ...) as they happen"

    static let options: [OptionSpec] = [
        OptionSpec("format", value: "FORMAT", "text (default) or json (one object per line)"),
        OptionSpec("since", value: "WHEN",
                   "first show the kept events since WHEN: 10m, 1h, or an RFC 3339 time (Z or an offset, +01:00)"),
        OptionSpec("until", value: "WHEN", "stop at WHEN (a time, or a duration ago: 0s is now); a past one prints kept events"),
        OptionSpec("filter", short: "f", value: "KEY=VALUE", repeatable: true,
                   "container=NAME|ID or event=ACTION; repeated keys match any of their values"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print container events as they happen, one per line, until interrupted or
        --until: \(ContainerEvent.actions.joined(separator: ", ")).
        With --since, the events kept since then come first (the last 1 to 2 MiB of
        them, in $XDG_RUNTIME_DIR/nook/events); with an --until in the past, only the
        kept events up to it (since --since, if given).

        Options:
        \(OptionParser.help(options))
        """
    }

    struct Filter {
        var containers: [String] = []
        var actions: [String] = []

        func matches(_ e: ContainerEvent) -> Bool {
            (containers.isEmpty || containers.contains { e.name == $0 || (!$0.isEmpty && e.id.hasPrefix($0.lowercased())) })
                && (actions.isEmpty || actions.contains(e.action))
        }
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "events", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        guard parsed.positionals.isEmpty else { throw UsageFailure("events: takes no arguments", hint: usage) }
        let json = try format(parsed)
        let now = Timestamp.nowSeconds()
        func time(_ flag: String) throws -> Double? {
            guard let text = parsed.value(flag) else { return nil }
            guard let t = Timestamp.since(text, now: now) else {
                throw UsageFailure("--\(flag) \(text): not a duration or a time",
                                   hint: "as in 10m, 1h30m, or an RFC 3339 time: 2026-12-04T20:31:07Z, "
                                       + "2026-12-04T21:31:07+01:00")
            }
            return t
        }
        let since = try time("since")
        let until = try time("until")
        let filter = try filters(parsed)

        let log = try EventLog(environment: environment)
        let (kept, tail) = try log.replayAndTail()
        func show(_ e: ContainerEvent) {
            guard filter.matches(e), since.map({ e.seconds >= $0 }) ?? true, until.map({ e.seconds <= $0 }) ?? true
            else { return }
            writeStdout(json ? line(e) : e.line + "\n")
        }
        // With an --until already past, the kept events up to it are all
        // there is to print, --since or not.
        let past = until.map { $0 <= now } ?? false
        if since != nil || past { kept.forEach(show) }
        if past { return 0 }
        signal(SIGPIPE, SIG_DFL)
        while until.map({ Timestamp.nowSeconds() <= $0 }) ?? true {
            tail.next().forEach(show)
            usleep(100_000)
        }
        tail.next().forEach(show)
        return 0
    }

    static func format(_ parsed: ParsedOptions) throws(UsageFailure) -> Bool {
        switch parsed.value("format") ?? "text" {
        case "text": return false
        case "json": return true
        case let other: throw UsageFailure("--format \(other): unknown format", hint: "use text or json")
        }
    }

    static func filters(_ parsed: ParsedOptions) throws(UsageFailure) -> Filter {
        var filter = Filter()
        for entry in parsed.all("filter") {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw UsageFailure("--filter \(entry): expected KEY=VALUE", hint: "container=web or event=die")
            }
            switch parts[0] {
            case "container": filter.containers.append(parts[1])
            case "event", "action":
                guard ContainerEvent.actions.contains(parts[1]) else {
                    throw UsageFailure("--filter \(entry): no such event",
                                       hint: "one of " + ContainerEvent.actions.joined(separator: ", "))
                }
                filter.actions.append(parts[1])
            default:
                throw UsageFailure("--filter \(entry): unknown key \(parts[0])", hint: "container or event")
            }
        }
        return filter
    }

    static func line(_ e: ContainerEvent) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(e)).map { String(decoding: $0, as: UTF8.self) } ?? "{}") + "\n"
    }
}
