import Foundation
import Testing

/// A registry that misbehaves (CASES C29, and the issue's fault list): a
/// proxy in front of a real registry changes a byte, cuts a blob short,
/// answers 500 or 429, redirects to storage. Each test checks the outcome,
/// the error text, and that a failure leaves the store as it was.
@Suite(.enabled(if: Harness.ready && FileManager.default.fileExists(atPath: "/usr/bin/docker-registry")
    && FileManager.default.fileExists(atPath: "/usr/bin/skopeo"),
    "needs the test user, docker-registry and skopeo (script/test installs them)"))
struct RegistryFaultTests {
    let h = Harness.shared

    /// A registry behind the proxy with a two-layer image at app:1; the
    /// image's layer digests (hex), lowest first.
    func serve(_ f: ImageFixture) throws -> (RegistryServer, [String]) {
        let registry = try #require(RegistryServer(["--proxy"]))
        let layout = f.make("app", """
            {"layers": [[{"name": "etc/os-release", "data": "base"}, {"name": "big", "zeros": 300000}],
                        [{"name": "bin/app", "data": "app"}]]}
            """)
        registry.push(layout, as: "app:1")
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as? [String: Any]
        let digest = try #require(((index?["manifests"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst(7))
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/blobs/sha256/\(digest)"))) as? [String: Any]
        let layers = ((manifest?["layers"] as? [[String: Any]]) ?? []).compactMap { ($0["digest"] as? String)?.dropFirst(7) }
        return (registry, layers.map(String.init))
    }

    func storeUnchanged(_ f: ImageFixture) -> Bool {
        f.entries("layers").isEmpty && f.entries("images").isEmpty && f.entries("tmp").isEmpty
            && f.entries("blobs/sha256").isEmpty && (f.nook(["image", "ls", "-q"]).stdout.isEmpty)
    }

    @Test func aLayerWithAChangedByteIsRefusedNamingItsDigestAndNothingIsStored() throws {
        let f = ImageFixture()
        let (registry, layers) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"corrupt": ["\#(layers[1])"]}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("digest mismatch: expected sha256:\(layers[1])"), "\(out)")
        #expect(out.stderr.contains("layer 2 of \(registry.proxy)/app:1"), "\(out)")
        #expect(storeUnchanged(f), "layers \(f.entries("layers")) blobs \(f.entries("blobs/sha256")) tmp \(f.entries("tmp"))")

        // Fixed, the same pull works.
        registry.faults("{}")
        #expect(f.nook(["pull", "\(registry.proxy)/app:1"]).status == 0)
    }

    @Test func aManifestAskedForByDigestMustHaveThatDigest() throws {
        let f = ImageFixture()
        let (registry, _) = try serve(f)
        defer { registry.stop() }
        let good = f.nook(["pull", "-q", "\(registry.proxy)/app:1"])
        #expect(good.status == 0, "\(good)")
        f.nook(["image", "rm", "\(registry.proxy)/app:1"])
        // The tag's manifest asked for by another digest: the registry
        // answers 404 (distribution checks), so the proxy is not needed to
        // lie here; a digest that names nothing is not found.
        let other = "sha256:" + String(repeating: "ab", count: 32)
        let out = f.nook(["pull", "\(registry.proxy)/app@\(other)"])
        #expect(out.status == 125 && out.stderr.contains("not found"), "\(out)")
        #expect(storeUnchanged(f))
    }

    @Test func aBlobCutShortOnceIsResumedFromWhereItStopped() throws {
        let f = ImageFixture()
        let (registry, layers) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"truncate_once": ["\#(layers[0])"]}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 0, "\(out)")
        let gets = registry.requests.filter { $0.contains("/blobs/sha256:\(layers[0])") }
        #expect(gets.count == 2 && gets[0].contains(" truncated ") && gets[1].contains(" 206 bytes="), "\(gets)")
    }

    // Partial blobs are kept by digest: the bytes left by a pull killed
    // while another registry (a bad one) sent them were resumed here, and
    // this registry was blamed for the mismatch (a fresh try). Checked
    // once whole, they are fetched again from the start.
    @Test func aWrongPartialLeftByAnEarlierPullIsFetchedAgainWhole() throws {
        let f = ImageFixture()
        let (registry, layers) = try serve(f)
        defer { registry.stop() }
        let planted = f.sh("umask 077 && mkdir -p \(f.store)/partial && head -c 100 /dev/urandom > \(f.store)/partial/\(layers[0])")
        #expect(planted.status == 0, "\(planted)")
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 0 && !out.stderr.contains("mismatch"), "\(out)")
        let gets = registry.requests.filter { $0.hasPrefix("GET ") && $0.contains("/blobs/sha256:\(layers[0])") }
        #expect(gets.count == 2 && gets[0].contains(" 206 bytes=100-") && gets[1].contains(" 200 "), "\(gets)")
    }

    @Test func aBlobAlwaysShorterThanItsSizeIsAnErrorAndNothingIsStored() throws {
        let f = ImageFixture()
        let (registry, layers) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"short": ["\#(layers[0])"]}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 125 && out.stderr.contains(layers[0]), "\(out)")
        #expect(out.stderr.contains("size mismatch") || out.stderr.contains("digest mismatch"), "\(out)")
        #expect(storeUnchanged(f))
    }

    @Test func aBlobLargerThanItsManifestSaysIsCutOffAndRefused() throws {
        let f = ImageFixture()
        let (registry, layers) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"oversize": ["\#(layers[1])"]}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 125 && out.stderr.contains(layers[1]) && out.stderr.contains("larger than"), "\(out)")
        #expect(storeUnchanged(f))
        // And a manifest whose layer is larger than the limit is refused
        // before any download.
        registry.faults("{}")
        let limited = f.nook(["pull", "--max-layer-bytes", "1k", "\(registry.proxy)/app:1"])
        #expect(limited.status == 125 && limited.stderr.contains("--max-layer-bytes"), "\(limited)")
        #expect(storeUnchanged(f))
    }

    @Test func a500ThenSuccessIsRetried() throws {
        let f = ImageFixture()
        let (registry, _) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"status": {"code": 500, "count": 2, "match": "/blobs/"}}"#)
        let out = f.nook(["pull", "--verbose", "\(registry.proxy)/app:1"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr.contains("the registry answered 500; trying again"), "\(out)")
        #expect(registry.requests.filter { $0.contains(" 500 ") }.count == 2)
    }

    @Test func a429IsRetriedAfterWhatRetryAfterSays() throws {
        let f = ImageFixture()
        let (registry, _) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"status": {"code": 429, "count": 1, "match": "/manifests/", "retry_after": 1}}"#)
        let out = f.nook(["pull", "--verbose", "\(registry.proxy)/app:1"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr.contains("answered 429; trying again in 1000 ms"), "\(out)")
    }

    @Test func aRegistryThatKeepsFailingIsAnErrorWithTheStatusAndNothingIsStored() throws {
        let f = ImageFixture()
        let (registry, _) = try serve(f)
        defer { registry.stop() }
        registry.faults(#"{"status": {"code": 503, "count": 100, "match": "/blobs/"}}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 125 && out.stderr.contains("the registry answered 503") && out.stderr.contains("tried 5 times"),
                "\(out)")
        #expect(storeUnchanged(f))
    }

    @Test func blobsRedirectedToStorageArriveWithoutTheRegistrysCredentials() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer(["--proxy", "--token", "anonymous"]))
        defer { registry.stop() }
        registry.push(f.make("app", #"{"layers": [[{"name": "a", "data": "a"}]]}"#), as: "app:1")
        registry.faults(#"{"redirect": true}"#)
        let out = f.nook(["pull", "\(registry.proxy)/app:1"])
        #expect(out.status == 0, "\(out)")
        let requests = registry.requests
        #expect(requests.contains { $0.contains("/blobs/") && $0.contains(" 307 ") && $0.hasSuffix("Bearer") }, "\(requests)")
        // The storage port answers the redirected GETs: no Authorization.
        let stored = requests.filter { $0.contains("/blobs/") && $0.contains(" 200 ") }
        #expect(!stored.isEmpty && stored.allSatisfy { $0.hasSuffix(" -") }, "\(requests)")
    }
}
