/* test_resilience.c -- limiter, retry and breaker mechanisms with a fake
 * clock and a seeded generator: exact numbers, no sleeping. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "fakeclock.h"
#include "harness.h"
#include "limiter.h"
#include "retry.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

/* ----------------------------------------------------------- limiter */

static char order[256];
static void admit_cb(struct weft_limiter_waiter *w, void *ctx) {
    size_t n = strlen(order);
    order[n] = *(const char *)w->ud;
    order[n + 1] = '\0';
}
static void expire_cb(struct weft_limiter_waiter *w, void *ctx) {
    size_t n = strlen(order);
    order[n] = 'x';
    order[n + 1] = '\0';
}

static struct weft_limiter_waiter waiter(double req, double tok, int prio, const char *tag) {
    struct weft_limiter_waiter w;
    memset(&w, 0, sizeof w);
    w.requests = req;
    w.tokens = tok;
    w.prio = prio;
    w.ud = (void *)tag;
    return w;
}

static void test_limiter_burst_then_rate(void) {
    fake_now = 1000;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    CHECK_EQ_INT(weft_limiter_add(l, "rps", WEFT_UNIT_REQUESTS, 10, 1, 5), 0);
    double wait;
    int admitted = 0;
    for (int i = 0; i < 5; i++) {
        struct weft_limiter_waiter w = waiter(1, 0, 0, "a");
        if (weft_limiter_acquire(l, &w, &wait) == WEFT_LIMITER_ADMITTED) admitted++;
    }
    CHECK_EQ_INT(admitted, 5); /* the burst */
    struct weft_limiter_waiter w6 = waiter(1, 0, 0, "b");
    w6.deadline = 1000.05; /* needs 0.1 s: refused at once */
    CHECK_EQ_INT(weft_limiter_acquire(l, &w6, &wait), WEFT_LIMITER_REFUSED);
    CHECK(NEAR(wait, 0.1));
    struct weft_limiter_waiter w7 = waiter(1, 0, 0, "c");
    CHECK_EQ_INT(weft_limiter_acquire(l, &w7, &wait), WEFT_LIMITER_QUEUED);
    order[0] = '\0';
    double at = weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    CHECK(NEAR(at, 1000.1)); /* exactly when one unit is back */
    fake_now = at;
    at = weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    CHECK_EQ_STR(order, "c");
    CHECK(at < 0);
    /* a cost above the burst can never pass */
    struct weft_limiter_waiter big = waiter(6, 0, 0, "d");
    CHECK_EQ_INT(weft_limiter_acquire(l, &big, &wait), WEFT_LIMITER_REFUSED);
    CHECK(isinf(wait));
    weft_limiter_free(l);
}

static void test_limiter_all_dimensions_must_admit(void) {
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rpm", WEFT_UNIT_REQUESTS, 60, 60, 0);
    weft_limiter_add(l, "tpm", WEFT_UNIT_TOKENS, 1000, 60, 0);
    double wait;
    struct weft_limiter_waiter a = waiter(1, 900, 0, "a");
    CHECK_EQ_INT(weft_limiter_acquire(l, &a, &wait), WEFT_LIMITER_ADMITTED);
    struct weft_limiter_waiter b = waiter(1, 200, 0, "b");
    CHECK_EQ_INT(weft_limiter_acquire(l, &b, &wait), WEFT_LIMITER_QUEUED);
    CHECK(NEAR(wait, 100.0 / (1000.0 / 60))); /* tokens are the bottleneck: 6 s */
    /* reconcile: the answer used 500 tokens, not 900: 400 refunded */
    weft_limiter_reconcile(l, 900, 500);
    order[0] = '\0';
    double at = weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    CHECK_EQ_STR(order, "b");
    CHECK(at < 0);
    /* debit: used 300 more than estimated */
    weft_limiter_reconcile(l, 100, 400);
    weft_limiter_refresh(l);
    CHECK(NEAR(l->dims[1].level, 1000 - 900 + 400 - 200 - 300));
    weft_limiter_free(l);
}

static void test_limiter_priority_fifo_and_aging(void) {
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(3, 5.0, &fake_clock);
    weft_limiter_add(l, "rps", WEFT_UNIT_REQUESTS, 1, 1, 1);
    double wait;
    struct weft_limiter_waiter first = waiter(1, 0, 0, "0");
    CHECK_EQ_INT(weft_limiter_acquire(l, &first, &wait), WEFT_LIMITER_ADMITTED);
    /* queued in this order: low L1, normal N1, high H1, low L2, high H2 */
    struct weft_limiter_waiter L1 = waiter(1, 0, 2, "l"), N1 = waiter(1, 0, 1, "n"),
                               H1 = waiter(1, 0, 0, "h"), L2 = waiter(1, 0, 2, "m"),
                               H2 = waiter(1, 0, 0, "i");
    weft_limiter_acquire(l, &L1, &wait);
    weft_limiter_acquire(l, &N1, &wait);
    weft_limiter_acquire(l, &H1, &wait);
    weft_limiter_acquire(l, &L2, &wait);
    weft_limiter_acquire(l, &H2, &wait);
    CHECK_EQ_INT(l->qlen[0], 2);
    CHECK_EQ_INT(l->qlen[2], 2);
    order[0] = '\0';
    for (int i = 1; i <= 5; i++) {
        fake_now = i;
        weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    }
    /* strict priority, FIFO within a level: h i n l m */
    CHECK_EQ_STR(order, "hinlm");

    /* aging: a low-priority waiter older than 5 s goes before new highs */
    struct weft_limiter_waiter old = waiter(1, 0, 2, "o");
    weft_limiter_acquire(l, &old, &wait); /* at t=5, needs t=6 */
    struct weft_limiter_waiter hs[6];
    order[0] = '\0';
    for (int i = 0; i < 6; i++) {
        fake_now = 5.5 + i;
        hs[i] = waiter(1, 0, 0, "H");
        weft_limiter_acquire(l, &hs[i], &wait);
        weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    }
    fake_now = 11.0;
    weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    fake_now = 12.0;
    weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    /* without aging "o" would wait behind every H; it aged at t=10 */
    CHECK(strchr(order, 'o') != NULL);
    CHECK(strchr(order, 'o') - order <= 5);
    while (l->queued) {
        fake_now += 1;
        weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    }
    weft_limiter_free(l);
}

static void test_limiter_deadline_while_queued(void) {
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rps", WEFT_UNIT_REQUESTS, 1, 1, 1);
    double wait;
    struct weft_limiter_waiter a = waiter(1, 0, 0, "a"), b = waiter(1, 0, 0, "b");
    weft_limiter_acquire(l, &a, &wait);
    b.deadline = 2.0; /* expected 1 s: accepted */
    CHECK_EQ_INT(weft_limiter_acquire(l, &b, &wait), WEFT_LIMITER_QUEUED);
    struct weft_limiter_waiter c = waiter(1, 0, 0, "c");
    c.deadline = 1.5; /* behind b: expected 2 s > 1.5: refused with the wait */
    CHECK_EQ_INT(weft_limiter_acquire(l, &c, &wait), WEFT_LIMITER_REFUSED);
    CHECK(NEAR(wait, 2.0));
    weft_limiter_free(l);
}

static void test_limiter_adaptation(void) {
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rpm", WEFT_UNIT_REQUESTS, 60, 60, 0);
    weft_limiter_add(l, "rpd", WEFT_UNIT_REQUESTS, 1000, 86400, 0);
    /* provider: 3 left in its minute window -> local minute level 3 */
    weft_limiter_observe(l, WEFT_UNIT_REQUESTS, 3, 20);
    CHECK(NEAR(l->dims[0].level, 3));
    CHECK(NEAR(l->dims[1].level, 1000)); /* only the shortest period */
    weft_limiter_observe(l, WEFT_UNIT_REQUESTS, 50, 20); /* never raised */
    CHECK(NEAR(l->dims[0].level, 3));
    /* 0 left, reset in 20 s: nothing before t=20 */
    weft_limiter_observe(l, WEFT_UNIT_REQUESTS, 0, 20);
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), 20));
    /* a 429 with Retry-After 30 s: nothing before t=30 */
    weft_limiter_backoff(l, 30);
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), 30));
    /* relaxes back: a minute later the bucket is full again */
    fake_now = 90;
    weft_limiter_refresh(l);
    CHECK(NEAR(l->dims[0].level, 60));
    /* what no sane provider sends cannot block it for ever: a huge negative
     * remaining is 0 (refilled as usual), NaN is ignored, resets and waits
     * are capped */
    weft_limiter_observe(l, WEFT_UNIT_REQUESTS, -1e308, 1e300);
    CHECK(NEAR(l->dims[0].level, 0));
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), WEFT_LIMITER_MAX_RESET));
    fake_now += WEFT_LIMITER_MAX_RESET;
    weft_limiter_refresh(l);
    CHECK(NEAR(l->dims[0].level, 60));
    weft_limiter_observe(l, WEFT_UNIT_REQUESTS, NAN, 5);
    CHECK(NEAR(l->dims[0].level, 60));
    weft_limiter_backoff(l, 1e300);
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), WEFT_LIMITER_MAX_WAIT));
    weft_limiter_backoff(l, -5);
    weft_limiter_backoff(l, NAN);
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), WEFT_LIMITER_MAX_WAIT));
    weft_limiter_free(l);
}

static void test_limiter_refund(void) {
    /* An admitted call that never went out (a breaker refused it after the
     * queue) gives its units back: the waiter behind it goes at once, not
     * a period later. */
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rpm", WEFT_UNIT_REQUESTS, 60, 60, 1);
    weft_limiter_add(l, "tpm", WEFT_UNIT_TOKENS, 1000, 60, 0);
    double wait;
    struct weft_limiter_waiter a = waiter(1, 300, 0, "a"), b = waiter(1, 300, 0, "b");
    CHECK_EQ_INT(weft_limiter_acquire(l, &a, &wait), WEFT_LIMITER_ADMITTED);
    CHECK_EQ_INT(weft_limiter_acquire(l, &b, &wait), WEFT_LIMITER_QUEUED);
    CHECK(NEAR(wait, 1)); /* one request a second, burst 1 */
    fake_now = 0.25;
    weft_limiter_refund(l, 1, 300);
    CHECK(NEAR(l->dims[0].level, 1)); /* 0.25 refilled + 1 back, capped at the burst */
    CHECK(NEAR(l->dims[1].level, 1000));
    CHECK_EQ_INT(l->refunded, 1);
    CHECK_EQ_INT(l->admitted, 1);
    order[0] = '\0';
    double at = weft_limiter_pump(l, admit_cb, expire_cb, NULL);
    CHECK_EQ_STR(order, "b");
    CHECK(at < 0);
    CHECK(NEAR(l->dims[0].level, 0));
    CHECK(NEAR(l->dims[1].level, 700));
    /* only what was taken comes back: a refund never raises a level past
     * its burst, and does not lift a Retry-After block */
    weft_limiter_backoff(l, 5);
    weft_limiter_refund(l, 3, 5000);
    CHECK(NEAR(l->dims[0].level, 1));
    CHECK(NEAR(l->dims[1].level, 1000));
    CHECK(NEAR(weft_limiter_wait_for(l, 1, 0), 5));
    weft_limiter_free(l);
}

static void test_limiter_try(void) {
    /* try admits (and takes) only what acquire would admit at once, and
     * changes nothing otherwise: room and nobody queued. */
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rpm", WEFT_UNIT_REQUESTS, 60, 60, 2);
    weft_limiter_add(l, "tpm", WEFT_UNIT_TOKENS, 1000, 60, 0);
    CHECK_EQ_INT(weft_limiter_try(l, 1, 600), 1);
    CHECK(NEAR(l->dims[0].level, 1));
    CHECK(NEAR(l->dims[1].level, 400));
    CHECK_EQ_INT(l->admitted, 1);
    CHECK_EQ_INT(weft_limiter_try(l, 1, 600), 0); /* not enough tokens: nothing taken */
    CHECK(NEAR(l->dims[0].level, 1));
    CHECK(NEAR(l->dims[1].level, 400));
    CHECK_EQ_INT(l->refused, 0);
    double wait;
    struct weft_limiter_waiter q = waiter(1, 600, 0, "q");
    CHECK_EQ_INT(weft_limiter_acquire(l, &q, &wait), WEFT_LIMITER_QUEUED);
    CHECK_EQ_INT(weft_limiter_try(l, 1, 1), 0); /* room, but someone is queued ahead */
    CHECK(NEAR(l->dims[0].level, 1));
    weft_limiter_cancel(l, &q);
    CHECK_EQ_INT(weft_limiter_try(l, 1, 1), 1);
    weft_limiter_free(l);
}

static void test_limiter_accuracy(void) {
    /* 100/s with burst 100 held for 20 s admits 100 + 2000 (the burst
     * first), and no 1-second window sees more than rate + burst. */
    fake_now = 0;
    struct weft_limiter *l = weft_limiter_new(1, 0, &fake_clock);
    weft_limiter_add(l, "rps", WEFT_UNIT_REQUESTS, 100, 1, 100);
    int admitted = 0;
    double wait;
    for (int step = 0; step < 20000; step++) { /* every 1 ms */
        fake_now = step / 1000.0;
        struct weft_limiter_waiter w = waiter(1, 0, 0, "a");
        while (weft_limiter_acquire(l, &w, &wait) == WEFT_LIMITER_ADMITTED) admitted++;
        weft_limiter_cancel(l, &w);
    }
    CHECK(admitted >= 2100 - 2 && admitted <= 2100);
    weft_limiter_free(l);
}

/* ------------------------------------------------------------- retry */

static void test_retry_backoff_sequences(void) {
    struct weft_retry_policy p;
    weft_retry_policy_default(&p);
    struct weft_rng rng;
    weft_rng_seed(&rng, 42);
    p.jitter = WEFT_JITTER_NONE;
    CHECK(NEAR(weft_retry_backoff(&p, 1, 0, &rng), 0.5));
    CHECK(NEAR(weft_retry_backoff(&p, 2, 0, &rng), 1.0));
    CHECK(NEAR(weft_retry_backoff(&p, 3, 0, &rng), 2.0));
    CHECK(NEAR(weft_retry_backoff(&p, 10, 0, &rng), 30.0)); /* capped */
    p.jitter = WEFT_JITTER_FULL;
    for (int n = 1; n <= 8; n++) {
        for (int k = 0; k < 200; k++) {
            double d = weft_retry_backoff(&p, n, 0, &rng);
            double e = fmin(30, 0.5 * pow(2, n - 1));
            CHECK(d >= 0 && d <= e);
        }
    }
    p.jitter = WEFT_JITTER_EQUAL;
    for (int k = 0; k < 200; k++) {
        double d = weft_retry_backoff(&p, 3, 0, &rng);
        CHECK(d >= 1.0 && d <= 2.0);
    }
    p.jitter = WEFT_JITTER_DECORRELATED;
    double prev = 0;
    for (int k = 0; k < 200; k++) {
        double d = weft_retry_backoff(&p, k + 1, prev, &rng);
        CHECK(d >= 0.5 && d <= fmin(30, (prev > 0 ? prev : 0.5) * 3));
        prev = d;
    }
    /* the same seed gives the same sequence */
    struct weft_rng a, b;
    weft_rng_seed(&a, 7);
    weft_rng_seed(&b, 7);
    p.jitter = WEFT_JITTER_FULL;
    for (int k = 1; k < 6; k++) CHECK(weft_retry_backoff(&p, k, 0, &a) == weft_retry_backoff(&p, k, 0, &b));
}

static enum weft_retry_action decide(const char *kind, int attempts, double hint, double left,
                                     int should, double *delay) {
    struct weft_retry_policy p;
    weft_retry_policy_default(&p);
    p.jitter = WEFT_JITTER_NONE;
    struct weft_rng rng;
    weft_rng_seed(&rng, 1);
    struct weft_retry_input in = {kind, attempts, 0, hint, left, should, 0};
    return weft_retry_decide(&p, &in, &rng, delay);
}

static void test_retry_decisions(void) {
    double d;
    CHECK_EQ_INT(decide("transient", 1, -1, -1, -1, &d), WEFT_RETRY_AGAIN);
    CHECK(NEAR(d, 0.5));
    CHECK_EQ_INT(decide("transient", 4, -1, -1, -1, &d), WEFT_RETRY_GIVE_UP); /* 3 retries done */
    CHECK_EQ_INT(decide("auth", 1, -1, -1, -1, &d), WEFT_RETRY_GIVE_UP);
    CHECK_EQ_INT(decide("invalid_request", 1, -1, -1, -1, &d), WEFT_RETRY_GIVE_UP);
    CHECK_EQ_INT(decide("integration", 1, -1, -1, -1, &d), WEFT_RETRY_GIVE_UP);
    CHECK_EQ_INT(decide("quota_exhausted", 1, -1, -1, -1, &d), WEFT_RETRY_GIVE_UP);
    /* x-should-retry overrides the kind rule, both ways, but not for auth */
    CHECK_EQ_INT(decide("invalid_request", 1, -1, -1, 1, &d), WEFT_RETRY_AGAIN);
    CHECK_EQ_INT(decide("transient", 1, -1, -1, 0, &d), WEFT_RETRY_GIVE_UP);
    CHECK_EQ_INT(decide("auth", 1, -1, -1, 1, &d), WEFT_RETRY_GIVE_UP);
    /* a hint longer than the schedule replaces it */
    CHECK_EQ_INT(decide("rate_limited", 1, 2.0, -1, -1, &d), WEFT_RETRY_AGAIN);
    CHECK(NEAR(d, 2.0));
    /* beyond the 60 s cap: fail now with the wait */
    CHECK_EQ_INT(decide("rate_limited", 1, 3600, -1, -1, &d), WEFT_RETRY_RATE_LIMITED);
    CHECK(NEAR(d, 3600));
    /* beyond the deadline: a hint fails as rate_limited, a backoff gives up */
    CHECK_EQ_INT(decide("rate_limited", 1, 3.0, 2.0, -1, &d), WEFT_RETRY_RATE_LIMITED);
    CHECK(NEAR(d, 3.0));
    CHECK_EQ_INT(decide("transient", 3, -1, 1.0, -1, &d), WEFT_RETRY_GIVE_UP); /* needs 2 s */
    /* max_elapsed (120 s) counts from the first attempt */
    struct weft_retry_policy p;
    weft_retry_policy_default(&p);
    p.jitter = WEFT_JITTER_NONE;
    struct weft_rng rng;
    weft_rng_seed(&rng, 1);
    struct weft_retry_input in = {"transient", 1, 119.0, -1, -1, -1, 0};
    CHECK_EQ_INT(weft_retry_decide(&p, &in, &rng, &d), WEFT_RETRY_AGAIN);
    in.elapsed = 119.8;
    CHECK_EQ_INT(weft_retry_decide(&p, &in, &rng, &d), WEFT_RETRY_GIVE_UP);
}

static void test_retry_hints(void) {
    double wall = 1700000000; /* 2023-11-14T22:13:20Z */
    CHECK(NEAR(weft_retry_hint("retry-after-ms", "1500", wall), 1.5));
    CHECK(NEAR(weft_retry_hint("retry-after", "20", wall), 20));
    CHECK(NEAR(weft_retry_hint("retry-after", "Tue, 14 Nov 2023 22:13:50 GMT", wall), 30));
    CHECK(NEAR(weft_retry_hint("retry-after", "Tue, 14 Nov 2023 22:13:00 GMT", wall), 0)); /* past */
    CHECK(NEAR(weft_retry_hint("x-ratelimit-reset-requests", "6m0s", wall), 360));
    CHECK(NEAR(weft_retry_hint("x-ratelimit-reset-tokens", "12ms", wall), 0.012));
    CHECK(NEAR(weft_retry_hint("x-ratelimit-reset-tokens", "1h2m3.5s", wall), 3723.5));
    CHECK(NEAR(weft_retry_hint("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z", wall), 60));
    CHECK(NEAR(weft_retry_hint("anthropic-ratelimit-tokens-reset", "2023-11-14T23:14:20+01:00", wall), 60));
    CHECK(NEAR(weft_retry_hint("retrydelay", "27s", wall), 27));
    CHECK(NEAR(weft_retry_hint("retrydelay", "1.5s", wall), 1.5));
    CHECK(weft_retry_hint("retry-after", "soon", wall) < 0);
    CHECK(weft_retry_hint("retry-after-ms", "-5", wall) < 0);
    CHECK(weft_retry_hint("x-ratelimit-reset-requests", "6q", wall) < 0);
    CHECK(weft_retry_hint("content-type", "1", wall) < 0);
}

static void test_retry_budget(void) {
    struct weft_retry_budget b;
    weft_retry_budget_init(&b, 0.2, 3);
    b.requests = 5;
    CHECK_EQ_INT(weft_retry_budget_take(&b), 1);
    CHECK_EQ_INT(weft_retry_budget_take(&b), 1);
    CHECK_EQ_INT(weft_retry_budget_take(&b), 1); /* floor of 3 */
    CHECK_EQ_INT(weft_retry_budget_take(&b), 0);
    CHECK_EQ_INT(b.denied, 1);
    b.requests = 100; /* 20% of 100 in flight */
    int n = 0;
    while (weft_retry_budget_take(&b)) n++;
    CHECK_EQ_INT(b.retries, 20);
    weft_retry_budget_release(&b);
    CHECK_EQ_INT(b.retries, 19);
}

/* ----------------------------------------------------------- breaker */

static int changes;
static void on_change(void *ud, enum weft_breaker_state from, enum weft_breaker_state to) {
    changes++;
}

static void test_breaker_transitions(void) {
    fake_now = 100;
    struct weft_breaker br;
    weft_breaker_init(&br, &fake_clock);
    br.min_calls = 4;
    br.threshold = 0.5;
    br.cooldown = 10;
    br.probes = 2;
    br.on_change = on_change;
    changes = 0;
    /* 3 failures: below min_calls, stays closed */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1);
        weft_breaker_record(&br, 0);
    }
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
    weft_breaker_allow(&br, NULL);
    weft_breaker_record(&br, 0);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN);
    double retry_in;
    CHECK_EQ_INT(weft_breaker_allow(&br, &retry_in), 0);
    CHECK(NEAR(retry_in, 10));
    /* peek refuses while open (counted), takes no probe, changes no state */
    unsigned rejected = br.rejected;
    fake_now = 105;
    CHECK_EQ_INT(weft_breaker_peek(&br, &retry_in), 0);
    CHECK(NEAR(retry_in, 5));
    CHECK_EQ_INT(br.rejected, rejected + 1);
    fake_now = 110;
    CHECK_EQ_INT(weft_breaker_peek(&br, NULL), 1);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN); /* allow() moves it to half-open, not peek */
    fake_now = 100;
    fake_now = 109.9;
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 0);
    fake_now = 110;
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1); /* probe 1 */
    CHECK_EQ_INT(br.state, WEFT_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1); /* probe 2 */
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 0); /* no third */
    weft_breaker_record(&br, 1);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_HALF_OPEN);
    weft_breaker_record(&br, 0); /* a probe fails: open again */
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN);
    fake_now = 121;
    weft_breaker_allow(&br, NULL);
    weft_breaker_allow(&br, NULL);
    weft_breaker_record(&br, 1);
    weft_breaker_record(&br, 1);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
    CHECK_EQ_INT(changes, 5); /* C->O, O->H, H->O, O->H, H->C */
    /* the window rolls: old failures age out */
    for (int i = 0; i < 3; i++) weft_breaker_record(&br, 0);
    fake_now += 11;
    weft_breaker_record(&br, 0);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
    /* mostly successes: stays closed */
    for (int i = 0; i < 20; i++) weft_breaker_record(&br, i % 4 != 3);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
}

static void test_breaker_release(void) {
    /* A call without a verdict (429, bad request, cancelled...) counts
     * nowhere: the window holds only verdicts. */
    fake_now = 100;
    struct weft_breaker br;
    weft_breaker_init(&br, &fake_clock);
    br.min_calls = 4;
    br.threshold = 0.5;
    br.cooldown = 10;
    br.probes = 1;
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1);
        weft_breaker_release(&br);
    }
    unsigned calls, fails;
    weft_breaker_counts(&br, &calls, &fails);
    CHECK_EQ_INT(calls, 0);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
    /* ...so they do not dilute failures: 4 timeouts among 50 releases open */
    for (int i = 0; i < 4; i++) {
        weft_breaker_allow(&br, NULL);
        weft_breaker_record(&br, 0);
    }
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN);
    /* half-open: a released probe frees its slot and changes nothing */
    fake_now = 110;
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 0); /* the slot is taken */
    weft_breaker_release(&br);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(br.probes_out, 0);
    CHECK_EQ_INT(br.probes_ok, 0);
    for (int i = 0; i < 3; i++) { /* never stuck: each release lets the next probe go */
        CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1);
        weft_breaker_release(&br);
    }
    CHECK_EQ_INT(br.state, WEFT_BREAKER_HALF_OPEN);
    /* and the probe with a verdict still decides */
    CHECK_EQ_INT(weft_breaker_allow(&br, NULL), 1);
    weft_breaker_record(&br, 1);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_CLOSED);
    /* a release while open (a call from before it opened) changes nothing */
    for (int i = 0; i < 4; i++) weft_breaker_record(&br, 0);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN);
    weft_breaker_release(&br);
    CHECK_EQ_INT(br.state, WEFT_BREAKER_OPEN);
    CHECK_EQ_INT(br.probes_out, 0);
}

int main(void) {
    RUN(test_limiter_burst_then_rate);
    RUN(test_limiter_all_dimensions_must_admit);
    RUN(test_limiter_priority_fifo_and_aging);
    RUN(test_limiter_deadline_while_queued);
    RUN(test_limiter_adaptation);
    RUN(test_limiter_refund);
    RUN(test_limiter_try);
    RUN(test_limiter_accuracy);
    RUN(test_retry_backoff_sequences);
    RUN(test_retry_decisions);
    RUN(test_retry_hints);
    RUN(test_retry_budget);
    RUN(test_breaker_transitions);
    RUN(test_breaker_release);
    return DONE();
}
