/* The payload's last steps before exec, in the order the security model
 * needs (each can only narrow what the next may do):
 *
 *   signals reset -> setsid / controlling pty -> working directory -> rlimits
 *   -> umask -> gid, uid -> no_new_privs -> capabilities -> close fds
 *   -> seccomp (last, so the filter can be strict) -> exec
 *
 * Ids are changed with raw syscalls: Glibc's setresuid in a process that
 * was once multi-threaded tries to signal threads that no longer exist. */
#include "internal.h"
#include "nook_sys.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static _Noreturn void die(struct child_state *st, int step, int index, int err) {
    report(st->error_fd, step, index, err, 0, NULL, 0);
    _exit(125);
}

void reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        sigaction(sig, &sa, NULL); /* Glibc's reserved signals answer EINVAL; fine */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static int set_caps(const struct nook_launch_config *cfg) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0) return -1;
    /* After setresuid the effective set may be empty; CAP_SETPCAP is needed
     * to shrink the bounding set. */
    data[0].effective = data[0].permitted;
    data[1].effective = data[1].permitted;
    if (syscall(SYS_capset, &hdr, data) != 0) return -1;

    for (int cap = 0; cap <= cfg->last_cap; cap++) {
        if (cfg->cap_bounding & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    data[0].effective = (uint32_t)cfg->cap_effective;
    data[1].effective = (uint32_t)(cfg->cap_effective >> 32);
    data[0].permitted = (uint32_t)cfg->cap_permitted;
    data[1].permitted = (uint32_t)(cfg->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)cfg->cap_inheritable;
    data[1].inheritable = (uint32_t)(cfg->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) != 0) return -1;

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    for (int cap = 0; cap <= cfg->last_cap; cap++) {
        if (!(cfg->cap_ambient & (1ULL << cap))) continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) return -1;
    }
    return 0;
}

static const char *env_path(const char *const *envp) {
    for (int i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], "PATH=", 5) == 0) return envp[i] + 5;
    }
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* For the failure report: the PATH candidate that exists but gave EACCES,
 * and one whose directory could not be searched at all. */
static char denied_file[4096], blocked_file[4096];

static void keep_path(char *dst, const char *src) {
    if (dst[0]) return;
    size_t n = str_len(src);
    if (n >= sizeof denied_file) n = sizeof denied_file - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* execvpe without allocation: PATH from the payload's own environment. */
static int exec_search(const char *const *argv, const char *const *envp) {
    const char *file = argv[0];
    if (strchr(file, '/') != NULL) {
        execve(file, (char *const *)argv, (char *const *)envp);
        return errno;
    }
    size_t flen = str_len(file);
    const char *p = env_path(envp);
    int saw_eacces = 0;
    char buf[4096];
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : str_len(p);
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            size_t n = 0;
            if (dlen == 0) {
                buf[n++] = '.';
            } else {
                memcpy(buf, p, dlen);
                n = dlen;
            }
            buf[n++] = '/';
            memcpy(buf + n, file, flen + 1);
            execve(buf, (char *const *)argv, (char *const *)envp);
            struct stat sb;
            switch (errno) {
            case EACCES:
                /* An unsearchable directory on PATH is not the command. */
                if (stat(buf, &sb) == 0) {
                    saw_eacces = 1;
                    keep_path(denied_file, buf);
                } else {
                    keep_path(blocked_file, buf);
                }
                break;
            case ENOENT: case ENOTDIR: case ESTALE: case ELOOP: case ENAMETOOLONG: case ENODEV: case ETIMEDOUT: break;
            default: return errno;
            }
        }
        if (end == NULL) break;
        p = end + 1;
    }
    return saw_eacces ? EACCES : ENOENT;
}

/* Why exec of path failed with EACCES (or found nothing behind a directory
 * it could not search), as far as the payload's own ids can tell: the
 * nook_exec_cause, and in out the directory or file concerned. */
static int exec_cause(const char *path, char *out, size_t size) {
    char dir[4096];
    size_t len = str_len(path);
    if (len >= sizeof dir) return 0;
    /* Every directory on the way, from the root down, must be searchable. */
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/') continue;
        size_t n = i == 0 ? 1 : i;
        memcpy(dir, path, n);
        dir[n] = 0;
        if (access(dir, X_OK) != 0 && errno == EACCES) {
            memcpy(out, dir, n < size ? n + 1 : size);
            out[size - 1] = 0;
            return NOOK_EXEC_DIR_NOT_SEARCHABLE;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    memcpy(out, path, len < size ? len + 1 : size);
    out[size - 1] = 0;
    if (!S_ISREG(sb.st_mode)) return NOOK_EXEC_NOT_REGULAR;
    if (access(path, X_OK) != 0) return NOOK_EXEC_NOT_EXECUTABLE;
    struct statfs fs;
    if (syscall(SYS_statfs, path, &fs) == 0 && (fs.f_flags & ST_NOEXEC)) return NOOK_EXEC_NOEXEC_MOUNT;
    return 0;
}

_Noreturn void run_payload(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    reset_signals();
    /* Kept only to hand a seccomp listener to the host; close-on-exec. */
    if (cfg->notify_filter < 0) close(st->sync_fd);

    if (cfg->new_session && setsid() < 0) die(st, NOOK_STEP_SETSID, 0, errno);
    if (st->pty_slave >= 0) {
        if (ioctl(st->pty_slave, TIOCSCTTY, 0) != 0) die(st, NOOK_STEP_CTTY, 0, errno);
        for (int fd = 0; fd < 3; fd++) {
            if (dup2(st->pty_slave, fd) < 0) die(st, NOOK_STEP_CTTY, 1, errno);
        }
        close(st->pty_slave);
    }

    /* The working directory is resolved inside the root and may not pass
     * through a magic link (/proc/self/fd/N: CVE-2024-21626); after fchdir
     * the kernel's own path for it must lie inside the root too. */
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int wd = rootfd < 0 ? -1
                        : k_openat2(rootfd, cfg->cwd, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                    NOOK_RESOLVE_IN_ROOT | NOOK_RESOLVE_NO_MAGICLINKS);
    if (wd < 0 || fchdir(wd) != 0) die(st, NOOK_STEP_WORKDIR, 0, errno);
    char cwd[4096];
    long got = syscall(SYS_getcwd, cwd, sizeof cwd);
    if (got < 0) die(st, NOOK_STEP_WORKDIR_OUTSIDE, 0, errno);
    if (cwd[0] != '/') die(st, NOOK_STEP_WORKDIR_OUTSIDE, 0, EXDEV);
    close(wd);
    close(rootfd);

    /* Resource limits after nook's own last opens: a small nofile limit
     * must bind the payload, not the working directory step above. */
    for (int i = 0; i < cfg->rlimit_count; i++) {
        struct rlimit rl = { (rlim_t)cfg->rlimits[i].soft, (rlim_t)cfg->rlimits[i].hard };
        if (setrlimit(cfg->rlimits[i].resource, &rl) != 0) die(st, NOOK_STEP_RLIMIT, i, errno);
    }

    umask(cfg->umask);

    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) die(st, NOOK_STEP_CAPS, 0, errno);
    if (syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) != 0) die(st, NOOK_STEP_SETGID, 0, errno);
    if (cfg->set_groups && syscall(SYS_setgroups, (size_t)cfg->group_count, cfg->groups) != 0)
        die(st, NOOK_STEP_SETGID, 1, errno);
    if (syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) != 0) die(st, NOOK_STEP_SETUID, 0, errno);

    if (cfg->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(st, NOOK_STEP_NO_NEW_PRIVS, 0, errno);
    if (set_caps(cfg) != 0) die(st, NOOK_STEP_CAPS, 1, errno);
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);

    /* Only 0-2 and the fds the user asked to keep survive exec. The error
     * pipe is above them and already close-on-exec. */
    int keep = cfg->preserve_fds > 0 ? cfg->preserve_fds : 0;
    for (int fd = 3; fd < 3 + keep; fd++) {
        if (fcntl(fd, F_SETFD, 0) != 0) die(st, NOOK_STEP_CLOSE_FDS, fd, errno);
    }
    if (nook_close_range(3 + (unsigned)keep, ~0U, NOOK_CLOSE_RANGE_CLOEXEC) != 0)
        die(st, NOOK_STEP_CLOSE_FDS, 0, errno);

    /* Filters stack; for each call the kernel takes the strictest verdict.
     * The one with a listener goes last: until the host reads the listener
     * nobody would answer its notifications, and the calls left before
     * exec (sendmsg, close, execve) are allowed by every filter. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < cfg->filter_count; i++) {
            int listener = i == cfg->notify_filter;
            if (listener != pass) continue;
            struct sock_fprog prog = { cfg->filters[i].length, (struct sock_filter *)cfg->filters[i].code };
            if (!listener) {
                if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) die(st, NOOK_STEP_SECCOMP, i, errno);
                continue;
            }
            long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
            if (fd < 0) die(st, NOOK_STEP_SECCOMP, i, errno);
            int r = nook_send_fd(st->sync_fd, (int)fd);
            if (r < 0) die(st, NOOK_STEP_SECCOMP, i, -r);
            close((int)fd);
            close(st->sync_fd);
        }
    }

    int err = exec_search(cfg->argv, cfg->envp);
    /* detail: a nook_exec_cause, with the file or directory it concerns. */
    int detail = 0;
    int slash = strchr(cfg->argv[0], '/') != NULL;
    if (slash) {
        struct stat sb;
        if (stat(cfg->argv[0], &sb) == 0)
            detail = S_ISDIR(sb.st_mode) ? NOOK_EXEC_IS_DIRECTORY : (err == ENOENT ? NOOK_EXEC_NO_INTERPRETER : 0);
    }
    char where[240] = { 0 };
    if (detail == 0 && err == EACCES) detail = exec_cause(slash ? cfg->argv[0] : denied_file, where, sizeof where);
    if (detail == 0 && err == ENOENT && !slash && blocked_file[0])
        detail = exec_cause(blocked_file, where, sizeof where) == NOOK_EXEC_DIR_NOT_SEARCHABLE ? NOOK_EXEC_DIR_NOT_SEARCHABLE : 0;
    report(st->error_fd, NOOK_STEP_EXEC, 0, err, detail, where, str_len(where));
    _exit(err == ENOENT ? 127 : 126);
}
