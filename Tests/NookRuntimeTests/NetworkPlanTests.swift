import NookSpec
import Testing

@testable import NookRuntime

/// The helpers' command lines: what keeps the host safe is there unless asked.
struct NetworkPlanTests {
    func plan(_ annotations: [String: String]) throws -> NetworkPlan {
        try #require(try NetworkPlan.from(annotations))
    }

    @Test func pastaClosesTheHostLoopbackAndPublishesOnlyWhatWasAsked() throws {
        let p = try plan([Annotation.network: "pasta", Annotation.networkMTU: "1500",
                          Annotation.networkPorts: "127.0.0.1:8080:80/tcp,0.0.0.0:5000-5001:5000-5001/udp",
                          Annotation.networkDNSForward: "169.254.1.1"])
        let args = p.pastaArguments(program: "/usr/bin/pasta")
        #expect(args == ["/usr/bin/pasta", "--foreground", "--quiet", "--config-net",
                         "--netns", "/proc/self/fd/3", "--userns", "/proc/self/fd/4", "--pid", "/proc/self/fd/5",
                         "--tcp-ns", "none", "--udp-ns", "none", "--mtu", "1500", "--no-map-gw",
                         "--tcp-ports", "127.0.0.1/8080:80", "--udp-ports", "5000-5001:5000-5001",
                         "--dns-forward", "169.254.1.1"])
        let none = try plan([Annotation.network: "pasta"]).pastaArguments(program: "pasta")
        #expect(none.contains("--tcp-ports") && none[none.firstIndex(of: "--tcp-ports")! + 1] == "none")
        #expect(none[none.firstIndex(of: "--udp-ports")! + 1] == "none", "UDP would follow TCP's ports otherwise")
        let open = try plan([Annotation.network: "pasta", Annotation.networkHostLoopback: "true",
                             Annotation.networkIPv6: "false", Annotation.networkAddress: "10.0.9.1/24"])
            .pastaArguments(program: "pasta")
        #expect(!open.contains("--no-map-gw") && open.contains("--ipv4-only"))
        #expect(open.suffix(6) == ["--address", "10.0.9.1", "--netmask", "24", "--gateway", "10.0.9.2"])
    }

    @Test func slirp4netnsSandboxesItselfWhenRootIsMappedAndClosesTheHostLoopback() throws {
        let p = try plan([Annotation.network: "slirp4netns", Annotation.networkPorts: "127.0.0.1:8080:80/tcp",
                          Annotation.networkAddress: "10.0.9.100/24"])
        let args = p.slirpArguments(program: "slirp4netns", apiSocket: "/run/x/slirp4netns.sock", inUserns: true)
        #expect(args == ["slirp4netns", "--configure", "--mtu=65520", "--netns-type=path", "--ready-fd=5", "--exit-fd=6",
                         "--enable-sandbox", "--enable-seccomp", "--disable-host-loopback", "--cidr=10.0.9.0/24",
                         "--api-socket=/run/x/slirp4netns.sock", "/proc/self/fd/3", "tap0"])
        let asYou = p.slirpArguments(program: "slirp4netns", apiSocket: nil, inUserns: false)
        #expect(asYou.contains("--userns-path=/proc/self/fd/4") && !asYou.contains("--enable-sandbox"))
        #expect(p.slirpForwards() == [#"{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": 8080, "guest_addr": "10.0.9.100", "guest_port": 80}}"#])
    }

    @Test func aBadAnnotationIsRefused() throws {
        #expect(throws: PlanFailure.self) { try NetworkPlan.from([Annotation.network: "vde"]) }
        #expect(throws: PlanFailure.self) { try NetworkPlan.from([Annotation.network: "pasta", Annotation.networkMTU: "9"]) }
        #expect(try NetworkPlan.from([:]) == nil)
    }
}

/// The route tables pasta's choice is made from, as the kernel prints them.
struct RouteProbeTests {
    @Test func aDefaultRouteThroughAnInterfaceIsARouteOut() {
        let v4 = """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            """
        #expect(RouteProbe.ipv4(v4))
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            + "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
        #expect(RouteProbe.ipv6(v6))
    }

    /// A namespace with only loopback (and the unreachable ::/0 entry the
    /// kernel keeps on lo) has no way out.
    @Test func loopbackAndLocalRoutesAreNoRouteOut() {
        let v4 = """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            """
        #expect(!RouteProbe.ipv4(v4))
        #expect(!RouteProbe.ipv4(""))
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            + "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
            + "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
            + "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
        #expect(!RouteProbe.ipv6(v6))
    }
}

struct HelperFailureHintTests {
    // Every failure of a helper got the /dev/net/tun hint, also an address
    // or port the helper refused (a fresh try).
    @Test(arguments: [
        ("pasta", ": Failed to open() /dev/net/tun: Permission denied", "/dev/net/tun"),
        ("pasta", ": Overlapping port specifier 10.123.0.2/18110:8001", "the message above is pasta's own"),
        ("slirp4netns", ": set route: Network is unreachable; child failed(1)", "no usable route"),
        ("slirp4netns", "", "/dev/net/tun"),
    ])
    func theHintFitsWhatTheHelperSaid(helper: String, reason: String, says: String) {
        #expect(NetworkHelper.hint(helper: helper, reason: reason).contains(says))
    }
}
