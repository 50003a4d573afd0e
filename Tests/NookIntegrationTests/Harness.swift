import Foundation
import Testing

/// What a command printed and how it ended.
struct Outcome: CustomStringConvertible {
    let status: Int32
    let stdout: String
    let stderr: String
    var description: String { "status \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// A user the tests run nook as.
struct TestUser: Sendable {
    let name: String
    let uid: UInt32
    let gid: UInt32
    let home: String
}

/// Runs the real nook binary as an unprivileged user with subordinate ids.
///
/// Started as root (as script/test and CI do), every command runs as the
/// user named by NOOK_TEST_USER through setpriv, from a copy of the binary
/// that user can reach. Started as an ordinary user, commands run as that
/// user. The host each test needs is stated by its `.enabled` trait.
final class Harness: Sendable {
    static let shared = Harness()

    let binary: String
    let user: TestUser?
    /// Runs as root, switching to `user` for each command.
    let switching: Bool
    /// A user without subordinate ranges (NOOK_TEST_USER_NOSUB), for the
    /// single-id fallback.
    let userWithoutRanges: TestUser?
    /// A user whose subordinate range covers its own uid and another
    /// account's (NOOK_TEST_USER_WIDE), for the overlap warnings.
    let userWithWideRange: TestUser?
    let scratch: String
    let problem: String?
    /// cgroup.procs files of the user manager's client cgroup (v2, and the
    /// named v1 hierarchy of a hybrid host) that script/user-manager made;
    /// empty when no user manager runs for the user.
    let clientCgroupProcs: [String]

    private init() {
        let env = ProcessInfo.processInfo.environment
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let built = env["NOOK_BINARY"] ?? root.appendingPathComponent(".build/debug/nook").path
        var problem: String?
        let isRoot = getuid() == 0
        let named = env["NOOK_TEST_USER"].flatMap(Harness.lookup)
        switching = isRoot && named != nil
        user = isRoot ? named : Harness.lookup(uid: getuid())
        userWithoutRanges = isRoot ? env["NOOK_TEST_USER_NOSUB"].flatMap(Harness.lookup) : nil
        userWithWideRange = isRoot ? env["NOOK_TEST_USER_WIDE"].flatMap(Harness.lookup) : nil
        if isRoot && named == nil {
            problem = "running as root without NOOK_TEST_USER: integration tests must run nook unprivileged "
                + "(script/test sets this up)"
        }
        if !FileManager.default.isExecutableFile(atPath: built) {
            problem = "no nook binary at \(built) (swift build first, or set NOOK_BINARY)"
        }

        // A place of the test user's own, outside every other user's reach.
        // Those of earlier runs (their runner gone) are removed first: each
        // holds a few GB of images and layers, and they once filled the disk.
        Harness.removeStaleScratch()
        let base = "/tmp/nook-it-\(getpid())"
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        scratch = base
        var binary = built
        if switching, let user {
            chown(base, user.uid, user.gid)
            chmod(base, 0o755)
            // The build directory may sit where the test user cannot reach
            // (a checkout under /root); run a copy.
            let copy = base + "/nook"
            try? FileManager.default.removeItem(atPath: copy)
            try? FileManager.default.copyItem(atPath: built, toPath: copy)
            chmod(copy, 0o755)
            binary = copy
        }
        self.problem = problem
        if Harness.breakLimits {
            // A stand-in that adds the flag to `run` and passes everything
            // else on: every path the tests take to nook goes through it.
            let wrapper = base + "/nook-without-limits"
            let script = "#!/bin/sh\nif [ \"$1\" = run ]; then shift; exec '\(binary)' run --cgroup-manager none \"$@\"; fi\n"
                + "exec '\(binary)' \"$@\"\n"
            _ = FileManager.default.createFile(atPath: wrapper, contents: Data(script.utf8))
            chmod(wrapper, 0o755)
            if switching, let user { chown(wrapper, user.uid, user.gid) }
            binary = wrapper
        }
        self.binary = binary

        // A client of the user's systemd manager must run in the user's
        // cgroup subtree (see script/user-manager); root puts each command
        // there when the manager runs.
        var procs: [String] = []
        if switching, let user {
            let client = "user.slice/user-\(user.uid).slice/user@\(user.uid).service/app.slice/nook-clients/cgroup.procs"
            for hierarchy in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/systemd"] {
                let path = hierarchy + "/" + client
                if FileManager.default.fileExists(atPath: path) { procs.append(path) }
            }
        }
        clientCgroupProcs = procs
    }

    /// A systemd user manager answers for the test user (script/user-manager).
    var userManagerRunning: Bool {
        guard let user else { return false }
        return FileManager.default.fileExists(atPath: "/run/user/\(user.uid)/systemd/private")
            && (!switching || !clientCgroupProcs.isEmpty)
    }

    static func lookup(_ name: String) -> TestUser? {
        guard let pw = getpwnam(name) else { return nil }
        return TestUser(name: name, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid,
                        home: String(cString: pw.pointee.pw_dir))
    }

    static func lookup(uid: uid_t) -> TestUser? {
        guard let pw = getpwuid(uid) else { return nil }
        return TestUser(name: String(cString: pw.pointee.pw_name), uid: uid, gid: pw.pointee.pw_gid,
                        home: String(cString: pw.pointee.pw_dir))
    }

    /// Whether the integration tests can run here. On a complete host
    /// (NOOK_TEST_TIER=vm) they always run, so that a missing piece fails
    /// them instead of skipping them.
    static var ready: Bool { shared.problem == nil || completeHost }

    /// NOOK_TEST_TIER=vm: the tests run on a host that has everything a
    /// user's machine has (vm/run-tests' guest: systemd, logind, cgroup v2
    /// with every controller delegated to the user's manager), so a test
    /// whose host need is missing there must fail, not skip.
    static var completeHost: Bool { ProcessInfo.processInfo.environment["NOOK_TEST_TIER"] == "vm" }

    /// The running kernel's major and minor version.
    static let kernel: (Int, Int) = {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
    }()

    /// NOOK_TEST_BREAK_LIMITS=1 on a complete host: every `nook run` the
    /// tests start gets `--cgroup-manager none`, so that no limit is applied
    /// and the enforcement tests can be seen to fail (vm/run-tests
    /// --break-limits). Ignored elsewhere.
    static var breakLimits: Bool {
        completeHost && ProcessInfo.processInfo.environment["NOOK_TEST_BREAK_LIMITS"] == "1"
    }

    /// Removes /tmp/nook-it-PID of runners that are no longer running.
    static func removeStaleScratch() {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for name in entries where name.hasPrefix("nook-it-") {
            guard let pid = Int32(name.dropFirst("nook-it-".count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: "/tmp/" + name)
            }
        }
    }

    /// A new empty directory owned by the test user.
    func workspace(_ name: String = "ws") -> String {
        let path = scratch + "/" + name + "-" + UUID().uuidString.prefix(8)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        if switching, let user { chown(path, user.uid, user.gid) }
        return path
    }

    /// A file from Tests/NookIntegrationTests/Resources, copied where the
    /// test user can read it.
    func resource(_ name: String) -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/" + name)
        let copy = scratch + "/" + name
        if !FileManager.default.fileExists(atPath: copy) {
            try? FileManager.default.copyItem(atPath: source.path, toPath: copy)
            chmod(copy, 0o644)
        }
        return copy
    }

    /// Runs `command` on a new pty of rows x cols and plays `steps` at it
    /// (see Resources/ptyrun.py): returns what the terminal showed, the
    /// exit status, and whether the terminal settings came back unchanged.
    func onTerminal(rows: Int = 24, cols: Int = 80, steps: String = "[]", _ command: [String],
                    in directory: String? = nil) -> (screen: String, status: Int32, restored: Bool) {
        let out = run(["/usr/bin/python3", resource("ptyrun.py"), String(rows), String(cols), steps, "--"] + command,
                      in: directory, stdin: nil, env: [:], as: nil, timeout: 60)
        var lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        let restored = lines.last == "stty-same"
        lines.removeLast()
        let status = Int32(lines.last?.dropFirst(5) ?? "") ?? -1
        lines.removeLast()
        return (lines.joined(separator: "\n"), status, restored)
    }

    /// Writes a file in a workspace, owned by the test user.
    func write(_ path: String, _ text: String, mode: Int = 0o644) {
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        chmod(path, mode_t(mode))
        if switching, let user { chown(path, user.uid, user.gid) }
    }

    /// `nook ARGS` as the test user.
    @discardableResult
    func nook(_ args: [String], in directory: String? = nil, stdin: String? = nil, env: [String: String] = [:],
              as other: TestUser? = nil, timeout: TimeInterval = 60, clientCgroup: Bool = true,
              rootPrefix: [String] = []) -> Outcome {
        run([binary] + args, in: directory, stdin: stdin, env: env, as: other, timeout: timeout,
            clientCgroup: clientCgroup, rootPrefix: rootPrefix)
    }

    /// A shell script as the test user, with $NOOK set to the binary.
    @discardableResult
    func sh(_ script: String, in directory: String? = nil, stdin: String? = nil, env: [String: String] = [:],
            as other: TestUser? = nil, timeout: TimeInterval = 60, clientCgroup: Bool = true) -> Outcome {
        var env = env
        env["NOOK"] = binary
        return run(["/bin/sh", "-c", script], in: directory, stdin: stdin, env: env, as: other, timeout: timeout,
                   clientCgroup: clientCgroup)
    }

    /// The environment a login of the user would have.
    func environment(for user: TestUser?, extra: [String: String]) -> [String: String] {
        var env: [String: String] = [:]
        if switching, let user {
            env = ["HOME": user.home, "USER": user.name, "LOGNAME": user.name,
                   "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "SHELL": "/bin/sh"]
            let runtime = "/run/user/\(user.uid)"
            if FileManager.default.fileExists(atPath: runtime) { env["XDG_RUNTIME_DIR"] = runtime }
            if FileManager.default.fileExists(atPath: runtime + "/bus") {
                env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=\(runtime)/bus"
            }
        } else {
            env = ProcessInfo.processInfo.environment
        }
        env.merge(extra) { _, new in new }
        return env
    }

    /// `clientCgroup`: when a user manager runs, start the command in its
    /// client cgroup (as root, before switching to the user); false leaves
    /// it where the test runner is, outside the user's subtree.
    /// `rootPrefix`: a command run as root that execs the rest (its
    /// arguments), to set up a condition only that command sees, such as
    /// `unshare --mount` with a bind over a device.
    func run(_ command: [String], in directory: String?, stdin: String?, env: [String: String],
             as other: TestUser?, timeout: TimeInterval, clientCgroup: Bool = true,
             rootPrefix: [String] = []) -> Outcome {
        let who = other ?? user
        let environment = environment(for: who, extra: env)
        var argv = command
        var childEnvironment = environment
        if switching, let who {
            let setpriv = rootPrefix + ["/usr/bin/setpriv", "--reuid=\(who.uid)", "--regid=\(who.gid)", "--init-groups",
                                        "--", "/usr/bin/env", "-i"] + environment.map { "\($0.key)=\($0.value)" }
                + command
            let procs = who.uid == user?.uid && clientCgroup ? clientCgroupProcs : []
            if procs.isEmpty {
                argv = setpriv
            } else {
                argv = ["/bin/sh", "-c", "for f in \(procs.map { "'\($0)'" }.joined(separator: " ")); do "
                    + "echo $$ > \"$f\" || exit 125; done; exec \"$@\"", "sh"] + setpriv
            }
            childEnvironment = [:]
        }
        let id = UUID().uuidString
        let outPath = "/tmp/nook-it-out-\(id)", errPath = "/tmp/nook-it-err-\(id)", inPath = "/tmp/nook-it-in-\(id)"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        if let stdin { FileManager.default.createFile(atPath: inPath, contents: Data(stdin.utf8)) }
        defer {
            for path in [outPath, errPath, inPath] { try? FileManager.default.removeItem(atPath: path) }
        }
        guard let result = TestSpawn.run(argv[0], Array(argv.dropFirst()), environment: childEnvironment,
                                         directory: directory ?? scratch, stdin: stdin == nil ? "/dev/null" : inPath,
                                         stdout: outPath, stderr: errPath, timeout: timeout) else {
            return Outcome(status: -1, stdout: "", stderr: "cannot start \(command)")
        }
        if result.timedOut {
            return Outcome(status: -2, stdout: read(outPath), stderr: read(errPath) + "\n[timed out after \(timeout)s]")
        }
        return Outcome(status: result.status, stdout: read(outPath), stderr: read(errPath))
    }

    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Command lines of the user's processes that contain `text`.
    func processes(matching text: String) -> [String] {
        guard let who = user else { return [] }
        let out = run(["/bin/ps", "-u", String(who.uid), "-o", "args="], in: "/", stdin: nil, env: [:], as: nil,
                      timeout: 10)
        return out.stdout.split(separator: "\n").map(String.init).filter { $0.contains(text) && !$0.contains("ps -u") }
    }

    /// Processes of the user still alive, other than the caller's own.
    func leftovers(of who: TestUser? = nil) -> [String] {
        guard let who = who ?? user else { return [] }
        let out = run(["/bin/ps", "-u", String(who.uid), "-o", "pid=,comm="], in: "/", stdin: nil, env: [:],
                      as: nil, timeout: 10)
        return out.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.hasSuffix(" ps") && !$0.hasSuffix(" setpriv") && !$0.hasSuffix(" env") && !$0.isEmpty }
    }
}

/// A canary outside everything a sandbox is given: a directory with a file,
/// and a fingerprint of both to compare after an attack.
struct Canary {
    let directory: String
    let file: String

    init() {
        let h = Harness.shared
        directory = h.workspace("canary")
        file = directory + "/canary.txt"
        h.write(file, "canary\n")
    }

    var fingerprint: String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.sorted() ?? []
        let content = (try? String(contentsOfFile: file, encoding: .utf8)) ?? "<missing>"
        var sb = stat()
        stat(file, &sb)
        return "\(names) \(content) \(sb.st_mode) \(sb.st_uid) \(sb.st_mtim.tv_sec).\(sb.st_mtim.tv_nsec)"
    }
}
