import Foundation
import Testing

/// `nook image load/ls/inspect/rm/prune` as the unprivileged test user, on
/// images built at test time.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ImageStoreTests {
    let h = Harness.shared

    static let twoLayers = """
        {"name": "localhost/app:1", "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"],
         "WorkingDir": "/srv", "User": "1000:1000", "ExposedPorts": {"8080/tcp": {}}, "Labels": {"k": "v"}},
         "layers": [[{"name": "etc/os-release", "data": "base"}, {"name": "bin/", "type": "dir"}],
                    [{"name": "bin/app", "data": "#!/bin/sh", "mode": 493}]]}
        """

    @Test(arguments: ["oci", "docker", "oci-archive"])
    func anImageLoadsFromEachFormatAndListsWithItsName(format: String) {
        let f = ImageFixture()
        let path = f.make("app", Self.twoLayers.replacingOccurrences(of: "{\"name\"", with: "{\"format\": \"\(format)\", \"name\""))
        let load = f.nook(["image", "load", path])
        #expect(load.status == 0, "\(load)")
        #expect(load.stdout.hasPrefix("Loaded image ") && load.stdout.contains("(localhost/app:1)"), "\(load)")
        let ls = f.nook(["image", "ls"])
        let rows = ls.stdout.split(separator: "\n")
        #expect(rows.first?.hasPrefix("NAME") == true && rows.count == 2, "\(ls)")
        #expect(rows.last?.contains("localhost/app:1") == true && rows.last?.contains("linux/amd64") == true, "\(ls)")
        #expect(f.entries("layers").count == 2)
        #expect(f.entries("tmp").isEmpty && f.entries("trash").isEmpty)
    }

    /// A bare tag in ref.name names the image after its layout's directory;
    /// an archive's name kept its .tar (localhost/ociarch.tar:1).
    @Test func aBareTagInAnArchiveIsNamedAfterTheArchiveWithoutItsExtension() {
        let f = ImageFixture()
        let path = f.make("ociarch.tar", #"{"format": "oci-archive", "refname": "1", "layers": [[{"name": "f"}]]}"#)
        let load = f.nook(["image", "load", path])
        #expect(load.status == 0 && load.stdout.contains("(localhost/ociarch:1)"), "\(load)")
    }

    @Test func inspectGivesTheImageConfigAndItsLayersLowestFirst() throws {
        let f = ImageFixture()
        f.nook(["image", "load", f.make("app", Self.twoLayers)])
        let out = f.nook(["image", "inspect", "localhost/app:1"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]]).first
        let config = try #require(json?["config"] as? [String: Any])
        #expect(config["entrypoint"] as? [String] == ["/bin/app"] && config["cmd"] as? [String] == ["--serve"])
        #expect(config["env"] as? [String] == ["A=1"] && config["workingDir"] as? String == "/srv")
        #expect(config["user"] as? String == "1000:1000" && config["exposedPorts"] as? [String] == ["8080/tcp"])
        #expect(config["labels"] as? [String: String] == ["k": "v"])
        #expect(json?["runnable"] as? Bool == true)
        let layers = f.layers("localhost/app:1")
        #expect(layers.count == 2)
        #expect(FileManager.default.fileExists(atPath: layers[0] + "/etc/os-release"))
        #expect(FileManager.default.fileExists(atPath: layers[1] + "/bin/app"))
    }

    @Test func imagesWithTheSameBaseShareItsLayerAndRemovingOneKeepsIt() {
        let f = ImageFixture()
        let base = #"[{"name": "etc/os-release", "data": "shared"}]"#
        f.nook(["image", "load", f.make("a", #"{"name": "localhost/a:1", "layers": [\#(base), [{"name": "a"}]]}"#)])
        f.nook(["image", "load", f.make("b", #"{"name": "localhost/b:1", "layers": [\#(base), [{"name": "b"}]]}"#)])
        #expect(f.entries("layers").count == 3, "one shared base and one layer each")
        #expect(f.layers("localhost/a:1").first == f.layers("localhost/b:1").first)
        let rm = f.nook(["image", "rm", "localhost/a:1"])
        #expect(rm.status == 0 && rm.stdout.hasPrefix("Removed sha256:"), "\(rm)")
        #expect(f.entries("layers").count == 2)
        #expect(FileManager.default.fileExists(atPath: f.layers("localhost/b:1")[0] + "/etc/os-release"))
        f.nook(["image", "rm", "localhost/b:1"])
        #expect(f.storeIsEmpty, "layers \(f.entries("layers")) blobs \(f.entries("blobs/sha256"))")
    }

    @Test func aNameOfAnImageWithSeveralIsRemovedAloneAndAnUntaggedImageGoesWithPrune() {
        let f = ImageFixture()
        let path = f.make("a", #"{"name": "localhost/a:1", "layers": [[{"name": "f"}]]}"#)
        f.nook(["image", "load", "--tag", "localhost/a:2", path])
        #expect(f.nook(["image", "rm", "localhost/a:2"]).stdout == "Untagged localhost/a:2\n")
        #expect(f.entries("layers").count == 1)
        let untagged = f.make("u", #"{"layers": [[{"name": "g"}]]}"#)
        let load = f.nook(["image", "load", untagged])
        #expect(load.stdout.contains("untagged, use its id or load with --tag"), "\(load)")
        let prune = f.nook(["image", "prune"])
        #expect(prune.status == 0 && prune.stdout.contains("Removed 1 image, 1 layer"), "\(prune)")
        #expect(f.nook(["image", "ls", "-q"]).stdout.split(separator: "\n").count == 1)
    }

    // The in-use protocol the runtime follows (ImageStore.lease): a shared
    // flock on the image's and each layer's lock file for the sandbox's life.
    @Test func anImageASandboxHoldsIsNeitherRemovedNorPruned() throws {
        let f = ImageFixture()
        f.nook(["image", "load", f.make("a", #"{"name": "localhost/a:1", "layers": [[{"name": "f", "data": "x"}]]}"#)])
        let layer = try #require(f.layers("localhost/a:1").first)
        let id = try #require(f.nook(["image", "ls", "-q"]).stdout.split(separator: "\n").first)
        let locks = ["\(f.store)/images/\(id.dropFirst(7)).lock", (layer as NSString).deletingLastPathComponent + "/lock"]
        f.sh("touch \(locks[0])")
        let fds = locks.map { open($0, O_RDONLY | O_CLOEXEC) }
        defer { fds.forEach { close($0) } }
        for fd in fds { #expect(fd >= 0 && flock(fd, LOCK_SH) == 0) }

        let refused = f.nook(["image", "rm", "localhost/a:1"])
        #expect(refused.status == 125 && refused.stderr.contains("image localhost/a:1 is in use by a running sandbox"),
                "\(refused)")
        let forced = f.nook(["image", "rm", "--force", "localhost/a:1"])
        #expect(forced.status == 0, "\(forced)")
        let prune = f.nook(["image", "prune"])
        #expect(prune.stdout.contains("kept 1 unreferenced layer a sandbox still uses"), "\(prune)")
        #expect(FileManager.default.fileExists(atPath: layer + "/f"), "the sandbox's layer is still there")

        fds.forEach { flock($0, LOCK_UN) }
        #expect(f.nook(["image", "prune"]).stdout.contains("1 layer"))
        #expect(f.storeIsEmpty)
    }

    @Test func twoLoadsAtOnceBothSucceedAndUnpackEachLayerOnce() {
        let f = ImageFixture()
        let path = f.make("big", #"{"name": "localhost/big:1", "layers": [[{"name": "z", "zeros": 50000000}], [{"name": "y"}]]}"#)
        // Polls instead of `wait`: the harness starts commands with SIGCHLD
        // blocked (Foundation.Process), and dash's wait then never returns.
        let out = f.sh("($NOOK image load \(path) > a.out 2>&1; echo $? > a.rc) & ($NOOK image load \(path) > b.out 2>&1; "
            + "echo $? > b.rc) & while [ ! -s a.rc ] || [ ! -s b.rc ]; do sleep 0.1; done; cat a.rc b.rc a.out b.out")
        #expect(out.stdout.hasPrefix("0\n0\n"), "\(out)")
        #expect(f.entries("layers").count == 2 && f.entries("images").count == 1, "\(f.entries("layers"))")
        #expect(f.entries("tmp").isEmpty && f.entries("trash").isEmpty)
    }

    @Test func aKilledLoadLeavesNothingHalfDoneAndTheNextLoadSucceeds() {
        let f = ImageFixture()
        let path = f.make("big", #"{"name": "localhost/big:1", "compression": "none", "layers": [[{"name": "a"}], [{"name": "z", "zeros": 400000000}]]}"#)
        // Killed while the second layer is being unpacked (or earlier).
        f.sh("$NOOK image load \(path) & sleep 0.6; kill -9 $!; true")
        for layer in f.entries("layers") {
            #expect(FileManager.default.fileExists(atPath: "\(f.store)/layers/\(layer)/layer.json"),
                    "\(layer) is in place but incomplete")
        }
        #expect(f.entries("images").isEmpty)
        // A fresh try: prune removed such leftovers and said "Removed 0
        // images, 0 layers".
        if !f.entries("tmp").isEmpty {
            let prune = f.nook(["image", "prune"])
            #expect(prune.stdout.contains("interrupted load"), "\(prune)")
            #expect(f.entries("tmp").isEmpty)
        }
        let again = f.nook(["image", "load", path])
        #expect(again.status == 0, "\(again)")
        #expect(f.entries("layers").count == 2 && f.entries("tmp").isEmpty && f.entries("trash").isEmpty,
                "tmp \(f.entries("tmp")) trash \(f.entries("trash"))")
    }

    @Test func anImageForAnotherArchitectureIsStoredAndMarkedAsNotRunnableHere() {
        let f = ImageFixture()
        let load = f.nook(["image", "load", f.make("arm", #"{"name": "localhost/arm:1", "architecture": "s390x", "layers": [[{"name": "f"}]]}"#)])
        #expect(load.stdout.contains("built for linux/s390x, not linux/amd64; it cannot run here"), "\(load)")
        #expect(f.nook(["image", "ls"]).stdout.contains("linux/s390x (not this host's)"))
        #expect(f.nook(["image", "inspect", "localhost/arm:1"]).stdout.contains("\"runnable\": \"no: built for linux/s390x"))
    }

    @Test func theStoreIsPrivateToItsUser() throws {
        let f = ImageFixture()
        f.nook(["image", "load", f.make("a", #"{"name": "localhost/a:1", "layers": [[{"name": "f"}]]}"#)])
        let mode = try FileManager.default.attributesOfItem(atPath: f.store)[.posixPermissions] as? Int
        #expect(mode == 0o700, "setuid files of images must not be reachable by other users")
    }

    @Test func usageErrorsSayWhatIsWrong() {
        let f = ImageFixture()
        #expect(f.nook(["image", "load"]).stderr == "nook: image load: give one PATH\n  hint: usage: nook image load [OPTIONS] PATH\n")
        #expect(f.nook(["image", "load", "--tag", "Bad:Name", "x"]).stderr.hasPrefix("nook: --tag Bad:Name: not a valid image name"))
        #expect(f.nook(["image", "load", "--max-layer-bytes", "lots", "x"]).stderr.hasPrefix("nook: --max-layer-bytes lots: not a size"))
        #expect(f.nook(["image", "rm", "nothing:here"]).stderr.hasPrefix("nook: no image named nothing:here"))
        #expect(f.nook(["image", "frobnicate"]).stderr.hasPrefix("nook: image: unknown command 'frobnicate'"))
        let notImage = f.nook(["image", "load", f.ws])
        #expect(notImage.stderr.contains("neither an OCI image layout (index.json) nor a docker-archive"), "\(notImage)")
    }

    // Finding 4 of the second attack review: load /dev/zero read for ever.
    @Test func loadRefusesWhatIsNeitherAFileNorADirectory() {
        let f = ImageFixture()
        let zero = f.nook(["image", "load", "/dev/zero"], timeout: 20)
        #expect(zero.status == 125, "\(zero)")
        #expect(zero.stderr.contains("/dev/zero is a character device, not an image"), "\(zero)")
        _ = f.sh("mkfifo fifo")
        let fifo = f.nook(["image", "load", f.ws + "/fifo"], timeout: 20)
        #expect(fifo.status == 125 && fifo.stderr.contains("is a FIFO, not an image"), "\(fifo)")
        let piped = f.sh("printf x | $NOOK image load /dev/stdin; echo rc=$?", timeout: 20)
        #expect(piped.stdout.contains("rc=125") && !piped.stderr.contains("not an image"), "\(piped)")
    }
}
