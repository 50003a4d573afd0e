#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Ctrl-C (SIGINT) and SIGTERM during a pull or push end the transfers and
/// let the import roll back, instead of killing nook midway: a killed pull
/// leaves nothing in the store either (its import directory is removed by
/// the next one), but a cancelled one also says so.
enum Interrupts {
    nonisolated(unsafe) private(set) static var received = false

    /// Cancels `flag` on SIGINT or SIGTERM until the returned function is called.
    static func watch(_ flag: CancelFlag) -> () -> Void {
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                received = true
                flag.cancel()
            }
            source.resume()
            sources.append(source)
        }
        return {
            for source in sources { source.cancel() }
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }
    }
}
