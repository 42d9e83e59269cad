/* lua_json.c -- weft._json: the C helpers of weft.json.
 *
 *   _json.has_empty(s)   -- true when s holds `[]` or `{}` (whitespace
 *                           allowed inside), strings included: the cheap test
 *                           that decides whether decode must protect and mark
 *                           empty containers (a Lua pattern did it at ~8 ns a
 *                           byte).
 *   _json.encoder(array_mt, object_mt, empty_mt, null)
 *                        -- returns encode(v): the compact encoding with
 *                           exactly the rules of lua/weft/json.lua (marked
 *                           arrays/objects, 1..n tables are arrays, integers
 *                           below 2^53 in full, other numbers in the shortest
 *                           of %.14g..%.17g that reads back, `/` not escaped),
 *                           or nil for anything it refuses (holes, mixed keys,
 *                           NaN, cycles, functions, ...): weft.json then runs
 *                           its Lua encoder, which raises the error naming the
 *                           path. Errors are rare; messages stay in one place.
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "buf.h"

#define MAX_DEPTH 1000

static int l_has_empty(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *end = s + n;
    for (const char *p = s; p < end; p++) {
        char c = *p;
        if (c != '[' && c != '{') continue;
        const char *q = p + 1;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
        if (q < end && ((c == '[' && *q == ']') || (c == '{' && *q == '}'))) {
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* ------------------------------------------------------------- encoder */

/* The output is a weft_buf growing through the Lua state's allocator, so
 * that encoding inside a plugin's budgeted call (budget.h) is bounded by
 * its allocation limit like everything else it does. Not secret: it holds
 * a copy of Lua values, which are not zeroed either. */
static int put(struct weft_buf *b, const char *s, size_t n) { return weft_buf_append(b, s, n); }

static int putc1(struct weft_buf *b, char c) { return weft_buf_append_char(b, c); }

static int put_string(struct weft_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (weft_buf_reserve(b, n + 2) != 0) return -1;
    putc1(b, '"');
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            run++;
            continue;
        }
        if (put(b, s + i - run, run) != 0) return -1;
        run = 0;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        if (put(b, esc, el) != 0) return -1;
    }
    if (put(b, s + n - run, run) != 0) return -1;
    return putc1(b, '"');
}

static int put_number(struct weft_buf *b, lua_Number v) {
    char tmp[40];
    int n;
    if (isnan(v) || isinf(v)) return -1;
    if (v == floor(v) && v > -9007199254740992.0 && v < 9007199254740992.0) {
        /* an integer (max_tokens, counts, ids): its digits written here,
         * right to left, without snprintf's format parsing; 0 and -0 are
         * "0" */
        long long i = (long long)v;
        unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
        char *e = tmp + sizeof tmp, *p = e;
        do {
            *--p = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (i < 0) *--p = '-';
        return put(b, p, (size_t)(e - p));
    } else {
        n = 0;
        for (int digits = 14; digits <= 16; digits++) {
            n = snprintf(tmp, sizeof tmp, "%.*g", digits, v);
            if (strtod(tmp, NULL) == v) break;
            n = 0;
        }
        if (n == 0) n = snprintf(tmp, sizeof tmp, "%.17g", v);
    }
    return put(b, tmp, (size_t)n);
}

/* upvalues: 1 array_mt, 2 object_mt, 3 empty_mt, 4 null */
static int encode_value(lua_State *L, struct weft_buf *b, int idx, int depth);

static int encode_table(lua_State *L, struct weft_buf *b, int idx, int depth) {
    if (depth >= MAX_DEPTH) return -1; /* also how a cycle ends up here */
    if (!lua_checkstack(L, 4)) return -1;
    int is_array;
    size_t n = lua_objlen(L, idx);
    if (lua_getmetatable(L, idx)) {
        if (lua_rawequal(L, -1, lua_upvalueindex(1)) || lua_rawequal(L, -1, lua_upvalueindex(3))) is_array = 1;
        else if (lua_rawequal(L, -1, lua_upvalueindex(2))) is_array = 0;
        else is_array = n > 0;
        lua_pop(L, 1);
    } else {
        is_array = n > 0;
    }
    if (is_array) {
        /* every key must be 1..n: count them */
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TNUMBER) {
                lua_pop(L, 1);
                return -1;
            }
            lua_Number k = lua_tonumber(L, -1);
            if (k < 1 || k != floor(k) || k > (lua_Number)n) {
                lua_pop(L, 1);
                return -1;
            }
            count++;
        }
        if (count != n) return -1;
        if (putc1(b, '[') != 0) return -1;
        for (size_t i = 1; i <= n; i++) {
            if (i > 1 && putc1(b, ',') != 0) return -1;
            lua_rawgeti(L, idx, (int)i);
            int rc = encode_value(L, b, lua_gettop(L), depth);
            lua_pop(L, 1);
            if (rc != 0) return -1;
        }
        return putc1(b, ']');
    }
    if (putc1(b, '{') != 0) return -1;
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return -1;
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        if ((!first && putc1(b, ',') != 0) || put_string(b, k, kl) != 0 || putc1(b, ':') != 0 ||
            encode_value(L, b, lua_gettop(L), depth) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        first = 0;
        lua_pop(L, 1);
    }
    return putc1(b, '}');
}

static int encode_value(lua_State *L, struct weft_buf *b, int idx, int depth) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(b, s, n);
    }
    case LUA_TNUMBER:
        return put_number(b, lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(b, "true", 4) : put(b, "false", 5);
    case LUA_TTABLE:
        return encode_table(L, b, idx, depth + 1);
    case LUA_TNIL:
        return put(b, "null", 4);
    default:
        if (lua_rawequal(L, idx, lua_upvalueindex(4))) return put(b, "null", 4);
        return -1;
    }
}

static int l_encode(lua_State *L) {
    lua_settop(L, 1);
    struct weft_buf b;
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, alloc, ud);
    weft_buf_reserve(&b, 256); /* most encodings fit: no regrowth */
    int rc = encode_value(L, &b, 1, 0);
    if (rc == 0 && !b.err) lua_pushlstring(L, b.len ? b.data : "", b.len);
    else lua_pushnil(L);
    weft_buf_free(&b);
    return 1;
}

static int l_encoder(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 4);
    lua_pushcclosure(L, l_encode, 4);
    return 1;
}

int luaopen_weft_json(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, l_has_empty);
    lua_setfield(L, -2, "has_empty");
    lua_pushcfunction(L, l_encoder);
    lua_setfield(L, -2, "encoder");
    return 1;
}
