// Moving a process into a running sandbox's cgroup: `nook exec` and a
// detached container's health checks join the container's limits.
//
// Writing the pid into cgroup.procs needs write access to the common
// ancestor of the two cgroups (cgroup-v2.rst, "Delegation Containment").
// On a host with logind the command runs in a login session's scope and
// the sandbox in a scope of the user manager's: their common ancestor is
// user-UID.slice, which root owns, so the kernel says EACCES. The user
// manager can still do it (AttachProcessesToUnit; it asks the system
// manager when the kernel refuses it too), so nook asks it then.

#if canImport(Glibc)
import Glibc
#endif
import CNookSdBus
import NookSupport

public enum CgroupJoin {
    /// Moves `pid` into `cgroup`, a directory below /sys/fs/cgroup; `scope`
    /// is the systemd scope that holds it, when it has one.
    public static func place(_ pid: pid_t, in cgroup: String, scope: String?) throws(CgroupFailure) {
        let direct = CgroupIO.write(cgroup + "/cgroup.procs", String(pid))
        guard let direct else { return }
        guard direct.rawValue == EACCES || direct.rawValue == EPERM, let scope,
              let subcgroup = subcgroup(of: cgroup, in: scope) else {
            throw CgroupFailure("move pid \(pid) into \(cgroup): \(direct)")
        }
        do {
            try UserBus.connect().attach(UInt32(pid), to: scope, subcgroup: subcgroup)
            Log.debug("the user manager moved the process into the container's cgroup",
                      ["pid": String(pid), "unit": scope, "subcgroup": subcgroup])
        } catch {
            throw CgroupFailure("move pid \(pid) into \(cgroup): \(direct); asking the user manager: "
                                + error.description)
        }
    }

    /// `/sandbox` for `.../nook-ID.scope/sandbox` in `nook-ID.scope`; ""
    /// for the scope's own cgroup; nil when the path is not below it.
    public static func subcgroup(of cgroup: String, in scope: String) -> String? {
        let parts = cgroup.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let at = parts.lastIndex(of: scope) else { return nil }
        let rest = parts[(at + 1)...]
        return rest.isEmpty ? "" : "/" + rest.joined(separator: "/")
    }
}
