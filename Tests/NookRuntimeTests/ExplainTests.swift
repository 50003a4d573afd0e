@testable import NookRuntime
import NookSpec
import Testing

struct ExplainTests {
    /// SECCOMP_RET_USER_NOTIF as a BPF return value.
    static let notify: UInt32 = 0x7fc0_0000

    func returnsNotify(_ program: [UInt8]) -> Bool {
        stride(from: 0, to: program.count, by: 8).contains { i in
            let code = UInt16(program[i]) | UInt16(program[i + 1]) << 8
            let k = UInt32(program[i + 4]) | UInt32(program[i + 5]) << 8 | UInt32(program[i + 6]) << 16
                | UInt32(program[i + 7]) << 24
            return code == 0x06 && k == ExplainTests.notify  // BPF_RET | BPF_K
        }
    }

    @Test func theOrdinaryFilterNeverNotifiesSoRunsWithoutExplainPayNothing() throws {
        let programs = try SeccompFilters.compile(SeccompPolicy.defaultSeccomp(native: SeccompFilters.nativeArch))
        #expect(!programs.contains(where: returnsNotify))
    }

    @Test func theExplainVariantNotifiesForRefusalsAndKeepsTheirErrno() throws {
        let variant = Explainer.variant(of: SeccompPolicy.defaultSeccomp(native: SeccompFilters.nativeArch))
        #expect(variant.seccomp.defaultAction == "SCMP_ACT_NOTIFY")
        #expect(variant.defaultErrno == 38)
        #expect(variant.replies["keyctl"] == 1)
        #expect(variant.replies["clone3"] == 38)
        let programs = try SeccompFilters.compile(variant.seccomp)
        #expect(returnsNotify(programs[0]))
        // Conditional refusals are compared by nook: one filter, the one
        // with the listener (a second one's ERRNO would win over it).
        #expect(programs.count == 1)
        #expect(Set(variant.conditional.keys) == ["clone", "unshare", "ioctl"])
    }

    /// --explain said "nothing was refused" after unshare -n failed with
    /// EPERM: refusals on a condition were not explained.
    @Test func conditionalRefusalsAreComparedAsTheKernelWould() throws {
        let variant = Explainer.variant(of: SeccompPolicy.defaultSeccomp(native: SeccompFilters.nativeArch))
        let unshare = try #require(variant.conditional["unshare"])
        let net = try #require(Explainer.refusal(unshare, args: [0x4000_0000, 0, 0, 0, 0, 0]))
        #expect(Explainer.describe("unshare", net) == "unshare(CLONE_NEWNET)")
        #expect(net.errnoRet == 1)
        // A fork's flags (SIGCHLD, CLONE_VM...) go on.
        #expect(Explainer.refusal(try #require(variant.conditional["clone"]), args: [0x0100_0011, 0, 0, 0, 0, 0]) == nil)
        let ioctl = try #require(variant.conditional["ioctl"])
        let sti = try #require(Explainer.refusal(ioctl, args: [0, 0xFFFF_FFFF_0000_5412, 0, 0, 0, 0]))
        #expect(Explainer.describe("ioctl", sti) == "ioctl(TIOCSTI)")
        #expect(Explainer.refusal(ioctl, args: [0, 0x5401, 0, 0, 0, 0]) == nil)  // TCGETS
    }

    /// x32 calls arrive with x86_64's audit arch and bit 30 in the number.
    @Test func anX32CallIsNamedByItsName() {
        #expect(SeccompSupervisor.name(arch: 0xC000_003E, nr: 0x4000_0000 | 272) == "unshare")
        #expect(SeccompSupervisor.name(arch: 0xC000_003E, nr: 272) == "unshare")
        #expect(SeccompSupervisor.name(arch: 0xC000_003E, nr: 99_999) == "syscall 99999")
    }

    /// A call refused on a condition but not otherwise allowed outright
    /// keeps its rules: nook does not guess what the rest would get.
    @Test func onlyCallsAllowedExceptOnAConditionAreComparedByNook() {
        let policy = Seccomp(defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 38, architectures: nil, syscalls: [
            SeccompRule(names: ["clone"], action: "SCMP_ACT_ALLOW", args: [SeccompArg(index: 0, value: 17, op: "SCMP_CMP_EQ")]),
            SeccompRule(names: ["clone"], action: "SCMP_ACT_ERRNO", errnoRet: 1,
                        args: [SeccompArg(index: 0, value: 0x1000_0000, valueTwo: 0x1000_0000, op: "SCMP_CMP_MASKED_EQ")]),
        ])
        let variant = Explainer.variant(of: policy)
        #expect(variant.conditional.isEmpty)
        #expect((variant.seccomp.syscalls ?? []).filter { $0.names == ["clone"] }.count == 2)
    }

    @Test func writingOpensAreNotifiedAndReadingOnesAllowed() {
        let rules = Explainer.variant(of: SeccompPolicy.defaultSeccomp()).seccomp.syscalls ?? []
        let openat = rules.filter { $0.names == ["openat"] }
        #expect(openat.filter { $0.action == "SCMP_ACT_NOTIFY" }.count == 4)
        #expect(openat.contains { $0.action == "SCMP_ACT_ALLOW" && $0.args?.first?.valueTwo == 0 })
        #expect(!rules.contains { $0.action == "SCMP_ACT_ALLOW" && ($0.args ?? []).isEmpty && $0.names.contains("mkdir") })
    }
}
