#if canImport(Glibc)
import Glibc
#endif
import NookProfile
import NookStore
import NookSupport

/// Which registries short names are looked up in, and how each registry is
/// reached. Read from `$XDG_CONFIG_HOME/nook/registries.toml` (default
/// `~/.config/nook/registries.toml`), in the spirit of containers'
/// registries.conf:
///
///     unqualified-search-registries = ["docker.io"]
///
///     [[registry]]
///     location = "registry.lan:5000"
///     insecure = true          # plain HTTP, or TLS without verification
///
///     [[registry]]
///     location = "registry.corp"
///     tls-ca = "/etc/ssl/corp-ca.pem"
///
/// Without the file, short names are looked up on docker.io only, which is
/// what `docker pull` does; nook says which registry a short name resolved to.
public struct RegistryConfig: Equatable, Sendable {
    public struct Registry: Equatable, Sendable {
        public var location: String
        public var insecure = false
        public var tlsCA: String?
    }

    public var searchRegistries: [String] = ["docker.io"]
    public var registries: [Registry] = []
    /// The file it was read from (or would be), for messages.
    public var path: String
    /// Whether that file was there: without it the values are nook's own.
    public var fromFile = false

    /// Where the search list comes from, for messages.
    public var searchSource: String {
        fromFile ? "unqualified-search-registries in \(path)" : "nook's default search list (no \(path))"
    }

    public init(path: String) {
        self.path = path
    }

    /// `$XDG_CONFIG_HOME/nook/registries.toml`.
    public static func defaultPath(environment: [String: String], home: String) -> String {
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? home + "/.config"
        return config + "/nook/registries.toml"
    }

    /// The file at `path`, or the defaults when there is none.
    public static func load(path: String) throws(RegistryError) -> RegistryConfig {
        var config = RegistryConfig(path: path)
        guard let bytes = readFileBytes(path, limit: 1 << 20) else {
            if access(path, F_OK) == 0 {
                throw .badFile(path: path, message: "cannot read it: \(Errno.current)", hint: "make it readable, or remove it")
            }
            return config
        }
        config.fromFile = true
        let root: TOMLNode
        do { root = try TOML.parse(bytes: bytes) } catch {
            throw .badFile(path: "\(path):\(error.position)", message: error.message, hint: "fix the TOML syntax there")
        }
        guard case .table(let members) = root.value else { return config }
        func wrong(_ key: String, _ at: SourcePosition, _ expected: String) -> RegistryError {
            .badFile(path: "\(path):\(at)", message: "\(key): expected \(expected)",
                     hint: "see nook-pull(1), FILES, for the keys of registries.toml")
        }
        for member in members {
            switch member.key {
            case "unqualified-search-registries":
                guard case .array(let items) = member.node.value else {
                    throw wrong(member.key, member.keyPosition, "an array of registry host names")
                }
                var list: [String] = []
                for item in items {
                    guard case .string(let host) = item.value, ImageName.isDomain(host) else {
                        throw wrong(member.key, item.position, "registry host names such as \"docker.io\"")
                    }
                    list.append(host)
                }
                config.searchRegistries = list
            case "registry":
                guard case .array(let tables) = member.node.value else {
                    throw wrong(member.key, member.keyPosition, "[[registry]] tables")
                }
                for table in tables {
                    guard case .table(let keys) = table.value else { throw wrong("registry", table.position, "a table") }
                    var entry = Registry(location: "")
                    for key in keys {
                        switch (key.key, key.node.value) {
                        case ("location", .string(let s)) where ImageName.isDomain(s): entry.location = s
                        case ("insecure", .boolean(let b)): entry.insecure = b
                        case ("tls-ca", .string(let s)) where s.hasPrefix("/"): entry.tlsCA = s
                        case ("location", _): throw wrong("location", key.keyPosition, "a host name with an optional :port")
                        case ("insecure", _): throw wrong("insecure", key.keyPosition, "true or false")
                        case ("tls-ca", _): throw wrong("tls-ca", key.keyPosition, "an absolute path to a PEM file")
                        default: throw wrong(key.key, key.keyPosition, "one of location, insecure, tls-ca")
                        }
                    }
                    guard !entry.location.isEmpty else { throw wrong("registry", table.position, "a location") }
                    config.registries.append(entry)
                }
            default:
                throw wrong(member.key, member.keyPosition, "unqualified-search-registries or [[registry]]")
            }
        }
        return config
    }

    /// The registries to try for `reference`, in order: its own, or each of
    /// the search list for a short name.
    public func candidates(_ reference: Reference, text: String) throws(RegistryError) -> [Reference] {
        if reference.registry != nil { return [reference] }
        guard !searchRegistries.isEmpty else { throw .noSearchRegistries(text, config: path) }
        return searchRegistries.map { reference.on($0) }
    }

    /// How to reach `host` (`registry:port`).
    public func settings(for host: String) -> Registry {
        registries.first { $0.location == host } ?? Registry(location: host)
    }

    /// localhost and loopback addresses may be spoken to over plain HTTP,
    /// as Docker and podman allow.
    public static func isLoopback(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("[") {
            name = name.dropFirst().prefix { $0 != "]" }
            return name == "::1"
        }
        if let colon = name.lastIndex(of: ":") { name = name[..<colon] }
        return name == "localhost" || name.hasPrefix("127.")
    }
}
