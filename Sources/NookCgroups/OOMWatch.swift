#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// OOM kills in a cgroup as they happen: cgroup v2 marks memory.events
/// modified when a counter in it changes, which inotify reports. The
/// detached container's monitor watches its descriptor, so `nook events`
/// shows an OOM kill when it happens, not only when the container ends.
public final class OOMWatch {
    /// Readable when memory.events changed.
    public let fd: Int32
    let file: String
    let baseline: UInt64
    /// Kills counted so far, since the watch began.
    public private(set) var counted: UInt64 = 0

    /// Watches `directory`/memory.events; nil without one (no memory
    /// controller, or no cgroup v2).
    public init?(directory: String) {
        file = directory + "/memory.events"
        guard let text = CgroupIO.read(file) else { return nil }
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        guard inotify_add_watch(fd, file, UInt32(IN_MODIFY)) >= 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
        baseline = CgroupStats.keyed(text)["oom_kill"] ?? 0
    }

    deinit { close(fd) }

    /// Drains the notifications; the kills since the last call.
    public func newKills() -> UInt64 {
        var buf = [UInt8](repeating: 0, count: 4096)
        while read(fd, &buf, buf.count) > 0 {}
        let now = CgroupIO.read(file).flatMap { CgroupStats.keyed($0)["oom_kill"] } ?? baseline
        let total = now >= baseline ? now - baseline : 0
        defer { counted = max(counted, total) }
        return total > counted ? total - counted : 0
    }
}
