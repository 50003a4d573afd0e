@testable import NookCLI
import NookSpec
import NookSupport
import Testing

struct OptionTests {
    func parse(_ args: [String]) throws(UsageFailure) -> ParsedOptions {
        try OptionParser.parse(args, options: RunCommand.options, command: "run", stopAtPositional: true)
    }

    @Test func shortFlagsCombineAndTheCommandStartsAtTheFirstPositional() throws {
        let p = try parse(["-it", "--network", "host", "ls", "-l", "--bind"])
        #expect(p.has("tty") && p.has("interactive"))
        #expect(p.value("network") == "host")
        #expect(p.positionals == ["ls", "-l", "--bind"])
    }

    @Test func doubleDashEndsOptions() throws {
        #expect(try parse(["--", "-t"]).positionals == ["-t"])
    }

    @Test func valuesMayFollowAnEqualsSign() throws {
        #expect(try parse(["--workdir=/x", "-e", "A=B", "--env=C=D"]).all("env") == ["A=B", "C=D"])
    }

    @Test func anUnknownOptionSuggestsTheNearestOne() {
        do {
            _ = try parse(["--hostnam", "x"])
            Issue.record("no error")
        } catch {
            #expect(error.message == "run: unknown option --hostnam")
            #expect(error.hint == "did you mean --hostname?")
        }
    }

    @Test func aMissingValueAndARepeatedSingleOptionAreErrors() {
        #expect(throws: UsageFailure.self) { try parse(["--workdir"]) }
        #expect(throws: UsageFailure.self) { try parse(["--workdir", "/a", "--workdir", "/b"]) }
        #expect(throws: UsageFailure.self) { try parse(["-t=x"]) }
    }

    @Test(arguments: [
        ("/a", "/a", "/a", false), ("/a:/b", "/a", "/b", false), ("/a:/b:ro", "/a", "/b", true),
        ("/a:ro", "/a", "/a", true), ("/a:/b:rw", "/a", "/b", false),
    ])
    func bindSpecsParse(spec: String, source: String, destination: String, readOnly: Bool) throws {
        #expect(try RunCommand.bind(spec) == BindMount(source: source, destination: destination, readOnly: readOnly))
    }

    @Test func badBindSpecsSayWhatIsExpected() {
        for spec in [":/b", "/a:", "/a:/b:/c", "/a:/b:ro:rw"] {
            #expect(throws: UsageFailure.self, "\(spec)") { try RunCommand.bind(spec) }
        }
    }

    @Test func ulimitsParseWithUnlimited() throws {
        #expect(try RunCommand.ulimit("nofile=1024:4096") == Rlimit(type: "RLIMIT_NOFILE", hard: 4096, soft: 1024))
        #expect(try RunCommand.ulimit("core=unlimited").hard == UInt64.max)
        #expect(throws: UsageFailure.self) { try RunCommand.ulimit("nofile=10:5") }
        #expect(throws: UsageFailure.self) { try RunCommand.ulimit("bogus=1") }
    }

    /// --cpus -1 was "not a number" though -1 and max mean no limit for
    /// every other limit flag.
    @Test(arguments: ["max", "unlimited", "-1"])
    func cpusTakeMaxAsNoLimit(_ text: String) throws {
        var r = SandboxRequest()
        try RunCommand.limits(from: try parse(["--cpus", text, "true"]), into: &r)
        #expect(r.limits.cpus == .infinity)
        #expect(throws: UsageFailure.self) {
            try RunCommand.limits(from: try parse(["--cpus", "lots", "true"]), into: &r)
        }
    }

    @Test func theHelpListsEveryOption() {
        for option in RunCommand.options {
            #expect(RunCommand.help.contains("--\(option.long)"))
        }
    }

    // docker's --health-cmd is always a shell command; nook takes JSON
    // too, but only what parses as a JSON array of strings.
    @Test func aHealthCommandIsJSONOnlyWhenItParsesAsAnArrayOfStrings() throws {
        #expect(try DetachCommand.healthCommand("[ -e /etc/hostname ]") == ["/bin/sh", "-c", "[ -e /etc/hostname ]"])
        #expect(try DetachCommand.healthCommand("[\"sh\"") == ["/bin/sh", "-c", "[\"sh\""])
        #expect(try DetachCommand.healthCommand("[1, 2]") == ["/bin/sh", "-c", "[1, 2]"])
        #expect(try DetachCommand.healthCommand("[\"curl\", \"-f\", \"http://localhost/\"]") == ["curl", "-f", "http://localhost/"])
        #expect(try DetachCommand.healthCommand("[\"CMD\", \"true\"]") == ["true"])
        #expect(try DetachCommand.healthCommand("[\"CMD-SHELL\", \"exit 0\"]") == ["/bin/sh", "-c", "exit 0"])
        for text in ["[\"CMD-SHELL\"]", "[\"CMD-SHELL\", \"\"]", "[\"CMD-SHELL\", \" \"]"] {
            #expect(throws: UsageFailure.self, "\(text)") { try DetachCommand.healthCommand(text) }
        }
        do {
            _ = try DetachCommand.healthCommand("[\"CMD-SHELL\"]")
        } catch {
            #expect(error.description.contains("[\"CMD-SHELL\"] without a command"), "\(error)")
        }
        for text in ["[\"CMD\"]", "[\"\"]", "[]"] {
            #expect(throws: UsageFailure.self, "\(text)") { try DetachCommand.healthCommand(text) }
        }
    }
}
