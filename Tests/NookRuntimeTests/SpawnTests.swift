@testable import NookRuntime
import Testing

/// newuidmap and newgidmap run through Spawned.
struct SpawnTests {
    /// A fresh try: "newuidmap failed (did not finish within 10 seconds)"
    /// after 0.03 s. Each return of poll counted 50 ms, and poll returns at
    /// once when the program has written or closed stderr.
    @Test func aProgramThatClosesStderrEarlyIsGivenItsWholeTime() throws {
        let spawned = try Spawned.start("/bin/sh", ["sh", "-c", "echo note >&2; exec 2>&-; sleep 0.5; exit 3"])
        let (status, stderr) = spawned.wait(timeout: 10)
        #expect((status >> 8) & 0xff == 3, "killed early: status \(status)")
        #expect(stderr == "note")
    }

    @Test func aProgramThatOutlivesItsTimeIsKilled() throws {
        let spawned = try Spawned.start("/bin/sleep", ["sleep", "30"])
        let (status, _) = spawned.wait(timeout: 1)
        #expect(status & 0x7f == 9)
    }
}
