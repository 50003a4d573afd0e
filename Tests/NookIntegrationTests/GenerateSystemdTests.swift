import Foundation
import Testing

/// `nook generate systemd`: the unit's text, and the unit run for real by
/// the test user's systemd manager: started (Type=notify), restarted after
/// a crash, stopped.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct GenerateSystemdTests {
    let h = Harness.shared

    /// Runs `script` with the manager's runtime directory, for systemctl.
    func manager(_ f: LifecycleFixture, _ script: String) -> Outcome {
        f.sh("export XDG_RUNTIME_DIR=/run/user/$(id -u); " + script)
    }

    /// Puts the unit where the manager reads transient units from.
    func install(_ f: LifecycleFixture, _ unit: String) {
        let installed = manager(f, "mkdir -p $XDG_RUNTIME_DIR/systemd/user && cp \(unit) $XDG_RUNTIME_DIR/systemd/user/")
        #expect(installed.status == 0, "\(installed)")
    }

    func uninstall(_ f: LifecycleFixture, _ unit: String) {
        manager(f, "systemctl --user stop \(unit); rm -f $XDG_RUNTIME_DIR/systemd/user/\(unit); "
            + "systemctl --user reset-failed \(unit) 2>/dev/null; true")
    }

    /// A property of the unit, as systemctl show gives it.
    func property(_ f: LifecycleFixture, _ unit: String, _ name: String) -> String {
        manager(f, "systemctl --user show -p \(name) --value \(unit)").stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func theUnitTextRunsTheContainerAsItWasMade() throws {
        let f = LifecycleFixture()
        f.start(["--restart", "on-failure:2", "--stop-timeout", "7", "--health-cmd", "true", "--env", "GREETING=100% hi",
                 "--", "sh", "-c", "echo $GREETING; sleep 300"], name: "unit")
        let out = f.nook(["generate", "systemd", "unit"])
        #expect(out.status == 0, "\(out)")
        let lines = out.stdout.split(separator: "\n").map(String.init)
        for line in ["Type=notify", "NotifyAccess=main", "Delegate=no", "WorkingDirectory=\(f.ws)",
                     "Environment=XDG_RUNTIME_DIR=\(f.runtime)", "ExecStartPre=-\(h.binary) rm -f unit",
                     "ExecStart=\(h.binary) run -d --name unit \"--env=GREETING=100%% hi\" --stop-timeout=7 "
                        + "--health-cmd=true -- sh -c \"echo $$GREETING; sleep 300\"",
                     "ExecStop=\(h.binary) stop -t 7 unit", "ExecStopPost=-\(h.binary) rm -f unit",
                     "Restart=on-failure", "TimeoutStopSec=42", "WantedBy=default.target"] {
            #expect(lines.contains(line), "\(line)\n\(out.stdout)")
        }
        let written = f.nook(["generate", "systemd", "--files", "unit"])
        #expect(written.stdout == f.ws + "/nook-unit.service\n", "\(written)")
        #expect(try String(contentsOfFile: f.ws + "/nook-unit.service", encoding: .utf8) == out.stdout)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let verify = f.sh("systemd-analyze --user verify --man=no nook-unit.service")
            #expect(verify.status == 0 && verify.stderr.isEmpty, "\(verify)")
        }
        let unknown = f.nook(["generate", "systemd", "nosuch"])
        #expect(unknown.status == 125 && unknown.stderr.contains("no container nosuch"), "\(unknown)")
        let what = f.nook(["generate", "docker-compose", "unit"])
        #expect(what.status == 125 && what.stderr.contains("say what to generate: systemd"), "\(what)")
        f.nook(["rm", "-f", "unit"])
    }

    /// WorkingDirectory= has no quoting: a directory whose name holds a
    /// line break wrote lines of its own into the unit (an
    /// ExecStartPost= that systemd ran), and one ending in a backslash
    /// swallowed the next line. Such a container gets no unit.
    @Test(arguments: ["evil\nExecStartPost=touch PWNED", "trail\\", "tab\there"])
    func aDirectoryAUnitCannotHoldIsRefusedNotWritten(_ directory: String) {
        let f = LifecycleFixture()
        let dir = f.ws + "/" + directory
        #expect((try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)) != nil)
        let out = h.nook(["run", "-d", "--name", "odd", "--", "sleep", "300"], in: dir, env: f.env)
        #expect(out.status == 0, "\(out)")
        let unit = f.nook(["generate", "systemd", "--files", "odd"])
        #expect(unit.status == 125, "\(unit)")
        #expect(unit.stderr.contains("which a unit cannot hold as its WorkingDirectory="), "\(unit)")
        #expect(!FileManager.default.fileExists(atPath: f.ws + "/nook-odd.service"), "no unit was written")
        f.nook(["rm", "-f", "odd"])
    }

    @Test func aMissingDirectoryForTheUnitIsNamed() {
        let f = LifecycleFixture()
        f.start(["--", "sleep", "300"], name: "dirless")
        let out = f.nook(["generate", "systemd", "--files", "--dir", f.ws + "/nosuch", "dirless"])
        #expect(out.status == 125 && out.stderr.contains("write the unit into \(f.ws)/nosuch: ENOENT"), "\(out)")
        #expect(out.stderr.contains("mkdir -p"), "\(out)")
        f.nook(["rm", "-f", "dirless"])
    }

    @Test(.enabled(if: Harness.shared.userManagerRunning,
                   "needs a systemd user manager for the test user (script/user-manager start nooktest)"))
    func theUsersManagerStartsRestartsAndStopsTheContainer() throws {
        let f = LifecycleFixture()
        let name = "sd" + f.tag
        let unit = "nook-\(name).service"
        f.start(["--health-cmd", "true", "--health-interval", "200ms", "--",
                 "sh", "-c", "echo up-\(f.tag); sleep 300"], name: name)
        #expect(f.nook(["generate", "systemd", "--files", name]).status == 0)
        #expect(f.nook(["rm", "-f", name]).status == 0)
        install(f, unit)
        defer { uninstall(f, unit) }
        func show(_ name: String) -> String { property(f, unit, name) }
        func monitorPid() -> Int? { (f.state(name)["monitor"] as? [String: Any])?["pid"] as? Int }

        // Type=notify: start returns once the command runs, and the
        // container's monitor is the service's main process.
        let start = manager(f, "systemctl --user start \(unit)")
        #expect(start.status == 0, "\(start)\n\(manager(f, "journalctl --user -u \(unit) --no-pager | tail -20").stdout)")
        #expect(show("ActiveState") == "active" && show("SubState") == "running")
        #expect(f.state(name)["status"] as? String == "running")
        #expect(show("MainPID") == monitorPid().map(String.init), "MainPID \(show("MainPID")), \(f.state(name))")
        #expect(show("StatusText") == "container \(name) runs")
        #expect(f.eventually { f.nook(["logs", name]).stdout == "up-\(f.tag)\n" })
        #expect(f.eventually(30) { (f.state(name)["health"] as? [String: Any])?["status"] as? String == "healthy" })
        let firstID = f.state(name)["id"] as? String

        // The command dies by itself: the monitor exits with its status and
        // the unit starts a new container (Restart=on-failure).
        let initPid = try #require((f.state(name)["initProcess"] as? [String: Any])?["pid"] as? Int)
        #expect(f.sh("pkill -9 -P \(initPid)").status == 0)
        #expect(f.eventually(60) { show("NRestarts") == "1" && show("ActiveState") == "active" },
                "\(show("NRestarts")) \(show("ActiveState"))")
        #expect(f.eventually(30) {
            f.state(name)["status"] as? String == "running" && f.state(name)["id"] as? String != firstID
        }, "a new container of the same name: \(f.state(name))")
        #expect(show("MainPID") == monitorPid().map(String.init))

        // stop: nook stop, then the container is removed; nothing is left.
        let stop = manager(f, "systemctl --user stop \(unit)")
        #expect(stop.status == 0, "\(stop)")
        #expect(show("ActiveState") == "inactive" && show("Result") == "success", "\(show("Result"))")
        #expect(f.eventually { f.containerDirectories.isEmpty && f.names.isEmpty }, "\(f.containerDirectories)")
        #expect(f.eventually { h.processes(matching: "up-\(f.tag)").isEmpty }, "\(h.processes(matching: f.tag))")
        let actions = f.nook(["events", "--since", "1h", "--until", "0s", "--filter", "container=\(name)"]).stdout
        #expect(actions.contains(" container stop ") && actions.contains(" container remove "), "\(actions)")
    }
    /// on-failure:2 became Restart=on-failure, and the unit restarted a
    /// failing container for ever: now the first start and two more.
    @Test(.enabled(if: Harness.shared.userManagerRunning,
                   "needs a systemd user manager for the test user (script/user-manager start nooktest)"))
    func aCountedRestartPolicyStopsRestartingAfterItsCount() throws {
        let f = LifecycleFixture()
        let name = "sc" + f.tag
        let unit = "nook-\(name).service"
        f.start(["--restart", "on-failure:2", "--", "sh", "-c", "sleep 0.3; exit 3"], name: name)
        #expect(f.nook(["generate", "systemd", "--files", "--restart-sec", "0", name]).status == 0)
        #expect(f.nook(["rm", "-f", name]).status == 0)
        install(f, unit)
        defer { uninstall(f, unit) }
        func show(_ name: String) -> String { property(f, unit, name) }
        func starts() -> Int {
            f.nook(["events", "--since", "1h", "--until", "0s", "--filter", "container=\(name)",
                    "--filter", "event=start"]).stdout.split(separator: "\n").count
        }
        let before = starts()  // the container made here to generate from
        _ = manager(f, "systemctl --user start \(unit)")
        #expect(f.eventually(60) { show("ActiveState") == "failed" }, "\(show("ActiveState")) \(show("NRestarts"))")
        usleep(1_500_000)
        #expect(starts() - before == 3, "the first run and two restarts")
        #expect(show("ActiveState") == "failed", "it stays failed")
    }
}
