import Foundation
import Testing

/// What unpacked layers hold, seen the way a sandbox will see them: through
/// an overlay of the layer directories mounted inside `nook unshare`, with
/// kernel overlayfs (userxattr) and with fuse-overlayfs.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ImageContentTests {
    let h = Harness.shared

    // C25's layers exactly.
    static let c25 = """
        {"name": "localhost/c25:1", "layers": [
          [{"name": "dir1/dir2/foo", "data": "foo"}, {"name": "root/test", "data": "t"},
           {"name": "a/b/c/bar", "data": "bar"}, {"name": "s/x", "data": "x"}, {"name": "s/y", "data": "y"}],
          [{"name": ".wh.dir1"}, {"name": ".wh.test"}, {"name": "a/.wh..wh..opq"}, {"name": "a/b/c/foo", "data": "foo"},
           {"name": "s/.wh..wh..opq"}],
          [{"name": "dir1/dir2/", "type": "dir"}, {"name": "s/y", "data": "y2"}]]}
        """

    static let c25Expected = "dir1/dir2: \nroot/test: root/test\na/b/c: foo\ns: y\n/: a dir1 root s\n"

    // C25: deletions and opaque directories read the same on both overlay
    // drivers and in both access orders; no marker is ever visible.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func whiteoutsAndOpaqueDirectoriesShowWhatTheSpecSays(fuse: Bool, childFirst: Bool) {
        let f = ImageFixture()
        #expect(f.nook(["image", "load", f.make("c25", Self.c25)]).status == 0)
        let probe = childFirst
            ? "stat a/b/c/foo s/y >/dev/null; ls -d root/test >/dev/null; "
            : "ls -A . a a/b s dir1 >/dev/null; "
        let list = "for p in dir1/dir2 root/test a/b/c s; do echo \"$p: $(ls -A $p | tr '\\n' ' ' | sed 's/ $//')\"; done; "
            + "echo \"/: $(ls -A | tr '\\n' ' ' | sed 's/ $//')\"; find . -name '.wh.*' "
        let out = f.inOverlay("localhost/c25:1", fuse: fuse, probe + list)
        #expect(out.stdout == Self.c25Expected, "\(fuse ? "fuse-overlayfs" : "overlayfs"): \(out)")
    }

    @Test func theSameImageFromADockerArchiveMadeBySkopeoReadsTheSame() throws {
        let f = ImageFixture()
        let oci = f.make("c25", Self.c25)
        let copy = f.sh("skopeo copy --quiet oci:\(oci):localhost/c25:1 docker-archive:\(f.ws)/c25.tar:localhost/c25:docker")
        try #require(copy.status == 0, "skopeo: \(copy)")
        #expect(f.nook(["image", "load", f.ws + "/c25.tar"]).status == 0)
        let out = f.inOverlay("localhost/c25:docker", fuse: false,
                              "for p in dir1/dir2 root/test a/b/c s; do echo \"$p: $(ls -A $p | tr '\\n' ' ' | sed 's/ $//')\"; done; "
                                + "echo \"/: $(ls -A | tr '\\n' ' ' | sed 's/ $//')\"")
        #expect(out.stdout == Self.c25Expected, "\(out)")
    }

    // C27, C28: a layer made by GNU tar from files root prepared: a file
    // capability, a setuid binary, a user xattr, a trusted xattr (not
    // keepable rootless), hard links, a FIFO and device nodes.
    @Test(.enabled(if: getuid() == 0, "building the layer needs root (setcap, mknod)"))
    func capabilitiesSetuidBitsXattrsLinksAndFifosAreKeptAndDevicesSkippedWithOneWarning() throws {
        let f = ImageFixture()
        let root = f.ws + "/c27root"
        let build = asRoot("""
            set -e; mkdir -p \(root)/usr/bin \(root)/run \(root)/dev \(root)/etc \(root)/tmp && cd \(root)
            cp /bin/true usr/bin/ping && /usr/sbin/setcap cap_net_raw+p usr/bin/ping && ln usr/bin/ping usr/bin/ping2
            cp /bin/true usr/bin/su-like && chmod 4755 usr/bin/su-like
            echo x > etc/noted && setfattr -n user.foo -v bar etc/noted && setfattr -n trusted.t -v t etc/noted
            mkfifo run/p && mknod dev/agpgart c 10 175 && mknod dev/loop9 b 7 9 && mknod dev/null c 1 3
            chown 42:42 etc/noted
            tar --xattrs --xattrs-include='*' --numeric-owner -cf \(f.ws)/c27.tar . && chmod 644 \(f.ws)/c27.tar
            """)
        try #require(build.status == 0, "\(build)")
        let load = f.nook(["image", "load", f.make("c27", #"{"name": "localhost/c27:1", "layers": [{"tar": "\#(f.ws)/c27.tar"}]}"#)])
        #expect(load.status == 0, "\(load)")
        let warnings = load.stderr.split(separator: "\n")
        #expect(warnings.filter { $0.contains("device node") }
            == ["nook: warning: localhost/c27:1: skipped 3 device nodes (a user namespace cannot create them; sandboxes get their own /dev): dev/agpgart, dev/loop9, dev/null"],
            "\(load)")
        #expect(warnings.contains { $0.contains("could not keep extended attributes: trusted.t on etc/noted (EPERM") }, "\(load)")

        for fuse in [false, true] {
            let out = f.inOverlay("localhost/c27:1", fuse: fuse, """
                /usr/sbin/getcap usr/bin/ping; stat -c '%A %h %u:%g %n' usr/bin/su-like usr/bin/ping usr/bin/ping2 run/p etc/noted
                getfattr -n user.foo --only-values etc/noted; echo; ls dev
                """)
            #expect(out.stdout == """
                usr/bin/ping cap_net_raw=p
                -rwsr-xr-x 1 0:0 usr/bin/su-like
                -rwxr-xr-x 2 0:0 usr/bin/ping
                -rwxr-xr-x 2 0:0 usr/bin/ping2
                prw-r--r-- 1 0:0 run/p
                -rw-r--r-- 1 42:42 etc/noted
                bar

                """, "\(fuse ? "fuse-overlayfs" : "overlayfs"): \(out)")
        }
        // Outside, the capability is namespaced: v3, its root the test user.
        let ping = try #require(f.layers("localhost/c27:1").first) + "/usr/bin/ping"
        let raw = asRoot("/usr/bin/python3 -c \"import os,sys; v=os.getxattr(sys.argv[1], 'security.capability'); "
            + "print(len(v), int.from_bytes(v[20:24], 'little'))\" \(ping)")
        #expect(raw.stdout == "24 \(h.user?.uid ?? 0)\n", "\(raw)")
    }

    @Test func aPosixACLFromAPaxRecordIsKept() {
        let f = ImageFixture()
        let path = f.make("acl", #"{"name": "localhost/acl:1", "layers": [[{"name": "f", "data": "x", "pax": {"SCHILY.acl.access": "user::rw-,user:1000:r--,group::r--,mask::r--,other::---"}}]]}"#)
        #expect(f.nook(["image", "load", path]).status == 0)
        let out = f.inOverlay("localhost/acl:1", fuse: false,
                              "python3 -c \"import os; print(len(os.getxattr('f', 'system.posix_acl_access')))\"")
        #expect(out.stdout == "44\n", "five entries and the header: \(out)")
    }

    // C42: owners beyond the subordinate range are found before extraction.
    static let owners = """
        {"name": "localhost/owners:1", "layers": [[{"name": "a", "uid": 0, "gid": 42}, {"name": "b", "uid": 65535, "gid": 65535},
          {"name": "c", "uid": 65536, "gid": 0}, {"name": "d", "uid": 172761424, "gid": 0}, {"name": "e", "uid": 4294967294, "gid": 0}]]}
        """

    @Test func filesOwnedByIdsBeyondTheRangeAreRefusedBeforeExtractionWithTheFix() {
        let f = ImageFixture()
        let out = f.nook(["image", "load", f.make("owners", Self.owners)])
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("file d is owned by uid 172761424 (and 1 more file), outside the ids you can map: "
            + "the image needs 4294967295 uids, you have 65537"), "\(out)")
        #expect(out.stderr.contains("load with --remap-ids to give such files to nobody (65534)"), "\(out)")
        #expect(f.storeIsEmpty)
    }

    @Test func remapIdsGivesThemToNobodyWithOneSummaryWarning() {
        let f = ImageFixture()
        let out = f.nook(["image", "load", "--remap-ids", f.make("owners", Self.owners)])
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr == "nook: warning: localhost/owners:1: 2 files owned by ids outside the 65537 you can map "
            + "were given to nobody (65534) (--remap-ids), e.g. d (172761424:0)\n", "\(out)")
        let ls = f.inOverlay("localhost/owners:1", fuse: false, "stat -c '%n %u:%g' a b c d e")
        #expect(ls.stdout == "a 0:42\nb 65535:65535\nc 65536:0\nd 65534:0\ne 65534:0\n", "\(ls)")
    }

    @Test(.enabled(if: Harness.shared.userWithoutRanges != nil, "needs NOOK_TEST_USER_NOSUB"))
    func aUserWithoutSubordinateIdsIsToldHowManyTheImageNeeds() throws {
        let f = ImageFixture()
        let other = try #require(h.userWithoutRanges)
        let path = f.make("owners", #"{"name": "localhost/o:1", "layers": [[{"name": "a", "gid": 42}, {"name": "b"}]]}"#)
        h.sh("chmod -R a+rX \(f.ws) && chmod 777 \(f.ws)")
        let env = ["XDG_DATA_HOME": "/tmp/nook-nosub-\(UUID().uuidString.prefix(6))"]
        let out = h.nook(["image", "load", path], in: "/tmp", env: env, as: other)
        #expect(out.status == 125 && out.stderr.contains("file a is owned by gid 42, outside the ids you can map: "
            + "the image needs 43 gids, you have 1"), "\(out)")
        #expect(out.stderr.contains("give \(other.name) at least 42 more subordinate ids"), "\(out)")
        let remapped = h.nook(["image", "load", "--remap-ids", path], in: "/tmp", env: env, as: other)
        #expect(remapped.status == 0 && remapped.stderr.contains("were given to root (0), the only id you have"), "\(remapped)")
        h.nook(["image", "rm", "localhost/o:1"], in: "/tmp", env: env, as: other)
        h.run(["/bin/rm", "-rf", env["XDG_DATA_HOME"]!], in: "/", stdin: nil, env: [:], as: nil, timeout: 20)
    }

    // C29: content that is not its digest is refused before anything is
    // extracted or named, with both digests, and a good copy already in the
    // store stays as it was.
    @Test(arguments: [
        ("layer-byte", "digest mismatch: expected sha256:"), ("layer-size", "size mismatch: expected"),
        ("diffid", "uncompressed (its diffID in the config): digest mismatch: expected sha256:0000"),
        ("manifest", "digest mismatch: expected sha256:1111"), ("config-byte", "digest mismatch: expected sha256:"),
    ])
    func contentThatIsNotItsDigestIsRefusedAndTheCachedGoodCopyIsKept(tamper: String, message: String) throws {
        let f = ImageFixture()
        let layer = #"[[{"name": "f", "data": "good"}]]"#
        #expect(f.nook(["image", "load", f.make("good", #"{"name": "localhost/x:1", "layers": \#(layer)}"#)]).status == 0)
        let dir = try #require(f.layers("localhost/x:1").first)
        let before = try FileManager.default.attributesOfItem(atPath: dir + "/f")
        let store = f.entries("layers") + f.entries("blobs/sha256") + f.entries("images")

        let bad = f.make("bad", #"{"name": "localhost/x:2", "tamper": "\#(tamper)", "layers": \#(layer)}"#)
        let out = f.nook(["image", "load", bad])
        #expect(out.status == 125 && out.stderr.contains(message) && out.stderr.contains("nothing was stored"), "\(out)")
        #expect(out.stderr.contains(", got sha256:") || tamper == "layer-size", "both digests: \(out)")
        #expect(f.entries("layers") + f.entries("blobs/sha256") + f.entries("images") == store)
        let after = try FileManager.default.attributesOfItem(atPath: dir + "/f")
        #expect(before[.modificationDate] as? Date == after[.modificationDate] as? Date)
        #expect(before[.systemFileNumber] as? Int == after[.systemFileNumber] as? Int)
        #expect(f.nook(["image", "ls", "-q"]).stdout.split(separator: "\n").count == 1)
        #expect(!f.nook(["image", "ls"]).stdout.contains("localhost/x:2"))
        #expect(f.entries("tmp").isEmpty && f.entries("trash").isEmpty)
    }

    @Test func aDockerArchiveLayerThatIsNotItsDiffIDIsRefused() {
        let f = ImageFixture()
        let out = f.nook(["image", "load", f.make("bad", #"{"format": "docker", "name": "localhost/x:1", "tamper": "layer-byte", "layers": [[{"name": "f", "data": "good"}]]}"#)])
        #expect(out.status == 125 && out.stderr.contains("(its diffID in the config): digest mismatch"), "\(out)")
        #expect(f.storeIsEmpty)
    }
}
