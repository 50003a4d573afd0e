// User-mode networking as the spec carries it: which helper program gives
// the sandbox's network namespace a way out (pasta of Debian's passt, or
// slirp4netns), the ports it publishes on the host, and the helper's
// options. None of this has an OCI field; it travels in org.nook.network.*
// annotations, which `--dry-run` shows and the runtime reads back.

extension Annotation {
    /// `pasta` or `slirp4netns`: the helper nook starts for the sandbox's
    /// network namespace. Absent for `none` and `host`.
    public static let network = "org.nook.network"
    /// Published ports, comma-separated, each as `-p` takes it after
    /// defaults were filled in: `127.0.0.1:8080:80/tcp,0.0.0.0:5353-5354:53-54/udp`.
    public static let networkPorts = "org.nook.network.ports"
    /// The interface's MTU, decimal.
    public static let networkMTU = "org.nook.network.mtu"
    /// `false` turns IPv6 off in the sandbox's network.
    public static let networkIPv6 = "org.nook.network.ipv6"
    /// The sandbox's own address and prefix, `10.0.2.100/24`.
    public static let networkAddress = "org.nook.network.address"
    /// `true`: the sandbox may reach services on the host's loopback
    /// (through the gateway address, or slirp4netns's 10.0.2.2).
    public static let networkHostLoopback = "org.nook.network.host-loopback"
    /// The address inside that the helper answers DNS queries on, passing
    /// them to the host's resolvers (set when /etc/resolv.conf names it).
    public static let networkDNSForward = "org.nook.network.dns-forward"
}

/// A port published on the host: connections to `hostIP:hostPort` (all
/// of the host's addresses without `hostIP`) reach `containerPort` inside.
/// A range maps `count` consecutive ports.
public struct PortMapping: Equatable, Sendable, CustomStringConvertible {
    public enum Proto: String, Sendable, CaseIterable { case tcp, udp }

    /// An IPv4 or IPv6 address of the host, or nil for all of them.
    public var hostIP: String?
    public var hostPort: UInt16
    public var containerPort: UInt16
    public var count: UInt16
    public var proto: Proto

    public init(hostIP: String? = nil, hostPort: UInt16, containerPort: UInt16, count: UInt16 = 1,
                proto: Proto = .tcp) {
        self.hostIP = hostIP
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.count = count
        self.proto = proto
    }

    /// `[hostip:]hostport[-end]:containerport[-end][/tcp|udp]`; the
    /// container port alone publishes the same port number on the host. An
    /// IPv6 host address is written in brackets: `[::1]:8080:80`.
    public static func parse(_ text: String) throws(ResolveError) -> PortMapping {
        let usage = "write [HOSTIP:]HOSTPORT:PORT[/tcp|udp], as in 8080:80, 127.0.0.1:2222:22 or 5000-5009:5000-5009/udp"
        var rest = Substring(text)
        var proto = Proto.tcp
        if let slash = rest.lastIndex(of: "/") {
            guard let p = Proto(rawValue: String(rest[rest.index(after: slash)...]).lowercased()) else {
                throw ResolveError("-p \(text): the protocol must be tcp or udp", hint: usage)
            }
            proto = p
            rest = rest[..<slash]
        }
        var hostIP: String?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                throw ResolveError("-p \(text): an IPv6 address needs a closing ] and a port after it", hint: usage)
            }
            hostIP = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(close, offsetBy: 2)...]
        }
        var parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if hostIP == nil && parts.count == 3 {
            hostIP = parts.removeFirst()
        }
        guard (1...2).contains(parts.count) else { throw ResolveError("-p \(text): not a port mapping", hint: usage) }
        if let ip = hostIP {
            guard IPAddress.isIPv4(ip) || IPAddress.isIPv6(ip) else {
                throw ResolveError("-p \(text): \(ip.isEmpty ? "the host address is empty" : "\(ip) is not an IP address")",
                                   hint: "give an address of this host such as 127.0.0.1 or [::1], or leave it out for all")
            }
        }
        func range(_ s: String, _ what: String) throws(ResolveError) -> (UInt16, UInt16) {
            let ends = s.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            // Digits only, as written by people: UInt16 took "+18110" and "018110" (a fresh try).
            let plain = ends.allSatisfy { e in !e.isEmpty && e.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } && (e == "0" || !e.hasPrefix("0")) }
            guard plain, (1...2).contains(ends.count), let first = UInt16(ends[0]), first > 0,
                  let last = ends.count == 2 ? UInt16(ends[1]) : first else {
                throw ResolveError("-p \(text): \(s.isEmpty ? "the \(what) port is missing" : "\(s) is not a \(what) port or range")",
                                   hint: "ports are 1 to 65535; " + usage)
            }
            guard last >= first else {
                throw ResolveError("-p \(text): the range \(s) ends before it starts", hint: usage)
            }
            return (first, last - first + 1)
        }
        let container = try range(parts[parts.count - 1], "container")
        let host = parts.count == 2 ? try range(parts[0], "host") : container
        guard host.1 == container.1 else {
            func ports(_ n: UInt16) -> String { n == 1 ? "1 port" : "\(n) ports" }
            throw ResolveError("-p \(text): the host range has \(ports(host.1)) and the container range \(ports(container.1))",
                               hint: "give ranges of the same length")
        }
        guard Int(host.0) + Int(host.1) - 1 <= 65535, Int(container.0) + Int(container.1) - 1 <= 65535 else {
            throw ResolveError("-p \(text): the range goes past port 65535", hint: usage)
        }
        return PortMapping(hostIP: hostIP, hostPort: host.0, containerPort: container.0, count: host.1, proto: proto)
    }

    /// The mapping as `parse` reads it, with the host address spelt out
    /// (`0.0.0.0` for all addresses).
    public var description: String {
        let ip = hostIP.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "0.0.0.0"
        return "\(ip):\(Self.span(hostPort, count)):\(Self.span(containerPort, count))/\(proto.rawValue)"
    }

    public static func span(_ first: UInt16, _ count: UInt16) -> String {
        count <= 1 ? String(first) : "\(first)-\(Int(first) + Int(count) - 1)"
    }

    /// The host ports this mapping holds, one by one.
    public var hostPorts: [UInt16] { (0..<count).map { hostPort + $0 } }

    /// Whether two mappings would take the same host port.
    public func overlaps(_ other: PortMapping) -> Bool {
        guard proto == other.proto else { return false }
        let sameAddress = hostIP == nil || other.hostIP == nil || hostIP == other.hostIP
        let a = Int(hostPort)..<(Int(hostPort) + Int(count))
        let b = Int(other.hostPort)..<(Int(other.hostPort) + Int(other.count))
        return sameAddress && a.overlaps(b)
    }

    /// A list written by `description`, comma-separated (the annotation).
    public static func parseList(_ text: String) throws(ResolveError) -> [PortMapping] {
        var out: [PortMapping] = []
        for item in text.split(separator: ",") {
            var s = String(item)
            // "0.0.0.0:" stands for all addresses (no host address given).
            var all = false
            if s.hasPrefix("0.0.0.0:") {
                s = String(s.dropFirst(8))
                all = true
            }
            var m = try parse(s)
            if all { m.hostIP = nil }
            out.append(m)
        }
        return out
    }
}

/// Textual checks of IP addresses, without the network stack (NookSpec is pure).
public enum IPAddress {
    public static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCII) && p.allSatisfy(\.isNumber) && Int(p).map { $0 <= 255 } == true
        }
    }

    public static func isIPv6(_ s: String) -> Bool {
        guard s.contains(":"), s.count <= 45 else { return false }
        let allowed = Set("0123456789abcdefABCDEF:.")
        guard s.allSatisfy({ allowed.contains($0) }) else { return false }
        let chars = Array(s)
        let doubles = (0..<max(chars.count - 1, 0)).filter { chars[$0] == ":" && chars[$0 + 1] == ":" }.count
        guard doubles <= 1 else { return false }
        let groups = s.split(separator: ":", omittingEmptySubsequences: true)
        if let last = groups.last, last.contains(".") {
            guard isIPv4(String(last)) else { return false }
            return doubles == 1 ? groups.count <= 7 : groups.count == 7
        }
        guard groups.allSatisfy({ $0.count <= 4 }) else { return false }
        return doubles == 1 ? groups.count <= 7 : groups.count == 8
    }

    /// 127.0.0.0/8 and ::1: a resolver there is the host's own, which a
    /// sandbox with a network namespace of its own cannot reach.
    public static func isLoopback(_ s: String) -> Bool {
        if isIPv4(s) { return s.hasPrefix("127.") }
        let lower = s.lowercased()
        return lower == "::1" || lower == "0:0:0:0:0:0:0:1" || lower.hasPrefix("::ffff:127.")
    }

    /// The IPv4 address as 32 bits.
    public static func ipv4Value(_ s: String) -> UInt32? {
        guard isIPv4(s) else { return nil }
        return s.split(separator: ".").reduce(UInt32(0)) { $0 << 8 | UInt32($1)! }
    }

    public static func ipv4String(_ v: UInt32) -> String {
        [24, 16, 8, 0].map { String((v >> UInt32($0)) & 0xff) }.joined(separator: ".")
    }
}

/// How the sandbox's network is made, beyond the mode: the options a
/// profile's [network] section and the flags set. nil: the helper's default.
public struct NetworkOptions: Equatable, Sendable {
    /// The interface's MTU, 1280 to 65520.
    public var mtu: Int?
    /// false: IPv4 only.
    public var ipv6: Bool?
    /// The sandbox's address with its prefix, `10.0.2.100/24`.
    public var address: String?
    /// Let the sandbox reach services on the host's loopback.
    public var hostLoopback: Bool?

    public init() {}

    public func overlaid(by top: NetworkOptions) -> NetworkOptions {
        var r = self
        r.mtu = top.mtu ?? mtu
        r.ipv6 = top.ipv6 ?? ipv6
        r.address = top.address ?? address
        r.hostLoopback = top.hostLoopback ?? hostLoopback
        return r
    }

    public var isEmpty: Bool { mtu == nil && ipv6 == nil && address == nil && hostLoopback == nil }
}

/// An address with its prefix length, `10.0.2.100/24`, checked.
public struct AddressWithPrefix: Equatable, Sendable {
    public var address: String
    public var prefix: Int

    public static func parse(_ text: String, what: String) throws(ResolveError) -> AddressWithPrefix {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let hint = "write an IPv4 address with its prefix length, as 10.0.2.100/24"
        guard parts.count == 2, IPAddress.isIPv4(parts[0]), let prefix = Int(parts[1]), (8...30).contains(prefix) else {
            throw ResolveError("\(what) \(text): not an IPv4 address with a prefix length from 8 to 30", hint: hint)
        }
        guard let v = IPAddress.ipv4Value(parts[0]) else { throw ResolveError("\(what) \(text): not an address", hint: hint) }
        let host = v & ~(UInt32.max << UInt32(32 - prefix))
        guard host != 0, host != ~(UInt32.max << UInt32(32 - prefix)) else {
            throw ResolveError("\(what) \(text): that is the network's own or its broadcast address",
                               hint: "choose an address inside the network, as 10.0.2.100/24")
        }
        guard !IPAddress.isLoopback(parts[0]) else {
            throw ResolveError("\(what) \(text): a loopback address cannot be the sandbox's interface address", hint: hint)
        }
        // pasta took 0.0.0.100/24 and left the sandbox without a route;
        // both helpers refused multicast with a message of their own.
        let first = v >> 24
        guard first != 0, first < 224 else {
            let why = first == 0 ? "0.0.0.0/8 is not a network a host is on"
                : "a multicast or reserved address (224.0.0.0 and up) cannot be an interface's address"
            throw ResolveError("\(what) \(text): \(why)", hint: hint)
        }
        return AddressWithPrefix(address: parts[0], prefix: prefix)
    }

    /// The network's first address (slirp4netns's --cidr wants the network).
    public var network: String {
        let v = IPAddress.ipv4Value(address) ?? 0
        return IPAddress.ipv4String(v & (UInt32.max << UInt32(32 - prefix)))
    }

    /// The network's address plus `n`: slirp4netns puts its gateway at +2
    /// and its resolver at +3.
    public func inNetwork(_ n: UInt32) -> String {
        IPAddress.ipv4String((IPAddress.ipv4Value(network) ?? 0) + n)
    }

    /// A gateway for pasta: the first address of the network, or the second
    /// when the sandbox's address is the first.
    public var gateway: String {
        let first = inNetwork(1)
        return first == address ? inNetwork(2) : first
    }

    public var description: String { "\(address)/\(prefix)" }
}

/// What resolving decided about the network.
struct NetworkDecision {
    var mode: NetworkMode
    var annotations: [String: String] = [:]
    /// /etc/resolv.conf for the sandbox (roots of their own, and host roots
    /// with a helper).
    var resolvConf: String
    var warnings: [String] = []
}

extension Resolver {
    /// pasta answers DNS here and passes each query to the host's first
    /// resolver (--dns-forward): a link-local address, so nothing real is
    /// shadowed, and the one podman gives pasta for the same purpose.
    public static let pastaDNS = "169.254.1.1"
    /// slirp4netns's own network when no address is asked for.
    public static let slirpDefault = AddressWithPrefix(address: "10.0.2.100", prefix: 24)
    /// The MTU both helpers get unless asked: the largest pasta offers; a
    /// large MTU is most of these helpers' throughput.
    public static let defaultMTU = 65520

    static func network(_ request: SandboxRequest, host: HostContext, image: Bool) throws(ResolveError)
        -> NetworkDecision
    {
        let ports = request.publish
        var mode: NetworkMode
        var warnings: [String] = []
        if let asked = request.network {
            mode = asked
        } else if image || !ports.isEmpty {
            // Images are containers and expect a network; publishing a port
            // asks for one.
            // pasta needs a route out to copy; slirp4netns works without.
            if host.pasta != nil && (host.hasRouteOut || (host.slirp4netns == nil && !ports.isEmpty)) {
                mode = .pasta
            } else if host.slirp4netns != nil {
                mode = .slirp4netns
            } else if ports.isEmpty && host.pasta != nil {
                mode = .none
                warnings.append("this host has no route out (no default route), which pasta needs, so the image "
                    + "runs with no network but loopback; --network pasta tries anyway, or install slirp4netns")
            } else if ports.isEmpty {
                mode = .none
                warnings.append("no user-mode network helper is installed (pasta or slirp4netns), so the image "
                    + "runs with no network but loopback; install one: sudo apt install passt (or slirp4netns)")
            } else {
                throw ResolveError("-p needs a user-mode network helper, and neither pasta nor slirp4netns is installed",
                                   hint: "sudo apt install passt (or slirp4netns)")
            }
        } else {
            mode = .none
        }
        if mode == .pasta && host.pasta == nil {
            throw ResolveError("--network pasta: pasta is not installed (not found on PATH)",
                               hint: "sudo apt install passt (it provides pasta), or use --network slirp4netns")
        }
        if mode == .slirp4netns && host.slirp4netns == nil {
            throw ResolveError("--network slirp4netns: slirp4netns is not installed (not found on PATH)",
                               hint: "sudo apt install slirp4netns, or use --network pasta")
        }
        if !mode.usesHelper {
            if !ports.isEmpty {
                throw ResolveError("-p \(ports[0]): publishing a port needs --network pasta or slirp4netns, "
                    + "not \(mode.rawValue)",
                                   hint: mode == .host ? "with --network host the sandbox's ports are the host's already; drop -p"
                                       : "use --network pasta (or slirp4netns), or drop -p")
            }
            if !request.networkOptions.isEmpty {
                throw ResolveError("network options (MTU, IPv6, address, host loopback) apply to --network pasta and "
                    + "slirp4netns, not \(mode.rawValue)", hint: "choose one of those, or drop the options")
            }
        }
        for p in ports where p.proto == .udp {
            // Both are faults of the helpers Debian 12 ships, reported here
            // rather than worked around (docs/limitations.md).
            if mode == .slirp4netns && request.networkOptions.hostLoopback != true {
                warnings.append("-p \(p): slirp4netns drops the sandbox's UDP replies to the host while the host's "
                    + "loopback is closed to the sandbox (libslirp; podman#4586): add --host-loopback, or use pasta")
            } else if mode == .pasta && p.hostPort != p.containerPort {
                warnings.append("-p \(p): the pasta of Debian 12 does not return UDP replies when the host port "
                    + "differs from the port inside; publish UDP on the same number (-p \(p.containerPort):\(p.containerPort)/udp)")
            }
        }
        var decision = NetworkDecision(mode: mode, resolvConf: "", warnings: warnings)
        if mode.usesHelper {
            decision.annotations = try helperAnnotations(request, mode: mode, ports: ports)
        }
        let options = request.networkOptions
        switch mode {
        case .none:
            decision.resolvConf = "# nook: --network none, so there is no name server to ask\n"
        case .host:
            decision.resolvConf = host.resolvConf ?? ""
        case .pasta, .slirp4netns:
            let address = try options.address.map { s throws(ResolveError) in
                try AddressWithPrefix.parse(s, what: "network address")
            }
            let resolver = mode == .pasta ? pastaDNS : (address ?? slirpDefault).inNetwork(3)
            let (text, usesHelper) = resolvConf(host.resolvConf, helper: mode, resolver: resolver,
                                                ipv6: options.ipv6 ?? (mode == .pasta))
            decision.resolvConf = text
            if usesHelper && mode == .pasta { decision.annotations[Annotation.networkDNSForward] = pastaDNS }
        }
        return decision
    }

    /// The annotations the runtime starts the helper from.
    static func helperAnnotations(_ request: SandboxRequest, mode: NetworkMode, ports: [PortMapping])
        throws(ResolveError) -> [String: String]
    {
        var a = [Annotation.network: mode.rawValue]
        for (i, p) in ports.enumerated() {
            for q in ports[..<i] where q.overlaps(p) {
                throw ResolveError("-p \(p) and -p \(q) publish the same host port",
                                   hint: "give each mapping host ports of its own")
            }
            if mode == .slirp4netns && p.hostIP.map(IPAddress.isIPv6) == true {
                throw ResolveError("-p \(p): slirp4netns publishes ports on IPv4 addresses only",
                                   hint: "use an IPv4 host address, or --network pasta")
            }
        }
        if !ports.isEmpty { a[Annotation.networkPorts] = ports.map(\.description).joined(separator: ",") }
        let options = request.networkOptions
        let mtu = options.mtu ?? defaultMTU
        guard (1280...65520).contains(mtu) else {
            throw ResolveError("network MTU \(mtu): out of range", hint: "an MTU is from 1280 to 65520")
        }
        a[Annotation.networkMTU] = String(mtu)
        if let v6 = options.ipv6 { a[Annotation.networkIPv6] = String(v6) }
        if let text = options.address {
            let address = try AddressWithPrefix.parse(text, what: "network address")
            if mode == .slirp4netns {
                guard address.prefix <= 25, address.address == address.inNetwork(100) else {
                    throw ResolveError("network address \(text): slirp4netns always gives the sandbox the network's "
                        + "address .100, with its gateway at .2 and DNS at .3",
                                       hint: "give an address ending in .100 in a /25 or larger network, as 10.0.9.100/24")
                }
            }
            a[Annotation.networkAddress] = address.description
        }
        if options.hostLoopback == true { a[Annotation.networkHostLoopback] = "true" }
        return a
    }

    /// The sandbox's resolv.conf: the host's own name servers where the
    /// sandbox can reach them, or the helper's resolver where the host's are
    /// loopback stubs (systemd-resolved's 127.0.0.53, dnsmasq on 127.0.0.1)
    /// that only the host's network namespace has. Search domains and
    /// options are kept. Returns the text and whether it names the helper.
    static func resolvConf(_ hostFile: String?, helper: NetworkMode, resolver: String, ipv6: Bool)
        -> (String, Bool)
    {
        var servers: [String] = []
        var rest: [String] = []
        for raw in (hostFile ?? "").split(separator: "\n") {
            let line = raw.trimming(" \t\r")
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let key = words.first, !key.hasPrefix("#"), !key.hasPrefix(";") else { continue }
            if key == "nameserver", words.count >= 2 {
                let ip = words[1]
                // A scoped IPv6 address (fe80::1%eth0) names a host interface.
                guard !IPAddress.isLoopback(ip), !ip.contains("%"), ipv6 || IPAddress.isIPv4(ip) else { continue }
                servers.append(ip)
            } else if ["search", "domain", "options"].contains(key) {
                rest.append(words.joined(separator: " "))
            }
        }
        if !servers.isEmpty {
            let text = "# nook: the host's name servers, reached through \(helper.rawValue)\n"
                + servers.prefix(3).map { "nameserver \($0)\n" }.joined() + rest.map { $0 + "\n" }.joined()
            return (text, false)
        }
        let text = "# nook: \(helper.rawValue) answers here and asks the host's name servers\n"
            + "nameserver \(resolver)\n" + rest.map { $0 + "\n" }.joined()
        return (text, true)
    }
}

extension Resolver {
    /// A host-root sandbox with a helper sees the host's /etc, whose
    /// resolv.conf may name a loopback stub it cannot reach: nook's own is
    /// bound over it. Over a regular file only: a symlink there (to
    /// /run/systemd/resolve/...) would have to be followed through the
    /// host's read-only /etc, so the host's file stays, with a warning.
    static func hostRootResolvConf(host: HostContext, network: NetworkDecision, out: inout Resolution) -> [Mount] {
        guard network.mode.usesHelper else { return [] }
        guard host.resolvConfIsFile, host.resolvConf != nil else {
            out.warnings.append("the host's /etc/resolv.conf is a symbolic link (or missing), so the sandbox keeps it "
                + "as it is; if it names a resolver on the host's loopback, names will not resolve inside. "
                + "Run an image or --rootfs for a resolv.conf of nook's own")
            return []
        }
        let path = host.sandboxDir + "/resolv.conf"
        out.generatedFiles[path] = network.resolvConf
        return [Mount(destination: "/etc/resolv.conf", type: "bind", source: path,
                      options: ["bind", "ro", "nosuid", "nodev", "noexec"])]
    }
}
