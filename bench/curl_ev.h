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
