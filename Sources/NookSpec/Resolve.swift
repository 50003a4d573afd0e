import NookSupport

/// A resolved sandbox: the Spec to run, and what resolving has to say.
public struct Resolution: Equatable, Sendable {
    public var spec: Spec
    /// Fallbacks the user should hear about (printed as warnings).
    public var warnings: [String] = []
    /// What nook chose (printed with --verbose).
    public var info: [String] = []
    public var preserveFds: Int = 0
    /// Files nook writes on the host before the launch and removes after:
    /// host path -> contents (/etc/hosts and friends for container roots).
    public var generatedFiles: [String: String] = [:]
    /// Relay stdin to the payload's terminal.
    public var interactive: Bool = false
    /// Record what the sandbox is refused and summarize it at exit.
    public var explain: Bool = false
    /// Where the profile's settings came from (for --explain).
    public var origins = RuleOrigins()
    /// The sandbox's own directory on the host, for files nook keeps while
    /// it runs (a network helper's log and socket).
    public var sandboxDir: String?
    /// The health check a detached container runs (the request's or the
    /// image's); nil when there is none.
    public var health: HealthCheck?
}

/// Bad input found while resolving: names the flag or file and the fix.
public struct ResolveError: NookFailure, Equatable, Sendable {
    public var message: String
    public var hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
    public var description: String { message }
}

/// Compiles a request on the built-in host-root default into an OCI Spec.
public enum Resolver {
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The capabilities container root keeps by default in `root` mode:
    /// what package managers and build tools need to act as root on files
    /// they own, and nothing that reaches the kernel's wider surface.
    public static let defaultCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_SETFCAP",
    ]

    public static let defaultMaskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]

    public static let defaultReadonlyPaths = [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]

    public static func resolve(_ request: SandboxRequest, host: HostContext) throws(ResolveError) -> Resolution {
        var spec = Spec()
        var out = Resolution(spec: spec)
        let image = host.image
        if request.image != nil && image == nil {
            throw ResolveError("the image \(request.image ?? "") was not looked up", hint: "this is a bug in nook's caller")
        }
        if image != nil && request.rootfs != nil {
            throw ResolveError("an image and --rootfs both name a root", hint: "drop one of them")
        }
        let containerRoot = request.rootfs != nil || image != nil
        // Host-root sandboxes keep your ids, so build outputs stay yours; a
        // root of its own expects to be run by root.
        let mode = request.userns ?? (containerRoot ? .root : .keepID)

        // Ids.
        var linux = Linux()
        if let reason = host.idmapUnavailable {
            out.warnings.append(reason)
            linux.uidMappings = [single(host.uid, mode)]
            linux.gidMappings = [single(host.gid, mode)]
        } else {
            linux.uidMappings = planMappings(own: host.uid, ranges: host.uidRanges, mode: mode)
            linux.gidMappings = planMappings(own: host.gid, ranges: host.gidRanges, mode: mode)
        }
        func list(_ r: [IDRange]) -> String { r.isEmpty ? "none" : r.map(\.description).joined(separator: ", ") }
        out.info.append("subordinate ids of \(host.userName): uids \(list(host.uidRanges)); gids \(list(host.gidRanges)); "
            + "from \(host.rangeSource)")
        out.info.append("user namespace: \(mode.rawValue); uid map \(describe(linux.uidMappings ?? [])); "
            + "gid map \(describe(linux.gidMappings ?? []))")
        // Whom the command runs as: --user (or the image's User), looked up in
        // the root's own /etc/passwd and /etc/group. keep-id keeps you.
        var request = request
        var extraGroups: [UInt32]?
        var userHome: String?
        if let spec = request.user ?? image?.config.user, !spec.isEmpty, request.uid == nil {
            if mode == .keepID {
                if request.user != nil {
                    throw ResolveError("--user \(spec) conflicts with --userns keep-id, which keeps your own uid",
                                       hint: "use --userns root to run as another user")
                }
                out.info.append("user: the image asks for \(spec), but keep-id keeps your own uid \(host.uid)")
            } else {
                let origin = request.user != nil ? "--user" : "the image's User"
                let files = image.map { ($0.passwd, $0.group) } ?? (host.rootfsPasswd, host.rootfsGroup)
                let user = try resolveUser(spec, passwd: files.0, group: files.1, where: origin)
                request.uid = user.uid
                request.gid = user.gid
                extraGroups = user.groups
                userHome = user.home
            }
        }
        if extraGroups == nil && mode == .root && containerRoot && request.uid == nil {
            // Root of an image or directory: the groups its /etc/group gives
            // root, not your host groups seen as nobody.
            let files = image.map { ($0.passwd, $0.group) } ?? (host.rootfsPasswd, host.rootfsGroup)
            let root = try? resolveUser("0", passwd: files.0, group: files.1, where: "root")
            extraGroups = root?.groups ?? []
            userHome = root?.home
        }
        // A group /etc/group gives the user but the map lacks would make
        // setgroups fail with EINVAL: left out, and said.
        if let groups = extraGroups {
            let mapped = groups.filter { gid in (linux.gidMappings ?? []).contains { gid >= $0.containerID && gid - $0.containerID < $0.size } }
            if mapped.count < groups.count {
                let dropped = groups.filter { !mapped.contains($0) }.map(String.init).joined(separator: ", ")
                out.warnings.append("the root's /etc/group gives the user the groups \(dropped), which your subordinate "
                    + "ids do not map: left out")
            }
            extraGroups = mapped
        }
        let inside = try payloadIDs(request, host: host, mode: mode, linux: linux)

        // Namespaces.
        let net = try network(request, host: host, image: image != nil)
        let network = net.mode
        out.warnings += net.warnings
        var namespaces = ["user", "mount", "pid", "ipc", "uts", "cgroup"].map { Namespace(type: $0) }
        if network != .host { namespaces.append(Namespace(type: "network")) }
        linux.namespaces = namespaces
        out.info.append("network: \(network.rawValue)"
            + (net.annotations[Annotation.networkPorts].map { ", published \($0)" } ?? ""))

        // Process.
        let defaultShell = containerRoot ? nil : host.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 }
        var args = request.command ?? [defaultShell ?? "/bin/sh"]
        if let config = image?.config {
            // docker's rules: a command replaces Cmd and keeps Entrypoint;
            // --entrypoint replaces Entrypoint and drops Cmd.
            let entrypoint = request.entrypoint ?? config.entrypoint ?? []
            let cmd = request.command ?? (request.entrypoint == nil ? config.cmd ?? [] : [])
            args = entrypoint + cmd
            guard !args.isEmpty else {
                throw ResolveError("the image \(image?.name ?? "") names no command",
                                   hint: "give one after --, as in: nook run \(image?.name ?? "IMAGE") -- sh")
            }
        } else if let entrypoint = request.entrypoint {
            args = entrypoint + (request.command ?? [])
        }
        guard let first = args.first, !first.isEmpty else {
            if let image, request.command == nil || request.entrypoint == nil {
                throw ResolveError("the command of the image \(image.name) starts with an empty program name",
                                   hint: "give one: nook run --entrypoint PROGRAM \(image.name) -- ARGS")
            }
            throw ResolveError("the command is empty", hint: "give a command after --, as in: nook run -- make")
        }
        // Without the workspace the current directory is not in the sandbox.
        let noWorkspace = request.bindWorkspace == false || !workspaceBindable(host.cwd) || inRuntimeDirectory(host)
        // The image's WorkingDir is made when missing, as docker does; a
        // relative one is taken from the root.
        let imageWorkdir = request.workdir == nil ? image?.config.workingDir.flatMap { $0.isEmpty ? nil : $0 } : nil
        let workdir = try normalized(request.workdir ?? imageWorkdir.map { $0.hasPrefix("/") ? $0 : "/" + $0 }
            ?? (containerRoot || noWorkspace ? "/" : host.cwd), what: imageWorkdir != nil ? "the image's WorkingDir" : "--workdir")
        let hostname = request.hostname ?? (containerRoot ? "nook" : nil)
        let env = try environment(request, host: host, insideUID: inside.uid, workdir: workdir,
                                  container: containerRoot ? hostname ?? "nook" : nil, home: userHome)
        var process = Process(user: User(uid: inside.uid, gid: inside.gid, umask: request.umask ?? 0o022),
                              args: args, env: env, cwd: workdir)
        // A resolved user gets exactly its groups: none left over from root.
        if let extraGroups { process.user.additionalGids = extraGroups }
        if request.terminal == true {
            process.terminal = true
            process.consoleSize = host.terminalSize
        }
        process.noNewPrivileges = true
        process.capabilities = try capabilities(request, mode: mode)
        // A fresh try reached the host's 127.0.0.1 through both helpers with
        // either: NET_ADMIN routes 127.0.0.0/8 to the gateway (with
        // route_localnet set over netlink), NET_RAW writes such frames
        // itself. The helpers cannot tell those from the sandbox's traffic.
        if net.mode.usesHelper, request.networkOptions.hostLoopback != true,
           let risky = process.capabilities?.bounding?.first(where: { $0 == "CAP_NET_ADMIN" || $0 == "CAP_NET_RAW" }) {
            out.warnings.append("\(risky.dropFirst(4)) with --network \(net.mode.rawValue) lets a program in the sandbox "
                + "reach services on the host's loopback (it can route or forge packets to 127.0.0.1 through the "
                + "helper), as if --host-loopback were given; add it only for programs you trust")
        }
        if !request.rlimits.isEmpty { process.rlimits = request.rlimits }
        spec.process = process
        spec.hostname = hostname

        // Filesystem.
        out.spec.linux = linux
        var annotations = [Annotation.root: "host", Annotation.userns: mode.rawValue]
        if imageWorkdir != nil { annotations[Annotation.createWorkdir] = "true" }
        let rootOwned = (linux.uidMappings ?? []).contains { $0.containerID == 0 } ? ["uid=0", "gid=0"] : []
        let hiding = try hidden(request, host: host)
        let defaults: [Mount]
        if let image {
            let (root, extra) = try imageRoot(request, host: host, image: image, mode: mode, out: &out)
            spec.root = root
            annotations.merge(extra) { _, new in new }
            out.info.append("root: image \(image.name) (\(image.layers.count) layers), writable layer: "
                + "\(extra[Annotation.overlay] ?? "none")"
                + (extra[Annotation.upper].map { $0 == "tmpfs" ? " (in memory, gone at exit)" : " (persistent: \($0))" } ?? ""))
            defaults = try containerMounts(request, host: host, hostname: hostname ?? "nook", resolvConf: net.resolvConf,
                                           rootOwned: rootOwned, out: &out)
        } else if let rootfs = request.rootfs {
            let (root, extra) = try directoryRoot(request, host: host, rootfs: rootfs, out: &out)
            spec.root = root
            annotations.merge(extra) { _, new in new }
            out.info.append("root: \(root.path), writable layer: \(extra[Annotation.overlay] ?? "none")"
                + (extra[Annotation.upper].map { $0 == "tmpfs" ? " (in memory, gone at exit)" : " (persistent: \($0))" } ?? ""))
            defaults = try containerMounts(request, host: host, hostname: hostname ?? "nook", resolvConf: net.resolvConf,
                                           rootOwned: rootOwned, out: &out)
        } else {
            try checkRoot(request, out: &out)
            spec.root = Root(path: "/", readonly: true)
            defaults = try hostRootMounts(request, host: host, inside: inside, rootOwned: rootOwned, out: &out)
                + hostRootResolvConf(host: host, network: net, out: &out)
        }
        spec.mounts = try mounts(request, host: host, defaults: defaults, hidden: hiding.mounts)
        for bind in request.binds {
            if let source = try? normalized(bind.source, what: "--bind source"),
               let warning = sessionSocketWarning(source, host: host) {
                out.warnings.append(warning)
            }
        }
        linux.devices = ["null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                         "tty": (5, 0)].sorted { $0.key < $1.key }
            .map { Device(path: "/dev/" + $0.key, type: "c", major: $0.value.0, minor: $0.value.1) }
        // What lies in a hidden directory is gone already; masking it too
        // would fail to find it.
        let hiddenDirectories = hiding.mounts.map(\.destination)
        func visible(_ path: String) -> Bool { !hiddenDirectories.contains { path.hasPrefix($0 + "/") } }
        linux.maskedPaths = (defaultMaskedPaths + hiding.files).filter(visible)
        linux.readonlyPaths = defaultReadonlyPaths.filter(visible)
        for path in request.readOnlyPaths {
            let path = try normalized(path, what: "read-only path")
            if !(linux.readonlyPaths ?? []).contains(path) { linux.readonlyPaths?.append(path) }
        }

        // Security.
        for name in request.seccompAllow where name.isEmpty || !name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" }) {
            throw ResolveError("--seccomp-allow \(name): not a system call name", hint: "names are as in syscalls(2): keyctl, io_uring_setup")
        }
        // Root emulation: a single-id map on a root of its own, as root.
        let emulateRoot = host.idmapUnavailable != nil && containerRoot && mode == .root
            && request.rootEmulation != false
        switch request.seccomp ?? .default {
        case .default:
            var seccomp = SeccompPolicy.defaultSeccomp(native: host.nativeArch)
            if writesHostFiles(spec.mounts ?? [], sandboxDir: host.sandboxDir) {
                seccomp = SeccompPolicy.refusingSetID(in: seccomp)
            }
            if !request.seccompAllow.isEmpty {
                seccomp = SeccompPolicy.allowing(request.seccompAllow, in: seccomp)
                out.info.append("seccomp: also allowed: \(request.seccompAllow.joined(separator: ", "))")
            }
            if emulateRoot {
                seccomp = SeccompPolicy.emulatingRoot(in: seccomp)
                annotations[Annotation.rootEmulation] = "on"
                out.warnings.append("root emulation: with only your own id, nook answers chown, setuid/setgid and "
                    + "setgroups in the sandbox itself (no owner changes on disk; each process keeps the ids it set), "
                    + "so package managers and su work; every file stays yours (root inside). Turn it off with "
                    + "--no-root-emulation")
            }
            linux.seccomp = seccomp
        case .unconfined:
            if emulateRoot {
                out.warnings.append("root emulation needs the seccomp filter; with --seccomp unconfined, chown to "
                    + "another id and setuid fail with EINVAL")
            }
            out.warnings.append("seccomp is off (--seccomp unconfined): every system call reaches the kernel")
        }
        // Cgroup: the limits, and the choices linux.resources cannot carry.
        linux.resources = try resources(request.limits)
        spec.linux = linux
        spec.annotations = annotations
        if let reason = host.idmapUnavailable { spec.annotations?[Annotation.idmapFallback] = reason }
        spec.annotations?.merge(try cgroupAnnotations(request)) { _, new in new }
        spec.annotations?.merge(net.annotations) { _, new in new }
        do {
            out.health = try health(request.health, image: image?.config)
        } catch where !request.detached && error.message.hasPrefix(Self.imageHealthcheck) {
            // No check runs in the foreground: an image's broken one must
            // not stop the image from running (a fresh try could not).
            out.health = nil
        }
        if let check = out.health { spec.annotations?[Annotation.health] = check.json }

        out.spec = spec
        out.sandboxDir = host.sandboxDir
        out.preserveFds = request.preserveFds ?? 0
        out.interactive = request.interactive ?? false
        out.explain = request.explain ?? false
        if out.explain && linux.seccomp == nil {
            out.warnings.append("--explain needs the seccomp filter to see refused calls; with --seccomp unconfined "
                + "it reports nothing")
            out.explain = false
        }
        return out
    }

    // MARK: Ids

    /// The payload's uid and gid inside: 0 in `root` mode and the caller's
    /// own in `keep-id` mode, unless the request names others. A named id
    /// must be mapped, and keep-id cannot run as another uid (files
    /// written would no longer be the caller's, which is keep-id's point).
    static func payloadIDs(_ request: SandboxRequest, host: HostContext, mode: UsernsMode, linux: Linux)
        throws(ResolveError) -> (uid: UInt32, gid: UInt32)
    {
        var ids = mode == .root ? (uid: UInt32(0), gid: UInt32(0)) : (uid: host.uid, gid: host.gid)
        func mapped(_ id: UInt32, _ maps: [IDMapping]) -> Bool {
            maps.contains { UInt64(id) >= UInt64($0.containerID) && UInt64(id) < UInt64($0.containerID) + UInt64($0.size) }
        }
        if let uid = request.uid {
            if mode == .keepID && uid != host.uid {
                throw ResolveError("uid \(uid) conflicts with userns keep-id, which keeps your own uid \(host.uid)",
                                   hint: "use userns root to run as another uid, or drop the uid")
            }
            guard mapped(uid, linux.uidMappings ?? []) else {
                throw ResolveError("uid \(uid) is not mapped in the sandbox (uid map \(describe(linux.uidMappings ?? [])))",
                                   hint: "choose a uid inside the map, or add subordinate ids to /etc/subuid")
            }
            ids.uid = uid
        }
        if let gid = request.gid {
            guard mapped(gid, linux.gidMappings ?? []) else {
                throw ResolveError("gid \(gid) is not mapped in the sandbox (gid map \(describe(linux.gidMappings ?? [])))",
                                   hint: "choose a gid inside the map, or add subordinate ids to /etc/subgid")
            }
            ids.gid = gid
        }
        return ids
    }

    static func single(_ own: UInt32, _ mode: UsernsMode) -> IDMapping {
        IDMapping(containerID: mode == .root ? 0 : own, hostID: own, size: 1)
    }

    /// Container ids for `own` and the subordinate ranges: in `root` mode
    /// 0 is `own` and 1.. are the ranges in order; in `keep-id` mode `own`
    /// is itself and the ranges fill every other id from 0 up.
    public static func planMappings(own: UInt32, ranges: [IDRange], mode: UsernsMode) -> [IDMapping] {
        let ownInside = mode == .keepID ? UInt64(own) : 0
        var maps: [IDMapping] = []
        var next: UInt64 = 0  // the next container id to hand out
        var ownPlaced = false
        func placeOwnIfDue() {
            guard !ownPlaced, next == ownInside else { return }
            maps.append(IDMapping(containerID: UInt32(ownInside), hostID: own, size: 1))
            next += 1
            ownPlaced = true
        }
        placeOwnIfDue()
        for range in ranges where range.count > 0 {
            var host = UInt64(range.start)
            var left = UInt64(range.count)
            while left > 0 {
                placeOwnIfDue()
                // Stop short of the caller's own id until it is placed.
                let length = ownPlaced ? left : min(left, ownInside - next)
                guard next + length <= UInt64(UInt32.max) else { break }
                maps.append(IDMapping(containerID: UInt32(next), hostID: UInt32(host), size: UInt32(length)))
                next += length
                host += length
                left -= length
            }
        }
        if !ownPlaced { maps.append(IDMapping(containerID: UInt32(ownInside), hostID: own, size: 1)) }
        return maps
    }

    static func describe(_ maps: [IDMapping]) -> String {
        maps.map { m in
            m.size == 1 ? "\(m.containerID)->\(m.hostID)"
                : "\(m.containerID)-\(UInt64(m.containerID) + UInt64(m.size) - 1)->\(m.hostID)-\(UInt64(m.hostID) + UInt64(m.size) - 1)"
        }.joined(separator: ",")
    }

    // MARK: Environment

    /// The payload's environment. On the host root: yours (or, with
    /// --clearenv, only PATH and HOME). In a root of its own (`container`
    /// names its hostname): a small one of its own, as a login there would have.
    static func environment(_ request: SandboxRequest, host: HostContext, insideUID: UInt32,
                            workdir: String, container: String? = nil, home: String? = nil) throws(ResolveError) -> [String] {
        // In first-set order, with an index by name: an image or env file
        // of many thousand entries must not cost their square.
        var env: [(String, String)] = []
        var index: [String: Int] = [:]
        func set(_ key: String, _ value: String) {
            if let i = index[key] {
                env[i].1 = value
            } else {
                index[key] = env.count
                env.append((key, value))
            }
        }
        if let hostname = container {
            set("PATH", defaultPath)
            // The user's own home from the root's /etc/passwd, as docker
            // and podman give it.
            set("HOME", home ?? (insideUID == 0 ? "/root" : "/"))
            set("HOSTNAME", hostname)
            // The image's own environment, over these defaults.
            for entry in host.image?.config.env ?? [] {
                guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex else { continue }
                set(String(entry[..<eq]), String(entry[entry.index(after: eq)...]))
            }
        } else if request.clearEnv == true {
            set("PATH", defaultPath)
            set("HOME", host.home)
        } else {
            for key in host.environment.keys.sorted() { set(key, host.environment[key] ?? "") }
        }
        if host.environment["XDG_RUNTIME_DIR"] != nil, request.clearEnv != true, container == nil {
            set("XDG_RUNTIME_DIR", "/run/user/\(insideUID)")
        }
        set("PWD", workdir)
        set("container", "nook")
        if request.terminal == true && index["TERM"] == nil {
            set("TERM", host.environment["TERM"] ?? "xterm")
        }
        // Unset before env files and --env, so that an explicit setting
        // of the same name (from a flag, say) still wins.
        if !request.unsetEnv.isEmpty {
            let unset = Set(request.unsetEnv)
            env.removeAll { unset.contains($0.0) }
            index = Dictionary(uniqueKeysWithValues: env.enumerated().map { ($1.0, $0) })
        }
        for path in request.envFiles {
            guard let text = host.envFileContents[path] else {
                throw ResolveError("--env-file \(path): cannot be read", hint: "check that the file exists and is readable")
            }
            var number = 0
            // By scalars: "\r\n" is one Character, so a Character split would
            // not see the line ends of a file written on Windows.
            for raw in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
                number += 1
                let line = String(String.UnicodeScalarView(raw)).trimming(" \t\r")
                if line.isEmpty || line.hasPrefix("#") { continue }
                guard let (key, value) = try envEntry(line, host: host, where: "--env-file \(path):\(number)") else {
                    continue
                }
                set(key, value)
            }
        }
        for entry in request.env {
            guard let (key, value) = try envEntry(entry, host: host, where: "--env \(entry)") else { continue }
            set(key, value)
        }
        return env.map { "\($0.0)=\($0.1)" }
    }

    /// NAME=VALUE, or NAME copied from the caller's environment (nil when
    /// the caller has no such variable: it is left unset, as docker does).
    static func envEntry(_ entry: String, host: HostContext, where origin: String) throws(ResolveError)
        -> (String, String)?
    {
        let key: String
        let value: String
        if let eq = entry.firstIndex(of: "=") {
            key = String(entry[..<eq])
            value = String(entry[entry.index(after: eq)...])
        } else {
            key = entry
            guard let inherited = host.environment[entry] else {
                guard !entry.isEmpty, entry.allSatisfy({ $0 != " " && $0 != "\t" }) else {
                    throw ResolveError("\(origin): not a valid variable", hint: "write NAME=value, or NAME to copy it from your environment")
                }
                return nil
            }
            value = inherited
        }
        guard !key.isEmpty, !key.contains("\0"), !value.contains("\0"),
              key.allSatisfy({ $0 != " " && $0 != "\t" }) else {
            throw ResolveError("\(origin): not a valid variable", hint: "write NAME=value, or NAME to copy it from your environment")
        }
        return (key, value)
    }

    // MARK: Capabilities

    /// Every capability name nook accepts, in kernel order.
    public static let capabilityNames = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
        "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ]

    /// `net_raw`, `NET_RAW`, `cap_net_raw` -> `CAP_NET_RAW`; `all` -> every one.
    public static func capabilityList(_ name: String, flag: String) throws(ResolveError) -> [String] {
        let upper = name.uppercased()
        if upper == "ALL" { return capabilityNames }
        let full = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
        guard capabilityNames.contains(full) else {
            throw ResolveError("\(flag) \(name): unknown capability",
                               hint: "names are as in capabilities(7), for example NET_RAW or CAP_SYS_PTRACE")
        }
        return [full]
    }

    /// Dropping ALL starts from nothing and then adds what --cap-add names
    /// (docker's reading of --cap-drop ALL --cap-add NET_RAW); otherwise the
    /// defaults plus the adds, less the drops.
    static func capabilities(_ request: SandboxRequest, mode: UsernsMode) throws(ResolveError) -> Capabilities {
        let dropsAll = request.capDrop.contains { $0.uppercased() == "ALL" || $0.uppercased() == "CAP_ALL" }
        var set = mode == .root && !dropsAll ? defaultCapabilities : []
        var drops: [String] = []
        for name in request.capDrop where !(dropsAll && (name.uppercased() == "ALL" || name.uppercased() == "CAP_ALL")) {
            drops += try capabilityList(name, flag: "--cap-drop")
        }
        for name in request.capAdd {
            for cap in try capabilityList(name, flag: "--cap-add") where !set.contains(cap) { set.append(cap) }
        }
        set.removeAll { drops.contains($0) }
        set.sort { (capabilityNames.firstIndex(of: $0) ?? 0) < (capabilityNames.firstIndex(of: $1) ?? 0) }
        // A non-root payload keeps capabilities across exec only through the
        // ambient set, which needs them inheritable too; nook puts them
        // there only when they were asked for.
        let ambient = mode == .keepID ? set : []
        return Capabilities(bounding: set, effective: set, inheritable: ambient, permitted: set, ambient: ambient)
    }

    // MARK: Mounts

    /// An absolute path with `.` and repeated slashes removed; `..` is refused
    /// rather than interpreted, so what the user wrote is what is checked.
    public static func normalized(_ path: String, what: String) throws(ResolveError) -> String {
        guard path.hasPrefix("/") else {
            throw ResolveError("\(what) \(path): not an absolute path", hint: "write the path from /, as in /work/data")
        }
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                throw ResolveError("\(what) \(path): contains '..'", hint: "write the path without '..'")
            }
            parts.append(part)
        }
        guard !path.contains("\0") else { throw ResolveError("\(what): contains a NUL byte") }
        let result = "/" + parts.joined(separator: "/")
        guard result.utf8.count < 4096, parts.allSatisfy({ $0.utf8.count <= 255 }) else {
            throw ResolveError("\(what) \(result.prefix(60))...: too long (ENAMETOOLONG)",
                               hint: "paths are at most 4095 bytes, each name at most 255")
        }
        return result
    }

    /// The host root is always seen read-only: a writable layer goes over
    /// a root of its own (--rootfs). Asking for one over the host's is not
    /// an error, since the sandbox only gets less than it asked for.
    static func checkRoot(_ request: SandboxRequest, out: inout Resolution) throws(ResolveError) {
        let overlay = request.overlay ?? .auto
        let writableLayer = overlay == .native || overlay == .fuse
        if request.readOnly == true && writableLayer {
            throw ResolveError("a read-only root and a writable \(overlay.rawValue) overlay were both asked for",
                               hint: "drop the overlay, or ask for a writable root")
        }
        if writableLayer || request.readOnly == false {
            // Limitation: the host root has no writable layer; writes outside
            // mounts fail with EROFS. Fix: an overlay over the skeleton root's
            // binds (the same assembly --rootfs uses, per top-level entry).
            out.warnings.append("a writable root (overlay \(overlay.rawValue)) is not available over the host's root: "
                + "it stays read-only; use binds or tmpfs for places that must be writable, or --rootfs")
        }
        out.info.append("overlay: none (the host root is read-only)")
    }

    /// Mounts that hide directories (an empty read-only tmpfs each) and
    /// files to mask: the request's hidden paths, and the top-level host
    /// entries left out of `hostEntries`.
    static func hidden(_ request: SandboxRequest, host: HostContext) throws(ResolveError)
        -> (mounts: [Mount], files: [String])
    {
        var paths: [String] = []
        for path in request.hiddenPaths {
            let path = try normalized(path, what: "hidden path")
            guard path != "/" else {
                throw ResolveError("hidden path /: cannot hide the root", hint: "use host entries to show less of it")
            }
            if !paths.contains(path) { paths.append(path) }
        }
        if let allowed = request.hostEntries {
            var names: Set<String> = []
            for entry in allowed {
                let name = entry.hasPrefix("/") ? String(entry.dropFirst()) : entry
                guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                    throw ResolveError("host entry \(entry): not a top-level name", hint: "write names such as usr or /etc")
                }
                names.insert(name)
            }
            // /proc, /dev, /tmp and /run get their own mounts anyway.
            let own: Set<String> = ["proc", "dev", "tmp", "run"]
            for name in host.rootEntries.keys.sorted() where !names.contains(name) && !own.contains(name) {
                if !paths.contains("/" + name) { paths.append("/" + name) }
            }
        }
        for bind in request.binds {
            guard let destination = try? normalized(bind.destination, what: "--bind destination") else { continue }
            if paths.contains(destination) {
                throw ResolveError("\(destination) is both hidden and bound into the sandbox",
                                   hint: "remove it from the hidden paths, or drop the bind")
            }
        }
        var mounts: [Mount] = []
        var files: [String] = []
        for path in paths {
            let directory = host.sourceIsDirectory[path] ?? host.rootEntries[String(path.dropFirst())]
            if directory == true {
                mounts.append(Mount(destination: path, type: "tmpfs", source: "tmpfs",
                                    options: ["ro", "nosuid", "nodev", "noexec", "mode=755"]))
            } else {
                // A file, or a path missing on the host (masking skips it).
                files.append(path)
            }
        }
        return (mounts, files)
    }

    /// The built-in default over the host's root.
    static func hostRootMounts(_ request: SandboxRequest, host: HostContext, inside: (uid: UInt32, gid: UInt32),
                               rootOwned: [String], out: inout Resolution) throws(ResolveError) -> [Mount] {
        var defaults = systemMounts(rootOwned: rootOwned)
        let owner = ["uid=\(inside.uid)", "gid=\(inside.gid)"]
        if host.environment["XDG_RUNTIME_DIR"] != nil {
            defaults.append(Mount(destination: "/run/user/\(inside.uid)", type: "tmpfs", source: "tmpfs",
                                  options: ["nosuid", "nodev", "mode=700"] + owner))
        }
        var homes: [String] = []
        let candidates = host.homePaths.isEmpty ? [host.home, host.environment["HOME"] ?? ""] : host.homePaths
        let inRuntime = inRuntimeDirectory(host)
        let bindsWorkspace = (request.bindWorkspace ?? true) && host.cwd != "/" && workspaceBindable(host.cwd)
            && !inRuntime && stateDirectory(holding: host.cwd, host: host) == nil
        for candidate in candidates where candidate.hasPrefix("/") {
            guard let home = try? normalized(candidate, what: "home"), home != "/", !homes.contains(home),
                  host.sourceIsDirectory[home] == true else { continue }
            homes.append(home)
            // From the home itself, all of it is the workspace: no tmpfs
            // under the bind (its read-only remount, made last, landed on
            // the bind and left the workspace read-only).
            if bindsWorkspace && home == host.cwd { continue }
            // Empty and read-only: nothing of the real home shows, and
            // nothing written there could be mistaken for kept. A scratch
            // home is empty too, but writable, and gone at exit.
            let access = request.home == .scratch ? [] : ["ro"]
            defaults.append(Mount(destination: home, type: "tmpfs", source: "tmpfs",
                                  options: access + ["nosuid", "nodev", "mode=700"] + owner))
        }
        if request.bindWorkspace ?? true {
            if host.cwd == "/" {
                out.info.append("workspace: the current directory is /, so nothing is bound read-write")
            } else if !workspaceBindable(host.cwd) {
                out.warnings.append("the current directory \(host.cwd) is one the sandbox has a private one of (or lies "
                    + "in the host's /proc, /sys or /dev): it is not bound, and the command starts in /. "
                    + "Run nook from a project directory, or bind what is needed with --bind")
            } else if inRuntime {
                // The runtime directory holds the session's sockets: the
                // user manager's and the bus, through which a sandbox could
                // start commands outside itself.
                out.warnings.append("the current directory \(host.cwd) lies in your session's runtime directory, whose "
                    + "sockets (the systemd user manager's, D-Bus) would let the sandbox run commands outside it: it is "
                    + "not bound, and the command starts in /. Run nook from a project directory")
            } else if let state = stateDirectory(holding: host.cwd, host: host) {
                // Written from inside, the seccomp cache, a profile or an
                // image layer here would change what later sandboxes load.
                out.warnings.append("the current directory \(host.cwd) lies in nook's own state (\(state)): it is "
                    + "bound read-only, since no sandbox may change what later ones load")
                defaults.append(Mount(destination: host.cwd, type: "bind", source: host.cwd,
                                      options: ["rbind", "ro", "nosuid", "nodev"]))
            } else {
                if homes.contains(host.cwd) {
                    out.warnings.append("the current directory is your home directory \(host.cwd): all of it is "
                        + "bound read-write into the sandbox; run nook from a project directory to expose less")
                }
                defaults.append(Mount(destination: host.cwd, type: "bind", source: host.cwd,
                                      options: ["rbind", "rw", "nosuid", "nodev"]))
                out.info.append("workspace: \(host.cwd) read-write")
            }
        }
        return defaults
    }

    /// What every sandbox gets, whatever its root: a fresh /proc, a minimal
    /// /dev with a private devpts and /dev/shm, empty /tmp and /run, and its
    /// own cgroup (read-only unless the cgroup step delegates one to it).
    static func systemMounts(rootOwned: [String]) -> [Mount] {
        [
            Mount(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
            Mount(destination: "/dev", type: "tmpfs", source: "tmpfs",
                  options: ["nosuid", "noexec", "mode=755", "size=65536k"] + rootOwned),
            Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
                  options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
            Mount(destination: "/dev/shm", type: "tmpfs", source: "shm",
                  options: ["nosuid", "noexec", "nodev", "mode=1777"] + rootOwned),
            Mount(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] + rootOwned),
            Mount(destination: "/run", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=755"] + rootOwned),
            Mount(destination: cgroupMountPoint, type: "cgroup2", source: "cgroup2",
                  options: ["ro", "nosuid", "noexec", "nodev"]),
        ]
    }

    /// The defaults with what the user asked for on top, parents first.
    static func mounts(_ request: SandboxRequest, host: HostContext, defaults: [Mount], hidden: [Mount] = [])
        throws(ResolveError) -> [Mount]
    {
        var user: [Mount] = hidden
        for bind in request.binds {
            let destination = try normalized(bind.destination, what: "--bind destination")
            let source = try normalized(bind.source, what: "--bind source")
            guard destination != "/" else {
                throw ResolveError("--bind \(bind.source):\(bind.destination): cannot replace the root",
                                   hint: "bind to a directory below /")
            }
            if let err = host.sourceErrors[source] {
                throw ResolveError("--bind \(bind.source): cannot be reached on the host: \(Errno(err))",
                                   hint: "check its permissions and those of the directories above it")
            }
            guard host.sourceIsDirectory[source] != nil else {
                throw ResolveError("--bind \(bind.source): no such file or directory on the host",
                                   hint: "create it first, or check the path")
            }
            if !bind.readOnly, let state = stateDirectory(holding: source, host: host) {
                throw ResolveError("--bind \(bind.source): it lies in nook's own state (\(state)), which no sandbox "
                    + "may change: the seccomp filters, profiles and image layers later sandboxes load are there",
                                   hint: "bind it read-only: --bind \(bind.source):\(bind.destination):ro")
            }
            user.append(Mount(destination: destination, type: "bind", source: source,
                              options: ["rbind", bind.readOnly ? "ro" : "rw", "nosuid", "nodev"]))
        }
        for tmpfs in request.tmpfs {
            let destination = try normalized(tmpfs.destination, what: "--tmpfs")
            guard destination != "/" else { throw ResolveError("--tmpfs /: cannot replace the root") }
            for option in tmpfs.options {
                let key = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
                guard ["size", "mode", "nr_inodes", "uid", "gid", "ro", "rw", "noexec", "exec"].contains(key) else {
                    throw ResolveError("--tmpfs \(tmpfs.destination): unknown option \(option)",
                                       hint: "tmpfs options are size=, mode=, nr_inodes=, uid=, gid=, ro, noexec")
                }
            }
            user.append(Mount(destination: destination, type: "tmpfs", source: "tmpfs",
                              options: ["nosuid", "nodev"] + tmpfs.options))
        }
        // A mount the user asked for replaces a default at the same place.
        let replaced = Set(user.map(\.destination))
        var all = defaults.filter { !replaced.contains($0.destination) } + user
        all += protections(for: all, rootfs: request.rootfs, host: host)
        // Parents before children, otherwise in the order given.
        all = all.enumerated().sorted { a, b in
            let da = depth(a.element.destination), db = depth(b.element.destination)
            return da != db ? da < db : a.offset < b.offset
        }.map(\.element)
        return all
    }

    static func depth(_ path: String) -> Int { path.split(separator: "/").count }

    /// The directory of nook's own state that holds `path` (or is it).
    static func stateDirectory(holding path: String, host: HostContext) -> String? {
        host.protectedPaths.first { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// Whether the current directory may be bound as the workspace: not /,
    /// not one of the private mounts a sandbox gets (binding the host's /tmp
    /// would replace the sandbox's own with all of the host's, sockets
    /// included), not in the host's pseudo-filesystems.
    /// A mount that lets the sandbox write the host's files (the
    /// workspace, a read-write bind), where others may reach what it
    /// leaves; nook's own files for the sandbox and device nodes aside.
    static func writesHostFiles(_ mounts: [Mount], sandboxDir: String) -> Bool {
        mounts.contains { m in
            let options = m.options ?? []
            guard m.type == "bind" || options.contains("bind") || options.contains("rbind"),
                  !options.contains("ro"), let source = m.source else { return false }
            if source.hasPrefix("/dev/") { return false }
            if source == sandboxDir || source.hasPrefix(sandboxDir + "/") { return false }
            return true
        }
    }

    /// A bind that shows the session's bus or user manager socket: through
    /// either the sandbox can have commands started outside itself
    /// (systemd-run --user), read-only or not (a socket is connected to,
    /// not written). A fresh try did just that.
    static func sessionSocketWarning(_ source: String, host: HostContext) -> String? {
        guard let runtime = host.environment["XDG_RUNTIME_DIR"].flatMap({ try? normalized($0, what: "XDG_RUNTIME_DIR") })
        else { return nil }
        let rest = source.hasPrefix(runtime + "/") ? String(source.dropFirst(runtime.count + 1)) : nil
        let first = rest.map { String($0.prefix { $0 != "/" }) }
        guard source == runtime || runtime.hasPrefix(source + "/") || source == "/"
            || ["bus", "systemd", "dbus-1"].contains(first ?? "") else { return nil }
        return "--bind \(source) shows your session's D-Bus or systemd socket (in \(runtime)): through it a program in "
            + "the sandbox can have commands run outside it (systemd-run --user), even read-only. Bind only what "
            + "the program needs"
    }

    /// The current directory lies in the session's runtime directory
    /// (or another user's, below /run/user).
    static func inRuntimeDirectory(_ host: HostContext) -> Bool {
        let runtime = host.environment["XDG_RUNTIME_DIR"].flatMap { try? normalized($0, what: "XDG_RUNTIME_DIR") }
        return [runtime, "/run/user"].compactMap { $0 }.contains { host.cwd == $0 || host.cwd.hasPrefix($0 + "/") }
    }

    static func workspaceBindable(_ cwd: String) -> Bool {
        let own: Set<String> = ["/", "/tmp", "/run", "/dev/shm", "/var/tmp", "/dev", "/proc", "/sys"]
        if own.contains(cwd) { return false }
        return !["/proc/", "/sys/", "/dev/"].contains { cwd.hasPrefix($0) } || cwd.hasPrefix("/dev/shm/")
    }

    /// Empty read-only tmpfs mounts over nook's own state wherever a bind
    /// (or a directory root) would show it: the seccomp cache, persistent
    /// layers and profiles must stay out of every sandbox's reach, or one
    /// sandbox could weaken the next (the attack report's cache poisoning).
    static func protections(for mounts: [Mount], rootfs: String?, host: HostContext) -> [Mount] {
        var sources: [(source: String, destination: String)] = mounts.compactMap { m in
            guard m.type == "bind" || (m.options ?? []).contains("rbind"), let s = m.source else { return nil }
            // A read-only bind of nook's state itself, or of a directory in
            // it, shows it as asked (the refusal of a writable one says to
            // add :ro; that gave an empty directory: a fresh try).
            if (m.options ?? []).contains("ro"), stateDirectory(holding: s, host: host) != nil {
                return nil
            }
            return (s, m.destination)
        }
        if let rootfs { sources.append((rootfs, "/")) }
        var out: [Mount] = []
        for p in host.protectedPaths {
            for (source, destination) in sources where p == source || p.hasPrefix(source == "/" ? "/" : source + "/") {
                let rest = source == "/" ? String(p.dropFirst()) : String(p.dropFirst(source.count + 1))
                let inside = rest.isEmpty ? destination : (destination == "/" ? "/" + rest : destination + "/" + rest)
                guard !out.contains(where: { $0.destination == inside }) else { continue }
                // Where the bind is writable, each directory between it and
                // the mask is bound onto itself: a mount point cannot be
                // renamed or removed, so the sandbox cannot move nook's
                // state aside and leave one of its own in its place (a
                // fresh try renamed ~/.local/share in a bind of ~/.local).
                if let bind = mounts.first(where: { $0.source == source && $0.destination == destination }),
                   !(bind.options ?? []).contains("ro") {
                    var hostDir = source == "/" ? "" : source, dir = destination == "/" ? "" : destination
                    for part in rest.split(separator: "/").dropLast() {
                        hostDir += "/" + part
                        dir += "/" + part
                        guard !out.contains(where: { $0.destination == dir }) else { continue }
                        let options = (bind.options ?? []).filter { $0 != "bind" && $0 != "rbind" }
                        out.append(Mount(destination: dir, type: "bind", source: hostDir, options: ["rbind"] + options))
                    }
                }
                out.append(Mount(destination: inside, type: "tmpfs", source: "tmpfs",
                                 options: ["ro", "nosuid", "nodev", "noexec", "mode=755", "size=0"]))
            }
        }
        return out
    }
}

