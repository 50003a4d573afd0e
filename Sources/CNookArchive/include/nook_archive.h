/*
 * Reading tar layers with libarchive (Debian's libarchive13), for nook's
 * image store. Swift cannot use libarchive's callback-chained readers
 * without C: a layer is read through two archives at once, an outer one that
 * only decompresses (gzip, zstd, xz, bzip2 or none) and an inner one that
 * parses the tar stream the outer one produces. On the way the stream takes
 * the SHA-256 and size of the bytes as stored (the blob digest) and of the
 * decompressed tar (the OCI diffID), and can copy the stored bytes to a
 * second descriptor, so one pass verifies, copies and scans a layer.
 *
 * libarchive is opened with dlopen on first use instead of being linked: it
 * pulls in libxml2 and ICU, which would add about 2 ms to the start of every
 * nook command, image or not. Loading also sets LC_CTYPE to C.UTF-8 when the
 * process locale is not UTF-8, so that pax UTF-8 names read back unchanged.
 *
 * Entries never reach the file system here: creating files is nook's own
 * descriptor-relative code, not libarchive's path-based archive_write_disk.
 *
 * Functions return 0 (or a count) on success and -errno on failure; -ELIBACC
 * when libarchive or libcrypto cannot be loaded. After a failure,
 * nook_stream_error says what libarchive reported.
 */
#ifndef NOOK_ARCHIVE_H
#define NOOK_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nook_stream nook_stream;

/* One tar entry. Strings stay valid until the next nook_stream_next. */
struct nook_entry {
    const char *path;
    /* Target of a hard link entry, else NULL. */
    const char *hardlink;
    /* Target of a symbolic link entry, else NULL. */
    const char *symlink;
    /* File type and permission bits, as st_mode. */
    uint32_t mode;
    int64_t uid;
    int64_t gid;
    /* Bytes of data (the logical size of a sparse file). */
    int64_t size;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    int64_t atime_sec;
    int64_t atime_nsec;
    int has_atime;
    uint32_t rdev_major;
    uint32_t rdev_minor;
    /* Extended attributes (SCHILY.xattr / LIBARCHIVE.xattr records). */
    int xattr_count;
    /* Number of POSIX.1e ACL entries, access and default together. */
    int acl_count;
};

/* Totals once the stream is finished. */
struct nook_stream_totals {
    uint64_t stored_bytes;
    uint8_t stored_sha256[32];
    uint64_t tar_bytes;
    uint8_t tar_sha256[32];
};

/* Opens a tar stream on fd (read to EOF, never seeked), copying the bytes as
 * stored to copy_fd when it is >= 0. Reading fails (and
 * nook_stream_over_limit becomes 1) once the decompressed stream passes
 * max_tar_bytes. */
int nook_stream_open(int fd, int copy_fd, uint64_t max_tar_bytes, nook_stream **out);

/* The next entry: 1 with *entry filled, 0 at the end of the archive, or a
 * negative errno. */
int nook_stream_next(nook_stream *s, struct nook_entry *entry);

/* The next block of the current entry's data: 1 with buf, length and offset
 * (blocks of a sparse file skip the holes), 0 at the end, or -errno. */
int nook_stream_data(nook_stream *s, const void **buf, size_t *length, int64_t *offset);

/* The current entry's extended attributes: call with index 0..xattr_count-1
 * in order. 0, or -ENOENT past the end. */
int nook_stream_xattr(nook_stream *s, int index, const char **name, const void **value, size_t *size);

/* The current entry's POSIX ACL of one kind (0 access, 1 default) in the
 * kernel's system.posix_acl_* xattr format, written to buf. Returns its
 * length, 0 when there is none, -ERANGE when buf is too small. */
int nook_stream_acl(nook_stream *s, int default_acl, uint8_t *buf, size_t capacity);

/* Reads what is left of the stream (padding after the end of the tar, data
 * after the end of the compressed stream) so that the totals cover every
 * byte, and returns them. */
int nook_stream_finish(nook_stream *s, struct nook_stream_totals *totals);

/* 1 when reading stopped because the stream passed max_tar_bytes. */
int nook_stream_over_limit(nook_stream *s);

/* The decompressed bytes read so far. */
uint64_t nook_stream_tar_bytes(nook_stream *s);

/* What went wrong last, or "". */
const char *nook_stream_error(nook_stream *s);

void nook_stream_close(nook_stream *s);

#ifdef __cplusplus
}
#endif

#endif
