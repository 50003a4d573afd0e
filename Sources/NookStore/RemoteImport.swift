#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

/// One layer of an image a registry client brings into the store.
public struct RemoteLayer: Sendable {
    /// 1-based, lowest first.
    public let number: Int
    public let digest: Digest
    public let size: Int64
    /// False when the store has the layer already: it is not downloaded.
    public let needed: Bool
    /// Where the client writes the blob; it is verified there.
    public let path: String
}

/// An import whose blobs arrive one by one from a registry: the same
/// session, checks, unpacking and commit as `nook image load`, fed layer by
/// layer (lowest first) as downloads finish, so that layers unpack while
/// later ones are still downloading. The manifest and config must be
/// verified against their digests by the caller; every layer blob is
/// verified here against the manifest's digest and size, its diffID and
/// entries checked, before it is unpacked. Call `finish` in every case, and
/// `rollBack` after a failure: nothing is left in the store.
public final class RemoteImport {
    let session: ImportSession
    let source: ImportSource
    var plan: ImagePlan
    var lowers: [String] = []
    var reports: [UnpackReport] = []
    public let layers: [RemoteLayer]

    /// `manifest` and `config`: verified bytes. `label` names the source in
    /// messages (`docker://localhost:5000/app:1`).
    public init(store: ImageStore, manifest: (Digest, [UInt8]), config: (Digest, [UInt8]), names: [String],
                label: String, options: LoadOptions, context: HelperContext) throws(StoreError) {
        try store.prepare()
        store.removeLeftovers(context: context)
        let session = try ImportSession(store: store, options: options, context: context)
        do throws(StoreError) {
            let parsed = try JSON.decode(OCIManifest.self, manifest.1, what: "\(label): manifest \(manifest.0)")
            var files: [String: String] = [:]
            let configPath = session.directory + "/config"
            do { try FS.writeAtomically(configPath, config.1, mode: 0o600) } catch { throw .system(error) }
            files["blobs/sha256/\(config.0.hex)"] = configPath
            for d in parsed.layers {
                let digest = try Digest.parse(d.digest, what: "\(label): layer")
                files["blobs/sha256/\(digest.hex)"] = session.directory + "/blob-" + digest.hex
            }
            let source = ImportSource(label: label, kind: .staged(files))
            var plan = try Plans.plan(manifest: manifest.0, bytes: manifest.1, names: names, source: source)
            var layers: [RemoteLayer] = []
            for i in plan.layers.indices {
                let layer = plan.layers[i]
                guard let declared = layer.declared, let size = layer.size, size >= 0 else {
                    throw .invalidImage(source: label, message: "layer \(layer.number) has no digest or size")
                }
                if UInt64(size) > options.limits.maxLayerBytes {
                    throw .limit(layer: declared, what: "the blob's size in the manifest (\(size) bytes)",
                                 limit: options.limits.maxLayerBytes, option: "--max-layer-bytes")
                }
                // A layer the store has is leased now, so prune cannot take
                // it before the image is recorded; its blob is not fetched.
                var present = false
                if let record = try store.readLayer(layer.chainID), record.blobs.contains(declared) {
                    present = try session.leaseIfPresent(layer.chainID)
                }
                if present {
                    plan.layers[i].present = true
                    plan.layers[i].blob = declared
                }
                layers.append(RemoteLayer(number: layer.number, digest: declared, size: size, needed: !present,
                                          path: files["blobs/sha256/\(declared.hex)"] ?? ""))
            }
            self.session = session
            self.source = source
            self.plan = plan
            self.layers = layers
        } catch {
            session.finish()
            throw error
        }
    }

    /// The directory of the import, on the store's file system.
    public var directory: String { session.directory }

    /// Where partly downloaded blobs are kept between tries, so a later pull
    /// resumes them: `<store>/partial/<hex>`.
    public var partialDirectory: String { session.store.partialDirectory }

    /// Verifies, checks and unpacks layer `index` (0-based), whose blob is
    /// at `layers[index].path` unless the store had it. Call in order.
    public func add(_ index: Int) throws(StoreError) {
        precondition(index == lowers.count, "layers are added lowest first")
        let chain = plan.layers[index].chainID
        defer { lowers.append(session.store.layerDirectory(chain) + "/diff") }
        if plan.layers[index].present { return }
        try session.verify(&plan.layers[index], of: plan, source: source)
        let single = ImagePlan(names: plan.names, manifest: nil, config: plan.config, configFile: plan.configFile,
                               layers: [plan.layers[index]], source: plan.source)
        try session.checkOwners([single])
        if let report = try session.ensure(&plan.layers[index], of: plan, lowers: lowers, source: source) {
            reports.append(report)
        }
    }

    /// Records the image and its names; returns it and the warnings of
    /// unpacking (one line each).
    public func commit() throws(StoreError) -> (StoredImage, [String]) {
        let warnings = ImportSession.warnings(for: plan.label, reports, capacity: session.context.capacity)
        let images = try session.commit([plan])
        guard let image = images.first else { throw .damaged("the import recorded no image") }
        return (image, warnings)
    }

    public func rollBack() { session.rollBack() }

    public func finish() { session.finish() }
}

extension ImageStore {
    /// Partly downloaded blobs, by hex digest (kept for resuming; prune
    /// removes those no pull is writing).
    public var partialDirectory: String { root + "/partial" }

    /// The path of a kept blob (manifest, config or layer), or nil.
    public func blobPath(_ digest: Digest) -> String? {
        let path = blobsDirectory + "/" + digest.hex
        return FS.exists(path) ? path : nil
    }
}
