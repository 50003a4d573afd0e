import NookRegistry
import NookRuntime
import NookSpec
import NookStore
import NookSupport

/// Looks an image up for `nook run IMAGE`, checks it can run here, and
/// leases it: the lease keeps its layers from `nook image rm` and `prune`
/// until nook ends.
enum ImageRun {
    static func prepare(_ reference: String, policy: PullPolicy, parsed: ParsedOptions,
                        host: inout HostContext) throws -> ImageLease {
        let store = ImageStore(root: ImageStore.defaultRoot(environment: host.environment, home: host.home))
        var found = policy == .always ? nil : try find(reference, in: store)
        if found == nil && policy != .never && shouldPull(reference, host: host) {
            var options = try PullCommand.pullOptions(parsed)
            options.load = LoadOptions()
            do {
                found = try PullCommand.pullImage(reference, options: options, parsed: parsed).image
            } catch let failure as any NookFailure where policy == .missing {
                throw HintedFailure(failure, context: "no image \(reference) in the store, and pulling it failed")
            }
        }
        guard let image = found else {
            let local = (try? Reference.parse(reference))?.registry == "localhost"
            throw UsageFailure("no image \(reference) in the store",
                               hint: "nook image ls lists them; nook pull or nook image load adds one. "
                                   + (local ? "localhost/ names images made or loaded on this machine, never pulled; "
                                          + "a registry on this machine is named with its port: localhost:5000/NAME"
                                        : "To run a command called \(reference), put -- first: "
                                          + "nook run -- \(reference) ..."))
        }
        try image.requireRunnable()
        let lease = try store.lease(image)
        let passwd = text(image.readFile("etc/passwd", max: 16 << 20))
        let group = text(image.readFile("etc/group", max: 16 << 20))
        // The name it was run by, where it is one of the image's (ps showed
        // another of its names: a fresh try).
        let asked = ImageName.normalize(reference).flatMap { image.names.contains($0) ? $0 : nil }
        host.image = ImageContext(name: asked ?? image.displayName, id: image.id.description, config: image.config,
                                  layers: lease.layerDirectories, passwd: passwd, group: group)
        Log.info("image: \(image.displayName) \(image.id.short), \(lease.layerDirectories.count) layers")
        return lease
    }

    /// Whether a missing image is looked for in a registry: a name with a
    /// registry, or a short name while registries are set to search. An
    /// image id (hex) is never pulled, nor localhost/NAME: podman and
    /// buildah name the images they make so, and nothing serves them on
    /// https://localhost (a registry on this machine has a port).
    static func shouldPull(_ reference: String, host: HostContext) -> Bool {
        guard let parsed = try? Reference.parse(reference) else { return false }
        if parsed.registry == "localhost" { return false }
        if parsed.registry != nil { return true }
        let config = try? RegistryConfig.load(path: RegistryConfig.defaultPath(environment: host.environment, home: host.home))
        return !(config?.searchRegistries.isEmpty ?? true)
    }

    /// The image, or nil when the store has none of that name.
    static func find(_ reference: String, in store: ImageStore) throws -> StoredImage? {
        do {
            return try store.image(reference)
        } catch {
            if case .notFound = error { return nil }
            throw error
        }
    }

    /// passwd and group as text: a field that is not UTF-8 (a Latin-1
    /// GECOS) must not hide the whole file; a name with such bytes cannot
    /// match what was typed anyway.
    static func text(_ bytes: [UInt8]?) -> String? {
        bytes.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// When `nook run IMAGE` pulls.
enum PullPolicy: String, CaseIterable {
    /// When the store has no image of that name.
    case missing
    /// Every time, so the tag's current image runs.
    case always
    /// Never: the store's image or an error.
    case never
}
