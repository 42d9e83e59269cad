/* http_server.h -- HTTP/1.1 server primitive on libev with http-parser.
 *
 * A struct weft_http_server listens on one address; each accepted socket
 * is a struct weft_http_conn that parses requests with http-parser and
 * hands each complete request to the owner (on_request). Requests on one
 * connection are handled one at a time, in order. The owner answers with
 * weft_http_conn_send (whole response) or weft_http_conn_start/write/finish
 * (streaming, chunked for HTTP/1.1).
 *
 * A client that goes away while its request is with the owner: the
 * connection keeps reading while a request is being answered, so EOF or a
 * reset from the client frees the connection at once and the owner hears
 * of it through on_gone, before it writes anything (the client gave up, as
 * nginx's 499). Bytes that arrive meanwhile (pipelined requests) are kept
 * unparsed, at most WEFT_HTTP_SERVER_IN_HELD of them: beyond that the
 * connection stops reading until the answer is done, and a client that
 * leaves then is noticed only later (a write fails, or reading resumes). A
 * half-close (shutdown(SHUT_WR)) after the request cannot be told from a
 * close and counts as gone too, as in nginx and Go's net/http.
 *
 * Limits: a head over max_header gets 431, a body over max_body 413, a
 * request not complete within header_timeout 408, malformed HTTP 400; after
 * an error response the connection is closed gracefully (write side shut,
 * input drained briefly) so the client reads the answer.
 *
 * Output backpressure: once a response is queued, a connection whose unsent
 * output is above WEFT_HTTP_SERVER_OUT_HIGH is paused: it neither reads nor
 * parses the pipelined requests it already holds, so no new request reaches
 * the owner, until the client has read enough for the output to drop below
 * WEFT_HTTP_SERVER_OUT_LOW (the same watermarks weft_http_conn_write uses for
 * a streaming response). A paused connection whose client reads nothing for
 * keepalive_timeout is closed. With at most one request with the owner per
 * connection and at most WEFT_HTTP_SERVER_IN_HELD (64 KiB) of input held
 * beyond it, the memory of a connection is bounded whatever the client
 * sends: about max_header + max_body + IN_HELD + OUT_HIGH + the last
 * response queued.
 *
 * Connection caps: at most max_connections connections, and at most
 * max_connections_per_address from one client address (an IPv6 address
 * counts by its /64 prefix, an IPv4-mapped one as the IPv4 address). A
 * connection is idle while it waits for a request head it has not received
 * whole (a new connection, a keep-alive one between requests, a slow or
 * stalled partial head), has no unsent output and is not paused. A new
 * connection from an address at its cap replaces that address's longest
 * idle connection; one arriving at the total cap replaces, among the 64
 * longest idle connections, the longest idle one of the address that has the
 * most connections. Either is counted as evicted. When there is nothing idle
 * to replace, the newcomer is closed at once (counted as rejected). So a
 * flood of idle connections, from one address or from many, cannot keep a
 * client that sends its request out.
 *
 * Callbacks are called from libev callbacks only (never from inside
 * http-parser), so the owner may run Lua there. This module knows nothing
 * of Lua.
 */
#ifndef WEFT_HTTP_SERVER_H
#define WEFT_HTTP_SERVER_H

#include <stddef.h>

#include <ev.h>

/* Unsent output, in bytes, above which a connection stops reading (and
 * weft_http_conn_write reports 1), and below which it reads again (and
 * on_writable is called). */
#define WEFT_HTTP_SERVER_OUT_HIGH (256 * 1024)
#define WEFT_HTTP_SERVER_OUT_LOW (64 * 1024)

/* Input, in bytes, a connection keeps unparsed while a request is with the
 * owner (pipelined requests); it stops reading when it holds this much. */
#define WEFT_HTTP_SERVER_IN_HELD (64 * 1024)

struct weft_http_server;
struct weft_http_conn;

/* A parsed request, valid during on_request only (copy what you keep). */
struct weft_http_msg {
    const char *method;        /* "GET", ... */
    const char *target;        /* raw request-target, NUL-terminated */
    size_t target_len;
    const char *headers;       /* "name\0value\0" pairs, names lower-cased */
    size_t headers_len;
    const char *body;          /* complete body (chunked decoded) */
    size_t body_len;
    int version;               /* 10 or 11 */
    int keep_alive;            /* connection stays open after the answer */
    const char *remote;        /* "ip:port" of the peer */
};

struct weft_http_server_callbacks {
    /* A complete request arrived. The owner must eventually answer it
     * (send, or start ... finish) or abort the connection. `ud` is the
     * server's ud. */
    void (*on_request)(void *ud, struct weft_http_conn *c, const struct weft_http_msg *m);
    /* The connection of an unfinished request is gone: the client closed
     * or reset it while the request was being handled (seen as soon as it
     * happens, see above), a write failed, or the server was freed.
     * `req_ud` is what the owner set with weft_http_conn_set_ud; the conn
     * pointer is invalid afterwards. Called from a libev callback (or
     * weft_http_server_free), never from inside a weft_http_conn_* call. */
    void (*on_gone)(void *req_ud);
    /* Buffered output of a streaming response dropped below the low
     * watermark after weft_http_conn_write reported it above the high one. */
    void (*on_writable)(void *req_ud);
};

struct weft_http_server_opts {
    const char *host;          /* "127.0.0.1" when NULL */
    int port;                  /* 0: ephemeral */
    size_t max_header;         /* request line + headers, bytes */
    size_t max_body;           /* request body, bytes */
    double header_timeout;     /* seconds to receive a whole request */
    double keepalive_timeout;  /* idle seconds between requests */
    int max_connections;       /* open connections at most (see "Connection caps") */
    int max_connections_per_address; /* from one client address at most;
                                  0: max_connections / 4, at least 1 */
    int backlog;
    int background;            /* the listener does not keep the loop alive
                                  (a /metrics endpoint beside a script) */
};

struct weft_http_server_stats {
    int connections;           /* open now */
    unsigned long accepted;    /* since start */
    unsigned long requests;    /* dispatched since start */
    int active;                /* requests being answered now */
    unsigned long rejected;    /* new connections closed at once: at a cap with
                                  nothing idle to evict */
    unsigned long evicted;     /* idle connections closed to make room for new ones */
    int paused;                /* connections not read now: output above the
                                  high watermark */
};

/* Bind and listen. Returns the server, or NULL with a message in err
 * (address unusable, out of memory). Owned by the caller; free with
 * weft_http_server_free. */
struct weft_http_server *weft_http_server_new(struct ev_loop *ev,
                                              const struct weft_http_server_opts *o,
                                              const struct weft_http_server_callbacks *cb,
                                              void *ud, char *err, size_t errlen);

/* The bound port. */
int weft_http_server_port(const struct weft_http_server *s);

/* Stop listening; close idle connections; requests being answered finish,
 * then their connections close. Idempotent. */
void weft_http_server_close(struct weft_http_server *s);

/* Close everything now (on_gone for unfinished requests) and free. */
void weft_http_server_free(struct weft_http_server *s);

void weft_http_server_stats(const struct weft_http_server *s, struct weft_http_server_stats *st);

/* Associate the owner's per-request pointer with the current request. */
void weft_http_conn_set_ud(struct weft_http_conn *c, void *req_ud);

/* Answer the current request with a whole response. `head_fields` holds
 * preformatted "Name: value\r\n" lines (may be empty); Content-Length and
 * Connection are added here. Returns 0, or -1 when the connection is gone
 * (then on_gone is not called for this request). */
int weft_http_conn_send(struct weft_http_conn *c, int status, const char *head_fields,
                        size_t head_len, const char *body, size_t body_len);

/* Start a streaming response (chunked for HTTP/1.1, close-delimited for
 * 1.0). Returns 0 or -1 (gone). */
int weft_http_conn_start(struct weft_http_conn *c, int status, const char *head_fields,
                         size_t head_len);

/* Queue body bytes of a streaming response. Returns 1 when the buffered
 * output is above WEFT_HTTP_SERVER_OUT_HIGH (wait for on_writable), 0 when
 * not, -1 when the connection is gone. */
int weft_http_conn_write(struct weft_http_conn *c, const char *p, size_t n);

/* End a streaming response. Returns 0 or -1. */
int weft_http_conn_finish(struct weft_http_conn *c);

/* Drop the connection with a TCP reset (on_gone is not called). */
void weft_http_conn_abort(struct weft_http_conn *c);

/* Standard reason phrase of a status ("OK"), or "Unknown". */
const char *weft_http_reason(int status);

#endif
