@testable import NookCLI
import NookState
import NookSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The STATUS column of `nook ps`.
struct StatusTextTests {
    func stopped(_ exit: ContainerRecord.Exit, monitor: Bool = true) -> ContainerRecord {
        var r = ContainerRecord(id: String(repeating: "b", count: 64), name: "c", created: 0, image: nil, root: "host",
                                command: [], runArguments: [], directory: "/")
        r.status = .stopped
        r.finished = 100
        r.exit = exit
        if monitor { r.monitor = ProcessRef.current(getpid()) }
        return r
    }

    /// A container whose monitor was killed read "Exited (137)" like one
    /// whose command was killed; the README says ps tells them apart.
    @Test func howAContainerEndedIsSaidWhenItIsNotItsCommandsDoing() {
        #expect(Containers.statusText(stopped(.init(code: 0, reason: "exited")), now: 160)
            == "Exited (0) 1 minute ago")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, reason: "", monitorLost: true)), now: 102)
            == "Exited (137) 2 seconds ago (monitor killed)")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, reason: "", monitorLost: true),
                                              monitor: false), now: 100)
            == "Exited (137) 0 seconds ago (never started)")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, oomKilled: true, reason: "")), now: 100)
            == "Exited (137) 0 seconds ago (OOM killed)")
    }
}
