import Foundation
import Testing

@testable import NookProfile

/// SplitMix64: a small seeded generator, so that a failing input can be
/// made again from the seed printed with it.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random and mutated TOML fed to the profile loader: it never crashes,
/// never hangs, and either loads or reports at least one problem that
/// names a file.
struct FuzzTests {
    /// NOOK_FUZZ_ROUNDS raises the rounds for a longer run by hand.
    static let rounds = ProcessInfo.processInfo.environment["NOOK_FUZZ_ROUNDS"].flatMap(Int.init) ?? 20000

    static var stockProfiles: [String] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Profiles")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.sorted() ?? []
        return names.compactMap { try? String(contentsOfFile: dir.appendingPathComponent($0).path, encoding: .utf8) }
    }

    static let fragments: [String] = [
        "[", "]", "[[", "]]", "{", "}", "\"", "'", "\"\"\"", "'''", "=", ".", ",", "#", "\n", "\\", "\\u0000", "${",
        "${HOME}", "${env:X}", "$$", "0o777", "0x1F", "1e400", "-0", "nan", "inf", "1979-05-27T07:32:00Z", "true",
        "extends = [\"main\"]", "extends = [\"./x.toml\"]", "[limits]\nmemory = ", "\"max\"", "\"4 G\"", "[process]\n",
        "command = [", "a.b.c.d = 1", "\u{FEFF}", "é", "\u{0}", "\r\n", "\t", " ",
        "[filesystem]\nhidden = { remove = [",
    ]

    /// One mutation of `text`.
    static func mutate(_ text: String, _ rng: inout SeededGenerator) -> String {
        var chars = Array(text)
        let edits = Int.random(in: 1...6, using: &rng)
        for _ in 0..<edits {
            let at = chars.isEmpty ? 0 : Int.random(in: 0..<chars.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0 where !chars.isEmpty: chars.remove(at: at)
            case 1: chars.insert(contentsOf: Array(fragments.randomElement(using: &rng) ?? ""), at: at)
            case 2 where !chars.isEmpty:
                let end = min(chars.count, at + Int.random(in: 1...40, using: &rng))
                chars.insert(contentsOf: Array(chars[at..<end]), at: at)  // duplicate a slice (duplicate keys)
            case 3 where !chars.isEmpty:
                chars[at] = Character(Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &rng)))
            default:
                let end = min(chars.count, at + Int.random(in: 1...80, using: &rng))
                if at < end { chars.removeSubrange(at..<end) }
            }
        }
        return String(chars)
    }

    /// A document built from fragments only.
    static func random(_ rng: inout SeededGenerator) -> String {
        (0..<Int.random(in: 1...60, using: &rng)).map { _ in fragments.randomElement(using: &rng) ?? "" }.joined()
    }

    /// Runs `body` on its own thread and waits at most `seconds`: a hang
    /// fails the test instead of stopping the run.
    static func bounded(_ seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            body()
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        return done.wait(timeout: .now() + seconds) == .success
    }

    static func check(_ text: String, seed: UInt64) -> String? {
        let loader = memoryLoader(["main": text, "x": "[network]\nmode = \"none\"\n"])
        do {
            _ = try loader.load("main")
            return nil
        } catch {
            if error.issues.isEmpty { return "seed \(seed): failed without a problem for:\n\(text)" }
            if error.issues.contains(where: { $0.file.isEmpty }) { return "seed \(seed): a problem without a file" }
            return nil
        }
    }

    @Test func mutatedStockProfilesLoadOrFailCleanly() {
        let corpus = Self.stockProfiles
        #expect(corpus.count >= 5)
        let ok = Self.bounded(Double(max(120, Self.rounds / 1000))) {
            var rng = SeededGenerator(seed: 0x6E6F_6F6B)
            for round in 0..<Self.rounds {
                let base = corpus[round % max(corpus.count, 1)]
                let text = Self.mutate(base, &rng)
                if let problem = Self.check(text, seed: UInt64(round)) { Issue.record(Comment(rawValue: problem)) }
            }
        }
        #expect(ok, "the loader did not finish \(Self.rounds) mutated profiles in 120 s")
    }

    @Test func randomDocumentsLoadOrFailCleanly() {
        let ok = Self.bounded(Double(max(120, Self.rounds / 1000))) {
            var rng = SeededGenerator(seed: 42)
            for round in 0..<Self.rounds {
                let text = Self.random(&rng)
                if let problem = Self.check(text, seed: UInt64(round)) { Issue.record(Comment(rawValue: problem)) }
            }
        }
        #expect(ok, "the loader did not finish \(Self.rounds) random documents in 120 s")
    }

    @Test func randomBytesNeverCrashTheParser() {
        let ok = Self.bounded(Double(max(60, Self.rounds / 1000))) {
            var rng = SeededGenerator(seed: 7)
            for _ in 0..<Self.rounds {
                let bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng)
                }
                _ = try? TOML.parse(bytes: bytes)
            }
        }
        #expect(ok)
    }

    @Test(arguments: [
        "a" + String(repeating: ".a", count: 50_000) + " = 1",
        "[" + String(repeating: "a.", count: 50_000) + "a]",
        "x = " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000),
        "x = " + String(repeating: "{a.b.c = ", count: 5_000) + "1" + String(repeating: "}", count: 5_000),
        "[[" + String(repeating: "a.", count: 50_000) + "a]]",
        "s = \"" + String(repeating: "x", count: 900_000) + "\"",
    ])
    func pathologicallyDeepOrLongDocumentsAreRefusedOrLoadedInBoundedTime(text: String) {
        let ok = Self.bounded(30) {
            if let problem = Self.check(text, seed: 0) { Issue.record(Comment(rawValue: problem)) }
        }
        #expect(ok, "took over 30 s")
    }

    @Test func aFileThatIsNotUTF8IsRefused() throws {
        let path = NSTemporaryDirectory() + "nook-fuzz-\(getpid()).toml"
        _ = FileManager.default.createFile(
            atPath: path, contents: Data([0x61, 0x20, 0x3D, 0x20, 0x22, 0xFF, 0xFE, 0x22, 0x0A]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(DiskFileSystem().read(path) == .failure(.notUTF8))
        // A fresh try: its hint was "check the file's permissions".
        #expect(FileProblem.notUTF8.fix.contains("UTF-8"))
        #expect(throws: TOMLSyntaxError.self) { try TOML.parse(bytes: [0x61, 0x20, 0x3D, 0x20, 0x22, 0xFF, 0x22]) }
    }
}
