/* test_http_client.c -- http_client.c against a misbehaving raw server.
 *
 * test_http.c covers the well-behaved paths against weft's own server; this
 * file covers what a real upstream does wrong: a reset in the middle of the
 * body (RST via SO_LINGER 0), a clean close before Content-Length bytes,
 * a close with no answer, a stall after the head (idle timeout), an
 * interim 1xx head before the final one, a chunked body over max_body, a
 * large body read with pause/resume backpressure, and freeing the client
 * with transfers in flight. Also: the header list that owns its lines
 * (secret ones zeroed), URLs built on an origin, and libcurl's own resend
 * of a request on a reused connection that turned out dead (`sends`).
 *
 * The server is a child forked at the start of main (before curl or libev
 * allocate anything) that forks once more per connection and does blocking
 * I/O; the scenario is the request path. Connection handlers exit on their
 * own (client closes, or an alarm), the acceptor is killed at the end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "buf.h"
#include "harness.h"
#include "http_client.h"

static struct ev_loop *ev;
static int port;
static volatile unsigned long *once_seen; /* shared with the server: /once
                                             requests read */

/* -------------------------------------------------------- raw server */

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(0);
        p += w;
        n -= (size_t)w;
    }
}

static void say(int fd, const char *s) { write_all(fd, s, strlen(s)); }

static char last_head[16384]; /* the last request head read (server side) */

/* Read a request head (and a Content-Length body, answering Expect).
 * Returns 0 at EOF. */
static int read_request(int fd, char *path, size_t pathlen) {
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len + 1 >= sizeof buf) return 0;
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) return 0;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    memcpy(last_head, buf, (size_t)(end - buf));
    last_head[end - buf] = '\0';
    const char *sp = strchr(buf, ' ');
    if (!sp) return 0;
    size_t i = 0;
    for (sp++; *sp && *sp != ' ' && i + 1 < pathlen; sp++) path[i++] = *sp;
    path[i] = '\0';
    long cl = 0;
    const char *h = strcasestr(buf, "\r\ncontent-length:");
    if (h && h < end) cl = strtol(h + 17, NULL, 10);
    if (strcasestr(buf, "\r\nexpect: 100-continue")) say(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    long have = (long)(len - (size_t)(end + 4 - buf));
    while (have < cl) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) return 0;
        have += r;
    }
    return 1;
}

/* Block until the client closes (or the alarm ends us). */
static void wait_close(int fd) {
    char b[4096];
    while (read(fd, b, sizeof b) > 0) {}
}

static void rst_close(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void serve_conn(int fd) {
    char path[256];
    int nreq = 0;
    alarm(30); /* never outlive a broken test run */
    while (read_request(fd, path, sizeof path)) {
        nreq++;
        if (strcmp(path, "/ok") == 0) {
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        } else if (strcmp(path, "/once") == 0) {
            /* Answered as the first request of a connection; as a later
             * one, read and dropped with the connection. */
            __atomic_add_fetch(once_seen, 1, __ATOMIC_SEQ_CST);
            if (nreq > 1) {
                close(fd);
                _exit(0);
            }
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce");
        } else if (strcmp(path, "/echo-head") == 0) {
            char h[128];
            size_t n = strlen(last_head);
            snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
            say(fd, h);
            write_all(fd, last_head, n);
        } else if (strcmp(path, "/reset") == 0) {
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            char b[100];
            memset(b, 'r', sizeof b);
            write_all(fd, b, sizeof b);
            usleep(50 * 1000); /* let the client read the 100 bytes */
            rst_close(fd);
            _exit(0);
        } else if (strcmp(path, "/partial") == 0) {
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            char b[100];
            memset(b, 'p', sizeof b);
            write_all(fd, b, sizeof b);
            shutdown(fd, SHUT_WR);
            wait_close(fd);
            _exit(0);
        } else if (strcmp(path, "/nothing") == 0) {
            shutdown(fd, SHUT_WR);
            wait_close(fd);
            _exit(0);
        } else if (strcmp(path, "/never") == 0) {
            wait_close(fd);
            _exit(0);
        } else if (strcmp(path, "/stall") == 0) {
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
            wait_close(fd);
            _exit(0);
        } else if (strcmp(path, "/interim") == 0) {
            say(fd, "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                    "HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok");
        } else if (strcmp(path, "/chunked-big") == 0) {
            say(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            char b[1000];
            memset(b, 'c', sizeof b);
            for (int i = 0; i < 10; i++) {
                say(fd, "3e8\r\n");
                write_all(fd, b, sizeof b);
                say(fd, "\r\n");
            }
            say(fd, "0\r\n\r\n");
        } else if (strcmp(path, "/large") == 0) {
            /* 4 MiB of a known pattern: byte i is (i * 7) & 0xff */
            size_t total = 4u << 20;
            say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n");
            static unsigned char b[65536];
            for (size_t off = 0; off < total; off += sizeof b) {
                for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(((off + i) * 7) & 0xff);
                write_all(fd, (const char *)b, sizeof b);
            }
        } else {
            say(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
        }
    }
    _exit(0);
}

/* Listen on 127.0.0.1, port 0; fork the acceptor. */
static pid_t start_server(void) {
    once_seen = mmap(NULL, sizeof *once_seen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
    if (once_seen == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    *once_seen = 0;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0) {
        perror("bind/listen");
        exit(2);
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    port = ntohs(sa.sin_port);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGCHLD, SIG_IGN); /* no zombies */
        signal(SIGPIPE, SIG_IGN);
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) {
                if (errno == EINTR) continue;
                _exit(0);
            }
            if (fork() == 0) {
                close(lfd);
                serve_conn(fd);
            }
            close(fd);
        }
    }
    close(lfd);
    return pid;
}

/* ------------------------------------------------------------ client */

struct result {
    int done;
    int status;
    int heads;                      /* on_status calls */
    long curl_code;
    char kind[32];
    char reason[32];
    char message[512];
    int sends;
    char headers[1024];             /* "name=value;" of the current head */
    unsigned char *body;            /* malloc'd */
    size_t len, cap;
    size_t limit;                   /* on_data returns -1 beyond this; 0 = none */
    size_t pause_at;                /* buffered bytes that make on_data pause; 0 = never */
    int paused;                     /* on_data asked for a pause */
    int calls_after_done;
};

static void c_status(void *ud, int status, int version) {
    struct result *r = ud;
    if (r->done) r->calls_after_done++;
    r->status = status;
    r->heads++;
    r->headers[0] = '\0';
    (void)version;
}

static void c_header(void *ud, const char *n, size_t nl, const char *v, size_t vl) {
    struct result *r = ud;
    if (r->done) r->calls_after_done++;
    size_t l = strlen(r->headers);
    snprintf(r->headers + l, sizeof r->headers - l, "%.*s=%.*s;", (int)nl, n, (int)vl, v);
}

static int c_data(void *ud, const char *p, size_t n) {
    struct result *r = ud;
    if (r->done) r->calls_after_done++;
    if (r->limit && r->len + n > r->limit) return -1;
    if (r->pause_at && r->len >= r->pause_at) {
        r->paused = 1;
        return 1;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) cap *= 2;
        unsigned char *b = realloc(r->body, cap);
        if (!b) return -1;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    return 0;
}

static void c_done(void *ud, const struct weft_http_outcome *o) {
    struct result *r = ud;
    r->done++;
    r->curl_code = o->curl_code;
    r->sends = o->sends;
    snprintf(r->kind, sizeof r->kind, "%s", o->kind ? o->kind : "");
    snprintf(r->reason, sizeof r->reason, "%s", o->reason ? o->reason : "");
    snprintf(r->message, sizeof r->message, "%s", o->message ? o->message : "");
}

static const struct weft_http_callbacks cli_cb = {c_status, c_header, c_data, c_done};

static void result_init(struct result *r) {
    memset(r, 0, sizeof *r);
}

static void result_free(struct result *r) {
    free(r->body);
    r->body = NULL;
}

static struct weft_xfer *start_full(struct weft_http_client *c, struct result *r, const char *path,
                                    long timeout_ms, long idle_ms, curl_off_t max_body,
                                    const char *body, size_t body_len) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    struct weft_http_request req = {0};
    req.url = url; /* curl copies it */
    req.timeout_ms = timeout_ms;
    req.connect_timeout_ms = 5000;
    req.idle_timeout_ms = idle_ms;
    req.max_body = max_body;
    if (body) {
        req.body = body;
        req.body_len = body_len;
        req.has_body = 1;
        req.headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    }
    char err[256];
    struct weft_xfer *x = weft_http_start(c, &req, &cli_cb, r, err, sizeof err);
    if (!x) {
        fprintf(stdout, "# start: %s\n", err);
        curl_slist_free_all(req.headers);
    }
    return x;
}

static struct weft_xfer *start(struct weft_http_client *c, struct result *r, const char *path,
                               long timeout_ms) {
    return start_full(c, r, path, timeout_ms, 0, 0, NULL, 0);
}

static void run_until(int *flag, double max_seconds) {
    double until = ev_time() + max_seconds;
    while (!*flag && ev_time() < until) ev_run(ev, EVRUN_ONCE);
}

/* Run the loop for a while whatever happens (to catch late callbacks). */
static void run_for(double seconds) {
    double until = ev_time() + seconds;
    while (ev_time() < until) ev_run(ev, EVRUN_NOWAIT), usleep(1000);
}

static int in_flight(struct weft_http_client *c) {
    struct weft_http_stats st;
    weft_http_client_stats(c, &st);
    return st.in_flight;
}

/* -------------------------------------------------------------- tests */

static void test_ok_and_404(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    start(c, &r, "/ok", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, 5);
    CHECK(r.body && memcmp(r.body, "hello", 5) == 0);
    CHECK(strstr(r.headers, "Content-Length=5;") != NULL);
    result_free(&r);

    result_init(&r);
    start(c, &r, "/nope", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 404);
    result_free(&r);
    weft_http_client_free(c);
}

/* RST after 100 of 1000 body bytes: transient "reset"; the message names
 * the server; the pooled handle works for the next request. */
static void test_reset_mid_body(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    start(c, &r, "/reset", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_STR(r.reason, "reset");
    CHECK_EQ_INT(r.status, 200);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    CHECK(strstr(r.message, where) != NULL);
    if (!strstr(r.message, where)) fprintf(stdout, "# message: %s\n", r.message);
    CHECK(r.len <= 100);
    CHECK_EQ_INT(in_flight(c), 0);
    result_free(&r);

    result_init(&r);
    start(c, &r, "/ok", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    result_free(&r);
    weft_http_client_free(c);
}

/* Clean close after 100 of 1000 bytes: the message counts the bytes. */
static void test_partial_body(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    start(c, &r, "/partial", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_STR(r.reason, "reset");
    CHECK_EQ_INT(r.curl_code, CURLE_PARTIAL_FILE);
    CHECK(strstr(r.message, "got 100 of 1000") != NULL);
    if (!strstr(r.message, "got 100 of 1000")) fprintf(stdout, "# message: %s\n", r.message);
    CHECK_EQ_INT(r.len, 100);
    result_free(&r);
    weft_http_client_free(c);
}

static void test_got_nothing(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    start(c, &r, "/nothing", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_STR(r.reason, "reset");
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.heads, 0);
    result_free(&r);
    weft_http_client_free(c);
}

/* Head and 3 of 10 bytes, then silence: idle timeout (not the 60 s total
 * one), no callback afterwards, the transfer is gone. */
static void test_idle_timeout(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    double t0 = ev_time();
    start_full(c, &r, "/stall", 60000, 300, 0, NULL, 0);
    run_until(&r.done, 20);
    CHECK(ev_time() - t0 >= 0.29);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(r.kind, "timeout");
    CHECK_EQ_STR(r.reason, "idle_timeout");
    CHECK(strstr(r.message, "no data received for 0.3 s") != NULL);
    CHECK_EQ_INT(r.len, 3);
    CHECK_EQ_INT(in_flight(c), 0);
    run_for(0.4);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(r.calls_after_done, 0);
    result_free(&r);
    weft_http_client_free(c);
}

/* Total timeout on a server that never answers. */
static void test_total_timeout(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    double t0 = ev_time();
    start(c, &r, "/never", 250);
    run_until(&r.done, 20);
    CHECK(ev_time() - t0 >= 0.24);
    CHECK_EQ_STR(r.kind, "timeout");
    CHECK_EQ_STR(r.reason, "timeout");
    CHECK(strstr(r.message, "timed out after 0.25 s") != NULL);
    CHECK(strstr(r.message, "no response") != NULL);
    CHECK_EQ_INT(in_flight(c), 0);
    run_for(0.3);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(r.calls_after_done, 0);
    result_free(&r);
    weft_http_client_free(c);
}

/* A 103 head before the 201: on_status twice, headers of the final head
 * only (the owner resets them in on_status). */
static void test_interim_head(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    start(c, &r, "/interim", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 201);
    CHECK_EQ_INT(r.heads, 2);
    CHECK(strstr(r.headers, "X-Final=yes;") != NULL);
    CHECK(strstr(r.headers, "Link=") == NULL);
    CHECK(r.len == 2 && memcmp(r.body, "ok", 2) == 0);
    result_free(&r);
    weft_http_client_free(c);
}

/* Chunked body (no Content-Length) over the owner's limit: on_data -1
 * ends the transfer as integration/too_large. */
static void test_chunked_over_limit(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    r.limit = 4000;
    start_full(c, &r, "/chunked-big", 10000, 0, 4000, NULL, 0);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "integration");
    CHECK_EQ_STR(r.reason, "too_large");
    CHECK(r.len <= 4000);
    CHECK_EQ_INT(in_flight(c), 0);
    result_free(&r);

    /* Content-Length over max_body fails before any body byte. */
    result_init(&r);
    start_full(c, &r, "/large", 10000, 0, 1000, NULL, 0);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "integration");
    CHECK_EQ_STR(r.reason, "too_large");
    CHECK_EQ_INT(r.len, 0);
    result_free(&r);
    weft_http_client_free(c);
}

/* 4 MiB read with backpressure: on_data pauses every 256 KiB; the owner
 * "consumes" (counts, verifies) outside the callback and resumes. Every
 * byte arrives once, in order. The first two times the owner takes longer
 * than the idle timeout to come back: a paused transfer is not idle. */
static void test_pause_resume(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    r.pause_at = 256 * 1024;
    /* (an idle timeout long enough that a loaded machine's server, in
     * another process, does not trip it between resumes: 200 ms did once
     * with the suite running two at a time) */
    struct weft_xfer *x = start_full(c, &r, "/large", 30000, 500, 0, NULL, 0);
    size_t total = 0;
    int pauses = 0, bad = 0;
    double until = ev_time() + 30;
    while (!r.done && ev_time() < until) {
        ev_run(ev, EVRUN_ONCE);
        if (r.paused && !r.done) {
            for (size_t i = 0; i < r.len; i++)
                if (r.body[i] != (unsigned char)(((total + i) * 7) & 0xff)) bad++;
            total += r.len;
            r.len = 0;
            r.paused = 0;
            pauses++;
            if (pauses <= 2) run_for(0.7); /* longer than the idle timeout */
            /* The transfer must still be there (not idle-timed-out). */
            CHECK_EQ_INT(r.done, 0);
            if (r.done) break;
            weft_http_resume(x); /* may deliver data before returning */
        }
    }
    for (size_t i = 0; i < r.len; i++)
        if (r.body[i] != (unsigned char)(((total + i) * 7) & 0xff)) bad++;
    total += r.len;
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(total, 4u << 20);
    CHECK_EQ_INT(bad, 0);
    CHECK(pauses >= 4);
    result_free(&r);
    weft_http_client_free(c);
}

/* POST of a 2 MiB body (curl may send Expect: 100-continue). */
static void test_post_large_body(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    size_t n = 2u << 20;
    char *body = malloc(n);
    memset(body, 'x', n);
    struct result r;
    result_init(&r);
    start_full(c, &r, "/ok", 30000, 0, 0, body, n);
    run_until(&r.done, 30);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, 5);
    result_free(&r);
    free(body);
    weft_http_client_free(c);
}

/* Freeing the client with transfers in flight calls no callback. */
static void test_free_in_flight(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r[8];
    for (int i = 0; i < 8; i++) {
        result_init(&r[i]);
        start(c, &r[i], i % 2 ? "/never" : "/stall", 60000);
    }
    run_for(0.2);
    CHECK_EQ_INT(in_flight(c), 8);
    weft_http_client_free(c);
    run_for(0.1);
    int calls = 0;
    for (int i = 0; i < 8; i++) {
        calls += r[i].done + r[i].calls_after_done;
        result_free(&r[i]);
    }
    CHECK_EQ_INT(calls, 0);
}

/* Many concurrent requests on one client: all complete, connections are
 * reused (sockets stay bounded by concurrency). */
static void test_many(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    enum { N = 200 };
    static struct result r[N];
    int done = 0;
    for (int i = 0; i < N; i++) {
        result_init(&r[i]);
        start(c, &r[i], "/ok", 30000);
    }
    double until = ev_time() + 60;
    while (ev_time() < until) {
        done = 0;
        for (int i = 0; i < N; i++) done += r[i].done;
        if (done == N) break;
        ev_run(ev, EVRUN_ONCE);
    }
    CHECK_EQ_INT(done, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        ok += r[i].status == 200 && r[i].len == 5;
        result_free(&r[i]);
    }
    CHECK_EQ_INT(ok, N);
    struct weft_http_stats st;
    weft_http_client_stats(c, &st);
    CHECK_EQ_INT(st.in_flight, 0);
    CHECK(st.pooled > 0);
    CHECK(st.sockets <= N);
    weft_http_client_free(c);
}

/* A port that was bound and closed: refused, message names host:port. */
static void test_refused(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    int closed_port = ntohs(sa.sin_port);
    close(fd);

    struct weft_http_client *c = weft_http_client_new(ev);
    struct result r;
    result_init(&r);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", closed_port);
    struct weft_http_request req = {.url = url, .timeout_ms = 10000, .connect_timeout_ms = 5000};
    char err[256];
    weft_http_start(c, &req, &cli_cb, &r, err, sizeof err);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_STR(r.reason, "refused");
    char expect[64];
    snprintf(expect, sizeof expect, "connection refused by 127.0.0.1:%d", closed_port);
    CHECK_EQ_STR(r.message, expect);
    CHECK_EQ_INT(r.sends, 0); /* never sent */
    result_free(&r);
    weft_http_client_free(c);
}

static void test_bad_urls(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    static const char *const urls[] = {"ftp://127.0.0.1/", "file:///etc/passwd", "http//nohost",
                                       "gopher://x/", "http://[::1/"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        struct result r;
        result_init(&r);
        struct weft_http_request req = {.url = urls[i], .timeout_ms = 5000};
        char err[256];
        if (weft_http_start(c, &req, &cli_cb, &r, err, sizeof err)) run_until(&r.done, 10);
        CHECK_EQ_INT(r.done, 1);
        CHECK_EQ_STR(r.kind, "invalid_request");
        if (strcmp(r.kind, "invalid_request") != 0)
            fprintf(stdout, "# %s: %s %s\n", urls[i], r.kind, r.message);
        result_free(&r);
    }
    CHECK_EQ_INT(in_flight(c), 0);
    weft_http_client_free(c);
}

/* ------------------------------------------------- header lists */

static int freed_lines, freed_secret_bytes, freed_plain_intact;

static void on_free_hook(const char *line, size_t len, int secret) {
    freed_lines++;
    if (secret) {
        for (size_t i = 0; i < len; i++) freed_secret_bytes += line[i] != 0;
    } else if (len > 0 && line[0] == 'X') {
        freed_plain_intact++;
    }
}

/* Lines own their text; the name lookup ignores case; clear zeroes the
 * secret lines (seen through the hook, before free) and leaves an empty
 * list, twice over. */
static void test_header_list(void) {
    struct weft_headers h;
    weft_headers_init(&h);
    const char *p1[1] = {"X-Plain: 1"};
    const size_t l1[1] = {10};
    CHECK_EQ_INT(weft_headers_add(&h, 0, 1, p1, l1), 0);
    char key[] = "sk-test-123456";
    const char *p2[4] = {"Authorization", ": ", "Bearer ", key};
    const size_t l2[4] = {13, 2, 7, strlen(key)};
    CHECK_EQ_INT(weft_headers_add(&h, 1, 4, p2, l2), 0);
    memset(key, '#', strlen(key)); /* the line is a copy */
    const char *p3[1] = {"X-Empty;"};
    const size_t l3[1] = {8};
    CHECK_EQ_INT(weft_headers_add(&h, 0, 1, p3, l3), 0);
    CHECK_EQ_INT(h.count, 3);
    CHECK_EQ_STR(h.first->data, "X-Plain: 1");
    CHECK_EQ_STR(h.first->next->data, "Authorization: Bearer sk-test-123456");
    CHECK_EQ_STR(h.last->data, "X-Empty;");
    CHECK(h.last->next == NULL);
    CHECK_EQ_INT(weft_headers_has(&h, "authorization", 13), 1);
    CHECK_EQ_INT(weft_headers_has(&h, "AUTHORIZATION", 13), 1);
    CHECK_EQ_INT(weft_headers_has(&h, "x-empty", 7), 1);
    CHECK_EQ_INT(weft_headers_has(&h, "x-plai", 6), 0);
    CHECK_EQ_INT(weft_headers_has(&h, "x-plain-2", 9), 0);
    freed_lines = freed_secret_bytes = freed_plain_intact = 0;
    h.on_free = on_free_hook;
    weft_headers_clear(&h);
    CHECK_EQ_INT(freed_lines, 3);
    CHECK_EQ_INT(freed_secret_bytes, 0);
    CHECK_EQ_INT(freed_plain_intact, 2);
    CHECK(h.first == NULL && h.last == NULL);
    CHECK_EQ_INT(h.count, 0);
    weft_headers_clear(&h);
    CHECK_EQ_INT(freed_lines, 3);
    CHECK_EQ_INT(weft_headers_add(&h, 0, 1, p1, l1), 0); /* reusable */
    CHECK_EQ_INT(h.count, 1);
    weft_headers_clear(&h);
}

/* A borrowed header list goes out with the request (the server echoes the
 * head), stays with its owner, and is cleared by it after on_done. */
static void test_header_list_transfer(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    struct weft_headers h = {0};
    const char *p1[1] = {"X-Plain: visible"};
    const size_t l1[1] = {16};
    const char *p2[2] = {"X-Api-Key: ", "sk-secret-42"};
    const size_t l2[2] = {11, 12};
    weft_headers_add(&h, 0, 1, p1, l1);
    weft_headers_add(&h, 1, 2, p2, l2);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo-head", port);
    struct weft_http_request req = {.url = url, .timeout_ms = 10000, .header_list = &h};
    struct result r;
    result_init(&r);
    char err[256];
    CHECK(weft_http_start(c, &req, &cli_cb, &r, err, sizeof err) != NULL);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK(r.body && memmem(r.body, r.len, "X-Plain: visible", 16) != NULL);
    CHECK(r.body && memmem(r.body, r.len, "X-Api-Key: sk-secret-42", 23) != NULL);
    CHECK_EQ_INT(h.count, 2); /* still the owner's */
    freed_lines = freed_secret_bytes = freed_plain_intact = 0;
    h.on_free = on_free_hook;
    weft_headers_clear(&h);
    CHECK_EQ_INT(freed_lines, 2);
    CHECK_EQ_INT(freed_secret_bytes, 0);
    result_free(&r);

    /* both forms at once: refused, nothing leaks */
    struct weft_headers h2 = {0};
    weft_headers_add(&h2, 0, 1, p1, l1);
    req.header_list = &h2;
    req.headers = curl_slist_append(NULL, "X-Other: 1");
    result_init(&r);
    CHECK(weft_http_start(c, &req, &cli_cb, &r, err, sizeof err) == NULL);
    CHECK(strstr(err, "exclusive") != NULL);
    curl_slist_free_all(req.headers);
    weft_headers_clear(&h2);
    weft_http_client_free(c);
}

/* ------------------------------------------- libcurl's own resend */

/* The second request on a kept-alive connection is read by the server,
 * which then drops the connection: libcurl sends it again on a fresh one
 * by itself. sends says so (2), and the server did see it twice. */
static void test_resend_counted(void) {
    struct weft_http_client *c = weft_http_client_new(ev);
    *once_seen = 0;
    struct result r;
    result_init(&r);
    start(c, &r, "/once", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.sends, 1);
    CHECK_EQ_INT(*once_seen, 1);
    result_free(&r);

    result_init(&r);
    start(c, &r, "/once", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "");
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.sends, 2);
    CHECK_EQ_INT(*once_seen, 3);
    result_free(&r);

    /* A failure after a resend says so too: /nothing on a reused
     * connection, then on the fresh one. */
    result_init(&r);
    start(c, &r, "/ok", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_INT(r.sends, 1);
    result_free(&r);
    result_init(&r);
    start(c, &r, "/nothing", 10000);
    run_until(&r.done, 20);
    CHECK_EQ_STR(r.kind, "transient");
    CHECK_EQ_INT(r.sends, 2);
    result_free(&r);
    weft_http_client_free(c);
}

/* ------------------------------------------------ URLs on an origin */

static void test_origin_url(void) {
    static const struct {
        const char *origin, *path, *query, *expect; /* expect: URL, or "!" + part of the error */
    } cases[] = {
        {"https://api.openai.com", "/v1/chat/completions", NULL,
         "https://api.openai.com/v1/chat/completions"},
        {"http://127.0.0.1:8080/prefix", "/v1/x", "a=1&b=2",
         "http://127.0.0.1:8080/prefix/v1/x?a=1&b=2"},
        {"http://127.0.0.1:8080/prefix/", "/v1/x", "", "http://127.0.0.1:8080/prefix/v1/x"},
        {"https://h.example/", "/x", NULL, "https://h.example/x"},
        {"https://h.example", "/", NULL, "https://h.example/"},
        {"https://eu.example/v1", "/projects/p/models/claude-3@20240620:rawPredict", "alt=sse",
         "https://eu.example/v1/projects/p/models/claude-3@20240620:rawPredict?alt=sse"},
        /* curl writes escapes in lower case */
        {"https://h.example", "/a%2Fb/..c/.d", "q=%2A?x", "https://h.example/a%2fb/..c/.d?q=%2a?x"},
        {"https://h.example", "v1/x", NULL, "!must begin with '/'"},
        {"http://127.0.0.1:8080", "@127.0.0.1:9/steal", NULL, "!must begin with '/'"},
        {"https://h.example", "", NULL, "!must begin with '/'"},
        {"https://h.example", "/a#b", NULL, "!byte 0x23 at offset 2"},
        {"https://h.example", "/a?b", NULL, "!byte 0x3f"},
        {"https://h.example", "/a b", NULL, "!byte 0x20"},
        {"https://h.example", "/a\r\nHost: x", NULL, "!byte 0x0d"},
        {"https://h.example", "/a\\b", NULL, "!byte 0x5c"},
        {"https://h.example", "/caf\xc3\xa9", NULL, "!byte 0xc3"},
        {"https://h.example", "/%zz", NULL, "!%XX escape"},
        {"https://h.example", "/a%2", NULL, "!%XX escape"},
        {"https://h.example", "/../x", NULL, "!segment"},
        {"https://h.example", "/v1/./x", NULL, "!segment"},
        {"https://h.example", "/v1/%2e%2E/x", NULL, "!segment"},
        {"https://h.example", "/v1/..", NULL, "!segment"},
        {"https://h.example", "/x", "a#b", "!byte 0x23"},
        {"https://h.example", "/x", "a b", "!query"},
        {"ftp://h.example", "/x", NULL, "!not an http:// or https:// URL"},
        {"http://user:pw@h.example", "/x", NULL, "!user info"},
        {"http://h.example/?q=1", "/x", NULL, "!query or fragment"},
        {"not a url", "/x", NULL, "!the origin is not a valid URL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        CURLU *u =
            weft_http_origin_url(cases[i].origin, cases[i].path, cases[i].query, err, sizeof err);
        const char *exp = cases[i].expect;
        if (exp[0] == '!') {
            CHECK(u == NULL);
            CHECK(strstr(err, exp + 1) != NULL);
            if (u || !strstr(err, exp + 1))
                fprintf(stdout, "# case %zu: expected error with \"%s\", got \"%s\"\n", i,
                        exp + 1, err);
            curl_url_cleanup(u);
            continue;
        }
        CHECK(u != NULL);
        if (!u) {
            fprintf(stdout, "# case %zu: %s\n", i, err);
            continue;
        }
        char *url = NULL;
        CHECK(curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK);
        CHECK_EQ_STR(url, exp);
        CHECK_EQ_INT(weft_http_origin_check(cases[i].origin, url, err, sizeof err), 0);
        curl_free(url);
        curl_url_cleanup(u);
    }
    /* weft_http_origin_render writes the same text without curl's URL API,
     * and refuses the same requests with the same words */
    struct weft_http_client *c = weft_http_client_new(ev);
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        const struct weft_http_origin *o =
            weft_http_origin_get(c, cases[i].origin, err, sizeof err);
        const char *exp = cases[i].expect;
        int rc =
            o ? weft_http_origin_render(o, cases[i].path, cases[i].query, &b, err, sizeof err) : -1;
        if (exp[0] == '!') {
            CHECK(rc != 0);
            CHECK(strstr(err, exp + 1) != NULL);
            continue;
        }
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) CHECK_EQ_STR(b.data, exp);
        if (rc == 0 && strcmp(b.data, exp) != 0)
            fprintf(stdout, "# render case %zu: %s\n", i, b.data);
    }
    weft_buf_free(&b);
    weft_http_client_free(c);
}

static void test_origin_check(void) {
    static const struct {
        const char *origin, *url, *expect; /* expect: NULL = accepted, or part of the error */
    } cases[] = {
        {"https://api.openai.com", "https://api.openai.com/v1/x?key=abc", NULL},
        {"https://api.openai.com", "https://api.openai.com:443/v1/x", NULL},
        {"https://API.OpenAI.com", "https://api.openai.com/v1/x", NULL},
        {"http://h/prefix/", "http://h/prefix/v1", NULL},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8081/x", "port 8081"},
        /* base_url .. path, the concatenation this replaces */
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080@127.0.0.1:9/steal", "port 9"},
        {"https://api.openai.com", "https://api.openai.com.evil.example/x",
         "host api.openai.com.evil"},
        {"https://api.openai.com", "http://api.openai.com/x", "scheme http"},
        {"https://api.openai.com", "https://api.openai.com:8443/x", "port 8443"},
        {"http://h/prefix", "http://h/prefixevil/x", "outside the origin's path /prefix"},
        {"http://h/prefix", "http://h/other", "outside"},
        {"http://h", "http://u:p@h/x", "user info"},
        {"http://h", "http://evil/x?key=SECRETVALUE", "host evil"},
        {"http://h", "not a url", "the request URL is not a valid URL"},
        {"http://h", "file:///etc/passwd", "not"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        int rc = weft_http_origin_check(cases[i].origin, cases[i].url, err, sizeof err);
        if (!cases[i].expect) {
            CHECK_EQ_INT(rc, 0);
            if (rc) fprintf(stdout, "# case %zu: %s\n", i, err);
        } else {
            CHECK_EQ_INT(rc, -1);
            CHECK(strstr(err, cases[i].expect) != NULL);
            if (!strstr(err, cases[i].expect)) fprintf(stdout, "# case %zu: %s\n", i, err);
            CHECK(strstr(err, "SECRETVALUE") == NULL);
        }
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    pid_t server = start_server();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ev = ev_default_loop(0);
    RUN(test_ok_and_404);
    RUN(test_reset_mid_body);
    RUN(test_partial_body);
    RUN(test_got_nothing);
    RUN(test_idle_timeout);
    RUN(test_total_timeout);
    RUN(test_interim_head);
    RUN(test_chunked_over_limit);
    RUN(test_pause_resume);
    RUN(test_post_large_body);
    RUN(test_free_in_flight);
    RUN(test_many);
    RUN(test_refused);
    RUN(test_bad_urls);
    RUN(test_header_list);
    RUN(test_header_list_transfer);
    RUN(test_resend_counted);
    RUN(test_origin_url);
    RUN(test_origin_check);
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    ev_loop_destroy(ev);
    curl_global_cleanup();
    return DONE();
}
