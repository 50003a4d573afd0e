// Merging the layers of a profile, parents first: a scalar of a later
// layer replaces an earlier one; a list appends or replaces as the layer
// says, and can remove inherited items; a table of names (environment,
// rlimits) merges name by name. Then the checks that need the whole
// profile (conflicts), and the SandboxRequest it stands for.
import NookSpec

/// A profile's settings after merging, each with where it was set.
public struct MergedSettings: Sendable {
    public var scalars: [String: Setting] = [:]
    public var lists: [String: [Setting]] = [:]
    public var maps: [String: [(name: String, setting: Setting)]] = [:]

    public init() {}
}

enum Merger {
    static func merge(_ layers: [Layer]) -> (MergedSettings, [ProfileIssue]) {
        var m = MergedSettings()
        var issues: [ProfileIssue] = []
        for layer in layers {
            for (key, setting) in layer.scalars { m.scalars[key] = setting }
            for key in layer.lists.keys.sorted() {
                guard let change = layer.lists[key] else { continue }
                var current = change.replace ? [] : m.lists[key] ?? []
                for (identity, origin) in change.remove {
                    guard let i = current.firstIndex(where: { $0.identity == identity }) else {
                        issues.append(
                            ProfileIssue(
                                origin, key: key,
                                "\(identity) is not in the inherited list; nothing to remove",
                                hint: current.isEmpty
                                    ? "the profiles this one extends set no \(key)"
                                    : "the inherited items are \(current.map(\.identity).joined(separator: ", "))"))
                        continue
                    }
                    current.remove(at: i)
                }
                for setting in change.add {
                    current.removeAll { $0.identity == setting.identity }
                    current.append(setting)
                }
                m.lists[key] = current
            }
            for (key, entries) in layer.maps {
                var current = m.maps[key] ?? []
                for entry in entries {
                    if let i = current.firstIndex(where: { $0.name == entry.name }) {
                        current[i] = entry
                    } else {
                        current.append(entry)
                    }
                }
                m.maps[key] = current
            }
            issues += environment(layer, &m)
        }
        return (m, issues)
    }

    /// `unset` removes a name that parents set or pass; a later `set` or
    /// `pass` of the name takes it off the unset list again.
    static func environment(_ layer: Layer, _ m: inout MergedSettings) -> [ProfileIssue] {
        let unset = layer.lists["environment.unset"]?.add ?? []
        let set =
            (layer.maps["environment.set"] ?? []).map { ($0.name, $0.setting.origin) }
            + (layer.lists["environment.pass"]?.add ?? []).map { ($0.identity, $0.origin) }
        var issues: [ProfileIssue] = []
        for u in unset {
            if let (_, origin) = set.first(where: { $0.0 == u.identity }) {
                issues.append(
                    ProfileIssue(
                        u.origin, key: "environment.unset",
                        "\(u.identity) is also set at line \(origin.position.line) of this file; expected one or the other"
                    ))
            }
            m.maps["environment.set"]?.removeAll { $0.name == u.identity }
            m.lists["environment.pass"]?.removeAll { $0.identity == u.identity }
        }
        let names = Set(set.map(\.0))
        m.lists["environment.unset"]?.removeAll { names.contains($0.identity) && !unset.contains($0) }
        return issues
    }

    // MARK: Whole-profile checks

    /// `callerUID`: keep-id keeps it, so another uid conflicts. Whether
    /// a uid is mapped at all depends on the host's subordinate ids and is
    /// checked when the sandbox is resolved.
    static func conflicts(_ m: MergedSettings, callerUID: String?) -> [ProfileIssue] {
        var issues: [ProfileIssue] = []
        if let userns = m.scalars["user.userns"], case .string("keep-id") = userns.value,
            let uid = m.scalars["user.uid"], case .integer(let id) = uid.value, String(id) != callerUID
        {
            issues.append(
                ProfileIssue(
                    uid.origin, key: "user.uid",
                    "uid \(id) conflicts with userns = \"keep-id\" (\(userns.origin)), which keeps your own uid"
                        + (callerUID.map { " \($0)" } ?? "") + "; expected no uid, or userns = \"root\"",
                    hint: "keep-id is for files that stay yours; to run as another uid inside, use userns = \"root\""))
        }
        if case .bool(true)? = m.scalars["filesystem.read_only_root"]?.value,
            let overlay = m.scalars["filesystem.overlay"], case .string(let o) = overlay.value,
            o == "native" || o == "fuse",
            let ro = m.scalars["filesystem.read_only_root"]
        {
            issues.append(
                ProfileIssue(
                    overlay.origin, key: "filesystem.overlay",
                    "a writable \(o) overlay conflicts with read_only_root = true (\(ro.origin)); expected one of them",
                    hint: "set overlay = \"none\", or read_only_root = false"))
        }
        for required in m.lists["limits.required"] ?? [] where m.scalars["limits." + required.identity] == nil {
            issues.append(
                ProfileIssue(
                    required.origin, key: "limits.required",
                    "\(required.identity) is required but no limits.\(required.identity) is set; expected a value for it",
                    hint: "set limits.\(required.identity), or remove it from required"))
        }
        if let high = m.scalars["limits.memory_high"], let max = m.scalars["limits.memory"],
            case .limit(.value(let h)) = high.value, case .limit(.value(let x)) = max.value, h > x
        {
            issues.append(
                ProfileIssue(
                    high.origin, key: "limits.memory_high",
                    "\(Sizes.format(h)) is above memory = \(Sizes.format(x)) (\(max.origin)); expected at most memory",
                    hint: "memory_high throttles before memory kills; keep it lower"))
        }
        let dropped = m.lists["security.cap_drop"] ?? []
        for add in m.lists["security.cap_add"] ?? [] {
            if let drop = dropped.first(where: { $0.identity == add.identity || $0.identity == "ALL" }) {
                let later =
                    add.origin.file == drop.origin.file && add.origin.position.line > drop.origin.position.line
                    ? add : drop
                issues.append(
                    ProfileIssue(
                        later.origin, key: later == add ? "security.cap_add" : "security.cap_drop",
                        "\(add.identity) is both added (\(add.origin)) and dropped (\(drop.origin)); expected one of them",
                        hint: "to undo an inherited item, use { remove = [\"\(add.identity)\"] }"))
            }
        }
        let hidden = m.lists["filesystem.hidden"] ?? []
        for bind in m.lists["filesystem.binds"] ?? [] {
            if let h = hidden.first(where: { $0.identity == bind.identity }) {
                issues.append(
                    ProfileIssue(
                        bind.origin, key: "filesystem.binds",
                        "\(bind.identity) is bound here and hidden at \(h.origin); expected one of them",
                        hint: "remove it from hidden with { remove = [\"\(bind.identity)\"] }, or drop the bind"))
            }
        }
        return issues
    }

    // MARK: The request

    /// `environment` is the caller's: a passed name it does not hold is
    /// left out rather than set empty.
    static func request(_ m: MergedSettings, environment: [String: String]) -> SandboxRequest {
        var r = SandboxRequest()
        func string(_ key: String) -> String? {
            if case .string(let s)? = m.scalars[key]?.value { return s }
            return nil
        }
        func bool(_ key: String) -> Bool? {
            if case .bool(let b)? = m.scalars[key]?.value { return b }
            return nil
        }
        func limit(_ key: String) -> LimitValue? {
            if case .limit(let v)? = m.scalars[key]?.value { return v }
            return nil
        }
        func integer(_ key: String) -> Int64? {
            if case .integer(let n)? = m.scalars[key]?.value { return n }
            return nil
        }
        func strings(_ key: String) -> [String] {
            (m.lists[key] ?? []).compactMap { if case .string(let s) = $0.value { s } else { nil } }
        }

        if case .strings(let argv)? = m.scalars["process.command"]?.value { r.command = argv }
        if case .strings(let argv)? = m.scalars["process.entrypoint"]?.value { r.entrypoint = argv }
        r.user = string("user.user")
        r.rootEmulation = bool("user.root_emulation")
        r.image = string("filesystem.image")
        r.workdir = string("process.workdir")
        r.terminal = bool("process.terminal")
        r.interactive = bool("process.interactive")
        r.explain = bool("process.explain")
        if case .umask(let u)? = m.scalars["process.umask"]?.value { r.umask = u }
        r.preserveFds = integer("process.preserve_fds").map { Int($0) }

        r.userns = string("user.userns").flatMap(UsernsMode.init(rawValue:))
        r.uid = integer("user.uid").map { UInt32($0) }
        r.gid = integer("user.gid").map { UInt32($0) }

        r.readOnly = bool("filesystem.read_only_root")
        if let root = string("filesystem.root"), root != "host" { r.rootfs = root }
        r.persist = string("filesystem.persist")
        r.overlay = string("filesystem.overlay").flatMap(OverlayChoice.init(rawValue:))
        r.bindWorkspace = bool("filesystem.workspace")
        r.home = string("filesystem.home").flatMap(HomeMode.init(rawValue:))
        r.binds = (m.lists["filesystem.binds"] ?? []).compactMap { if case .bind(let b) = $0.value { b } else { nil } }
        r.tmpfs = (m.lists["filesystem.tmpfs"] ?? []).compactMap { s in
            guard case .tmpfs(let t) = s.value else { return nil }
            var options: [String] = []
            if let size = t.size { options.append("size=\(size)") }
            if let mode = t.mode { options.append("mode=\(mode)") }
            return TmpfsMount(destination: t.destination, options: options)
        }
        r.readOnlyPaths = strings("filesystem.read_only")
        r.hiddenPaths = strings("filesystem.hidden")
        if m.lists["filesystem.host_entries"] != nil { r.hostEntries = strings("filesystem.host_entries") }

        r.clearEnv = bool("environment.clear")
        r.env =
            (m.maps["environment.set"] ?? []).compactMap { e in
                if case .string(let v) = e.setting.value { "\(e.name)=\(v)" } else { nil }
            } + strings("environment.pass").filter { environment[$0] != nil }
        r.unsetEnv = strings("environment.unset")
        r.envFiles = strings("environment.files")

        r.network = string("network.mode").flatMap(NetworkMode.init(rawValue:))
        r.hostname = string("network.hostname")
        r.publish = strings("network.publish").compactMap { try? PortMapping.parseList($0).first }
        r.networkOptions.mtu = integer("network.mtu").map { Int($0) }
        r.networkOptions.ipv6 = bool("network.ipv6")
        r.networkOptions.address = string("network.address")
        r.networkOptions.hostLoopback = bool("network.host_loopback")

        r.limits.memory = limit("limits.memory")
        r.limits.memorySwap = limit("limits.swap")
        r.limits.memoryHigh = limit("limits.memory_high")
        r.limits.pids = limit("limits.pids")
        switch m.scalars["limits.cpus"]?.value {
        case .number(let n)?: r.limits.cpus = n
        case .limit(.max)?: r.limits.cpus = .infinity
        default: break
        }
        r.limits.cpuWeight = integer("limits.cpu_weight").map { UInt64($0) }
        r.limits.ioWeight = integer("limits.io_weight").map { UInt64($0) }
        r.limits.allowedCPUs = string("limits.allowed_cpus")
        r.limits.required = Set(strings("limits.required"))
        r.cgroupManager = string("limits.cgroup_manager").flatMap(CgroupManagerChoice.init(rawValue:))
        r.rlimits = (m.maps["limits.rlimits"] ?? []).compactMap { e in
            guard case .rlimit(let soft, let hard) = e.setting.value else { return nil }
            return Rlimit(type: "RLIMIT_" + e.name.uppercased(), hard: hard, soft: soft)
        }

        r.capAdd = strings("security.cap_add")
        r.capDrop = strings("security.cap_drop")
        r.seccomp = string("security.seccomp").flatMap(SeccompMode.init(rawValue:))
        r.seccompAllow = strings("security.seccomp_allow")
        r.health = health(m)
        return r
    }

    static func health(_ m: MergedSettings) -> HealthRequest {
        var h = HealthRequest()
        for (key, setting) in m.scalars where key.hasPrefix("health.") {
            let name = String(key.dropFirst(7))
            let field = ["start_period": "startPeriod", "on_unhealthy": "onUnhealthy"][name] ?? name
            h.origins[field] = "\(key) (\(setting.origin))"
            switch (name, setting.value) {
            case ("command", .strings(let argv)): h.command = argv
            case ("command", .string(let text)): h.command = ["/bin/sh", "-c", text]
            case ("enabled", .bool(let b)): h.enabled = b
            case ("interval", .string(let d)): h.interval = Durations.seconds(d)
            case ("timeout", .string(let d)): h.timeout = Durations.seconds(d)
            case ("start_period", .string(let d)): h.startPeriod = Durations.seconds(d)
            case ("retries", .integer(let n)): h.retries = Int(n)
            case ("on_unhealthy", .string(let a)): h.onUnhealthy = HealthAction(rawValue: a)
            default: break
            }
        }
        return h
    }
}
