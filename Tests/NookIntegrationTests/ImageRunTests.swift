import Foundation
import Testing

/// `nook run IMAGE --`: images of the store as roots, as an unprivileged user.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ImageRunTests {
    let h = Harness.shared

    /// A busybox root as a tar of root-owned entries, for image layers.
    func busyboxTar(_ f: ImageFixture) -> String {
        let tar = f.ws + "/busybox.tar"
        let out = f.sh("""
            set -e
            mkdir -p bb/bin bb/etc bb/srv bb/tmp bb/root
            cp /bin/busybox bb/bin/
            for c in sh ls cat id echo touch mkdir rm stat env pwd sleep wc; do ln -sf busybox bb/bin/$c; done
            printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/srv:/bin/sh\\n' > bb/etc/passwd
            printf 'root:x:0:\\napp:x:1000:\\nextra:x:2000:app\\n' > bb/etc/group
            tar --owner=0 --group=0 --numeric-owner -C bb -cf \(tar) .
            """)
        #expect(out.status == 0, "\(out)")
        return tar
    }

    func load(_ f: ImageFixture, _ name: String, config: String = "{}", extraLayers: String = "",
              architecture: String = "amd64") -> String {
        let tar = busyboxTar(f)
        let layers = "[{\"tar\": \"\(tar)\"}" + (extraLayers.isEmpty ? "" : ", " + extraLayers) + "]"
        let spec = "{\"name\": \"localhost/\(name):1\", \"architecture\": \"\(architecture)\", \"config\": \(config), \"layers\": \(layers)}"
        let out = f.nook(["image", "load", f.make(name, spec)])
        #expect(out.status == 0, "\(out)")
        return "localhost/\(name):1"
    }

    // An image with several names: ps showed the first of them, not the
    // one it was run by (a fresh try).
    @Test func aContainerIsShownByTheImageNameItWasRunBy() throws {
        let f = ImageFixture()
        let first = load(f, "aaa", config: #"{"Cmd": ["sleep", "100"]}"#)
        let again = f.nook(["image", "load", "--tag", "localhost/zzz:2", f.ws + "/aaa"])
        #expect(again.status == 0, "\(again)")
        let runtime = f.ws + "/run"
        f.sh("mkdir -m 700 run")
        var env = f.env
        env["XDG_RUNTIME_DIR"] = runtime
        for (name, image) in [("by-first", first), ("by-second", "localhost/zzz:2")] {
            let out = h.nook(["run", "-d", "--name", name, image, "--"], in: f.ws, env: env)
            #expect(out.status == 0, "\(out)")
        }
        let ps = h.nook(["ps", "--format", "json"], in: f.ws, env: env).stdout
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(ps.utf8)) as? [[String: Any]])
        let images = Dictionary(uniqueKeysWithValues: rows.compactMap { r in
            (r["name"] as? String).map { ($0, r["image"] as? String ?? "") } })
        #expect(images == ["by-first": first, "by-second": "localhost/zzz:2"], "\(ps)")
        h.nook(["rm", "-f", "by-first", "by-second"], in: f.ws, env: env)
    }

    @Test func theImageConfigGivesCommandEnvironmentWorkdirAndUser() {
        let f = ImageFixture()
        let image = load(f, "cfg", config: """
            {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo $GREETING in $(pwd) as $(id -u):$(id -g) $(id -G)"],
             "Env": ["GREETING=hello", "PATH=/bin"], "WorkingDir": "/srv", "User": "app"}
            """)
        let plain = f.nook(["run", image, "--"])
        #expect(plain.stdout == "hello in /srv as 1000:1000 1000 2000\n", "\(plain)")
        let command = f.nook(["run", "--user", "0", "--env", "GREETING=bye", image, "--", "echo $GREETING $(id -u)"])
        #expect(command.stdout == "bye 0\n", "a command replaces Cmd and keeps Entrypoint: \(command)")
        let entry = f.nook(["run", "--entrypoint", "/bin/echo", image, "--", "direct"])
        #expect(entry.stdout == "direct\n", "\(entry)")
        let cleared = f.nook(["run", "--entrypoint", "", image, "--", "echo", "no entrypoint"])
        #expect(cleared.stdout == "no entrypoint\n", "an empty --entrypoint clears the image's: \(cleared)")
        // Exactly the user's groups: none of root's or the host's left over.
        let groups = f.nook(["run", "--user", "1000:1000", image, "--", "-c", "id -G"])
        #expect(groups.stdout == "1000 2000\n", "\(groups)")
        let lone = f.nook(["run", "--user", "4242", image, "--", "-c", "id -u; id -G"])
        #expect(lone.stdout == "4242\n0\n", "a uid /etc/passwd lacks gets gid 0: \(lone)")
        let none = f.nook(["run", "--user", "4242:4242", image, "--", "-c", "id -G"])
        #expect(none.stdout == "4242\n", "no group left over from root: \(none)")
        let flag = f.nook(["run", "--image", image, "--workdir", "/", "--", "pwd"])
        #expect(flag.stdout == "/\n", "\(flag)")
    }

    /// A short name finds the image loaded as localhost/NAME; the image's
    /// name put after -- (a command of that name on the host root) says
    /// how to run the image instead.
    @Test func aShortNameRunsTheLocalImageAndAnImageGivenAsTheCommandIsExplained() {
        let f = ImageFixture()
        _ = load(f, "short")
        let short = f.nook(["run", "--pull", "never", "short:1", "--", "echo", "local"])
        #expect(short.status == 0 && short.stdout == "local\n", "\(short)")
        let misplaced = f.nook(["run", "--", "short:1", "echo"])
        #expect(misplaced.status == 127, "\(misplaced)")
        #expect(misplaced.stderr.contains("hint: short:1 is an image in your store: to run it, name it before --: "
            + "nook run short:1 -- [COMMAND]"), "\(misplaced)")
        let other = f.nook(["run", "--", "no-such-command-here"])
        #expect(other.status == 127 && !other.stderr.contains("hint"), "\(other)")
    }

    @Test func writesAreGoneNextRunUnlessPersistedAndTheLayersNeverChange() {
        let f = ImageFixture()
        let image = load(f, "rw")
        let before = f.sh("find data/nook/store/layers -newer data/nook/store -o -print | sort | md5sum").stdout
        #expect(f.nook(["run", image, "--", "sh", "-c", "echo kept > /etc/kept; rm /bin/wc"]).status == 0)
        let next = f.nook(["run", image, "--", "sh", "-c", "cat /etc/kept 2>&1; ls /bin/wc"])
        #expect(next.stdout.contains("No such file") && next.stdout.contains("/bin/wc"), "\(next)")
        let layer = "layer-\(Int.random(in: 1000...9999))"
        #expect(f.nook(["run", "--persist", layer, image, "--", "sh", "-c", "echo kept > /etc/kept"]).status == 0)
        let kept = f.nook(["run", "--persist", layer, image, "--", "cat", "/etc/kept"])
        #expect(kept.stdout == "kept\n", "\(kept)")
        let after = f.sh("find data/nook/store/layers -newer data/nook/store -o -print | sort | md5sum").stdout
        #expect(before == after, "the image's layers changed")
        f.nook(["unshare", "--", "rm", "-rf", f.ws + "/data/nook/persist/" + layer])
    }

    @Test func ownersAreTheImagesMappedNotNobody() {
        let f = ImageFixture()
        let image = load(f, "own", extraLayers: #"[{"name": "srv/app-file", "data": "x", "uid": 1000, "gid": 2000}]"#)
        let out = f.nook(["run", image, "--", "sh", "-c", "stat -c '%u:%g %n' /etc/passwd /srv/app-file"])
        #expect(out.stdout == "0:0 /etc/passwd\n1000:2000 /srv/app-file\n", "\(out)")
    }

    @Test func keepIDShowsTheImagesOwnersWithoutCopyingIt() throws {
        let user = try #require(h.user)
        let f = ImageFixture()
        let image = load(f, "keep", extraLayers: #"[{"name": "srv/app-file", "data": "x", "uid": 1000, "gid": 2000}]"#)
        let out = f.nook(["run", "--userns", "keep-id", "--bind", "\(f.ws):/out", image, "--", "sh", "-c",
                          "id -u; stat -c '%u:%g %n' /etc/passwd /srv/app-file; touch /out/made-inside"])
        #expect(out.stdout == "\(user.uid)\n0:0 /etc/passwd\n1000:2000 /srv/app-file\n", "\(out)")
        var sb = stat()
        #expect(stat(f.ws + "/made-inside", &sb) == 0 && sb.st_uid == user.uid, "files in binds are the caller's")
        // Nothing was copied into the store for it.
        #expect(f.entries("layers").count == 2)
    }

    // C25 through nook run, with each kind of writable layer.
    @Test(arguments: DirectoryRootTests.ephemeralOverlays)
    func deletionsAndOpaqueDirectoriesShowAsTheSpecSays(overlay: String) {
        let f = ImageFixture()
        let image = load(f, "c25", extraLayers: """
            [{"name": "dir1/dir2/foo"}, {"name": "root/test"}, {"name": "a/b/c/bar"}, {"name": "s/x"}, {"name": "s/y"}],
            [{"name": ".wh.dir1"}, {"name": "root/.wh.test"}, {"name": "a/.wh..wh..opq", "data": ""}, {"name": "a/b/c/foo"},
             {"name": "s/.wh..wh..opq", "data": ""}],
            [{"name": "dir1/dir2", "type": "dir"}, {"name": "s/y"}]
            """)
        for order in ["ls -A /dir1/dir2 /a/b/c /s; ls /root", "stat /a/b/c/foo >/dev/null; ls -A /a/b/c /s /dir1/dir2; ls /root"] {
            let out = f.nook(["run", "--overlay", overlay, image, "--", "sh", "-c", order])
            #expect(out.status == 0, "\(out)")
            #expect(out.stdout.contains("/a/b/c:\nfoo\n"), "\(overlay) \(order): \(out)")
            #expect(out.stdout.contains("/s:\ny\n"), "\(overlay) \(order): \(out)")
            #expect(out.stdout.contains("/dir1/dir2:\n\n") || out.stdout.hasPrefix("/dir1/dir2:\n\n") || out.stdout.contains("/dir1/dir2:\n/"),
                    "\(overlay) \(order): \(out)")
            #expect(!out.stdout.contains(".wh."), "\(out)")
        }
    }

    @Test(arguments: DirectoryRootTests.ephemeralOverlays)
    func manyLayersStillWork(overlay: String) {
        let f = ImageFixture()
        let layers = (1...150).map { "[{\"name\": \"many/f\($0)\", \"data\": \"\($0)\"}]" }.joined(separator: ", ")
        let image = load(f, "many", extraLayers: layers)
        let out = f.nook(["run", "--overlay", overlay, image, "--", "sh", "-c", "ls /many | wc -l; cat /many/f1 /many/f150"],
                         timeout: 300)
        #expect(out.stdout == "150\n1150", "\(out)")
    }

    @Test func anImageRunsReadOnlyEvenWithoutItsOwnMountPoints() {
        let f = ImageFixture()
        let image = load(f, "ro", extraLayers: #"[{"name": "srv/second"}]"#)
        let out = f.nook(["run", "--read-only", image, "--", "sh", "-c", "ls /srv; touch /x 2>&1; touch /tmp/y && echo tmp-ok"])
        #expect(out.stdout.contains("second") && out.stdout.contains("Read-only") && out.stdout.contains("tmp-ok"), "\(out)")
        // One layer and no /proc, /dev or /sys in it: the mount points are
        // made in a scratch layer, and the root still refuses writes.
        let single = load(f, "ro1")
        let one = f.nook(["run", "--read-only", single, "--", "sh", "-c", "ls /proc/self/ >/dev/null && touch /x"])
        #expect(one.status == 1 && one.stderr.contains("Read-only"), "\(one)")
        // --overlay none says the same (it failed with EROFS on /proc).
        let none = f.nook(["run", "--overlay", "none", single, "--", "sh", "-c", "ls /proc/self/ >/dev/null && touch /x"])
        #expect(none.status == 1 && none.stderr.contains("Read-only"), "\(none)")
    }

    @Test func anImageForAnotherArchitectureIsRefusedAtRun() {
        let f = ImageFixture()
        let image = load(f, "arm", architecture: "arm64")
        let out = f.nook(["run", image, "--", "true"])
        #expect(out.status == 125 && out.stderr.contains("arm64"), "\(out)")
    }

    @Test func anUnknownImageOrUserIsAClearError() {
        let f = ImageFixture()
        let missing = f.nook(["run", "nosuch", "--", "true"])
        #expect(missing.status == 125 && missing.stderr.contains("no image nosuch in the store"), "\(missing)")
        #expect(missing.stderr.contains("nook run -- nosuch"), "\(missing)")
        let image = load(f, "usr")
        let user = f.nook(["run", "--user", "nobody-here", image, "--", "true"])
        #expect(user.status == 125 && user.stderr.contains("no user nobody-here in the root's /etc/passwd"), "\(user)")
    }

    // The image's /etc/passwd is the one its layers show: a whiteout hides
    // it, an opaque /etc replaces the directory, a symlink is not followed.
    @Test func usersAreLookedUpInThePasswdTheLayersShow() {
        let f = ImageFixture()
        let gone = load(f, "pwgone", extraLayers: #"[{"name": "etc/.wh.passwd"}]"#)
        let missing = f.nook(["run", "--user", "app", gone, "--", "true"])
        #expect(missing.status == 125 && missing.stderr.contains("no user app"), "\(missing)")
        let opaque = load(f, "pwopaque", extraLayers: """
            [{"name": "etc/.wh..wh..opq", "data": ""}, {"name": "etc/passwd", "data": "other:x:77:78::/:/bin/sh\\n"}]
            """)
        let other = f.nook(["run", "--user", "other", opaque, "--", "sh", "-c", "id -u; id -g"])
        #expect(other.stdout == "77\n78\n", "\(other)")
        let hidden = f.nook(["run", "--user", "app", opaque, "--", "true"])
        #expect(hidden.status == 125 && hidden.stderr.contains("no user app"), "\(hidden)")
        let linked = load(f, "pwlink", extraLayers: #"[{"name": "etc/passwd", "type": "symlink", "target": "/etc/group"}]"#)
        let link = f.nook(["run", "--user", "app", linked, "--", "true"])
        #expect(link.status == 125 && link.stderr.contains("no readable /etc/passwd"), "\(link)")
    }

    // Without subordinate ids: owners and ids are emulated through the
    // seccomp listener, with the kernel's errors and rules kept.
    @Test(.enabled(if: Harness.shared.userWithoutRanges != nil, "needs NOOK_TEST_USER_NOSUB (script/test makes one)"))
    func withoutSubordinateIdsRootIsEmulated() throws {
        let user = try #require(h.userWithoutRanges)
        let f = ImageFixture()
        let tar = busyboxTar(f)
        let image = f.make("emu", #"{"name": "localhost/emu:1", "layers": [{"tar": "\#(tar)"}]}"#)
        f.sh("mkdir -p ro && touch ro/x")
        lchown(f.ws, user.uid, user.gid)
        for path in FileManager.default.enumerator(atPath: f.ws)?.allObjects as? [String] ?? [] {
            lchown(f.ws + "/" + path, user.uid, user.gid)
        }
        let load = f.nook(["image", "load", "--remap-ids", image], as: user)
        #expect(load.status == 0, "\(load)")
        let script = """
            touch /f; chown 42:43 /f && echo chown-ok; chown 1 /nope; chown 1 /ro/x; ln -s /nope /l; chown -h 5 /l && echo link-ok
            /bin/busybox su app -c 'id -u; id -g; id -G'
            id -u
            f=$(printf 'caf\\351'); touch "$f"; chown 5:5 "$f" && echo latin1-ok
            chown 5 /$(printf 'a%.0s' $(seq 5000)) 2>&1 | grep -q 'too long' && echo too-long
            /bin/busybox su app -c '(sleep 1; id -u) &'; sleep 2
            """
        let out = f.nook(["run", "--bind", f.ws + "/ro:/ro:ro", "localhost/emu:1", "--", "sh", "-c", script], as: user)
        // The last line: a child orphaned after su keeps app's uid.
        #expect(out.stdout == "chown-ok\nlink-ok\n1000\n1000\n1000 2000\n0\nlatin1-ok\ntoo-long\n1000\n", "\(out)")
        #expect(out.stderr.contains("/nope: No such file") && out.stderr.contains("/ro/x: Read-only"), "\(out)")
        #expect(out.stderr.components(separatedBy: "root emulation").count == 2, "said once: \(out)")
        let off = f.nook(["run", "--no-root-emulation", "localhost/emu:1", "--", "sh", "-c", "touch /f; chown 42 /f"], as: user)
        #expect(off.status == 1 && off.stderr.contains("Invalid argument") && !off.stderr.contains("root emulation"),
                "\(off)")
        // With subordinate ids nothing is emulated.
        let normal = f.nook(["run", "--dry-run", "localhost/emu:1", "--", "true"])
        #expect(!normal.stdout.contains("root-emulation") && !normal.stderr.contains("root emulation"), "\(normal)")
    }

    // The second attack report's lookups: a Latin-1 GECOS field, CRLF line
    // ends, "+5", a group the map lacks, HOME from passwd, a WorkingDir the
    // image lacks (made, as docker does) or writes relative.
    @Test func usersAndWorkingDirectoriesAreTakenAsDockerTakesThem() {
        let f = ImageFixture()
        // The GECOS field in Latin-1 (J\xe9r\xf4me), lines ending in CRLF.
        let passwd = Array("root:x:0:0:root:/root:/bin/sh\r\napp:x:1000:1000:J".utf8) + [0xE9, 0x72, 0xF4]
            + Array("me:/home/app:/bin/sh\r\n".utf8)
        let hex = passwd.map { String(format: "%02x", $0) }.joined()
        let image = load(f, "who", config: #"{"User": "app", "WorkingDir": "srv/data"}"#, extraLayers: """
            [{"name": "etc/passwd", "hex": "\(hex)"}, {"name": "etc/group", "data": "app:x:1000:\\nfar:x:70000:app\\n"}]
            """)
        let out = f.nook(["run", image, "--", "sh", "-c", "id -u; id -G; echo $HOME; pwd"])
        #expect(out.stdout == "1000\n1000\n/home/app\n/srv/data\n", "\(out)")
        #expect(out.stderr.contains("groups 70000") && out.stderr.contains("left out"), "\(out)")
        let plus = f.nook(["run", "--user", "+5", image, "--", "true"])
        #expect(plus.status == 125 && plus.stderr.contains("no user +5"), "\(plus)")
        let dotted = load(f, "dots", config: #"{"WorkingDir": "/usr/../../etc"}"#)
        let bad = f.nook(["run", dotted, "--", "true"])
        #expect(bad.status == 125 && bad.stderr.contains("the image's WorkingDir") && !bad.stderr.contains("--workdir"),
                "\(bad)")
    }

    @Test func anImageInUseCannotBeRemovedFromUnderIt() {
        let f = ImageFixture()
        let image = load(f, "busy")
        // rm once the run has the image (a second was not enough for the
        // VM tier under load: rm came first, rightly removed it).
        let out = f.sh("""
            $NOOK run --bind \(f.ws):/mark \(image) -- sh -c 'touch /mark/started; sleep 3' &
            for i in $(seq 300); do [ -e started ] && break; sleep 0.1; done
            $NOOK image rm \(image); echo rm=$?
            wait
            """)
        #expect(out.stdout.contains("rm=1") || out.stdout.contains("rm=125"), "\(out)")
        #expect(f.nook(["image", "ls"]).stdout.contains(image), "the image went while in use")
    }

    @Test func anImageSymlinkWhereNookWritesNeverReachesTheHost() {
        let canary = Canary()
        let before = canary.fingerprint
        let f = ImageFixture()
        let image = load(f, "links", extraLayers: """
            [{"name": "etc/hosts", "type": "symlink", "target": "\(canary.file)"},
             {"name": "etc/resolv.conf", "type": "symlink", "target": "/run/systemd/resolve/stub-resolv.conf"}]
            """)
        let out = f.nook(["run", image, "--", "sh", "-c", "echo x >> /etc/hosts; cat /etc/hosts"])
        #expect(out.stdout.hasPrefix("127.0.0.1\tlocalhost"), "\(out)")
        #expect(canary.fingerprint == before)
    }

    /// A fresh try: a restart of a detached container looked its image up
    /// by name again, so loading another image under that name changed
    /// what ran (and a removed image was pulled). Restarts run the image
    /// the container was made with.
    @Test func aRestartRunsTheImageTheContainerWasMadeWith() {
        let f = ImageFixture()
        let name = "swap" + String(UUID().uuidString.prefix(6)).lowercased()
        let image = load(f, name, extraLayers: #"[{"name": "marker", "data": "AAA\n"}]"#)
        let start = f.nook(["run", "-d", "--name", name, "--restart", "always", image, "--",
                            "sh", "-c", "cat /marker; sleep 0.3; exit 1"])
        defer { f.nook(["rm", "-f", name]) }
        #expect(start.status == 0, "\(start)")
        _ = load(f, name, extraLayers: #"[{"name": "marker", "data": "BBB\n"}]"#)
        func runs() -> [Substring] { f.nook(["logs", name]).stdout.split(separator: "\n") }
        let deadline = Date().addingTimeInterval(30)
        while runs().count < 4 && Date() < deadline { usleep(200_000) }
        let logs = runs()
        #expect(logs.count >= 4 && logs.allSatisfy { $0 == "AAA" }, "\(logs)")
    }

    /// A fresh try: exec -u app kept HOME=/root (the container's user's).
    @Test func execAsAnotherUserGetsThatUsersHome() {
        let f = ImageFixture()
        let image = load(f, "ehome")
        let name = "ehome" + String(UUID().uuidString.prefix(6)).lowercased()
        #expect(f.nook(["run", "-d", "--name", name, image, "--", "sleep", "300"]).status == 0)
        defer { f.nook(["rm", "-f", name]) }
        let app = f.nook(["exec", "-u", "app", name, "--", "sh", "-c", "echo $HOME $(id -u)"])
        #expect(app.stdout == "/srv 1000\n", "\(app)")
        let root = f.nook(["exec", name, "--", "sh", "-c", "echo $HOME"])
        #expect(root.stdout == "/root\n", "\(root)")
        let given = f.nook(["exec", "-u", "app", "-e", "HOME=/x", name, "--", "sh", "-c", "echo $HOME"])
        #expect(given.stdout == "/x\n", "\(given)")
    }
}
