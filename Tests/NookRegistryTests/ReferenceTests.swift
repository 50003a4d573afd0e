import Testing
@testable import NookRegistry

@Suite struct ReferenceTests {
    @Test(arguments: [
        ("alpine", nil, "alpine", "alpine:latest"),
        ("docker.io/library/alpine:3.20", "docker.io", "library/alpine", "docker.io/library/alpine:3.20"),
        ("docker.io/alpine", "docker.io", "library/alpine", "docker.io/library/alpine:latest"),
        ("localhost:5000/x", "localhost:5000", "x", "localhost:5000/x:latest"),
        ("localhost/app:1", "localhost", "app", "localhost/app:1"),
        ("ghcr.io/org/tool:1.2", "ghcr.io", "org/tool", "ghcr.io/org/tool:1.2"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "127.0.0.1:5000/a/b/c:latest"),
    ] as [(String, String?, String, String)])
    func referencesParseWithTheirDefaults(text: String, registry: String?, repository: String, shown: String) throws {
        let r = try Reference.parse(text)
        #expect(r.registry == registry)
        #expect(r.repository == repository)
        #expect(r.description == shown)
    }

    @Test func aDigestIsWhatIsAskedForEvenWithATag() throws {
        let digest = "sha256:" + String(repeating: "a", count: 64)
        let r = try Reference.parse("quay.io/x/y:1@\(digest)")
        #expect(r.tag == "1" && r.digest?.description == digest)
        #expect(r.manifestReference == digest)
        #expect(try Reference.parse("quay.io/x/y").manifestReference == "latest")
    }

    @Test(arguments: [
        ("", "it is empty"),
        ("Alpine", "repositories are lowercase"),
        ("docker.io//x", "empty path component"),
        ("x:", "the tag"),
        ("x@sha256:abc", "is not sha256: and 64"),
        ("x@md5:abc", "not a sha256 digest"),
        ("bad_host.:5000/x", "not a host name"),
    ])
    func brokenReferencesSayWhatIsWrong(text: String, reason: String) {
        do {
            _ = try Reference.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description.contains(reason), "\(error.description)")
            #expect(error.hint?.contains("[registry[:port]/]repository") == true)
        }
    }

    @Test func shortNamesResolveThroughTheSearchListInOrder() throws {
        var config = RegistryConfig(path: "/x/registries.toml")
        config.searchRegistries = ["quay.io", "docker.io"]
        let found = try config.candidates(try Reference.parse("alpine:3"), text: "alpine:3")
        #expect(found.map(\.description) == ["quay.io/alpine:3", "docker.io/library/alpine:3"])
        config.searchRegistries = []
        #expect(throws: RegistryError.self) { try config.candidates(try Reference.parse("alpine"), text: "alpine") }
        // A qualified name never goes through the list.
        #expect(try config.candidates(try Reference.parse("localhost:5000/x"), text: "").count == 1)
    }

    @Test func loopbackHostsMaySpeakPlainHTTP() {
        #expect(RegistryConfig.isLoopback("localhost:5000"))
        #expect(RegistryConfig.isLoopback("127.0.0.1:41234"))
        #expect(RegistryConfig.isLoopback("[::1]:5000"))
        #expect(!RegistryConfig.isLoopback("localhost.example.com"))
        #expect(!RegistryConfig.isLoopback("10.0.0.1:5000"))
    }
}

struct SearchHintTests {
    // With no registries to search, the hint named docker.io/library/me/zz:1
    // for me/zz:1; only one-part names are under library/ (a fresh try).
    @Test(arguments: [("alpine:3", "docker.io/library/alpine:3"), ("me/zz:1", "docker.io/me/zz:1")])
    func theHintNamesTheHubReferenceThatWouldWork(name: String, expected: String) {
        let hint = RegistryError.noSearchRegistries(name, config: "registries.toml").hint ?? ""
        #expect(hint.contains("(\(expected))"), "\(hint)")
    }
}
