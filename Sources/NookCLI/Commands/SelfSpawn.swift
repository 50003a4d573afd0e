#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// Starts nook itself (/proc/self/exe) for one of its internal commands:
/// a detached container's monitor, a health check. It starts with no
/// signal blocked and every disposition at its default, whatever this
/// process has, and with exactly the descriptors given.
enum SelfSpawn {
    enum Source {
        /// /dev/null, for reading or writing.
        case devNull(write: Bool)
        /// A duplicate of a descriptor of this process.
        case descriptor(Int32)
    }

    /// The child's pid, or the errno posix_spawn returned.
    static func start(_ words: [String], descriptors: [(Int32, Source)],
                      newSession: Bool = false) -> Result<pid_t, Errno> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in descriptors {
            switch source {
            case .devNull(let write):
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", write ? O_WRONLY : O_RDONLY, 0)
            case .descriptor(let fd):
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        // A session of its own: a closing terminal's SIGHUP never reaches it.
        let setsid: Int32 = newSession ? 0x80 /* POSIX_SPAWN_SETSID */ : 0
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | setsid))
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { a in
            posix_spawn(&pid, "/proc/self/exe", &actions, &attr, UnsafeMutablePointer(mutating: a.baseAddress!), environ)
        }
        return rc == 0 ? .success(pid) : .failure(Errno(rc))
    }
}
