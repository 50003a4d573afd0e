#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSpec
import NookSupport

/// A failure to write the sandbox's id maps, with what the helper said and
/// what to check.
public struct IDMapFailure: NookFailure {
    public let helper: String
    public let requested: [IDMapping]
    public let output: String
    public let status: String
    public let checks: [String]

    public var description: String {
        let ranges = requested.map { "\($0.containerID) \($0.hostID) \($0.size)" }.joined(separator: ", ")
        var text = "\(helper) failed (\(status))"
        if !output.isEmpty { text += ": \(output)" }
        text += "\n  asked for (inside host count): \(ranges)"
        return text
    }

    public var hint: String? { checks.isEmpty ? nil : checks.joined(separator: "\n  hint: ") }
}

/// Writes uid_map and gid_map of a freshly cloned child: through the setuid
/// helpers newuidmap/newgidmap (shadow-utils) when subordinate ranges are
/// used, or directly when only the caller's own id is mapped (an
/// unprivileged process may map exactly itself, after denying setgroups).
enum IDMapWriter {
    static func apply(pid: pid_t, uids: [IDMapping], gids: [IDMapping], hostUID: UInt32, hostGID: UInt32,
                      path: String?) throws {
        if writesDirectly(uids: uids, gids: gids, hostUID: hostUID, hostGID: hostGID) {
            try writeDirect(pid: pid, uids: uids, gids: gids, denySetgroups: getuid() != 0)
            return
        }
        let uidHelper = findProgram("newuidmap", path: path) ?? "/usr/bin/newuidmap"
        let gidHelper = findProgram("newgidmap", path: path) ?? "/usr/bin/newgidmap"
        // Both helpers run at once: each is a setuid exec, the slowest part of
        // starting a sandbox.
        let u = try Spawned.start(uidHelper, helperArgs("newuidmap", pid, uids))
        let g: Spawned
        do {
            g = try Spawned.start(gidHelper, helperArgs("newgidmap", pid, gids))
        } catch {
            _ = u.wait()
            throw error
        }
        // A helper that hangs would hold the launch with every signal blocked.
        let ur = u.wait(timeout: 10)
        let gr = g.wait(timeout: 10)
        for (spawned, result, maps, file) in [(u, ur, uids, "/etc/subuid"), (g, gr, gids, "/etc/subgid")]
        where result.status != 0 {
            let status = result.status & 0x7f == SIGKILL ? "did not finish within 10 seconds"
                : describeStatus(result.status)
            throw IDMapFailure(helper: spawned.path, requested: maps, output: result.stderr, status: status,
                               checks: diagnose(helper: spawned.path, rangesFile: file))
        }
        // A helper that claims success must have written the map: a stand-in
        // that exits 0 would otherwise surface later as a puzzling EINVAL.
        for (file, helper, maps) in [("uid_map", uidHelper, uids), ("gid_map", gidHelper, gids)] {
            let written = HostProbe.readTextFile("/proc/\(pid)/\(file)") ?? ""
            guard !written.trimming(" \n").isEmpty else {
                throw IDMapFailure(helper: helper, requested: maps, output: "",
                                   status: "exit status 0, but \(file) is empty",
                                   checks: ["\(helper) is not the newuidmap/newgidmap of shadow-utils, or did nothing; "
                                       + "check which one PATH finds"])
            }
        }
    }

    /// True when nook writes the maps itself: as root, or when only the
    /// caller's own ids are mapped, which needs setgroups denied first.
    static func writesDirectly(uids: [IDMapping], gids: [IDMapping], hostUID: UInt32, hostGID: UInt32) -> Bool {
        let selfOnly = uids.count == 1 && uids[0].hostID == hostUID && uids[0].size == 1
            && gids.count == 1 && gids[0].hostID == hostGID && gids[0].size == 1
        return selfOnly || getuid() == 0
    }

    /// False when the sandbox cannot call setgroups(2) (a self-only map).
    static func setgroupsAllowed(uids: [IDMapping], gids: [IDMapping]) -> Bool {
        getuid() == 0 || !writesDirectly(uids: uids, gids: gids, hostUID: getuid(), hostGID: getgid())
    }

    static func helperArgs(_ name: String, _ pid: pid_t, _ maps: [IDMapping]) -> [String] {
        [name, String(pid)] + maps.flatMap { [String($0.containerID), String($0.hostID), String($0.size)] }
    }

    static func writeDirect(pid: pid_t, uids: [IDMapping], gids: [IDMapping], denySetgroups: Bool)
        throws
    {
        func write(_ file: String, _ text: String) throws {
            let path = "/proc/\(pid)/\(file)"
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemFailure("open", path: path) }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
                throw SystemFailure("write \(text.trimming("\n")) to", path: path)
            }
        }
        func lines(_ maps: [IDMapping]) -> String {
            maps.map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined()
        }
        if denySetgroups { try write("setgroups", "deny") }
        try write("uid_map", lines(uids))
        try write("gid_map", lines(gids))
    }

    static func describeStatus(_ status: Int32) -> String {
        if status & 0x7f == 0 { return "exit status \((status >> 8) & 0xff)" }
        return "killed by signal \(status & 0x7f)"
    }

    /// What on this host can make the helper fail, checked where nook can.
    static func diagnose(helper: String, rangesFile: String) -> [String] {
        var checks: [String] = []
        if let text = HostProbe.readTextFile("/proc/self/uid_map"), !text.contains("4294967295") {
            // Nested: root of the outer namespace shows as nobody, so the
            // checks below would blame a helper that is fine.
            return ["nook is running inside a user namespace already; nested namespaces can map only the ids "
                + "the outer one has, and the outer one must let newuidmap run"]
        }
        var sb = stat()
        if stat(helper, &sb) == 0 {
            let setuidRoot = sb.st_uid == 0 && (sb.st_mode & S_ISUID) != 0
            let hasCaps = nook_has_file_caps(helper) == 1
            if !setuidRoot && !hasCaps {
                checks.append("\(helper) is neither setuid root nor has file capabilities (cap_setuid/cap_setgid); "
                    + "reinstall it: sudo apt install --reinstall uidmap")
            }
            var vfs = statvfs()
            if statvfs(helper, &vfs) == 0 && (vfs.f_flag & UInt(ST_NOSUID)) != 0 {
                checks.append("\(helper) is on a filesystem mounted nosuid, which disables its setuid bit")
            }
        }
        checks.append("\(rangesFile) must give your user the ranges above, as NAME:START:COUNT, and no range "
            + "may contain your own id (nook doctor checks this)")
        return checks
    }
}
