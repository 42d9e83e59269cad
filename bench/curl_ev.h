/* curl_ev.h -- the libcurl-multi-on-libev driver the C bench clients share
 * (bench/http/baseline.c, bench/pipeline/floor.c): the machinery weft's own
 * HTTP client uses, minus Lua, tasks and response tables. The including
 * file defines drain(), which finishes the transfers curl reports done and
 * starts the next ones; it runs after curl_multi_socket_action returns,
 * never inside a curl callback.
 *
 * Included by one .c file each (static definitions, no separate object).
 */
#ifndef WEFT_BENCH_CURL_EV_H
#define WEFT_BENCH_CURL_EV_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <ev.h>

static struct ev_loop *loop;
static CURLM *multi;
static ev_timer timer;

static void drain(void);

/* One socket curl watches: its libev watcher. */
struct sock {
    ev_io io;
};

static void io_cb(struct ev_loop *l, ev_io *w, int revents) {
    int fd = w->fd, running; /* (w may be freed by the call below) */
    int flags =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(multi, fd, flags, &running);
    drain();
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents) {
    int running;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain();
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *u, void *sp) {
    struct sock *k = sp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            ev_io_stop(loop, &k->io);
            curl_multi_assign(multi, fd, NULL);
            free(k);
        }
        return 0;
    }
    int ev = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k) return -1;
        ev_io_init(&k->io, io_cb, fd, ev);
        curl_multi_assign(multi, fd, k);
    } else {
        ev_io_stop(loop, &k->io);
        ev_io_set(&k->io, fd, ev);
    }
    ev_io_start(loop, &k->io);
    return 0;
}

static int timer_fn(CURLM *m, long ms, void *u) {
    ev_timer_stop(loop, &timer);
    if (ms >= 0) {
        ev_timer_set(&timer, (double)ms / 1000.0, 0.);
        ev_timer_start(loop, &timer);
    }
    return 0;
}

/* The arguments both clients take: N C URL BODY_FILE [HEADER...]. The
 * body file is read whole (at most 16 MiB); the request headers are
 * Content-Type: application/json, an empty Expect: and each HEADER (and
 * the User-Agent, BENCH_USER_AGENT, set on each handle).
 * Prints the usage or the problem and exits 2 on bad arguments. */
struct bench_args {
    long total, conc;
    const char *url, *body_path;
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
    struct curl_slist *headers;
};

static void bench_args(int argc, char **argv, const char *name, struct bench_args *a) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s N C URL BODY_FILE [HEADER...]\n", name);
        exit(2);
    }
    a->total = atol(argv[1]);
    a->conc = atol(argv[2]);
    a->url = argv[3];
    a->body_path = argv[4];
    if (a->total < 1 || a->conc < 1) {
        fprintf(stderr, "%s: N and C must be at least 1\n", name);
        exit(2);
    }
    if (a->conc > a->total) a->conc = a->total;
    FILE *f = fopen(a->body_path, "rb");
    size_t cap = 16 << 20;
    a->body = f ? malloc(cap + 1) : NULL;
    a->body_len = a->body ? fread(a->body, 1, cap + 1, f) : 0;
    int bad = !f || !a->body || ferror(f) || a->body_len > cap;
    if (f) fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read %s (or it is over 16 MiB)\n", name, a->body_path);
        exit(2);
    }
    a->body[a->body_len] = '\0';
    a->headers = curl_slist_append(NULL, "Content-Type: application/json");
    a->headers = curl_slist_append(a->headers, "Expect:");
    for (int i = 5; i < argc; i++) a->headers = curl_slist_append(a->headers, argv[i]); /* e.g. auth */
}

/* The User-Agent weft sends (CURLOPT_USERAGENT, as runtime/http_client.c
 * sets it): a baseline sets it too, so that both clients put the same
 * request on the wire. curl formats this line for every request (about
 * 5k instructions of its printf); a baseline without it would count that
 * work as weft's. */
#define BENCH_USER_AGENT "weft/" WEFT_VERSION

/* A handle set up to send a's request as weft does (URL, headers,
 * User-Agent, no signals); the caller adds the body and the callbacks. */
static CURL *curl_ev_easy(const struct bench_args *a) {
    CURL *e = curl_easy_init();
    if (!e) {
        fprintf(stderr, "curl_easy_init failed\n");
        exit(1);
    }
    curl_easy_setopt(e, CURLOPT_URL, a->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, BENCH_USER_AGENT);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    return e;
}

/* The next transfer curl reports done, taken off the multi handle, with
 * its result and HTTP status; NULL when there is none left (drain's loop). */
static CURL *curl_ev_next_done(CURLcode *result, long *status) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        *result = m->data.result; /* (m does not outlive the removal) */
        *status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
        curl_multi_remove_handle(multi, e);
        return e;
    }
    return NULL;
}

/* curl, the default libev loop and the multi handle driven by it. */
static void curl_ev_init(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    loop = ev_default_loop(0);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    ev_timer_init(&timer, timer_cb, 0., 0.);
}

/* Seconds since `t0` (CLOCK_MONOTONIC). */
static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* The process's CPU time so far (user + system), in seconds. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

#endif
