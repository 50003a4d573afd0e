import Foundation
import Testing

/// `nook run` on the built-in default, as an unprivileged user with
/// subordinate ids, on the real kernel and the real newuidmap.
@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct MainJobTests {
    let h = Harness.shared

    /// Output lost to a full disk was once a silent exit 0 (an empty
    /// `nook image ls` that a script took for "no images").
    // In its own network namespace a sandbox binds any port, as docker's
    // and podman's containers do: a server on port 22 or 80 failed with
    // EACCES unless --userns root (a fresh try, the README's sshd example).
    @Test func aSandboxWithItsOwnNetworkBindsLowPorts() {
        let out = h.nook(["run", "--", "python3", "-c",
                          "import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound')"])
        #expect(out.status == 0 && out.stdout == "bound\n", "\(out)")
    }

    @Test func outputThatCannotBeWrittenIsAFailure() {
        let full = h.sh("$NOOK version > /dev/full; echo \"status $?\" >&2", env: ["NOOK": h.binary])
        #expect(full.stderr.contains("nook: could not write to standard output: ENOSPC"), "\(full)")
        #expect(full.stderr.hasSuffix("status 125\n"), "\(full)")
        let closed = h.sh("$NOOK --help | true; echo \"status ${PIPESTATUS:-x}\" >&2", env: ["NOOK": h.binary])
        #expect(!closed.stderr.contains("could not write"), "a reader that left is no failure: \(closed)")
    }

    /// Run from the home, nook said all of it was bound read-write, and
    /// every write failed with EROFS (the home's read-only tmpfs was
    /// remounted last, on top of the bind).
    @Test(.enabled(if: Harness.shared.switching, "writes into the test user's home"))
    func runFromTheHomeItIsWritableAsSaid() throws {
        let user = try #require(h.user)
        let name = ".nook-home-write-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: user.home + "/" + name) }
        let out = h.nook(["run", "--", "touch", name], in: user.home)
        #expect(out.status == 0 && out.stderr.contains("bound read-write"), "\(out)")
        #expect(FileManager.default.fileExists(atPath: user.home + "/" + name))
    }

    @Test func theUidMapShowsTheCallersIdAndTheWholeSubordinateRange() throws {
        let user = try #require(h.user)
        let out = h.nook(["run", "--", "cat", "/proc/self/uid_map"])
        #expect(out.status == 0, "\(out)")
        let lines = out.stdout.split(separator: "\n").map { $0.split(separator: " ").compactMap { UInt64($0) } }
        #expect(lines.contains([UInt64(user.uid), UInt64(user.uid), 1]), "\(out.stdout)")
        let total = lines.reduce(0) { $0 + ($1.count == 3 ? $1[2] : 0) }
        let ranges = subordinateCount(user.name, "/etc/subuid")
        #expect(ranges > 0, "the test user has no /etc/subuid range")
        #expect(total == ranges + 1, "mapped \(total) ids, the user owns \(ranges) plus its own: \(out.stdout)")
    }

    @Test func keepIDIsTheDefaultAndRootModeMakesTheCallerUidZero() throws {
        let user = try #require(h.user)
        let keep = h.nook(["run", "--", "id", "-u"])
        #expect(keep.status == 0 && keep.stdout == "\(user.uid)\n", "\(keep)")
        let root = h.nook(["run", "--userns", "root", "--", "id", "-u"])
        #expect(root.status == 0 && root.stdout == "0\n", "\(root)")
        let gid = h.nook(["run", "--", "id", "-g"])
        #expect(gid.stdout == "\(user.gid)\n", "\(gid)")
    }

    @Test func verboseSaysWhichRangesWereUsedAndWhereTheyCameFrom() {
        let out = h.nook(["run", "--verbose", "--", "true"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stderr.contains("uid map"), "\(out.stderr)")
        #expect(out.stderr.contains("libsubid"), "\(out.stderr)")
    }

    @Test func aSmallCProjectBuildsAndItsOutputsBelongToTheUser() throws {
        let user = try #require(h.user)
        let ws = h.workspace("build")
        h.write(ws + "/hello.c", "#include <stdio.h>\nint main(void) { puts(\"hello from the sandbox\"); return 0; }\n")
        h.write(ws + "/Makefile", "hello: hello.c\n\tcc -o hello hello.c\n")
        let build = h.nook(["run", "--", "make"], in: ws)
        #expect(build.status == 0, "\(build)")
        var sb = stat()
        #expect(stat(ws + "/hello", &sb) == 0)
        #expect(sb.st_uid == user.uid && sb.st_gid == user.gid, "owner \(sb.st_uid):\(sb.st_gid)")
        let run = h.nook(["run", "--", "./hello"], in: ws)
        #expect(run.stdout == "hello from the sandbox\n", "\(run)")
    }

    @Test func writesToHomeAndUsrFailWhileTheWorkspaceIsWritable() throws {
        let user = try #require(h.user)
        let ws = h.workspace()
        let out = h.nook(["run", "--", "sh", "-c",
                          "touch \"$HOME/x\" 2>/dev/null && echo home-writable; touch /usr/x 2>/dev/null && echo usr-writable;"
                          + " touch /etc/x 2>/dev/null && echo etc-writable; ls -A \"$HOME\"; touch ok && echo ws-ok"], in: ws)
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "ws-ok\n", "\(out)")
        #expect(!FileManager.default.fileExists(atPath: user.home + "/x"))
    }

    @Test func theUsersHomeIsHiddenBehindAnEmptyTmpfs() throws {
        let user = try #require(h.user)
        let secret = user.home + "/.nook-test-secret"
        if h.switching { h.write(secret, "secret") }
        defer { if h.switching { try? FileManager.default.removeItem(atPath: secret) } }
        let out = h.nook(["run", "--", "sh", "-c", "ls -A \"$HOME\"; cat \"$HOME/.nook-test-secret\" 2>&1"])
        #expect(!out.stdout.contains("secret\n") && !out.stdout.hasPrefix("secret"), "\(out)")
    }

    @Test func theNetworkIsOnlyAnUpLoopback() {
        let out = h.nook(["run", "--", "sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"])
        #expect(out.stdout == "lo\n", "\(out)")
        let curl = h.nook(["run", "--", "curl", "-sS", "--max-time", "5", "http://192.0.2.1/"])
        #expect(curl.status != 0)
        #expect(curl.stderr.contains("unreachable") || curl.stderr.contains("Couldn't connect"), "\(curl)")
        let lo = h.nook(["run", "--", "python3", "-c",
                         "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
                         + "c=socket.create_connection(s.getsockname()); print('loopback up')"])
        #expect(lo.stdout == "loopback up\n", "\(lo)")
    }

    @Test func aServerOnTheHostLoopbackCannotBeReachedWithNetworkNone() throws {
        let server = try Socket.listen()
        defer { server.close() }
        let out = h.nook(["run", "--", "python3", "-c",
                          "import socket,sys\ntry:\n socket.create_connection(('127.0.0.1',\(server.port)),timeout=3)\n print('connected')\n"
                          + "except OSError as e:\n print('refused', e.errno)"])
        #expect(out.stdout.hasPrefix("refused"), "\(out)")
        let host = h.nook(["run", "--network", "host", "--", "python3", "-c",
                           "import socket; socket.create_connection(('127.0.0.1',\(server.port)),timeout=3); print('connected')"])
        #expect(host.stdout == "connected\n", "\(host)")
    }

    @Test func hostnameSetsTheUTSNameInsideOnly() {
        let out = h.nook(["run", "--hostname", "box-1", "--", "hostname"])
        #expect(out.stdout == "box-1\n", "\(out)")
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        #expect(String(cString: buf) != "box-1")
    }

    @Test(arguments: [
        ("exit 0", 0), ("exit 3", 3), ("exit 255", 255), ("kill -SEGV $$", 139), ("kill -TERM $$", 143),
        ("kill -KILL $$", 137), ("(exit 7) & sleep 0.1; kill -INT $$", 130),
    ])
    func theExitStatusIsThePayloadsOr128PlusTheSignal(script: String, expected: Int32) {
        let out = h.nook(["run", "--", "sh", "-c", script])
        #expect(out.status == expected, "\(script): \(out)")
    }

    @Test func aMissingCommandExits127AndAnUnexecutableOne126() {
        let missing = h.nook(["run", "--", "no-such-command-xyz"])
        #expect(missing.status == 127, "\(missing)")
        #expect(missing.stderr == "nook: no-such-command-xyz: command not found in PATH inside the sandbox\n",
                "\(missing)")
        let ws = h.workspace()
        h.write(ws + "/data.txt", "not a program\n", mode: 0o644)
        let notExec = h.nook(["run", "--", "./data.txt"], in: ws)
        #expect(notExec.status == 126, "\(notExec)")
        #expect(notExec.stderr.contains("./data.txt: cannot execute: EACCES"), "\(notExec)")
        #expect(notExec.stderr.contains("hint: ./data.txt is not executable by uid"), "\(notExec)")
    }

    @Test func nooksOwnFailuresExit125WithTheReason() {
        let out = h.nook(["run", "--bind", "/nonexistent-nook-src:/x", "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("/nonexistent-nook-src: no such file or directory on the host"), "\(out)")
        let flag = h.nook(["run", "--networks", "none", "--", "true"])
        #expect(flag.status == 125)
        #expect(flag.stderr.contains("unknown option --networks") && flag.stderr.contains("did you mean --network?"),
                "\(flag)")
    }

    @Test func zombiesLeftByThePayloadAreReaped() {
        let out = h.nook(["run", "--", "sh", "-c",
                          "for i in $(seq 100); do (sleep 0.01 &); done; sleep 1; ps -eo stat= | grep -c Z; true"])
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout == "0\n", "zombies: \(out)")
    }

    @Test func nothingIsLeftRunningAfterAnyRun() {
        let marker = "6\(Int.random(in: 100...999)).25"
        h.nook(["run", "--", "sh", "-c", "sleep \(marker) & sleep \(marker) & (setsid sleep \(marker) &); exit 0"])
        #expect(h.processes(matching: "sleep \(marker)") == [])
    }

    @Test func pipesPassThroughWithEOF() {
        let cat = h.nook(["run", "--", "cat"], stdin: "a\nb\n")
        #expect(cat.stdout == "a\nb\n" && cat.status == 0, "\(cat)")
        let wc = h.nook(["run", "--", "wc", "-l"], stdin: "a\nb\n")
        #expect(wc.stdout.trimmingCharacters(in: .whitespaces) == "2\n", "\(wc)")
        let empty = h.nook(["run", "--", "cat"])
        #expect(empty.stdout == "" && empty.status == 0)
        let head = h.sh("$NOOK run -- yes | head -1; echo \"nook=${PIPESTATUS:-$?}\"")
        #expect(head.stdout.hasPrefix("y\n"), "\(head)")
    }

    @Test func largeDataPassesIntact() {
        let ws = h.workspace()
        let out = h.sh("head -c 20000000 /dev/urandom > big; $NOOK run -- cat < big | cmp - big && echo same", in: ws,
                       timeout: 120)
        #expect(out.stdout == "same\n", "\(out)")
    }

    @Test func bindsAreReadWriteOrReadOnlyAsAsked() {
        let ws = h.workspace()
        let data = h.workspace("data")
        h.write(data + "/in.txt", "input\n")
        let rw = h.nook(["run", "--bind", "\(data):/data", "--", "sh", "-c", "cat /data/in.txt; echo out > /data/out.txt"],
                        in: ws)
        #expect(rw.status == 0 && rw.stdout == "input\n", "\(rw)")
        #expect(FileManager.default.fileExists(atPath: data + "/out.txt"))
        let ro = h.nook(["run", "--bind", "\(data):/data:ro", "--", "sh", "-c", "echo x > /data/x"], in: ws)
        #expect(ro.status != 0)
        #expect(ro.stderr.contains("Read-only"), "\(ro)")
    }

    @Test func tmpfsWorkdirEnvAndEnvFileApply() {
        let ws = h.workspace()
        h.write(ws + "/vars", "# comment\nFROM_FILE=one\n\nSPACED=a b\n")
        let out = h.nook(["run", "--tmpfs", "/scratch", "--workdir", "/scratch", "--env", "A=1", "--env-file", "vars",
                          "--", "sh", "-c", "pwd; touch f && echo tmpfs-ok; echo $A $FROM_FILE \"$SPACED\""], in: ws)
        #expect(out.stdout == "/scratch\ntmpfs-ok\n1 one a b\n", "\(out)")
    }

    @Test func clearenvStartsFromAnEmptyEnvironment() {
        let out = h.nook(["run", "--clearenv", "--env", "ONLY=1", "--", "env"], env: ["SOMETHING_ELSE": "x"])
        let keys = Set(out.stdout.split(separator: "\n").map { String($0.split(separator: "=").first ?? "") })
        #expect(keys == ["PATH", "HOME", "PWD", "container", "ONLY"], "\(out)")
    }

    @Test func theSandboxRunsWithDefaultDevicesAndAPrivateDevpts() {
        let out = h.nook(["run", "--", "sh", "-c",
                          "ls /dev | tr '\\n' ' '; echo; head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null && echo null-ok"])
        #expect(out.stdout.contains("full null ptmx pts random shm stderr stdin stdout tty urandom zero"), "\(out)")
        #expect(out.stdout.contains("00 00 00 00"), "\(out)")
        #expect(out.stdout.contains("null-ok"), "\(out)")
    }

    @Test func aSecondRunRightAfterwardsWorks() {
        for _ in 0..<5 {
            let out = h.nook(["run", "--", "true"])
            #expect(out.status == 0, "\(out)")
        }
    }
}

func subordinateCount(_ user: String, _ file: String) -> UInt64 {
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
    let uid = getpwnam(user).map { String($0.pointee.pw_uid) }
    return text.split(separator: "\n").reduce(0) { sum, line in
        let f = line.split(separator: ":")
        guard f.count == 3, f[0] == user || f[0] == (uid ?? ""), let n = UInt64(f[2]) else { return sum }
        return sum + n
    }
}

/// A listening TCP socket on the host's loopback.
struct Socket {
    let fd: Int32
    let port: UInt16

    static func listen() throws -> Socket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && Glibc.listen(fd, 16) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw POSIXError(.EADDRNOTAVAIL) }
        return Socket(fd: fd, port: UInt16(bigEndian: addr.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
