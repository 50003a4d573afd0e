/*
 * The part of nook that runs between clone and exec.
 *
 * Swift cannot run here: the process that calls clone may have more than one
 * thread, and only async-signal-safe code may run in the child of such a
 * process (no allocation, no locks, no Swift runtime). So Swift plans the
 * whole sandbox as plain values first (nook_launch_config), and this target
 * carries the plan out with raw system calls only:
 *
 *   host (Swift)                     child = pid 1 of the sandbox (C)
 *   nook_launch: clone3 ---------->  wait for "go"
 *   write uid/gid maps, cgroup       cgroup ns, hostname, loopback
 *   nook_launch_go --------------->  root tree, mounts, pivot_root
 *                                    [pty: master sent to host]
 *                                    fork payload --> setsid, rlimits, cwd,
 *                                    init: reap,      ids, no_new_privs, caps,
 *                                    forward signals  close fds, seccomp, exec
 *   wait on pidfd <---------------  exit record, [hold_exit: wait
 *   [read cgroup, release] -------->  for release,] then exit
 *
 * Failures travel back as a nook_child_error on the error pipe and are
 * printed once, by Swift. The error pipe reaches EOF when exec succeeds.
 */
#ifndef NOOK_LAUNCH_H
#define NOOK_LAUNCH_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Mount attributes, the same values as the kernel's MOUNT_ATTR_*. */
#define NOOK_ATTR_RDONLY 0x00000001ULL
#define NOOK_ATTR_NOSUID 0x00000002ULL
#define NOOK_ATTR_NODEV 0x00000004ULL
#define NOOK_ATTR_NOEXEC 0x00000008ULL
#define NOOK_ATTR_NOATIME 0x00000010ULL
#define NOOK_ATTR_NODIRATIME 0x00000080ULL
#define NOOK_ATTR_NOSYMFOLLOW 0x00200000ULL

/* One step of assembling the root. Destinations are absolute paths inside
 * the new root, resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
 * so that no symlink leads out of it; a destination whose last component is
 * a symlink is refused. */
enum nook_op_kind {
    NOOK_OP_MOUNT_FS = 1, /* fsopen(source = fs type), fsconfig(options), fsmount */
    NOOK_OP_BIND = 2,     /* open_tree(source = host path), set attributes, move */
    NOOK_OP_SYMLINK = 3,  /* symlink at destination pointing to source */
    NOOK_OP_MKDIR = 4,    /* directory with mode, uid, gid */
    NOOK_OP_REMOUNT = 5,  /* bind destination onto itself with attributes (read-only paths) */
    NOOK_OP_MASK = 6,     /* hide destination: /dev/null over a file, empty read-only tmpfs over a dir */
    NOOK_OP_SETATTR = 7,  /* set attributes of the mount rooted at destination, in place (not its children);
                             a destination that is not a mount root is refused */
};

/* nook_op.flags */
#define NOOK_OPF_RECURSIVE 0x1 /* bind with submounts (AT_RECURSIVE) */
#define NOOK_OPF_OPTIONAL 0x2  /* a missing destination (remount, mask) is skipped */
#define NOOK_OPF_FILE 0x4      /* a missing destination is created as a file, not a directory */
#define NOOK_OPF_CREATE 0x8    /* missing parents and the destination may be created */
#define NOOK_OPF_REPLACE_LINK 0x10 /* a symlink at the destination is unlinked (not followed) and replaced */
#define NOOK_OPF_SKIP_LINK 0x20    /* a symlink at the destination skips the op (with NOOK_OPF_OPTIONAL) */

struct nook_op {
    int32_t kind;
    int32_t flags;
    const char *source;
    const char *destination;
    const char *const *options; /* fsconfig: "key=value" strings or bare "flag" */
    int32_t option_count;
    uint32_t mode;              /* NOOK_OP_MKDIR */
    uint64_t attr_set;          /* NOOK_ATTR_* for the new mount */
    int64_t uid, gid;           /* NOOK_OP_MKDIR owner; -1 leaves it */
};

enum nook_root_kind {
    NOOK_ROOT_NONE = 0, /* keep the caller's root and mounts (nook unshare) */
    /* A new tmpfs holding each top-level entry of the caller's "/": a
     * directory or file as a recursive bind with root_attr, a symlink as a
     * copy. New top-level mount points can be made in it; it turns
     * read-only (with root_attr) once every op has run. Entries named in
     * root_skip get an empty directory instead of a bind (the ops mount
     * over them anyway: /proc, /dev, /tmp, ...). */
    NOOK_ROOT_HOST = 1,
    NOOK_ROOT_DIRECTORY = 2, /* a recursive bind of root_path, with root_attr */
    /* Kernel overlayfs (with userxattr, as a user namespace requires) over
     * lower_dirs, with upper_dir and work_dir, or without them on a tmpfs of
     * the sandbox's own that disappears with it. Every directory reaches the
     * kernel as /proc/self/fd/N, so no path is parsed as an option string. */
    NOOK_ROOT_OVERLAY = 3,
    /* fuse-overlayfs, started by the host in the sandbox's user and mount
     * namespaces (nook_spawn_fuse) and mounted on the staging directory;
     * the child prepares the in-memory upper (when upper_dir is NULL) on the
     * scratch directory, says 'F' on the sync socket, and waits for 'M'. */
    NOOK_ROOT_FUSE = 4,
};

/* One classic-BPF seccomp program. */
struct nook_bpf {
    const void *code; /* struct sock_filter[] */
    uint16_t length;  /* instructions */
};

struct nook_rlimit {
    int32_t resource;
    uint64_t soft, hard;
};

struct nook_launch_config {
    /* Namespaces made by clone3 (CLONE_NEW* flags). */
    uint64_t clone_flags;
    /* unshare(CLONE_NEWCGROUP) after "go", so the cgroup namespace is rooted
     * at the cgroup the host placed the sandbox in. */
    int32_t cgroup_namespace;
    const char *hostname;    /* NULL leaves the UTS name alone */
    int32_t loopback_up;     /* bring "lo" up in a new network namespace */
    /* Exec the payload in the cloned process itself, without an init (no
     * pid namespace is made in this mode: nook unshare). */
    int32_t direct;
    /* setsid() for the payload (always for sandboxes; unshare keeps the
     * caller's session and terminal). */
    int32_t new_session;
    /* nook exec: a pidfd of a process of a running container, whose
     * namespaces (join_namespaces, CLONE_NEW* flags) the cloned process
     * joins with setns before it acts as the init of the command (it stays
     * outside the pid namespace; the command, forked, is inside). -1 for
     * a new sandbox. No id maps are written and no root is assembled. */
    int32_t join_pidfd;
    uint64_t join_namespaces;

    int32_t root_kind;
    const char *root_path;   /* NOOK_ROOT_DIRECTORY */
    uint64_t root_attr;      /* NOOK_ATTR_* applied to the whole root tree */
    const char *const *root_options; /* NOOK_ROOT_HOST: fsconfig options of the tmpfs */
    int32_t root_option_count;
    const char *const *root_skip;    /* NOOK_ROOT_HOST: top-level names not to bind */
    int32_t root_skip_count;
    /* NOOK_ROOT_OVERLAY: layer directories, topmost first, and the upper
     * and work directories (NULL for an ephemeral tmpfs upper). The child
     * opens them itself: overlayfs takes only mounts of the caller's own
     * mount namespace. Upper and work are opened without following any
     * symlink (openat2 RESOLVE_NO_SYMLINKS). */
    const char *const *lower_dirs;
    int32_t lower_count;
    const char *upper_dir, *work_dir;
    /* upper_dir was made for this run: give it the lowest layer's owner
     * (and mode), as an in-memory upper gets them. */
    int32_t upper_adopt_owner;
    int32_t read_only_overlay;       /* no upper: a read-only overlay of the lower dirs */
    int32_t overlay_lowerdir_append; /* the kernel takes fsconfig "lowerdir+" (Linux 6.8) */
    const char *const *upper_options; /* fsconfig options of that tmpfs ("size=...") */
    int32_t upper_option_count;

    const struct nook_op *ops;
    int32_t op_count;
    int32_t *scratch;        /* op_count ints the child may write (pre-opened sources) */

    /* The payload. */
    const char *const *argv;
    const char *const *envp;
    const char *cwd;
    uint32_t uid, gid;
    const uint32_t *groups;      /* supplementary groups, set when set_groups */
    int32_t group_count;
    int32_t set_groups;
    uint32_t umask;
    int32_t terminal;
    uint16_t rows, cols;
    const struct nook_rlimit *rlimits;
    int32_t rlimit_count;
    int32_t no_new_privs;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int32_t last_cap;
    const struct nook_bpf *filters; /* seccomp filters, loaded in order */
    int32_t filter_count;
    /* The filter loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER, whose
     * listener goes to the host over the sync socket (for --explain); -1
     * for none. */
    int32_t notify_filter;
    int32_t preserve_fds;        /* fds 3 .. 3+n-1 reach the payload */
    /* After sending the exit record, the init waits for one byte (or EOF)
     * on the sync socket before it exits: while it lives, the sandbox's
     * cgroup is populated, so the host can read its final counters (peak
     * memory, OOM kills) before the cgroup manager removes it. */
    int32_t hold_exit;

    /* Where this process keeps argv and environ (from /proc/self/stat), so
     * the init can wipe its copy: /proc/1/cmdline is readable by everyone in
     * the sandbox and must not show the caller's command line. */
    uintptr_t arg_start, arg_end, env_start, env_end;
};

struct nook_launch_result {
    pid_t pid;
    int32_t pidfd;
    int32_t sync_fd;  /* host end of a SOCK_SEQPACKET pair */
    int32_t error_fd; /* read end; nook_child_error records, EOF at exec */
};

/* Steps the child reports failures of. */
enum nook_step {
    NOOK_STEP_WAIT_GO = 1,
    NOOK_STEP_PARENT_DIED,
    NOOK_STEP_CGROUP_NS,
    NOOK_STEP_HOSTNAME,
    NOOK_STEP_LOOPBACK,
    NOOK_STEP_MAKE_PRIVATE,
    NOOK_STEP_ROOT_CLONE,
    NOOK_STEP_ROOT_ATTR,
    NOOK_STEP_ROOT_ATTACH,
    NOOK_STEP_OP_SOURCE,      /* index = op */
    NOOK_STEP_OP_RESOLVE,     /* resolving the destination's parent */
    NOOK_STEP_OP_CREATE,      /* creating a missing destination or parent */
    NOOK_STEP_OP_SYMLINK_DEST,/* the destination is a symlink: refused */
    NOOK_STEP_OP_NOT_DIR,     /* a parent component is not a directory */
    NOOK_STEP_OP_FSOPEN,
    NOOK_STEP_OP_FSCONFIG,    /* detail = option index */
    NOOK_STEP_OP_FSMOUNT,
    NOOK_STEP_OP_ATTR,
    NOOK_STEP_OP_MOVE,
    NOOK_STEP_OP_SYMLINK,
    NOOK_STEP_OP_MKDIR,
    NOOK_STEP_OP_CHOWN,
    NOOK_STEP_PIVOT_ROOT,
    NOOK_STEP_PTY,
    NOOK_STEP_FORK,
    NOOK_STEP_SETSID,
    NOOK_STEP_CTTY,
    NOOK_STEP_RLIMIT,         /* index = rlimit */
    NOOK_STEP_WORKDIR,
    NOOK_STEP_WORKDIR_OUTSIDE,
    NOOK_STEP_SETGID,
    NOOK_STEP_SETUID,
    NOOK_STEP_NO_NEW_PRIVS,
    NOOK_STEP_CAPS,
    NOOK_STEP_CLOSE_FDS,
    NOOK_STEP_SECCOMP,
    NOOK_STEP_EXEC,
    NOOK_STEP_DUMPABLE,
    NOOK_STEP_OP_NOT_MOUNT,   /* SETATTR on a path that is not a mount root */
    NOOK_STEP_ROOT_LIST,      /* reading the host's "/" */
    NOOK_STEP_ROOT_ENTRY,     /* binding one top-level entry; detail = its number in the listing */
    NOOK_STEP_ROOT_READONLY,  /* making the root tmpfs read-only at the end */
    NOOK_STEP_OVERLAY_UPPER,  /* the ephemeral upper tmpfs; detail 1: its dirs; 2: a new persistent upper's owner */
    NOOK_STEP_OVERLAY,        /* mounting the overlay; detail = lower index for lowerdir+, -1 otherwise */
    NOOK_STEP_OVERLAY_OPEN,   /* opening a layer dir; index = lower index, -1 upper, -2 work */
    NOOK_STEP_JOIN,           /* setns into a running container's namespaces (nook exec) */
};

/* nook_child_error.detail of NOOK_STEP_EXEC: what the payload could find
 * out about a failed exec; message names the file or directory. */
enum nook_exec_cause {
    NOOK_EXEC_IS_DIRECTORY = 1,
    NOOK_EXEC_NO_INTERPRETER = 2,       /* ENOENT for a file that exists: its #! interpreter */
    NOOK_EXEC_DIR_NOT_SEARCHABLE = 3,   /* a directory on the way lacks x for the payload's ids */
    NOOK_EXEC_NOT_REGULAR = 4,
    NOOK_EXEC_NOT_EXECUTABLE = 5,       /* no x for the payload's ids */
    NOOK_EXEC_NOEXEC_MOUNT = 6,
};

struct nook_child_error {
    int32_t step;
    int32_t index;
    int32_t err;     /* errno */
    int32_t detail;
    char message[240]; /* the kernel's fs_context log for fsconfig, a root entry's name, the path
                          an exec failure concerns, or empty */
};

enum nook_exit_kind {
    NOOK_EXIT_CODE = 1,   /* code = exit status */
    NOOK_EXIT_SIGNAL = 2, /* code = signal number */
    NOOK_EXIT_CORE = 3,   /* code = signal number, core dumped */
};

struct nook_exit_record {
    int32_t kind;
    int32_t code;
};

/* si_value the host sends with a forwarded signal meaning "to the payload's
 * process group", as a terminal's Ctrl-C would. */
#define NOOK_FORWARD_GROUP 0x6e6b

/* si_value meaning "SIGKILL the payload's process group and the payload",
 * whatever signal carries it (one the init waits for, such as SIGTERM):
 * how the host ends a health check that ran past its timeout without
 * ending the init, which would leave the payload to the container. */
#define NOOK_KILL_GROUP 0x6e6c

/* Clones the sandbox's first process. Returns 0 and fills *out, or -errno.
 * The caller must have blocked the signals it wants to forward, because the
 * child inherits the mask and the init waits for them synchronously. */
int nook_launch(const struct nook_launch_config *cfg, struct nook_launch_result *out);

/* Lets the child go on once its id maps are written. 0 or -errno. */
int nook_launch_go(int sync_fd);

/* Where the root is assembled before pivot_root, and where an in-memory
 * fuse upper goes: directories of the caller's tree, the same in the
 * child's copy of it. */
const char *nook_staging_dir(void);
const char *nook_scratch_dir(void);

/* Starts argv (fuse-overlayfs) in the user and mount namespaces of the
 * process behind pidfd, as uid and gid 0 there (exec then keeps its
 * capabilities), with each of paths opened in that namespace as a
 * directory at descriptor first_fd + i, stderr on stderr_fd and stdin and
 * stdout on /dev/null. The spawned process is a child of the caller, not
 * of the sandbox. Returns its pid or -errno. */
int nook_spawn_fuse(int pidfd, const char *const *argv, const char *const *envp, int stderr_fd,
                    const char *const *paths, int path_count, int first_fd);

/* Starts a network helper (pasta, slirp4netns) for a sandbox: argv with
 * fds[i] at descriptor 3 + i and nothing else of the caller's past 2,
 * stderr on stderr_fd, stdin and stdout on /dev/null, no blocked signals.
 * It gets SIGKILL when the calling thread ends (PR_SET_PDEATHSIG), so a
 * helper never outlives a nook that was killed; a caller already gone
 * before that was set means it exits at once. With userns_fd >= 0 it
 * first joins that user namespace as uid and gid 0 (slirp4netns's own
 * sandbox needs root there), or as it is when 0 is not mapped. Returns
 * its pid or -errno; a failure of its own setup exits 120-123 with a
 * line on stderr_fd, 127 when argv[0] cannot be executed. */
int nook_spawn_helper(const char *const *argv, const char *const *envp, const int *fds, int fd_count,
                      int stderr_fd, int userns_fd);

#ifdef __cplusplus
}
#endif

#endif
