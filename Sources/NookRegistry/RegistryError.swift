import NookStore
import NookSupport

/// Why talking to a registry failed. Each case names the registry, the
/// image or blob, what the registry answered, and what the user can do.
/// Credentials never appear in one.
public enum RegistryError: NookFailure {
    /// The reference is not `[registry[:port]/]repository[:tag][@digest]`.
    case badReference(String, reason: String)
    /// A short name and no search registries to resolve it with.
    case noSearchRegistries(String, config: String)
    /// A configuration or credentials file that cannot be used.
    case badFile(path: String, message: String, hint: String)
    /// The registry answered a status nook cannot go on from.
    case status(registry: String, what: String, status: Int, message: String)
    /// The registry wants credentials nook does not have, or refused them.
    case unauthorized(registry: String, what: String, user: String?, source: String?)
    case notFound(registry: String, what: String)
    /// The transfer itself failed (connection, TLS, a truncated body) and
    /// retries did not help.
    case transfer(registry: String, what: String, message: String, hint: String?)
    /// A blob or manifest larger than it may be.
    case tooLarge(registry: String, what: String, limit: UInt64, option: String?)
    /// Something in the registry's answer that is not what the protocol says.
    case protocolViolation(registry: String, what: String, message: String)
    /// An index without the platform asked for.
    case noPlatform(reference: String, platform: String, available: [String])
    case unsupported(String, hint: String?)
    /// The image store refused or failed (digest mismatch, hostile layer...).
    case store(StoreError)
    case system(SystemFailure)
    case interrupted

    public var description: String {
        switch self {
        case .badReference(let text, let reason):
            return "'\(text)' is not an image reference: \(reason)"
        case .noSearchRegistries(let name, let config):
            return "\(name) is a short name and no registries are set to search (unqualified-search-registries in \(config) is empty)"
        case .badFile(let path, let message, _):
            return "\(path): \(message)"
        case .status(let registry, let what, let status, let message):
            return "\(registry): \(what): the registry answered \(status)\(message.isEmpty ? "" : " (\(message))")"
        case .unauthorized(let registry, let what, let user, let source):
            if let user {
                return "\(registry): \(what): the registry refused the credentials of \(user)"
                    + (source.map { " (from \($0))" } ?? "")
            }
            return "\(registry): \(what): the registry wants credentials and nook has none for it"
        case .notFound(let registry, let what):
            return "\(registry): \(what): not found"
        case .transfer(let registry, let what, let message, _):
            return "\(registry): \(what): \(message)"
        case .tooLarge(let registry, let what, let limit, _):
            return "\(registry): \(what) is larger than \(Size.binary(limit)); nothing was stored"
        case .protocolViolation(let registry, let what, let message):
            return "\(registry): \(what): \(message); nothing was stored"
        case .noPlatform(let reference, let platform, let available):
            return "\(reference) has no image for \(platform); it has \(available.isEmpty ? "none" : available.joined(separator: ", "))"
        case .unsupported(let message, _):
            return message
        case .store(let error):
            return error.description
        case .system(let failure):
            return failure.description
        case .interrupted:
            return "interrupted; nothing was stored"
        }
    }

    public var hint: String? {
        switch self {
        case .badReference:
            return "write [registry[:port]/]repository[:tag][@sha256:digest], repository in lowercase, "
                + "as in docker.io/library/alpine:3.20 or localhost:5000/app:1"
        case .noSearchRegistries(let name, let config):
            // Only a one-part name is under library/ on Docker Hub.
            let repository = name.split(separator: ":").first.map(String.init) ?? name
            let hub = repository.contains("/") ? "docker.io/\(name)" : "docker.io/library/\(name)"
            return "name the registry (\(hub)), or list registries to search in \(config): "
                + "unqualified-search-registries = [\"docker.io\"]"
        case .badFile(_, _, let hint):
            return hint
        case .unauthorized(let registry, _, let user, _):
            return user == nil ? "log in first: nook login \(registry)"
                : "log in again with the right user and password: nook login \(registry)"
        case .notFound:
            return "check the repository and tag; a private repository also answers not found without credentials"
        case .transfer(_, _, _, let hint):
            return hint
        case .tooLarge(_, _, _, let option):
            return option.map { "if you trust the image, raise the limit: \($0) SIZE" }
        case .protocolViolation:
            return "the registry (or something between it and you) sent wrong data; try again, and if it persists, "
                + "do not use this registry"
        case .noPlatform:
            return "choose one with --platform OS/ARCH[/VARIANT]"
        case .unsupported(_, let hint):
            return hint
        case .store(let error):
            if case .digestMismatch = error { return "the registry sent other content than the digest names; try again, and if it persists, do not use this registry" }
            if case .sizeMismatch = error { return "the registry sent other content than the manifest describes; try again, and if it persists, do not use this registry" }
            return error.hint
        case .system(let failure):
            return failure.hint
        default:
            return nil
        }
    }
}
