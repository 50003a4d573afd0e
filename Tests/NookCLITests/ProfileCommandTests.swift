import Testing

@testable import NookCLI
@testable import NookProfile

/// Help is generated from the declarations, so the new command and option
/// show up wherever they are declared.
struct ProfileCommandTests {
    @Test func nookHelpListsTheProfileCommand() {
        #expect(Main.help.split(separator: "\n").contains { $0.hasPrefix("  profile ") && $0.hasSuffix(" list, show and check profiles") })
        // Names as long as healthcheck keep the summaries in one column.
        #expect(Main.help.contains("  healthcheck  run a container's health check once"))
    }

    @Test func profileHelpListsEverySubcommandAndCommonOption() {
        for sub in ProfileCommand.subcommands { #expect(ProfileCommand.help.contains("  \(sub.name) ")) }
        #expect(ProfileCommand.help.contains("--log-level LEVEL"))
        #expect(ProfileCommand.help.contains("nook-profile(5)"))
    }

    @Test func runHelpHasTheProfileOption() {
        #expect(RunCommand.help.contains("    --profile NAME|FILE"))
    }

    @Test func aProfileOptionIsParsedLikeAnyOther() throws {
        let parsed = try OptionParser.parse(
            ["--profile", "build", "--network", "host", "--", "make"],
            options: RunCommand.options, command: "run", stopAtPositional: true)
        #expect(parsed.value("profile") == "build")
        #expect(parsed.positionals == ["make"])
    }
}

/// Every flag of `nook run` that says what the sandbox gets has a profile
/// key. A new flag fails this test until it is given one here (and in
/// the schema and man/nook-profile.5).
struct FlagKeyTests {
    /// Flag -> profile key. Flags about the run itself map to nil.
    static let keys: [String: String?] = [
        "profile": nil, "dry-run": nil, "verbose": nil, "debug": nil, "log-level": nil, "log-format": nil, "help": nil,
        "tty": "process.terminal", "interactive": "process.interactive", "userns": "user.userns",
        "network": "network.mode", "hostname": "network.hostname", "publish": "network.publish", "mtu": "network.mtu",
        "no-ipv6": "network.ipv6", "ip": "network.address", "host-loopback": "network.host_loopback", "bind": "filesystem.binds",
        "tmpfs": "filesystem.tmpfs", "workdir": "process.workdir", "no-workspace": "filesystem.workspace",
        "no-root-emulation": "user.root_emulation",
        "env": "environment.set", "env-file": "environment.files", "clearenv": "environment.clear",
        "preserve-fds": "process.preserve_fds", "cap-add": "security.cap_add", "cap-drop": "security.cap_drop",
        "seccomp": "security.seccomp", "ulimit": "limits.rlimits", "umask": "process.umask",
        "explain": "process.explain", "image": "filesystem.image", "entrypoint": "process.entrypoint",
        "user": "user.user", "seccomp-allow": "security.seccomp_allow", "rootfs": "filesystem.root", "read-only": "filesystem.read_only_root",
        "overlay": "filesystem.overlay", "persist": "filesystem.persist",
        // The cgroup flags, under the names they are likely to get.
        "memory": "limits.memory", "memory-swap": "limits.swap", "swap": "limits.swap",
        "memory-high": "limits.memory_high",
        "pids-limit": "limits.pids", "pids": "limits.pids", "cpus": "limits.cpus", "cpu-weight": "limits.cpu_weight",
        "io-weight": "limits.io_weight", "cpuset-cpus": "limits.allowed_cpus", "allowed-cpus": "limits.allowed_cpus",
        "cgroup-manager": "limits.cgroup_manager", "require-limits": "limits.required", "stats": nil,
        // How one detached container is supervised, not what its sandbox
        // gets: no profile keys. A profile is used by foreground runs too,
        // where these mean nothing; a service's supervision lives in its
        // systemd unit (nook generate systemd writes the stop timeout into
        // ExecStop and the restart policy into Restart=), and a program's
        // own stop signal comes with its image (StopSignal). [health] is the
        // exception: the issue asks for it, and a check is part of what a
        // program is, like its image's Healthcheck.
        "detach": nil, "name": nil, "rm": nil, "restart": nil, "stop-signal": nil, "stop-timeout": nil,
        "log-max-size": nil,
        // The health check: [health], for a detached container.
        "health-cmd": "health.command", "health-interval": "health.interval", "health-timeout": "health.timeout",
        "health-start-period": "health.start_period", "health-retries": "health.retries",
        "health-on-unhealthy": "health.on_unhealthy", "no-healthcheck": "health.enabled",
        // How the image is fetched, not what the sandbox gets.
        "pull": nil, "platform": nil, "tls-ca": nil, "authfile": nil,
    ]

    @Test func everyRunFlagHasAProfileKey() {
        for option in RunCommand.options {
            guard let key = Self.keys[option.long] else {
                Issue.record("--\(option.long) has no profile key: add one to the schema, the man page and this table")
                continue
            }
            if let key { #expect(Schema.byPath[key] != nil, "--\(option.long) maps to \(key), which the schema lacks") }
        }
    }
}
