#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookState
import NookSupport

/// `nook generate systemd`: a systemd user unit that runs a detached
/// container, so the user's manager starts it (at login, or at boot with
/// linger), restarts it when it fails, and stops it cleanly.
enum GenerateCommand {
    static let usage = "nook generate systemd [OPTIONS] CONTAINER"
    static let summary = "write a systemd user unit that runs a detached container"

    static let options: [OptionSpec] = [
        OptionSpec("files", short: "f", "write nook-NAME.service into the current directory (or --dir) and print its path"),
        OptionSpec("dir", value: "DIR", "with --files: where to write it"),
        OptionSpec("restart-policy", value: "POLICY",
                   "Restart= of the unit: no, on-success, on-failure, on-abnormal, on-abort, on-watchdog or always "
                       + "(default: from the container's --restart; on-failure when it has none)"),
        OptionSpec("restart-sec", value: "SECONDS", "RestartSec= of the unit (default 1)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print a systemd user unit (nook-NAME.service) that runs the container as it was
        made: the unit's ExecStart is nook run -d with the container's own arguments
        (without --restart and --rm: the unit restarts and removes it), in the directory
        it was made in. It is Type=notify: nook run tells the manager once the command
        runs and hands the service over to the container's monitor, whose exit status
        is the command's (0 when nook stopped it). ExecStop is nook stop with the
        container's stop timeout; the container is removed after it stops, and any
        container of the same name before it starts.

            nook generate systemd --files web
            mv nook-web.service ~/.config/systemd/user/ && systemctl --user daemon-reload
            systemctl --user enable --now nook-web.service
            loginctl enable-linger        # start it at boot, without a login

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "generate", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        guard parsed.positionals.first == "systemd" else {
            throw UsageFailure("generate: say what to generate: systemd", hint: usage)
        }
        guard parsed.positionals.count == 2 else { throw UsageFailure("generate systemd: name one container", hint: usage) }
        let reference = parsed.positionals[1]
        if parsed.value("dir") != nil && !parsed.has("files") {
            throw UsageFailure("--dir applies to --files", hint: "add --files, or leave out --dir to print the unit")
        }
        var settings = SystemdUnit.Settings()
        if let policy = parsed.value("restart-policy") {
            guard SystemdUnit.restartPolicies.contains(policy) else {
                throw UsageFailure("--restart-policy \(policy): not one of systemd's",
                                   hint: SystemdUnit.restartPolicies.joined(separator: ", "))
            }
            settings.restart = policy
        }
        if let text = parsed.value("restart-sec") {
            guard let n = Int(text), n >= 0, n <= 86_400 else {
                throw UsageFailure("--restart-sec \(text): not a number of seconds", hint: "0 to 86400")
            }
            settings.restartSec = n
        }
        let store = try Containers.store()
        let record = try Containers.find(reference, in: store)
        guard let nook = RunCommand.realPath("/proc/self/exe") else {
            throw SystemFailure("find nook's own executable (/proc/self/exe)")
        }
        settings.environment = SystemdUnit.carriedEnvironment(environment, uid: getuid())
        let unit = try SystemdUnit(record: record, nook: nook, settings: settings)
        for warning in unit.warnings { Log.warning(warning) }
        guard parsed.has("files") else {
            writeStdout(unit.text)
            return 0
        }
        let given = parsed.value("dir").map(RunCommand.absolute) ?? RunCommand.absolute(".")
        let dir = RunCommand.realPath(given) ?? given
        var sb = stat()
        guard stat(dir, &sb) == 0, (sb.st_mode & S_IFMT) == S_IFDIR else {
            throw SystemFailure("write the unit into", path: dir, hint: "--dir names the directory for the unit file; "
                                + "make it first (mkdir -p ~/.config/systemd/user)")
        }
        let path = (dir.hasSuffix("/") ? dir : dir + "/") + unit.fileName
        try writeUnit(unit.text, to: path)
        writeStdout(path + "\n")
        return 0
    }

    /// Writes the file through a new name renamed into place.
    static func writeUnit(_ text: String, to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemFailure("write the unit", path: temporary) }
        writeAll(fd, text)
        close(fd)
        guard rename(temporary, path) == 0 else {
            let e = Errno.current
            unlink(temporary)
            throw SystemFailure("write the unit", path: path, errno: e)
        }
    }
}

/// The text of a container's unit, from its record: pure, so that a test
/// can read what each line says.
struct SystemdUnit {
    struct Settings {
        /// Restart= of the unit; nil: from the container's restart policy.
        var restart: String?
        var restartSec = 1
        /// Variables the unit sets (the state and data directories nook
        /// used, when they are not the defaults under the manager).
        var environment: [(String, String)] = []
    }

    static let restartPolicies = ["no", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog", "always"]

    /// The options of `nook run` the unit leaves out: it runs the container
    /// itself (-d, --name), restarts it (--restart) and removes it (--rm).
    static let dropped: Set<String> = ["detach", "name", "rm", "restart", "dry-run", "help"]

    let fileName: String
    let text: String
    var warnings: [String] = []

    init(record: ContainerRecord, nook: String, settings: Settings) throws {
        let name = record.name
        fileName = "nook-\(name).service"
        let (arguments, notes) = try Self.runArguments(record.runArguments)
        warnings = notes
        let restart = settings.restart ?? {
            switch record.restartPolicy {
            case .always: "always"
            case .no, .onFailure: "on-failure"
            }
        }()
        if let problem = Self.unitPathProblem(record.directory) {
            throw UsageFailure("container \(name) was made in \(jsonString(record.directory)), which a unit cannot "
                                + "hold as its WorkingDirectory= (\(problem)): a unit file has no quoting for it",
                               hint: "make the container again from another directory (nook rm \(name), then nook run -d "
                                + "there) and generate the unit for that one")
        }
        let exec = Self.quote(nook)
        var lines = [
            "# \(fileName): nook container \(name), under your systemd user manager.",
            "# Made by nook generate systemd from the container's nook run arguments.",
            "#",
            "#     mkdir -p ~/.config/systemd/user && cp \(fileName) ~/.config/systemd/user/",
            "#     systemctl --user daemon-reload",
            "#     systemctl --user enable --now \(fileName)",
            "#     loginctl enable-linger    # to start it at boot, without a login",
        ]
        // A note quotes what the user gave (an --env name): a line break in
        // it would end the comment and start a line of the unit's own.
        for note in notes { lines.append("# Note: " + Self.commentText(note)) }
        lines += [
            "",
            "[Unit]",
            "Description=nook container \(name)",
            "Documentation=man:nook-containers(1)",
        ]
        // on-failure:N counts restarts: the manager's start limit, never
        // reset by time, allows the first start and N more.
        if settings.restart == nil, case .onFailure(let maximum?) = record.restartPolicy {
            lines += [
                "# --restart on-failure:\(maximum): at most \(maximum) restarts, then the unit stays failed",
                "# (systemctl --user reset-failed \(fileName) lets it start again).",
                "StartLimitIntervalSec=infinity",
                "StartLimitBurst=\(maximum + 1)",
            ]
        }
        lines += [
            "",
            "[Service]",
            "# nook run -d tells the manager once the command runs, and hands the service",
            "# over to the container's monitor: its exit status is the command's, or 0",
            "# when nook stopped the container.",
            "Type=notify",
            "NotifyAccess=main",
            "# Only nook's own processes run in this service's cgroup: the container has",
            "# a scope of its own in nook.slice (with its limits), which nook asks this",
            "# manager for. Nothing here needs a delegated cgroup.",
            "Delegate=no",
            "WorkingDirectory=" + Self.escapeSpecifiers(record.directory),
        ]
        for (key, value) in settings.environment {
            lines.append("Environment=" + Self.quote(key + "=" + value, expandsVariables: false))
        }
        let quotedName = Self.quote(name)
        lines += [
            "ExecStartPre=-\(exec) rm -f \(quotedName)",
            "ExecStart=" + ([exec, "run", "-d", "--name", quotedName] + arguments.map { Self.quote($0) })
                .joined(separator: " "),
            "ExecStop=\(exec) stop -t \(record.stopTimeout) \(quotedName)",
            "ExecStopPost=-\(exec) rm -f \(quotedName)",
            "# A start may pull the image first.",
            "TimeoutStartSec=5min",
            "# nook stop waits the stop timeout, kills, and waits for the monitor.",
            "TimeoutStopSec=\(record.stopTimeout + 35)",
            "Restart=\(restart)",
            "RestartSec=\(settings.restartSec)",
            "",
            "[Install]",
            "WantedBy=default.target",
        ]
        text = lines.joined(separator: "\n") + "\n"
    }

    /// The container's `nook run` arguments, written out canonically
    /// (`--long=value`, then IMAGE `--` COMMAND or `--` COMMAND) without
    /// the ones the unit takes over; and what will differ under systemd.
    static func runArguments(_ args: [String]) throws -> ([String], [String]) {
        let parsed = try OptionParser.parse(args, options: RunCommand.options, command: "run", stopAtPositional: true)
        var out: [String] = []
        var notes: [String] = []
        for option in RunCommand.options where !dropped.contains(option.long) {
            if parsed.has(option.long) { out.append("--" + option.long) }
            for value in parsed.all(option.long) {
                out.append("--\(option.long)=\(value)")
                if option.long == "env" && !value.contains("=") {
                    notes.append("--env \(value) copies \(value) from nook's environment, which under systemd is the "
                        + "manager's; write --env \(value)=VALUE, or an Environment= line, to keep its value")
                }
            }
        }
        var positionals = parsed.positionals
        if !parsed.commandAfterDashDash && positionals.count >= 2 && positionals[1] == "--" {
            out += [positionals.removeFirst(), positionals.removeFirst()]
            out += positionals
        } else if !positionals.isEmpty {
            out += ["--"] + positionals
        }
        return (out, notes)
    }

    /// The variables nook reads its places from, as the caller has them,
    /// when the manager's services would see others: XDG_RUNTIME_DIR (the
    /// manager's is /run/user/UID), the data and config directories, the
    /// registry credentials.
    static func carriedEnvironment(_ environment: [String: String], uid: uid_t) -> [(String, String)] {
        var out: [(String, String)] = []
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime != "/run/user/\(uid)" {
            out.append(("XDG_RUNTIME_DIR", runtime))
        }
        for key in ["XDG_DATA_HOME", "XDG_CONFIG_HOME", "REGISTRY_AUTH_FILE"] {
            if let value = environment[key], !value.isEmpty { out.append((key, value)) }
        }
        return out
    }

    /// One word of a command line as systemd.service(5) reads it: bare
    /// when it holds only plain characters, else in double quotes with C
    /// escapes; `%` doubled (specifiers expand even in quotes) and, where
    /// variables expand (Exec lines), `$` doubled.
    static func quote(_ word: String, expandsVariables: Bool = true) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy {
            ($0.value >= 48 && $0.value <= 57) || ($0.value >= 65 && $0.value <= 90) || ($0.value >= 97 && $0.value <= 122)
                || "-_./:=,+@".unicodeScalars.contains($0)
        }
        if plain { return word }
        var out = "\""
        for scalar in word.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "%": out += "%%"
            case "$" where expandsVariables: out += "$$"
            default:
                if let escaped = hexEscape(scalar) { out += escaped } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }

    /// `text` on one comment line: control characters as \xNN.
    static func commentText(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if let escaped = hexEscape(scalar) { out += escaped } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    /// A control character as systemd's C escape `\\xNN`; nil for others.
    static func hexEscape(_ scalar: Unicode.Scalar) -> String? {
        guard scalar.value < 0x20 || scalar.value == 0x7f else { return nil }
        let hex = String(scalar.value, radix: 16)
        return "\\x" + (hex.count == 1 ? "0" + hex : hex)
    }

    /// Why `path` cannot be written as a WorkingDirectory= value, which
    /// systemd takes verbatim to the end of the line (no quotes, no
    /// escapes): a line break would start a line of its own (any setting,
    /// ExecStartPost= among them), a backslash at the end joins the next
    /// line, and whitespace at either end is trimmed.
    static func unitPathProblem(_ path: String) -> String? {
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            return "it holds a line break or another control character"
        }
        if path.hasSuffix("\\") { return "it ends with a backslash" }
        if path != path.trimming(" ") { return "it ends with a space" }
        return nil
    }

    static func escapeSpecifiers(_ s: String) -> String {
        s.split(separator: "%", omittingEmptySubsequences: false).joined(separator: "%%")
    }
}
