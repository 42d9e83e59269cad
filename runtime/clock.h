/* clock.h -- injectable time and randomness for the time-dependent
 * mechanisms (limiter, retry, breaker), so their unit tests are exact.
 */
#ifndef WEFT_CLOCK_H
#define WEFT_CLOCK_H

#include <stdint.h>

typedef double (*weft_now_fn)(void *ud);

struct weft_clock {
    weft_now_fn now;           /* seconds, monotonic */
    void *ud;
};

/* The process's monotonic clock (CLOCK_MONOTONIC). */
extern const struct weft_clock weft_clock_monotonic;

/* Read a clock (NULL means the monotonic clock). */
double weft_clock_now(const struct weft_clock *c);

/* A small seeded generator (xorshift64*): same seed, same sequence. */
struct weft_rng {
    uint64_t s;                /* never 0 */
};

/* Seed it (0 is replaced by a fixed non-zero constant). */
void weft_rng_seed(struct weft_rng *r, uint64_t seed);

/* Uniform double in [0, 1). */
double weft_rng_uniform(struct weft_rng *r);

#endif
