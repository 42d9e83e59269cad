/* http_client.h -- asynchronous HTTP client: libcurl multi driven by libev.
 *
 * One struct weft_http_client per libev loop holds the curl multi handle
 * (its connection cache, DNS cache and HTTP/2 multiplexing), one ev_timer
 * for curl's timeouts and one ev_io per socket. Each request is a struct
 * weft_xfer. The owner of a transfer learns what happens through
 * callbacks; they run inside libcurl callbacks, so they must only copy data
 * and set flags: never call back into this module, never run Lua (see
 * lua_http_client.c, which only wakes tasks from them).
 *
 * This module knows nothing of Lua.
 */
#ifndef WEFT_HTTP_CLIENT_H
#define WEFT_HTTP_CLIENT_H

#include <stddef.h>

#include <curl/curl.h>
#include <ev.h>

struct weft_http_client;
struct weft_xfer;

/* How a transfer ended. `kind` is NULL on success, otherwise a name of the
 * weft error taxonomy ("transient", "timeout", "auth", "invalid_request",
 * "integration"); `reason` a short machine-readable cause ("refused",
 * "reset", "dns", "connect_timeout", "timeout", "idle_timeout", "tls",
 * "tls_verify", "bad_url", "too_large", "other"); `message` says what
 * happened in words. Strings are valid during the on_done call only. */
struct weft_http_outcome {
    const char *kind;
    const char *reason;
    const char *message;
    long curl_code;             /* CURLcode of the transfer */
    int status;                 /* last HTTP status seen, 0 if none */
};

/* Callbacks of one transfer. All are called from inside libcurl or libev
 * callbacks: copy, flag, wake; nothing else. */
struct weft_http_callbacks {
    /* A response head starts (also for 1xx interim responses and each
     * redirect hop): previous headers are void. version: 10, 11, 20, 30. */
    void (*on_status)(void *ud, int status, int version);
    /* One header line of the current head; name and value are trimmed and
     * not NUL-terminated. */
    void (*on_header)(void *ud, const char *name, size_t nlen, const char *value, size_t vlen);
    /* Body bytes. Return 0 to continue, 1 to pause the transfer (the same
     * bytes are delivered again after weft_http_resume), -1 to abort it
     * (ends with reason "too_large"). */
    int (*on_data)(void *ud, const char *p, size_t n);
    /* The transfer is over (success or failure). It has already been freed:
     * the weft_xfer pointer is invalid from now on. */
    void (*on_done)(void *ud, const struct weft_http_outcome *o);
};

struct weft_http_request {
    const char *method;         /* NULL: GET, or POST when has_body */
    const char *url;
    struct curl_slist *headers; /* "Name: value" lines; ownership passes to
                                   the transfer on success of start */
    const char *body;           /* not copied: must stay valid until on_done
                                   or weft_http_cancel */
    size_t body_len;
    int has_body;
    long timeout_ms;            /* whole transfer; 0 = none */
    long connect_timeout_ms;    /* 0 = curl's default (300 s) */
    long idle_timeout_ms;       /* no byte received for this long; 0 = none */
    curl_off_t max_body;        /* Content-Length above it fails at once; 0 = none */
    const char *ca_file;        /* CA bundle (NULL: system default) */
    const char *ca_path;        /* CA directory (NULL: system default) */
    const char *cert_pem;       /* client certificate (mutual TLS), in memory; */
    size_t cert_len;            /*   copied by curl, never written to disk */
    const char *key_pem;        /* client private key, in memory */
    size_t key_len;
    const char *ca_pem;         /* CA bundle in memory (instead of ca_file) */
    size_t ca_len;
};

/* Counters for tests and introspection. */
struct weft_http_stats {
    int in_flight;              /* transfers started and not finished */
    int sockets;                /* sockets curl asked us to watch */
    int pooled;                 /* idle easy handles kept for reuse */
    unsigned long started;      /* transfers started since creation */
};

/* Create a client on `ev`. Returns NULL on failure (curl could not create a
 * multi handle). Owned by the caller; free with weft_http_client_free. */
struct weft_http_client *weft_http_client_new(struct ev_loop *ev);

/* Cancel every in-flight transfer (their on_done is NOT called), close
 * every connection and free the client. */
void weft_http_client_free(struct weft_http_client *c);

/* Start a transfer. Returns it, or NULL with a message in err (size
 * errlen) when curl refuses the options (out of memory, bad CA path on
 * some builds). Invalid URLs are reported through on_done with kind
 * invalid_request, like every other failure. The transfer belongs to the
 * client until on_done or weft_http_cancel. */
struct weft_xfer *weft_http_start(struct weft_http_client *c, const struct weft_http_request *req,
                                  const struct weft_http_callbacks *cb, void *ud, char *err,
                                  size_t errlen);

/* Stop a transfer and free it at once; no callback is called afterwards.
 * Must not be called from inside one of the transfer callbacks. */
void weft_http_cancel(struct weft_xfer *x);

/* Resume a transfer paused by on_data returning 1. May call on_data
 * before returning. Must not be called from inside a transfer callback. */
void weft_http_resume(struct weft_xfer *x);

/* Fill *st. */
void weft_http_client_stats(const struct weft_http_client *c, struct weft_http_stats *st);

#endif
