import CNookLaunch
import NookRuntime
import NookSpec
import Testing

struct PlannerTests {
    static let host = HostContext(
        uid: 1000, gid: 1000, userName: "alice", home: "/home/alice", cwd: "/home/alice/project",
        environment: ["HOME": "/home/alice"], uidRanges: [IDRange(start: 100_000, count: 65536)],
        gidRanges: [IDRange(start: 100_000, count: 65536)], sourceIsDirectory: ["/home/alice": true])

    func plan(_ r: SandboxRequest = SandboxRequest()) throws -> LaunchPlan {
        let spec = try Resolver.resolve(r, host: PlannerTests.host).spec
        return try Planner.plan(spec) { path in path.hasSuffix(".txt") || path.hasPrefix("/dev/") ? false : true }
    }

    @Test func theDefaultPlanMountsThenBindsDevicesThenLinksThenHardens() throws {
        let kinds = try plan().ops.map(\.kind)
        let firstBind = try #require(kinds.firstIndex(of: .bind))
        let firstLink = try #require(kinds.firstIndex(of: .symlink))
        let firstMask = try #require(kinds.firstIndex(of: .mask))
        let firstRemount = try #require(kinds.firstIndex(of: .remount))
        #expect(kinds.prefix(firstBind).allSatisfy { $0 == .mountFS })
        #expect(firstBind < firstLink && firstLink < firstMask && firstMask < firstRemount)
    }

    @Test func aReadOnlyTmpfsIsMountedWritableAndMadeReadOnlyAfterItsMountPoints() throws {
        let ops = try plan().ops
        let home = try #require(ops.first { $0.destination == "/home/alice" && $0.kind == .mountFS })
        #expect(home.attributes & NOOK_ATTR_RDONLY == 0)
        let later = try #require(ops.firstIndex { $0.kind == .setattr && $0.destination == "/home/alice" })
        let workspace = try #require(ops.firstIndex { $0.destination == "/home/alice/project" })
        #expect(workspace < later)
    }

    @Test func theHostRootSkipsWhatTheMountsReplace() throws {
        let p = try plan()
        #expect(Set(p.rootSkip) == ["proc", "dev", "tmp", "run"])
        #expect(p.rootIsHost && p.rootAttributes & NOOK_ATTR_RDONLY != 0)
        #expect(p.rootOptions.contains("uid=0"))
    }

    @Test func flagsAndFilesystemOptionsAreSeparated() throws {
        let proc = try #require(try plan().ops.first { $0.destination == "/proc" })
        #expect(proc.attributes == NOOK_ATTR_NOSUID | NOOK_ATTR_NOEXEC | NOOK_ATTR_NODEV)
        #expect(proc.options == ["source=proc"])
        let pts = try #require(try plan().ops.first { $0.destination == "/dev/pts" })
        #expect(pts.options == ["source=devpts", "newinstance", "ptmxmode=0666", "mode=0620"])
    }

    @Test func aFileIsBoundOntoAFile() throws {
        var r = SandboxRequest()
        var host = PlannerTests.host
        host.sourceIsDirectory["/etc/x.txt"] = false
        r.binds = [BindMount(source: "/etc/x.txt", destination: "/tmp/x.txt", readOnly: true)]
        let spec = try Resolver.resolve(r, host: host).spec
        let p = try Planner.plan(spec) { $0.hasSuffix(".txt") ? false : true }
        let bind = try #require(p.ops.first { $0.destination == "/tmp/x.txt" })
        #expect(bind.file && bind.attributes & NOOK_ATTR_RDONLY != 0 && bind.recursive)
    }

    @Test func aSpecWithoutAUserNamespaceIsRefused() throws {
        var spec = try Resolver.resolve(SandboxRequest(), host: PlannerTests.host).spec
        spec.linux?.namespaces?.removeAll { $0.type == "user" }
        #expect(throws: PlanFailure.self) { try Planner.plan(spec) { _ in true } }
    }

    @Test func rlimitsAreCheckedAndNumbered() throws {
        var r = SandboxRequest()
        r.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 2048, soft: 1024)]
        #expect(try plan(r).rlimits.first?.resource == 7)
        r.rlimits = [Rlimit(type: "RLIMIT_BOGUS", hard: 1, soft: 1)]
        #expect(throws: PlanFailure.self) { try plan(r) }
        r.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 1, soft: 2)]
        #expect(throws: PlanFailure.self) { try plan(r) }
    }
}

struct SeccompCompileTests {
    @Test func theDefaultPolicyCompilesToAnAllowListAndADenyFilter() throws {
        let programs = try SeccompFilters.compile(SeccompPolicy.defaultSeccomp(native: SeccompFilters.nativeArch))
        #expect(programs.count == 2)
        #expect(programs.allSatisfy { $0.count > 0 && $0.count % 8 == 0 })
    }

    @Test func anUnknownOperatorIsAnErrorNamingTheRule() {
        let bad = Seccomp(defaultAction: "SCMP_ACT_ALLOW", defaultErrnoRet: nil, architectures: nil, syscalls: [
            SeccompRule(names: ["ioctl"], action: "SCMP_ACT_ERRNO", args: [SeccompArg(index: 1, value: 1, op: "SCMP_CMP_WAT")]),
        ])
        do {
            _ = try SeccompFilters.compile(bad)
            Issue.record("no error")
        } catch {
            #expect("\(error)" == "seccomp: unknown operator SCMP_CMP_WAT in the rule for ioctl")
        }
    }

    @Test func noSectionMeansNoFilter() throws {
        #expect(try SeccompFilters.compile(nil).isEmpty)
    }
}
