#if canImport(Glibc)
import Glibc
#endif

/// Starts a program with posix_spawn and waits for it, for the harness.
/// Not Foundation.Process: under many parallel tests its run() crashed in
/// a memcpy now and then (seen in a full run), and its children inherit the
/// runner's blocked signals. Here the child gets an empty signal mask and
/// default dispositions, stdin/stdout/stderr on the given files.
enum TestSpawn {
    struct Result {
        /// The exit status, or 128 + the signal that ended it.
        var status: Int32
        var timedOut: Bool
    }

    /// glibc's posix_spawn_file_actions_addchdir_np, which Swift's Glibc
    /// module does not export.
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?,
                                         UnsafePointer<CChar>?) -> Int32
    nonisolated(unsafe) static let addchdir: AddChdir = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else {
            fatalError("glibc without posix_spawn_file_actions_addchdir_np (2.29 or later is needed)")
        }
        return unsafeBitCast(symbol, to: AddChdir.self)
    }()

    static func run(_ path: String, _ arguments: [String], environment: [String: String], directory: String,
                    stdin: String, stdout: String, stderr: String, timeout: Double) -> Result? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_TRUNC, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_TRUNC, 0)
        guard addchdir(&actions, directory) == 0 else { return nil }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { a in
            envp.withUnsafeBufferPointer { e in
                posix_spawn(&pid, path, &actions, &attr, UnsafeMutablePointer(mutating: a.baseAddress!),
                            UnsafeMutablePointer(mutating: e.baseAddress!))
            }
        }
        guard rc == 0 else { return nil }
        var status: Int32 = 0
        var waited = 0.0
        var timedOut = false
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return Result(status: -1, timedOut: false) }
            if waited >= timeout && !timedOut {
                kill(pid, SIGKILL)
                timedOut = true
            }
            usleep(2_000)
            waited += 0.002
        }
        let signal = status & 0x7f
        let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return Result(status: code, timedOut: timedOut)
    }
}
