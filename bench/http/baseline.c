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

#include "../curl_ev.h"

static long started, finished, failed;
static struct bench_args args;

static size_t discard(char *p, size_t s, size_t n, void *u) { return s * n; }

static void start_one(CURL *e) {
    started++;
    curl_multi_add_handle(multi, e);
}

static CURL *make_easy(void) {
    CURL *e = curl_ev_easy(&args);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, args.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)args.body_len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    return e;
}

static void drain(void) {
    CURL *e;
    CURLcode result;
    long status;
    while ((e = curl_ev_next_done(&result, &status))) {
        if (result != CURLE_OK || status != 200) failed++;
        finished++;
        if (started < args.total)
            start_one(e);
        else curl_easy_cleanup(e);
    }
}

int main(int argc, char **argv) {
    bench_args(argc, argv, "bench_baseline", &args);
    curl_ev_init();

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < args.conc && started < args.total; i++) start_one(make_easy());
    ev_run(loop, 0);
    double secs = seconds_since(&t0), cpu = cpu_seconds();
    printf("baseline: %ld requests, %ld failed, %.0f req/s, %.1f us CPU/request\n", finished,
           failed, (double)finished / secs, cpu * 1e6 / (double)finished);
    curl_multi_cleanup(multi);
    curl_slist_free_all(args.headers);
    free(args.body);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
