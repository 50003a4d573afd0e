#if canImport(Glibc)
import Glibc
#endif
import CNookSeccomp
import NookSpec
import NookSupport

/// `nook run --explain`: what the sandbox was refused, and why.
///
/// Only when asked, the seccomp filter is compiled with every refusing
/// action turned into a user notification (seccomp_unotify(2)); nook answers
/// each with the errno the policy gives, and counts it. Calls that write to a
/// path are notified too: nook looks at the path through /proc/PID/root and
/// lets the call go on unchanged, noting when its target lies on a read-only
/// mount or in the hidden home. Runs without --explain load the ordinary
/// filter and pay nothing.
///
/// Argument-conditioned refusals (terminal injection, namespace flags) live
/// in a second filter of the ordinary policy, and only one filter of a
/// process may have a listener; a refusal there (ERRNO) would also win over
/// the first filter's notification. So with --explain every call of such a
/// name is notified from the one filter, and nook compares the call's
/// arguments (registers, which the caller cannot change afterwards) with the
/// refusing rules itself: a match gets the rule's errno and is explained,
/// anything else goes on. Should nook die, the calls fail: never allowed.
public final class Explainer {
    /// Path-taking calls that write, with the argument indexes of
    /// (directory fd or nil, path) for each path they modify.
    static let pathCalls: [String: [(dirfd: Int?, path: Int)]] = [
        "open": [(nil, 0)], "openat": [(0, 1)], "openat2": [(0, 1)], "creat": [(nil, 0)],
        "mkdir": [(nil, 0)], "mkdirat": [(0, 1)], "rmdir": [(nil, 0)], "unlink": [(nil, 0)],
        "unlinkat": [(0, 1)], "rename": [(nil, 0), (nil, 1)], "renameat": [(0, 1), (2, 3)],
        "renameat2": [(0, 1), (2, 3)], "link": [(nil, 1)], "linkat": [(2, 3)], "symlink": [(nil, 1)],
        "symlinkat": [(1, 2)], "chmod": [(nil, 0)], "fchmodat": [(0, 1)], "fchmodat2": [(0, 1)],
        "chown": [(nil, 0)], "lchown": [(nil, 0)], "fchownat": [(0, 1)], "truncate": [(nil, 0)],
        "utimes": [(nil, 0)], "mknod": [(nil, 0)], "mknodat": [(0, 1)], "setxattr": [(nil, 0)],
        "lsetxattr": [(nil, 0)], "removexattr": [(nil, 0)], "lremovexattr": [(nil, 0)],
    ]

    /// Where the flags of open(2)-like calls are; only writing opens are notified.
    static let openFlags: [String: UInt32] = ["open": 1, "openat": 2]
    static let writeFlags: [UInt64] = [0o1, 0o2, 0o100, 0o1000]  // O_WRONLY, O_RDWR, O_CREAT, O_TRUNC

    /// The filter variant for --explain, and how to answer its notifications.
    public struct Variant {
        public var seccomp: Seccomp
        /// Errno per notified call name; calls missing here get `defaultErrno`.
        public var replies: [String: Int32]
        public var defaultErrno: Int32
        /// Where the profile's rules came from, to name the line to change.
        public var origins = RuleOrigins()
        /// The refusing rules with argument conditions, by call name:
        /// those calls are notified and compared here.
        public var conditional: [String: [SeccompRule]] = [:]
    }

    /// Turns a policy's refusals into notifications (see the type's comment).
    public static func variant(of seccomp: Seccomp) -> Variant {
        var out = seccomp
        var replies: [String: Int32] = [:]
        var defaultErrno: Int32 = 0
        if seccomp.defaultAction == "SCMP_ACT_ERRNO" {
            defaultErrno = Int32(seccomp.defaultErrnoRet ?? 1)
            out.defaultAction = "SCMP_ACT_NOTIFY"
            out.defaultErrnoRet = nil
        }
        // Only calls otherwise allowed outright ("allowed, except when"):
        // any other mix keeps its rules, and its second filter, unexplained.
        let allowed = Set((seccomp.syscalls ?? []).filter { $0.action == "SCMP_ACT_ALLOW" && ($0.args ?? []).isEmpty }
            .flatMap(\.names))
        var conditionalRefusals: [String: [SeccompRule]] = [:]
        for rule in seccomp.syscalls ?? [] where rule.action == "SCMP_ACT_ERRNO" && !(rule.args ?? []).isEmpty {
            for name in rule.names where allowed.contains(name) { conditionalRefusals[name, default: []].append(rule) }
        }
        var rules: [SeccompRule] = []
        for var rule in seccomp.syscalls ?? [] {
            let conditional = !(rule.args ?? []).isEmpty
            // Calls refused on a condition are notified whole (below).
            rule.names.removeAll { conditionalRefusals[$0] != nil }
            if rule.names.isEmpty { continue }
            if rule.action == "SCMP_ACT_ERRNO" && !conditional {
                for name in rule.names { replies[name] = Int32(rule.errnoRet ?? 1) }
                rule.action = "SCMP_ACT_NOTIFY"
                rule.errnoRet = nil
            } else if rule.action == "SCMP_ACT_ALLOW" && !conditional {
                rule.names.removeAll { pathCalls[$0] != nil }
                if rule.names.isEmpty { continue }
            }
            rules.append(rule)
        }
        // Calls another feature already sends to the listener (root
        // emulation) keep their rule; the supervisor gives them to it.
        let notified = Set(rules.filter { $0.action == "SCMP_ACT_NOTIFY" && ($0.args ?? []).isEmpty }.flatMap(\.names))
        for name in pathCalls.keys.sorted() where !notified.contains(name) {
            if let index = openFlags[name] {
                for flag in writeFlags {
                    rules.append(SeccompRule(names: [name], action: "SCMP_ACT_NOTIFY", args: [
                        SeccompArg(index: index, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ"),
                    ]))
                }
                let any = writeFlags.reduce(0, |)
                rules.append(SeccompRule(names: [name], action: "SCMP_ACT_ALLOW", args: [
                    SeccompArg(index: index, value: any, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ"),
                ]))
            } else {
                rules.append(SeccompRule(names: [name], action: "SCMP_ACT_NOTIFY"))
            }
        }
        for name in conditionalRefusals.keys.sorted() {
            rules.append(SeccompRule(names: [name], action: "SCMP_ACT_NOTIFY"))
        }
        out.syscalls = rules
        return Variant(seccomp: out, replies: replies, defaultErrno: defaultErrno, conditional: conditionalRefusals)
    }

    /// The first refusing rule whose conditions all hold for `args`, as
    /// the kernel would compare them.
    static func refusal(_ rules: [SeccompRule], args: [UInt64]) -> SeccompRule? {
        rules.first { rule in
            (rule.args ?? []).allSatisfy { a in
                guard Int(a.index) < args.count else { return false }
                let v = args[Int(a.index)]
                switch a.op {
                case "SCMP_CMP_NE": return v != a.value
                case "SCMP_CMP_LT": return v < a.value
                case "SCMP_CMP_LE": return v <= a.value
                case "SCMP_CMP_EQ": return v == a.value
                case "SCMP_CMP_GE": return v >= a.value
                case "SCMP_CMP_GT": return v > a.value
                case "SCMP_CMP_MASKED_EQ": return v & a.value == (a.valueTwo ?? 0)
                default: return true  // unknown: refused, as compile would have refused the policy
                }
            }
        }
    }

    static let namespaceNames: [UInt64: String] = [
        0x80: "CLONE_NEWTIME", 0x0002_0000: "CLONE_NEWNS", 0x0200_0000: "CLONE_NEWCGROUP",
        0x0400_0000: "CLONE_NEWUTS", 0x0800_0000: "CLONE_NEWIPC", 0x1000_0000: "CLONE_NEWUSER",
        0x2000_0000: "CLONE_NEWPID", 0x4000_0000: "CLONE_NEWNET",
    ]

    /// What a conditional rule refuses, in words.
    static func describe(_ name: String, _ rule: SeccompRule) -> String {
        let conditions = (rule.args ?? []).map { a -> String in
            if (name == "clone" || name == "unshare"), a.index == 0, a.op == "SCMP_CMP_MASKED_EQ",
               let flag = namespaceNames[a.value] {
                return flag
            }
            if SeccompPolicy.modeArguments.contains(where: { $0.name == name && $0.index == a.index }),
               a.op == "SCMP_CMP_MASKED_EQ", a.value == 0o4000 || a.value == 0o2000 {
                return a.value == 0o4000 ? "S_ISUID" : "S_ISGID"
            }
            if name == "ioctl", a.index == 1, a.op == "SCMP_CMP_MASKED_EQ" {
                switch a.valueTwo ?? 0 {
                case 0x5412: return "TIOCSTI"
                case 0x541C: return "TIOCLINUX"
                default: break
                }
            }
            let op = a.op.hasPrefix("SCMP_CMP_") ? String(a.op.dropFirst(9)).lowercased() : a.op
            return "argument \(a.index) \(op) 0x\(String(a.value, radix: 16))"
                + (a.valueTwo.map { " 0x\(String($0, radix: 16))" } ?? "")
        }
        return "\(name)(\(conditions.joined(separator: ", ")))"
    }

    let listener: Int32
    let variant: Variant
    private var counts: [String: Int] = [:]
    private var hints: [String: String] = [:]
    private var order: [String] = []

    /// `listener` belongs to the SeccompSupervisor that passes notices on.
    public init(listener: Int32, variant: Variant) {
        self.listener = listener
        self.variant = variant
    }

    /// Answers one notification: a refusal with its errno, counted; a
    /// writing path call goes on unchanged after a look at its target.
    func handle(_ notice: nook_seccomp_notice, name: String) {
        if let rules = variant.conditional[name] {
            let args = withUnsafeBytes(of: notice.args) { Array($0.bindMemory(to: UInt64.self)) }
            guard let rule = Explainer.refusal(rules, args: args) else {
                // Not refused: a writing call still gets its look below.
                if Explainer.pathCalls[name] != nil { inspectWrite(notice, name: name, args: args) }
                _ = nook_seccomp_notice_answer(listener, notice.id, 0, 1)
                return
            }
            let err = Int32(rule.errnoRet ?? 1)
            _ = nook_seccomp_notice_answer(listener, notice.id, err, 0)
            let what = Explainer.describe(name, rule)
            let why = name == "ioctl" ? "terminal input injection into the caller's terminal (CVE-2017-5226)"
                : (name == "clone" || name == "unshare") ? "new namespaces inside the sandbox"
                : SeccompPolicy.modeArguments.contains(where: { $0.name == name })
                    ? "setuid and setgid files while the sandbox can write host files (the workspace, a bind), where "
                        + "another user could run them as you"
                    : "this call with these arguments"
            let policy = variant.origins["security.seccomp"].map { "the policy set at \($0)" } ?? "nook's default policy"
            record("system call \(what): \(Errno(err).name)",
                   hint: "the seccomp policy refuses \(why) (\(policy)); to allow every \(name) call: "
                       + "--seccomp-allow \(name), or \"\(name)\" in [security] seccomp_allow of a profile")
            return
        }
        if Explainer.pathCalls[name] != nil {
            let args = withUnsafeBytes(of: notice.args) { Array($0.bindMemory(to: UInt64.self)) }
            inspectWrite(notice, name: name, args: args)
            _ = nook_seccomp_notice_answer(listener, notice.id, 0, 1)
            return
        }
        let err = variant.replies[name] ?? variant.defaultErrno
        _ = nook_seccomp_notice_answer(listener, notice.id, err, 0)
        var hint: String
        if variant.replies[name] == nil {
            hint = "not in the seccomp policy's allow list, so it answers as if the kernel lacked it"
        } else if err == ENOSYS {
            hint = "the seccomp policy answers ENOSYS on purpose, so programs fall back to older calls"
        } else {
            hint = "the seccomp policy refuses it"
        }
        let policy = variant.origins["security.seccomp"].map { "the policy set at \($0)" } ?? "nook's default policy"
        let list = variant.origins.origins.first { $0.key.hasPrefix("security.seccomp_allow:") }?.value
        hint += " (\(policy)); to allow it: --seccomp-allow \(name), or \"\(name)\" in [security] seccomp_allow"
            + (list.map { " (the list at \($0))" } ?? " of a profile")
        record("system call \(name): \(Errno(err).name)", hint: hint)
    }

    /// Looks at the paths of a path-taking call that writes (an open only
    /// with a writing flag: one notified whole for a conditional refusal
    /// may only read).
    func inspectWrite(_ notice: nook_seccomp_notice, name: String, args: [UInt64]) {
        if let index = Explainer.openFlags[name], Int(index) < args.count,
           args[Int(index)] & Explainer.writeFlags.reduce(0, |) == 0 {
            return
        }
        for (dirfd, path) in Explainer.pathCalls[name] ?? [] { inspect(notice, call: name, dirfd: dirfd, path: path) }
    }

    /// Looks at a path a call is about to write and records why the write
    /// will fail, when it will because of the sandbox's view.
    func inspect(_ n: nook_seccomp_notice, call: String, dirfd: Int?, path: Int) {
        let args = withUnsafeBytes(of: n.args) { Array($0.bindMemory(to: UInt64.self)) }
        let pid = Int32(bitPattern: n.pid)
        guard case .success(let bytes) = ProcessPaths.argument(pid: pid, address: args[path]), !bytes.isEmpty,
              nook_seccomp_notice_valid(listener, n.id) != 0 else { return }
        let at = dirfd.map { Int32(truncatingIfNeeded: args[$0]) } ?? AT_FDCWD
        // Resolved inside the process's root, as the call will be: an
        // absolute symlink made in the sandbox never leads to the host's.
        var fd: Int32 = -1
        if case .success(let f) = ProcessPaths.open(pid: pid, dirfd: at, path: bytes, follow: false) {
            fd = f
        } else if let slash = bytes.lastIndex(of: 47) {
            let parent = slash == bytes.startIndex ? [UInt8]([47]) : Array(bytes[..<slash])
            if case .success(let f) = ProcessPaths.open(pid: pid, dirfd: at, path: parent, follow: true) { fd = f }
        } else if case .success(let f) = ProcessPaths.open(pid: pid, dirfd: at, path: [46], follow: true) {
            fd = f
        }
        guard fd >= 0 else { return }
        defer { close(fd) }
        var vfs = statvfs()
        guard fstatvfs(fd, &vfs) == 0, nook_seccomp_notice_valid(listener, n.id) != 0 else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let base = text.hasPrefix("/") ? "" : (at == AT_FDCWD ? "/proc/\(pid)/cwd" : "/proc/\(pid)/fd/\(at)")
        let inside = insidePath(pid: n.pid, base: base, text: text)
        if vfs.f_flag & UInt(ST_RDONLY) != 0 {
            let (what, hint) = describe(inside, pid: n.pid)
            record("write to \(inside): read-only (\(what))", hint: hint)
        }
    }

    func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// The path as the sandbox names it.
    func insidePath(pid: UInt32, base: String, text: String) -> String {
        if text.hasPrefix("/") { return text }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(base, &buf, buf.count - 1)
        let dir = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
        return dir == "/" ? "/" + text : dir + "/" + text
    }

    /// What the mount holding `path` is, from the sandbox's mountinfo.
    func describe(_ path: String, pid: UInt32) -> (String, String) {
        let info = HostProbe.readTextFile("/proc/\(pid)/mountinfo") ?? ""
        var best = ("/", "", "")
        for line in info.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = f.firstIndex(of: "-"), f.count > dash + 2, f.count > 4 else { continue }
            let point = String(f[4])
            let covers = point == "/" || path == point || path.hasPrefix(point + "/")
            if covers && point.count >= best.0.count { best = (point, String(f[dash + 1]), String(f[dash + 2])) }
        }
        let (point, type, source) = best
        let dir = parent(path)
        let origins = variant.origins
        if let rule = origins.covering("filesystem.hidden", path) {
            return ("hidden by the profile: [filesystem] hidden \(rule.path) at \(rule.origin)",
                    "to see and write it, remove \(rule.path) from hidden there and bind what is needed")
        }
        if let rule = origins.covering("filesystem.read_only", path) {
            return ("made read-only by the profile: [filesystem] read_only \(rule.path) at \(rule.origin)",
                    "to write there, remove \(rule.path) from read_only there")
        }
        if type == "tmpfs" && source == "nook-root" {
            return ("the sandbox's own root",
                    "only mount points can be added there: --bind DIR:\(path) or --tmpfs \(path)")
        }
        if type == "tmpfs" && point != "/" {
            let home = origins["filesystem.home"].map { "; the profile sets [filesystem] home at \($0)" } ?? ""
            // A bind needs a source that exists (a fresh try was told to
            // bind a file the program had yet to make).
            var sb = stat()
            let target = lstat(path, &sb) == 0 ? path : dir
            return ("an empty read-only tmpfs over \(point), which hides the host's",
                    "to give the program your real one, bind it: --bind \(target):\(target)"
                        + (target == path ? " (or its directory)" : "")
                        + ", or home = \"scratch\" in [filesystem] for a writable empty one\(home)")
        }
        let where_ = origins.origins.keys.contains { $0.hasPrefix("filesystem.") } ? " (or tmpfs/binds in the profile's [filesystem])" : ""
        return ("the host's \(point), seen read-only",
                "to keep what is written: --bind DIR:\(dir); for scratch space that hides all the host has in "
                    + "\(dir): --tmpfs \(dir)\(where_)")
    }

    func record(_ what: String, hint: String) {
        if counts[what] == nil { order.append(what) }
        counts[what, default: 0] += 1
        hints[what] = hint
    }

    /// The summary printed when the sandbox ends.
    public var summary: String {
        guard !order.isEmpty else { return "nook: explain: nothing was refused\n" }
        var text = "nook: explain: the sandbox was refused:\n"
        for what in order.prefix(40) {
            let count = counts[what] ?? 1
            text += "  \(what)\(count > 1 ? " (\(count) times)" : "")\n"
            if let hint = hints[what] { text += "      \(hint)\n" }
        }
        if order.count > 40 { text += "  ... and \(order.count - 40) more\n" }
        return text
    }
}

/// Owns the seccomp listener and gives each notification to whoever asked
/// for it: root emulation for the calls it answers, --explain for the rest.
final class SeccompSupervisor {
    let listener: Int32
    let explainer: Explainer?
    let emulator: RootEmulator?

    init(listener: Int32, explainer: Explainer?, emulator: RootEmulator?) {
        self.listener = listener
        self.explainer = explainer
        self.emulator = emulator
    }

    deinit { close(listener) }

    /// A call's name. x32 calls come with x86_64's audit arch and bit 30
    /// set in the number: named by the number without it (a fresh try saw
    /// "--seccomp-allow syscall 1073742096" in a hint).
    static func name(arch: UInt32, nr: Int32) -> String {
        func lookup(_ n: Int32) -> String? {
            var buf = [CChar](repeating: 0, count: 64)
            guard nook_seccomp_syscall_name(arch, n, &buf, Int32(buf.count)) == 0 else { return nil }
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if let name = lookup(nr) { return name }
        let x32Bit: Int32 = 0x4000_0000
        if nr & x32Bit != 0, let name = lookup(nr & ~x32Bit) { return name }
        return "syscall \(nr)"
    }

    /// Answers one pending notification. False when the listener is done.
    func handle() -> Bool {
        var notice = nook_seccomp_notice()
        let r = nook_seccomp_notice_receive(listener, &notice)
        if r == -ENOENT || r == -EINTR { return true }
        guard r == 0 else { return false }
        let name = SeccompSupervisor.name(arch: notice.arch, nr: notice.nr)
        if let emulator, RootEmulator.calls.contains(name) || name == "prctl" {
            emulator.answer(notice, call: name, listener: listener)
        } else if let explainer {
            explainer.handle(notice, name: name)
        } else {
            _ = nook_seccomp_notice_answer(listener, notice.id, 0, 1)
        }
        return true
    }
}
