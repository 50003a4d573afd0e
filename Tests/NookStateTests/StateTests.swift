#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import NookState
import NookSupport
import Testing

struct TimestampTests {
    @Test func formatAndParseAgree() throws {
        let text = Timestamp.format(seconds: 1_796_416_267, nanoseconds: 5)
        #expect(text == "2026-12-04T20:31:07.000000005Z")
        let back = try #require(Timestamp.parse(text))
        #expect(abs(back - 1_796_416_267.000000005) < 1e-6)
        #expect(Timestamp.parse("2026-12-04T20:31:07Z") == 1_796_416_267)
        #expect(Timestamp.parse("2026-12-04 20:31:07") == nil)
    }

    @Test(arguments: [("2026-12-04T21:31:07+01:00", 1_796_416_267.0), ("2026-12-04T15:01:07-05:30", 1_796_416_267),
                      ("2026-12-04t20:31:07z", 1_796_416_267), ("2026-12-04T20:31:07.25+00:00", 1_796_416_267.25),
                      ("2028-02-29T00:00:00Z", 1_835_395_200)])
    func rfc3339OffsetsAreTaken(text: String, seconds: Double) {
        #expect(Timestamp.parse(text) == seconds)
    }

    // timegm made these a time by carrying the overflow.
    @Test(arguments: ["2026-13-45T99:99:99Z", "2026-12-04T20:31:07xyzZ", "2026-02-29T00:00:00Z", "2026-12-04T24:00:00Z",
                      "2026-12-04T20:31:07", "2026-12-04T20:31:07+1:00", "2026-12-04T20:31:07+01:00x",
                      "2026-12-04T20:31:07.Z", "+026-12-04T20:31:07Z", "2026-12-04T20:31:07+24:00"])
    func timesOutOfRangeOrMalformedAreRefused(text: String) {
        #expect(Timestamp.parse(text) == nil)
        #expect(Timestamp.since(text, now: 100_000) == nil)
    }

    @Test(arguments: [("90s", 90.0), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)])
    func durationsCountBack(text: String, seconds: Double) {
        #expect(Timestamp.since(text, now: 100_000) == 100_000 - seconds)
    }

    @Test(arguments: ["", "5", "m5", "yesterday", "5x", "-5m"])
    func otherTextIsNotADuration(text: String) {
        #expect(Timestamp.since(text, now: 100_000) == nil)
    }
}

struct RecordTests {
    @Test(arguments: [("no", "no"), ("always", "always"), ("on-failure", "on-failure"), ("on-failure:3", "on-failure:3")])
    func restartPoliciesRoundTrip(text: String, shown: String) throws {
        #expect(try RestartPolicy(parsing: text).description == shown)
    }

    @Test(arguments: ["sometimes", "on-failure:0", "on-failure:-1", "on-failure:x", ""])
    func badRestartPoliciesAreRefused(text: String) {
        #expect(throws: UsageFailure.self) { try RestartPolicy(parsing: text) }
    }

    @Test func onFailureCountsAndStopsAtItsLimit() {
        let p = RestartPolicy.onFailure(maximum: 2)
        #expect(p.restarts(after: 1, done: 0) && p.restarts(after: 1, done: 1) && !p.restarts(after: 1, done: 2))
        #expect(!p.restarts(after: 0, done: 0))
        #expect(RestartPolicy.always.restarts(after: 0, done: 1000))
    }

    @Test(arguments: ["web", "a.b-c_d", "A1"])
    func goodNames(name: String) { #expect(ContainerStore.nameProblem(name) == nil) }

    @Test(arguments: ["", ".x", "-x", "_x", "a/b", "../x", "a b", "é", String(repeating: "a", count: 129),
                      String(repeating: "a", count: 64)])
    func badNames(name: String) { #expect(ContainerStore.nameProblem(name) != nil) }

    @Test func aRecordOutOfRangeIsNamed() {
        var r = ContainerRecord(id: String(repeating: "a", count: 64), name: "x", created: 0, image: nil, root: "host",
                                command: [], runArguments: [], directory: "/")
        #expect(r.problem(directoryName: r.id) == nil)
        #expect(r.problem(directoryName: String(repeating: "b", count: 64))?.contains("lies in") == true)
        r.cgroup = "/sys/fs/cgroup/../../etc"
        #expect(r.problem(directoryName: r.id)?.contains("cgroup") == true)
        r.cgroup = nil
        r.monitor = ProcessRef(pid: 1, start: 0)
        #expect(r.problem(directoryName: r.id)?.contains("monitor pid 1") == true)
    }
}

struct LogTests {
    @Test func linesAreRecordedWithTheirStreamAndCutWhenLong() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nook-log-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        let writer = try LogWriter(directory: fd, maxBytes: 1 << 20)
        writer.append(Array("a\nb".utf8)[...], stream: 1)
        writer.append(Array("c\n".utf8)[...], stream: 1)
        writer.append(Array("err".utf8)[...], stream: 2)
        writer.append(Array(repeating: UInt8(ascii: "x"), count: LogWriter.maxLine + 10)[...], stream: 1)
        writer.flush()
        let bytes = try #require(FileManager.default.contents(atPath: dir + "/log"))
        let lines = Array(bytes).split(separator: 10).compactMap { LogReader.parse($0) }
        #expect(lines.map { String(decoding: $0.text, as: UTF8.self).prefix(3) } == ["a", "bc", "xxx", "xxx", "err"])
        #expect(lines.map(\.stream) == [1, 1, 1, 1, 2])
        #expect(lines.map(\.partial) == [false, false, true, true, true])
        #expect(lines[2].text.count == LogWriter.maxLine && lines[3].text.count == 10)
    }

    @Test func aFullLogIsRotatedOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nook-log-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        let writer = try LogWriter(directory: fd, maxBytes: 4096)
        for i in 0..<500 { writer.append(Array("line \(i)\n".utf8)[...], stream: 1) }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["log", "log.1"])
        for file in files {
            let size = (try FileManager.default.attributesOfItem(atPath: dir + "/" + file)[.size] as? Int) ?? 0
            #expect(size <= 4096)
        }
        let last = String(decoding: try #require(FileManager.default.contents(atPath: dir + "/log")), as: UTF8.self)
        #expect(last.hasSuffix(" stdout F line 499\n"))
    }
}

struct StoreRaceTests {
    // A reader that opens state.json just before an update renames the new
    // one over it holds the old file, which then has no link: that is a
    // whole earlier record, not a tampered one. wait once took such a read
    // for a removed container and ended before a restart (VM tier, CI).
    @Test func readsRacingUpdatesAlwaysGetARecord() throws {
        let runtime = FileManager.default.temporaryDirectory.appendingPathComponent("nook-race-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        chmod(runtime, 0o700)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let store = try ContainerStore(environment: ["XDG_RUNTIME_DIR": runtime])
        let made = try store.create({ id, name in
            ContainerRecord(id: id, name: name, created: 0, image: nil, root: "host", command: ["true"],
                            runArguments: [], directory: "/")
        }, name: "racer")
        let id = made.id
        let writer = Thread {
            for _ in 0..<4000 { _ = try? store.update(id) { $0.restarts = ($0.restarts + 1) % 100 } }
        }
        writer.start()
        var failures: [String] = []
        for _ in 0..<4000 {
            do {
                _ = try store.record(id)
            } catch {
                failures.append(error.description)
            }
            if writer.isFinished { break }
        }
        while !writer.isFinished { usleep(1000) }
        #expect(failures.count == 0, "\(failures.count) reads failed, as: \(failures.first ?? "")")
        // A second link is still refused: the file may be another's.
        let state = store.directory(of: id) + "/state.json"
        #expect(link(state, runtime + "/other") == 0)
        #expect(throws: ContainerFailure.self) { try store.record(id) }
    }
}
