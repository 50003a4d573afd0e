@testable import NookSpec
import Testing

/// -p as written, and what it becomes.
struct PortMappingTests {
    @Test(arguments: [
        ("8080:80", "0.0.0.0:8080:80/tcp"),
        ("80", "0.0.0.0:80:80/tcp"),
        ("127.0.0.1:2222:22", "127.0.0.1:2222:22/tcp"),
        ("[::1]:8080:80/tcp", "[::1]:8080:80/tcp"),
        ("5000-5009:6000-6009/udp", "0.0.0.0:5000-5009:6000-6009/udp"),
        ("53:53/UDP", "0.0.0.0:53:53/udp"),
    ])
    func aMappingIsReadAndWrittenBackWithItsDefaults(_ text: String, _ canonical: String) throws {
        let m = try PortMapping.parse(text)
        #expect(m.description == canonical)
        #expect(try PortMapping.parseList(m.description) == [m])
    }

    @Test(arguments: [
        ("8080:", "the container port is missing"),
        ("0:80", "0 is not a host port"),
        ("70000:80", "70000 is not a host port"),
        ("10-5:10-5", "ends before it starts"),
        ("1000-1002:2000-2001", "the host range has 3 ports and the container range 2 ports"),
        ("1000:2000-2001", "the host range has 1 port and"),
        // Digits as people write them (a fresh try got +18110 and 018110 taken).
        ("+18110:80", "+18110 is not a host port"), ("018110:80", "018110 is not a host port"),
        ("8080:80/sctp", "the protocol must be tcp or udp"),
        ("localhost:8080:80", "localhost is not an IP address"),
        ("1.2.3:8080:80", "1.2.3 is not an IP address"),
        ("[::1:8080:80", "closing ]"),
        ("65535-65536:1-2", "65536 is not a host port"),
    ])
    func aBadMappingSaysWhatIsWrong(_ text: String, _ says: String) {
        #expect {
            try PortMapping.parse(text)
        } throws: { error in
            (error as? ResolveError)?.message.contains(says) == true
        }
    }

    @Test func mappingsOverlapOnTheSameProtocolAndAddressOnly() throws {
        let a = try PortMapping.parse("8000-8009:8000-8009")
        #expect(a.overlaps(try PortMapping.parse("8005:80")))
        #expect(!a.overlaps(try PortMapping.parse("8005:80/udp")))
        #expect(a.overlaps(try PortMapping.parse("127.0.0.1:8009:80")), "all addresses include 127.0.0.1")
        #expect(!(try PortMapping.parse("127.0.0.1:8009:80")).overlaps(try PortMapping.parse("127.0.0.2:8009:80")))
    }

    @Test func addressesAreCheckedAsText() {
        #expect(IPAddress.isIPv4("10.0.2.100") && !IPAddress.isIPv4("10.0.2") && !IPAddress.isIPv4("256.1.1.1"))
        #expect(IPAddress.isIPv6("::1") && IPAddress.isIPv6("fd00::2") && IPAddress.isIPv6("::ffff:127.0.0.1"))
        #expect(!IPAddress.isIPv6("1:::2") && !IPAddress.isIPv6("fe80::1%eth0"))
        #expect(IPAddress.isLoopback("127.0.0.53") && IPAddress.isLoopback("::1") && !IPAddress.isLoopback("10.0.0.1"))
    }
}

/// How the network is chosen and written into the spec.
struct NetworkResolveTests {
    static var host: HostContext {
        var h = ResolverTests.host
        h.pasta = "/usr/bin/pasta"
        h.slirp4netns = "/usr/bin/slirp4netns"
        h.sandboxDir = "/run/user/1000/nook/sandboxes/x"
        h.resolvConf = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
        return h
    }

    static var imageHost: HostContext {
        var h = host
        h.image = ImageContext(name: "localhost/web:1", id: "sha256:1", config: ImageConfig(cmd: ["serve"], architecture: "amd64"),
                               layers: ["/l/1"])
        h.fuseOverlayfs = "/usr/bin/fuse-overlayfs"
        return h
    }

    func resolve(_ r: SandboxRequest, _ host: HostContext = NetworkResolveTests.host) throws(ResolveError) -> Resolution {
        try Resolver.resolve(r, host: host)
    }

    func image(_ r: SandboxRequest = SandboxRequest()) -> SandboxRequest {
        var r = r
        r.image = "localhost/web:1"
        return r
    }

    @Test func theHostRootKeepsNoNetworkAndAnImageGetsPastaElseSlirp4netnsElseNone() throws {
        let plain = try resolve(SandboxRequest()).spec
        #expect(plain.annotations?[Annotation.network] == nil)
        #expect(plain.linux?.namespaces?.contains { $0.type == "network" } == true)

        #expect(try resolve(image(), Self.imageHost).spec.annotations?[Annotation.network] == "pasta")
        var noPasta = Self.imageHost
        noPasta.pasta = nil
        #expect(try resolve(image(), noPasta).spec.annotations?[Annotation.network] == "slirp4netns")
        noPasta.slirp4netns = nil
        let none = try resolve(image(), noPasta)
        #expect(none.spec.annotations?[Annotation.network] == nil)
        #expect(none.warnings.contains { $0.contains("no user-mode network helper is installed") })
    }

    /// A host with no route out (offline, or a VM without a network
    /// card): the pasta of Debian 12 refuses to start there, so the
    /// automatic choice takes slirp4netns, or no network with a warning.
    @Test func withoutARouteOutAnImageGetsSlirp4netnsElseNoNetwork() throws {
        var offline = Self.imageHost
        offline.hasRouteOut = false
        #expect(try resolve(image(), offline).spec.annotations?[Annotation.network] == "slirp4netns")
        offline.slirp4netns = nil
        let none = try resolve(image(), offline)
        #expect(none.spec.annotations?[Annotation.network] == nil)
        #expect(none.warnings.contains { $0.contains("no route out") && $0.contains("install slirp4netns") })
        // Asked for by name, or to publish a port, pasta is still tried.
        var asked = image()
        asked.network = .pasta
        #expect(try resolve(asked, offline).spec.annotations?[Annotation.network] == "pasta")
        var publish = image()
        publish.publish = [PortMapping(hostPort: 8080, containerPort: 80)]
        #expect(try resolve(publish, offline).spec.annotations?[Annotation.network] == "pasta")
    }

    @Test func publishingAPortAsksForAHelperAndIsRecorded() throws {
        var r = SandboxRequest()
        r.publish = [try PortMapping.parse("127.0.0.1:8080:80"), try PortMapping.parse("5353:5353/udp")]
        let spec = try resolve(r).spec
        #expect(spec.annotations?[Annotation.network] == "pasta")
        #expect(spec.annotations?[Annotation.networkPorts] == "127.0.0.1:8080:80/tcp,0.0.0.0:5353:5353/udp")
        #expect(spec.annotations?[Annotation.networkMTU] == "65520")
    }

    @Test func portsNeedAHelperAndOptionsNeedOneToo() {
        var r = SandboxRequest()
        r.network = .host
        r.publish = [PortMapping(hostPort: 8080, containerPort: 80)]
        #expect(throws: ResolveError.self) { try resolve(r) }
        r.network = NetworkMode.none
        r.publish = []
        r.networkOptions.mtu = 1500
        #expect(throws: ResolveError.self) { try resolve(r) }
        var twice = SandboxRequest()
        twice.network = .pasta
        twice.publish = [PortMapping(hostPort: 8080, containerPort: 80), PortMapping(hostPort: 8080, containerPort: 81)]
        #expect(throws: ResolveError.self) { try resolve(twice) }
    }

    @Test func aMissingHelperIsAnErrorWithTheFix() {
        var host = Self.host
        host.pasta = nil
        var r = SandboxRequest()
        r.network = .pasta
        #expect {
            try resolve(r, host)
        } throws: { error in
            let e = error as? ResolveError
            return e?.message == "--network pasta: pasta is not installed (not found on PATH)"
                && e?.hint?.contains("sudo apt install passt") == true
        }
    }

    @Test func aLoopbackResolverIsReplacedByTheHelpersAndAUsableOneIsCopied() throws {
        let (stub, helper) = Resolver.resolvConf(Self.host.resolvConf, helper: .pasta, resolver: "169.254.1.1", ipv6: true)
        #expect(helper)
        #expect(stub == "# nook: pasta answers here and asks the host's name servers\nnameserver 169.254.1.1\n"
            + "options edns0 trust-ad\nsearch lan\n")
        let (copied, usesHelper) = Resolver.resolvConf("nameserver 127.0.0.1\nnameserver 10.1.1.1\nnameserver fd00::53\n",
                                                        helper: .slirp4netns, resolver: "10.0.2.3", ipv6: false)
        #expect(!usesHelper)
        #expect(copied == "# nook: the host's name servers, reached through slirp4netns\nnameserver 10.1.1.1\n")
    }

    @Test func anImagesResolvConfNamesTheHelpersResolverAndTheHostRootGetsNooksOwnOverAFile() throws {
        let img = try resolve(image(), Self.imageHost)
        #expect(img.spec.annotations?[Annotation.networkDNSForward] == "169.254.1.1")
        #expect(img.generatedFiles["/run/user/1000/nook/sandboxes/x/resolv.conf"]?.contains("nameserver 169.254.1.1") == true)
        var r = SandboxRequest()
        r.network = .slirp4netns
        let hostRoot = try resolve(r)
        #expect(hostRoot.spec.mounts?.contains { $0.destination == "/etc/resolv.conf" && $0.options?.contains("ro") == true } == true)
        #expect(hostRoot.generatedFiles.values.contains { $0.contains("nameserver 10.0.2.3") })
        var linked = Self.host
        linked.resolvConfIsFile = false
        let kept = try resolve(r, linked)
        #expect(kept.spec.mounts?.contains { $0.destination == "/etc/resolv.conf" } == false)
        #expect(kept.warnings.contains { $0.contains("/etc/resolv.conf is a symbolic link") })
    }

    @Test func slirp4netnsTakesOnlyTheNetworksAddress100() throws {
        var r = SandboxRequest()
        r.network = .slirp4netns
        r.networkOptions.address = "10.0.9.5/24"
        #expect(throws: ResolveError.self) { try resolve(r) }
        r.networkOptions.address = "10.0.9.100/24"
        let spec = try resolve(r).spec
        #expect(spec.annotations?[Annotation.networkAddress] == "10.0.9.100/24")
        #expect(try resolve(r).generatedFiles.values.contains { $0.contains("nameserver 10.0.9.3") })
    }

    @Test func theUDPFaultsOfTheHelpersAreWarnedAbout() throws {
        var r = SandboxRequest()
        r.network = .pasta
        r.publish = [try PortMapping.parse("5353:53/udp")]
        #expect(try resolve(r).warnings.contains { $0.contains("does not return UDP replies") })
        r.network = .slirp4netns
        #expect(try resolve(r).warnings.contains { $0.contains("podman#4586") })
        r.networkOptions.hostLoopback = true
        #expect(try resolve(r).warnings.isEmpty)
    }
}

struct InterfaceAddressTests {
    // pasta took 0.0.0.100/24 and left the sandbox without a route; the
    // helpers refused multicast with messages of their own (a fresh try).
    @Test(arguments: [("10.0.9.255/24", "broadcast"), ("10.0.9.0/24", "network's own"), ("127.0.0.5/8", "loopback"),
                      ("0.0.0.100/24", "0.0.0.0/8"), ("224.0.0.100/24", "multicast"), ("10.0.9.5/31", "prefix length")])
    func anAddressNoInterfaceCanHaveIsRefusedSayingWhy(text: String, says: String) {
        #expect(throws: ResolveError.self) { try AddressWithPrefix.parse(text, what: "--ip") }
        do { _ = try AddressWithPrefix.parse(text, what: "--ip") } catch { #expect(error.message.contains(says), "\(error.message)") }
    }

    @Test func anOrdinaryAddressIsTaken() throws {
        #expect(try AddressWithPrefix.parse("10.0.9.5/24", what: "--ip").gateway == "10.0.9.1")
    }
}
