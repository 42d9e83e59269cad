/* lua_breaker.c -- weft._breaker: the Lua binding of breaker.c.
 *
 *   local br = _breaker.new{name=, window=, threshold=, min_calls=, cooldown=, probes=}
 *   br:allow()   -- true | false, retry_in (a call may go; in half-open it is a probe)
 *   br:peek()    -- the same without taking a probe (refuse before queueing)
 *   br:record(ok), br:release()  -- every allowed call ends in exactly one
 *   br:state()   -- {state=, calls=, failures=, transitions=, rejected=, retry_in=, name=}
 *   br:status()  -- state name, retry_in (no table: for callers asking per call)
 *
 * The breaker lives inside its userdata (no heap object, no refs): it is
 * freed with it and needs no __gc. State changes are logged by name.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "breaker.h"
#include "log.h"
#include "luax.h"

#define BREAKER_MT "weft.breaker"

static const char BREAKER_MARK = 'B';
struct lbreaker {
    const char *mark; /* &BREAKER_MARK (weft_check_marked) */
    struct weft_breaker br;
    char name[64];
};

static void breaker_changed(void *ud, enum weft_breaker_state from, enum weft_breaker_state to) {
    struct lbreaker *lb = ud;
    weft_log(to == WEFT_BREAKER_OPEN ? WEFT_LOG_WARN : WEFT_LOG_INFO, "circuit breaker %s: %s -> %s",
             lb->name, weft_breaker_state_name(from), weft_breaker_state_name(to));
}

/* _breaker.new{name=, window=, threshold=, min_calls=, cooldown=, probes=} */
static int l_breaker_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    struct lbreaker *lb = lua_newuserdata(L, sizeof *lb);
    memset(lb, 0, sizeof *lb);
    lb->mark = &BREAKER_MARK;
    weft_breaker_init(&lb->br, NULL);
    const char *f = "weft.breaker.new";
    lb->br.window = weft_opt_number_field(L, 1, "window", lb->br.window, 0.01, 86400, f);
    lb->br.threshold = weft_opt_number_field(L, 1, "threshold", lb->br.threshold, 0.0001, 1, f);
    lb->br.min_calls =
        (unsigned)weft_opt_number_field(L, 1, "min_calls", lb->br.min_calls, 1, 1e9, f);
    lb->br.cooldown = weft_opt_number_field(L, 1, "cooldown", lb->br.cooldown, 0, 86400, f);
    lb->br.probes = (unsigned)weft_opt_number_field(L, 1, "probes", lb->br.probes, 1, 1000, f);
    lua_getfield(L, 1, "name");
    snprintf(lb->name, sizeof lb->name, "%s", luaL_optstring(L, -1, "breaker"));
    lua_pop(L, 1);
    lb->br.on_change = breaker_changed;
    lb->br.ud = lb;
    luaL_getmetatable(L, BREAKER_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static struct lbreaker *check_breaker(lua_State *L) {
    return weft_check_marked(L, 1, &BREAKER_MARK, sizeof(struct lbreaker), BREAKER_MT);
}

/* br:allow() -> true | false, retry_in */
static int l_br_allow(lua_State *L) {
    double retry_in;
    int ok = weft_breaker_allow(&check_breaker(L)->br, &retry_in);
    lua_pushboolean(L, ok);
    if (ok) return 1;
    lua_pushnumber(L, retry_in);
    return 2;
}

static int l_br_peek(lua_State *L) {
    double retry_in;
    int ok = weft_breaker_peek(&check_breaker(L)->br, &retry_in);
    lua_pushboolean(L, ok);
    if (ok) return 1;
    lua_pushnumber(L, retry_in);
    return 2;
}

static int l_br_record(lua_State *L) {
    weft_breaker_record(&check_breaker(L)->br, lua_toboolean(L, 2));
    return 0;
}

/* br:release(): the allowed call ended without a verdict on health */
static int l_br_release(lua_State *L) {
    weft_breaker_release(&check_breaker(L)->br);
    return 0;
}

/* Seconds until an open breaker lets a probe through (0 when not open). */
static double retry_in(const struct lbreaker *lb) {
    if (lb->br.state != WEFT_BREAKER_OPEN) return 0;
    double left = lb->br.cooldown - (weft_clock_now(NULL) - lb->br.opened_at);
    return left < 0 ? 0 : left;
}

static int l_br_state(lua_State *L) {
    struct lbreaker *lb = check_breaker(L);
    unsigned calls, fails;
    weft_breaker_counts(&lb->br, &calls, &fails);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, weft_breaker_state_name(lb->br.state)); lua_setfield(L, -2, "state");
    lua_pushinteger(L, calls); lua_setfield(L, -2, "calls");
    lua_pushinteger(L, fails); lua_setfield(L, -2, "failures");
    lua_pushnumber(L, (lua_Number)lb->br.transitions); lua_setfield(L, -2, "transitions");
    lua_pushnumber(L, (lua_Number)lb->br.rejected); lua_setfield(L, -2, "rejected");
    lua_pushnumber(L, retry_in(lb)); lua_setfield(L, -2, "retry_in");
    lua_pushstring(L, lb->name); lua_setfield(L, -2, "name");
    return 1;
}

/* br:status() -> state name, seconds until an open breaker probes (0
 * otherwise): the state without a table, for callers asking per call. */
static int l_br_status(lua_State *L) {
    struct lbreaker *lb = check_breaker(L);
    lua_pushstring(L, weft_breaker_state_name(lb->br.state));
    lua_pushnumber(L, retry_in(lb));
    return 2;
}

int luaopen_weft_breaker(lua_State *L) {
    static const luaL_Reg m[] = {{"allow", l_br_allow}, {"peek", l_br_peek}, {"record", l_br_record},
                                 {"release", l_br_release}, {"state", l_br_state}, {"status", l_br_status},
                                 {NULL, NULL}};
    weft_register_class(L, BREAKER_MT, m, NULL);
    lua_newtable(L);
    lua_pushcfunction(L, l_breaker_new);
    lua_setfield(L, -2, "new");
    return 1;
}
