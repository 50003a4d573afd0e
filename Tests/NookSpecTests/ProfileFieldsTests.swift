import NookSpec
import Testing

/// The request fields profiles brought, as the resolver honours them.
struct ProfileFieldsTests {
    let host = HostContext(
        uid: 1000, gid: 1000, userName: "u", home: "/home/u", cwd: "/home/u/proj",
        environment: ["HOME": "/home/u", "PATH": "/usr/bin", "EDITOR": "vi", "LD_PRELOAD": "x.so"],
        uidRanges: [IDRange(start: 100_000, count: 65536)],
        gidRanges: [IDRange(start: 100_000, count: 65536)],
        sourceIsDirectory: ["/home/u": true, "/srv": true, "/etc/shadow": false, "/data": true])

    func mount(_ spec: Spec, at path: String) -> Mount? { spec.mounts?.first { $0.destination == path } }

    @Test func aHiddenDirectoryIsAnEmptyReadOnlyTmpfsAndAHiddenFileIsMasked() throws {
        var r = SandboxRequest()
        r.hiddenPaths = ["/srv", "/etc/shadow", "/not/there"]
        let spec = try Resolver.resolve(r, host: host).spec
        let srv = try #require(mount(spec, at: "/srv"))
        #expect(srv.type == "tmpfs" && srv.options?.contains("ro") == true)
        #expect(spec.linux?.maskedPaths?.suffix(2) == ["/etc/shadow", "/not/there"])
    }

    @Test func aBindBelowAHiddenDirectoryIsMountedAfterIt() throws {
        var r = SandboxRequest()
        r.hiddenPaths = ["/srv"]
        r.binds = [BindMount(source: "/data", destination: "/srv/data", readOnly: true)]
        let mounts = try Resolver.resolve(r, host: host).spec.mounts ?? []
        let hide = try #require(mounts.firstIndex { $0.destination == "/srv" })
        let bind = try #require(mounts.firstIndex { $0.destination == "/srv/data" })
        #expect(hide < bind)
    }

    @Test func hidingAPathThatIsAlsoBoundIsRefused() {
        var r = SandboxRequest()
        r.hiddenPaths = ["/data"]
        r.binds = [BindMount(source: "/data", destination: "/data", readOnly: false)]
        #expect(throws: ResolveError.self) { try Resolver.resolve(r, host: host) }
    }

    @Test func hostEntriesHideEveryOtherTopLevelDirectoryAndTheMasksInsideThem() throws {
        var h = host
        h.rootEntries = [
            "usr": true, "etc": true, "home": true, "sys": true, "proc": true, "tmp": true,
            "data.img": false,
        ]
        var r = SandboxRequest()
        r.hostEntries = ["/usr", "etc"]
        let spec = try Resolver.resolve(r, host: h).spec
        #expect(mount(spec, at: "/home")?.options?.contains("ro") == true)
        #expect(mount(spec, at: "/sys")?.type == "tmpfs")
        #expect(mount(spec, at: "/usr") == nil && mount(spec, at: "/etc") == nil)
        #expect(mount(spec, at: "/proc")?.type == "proc")
        #expect(spec.linux?.maskedPaths?.contains("/data.img") == true)
        // /sys is empty, so its default mask cannot (and need not) be applied.
        #expect(spec.linux?.maskedPaths?.contains("/sys/firmware") == false)
    }

    @Test func readOnlyPathsAreAddedToTheSpec() throws {
        var r = SandboxRequest()
        r.readOnlyPaths = ["/home/u/proj/.git"]
        let spec = try Resolver.resolve(r, host: host).spec
        #expect(spec.linux?.readonlyPaths?.last == "/home/u/proj/.git")
    }

    @Test func unsetRemovesInheritedVariablesButAnExplicitSettingWins() throws {
        var r = SandboxRequest()
        r.unsetEnv = ["LD_PRELOAD", "EDITOR"]
        r.env = ["EDITOR=nano"]
        let env = try Resolver.resolve(r, host: host).spec.process?.env ?? []
        #expect(!env.contains { $0.hasPrefix("LD_PRELOAD=") })
        #expect(env.contains("EDITOR=nano"))
    }

    @Test func aScratchHomeIsWritable() throws {
        var r = SandboxRequest()
        #expect(try mount(Resolver.resolve(r, host: host).spec, at: "/home/u")?.options?.contains("ro") == true)
        r.home = .scratch
        #expect(try mount(Resolver.resolve(r, host: host).spec, at: "/home/u")?.options?.contains("ro") == false)
    }

    @Test func aWritableRootWarnsThatTheHostRootStaysReadOnly() throws {
        var r = SandboxRequest()
        r.overlay = .fuse
        let out = try Resolver.resolve(r, host: host)
        #expect(out.warnings.contains { $0.contains("stays read-only") })
        #expect(out.spec.root?.readonly == true)
        r.readOnly = true
        #expect(throws: ResolveError.self) { try Resolver.resolve(r, host: host) }
    }

    @Test func aUidInsideMustBeMappedAndKeepIDKeepsTheCallers() throws {
        var r = SandboxRequest()
        r.userns = .root
        r.uid = 1000
        r.gid = 65536
        let user = try Resolver.resolve(r, host: host).spec.process?.user
        #expect(user?.uid == 1000 && user?.gid == 65536)
        r.uid = 70000
        #expect(throws: ResolveError.self) { try Resolver.resolve(r, host: host) }
        r.userns = .keepID
        r.uid = 0
        #expect(throws: ResolveError.self) { try Resolver.resolve(r, host: host) }
        r.uid = 1000
        r.gid = nil
        #expect(try Resolver.resolve(r, host: host).spec.process?.user.uid == 1000)
    }

    @Test func flagsOverrideTheProfileTheyAreLaidOver() {
        var profile = SandboxRequest()
        profile.network = NetworkMode.none
        profile.hostname = "p"
        profile.capDrop = ["NET_RAW"]
        profile.capAdd = ["CAP_CHOWN"]
        profile.binds = [BindMount(source: "/a", destination: "/a", readOnly: true)]
        profile.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 10, soft: 10)]
        profile.limits.memory = .value(1 << 30)
        profile.limits.required = ["memory"]
        var flags = SandboxRequest()
        flags.network = .host
        flags.capAdd = ["net_raw"]
        flags.capDrop = ["chown"]
        flags.binds = [BindMount(source: "/b", destination: "/b", readOnly: false)]
        flags.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 99, soft: 99)]
        flags.limits.pids = .max
        let r = profile.overlaid(by: flags)
        #expect(r.network == .host && r.hostname == "p")
        #expect(r.capAdd == ["net_raw"] && r.capDrop == ["chown"])
        #expect(r.binds.map(\.source) == ["/a", "/b"])
        #expect(r.rlimits == [Rlimit(type: "RLIMIT_NOFILE", hard: 99, soft: 99)])
        #expect(r.limits.memory == .value(1 << 30) && r.limits.pids == .max && r.limits.required == ["memory"])
    }
}
