/// What the user asked for, from flags (and, later, profiles), before it is
/// compiled into a Spec. Every field is optional so that layers can be
/// merged: a value that is nil was not asked for and takes the default.
public struct SandboxRequest: Equatable, Sendable {
    public var command: [String]?
    public var userns: UsernsMode?
    /// The payload's uid and gid inside; nil: 0 in root mode, the
    /// caller's own in keep-id mode.
    public var uid: UInt32?
    public var gid: UInt32?
    public var network: NetworkMode?
    /// Ports published on the host (pasta and slirp4netns only).
    public var publish: [PortMapping] = []
    /// MTU, IPv6, address and host loopback for pasta and slirp4netns.
    public var networkOptions = NetworkOptions()
    public var hostname: String?
    public var binds: [BindMount] = []
    public var tmpfs: [TmpfsMount] = []
    public var workdir: String?
    /// `K=V` sets, `K` copies from the caller's environment.
    public var env: [String] = []
    public var envFiles: [String] = []
    public var clearEnv: Bool?
    public var terminal: Bool?
    public var interactive: Bool?
    public var preserveFds: Int?
    public var capAdd: [String] = []
    public var capDrop: [String] = []
    public var seccomp: SeccompMode?
    /// System calls allowed beyond the default policy (their argument
    /// checks, such as clone's namespace flags, go too).
    public var seccompAllow: [String] = []
    public var rlimits: [Rlimit] = []
    public var umask: UInt32?
    /// Bind the current directory read-write as the working directory (the
    /// host-root default); false leaves it out.
    public var bindWorkspace: Bool?
    /// Resource limits for the sandbox's cgroup.
    public var limits = ResourceLimits()
    public var cgroupManager: CgroupManagerChoice?
    /// The systemd slice for the sandbox's scope: nook.slice (nil) or one
    /// nested in it, `nook-ci.slice`.
    public var cgroupSlice: String?
    /// A directory to use as the root instead of the host's.
    public var rootfs: String?
    /// An image of the store to run (name, id or id prefix).
    public var image: String?
    /// Replaces the image's Entrypoint (and then its Cmd too, as docker does).
    public var entrypoint: [String]?
    /// `user[:group]`, by name (looked up in the root's /etc/passwd and
    /// /etc/group) or number: whom the command runs as inside.
    public var user: String?
    /// With a single-id map (no subordinate ids) on a root of its own, as
    /// root: chown, setuid/setgid and setgroups report success and change
    /// nothing, so package managers work. nil: on; false: off.
    public var rootEmulation: Bool?
    /// No writable layer over a directory or image root.
    public var readOnly: Bool?
    public var overlay: OverlayChoice?
    /// Keep the writable layer between runs under this name.
    public var persist: String?
    /// Record what the sandbox is refused (system calls, writes to read-only
    /// or hidden paths) and summarize it at exit.
    public var explain: Bool?
    /// Paths that show as empty: a directory as an empty read-only tmpfs
    /// (mounts below it still appear), a file as an empty file.
    public var hiddenPaths: [String] = []
    /// Paths made read-only, with everything mounted below them, after
    /// every other mount (so a read-only path inside a bind holds).
    public var readOnlyPaths: [String] = []
    /// The top-level entries of the host's root the sandbox sees (`usr`,
    /// `etc`, ...); every other top-level directory is empty. nil: all.
    public var hostEntries: [String]?
    /// Variables removed from the environment the sandbox inherits; `env`
    /// and env files can still set them.
    public var unsetEnv: [String] = []
    /// What the caller's home directory looks like inside.
    public var home: HomeMode?
    /// A detached container's health check.
    public var health = HealthRequest()
    /// Made for a detached container (a monitor), where a health check runs.
    public var detached = false

    public init() {}

    /// This request with `top` laid over it: `top`'s scalars win where
    /// set, lists add to this one's, and a capability or limit `top` names
    /// overrides what this request said about it. Profile, then flags.
    public func overlaid(by top: SandboxRequest) -> SandboxRequest {
        var r = self
        r.command = top.command ?? command
        r.userns = top.userns ?? userns
        r.uid = top.uid ?? uid
        r.gid = top.gid ?? gid
        r.network = top.network ?? network
        r.publish += top.publish.filter { !publish.contains($0) }
        r.networkOptions = networkOptions.overlaid(by: top.networkOptions)
        r.hostname = top.hostname ?? hostname
        r.binds += top.binds
        r.tmpfs += top.tmpfs
        r.workdir = top.workdir ?? workdir
        r.env += top.env
        r.envFiles += top.envFiles
        r.clearEnv = top.clearEnv ?? clearEnv
        r.terminal = top.terminal ?? terminal
        r.interactive = top.interactive ?? interactive
        r.preserveFds = top.preserveFds ?? preserveFds
        // An added capability undoes a drop below it, and the reverse:
        // the resolver applies every drop after every add.
        let added = Set(top.capAdd.map(Self.capabilityKey))
        let dropped = Set(top.capDrop.map(Self.capabilityKey))
        r.capDrop = capDrop.filter { !added.contains(Self.capabilityKey($0)) } + top.capDrop
        r.capAdd = capAdd.filter { !dropped.contains(Self.capabilityKey($0)) } + top.capAdd
        r.seccomp = top.seccomp ?? seccomp
        r.seccompAllow += top.seccompAllow.filter { !seccompAllow.contains($0) }
        let types = Set(top.rlimits.map(\.type))
        r.rlimits = rlimits.filter { !types.contains($0.type) } + top.rlimits
        r.umask = top.umask ?? umask
        r.bindWorkspace = top.bindWorkspace ?? bindWorkspace
        r.limits = limits.overlaid(by: top.limits)
        r.cgroupManager = top.cgroupManager ?? cgroupManager
        r.cgroupSlice = top.cgroupSlice ?? cgroupSlice
        r.hiddenPaths += top.hiddenPaths.filter { !hiddenPaths.contains($0) }
        r.readOnlyPaths += top.readOnlyPaths.filter { !readOnlyPaths.contains($0) }
        r.hostEntries = top.hostEntries ?? hostEntries
        r.unsetEnv += top.unsetEnv
        r.home = top.home ?? home
        r.overlay = top.overlay ?? overlay
        r.readOnly = top.readOnly ?? readOnly
        r.rootfs = top.rootfs ?? rootfs
        r.image = top.image ?? image
        r.entrypoint = top.entrypoint ?? entrypoint
        r.user = top.user ?? user
        r.rootEmulation = top.rootEmulation ?? rootEmulation
        r.persist = top.persist ?? persist
        r.explain = top.explain ?? explain
        r.health = health.overlaid(by: top.health)
        return r
    }

    static func capabilityKey(_ name: String) -> String {
        let upper = name.uppercased()
        return upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
    }
}

/// The caller's home directory inside the sandbox.
public enum HomeMode: String, Sendable, CaseIterable {
    /// An empty, read-only tmpfs: nothing of the real home shows.
    case empty
    /// An empty tmpfs the payload owns and may write; gone at exit.
    case scratch
}


/// An image as resolving needs it: what it asks for, where its layers are,
/// and its /etc/passwd and /etc/group (read from the layers, never through
/// a link), to resolve user names.
public struct ImageContext: Sendable {
    public var name: String
    public var id: String
    public var config: ImageConfig
    /// Layer directories, lowest first.
    public var layers: [String]
    public var passwd: String?
    public var group: String?

    public init(name: String, id: String, config: ImageConfig, layers: [String], passwd: String? = nil,
                group: String? = nil) {
        self.name = name
        self.id = id
        self.config = config
        self.layers = layers
        self.passwd = passwd
        self.group = group
    }
}

/// Where the settings a sandbox was refused by came from, so that
/// --explain can name the line to change: keys such as
/// `security.seccomp` or `filesystem.hidden:/srv/data`, to "file:line".
public struct RuleOrigins: Equatable, Sendable {
    public var origins: [String: String] = [:]
    public init(_ origins: [String: String] = [:]) { self.origins = origins }

    public subscript(_ key: String) -> String? { origins[key] }

    /// The nearest origin of a path-valued rule (`filesystem.hidden`, ...)
    /// that covers `path`: the rule's path itself or one of its parents.
    public func covering(_ key: String, _ path: String) -> (path: String, origin: String)? {
        origins.filter { $0.key.hasPrefix(key + ":") }
            .map { (String($0.key.dropFirst(key.count + 1)), $0.value) }
            .filter { path == $0.0 || path.hasPrefix($0.0 + "/") }
            .max { $0.0.count < $1.0.count }
    }
}

/// A limit value where "max" (no limit) is distinct from every number, so
/// that "unlimited" can never be read as 0 or 1 (podman#29422).
public enum LimitValue: Equatable, Sendable, CustomStringConvertible {
    case max
    case value(UInt64)

    public var description: String {
        switch self {
        case .max: "max"
        case .value(let v): String(v)
        }
    }
}

/// The cgroup limits a sandbox asks for; nil means not asked.
public struct ResourceLimits: Equatable, Sendable {
    /// Bytes.
    public var memory: LimitValue?
    public var memorySwap: LimitValue?
    public var memoryHigh: LimitValue?
    public var pids: LimitValue?
    /// CPUs worth of time, 1.5 = 150% of one CPU; `.infinity` is max, no
    /// limit (asked for to lift a profile's).
    public var cpus: Double?
    /// 1..10000 (cgroup v2 cpu.weight).
    public var cpuWeight: UInt64?
    /// 1..10000 (cgroup v2 io.weight).
    public var ioWeight: UInt64?
    /// A cpuset list, "0-3,6".
    public var allowedCPUs: String?
    /// Names of limits (memory, pids, ...) the sandbox must not start without.
    public var required: Set<String> = []

    public init() {}

    /// These limits with `top`'s set values laid over them; `required` adds.
    public func overlaid(by top: ResourceLimits) -> ResourceLimits {
        var r = self
        r.memory = top.memory ?? memory
        r.memorySwap = top.memorySwap ?? memorySwap
        r.memoryHigh = top.memoryHigh ?? memoryHigh
        r.pids = top.pids ?? pids
        r.cpus = top.cpus ?? cpus
        r.cpuWeight = top.cpuWeight ?? cpuWeight
        r.ioWeight = top.ioWeight ?? ioWeight
        r.allowedCPUs = top.allowedCPUs ?? allowedCPUs
        r.required.formUnion(top.required)
        return r
    }

    public var isEmpty: Bool {
        memory == nil && memorySwap == nil && memoryHigh == nil && pids == nil && cpus == nil && cpuWeight == nil
            && ioWeight == nil && allowedCPUs == nil
    }
}

/// How the writable layer over a directory or image root is made.
public enum OverlayChoice: String, Sendable, CaseIterable {
    /// Kernel overlayfs when it works here, else fuse-overlayfs, else none.
    case auto
    /// Kernel overlayfs inside the user namespace (Linux 5.11+).
    case native
    /// The fuse-overlayfs program.
    case fuse
    /// No writable layer: the root is read-only.
    case none
}

public enum CgroupManagerChoice: String, Sendable, CaseIterable {
    case auto, systemd, cgroupfs, none
}

public enum UsernsMode: String, Sendable, CaseIterable {
    /// The caller is uid 0 inside; subordinate ids are 1..N.
    case root
    /// The caller keeps their own uid and gid inside; subordinate ids fill
    /// the rest, so files written to bound directories belong to them.
    case keepID = "keep-id"
}

public enum NetworkMode: String, Sendable, CaseIterable {
    /// A network namespace with only the loopback interface, up.
    case none
    /// The host's network namespace.
    case host
    /// A network namespace of its own, connected to the outside by pasta
    /// (Debian's passt package): outbound connections leave through the
    /// host's sockets, published ports are bound on the host.
    case pasta
    /// The same through slirp4netns (a TCP/IP stack in user space).
    case slirp4netns

    /// Modes that start a helper program for the sandbox's network.
    public var usesHelper: Bool { self == .pasta || self == .slirp4netns }
}

public enum SeccompMode: String, Sendable, CaseIterable {
    case `default`
    /// No filter at all. For debugging what the filter blocks.
    case unconfined
}

public struct BindMount: Equatable, Sendable {
    public var source: String
    public var destination: String
    public var readOnly: Bool
    public init(source: String, destination: String, readOnly: Bool) {
        self.source = source
        self.destination = destination
        self.readOnly = readOnly
    }
}

public struct TmpfsMount: Equatable, Sendable {
    public var destination: String
    /// Extra tmpfs options: `size=64m`, `mode=1777`.
    public var options: [String]
    public init(destination: String, options: [String] = []) {
        self.destination = destination
        self.options = options
    }
}

/// A range of subordinate ids: `start` on the host, `count` of them.
public struct IDRange: Equatable, Sendable, CustomStringConvertible {
    public var start: UInt32
    public var count: UInt32
    public init(start: UInt32, count: UInt32) {
        self.start = start
        self.count = count
    }
    public var description: String { "\(start)-\(UInt64(start) + UInt64(count) - 1) (\(count) ids)" }

    /// The same ids with overlapping and touching ranges joined, in order:
    /// the kernel refuses an id map whose host ranges overlap, and
    /// /etc/subuid may give one user the same ids twice (two useradd
    /// runs). newuidmap accepts a range that spans several of the user's.
    public static func merged(_ ranges: [IDRange]) -> [IDRange] {
        var out: [(start: UInt64, end: UInt64)] = []
        for r in ranges.sorted(by: { $0.start < $1.start }) where r.count > 0 {
            let start = UInt64(r.start), end = UInt64(r.start) + UInt64(r.count)
            if let last = out.last, start <= last.end {
                out[out.count - 1].end = max(last.end, end)
            } else {
                out.append((start, end))
            }
        }
        // Ids end below 2^32 - 1 (which means "no id"); so does a join.
        return out.compactMap { r in
            let end = min(r.end, UInt64(UInt32.max))
            return end > r.start ? IDRange(start: UInt32(r.start), count: UInt32(end - r.start)) : nil
        }
    }
}

/// Facts about the host and the caller that resolving needs, gathered
/// before resolving so that resolving itself is pure and testable.
public struct HostContext: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var userName: String
    public var home: String
    public var cwd: String
    public var environment: [String: String]
    public var uidRanges: [IDRange]
    public var gidRanges: [IDRange]
    /// Where the ranges came from, for --verbose.
    public var rangeSource: String = "libsubid"
    /// Why ids cannot be mapped beyond the caller's own (no ranges, no
    /// newuidmap), with the fix; nil when they can.
    public var idmapUnavailable: String?
    public var nativeArch: String
    public var terminalSize: ConsoleSize?
    /// $XDG_DATA_HOME (or ~/.local/share).
    public var dataHome: String = "/nonexistent"
    /// Where this sandbox's generated files (/etc/hosts, ...) go on the host.
    public var sandboxDir: String = "/nonexistent"
    /// The running kernel's version, (major, minor).
    public var kernel: (Int, Int) = (6, 6)
    /// fuse-overlayfs on PATH, if any.
    public var fuseOverlayfs: String?
    /// nook's own state on the host ($XDG_RUNTIME_DIR/nook, the data and
    /// config directories): hidden in every sandbox that could reach it,
    /// since a sandbox that could write there could weaken later ones.
    public var protectedPaths: [String] = []
    /// The caller's home directories as real paths (the passwd entry's and
    /// $HOME, symlinks resolved), to hide. Empty: take home and $HOME as they are.
    public var homePaths: [String] = []
    /// Why a bind source could not be reached (path -> errno), when it exists
    /// but cannot be seen (EACCES).
    public var sourceErrors: [String: Int32] = [:]
    /// /etc/passwd and /etc/group of the --rootfs directory, to resolve --user.
    public var rootfsPasswd: String?
    public var rootfsGroup: String?
    /// The image to run, found in the store by the caller.
    public var image: ImageContext?
    /// Owner (host uid, gid) of the --rootfs directory.
    public var rootfsOwner: (uid: UInt32, gid: UInt32)?
    /// The host's /etc/resolv.conf, for --network host, pasta and slirp4netns.
    public var resolvConf: String?
    /// The host's /etc/resolv.conf is a regular file (not a symlink), so a
    /// host-root sandbox can have nook's own bound over it.
    public var resolvConfIsFile = true
    /// The helper programs on PATH, if installed: pasta and slirp4netns.
    public var pasta: String?
    public var slirp4netns: String?
    /// The host has a default route (IPv4 or IPv6) through an interface
    /// other than loopback. pasta copies its addresses and routes from
    /// that interface, and the pasta of Debian 12 refuses to start
    /// without one ("No external routable interface").
    public var hasRouteOut = true
    /// Files the env files named, already read: path -> contents.
    public var envFileContents: [String: String]
    /// Whether each bind source is a directory (true), a file (false);
    /// missing sources are absent.
    public var sourceIsDirectory: [String: Bool]
    /// The top-level entries of the host's "/": name -> is a directory
    /// (symbolic links are left out: they are copied, never bound).
    public var rootEntries: [String: Bool] = [:]

    public init(uid: UInt32, gid: UInt32, userName: String, home: String, cwd: String,
                environment: [String: String], uidRanges: [IDRange] = [], gidRanges: [IDRange] = [],
                idmapUnavailable: String? = nil, nativeArch: String = "x86_64", terminalSize: ConsoleSize? = nil,
                envFileContents: [String: String] = [:], sourceIsDirectory: [String: Bool] = [:]) {
        self.uid = uid
        self.gid = gid
        self.userName = userName
        self.home = home
        self.cwd = cwd
        self.environment = environment
        self.uidRanges = uidRanges
        self.gidRanges = gidRanges
        self.idmapUnavailable = idmapUnavailable
        self.nativeArch = nativeArch
        self.terminalSize = terminalSize
        self.envFileContents = envFileContents
        self.sourceIsDirectory = sourceIsDirectory
    }
}
