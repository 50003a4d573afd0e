import NookRuntime
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
        // Conditional refusals keep their own filter, without a listener.
        #expect(programs.count == 2 && !returnsNotify(programs[1]))
    }

    @Test func writingOpensAreNotifiedAndReadingOnesAllowed() {
        let rules = Explainer.variant(of: SeccompPolicy.defaultSeccomp()).seccomp.syscalls ?? []
        let openat = rules.filter { $0.names == ["openat"] }
        #expect(openat.filter { $0.action == "SCMP_ACT_NOTIFY" }.count == 4)
        #expect(openat.contains { $0.action == "SCMP_ACT_ALLOW" && $0.args?.first?.valueTwo == 0 })
        #expect(!rules.contains { $0.action == "SCMP_ACT_ALLOW" && ($0.args ?? []).isEmpty && $0.names.contains("mkdir") })
    }
}
