import NookRuntime
import NookSpec
import NookSupport

/// `nook unshare`: a command in a user namespace with your full id mapping,
/// as root there, with nothing else isolated. Files that sandboxes create as
/// other ids inside belong to your subordinate ids outside; this is how you
/// read, change or remove them.
enum UnshareCommand {
    static let usage = "nook unshare [OPTIONS] [--] [COMMAND [ARG...]]"
    static let summary = "run a command as root of a user namespace with your subordinate ids (no sandbox)"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Run COMMAND (default: your $SHELL) in a new user namespace (and mount
        namespace) where you are uid 0 and every other id maps to your subordinate
        ranges, as nook's sandboxes map them. Nothing else is isolated: the command
        sees your files, network and processes, in the current directory, on your
        terminal. Use it to inspect or remove files sandboxes left owned by
        subordinate ids, for example: nook unshare rm -rf ./build-output

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "unshare", stopAtPositional: true)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        var request = SandboxRequest()
        request.bindWorkspace = false
        let host = try HostProbe.current(for: request)
        let command = parsed.positionals.isEmpty
            ? [host.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 } ?? "/bin/sh"] : parsed.positionals
        let status = try Launcher.unshare(command, host: host)
        return status.code
    }
}
