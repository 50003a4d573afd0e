@testable import NookCLI
import NookState
import NookSupport
import Testing

/// The unit `nook generate systemd` writes, read line by line.
struct SystemdUnitTests {
    func record(_ args: [String], restart: RestartPolicy = .no, stopTimeout: Int = 10) -> ContainerRecord {
        var r = ContainerRecord(id: String(repeating: "a", count: 64), name: "web", created: 0, image: nil, root: "host",
                                command: [], runArguments: args, directory: "/home/u/app")
        r.restartPolicy = restart
        r.stopTimeout = stopTimeout
        return r
    }

    func lines(_ unit: SystemdUnit) -> [String] { unit.text.split(separator: "\n").map(String.init) }

    @Test func theUnitRunsTheContainerAsMadeUnderTheManagersWatch() throws {
        let unit = try SystemdUnit(record: record(["-d", "--name", "web", "--rm", "--restart", "always", "-e", "A=1",
                                                   "--health-cmd", "curl -f localhost", "localhost/app:1", "--", "./serve"],
                                                  restart: .always, stopTimeout: 20),
                                   nook: "/usr/local/bin/nook",
                                   settings: .init(environment: [("XDG_DATA_HOME", "/data/u")]))
        let l = lines(unit)
        #expect(unit.fileName == "nook-web.service")
        #expect(l.contains("Type=notify") && l.contains("NotifyAccess=main") && l.contains("Delegate=no"))
        #expect(l.contains("WorkingDirectory=/home/u/app"))
        #expect(l.contains("Environment=XDG_DATA_HOME=/data/u"))
        #expect(l.contains("ExecStartPre=-/usr/local/bin/nook rm -f web"))
        #expect(l.contains("ExecStart=/usr/local/bin/nook run -d --name web --env=A=1 \"--health-cmd=curl -f localhost\" "
            + "localhost/app:1 -- ./serve"), "-d, --name, --rm and --restart are the unit's: \(unit.text)")
        #expect(l.contains("ExecStop=/usr/local/bin/nook stop -t 20 web"))
        #expect(l.contains("ExecStopPost=-/usr/local/bin/nook rm -f web"))
        #expect(l.contains("TimeoutStopSec=55") && l.contains("Restart=always") && l.contains("RestartSec=1"))
        #expect(l.contains("WantedBy=default.target"))
        #expect(unit.warnings.isEmpty)
    }

    /// Attack report 4: `-e` with a line break in the name wrote lines of
    /// its own into the unit through the note that quotes it.
    @Test func aNoteQuotingTheUsersInputStaysOneCommentLine() throws {
        let unit = try SystemdUnit(record: record(["-e", "FOO\n[Service]\nExecStartPre", "--", "true"]),
                                   nook: "/usr/local/bin/nook", settings: .init())
        let uncommented = lines(unit).filter { !$0.hasPrefix("#") }
        #expect(!uncommented.contains { $0.hasPrefix("ExecStartPre=VALUE") }, "\(unit.text)")
        #expect(uncommented.filter { $0 == "[Service]" }.count == 1, "\(unit.text)")
        #expect(unit.text.contains("FOO\\x0a[Service]\\x0aExecStartPre"), "\(unit.text)")
    }

    /// on-failure:3 became Restart=on-failure with no count: the unit
    /// restarted for ever.
    @Test func onFailureWithACountBecomesTheManagersStartLimit() throws {
        let unit = try SystemdUnit(record: record(["--", "false"], restart: .onFailure(maximum: 3)), nook: "/n",
                                   settings: .init())
        let l = lines(unit)
        #expect(l.contains("StartLimitBurst=4") && l.contains("StartLimitIntervalSec=infinity"), "\(unit.text)")
        #expect(l.firstIndex(of: "StartLimitBurst=4")! < l.firstIndex(of: "[Service]")!, "in [Unit]")
        #expect(!lines(try SystemdUnit(record: record(["--", "false"], restart: .onFailure(maximum: nil)), nook: "/n",
                                       settings: .init())).contains { $0.hasPrefix("StartLimit") })
    }

    @Test(arguments: [(RestartPolicy.no, "on-failure"), (.onFailure(maximum: 3), "on-failure"), (.always, "always")])
    func theRestartPolicyBecomesRestart(policy: RestartPolicy, restart: String) throws {
        let unit = try SystemdUnit(record: record(["--", "true"], restart: policy), nook: "/n", settings: .init())
        #expect(lines(unit).contains("Restart=\(restart)"))
        var settings = SystemdUnit.Settings()
        settings.restart = "no"
        settings.restartSec = 5
        let overridden = try SystemdUnit(record: record(["--", "true"], restart: policy), nook: "/n", settings: settings)
        #expect(lines(overridden).contains("Restart=no") && lines(overridden).contains("RestartSec=5"))
    }

    @Test func aCommandWithoutImageAndCombinedShortFlagsIsWrittenOut() throws {
        let (args, notes) = try SystemdUnit.runArguments(["-dt", "--name=x", "--bind", "/a:/b", "--bind", "/c", "ls", "-l"])
        #expect(args == ["--tty", "--bind=/a:/b", "--bind=/c", "--", "ls", "-l"])
        #expect(notes.isEmpty)
    }

    @Test func anEnvironmentCopiedFromTheCallerIsSaidToDiffer() throws {
        let (args, notes) = try SystemdUnit.runArguments(["-d", "-e", "TOKEN", "--", "true"])
        #expect(args == ["--env=TOKEN", "--", "true"])
        #expect(notes.count == 1 && notes[0].contains("--env TOKEN copies TOKEN from nook's environment"))
        let unit = try SystemdUnit(record: record(["-d", "-e", "TOKEN", "--", "true"]), nook: "/n", settings: .init())
        #expect(unit.text.contains("# Note: --env TOKEN copies"))
    }

    @Test(arguments: [
        ("plain-word_1.2:/x=y,z+@", "plain-word_1.2:/x=y,z+@"),
        ("two words", "\"two words\""),
        ("100%", "\"100%%\""),
        ("$HOME", "\"$$HOME\""),
        ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
        ("a\nb\tc\u{1}", "\"a\\nb\\tc\\x01\""),
        ("", "\"\""),
    ])
    func wordsAreQuotedAsSystemdReadsThem(word: String, quoted: String) {
        #expect(SystemdUnit.quote(word) == quoted)
    }

    @Test func environmentValuesKeepTheirDollarAndDoubleTheirPercent() {
        #expect(SystemdUnit.quote("A=$x 5%", expandsVariables: false) == "\"A=$x 5%%\"")
        #expect(SystemdUnit.escapeSpecifiers("/srv/100%/app") == "/srv/100%%/app")
    }

    @Test func theCallersPlacesAreCarriedWhenTheManagerWouldSeeOthers() {
        let carried = SystemdUnit.carriedEnvironment(["XDG_RUNTIME_DIR": "/run/user/1000", "XDG_DATA_HOME": "/d",
                                                      "HOME": "/home/u"], uid: 1000)
        #expect(carried.map(\.0) == ["XDG_DATA_HOME"])
        let other = SystemdUnit.carriedEnvironment(["XDG_RUNTIME_DIR": "/tmp/rt"], uid: 1000)
        #expect(other.map(\.0) == ["XDG_RUNTIME_DIR"] && other.map(\.1) == ["/tmp/rt"])
    }
}
