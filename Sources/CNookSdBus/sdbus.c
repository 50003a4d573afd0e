/* sd-bus shim; see include/nook_sdbus.h. The manager's D-Bus API is in
 * org.freedesktop.systemd1(5); job waiting follows systemd's own
 * bus-wait-for-jobs.c (match JobRemoved before the call, compare the job
 * path after it). */
#define _GNU_SOURCE
#include "nook_sdbus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define MANAGER_PATH "/org/freedesktop/systemd1"
#define MANAGER_INTERFACE "org.freedesktop.systemd1.Manager"

struct nook_bus {
    sd_bus *bus;
    /* A direct connection to the manager's private socket: no bus daemon,
     * so messages carry no sender and matches must not ask for one. */
    int direct;
};

static void copy(char *dst, size_t len, const char *src) {
    if (dst == NULL || len == 0) return;
    snprintf(dst, len, "%s", src != NULL ? src : "");
}

/* Hands the D-Bus error to the caller and returns a negative errno. */
static int fail(sd_bus_error *e, struct nook_bus_error *out, int r) {
    if (out != NULL) {
        copy(out->name, sizeof out->name, e->name);
        copy(out->message, sizeof out->message, e->message);
    }
    if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit")) r = -ENOENT;
    sd_bus_error_free(e);
    return r < 0 ? r : -EIO;
}

static uint64_t now_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

int nook_bus_open_user(int private_socket, struct nook_bus **out, char *address, size_t address_len) {
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    sd_bus *bus = NULL;
    int r;
    if (private_socket) {
        if (runtime == NULL || runtime[0] != '/') {
            copy(address, address_len, "$XDG_RUNTIME_DIR/systemd/private");
            return -ENXIO;
        }
        char path[4200];
        snprintf(path, sizeof path, "unix:path=%s/systemd/private", runtime);
        copy(address, address_len, path);
        r = sd_bus_new(&bus);
        if (r < 0) return r;
        r = sd_bus_set_address(bus, path);
        if (r >= 0) r = sd_bus_start(bus);
    } else {
        const char *env = getenv("DBUS_SESSION_BUS_ADDRESS");
        if (env != NULL && env[0] != 0) {
            copy(address, address_len, env);
        } else if (runtime != NULL && runtime[0] == '/') {
            char path[4200];
            snprintf(path, sizeof path, "unix:path=%s/bus", runtime);
            copy(address, address_len, path);
        } else {
            copy(address, address_len, "$DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus");
        }
        r = sd_bus_open_user(&bus);
    }
    if (r < 0) {
        sd_bus_unref(bus);
        return r;
    }
    /* sd-bus's own default: a user manager busy starting many scopes (a CI
     * runner starting twenty containers) answers late, and an automatic
     * choice that took silence for "no manager" would run without a cgroup. */
    (void)sd_bus_set_method_call_timeout(bus, 25ULL * 1000000ULL);
    struct nook_bus *b = calloc(1, sizeof *b);
    if (b == NULL) {
        sd_bus_unref(bus);
        return -ENOMEM;
    }
    b->bus = bus;
    b->direct = private_socket != 0;
    *out = b;
    return 0;
}

void nook_bus_close(struct nook_bus *b) {
    if (b == NULL) return;
    sd_bus_flush_close_unref(b->bus);
    free(b);
}

static int object_path(const char *unit, char **path) {
    if (unit == NULL) {
        *path = strdup(MANAGER_PATH);
        return *path != NULL ? 0 : -ENOMEM;
    }
    return sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, path);
}

int nook_bus_get_string(struct nook_bus *b, const char *unit, const char *interface, const char *property,
                        char *out, size_t out_len, struct nook_bus_error *error) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    char *path = NULL, *value = NULL;
    int r = object_path(unit, &path);
    if (r < 0) return r;
    r = sd_bus_get_property_string(b->bus, SYSTEMD_SERVICE, path, interface, property, &e, &value);
    free(path);
    if (r < 0) return fail(&e, error, r);
    copy(out, out_len, value);
    free(value);
    return 0;
}

int nook_bus_get_u64(struct nook_bus *b, const char *unit, const char *interface, const char *property,
                     uint64_t *out, struct nook_bus_error *error) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    char *path = NULL;
    int r = object_path(unit, &path);
    if (r < 0) return r;
    r = sd_bus_get_property_trivial(b->bus, SYSTEMD_SERVICE, path, interface, property, &e, 't', out);
    free(path);
    if (r < 0) return fail(&e, error, r);
    return 0;
}

/* The job being waited for, and what JobRemoved said about it. */
struct job_watch {
    char *path;
    char result[32];
    int removed;
};

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
    (void)ret_error;
    struct job_watch *w = userdata;
    uint32_t id;
    const char *path, *unit, *result;
    if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0) return 0;
    /* Callbacks run only from sd_bus_process, after the call that made the
     * job returned, so the path is known by then. */
    if (w->path != NULL && strcmp(path, w->path) == 0) {
        copy(w->result, sizeof w->result, result);
        w->removed = 1;
    }
    return 0;
}

static int job_exists(struct nook_bus *b, const char *path) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    char *state = NULL;
    int r = sd_bus_get_property_string(b->bus, SYSTEMD_SERVICE, path, "org.freedesktop.systemd1.Job", "State", &e,
                                       &state);
    free(state);
    sd_bus_error_free(&e);
    return r >= 0;
}

static int drain(struct nook_bus *b) {
    int r;
    while ((r = sd_bus_process(b->bus, NULL)) > 0) {}
    return r;
}

/* Processes messages until the job is removed. A bus that does not route
 * JobRemoved to us (a daemon's policy) would leave us waiting, so the job
 * object is looked at four times a second as well. */
static int wait_job(struct nook_bus *b, struct job_watch *w, uint64_t timeout_usec) {
    uint64_t deadline = now_usec() + timeout_usec;
    uint64_t next_check = now_usec() + 250000;
    while (!w->removed) {
        int r = sd_bus_process(b->bus, NULL);
        if (r < 0) return r;
        if (r > 0) continue;
        uint64_t now = now_usec();
        if (now >= deadline) return -ETIMEDOUT;
        if (now >= next_check) {
            if (!job_exists(b, w->path)) {
                r = drain(b);
                if (r < 0) return r;
                if (!w->removed) copy(w->result, sizeof w->result, "unknown");
                w->removed = 1;
                break;
            }
            next_check = now_usec() + 250000;
            continue;
        }
        uint64_t wait = deadline - now;
        if (wait > 100000) wait = 100000;
        r = sd_bus_wait(b->bus, wait);
        if (r < 0 && r != -EINTR) return r;
    }
    return 0;
}

static int append_property(sd_bus_message *m, const struct nook_unit_property *p) {
    int r = sd_bus_message_open_container(m, 'r', "sv");
    if (r < 0) return r;
    r = sd_bus_message_append(m, "s", p->name);
    if (r < 0) return r;
    switch (p->kind) {
    case NOOK_PROPERTY_BOOL:
        r = sd_bus_message_append(m, "v", "b", (int)(p->number != 0));
        break;
    case NOOK_PROPERTY_U64:
        r = sd_bus_message_append(m, "v", "t", p->number);
        break;
    case NOOK_PROPERTY_STRING:
        r = sd_bus_message_append(m, "v", "s", p->string != NULL ? p->string : "");
        break;
    case NOOK_PROPERTY_U32_ARRAY:
        r = sd_bus_message_open_container(m, 'v', "au");
        if (r >= 0) r = sd_bus_message_append_array(m, 'u', p->u32s, p->count * sizeof(uint32_t));
        if (r >= 0) r = sd_bus_message_close_container(m);
        break;
    case NOOK_PROPERTY_BYTES:
        r = sd_bus_message_open_container(m, 'v', "ay");
        if (r >= 0) r = sd_bus_message_append_array(m, 'y', p->bytes, p->count);
        if (r >= 0) r = sd_bus_message_close_container(m);
        break;
    default:
        r = -EINVAL;
    }
    if (r < 0) return r;
    return sd_bus_message_close_container(m);
}

/* Sends a method call that answers with a job path, then waits for it. */
static int call_and_wait(struct nook_bus *b, sd_bus_message *m, uint64_t timeout_usec, char *result,
                         size_t result_len, struct nook_bus_error *error) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    sd_bus_slot *slot = NULL;
    struct job_watch w;
    memset(&w, 0, sizeof w);
    int r = sd_bus_match_signal(b->bus, &slot, b->direct ? NULL : SYSTEMD_SERVICE, MANAGER_PATH, MANAGER_INTERFACE,
                                "JobRemoved", on_job_removed, &w);
    if (r < 0) return r;
    r = sd_bus_call(b->bus, m, 0, &e, &reply);
    if (r < 0) {
        sd_bus_slot_unref(slot);
        return fail(&e, error, r);
    }
    const char *job = NULL;
    r = sd_bus_message_read(reply, "o", &job);
    if (r >= 0) {
        w.path = strdup(job);
        r = w.path != NULL ? wait_job(b, &w, timeout_usec) : -ENOMEM;
    }
    if (r >= 0) copy(result, result_len, w.result);
    free(w.path);
    sd_bus_message_unref(reply);
    sd_bus_slot_unref(slot);
    return r < 0 ? r : 0;
}

int nook_bus_start_transient_unit(struct nook_bus *b, const char *name, const char *mode,
                                  const struct nook_unit_property *properties, size_t count,
                                  uint64_t timeout_usec, char *result, size_t result_len,
                                  struct nook_bus_error *error) {
    sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(b->bus, &m, SYSTEMD_SERVICE, MANAGER_PATH, MANAGER_INTERFACE,
                                           "StartTransientUnit");
    if (r < 0) return r;
    r = sd_bus_message_append(m, "ss", name, mode);
    if (r >= 0) r = sd_bus_message_open_container(m, 'a', "(sv)");
    for (size_t i = 0; r >= 0 && i < count; i++) r = append_property(m, &properties[i]);
    if (r >= 0) r = sd_bus_message_close_container(m);
    /* No auxiliary units. */
    if (r >= 0) r = sd_bus_message_append(m, "a(sa(sv))", 0);
    if (r >= 0) r = call_and_wait(b, m, timeout_usec, result, result_len, error);
    sd_bus_message_unref(m);
    return r;
}

int nook_bus_stop_unit(struct nook_bus *b, const char *name, const char *mode, uint64_t timeout_usec,
                       char *result, size_t result_len, struct nook_bus_error *error) {
    sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_call(b->bus, &m, SYSTEMD_SERVICE, MANAGER_PATH, MANAGER_INTERFACE,
                                           "StopUnit");
    if (r < 0) return r;
    r = sd_bus_message_append(m, "ss", name, mode);
    if (r >= 0) r = call_and_wait(b, m, timeout_usec, result, result_len, error);
    sd_bus_message_unref(m);
    return r;
}

int nook_bus_attach_processes(struct nook_bus *b, const char *unit, const char *subcgroup, uint32_t pid,
                              struct nook_bus_error *error) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message *m = NULL;
    sd_bus_message *reply = NULL;
    int r = sd_bus_message_new_method_call(b->bus, &m, SYSTEMD_SERVICE, MANAGER_PATH, MANAGER_INTERFACE,
                                           "AttachProcessesToUnit");
    if (r < 0) return r;
    r = sd_bus_message_append(m, "ss", unit, subcgroup);
    if (r >= 0) r = sd_bus_message_append_array(m, 'u', &pid, sizeof pid);
    if (r >= 0) {
        r = sd_bus_call(b->bus, m, 0, &e, &reply);
        if (r < 0) r = fail(&e, error, r);
    }
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
    return r < 0 ? r : 0;
}

int nook_sd_notify(const char *state, uint64_t barrier_usec) {
    int r = sd_notify(0, state);
    if (r <= 0 || barrier_usec == 0) return r;
    int b = sd_notify_barrier(0, barrier_usec);
    return b < 0 ? b : r;
}
