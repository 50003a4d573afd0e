/* Assembling the sandbox's root: clone the root tree, mount each op on a
 * destination resolved inside that tree, pivot_root into it.
 *
 * Every destination is resolved with openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) relative to the new root, so a symlink in the tree
 * (an image is hostile input; a bound host directory can change under us)
 * is followed only within the root, and a destination that is itself a
 * symlink is refused. Mounts are attached to the resolved descriptor with
 * move_mount, never to a path, so nothing can swap the target in between. */
#include "internal.h"
#include "nook_sys.h"

#include <fcntl.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RESOLVE_FLAGS (NOOK_RESOLVE_IN_ROOT | NOOK_RESOLVE_NO_MAGICLINKS)
#define PATH_BUF 4096

static int fail(struct child_state *st, int step, int index, int err) {
    report(st->error_fd, step, index, err, 0, NULL, 0);
    return -1;
}

static int resolve_dir(int rootfd, const char *path) {
    return k_openat2(rootfd, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_FLAGS);
}

/* Makes every missing directory of an absolute path inside the root, one
 * component at a time, each created relative to its resolved parent. */
static int make_dirs(int rootfd, char *path) {
    size_t len = str_len(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        char saved = path[i];
        path[i] = 0;
        int fd = resolve_dir(rootfd, path);
        if (fd < 0 && errno == ENOENT) {
            char *slash = strrchr(path, '/');
            *slash = 0;
            int parent = slash == path ? dup(rootfd) : resolve_dir(rootfd, path);
            *slash = '/';
            if (parent < 0) { path[i] = saved; return -1; }
            int r = mkdirat(parent, slash + 1, 0755);
            int err = errno;
            close(parent);
            if (r != 0 && err != EEXIST) { path[i] = saved; errno = err; return -1; }
            fd = resolve_dir(rootfd, path);
        }
        path[i] = saved;
        if (fd < 0) return -1;
        close(fd);
    }
    return 0;
}

/* Splits dest into parent directory (opened) and last component. Returns
 * -2 without a report when the parent is missing and `optional` is set. */
static int open_parent(struct child_state *st, int rootfd, int index, const char *dest, int create, int optional,
                       char *buf, const char **name) {
    size_t len = str_len(dest);
    if (len == 0 || len >= PATH_BUF || dest[0] != '/') return fail(st, NOOK_STEP_OP_RESOLVE, index, EINVAL);
    memcpy(buf, dest, len + 1);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = 0;
    char *slash = strrchr(buf, '/');
    *name = slash + 1;
    if (**name == 0) return fail(st, NOOK_STEP_OP_RESOLVE, index, EINVAL);
    int parent;
    if (slash == buf) {
        parent = dup(rootfd);
    } else {
        *slash = 0;
        parent = resolve_dir(rootfd, buf);
        if (parent < 0 && errno == ENOENT && create) {
            if (make_dirs(rootfd, buf) != 0) {
                int err = errno;
                *slash = '/';
                return fail(st, NOOK_STEP_OP_CREATE, index, err);
            }
            parent = resolve_dir(rootfd, buf);
        }
        *slash = '/';
    }
    if (parent < 0) {
        int err = errno;
        /* A path to mask or hide whose directory is missing (strict hides
         * /etc/ssl/private; a host without /etc/ssl has nothing there). */
        if (err == ENOENT && optional) return -2;
        return fail(st, err == ENOTDIR ? NOOK_STEP_OP_NOT_DIR : NOOK_STEP_OP_RESOLVE, index, err);
    }
    return parent;
}

/* Opens the destination itself (O_PATH, not following a final symlink),
 * creating it when allowed. Returns -2 for a missing optional destination. */
static int open_destination(struct child_state *st, int rootfd, int index, const struct nook_op *op) {
    char buf[PATH_BUF];
    const char *name;
    int create = (op->flags & NOOK_OPF_CREATE) != 0;
    int parent = open_parent(st, rootfd, index, op->destination, create, (op->flags & NOOK_OPF_OPTIONAL) != 0,
                             buf, &name);
    if (parent < 0) {
        return parent;
    }
    int fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && (op->flags & NOOK_OPF_REPLACE_LINK)) {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISLNK(sb.st_mode)) {
            /* The link itself goes; where it pointed is never touched. A
             * read-only root refuses, and the error below names the path. */
            close(fd);
            fd = -1;
            if (unlinkat(parent, name, 0) != 0) {
                int err = errno;
                close(parent);
                return fail(st, NOOK_STEP_OP_SYMLINK_DEST, index, err);
            }
            errno = ENOENT;
        }
    }
    if (fd < 0 && errno == ENOENT) {
        if (op->flags & NOOK_OPF_OPTIONAL) { close(parent); return -2; }
        if (!create) { close(parent); return fail(st, NOOK_STEP_OP_RESOLVE, index, ENOENT); }
        int r;
        if (op->flags & NOOK_OPF_FILE) {
            r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (r >= 0) { close(r); r = 0; }
        } else {
            r = mkdirat(parent, name, 0755);
        }
        if (r != 0) { int err = errno; close(parent); return fail(st, NOOK_STEP_OP_CREATE, index, err); }
        fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    int err = errno;
    close(parent);
    if (fd < 0) return fail(st, NOOK_STEP_OP_RESOLVE, index, err);
    struct stat sb;
    if (fstat(fd, &sb) != 0) { err = errno; close(fd); return fail(st, NOOK_STEP_OP_RESOLVE, index, err); }
    if (S_ISLNK(sb.st_mode)) {
        close(fd);
        if ((op->flags & NOOK_OPF_SKIP_LINK) && (op->flags & NOOK_OPF_OPTIONAL)) return -2;
        return fail(st, NOOK_STEP_OP_SYMLINK_DEST, index, ELOOP);
    }
    return fd;
}

static int attach(struct child_state *st, int index, int mount_fd, int dest_fd) {
    if (k_move_mount(mount_fd, "", dest_fd, "", K_MOVE_MOUNT_F_EMPTY_PATH | K_MOVE_MOUNT_T_EMPTY_PATH) != 0)
        return fail(st, NOOK_STEP_OP_MOVE, index, errno);
    return 0;
}

/* fsopen + fsconfig + fsmount. On failure the kernel leaves a message in the
 * context's log (read(2) on the fs fd), which is passed on. */
static int new_filesystem(struct child_state *st, int index, const char *type, const char *const *options,
                          int option_count, uint64_t attrs) {
    int fs = k_fsopen(type, K_FSOPEN_CLOEXEC);
    if (fs < 0) return fail(st, NOOK_STEP_OP_FSOPEN, index, errno);
    for (int i = 0; i < option_count; i++) {
        char key[256];
        const char *option = options[i];
        const char *eq = strchr(option, '=');
        int r;
        if (eq == NULL) {
            r = k_fsconfig(fs, K_FSCONFIG_SET_FLAG, option, NULL, 0);
        } else {
            size_t klen = (size_t)(eq - option);
            if (klen >= sizeof key) klen = sizeof key - 1;
            memcpy(key, option, klen);
            key[klen] = 0;
            r = k_fsconfig(fs, K_FSCONFIG_SET_STRING, key, eq + 1, 0);
        }
        if (r != 0) {
            int err = errno;
            char log[240];
            ssize_t n = read(fs, log, sizeof log);
            report(st->error_fd, NOOK_STEP_OP_FSCONFIG, index, err, i, log, n > 0 ? (size_t)n : 0);
            close(fs);
            return -1;
        }
    }
    if (k_fsconfig(fs, K_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
        int err = errno;
        char log[240];
        ssize_t n = read(fs, log, sizeof log);
        report(st->error_fd, NOOK_STEP_OP_FSCONFIG, index, err, -1, log, n > 0 ? (size_t)n : 0);
        close(fs);
        return -1;
    }
    int mnt = k_fsmount(fs, K_FSMOUNT_CLOEXEC, (unsigned)attrs);
    int err = errno;
    close(fs);
    if (mnt < 0) return fail(st, NOOK_STEP_OP_FSMOUNT, index, err);
    return mnt;
}

static int apply_op(struct child_state *st, int rootfd, int index) {
    const struct nook_op *op = &st->cfg->ops[index];
    int32_t *scratch = st->cfg->scratch;

    if (op->kind == NOOK_OP_SYMLINK || op->kind == NOOK_OP_MKDIR) {
        char buf[PATH_BUF];
        const char *name;
        int parent = open_parent(st, rootfd, index, op->destination, 1, 0, buf, &name);
        if (parent < 0) return -1;
        int r = 0;
        if (op->kind == NOOK_OP_SYMLINK) {
            if (symlinkat(op->source, parent, name) != 0) r = fail(st, NOOK_STEP_OP_SYMLINK, index, errno);
        } else {
            if (mkdirat(parent, name, op->mode) != 0 && errno != EEXIST) {
                r = fail(st, NOOK_STEP_OP_MKDIR, index, errno);
            } else if (op->uid >= 0 || op->gid >= 0) {
                struct stat sb;
                errno = 0;
                if (fstatat(parent, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode)) {
                    r = fail(st, NOOK_STEP_OP_MKDIR, index, errno ? errno : ENOTDIR);
                } else if (fchownat(parent, name, (uid_t)op->uid, (gid_t)op->gid, AT_SYMLINK_NOFOLLOW) != 0) {
                    r = fail(st, NOOK_STEP_OP_CHOWN, index, errno);
                }
            }
        }
        close(parent);
        return r;
    }

    int dest = open_destination(st, rootfd, index, op);
    if (dest == -2) {
        if (scratch[index] >= 0) { close(scratch[index]); scratch[index] = -1; }
        return 0;
    }
    if (dest < 0) return -1;

    if (op->kind == NOOK_OP_SETATTR) {
        /* mount_setattr on a path inside a mount would change the whole
         * mount it lies in; only a mount's own root is accepted. */
        struct statx sx;
        int r = 0;
        if (statx(dest, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) != 0) {
            r = fail(st, NOOK_STEP_OP_ATTR, index, errno);
        } else if (!(sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) || !(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
            r = fail(st, NOOK_STEP_OP_NOT_MOUNT, index, EINVAL);
        } else if (k_mount_setattr(dest, "", K_AT_EMPTY_PATH, op->attr_set, 0) != 0) {
            r = fail(st, NOOK_STEP_OP_ATTR, index, errno);
        }
        close(dest);
        return r;
    }

    int mnt = -1;
    switch (op->kind) {
    case NOOK_OP_MOUNT_FS:
        mnt = new_filesystem(st, index, op->source, op->options, op->option_count, op->attr_set);
        break;
    case NOOK_OP_BIND:
        mnt = scratch[index];
        scratch[index] = -1;
        if (op->attr_set != 0 &&
            k_mount_setattr(mnt, "", K_AT_EMPTY_PATH | ((op->flags & NOOK_OPF_RECURSIVE) ? K_AT_RECURSIVE : 0),
                            op->attr_set, 0) != 0) {
            int err = errno;
            close(mnt);
            mnt = fail(st, NOOK_STEP_OP_ATTR, index, err);
        }
        break;
    case NOOK_OP_REMOUNT:
        mnt = k_open_tree(dest, "", K_OPEN_TREE_CLONE | K_OPEN_TREE_CLOEXEC | K_AT_EMPTY_PATH | K_AT_RECURSIVE);
        if (mnt < 0) {
            mnt = fail(st, NOOK_STEP_OP_SOURCE, index, errno);
        } else if (k_mount_setattr(mnt, "", K_AT_EMPTY_PATH | K_AT_RECURSIVE, op->attr_set, 0) != 0) {
            int err = errno;
            close(mnt);
            mnt = fail(st, NOOK_STEP_OP_ATTR, index, err);
        }
        break;
    case NOOK_OP_MASK: {
        struct stat sb;
        if (fstat(dest, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            static const char *const mask_options[] = { "mode=0555", "size=0" };
            mnt = new_filesystem(st, index, "tmpfs", mask_options, 2,
                                 NOOK_ATTR_RDONLY | NOOK_ATTR_NOSUID | NOOK_ATTR_NODEV | NOOK_ATTR_NOEXEC);
        } else {
            mnt = scratch[index];
            scratch[index] = -1;
        }
        break;
    }
    default:
        mnt = fail(st, NOOK_STEP_OP_RESOLVE, index, EINVAL);
    }
    if (mnt < 0) { close(dest); return -1; }
    int r = attach(st, index, mnt, dest);
    close(mnt);
    close(dest);
    return r;
}

/* A directory of the caller's mount tree to attach the new root to before
 * pivot_root. The mount namespace is private, so this is never seen by the
 * host, and the old root is detached right after. */
static const char *candidate_dir(int skip) {
    static const char *const candidates[] = { "/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt", NULL };
    for (int i = 0; candidates[i] != NULL; i++) {
        struct stat sb;
        if (lstat(candidates[i], &sb) == 0 && S_ISDIR(sb.st_mode) && skip-- == 0) return candidates[i];
    }
    return NULL;
}

static const char *staging_dir(void) { return candidate_dir(0); }
const char *nook_staging_dir(void) { return candidate_dir(0); }
const char *nook_scratch_dir(void) { return candidate_dir(1); }

/* Gives the in-memory upper the lowest layer's owner. A root owned by an id
 * outside the mapping (shown as nobody, which cannot be given) keeps the
 * sandbox's root as owner instead of failing; nook has warned about it. */
static int chown_upper(int dir, const struct stat *lower) {
    if (fchownat(dir, "upper", lower->st_uid, lower->st_gid, AT_SYMLINK_NOFOLLOW) == 0) return 0;
    return errno == EINVAL ? 0 : -1;
}

static void fd_path(char *buf, int fd, const char *suffix);

/* Gives a persistent upper made for this run the lowest layer's owner, as
 * the in-memory one gets it: overlayfs shows the upper root's owner and mode
 * as the root's. The host made it with the mode already, but cannot give it
 * a subordinate id; chown clears nothing on a directory, the mode is set
 * again all the same. */
static int adopt_owner(struct child_state *st, int upper, int lowest) {
    struct stat lower;
    char path[64];
    fd_path(path, upper, NULL);
    if (fstat(lowest, &lower) != 0
        || (fchownat(upper, "", lower.st_uid, lower.st_gid, AT_EMPTY_PATH) != 0 && errno != EINVAL)
        || chmod(path, lower.st_mode & 07777) != 0) {
        report(st->error_fd, NOOK_STEP_OVERLAY_UPPER, 0, errno, 2, NULL, 0);
        return -1;
    }
    return 0;
}

/* The fuse root: an in-memory upper if asked for, then wait for the host to
 * mount fuse-overlayfs on the staging directory. */
static int fuse_root(struct child_state *st, const char *staging) {
    const struct nook_launch_config *cfg = st->cfg;
    if (cfg->upper_dir != NULL && cfg->upper_adopt_owner) {
        uint64_t strict = NOOK_RESOLVE_NO_SYMLINKS | NOOK_RESOLVE_NO_MAGICLINKS;
        int upper = k_openat2(AT_FDCWD, cfg->upper_dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, strict);
        if (upper < 0) return fail(st, NOOK_STEP_OVERLAY_OPEN, -1, errno);
        int lowest = open(cfg->lower_dirs[cfg->lower_count - 1], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (lowest < 0) return fail(st, NOOK_STEP_OVERLAY_OPEN, cfg->lower_count - 1, errno);
        int r = adopt_owner(st, upper, lowest);
        close(lowest);
        close(upper);
        if (r != 0) return -1;
    }
    if (cfg->upper_dir == NULL && !cfg->read_only_overlay) {
        const char *scratch = nook_scratch_dir();
        int mnt = scratch ? new_filesystem(st, -1, "tmpfs", cfg->upper_options, cfg->upper_option_count, 0) : -1;
        if (mnt < 0) return scratch ? -1 : fail(st, NOOK_STEP_OVERLAY_UPPER, 0, ENOENT);
        int r = k_move_mount(mnt, "", AT_FDCWD, scratch, K_MOVE_MOUNT_F_EMPTY_PATH);
        close(mnt);
        int dir = r == 0 ? open(scratch, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
        int lowest = dir < 0 ? -1 : open(cfg->lower_dirs[cfg->lower_count - 1], O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat lower;
        r = lowest < 0 ? -1 : fstat(lowest, &lower);
        if (r == 0) r = mkdirat(dir, "upper", lower.st_mode & 07777);
        if (r == 0) r = chown_upper(dir, &lower);
        if (r == 0) r = fchmodat(dir, "upper", lower.st_mode & 07777, 0);
        if (r == 0) r = mkdirat(dir, "work", 0700);
        int err = errno;
        if (lowest >= 0) close(lowest);
        if (dir >= 0) close(dir);
        if (r != 0) {
            report(st->error_fd, NOOK_STEP_OVERLAY_UPPER, 0, err, 1, NULL, 0);
            return -1;
        }
    }
    char msg = 'F';
    if (send(st->sync_fd, &msg, 1, MSG_NOSIGNAL) != 1) return fail(st, NOOK_STEP_OVERLAY, 0, errno);
    ssize_t n;
    do { n = read(st->sync_fd, &msg, 1); } while (n < 0 && errno == EINTR);
    if (n != 1 || msg != 'M') _exit(125); /* the host reports what went wrong */
    (void)staging;
    /* pivot_root re-roots every process of the mount namespace whose root
     * is the old one, fuse-overlayfs included, and it still needs the old
     * root (its /proc/self/fd paths). The sandbox goes on in a copy of the
     * namespace, holding the fuse mount, and pivots there alone. */
    if (unshare(CLONE_NEWNS) != 0) return fail(st, NOOK_STEP_OVERLAY, 1, errno);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return fail(st, NOOK_STEP_DUMPABLE, 0, errno);
    return 0;
}

/* The caller's top-level entries, cloned before the new root is attached
 * (the staging directory may be one of them). */
#define MAX_TOP 1024
struct top_entry {
    char name[256];
    unsigned char type; /* DT_DIR, DT_REG, DT_LNK */
    int tree;           /* open_tree clone for DT_DIR and DT_REG, -1 otherwise */
    const char *target; /* DT_LNK: into target_pool */
};
/* Symlink targets of all entries, packed (most entries have none). */
static char target_pool[256 * 1024];
static size_t target_used;

static int skipped(const struct nook_launch_config *cfg, const char *name) {
    for (int i = 0; i < cfg->root_skip_count; i++) {
        if (strcmp(cfg->root_skip[i], name) == 0) return 1;
    }
    return 0;
}

/* Lists "/" with raw getdents64 (no allocation) and clones each entry. */
static int clone_top_level(struct child_state *st, struct top_entry *entries, int *count) {
    const struct nook_launch_config *cfg = st->cfg;
    int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return fail(st, NOOK_STEP_ROOT_LIST, 0, errno);
    char buf[8192];
    *count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (n < 0) { int err = errno; close(dir); return fail(st, NOOK_STEP_ROOT_LIST, 0, err); }
        if (n == 0) break;
        for (long off = 0; off < n;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d =
                (void *)(buf + off);
            off += d->reclen;
            if (strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0) continue;
            if (*count >= MAX_TOP) { close(dir); return fail(st, NOOK_STEP_ROOT_LIST, 0, E2BIG); }
            struct top_entry *e = &entries[*count];
            size_t len = str_len(d->name);
            if (len >= sizeof e->name) continue;
            memcpy(e->name, d->name, len + 1);
            e->tree = -1;
            struct stat sb;
            if (fstatat(dir, e->name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue;
            if (S_ISLNK(sb.st_mode)) {
                size_t room = sizeof target_pool - target_used;
                if (room < 2) { close(dir); return fail(st, NOOK_STEP_ROOT_LIST, 0, E2BIG); }
                char *t = target_pool + target_used;
                ssize_t n = readlinkat(dir, e->name, t, room - 1);
                if (n < 0) continue;
                if ((size_t)n >= room - 1) { close(dir); return fail(st, NOOK_STEP_ROOT_LIST, 0, E2BIG); }
                t[n] = 0;
                target_used += (size_t)n + 1;
                e->target = t;
                e->type = DT_LNK;
            } else if (S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode)) {
                e->type = S_ISDIR(sb.st_mode) ? DT_DIR : DT_REG;
                if (!skipped(cfg, e->name)) {
                    e->tree = k_open_tree(dir, e->name, K_OPEN_TREE_CLONE | K_OPEN_TREE_CLOEXEC | K_AT_RECURSIVE);
                    if (e->tree < 0) {
                        /* An entry this user may not see (a root-only mount
                         * point) stays an empty placeholder. */
                        if (errno != EACCES && errno != EPERM) {
                            int err = errno;
                            close(dir);
                            report(st->error_fd, NOOK_STEP_ROOT_ENTRY, 0, err, *count, e->name, len);
                            return -1;
                        }
                    } else if (cfg->root_attr != 0 &&
                               k_mount_setattr(e->tree, "", K_AT_EMPTY_PATH | K_AT_RECURSIVE, cfg->root_attr, 0) != 0) {
                        int err = errno;
                        close(dir);
                        report(st->error_fd, NOOK_STEP_ROOT_ENTRY, 0, err, *count, e->name, len);
                        return -1;
                    }
                }
            } else {
                continue;
            }
            (*count)++;
        }
    }
    close(dir);
    return 0;
}

/* Places the cloned entries into the new root. */
static int place_top_level(struct child_state *st, int rootfd, struct top_entry *entries, int count) {
    for (int i = 0; i < count; i++) {
        struct top_entry *e = &entries[i];
        int r = 0;
        if (e->type == DT_LNK) {
            r = symlinkat(e->target, rootfd, e->name);
        } else if (e->type == DT_DIR) {
            r = mkdirat(rootfd, e->name, 0755);
        } else {
            int fd = openat(rootfd, e->name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            if (fd >= 0) close(fd); else r = -1;
        }
        if (r == 0 && e->tree >= 0) {
            r = k_move_mount(e->tree, "", rootfd, e->name, K_MOVE_MOUNT_F_EMPTY_PATH);
            close(e->tree);
            e->tree = -1;
        }
        if (r != 0) {
            report(st->error_fd, NOOK_STEP_ROOT_ENTRY, 0, errno, i, e->name, str_len(e->name));
            return -1;
        }
    }
    return 0;
}

/* The half of assembling the root that needs no id map: it runs while the
 * host is still writing the maps (newuidmap and newgidmap are setuid
 * programs, the slowest step of a start), so the two overlap. Everything
 * taken from the host is opened here, before the new root is attached
 * anywhere: the staging directory hides what lies below it, and a bind
 * source may well be there. */
static int open_layers(struct child_state *st);
static struct top_entry entries[MAX_TOP]; /* this process's own copy; no allocation */
static int entry_count;
static int root_tree = -1;

int prepare_root(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    if (syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return fail(st, NOOK_STEP_MAKE_PRIVATE, 0, errno);
    if (cfg->root_kind == NOOK_ROOT_HOST) {
        if (clone_top_level(st, entries, &entry_count) != 0) return -1;
    } else if (cfg->root_kind == NOOK_ROOT_OVERLAY) {
        if (open_layers(st) != 0) return -1;
    } else {
        root_tree = k_open_tree(AT_FDCWD, cfg->root_path, K_OPEN_TREE_CLONE | K_OPEN_TREE_CLOEXEC | K_AT_RECURSIVE);
        if (root_tree < 0) return fail(st, NOOK_STEP_ROOT_CLONE, 0, errno);
        if (cfg->root_attr != 0 &&
            k_mount_setattr(root_tree, "", K_AT_EMPTY_PATH | K_AT_RECURSIVE, cfg->root_attr, 0) != 0)
            return fail(st, NOOK_STEP_ROOT_ATTR, 0, errno);
    }
    for (int i = 0; i < cfg->op_count; i++) {
        const struct nook_op *op = &cfg->ops[i];
        cfg->scratch[i] = -1;
        const char *host_path = NULL;
        unsigned flags = K_OPEN_TREE_CLONE | K_OPEN_TREE_CLOEXEC;
        if (op->kind == NOOK_OP_BIND) {
            host_path = op->source;
            if (op->flags & NOOK_OPF_RECURSIVE) flags |= K_AT_RECURSIVE;
        } else if (op->kind == NOOK_OP_MASK) {
            host_path = "/dev/null";
        }
        if (host_path == NULL) continue;
        cfg->scratch[i] = k_open_tree(AT_FDCWD, host_path, flags);
        if (cfg->scratch[i] < 0) return fail(st, NOOK_STEP_OP_SOURCE, i, errno);
    }
    return 0;
}

/* "/proc/self/fd/N[/suffix]" into buf, without snprintf (not async-signal-safe). */
static void fd_path(char *buf, int fd, const char *suffix) {
    static const char prefix[] = "/proc/self/fd/";
    memcpy(buf, prefix, sizeof prefix - 1);
    char digits[12];
    int n = 0;
    do { digits[n++] = (char)('0' + fd % 10); fd /= 10; } while (fd > 0);
    char *p = buf + sizeof prefix - 1;
    while (n > 0) *p++ = digits[--n];
    size_t len = suffix ? str_len(suffix) : 0;
    memcpy(p, suffix, len);
    p[len] = 0;
}

#define MAX_LOWER 500 /* overlayfs's own limit on stacked layers */
static int lower_fds[MAX_LOWER];
static int upper_fd = -1, work_fd = -1;

/* Opens the overlay's directories in the child's own mount namespace. */
static int open_layers(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    if (cfg->lower_count < 1 || cfg->lower_count > MAX_LOWER) return fail(st, NOOK_STEP_OVERLAY_OPEN, 0, E2BIG);
    for (int i = 0; i < cfg->lower_count; i++) {
        lower_fds[i] = open(cfg->lower_dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (lower_fds[i] < 0) return fail(st, NOOK_STEP_OVERLAY_OPEN, i, errno);
    }
    if (cfg->upper_dir != NULL) {
        uint64_t strict = NOOK_RESOLVE_NO_SYMLINKS | NOOK_RESOLVE_NO_MAGICLINKS;
        upper_fd = k_openat2(AT_FDCWD, cfg->upper_dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, strict);
        if (upper_fd < 0) return fail(st, NOOK_STEP_OVERLAY_OPEN, -1, errno);
        work_fd = k_openat2(AT_FDCWD, cfg->work_dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, strict);
        if (work_fd < 0) return fail(st, NOOK_STEP_OVERLAY_OPEN, -2, errno);
    }
    return 0;
}

/* Mounts the overlay that becomes the root; returns the detached mount. */
/* Before Linux 6.8 overlayfs has no "lowerdir+", and fsconfig(2) takes
 * no string longer than 255 bytes, so a stack of layers does not fit in
 * one "lowerdir" value either. mount(2) takes the options as one page:
 * the layers as one "lowerdir", top first, joined by ':' (fd paths hold
 * no ':' or ','), mounted straight on the staging directory. About 200
 * layers fit; more is E2BIG, and nook's automatic choice falls back to
 * fuse-overlayfs. Returns OVERLAY_AT_STAGING, or -1 after reporting. */
#define OVERLAY_AT_STAGING (-2)
static int legacy_overlay(struct child_state *st, const char *staging, const int *lower_fds, const char *upper,
                          const char *work) {
    const struct nook_launch_config *cfg = st->cfg;
    static char data[4000];
    size_t used = 0;
    char path[64];
    #define APPEND(text) do { size_t n_ = str_len(text); \
        if (used + n_ + 1 > sizeof data) goto too_long; memcpy(data + used, text, n_); used += n_; } while (0)
    APPEND("lowerdir=");
    for (int i = 0; i < cfg->lower_count; i++) {
        fd_path(path, lower_fds[i], NULL);
        if (i > 0) APPEND(":");
        APPEND(path);
    }
    if (upper[0]) { APPEND(",upperdir="); APPEND(upper); APPEND(",workdir="); APPEND(work); }
    APPEND(",userxattr");
    #undef APPEND
    data[used] = 0;
    if (mount("overlay", staging, "overlay", 0, data) != 0) {
        static const char why[] = "mount(2) of overlay (before Linux 6.8)";
        report(st->error_fd, NOOK_STEP_OVERLAY, 0, errno, -1, why, sizeof why - 1);
        return -1;
    }
    uint64_t attr = cfg->root_attr & ~(uint64_t)NOOK_ATTR_RDONLY;
    if (attr != 0 && k_mount_setattr(AT_FDCWD, staging, 0, attr, 0) != 0)
        return fail(st, NOOK_STEP_ROOT_ATTR, 0, errno);
    return OVERLAY_AT_STAGING;
too_long:;
    static const char why[] = "too many layers for one overlay mount before Linux 6.8";
    report(st->error_fd, NOOK_STEP_OVERLAY, 0, E2BIG, -1, why, sizeof why - 1);
    return -1;
}

static int overlay_root(struct child_state *st, const char *staging) {
    const struct nook_launch_config *cfg = st->cfg;
    char upper[64], work[64];
    if (cfg->read_only_overlay) {
        upper[0] = work[0] = 0;
    } else if (upper_fd < 0) {
        /* A tmpfs attached at the staging directory holds upper and work;
         * the root is attached on top of it later, and the overlay keeps
         * its own private reference to it. */
        int scratch = new_filesystem(st, -1, "tmpfs", cfg->upper_options, cfg->upper_option_count, 0);
        if (scratch < 0) return -1;
        if (k_move_mount(scratch, "", AT_FDCWD, staging, K_MOVE_MOUNT_F_EMPTY_PATH) != 0) {
            int err = errno;
            close(scratch);
            report(st->error_fd, NOOK_STEP_OVERLAY_UPPER, 0, err, 0, NULL, 0);
            return -1;
        }
        close(scratch);
        int dir = open(staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat lower;
        int r = dir < 0 ? -1 : fstat(lower_fds[cfg->lower_count - 1], &lower);
        /* The merged root takes the upper root's owner and mode: copy the
         * lowest layer's, or the image's / would belong to whoever made the tmpfs. */
        if (r == 0) r = mkdirat(dir, "upper", lower.st_mode & 07777);
        if (r == 0) r = chown_upper(dir, &lower);
        if (r == 0) r = fchmodat(dir, "upper", lower.st_mode & 07777, 0);
        if (r == 0) r = mkdirat(dir, "work", 0700);
        if (r != 0) {
            int err = errno;
            if (dir >= 0) close(dir);
            report(st->error_fd, NOOK_STEP_OVERLAY_UPPER, 0, err, 1, NULL, 0);
            return -1;
        }
        fd_path(upper, dir, "/upper");
        fd_path(work, dir, "/work");
        /* dir stays open for the fsconfig calls below; the process execs or exits soon. */
    } else {
        if (cfg->upper_adopt_owner && adopt_owner(st, upper_fd, lower_fds[cfg->lower_count - 1]) != 0) return -1;
        fd_path(upper, upper_fd, NULL);
        fd_path(work, work_fd, NULL);
    }

    int fs = k_fsopen("overlay", K_FSOPEN_CLOEXEC);
    if (fs < 0) return fail(st, NOOK_STEP_OVERLAY, -1, errno);
    char lower[64];
    int r = 0, detail = -1;
    const char *key = "?";
    if (cfg->overlay_lowerdir_append) {
        for (int i = 0; i < cfg->lower_count && r == 0; i++) {
            fd_path(lower, lower_fds[i], NULL);
            key = "lowerdir+";
            detail = i;
            r = k_fsconfig(fs, K_FSCONFIG_SET_STRING, "lowerdir+", lower, 0);
        }
    } else {
        close(fs);
        return legacy_overlay(st, staging, lower_fds, upper, work);
    }
    detail = -1;
    if (r == 0 && upper[0]) { key = "upperdir"; r = k_fsconfig(fs, K_FSCONFIG_SET_STRING, "upperdir", upper, 0); }
    if (r == 0 && work[0]) { key = "workdir"; r = k_fsconfig(fs, K_FSCONFIG_SET_STRING, "workdir", work, 0); }
    if (r == 0) { key = "userxattr"; r = k_fsconfig(fs, K_FSCONFIG_SET_FLAG, "userxattr", NULL, 0); }
    if (r == 0) { key = "create"; r = k_fsconfig(fs, K_FSCONFIG_CMD_CREATE, NULL, NULL, 0); }
    if (r != 0) {
        int err = errno;
        char log[240];
        ssize_t n = read(fs, log, sizeof log);
        if (n <= 0) { n = (ssize_t)str_len(key); memcpy(log, key, (size_t)n); }
        report(st->error_fd, NOOK_STEP_OVERLAY, 0, err, detail, log, (size_t)n);
        close(fs);
        return -1;
    }
    int mnt = k_fsmount(fs, K_FSMOUNT_CLOEXEC, 0);
    int err = errno;
    close(fs);
    if (mnt < 0) return fail(st, NOOK_STEP_OVERLAY, 0, err);
    /* Read-only comes last (setup_root), once the mount points exist. */
    uint64_t attr = cfg->root_attr & ~(uint64_t)NOOK_ATTR_RDONLY;
    if (attr != 0 && k_mount_setattr(mnt, "", K_AT_EMPTY_PATH, attr, 0) != 0)
        return fail(st, NOOK_STEP_ROOT_ATTR, 0, errno);
    return mnt;
}

/* The half that creates files and filesystems owned by mapped ids. */
int setup_root(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    umask(0);
    int tree = root_tree;
    const char *staging = staging_dir();
    if (staging == NULL) return fail(st, NOOK_STEP_ROOT_ATTACH, 0, ENOENT);
    if (cfg->root_kind == NOOK_ROOT_HOST) {
        tree = new_filesystem(st, -1, "tmpfs", cfg->root_options, cfg->root_option_count, 0);
        if (tree < 0) return -1;
    } else if (cfg->root_kind == NOOK_ROOT_OVERLAY) {
        tree = overlay_root(st, staging);
        if (tree == OVERLAY_AT_STAGING) tree = -1; /* mounted on the staging directory already */
        else if (tree < 0) return -1;
    } else if (cfg->root_kind == NOOK_ROOT_FUSE) {
        if (fuse_root(st, staging) != 0) return -1;
        tree = -1; /* fuse-overlayfs is mounted on the staging directory already */
    }

    if (tree >= 0) {
        if (k_move_mount(tree, "", AT_FDCWD, staging, K_MOVE_MOUNT_F_EMPTY_PATH) != 0)
            return fail(st, NOOK_STEP_ROOT_ATTACH, 0, errno);
        close(tree);
    }
    int rootfd = open(staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) return fail(st, NOOK_STEP_ROOT_ATTACH, 0, errno);
    if (cfg->root_kind == NOOK_ROOT_HOST && place_top_level(st, rootfd, entries, entry_count) != 0) return -1;

    for (int i = 0; i < cfg->op_count; i++) {
        if (apply_op(st, rootfd, i) != 0) return -1;
    }
    /* The host's skeleton and an overlay were writable while mount points
     * were made; a directory's bind was read-only from the start. */
    if (cfg->root_kind != NOOK_ROOT_DIRECTORY && (cfg->root_attr & NOOK_ATTR_RDONLY) &&
        k_mount_setattr(rootfd, "", K_AT_EMPTY_PATH, cfg->root_attr, 0) != 0)
        return fail(st, NOOK_STEP_ROOT_READONLY, 0, errno);

    /* pivot_root(".", "."): the old root ends up stacked on the new one and
     * is detached at once; no directory for it is needed in the new root. */
    if (fchdir(rootfd) != 0) return fail(st, NOOK_STEP_PIVOT_ROOT, 0, errno);
    close(rootfd);
    if (k_pivot_root(".", ".") != 0) return fail(st, NOOK_STEP_PIVOT_ROOT, 0, errno);
    if (umount2(".", MNT_DETACH) != 0) return fail(st, NOOK_STEP_PIVOT_ROOT, 1, errno);
    if (chdir("/") != 0) return fail(st, NOOK_STEP_PIVOT_ROOT, 2, errno);
    return 0;
}
