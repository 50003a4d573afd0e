/*
 * sd-bus (libsystemd) behind a small C surface, for talking to the user's
 * systemd manager. Swift cannot do this without it: sd-bus builds and reads
 * messages with variadic functions (sd_bus_message_append, _read,
 * sd_bus_call_method), which Swift does not import, and a
 * StartTransientUnit call carries an array of (name, variant) properties
 * whose D-Bus type differs per property. Waiting for the job to finish needs
 * a signal match with a C callback.
 *
 * Every function returns 0 (or a count) or a negative errno. Where the
 * manager answered with a D-Bus error, its name and text are copied into a
 * nook_bus_error for the caller to print.
 *
 * No threads are started: sd-bus is used synchronously, so the CLI may call
 * these before it clones the sandbox.
 */
#ifndef NOOK_SDBUS_H
#define NOOK_SDBUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A connection to the user's manager. */
struct nook_bus;

struct nook_bus_error {
    char name[128];    /* org.freedesktop.systemd1.UnitExists, or empty */
    char message[384]; /* the manager's text, or empty */
};

enum nook_property_kind {
    NOOK_PROPERTY_BOOL = 1,      /* "b": number is 0 or 1 */
    NOOK_PROPERTY_U64 = 2,       /* "t": number */
    NOOK_PROPERTY_STRING = 3,    /* "s": string */
    NOOK_PROPERTY_U32_ARRAY = 4, /* "au": u32s[0..count) (PIDs) */
    NOOK_PROPERTY_BYTES = 5,     /* "ay": bytes[0..count) (a CPU mask) */
};

/* One property of a transient unit, as in systemd.resource-control(5) and
 * org.freedesktop.systemd1(5). */
struct nook_unit_property {
    const char *name;
    int32_t kind;
    uint64_t number;
    const char *string;
    const uint32_t *u32s;
    const uint8_t *bytes;
    size_t count;
};

/* Connects to the user's manager: over the user bus when private_socket is
 * 0 (DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus), or straight to the
 * manager's private socket $XDG_RUNTIME_DIR/systemd/private when it is 1.
 * The address used is copied into address (may be NULL). */
int nook_bus_open_user(int private_socket, struct nook_bus **out, char *address, size_t address_len);

void nook_bus_close(struct nook_bus *bus);

/* A string property of the manager (unit == NULL) or of the unit named
 * unit, such as the manager's ControlGroup or a unit's ActiveState. */
int nook_bus_get_string(struct nook_bus *bus, const char *unit, const char *interface, const char *property,
                        char *out, size_t out_len, struct nook_bus_error *error);

/* A 64-bit unsigned property of a unit (MemoryMax, TasksMax, ...). */
int nook_bus_get_u64(struct nook_bus *bus, const char *unit, const char *interface, const char *property,
                     uint64_t *out, struct nook_bus_error *error);

/* StartTransientUnit(name, mode, properties, []) and waits until its job is
 * removed (the JobRemoved signal, or the job object gone), at most
 * timeout_usec. The job's result ("done", "failed", "timeout", ...) is
 * copied into result; "unknown" when the job vanished without a signal. */
int nook_bus_start_transient_unit(struct nook_bus *bus, const char *name, const char *mode,
                                  const struct nook_unit_property *properties, size_t count,
                                  uint64_t timeout_usec, char *result, size_t result_len,
                                  struct nook_bus_error *error);

/* StopUnit(name, mode) and waits for its job as above. -ENOENT when no
 * such unit is loaded (it is already gone). */
int nook_bus_stop_unit(struct nook_bus *bus, const char *name, const char *mode, uint64_t timeout_usec,
                       char *result, size_t result_len, struct nook_bus_error *error);

/* AttachProcessesToUnit(unit, subcgroup, [pid]): the manager moves pid into
 * the unit's cgroup (subcgroup below it, "" for the unit's own). A user
 * manager that the kernel refuses (the process sits in a login session's
 * scope, outside its subtree) asks the system manager to do it. */
int nook_bus_attach_processes(struct nook_bus *bus, const char *unit, const char *subcgroup, uint32_t pid,
                              struct nook_bus_error *error);

/* sd_notify(3) to the service manager that started this process, if one
 * did ($NOTIFY_SOCKET): state such as "READY=1\nMAINPID=42". When barrier_usec
 * is not 0, waits (sd_notify_barrier) until the manager has read it, so that
 * the sender may exit at once. 1 when sent, 0 without a manager, -errno. */
int nook_sd_notify(const char *state, uint64_t barrier_usec);

#ifdef __cplusplus
}
#endif

#endif
