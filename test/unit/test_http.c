/* test_http.c -- the HTTP mechanisms without Lua: http_client.c talking to
 * http_server.c on one libev loop, and the server hit with raw bytes by a
 * forked child doing blocking I/O (garbage, a 10 MB header, a half-close,
 * pipelining). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "harness.h"
#include "http_client.h"
#include "http_server.h"

static struct ev_loop *ev;

/* ------------------------------------------------------------- server */

struct srv {
    struct weft_http_server *s;
    int requests;
    struct weft_http_conn *held;    /* a request left unanswered */
    char last_target[256];
    char last_body[256];
    int gone;                       /* on_gone calls */
};

static struct srv S;

static void srv_request(void *ud, struct weft_http_conn *c, const struct weft_http_msg *m) {
    struct srv *s = ud;
    s->requests++;
    snprintf(s->last_target, sizeof s->last_target, "%s", m->target);
    snprintf(s->last_body, sizeof s->last_body, "%.*s", (int)m->body_len, m->body);
    weft_http_conn_set_ud(c, s);
    if (strcmp(m->target, "/hold") == 0) {
        s->held = c;
        return;
    }
    if (strcmp(m->target, "/stream") == 0) {
        weft_http_conn_start(c, 200, "", 0);
        weft_http_conn_write(c, "ab", 2);
        weft_http_conn_write(c, "c", 1);
        weft_http_conn_finish(c);
        return;
    }
    if (strcmp(m->target, "/big") == 0) {
        static char big[2000];
        memset(big, 'b', sizeof big);
        weft_http_conn_send(c, 200, "", 0, big, sizeof big);
        return;
    }
    if (strcmp(m->target, "/missing") == 0) {
        weft_http_conn_send(c, 404, "", 0, "no", 2);
        return;
    }
    static const char fields[] = "Set-Cookie: a=1\r\nX-Mixed: Yes\r\nSet-Cookie: b=2\r\n";
    char body[300];
    int n = snprintf(body, sizeof body, "%s %s|%.*s", m->method, m->target, (int)m->body_len, m->body);
    weft_http_conn_send(c, 200, fields, sizeof fields - 1, body, (size_t)n);
}

static void srv_gone(void *req_ud) { ((struct srv *)req_ud)->gone++; }
static void srv_writable(void *req_ud) {}

static const struct weft_http_server_callbacks srv_cb = {srv_request, srv_gone, srv_writable};

static void start_server(void) {
    memset(&S, 0, sizeof S);
    struct weft_http_server_opts o = {
        .host = "127.0.0.1", .port = 0, .max_header = 16 * 1024, .max_body = 1024,
        .header_timeout = 5, .keepalive_timeout = 5, .max_connections = 100, .backlog = 64,
    };
    char err[256];
    S.s = weft_http_server_new(ev, &o, &srv_cb, &S, err, sizeof err);
    if (!S.s) fprintf(stdout, "# server: %s\n", err);
}

/* ------------------------------------------------------------- client */

struct result {
    int done;
    int status;
    char kind[32];
    char reason[32];
    char body[4096];
    size_t len;
    char headers[1024];             /* "name=value;" ... */
    int pause_next;
};

static void c_status(void *ud, int status, int version) {
    struct result *r = ud;
    r->status = status;
    r->headers[0] = '\0';
}

static void c_header(void *ud, const char *n, size_t nl, const char *v, size_t vl) {
    struct result *r = ud;
    size_t l = strlen(r->headers);
    snprintf(r->headers + l, sizeof r->headers - l, "%.*s=%.*s;", (int)nl, n, (int)vl, v);
}

static int c_data(void *ud, const char *p, size_t n) {
    struct result *r = ud;
    if (r->len + n >= sizeof r->body) return -1;
    memcpy(r->body + r->len, p, n);
    r->len += n;
    return 0;
}

static void c_done(void *ud, const struct weft_http_outcome *o) {
    struct result *r = ud;
    r->done++;
    snprintf(r->kind, sizeof r->kind, "%s", o->kind ? o->kind : "");
    snprintf(r->reason, sizeof r->reason, "%s", o->reason ? o->reason : "");
}

static const struct weft_http_callbacks cli_cb = {c_status, c_header, c_data, c_done};

static struct weft_xfer *start(struct weft_http_client *c, struct result *r, const char *url,
                               const char *body, long timeout_ms, curl_off_t max_body) {
    memset(r, 0, sizeof *r);
    struct weft_http_request req = {0};
    req.url = url;
    req.timeout_ms = timeout_ms;
    req.connect_timeout_ms = 2000;
    req.max_body = max_body;
    if (body) {
        req.body = body;
        req.body_len = strlen(body);
        req.has_body = 1;
        req.headers = curl_slist_append(NULL, "Content-Type: text/plain");
    }
    char err[256];
    struct weft_xfer *x = weft_http_start(c, &req, &cli_cb, r, err, sizeof err);
    if (!x) fprintf(stdout, "# start: %s\n", err);
    return x;
}

static void run_until(int *flag, double max_seconds) {
    double until = ev_time() + max_seconds;
    while (!*flag && ev_time() < until) ev_run(ev, EVRUN_ONCE);
}

static void url_for(char *buf, size_t n, int port, const char *path) {
    snprintf(buf, n, "http://127.0.0.1:%d%s", port, path);
}

/* ------------------------------------------------------ client tests */

static void test_client_server_roundtrip(void) {
    start_server();
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    char url[128];
    url_for(url, sizeof url, weft_http_server_port(S.s), "/hello?x=1");
    start(c, &r, url, NULL, 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.body, "GET /hello?x=1|");
    CHECK(strstr(r.headers, "Set-Cookie=a=1;") != NULL);
    CHECK(strstr(r.headers, "Set-Cookie=b=2;") != NULL);

    url_for(url, sizeof url, weft_http_server_port(S.s), "/post");
    start(c, &r, url, "payload", 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_STR(r.body, "POST /post|payload");

    url_for(url, sizeof url, weft_http_server_port(S.s), "/missing");
    start(c, &r, url, NULL, 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_STR(r.kind, "");

    url_for(url, sizeof url, weft_http_server_port(S.s), "/stream");
    start(c, &r, url, NULL, 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_STR(r.body, "abc");
    CHECK(strstr(r.headers, "Transfer-Encoding=chunked;") != NULL);

    struct weft_http_server_stats st;
    weft_http_server_stats(S.s, &st);
    CHECK_EQ_INT(st.accepted, 1); /* one connection reused for all four */
    weft_http_client_free(c);
    weft_http_server_free(S.s);
}

static void test_client_refused(void) {
    start_server();
    int port = weft_http_server_port(S.s);
    weft_http_server_free(S.s);
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    char url[128];
    url_for(url, sizeof url, port, "/");
    start(c, &r, url, NULL, 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_STR(r.reason, "refused");
    weft_http_client_free(c);
}

static void test_client_timeout_frees_transfer(void) {
    start_server();
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    char url[128];
    url_for(url, sizeof url, weft_http_server_port(S.s), "/hold");
    double t0 = ev_time();
    start(c, &r, url, NULL, 200, 0);
    run_until(&r.done, 10);
    CHECK(ev_time() - t0 >= 0.19);
    CHECK_EQ_STR(r.kind, "timeout");
    CHECK_EQ_STR(r.reason, "timeout");
    struct weft_http_stats st;
    weft_http_client_stats(c, &st);
    CHECK_EQ_INT(st.in_flight, 0);
    /* the server notices the client left when it answers or is freed */
    weft_http_server_free(S.s);
    CHECK_EQ_INT(S.gone, 1);
    weft_http_client_free(c);
}

static void test_client_max_body(void) {
    start_server();
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    char url[128];
    url_for(url, sizeof url, weft_http_server_port(S.s), "/big");
    start(c, &r, url, NULL, 5000, 1000);
    run_until(&r.done, 10);
    CHECK_EQ_STR(r.kind, "integration");
    CHECK_EQ_STR(r.reason, "too_large");
    weft_http_client_free(c);
    weft_http_server_free(S.s);
}

static void test_client_cancel(void) {
    start_server();
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    char url[128];
    url_for(url, sizeof url, weft_http_server_port(S.s), "/hold");
    struct weft_xfer *x = start(c, &r, url, NULL, 60000, 0);
    run_until(&S.requests, 10);
    CHECK_EQ_INT(S.requests, 1);
    weft_http_cancel(x);
    struct weft_http_stats st;
    weft_http_client_stats(c, &st);
    CHECK_EQ_INT(st.in_flight, 0);
    for (int i = 0; i < 5; i++) ev_run(ev, EVRUN_NOWAIT);
    CHECK_EQ_INT(r.done, 0); /* no callback after a cancel */
    weft_http_client_free(c);
    weft_http_server_free(S.s);
}

static void test_client_bad_url(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    start(c, &r, "ftp://127.0.0.1/", NULL, 5000, 0);
    run_until(&r.done, 10);
    CHECK_EQ_STR(r.kind, "invalid_request");
    CHECK_EQ_STR(r.reason, "bad_url");
    weft_http_client_free(c);
}

/* --------------------------------------- server tests with raw bytes */

struct child {
    ev_child w;
    int done;
    int status;
};

static void child_cb(struct ev_loop *l, ev_child *w, int revents) {
    struct child *ch = (struct child *)w;
    ev_child_stop(l, w);
    ch->done = 1;
    ch->status = WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : 99;
}

/* In a child: connect, send `req` (plus `pad` bytes of header if > 0),
 * optionally half-close, read the answer; exit 0 when it contains
 * `expect`, else 1. */
static int raw_exchange(int port, const char *req, size_t pad, int half_close, const char *expect) {
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) _exit(2);
        if (write(fd, req, strlen(req)) < 0) _exit(3);
        if (pad) {
            static char block[65536];
            memset(block, 'a', sizeof block);
            if (write(fd, "X-Pad: ", 7) < 0) _exit(3);
            for (size_t left = pad; left > 0;) {
                size_t n = left < sizeof block ? left : sizeof block;
                if (write(fd, block, n) < 0) break; /* server closed: fine */
                left -= n;
            }
        }
        if (half_close) shutdown(fd, SHUT_WR);
        static char buf[65536];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        _exit(strstr(buf, expect) ? 0 : 1);
    }
    struct child ch = {0};
    ev_child_init(&ch.w, child_cb, pid, 0);
    ev_child_start(ev, &ch.w);
    run_until(&ch.done, 30);
    if (!ch.done) {
        kill(pid, SIGKILL);
        return 98;
    }
    return ch.status;
}

static void test_server_abuse(void) {
    start_server();
    int port = weft_http_server_port(S.s);
    CHECK_EQ_INT(raw_exchange(port, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, 0,
                              "GET /a|"), 0);
    CHECK_EQ_INT(raw_exchange(port, "\x01\x02garbage\r\n\r\n", 0, 0, "HTTP/1.1 400"), 0);
    CHECK_EQ_INT(raw_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n", 10 * 1024 * 1024, 0,
                              "HTTP/1.1 431"), 0);
    CHECK_EQ_INT(raw_exchange(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 0,
                              0, "HTTP/1.1 413"), 0);
    CHECK_EQ_INT(raw_exchange(port, "GET /half HTTP/1.1\r\nHost: x\r\n\r\n", 0, 1, "GET /half|"), 0);
    /* two pipelined requests: both answered, in order */
    CHECK_EQ_INT(raw_exchange(port,
                              "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              0, 0, "GET /one|HTTP/1.1 200 OK"), 0);
    CHECK_EQ_STR(S.last_target, "/two");
    /* chunked request body */
    CHECK_EQ_INT(raw_exchange(port,
                              "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "Connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                              0, 0, "POST /c|abcde"), 0);
    CHECK_EQ_INT(raw_exchange(port, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\nzz\r\nabc\r\n", 0, 0, "HTTP/1.1 400"), 0);
    /* still serving */
    CHECK_EQ_INT(raw_exchange(port, "GET /z HTTP/1.0\r\n\r\n", 0, 0, "GET /z|"), 0);
    weft_http_server_free(S.s);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ev = ev_default_loop(0);
    RUN(test_client_server_roundtrip);
    RUN(test_client_refused);
    RUN(test_client_timeout_frees_transfer);
    RUN(test_client_max_body);
    RUN(test_client_cancel);
    RUN(test_client_bad_url);
    RUN(test_server_abuse);
    curl_global_cleanup();
    return DONE();
}
