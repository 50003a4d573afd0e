import Foundation
import NookRuntime
import NookSpec
import Testing

/// The launcher run directly from this test process, which has threads:
/// everything after clone is C, so the child of a multi-threaded parent
/// must work (DESIGN.md's rule about forking from Swift).
@Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/proc/self/ns/user"), "needs user namespaces"))
struct LaunchTests {
    @Test func aSandboxStartsFromAProcessThatHasManyThreads() throws {
        let stop = ManagedFlag()
        let threads = (0..<4).map { _ in
            Thread { while !stop.value { _ = [Int](repeating: 1, count: 1000).reduce(0, +) } }
        }
        threads.forEach { $0.start() }
        defer { stop.value = true }
        Thread.sleep(forTimeInterval: 0.05)

        var request = SandboxRequest()
        request.command = ["/bin/sh", "-c", "exit 3"]
        request.bindWorkspace = false
        let host = try HostProbe.current(for: request)
        let resolution = try Resolver.resolve(request, host: host)
        for _ in 0..<20 {
            #expect(try Launcher.run(resolution) == .exited(3))
        }
    }
}

final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}
