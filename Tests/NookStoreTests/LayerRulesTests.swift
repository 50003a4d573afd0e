import Testing
@testable import NookStore

/// Names, whiteouts and collisions: what a layer entry means and which are
/// refused (image-spec layer.md; CASES C20), decided without touching disk.
@Suite struct LayerRulesTests {
    func refusal(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return (error as? EntryRefusal)?.reason ?? "\(error)"
        }
    }

    @Test(arguments: ["/pwned", "../../pwned", "./a/../../pwned", "a/../b", ".."])
    func namesThatCouldLeaveTheLayerAreRefused(name: String) {
        let reason = refusal { _ = try LayerRules.components(name, entry: name) }
        #expect(reason == "an absolute name" || reason == "a name with '..', which leaves the layer", "\(name)")
    }

    @Test func dotsAndRepeatedSlashesAreDropped() throws {
        #expect(try LayerRules.components("./a//b/", entry: "") == ["a", "b"])
        #expect(try LayerRules.components("./", entry: "").isEmpty)
    }

    @Test func hardLinkTargetsAreCheckedLikeNames() {
        var e = entry("h")
        e.hardlink = "../../etc/passwd"
        #expect(refusal { _ = try LayerRules.classify(e) } == "a hard link to '../../etc/passwd', with '..', which leaves the layer")
        e.hardlink = "/etc/passwd"
        #expect(refusal { _ = try LayerRules.classify(e) } == "a hard link to '/etc/passwd', an absolute path")
    }

    @Test func whiteoutsNameWhatTheyDeleteAndOpaqueMarkersTheirDirectory() throws {
        #expect(try LayerRules.classify(entry("a/.wh.b")) == (["a", "b"], .whiteout))
        #expect(try LayerRules.classify(entry("a/.wh..wh..opq")) == (["a"], .opaque))
        #expect(try LayerRules.classify(entry(".wh..wh.plnk")) == ([], .ignored))
        var device = entry("c")
        device.mode = UInt32(0o020000)
        #expect(try LayerRules.classify(device) == (["c"], .whiteout))
        device.rdevMajor = 1
        #expect(try LayerRules.classify(device) == (["c"], .device))
        #expect(refusal { _ = try LayerRules.classify(entry(".wh.x/y")) } == "a whiteout name used as a directory")
        #expect(refusal { _ = try LayerRules.classify(entry("a/.wh.")) } == "a whiteout that names nothing")
    }

    @Test func anEntryWrittenThroughAnEarlierSymlinkIsRefused() throws {
        var shape = LayerShape()
        _ = try shape.add(path: ["x"], kind: .symlink("/etc"), entry: "x")
        let reason = refusal { _ = try shape.add(path: ["x", "pwned"], kind: .file, entry: "x/pwned") }
        #expect(reason == "written through the symlink x of the same layer")
    }

    @Test func aNameReusedAsAnotherTypeIsRefused() throws {
        var shape = LayerShape()
        _ = try shape.add(path: ["x"], kind: .symlink("/etc"), entry: "x")
        #expect(refusal { _ = try shape.add(path: ["x"], kind: .directory, entry: "x/") }
            == "replaces the symlink x, listed earlier in the same layer, with a directory")
        var other = LayerShape()
        _ = try other.add(path: ["d", "f"], kind: .file, entry: "d/f")
        #expect(refusal { _ = try other.add(path: ["d"], kind: .symlink("/"), entry: "d") }
            == "replaces the directory d, listed earlier in the same layer, with a symlink")
    }

    @Test func theSameFileTwiceIsAllowedAndTheLastWins() throws {
        var shape = LayerShape()
        #expect(try shape.add(path: ["f"], kind: .file, entry: "f"))
        #expect(try shape.add(path: ["f"], kind: .file, entry: "f"))
        #expect(try shape.add(path: ["g"], kind: .hardlink(["f"]), entry: "g"))
    }

    @Test func aHardLinkToADeviceNodeIsSkippedLikeTheNode() throws {
        var shape = LayerShape()
        #expect(try shape.add(path: ["dev", "null"], kind: .device, entry: "dev/null"))
        #expect(try shape.add(path: ["dev", "null2"], kind: .hardlink(["dev", "null"]), entry: "dev/null2") == false)
        #expect(shape.externalLinks.isEmpty)
    }

    @Test func aWhiteoutOfSomethingTheSameLayerMadeChangesNothing() throws {
        var shape = LayerShape()
        _ = try shape.add(path: ["f"], kind: .file, entry: "f")
        #expect(try shape.add(path: ["f"], kind: .whiteout, entry: ".wh.f") == false)
    }

    @Test func aDirectoryReplacingAWhiteoutOfTheSameLayerIsOpaque() throws {
        var shape = LayerShape()
        _ = try shape.add(path: ["d"], kind: .whiteout, entry: ".wh.d")
        _ = try shape.add(path: ["d", "new"], kind: .file, entry: "d/new")
        #expect(shape.opaqueDirectories == ["d"])
    }

    @Test func linksToWhatTheLayerLacksAndUnlistedDirectoriesAreLeftForTheLowerLayers() throws {
        var shape = LayerShape()
        _ = try shape.add(path: ["a", "b", "f"], kind: .file, entry: "a/b/f")
        _ = try shape.add(path: ["a"], kind: .directory, entry: "a/")
        _ = try shape.add(path: ["h"], kind: .hardlink(["usr", "bin", "x"]), entry: "h")
        #expect(shape.implicitDirectories.map(\.path) == ["a/b"])
        #expect(shape.externalLinks.map(\.target) == ["usr/bin/x"])
        #expect(refusal { _ = try shape.add(path: ["l"], kind: .hardlink(["a"]), entry: "l") }
            == "a hard link to the directory a")
    }

    func entry(_ path: String) -> TarEntry {
        TarEntry(path: path, hardlink: nil, symlink: nil, mode: 0o100644, uid: 0, gid: 0, size: 0, mtime: .init(),
                 atime: nil, rdevMajor: 0, rdevMinor: 0, xattrCount: 0, aclCount: 0)
    }
}
