/* retry.h -- retry decisions: backoff schedules with jitter, server hints
 * normalized in one place, deadlines, and a retry budget.
 *
 * weft's rule for server hints (documented and tested): a hint (Retry-After,
 * retry-after-ms, reset headers, Gemini RetryInfo) longer than the backoff
 * schedule replaces it. A hint beyond `hint_cap` (default 60 s) or beyond the
 * call's deadline is not slept: the call fails at once with kind
 * `rate_limited` carrying the wait. `x-should-retry` overrides the rule by
 * kind in both directions, except for kinds that are never retried blindly
 * (auth, quota_exhausted, circuit_open, budget_exceeded, cancelled).
 */
#ifndef WEFT_RETRY_H
#define WEFT_RETRY_H

#include "clock.h"

enum weft_jitter { WEFT_JITTER_FULL, WEFT_JITTER_EQUAL, WEFT_JITTER_DECORRELATED, WEFT_JITTER_NONE };

struct weft_retry_policy {
    double base;               /* first backoff ceiling, seconds (0.5) */
    double cap;                /* largest backoff, seconds (30) */
    double multiplier;         /* growth per retry (2) */
    enum weft_jitter jitter;   /* FULL */
    int max_attempts;          /* attempts in all, first included (4 = 3 retries) */
    double max_elapsed;        /* seconds from the first attempt; <= 0: none (120) */
    double hint_cap;           /* longest server hint slept, seconds (60) */
};

void weft_retry_policy_default(struct weft_retry_policy *p);

/* Backoff before retry number `retry` (1 for the first retry). `prev` is
 * the previous delay (decorrelated jitter; 0 at first). */
double weft_retry_backoff(const struct weft_retry_policy *p, int retry, double prev,
                          struct weft_rng *rng);

enum weft_retry_action {
    WEFT_RETRY_AGAIN,          /* sleep *delay, then retry */
    WEFT_RETRY_GIVE_UP,        /* fail with the last error */
    WEFT_RETRY_RATE_LIMITED,   /* fail now with kind rate_limited, wait *delay */
};

struct weft_retry_input {
    const char *kind;          /* error kind of the failed attempt */
    int attempts;              /* attempts made so far (>= 1) */
    double elapsed;            /* seconds since the first attempt */
    double hint;               /* server's wait in seconds, < 0 when none */
    double deadline_left;      /* seconds until the call's deadline, < 0 when none */
    int should_retry;          /* x-should-retry: 1, 0, or -1 when absent */
    double prev_delay;
};

enum weft_retry_action weft_retry_decide(const struct weft_retry_policy *p,
                                         const struct weft_retry_input *in,
                                         struct weft_rng *rng, double *delay);

/* 1 when `kind` is retried by default (rate_limited, transient, timeout). */
int weft_retry_kind_retryable(const char *kind);

/* Server hint from one header (or Gemini's RetryInfo.retryDelay passed as
 * name "retrydelay"), in seconds from now; -1 when the header is not a hint
 * or cannot be parsed. `wall_now` is the wall clock (for dates). Names are
 * lower-case. */
double weft_retry_hint(const char *name, const char *value, double wall_now);

/* Go-style durations ("6m0s", "1.5s", "12ms", "2h") or plain seconds. */
int weft_retry_parse_duration(const char *s, double *seconds);

/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") to epoch seconds. */
int weft_retry_parse_http_date(const char *s, double *epoch);

/* RFC 3339 ("2026-11-24T05:30:00Z", fractions and offsets) to epoch seconds. */
int weft_retry_parse_rfc3339(const char *s, double *epoch);

/* Retry budget (after Envoy's): retries in flight may not exceed
 * max(min_concurrent, ratio x requests in flight). */
struct weft_retry_budget {
    double ratio;              /* 0.2 */
    int min_concurrent;        /* 3 */
    int requests;              /* calls in flight */
    int retries;               /* retries in flight */
    unsigned long denied;      /* retries refused by the budget */
};

void weft_retry_budget_init(struct weft_retry_budget *b, double ratio, int min_concurrent);

/* 1 when one more retry may start now (and counts it), 0 when the budget is
 * spent (counted in denied). */
int weft_retry_budget_take(struct weft_retry_budget *b);
void weft_retry_budget_release(struct weft_retry_budget *b);

#endif
