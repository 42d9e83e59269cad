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
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    return e;
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

    curl_ev_init();
    headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    for (int a = 5; a < argc; a++) headers = curl_slist_append(headers, argv[a]); /* e.g. auth */

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
