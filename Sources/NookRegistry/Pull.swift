#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NookSpec
import NookStore
import NookSupport

/// How to pull.
public struct PullOptions: Sendable {
    /// The platform to take from an index (default: this host's).
    public var platform: Platform?
    public var load = LoadOptions()
    /// Blobs downloading at once.
    public var jobs = 3
    /// Trust these certificate authorities (PEM) for every registry.
    public var tlsCA: String?
    public var retry = RetryPolicy()

    public init() {}
}

public struct PullResult: Sendable {
    public var image: StoredImage
    /// The reference the image came from, registry included.
    public var reference: Reference
    public var manifest: Digest
    /// Layers downloaded, and layers the store had.
    public var downloaded: Int
    public var reused: Int
    public var warnings: [String]
}

/// Everything a pull or push needs besides the reference.
public struct RegistryEnvironment: Sendable {
    public var config: RegistryConfig
    public var credentials: CredentialStore
    public var store: ImageStore
    public var context: HelperContext

    public init(config: RegistryConfig, credentials: CredentialStore, store: ImageStore, context: HelperContext) {
        self.config = config
        self.credentials = credentials
        self.store = store
        self.context = context
    }
}

public enum Puller {
    /// Pulls `text` into the store. A short name is tried on each registry
    /// of the search list in order, until one has it; which one is said.
    public static func pull(_ text: String, options: PullOptions, environment env: RegistryEnvironment,
                            progress: TransferProgress) throws(RegistryError) -> PullResult {
        let reference = try Reference.parse(text)
        let candidates = try env.config.candidates(reference, text: text)
        var lastError: RegistryError?
        for candidate in candidates {
            do {
                if reference.registry == nil {
                    progress.say("Trying \(candidate) (\(text) is a short name; \(env.config.searchSource): "
                        + "\(env.config.searchRegistries.joined(separator: ", ")))")
                }
                return try pullOne(candidate, options: options, environment: env, progress: progress)
            } catch {
                if case .notFound = error, candidates.count > 1 {
                    lastError = error
                    continue
                }
                throw error
            }
        }
        throw lastError ?? .notFound(registry: text, what: "image")
    }

    static func pullOne(_ reference: Reference, options: PullOptions, environment env: RegistryEnvironment,
                        progress: TransferProgress) throws(RegistryError) -> PullResult {
        let registry = reference.registry ?? ""
        let credential = try env.credentials.credential(registry: registry, repository: reference.repository)
        let cancel = CancelFlag()
        let client = RegistryClient(reference: reference, actions: "pull", config: env.config, tlsCA: options.tlsCA,
                                    credential: credential, retry: options.retry, cancel: cancel)
        let stop = Interrupts.watch(cancel)
        defer { stop() }

        // The manifest, through the index when there is one.
        var (digest, bytes, document) = try fetchManifest(client, reference.manifestReference,
                                                          expected: reference.digest, size: nil, what: "manifest \(reference)")
        if document.isIndex {
            let chosen = try choose(document.document.manifests ?? [], platform: options.platform, reference: reference)
            let expected = try storeDigest(chosen.digest, what: "\(reference): index entry")
            (digest, bytes, document) = try fetchManifest(client, expected.description, expected: expected,
                                                          size: chosen.size, what: "manifest \(expected) (\(chosen.platform.map(\.text) ?? "?") of \(reference))")
            guard !document.isIndex else {
                throw .unsupported("\(reference): the index for \(options.platform?.text ?? Platform.current.text) names another index",
                                   hint: "pull that index by its digest")
            }
        }
        if document.document.schemaVersion == 1 || document.document.config == nil {
            throw .unsupported("\(reference): the manifest is Docker's schema 1 (or has no config), which nook does not read",
                               hint: "push the image again with a current tool (schema 2 or OCI)")
        }

        // The config, verified, and the import that takes the layers.
        let configDescriptor = document.document.config!
        let configDigest = try storeDigest(configDescriptor.digest, what: "\(reference): config")
        let config = try fetchSmallBlob(client, configDigest, size: configDescriptor.size, what: "config \(configDigest.short)")
        let names = reference.storeName.map { [$0] } ?? []
        let label = "docker://\(reference)"
        let importer: RemoteImport
        do {
            importer = try RemoteImport(store: env.store, manifest: (digest, bytes), config: (configDigest, config),
                                        names: names, label: label, options: options.load, context: env.context)
        } catch {
            throw .store(error)
        }
        defer { importer.finish() }
        let layers = importer.layers
        progress.start(layers.map { ($0.digest.short, UInt64($0.size)) })
        defer { progress.stop() }
        for (i, layer) in layers.enumerated() where !layer.needed { progress.set(i, .present) }

        // Downloads on up to `jobs` threads; layers unpack here, lowest
        // first, as soon as each has arrived.
        let board = Board(count: layers.count)
        let needed = layers.indices.filter { layers[$0].needed }
        let workers = DispatchGroup()
        let partialDir = importer.partialDirectory
        for _ in 0..<min(max(options.jobs, 1), needed.count) {
            workers.enter()
            DispatchQueue.global().async {
                defer { workers.leave() }
                while let i = board.take(needed) {
                    do throws(RegistryError) {
                        try download(client, layers[i], index: i, partialDirectory: partialDir, progress: progress)
                        board.finish(i)
                    } catch {
                        board.fail(error)
                        cancel.cancel()
                    }
                }
            }
        }
        do throws(RegistryError) {
            for i in layers.indices {
                if layers[i].needed {
                    try board.wait(for: i)
                    progress.set(i, .unpacking)
                }
                do { try importer.add(i) } catch { throw RegistryError.store(error) }
                if layers[i].needed { progress.set(i, .done) }
            }
            workers.wait()
            let (image, warnings): (StoredImage, [String])
            do { (image, warnings) = try importer.commit() } catch { throw RegistryError.store(error) }
            return PullResult(image: image, reference: reference, manifest: digest, downloaded: needed.count,
                              reused: layers.count - needed.count, warnings: warnings)
        } catch {
            cancel.cancel()
            board.fail(error)
            workers.wait()
            importer.rollBack()
            if cancel.isCancelled && Interrupts.received { throw .interrupted }
            throw error
        }
    }

    /// A manifest or index and whether it is an index.
    struct Fetched {
        var document: ManifestDocument
        var isIndex: Bool
    }

    static func fetchManifest(_ client: RegistryClient, _ ref: String, expected: Digest?, size: Int64?,
                              what: String) throws(RegistryError) -> (Digest, [UInt8], Fetched) {
        let response = try client.send(what) { _ throws(RegistryError) in
            RegistryClient.Attempt(path: "manifests/\(ref)", headers: [ManifestType.accept], maxBody: 4 << 20)
        }
        if response.status == 404 { throw .notFound(registry: client.registry, what: what) }
        guard response.status == 200 else {
            throw .status(registry: client.registry, what: what, status: response.status, message: response.message)
        }
        let bytes = response.body
        let actual: Digest
        do { actual = try Digest.of(bytes) } catch { throw .store(error) }
        let source = "\(client.registry): \(what)"
        if let expected, expected != actual {
            throw .store(.digestMismatch(what: source, expected: expected, actual: actual))
        }
        if let size, Int64(bytes.count) != size {
            throw .store(.sizeMismatch(what: source, expected: size, actual: UInt64(bytes.count)))
        }
        if expected == nil, let header = response.header("docker-content-digest"), let claimed = Digest(header),
           claimed != actual {
            throw .store(.digestMismatch(what: "\(source) (its Docker-Content-Digest)", expected: claimed, actual: actual))
        }
        let document: ManifestDocument
        do { document = try JSONParse.decode(ManifestDocument.self, bytes) } catch {
            throw .protocolViolation(registry: client.registry, what: what, message: "not a manifest: \(error)")
        }
        let contentType = response.header("content-type")?.split(separator: ";").first.map { $0.trimming(" ") }
        return (actual, bytes, Fetched(document: document, isIndex: document.isIndex(contentType: contentType)))
    }

    /// The entry of an index for `platform` (default: this host's).
    static func choose(_ entries: [Descriptor], platform: Platform?, reference: Reference) throws(RegistryError) -> Descriptor {
        let want = platform ?? Platform.current
        let listed = entries.compactMap { $0.platform }.filter { $0.os != "unknown" }
        if let match = entries.first(where: { $0.platform.map { want.accepts($0) } ?? false }) { return match }
        throw .noPlatform(reference: reference.description, platform: want.text, available: listed.map(\.text))
    }

    static func storeDigest(_ text: String, what: String) throws(RegistryError) -> Digest {
        guard let d = Digest(text) else {
            throw .unsupported("\(what): '\(text)' is not a sha256 digest", hint: "nook accepts sha256 digests only")
        }
        return d
    }

    /// A config blob, in memory, verified.
    static func fetchSmallBlob(_ client: RegistryClient, _ digest: Digest, size: Int64,
                               what: String) throws(RegistryError) -> [UInt8] {
        guard size >= 0, size <= 32 << 20 else {
            throw .tooLarge(registry: client.registry, what: what, limit: 32 << 20, option: nil)
        }
        let response = try client.send(what) { _ throws(RegistryError) in
            RegistryClient.Attempt(path: "blobs/\(digest)", maxBody: UInt64(size))
        }
        if response.status == 404 { throw .notFound(registry: client.registry, what: what) }
        guard response.status == 200 else {
            throw .status(registry: client.registry, what: what, status: response.status, message: response.message)
        }
        let source = "\(client.registry)/\(client.repository): \(what)"
        guard Int64(response.body.count) == size else {
            throw .store(.sizeMismatch(what: source, expected: size, actual: UInt64(response.body.count)))
        }
        let actual: Digest
        do { actual = try Digest.of(response.body) } catch { throw .store(error) }
        guard actual == digest else { throw .store(.digestMismatch(what: source, expected: digest, actual: actual)) }
        return response.body
    }

    /// Downloads a layer blob to `layer.path`, resuming what an earlier try
    /// (or an earlier, interrupted pull) left in the partial directory.
    /// The blob is verified afterwards by the import.
    static func download(_ client: RegistryClient, _ layer: RemoteLayer, index: Int, partialDirectory: String,
                         progress: TransferProgress) throws(RegistryError) {
        let partial = partialDirectory + "/" + layer.digest.hex
        // Another pull downloading the same blob: wait for it, then take
        // what it left (the part to resume). When it finished, it moved
        // the file into its import, and a fresh partial is taken (a fresh
        // try's concurrent pulls failed with ENOENT renaming one that was gone).
        let held: LockFile
        do { held = try LockFile.exclusive(partial, writable: true) } catch { throw .system(error) }
        defer { withExtendedLifetime(held) {} }
        let fd = held.fd
        let size = UInt64(layer.size)
        let what = "layer \(index + 1) blob \(layer.digest)"
        var shortAnswers = 0
        // Bytes left by an earlier try may have come from another registry
        // (partials are kept by digest): checked here once complete, and
        // fetched whole once more if wrong, rather than blaming this
        // registry for them (a fresh try).
        var resumed = fileSize(fd) > 0 && fileSize(fd) <= size
        func wholeOrStartOver() -> Bool {
            guard resumed else { return true }
            resumed = false
            lseek(fd, 0, SEEK_SET)
            if let (actual, _) = try? Digest.of(fd: fd, max: size, what: what), actual == layer.digest { return true }
            Log.info("\(client.registry): \(what): what an earlier try left is not that blob; downloading it whole")
            ftruncate(fd, 0)
            return false
        }
        while true {
            var have = fileSize(fd)
            if have > size {
                ftruncate(fd, 0)
                have = 0
            }
            if have == size {
                if wholeOrStartOver() { break }
                continue
            }
            let counter = ProgressCounter()
            let response = try client.send(what) { _ throws(RegistryError) in
                have = fileSize(fd)
                if have > size {
                    ftruncate(fd, 0)
                    have = 0
                }
                lseek(fd, off_t(have), SEEK_SET)
                progress.set(index, .transferring, counter: counter, base: have)
                var a = RegistryClient.Attempt(path: "blobs/\(layer.digest)", output: fd, maxBody: size,
                                               progress: counter)
                if have > 0 {
                    a.headers.append("Range: bytes=\(have)-")
                    a.restartOnFull = true
                }
                return a
            }
            if response.status == 404 { throw .notFound(registry: client.registry, what: what) }
            if response.status == 416 {
                // The range is past what the registry has: start over.
                ftruncate(fd, 0)
            } else if response.status != 200 && response.status != 206 {
                throw .status(registry: client.registry, what: what, status: response.status, message: response.message)
            }
            if fileSize(fd) == size {
                if wholeOrStartOver() { break }
                continue
            }
            // A whole answer that was shorter than the blob: try again from
            // where it ended, a few times.
            shortAnswers += 1
            if shortAnswers >= client.retry.attempts {
                throw .store(.sizeMismatch(what: "\(client.registry)/\(client.repository): \(what) (the registry's "
                    + "answers ended early \(shortAnswers) times)", expected: layer.size, actual: fileSize(fd)))
            }
            Log.info("\(client.registry): \(what): the answer ended at \(fileSize(fd)) of \(size) bytes; resuming")
            client.pause(milliseconds: client.backoff(shortAnswers))
        }
        guard rename(partial, layer.path) == 0 else { throw .system(SystemFailure("move the blob to", path: layer.path)) }
        progress.set(index, .transferred)
    }

    static func fileSize(_ fd: Int32) -> UInt64 {
        var sb = stat()
        return fstat(fd, &sb) == 0 ? UInt64(sb.st_size) : 0
    }
}

/// Which layers have arrived, and the first failure, shared by the download
/// threads and the thread that unpacks.
final class Board: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var done: [Bool]
    private var taken: Set<Int> = []
    private var failure: RegistryError?

    init(count: Int) {
        done = Array(repeating: false, count: count)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    /// The next of `order` no thread has taken, lowest first; nil when none
    /// is left or something failed.
    func take(_ order: [Int]) -> Int? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard failure == nil, let i = order.first(where: { !taken.contains($0) }) else { return nil }
        taken.insert(i)
        return i
    }

    func finish(_ i: Int) {
        pthread_mutex_lock(&mutex)
        done[i] = true
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    func fail(_ error: RegistryError) {
        pthread_mutex_lock(&mutex)
        if failure == nil { failure = error }
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    func wait(for i: Int) throws(RegistryError) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !done[i] && failure == nil { pthread_cond_wait(&condition, &mutex) }
        if !done[i], let failure { throw failure }
    }
}
