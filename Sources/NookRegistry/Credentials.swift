#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookSupport

/// A user name and password (or token) for one registry. Never printed:
/// `description` shows the user and where the secret came from only.
public struct Credential: Equatable, Sendable, CustomStringConvertible {
    public var user: String
    public var secret: String
    /// The file it was read from.
    public var source: String

    public var description: String { "\(user) (from \(source))" }

    /// `Authorization: Basic ...`'s value.
    var basic: String { "Basic " + Data("\(user):\(secret)".utf8).base64EncodedString() }
}

/// The credential files users already have, in the format podman, skopeo,
/// buildah and Docker share (containers-auth.json(5)):
///
///     {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}
///
/// Read in this order, first match wins: `--authfile`, `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`,
/// `~/.docker/config.json`. `nook login` writes the first of `--authfile`,
/// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (podman's
/// default), else `$XDG_CONFIG_HOME/containers/auth.json`.
public struct CredentialStore: Sendable {
    public var readPaths: [String]
    public var writePath: String

    public init(authFile: String?, environment: [String: String], home: String) {
        let runtime = environment["XDG_RUNTIME_DIR"].flatMap { $0.hasPrefix("/") ? $0 + "/containers/auth.json" : nil }
        let config = (environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? home + "/.config")
            + "/containers/auth.json"
        let env = environment["REGISTRY_AUTH_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        if let authFile {
            readPaths = [authFile]
            writePath = authFile
        } else {
            readPaths = [env, runtime, config, home + "/.docker/config.json"].compactMap { $0 }
            writePath = env ?? runtime ?? config
        }
    }

    /// The keys an entry for `registry` (and `repository`) may be under,
    /// most specific first: `host/repo/sub`, `host/repo`, `host`, and
    /// Docker Hub's historical names.
    static func keys(registry: String, repository: String?) -> [String] {
        var out: [String] = []
        if let repository {
            var parts = repository.split(separator: "/").map(String.init)
            while !parts.isEmpty {
                out.append(registry + "/" + parts.joined(separator: "/"))
                parts.removeLast()
            }
        }
        out += [registry, "https://" + registry, "http://" + registry]
        if registry == "docker.io" {
            out += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
        }
        return out
    }

    /// The credential for `registry`, or nil. A file that exists but cannot
    /// be read or parsed is an error naming it.
    public func credential(registry: String, repository: String? = nil) throws(RegistryError) -> Credential? {
        for path in readPaths {
            guard let file = try AuthFile.read(path) else { continue }
            for key in CredentialStore.keys(registry: registry, repository: repository) {
                if let entry = file.auths[key] { return try entry.credential(key: key, path: path) }
            }
            if file.hasHelpers {
                Log.warnOnce(key: "credential-helpers-\(path)",
                             "\(path) names credential helpers (credsStore/credHelpers), which nook does not run; "
                                 + "it uses only the \"auths\" entries (nook login writes one)")
            }
        }
        return nil
    }

    /// Saves `credential` for `key` (a registry), keeping everything else
    /// in the file. The file is 0600 in a 0700 directory, replaced whole.
    public func save(user: String, secret: String, key: String) throws(RegistryError) {
        var root = try AuthFile.readRaw(writePath) ?? .object([:])
        guard case .object(var top) = root else {
            throw .badFile(path: writePath, message: "not a JSON object", hint: "fix or remove the file")
        }
        var auths: [String: JSONValue] = [:]
        if let existing = top["auths"] {
            guard case .object(let a) = existing else {
                throw .badFile(path: writePath, message: "\"auths\" is not an object", hint: "fix or remove the file")
            }
            auths = a
        }
        auths[key] = .object(["auth": .string(Data("\(user):\(secret)".utf8).base64EncodedString())])
        top["auths"] = .object(auths)
        root = .object(top)
        try write(root)
    }

    /// Removes the entry for `key`; false when there was none.
    public func remove(key: String) throws(RegistryError) -> Bool {
        guard let root = try AuthFile.readRaw(writePath), case .object(var top) = root,
              case .object(var auths)? = top["auths"] else { return false }
        let keys = CredentialStore.keys(registry: key, repository: nil).filter { auths[$0] != nil }
        guard !keys.isEmpty else { return false }
        for k in keys { auths[k] = nil }
        top["auths"] = .object(auths)
        try write(.object(top))
        return true
    }

    /// Removes every entry of the file nook writes.
    public func removeAll() throws(RegistryError) -> Int {
        guard let root = try AuthFile.readRaw(writePath), case .object(var top) = root,
              case .object(let auths)? = top["auths"] else { return 0 }
        top["auths"] = .object([:])
        try write(.object(top))
        return auths.count
    }

    private func write(_ root: JSONValue) throws(RegistryError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(root) else {
            throw .badFile(path: writePath, message: "cannot encode", hint: "report this as a bug")
        }
        let dir = String(writePath[..<(writePath.lastIndex(of: "/") ?? writePath.startIndex)])
        if !dir.isEmpty {
            var path = ""
            for part in dir.split(separator: "/") {
                path += "/" + part
                if mkdir(path, 0o700) != 0 && errno != EEXIST {
                    throw .system(SystemFailure("create the directory", path: path))
                }
            }
        }
        let temp = writePath + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .system(SystemFailure("create", path: temp)) }
        let bytes = Array(data) + [10]
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                let failure = SystemFailure("write", path: temp)
                close(fd)
                unlink(temp)
                throw .system(failure)
            }
            done += n
        }
        fchmod(fd, 0o600)
        fsync(fd)
        close(fd)
        guard rename(temp, writePath) == 0 else {
            let failure = SystemFailure("replace", path: writePath)
            unlink(temp)
            throw .system(failure)
        }
    }
}

/// The parts of an auth file nook reads.
struct AuthFile: Decodable {
    struct Entry: Decodable {
        var auth: String?
        var username: String?
        var password: String?
        var identitytoken: String?

        func credential(key: String, path: String) throws(RegistryError) -> Credential? {
            if let auth, !auth.isEmpty {
                guard let data = Data(base64Encoded: auth), let text = String(data: data, encoding: .utf8),
                      let colon = text.firstIndex(of: ":") else {
                    throw .badFile(path: path, message: "the \"auth\" of \"\(key)\" is not base64 of user:password",
                                   hint: "log in again (nook login \(key)), or remove the entry")
                }
                return Credential(user: String(text[..<colon]), secret: String(text[text.index(after: colon)...]),
                                  source: path)
            }
            if let username, let password, !username.isEmpty {
                return Credential(user: username, secret: password, source: path)
            }
            if identitytoken != nil {
                throw .unsupported("\(path): the entry of \"\(key)\" holds an identity token, which nook cannot use",
                                   hint: "log in with a user and password or token: nook login \(key)")
            }
            return nil
        }
    }

    var auths: [String: Entry]
    var hasHelpers: Bool

    enum Keys: String, CodingKey { case auths, credsStore, credHelpers }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        auths = try c.decodeIfPresent([String: Entry].self, forKey: .auths) ?? [:]
        hasHelpers = c.contains(.credsStore) || c.contains(.credHelpers)
    }

    /// The file at `path`, nil when there is none.
    static func read(_ path: String) throws(RegistryError) -> AuthFile? {
        guard let bytes = try bytes(path) else { return nil }
        do {
            return try JSONDecoder().decode(AuthFile.self, from: Data(bytes))
        } catch {
            throw .badFile(path: path, message: "not a credentials file (JSON with an \"auths\" object): \(error)",
                           hint: "fix it, or remove it and log in again (nook login REGISTRY)")
        }
    }

    static func readRaw(_ path: String) throws(RegistryError) -> JSONValue? {
        guard let bytes = try bytes(path) else { return nil }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw .badFile(path: path, message: "not valid JSON", hint: "fix it, or remove it and log in again")
        }
    }

    static func bytes(_ path: String) throws(RegistryError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw .badFile(path: path, message: "cannot read it: \(Errno.current)", hint: "make it readable by you, or remove it")
        }
        defer { close(fd) }
        guard let bytes = readFileBytes(fd: fd, limit: 4 << 20) else {
            throw .badFile(path: path, message: "cannot read it (or larger than 4 MiB)", hint: "fix or remove it")
        }
        return bytes
    }
}

/// Any JSON value, to rewrite a file without losing what nook does not know.
indirect enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
