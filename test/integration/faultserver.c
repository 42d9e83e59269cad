/* faultserver.c -- an HTTP/1.1 server that misbehaves on request, for the
 * integration tests of weft's HTTP client. Not linked with weft.
 *
 *   faultserver [--port N]
 *
 * Binds 127.0.0.1 (port 0 = ephemeral), prints "PORT <n>" as its first line
 * and serves until SIGTERM/SIGINT or until its stdin reaches EOF (tests
 * hold a pipe to it, so it dies with them). Routes:
 *   /ok                 200 small JSON
 *   /status/<code>      that status
 *   /echo               200 JSON: method, path, query, headers, body,
 *                       connections (accepted so far)
 *   /headers            repeated Set-Cookie, mixed-case names
 *   /big?bytes=N        N body bytes with Content-Length
 *   /big-chunked?bytes=N  the same, chunked
 *   /reset              Content-Length: 1000, 100 bytes, then a TCP reset
 *   /close              closes without answering
 *   /hang               never answers
 *   /slow?ms=N          answers after N ms
 *   /held, /release, /count   hold requests until /release; count them
 *   /stream?n=N&ms=M    chunked "data: i\n\n" events (i = 1..N), M ms apart
 *   /drip?bytes=N&ms=M  Content-Length N, then one byte every M ms
 *   /once[?rst=1]       answered (200 JSON: {"seen": /once requests so far,
 *                       "connections": accepted so far}) only as the first
 *                       request of its connection; as a later request on a
 *                       kept-alive connection it is read, then the
 *                       connection is closed (rst=1: reset) without an
 *                       answer -- what a server's idle-connection reaper
 *                       does to a client reusing a connection
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

struct conn {
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int busy;                   /* a request is being answered */
    int close_after;            /* close once the output is written */
    /* generated bodies */
    long gen_left;              /* bytes still to generate */
    int gen_chunked;
    long stream_left;           /* /stream events left */
    long stream_i;
    double interval;
    int held;
    int head;                   /* current request is HEAD: no body */
    unsigned long nreq;         /* requests read on this connection */
    struct conn *hnext;         /* held list */
};

static struct ev_loop *loop;
static unsigned long accepted;
static unsigned long once_seen;     /* /once requests read */
static struct conn *held_head;
static int held_count;

static void conn_close(struct conn *c);
static void try_parse(struct conn *c);

static int buf_add(char **p, size_t *len, size_t *cap, const char *d, size_t n) {
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + n) nc *= 2;
        char *np = realloc(*p, nc);
        if (!np) return -1;
        *p = np;
        *cap = nc;
    }
    memcpy(*p + *len, d, n);
    *len += n;
    return 0;
}

static void out(struct conn *c, const char *d, size_t n) {
    buf_add(&c->out, &c->out_len, &c->out_cap, d, n);
}

static void outs(struct conn *c, const char *s) { out(c, s, strlen(s)); }

static void fill_generated(struct conn *c) {
    char block[65536];
    while (c->gen_left > 0 && c->out_len - c->out_off < 256 * 1024) {
        size_t n = c->gen_left < (long)sizeof block ? (size_t)c->gen_left : sizeof block;
        memset(block, 'x', n);
        if (c->gen_chunked) {
            char h[32];
            int k = snprintf(h, sizeof h, "%zx\r\n", n);
            out(c, h, (size_t)k);
        }
        out(c, block, n);
        if (c->gen_chunked) outs(c, "\r\n");
        c->gen_left -= (long)n;
        if (c->gen_left == 0) {
            if (c->gen_chunked) outs(c, "0\r\n\r\n");
            c->busy = 0;
        }
    }
}

/* Write what we can; returns -1 when the connection was closed. */
static int flush(struct conn *c) {
    for (;;) {
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            if (c->gen_left > 0) {
                fill_generated(c);
                continue;
            }
            ev_io_stop(loop, &c->wio);
            if (c->close_after) {
                conn_close(c);
                return -1;
            }
            return 0;
        }
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                ev_io_start(loop, &c->wio);
                return 0;
            }
            conn_close(c);
            return -1;
        }
        c->out_off += (size_t)w;
    }
}

static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t blen,
                    const char *extra) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
                     ctype, blen, extra ? extra : "");
    out(c, head, (size_t)n);
    if (!c->head) out(c, body, blen);
    c->busy = 0;
}

static long qparam(const char *query, const char *name, long def) {
    if (!query) return def;
    size_t nl = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') return atol(p + nl + 1);
    }
    return def;
}

static void json_str(struct conn *c, char **b, size_t *len, size_t *cap, const char *s, size_t n) {
    buf_add(b, len, cap, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ch == '"' || ch == '\\') {
            e[0] = '\\';
            e[1] = (char)ch;
            buf_add(b, len, cap, e, 2);
        } else if (ch < 0x20) {
            int k = snprintf(e, sizeof e, "\\u%04x", ch);
            buf_add(b, len, cap, e, (size_t)k);
        } else {
            buf_add(b, len, cap, (const char *)&ch, 1);
        }
    }
    buf_add(b, len, cap, "\"", 1);
}

static void stream_cb(struct ev_loop *l, ev_timer *w, int revents) {
    struct conn *c = w->data;
    if (c->stream_left > 0) {
        char ev[64], chunk[96];
        int n = snprintf(ev, sizeof ev, "data: %ld\n\n", ++c->stream_i);
        int k = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", n, ev);
        out(c, chunk, (size_t)k);
        c->stream_left--;
        if (c->stream_left == 0) {
            outs(c, "0\r\n\r\n");
            c->busy = 0;
        } else {
            ev_timer_set(&c->timer, c->interval, 0.);
            ev_timer_start(loop, &c->timer);
        }
        if (flush(c) == 0 && !c->busy) try_parse(c);
    } else if (c->gen_left > 0) { /* drip */
        out(c, "x", 1);
        c->gen_left--;
        if (c->gen_left == 0) c->busy = 0;
        else {
            ev_timer_set(&c->timer, c->interval, 0.);
            ev_timer_start(loop, &c->timer);
        }
        if (flush(c) == 0 && !c->busy) try_parse(c);
    }
}

static void slow_cb(struct ev_loop *l, ev_timer *w, int revents) {
    struct conn *c = w->data;
    respond(c, 200, "text/plain", "slow\n", 5, NULL);
    if (flush(c) == 0) try_parse(c);
}

static void release_held(void) {
    while (held_head) {
        struct conn *c = held_head;
        held_head = c->hnext;
        c->held = 0;
        held_count--;
        respond(c, 200, "text/plain", "released\n", 9, NULL);
        if (flush(c) == 0) try_parse(c);
    }
}

/* Handle one complete request. */
/* Returns -1 when the connection was closed. */
static int route(struct conn *c, const char *method, char *target, char *headers, size_t hlen,
                 const char *body, size_t blen) {
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    const char *path = target;
    c->busy = 1;
    c->head = strcmp(method, "HEAD") == 0;
    char tmp[256];
    if (strcmp(path, "/ok") == 0) {
        static const char b[] = "{\"ok\":true,\"text\":\"hello from faultserver\"}";
        respond(c, 200, "application/json", b, sizeof b - 1, NULL);
    } else if (strncmp(path, "/status/", 8) == 0) {
        int st = atoi(path + 8);
        if (st < 100 || st > 999) st = 400;
        int n = snprintf(tmp, sizeof tmp, "{\"status\":%d}", st);
        respond(c, st, "application/json", tmp, (size_t)n, NULL);
    } else if (strcmp(path, "/echo") == 0) {
        char *b = NULL;
        size_t len = 0, cap = 0;
        int n = snprintf(tmp, sizeof tmp, "{\"connections\":%lu,\"method\":", accepted);
        buf_add(&b, &len, &cap, tmp, (size_t)n);
        json_str(c, &b, &len, &cap, method, strlen(method));
        buf_add(&b, &len, &cap, ",\"path\":", 8);
        json_str(c, &b, &len, &cap, path, strlen(path));
        if (query) {
            buf_add(&b, &len, &cap, ",\"query\":", 9);
            json_str(c, &b, &len, &cap, query, strlen(query));
        }
        buf_add(&b, &len, &cap, ",\"headers\":[", 12);
        /* headers: lines "Name: value\r\n" */
        char *p = headers, *end = headers + hlen;
        int first = 1;
        while (p < end) {
            char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            if (!eol) eol = end;
            char *colon = memchr(p, ':', (size_t)(eol - p));
            if (colon) {
                char *v = colon + 1;
                while (v < eol && *v == ' ') v++;
                if (!first) buf_add(&b, &len, &cap, ",", 1);
                first = 0;
                buf_add(&b, &len, &cap, "[", 1);
                json_str(c, &b, &len, &cap, p, (size_t)(colon - p));
                buf_add(&b, &len, &cap, ",", 1);
                json_str(c, &b, &len, &cap, v, (size_t)(eol - v));
                buf_add(&b, &len, &cap, "]", 1);
            }
            p = eol + 2;
        }
        buf_add(&b, &len, &cap, "],\"body\":", 9);
        json_str(c, &b, &len, &cap, body, blen);
        n = snprintf(tmp, sizeof tmp, ",\"body_length\":%zu}", blen);
        buf_add(&b, &len, &cap, tmp, (size_t)n);
        respond(c, 200, "application/json", b, len, NULL);
        free(b);
    } else if (strcmp(path, "/headers") == 0) {
        respond(c, 200, "text/plain", "headers\n", 8,
                "Set-Cookie: a=1\r\nX-Mixed-Case: Yes\r\nSet-Cookie: b=2\r\n");
    } else if (strcmp(path, "/big") == 0 || strcmp(path, "/big-chunked") == 0) {
        long n = qparam(query, "bytes", 1000);
        c->gen_chunked = strcmp(path, "/big-chunked") == 0;
        int k = c->gen_chunked
                    ? snprintf(tmp, sizeof tmp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    : snprintf(tmp, sizeof tmp, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", n);
        out(c, tmp, (size_t)k);
        c->gen_left = n;
        if (n == 0) {
            if (c->gen_chunked) outs(c, "0\r\n\r\n");
            c->busy = 0;
        } else {
            fill_generated(c);
        }
    } else if (strcmp(path, "/reset") == 0) {
        char b[100];
        memset(b, 'r', sizeof b);
        outs(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        out(c, b, sizeof b);
        if (flush(c) < 0) return -1;
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        conn_close(c);
        return -1;
    } else if (strcmp(path, "/close") == 0) {
        conn_close(c);
        return -1;
    } else if (strcmp(path, "/once") == 0) {
        once_seen++;
        if (c->nreq > 1) {
            if (qparam(query, "rst", 0)) {
                struct linger lg = {1, 0};
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            conn_close(c);
            return -1;
        }
        int n = snprintf(tmp, sizeof tmp, "{\"seen\":%lu,\"connections\":%lu}", once_seen,
                         accepted);
        respond(c, 200, "application/json", tmp, (size_t)n, NULL);
    } else if (strcmp(path, "/hang") == 0) {
        /* never answer; the connection stays until the client leaves */
    } else if (strcmp(path, "/slow") == 0) {
        ev_timer_init(&c->timer, slow_cb, (double)qparam(query, "ms", 100) / 1000.0, 0.);
        c->timer.data = c;
        ev_timer_start(loop, &c->timer);
    } else if (strcmp(path, "/held") == 0) {
        c->held = 1;
        c->hnext = held_head;
        held_head = c;
        held_count++;
    } else if (strcmp(path, "/release") == 0) {
        respond(c, 200, "text/plain", "ok\n", 3, NULL);
        release_held();
    } else if (strcmp(path, "/count") == 0) {
        int n = snprintf(tmp, sizeof tmp, "%d", held_count);
        respond(c, 200, "text/plain", tmp, (size_t)n, NULL);
    } else if (strcmp(path, "/stream") == 0 || strcmp(path, "/drip") == 0) {
        c->interval = (double)qparam(query, "ms", 10) / 1000.0;
        ev_timer_init(&c->timer, stream_cb, c->interval, 0.);
        c->timer.data = c;
        if (path[1] == 's') {
            c->stream_left = qparam(query, "n", 3);
            c->stream_i = 0;
            outs(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n");
        } else {
            c->gen_left = qparam(query, "bytes", 10);
            int k = snprintf(tmp, sizeof tmp, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n",
                             c->gen_left);
            out(c, tmp, (size_t)k);
        }
        ev_timer_start(loop, &c->timer);
        /* the generated body is timer-driven, not writer-driven */
        if (path[1] == 'd') {
            long left = c->gen_left;
            c->gen_left = 0;
            if (flush(c) < 0) return -1;
            c->gen_left = left;
            return 0;
        }
    } else {
        respond(c, 404, "text/plain", "not found\n", 10, NULL);
    }
    return flush(c);
}

/* Parse complete requests from c->in while the connection is not busy. */
static void try_parse(struct conn *c) {
    while (!c->busy && c->in_len > 0) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) return;
        size_t head_len = (size_t)(end - c->in) + 4;
        char *line_end = memmem(c->in, head_len, "\r\n", 2);
        char method[16] = "", target[2048] = "";
        char line[4096];
        size_t ll = (size_t)(line_end - c->in);
        if (ll >= sizeof line) ll = sizeof line - 1;
        memcpy(line, c->in, ll);
        line[ll] = '\0';
        if (sscanf(line, "%15s %2047s", method, target) != 2) {
            respond(c, 400, "text/plain", "bad\n", 4, "Connection: close\r\n");
            c->close_after = 1;
            flush(c);
            return;
        }
        size_t clen = 0;
        char *hdrs = line_end + 2;
        size_t hlen = head_len - (size_t)(hdrs - c->in) - 2;
        for (char *p = hdrs; p < hdrs + hlen;) {
            char *eol = memmem(p, (size_t)(hdrs + hlen - p), "\r\n", 2);
            if (!eol) break;
            if (strncasecmp(p, "Content-Length:", 15) == 0) clen = strtoul(p + 15, NULL, 10);
            p = eol + 2;
        }
        if (c->in_len < head_len + clen) return; /* body incomplete */
        char *headers = malloc(hlen + 1);
        memcpy(headers, hdrs, hlen);
        headers[hlen] = '\0';
        char *body = malloc(clen + 1);
        memcpy(body, c->in + head_len, clen);
        size_t consumed = head_len + clen;
        c->nreq++;
        memmove(c->in, c->in + consumed, c->in_len - consumed);
        c->in_len -= consumed;
        int rc = route(c, method, target, headers, hlen, body, clen);
        free(headers);
        free(body);
        if (rc < 0) return; /* closed */
    }
}

static void read_cb(struct ev_loop *l, ev_io *w, int revents) {
    struct conn *c = w->data;
    char buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0) return;
    buf_add(&c->in, &c->in_len, &c->in_cap, buf, (size_t)n);
    try_parse(c);
}

static void write_cb(struct ev_loop *l, ev_io *w, int revents) {
    struct conn *c = w->data;
    if (flush(c) == 0 && !c->busy) try_parse(c);
}

static void conn_close(struct conn *c) {
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->timer);
    if (c->held) {
        struct conn **pp = &held_head;
        while (*pp && *pp != c) pp = &(*pp)->hnext;
        if (*pp) *pp = c->hnext;
        held_count--;
    }
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void accept_cb(struct ev_loop *l, ev_io *w, int revents) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        c->fd = fd;
        ev_io_init(&c->rio, read_cb, fd, EV_READ);
        c->rio.data = c;
        ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
        c->wio.data = c;
        ev_timer_init(&c->timer, slow_cb, 0., 0.);
        c->timer.data = c;
        ev_io_start(loop, &c->rio);
        accepted++;
    }
}

static void stdin_cb(struct ev_loop *l, ev_io *w, int revents) {
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf);
    if (n <= 0) ev_break(l, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *l, ev_signal *w, int revents) { ev_break(l, EVBREAK_ALL); }

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    loop = ev_default_loop(0);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
        perror("faultserver: bind/listen");
        return 1;
    }
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ev_io lio, sio;
    ev_io_init(&lio, accept_cb, lfd, EV_READ);
    ev_io_start(loop, &lio);
    ev_io_init(&sio, stdin_cb, 0, EV_READ);
    ev_io_start(loop, &sio);
    ev_signal s1, s2;
    ev_signal_init(&s1, signal_cb, SIGTERM);
    ev_signal_start(loop, &s1);
    ev_signal_init(&s2, signal_cb, SIGINT);
    ev_signal_start(loop, &s2);
    ev_run(loop, 0);
    return 0;
}
