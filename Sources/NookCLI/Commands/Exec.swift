#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import FoundationEssentials
import NookCgroups
import NookRuntime
import NookSpec
import NookState
import NookSupport

/// `nook exec`: a command inside a running detached container.
enum ExecCommand {
    static let usage = "nook exec [OPTIONS] CONTAINER [--] COMMAND [ARG...]"
    static let summary = "run a command in a running detached container"

    static let options: [OptionSpec] = [
        OptionSpec("tty", short: "t", "give the command its own terminal (a pty relayed to yours)"),
        OptionSpec("interactive", short: "i", "with -t, pass your input to its terminal (without -t, stdin passes anyway)"),
        OptionSpec("env", short: "e", value: "NAME[=VALUE]", repeatable: true,
                   "set a variable on top of the container's; NAME alone copies yours; repeatable"),
        OptionSpec("user", short: "u", value: "USER[:GROUP]",
                   "run as this user (the container's /etc/passwd, or numbers) instead of the container's"),
        OptionSpec("workdir", short: "w", value: "DIR", "the working directory inside (default: the container's)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Run COMMAND in the container: in its user, mount, pid, IPC, UTS, network and
        cgroup namespaces and its cgroup, with its ids, capabilities, no_new_privs,
        resource limits, seccomp filter and environment, unless -u, -w or -e say
        otherwise. What is applied comes from nook's own record of the container,
        never from anything inside it. The exit status is the command's.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "exec", help: help,
                                                stopAtPositional: true) else { return 0 }
        let environment = HostProbe.currentEnvironment()
        var positionals = parsed.positionals
        guard !positionals.isEmpty else { throw UsageFailure("exec: name a container and a command", hint: usage) }
        let reference = positionals.removeFirst()
        if positionals.first == "--" { positionals.removeFirst() }
        guard !positionals.isEmpty else { throw UsageFailure("exec: give a command to run", hint: usage) }

        let store = try Containers.store()
        let record = try Containers.find(reference, in: store)
        let join = try ContainerJoin(record, reference: reference, in: store)
        defer { close(join.pidfd) }
        var spec = join.spec
        let target = join.target

        var process = spec.process ?? Process(user: User(uid: 0, gid: 0), args: [], env: [], cwd: "/")
        process.args = positionals
        process.terminal = parsed.has("tty")
        if process.terminal == true && isatty(0) != 1 {
            Log.warning("ignoring -t: stdin is not a terminal")
            process.terminal = false
        }
        if process.terminal == true {
            var ws = winsize()
            if ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 { process.consoleSize = ConsoleSize(height: ws.ws_row, width: ws.ws_col) }
        }
        if let dir = parsed.value("workdir") {
            guard dir.hasPrefix("/") else { throw UsageFailure("--workdir \(dir): not an absolute path") }
            process.cwd = dir
        }
        var base = process.env ?? []
        // A terminal of its own gets TERM, as with nook run -t (a fresh try
        // found it unset in exec -t of a container made without -t).
        if process.terminal == true && !base.contains(where: { $0.hasPrefix("TERM=") }) {
            base.append("TERM=" + (environment["TERM"] ?? "xterm"))
        }
        if let user = parsed.value("user") {
            var passwd = RootFiles.read(pid: target.pid, "etc/passwd")
            var group = RootFiles.read(pid: target.pid, "etc/group")
            // A root on fuse-overlayfs (kernels before 6.6) answers only
            // processes of the container's user namespace, and this one is
            // not in it yet: the image's own files, as run -u reads them
            // (found by the VM tier).
            if passwd == nil, let id = record.annotations[Annotation.imageID],
               let image = try? ImageCommand.store().image(id) {
                passwd = image.readFile("etc/passwd", max: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
                group = group ?? image.readFile("etc/group", max: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
            }
            let resolved = try Resolver.resolveUser(user, passwd: passwd, group: group, where: "--user")
            // Said before the kernel's EINVAL: an id the container's map lacks.
            for (id, kind, maps) in [(resolved.uid, "uid", spec.linux?.uidMappings),
                                     (resolved.gid, "gid", spec.linux?.gidMappings)] {
                guard let maps else { continue }
                let inside = IDRange.merged(maps.map { IDRange(start: $0.containerID, count: $0.size) })
                guard !inside.contains(where: { id >= $0.start && UInt64(id) < UInt64($0.start) + UInt64($0.count) })
                else { continue }
                let ranges = inside.map { "\($0.start)-\(UInt64($0.start) + UInt64($0.count) - 1)" }
                throw UsageFailure("--user \(user): \(kind) \(id) is not mapped in container \(reference)",
                                   hint: "its \(kind)s are \(ranges.joined(separator: ", "))")
            }
            process.user.uid = resolved.uid
            process.user.gid = resolved.gid
            process.user.additionalGids = resolved.groups
            // That user's home, not the container's user's (-e HOME=... wins).
            if let home = resolved.home {
                base.removeAll { $0.hasPrefix("HOME=") }
                base.append("HOME=" + home)
            }
        }
        process.env = try environmentFor(base, overrides: parsed.all("env"), caller: environment)
        spec.process = process
        let namespaces = (spec.linux?.namespaces ?? []).map(\.type)

        var hooks = Launcher.Hooks()
        if let cgroup = record.cgroup { hooks.beforeStart = { pid in join.place(pid, in: cgroup, scope: record.scope) } }
        let status = try Launcher.exec(spec, pidfd: join.pidfd, namespaces: namespaces,
                                       interactive: parsed.has("interactive"), hooks: hooks)
        return status.code
    }

    /// The container's environment with `-e` on top.
    static func environmentFor(_ base: [String], overrides: [String], caller: [String: String]) throws -> [String] {
        var env = base
        for entry in overrides {
            let name = String(entry.prefix { $0 != "=" })
            guard !name.isEmpty, name.allSatisfy({ $0 == "_" || $0.isLetter || $0.isNumber }) else {
                throw UsageFailure("--env \(entry): not NAME=VALUE", hint: "as in -e LANG=C.UTF-8, or -e NAME to copy yours")
            }
            let value: String?
            if entry.contains("=") { value = String(entry.dropFirst(name.count + 1)) } else { value = caller[name] }
            env.removeAll { $0.hasPrefix(name + "=") }
            if let value { env.append(name + "=" + value) }
        }
        return env
    }
}

/// What joining a running container takes: its spec as nook recorded it
/// (never anything from inside it) and a pidfd of one of its processes.
struct ContainerJoin {
    var spec: Spec
    /// A child of the container's init (the init itself is not dumpable,
    /// so its namespaces cannot be opened through it).
    let target: ProcessRef
    let pidfd: Int32

    init(_ record: ContainerRecord, reference: String, in store: ContainerStore) throws {
        guard record.status == .running, let initProcess = record.initProcess, initProcess.isAlive else {
            throw ContainerFailure("container \(reference) is not running (\(Containers.statusText(record)))",
                                   hint: "nook ps -a shows its state; nook logs \(reference) what it printed")
        }
        do {
            spec = try JSONDecoder().decode(Spec.self, from: Data(try store.read(record.id, file: "spec.json")))
        } catch let failure as ContainerFailure {
            throw failure
        } catch {
            throw ContainerFailure("the spec of container \(record.shortID) is refused: \(error)",
                                   hint: "nook rm -f \(reference) removes the container")
        }
        // A process that joins a frozen cgroup freezes with it: exec hung
        // without a word on a container that had frozen its own (a fresh try).
        if let leaf = record.cgroup {
            let scope = leaf.hasSuffix("/" + CgroupSession.leaf) ? String(leaf.dropLast(CgroupSession.leaf.count + 1)) : leaf
            for dir in [scope, leaf] where (readTextFile(dir + "/cgroup.events", limit: 4096) ?? "")
                .split(separator: "\n").contains("frozen 1") {
                throw ContainerFailure("container \(reference) is frozen (\(dir)/cgroup.freeze is 1): a command run in "
                    + "it would freeze too", hint: "thaw it first: echo 0 > \(dir)/cgroup.freeze")
            }
        }
        guard let target = initProcess.children().first, let pidfd = target.openPidfd() else {
            throw ContainerFailure("container \(reference) has no process left to join (it is stopping)")
        }
        guard ProcStat.read(target.pid)?.parent == initProcess.pid else {
            close(pidfd)
            throw ContainerFailure("container \(reference) changed while nook looked at it; try again")
        }
        self.target = target
        self.pidfd = pidfd
    }

    /// Moves the joining process into `cgroup` (so the container's limits
    /// hold for it), through the user manager where the kernel refuses;
    /// says once when it cannot.
    func place(_ pid: pid_t, in cgroup: String, scope: String?) {
        do {
            try CgroupJoin.place(pid, in: cgroup, scope: scope)
        } catch {
            Log.warning("the command could not join the container's cgroup: \(error.description); "
                + "its limits do not apply to it")
        }
    }
}

/// The parent pid of a process, from /proc/PID/stat.
/// Small files of a running container's root, resolved inside it.
enum RootFiles {
    static func read(pid: Int32, _ path: String) -> String? {
        let root = open("/proc/\(pid)/root", Int32(NOOK_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { return nil }
        defer { close(root) }
        let fd = nook_openat2(root, path, UInt64(O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), 0,
                              UInt64(NOOK_RESOLVE_IN_ROOT | NOOK_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_mode & S_IFMT == S_IFREG else { return nil }
        return readFileBytes(fd: fd, limit: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
    }
}
