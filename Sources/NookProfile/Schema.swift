// Every key a profile may hold, its type, and how a list of it merges.
// man/nook-profile.5 documents the same table; a test checks that every
// key here appears there.
import NookSpec

/// How a list key combines with the lists of the profiles it extends,
/// when the profile writes a plain array. Written as a table
/// (`{ add = [...], remove = [...] }` or `{ replace = [...] }`), a list
/// says so itself.
public enum ListMode: String, Sendable {
    case append, replace
}

/// One key of the schema.
struct KeySpec: Sendable {
    enum Shape: Sendable {
        /// One value; the last profile that sets it wins.
        case scalar
        /// A list of items; `identity` makes two items the same one.
        case list(ListMode)
        /// A table of named values (`[environment.set]`); per name, the
        /// last profile wins.
        case map
    }
    let section: String
    let name: String
    let shape: Shape
    /// Checks one value (for a list: one item; for a map: one entry's value).
    let check: @Sendable (TOMLNode, inout Checker) -> (SettingValue, String)?
    /// For lists: the identity of an item named in `remove`.
    let removal: (@Sendable (TOMLNode, inout Checker) -> String?)?

    var path: String { section.isEmpty ? name : section + "." + name }

    init(
        _ section: String, _ name: String, _ shape: Shape,
        removal: (@Sendable (TOMLNode, inout Checker) -> String?)? = nil,
        _ check: @escaping @Sendable (TOMLNode, inout Checker) -> (SettingValue, String)?
    ) {
        self.section = section
        self.name = name
        self.shape = shape
        self.check = check
        self.removal = removal
    }
}

enum Schema {
    static let sections = ["process", "user", "filesystem", "environment", "network", "limits", "security", "health"]

    /// Names `limits.required` accepts: the limit keys.
    static let limitNames = [
        "memory", "swap", "memory_high", "pids", "cpus", "cpu_weight", "io_weight", "allowed_cpus",
    ]

    static let rlimitNames = [
        "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
        "sigpending", "msgqueue", "nice", "rtprio", "rttime",
    ]

    static func scalar(_ v: SettingValue?) -> (SettingValue, String)? { v.map { ($0, "") } }

    static let pathRemoval: @Sendable (TOMLNode, inout Checker) -> String? = { node, c in c.absolutePath(node) }
    static let nameRemoval: @Sendable (TOMLNode, inout Checker) -> String? = { node, c in
        c.string(node).flatMap { c.variableName($0, node) }
    }
    static let capabilityRemoval: @Sendable (TOMLNode, inout Checker) -> String? = { node, c in c.capability(node) }
    static let syscallRemoval: @Sendable (TOMLNode, inout Checker) -> String? = { node, c in c.syscallName(node) }

    static let keys: [KeySpec] = [
        KeySpec("", "description", .scalar) { n, c in scalar(c.string(n).map { .string($0) }) },

        // [process]
        KeySpec("process", "entrypoint", .scalar) { n, c in
            guard let argv = c.strings(n, of: "strings (the program and its first arguments)") else { return nil }
            // [] clears the image's Entrypoint, as --entrypoint "" does.
            if let first = argv.first, first.isEmpty {
                c.fail(n, "the entrypoint's program is empty; expected the program, as [\"/bin/sh\", \"-c\"], "
                    + "or [] to clear the image's")
                return nil
            }
            return (.strings(argv), "")
        },
        KeySpec("process", "command", .scalar) { n, c in
            guard let argv = c.strings(n, of: "strings (the program and its arguments)") else { return nil }
            guard let first = argv.first, !first.isEmpty else {
                c.fail(n, "the command is empty; expected the program and its arguments, as [\"make\", \"-j8\"]")
                return nil
            }
            return (.strings(argv), "")
        },
        KeySpec("process", "workdir", .scalar) { n, c in scalar(c.absolutePath(n).map { .string($0) }) },
        KeySpec("process", "terminal", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("process", "interactive", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("process", "explain", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("process", "umask", .scalar) { n, c in
            let expected = "an octal mode written as a string (\"0022\") or as 0o022"
            switch n.value {
            case .integer(let v, octal: true) where (0...0o777).contains(v): return (.umask(UInt32(v)), "")
            case .integer(let v, octal: false):
                c.fail(
                    n, "\(v) is a decimal number; expected \(expected)",
                    hint: "a umask is octal: write \"\(String(v))\" in quotes or 0o\(v)")
                return nil
            case .string:
                guard let s = c.string(n), let m = UInt32(s, radix: 8), m <= 0o777, !s.isEmpty else {
                    c.fail(n, "\(n.excerpt) is not an octal mode; expected \(expected)")
                    return nil
                }
                return (.umask(m), "")
            default:
                c.wrongType(n, expected: expected)
                return nil
            }
        },
        KeySpec("process", "preserve_fds", .scalar) { n, c in
            scalar(c.integer(n, in: 0...1000, what: "a number of descriptors").map { .integer($0) })
        },

        // [user]
        KeySpec("user", "userns", .scalar) { n, c in
            scalar(c.choice(n, UsernsMode.allCases.map(\.rawValue), what: "a user namespace mode").map { .string($0) })
        },

        KeySpec("user", "uid", .scalar) { n, c in
            scalar(c.integer(n, in: 0...4_294_967_294, what: "a uid inside the sandbox").map { .integer($0) })
        },
        KeySpec("user", "gid", .scalar) { n, c in
            scalar(c.integer(n, in: 0...4_294_967_294, what: "a gid inside the sandbox").map { .integer($0) })
        },
        KeySpec("user", "user", .scalar) { n, c in
            guard let s = c.string(n, expected: "user[:group], by name or number") else { return nil }
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard !s.isEmpty, parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && !$0.contains(" ") }) else {
                c.fail(n, "\(tomlString(s)) is not user[:group]", hint: "as in \"app\" or \"1000:1000\"")
                return nil
            }
            return (.string(s), "")
        },

        KeySpec("user", "root_emulation", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },

        // [filesystem]
        KeySpec("filesystem", "root", .scalar) { n, c in
            guard let s = c.string(n, expected: "\"host\" or the absolute path of a directory") else { return nil }
            if s == "host" { return (.string(s), "") }
            return c.absolutePath(n).map { (.string($0), "") }
        },
        KeySpec("filesystem", "image", .scalar) { n, c in
            guard let s = c.string(n, expected: "an image name of the store (as nook image ls shows)"), !s.isEmpty else {
                return nil
            }
            return (.string(s), "")
        },
        KeySpec("filesystem", "persist", .scalar) { n, c in
            guard let s = c.string(n, expected: "a name for the writable layer") else { return nil }
            if let problem = Resolver.layerNameProblem(s) {
                c.fail(n, "\(tomlString(String(s.unicodeScalars.prefix(40)))): \(problem)", hint: Resolver.layerNameRule)
                return nil
            }
            return (.string(s), "")
        },
        KeySpec("filesystem", "read_only_root", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("filesystem", "overlay", .scalar) { n, c in
            scalar(c.choice(n, OverlayChoice.allCases.map(\.rawValue), what: "an overlay choice").map { .string($0) })
        },
        KeySpec("filesystem", "workspace", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("filesystem", "home", .scalar) { n, c in
            scalar(c.choice(n, HomeMode.allCases.map(\.rawValue), what: "a home mode").map { .string($0) })
        },
        KeySpec("filesystem", "binds", .list(.append), removal: pathRemoval) { n, c in bind(n, &c) },
        KeySpec("filesystem", "tmpfs", .list(.append), removal: pathRemoval) { n, c in tmpfs(n, &c) },
        KeySpec("filesystem", "read_only", .list(.append), removal: pathRemoval) { n, c in
            c.absolutePath(n).map { (.string($0), $0) }
        },
        KeySpec("filesystem", "hidden", .list(.append), removal: pathRemoval) { n, c in
            guard let p = c.absolutePath(n) else { return nil }
            guard p != "/" else {
                c.fail(
                    n, "\"/\" cannot be hidden; expected a path below /",
                    hint: "use host_entries to show less of the root")
                return nil
            }
            return (.string(p), p)
        },
        KeySpec("filesystem", "host_entries", .list(.replace), removal: { n, c in hostEntry(n, &c) }) { n, c in
            hostEntry(n, &c).map { (.string($0), $0) }
        },

        // [environment]
        KeySpec("environment", "clear", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("environment", "set", .map) { n, c in
            c.string(n, expected: "a string (the variable's value)").map { (.string($0), "") }
        },
        KeySpec("environment", "pass", .list(.append), removal: nameRemoval) { n, c in
            c.string(n).flatMap { c.variableName($0, n) }.map { (.string($0), $0) }
        },
        KeySpec("environment", "unset", .list(.append), removal: nameRemoval) { n, c in
            c.string(n).flatMap { c.variableName($0, n) }.map { (.string($0), $0) }
        },
        KeySpec("environment", "files", .list(.append), removal: pathRemoval) { n, c in
            c.absolutePath(n).map { (.string($0), $0) }
        },

        // [network]
        KeySpec("network", "mode", .scalar) { n, c in
            scalar(c.choice(n, NetworkMode.allCases.map(\.rawValue), what: "a network mode").map { .string($0) })
        },
        KeySpec("network", "hostname", .scalar) { n, c in scalar(c.hostname(n).map { .string($0) }) },
        KeySpec("network", "publish", .list(.append), removal: { n, c in port(n, &c) }) { n, c in
            port(n, &c).map { (.string($0), $0) }
        },
        KeySpec("network", "mtu", .scalar) { n, c in
            scalar(c.integer(n, in: 1280...65520, what: "an MTU").map { .integer($0) })
        },
        KeySpec("network", "ipv6", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("network", "address", .scalar) { n, c in
            guard let s = c.string(n, expected: "an address with its prefix length, as \"10.0.2.100/24\"") else {
                return nil
            }
            do {
                _ = try AddressWithPrefix.parse(s, what: "address")
            } catch {
                c.fail(n, "\(tomlString(s)) is not an IPv4 address with a prefix length from 8 to 30",
                       hint: "as in \"10.0.2.100/24\"")
                return nil
            }
            return (.string(s), "")
        },
        KeySpec("network", "host_loopback", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },

        // [limits]
        KeySpec("limits", "memory", .scalar) { n, c in scalar(c.size(n).map { .limit($0) }) },
        // Swap alone (cgroup v2 memory.swap.max); 0 is a real setting: no swap.
        KeySpec("limits", "swap", .scalar) { n, c in scalar(c.size(n, allowZero: true).map { .limit($0) }) },
        KeySpec("limits", "memory_high", .scalar) { n, c in scalar(c.size(n).map { .limit($0) }) },
        KeySpec("limits", "pids", .scalar) { n, c in scalar(c.count(n).map { .limit($0) }) },
        KeySpec("limits", "cpus", .scalar) { n, c in
            let v: Double
            switch n.value {
            case .integer(let i, _): v = Double(i)
            case .float(let d): v = d
            case .string:
                guard let s = c.string(n) else { return nil }
                guard s == "max" else {
                    c.fail(n, "\(n.excerpt) is not a number; expected a number of CPUs, as 2 or 1.5, or \"max\"")
                    return nil
                }
                return (.limit(.max), "")
            default:
                c.wrongType(n, expected: "a number of CPUs, as 2 or 1.5, or \"max\"")
                return nil
            }
            guard v.isFinite, v >= 0.01, v <= 4096 else {
                c.fail(n, "\(n.excerpt) is out of range; expected a number of CPUs from 0.01 to 4096")
                return nil
            }
            return (.number(v), "")
        },
        KeySpec("limits", "cpu_weight", .scalar) { n, c in
            scalar(c.integer(n, in: 1...10000, what: "a cpu.weight").map { .integer($0) })
        },
        KeySpec("limits", "io_weight", .scalar) { n, c in
            scalar(c.integer(n, in: 1...10000, what: "an io.weight").map { .integer($0) })
        },
        KeySpec("limits", "allowed_cpus", .scalar) { n, c in
            guard let s = c.string(n, expected: "a string (a CPU list such as \"0-3,6\")") else { return nil }
            guard CPUList.isValid(s) else {
                c.fail(n, "\(tomlString(s)) is not a CPU list; expected numbers and ranges such as \"0-3,6\"")
                return nil
            }
            return (.string(s), "")
        },
        KeySpec("limits", "rlimits", .map) { n, c in rlimit(n, &c) },
        KeySpec("limits", "required", .list(.append), removal: { n, c in limitName(n, &c) }) { n, c in
            limitName(n, &c).map { (.string($0), $0) }
        },
        KeySpec("limits", "cgroup_manager", .scalar) { n, c in
            scalar(
                c.choice(n, CgroupManagerChoice.allCases.map(\.rawValue), what: "a cgroup manager").map { .string($0) })
        },

        // [security]
        KeySpec("security", "cap_add", .list(.append), removal: capabilityRemoval) { n, c in
            c.capability(n).map { (.string($0), $0) }
        },
        KeySpec("security", "cap_drop", .list(.append), removal: capabilityRemoval) { n, c in
            c.capability(n).map { (.string($0), $0) }
        },
        KeySpec("security", "seccomp_allow", .list(.append), removal: syscallRemoval) { n, c in
            c.syscallName(n).map { (.string($0), $0) }
        },
        KeySpec("security", "seccomp", .scalar) { n, c in
            scalar(c.choice(n, SeccompMode.allCases.map(\.rawValue), what: "a seccomp policy").map { .string($0) })
        },
        KeySpec("security", "no_new_privs", .scalar) { n, c in
            guard let b = c.bool(n) else { return nil }
            guard b else {
                c.fail(
                    n, "false is not supported; expected true",
                    hint: "nook always sets no_new_privs: the seccomp filter of an unprivileged payload needs it")
                return nil
            }
            return (.bool(b), "")
        },

        // [health]: a detached container's health check (nook run -d).
        KeySpec("health", "command", .scalar) { n, c in
            if case .string = n.value {
                guard let text = c.string(n), !text.trimming(" ").isEmpty else {
                    c.fail(n, "the check's command is empty; expected a shell command or an array such as "
                        + "[\"curl\", \"-f\", \"http://localhost/\"]")
                    return nil
                }
                return (.string(text), "")
            }
            guard let argv = c.strings(n, of: "strings (the program and its arguments), or a string for sh -c") else {
                return nil
            }
            guard let first = argv.first, !first.isEmpty else {
                c.fail(n, "the check's command is empty; expected the program and its arguments",
                       hint: "enabled = false turns the check off, the image's too")
                return nil
            }
            return (.strings(argv), "")
        },
        KeySpec("health", "enabled", .scalar) { n, c in scalar(c.bool(n).map { .bool($0) }) },
        KeySpec("health", "interval", .scalar) { n, c in duration(n, &c, least: HealthCheck.shortest) },
        KeySpec("health", "timeout", .scalar) { n, c in duration(n, &c, least: HealthCheck.shortest) },
        KeySpec("health", "start_period", .scalar) { n, c in duration(n, &c, least: 0) },
        KeySpec("health", "retries", .scalar) { n, c in
            scalar(c.integer(n, in: 1...Int64(HealthCheck.maximumRetries), what: "a number of failed checks in a row")
                .map { .integer($0) })
        },
        KeySpec("health", "on_unhealthy", .scalar) { n, c in
            scalar(c.choice(n, HealthAction.allCases.map(\.rawValue), what: "an action").map { .string($0) })
        },
    ]

    static let byPath: [String: KeySpec] = Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0) })

    static func keys(in section: String) -> [KeySpec] { keys.filter { $0.section == section } }

    // MARK: Compound values

    /// A published port as `-p` takes it; its canonical form is its identity.
    static func port(_ node: TOMLNode, _ c: inout Checker) -> String? {
        guard let s = c.string(node, expected: "a port mapping, as \"8080:80\" or \"127.0.0.1:5353:53/udp\"") else {
            return nil
        }
        do {
            return try PortMapping.parse(s).description
        } catch {
            let prefix = "-p \(s): "
            let reason = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
            c.fail(node, "\(tomlString(s)) is not a port mapping (\(reason))",
                   hint: "as in \"8080:80\", \"127.0.0.1:2222:22\" or \"5000-5009:5000-5009/udp\"")
            return nil
        }
    }

    static func bind(_ node: TOMLNode, _ c: inout Checker) -> (SettingValue, String)? {
        if case .string = node.value {
            guard let p = c.absolutePath(node) else { return nil }
            return (.bind(BindMount(source: p, destination: p, readOnly: false)), p)
        }
        guard
            let members = c.table(
                node,
                expected: "a table { source = \"...\", destination = \"...\", read_only = true } "
                    + "or a path")
        else { return nil }
        var source: String?
        var destination: String?
        var readOnly = false
        var ok = true
        for m in members {
            switch m.key {
            case "source":
                source = c.absolutePath(m.node)
                ok = ok && source != nil
            case "destination":
                destination = c.absolutePath(m.node)
                ok = ok && destination != nil
            case "read_only": if let b = c.bool(m.node) { readOnly = b } else { ok = false }
            default:
                unknownMember(m, ["source", "destination", "read_only"], in: "a bind", &c)
                ok = false
            }
        }
        guard ok else { return nil }
        guard let source else {
            c.fail(node, "the bind has no source; expected source = \"/host/path\"")
            return nil
        }
        let dest = destination ?? source
        guard dest != "/" else {
            c.fail(node, "a bind cannot replace the root; expected a destination below /")
            return nil
        }
        return (.bind(BindMount(source: source, destination: dest, readOnly: readOnly)), dest)
    }

    static func tmpfs(_ node: TOMLNode, _ c: inout Checker) -> (SettingValue, String)? {
        if case .string = node.value {
            guard let p = c.absolutePath(node) else { return nil }
            return (.tmpfs(TmpfsEntry(destination: p)), p)
        }
        guard
            let members = c.table(
                node,
                expected: "a table { destination = \"...\", size = \"64M\", mode = \"1777\" } "
                    + "or a path")
        else { return nil }
        var entry = TmpfsEntry(destination: "")
        var ok = true
        var destination: String?
        for m in members {
            switch m.key {
            case "destination":
                destination = c.absolutePath(m.node)
                ok = ok && destination != nil
            case "size":
                if case .value(let bytes)? = c.size(m.node, allowMax: false) { entry.size = bytes } else { ok = false }
            case "mode":
                guard let s = c.string(m.node, expected: "a string (octal permission bits, as \"1777\")") else {
                    ok = false
                    continue
                }
                guard let v = UInt32(s, radix: 8), v <= 0o7777 else {
                    c.fail(m.node, "\(tomlString(s)) is not an octal mode; expected octal permission bits, as \"1777\"")
                    ok = false
                    continue
                }
                entry.mode = s
            default:
                unknownMember(m, ["destination", "size", "mode"], in: "a tmpfs", &c)
                ok = false
            }
        }
        guard ok else { return nil }
        guard let destination else {
            c.fail(node, "the tmpfs has no destination; expected destination = \"/path\"")
            return nil
        }
        guard destination != "/" else {
            c.fail(node, "a tmpfs cannot replace the root; expected a destination below /")
            return nil
        }
        entry.destination = destination
        return (.tmpfs(entry), destination)
    }

    static func rlimit(_ node: TOMLNode, _ c: inout Checker) -> (SettingValue, String)? {
        if case .table(let members) = node.value {
            var soft: UInt64?
            var hard: UInt64?
            var ok = true
            for m in members {
                switch m.key {
                case "soft":
                    soft = c.rlimitNumber(m.node)
                    ok = ok && soft != nil
                case "hard":
                    hard = c.rlimitNumber(m.node)
                    ok = ok && hard != nil
                default:
                    unknownMember(m, ["soft", "hard"], in: "a resource limit", &c)
                    ok = false
                }
            }
            guard ok else { return nil }
            guard let s = soft ?? hard, let h = hard ?? soft else {
                c.fail(node, "the limit has neither soft nor hard; expected { soft = N, hard = N }")
                return nil
            }
            guard s <= h else {
                c.fail(node, "the soft limit \(s) is above the hard limit \(h); expected soft <= hard")
                return nil
            }
            return (.rlimit(soft: s, hard: h), "")
        }
        guard let v = c.rlimitNumber(node) else { return nil }
        return (.rlimit(soft: v, hard: v), "")
    }

    static func hostEntry(_ node: TOMLNode, _ c: inout Checker) -> String? {
        guard let s = c.string(node, expected: "a string (a top-level entry such as \"usr\")") else { return nil }
        let name = s.hasPrefix("/") ? String(s.dropFirst()) : s
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            c.fail(
                node,
                "\(tomlString(s)) is not a top-level entry of the root; expected a name such as \"usr\" or \"/etc\"")
            return nil
        }
        return name
    }

    static func limitName(_ node: TOMLNode, _ c: inout Checker) -> String? {
        guard let s = c.string(node, expected: "a string (a limit key)") else { return nil }
        guard limitNames.contains(s) else {
            let near = suggestion(for: s, in: limitNames)
            c.fail(
                node, "\(tomlString(s)) is not a limit; expected one of \(limitNames.joined(separator: ", "))",
                hint: near.map { "did you mean \"\($0)\"?" })
            return nil
        }
        return s
    }

    /// A duration as in "30s", "500ms", "1m30s", kept as written.
    static func duration(_ node: TOMLNode, _ c: inout Checker, least: Double) -> (SettingValue, String)? {
        guard let s = c.string(node, expected: "a string (a duration such as \"30s\")") else { return nil }
        guard let seconds = Durations.seconds(s) else {
            c.fail(node, "\(tomlString(s)) is not a duration; expected numbers with ms, s, m or h, as \"30s\" or \"1m30s\"")
            return nil
        }
        guard seconds >= least, seconds <= HealthCheck.longest else {
            c.fail(node, "\(tomlString(s)) is out of range; expected \(least > 0 ? "1ms" : "0s") to a year (8760h)")
            return nil
        }
        return (.string(s), "")
    }

    static func unknownMember(_ m: TOMLMember, _ known: [String], in what: String, _ c: inout Checker) {
        let near = suggestion(for: m.key, in: known)
        c.fail(
            at: m.keyPosition, key: c.key + "." + m.key,
            "unknown key in \(what); expected \(known.joined(separator: ", "))",
            hint: near.map { "did you mean \($0)?" })
    }
}

/// cpuset lists: "0-3,6,8-9".
enum CPUList {
    static func isValid(_ s: String) -> Bool {
        guard !s.isEmpty else { return false }
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                bounds.allSatisfy({ !$0.isEmpty && $0.count <= 5 && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
                let lo = Int(bounds[0]), let hi = Int(bounds.last ?? ""), lo <= hi
            else { return false }
        }
        return true
    }
}
