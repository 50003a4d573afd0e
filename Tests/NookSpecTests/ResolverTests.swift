import NookSpec
import Testing

struct ResolverTests {
    static let host = HostContext(
        uid: 1000, gid: 1000, userName: "alice", home: "/home/alice", cwd: "/home/alice/project",
        environment: ["HOME": "/home/alice", "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": "/run/user/1000",
                      "SHELL": "/bin/bash", "SECRET": "s"],
        uidRanges: [IDRange(start: 100_000, count: 65536)], gidRanges: [IDRange(start: 100_000, count: 65536)],
        sourceIsDirectory: ["/home/alice": true, "/data": true, "/etc/hosts": false])

    func resolve(_ r: SandboxRequest, host: HostContext = ResolverTests.host) throws(ResolveError) -> Resolution {
        try Resolver.resolve(r, host: host)
    }

    @Test func theDefaultIsKeepIDWithTheCallersIdsAndNoCapabilities() throws {
        let spec = try resolve(SandboxRequest()).spec
        #expect(spec.process?.user.uid == 1000 && spec.process?.user.gid == 1000)
        #expect(spec.process?.capabilities?.effective == [])
        #expect(spec.process?.capabilities?.ambient == [])
        #expect(spec.process?.noNewPrivileges == true)
        #expect(spec.process?.args == ["/bin/bash"])
        #expect(spec.annotations?["org.nook.userns"] == "keep-id")
    }

    @Test func rootModeHasTheDefaultCapabilitiesButNeverInheritableOrAmbient() throws {
        var r = SandboxRequest()
        r.userns = .root
        let caps = try #require(try resolve(r).spec.process?.capabilities)
        #expect(caps.effective == Resolver.defaultCapabilities)
        #expect(caps.bounding == Resolver.defaultCapabilities)
        #expect(caps.inheritable == [] && caps.ambient == [])
    }

    @Test func theMountsAreTheBuiltInDefaultParentsFirst() throws {
        let mounts = try #require(try resolve(SandboxRequest()).spec.mounts)
        #expect(mounts.map(\.destination) == ["/proc", "/dev", "/tmp", "/run", "/dev/pts", "/dev/shm", "/home/alice",
                                               "/sys/fs/cgroup", "/run/user/1000", "/home/alice/project"])
        let home = try #require(mounts.first { $0.destination == "/home/alice" })
        #expect(home.type == "tmpfs" && home.options?.contains("ro") == true && home.options?.contains("uid=1000") == true)
        let workspace = try #require(mounts.last)
        #expect(workspace.type == "bind" && workspace.options?.contains("rw") == true)
        #expect(try resolve(SandboxRequest()).spec.root == Root(path: "/", readonly: true))
    }

    @Test func aUserMountReplacesTheDefaultAtTheSamePlace() throws {
        var r = SandboxRequest()
        r.binds = [BindMount(source: "/data", destination: "/tmp", readOnly: false)]
        let mounts = try #require(try resolve(r).spec.mounts)
        #expect(mounts.filter { $0.destination == "/tmp" }.count == 1)
        #expect(mounts.first { $0.destination == "/tmp" }?.type == "bind")
    }

    @Test func noWorkspaceLeavesTheCurrentDirectoryOut() throws {
        var r = SandboxRequest()
        r.bindWorkspace = false
        #expect(try resolve(r).spec.mounts?.contains { $0.destination == "/home/alice/project" } == false)
    }

    @Test func runningFromHomeWarnsThatAllOfItIsWritable() throws {
        var host = ResolverTests.host
        host.cwd = "/home/alice"
        let out = try resolve(SandboxRequest(), host: host)
        #expect(out.warnings.contains { $0.contains("your home directory /home/alice") })
        // A fresh try found the home bound read-only: the empty tmpfs over
        // the home was remounted read-only last, and that landed on the
        // bind over it. From the home there is no tmpfs under the bind.
        let mounts = out.spec.mounts ?? []
        #expect(mounts.filter { $0.destination == "/home/alice" }.map(\.type) == ["bind"], "\(mounts)")
        #expect(mounts.first { $0.destination == "/home/alice" }?.options?.contains("rw") == true)
    }

    /// A fresh try: --bind of the bus socket (read-only) let a sandboxed
    /// systemd-run --user start a command outside; nothing was said.
    @Test(arguments: [("/run/user/1000/bus", true), ("/run/user/1000", true), ("/run", true),
                      ("/run/user/1000/systemd/private", true), ("/run/user/1000/wayland-0", false), ("/data", false)])
    func aBindOfTheSessionsSocketsIsWarnedAbout(source: String, warned: Bool) throws {
        var host = ResolverTests.host
        host.sourceIsDirectory[source] = true
        var request = SandboxRequest()
        request.binds = [BindMount(source: source, destination: "/x", readOnly: true)]
        let out = try resolve(request, host: host)
        #expect(out.warnings.contains { $0.contains("D-Bus or systemd socket") } == warned, "\(out.warnings)")
    }

    /// From $XDG_RUNTIME_DIR the workspace bind showed the user manager's
    /// and the bus's sockets: a sandboxed command asked systemd to start a
    /// command outside the sandbox.
    @Test(arguments: ["/run/user/1000", "/run/user/1000/app", "/run/user", "/run/user/1001"])
    func theSessionsRuntimeDirectoryIsNeverTheWorkspace(cwd: String) throws {
        var host = ResolverTests.host
        host.cwd = cwd
        let out = try resolve(SandboxRequest(), host: host)
        #expect(!(out.spec.mounts ?? []).contains { $0.type == "bind" && $0.destination.hasPrefix("/run") })
        #expect(out.spec.process?.cwd == "/")
        #expect(out.warnings.contains { $0.contains("lies in your session's runtime directory") }, "\(out.warnings)")
    }

    @Test func runningFromRootBindsNothing() throws {
        var host = ResolverTests.host
        host.cwd = "/"
        let mounts = try #require(try resolve(SandboxRequest(), host: host).spec.mounts)
        #expect(!mounts.contains { $0.type == "bind" })
    }

    @Test(arguments: [
        ("relative/path", "not an absolute path"), ("/a/../b", "contains '..'"), ("/", "cannot replace the root"),
    ])
    func badBindDestinationsAreRefusedWithTheReason(destination: String, message: String) {
        var r = SandboxRequest()
        r.binds = [BindMount(source: "/data", destination: destination, readOnly: false)]
        #expect(throws: ResolveError.self) { try resolve(r) }
        do { _ = try resolve(r) } catch { #expect(error.message.contains(message), "\(error)") }
    }

    @Test func aMissingBindSourceIsNamed() {
        var r = SandboxRequest()
        r.binds = [BindMount(source: "/nope", destination: "/x", readOnly: true)]
        do {
            _ = try resolve(r)
            Issue.record("no error")
        } catch {
            #expect(error.message == "--bind /nope: no such file or directory on the host")
        }
    }

    @Test func pathsAreNormalized() throws {
        #expect(try Resolver.normalized("//a/./b//c/", what: "x") == "/a/b/c")
    }

    @Test func theEnvironmentIsTheCallersWithTheRuntimeDirMovedAndFlagsOnTop() throws {
        var r = SandboxRequest()
        r.env = ["A=1", "SECRET=override", "SHELL"]
        let env = try #require(try resolve(r).spec.process?.env)
        #expect(env.contains("A=1") && env.contains("SECRET=override") && env.contains("SHELL=/bin/bash"))
        #expect(env.contains("XDG_RUNTIME_DIR=/run/user/1000"))
        #expect(env.contains("container=nook"))
        #expect(env.contains("PWD=/home/alice/project"))
    }

    // Each name once, where it was first set, with its last value; an unset
    // name goes and can be set again. (Kept by an index since the second
    // attack report: 200000 entries took longer than a minute.)
    @Test func laterSettingsReplaceEarlierOnesInPlace() throws {
        var host = ResolverTests.host
        host.envFileContents["/e"] = (0..<5000).map { "V\($0 % 100)=\($0)" }.joined(separator: "\n")
        var r = SandboxRequest()
        r.clearEnv = true
        r.envFiles = ["/e"]
        r.env = ["V3=flag", "B=2"]
        r.unsetEnv = ["HOME"]
        let env = try #require(try resolve(r, host: host).spec.process?.env)
        let names = env.map { String($0.prefix { $0 != "=" }) }
        #expect(names.count == Set(names).count, "a name twice: \(names)")
        #expect(env.contains("V3=flag") && env.contains("V99=4999") && env.contains("B=2") && !names.contains("HOME"))
        #expect(names.firstIndex(of: "V0")! < names.firstIndex(of: "V99")! && names.last == "B")
    }

    @Test func clearenvKeepsOnlyPathHomeAndWhatWasAsked() throws {
        var r = SandboxRequest()
        r.clearEnv = true
        r.env = ["ONLY=1"]
        let env = try #require(try resolve(r).spec.process?.env)
        #expect(Set(env.map { String($0.split(separator: "=")[0]) }) == ["PATH", "HOME", "PWD", "container", "ONLY"])
    }

    @Test func envFileErrorsNameTheFileAndLine() {
        var host = ResolverTests.host
        host.envFileContents["/e"] = "A=1\n# c\n=bad\n"
        var r = SandboxRequest()
        r.envFiles = ["/e"]
        do {
            _ = try resolve(r, host: host)
            Issue.record("no error")
        } catch {
            #expect(error.message == "--env-file /e:3: not a valid variable")
        }
        r.envFiles = ["/missing"]
        #expect(throws: ResolveError("--env-file /missing: cannot be read", hint: "check that the file exists and is readable")) {
            try resolve(r, host: host)
        }
    }

    @Test func capAddInKeepIDGoesAmbientAndUnknownNamesAreRefused() throws {
        var r = SandboxRequest()
        r.capAdd = ["net_raw"]
        let caps = try #require(try resolve(r).spec.process?.capabilities)
        #expect(caps.ambient == ["CAP_NET_RAW"] && caps.inheritable == ["CAP_NET_RAW"])
        r.capAdd = ["NOT_A_CAP"]
        #expect(throws: ResolveError.self) { try resolve(r) }
    }

    @Test func withoutSubordinateIdsTheMappingIsSingleAndTheReasonIsAWarning() throws {
        var host = ResolverTests.host
        host.idmapUnavailable = "no subordinate ids"
        let out = try resolve(SandboxRequest(), host: host)
        #expect(out.spec.linux?.uidMappings == [IDMapping(containerID: 1000, hostID: 1000, size: 1)])
        #expect(out.warnings == ["no subordinate ids"])
        // /tmp and friends cannot be owned by an unmapped root.
        #expect(out.spec.mounts?.first { $0.destination == "/tmp" }?.options?.contains("uid=0") == false)
    }

    @Test func networkNoneAddsANetworkNamespaceAndHostDoesNot() throws {
        #expect(try resolve(SandboxRequest()).spec.linux?.namespaces?.contains(Namespace(type: "network")) == true)
        var r = SandboxRequest()
        r.network = .host
        #expect(try resolve(r).spec.linux?.namespaces?.contains(Namespace(type: "network")) == false)
    }

    @Test func seccompUnconfinedRemovesTheFilterWithAWarning() throws {
        var r = SandboxRequest()
        r.seccomp = .unconfined
        let out = try resolve(r)
        #expect(out.spec.linux?.seccomp == nil)
        #expect(out.warnings.contains { $0.contains("seccomp is off") })
    }
}

struct SeccompPolicyTests {
    @Test func noCallIsBothAllowedAndDenied() {
        #expect(Set(SeccompPolicy.allowed).isDisjoint(with: SeccompPolicy.denied))
    }

    @Test func theNewMountAPIIsDenied() {
        for name in ["open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "mount"] {
            #expect(SeccompPolicy.denied.contains(name))
        }
    }

    @Test func terminalInjectionIsComparedOnTheLow32BitsOnly() {
        let rules = SeccompPolicy.defaultSeccomp().syscalls ?? []
        let tiocsti = rules.first { $0.names == ["ioctl"] && $0.args?.first?.valueTwo == 0x5412 }
        #expect(tiocsti?.args?.first?.op == "SCMP_CMP_MASKED_EQ")
        #expect(tiocsti?.args?.first?.value == 0xFFFF_FFFF)
        #expect(tiocsti?.errnoRet == 1)
    }

    @Test func theDefaultAnswerIsENOSYSAndAllX86ABIsAreCovered() {
        let s = SeccompPolicy.defaultSeccomp(native: "x86_64")
        #expect(s.defaultAction == "SCMP_ACT_ERRNO" && s.defaultErrnoRet == 38)
        #expect(s.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    }
}

struct RootEmulationPolicyTests {
    @Test func theEmulatedCallsGoOnlyToTheListenerAndPrctlOnlyForKeepCaps() {
        let policy = SeccompPolicy.emulatingRoot(in: SeccompPolicy.defaultSeccomp())
        let rules = policy.syscalls ?? []
        for name in SeccompPolicy.emulatedForRoot {
            let actions = rules.filter { $0.names.contains(name) }.map(\.action)
            #expect(actions == ["SCMP_ACT_NOTIFY"], "\(name): \(actions)")
        }
        let prctl = rules.filter { $0.names.contains("prctl") }
        #expect(prctl.count == 2 && prctl.allSatisfy { $0.args?.first?.value == 8 && $0.args?.first?.index == 0 })
        #expect(Set(prctl.map { $0.args?.first?.op ?? "" }) == ["SCMP_CMP_EQ", "SCMP_CMP_NE"])
    }

    @Test func itAppliesOnlyToASingleIdRootOfItsOwnAsRoot() throws {
        var single = DirectoryRootResolveTests.host
        single.idmapUnavailable = "no subordinate ids"
        func resolve(_ host: HostContext, _ configure: (inout SandboxRequest) -> Void = { _ in }) throws -> Resolution {
            var r = SandboxRequest()
            r.rootfs = "/srv/root"
            configure(&r)
            return try Resolver.resolve(r, host: host)
        }
        let on = try resolve(single)
        #expect(on.spec.annotations?["org.nook.root-emulation"] == "on")
        #expect(on.warnings.filter { $0.contains("root emulation") }.count == 1)
        for off in [try resolve(DirectoryRootResolveTests.host), try resolve(single) { $0.rootEmulation = false },
                    try resolve(single) { $0.userns = .keepID }, try resolve(single) { $0.seccomp = .unconfined }] {
            #expect(off.spec.annotations?["org.nook.root-emulation"] == nil)
        }
        var hostRoot = SandboxRequest()
        hostRoot.userns = .root
        #expect(try Resolver.resolve(hostRoot, host: single).spec.annotations?["org.nook.root-emulation"] == nil)
    }
}

struct DirectoryRootResolveTests {
    static var host: HostContext {
        var h = ResolverTests.host
        h.sourceIsDirectory["/srv/root"] = true
        h.fuseOverlayfs = "/usr/bin/fuse-overlayfs"
        h.kernel = (6, 18)
        h.sandboxDir = "/run/user/1000/nook/sandboxes/x"
        return h
    }

    func resolve(_ configure: (inout SandboxRequest) -> Void, host: HostContext = DirectoryRootResolveTests.host)
        throws(ResolveError) -> Resolution
    {
        var r = SandboxRequest()
        r.rootfs = "/srv/root"
        configure(&r)
        return try Resolver.resolve(r, host: host)
    }

    @Test func aDirectoryRootDefaultsToRootModeANativeLayerAndItsOwnSmallWorld() throws {
        let out = try resolve { _ in }
        let spec = out.spec
        #expect(spec.process?.user.uid == 0)
        #expect(spec.process?.cwd == "/")
        #expect(spec.process?.args == ["/bin/sh"])
        #expect(spec.hostname == "nook")
        #expect(spec.annotations?["org.nook.overlay"] == "native")
        #expect(spec.annotations?["org.nook.overlay.fallback"] == "fuse")
        #expect(spec.annotations?["org.nook.rootfs.lower"] == "[\"/srv/root\"]")
        #expect(spec.process?.env?.contains { $0.hasPrefix("SECRET=") } == false, "the host's environment leaked")
        #expect(spec.mounts?.contains { $0.destination == "/home/alice/project" } == false)
        #expect(Set(out.generatedFiles.keys) == ["/run/user/1000/nook/sandboxes/x/hosts",
                                                 "/run/user/1000/nook/sandboxes/x/hostname",
                                                 "/run/user/1000/nook/sandboxes/x/resolv.conf"])
    }

    @Test func aMissingFuseOverlayfsWarnsAndFallsBack() throws {
        var host = DirectoryRootResolveTests.host
        host.fuseOverlayfs = nil
        let out = try resolve({ $0.overlay = .fuse }, host: host)
        #expect(out.spec.annotations?["org.nook.overlay"] == "native")
        #expect(out.warnings.contains { $0.contains("fuse-overlayfs was asked for but is not installed") })
        host.kernel = (5, 4)
        let old = try resolve({ $0.overlay = .fuse }, host: host)
        #expect(old.spec.annotations?["org.nook.overlay"] == "none")
        #expect(old.spec.root?.readonly == true)
    }

    @Test func anOldKernelUsesFuseAndNoneIsReadOnly() throws {
        var host = DirectoryRootResolveTests.host
        host.kernel = (6, 1)
        #expect(try resolve({ _ in }, host: host).spec.annotations?["org.nook.overlay"] == "fuse")
        #expect(try resolve({ $0.readOnly = true }).spec.root?.readonly == true)
    }
}

struct ProtectionTests {
    @Test func nooksStateIsMaskedWhereverABindWouldShowIt() throws {
        var host = ResolverTests.host
        host.protectedPaths = ["/run/user/1000/nook", "/home/alice/.local/share/nook"]
        host.sourceIsDirectory["/run/user/1000"] = true
        var r = SandboxRequest()
        r.binds = [BindMount(source: "/run/user/1000", destination: "/xdg", readOnly: false),
                   BindMount(source: "/home/alice", destination: "/home/alice", readOnly: false)]
        let mounts = try #require(try Resolver.resolve(r, host: host).spec.mounts)
        let masks = mounts.filter { $0.type == "tmpfs" && $0.options?.contains("size=0") == true }.map(\.destination)
        #expect(Set(masks) == ["/xdg/nook", "/home/alice/.local/share/nook"])
        // Masks come after what they cover.
        let xdg = try #require(mounts.firstIndex { $0.destination == "/xdg" })
        let mask = try #require(mounts.firstIndex { $0.destination == "/xdg/nook" })
        #expect(xdg < mask)
    }

    @Test func unrelatedBindsGetNoMask() throws {
        var host = ResolverTests.host
        host.protectedPaths = ["/run/user/1000/nook"]
        let mounts = try #require(try Resolver.resolve(SandboxRequest(), host: host).spec.mounts)
        #expect(!mounts.contains { $0.options?.contains("size=0") == true })
    }
}

/// `--persist NAME`: names that look alike must be the same layer.
struct PersistNameTests {
    func resolve(_ name: String) throws(ResolveError) -> Resolution {
        var r = SandboxRequest()
        r.rootfs = "/srv/root"
        r.persist = name
        return try Resolver.resolve(r, host: DirectoryRootResolveTests.host)
    }

    func refusal(_ name: String) -> String {
        do {
            _ = try resolve(name)
            return "accepted"
        } catch {
            return error.message
        }
    }

    @Test(arguments: ["dev", "Dev-2.x_y", "a", "1", String(repeating: "n", count: 128)])
    func plainAsciiNamesAreTaken(name: String) throws {
        #expect(try resolve(name).spec.annotations?["org.nook.rootfs.upper"] == name)
    }

    // The second attack review: Unicode letters and digits and a leading
    // '-' were accepted, so 'ｆull' and 'full' were two layers.
    @Test(arguments: [("é", "'é' (U+00E9) is not allowed"), ("e\u{301}", "(U+0301) is not allowed"),
                      ("١٢", "'١' (U+0661) is not allowed"), ("ｆｕｌｌ", "'ｆ' (U+FF46) is not allowed"),
                      ("-x", "may not start with '-'"), (".x", "may not start with '.'"), ("a/b", "'/' (U+002F)"),
                      ("..", "may not start with '.'"), ("a b", "' ' (U+0020)"), ("", "the layer's name is empty")])
    func namesThatAreNotPlainAsciiAreRefusedSayingWhy(name: String, reason: String) {
        let message = refusal(name)
        #expect(message.contains(reason), "\(name): \(message)")
    }

    @Test func aNameTooLongSaysThatLengthIsTheReason() {
        let message = refusal(String(repeating: "x", count: 300))
        #expect(message.contains("the name is too long (300 bytes; at most 128)"), "\(message)")
        #expect(message.count < 120, "the whole name was printed: \(message)")
    }
}
