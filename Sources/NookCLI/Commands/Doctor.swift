import FoundationEssentials
import NookDoctor
import NookRuntime
import NookSupport

/// `nook doctor`: the host as a user's first `nook run` will meet it.
enum DoctorCommand {
    static let usage = "nook doctor [OPTIONS]"
    static let summary = "check this host for what nook needs, and say how to fix what is missing"

    static let options: [OptionSpec] = [
        OptionSpec("json", "print the checks as JSON: {\"ok\": ..., \"checks\": [{id, title, status, detail, fix}]}"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Check what nook needs from this host and this user: user namespaces (and the
        sysctls or AppArmor rules that block them), subordinate uid and gid ranges,
        newuidmap and newgidmap, /dev/fuse and fuse-overlayfs, overlay in a user
        namespace, cgroup v2 and the controllers delegated to you, your systemd user
        manager and user D-Bus, linger, and XDG_RUNTIME_DIR. One line per check:
        ok, warn (nook falls back to something weaker) or fail, with the fix.

        Options:
        \(OptionParser.help(options))

        Exit status: 0 when nothing failed, 1 when a check failed, 125 on error.
        """
    }

    struct Report: Encodable {
        var ok: Bool
        var user: String
        var checks: [Check]
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "doctor", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        guard parsed.positionals.isEmpty else {
            throw UsageFailure("doctor: unexpected argument \(parsed.positionals[0])", hint: "see: nook doctor --help")
        }
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        let facts = DoctorProbe.gather(environment: environment)
        let checks = Doctor.checks(facts)
        let failed = checks.contains { $0.status == .fail }
        if parsed.has("json") {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(Report(ok: !failed, user: facts.user, checks: checks))
            writeStdout(String(decoding: data, as: UTF8.self) + "\n")
        } else {
            writeStdout(checks.map(\.line).joined(separator: "\n") + "\n")
        }
        return failed ? 1 : 0
    }
}
