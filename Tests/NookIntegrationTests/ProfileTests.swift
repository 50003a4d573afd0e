import Foundation
import Testing

/// Each stock profile run as an unprivileged user with subordinate ids,
/// its promises checked from inside the sandbox; and profile loading that
/// fails closed (CASES.md C19).
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct ProfileTests {
    let h = Harness.shared

    /// A config home of the test's own, so the user's profiles never count.
    func isolated(_ extra: [String: String] = [:]) -> [String: String] {
        var env = ["XDG_CONFIG_HOME": h.workspace("config")]
        env.merge(extra) { _, new in new }
        return env
    }

    /// Writes a user profile into the isolated config home.
    func userProfile(_ env: [String: String], _ name: String, _ text: String, mode: Int = 0o644) {
        let dir = (env["XDG_CONFIG_HOME"] ?? "") + "/nook/profiles"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if h.switching, let user = h.user {
            for path in [env["XDG_CONFIG_HOME"] ?? "", (env["XDG_CONFIG_HOME"] ?? "") + "/nook", dir] {
                chown(path, user.uid, user.gid)
            }
        }
        h.write(dir + "/" + name + ".toml", text, mode: mode)
    }

    // MARK: From a fresh checkout

    @Test func theStockProfilesAreListedFromTheSourceTreeWithNoUserConfig() {
        let out = h.nook(["profile", "list"], env: isolated())
        #expect(out.status == 0, "\(out)")
        for name in ["build", "ci", "default", "net", "strict"] {
            #expect(out.stdout.contains("Profiles/\(name).toml (stock)"), "\(name): \(out.stdout)")
        }
    }

    @Test func profileShowBuildPrintsTheMergedProfileWithTheFileOfEachValue() {
        let out = h.nook(["profile", "show", "build"], env: isolated())
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.contains("mode = \"none\"  # "), "\(out.stdout)")
        #expect(out.stdout.contains("Profiles/build.toml:"), "\(out.stdout)")
        #expect(out.stdout.contains("userns = \"keep-id\"  # ") && out.stdout.contains("Profiles/default.toml:"))
    }

    @Test func aDryRunWithTheBuildProfilePrintsTheSpecAndExitsZero() throws {
        let out = h.nook(["run", "--profile", "build", "--dry-run", "--", "true"], env: isolated())
        #expect(out.status == 0, "\(out)")
        let spec = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
        let linux = spec?["linux"] as? [String: Any]
        let namespaces = (linux?["namespaces"] as? [[String: Any]])?.compactMap { $0["type"] as? String } ?? []
        #expect(namespaces.contains("network"), "\(namespaces)")
    }

    @Test func theDefaultProfileIsExactlyWhatNookRunDoesWithoutOne() {
        let ws = h.workspace()
        let env = isolated()
        let plain = h.nook(["run", "--dry-run", "--", "true"], in: ws, env: env)
        let profiled = h.nook(["run", "--profile", "default", "--dry-run", "--", "true"], in: ws, env: env)
        #expect(plain.status == 0 && profiled.status == 0, "\(plain)\n\(profiled)")
        #expect(plain.stdout == profiled.stdout)
    }

    // MARK: build

    @Test func buildWritesOnlyTheWorkspaceAndItsOutputsBelongToTheUser() throws {
        let user = try #require(h.user)
        let ws = h.workspace("build")
        let out = h.nook(
            [
                "run", "--profile", "build", "--", "sh", "-c",
                """
                for p in "$HOME/x" /usr/x /etc/x /var/tmp/x /opt/x /x; do touch "$p" 2>/dev/null && echo "wrote $p"; done
                echo built > out.txt && echo ws-ok
                """,
            ], in: ws, env: isolated())
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "ws-ok\n", "\(out)")
        var sb = stat()
        #expect(stat(ws + "/out.txt", &sb) == 0 && sb.st_uid == user.uid, "owner \(sb.st_uid)")
    }

    @Test func buildHasNoNetworkButLoopbackAndCannotReachHostServices() throws {
        let server = try Socket.listen()
        defer { server.close() }
        let out = h.nook(
            [
                "run", "--profile", "build", "--", "python3", "-c",
                """
                import socket
                print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))
                try:
                    socket.create_connection(('127.0.0.1', \(server.port)), timeout=3); print('connected')
                except OSError:
                    print('refused')
                """,
            ], env: isolated())
        #expect(out.stdout == "['lo']\nrefused\n", "\(out)")
    }

    @Test func buildStartsFromAClearedEnvironment() {
        let out = h.nook(
            ["run", "--profile", "build", "--", "sh", "-c", "echo ${NOOK_TEST_SECRET:-unset}; echo $LANG"],
            env: isolated(["NOOK_TEST_SECRET": "hunter2", "LANG": "C.UTF-8"]))
        #expect(out.stdout == "unset\nC.UTF-8\n", "\(out)")
    }

    // MARK: ci

    @Test func ciGivesAScratchHomeThatIsGoneWhenTheJobEnds() throws {
        let user = try #require(h.user)
        // ci requires its memory and pids limits, which a host without
        // delegated controllers refuses (CgroupTests); "max" asks for no
        // controller, so the home can be tested anywhere.
        let out = h.nook(
            [
                "run", "--profile", "ci", "--memory", "max", "--pids", "max", "--", "sh", "-c",
                "echo cache > \"$HOME/.nook-ci-scratch\" && cat \"$HOME/.nook-ci-scratch\"; echo CI=$CI",
            ],
            env: isolated())
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "cache\nCI=true\n", "\(out)")
        #expect(!FileManager.default.fileExists(atPath: user.home + "/.nook-ci-scratch"))
    }

    @Test func ciAsksForRequiredMemoryAndPidsLimits() {
        let out = h.nook(["profile", "show", "ci"], env: isolated())
        #expect(out.stdout.contains("memory = \"4GiB\""), "\(out)")
        #expect(out.stdout.contains("pids = 4096"))
        #expect(out.stdout.contains("required = [\n    \"memory\","), "\(out.stdout)")
    }

    // MARK: strict


    /// Found by the VM tier: strict would not start on a host without
    /// /etc/ssl (it hides /etc/ssl/private): a path to hide whose directory
    /// was missing stopped the run. Nothing there is nothing to hide.
    @Test func aHiddenPathWhoseDirectoryIsMissingIsNothingToHide() {
        let env = isolated()
        userProfile(env, "hides", "[filesystem]\nhidden = [\"/nonexistent-nook/secret\", \"/etc/nonexistent-nook\"]\n")
        let out = h.nook(["run", "--profile", "hides", "--", "echo", "ran"], env: env)
        #expect(out.status == 0 && out.stdout == "ran\n", "\(out)")
    }

    /// A fresh try: a read_only path was mounted noexec too (as /proc's
    /// are), so a read-only .git's hooks no longer ran.
    @Test func aReadOnlyPathStaysExecutable() {
        let env = isolated()
        let ws = h.workspace("rox")
        h.sh("mkdir tools && printf '#!/bin/sh\\necho ran\\n' > tools/run.sh && chmod 755 tools/run.sh", in: ws)
        userProfile(env, "ro", "[filesystem]\nread_only = [\"\(ws)/tools\"]\n")
        let out = h.nook(["run", "--profile", "ro", "--", "sh", "-c", "./tools/run.sh; touch tools/x"], in: ws, env: env)
        #expect(out.stdout == "ran\n" && out.stderr.contains("Read-only file system"), "\(out)")
    }

    /// A fresh try: with nook installed under the workspace (PREFIX/bin),
    /// a sandboxed command wrote a new stock profile into
    /// PREFIX/share/nook/profiles for later runs to load.
    @Test func aSandboxCannotWriteTheStockProfilesOfANookInItsWorkspace() {
        let ws = h.workspace("prefix")
        let out = h.sh("""
            mkdir -p pfx/bin pfx/share/nook/profiles && cp $NOOK pfx/bin/nook
            pfx/bin/nook run -- true 2>/dev/null && echo ran
            pfx/bin/nook run -- sh -c 'echo "[network]" > pfx/share/nook/profiles/planted.toml' 2>/dev/null
            pfx/bin/nook run -- sh -c 'echo "[network]" > pfx/share/nook/profiles/strict.toml' 2>/dev/null
            ls pfx/share/nook/profiles
            """, in: ws)
        #expect(out.stdout == "ran\n", "\(out)")
    }

    @Test func strictHidesTheHomeAndTheWorkspace() throws {
        let user = try #require(h.user)
        let secret = user.home + "/.nook-strict-secret"
        if h.switching { h.write(secret, "secret") }
        defer { if h.switching { try? FileManager.default.removeItem(atPath: secret) } }
        let ws = h.workspace("strict")
        h.write(ws + "/project.txt", "project")
        let out = h.nook(
            [
                "run", "--profile", "strict", "--", "sh", "-c",
                """
                pwd; ls -A "$HOME"; cat "$HOME/.nook-strict-secret" 2>/dev/null; cat '\(ws)/project.txt' 2>/dev/null
                test -e '\(ws)' && echo workspace-visible; ls /home | grep -v '^\(user.name)$'; for d in /var /opt /root /srv /mnt; do ls -A $d 2>/dev/null; done
                true
                """,
            ], in: ws, env: isolated())
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "/tmp\n", "\(out)")
    }

    @Test func strictLetsOnlyTmpBeWrittenAndHasNoNetworkEnvironmentOrCapabilities() {
        let out = h.nook(
            [
                "run", "--profile", "strict", "--", "sh", "-c",
                """
                for p in /usr/x /etc/x /x "$HOME/x"; do touch "$p" 2>/dev/null && echo "wrote $p"; done
                touch /tmp/x && echo tmp-ok
                grep CapEff /proc/self/status
                cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '
                echo ${NOOK_TEST_SECRET:-unset}
                """,
            ], env: isolated(["NOOK_TEST_SECRET": "hunter2"]))
        #expect(out.stdout == "tmp-ok\nCapEff:\t0000000000000000\nlo\nunset\n", "\(out)")
    }

    @Test func strictShowsTheProgramsOfTheHost() {
        let out = h.nook(
            ["run", "--profile", "strict", "--", "sh", "-c", "ls /usr/bin/env && id -un"], env: isolated())
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.hasPrefix("/usr/bin/env\n"), "\(out)")
    }

    // MARK: net

    @Test func netReachesAServerOnTheHostLoopback() throws {
        let server = try Socket.listen()
        defer { server.close() }
        let out = h.nook(
            [
                "run", "--profile", "net", "--", "python3", "-c",
                "import socket; socket.create_connection(('127.0.0.1',\(server.port)),timeout=3); print('connected')",
            ],
            env: isolated())
        #expect(out.stdout == "connected\n", "\(out)")
    }

    // MARK: Flags over profiles

    @Test func aFlagOverridesTheProfile() throws {
        let server = try Socket.listen()
        defer { server.close() }
        let out = h.nook(
            [
                "run", "--profile", "build", "--network", "host", "--", "python3", "-c",
                "import socket; socket.create_connection(('127.0.0.1',\(server.port)),timeout=3); print('connected')",
            ],
            env: isolated())
        #expect(out.stdout == "connected\n", "\(out)")
    }

    @Test func aUserProfileOverridesTheStockOneAndCanExtendIt() {
        let env = isolated()
        userProfile(env, "build", "extends = [\"build\"]\n[network]\nhostname = \"mybuild\"\n")
        let out = h.nook(
            ["run", "--profile", "build", "--", "sh", "-c", "hostname; touch /usr/x 2>/dev/null || echo ro"],
            env: env)
        #expect(out.stdout == "mybuild\nro\n", "\(out)")
    }

    @Test func aProfileCanRunThePayloadAsAnotherMappedUid() {
        let env = isolated()
        userProfile(env, "other", "[user]\nuserns = \"root\"\nuid = 1000\ngid = 1000\n")
        let out = h.nook(["run", "--profile", "other", "--", "sh", "-c", "id -u; id -g"], env: env)
        #expect(out.stdout == "1000\n1000\n", "\(out)")
    }

    @Test func aMissingBindSourceNamesTheProfileLine() {
        let env = isolated()
        userProfile(env, "binds", "[filesystem]\nbinds = [\"/nonexistent/nook-data\"]\n")
        let out = h.nook(["run", "--profile", "binds", "--", "true"], env: env)
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("binds.toml:2:10: filesystem.binds: the source /nonexistent/nook-data does not exist"),
                "\(out)")
        // A fresh try: a missing root was not named by its line.
        userProfile(env, "rooted", "[filesystem]\nroot = \"/nonexistent/nook-root\"\n")
        let rooted = h.nook(["run", "--profile", "rooted", "--", "true"], env: env)
        #expect(rooted.status == 125 && rooted.stderr.contains(
            "rooted.toml:2:8: filesystem.root: the root directory /nonexistent/nook-root does not exist"), "\(rooted)")
    }

    // MARK: Failing closed (C19)

    @Test func aMissingParentStopsTheRunAndNamesTheChain() {
        let env = isolated()
        let ws = h.workspace()
        userProfile(env, "main", "extends = [\"extra\"]\n")
        let out = h.nook(["run", "--profile", "main", "--", "touch", ws + "/ran"], env: env)
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("main.toml:1:12: extends: no profile named \"extra\""), "\(out)")
        #expect(!FileManager.default.fileExists(atPath: ws + "/ran"))
    }

    @Test func anUnreadableParentStopsTheRun() throws {
        let env = isolated()
        let ws = h.workspace()
        userProfile(env, "extra", "[network]\nmode = \"none\"\n", mode: 0o000)
        userProfile(env, "main", "extends = [\"extra\"]\n[network]\nhostname = \"x\"\n")
        let out = h.nook(["run", "--profile", "main", "--", "touch", ws + "/ran"], env: env)
        #expect(out.status == 125, "\(out)")
        #expect(out.stderr.contains("extra.toml cannot be read: EACCES"), "\(out)")
        #expect(!FileManager.default.fileExists(atPath: ws + "/ran"))
    }

    @Test func aRelativeParentIsFoundFromAnyWorkingDirectory() {
        let env = isolated()
        let dir = (env["XDG_CONFIG_HOME"] ?? "") + "/nook/profiles"
        userProfile(env, "restrict", "[network]\nmode = \"none\"\n")
        userProfile(env, "main", "extends = [\"./restrict.toml\"]\n[network]\nhostname = \"rel\"\n")
        let elsewhere = h.workspace("elsewhere")
        let out = h.nook(
            [
                "run", "--profile", dir + "/main.toml", "--", "sh", "-c",
                "hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
            ], in: elsewhere, env: env)
        #expect(out.stdout == "rel\nlo\n", "\(out)")
    }

    @Test func profileCheckPrintsEachProblemWithFileLineAndColumn() {
        let ws = h.workspace()
        h.write(ws + "/mine.toml", "[network]\nmode = \"hsot\"\n[limits]\nmemory = \"4 G\"\n")
        let out = h.nook(["profile", "check", "./mine.toml"], in: ws, env: isolated())
        #expect(out.status == 1, "\(out)")
        #expect(
            out.stderr.contains("nook: \(ws)/mine.toml:2:8: network.mode: \"hsot\" is not a network mode"), "\(out)")
        #expect(out.stderr.contains("\(ws)/mine.toml:4:10: limits.memory: \"4 G\" is not a size"), "\(out)")
        let good = h.nook(["profile", "check", "strict"], env: isolated())
        #expect(good.status == 0 && good.stdout.hasSuffix("Profiles/strict.toml: ok\n"), "\(good)")
    }
}
