import Foundation
import Testing

/// `--persist NAME`: a writable layer kept on disk between runs, each test
/// with a data home of its own (XDG_DATA_HOME in its workspace).
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct PersistTests {
    let h = Harness.shared

    /// A workspace with a busybox root in `root/` and a data home in `data/`.
    struct Place {
        let ws: String
        var root: String { ws + "/root" }
        var data: String { ws + "/data" }
        var persist: String { data + "/nook/persist" }
        var env: [String: String] { ["XDG_DATA_HOME": data] }
    }

    func place() -> Place {
        let p = Place(ws: h.workspace("persist"))
        let out = h.sh("""
            set -e
            mkdir -p root/bin root/etc root/root root/tmp data
            cp /bin/busybox root/bin/
            for c in sh ls cat id echo touch stat true; do ln -s busybox root/bin/$c; done
            echo 'root:x:0:0:root:/root:/bin/sh' > root/etc/passwd
            echo 'root:x:0:' > root/etc/group
            chmod 755 root
            """, in: p.ws)
        #expect(out.status == 0, "\(out)")
        return p
    }

    func nook(_ p: Place, _ args: [String], env extra: [String: String] = [:]) -> Outcome {
        h.nook(args, in: p.ws, env: p.env.merging(extra) { _, new in new })
    }

    // Finding 2 of the second attack review: a data home reached through a
    // symlink (/home -> var/home on Fedora Silverblue) gave ELOOP.
    @Test func aDataHomeBehindASymlinkHoldsPersistentLayers() {
        let p = place()
        _ = h.sh("mkdir -p real && ln -s real link", in: p.ws)
        let env = ["XDG_DATA_HOME": p.ws + "/link/data"]
        let first = nook(p, ["run", "--rootfs", p.root, "--persist", "kept", "--", "sh", "-c", "echo kept > /f"], env: env)
        #expect(first.status == 0, "\(first)")
        let second = nook(p, ["run", "--rootfs", p.root, "--persist", "kept", "--", "cat", "/f"], env: env)
        #expect(second.stdout == "kept\n", "\(second)")
        #expect(FileManager.default.fileExists(atPath: p.ws + "/real/data/nook/persist/kept/upper/f"))
    }

    @Test(arguments: ["upper", ""])
    func aLinkBelowThePersistDirectoryIsRefusedByName(at component: String) {
        let p = place()
        let target = h.workspace("target")
        let link = p.persist + "/evil" + (component.isEmpty ? "" : "/" + component)
        _ = h.sh("mkdir -p \(p.persist)/evil && rmdir \(link) 2>/dev/null; ln -s \(target) \(link)", in: p.ws)
        let out = nook(p, ["run", "--rootfs", p.root, "--persist", "evil", "--", "sh", "-c", "echo x > /f"])
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("--persist evil: \(link) is a symlink"), "\(out)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: target)) == [], "written through the link")
    }

    /// A busybox image in `f`'s store, its root directory mode 0755.
    func image(_ f: ImageFixture, _ name: String = "pbase") -> String {
        let out = f.sh("""
            set -e
            mkdir -p bb/bin bb/etc bb/root bb/tmp
            cp /bin/busybox bb/bin/
            for c in sh ls cat id echo touch stat true; do ln -sf busybox bb/bin/$c; done
            printf 'root:x:0:0:root:/root:/bin/sh\\n' > bb/etc/passwd
            printf 'root:x:0:\\n' > bb/etc/group
            chmod 755 bb
            tar --owner=0 --group=0 --numeric-owner -C bb -cf bb.tar .
            """)
        #expect(out.status == 0, "\(out)")
        let spec = "{\"name\": \"localhost/\(name):1\", \"config\": {}, \"layers\": [{\"tar\": \"\(f.ws)/bb.tar\"}]}"
        let load = f.nook(["image", "load", f.make(name, spec)])
        #expect(load.status == 0, "\(load)")
        return "localhost/\(name):1"
    }

    // Finding 1: the persistent upper was made 0700, and overlayfs shows the
    // upper root's attributes as the root's: a non-root user inside could
    // not read / (and keep-id with --persist could run nothing).
    @Test(arguments: ["native", "fuse"])
    func aPersistentLayerGivesTheRootTheImagesModeAndOwner(overlay: String) {
        let f = ImageFixture()
        let base = image(f)
        // An ephemeral layer needs kernel overlayfs on tmpfs (Linux 6.6)
        // for native; a persistent one does not.
        if DirectoryRootTests.ephemeralOverlays.contains(overlay) {
            let plain = f.nook(["run", "--overlay", overlay, base, "--", "stat", "-c", "%a %u:%g", "/"])
            #expect(plain.stdout == "755 0:0\n", "\(plain)")
        }
        let kept = f.nook(["run", "--overlay", overlay, "--persist", "p-\(overlay)", base, "--", "stat", "-c", "%a %u:%g", "/"])
        #expect(kept.stdout == "755 0:0\n", "\(kept)")
        let again = f.nook(["run", "--overlay", overlay, "--persist", "p-\(overlay)", base, "--", "stat", "-c", "%a %u:%g", "/"])
        #expect(again.stdout == "755 0:0\n", "\(again)")
    }

    @Test func keepIdWithAPersistentLayerRuns() {
        let f = ImageFixture()
        let base = image(f)
        let out = f.nook(["run", "--persist", "k", "--userns", "keep-id", base, "--", "sh", "-c", "ls -d / && echo ran"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.hasSuffix("ran\n"), "\(out)")
    }

    @Test(arguments: ["native", "fuse"])
    func aPersistentLayerOverADirectoryTakesItsRootsModeAndOwner(overlay: String) {
        let p = place()
        // Root of the directory: mode 0751, owner the sandbox's 42:43 (a
        // subordinate id on the host, which only the child can give).
        let own = h.nook(["unshare", "sh", "-c", "chown 42:43 \(p.root) && chmod 751 \(p.root)"])
        #expect(own.status == 0, "\(own)")
        if DirectoryRootTests.ephemeralOverlays.contains(overlay) {
            let plain = nook(p, ["run", "--rootfs", p.root, "--overlay", overlay, "--", "stat", "-c", "%a %u:%g", "/"])
            #expect(plain.stdout == "751 42:43\n", "\(plain)")
        }
        let kept = nook(p, ["run", "--rootfs", p.root, "--overlay", overlay, "--persist", "d", "--", "stat", "-c", "%a %u:%g", "/"])
        #expect(kept.stdout == "751 42:43\n", "\(kept)")
        h.nook(["unshare", "--", "rm", "-rf", p.root])
    }

    // Finding 3: a layer made over one image and used over another was
    // mixed with it silently.
    @Test func aLayerMadeOverOneImageIsRefusedOverAnother() {
        let f = ImageFixture()
        let first = image(f, "first")
        let made = f.nook(["run", "--persist", "mix", first, "--", "sh", "-c", "echo from-first > /etc/note"])
        #expect(made.status == 0, "\(made)")
        // Another image: the same files plus one more layer.
        let spec = "{\"name\": \"localhost/second:1\", \"config\": {}, \"layers\": [{\"tar\": \"\(f.ws)/bb.tar\"}, "
            + "[{\"name\": \"etc/other\", \"data\": \"x\"}]]}"
        #expect(f.nook(["image", "load", f.make("second", spec)]).status == 0)
        let other = f.nook(["run", "--persist", "mix", "localhost/second:1", "--", "cat", "/etc/note"])
        #expect(other.status == 125, "\(other)")
        #expect(other.stderr.contains("--persist mix: the layer was made over the image localhost/first:1 ("), "\(other)")
        #expect(other.stderr.contains("not the image localhost/second:1"), "\(other)")
        #expect(other.stderr.contains("nook unshare rm -rf \(f.ws)/data/nook/persist/mix"), "\(other)")
        let same = f.nook(["run", "--persist", "mix", first, "--", "cat", "/etc/note"])
        #expect(same.stdout == "from-first\n", "\(same)")
    }

    @Test func aLayerMadeOverOneDirectoryIsRefusedOverAnother() {
        let p = place()
        _ = h.sh("cp -a root other", in: p.ws)
        #expect(nook(p, ["run", "--rootfs", p.root, "--persist", "d", "--", "true"]).status == 0)
        let other = nook(p, ["run", "--rootfs", p.ws + "/other", "--persist", "d", "--", "true"])
        #expect(other.status == 125, "\(other)")
        #expect(other.stderr.contains("made over the directory \(p.root), not the directory \(p.ws)/other"), "\(other)")
        // The same directory by another path is the same root.
        _ = h.sh("ln -s root alias", in: p.ws)
        #expect(nook(p, ["run", "--rootfs", p.ws + "/alias", "--persist", "d", "--", "true"]).status == 0)
    }

    @Test func aLayerFromBeforeTheRecordIsAdoptedAndItsRootMended() {
        let p = place()
        _ = h.sh("mkdir -p \(p.persist)/old/upper \(p.persist)/old/work && chmod 700 \(p.persist)/old/upper "
                 + "&& echo kept > \(p.persist)/old/upper/f", in: p.ws)
        let out = nook(p, ["run", "--rootfs", p.root, "--persist", "old", "--", "sh", "-c", "cat /f; stat -c %a /"])
        #expect(out.stdout == "kept\n755\n", "\(out)")
        #expect(FileManager.default.fileExists(atPath: p.persist + "/old/base.json"))
    }
}
