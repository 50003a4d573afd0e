import Foundation
import Testing

/// `nook run --explain` as an unprivileged user.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ExplainRunTests {
    let h = Harness.shared

    @Test func explainListsRefusedCallsAndWritesWithTheirCauses() throws {
        let user = try #require(h.user)
        let ws = h.workspace()
        let out = h.nook(["run", "--explain", "--", "sh", "-c",
                          "touch /usr/nook-x; mkdir $HOME/.cache; touch ok; python3 -c 'import ctypes; l=ctypes.CDLL(None); "
                          + "l.syscall(250,0,0); l.syscall(250,0,0)'; echo done"], in: ws)
        #expect(out.status == 0 && out.stdout == "done\n", "\(out)")
        #expect(out.stderr.contains("nook: explain: the sandbox was refused:"), "\(out)")
        #expect(out.stderr.contains("write to /usr/nook-x: read-only (the host's /usr, seen read-only)"), "\(out)")
        #expect(out.stderr.contains("write to \(user.home)/.cache: read-only (an empty read-only tmpfs over \(user.home)"),
                "\(out)")
        #expect(out.stderr.contains("system call keyctl: EPERM (2 times)"), "\(out)")
        #expect(!out.stderr.contains("\(ws)/ok"), "a write that succeeds is not a refusal: \(out)")
        #expect(FileManager.default.fileExists(atPath: ws + "/ok"))
    }

    // The second attack report: --explain looked at a sandbox's path from
    // the host, so an absolute symlink made inside led to the host's files
    // (here a read-only mount that exists only on the host: a false report).
    @Test(.enabled(if: getuid() == 0, "mounting the host's read-only directory needs root"))
    func explainResolvesPathsInsideTheSandbox() {
        let dir = "/tmp/nook-ro-\(UUID().uuidString.prefix(8))"
        #expect(asRoot("mkdir -p \(dir) && mount -t tmpfs -o ro tmpfs \(dir)").status == 0)
        defer { _ = asRoot("umount \(dir); rmdir \(dir)") }
        let out = h.nook(["run", "--explain", "--", "sh", "-c", "ln -s \(dir) /tmp/l; echo x > /tmp/l/file; true"])
        #expect(out.stderr.contains("nothing was refused") && !out.stderr.contains(dir), "\(out)")
    }

    /// A README-first try: unshare -n failed with EPERM and --explain
    /// said "nothing was refused".
    @Test func explainNamesARefusalOnACallsArguments() {
        let out = h.nook(["run", "--explain", "--", "sh", "-c", "unshare -n true; echo rc=$?; sh -c 'echo forked'"])
        #expect(out.stdout.contains("rc=1") && out.stdout.hasSuffix("forked\n"), "\(out)")
        #expect(out.stderr.contains("system call unshare(CLONE_NEWNET): EPERM"), "\(out)")
        #expect(out.stderr.contains("new namespaces inside the sandbox") && out.stderr.contains("--seccomp-allow unshare"),
                "\(out)")
        #expect(!out.stderr.contains("clone("), "forks are not refusals: \(out)")
    }

    @Test func explainWithNothingRefusedSaysSo() {
        let out = h.nook(["run", "--explain", "--", "true"])
        #expect(out.status == 0)
        #expect(out.stderr == "nook: explain: nothing was refused\n", "\(out)")
    }

    @Test func explainKeepsExitStatusesAndSignals() {
        #expect(h.nook(["run", "--explain", "--", "sh", "-c", "exit 9"]).status == 9)
        #expect(h.nook(["run", "--explain", "--", "sh", "-c", "kill -TERM $$"]).status == 143)
    }

    @Test func explainNamesTheProfileLineResponsible() {
        let ws = h.workspace()
        let hidden = h.workspace("hidden")
        h.write(ws + "/p.toml", """
            [filesystem]
            hidden = ["\(hidden)"]

            [security]
            seccomp = "default"
            """)
        let out = h.nook(["run", "--profile", ws + "/p.toml", "--explain", "--", "sh", "-c",
                          "touch \(hidden)/x 2>/dev/null; python3 -c 'import ctypes; ctypes.CDLL(None).syscall(250,0,0)'"],
                         in: ws)
        #expect(out.stderr.contains("hidden by the profile: [filesystem] hidden \(hidden) at"), "\(out)")
        #expect(out.stderr.contains("p.toml:2:"), "\(out)")
        #expect(out.stderr.contains("the policy set at"), "\(out)")
        #expect(out.stderr.contains("p.toml:5:"), "\(out)")
        #expect(out.stderr.contains("--seccomp-allow keyctl"), "\(out)")
    }

    /// A fresh try: a misspelt --seccomp-allow was taken without a word.
    @Test func aSeccompAllowThatNamesNoCallIsWarnedAbout() {
        let out = h.nook(["run", "--seccomp-allow", "keyctll", "--", "true"])
        #expect(out.status == 0 && out.stderr.contains("seccomp_allow keyctll: no system call has that name"), "\(out)")
        let fine = h.nook(["run", "--seccomp-allow", "keyctl", "--", "true"])
        #expect(!fine.stderr.contains("no system call"), "\(fine)")
    }

    @Test func seccompAllowLetsARefusedCallThroughAndNothingElse() {
        let probe = "import ctypes; l=ctypes.CDLL(None, use_errno=True); r=l.syscall(272, 0x10000000); "
            + "print(r, ctypes.get_errno()); r=l.syscall(250,0,0); print(r, ctypes.get_errno())"
        let without = h.nook(["run", "--", "python3", "-c", probe])
        #expect(without.stdout == "-1 1\n-1 1\n", "\(without)")
        let with = h.nook(["run", "--seccomp-allow", "unshare", "--", "python3", "-c", probe])
        #expect(with.stdout.hasPrefix("0 0\n-1 1\n"), "unshare(CLONE_NEWUSER) should pass, keyctl not: \(with)")
        let bad = h.nook(["run", "--seccomp-allow", "Not-A-Call", "--", "true"])
        #expect(bad.status == 125 && bad.stderr.contains("not a system call name"), "\(bad)")
    }
}
