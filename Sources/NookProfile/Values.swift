// The checked values a profile holds, and the checks that produce them
// from TOML: types, sizes, paths, names. Each check records a problem
// with the value's position rather than stopping, so that `nook profile
// check` reports every problem of a file at once.
import NookSpec

/// A value of a profile after checking, in the form the request wants.
public enum SettingValue: Equatable, Sendable {
    case string(String)
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    /// A size in bytes or a count, or "max".
    case limit(LimitValue)
    case strings([String])
    case bind(BindMount)
    case tmpfs(TmpfsEntry)
    case rlimit(soft: UInt64, hard: UInt64)
    case umask(UInt32)
}

/// A tmpfs as a profile writes it.
public struct TmpfsEntry: Equatable, Sendable {
    public var destination: String
    /// Bytes; nil is the kernel's default (half of RAM).
    public var size: UInt64?
    /// Octal permission bits, as written ("1777").
    public var mode: String?
}

/// One value with the place it was written and what makes it the same
/// item as another (a bind's destination, a path, a capability).
public struct Setting: Equatable, Sendable {
    public var value: SettingValue
    public var origin: Origin
    public var identity: String
}

/// Checks TOML values of one file, collecting problems.
struct Checker {
    let file: String
    let variables: ProfileVariables
    let profileDirectory: String
    var issues: [ProfileIssue] = []
    /// The dotted key being checked, for messages.
    var key = ""

    init(file: String, variables: ProfileVariables, profileDirectory: String) {
        self.file = file
        self.variables = variables
        self.profileDirectory = profileDirectory
    }

    func origin(_ node: TOMLNode) -> Origin { Origin(file: file, position: node.position) }

    mutating func fail(_ node: TOMLNode, _ message: String, hint: String? = nil) {
        issues.append(ProfileIssue(origin(node), key: key, message, hint: hint))
    }

    mutating func fail(at position: SourcePosition, key: String?, _ message: String, hint: String? = nil) {
        issues.append(ProfileIssue(file: file, position: position, key: key, message: message, hint: hint))
    }

    mutating func wrongType(_ node: TOMLNode, expected: String, hint: String? = nil) {
        fail(node, "expected \(expected), found \(node.kindName) \(node.excerpt)", hint: hint)
    }

    // MARK: Types

    /// A string with its variables expanded.
    mutating func string(_ node: TOMLNode, expected: String = "a string") -> String? {
        guard case .string(let raw) = node.value else {
            wrongType(node, expected: expected)
            return nil
        }
        do {
            return try variables.expand(raw, profileDirectory: profileDirectory)
        } catch {
            fail(node, error.message, hint: error.hint)
            return nil
        }
    }

    mutating func bool(_ node: TOMLNode) -> Bool? {
        guard case .boolean(let b) = node.value else {
            var hint: String?
            if case .string(let s) = node.value, ["true", "false", "yes", "no"].contains(s.lowercased()) {
                hint = "write true or false without quotes"
            }
            wrongType(node, expected: "a boolean (true or false)", hint: hint)
            return nil
        }
        return b
    }

    mutating func integer(_ node: TOMLNode, in range: ClosedRange<Int64>, what: String) -> Int64? {
        guard case .integer(let n, _) = node.value else {
            wrongType(node, expected: "an integer (\(what))")
            return nil
        }
        guard range.contains(n) else {
            fail(node, "\(n) is out of range; expected \(what) from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return n
    }

    mutating func array(_ node: TOMLNode, of what: String) -> [TOMLNode]? {
        guard case .array(let items) = node.value else {
            wrongType(node, expected: "an array of \(what)")
            return nil
        }
        return items
    }

    mutating func strings(_ node: TOMLNode, of what: String = "strings") -> [String]? {
        guard let items = array(node, of: what) else { return nil }
        var out: [String] = []
        var ok = true
        for item in items {
            if let s = string(item, expected: "a string in this array") { out.append(s) } else { ok = false }
        }
        return ok ? out : nil
    }

    mutating func choice(_ node: TOMLNode, _ choices: [String], what: String) -> String? {
        guard let s = string(node, expected: "a string (\(what))") else { return nil }
        guard choices.contains(s) else {
            let expected = choices.map { "\"\($0)\"" }
            let list =
                expected.count == 2
                ? expected.joined(separator: " or ")
                : expected.dropLast().joined(separator: ", ") + " or " + (expected.last ?? "")
            let near = suggestion(for: s, in: choices)
            fail(
                node, "\(tomlString(s)) is not \(what); expected \(list)", hint: near.map { "did you mean \"\($0)\"?" })
            return nil
        }
        return s
    }

    /// The members of a table, or a problem when it is something else.
    mutating func table(_ node: TOMLNode, expected: String) -> [TOMLMember]? {
        guard case .table(let members) = node.value else {
            wrongType(node, expected: expected)
            return nil
        }
        return members
    }

    // MARK: Paths and names

    /// An absolute path, expanded and normalized; `..` is refused.
    /// A system call name as syscalls(2) writes it.
    mutating func syscallName(_ node: TOMLNode) -> String? {
        guard let s = string(node, expected: "a system call name (\"keyctl\")") else { return nil }
        guard !s.isEmpty, s.count <= 64, s.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" }) else {
            fail(node, "\(tomlString(s)) is not a system call name", hint: "names are as in syscalls(2): keyctl, io_uring_setup")
            return nil
        }
        return s
    }

    mutating func absolutePath(_ node: TOMLNode) -> String? {
        guard let s = string(node, expected: "a string (an absolute path)") else { return nil }
        return checkedPath(s, node)
    }

    mutating func checkedPath(_ s: String, _ node: TOMLNode) -> String? {
        guard s.hasPrefix("/") else {
            fail(
                node, "\(tomlString(s)) is a relative path; expected an absolute path",
                hint: "start it with / or a variable such as ${HOME} or ${PWD}")
            return nil
        }
        guard !s.contains("\0") else {
            fail(node, "the path contains a NUL character; expected an absolute path")
            return nil
        }
        if s.split(separator: "/").contains("..") {
            fail(
                node, "\(tomlString(s)) contains '..'; expected a path without '..'",
                hint: "write the path it leads to")
            return nil
        }
        return cleanedPath(s)
    }

    /// An environment variable's name.
    mutating func variableName(_ s: String, _ node: TOMLNode) -> String? {
        guard !s.isEmpty, !s.contains("="), !s.contains("\0"), s.allSatisfy({ $0 != " " && $0 != "\t" && $0 != "\n" })
        else {
            fail(node, "\(tomlString(s)) is not a variable name; expected a name without '=', spaces or NUL")
            return nil
        }
        return s
    }

    mutating func capability(_ node: TOMLNode) -> String? {
        guard let s = string(node, expected: "a string (a capability name)") else { return nil }
        do {
            let names = try Resolver.capabilityList(s, flag: key)
            return s.uppercased() == "ALL" ? "ALL" : names[0]
        } catch {
            let upper = s.uppercased()
            let full = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
            let near = suggestion(for: full, in: Resolver.capabilityNames)
            fail(
                node, "\(tomlString(s)) is not a capability; expected a name from capabilities(7) such as NET_RAW",
                hint: near.map { "did you mean \($0)?" })
            return nil
        }
    }

    mutating func hostname(_ node: TOMLNode) -> String? {
        guard let s = string(node, expected: "a string (a hostname)") else { return nil }
        guard !s.isEmpty, s.utf8.count <= 64,
            s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
        else {
            fail(node, "\(tomlString(s)) is not a valid hostname; expected letters, digits, '-' and '.', at most 64")
            return nil
        }
        return s
    }

    // MARK: Sizes and limits

    /// Bytes: an integer, or a string of digits and a unit, or "max".
    mutating func size(_ node: TOMLNode, allowMax: Bool = true, allowZero: Bool = false) -> LimitValue? {
        let expected = "a size such as \"4GiB\", \"512M\" or a number of bytes" + (allowMax ? ", or \"max\"" : "")
        switch node.value {
        case .integer(let n, _):
            if n == 0 && allowZero { return .value(0) }
            guard n > 0 else {
                fail(
                    node, "\(n) is not a usable size; expected \(expected)",
                    hint: allowMax ? "0 would leave the sandbox no room at all; for no limit write \"max\"" : nil)
                return nil
            }
            return .value(UInt64(n))
        case .string(let raw):
            guard let s = string(node) else { return nil }
            if s == "max" {
                if allowMax { return .max }
                fail(node, "\"max\" is not allowed here; expected \(expected)")
                return nil
            }
            guard let bytes = Sizes.parse(s) else {
                let squeezed = s.filter { $0 != " " }
                let hint =
                    squeezed != s && Sizes.parse(squeezed) != nil ? "write it without spaces: \"\(squeezed)\"" : nil
                fail(node, "\(tomlString(raw)) is not a size; expected \(expected)", hint: hint)
                return nil
            }
            guard bytes > 0 || allowZero else {
                fail(
                    node, "\(tomlString(raw)) is zero; expected \(expected)",
                    hint: allowMax ? "for no limit write \"max\"" : nil)
                return nil
            }
            return .value(bytes)
        default:
            wrongType(node, expected: expected)
            return nil
        }
    }

    /// A count of at least 1, or "max".
    mutating func count(_ node: TOMLNode) -> LimitValue? {
        switch node.value {
        case .integer(let n, _):
            guard n >= 1 else {
                fail(
                    node, "\(n) would let the sandbox start no process; expected a count from 1, or \"max\"",
                    hint: "for no limit write \"max\"")
                return nil
            }
            return .value(UInt64(n))
        case .string:
            guard let s = string(node) else { return nil }
            if s == "max" { return .max }
            fail(node, "\(tomlString(s)) is not a count; expected an integer from 1, or \"max\"")
            return nil
        default:
            wrongType(node, expected: "an integer from 1, or \"max\"")
            return nil
        }
    }

    /// A resource limit value: an integer or "unlimited".
    mutating func rlimitNumber(_ node: TOMLNode) -> UInt64? {
        switch node.value {
        case .integer(let n, _) where n >= 0: return UInt64(n)
        case .string:
            guard let s = string(node) else { return nil }
            if s == "unlimited" { return UInt64.max }
            fail(node, "\(tomlString(s)) is not a limit; expected an integer or \"unlimited\"")
            return nil
        default:
            wrongType(node, expected: "an integer from 0, or \"unlimited\"")
            return nil
        }
    }
}

/// Sizes as profiles write them.
public enum Sizes {
    /// K, M, G, T and KiB ... TiB are powers of 1024 (as in systemd and
    /// podman); KB, MB, GB, TB are powers of 1000; B or nothing is bytes.
    static let units: [String: UInt64] = [
        "": 1, "B": 1,
        "K": 1 << 10, "k": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "m": 1 << 20, "MiB": 1 << 20,
        "G": 1 << 30, "g": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "t": 1 << 40, "TiB": 1 << 40,
        "KB": 1000, "kB": 1000, "MB": 1_000_000, "GB": 1_000_000_000, "TB": 1_000_000_000_000,
    ]

    /// Bytes for "4GiB", "512M", "100"; nil for anything else, such as
    /// "4 G", "1.5G", "-1" or a number too large for 64 bits.
    public static func parse(_ s: String) -> UInt64? {
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 20, let n = UInt64(digits) else { return nil }
        guard let unit = units[String(s.dropFirst(digits.count))] else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : bytes
    }

    /// The shortest exact way to write `bytes`: "4GiB", "1536MiB", "100".
    public static func format(_ bytes: UInt64) -> String {
        for (unit, factor) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(unit)"
        }
        return String(bytes)
    }
}
