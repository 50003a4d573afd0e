/* nook doctor's namespace probes; see include/nook_probe.h. */
#define _GNU_SOURCE
#include "nook_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/capability.h>
#include <unistd.h>

struct outcome {
    int step;
    int err;
};

static void report(int fd, int step, int err) {
    struct outcome o = { step, err };
    ssize_t n;
    do { n = write(fd, &o, sizeof o); } while (n < 0 && errno == EINTR);
    _exit(1);
}

static int write_file(const char *path, const char *text, size_t len) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, len);
    int err = errno;
    close(fd);
    errno = err;
    return n == (ssize_t)len ? 0 : -1;
}

static int run(int overlay, int *step) {
    /* Everything the child writes is made here, before the fork. */
    char uid_map[64], gid_map[64];
    int uid_len = snprintf(uid_map, sizeof uid_map, "0 %u 1\n", (unsigned)getuid());
    int gid_len = snprintf(gid_map, sizeof gid_map, "0 %u 1\n", (unsigned)getgid());
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        *step = NOOK_PROBE_STEP_FORK;
        return -errno;
    }
    /* Raw clone: no atfork handlers run in the child. */
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        *step = NOOK_PROBE_STEP_FORK;
        return -err;
    }
    if (pid == 0) {
        int fd = pipefd[1];
        close(pipefd[0]);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) report(fd, NOOK_PROBE_STEP_USERNS, errno);
        if (write_file("/proc/self/setgroups", "deny", 4) != 0) report(fd, NOOK_PROBE_STEP_SETGROUPS, errno);
        if (write_file("/proc/self/uid_map", uid_map, (size_t)uid_len) != 0) report(fd, NOOK_PROBE_STEP_UID_MAP, errno);
        if (write_file("/proc/self/gid_map", gid_map, (size_t)gid_len) != 0) report(fd, NOOK_PROBE_STEP_GID_MAP, errno);
        if (overlay) {
            if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) report(fd, NOOK_PROBE_STEP_PRIVATE, errno);
            if (mount("tmpfs", "/tmp", "tmpfs", 0, "mode=0755") != 0) report(fd, NOOK_PROBE_STEP_TMPFS, errno);
            if (mkdir("/tmp/l", 0755) != 0 || mkdir("/tmp/u", 0755) != 0 || mkdir("/tmp/w", 0755) != 0
                || mkdir("/tmp/m", 0755) != 0)
                report(fd, NOOK_PROBE_STEP_MKDIR, errno);
            if (mount("overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w") != 0)
                report(fd, NOOK_PROBE_STEP_OVERLAY, errno);
        }
        _exit(0);
    }
    close(pipefd[1]);
    struct outcome o = { 0, 0 };
    ssize_t n;
    do { n = read(pipefd[0], &o, sizeof o); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    int status = 0;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
    if (n == (ssize_t)sizeof o) {
        *step = o.step;
        return -o.err;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        *step = NOOK_PROBE_STEP_FORK;
        return -ECHILD;
    }
    *step = 0;
    return 0;
}

int nook_probe_userns(int *step) { return run(0, step); }

int nook_probe_overlay(int *step) { return run(1, step); }

int nook_file_capability(const char *path, int cap) {
    struct vfs_ns_cap_data data;
    memset(&data, 0, sizeof data);
    ssize_t n = getxattr(path, "security.capability", &data, sizeof data);
    if (n < 0) return -errno;
    /* Revision 1 has one 32-bit word; revisions 2 and 3 have two. */
    if (n < (ssize_t)(sizeof(uint32_t) * 3) || cap < 0 || cap >= 64) return 0;
    int word = cap / 32;
    if (word == 1 && n < (ssize_t)(sizeof(uint32_t) * 5)) return 0;
    uint32_t permitted = data.data[word].permitted;
    return (permitted >> (cap % 32)) & 1;
}
