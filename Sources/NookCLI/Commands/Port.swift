import NookRuntime
import NookSpec
import NookState
import NookSupport

/// `nook port`: a detached container's published ports.
enum PortCommand {
    static let usage = "nook port CONTAINER [PORT[/PROTO]]"
    static let summary = "list a detached container's published ports"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print each published port of the container as PORT/PROTO -> HOSTIP:HOSTPORT
        (0.0.0.0 for all of the host's IPv4 addresses, [::] for all IPv6 ones, which
        pasta also listens on unless IPv6 is off), from the ports it was started
        with (-p). With PORT, only the host addresses of that port inside.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "port", help: help) else { return 0 }
        guard (1...2).contains(parsed.positionals.count) else { throw UsageFailure("port: name a container", hint: usage) }
        let store = try Containers.store()
        let record = try Containers.find(parsed.positionals[0], in: store)
        let mappings = try PortMapping.parseList(record.annotations[Annotation.networkPorts] ?? "")
        // pasta listens on IPv6 too where no address was given (one
        // dual-stack socket) unless IPv6 is off; slirp4netns on IPv4 only.
        let dualStack = record.annotations[Annotation.network] == "pasta"
            && record.annotations[Annotation.networkIPv6] != "false"
        var lines: [(port: UInt16, proto: String, text: String)] = []
        for m in mappings {
            for i in 0..<m.count {
                let port = m.hostPort + i
                let hosts = m.hostIP.map { [($0.contains(":") ? "[\($0)]" : $0)] }
                    ?? (dualStack ? ["0.0.0.0", "[::]"] : ["0.0.0.0"])
                for host in hosts { lines.append((m.containerPort + i, m.proto.rawValue, host + ":\(port)")) }
            }
        }
        if parsed.positionals.count == 2 {
            let want = parsed.positionals[1]
            let parts = want.split(separator: "/").map(String.init)
            guard let port = UInt16(parts[0]), parts.count <= 2 else {
                throw UsageFailure("port: \(want) is not a port", hint: "as in 80 or 53/udp")
            }
            let proto = parts.count == 2 ? parts[1].lowercased() : "tcp"
            let found = lines.filter { $0.port == port && $0.proto == proto }
            guard !found.isEmpty else {
                throw ContainerFailure("container \(parsed.positionals[0]) publishes no port \(port)/\(proto)")
            }
            writeStdout(found.map { $0.text + "\n" }.joined())
            return 0
        }
        writeStdout(lines.map { "\($0.port)/\($0.proto) -> \($0.text)\n" }.joined())
        return 0
    }
}
