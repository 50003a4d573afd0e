import Foundation
import Testing

/// Hostile layers (CASES C20, C40): each is refused with an error naming the
/// layer and the entry (or the limit), nothing outside the store changes
/// (a canary next to the workspace), and nothing stays in the store.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ImageHostileTests {
    let h = Harness.shared

    /// Layers (JSON for mkimage.py) attacking `canary`, and the entry the
    /// error must name.
    static func attack(_ kind: String, canary: Canary, workspace: String) -> (layers: String, entry: String, format: String) {
        let dir = canary.directory, file = canary.file
        let up = String(repeating: "../", count: workspace.split(separator: "/").count + 6)
        switch kind {
        case "symlink-then-file":
            return (#"[[{"name": "x", "type": "symlink", "target": "\#(dir)"}, {"name": "x/pwned", "data": "p"}]]"#, "x/pwned", "oci")
        case "symlink-in-lower-layer":
            return (#"[[{"name": "x", "type": "symlink", "target": "\#(up)\#(dir.dropFirst())"}], [{"name": "x/pwned", "data": "p"}]]"#,
                    "x/pwned", "oci")
        case "dotdot":
            return (#"[[{"name": "\#(up)\#(dir.dropFirst())/pwned", "data": "p"}]]"#, "\(up)\(dir.dropFirst())/pwned", "oci")
        case "absolute":
            return (#"[[{"name": "\#(dir)/pwned", "data": "p"}]]"#, "\(dir)/pwned", "oci")
        case "dot-slash-dotdot":
            return (#"[[{"name": "./a/../../pwned", "data": "p"}]]"#, "./a/../../pwned", "oci")
        case "hardlink-out-then-file":
            return (#"[[{"name": "h", "type": "hardlink", "target": "\#(up)\#(file.dropFirst())"}, {"name": "h", "data": "new"}]]"#, "h", "oci")
        case "hardlink-absolute":
            return (#"[[{"name": "h", "type": "hardlink", "target": "\#(file)"}, {"name": "h", "data": "new"}]]"#, "h", "oci")
        case "directory-replacing-symlink":
            return (#"[[{"name": "x", "type": "symlink", "target": "\#(dir)"}, {"name": "x", "type": "dir"}, {"name": "x/pwned", "data": "p"}]]"#,
                    "x/", "oci")
        case "symlink-replacing-directory":
            return (#"[[{"name": "d/f", "data": "f"}, {"name": "d", "type": "symlink", "target": "\#(dir)"}, {"name": "d/pwned", "data": "p"}]]"#,
                    "d", "oci")
        case "zstd-symlink-then-file":
            return (#"[[{"name": "x", "type": "symlink", "target": "\#(dir)"}, {"name": "x/pwned", "data": "p"}]]"#, "x/pwned", "zstd")
        case "docker-archive-symlink-then-file":
            return (#"[[{"name": "x", "type": "symlink", "target": "\#(dir)"}, {"name": "x/pwned", "data": "p"}]]"#, "x/pwned", "docker")
        default:
            fatalError(kind)
        }
    }

    @Test(arguments: ["symlink-then-file", "symlink-in-lower-layer", "dotdot", "absolute", "dot-slash-dotdot",
                      "hardlink-out-then-file", "hardlink-absolute", "directory-replacing-symlink",
                      "symlink-replacing-directory", "zstd-symlink-then-file", "docker-archive-symlink-then-file"])
    func aHostileLayerIsRefusedNamingTheEntryAndNothingOutsideChanges(kind: String) {
        let canary = Canary()
        let before = canary.fingerprint
        let f = ImageFixture()
        let (layers, entry, format) = Self.attack(kind, canary: canary, workspace: f.ws)
        let formatField = format == "zstd" ? #""compression": "zstd""# : #""format": "\#(format)""#
        let path = f.make("hostile", #"{"name": "localhost/hostile:1", \#(formatField), "layers": \#(layers)}"#)
        let out = f.nook(["image", "load", path])
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("entry '\(entry)'") && out.stderr.contains("layer sha256:"), "\(out)")
        #expect(out.stderr.contains("the image was refused and nothing was extracted"), "\(out)")
        #expect(canary.fingerprint == before)
        #expect(f.storeIsEmpty, "layers \(f.entries("layers")) tmp \(f.entries("tmp")) trash \(f.entries("trash"))")
        #expect(!FileManager.default.fileExists(atPath: "/pwned") && !FileManager.default.fileExists(atPath: f.ws + "/pwned"))
    }

    // C40: bombs stop at the limit while streaming, quickly, and leave nothing.
    @Test(arguments: [
        ("gzip-of-zeros", #"{"layers": [[{"name": "z", "zeros": 400000000}]]}"#, ["--max-layer-bytes", "16M"],
         "passed the limit of 16 MiB (--max-layer-bytes)"),
        ("zstd-of-zeros", #"{"compression": "zstd", "layers": [[{"name": "z", "zeros": 400000000}]]}"#,
         ["--max-layer-bytes", "16M"], "passed the limit of 16 MiB (--max-layer-bytes)"),
        ("many-files", #"{"layers": [[\#((0..<3000).map { #"{"name": "f\#($0)"}"# }.joined(separator: ","))]]}"#,
         ["--max-entries", "1000"], "the number of entries passed the limit of 1000 entries (--max-entries)"),
        ("header-claims-a-terabyte", #"{"layers": [[{"name": "huge", "data": "abc", "size": 1099511627776}]]}"#,
         [], "the size of huge passed the limit of 16 GiB (--max-entry-bytes)"),
        ("header-size-lies", #"{"layers": [[{"name": "short", "data": "abc", "size": 100000}]]}"#, [],
         "not a readable tar stream"),
    ])
    func aLayerThatExpandsBeyondTheLimitsIsStoppedWhileStreaming(name: String, spec: String, options: [String],
                                                                  message: String) {
        let f = ImageFixture()
        let path = f.make(name, spec)
        let start = Date()
        let out = f.nook(["image", "load"] + options + [path])
        #expect(out.status == 125 && out.stderr.contains(message), "\(out)")
        #expect(out.stderr.contains("layer sha256:"), "the error names the layer: \(out)")
        #expect(Date().timeIntervalSince(start) < 20)
        #expect(f.storeIsEmpty)
    }

    @Test func aSparseFileDeclaredAsOneTerabyteIsRefused() {
        let f = ImageFixture()
        let tar = f.ws + "/sparse.tar"
        let made = f.sh("truncate -s 1T big && tar --sparse -cf \(tar) big && rm big")
        #expect(made.status == 0, "\(made)")
        let out = f.nook(["image", "load", f.make("sparse", #"{"layers": [{"tar": "\#(tar)"}]}"#)])
        #expect(out.status == 125 && out.stderr.contains("the size of big passed the limit of 16 GiB"), "\(out)")
        #expect(f.storeIsEmpty)
    }

    /// A fresh try: a docker-archive tag holding terminal escapes and a
    /// line break was printed raw in the warning that ignored it.
    @Test func aTagThatIsNoNameIsShownEscaped() {
        let f = ImageFixture()
        let path = f.make("escapes", #"{"format": "docker", "name": "x\u001b[31m\nnook: fake", "layers": [[{"name": "f"}]]}"#)
        let out = f.nook(["image", "load", path])
        #expect(out.stderr.contains("ignoring the tag 'x\\x1b[31m\\xanook: fake'"), "\(out)")
        #expect(!out.stderr.contains("\u{1b}"), "\(out)")
    }

    /// An OCI layout's ref.name that is no name was dropped without a word
    /// (a docker archive's RepoTags were warned about); and one that is
    /// another image's id is no name either.
    @Test(arguments: ["../../x:1", "a\nb:1", "sha256:\(String(repeating: "ab", count: 32))"])
    func anOCIRefNameThatIsNoNameIsWarnedAbout(_ ref: String) throws {
        let f = ImageFixture()
        let spec = ["refname": ref, "layers": [[["name": "f"]]]] as [String: Any]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self)
        let out = f.nook(["image", "load", f.make("badref", json)])
        #expect(out.status == 0 && out.stderr.contains("ignoring the org.opencontainers.image.ref.name"), "\(out)")
        #expect(!out.stdout.contains("sha256:abab"), "\(out)")
    }

    /// A fresh try: an archive named its image alpine@sha256:111..., and
    /// `nook run alpine@sha256:111...` ran it, the pin never checked. A
    /// name with a digest is kept only from a pull, which checks it.
    @Test func anArchiveCannotNameItsImageByADigest() {
        let f = ImageFixture()
        let pinned = "docker.io/library/alpine@sha256:\(String(repeating: "1", count: 64))"
        let path = f.make("pin", #"{"format": "docker", "name": "\#(pinned)", "layers": [[{"name": "evil"}]]}"#)
        let load = f.nook(["image", "load", path])
        #expect(load.stderr.contains("a name with a digest is kept only from a pull"), "\(load)")
        let run = f.nook(["run", "--pull", "never", "alpine@sha256:\(String(repeating: "1", count: 64))", "--", "true"])
        #expect(run.status == 125 && run.stderr.contains("in the store"), "\(run)")
        let tagged = f.nook(["image", "load", "--tag", "localhost/x:1@sha256:\(String(repeating: "0", count: 64))", path])
        #expect(tagged.status == 125 && tagged.stderr.contains("kept only from a pull"), "\(tagged)")
    }
}
