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

static long started, finished, failed, total;
static char *body;
static size_t body_len;
static const char *url;
static struct curl_slist *headers;

static size_t discard(char *p, size_t s, size_t n, void *u) { return s * n; }

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
    curl_easy_setopt(e, CURLOPT_USERAGENT, BENCH_USER_AGENT);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    return e;
}

static void drain(void) {
    CURL *e;
    CURLcode result;
    long status;
    while ((e = curl_ev_next_done(&result, &status))) {
        if (result != CURLE_OK || status != 200) failed++;
        finished++;
        if (started < total) start_one(e);
        else curl_easy_cleanup(e);
    }
}

int main(int argc, char **argv) {
    struct bench_args a;
    bench_args(argc, argv, "bench_baseline", &a);
    total = a.total;
    long conc = a.conc;
    url = a.url;
    body = a.body;
    body_len = a.body_len;
    headers = a.headers;
    curl_ev_init();

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < conc && started < total; i++) start_one(make_easy());
    ev_run(loop, 0);
    double secs = seconds_since(&t0), cpu = cpu_seconds();
    printf("baseline: %ld requests, %ld failed, %.0f req/s, %.1f us CPU/request\n", finished,
           failed, (double)finished / secs, cpu * 1e6 / (double)finished);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(body);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
