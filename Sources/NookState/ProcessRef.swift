#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSupport

/// A process named so that a reused pid is never taken for it: its pid and
/// its start time (clock ticks after boot, /proc/PID/stat field 22), which
/// the kernel never gives two processes with the same pid.
public struct ProcessRef: Codable, Equatable, Sendable, CustomStringConvertible {
    public var pid: Int32
    public var start: UInt64

    public init(pid: Int32, start: UInt64) {
        self.pid = pid
        self.start = start
    }

    /// The process `pid` as it is now; nil when there is none.
    public static func current(_ pid: Int32) -> ProcessRef? {
        guard pid > 0, let s = ProcStat.read(pid) else { return nil }
        return ProcessRef(pid: pid, start: s.start)
    }

    /// True while this very process exists (a zombie counts until reaped).
    /// Running, not reused, and not a zombie waiting to be reaped (a
    /// monitor whose reaper is slow has ended all the same).
    public var isAlive: Bool {
        guard let stat = ProcStat.read(pid) else { return false }
        return stat.start == start && stat.state != "Z" && stat.state != "X"
    }

    /// Alive but stopped: by SIGSTOP (state T) or a tracer (t).
    public var isStopped: Bool {
        guard let stat = ProcStat.read(pid) else { return false }
        return stat.start == start && (stat.state == "T" || stat.state == "t")
    }

    /// A pidfd for this process, checked after opening: if the pid was
    /// reused in between, the start time differs and nil is returned.
    public func openPidfd() -> Int32? {
        let fd = nook_pidfd_open(pid, 0)
        guard fd >= 0 else { return nil }
        guard isAlive else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Sends `signal` through a checked pidfd; false when the process is gone.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        guard let fd = openPidfd() else { return false }
        defer { close(fd) }
        return nook_pidfd_send_signal(fd, signal, 0) == 0
    }

    /// Its children, from every process's parent field.
    public func children() -> [ProcessRef] {
        Self.all { pid, s in s.parent == self.pid }
    }

    /// Every process in the pid namespace this process (a container's
    /// init) is pid 1 of, itself first; empty when it is gone. The init
    /// is not dumpable, so its namespace is read from a child's; the
    /// owner of the user namespace may read those of the rest. (A process
    /// made undumpable inside, by a setuid program, is not seen.)
    public func namespaceMembers() -> [ProcessRef] {
        guard isAlive else { return [] }
        guard let namespace = Self.pidNamespace(pid) ?? children().lazy.compactMap({ Self.pidNamespace($0.pid) }).first
        else { return [self] }
        return [self] + Self.all { pid, _ in pid != self.pid && Self.pidNamespace(pid) == namespace }
    }

    static func pidNamespace(_ pid: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/\(pid)/ns/pid", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The processes in /proc that `matches`, oldest first.
    static func all(_ matches: (Int32, (state: Character, parent: Int32, start: UInt64)) -> Bool) -> [ProcessRef] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [ProcessRef] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(name), let s = ProcStat.read(pid), matches(pid, s) else { continue }
            out.append(ProcessRef(pid: pid, start: s.start))
        }
        return out.sorted { $0.start < $1.start }
    }

    public var description: String { "pid \(pid)" }
}
