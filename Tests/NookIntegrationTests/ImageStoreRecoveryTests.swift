import Foundation
import Testing

/// A store whose files were damaged (a disk, an editor, a killed tool)
/// still works, says what is wrong and how to mend it (finding 4 of the
/// second attack review: one bad JSON file stopped every image command).
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ImageStoreRecoveryTests {
    let h = Harness.shared

    /// Two images, localhost/a:1 and localhost/b:1, with a layer each.
    func twoImages() -> ImageFixture {
        let f = ImageFixture()
        for name in ["a", "b"] {
            let load = f.nook(["image", "load", f.make(name, #"{"name": "localhost/\#(name):1", "layers": [[{"name": "\#(name)"}]]}"#)])
            #expect(load.status == 0, "\(load)")
        }
        return f
    }

    func id(_ f: ImageFixture, _ name: String) -> String {
        f.nook(["image", "inspect", name]).stdout.split(separator: "\"").first { $0.hasPrefix("sha256:") }
            .map { String($0.dropFirst(7)) } ?? "?"
    }

    func names(_ f: ImageFixture) -> [String] {
        f.nook(["image", "ls"]).stdout.split(separator: "\n").dropFirst().map { String($0.split(separator: " ")[0]) }.sorted()
    }

    @Test func aDamagedNameListIsRebuiltFromTheImageRecordsAndWrittenAgainByPrune() {
        let f = twoImages()
        h.write(f.store + "/names.json", "{\"localhost/a:1\": \"sha256:")
        let ls = f.nook(["image", "ls"])
        #expect(ls.status == 0, "\(ls)")
        #expect(names(f) == ["localhost/a:1", "localhost/b:1"], "\(ls)")
        #expect(ls.stderr.contains("\(f.store)/names.json: not the JSON expected"), "\(ls)")
        #expect(ls.stderr.contains("Fix: nook image prune writes \(f.store)/names.json again"), "\(ls)")
        let dry = f.nook(["run", "--dry-run", "localhost/a:1", "--", "true"])
        #expect(dry.status == 0, "run finds the image: \(dry)")
        let load = f.nook(["image", "load", f.make("c", #"{"name": "localhost/c:1", "layers": [[{"name": "c"}]]}"#)])
        #expect(load.status == 0, "\(load)")
        let prune = f.nook(["image", "prune"])
        #expect(prune.status == 0, "\(prune)")
        #expect(FileManager.default.fileExists(atPath: f.store + "/names.json.damaged"))
        let after = f.nook(["image", "ls"])
        #expect(after.stderr.isEmpty, "\(after)")
        #expect(names(f) == ["localhost/a:1", "localhost/b:1", "localhost/c:1"], "\(after)")
    }

    @Test func imagesWhoseRecordsPredateTheirNamesAreKeptWhenTheNameListIsLost() {
        let f = twoImages()
        let a = id(f, "localhost/a:1")
        // A record written by a nook that did not keep names in it.
        _ = f.sh("python3 -c 'import json,sys; p=sys.argv[1]; r=json.load(open(p)); r.pop(\"names\"); "
                 + "json.dump(r, open(p, \"w\"))' \(f.store)/images/\(a).json && rm \(f.store)/names.json")
        let ls = f.nook(["image", "ls"])
        #expect(ls.stderr.contains("1 image loaded by an older nook keeps none there"), "\(ls)")
        #expect(names(f) == ["<none>", "localhost/b:1"], "\(ls)")
        for _ in 0..<2 {
            let prune = f.nook(["image", "prune"])
            #expect(prune.status == 0 && !prune.stdout.contains("Removed 1 image"), "\(prune)")
            #expect(f.entries("images").contains("\(a).json"), "the image without its names was pruned")
        }
        #expect(f.nook(["image", "rm", String(a.prefix(12))]).status == 0)
        #expect(!f.entries("images").contains("\(a).json"))
    }

    @Test func aDamagedImageRecordIsLeftOutNamedAndRemovable() {
        let f = twoImages()
        let a = id(f, "localhost/a:1")
        let record = "\(f.store)/images/\(a).json"
        let layers = f.entries("layers")
        // Cut short, as a full disk would leave it.
        _ = f.sh("head -c 200 \(record) > \(record).cut && mv \(record).cut \(record)")
        let ls = f.nook(["image", "ls"])
        #expect(ls.status == 0, "\(ls)")
        #expect(names(f) == ["localhost/b:1"], "\(ls)")
        #expect(ls.stderr.contains("the record \(record) is not the JSON expected"), "\(ls)")
        #expect(ls.stderr.contains("nook image rm \(a.prefix(12))"), "\(ls)")
        let inspect = f.nook(["image", "inspect", "localhost/a:1"])
        #expect(inspect.status == 125 && inspect.stderr.contains("nook image rm \(a.prefix(12))"), "\(inspect)")
        let prune = f.nook(["image", "prune"])
        #expect(prune.status == 0, "\(prune)")
        #expect(f.entries("layers") == layers, "prune took layers a record it cannot read may use")
        let rm = f.nook(["image", "rm", "localhost/a:1"])
        #expect(rm.status == 0, "\(rm)")
        #expect(f.nook(["image", "prune"]).status == 0)
        #expect(f.entries("layers").count == 1 && names(f) == ["localhost/b:1"])
    }
}
