/* HTTP requests through a lazily loaded libcurl; see include/nook_curl.h. */
#define _GNU_SOURCE
#include "nook_curl.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CURL_FUNCTIONS(X) \
    X(curl_global_init) X(curl_easy_init) X(curl_easy_cleanup) X(curl_easy_setopt) X(curl_easy_perform) \
    X(curl_easy_getinfo) X(curl_easy_strerror) X(curl_slist_append) X(curl_slist_free_all)

static struct {
#define X(name) __typeof__(&name) name;
    CURL_FUNCTIONS(X)
#undef X
    int loaded;
} cu;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    static const char *names[] = { "libcurl.so.4", "libcurl-gnutls.so.4", "libcurl.so", NULL };
    void *lib = NULL;
    for (int i = 0; names[i] != NULL && lib == NULL; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) return;
    int ok = 1;
#define X(name) cu.name = (__typeof__(&name))dlsym(lib, #name); ok = ok && cu.name != NULL;
    CURL_FUNCTIONS(X)
#undef X
    /* Not thread-safe in older libcurls: done once, before any transfer. */
    cu.loaded = ok && cu.curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

int nook_curl_load(void) {
    pthread_once(&once, load);
    return cu.loaded ? 0 : -ELIBACC;
}

struct buffer {
    uint8_t *data;
    size_t length, capacity;
};

static int append(struct buffer *b, const void *p, size_t n) {
    if (b->length + n + 1 > b->capacity) {
        size_t cap = b->capacity ? b->capacity : 4096;
        while (cap < b->length + n + 1) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL) return -ENOMEM;
        b->data = d;
        b->capacity = cap;
    }
    memcpy(b->data + b->length, p, n);
    b->length += n;
    b->data[b->length] = 0;
    return 0;
}

struct transfer {
    const struct nook_http_request *request;
    CURL *curl;
    struct buffer headers, body;
    uint64_t received, written;
    long status;
    int failure; /* -errno set by a callback */
    /* upload */
    size_t sent;
};

static size_t on_header(char *p, size_t size, size_t n, void *user) {
    struct transfer *t = user;
    size_t len = size * n;
    /* A new status line starts a new block (100 Continue, then the answer). */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) t->headers.length = 0;
    if (t->headers.length + len > 256 * 1024) {
        t->failure = -E2BIG;
        return 0;
    }
    return append(&t->headers, p, len) == 0 ? len : 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    struct transfer *t = user;
    const struct nook_http_request *r = t->request;
    size_t len = size * n;
    if (t->status == 0) cu.curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->status);
    t->received += len;
    if (t->received > r->max_body) {
        t->failure = -EFBIG;
        return 0;
    }
    if (r->out_fd >= 0 && t->status >= 200 && t->status < 300) {
        if (t->received == len && r->restart_on_full && t->status == 200) {
            if (ftruncate(r->out_fd, 0) != 0 || lseek(r->out_fd, 0, SEEK_SET) != 0) {
                t->failure = -errno;
                return 0;
            }
        }
        size_t done = 0;
        while (done < len) {
            ssize_t w = write(r->out_fd, p + done, len - done);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                t->failure = -errno;
                return 0;
            }
            done += (size_t)w;
        }
        t->written += len;
        if (r->progress != NULL) *r->progress = t->written;
        return len;
    }
    /* Error bodies are kept short: they are read for a message only. */
    if (r->out_fd >= 0 && t->body.length > 64 * 1024) return len;
    return append(&t->body, p, len) == 0 ? len : 0;
}

static size_t on_read(char *p, size_t size, size_t n, void *user) {
    struct transfer *t = user;
    const struct nook_http_request *r = t->request;
    size_t want = size * n;
    if (r->body_fd < 0) {
        size_t left = r->body_size - t->sent;
        if (want > left) want = left;
        if (want > 0) memcpy(p, (const uint8_t *)r->body + t->sent, want);
        t->sent += want;
        return want;
    }
    uint64_t left = r->body_length - t->sent;
    if (want > left) want = (size_t)left;
    if (want == 0) return 0;
    ssize_t got;
    do got = pread(r->body_fd, p, want, (off_t)(r->body_offset + t->sent));
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        t->failure = got < 0 ? -errno : -EIO;
        return CURL_READFUNC_ABORT;
    }
    t->sent += (size_t)got;
    if (r->progress != NULL) *r->progress = t->sent;
    return (size_t)got;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    struct transfer *t = user;
    if (t->request->cancel != NULL && *t->request->cancel) {
        t->failure = -ECANCELED;
        return 1;
    }
    return 0;
}

int nook_http_perform(const struct nook_http_request *r, struct nook_http_response *out) {
    memset(out, 0, sizeof *out);
    if (nook_curl_load() != 0) return -ELIBACC;
    CURL *c = cu.curl_easy_init();
    if (c == NULL) return -ENOMEM;
    struct transfer t = { .request = r, .curl = c };
    char detail[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    for (size_t i = 0; i < r->header_count; i++) headers = cu.curl_slist_append(headers, r->headers[i]);
    /* No "Expect: 100-continue" round trip before uploads. */
    headers = cu.curl_slist_append(headers, "Expect:");

    cu.curl_easy_setopt(c, CURLOPT_URL, r->url);
    cu.curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu.curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    cu.curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    cu.curl_easy_setopt(c, CURLOPT_USERAGENT, "nook");
    /* The registry's own compression of the body (not the layers') would
     * change what is hashed; ask for none. */
    cu.curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL);
    cu.curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    cu.curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    cu.curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    cu.curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    cu.curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->connect_timeout > 0 ? r->connect_timeout : 30L);
    cu.curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    cu.curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->stall_timeout > 0 ? r->stall_timeout : 60L);
    cu.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
    if (r->ca_file != NULL) cu.curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
    if (r->skip_tls_verify) {
        cu.curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        cu.curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    const char *m = r->method;
    if (strcmp(m, "HEAD") == 0) {
        cu.curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") != 0) {
        uint64_t length = r->body_fd >= 0 ? r->body_length : r->body_size;
        cu.curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        cu.curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
        cu.curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        cu.curl_easy_setopt(c, CURLOPT_READDATA, &t);
        cu.curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
    }

    CURLcode rc = cu.curl_easy_perform(c);
    long status = 0;
    cu.curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    out->status = status;
    out->headers = (char *)t.headers.data;
    out->headers_length = t.headers.length;
    out->body = t.body.data;
    out->body_length = t.body.length;
    out->written = t.written;
    out->curl_code = (int)rc;
    int result = 0;
    if (rc != CURLE_OK) {
        result = t.failure != 0 ? t.failure : -EIO;
        snprintf(out->error, sizeof out->error, "%s", detail[0] ? detail : cu.curl_easy_strerror(rc));
    }
    cu.curl_slist_free_all(headers);
    cu.curl_easy_cleanup(c);
    return result;
}

void nook_http_response_free(struct nook_http_response *r) {
    free(r->headers);
    free(r->body);
    r->headers = NULL;
    r->body = NULL;
}
