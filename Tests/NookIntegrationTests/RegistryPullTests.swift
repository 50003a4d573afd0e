import Foundation
import Testing

/// `nook pull`, `nook run IMAGE` and `nook push` against real registries
/// started on 127.0.0.1 for each test: plain HTTP, HTTPS with htpasswd
/// basic auth and a CA made at test time, and a proxy in front that asks
/// for tokens and plays faults (Resources/registry.py).
@Suite(.enabled(if: Harness.ready && FileManager.default.fileExists(atPath: "/usr/bin/docker-registry")
    && FileManager.default.fileExists(atPath: "/usr/bin/skopeo"),
    "needs the test user, docker-registry and skopeo (script/test installs them)"))
struct RegistryPullTests {
    let h = Harness.shared

    /// A two-layer busybox image as an OCI layout; its layer digests (hex).
    func busybox(_ f: ImageFixture, _ name: String, architecture: String = "amd64",
                 marker: String = "pulled") -> (layout: String, layers: [String]) {
        let tar = f.ws + "/busybox.tar"
        let out = f.sh("""
            set -e
            mkdir -p bb/bin bb/etc
            cp /bin/busybox bb/bin/
            for c in sh cat echo id ls; do ln -sf busybox bb/bin/$c; done
            printf 'root:x:0:0:root:/root:/bin/sh\\n' > bb/etc/passwd
            tar --owner=0 --group=0 --numeric-owner -C bb -cf \(tar) .
            """)
        #expect(out.status == 0, "\(out)")
        let spec = """
            {"architecture": "\(architecture)", "config": {"Cmd": ["/bin/cat", "/marker"]},
             "layers": [{"tar": "\(tar)"}, [{"name": "marker", "data": "\(marker)\\n"}]]}
            """
        let layout = f.make(name, spec)
        let index = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as? [String: Any]
        let manifestDigest = ((index?["manifests"] as? [[String: Any]])?.first?["digest"] as? String) ?? ""
        let manifest = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            layout + "/blobs/sha256/" + manifestDigest.dropFirst(7)))) as? [String: Any]
        let layers = ((manifest?["layers"] as? [[String: Any]]) ?? []).compactMap { ($0["digest"] as? String)?.dropFirst(7) }
        return (layout, layers.map(String.init))
    }

    @Test func aPulledImageRunsAndASecondPullDownloadsNoLayer() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer(["--proxy"]))
        defer { registry.stop() }
        let image = busybox(f, "bb")
        registry.push(image.layout, as: "tools/bb:1")

        let first = f.nook(["pull", "\(registry.proxy)/tools/bb:1"])
        #expect(first.status == 0, "\(first)")
        #expect(first.stdout.contains("Pulled \(registry.proxy)/tools/bb:1 as image"), "\(first)")
        #expect(first.stdout.contains("2 layers downloaded"), "\(first)")
        // Plain lines without a terminal.
        #expect(first.stderr.contains("layer 1/2") && first.stderr.contains("unpacked"), "\(first)")
        for layer in image.layers { #expect(registry.blobGets(layer) == 1, "\(registry.requests)") }

        let run = f.nook(["run", "--pull", "never", "\(registry.proxy)/tools/bb:1", "--"])
        #expect(run.status == 0 && run.stdout == "pulled\n", "\(run)")

        let second = f.nook(["pull", "\(registry.proxy)/tools/bb:1"])
        #expect(second.status == 0 && second.stdout.contains("every layer was in the store"), "\(second)")
        for layer in image.layers { #expect(registry.blobGets(layer) == 1, "no layer downloaded again: \(registry.requests)") }
        #expect(f.entries("tmp").isEmpty && f.entries("partial").isEmpty)
    }

    @Test func runPullsAMissingImageAndNeverRefusesTo() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer())
        defer { registry.stop() }
        registry.push(busybox(f, "bb", marker: "from run").layout, as: "bb:2")
        let never = f.nook(["run", "--pull", "never", "\(registry.host)/bb:2", "--"])
        #expect(never.status == 125 && never.stderr.contains("no image \(registry.host)/bb:2 in the store"), "\(never)")
        let run = f.nook(["run", "\(registry.host)/bb:2", "--"])
        #expect(run.status == 0 && run.stdout.hasSuffix("from run\n"), "\(run)")
        let quiet = f.nook(["pull", "-q", "\(registry.host)/bb:2"])
        #expect(quiet.status == 0 && quiet.stdout.hasPrefix("sha256:") && quiet.stderr.isEmpty, "\(quiet)")
    }

    /// run of a missing localhost/NAME tried https://localhost:443 five
    /// times and said only that the connection failed; a registry on a
    /// loopback port that refused HTTPS was never asked over HTTP.
    @Test func aMissingImageSaysItIsMissingBeforeWhyThePullFailed() throws {
        let f = ImageFixture()
        let local = f.nook(["run", "localhost/nope:1", "--", "true"])
        #expect(local.status == 125 && local.stderr.contains("no image localhost/nope:1 in the store")
            && local.stderr.contains("localhost:5000/NAME") && !local.stderr.contains("connect"), "\(local)")
        // Nothing listens on port 1 of the loopback: HTTPS, then HTTP.
        let gone = f.nook(["run", "-v", "127.0.0.1:1/nope:1", "--", "true"], timeout: 60)
        #expect(gone.status == 125
            && gone.stderr.contains("no image 127.0.0.1:1/nope:1 in the store, and pulling it failed: ")
            && gone.stderr.contains("does not answer HTTPS; using plain HTTP"), "\(gone)")
        // A fresh try: --dry-run pulled the image.
        let dry = f.nook(["run", "-v", "--dry-run", "127.0.0.1:1/nope:1", "--", "true"])
        #expect(dry.status == 125 && dry.stderr.contains("(--dry-run never pulls)") && !dry.stderr.contains("HTTP"),
                "\(dry)")
    }

    @Test func anIndexGivesThisHostsImageOrTheOneAskedFor() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer())
        defer { registry.stop() }
        let amd = busybox(f, "amd", marker: "amd64")
        let arm = busybox(f, "arm", architecture: "arm64", marker: "arm64")
        // An index of both, pushed as one tag.
        let index = f.sh("""
            set -e
            python3 - <<'PY'
            import json, hashlib, os, shutil
            out = "multi"
            os.makedirs(out + "/blobs/sha256", exist_ok=True)
            entries = []
            for src, arch in (("amd", "amd64"), ("arm", "arm64")):
                for b in os.listdir(src + "/blobs/sha256"):
                    shutil.copy(src + "/blobs/sha256/" + b, out + "/blobs/sha256/" + b)
                d = json.load(open(src + "/index.json"))["manifests"][0]
                d.pop("annotations", None)
                d["platform"] = {"os": "linux", "architecture": arch}
                entries.append(d)
            idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
            h = hashlib.sha256(idx).hexdigest()
            open(out + "/blobs/sha256/" + h, "wb").write(idx)
            json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h, "size": len(idx)}]}, open(out + "/index.json", "w"))
            open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
            PY
            """)
        #expect(index.status == 0, "\(index)")
        _ = (amd, arm)
        registry.push(f.ws + "/multi", as: "multi:1", all: true)

        let pull = f.nook(["pull", "\(registry.host)/multi:1"])
        #expect(pull.status == 0, "\(pull)")
        #expect(f.nook(["run", "\(registry.host)/multi:1", "--"]).stdout == "amd64\n")
        let other = f.nook(["pull", "--platform", "linux/arm64", "\(registry.host)/multi:1"])
        #expect(other.status == 0 && other.stdout.contains("it cannot run here"), "\(other)")
        let none = f.nook(["pull", "--platform", "linux/s390x", "\(registry.host)/multi:1"])
        #expect(none.status == 125 && none.stderr.contains("has no image for linux/s390x; it has linux/amd64, linux/arm64"),
                "\(none)")
    }

    @Test func basicAuthOverTLSWorksWithTheCAGivenAndLogin() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer(["--tls", "--htpasswd", "alice:s3cret-pw"]))
        defer { registry.stop() }
        registry.push(busybox(f, "bb", marker: "tls").layout, as: "private/bb:1", creds: "alice:s3cret-pw")
        let ref = "\(registry.host)/private/bb:1"

        // Without the CA, TLS fails with the fix named; never a fall back to HTTP.
        let noCA = f.nook(["pull", ref])
        #expect(noCA.status == 125 && noCA.stderr.contains("TLS") && noCA.stderr.contains("--tls-ca"), "\(noCA)")
        // With the CA but no credentials.
        let anonymous = f.nook(["pull", "--tls-ca", registry.ca, ref])
        #expect(anonymous.status == 125 && anonymous.stderr.contains("wants credentials")
                && anonymous.stderr.contains("nook login \(registry.host)"), "\(anonymous)")
        // A wrong password is refused at login, and nothing is saved.
        let wrong = h.nook(["login", "--tls-ca", registry.ca, "-u", "alice", "--password-stdin", registry.host],
                           in: f.ws, stdin: "wrong-pw\n", env: f.env)
        #expect(wrong.status == 125 && wrong.stderr.contains("refused the credentials of alice"), "\(wrong)")
        #expect(!wrong.stderr.contains("wrong-pw") && !wrong.stdout.contains("wrong-pw"))
        #expect(!FileManager.default.fileExists(atPath: f.ws + "/auth.json"))

        let login = h.nook(["login", "--tls-ca", registry.ca, "-u", "alice", "--password-stdin", registry.host],
                           in: f.ws, stdin: "s3cret-pw\n", env: f.env)
        #expect(login.status == 0 && login.stdout.contains("saved in \(f.ws)/auth.json"), "\(login)")
        let saved = (try? String(contentsOfFile: f.ws + "/auth.json", encoding: .utf8)) ?? ""
        #expect(saved.contains(registry.host) && saved.contains("\"auth\""), "\(saved)")
        var sb = stat()
        stat(f.ws + "/auth.json", &sb)
        #expect(sb.st_mode & 0o777 == 0o600)

        let pull = f.nook(["pull", "--debug", "--tls-ca", registry.ca, ref])
        #expect(pull.status == 0, "\(pull)")
        #expect(!pull.stderr.contains("s3cret-pw") && !pull.stderr.contains("YWxpY2U6czNjcmV0LXB3"), "credentials never logged")
        #expect(f.nook(["run", ref, "--"]).stdout == "tls\n")

        let logout = f.nook(["logout", registry.host])
        #expect(logout.status == 0, "\(logout)")
        let again = f.nook(["pull", "--tls-ca", registry.ca, ref])
        #expect(again.status == 125 && again.stderr.contains("wants credentials"), "\(again)")
    }

    @Test func tokenAuthIsAnsweredAnonymouslyAndWithCredentials() throws {
        let f = ImageFixture()
        let open = try #require(RegistryServer(["--proxy", "--token", "anonymous"]))
        defer { open.stop() }
        open.push(busybox(f, "bb").layout, as: "bb:1")
        let pull = f.nook(["pull", "\(open.proxy)/bb:1"])
        #expect(pull.status == 0, "\(pull)")
        #expect(open.requests.contains { $0.hasPrefix("GET /token") && $0.hasSuffix(" -") }, "an anonymous token: \(open.requests)")
        #expect(open.requests.contains { $0.contains("/manifests/1 200") && $0.hasSuffix("Bearer") })

        let closed = try #require(RegistryServer(["--proxy", "--token", "bob:tok-pw"]))
        defer { closed.stop() }
        closed.push(busybox(f, "bb2").layout, as: "bb:1")
        let refused = f.nook(["pull", "\(closed.proxy)/bb:1"])
        #expect(refused.status == 125 && refused.stderr.contains("wants credentials"), "\(refused)")
        // Credentials as podman writes them, in the file REGISTRY_AUTH_FILE names.
        let auth = Data("bob:tok-pw".utf8).base64EncodedString()
        h.write(f.ws + "/auth.json", #"{"auths": {"\#(closed.proxy)": {"auth": "\#(auth)"}}}"#, mode: 0o600)
        let pulled = f.nook(["pull", "\(closed.proxy)/bb:1"])
        #expect(pulled.status == 0, "\(pulled)")
        #expect(closed.requests.contains { $0.hasPrefix("GET /token") && $0.contains(" 200 ") && $0.hasSuffix("Basic") })
    }

    @Test func aBrokenCredentialsFileNamesItselfAndTheFix() throws {
        let f = ImageFixture()
        h.write(f.ws + "/auth.json", #"{"auths": {"127.0.0.1:1": {"auth": "not base64!"}}}"#)
        let bad = f.nook(["pull", "127.0.0.1:1/x:1"])
        #expect(bad.status == 125 && bad.stderr.contains("\(f.ws)/auth.json") && bad.stderr.contains("not base64"), "\(bad)")
        h.write(f.ws + "/auth.json", "{not json")
        let broken = f.nook(["pull", "127.0.0.1:1/x:1"])
        #expect(broken.status == 125 && broken.stderr.contains("\(f.ws)/auth.json") && broken.stderr.contains("hint:"), "\(broken)")
        #expect(f.storeIsEmpty)
    }

    @Test(arguments: ["Bad/Name", "x:", "x@sha256:12", "docker.io//x"])
    func aBrokenReferenceIsRefusedBeforeAnyRequest(reference: String) {
        let f = ImageFixture()
        let out = f.nook(["pull", reference])
        #expect(out.status == 125 && out.stderr.contains("is not an image reference"), "\(out)")
        #expect(out.stderr.contains("hint: write [registry[:port]/]repository"), "\(out)")
    }

    @Test func aShortNameWithNoRegistriesToSearchSaysSo() {
        let f = ImageFixture()
        let out = f.nook(["pull", "alpine"])
        #expect(out.status == 125 && out.stderr.contains("alpine is a short name and no registries are set to search"),
                "\(out)")
        #expect(out.stderr.contains("\(f.ws)/config/nook/registries.toml"), "\(out)")
    }

    @Test func aShortNameIsLookedUpOnTheSearchListAndSaysWhere() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer())
        defer { registry.stop() }
        registry.push(busybox(f, "bb", marker: "short").layout, as: "shorty:1")
        h.write(f.ws + "/config/nook/registries.toml", "unqualified-search-registries = [\"\(registry.host)\"]\n")
        let out = f.nook(["pull", "shorty:1"])
        #expect(out.status == 0 && out.stderr.contains("Trying \(registry.host)/shorty:1 (shorty:1 is a short name"),
                "\(out)")
        #expect(f.nook(["run", "\(registry.host)/shorty:1", "--"]).stdout == "short\n")
    }

    @Test func pushSendsAStoredImageThatPullsBackAndSaveRoundTripsThroughLoad() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer(["--proxy"]))
        defer { registry.stop() }
        let layout = busybox(f, "bb", marker: "pushed").layout
        #expect(f.nook(["image", "load", "--tag", "localhost/bb:1", layout]).status == 0)
        let id = f.nook(["image", "ls", "-q"]).stdout

        let push = f.nook(["push", "localhost/bb:1", "\(registry.proxy)/pushed/bb:1"])
        #expect(push.status == 0 && push.stdout.contains("3 blobs uploaded, 0 already there"), "\(push)")
        // A fresh try: the config was shown as "layer 3/3".
        #expect(push.stderr.contains("layer 2/2") && push.stderr.contains("\nconfig ")
            && !push.stderr.contains("layer 3/3"), "\(push)")
        let again = f.nook(["push", "localhost/bb:1", "\(registry.proxy)/pushed/bb:1"])
        #expect(again.status == 0 && again.stdout.contains("0 blobs uploaded, 3 already there"), "\(again)")

        // Pulled back into another store, it is the same image and runs.
        let other = ImageFixture()
        let pull = other.nook(["pull", "\(registry.proxy)/pushed/bb:1"])
        #expect(pull.status == 0, "\(pull)")
        #expect(other.nook(["image", "ls", "-q"]).stdout == id)
        #expect(other.nook(["run", "\(registry.proxy)/pushed/bb:1", "--"]).stdout == "pushed\n")

        // save -> load, both formats, into a third store: the same image id.
        for format in ["oci", "docker-archive"] {
            let third = ImageFixture()
            let path = f.ws + "/saved-" + format
            let save = f.nook(["image", "save", "--format", format, "localhost/bb:1", path])
            #expect(save.status == 0, "\(save)")
            let load = third.nook(["image", "load", path])
            #expect(load.status == 0 && load.stdout.contains("localhost/bb:1"), "\(format): \(load)")
            #expect(third.nook(["image", "ls", "-q"]).stdout == id, "\(format)")
            #expect(third.nook(["run", "localhost/bb:1", "--"]).stdout == "pushed\n", "\(format)")
        }
        let exists = f.nook(["image", "save", "localhost/bb:1", f.ws + "/saved-oci"])
        #expect(exists.status == 125 && exists.stderr.contains("already exists"), "\(exists)")
        // "-" is stdin to load; save made a file called "-" (a fresh try).
        let dash = f.nook(["image", "save", "localhost/bb:1", "-"])
        #expect(dash.status == 2 || dash.status == 125, "\(dash)")
        #expect(dash.stderr.contains("- is not a path") && !FileManager.default.fileExists(atPath: f.ws + "/-"), "\(dash)")
    }

    // A fresh try: pulls of the same image at once failed one in four with
    // ENOENT: a pull waiting on another's partial blob took it after the
    // other had moved it into its import.
    @Test func pullsOfTheSameImageAtOnceAllSucceed() throws {
        let registry = try #require(RegistryServer())
        defer { registry.stop() }
        let seed = ImageFixture()
        registry.push(busybox(seed, "bb", marker: "together").layout, as: "together/bb:1")
        for round in 1...4 {
            let f = ImageFixture()
            let out = f.sh("for i in 1 2 3 4; do $NOOK pull -q \(registry.host)/together/bb:1 >/dev/null 2>err$i & done; "
                           + "wait; cat err1 err2 err3 err4", timeout: 180)
            #expect(out.status == 0 && out.stdout.isEmpty, "round \(round): \(out)")
            #expect(f.nook(["run", "\(registry.host)/together/bb:1", "--"]).stdout == "together\n")
        }
    }

    // A fresh try: a registry whose upload Location named another host got
    // the user's credentials sent there with every chunk of the push.
    @Test func pushSendsNoCredentialsToAnotherHostsUploadLocation() throws {
        let f = ImageFixture()
        let registry = try #require(RegistryServer(["--proxy", "--token", "bob:tok-pw"]))
        defer { registry.stop() }
        registry.faults(#"{"upload_elsewhere": true}"#)
        let auth = Data("bob:tok-pw".utf8).base64EncodedString()
        h.write(f.ws + "/auth.json", #"{"auths": {"\#(registry.proxy)": {"auth": "\#(auth)"}}}"#, mode: 0o600)
        #expect(f.nook(["image", "load", "--tag", "localhost/bb:1", busybox(f, "bb").layout]).status == 0)
        let push = f.nook(["push", "localhost/bb:1", "\(registry.proxy)/elsewhere/bb:1"])
        #expect(push.status == 0, "\(push)")
        let uploads = registry.requests.filter { ($0.hasPrefix("PUT ") || $0.hasPrefix("PATCH ")) && $0.contains("/blobs/uploads/") }
        #expect(!uploads.isEmpty && uploads.allSatisfy { $0.hasSuffix(" -") }, "\(registry.requests)")
        #expect(registry.requests.contains { $0.hasPrefix("POST ") && $0.hasSuffix("Bearer") }, "\(registry.requests)")
    }

    @Test func pushNeedsARegistryInTheName() {
        let f = ImageFixture()
        let out = f.nook(["push", "nosuch:1", "plain/name:1"])
        #expect(out.status == 125 && out.stderr.contains("no image named nosuch:1"), "\(out)")
    }
}
