#if canImport(Glibc)
import Glibc
#endif
import CNookSeccomp
import CNookSys
import NookSpec
import NookSupport

/// Root emulation for a sandbox with only the caller's own id (no
/// subordinate ids): answers the seccomp notifications of the calls in
/// `SeccompPolicy.emulatedForRoot` so that programs which change owners or
/// drop privileges (dpkg, apt's _apt sandbox, useradd, setpriv) work.
///
/// - chown and friends succeed without changing anything when their target
///   exists; nonexistent targets, bad descriptors and read-only mounts give
///   the errors the kernel would.
/// - setuid, setgid, setgroups and friends follow the kernel's rules (root
///   may set anything; others only switch among their real, effective and
///   saved ids), but only change a table kept here, per process; getuid,
///   getgroups and friends read that table back. A process without an
///   entry takes its nearest ancestor's (credentials survive fork and
///   exec); with none, the kernel answers.
///
/// Nothing here grants anything: every process stays the caller's one id.
/// Entries are keyed by process id and start time, so a reused pid never
/// inherits another's. Only the native architecture is emulated; 32-bit
/// programs get the kernel's answers.
final class RootEmulator {
    struct Credentials: Equatable {
        var uid: (real: UInt32, effective: UInt32, saved: UInt32, fs: UInt32)
        var gid: (real: UInt32, effective: UInt32, saved: UInt32, fs: UInt32)
        var groups: [UInt32]
        /// CAP_SETUID and CAP_SETGID as the kernel would have them now:
        /// lost when all three uids leave 0 without PR_SET_KEEPCAPS.
        var canSetUID = true
        var canSetGID = true
        var keepCaps = false

        static func == (a: Credentials, b: Credentials) -> Bool {
            a.uid == b.uid && a.gid == b.gid && a.groups == b.groups && a.canSetUID == b.canSetUID
                && a.canSetGID == b.canSetGID && a.keepCaps == b.keepCaps
        }
    }

    private var table: [Int32: (start: UInt64, credentials: Credentials)] = [:]
    private let nativeArch: UInt32

    /// The caller's own gid outside, the one gid the sandbox maps (to 0).
    let hostGID: UInt32

    init(hostGID: UInt32) {
        self.hostGID = hostGID
        #if arch(x86_64)
        nativeArch = 0xC000_003E  // AUDIT_ARCH_X86_64
        #elseif arch(arm64)
        nativeArch = 0xC000_00B7  // AUDIT_ARCH_AARCH64
        #else
        nativeArch = 0
        #endif
    }

    static let calls = Set(SeccompPolicy.emulatedForRoot)

    /// Answers one notification for an emulated call.
    func answer(_ n: nook_seccomp_notice, call: String, listener: Int32) {
        guard n.arch == nativeArch else {
            _ = nook_seccomp_notice_answer(listener, n.id, 0, 1)
            return
        }
        let args = withUnsafeBytes(of: n.args) { Array($0.bindMemory(to: UInt64.self)) }
        let pid = Int32(bitPattern: n.pid)
        // Everything read from /proc/PID is checked against the notice
        // before it is acted on: a caller killed meanwhile could have had
        // its pid reused by another process of the user.
        let valid = { nook_seccomp_notice_valid(listener, n.id) != 0 }
        let reply: Result<Int64, Errno>?
        switch call {
        case "chown", "lchown", "fchown", "fchownat":
            reply = changeOwner(call, pid: pid, args: args, valid: valid)
        case "prctl":  // PR_SET_KEEPCAPS only: noted, then done for real
            var c = credentials(of: pid) ?? initial(pid)
            c.keepCaps = args[1] != 0
            if valid() { store(c, for: pid) }
            reply = nil
        case "exit_group":
            handOn(from: pid)
            reply = nil
        case "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups":
            reply = read(call, pid: pid, args: args, valid: valid)
        default:
            reply = valid() ? change(call, pid: pid, args: args) : .failure(Errno(ESRCH))
        }
        switch reply {
        case nil: _ = nook_seccomp_notice_answer(listener, n.id, 0, 1)
        case .success(let value): _ = nook_seccomp_notice_reply(listener, n.id, value)
        case .failure(let err): _ = nook_seccomp_notice_answer(listener, n.id, err.rawValue, 0)
        }
    }

    /// A process with ids of its own is exiting: its children, about to be
    /// reparented (to the sandbox's init), keep the ids they inherited.
    func handOn(from pid: Int32) {
        guard !table.isEmpty else { return }
        let process = processID(of: pid)
        guard let own = credentials(of: process) else { return }
        for child in children(of: process) where table[child.pid]?.start != child.start {
            table[child.pid] = (child.start, own)
        }
    }

    func children(of pid: Int32) -> [(pid: Int32, start: UInt64)] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [(Int32, UInt64)] = []
        while let entry = readdir(dir) {
            let name = DirectoryEntry.name(entry)
            guard let child = Int32(name), let (start, parent) = startAndParent(child), parent == pid else { continue }
            out.append((child, start))
        }
        return out
    }

    // MARK: Owners

    /// chown family: success when the target exists and is writable as a
    /// mount, without changing it. Ids that are really mapped (only 0) or
    /// -1 go to the kernel unchanged.
    func changeOwner(_ call: String, pid: Int32, args: [UInt64], valid: () -> Bool) -> Result<Int64, Errno>? {
        let (uidArg, gidArg) = call == "fchownat" ? (args[2], args[3]) : (args[1], args[2])
        let none = UInt64(UInt32.max)
        let uid = uidArg & 0xFFFF_FFFF, gid = gidArg & 0xFFFF_FFFF
        if (uid == 0 || uid == none) && (gid == 0 || gid == none) { return nil }
        let target: Int32
        switch call {
        case "fchown":
            target = open("/proc/\(pid)/fd/\(Int32(truncatingIfNeeded: args[0]))", Int32(NOOK_O_PATH) | O_CLOEXEC)
            if target < 0 { return .failure(errno == ENOENT ? Errno(EBADF) : Errno.current) }
        default:
            let flags = call == "fchownat" ? Int32(truncatingIfNeeded: args[4]) : 0
            if flags & ~(AT_SYMLINK_NOFOLLOW | Int32(NOOK_AT_EMPTY_PATH)) != 0 { return .failure(Errno(EINVAL)) }
            let follow = call == "chown" || (call == "fchownat" && flags & AT_SYMLINK_NOFOLLOW == 0)
            let path: [UInt8]
            switch ProcessPaths.argument(pid: pid, address: call == "fchownat" ? args[1] : args[0]) {
            case .success(let p): path = p
            case .failure(let e): return .failure(e)
            }
            let dirfd = call == "fchownat" ? Int32(truncatingIfNeeded: args[0]) : AT_FDCWD
            if path.isEmpty {
                guard call == "fchownat", flags & Int32(NOOK_AT_EMPTY_PATH) != 0 else { return .failure(Errno(ENOENT)) }
                target = open("/proc/\(pid)/fd/\(dirfd)", Int32(NOOK_O_PATH) | O_CLOEXEC)
                if target < 0 { return .failure(Errno(EBADF)) }
            } else {
                switch ProcessPaths.open(pid: pid, dirfd: dirfd, path: path, follow: follow) {
                case .success(let fd): target = fd
                case .failure(let err): return .failure(err)
                }
            }
        }
        defer { close(target) }
        guard valid() else { return .failure(Errno(ESRCH)) }
        var vfs = statvfs()
        if fstatvfs(target, &vfs) == 0 && vfs.f_flag & UInt(ST_RDONLY) != 0 { return .failure(Errno(EROFS)) }
        return .success(0)
    }

    // MARK: Ids

    /// The credentials of a process: its own entry, else its nearest
    /// ancestor's (taken over as its own), else nil.
    func credentials(of pid: Int32) -> Credentials? {
        guard !table.isEmpty else { return nil }
        let process = processID(of: pid)
        var current = process
        var hops = 0
        var ownStart: UInt64?
        while current > 1 && hops < 1024 {
            guard let (start, parent) = startAndParent(current) else { return nil }
            if hops == 0 { ownStart = start }
            if let entry = table[current], entry.start == start {
                // Taken over now, so a later change of the ancestor's
                // does not reach a child that already forked.
                if hops > 0, let ownStart { table[process] = (ownStart, entry.credentials) }
                return entry.credentials
            }
            current = parent
            hops += 1
        }
        return nil
    }

    /// At most this many groups per process, and this many processes.
    static let maxGroups = 1024
    static let maxEntries = 4096

    func store(_ credentials: Credentials, for pid: Int32) {
        let process = processID(of: pid)
        guard let (start, _) = startAndParent(process) else { return }
        if table.count >= Self.maxEntries && table[process] == nil {
            prune()
            // Still full of live processes: the oldest lose their entries
            // (and are root again to themselves), a quarter at a time.
            if table.count >= Self.maxEntries {
                for pid in table.sorted(by: { $0.value.start < $1.value.start }).prefix(Self.maxEntries / 4).map(\.key) {
                    table[pid] = nil
                }
            }
        }
        table[process] = (start, credentials)
    }

    func read(_ call: String, pid: Int32, args: [UInt64], valid: () -> Bool = { true }) -> Result<Int64, Errno>? {
        guard let c = credentials(of: pid) else { return nil }
        guard valid() else { return .failure(Errno(ESRCH)) }
        switch call {
        case "getuid": return .success(Int64(c.uid.real))
        case "geteuid": return .success(Int64(c.uid.effective))
        case "getgid": return .success(Int64(c.gid.real))
        case "getegid": return .success(Int64(c.gid.effective))
        case "getresuid", "getresgid":
            let ids = call == "getresuid" ? [c.uid.real, c.uid.effective, c.uid.saved]
                : [c.gid.real, c.gid.effective, c.gid.saved]
            for (i, id) in ids.enumerated() {
                var value = id
                if nook_write_remote(pid, args[i], &value, 4) != 0 { return .failure(Errno(EFAULT)) }
            }
            return .success(0)
        default:  // getgroups
            let size = Int(Int32(truncatingIfNeeded: args[0]))
            if size == 0 { return .success(Int64(c.groups.count)) }
            guard size >= c.groups.count else { return .failure(Errno(EINVAL)) }
            var list = c.groups
            if !list.isEmpty, nook_write_remote(pid, args[1], &list, list.count * 4) != 0 {
                return .failure(Errno(EFAULT))
            }
            return .success(Int64(c.groups.count))
        }
    }

    /// set*id and setgroups, with the kernel's permission rules: with
    /// CAP_SETUID (CAP_SETGID) any id may be set; without, only one's own.
    func change(_ call: String, pid: Int32, args: [UInt64]) -> Result<Int64, Errno>? {
        var c = credentials(of: pid) ?? initial(pid)
        let before = c.uid
        let privileged = call.contains("uid") ? c.canSetUID : c.canSetGID
        let a = args.map { UInt32(truncatingIfNeeded: $0) }
        let unset = UInt32.max
        func own(_ id: UInt32, _ t: (real: UInt32, effective: UInt32, saved: UInt32, fs: UInt32)) -> Bool {
            id == t.real || id == t.effective || id == t.saved
        }
        switch call {
        case "setuid", "setgid":
            let isUID = call == "setuid"
            if a[0] == unset { return .failure(Errno(EINVAL)) }
            var t = isUID ? c.uid : c.gid
            if privileged {
                t = (a[0], a[0], a[0], a[0])
            } else if a[0] == t.real || a[0] == t.saved {
                t.effective = a[0]
                t.fs = a[0]
            } else {
                return .failure(Errno(EPERM))
            }
            if isUID { c.uid = t } else { c.gid = t }
        case "setreuid", "setregid":
            let isUID = call == "setreuid"
            var t = isUID ? c.uid : c.gid
            let (r, e) = (a[0], a[1])
            if !privileged {
                if r != unset && r != t.real && r != t.effective { return .failure(Errno(EPERM)) }
                if e != unset && !own(e, t) { return .failure(Errno(EPERM)) }
            }
            let oldReal = t.real
            if r != unset { t.real = r }
            if e != unset { t.effective = e }
            if r != unset || (e != unset && e != oldReal) { t.saved = t.effective }
            t.fs = t.effective
            if isUID { c.uid = t } else { c.gid = t }
        case "setresuid", "setresgid":
            let isUID = call == "setresuid"
            var t = isUID ? c.uid : c.gid
            if !privileged {
                for id in a[0..<3] where id != unset && !own(id, t) { return .failure(Errno(EPERM)) }
            }
            if a[0] != unset { t.real = a[0] }
            if a[1] != unset { t.effective = a[1] }
            if a[2] != unset { t.saved = a[2] }
            t.fs = t.effective
            if isUID { c.uid = t } else { c.gid = t }
        case "setfsuid", "setfsgid":
            let isUID = call == "setfsuid"
            var t = isUID ? c.uid : c.gid
            let old = t.fs
            if privileged || own(a[0], t) || a[0] == t.fs { t.fs = a[0] }
            if isUID { c.uid = t } else { c.gid = t }
            store(c, for: pid)
            return .success(Int64(old))
        default:  // setgroups
            guard privileged else { return .failure(Errno(EPERM)) }
            let count = Int(Int32(truncatingIfNeeded: args[0]))
            // The kernel takes 65536; nook keeps at most `maxGroups` per
            // process so that the sandbox cannot make nook's memory grow.
            guard count >= 0, count <= Self.maxGroups else { return .failure(Errno(EINVAL)) }
            var list = [UInt32](repeating: 0, count: count)
            if count > 0, nook_read_remote(pid, args[1], &list, count * 4) != 0 { return .failure(Errno(EFAULT)) }
            c.groups = list
        }
        // capabilities(7): leaving uid 0 for good drops every capability,
        // unless the process asked to keep them.
        let wasRoot = before.real == 0 || before.effective == 0 || before.saved == 0
        let isRoot = c.uid.real == 0 || c.uid.effective == 0 || c.uid.saved == 0
        if wasRoot && !isRoot && !c.keepCaps {
            c.canSetUID = false
            c.canSetGID = false
        }
        store(c, for: pid)
        return .success(0)
    }

    // MARK: /proc

    /// What a process without an entry really is: root (the one mapped id),
    /// in the groups it has, the caller's own shown as 0 and the rest as
    /// the overflow gid, as getgroups(2) inside shows them.
    func initial(_ pid: Int32) -> Credentials {
        var groups: [UInt32] = []
        var effective: UInt64 = ~0
        if let status = HostProbe.readTextFile("/proc/\(pid)/status") {
            for line in status.split(separator: "\n") {
                if line.hasPrefix("Groups:") {
                    groups = line.dropFirst(7).split(separator: " ").compactMap { UInt32($0) }
                        .map { $0 == hostGID ? 0 : 65534 }
                } else if line.hasPrefix("CapEff:") {
                    effective = UInt64(line.dropFirst(7).trimming(" \t"), radix: 16) ?? ~0
                }
            }
        }
        var c = Credentials(uid: (0, 0, 0, 0), gid: (0, 0, 0, 0), groups: groups)
        c.canSetUID = effective & (1 << 7) != 0  // CAP_SETUID
        c.canSetGID = effective & (1 << 6) != 0  // CAP_SETGID
        return c
    }

    /// The process (thread group) a thread belongs to.
    func processID(of tid: Int32) -> Int32 {
        guard let status = HostProbe.readTextFile("/proc/\(tid)/status") else { return tid }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).trimming(" \t")) ?? tid
        }
        return tid
    }

    /// A process's start time and parent, from /proc/PID/stat.
    func startAndParent(_ pid: Int32) -> (UInt64, Int32)? {
        guard let stat = HostProbe.readTextFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After the command name: state, ppid (field 4), ... starttime (22).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let parent = Int32(fields[1]), let start = UInt64(fields[19]) else { return nil }
        return (start, parent)
    }

    /// Drops entries of processes that are gone.
    func prune() {
        for (pid, entry) in table where startAndParent(pid)?.0 != entry.start {
            table[pid] = nil
        }
    }
}
