import Foundation
import Testing
@testable import NookStore

/// The store end to end in this process: the helper runs in-process instead
/// of in a user namespace, and layers are owned by this process's ids.
@Suite struct StoreTests {
    let temp = TempDirectory()
    var store: ImageStore { ImageStore(root: temp.path + "/store") }
    let context = HelperContext(capacity: IDCapacity(uids: UInt64(getuid()) + 1, gids: UInt64(getgid()) + 1, user: "t")) {
        StoreHelper.main($0)
    }

    /// An OCI image layout of uncompressed layers.
    func layout(_ name: String, ref: String?, layers: [[UInt8]]) throws -> String {
        let dir = temp.mkdir(name)
        _ = temp.mkdir(name + "/blobs/sha256")
        func blob(_ bytes: [UInt8]) throws -> Digest {
            let d = try Digest.of(bytes)
            _ = temp.write("\(name)/blobs/sha256/\(d.hex)", bytes)
            return d
        }
        let digests = try layers.map(blob)
        let config = try blob(Array("""
            {"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},\
            "rootfs":{"type":"layers","diff_ids":[\(digests.map { "\"\($0)\"" }.joined(separator: ","))]}}
            """.utf8))
        let configSize = try FileManager.default.attributesOfItem(atPath: "\(dir)/blobs/sha256/\(config.hex)")[.size] as! Int
        let layerJSON = zip(digests, layers).map {
            "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"\($0)\",\"size\":\($1.count)}"
        }
        let manifest = Array("""
            {"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(config)",\
            "size":\(configSize)},"layers":[\(layerJSON.joined(separator: ","))]}
            """.utf8)
        let m = try blob(manifest)
        let annotations = ref.map { ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"\($0)\"}" } ?? ""
        _ = temp.write(name + "/index.json", Array("""
            {"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",\
            "digest":"\(m)","size":\(manifest.count)\(annotations)}]}
            """.utf8))
        _ = temp.write(name + "/oci-layout", Array("{\"imageLayoutVersion\":\"1.0.0\"}".utf8))
        return dir
    }

    func layer(_ files: [String: String]) -> [UInt8] {
        var tar = TarBuilder()
        for (name, data) in files.sorted(by: { $0.key < $1.key }) { tar.add(name, data: data) }
        return tar.archive
    }

    @Test func imagesThatShareALowerLayerShareItsDirectory() throws {
        let base = layer(["etc/os-release": "base"])
        let a = try layout("a", ref: "localhost/a:1", layers: [base, layer(["a": "a"])])
        let b = try layout("b", ref: "localhost/b:1", layers: [base, layer(["b": "b"])])
        var options = LoadOptions()
        options.tags = ["alpine:latest"]
        let one = try store.load(a, options: options, context: context).images[0]
        let two = try store.load(b, options: LoadOptions(), context: context).images[0]
        #expect(one.layers[0].directory == two.layers[0].directory)
        #expect(FS.list(store.layersDirectory).count == 3)
        #expect(try store.image("localhost/a:1").id == one.id)
        #expect(try store.image("docker.io/library/alpine").id == one.id, "the familiar form, tag latest")
        #expect(one.names == ["alpine:latest", "localhost/a:1"])
        #expect(throws: StoreError.self) { try store.image("localhost/a:2") }
        #expect(try store.image(String(one.id.hex.prefix(8))).id == one.id)
        // A short name finds localhost/NAME; the docker name wins over it.
        #expect(try store.image("b:1").id == two.id)
        #expect(try store.image("b:1").displayName == "localhost/b:1")
        #expect(throws: StoreError.self) { try store.image("library/b:1") }
        var alias = LoadOptions()
        alias.tags = ["localhost/alpine:latest"]
        _ = try store.load(b, options: alias, context: context)
        #expect(try store.image("alpine").id == one.id)
    }

    @Test func removingAnImageKeepsTheLayersAnotherUsesAndPruneTakesTheRest() throws {
        let base = layer(["base": "base"])
        let a = try layout("a", ref: "localhost/a:1", layers: [base, layer(["a": "a"])])
        let b = try layout("b", ref: "localhost/b:1", layers: [base])
        _ = try store.load(a, options: LoadOptions(), context: context)
        _ = try store.load(b, options: LoadOptions(), context: context)
        #expect(try store.remove(["localhost/a:1"], force: false, context: context).count == 1)
        #expect(FS.list(store.layersDirectory).count == 1, "the shared base stays, a's own layer goes")
        _ = try store.remove(["localhost/b:1"], force: false, context: context)
        #expect(FS.list(store.layersDirectory).isEmpty)
        #expect(FS.list(store.blobsDirectory).isEmpty)
        #expect(FS.list(store.trashDirectory).isEmpty)
    }

    @Test func aLeasedImageIsNeitherRemovedNorPruned() throws {
        let a = try layout("a", ref: "localhost/a:1", layers: [layer(["a": "a"])])
        let image = try store.load(a, options: LoadOptions(), context: context).images[0]
        var lease: ImageLease? = try store.lease(image)
        #expect(lease?.layerDirectories == image.layerDirectories)
        #expect(throws: StoreError.self) { try store.remove(["localhost/a:1"], force: false, context: context) }
        _ = try store.remove(["localhost/a:1"], force: true, context: context)
        let kept = try store.prune(context: context)
        #expect(kept.layers == 0 && kept.layersInUse == 1)
        #expect(FS.exists(image.layers[0].directory), "the running sandbox still has its layer")
        lease = nil
        let pruned = try store.prune(context: context)
        #expect(pruned.layers == 1 && !FS.exists(image.layers[0].directory))
        _ = lease
    }

    @Test func aBlobThatIsNotItsDigestStoresNothingAndKeepsTheGoodCopy() throws {
        let good = try layout("good", ref: "localhost/x:1", layers: [layer(["f": "good"])])
        let image = try store.load(good, options: LoadOptions(), context: context).images[0]
        let before = FS.list(image.layers[0].directory)
        // The same image whose layer blob changed by one byte.
        let bad = try layout("bad", ref: "localhost/x:2", layers: [layer(["f": "good"])])
        let blobs = bad + "/blobs/sha256/" + image.layers[0].diffID.hex
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: blobs)))
        bytes[600] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: blobs))
        #expect {
            _ = try store.load(bad, options: LoadOptions(), context: context)
        } throws: { error in
            "\(error)".contains("digest mismatch: expected \(image.layers[0].diffID), got sha256:")
        }
        #expect(FS.list(image.layers[0].directory) == before)
        #expect(try String(contentsOfFile: image.layers[0].directory + "/f", encoding: .utf8) == "good")
        #expect(try store.images().map(\.names) == [["localhost/x:1"]])
        #expect(FS.list(store.tmpDirectory).isEmpty)
    }

    // C29 (d): an index of platforms whose entry names a manifest by a
    // digest its bytes do not have.
    @Test func anIndexWhosePlatformManifestIsNotItsDigestIsRefused() throws {
        let dir = try layout("multi", ref: "localhost/m:1", layers: [layer(["f": "x"])])
        let index = try String(contentsOfFile: dir + "/index.json", encoding: .utf8)
        let manifest = try #require(index.firstMatch(of: /sha256:[0-9a-f]{64}/)).output
        let size = try #require(index.firstMatch(of: /"size":(\d+)/)).output.1
        let forged = String(repeating: "e", count: 64)
        let manifestBytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/blobs/sha256/" + manifest.dropFirst(7)))
        try manifestBytes.write(to: URL(fileURLWithPath: dir + "/blobs/sha256/" + forged))
        let platforms = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(forged)","size":\(size),\
            "platform":{"architecture":"amd64","os":"linux"}}]}
            """.utf8)
        let platformsDigest = try Digest.of(platforms)
        _ = temp.write("multi/blobs/sha256/\(platformsDigest.hex)", platforms)
        _ = temp.write("multi/index.json", Array("""
            {"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json",\
            "digest":"\(platformsDigest)","size":\(platforms.count)}]}
            """.utf8))
        #expect {
            _ = try store.load(dir, options: LoadOptions(), context: context)
        } throws: { error in
            "\(error)".contains("manifest sha256:\(forged): digest mismatch: expected sha256:\(forged), got \(manifest)")
        }
        #expect(FS.list(store.layersDirectory).isEmpty && FS.list(store.imagesDirectory).isEmpty)
    }

    @Test func aLaterLayerThatFailsTakesTheLayersThisImportUnpackedWithIt() throws {
        var hostile = TarBuilder()
        hostile.add("x/pwned", data: "p")
        var lower = TarBuilder()
        lower.add("x", .symlink, link: "/tmp")
        let dir = try layout("h", ref: "localhost/h:1", layers: [lower.archive, hostile.archive])
        #expect(throws: StoreError.self) { try store.load(dir, options: LoadOptions(), context: context) }
        #expect(FS.list(store.layersDirectory).isEmpty)
        #expect(FS.list(store.imagesDirectory).isEmpty)
        #expect(FS.list(store.tmpDirectory).isEmpty && FS.list(store.trashDirectory).isEmpty)
    }

    @Test func whatAKilledImportLeftIsRemovedByTheNextPrune() throws {
        try store.prepare()
        // Named for a process that does not run (an import whose process
        // lives is never swept, lock or not).
        let leftover = store.tmpDirectory + "/import-999999999-1"
        _ = temp.mkdir("store/tmp/import-999999999-1/layer-x/diff")
        _ = temp.write("store/tmp/import-999999999-1/owner", [])
        _ = temp.write("store/tmp/import-999999999-1/layer-x/diff/file", [1])
        _ = try store.prune(context: context)
        #expect(!FS.exists(leftover))
        #expect(FS.list(store.trashDirectory).isEmpty)
    }

    @Test func anImageForAnotherArchitectureIsStoredButRefusedToRun() throws {
        let image = StoredImage(id: try Digest.of([1]), names: ["x:1"],
                                config: .init(architecture: "s390x"), layers: [], manifest: nil, loaded: 0, source: "")
        #expect(image.platformProblem(host: Platform(architecture: "amd64", os: "linux")) == "built for linux/s390x, not linux/amd64")
        #expect {
            try image.requireRunnable(host: Platform(architecture: "amd64", os: "linux"))
        } throws: { error in
            "\(error)" == "image x:1 is for linux/s390x; this host runs linux/amd64"
        }
    }
}
