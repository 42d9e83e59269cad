/* limiter.c -- multi-dimension token buckets with a priority queue. */
#include "limiter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- buckets */

static void refill(struct weft_limit_dim *d, double now) {
    if (now > d->t) {
        d->level += d->rate * (now - d->t);
        if (d->level > d->burst) d->level = d->burst;
        d->t = now;
    }
}

static double cost_in(const struct weft_limit_dim *d, double requests, double tokens) {
    return d->unit == WEFT_UNIT_REQUESTS ? requests : tokens;
}

/* Seconds from `now` until `c` units are there (and the block is over). */
static double dim_wait(const struct weft_limit_dim *d, double c, double now) {
    if (c <= 0) return d->blocked_until > now ? d->blocked_until - now : 0;
    if (c > d->burst) return HUGE_VAL;
    double ready = now;
    if (d->level < c) ready = now + (c - d->level) / d->rate;
    if (d->blocked_until > ready) ready = d->blocked_until;
    return ready - now;
}

static double wait_all(struct weft_limiter *l, double requests, double tokens, double now) {
    double w = 0;
    for (int i = 0; i < l->ndims; i++) {
        refill(&l->dims[i], now);
        double x = dim_wait(&l->dims[i], cost_in(&l->dims[i], requests, tokens), now);
        if (x > w) w = x;
    }
    return w;
}

static void take(struct weft_limiter *l, double requests, double tokens) {
    for (int i = 0; i < l->ndims; i++)
        l->dims[i].level -= cost_in(&l->dims[i], requests, tokens);
    l->admitted++;
}

/* ------------------------------------------------------------ queue */

static void enqueue(struct weft_limiter *l, struct weft_limiter_waiter *w) {
    int p = w->prio;
    w->next = NULL;
    w->prev = l->tail[p];
    if (l->tail[p]) l->tail[p]->next = w;
    else l->head[p] = w;
    l->tail[p] = w;
    l->qlen[p]++;
    l->queued++;
    w->queued = 1;
}

static void dequeue(struct weft_limiter *l, struct weft_limiter_waiter *w) {
    int p = w->prio;
    if (w->prev) w->prev->next = w->next;
    else l->head[p] = w->next;
    if (w->next) w->next->prev = w->prev;
    else l->tail[p] = w->prev;
    w->prev = w->next = NULL;
    l->qlen[p]--;
    l->queued--;
    w->queued = 0;
}

/* Who is served next: the oldest waiter that has aged past `aging`, else
 * the head of the highest priority level. */
static struct weft_limiter_waiter *next_waiter(struct weft_limiter *l, double now) {
    struct weft_limiter_waiter *aged = NULL;
    if (l->aging > 0) {
        for (int p = 0; p < l->nprio; p++) {
            struct weft_limiter_waiter *h = l->head[p];
            if (h && now - h->since >= l->aging && (!aged || h->since < aged->since)) aged = h;
        }
        if (aged) return aged;
    }
    for (int p = 0; p < l->nprio; p++)
        if (l->head[p]) return l->head[p];
    return NULL;
}

/* ----------------------------------------------------------- public */

struct weft_limiter *weft_limiter_new(int nprio, double aging, const struct weft_clock *clock) {
    if (nprio < 1) nprio = 1;
    struct weft_limiter *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->head = calloc((size_t)nprio, sizeof *l->head);
    l->tail = calloc((size_t)nprio, sizeof *l->tail);
    l->qlen = calloc((size_t)nprio, sizeof *l->qlen);
    if (!l->head || !l->tail || !l->qlen) {
        weft_limiter_free(l);
        return NULL;
    }
    l->nprio = nprio;
    l->aging = aging;
    l->clock = clock ? clock : &weft_clock_monotonic;
    return l;
}

void weft_limiter_free(struct weft_limiter *l) {
    if (!l) return;
    free(l->head);
    free(l->tail);
    free(l->qlen);
    free(l);
}

int weft_limiter_add(struct weft_limiter *l, const char *name, enum weft_limit_unit unit,
                     double limit, double period, double burst) {
    if (l->ndims >= WEFT_LIMITER_MAX_DIMS || !(limit > 0) || !(period > 0) || isinf(limit) ||
        isinf(period))
        return -1;
    struct weft_limit_dim *d = &l->dims[l->ndims++];
    memset(d, 0, sizeof *d);
    strncpy(d->name, name ? name : "", sizeof d->name - 1);
    d->unit = unit;
    d->limit = limit;
    d->period = period;
    d->rate = limit / period;
    d->burst = burst > 0 ? burst : limit;
    d->level = d->burst;
    d->t = weft_clock_now(l->clock);
    return 0;
}

enum weft_limiter_result weft_limiter_acquire(struct weft_limiter *l,
                                              struct weft_limiter_waiter *w, double *wait) {
    double now = weft_clock_now(l->clock);
    if (w->prio < 0) w->prio = 0;
    if (w->prio >= l->nprio) w->prio = l->nprio - 1;
    double own = wait_all(l, w->requests, w->tokens, now);
    *wait = own;
    if (isinf(own)) {
        l->refused++;
        return WEFT_LIMITER_REFUSED;
    }
    if (l->queued == 0 && own <= 0) {
        take(l, w->requests, w->tokens);
        return WEFT_LIMITER_ADMITTED;
    }
    /* Expected wait: everything served before w (higher levels and w's own
     * level, FIFO; aging ignored) must pass through the buckets first. */
    double est = own;
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        double ahead = cost_in(d, w->requests, w->tokens);
        for (int p = 0; p <= w->prio; p++)
            for (struct weft_limiter_waiter *q = l->head[p]; q; q = q->next)
                ahead += cost_in(d, q->requests, q->tokens);
        double x = dim_wait(d, 0, now);
        if (ahead > d->level) {
            double y = (ahead - d->level) / d->rate;
            if (y > x) x = y;
        }
        if (x > est) est = x;
    }
    *wait = est;
    if (w->deadline > 0 && now + est > w->deadline) {
        l->refused++;
        return WEFT_LIMITER_REFUSED;
    }
    w->since = now;
    enqueue(l, w);
    return WEFT_LIMITER_QUEUED;
}

int weft_limiter_try(struct weft_limiter *l, double requests, double tokens) {
    if (l->queued != 0) return 0;
    if (wait_all(l, requests, tokens, weft_clock_now(l->clock)) > 0) return 0;
    take(l, requests, tokens);
    return 1;
}

double weft_limiter_pump(struct weft_limiter *l,
                         void (*admit)(struct weft_limiter_waiter *w, void *ctx),
                         void (*expire)(struct weft_limiter_waiter *w, void *ctx), void *ctx) {
    for (;;) {
        double now = weft_clock_now(l->clock);
        struct weft_limiter_waiter *w = next_waiter(l, now);
        if (!w) return -1;
        if (w->deadline > 0 && now >= w->deadline) {
            dequeue(l, w);
            l->refused++;
            if (expire) expire(w, ctx);
            continue;
        }
        double wait = wait_all(l, w->requests, w->tokens, now);
        if (wait > 0) {
            double at = now + wait;
            /* With aging, a younger head may age past `aging` before the
             * chosen one can go: wake up then to re-decide. */
            if (l->aging > 0) {
                for (int p = 0; p < l->nprio; p++) {
                    struct weft_limiter_waiter *h = l->head[p];
                    if (h && h != w && h->since + l->aging > now && h->since + l->aging < at)
                        at = h->since + l->aging;
                }
            }
            if (w->deadline > 0 && w->deadline < at) at = w->deadline;
            return at;
        }
        dequeue(l, w);
        take(l, w->requests, w->tokens);
        admit(w, ctx);
    }
}

void weft_limiter_cancel(struct weft_limiter *l, struct weft_limiter_waiter *w) {
    if (w->queued) dequeue(l, w);
}

void weft_limiter_reconcile(struct weft_limiter *l, double estimated, double actual) {
    double now = weft_clock_now(l->clock);
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        if (d->unit != WEFT_UNIT_TOKENS) continue;
        refill(d, now);
        d->level += estimated - actual;
        if (d->level > d->burst) d->level = d->burst;
    }
}

void weft_limiter_refund(struct weft_limiter *l, double requests, double tokens) {
    double now = weft_clock_now(l->clock);
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        refill(d, now);
        d->level += cost_in(d, requests, tokens);
        if (d->level > d->burst) d->level = d->burst;
    }
    l->refunded++;
}

void weft_limiter_observe(struct weft_limiter *l, enum weft_limit_unit unit, double remaining,
                          double reset_in) {
    if (remaining != remaining) return; /* NaN */
    if (remaining < 0) remaining = 0;
    if (!(reset_in > 0)) reset_in = 0;
    if (reset_in > WEFT_LIMITER_MAX_RESET) reset_in = WEFT_LIMITER_MAX_RESET;
    double now = weft_clock_now(l->clock);
    struct weft_limit_dim *best = NULL;
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        if (d->unit == unit && (!best || d->period < best->period)) best = d;
    }
    if (!best) return;
    refill(best, now);
    if (remaining < best->level) best->level = remaining;
    if (remaining <= 0 && reset_in > 0 && now + reset_in > best->blocked_until)
        best->blocked_until = now + reset_in;
}

void weft_limiter_backoff(struct weft_limiter *l, double wait) {
    if (!(wait > 0)) return;
    if (wait > WEFT_LIMITER_MAX_WAIT) wait = WEFT_LIMITER_MAX_WAIT;
    double now = weft_clock_now(l->clock);
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        refill(d, now);
        if (wait > 0 && now + wait > d->blocked_until) d->blocked_until = now + wait;
    }
}

void weft_limiter_refresh(struct weft_limiter *l) {
    double now = weft_clock_now(l->clock);
    for (int i = 0; i < l->ndims; i++) refill(&l->dims[i], now);
}

double weft_limiter_wait_for(struct weft_limiter *l, double requests, double tokens) {
    return wait_all(l, requests, tokens, weft_clock_now(l->clock));
}
