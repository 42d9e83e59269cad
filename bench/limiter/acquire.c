/* acquire.c -- cost of an uncontended weft_limiter_acquire from C (two
 * dimensions, always admitted), per call. Target: <= 100 ns.
 *   bench_acquire [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "limiter.h"

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    struct weft_limiter *l = weft_limiter_new(3, 30, NULL);
    weft_limiter_add(l, "rps", WEFT_UNIT_REQUESTS, 1e12, 1, 0);
    weft_limiter_add(l, "tpm", WEFT_UNIT_TOKENS, 1e15, 60, 0);
    struct weft_limiter_waiter w = {0};
    w.requests = 1;
    w.tokens = 100;
    w.prio = 1;
    double wait;
    struct timespec a, b;
    long admitted = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        admitted += weft_limiter_acquire(l, &w, &wait) == WEFT_LIMITER_ADMITTED;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
    printf("C acquire (2 limits, uncontended): %.1f ns/call (%ld of %ld admitted)\n", ns, admitted, n);
    weft_limiter_free(l);
    return admitted == n ? 0 : 1;
}
