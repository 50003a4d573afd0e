import FoundationEssentials
import NookRuntime
import NookState
import NookSupport

/// `nook ps`: detached containers and where each stands.
enum PsCommand {
    static let usage = "nook ps [OPTIONS]"
    static let summary = "list detached containers"

    static let options: [OptionSpec] = [
        OptionSpec("all", short: "a", "also the stopped ones"),
        OptionSpec("format", value: "FORMAT", "table (default) or json"),
        OptionSpec("quiet", short: "q", "print only the ids"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        List the containers started with nook run -d: id, name, image or root, status
        (with health), the init's pid, when it started, and the exit code once it has
        stopped. A container whose monitor died is shown stopped, with the reason.

        Options:
        \(OptionParser.help(options))
        """
    }

    /// One row, also the JSON shape.
    struct Row: Codable {
        var id: String
        var name: String
        var image: String
        var command: [String]
        var status: String
        var state: String
        var health: String?
        var pid: Int32?
        var created: String
        var started: String?
        var finished: String?
        var exitCode: Int32?
        var exitReason: String?
        var restarts: Int
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "ps", help: help) else { return 0 }
        guard parsed.positionals.isEmpty else { throw UsageFailure("ps: takes no arguments") }
        let format = parsed.value("format") ?? "table"
        guard ["table", "json"].contains(format) else {
            throw UsageFailure("--format \(format): unknown format", hint: "use table or json")
        }
        let store = try Containers.store()
        var rows: [Row] = []
        var broken: [String] = []
        for id in store.ids() {
            do {
                let r = try Containers.reconcile(try store.record(id), in: store)
                guard parsed.has("all") || r.status != .stopped else { continue }
                rows.append(row(r))
            } catch {
                broken.append("nook: ps: container \(id.prefix(12)): \(error)\n")
            }
        }
        rows.sort { $0.created > $1.created }
        for line in broken { writeStderr(line) }
        if parsed.has("quiet") {
            writeStdout(rows.map { $0.id + "\n" }.joined())
        } else if format == "json" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            writeStdout(String(decoding: try encoder.encode(rows), as: UTF8.self) + "\n")
        } else {
            writeStdout(table(rows))
        }
        return 0
    }

    static func row(_ r: ContainerRecord) -> Row {
        func time(_ t: Double?) -> String? { t.map { Timestamp.format(seconds: Int($0)) } }
        return Row(id: r.id, name: r.name, image: r.root, command: r.command, status: Containers.statusText(r),
                   state: r.status.rawValue, health: r.status == .running ? r.health?.status.rawValue : nil,
                   pid: r.status == .running ? r.initProcess?.pid : nil,
                   created: time(r.created) ?? "", started: time(r.started), finished: time(r.finished),
                   exitCode: r.status == .stopped ? r.exit?.code : nil,
                   exitReason: r.status == .stopped ? r.exit?.reason : nil, restarts: r.restarts)
    }

    static func table(_ rows: [Row]) -> String {
        var lines = [["CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS", "HEALTH", "PID", "STARTED", "EXIT"]]
        for r in rows {
            let command = r.command.joined(separator: " ")
            lines.append([String(r.id.prefix(12)), r.name, r.image,
                          command.count > 30 ? String(command.prefix(29)) + "…" : command, r.status,
                          r.health ?? "", r.pid.map(String.init) ?? "", r.started ?? "",
                          r.exitCode.map(String.init) ?? ""])
        }
        let widths = lines[0].indices.map { c in lines.map { $0[c].count }.max() ?? 0 }
        return lines.map { line in
            line.indices.map { c in c == line.count - 1 ? line[c] : line[c].padding(widths[c] + 2) }.joined()
        }.joined(separator: "\n") + "\n"
    }
}
