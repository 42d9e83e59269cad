/* lua_json.c -- weft._json: the C helpers of weft.json.
 *
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
 *   _json.decoder(array_mt, object_mt)
 *                        -- returns decode(s) -> value | nil, message: one
 *                           pass, empty containers marked as met, tables made
 *                           at their size; also weft_json_push_decoded
 *                           (bindings.h), which weft.http uses on an answer's
 *                           bytes without making them a Lua string.
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "buf.h"
#include "secrets.h"

#define MAX_DEPTH 1000

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

/* ------------------------------------------------------------- decoder */

/* One pass over the text: values are built as they are read, empty
 * arrays and objects marked as they are met (weft.json's rules), and a
 * container's first members wait on the Lua stack so its table is made
 * at its size (no rehash as it fills). Strings without escapes are
 * pushed straight from the text. Lenient where lua-cjson was (raw
 * control characters inside strings); strict JSON otherwise: no NaN,
 * Infinity, hex, leading zeros, comments or trailing commas. */

static const char ARRAY_MT_KEY = 'a'; /* registry keys: addresses of these */
static const char OBJECT_MT_KEY = 'o';

#define DEC_PENDING 16 /* members kept on the stack before the table is made */

struct dec {
    lua_State *L;
    const char *s, *p, *end;
    int depth;
    int redact;      /* redact strings that held escapes */
    int amt, omt;    /* stack slots of the array and object marks */
    const char *err; /* static message of the first error */
};

static int dec_fail(struct dec *d, const char *msg) {
    if (!d->err) d->err = msg;
    return -1;
}

static inline void dec_ws(struct dec *d) {
    const char *p = d->p, *e = d->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    d->p = p;
}

static int dec_value(struct dec *d);

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Code point cp (at most 0x10FFFF) as UTF-8. */
static void add_utf8(luaL_Buffer *b, int cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)), n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)), n = 4;
    }
    for (size_t i = 1; i < n; i++) u[i] = (char)(0x80 | ((cp >> (6 * (n - 1 - i))) & 0x3F));
    luaL_addlstring(b, u, n);
}

/* The string at d->p (after its opening quote) pushed; d->p past it. */
static int dec_string(struct dec *d) {
    lua_State *L = d->L;
    const char *p = d->p, *e = d->end, *run = p;
    while (p < e && *p != '"' && *p != '\\') p++;
    if (p >= e) return dec_fail(d, "unterminated string");
    if (*p == '"') { /* no escape: the common case */
        lua_pushlstring(L, run, (size_t)(p - run));
        d->p = p + 1;
        return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        while (p < e && *p != '"' && *p != '\\') p++;
        if (p >= e) return dec_fail(d, "unterminated string");
        luaL_addlstring(&b, run, (size_t)(p - run));
        if (*p == '"') break;
        if (p + 1 >= e) return dec_fail(d, "unterminated string");
        char c = p[1];
        p += 2;
        /* the one-letter escapes, each for the byte at the same place */
        static const char ESC_IN[] = "\"\\/bfnrt", ESC_OUT[] = "\"\\/\b\f\n\r\t";
        const char *one = c ? strchr(ESC_IN, c) : NULL;
        if (one) {
            luaL_addchar(&b, ESC_OUT[one - ESC_IN]);
            run = p;
            continue;
        }
        if (c != 'u') {
            d->p = p - 2;
            return dec_fail(d, "invalid escape in string");
        }
        int cp = e - p >= 4 ? hex4(p) : -1;
        if (cp < 0) return d->p = p - 2, dec_fail(d, "invalid \\u escape");
        p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return d->p = p - 6, dec_fail(d, "lone low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = (e - p >= 6 && p[0] == '\\' && p[1] == 'u') ? hex4(p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return d->p = p - 6,
                       dec_fail(d, "high surrogate without its low half in \\u escape");
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        add_utf8(&b, cp);
        run = p;
    }
    d->p = p + 1;
    luaL_pushresult(&b);
    if (d->redact) {
        /* An escape can spell a secret the redaction of the raw text could
         * not see: the decoded string is redacted too. */
        size_t n, rlen;
        const char *v = lua_tolstring(L, -1, &n);
        char *red = NULL;
        if (weft_secrets_redact(v, n, &red, &rlen) != 0)
            return luaL_error(L, "weft.json: out of memory");
        if (red) {
            lua_pop(L, 1);
            lua_pushlstring(L, red, rlen); /* (as in push_bytes: out of memory here loses red) */
            free(red);
        }
    }
    return 0;
}

static inline int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int dec_number(struct dec *d) {
    const char *b = d->p, *p = b, *e = d->end;
    int neg = 0, integer = 1;
    if (*p == '-') neg = 1, p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && is_digit(*p)) p++;
    else
        return dec_fail(d, "invalid number");
    if (p < e && *p == '.') {
        integer = 0;
        if (++p >= e || !is_digit(*p)) return d->p = p, dec_fail(d, "invalid number");
        while (p < e && is_digit(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        integer = 0;
        if (++p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return d->p = p, dec_fail(d, "invalid number");
        while (p < e && is_digit(*p)) p++;
    }
    size_t n = (size_t)(p - b);
    d->p = p;
    if (integer && n - (size_t)neg <= 15) { /* exact in a double: no strtod */
        long long v = 0;
        for (const char *q = b + neg; q < p; q++) v = v * 10 + (*q - '0');
        lua_pushnumber(d->L, neg ? (v ? -(double)v : -0.0) : (double)v);
        return 0;
    }
    /* strtod on a copy that ends where the number does (strtod reads hex,
     * inf and nan too, and the text need not end after the number) */
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) return luaL_error(d->L, "weft.json: out of memory");
    memcpy(copy, b, n);
    copy[n] = '\0';
    double v = strtod(copy, NULL);
    if (copy != small) free(copy);
    lua_pushnumber(d->L, v);
    return 0;
}

/* A container's pending members: `n` values (array) or key/value pairs
 * (object) on top of the stack become the table made at their count,
 * left on the stack in their place. */
static void dec_flush(lua_State *L, int n, int object) {
    int w = object ? 2 : 1;
    lua_createtable(L, object ? 0 : n, object ? n : 0);
    lua_insert(L, -(n * w) - 1);
    int t = lua_gettop(L) - n * w;
    if (object) {
        /* in order, so that the last of duplicate keys wins */
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, t + 1 + 2 * i);
            lua_pushvalue(L, t + 2 + 2 * i);
            lua_rawset(L, t);
        }
    } else {
        for (int i = n; i >= 1; i--) lua_rawseti(L, t, i);
    }
    lua_settop(L, t);
}

static int dec_container(struct dec *d, int object) {
    lua_State *L = d->L;
    char close = object ? '}' : ']';
    if (++d->depth > MAX_DEPTH) return dec_fail(d, "nested deeper than 1000");
    d->p++;
    dec_ws(d);
    if (d->p < d->end && *d->p == close) { /* empty: marked */
        d->p++;
        lua_createtable(L, 0, 0);
        lua_pushvalue(L, object ? d->omt : d->amt);
        lua_setmetatable(L, -2);
        d->depth--;
        return 0;
    }
    int n = 0, made = 0; /* members so far; whether the table is made */
    for (;;) {
        if (!made && (n == DEC_PENDING || !lua_checkstack(L, 8))) {
            dec_flush(L, n, object);
            made = 1;
        }
        if (!lua_checkstack(L, 8)) return luaL_error(L, "weft.json: nested too deep for the stack");
        if (object) {
            if (d->p >= d->end) return dec_fail(d, "unterminated object");
            if (*d->p != '"') return dec_fail(d, "expected a string key");
            d->p++;
            if (dec_string(d)) return -1;
            dec_ws(d);
            if (d->p >= d->end || *d->p != ':')
                return dec_fail(d, "expected ':' after an object key");
            d->p++;
            dec_ws(d);
        }
        if (dec_value(d)) return -1;
        n++;
        if (made) {
            if (object)
                lua_rawset(L, -3);
            else
                lua_rawseti(L, -2, n);
        }
        dec_ws(d);
        if (d->p >= d->end)
            return dec_fail(d, object ? "unterminated object" : "unterminated array");
        char c = *d->p++;
        if (c == close) break;
        if (c != ',')
            return d->p--, dec_fail(d, object ? "expected ',' or '}' in an object"
                                              : "expected ',' or ']' in an array");
        dec_ws(d);
    }
    if (!made) dec_flush(L, n, object);
    d->depth--;
    return 0;
}

static int dec_literal(struct dec *d, const char *word, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_fail(d, "invalid token");
    d->p += n;
    return 0;
}

static int dec_value(struct dec *d) {
    if (d->p >= d->end) return dec_fail(d, "unexpected end of text");
    switch (*d->p) {
    case '"':
        d->p++;
        return dec_string(d);
    case '{':
        return dec_container(d, 1);
    case '[':
        return dec_container(d, 0);
    case 't':
        if (dec_literal(d, "true", 4)) return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5)) return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4)) return -1;
        lua_pushlightuserdata(d->L, NULL); /* json.null (cjson.null) */
        return 0;
    default:
        if (*d->p == '-' || is_digit(*d->p)) return dec_number(d);
        return dec_fail(d, "invalid token");
    }
}

int weft_json_push_decoded(lua_State *L, const char *s, size_t n, int redact) {
    int base = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)&ARRAY_MT_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&OBJECT_MT_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_istable(L, -1) || !lua_istable(L, -2))
        return luaL_error(L, "weft.json: decoder used before weft._json.decoder set its marks");
    struct dec d = {L, s, s, s + n, 0, redact, base + 1, base + 2, NULL};
    dec_ws(&d);
    int rc = dec_value(&d);
    if (rc == 0) {
        dec_ws(&d);
        if (d.p < d.end) rc = dec_fail(&d, "unexpected text after the value");
    }
    if (rc != 0) {
        lua_settop(L, base);
        lua_pushnil(L);
        lua_pushfstring(L, "%s at character %d", d.err, (int)(d.p - s) + 1);
        return 2;
    }
    lua_replace(L, base + 1); /* the value where the array mark was */
    lua_settop(L, base + 1);
    lua_pushnil(L);
    return 2;
}

int weft_json_decode_cf(lua_State *L) {
    const struct weft_json_src *src = lua_touserdata(L, 1);
    lua_settop(L, 0);
    return weft_json_push_decoded(L, src->s, src->n, src->redact);
}

/* decode(s) -> value | nil, message */
static int l_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    return weft_json_push_decoded(L, s, n, 0);
}

/* decoder(array_mt, object_mt) -> decode: the marks are kept (registry)
 * for every decode, weft.http's json answers included. */
static int l_decoder(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushlightuserdata(L, (void *)&ARRAY_MT_KEY);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&OBJECT_MT_KEY);
    lua_pushvalue(L, 2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, l_decode);
    return 1;
}

int luaopen_weft_json(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, l_encoder);
    lua_setfield(L, -2, "encoder");
    lua_pushcfunction(L, l_decoder);
    lua_setfield(L, -2, "decoder");
    return 1;
}
