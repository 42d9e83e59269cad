/* baseline.c -- the raw libcurl-multi client weft's HTTP client is compared
 * with: N POSTs of a JSON body at concurrency C, keep-alive, driven by
 * curl_multi_socket_action on libev (the same machinery weft uses, minus
 * Lua, tasks and response tables). Each of the C slots reuses its easy
 * handle. Prints requests/s and its own CPU time per request.
 *
 *   bench_baseline N C URL BODY_FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <ev.h>

static struct ev_loop *loop;
static CURLM *multi;
static ev_timer timer;
static long started, finished, failed, total;
static char *body;
static size_t body_len;
static const char *url;
static struct curl_slist *headers;

struct sock {
    ev_io io;
};

static size_t discard(char *p, size_t s, size_t n, void *u) { return s * n; }

static void drain(void);

static void start_one(CURL *e) {
    started++;
    curl_multi_add_handle(multi, e);
}

static CURL *make_easy(void) {
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    return e;
}

static void io_cb(struct ev_loop *l, ev_io *w, int revents) {
    int fd = w->fd, running;
    int flags = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(multi, fd, flags, &running);
    drain();
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents) {
    int running;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain();
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *u, void *sp) {
    struct sock *k = sp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            ev_io_stop(loop, &k->io);
            curl_multi_assign(multi, s, NULL);
            free(k);
        }
        return 0;
    }
    int ev = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!k) {
        k = calloc(1, sizeof *k);
        ev_io_init(&k->io, io_cb, s, ev);
        curl_multi_assign(multi, s, k);
    } else {
        ev_io_stop(loop, &k->io);
        ev_io_set(&k->io, s, ev);
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

static void drain(void) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (m->data.result != CURLE_OK || status != 200) failed++;
        finished++;
        curl_multi_remove_handle(multi, e);
        if (started < total) start_one(e);
        else curl_easy_cleanup(e);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_baseline N C URL BODY_FILE [HEADER...]\n");
        return 2;
    }
    total = atol(argv[1]);
    long conc = atol(argv[2]);
    url = argv[3];
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror(argv[4]);
        return 2;
    }
    body = malloc(1 << 16);
    body_len = fread(body, 1, 1 << 16, f);
    fclose(f);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    loop = ev_default_loop(0);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    ev_timer_init(&timer, timer_cb, 0., 0.);
    headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    for (int a = 5; a < argc; a++) headers = curl_slist_append(headers, argv[a]); /* e.g. auth */

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < conc && started < total; i++) start_one(make_easy());
    ev_run(loop, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    printf("baseline: %ld requests, %ld failed, %.0f req/s, %.1f us CPU/request\n", finished,
           failed, (double)finished / secs, cpu * 1e6 / (double)finished);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(body);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
