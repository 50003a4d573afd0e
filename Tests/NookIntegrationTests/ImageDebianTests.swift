import Foundation
import Testing

/// A real Debian image: `debootstrap --variant=minbase bookworm` made into
/// an OCI layout by umoci (a second layer deletes, replaces and adds files)
/// and into a docker-archive by skopeo, built once and cached outside the
/// repository by Resources/debian-image.sh.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"),
       .enabled(if: getuid() == 0, "building the Debian image needs root (debootstrap)"),
       .enabled(if: DebianImage.cache != nil, "the Debian image could not be built; the reason is printed above"),
       .serialized)
struct ImageDebianTests {
    let h = Harness.shared

    @Test(.timeLimit(.minutes(15)))
    func aDebianImageLoadsFromUmociAndSkopeoWithItsOwnersMappedAndItsDeletionsApplied() throws {
        let cache = try #require(DebianImage.cache)
        let f = ImageFixture()
        let oci = f.nook(["image", "load", cache + "/debian-oci"], timeout: 600)
        #expect(oci.status == 0, "\(oci)")
        #expect(oci.stdout.contains("(localhost/debian-oci:bookworm)") && oci.stdout.contains("(localhost/debian-oci:bookworm-changed)"),
                "\(oci)")
        #expect(oci.stderr.split(separator: "\n").filter { $0.contains("device node") }.count == 1,
                "one warning for /dev's nodes: \(oci)")
        #expect(f.entries("layers").count == 2, "both tags share the debootstrap layer")

        let docker = f.nook(["image", "load", cache + "/debian.tar"], timeout: 600)
        #expect(docker.status == 0 && docker.stdout.contains("localhost/debian:changed"), "\(docker)")
        #expect(f.entries("layers").count == 2 && f.entries("images").count == 2, "skopeo kept the config: same image")

        let inside = f.inOverlay("localhost/debian:changed", fuse: false, """
            stat -c '%u:%g %a %n' etc/shadow bin usr/local/bin/suid-true; ls -d usr/share/doc etc/motd 2>&1 | sed 's/.*cannot access //'
            cat etc/issue; /usr/sbin/getcap usr/local/bin/cap-true; getfattr -n user.note --only-values etc/noted; echo
            stat -c '%h' usr/local/bin/cap-true-link; /usr/sbin/chroot . /usr/bin/apt-get --version | head -1; /usr/sbin/chroot . /usr/bin/id -u
            find . -name '.wh.*' | head -3
            """)
        #expect(inside.stdout == """
            0:42 640 etc/shadow
            0:0 777 bin
            0:0 4755 usr/local/bin/suid-true
            'usr/share/doc': No such file or directory
            'etc/motd': No such file or directory
            replaced
            usr/local/bin/cap-true cap_net_raw=p
            kept
            2
            apt 2.6.1 (amd64)
            0

            """, "\(inside)")

        // Outside, the files belong to the test user's subordinate ids.
        let base = try #require(f.layers("localhost/debian:changed").first)
        let owner = try FileManager.default.attributesOfItem(atPath: base + "/etc/shadow")
        let uid = try #require(h.user).uid
        #expect(owner[.ownerAccountID] as? Int == Int(uid), "root inside is the user outside")
        #expect((owner[.groupOwnerAccountID] as? Int ?? 0) > 65536, "gid 42 is a subordinate gid outside")
    }

    @Test(.timeLimit(.minutes(15)))
    func writingThroughAnOverlayLeavesTheLayerDirectoriesUnchanged() throws {
        let cache = try #require(DebianImage.cache)
        let f = ImageFixture()
        #expect(f.nook(["image", "load", cache + "/debian-oci"], timeout: 600).status == 0)
        let layers = f.layers("localhost/debian-oci:bookworm-changed")
        let fingerprint = { f.nook(["unshare", "--", "sh", "-c", "cd \(layers[0])/.. && find diff -printf '%p %m %u %g %s %T@\\n' | sort | md5sum"]).stdout }
        let before = fingerprint()
        let out = f.inOverlay("localhost/debian-oci:bookworm-changed", fuse: true,
                              "echo new > etc/new && rm etc/hostname && chmod 600 etc/passwd && ls etc/new")
        #expect(out.stdout == "etc/new\n", "\(out)")
        #expect(fingerprint() == before)
    }
}

extension ImageDebianTests {
    /// `nook run` on the Debian image: its programs run, owners show as the
    /// image has them (never nobody), and dpkg can install a package whose
    /// maintainer script chowns, in the writable layer only.
    @Test(.timeLimit(.minutes(15)))
    func aDebianImageRunsAndDpkgInstallsIntoTheWritableLayerOnly() throws {
        let cache = try #require(DebianImage.cache)
        let f = ImageFixture()
        #expect(f.nook(["image", "load", cache + "/debian-oci"], timeout: 600).status == 0)
        let image = "localhost/debian-oci:bookworm-changed"
        let apt = f.nook(["run", image, "--", "apt-get", "--version"])
        #expect(apt.status == 0 && apt.stdout.hasPrefix("apt 2.6"), "\(apt)")
        let id = f.nook(["run", image, "--", "id"])
        #expect(id.stdout == "uid=0(root) gid=0(root) groups=0(root)\n", "\(id)")
        let nobody = f.nook(["run", image, "--", "sh", "-c",
                             "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( -uid 65534 -o -gid 65534 \\) -print "
                                 + "| head -3; stat -c '%u:%g' /etc/shadow"])
        #expect(nobody.stdout == "0:42\n", "owners mapped, none shown as nobody: \(nobody)")

        // A package of our own: its postinst gives a file to uid 42.
        makeProbePackage(f)
        let before = f.nook(["unshare", "--", "sh", "-c", "cd \(f.layers(image)[0])/.. && find diff | sort | md5sum"]).stdout
        let install = f.nook(["run", "--bind", f.ws + "/probe.deb:/probe.deb:ro", image, "--", "sh", "-c",
                              "dpkg -i /probe.deb >/dev/null && stat -c '%u:%g' /usr/share/nook-probe/f"])
        #expect(install.stdout == "42:42\n", "\(install)")
        let gone = f.nook(["run", image, "--", "dpkg", "-s", "nook-probe"])
        #expect(gone.status == 1, "the package went with the writable layer: \(gone)")
        let layer = "deb-\(Int.random(in: 1000...9999))"
        #expect(f.nook(["run", "--persist", layer, "--bind", f.ws + "/probe.deb:/probe.deb:ro", image, "--",
                        "dpkg", "-i", "/probe.deb"]).status == 0)
        let kept = f.nook(["run", "--persist", layer, image, "--", "dpkg", "-s", "nook-probe"])
        #expect(kept.status == 0 && kept.stdout.contains("Status: install ok installed"), "\(kept)")
        let after = f.nook(["unshare", "--", "sh", "-c", "cd \(f.layers(image)[0])/.. && find diff | sort | md5sum"]).stdout
        #expect(before == after && !before.isEmpty, "the image's layer changed")
        f.nook(["unshare", "--", "rm", "-rf", f.ws + "/data/nook/persist/" + layer])
    }
}

extension ImageDebianTests {
    /// A user without subordinate ids: the image loads with every owner
    /// given to them (--remap-ids), and root emulation lets apt install a
    /// package, tools switch users, and keeps a dropped uid dropped.
    @Test(.timeLimit(.minutes(15)),
          .enabled(if: Harness.shared.userWithoutRanges != nil, "needs NOOK_TEST_USER_NOSUB (script/test makes one)"))
    func withoutSubordinateIdsAptInstallsThroughRootEmulation() throws {
        let cache = try #require(DebianImage.cache)
        let user = try #require(h.userWithoutRanges)
        let f = ImageFixture()
        #expect(asRoot("chmod -R a+rX \(cache)/debian-oci").status == 0)
        makeProbePackage(f)
        lchown(f.ws, user.uid, user.gid)
        for path in FileManager.default.enumerator(atPath: f.ws)?.allObjects as? [String] ?? [] {
            lchown(f.ws + "/" + path, user.uid, user.gid)
        }
        let load = f.nook(["image", "load", "--remap-ids", cache + "/debian-oci"], as: user, timeout: 600)
        #expect(load.status == 0 && load.stderr.contains("the only id you have"), "\(load)")
        let image = "localhost/debian-oci:bookworm-changed"
        let script = """
            apt-get install -y /probe.deb >/dev/null 2>apt.err || cat apt.err
            dpkg -s nook-probe | grep Status
            setpriv --reuid=100 --regid=100 --clear-groups sh -c 'id -u; id -G'
            perl -e 'use POSIX; POSIX::setuid(100) or die; print POSIX::setuid(0) ? "regained\\n" : "kept dropped\\n"'
            useradd -m bob && su bob -c 'id -un'
            """
        let out = f.nook(["run", "--bind", f.ws + "/probe.deb:/probe.deb:ro", image, "--", "sh", "-c", script],
                         as: user, timeout: 300)
        #expect(out.stdout == "Status: install ok installed\n100\n100\nkept dropped\nbob\n", "\(out)")
        let off = f.nook(["run", "--no-root-emulation", "--bind", f.ws + "/probe.deb:/probe.deb:ro", image, "--",
                          "apt-get", "install", "-y", "/probe.deb"], as: user, timeout: 300)
        #expect(off.status != 0 && off.stderr.contains("setgroups"), "apt fails for real without it: \(off)")
    }
}

/// probe.deb in the fixture's workspace: a package whose postinst gives
/// its file to uid 42, as maintainer scripts do.
func makeProbePackage(_ f: ImageFixture) {
    let deb = f.sh("""
        set -e
        mkdir -p pkg/DEBIAN pkg/usr/share/nook-probe
        printf 'Package: nook-probe\\nVersion: 1\\nArchitecture: all\\nMaintainer: nook <nook@localhost>\\nDescription: test\\n' > pkg/DEBIAN/control
        printf '#!/bin/sh\\nchown 42:42 /usr/share/nook-probe/f\\n' > pkg/DEBIAN/postinst
        chmod 755 pkg/DEBIAN/postinst
        echo data > pkg/usr/share/nook-probe/f
        dpkg-deb --root-owner-group --build pkg probe.deb >/dev/null
        """)
    #expect(deb.status == 0, "\(deb)")
}

enum DebianImage {
    /// The cache directory, or nil (with the reason on stderr) when the
    /// image cannot be built here (no network to deb.debian.org, no umoci).
    static let cache: String? = {
        guard getuid() == 0 else { return nil }
        let out = asRoot("sh \(Harness.shared.resource("debian-image.sh"))", timeout: 900)
        guard out.status == 0 else {
            FileHandle.standardError.write(Data("ImageDebianTests skipped: \(out.stderr)\n".utf8))
            return nil
        }
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }()
}
