/* test_metrics.c -- the metrics registry and its Prometheus exposition:
 * histogram bucketing at and around the bounds, label value escaping,
 * the cardinality cap, name validation, number formatting, redaction of
 * secret values, reading values back, gauge series taken out (unset). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metrics.h"
#include "secrets.h"

static char *text(void) {
    char *t = NULL;
    size_t n = 0;
    CHECK_EQ_INT(weft_metrics_text(&t, &n), 0);
    CHECK(t != NULL);
    CHECK_EQ_INT(strlen(t), n);
    return t;
}

/* True when `line` (a whole line) is in the exposition. */
static int has_line(const char *t, const char *line) {
    size_t n = strlen(line);
    for (const char *p = t; (p = strstr(p, line)) != NULL; p++)
        if ((p == t || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

#define CHECK_LINE(t, line) do { \
    if (!has_line((t), (line))) { \
        harness_failed++; harness_test_failed++; \
        fprintf(stdout, "# %s:%d: missing line: %s\n", __FILE__, __LINE__, (line)); \
    } } while (0)

static void test_buckets(void) {
    static const double b[] = {1, 2, 5};
    const char *why = NULL;
    struct weft_metric *m = weft_metric_register(WEFT_HISTOGRAM, "t_sizes", "Sizes.", NULL, 0, b, 3, &why);
    CHECK(m != NULL);
    struct weft_series *s = weft_metric_series(m, NULL);
    /* le is inclusive: 1 goes to le="1"; just above to le="2" */
    double obs[] = {0, 1, 1.0000001, 2, 4.99, 5, 5.01, 1e9, -3};
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++) weft_series_observe(m, s, obs[i]);
    CHECK_EQ_INT(s->buckets[0], 3); /* 0, 1, -3 */
    CHECK_EQ_INT(s->buckets[1], 2); /* 1.0000001, 2 */
    CHECK_EQ_INT(s->buckets[2], 2); /* 4.99, 5 */
    CHECK_EQ_INT(s->buckets[3], 2); /* 5.01, 1e9 -> +Inf */
    CHECK_EQ_INT(s->count, 9);
    char *t = text();
    CHECK_LINE(t, "# HELP t_sizes Sizes.");
    CHECK_LINE(t, "# TYPE t_sizes histogram");
    CHECK_LINE(t, "t_sizes_bucket{le=\"1\"} 3");
    CHECK_LINE(t, "t_sizes_bucket{le=\"2\"} 5"); /* cumulative */
    CHECK_LINE(t, "t_sizes_bucket{le=\"5\"} 7");
    CHECK_LINE(t, "t_sizes_bucket{le=\"+Inf\"} 9");
    CHECK_LINE(t, "t_sizes_count 9");
    CHECK(strstr(t, "t_sizes_sum 1000000016.0000001") != NULL || strstr(t, "t_sizes_sum 1000000016") != NULL);
    free(t);

    /* the standard layouts: latency from 1 ms to 5 min, tokens up to 1M */
    CHECK(WEFT_BUCKETS_LATENCY[0] == 0.001);
    CHECK(WEFT_BUCKETS_LATENCY[WEFT_BUCKETS_LATENCY_N - 1] == 300);
    CHECK(WEFT_BUCKETS_TOKENS[WEFT_BUCKETS_TOKENS_N - 1] == 1048576);
    struct weft_metric *lat = weft_metric_register(WEFT_HISTOGRAM, "t_lat_seconds", "L.", NULL, 0, NULL, 0, &why);
    CHECK(lat != NULL && lat->nbounds == WEFT_BUCKETS_LATENCY_N);
    struct weft_series *ls = weft_metric_series(lat, NULL);
    weft_series_observe(lat, ls, 0.0025); /* exactly a bound */
    weft_series_observe(lat, ls, 0.3);    /* between 0.25 and 0.5 */
    weft_series_observe(lat, ls, 301);    /* beyond 5 min */
    CHECK_EQ_INT(ls->buckets[1], 1);
    CHECK_EQ_INT(ls->buckets[8], 1);
    CHECK_EQ_INT(ls->buckets[WEFT_BUCKETS_LATENCY_N], 1);
    t = text();
    CHECK_LINE(t, "t_lat_seconds_bucket{le=\"0.0025\"} 1");
    CHECK_LINE(t, "t_lat_seconds_bucket{le=\"0.25\"} 1");
    CHECK_LINE(t, "t_lat_seconds_bucket{le=\"0.5\"} 2");
    CHECK_LINE(t, "t_lat_seconds_bucket{le=\"300\"} 2");
    CHECK_LINE(t, "t_lat_seconds_bucket{le=\"+Inf\"} 3");
    free(t);

    /* bad layouts are refused */
    static const double bad[] = {1, 1};
    CHECK(weft_metric_register(WEFT_HISTOGRAM, "t_bad", "", NULL, 0, bad, 2, &why) == NULL);
    CHECK(strstr(why, "increasing") != NULL);
    static const double inf[] = {1, INFINITY};
    CHECK(weft_metric_register(WEFT_HISTOGRAM, "t_bad2", "", NULL, 0, inf, 2, &why) == NULL);
    weft_metrics_reset();
}

static void test_escaping(void) {
    const char *labels[] = {"path", "who"};
    const char *why = NULL;
    struct weft_metric *m = weft_metric_register(WEFT_COUNTER, "t_req_total",
                                                 "Help with \\ backslash\nand newline \"quoted\".",
                                                 labels, 2, NULL, 0, &why);
    CHECK(m != NULL);
    const char *v1[] = {"a\"b", "c\\d\ne"};
    weft_series_add(weft_metric_series(m, v1), 2);
    const char *v2[] = {"", "ünïcode"};
    weft_series_add(weft_metric_series(m, v2), 0.5);
    /* invalid UTF-8 (stray bytes, a truncated sequence, an overlong '/')
     * becomes U+FFFD instead of breaking the whole exposition */
    const char *v3[] = {"bad\xff\xfeok", "cut\xe2\x82"};
    weft_series_add(weft_metric_series(m, v3), 1);
    const char *v4[] = {"\xc0\xaf", "\xf0\x9f\x98\x80"};
    weft_series_add(weft_metric_series(m, v4), 1);
    char *t = text();
    /* HELP escapes \ and newline only; label values also escape " */
    CHECK_LINE(t, "# HELP t_req_total Help with \\\\ backslash\\nand newline \"quoted\".");
    CHECK_LINE(t, "# TYPE t_req_total counter");
    CHECK_LINE(t, "t_req_total{path=\"a\\\"b\",who=\"c\\\\d\\ne\"} 2");
    CHECK_LINE(t, "t_req_total{path=\"\",who=\"ünïcode\"} 0.5");
    CHECK_LINE(t, "t_req_total{path=\"bad\xef\xbf\xbd\xef\xbf\xbdok\",who=\"cut\xef\xbf\xbd\xef\xbf\xbd\"} 1");
    CHECK_LINE(t, "t_req_total{path=\"\xef\xbf\xbd\xef\xbf\xbd\",who=\"\xf0\x9f\x98\x80\"} 1");
    free(t);
    weft_metrics_reset();
}

/* A secret's value used as a label value or in HELP never reaches the
 * exposition, even when the secret was loaded after the series was
 * created; the replacement is escaped like any label value, and the
 * value is replaced before escaping (a value with a quote in it). */
static void test_redaction(void) {
    const char *labels[] = {"key", "plain"};
    const char *why = NULL;
    struct weft_metric *m = weft_metric_register(
        WEFT_COUNTER, "t_keyed_total", "Counted by key wcanary-help-Zr4Yp1", labels, 2, NULL, 0, &why);
    CHECK(m != NULL);
    const char *v1[] = {"wcanary-label-Xq9Lm2", "a"};
    weft_series_add(weft_metric_series(m, v1), 1);
    const char *v2[] = {"pre wcanary-quo\"te-Mk3 post", "b"};
    weft_series_add(weft_metric_series(m, v2), 2);
    const char *hl[] = {"who"};
    struct weft_metric *h =
        weft_metric_register(WEFT_HISTOGRAM, "t_keyed_seconds", "H.", hl, 1, NULL, 0, &why);
    const char *hv[] = {"wcanary-label-Xq9Lm2"};
    weft_series_observe(h, weft_metric_series(h, hv), 0.3);

    /* loaded only now: the series already exist */
    struct weft_secret *s1 = weft_secret_get("env:T_LABEL");
    struct weft_secret *s2 = weft_secret_get("t\"quoted");
    struct weft_secret *s3 = weft_secret_get("help");
    CHECK(weft_secret_set(s1, "wcanary-label-Xq9Lm2", 20, 0, &why) == 0);
    CHECK(weft_secret_set(s2, "wcanary-quo\"te-Mk3", 18, 0, &why) == 0);
    CHECK(weft_secret_set(s3, "wcanary-help-Zr4Yp1", 19, 0, &why) == 0);
    char *t = text();
    CHECK(strstr(t, "wcanary") == NULL);
    CHECK_LINE(t, "# HELP t_keyed_total Counted by key <secret help>");
    CHECK_LINE(t, "t_keyed_total{key=\"<secret env:T_LABEL>\",plain=\"a\"} 1");
    CHECK_LINE(t, "t_keyed_total{key=\"pre <secret t\\\"quoted> post\",plain=\"b\"} 2");
    CHECK_LINE(t, "t_keyed_seconds_bucket{who=\"<secret env:T_LABEL>\",le=\"0.5\"} 1");
    CHECK_LINE(t, "t_keyed_seconds_count{who=\"<secret env:T_LABEL>\"} 1");
    free(t);
    /* the helper the bindings use */
    char *copy;
    CHECK_EQ_STR(weft_metrics_redact("x wcanary-label-Xq9Lm2", &copy), "x <secret env:T_LABEL>");
    free(copy);
    const char *plain = "nothing secret";
    CHECK(weft_metrics_redact(plain, &copy) == plain && copy == NULL);
    /* released: the values are no longer redacted (nor held) */
    weft_secret_release(s1);
    weft_secret_release(s2);
    weft_secret_release(s3);
    t = text();
    CHECK_LINE(t, "t_keyed_total{key=\"wcanary-label-Xq9Lm2\",plain=\"a\"} 1");
    free(t);
    weft_secrets_shutdown();
    weft_metrics_reset();
}

static void test_cardinality_cap(void) {
    const char *labels[] = {"user"};
    const char *why = NULL;
    struct weft_metric *m = weft_metric_register(WEFT_COUNTER, "t_users_total", "U.", labels, 1, NULL, 0, &why);
    CHECK(m != NULL);
    weft_metric_set_max_series(m, 3);
    char name[32];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "u%d", i);
        const char *v[] = {name};
        weft_series_add(weft_metric_series(m, v), 1);
    }
    /* a known series still gets its own observations after the cap */
    const char *u1[] = {"u1"};
    weft_series_add(weft_metric_series(m, u1), 1);
    CHECK_EQ_INT(m->nseries, 3);
    CHECK_EQ_INT(m->overflowed, 7);
    char *t = text();
    CHECK_LINE(t, "t_users_total{user=\"u0\"} 1");
    CHECK_LINE(t, "t_users_total{user=\"u1\"} 2");
    CHECK_LINE(t, "t_users_total{user=\"u2\"} 1");
    CHECK_LINE(t, "t_users_total{user=\"other\"} 7");
    CHECK(strstr(t, "user=\"u3\"") == NULL);
    CHECK_LINE(t, "weft_metrics_overflow_total{metric=\"t_users_total\"} 7");
    free(t);
    weft_metrics_reset();
}

static void test_names_and_types(void) {
    const char *why = NULL;
    CHECK(weft_metric_register(WEFT_COUNTER, "no_suffix", "", NULL, 0, NULL, 0, &why) == NULL);
    CHECK(strstr(why, "_total") != NULL);
    CHECK(weft_metric_register(WEFT_GAUGE, "g_total", "", NULL, 0, NULL, 0, &why) == NULL);
    CHECK(weft_metric_register(WEFT_GAUGE, "9lives", "", NULL, 0, NULL, 0, &why) == NULL);
    CHECK(weft_metric_register(WEFT_GAUGE, "has-dash", "", NULL, 0, NULL, 0, &why) == NULL);
    CHECK(weft_metric_register(WEFT_GAUGE, "", "", NULL, 0, NULL, 0, &why) == NULL);
    const char *bad1[] = {"__reserved"};
    CHECK(weft_metric_register(WEFT_GAUGE, "g1", "", bad1, 1, NULL, 0, &why) == NULL);
    const char *bad2[] = {"a", "a"};
    CHECK(weft_metric_register(WEFT_GAUGE, "g2", "", bad2, 2, NULL, 0, &why) == NULL);
    CHECK(strstr(why, "duplicate") != NULL);
    const char *le[] = {"le"};
    CHECK(weft_metric_register(WEFT_HISTOGRAM, "h1", "", le, 1, NULL, 0, &why) == NULL);
    const char *ok[] = {"a"};
    struct weft_metric *g = weft_metric_register(WEFT_GAUGE, "ns:g", "", ok, 1, NULL, 0, &why);
    CHECK(g != NULL);
    /* the same registration returns the same metric; another shape fails */
    CHECK(weft_metric_register(WEFT_GAUGE, "ns:g", "", ok, 1, NULL, 0, &why) == g);
    CHECK(weft_metric_register(WEFT_COUNTER, "ns:g", "", ok, 1, NULL, 0, &why) == NULL);
    CHECK(weft_metric_register(WEFT_GAUGE, "ns:g", "", NULL, 0, NULL, 0, &why) == NULL);
    CHECK(weft_metric_find("ns:g") == g);

    /* gauges: set, add, negative; numbers read back exactly */
    const char *v[] = {"x"};
    struct weft_series *s = weft_metric_series(g, v);
    weft_series_set(s, 0.1);
    weft_series_add(s, 0.2);
    const char *w[] = {"y"};
    weft_series_set(weft_metric_series(g, w), -1e20);
    const char *z[] = {"z"};
    weft_series_set(weft_metric_series(g, z), NAN);
    char *t = text();
    CHECK_LINE(t, "# TYPE ns:g gauge");
    CHECK_LINE(t, "ns:g{a=\"x\"} 0.30000000000000004");
    CHECK_LINE(t, "ns:g{a=\"y\"} -1e+20");
    CHECK_LINE(t, "ns:g{a=\"z\"} NaN");
    free(t);
    weft_metrics_reset();

    /* an empty registry renders as an empty exposition */
    t = text();
    CHECK_EQ_STR(t, "");
    free(t);
}

/* weft_metric_value: exact label values, wildcards, histograms (their
 * count), the overflow series, and nothing created by a read. */
static void test_value(void) {
    const char *labels[] = {"provider", "outcome"};
    const char *why = NULL;
    struct weft_metric *c = weft_metric_register(WEFT_COUNTER, "t_calls_total", "C.", labels, 2, NULL, 0, &why);
    CHECK(c != NULL);
    const char *a_ok[] = {"a", "success"}, *a_bad[] = {"a", "timeout"}, *b_ok[] = {"b", "success"};
    weft_series_add(weft_metric_series(c, a_ok), 3);
    weft_series_add(weft_metric_series(c, a_bad), 2);
    weft_series_add(weft_metric_series(c, b_ok), 0.5);
    double v = -1;
    CHECK_EQ_INT(weft_metric_value(c, a_ok, &v), 1);
    CHECK(v == 3);
    const char *a_any[] = {"a", NULL}, *any_ok[] = {NULL, "success"}, *any[] = {NULL, NULL};
    CHECK_EQ_INT(weft_metric_value(c, a_any, &v), 2);
    CHECK(v == 5);
    CHECK_EQ_INT(weft_metric_value(c, any_ok, &v), 2);
    CHECK(v == 3.5);
    CHECK_EQ_INT(weft_metric_value(c, any, &v), 3);
    CHECK(v == 5.5);
    /* absent: 0 and no match, and the read made no series */
    const char *none[] = {"c", "success"}, *c_any[] = {"c", NULL};
    v = -1;
    CHECK_EQ_INT(weft_metric_value(c, none, &v), 0);
    CHECK(v == 0);
    CHECK_EQ_INT(weft_metric_value(c, c_any, &v), 0);
    CHECK_EQ_INT(c->nseries, 3);
    char *t = text();
    CHECK(strstr(t, "provider=\"c\"") == NULL);
    free(t);

    /* a histogram reads as its observation count */
    const char *hl[] = {"route"};
    struct weft_metric *h = weft_metric_register(WEFT_HISTOGRAM, "t_read_seconds", "H.", hl, 1, NULL, 0, &why);
    CHECK(h != NULL);
    const char *r1[] = {"r1"};
    struct weft_series *hs = weft_metric_series(h, r1);
    weft_series_observe(h, hs, 0.2);
    weft_series_observe(h, hs, 7);
    CHECK_EQ_INT(weft_metric_value(h, r1, &v), 1);
    CHECK(v == 2);

    /* past the cap: the values went to `other`, readable as such */
    weft_metric_set_max_series(c, 3);
    const char *d_ok[] = {"d", "success"}, *other[] = {"other", "other"};
    weft_series_add(weft_metric_series(c, d_ok), 4);
    CHECK_EQ_INT(weft_metric_value(c, d_ok, &v), 0);
    CHECK_EQ_INT(weft_metric_value(c, other, &v), 1);
    CHECK(v == 4);
    CHECK_EQ_INT(weft_metric_value(c, any, &v), 4);
    CHECK(v == 9.5);
    weft_metrics_reset();
}

/* weft_series_unset: a gauge series leaves the exposition and the
 * readings, a handle to it stays valid, and setting it brings it back. */
static void test_unset(void) {
    const char *labels[] = {"limiter", "limit"};
    const char *why = NULL;
    struct weft_metric *g = weft_metric_register(WEFT_GAUGE, "t_level", "L.", labels, 2, NULL, 0, &why);
    CHECK(g != NULL);
    const char *rpm[] = {"p", "rpm"}, *tpm[] = {"p", "tpm"}, *p_any[] = {"p", NULL};
    struct weft_series *a = weft_metric_series(g, rpm), *b = weft_metric_series(g, tpm);
    weft_series_set(a, 60);
    weft_series_set(b, 1000);
    CHECK(weft_metric_lookup(g, tpm) == b);
    const char *absent[] = {"p", "rpd"};
    CHECK(weft_metric_lookup(g, absent) == NULL);
    CHECK_EQ_INT(g->nseries, 2); /* a lookup creates nothing */
    weft_series_unset(b);
    char *t = text();
    CHECK_LINE(t, "t_level{limiter=\"p\",limit=\"rpm\"} 60");
    CHECK(strstr(t, "limit=\"tpm\"") == NULL);
    CHECK_LINE(t, "# TYPE t_level gauge");
    free(t);
    double v = -1;
    CHECK_EQ_INT(weft_metric_value(g, tpm, &v), 0);
    CHECK(v == 0);
    CHECK_EQ_INT(weft_metric_value(g, p_any, &v), 1);
    CHECK(v == 60);
    weft_series_add(b, 1); /* set or added to: shown again */
    CHECK_EQ_INT(weft_metric_value(g, tpm, &v), 1);
    CHECK(v == 1001);
    t = text();
    CHECK_LINE(t, "t_level{limiter=\"p\",limit=\"tpm\"} 1001");
    free(t);
    weft_metrics_reset();
}

int main(void) {
    RUN(test_buckets);
    RUN(test_escaping);
    RUN(test_redaction);
    RUN(test_cardinality_cap);
    RUN(test_names_and_types);
    RUN(test_value);
    RUN(test_unset);
    weft_metrics_reset();
    return DONE();
}
