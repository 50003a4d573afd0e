/* Tar layers through a lazily loaded libarchive; see include/nook_archive.h. */
#define _GNU_SOURCE
#include "nook_archive.h"
#include "nook_digest.h"

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every libarchive function used, loaded by name. */
#define LA_FUNCTIONS(X) \
    X(archive_read_new) X(archive_read_free) X(archive_read_support_filter_gzip) \
    X(archive_read_support_filter_zstd) X(archive_read_support_filter_xz) X(archive_read_support_filter_bzip2) \
    X(archive_read_support_format_raw) X(archive_read_support_format_tar) X(archive_read_open) \
    X(archive_read_next_header) X(archive_read_data) X(archive_read_data_block) X(archive_error_string) \
    X(archive_errno) X(archive_set_error) X(archive_entry_pathname) X(archive_entry_pathname_utf8) \
    X(archive_entry_hardlink) X(archive_entry_symlink) X(archive_entry_mode) X(archive_entry_uid) \
    X(archive_entry_gid) X(archive_entry_size) X(archive_entry_mtime) X(archive_entry_mtime_nsec) \
    X(archive_entry_atime) X(archive_entry_atime_nsec) X(archive_entry_atime_is_set) \
    X(archive_entry_rdevmajor) X(archive_entry_rdevminor) X(archive_entry_xattr_count) \
    X(archive_entry_xattr_reset) X(archive_entry_xattr_next) X(archive_entry_acl_reset) \
    X(archive_entry_acl_next) X(archive_entry_acl_count)

static struct {
#define X(name) __typeof__(&name) name;
    LA_FUNCTIONS(X)
#undef X
    int loaded;
} la;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    static const char *names[] = { "libarchive.so.13", "libarchive.so", NULL };
    void *lib = NULL;
    for (int i = 0; names[i] != NULL && lib == NULL; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return;
    int ok = 1;
#define X(name) la.name = (__typeof__(&name))dlsym(lib, #name); ok = ok && la.name != NULL;
    LA_FUNCTIONS(X)
#undef X
    la.loaded = ok;
    /* libarchive converts pax UTF-8 names to the locale's charset; in the
     * C locale non-ASCII names would fail to convert. */
    const char *codeset = nl_langinfo(CODESET);
    if (codeset == NULL || strcmp(codeset, "UTF-8") != 0) setlocale(LC_CTYPE, "C.UTF-8");
}

enum { stored_chunk = 1 << 20, tar_chunk = 1 << 18 };

struct nook_stream {
    int fd;
    int copy_fd;
    struct archive *outer;
    struct archive *inner;
    struct archive_entry *entry;
    nook_sha256 *stored_hash;
    nook_sha256 *tar_hash;
    uint64_t stored_bytes;
    uint64_t tar_bytes;
    uint64_t max_tar_bytes;
    int over_limit;
    int io_error;
    int outer_done;
    uint8_t *stored_buf;
    uint8_t *tar_buf;
    char message[512];
};

static void note(nook_stream *s, const char *what, struct archive *a) {
    const char *text = a != NULL ? la.archive_error_string(a) : NULL;
    snprintf(s->message, sizeof s->message, "%s%s%s", what, text ? ": " : "", text ? text : "");
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Bytes as stored: hashed and copied as they are handed to the decompressor. */
static int take_stored(nook_stream *s, const uint8_t *p, size_t n) {
    s->stored_bytes += n;
    int rc = nook_sha256_update(s->stored_hash, p, n);
    if (rc == 0 && s->copy_fd >= 0) rc = write_all(s->copy_fd, p, n);
    return rc;
}

static la_ssize_t outer_read(struct archive *a, void *client, const void **buffer) {
    nook_stream *s = client;
    for (;;) {
        ssize_t n = read(s->fd, s->stored_buf, stored_chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            s->io_error = -errno;
            la.archive_set_error(a, errno, "read");
            return -1;
        }
        int rc = take_stored(s, s->stored_buf, (size_t)n);
        if (rc != 0) {
            s->io_error = rc;
            la.archive_set_error(a, -rc, "copy");
            return -1;
        }
        *buffer = s->stored_buf;
        return n;
    }
}

/* Decompressed bytes: hashed and counted as they are handed to the tar reader. */
static int take_tar(nook_stream *s, const uint8_t *p, size_t n) {
    s->tar_bytes += n;
    if (s->tar_bytes > s->max_tar_bytes) {
        s->over_limit = 1;
        return -EFBIG;
    }
    return nook_sha256_update(s->tar_hash, p, n);
}

static la_ssize_t inner_read(struct archive *a, void *client, const void **buffer) {
    nook_stream *s = client;
    if (s->outer_done) return 0;
    la_ssize_t n = la.archive_read_data(s->outer, s->tar_buf, tar_chunk);
    if (n < 0) {
        la.archive_set_error(a, EIO, "%s", la.archive_error_string(s->outer) ? la.archive_error_string(s->outer)
                                                                               : "decompression failed");
        return -1;
    }
    if (n == 0) s->outer_done = 1;
    int rc = take_tar(s, s->tar_buf, (size_t)n);
    if (rc != 0) {
        la.archive_set_error(a, -rc, "the decompressed stream passed its limit");
        return -1;
    }
    *buffer = s->tar_buf;
    return n;
}

int nook_stream_open(int fd, int copy_fd, uint64_t max_tar_bytes, nook_stream **out) {
    pthread_once(&once, load);
    if (!la.loaded || nook_digest_load() != 0) return -ELIBACC;
    nook_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return -ENOMEM;
    s->fd = fd;
    s->copy_fd = copy_fd;
    s->max_tar_bytes = max_tar_bytes;
    s->stored_buf = malloc(stored_chunk);
    s->tar_buf = malloc(tar_chunk);
    s->stored_hash = nook_sha256_new();
    s->tar_hash = nook_sha256_new();
    s->outer = la.archive_read_new();
    s->inner = la.archive_read_new();
    *out = s;
    if (!s->stored_buf || !s->tar_buf || !s->stored_hash || !s->tar_hash || !s->outer || !s->inner) return -ENOMEM;

    /* Only decompressors built into libarchive: support_filter_all would also
     * register ones that run external programs (lrzip, lzop, grzip). */
    la.archive_read_support_filter_gzip(s->outer);
    la.archive_read_support_filter_zstd(s->outer);
    la.archive_read_support_filter_xz(s->outer);
    la.archive_read_support_filter_bzip2(s->outer);
    la.archive_read_support_format_raw(s->outer);
    if (la.archive_read_open(s->outer, s, NULL, outer_read, NULL) != ARCHIVE_OK) {
        note(s, "open the stream", s->outer);
        return s->io_error ? s->io_error : -EIO;
    }
    struct archive_entry *raw;
    int r = la.archive_read_next_header(s->outer, &raw);
    if (r == ARCHIVE_EOF) {
        s->outer_done = 1;
    } else if (r != ARCHIVE_OK) {
        note(s, "decompress", s->outer);
        return s->io_error ? s->io_error : -EIO;
    }

    la.archive_read_support_format_tar(s->inner);
    if (la.archive_read_open(s->inner, s, NULL, inner_read, NULL) != ARCHIVE_OK) {
        note(s, "read the tar stream", s->inner);
        if (s->over_limit) return -EFBIG;
        return s->io_error ? s->io_error : -EIO;
    }
    return 0;
}

int nook_stream_next(nook_stream *s, struct nook_entry *e) {
    struct archive_entry *entry;
    int r = la.archive_read_next_header(s->inner, &entry);
    if (r == ARCHIVE_EOF) return 0;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        note(s, "read a tar header", s->inner);
        if (s->over_limit) return -EFBIG;
        return s->io_error ? s->io_error : -EIO;
    }
    s->entry = entry;
    memset(e, 0, sizeof *e);
    e->path = la.archive_entry_pathname(entry);
    if (e->path == NULL) e->path = la.archive_entry_pathname_utf8(entry);
    if (e->path == NULL) {
        snprintf(s->message, sizeof s->message, "an entry's name cannot be read");
        return -EILSEQ;
    }
    e->hardlink = la.archive_entry_hardlink(entry);
    e->symlink = la.archive_entry_symlink(entry);
    e->mode = (uint32_t)la.archive_entry_mode(entry);
    e->uid = la.archive_entry_uid(entry);
    e->gid = la.archive_entry_gid(entry);
    e->size = la.archive_entry_size(entry);
    e->mtime_sec = la.archive_entry_mtime(entry);
    e->mtime_nsec = la.archive_entry_mtime_nsec(entry);
    e->has_atime = la.archive_entry_atime_is_set(entry);
    e->atime_sec = la.archive_entry_atime(entry);
    e->atime_nsec = la.archive_entry_atime_nsec(entry);
    e->rdev_major = (uint32_t)la.archive_entry_rdevmajor(entry);
    e->rdev_minor = (uint32_t)la.archive_entry_rdevminor(entry);
    e->xattr_count = la.archive_entry_xattr_count(entry);
    e->acl_count = la.archive_entry_acl_count(entry, ARCHIVE_ENTRY_ACL_TYPE_POSIX1E);
    return 1;
}

int nook_stream_data(nook_stream *s, const void **buf, size_t *length, int64_t *offset) {
    la_int64_t off = 0;
    int r = la.archive_read_data_block(s->inner, buf, length, &off);
    if (r == ARCHIVE_EOF) return 0;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        note(s, "read an entry's data", s->inner);
        if (s->over_limit) return -EFBIG;
        return s->io_error ? s->io_error : -EIO;
    }
    *offset = off;
    return 1;
}

int nook_stream_xattr(nook_stream *s, int index, const char **name, const void **value, size_t *size) {
    if (index == 0) la.archive_entry_xattr_reset(s->entry);
    return la.archive_entry_xattr_next(s->entry, name, value, size) == ARCHIVE_OK ? 0 : -ENOENT;
}

/* The kernel's POSIX ACL xattr format (include/uapi/linux/posix_acl_xattr.h):
 * a version word, then (tag, permissions, id) entries sorted by tag and id. */
struct acl_item { uint16_t tag; uint16_t perm; uint32_t id; };

static int compare_acl(const void *a, const void *b) {
    const struct acl_item *x = a, *y = b;
    if (x->tag != y->tag) return x->tag < y->tag ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }

int nook_stream_acl(nook_stream *s, int default_acl, uint8_t *buf, size_t capacity) {
    int want = default_acl ? ARCHIVE_ENTRY_ACL_TYPE_DEFAULT : ARCHIVE_ENTRY_ACL_TYPE_ACCESS;
    int count = la.archive_entry_acl_reset(s->entry, want);
    if (count <= 0) return 0;
    struct acl_item *items = calloc((size_t)count + 4, sizeof *items);
    if (items == NULL) return -ENOMEM;
    int n = 0, named = 0, have_mask = 0, have[3] = { 0, 0, 0 };
    uint16_t group_class = 0;
    int type, permset, tag, qual;
    const char *name;
    while (n < count && la.archive_entry_acl_next(s->entry, want, &type, &permset, &tag, &qual, &name) == ARCHIVE_OK) {
        struct acl_item it = { 0, (uint16_t)(permset & 7), 0xffffffffu };
        switch (tag) {
        case ARCHIVE_ENTRY_ACL_USER_OBJ: it.tag = 0x01; have[0] = 1; break;
        case ARCHIVE_ENTRY_ACL_USER: it.tag = 0x02; it.id = (uint32_t)qual; named = 1; group_class |= it.perm; break;
        case ARCHIVE_ENTRY_ACL_GROUP_OBJ: it.tag = 0x04; have[1] = 1; group_class |= it.perm; break;
        case ARCHIVE_ENTRY_ACL_GROUP: it.tag = 0x08; it.id = (uint32_t)qual; named = 1; group_class |= it.perm; break;
        case ARCHIVE_ENTRY_ACL_MASK: it.tag = 0x10; have_mask = 1; break;
        case ARCHIVE_ENTRY_ACL_OTHER: it.tag = 0x20; have[2] = 1; break;
        default: continue;
        }
        items[n++] = it;
    }
    /* An access ACL's base entries live in the mode; add what is missing. */
    uint32_t mode = (uint32_t)la.archive_entry_mode(s->entry);
    if (!have[0]) items[n++] = (struct acl_item){ 0x01, (uint16_t)((mode >> 6) & 7), 0xffffffffu };
    if (!have[1]) items[n++] = (struct acl_item){ 0x04, (uint16_t)((mode >> 3) & 7), 0xffffffffu };
    if (!have[2]) items[n++] = (struct acl_item){ 0x20, (uint16_t)(mode & 7), 0xffffffffu };
    if (named && !have_mask) items[n++] = (struct acl_item){ 0x10, group_class, 0xffffffffu };
    if (!named && !default_acl) {
        free(items);
        return 0;
    }
    qsort(items, (size_t)n, sizeof *items, compare_acl);
    size_t length = 4 + (size_t)n * 8;
    if (length > capacity) {
        free(items);
        return -ERANGE;
    }
    put32(buf, 2);
    for (int i = 0; i < n; i++) {
        put16(buf + 4 + i * 8, items[i].tag);
        put16(buf + 6 + i * 8, items[i].perm);
        put32(buf + 8 + i * 8, items[i].id);
    }
    free(items);
    return (int)length;
}

int nook_stream_finish(nook_stream *s, struct nook_stream_totals *t) {
    /* The rest of the decompressed stream: tar padding after the end marker. */
    while (!s->outer_done) {
        la_ssize_t n = la.archive_read_data(s->outer, s->tar_buf, tar_chunk);
        if (n < 0) {
            note(s, "decompress", s->outer);
            return s->io_error ? s->io_error : -EIO;
        }
        if (n == 0) break;
        int rc = take_tar(s, s->tar_buf, (size_t)n);
        if (rc != 0) {
            snprintf(s->message, sizeof s->message, "the decompressed stream passed its limit");
            return rc;
        }
    }
    s->outer_done = 1;
    /* The rest of the stored bytes: whatever follows the compressed stream. */
    for (;;) {
        ssize_t n = read(s->fd, s->stored_buf, stored_chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) break;
        int rc = take_stored(s, s->stored_buf, (size_t)n);
        if (rc != 0) return rc;
    }
    memset(t, 0, sizeof *t);
    t->stored_bytes = s->stored_bytes;
    t->tar_bytes = s->tar_bytes;
    int rc = nook_sha256_final(s->stored_hash, t->stored_sha256);
    if (rc == 0) rc = nook_sha256_final(s->tar_hash, t->tar_sha256);
    return rc;
}

int nook_stream_over_limit(nook_stream *s) { return s->over_limit; }

uint64_t nook_stream_tar_bytes(nook_stream *s) { return s->tar_bytes; }

const char *nook_stream_error(nook_stream *s) { return s->message; }

void nook_stream_close(nook_stream *s) {
    if (s == NULL) return;
    if (s->inner) la.archive_read_free(s->inner);
    if (s->outer) la.archive_read_free(s->outer);
    nook_sha256_free(s->stored_hash);
    nook_sha256_free(s->tar_hash);
    free(s->stored_buf);
    free(s->tar_buf);
    free(s);
}
