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

/* ------------------------------------------------------- header lists */

/* Request header lines that own their memory. The nodes are plain
 * struct curl_slist (curl only reads a CURLOPT_HTTPHEADER list: `data` and
 * `next`), allocated here together with their text, so a list can say
 * which lines hold a rendered secret: those are zeroed before they are
 * freed. Embed one (zero-initialized or weft_headers_init) in the object
 * that owns the request and clear it on every path that ends it; a
 * transfer only borrows it (weft_http_request.header_list). */
struct weft_headers {
    struct curl_slist *first;   /* the lines in order, for CURLOPT_HTTPHEADER */
    struct curl_slist *last;
    int count;
    /* Test hook, NULL normally: called for each line just before its
     * memory is freed (after a secret line was zeroed), with the line's
     * buffer and its length. */
    void (*on_free)(const char *line, size_t len, int secret);
};

/* An empty list (the same as zero-initialized). */
void weft_headers_init(struct weft_headers *h);

/* Append one line, the concatenation of the n pieces p[i] of len[i] bytes
 * ("Name: value" in curl's syntax; "Name:" removes a header curl would add,
 * "Name;" sends it empty). The pieces are copied straight into the line,
 * so a secret needs no other copy; `secret` marks the line for zeroing.
 * Returns 0, or -1 when out of memory (the list is unchanged). Lines are
 * not checked here: the caller refuses CR, LF and NUL. */
int weft_headers_add(struct weft_headers *h, int secret, size_t n, const char *const p[],
                     const size_t len[]);

/* 1 when a line's header name (the text before its ':' or ';') equals
 * name[0..nlen) without regard to case, else 0. */
int weft_headers_has(const struct weft_headers *h, const char *name, size_t nlen);

/* Free every line, zeroing the secret ones first; the list is empty
 * afterwards and may be reused. Safe on an empty list and to call twice. */
void weft_headers_clear(struct weft_headers *h);

/* ------------------------------------------------- URLs on an origin */

/* A configured origin, parsed once and kept by the client (at most 16;
 * the oldest is replaced): requests on it are built from its handle and
 * checked against its parts without parsing the origin again. Owned by
 * the client: valid until the client is freed or 16 other origins have
 * been looked up since. Returns NULL with a message in err when `origin`
 * is not "http(s)://host[:port][/prefix]" without user info, query or
 * fragment. */
struct weft_http_origin;
const struct weft_http_origin *weft_http_origin_get(struct weft_http_client *c, const char *origin,
                                                    char *err, size_t errlen);

/* weft_http_origin_url and weft_http_origin_check on a parsed origin
 * (the requests' URLs are written by weft_http_origin_render; the unit
 * test checks that it writes what curl's URL API renders). */
CURLU *weft_http_origin_join(const struct weft_http_origin *o, const char *path, const char *query,
                             char *err, size_t errlen);
int weft_http_origin_verify(const struct weft_http_origin *o, const char *url, char *err,
                            size_t errlen);
/* The URL weft_http_origin_join's handle renders, written into `out` as
 * text without curl's URL API (which cost ~30k instructions a request:
 * a handle copy, a parse of the parts back for the check, a render):
 * curl's rendering of the origin up to its path prefix (made once), then
 * the path and "?query", %XX escapes in lower case as curl writes them.
 * The same checks as join come first; what passes them cannot leave the
 * origin (the path begins with '/' and holds no '?', '#', '\\', space or
 * control byte, and no dot segment), so no parse-back check is needed.
 * Returns 0, or -1 with a message in err. */
struct weft_buf;
int weft_http_origin_render(const struct weft_http_origin *o, const char *path, const char *query,
                            struct weft_buf *out, char *err, size_t errlen);
/* Build the URL of a request on a configured origin with curl's URL API.
 * `origin` is "http(s)://host[:port][/prefix]" (no user info, query or
 * fragment); `path` must begin with "/" and hold only RFC 3986 path
 * characters (letters, digits, "-._~!$&'()*+,;=:@/" and %XX escapes) with
 * no "." or ".." segment (also escaped); it is appended to the origin's own
 * path without doubling the slash between them. `query` (NULL or "": none)
 * goes after "?" and may hold only query characters (the path's, "?" and
 * %XX). Nothing is encoded: anything else is refused, the caller encodes.
 * Returns a new handle (free it with curl_url_cleanup), or NULL with a
 * message in err that names what was wrong (never quoting the query). */
CURLU *weft_http_origin_url(const char *origin, const char *path, const char *query, char *err,
                            size_t errlen);

/* Parse `url` again and compare it with `origin`: same scheme, same host
 * (without regard to case), same port (default ports filled in), no user
 * info, and a path within the origin's path prefix. Returns 0 when it
 * matches, -1 with a message in err otherwise (the message names the
 * parts that differ, never the URL's query, which may hold a credential). */
int weft_http_origin_check(const char *origin, const char *url, char *err, size_t errlen);

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
    int sends;                  /* times the request was sent: 1 normally,
                                   2+ when libcurl sent it again by itself on
                                   a fresh connection (a reused connection
                                   died before any response byte), 0 when it
                                   never got as far as sending */
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
    const char *url;            /* copied by curl */
    struct curl_slist *headers; /* "Name: value" lines; ownership passes to
                                   the transfer on success of start */
    const struct weft_headers *header_list; /* instead of headers: borrowed,
                                   must stay valid until on_done or
                                   weft_http_cancel (the owner clears it
                                   then); never both */
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
 * some builds, both headers and header_list given). Invalid URLs are
 * reported through on_done with kind invalid_request, like every other
 * failure. The transfer belongs to the client until on_done or
 * weft_http_cancel. */
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
