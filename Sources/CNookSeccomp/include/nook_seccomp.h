/*
 * libseccomp behind a small C surface. Swift cannot use seccomp.h directly:
 * its rule calls are variadic macros (SCMP_A1(...), seccomp_rule_add(ctx,
 * action, nr, count, ...)), and the BPF export needs a file descriptor.
 * The filter is compiled in the host and only loaded in the child, where
 * libseccomp (which allocates) may not run.
 */
#ifndef NOOK_SECCOMP_H
#define NOOK_SECCOMP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nook_seccomp_action_kind {
    NOOK_SC_ALLOW = 1,
    NOOK_SC_ERRNO = 2,       /* with an errno value */
    NOOK_SC_KILL_PROCESS = 3,
    NOOK_SC_LOG = 4,         /* allow, and log to the kernel's audit/log */
    NOOK_SC_TRAP = 5,
    NOOK_SC_NOTIFY = 6,      /* ask the listener (seccomp user notification) */
};

/* Comparison operators: the same values as libseccomp's SCMP_CMP_*. */
enum nook_seccomp_op {
    NOOK_SC_NE = 1, NOOK_SC_LT, NOOK_SC_LE, NOOK_SC_EQ, NOOK_SC_GE, NOOK_SC_GT, NOOK_SC_MASKED_EQ,
};

struct nook_seccomp_arg {
    uint32_t index;   /* 0..5 */
    uint32_t op;
    uint64_t value;   /* for MASKED_EQ: the mask */
    uint64_t value2;  /* for MASKED_EQ: the value compared after masking */
};

typedef struct nook_seccomp_filter nook_seccomp_filter;

/* A filter with a default action; NULL on failure (errno set). */
nook_seccomp_filter *nook_seccomp_create(int kind, int errno_value);
/* Adds an ABI by libseccomp name ("x86_64", "x86", "x32", "aarch64", ...):
 * 0, -EEXIST when already present, -EINVAL for an unknown name. */
int nook_seccomp_add_arch(nook_seccomp_filter *filter, const char *arch);
/* Adds a rule: 0, -ENOENT when libseccomp does not know the syscall name,
 * or another -errno. */
int nook_seccomp_add_rule(nook_seccomp_filter *filter, const char *syscall_name, int kind, int errno_value,
                          const struct nook_seccomp_arg *args, int arg_count);
/* Compiles to classic BPF: a malloc'd array of 8-byte instructions the
 * caller frees, and its length in instructions. 0 or -errno. */
int nook_seccomp_export(nook_seccomp_filter *filter, void **program, size_t *instructions);
void nook_seccomp_release(nook_seccomp_filter *filter);

/* One seccomp user notification (linux/seccomp.h struct seccomp_notif),
 * flattened for Swift. */
struct nook_seccomp_notice {
    uint64_t id;
    uint32_t pid;
    int32_t nr;
    uint32_t arch;
    uint64_t args[6];
};

/* Receives one notification from a listener: 0, or -errno (-ENOENT when
 * the caller went away before it could be read). */
int nook_seccomp_notice_receive(int listener, struct nook_seccomp_notice *out);
/* Answers a notification: with -error_value (error_value > 0), or lets the
 * call proceed as if unfiltered (proceed != 0). 0 or -errno. */
int nook_seccomp_notice_answer(int listener, uint64_t id, int error_value, int proceed);
/* Answers a notification with a successful return value. 0 or -errno. */
int nook_seccomp_notice_reply(int listener, uint64_t id, int64_t value);
/* Copies len bytes between this process and another's memory at addr
 * (process_vm_readv / process_vm_writev): 0, or -errno (-EFAULT when only
 * part could be copied). */
int nook_read_remote(int pid, uint64_t addr, void *buf, size_t len);
int nook_write_remote(int pid, uint64_t addr, const void *buf, size_t len);
/* Whether the notification is still pending (its caller still waits). */
int nook_seccomp_notice_valid(int listener, uint64_t id);
/* The name of syscall nr on the audit architecture arch into buf; 0 or -1. */
int nook_seccomp_syscall_name(uint32_t arch, int nr, char *buf, int size);
/* Reads a NUL-terminated string of another process at addr into buf
 * (process_vm_readv, page by page); its length, or -errno. */
int nook_read_remote_string(int pid, uint64_t addr, char *buf, int size);

/* "major.minor.micro api N" of the libseccomp in use, for cache keys. */
void nook_seccomp_version(char *buf, int size);

/* The native syscall number for a name on this machine, or -1. */
int nook_seccomp_syscall_number(const char *syscall_name);
/* The native architecture's libseccomp name ("x86_64", ...). */
const char *nook_seccomp_native_arch(void);

#ifdef __cplusplus
}
#endif

#endif
