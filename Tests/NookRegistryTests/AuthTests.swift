#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Testing
@testable import NookRegistry
import NookSupport

@Suite struct AuthTests {
    @Test func aBearerChallengeGivesItsRealmServiceAndScope() throws {
        let c = try #require(Challenge.parse(#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#))
        #expect(c.scheme == "bearer")
        #expect(c.parameters == ["realm": "https://auth.example/token", "service": "registry.example",
                                 "scope": "repository:a/b:pull"])
        #expect(Challenge.parse(#"Basic realm="x""#)?.scheme == "basic")
    }

    @Test func redirectsResolveAgainstTheRequestAndOriginsCompare() throws {
        let base = try #require(URLParts("https://reg.example:443/v2/a/blobs/sha256:x"))
        #expect(base.resolve("/storage/x?sig=1")?.text == "https://reg.example:443/storage/x?sig=1")
        #expect(base.resolve("https://s3.example/b")?.origin == "https://s3.example")
        #expect(base.origin == "https://reg.example")
        #expect(URLParts("file:///etc/passwd") == nil)
        #expect(URLParts("https://user@host/x") == nil)
    }

    func file(_ text: String) -> String {
        let path = "/tmp/nook-auth-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        return path
    }

    @Test func credentialsAreReadMostSpecificFirstAndNeverShown() throws {
        let encoded = Data("me:pw-secret".utf8).base64EncodedString()
        let other = Data("team:team-secret".utf8).base64EncodedString()
        let path = file(#"{"auths": {"reg.example": {"auth": "\#(encoded)"}, "reg.example/team": {"auth": "\#(other)"}}}"#)
        defer { unlink(path) }
        let store = CredentialStore(authFile: path, environment: [:], home: "/nonexistent")
        let plain = try #require(try store.credential(registry: "reg.example", repository: "me/app"))
        #expect(plain.user == "me" && plain.secret == "pw-secret")
        #expect(!plain.description.contains("pw-secret") && plain.description.contains(path))
        #expect(try store.credential(registry: "reg.example", repository: "team/app")?.user == "team")
        #expect(try store.credential(registry: "other.example") == nil)
    }

    @Test func loginKeepsOtherEntriesAndLogoutRemovesOne() throws {
        let path = file(#"{"auths": {"keep.example": {"auth": "a2VlcDpr"}}, "credsStore": "desktop"}"#)
        defer { unlink(path) }
        let store = CredentialStore(authFile: path, environment: [:], home: "/nonexistent")
        try store.save(user: "u", secret: "p", key: "reg.example:5000")
        #expect(try store.credential(registry: "reg.example:5000")?.user == "u")
        #expect(try store.credential(registry: "keep.example")?.user == "keep")
        let text = String(decoding: readFileBytes(path) ?? [], as: UTF8.self)
        #expect(text.contains("credsStore"))
        var sb = stat()
        stat(path, &sb)
        #expect(sb.st_mode & 0o777 == 0o600)
        #expect(try store.remove(key: "reg.example:5000"))
        #expect(try store.credential(registry: "reg.example:5000") == nil)
        #expect(try !store.remove(key: "reg.example:5000"))
    }

    @Test func theWriteFileIsPodmansUnlessOneIsNamed() {
        let env = ["XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CONFIG_HOME": "/home/u/.config"]
        let store = CredentialStore(authFile: nil, environment: env, home: "/home/u")
        #expect(store.writePath == "/run/user/1000/containers/auth.json")
        #expect(store.readPaths == ["/run/user/1000/containers/auth.json", "/home/u/.config/containers/auth.json",
                                    "/home/u/.docker/config.json"])
        let named = CredentialStore(authFile: nil, environment: env.merging(["REGISTRY_AUTH_FILE": "/x.json"]) { $1 },
                                    home: "/home/u")
        #expect(named.writePath == "/x.json" && named.readPaths.first == "/x.json")
    }

    @Test func aRegistriesFileWithAWrongKeyNamesFileLineAndKey() throws {
        let path = file("unqualified-search-registries = [\"quay.io\"]\n[[registry]]\nlocation = \"r.lan:5000\"\ninsecure = true\n")
        defer { unlink(path) }
        let config = try RegistryConfig.load(path: path)
        #expect(config.searchRegistries == ["quay.io"])
        #expect(config.searchSource == "unqualified-search-registries in \(path)")
        // A fresh try: without the file, messages named it as the source
        // of docker.io.
        let none = try RegistryConfig.load(path: "/nonexistent/registries.toml")
        #expect(none.searchSource == "nook's default search list (no /nonexistent/registries.toml)")
        #expect(config.settings(for: "r.lan:5000").insecure)
        let bad = file("[[registry]]\nlocation = \"r.lan\"\ninsecur = true\n")
        defer { unlink(bad) }
        do {
            _ = try RegistryConfig.load(path: bad)
            Issue.record("loaded")
        } catch {
            #expect(error.description.hasPrefix("\(bad):3:1: insecur"), "\(error.description)")
        }
    }
}
