#if canImport(Glibc)
import Glibc
#endif
import CNookSubid
import CNookSys
import NookSpec
import NookSupport

/// Gathers the facts about the caller and the host that resolving needs.
public enum HostProbe {
    /// The host as seen by this process, for `request`.
    public static func current(for request: SandboxRequest) throws(SystemFailure) -> HostContext {
        let uid = getuid()
        let gid = getgid()
        let environment = currentEnvironment()
        let account = passwdEntry(uid)
        let userName = account?.name ?? String(uid)
        let home = account?.home ?? environment["HOME"] ?? "/"
        let cwd: String
        switch currentDirectory() {
        case .success(let path): cwd = path
        case .failure(let failure): throw failure
        }

        var host = HostContext(uid: uid, gid: gid, userName: userName, home: home, cwd: cwd,
                               environment: environment)
        host.nativeArch = SeccompFilters.nativeArch
        let ids = subordinateIDs(user: userName, uid: uid, path: environment["PATH"])
        host.uidRanges = ids.uids
        host.gidRanges = ids.gids
        host.idmapUnavailable = ids.unavailable
        host.rangeSource = rangeSource()

        host.dataHome = environment["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? home + "/.local/share"
        host.sandboxDir = sandboxDirectory(environment: environment, uid: uid)
        host.kernel = kernelVersion()
        host.fuseOverlayfs = findProgram("fuse-overlayfs", path: environment["PATH"])
        host.protectedPaths = protectedPaths(environment: environment, home: home, dataHome: host.dataHome)
        host.pasta = findProgram("pasta", path: environment["PATH"])
        host.slirp4netns = findProgram("slirp4netns", path: environment["PATH"])
        // Only the automatic choice for an image or a published port asks.
        if request.network == nil && (request.image != nil || !request.publish.isEmpty) {
            host.hasRouteOut = RouteProbe.hasDefaultRoute()
        }
        if request.network != NetworkMode.none {
            host.resolvConf = readTextFile("/etc/resolv.conf")
            var sb = stat()
            host.resolvConfIsFile = lstat("/etc/resolv.conf", &sb) == 0 && (sb.st_mode & S_IFMT) == S_IFREG
        }
        // --user is looked up in the root the command will see.
        if let rootfs = request.rootfs {
            host.rootfsPasswd = readInRoot(rootfs, "etc/passwd")
            host.rootfsGroup = readInRoot(rootfs, "etc/group")
        } else if request.image == nil && request.user != nil {
            host.rootfsPasswd = readInRoot("/", "etc/passwd")
            host.rootfsGroup = readInRoot("/", "etc/group")
        }

        if request.terminal == true {
            var ws = winsize()
            if ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 || ioctl(1, UInt(TIOCGWINSZ), &ws) == 0 {
                host.terminalSize = ConsoleSize(height: ws.ws_row, width: ws.ws_col)
            }
        }
        for path in request.envFiles {
            switch readEnvFile(path) {
            case .success(let text): host.envFileContents[path] = text
            case .failure(let failure): throw failure
            }
        }
        var paths = request.binds.map(\.source) + request.hiddenPaths + [home] + (request.rootfs.map { [$0] } ?? [])
        if let envHome = environment["HOME"] { paths.append(envHome) }
        host.homePaths = [home, environment["HOME"] ?? ""].compactMap { p -> String? in
            guard p.hasPrefix("/"), let real = realpath(p, nil) else { return nil }
            defer { free(real) }
            return strictUTF8(cString: real)
        }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        paths += host.homePaths
        for path in paths where path.hasPrefix("/") {
            var sb = stat()
            if stat(path, &sb) == 0 {
                host.sourceIsDirectory[normalize(path)] = (sb.st_mode & S_IFMT) == S_IFDIR
            } else if errno == EACCES || errno == ELOOP {
                host.sourceErrors[normalize(path)] = errno
            }
            if path == request.rootfs, stat(path, &sb) == 0 { host.rootfsOwner = (sb.st_uid, sb.st_gid) }
        }
        if request.hostEntries != nil { host.rootEntries = topLevelEntries() }
        return host
    }

    /// A directory of this sandbox's own for files nook generates, under
    /// $XDG_RUNTIME_DIR/nook (or /tmp/nook-UID without one).
    static func sandboxDirectory(environment: [String: String], uid: uid_t) -> String {
        let runtime = environment["XDG_RUNTIME_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/tmp/nook-\(uid)"
        var bytes = [UInt8](repeating: 0, count: 8)
        _ = nook_random(&bytes, UInt(bytes.count))
        let id = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        return runtime + "/nook/sandboxes/" + id
    }

    /// nook's own state directories, created when missing (so no sandbox
    /// can plant them first) and resolved, so they match bind sources.
    static func protectedPaths(environment: [String: String], home: String, dataHome: String) -> [String] {
        var dirs = [dataHome + "/nook"]
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? home + "/.config"
        dirs.append(config + "/nook")
        // Without XDG_RUNTIME_DIR the containers live in /tmp/nook-UID,
        // which a bind of /tmp shows: hidden all the same (a fresh try
        // rewrote another container's spec from a sandbox there), and
        // whichever this run uses: cron jobs and CI runners use the other
        // (a fresh try's run with XDG_RUNTIME_DIR wrote the specs of those
        // without). /tmp/nook-UID is made here, so that no sandbox makes it.
        let uid = getuid()
        var runtimeStates: [String] = []
        for dir in [environment["XDG_RUNTIME_DIR"].flatMap { $0.hasPrefix("/") ? $0 + "/nook" : nil },
                    "/tmp/nook-\(uid)/nook", "/run/user/\(uid)/nook"].compactMap({ $0 }) where !runtimeStates.contains(dir) {
            runtimeStates.append(dir)
        }
        dirs += runtimeStates
        // The stock profiles of a nook installed in a directory of the
        // user's (PREFIX=~/.local): what later sandboxes load, so no
        // sandbox may write there either (a fresh try planted a profile in
        // a workspace that held such a prefix).
        if let exe = Installation.executable(), exe.hasPrefix("/") {
            let stock = Installation.stockProfiles(executable: exe)
            var sb = stat()
            if stat(stock, &sb) == 0, sb.st_uid == getuid() { dirs.append(stock) }
        }
        return dirs.compactMap { dir in
            var sb = stat()
            let parent = String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])
            // Only what is missing is made: this runs before every sandbox.
            let missing = stat(dir, &sb) != 0
            // A runtime directory only where it is private (a refused one
            // is reported by what uses it); made with its parent, so that no
            // sandbox can make /tmp/nook-UID first.
            if missing && runtimeStates.contains(dir) {
                // /run/user/UID is made by the session, never here.
                if dir != "/run/user/\(uid)/nook" || access("/run/user/\(uid)", F_OK) == 0 {
                    try? PrivateDirectory.ensure(dir)
                }
            }
            // The configuration and data directories too, with missing
            // parents: a sandbox that can write the home could otherwise
            // make ~/.config/nook/profiles itself, with profiles of its own.
            if missing && !runtimeStates.contains(dir) {
                var current = ""
                for part in dir.split(separator: "/") {
                    current += "/" + part
                    _ = mkdir(current, 0o700)
                }
            }
            guard !parent.isEmpty, stat(parent, &sb) == 0 else { return nil }
            guard let real = realpath(dir, nil) else { return nil }
            defer { free(real) }
            return String(cString: real)
        }
    }

    static func kernelVersion() -> (Int, Int) {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (0, 0)
    }

    /// The names in "/" that are directories (true) or files (false).
    static func topLevelEntries() -> [String: Bool] {
        guard let dir = opendir("/") else { return [:] }
        defer { closedir(dir) }
        var entries: [String: Bool] = [:]
        while let entry = readdir(dir) {
            let name = DirectoryEntry.name(entry)
            guard name != ".", name != ".." else { continue }
            var sb = stat()
            guard lstat("/" + name, &sb) == 0 else { continue }
            switch sb.st_mode & S_IFMT {
            case S_IFDIR: entries[name] = true
            case S_IFREG: entries[name] = false
            default: continue
            }
        }
        return entries
    }

    static func normalize(_ path: String) -> String {
        (try? Resolver.normalized(path, what: "path")) ?? path
    }

    /// The environment, without entries that are not valid UTF-8 (each
    /// named once in a warning: passing on a repaired value would change it).
    public static func currentEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            p += 1
            guard let s = strictUTF8(cString: entry) else {
                let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(entry).assumingMemoryBound(to: UInt8.self),
                                                count: strlen(entry))
                let name = escapedBytes(bytes.prefix { $0 != UInt8(ascii: "=") })
                Log.warnOnce(key: "env-utf8-" + name, "environment variable \(name) is not valid UTF-8 and is left out")
                continue
            }
            if let eq = s.firstIndex(of: "=") {
                let key = String(s[..<eq])
                if env[key] == nil { env[key] = String(s[s.index(after: eq)...]) }
            }
        }
        return env
    }

    static func currentDirectory() -> Result<String, SystemFailure> {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else {
            let err = Errno.current
            return .failure(SystemFailure("read the current directory", errno: err,
                hint: err.rawValue == ERANGE ? "its path is longer than PATH_MAX; cd to a shorter one"
                    : "it may have been removed; cd to an existing directory"))
        }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        guard let path = strictUTF8(bytes) else {
            return .failure(SystemFailure("use the current directory \(escapedBytes(bytes))", errno: Errno(EILSEQ),
                hint: "its path is not valid UTF-8, so nook would bind another name; cd to a UTF-8 path"))
        }
        return .success(path)
    }

    static func passwdEntry(_ uid: uid_t) -> (name: String, home: String)? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return (String(cString: pwd.pw_name), String(cString: pwd.pw_dir))
    }

    /// An env file: a regular file (a FIFO would block), at most 16 MiB,
    /// valid UTF-8.
    static func readEnvFile(_ path: String) -> Result<String, SystemFailure> {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .failure(SystemFailure("read the env file", path: path)) }
        var sb = stat()
        let isFile = fstat(fd, &sb) == 0 && (sb.st_mode & S_IFMT) == S_IFREG
        close(fd)
        guard isFile else {
            return .failure(SystemFailure("read the env file", path: path, errno: Errno(EINVAL), hint: "give a regular file"))
        }
        guard sb.st_size <= 16 << 20 else {
            return .failure(SystemFailure("read the env file", path: path, errno: Errno(EFBIG),
                                          hint: "it is larger than 16 MiB"))
        }
        guard let bytes = NookSupport.readFileBytes(path), let text = strictUTF8(bytes) else {
            return .failure(SystemFailure("read the env file", path: path, errno: Errno(EILSEQ),
                                          hint: "it could not be read, or is not valid UTF-8"))
        }
        return .success(text)
    }


    static func readTextFile(_ path: String) -> String? { NookSupport.readTextFile(path) }

    /// A regular file of a root, its symlinks resolved inside that root as
    /// the sandbox would; nil unless it is one (bytes that are not UTF-8 are
    /// replaced).
    static func readInRoot(_ root: String, _ path: String) -> String? {
        let dir = open(root, Int32(NOOK_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { return nil }
        defer { close(dir) }
        let flags = UInt64(O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        let fd = nook_openat2(dir, path, flags, 0, UInt64(NOOK_RESOLVE_IN_ROOT | NOOK_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_mode & S_IFMT == S_IFREG else { return nil }
        // Lossy: a GECOS field in Latin-1 must not hide the whole file.
        return readFileBytes(fd: fd, limit: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Subordinate ranges for the user, and why they cannot be used if so.
    static func subordinateIDs(user: String, uid: uid_t, path: String?)
        -> (uids: [IDRange], gids: [IDRange], unavailable: String?)
    {
        let uids = ranges(owner: user, gid: false)
        let gids = ranges(owner: user, gid: true)
        if uid == 0 {
            // Root writes its maps itself; it needs no helper.
            return (uids, gids, uids.isEmpty || gids.isEmpty ? "root has no subordinate ranges in /etc/subuid "
                + "and /etc/subgid; only id 0 is mapped. Fix: usermod --add-subuids 100000-165535 "
                + "--add-subgids 100000-165535 root" : nil)
        }
        let missing = ["newuidmap", "newgidmap"].filter { findProgram($0, path: path) == nil }
        if !missing.isEmpty {
            return (uids, gids, "\(missing.joined(separator: " and ")) not found on PATH: running with a "
                + "single-id mapping (only your own id exists inside, other owners show as nobody). "
                + "Fix: sudo apt install uidmap")
        }
        var absent: [String] = []
        if uids.isEmpty { absent.append("/etc/subuid") }
        if gids.isEmpty { absent.append("/etc/subgid") }
        if !absent.isEmpty {
            let start = suggestedStart()
            let range = "\(start)-\(start + 65535)"
            let fix = user == String(uid)
                ? "Fix: uid \(uid) has no passwd entry, so usermod cannot name it; ask the administrator to add "
                    + "'\(uid):\(start):65536' to /etc/subuid and /etc/subgid"
                : "Fix: sudo usermod --add-subuids \(range) --add-subgids \(range) \(user)"
            return (uids, gids, "no subordinate ids for user \(user) in \(absent.joined(separator: " and ")) "
                + "(looked up through libsubid): running with a single-id mapping (only your own id exists "
                + "inside, other owners show as nobody). " + fix)
        }
        return (excluding(uid, from: uids, kind: "uid"), excluding(getgid(), from: gids, kind: "gid"), nil)
    }

    /// libsubid reads /etc/subuid and /etc/subgid unless nsswitch.conf
    /// names a "subid:" service (SSSD and the like).
    static func rangeSource() -> String {
        let lines = readTextFile("/etc/nsswitch.conf")?.split(separator: "\n") ?? []
        if let line = lines.first(where: { $0.hasPrefix("subid:") }) {
            return "libsubid, nsswitch.conf \(line.trimming(" \t"))"
        }
        return "libsubid, /etc/subuid and /etc/subgid"
    }

    /// The ranges without the caller's own id (mapped on its own already:
    /// newuidmap refuses a map that names it twice), warning about ranges
    /// that hold the ids of real accounts: a sandbox could then act as them
    /// on files the caller can reach (CASES C43).
    static func excluding(_ own: UInt32, from ranges: [IDRange], kind: String) -> [IDRange] {
        var out: [IDRange] = []
        for r in ranges {
            let end = UInt64(r.start) + UInt64(r.count)
            if UInt64(own) >= UInt64(r.start) && UInt64(own) < end {
                Log.warnOnce(key: "own-\(kind)", "your subordinate \(kind) range \(r) contains your own \(kind) \(own); "
                    + "nook leaves it out of the range. Fix: ask the administrator to move the range")
                if own > r.start { out.append(IDRange(start: r.start, count: own - r.start)) }
                if UInt64(own) + 1 < end { out.append(IDRange(start: own + 1, count: UInt32(end - UInt64(own) - 1))) }
            } else {
                out.append(r)
            }
        }
        for (id, name) in accounts(kind) where id != own && id != 65534 {
            if let r = out.first(where: { UInt64(id) >= UInt64($0.start) && UInt64(id) < UInt64($0.start) + UInt64($0.count) }) {
                Log.warnOnce(key: "account-\(kind)-\(id)", "your subordinate \(kind) range \(r) contains \(kind) \(id) "
                    + "(\(name)), a real account: a sandbox can act as \(name) on whatever you can reach. "
                    + "Fix: ask the administrator to move the range (nook doctor checks this)")
            }
        }
        return out
    }

    /// (id, name) of the accounts in /etc/passwd or /etc/group.
    static func accounts(_ kind: String) -> [(UInt32, String)] {
        let file = kind == "uid" ? "/etc/passwd" : "/etc/group"
        return (readTextFile(file) ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count > 2, let id = UInt32(f[2]) else { return nil }
            return (id, String(f[0]))
        }
    }

    static func ranges(owner: String, gid: Bool) -> [IDRange] {
        var buf = [nook_subid_range](repeating: nook_subid_range(), count: 64)
        let n = nook_subid_ranges(owner, gid ? 1 : 0, &buf, Int32(buf.count))
        guard n > 0 else { return [] }
        return IDRange.merged(buf.prefix(Int(min(n, 64))).compactMap { r in
            guard r.count > 0, r.start <= UInt(UInt32.max), r.count <= UInt(UInt32.max) else { return nil }
            return IDRange(start: UInt32(r.start), count: UInt32(r.count))
        })
    }

    /// A start for a new 65536-id range above every range in /etc/subuid.
    static func suggestedStart() -> UInt64 {
        var end: UInt64 = 100_000
        for file in ["/etc/subuid", "/etc/subgid"] {
            guard let text = readTextFile(file) else { continue }
            for line in text.split(separator: "\n") {
                let f = line.split(separator: ":")
                guard f.count == 3, let s = UInt64(f[1]), let c = UInt64(f[2]) else { continue }
                end = max(end, s + c)
            }
        }
        return (end + 65535) / 65536 * 65536
    }
}

/// Whether this network namespace has a way out: a default route through
/// an interface other than loopback, in /proc/net/route (IPv4) or
/// /proc/net/ipv6_route.
enum RouteProbe {
    static func hasDefaultRoute() -> Bool {
        ipv4(readTextFile("/proc/net/route") ?? "") || ipv6(readTextFile("/proc/net/ipv6_route") ?? "")
    }

    /// `Iface Destination Gateway Flags ...`, a header line first;
    /// destination 0 with RTF_UP (1) is a default route.
    static func ipv4(_ table: String) -> Bool {
        table.split(separator: "\n").dropFirst().contains { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count > 3, f[0] != "lo", f[1] == "00000000", let flags = UInt32(f[3], radix: 16) else { return false }
            return flags & 1 != 0
        }
    }

    /// `dest prefixlen src srcprefixlen nexthop metric refcnt use flags
    /// iface`: ::/0 through an interface other than lo.
    static func ipv6(_ table: String) -> Bool {
        table.split(separator: "\n").contains { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 10, f[9] != "lo", f[0].allSatisfy({ $0 == "0" }), f[1] == "00",
                  let flags = UInt32(f[8], radix: 16) else { return false }
            return flags & 1 != 0
        }
    }
}
