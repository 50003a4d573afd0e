#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// A flock(2) lock on a file. The lock belongs to the open file description,
/// is released when the descriptor closes (also when the process dies), and
/// is close-on-exec, so a sandbox's payload never inherits it.
///
/// The store uses three kinds:
/// - `lock` at the store's root: shared to read the records, exclusive to
///   change them (commit an import, rm, prune). Held for milliseconds.
/// - `layers/<id>/lock` and `images/<id>.lock`: shared by every process that
///   uses the layer or image (a running sandbox, an import in progress);
///   prune and rm take them exclusive without waiting and leave alone what
///   they cannot lock. They are taken only while holding the store lock, so
///   prune cannot remove a layer between a user's lookup and its lock.
/// - `locks/unpack-<id>`: exclusive while one import unpacks that layer; a
///   second import of the same layer waits, then finds it done.
package final class LockFile {
    package let fd: Int32
    let path: String

    /// Opens (and with `create`, makes) the lock file; `writable` for a
    /// file whose holder writes it (a partial download).
    init(_ path: String, create: Bool = true, writable: Bool = false) throws(SystemFailure) {
        // flock needs no write access: read-only opens work on any lock file
        // the user can read.
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0o600)
        guard fd >= 0 else { throw SystemFailure("open the lock", path: path) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Waits for the lock.
    func lock(exclusive: Bool) throws(SystemFailure) {
        while flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0 {
            if errno != EINTR { throw SystemFailure("lock", path: path) }
        }
    }

    /// Takes the lock if nobody holds a conflicting one; false otherwise.
    func tryLock(exclusive: Bool) throws(SystemFailure) -> Bool {
        while flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return false }
            if errno != EINTR { throw SystemFailure("lock", path: path) }
        }
        return true
    }

    func unlock() { flock(fd, LOCK_UN) }

    /// Waits for an exclusive lock on a file that others may remove or
    /// move while holding it (prune removes stale unpack locks; a pull
    /// moves a finished partial blob into its import): after locking, the
    /// path must still name the file locked, else it starts over.
    package static func exclusive(_ path: String, writable: Bool = false) throws(SystemFailure) -> LockFile {
        while true {
            let lock = try LockFile(path, writable: writable)
            try lock.lock(exclusive: true)
            var held = stat(), named = stat()
            if fstat(lock.fd, &held) == 0, stat(path, &named) == 0, held.st_ino == named.st_ino,
               held.st_dev == named.st_dev {
                return lock
            }
        }
    }
}
