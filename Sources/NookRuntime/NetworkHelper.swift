#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import CNookSys
import NookSpec
import NookSupport

/// A running pasta or slirp4netns, attached to one sandbox's network
/// namespace.
///
/// Started after the id maps are written and before the sandbox may go on,
/// so the payload finds its interface up. It runs on the host, outside the
/// sandbox's pid namespace (the payload can neither see nor signal it), as
/// nook's child with PR_SET_PDEATHSIG: if nook is killed, the kernel kills
/// the helper too. slirp4netns also watches a pipe nook holds (--exit-fd).
/// Otherwise nook stops it when the sandbox has ended.
struct NetworkHelper {
    let name: String
    let pid: pid_t
    let pidfd: Int32
    /// slirp4netns exits when this, nook's end of --exit-fd, is closed.
    let exitFD: Int32
    let logPath: String
    let files: [String]
    let directory: String
    let createdDirectory: Bool

    /// How long a helper may take to come up.
    static let startTimeout: Int32 = 30

    /// Starts the helper for the sandbox whose first process is `pid`
    /// (still waiting for "go", so still dumpable: its namespaces can be
    /// opened). `directory` is the sandbox's own runtime directory.
    static func start(_ plan: NetworkPlan, pid: pid_t, uidMappings: [IDMapping], gidMappings: [IDMapping],
                      directory: String) throws -> NetworkHelper {
        let name = plan.helper.rawValue
        guard let program = findProgram(name, path: HostProbe.currentEnvironment()["PATH"]) else {
            throw NetworkFailure(message: "\(name) is not installed (not found on PATH)",
                                 hint: plan.helper == .pasta ? "sudo apt install passt, or --network slirp4netns"
                                     : "sudo apt install slirp4netns, or --network pasta")
        }
        var sb = stat()
        let existed = stat(directory, &sb) == 0
        try PrivateDirectory.ensure(directory)

        let netns = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        guard netns >= 0 else { throw SystemFailure("open the sandbox's network namespace", path: "/proc/\(pid)/ns/net") }
        defer { close(netns) }
        let userns = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
        guard userns >= 0 else { throw SystemFailure("open the sandbox's user namespace", path: "/proc/\(pid)/ns/user") }
        defer { close(userns) }
        var ready: [Int32] = [-1, -1]
        guard cloexecPipe(&ready) else { throw SystemFailure("pipe for \(name)") }
        defer { close(ready[0]) }
        var exit: [Int32] = [-1, -1]
        guard cloexecPipe(&exit) else {
            close(ready[1])
            throw SystemFailure("pipe for \(name)")
        }
        let logPath = directory + "/\(name).log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard log >= 0 else {
            [ready[1], exit[0], exit[1]].forEach { close($0) }
            throw SystemFailure("create", path: logPath)
        }

        var files = [logPath]
        var apiSocket: String?
        let argv: [String]
        var joinUserns: Int32 = -1
        switch plan.helper {
        case .pasta:
            argv = plan.pastaArguments(program: program)
        case .slirp4netns:
            if !plan.ports.isEmpty {
                apiSocket = directory + "/slirp4netns.sock"
                files.append(directory + "/slirp4netns.sock")
            }
            // Root in the sandbox's user namespace lets slirp4netns sandbox
            // itself; with only your own id mapped it runs as you, unsandboxed.
            let rootMapped = uidMappings.contains { $0.containerID == 0 } && gidMappings.contains { $0.containerID == 0 }
            if rootMapped { joinUserns = userns }
            argv = plan.slirpArguments(program: program, apiSocket: apiSocket, inUserns: rootMapped)
        }
        Log.debug("starting \(name)", ["argv": argv.joined(separator: " ")])
        let arena = CArena()
        let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        let fds = [netns, userns, ready[1], exit[0]]
        let child = fds.withUnsafeBufferPointer { buf in
            nook_spawn_helper(arena.strings(argv), arena.strings(env), buf.baseAddress, Int32(buf.count), log, joinUserns)
        }
        [ready[1], exit[0], log].forEach { close($0) }
        guard child > 0 else {
            close(exit[1])
            files.forEach { unlink($0) }
            throw SystemFailure("start \(name)", errno: Errno(-child))
        }
        let pidfd = nook_pidfd_open(child, 0)
        let helper = NetworkHelper(name: name, pid: child, pidfd: pidfd, exitFD: exit[1], logPath: logPath,
                                   files: files, directory: directory, createdDirectory: !existed)
        do {
            try helper.waitUntilReady(readyFD: ready[0])
            if let apiSocket { try helper.publish(plan.slirpForwards(), socket: apiSocket) }
        } catch {
            helper.stop()
            throw error
        }
        Log.info("network: \(name) started (pid \(child))"
            + (plan.ports.isEmpty ? "" : ", publishing \(plan.ports.map(\.description).joined(separator: ", "))"))
        return helper
    }

    static func cloexecPipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return true
    }

    /// pasta writes its pid, slirp4netns "1", to the readiness pipe once
    /// the sandbox's interface is configured. An exit first is a failure.
    func waitUntilReady(readyFD: Int32) throws {
        var fds = [pollfd(fd: readyFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
        var ready: Int32
        repeat { ready = poll(&fds, 2, Self.startTimeout * 1000) } while ready < 0 && errno == EINTR
        if ready == 0 {
            throw NetworkFailure(message: "\(name) did not come up within \(Self.startTimeout) seconds"
                                     + logExcerpt(prefix: ": "),
                                 hint: "run with --debug to see its command line; or try --network "
                                     + (name == "pasta" ? "slirp4netns" : "pasta"))
        }
        var byte: UInt8 = 0
        if fds[0].revents & Int16(POLLIN) != 0 && read(readyFD, &byte, 1) == 1 { return }
        // EOF without a byte, or the helper is gone: it failed.
        var status: Int32 = 0
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, 2000)
        let exited = waitpid(pid, &status, WNOHANG) == pid
        let setup = [120: "could not join the sandbox's user namespace", 122: "could not set up its standard descriptors",
                     123: "could not place its descriptors", 127: "could not be executed"]
        let code = Int((status >> 8) & 0xff)
        var reason = logExcerpt(prefix: ": ")
        if reason.isEmpty, exited { reason = ": " + (setup[code] ?? IDMapWriter.describeStatus(status)) }
        throw NetworkFailure(message: "\(name) failed to set up the sandbox's network\(reason)", hint: Self.hint(helper: name, reason: reason))
    }

    /// The fix for what the helper said: /dev/net/tun only when that is
    /// what failed (every failure named it: a fresh try).
    static func hint(helper name: String, reason: String) -> String {
        let other = name == "pasta" ? "slirp4netns" : "pasta"
        let lowered = reason.lowercased()
        if lowered.contains("tun") || reason.isEmpty || lowered.contains("could not be executed") {
            return "\(name) needs /dev/net/tun to be usable (ls -l /dev/net/tun: crw-rw-rw-); or try --network \(other), "
                + "or --network none"
        }
        if lowered.contains("routable interface") || lowered.contains("network is unreachable") {
            return "this host has no usable route outside; --network \(other), or --network none"
        }
        return "the message above is \(name)'s own: check the -p, --ip, --mtu and IPv6 options given, "
            + "or try --network \(other)"
    }

    /// What the helper wrote, without syslog noise, on one line.
    func logExcerpt(prefix: String) -> String {
        let text = HostProbe.readTextFile(logPath) ?? ""
        let lines = text.split(separator: "\n").map { $0.trimming(" \t\r") }
            .filter { !$0.isEmpty && !$0.hasPrefix("Failed to send") && !$0.hasPrefix("WARNING: Support for seccomp") }
        let kept = lines.suffix(4).joined(separator: "; ")
        return kept.isEmpty ? "" : prefix + String(kept.prefix(600))
    }

    /// Publishes ports through slirp4netns's API socket, one request each;
    /// its answer for a port it cannot bind is an error named here.
    func publish(_ requests: [String], socket path: String) throws {
        for request in requests {
            let reply = try Self.ask(path, request)
            if reply.contains("\"error\"") {
                throw NetworkFailure(message: "slirp4netns could not publish a port (\(request)): \(reply)",
                                     hint: "the host port may have been taken after nook checked it; try again or "
                                         + "choose another")
            }
        }
    }

    static func ask(_ path: String, _ request: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemFailure("socket for slirp4netns's API") }
        defer { close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: sa.sun_path) else {
            throw NetworkFailure(message: "slirp4netns's API socket path is too long: \(path)",
                                 hint: "set XDG_RUNTIME_DIR to a shorter directory")
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw SystemFailure("connect to slirp4netns's API", path: path) }
        let data = Array(request.utf8)
        guard data.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == data.count else {
            throw SystemFailure("send to slirp4netns's API", path: path)
        }
        shutdown(fd, Int32(SHUT_WR))
        var reply: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, 10_000) > 0 {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            reply += buf[0..<n]
        }
        return String(decoding: reply, as: UTF8.self).trimming(" \n")
    }

    /// The helper ended while the sandbox was running.
    var diedMessage: String {
        "\(name) (pid \(pid)), which connects the sandbox's network, ended while the sandbox ran"
            + logExcerpt(prefix: ": ") + "; the sandbox has no network beyond loopback now"
    }

    /// Stops the helper (SIGTERM, SIGKILL a second later), reaps it, and
    /// removes its files.
    func stop() {
        close(exitFD)
        if pidfd >= 0 {
            _ = nook_pidfd_send_signal(pidfd, SIGTERM, 0)
            var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            var r: Int32
            repeat { r = poll(&p, 1, 1000) } while r < 0 && errno == EINTR
            if r == 0 { _ = nook_pidfd_send_signal(pidfd, SIGKILL, 0) }
            close(pidfd)
        } else {
            kill(pid, SIGKILL)
        }
        var status: Int32 = 0
        // ECHILD: reaped already (fuse-overlayfs's cleanup collects every child).
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        files.forEach { unlink($0) }
        if createdDirectory { rmdir(directory) }
    }
}
