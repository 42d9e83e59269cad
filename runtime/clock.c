/* clock.c -- the monotonic clock and the seeded generator. */
#include "clock.h"

#include <time.h>

static double monotonic(void *ud) {
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const struct weft_clock weft_clock_monotonic = {monotonic, 0};

double weft_clock_now(const struct weft_clock *c) {
    if (!c) c = &weft_clock_monotonic;
    return c->now(c->ud);
}

void weft_rng_seed(struct weft_rng *r, uint64_t seed) {
    r->s = seed ? seed : 0x9E3779B97F4A7C15ull;
}

double weft_rng_uniform(struct weft_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
