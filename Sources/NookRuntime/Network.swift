#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import CNookSys
import NookSpec
import NookSupport

/// The sandbox's user-mode network as the launcher carries it out: which
/// helper, with which options, from the spec's org.nook.network.*
/// annotations.
public struct NetworkPlan: Equatable, Sendable {
    public enum Helper: String, Sendable { case pasta, slirp4netns }
    public var helper: Helper
    public var ports: [PortMapping] = []
    public var mtu = Resolver.defaultMTU
    /// nil: the helper's default (pasta: on where the host has IPv6;
    /// slirp4netns: off, its IPv6 is experimental).
    public var ipv6: Bool?
    public var address: AddressWithPrefix?
    public var hostLoopback = false
    public var dnsForward: String?
    /// The sandbox's runtime directory on the host, for the helper's log
    /// and socket (set by the launcher, not from the spec).
    public var directory = ""

    /// Descriptors the helper finds at 3, 4, ...: the sandbox's network
    /// namespace, its user namespace, the readiness pipe, and (slirp4netns)
    /// the pipe whose end tells it to exit.
    static let netnsFD: Int32 = 3, usernsFD: Int32 = 4, readyFD: Int32 = 5, exitFD: Int32 = 6

    /// The plan the annotations describe; nil when the sandbox needs no helper.
    public static func from(_ annotations: [String: String]) throws -> NetworkPlan? {
        guard let name = annotations[Annotation.network] else { return nil }
        guard let helper = Helper(rawValue: name) else {
            throw PlanFailure("annotation \(Annotation.network): \(name) is not a network helper",
                              hint: "use pasta or slirp4netns")
        }
        var plan = NetworkPlan(helper: helper)
        do {
            if let ports = annotations[Annotation.networkPorts] { plan.ports = try PortMapping.parseList(ports) }
            if let a = annotations[Annotation.networkAddress] {
                plan.address = try AddressWithPrefix.parse(a, what: "annotation \(Annotation.networkAddress)")
            }
        } catch {
            throw PlanFailure("annotation: \(error.message)", hint: error.hint)
        }
        if let m = annotations[Annotation.networkMTU] {
            guard let mtu = Int(m), (1280...65520).contains(mtu) else {
                throw PlanFailure("annotation \(Annotation.networkMTU): \(m) is not an MTU from 1280 to 65520")
            }
            plan.mtu = mtu
        }
        plan.ipv6 = annotations[Annotation.networkIPv6].map { $0 == "true" }
        plan.hostLoopback = annotations[Annotation.networkHostLoopback] == "true"
        plan.dnsForward = annotations[Annotation.networkDNSForward]
        return plan
    }

    /// pasta's command line. It joins the sandbox's user and network
    /// namespaces itself, configures the interface (--config-net), and
    /// writes its pid to the readiness pipe once it is set up.
    ///
    /// What keeps the host safe: `--tcp-ns none --udp-ns none` (pasta would
    /// otherwise forward the sandbox's own loopback ports to the host's
    /// loopback, every port the host listens on); `--no-map-gw` (connections
    /// to the gateway address would otherwise reach the host's loopback);
    /// `-t none -u none` unless ports are published (the default, auto,
    /// publishes every port the sandbox listens on).
    public func pastaArguments(program: String) -> [String] {
        var args = [program, "--foreground", "--quiet", "--config-net",
                    "--netns", "/proc/self/fd/\(Self.netnsFD)", "--userns", "/proc/self/fd/\(Self.usernsFD)",
                    "--pid", "/proc/self/fd/\(Self.readyFD)",
                    "--tcp-ns", "none", "--udp-ns", "none", "--mtu", String(mtu)]
        if !hostLoopback { args.append("--no-map-gw") }
        for proto in PortMapping.Proto.allCases {
            let flag = proto == .tcp ? "--tcp-ports" : "--udp-ports"
            let mine = ports.filter { $0.proto == proto }
            if mine.isEmpty { args += [flag, "none"] }
            for p in mine {
                let host = PortMapping.span(p.hostPort, p.count), inside = PortMapping.span(p.containerPort, p.count)
                args += [flag, (p.hostIP.map { $0 + "/" } ?? "") + host + ":" + inside]
            }
        }
        if ipv6 == false { args.append("--ipv4-only") }
        if let a = address {
            args += ["--address", a.address, "--netmask", String(a.prefix), "--gateway", a.gateway]
        }
        if let dns = dnsForward { args += ["--dns-forward", dns] }
        return args
    }

    /// slirp4netns's command line. `inUserns`: it was started inside the
    /// sandbox's user namespace, as root there, so it can use its own
    /// sandbox (a mount namespace of its own with an empty root, and a
    /// seccomp filter) and must not join the namespace again.
    public func slirpArguments(program: String, apiSocket: String?, inUserns: Bool) -> [String] {
        var args = [program, "--configure", "--mtu=\(mtu)", "--netns-type=path",
                    "--ready-fd=\(Self.readyFD)", "--exit-fd=\(Self.exitFD)"]
        if inUserns {
            args += ["--enable-sandbox", "--enable-seccomp"]
        } else {
            args.append("--userns-path=/proc/self/fd/\(Self.usernsFD)")
        }
        // Without it, 10.0.2.2 is the host's 127.0.0.1.
        if !hostLoopback { args.append("--disable-host-loopback") }
        if ipv6 == true { args.append("--enable-ipv6") }
        if let a = address { args.append("--cidr=\(a.network)/\(a.prefix)") }
        if let apiSocket { args.append("--api-socket=\(apiSocket)") }
        args += ["/proc/self/fd/\(Self.netnsFD)", "tap0"]
        return args
    }

    /// slirp4netns's API requests that publish the ports, one per port.
    public func slirpForwards() -> [String] {
        let guest = (address ?? Resolver.slirpDefault).address
        return ports.flatMap { p in
            (0..<p.count).map { i in
                "{\"execute\": \"add_hostfwd\", \"arguments\": {\"proto\": \"\(p.proto.rawValue)\", "
                    + "\"host_addr\": \"\(p.hostIP ?? "0.0.0.0")\", \"host_port\": \(Int(p.hostPort) + Int(i)), "
                    + "\"guest_addr\": \"\(guest)\", \"guest_port\": \(Int(p.containerPort) + Int(i))}}"
            }
        }
    }
}

/// A network helper that could not be started or stopped working: names
/// the program, what it said, and the fix.
public struct NetworkFailure: NookFailure {
    public let message: String
    public let hint: String?
    public var description: String { message }
}

/// Ports published on the host are tried before anything starts, so that
/// a port another program holds is an error naming it, not a sandbox
/// whose server cannot be reached (pasta would exit; slirp4netns says only
/// "slirp_add_hostfwd failed").
public enum PortCheck {
    public static func check(_ ports: [PortMapping]) throws {
        for mapping in ports {
            for port in mapping.hostPorts {
                let err = tryBind(mapping.hostIP, port: port, proto: mapping.proto)
                guard err != 0 else { continue }
                let address = mapping.hostIP ?? "all addresses"
                let what = "-p \(mapping): host port \(port)/\(mapping.proto.rawValue) on \(address)"
                switch err {
                case EADDRINUSE:
                    throw NetworkFailure(message: "\(what) is taken by another program (\(Errno(err)))",
                                         hint: "choose another host port, or stop what holds it "
                                             + "(ss -\(mapping.proto == .tcp ? "t" : "u")lnp 'sport = :\(port)' shows it)")
                case EACCES:
                    throw NetworkFailure(message: "\(what) needs privileges on the host (\(Errno(err)))",
                                         hint: "use a host port from 1024 up (-p 8080:\(mapping.containerPort)), or lower "
                                             + "sysctl net.ipv4.ip_unprivileged_port_start")
                case EADDRNOTAVAIL:
                    throw NetworkFailure(message: "\(what): \(address) is not an address of this host (\(Errno(err)))",
                                         hint: "give an address the host has (ip -br addr), or leave it out for all")
                default:
                    throw NetworkFailure(message: "\(what) cannot be bound: \(Errno(err))", hint: nil)
                }
            }
        }
    }

    /// 0 when the port could be bound now, else the errno. No SO_REUSEPORT:
    /// a port someone else holds must fail here as it would for the helper.
    static func tryBind(_ ip: String?, port: UInt16, proto: PortMapping.Proto) -> Int32 {
        let type = proto == .tcp ? SOCK_STREAM : SOCK_DGRAM
        let v6 = ip.map(IPAddress.isIPv6) ?? true
        var fd = socket(v6 ? AF_INET6 : AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var family = v6 ? AF_INET6 : AF_INET
        if fd < 0 && ip == nil {
            // No IPv6 on this host: all addresses are IPv4's.
            fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            family = AF_INET
        }
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var one: Int32 = 1
        // As the helpers bind: a port in TIME_WAIT is free.
        if proto == .tcp { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var rc: Int32
        if family == AF_INET6 {
            var zero: Int32 = 0
            // All addresses means IPv4's too (pasta binds both).
            if ip == nil { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size)) }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            if let ip { _ = inet_pton(AF_INET6, ip, &sa.sin6_addr) } else { sa.sin6_addr = in6addr_any }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            if let ip { _ = inet_pton(AF_INET, ip, &sa.sin_addr) } else { sa.sin_addr.s_addr = 0 }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        if rc != 0 { return errno }
        if proto == .tcp && listen(fd, 1) != 0 { return errno }
        return 0
    }
}
