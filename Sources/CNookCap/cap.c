/* libcap shim; see include/nook_cap.h. */
#define _GNU_SOURCE
#include "nook_cap.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>

int nook_cap_from_name(const char *name) {
    char buf[64];
    size_t len = strlen(name);
    if (len == 0 || len + 5 >= sizeof buf) return -1;
    size_t off = 0;
    if (strncasecmp(name, "cap_", 4) != 0) {
        memcpy(buf, "cap_", 4);
        off = 4;
    }
    for (size_t i = 0; i <= len; i++) buf[off + i] = (char)tolower((unsigned char)name[i]);
    cap_value_t value;
    if (cap_from_name(buf, &value) != 0) return -1;
    return (int)value;
}

int nook_cap_name(int cap, char *buf, int size) {
    char *name = cap_to_name((cap_value_t)cap);
    if (name == NULL) return -1;
    int r = snprintf(buf, (size_t)size, "%s", name);
    cap_free(name);
    return r < 0 || r >= size ? -1 : 0;
}

int nook_cap_last(void) {
    /* cap_max_bits() asks the running kernel (via /proc/sys/kernel/cap_last_cap). */
    return (int)cap_max_bits() - 1;
}
