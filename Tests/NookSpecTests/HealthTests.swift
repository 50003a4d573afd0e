import NookSpec
import Testing

/// Health checks: durations, the image's Healthcheck, and how a request
/// (flags over a profile) and an image combine.
struct HealthTests {
    @Test(arguments: [("30s", 30.0), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), ("1.5s", 1.5), ("0s", 0),
                      ("1h1m1s1ms", 3661.001)])
    func durationsAsDockerWritesThem(text: String, seconds: Double) throws {
        let parsed = try #require(Durations.seconds(text))
        #expect(abs(parsed - seconds) < 1e-9)
    }

    @Test(arguments: ["", "30", "-5s", "+5s", "5 s", "s", "5x", "5sec", "1d", ".5s", "5s ", "m5"])
    func otherTextIsNotADuration(text: String) {
        #expect(Durations.seconds(text) == nil)
    }

    @Test(arguments: [(30.0, "30s"), (0.5, "500ms"), (90, "1m30s"), (7200, "2h"), (1.25, "1s250ms"), (0, "0s")])
    func durationsPrintShortest(seconds: Double, text: String) {
        #expect(Durations.text(seconds) == text)
        #expect(Durations.seconds(text) == seconds)
    }

    func image(_ check: ImageHealthcheck?) -> ImageConfig {
        ImageConfig(healthcheck: check, architecture: "amd64")
    }

    @Test func theImagesCheckIsUsedWithItsSettingsAndShellFormRunsWithSh() throws {
        let check = try #require(try Resolver.health(HealthRequest(), image: image(ImageHealthcheck(
            test: ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], interval: 5_000_000_000,
            timeout: 2_000_000_000, startPeriod: 10_000_000_000, retries: 4))))
        #expect(check.command == ["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"])
        #expect(check.interval == 5 && check.timeout == 2 && check.startPeriod == 10 && check.retries == 4)
        #expect(check.source == "the image's Healthcheck")
        let exec = try #require(try Resolver.health(HealthRequest(), image: image(ImageHealthcheck(test: ["CMD", "/bin/ok", "-q"]))))
        #expect(exec.command == ["/bin/ok", "-q"])
        #expect(exec.interval == 30 && exec.timeout == 30 && exec.startPeriod == 0 && exec.retries == 3,
                "zero or missing values are the defaults")
    }

    @Test func noneOrAnEmptyTestMeansNoCheck() throws {
        #expect(try Resolver.health(HealthRequest(), image: image(ImageHealthcheck(test: ["NONE"]))) == nil)
        #expect(try Resolver.health(HealthRequest(), image: image(ImageHealthcheck(test: []))) == nil)
        #expect(try Resolver.health(HealthRequest(), image: nil) == nil)
    }

    @Test func theRequestsFieldsWinOneByOneAndNoHealthcheckTurnsEvenTheImagesOff() throws {
        var r = HealthRequest()
        r.interval = 1
        r.retries = 2
        r.onUnhealthy = .restart
        let check = try #require(try Resolver.health(r, image: image(ImageHealthcheck(
            test: ["CMD", "true"], interval: 9_000_000_000, timeout: 7_000_000_000))))
        #expect(check.command == ["true"] && check.interval == 1 && check.timeout == 7 && check.retries == 2)
        #expect(check.onUnhealthy == .restart)
        var off = HealthRequest()
        off.enabled = false
        #expect(try Resolver.health(off, image: image(ImageHealthcheck(test: ["CMD", "true"]))) == nil)
    }

    @Test func aFlagOverAProfileReplacesFieldByFieldAndACommandTurnsItBackOn() {
        var profile = HealthRequest()
        profile.command = ["/bin/check"]
        profile.interval = 10
        profile.enabled = false
        var flags = HealthRequest()
        flags.command = ["/bin/other"]
        flags.origins["command"] = "--health-cmd"
        let merged = profile.overlaid(by: flags)
        #expect(merged.command == ["/bin/other"] && merged.interval == 10 && merged.enabled == nil)
        #expect(merged.origins["command"] == "--health-cmd")
        var none = HealthRequest()
        none.enabled = false
        #expect(profile.overlaid(by: none).enabled == false)
    }

    @Test func settingsWithoutACommandNameTheirOrigin() {
        var r = HealthRequest()
        r.interval = 5
        r.origins["interval"] = "--health-interval"
        #expect(throws: ResolveError("--health-interval: there is no health check for its interval to apply to ",
                                     hint: "give the check's command too (--health-cmd, or command in the profile's [health])")) {
            try Resolver.health(r, image: nil)
        }
    }

    @Test(arguments: [
        (ImageHealthcheck(test: ["CMD"]), "Test is [\"CMD\"] without a program"),
        (ImageHealthcheck(test: ["CMD-SHELL"]), "without a command"),
        (ImageHealthcheck(test: ["SHELL", "x"]), "Test starts with \"SHELL\"; expected CMD, CMD-SHELL or NONE"),
        (ImageHealthcheck(test: ["CMD", "x"], interval: -5), "Interval is -5 ns"),
        (ImageHealthcheck(test: ["CMD", "x"], timeout: 10), "Timeout is 10 ns"),
        (ImageHealthcheck(test: ["CMD", "x"], retries: -1), "Retries is -1"),
    ])
    func aBadImageHealthcheckIsRefusedNamingTheField(check: ImageHealthcheck, says: String) {
        do {
            _ = try Resolver.health(HealthRequest(), image: image(check))
            Issue.record("accepted \(check)")
        } catch {
            #expect(error.message.hasPrefix("the image's Healthcheck: ") && error.message.contains(says), "\(error.message)")
            #expect(error.hint?.contains("--no-healthcheck") == true)
        }
    }

    @Test func aFlagStandsInForTheImagesBadValue() throws {
        var r = HealthRequest()
        r.interval = 2
        let check = try Resolver.health(r, image: image(ImageHealthcheck(test: ["CMD", "x"], interval: -5)))
        #expect(check?.interval == 2)
    }

    @Test func theResolvedSpecCarriesTheCheckForDryRun() throws {
        var r = SandboxRequest()
        r.command = ["sleep", "9"]
        r.health.command = ["/bin/sh", "-c", "test -e /tmp/ok"]
        r.health.origins["command"] = "--health-cmd"
        r.health.interval = 0.5
        let out = try Resolver.resolve(r, host: ResolverTests.host)
        #expect(out.health?.command == ["/bin/sh", "-c", "test -e /tmp/ok"])
        #expect(out.spec.annotations?[Annotation.health]
            == #"{"command":["/bin/sh","-c","test -e /tmp/ok"],"interval":"500ms","timeout":"30s","startPeriod":"0s","retries":3,"onUnhealthy":"none","source":"--health-cmd"}"#)
    }

    @Test func aCheckOutOfRangeIsNamed() {
        var c = HealthCheck(command: ["x"], source: "t")
        #expect(c.problem == nil)
        c.retries = 0
        #expect(c.problem?.contains("retries") == true)
        c.retries = 1
        c.interval = -1
        #expect(c.problem?.contains("interval") == true)
        c.interval = .nan
        #expect(c.problem?.contains("interval") == true)
        c = HealthCheck(command: [""], source: "t")
        #expect(c.problem == "its command is empty")
    }
}
