/*
 * Raw Linux system calls that Swift cannot reach through Glibc: Debian 12's
 * Glibc 2.36 wraps the new mount API and pidfds, but Ubuntu 22.04's 2.35 does
 * not, openat2 and clone3 have no wrapper anywhere, and passing a descriptor
 * over a socket (SCM_RIGHTS) needs CMSG_* macros that Swift cannot expand.
 *
 * Every function returns 0 (or a descriptor) on success and -errno on
 * failure, so callers never read errno after another call may have changed it.
 */
#ifndef NOOK_SYS_H
#define NOOK_SYS_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* openat2(2) RESOLVE_* flags (linux/openat2.h), repeated under our own names
 * so that the header does not drag kernel headers into Swift. */
#define NOOK_RESOLVE_NO_XDEV 0x01
#define NOOK_RESOLVE_NO_MAGICLINKS 0x02
#define NOOK_RESOLVE_NO_SYMLINKS 0x04
#define NOOK_RESOLVE_BENEATH 0x08
#define NOOK_RESOLVE_IN_ROOT 0x10

/* O_PATH (a _GNU_SOURCE flag Swift's Glibc module does not show). */
#define NOOK_O_PATH 010000000
/* AT_EMPTY_PATH, likewise. */
#define NOOK_AT_EMPTY_PATH 0x1000

/* openat2(2); returns a descriptor or -errno. */
int nook_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/* pidfd_open(2) and pidfd_send_signal(2); -errno on failure. */
int nook_pidfd_open(pid_t pid, unsigned int flags);
int nook_pidfd_send_signal(int pidfd, int sig, unsigned int flags);

/* Send a signal through a pidfd with si_code SI_QUEUE and an integer value,
 * so the receiver can tell why it was sent (nook's init uses it to tell a
 * terminal's Ctrl-C, meant for a process group, from a plain kill). */
int nook_pidfd_send_queued(int pidfd, int sig, int value);

/* close_range(2); -errno on failure. */
int nook_close_range(unsigned int first, unsigned int last, unsigned int flags);
#define NOOK_CLOSE_RANGE_CLOEXEC (1U << 2)

/* Pass one descriptor over a unix socket with SCM_RIGHTS, together with one
 * byte of data. recv returns the descriptor (O_CLOEXEC) or -errno; -EPIPE
 * when the peer closed without sending one. */
int nook_send_fd(int sock, int fd);
int nook_recv_fd(int sock);

/* Reads one record from a signalfd: 1 with *signo and *code (si_code) set,
 * 0 when none is pending (non-blocking fd), or -errno. */
int nook_signalfd_read(int fd, int *signo, int *code);

/* A non-blocking, close-on-exec signalfd for the given signals (NULL-free
 * list ending in 0), or -errno. The caller blocks them first. */
int nook_signalfd_open(const int *signals);

/* 1 when path carries a security.capability xattr, else 0. */
int nook_has_file_caps(const char *path);

/* 1 when sig's disposition is SIG_IGN (inherited from `nohup` and the like). */
int nook_signal_ignored(int sig);

/* getauxval(AT_SECURE): nonzero when the kernel ran this program with
 * raised privileges (setuid, setgid, file capabilities). */
unsigned long nook_at_secure(void);

/* Fills buf with n random bytes (getrandom(2)); 0 or -errno. */
int nook_random(void *buf, unsigned long n);

/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of this process's children
 * become its children. 0 or -errno. */
int nook_set_subreaper(void);

/* Number of threads in this process, from /proc/self/status; -errno. */
int nook_thread_count(void);

/* File calls for unpacking image layers that Swift's Glibc module leaves
 * out (they sit behind _GNU_SOURCE or in <sys/xattr.h>). Each returns 0 (or
 * a length) or -errno. */
#define NOOK_O_PATH 010000000
int nook_fsetxattr(int fd, const char *name, const void *value, size_t size);
int nook_fgetxattr(int fd, const char *name, void *value, size_t size);
int nook_flistxattr(int fd, char *list, size_t size);
/* setxattr on `name` in directory dirfd without following it when it is a
 * symlink (through /proc/self/fd, as no *at form exists before Linux 6.13). */
int nook_lsetxattrat(int dirfd, const char *name, const char *attr, const void *value, size_t size);
/* copy_file_range(2) of up to length bytes; the count copied or -errno. */
long nook_copy_file_range(int in, int out, size_t length);

/* SIGKILL for this process when its parent dies (prctl PR_SET_PDEATHSIG,
 * variadic, so not callable from Swift); -ESRCH when the parent is no
 * longer `parent`, having died before the call. */
int nook_die_with_parent(pid_t parent);

#ifdef __cplusplus
}
#endif

#endif
