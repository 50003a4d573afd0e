/*
 * HTTP for nook's registry client, through libcurl (Debian's libcurl4).
 * Swift on Linux has no HTTP client without Foundation's URLSession, which
 * pulls in FoundationNetworking (and libcurl underneath it anyway) and
 * gives no control over redirects, ranges or TLS trust per request. One
 * request here is one blocking call on the calling thread: nook runs
 * several on threads of its own for parallel downloads.
 *
 * libcurl is opened with dlopen on first use instead of being linked, so
 * that `nook run` and every command without a registry do not pay for
 * loading it and the TLS libraries behind it.
 *
 * Redirects are not followed here: the Swift side follows them itself, so it
 * can drop the registry's Authorization header when the redirect leads to
 * another host (blob storage), and refuse schemes other than http/https.
 *
 * Every function returns 0 on success and -errno on failure; -ELIBACC when
 * libcurl cannot be loaded.
 */
#ifndef NOOK_CURL_H
#define NOOK_CURL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nook_http_request {
    const char *method;   /* GET, HEAD, PUT, POST, PATCH, DELETE */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t header_count;
    /* PEM file of the certificate authorities to trust instead of the
     * system's, or NULL. */
    const char *ca_file;
    /* Accept any certificate: only for registries the user listed as
     * insecure. */
    int skip_tls_verify;
    /* The request body: `body` (memory) when body_fd < 0, else body_length
     * bytes of body_fd from body_offset. No body for GET and HEAD. */
    const void *body;
    size_t body_size;
    int body_fd;
    uint64_t body_offset;
    uint64_t body_length;
    /* The response body goes to out_fd (appended at its current offset)
     * when out_fd >= 0 and the status is 2xx, else into memory. More than
     * max_body bytes ends the transfer with -EFBIG. */
    int out_fd;
    uint64_t max_body;
    /* With a Range request: when the answer is 200 (the whole blob, not the
     * range), empty out_fd first and write from its start. */
    int restart_on_full;
    /* Set to nonzero by another thread to abort the transfer (-ECANCELED). */
    volatile int *cancel;
    /* Bytes written to out_fd so far, updated during the transfer (for
     * progress), may be NULL. */
    volatile uint64_t *progress;
    /* Seconds: to connect; and without a single byte received before the
     * transfer is given up as stalled. */
    long connect_timeout;
    long stall_timeout;
};

struct nook_http_response {
    long status;
    /* The header block of the final response (after 100 Continue), NUL
     * terminated; malloc'ed. */
    char *headers;
    size_t headers_length;
    /* The body when it went to memory; malloc'ed. */
    uint8_t *body;
    size_t body_length;
    /* Bytes written to out_fd. */
    uint64_t written;
    /* curl's error code and message when the transfer failed. */
    int curl_code;
    char error[256];
};

/* Loads libcurl if needed: 0 or -ELIBACC. */
int nook_curl_load(void);

/* Performs one request. Returns 0 when a response arrived (any status),
 * -EIO with response->error set when the transfer failed (connection,
 * TLS, truncated body), -EFBIG past max_body, -ECANCELED when cancelled,
 * -ELIBACC without libcurl. Free the response with nook_http_response_free
 * in every case. */
int nook_http_perform(const struct nook_http_request *request, struct nook_http_response *response);

void nook_http_response_free(struct nook_http_response *response);

#ifdef __cplusplus
}
#endif

#endif
