import Foundation
import Testing

/// Health checks of detached containers, run by the real monitor as the
/// unprivileged test user: status changes, timeouts, on_unhealthy, the
/// image's Healthcheck and profiles, bad input, and what a check may do.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct HealthCheckTests {
    let h = Harness.shared

    func health(_ f: LifecycleFixture, _ name: String) -> String? {
        (f.state(name)["health"] as? [String: Any])?["status"] as? String
    }

    func checks(_ f: LifecycleFixture, _ name: String) -> [[String: Any]] {
        ((f.state(name)["health"] as? [String: Any])?["log"] as? [[String: Any]]) ?? []
    }

    /// The events kept for `name`, as (action, attributes).
    func events(_ f: LifecycleFixture, _ name: String) -> [(String, [String: String])] {
        let out = f.nook(["events", "--since", "1h", "--until", "0s", "--format", "json", "--filter", "container=\(name)"])
        return out.stdout.split(separator: "\n").compactMap { line in
            guard let e = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let action = e["action"] as? String else { return nil }
            return (action, e["attributes"] as? [String: String] ?? [:])
        }
    }

    @Test func aHealthCheckFlipsAContainerToUnhealthyAndBack() {
        let f = LifecycleFixture()
        f.start(["--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms", "--health-retries", "2", "--",
                 "sh", "-c", "touch /tmp/ok; exec sleep 300"], name: "web")
        #expect(f.eventually(30) { health(f, "web") == "healthy" }, "\(f.state("web"))")
        #expect(f.nook(["ps"]).stdout.contains("(healthy)"))
        #expect(f.nook(["exec", "web", "rm", "/tmp/ok"]).status == 0)
        #expect(f.eventually(30) { health(f, "web") == "unhealthy" }, "\(f.state("web"))")
        let ps = f.nook(["ps", "--format", "json"]).stdout
        #expect(ps.contains("\"health\" : \"unhealthy\"") && ps.contains("(unhealthy)"), "\(ps)")
        let failing = (f.state("web")["health"] as? [String: Any])?["failingStreak"] as? Int ?? 0
        #expect(failing >= 2)
        #expect(checks(f, "web").last?["exitCode"] as? Int == 1)
        #expect(f.nook(["exec", "web", "touch", "/tmp/ok"]).status == 0)
        #expect(f.eventually(30) { health(f, "web") == "healthy" }, "\(f.state("web"))")
        #expect(checks(f, "web").count <= 5, "only the last five are kept")

        let changes = events(f, "web").filter { $0.0 == "health_status" }.map { $0.1["healthStatus"] ?? "" }
        #expect(changes == ["healthy", "unhealthy", "healthy"], "one event per change: \(changes)")
        #expect(f.nook(["stop", "-t", "1", "web"]).status == 0)
        #expect(f.nook(["rm", "web"]).status == 0)
        #expect(f.eventually { f.processes.isEmpty && h.processes(matching: "__health").isEmpty })
    }

    // The monitor keeps logging and passing signals while a check hangs,
    // and a check past its timeout is killed with what it started.
    @Test func aHungCheckIsKilledAtItsTimeoutWhileTheMonitorGoesOn() {
        let f = LifecycleFixture()
        let hang = "sleep 3000 & sleep 3001 # \(f.tag)"
        f.start(["--health-cmd", hang, "--health-interval", "100ms", "--health-timeout", "3s", "--health-retries", "1",
                 "--", "sh", "-c", "trap 'echo got-usr1' USR1; i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.1; done"],
                name: "slow")
        // A check is in flight (its sleeps run in the container) ...
        func sleeps() -> [String] {
            f.sh("ps -u $(id -u) -o pid=,args= | grep -E '^ *[0-9]+ sleep 300[01]$' | awk '{print $1}'").stdout
                .split(separator: "\n").map(String.init)
        }
        #expect(f.eventually(30) { sleeps().count == 2 })
        let first = sleeps()
        if h.userManagerRunning, let pid = first.first {
            // In a cgroup of its own beside the container's, out of its sight.
            let cgroup = f.sh("cat /proc/\(pid)/cgroup").stdout
            #expect(cgroup.range(of: #"\.scope/health/check-[0-9]+\n"#, options: .regularExpression) != nil, "\(cgroup)")
        }
        // ... and meanwhile the log grows and a signal gets through.
        let before = f.nook(["logs", "slow"]).stdout.split(separator: "\n").count
        #expect(f.nook(["kill", "-s", "USR1", "slow"]).status == 0)
        #expect(f.eventually(20) { f.nook(["logs", "slow"]).stdout.split(separator: "\n").count > before + 3 })
        #expect(f.eventually(20) { f.nook(["logs", "slow"]).stdout.contains("got-usr1") })
        // Past the timeout: failed, killed, and nothing of it left.
        #expect(f.eventually(40) { health(f, "slow") == "unhealthy" }, "\(f.state("slow"))")
        let last = checks(f, "slow").last
        #expect(last?["exitCode"] as? Int == -1, "\(String(describing: last))")
        #expect((last?["output"] as? String ?? "").contains("ran past its timeout"), "\(String(describing: last))")
        #expect(f.eventually(20) { f.sh(first.map { "kill -0 \($0) 2>/dev/null || " }.joined() + "exit 1").status != 0 },
                "the timed-out check and its background process are gone: \(first)")
        #expect(f.nook(["rm", "-f", "slow"]).status == 0)
        #expect(f.eventually { f.processes.isEmpty && h.processes(matching: "__health").isEmpty },
                "\(f.processes) \(h.processes(matching: "__health"))")
    }

    // CASES C01, C02, C09, C10: a check joins like exec, with the
    // container's own privileges from nook's record and nothing of nook's.
    @Test func aCheckRunsWithTheContainersPrivilegesAndNothingMore() {
        let f = LifecycleFixture()
        let probe = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; id -u; "
            + "ls /proc/self/fd | tr '\\n' ' '; echo; grep -l -s -e '__heal[t]h' -e '__monito[r]' /proc/[0-9]*/cmdline | wc -l"
        f.start(["--health-cmd", probe, "--health-interval", "1h", "--", "sleep", "300"], name: "priv")
        let check = f.nook(["healthcheck", "run", "priv"])
        #expect(check.status == 0, "\(check)")
        let exec = f.nook(["exec", "priv", "sh", "-c", probe])
        #expect(check.stdout == exec.stdout, "a check has exactly what exec has:\n\(check.stdout)\n\(exec.stdout)")
        #expect(check.stdout.contains("NoNewPrivs:\t1") && check.stdout.contains("Seccomp:\t2"), "\(check.stdout)")
        #expect(check.stdout.contains("CapEff:\t0000000000000000") && check.stdout.contains("CapInh:\t0000000000000000")
            && check.stdout.contains("CapAmb:\t0000000000000000"), "\(check.stdout)")
        #expect(check.stdout.hasSuffix("\n0 1 2 3 \n0\n"),
                "only stdio (and ls's own), and no nook process in sight: \(check.stdout)")
        // The check is nook's record, not anything the container can write.
        let recorded = (f.state("priv")["healthcheck"] as? [String: Any])?["command"] as? [String]
        #expect(recorded == ["/bin/sh", "-c", probe])
        #expect(f.nook(["rm", "-f", "priv"]).status == 0)
    }

    @Test func onUnhealthyKillEndsTheContainerAndRestartStartsItAgain() {
        let f = LifecycleFixture()
        f.start(["--restart", "always", "--health-cmd", "exit 1", "--health-interval", "100ms", "--health-retries", "2",
                 "--health-on-unhealthy", "kill", "--", "sleep", "300"], name: "doomed")
        #expect(f.nook(["wait", "doomed"], timeout: 60).stdout == "137\n")
        let exit = f.state("doomed")["exit"] as? [String: Any]
        #expect((exit?["reason"] as? String ?? "").contains("unhealthy (on_unhealthy = kill)"), "\(String(describing: exit))")
        #expect(f.state("doomed")["restarts"] as? Int == 0, "kill wins over the restart policy")
        #expect(f.nook(["logs", "doomed"]).stderr.contains("killing the container (on_unhealthy = kill)"))

        f.start(["--stop-timeout", "1", "--health-cmd", "test -e /tmp/ok", "--health-interval", "100ms",
                 "--health-retries", "2", "--health-on-unhealthy", "restart", "--",
                 "sh", "-c", "echo run; [ -e once ] || { touch once; sleep 300; }; touch /tmp/ok; exec sleep 300"],
                name: "phoenix")
        // First run: never healthy, so restarted; the next run is healthy.
        #expect(f.eventually(60) { (f.state("phoenix")["restarts"] as? Int ?? 0) >= 1 }, "\(f.state("phoenix"))")
        // The restart is counted before the next run starts (a slow host
        // shows the gap).
        let expected = ["create", "start", "health_status", "stop", "die", "restart", "start", "health_status"]
        #expect(f.eventually(60) { events(f, "phoenix").map(\.0).starts(with: expected) },
                "\(events(f, "phoenix").map(\.0))")
        // A restart starts the health over, and says so as any change.
        func statuses() -> [String] { events(f, "phoenix").filter { $0.0 == "health_status" }.map { $0.1["healthStatus"] ?? "" } }
        #expect(f.eventually(60) { statuses() == ["unhealthy", "starting", "healthy"] }, "\(statuses())")
        #expect(f.eventually(60) { f.nook(["logs", "phoenix"]).stdout.hasPrefix("run\nrun\n") })
        let logs = f.nook(["logs", "phoenix"])
        #expect(logs.stdout.hasPrefix("run\nrun\n") && logs.stderr.contains("restarting the container"), "\(logs)")
        f.nook(["rm", "-f", "doomed", "phoenix"])
        #expect(f.eventually { f.processes.isEmpty })
    }

    // The manual checks made the change, so the monitor's own failures
    // changed nothing and on_unhealthy never acted.
    @Test func onUnhealthyActsWhenAManualCheckMadeTheContainerUnhealthy() {
        let f = LifecycleFixture()
        f.start(["--health-cmd", "exit 1", "--health-interval", "8s", "--health-retries", "1",
                 "--health-on-unhealthy", "kill", "--", "sleep", "300"], name: "manual")
        let run = f.nook(["healthcheck", "run", "manual"])
        #expect(run.status == 1 && run.stderr.contains("it is unhealthy"), "\(run)")
        #expect(f.nook(["wait", "manual"], timeout: 60).stdout == "137\n", "the monitor's next check acts")
        let exit = f.state("manual")["exit"] as? [String: Any]
        #expect((exit?["reason"] as? String ?? "").contains("unhealthy (on_unhealthy = kill)"), "\(String(describing: exit))")
        f.nook(["rm", "-f", "manual"])
    }

    // A check left `sleep` behind in the container, one more each check.
    @Test(.enabled(if: Harness.ready && Harness.shared.userManagerRunning,
                   "a check has a cgroup of its own only where the container has one (a systemd user manager)"))
    func whatACheckLeavesRunningIsEndedWithItAndItsCgroupGoes() {
        let f = LifecycleFixture()
        f.start(["--health-cmd", "sleep 3007 & echo forked", "--health-interval", "100ms", "--", "sleep", "300"],
                name: "leaky")
        #expect(f.eventually(60) { checks(f, "leaky").count >= 5 }, "\(f.state("leaky"))")
        #expect(checks(f, "leaky").allSatisfy { $0["exitCode"] as? Int == 0 && $0["output"] as? String == "forked\n" },
                "\(checks(f, "leaky"))")
        let left = f.sh("ps -u $(id -u) -o args= | grep -c '^sleep 3007$'").stdout
        #expect((Int(left.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 99) <= 1,
                "at most the one of the check in flight: \(left)")
        if let leaf = f.state("leaky")["cgroup"] as? String {
            let dir = (leaf as NSString).deletingLastPathComponent + "/health"
            let kept = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("check-") }
            #expect(kept.count <= 1, "each check's cgroup goes with it: \(kept)")
        }
        #expect(f.nook(["rm", "-f", "leaky"]).status == 0)
    }

    // Both used the one `health` cgroup, and a manual check's timeout
    // killed the monitor's check in flight (or the other way round).
    @Test func aCheckPastItsTimeoutEndsOnlyItself() {
        let f = LifecycleFixture()
        f.start(["--health-cmd", "sleep 3008", "--health-interval", "100ms", "--health-timeout", "2s",
                 "--health-retries", "1000", "--", "sleep", "300"], name: "twice")
        #expect(f.eventually(30) { f.sh("ps -u $(id -u) -o args= | grep -q '^sleep 3008$'").status == 0 },
                "the monitor's check is in flight")
        let manual = f.nook(["healthcheck", "run", "twice"], timeout: 60)
        #expect(manual.status == 1 && manual.stdout.contains("ran past its timeout"), "\(manual)")
        #expect(f.eventually(30) { checks(f, "twice").count >= 4 })
        let codes = checks(f, "twice").map { $0["exitCode"] as? Int ?? 0 }
        #expect(codes.allSatisfy { $0 == -1 }, "each check ran until its own timeout: \(checks(f, "twice"))")
        #expect(f.nook(["rm", "-f", "twice"]).status == 0)
    }

    // `[ ... ]` is the shell's test, as with docker's --health-cmd; a
    // long output is cut with one line saying so.
    @Test func aBracketedShellTestIsAShellCommandAndCutOutputIsMarkedOnce() {
        let f = LifecycleFixture()
        f.start(["--health-cmd", "[ -e /etc/hostname ] && yes | head -c 10000", "--health-interval", "1h", "--",
                 "sleep", "300"], name: "loud")
        let recorded = (f.state("loud")["healthcheck"] as? [String: Any])?["command"] as? [String]
        #expect(recorded == ["/bin/sh", "-c", "[ -e /etc/hostname ] && yes | head -c 10000"])
        let run = f.nook(["healthcheck", "run", "loud"])
        let cut = String(repeating: "y\n", count: 2048) + "[output cut at 4096 bytes]"
        #expect(run.status == 0 && run.stdout == cut + "\n", "\(run.stdout.suffix(100))")
        #expect(checks(f, "loud").last?["output"] as? String == cut)
        #expect(f.nook(["rm", "-f", "loud"]).status == 0)
    }

    @Test func badHealthInputIsRefusedNamingTheFlagOrKeyAndTheFix() {
        let f = LifecycleFixture()
        let cases: [([String], String)] = [
            (["--health-cmd", "true", "--health-interval", "-5s"], "--health-interval -5s: not a duration"),
            (["--health-cmd", "true", "--health-timeout", "0s"], "--health-timeout 0s: out of range"),
            (["--health-cmd", "true", "--health-retries", "0"], "--health-retries 0: not a number of retries"),
            (["--health-cmd", ""], "--health-cmd is empty"),
            (["--health-cmd", "[\"CMD-SHELL\"]"], "[\"CMD-SHELL\"] without a command"),
            (["--health-cmd", "true", "--health-on-unhealthy", "reboot"], "--health-on-unhealthy reboot: unknown value"),
            (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck and --health-cmd do not go together"),
            (["--health-interval", "5s"], "--health-interval: there is no health check for its interval to apply to"),
        ]
        for (flags, says) in cases {
            let out = f.nook(["run", "-d"] + flags + ["--", "sleep", "1"])
            #expect(out.status == 125 && out.stderr.contains(says), "\(flags): \(out)")
        }
        let foreground = f.nook(["run", "--health-cmd", "true", "--", "true"])
        #expect(foreground.status == 125 && foreground.stderr.contains("--health-cmd applies to a detached container")
            && foreground.stderr.contains("add -d"), "\(foreground)")
        h.write(f.ws + "/bad.toml", "[health]\ncommand = \"true\"\ninterval = \"soon\"\n")
        let profile = f.nook(["run", "-d", "--profile", "./bad.toml", "--", "sleep", "1"])
        #expect(profile.status == 125 && profile.stderr.contains("bad.toml:3:12")
            && profile.stderr.contains("health.interval") && profile.stderr.contains("\"soon\" is not a duration"),
            "\(profile)")
        #expect(f.containerDirectories.isEmpty, "nothing was made")

        // A check whose program does not exist fails, saying where it came from and the fix.
        f.start(["--health-cmd", "[\"/no/such/probe\"]", "--health-interval", "1h", "--", "sleep", "300"], name: "typo")
        let run = f.nook(["healthcheck", "run", "typo"])
        #expect(run.status == 1, "\(run)")
        #expect(run.stdout.contains("/no/such/probe") && run.stdout.contains("from --health-cmd")
            && run.stdout.contains("--no-healthcheck"), "\(run)")
        #expect(checks(f, "typo").last?["exitCode"] as? Int == 127)
        let none = f.nook(["healthcheck", "run", "nosuch"])
        #expect(none.status == 125 && none.stderr.contains("no container nosuch"), "\(none)")
        f.start(["--", "sleep", "300"], name: "plain")
        let unchecked = f.nook(["healthcheck", "run", "plain"])
        #expect(unchecked.status == 125 && unchecked.stderr.contains("has no health check"), "\(unchecked)")
        f.nook(["rm", "-f", "typo", "plain"])
    }

    @Test func aProfilesHealthSectionIsRunAndFlagsReplaceItKeyByKey() {
        let f = LifecycleFixture()
        h.write(f.ws + "/svc.toml", """
            [health]
            command = ["sh", "-c", "echo from-profile; test -e /tmp/ready"]
            interval = "150ms"
            retries = 1
            """)
        f.start(["--profile", "./svc.toml", "--", "sh", "-c", "touch /tmp/ready; exec sleep 300"], name: "svc")
        #expect(f.eventually(30) { health(f, "svc") == "healthy" })
        #expect((checks(f, "svc").last?["output"] as? String) == "from-profile\n")
        let check = f.state("svc")["healthcheck"] as? [String: Any]
        #expect(check?["retries"] as? Int == 1 && (check?["source"] as? String ?? "").contains("svc.toml:2:11"),
                "\(String(describing: check))")
        f.start(["--profile", "./svc.toml", "--health-retries", "4", "--", "sleep", "300"], name: "svc2")
        let replaced = f.state("svc2")["healthcheck"] as? [String: Any]
        #expect(replaced?["retries"] as? Int == 4 && replaced?["interval"] as? Double == 0.15)
        f.start(["--profile", "./svc.toml", "--no-healthcheck", "--", "sleep", "300"], name: "svc3")
        #expect(f.state("svc3")["healthcheck"] == nil && f.state("svc3")["health"] == nil)
        f.nook(["rm", "-f", "svc", "svc2", "svc3"])
    }

    @Test func anImagesHealthcheckIsRunAndNoHealthcheckTurnsItOff() {
        let f = LifecycleFixture()
        let img = ImageFixture()
        let tar = img.ws + "/bb.tar"
        let built = img.sh("""
            set -e
            mkdir -p bb/bin bb/etc bb/tmp
            cp /bin/busybox bb/bin/
            for c in sh test touch sleep echo; do ln -sf busybox bb/bin/$c; done
            tar --owner=0 --group=0 --numeric-owner -C bb -cf \(tar) .
            """)
        #expect(built.status == 0, "\(built)")
        let spec = """
            {"name": "localhost/checked:1", "config": {"Cmd": ["sh", "-c", "touch /tmp/up; exec sleep 300"],
             "Healthcheck": {"Test": ["CMD-SHELL", "test -e /tmp/up && echo up"], "Interval": 200000000,
             "Timeout": 5000000000, "Retries": 2}}, "layers": [{"tar": "\(tar)"}]}
            """
        #expect(img.nook(["image", "load", img.make("checked", spec)]).status == 0)
        var env = img.env
        env["XDG_RUNTIME_DIR"] = f.runtime
        let run = h.nook(["run", "-d", "--name", "img", "localhost/checked:1", "--"], in: f.ws, env: env)
        #expect(run.status == 0, "\(run)")
        #expect(f.eventually(30) { health(f, "img") == "healthy" }, "\(f.state("img"))")
        let check = f.state("img")["healthcheck"] as? [String: Any]
        #expect(check?["command"] as? [String] == ["/bin/sh", "-c", "test -e /tmp/up && echo up"])
        #expect(check?["source"] as? String == "the image's Healthcheck" && check?["timeout"] as? Double == 5)
        let off = h.nook(["run", "-d", "--name", "img2", "--no-healthcheck", "localhost/checked:1", "--"], in: f.ws, env: env)
        #expect(off.status == 0, "\(off)")
        #expect(f.state("img2")["healthcheck"] == nil)
        let dry = h.nook(["run", "-d", "--dry-run", "localhost/checked:1", "--"], in: f.ws, env: env)
        #expect(dry.stdout.contains("org.nook.health") && dry.stdout.contains("the image's Healthcheck"), "\(dry)")
        f.nook(["rm", "-f", "img", "img2"])

        // A broken Healthcheck stops a detached container (with the fix),
        // never a run in the foreground, where no check runs: a fresh try
        // could not run such an image at all, and --no-healthcheck was
        // refused without -d.
        let broken = """
            {"name": "localhost/broken-check:1", "config": {"Cmd": ["echo", "ran"],
             "Healthcheck": {"Test": ["CMD", "true"], "Interval": -5}}, "layers": [{"tar": "\(tar)"}]}
            """
        #expect(img.nook(["image", "load", img.make("broken", broken)]).status == 0)
        let foreground = h.nook(["run", "localhost/broken-check:1", "--"], in: f.ws, env: env)
        #expect(foreground.status == 0 && foreground.stdout == "ran\n", "\(foreground)")
        let quiet = h.nook(["run", "--no-healthcheck", "localhost/broken-check:1", "--"], in: f.ws, env: env)
        #expect(quiet.status == 0 && quiet.stdout == "ran\n", "\(quiet)")
        let detached = h.nook(["run", "-d", "localhost/broken-check:1", "--"], in: f.ws, env: env)
        #expect(detached.status == 125 && detached.stderr.contains("Interval is -5 ns")
            && detached.stderr.contains("--no-healthcheck"), "\(detached)")
    }
}

/// `nook events`: the lifecycle as tools that watch containers see it.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct EventTests {
    let h = Harness.shared

    func json(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func theLifecycleIsReplayedInOrderAndFilteredAndFollowed() {
        let f = LifecycleFixture()
        // A follower (replaying what was kept first, so it misses nothing)
        // sees it all as it happens.
        f.sh("$NOOK events --since 1h --format json --filter container=ev > follow.json 2>&1 & echo $! > follow.pid")
        defer { f.sh("kill $(cat follow.pid)") }
        let id = f.start(["--", "sh", "-c", "trap 'echo usr1' USR1; while sleep 0.1; do :; done"], name: "ev")
        f.start(["--", "true"], name: "other")
        #expect(f.nook(["kill", "-s", "USR1", "ev"]).status == 0)
        #expect(f.nook(["stop", "-t", "1", "ev"]).status == 0)
        #expect(f.nook(["rm", "ev"]).status == 0)

        let kept = json(f.nook(["events", "--since", "1h", "--until", "0s", "--format", "json",
                                "--filter", "container=\(id.prefix(8))"]).stdout)
        #expect(kept.map { $0["action"] as? String ?? "" } == ["create", "start", "kill", "stop", "die", "remove"],
                "\(kept)")
        let die = kept.first { $0["action"] as? String == "die" }
        #expect((die?["attributes"] as? [String: String])?["exitCode"] == "143", "\(String(describing: die))")
        #expect(kept.allSatisfy { $0["id"] as? String == id && $0["name"] as? String == "ev" && $0["type"] as? String == "container" })
        #expect(f.eventually(20) {
            json((try? String(contentsOfFile: f.ws + "/follow.json", encoding: .utf8)) ?? "").map { $0["action"] as? String ?? "" }
                == ["create", "start", "kill", "stop", "die", "remove"]
        }, "\((try? String(contentsOfFile: f.ws + "/follow.json", encoding: .utf8)) ?? "")")

        let text = f.nook(["events", "--since", "1h", "--until", "0s", "--filter", "event=die"]).stdout
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2 && lines.allSatisfy { $0.contains(" container die ") }, "\(text)")
        #expect(text.contains("(name=ev, image=host, exitCode=143, reason=") && text.contains("signal=15"), "\(text)")
        let bad = f.nook(["events", "--filter", "event=explode"])
        #expect(bad.status == 125 && bad.stderr.contains("no such event"), "\(bad)")
        let since = f.nook(["events", "--since", "yesterday"])
        #expect(since.status == 125 && since.stderr.contains("not a duration or a time"), "\(since)")
        // A past --until alone prints the kept events up to it.
        let untilOnly = json(f.nook(["events", "--until", "0s", "--format", "json", "--filter", "container=\(id.prefix(8))"]).stdout)
        #expect(untilOnly.map { $0["action"] as? String ?? "" } == ["create", "start", "kill", "stop", "die", "remove"],
                "\(untilOnly)")
        // RFC 3339 times with an offset; nothing out of range.
        let offset = f.nook(["events", "--since", "2000-01-01T01:00:00+01:00", "--until", "2000-01-01T01:00:00+01:00"])
        #expect(offset.status == 0 && offset.stdout.isEmpty, "\(offset)")
        for junk in ["2026-13-45T99:99:99Z", "2026-12-04T22:24:06xyzZ"] {
            let out = f.nook(["events", "--since", junk, "--until", "0s"])
            #expect(out.status == 125 && out.stderr.contains("--since \(junk): not a duration or a time"), "\(out)")
        }
        f.nook(["rm", "-f", "other"])
    }

    @Test func manyContainersAtOnceWriteWholeEventsEach() {
        let f = LifecycleFixture()
        let started = f.sh((0..<10).map { "$NOOK run -d --rm --name m\($0) -- true >/dev/null &" }.joined(separator: "\n")
            + "\nwait", timeout: 300)
        #expect(started.status == 0, "\(started)")
        #expect(f.eventually(60) { f.containerDirectories.isEmpty })
        let raw = (try? String(contentsOfFile: f.runtime + "/nook/events/log", encoding: .utf8)) ?? ""
        let events = json(raw)
        #expect(events.count == raw.split(separator: "\n").count, "every line is one whole event")
        for action in ["create", "start", "die", "remove"] {
            #expect(events.filter { $0["action"] as? String == action }.count == 10, "\(action): \(raw)")
        }
    }
}
