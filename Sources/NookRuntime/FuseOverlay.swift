#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import CNookSys
import NookSpec
import NookSupport

/// A root made by fuse-overlayfs, for kernels and filesystems where kernel
/// overlayfs in a user namespace fails.
///
/// nook starts the daemon itself, joined to the sandbox's user and mount
/// namespaces only: it mounts on the staging directory the sandbox's init
/// is waiting on, but lives outside the sandbox's pid namespace, where the
/// payload (root inside, in root mode) could otherwise ptrace it and, with
/// its descriptors, write into layers other sandboxes share. Every directory
/// reaches it as /proc/self/fd/N, opened in the sandbox's mount namespace.
struct FuseOverlay {
    /// The daemon, nook's own child: it runs in the foreground (-f), so the
    /// process nook started keeps the parent-death signal nook_spawn_fuse
    /// gives it. Left to daemonize, its forked child had none, and a nook
    /// killed with SIGKILL left it running for ever (the second attack
    /// report), holding the sandbox's mount namespace and in-memory layer.
    let pid: pid_t
    /// Its stderr, kept open so that a late warning of its own never meets
    /// a closed pipe.
    let stderrFD: Int32

    static func mount(_ plan: LaunchPlan, layers: Layers, child: nook_launch_result) throws -> FuseOverlay {
        guard let program = findProgram("fuse-overlayfs", path: HostProbe.currentEnvironment()["PATH"]) else {
            throw UsageFailure("fuse-overlayfs is not installed", hint: "sudo apt install fuse-overlayfs, or --overlay native")
        }
        // The child says 'F' once its own part (an in-memory upper) is ready.
        var byte: UInt8 = 0
        let n = recv(child.sync_fd, &byte, 1, 0)
        guard n == 1, byte == UInt8(ascii: "F") else {
            throw ChildGone()
        }
        let first: Int32 = 10
        var paths = plan.lowerDirs
        let scratch = String(cString: nook_scratch_dir())
        func fd(_ i: Int) -> String { "/proc/self/fd/\(first + Int32(i))" }
        let lower = plan.lowerDirs.indices.map(fd).joined(separator: ":")
        var options = "lowerdir=\(lower)"
        if !plan.readOnlyOverlay {
            paths.append(layers.upperPath ?? scratch + "/upper")
            paths.append(layers.workPath ?? scratch + "/work")
            options += ",upperdir=\(fd(plan.lowerDirs.count)),workdir=\(fd(plan.lowerDirs.count + 1))"
        }
        if plan.idShift {
            options += "," + idShiftOptions(plan)
        }
        let mountpoint = String(cString: nook_staging_dir())
        let argv = [program, "-f", "-o", options, mountpoint]

        var errPipe: [Int32] = [-1, -1]
        guard pipe(&errPipe) == 0 else { throw SystemFailure("pipe for fuse-overlayfs") }
        _ = fcntl(errPipe[0], F_SETFD, FD_CLOEXEC)
        let arena = CArena()
        let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        let pid = nook_spawn_fuse(child.pidfd, arena.strings(argv), arena.strings(env), errPipe[1],
                                  arena.strings(paths), Int32(paths.count), first)
        close(errPipe[1])
        guard pid > 0 else {
            close(errPipe[0])
            throw SystemFailure("start fuse-overlayfs", errno: Errno(-pid))
        }
        // Ready once the mount shows in the sandbox's mount namespace; an
        // early exit is a failure, with what it wrote.
        let deadline = monotonicSeconds() + 30
        var exited: Int32?
        while !mounted(pid: child.pid, at: mountpoint) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = status
                break
            }
            if monotonicSeconds() > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                exited = status
                break
            }
            usleep(2_000)
        }
        if let status = exited {
            let done = Spawned(pid: pid, stderrFD: errPipe[0], path: program, arguments: argv).finishReading(status)
            let setup = [120: "could not join the sandbox's namespaces", 121: "could not become root in the sandbox's "
                + "user namespace (is uid 0 mapped?)", 122: "could not set up its standard descriptors",
                123: "could not open a layer directory in the sandbox's mount namespace", 127: "could not be executed"]
            let code = Int((done.status >> 8) & 0xff)
            let reason = done.stderr.isEmpty ? (setup[code] ?? IDMapWriter.describeStatus(done.status)) : done.stderr
            throw UsageFailure("fuse-overlayfs failed to mount the root over \(plan.lowerDirs.first ?? ""): \(reason)",
                               hint: "check that /dev/fuse is usable (ls -l /dev/fuse) and fuse3 is installed; "
                                   + "or try --overlay native")
        }
        let ok = UInt8(ascii: "M")
        _ = withUnsafePointer(to: ok) { send(child.sync_fd, $0, 1, Int32(MSG_NOSIGNAL)) }
        Log.info("writable layer: fuse-overlayfs")
        return FuseOverlay(pid: pid, stderrFD: errPipe[0])
    }

    /// Whether a FUSE filesystem is mounted at `point` in `pid`'s mount namespace.
    static func mounted(pid: pid_t, at point: String) -> Bool {
        guard let info = HostProbe.readTextFile("/proc/\(pid)/mountinfo") else { return false }
        for line in info.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4, fields[4] == point, let dash = fields.firstIndex(of: "-"),
                  dash + 1 < fields.count else { continue }
            if fields[dash + 1].hasPrefix("fuse") { return true }
        }
        return false
    }

    /// Under keep-id the layers' owners, unpacked under the root mapping
    /// (uid 0 is the caller), would show shifted: the caller's own id as
    /// itself, subordinate id n as n-1. fuse-overlayfs maps them back
    /// (stored:shown:size triples, stored being the id the daemon sees on
    /// disk from the sandbox's keep-id namespace, shown the one it reports),
    /// so the image shows root's files as root's without a copy or a chown.
    static func idShiftOptions(_ plan: LaunchPlan) -> String {
        func shift(_ own: UInt32, _ maps: [IDMapping]) -> String {
            let total = maps.reduce(UInt64(0)) { $0 + UInt64($1.size) }
            let u = UInt64(own)
            var triples = ["\(u):0:1"]
            if u > 0 { triples.append("0:1:\(u)") }
            if total > u + 1 { triples.append("\(u + 1):\(u + 1):\(total - u - 1)") }
            return triples.joined(separator: ":")
        }
        let uidOwn = plan.uidMappings.first { $0.size == 1 && $0.containerID == $0.hostID }?.containerID ?? plan.uid
        let gidOwn = plan.gidMappings.first { $0.size == 1 && $0.containerID == $0.hostID }?.containerID ?? plan.gid
        return "uidmapping=" + shift(uidOwn, plan.uidMappings) + ",gidmapping=" + shift(gidOwn, plan.gidMappings)
    }

    /// After the sandbox: the daemon lives in a mount namespace of its own
    /// that nothing else holds, so it would never end by itself. SIGTERM
    /// makes it unmount and exit; SIGKILL after a second if it did not.
    func finish() {
        defer { close(stderrFD) }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<100 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}

/// The sandbox's first process ended during setup; its error is on the pipe.
struct ChildGone: NookFailure {
    var description: String { "the sandbox ended during setup" }
}

