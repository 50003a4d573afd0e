// nook doctor's checks: the host as a user's first `nook run` meets it,
// one verdict per check with what was found and, when it is not ok, the
// fix. Pure functions of DoctorFacts.

import NookCgroups
import NookSpec
import NookSupport

public enum CheckStatus: String, Codable, Equatable, Sendable {
    case ok, warn, fail
}

public struct Check: Codable, Equatable, Sendable {
    /// A stable name for machines: `userns`, `subuid`, `cgroup-controllers`.
    public var id: String
    /// What is checked, for people: `user namespaces`.
    public var title: String
    public var status: CheckStatus
    /// What was found.
    public var detail: String
    /// What to do, when the status is not ok.
    public var fix: String?

    public init(_ id: String, _ title: String, _ status: CheckStatus, _ detail: String, fix: String? = nil) {
        self.id = id
        self.title = title
        self.status = status
        self.detail = detail
        self.fix = fix
    }
}

public enum Doctor {
    public static func checks(_ f: DoctorFacts) -> [Check] {
        [
            userNamespaces(f), apparmor(f),
            subordinateIDs(f, gid: false), subordinateIDs(f, gid: true),
            helper(f.newuidmap, name: "newuidmap", capability: "cap_setuid", f),
            helper(f.newgidmap, name: "newgidmap", capability: "cap_setgid", f),
            fuseDevice(f), fuseOverlayfs(f), overlay(f),
            cgroupV2(f), cgroupControllers(f), userManager(f), userBus(f), linger(f), runtimeDir(f),
        ]
    }

    // MARK: User namespaces

    static func userNamespaces(_ f: DoctorFacts) -> Check {
        let title = "user namespaces"
        if f.userns.ok {
            return Check("userns", title, .ok, "an unprivileged user namespace works"
                + (f.maxUserNamespaces.map { " (user.max_user_namespaces = \($0))" } ?? ""))
        }
        let failed = "\(f.userns.step ?? "?") failed: \(f.userns.errno?.description ?? "?")"
        if f.maxUserNamespaces == 0 {
            return Check("userns", title, .fail, "\(failed); user.max_user_namespaces is 0",
                         fix: "sudo sysctl -w user.max_user_namespaces=28633, and keep it in /etc/sysctl.d/")
        }
        if f.unprivilegedUsernsClone == 0 {
            return Check("userns", title, .fail, "\(failed); kernel.unprivileged_userns_clone is 0",
                         fix: "sudo sysctl -w kernel.unprivileged_userns_clone=1, and keep it in /etc/sysctl.d/")
        }
        if f.apparmorRestrictsUserns && !confinedByNook(f) {
            return Check("userns", title, .fail, "\(failed); AppArmor restricts unprivileged user namespaces "
                + "(kernel.apparmor_restrict_unprivileged_userns = 1) and nook runs without a profile allowing them",
                         fix: apparmorFix(f))
        }
        return Check("userns", title, .fail, failed,
                     fix: "check the kernel's user namespace settings (user.max_user_namespaces) and any LSM that "
                         + "restricts them; inside a container, the container must allow nested user namespaces")
    }

    static func confinedByNook(_ f: DoctorFacts) -> Bool {
        guard let label = f.apparmorLabel else { return false }
        return label == "nook" || label.hasPrefix("nook ")
    }

    static func apparmorFix(_ f: DoctorFacts) -> String {
        "install nook's AppArmor profile: sudo install -m 644 contrib/apparmor/nook /etc/apparmor.d/nook && "
            + "sudo apparmor_parser -r /etc/apparmor.d/nook (it allows user namespaces for /usr/bin/nook and "
            + "/usr/local/bin/nook; add another path there if nook lives elsewhere)"
    }

    static func apparmor(_ f: DoctorFacts) -> Check {
        let title = "AppArmor"
        guard f.apparmorEnabled || f.apparmorRestrictsUserns else {
            return Check("apparmor", title, .ok, "AppArmor is not active")
        }
        guard f.apparmorRestrictsUserns else {
            return Check("apparmor", title, .ok, "AppArmor does not restrict unprivileged user namespaces")
        }
        let os = f.osName.map { " (\($0))" } ?? ""
        if confinedByNook(f) {
            return Check("apparmor", title, .ok, "AppArmor restricts unprivileged user namespaces\(os); nook runs "
                + "under its profile (\(f.apparmorLabel ?? "nook")), which allows them")
        }
        if let installed = f.apparmorProfilePath {
            return Check("apparmor", title, .fail, "AppArmor restricts unprivileged user namespaces\(os); \(installed) "
                + "is installed but does not apply to \(f.executable) (label: \(f.apparmorLabel ?? "none"))",
                         fix: "run nook from a path the profile names (/usr/bin/nook, /usr/local/bin/nook), or add "
                             + "\(f.executable) to \(installed) and reload it: sudo apparmor_parser -r \(installed)")
        }
        return Check("apparmor", title, .fail, "AppArmor restricts unprivileged user namespaces\(os) "
            + "(kernel.apparmor_restrict_unprivileged_userns = 1) and no AppArmor profile for nook is installed, "
            + "so user namespaces are denied to it", fix: apparmorFix(f))
    }

    // MARK: Ids

    static func subordinateIDs(_ f: DoctorFacts, gid: Bool) -> Check {
        let file = gid ? "/etc/subgid" : "/etc/subuid"
        let id = gid ? "subgid" : "subuid"
        let title = gid ? "subordinate gids" : "subordinate uids"
        let ranges = gid ? f.subgidRanges : f.subuidRanges
        let entries = gid ? f.subgidEntries : f.subuidEntries
        let source = f.subidService.map { " (looked up through nsswitch.conf \($0))" } ?? ""
        guard !ranges.isEmpty else {
            let start = suggestedStart(f)
            return Check(id, title, .fail, "no range for \(f.user) in \(file)\(source): sandboxes map only your own "
                + "id (files of other owners show as nobody)",
                         fix: "sudo usermod --add-subuids \(start)-\(start + 65535) --add-subgids \(start)-\(start + 65535) "
                             + "\(f.user)")
        }
        let total = ranges.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        let list = ranges.map(\.description).joined(separator: ", ")
        var problems: [String] = []
        var fixes: [String] = []
        for r in ranges {
            let start = UInt64(r.start), end = UInt64(r.start) + UInt64(r.count) - 1
            let mine = Set([f.user, String(f.uid)])
            for other in entries where !mine.contains(other.owner) && other.start <= end && start <= other.end {
                problems.append("\(start)-\(end) overlaps \(other.owner)'s \(other.start)-\(other.end)")
            }
            let real = f.accounts.filter { UInt64($0.value) >= start && UInt64($0.value) <= end }
                .sorted { $0.value < $1.value }
            if !real.isEmpty {
                let names = real.prefix(3).map { "\($0.key) (\($0.value))" }.joined(separator: ", ")
                problems.append("\(start)-\(end) covers real uids of /etc/passwd: \(names)"
                    + (real.count > 3 ? " and \(real.count - 3) more" : ""))
            }
        }
        if !problems.isEmpty {
            fixes.append("give every user a range of its own above all real ids: edit \(file) (usermod --del-\(id)s, "
                + "--add-\(id)s)")
        }
        // The user's own lines overlapping each other (two useradd or
        // usermod runs): nook joins them (the kernel refuses a map whose
        // host ranges overlap), but the file says more ids than there are.
        let mine = entries.filter { $0.owner == f.user || $0.owner == String(f.uid) }
        for (i, a) in mine.enumerated() {
            for b in mine[(i + 1)...] where a.start < b.end + 1 && b.start < a.end + 1 {
                problems.append("\(file) gives \(f.user) \(a.start)-\(a.end) and \(b.start)-\(b.end), which overlap "
                    + "(nook uses them as one range)")
                fixes.append("remove one of the overlapping lines of \(f.user) from \(file) (usermod --del-\(id)s)")
            }
        }
        if total < 65536 {
            problems.append("only \(total) ids: images with owners up to 65535 (nobody is 65534) need 65536")
            fixes.append("sudo usermod --add-\(id)s with a range of 65536 ids")
        }
        let detail = "\(list)\(source)" + (ranges.count > 1 ? "; all are used" : "")
        if problems.isEmpty { return Check(id, title, .ok, detail) }
        return Check(id, title, .warn, detail + "; " + problems.joined(separator: "; "),
                     fix: fixes.joined(separator: "; "))
    }

    /// A start for a new 65536-id range above every range and real uid.
    static func suggestedStart(_ f: DoctorFacts) -> UInt64 {
        var end: UInt64 = 100_000
        for e in f.subuidEntries + f.subgidEntries { end = max(end, e.start + e.count) }
        for (_, uid) in f.accounts where uid < 65534 { end = max(end, UInt64(uid) + 1) }
        return (end + 65535) / 65536 * 65536
    }

    static func helper(_ h: HelperFacts?, name: String, capability: String, _ f: DoctorFacts) -> Check {
        let title = name
        guard let h else {
            return Check(name, title, .fail, "\(name) is not on PATH (\(f.path.isEmpty ? "empty" : f.path)): sandboxes "
                + "map only your own id", fix: "sudo apt install uidmap (Fedora, Arch: shadow-utils / shadow)")
        }
        if h.nosuidMount && (h.setuidRoot || h.hasCapability) {
            return Check(name, title, .fail, "\(h.path) is on a filesystem mounted nosuid, which ignores its "
                + (h.setuidRoot ? "setuid bit" : "file capability"),
                         fix: "use the \(name) of a filesystem mounted without nosuid (/usr/bin/\(name)), or remount")
        }
        if h.setuidRoot { return Check(name, title, .ok, "\(h.path): setuid root") }
        if h.hasCapability { return Check(name, title, .ok, "\(h.path): file capability \(capability)") }
        return Check(name, title, .fail, "\(h.path) has neither the setuid bit nor the \(capability) file capability, "
            + "so it cannot write another process's id map",
                     fix: "sudo chmod u+s \(h.path) (or sudo setcap \(capability)+ep \(h.path)); if it is a stray copy, "
                         + "put /usr/bin first in PATH; reinstalling uidmap restores it")
    }

    // MARK: Filesystems

    static func fuseDevice(_ f: DoctorFacts) -> Check {
        let title = "/dev/fuse"
        let d = f.fuse
        guard d.exists else {
            return Check("fuse", title, .fail, "/dev/fuse does not exist: fuse-overlayfs cannot work",
                         fix: "sudo modprobe fuse (and install fuse3); in a container, pass the device: --device /dev/fuse")
        }
        guard d.isFuseDevice else {
            return Check("fuse", title, .fail, "/dev/fuse is not the FUSE character device (10:229)",
                         fix: "remove what is there and load the module: sudo modprobe fuse")
        }
        if let e = d.openError {
            let mode = String(d.mode, radix: 8)
            return Check("fuse", title, .fail, "/dev/fuse cannot be opened by \(f.user): \(e) (mode \(mode), owner uid "
                + "\(d.owner)): fuse-overlayfs cannot work",
                         fix: "sudo chmod 0666 /dev/fuse (fuse3's udev rule makes it so); in a container, pass the device")
        }
        return Check("fuse", title, .ok, "/dev/fuse opens read-write")
    }

    static func fuseOverlayfs(_ f: DoctorFacts) -> Check {
        if let path = f.fuseOverlayfs { return Check("fuse-overlayfs", "fuse-overlayfs", .ok, path) }
        return Check("fuse-overlayfs", "fuse-overlayfs", f.overlay.ok ? .warn : .fail,
                     "not on PATH" + (f.overlay.ok ? "; native overlay works, so images still run"
                         : "; native overlay does not work either, so images need a read-only root"),
                     fix: "sudo apt install fuse-overlayfs")
    }

    static func overlay(_ f: DoctorFacts) -> Check {
        let title = "overlay in a user namespace"
        if f.overlay.ok { return Check("overlay", title, .ok, "the kernel (\(f.kernel)) mounts overlay in a user namespace") }
        if !f.userns.ok {
            return Check("overlay", title, .fail, "not tried: user namespaces do not work", fix: "fix user namespaces first")
        }
        return Check("overlay", title, .warn, "\(f.overlay.step ?? "?") failed: \(f.overlay.errno?.description ?? "?") "
            + "(kernel \(f.kernel); overlay in a user namespace needs Linux 5.11)",
                     fix: f.fuseOverlayfs == nil ? "install fuse-overlayfs (sudo apt install fuse-overlayfs), which nook "
                         + "uses instead" : "none needed: nook uses fuse-overlayfs instead")
    }

    // MARK: Cgroups

    static func cgroupV2(_ f: DoctorFacts) -> Check {
        let title = "cgroup v2"
        guard let mount = f.cgroups.v2Mount else {
            return Check("cgroup-v2", title, .fail, "no cgroup v2 hierarchy is mounted (cgroup v1 only): no limits can be "
                + "delegated to you", fix: unifiedFix)
        }
        if f.cgroups.isHybrid {
            let v1 = CgroupHost.limitControllers.filter { f.cgroups.v1Controllers[$0] != nil }
            return Check("cgroup-v2", title, .warn, "hybrid cgroups: cgroup v2 is at \(mount) but the controllers "
                + "\(v1.joined(separator: ", ")) are on cgroup v1 (\(f.cgroups.v1Controllers[v1.first ?? ""] ?? "/sys/fs/cgroup/...")), "
                + "where they cannot be delegated to you", fix: unifiedFix)
        }
        return Check("cgroup-v2", title, .ok, "cgroup v2 at \(mount)")
    }

    static let unifiedFix = "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line (in "
        + "GRUB_CMDLINE_LINUX of /etc/default/grub, then update-grub and reboot) so that every controller is on cgroup v2"

    static func cgroupControllers(_ f: DoctorFacts) -> Check {
        let title = "cgroup controllers"
        let wanted = CgroupHost.limitControllers
        guard let available = f.managerControllers, let manager = f.manager else {
            return Check("cgroup-controllers", title, .warn, "none delegated: no systemd user manager answers, so "
                + "limits (--memory, --pids, ...) are not enforced", fix: lingerFix(f))
        }
        let unit = manager.controlGroup?.split(separator: "/").last.map(String.init) ?? "your user manager"
        let missing = wanted.filter { !available.contains($0) }
        if missing.isEmpty {
            return Check("cgroup-controllers", title, .ok, "\(wanted.joined(separator: " ")) delegated to \(unit)")
        }
        let has = available.isEmpty ? "none" : available.sorted().joined(separator: " ")
        let onV1 = missing.filter { f.cgroups.v1Controllers[$0] != nil }
        var detail = "\(missing.joined(separator: " ")) not delegated to \(unit) (it has: \(has)): limits on "
            + "them are not enforced"
        if f.cgroups.v2Mount == nil {
            detail += "; cause: no cgroup v2"
            return Check("cgroup-controllers", title, .warn, detail, fix: unifiedFix)
        }
        if !onV1.isEmpty {
            detail += "; cause: hybrid cgroups (\(onV1.joined(separator: " ")) \(onV1.count == 1 ? "is" : "are") on cgroup v1)"
            return Check("cgroup-controllers", title, .warn, detail, fix: unifiedFix + ", then delegate them: "
                + delegateFix)
        }
        return Check("cgroup-controllers", title, .warn, detail, fix: delegateFix)
    }

    static let delegateFix = "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset "
        + "io memory pids\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload, "
        + "then log in again"

    static func lingerFix(_ f: DoctorFacts) -> String {
        "log in through a session that starts your user manager (ssh, a desktop), or for a user without one (CI): "
            + "sudo loginctl enable-linger \(f.user)"
    }

    static func userManager(_ f: DoctorFacts) -> Check {
        let title = "systemd user manager"
        if let m = f.manager {
            return Check("user-manager", title, .ok, "systemd \(m.version ?? "?") answers at \(m.address)"
                + (m.controlGroup.map { " (\($0))" } ?? ""))
        }
        return Check("user-manager", title, .warn, "no systemd user manager answers (\(f.userBus.address): "
            + "\(f.userBus.problem ?? "?"); \(f.privateSocket.address): \(f.privateSocket.problem ?? "?")): sandboxes "
            + "get no cgroup and limits are not enforced", fix: lingerFix(f))
    }

    static func userBus(_ f: DoctorFacts) -> Check {
        let title = "user D-Bus"
        if f.userBus.version != nil { return Check("user-bus", title, .ok, "\(f.userBus.address), the manager is on it") }
        if f.privateSocket.version != nil {
            return Check("user-bus", title, .warn, "no user bus at \(f.userBus.address) (\(f.userBus.problem ?? "?")); "
                + "nook reaches the manager on its private socket instead",
                         fix: "sudo apt install dbus-user-session, then log in again")
        }
        return Check("user-bus", title, .warn, "no user bus at \(f.userBus.address) (\(f.userBus.problem ?? "?"))",
                     fix: "sudo apt install dbus-user-session; it starts with your user manager (" + lingerFix(f) + ")")
    }

    static func linger(_ f: DoctorFacts) -> Check {
        let title = "linger"
        if f.linger { return Check("linger", title, .ok, "enabled: \(f.user)'s manager runs without a login session") }
        if f.manager != nil {
            return Check("linger", title, .ok, "not enabled: your manager runs while you are logged in; a CI user "
                + "without a login session needs: sudo loginctl enable-linger \(f.user)")
        }
        return Check("linger", title, .warn, "not enabled, and no user manager runs for \(f.user)",
                     fix: "sudo loginctl enable-linger \(f.user)")
    }

    static func runtimeDir(_ f: DoctorFacts) -> Check {
        let title = "XDG_RUNTIME_DIR"
        let expected = "/run/user/\(f.uid)"
        guard let dir = f.runtimeDir else {
            return Check("runtime-dir", title, .warn, "not set: nook cannot find your user bus or keep runtime state",
                         fix: "log in through a PAM session (pam_systemd sets it), or export XDG_RUNTIME_DIR=\(expected) "
                             + "once it exists (sudo loginctl enable-linger \(f.user) creates it)")
        }
        guard f.runtimeDirExists else {
            return Check("runtime-dir", title, .fail, "\(dir) does not exist",
                         fix: "sudo loginctl enable-linger \(f.user) creates \(expected); or unset XDG_RUNTIME_DIR")
        }
        if let owner = f.runtimeDirOwner, owner != f.uid {
            return Check("runtime-dir", title, .fail, "\(dir) belongs to uid \(owner), not to \(f.user) (\(f.uid))",
                         fix: "export XDG_RUNTIME_DIR=\(expected) (yours); a directory of another user's is not private")
        }
        if let mode = f.runtimeDirMode, mode & 0o077 != 0 {
            return Check("runtime-dir", title, .warn, "\(dir) has mode \(String(mode, radix: 8)): others can reach it",
                         fix: "chmod 0700 \(dir)")
        }
        return Check("runtime-dir", title, .ok, "\(dir), yours, mode 0700")
    }
}

extension Check {
    /// `warn  cgroup v2: hybrid cgroups ...; fix: boot with ...`
    public var line: String {
        let status = self.status.rawValue.padding(toLength: 6)
        return "\(status)\(title): \(detail)" + (fix.map { "; fix: \($0)" } ?? "")
    }
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
