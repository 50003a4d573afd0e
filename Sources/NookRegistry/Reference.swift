import NookStore

/// An image reference as the distribution spec and Docker write it:
/// `[registry[:port]/]repository[:tag][@sha256:digest]` (distribution's
/// reference grammar). The first component is a registry when it has a
/// `.` or `:` or is `localhost`; otherwise the name is short and
/// `RegistryConfig.candidates` resolves it through the search list.
public struct Reference: Equatable, Sendable, CustomStringConvertible {
    /// `docker.io`, `quay.io`, `localhost:5000`; nil for a short name.
    public var registry: String?
    /// `library/alpine`, `org/tool`.
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    /// Parses `text`, saying what is wrong with it.
    public static func parse(_ text: String) throws(RegistryError) -> Reference {
        func bad(_ reason: String) -> RegistryError { .badReference(text, reason: reason) }
        guard !text.isEmpty else { throw bad("it is empty") }
        guard text.utf8.count <= 512 else { throw bad("it is longer than 512 bytes") }
        var rest = Substring(text)
        var digest: Digest?
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            guard let parsed = Digest(d) else {
                throw bad(d.hasPrefix("sha256:") ? "'\(d)' is not sha256: and 64 lowercase hex digits"
                    : "'\(d)' is not a sha256 digest (the only kind nook accepts)")
            }
            digest = parsed
            rest = rest[..<at]
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let t = rest[rest.index(after: colon)...]
            guard ImageName.isTag(t) else {
                throw bad("the tag '\(t)' is not letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')")
            }
            tag = String(t)
            rest = rest[..<colon]
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var registry: String?
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            let domain = parts.removeFirst()
            guard ImageName.isDomain(domain) else { throw bad("'\(domain)' is not a host name with an optional :port") }
            registry = domain == "index.docker.io" ? "docker.io" : domain
        }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { throw bad("it has an empty path component") }
        for part in parts where !ImageName.isPathComponent(part) {
            let upper = part.contains { $0.isUppercase }
            throw bad("'\(part)' is not a repository component" + (upper ? " (repositories are lowercase)"
                : ": lowercase letters and digits, joined by '.', '_', '__' or '-'"))
        }
        var repository = parts.joined(separator: "/")
        if registry == "docker.io" && parts.count == 1 { repository = "library/" + repository }
        return Reference(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    /// The same name on `registry` (for a short name from the search list).
    public func on(_ registry: String) -> Reference {
        var r = self
        r.registry = registry == "index.docker.io" ? "docker.io" : registry
        if r.registry == "docker.io" && !repository.contains("/") { r.repository = "library/" + repository }
        return r
    }

    /// The tag or digest to ask the registry for: the digest when both are
    /// given (the tag is then only a name), else the tag, else `latest`.
    public var manifestReference: String { digest?.description ?? tag ?? "latest" }

    /// The host to connect to: Docker Hub's API is not at docker.io.
    public var apiHost: String { registry == "docker.io" ? "registry-1.docker.io" : registry ?? "" }

    /// `docker.io/library/alpine:3.20`, with `:latest` when neither tag nor
    /// digest was given.
    public var description: String {
        var out = (registry.map { $0 + "/" } ?? "") + repository
        if let tag { out += ":" + tag } else if digest == nil { out += ":latest" }
        if let digest { out += "@" + digest.description }
        return out
    }

    /// The name the store keeps it under (familiar form: `alpine:3.20`).
    public var storeName: String? { ImageName.normalize(description) }
}
