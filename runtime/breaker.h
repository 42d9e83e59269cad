/* breaker.h -- circuit breaker: CLOSED -> OPEN when the failure rate over a
 * rolling window passes `threshold` with at least `min_calls` calls; OPEN
 * fails calls at once for `cooldown` seconds; then HALF_OPEN lets `probes`
 * calls through: all succeed -> CLOSED (window cleared), one fails -> OPEN
 * again. Time comes from an injectable clock. No Lua, no libev.
 *
 * Every allowed call ends in exactly one of weft_breaker_record (a verdict
 * on the provider's health: success or failure) or weft_breaker_release (no
 * verdict: a rate limit, a bad request, a cancelled call). A released call
 * counts nowhere: not in the window (it would dilute the failure share, so
 * a provider failing every call it does not rate-limit could stay closed)
 * and not as a half-open probe, whose slot it gives back for the next call.
 */
#ifndef WEFT_BREAKER_H
#define WEFT_BREAKER_H

#include "clock.h"

#define WEFT_BREAKER_BUCKETS 10

enum weft_breaker_state { WEFT_BREAKER_CLOSED, WEFT_BREAKER_OPEN, WEFT_BREAKER_HALF_OPEN };

struct weft_breaker_bucket {
    double start;              /* bucket start time */
    unsigned ok, fail;
};

typedef void (*weft_breaker_change_fn)(void *ud, enum weft_breaker_state from,
                                       enum weft_breaker_state to);

struct weft_breaker {
    double window;             /* seconds covered by the buckets (10) */
    double threshold;          /* failure ratio that opens (0.5) */
    unsigned min_calls;        /* calls in the window before it may open (10) */
    double cooldown;           /* seconds OPEN before probing (30) */
    unsigned probes;           /* HALF_OPEN calls let through (1) */
    enum weft_breaker_state state;
    double opened_at;
    unsigned probes_out;       /* probes let through, not yet recorded or released */
    unsigned probes_ok;
    unsigned long transitions;
    unsigned long rejected;
    struct weft_breaker_bucket b[WEFT_BREAKER_BUCKETS];
    const struct weft_clock *clock;
    weft_breaker_change_fn on_change; /* optional */
    void *ud;
};

/* Initialize with defaults (fields may be changed afterwards). clock NULL:
 * the monotonic clock. */
void weft_breaker_init(struct weft_breaker *br, const struct weft_clock *clock);

/* 1 when a call may go (in HALF_OPEN it is a probe and must be recorded),
 * 0 when it must fail with circuit_open; *retry_in (may be NULL) gets the
 * seconds until the breaker lets a probe through. */
int weft_breaker_allow(struct weft_breaker *br, double *retry_in);

/* Look without taking a probe: 0 when the breaker is open and its
 * cool-down has not run out (the call is refused: counted as rejected,
 * *retry_in set), 1 otherwise. Lets a caller refuse before queueing in a
 * rate limiter; the call itself still goes through weft_breaker_allow. */
int weft_breaker_peek(struct weft_breaker *br, double *retry_in);

/* Record the outcome of an allowed call (ok: 1 success, 0 failure). */
void weft_breaker_record(struct weft_breaker *br, int ok);

/* End an allowed call without a verdict on health: nothing is counted; in
 * HALF_OPEN its probe slot is free again (the state does not change). */
void weft_breaker_release(struct weft_breaker *br);

/* Calls and failures in the current window. */
void weft_breaker_counts(struct weft_breaker *br, unsigned *calls, unsigned *failures);

const char *weft_breaker_state_name(enum weft_breaker_state s);

#endif
