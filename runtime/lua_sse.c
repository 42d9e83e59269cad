/* lua_sse.c -- weft._sse: the event-stream parser (sse.c) for Lua.
 *
 *   local p = _sse.new(max_event)        -- bytes; nil: 16 MiB
 *   local events = p:feed(chunk)         -- {{event=, data=, id=, retry=}, ...} (possibly empty)
 *   p:pending()                          -- true when a partial event or line is left
 * feed raises an error value of kind `integration` when a line or an
 * event is over max_event (the parser is then spent).
 */
#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "luax.h"
#include "sse.h"

#define SSE_MT "weft.sse.parser"

struct collect {
    lua_State *L;
    int n;
};

static int on_event(void *ud, const struct weft_sse_event *ev) {
    struct collect *c = ud;
    lua_State *L = c->L;
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, ev->type, ev->type_len);
    lua_setfield(L, -2, "event");
    lua_pushlstring(L, ev->data, ev->data_len);
    lua_setfield(L, -2, "data");
    if (ev->id_len) {
        lua_pushlstring(L, ev->id, ev->id_len);
        lua_setfield(L, -2, "id");
    }
    if (ev->retry_ms >= 0) {
        lua_pushnumber(L, (lua_Number)ev->retry_ms / 1000.0);
        lua_setfield(L, -2, "retry");
    }
    lua_rawseti(L, -2, ++c->n);
    return 0;
}

static struct weft_sse *check(lua_State *L) {
    return luaL_checkudata(L, 1, SSE_MT);
}

static int l_new(lua_State *L) {
    lua_Number max = luaL_optnumber(L, 1, 0);
    if (max < 0 || max > 1e9) return luaL_argerror(L, 1, "max_event must be between 0 and 1e9 bytes");
    struct weft_sse *p = lua_newuserdata(L, sizeof *p);
    weft_sse_init(p, (size_t)max);
    luaL_getmetatable(L, SSE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int l_feed(lua_State *L) {
    struct weft_sse *p = check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_newtable(L);
    struct collect c = {L, 0};
    int r = weft_sse_feed(p, s, n, on_event, &c);
    if (r == WEFT_SSE_TOO_LARGE)
        return weft_raise_error(L, "integration", "event stream: a line or event is over %zu bytes",
                                p->max_event);
    if (r == WEFT_SSE_NOMEM) return luaL_error(L, "event stream: out of memory");
    return 1;
}

static int l_pending(lua_State *L) {
    lua_pushboolean(L, weft_sse_pending(check(L)));
    return 1;
}

static int l_gc(lua_State *L) {
    weft_sse_free(check(L));
    return 0;
}

int luaopen_weft_sse(lua_State *L) {
    static const luaL_Reg methods[] = {{"feed", l_feed}, {"pending", l_pending}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    weft_register_class(L, SSE_MT, methods, meta);
    static const luaL_Reg fns[] = {{"new", l_new}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
