import NookSpec
import Testing

struct IDMappingTests {
    @Test func rootModeMapsTheCallerToZeroAndTheRangesFromOne() {
        let maps = Resolver.planMappings(own: 1000, ranges: [IDRange(start: 100_000, count: 65536)], mode: .root)
        #expect(maps == [IDMapping(containerID: 0, hostID: 1000, size: 1),
                         IDMapping(containerID: 1, hostID: 100_000, size: 65536)])
    }

    @Test func keepIDLeavesTheCallersIdInPlaceAndFillsAroundIt() {
        let maps = Resolver.planMappings(own: 1000, ranges: [IDRange(start: 100_000, count: 65536)], mode: .keepID)
        #expect(maps == [IDMapping(containerID: 0, hostID: 100_000, size: 1000),
                         IDMapping(containerID: 1000, hostID: 1000, size: 1),
                         IDMapping(containerID: 1001, hostID: 101_000, size: 64536)])
    }

    @Test func everyRangeIsUsedNotOnlyTheFirst() {
        let ranges = [IDRange(start: 200_000, count: 30000), IDRange(start: 300_000, count: 30000)]
        let maps = Resolver.planMappings(own: 1000, ranges: ranges, mode: .keepID)
        #expect(maps.reduce(0) { $0 + UInt64($1.size) } == 60001)
        #expect(maps == [IDMapping(containerID: 0, hostID: 200_000, size: 1000),
                         IDMapping(containerID: 1000, hostID: 1000, size: 1),
                         IDMapping(containerID: 1001, hostID: 201_000, size: 29000),
                         IDMapping(containerID: 30001, hostID: 300_000, size: 30000)])
    }

    @Test func keepIDWithFewerSubordinateIdsThanTheUidStillMapsTheCaller() {
        let maps = Resolver.planMappings(own: 5000, ranges: [IDRange(start: 100_000, count: 100)], mode: .keepID)
        #expect(maps == [IDMapping(containerID: 0, hostID: 100_000, size: 100),
                         IDMapping(containerID: 5000, hostID: 5000, size: 1)])
    }

    @Test func rootCallerInKeepIDIsTheSameAsRootMode() {
        let ranges = [IDRange(start: 100_000, count: 10)]
        #expect(Resolver.planMappings(own: 0, ranges: ranges, mode: .keepID)
                == Resolver.planMappings(own: 0, ranges: ranges, mode: .root))
    }

    @Test func noRangesMapsOnlyTheCaller() {
        #expect(Resolver.planMappings(own: 1000, ranges: [], mode: .root) == [IDMapping(containerID: 0, hostID: 1000, size: 1)])
        #expect(Resolver.planMappings(own: 1000, ranges: [], mode: .keepID) == [IDMapping(containerID: 1000, hostID: 1000, size: 1)])
    }

    @Test func containerIdsNeverOverlap() {
        let ranges = [IDRange(start: 100_000, count: 65536), IDRange(start: 500_000, count: 3)]
        for mode in UsernsMode.allCases {
            for own: UInt32 in [0, 1, 999, 1000, 65535, 65536, 70000] {
                let maps = Resolver.planMappings(own: own, ranges: ranges, mode: mode)
                let spans = maps.map { (UInt64($0.containerID), UInt64($0.containerID) + UInt64($0.size)) }.sorted { $0.0 < $1.0 }
                for (a, b) in zip(spans, spans.dropFirst()) { #expect(a.1 <= b.0, "overlap for own=\(own) \(mode)") }
                #expect(maps.contains { $0.hostID == own && $0.size == 1 })
            }
        }
    }

    /// A fresh try: a user with 165536:65536 and 200000:65536 in
    /// /etc/subuid got a map the kernel refused (uid_map: EINVAL), on
    /// every run. The ranges are joined before any map is made.
    @Test func overlappingAndTouchingRangesAreJoined() {
        let joined = IDRange.merged([IDRange(start: 200_000, count: 65536), IDRange(start: 165_536, count: 65536),
                                     IDRange(start: 300_000, count: 10), IDRange(start: 300_010, count: 5)])
        #expect(joined == [IDRange(start: 165_536, count: 100_000), IDRange(start: 300_000, count: 15)])
        let maps = Resolver.planMappings(own: 1004, ranges: joined, mode: .keepID)
        let host = maps.map { (UInt64($0.hostID), UInt64($0.hostID) + UInt64($0.size)) }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(host, host.dropFirst()) { #expect(a.1 <= b.0, "host ranges overlap: \(maps)") }
        #expect(IDRange.merged([IDRange(start: UInt32.max - 5, count: 10)]) == [IDRange(start: UInt32.max - 5, count: 5)])
    }
}
