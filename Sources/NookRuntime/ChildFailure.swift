#if canImport(Glibc)
import Glibc
#endif
import CNookLaunch
import NookSupport

/// A step of the sandbox's setup that failed in the child, reported back as
/// (step, index, errno) and turned into a sentence here, once.
public struct ChildFailure: NookFailure {
    public let step: Int32
    public let errno: Errno
    public let what: String
    public let kernelMessage: String
    public let hint: String?
    public let exitCode: Int32

    public var description: String {
        if isExecFailure && exitCode == 127 { return what }
        var text = "\(what): \(errno)"
        if !kernelMessage.isEmpty { text += " (kernel: \(kernelMessage))" }
        return text
    }

    init(_ e: nook_child_error, plan: LaunchPlan) {
        step = e.step
        errno = Errno(e.err)
        // The fs_context log prefixes each line with its level ("e ", "w ").
        let named = [NOOK_STEP_ROOT_ENTRY, NOOK_STEP_EXEC].contains { e.step == Int32($0.rawValue) }
        var log = named ? "" : ChildFailure.entryName(e).trimming(" \n")
        for level in ["e ", "w ", "i "] where log.hasPrefix(level) { log = String(log.dropFirst(2)) }
        kernelMessage = log
        let index = Int(e.index)
        let op = plan.ops.indices.contains(index) ? plan.ops[index] : nil
        let target = op?.destination ?? (index == -1 ? "/" : "?")
        let err = e.err
        var hint: String?
        var code: Int32 = 125

        switch nook_step(rawValue: UInt32(e.step)) {
        case NOOK_STEP_WAIT_GO: what = "wait for the id maps"
        case NOOK_STEP_JOIN: what = "join the container's namespaces"
        case NOOK_STEP_DUMPABLE: what = "make the sandbox's init non-dumpable"
        case NOOK_STEP_CGROUP_NS: what = "create the cgroup namespace"
        case NOOK_STEP_HOSTNAME: what = "set the hostname to \(plan.hostname ?? "")"
        case NOOK_STEP_LOOPBACK: what = "bring up the loopback interface"
        case NOOK_STEP_MAKE_PRIVATE: what = "make the mount namespace private"
        case NOOK_STEP_ROOT_CLONE:
            what = "clone the root tree \(plan.rootIsHost ? "/" : plan.rootPath)"
            if err == EINVAL { hint = "open_tree needs Linux 5.2 or later" }
        case NOOK_STEP_ROOT_ATTR:
            what = "make the root read-only"
            if err == ENOSYS { hint = "mount_setattr needs Linux 5.12 or later" }
        case NOOK_STEP_ROOT_ATTACH: what = "attach the new root"
        case NOOK_STEP_OP_SOURCE:
            what = "open \(op?.source ?? "?") for \(op?.summary ?? "a mount")"
            if err == ENOENT { hint = "the source disappeared after nook checked it" }
        case NOOK_STEP_OP_RESOLVE:
            what = "resolve the mount destination \(target) inside the sandbox"
            if err == ENOENT { hint = "the destination does not exist in the sandbox's root" }
        case NOOK_STEP_OP_NOT_DIR:
            what = "resolve the mount destination \(target)"
            hint = "a component of \(target) is not a directory inside the sandbox"
        case NOOK_STEP_OP_CREATE:
            what = "create the mount point \(target)"
            if err == EROFS {
                hint = plan.rootIsHost
                    ? "its parent is part of the read-only root; mount below /tmp, /run, your home, "
                        + "or a directory that already exists"
                    : "the root \(plan.rootPath) is read-only and has no \(target): create that directory in it, "
                        + "or run without --read-only"
            }
        case NOOK_STEP_OP_SYMLINK_DEST:
            what = "mount on \(target)"
            hint = "\(target) is a symlink inside the sandbox; nook does not mount through symlinks, "
                + "name the real path instead"
        case NOOK_STEP_OP_FSOPEN: what = "open a \(op?.source ?? "") filesystem for \(target)"
        case NOOK_STEP_OP_FSCONFIG:
            let option = op.flatMap { o in o.options.indices.contains(Int(e.detail)) ? o.options[Int(e.detail)] : nil }
            let fs = op?.source ?? (index == -1 ? "tmpfs" : "")
            what = option.map { "set option \($0) of \(fs) on \(target)" }
                ?? "create the \(fs) filesystem for \(target)"
        case NOOK_STEP_OP_FSMOUNT: what = "mount the \(op?.source ?? "") filesystem for \(target)"
        case NOOK_STEP_OP_ATTR: what = "set mount attributes of \(op?.summary ?? target)"
        case NOOK_STEP_OP_MOVE:
            what = op?.summary ?? "attach a mount"
            if err == ENOTDIR || err == EISDIR || (err == EINVAL && op?.kind == .bind) {
                hint = "a file can only be bound onto a file, a directory onto a directory"
            }
        case NOOK_STEP_OP_SYMLINK: what = "create the symlink \(target)"
        case NOOK_STEP_OP_MKDIR: what = "create the directory \(target)"
        case NOOK_STEP_OP_CHOWN: what = "set the owner of \(target)"
        case NOOK_STEP_ROOT_LIST: what = "list the host's /"
        case NOOK_STEP_ROOT_ENTRY: what = "bind the host's /\(ChildFailure.entryName(e))"
        case NOOK_STEP_ROOT_READONLY: what = "make the sandbox's root read-only"
        case NOOK_STEP_OVERLAY_UPPER:
            what = e.detail == 2 ? "give the persistent layer \(plan.persist ?? "") the owner of the root's lowest layer"
                : "prepare the in-memory writable layer"
        case NOOK_STEP_OVERLAY:
            let layer = e.detail >= 0 && Int(e.detail) < plan.lowerDirs.count ? " (layer \(plan.lowerDirs[Int(e.detail)]))" : ""
            what = "mount the overlay root over \(plan.lowerDirs.first ?? plan.rootPath)\(layer)"
            hint = "kernel overlayfs in a user namespace needs Linux 5.11 (6.6 for an in-memory layer) and a filesystem "
                + "that supports it; try --overlay fuse, or --read-only"
        case NOOK_STEP_OVERLAY_OPEN:
            let dir = index >= 0 && index < plan.lowerDirs.count ? plan.lowerDirs[index]
                : index == -1 ? "the persistent layer's upper directory" : "the persistent layer's work directory"
            what = "open \(dir)"
            if err == ELOOP { hint = "a component of its path is a symlink, which nook does not follow here" }
        case NOOK_STEP_OP_NOT_MOUNT: what = "set attributes of \(target): it is not a mount point"
        case NOOK_STEP_PIVOT_ROOT: what = "pivot_root into the new root"
        case NOOK_STEP_PTY: what = "open the sandbox's terminal"
        case NOOK_STEP_FORK: what = "start the payload process"
        case NOOK_STEP_SETSID: what = "start a new session for the payload"
        case NOOK_STEP_CTTY: what = "make the terminal the payload's controlling terminal"
        case NOOK_STEP_RLIMIT:
            let limit = plan.rlimits.indices.contains(index) ? plan.rlimits[index] : nil
            let name = limit.flatMap { l in Planner.rlimitNumbers.first { $0.value == l.resource }?.key } ?? "?"
            what = "set \(name) to \(limit.map { "\($0.soft):\($0.hard)" } ?? "")"
            if err == EPERM { hint = "a hard limit cannot be raised above the one nook itself runs with (ulimit -H)" }
        case NOOK_STEP_WORKDIR:
            what = "enter the working directory \(plan.cwd)"
            if err == ELOOP {
                hint = "the path goes through a magic link such as /proc/self/fd/N, which could lead out of the sandbox"
            } else if err == ENOENT {
                hint = "it does not exist inside the sandbox; bind it, or pick another with --workdir"
            }
        case NOOK_STEP_WORKDIR_OUTSIDE:
            what = "enter the working directory \(plan.cwd)"
            hint = "it resolves outside the sandbox's root and is refused"
        case NOOK_STEP_SETGID: what = "set the payload's gid to \(plan.gid)"
        case NOOK_STEP_SETUID: what = "set the payload's uid to \(plan.uid)"
        case NOOK_STEP_NO_NEW_PRIVS: what = "set no_new_privs"
        case NOOK_STEP_CAPS: what = "set the payload's capabilities"
        case NOOK_STEP_CLOSE_FDS:
            what = "prepare the payload's file descriptors"
            if err == EBADF { hint = "--preserve-fds names a descriptor that is not open" }
        case NOOK_STEP_SECCOMP: what = "load the seccomp filter"
        case NOOK_STEP_EXEC:
            let name = plan.args.first ?? ""
            let cause = nook_exec_cause(rawValue: UInt32(bitPattern: e.detail))
            let path = ChildFailure.entryName(e)
            if err == ENOENT && cause == NOOK_EXEC_NO_INTERPRETER {
                what = "\(name): the interpreter its #! line names was not found in the sandbox"
                code = 127
            } else if err == ENOENT {
                what = name.contains("/") ? "\(name): no such file in the sandbox"
                    : "\(name): command not found in PATH inside the sandbox"
                code = 127
                if cause == NOOK_EXEC_DIR_NOT_SEARCHABLE {
                    hint = "the directory \(path) cannot be searched by uid \(plan.uid) (it lacks x for it); "
                        + "the command may lie behind it"
                }
            } else if cause == NOOK_EXEC_IS_DIRECTORY {
                what = "\(name): is a directory"
                code = 126
            } else {
                what = "\(name): cannot execute"
                code = 126
                if err == EACCES { hint = ChildFailure.execDenied(cause, path: path, uid: plan.uid) }
            }
            if err == EMFILE || err == ENFILE { hint = "the open-file limit is too low" }
        default: what = "set up the sandbox (step \(e.step))"
        }
        self.hint = hint
        self.exitCode = code
    }

    /// Why exec answered EACCES, as the payload found out (nook_exec_cause).
    static func execDenied(_ cause: nook_exec_cause, path: String, uid: UInt32) -> String {
        switch cause {
        case NOOK_EXEC_DIR_NOT_SEARCHABLE:
            return "the directory \(path) cannot be searched by uid \(uid), which the command runs as (it lacks x "
                + "for it): look at its mode and owner (stat \(path))"
        case NOOK_EXEC_NOT_REGULAR: return "\(path) is not a regular file"
        case NOOK_EXEC_NOT_EXECUTABLE: return "\(path) is not executable by uid \(uid), which the command runs as"
        case NOOK_EXEC_NOEXEC_MOUNT: return "\(path) lies on a mount made noexec"
        default: return "the kernel refused it; neither the file's mode, its directories, nor a noexec mount is the "
            + "reason nook could find (a security module?)"
        }
    }

    /// Root-entry failures carry the entry's name, exec failures the path
    /// they concern, where others carry the kernel's message.
    private static func entryName(_ e: nook_child_error) -> String {
        withUnsafeBytes(of: e.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Mounting kernel overlayfs failed (and fuse-overlayfs might not).
    public var isOverlayMount: Bool { step == Int32(NOOK_STEP_OVERLAY.rawValue) }

    /// The exec failures print without errno text: "make: command not found".
    public var isExecFailure: Bool { step == Int32(NOOK_STEP_EXEC.rawValue) }
}
