/* breaker.c -- rolling-window circuit breaker. */
#include "breaker.h"

#include <math.h>
#include <string.h>

void weft_breaker_init(struct weft_breaker *br, const struct weft_clock *clock) {
    memset(br, 0, sizeof *br);
    br->window = 10;
    br->threshold = 0.5;
    br->min_calls = 10;
    br->cooldown = 30;
    br->probes = 1;
    br->clock = clock ? clock : &weft_clock_monotonic;
    br->state = WEFT_BREAKER_CLOSED;
}

const char *weft_breaker_state_name(enum weft_breaker_state s) {
    return s == WEFT_BREAKER_OPEN ? "open" : s == WEFT_BREAKER_HALF_OPEN ? "half_open" : "closed";
}

static void set_state(struct weft_breaker *br, enum weft_breaker_state to, double now) {
    enum weft_breaker_state from = br->state;
    if (from == to) return;
    br->state = to;
    br->transitions++;
    if (to == WEFT_BREAKER_OPEN) br->opened_at = now;
    if (to == WEFT_BREAKER_HALF_OPEN) br->probes_out = br->probes_ok = 0;
    if (to == WEFT_BREAKER_CLOSED) memset(br->b, 0, sizeof br->b);
    if (br->on_change) br->on_change(br->ud, from, to);
}

static struct weft_breaker_bucket *bucket_at(struct weft_breaker *br, double now) {
    double width = br->window / WEFT_BREAKER_BUCKETS;
    double slot = floor(now / width);
    struct weft_breaker_bucket *b = &br->b[(long)fmod(slot, WEFT_BREAKER_BUCKETS)];
    double start = slot * width;
    if (b->start != start) {
        b->start = start;
        b->ok = b->fail = 0;
    }
    return b;
}

void weft_breaker_counts(struct weft_breaker *br, unsigned *calls, unsigned *failures) {
    double now = weft_clock_now(br->clock);
    unsigned c = 0, f = 0;
    for (int i = 0; i < WEFT_BREAKER_BUCKETS; i++) {
        if (br->b[i].start > now - br->window && br->b[i].start <= now) {
            c += br->b[i].ok + br->b[i].fail;
            f += br->b[i].fail;
        }
    }
    *calls = c;
    *failures = f;
}

int weft_breaker_allow(struct weft_breaker *br, double *retry_in) {
    double now = weft_clock_now(br->clock);
    if (retry_in) *retry_in = 0;
    if (br->state == WEFT_BREAKER_OPEN) {
        if (now - br->opened_at >= br->cooldown) {
            set_state(br, WEFT_BREAKER_HALF_OPEN, now);
        } else {
            if (retry_in) *retry_in = br->cooldown - (now - br->opened_at);
            br->rejected++;
            return 0;
        }
    }
    if (br->state == WEFT_BREAKER_HALF_OPEN) {
        if (br->probes_out + br->probes_ok >= br->probes) {
            br->rejected++;
            return 0;
        }
        br->probes_out++;
    }
    return 1;
}

int weft_breaker_peek(struct weft_breaker *br, double *retry_in) {
    double now = weft_clock_now(br->clock);
    if (retry_in) *retry_in = 0;
    if (br->state == WEFT_BREAKER_OPEN && now - br->opened_at < br->cooldown) {
        if (retry_in) *retry_in = br->cooldown - (now - br->opened_at);
        br->rejected++;
        return 0;
    }
    return 1;
}

void weft_breaker_release(struct weft_breaker *br) {
    /* Only HALF_OPEN hands out slots. A call allowed before the breaker
     * opened that ends now cannot be told from a probe; like record(), this
     * counts it as one (at worst one extra probe goes through). */
    if (br->state == WEFT_BREAKER_HALF_OPEN && br->probes_out > 0) br->probes_out--;
}

void weft_breaker_record(struct weft_breaker *br, int ok) {
    double now = weft_clock_now(br->clock);
    if (br->state == WEFT_BREAKER_HALF_OPEN) {
        if (br->probes_out > 0) br->probes_out--;
        if (!ok) {
            set_state(br, WEFT_BREAKER_OPEN, now);
            return;
        }
        if (++br->probes_ok >= br->probes) set_state(br, WEFT_BREAKER_CLOSED, now);
        return;
    }
    if (br->state == WEFT_BREAKER_OPEN) return; /* a call from before it opened */
    struct weft_breaker_bucket *b = bucket_at(br, now);
    if (ok) b->ok++;
    else b->fail++;
    unsigned calls, fails;
    weft_breaker_counts(br, &calls, &fails);
    if (calls >= br->min_calls && (double)fails >= br->threshold * (double)calls)
        set_state(br, WEFT_BREAKER_OPEN, now);
}
