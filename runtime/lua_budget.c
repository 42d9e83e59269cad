/* lua_budget.c -- weft._budget: calls into untrusted Lua under the budget
 * of budget.h.
 *
 *   ok, ... = _budget.call(fn, ...)
 *       like pcall(fn, ...) under the current limits; on failure
 *       false, err, trip, limit -- trip is "instructions" or "memory" when
 *       the budget ended the call ("time": limit in seconds; err is then the
 *       error the plugin saw),
 *       nil when fn failed on its own.
 *   opened = _budget.enter([instructions, seconds, bytes]); ...;
 *   trip, limit, left_i, left_t, left_m = _budget.leave(opened)
 *       the budget over a span of code between two host calls (false and
 *       nothing when a span or call is open already); leave says what ran
 *       out (nil, nil when nothing did) and what is left, which the next
 *       enter() may take as its limits: one budget over several spans.
 *       The span must not yield. _budget.span_host() names the chunk that
 *       opens spans (the caller's): a tripped budget does not interrupt it.
 *   _budget.limits([{instructions = N, memory = BYTES, time = SECONDS}])
 *       -> the limits
 *       (sets the defaults for later calls when given).
 *   _budget.tripped() -> true when the running budgeted call is over its
 *       budget (the sandbox's pcall re-raises then). Allocates nothing.
 *   _budget.stats() -> {calls=, trips_instructions=, trips_memory=}
 *   _budget.copier(allowed_metatables, null) -> plain(v[, functions])
 *       a copy of v as plain data, or nil, why (see "plain copies")
 *   _budget.blocks() -> blocks the state allocated so far (a count)
 *
 * A call made while another budgeted call runs (a plugin calling a host
 * function that calls plugin code) runs inside the outer budget.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "budget.h"

/* The first hook period, in instructions: short enough that a loop around
 * slow C calls (each a handful of instructions) is looked at within a few
 * hundred of them, long enough that a codec call (a few thousand
 * instructions) sees only a few hooks. */
#define FIRST_STEP 200

/* The hook reads the coarse monotonic clock (vDSO, a few ns; its ~4 ms
 * resolution is plenty for limits of tenths of seconds). */
static double coarse_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct weft_budget *get(lua_State *L) {
    struct weft_budget *b = weft_budget_of(L);
    if (!b) luaL_error(L, "weft._budget: this Lua state has no budget allocator");
    return b;
}

/* The count hook: every `step` instructions of interpreted code. Raising
 * here ends the call (the message is the plugin's to see; the host reads
 * b->tripped). Once tripped, every later period raises again -- except in
 * the host code that opened a span (enter()): between the end of the
 * plugin's code and its leave() it must run on to close the span. */
static void count_hook(lua_State *L, lua_Debug *ar) {
    struct weft_budget *b = weft_budget_of(L);
    if (!b || !b->active) return;
    if (b->tripped && b->host_source && lua_getinfo(L, "S", ar) && ar->source == b->host_source) return;
    b->used += b->step;
    double now = coarse_now();
    if (!b->tripped) {
        if (b->used >= b->instructions) b->tripped = WEFT_BUDGET_INSTRUCTIONS;
        else if (now >= b->deadline) b->tripped = WEFT_BUDGET_TIME;
    }
    if (b->tripped) luaL_error(L, "plugin budget exceeded");
    if (now - b->last > 0.001 && b->step > 10) {
        /* a period took long: C calls between instructions; look sooner */
        b->step /= 10;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, b->step);
    }
    b->last = now;
}

/* Start counting: fresh limits from the defaults, the count hook set (the
 * hook that was there is saved in b->saved_*). */
static void arm(lua_State *L, struct weft_budget *b) {
    b->active = 1;
    b->tripped = WEFT_BUDGET_OK;
    b->used = 0;
    b->allocated = 0;
    b->instructions = b->default_instructions;
    b->memory = b->default_memory;
    b->last = coarse_now();
    b->deadline = b->last + b->default_time;
    b->step = b->instructions < FIRST_STEP ? (int)b->instructions : FIRST_STEP;
    if (b->step < 1) b->step = 1;
    b->saved_hook = lua_gethook(L);
    b->saved_mask = lua_gethookmask(L);
    b->saved_count = lua_gethookcount(L);
    lua_sethook(L, count_hook, LUA_MASKCOUNT, b->step);
}

/* Stop counting and restore the saved hook; pushes what tripped, if
 * anything: trip name and limit (2 values), or nothing (0). */
static int disarm(lua_State *L, struct weft_budget *b) {
    lua_sethook(L, b->saved_hook, b->saved_mask, b->saved_count);
    b->active = 0;
    b->calls++;
    switch (b->tripped) {
    case WEFT_BUDGET_INSTRUCTIONS:
        b->trips_instructions++;
        lua_pushliteral(L, "instructions");
        lua_pushnumber(L, b->instructions);
        return 2;
    case WEFT_BUDGET_MEMORY:
        b->trips_memory++;
        lua_pushliteral(L, "memory");
        lua_pushnumber(L, (lua_Number)b->memory);
        return 2;
    case WEFT_BUDGET_TIME:
        b->trips_time++;
        lua_pushliteral(L, "time");
        lua_pushnumber(L, b->default_time);
        return 2;
    default:
        return 0;
    }
}

static int l_call(lua_State *L) {
    struct weft_budget *b = get(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    if (b->active) {                       /* nested: the outer budget */
        int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
        lua_pushboolean(L, rc == 0);
        lua_insert(L, 1);
        return lua_gettop(L);
    }
    arm(L, b);
    b->host_source = NULL;                 /* C code closes this one */
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    if (rc == 0) {
        int n = lua_gettop(L);
        disarm(L, b);
        lua_settop(L, n);                  /* a call that returned did not fail */
        lua_pushboolean(L, 1);
        lua_insert(L, 1);
        return lua_gettop(L);
    }
    /* [err] */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);                     /* [false, err] */
    return 2 + disarm(L, b);
}

/* _budget.enter([instructions, seconds, bytes]) -> true when it opened a
 * span (false: one is open already, and it counts). The limits of the span
 * are the defaults, or what is left of a budget spread over several spans
 * (leave() says what is left). For callers that must wait between spans:
 * the code in a span may not yield (nothing else would run inside it), but
 * the code around it may, unlike inside call(). */
static int l_enter(lua_State *L) {
    struct weft_budget *b = get(L);
    if (b->active) {
        lua_pushboolean(L, 0);
        return 1;
    }
    arm(L, b);
    if (lua_isnumber(L, 1) && lua_tonumber(L, 1) < b->instructions) {
        b->instructions = lua_tonumber(L, 1);
        if (b->instructions < 1) b->instructions = 1;
        if (b->step > b->instructions) b->step = (int)b->instructions;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, b->step);
    }
    if (lua_isnumber(L, 2) && lua_tonumber(L, 2) < b->default_time) b->deadline = b->last + lua_tonumber(L, 2);
    if (lua_isnumber(L, 3) && lua_tonumber(L, 3) < (lua_Number)b->memory)
        b->memory = lua_tonumber(L, 3) > 0 ? (size_t)lua_tonumber(L, 3) : 0;
    /* the chunk that opens spans (span_host()) is never interrupted by a
     * tripped budget: it must run on to close the span */
    b->host_source = b->span_host;
    lua_pushboolean(L, 1);
    return 1;
}

/* _budget.span_host(): the chunk of the function calling this is the one
 * that opens and closes spans (weft.policy, once when it loads): the count
 * hook lets its code run on when a budget has tripped. */
static int l_span_host(lua_State *L) {
    struct weft_budget *b = get(L);
    lua_Debug ar;
    b->span_host = lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) ? ar.source : NULL;
    return 0;
}

/* _budget.leave(opened) closes the span enter() opened (nothing when
 * `opened` is false) -> trip, limit (nil, nil when the budget held), then
 * what is left of the span's limits: instructions, seconds, bytes. */
static int l_leave(lua_State *L) {
    struct weft_budget *b = get(L);
    if (!lua_toboolean(L, 1) || !b->active) return 0;
    double left_i = b->instructions - b->used;
    double left_t = b->deadline - coarse_now();
    double left_m = (double)b->memory - (double)b->allocated;
    int n = disarm(L, b);
    if (n == 0) {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    lua_pushnumber(L, left_i);
    lua_pushnumber(L, left_t);
    lua_pushnumber(L, left_m);
    return 5;
}

static int l_tripped(lua_State *L) {
    struct weft_budget *b = weft_budget_of(L);
    lua_pushboolean(L, b && b->active && b->tripped != WEFT_BUDGET_OK);
    return 1;
}

/* _budget.need(bytes): in a budgeted call, trip its memory budget now
 * unless `bytes` are still left to allocate, before C code that cannot be
 * interrupted cleanly (lua-cjson's decode: an error inside it leaks its
 * buffer) runs with too little. Nothing is taken: the allocations that
 * follow are counted as they happen. Outside a call it does nothing. */
static int l_need(lua_State *L) {
    struct weft_budget *b = weft_budget_of(L);
    lua_Number n = luaL_checknumber(L, 1);
    if (!b || !b->active || !(n > 0)) return 0;
    size_t want = n >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)n;
    if (b->tripped || want > b->memory - b->allocated) {
        if (!b->tripped) b->tripped = WEFT_BUDGET_MEMORY;
        return luaL_error(L, "not enough memory");
    }
    return 0;
}

static int l_limits(lua_State *L) {
    struct weft_budget *b = get(L);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "instructions");
        if (!lua_isnil(L, -1)) {
            lua_Number n = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 1000) || !isfinite(n))
                return luaL_error(L, "plugin budget: instructions must be a number >= 1000");
            b->default_instructions = floor(n);
        }
        lua_pop(L, 1);
        lua_getfield(L, 1, "time");
        if (!lua_isnil(L, -1)) {
            lua_Number n = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 0.001) || !(n <= 3600))
                return luaL_error(L, "plugin budget: time must be a number of seconds from 0.001 to 3600");
            b->default_time = n;
        }
        lua_pop(L, 1);
        lua_getfield(L, 1, "memory");
        if (!lua_isnil(L, -1)) {
            lua_Number n = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 65536) || !(n <= 1e15))
                return luaL_error(L, "plugin budget: memory must be a number of bytes >= 65536");
            b->default_memory = (size_t)n;
        }
        lua_pop(L, 1);
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, b->default_instructions);
    lua_setfield(L, -2, "instructions");
    lua_pushnumber(L, b->default_time);
    lua_setfield(L, -2, "time");
    lua_pushnumber(L, (lua_Number)b->default_memory);
    lua_setfield(L, -2, "memory");
    return 1;
}

static int l_stats(lua_State *L) {
    struct weft_budget *b = get(L);
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (lua_Number)b->calls);
    lua_setfield(L, -2, "calls");
    lua_pushnumber(L, (lua_Number)b->trips_instructions);
    lua_setfield(L, -2, "trips_instructions");
    lua_pushnumber(L, (lua_Number)b->trips_memory);
    lua_setfield(L, -2, "trips_memory");
    lua_pushnumber(L, (lua_Number)b->trips_time);
    lua_setfield(L, -2, "trips_time");
    return 1;
}

/* blocks() -> how many blocks the state allocated so far (objects and
 * their parts, e.g. a table and its hash part): differences of it are a
 * count of allocations (bench/pipeline/garbage.lua). */
static int l_blocks(lua_State *L) {
    lua_pushnumber(L, get(L)->blocks);
    return 1;
}

/* ------------------------------------------------------ plain copies */

/* What crosses the plugin boundary is plain data: the host copies what a
 * plugin returns (and what it hands to a plugin) with raw access only, so
 * no metamethod of the other side runs, and the copy is the receiver's
 * own. Tables are copied (at most PLAIN_TABLES, nested at most
 * PLAIN_DEPTH), metatables dropped but for the JSON
 * marks (upvalue 1: a set of allowed metatables); strings, numbers,
 * booleans and json.null (upvalue 2) are kept; functions only when asked
 * (a plugin's own table, which keeps its shape: a table met twice is one
 * copy). Elsewhere a table met twice becomes two copies (bounded by
 * PLAIN_TABLES) and a cycle ends at PLAIN_DEPTH. */
#define PLAIN_DEPTH 64
#define PLAIN_TABLES 100000

struct copier {
    int functions;             /* functions are allowed */
    int seen;                  /* stack index of {source = copy}, or 0 */
    int tables;                /* tables copied so far */
    char err[96];
};

static int copy_value(lua_State *L, int idx, struct copier *c, int depth);

/* Push a copy of the table at src. */
static int copy_table(lua_State *L, int src, struct copier *c, int depth) {
    if (depth > PLAIN_DEPTH) {
        snprintf(c->err, sizeof c->err, "nested deeper than %d (a cycle?)", PLAIN_DEPTH);
        return -1;
    }
    if (++c->tables > PLAIN_TABLES) {
        snprintf(c->err, sizeof c->err, "more than %d tables", PLAIN_TABLES);
        return -1;
    }
    if (!lua_checkstack(L, 8)) {
        snprintf(c->err, sizeof c->err, "nested too deep");
        return -1;
    }
    if (c->seen) {
        lua_pushvalue(L, src);
        lua_rawget(L, c->seen);                        /* [copy or nil] */
        if (!lua_isnil(L, -1)) return 0;               /* the same copy again */
        lua_pop(L, 1);
    }
    /* Size the copy at once (a rehash per few keys costs more than a
     * counting pass). */
    int narr = (int)lua_objlen(L, src), n = 0;
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pop(L, 1);
        n++;
    }
    lua_createtable(L, narr, n > narr ? n - narr : 0); /* [dst] */
    int dst = lua_gettop(L);
    if (c->seen) {
        lua_pushvalue(L, src);
        lua_pushvalue(L, dst);
        lua_rawset(L, c->seen);
    }
    lua_pushnil(L);
    while (lua_next(L, src)) {                         /* [dst, k, v] */
        if (copy_value(L, dst + 1, c, depth) != 0) return -1;   /* [dst, k, v, k'] */
        if (copy_value(L, dst + 2, c, depth) != 0) return -1;   /* [dst, k, v, k', v'] */
        lua_rawset(L, dst);                            /* [dst, k, v] */
        lua_pop(L, 1);                                 /* [dst, k] */
    }
    if (lua_getmetatable(L, src)) {                    /* raw: [dst, mt] */
        lua_pushvalue(L, -1);
        lua_rawget(L, lua_upvalueindex(1));            /* [dst, mt, allowed] */
        int keep = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (keep) lua_setmetatable(L, dst);
        else lua_pop(L, 1);
    }
    return 0;
}

static int copy_value(lua_State *L, int idx, struct copier *c, int depth) {
    switch (lua_type(L, idx)) {
    case LUA_TTABLE:
        return copy_table(L, idx, c, depth + 1);
    case LUA_TSTRING:
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
        lua_pushvalue(L, idx);
        return 0;
    case LUA_TLIGHTUSERDATA:
        if (lua_rawequal(L, idx, lua_upvalueindex(2))) {
            lua_pushvalue(L, idx);
            return 0;
        }
        break;
    case LUA_TFUNCTION:
        if (c->functions) {
            lua_pushvalue(L, idx);
            return 0;
        }
        break;
    default:
        break;
    }
    snprintf(c->err, sizeof c->err, "a %s is not plain data", luaL_typename(L, idx));
    return -1;
}

/* plain(v[, functions]) -> copy | nil, why */
static int l_plain(lua_State *L) {
    struct copier c = {lua_toboolean(L, 2), 0, 0, ""};
    lua_settop(L, 1);
    if (c.functions) {              /* a plugin's table: keep its shape */
        lua_newtable(L);                               /* [v, seen] */
        c.seen = 2;
    }
    if (copy_value(L, 1, &c, 0) == 0) return 1;
    lua_settop(L, 1);
    lua_pushnil(L);
    lua_pushstring(L, c.err);
    return 2;
}

/* _budget.copier(allowed_metatables, null) -> plain */
static int l_copier(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_pushcclosure(L, l_plain, 2);
    return 1;
}

int luaopen_weft_budget(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"call", l_call}, {"enter", l_enter}, {"leave", l_leave}, {"span_host", l_span_host}, {"tripped", l_tripped}, {"limits", l_limits}, {"stats", l_stats},
        {"copier", l_copier}, {"need", l_need}, {"blocks", l_blocks},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
