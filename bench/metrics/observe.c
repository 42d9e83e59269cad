/* observe.c -- cost of recording into the metrics registry from C: the
 * baseline for bench/metrics/observe.lua (the same operations from Lua).
 *   bench_observe [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "metrics.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    const char *labels[] = {"provider", "model", "operation"};
    const char *values[] = {"openai", "gpt-4o-mini", "chat"};
    const char *why;
    struct weft_metric *h = weft_metric_register(WEFT_HISTOGRAM, "bench_seconds", "B.", labels, 3, NULL, 0, &why);
    struct weft_metric *c = weft_metric_register(WEFT_COUNTER, "bench_total", "B.", labels, 3, NULL, 0, &why);
    if (!h || !c) return 1;
    struct weft_series *s = weft_metric_series(h, values);

    double t0 = now_ns();
    for (long i = 0; i < n; i++) weft_series_observe(h, s, (double)(i & 1023) * 1e-3);
    double observe = (now_ns() - t0) / (double)n;

    t0 = now_ns();
    for (long i = 0; i < n; i++) weft_series_add(weft_metric_series(c, values), 1);
    double labelled = (now_ns() - t0) / (double)n;

    printf("C: histogram observe on a series %.1f ns; counter inc with a 3-label lookup %.1f ns\n",
           observe, labelled);
    printf("C_OBSERVE_NS=%.2f C_LABELLED_NS=%.2f\n", observe, labelled);
    weft_metrics_reset();
    return 0;
}
