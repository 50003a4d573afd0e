import Foundation
import Testing

/// `nook doctor` as the test user on this host, and on broken setups made
/// for the test user alone (another user without ranges, a PATH without
/// newuidmap, a /dev/fuse it cannot open in a private mount namespace).
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct DoctorTests {
    let h = Harness.shared

    static var hybridHost: Bool {
        FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs")
            && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cgroup.procs")
    }

    func line(_ out: Outcome, _ title: String) -> String? {
        out.stdout.split(separator: "\n").map(String.init).first { $0.dropFirst(6).hasPrefix(title + ":") }
    }

    @Test(.enabled(if: DoctorTests.hybridHost, "needs a host with hybrid cgroups (controllers on v1) like the project VM"))
    func onThisHostDoctorNamesHybridCgroupsAndTheMissingControllers() throws {
        let out = h.nook(["doctor"])
        #expect(out.status == 0 || out.status == 1, "\(out)")
        let v2 = try #require(line(out, "cgroup v2"), "\(out.stdout)")
        #expect(v2.hasPrefix("warn  cgroup v2: hybrid cgroups: cgroup v2 is at /sys/fs/cgroup/unified but the "
            + "controllers cpu, cpuset, io, memory, pids are on cgroup v1"), "\(v2)")
        #expect(v2.contains("fix: boot with systemd.unified_cgroup_hierarchy=1"), "\(v2)")
        let controllers = try #require(line(out, "cgroup controllers"), "\(out.stdout)")
        #expect(controllers.hasPrefix("warn  cgroup controllers: "), "\(controllers)")
        if h.userManagerRunning {
            #expect(controllers.contains("cpu cpuset io memory pids not delegated to user@"), "\(controllers)")
            #expect(controllers.contains("cause: hybrid cgroups"), "\(controllers)")
            #expect(line(out, "systemd user manager")?.hasPrefix("ok    systemd user manager: systemd ") == true,
                    "\(out.stdout)")
        } else {
            #expect(controllers.contains("no systemd user manager answers"), "\(controllers)")
        }
    }

    @Test(.enabled(if: Harness.completeHost, "runs only where the host is complete: NOOK_TEST_TIER=vm (vm/run-tests)"))
    func onACompleteHostEveryCheckIsOk() throws {
        let out = h.nook(["doctor"])
        #expect(out.status == 0, "\(out)")
        let lines = out.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 15, "\(out.stdout)")
        for line in lines {
            #expect(line.hasPrefix("ok    "), "\(line)")
        }
        let controllers = try #require(line(out, "cgroup controllers"), "\(out.stdout)")
        #expect(controllers.contains("cpu cpuset io memory pids delegated to user@"), "\(controllers)")
        #expect(line(out, "cgroup v2") == "ok    cgroup v2: cgroup v2 at /sys/fs/cgroup", "\(out.stdout)")
    }

    @Test(.enabled(if: Harness.ready && Harness.shared.userWithoutRanges != nil,
                   "needs a second test user without /etc/subuid lines (NOOK_TEST_USER_NOSUB, script/test)"))
    func aUserWithoutSubordinateIdsIsToldHowToGetThem() throws {
        let other = try #require(h.userWithoutRanges)
        let out = h.nook(["doctor"], as: other)
        #expect(out.status == 1, "\(out)")
        let uids = try #require(line(out, "subordinate uids"), "\(out.stdout)")
        #expect(uids.hasPrefix("fail  subordinate uids: no range for \(other.name) in /etc/subuid"), "\(uids)")
        #expect(uids.contains("; fix: sudo usermod --add-subuids "), "\(uids)")
        #expect(uids.hasSuffix(" \(other.name)"), "\(uids)")
        #expect(line(out, "subordinate gids")?.hasPrefix("fail  subordinate gids: no range for \(other.name) in /etc/subgid")
            == true, "\(out.stdout)")
    }

    @Test(.enabled(if: Harness.ready && Harness.shared.switching,
                   "needs root to bind a device node over /dev/fuse in a private mount namespace (script/test)"))
    func aDevFuseTheUserCannotOpenIsNamedWithTheFix() throws {
        let user = try #require(h.user)
        // A FUSE device node only root may open, seen as /dev/fuse by this
        // one command: the host's /dev/fuse is not touched.
        let node = h.workspace("fuse") + "/fuse"
        #expect(mknod(node, S_IFCHR | 0o600, dev_t((10 << 8) | 229)) == 0, "mknod: \(errno)")
        let out = h.nook(["doctor"], rootPrefix: ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                                  "mount --bind '\(node)' /dev/fuse && exec \"$@\"", "sh"])
        #expect(out.status == 1, "\(out)")
        let fuse = try #require(line(out, "/dev/fuse"), "\(out)")
        #expect(fuse == "fail  /dev/fuse: /dev/fuse cannot be opened by \(user.name): EACCES (Permission denied) "
            + "(mode 600, owner uid 0): fuse-overlayfs cannot work; fix: sudo chmod 0666 /dev/fuse (fuse3's udev rule "
            + "makes it so); in a container, pass the device", "\(fuse)")
    }

    @Test func noNewuidmapOnPathIsNamedWithThePackage() throws {
        let out = h.nook(["doctor"], env: ["PATH": "/nonexistent-nook-bin"])
        #expect(out.status == 1, "\(out)")
        for helper in ["newuidmap", "newgidmap"] {
            #expect(line(out, helper) == "fail  \(helper): \(helper) is not on PATH (/nonexistent-nook-bin): sandboxes "
                + "map only your own id; fix: sudo apt install uidmap (Fedora, Arch: shadow-utils / shadow)",
                    "\(out.stdout)")
        }
    }

    @Test func aCopyOfNewuidmapWithoutSetuidFirstOnPathIsNamed() throws {
        let bin = h.workspace("bin")
        let copy = bin + "/newuidmap"
        // cp, not a descriptor of this process that other tests' children
        // could inherit (ETXTBSY for whoever runs the copy).
        let cp = h.run(["/bin/cp", "/usr/bin/newuidmap", copy], in: bin, stdin: nil, env: [:], as: nil, timeout: 60)
        try #require(cp.status == 0, "\(cp)")
        chmod(copy, 0o755)
        if let user = h.user, h.switching { chown(copy, user.uid, user.gid) }
        let out = h.nook(["doctor"], env: ["PATH": "\(bin):/usr/bin:/bin"])
        #expect(out.status == 1, "\(out)")
        let helper = try #require(line(out, "newuidmap"))
        #expect(helper.hasPrefix("fail  newuidmap: \(copy) has neither the setuid bit nor the cap_setuid file capability"),
                "\(helper)")
        #expect(helper.contains("fix: sudo chmod u+s \(copy)"), "\(helper)")
        #expect(line(out, "newgidmap")?.hasPrefix("ok    newgidmap: /usr/bin/newgidmap") == true, "\(out.stdout)")
    }

    @Test func jsonListsEveryCheckWithItsStatusAndFix() throws {
        let out = h.nook(["doctor", "--json"])
        #expect(out.status == 0 || out.status == 1, "\(out)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        let checks = try #require(object["checks"] as? [[String: Any]])
        #expect(checks.compactMap { $0["id"] as? String } == [
            "userns", "apparmor", "subuid", "subgid", "newuidmap", "newgidmap", "fuse", "fuse-overlayfs", "overlay",
            "cgroup-v2", "cgroup-controllers", "user-manager", "user-bus", "linger", "runtime-dir",
        ])
        for check in checks {
            let status = check["status"] as? String
            #expect(["ok", "warn", "fail"].contains(status ?? ""), "\(check)")
            #expect((check["fix"] == nil) == (status == "ok"), "a fix exactly when not ok: \(check)")
        }
        let failed = checks.contains { $0["status"] as? String == "fail" }
        #expect(object["ok"] as? Bool == !failed)
        #expect(out.status == (failed ? 1 : 0))
    }

    @Test func doctorHasHelpAndRefusesArguments() {
        let help = h.nook(["doctor", "--help"])
        #expect(help.status == 0 && help.stdout.contains("Usage: nook doctor [OPTIONS]"), "\(help)")
        let extra = h.nook(["doctor", "now"])
        #expect(extra.status == 125 && extra.stderr.contains("doctor: unexpected argument now"), "\(extra)")
    }
}
