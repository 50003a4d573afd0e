import Foundation
import Testing

/// The escape cases of shared/CASES.md that apply to `nook run`, each ending
/// with a canary outside everything the sandbox was given left untouched.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct EscapeTests {
    let h = Harness.shared

    // C09: no inheritable or ambient capabilities; the documented bounding set.
    @Test func capabilitySetsAreEmptyInKeepIDAndTheDocumentedSetInRootMode() {
        let keep = h.nook(["run", "--", "grep", "-E", "^(Cap|NoNewPrivs|Seccomp:)", "/proc/self/status"])
        #expect(keep.stdout.contains("CapInh:\t0000000000000000"), "\(keep)")
        #expect(keep.stdout.contains("CapPrm:\t0000000000000000"), "\(keep)")
        #expect(keep.stdout.contains("CapEff:\t0000000000000000"), "\(keep)")
        #expect(keep.stdout.contains("CapAmb:\t0000000000000000"), "\(keep)")
        #expect(keep.stdout.contains("NoNewPrivs:\t1"), "\(keep)")
        #expect(keep.stdout.contains("Seccomp:\t2"), "\(keep)")
        let root = h.nook(["run", "--userns", "root", "--", "grep", "-E", "^Cap", "/proc/self/status"])
        // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP
        #expect(root.stdout.contains("CapEff:\t00000000800405fb"), "\(root)")
        #expect(root.stdout.contains("CapBnd:\t00000000800405fb"), "\(root)")
        #expect(root.stdout.contains("CapInh:\t0000000000000000"), "\(root)")
        #expect(root.stdout.contains("CapAmb:\t0000000000000000"), "\(root)")
    }

    @Test func capAddForANonRootPayloadGoesThroughTheAmbientSetOnlyWhenAsked() {
        let out = h.nook(["run", "--cap-add", "NET_RAW", "--", "grep", "-E", "^Cap(Eff|Amb|Inh)", "/proc/self/status"])
        #expect(out.stdout.contains("CapEff:\t0000000000002000"), "\(out)")
        #expect(out.stdout.contains("CapAmb:\t0000000000002000"), "\(out)")
        let bad = h.nook(["run", "--cap-add", "NET_RAWW", "--", "true"])
        #expect(bad.status == 125 && bad.stderr.contains("--cap-add NET_RAWW: unknown capability"), "\(bad)")
    }

    // C02 (c): fds the caller holds open never reach the sandbox; only 0-2,
    // plus the ones --preserve-fds names.
    @Test func onlyStandardDescriptorsReachThePayload() {
        let canary = Canary()
        let out = h.sh("exec 8</ 9<\(canary.directory); $NOOK run -- sh -c 'ls /proc/self/fd; ls /proc/self/fd/9/ 2>&1'")
        #expect(out.stdout.hasPrefix("0\n1\n2\n3\n"), "\(out)")
        #expect(!out.stdout.contains("8\n") && !out.stdout.contains("canary"), "\(out)")
        let kept = h.sh("exec 3</dev/null 4</dev/null; $NOOK run --preserve-fds 2 -- ls /proc/self/fd")
        #expect(kept.stdout.split(separator: "\n").prefix(5) == ["0", "1", "2", "3", "4"], "\(kept)")
        let notOpen = h.sh("$NOOK run --preserve-fds 3 -- true")
        #expect(notOpen.status == 125 && notOpen.stderr.contains("descriptor"), "\(notOpen)")
    }

    // C02 (a): a working directory through /proc/self/fd/N is refused.
    @Test func aWorkdirThroughAMagicLinkIsRefused() {
        let canary = Canary()
        let before = canary.fingerprint
        for n in 3...12 {
            let out = h.sh("exec 7<\(canary.directory); $NOOK run --workdir /proc/self/fd/\(n) -- sh -c 'pwd; ls ../../..'")
            #expect(out.status == 125, "fd \(n): \(out)")
            #expect(out.stderr.contains("working directory /proc/self/fd/\(n)"), "\(out)")
        }
        #expect(canary.fingerprint == before)
    }

    // C01, C15: the sandbox's init hides nook's binary, memory, fds and the
    // caller's command line and environment.
    @Test func theInitRevealsNothingOfNookOrTheCaller() {
        let number = Int.random(in: 1000...9999)
        let secret = "hunter2-\(number)"
        // The pattern is assembled inside, so no command line carries it whole.
        let out = h.nook(["run", "--clearenv", "--env", "OTHER=x", "--", "sh", "-c",
                          "cat /proc/1/cmdline | tr -d '\\0'; echo; cat /proc/1/environ 2>&1; "
                          + "readlink /proc/1/exe || echo exe-hidden; ls /proc/1/fd 2>&1; printf '%s-%s' hunter2 \(number) > /tmp/p; "
                          + "grep -l -a -F -f /tmp/p /proc/[0-9]*/environ /proc/[0-9]*/cmdline; env | grep -F -f /tmp/p; true"],
                         env: ["SANDBOX_SECRET": secret])
        #expect(out.stdout.hasPrefix("nook-init\n"), "\(out)")
        #expect(!out.stdout.contains(secret), "\(out)")
        #expect(out.stdout.contains("/proc/1/environ: Permission denied"), "\(out)")
        #expect(out.stdout.contains("exe-hidden"), "\(out)")
        #expect(!out.stdout.contains("/nook\n"), "\(out)")
    }

    @Test func theHostBinaryIsUnchangedAfterAttemptsToOpenItFromInside() throws {
        let before = try Data(contentsOf: URL(fileURLWithPath: h.binary))
        h.nook(["run", "--userns", "root", "--", "sh", "-c",
                "for p in /proc/[0-9]*; do exec 9>>$p/exe 2>/dev/null && echo opened $p; done; true"])
        let after = try Data(contentsOf: URL(fileURLWithPath: h.binary))
        #expect(before == after)
    }

    // C11: binding onto a symlinked or dangling destination.
    @Test(arguments: ["relative-dangling", "absolute-dangling", "absolute-existing"])
    func aBindOntoASymlinkIsRefusedAndNothingOutsideChanges(kind: String) {
        let canary = Canary()
        let before = canary.fingerprint
        let ws = h.workspace()
        h.write(ws + "/payload.txt", "payload\n")
        let depth = ws.split(separator: "/").count
        let target: String = switch kind {
        case "relative-dangling": String(repeating: "../", count: depth) + canary.directory.dropFirst() + "/new"
        case "absolute-dangling": "/abs/nonexistent"
        default: canary.file
        }
        let link = ws + "/dst"
        _ = h.sh("ln -s '\(target)' '\(link)'")
        let bind = h.nook(["run", "--bind", "\(ws)/payload.txt:\(link)", "--", "cat", link], in: ws)
        #expect(bind.status == 125, "\(bind)")
        #expect(bind.stderr.contains("\(link) is a symlink inside the sandbox"), "\(bind)")
        let tmpfs = h.nook(["run", "--tmpfs", link, "--", "true"], in: ws)
        #expect(tmpfs.status == 125, "\(tmpfs)")
        #expect(canary.fingerprint == before)
    }

    @Test func aDestinationWithDotDotIsRefusedBeforeAnythingRuns() {
        let out = h.nook(["run", "--bind", "/etc/hostname:/tmp/../../etc/x", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("contains '..'"), "\(out)")
    }

    @Test func aMountPointInTheReadOnlyHostRootIsACLearError() {
        let out = h.nook(["run", "--bind", "/etc/hostname:/usr/share/nook-new-file", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("create the mount point /usr/share/nook-new-file: EROFS"), "\(out)")
        #expect(!FileManager.default.fileExists(atPath: "/usr/share/nook-new-file"))
    }

    // C08: terminal injection is refused, including with high bits set.
    @Test func tiocstiAndTioclinuxAreRefusedEvenWithHighBitsSet() {
        let probe = """
        import ctypes, fcntl, os
        libc = ctypes.CDLL(None, use_errno=True)
        for name, req in [("TIOCSTI", 0x5412), ("TIOCSTI|1<<32", 0x5412 | (1 << 32)), ("TIOCLINUX", 0x541C)]:
            c = ctypes.c_char(b"x")
            r = libc.syscall(16, 0, ctypes.c_ulong(req), ctypes.byref(c))
            print(name, r, ctypes.get_errno())
        """
        let out = h.sh("script -qec \"$NOOK run -- python3 -c '\(probe.replacingOccurrences(of: "\"", with: "\\\""))'\" /dev/null")
        #expect(out.stdout.contains("TIOCSTI -1 1"), "\(out)")
        #expect(out.stdout.contains("TIOCSTI|1<<32 -1 1"), "\(out)")
        #expect(out.stdout.contains("TIOCLINUX -1 1"), "\(out)")
    }

    // C14, C35: the default filter is an allow list; the documented calls
    // are refused, new ones answer ENOSYS, and clone3 falls back cleanly.
    @Test func theSeccompFilterRefusesWhatTheDocumentationSays() {
        let probe = """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def call(nr, *args):
            ctypes.set_errno(0)
            r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
            return 0 if r >= 0 else ctypes.get_errno()
        tests = {"mount": (165, 0, 0, 0, 0, 0), "umount2": (166, 0, 0), "open_tree": (428, -100, 0, 0),
                 "move_mount": (429, -100, 0, -100, 0, 0), "fsopen": (430, 0, 0), "fsconfig": (431, -1, 0, 0, 0, 0),
                 "fsmount": (432, -1, 0, 0), "fspick": (433, -100, 0, 0), "mount_setattr": (442, -100, 0, 0, 0, 0),
                 "keyctl": (250, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "bpf": (321, 0, 0, 0),
                 "perf_event_open": (298, 0, 0, 0, 0, 0), "userfaultfd": (323, 0), "kexec_load": (246, 0, 0, 0, 0),
                 "init_module": (175, 0, 0, 0), "setns": (308, 0, 0), "unshare_user": (272, 0x10000000),
                 "unshare_mnt": (272, 0x20000), "chroot_ok": (161, 0), "clone3": (435, 0, 0),
                 "io_uring_setup": (425, 1, 0), "personality_bsd": (135, 6), "personality_query": (135, 0xffffffff),
                 "unknown_1000": (1000,), "reboot": (169, 0, 0, 0, 0), "swapon": (167, 0, 0)}
        for name, args in tests.items():
            print(name, call(*args))
        """
        let ws = h.workspace()
        h.write(ws + "/probe.py", probe)
        let out = h.nook(["run", "--userns", "root", "--", "python3", "probe.py"], in: ws)
        let results = Dictionary(uniqueKeysWithValues: out.stdout.split(separator: "\n").compactMap { line -> (String, Int)? in
            let parts = line.split(separator: " ")
            guard parts.count == 2, let n = Int(parts[1]) else { return nil }
            return (String(parts[0]), n)
        })
        for name in ["mount", "umount2", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
                     "mount_setattr", "keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                     "init_module", "setns", "unshare_user", "unshare_mnt", "reboot", "swapon"] {
            #expect(results[name] == 1, "\(name) should be EPERM: \(out)")
        }
        for name in ["clone3", "io_uring_setup", "personality_bsd", "unknown_1000"] {
            #expect(results[name] == 38, "\(name) should be ENOSYS: \(out)")
        }
        #expect(results["personality_query"] == 0, "\(out)")
        #expect(results["chroot_ok"] != 1 && results["chroot_ok"] != 38, "\(out)")
    }

    @Test func threadsAndProcessesStartUnderTheFilterWithNewGlibc() {
        let out = h.nook(["run", "--", "python3", "-c",
                          "import threading, subprocess; t = threading.Thread(target=lambda: None); t.start(); t.join(); "
                          + "print(subprocess.run(['getent', 'ahosts', 'localhost'], capture_output=True).returncode)"])
        #expect(out.stdout == "0\n", "\(out)")
    }

    @Test func theI386ABIIsFilteredToo() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc") else { return }
        let ws = h.workspace()
        h.write(ws + "/abi.c", """
        #include <stdio.h>
        int main(void) {
            long r;
            /* i386 mount(2) is number 21 */
            __asm__ volatile ("int $0x80" : "=a"(r) : "a"(21L), "b"(0L), "c"(0L), "d"(0L) : "memory");
            printf("%ld\\n", r);
            return 0;
        }
        """)
        let build = h.sh("cc -o abi abi.c", in: ws)
        try #require(build.status == 0, "\(build)")
        let out = h.nook(["run", "--userns", "root", "--", "./abi"], in: ws)
        // -EPERM from the filter; -ENOSYS only if this kernel has no i386 ABI at all.
        #expect(out.stdout == "-1\n" || out.stdout == "-38\n", "\(out)")
    }

    /// Attack report 4: without XDG_RUNTIME_DIR nook keeps its state in
    /// /tmp/nook-UID, and took that directory even when another user had
    /// made it first: swapping a component below it for a symlink aimed
    /// the sweep of stale sandbox directories at the victim's own files.
    /// A runtime directory another user owns, or that others may write,
    /// is refused before anything is made or removed in it.
    @Test(.enabled(if: Harness.ready && Harness.shared.switching && Harness.shared.userWithWideRange != nil,
                   "needs root and a second test user (script/test)"))
    func aRuntimeDirectoryAnotherUserControlsIsRefused() throws {
        let other = try #require(h.userWithWideRange)
        let theirs = h.scratch + "/runtime-theirs-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: true)
        chown(theirs, other.uid, other.gid)
        chmod(theirs, 0o777)
        let open = h.scratch + "/runtime-open-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        for runtime in [theirs, open] {
            let env = ["XDG_RUNTIME_DIR": runtime]
            for args in [["run", "--network", "slirp4netns", "--no-workspace", "--", "true"],
                         ["run", "-d", "--", "true"], ["ps"]] {
                let out = h.nook(args, env: env)
                #expect(out.status == 125, "\(args): \(out)")
                #expect(out.stderr.contains("so someone else could change what nook keeps below it"), "\(out)")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: runtime)
            #expect(left.isEmpty, "nothing made in \(runtime): \(left)")
        }
    }

    // C17: nook refuses to run with raised privileges.
    @Test(.enabled(if: Harness.ready && Harness.shared.switching, "needs root to make a setuid copy (script/test)"))
    func nookRefusesToRunSetuidOrWithFileCapabilities() throws {
        let dir = h.workspace("suid")
        let copy = dir + "/nook-suid"
        // Copied by cp, not in this process: a descriptor open for writing
        // here is inherited by whatever another test spawns meanwhile, and
        // exec of the copy then fails with ETXTBSY (seen in CI).
        let cp = h.run(["/bin/cp", h.binary, copy], in: dir, stdin: nil, env: [:], as: nil, timeout: 60)
        try #require(cp.status == 0, "\(cp)")
        chown(copy, 0, 0)
        chmod(copy, 0o4755)
        let suid = h.run([copy, "run", "--", "true"], in: dir, stdin: nil, env: [:], as: nil, timeout: 30)
        #expect(suid.status == 125, "\(suid)")
        #expect(suid.stderr.contains("refusing to run with raised privileges"), "\(suid)")
        chmod(copy, 0o755)
        let setcap = h.run(["/sbin/setcap", "cap_sys_admin+ep", copy], in: dir, stdin: nil, env: [:], as: nil, timeout: 30)
        if setcap.status == 0 {
            let caps = h.run([copy, "run", "--", "true"], in: dir, stdin: nil, env: [:], as: nil, timeout: 30)
            #expect(caps.status == 125 && caps.stderr.contains("refusing"), "\(caps)")
        }
    }

    // C37: the payload's umask and the modes of what nook creates do not
    // depend on the caller's umask.
    @Test(arguments: ["077", "000"])
    func theUmaskIsTheConfiguredOneWhateverTheCallers(callerMask: String) {
        let out = h.sh("umask \(callerMask); $NOOK run -- sh -c 'umask; touch /tmp/f; stat -c %a /tmp/f /tmp /run \"$HOME\"'")
        #expect(out.stdout == "0022\n644\n1777\n755\n700\n", "\(out)")
        let set = h.nook(["run", "--umask", "0027", "--", "sh", "-c", "umask"])
        #expect(set.stdout == "0027\n", "\(set)")
    }

    // The attack report's S2: a sandbox given the runtime directory tried
    // to rewrite the seccomp cache so that later sandboxes ran unfiltered.
    @Test func aSandboxCannotReachNooksOwnStateToWeakenLaterOnes() {
        let runtime = h.workspace("runtime")
        chmod(runtime, 0o700)
        let env = ["XDG_RUNTIME_DIR": runtime]
        #expect(h.nook(["run", "--", "true"], env: env).status == 0)
        let attack = h.nook(["run", "--bind", "\(runtime):\(runtime)", "--bind", "\(runtime):/alias", "--", "sh", "-c",
                             "for d in \(runtime)/nook /alias/nook; do ls -A $d; for f in $d/seccomp/*; do : > $f 2>&1; done; "
                             + "touch $d/planted 2>&1; done; true"], env: env)
        #expect(!attack.stdout.contains("seccomp"), "nook's state showed inside: \(attack)")
        let later = h.nook(["run", "--", "grep", "^Seccomp:", "/proc/self/status"], env: env)
        #expect(later.stdout == "Seccomp:\t2\n", "\(later)")
        #expect(!FileManager.default.fileExists(atPath: runtime + "/nook/planted"))
    }

    // A fresh try: in a writable bind of a directory two levels above nook's
    // state (~/.local for ~/.local/share/nook), the directory between could
    // be renamed, and nook's state with it; the sandbox then made an empty
    // store and profile directory where nook would look next. Those
    // directories are pinned (mount points cannot be renamed) and stay
    // writable.
    @Test func nooksStateCannotBeMovedAsideFromABindAboveIt() throws {
        let top = h.workspace("above")
        h.sh("mkdir -p a/share/nook a/config/nook", in: top)
        let env = ["XDG_DATA_HOME": top + "/a/share", "XDG_CONFIG_HOME": top + "/a/config"]
        #expect(h.nook(["run", "--", "true"], env: env).status == 0)
        let attack = h.nook(["run", "--bind", "\(top)/a:/l", "--", "sh", "-c",
                             "mv /l/share /l/s2 2>/dev/null || echo pinned-share; "
                             + "mv /l/config /l/c2 2>/dev/null || echo pinned-config; "
                             + "rm -rf /l/share 2>/dev/null || echo kept; touch /l/share/free && echo writable"], env: env)
        #expect(attack.stdout == "pinned-share\npinned-config\nkept\nwritable\n", "\(attack)")
        #expect(FileManager.default.fileExists(atPath: top + "/a/share/nook")
            && FileManager.default.fileExists(atPath: top + "/a/config/nook"))
        // The same from the workspace.
        let fromWorkspace = h.nook(["run", "--", "sh", "-c", "mv config c2 2>/dev/null || echo pinned"], in: top + "/a",
                                   env: env)
        #expect(fromWorkspace.stdout == "pinned\n", "\(fromWorkspace)")
        // A configuration directory that did not exist yet is made (and
        // hidden), so that no sandbox can make it with profiles of its own.
        let fresh = h.workspace("fresh")
        let planted = h.nook(["run", "--", "sh", "-c", "mkdir -p cfg/nook/profiles 2>/dev/null || echo refused"],
                             in: fresh, env: ["XDG_CONFIG_HOME": fresh + "/cfg"])
        #expect(planted.stdout == "refused\n", "\(planted)")
    }

    // A fresh try: a sandbox replaced ./cache in the workspace with a
    // symlink to the home, and the next run's --bind ./cache:/cache bound
    // the home read-write, unsaid. Said now; a link within stays quiet.
    @Test func aBindThroughASymlinkInTheWorkspaceToOutsideIsWarnedAbout() {
        let ws = h.workspace("linkbind")
        let outside = h.workspace("target")
        h.sh("mkdir inner && ln -s \(outside) cache && ln -s inner near", in: ws)
        let out = h.nook(["run", "--bind", "./cache:/cache", "--bind", "./near:/near", "--", "true"], in: ws)
        #expect(out.status == 0 && out.stderr.contains("--bind ./cache goes through a symlink in the current directory")
            && out.stderr.contains(outside) && !out.stderr.contains("./near"), "\(out)")
    }

    // A fresh try: a profile's bind of ${PWD}/cache, made a symlink to
    // nook's profiles by one run, let the next write a profile that later
    // runs of the stock build profile loaded (seccomp off, host network).
    // Profile binds are resolved and checked as --bind's are.
    @Test func aProfileBindThroughASymlinkIsCheckedWhereItLeads() {
        let ws = h.workspace("profilelink")
        let config = h.workspace("profileconfig")
        h.sh("mkdir -p \(config)/nook/profiles cache && printf '%s\\n' 'extends = [\"build\"]' '[filesystem]' "
             + "'binds = [{ source = \"${PWD}/cache\", destination = \"/cache\" }]' > \(config)/nook/profiles/dev.toml", in: ws)
        let env = ["XDG_CONFIG_HOME": config]
        let first = h.nook(["run", "--profile", "dev", "--", "sh", "-c", "rmdir cache && ln -s \(config)/nook cache"],
                           in: ws, env: env)
        #expect(first.status == 0, "\(first)")
        let second = h.nook(["run", "--profile", "dev", "--", "sh", "-c", "mkdir -p /cache/profiles && touch /cache/profiles/build.toml"],
                            in: ws, env: env)
        #expect(second.status == 125 && second.stderr.contains("goes through a symlink in the current directory")
            && second.stderr.contains("lies in nook's own state"), "\(second)")
        #expect(!FileManager.default.fileExists(atPath: config + "/nook/profiles/build.toml"))
    }

    // Without XDG_RUNTIME_DIR the containers live in /tmp/nook-UID, which a
    // bind of /tmp showed: a fresh try rewrote another container's spec
    // there and the next nook exec ran without a seccomp filter.
    @Test func theRuntimeStateInTmpIsHiddenToo() {
        let env = ["XDG_RUNTIME_DIR": ""]
        #expect(h.nook(["run", "--", "true"], env: env).status == 0)
        let uid = h.sh("id -u").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let attack = h.nook(["run", "--bind", "/tmp:/ht", "--", "sh", "-c",
                             "ls -A /ht/nook-\(uid)/nook; touch /ht/nook-\(uid)/nook/planted 2>/dev/null || echo masked; "
                             + "mv /ht/nook-\(uid) /ht/moved-\(uid) 2>/dev/null || echo pinned"], env: env)
        #expect(attack.stdout == "masked\npinned\n", "\(attack)")
        // And from a run that has XDG_RUNTIME_DIR: cron jobs and CI runners
        // without one keep their containers there (a fresh try rewrote
        // their specs from such a run).
        let runtime = h.workspace("withruntime")
        chmod(runtime, 0o700)
        let other = h.nook(["run", "--bind", "/tmp:/ht", "--", "sh", "-c",
                            "ls -A /ht/nook-\(uid)/nook; touch /ht/nook-\(uid)/nook/planted 2>/dev/null || echo masked"],
                           env: ["XDG_RUNTIME_DIR": runtime])
        #expect(other.stdout == "masked\n", "\(other)")
    }

    // The second attack report: a bind of a directory *inside* nook's state,
    // the workspace among them, was writable. The cache was poisoned from
    // the cache directory itself, a profile rewritten, an image layer changed.
    @Test func aBindInsideNooksStateIsReadOnlyOrRefused() throws {
        let runtime = h.workspace("runtime")
        chmod(runtime, 0o700)
        let data = h.workspace("data")
        let env = ["XDG_RUNTIME_DIR": runtime, "XDG_DATA_HOME": data]
        #expect(h.nook(["run", "--", "true"], env: env).status == 0)
        let cache = runtime + "/nook/seccomp"
        let before = try FileManager.default.contentsOfDirectory(atPath: cache).sorted()
        let contents = before.map { FileManager.default.contents(atPath: cache + "/" + $0) }
        let fromCache = h.nook(["run", "--", "sh", "-c", "for f in *; do echo x > $f; done; touch planted; true"],
                               in: cache, env: env)
        // The cache lies in the runtime directory, which is never bound.
        #expect(fromCache.stderr.contains("lies in your session's runtime directory"), "\(fromCache)")
        #expect(before.map { FileManager.default.contents(atPath: cache + "/" + $0) } == contents)
        #expect(!FileManager.default.fileExists(atPath: cache + "/planted"))
        let later = h.nook(["run", "--", "grep", "^Seccomp:", "/proc/self/status"], env: env)
        #expect(later.stdout == "Seccomp:\t2\n", "\(later)")

        let rw = h.nook(["run", "--bind", "\(cache):/s", "--", "true"], env: env)
        #expect(rw.status == 125 && rw.stderr.contains("lies in nook's own state"), "\(rw)")
        #expect(rw.stderr.contains(":/s:ro"), "the hint gives the read-only form: \(rw)")
        let layers = data + "/nook/persist"
        h.sh("mkdir -p \(layers)/x", env: env)
        let layer = h.nook(["run", "--bind", "\(layers)/x:/l", "--", "true"], env: env)
        #expect(layer.status == 125, "\(layer)")
        let fromLayer = h.nook(["run", "--", "sh", "-c", "touch planted; true"], in: layers + "/x", env: env)
        #expect(fromLayer.stderr.contains("lies in nook's own state") && fromLayer.stderr.contains("read-only"),
                "\(fromLayer)")
        #expect(!FileManager.default.fileExists(atPath: layers + "/x/planted"))
        let ro = h.nook(["run", "--bind", "\(cache):/s:ro", "--", "sh", "-c", "ls /s >/dev/null && touch /s/y"], env: env)
        #expect(ro.status == 1 && ro.stderr.contains("Read-only"), "\(ro)")
        // The state directory itself, read-only as the hint says: shown
        // (it was an empty directory: a fresh try), and not writable.
        let whole = h.nook(["run", "--bind", "\(runtime)/nook:/n:ro", "--", "sh", "-c", "ls /n/seccomp | wc -l; touch /n/y"],
                           env: env)
        #expect(whole.status == 1 && whole.stdout != "0\n" && whole.stderr.contains("Read-only"), "\(whole)")
    }

    @Test func aCacheEntryWithoutProgramsIsNeverLoaded() throws {
        let runtime = h.workspace("runtime")
        chmod(runtime, 0o700)
        let env = ["XDG_RUNTIME_DIR": runtime]
        #expect(h.nook(["run", "--", "true"], env: env).status == 0)
        let dir = runtime + "/nook/seccomp"
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".bpf") })
        // Keep the key, claim zero programs: what the poisoning attempt wrote.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)))
        let keyLength = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        bytes = Array(bytes[0..<(8 + keyLength)]) + [UInt8](repeating: 0, count: 8)
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + file))
        let later = h.nook(["run", "--", "grep", "^Seccomp:", "/proc/self/status"], env: env)
        #expect(later.stdout == "Seccomp:\t2\n", "\(later)")
    }
}
