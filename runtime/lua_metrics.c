/* lua_metrics.c -- weft._metrics: the Lua binding of metrics.c.
 *
 *   local m = _metrics.new("counter"|"gauge"|"histogram", name, help, {labels}, buckets)
 *   m:inc(v, ...), m:set(v, ...), m:observe(v, ...)   -- label values as trailing args
 *   local s = m:labels(...)  -- a series handle: s:inc(v), s:set(v), s:observe(v)
 *   m:value(...), s:value()  -- read back (value, or a histogram's count); nil labels match any
 *   m:unset(...)             -- gauge: the series leaves the exposition until set again
 *   _metrics.record(s1, v1, s2, v2, ...)   -- several series in one call (l_record)
 *   _metrics.text(), _metrics.snapshot()   -- loaded secret values redacted in both
 * Series handles point into the registry, which never frees a series while
 * the process runs, so a handle cached in Lua stays valid.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "luax.h"
#include "metrics.h"
#include "secrets.h"

#define METRIC_MT "weft.metric"
#define SERIES_MT "weft.metric.series"

struct lmetric {
    struct weft_metric *m;
};

static const char SERIES_MARK = 'S';
struct lseries {
    const char *mark; /* &SERIES_MARK: l_record knows a series by it */
    struct weft_metric *m;
    struct weft_series *s;
};

static struct weft_metric *check_metric(lua_State *L) {
    return ((struct lmetric *)luaL_checkudata(L, 1, METRIC_MT))->m;
}

/* _metrics.new(type, name, help, labels, buckets) */
static int l_new(lua_State *L) {
    const char *type = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    const char *help = luaL_optstring(L, 3, name);
    enum weft_metric_type t;
    if (strcmp(type, "counter") == 0) t = WEFT_COUNTER;
    else if (strcmp(type, "gauge") == 0) t = WEFT_GAUGE;
    else if (strcmp(type, "histogram") == 0) t = WEFT_HISTOGRAM;
    else return luaL_error(L, "weft.metrics: unknown metric type %s", type);
    const char *labels[WEFT_METRIC_MAX_LABELS];
    int n = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        n = (int)lua_objlen(L, 4);
        if (n > WEFT_METRIC_MAX_LABELS) return luaL_error(L, "weft.metrics: %s: at most 8 labels", name);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, 4, i + 1);
            labels[i] = lua_tostring(L, -1);
            if (!labels[i]) return luaL_error(L, "weft.metrics: %s: label names must be strings", name);
            lua_pop(L, 1); /* still referenced by the table */
        }
    }
    double *bounds = NULL;
    int nb = 0;
    if (t == WEFT_HISTOGRAM && lua_istable(L, 5)) {
        nb = (int)lua_objlen(L, 5);
        bounds = malloc((size_t)(nb ? nb : 1) * sizeof(double));
        if (!bounds) return luaL_error(L, "out of memory");
        for (int i = 0; i < nb; i++) {
            lua_rawgeti(L, 5, i + 1);
            bounds[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else if (t == WEFT_HISTOGRAM && lua_type(L, 5) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 5);
        if (strcmp(k, "tokens") == 0) {
            bounds = malloc((size_t)WEFT_BUCKETS_TOKENS_N * sizeof(double));
            if (!bounds) return luaL_error(L, "out of memory");
            memcpy(bounds, WEFT_BUCKETS_TOKENS, (size_t)WEFT_BUCKETS_TOKENS_N * sizeof(double));
            nb = WEFT_BUCKETS_TOKENS_N;
        } else if (strcmp(k, "latency") != 0) {
            return luaL_error(L, "weft.metrics: %s: buckets must be a list, \"latency\" or \"tokens\"", name);
        }
    }
    const char *why = NULL;
    struct weft_metric *m = weft_metric_register(t, name, help, labels, n, bounds, nb, &why);
    free(bounds);
    if (!m) return luaL_error(L, "weft.metrics: %s: %s", name, why);
    struct lmetric *lm = lua_newuserdata(L, sizeof *lm);
    lm->m = m;
    luaL_getmetatable(L, METRIC_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* Label values from stack index `first` on (numbers/booleans converted). */
static struct weft_series *series_at(lua_State *L, struct weft_metric *m, int first) {
    const char *v[WEFT_METRIC_MAX_LABELS];
    int have = lua_gettop(L) - first + 1;
    if (have < 0) have = 0;
    if (have < m->nlabels)
        luaL_error(L, "metric %s needs %d label values, got %d", m->name, m->nlabels, have);
    for (int i = 0; i < m->nlabels; i++) {
        int idx = first + i;
        if (lua_type(L, idx) == LUA_TBOOLEAN) v[i] = lua_toboolean(L, idx) ? "true" : "false";
        else if (lua_isnil(L, idx)) v[i] = "";
        else {
            v[i] = lua_tostring(L, idx);
            if (!v[i]) luaL_error(L, "metric %s: label values must be strings or numbers", m->name);
        }
    }
    struct weft_series *s = weft_metric_series(m, v);
    if (!s) luaL_error(L, "out of memory");
    return s;
}

static int l_inc(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    double v = luaL_optnumber(L, 2, 1);
    if (m->type == WEFT_HISTOGRAM) return luaL_error(L, "metric %s is a histogram: use observe", m->name);
    if (m->type == WEFT_COUNTER && v < 0) return luaL_error(L, "counter %s cannot decrease", m->name);
    weft_series_add(series_at(L, m, 3), v);
    return 0;
}

static int l_set(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    if (m->type != WEFT_GAUGE) return luaL_error(L, "metric %s is not a gauge", m->name);
    weft_series_set(series_at(L, m, 3), luaL_checknumber(L, 2));
    return 0;
}

static int l_observe(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    if (m->type != WEFT_HISTOGRAM) return luaL_error(L, "metric %s is not a histogram", m->name);
    weft_series_observe(m, series_at(L, m, 3), luaL_checknumber(L, 2));
    return 0;
}

static struct lseries *check_series(lua_State *L) {
    return weft_check_marked(L, 1, &SERIES_MARK, sizeof(struct lseries), SERIES_MT);
}

static int l_labels(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    struct weft_series *s = series_at(L, m, 2);
    struct lseries *ls = lua_newuserdata(L, sizeof *ls);
    ls->mark = &SERIES_MARK;
    ls->m = m;
    ls->s = s;
    luaL_getmetatable(L, SERIES_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* m:value(...) -> sum, nseries: the value (counters, gauges) or count
 * (histograms) summed over the series whose label values match; a nil or
 * missing label value matches any value. Creates no series. */
static int l_value(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    const char *v[WEFT_METRIC_MAX_LABELS];
    for (int i = 0; i < m->nlabels; i++) {
        int idx = 2 + i;
        if (lua_isnoneornil(L, idx)) v[i] = NULL;
        else if (lua_type(L, idx) == LUA_TBOOLEAN) v[i] = lua_toboolean(L, idx) ? "true" : "false";
        else if (!(v[i] = lua_tostring(L, idx)))
            return luaL_error(L, "metric %s: label values must be strings or numbers", m->name);
    }
    double sum;
    int n = weft_metric_value(m, v, &sum);
    lua_pushnumber(L, sum);
    lua_pushinteger(L, n);
    return 2;
}

/* m:unset(...) -> true when the gauge had a series with these label values:
 * it leaves the exposition, snapshots and readings until it is set again
 * (metrics.h). Creates nothing. */
static int l_unset(lua_State *L) {
    struct weft_metric *m = check_metric(L);
    if (m->type != WEFT_GAUGE) return luaL_error(L, "metric %s is not a gauge", m->name);
    const char *v[WEFT_METRIC_MAX_LABELS];
    for (int i = 0; i < m->nlabels; i++) {
        int idx = 2 + i;
        if (lua_type(L, idx) == LUA_TBOOLEAN) v[i] = lua_toboolean(L, idx) ? "true" : "false";
        else if (lua_isnoneornil(L, idx)) v[i] = "";
        else if (!(v[i] = lua_tostring(L, idx)))
            return luaL_error(L, "metric %s: label values must be strings or numbers", m->name);
    }
    struct weft_series *s = weft_metric_lookup(m, v);
    if (s) weft_series_unset(s);
    lua_pushboolean(L, s != NULL);
    return 1;
}

static int l_max_series(lua_State *L) {
    weft_metric_set_max_series(check_metric(L), (int)luaL_checkinteger(L, 2));
    return 0;
}

static int l_s_inc(lua_State *L) {
    struct lseries *ls = check_series(L);
    double v = luaL_optnumber(L, 2, 1);
    if (ls->m->type == WEFT_COUNTER && v < 0) return luaL_error(L, "counter %s cannot decrease", ls->m->name);
    weft_series_add(ls->s, v);
    return 0;
}

static int l_s_set(lua_State *L) {
    struct lseries *ls = check_series(L);
    weft_series_set(ls->s, luaL_checknumber(L, 2));
    return 0;
}

static int l_s_observe(lua_State *L) {
    struct lseries *ls = check_series(L);
    if (ls->m->type != WEFT_HISTOGRAM) return luaL_error(L, "metric %s is not a histogram", ls->m->name);
    weft_series_observe(ls->m, ls->s, luaL_checknumber(L, 2));
    return 0;
}

/* _metrics.record(s1, v1[, s2, v2, ...]): each series takes its value by
 * its kind -- a counter adds it, a gauge is set to it, a histogram
 * observes it; a nil series is skipped. All are checked before any is
 * changed. The updates of one call in one crossing (weft.calls,
 * weft.http). */
enum { RECORD_MAX = 16 };
static int l_record(lua_State *L) {
    int n = lua_gettop(L);
    if (n % 2) return luaL_error(L, "metrics.record: series and values go in pairs");
    if (n > 2 * RECORD_MAX) return luaL_error(L, "metrics.record: at most %d series", RECORD_MAX);
    /* (a series is known by its size and mark: no metatable lookup, which
     * would cost more than the update) */
    struct lseries *ls[RECORD_MAX];
    double v[RECORD_MAX];
    for (int i = 0; i < n / 2; i++) {
        int at = 2 * i + 1;
        ls[i] = lua_touserdata(L, at);
        if (!ls[i]) {
            if (!lua_isnil(L, at)) return luaL_argerror(L, at, "a metric series expected");
            continue;
        }
        if (lua_objlen(L, at) != sizeof *ls[i] || ls[i]->mark != &SERIES_MARK)
            return luaL_argerror(L, at, "a metric series expected");
        v[i] = luaL_checknumber(L, at + 1);
        if (v[i] < 0 && ls[i]->m->type == WEFT_COUNTER)
            return luaL_error(L, "counter %s cannot decrease", ls[i]->m->name);
    }
    for (int i = 0; i < n / 2; i++) {
        if (!ls[i]) continue;
        switch (ls[i]->m->type) {
        case WEFT_COUNTER:
            weft_series_add(ls[i]->s, v[i]);
            break;
        case WEFT_GAUGE:
            weft_series_set(ls[i]->s, v[i]);
            break;
        case WEFT_HISTOGRAM:
            weft_series_observe(ls[i]->m, ls[i]->s, v[i]);
            break;
        }
    }
    return 0;
}

/* s:value() -> the series' value, or its count for a histogram */
static int l_s_value(lua_State *L) {
    struct lseries *ls = check_series(L);
    lua_pushnumber(L, ls->m->type == WEFT_HISTOGRAM ? ls->s->count : ls->s->value);
    return 1;
}

static int l_text(lua_State *L) {
    char *t;
    size_t n;
    if (weft_metrics_text(&t, &n) != 0) return luaL_error(L, "out of memory");
    lua_pushlstring(L, t, n);
    free(t);
    return 1;
}

/* Push a registry text as Lua is shown it: redacted (metrics.h) when any
 * secret is loaded. */
static void push_shown(lua_State *L, const char *s, int redact) {
    char *copy = NULL;
    const char *r = redact ? weft_metrics_redact(s, &copy) : s;
    if (!r) luaL_error(L, "out of memory");
    lua_pushstring(L, r);
    free(copy);
}

/* snapshot() -> {name = {type=, help=, labels={...}, series={{labels={k=v}, value=|buckets=,sum=,count=}}}}
 * Names, help and label values are redacted as in the text exposition. */
static int l_snapshot(lua_State *L) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int n = weft_metrics_count();
    int redact = weft_secrets_loaded() > 0;
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        struct weft_metric *m = weft_metrics_at(i);
        push_shown(L, m->name, redact);                      /* [snap, name] */
        lua_createtable(L, 0, 4);                            /* [snap, name, metric] */
        lua_pushstring(L, types[m->type]);
        lua_setfield(L, -2, "type");
        push_shown(L, m->help, redact);
        lua_setfield(L, -2, "help");
        lua_createtable(L, m->norder, 0);                    /* [snap, name, metric, series] */
        int shown = 0;
        for (int k = 0; k < m->norder; k++) {
            struct weft_series *s = m->order[k];
            if (s->unset) continue;
            lua_createtable(L, 0, 4);                        /* [..., series, one] */
            lua_createtable(L, 0, m->nlabels);               /* [..., series, one, labels] */
            for (int j = 0; j < m->nlabels; j++) {
                push_shown(L, m->labels[j], redact);
                push_shown(L, s->values[j], redact);
                lua_rawset(L, -3);
            }
            lua_setfield(L, -2, "labels");
            if (m->type == WEFT_HISTOGRAM) {
                lua_createtable(L, m->nbounds + 1, 0);
                double cum = 0;
                for (int j = 0; j <= m->nbounds; j++) {
                    cum += s->buckets[j];
                    lua_createtable(L, 2, 0);
                    lua_pushnumber(L, j < m->nbounds ? m->bounds[j] : HUGE_VAL);
                    lua_rawseti(L, -2, 1);
                    lua_pushnumber(L, cum);
                    lua_rawseti(L, -2, 2);
                    lua_rawseti(L, -2, j + 1);
                }
                lua_setfield(L, -2, "buckets");
                lua_pushnumber(L, s->sum);
                lua_setfield(L, -2, "sum");
                lua_pushnumber(L, s->count);
                lua_setfield(L, -2, "count");
            } else {
                lua_pushnumber(L, s->value);
                lua_setfield(L, -2, "value");
            }
            lua_rawseti(L, -2, ++shown);
        }
        lua_setfield(L, -2, "series");                       /* [snap, name, metric] */
        lua_rawset(L, -3);                                   /* [snap] */
    }
    return 1;
}

int luaopen_weft_metrics(lua_State *L) {
    static const luaL_Reg mm[] = {{"inc", l_inc}, {"set", l_set}, {"observe", l_observe},
                                  {"labels", l_labels}, {"max_series", l_max_series},
                                  {"value", l_value}, {"unset", l_unset}, {NULL, NULL}};
    static const luaL_Reg sm[] = {{"inc", l_s_inc}, {"set", l_s_set}, {"observe", l_s_observe},
                                  {"value", l_s_value}, {NULL, NULL}};
    /* no __gc: a handle only points into the process-wide registry
     * (metrics.c), which owns the metric and its series */
    weft_register_class(L, METRIC_MT, mm, NULL);
    weft_register_class(L, SERIES_MT, sm, NULL);
    static const luaL_Reg fns[] = {{"new", l_new},           {"text", l_text},
                                   {"snapshot", l_snapshot}, {"record", l_record},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
