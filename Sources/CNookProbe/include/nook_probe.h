/*
 * Probes of what the kernel lets this user do, for nook doctor: each forks a
 * child that tries the thing in new namespaces and reports by exit status.
 * Swift cannot run in a forked child (the runtime may hold locks another
 * thread took), so the child's whole life is here, with strings prepared
 * before the fork and only system calls after it.
 *
 * Each returns 0 when the thing worked, or a negative errno from the step
 * that failed, with *step set to a NOOK_PROBE_STEP_* value.
 *
 * Also here: reading a file's capabilities (getxattr and <linux/capability.h>
 * are not in Swift's Glibc module).
 */
#ifndef NOOK_PROBE_H
#define NOOK_PROBE_H

#ifdef __cplusplus
extern "C" {
#endif

enum nook_probe_step {
    NOOK_PROBE_STEP_FORK = 1,
    NOOK_PROBE_STEP_USERNS,     /* unshare(CLONE_NEWUSER | CLONE_NEWNS) */
    NOOK_PROBE_STEP_SETGROUPS,  /* writing /proc/self/setgroups */
    NOOK_PROBE_STEP_UID_MAP,    /* writing /proc/self/uid_map */
    NOOK_PROBE_STEP_GID_MAP,
    NOOK_PROBE_STEP_PRIVATE,    /* making / private */
    NOOK_PROBE_STEP_TMPFS,      /* a tmpfs for the overlay's directories */
    NOOK_PROBE_STEP_MKDIR,
    NOOK_PROBE_STEP_OVERLAY,    /* mount -t overlay in the user namespace */
};

/* A user namespace with a mount namespace, the caller's ids mapped to 0. */
int nook_probe_userns(int *step);

/* The same, then an overlay mount of a tmpfs lower, upper and work
 * directory (Linux 5.11 allows overlay in a user namespace). */
int nook_probe_overlay(int *step);

/* Whether the file capability set of path has capability cap (CAP_SETUID
 * is 7) in its permitted set: 1 or 0, or -errno (-ENODATA: no file
 * capabilities at all). */
int nook_file_capability(const char *path, int cap);

#ifdef __cplusplus
}
#endif

#endif
