#if canImport(Glibc)
import Glibc
#endif
import NookRegistry
import NookRuntime
import NookStore
import NookSupport

/// What pull, push, login, logout and `run --pull` share: where the
/// registries' settings and the credentials are, and how to trust TLS.
enum RegistryOptions {
    static let specs: [OptionSpec] = [
        OptionSpec("tls-ca", value: "FILE", "trust the certificate authorities in FILE (PEM) for the registry's TLS"),
        OptionSpec("authfile", value: "FILE", "read (and for login, write) credentials in FILE instead of the usual ones"),
    ]

    static func environment(_ parsed: ParsedOptions, needsHelper: Bool = true) throws -> RegistryEnvironment {
        let env = HostProbe.currentEnvironment()
        let home = env["HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_dir) } ?? "/"
        let config = try RegistryConfig.load(path: RegistryConfig.defaultPath(environment: env, home: home))
        let credentials = CredentialStore(authFile: parsed.value("authfile").map(RunCommand.absolute), environment: env,
                                          home: home)
        let context = needsHelper ? try ImageCommand.helperContext() : HelperContext(capacity: IDCapacity(uids: 1, gids: 1, user: "")) { _ in 125 }
        return RegistryEnvironment(config: config, credentials: credentials, store: ImageCommand.store(), context: context)
    }

    static func tlsCA(_ parsed: ParsedOptions) throws -> String? {
        guard let file = parsed.value("tls-ca") else { return nil }
        let path = RunCommand.absolute(file)
        guard access(path, R_OK) == 0 else {
            throw UsageFailure("--tls-ca \(file): cannot read it: \(Errno.current)", hint: "give a PEM file of CA certificates")
        }
        return path
    }

    /// Bars on a terminal, lines otherwise, nothing with --quiet.
    static func progressMode(_ parsed: ParsedOptions) -> TransferProgress.Mode {
        if parsed.has("quiet") { return .quiet }
        return isatty(2) == 1 && HostProbe.currentEnvironment()["TERM"] != "dumb" ? .bars : .lines
    }
}

/// `nook pull`: an image from a registry into the store.
enum PullCommand {
    static let usage = "nook pull [OPTIONS] IMAGE"
    static let summary = "pull an image from a registry into the store"

    static let options: [OptionSpec] = [
        OptionSpec("platform", value: "OS/ARCH[/VARIANT]", "from an image index, take this platform's image (default: this host's)"),
        OptionSpec("jobs", value: "N", "download at most N layers at once (default 3)"),
        OptionSpec("quiet", short: "q", "print only the image id, no progress"),
    ] + RegistryOptions.specs + [
        OptionSpec("remap-ids", "give files owned by ids you cannot map to nobody (65534) instead of refusing the image"),
        OptionSpec("max-layer-bytes", value: "SIZE", "refuse a layer whose blob or content passes SIZE (default 32G)"),
        OptionSpec("max-entries", value: "N", "refuse a layer with more than N entries (default 1000000)"),
        OptionSpec("max-entry-bytes", value: "SIZE", "refuse a layer with a file larger than SIZE (default 16G)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Pull IMAGE, [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], into your image
        store. A short name (alpine) is looked up on the registries of
        unqualified-search-registries in ~/.config/nook/registries.toml (docker.io when
        the file does not say), in order; nook says which one answered. Every blob is
        checked against its digest and size, and every layer as nook image load checks
        it, before anything is stored; layers the store has are not downloaded again.
        Credentials come from $XDG_RUNTIME_DIR/containers/auth.json or
        ~/.docker/config.json (nook login writes them). HTTPS only, except to localhost
        and registries marked insecure in registries.toml.

        Options:
        \(OptionParser.help(options))

        See nook-pull(1).
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "pull", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.count == 1, let reference = parsed.positionals.first else {
            throw UsageFailure("pull: name one image", hint: "usage: \(usage)")
        }
        var pull = try pullOptions(parsed)
        pull.load = try ImageLoadCommand.loadOptions(parsed)
        let result = try pullImage(reference, options: pull, parsed: parsed)
        if parsed.has("quiet") {
            writeStdout(result.image.id.description + "\n")
        } else {
            var line = "Pulled \(result.reference) as image \(result.image.id.short)"
            line += result.downloaded == 0 ? " (every layer was in the store)"
                : " (\(result.downloaded) layer\(result.downloaded == 1 ? "" : "s") downloaded, \(result.reused) already in the store)"
            if let problem = result.image.platformProblem() { line += "; \(problem): it cannot run here" }
            writeStdout(line + "\n")
        }
        return 0
    }

    static func pullOptions(_ parsed: ParsedOptions) throws -> PullOptions {
        var pull = PullOptions()
        if let text = parsed.value("platform") {
            guard let platform = Platform.parse(text) else {
                throw UsageFailure("--platform \(text): expected OS/ARCH[/VARIANT]", hint: "as in linux/amd64 or linux/arm/v7")
            }
            pull.platform = platform
        }
        if let text = parsed.value("jobs") {
            guard let n = Int(text), (1...16).contains(n) else {
                throw UsageFailure("--jobs \(text): not a number from 1 to 16")
            }
            pull.jobs = n
        }
        pull.tlsCA = try RegistryOptions.tlsCA(parsed)
        return pull
    }

    /// Pulls with progress on stderr; warnings of unpacking printed.
    static func pullImage(_ reference: String, options: PullOptions, parsed: ParsedOptions) throws -> PullResult {
        let environment = try RegistryOptions.environment(parsed)
        let progress = TransferProgress(mode: RegistryOptions.progressMode(parsed), verb: "downloading")
        let result = try Puller.pull(reference, options: options, environment: environment, progress: progress)
        for warning in result.warnings { Log.warning(warning) }
        return result
    }
}
