import NookStore

// The documents a pull reads: image-spec manifest.md and image-index.md,
// and Docker's "Image Manifest V2, Schema 2" and manifest list, which have
// the same shape under other media types.

enum ManifestType {
    static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    static let ociIndex = "application/vnd.oci.image.index.v1+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let ociConfig = "application/vnd.oci.image.config.v1+json"
    static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    static let accept = "Accept: \(ociManifest), \(ociIndex), \(dockerManifest), \(dockerList)"

    static func isIndex(_ t: String?) -> Bool { t == ociIndex || t == dockerList }
}

struct Descriptor: Codable {
    var mediaType: String?
    var digest: String
    var size: Int64
    var platform: Platform?
    var annotations: [String: String]?
}

/// A manifest or an index, told apart by its fields and media type.
struct ManifestDocument: Decodable {
    var schemaVersion: Int?
    var mediaType: String?
    var config: Descriptor?
    var layers: [Descriptor]?
    var manifests: [Descriptor]?

    func isIndex(contentType: String?) -> Bool {
        ManifestType.isIndex(mediaType) || (mediaType == nil && ManifestType.isIndex(contentType))
            || (manifests != nil && config == nil)
    }
}

extension Platform {
    /// `linux/amd64`, `linux/arm64/v8`.
    public static func parse(_ text: String) -> Platform? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), !parts.contains(where: \.isEmpty) else { return nil }
        return Platform(architecture: parts[1], os: parts[0], variant: parts.count == 3 ? parts[2] : nil)
    }

    /// Whether an index entry for `other` runs here: same OS and
    /// architecture, and the same variant when both give one (arm64's
    /// variant is v8 when given at all).
    func accepts(_ other: Platform) -> Bool {
        guard os == other.os, architecture == other.architecture else { return false }
        guard let mine = variant, let theirs = other.variant else { return true }
        return mine == theirs
    }
}
