/* metrics.c -- the registry and the Prometheus text exposition. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "secrets.h"

const double WEFT_BUCKETS_LATENCY[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                       0.5,   1,      2.5,   5,    10,    30,   60,  120, 300};
const int WEFT_BUCKETS_LATENCY_N = (int)(sizeof WEFT_BUCKETS_LATENCY / sizeof(double));
const double WEFT_BUCKETS_TOKENS[] = {16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};
const int WEFT_BUCKETS_TOKENS_N = (int)(sizeof WEFT_BUCKETS_TOKENS / sizeof(double));

static struct weft_metric **metrics;
static int nmetrics, capmetrics;
static struct weft_metric *overflow_metric; /* weft_metrics_overflow_total */

/* ------------------------------------------------------------ names */

static int valid_name(const char *s, int label) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                 (!label && *p == ':') || (p > s && *p >= '0' && *p <= '9');
        if (!ok) return 0;
    }
    if (label && s[0] == '_' && s[1] == '_') return 0; /* reserved */
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ------------------------------------------------------------ series */

static unsigned long hash_values(const char *const *v, int n) {
    unsigned long h = 1469598103934665603ul;
    for (int i = 0; i < n; i++) {
        for (const char *p = v[i]; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ul;
        h = (h ^ 0xff) * 1099511628211ul;
    }
    return h;
}

static int same_values(struct weft_series *s, const char *const *v, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s->values[i], v[i]) != 0) return 0;
    return 1;
}

static struct weft_series *series_new(struct weft_metric *m, const char *const *v) {
    struct weft_series *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->values = calloc((size_t)(m->nlabels ? m->nlabels : 1), sizeof *s->values);
    if (m->type == WEFT_HISTOGRAM) s->buckets = calloc((size_t)m->nbounds + 1, sizeof(double));
    if (!s->values || (m->type == WEFT_HISTOGRAM && !s->buckets)) goto fail;
    for (int i = 0; i < m->nlabels; i++)
        if (!(s->values[i] = strdup(v[i]))) goto fail;
    if (m->norder == m->caporder) {
        int cap = m->caporder ? m->caporder * 2 : 8;
        struct weft_series **o = realloc(m->order, (size_t)cap * sizeof *o);
        if (!o) goto fail;
        m->order = o;
        m->caporder = cap;
    }
    m->order[m->norder++] = s;
    return s;
fail:
    if (s->values)
        for (int i = 0; i < m->nlabels; i++) free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
    return NULL;
}

struct weft_series *weft_metric_series(struct weft_metric *m, const char *const *values) {
    unsigned long h = hash_values(values, m->nlabels);
    int slot = (int)(h % (unsigned long)m->nslots);
    for (struct weft_series *s = m->table[slot]; s; s = s->next)
        if (same_values(s, values, m->nlabels)) return s;
    if (m->nseries >= m->max_series) {
        /* Cardinality cap: one `other` series takes the rest. */
        if (!m->other) {
            const char *other[WEFT_METRIC_MAX_LABELS];
            for (int i = 0; i < m->nlabels; i++) other[i] = "other";
            m->other = series_new(m, other);
        }
        m->overflowed++;
        if (overflow_metric && m != overflow_metric) {
            const char *v[1] = {m->name};
            struct weft_series *os = weft_metric_series(overflow_metric, v);
            if (os) os->value++;
        }
        return m->other;
    }
    struct weft_series *s = series_new(m, values);
    if (!s) return NULL;
    s->next = m->table[slot];
    m->table[slot] = s;
    m->nseries++;
    return s;
}

static double reading(const struct weft_metric *m, const struct weft_series *s) {
    return m->type == WEFT_HISTOGRAM ? s->count : s->value;
}

struct weft_series *weft_metric_lookup(const struct weft_metric *m, const char *const *values) {
    int slot = (int)(hash_values(values, m->nlabels) % (unsigned long)m->nslots);
    for (struct weft_series *s = m->table[slot]; s; s = s->next)
        if (same_values(s, values, m->nlabels)) return s;
    return NULL;
}

int weft_metric_value(const struct weft_metric *m, const char *const *values, double *out) {
    int exact = 1;
    for (int i = 0; i < m->nlabels; i++)
        if (!values[i]) exact = 0;
    *out = 0;
    if (exact) { /* one series at most: the hash chain, as weft_metric_series finds it */
        struct weft_series *s = weft_metric_lookup(m, values);
        if (!s && m->other && same_values(m->other, values, m->nlabels)) s = m->other;
        if (!s || s->unset) return 0;
        *out = reading(m, s);
        return 1;
    }
    int n = 0; /* wildcards: every series, `other` included (it is in order[]) */
    for (int k = 0; k < m->norder; k++) {
        const struct weft_series *s = m->order[k];
        int match = !s->unset;
        for (int i = 0; match && i < m->nlabels; i++)
            match = !values[i] || strcmp(s->values[i], values[i]) == 0;
        if (match) {
            *out += reading(m, s);
            n++;
        }
    }
    return n;
}

void weft_series_add(struct weft_series *s, double v) {
    s->value += v;
    s->unset = 0;
}

void weft_series_set(struct weft_series *s, double v) {
    s->value = v;
    s->unset = 0;
}

void weft_series_unset(struct weft_series *s) { s->unset = 1; }

void weft_series_observe(struct weft_metric *m, struct weft_series *s, double v) {
    /* first bound >= v (binary search); the last slot is +Inf */
    int lo = 0, hi = m->nbounds;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= m->bounds[mid]) hi = mid;
        else lo = mid + 1;
    }
    s->buckets[lo] += 1;
    s->sum += v;
    s->count += 1;
}

void weft_metric_set_max_series(struct weft_metric *m, int max) {
    if (max >= 1) m->max_series = max;
}

/* ---------------------------------------------------------- registry */

struct weft_metric *weft_metric_find(const char *name) {
    for (int i = 0; i < nmetrics; i++)
        if (strcmp(metrics[i]->name, name) == 0) return metrics[i];
    return NULL;
}

static struct weft_metric *create(enum weft_metric_type type, const char *name, const char *help,
                                  const char *const *labels, int nlabels, const double *bounds,
                                  int nbounds, const char **why);

static void ensure_overflow_metric(void) {
    if (overflow_metric) return;
    const char *l[1] = {"metric"};
    const char *why;
    overflow_metric = create(WEFT_COUNTER, "weft_metrics_overflow_total",
                             "Observations sent to the 'other' series because a metric hit its series cap.",
                             l, 1, NULL, 0, &why);
}

static struct weft_metric *create(enum weft_metric_type type, const char *name, const char *help,
                                  const char *const *labels, int nlabels, const double *bounds,
                                  int nbounds, const char **why) {
    struct weft_metric *m = calloc(1, sizeof *m);
    if (!m) {
        *why = "out of memory";
        return NULL;
    }
    m->type = type;
    m->name = strdup(name);
    m->help = strdup(help ? help : name);
    m->nlabels = nlabels;
    for (int i = 0; i < nlabels; i++) m->labels[i] = strdup(labels[i]);
    m->nslots = 257;
    m->table = calloc((size_t)m->nslots, sizeof *m->table);
    m->max_series = 1000;
    if (type == WEFT_HISTOGRAM) {
        if (!bounds) {
            bounds = WEFT_BUCKETS_LATENCY;
            nbounds = WEFT_BUCKETS_LATENCY_N;
        }
        m->bounds = malloc((size_t)nbounds * sizeof(double));
        if (m->bounds) memcpy(m->bounds, bounds, (size_t)nbounds * sizeof(double));
        m->nbounds = nbounds;
    }
    if (nmetrics == capmetrics) {
        int cap = capmetrics ? capmetrics * 2 : 32;
        struct weft_metric **n = realloc(metrics, (size_t)cap * sizeof *n);
        if (n) {
            metrics = n;
            capmetrics = cap;
        }
    }
    if (!m->name || !m->help || !m->table || nmetrics == capmetrics ||
        (type == WEFT_HISTOGRAM && !m->bounds)) {
        *why = "out of memory";
        return NULL; /* leaks the partial metric: out of memory anyway */
    }
    metrics[nmetrics++] = m;
    return m;
}

struct weft_metric *weft_metric_register(enum weft_metric_type type, const char *name,
                                         const char *help, const char *const *labels,
                                         int nlabels, const double *bounds, int nbounds,
                                         const char **why) {
    if (!valid_name(name, 0)) {
        *why = "invalid metric name (letters, digits, _ and :, not starting with a digit)";
        return NULL;
    }
    if (type == WEFT_COUNTER && !ends_with(name, "_total")) {
        *why = "a counter's name must end in _total";
        return NULL;
    }
    if (type != WEFT_COUNTER && ends_with(name, "_total")) {
        *why = "only counters end in _total";
        return NULL;
    }
    if (nlabels < 0 || nlabels > WEFT_METRIC_MAX_LABELS) {
        *why = "too many labels (at most 8)";
        return NULL;
    }
    for (int i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], 1) || (type == WEFT_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
            *why = "invalid label name";
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0) {
                *why = "duplicate label name";
                return NULL;
            }
    }
    if (type == WEFT_HISTOGRAM && bounds) {
        if (nbounds < 1) {
            *why = "a histogram needs at least one bucket";
            return NULL;
        }
        for (int i = 0; i < nbounds; i++)
            if (isnan(bounds[i]) || isinf(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
                *why = "bucket bounds must be finite and strictly increasing";
                return NULL;
            }
    }
    struct weft_metric *m = weft_metric_find(name);
    if (m) {
        int same = m->type == type && m->nlabels == nlabels;
        for (int i = 0; same && i < nlabels; i++) same = strcmp(m->labels[i], labels[i]) == 0;
        if (!same) {
            *why = "a metric with this name exists with another type or labels";
            return NULL;
        }
        return m;
    }
    ensure_overflow_metric();
    return create(type, name, help, labels, nlabels, bounds, nbounds, why);
}

int weft_metrics_count(void) { return nmetrics; }
struct weft_metric *weft_metrics_at(int i) { return i >= 0 && i < nmetrics ? metrics[i] : NULL; }

/* -------------------------------------------------------- exposition */

/* The exposition is built in a weft_buf (no cap, not secret: every text
 * from outside is redacted before it goes in); its sticky failure flag
 * makes one check at the end enough, so these return nothing. */
static void put(struct weft_buf *b, const char *s, size_t n) { weft_buf_append(b, s, n); }

static void puts_(struct weft_buf *b, const char *s) { put(b, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static int utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n = c >= 0xc2 && c <= 0xdf ? 2 : (c & 0xf0) == 0xe0 ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))) return 0;
    if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))) return 0;
    return n;
}

/* HELP text: escape \ and newline. Label values: also ". A byte that is
 * not valid UTF-8 becomes U+FFFD: the text format is UTF-8, and one bad
 * model name must not make every scrape fail. */
static void put_escaped(struct weft_buf *b, const char *s, int quote) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p == '\\') puts_(b, "\\\\");
        else if (*p == '\n') puts_(b, "\\n");
        else if (quote && *p == '"') puts_(b, "\\\"");
        else {
            int n = utf8_len(p);
            if (n) {
                put(b, (const char *)p, (size_t)n);
                p += n;
            } else {
                puts_(b, "\xef\xbf\xbd");
                p++;
            }
            continue;
        }
        p++;
    }
}

/* v as the exposition writes it, into n[size]. */
static void format_number(char *n, size_t size, double v) {
    if (isnan(v)) snprintf(n, size, "NaN");
    else if (isinf(v)) snprintf(n, size, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(n, size, "%.0f", v);
    else {
        /* shortest text that reads back as the same double */
        for (int d = 15; d <= 17; d++) {
            snprintf(n, size, "%.*g", d, v);
            if (strtod(n, NULL) == v) break;
        }
    }
}

static void put_number(struct weft_buf *b, double v) {
    char n[64];
    format_number(n, sizeof n, v);
    puts_(b, n);
}

/* Label values are passed in already redacted (one redaction per series,
 * not one per histogram bucket line). */
static void put_labels(struct weft_buf *b, struct weft_metric *m, const char *const *names,
                       const char *const *values, const char *le) {
    if (m->nlabels == 0 && !le) return;
    puts_(b, "{");
    for (int i = 0; i < m->nlabels; i++) {
        if (i) puts_(b, ",");
        puts_(b, names[i]);
        puts_(b, "=\"");
        put_escaped(b, values[i], 1);
        puts_(b, "\"");
    }
    if (le) {
        if (m->nlabels) puts_(b, ",");
        puts_(b, "le=\"");
        puts_(b, le);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

const char *weft_metrics_redact(const char *s, char **copy) {
    char *red;
    size_t n;
    *copy = NULL;
    if (weft_secrets_redact(s, strlen(s), &red, &n) != 0) return NULL;
    if (!red) return s;
    /* the redacted text comes with a length, not a terminating NUL */
    char *z = realloc(red, n + 1);
    if (!z) {
        free(red);
        return NULL;
    }
    z[n] = '\0';
    *copy = z;
    return z;
}

/* The texts of one metric or series as exposed: each either the
 * registry's own string or a redacted copy listed in `copies`. */
struct shown {
    char *copies[2 + 2 * WEFT_METRIC_MAX_LABELS];
    int ncopies;
    int oom;
};

static const char *show(struct shown *sh, const char *s) {
    char *copy;
    const char *r = weft_metrics_redact(s, &copy);
    if (!r) {
        sh->oom = 1;
        return "";
    }
    if (copy) sh->copies[sh->ncopies++] = copy;
    return r;
}

static void shown_free(struct shown *sh) {
    for (int i = 0; i < sh->ncopies; i++) free(sh->copies[i]);
    sh->ncopies = 0;
}

/* Every text that came from outside (metric and label names, HELP, label
 * values) passes through secret redaction here, at exposition time and
 * before escaping: a value loaded as a secret after its series was
 * created is still replaced, and the escaping applies to the result, so
 * the exposition stays valid (a name that matched a secret does not: a
 * broken line is better than a leaked value). No loaded secret, no work. */
int weft_metrics_text(char **out, size_t *len) {
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    weft_buf_reserve(&b, 4096); /* a scrape is rarely smaller */
    int oom = 0;                /* a redacted copy could not be made */
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int redact = weft_secrets_loaded() > 0;
    for (int i = 0; i < nmetrics && !b.err && !oom; i++) {
        struct weft_metric *m = metrics[i];
        struct shown mk = {0}, sk = {0};
        const char *name = m->name, *help = m->help;
        const char *lnames[WEFT_METRIC_MAX_LABELS], *vals[WEFT_METRIC_MAX_LABELS];
        for (int j = 0; j < m->nlabels; j++) lnames[j] = m->labels[j];
        if (redact) {
            name = show(&mk, m->name);
            help = show(&mk, m->help);
            for (int j = 0; j < m->nlabels; j++) lnames[j] = show(&mk, m->labels[j]);
            oom |= mk.oom;
        }
        puts_(&b, "# HELP ");
        puts_(&b, name);
        puts_(&b, " ");
        put_escaped(&b, help, 0);
        puts_(&b, "\n# TYPE ");
        puts_(&b, name);
        puts_(&b, " ");
        puts_(&b, types[m->type]);
        puts_(&b, "\n");
        for (int k = 0; k < m->norder && !b.err && !oom; k++) {
            struct weft_series *s = m->order[k];
            if (s->unset) continue;
            for (int j = 0; j < m->nlabels; j++)
                vals[j] = redact ? show(&sk, s->values[j]) : s->values[j];
            oom |= sk.oom;
            if (m->type != WEFT_HISTOGRAM) {
                puts_(&b, name);
                put_labels(&b, m, lnames, vals, NULL);
                puts_(&b, " ");
                put_number(&b, s->value);
                puts_(&b, "\n");
                shown_free(&sk);
                continue;
            }
            double cum = 0;
            for (int j = 0; j <= m->nbounds; j++) {
                char le[64];
                if (j < m->nbounds) format_number(le, sizeof le, m->bounds[j]);
                else snprintf(le, sizeof le, "+Inf");
                cum += s->buckets[j];
                puts_(&b, name);
                puts_(&b, "_bucket");
                put_labels(&b, m, lnames, vals, le);
                puts_(&b, " ");
                put_number(&b, cum);
                puts_(&b, "\n");
            }
            puts_(&b, name);
            puts_(&b, "_sum");
            put_labels(&b, m, lnames, vals, NULL);
            puts_(&b, " ");
            put_number(&b, s->sum);
            puts_(&b, "\n");
            puts_(&b, name);
            puts_(&b, "_count");
            put_labels(&b, m, lnames, vals, NULL);
            puts_(&b, " ");
            put_number(&b, s->count);
            puts_(&b, "\n");
            shown_free(&sk);
        }
        shown_free(&mk);
    }
    if (oom) weft_buf_free(&b);
    /* NUL-terminated, "" when no metric exists; NULL after a failure. */
    *out = oom ? NULL : weft_buf_take(&b, len);
    if (!*out) {
        *len = 0;
        return -1;
    }
    return 0;
}

void weft_metrics_reset(void) {
    for (int i = 0; i < nmetrics; i++) {
        struct weft_metric *m = metrics[i];
        for (int k = 0; k < m->norder; k++) {
            struct weft_series *s = m->order[k];
            for (int j = 0; j < m->nlabels; j++) free(s->values[j]);
            free(s->values);
            free(s->buckets);
            free(s);
        }
        for (int j = 0; j < m->nlabels; j++) free(m->labels[j]);
        free(m->order);
        free(m->table);
        free(m->bounds);
        free(m->name);
        free(m->help);
        free(m);
    }
    free(metrics);
    metrics = NULL;
    nmetrics = capmetrics = 0;
    overflow_metric = NULL;
}
