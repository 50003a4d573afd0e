import NookSpec

// The JSON documents of image-spec v1.1 (image-layout.md, image-index.md,
// manifest.md, config.md, descriptor.md) and the manifest.json of
// `docker save` (moby image/spec/v1.2.md, "Combined Image JSON + Filesystem
// Changeset Format"). Only the fields nook reads.

enum MediaType {
    static let ociIndex = "application/vnd.oci.image.index.v1+json"
    static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"

    static func isIndex(_ t: String?) -> Bool { t == ociIndex || t == dockerList }
    static func isManifest(_ t: String?) -> Bool { t == ociManifest || t == dockerManifest }

    /// Layer media types nook unpacks: OCI and Docker tar layers, plain,
    /// gzip or zstd (the stream itself says which), including
    /// non-distributable ones whose blob is present.
    static func isLayer(_ t: String?) -> Bool {
        guard let t else { return true }
        if t.contains("encrypted") { return false }
        return t.hasPrefix("application/vnd.oci.image.layer.") || t.hasPrefix("application/vnd.docker.image.rootfs.")
    }
}

/// A platform in OCI's terms (image-index.md, "platform"): `linux/amd64`.
public struct Platform: Codable, Equatable, Sendable {
    public var architecture: String
    public var os: String
    public var variant: String?

    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }
}

struct Descriptor: Codable {
    var mediaType: String?
    var digest: String
    var size: Int64
    var annotations: [String: String]?
    var platform: Platform?
}

struct OCIIndex: Codable {
    var schemaVersion: Int?
    var mediaType: String?
    var manifests: [Descriptor]
}

struct OCIManifest: Codable {
    var schemaVersion: Int?
    var mediaType: String?
    var config: Descriptor
    var layers: [Descriptor]
}

/// An empty JSON object, as ExposedPorts and Volumes map to.
struct EmptyObject: Codable, Equatable {}

/// The image configuration blob.
struct ConfigFile: Codable {
    struct Container: Codable {
        var User: String?
        var ExposedPorts: [String: EmptyObject]?
        var Env: [String]?
        var Entrypoint: [String]?
        var Cmd: [String]?
        var WorkingDir: String?
        var Labels: [String: String]?
        var StopSignal: String?
        var Healthcheck: Healthcheck?
    }

    /// Docker's HealthConfig: durations in nanoseconds.
    struct Healthcheck: Codable {
        var Test: [String]?
        var Interval: Int64?
        var Timeout: Int64?
        var StartPeriod: Int64?
        var Retries: Int?
    }

    struct RootFS: Codable {
        var type: String
        var diff_ids: [String]
    }

    var architecture: String?
    var os: String?
    var variant: String?
    var config: Container?
    var rootfs: RootFS

    /// The plain values the runtime uses.
    var imageConfig: ImageConfig {
        let c = config
        return ImageConfig(
            entrypoint: c?.Entrypoint, cmd: c?.Cmd, env: c?.Env ?? [],
            workingDir: c?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 },
            user: c?.User.flatMap { $0.isEmpty ? nil : $0 },
            exposedPorts: (c?.ExposedPorts ?? [:]).keys.sorted(), labels: c?.Labels ?? [:],
            stopSignal: c?.StopSignal,
            healthcheck: c?.Healthcheck.map {
                ImageHealthcheck(test: $0.Test ?? [], interval: $0.Interval, timeout: $0.Timeout,
                                 startPeriod: $0.StartPeriod, retries: $0.Retries)
            },
            architecture: architecture ?? "unknown", os: os ?? "linux", variant: variant)
    }
}

/// One image of a `docker save` / `podman save` archive's manifest.json.
struct DockerArchiveImage: Codable {
    var Config: String
    var RepoTags: [String]?
    var Layers: [String]
}

enum Annotation {
    static let refName = "org.opencontainers.image.ref.name"
    static let containerdName = "io.containerd.image.name"
}
