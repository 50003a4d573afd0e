// Variables in profile values: ${HOME}, ${env:NAME} and the like, expanded
// after parsing. The result is data: it is never given to a shell, and a
// value that must be a path is checked as a path after expansion.

/// The values `${...}` can name, gathered from the caller.
public struct ProfileVariables: Equatable, Sendable {
    /// HOME, PWD, UID, GID, USER, XDG_RUNTIME_DIR, XDG_CONFIG_HOME, ...
    public var builtins: [String: String]
    /// The caller's environment, for `${env:NAME}`.
    public var environment: [String: String]

    public init(builtins: [String: String], environment: [String: String]) {
        self.builtins = builtins
        self.environment = environment
    }

    /// Names that can be used as `${NAME}`, whether or not they are set.
    public static let names = [
        "HOME", "PWD", "UID", "GID", "USER", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME", "XDG_DATA_HOME", "PROFILE_DIR",
    ]

    /// The builtins for a caller: `home` and `cwd` are absolute paths.
    public static func caller(
        uid: UInt32, gid: UInt32, user: String, home: String, cwd: String,
        environment: [String: String]
    ) -> ProfileVariables {
        var b = ["HOME": home, "PWD": cwd, "UID": String(uid), "GID": String(gid), "USER": user]
        func xdg(_ name: String, _ fallback: String) {
            if let v = environment[name], v.hasPrefix("/") { b[name] = v } else { b[name] = home + fallback }
        }
        xdg("XDG_CONFIG_HOME", "/.config")
        xdg("XDG_CACHE_HOME", "/.cache")
        xdg("XDG_DATA_HOME", "/.local/share")
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") { b["XDG_RUNTIME_DIR"] = runtime }
        return ProfileVariables(builtins: b, environment: environment)
    }
}

struct VariableError: Error {
    var message: String
    var hint: String?
}

extension ProfileVariables {
    /// `text` with every `${NAME}` and `${env:NAME}` replaced and `$$`
    /// written as `$`. `$NAME` without braces is refused rather than kept,
    /// since it reads as a variable that silently was not expanded.
    func expand(_ text: String, profileDirectory: String) throws(VariableError) -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            rest = rest[rest.index(after: dollar)...]
            guard let next = rest.first else {
                out += "$"
                break
            }
            if next == "$" {
                out += "$"
                rest = rest.dropFirst()
            } else if next == "{" {
                guard let close = rest.firstIndex(of: "}") else {
                    throw VariableError(message: "\"${\" is not closed", hint: "write ${NAME}, or $$ for a literal $")
                }
                let name = String(rest[rest.index(after: rest.startIndex)..<close])
                out += try value(of: name, profileDirectory: profileDirectory)
                rest = rest[rest.index(after: close)...]
            } else if next.isLetter || next == "_" {
                let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                throw VariableError(
                    message: "$\(name) is not expanded",
                    hint: "write ${\(name)} (or ${env:\(name)}), or $$\(name) for the literal text")
            } else {
                out += "$"
            }
        }
        return out + rest
    }

    func value(of name: String, profileDirectory: String) throws(VariableError) -> String {
        if name.hasPrefix("env:") {
            let key = String(name.dropFirst(4))
            guard !key.isEmpty else { throw VariableError(message: "${env:} names no variable") }
            guard let v = environment[key] else {
                throw VariableError(
                    message: "${env:\(key)} is not set in your environment",
                    hint: "set \(key) before running nook, or remove it from the profile")
            }
            return v
        }
        if name == "PROFILE_DIR" { return profileDirectory }
        guard ProfileVariables.names.contains(name) else {
            let near = suggestion(for: name, in: ProfileVariables.names)
            throw VariableError(
                message: "${\(name)} is not a profile variable",
                hint: near.map { "did you mean ${\($0)}? For your environment's \(name), write ${env:\(name)}" }
                    ?? "variables are \(ProfileVariables.names.map { "${\($0)}" }.joined(separator: ", ")) and ${env:NAME}"
            )
        }
        guard let v = builtins[name] else {
            throw VariableError(
                message: "${\(name)} is not defined here",
                hint: name == "XDG_RUNTIME_DIR"
                    ? "no XDG_RUNTIME_DIR is set; log in through a session manager "
                        + "(systemd-logind) or set it" : nil)
        }
        return v
    }
}
