#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import CNookSys
import FoundationEssentials
import NookSpec
import NookSupport

/// The host side of an overlay root: checks the layer directories, and
/// makes, checks and locks a persistent writable layer. The child opens the
/// directories again itself (overlayfs takes only mounts of the caller's own
/// mount namespace) and hands them to the kernel as /proc/self/fd/N, so no
/// path is parsed as a mount option (':' ',' spaces and newlines all work).
struct Layers {
    var upperPath: String?
    var workPath: String?
    /// Held for the run: two sandboxes writing one layer would corrupt it.
    var lock: Int32 = -1
    /// The persistent upper was made for this run and the lowest layer's
    /// root has another owner, which the child gives it (see openPersistent).
    var adoptOwner = false

    static func open(_ plan: LaunchPlan) throws -> Layers {
        var layers = Layers()
        guard plan.rootKind == .overlay || plan.rootKind == .fuse else { return layers }
        // A layer that holds the directory the root is assembled on would
        // contain its own mount: kernel overlayfs refuses, fuse-overlayfs
        // deadlocks looking itself up.
        let staging = [String(cString: nook_staging_dir()), String(cString: nook_scratch_dir())]
        for dir in plan.lowerDirs {
            let real = (realpath(dir, nil).map { p in defer { free(p) }; return String(cString: p) }) ?? dir
            if let inside = staging.first(where: { real == "/" || $0 == real || $0.hasPrefix(real + "/") }) {
                throw UsageFailure("the layer \(dir) contains \(inside), where nook assembles the root",
                                   hint: real == "/" ? "for the host's own root, run nook without --rootfs (it is seen read-only)"
                                       : "use a directory that does not contain \(inside)")
            }
        }
        for dir in plan.lowerDirs {
            var sb = stat()
            guard stat(dir, &sb) == 0, (sb.st_mode & S_IFMT) == S_IFDIR else {
                throw SystemFailure("use the layer", path: dir, errno: Errno(errno == 0 ? ENOTDIR : errno))
            }
        }
        if let name = plan.persist {
            do {
                try layers.openPersistent(name, lowest: plan.lowerDirs.last ?? plan.rootPath, base: PersistBase(plan))
            } catch {
                layers.close()
                throw error
            }
        }
        return layers
    }

    /// $XDG_DATA_HOME/nook/persist/NAME/{upper,work}, created if missing.
    /// The data home may lie behind a symlink of the user's own (Fedora
    /// Silverblue's /home -> var/home): the persist directory is resolved
    /// once, and what lies below it is made and opened relative to it
    /// without following any symlink, so a link planted there (NAME ->
    /// /elsewhere) is refused, never written through.
    ///
    /// overlayfs shows the upper root's owner and mode as the sandbox's
    /// root, so a new upper gets the lowest layer's, as the in-memory upper
    /// does: its mode here, its owner from the child when that is not the
    /// caller (only the user namespace can give a subordinate id).
    ///
    /// The layer records what it was made over (base.json): its files are
    /// changes to that root, and over another they would be mixed with it
    /// (deletions of files it never had, old copies over new ones). Used
    /// over another, it is refused.
    mutating func openPersistent(_ name: String, lowest: String, base: PersistBase) throws {
        let root = try Persist.openRoot()
        defer { Glibc.close(root.fd) }
        let path = root.path + "/" + name
        let dir = try Persist.openBelow(root.fd, name, path: path, layer: name).fd
        defer { Glibc.close(dir) }
        lock = openat(dir, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw SystemFailure("open the lock of", path: path) }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw UsageFailure("--persist \(name): the layer is in use by another sandbox",
                               hint: "wait for it to end, or choose another name")
        }
        let upper = try Persist.openBelow(dir, "upper", path: path + "/upper", layer: name)
        defer { Glibc.close(upper.fd) }
        Glibc.close(try Persist.openBelow(dir, "work", path: path + "/work", layer: name).fd)
        var lower = stat()
        guard stat(lowest, &lower) == 0 else { throw SystemFailure("use the layer", path: lowest) }
        // Through the descriptor: chmod of the name could follow a link.
        func takeMode() throws {
            guard chmod("/proc/self/fd/\(upper.fd)", lower.st_mode & 0o7777) == 0 else {
                throw SystemFailure("set the mode of", path: path + "/upper")
            }
        }
        if upper.made {
            try takeMode()
            adoptOwner = lower.st_uid != getuid() || lower.st_gid != getgid()
        }
        switch try PersistBase.read(dir, path: path, layer: name) {
        case .some(let recorded) where recorded != base:
            throw UsageFailure("--persist \(name): the layer was made over \(recorded), not \(base); over another root "
                + "its changes would be mixed with files they were not made for",
                hint: "choose another name, or remove the layer: nook unshare rm -rf \(path) (to keep it over \(base) "
                    + "all the same, remove \(path)/base.json)")
        case .some:
            break
        case .none:
            // A layer from before nook kept base.json was made with a 0700
            // root (overlayfs shows it as the sandbox's /): mend that once.
            var sb = stat()
            if !upper.made, fstat(upper.fd, &sb) == 0, sb.st_mode & 0o7777 == 0o700, lower.st_mode & 0o7777 != 0o700 {
                try takeMode()
                Log.info("--persist \(name): the layer's root was 0700 (made by an older nook); gave it the mode of \(base)")
            }
            try base.write(dir, path: path)
        }
        // The child opens these again in its own mount namespace, also
        // without following a symlink: the resolved path has none.
        upperPath = path + "/upper"
        workPath = path + "/work"
    }

    func close() {
        if lock >= 0 { Glibc.close(lock) }
    }
}

/// What a persistent layer was made over: an image (by id; the name is for
/// messages) or a directory (by its real path). Kept in the layer's
/// base.json.
struct PersistBase: Codable, Equatable, CustomStringConvertible {
    var image: String?
    var name: String?
    var directory: String?

    init(_ plan: LaunchPlan) {
        if let id = plan.imageID {
            image = id
            name = plan.imageName
        } else {
            directory = realpath(plan.rootPath, nil).map { p in defer { free(p) }; return String(cString: p) }
                ?? plan.rootPath
        }
    }

    static func == (a: PersistBase, b: PersistBase) -> Bool { a.image == b.image && a.directory == b.directory }

    var description: String {
        if let image {
            let short = image.hasPrefix("sha256:") ? String(image.dropFirst(7).prefix(12)) : image
            return "the image \(name.map { $0 + " " } ?? "")(\(short))"
        }
        return "the directory \(directory ?? "?")"
    }

    /// The layer's record, or nil when it has none (new, or made before
    /// nook kept one).
    static func read(_ dir: Int32, path: String, layer: String) throws -> PersistBase? {
        let fd = openat(dir, "base.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 && errno == ENOENT { return nil }
        guard fd >= 0 else { throw SystemFailure("read", path: path + "/base.json") }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buf[0..<n]
        }
        guard let base = try? JSONDecoder().decode(PersistBase.self, from: Data(bytes)),
              base.image != nil || base.directory != nil else {
            throw UsageFailure("--persist \(layer): \(path)/base.json, which says what the layer was made over, is "
                + "damaged", hint: "remove it (rm \(path)/base.json): the next run records its own root")
        }
        return base
    }

    /// Writes base.json whole (a temporary file renamed over it).
    func write(_ dir: Int32, path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let bytes = Array((try? encoder.encode(self)) ?? Data()) + [10]
        let fd = openat(dir, ".base.json.new", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemFailure("write", path: path + "/.base.json.new") }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        Glibc.close(fd)
        guard n == bytes.count, renameat(dir, ".base.json.new", dir, "base.json") == 0 else {
            throw SystemFailure("write", path: path + "/base.json")
        }
    }
}

/// Where persistent writable layers live.
public enum Persist {
    public static func root() -> String {
        let env = HostProbe.currentEnvironment()
        let data = env["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? (env["HOME"] ?? "/") + "/.local/share"
        return data + "/nook/persist"
    }

    public static func directory(_ name: String) -> String { root() + "/" + name }

    /// The persist directory, made if missing and opened through whatever
    /// symlinks lead to it (they are the user's own), with its resolved path.
    static func openRoot() throws -> (fd: Int32, path: String) {
        let path = root()
        for dir in components(of: path) where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw SystemFailure("create", path: dir)
        }
        guard let resolved = realpath(path, nil) else { throw SystemFailure("resolve", path: path) }
        let real = String(cString: resolved)
        free(resolved)
        let fd = open(real, Int32(NOOK_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemFailure("open", path: real) }
        return (fd, real)
    }

    /// Makes (when missing) and opens the directory `name` in `dir`, never
    /// through a symlink. `made` is true when it was created here.
    static func openBelow(_ dir: Int32, _ name: String, path: String, layer: String) throws -> (fd: Int32, made: Bool) {
        let made = mkdirat(dir, name, 0o700) == 0
        if !made && errno != EEXIST { throw SystemFailure("create", path: path) }
        let fd = nook_openat2(dir, name, UInt64(Int32(NOOK_O_PATH) | O_DIRECTORY | O_CLOEXEC), 0,
                              UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS | NOOK_RESOLVE_NO_MAGICLINKS))
        guard fd < 0 else { return (fd, made) }
        var sb = stat()
        let kind = fstatat(dir, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? sb.st_mode & S_IFMT : 0
        if kind == S_IFLNK || (kind != 0 && kind != S_IFDIR) {
            throw UsageFailure("--persist \(layer): \(path) is \(kind == S_IFLNK ? "a symlink" : "not a directory")",
                               hint: "nook follows no link below its persist directory, where one could send a "
                                   + "sandbox's writes anywhere; remove it (rm \(path)) or choose another name")
        }
        throw SystemFailure("open the persistent layer", path: path, errno: Errno(-fd))
    }

    /// Every directory from the top of the data home down to `path`, so
    /// that each can be made in turn.
    static func components(of path: String) -> [String] {
        var out: [String] = []
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            out.append(current)
        }
        return out
    }
}

/// /etc/hosts and friends for roots of their own, written by nook on the
/// host and bound into the sandbox.
struct GeneratedFiles {
    var directories: Set<String> = []
    var files: [String] = []

    static func write(_ contents: [String: String]) throws -> GeneratedFiles {
        var out = GeneratedFiles()
        for (path, text) in contents.sorted(by: { $0.key < $1.key }) {
            guard let slash = path.lastIndex(of: "/") else { continue }
            let dir = String(path[..<slash])
            if !out.directories.contains(dir) {
                try PrivateDirectory.ensure(dir)
                out.directories.insert(dir)
            }
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SystemFailure("write", path: path) }
            let bytes = Array(text.utf8)
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
            guard n == bytes.count else { throw SystemFailure("write", path: path) }
            out.files.append(path)
        }
        return out
    }

    func remove() {
        for f in files { unlink(f) }
        for d in directories { rmdir(d) }
    }
}

/// A sandbox's own directory under `$XDG_RUNTIME_DIR/nook/sandboxes` (the
/// files nook makes for it: /etc/hosts, resolv.conf, a network helper's
/// log), held by an flock on the directory for as long as nook runs.
/// A nook killed with SIGKILL cannot remove its directory; the next nook
/// that claims one removes every directory there whose lock nobody holds.
/// The lock is taken before the directory gets its name (made as
/// `.claim-ID`, locked, renamed), so a sweep never sees it unlocked.
final class SandboxDirectory {
    let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    static func claim(_ path: String) throws -> SandboxDirectory {
        guard let slash = path.lastIndex(of: "/") else { throw UsageFailure("\(path) is not an absolute path") }
        let parent = String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        try PrivateDirectory.ensure(parent)
        sweep(parent)
        let staging = parent + "/.claim-" + name
        guard mkdir(staging, 0o700) == 0 else { throw SystemFailure("create", path: staging) }
        let fd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0, rename(staging, path) == 0 else {
            let failure = SystemFailure("claim", path: path)
            if fd >= 0 { Glibc.close(fd) }
            rmdir(staging)
            throw failure
        }
        return SandboxDirectory(path: path, fd: fd)
    }

    /// Removes what is left in it, then it, then lets go of the lock.
    func remove() {
        guard fd >= 0 else { return }
        Self.empty(fd)
        rmdir(path)
        Glibc.close(fd)
        fd = -1
    }

    /// Removes the directories below `parent` that no running nook holds.
    static func sweep(_ parent: String) {
        guard let dir = opendir(parent) else { return }
        defer { closedir(dir) }
        let parentFD = dirfd(dir)
        while let entry = readdir(dir) {
            let name = DirectoryEntry.name(entry)
            // A .claim- directory is locked a moment after it is made: one
            // a minute old and unlocked belongs to a nook killed in between.
            let claim = name.hasPrefix(".claim-")
            guard !name.hasPrefix(".") || claim else { continue }
            let fd = openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var sb = stat()
            let old = fstat(fd, &sb) == 0 && Double(sb.st_ctim.tv_sec) < Double(time(nil)) - 60
            if (!claim || old) && flock(fd, LOCK_EX | LOCK_NB) == 0 {
                empty(fd)
                unlinkat(parentFD, name, AT_REMOVEDIR)
            }
            Glibc.close(fd)
        }
    }

    /// Unlinks each entry of the directory that is not a directory (links
    /// are removed, never followed).
    private static func empty(_ fd: Int32) {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { Glibc.close(copy) }
            return
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            guard entry.pointee.d_type != UInt8(DT_DIR) else { continue }
            names.append(DirectoryEntry.name(entry))
        }
        for name in names { unlinkat(fd, name, 0) }
    }
}

/// The name of a readdir(3) entry (as bytes decoded; names nook reads here
/// are its own, pids, or top-level entries of /).
enum DirectoryEntry {
    static func name(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
