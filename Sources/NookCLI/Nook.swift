#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookStore
import NookSupport

/// nook's command line: a thin layer that parses, dispatches and prints.
public enum Main {
    static let version = "0.1.0"

    static let commands: [(name: String, summary: String, run: @Sendable ([String]) throws -> Int32)] = [
        ("run", RunCommand.summary, RunCommand.run),
        ("profile", ProfileCommand.summary, ProfileCommand.run),
        ("unshare", UnshareCommand.summary, UnshareCommand.run),
        ("doctor", DoctorCommand.summary, DoctorCommand.run),
        ("image", ImageCommand.summary, ImageCommand.run),
        ("ps", PsCommand.summary, PsCommand.run),
        ("logs", LogsCommand.summary, LogsCommand.run),
        ("stop", StopCommand.summary, StopCommand.run),
        ("kill", KillCommand.summary, KillCommand.run),
        ("rm", RemoveCommand.summary, RemoveCommand.run),
        ("wait", WaitCommand.summary, WaitCommand.run),
        ("inspect", InspectCommand.summary, InspectCommand.run),
        ("exec", ExecCommand.summary, ExecCommand.run),
        ("port", PortCommand.summary, PortCommand.run),
        ("healthcheck", HealthcheckCommand.summary, HealthcheckCommand.run),
        ("events", EventsCommand.summary, EventsCommand.run),
        ("generate", GenerateCommand.summary, GenerateCommand.run),
        ("pull", PullCommand.summary, PullCommand.run),
        ("push", PushCommand.summary, PushCommand.run),
        ("login", LoginCommand.summary, LoginCommand.run),
        ("logout", LogoutCommand.summary, LogoutCommand.run),
    ]

    static var help: String {
        let list = commands.map { "  \($0.name.padding(13))\($0.summary)" }.joined(separator: "\n")
        return """
        Usage: nook COMMAND [OPTIONS]

        nook runs programs in sandboxes without root: a user namespace mapped through
        your subordinate ids, a read-only view of the host, and a seccomp filter.

        Commands:
        \(list)
          help         show help for a command: nook help run
          version      print nook's version

        Run 'nook COMMAND --help' for a command's options. See nook(1).
        """
    }

    public static func main(_ arguments: [String]) -> Int32 {
        let code = dispatch(arguments)
        // Output that was lost (a full disk) is a failure, said where it can
        // still be read; a reader that went away (| head) is not.
        if let e = StandardOutput.failure, e.rawValue != EPIPE {
            writeStderr("nook: could not write to standard output: \(e)\n")
            return code == 0 ? 125 : code
        }
        return code
    }

    static func dispatch(_ arguments: [String]) -> Int32 {
        _ = Log.start
        var args = Array(arguments.dropFirst())
        do {
            try Privilege.refuseElevated()
            guard let name = args.first else {
                writeStderr(help + "\n")
                return 125
            }
            args.removeFirst()
            switch name {
            case "-h", "--help", "help":
                if let topic = args.first, let command = commands.first(where: { $0.name == topic }) {
                    return try command.run(["--help"])
                }
                writeStdout(help + "\n")
                return 0
            case MonitorCommand.command:
                // Internal: a detached container's monitor (nook run -d).
                return MonitorCommand.main(args)
            case HealthHelper.command:
                // Internal: one health check, for a monitor or nook healthcheck run.
                return HealthHelper.main(args)
            case StoreHelper.command:
                // Internal: the image store's work inside the user namespace.
                return StoreHelper.main(args)
            case "version", "--version":
                writeStdout("nook \(version)\n")
                return 0
            default:
                guard let command = commands.first(where: { $0.name == name }) else {
                    throw UsageFailure("unknown command '\(name)'", hint: "see: nook --help")
                }
                return try command.run(args)
            }
        } catch let failure as any NookFailure {
            report(failure)
            return failure.exitCode
        } catch {
            Log.error("\(error)")
            return 125
        }
    }

    static func report(_ failure: any NookFailure) {
        var text = "nook: \(failure.description)\n"
        if let hint = failure.hint { text += "  hint: \(hint)\n" }
        writeStderr(text)
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}

