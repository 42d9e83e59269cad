/* luax.c -- counted registry refs, the protected-call helper, error values. */
#include "luax.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "secrets.h"

static const char ERROR_MT[] = "weft.error";

/* ------------------------------------------------------------------ refs */

int weft_ref(lua_State *L) {
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_REFNIL;
    }
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (ref != LUA_REFNIL && ref != LUA_NOREF) weft_loop_get(L)->nrefs++;
    return ref;
}

void weft_unref(lua_State *L, int ref) {
    if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    weft_loop_get(L)->nrefs--;
}

void weft_getref(lua_State *L, int ref) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

/* ---------------------------------------------------------- user's code */

int weft_is_own_source(lua_State *L, const char *source) {
    if (!source) return 1;
    if (strncmp(source, "=weft ", 6) == 0) return 1;
    if (source[0] != '@') return 0; /* "=(command line)", a string chunk */
    const char *home = weft_loop_get(L)->home;
    size_t hl = strlen(home);
    return strncmp(source + 1, home, hl) == 0 && strncmp(source + 1 + hl, "/lua/weft/", 10) == 0;
}

void weft_where(lua_State *L, int level, char *buf, size_t n) {
    lua_Debug ar;
    if (n) buf[0] = '\0';
    for (; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || strcmp(ar.what, "C") == 0 ||
            weft_is_own_source(L, ar.source))
            continue;
        snprintf(buf, n, "%s:%d", ar.short_src, ar.currentline);
        return;
    }
}

/* ----------------------------------------------------------------- pcall */

static int traceback_handler(lua_State *L) {
    /* [err] -> [err, text, traceback]: the error rendered as text (error
     * values through their __tostring), then the traceback string, which
     * is what lua_pcall leaves for weft_pcall to report. */
    const char *msg = weft_error_text(L, 1); /* [err, text] */
    luaL_traceback(L, L, msg, 1);           /* [err, text, tb] */
    return 1;
}

int weft_pcall(lua_State *L, int nargs, int nresults, const char *where) {
    int base = lua_gettop(L) - nargs; /* index of the function */
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    if (rc != 0) {
        size_t len;
        const char *tb = lua_tolstring(L, -1, &len);
        char head[256];
        snprintf(head, sizeof head, "error in %s", where ? where : "callback");
        if (tb) {
            weft_log(WEFT_LOG_ERROR, "%s: %s", head, tb);
        } else {
            weft_log(WEFT_LOG_ERROR, "%s (error object is not a string)", head);
        }
        lua_settop(L, base - 1);
        return rc;
    }
    lua_remove(L, base);
    return 0;
}

/* ---------------------------------------------------------------- errors */

/* Push `s` with every loaded secret value replaced (error messages and
 * their rendering pass through the same redaction as log lines). */
static void push_redacted(lua_State *L, const char *s, size_t len) {
    char *out;
    size_t olen;
    if (weft_secrets_redact(s, len, &out, &olen) == 0 && out) {
        lua_pushlstring(L, out, olen);
        explicit_bzero(out, olen);
        free(out);
    } else {
        lua_pushlstring(L, s, len);
    }
}

void weft_push_error(lua_State *L, const char *kind, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    push_redacted(L, buf, strlen(buf));
    lua_setfield(L, -2, "message");
    luaL_getmetatable(L, ERROR_MT);
    lua_setmetatable(L, -2);
}

int weft_raise_error(lua_State *L, const char *kind, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    weft_push_error(L, kind, "%s", buf);
    return lua_error(L);
}

int weft_is_error(lua_State *L, int idx) {
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, ERROR_MT);
    int eq = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return eq;
}

const char *weft_error_text(lua_State *L, int idx) {
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);
        break;
    case LUA_TNIL:
        lua_pushliteral(L, "nil");
        break;
    default:
        if (luaL_callmeta(L, idx, "__tostring")) {
            if (lua_isstring(L, -1)) break;
            lua_pop(L, 1);
        }
        lua_pushfstring(L, "(%s error object)", luaL_typename(L, idx));
    }
    return lua_tostring(L, -1);
}

lua_Number weft_opt_number_field(lua_State *L, int idx, const char *k, lua_Number def,
                                 lua_Number min, lua_Number max, const char *fname) {
    lua_getfield(L, idx, k);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "%s: %s must be a number", fname, k);
        v = lua_tonumber(L, -1);
        if (!(v >= min && v <= max))
            luaL_error(L, "%s: %s must be between %g and %g", fname, k, min, max);
    }
    lua_pop(L, 1);
    return v;
}

/* __tostring: "kind: message (status 429, provider x, model y, after 3 attempts)" */
static int error_tostring(lua_State *L) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_getfield(L, 1, "kind");
    const char *kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    luaL_addstring(&b, kind ? kind : "error");
    lua_getfield(L, 1, "message");
    const char *msg = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (msg) {
        luaL_addstring(&b, ": ");
        luaL_addstring(&b, msg);
    }
    static const char *const extra[] = {"status", "provider", "model", "attempts", "retry_after", NULL};
    int first = 1;
    for (int i = 0; extra[i]; i++) {
        lua_getfield(L, 1, extra[i]);
        if (!lua_isnil(L, -1) && lua_isstring(L, -1)) {
            lua_pushfstring(L, "%s%s %s", first ? " (" : ", ", extra[i], lua_tostring(L, -1));
            lua_remove(L, -2);
            luaL_addvalue(&b);
            first = 0;
        } else {
            lua_pop(L, 1);
        }
    }
    if (!first) luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    push_redacted(L, text, len);
    return 1;
}

/* weft._error.new(kind, message[, fields]) */
static int error_new(lua_State *L) {
    const char *kind = luaL_checkstring(L, 1);
    const char *msg = luaL_optstring(L, 2, kind);
    int hasfields = lua_istable(L, 3);
    lua_createtable(L, 0, 6);
    if (hasfields) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    luaL_getmetatable(L, ERROR_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int error_is(lua_State *L) {
    lua_pushboolean(L, weft_is_error(L, 1));
    return 1;
}

int luaopen_weft_error(lua_State *L) {
    /* protected like every class: plugins must not change how every error
     * prints */
    static const luaL_Reg meta[] = {{"__tostring", error_tostring}, {NULL, NULL}};
    weft_register_class(L, ERROR_MT, NULL, meta);
    static const luaL_Reg fns[] = {
        {"new", error_new},
        {"is", error_is},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "mt");
    return 1;
}

/* ------------------------------------------------------ HTTP helpers */

/* Whether a header name of `nlen` bytes at `name` is among the first `n`
 * of `seen` (names of the same head, kept as offsets and lengths). */
struct seen_name {
    const char *p;
    size_t len;
};
static int seen_before(const struct seen_name *seen, int n, const char *name, size_t nlen) {
    for (int i = 0; i < n; i++)
        if (seen[i].len == nlen && memcmp(seen[i].p, name, nlen) == 0) return 1;
    return 0;
}

void weft_push_headers(lua_State *L, const char *p, size_t len) {
    /* made at its size: one NUL ends a name, one a value */
    int fields = 0;
    for (const char *q = p, *e = p + len; (q = memchr(q, '\0', (size_t)(e - q))) != NULL; q++)
        fields++;
    lua_createtable(L, 0, fields / 2);
    /* The names met so far: a name not met is set without looking its
     * key up in the table first (past SEEN_MAX names, every one is). */
    enum { SEEN_MAX = 48 };
    struct seen_name seen[SEEN_MAX];
    int nseen = 0;
    size_t off = 0;
    while (off < len) {
        const char *name = p + off;
        size_t nlen = strlen(name);
        const char *val = name + nlen + 1;
        if (val >= p + len) break;
        size_t vlen = strlen(val);
        off += nlen + vlen + 2;
        while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t')) vlen--;
        lua_pushlstring(L, name, nlen);               /* [h, k] */
        if (nseen < SEEN_MAX && !seen_before(seen, nseen, name, nlen)) {
            seen[nseen].p = name, seen[nseen].len = nlen;
            nseen++;
            lua_pushlstring(L, val, vlen);
            lua_rawset(L, -3); /* [h] */
            continue;
        }
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);                            /* [h, k, old] */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);                            /* [h, k] */
            lua_pushlstring(L, val, vlen);
            lua_rawset(L, -3);                        /* [h] */
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            /* second occurrence: {old, new} */
            lua_createtable(L, 2, 0);                 /* [h, k, old, arr] */
            lua_insert(L, -2);                        /* [h, k, arr, old] */
            lua_rawseti(L, -2, 1);                    /* [h, k, arr] */
            lua_pushlstring(L, val, vlen);
            lua_rawseti(L, -2, 2);
            lua_rawset(L, -3);                        /* [h] */
        } else {                                      /* [h, k, arr] */
            int n = (int)lua_objlen(L, -1);
            lua_pushlstring(L, val, vlen);
            lua_rawseti(L, -2, n + 1);
            lua_pop(L, 2);                            /* [h] */
        }
    }
}

int weft_is_http_token(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
        if (!ok) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ classes */

void *weft_check_marked(lua_State *L, int idx, const char *mark, size_t size, const char *tname) {
    void *p = lua_touserdata(L, idx);
    /* (a light userdata has no size: lua_objlen gives 0) */
    if (p && lua_objlen(L, idx) == size && *(const char *const *)p == mark) return p;
    luaL_typerror(L, idx, tname);
    return NULL;
}

void weft_register_class(lua_State *L, const char *name, const luaL_Reg *methods,
                         const luaL_Reg *meta) {
    if (!luaL_newmetatable(L, name)) {                /* [mt] */
        lua_pop(L, 1);
        return;
    }
    if (methods) {
        lua_newtable(L);                              /* [mt, methods] */
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");               /* [mt] */
    }
    for (; meta && meta->name; meta++) {
        if (methods && strcmp(meta->name, "__index") == 0) {
            lua_getfield(L, -1, "__index");           /* [mt, methods] */
            lua_pushcclosure(L, meta->func, 1);       /* [mt, index] */
        } else {
            lua_pushcfunction(L, meta->func);         /* [mt, fn] */
        }
        lua_setfield(L, -2, meta->name);              /* [mt] */
    }
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);                                    /* [] */
}
