// nook's default seccomp policy, as an OCI `linux.seccomp` section.
//
// An allow list: a system call not named here answers ENOSYS, which is what
// a kernel that lacks it would say, so programs fall back cleanly (new glibc
// tries clone3 first and falls back to clone only on ENOSYS: moby#42680).
// Calls that change the sandbox itself (mounts, namespaces), reach the
// kernel's most exposed interfaces (bpf, keyrings, perf, userfaultfd), or
// act on the whole machine (modules, kexec, clocks, swap, reboot) answer
// EPERM. Rules with arguments and a denying action take precedence over an
// allow of the same call (nook loads them as a second, stacked filter).

/// The default policy and the pieces profiles refer to by name.
public enum SeccompPolicy {
    public static let enosys: UInt32 = 38
    public static let eperm: UInt32 = 1

    /// x86_64 covers all three ABIs the kernel accepts there: 64-bit, i386
    /// (int 0x80) and x32; a filter that left one out would let calls
    /// through it unchecked.
    public static func architectures(native: String) -> [String] {
        switch native {
        case "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        case "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        default: ["SCMP_ARCH_" + native.uppercased()]
        }
    }

    /// Namespace flags of clone(2)/unshare(2): CLONE_NEWTIME, NEWNS,
    /// NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
    public static let namespaceFlags: [UInt64] = [
        0x80, 0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000,
    ]

    static let tiocsti: UInt64 = 0x5412
    static let tioclinux: UInt64 = 0x541C

    /// The default filter for `native` (libseccomp's architecture name).
    public static func defaultSeccomp(native: String = "x86_64") -> Seccomp {
        var rules: [SeccompRule] = [
            SeccompRule(names: allowed, action: "SCMP_ACT_ALLOW"),
            // personality(2): Linux personas and the query only.
            SeccompRule(names: ["personality"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: 0x0, op: "SCMP_CMP_EQ"),
            ]),
            SeccompRule(names: ["personality"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: 0x8, op: "SCMP_CMP_EQ"),
            ]),
            SeccompRule(names: ["personality"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: 0x20000, op: "SCMP_CMP_EQ"),
            ]),
            SeccompRule(names: ["personality"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: 0x20008, op: "SCMP_CMP_EQ"),
            ]),
            SeccompRule(names: ["personality"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: 0xFFFF_FFFF, op: "SCMP_CMP_EQ"),
            ]),
            SeccompRule(names: denied, action: "SCMP_ACT_ERRNO", errnoRet: eperm),
            // clone3 passes its flags in memory the filter cannot read, so it
            // is "not implemented" and callers fall back to clone, whose
            // flags are checked below.
            SeccompRule(names: ["clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"],
                        action: "SCMP_ACT_ERRNO", errnoRet: enosys),
        ]
        // Terminal input injection (CVE-2017-5226): the kernel reads the
        // request as 32 bits, so only the low 32 are compared (CVE-2019-10063).
        for request in [tiocsti, tioclinux] {
            rules.append(SeccompRule(names: ["ioctl"], action: "SCMP_ACT_ERRNO", errnoRet: eperm, args: [
                SeccompArg(index: 1, value: 0xFFFF_FFFF, valueTwo: request, op: "SCMP_CMP_MASKED_EQ"),
            ]))
        }
        // New namespaces from inside the sandbox.
        for flag in namespaceFlags {
            rules.append(SeccompRule(names: ["clone", "unshare"], action: "SCMP_ACT_ERRNO", errnoRet: eperm, args: [
                SeccompArg(index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ"),
            ]))
        }
        return Seccomp(defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: enosys,
                       architectures: architectures(native: native), syscalls: rules)
    }

    /// The mode argument of each call that sets a file's mode bits.
    public static let modeArguments: [(name: String, index: UInt32)] = [
        ("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2), ("creat", 1), ("open", 2), ("openat", 3),
        ("mknod", 1), ("mknodat", 2),
    ]

    /// `policy` refusing (EPERM) to make a file setuid or setgid, for a
    /// sandbox that can write where others may reach: a program in it could
    /// leave such a file in the workspace or a bind for another local user
    /// to run as you (or as one of your subordinate ids, from root mode).
    /// `nosuid` mounts protect only the sandbox. openat2(2) passes its mode
    /// in memory the filter cannot read, so it is "not implemented" and
    /// callers fall back to openat. `--seccomp-allow` of a call lifts it.
    public static func refusingSetID(in policy: Seccomp) -> Seccomp {
        var out = policy
        var rules: [SeccompRule] = []
        for var rule in policy.syscalls ?? [] {
            if rule.action == "SCMP_ACT_ALLOW" && (rule.args ?? []).isEmpty { rule.names.removeAll { $0 == "openat2" } }
            if !rule.names.isEmpty { rules.append(rule) }
        }
        rules.append(SeccompRule(names: ["openat2"], action: "SCMP_ACT_ERRNO", errnoRet: enosys))
        for (name, index) in modeArguments {
            for bit: UInt64 in [0o4000, 0o2000] {
                rules.append(SeccompRule(names: [name], action: "SCMP_ACT_ERRNO", errnoRet: eperm, args: [
                    SeccompArg(index: index, value: bit, valueTwo: bit, op: "SCMP_CMP_MASKED_EQ"),
                ]))
            }
        }
        out.syscalls = rules
        return out
    }

    /// `policy` with `names` allowed without conditions: taken out of every
    /// refusing rule, argument-checked ones included, and allowed.
    public static func allowing(_ names: [String], in policy: Seccomp) -> Seccomp {
        var out = policy
        var rules: [SeccompRule] = []
        for var rule in policy.syscalls ?? [] {
            if rule.action != "SCMP_ACT_ALLOW" { rule.names.removeAll { names.contains($0) } }
            if !rule.names.isEmpty { rules.append(rule) }
        }
        rules.append(SeccompRule(names: names, action: "SCMP_ACT_ALLOW"))
        out.syscalls = rules
        return out
    }

    /// The calls root emulation answers (through the seccomp listener):
    /// changing owners, and changing or reading ids and groups.
    public static let emulatedForRoot = [
        "chown", "fchown", "fchownat", "lchown",
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
        // Noted and let through: a process that exits hands its ids on to
        // its children before they are reparented.
        "exit_group",
    ]

    /// `policy` with the calls of `emulatedForRoot` sent to the listener.
    public static func emulatingRoot(in policy: Seccomp) -> Seccomp {
        var out = policy
        var rules: [SeccompRule] = []
        for var rule in policy.syscalls ?? [] {
            rule.names.removeAll { emulatedForRoot.contains($0) }
            if !rule.names.isEmpty { rules.append(rule) }
        }
        rules.append(SeccompRule(names: emulatedForRoot, action: "SCMP_ACT_NOTIFY"))
        // prctl(PR_SET_KEEPCAPS) is noted (it decides whether leaving uid 0
        // drops capabilities); every other prctl is allowed as before.
        let keepCaps: UInt64 = 8
        if rules.contains(where: { $0.action == "SCMP_ACT_ALLOW" && $0.names.contains("prctl") && ($0.args ?? []).isEmpty }) {
            for i in rules.indices where rules[i].action == "SCMP_ACT_ALLOW" && (rules[i].args ?? []).isEmpty {
                rules[i].names.removeAll { $0 == "prctl" }
            }
            rules.removeAll { $0.names.isEmpty }
            rules.append(SeccompRule(names: ["prctl"], action: "SCMP_ACT_NOTIFY", args: [
                SeccompArg(index: 0, value: keepCaps, op: "SCMP_CMP_EQ"),
            ]))
            rules.append(SeccompRule(names: ["prctl"], action: "SCMP_ACT_ALLOW", args: [
                SeccompArg(index: 0, value: keepCaps, op: "SCMP_CMP_NE"),
            ]))
        }
        out.syscalls = rules
        return out
    }

    /// Allowed without conditions.
    public static let allowed: [String] = files + memory + processes + signalsAndTime + ipc + network + misc

    static let files = [
        "read", "write", "open", "openat", "openat2", "close", "close_range", "creat", "lseek", "_llseek",
        "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2",
        "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range",
        "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync", "fdatasync", "sync", "syncfs",
        "sync_file_range", "sync_file_range2", "truncate", "truncate64", "ftruncate", "ftruncate64",
        "fallocate", "fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
        "stat", "stat64", "fstat", "fstat64", "lstat", "lstat64", "newfstatat", "fstatat64", "statx",
        "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2",
        "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
        "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
        "unlink", "unlinkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
        "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32",
        "utime", "utimes", "futimesat", "utimensat", "utimensat_time64", "umask", "mknod", "mknodat",
        "ioctl", "pipe", "pipe2", "select", "_newselect", "pselect6", "pselect6_time64",
        "poll", "ppoll", "ppoll_time64", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
        "epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2",
        "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime",
        "timerfd_gettime", "timerfd_settime64", "timerfd_gettime64",
        "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
        "memfd_create", "name_to_handle_at",
        "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
        "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
        "getxattrat", "setxattrat", "listxattrat", "removexattrat", "file_getattr", "file_setattr",
        "io_setup", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_submit",
        "io_cancel", "cachestat", "chroot",
        "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    ]

    static let memory = [
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "pkey_mprotect", "pkey_alloc", "pkey_free",
        "madvise", "mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall", "msync",
        "remap_file_pages", "membarrier", "get_mempolicy", "set_mempolicy", "mbind",
        "set_mempolicy_home_node", "mseal", "map_shadow_stack",
    ]

    static let processes = [
        "fork", "vfork", "clone", "unshare", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
        "waitpid", "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
        "getsid", "setsid", "getpriority", "setpriority", "sched_yield", "sched_getparam", "sched_setparam",
        "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_getaffinity", "sched_setaffinity",
        "sched_getattr", "sched_setattr", "prctl", "arch_prctl", "set_tid_address", "set_robust_list",
        "get_robust_list", "rseq", "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake",
        "futex_requeue", "getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "times",
        "capget", "capset", "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32",
        "getegid", "getegid32", "getresuid", "getresuid32", "getresgid", "getresgid32",
        "getgroups", "getgroups32", "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32",
        "setregid", "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32",
        "setgroups", "setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
        "uname", "olduname", "oldolduname", "sysinfo", "getcpu", "pidfd_open", "pidfd_send_signal",
        "pidfd_getfd", "process_vm_readv", "process_vm_writev", "process_madvise", "process_mrelease",
        "ptrace", "kcmp", "seccomp", "get_thread_area", "set_thread_area", "restart_syscall",
        "ioprio_get", "ioprio_set", "uretprobe",
    ]

    static let signalsAndTime = [
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack",
        "signal", "sigaction", "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "pause", "alarm",
        "nanosleep", "clock_nanosleep", "clock_nanosleep_time64", "clock_gettime", "clock_gettime64",
        "clock_getres", "clock_getres_time64", "gettimeofday", "time", "getitimer", "setitimer",
        "timer_create", "timer_settime", "timer_settime64", "timer_gettime", "timer_gettime64",
        "timer_getoverrun", "timer_delete",
    ]

    static let ipc = [
        "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
        "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64",
        "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr", "ipc",
    ]

    static let network = [
        "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
        "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "recvmmsg_time64", "shutdown",
        "setsockopt", "getsockopt", "socketcall", "send", "recv",
    ]

    static let misc = [
        "getrandom", "sethostname", "setdomainname", "lsm_get_self_attr", "lsm_list_modules",
        "statmount", "listmount",
    ]

    /// Refused with EPERM.
    public static let denied = [
        // The mount table, old and new API (CVE-2021-41133).
        "mount", "umount", "umount2", "pivot_root", "open_tree", "open_tree_attr", "move_mount", "fsopen",
        "fsconfig", "fsmount", "fspick", "mount_setattr",
        // Joining other namespaces.
        "setns",
        // Exposed kernel interfaces.
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at",
        "fanotify_init", "lookup_dcookie", "quotactl", "quotactl_fd", "modify_ldt", "vm86", "vm86old",
        "iopl", "ioperm",
        // The whole machine.
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
        "get_kernel_syms", "query_module", "swapon", "swapoff", "reboot", "acct", "settimeofday", "stime",
        "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex", "syslog",
        "nfsservctl", "uselib", "_sysctl", "sysfs", "ustat", "vhangup",
    ]
}
