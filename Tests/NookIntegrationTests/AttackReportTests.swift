import Foundation
import Testing

/// The findings of the first attack report on `nook run`, each with the
/// input that showed it.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct AttackReportTests {
    let h = Harness.shared

    @Test(.enabled(if: Harness.shared.userWithWideRange != nil, "needs NOOK_TEST_USER_WIDE (script/test makes one)"))
    func aRangeCoveringRealAccountsIsWarnedAboutAndTheCallersOwnIdLeftOut() throws {
        let user = try #require(h.userWithWideRange)
        let ws = h.workspace()
        chown(ws, user.uid, user.gid)
        let out = h.nook(["run", "--", "cat", "/proc/self/uid_map"], in: ws, as: user)
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr.contains("contains your own uid \(user.uid); nook leaves it out"), "\(out)")
        #expect(out.stderr.contains("a real account"), "\(out)")
    }

    @Test func theCurrentDirectoryIsNotBoundWhenItIsOneOfTheSandboxsPrivateMounts() {
        let marker = "host-tmp-\(Int.random(in: 1000...9999))"
        h.write("/tmp/" + marker, "x")
        defer { unlink("/tmp/" + marker) }
        let out = h.nook(["run", "--", "sh", "-c", "pwd; ls /tmp"], in: "/tmp")
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.hasPrefix("/\n"), "\(out)")
        #expect(!out.stdout.contains(marker), "the host's /tmp is in the sandbox: \(out)")
        #expect(out.stderr.contains("is one the sandbox has a private one of"), "\(out)")
    }

    @Test func aDirectoryAsStdinIsRefused() {
        let out = h.sh("$NOOK run -- cat /proc/self/fd/0/etc/hostname < /; echo rc=$?")
        #expect(out.stdout.contains("rc=125"), "\(out)")
        #expect(out.stderr.contains("stdin is a directory"), "\(out)")
        // A fresh try: a preserved descriptor of a directory was the same
        // way in (the sandbox wrote into the hidden home through it).
        let canary = Canary()
        let kept = h.sh("exec 3<\(canary.directory); $NOOK run --preserve-fds 1 -- sh -c 'echo x > /proc/self/fd/3/new'; "
            + "echo rc=$?")
        #expect(kept.stdout.contains("rc=125") && kept.stderr.contains("descriptor 3 is a directory"), "\(kept)")
        #expect(!FileManager.default.fileExists(atPath: canary.directory + "/new"))
    }

    /// A fresh try: nook exec took a directory as stdin, and a process of
    /// the container wrote into the host's home through /proc/PID/fd/0.
    @Test func execRefusesADirectoryAsStdin() {
        let f = LifecycleFixture()
        f.start(["--", "sleep", "300"], name: "target")
        defer { f.nook(["rm", "-f", "target"]) }
        let out = f.sh("$NOOK exec target -- true < /; echo rc=$?")
        #expect(out.stdout.contains("rc=125") && out.stderr.contains("stdin is a directory"), "\(out)")
    }

    @Test func aHomeThatIsASymlinkIsHiddenAtItsRealPath() {
        let real = h.workspace("realhome")
        h.write(real + "/secret", "secret\n")
        let link = h.workspace("links") + "/home"
        _ = h.sh("ln -s '\(real)' '\(link)'")
        let out = h.nook(["run", "--", "sh", "-c", "cat \(real)/secret 2>&1; cat $HOME/secret 2>&1; true"],
                         env: ["HOME": link])
        #expect(out.status == 0, "\(out)")
        #expect(!out.stdout.contains("secret\n"), "\(out)")
    }

    @Test func preserveFdsCountsOnlyTheCallersDescriptors() {
        let out = h.sh("exec 3>&-; $NOOK run --preserve-fds 1 -- true; echo rc=$?")
        #expect(out.stdout.contains("rc=125"), "\(out)")
        #expect(out.stderr.contains("descriptor 3 is not open"), "\(out)")
    }

    @Test func envFilesWithWindowsLineEndsAndUnsetNamesBehave() {
        let ws = h.workspace()
        h.write(ws + "/e", "A=1\r\nB=2\r\n")
        let out = h.nook(["run", "--env-file", "e", "--env", "NOT_SET_ANYWHERE", "--", "sh", "-c",
                          "echo \"[$A][$B][${NOT_SET_ANYWHERE-unset}]\""], in: ws)
        #expect(out.stdout == "[1][2][unset]\n", "\(out)")
    }

    @Test func dropAllThenAddKeepsWhatIsAdded() {
        let out = h.nook(["run", "--userns", "root", "--cap-drop", "all", "--cap-add", "NET_RAW", "--",
                          "grep", "^CapEff", "/proc/self/status"])
        #expect(out.stdout == "CapEff:\t0000000000002000\n", "\(out)")
    }

    @Test func aSmallOpenFileLimitBindsThePayloadNotNook() {
        let out = h.nook(["run", "--ulimit", "nofile=6", "--", "sh", "-c", "ulimit -n"])
        #expect(out.stdout == "6\n", "\(out)")
    }

    @Test func withoutTheWorkspaceTheCommandStartsAtTheRoot() {
        let out = h.nook(["run", "--no-workspace", "--", "pwd"])
        #expect(out.stdout == "/\n", "\(out)")
    }

    @Test func aHostnameMustBeASCII() {
        let out = h.nook(["run", "--hostname", "é", "--", "true"])
        #expect(out.status == 125 && out.stderr.contains("not a valid hostname"), "\(out)")
    }

    @Test func execFailuresSayWhatIsWrong() {
        let ws = h.workspace()
        h.write(ws + "/badinterp", "#!/nonexistent/interpreter\n", mode: 0o755)
        let interp = h.nook(["run", "--", "./badinterp"], in: ws)
        #expect(interp.status == 127 && interp.stderr.contains("the interpreter its #! line names was not found"), "\(interp)")
        let dir = h.nook(["run", "--", "/usr"])
        #expect(dir.status == 126 && dir.stderr.contains("/usr: is a directory"), "\(dir)")
    }

    @Test func aBindAtADevicesPlaceReplacesTheDevice() {
        let ws = h.workspace()
        h.write(ws + "/fake-null", "not null\n")
        let out = h.nook(["run", "--bind", "\(ws)/fake-null:/dev/null:ro", "--", "cat", "/dev/null"], in: ws)
        #expect(out.stdout == "not null\n", "\(out)")
    }

    @Test func aNewuidmapThatDoesNothingIsCaught() {
        let ws = h.workspace()
        let out = h.sh("""
            mkdir bin; printf '#!/bin/sh\\nexit 0\\n' > bin/newuidmap; cp bin/newuidmap bin/newgidmap; chmod +x bin/*
            PATH=$PWD/bin:$PATH $NOOK run -- true; echo rc=$?
            """, in: ws)
        #expect(out.stdout.contains("rc=125"), "\(out)")
        #expect(out.stderr.contains("uid_map is empty"), "\(out)")
    }
}
