#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// Relays the sandbox's own pty (from its private devpts) to the caller's
/// terminal: the caller's terminal goes raw for the run and is restored
/// after, window size changes follow, and neither side can stall the other
/// (the master is non-blocking and input waits in a buffer).
struct TerminalRelay {
    let master: Int32
    var relayInput: Bool
    private var pending: [UInt8] = []
    private var saved: termios?
    private var masterOpen = true

    init(master: Int32, relayInput: Bool) {
        self.master = master
        self.relayInput = relayInput
        let flags = fcntl(master, F_GETFL)
        _ = fcntl(master, F_SETFL, flags | O_NONBLOCK)
        // Raw only when passing input on (-i): without it, the terminal keeps
        // turning Ctrl-C into a signal for nook, which passes it on.
        if relayInput && isatty(0) == 1 {
            var t = termios()
            if tcgetattr(0, &t) == 0 {
                saved = t
                var raw = t
                cfmakeraw(&raw)
                tcsetattr(0, TCSANOW, &raw)
            }
        }
        resize()
    }

    /// Copies the caller's window size to the sandbox's terminal; the kernel
    /// then sends SIGWINCH to the sandbox's foreground job.
    func resize() {
        var ws = winsize()
        if ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 || ioctl(1, UInt(TIOCGWINSZ), &ws) == 0 {
            _ = ioctl(master, UInt(TIOCSWINSZ), &ws)
        }
    }

    func addPollFDs(_ fds: inout [pollfd]) {
        if masterOpen {
            let events = Int16(POLLIN) | (pending.isEmpty ? 0 : Int16(POLLOUT))
            fds.append(pollfd(fd: master, events: events, revents: 0))
        }
        if relayInput && pending.isEmpty {
            fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0))
        }
    }

    mutating func handle(_ fds: [pollfd]) {
        for p in fds where p.revents != 0 {
            if p.fd == master {
                if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { copyOut() }
                if p.revents & Int16(POLLOUT) != 0 { flushInput() }
            } else if p.fd == 0 {
                var buf = [UInt8](repeating: 0, count: 16384)
                let n = read(0, &buf, buf.count)
                if n > 0 {
                    pending += buf[0..<n]
                    flushInput()
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    relayInput = false
                }
            }
        }
    }

    private mutating func flushInput() {
        while !pending.isEmpty {
            let n = pending.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
            if n > 0 {
                pending.removeFirst(n)
            } else {
                if n < 0 && errno != EAGAIN && errno != EINTR { pending = [] }
                return
            }
        }
    }

    /// Copies what the sandbox wrote; false when nothing more is coming now.
    @discardableResult
    private mutating func copyOut() -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = read(master, &buf, buf.count)
        if n > 0 {
            buf.withUnsafeBytes { raw in
                var off = 0
                while off < n {
                    let w = write(1, raw.baseAddress! + off, n - off)
                    if w < 0 && errno == EINTR { continue }
                    if w <= 0 { return }
                    off += w
                }
            }
            return true
        }
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { masterOpen = false }
        return false
    }

    /// Reads what is left once the sandbox has ended.
    mutating func drain() {
        while masterOpen && copyOut() {}
    }

    func restore() {
        if var t = saved { tcsetattr(0, TCSANOW, &t) }
        close(master)
    }
}
