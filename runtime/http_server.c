/* http_server.c -- HTTP/1.1 server: libev for I/O, http-parser for parsing.
 *
 * Connection states:
 *   READ    parsing a request (http-parser callbacks only copy bytes); while
 *           `paused` (output above the high watermark) neither reading nor
 *           parsing what `pend` holds
 *   HANDLE  a complete request is with the owner. The connection still
 *           reads, so that a client that goes away is noticed while its
 *           request is being handled (EOF or a read error frees the
 *           connection and tells the owner with on_gone, nginx's 499): what
 *           arrives meanwhile (a pipelined request) is kept, unparsed, in
 *           `pend`, and reading stops while PEND_MAX bytes wait there
 *   LINGER  an error answer was sent and the write side shut; input is read
 *           and discarded until EOF or a short timer, so the client gets to
 *           read the answer instead of a reset
 *
 * Connections are counted per client address (struct addr, in a small hash
 * table) and the idle ones (see http_server.h) are kept on two lists, the
 * server's and their address's, longest idle first, so that making room for
 * a newcomer costs a bounded walk instead of a scan of every connection.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "buf.h"

#define READ_CHUNK 16384
#define HIGH_WATER WEFT_HTTP_SERVER_OUT_HIGH
#define LOW_WATER WEFT_HTTP_SERVER_OUT_LOW
#define LINGER_SECONDS 2.0
#define EVICT_SCAN 64          /* idle connections looked at to pick a victim */
#define KEEP_BUFFER (64 * 1024) /* larger buffers are freed between requests */
#define PEND_MAX WEFT_HTTP_SERVER_IN_HELD
#define ADDR_KEY 17            /* family byte + 16 address bytes */

enum cstate { C_READ, C_HANDLE, C_LINGER };

struct weft_http_conn {
    struct weft_http_server *s;
    int fd;
    ev_io rio;                 /* readable */
    ev_io wio;                 /* writable, active while output is blocked */
    ev_timer timer;            /* header / keep-alive / linger timeout */
    http_parser parser;
    enum cstate state;
    /* The request being parsed. Every buffer here holds part of an HTTP
     * message (an Authorization header, a body): all are WEFT_BUF_SECRET. */
    struct weft_buf url;       /* request target; bounded by max_header */
    struct weft_buf hdr;       /* "name\0value\0" ...; bounded by max_header */
    int in_field;              /* last header callback was a field name */
    struct weft_buf body;      /* max: max_body (past it, 413) */
    size_t head_bytes;
    int got_bytes;             /* the current request has started */
    int err_status;            /* 413/431 decided in a parser callback */
    /* input read past the end of the current request, parsed from pend_off */
    struct weft_buf pend;
    size_t pend_off;
    int input_lost;            /* input could not be kept (out of memory): no
                                  request is parsed after the current one */
    /* output, written from out_off */
    struct weft_buf out;
    size_t out_off;
    int close_when_flushed;
    int above_high;
    /* the current response */
    int keep_alive;
    int version;
    int is_head;
    int chunked;
    void *req_ud;              /* owner's pointer while a request is open */
    int active;                /* a request is with the owner */
    int paused;                /* READ but not reading: output above HIGH_WATER */
    char remote[64];
    struct addr *addr;         /* its client address (counts it) */
    int idle;                  /* on the idle lists */
    struct weft_http_conn *iprev, *inext; /* server's idle list */
    struct weft_http_conn *aprev, *anext; /* its address's idle list */
    struct weft_http_conn *prev, *next;
};

/* One client address with open connections; freed with its last one. */
struct addr {
    unsigned char key[ADDR_KEY];
    int count;                 /* open connections */
    struct weft_http_conn *idle_head, *idle_tail; /* longest idle first */
    struct addr *next;         /* hash chain */
};

struct weft_http_server {
    struct ev_loop *ev;
    int fd;
    ev_io lio;                 /* listening socket */
    ev_timer pause;            /* accept paused after EMFILE */
    struct weft_http_server_opts o;
    struct weft_http_server_callbacks cb;
    void *ud;
    int port;
    int closing;
    struct weft_http_conn *conns;
    int nconns;
    int nactive;
    int npaused;
    unsigned long accepted, requests, rejected, evicted;
    struct weft_http_conn *idle_head, *idle_tail; /* longest idle first */
    struct addr **buckets;     /* client addresses, chained */
    size_t nbuckets;           /* a power of two */
    size_t naddrs;
    uint64_t seed;             /* of the address hash */
};

static http_parser_settings settings;

/* ------------------------------------------------------------ buffers */

/* Empty a buffer once done with it (zeroing it: they are all secret);
 * one that grew past `keep` is freed, so a connection does not hold the
 * peak of one large request or response for its life. */
static void release(struct weft_buf *b, size_t keep) {
    if (b->cap > keep) weft_buf_free(b);
    else weft_buf_reset(b);
}

const char *weft_http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Site Overloaded";
    default: return "Unknown";
    }
}

/* ---------------------------------------------- client addresses */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Seeded, so a client choosing its addresses cannot aim at one chain. */
static size_t addr_hash(const struct weft_http_server *s, const unsigned char *key) {
    uint64_t w[2];
    memcpy(w, key + 1, sizeof w);
    uint64_t h = mix64(s->seed ^ key[0]);
    h = mix64(h ^ w[0]);
    h = mix64(h ^ w[1]);
    return (size_t)h & (s->nbuckets - 1);
}

/* The counting key of a peer: family byte + address; IPv6 by its /64
 * prefix (one host usually owns a whole /64), IPv4-mapped IPv6 as IPv4. */
static void addr_key(const struct sockaddr *sa, unsigned char *key) {
    memset(key, 0, ADDR_KEY);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, a->s6_addr + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8);
        }
    }
}

static struct addr *addr_find(const struct weft_http_server *s, const unsigned char *key) {
    for (struct addr *a = s->buckets[addr_hash(s, key)]; a; a = a->next)
        if (memcmp(a->key, key, ADDR_KEY) == 0) return a;
    return NULL;
}

/* Double the buckets once there are more addresses than buckets; on
 * failure the table keeps working with longer chains. */
static void addr_rehash(struct weft_http_server *s) {
    size_t n = s->nbuckets * 2;
    struct addr **nb = calloc(n, sizeof *nb);
    if (!nb) return;
    struct addr **old = s->buckets;
    size_t oldn = s->nbuckets;
    s->buckets = nb;
    s->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        while (old[i]) {
            struct addr *a = old[i];
            old[i] = a->next;
            size_t h = addr_hash(s, a->key);
            a->next = nb[h];
            nb[h] = a;
        }
    }
    free(old);
}

/* The entry of `key`, created with count 0 when missing; NULL when out of
 * memory. */
static struct addr *addr_get(struct weft_http_server *s, const unsigned char *key) {
    struct addr *a = addr_find(s, key);
    if (a) return a;
    a = calloc(1, sizeof *a);
    if (!a) return NULL;
    memcpy(a->key, key, ADDR_KEY);
    size_t h = addr_hash(s, key);
    a->next = s->buckets[h];
    s->buckets[h] = a;
    if (++s->naddrs > s->nbuckets) addr_rehash(s);
    return a;
}

static void addr_release(struct weft_http_server *s, struct addr *a) {
    if (--a->count > 0) return;
    struct addr **pp = &s->buckets[addr_hash(s, a->key)];
    while (*pp != a) pp = &(*pp)->next;
    *pp = a->next;
    s->naddrs--;
    free(a);
}

/* ------------------------------------------------------------ idle lists */

/* Waiting for a request head: at the tail of both lists (longest idle
 * first). No-op when already there, so a partial head keeps its place. */
static void idle_add(struct weft_http_conn *c) {
    if (c->idle) return;
    struct weft_http_server *s = c->s;
    struct addr *a = c->addr;
    c->idle = 1;
    c->inext = NULL;
    c->iprev = s->idle_tail;
    if (s->idle_tail) s->idle_tail->inext = c;
    else s->idle_head = c;
    s->idle_tail = c;
    c->anext = NULL;
    c->aprev = a->idle_tail;
    if (a->idle_tail) a->idle_tail->anext = c;
    else a->idle_head = c;
    a->idle_tail = c;
}

static void idle_remove(struct weft_http_conn *c) {
    if (!c->idle) return;
    struct weft_http_server *s = c->s;
    struct addr *a = c->addr;
    c->idle = 0;
    if (c->iprev) c->iprev->inext = c->inext;
    else s->idle_head = c->inext;
    if (c->inext) c->inext->iprev = c->iprev;
    else s->idle_tail = c->iprev;
    if (c->aprev) c->aprev->anext = c->anext;
    else a->idle_head = c->anext;
    if (c->anext) c->anext->aprev = c->aprev;
    else a->idle_tail = c->aprev;
    c->iprev = c->inext = c->aprev = c->anext = NULL;
}

/* ------------------------------------------------------- connections */

static void conn_free(struct weft_http_conn *c, int notify) {
    struct weft_http_server *s = c->s;
    struct ev_loop *ev = s->ev;
    ev_io_stop(ev, &c->rio);
    ev_io_stop(ev, &c->wio);
    ev_timer_stop(ev, &c->timer);
    close(c->fd);
    idle_remove(c);
    addr_release(s, c->addr);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (c->active) s->nactive--;
    if (c->paused) s->npaused--;
    void *req_ud = c->active ? c->req_ud : NULL;
    weft_buf_free(&c->url);
    weft_buf_free(&c->hdr);
    weft_buf_free(&c->body);
    weft_buf_free(&c->pend);
    weft_buf_free(&c->out);
    free(c);
    if (notify && req_ud) s->cb.on_gone(req_ud);
}

static void set_timer(struct weft_http_conn *c, double sec) {
    ev_timer_stop(c->s->ev, &c->timer);
    if (sec > 0) {
        ev_timer_set(&c->timer, sec, 0.);
        ev_timer_start(c->s->ev, &c->timer);
    }
}

static void begin_linger(struct weft_http_conn *c) {
    shutdown(c->fd, SHUT_WR);
    idle_remove(c);
    if (c->paused) {
        c->paused = 0;
        c->s->npaused--;
    }
    c->state = C_LINGER;
    ev_io_stop(c->s->ev, &c->wio);
    ev_io_start(c->s->ev, &c->rio);
    /* A background server's answered connection closes on the next loop
     * iteration (callers still hold c here); others drain input briefly. */
    int quick = c->s->o.background && c->err_status == 0 && c->pend_off >= c->pend.len;
    set_timer(c, quick ? 1e-6 : LINGER_SECONDS);
}

static size_t pending_out(const struct weft_http_conn *c) { return c->out.len - c->out_off; }

static void resume_input(struct weft_http_conn *c);

/* Write as much buffered output as the socket takes; a paused connection
 * whose output fell below the low watermark reads again. Returns 0, or -1
 * when the connection broke (the caller decides how to free it). */
static int flush(struct weft_http_conn *c) {
    while (c->out_off < c->out.len) {
        ssize_t w = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!ev_is_active(&c->wio)) ev_io_start(c->s->ev, &c->wio);
                break;
            }
            return -1;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out.len) {
        c->out_off = 0;
        release(&c->out, KEEP_BUFFER);
        if (ev_is_active(&c->wio)) ev_io_stop(c->s->ev, &c->wio);
        if (c->close_when_flushed) {
            c->close_when_flushed = 0;
            begin_linger(c);
            return 0;
        }
    }
    if (c->paused && pending_out(c) < LOW_WATER) {
        c->paused = 0;
        c->s->npaused--;
        /* Closing (server closed meanwhile): linger once drained instead. */
        if (!c->close_when_flushed) resume_input(c);
    }
    return 0;
}

static void reset_message(struct weft_http_conn *c) {
    weft_buf_reset(&c->url);
    weft_buf_reset(&c->hdr);
    weft_buf_reset(&c->body);
    c->head_bytes = 0;
    c->in_field = 0;
    c->got_bytes = 0;
    c->err_status = 0;
}

/* Send a small error answer and close gracefully. */
static void send_error(struct weft_http_conn *c, int status) {
    idle_remove(c);
    char buf[256];
    const char *reason = weft_http_reason(status);
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, reason, strlen(reason) + 1, reason);
    ev_io_stop(c->s->ev, &c->rio);
    ev_timer_stop(c->s->ev, &c->timer);
    c->keep_alive = 0;
    if (weft_buf_append(&c->out, buf, (size_t)n) != 0) {
        conn_free(c, 0);
        return;
    }
    c->close_when_flushed = 1;
    if (flush(c) != 0) conn_free(c, 0);
}

static void dispatch(struct weft_http_conn *c);

/* Keep input for the parser, after what c->pend holds. The unparsed rest is
 * moved to the front instead of growing the buffer, so that input kept a
 * read at a time while requests are handled one after the other needs no
 * more than the bytes held. Out of memory, the input is lost: the
 * connection closes after the current answer. */
static void keep_pending(struct weft_http_conn *c, const char *p, size_t n) {
    if (n == 0 || c->input_lost) return;
    if (c->pend_off == c->pend.len) {
        c->pend_off = 0;
        weft_buf_reset(&c->pend);
    } else if (c->pend_off > 0 && n > c->pend.cap - c->pend.len) {
        weft_buf_drop(&c->pend, c->pend_off);
        c->pend_off = 0;
    }
    if (weft_buf_append(&c->pend, p, n) != 0) {
        c->input_lost = 1;
        c->keep_alive = 0;
    }
}

static size_t pending_in(const struct weft_http_conn *c) { return c->pend.len - c->pend_off; }

/* Feed bytes to the parser; `from_pend` when they are c->pend's. Input
 * past the end of a complete request is kept in c->pend *before* the
 * request is dispatched, since the owner may answer at once and the
 * connection then goes straight back to reading it. On a parse error the
 * connection is answered (400/413/431) and may be freed. */
static void feed(struct weft_http_conn *c, const char *p, size_t n, int from_pend) {
    size_t np = http_parser_execute(&c->parser, &settings, p, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        if (from_pend) c->pend_off += np;
        else keep_pending(c, p + np, n - np);
        dispatch(c);
        return;
    }
    if (e != HPE_OK || np != n || c->parser.upgrade) {
        /* Protocol upgrades are not supported either: 400 and close. */
        int status = c->err_status ? c->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
        send_error(c, status);
        return;
    }
    if (from_pend) c->pend_off += np;
}

/* Wait for the next request: idle, reading, keep-alive timer. */
static void resume_input(struct weft_http_conn *c) {
    struct weft_http_server *s = c->s;
    idle_add(c);
    ev_io_start(s->ev, &c->rio);
    set_timer(c, s->o.keepalive_timeout);
    /* Pipelined bytes already read: parse them on the next iteration (not
     * here, which may be inside the owner's call). */
    if (c->pend_off < c->pend.len) ev_feed_event(s->ev, &c->rio, EV_READ);
}

/* Back to reading after a response was queued completely, unless the
 * client is not reading its answers: then the connection pauses until
 * flush() sees the output below the low watermark. Its keep-alive timer
 * runs meanwhile (restarted by each write the client lets through). */
static void next_request(struct weft_http_conn *c) {
    struct weft_http_server *s = c->s;
    c->active = 0;
    c->req_ud = NULL;
    c->chunked = 0;
    s->nactive--;
    /* The request's buffers were the owner's during on_request only. */
    release(&c->body, KEEP_BUFFER);
    release(&c->hdr, KEEP_BUFFER);
    release(&c->url, KEEP_BUFFER);
    if (pending_in(c) == 0) {
        c->pend_off = 0;
        release(&c->pend, READ_CHUNK);
    }
    if (!c->keep_alive || s->closing) {
        if (pending_out(c) == 0) begin_linger(c);
        else c->close_when_flushed = 1;
        return;
    }
    reset_message(c);
    c->state = C_READ;
    if (pending_out(c) > HIGH_WATER) {
        c->paused = 1;
        s->npaused++;
        ev_io_stop(s->ev, &c->rio);
        set_timer(c, s->o.keepalive_timeout);
        return;
    }
    resume_input(c);
}

static void dispatch(struct weft_http_conn *c) {
    struct weft_http_server *s = c->s;
    http_parser *p = &c->parser;
    idle_remove(c);
    /* Reading goes on (read_cb, HANDLE): a client that goes away is noticed
     * now, not when the answer is written. */
    c->state = C_HANDLE;
    ev_timer_stop(s->ev, &c->timer);
    c->version = p->http_major == 1 && p->http_minor == 0 ? 10 : 11;
    /* A background server (metrics beside a script) closes after each
     * answer, so no idle connection keeps the process alive. */
    c->keep_alive =
        http_should_keep_alive(p) && !s->closing && !s->o.background && !c->input_lost;
    c->is_head = p->method == HTTP_HEAD;
    c->active = 1;
    s->nactive++;
    s->requests++;
    const char *target = weft_buf_cstr(&c->url);
    if (!target) {
        conn_free(c, 0);
        return;
    }
    struct weft_http_msg m = {
        .method = http_method_str((enum http_method)p->method),
        .target = target,
        .target_len = c->url.len,
        .headers = c->hdr.len ? c->hdr.data : "",
        .headers_len = c->hdr.len,
        .body = c->body.len ? c->body.data : "",
        .body_len = c->body.len,
        .version = c->version,
        .keep_alive = c->keep_alive,
        .remote = c->remote,
    };
    s->cb.on_request(s->ud, c, &m);
}

/* -------------------------------------------------- parser callbacks */

static int on_message_begin(http_parser *p) {
    struct weft_http_conn *c = p->data;
    reset_message(c);
    c->got_bytes = 1;
    set_timer(c, c->s->o.header_timeout);
    return 0;
}

static int head_add(struct weft_http_conn *c, size_t n) {
    c->head_bytes += n;
    if (c->head_bytes > c->s->o.max_header) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    struct weft_http_conn *c = p->data;
    if (head_add(c, n)) return -1;
    return weft_buf_append(&c->url, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    struct weft_http_conn *c = p->data;
    if (head_add(c, n + 4)) return -1;
    if (!c->in_field) {
        if (c->hdr.len > 0 && weft_buf_append_char(&c->hdr, '\0')) return -1;
        c->in_field = 1;
    }
    char *d = weft_buf_extend(&c->hdr, n);
    if (!d) return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = at[i];
        d[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    struct weft_http_conn *c = p->data;
    if (head_add(c, n)) return -1;
    if (c->in_field) {
        if (weft_buf_append_char(&c->hdr, '\0')) return -1;
        c->in_field = 0;
    }
    return weft_buf_append(&c->hdr, at, n);
}

static int on_headers_complete(http_parser *p) {
    struct weft_http_conn *c = p->data;
    idle_remove(c); /* a whole head: no longer evictable */
    if (c->in_field) {
        /* a field without a value callback: empty value */
        if (weft_buf_append_char(&c->hdr, '\0')) return -1;
        c->in_field = 0;
    }
    if (c->hdr.len > 0 && weft_buf_append_char(&c->hdr, '\0')) return -1;
    if (p->content_length != (uint64_t)-1 && p->content_length > c->s->o.max_body &&
        (p->flags & F_CHUNKED) == 0) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    struct weft_http_conn *c = p->data;
    if (c->body.len == 0 && p->content_length != (uint64_t)-1) {
        /* Sized once, by what is still to come of the body (or of its
         * first chunk) with this piece: a failure shows in the append. */
        uint64_t rest = p->content_length;
        weft_buf_reserve(&c->body, rest > SIZE_MAX - n ? SIZE_MAX : (size_t)rest + n);
    }
    if (weft_buf_append(&c->body, at, n) != 0) {
        if (c->body.err == WEFT_BUF_TOO_BIG) c->err_status = 413; /* max_body */
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p) {
    /* Stop here: the rest of the input is the next request. */
    http_parser_pause(p, 1);
    return 0;
}

/* --------------------------------------------------------- I/O events */

/* HANDLE: the owner has the request. Read on to notice a client that gives
 * up (EOF or a read error: the connection is freed and the owner told with
 * on_gone). What the client sends meanwhile (a pipelined request) is kept
 * for after the answer, PEND_MAX bytes at most: then reading stops until
 * the connection reads again (resume_input), so a client cannot make the
 * server buffer without bound, and one that goes away after filling it is
 * noticed only later (a write fails, or reading resumes). A client that
 * half-closes (shutdown(SHUT_WR)) after its request looks the same as one
 * that closed: it counts as gone (as in nginx and Go's net/http). */
static void read_while_handling(struct weft_http_conn *c) {
    size_t held = pending_in(c);
    if (held >= PEND_MAX || c->input_lost) {
        ev_io_stop(c->s->ev, &c->rio);
        return;
    }
    char buf[READ_CHUNK];
    size_t room = PEND_MAX - held < sizeof buf ? PEND_MAX - held : sizeof buf;
    ssize_t n = read(c->fd, buf, room);
    if (n > 0) {
        keep_pending(c, buf, (size_t)n);
        if (pending_in(c) >= PEND_MAX || c->input_lost) ev_io_stop(c->s->ev, &c->rio);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    conn_free(c, 1);
}

static void read_cb(struct ev_loop *ev, ev_io *w, int revents) {
    struct weft_http_conn *c = w->data;
    if (c->state == C_HANDLE) {
        read_while_handling(c);
        return;
    }
    char buf[READ_CHUNK];
    if (c->state == C_LINGER) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) conn_free(c, 1);
        return;
    }
    if (c->paused) return;
    if (c->pend_off < c->pend.len) {
        feed(c, c->pend.data + c->pend_off, c->pend.len - c->pend_off, 1);
        return;
    }
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) {
        feed(c, buf, (size_t)n, 0);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    /* EOF or error while reading a request: nothing to answer to. */
    conn_free(c, 1);
}

static void write_cb(struct ev_loop *ev, ev_io *w, int revents) {
    struct weft_http_conn *c = w->data;
    if (flush(c) != 0) {
        conn_free(c, 1);
        return;
    }
    /* Still paused, but the client reads: give it its keep-alive time again. */
    if (c->paused) set_timer(c, c->s->o.keepalive_timeout);
    if (c->above_high && pending_out(c) < LOW_WATER) {
        c->above_high = 0;
        if (c->active && c->req_ud) c->s->cb.on_writable(c->req_ud);
    }
}

static void conn_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_http_conn *c = w->data;
    if (c->state == C_READ && c->got_bytes) send_error(c, 408);
    else conn_free(c, 1);
}

/* A new connection from `sa` (counted at the address of `key`). Returns 0,
 * or -1 when out of memory (the caller closes fd). */
static int conn_new(struct weft_http_server *s, int fd, const struct sockaddr *sa,
                    const unsigned char *key) {
    struct weft_http_conn *c = calloc(1, sizeof *c);
    struct addr *a = c ? addr_get(s, key) : NULL;
    if (!a) {
        free(c);
        return -1;
    }
    a->count++;
    c->addr = a;
    c->s = s;
    c->fd = fd;
    weft_buf_init(&c->url, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&c->hdr, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&c->body, s->o.max_body, WEFT_BUF_SECRET);
    weft_buf_init(&c->pend, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&c->out, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(c->remote, sizeof c->remote, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(c->remote, sizeof c->remote, "[%s]:%d", host, port);
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    c->rio.data = c;
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    c->wio.data = c;
    ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
    c->timer.data = c;
    c->state = C_READ;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->accepted++;
    idle_add(c);
    ev_io_start(s->ev, &c->rio);
    set_timer(c, s->o.header_timeout);
    return 0;
}

/* Evictable: idle (waiting for a head it has not received whole), with no
 * unsent output and no pipelined bytes still to parse. */
static int evictable(const struct weft_http_conn *c) {
    return pending_out(c) == 0 && c->pend_off >= c->pend.len;
}

static void evict(struct weft_http_conn *c) {
    c->s->evicted++;
    conn_free(c, 0); /* idle: no request with the owner */
}

/* Make room for a connection from `key` (see "Connection caps" in the
 * header). Returns 0 when it may be added, -1 when it must be refused. */
static int admit(struct weft_http_server *s, const unsigned char *key) {
    struct addr *a = addr_find(s, key);
    if (a && a->count >= s->o.max_connections_per_address) {
        struct weft_http_conn *v = a->idle_head;
        for (int n = 0; v && n < EVICT_SCAN && !evictable(v); n++) v = v->anext;
        if (!v || !evictable(v)) return -1;
        evict(v); /* may free `a` */
    }
    if (s->nconns >= s->o.max_connections) {
        /* The longest idle connection of the most connected address among
         * the EVICT_SCAN longest idle ones. */
        struct weft_http_conn *best = NULL;
        int n = 0;
        for (struct weft_http_conn *v = s->idle_head; v && n < EVICT_SCAN; v = v->inext, n++)
            if (evictable(v) && (!best || v->addr->count > best->addr->count)) best = v;
        if (!best) return -1;
        evict(best);
    }
    return 0;
}

/* The listener of a background server is unref'd: the loop may exit while
 * it is active. libev needs ev_ref before such a watcher is stopped. */
static void listen_start(struct weft_http_server *s) {
    ev_io_start(s->ev, &s->lio);
    if (s->o.background) ev_unref(s->ev);
}

static void listen_stop(struct weft_http_server *s) {
    if (!ev_is_active(&s->lio)) return;
    if (s->o.background) ev_ref(s->ev);
    ev_io_stop(s->ev, &s->lio);
}

static void pause_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_http_server *s = w->data;
    if (!s->closing) listen_start(s);
}

static void accept_cb(struct ev_loop *ev, ev_io *w, int revents) {
    struct weft_http_server *s = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead
                 * of spinning on a listener that stays readable. */
                listen_stop(s);
                ev_timer_set(&s->pause, 0.1, 0.);
                ev_timer_start(ev, &s->pause);
            }
            return;
        }
        unsigned char key[ADDR_KEY];
        addr_key((struct sockaddr *)&ss, key);
        if (admit(s, key) != 0 || conn_new(s, fd, (struct sockaddr *)&ss, key) != 0) {
            close(fd);
            s->rejected++;
        }
    }
}

/* ------------------------------------------------------------ public */

struct weft_http_server *weft_http_server_new(struct ev_loop *ev,
                                              const struct weft_http_server_opts *o,
                                              const struct weft_http_server_callbacks *cb,
                                              void *ud, char *err, size_t errlen) {
    if (!settings.on_message_complete) {
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_value = on_header_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    const char *host = o->host ? o->host : "127.0.0.1";
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", o->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, o->port, gai_strerror(gai));
        return NULL;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, o->backlog) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, o->port, strerror(saved));
        return NULL;
    }
    struct weft_http_server *s = calloc(1, sizeof *s);
    if (s) {
        s->nbuckets = 64;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    }
    if (!s || !s->buckets) {
        free(s);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (getrandom(&s->seed, sizeof s->seed, GRND_NONBLOCK) != (ssize_t)sizeof s->seed)
        s->seed = (uint64_t)(ev_time() * 1e9) ^ (uint64_t)(uintptr_t)s;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->ev = ev;
    s->fd = fd;
    s->o = *o;
    s->o.host = NULL; /* not kept */
    if (s->o.max_connections_per_address <= 0) {
        s->o.max_connections_per_address = s->o.max_connections / 4;
        if (s->o.max_connections_per_address < 1) s->o.max_connections_per_address = 1;
    }
    s->cb = *cb;
    s->ud = ud;
    ev_io_init(&s->lio, accept_cb, fd, EV_READ);
    s->lio.data = s;
    ev_timer_init(&s->pause, pause_cb, 0.1, 0.);
    s->pause.data = s;
    listen_start(s);
    return s;
}

int weft_http_server_port(const struct weft_http_server *s) { return s->port; }

void weft_http_server_close(struct weft_http_server *s) {
    if (s->closing) return;
    s->closing = 1;
    listen_stop(s);
    ev_timer_stop(s->ev, &s->pause);
    close(s->fd);
    s->fd = -1;
    struct weft_http_conn *c = s->conns;
    while (c) {
        struct weft_http_conn *next = c->next;
        if (c->state == C_READ && !c->got_bytes && pending_out(c) == 0) {
            conn_free(c, 0);
        } else {
            c->keep_alive = 0;
            /* paused: no request to finish, so close once the output is out */
            if (c->paused) c->close_when_flushed = 1;
        }
        c = next;
    }
}

void weft_http_server_free(struct weft_http_server *s) {
    if (!s) return;
    weft_http_server_close(s);
    while (s->conns) conn_free(s->conns, 1);
    free(s->buckets); /* every address went with its last connection */
    free(s);
}

void weft_http_server_stats(const struct weft_http_server *s, struct weft_http_server_stats *st) {
    st->connections = s->nconns;
    st->accepted = s->accepted;
    st->requests = s->requests;
    st->active = s->nactive;
    st->rejected = s->rejected;
    st->evicted = s->evicted;
    st->paused = s->npaused;
}

void weft_http_conn_set_ud(struct weft_http_conn *c, void *req_ud) { c->req_ud = req_ud; }

/* Queue bytes and try to write; -1 (connection freed, no on_gone) when the
 * connection broke. */
static int queue(struct weft_http_conn *c, const char *p, size_t n) {
    /* Move the unsent rest to the front instead of growing: a client that
     * reads slowly but never lets the output drain whole would otherwise
     * push the buffer's end forward without bound. */
    if (c->out_off > 0 && n > c->out.cap - c->out.len) {
        weft_buf_drop(&c->out, c->out_off);
        c->out_off = 0;
    }
    if (weft_buf_append(&c->out, p, n) != 0) {
        conn_free(c, 0);
        return -1;
    }
    return 0;
}

static int write_head(struct weft_http_conn *c, int status, const char *fields, size_t flen,
                      const char *extra) {
    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.%d %d %s\r\n", c->version == 10 ? 0 : 1, status,
                     weft_http_reason(status));
    if (queue(c, line, (size_t)n) || (flen && queue(c, fields, flen))) return -1;
    const char *conn_hdr = !c->keep_alive ? "Connection: close\r\n"
                           : c->version == 10 ? "Connection: keep-alive\r\n" : "";
    if (queue(c, extra, strlen(extra)) || queue(c, conn_hdr, strlen(conn_hdr)) ||
        queue(c, "\r\n", 2))
        return -1;
    return 0;
}

static int flush_or_free(struct weft_http_conn *c) {
    if (flush(c) != 0) {
        conn_free(c, 0);
        return -1;
    }
    return 0;
}

int weft_http_conn_send(struct weft_http_conn *c, int status, const char *fields, size_t flen,
                        const char *body, size_t blen) {
    char extra[64] = "";
    int no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (!no_body) snprintf(extra, sizeof extra, "Content-Length: %zu\r\n", blen);
    if (write_head(c, status, fields, flen, extra)) return -1;
    if (!no_body && !c->is_head && blen && queue(c, body, blen)) return -1;
    next_request(c);
    return flush_or_free(c);
}

int weft_http_conn_start(struct weft_http_conn *c, int status, const char *fields, size_t flen) {
    c->chunked = c->version == 11 && !c->is_head;
    if (c->version == 10) c->keep_alive = 0;
    if (write_head(c, status, fields, flen, c->chunked ? "Transfer-Encoding: chunked\r\n" : ""))
        return -1;
    return flush_or_free(c);
}

int weft_http_conn_write(struct weft_http_conn *c, const char *p, size_t n) {
    if (n == 0 || c->is_head) return pending_out(c) > HIGH_WATER;
    if (c->chunked) {
        char size[32];
        int k = snprintf(size, sizeof size, "%zx\r\n", n);
        if (queue(c, size, (size_t)k) || queue(c, p, n) || queue(c, "\r\n", 2)) return -1;
    } else if (queue(c, p, n)) {
        return -1;
    }
    if (flush_or_free(c)) return -1;
    if (pending_out(c) > HIGH_WATER) {
        c->above_high = 1;
        return 1;
    }
    return 0;
}

int weft_http_conn_finish(struct weft_http_conn *c) {
    if (c->chunked && queue(c, "0\r\n\r\n", 5)) return -1;
    if (!c->chunked) c->keep_alive = c->keep_alive && c->is_head;
    next_request(c);
    return flush_or_free(c);
}

void weft_http_conn_abort(struct weft_http_conn *c) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_free(c, 0);
}
