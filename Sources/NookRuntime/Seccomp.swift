#if canImport(Glibc)
import Glibc
#endif
import CNookSeccomp
import NookSpec
import NookSupport

/// A seccomp section that libseccomp refused, naming the rule.
public struct SeccompFailure: NookFailure {
    public let message: String
    public var description: String { "seccomp: \(message)" }
}

/// Compiles an OCI seccomp section into classic BPF programs with
/// libseccomp, in the host, before clone.
///
/// libseccomp lets an unconditional rule win over conditional rules of the
/// same call, so "allow ioctl, except TIOCSTI" cannot be one filter. Rules
/// that deny on a condition go into a second filter whose default is allow;
/// the kernel runs both and takes the stricter verdict, which gives the
/// meaning a reader expects from the rule list.
public enum SeccompFilters {
    public static var nativeArch: String { String(cString: nook_seccomp_native_arch()) }

    /// Whether libseccomp knows a system call of that name (on any ABI).
    public static func knows(_ name: String) -> Bool { nook_seccomp_syscall_number(name) >= 0 }

    /// BPF programs (8-byte instructions) to load in order; empty for no filter.
    public static func compile(_ seccomp: Seccomp?) throws -> [[UInt8]] {
        guard let seccomp else { return [] }
        let (kind, err) = try action(seccomp.defaultAction, seccomp.defaultErrnoRet, what: "defaultAction")
        let rules = seccomp.syscalls ?? []
        let refusing: Set<String> = ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
        func conditionalDenial(_ r: SeccompRule) -> Bool { refusing.contains(r.action) && !(r.args ?? []).isEmpty }
        let conditionalDenials = rules.filter(conditionalDenial)
        let main = rules.filter { !conditionalDenial($0) }

        var programs = [try build(defaultKind: kind, defaultErrno: err, rules: main, arches: seccomp.architectures)]
        if !conditionalDenials.isEmpty {
            programs.append(try build(defaultKind: Int32(NOOK_SC_ALLOW.rawValue), defaultErrno: 0,
                                      rules: conditionalDenials, arches: seccomp.architectures))
        }
        return programs
    }

    static func build(defaultKind: Int32, defaultErrno: Int32, rules: [SeccompRule], arches: [String]?) throws
        -> [UInt8]
    {
        guard let filter = nook_seccomp_create(defaultKind, defaultErrno) else {
            throw SeccompFailure(message: "cannot create a filter: \(Errno.current)")
        }
        defer { nook_seccomp_release(filter) }
        for arch in arches ?? [] {
            let name = arch.hasPrefix("SCMP_ARCH_") ? String(arch.dropFirst(10)).lowercased() : arch.lowercased()
            let r = nook_seccomp_add_arch(filter, name)
            guard r == 0 || r == -EEXIST else {
                throw SeccompFailure(message: "unknown architecture \(arch)")
            }
        }
        for rule in rules {
            let (kind, err) = try action(rule.action, rule.errnoRet, what: "rule for \(rule.names.joined(separator: ","))")
            let args = try (rule.args ?? []).map { arg throws -> nook_seccomp_arg in
                guard let op = operators[arg.op] else {
                    throw SeccompFailure(message: "unknown operator \(arg.op) in the rule for \(rule.names.joined(separator: ","))")
                }
                return nook_seccomp_arg(index: arg.index, op: op, value: arg.value, value2: arg.valueTwo ?? 0)
            }
            // libseccomp refuses a rule that repeats the default action, with
            // or without conditions; it would change nothing.
            if kind == defaultKind && err == defaultErrno { continue }
            for name in rule.names {
                let r = args.withUnsafeBufferPointer { buf in
                    nook_seccomp_add_rule(filter, name, kind, err, buf.baseAddress, Int32(buf.count))
                }
                // A call this libseccomp does not know cannot be named in a
                // filter; the default action answers for it.
                if r == -ENOENT { continue }
                guard r == 0 else {
                    throw SeccompFailure(message: "rule for \(name): \(Errno(-r))")
                }
            }
        }
        var program: UnsafeMutableRawPointer?
        var count = 0
        let r = nook_seccomp_export(filter, &program, &count)
        guard r == 0, let program else { throw SeccompFailure(message: "cannot compile the filter: \(Errno(-r))") }
        defer { free(program) }
        return Array(UnsafeRawBufferPointer(start: program, count: count * 8))
    }

    static let operators: [String: UInt32] = [
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
    ]

    static func action(_ name: String, _ errnoRet: UInt32?, what: String) throws -> (Int32, Int32) {
        switch name {
        case "SCMP_ACT_ALLOW": return (Int32(NOOK_SC_ALLOW.rawValue), 0)
        case "SCMP_ACT_ERRNO": return (Int32(NOOK_SC_ERRNO.rawValue), Int32(errnoRet ?? UInt32(EPERM)))
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS": return (Int32(NOOK_SC_KILL_PROCESS.rawValue), 0)
        case "SCMP_ACT_LOG": return (Int32(NOOK_SC_LOG.rawValue), 0)
        case "SCMP_ACT_TRAP": return (Int32(NOOK_SC_TRAP.rawValue), 0)
        case "SCMP_ACT_NOTIFY": return (Int32(NOOK_SC_NOTIFY.rawValue), 0)
        default: throw SeccompFailure(message: "unsupported action \(name) in \(what)")
        }
    }
}
