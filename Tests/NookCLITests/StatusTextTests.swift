@testable import NookCLI
import NookState
import NookSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The STATUS column of `nook ps`.
struct StatusTextTests {
    /// A stopped container; its monitor gone (a pid with another start
    /// time), alive (this process: it will restart it) or never there.
    enum Monitor { case gone, alive, none }

    func stopped(_ exit: ContainerRecord.Exit, monitor: Monitor = .gone) -> ContainerRecord {
        var r = ContainerRecord(id: String(repeating: "b", count: 64), name: "c", created: 0, image: nil, root: "host",
                                command: [], runArguments: [], directory: "/")
        r.status = .stopped
        r.finished = 100
        r.exit = exit
        switch monitor {
        case .gone: r.monitor = ProcessRef(pid: getpid(), start: 1)
        case .alive: r.monitor = ProcessRef.current(getpid())
        case .none: r.monitor = nil
        }
        return r
    }

    /// A container whose monitor was killed read "Exited (137)" like one
    /// whose command was killed; the README says ps tells them apart.
    @Test func howAContainerEndedIsSaidWhenItIsNotItsCommandsDoing() {
        #expect(Containers.statusText(stopped(.init(code: 0, reason: "exited")), now: 160) == "Exited (0) 1 minute ago")
        // A fresh try: between two runs of its restart policy, ps said
        // "Exited (1)"; the monitor lives and will start it again.
        #expect(Containers.statusText(stopped(.init(code: 1, reason: "exited"), monitor: .alive), now: 101)
            == "Restarting (1) 1 second ago")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, reason: "", monitorLost: true)), now: 102)
            == "Exited (137) 2 seconds ago (monitor killed)")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, reason: "", monitorLost: true),
                                              monitor: .none), now: 100)
            == "Exited (137) 0 seconds ago (never started)")
        #expect(Containers.statusText(stopped(.init(code: 137, signal: 9, oomKilled: true, reason: "")), now: 100)
            == "Exited (137) 0 seconds ago (OOM killed)")
    }
}
