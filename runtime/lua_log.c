/* lua_log.c -- binding of log.c as weft._log (wrapped by lua/weft/log.lua). */
#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "log.h"

/* _log.write(level, msg[, fields_json]) */
static int l_write(lua_State *L) {
    int level = weft_log_parse_level(luaL_checkstring(L, 1));
    if (level < 0 || level == WEFT_LOG_OFF)
        return luaL_argerror(L, 1, "level must be debug, info, warn or error");
    size_t mlen, flen = 0;
    const char *msg = luaL_checklstring(L, 2, &mlen);
    const char *fields = luaL_optlstring(L, 3, NULL, &flen);
    weft_log_write(level, msg, mlen, fields, flen);
    return 0;
}

/* _log.enabled(level) -> boolean */
static int l_enabled(lua_State *L) {
    int level = weft_log_parse_level(luaL_checkstring(L, 1));
    if (level < 0) return luaL_argerror(L, 1, "unknown level");
    lua_pushboolean(L, level >= weft_log_level() && level < WEFT_LOG_OFF);
    return 1;
}

/* _log.level([name]) -> current level name; sets it when name is given */
static int l_level(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) {
        int level = weft_log_parse_level(luaL_checkstring(L, 1));
        if (level < 0) return luaL_argerror(L, 1, "level must be debug, info, warn, error or off");
        weft_log_set_level(level);
    }
    lua_pushstring(L, weft_log_level_name(weft_log_level()));
    return 1;
}

/* _log.format([name]) -> "json" | "logfmt"; sets it when name is given
 * ("json", "logfmt" or "auto"). */
static int l_format(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) {
        int f = weft_log_parse_format(luaL_checkstring(L, 1));
        if (f < 0) return luaL_argerror(L, 1, "format must be json, logfmt or auto");
        weft_log_set_format(f);
    }
    lua_pushstring(L, weft_log_format() == WEFT_LOG_LOGFMT ? "logfmt" : "json");
    return 1;
}

int luaopen_weft_log(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"write", l_write}, {"enabled", l_enabled}, {"level", l_level},
        {"format", l_format}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
