import CNookLaunch
import FoundationEssentials
import NookSpec
import NookSupport

/// One step of assembling the root, as the C launcher will carry it out.
public struct PlannedOp: Equatable, Sendable {
    public enum Kind: Int32, Sendable {
        case mountFS = 1, bind, symlink, mkdir, remount, mask, setattr
    }
    public var kind: Kind
    public var source: String
    public var destination: String
    public var options: [String] = []
    public var attributes: UInt64 = 0
    public var recursive = false
    public var optional = false
    public var file = false
    public var create = true
    /// A symlink at the destination is removed first (in a writable root).
    public var replaceLink = false
    /// A symlink at the destination skips the op (an optional one).
    public var skipLink = false
    public var mode: UInt32 = 0o755
    public var uid: Int64 = -1
    public var gid: Int64 = -1

    /// What the op does, for error messages: `bind /src on /dst`.
    public var summary: String {
        switch kind {
        case .mountFS: "mount \(source) on \(destination)"
        case .bind: "bind \(source) on \(destination)"
        case .symlink: "symlink \(destination) -> \(source)"
        case .mkdir: "directory \(destination)"
        case .remount: "read-only \(destination)"
        case .mask: "mask \(destination)"
        case .setattr: "make \(destination) read-only"
        }
    }
}

/// Everything the launcher needs, as plain values: the Spec taken apart.
public struct LaunchPlan: Equatable, Sendable {
    public var cloneFlags: UInt64 = 0
    public var cgroupNamespace = false
    public var networkNamespace = false
    /// The helper that connects the network namespace (pasta, slirp4netns).
    public var network: NetworkPlan?
    public var hostname: String?
    public enum RootKind: UInt32, Sendable {
        /// The caller's own root, unchanged.
        case none = 0
        /// A skeleton of read-only binds of the host's top-level entries.
        case host = 1
        /// A directory, bound.
        case directory = 2
        /// Kernel overlayfs over lowerDirs.
        case overlay = 3
        /// fuse-overlayfs over lowerDirs, started by the host.
        case fuse = 4
    }
    /// Overlay lower layers, topmost first.
    public var lowerDirs: [String] = []
    /// The persistent writable layer's name; nil for an ephemeral one.
    public var persist: String?
    /// An overlay without a writable layer (a read-only image of several layers).
    public var readOnlyOverlay = false
    /// Show the layers' owners shifted for keep-id (fuse-overlayfs uidmapping).
    public var idShift = false
    /// The image the layers are, when they are one: its name and id (a
    /// persistent layer records what it was made over).
    public var imageName: String?
    public var imageID: String?
    /// Supplementary groups to set (images); nil leaves the caller's.
    public var additionalGids: [UInt32]?
    public var rootKind = RootKind.host
    public var rootIsHost: Bool { rootKind == .host }
    public var rootPath = "/"
    /// Exec the payload without an init (no pid namespace).
    public var direct = false
    /// Start the payload in a session of its own (always, for sandboxes).
    public var newSession = true
    /// nook exec: a pidfd of a running container's process whose
    /// namespaces the command joins (no new ones, no id maps, no root).
    public var joinPidfd: Int32?
    public var joinNamespaces: UInt64 = 0
    public var rootAttributes: UInt64 = 0
    /// The host-root skeleton tmpfs's options.
    public var rootOptions: [String] = []
    /// Top-level host entries not bound because a mount replaces them.
    public var rootSkip: [String] = []
    public var ops: [PlannedOp] = []
    public var args: [String] = []
    public var env: [String] = []
    public var cwd = "/"
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var umask: UInt32 = 0o022
    public var terminal = false
    public var rows: UInt16 = 24
    public var cols: UInt16 = 80
    public var rlimits: [(resource: Int32, soft: UInt64, hard: UInt64)] = []
    public var noNewPrivileges = true
    public var uidMappings: [IDMapping] = []
    public var gidMappings: [IDMapping] = []

    public static func == (a: LaunchPlan, b: LaunchPlan) -> Bool {
        a.ops == b.ops && a.args == b.args && a.cloneFlags == b.cloneFlags && a.cwd == b.cwd
    }
}

/// A spec nook cannot run, naming the field.
public struct PlanFailure: NookFailure {
    public let message: String
    public let hint: String?
    init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
    public var description: String { message }
}

public enum Planner {
    static let namespaceFlags: [String: UInt64] = [
        "user": 0x1000_0000, "mount": 0x0002_0000, "pid": 0x2000_0000, "ipc": 0x0800_0000,
        "uts": 0x0400_0000, "network": 0x4000_0000,
    ]

    static let attributeOptions: [String: UInt64] = [
        "ro": NOOK_ATTR_RDONLY, "nosuid": NOOK_ATTR_NOSUID, "nodev": NOOK_ATTR_NODEV, "noexec": NOOK_ATTR_NOEXEC,
        "noatime": NOOK_ATTR_NOATIME, "nodiratime": NOOK_ATTR_NODIRATIME, "nosymfollow": NOOK_ATTR_NOSYMFOLLOW,
    ]
    /// Options that name the default or a propagation nook does not offer.
    static let ignoredOptions: Set<String> = [
        "rw", "suid", "dev", "exec", "relatime", "strictatime", "atime", "diratime", "private", "rprivate",
        "slave", "rslave", "bind", "rbind",
    ]

    public static let rlimitNumbers: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
        "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
        "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
        "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]

    /// Takes the spec apart. `isDirectory` answers for bind sources on the
    /// host (nil: missing), so that a file is bound onto a file.
    public static func plan(_ spec: Spec, isDirectory: (String) -> Bool?) throws -> LaunchPlan {
        var plan = LaunchPlan()
        guard let process = spec.process else { throw PlanFailure("the spec has no process") }
        guard let root = spec.root else { throw PlanFailure("the spec has no root") }
        let linux = spec.linux ?? Linux()

        for ns in linux.namespaces ?? [] {
            if ns.path != nil {
                throw PlanFailure("joining an existing \(ns.type) namespace is not supported yet",
                                  hint: "remove linux.namespaces[].path")
            }
            if ns.type == "cgroup" {
                plan.cgroupNamespace = true
            } else if let flag = namespaceFlags[ns.type] {
                plan.cloneFlags |= flag
            } else {
                throw PlanFailure("unknown namespace type \(ns.type)")
            }
        }
        guard plan.cloneFlags & namespaceFlags["user"]! != 0, plan.cloneFlags & namespaceFlags["mount"]! != 0 else {
            throw PlanFailure("nook runs without privileges and needs a user and a mount namespace")
        }
        plan.networkNamespace = plan.cloneFlags & namespaceFlags["network"]! != 0
        plan.hostname = spec.hostname
        plan.uidMappings = linux.uidMappings ?? []
        plan.gidMappings = linux.gidMappings ?? []
        guard !plan.uidMappings.isEmpty, !plan.gidMappings.isEmpty else {
            throw PlanFailure("the spec maps no uids or gids", hint: "linux.uidMappings and gidMappings are required")
        }

        let annotations = spec.annotations ?? [:]
        plan.network = try NetworkPlan.from(annotations)
        if plan.network != nil && !plan.networkNamespace {
            throw PlanFailure("annotation \(Annotation.network) needs a network namespace of the sandbox's own",
                              hint: "add {\"type\": \"network\"} to linux.namespaces")
        }
        plan.rootPath = root.path
        if annotations[Annotation.root] == "host" {
            plan.rootKind = .host
            if root.readonly == true { plan.rootAttributes = NOOK_ATTR_RDONLY | NOOK_ATTR_NOSUID | NOOK_ATTR_NODEV }
        } else {
            // setuid files of an image keep working (no_new_privs still
            // stops them raising privileges); device files never do.
            plan.rootAttributes = NOOK_ATTR_NODEV | (root.readonly == true ? NOOK_ATTR_RDONLY : 0)
            switch annotations[Annotation.overlay] ?? "none" {
            case "native", "fuse":
                plan.rootKind = annotations[Annotation.overlay] == "fuse" ? .fuse : .overlay
                plan.lowerDirs = try lowerDirs(annotations[Annotation.lowerDirs], root: root.path)
                let upper = annotations[Annotation.upper] ?? "tmpfs"
                plan.readOnlyOverlay = upper == "none"
                plan.persist = upper == "tmpfs" || upper == "none" ? nil : upper
                plan.idShift = annotations[Annotation.idShift] == "keep-id"
                plan.imageName = annotations[Annotation.image]
                plan.imageID = annotations[Annotation.imageID]
            case "none":
                plan.rootKind = .directory
            default:
                throw PlanFailure("writable layer \(annotations[Annotation.overlay] ?? "") is not supported yet")
            }
        }
        if plan.rootIsHost {
            guard root.readonly == true else {
                throw PlanFailure("the host's root can only be seen read-only", hint: "set root.readonly to true")
            }
            let rootMapped = plan.uidMappings.contains { $0.containerID == 0 }
                && plan.gidMappings.contains { $0.containerID == 0 }
            plan.rootOptions = ["source=nook-root", "mode=0755"] + (rootMapped ? ["uid=0", "gid=0"] : [])
            plan.rootSkip = (spec.mounts ?? []).compactMap { m in
                let parts = m.destination.split(separator: "/")
                return parts.count == 1 ? String(parts[0]) : nil
            }
        }

        var devTmpfs = false
        var devpts = false
        var readOnlyLater: [PlannedOp] = []
        for mount in spec.mounts ?? [] {
            var op = try op(for: mount, isDirectory: isDirectory)
            if op.replaceLink && plan.rootKind == .directory && root.readonly == true {
                // A read-only root cannot take new files: where the image has
                // no such file, or a link, it keeps what it has.
                op.replaceLink = false
                op.skipLink = true
                op.optional = true
                op.create = false
            }
            // A read-only filesystem is mounted writable and made read-only
            // once the mount points of what is mounted below it exist.
            if op.kind == .mountFS && op.attributes & NOOK_ATTR_RDONLY != 0 {
                op.attributes &= ~NOOK_ATTR_RDONLY
                var later = PlannedOp(kind: .setattr, source: mount.destination, destination: mount.destination)
                later.attributes = NOOK_ATTR_RDONLY
                later.create = false
                readOnlyLater.append(later)
            }
            plan.ops.append(op)
            if mount.destination == "/dev" && mount.type == "tmpfs" { devTmpfs = true }
            if mount.destination == "/dev/pts" && mount.type == "devpts" { devpts = true }
        }
        if devTmpfs {
            let userDestinations = Set((spec.mounts ?? []).map(\.destination))
            // A mount the spec puts at a device's place (--bind x:/dev/null) wins.
            for device in linux.devices ?? [] where !userDestinations.contains(device.path) {
                // Rootless, a node cannot be made (mknod needs the initial
                // user namespace): the host's own node is bound instead.
                var bind = PlannedOp(kind: .bind, source: device.path, destination: device.path)
                bind.file = true
                bind.attributes = NOOK_ATTR_NOSUID | NOOK_ATTR_NOEXEC
                plan.ops.append(bind)
            }
            var links = [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
                         ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2")]
            if devpts { links.append(("/dev/ptmx", "pts/ptmx")) }
            for (path, target) in links {
                plan.ops.append(PlannedOp(kind: .symlink, source: target, destination: path))
            }
        }
        if annotations[Annotation.createWorkdir] == "true", let cwd = spec.process?.cwd, cwd != "/" {
            var dir = PlannedOp(kind: .mkdir, source: "", destination: cwd)
            dir.mode = 0o755
            plan.ops.append(dir)
        }
        plan.ops += readOnlyLater
        for path in linux.maskedPaths ?? [] {
            var mask = PlannedOp(kind: .mask, source: "/dev/null", destination: path)
            mask.optional = true
            mask.create = false
            plan.ops.append(mask)
        }
        for path in linux.readonlyPaths ?? [] {
            var ro = PlannedOp(kind: .remount, source: path, destination: path)
            // /proc's own read-only parts also lose exec; a read-only path of
            // the user's (a project's .git) keeps running its scripts, as a
            // :ro bind does (a fresh try found its hooks refused).
            ro.attributes = NOOK_ATTR_RDONLY | NOOK_ATTR_NOSUID | NOOK_ATTR_NODEV
                | (Resolver.defaultReadonlyPaths.contains(path) ? NOOK_ATTR_NOEXEC : 0)
            ro.optional = true
            ro.create = false
            plan.ops.append(ro)
        }

        guard !process.args.isEmpty, !process.args[0].isEmpty else { throw PlanFailure("process.args is empty") }
        plan.args = process.args
        plan.env = process.env ?? []
        plan.cwd = process.cwd
        plan.uid = process.user.uid
        plan.gid = process.user.gid
        // With only your own ids mapped, setgroups is denied: the groups
        // you have stay (as nobody), as they would without an image.
        if IDMapWriter.setgroupsAllowed(uids: plan.uidMappings, gids: plan.gidMappings) {
            plan.additionalGids = process.user.additionalGids
        }
        plan.umask = process.user.umask ?? 0o022
        plan.terminal = process.terminal ?? false
        if let size = process.consoleSize, size.height > 0, size.width > 0 {
            plan.rows = size.height
            plan.cols = size.width
        }
        plan.noNewPrivileges = process.noNewPrivileges ?? true
        for limit in process.rlimits ?? [] {
            guard let number = rlimitNumbers[limit.type] else {
                throw PlanFailure("unknown rlimit \(limit.type)", hint: "names are RLIMIT_NOFILE, RLIMIT_NPROC, ...")
            }
            guard limit.soft <= limit.hard else {
                throw PlanFailure("rlimit \(limit.type): soft limit \(limit.soft) is above the hard limit \(limit.hard)")
            }
            plan.rlimits.append((number, limit.soft, limit.hard))
        }
        return plan
    }

    /// The layer list of the lowerdir annotation (a JSON array of paths).
    static func lowerDirs(_ text: String?, root: String) throws -> [String] {
        guard let text else { return [root] }
        guard let dirs = try? JSONDecoder().decode([String].self, from: Data(text.utf8)), !dirs.isEmpty,
              dirs.allSatisfy({ $0.hasPrefix("/") }) else {
            throw PlanFailure("annotation \(Annotation.lowerDirs) is not a JSON array of absolute paths: \(text)")
        }
        return dirs
    }

    /// Files nook generates (/etc/hosts and friends) replace a symlink the
    /// image has there, inside a writable root: the link is unlinked in the
    /// sandbox's layer, never followed.
    static let generatedDestinations: Set<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]

    static func op(for mount: Mount, isDirectory: (String) -> Bool?) throws -> PlannedOp {
        let options = mount.options ?? []
        let isBind = mount.type == "bind" || options.contains("bind") || options.contains("rbind")
        var attributes: UInt64 = 0
        var fsOptions: [String] = []
        for option in options {
            if let attr = attributeOptions[option] {
                attributes |= attr
            } else if !ignoredOptions.contains(option) {
                if isBind {
                    throw PlanFailure("mount \(mount.destination): option \(option) does not apply to a bind mount")
                }
                fsOptions.append(option)
            }
        }
        guard mount.destination.hasPrefix("/") else {
            throw PlanFailure("mount destination \(mount.destination) is not absolute")
        }
        if isBind {
            guard let source = mount.source, source.hasPrefix("/") else {
                throw PlanFailure("bind mount on \(mount.destination) needs an absolute source")
            }
            guard let directory = isDirectory(source) else {
                throw PlanFailure("bind source \(source) does not exist", hint: "create it, or fix the path")
            }
            var op = PlannedOp(kind: .bind, source: source, destination: mount.destination)
            op.recursive = options.contains("rbind") || (mount.type == "bind" && !options.contains("bind"))
            op.replaceLink = generatedDestinations.contains(mount.destination)
            op.attributes = attributes
            op.file = !directory
            return op
        }
        guard let type = mount.type, !type.isEmpty else {
            throw PlanFailure("mount \(mount.destination) has no type")
        }
        var op = PlannedOp(kind: .mountFS, source: type, destination: mount.destination)
        // The source names the mount in /proc/self/mountinfo, as mount(8) would.
        if let source = mount.source, !source.isEmpty, !fsOptions.contains(where: { $0.hasPrefix("source=") }) {
            fsOptions.insert("source=\(source)", at: 0)
        }
        op.options = fsOptions
        op.attributes = attributes
        return op
    }
}
