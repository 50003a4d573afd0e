#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

/// One image an import will store, as its manifest (or docker-archive
/// entry) and config describe it; the config (and manifest) are already
/// verified against their digests.
struct ImagePlan {
    var names: [String]
    var manifest: (digest: Digest, bytes: [UInt8])?
    var config: (digest: Digest, bytes: [UInt8])
    var configFile: ConfigFile
    var layers: [LayerPlan]
    var source: String

    /// How messages name the image.
    var label: String { names.first ?? "image \(config.digest.short)" }
}

/// One layer of an ImagePlan.
struct LayerPlan {
    /// 1-based, lowest first, for messages.
    var number: Int
    /// The blob's name in the source.
    var path: String
    /// The digest and size the manifest gives the blob (docker-archives
    /// give neither).
    var declared: Digest?
    var size: Int64?
    var diffID: Digest
    var chainID: Digest

    // Found while verifying.
    /// The blob's verified digest.
    var blob: Digest?
    /// A verified copy of the blob in the import's directory.
    var staged: String?
    var scan: LayerScan?
    /// Already unpacked in the store.
    var present = false

    /// How messages name the layer's blob.
    var label: Digest { declared ?? blob ?? diffID }
}

enum Plans {
    /// The images of an OCI image layout (image-layout.md): every manifest
    /// index.json lists; for an index of platforms, this host's (or the
    /// first one, stored but refused at run time).
    static func oci(_ source: ImportSource) throws(StoreError) -> [ImagePlan] {
        guard source.has("oci-layout") else {
            throw .invalidImage(source: source.label, message: "no oci-layout file: not an OCI image layout")
        }
        let index = try JSON.decode(OCIIndex.self, try source.read("index.json", max: 16 << 20),
                                    what: "\(source.label)/index.json")
        var plans: [ImagePlan] = []
        for descriptor in index.manifests {
            let (digest, bytes) = try chooseManifest(descriptor, source: source, depth: 0)
            let names = refNames(descriptor, layout: source.label)
            plans.append(try plan(manifest: digest, bytes: bytes, names: names, source: source))
        }
        guard !plans.isEmpty else { throw .invalidImage(source: source.label, message: "index.json lists no images") }
        return plans
    }

    /// The verified bytes of the blob a descriptor names.
    static func blob(_ d: Descriptor, source: ImportSource, what: String, max: Int = 32 << 20) throws(StoreError) -> (Digest, [UInt8]) {
        let digest = try Digest.parse(d.digest, what: what)
        let bytes = try source.read("blobs/sha256/\(digest.hex)", max: max)
        guard Int64(bytes.count) == d.size else { throw .sizeMismatch(what: what, expected: d.size, actual: UInt64(bytes.count)) }
        let actual = try Digest.of(bytes)
        guard actual == digest else { throw .digestMismatch(what: what, expected: digest, actual: actual) }
        return (digest, bytes)
    }

    /// A manifest, or this host's manifest of an index.
    static func chooseManifest(_ d: Descriptor, source: ImportSource, depth: Int) throws(StoreError) -> (Digest, [UInt8]) {
        let what = "\(source.label): manifest \(d.digest)"
        let (digest, bytes) = try blob(d, source: source, what: what)
        struct Peek: Decodable { var mediaType: String?; var manifests: [Descriptor]? }
        let peek = try JSON.decode(Peek.self, bytes, what: what)
        guard MediaType.isIndex(d.mediaType) || MediaType.isIndex(peek.mediaType) || peek.manifests != nil else {
            return (digest, bytes)
        }
        guard depth < 2 else { throw .invalidImage(source: what, message: "indexes nested too deep") }
        let index = try JSON.decode(OCIIndex.self, bytes, what: what)
        let host = Platform.current
        let linux = index.manifests.filter { $0.platform?.os == "linux" }
        let chosen = linux.first { $0.platform?.architecture == host.architecture
            && ($0.platform?.variant == nil || host.variant == nil || $0.platform?.variant == host.variant) }
            ?? linux.first ?? index.manifests.first
        guard let chosen else { throw .invalidImage(source: what, message: "the index lists no manifests") }
        return try chooseManifest(chosen, source: source, depth: depth + 1)
    }

    /// Names from a manifest descriptor's annotations: containerd's full
    /// name, else ref.name; a ref.name that is only a tag (as umoci and
    /// skopeo write `oci:DIR:TAG`) is combined with the layout's directory
    /// name: `localhost/DIR:TAG`.
    static func refNames(_ d: Descriptor, layout: String) -> [String] {
        let a = d.annotations ?? [:]
        // Said as a docker archive's bad RepoTags are (a fresh try saw
        // names dropped without a word).
        func ignored(_ text: String, _ key: String) -> [String] {
            warnIgnored(text, as: key, in: layout)
            return []
        }
        if let full = a[Annotation.containerdName] {
            if let name = ImageName.loadable(full) { return [name] }
            _ = ignored(full, Annotation.containerdName)
        }
        guard let ref = a[Annotation.refName] else { return [] }
        if ref.isEmpty { return ignored(ref, Annotation.refName) }
        if ref.contains("/") || ref.contains(":") || ref.contains("@") {
            return ImageName.loadable(ref).map { [$0] } ?? ignored(ref, Annotation.refName)
        }
        var base = FS.split(layout.hasSuffix("/") ? String(layout.dropLast()) : layout).1.lowercased()
        // An archive's name without its extension (a fresh try got
        // localhost/ociarch.tar:1).
        for suffix in [".tar.gz", ".tar.zst", ".tgz", ".tar"] where base.hasSuffix(suffix) && base.count > suffix.count {
            base = String(base.dropLast(suffix.count))
            break
        }
        if let name = ImageName.loadable("localhost/\(base):\(ref)") { return [name] }
        return ignored(ref, Annotation.refName)
    }

    /// A name from an image's files that is not kept, and why.
    static func warnIgnored(_ text: String, as key: String, in label: String) {
        Log.warning("\(label): ignoring the \(key) '\(escapedBytes(Array(text.utf8).prefix(200)))': "
            + (ImageName.normalize(text) != nil ? "a name with a digest is kept only from a pull, which checks it"
                : "not a valid image name"))
    }

    static func plan(manifest digest: Digest, bytes: [UInt8], names: [String], source: ImportSource) throws(StoreError) -> ImagePlan {
        let what = "\(source.label): manifest \(digest)"
        let manifest = try JSON.decode(OCIManifest.self, bytes, what: what)
        let (configDigest, configBytes) = try blob(manifest.config, source: source, what: "\(source.label): config \(manifest.config.digest)")
        let config = try JSON.decode(ConfigFile.self, configBytes, what: "\(source.label): config \(configDigest)")
        let diffIDs = try diffIDs(config, layers: manifest.layers.count, what: "\(source.label): config \(configDigest)")
        var layers: [LayerPlan] = []
        var chain: Digest?
        for (i, d) in manifest.layers.enumerated() {
            guard MediaType.isLayer(d.mediaType) else {
                throw .unsupported("\(source.label): layer \(i + 1) has media type \(d.mediaType ?? "?"), which nook cannot unpack",
                                   hint: "encrypted and non-tar layers are not supported")
            }
            let declared = try Digest.parse(d.digest, what: "\(source.label): layer \(i + 1)")
            chain = try chainID(chain, diffIDs[i])
            layers.append(LayerPlan(number: i + 1, path: "blobs/sha256/\(declared.hex)", declared: declared, size: d.size,
                                    diffID: diffIDs[i], chainID: chain!))
        }
        return ImagePlan(names: names, manifest: (digest, bytes), config: (configDigest, configBytes), configFile: config,
                         layers: layers, source: source.label)
    }

    /// The images of a `docker save` / `podman save` archive's manifest.json.
    /// Nothing in it is addressed by digest but the config (named by its
    /// digest) and, in Docker 25's layout, the blobs: every layer is checked
    /// against the diffID its config lists.
    static func docker(_ source: ImportSource) throws(StoreError) -> [ImagePlan] {
        let entries = try JSON.decode([DockerArchiveImage].self, try source.read("manifest.json", max: 16 << 20),
                                      what: "\(source.label)/manifest.json")
        var plans: [ImagePlan] = []
        for entry in entries {
            let what = "\(source.label): config \(entry.Config)"
            let bytes = try source.read(entry.Config, max: 32 << 20)
            let id = try Digest.of(bytes)
            if let named = digestInName(entry.Config), named != id {
                throw .digestMismatch(what: what, expected: named, actual: id)
            }
            let config = try JSON.decode(ConfigFile.self, bytes, what: what)
            let diffIDs = try diffIDs(config, layers: entry.Layers.count, what: what)
            var layers: [LayerPlan] = []
            var chain: Digest?
            for (i, path) in entry.Layers.enumerated() {
                chain = try chainID(chain, diffIDs[i])
                let declared = path.hasPrefix("blobs/sha256/") ? digestInName(path) : nil
                layers.append(LayerPlan(number: i + 1, path: path, declared: declared, size: nil, diffID: diffIDs[i],
                                        chainID: chain!))
            }
            var names: [String] = []
            for tag in entry.RepoTags ?? [] {
                if let name = ImageName.loadable(tag) { names.append(name) } else { warnIgnored(tag, as: "tag", in: source.label) }
            }
            plans.append(ImagePlan(names: names, manifest: nil, config: (id, bytes), configFile: config, layers: layers,
                                   source: source.label))
        }
        guard !plans.isEmpty else { throw .invalidImage(source: source.label, message: "manifest.json lists no images") }
        return plans
    }

    /// `<hex>.json`, `blobs/sha256/<hex>`: the digest a file name gives.
    static func digestInName(_ path: String) -> Digest? {
        var base = Substring(FS.split(path).1)
        if base.hasSuffix(".json") { base = base.dropLast(5) }
        return Digest(hex: base)
    }

    static func diffIDs(_ config: ConfigFile, layers: Int, what: String) throws(StoreError) -> [Digest] {
        guard config.rootfs.type == "layers" else {
            throw .invalidImage(source: what, message: "rootfs.type is '\(config.rootfs.type)', not 'layers'")
        }
        guard config.rootfs.diff_ids.count == layers else {
            throw .invalidImage(source: what, message: "the config lists \(config.rootfs.diff_ids.count) layers, "
                + "the manifest \(layers)")
        }
        guard layers > 0 else { throw .invalidImage(source: what, message: "the image has no layers") }
        var out: [Digest] = []
        for text in config.rootfs.diff_ids { out.append(try Digest.parse(text, what: "\(what): rootfs.diff_ids")) }
        return out
    }

    /// image-spec config.md: ChainID(L0) = DiffID(L0),
    /// ChainID(Ln) = SHA256(ChainID(Ln-1) + " " + DiffID(Ln)).
    static func chainID(_ below: Digest?, _ diffID: Digest) throws(StoreError) -> Digest {
        guard let below else { return diffID }
        return try Digest.of(Array("\(below) \(diffID)".utf8))
    }
}
