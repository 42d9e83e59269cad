/* metrics.h -- metrics registry: counters, gauges and histograms with
 * labels, and their Prometheus text exposition (format 0.0.4).
 *
 * A metric has a fixed list of label names; each distinct list of label
 * values is a series. The number of series per metric is capped
 * (max_series, default 1000): beyond it, observations go to one series
 * whose label values are all "other", and the overflow is counted in
 * weft_metrics_overflow_total{metric="..."}. Counter names end in _total.
 * Histogram buckets are fixed at creation (WEFT_BUCKETS_LATENCY for
 * seconds from 1 ms to 5 minutes, WEFT_BUCKETS_TOKENS for token counts).
 *
 * Secret values never reach a scrape: every text that came from outside
 * (metric and label names, HELP, label values) passes through the secrets
 * store's redaction (secrets.h) when it is exposed -- not when it is
 * stored, so a value loaded as a secret after its series was created is
 * still replaced by <secret NAME>.
 *
 * The registry is process-wide and single-threaded (the loop's thread).
 * Nothing here knows Lua.
 */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H

#include <stddef.h>

#define WEFT_METRIC_MAX_LABELS 8

enum weft_metric_type { WEFT_COUNTER, WEFT_GAUGE, WEFT_HISTOGRAM };

struct weft_series {
    char **values;             /* label values, owned */
    double value;              /* counter / gauge */
    double *buckets;           /* histogram: count per bucket (not cumulative) */
    double sum;
    double count;
    int unset;                 /* a gauge series out of the exposition, snapshots and
                                  readings (weft_series_unset) until set or added to */
    struct weft_series *next;  /* hash chain */
};

struct weft_metric {
    char *name, *help;
    enum weft_metric_type type;
    char *labels[WEFT_METRIC_MAX_LABELS];
    int nlabels;
    double *bounds;            /* histogram upper bounds, ascending */
    int nbounds;
    struct weft_series **table; /* hash table of series */
    int nslots;
    int nseries, max_series;
    struct weft_series *other; /* overflow series, when used */
    double overflowed;         /* observations sent to `other` */
    struct weft_series **order; /* series in creation order (exposition) */
    int norder, caporder;
};

extern const double WEFT_BUCKETS_LATENCY[];
extern const int WEFT_BUCKETS_LATENCY_N;
extern const double WEFT_BUCKETS_TOKENS[];
extern const int WEFT_BUCKETS_TOKENS_N;

/* Register a metric (or return the existing one with the same name, type
 * and labels). Returns NULL with *why set when the name or labels are
 * invalid, a counter name lacks _total, or the name exists with another
 * type/labels. bounds are copied (histograms; NULL = latency buckets). */
struct weft_metric *weft_metric_register(enum weft_metric_type type, const char *name,
                                         const char *help, const char *const *labels,
                                         int nlabels, const double *bounds, int nbounds,
                                         const char **why);

/* Find a registered metric by name, or NULL. */
struct weft_metric *weft_metric_find(const char *name);

/* The series for these label values (nlabels of them), created on first
 * use; the `other` series when the cap is reached. NULL only on
 * allocation failure. */
struct weft_series *weft_metric_series(struct weft_metric *m, const char *const *values);

/* Read back without creating anything: the sum of the value (counters,
 * gauges) or the observation count (histograms) of every series whose
 * label values match `values` (nlabels entries; a NULL entry matches any
 * value; all non-NULL: at most one series, found by hash), into *out.
 * Returns how many series matched (0: *out = 0). The `other` overflow
 * series matches only values that are all "other" or NULL. */
int weft_metric_value(const struct weft_metric *m, const char *const *values, double *out);

/* The series for these label values (nlabels of them) when it exists,
 * without creating it: NULL when it does not (the `other` overflow series
 * is not looked at). */
struct weft_series *weft_metric_lookup(const struct weft_metric *m, const char *const *values);

void weft_series_add(struct weft_series *s, double v);     /* counter/gauge; clears unset */
void weft_series_set(struct weft_series *s, double v);     /* gauge; clears unset */

/* Gauge: take the series out of the exposition, snapshots and readings
 * (weft_metric_value) until it is set or added to again -- a state that no
 * longer exists, such as a limit no longer configured. The series is not
 * freed (handles to it stay valid) and still counts towards max_series. */
void weft_series_unset(struct weft_series *s);
void weft_series_observe(struct weft_metric *m, struct weft_series *s, double v); /* histogram */

/* Set the series cap of a metric (>= 1). */
void weft_metric_set_max_series(struct weft_metric *m, int max);

/* Render every metric as Prometheus text into a malloc'd buffer (*out,
 * *len), names, HELP and label values redacted. Returns 0, or -1 on
 * allocation failure (redaction's included: nothing unredacted is
 * returned). */
int weft_metrics_text(char **out, size_t *len);

/* `s` as the registry shows it, with every loaded secret value replaced by
 * <secret NAME>: `s` itself when nothing matched (*copy = NULL), or a
 * malloc'd copy (also stored in *copy; the caller frees it). NULL on
 * allocation failure. For the bindings that expose registry texts. */
const char *weft_metrics_redact(const char *s, char **copy);

/* Number of registered metrics; the i-th (creation order). */
int weft_metrics_count(void);
struct weft_metric *weft_metrics_at(int i);

/* Free everything (tests, exit). */
void weft_metrics_reset(void);

#endif
