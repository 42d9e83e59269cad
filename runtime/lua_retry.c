/* lua_retry.c -- weft._retry: bindings of retry.c (decisions, hints, budget).
 * The retry loop itself is Lua (lua/weft/retry.lua): it sleeps with
 * weft.sleep and calls decide() here. */
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "luax.h"
#include "retry.h"

#define POLICY_MT "weft.retry.policy"
#define BUDGET_MT "weft.retry.budget"

struct lpolicy {
    struct weft_retry_policy p;
    struct weft_rng rng;
};

/* _retry.policy{base=, cap=, multiplier=, jitter=, max_attempts=, max_elapsed=, hint_cap=, seed=} */
static int l_policy(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    struct lpolicy *lp = lua_newuserdata(L, sizeof *lp);
    weft_retry_policy_default(&lp->p);
    const char *f = "weft.retry.policy";
    lp->p.base = weft_opt_number_field(L, 1, "base", lp->p.base, 0, 3600, f);
    lp->p.cap = weft_opt_number_field(L, 1, "cap", lp->p.cap, 0, 86400, f);
    lp->p.multiplier = weft_opt_number_field(L, 1, "multiplier", lp->p.multiplier, 1, 100, f);
    lp->p.max_attempts =
        (int)weft_opt_number_field(L, 1, "max_attempts", lp->p.max_attempts, 1, 1000, f);
    lp->p.max_elapsed = weft_opt_number_field(L, 1, "max_elapsed", lp->p.max_elapsed, 0, 1e9, f);
    lp->p.hint_cap = weft_opt_number_field(L, 1, "hint_cap", lp->p.hint_cap, 0, 1e9, f);
    double seed = weft_opt_number_field(L, 1, "seed", 0, 0, 9.0e15, f);
    weft_rng_seed(&lp->rng, seed > 0 ? (uint64_t)seed : (uint64_t)(weft_clock_now(NULL) * 1e9));
    lua_getfield(L, 1, "jitter");
    const char *j = luaL_optstring(L, -1, "full");
    if (strcmp(j, "full") == 0) lp->p.jitter = WEFT_JITTER_FULL;
    else if (strcmp(j, "equal") == 0) lp->p.jitter = WEFT_JITTER_EQUAL;
    else if (strcmp(j, "decorrelated") == 0) lp->p.jitter = WEFT_JITTER_DECORRELATED;
    else if (strcmp(j, "none") == 0) lp->p.jitter = WEFT_JITTER_NONE;
    else return luaL_error(L, "%s: jitter must be full, equal, decorrelated or none", f);
    lua_pop(L, 1);
    luaL_getmetatable(L, POLICY_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* policy:decide(kind, attempts, elapsed, hint, deadline_left, should_retry, prev)
 *   -> "retry"|"give_up"|"rate_limited", delay */
static int l_decide(lua_State *L) {
    struct lpolicy *lp = luaL_checkudata(L, 1, POLICY_MT);
    struct weft_retry_input in;
    in.kind = luaL_checkstring(L, 2);
    in.attempts = (int)luaL_checkinteger(L, 3);
    in.elapsed = luaL_optnumber(L, 4, 0);
    in.hint = lua_isnoneornil(L, 5) ? -1 : luaL_checknumber(L, 5);
    in.deadline_left = lua_isnoneornil(L, 6) ? -1 : luaL_checknumber(L, 6);
    if (in.deadline_left < 0 && !lua_isnoneornil(L, 6)) in.deadline_left = 0;
    in.should_retry = lua_isnoneornil(L, 7) ? -1 : lua_toboolean(L, 7);
    in.prev_delay = luaL_optnumber(L, 8, 0);
    double delay;
    enum weft_retry_action a = weft_retry_decide(&lp->p, &in, &lp->rng, &delay);
    lua_pushstring(L, a == WEFT_RETRY_AGAIN ? "retry" : a == WEFT_RETRY_RATE_LIMITED ? "rate_limited" : "give_up");
    lua_pushnumber(L, delay);
    return 2;
}

static int l_backoff(lua_State *L) {
    struct lpolicy *lp = luaL_checkudata(L, 1, POLICY_MT);
    lua_pushnumber(L, weft_retry_backoff(&lp->p, (int)luaL_checkinteger(L, 2), luaL_optnumber(L, 3, 0), &lp->rng));
    return 1;
}

static int l_policy_get(lua_State *L) {
    struct lpolicy *lp = luaL_checkudata(L, 1, POLICY_MT);
    lua_createtable(L, 0, 7);
    lua_pushnumber(L, lp->p.base); lua_setfield(L, -2, "base");
    lua_pushnumber(L, lp->p.cap); lua_setfield(L, -2, "cap");
    lua_pushnumber(L, lp->p.multiplier); lua_setfield(L, -2, "multiplier");
    lua_pushinteger(L, lp->p.max_attempts); lua_setfield(L, -2, "max_attempts");
    lua_pushnumber(L, lp->p.max_elapsed); lua_setfield(L, -2, "max_elapsed");
    lua_pushnumber(L, lp->p.hint_cap); lua_setfield(L, -2, "hint_cap");
    static const char *const jn[] = {"full", "equal", "decorrelated", "none"};
    lua_pushstring(L, jn[lp->p.jitter]); lua_setfield(L, -2, "jitter");
    return 1;
}

/* _retry.hint(name, value[, wall_now]) -> seconds | nil */
static int l_hint(lua_State *L) {
    double v = weft_retry_hint(luaL_checkstring(L, 1), luaL_checkstring(L, 2),
                               luaL_optnumber(L, 3, 0) > 0 ? luaL_optnumber(L, 3, 0) : (double)time(NULL));
    if (v < 0) return 0;
    lua_pushnumber(L, v);
    return 1;
}

/* ----------------------------------------------------------- budget */

static int l_budget(lua_State *L) {
    double ratio = luaL_optnumber(L, 1, 0.2);
    int min = (int)luaL_optinteger(L, 2, 3);
    if (!(ratio >= 0 && ratio <= 10) || min < 0) return luaL_error(L, "weft.retry.budget: bad ratio or minimum");
    struct weft_retry_budget *b = lua_newuserdata(L, sizeof *b);
    weft_retry_budget_init(b, ratio, min);
    luaL_getmetatable(L, BUDGET_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static struct weft_retry_budget *check_budget(lua_State *L) { return luaL_checkudata(L, 1, BUDGET_MT); }
static int l_b_begin(lua_State *L) { check_budget(L)->requests++; return 0; }
static int l_b_end(lua_State *L) {
    struct weft_retry_budget *b = check_budget(L);
    if (b->requests > 0) b->requests--;
    return 0;
}
static int l_b_take(lua_State *L) { lua_pushboolean(L, weft_retry_budget_take(check_budget(L))); return 1; }
static int l_b_release(lua_State *L) { weft_retry_budget_release(check_budget(L)); return 0; }
static int l_b_stats(lua_State *L) {
    struct weft_retry_budget *b = check_budget(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, b->requests); lua_setfield(L, -2, "requests");
    lua_pushinteger(L, b->retries); lua_setfield(L, -2, "retries");
    lua_pushnumber(L, (lua_Number)b->denied); lua_setfield(L, -2, "denied");
    lua_pushnumber(L, b->ratio); lua_setfield(L, -2, "ratio");
    lua_pushinteger(L, b->min_concurrent); lua_setfield(L, -2, "min_concurrent");
    return 1;
}

int luaopen_weft_retry(lua_State *L) {
    static const luaL_Reg pm[] = {{"decide", l_decide}, {"backoff", l_backoff}, {"get", l_policy_get}, {NULL, NULL}};
    static const luaL_Reg bm[] = {{"begin", l_b_begin}, {"finish", l_b_end}, {"take", l_b_take},
                                  {"release", l_b_release}, {"stats", l_b_stats}, {NULL, NULL}};
    weft_register_class(L, POLICY_MT, pm, NULL);
    weft_register_class(L, BUDGET_MT, bm, NULL);
    lua_newtable(L);
    lua_pushcfunction(L, l_policy);
    lua_setfield(L, -2, "policy");
    lua_pushcfunction(L, l_hint);
    lua_setfield(L, -2, "hint");
    lua_pushcfunction(L, l_budget);
    lua_setfield(L, -2, "budget");
    return 1;
}
