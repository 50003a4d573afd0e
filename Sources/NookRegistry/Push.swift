#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookStore
import NookSupport

// Pushing (distribution-spec spec.md, "Push"): each blob the registry lacks
// (HEAD answers 404) is uploaded whole, POST then PUT with ?digest=, and the
// manifest is PUT last, so the tag never names an image whose blobs are
// missing. The manifest is the one the image came with when the store has
// it, so the pushed image keeps its digest; otherwise an OCI manifest is
// made from the kept config and layer blobs.

public struct PushResult: Sendable {
    public var reference: Reference
    public var manifest: Digest
    public var uploaded: Int
    public var skipped: Int
}

public enum Pusher {
    public static func push(_ local: String, to destination: String?, tlsCA: String?, retry: RetryPolicy = RetryPolicy(),
                            environment env: RegistryEnvironment, progress: TransferProgress) throws(RegistryError) -> PushResult {
        let image: StoredImage
        do { image = try env.store.image(local) } catch { throw .store(error) }
        let target = try Reference.parse(destination ?? local)
        guard target.registry != nil else {
            throw .badReference(destination ?? local, reason: "a push needs the registry in the name (no search list is used)")
        }
        let dist: DistributionImage
        do { dist = try env.store.distribution(image) } catch { throw .store(error) }
        let (manifest, mediaType) = (dist.manifest, dist.mediaType)
        let blobs = (dist.layers + [dist.config]).map { Blob(digest: $0.digest, size: $0.size, path: $0.path) }
        let cancel = CancelFlag()
        let stop = Interrupts.watch(cancel)
        defer { stop() }
        let credential = try env.credentials.credential(registry: target.registry ?? "", repository: target.repository)
        let client = RegistryClient(reference: target, actions: "pull,push", config: env.config, tlsCA: tlsCA,
                                    credential: credential, retry: retry, cancel: cancel)
        progress.start(blobs.map { ($0.digest.short, $0.size) }, configs: 1)
        defer { progress.stop() }
        var uploaded = 0
        for (i, blob) in blobs.enumerated() {
            if try exists(client, blob.digest) {
                progress.set(i, .skipped)
                continue
            }
            try upload(client, blob, index: i, progress: progress)
            progress.set(i, .done)
            uploaded += 1
        }
        let digest = dist.manifestDigest
        let tag = target.tag ?? (target.digest == nil ? "latest" : digest.description)
        if let wanted = target.digest, wanted != digest {
            throw .store(.digestMismatch(what: "pushing \(local) as \(target)", expected: wanted, actual: digest))
        }
        let response = try client.send("manifest \(tag)") { _ throws(RegistryError) in
            RegistryClient.Attempt(method: "PUT", path: "manifests/\(tag)", headers: ["Content-Type: \(mediaType)"],
                                   body: .bytes(manifest))
        }
        guard response.status == 201 || response.status == 200 else {
            throw .status(registry: client.registry, what: "manifest \(tag)", status: response.status, message: response.message)
        }
        return PushResult(reference: target, manifest: digest, uploaded: uploaded, skipped: blobs.count - uploaded)
    }

    struct Blob {
        var digest: Digest
        var size: UInt64
        var path: String
    }

    static func exists(_ client: RegistryClient, _ digest: Digest) throws(RegistryError) -> Bool {
        let response = try client.send("blob \(digest.short)") { _ throws(RegistryError) in
            RegistryClient.Attempt(method: "HEAD", path: "blobs/\(digest)")
        }
        return response.status == 200
    }

    /// POST for an upload session, then PUT the whole blob to it; a failed
    /// PUT starts a new session (the old one may be gone).
    static func upload(_ client: RegistryClient, _ blob: Blob, index: Int, progress: TransferProgress) throws(RegistryError) {
        let what = "blob \(blob.digest.short)"
        let fd = open(blob.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(SystemFailure("open", path: blob.path)) }
        defer { close(fd) }
        var sessions = 0
        while true {
            sessions += 1
            let start = try client.send("\(what): start an upload") { _ throws(RegistryError) in
                RegistryClient.Attempt(method: "POST", path: "blobs/uploads/")
            }
            guard start.status == 202, let location = start.header("location"),
                  let base = URLParts(client.url("blobs/uploads/")), let target = base.resolve(location) else {
                throw .status(registry: client.registry, what: "\(what): start an upload", status: start.status,
                              message: start.message)
            }
            let url = target.text + (target.rest.contains("?") ? "&" : "?") + "digest=" + queryEscape(blob.digest.description)
            let counter = ProgressCounter()
            progress.set(index, .transferring, counter: counter)
            let put: HTTPResponse
            do {
                put = try client.send(what, retryable: false) { _ throws(RegistryError) in
                    RegistryClient.Attempt(method: "PUT", path: "", absolute: url,
                                           headers: ["Content-Type: application/octet-stream"],
                                           body: .file(fd: fd, offset: 0, length: blob.size), progress: counter)
                }
            } catch {
                if case .interrupted = error { throw error }
                guard sessions < 3 else { throw error }
                continue
            }
            if put.status == 201 { return }
            if (put.status >= 500 || put.status == 404) && sessions < 3 { continue }
            throw .status(registry: client.registry, what: what, status: put.status, message: put.message)
        }
    }
}
