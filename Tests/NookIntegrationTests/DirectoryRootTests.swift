import Foundation
import Testing

/// `nook run --rootfs DIR`: a root of its own with a writable layer.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct DirectoryRootTests {
    let h = Harness.shared

    /// A small busybox root owned by the test user (root inside).
    func makeRootfs(_ name: String = "rootfs") -> String {
        let dir = h.workspace(name)
        let script = """
            set -e
            mkdir -p bin etc root tmp proc dev sys run usr
            cp /bin/busybox bin/
            for c in sh ls cat id echo touch mkdir mount rm mv ln stat readlink hostname head wc sleep; do ln -s busybox bin/$c; done
            echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd
            echo 'root:x:0:' > etc/group
            echo original > etc/motd
            """
        _ = h.sh(script, in: dir)
        return dir
    }

    /// The writable layers an in-memory root can have here: kernel overlayfs
    /// needs Linux 6.6 for one (tmpfs with user xattrs), as nook says when
    /// asked for it on an older kernel (Debian 12's 6.1, in the VM tier).
    static let ephemeralOverlays = Harness.kernel >= (6, 6) ? ["native", "fuse"] : ["fuse"]

    @Test(arguments: ephemeralOverlays)
    func aDirectoryRootGetsAnInMemoryWritableLayerAndIsNeverModified(overlay: String) {
        let root = makeRootfs()
        let before = listing(root)
        let out = h.nook(["run", "--rootfs", root, "--overlay", overlay, "--", "sh", "-c",
                          "id -u; echo changed > /etc/motd; cat /etc/motd; touch /new; rm /bin/wc; ls /new"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "0\nchanged\n/new\n", "\(out)")
        #expect(listing(root) == before)
        #expect((try? String(contentsOfFile: root + "/etc/motd", encoding: .utf8)) == "original\n")
        let again = h.nook(["run", "--rootfs", root, "--overlay", overlay, "--", "sh", "-c",
                            "cat /etc/motd; ls /new 2>&1; ls /bin/wc"])
        #expect(again.stdout.hasPrefix("original\n"), "the layer did not go away: \(again)")
        #expect(again.stdout.contains("/bin/wc"), "\(again)")
    }

    @Test func aPersistentLayerWorksWithEitherOverlay() {
        let root = makeRootfs()
        let name = "both-\(Int.random(in: 1000...9999))"
        let fuse = h.nook(["run", "--rootfs", root, "--overlay", "fuse", "--persist", name, "--", "sh", "-c",
                           "echo from-fuse > /f; rm /etc/motd"])
        #expect(fuse.status == 0, "\(fuse)")
        let native = h.nook(["run", "--rootfs", root, "--overlay", "native", "--persist", name, "--", "sh", "-c",
                             "cat /f; cat /etc/motd 2>&1"])
        // Found by the VM tier on Debian 12's Linux 6.1: the layers went to
        // overlayfs as "lowerdir+", which only 6.8 knows; the mount failed.
        #expect(native.stdout.hasPrefix("from-fuse\n"), "\(native)")
        #expect(native.stdout.contains("No such file"), "the deletion did not carry over: \(native)")
        h.nook(["unshare", "--", "rm", "-rf", (h.user?.home ?? "") + "/.local/share/nook/persist/" + name])
    }

    @Test func theFuseDaemonIsNotVisibleInsideAndIsGoneAfterwards() {
        let root = makeRootfs()
        let out = h.nook(["run", "--rootfs", root, "--overlay", "fuse", "--", "sh", "-c",
                          "for p in /proc/[0-9]*; do cat $p/comm; done"])
        #expect(out.status == 0 && out.stdout.contains("nook-init"), "\(out)")
        #expect(!out.stdout.contains("fuse"), "the sandbox sees the daemon: \(out)")
        // Other tests run fuse daemons at the same time: look for one that
        // still holds this test's layer.
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        let holding = pids.filter { pid in
            guard (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("fuse-overlayfs") == true,
                  let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
            return fds.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) == root }
        }
        #expect(holding == [], "a fuse-overlayfs daemon outlived its sandbox")
    }

    /// The pids of fuse-overlayfs daemons that hold `root` open.
    func fuseDaemons(holding root: String) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.filter { pid in
            guard (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("fuse-overlayfs") == true,
                  let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
            return fds.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) == root }
        }
    }

    // The second attack report: nook killed with SIGKILL left fuse-overlayfs
    // running for ever (its parent-death signal was cleared when it became
    // root in the sandbox's user namespace).
    @Test func aKilledNookTakesItsFuseDaemonWithIt() {
        let root = makeRootfs()
        let out = h.sh("""
            $NOOK run --rootfs \(root) --overlay fuse -- sleep 60 & n=$!
            for i in $(seq 100); do pgrep -u $(id -u) -f "fuse-overlayfs.*" >/dev/null && break; sleep 0.05; done
            sleep 0.5; kill -KILL $n; sleep 0.5; echo killed
            """)
        #expect(out.stdout.contains("killed"), "\(out)")
        let deadline = Date().addingTimeInterval(5)
        while !fuseDaemons(holding: root).isEmpty && Date() < deadline { usleep(100_000) }
        #expect(fuseDaemons(holding: root) == [], "a fuse-overlayfs daemon outlived a killed nook")
    }

    @Test func persistKeepsANamedLayerBetweenRunsAndLocksIt() {
        let root = makeRootfs()
        let name = "it-\(Int.random(in: 1000...9999))"
        #expect(h.nook(["run", "--rootfs", root, "--persist", name, "--", "sh", "-c", "echo kept > /kept"]).status == 0)
        let second = h.nook(["run", "--rootfs", root, "--persist", name, "--", "cat", "/kept"])
        #expect(second.stdout == "kept\n", "\(second)")
        let other = h.nook(["run", "--rootfs", root, "--", "cat", "/kept"])
        #expect(other.status != 0)
        // The second starts once the first runs (not after a fixed delay: a
        // sandbox takes seconds to start on the VM tier's emulated host).
        let busy = h.sh("$NOOK run --rootfs \(root) --persist \(name) -- sh -c 'echo first-up; sleep 60' > first.txt & "
                        + "first=$!; for i in $(seq 600); do grep -q first-up first.txt && break; sleep 0.1; done; "
                        + "$NOOK run --rootfs \(root) --persist \(name) -- true; echo second=$?; kill $first; wait",
                        in: h.workspace(), timeout: 120)
        #expect(busy.stdout.contains("second=125"), "\(busy)")
        #expect(busy.stderr.contains("in use by another sandbox"), "\(busy)")
        #expect(!FileManager.default.fileExists(atPath: root + "/kept"))
        h.nook(["unshare", "--", "rm", "-rf", (h.user?.home ?? "") + "/.local/share/nook/persist/" + name])
    }

    @Test func readOnlyMeansNoWritableLayerButTmpAndRunAreWritable() {
        let root = makeRootfs()
        let out = h.nook(["run", "--rootfs", root, "--read-only", "--", "sh", "-c",
                          "touch /x 2>&1; touch /tmp/y && touch /run/z && echo scratch-ok"])
        #expect(out.stdout.contains("Read-only file system"), "\(out)")
        #expect(out.stdout.contains("scratch-ok"), "\(out)")
    }

    @Test func nookWritesItsOwnHostsHostnameAndResolvConf() {
        let root = makeRootfs()
        let out = h.nook(["run", "--rootfs", root, "--hostname", "box", "--", "sh", "-c",
                          "cat /etc/hostname; grep box /etc/hosts; cat /etc/resolv.conf; hostname"])
        #expect(out.stdout.hasPrefix("box\n127.0.1.1\tbox\n# nook: --network none"), "\(out)")
        #expect(out.stdout.hasSuffix("box\n"), "\(out)")
    }

    // C07: paths nook populates itself, shipped by the image as symlinks.
    @Test func imageSymlinksWhereNookWritesNeverReachTheHost() {
        let canary = Canary()
        let before = canary.fingerprint
        let root = makeRootfs()
        _ = h.sh("ln -s \(canary.file) etc/hosts; ln -s /run/systemd/resolve/stub-resolv.conf etc/resolv.conf; "
                 + "ln -s \(canary.file) etc/hostname", in: root)
        let out = h.nook(["run", "--rootfs", root, "--", "sh", "-c", "cat /etc/hosts; echo x >> /etc/hosts; cat /etc/resolv.conf"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.hasPrefix("127.0.0.1\tlocalhost"), "\(out)")
        #expect(readlinkString(root + "/etc/hosts") == canary.file, "the image's link was changed")
        let ro = h.nook(["run", "--rootfs", root, "--read-only", "--", "cat", "/etc/motd"])
        #expect(ro.status == 0, "\(ro)")
        #expect(canary.fingerprint == before)
    }

    @Test func anImageDevOrEtcThatLeadsOutIsRefusedOrConfinedAndNothingOutsideChanges() {
        let canary = Canary()
        h.write(canary.directory + "/ptmx", "not a device\n")
        let before = canary.fingerprint
        let devRoot = makeRootfs("devlink")
        _ = h.sh("rmdir dev && ln -s \(canary.directory) dev", in: devRoot)
        let dev = h.nook(["run", "--rootfs", devRoot, "--", "true"])
        #expect(dev.status == 125, "\(dev)")
        #expect(dev.stderr.contains("/dev is a symlink inside the sandbox"), "\(dev)")
        let etcRoot = makeRootfs("etclink")
        _ = h.sh("mv etc etc.real && ln -s ../../.. etc", in: etcRoot)
        let etc = h.nook(["run", "--rootfs", etcRoot, "--", "sh", "-c", "cat /etc/hostname"])
        #expect(etc.status == 0, "\(etc)")
        #expect(canary.fingerprint == before)
    }

    @Test(arguments: ["with:colon", "with,comma", "with space", "with\nnewline"], ephemeralOverlays)
    func rootsWhosePathsHaveOptionSeparatorsWork(name: String, overlay: String) {
        let parent = h.workspace("odd")
        let root = makeRootfs()
        let odd = parent + "/" + name
        _ = h.sh("mv '\(root)' \"$ODD\"", env: ["ODD": odd])
        let out = h.nook(["run", "--rootfs", odd, "--overlay", overlay, "--", "sh", "-c", "touch /w && echo ok"])
        #expect(out.stdout == "ok\n", "\(out)")
    }

    @Test(.enabled(if: Harness.ready && Harness.shared.switching, "needs root to make a directory owned by root (script/test)"))
    func aDirectoryOwnedByAnUnmappedIdIsWarnedAbout() throws {
        let root = makeRootfs()
        // This test process is root: give the whole tree to the host's root.
        lchown(root, 0, 0)
        for path in listing(root) { lchown(root + "/" + path, 0, 0) }
        let out = h.nook(["run", "--rootfs", root, "--read-only", "--", "cat", "/etc/motd"])
        #expect(out.stdout == "original\n", "\(out)")
        #expect(out.stderr.contains("an id outside your mapping"), "\(out)")
        #expect(out.stderr.contains("nook unshare tar -xpf"), "\(out)")
    }

    // The hint spoke of the host's root ("mount below /tmp, /run, your
    // home"); the fix is a directory in the root (a fresh try).
    @Test func aReadOnlyRootWithoutAMountPointSaysToMakeIt() {
        let root = makeRootfs()
        h.sh("rmdir proc", in: root)
        let out = h.nook(["run", "--rootfs", root, "--read-only", "--", "true"])
        #expect(out.status == 125 && out.stderr.contains("create the mount point /proc")
            && out.stderr.contains("has no /proc: create that directory in it"), "\(out)")
    }

    @Test func contradictoryOrMisplacedRootOptionsAreRefused() {
        let root = makeRootfs()
        let both = h.nook(["run", "--rootfs", root, "--read-only", "--persist", "x", "--", "true"])
        #expect(both.status == 125 && both.stderr.contains("contradict"), "\(both)")
        let noRoot = h.nook(["run", "--persist", "x", "--", "true"])
        #expect(noRoot.status == 125 && noRoot.stderr.contains("applies to a root of its own"), "\(noRoot)")
        let badName = h.nook(["run", "--rootfs", root, "--persist", "../escape", "--", "true"])
        #expect(badName.status == 125 && badName.stderr.contains("--persist ../escape: '/' (U+002F) is not allowed in a layer's name"), "\(badName)")
        let notDir = h.nook(["run", "--rootfs", "/etc/hostname", "--", "true"])
        #expect(notDir.status == 125 && notDir.stderr.contains("not a directory"), "\(notDir)")
    }

    @Test func userIsLookedUpInTheRootTheCommandSees() {
        let root = makeRootfs()
        // /etc/group is an absolute link: it must resolve inside the root,
        // where it names a group; on the host the target does not exist.
        _ = h.sh("""
            echo 'app:x:7:8::/:/bin/sh' >> etc/passwd
            printf 'grp:x:77:app\n' > etc/group.real && rm etc/group && ln -s /etc/group.real etc/group
            """, in: root)
        let app = h.nook(["run", "--rootfs", root, "--user", "app", "--", "id", "-u"])
        #expect(app.stdout == "7\n", "\(app)")
        let groups = h.nook(["run", "--rootfs", root, "--user", "app", "--", "id", "-G"])
        #expect(groups.stdout == "8 77\n", "\(groups)")
        // On the host's root, the host's own files.
        let nobody = h.nook(["run", "--userns", "root", "--user", "nobody", "--", "id", "-un"])
        #expect(nobody.stdout == "nobody\n", "\(nobody)")
        let keep = h.nook(["run", "--user", "nobody", "--", "true"])
        #expect(keep.status == 125 && keep.stderr.contains("--userns root"), "\(keep)")
    }

    // The second attack review: EACCES from exec was always put down to
    // "not executable, or a noexec mount", also when a directory on the
    // way (a 0700 root) was the reason.
    @Test func aDirectoryTheCommandCannotSearchIsNamedWhenExecFails() {
        let root = makeRootfs()
        let uid = h.user?.uid ?? 0
        // keep-id: the command runs as the user, without capabilities (which
        // would let exec's own lookup pass), and /bin lacks x for its owner.
        _ = h.sh("chmod 000 bin", in: root)
        defer { _ = h.sh("chmod 755 bin", in: root) }
        let direct = h.nook(["run", "--rootfs", root, "--userns", "keep-id", "--", "/bin/busybox", "true"])
        #expect(direct.status == 126, "\(direct)")
        #expect(direct.stderr.contains("the directory /bin cannot be searched by uid \(uid)"), "\(direct)")
        #expect(!direct.stderr.contains("noexec"), "\(direct)")
        let searched = h.nook(["run", "--rootfs", root, "--userns", "keep-id", "--", "busybox", "true"])
        #expect(searched.status == 127, "\(searched)")
        #expect(searched.stderr.contains("the directory /bin cannot be searched by uid \(uid)"), "\(searched)")
    }

    func listing(_ dir: String) -> [String] {
        let e = FileManager.default.enumerator(atPath: dir)
        var out: [String] = []
        while let p = e?.nextObject() as? String { out.append(p) }
        return out.sorted()
    }

    func readlinkString(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    /// A fresh try: a sandboxed command left a setuid copy of a program
    /// in the workspace, and another local user ran it as the test user
    /// (nosuid holds only inside). Refused where the sandbox writes host
    /// files; a root of its own with no such bind keeps setuid files, as
    /// package managers need, and --seccomp-allow lifts the refusal.
    @Test func setuidFilesAreRefusedOnlyWhereTheSandboxWritesHostFiles() {
        let ws = h.workspace("setid")
        let out = h.nook(["run", "--", "sh", "-c",
                          "cp /bin/true t; chmod 4755 t; echo $?; chmod 2755 t; echo $?; install -m 6755 /bin/true u; echo $?"],
                         in: ws)
        #expect(out.stdout == "1\n1\n1\n", "\(out)")
        let modes = h.sh("stat -c %a t; stat -c %a u 2>/dev/null || echo none", in: ws).stdout
        #expect(!modes.contains("4755") && !modes.contains("2755") && !modes.contains("6755"), "\(modes)")

        let root = makeRootfs("setid-root")
        let own = h.nook(["run", "--rootfs", root, "--", "sh", "-c", "cp /bin/busybox /x; chmod 4755 /x && stat -c %a /x"])
        #expect(own.stdout == "4755\n", "no host files written: \(own)")
        let bound = h.nook(["run", "--rootfs", root, "--bind", "\(ws):/w", "--", "sh", "-c", "cp /bin/busybox /w/x; chmod 4755 /w/x"])
        #expect(bound.status != 0, "a bind of the host: \(bound)")
        let allowed = h.nook(["run", "--seccomp-allow", "fchmodat", "--seccomp-allow", "fchmodat2", "--", "sh", "-c",
                              "cp /bin/true v; chmod 4755 v && stat -c %a v"], in: ws)
        #expect(allowed.stdout == "4755\n", "\(allowed)")
    }
}
