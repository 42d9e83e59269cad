/* test_http_server_limits.c -- http_server.c's defences against clients
 * that would take all its memory or all its connections: output
 * backpressure on a client that pipelines without reading (the connection
 * pauses, nothing more reaches the owner, and every answer still arrives
 * once the client reads), and the connection caps (an address at its share
 * and a full server make room by evicting idle connections, longest idle
 * and most connected address first; a connection that sent a whole head is
 * never evicted; with nothing idle the newcomer is refused), and a client
 * that goes away while its request is with the owner: noticed at once
 * (on_gone), whether it closed or reset, while a pipelined request sent
 * meanwhile is kept (at most WEFT_HTTP_SERVER_IN_HELD bytes read) and
 * answered in order after the first.
 *
 * Clients are plain sockets in this process (loopback connects complete in
 * the kernel's backlog), or a forked child for the pipelining client. Every
 * wait is bounded by a deadline; a periodic timer keeps ev_run from
 * blocking past it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "harness.h"
#include "http_server.h"

static struct ev_loop *ev;
static ev_timer tick;

/* ------------------------------------------------------------- server */

#define BIG_BODY 4096

struct srv {
    struct weft_http_server *s;
    int requests;
    struct weft_http_conn *held[8]; /* requests to /hold, left unanswered */
    int nheld;
    int tags[8];                    /* req_ud of held[i]: &tags[i] */
    int gone;                       /* on_gone calls */
    void *gone_ud;                  /* req_ud of the last one */
};

static struct srv S;

static void srv_request(void *ud, struct weft_http_conn *c, const struct weft_http_msg *m) {
    struct srv *s = ud;
    s->requests++;
    if (strcmp(m->target, "/hold") == 0 && s->nheld < 8) {
        weft_http_conn_set_ud(c, &s->tags[s->nheld]);
        s->held[s->nheld++] = c;
        return;
    }
    static char body[BIG_BODY];
    memset(body, 'x', sizeof body);
    size_t n = strcmp(m->target, "/big") == 0 ? sizeof body : 2;
    weft_http_conn_send(c, 200, "", 0, body, n);
}

static void srv_gone(void *req_ud) {
    S.gone++;
    S.gone_ud = req_ud;
}
static void srv_writable(void *req_ud) {}

static const struct weft_http_server_callbacks srv_cb = {srv_request, srv_gone, srv_writable};

static void start_server(int max_conns, int per_address) {
    memset(&S, 0, sizeof S);
    struct weft_http_server_opts o = {
        .host = "127.0.0.1", .port = 0, .max_header = 16 * 1024, .max_body = 1024,
        .header_timeout = 30, .keepalive_timeout = 30, .max_connections = max_conns,
        .max_connections_per_address = per_address, .backlog = 64,
    };
    char err[256];
    S.s = weft_http_server_new(ev, &o, &srv_cb, &S, err, sizeof err);
    if (!S.s) fprintf(stdout, "# server: %s\n", err);
}

static struct weft_http_server_stats stats(void) {
    struct weft_http_server_stats st = {0};
    weft_http_server_stats(S.s, &st);
    return st;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents) {}

/* Run the loop until cond() holds or `max_seconds` pass; returns cond(). */
static int run_until(int (*cond)(void), double max_seconds) {
    double until = ev_time() + max_seconds;
    while (!cond() && ev_time() < until) ev_run(ev, EVRUN_ONCE);
    return cond();
}

/* -------------------------------------------------- loopback clients */

/* A non-blocking client socket from `source` (NULL: 127.0.0.1), connected
 * to the server (the kernel completes it; the server accepts later). */
static int client(const char *source) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in la = {.sin_family = AF_INET};
    inet_pton(AF_INET, source ? source : "127.0.0.1", &la.sin_addr);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)weft_http_server_port(S.s))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&la, sizeof la) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void send_str(int fd, const char *s) {
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) fprintf(stdout, "# short write\n");
}

/* 1 when the server closed the socket (EOF or reset), 0 while it is open. */
static int closed_by_server(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) continue; /* an answer: keep reading */
        if (n == 0) return 1;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    }
}

/* Connect and wait until the server has dealt with the connection (kept,
 * or refused at once: accepted counts only the kept ones). */
static int connect_and_settle(const char *source) {
    struct weft_http_server_stats before = stats();
    int fd = client(source);
    double until = ev_time() + 10;
    while (ev_time() < until) {
        struct weft_http_server_stats st = stats();
        if (st.accepted > before.accepted || st.rejected > before.rejected) break;
        ev_run(ev, EVRUN_ONCE);
    }
    return fd;
}

static int want_requests;
static int requests_reached(void) { return S.requests >= want_requests; }

/* --------------------------------------------------------------- tests */

/* One address at its share: a newcomer from it replaces its longest idle
 * connection; connections that sent a whole head stay; with none idle the
 * newcomer is refused. Other addresses are not affected. */
static void test_per_address_share(void) {
    start_server(100, 3);
    int a = connect_and_settle(NULL);
    int b = connect_and_settle(NULL);
    int c = connect_and_settle(NULL);
    int other = connect_and_settle("127.0.0.2");
    CHECK_EQ_INT(stats().connections, 4);
    /* a sends half a head (still idle), b a whole held request (not idle) */
    send_str(a, "GET /x HTTP/1.1\r\nHost: x\r\n");
    send_str(b, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 1;
    CHECK(run_until(requests_reached, 10));
    int d = connect_and_settle(NULL); /* evicts a: the longest idle of 127.0.0.1 */
    struct weft_http_server_stats st = stats();
    CHECK_EQ_INT(st.evicted, 1);
    CHECK_EQ_INT(st.connections, 4);
    CHECK_EQ_INT(closed_by_server(a), 1);
    CHECK_EQ_INT(closed_by_server(b), 0);
    CHECK_EQ_INT(closed_by_server(c), 0);
    int e = connect_and_settle(NULL); /* evicts c */
    CHECK_EQ_INT(closed_by_server(c), 1);
    CHECK_EQ_INT(closed_by_server(d), 0);
    /* d and e send whole heads: nothing of 127.0.0.1 is idle any more */
    send_str(d, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    send_str(e, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 3;
    CHECK(run_until(requests_reached, 10));
    int f = connect_and_settle(NULL);
    st = stats();
    CHECK_EQ_INT(st.rejected, 1);
    CHECK_EQ_INT(st.evicted, 2);
    CHECK_EQ_INT(closed_by_server(f), 1);
    /* another address still gets in and is served */
    int g = connect_and_settle("127.0.0.2");
    CHECK_EQ_INT(closed_by_server(g), 0);
    CHECK_EQ_INT(closed_by_server(other), 0);
    CHECK_EQ_INT(stats().connections, 5);
    weft_http_server_free(S.s);
    int fds[] = {a, b, c, d, e, f, g, other};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) close(fds[i]);
}

/* The server full of idle connections: a newcomer evicts the longest idle
 * connection of the most connected address, and is served. */
static void test_total_cap_evicts_idle(void) {
    start_server(4, 4);
    int lone = connect_and_settle("127.0.0.3");  /* longest idle, but its address has one */
    int x1 = connect_and_settle("127.0.0.2");
    int x2 = connect_and_settle("127.0.0.2");
    int x3 = connect_and_settle("127.0.0.2");
    CHECK_EQ_INT(stats().connections, 4);
    int n = connect_and_settle(NULL);
    struct weft_http_server_stats st = stats();
    CHECK_EQ_INT(st.evicted, 1);
    CHECK_EQ_INT(st.rejected, 0);
    CHECK_EQ_INT(st.connections, 4);
    CHECK_EQ_INT(closed_by_server(x1), 1);
    CHECK_EQ_INT(closed_by_server(lone), 0);
    CHECK_EQ_INT(closed_by_server(x2), 0);
    /* the newcomer is served */
    send_str(n, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 1;
    CHECK(run_until(requests_reached, 10));
    for (int i = 0; i < 5; i++) ev_run(ev, EVRUN_NOWAIT);
    char buf[256];
    ssize_t r = read(n, buf, sizeof buf - 1);
    buf[r > 0 ? r : 0] = '\0';
    CHECK(strncmp(buf, "HTTP/1.1 200 OK", 15) == 0);
    weft_http_server_free(S.s);
    close(lone), close(x1), close(x2), close(x3), close(n);
}

/* The default share is a quarter of max_connections. */
static void test_default_share(void) {
    start_server(8, 0);
    int a = connect_and_settle(NULL);
    int b = connect_and_settle(NULL);
    int c = connect_and_settle(NULL);
    CHECK_EQ_INT(stats().evicted, 1);
    CHECK_EQ_INT(closed_by_server(a), 1);
    CHECK_EQ_INT(closed_by_server(b), 0);
    weft_http_server_free(S.s);
    close(a), close(b), close(c);
}

#define PIPELINED 5000

/* Child: pipeline PIPELINED requests for a 4 KiB answer with a tiny receive
 * buffer, read nothing until a byte arrives on `go`, then read and count the
 * answers. Exits 0 when all arrived. */
static void pipelining_child(int port, int go) {
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) _exit(2);
    static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    static char all[PIPELINED * (sizeof req - 1)];
    for (int i = 0; i < PIPELINED; i++) memcpy(all + i * (sizeof req - 1), req, sizeof req - 1);
    /* Non-blocking: the server stops reading once paused, so the writes
     * stall until `go` says to read (and the server reads again). */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t off = 0;
    int reading = 0;
    long answers = 0, matched = 0;
    static const char pat[] = "HTTP/1.1 200 OK";
    while (answers < PIPELINED) {
        struct pollfd p[2] = {{.fd = fd, .events = (short)((off < sizeof all ? POLLOUT : 0) |
                                                           (reading ? POLLIN : 0))},
                              {.fd = go, .events = reading ? 0 : POLLIN}};
        if (poll(p, 2, 30000) <= 0) _exit(3);
        if (p[1].revents) reading = 1;
        if (p[0].revents & POLLOUT) {
            ssize_t w = write(fd, all + off, sizeof all - off);
            if (w > 0) off += (size_t)w;
        }
        if (reading && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[65536];
            ssize_t n = read(fd, buf, sizeof buf);
            if (n == 0) _exit(4);
            for (ssize_t i = 0; i < n; i++) {
                /* count status lines, across reads */
                if (buf[i] == pat[matched]) {
                    if (++matched == (long)sizeof pat - 1) {
                        answers++;
                        matched = 0;
                    }
                } else {
                    matched = buf[i] == pat[0];
                }
            }
        }
    }
    _exit(0);
}

struct child {
    ev_child w;
    int done;
    int status;
};

static struct child CH;

static void child_cb(struct ev_loop *l, ev_child *w, int revents) {
    ev_child_stop(l, w);
    CH.done = 1;
    CH.status = WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : 99;
}

static int paused_one(void) { return stats().paused == 1; }
static int child_done(void) { return CH.done; }

/* A client pipelining without reading: the connection pauses with the
 * requests not yet dispatched, dispatches nothing more while paused, and
 * answers every request once the client reads. */
static void test_pipelining_backpressure(void) {
    start_server(100, 0);
    int go[2];
    if (pipe(go) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        pipelining_child(weft_http_server_port(S.s), go[0]);
    }
    close(go[0]);
    memset(&CH, 0, sizeof CH);
    ev_child_init(&CH.w, child_cb, pid, 0);
    ev_child_start(ev, &CH.w);
    CHECK(run_until(paused_one, 20));
    int at_pause = S.requests;
    CHECK(at_pause > 0);
    CHECK(at_pause < PIPELINED);
    /* paused: the loop runs, nothing more is dispatched */
    for (int i = 0; i < 20; i++) ev_run(ev, EVRUN_NOWAIT);
    CHECK_EQ_INT(S.requests, at_pause);
    CHECK_EQ_INT(stats().paused, 1);
    fprintf(stdout, "# paused after %d of %d pipelined requests\n", at_pause, PIPELINED);
    /* the client reads: everything is answered */
    if (write(go[1], "g", 1) != 1) fprintf(stdout, "# pipe write failed\n");
    CHECK(run_until(child_done, 60));
    if (!CH.done) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ev_child_stop(ev, &CH.w);
    }
    CHECK_EQ_INT(CH.status, 0);
    CHECK_EQ_INT(S.requests, PIPELINED);
    CHECK_EQ_INT(stats().paused, 0);
    close(go[1]);
    weft_http_server_free(S.s);
}

/* ------------------------------------- a client gone while handled */

static int gone_one(void) { return S.gone >= 1; }

/* A request is with the owner (/hold, unanswered); its client closes (or,
 * with `reset`, resets) the connection. The server notices without writing
 * anything: on_gone with the request's ud, the connection freed. */
static void client_leaves(int reset) {
    start_server(100, 0);
    int fd = client(NULL);
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 1;
    CHECK(run_until(requests_reached, 10));
    CHECK_EQ_INT(stats().active, 1);
    /* the owner has not answered: nothing to notice yet */
    for (int i = 0; i < 5; i++) ev_run(ev, EVRUN_NOWAIT);
    CHECK_EQ_INT(S.gone, 0);
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
    CHECK(run_until(gone_one, 10));
    CHECK_EQ_INT(S.gone, 1);
    CHECK(S.gone_ud == &S.tags[0]);
    struct weft_http_server_stats st = stats();
    CHECK_EQ_INT(st.connections, 0);
    CHECK_EQ_INT(st.active, 0);
    weft_http_server_free(S.s);
    CHECK_EQ_INT(S.gone, 1); /* not told twice */
}

static void test_gone_on_close_while_handled(void) { client_leaves(0); }
static void test_gone_on_reset_while_handled(void) { client_leaves(1); }

/* Read what `fd` has (non-blocking) into buf at *len; 1 on EOF or error. */
static int drain(int fd, char *buf, size_t cap, size_t *len) {
    for (;;) {
        if (*len + 1 >= cap) return 0;
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n > 0) {
            *len += (size_t)n;
            buf[*len] = '\0';
            continue;
        }
        if (n == 0) return 1;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    }
}

static int count_str(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* A request pipelined behind one being handled is read meanwhile but not
 * dispatched; once the first is answered, it is, and both answers arrive in
 * order on the same connection. */
static void test_pipelined_while_handled(void) {
    start_server(100, 0);
    int fd = client(NULL);
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 1;
    CHECK(run_until(requests_reached, 10));
    send_str(fd, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 20; i++) ev_run(ev, EVRUN_NOWAIT);
    CHECK_EQ_INT(S.requests, 1); /* one request with the owner at a time */
    CHECK_EQ_INT(S.gone, 0);
    CHECK_EQ_INT(weft_http_conn_send(S.held[0], 200, "", 0, "first", 5), 0);
    want_requests = 2;
    CHECK(run_until(requests_reached, 10));
    static char buf[4096];
    size_t len = 0;
    double until = ev_time() + 10;
    while (count_str(buf, "HTTP/1.1 200 OK") < 2 && ev_time() < until) {
        ev_run(ev, EVRUN_ONCE);
        if (drain(fd, buf, sizeof buf, &len)) break;
    }
    const char *first = strstr(buf, "\r\n\r\nfirst");
    const char *second = first ? strstr(first, "HTTP/1.1 200 OK") : NULL;
    CHECK(first != NULL);
    CHECK(second != NULL && strstr(second, "\r\n\r\nxx") != NULL);
    CHECK_EQ_INT(closed_by_server(fd), 0); /* still open for more */
    CHECK_EQ_INT(S.gone, 0);
    weft_http_server_free(S.s);
    close(fd);
}

#define HELD_REQUESTS 4000

/* More pipelined input than the server keeps while a request is handled
 * (4000 requests, about 120 KiB, over WEFT_HTTP_SERVER_IN_HELD): nothing
 * else is dispatched meanwhile, and once the first is answered every
 * request is answered, in order, none lost where reading stopped. */
static void test_pipelined_over_held_cap(void) {
    start_server(100, 0);
    int fd = client(NULL);
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    want_requests = 1;
    CHECK(run_until(requests_reached, 10));
    static const char req[] = "GET /p HTTP/1.1\r\nHost: x\r\n\r\n";
    static char all[HELD_REQUESTS * (sizeof req - 1)];
    for (int i = 0; i < HELD_REQUESTS; i++) memcpy(all + i * (sizeof req - 1), req, sizeof req - 1);
    CHECK(sizeof all > WEFT_HTTP_SERVER_IN_HELD);
    size_t off = 0;
    double until = ev_time() + 10;
    while (off < sizeof all && ev_time() < until) {
        ssize_t w = write(fd, all + off, sizeof all - off);
        if (w > 0) off += (size_t)w;
        ev_run(ev, EVRUN_NOWAIT);
    }
    CHECK_EQ_INT(off, sizeof all);
    for (int i = 0; i < 20; i++) ev_run(ev, EVRUN_NOWAIT);
    CHECK_EQ_INT(S.requests, 1);
    CHECK_EQ_INT(weft_http_conn_send(S.held[0], 200, "", 0, "first", 5), 0);
    /* every answer arrives: count status lines as they come */
    static char buf[65536];
    long answers = 0;
    size_t keep = 0;
    static const char pat[] = "HTTP/1.1 200 OK";
    until = ev_time() + 30;
    while (answers < HELD_REQUESTS + 1 && ev_time() < until) {
        ev_run(ev, EVRUN_ONCE);
        size_t len = keep;
        int eof = drain(fd, buf, sizeof buf, &len);
        answers += count_str(buf, pat);
        /* keep a tail that may hold the start of a split status line */
        keep = len < sizeof pat - 1 ? len : sizeof pat - 2;
        memmove(buf, buf + len - keep, keep);
        buf[keep] = '\0';
        if (eof) break;
    }
    CHECK_EQ_INT(answers, HELD_REQUESTS + 1);
    CHECK_EQ_INT(S.requests, HELD_REQUESTS + 1);
    CHECK_EQ_INT(S.gone, 0);
    weft_http_server_free(S.s);
    close(fd);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    ev = ev_default_loop(0);
    ev_timer_init(&tick, tick_cb, 0.05, 0.05);
    ev_timer_start(ev, &tick);
    RUN(test_per_address_share);
    RUN(test_total_cap_evicts_idle);
    RUN(test_default_share);
    RUN(test_pipelining_backpressure);
    RUN(test_gone_on_close_while_handled);
    RUN(test_gone_on_reset_while_handled);
    RUN(test_pipelined_while_handled);
    RUN(test_pipelined_over_held_cap);
    ev_timer_stop(ev, &tick);
    return DONE();
}
