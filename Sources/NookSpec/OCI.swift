// The OCI runtime specification's config.json (opencontainers/runtime-spec
// 1.2, config.md and config-linux.md) as Codable values: nook's internal
// representation of "what to run". Profiles, flags and image configs are
// compiled into it; only the fields nook reads or writes are modelled.

/// A whole config.json.
public struct Spec: Codable, Equatable, Sendable {
    public var ociVersion: String = "1.2.0"
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var mounts: [Mount]?
    public var linux: Linux?
    public var annotations: [String: String]?

    public init() {}
}

/// The payload: what runs, as whom, with what.
public struct Process: Codable, Equatable, Sendable {
    public var terminal: Bool?
    public var consoleSize: ConsoleSize?
    public var user: User
    public var args: [String]
    public var env: [String]?
    public var cwd: String
    public var capabilities: Capabilities?
    public var rlimits: [Rlimit]?
    public var noNewPrivileges: Bool?

    public init(user: User, args: [String], env: [String]?, cwd: String) {
        self.user = user
        self.args = args
        self.env = env
        self.cwd = cwd
    }
}

public struct ConsoleSize: Codable, Equatable, Sendable {
    public var height: UInt16
    public var width: UInt16
    public init(height: UInt16, width: UInt16) {
        self.height = height
        self.width = width
    }
}

public struct User: Codable, Equatable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32?
    public var additionalGids: [UInt32]?
    public init(uid: UInt32, gid: UInt32, umask: UInt32? = nil) {
        self.uid = uid
        self.gid = gid
        self.umask = umask
    }
}

/// Capability names as the spec writes them, `CAP_NET_RAW`.
public struct Capabilities: Codable, Equatable, Sendable {
    public var bounding: [String]?
    public var effective: [String]?
    public var inheritable: [String]?
    public var permitted: [String]?
    public var ambient: [String]?
    public init(bounding: [String], effective: [String], inheritable: [String], permitted: [String], ambient: [String]) {
        self.bounding = bounding
        self.effective = effective
        self.inheritable = inheritable
        self.permitted = permitted
        self.ambient = ambient
    }
}

public struct Rlimit: Codable, Equatable, Sendable {
    /// `RLIMIT_NOFILE` and so on.
    public var type: String
    public var hard: UInt64
    public var soft: UInt64
    public init(type: String, hard: UInt64, soft: UInt64) {
        self.type = type
        self.hard = hard
        self.soft = soft
    }
}

public struct Root: Codable, Equatable, Sendable {
    public var path: String
    public var readonly: Bool?
    public init(path: String, readonly: Bool?) {
        self.path = path
        self.readonly = readonly
    }
}

public struct Mount: Codable, Equatable, Sendable {
    public var destination: String
    public var type: String?
    public var source: String?
    public var options: [String]?
    public init(destination: String, type: String?, source: String?, options: [String]?) {
        self.destination = destination
        self.type = type
        self.source = source
        self.options = options
    }
}

public struct Linux: Codable, Equatable, Sendable {
    public var uidMappings: [IDMapping]?
    public var gidMappings: [IDMapping]?
    public var namespaces: [Namespace]?
    public var devices: [Device]?
    public var seccomp: Seccomp?
    public var maskedPaths: [String]?
    public var readonlyPaths: [String]?
    /// Limits for the sandbox's cgroup (config-linux.md#control-groups).
    public var resources: LinuxResources?
    public init() {}
}

/// One line of /proc/PID/uid_map: `containerID hostID size`.
public struct IDMapping: Codable, Equatable, Sendable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32
    public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
        self.containerID = containerID
        self.hostID = hostID
        self.size = size
    }
}

public struct Namespace: Codable, Equatable, Sendable {
    /// `user`, `mount`, `pid`, `ipc`, `uts`, `cgroup`, `network`.
    public var type: String
    public var path: String?
    public init(type: String, path: String? = nil) {
        self.type = type
        self.path = path
    }
}

/// A device node in /dev. Rootless, nook bind-mounts the host's node; it
/// cannot mknod in a user namespace.
public struct Device: Codable, Equatable, Sendable {
    public var path: String
    public var type: String
    public var major: Int64
    public var minor: Int64
    public var fileMode: UInt32?
    public init(path: String, type: String, major: Int64, minor: Int64, fileMode: UInt32? = 0o666) {
        self.path = path
        self.type = type
        self.major = major
        self.minor = minor
        self.fileMode = fileMode
    }
}

public struct Seccomp: Codable, Equatable, Sendable {
    /// `SCMP_ACT_ERRNO`, `SCMP_ACT_ALLOW`, ...
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    /// `SCMP_ARCH_X86_64`, ...
    public var architectures: [String]?
    public var syscalls: [SeccompRule]?
    public init(defaultAction: String, defaultErrnoRet: UInt32?, architectures: [String]?, syscalls: [SeccompRule]?) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.syscalls = syscalls
    }
}

public struct SeccompRule: Codable, Equatable, Sendable {
    public var names: [String]
    public var action: String
    public var errnoRet: UInt32?
    public var args: [SeccompArg]?
    public init(names: [String], action: String, errnoRet: UInt32? = nil, args: [SeccompArg]? = nil) {
        self.names = names
        self.action = action
        self.errnoRet = errnoRet
        self.args = args
    }
}

public struct SeccompArg: Codable, Equatable, Sendable {
    public var index: UInt32
    public var value: UInt64
    public var valueTwo: UInt64?
    /// `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, ...
    public var op: String
    public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
        self.index = index
        self.value = value
        self.valueTwo = valueTwo
        self.op = op
    }
}

/// Annotation keys nook writes into a spec.
public enum Annotation {
    /// `host` when the root is the caller's own "/", seen read-only.
    public static let root = "org.nook.root"
    /// `root` or `keep-id`.
    public static let userns = "org.nook.userns"
    /// Why the id mapping is a single id, when it is.
    public static let idmapFallback = "org.nook.idmap.fallback"
}
