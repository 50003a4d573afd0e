import Foundation
import Testing

/// `nook unshare`: root of a user namespace with the caller's subordinate ids.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct UnshareTests {
    let h = Harness.shared

    @Test func filesASandboxGaveToSubordinateIdsCanBeRemovedThroughUnshare() {
        let ws = h.workspace()
        let made = h.nook(["run", "--userns", "root", "--", "sh", "-c", "mkdir d && touch d/f && chown -R 1234:1234 d"],
                          in: ws)
        #expect(made.status == 0, "\(made)")
        let outside = h.sh("rm -rf d 2>/dev/null; test -e d/f && echo still-there", in: ws)
        #expect(outside.stdout == "still-there\n", "\(outside)")
        let inside = h.nook(["unshare", "--", "sh", "-c", "stat -c '%u:%g' d/f; rm -rf d"], in: ws)
        #expect(inside.stdout == "1234:1234\n" && inside.status == 0, "\(inside)")
        #expect(!FileManager.default.fileExists(atPath: ws + "/d"))
    }

    @Test func unshareIsRootInsideWithTheFullMappingAndNothingElseIsolated() throws {
        let user = try #require(h.user)
        let out = h.nook(["unshare", "--", "sh", "-c", "id -u; cat /proc/self/uid_map | wc -l; echo $NOOK_UNSHARE; "
                          + "readlink /proc/self/ns/net; ls -d \(user.home)"])
        let lines = out.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(out)")
        #expect(lines[0] == "0" && lines[1] == "2" && lines[2] == "1", "\(out)")
        #expect(lines[4] == user.home, "the home is not hidden: \(out)")
        let hostNet = h.sh("readlink /proc/self/ns/net").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(lines[3] == hostNet, "\(out)")
    }

    @Test func unshareKeepsExitStatusesAndSignals() {
        #expect(h.nook(["unshare", "--", "sh", "-c", "exit 4"]).status == 4)
        #expect(h.nook(["unshare", "--", "sh", "-c", "kill -TERM $$"]).status == 143)
        #expect(h.nook(["unshare", "--", "no-such-command-xyz"]).status == 127)
    }
}
