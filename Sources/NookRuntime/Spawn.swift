#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// A helper program started with posix_spawn, its stderr captured. Used for
/// newuidmap/newgidmap: no threads, no Foundation.Process.
struct Spawned {
    let pid: pid_t
    let stderrFD: Int32
    let path: String
    let arguments: [String]

    /// Starts `path` with `arguments` (argv[0] included), stdin and stdout on
    /// /dev/null, stderr into a pipe.
    static func start(_ path: String, _ arguments: [String]) throws(SystemFailure) -> Spawned {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SystemFailure("pipe for \(path)") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The caller blocks signals it forwards; the helper must not inherit that.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))

        var pid: pid_t = 0
        let cArgs = arguments.map { strdup($0) }
        defer { cArgs.forEach { free($0) } }
        let argv = cArgs + [nil]
        let rc = argv.withUnsafeBufferPointer { buf in
            posix_spawn(&pid, path, &actions, &attr, UnsafeMutablePointer(mutating: buf.baseAddress!), environ)
        }
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SystemFailure("start", path: path, errno: Errno(rc))
        }
        return Spawned(pid: pid, stderrFD: fds[0], path: path, arguments: arguments)
    }

    /// Waits for the program to exit, then reads what it wrote to stderr so
    /// far without waiting for EOF (a daemon it left behind may hold the pipe).
    func waitThenRead(timeout: Int) -> (status: Int32, stderr: String) {
        var status: Int32 = 0
        let deadline = monotonicSeconds() + Double(timeout)
        while waitpid(pid, &status, WNOHANG) != pid {
            if monotonicSeconds() >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(5_000)
        }
        return finishReading(status)
    }

    /// Waits for the program; returns its wait status and what it wrote to
    /// stderr. After `timeout` seconds it is killed (status: SIGKILL).
    func wait(timeout: Int = 0) -> (status: Int32, stderr: String) {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        if timeout > 0 {
            // Timed by the clock: poll returns at once while the program
            // writes or once it has closed stderr, and counting 50 ms per
            // return killed newuidmap after microseconds (a fresh try).
            let deadline = Launcher.monotonic() + Double(timeout)
            var open = true
            while Launcher.monotonic() < deadline {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    var (_, rest) = finishReading(status)
                    if !bytes.isEmpty { rest = String(decoding: bytes, as: UTF8.self) + rest }
                    return (status, rest.trimming(" \n\t"))
                }
                var p = pollfd(fd: open ? stderrFD : -1, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0, open else { continue }
                let n = read(stderrFD, &buf, buf.count)
                if n > 0 { bytes += buf[0..<n] } else if n == 0 { open = false }
            }
            kill(pid, SIGKILL)
        }
        while true {
            let n = read(stderrFD, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        close(stderrFD)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = String(decoding: bytes, as: UTF8.self)
        return (status, text.trimming(" \n\t"))
    }

    /// The program has exited already: read what is left of its stderr.
    func finishReading(_ status: Int32) -> (status: Int32, stderr: String) {
        _ = fcntl(stderrFD, F_SETFL, fcntl(stderrFD, F_GETFL) | O_NONBLOCK)
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = read(stderrFD, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        close(stderrFD)
        return (status, String(decoding: bytes, as: UTF8.self).trimming(" \n\t"))
    }
}


/// The first executable file named `name` on PATH (or the default path).
func findProgram(_ name: String, path: String?) -> String? {
    let dirs = (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":")
    for dir in dirs where dir.hasPrefix("/") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
