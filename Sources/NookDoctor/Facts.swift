// What nook doctor looks at, gathered once from the host as plain values,
// so that the checks (Checks.swift) are pure functions a test can feed.

#if canImport(Glibc)
import Glibc
#endif
import CNookProbe
import CNookSubid
import NookCgroups
import NookSpec
import NookSupport

/// How a namespace probe went.
public struct ProbeResult: Equatable, Sendable {
    public var ok: Bool
    /// The step that failed (`unshare(CLONE_NEWUSER)`, `mount overlay`, ...).
    public var step: String?
    public var errno: Errno?

    public init(ok: Bool, step: String? = nil, errno: Errno? = nil) {
        self.ok = ok
        self.step = step
        self.errno = errno
    }

    public static let passed = ProbeResult(ok: true)
}

/// One line of /etc/subuid or /etc/subgid.
public struct SubidEntry: Equatable, Sendable {
    /// A user name or a numeric uid, as written.
    public var owner: String
    public var start: UInt64
    public var count: UInt64

    public init(owner: String, start: UInt64, count: UInt64) {
        self.owner = owner
        self.start = start
        self.count = count
    }

    public var end: UInt64 { start + count - 1 }
}

/// newuidmap or newgidmap as found on PATH.
public struct HelperFacts: Equatable, Sendable {
    public var path: String
    public var setuidRoot: Bool
    /// File capabilities that matter: cap_setuid for newuidmap, cap_setgid
    /// for newgidmap, in the permitted set.
    public var hasCapability: Bool
    /// On a filesystem mounted nosuid: both of the above are ignored.
    public var nosuidMount: Bool

    public init(path: String, setuidRoot: Bool, hasCapability: Bool, nosuidMount: Bool) {
        self.path = path
        self.setuidRoot = setuidRoot
        self.hasCapability = hasCapability
        self.nosuidMount = nosuidMount
    }
}

/// /dev/fuse as this user meets it.
public struct FuseDeviceFacts: Equatable, Sendable {
    public var exists: Bool
    public var isFuseDevice: Bool
    /// open(O_RDWR) failed with this.
    public var openError: Errno?
    public var mode: UInt32
    public var owner: UInt32

    public init(exists: Bool, isFuseDevice: Bool = true, openError: Errno? = nil, mode: UInt32 = 0o666,
                owner: UInt32 = 0) {
        self.exists = exists
        self.isFuseDevice = isFuseDevice
        self.openError = openError
        self.mode = mode
        self.owner = owner
    }
}

public struct DoctorFacts: Equatable, Sendable {
    public var user: String
    public var uid: UInt32
    public var kernel: String
    public var osName: String?
    public var path: String

    // User namespaces and what blocks them.
    public var maxUserNamespaces: Int?
    public var unprivilegedUsernsClone: Int?
    public var apparmorEnabled: Bool
    /// kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10 and later).
    public var apparmorRestrictsUserns: Bool
    /// This process's AppArmor label: `unconfined`, `nook (unconfined)`.
    public var apparmorLabel: String?
    public var apparmorProfilePath: String?
    public var executable: String
    public var userns: ProbeResult
    public var overlay: ProbeResult

    // Ids.
    public var subuidRanges: [IDRange]
    public var subgidRanges: [IDRange]
    public var subuidEntries: [SubidEntry]
    public var subgidEntries: [SubidEntry]
    /// Users of /etc/passwd: name and uid.
    public var accounts: [String: UInt32]
    /// A "subid:" line of nsswitch.conf (a directory service), if any.
    public var subidService: String?
    public var newuidmap: HelperFacts?
    public var newgidmap: HelperFacts?

    // FUSE.
    public var fuse: FuseDeviceFacts
    public var fuseOverlayfs: String?

    // Cgroups and the user manager.
    public var cgroups: CgroupHost
    public var userBus: ManagerAttempt
    public var privateSocket: ManagerAttempt
    /// Controllers the user manager's units can use (cgroup.controllers of
    /// its cgroup); nil without a manager.
    public var managerControllers: Set<String>?
    public var linger: Bool

    // XDG_RUNTIME_DIR.
    public var runtimeDir: String?
    public var runtimeDirExists: Bool
    public var runtimeDirOwner: UInt32?
    public var runtimeDirMode: UInt32?

    public init(user: String, uid: UInt32, kernel: String = "6.1.0", path: String = "/usr/bin:/bin") {
        self.user = user
        self.uid = uid
        self.kernel = kernel
        self.path = path
        apparmorEnabled = false
        apparmorRestrictsUserns = false
        executable = "/usr/bin/nook"
        userns = .passed
        overlay = .passed
        subuidRanges = []
        subgidRanges = []
        subuidEntries = []
        subgidEntries = []
        accounts = [:]
        fuse = FuseDeviceFacts(exists: true)
        cgroups = CgroupHost(v2Mount: "/sys/fs/cgroup")
        userBus = ManagerAttempt(address: "unix:path=/run/user/\(uid)/bus", problem: "ENOENT")
        privateSocket = ManagerAttempt(address: "unix:path=/run/user/\(uid)/systemd/private", problem: "ENOENT")
        linger = false
        runtimeDirExists = false
    }

    /// The user manager's answer, over either way.
    public var manager: ManagerAttempt? {
        userBus.version != nil ? userBus : privateSocket.version != nil ? privateSocket : nil
    }
}

/// Gathers DoctorFacts from this host, for this user.
public enum DoctorProbe {
    public static func gather(environment: [String: String]) -> DoctorFacts {
        let uid = getuid()
        let user = accountName(uid) ?? String(uid)
        var f = DoctorFacts(user: user, uid: uid, kernel: kernelRelease(), path: environment["PATH"] ?? "")
        f.osName = osRelease()

        f.maxUserNamespaces = readInt("/proc/sys/user/max_user_namespaces")
        f.unprivilegedUsernsClone = readInt("/proc/sys/kernel/unprivileged_userns_clone")
        f.apparmorEnabled = read("/sys/module/apparmor/parameters/enabled")?.hasPrefix("Y") ?? false
        f.apparmorRestrictsUserns = readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1
        f.apparmorLabel = (read("/proc/self/attr/apparmor/current") ?? read("/proc/self/attr/current"))?
            .trimming(" \n\0")
        f.apparmorProfilePath = ["/etc/apparmor.d/nook", "/etc/apparmor.d/usr.bin.nook"].first { access($0, F_OK) == 0 }
        f.executable = readLink("/proc/self/exe") ?? "nook"
        f.userns = probe(nook_probe_userns)
        f.overlay = f.userns.ok ? probe(nook_probe_overlay) : ProbeResult(ok: false, step: "user namespace")

        f.subuidRanges = ranges(user, gid: false)
        f.subgidRanges = ranges(user, gid: true)
        f.subuidEntries = parseSubid(read("/etc/subuid") ?? "")
        f.subgidEntries = parseSubid(read("/etc/subgid") ?? "")
        f.accounts = parsePasswd(read("/etc/passwd") ?? "")
        f.subidService = (read("/etc/nsswitch.conf") ?? "").split(separator: "\n")
            .first { $0.hasPrefix("subid:") }.map { $0.trimming(" \t") }
        f.newuidmap = helper("newuidmap", capability: 7, path: f.path)
        f.newgidmap = helper("newgidmap", capability: 6, path: f.path)

        f.fuse = fuseDevice()
        f.fuseOverlayfs = findProgram("fuse-overlayfs", path: f.path)

        f.cgroups = CgroupHost.probe()
        f.userBus = UserManagerProbe.attempt(privateSocket: false)
        f.privateSocket = UserManagerProbe.attempt(privateSocket: true)
        if let group = f.manager?.controlGroup, let dir = f.cgroups.directory(of: group) {
            f.managerControllers = CgroupHost.controllers(of: dir) ?? []
        }
        f.linger = access("/var/lib/systemd/linger/\(user)", F_OK) == 0

        f.runtimeDir = environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        if let dir = f.runtimeDir {
            var sb = stat()
            if stat(dir, &sb) == 0, (sb.st_mode & S_IFMT) == S_IFDIR {
                f.runtimeDirExists = true
                f.runtimeDirOwner = sb.st_uid
                f.runtimeDirMode = sb.st_mode & 0o7777
            }
        }
        return f
    }

    static func probe(_ run: (UnsafeMutablePointer<Int32>) -> Int32) -> ProbeResult {
        var step: Int32 = 0
        let rc = run(&step)
        guard rc != 0 else { return .passed }
        let names: [Int32: String] = [
            Int32(NOOK_PROBE_STEP_FORK.rawValue): "fork",
            Int32(NOOK_PROBE_STEP_USERNS.rawValue): "unshare(CLONE_NEWUSER)",
            Int32(NOOK_PROBE_STEP_SETGROUPS.rawValue): "write /proc/self/setgroups",
            Int32(NOOK_PROBE_STEP_UID_MAP.rawValue): "write /proc/self/uid_map",
            Int32(NOOK_PROBE_STEP_GID_MAP.rawValue): "write /proc/self/gid_map",
            Int32(NOOK_PROBE_STEP_PRIVATE.rawValue): "make / private",
            Int32(NOOK_PROBE_STEP_TMPFS.rawValue): "mount tmpfs",
            Int32(NOOK_PROBE_STEP_MKDIR.rawValue): "mkdir",
            Int32(NOOK_PROBE_STEP_OVERLAY.rawValue): "mount overlay",
        ]
        return ProbeResult(ok: false, step: names[step] ?? "step \(step)", errno: Errno(-rc))
    }

    static func read(_ path: String) -> String? { readTextFile(path, limit: 1 << 20) }

    static func readInt(_ path: String) -> Int? { read(path).flatMap { Int($0.trimming(" \n")) } }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func kernelRelease() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "?" }
        return withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// `Ubuntu 24.04`, from /etc/os-release.
    static func osRelease() -> String? {
        var fields: [String: String] = [:]
        for line in (read("/etc/os-release") ?? "").split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = line[line.index(after: eq)...].trimming("\"")
        }
        guard let name = fields["NAME"] else { return nil }
        return fields["VERSION_ID"].map { "\(name) \($0)" } ?? name
    }

    static func accountName(_ uid: uid_t) -> String? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return String(cString: pwd.pw_name)
    }

    static func ranges(_ owner: String, gid: Bool) -> [IDRange] {
        var buf = [nook_subid_range](repeating: nook_subid_range(), count: 64)
        let n = nook_subid_ranges(owner, gid ? 1 : 0, &buf, Int32(buf.count))
        guard n > 0 else { return [] }
        return IDRange.merged(buf.prefix(Int(min(n, 64))).compactMap { r in
            guard r.count > 0, r.start <= UInt(UInt32.max), r.count <= UInt(UInt32.max) else { return nil }
            return IDRange(start: UInt32(r.start), count: UInt32(r.count))
        })
    }

    public static func parseSubid(_ text: String) -> [SubidEntry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count == 3, !line.hasPrefix("#"), let start = UInt64(f[1]), let count = UInt64(f[2]), count > 0 else {
                return nil
            }
            return SubidEntry(owner: String(f[0]), start: start, count: count)
        }
    }

    public static func parsePasswd(_ text: String) -> [String: UInt32] {
        var out: [String: UInt32] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count >= 3, let uid = UInt32(f[2]) { out[String(f[0])] = uid }
        }
        return out
    }

    static func findProgram(_ name: String, path: String) -> String? {
        for dir in path.split(separator: ":") where dir.hasPrefix("/") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// The helper on PATH and whether it can do its job: setuid root or the
    /// file capability `capability` (CAP_SETUID 7, CAP_SETGID 6), on a
    /// mount that honours them.
    static func helper(_ name: String, capability: Int, path: String) -> HelperFacts? {
        guard let found = findProgram(name, path: path) else { return nil }
        var sb = stat()
        guard stat(found, &sb) == 0 else { return nil }
        let setuid = sb.st_uid == 0 && (sb.st_mode & S_ISUID) != 0
        let hasCap = nook_file_capability(found, Int32(capability)) == 1
        var vfs = statvfs()
        let nosuid = statvfs(found, &vfs) == 0 && (vfs.f_flag & UInt(ST_NOSUID)) != 0
        return HelperFacts(path: found, setuidRoot: setuid, hasCapability: hasCap, nosuidMount: nosuid)
    }

    static func fuseDevice() -> FuseDeviceFacts {
        var sb = stat()
        guard stat("/dev/fuse", &sb) == 0 else { return FuseDeviceFacts(exists: false) }
        let isChar = (sb.st_mode & S_IFMT) == S_IFCHR
        // makedev(10, 229): the misc device FUSE registers.
        let major = (sb.st_rdev >> 8) & 0xfff, minor = (sb.st_rdev & 0xff) | ((sb.st_rdev >> 12) & 0xfff00)
        var facts = FuseDeviceFacts(exists: true, isFuseDevice: isChar && major == 10 && minor == 229,
                                    mode: UInt32(sb.st_mode & 0o7777), owner: sb.st_uid)
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd) } else { facts.openError = Errno.current }
        return facts
    }
}
