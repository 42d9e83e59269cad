/* luax.h -- helpers every Lua binding uses: counted registry refs, the one
 * protected-call helper, error values of the weft taxonomy.
 */
#ifndef WEFT_LUAX_H
#define WEFT_LUAX_H

#include <lua.h>
#include <lauxlib.h>

/* Pop the top value and return a registry ref to it (LUA_REFNIL for nil).
 * Counted in loop->nrefs; every weft_ref has exactly one weft_unref. */
int weft_ref(lua_State *L);

/* Release a ref from weft_ref. LUA_NOREF and LUA_REFNIL are ignored. */
void weft_unref(lua_State *L, int ref);

/* Push the value behind a ref. */
void weft_getref(lua_State *L, int ref);

/* Call the function below `nargs` arguments in protected mode with a
 * traceback handler: the one way host code calls Lua outside a coroutine
 * (STYLE.md). On error, logs "error in <where>: <msg>\n<traceback>" at
 * error level and returns non-zero with the stack restored to its level
 * before the function was pushed. On success leaves `nresults`. */
int weft_pcall(lua_State *L, int nargs, int nresults, const char *where);

/* Push a new error value {kind=, message=} with the weft error metatable.
 * `kind` is one of the DESIGN.md taxonomy names. Further fields may be set
 * by the caller on the pushed table. */
void weft_push_error(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raise a weft error value (never returns). */
int weft_raise_error(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when the value at idx is a weft error value. */
int weft_is_error(lua_State *L, int idx);

/* Render any error object as text: weft errors through __tostring, strings
 * as themselves, nil as "nil", others through tostring. Pushes the string. */
const char *weft_error_text(lua_State *L, int idx);

/* Optional number field `k` of the table at `idx`, or `def` when nil;
 * raises "<fname>: <k> must be a number" when it is not a number and
 * "<fname>: <k> must be between <min> and <max>" when out of range (NaN
 * included). */
lua_Number weft_opt_number_field(lua_State *L, int idx, const char *k, lua_Number def,
                                 lua_Number min, lua_Number max, const char *fname);

/* Push a headers table built from "name\0value\0" pairs (len bytes):
 * names as given (the HTTP layers lower-case them), trailing blanks of
 * values trimmed, a repeated name becomes an array of its values in order. */
void weft_push_headers(lua_State *L, const char *pairs, size_t len);

/* 1 when s[0..n) is a non-empty HTTP token (RFC 9110: header names,
 * methods). */
int weft_is_http_token(const char *s, size_t n);

/* 1 when a chunk name (lua_Debug.source) is weft's own code: one of its Lua
 * files (<home>/lua/weft/...) or a chunk the host made ("=weft mock");
 * messages that point at the user's code skip such frames. */
int weft_is_own_source(lua_State *L, const char *source);

/* Where the user's code called into weft, for messages: "FILE:LINE" of the
 * first frame of L from `level` outwards (0: the running function) that is
 * Lua code and not weft's own, into buf (n bytes, truncated); "" when there
 * is none. Walks the stack: for rare events (a server made), not hot paths. */
void weft_where(lua_State *L, int level, char *buf, size_t n);

/* Register the metatable `name` of a class, once (a second call for the
 * same name does nothing): __index = a new table of `methods` (NULL: no
 * method table), then each function of `meta` under its name (__gc,
 * __tostring, __eq, ...; NULL: none), __name = name, and __metatable = name,
 * so getmetatable gives the name and setmetatable refuses (plugins must not
 * change how a host object behaves). An __index in `meta` replaces the
 * method table; when both are given, the function gets the method table as
 * its upvalue 1 (a class with computed fields and methods). Leaves the
 * stack as it was. */
void weft_register_class(lua_State *L, const char *name, const luaL_Reg *methods,
                         const luaL_Reg *meta);

/* The userdata at idx when it is `size` bytes whose first field is `mark`
 * (the address of a class's own static byte, which Lua code cannot
 * forge), else raises as luaL_checkudata does, naming `tname`. For the
 * self of a method called on every request: luaL_checkudata looks the
 * metatable up in the registry by name, which costs more than most of
 * those methods. */
void *weft_check_marked(lua_State *L, int idx, const char *mark, size_t size, const char *tname);

/* Register the error metatable and module weft._error. */
int luaopen_weft_error(lua_State *L);

#endif
