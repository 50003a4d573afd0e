#if canImport(Glibc)
import Glibc
#endif
import NookRegistry
import NookRuntime
import NookSupport

/// `nook login`: credentials for a registry, checked, then saved where
/// podman and skopeo read them too.
enum LoginCommand {
    static let usage = "nook login [OPTIONS] REGISTRY"
    static let summary = "save credentials for a registry"

    static let options: [OptionSpec] = [
        OptionSpec("username", short: "u", value: "USER", "the user name (asked for on the terminal without it)"),
        OptionSpec("password-stdin", "read the password (or token) from stdin instead of asking on the terminal"),
    ] + RegistryOptions.specs + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Check a user name and password (or access token) against REGISTRY, then save
        them in $XDG_RUNTIME_DIR/containers/auth.json (podman's file; without
        XDG_RUNTIME_DIR, ~/.config/containers/auth.json; --authfile or
        $REGISTRY_AUTH_FILE to choose), which nook, podman, skopeo and buildah read.
        The password is never printed; give it on stdin for scripts.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "login", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.count == 1, let registry = parsed.positionals.first else {
            throw UsageFailure("login: name one registry", hint: "usage: \(usage)")
        }
        let user: String
        if let u = parsed.value("username") {
            user = u
        } else {
            guard let u = Prompt.line("Username: ", echo: true) else {
                throw UsageFailure("login: no user name", hint: "give one with --username USER")
            }
            user = u
        }
        guard !user.isEmpty, !user.contains(":") else {
            throw UsageFailure("login: the user name is empty or contains ':'")
        }
        let secret: String
        if parsed.has("password-stdin") {
            guard let bytes = readFileBytes(fd: 0, limit: 64 << 10), var text = strictUTF8(bytes) else {
                throw UsageFailure("login: cannot read the password from stdin (at most 64 KiB of UTF-8)")
            }
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            secret = text
        } else {
            guard let p = Prompt.line("Password: ", echo: false) else {
                throw UsageFailure("login: no terminal to ask for the password on", hint: "use --password-stdin")
            }
            secret = p
        }
        guard !secret.isEmpty else { throw UsageFailure("login: the password is empty") }
        let environment = try RegistryOptions.environment(parsed, needsHelper: false)
        let file = try Login.login(registry: registry, user: user, secret: secret,
                                   tlsCA: try RegistryOptions.tlsCA(parsed), environment: environment)
        writeStdout("Login succeeded; credentials for \(registry) saved in \(file)\n")
        return 0
    }
}

/// `nook logout`: removes saved credentials.
enum LogoutCommand {
    static let usage = "nook logout [OPTIONS] REGISTRY | --all"
    static let summary = "remove saved credentials for a registry"

    static let options: [OptionSpec] = [
        OptionSpec("all", short: "a", "remove the credentials of every registry from the file nook login writes"),
    ] + [RegistryOptions.specs[1]] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Remove the credentials for REGISTRY from the file nook login writes (see
        nook login --help). Credentials in ~/.docker/config.json are left alone.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "logout", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        let environment = try RegistryOptions.environment(parsed, needsHelper: false)
        let file = environment.credentials.writePath
        if parsed.has("all") {
            guard parsed.positionals.isEmpty else { throw UsageFailure("logout: --all takes no registry") }
            let n = try environment.credentials.removeAll()
            writeStdout("Removed the credentials of \(n) registr\(n == 1 ? "y" : "ies") from \(file)\n")
            return 0
        }
        guard parsed.positionals.count == 1, let registry = parsed.positionals.first else {
            throw UsageFailure("logout: name one registry, or --all", hint: "usage: \(usage)")
        }
        guard try environment.credentials.remove(key: registry) else {
            throw UsageFailure("logout: no credentials for \(registry) in \(file)")
        }
        writeStdout("Removed the credentials for \(registry) from \(file)\n")
        return 0
    }
}

/// A line typed on the terminal, optionally without echo (passwords).
enum Prompt {
    static func line(_ prompt: String, echo: Bool) -> String? {
        let fd = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var saved = termios()
        let isTerminal = tcgetattr(fd, &saved) == 0
        if isTerminal && !echo {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(fd, TCSAFLUSH, &quiet)
        }
        defer { if isTerminal && !echo { tcsetattr(fd, TCSAFLUSH, &saved); _ = write(fd, "\n", 1) } }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        var bytes: [UInt8] = []
        var c: UInt8 = 0
        while read(fd, &c, 1) == 1 && c != 10 {
            bytes.append(c)
            if bytes.count > 4096 { return nil }
        }
        return strictUTF8(bytes)
    }
}
