// Where the cgroup hierarchies are and what they hold: the cgroup v2 mount
// (/sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid
// one), controllers still bound to v1 hierarchies (a hybrid or legacy host:
// those cannot be delegated to an unprivileged user), and this process's
// own v2 cgroup. See cgroups(7) and cgroup-v2.rst "Delegation".

#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// The cgroup layout of the host, as this process sees it.
public struct CgroupHost: Equatable, Sendable {
    /// Where cgroup2 is mounted; nil on a v1-only host.
    public var v2Mount: String?
    /// Controllers bound to a v1 hierarchy, each with its mount point
    /// (`memory: /sys/fs/cgroup/memory`); blkio is reported as io.
    public var v1Controllers: [String: String]
    /// This process's cgroup in the v2 hierarchy (`/user.slice/...`).
    public var ownCgroup: String?

    public init(v2Mount: String?, v1Controllers: [String: String] = [:], ownCgroup: String? = nil) {
        self.v2Mount = v2Mount
        self.v1Controllers = v1Controllers
        self.ownCgroup = ownCgroup
    }

    /// Controllers on v1 beside a v2 mount: systemd's "hybrid" layout.
    public var isHybrid: Bool { v2Mount != nil && !v1Controllers.isEmpty }

    /// The controllers nook's limits use.
    public static let limitControllers = ["cpu", "cpuset", "io", "memory", "pids"]

    /// The directory of a v2 cgroup path.
    public func directory(of cgroup: String) -> String? {
        guard let v2Mount else { return nil }
        return cgroup == "/" ? v2Mount : v2Mount + cgroup
    }

    public static func probe() -> CgroupHost {
        let mounts = parseMountinfo(CgroupIO.read("/proc/self/mountinfo") ?? "")
        let own = parseProcCgroup(CgroupIO.read("/proc/self/cgroup") ?? "")
        return CgroupHost(v2Mount: mounts.v2, v1Controllers: mounts.v1, ownCgroup: own)
    }

    /// The cgroup2 mount (preferring /sys/fs/cgroup, then
    /// /sys/fs/cgroup/unified) and the v1 controllers' mount points.
    public static func parseMountinfo(_ text: String) -> (v2: String?, v1: [String: String]) {
        var v2: [String] = []
        var v1: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " ")
            let tail = halves[1].split(separator: " ")
            guard fields.count >= 5, tail.count >= 3 else { continue }
            let point = unescape(String(fields[4]))
            switch tail[0] {
            case "cgroup2":
                v2.append(point)
            case "cgroup":
                for option in tail[2].split(separator: ",") {
                    let name = option == "blkio" ? "io" : String(option)
                    if limitControllers.contains(name) || ["cpuacct", "devices", "freezer", "hugetlb"].contains(name) {
                        v1[name] = v1[name] ?? point
                    }
                }
            default: continue
            }
        }
        let preferred = v2.first { $0 == "/sys/fs/cgroup" } ?? v2.first { $0 == "/sys/fs/cgroup/unified" } ?? v2.first
        return (preferred, v1)
    }

    /// The path of the `0::` line of /proc/PID/cgroup.
    public static func parseProcCgroup(_ text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            // " (deleted)" follows the path of a removed cgroup.
            return path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path
        }
        return nil
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
               let n = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(n)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The controllers a cgroup directory's children may use
    /// (cgroup.controllers of the directory).
    public static func controllers(of directory: String) -> Set<String>? {
        guard let text = CgroupIO.read(directory + "/cgroup.controllers") else { return nil }
        return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }
}

/// Small file operations on cgroupfs, with errno.
enum CgroupIO {
    static func read(_ path: String) -> String? { readTextFile(path, limit: 1 << 20) }

    /// Writes `value` in one write(2), as cgroupfs wants; nil or the errno.
    static func write(_ path: String, _ value: String) -> Errno? {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return Errno.current }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        while true {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            return n == bytes.count ? nil : (n < 0 ? Errno.current : Errno(EIO))
        }
    }

    static func owner(_ path: String) -> uid_t? {
        var sb = stat()
        guard stat(path, &sb) == 0 else { return nil }
        return sb.st_uid
    }

    static func writable(_ path: String) -> Bool { access(path, W_OK) == 0 }

    /// Removes a cgroup directory and the ones below it, deepest first.
    /// A cgroup whose last process is still exiting answers EBUSY for a
    /// moment; that is retried for up to a second.
    static func removeTree(_ path: String) -> Errno? {
        for child in subdirectories(path) {
            if let e = removeTree(path + "/" + child) { return e }
        }
        for _ in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { return nil }
            guard errno == EBUSY else { return Errno.current }
            usleep(10_000)
        }
        return Errno(EBUSY)
    }

    static func subdirectories(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let isDir = entry.pointee.d_type == UInt8(DT_DIR)
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if isDir && name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
