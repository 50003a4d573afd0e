/* Shared by the files of CNookLaunch. Everything here runs in the cloned
 * child and must stay async-signal-safe: system calls, memory and string
 * operations on caller-owned buffers, nothing that allocates or locks. */
#ifndef NOOK_LAUNCH_INTERNAL_H
#define NOOK_LAUNCH_INTERNAL_H

#define _GNU_SOURCE
#include "nook_launch.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* The kernel's new mount API, by number (linux/mount.h values). */
#define K_OPEN_TREE_CLONE 1
#define K_OPEN_TREE_CLOEXEC 02000000
#define K_AT_RECURSIVE 0x8000
#define K_AT_EMPTY_PATH 0x1000
#define K_AT_SYMLINK_NOFOLLOW 0x100
#define K_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define K_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define K_FSOPEN_CLOEXEC 0x00000001
#define K_FSMOUNT_CLOEXEC 0x00000001
#define K_FSCONFIG_SET_FLAG 0
#define K_FSCONFIG_SET_STRING 1
#define K_FSCONFIG_CMD_CREATE 6

int k_open_tree(int dfd, const char *path, unsigned flags);
int k_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags);
int k_fsopen(const char *fstype, unsigned flags);
int k_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux);
int k_fsmount(int fd, unsigned flags, unsigned attrs);
int k_mount_setattr(int dfd, const char *path, unsigned flags, uint64_t attr_set, uint64_t attr_clr);
int k_pivot_root(const char *new_root, const char *put_old);
int k_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
long k_fork(void);

/* Error reporting: fills a nook_child_error and writes it to the error fd.
 * The message, if any, is copied from msg (not NUL-terminated necessarily). */
void report(int error_fd, int step, int index, int err, int detail, const char *msg, size_t msg_len);

/* Steps, in the order the child runs them. Each returns 0 or reports and
 * returns -1. */
struct child_state {
    const struct nook_launch_config *cfg;
    int sync_fd;
    int error_fd;
    int pty_slave; /* -1 without a terminal */
};

int prepare_root(struct child_state *st);
int setup_root(struct child_state *st);
_Noreturn void run_init(struct child_state *st);
/* Every signal to its default action and none blocked: what a program
 * nook starts gets, whatever nook inherited (an ignored SIGPIPE or SIGHUP
 * would otherwise survive exec; pasta refuses to start with SIGPIPE
 * ignored). */
void reset_signals(void);
_Noreturn void run_payload(struct child_state *st);

size_t str_len(const char *s);

#endif
