/* clone3 of the sandbox's first process, and its first steps: wait until the
 * host has written the id maps, then the namespaces that need them. */
#include "internal.h"

#include <fcntl.h>
#include <sched.h>
#include <net/if.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int k_open_tree(int dfd, const char *path, unsigned flags) {
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
int k_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags) {
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}
int k_fsopen(const char *fstype, unsigned flags) { return (int)syscall(SYS_fsopen, fstype, flags); }
int k_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux) {
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}
int k_fsmount(int fd, unsigned flags, unsigned attrs) { return (int)syscall(SYS_fsmount, fd, flags, attrs); }
int k_mount_setattr(int dfd, const char *path, unsigned flags, uint64_t attr_set, uint64_t attr_clr) {
    struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } attr = { attr_set, attr_clr, 0, 0 };
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr);
}
int k_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}
/* openat2 with RESOLVE_IN_ROOT or RESOLVE_BENEATH fails with EAGAIN when a
 * rename or mount anywhere on the system raced a ".." step (openat2(2));
 * other sandboxes starting at the same time do that. Tried again, a few
 * times, as the man page advises. */
int k_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct { uint64_t flags, mode, resolve; } how = { flags, mode, resolve };
    int r = -1;
    for (int i = 0; i < 64; i++) {
        r = (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
        if (r >= 0 || errno != EAGAIN) break;
    }
    return r;
}
/* fork without Glibc's atfork handlers: they take locks another thread of
 * the host may have held when it called clone. */
long k_fork(void) { return syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); }

size_t str_len(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

void report(int error_fd, int step, int index, int err, int detail, const char *msg, size_t msg_len) {
    struct nook_child_error e;
    memset(&e, 0, sizeof e);
    e.step = step;
    e.index = index;
    e.err = err;
    e.detail = detail;
    if (msg != NULL) {
        if (msg_len >= sizeof e.message) msg_len = sizeof e.message - 1;
        memcpy(e.message, msg, msg_len);
    }
    ssize_t n;
    do { n = write(error_fd, &e, sizeof e); } while (n < 0 && errno == EINTR);
}

static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return r;
}

static _Noreturn void child_main(const struct nook_launch_config *cfg, int sync_fd, int error_fd) {
    struct child_state st = { .cfg = cfg, .sync_fd = sync_fd, .error_fd = error_fd, .pty_slave = -1 };

    /* The host may die at any point; take the sandbox with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

    /* Work that needs no id map overlaps with the host writing them. A
     * failure is reported now but acted on after "go", so the host always
     * hears about it on the error pipe, after the maps. */
    int prepared = cfg->root_kind == NOOK_ROOT_NONE ? 0 : prepare_root(&st);

    char go;
    ssize_t n;
    do { n = read(sync_fd, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) {
        /* EOF: the host went away (or gave up) before the maps were written. */
        if (n < 0) report(error_fd, NOOK_STEP_WAIT_GO, 0, errno, 0, NULL, 0);
        _exit(125);
    }

    if (prepared != 0) _exit(125);

    if (cfg->join_pidfd >= 0) {
        /* nook exec: the container's namespaces, root and working directory
         * (setns of a mount namespace moves to its root). Non-dumpable, this
         * process stays closed to the container's processes, which cannot
         * see it anyway: it is outside their pid namespace. */
        if (setns(cfg->join_pidfd, (int)cfg->join_namespaces) != 0) {
            report(error_fd, NOOK_STEP_JOIN, 0, errno, 0, NULL, 0);
            _exit(125);
        }
        close(cfg->join_pidfd);
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
            report(error_fd, NOOK_STEP_DUMPABLE, 0, errno, 0, NULL, 0);
            _exit(125);
        }
        run_init(&st);
    }

    /* Only now: newuidmap refuses a target whose /proc entry is not owned by
     * the caller, and a non-dumpable process's entry is owned by root.
     * Non-dumpable, the init's /proc/1/{exe,environ,fd,mem} stay closed to
     * the sandbox (CVE-2019-5736 class). */
    /* With fuse-overlayfs the host still has to join this process's
     * namespaces (which needs ptrace access); it turns non-dumpable once
     * the root is mounted, still before any payload exists. */
    if (cfg->root_kind != NOOK_ROOT_FUSE && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        report(error_fd, NOOK_STEP_DUMPABLE, 0, errno, 0, NULL, 0);
        _exit(125);
    }
    if (cfg->cgroup_namespace && unshare(CLONE_NEWCGROUP) != 0) {
        report(error_fd, NOOK_STEP_CGROUP_NS, 0, errno, 0, NULL, 0);
        _exit(125);
    }
    if (cfg->hostname != NULL && sethostname(cfg->hostname, str_len(cfg->hostname)) != 0) {
        report(error_fd, NOOK_STEP_HOSTNAME, 0, errno, 0, NULL, 0);
        _exit(125);
    }
    if (cfg->loopback_up && loopback_up() != 0) {
        report(error_fd, NOOK_STEP_LOOPBACK, 0, errno, 0, NULL, 0);
        _exit(125);
    }
    /* In a network namespace of its own, any port is the sandbox's to bind,
     * as in docker's and podman's containers: a server on port 22 or 80
     * failed with EACCES without --userns root (a fresh try). The sysctl is
     * the namespace's own; at worst it stays as it was. */
    if (cfg->loopback_up) {
        int fd = open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t w = write(fd, "0", 1);
            (void)w;
            close(fd);
        }
    }
    if (cfg->root_kind != NOOK_ROOT_NONE && setup_root(&st) != 0) _exit(125);
    if (cfg->direct) run_payload(&st);
    run_init(&st);
}

static int move_above(int fd, int min) {
    if (fd >= min) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, min);
    int saved = errno;
    close(fd);
    errno = saved;
    return moved;
}

int nook_launch(const struct nook_launch_config *cfg, struct nook_launch_result *out) {
    int sync_pair[2], error_pipe[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync_pair) != 0) return -errno;
    if (pipe2(error_pipe, O_CLOEXEC) != 0) {
        int saved = errno;
        close(sync_pair[0]);
        close(sync_pair[1]);
        return -saved;
    }
    /* Keep our descriptors out of the range the payload inherits. */
    int min = 3 + (cfg->preserve_fds > 0 ? cfg->preserve_fds : 0);
    for (int i = 0; i < 2; i++) {
        sync_pair[i] = move_above(sync_pair[i], min);
        error_pipe[i] = move_above(error_pipe[i], min);
    }
    if (sync_pair[0] < 0 || sync_pair[1] < 0 || error_pipe[0] < 0 || error_pipe[1] < 0) {
        int saved = errno;
        for (int i = 0; i < 2; i++) {
            if (sync_pair[i] >= 0) close(sync_pair[i]);
            if (error_pipe[i] >= 0) close(error_pipe[i]);
        }
        return -saved;
    }

    /* struct clone_args (linux/sched.h), spelled out: that header clashes
     * with Glibc's <sched.h>. */
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
            set_tid_size, cgroup;
    } args;
    int pidfd = -1;
    memset(&args, 0, sizeof args);
    args.flags = cfg->clone_flags | 0x00001000 /* CLONE_PIDFD */;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(sync_pair[0]);
        close(error_pipe[0]);
        child_main(cfg, sync_pair[1], error_pipe[1]);
    }
    int saved = errno;
    close(sync_pair[1]);
    close(error_pipe[1]);
    if (pid < 0) {
        close(sync_pair[0]);
        close(error_pipe[0]);
        return -saved;
    }
    out->pid = (pid_t)pid;
    out->pidfd = pidfd;
    out->sync_fd = sync_pair[0];
    out->error_fd = error_pipe[0];
    return 0;
}

int nook_launch_go(int sync_fd) {
    char go = 'G';
    ssize_t n;
    do { n = send(sync_fd, &go, 1, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -errno;
}

/* "cannot WHAT: errno N" on fd, then exit with code. */
static _Noreturn void spawn_fail(int fd, const char *what, int code) {
    int err = errno;
    char digits[12];
    int n = 0;
    do { digits[n++] = (char)('0' + err % 10); err /= 10; } while (err > 0 && n < 11);
    char line[512];
    size_t len = 0;
    const char *parts[] = { "cannot ", what, ": errno " };
    for (int p = 0; p < 3; p++) {
        size_t l = str_len(parts[p]);
        if (len + l >= sizeof line - 16) l = sizeof line - 16 - len;
        memcpy(line + len, parts[p], l);
        len += l;
    }
    while (n > 0) line[len++] = digits[--n];
    line[len++] = '\n';
    ssize_t w = write(fd, line, len);
    (void)w;
    _exit(code);
}

int nook_spawn_fuse(int pidfd, const char *const *argv, const char *const *envp, int stderr_fd,
                    const char *const *paths, int path_count, int first_fd) {
    pid_t parent = getpid();
    long pid = k_fork();
    if (pid < 0) return -errno;
    if (pid > 0) return (int)pid;

    /* In the child of a process that may have threads: system calls only.
     * A failure says which step and errno on stderr_fd, for the host. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS) != 0) spawn_fail(stderr_fd, "join the sandbox's namespaces", 120);
    if (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0)
        spawn_fail(stderr_fd, "become uid 0 in the sandbox's user namespace", 121);
    /* The change of credentials cleared the parent-death signal: without it
     * again, a nook killed with SIGKILL left the daemon running for ever,
     * holding the sandbox's mount namespace and its in-memory layer. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(1);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(stderr_fd, 2) < 0)
        spawn_fail(stderr_fd, "set up stdin, stdout and stderr", 122);
    for (int i = 0; i < path_count; i++) {
        int fd = open(paths[i], O_RDONLY | O_DIRECTORY);
        if (fd < 0) spawn_fail(2, paths[i], 123);
        if (fd != first_fd + i) {
            if (dup2(fd, first_fd + i) < 0) _exit(123);
            close(fd);
        }
    }
    /* Nothing of nook's reaches the daemon: not its locks, not its pipes. */
    syscall(SYS_close_range, 3U, (unsigned)(first_fd - 1), 0);
    syscall(SYS_close_range, (unsigned)(first_fd + path_count), ~0U, 0);
    reset_signals();
    execve(argv[0], (char *const *)argv, (char *const *)envp);
    spawn_fail(2, argv[0], 127);
}

int nook_spawn_helper(const char *const *argv, const char *const *envp, const int *fds, int fd_count,
                      int stderr_fd, int userns_fd) {
    pid_t parent = getpid();
    long pid = k_fork();
    if (pid < 0) return -errno;
    if (pid > 0) return (int)pid;

    /* In the child of a process that may have threads: system calls only. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(1); /* nook died before the line above */
    if (userns_fd >= 0) {
        if (setns(userns_fd, CLONE_NEWUSER) != 0) spawn_fail(stderr_fd, "join the sandbox's user namespace", 120);
        /* Root there when 0 is mapped; otherwise the caller's own id, which
         * keep-id maps to itself. */
        if (syscall(SYS_setresgid, 0, 0, 0) == 0) syscall(SYS_setresuid, 0, 0, 0);
        /* A change of credentials (setns gave capabilities, setresuid a new
         * uid) clears the parent-death signal: set it again. */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) _exit(1);
        /* Root there may be a subordinate id on the host: what it creates in
         * nook's private directory (slirp4netns's API socket) must stay
         * usable by nook, whose directory (0700) keeps everyone else out. */
        umask(0);
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(stderr_fd, 2) < 0)
        spawn_fail(stderr_fd, "set up stdin, stdout and stderr", 122);
    /* Out of the way first, so that placing one cannot clobber another. */
    int high[16];
    if (fd_count > 16) _exit(123);
    for (int i = 0; i < fd_count; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
        if (high[i] < 0) spawn_fail(2, "move its descriptors", 123);
    }
    for (int i = 0; i < fd_count; i++) {
        if (dup2(high[i], 3 + i) < 0) spawn_fail(2, "place its descriptors", 123);
    }
    /* Nothing of nook's reaches the helper: not its locks, not its pipes. */
    syscall(SYS_close_range, (unsigned)(3 + fd_count), ~0U, 0);
    reset_signals();
    execve(argv[0], (char *const *)argv, (char *const *)envp);
    spawn_fail(2, argv[0], 127);
}
