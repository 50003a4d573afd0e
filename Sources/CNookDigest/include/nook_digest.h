/*
 * SHA-256 for nook's image store. Swift's FoundationEssentials has no
 * hashing, and a hand-written SHA-256 compiled without optimisation (debug
 * builds) runs at a few MB/s, far too slow for image layers. OpenSSL's
 * libcrypto, present on every Debian and Ubuntu host, hashes at memory speed
 * with the CPU's SHA extensions.
 *
 * libcrypto is opened with dlopen on first use instead of being linked:
 * loading it at start-up would cost every `nook run` about a millisecond for
 * a library that only image imports use.
 *
 * Every function returns 0 on success and -errno on failure; -ELIBACC when
 * libcrypto cannot be loaded.
 */
#ifndef NOOK_DIGEST_H
#define NOOK_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A running SHA-256. */
typedef struct nook_sha256 nook_sha256;

/* Loads libcrypto if needed; 0 or -ELIBACC. */
int nook_digest_load(void);

/* A new hash (NULL when libcrypto cannot be loaded or memory is short). */
nook_sha256 *nook_sha256_new(void);
int nook_sha256_update(nook_sha256 *h, const void *data, size_t length);
/* Writes the 32-byte digest; the hash can not be updated afterwards. */
int nook_sha256_final(nook_sha256 *h, uint8_t out[32]);
void nook_sha256_free(nook_sha256 *h);

/* Hashes everything readable from fd (to EOF), copying it to copy_fd when
 * that is >= 0. Stops with -EFBIG once more than max bytes were read.
 * *size receives the number of bytes read. */
int nook_sha256_fd(int fd, int copy_fd, uint64_t max, uint8_t out[32], uint64_t *size);

#ifdef __cplusplus
}
#endif

#endif
