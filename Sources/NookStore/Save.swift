#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookSupport

/// What `nook image save` writes.
public enum SaveFormat: String, CaseIterable, Sendable {
    /// An OCI image layout directory (image-layout.md).
    case oci
    /// A `docker save` tar (moby image/spec/v1.2.md), as docker and podman load.
    case dockerArchive = "docker-archive"
}

/// A blob an image is made of, kept in the store.
public struct KeptBlob: Sendable {
    public var digest: Digest
    public var size: UInt64
    public var path: String
    public var mediaType: String
}

/// An image as a registry or an OCI layout holds it: its manifest, and the
/// blobs it names.
public struct DistributionImage: Sendable {
    public var manifest: [UInt8]
    public var manifestDigest: Digest
    public var mediaType: String
    /// Lowest first.
    public var layers: [KeptBlob]
    public var config: KeptBlob
}

extension ImageStore {
    /// The image's manifest (the one it came with, when kept and still
    /// naming its blobs, so it keeps its digest; else a new OCI manifest)
    /// and its kept blobs. Images imported before layer blobs were kept
    /// lack them: that is an error naming the fix.
    public func distribution(_ image: StoredImage) throws(StoreError) -> DistributionImage {
        func kept(_ digest: Digest, what: String, type: String) throws(StoreError) -> KeptBlob {
            let path = blobsDirectory + "/" + digest.hex
            var sb = stat()
            guard stat(path, &sb) == 0 else {
                throw .unsupported("\(image.displayName): \(what) (\(digest.short)) is not kept in the store",
                                   hint: "images loaded before nook kept layer blobs lack them: remove the image "
                                       + "(nook image rm) and load or pull it again")
            }
            return KeptBlob(digest: digest, size: UInt64(sb.st_size), path: path, mediaType: type)
        }
        var layers: [KeptBlob] = []
        for (i, layer) in image.layers.enumerated() {
            guard let digest = layer.blob else {
                throw .unsupported("\(image.displayName): layer \(i + 1) has no recorded blob",
                                   hint: "remove the image (nook image rm) and load or pull it again")
            }
            let path = blobsDirectory + "/" + digest.hex
            layers.append(try kept(digest, what: "layer \(i + 1)'s blob", type: ImageStore.layerType(path)))
        }
        var config = try kept(image.id, what: "the config", type: "application/vnd.oci.image.config.v1+json")

        if let digest = image.manifest, let bytes = try? FS.readFile(blobsDirectory + "/" + digest.hex, max: 4 << 20),
           let m = try? JSON.decode(OCIManifest.self, bytes, what: ""), m.config.digest == image.id.description,
           m.layers.map(\.digest) == layers.map(\.digest.description) {
            for i in layers.indices { layers[i].mediaType = m.layers[i].mediaType ?? layers[i].mediaType }
            config.mediaType = m.config.mediaType ?? config.mediaType
            return DistributionImage(manifest: bytes, manifestDigest: digest, mediaType: m.mediaType ?? MediaType.ociManifest,
                                     layers: layers, config: config)
        }
        let manifest = OCIManifest(
            schemaVersion: 2, mediaType: MediaType.ociManifest,
            config: Descriptor(mediaType: config.mediaType, digest: image.id.description, size: Int64(config.size)),
            layers: layers.map { Descriptor(mediaType: $0.mediaType, digest: $0.digest.description, size: Int64($0.size)) })
        let bytes = JSON.encode(manifest)
        return DistributionImage(manifest: bytes, manifestDigest: try Digest.of(bytes), mediaType: MediaType.ociManifest,
                                 layers: layers, config: config)
    }

    /// The OCI media type of a layer blob, from its first bytes.
    static func layerType(_ path: String) -> String {
        var magic = [UInt8](repeating: 0, count: 4)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = read(fd, &magic, 4)
            close(fd)
        }
        if magic[0] == 0x1f && magic[1] == 0x8b { return "application/vnd.oci.image.layer.v1.tar+gzip" }
        if magic == [0x28, 0xb5, 0x2f, 0xfd] { return "application/vnd.oci.image.layer.v1.tar+zstd" }
        return "application/vnd.oci.image.layer.v1.tar"
    }

    /// Writes the image to `path`: a new OCI layout directory, or a new
    /// docker-archive file. Written under a temporary name and renamed, so
    /// a failure leaves nothing at `path`.
    public func save(_ reference: String, to path: String, format: SaveFormat) throws(StoreError) {
        let image = try self.image(reference)
        let dist = try distribution(image)
        guard !FS.exists(path) else {
            throw .invalidImage(source: path, message: "already exists; nook image save writes a new file or directory")
        }
        let temp = path + ".nook-save-\(getpid())"
        do throws(SystemFailure) {
            switch format {
            case .oci: try writeLayout(image, dist, to: temp)
            case .dockerArchive: try writeDockerArchive(image, dist, to: temp)
            }
            guard rename(temp, path) == 0 else { throw SystemFailure("rename \(temp) to", path: path) }
        } catch {
            if let fd = Optional(open(FS.split(temp).0.isEmpty ? "." : FS.split(temp).0, O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
               fd >= 0 {
                try? FS.removeTree(fd, FS.split(temp).1)
                close(fd)
            }
            unlink(temp)
            throw .system(error)
        }
    }

    private func writeLayout(_ image: StoredImage, _ dist: DistributionImage, to dir: String) throws(SystemFailure) {
        for d in [dir, dir + "/blobs", dir + "/blobs/sha256"] where mkdir(d, 0o755) != 0 {
            throw SystemFailure("create", path: d)
        }
        try FS.writeAtomically(dir + "/oci-layout", Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        for blob in dist.layers + [dist.config] {
            try copyFile(blob.path, to: dir + "/blobs/sha256/" + blob.digest.hex)
        }
        try FS.writeAtomically(dir + "/blobs/sha256/" + dist.manifestDigest.hex, dist.manifest)
        var descriptor = Descriptor(mediaType: dist.mediaType, digest: dist.manifestDigest.description,
                                    size: Int64(dist.manifest.count))
        if let name = image.names.first { descriptor.annotations = [Annotation.refName: name] }
        let index = OCIIndex(schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [descriptor])
        try FS.writeAtomically(dir + "/index.json", JSON.encode(index))
    }

    private func writeDockerArchive(_ image: StoredImage, _ dist: DistributionImage, to file: String) throws(SystemFailure) {
        let fd = try FS.open(file, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644, what: "create")
        defer { close(fd) }
        let tar = TarWriter(fd: fd, path: file)
        let entry = DockerArchiveImage(Config: dist.config.digest.hex + ".json", RepoTags: image.names,
                                       Layers: dist.layers.map { $0.digest.hex + ".tar" })
        try tar.add(name: "manifest.json", bytes: JSON.encode([entry]))
        try tar.add(name: entry.Config, file: dist.config.path)
        var seen: Set<Digest> = []
        for layer in dist.layers where seen.insert(layer.digest).inserted {
            try tar.add(name: layer.digest.hex + ".tar", file: layer.path)
        }
        try tar.finish()
    }

    private func copyFile(_ from: String, to: String) throws(SystemFailure) {
        let input = try FS.open(from, O_RDONLY)
        defer { close(input) }
        let output = try FS.open(to, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644, what: "create")
        defer { close(output) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(input, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SystemFailure("read", path: from) }
            if n == 0 { return }
            try FS.writeAll(output, Array(buf[0..<n]), path: to)
        }
    }
}

/// A ustar archive of regular files (names under 100 bytes), enough for a
/// docker-archive's manifest, config and layer blobs.
struct TarWriter {
    let fd: Int32
    let path: String

    func header(name: String, size: UInt64) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at offset: Int, width: Int) {
            for (i, b) in s.utf8.prefix(width).enumerated() { h[offset + i] = b }
        }
        func octal(_ v: UInt64, at offset: Int, width: Int) {
            let text = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - text.count)) + text, at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(0o644, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        put("        ", at: 148, width: 8)
        h[156] = UInt8(ascii: "0")
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        let sum = h.reduce(0) { $0 + UInt64($1) }
        let text = String(sum, radix: 8)
        put(String(repeating: "0", count: max(0, 6 - text.count)) + text, at: 148, width: 6)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        return h
    }

    func pad(_ size: UInt64) throws(SystemFailure) {
        let rest = Int((512 - size % 512) % 512)
        if rest > 0 { try FS.writeAll(fd, [UInt8](repeating: 0, count: rest), path: path) }
    }

    func add(name: String, bytes: [UInt8]) throws(SystemFailure) {
        try FS.writeAll(fd, header(name: name, size: UInt64(bytes.count)), path: path)
        try FS.writeAll(fd, bytes, path: path)
        try pad(UInt64(bytes.count))
    }

    func add(name: String, file: String) throws(SystemFailure) {
        let input = try FS.open(file, O_RDONLY)
        defer { close(input) }
        var sb = stat()
        guard fstat(input, &sb) == 0 else { throw SystemFailure("stat", path: file) }
        let size = UInt64(sb.st_size)
        try FS.writeAll(fd, header(name: name, size: size), path: path)
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while total < size {
            let n = read(input, &buf, min(buf.count, Int(size - total)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw SystemFailure("read", path: file) }
            try FS.writeAll(fd, Array(buf[0..<n]), path: path)
            total += UInt64(n)
        }
        try pad(size)
    }

    func finish() throws(SystemFailure) {
        try FS.writeAll(fd, [UInt8](repeating: 0, count: 1024), path: path)
    }
}
