/* limiter.h -- rate limiter: token buckets in several dimensions, a
 * priority queue of waiters, deadlines, reconciliation and adaptation to
 * what the provider reports.
 *
 * A struct weft_limiter is one key (one provider account, say). Each
 * dimension is a token bucket over one unit (requests or tokens) with a
 * rate (units per second) and a burst (bucket size); a call is admitted
 * only when every dimension holds its cost. Waiters queue by priority
 * (0 is the highest), FIFO within a level; the waiter at the head is
 * served first and nobody overtakes it (a large cost is not starved by
 * small ones). Aging: a waiter that has waited `aging` seconds is served
 * before any younger one whatever its priority, so a low priority waits at
 * most about that long behind a stream of high-priority calls.
 *
 * Adaptation rule (weft_limiter_observe): a provider's report of
 * `remaining` units with a reset `reset_in` seconds away applies to the
 * shortest-period dimension of that unit (provider headers describe their
 * per-minute window): it lowers the local level to `remaining` when that
 * is lower (never raises it); remaining 0 also blocks that dimension until
 * the reset. A 429 with Retry-After W blocks every dimension until now + W
 * (weft_limiter_backoff). Levels keep refilling at their normal rate, so the
 * local state relaxes back to the configured limits within one period.
 *
 * The limiter only computes; the owner (lua_limiter.c) keeps a timer at
 * the time weft_limiter_pump returns and wakes admitted waiters. Nothing
 * here knows Lua or libev. Time comes from an injectable clock.
 */
#ifndef WEFT_LIMITER_H
#define WEFT_LIMITER_H

#include "clock.h"

#define WEFT_LIMITER_MAX_DIMS 8

enum weft_limit_unit { WEFT_UNIT_REQUESTS, WEFT_UNIT_TOKENS };

struct weft_limit_dim {
    char name[16];             /* "rpm", "tpd", ... (for introspection) */
    enum weft_limit_unit unit;
    double limit;              /* units per period */
    double period;             /* seconds */
    double rate;               /* units per second (limit / period) */
    double burst;              /* bucket size, units */
    double level;              /* units available (may go negative after a debit) */
    double t;                  /* time of `level` */
    double blocked_until;      /* no admission before (adaptation) */
};

struct weft_limiter_waiter {
    double requests, tokens;   /* cost */
    int prio;                  /* 0 = highest */
    double since;              /* enqueue time */
    double deadline;           /* absolute (clock time); <= 0: none */
    void *ud;                  /* owner's pointer */
    struct weft_limiter_waiter *prev, *next;
    int queued;
};

struct weft_limiter {
    struct weft_limit_dim dims[WEFT_LIMITER_MAX_DIMS];
    int ndims;
    int nprio;                 /* priority levels */
    double aging;              /* seconds; <= 0: no aging */
    const struct weft_clock *clock;
    struct weft_limiter_waiter **head, **tail; /* one FIFO per level */
    int *qlen;                 /* queue length per level */
    int queued;                /* total */
    unsigned long admitted, refused;
    unsigned long refunded;    /* admissions given back (weft_limiter_refund) */
};

enum weft_limiter_result {
    WEFT_LIMITER_ADMITTED,     /* taken now */
    WEFT_LIMITER_QUEUED,       /* wait for the admit callback of pump */
    WEFT_LIMITER_REFUSED,      /* cannot be met before the deadline / ever */
};

/* Create a limiter with no dimension yet. nprio >= 1. clock NULL: the
 * monotonic clock. Returns NULL on allocation failure. Owned by the caller
 * (weft_limiter_free). */
struct weft_limiter *weft_limiter_new(int nprio, double aging, const struct weft_clock *clock);
void weft_limiter_free(struct weft_limiter *l);

/* Add a dimension: `limit` units per `period` seconds, bucket `burst`
 * (<= 0: the limit itself). Starts full. Returns 0, or -1 when full or
 * the numbers are not positive. */
int weft_limiter_add(struct weft_limiter *l, const char *name, enum weft_limit_unit unit,
                     double limit, double period, double burst);

/* Admit or queue `w` (cost, prio, deadline set by the caller). Admitted at
 * once only when nobody is queued ahead. REFUSED sets *wait to the
 * expected wait (seconds; HUGE_VAL when the cost exceeds a burst). */
enum weft_limiter_result weft_limiter_acquire(struct weft_limiter *l,
                                              struct weft_limiter_waiter *w, double *wait);

/* Admit a call of this cost at once when nobody is queued and every limit
 * has room now (as acquire would), taking it; 0 otherwise, with nothing
 * changed: the caller then acquires with a waiter it keeps (the common
 * case costs no waiter). */
int weft_limiter_try(struct weft_limiter *l, double requests, double tokens);

/* Admit queued waiters in service order while capacity allows, calling
 * admit(w, ctx) for each (w is dequeued first). Waiters whose deadline has
 * passed are dequeued and given to expire(w, ctx). Returns the clock time
 * at which to call pump again, or a negative value when nothing is queued. */
double weft_limiter_pump(struct weft_limiter *l,
                         void (*admit)(struct weft_limiter_waiter *w, void *ctx),
                         void (*expire)(struct weft_limiter_waiter *w, void *ctx), void *ctx);

/* Remove a queued waiter (cancellation). */
void weft_limiter_cancel(struct weft_limiter *l, struct weft_limiter_waiter *w);

/* Correct the token estimate of an admitted call: refund when actual <
 * estimated, debit when more. */
void weft_limiter_reconcile(struct weft_limiter *l, double estimated, double actual);

/* Give back what an admitted call took and did not use (it was refused
 * after admission, say, so it never reached the provider): every dimension
 * gets its units back, up to its burst; a Retry-After block stays. The
 * next waiter may then go (the owner pumps). Counted in `refunded`
 * (`admitted` keeps counting admissions). */
void weft_limiter_refund(struct weft_limiter *l, double requests, double tokens);

/* Provider report for the dimensions of `unit` (see the rule above).
 * What a provider sends is not trusted to be sane: a remaining that is not
 * a number is ignored, a negative one is 0, and a reset is taken between 0
 * and WEFT_LIMITER_MAX_RESET seconds (so no header can block a limiter for
 * ever, or lower a level below empty). */
#define WEFT_LIMITER_MAX_RESET (31.0 * 86400.0)
void weft_limiter_observe(struct weft_limiter *l, enum weft_limit_unit unit, double remaining,
                          double reset_in);

/* A 429 with Retry-After `wait` seconds (a wait that is not a positive
 * number is ignored; at most WEFT_LIMITER_MAX_WAIT). */
#define WEFT_LIMITER_MAX_WAIT 86400.0
void weft_limiter_backoff(struct weft_limiter *l, double wait);

/* Refill every dimension to the current time (for introspection). */
void weft_limiter_refresh(struct weft_limiter *l);

/* Seconds until `requests`/`tokens` could be admitted with an empty queue
 * (0 when now; HUGE_VAL when larger than a burst). */
double weft_limiter_wait_for(struct weft_limiter *l, double requests, double tokens);

#endif
