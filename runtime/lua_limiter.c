/* lua_limiter.c -- weft._limiter: the Lua binding of limiter.c.
 *
 *   local l = _limiter.new(dims, nprio, aging)   -- dims: {{name=, unit=, limit=, period=, burst=}...}
 *   l:acquire(requests, tokens, prio, deadline)  -- true | nil, err (rate_limited)
 *   l:reconcile(estimated, actual), l:refund(requests, tokens),
 *   l:observe(unit, remaining, reset_in), l:backoff(seconds), l:state()
 *
 * A queued acquire suspends its task on a struct lwaiter (malloc'd, owned
 * by the waiting operation; freed when admitted, expired or cancelled).
 * One ev_timer per limiter fires at the time weft_limiter_pump names (the
 * exact time capacity returns); one ev_timer per waiter with a deadline.
 * Nothing polls: with 10,000 queued tasks the process sleeps until then.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "limiter.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define LIMITER_MT "weft.limiter"

static const char LIMITER_MARK = 'L';
struct llimiter {
    const char *mark;          /* &LIMITER_MARK (weft_check_marked) */
    struct weft_limiter *l;    /* owned */
    struct weft_loop *loop;
    ev_timer timer;            /* next pump */
};

struct lwaiter {
    struct weft_limiter_waiter w;
    struct weft_wait wait;
    struct weft_task *task;
    struct llimiter *ll;
    ev_timer deadline;         /* active when w.deadline > 0 */
    int admitted_now;          /* admitted inside acquire (no suspend) */
    int suspended;
    double since;              /* weft.now() time it was queued at */
};

static double loop_now(void *ud) {
    (void)ud;
    return weft_clock_now(NULL);
}

static const struct weft_clock host_clock = {loop_now, NULL};

static void schedule(struct llimiter *ll);

static void waiter_free(struct lwaiter *lw) {
    if (lw->w.deadline > 0) ev_timer_stop(lw->ll->loop->ev, &lw->deadline);
    free(lw);
}

/* Pump callbacks: run from the limiter timer (an ev callback) or from
 * acquire/cancel (C functions called by Lua); they only wake tasks. */
static void admit_cb(struct weft_limiter_waiter *w, void *ctx) {
    struct lwaiter *lw = (struct lwaiter *)w;
    if (!lw->suspended) {
        lw->admitted_now = 1; /* acquire returns true itself */
        return;
    }
    struct weft_task *t = lw->task;
    lua_pushnumber(t->co, weft_clock_now(NULL) - lw->since); /* waited */
    waiter_free(lw);
    weft_task_wake(t, 1);
}

/* nil, err (rate_limited) with err.waited: the seconds it queued */
static void push_refused(lua_State *L, double wait, const char *why, double waited) {
    lua_pushnil(L);
    if (isinf(wait)) {
        weft_push_error(L, "rate_limited", "rate limiter: %s: the cost exceeds a burst and can never be admitted", why);
    } else {
        weft_push_error(L, "rate_limited", "rate limiter: %s (expected wait %.3f s)", why, wait);
        lua_pushnumber(L, wait);
        lua_setfield(L, -2, "retry_after");
    }
    lua_pushnumber(L, waited);
    lua_setfield(L, -2, "waited");
}

static void expire_cb(struct weft_limiter_waiter *w, void *ctx) {
    struct lwaiter *lw = (struct lwaiter *)w;
    struct weft_task *t = lw->task;
    if (!lw->suspended) return; /* cannot happen: a fresh waiter has time left */
    push_refused(t->co, 0, "deadline passed while queued", weft_clock_now(NULL) - lw->since);
    waiter_free(lw);
    weft_task_wake(t, 2);
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    schedule((struct llimiter *)w->data);
}

/* Admit what can go now and re-arm the timer for the next admission.
 * With nobody queued there is nothing to admit and no timer to keep (the
 * case of every reconcile, refund and observe of an unqueued call). */
static void schedule(struct llimiter *ll) {
    if (ll->l->queued == 0) {
        if (ev_is_active(&ll->timer)) ev_timer_stop(ll->loop->ev, &ll->timer);
        return;
    }
    double at = weft_limiter_pump(ll->l, admit_cb, expire_cb, ll);
    ev_timer_stop(ll->loop->ev, &ll->timer);
    if (at >= 0) {
        double in = at - weft_clock_now(NULL);
        ev_now_update(ll->loop->ev);
        ev_timer_set(&ll->timer, in > 0 ? in : 0, 0.);
        ev_timer_start(ll->loop->ev, &ll->timer);
    }
}

static void deadline_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct lwaiter *lw = (struct lwaiter *)((char *)w - offsetof(struct lwaiter, deadline));
    struct llimiter *ll = lw->ll;
    struct weft_task *t = lw->task;
    weft_limiter_cancel(ll->l, &lw->w);
    push_refused(t->co, 0, "deadline passed while queued", weft_clock_now(NULL) - lw->since);
    waiter_free(lw);
    weft_task_wake(t, 2);
    schedule(ll); /* the head may have changed */
}

/* Cancelled while queued: the cancelled error (on top of the task's
 * stack) says how long it queued, as a refusal does. */
static void wait_cancel(struct weft_wait *w) {
    struct lwaiter *lw = (struct lwaiter *)((char *)w - offsetof(struct lwaiter, wait));
    struct llimiter *ll = lw->ll;
    lua_State *co = lw->task->co;
    if (lw->task->cancel_error_on_top && lua_istable(co, -1)) {
        lua_pushnumber(co, weft_clock_now(NULL) - lw->since);
        lua_setfield(co, -2, "waited");
    }
    weft_limiter_cancel(ll->l, &lw->w);
    waiter_free(lw);
    schedule(ll);
}

static struct llimiter *check(lua_State *L) {
    return weft_check_marked(L, 1, &LIMITER_MARK, sizeof(struct llimiter), LIMITER_MT);
}

static double field_num(lua_State *L, int idx, const char *k, double def) {
    lua_getfield(L, idx, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* _limiter.new(dims, nprio, aging) */
static int l_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int nprio = (int)luaL_optinteger(L, 2, 3);
    double aging = luaL_optnumber(L, 3, 0);
    if (nprio < 1 || nprio > 16) return luaL_error(L, "weft.limiter.new: priorities must be 1..16");
    struct llimiter *ll = lua_newuserdata(L, sizeof *ll);
    memset(ll, 0, sizeof *ll);
    ll->mark = &LIMITER_MARK;
    luaL_getmetatable(L, LIMITER_MT);
    lua_setmetatable(L, -2);
    ll->loop = weft_loop_get(L);
    ll->l = weft_limiter_new(nprio, aging, &host_clock);
    if (!ll->l) return luaL_error(L, "weft.limiter.new: out of memory");
    ev_timer_init(&ll->timer, timer_cb, 0., 0.);
    ll->timer.data = ll;
    int n = (int)lua_objlen(L, 1);
    if (n < 1) return luaL_error(L, "weft.limiter.new: no limit given");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        int d = lua_gettop(L);
        lua_getfield(L, d, "name");
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, d, "unit");
        const char *unit = luaL_optstring(L, -1, "requests");
        enum weft_limit_unit u = strcmp(unit, "tokens") == 0 ? WEFT_UNIT_TOKENS : WEFT_UNIT_REQUESTS;
        double limit = field_num(L, d, "limit", 0), period = field_num(L, d, "period", 0);
        double burst = field_num(L, d, "burst", 0);
        if (weft_limiter_add(ll->l, name, u, limit, period, burst) != 0)
            return luaL_error(L, "weft.limiter.new: invalid limit %s (limit and period must be positive, "
                              "at most %d limits)", name ? name : "?", WEFT_LIMITER_MAX_DIMS);
        lua_pop(L, 3);
    }
    return 1;
}

/* l:acquire(requests, tokens, prio, deadline) -> waited | nil, err: the
 * seconds it queued (0 when admitted at once: no clock read), or the
 * refusal with err.waited */
static int l_acquire(lua_State *L) {
    struct llimiter *ll = check(L);
    double requests = luaL_optnumber(L, 2, 1), tokens = luaL_optnumber(L, 3, 0);
    int prio = (int)luaL_optinteger(L, 4, 1);
    double deadline = luaL_optnumber(L, 5, 0); /* absolute, weft.now() clock */
    if (requests < 0 || tokens < 0 || isnan(requests) || isnan(tokens))
        return luaL_error(L, "limiter:acquire: cost must be >= 0");
    /* the common case: room now, nobody queued (no waiter to allocate) */
    if (weft_limiter_try(ll->l, requests, tokens)) {
        lua_pushnumber(L, 0);
        return 1;
    }
    struct lwaiter *lw = calloc(1, sizeof *lw);
    if (!lw) return luaL_error(L, "limiter:acquire: out of memory");
    lw->ll = ll;
    lw->w.requests = requests;
    lw->w.tokens = tokens;
    lw->w.prio = prio;
    lw->w.deadline = deadline;
    double wait;
    enum weft_limiter_result r = weft_limiter_acquire(ll->l, &lw->w, &wait);
    if (r == WEFT_LIMITER_ADMITTED) {
        free(lw);
        lua_pushnumber(L, 0);
        return 1;
    }
    if (r == WEFT_LIMITER_REFUSED) {
        free(lw);
        push_refused(L, wait, deadline > 0 ? "the deadline cannot be met" : "refused", 0);
        return 2;
    }
    lw->since = weft_clock_now(NULL);
    /* Queued: maybe admissible at once (queue was only waiting on time). */
    schedule(ll);
    if (lw->admitted_now) {
        free(lw);
        lua_pushnumber(L, 0);
        return 1;
    }
    struct weft_task *t = weft_task_current(L);
    if (!t) {
        weft_limiter_cancel(ll->l, &lw->w);
        free(lw);
        return luaL_error(L, "limiter:acquire: must wait, and can only wait inside a weft task");
    }
    lw->task = t;
    lw->suspended = 1;
    lw->wait.cancel = wait_cancel;
    lw->wait.what = "rate limiter";
    if (deadline > 0) {
        double in = deadline - weft_clock_now(NULL);
        ev_now_update(ll->loop->ev);
        ev_timer_init(&lw->deadline, deadline_cb, in > 0 ? in : 0, 0.);
        ev_timer_start(ll->loop->ev, &lw->deadline);
    }
    return weft_task_suspend(L, t, &lw->wait);
}

static int l_reconcile(lua_State *L) {
    struct llimiter *ll = check(L);
    weft_limiter_reconcile(ll->l, luaL_checknumber(L, 2), luaL_checknumber(L, 3));
    schedule(ll); /* a refund may admit waiters */
    return 0;
}

/* l:refund(requests, tokens): an admitted call gives its cost back. */
static int l_refund(lua_State *L) {
    struct llimiter *ll = check(L);
    double requests = luaL_optnumber(L, 2, 1), tokens = luaL_optnumber(L, 3, 0);
    if (!(requests >= 0) || !(tokens >= 0)) return luaL_error(L, "limiter:refund: cost must be >= 0");
    weft_limiter_refund(ll->l, requests, tokens);
    schedule(ll); /* the units go to the next waiter */
    return 0;
}

static int l_observe(lua_State *L) {
    struct llimiter *ll = check(L);
    const char *unit = luaL_checkstring(L, 2);
    weft_limiter_observe(ll->l, strcmp(unit, "tokens") == 0 ? WEFT_UNIT_TOKENS : WEFT_UNIT_REQUESTS,
                         luaL_checknumber(L, 3), luaL_optnumber(L, 4, 0));
    schedule(ll);
    return 0;
}

static int l_backoff(lua_State *L) {
    struct llimiter *ll = check(L);
    weft_limiter_backoff(ll->l, luaL_checknumber(L, 2));
    schedule(ll);
    return 0;
}

/* l:state() -> {limits = {name = {level=, limit=, period=, burst=, unit=}}, queue = {n1, n2, ...},
 *               queued=, next_admit=, admitted=, refused=, refunded=} */
static int l_state(lua_State *L) {
    struct llimiter *ll = check(L);
    struct weft_limiter *l = ll->l;
    weft_limiter_refresh(l);
    lua_createtable(L, 0, 7);
    lua_createtable(L, 0, l->ndims);
    for (int i = 0; i < l->ndims; i++) {
        struct weft_limit_dim *d = &l->dims[i];
        lua_createtable(L, 0, 6);
        lua_pushnumber(L, d->level);
        lua_setfield(L, -2, "level");
        lua_pushnumber(L, d->limit);
        lua_setfield(L, -2, "limit");
        lua_pushnumber(L, d->period);
        lua_setfield(L, -2, "period");
        lua_pushnumber(L, d->burst);
        lua_setfield(L, -2, "burst");
        lua_pushstring(L, d->unit == WEFT_UNIT_TOKENS ? "tokens" : "requests");
        lua_setfield(L, -2, "unit");
        double now = weft_clock_now(NULL);
        lua_pushnumber(L, d->blocked_until > now ? d->blocked_until - now : 0);
        lua_setfield(L, -2, "blocked_for");
        lua_setfield(L, -2, d->name);
    }
    lua_setfield(L, -2, "limits");
    lua_createtable(L, l->nprio, 0);
    for (int p = 0; p < l->nprio; p++) {
        lua_pushinteger(L, l->qlen[p]);
        lua_rawseti(L, -2, p + 1);
    }
    lua_setfield(L, -2, "queue");
    lua_pushinteger(L, l->queued);
    lua_setfield(L, -2, "queued");
    double next = ev_is_active(&ll->timer) ? ev_timer_remaining(ll->loop->ev, &ll->timer)
                                           : weft_limiter_wait_for(l, 1, 0);
    lua_pushnumber(L, next);
    lua_setfield(L, -2, "next_admit");
    lua_pushnumber(L, (lua_Number)l->admitted);
    lua_setfield(L, -2, "admitted");
    lua_pushnumber(L, (lua_Number)l->refused);
    lua_setfield(L, -2, "refused");
    lua_pushnumber(L, (lua_Number)l->refunded);
    lua_setfield(L, -2, "refunded");
    return 1;
}

static int l_gc(lua_State *L) {
    struct llimiter *ll = check(L);
    if (ll->l) {
        ev_timer_stop(ll->loop->ev, &ll->timer);
        /* Waiters keep the limiter reachable through their task, so none is
         * queued here unless the state is closing (their waits are
         * cancelled before that). */
        weft_limiter_free(ll->l);
        ll->l = NULL;
    }
    return 0;
}

int luaopen_weft_limiter(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"acquire", l_acquire}, {"reconcile", l_reconcile}, {"refund", l_refund},
        {"observe", l_observe}, {"backoff", l_backoff},     {"state", l_state},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    weft_register_class(L, LIMITER_MT, methods, meta);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 1;
}
