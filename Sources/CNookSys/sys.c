/* Raw system calls for nook; see include/nook_sys.h. */
#define _GNU_SOURCE
#include "nook_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/random.h>

#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int result(long r) { return r < 0 ? -errno : (int)r; }

/* EAGAIN: a rename or mount raced a ".." step; tried again (openat2(2)). */
int nook_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct { uint64_t flags, mode, resolve; } how = { flags, mode, resolve };
    long r = -1;
    for (int i = 0; i < 64; i++) {
        r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (r >= 0 || errno != EAGAIN) break;
    }
    return result(r);
}

int nook_pidfd_open(pid_t pid, unsigned int flags) {
    return result(syscall(SYS_pidfd_open, pid, flags));
}

int nook_pidfd_send_signal(int pidfd, int sig, unsigned int flags) {
    return result(syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags));
}

int nook_pidfd_send_queued(int pidfd, int sig, int value) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = sig;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_int = value;
    return result(syscall(SYS_pidfd_send_signal, pidfd, sig, &info, 0));
}

int nook_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return result(syscall(SYS_close_range, first, last, flags));
}

int nook_send_fd(int sock, int fd) {
    char byte = 'F';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int nook_recv_fd(int sock) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return -EPIPE;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -EPIPE;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

int nook_thread_count(void) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int saved = errno;
    close(fd);
    if (n < 0) return -saved;
    buf[n] = 0;
    char *p = strstr(buf, "\nThreads:");
    if (p == NULL) return -ENOENT;
    p += 9;
    while (*p == ' ' || *p == '\t') p++;
    int count = 0;
    while (*p >= '0' && *p <= '9') count = count * 10 + (*p++ - '0');
    return count;
}

int nook_signalfd_read(int fd, int *signo, int *code) {
    struct signalfd_siginfo info;
    ssize_t n;
    do { n = read(fd, &info, sizeof info); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != sizeof info) return -EIO;
    *signo = (int)info.ssi_signo;
    *code = info.ssi_code;
    return 1;
}

int nook_signal_ignored(int sig) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0) return 0;
    return sa.sa_handler == SIG_IGN;
}

int nook_signalfd_open(const int *signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; signals[i] != 0; i++) sigaddset(&set, signals[i]);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int nook_has_file_caps(const char *path) {
    return getxattr(path, "security.capability", NULL, 0) > 0 ? 1 : 0;
}

unsigned long nook_at_secure(void) { return getauxval(AT_SECURE); }

int nook_random(void *buf, unsigned long n) {
    unsigned long done = 0;
    while (done < n) {
        ssize_t r = getrandom((char *)buf + done, n - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        done += (unsigned long)r;
    }
    return 0;
}

int nook_set_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

_Static_assert(NOOK_O_PATH == O_PATH, "O_PATH differs on this architecture");

int nook_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0) == 0 ? 0 : -errno;
}

int nook_fgetxattr(int fd, const char *name, void *value, size_t size) {
    ssize_t n = fgetxattr(fd, name, value, size);
    return n < 0 ? -errno : (int)n;
}

int nook_flistxattr(int fd, char *list, size_t size) {
    ssize_t n = flistxattr(fd, list, size);
    return n < 0 ? -errno : (int)n;
}

int nook_lsetxattrat(int dirfd, const char *name, const char *attr, const void *value, size_t size) {
    char path[64 + 256];
    if (snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd, name) >= (int)sizeof path) return -ENAMETOOLONG;
    return lsetxattr(path, attr, value, size, 0) == 0 ? 0 : -errno;
}

long nook_copy_file_range(int in, int out, size_t length) {
    ssize_t n = copy_file_range(in, NULL, out, NULL, length, 0);
    return n < 0 ? -errno : (long)n;
}

int nook_die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -errno;
    return getppid() == parent ? 0 : -ESRCH;
}
