#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookCgroups
import NookRuntime
import NookSpec
import NookStore
import NookSupport

/// `nook run`: a command in a new sandbox, on the built-in host-root default.
enum RunCommand {
    static let usage = "nook run [OPTIONS] [IMAGE --] [--] [COMMAND [ARG...]]"
    static let summary = "run a command in a new sandbox"

    static let options: [OptionSpec] = [
        OptionSpec("profile", value: "NAME|FILE",
                   "start from a profile (see nook profile list); the flags below override it"),
        OptionSpec("tty", short: "t", "give the sandbox its own terminal (a pty relayed to yours)"),
        OptionSpec("interactive", short: "i", "with -t, pass your input to the sandbox's terminal (without -t, stdin passes anyway)"),
        OptionSpec("userns", value: "MODE", "keep-id (default: you keep your uid and gid inside) or root (you are uid 0)"),
        OptionSpec("network", value: "MODE",
                   "none (only loopback, up), host (the host's network), pasta or slirp4netns (a network of its own "
                       + "with a way out, without root); default: none, and for images pasta (else slirp4netns)"),
        OptionSpec("publish", short: "p", value: "[IP:]HOSTPORT:PORT[/udp]", repeatable: true,
                   "publish a port inside on the host (ranges as 8000-8009:8000-8009); needs pasta or slirp4netns; "
                       + "repeatable"),
        OptionSpec("mtu", value: "N", "with pasta or slirp4netns: the interface's MTU (default 65520)"),
        OptionSpec("no-ipv6", "with pasta or slirp4netns: IPv4 only"),
        OptionSpec("ip", value: "ADDR/PREFIX",
                   "with pasta or slirp4netns: the sandbox's address (slirp4netns: one ending in .100)"),
        OptionSpec("host-loopback", "with pasta or slirp4netns: let the sandbox reach services on the host's "
                       + "loopback (at its gateway address; slirp4netns: 10.0.2.2)"),
        OptionSpec("hostname", value: "NAME", "the sandbox's hostname (default: the host's; nook with --rootfs)"),
        OptionSpec("rootfs", value: "DIR", "use DIR as the root instead of the host's, with a writable layer on top"),
        OptionSpec("image", value: "IMAGE", "run an image of the store (same as IMAGE -- before the command)"),
        OptionSpec("pull", value: "POLICY",
                   "missing (default: pull IMAGE from its registry when the store lacks it), always, or never"),
        OptionSpec("platform", value: "OS/ARCH[/VARIANT]", "the platform to pull from an image index (default: this host's)"),
    ] + RegistryOptions.specs + [
        OptionSpec("entrypoint", value: "PROGRAM", "replace the image's Entrypoint (and so its Cmd); \"\" clears it"),
        OptionSpec("user", short: "u", value: "USER[:GROUP]",
                   "run as this user inside, by name (the root's /etc/passwd) or number"),
        OptionSpec("read-only", "with --rootfs: no writable layer, the root is read-only"),
        OptionSpec("overlay", value: "MODE", "the writable layer: auto (default), native (kernel overlayfs), fuse, or none"),
        OptionSpec("persist", value: "NAME", "keep the writable layer between runs under NAME (default: gone at exit)"),
        OptionSpec("bind", value: "SRC[:DST][:ro|rw]", repeatable: true,
                   "bind a host path into the sandbox (default DST = SRC, rw); repeatable"),
        OptionSpec("tmpfs", value: "DST[:OPTS]", repeatable: true,
                   "an empty tmpfs at DST, OPTS like size=64m,mode=1777; repeatable"),
        OptionSpec("workdir", short: "w", value: "DIR", "working directory inside (default: the current directory)"),
        OptionSpec("no-root-emulation", "without subordinate ids: let chown and setuid fail instead of emulating root"),
        OptionSpec("no-workspace", "do not bind the current directory read-write"),
        OptionSpec("env", short: "e", value: "NAME[=VALUE]", repeatable: true,
                   "set a variable; NAME alone copies it from your environment; repeatable"),
        OptionSpec("env-file", value: "FILE", repeatable: true, "read NAME=VALUE lines from FILE; repeatable"),
        OptionSpec("clearenv", "start from an empty environment (PATH, HOME, PWD, container=nook) instead of yours"),
        OptionSpec("preserve-fds", value: "N", "pass fds 3 .. 3+N-1 on to the command (default 0)"),
        OptionSpec("cap-add", value: "CAP", repeatable: true, "add a capability (NET_RAW, all, ...); repeatable"),
        OptionSpec("cap-drop", value: "CAP", repeatable: true, "drop a capability; repeatable"),
        OptionSpec("seccomp", value: "POLICY", "default (the built-in allow list) or unconfined (no filter)"),
        OptionSpec("seccomp-allow", value: "SYSCALL", repeatable: true,
                   "allow a system call the default policy refuses (see --explain); repeatable"),
        OptionSpec("ulimit", value: "NAME=SOFT[:HARD]", repeatable: true,
                   "a resource limit, NAME as in nofile, nproc, core; repeatable"),
        OptionSpec("umask", value: "MODE", "the command's umask, octal (default 0022)"),
        OptionSpec("explain", "at exit, list what the sandbox was refused (system calls, writes to read-only or hidden paths) and why"),
    ] + limitOptions + [
        OptionSpec("dry-run", "print the OCI runtime spec that would run, as JSON, and exit"),
    ] + DetachCommand.options + CommonOptions.specs

    /// Resource limits for the sandbox's cgroup. The names without dashes
    /// are also the names --require-limits and profiles use.
    static let limitOptions: [OptionSpec] = [
        OptionSpec("memory", value: "SIZE", "memory limit (memory.max): 512M, 2G, max; the OOM killer acts above it"),
        OptionSpec("memory-swap", value: "SIZE", "swap the sandbox may use on top of --memory (memory.swap.max); 0: none"),
        OptionSpec("memory-high", value: "SIZE", "memory above which the sandbox is slowed and reclaimed (memory.high)"),
        OptionSpec("pids", value: "N", "at most N processes and threads (pids.max); max: no limit"),
        OptionSpec("cpus", value: "N", "CPU time, in CPUs: 1.5 is one and a half CPUs' worth (cpu.max)"),
        OptionSpec("cpu-weight", value: "N", "CPU share against other cgroups, 1-10000; 100 is the default (cpu.weight)"),
        OptionSpec("io-weight", value: "N", "I/O share against other cgroups, 1-10000; 100 is the default (io.weight)"),
        OptionSpec("cpuset-cpus", value: "LIST", "run only on these CPUs: 0-3,6 (cpuset.cpus)"),
        OptionSpec("require-limits", value: "NAMES",
                   "refuse to start unless these limits are enforced: memory,pids,... or all"),
        OptionSpec("cgroup-manager", value: "MANAGER",
                   "auto (default: systemd if your user manager answers, else cgroupfs in a delegated subtree, "
                       + "else none), systemd, cgroupfs or none"),
        OptionSpec("stats", "when the command ends, print its peak memory, CPU time and peak pids"),
    ]

    static var help: String {
        """
        Usage: \(usage)

        Run COMMAND (default: your $SHELL) in a new sandbox. The host's root is seen
        read-only, with a fresh /proc, a minimal /dev, empty /tmp and /run, your home
        hidden behind an empty tmpfs, and the current directory bound read-write as
        the working directory. There is no network but loopback unless --network host,
        pasta or slirp4netns (the default for images: pasta, else slirp4netns).

        Options:
        \(OptionParser.help(options))

        Exit status: the command's own, or 128+N when it died of signal N;
        125 when nook itself failed, 126 when the command cannot be executed,
        127 when it was not found.
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "run", stopAtPositional: true)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        // Before nook opens anything of its own, which would take the lowest
        // free numbers and could stand in for a descriptor the caller closed.
        if let n = parsed.value("preserve-fds").flatMap(Int.init), n > 0, n <= 1000 {
            for fd in Int32(3)..<Int32(3 + n) where fcntl(fd, F_GETFD) < 0 {
                throw UsageFailure("--preserve-fds \(n): descriptor \(fd) is not open",
                                   hint: "open fds 3 to \(2 + n) before running nook, or lower the count")
            }
        }
        let environment = HostProbe.currentEnvironment()
        try CommonOptions.apply(parsed, environment: environment)
        if parsed.has("detach") && !parsed.has("dry-run") {
            return try DetachCommand.start(args, parsed: parsed, environment: environment)
        }
        try DetachCommand.refuseWithoutDetach(parsed)
        let prepared = try prepare(parsed, environment: environment, detached: false)
        if parsed.has("dry-run") {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(prepared.resolution.spec)
            writeStdout(String(decoding: data, as: UTF8.self) + "\n")
            return 0
        }
        defer { withExtendedLifetime(prepared.lease) {} }
        do {
            return try launch(prepared.resolution, userName: prepared.host.userName, stats: parsed.has("stats")).code
        } catch let failure as ChildFailure where failure.exitCode == 127 && failure.hint == nil
            && prepared.lease == nil {
            // `nook run -- alpine`: the command is an image's name.
            let name = prepared.resolution.spec.process?.args.first ?? ""
            let store = ImageStore(root: ImageStore.defaultRoot(environment: prepared.host.environment,
                                                                home: prepared.host.home))
            guard !name.contains("/") || name.hasPrefix("localhost/"),
                  (try? ImageRun.find(name, in: store)) != nil else { throw failure }
            throw HintedFailure(failure, hint: "\(name) is an image in your store: to run it, name it before --: "
                + "nook run \(name) -- [COMMAND]")
        }
    }

    /// A request resolved and ready to launch, with the image lease that
    /// keeps its layers until it ends.
    struct Prepared {
        var resolution: Resolution
        var host: HostContext
        var lease: ImageLease?
    }

    /// Everything before the launch: the request from flags and profile,
    /// the host, the image, the resolved spec; warnings printed.
    /// `image`: the id of the image to run instead of the one the
    /// arguments name (a detached container's monitor runs the image its
    /// container was made with, whatever the name means by now).
    static func prepare(_ parsed: ParsedOptions, environment: [String: String], detached: Bool,
                        image pinned: String? = nil) throws -> Prepared {
        var request = try request(from: parsed)
        var origins = RuleOrigins()
        if let reference = parsed.value("profile") {
            let (profile, settings) = try ProfileContext.request(reference, environment: environment)
            request = profile.overlaid(by: request)
            origins = settings
        }
        if let pinned, request.image != nil { request.image = pinned }
        request.detached = detached
        // The profile's binds too (the command line's are resolved already).
        request.binds = request.binds.map { bind in
            var resolved = bind
            resolved.source = resolvedBindSource(bind.source, shown: "the bind of \(bind.source)")
            return resolved
        }
        let rootFlags = ["read-only", "overlay", "persist"].filter { parsed.has($0) || parsed.value($0) != nil }
        if request.rootfs == nil && request.image == nil && !rootFlags.isEmpty {
            throw UsageFailure("--\(rootFlags[0]) applies to a root of its own",
                               hint: "add --rootfs DIR or an image (or a profile's [filesystem] root or image); "
                                   + "the host's root is always read-only")
        }

        if request.terminal == true && isatty(0) != 1 && !detached {
            Log.warning("ignoring -t: stdin is not a terminal, so the sandbox gets your stdin, stdout and stderr "
                + "as they are")
            request.terminal = false
        }

        Log.debug("parsed the command line")
        var host = try HostProbe.current(for: request)
        // The image's layers stay leased (prune keeps them) until nook ends.
        let policy = pinned != nil ? .never : try parsed.choice("pull", PullPolicy.self) ?? .missing
        if request.image == nil, parsed.value("pull") != nil || parsed.value("platform") != nil {
            throw UsageFailure("--pull and --platform apply to an image", hint: "name one: nook run IMAGE -- COMMAND")
        }
        // --dry-run changes nothing, the image store included.
        let dryRun = parsed.has("dry-run")
        let lease = try request.image.map { reference in
            do {
                return try ImageRun.prepare(reference, policy: dryRun ? .never : policy, parsed: parsed, host: &host)
            } catch let failure as UsageFailure where dryRun {
                throw UsageFailure(failure.message + " (--dry-run never pulls)", hint: failure.hint)
            }
        }
        Log.debug("probed the host", ["uid": String(host.uid), "ranges": String(host.uidRanges.count)])
        var resolution = try Resolver.resolve(request, host: host)
        resolution.origins = origins
        Log.debug("resolved the spec", ["mounts": String(resolution.spec.mounts?.count ?? 0)])
        for warning in resolution.warnings { Log.warnOnce(key: warning, warning) }
        // A misspelt name allows nothing: said, not silently taken.
        for name in request.seccompAllow where !SeccompFilters.knows(name) {
            let origin = origins["security.seccomp_allow:" + name].map { " (\($0))" } ?? ""
            Log.warnOnce(key: "seccomp-allow-" + name, "seccomp_allow \(name)\(origin): no system call has that name, "
                + "so it allows nothing; names are as in syscalls(2), such as keyctl")
        }
        for line in resolution.info { Log.info(line) }
        return Prepared(resolution: resolution, host: host, lease: lease)
    }

    /// How a launch ended: the exit status nook reports, and its parts.
    struct Outcome {
        var code: Int32
        var status: ExitStatus
        var oomKilled: Bool
        /// OOM kills the cgroup counted, of the payload or of any process in it.
        var oomKills: UInt64 = 0
    }

    /// What a detached container's monitor adds to a launch.
    struct MonitorHooks {
        /// The payload runs: the init's pid, its cgroup directory, scope
        /// and cgroup manager.
        var started: (pid_t, String?, String?, String) -> Void
        /// A warning the user should hear (the monitor has no terminal).
        var warn: (String) -> Void
        var watch: () -> [Int32]
        var readable: (Int32) -> Void
        var deadline: () -> Double?
        var due: (Int32) -> Void
    }

    /// Runs the sandbox in its cgroup and reports what the cgroup saw.
    static func launch(_ resolution: Resolution, userName: String, stats: Bool, id: String? = nil,
                       monitor: MonitorHooks? = nil) throws -> Outcome {
        let cgroup = try CgroupRequest(spec: resolution.spec)
        let session = try CgroupSession.prepare(cgroup, id: id ?? sandboxID(),
                                                command: resolution.spec.process?.args.first ?? "",
                                                userName: userName)
        for warning in session.plan.warnings {
            if let monitor { monitor.warn(warning) } else { Log.warnOnce(key: warning, warning) }
        }
        for line in session.plan.info { Log.info(line) }

        var resolution = resolution
        session.grantCgroupMount(&resolution.spec)

        var hooks = Launcher.Hooks()
        hooks.beforeStart = { pid in try session.place(pid) }
        if session.plan.manager != .none { hooks.beforeRelease = { _ in session.sample() } }
        hooks.afterExit = { _ in session.finish() }
        if let monitor {
            hooks.started = { pid in
                let leaf = session.directory.map { $0 + "/" + CgroupSession.leaf }
                monitor.started(pid, leaf, session.unit, session.plan.manager.rawValue)
            }
            hooks.watch = monitor.watch
            hooks.readable = monitor.readable
            hooks.deadline = monitor.deadline
            hooks.due = monitor.due
        }
        let status: ExitStatus
        do {
            status = try Launcher.run(resolution, hooks: hooks)
        } catch {
            session.finish()
            throw error
        }
        Log.info("command \(status)")

        let outcome = session.outcome
        var killedByOOM = false
        if case .signaled(SIGKILL, _) = status { killedByOOM = outcome.oomKills > 0 }
        if let oom = outcome.oomReport(payloadKilled: killedByOOM) {
            if oom.isPayload { Log.error(oom.text) } else { Log.warning(oom.text) }
        }
        if stats { writeStderr("nook: \(outcome.statsLine)\n") }
        return Outcome(code: killedByOOM ? 137 : status.code, status: status, oomKilled: killedByOOM,
                       oomKills: outcome.oomKills)
    }

    /// 12 hex digits, naming the sandbox's scope or cgroup.
    static func sandboxID() -> String {
        var rng = SystemRandomNumberGenerator()
        let n = rng.next() & 0xffff_ffff_ffff
        let hex = String(n, radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }

    static func request(from parsed: ParsedOptions) throws -> SandboxRequest {
        var r = SandboxRequest()
        // IMAGE -- COMMAND: the word before a "--" is an image.
        var positionals = parsed.positionals
        if !parsed.commandAfterDashDash && positionals.count >= 2 && positionals[1] == "--" {
            r.image = positionals[0]
            positionals.removeFirst(2)
        }
        if parsed.value("image") == "" { throw UsageFailure("--image: the name is empty", hint: "name an image: nook image ls") }
        if let image = parsed.value("image") {
            if r.image != nil { throw UsageFailure("--image and IMAGE -- both name an image", hint: "give one") }
            r.image = image
        }
        if !positionals.isEmpty { r.command = positionals }
        // An empty --entrypoint clears the image's, as with docker and podman.
        if let entrypoint = parsed.value("entrypoint") { r.entrypoint = entrypoint.isEmpty ? [] : [entrypoint] }
        r.user = parsed.value("user")
        if parsed.has("tty") { r.terminal = true }
        if parsed.has("interactive") { r.interactive = true }
        if parsed.has("explain") { r.explain = true }
        if let dir = parsed.value("rootfs") { r.rootfs = realPath(absolute(dir)) ?? absolute(dir) }
        if parsed.has("read-only") { r.readOnly = true }
        if let m = try parsed.choice("overlay", OverlayChoice.self) { r.overlay = m }
        r.persist = parsed.value("persist")
        if let m = try parsed.choice("userns", UsernsMode.self) { r.userns = m }
        if let m = try parsed.choice("network", NetworkMode.self) { r.network = m }
        do {
            r.publish = try parsed.all("publish").map { text throws(ResolveError) in try PortMapping.parse(text) }
        } catch {
            throw UsageFailure(error.message, hint: error.hint)
        }
        if let text = parsed.value("mtu") {
            guard let mtu = Int(text), (1280...65520).contains(mtu) else {
                throw UsageFailure("--mtu \(text): not an MTU", hint: "give a number from 1280 to 65520")
            }
            r.networkOptions.mtu = mtu
        }
        if parsed.has("no-ipv6") { r.networkOptions.ipv6 = false }
        r.networkOptions.address = parsed.value("ip")
        if parsed.has("host-loopback") { r.networkOptions.hostLoopback = true }
        if let name = parsed.value("hostname") {
            guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) else {
                throw UsageFailure("--hostname \(name): not a valid hostname", hint: "use letters, digits, '-' and '.', at most 64")
            }
            r.hostname = name
        }
        for spec in parsed.all("bind") { r.binds.append(try bind(spec)) }
        for spec in parsed.all("tmpfs") {
            let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
            let options = parts.count > 1 ? parts[1].split(separator: ",").map(String.init) : []
            r.tmpfs.append(TmpfsMount(destination: parts.first ?? spec, options: options))
        }
        if let dir = parsed.value("workdir") { r.workdir = absolute(dir) }
        if parsed.has("no-workspace") { r.bindWorkspace = false }
        if parsed.has("no-root-emulation") { r.rootEmulation = false }
        r.env = parsed.all("env")
        r.envFiles = parsed.all("env-file").map(absolute)
        if parsed.has("clearenv") { r.clearEnv = true }
        if let n = parsed.value("preserve-fds") {
            guard let count = Int(n), count >= 0, count <= 1000 else {
                throw UsageFailure("--preserve-fds \(n): not a count", hint: "give a number from 0 to 1000")
            }
            r.preserveFds = count
        }
        r.seccompAllow = parsed.all("seccomp-allow")
        r.capAdd = parsed.all("cap-add")
        r.capDrop = parsed.all("cap-drop")
        if let mode = try parsed.choice("seccomp", SeccompMode.self) { r.seccomp = mode }
        for spec in parsed.all("ulimit") { r.rlimits.append(try ulimit(spec)) }
        try limits(from: parsed, into: &r)
        if let m = parsed.value("umask") {
            guard let mask = UInt32(m, radix: 8), mask <= 0o777 else {
                throw UsageFailure("--umask \(m): not an octal mode", hint: "write it as 022 or 0077")
            }
            r.umask = mask
        }
        r.health = try DetachCommand.healthRequest(parsed)
        return r
    }

    static func limits(from parsed: ParsedOptions, into r: inout SandboxRequest) throws {
        func size(_ flag: String) throws -> LimitValue? {
            guard let text = parsed.value(flag) else { return nil }
            guard let value = LimitParser.bytes(text) else {
                throw UsageFailure("--\(flag) \(text): not a size",
                                   hint: "write a size such as 512M or 2G (K, M, G, T are powers of 1024), or max")
            }
            return value
        }
        func weight(_ flag: String) throws -> UInt64? {
            guard let text = parsed.value(flag) else { return nil }
            guard let n = UInt64(text) else {
                throw UsageFailure("--\(flag) \(text): not a number", hint: "a weight is 1 to 10000; 100 is the default")
            }
            return n
        }
        r.limits.memory = try size("memory")
        r.limits.memorySwap = try size("memory-swap")
        r.limits.memoryHigh = try size("memory-high")
        if let text = parsed.value("pids") {
            guard let value = LimitParser.count(text) else {
                throw UsageFailure("--pids \(text): not a count", hint: "give a number of processes such as 64, or max")
            }
            r.limits.pids = value
        }
        if let text = parsed.value("cpus") {
            if LimitParser.count(text) == .max {
                r.limits.cpus = .infinity
            } else {
                guard let n = Double(text), n.isFinite else {
                    throw UsageFailure("--cpus \(text): not a number",
                                       hint: "give CPUs as a number such as 0.5 or 2, or max for no limit")
                }
                r.limits.cpus = n
            }
        }
        r.limits.cpuWeight = try weight("cpu-weight")
        r.limits.ioWeight = try weight("io-weight")
        r.limits.allowedCPUs = parsed.value("cpuset-cpus")
        if let names = parsed.value("require-limits") {
            r.limits.required = Set(names.split(separator: ",").map { String($0).trimming(" ") })
        }
        if let name = parsed.value("cgroup-manager") {
            guard let choice = CgroupManagerChoice(rawValue: name) else {
                throw UsageFailure("--cgroup-manager \(name): unknown manager", hint: "use auto, systemd, cgroupfs or none")
            }
            r.cgroupManager = choice
        }
    }

    /// `SRC`, `SRC:DST`, `SRC:DST:ro`, `SRC:ro`.
    static func bind(_ spec: String) throws -> BindMount {
        var parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        if parts.count >= 2, let last = parts.last, last == "ro" || last == "rw" {
            readOnly = last == "ro"
            parts.removeLast()
        }
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else {
            throw UsageFailure("--bind \(spec): expected SRC[:DST][:ro|rw]",
                               hint: "paths that contain ':' can be bound through a profile's [filesystem] section")
        }
        let source = resolvedBindSource(absolute(parts[0]), shown: "--bind \(parts[0])")
        return BindMount(source: source, destination: parts.count == 2 ? parts[1] : source, readOnly: readOnly)
    }

    /// A bind's source with its symlinks resolved, as it is mounted: what
    /// nook checks (its own state, the session's sockets) must be what the
    /// sandbox gets. A symlink in the current directory, which sandboxes
    /// write, may be one a sandbox left there: a fresh try's next run bound
    /// the home read-write through ./cache; another's profile bind of
    /// ${PWD}/cache wrote nook's own profiles.
    static func resolvedBindSource(_ given: String, shown: String) -> String {
        let source = realPath(given) ?? given
        if source != given, let cwd = realPath("."), given.hasPrefix(cwd + "/"),
           source != cwd, !source.hasPrefix(cwd + "/") {
            Log.warning("\(shown) goes through a symlink in the current directory (which sandboxes can "
                + "write) to \(source), outside it; bind \(source) by its own path if that is what you meant")
        }
        return source
    }

    static func ulimit(_ spec: String) throws -> Rlimit {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        let names = ["cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
                     "sigpending", "msgqueue", "nice", "rtprio", "rttime"]
        guard parts.count == 2, names.contains(parts[0].lowercased()) else {
            throw UsageFailure("--ulimit \(spec): expected NAME=SOFT[:HARD]",
                               hint: "NAME is one of \(names.joined(separator: ", "))")
        }
        let values = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
        func number(_ s: String) throws -> UInt64 {
            if s == "unlimited" || s == "-1" { return UInt64.max }
            guard let n = UInt64(s) else {
                throw UsageFailure("--ulimit \(spec): \(s) is not a number", hint: "write a number or unlimited")
            }
            return n
        }
        let soft = try number(values[0])
        let hard = values.count > 1 ? try number(values[1]) : soft
        guard soft <= hard else {
            throw UsageFailure("--ulimit \(spec): the soft limit is above the hard limit")
        }
        return Rlimit(type: "RLIMIT_" + parts[0].uppercased(), hard: hard, soft: soft)
    }

    /// The host path with symlinks and `..` resolved, when it exists and
    /// its resolved name is UTF-8.
    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return strictUTF8(cString: p)
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path == "~" || path.hasPrefix("~/") {
            let home = HostProbe.currentEnvironment()["HOME"] ?? "/"
            return home + path.dropFirst()
        }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil,
              let cwd = strictUTF8(buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }) else { return path }
        return cwd == "/" ? "/" + path : cwd + "/" + path
    }
}
