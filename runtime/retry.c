/* retry.c -- backoff schedules, hint parsing, retry decisions, budget. */
#include "retry.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void weft_retry_policy_default(struct weft_retry_policy *p) {
    p->base = 0.5;
    p->cap = 30;
    p->multiplier = 2;
    p->jitter = WEFT_JITTER_FULL;
    p->max_attempts = 4;
    p->max_elapsed = 120;
    p->hint_cap = 60;
}

static double ceiling(const struct weft_retry_policy *p, int retry) {
    double e = p->base * pow(p->multiplier, retry - 1);
    return e < p->cap ? e : p->cap;
}

double weft_retry_backoff(const struct weft_retry_policy *p, int retry, double prev,
                          struct weft_rng *rng) {
    if (retry < 1) retry = 1;
    double e = ceiling(p, retry);
    switch (p->jitter) {
    case WEFT_JITTER_NONE:
        return e;
    case WEFT_JITTER_EQUAL:
        return e / 2 + weft_rng_uniform(rng) * (e / 2);
    case WEFT_JITTER_DECORRELATED: {
        double lo = p->base, hi = (prev > 0 ? prev : p->base) * 3;
        double d = lo + weft_rng_uniform(rng) * (hi - lo);
        return d < p->cap ? d : p->cap;
    }
    case WEFT_JITTER_FULL:
    default:
        return weft_rng_uniform(rng) * e;
    }
}

int weft_retry_kind_retryable(const char *kind) {
    return kind && (strcmp(kind, "rate_limited") == 0 || strcmp(kind, "transient") == 0 ||
                    strcmp(kind, "timeout") == 0);
}

/* Kinds x-should-retry cannot turn into a retry. */
static int never_blind(const char *kind) {
    static const char *const k[] = {"auth", "quota_exhausted", "circuit_open", "budget_exceeded",
                                    "cancelled", NULL};
    for (int i = 0; kind && k[i]; i++)
        if (strcmp(kind, k[i]) == 0) return 1;
    return 0;
}

enum weft_retry_action weft_retry_decide(const struct weft_retry_policy *p,
                                         const struct weft_retry_input *in,
                                         struct weft_rng *rng, double *delay) {
    *delay = 0;
    int retryable = weft_retry_kind_retryable(in->kind);
    if (in->should_retry == 0) retryable = 0;
    else if (in->should_retry == 1 && !never_blind(in->kind)) retryable = 1;
    if (!retryable) return WEFT_RETRY_GIVE_UP;
    if (in->attempts >= p->max_attempts) return WEFT_RETRY_GIVE_UP;

    double d = weft_retry_backoff(p, in->attempts, in->prev_delay, rng);
    int hinted = 0;
    if (in->hint >= 0) {
        if (in->hint > p->hint_cap) {
            *delay = in->hint;
            return WEFT_RETRY_RATE_LIMITED;
        }
        if (in->hint > d) {
            d = in->hint;
            hinted = 1;
        }
    }
    if (in->deadline_left >= 0 && d >= in->deadline_left) {
        *delay = d;
        return hinted ? WEFT_RETRY_RATE_LIMITED : WEFT_RETRY_GIVE_UP;
    }
    if (p->max_elapsed > 0 && in->elapsed + d > p->max_elapsed) {
        *delay = d;
        return hinted ? WEFT_RETRY_RATE_LIMITED : WEFT_RETRY_GIVE_UP;
    }
    *delay = d;
    return WEFT_RETRY_AGAIN;
}

/* ------------------------------------------------------------ hints */

int weft_retry_parse_duration(const char *s, double *seconds) {
    if (!s) return -1;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return -1;
    double total = 0;
    const char *p = s;
    int any = 0;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0 || isnan(v) || isinf(v)) return -1;
        p = end;
        double unit;
        if (*p == '\0') {
            if (any) return -1; /* "1m30" */
            unit = 1;           /* plain seconds */
        } else if (p[0] == 'm' && p[1] == 's') {
            unit = 1e-3;
            p += 2;
        } else if (p[0] == 'u' && p[1] == 's') {
            unit = 1e-6;
            p += 2;
        } else if (p[0] == 'n' && p[1] == 's') {
            unit = 1e-9;
            p += 2;
        } else if (*p == 'h') {
            unit = 3600;
            p++;
        } else if (*p == 'm') {
            unit = 60;
            p++;
        } else if (*p == 's') {
            unit = 1;
            p++;
        } else {
            return -1;
        }
        total += v * unit;
        any = 1;
    }
    *seconds = total;
    return 0;
}

int weft_retry_parse_http_date(const char *s, double *epoch) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    *epoch = (double)t;
    return 0;
}

int weft_retry_parse_rfc3339(const char *s, double *epoch) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p) return -1;
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh, mm;
        if (strlen(p) != 6 || p[3] != ':' || sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2) return -1;
        offset = sign * (hh * 3600L + mm * 60L);
        p += 6;
    } else {
        return -1;
    }
    if (*p) return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    *epoch = (double)t + frac - (double)offset;
    return 0;
}

double weft_retry_hint(const char *name, const char *value, double wall_now) {
    if (!name || !value) return -1;
    double v;
    if (strcmp(name, "retry-after-ms") == 0) {
        char *end;
        v = strtod(value, &end);
        if (end == value || *end || !(v >= 0) || isinf(v)) return -1;
        return v / 1000.0;
    }
    if (strcmp(name, "retry-after") == 0) {
        char *end;
        v = strtod(value, &end);
        if (end != value && *end == '\0' && v >= 0 && !isinf(v)) return v;
        double when;
        if (weft_retry_parse_http_date(value, &when) == 0) return when > wall_now ? when - wall_now : 0;
        return -1;
    }
    if (strncmp(name, "x-ratelimit-reset-", 18) == 0 || strcmp(name, "retrydelay") == 0) {
        return weft_retry_parse_duration(value, &v) == 0 ? v : -1;
    }
    size_t n = strlen(name);
    if (strncmp(name, "anthropic-ratelimit-", 20) == 0 && n > 6 && strcmp(name + n - 6, "-reset") == 0) {
        double when;
        if (weft_retry_parse_rfc3339(value, &when) == 0) return when > wall_now ? when - wall_now : 0;
        return -1;
    }
    return -1;
}

/* ----------------------------------------------------------- budget */

void weft_retry_budget_init(struct weft_retry_budget *b, double ratio, int min_concurrent) {
    memset(b, 0, sizeof *b);
    b->ratio = ratio;
    b->min_concurrent = min_concurrent;
}

int weft_retry_budget_take(struct weft_retry_budget *b) {
    double allowed = b->ratio * (double)b->requests;
    if (allowed < b->min_concurrent) allowed = b->min_concurrent;
    if ((double)b->retries + 1 > allowed) {
        b->denied++;
        return 0;
    }
    b->retries++;
    return 1;
}

void weft_retry_budget_release(struct weft_retry_budget *b) {
    if (b->retries > 0) b->retries--;
}
