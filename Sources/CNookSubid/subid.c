/* libsubid shim; see include/nook_subid.h. */
#define _GNU_SOURCE
#include "nook_subid.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <shadow/subid.h>

int nook_subid_ranges(const char *owner, int gid, struct nook_subid_range *out, int max) {
    static int initialized;
    if (!initialized) {
        /* libsubid prints its own complaints; nook reports the outcome. */
        FILE *devnull = fopen("/dev/null", "we");
        subid_init("nook", devnull);
        initialized = 1;
    }
    struct subid_range *ranges = NULL;
    int n = gid ? subid_get_gid_ranges(owner, &ranges) : subid_get_uid_ranges(owner, &ranges);
    if (n < 0) return n;
    for (int i = 0; i < n && i < max; i++) {
        out[i].start = ranges[i].start;
        out[i].count = ranges[i].count;
    }
    free(ranges);
    return n;
}
