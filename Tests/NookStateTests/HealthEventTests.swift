#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NookSpec
@testable import NookState
import NookSupport
import Testing

struct HealthRecordTests {
    func check(_ at: Double, _ code: Int32) -> HealthRecord.Check {
        .init(start: at, end: at + 0.1, exitCode: code, output: "")
    }

    @Test func aPassIsHealthyAndRetriesFailuresInARowAreUnhealthy() {
        var h = HealthRecord()
        #expect(h.status == .starting)
        func add(_ at: Double, _ code: Int32) -> Bool { h.add(check(at, code), retries: 2, startPeriod: 0, started: 0) }
        #expect(add(10, 0))
        #expect(h.status == .healthy)
        #expect(!add(20, 1))
        #expect(h.status == .healthy && h.failingStreak == 1)
        #expect(add(30, 1))
        #expect(h.status == .unhealthy && h.failingStreak == 2)
        #expect(add(40, 0), "and back")
        #expect(h.status == .healthy && h.failingStreak == 0)
    }

    @Test func failuresInTheStartPeriodDoNotCountUntilACheckPassed() {
        var h = HealthRecord()
        for t in [1.0, 2, 3, 4] { _ = h.add(check(100 + t, 1), retries: 1, startPeriod: 5, started: 100) }
        #expect(h.status == .starting && h.failingStreak == 0)
        let changed = h.add(check(106, 1), retries: 1, startPeriod: 5, started: 100)
        #expect(changed, "after the period they count")
        #expect(h.status == .unhealthy)

        var early = HealthRecord()
        _ = early.add(check(101, 0), retries: 1, startPeriod: 5, started: 100)
        _ = early.add(check(102, 1), retries: 1, startPeriod: 5, started: 100)
        #expect(early.status == .unhealthy, "once a check passed, the period is over")
    }

    @Test func onlyTheLastFiveChecksAreKept() {
        var h = HealthRecord()
        for t in 0..<8 { _ = h.add(check(Double(t), Int32(t)), retries: 3, startPeriod: 0, started: 0) }
        #expect(h.log.map(\.exitCode) == [3, 4, 5, 6, 7])
    }

    @Test func aRecordWithABadCheckIsRefused() {
        var r = ContainerRecord(id: String(repeating: "a", count: 64), name: "x", created: 0, image: nil, root: "host",
                                command: [], runArguments: [], directory: "/")
        r.healthcheck = HealthCheck(command: ["true"], source: "t")
        #expect(r.problem(directoryName: r.id) == nil)
        r.healthcheck?.retries = 0
        #expect(r.problem(directoryName: r.id)?.contains("its health check") == true)
    }

    // A record edited to Int.max crashed the monitor at the next `+= 1`.
    @Test func countsAtTheirLimitAreRefusedAndNeverOverflow() {
        var r = ContainerRecord(id: String(repeating: "a", count: 64), name: "x", created: 0, image: nil, root: "host",
                                command: [], runArguments: [], directory: "/")
        r.healthcheck = HealthCheck(command: ["true"], source: "t")
        r.health = HealthRecord()
        r.health?.failingStreak = Int.max
        #expect(r.problem(directoryName: r.id) == "its health record is out of range")
        r.health?.failingStreak = 0
        r.restarts = Int.max
        #expect(r.problem(directoryName: r.id) == "its restart count \(Int.max) is out of range")
        r.restarts = ContainerRecord.maximumCount
        #expect(r.problem(directoryName: r.id) == nil)

        var h = HealthRecord()
        h.failingStreak = ContainerRecord.maximumCount
        _ = h.add(check(1, 1), retries: 3, startPeriod: 0, started: 0)
        #expect(h.failingStreak == ContainerRecord.maximumCount && h.status == .unhealthy)
    }
}

struct EventLogTests {
    /// A runtime directory of the test's own.
    func runtime() -> String {
        let dir = NSTemporaryDirectory() + "nook-events-\(UUID().uuidString.prefix(8))"
        mkdir(dir, 0o700)
        return dir
    }

    func event(_ action: String, _ n: Int) -> ContainerEvent {
        ContainerEvent(action: action, id: String(repeating: "b", count: 64), name: "c\(n)", image: "host",
                       attributes: ["n": String(n)])
    }

    @Test func eventsAreReadBackInOrderAndShownAsDockerDoes() throws {
        let dir = runtime()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try EventLog(environment: ["XDG_RUNTIME_DIR": dir])
        log.append(ContainerEvent(action: "create", id: String(repeating: "c", count: 64), name: "web", image: "localhost/a:1",
                                  time: "2026-12-04T20:31:07.000000001Z"))
        log.append(ContainerEvent(action: "die", id: String(repeating: "c", count: 64), name: "web", image: "localhost/a:1",
                                  attributes: ["exitCode": "137", "signal": "9"], time: "2026-12-04T20:31:08.000000001Z"))
        let all = try log.all()
        #expect(all.map(\.action) == ["create", "die"])
        #expect(all[1].line == "2026-12-04T20:31:08.000000001Z container die cccccccccccc "
            + "(name=web, image=localhost/a:1, exitCode=137, signal=9)")
        let raw = try String(contentsOfFile: dir + "/nook/events/log", encoding: .utf8)
        #expect(raw.hasPrefix(#"{"action":"create","attributes":{},"id":"ccc"#), "\(raw)")
    }

    @Test func theLogIsBoundedAndConcurrentWritersNeverInterleave() throws {
        let dir = runtime()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let environment = ["XDG_RUNTIME_DIR": dir]
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            guard let log = try? EventLog(environment: environment, maxBytes: 8192) else { return }
            for i in 0..<150 { log.append(event("start", worker * 1000 + i)) }
        }
        for name in ["log", "log.1"] {
            let text = try String(contentsOfFile: "\(dir)/nook/events/\(name)", encoding: .utf8)
            #expect(text.utf8.count <= 8192)
            for line in text.split(separator: "\n") {
                #expect((try? JSONDecoder().decode(ContainerEvent.self, from: Data(line.utf8))) != nil, "\(line)")
            }
        }
        let kept = try EventLog(environment: environment, maxBytes: 8192).all()
        #expect(kept.count > 20 && kept.allSatisfy { $0.action == "start" })
        // Rotation drops only the oldest: what is kept of each worker is an
        // unbroken run, and the last writer's run ends with its last event.
        let numbers = kept.compactMap { $0.attributes["n"].flatMap(Int.init) }
        for worker in 0..<8 {
            let mine = numbers.filter { $0 / 1000 == worker }
            if let first = mine.first { #expect(mine == Array(first..<(first + mine.count)), "\(worker): \(mine)") }
        }
        #expect(numbers.last.map { $0 % 1000 } == 149)
    }

    @Test func aTailSeesNewEventsAcrossARotation() throws {
        let dir = runtime()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try EventLog(environment: ["XDG_RUNTIME_DIR": dir], maxBytes: 1024)
        log.append(event("create", 0))
        let tail = try log.tail()
        #expect(tail.next().isEmpty, "only what comes after")
        var seen: [Int] = []
        for i in 1...20 {
            log.append(event("start", i))
            seen += tail.next().compactMap { $0.attributes["n"].flatMap(Int.init) }
        }
        #expect(seen == Array(1...20))
    }

    @Test func aLinkInPlaceOfTheLogIsRefusedNotFollowed() throws {
        let dir = runtime()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try EventLog(environment: ["XDG_RUNTIME_DIR": dir])
        let target = dir + "/target"
        FileManager.default.createFile(atPath: target, contents: Data("keep\n".utf8))
        symlink(target, dir + "/nook/events/log")
        log.append(event("start", 1))
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep\n")
        #expect(try log.all().isEmpty)
    }
}
