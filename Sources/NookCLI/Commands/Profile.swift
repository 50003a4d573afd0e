import NookProfile
import NookRuntime
import NookSpec
import NookSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `nook profile list|show|check`: the profiles nook can find, one
/// profile after extends and variables, and precise checks of a file.
enum ProfileCommand {
    static let usage = "nook profile COMMAND [OPTIONS] [ARG...]"
    static let summary = "list, show and check profiles"

    struct Subcommand: Sendable {
        let name: String
        let arguments: String
        let summary: String
        let run: @Sendable ([String], ProfileLoader) throws -> Int32
    }

    static let subcommands: [Subcommand] = [
        Subcommand(name: "list", arguments: "", summary: "each profile name and the file it resolves to", run: list),
        Subcommand(
            name: "show", arguments: "NAME|FILE",
            summary: "the merged profile as TOML, each value with the file:line that set it",
            run: show),
        Subcommand(
            name: "check", arguments: "FILE|NAME...",
            summary: "check profiles; exit 0, or print every problem and exit 1",
            run: check),
    ]

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        let rows = subcommands.map { s -> String in
            let left = "\(s.name) \(s.arguments)"
            return "  \(left.padding(20))\(s.summary)"
        }.joined(separator: "\n")
        return """
            Usage: \(usage)

            Profiles are TOML files that say what a sandbox may do; `nook run --profile
            NAME` uses one, and flags override it. A NAME is looked up in
            $XDG_CONFIG_HOME/nook/profiles (default ~/.config/nook/profiles), then
            /etc/nook/profiles, then the stock profiles shipped with nook; a FILE is a
            path containing '/' or ending in .toml. See nook-profile(5).

            Commands:
            \(rows)

            Options:
            \(OptionParser.help(options))
            """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "profile", stopAtPositional: false)
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        guard let name = parsed.positionals.first else {
            writeStderr(help + "\n")
            return 125
        }
        guard let sub = subcommands.first(where: { $0.name == name }) else {
            let near = subcommands.map(\.name).min { OptionParser.distance($0, name) < OptionParser.distance($1, name) }
            throw UsageFailure(
                "profile: unknown command '\(name)'",
                hint: near.map { "did you mean 'nook profile \($0)'?" } ?? "see: nook profile --help")
        }
        let loader = try ProfileContext.loader(environment: environment)
        return try sub.run(Array(parsed.positionals.dropFirst()), loader)
    }

    static func list(_ args: [String], _ loader: ProfileLoader) throws -> Int32 {
        guard args.isEmpty else { throw UsageFailure("profile list: takes no arguments") }
        let found = loader.search.list(in: loader.fs)
        var out = ""
        let width = max(8, (found.map(\.name.count).max() ?? 0) + 2)
        for entry in found {
            out += entry.name.padding(width) + "\(ProfileContext.display(entry.file, loader)) (\(entry.kind.rawValue))"
            if let description = description(of: entry.file, loader) {
                out += "\n" + String(repeating: " ", count: width) + description
            }
            out += "\n"
            for hidden in entry.shadowed {
                out += String(repeating: " ", count: width) + "overrides \(ProfileContext.display(hidden, loader))\n"
            }
        }
        if found.isEmpty { out = "no profiles found\n" }
        out +=
            "\nsearched, in order: "
            + loader.search.directories.map { ProfileContext.display($0.path, loader) }
            .joined(separator: ", ") + "\n"
        writeStdout(out)
        return 0
    }

    /// The description line of a profile file, without following extends.
    static func description(of path: String, _ loader: ProfileLoader) -> String? {
        guard case .success(let text) = loader.fs.read(path), let root = try? TOML.parse(text),
            case .table(let members) = root.value,
            let d = members.first(where: { $0.key == "description" }), case .string(let s) = d.node.value
        else { return nil }
        return s
    }

    static func show(_ args: [String], _ loader: ProfileLoader) throws -> Int32 {
        guard args.count == 1 else { throw UsageFailure("profile show: give one profile name or file") }
        let profile = try loader.load(args[0])
        for note in profile.notes { Log.info(note) }
        writeStdout(profile.renderTOML())
        return 0
    }

    static func check(_ args: [String], _ loader: ProfileLoader) throws -> Int32 {
        guard !args.isEmpty else { throw UsageFailure("profile check: give one or more profile files or names") }
        var status: Int32 = 0
        for reference in args {
            do {
                let profile = try loader.load(reference)
                for warning in profile.warnings { Log.warning(warning) }
                writeStdout("\(profile.file): ok\n")
            } catch {
                for issue in error.issues { writeStderr("nook: \(issue.description)\n") }
                status = 1
            }
        }
        return status
    }
}

/// The caller's facts that loading a profile needs.
enum ProfileContext {
    static func loader(environment: [String: String]) throws -> ProfileLoader {
        let uid = getuid()
        let gid = getgid()
        let account = passwd(uid)
        let home = account?.home ?? environment["HOME"] ?? "/"
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else {
            throw SystemFailure(
                "read the current directory", hint: "it may have been removed; cd to an existing directory")
        }
        let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let variables = ProfileVariables.caller(
            uid: uid, gid: gid, user: account?.name ?? String(uid), home: home,
            cwd: cwd, environment: environment)
        let search = ProfileSearchPath.standard(home: home, environment: environment)
        Log.debug(
            "profile search path: "
                + search.directories.map { "\($0.path) (\($0.kind.rawValue))" }
                .joined(separator: ", "))
        return ProfileLoader(search: search, variables: variables, home: home, cwd: cwd)
    }

    static func passwd(_ uid: uid_t) -> (name: String, home: String)? {
        var pwd = Glibc.passwd()
        var result: UnsafeMutablePointer<Glibc.passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return (String(cString: pwd.pw_name), String(cString: pwd.pw_dir))
    }

    static func display(_ path: String, _ loader: ProfileLoader) -> String {
        let home = loader.home
        if home.count > 1, path.hasPrefix(home + "/") { return "~" + path.dropFirst(home.count) }
        return path
    }

    /// The request of `--profile REFERENCE`, with its warnings said once,
    /// and where each of its settings came from (for --explain).
    static func request(_ reference: String, environment: [String: String]) throws -> (SandboxRequest, RuleOrigins) {
        let profile = try loader(environment: environment).load(reference)
        let missing = profile.missingHostPaths { path in
            var sb = stat()
            return stat(path, &sb) == 0
        }
        guard missing.isEmpty else { throw ProfileFailure(missing) }
        Log.info("profile: \(reference) from \(profile.files.joined(separator: ", "))")
        for note in profile.notes { Log.info(note) }
        for warning in profile.warnings { Log.warnOnce(key: warning, warning) }
        var origins: [String: String] = [:]
        for (key, setting) in profile.settings.scalars { origins[key] = setting.origin.description }
        for (key, list) in profile.settings.lists {
            for setting in list { origins[key + ":" + setting.identity] = setting.origin.description }
        }
        return (profile.request, RuleOrigins(origins))
    }
}
