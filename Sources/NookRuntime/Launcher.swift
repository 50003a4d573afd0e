#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import CNookSys
import NookSpec
import NookSupport

/// How the payload ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32, coreDumped: Bool)

    /// The shell's convention: the exit code, or 128 + the signal.
    public var code: Int32 {
        switch self {
        case .exited(let c): c
        case .signaled(let s, _): 128 + s
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): "exited with status \(c)"
        case .signaled(let s, let core): "killed by signal \(s)\(core ? " (core dumped)" : "")"
        }
    }
}

/// Runs a resolved sandbox to completion: plans it, clones the first
/// process through CNookLaunch, writes its id maps, relays the terminal and
/// signals, and returns how the payload ended.
///
/// No Swift runs in the child: this process may have threads (it does not
/// start any itself), and everything after clone is C that only makes
/// system calls on memory prepared here.
public enum Launcher {
    /// How long a sandbox's setup may take, clone to exec, in seconds.
    static let setupTimeout: Int32 = 120

    /// Signals nook passes on to the payload.
    static let forwarded: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH]

    /// Steps outside the launcher that must happen at fixed points of a
    /// launch (cgroup placement, cleanup). Each defaults to doing nothing.
    public struct Hooks {
        /// After clone and the id maps, before the child may continue: the
        /// payload cannot run before this returns. Throwing aborts the launch.
        public var beforeStart: (pid_t) throws -> Void = { _ in }
        /// After the payload has ended, while the sandbox's init is still
        /// alive and holds its cgroup: the last moment the cgroup's counters
        /// (peak memory, OOM kills) can be read, since a cgroup manager may
        /// remove an empty cgroup at once. nil: the init does not wait.
        public var beforeRelease: ((ExitStatus) -> Void)?
        /// After the sandbox's init has been reaped, with how the payload ended.
        public var afterExit: (ExitStatus) -> Void = { _ in }
        /// The payload has been executed (its setup succeeded); the init's pid.
        public var started: (pid_t) -> Void = { _ in }
        /// Descriptors to watch while the sandbox runs (a detached
        /// container's output pipes, a health check's), asked again each
        /// time round; `readable` is called when one has data or is closed.
        public var watch: () -> [Int32] = { [] }
        public var readable: (Int32) -> Void = { _ in }
        /// When `due` should next run, in `Launcher.monotonic()` seconds;
        /// nil for never. Asked again each time round.
        public var deadline: () -> Double? = { nil }
        /// The deadline has passed; the init's pidfd, to act on the sandbox.
        public var due: (Int32) -> Void = { _ in }
        public init() {}
    }

    public static func run(_ resolution: Resolution, hooks: Hooks = Hooks()) throws -> ExitStatus {
        do {
            return try runOnce(resolution, hooks: hooks)
        } catch let failure as ChildFailure where failure.isOverlayMount
            && resolution.spec.annotations?[Annotation.overlayFallback] == "fuse"
        {
            // Kernel overlayfs refused this filesystem; nothing of the payload
            // ran. fuse-overlayfs takes over, as --overlay auto promises.
            Log.warning("kernel overlayfs failed here (\(failure)); using fuse-overlayfs instead")
            var retry = resolution
            retry.spec.annotations?[Annotation.overlay] = "fuse"
            retry.spec.annotations?[Annotation.overlayFallback] = nil
            return try runOnce(retry, hooks: hooks)
        }
    }

    static func runOnce(_ resolution: Resolution, hooks: Hooks) throws -> ExitStatus {
        let spec = resolution.spec
        // Claimed before anything is written into it, removed last.
        let claimed = try resolution.sandboxDir.flatMap { dir in
            resolution.generatedFiles.keys.contains { $0.hasPrefix(dir + "/") }
                || spec.annotations?[Annotation.network] != nil
                ? try SandboxDirectory.claim(dir) : nil
        }
        defer { claimed?.remove() }
        // A run that needs no directory still sweeps those of nooks killed
        // with SIGKILL (a fresh try found them left until a run with one).
        if claimed == nil, let dir = resolution.sandboxDir, let slash = dir.lastIndex(of: "/") {
            SandboxDirectory.sweep(String(dir[..<slash]))
        }
        let generated = try GeneratedFiles.write(resolution.generatedFiles)
        defer { generated.remove() }
        var plan = try Planner.plan(spec) { path in
            var sb = stat()
            guard stat(path, &sb) == 0 else { return nil }
            return (sb.st_mode & S_IFMT) == S_IFDIR
        }
        if plan.network != nil {
            plan.network?.directory = resolution.sandboxDir ?? HostProbe.sandboxDirectory(
                environment: HostProbe.currentEnvironment(), uid: getuid())
            // Before anything starts: a taken port is an error naming it.
            try PortCheck.check(plan.network?.ports ?? [])
        }
        var seccomp = spec.linux?.seccomp
        var explainVariant: Explainer.Variant?
        if resolution.explain, let s = seccomp {
            explainVariant = Explainer.variant(of: s)
            seccomp = explainVariant?.seccomp
        }
        let filters = try SeccompCache.programs(for: seccomp)
        let caps = try CapabilityMasks(spec.process?.capabilities)
        for fd in 3..<(3 + Int32(resolution.preserveFds)) where fcntl(fd, F_GETFD) < 0 {
            throw UsageFailure("--preserve-fds \(resolution.preserveFds): descriptor \(fd) is not open",
                               hint: "open fds 3 to \(2 + resolution.preserveFds) before running nook, or lower the count")
        }
        try refuseDirectories(preserveFds: resolution.preserveFds)
        Log.debug("plan", ["ops": String(plan.ops.count), "filters": String(filters.count)])
        explainVariant?.origins = resolution.origins
        let emulator = spec.annotations?[Annotation.rootEmulation] == "on" && seccomp != nil
            ? RootEmulator(hostGID: getgid()) : nil
        return try launch(plan, filters: filters, caps: caps, preserveFds: resolution.preserveFds,
                          interactive: resolution.interactive, explain: explainVariant, emulator: emulator,
                          hooks: hooks)
    }

    /// A directory as stdin (nook run ... < /) or as a preserved
    /// descriptor (3< ~) would be a way into the host's tree through
    /// /proc/self/fd/N, whatever the sandbox hides.
    static func refuseDirectories(preserveFds: Int) throws {
        for fd in 0..<(3 + Int32(preserveFds)) {
            var sb = stat()
            guard fstat(fd, &sb) == 0 && (sb.st_mode & S_IFMT) == S_IFDIR else { continue }
            if fd < 3 {
                throw UsageFailure("\(["stdin", "stdout", "stderr"][Int(fd)]) is a directory, which would give the "
                    + "sandbox a way into the host's tree", hint: "redirect it from a file, a pipe or /dev/null")
            }
            throw UsageFailure("--preserve-fds: descriptor \(fd) is a directory, which would give the sandbox a way "
                + "into the host's tree, whatever it hides", hint: "bind the directory instead: --bind DIR")
        }
    }

    /// Runs `spec`'s process inside a running container (nook exec): a new
    /// process joins the namespaces of the container's process `pidfd`
    /// names (`namespaces`, as OCI type names) and acts as the command's
    /// init from outside its pid namespace; the command gets the spec's
    /// ids, capabilities, no_new_privs, rlimits and seccomp filter. Nothing
    /// is mounted and no id map is written: they are the container's.
    public static func exec(_ spec: Spec, pidfd: Int32, namespaces: [String], interactive: Bool,
                            hooks: Hooks = Hooks()) throws -> ExitStatus {
        // The container's mounts are there already; only its process counts.
        var processOnly = spec
        processOnly.mounts = []
        processOnly.linux?.maskedPaths = []
        processOnly.linux?.readonlyPaths = []
        processOnly.linux?.devices = []
        try refuseDirectories(preserveFds: 0)
        var plan = try Planner.plan(processOnly) { _ in nil }
        plan.joinPidfd = pidfd
        let flags = Planner.namespaceFlags.merging(["cgroup": 0x0200_0000]) { a, _ in a }
        plan.joinNamespaces = namespaces.compactMap { flags[$0] }.reduce(0, |)
        plan.cloneFlags = 0
        plan.cgroupNamespace = false
        plan.networkNamespace = false
        plan.network = nil  // the container's network helper is already there
        plan.hostname = nil
        plan.rootKind = .none
        plan.ops = []
        plan.lowerDirs = []
        plan.persist = nil
        let seccomp = spec.linux?.seccomp
        let filters = try SeccompCache.programs(for: seccomp)
        let caps = try CapabilityMasks(spec.process?.capabilities)
        let emulator = spec.annotations?[Annotation.rootEmulation] == "on" && seccomp != nil
            ? RootEmulator(hostGID: getgid()) : nil
        return try launch(plan, filters: filters, caps: caps, preserveFds: 0, interactive: interactive,
                          explain: nil, emulator: emulator, hooks: hooks)
    }

    /// Runs a command in a user namespace (and mount namespace) with the
    /// caller's full mapping, as root inside, with all capabilities there and
    /// nothing else changed: the caller's root, mounts, network, pid space,
    /// working directory and session. For files owned by subordinate ids
    /// (`nook unshare`) and for nook's own work on them (unpacking layers).
    public static func unshare(_ command: [String], host: HostContext, hooks: Hooks = Hooks()) throws -> ExitStatus {
        var plan = LaunchPlan()
        plan.cloneFlags = Planner.namespaceFlags["user"]! | Planner.namespaceFlags["mount"]!
        plan.rootKind = .none
        plan.direct = true
        plan.newSession = false
        plan.args = command
        var env = host.environment
        env["NOOK_UNSHARE"] = "1"
        plan.env = env.keys.sorted().map { "\($0)=\(env[$0] ?? "")" }
        plan.cwd = host.cwd
        if let reason = host.idmapUnavailable {
            Log.warnOnce(key: reason, reason)
            plan.uidMappings = [IDMapping(containerID: 0, hostID: host.uid, size: 1)]
            plan.gidMappings = [IDMapping(containerID: 0, hostID: host.gid, size: 1)]
        } else {
            plan.uidMappings = Resolver.planMappings(own: host.uid, ranges: host.uidRanges, mode: .root)
            plan.gidMappings = Resolver.planMappings(own: host.gid, ranges: host.gidRanges, mode: .root)
        }
        plan.umask = UInt32(currentUmask())
        plan.noNewPrivileges = false
        var caps = try CapabilityMasks(nil)
        let all: UInt64 = caps.last >= 63 ? ~0 : (1 << UInt64(caps.last + 1)) - 1
        caps.bounding = all
        caps.effective = all
        caps.permitted = all
        return try launch(plan, filters: [], caps: caps, preserveFds: 0, interactive: false, explain: nil, emulator: nil,
                          hooks: hooks)
    }

    static func currentUmask() -> mode_t {
        let old = umask(0o022)
        umask(old)
        return old
    }

    static func launch(_ plan: LaunchPlan, filters: [[UInt8]], caps: CapabilityMasks, preserveFds: Int,
                       interactive: Bool, explain explainVariant: Explainer.Variant?, emulator: RootEmulator?,
                       hooks: Hooks) throws -> ExitStatus {
        // Signals to forward are blocked before clone, read from a signalfd
        // here, and inherited blocked by the init, which waits for them.
        let ignoredAtStart = Set(forwarded.filter { nook_signal_ignored($0) == 1 })
        var mask = sigset_t()
        sigemptyset(&mask)
        for sig in forwarded + [SIGCHLD] { sigaddset(&mask, sig) }
        var oldMask = sigset_t()
        sigprocmask(SIG_BLOCK, &mask, &oldMask)
        defer { sigprocmask(SIG_SETMASK, &oldMask, nil) }
        let signalFD = (forwarded + [SIGCHLD, 0]).withUnsafeBufferPointer { nook_signalfd_open($0.baseAddress) }
        guard signalFD >= 0 else { throw SystemFailure("signalfd", errno: Errno(-signalFD)) }
        defer { close(signalFD) }

        let arena = CArena()
        // With stdin a terminal and no pty of its own, the payload stays in
        // the terminal's job (nook's process group) instead of a session of
        // its own, so the kernel's job control applies to it: in the
        // background its reads stop it (SIGTTIN), Ctrl-Z stops it, it cannot
        // take keystrokes meant for the shell. Terminal injection is still
        // refused: the seccomp filter stops TIOCSTI and TIOCLINUX. Without
        // that filter it gets a session of its own.
        var plan = plan
        let sharesTerminal = !plan.direct && !plan.terminal && isatty(0) == 1 && !filters.isEmpty
        if sharesTerminal { plan.newSession = false }
        let layers = try Layers.open(plan)
        defer { layers.close() }
        var config = makeConfig(plan, caps: caps, filters: filters, preserveFds: preserveFds, layers: layers,
                                arena: arena)
        config.notify_filter = explainVariant == nil && emulator == nil ? -1 : 0
        // The init holds its cgroup for the hook; a direct payload has no init.
        let beforeRelease = plan.direct ? nil : hooks.beforeRelease
        config.hold_exit = beforeRelease != nil ? 1 : 0
        var child = nook_launch_result()
        let rc = nook_launch(&config, &child)
        guard rc == 0 else {
            throw SystemFailure("clone the sandbox", errno: Errno(-rc), hint: cloneHint(-rc))
        }
        defer {
            close(child.pidfd)
            close(child.sync_fd)
        }
        Log.debug("cloned the sandbox", ["pid": String(child.pid)])

        var network: NetworkHelper?
        do {
            if plan.joinPidfd == nil {
                try IDMapWriter.apply(pid: child.pid, uids: plan.uidMappings, gids: plan.gidMappings,
                                      hostUID: getuid(), hostGID: getgid(), path: HostProbe.currentEnvironment()["PATH"])
            }
            try hooks.beforeStart(child.pid)
            // The interface is up before the payload can exist.
            if let n = plan.network {
                network = try NetworkHelper.start(n, pid: child.pid, uidMappings: plan.uidMappings,
                                                  gidMappings: plan.gidMappings, directory: n.directory)
            }
        } catch {
            _ = nook_pidfd_send_signal(child.pidfd, SIGKILL, 0)
            close(child.error_fd)
            _ = reap(child.pid)
            throw error
        }
        defer { network?.stop() }
        Log.debug("wrote the id maps")
        let go = nook_launch_go(child.sync_fd)
        guard go == 0 else { throw SystemFailure("start the sandbox", errno: Errno(-go)) }
        var fuse: FuseOverlay?
        if plan.rootKind == .fuse {
            do {
                fuse = try FuseOverlay.mount(plan, layers: layers, child: child)
            } catch {
                _ = nook_pidfd_send_signal(child.pidfd, SIGKILL, 0)
                var failure = nook_child_error()
                let got = readFull(child.error_fd, &failure)
                close(child.error_fd)
                _ = reap(child.pid)
                if error is ChildGone && got == MemoryLayout<nook_child_error>.size {
                    throw ChildFailure(failure, plan: plan)
                }
                throw error
            }
        }
        defer { fuse?.finish() }

        // The error pipe reaches EOF when the payload's exec succeeds. Setup
        // that never ends (a filesystem that hangs) is stopped after a while.
        var p = pollfd(fd: child.error_fd, events: Int16(POLLIN), revents: 0)
        var ready: Int32
        repeat { ready = poll(&p, 1, setupTimeout * 1000) } while ready < 0 && errno == EINTR
        if ready == 0 {
            _ = nook_pidfd_send_signal(child.pidfd, SIGKILL, 0)
            close(child.error_fd)
            _ = reap(child.pid)
            throw SystemFailure("set up the sandbox", errno: Errno(ETIMEDOUT),
                                hint: "setup did not finish within \(setupTimeout) seconds; a filesystem it mounts may hang "
                                    + "(nook run --debug shows how far it got)")
        }
        var failure = nook_child_error()
        let got = readFull(child.error_fd, &failure)
        close(child.error_fd)
        if got == MemoryLayout<nook_child_error>.size {
            // A held init waits for its release even when the payload failed.
            if beforeRelease != nil { release(child: child, beforeRelease: nil) }
            _ = reap(child.pid)
            throw ChildFailure(failure, plan: plan)
        }

        Log.debug("the payload started")
        hooks.started(child.pid)
        var terminal: TerminalRelay?
        if plan.terminal {
            let master = nook_recv_fd(child.sync_fd)
            guard master >= 0 else {
                _ = nook_pidfd_send_signal(child.pidfd, SIGKILL, 0)
                _ = reap(child.pid)
                throw SystemFailure("receive the sandbox's terminal", errno: Errno(-master))
            }
            terminal = TerminalRelay(master: master, relayInput: interactive)
        }
        defer { terminal?.restore() }
        var supervisor: SeccompSupervisor?
        if explainVariant != nil || emulator != nil {
            let listener = nook_recv_fd(child.sync_fd)
            if listener >= 0 {
                supervisor = SeccompSupervisor(listener: listener,
                                               explainer: explainVariant.map { Explainer(listener: listener, variant: $0) },
                                               emulator: emulator)
            } else {
                Log.warning("the sandbox did not hand over its seccomp listener (\(Errno(-listener))): "
                    + (emulator != nil ? "root emulation answers nothing" : "--explain reports nothing"))
            }
        }

        loop(child: child, signalFD: signalFD, terminal: &terminal, supervisor: supervisor, ignored: ignoredAtStart,
             sharesTerminal: sharesTerminal, beforeRelease: beforeRelease, helper: network, hooks: hooks)
        terminal?.drain()
        if let explainer = supervisor?.explainer { writeStderr(explainer.summary) }

        let initStatus = reap(child.pid)
        Log.debug("the sandbox ended")
        let status = plan.direct ? directStatus(initStatus) : exitStatus(initStatus: initStatus, syncFD: child.sync_fd)
        hooks.afterExit(status)
        return status
    }

    static func directStatus(_ status: Int32) -> ExitStatus {
        status & 0x7f == 0 ? .exited((status >> 8) & 0xff)
            : .signaled(status & 0x7f, coreDumped: status & 0x80 != 0)
    }

    /// How the payload ended: from the init's exit record, or from the
    /// init's own status when it was killed before it could send one.
    static func exitStatus(initStatus: Int32, syncFD: Int32) -> ExitStatus {
        var record = nook_exit_record()
        let n = recv(syncFD, &record, MemoryLayout<nook_exit_record>.size, Int32(MSG_DONTWAIT))
        if n == MemoryLayout<nook_exit_record>.size { return status(of: record) }
        // No record: the init itself was killed (from outside the sandbox).
        if initStatus & 0x7f != 0 {
            Log.warning("the sandbox's init was killed by signal \(initStatus & 0x7f) before the payload ended")
            return .signaled(initStatus & 0x7f, coreDumped: false)
        }
        return .exited((initStatus >> 8) & 0xff)
    }

    /// Waits for the init while passing on signals and terminal bytes. With
    /// `beforeRelease`, the init holds on after the payload's exit record
    /// until that has run and the init is released.
    static func loop(child: nook_launch_result, signalFD: Int32, terminal: inout TerminalRelay?,
                     supervisor: SeccompSupervisor?, ignored: Set<Int32>, sharesTerminal: Bool,
                     beforeRelease: ((ExitStatus) -> Void)? = nil, helper: NetworkHelper? = nil,
                     hooks: Hooks = Hooks()) {
        var listening = supervisor != nil
        var holding = beforeRelease != nil
        var watchingHelper = helper.map { $0.pidfd >= 0 } ?? false
        while true {
            var fds = [pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
            if watchingHelper, let h = helper { fds.append(pollfd(fd: h.pidfd, events: Int16(POLLIN), revents: 0)) }
            if holding { fds.append(pollfd(fd: child.sync_fd, events: Int16(POLLIN), revents: 0)) }
            if listening, let s = supervisor { fds.append(pollfd(fd: s.listener, events: Int16(POLLIN), revents: 0)) }
            terminal?.addPollFDs(&fds)
            let watching = hooks.watch()
            for fd in watching { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            var timeout: Int32 = -1
            if let deadline = hooks.deadline() {
                timeout = Int32(max(0, min(3_600_000, (deadline - monotonic()) * 1000)).rounded(.up))
            }
            let r = poll(&fds, nfds_t(fds.count), timeout)
            if r < 0 {
                if errno == EINTR { continue }
                return
            }
            if r == 0 {
                if let deadline = hooks.deadline(), deadline <= monotonic() { hooks.due(child.pidfd) }
                continue
            }
            if fds[1].revents != 0 {
                var signo: Int32 = 0
                var code: Int32 = 0
                while nook_signalfd_read(signalFD, &signo, &code) == 1 {
                    forward(signo, code: code, pidfd: child.pidfd, terminal: &terminal, ignored: ignored,
                            sharesTerminal: sharesTerminal)
                }
            }
            if holding, let p = fds.first(where: { $0.fd == child.sync_fd }), p.revents != 0 {
                holding = false
                release(child: child, beforeRelease: beforeRelease)
            }
            if listening, let s = supervisor, let p = fds.first(where: { $0.fd == s.listener }), p.revents != 0 {
                if p.revents & Int16(POLLIN) != 0 { listening = s.handle() } else { listening = false }
            }
            if watchingHelper, let h = helper, let p = fds.first(where: { $0.fd == h.pidfd }), p.revents != 0 {
                watchingHelper = false
                if fds[0].revents == 0 { Log.warning(h.diedMessage) }
            }
            terminal?.handle(fds)
            for p in fds where p.revents != 0 && watching.contains(p.fd) { hooks.readable(p.fd) }
            if let deadline = hooks.deadline(), deadline <= monotonic() { hooks.due(child.pidfd) }
            if fds[0].revents != 0 { return }
        }
    }

    /// The payload's exit record is waiting (left queued for exitStatus):
    /// runs the hook while the init still lives, then lets the init exit.
    static func release(child: nook_launch_result, beforeRelease: ((ExitStatus) -> Void)?) {
        var record = nook_exit_record()
        let n = recv(child.sync_fd, &record, MemoryLayout<nook_exit_record>.size, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n == MemoryLayout<nook_exit_record>.size {
            beforeRelease?(status(of: record))
        }
        // EOF instead (the init died without a record) needs no release.
        var go: UInt8 = 0x52  // "R"
        _ = send(child.sync_fd, &go, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
    }

    static func status(of record: nook_exit_record) -> ExitStatus {
        switch nook_exit_kind(rawValue: UInt32(record.kind)) {
        case NOOK_EXIT_SIGNAL: .signaled(record.code, coreDumped: false)
        case NOOK_EXIT_CORE: .signaled(record.code, coreDumped: true)
        default: .exited(record.code)
        }
    }

    static func forward(_ sig: Int32, code: Int32, pidfd: Int32, terminal: inout TerminalRelay?,
                        ignored: Set<Int32>, sharesTerminal: Bool) {
        if sig == SIGCHLD || ignored.contains(sig) { return }
        if sig == SIGWINCH, let t = terminal {
            t.resize()
            return
        }
        let fromTerminal = code == 0x80  // SI_KERNEL: typed at the terminal (Ctrl-C, hangup, resize)
        // In the terminal's job the payload got it from the terminal itself.
        if fromTerminal && sharesTerminal { return }
        Log.debug("forwarding signal \(sig)")
        // Otherwise a terminal's signal was meant for the whole foreground
        // job; the payload has a session of its own, so nook hands it to the
        // payload's process group.
        if fromTerminal {
            _ = nook_pidfd_send_queued(pidfd, sig, NOOK_FORWARD_GROUP)
        } else {
            _ = nook_pidfd_send_signal(pidfd, sig, 0)
        }
    }

    /// Seconds on CLOCK_MONOTONIC, which wall-clock changes do not move.
    public static func monotonic() -> Double { monotonicSeconds() }

    /// Asks the init to SIGKILL the payload's process group (a new session
    /// of its own, so all it started unless something left the session).
    public static func killPayloadGroup(pidfd: Int32) {
        _ = nook_pidfd_send_queued(pidfd, SIGTERM, NOOK_KILL_GROUP)
    }

    static func reap(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 0 }
        }
        return status
    }

    static func readFull<T>(_ fd: Int32, _ value: inout T) -> Int {
        withUnsafeMutableBytes(of: &value) { buf in
            var off = 0
            while off < buf.count {
                let n = read(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                off += n
            }
            return off
        }
    }

    static func cloneHint(_ err: Int32) -> String? {
        switch err {
        case EPERM, EACCES, ENOSPC:
            return "unprivileged user namespaces are off or limited on this host (sysctl user.max_user_namespaces, "
                + "kernel.unprivileged_userns_clone, or AppArmor's userns restriction); nook doctor says which"
        case EMFILE, ENFILE:
            return "the open-file limit is too low for nook's own descriptors (ulimit -n)"
        case ENOSYS:
            if (HostProbe.readTextFile("/proc/self/status") ?? "").contains("Seccomp:\t2") {
                return "nook runs under a seccomp filter that refuses clone3 (inside another sandbox?); a sandbox "
                    + "in a sandbox needs the outer one to allow clone3, namespaces and mounts"
            }
            return "clone3 needs Linux 5.3 or later"
        default: return nil
        }
    }

    /// The addresses of this process's argv and environ (fields 48-51 of
    /// /proc/self/stat), which the init wipes in its copy.
    static func argumentArea() -> (UInt, UInt, UInt, UInt) {
        guard let text = HostProbe.readTextFile("/proc/self/stat"), let close = text.lastIndex(of: ")") else {
            return (0, 0, 0, 0)
        }
        let fields = text[text.index(after: close)...].split(separator: " ")
        func field(_ n: Int) -> UInt { fields.indices.contains(n - 3) ? UInt(fields[n - 3]) ?? 0 : 0 }
        return (field(48), field(49), field(50), field(51))
    }

    static func makeConfig(_ plan: LaunchPlan, caps: CapabilityMasks, filters: [[UInt8]], preserveFds: Int,
                           layers: Layers, arena: CArena) -> nook_launch_config {
        var c = nook_launch_config()
        c.clone_flags = plan.cloneFlags
        c.cgroup_namespace = plan.cgroupNamespace ? 1 : 0
        c.hostname = plan.hostname.map { arena.string($0) }
        c.loopback_up = plan.networkNamespace ? 1 : 0
        c.root_kind = Int32(plan.rootKind.rawValue)
        c.direct = plan.direct ? 1 : 0
        c.new_session = plan.newSession ? 1 : 0
        c.join_pidfd = plan.joinPidfd ?? -1
        c.join_namespaces = plan.joinNamespaces
        c.root_path = arena.string(plan.rootPath)
        c.root_attr = plan.rootAttributes
        c.root_options = arena.strings(plan.rootOptions)
        c.root_option_count = Int32(plan.rootOptions.count)
        c.root_skip = arena.strings(plan.rootSkip)
        c.root_skip_count = Int32(plan.rootSkip.count)
        c.lower_dirs = arena.strings(plan.lowerDirs)
        c.lower_count = Int32(plan.lowerDirs.count)
        c.upper_dir = layers.upperPath.map { arena.string($0) }
        c.work_dir = layers.workPath.map { arena.string($0) }
        c.upper_adopt_owner = layers.adoptOwner ? 1 : 0
        c.upper_options = arena.strings(["source=nook-upper", "mode=0755"])
        c.upper_option_count = 2

        let ops = plan.ops.map { op in
            var flags: Int32 = 0
            if op.recursive { flags |= NOOK_OPF_RECURSIVE }
            if op.optional { flags |= NOOK_OPF_OPTIONAL }
            if op.file { flags |= NOOK_OPF_FILE }
            if op.create { flags |= NOOK_OPF_CREATE }
            if op.replaceLink { flags |= NOOK_OPF_REPLACE_LINK }
            if op.skipLink { flags |= NOOK_OPF_SKIP_LINK }
            return nook_op(kind: op.kind.rawValue, flags: flags, source: arena.string(op.source),
                           destination: arena.string(op.destination), options: arena.strings(op.options),
                           option_count: Int32(op.options.count), mode: op.mode, attr_set: op.attributes,
                           uid: op.uid, gid: op.gid)
        }
        c.ops = UnsafePointer(arena.array(ops))
        c.op_count = Int32(ops.count)
        c.scratch = arena.array([Int32](repeating: -1, count: max(ops.count, 1)))

        c.argv = arena.strings(plan.args)
        c.envp = arena.strings(plan.env)
        c.cwd = arena.string(plan.cwd)
        c.uid = plan.uid
        c.gid = plan.gid
        if let groups = plan.additionalGids {
            c.groups = UnsafePointer(arena.array(groups))
            c.group_count = Int32(groups.count)
            c.set_groups = 1
        }
        c.read_only_overlay = plan.readOnlyOverlay ? 1 : 0
        // Before 6.8 the child mounts the overlay with mount(2) (rootfs.c).
        if plan.rootKind == .overlay { c.overlay_lowerdir_append = HostProbe.kernelVersion() >= (6, 8) ? 1 : 0 }
        c.umask = plan.umask
        c.terminal = plan.terminal ? 1 : 0
        c.rows = plan.rows
        c.cols = plan.cols
        let limits = plan.rlimits.map { nook_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        c.rlimits = UnsafePointer(arena.array(limits))
        c.rlimit_count = Int32(limits.count)
        c.no_new_privs = plan.noNewPrivileges ? 1 : 0
        c.cap_bounding = caps.bounding
        c.cap_effective = caps.effective
        c.cap_permitted = caps.permitted
        c.cap_inheritable = caps.inheritable
        c.cap_ambient = caps.ambient
        c.last_cap = caps.last
        let programs = filters.map { code in
            nook_bpf(code: UnsafeRawPointer(arena.array(code)), length: UInt16(code.count / 8))
        }
        c.filters = UnsafePointer(arena.array(programs))
        c.filter_count = Int32(programs.count)
        c.preserve_fds = Int32(preserveFds)
        let area = argumentArea()
        c.arg_start = area.0
        c.arg_end = area.1
        c.env_start = area.2
        c.env_end = area.3
        return c
    }
}

/// C memory for the launch config, freed together when the launch is done.
/// The child reads its own copy of it (clone copies the address space).
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    func strings(_ list: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let pointers: [UnsafePointer<CChar>?] = list.map { string($0) } + [nil]
        return UnsafePointer(array(pointers))
    }

    func array<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
        let raw = malloc(MemoryLayout<T>.stride * max(items.count, 1))!
        let p = raw.bindMemory(to: T.self, capacity: max(items.count, 1))
        p.initialize(from: items, count: items.count)
        blocks.append(raw)
        return p
    }

    deinit {
        for block in blocks { free(block) }
    }
}
