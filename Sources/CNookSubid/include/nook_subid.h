/*
 * libsubid (shadow-utils) behind a small C surface. It answers "which
 * subordinate ids does this user own" the way newuidmap will check them:
 * /etc/subuid and /etc/subgid by name or numeric uid, or the directory
 * service a site configures with a "subid:" line in /etc/nsswitch.conf.
 * Swift cannot free the array libsubid returns without this.
 */
#ifndef NOOK_SUBID_H
#define NOOK_SUBID_H

#ifdef __cplusplus
extern "C" {
#endif

struct nook_subid_range {
    unsigned long start;
    unsigned long count;
};

/* Ranges owned by `owner` (user name or numeric uid) for uids (gid = 0) or
 * gids (gid = 1), at most max into out. Returns the total number found
 * (which may exceed max), or a negative value when the lookup failed. */
int nook_subid_ranges(const char *owner, int gid, struct nook_subid_range *out, int max);

#ifdef __cplusplus
}
#endif

#endif
