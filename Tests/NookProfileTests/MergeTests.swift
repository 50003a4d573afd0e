import Foundation
import NookSpec
import Testing

@testable import NookProfile

/// extends, merge order, list changes and provenance.
struct MergeTests {
    @Test func laterProfilesWinForScalarsAndTheChildWinsLast() throws {
        let p = try load([
            "a": "[network]\nmode = \"host\"\nhostname = \"a\"\n",
            "b": "[network]\nhostname = \"b\"\n",
            "main": "extends = [\"a\", \"b\"]\n[process]\nterminal = true\n",
        ])
        #expect(p.request.network == .host)
        #expect(p.request.hostname == "b")
        #expect(p.request.terminal == true)
        #expect(p.files == ["/p/a.toml", "/p/b.toml", "/p/main.toml"])
        #expect(
            p.settings.scalars["network.hostname"]?.origin
                == Origin(file: "/p/b.toml", position: .init(line: 2, column: 12)))
    }

    @Test func aSharedGrandparentIsMergedOnceBeforeItsFirstChild() throws {
        let p = try load([
            "base": "[filesystem]\nhidden = [\"/srv\"]\n[network]\nhostname = \"base\"\n",
            "a": "extends = [\"base\"]\n[network]\nhostname = \"a\"\n",
            "b": "extends = [\"base\"]\n",
            "main": "extends = [\"a\", \"b\"]\n",
        ])
        // base again after a would undo a's hostname; it is merged once.
        #expect(p.files == ["/p/base.toml", "/p/a.toml", "/p/b.toml", "/p/main.toml"])
        #expect(p.request.hostname == "a")
        #expect(p.request.hiddenPaths == ["/srv"])
    }

    @Test func plainListsAppendAndTablesReplaceOrRemove() throws {
        let base =
            "[filesystem]\nhidden = [\"/srv\", \"/opt\"]\nread_only = [\"/a\"]\n[security]\ncap_add = [\"NET_RAW\", \"CHOWN\"]\n"
        let appended = try load(["base": base, "main": "extends = [\"base\"]\n[filesystem]\nhidden = [\"/mnt\"]\n"])
        #expect(appended.request.hiddenPaths == ["/srv", "/opt", "/mnt"])
        let replaced = try load([
            "base": base, "main": "extends = [\"base\"]\n[filesystem]\nhidden = { replace = [\"/mnt\"] }\n",
        ])
        #expect(replaced.request.hiddenPaths == ["/mnt"])
        #expect(replaced.request.readOnlyPaths == ["/a"])
        let removed = try load([
            "base": base,
            "main": """
            extends = ["base"]
            [filesystem]
            hidden = { remove = ["/opt"], add = ["/media"] }
            [security]
            cap_add = { remove = ["cap_net_raw"] }
            """,
        ])
        #expect(removed.request.hiddenPaths == ["/srv", "/media"])
        #expect(removed.request.capAdd == ["CAP_CHOWN"])
    }

    @Test func hostEntriesReplaceByDefaultSinceAppendingWouldWidenTheView() throws {
        let p = try load([
            "base": "[filesystem]\nhost_entries = [\"usr\", \"etc\", \"opt\"]\n",
            "main": "extends = [\"base\"]\n[filesystem]\nhost_entries = [\"usr\", \"etc\"]\n",
        ])
        #expect(p.request.hostEntries == ["usr", "etc"])
    }

    @Test func aBindAtTheSameDestinationReplacesTheInheritedOne() throws {
        let p = try load([
            "base": "[filesystem]\nbinds = [{ source = \"/srv/a\", destination = \"/data\" }, \"/cache\"]\n",
            "main":
                "extends = [\"base\"]\n[filesystem]\nbinds = [{ source = \"/srv/b\", destination = \"/data\", read_only = true }]\n",
        ])
        #expect(
            p.request.binds == [
                BindMount(source: "/cache", destination: "/cache", readOnly: false),
                BindMount(source: "/srv/b", destination: "/data", readOnly: true),
            ])
    }

    @Test func environmentMergesByNameAndUnsetRemovesWhatParentsSet() throws {
        let p = try load([
            "base": "[environment]\npass = [\"EDITOR\", \"LANG\"]\nset = { A = \"1\", B = \"2\" }\n",
            "main": "extends = [\"base\"]\n[environment]\nunset = [\"EDITOR\", \"B\"]\nset = { A = \"3\" }\n",
        ])
        #expect(p.request.env == ["A=3", "LANG"])
        #expect(p.request.unsetEnv == ["EDITOR", "B"])
        // A grandchild that sets an unset name takes it off the unset list.
        let q = try load([
            "base": "[environment]\nunset = [\"EDITOR\"]\n",
            "main": "extends = [\"base\"]\n[environment]\nset = { EDITOR = \"nano\" }\n",
        ])
        #expect(q.request.env == ["EDITOR=nano"])
        #expect(q.request.unsetEnv == [])
    }

    @Test func aPassedNameTheCallerLacksIsLeftOut() throws {
        let p = try load(["main": "[environment]\npass = [\"LANG\", \"NOT_IN_ENV\"]\n"])
        #expect(p.request.env == ["LANG"])
    }

    @Test func aProfileThatExtendsItsOwnNameGetsTheNextOneOnTheSearchPath() throws {
        let loader = memoryLoader([
            "/p/build.toml": "extends = [\"build\"]\n[network]\nhostname = \"mine\"\n",
            "/stock/build.toml": "[network]\nmode = \"none\"\nhostname = \"stock\"\n",
        ])
        let p = try loader.load("build")
        #expect(p.files == ["/stock/build.toml", "/p/build.toml"])
        #expect(p.request.hostname == "mine")
        #expect(p.request.network == NetworkMode.none)
    }

    @Test func aMissingOptionalParentIsSkippedWithANoteButABrokenOneIsNot() throws {
        let p = try load(["main": "extends = [{ profile = \"local\", optional = true }]\n"])
        #expect(p.notes == ["optional profile local not found; going on without it"])
        let broken = issues(["main": "extends = [{ profile = \"local\", optional = true }]\n", "local": "[network\n"])
        #expect(broken.first?.message.hasPrefix("not valid TOML") == true, "\(broken)")
        let locked = issues(
            ["main": "extends = [{ profile = \"local\", optional = true }]\n", "local": ""],
            unreadable: ["local"])
        #expect(locked.first?.message.contains("EACCES") == true, "\(locked)")
    }

    @Test func relativeParentsAreFoundNextToTheIncludingFileNotTheCurrentDirectory() throws {
        let loader = memoryLoader([
            "/etc/nook/x/main.toml": "extends = [\"./parts/net.toml\"]\n",
            "/etc/nook/x/parts/net.toml": "[network]\nmode = \"host\"\n",
        ])
        let p = try loader.load("/etc/nook/x/main.toml")
        #expect(p.request.network == .host)
        #expect(p.files == ["/etc/nook/x/parts/net.toml", "/etc/nook/x/main.toml"])
    }

    @Test func allProblemsOfAFileAreReportedTogether() {
        let found = issues(["main": "[network]\nmode = \"x\"\n[limits]\nmemory = \"4 G\"\npids = 0\n"])
        #expect(found.map(\.key) == ["network.mode", "limits.memory", "limits.pids"])
    }

    @Test func limitsAreParsedIntoTheRequestWithMaxNeverANumber() throws {
        let p = try load([
            "main": """
            [limits]
            memory = "4GiB"
            swap = 0
            memory_high = "3G"
            pids = "max"
            cpus = 1.5
            cpu_weight = 100
            io_weight = 200
            allowed_cpus = "0-3,6"
            required = ["memory"]
            cgroup_manager = "systemd"
            [limits.rlimits]
            nofile = 1024
            core = { soft = 0, hard = "unlimited" }
            """
        ])
        let l = p.request.limits
        #expect(l.memory == .value(4 << 30))
        #expect(l.memorySwap == .value(0))
        #expect(l.memoryHigh == .value(3 << 30))
        #expect(l.pids == .max)
        #expect(l.cpus == 1.5)
        #expect(l.cpuWeight == 100 && l.ioWeight == 200)
        #expect(l.allowedCPUs == "0-3,6")
        #expect(l.required == ["memory"])
        #expect(p.request.cgroupManager == .systemd)
        // cpus = "max" lifts a parent's limit: no limit, never 0 CPUs.
        let lifted = try load(["main": "extends = [\"base\"]\n[limits]\ncpus = \"max\"\n",
                               "base": "[limits]\ncpus = 2\n"])
        #expect(lifted.request.limits.cpus == .infinity)
        #expect(
            p.request.rlimits == [
                Rlimit(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024),
                Rlimit(type: "RLIMIT_CORE", hard: UInt64.max, soft: 0),
            ])
    }

    @Test(arguments: [
        ("4GiB", UInt64(4) << 30), ("512M", 512 << 20), ("512m", 512 << 20), ("1KB", 1000),
        ("2MB", 2_000_000), ("100", 100), ("100B", 100), ("1T", 1 << 40),
    ])
    func sizesUseBinaryUnitsExceptTheSIOnes(text: String, bytes: UInt64) {
        #expect(Sizes.parse(text) == bytes)
    }

    @Test(arguments: ["4 G", "1.5G", "-1", "G", "", "4g ", "99999999999999999999G", "4Gi", "0x10"])
    func malformedSizesAreRefused(text: String) {
        #expect(Sizes.parse(text) == nil)
    }

    @Test func everyKeyMapsToTheRequest() throws {
        let p = try load([
            "main": """
            description = "all"
            [process]
            command = ["make", "-j8"]
            workdir = "${PWD}/src"
            terminal = true
            interactive = true
            umask = "0077"
            preserve_fds = 2
            [user]
            userns = "root"
            [filesystem]
            root = "host"
            read_only_root = true
            overlay = "none"
            workspace = false
            home = "scratch"
            binds = [{ source = "${HOME}/cache", destination = "/cache", read_only = true }]
            tmpfs = [{ destination = "/scratch", size = "64M", mode = "1777" }, "/other"]
            read_only = ["${PWD}/.git"]
            hidden = ["/srv"]
            host_entries = ["/usr", "etc"]
            [environment]
            clear = true
            set = { CC = "clang" }
            pass = ["EDITOR"]
            unset = ["LD_PRELOAD"]
            files = ["${PWD}/.env"]
            [network]
            mode = "pasta"
            hostname = "box"
            publish = ["127.0.0.1:8080:80", "5353:53/udp"]
            mtu = 1500
            ipv6 = false
            address = "10.0.9.100/24"
            host_loopback = true
            [security]
            cap_add = ["net_raw"]
            cap_drop = ["CAP_CHOWN"]
            seccomp = "unconfined"
            no_new_privs = true
            """
        ])
        let r = p.request
        #expect(r.command == ["make", "-j8"])
        #expect(r.workdir == "/work/proj/src")
        #expect(r.terminal == true && r.interactive == true)
        #expect(r.umask == 0o077)
        #expect(r.preserveFds == 2)
        #expect(r.userns == .root)
        #expect(r.readOnly == true && r.overlay == OverlayChoice.none)
        #expect(r.bindWorkspace == false && r.home == .scratch)
        #expect(r.binds == [BindMount(source: "/home/u/cache", destination: "/cache", readOnly: true)])
        #expect(
            r.tmpfs == [
                TmpfsMount(destination: "/scratch", options: ["size=67108864", "mode=1777"]),
                TmpfsMount(destination: "/other"),
            ])
        #expect(r.readOnlyPaths == ["/work/proj/.git"])
        #expect(r.hiddenPaths == ["/srv"])
        #expect(r.hostEntries == ["usr", "etc"])
        #expect(r.clearEnv == true)
        #expect(r.env == ["CC=clang", "EDITOR"])
        #expect(r.unsetEnv == ["LD_PRELOAD"])
        #expect(r.envFiles == ["/work/proj/.env"])
        #expect(r.network == .pasta && r.hostname == "box")
        #expect(r.publish == [PortMapping(hostIP: "127.0.0.1", hostPort: 8080, containerPort: 80),
                              PortMapping(hostPort: 5353, containerPort: 53, proto: .udp)])
        #expect(r.networkOptions.mtu == 1500 && r.networkOptions.ipv6 == false)
        #expect(r.networkOptions.address == "10.0.9.100/24" && r.networkOptions.hostLoopback == true)
        #expect(r.capAdd == ["CAP_NET_RAW"] && r.capDrop == ["CAP_CHOWN"])
        #expect(r.seccomp == .unconfined)
    }
}

/// Variables are data: expanded once, never by a shell.
struct VariableTests {
    let vars = ProfileVariables.caller(
        uid: 1000, gid: 100, user: "u", home: "/home/u", cwd: "/work/p",
        environment: ["TOKEN": "$(rm -rf ~)", "XDG_RUNTIME_DIR": "/run/user/1000"])

    @Test func builtinsAndTheEnvironmentExpand() throws {
        #expect(
            try vars.expand("${HOME}:${PWD}:${UID}:${GID}:${USER}:${XDG_RUNTIME_DIR}", profileDirectory: "/p")
                == "/home/u:/work/p:1000:100:u:/run/user/1000")
        #expect(try vars.expand("${XDG_CACHE_HOME}/x ${PROFILE_DIR}", profileDirectory: "/p") == "/home/u/.cache/x /p")
    }

    @Test func expandedTextIsNeverExpandedAgainOrRunByAShell() throws {
        #expect(try vars.expand("${env:TOKEN}", profileDirectory: "/p") == "$(rm -rf ~)")
    }

    @Test func aDoubleDollarIsALiteralDollar() throws {
        #expect(
            try vars.expand("cost: $$5 and $${HOME} and $ alone", profileDirectory: "/p")
                == "cost: $5 and ${HOME} and $ alone")
    }

    @Test func aValueThatBecomesRelativeAfterExpansionIsStillRefused() {
        let found = issues(["main": "[process]\nworkdir = \"${env:EDITOR}/x\"\n"])
        #expect(found.first?.message.contains("relative path") == true, "\(found)")
    }
}

/// Where names are looked up.
struct SearchPathTests {
    @Test func theOrderIsUserThenSystemThenStock() {
        let path = ProfileSearchPath.standard(home: "/home/u", environment: [:], executable: "/opt/nook/bin/nook")
        #expect(
            Array(path.directories.prefix(3)) == [
                ProfileDirectory("/home/u/.config/nook/profiles", .user),
                ProfileDirectory("/etc/nook/profiles", .system),
                ProfileDirectory("/opt/nook/share/nook/profiles", .stock),
            ])
        let xdg = ProfileSearchPath.standard(home: "/home/u", environment: ["XDG_CONFIG_HOME": "/cfg"], executable: nil)
        #expect(xdg.directories.first == ProfileDirectory("/cfg/nook/profiles", .user))
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        let relative = ProfileSearchPath.standard(
            home: "/home/u", environment: ["XDG_CONFIG_HOME": "cfg"], executable: nil)
        #expect(relative.directories.first == ProfileDirectory("/home/u/.config/nook/profiles", .user))
    }

    @Test func theSourceTreesStockProfilesAreFoundWithoutInstalling() {
        let path = ProfileSearchPath.standard(home: "/nonexistent", environment: [:], executable: nil)
        let stock = path.directories.filter { $0.kind == .stock }.map(\.path)
        #expect(stock.contains { $0.hasSuffix("/Profiles") }, "\(path)")
        let found = path.find("build", in: DiskFileSystem())
        #expect(found?.hasSuffix("/Profiles/build.toml") == true)
    }

    /// An installed nook (make install) still searched the checkout it
    /// was built from, and profile list showed each stock profile as
    /// overriding the checkout's.
    @Test func anInstalledNookSearchesOnlyItsOwnShare() throws {
        let prefix = FileManager.default.temporaryDirectory.path + "/nook-prefix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: prefix + "/share/nook/profiles", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: prefix) }
        let path = ProfileSearchPath.standard(home: "/nonexistent", environment: [:], executable: prefix + "/bin/nook")
        #expect(path.directories.filter { $0.kind == .stock }.map(\.path) == [prefix + "/share/nook/profiles"])
        let uninstalled = ProfileSearchPath.standard(home: "/nonexistent", environment: [:],
                                                     executable: prefix + "/elsewhere/bin/nook")
        #expect(uninstalled.directories.contains { $0.path.hasSuffix("/Profiles") })
        // A fresh try: a nook in /tmp/bin read /tmp/share/nook/profiles,
        // which anyone could have made. A directory others may write is
        // not searched.
        chmod(prefix + "/share", 0o777)
        let open = ProfileSearchPath.standard(home: "/nonexistent", environment: [:], executable: prefix + "/bin/nook")
        #expect(!open.directories.contains { $0.path == prefix + "/share/nook/profiles" }, "\(open)")
        chmod(prefix + "/share", 0o1777)
        #expect(!ProfileSearchPath.isTrusted(prefix + "/share"), "a sticky directory itself is no place for profiles")
        #expect(ProfileSearchPath.isTrusted(prefix + "/share/nook/profiles"), "below a sticky one, the owner decides")
    }

    @Test func aUserProfileOverridesAStockOneOfTheSameName() throws {
        let loader = memoryLoader(["/p/build.toml": "", "/stock/build.toml": "", "/stock/strict.toml": ""])
        let list = loader.search.list(in: loader.fs)
        #expect(list.map(\.name) == ["build", "strict"])
        #expect(list[0].file == "/p/build.toml" && list[0].shadowed == ["/stock/build.toml"])
        #expect(try loader.locate("build") == "/p/build.toml")
    }

    @Test func aNameNotFoundSaysWhereNookLooked() {
        let found = issues([:], "nope")
        #expect(
            found.first?.description == "nope: no profile of this name; looked in /p, /stock\n"
                + "  hint: see: nook profile list; or give a file as ./nope.toml")
    }

    @Test func aPathIsTakenRelativeToTheCurrentDirectory() throws {
        let loader = memoryLoader(["/work/proj/mine.toml": "[network]\nmode = \"host\"\n"])
        #expect(try loader.load("./mine.toml").request.network == .host)
        #expect(try loader.load("mine.toml").request.network == .host)
    }

    @Test func aFifoOrADeviceIsRefusedWithoutHanging() {
        let fs = DiskFileSystem()
        #expect(fs.read("/dev/zero") == .failure(.notAFile))
        #expect(fs.read("/nonexistent/x.toml") == .failure(.missing))
    }

    @Test func healthSettingsBecomeTheRequestWithWhereEachCameFrom() throws {
        let p = try load([
            "base": "[health]\ncommand = \"test -e /tmp/ready\"\ninterval = \"1m30s\"\nretries = 5\n",
            "main": "extends = [\"base\"]\n[health]\ntimeout = \"500ms\"\nstart_period = \"0s\"\non_unhealthy = \"restart\"\n",
        ])
        let h = p.request.health
        #expect(h.command == ["/bin/sh", "-c", "test -e /tmp/ready"], "a string is a shell command")
        #expect(h.interval == 90 && h.timeout == 0.5 && h.startPeriod == 0 && h.retries == 5)
        #expect(h.onUnhealthy == .restart && h.enabled == nil)
        #expect(h.origins["interval"] == "health.interval (/p/base.toml:3:12)")
        #expect(h.origins["onUnhealthy"] == "health.on_unhealthy (/p/main.toml:5:16)")
        let exec = try load(["main": "[health]\ncommand = [\"/bin/check\", \"-q\"]\n"])
        #expect(exec.request.health.command == ["/bin/check", "-q"])
        let off = try load(["main": "[health]\nenabled = false\n"])
        #expect(off.request.health.enabled == false && off.request.health.command == nil)
        #expect(off.warnings.isEmpty, "health is acted on now, without a warning")
    }
}
