/* SHA-256 through a lazily loaded libcrypto; see include/nook_digest.h. */
#define _GNU_SOURCE
#include "nook_digest.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* The part of libcrypto's EVP interface used here. Its ABI is the same in
 * OpenSSL 1.1 and 3, so the prototypes are spelled out rather than taken from
 * openssl/evp.h (no libssl-dev needed to build). */
static struct {
    void *(*ctx_new)(void);
    void (*ctx_free)(void *);
    const void *(*sha256)(void);
    int (*init)(void *, const void *, void *);
    int (*update)(void *, const void *, size_t);
    int (*final)(void *, unsigned char *, unsigned int *);
    int loaded;
} crypto;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    static const char *names[] = { "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", NULL };
    void *lib = NULL;
    for (int i = 0; names[i] != NULL && lib == NULL; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return;
    crypto.ctx_new = (void *(*)(void))dlsym(lib, "EVP_MD_CTX_new");
    crypto.ctx_free = (void (*)(void *))dlsym(lib, "EVP_MD_CTX_free");
    crypto.sha256 = (const void *(*)(void))dlsym(lib, "EVP_sha256");
    crypto.init = (int (*)(void *, const void *, void *))dlsym(lib, "EVP_DigestInit_ex");
    crypto.update = (int (*)(void *, const void *, size_t))dlsym(lib, "EVP_DigestUpdate");
    crypto.final = (int (*)(void *, unsigned char *, unsigned int *))dlsym(lib, "EVP_DigestFinal_ex");
    crypto.loaded = crypto.ctx_new && crypto.ctx_free && crypto.sha256 && crypto.init && crypto.update
        && crypto.final;
}

int nook_digest_load(void) {
    pthread_once(&once, load);
    return crypto.loaded ? 0 : -ELIBACC;
}

nook_sha256 *nook_sha256_new(void) {
    if (nook_digest_load() != 0) return NULL;
    void *ctx = crypto.ctx_new();
    if (ctx == NULL) return NULL;
    if (crypto.init(ctx, crypto.sha256(), NULL) != 1) {
        crypto.ctx_free(ctx);
        return NULL;
    }
    return (nook_sha256 *)ctx;
}

int nook_sha256_update(nook_sha256 *h, const void *data, size_t length) {
    return crypto.update(h, data, length) == 1 ? 0 : -EIO;
}

int nook_sha256_final(nook_sha256 *h, uint8_t out[32]) {
    unsigned int n = 0;
    return crypto.final(h, out, &n) == 1 && n == 32 ? 0 : -EIO;
}

void nook_sha256_free(nook_sha256 *h) {
    if (h != NULL) crypto.ctx_free(h);
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

int nook_sha256_fd(int fd, int copy_fd, uint64_t max, uint8_t out[32], uint64_t *size) {
    nook_sha256 *h = nook_sha256_new();
    if (h == NULL) return nook_digest_load() != 0 ? -ELIBACC : -ENOMEM;
    enum { chunk = 1 << 20 };
    uint8_t *buf = malloc(chunk);
    if (buf == NULL) {
        nook_sha256_free(h);
        return -ENOMEM;
    }
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { rc = -errno; break; }
        if (n == 0) break;
        total += (uint64_t)n;
        if (total > max) { rc = -EFBIG; break; }
        if ((rc = nook_sha256_update(h, buf, (size_t)n)) != 0) break;
        if (copy_fd >= 0 && (rc = write_all(copy_fd, buf, (size_t)n)) != 0) break;
    }
    if (rc == 0) rc = nook_sha256_final(h, out);
    *size = total;
    free(buf);
    nook_sha256_free(h);
    return rc;
}
