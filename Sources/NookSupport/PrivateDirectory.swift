#if canImport(Glibc)
import Glibc
#endif

/// Directories nook keeps its runtime state in ($XDG_RUNTIME_DIR/nook, or
/// /tmp/nook-UID/nook without one), made where missing and checked so that
/// nobody but the user (and root) can change what lies below them: a
/// directory another user owns, or one others may write without the
/// sticky bit, lets them swap a component for a symlink between nook's
/// check and its use, and aim what nook creates or removes at the user's
/// own files (a /tmp/nook-UID made by someone else first).
public enum PrivateDirectory {
    /// Makes each missing component of `path` (mode 0700) and checks every
    /// one: owned by root or the user; once the user's (and not writable by
    /// everyone), the user's all the way down; writable by others only
    /// with the sticky bit (/tmp), and then the next one must be the
    /// user's. Symlinks are accepted only from root, above the user's own.
    public static func ensure(_ path: String) throws(UsageFailure) {
        let uid = getuid()
        var ours = false
        var nextMustBeOurs = false
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw UsageFailure("create \(current): \(Errno.current)",
                                   hint: "set XDG_RUNTIME_DIR to a directory of your own")
            }
            var link = stat(), sb = stat()
            guard lstat(current, &link) == 0, stat(current, &sb) == 0 else {
                throw UsageFailure("check \(current): \(Errno.current)")
            }
            let isLink = (link.st_mode & S_IFMT) == S_IFLNK
            let isDir = (sb.st_mode & S_IFMT) == S_IFDIR
            func refuse(_ why: String) -> UsageFailure {
                UsageFailure("\(current) \(why), so someone else could change what nook keeps below it",
                             hint: "remove it if it is not needed, or set XDG_RUNTIME_DIR to a directory of your own "
                                + "(/run/user/\(uid) on a systemd host)")
            }
            guard isDir else { throw refuse("is not a directory") }
            if isLink && (ours || link.st_uid != 0) { throw refuse("is a symlink of uid \(link.st_uid)") }
            if ours || nextMustBeOurs {
                guard sb.st_uid == uid else { throw refuse("belongs to uid \(sb.st_uid), not to you") }
            }
            guard sb.st_uid == 0 || sb.st_uid == uid else { throw refuse("belongs to uid \(sb.st_uid), another user") }
            if sb.st_mode & 0o022 != 0 {
                // Others may write it: only the sticky bit keeps them from
                // renaming what lies in it, and only what is the user's.
                guard sb.st_mode & S_ISVTX != 0 else { throw refuse("is writable by others without the sticky bit") }
                nextMustBeOurs = true
            } else {
                nextMustBeOurs = false
                if sb.st_uid == uid { ours = true }
            }
        }
        if !ours { throw UsageFailure("\(path) is not a directory of your own", hint: "set XDG_RUNTIME_DIR to one") }
    }
}
