import Foundation
import Testing

/// The id mapping fallbacks and helper failures (C43).
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct IDMapTests {
    let h = Harness.shared

    @Test(.enabled(if: Harness.shared.userWithoutRanges != nil, "needs NOOK_TEST_USER_NOSUB (script/test makes one)"))
    func aUserWithoutSubordinateIdsGetsASingleIdMappingAndTheFixOnce() throws {
        let user = try #require(h.userWithoutRanges)
        let ws = h.workspace()
        chown(ws, user.uid, user.gid)
        let out = h.nook(["run", "--", "cat", "/proc/self/uid_map"], in: ws, as: user)
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.split(separator: "\n").count == 1, "\(out)")
        #expect(out.stdout.contains("\(user.uid)"), "\(out)")
        let warnings = out.stderr.components(separatedBy: "single-id mapping").count - 1
        #expect(warnings == 1, "\(out)")
        #expect(out.stderr.contains("usermod --add-subuids"), "\(out)")
        #expect(out.stderr.contains(user.name), "\(out)")
        let root = h.nook(["run", "--userns", "root", "--", "id", "-u"], in: ws, as: user)
        #expect(root.stdout == "0\n", "\(root)")
    }

    // With only its own ids, setgroups is denied: a root of its own must not
    // try to set the root user's groups, and a root whose owner is unmapped
    // still gets a writable layer.
    @Test(.enabled(if: Harness.shared.userWithoutRanges != nil, "needs NOOK_TEST_USER_NOSUB (script/test makes one)"))
    func aSingleIdUserRunsADirectoryRootAsRoot() throws {
        let user = try #require(h.userWithoutRanges)
        let ws = h.workspace()
        _ = h.sh("""
            mkdir -p r/bin r/etc r/tmp && cp /bin/busybox r/bin/ && ln -s busybox r/bin/sh && ln -s busybox r/bin/id
            echo 'root:x:0:0::/:/bin/sh' > r/etc/passwd && echo 'root:x:0:' > r/etc/group
            """, in: ws)
        for path in FileManager.default.enumerator(atPath: ws)?.allObjects as? [String] ?? [] {
            lchown(ws + "/" + path, user.uid, user.gid)
        }
        // The second time the root directory itself has a group outside the
        // mapping, as one made by root and chowned to the user has.
        for (group, name) in [(user.gid, "own group"), (0, "root's group on the top directory")] {
            lchown(ws + "/r", user.uid, group)
            let out = h.nook(["run", "--rootfs", ws + "/r", "--", "sh", "-c", "id -u; touch /new && echo wrote"],
                             in: ws, as: user)
            #expect(out.stdout == "0\nwrote\n", "\(name): \(out)")
        }
    }

    @Test func aNewuidmapWithoutItsPrivilegesIsNamedWithItsOwnMessage() {
        let ws = h.workspace()
        let out = h.sh("mkdir bin; cp /usr/bin/newuidmap /usr/bin/newgidmap bin/; PATH=$PWD/bin:$PATH $NOOK run -- true",
                       in: ws)
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("\(ws)/bin/newuidmap failed"), "\(out)")
        #expect(out.stderr.contains("neither setuid root nor has file capabilities"), "\(out)")
        #expect(out.stderr.contains("asked for"), "\(out)")
    }

    @Test func noNewuidmapOnPathFallsBackWithTheInstallHint() {
        let ws = h.workspace()
        let out = h.sh("mkdir bin; PATH=$PWD/bin $NOOK run -- /bin/cat /proc/self/uid_map", in: ws)
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr.contains("apt install uidmap"), "\(out)")
        #expect(out.stdout.split(separator: "\n").count == 1, "\(out)")
    }
}
