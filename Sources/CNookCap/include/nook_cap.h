/*
 * libcap behind a small C surface: capability names and numbers as the
 * running kernel and libcap know them. Swift cannot free libcap's
 * allocations with cap_free through Foundation types, so names are copied
 * into caller buffers here. The child sets capabilities with raw capset.
 */
#ifndef NOOK_CAP_H
#define NOOK_CAP_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number for a name such as "cap_net_raw" or "NET_RAW" (case-insensitive,
 * prefix optional), or -1. */
int nook_cap_from_name(const char *name);
/* Writes "cap_net_raw" style name of cap into buf; 0 or -1. */
int nook_cap_name(int cap, char *buf, int size);
/* The highest capability number the running kernel knows. */
int nook_cap_last(void);

#ifdef __cplusplus
}
#endif

#endif
