/* lua_http_client.c -- weft._http_client: the Lua binding of http_client.c.
 *
 *   local x = _http_client.start(opts)   -- a transfer (userdata) or nil, err
 *   x:wait()   -- "data", chunk, head | "done", response | nil, err | nothing
 *   x:cancel()
 *   _http_client.rate(res[, resets])   -- its rate-limit headers, as numbers
 *
 * wait() suspends the calling task until something happened and then
 * returns nothing: the caller (lua/weft/http.lua) calls wait() again, and
 * this time it builds the result in an ordinary C function call. That way
 * the transfer callbacks, which run inside libcurl, never touch the Lua
 * state (an allocation there could run a __gc finalizer, which may call
 * back into curl: CURLM_RECURSIVE_API_CALL); they copy bytes into C buffers
 * and wake the task.
 *
 * Options beyond weft.http.RequestOptions (lua/weft/http.lua):
 *   origin, path, query  instead of url: the URL is built on the configured
 *       origin with curl's URL API (path must begin with "/", holds only
 *       path characters, no dot segment; query goes after "?", without it)
 *       and, complete with any auth.query parameter, parsed again and
 *       compared with the origin (scheme, host, port, path prefix). Any
 *       problem: nil, err {kind="integration", reason="origin"}; nothing
 *       is sent. url together with origin is a misuse (raises).
 *   redact = true  response header values and the non-streamed body pass
 *       through weft_secrets_redact before they become Lua strings
 *       (streamed chunks do not).
 *   stream = true  deliver "data" events (set by weft.http for on_data).
 *   json = true    also: res.headers is made when first read (the header
 *       lines stay in a userdata behind the response's metatable until
 *       then; rate() reads them without making the table).
 * A header that opts.auth renders (default "authorization"; "Authorization"
 * for basic) must not also be in opts.headers, nor be rendered twice: nil,
 * err {kind="integration", reason="auth_header"}. The response table and
 * transport errors carry `sends`: how many times the request went out (2+
 * when libcurl resent it on a fresh connection by itself, 0 when it never
 * got that far).
 *
 * Ownership: struct lxfer is the userdata (owned by Lua), created before
 * the options are read so that it owns what they produce: the header lines
 * (some holding a rendered secret: zeroed when freed) and the URL being
 * built. A Lua error while reading options leaves them to __gc. While the
 * transfer runs, curl borrows the header lines (freed when it ends or is
 * cancelled), the request body string is anchored by body_ref and the
 * lxfer is on its client's `active` list. The client (struct lclient) is
 * owned by the loop and freed by a close hook, which first detaches every
 * active lxfer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "buf.h"
#include "clock.h"
#include "http_client.h"
#include "retry.h"
#include "secrets.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define XFER_MT "weft.http.xfer"
#define HEAD_MT "weft.http.head"
#define DEFAULT_TIMEOUT 600.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_BODY (64.0 * 1024 * 1024)
#define STREAM_HIGH_WATER (1024 * 1024) /* pause a stream above this many
                                           undelivered bytes */
#define BODY_COPY_MAX (64 * 1024)      /* request bodies up to this size are
                                           copied, not anchored by a ref */

static const char CLIENT_KEY = 'C'; /* registry key: address of this byte */

struct lxfer;

struct lclient {
    struct weft_http_client *c;
    struct weft_loop *loop;
    struct lxfer *active;      /* transfers in flight, for the close hook */
    int xfer_mt, head_mt;      /* registry refs of the two metatables (a
                                  lookup by name costs ~200 instructions) */
};

enum xstate { X_NEW, X_RUNNING, X_DONE, X_FAILED, X_CANCELLED, X_DELIVERED };

static const char XFER_MARK = 'X';
struct lxfer {
    const char *mark;          /* &XFER_MARK (weft_check_marked) */
    struct weft_xfer *x;       /* the transfer while running, else NULL */
    struct lclient *lc;        /* while on lc->active */
    struct lxfer *prev, *next; /* lc->active links */
    struct weft_wait wait;     /* embedded: the task waiting in wait() */
    struct weft_task *waiter;
    int body_ref;              /* anchors the request body string (one
                                  past BODY_COPY_MAX) */
    struct weft_buf reqbody;   /* else a copy of it, which curl reads */
    size_t url_shown;          /* the first url_shown bytes of url are
                                  err.url (kept until delivery): the URL on
                                  an origin, or opts.url without userinfo */
    struct weft_headers hdrs;  /* request header lines, owned; borrowed by
                                  the transfer while it runs; cleared (the
                                  secret ones zeroed) when it ends, is
                                  cancelled, or by __gc */
    CURLU *cu;                 /* opts.url parsed to add auth.query
                                  parameters; owned, freed after start */
    struct weft_buf authq;     /* auth.query parameters, encoded (secret) */
    struct weft_buf url;       /* the URL handed to curl (it may hold a
                                  secret): after start, only its err.url
                                  part is kept (url_shown), else freed */
    int redact;                /* opts.redact: headers and body through
                                  weft_secrets_redact before Lua sees them */
    int json;                  /* opts.json: a 2xx body decoded from the
                                  buffer as res.json (no body string) */
    int sends;                 /* from the outcome: times the request was sent */
    int head_ref;              /* cached head table (streaming) */
    int head_mt;               /* the client's ref of HEAD_MT */
    int stream;
    int paused;
    enum xstate state;
    int status, version;
    struct weft_buf head;      /* headers of the current head: "name\0value\0"... */
    struct weft_buf body;      /* body, max: max_body (or undelivered stream
                                  bytes, no max) */
    const char *err_kind;      /* static strings from the outcome */
    const char *err_reason;
    char *err_msg;             /* malloc'd */
    long curl_code;
};

static void active_unlink(struct lxfer *lx) {
    struct lclient *lc = lx->lc;
    if (!lc) return;
    if (lx->prev) lx->prev->next = lx->next;
    else lc->active = lx->next;
    if (lx->next) lx->next->prev = lx->prev;
    lx->prev = lx->next = NULL;
    lx->lc = NULL;
}

/* The waiting task resumes with what there is to deliver, made at its
 * resume (wait_push), not here in a transfer callback. */
static void wake_waiter(struct lxfer *lx) {
    struct weft_task *t = lx->waiter;
    if (t) {
        lx->waiter = NULL;
        weft_task_wake_push(t);
    }
}

/* --------------------------------------- transfer callbacks (no Lua!) */

static void on_status(void *ud, int status, int version) {
    struct lxfer *lx = ud;
    lx->status = status;
    lx->version = version;
    weft_buf_reset(&lx->head);
}

static void on_header(void *ud, const char *name, size_t nlen, const char *value, size_t vlen) {
    struct lxfer *lx = ud;
    /* a usual head fits at once: not four regrowths of a secret buffer
     * (each a copy and a zeroing) */
    if (!lx->head.cap) weft_buf_reserve(&lx->head, 512);
    char *d = weft_buf_extend(&lx->head, nlen + vlen + 2);
    if (!d) return; /* out of memory: this head's later fields are lost too */
    for (size_t i = 0; i < nlen; i++) {
        char ch = name[i];
        d[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    d[nlen] = '\0';
    memcpy(d + nlen + 1, value, vlen);
    d[nlen + 1 + vlen] = '\0';
    if (!lx->stream && nlen == 14 && memcmp(d, "content-length", 14) == 0) {
        /* Size the body buffer once; a length past max_body is curl's to
         * refuse (CURLOPT_MAXFILESIZE), not a reason to fail the buffer. */
        size_t cl = strtoull(d + 15, NULL, 10);
        if (cl > 0 && cl <= lx->body.max && lx->status >= 200) weft_buf_reserve(&lx->body, cl);
    }
}

static int on_data(void *ud, const char *p, size_t n) {
    struct lxfer *lx = ud;
    if (lx->stream) {
        if (lx->body.len >= STREAM_HIGH_WATER) {
            lx->paused = 1;
            wake_waiter(lx);
            return 1;
        }
    }
    if (weft_buf_append(&lx->body, p, n) != 0) return -1; /* past max_body, or no memory */
    if (lx->stream) wake_waiter(lx);
    return 0;
}

static void on_done(void *ud, const struct weft_http_outcome *o) {
    struct lxfer *lx = ud;
    lx->x = NULL;
    active_unlink(lx);
    weft_headers_clear(&lx->hdrs); /* curl is done with them */
    lx->sends = o->sends;
    if (o->kind) {
        lx->state = X_FAILED;
        lx->err_kind = o->kind;
        lx->err_reason = o->reason;
        lx->err_msg = strdup(o->message ? o->message : "request failed");
        lx->curl_code = o->curl_code;
    } else {
        lx->state = X_DONE;
    }
    wake_waiter(lx);
}

static const struct weft_http_callbacks callbacks = {on_status, on_header, on_data, on_done};

/* ------------------------------------------------------------- client */

static void client_close_hook(void *ud) {
    struct lclient *lc = ud;
    /* Detach the Lua side first: lxfer userdata may outlive the client
     * until lua_close runs their __gc. */
    while (lc->active) {
        struct lxfer *lx = lc->active;
        active_unlink(lx);
        lx->x = NULL;
        if (lx->state == X_RUNNING) lx->state = X_CANCELLED;
    }
    /* Cancels the transfers; their header lines stay with each lxfer,
     * whose __gc clears them (zeroing the secret ones). */
    weft_http_client_free(lc->c);
    lua_State *L = lc->loop->L;
    luaL_unref(L, LUA_REGISTRYINDEX, lc->xfer_mt);
    luaL_unref(L, LUA_REGISTRYINDEX, lc->head_mt);
    lua_pushlightuserdata(L, (void *)&CLIENT_KEY);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    free(lc);
}

static struct lclient *get_client(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&CLIENT_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    struct lclient *lc = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (lc) return lc;
    struct weft_loop *loop = weft_loop_get(L);
    lc = calloc(1, sizeof *lc);
    if (!lc) return NULL;
    lc->loop = loop;
    luaL_getmetatable(L, XFER_MT);
    lc->xfer_mt = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_getmetatable(L, HEAD_MT);
    lc->head_mt = luaL_ref(L, LUA_REGISTRYINDEX);
    lc->c = weft_http_client_new(loop->ev);
    if (!lc->c || weft_loop_on_close(loop, client_close_hook, lc) != 0) {
        weft_http_client_free(lc->c);
        luaL_unref(L, LUA_REGISTRYINDEX, lc->xfer_mt);
        luaL_unref(L, LUA_REGISTRYINDEX, lc->head_mt);
        free(lc);
        return NULL;
    }
    lua_pushlightuserdata(L, (void *)&CLIENT_KEY);
    lua_pushlightuserdata(L, lc);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return lc;
}

/* ------------------------------------------------------ option parsing */

static int has_crlf_nul(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
    return 0;
}

/* Seconds option > 0 (or absent: def). Raises on a bad value. */
/* The options l_start reads. One pass over the options table (read_opts)
 * puts each in its stack slot, SLOT(o): not a lua_getfield per option,
 * which makes and hashes the key's string every time (18 of them). */
enum opt {
    O_URL,
    O_ORIGIN,
    O_PATH,
    O_QUERY,
    O_METHOD,
    O_BODY,
    O_TIMEOUT,
    O_CONNECT_TIMEOUT,
    O_IDLE_TIMEOUT,
    O_MAX_BODY,
    O_CA_FILE,
    O_CA_PATH,
    O_STREAM,
    O_REDACT,
    O_JSON,
    O_TLS,
    O_HEADERS,
    O_AUTH,
    O_COUNT
};
static const char *const OPT_NAMES[O_COUNT] = {
    "url",     "origin",          "path",         "query",    "method",  "body",
    "timeout", "connect_timeout", "idle_timeout", "max_body", "ca_file", "ca_path",
    "stream",  "redact",          "json",         "tls",      "headers", "auth",
};
#define SLOT(o) (3 + (o)) /* [opts, lx, slots...] */

static int opt_of(const char *k, size_t n) {
    for (int o = 0; o < O_COUNT; o++) /* (first byte and length first: cheap) */
        if (OPT_NAMES[o][0] == k[0] && strlen(OPT_NAMES[o]) == n && memcmp(OPT_NAMES[o], k, n) == 0)
            return o;
    return -1;
}

/* opts (index 1) into the slots after lx (index 2); other keys are left
 * alone (weft.http checks them). */
static void read_opts(lua_State *L) {
    luaL_checkstack(L, O_COUNT + 4, "weft.http.request");
    for (int o = 0; o < O_COUNT; o++) lua_pushnil(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) { /* [.., k, v] */
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t n;
            const char *k = lua_tolstring(L, -2, &n);
            int o = opt_of(k, n);
            if (o >= 0) {
                lua_replace(L, SLOT(o)); /* [.., k] */
                continue;
            }
        }
        lua_pop(L, 1);
    }
}

/* (read in their slots: no copy pushed and popped) */
static double opt_seconds(lua_State *L, enum opt o, double def) {
    int t = lua_type(L, SLOT(o));
    if (t == LUA_TNIL) return def;
    const char *k = OPT_NAMES[o];
    if (t != LUA_TNUMBER)
        luaL_error(L, "weft.http.request: %s must be a number of seconds, got %s", k,
                   luaL_typename(L, SLOT(o)));
    double v = lua_tonumber(L, SLOT(o));
    if (!(v > 0) || isinf(v))
        luaL_error(L, "weft.http.request: %s must be a positive finite number of seconds", k);
    return v;
}

static const char *opt_string(lua_State *L, enum opt o, size_t *len) {
    int t = lua_type(L, SLOT(o));
    if (t == LUA_TNIL) return NULL;
    if (t != LUA_TSTRING)
        luaL_error(L, "weft.http.request: %s must be a string, got %s", OPT_NAMES[o],
                   luaL_typename(L, SLOT(o)));
    return lua_tolstring(L, SLOT(o), len); /* (alive in the options table) */
}

/* Append "name: value" (a header from opts.headers) to the transfer's
 * list; raises on invalid input (the list stays with lx, freed by __gc). */
static void add_header(lua_State *L, struct lxfer *lx, const char *name, size_t nlen, int vidx) {
    size_t vlen;
    if (lua_type(L, vidx) != LUA_TSTRING)
        luaL_error(L, "weft.http.request: header '%s' value must be a string, got %s", name,
                   luaL_typename(L, vidx));
    const char *v = lua_tolstring(L, vidx, &vlen);
    if (has_crlf_nul(v, vlen))
        luaL_error(L, "weft.http.request: header '%s' value contains CR, LF or NUL", name);
    /* An empty value needs "Name;" in curl's syntax. */
    const char *p[3] = {name, vlen ? ": " : ";", v};
    const size_t len[3] = {nlen, vlen ? 2 : 1, vlen};
    if (weft_headers_add(&lx->hdrs, 0, 3, p, len) != 0)
        luaL_error(L, "weft.http.request: out of memory");
}

/* opts.headers into lx->hdrs. Returns 1 when a Content-Type was given. */
static int build_headers(lua_State *L, struct lxfer *lx) {
    int has_ctype = 0;
    lua_pushvalue(L, SLOT(O_HEADERS));
    int hidx = lua_gettop(L);
    if (!lua_isnil(L, hidx)) {
        if (!lua_istable(L, hidx))
            luaL_error(L, "weft.http.request: headers must be a table, got %s",
                       luaL_typename(L, hidx));
        lua_pushnil(L);
        while (lua_next(L, hidx)) {               /* [.., headers, k, v] */
            size_t nlen;
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "weft.http.request: header names must be strings");
            const char *name = lua_tolstring(L, -2, &nlen);
            if (!weft_is_http_token(name, nlen))
                luaL_error(L, "weft.http.request: invalid header name '%s'", name);
            if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) has_ctype = 1;
            if (lua_istable(L, -1)) {
                int n = (int)lua_objlen(L, -1);
                for (int i = 1; i <= n; i++) {
                    lua_rawgeti(L, -1, i);
                    add_header(L, lx, name, nlen, lua_gettop(L));
                    lua_pop(L, 1);
                }
            } else {
                add_header(L, lx, name, nlen, lua_gettop(L));
            }
            lua_pop(L, 1);                         /* [.., headers, k] */
        }
    }
    lua_pop(L, 1);
    return has_ctype;
}

/* Push nil and an error value {kind=, reason=, message=}; returns 2. */
static int push_fail(lua_State *L, const char *kind, const char *reason, const char *msg) {
    lua_pushnil(L);
    weft_push_error(L, kind, "weft.http.request: %s", msg);
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
    return 2;
}

/* ------------------------------------------------------------- auth */

/* 1 when the secret is loaded and not expired, else raises kind auth. */
static void check_loaded(lua_State *L, struct weft_secret *s) {
    if (!weft_secret_valid(s, weft_clock_now(NULL)))
        weft_raise_error(L, "auth", "weft.http.request: secret %s is not loaded or has expired",
                         s->name);
}

/* The secret in field `k` of the table at idx (a handle), or NULL when the
 * field is absent; raises on anything else or an unusable secret. */
static struct weft_secret *opt_secret(lua_State *L, int idx, const char *k, const char *where) {
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_isuserdata(L, -1))
        luaL_error(L, "weft.http.request: %s.%s must be a secret handle (weft.secret(...))", where, k);
    struct weft_secret *s = weft_lua_check_secret(L, lua_gettop(L));
    lua_pop(L, 1); /* the handle stays referenced by the options table */
    check_loaded(L, s);
    return s;
}

static void zfree(char *p, size_t n) {
    if (p) {
        explicit_bzero(p, n);
        free(p);
    }
}

/* The header an auth item renders must not come from opts.headers too
 * (nor from an earlier auth item): the credential header is the host's.
 * Returns 0, or 2 with nil, err (integration, auth_header) pushed. */
static int auth_header_free(lua_State *L, struct lxfer *lx, const char *name) {
    if (!weft_headers_has(&lx->hdrs, name, strlen(name))) return 0;
    char msg[300];
    snprintf(msg, sizeof msg, "header '%.100s' carries the credential (auth) and must not also be "
             "given in headers", name);
    return push_fail(L, "integration", "auth_header", msg);
}

/* Add the secret line "Name: prefix{value}suffix" (format has "{}" once)
 * to lx->hdrs; the value goes from the store into the line only. */
static void add_secret_header(lua_State *L, struct lxfer *lx, const char *name,
                              const char *format, struct weft_secret *s, const char *value,
                              size_t vlen) {
    const char *hole = strstr(format, "{}");
    if (!hole || strstr(hole + 2, "{}"))
        luaL_error(L, "weft.http.request: auth.format must contain {} exactly once");
    if (has_crlf_nul(format, strlen(format)))
        luaL_error(L, "weft.http.request: auth.format contains CR, LF or NUL");
    if (memchr(value, '\r', vlen) || memchr(value, '\n', vlen))
        luaL_error(L, "weft.http.request: secret %s contains CR or LF; refused in a header", s->name);
    const char *p[5] = {name, ": ", format, value, hole + 2};
    const size_t len[5] = {strlen(name), 2, (size_t)(hole - format), vlen, strlen(hole + 2)};
    if (weft_headers_add(&lx->hdrs, 1, 5, p, len) != 0) luaL_error(L, "out of memory");
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Append s percent-encoded to b (which has room for 3 * n bytes): RFC
 * 3986 unreserved bytes stay, every other byte becomes %XX in upper case --
 * the URL form secrets.c redacts (curl's CURLU_URLENCODE writes lower case
 * and '+'). */
static void pct_encode(struct weft_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            weft_buf_append_char(b, (char)ch);
        } else {
            const char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            weft_buf_append(b, esc, 3);
        }
    }
}

/* Append "name=<value, percent-encoded>" to lx->authq ('&' between
 * parameters). The parameters are appended to the URL as text, not with
 * curl_url_set: that would lower-case the escapes (CURLU_URLENCODE also
 * writes '+' for a space), which is not the form secrets.c redacts, and
 * each call leaves copies of the value inside libcurl that are freed
 * without being zeroed. This buffer is secret: zeroed whenever it lets
 * memory go. */
static void add_secret_query(lua_State *L, struct lxfer *lx, const char *name,
                             struct weft_secret *s) {
    size_t nlen = strlen(name);
    struct weft_buf *q = &lx->authq;
    /* Room for the worst case, so that the appends below cannot fail. */
    if (weft_buf_reserve(q, 1 + 3 * nlen + 1 + 3 * s->len) != 0) luaL_error(L, "out of memory");
    if (q->len) weft_buf_append_char(q, '&');
    pct_encode(q, name, nlen);
    weft_buf_append_char(q, '=');
    pct_encode(q, s->value, s->len);
}

/* Render opts.auth (a table or a list of tables) into secret header lines
 * of lx->hdrs and query parameters in lx->authq. Raises on misuse or an
 * unusable secret; returns 0, or 2 with nil, err pushed (a credential
 * header also given in opts.headers). */
static int apply_auth(lua_State *L, struct lxfer *lx) {
    lua_pushvalue(L, SLOT(O_AUTH));
    int a = lua_gettop(L);
    if (lua_isnil(L, a)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, a)) luaL_error(L, "weft.http.request: auth must be a table");
    int n = (int)lua_objlen(L, a);
    int single = n == 0;
    for (int i = 1; i <= (single ? 1 : n); i++) {
        int t = a;
        if (!single) {
            lua_rawgeti(L, a, i);
            t = lua_gettop(L);
            if (!lua_istable(L, t)) luaL_error(L, "weft.http.request: auth[%d] must be a table", i);
        }
        lua_getfield(L, t, "basic");
        if (lua_istable(L, -1)) {
            int b = lua_gettop(L);
            struct weft_secret *pw = opt_secret(L, b, "password", "auth.basic");
            if (!pw)
                return luaL_error(L, "weft.http.request: auth.basic.password must be a secret "
                                     "handle");
            lua_getfield(L, b, "user");
            size_t ulen = 0;
            const char *user = NULL;
            if (lua_type(L, -1) == LUA_TSTRING) {
                user = lua_tolstring(L, -1, &ulen);
            } else if (lua_isuserdata(L, -1)) {
                struct weft_secret *us = weft_lua_check_secret(L, lua_gettop(L));
                check_loaded(L, us);
                user = us->value;
                ulen = us->len;
            }
            if (!user)
                return luaL_error(L, "weft.http.request: auth.basic.user must be a string or a "
                                     "secret");
            int r = auth_header_free(L, lx, "Authorization");
            if (r) return r;
            size_t plain_len = ulen + 1 + pw->len;
            size_t enc_len = 4 * ((plain_len + 2) / 3) + 1;
            char *plain = malloc(plain_len);
            char *enc = malloc(enc_len);
            if (!plain || !enc) {
                free(plain);
                free(enc);
                return luaL_error(L, "out of memory");
            }
            memcpy(plain, user, ulen);
            plain[ulen] = ':';
            memcpy(plain + ulen + 1, pw->value, pw->len);
            size_t j = 0;
            for (size_t q = 0; q < plain_len; q += 3) {
                unsigned v = (unsigned char)plain[q] << 16;
                if (q + 1 < plain_len) v |= (unsigned char)plain[q + 1] << 8;
                if (q + 2 < plain_len) v |= (unsigned char)plain[q + 2];
                enc[j++] = B64[(v >> 18) & 63];
                enc[j++] = B64[(v >> 12) & 63];
                enc[j++] = q + 1 < plain_len ? B64[(v >> 6) & 63] : '=';
                enc[j++] = q + 2 < plain_len ? B64[v & 63] : '=';
            }
            zfree(plain, plain_len);
            const char *p[3] = {"Authorization", ": Basic ", enc};
            const size_t len[3] = {13, 8, j};
            int rc = weft_headers_add(&lx->hdrs, 1, 3, p, len);
            zfree(enc, enc_len);
            if (rc != 0) return luaL_error(L, "out of memory");
            lua_pop(L, 2);                                  /* [.., auth, (item)] */
        } else {
            lua_pop(L, 1);
            struct weft_secret *s = opt_secret(L, t, "secret", "auth");
            if (!s) return luaL_error(L, "weft.http.request: auth.secret must be a secret handle");
            lua_getfield(L, t, "query");
            const char *q = lua_tostring(L, -1);
            if (q) {
                if (!weft_is_http_token(q, strlen(q)))
                    return luaL_error(L, "weft.http.request: auth.query must be a parameter name");
                add_secret_query(L, lx, q, s);
            } else {
                lua_getfield(L, t, "header");
                const char *h = luaL_optstring(L, -1, "authorization");
                if (!weft_is_http_token(h, strlen(h)))
                    return luaL_error(L, "weft.http.request: auth.header must be a header name");
                lua_getfield(L, t, "format");
                const char *f = luaL_optstring(L, -1, "{}");
                int r = auth_header_free(L, lx, h);
                if (r) return r;
                add_secret_header(L, lx, h, f, s, s->value, s->len);
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        if (!single) lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* ---------------------------------------------------------- Lua API */

static struct lxfer *check_xfer(lua_State *L, int idx) {
    return weft_check_marked(L, idx, &XFER_MARK, sizeof(struct lxfer), XFER_MT);
}

static void push_invalid_url(lua_State *L, const char *why) {
    lua_pushnil(L);
    weft_push_error(L, "invalid_request", "invalid URL: %s", why);
    lua_pushliteral(L, "bad_url");
    lua_setfield(L, -2, "reason");
}

/* Zero and free the URL string handed to curl and the auth query (they
 * may hold a secret; curl keeps its own copy of the URL). */
static void free_url(struct lxfer *lx) {
    weft_buf_free(&lx->url);
    weft_buf_free(&lx->authq);
    if (lx->cu) {
        curl_url_cleanup(lx->cu);
        lx->cu = NULL;
    }
}

/* The final URL of opts.url with auth.query parameters into lx->url,
 * after its err.url part and a NUL (at *at): lx->cu (made from `url`),
 * without a fragment, then lx->authq. Returns 0, or 2 with nil, err
 * pushed (a URL curl cannot parse). */
static int final_url(lua_State *L, struct lxfer *lx, const char *url, size_t *at) {
    lx->cu = curl_url();
    if (!lx->cu) return luaL_error(L, "out of memory");
    CURLUcode rc = curl_url_set(lx->cu, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        push_invalid_url(L, curl_url_strerror(rc));
        return 2;
    }
    /* A parameter written after a fragment would never be sent. */
    char *base = NULL, *q = NULL;
    if (curl_url_set(lx->cu, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK ||
        curl_url_get(lx->cu, CURLUPART_URL, &base, 0) != CURLUE_OK)
        return luaL_error(L, "weft.http.request: out of memory");
    int has_query = curl_url_get(lx->cu, CURLUPART_QUERY, &q, 0) == CURLUE_OK && q && *q;
    curl_free(q);
    size_t blen = strlen(base);
    /* One allocation for all of it: the appends below cannot fail. */
    if (weft_buf_reserve(&lx->url, 1 + blen + 1 + lx->authq.len + 1) != 0) {
        curl_free(base);
        return luaL_error(L, "out of memory");
    }
    weft_buf_append_char(&lx->url, '\0');
    *at = lx->url.len;
    weft_buf_append(&lx->url, base, blen);
    curl_free(base);
    if (lx->authq.len) {
        weft_buf_append_char(&lx->url, has_query ? '&' : '?');
        weft_buf_append(&lx->url, lx->authq.data, lx->authq.len);
    }
    weft_buf_cstr(&lx->url);
    return 0;
}

/* _http_client.start(opts) -> xfer | nil, err */
static int l_start(lua_State *L) {
    if (!lua_istable(L, 1))
        return luaL_error(L, "weft.http.request: expected a table of options, got %s",
                          luaL_typename(L, 1));
    lua_settop(L, 1);
    /* The transfer object comes first: what is built below and must be
     * freed (header lines, some holding a secret; the URL being built) is
     * owned by it, so a Lua error anywhere leaves it to __gc. */
    struct lclient *lc = get_client(L);
    if (!lc) return luaL_error(L, "weft.http.request: cannot create the HTTP client");
    struct lxfer *lx = lua_newuserdata(L, sizeof *lx);      /* [opts, lx] */
    memset(lx, 0, sizeof *lx);
    lx->mark = &XFER_MARK;
    /* Every buffer of a transfer holds part of an HTTP message (a
     * credential, a body, response headers): all secret. The body's max
     * is set below, once max_body is known. */
    weft_buf_init(&lx->authq, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&lx->url, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&lx->head, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&lx->body, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_init(&lx->reqbody, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    lx->body_ref = LUA_NOREF;
    lx->head_ref = LUA_NOREF;
    lx->state = X_NEW;
    lx->head_mt = lc->head_mt;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->xfer_mt);
    lua_setmetatable(L, -2);
    int lx_idx = lua_gettop(L);
    read_opts(L); /* [opts, lx, slots...] */

    struct weft_http_request req;
    memset(&req, 0, sizeof req);
    size_t ulen = 0;
    req.url = opt_string(L, O_URL, &ulen);
    const char *origin = opt_string(L, O_ORIGIN, NULL);
    const char *path = opt_string(L, O_PATH, NULL);
    const char *query = opt_string(L, O_QUERY, NULL);
    if (origin && req.url)
        return luaL_error(L, "weft.http.request: give url or origin (with path), not both");
    if (!origin && (path || query))
        return luaL_error(L, "weft.http.request: path and query go with origin");
    if (!req.url && !origin) return luaL_error(L, "weft.http.request: url is required");

    size_t mlen = 0;
    req.method = opt_string(L, O_METHOD, &mlen);
    if (req.method && !weft_is_http_token(req.method, mlen))
        return luaL_error(L, "weft.http.request: invalid method '%s'", req.method);

    int body_idx = SLOT(O_BODY);
    if (!lua_isnil(L, body_idx)) {
        if (lua_type(L, body_idx) != LUA_TSTRING)
            return luaL_error(L, "weft.http.request: body must be a string, got %s",
                              luaL_typename(L, body_idx));
        req.body = lua_tolstring(L, body_idx, &req.body_len);
        req.has_body = 1;
        if (req.body_len <= BODY_COPY_MAX) {
            /* a copy costs less than a registry reference to keep the
             * string alive while curl reads it (and is zeroed when freed,
             * as every buffer of a transfer) */
            if (weft_buf_reserve(&lx->reqbody, req.body_len ? req.body_len : 1) != 0 ||
                weft_buf_append(&lx->reqbody, req.body, req.body_len) != 0)
                return luaL_error(L, "weft.http.request: out of memory");
            req.body = lx->reqbody.data;
        }
    }
    req.timeout_ms = (long)(opt_seconds(L, O_TIMEOUT, DEFAULT_TIMEOUT) * 1000.0 + 0.5);
    req.connect_timeout_ms =
        (long)(opt_seconds(L, O_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT) * 1000.0 + 0.5);
    double idle = opt_seconds(L, O_IDLE_TIMEOUT, 0);
    req.idle_timeout_ms = idle > 0 ? (long)(idle * 1000.0 + 0.5) : 0;
    if (req.idle_timeout_ms == 0 && idle > 0) req.idle_timeout_ms = 1;
    if (req.timeout_ms == 0) req.timeout_ms = 1;
    if (req.connect_timeout_ms == 0) req.connect_timeout_ms = 1;
    double max_body = DEFAULT_MAX_BODY;
    lua_pushvalue(L, SLOT(O_MAX_BODY));
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 1) ||
            lua_tonumber(L, -1) > 9.0e15)
            return luaL_error(L, "weft.http.request: max_body must be a positive number of bytes");
        max_body = floor(lua_tonumber(L, -1));
    }
    lua_pop(L, 1);
    req.ca_file = opt_string(L, O_CA_FILE, NULL);
    req.ca_path = opt_string(L, O_CA_PATH, NULL);
    int stream = lua_toboolean(L, SLOT(O_STREAM));
    lx->redact = lua_toboolean(L, SLOT(O_REDACT));
    lx->json = lua_toboolean(L, SLOT(O_JSON));
    if (!stream) req.max_body = (curl_off_t)max_body;
    lx->stream = stream;
    weft_buf_init(&lx->body, stream ? WEFT_BUF_NO_MAX : (size_t)max_body, WEFT_BUF_SECRET);

    char err[512];
    const struct weft_http_origin *org = NULL;
    if (origin) {
        /* The URL is built on the configured origin (parsed once, kept by
         * the client); the path and query cannot move it elsewhere (checked
         * again once it is complete). */
        org = weft_http_origin_get(lc->c, origin, err, sizeof err);
        /* written as text (weft_http_origin_render: the checks that keep
         * it on the origin, no URL handle); err.url is this, before any
         * auth.query parameter */
        if (!org || weft_http_origin_render(org, path, query, &lx->url, err, sizeof err) != 0)
            return push_fail(L, "integration", "origin", err);
        lx->url_shown = lx->url.len;
    } else {
        /* Cheap up-front URL checks; curl reports the rest asynchronously. */
        if (ulen < 8 || (strncasecmp(req.url, "http://", 7) != 0 &&
                         strncasecmp(req.url, "https://", 8) != 0)) {
            push_invalid_url(L, "only http:// and https:// URLs are supported");
            return 2;
        }
        for (size_t i = 0; i < ulen; i++) {
            unsigned char ch = (unsigned char)req.url[i];
            if (ch <= 0x20 || ch == 0x7f) {
                push_invalid_url(L, "URL contains a space or control character");
                return 2;
            }
        }
        /* err.url: the URL without its userinfo ("http://user:pass@host/"
         * -> "http://host/"), copied (no reference to the string kept) */
        const char *auth = req.url + (strncasecmp(req.url, "http://", 7) == 0 ? 7 : 8);
        size_t alen = strcspn(auth, "/?#"), skip = 0;
        for (size_t i = 0; i < alen; i++)
            if (auth[i] == '@') skip = i + 1;
        size_t pre = (size_t)(auth - req.url);
        if (weft_buf_reserve(&lx->url, ulen - skip + 1) != 0)
            return luaL_error(L, "weft.http.request: out of memory");
        weft_buf_append(&lx->url, req.url, pre);
        weft_buf_append(&lx->url, auth + skip, ulen - pre - skip);
        lx->url_shown = lx->url.len;
    }

    int has_ctype = build_headers(L, lx);
    /* Credentials are rendered here, by the host, from secret handles; the
     * values go from the store to curl without becoming Lua strings. */
    int r = apply_auth(L, lx);
    if (r) return r;
    /* No 100-continue round trip; no form content type made up by curl. */
    if (req.has_body) {
        const char *p1[1] = {"Expect:"}, *p2[1] = {"Content-Type:"};
        const size_t l1[1] = {7}, l2[1] = {13};
        if (weft_headers_add(&lx->hdrs, 0, 1, p1, l1) != 0 ||
            (!has_ctype && weft_headers_add(&lx->hdrs, 0, 1, p2, l2) != 0))
            return luaL_error(L, "weft.http.request: out of memory");
    }
    lua_pushvalue(L, SLOT(O_TLS));
    if (!lua_isnil(L, -1)) {
        int tt = lua_gettop(L);
        if (!lua_istable(L, tt)) return luaL_error(L, "weft.http.request: tls must be a table");
        struct weft_secret *cert = opt_secret(L, tt, "cert", "tls");
        struct weft_secret *key = opt_secret(L, tt, "key", "tls");
        struct weft_secret *ca = opt_secret(L, tt, "ca", "tls");
        if (cert) req.cert_pem = cert->value, req.cert_len = cert->len;
        if (key) req.key_pem = key->value, req.key_len = key->len;
        if (ca) req.ca_pem = ca->value, req.ca_len = ca->len;
        if ((cert != NULL) != (key != NULL))
            return luaL_error(L, "weft.http.request: tls.cert and tls.key go together");
    }
    lua_pop(L, 1);

    if (org) {
        if (lx->authq.len) {
            /* With a credential appended as a query parameter, the complete
             * URL, parsed again, must still be on the origin. */
            weft_buf_append_char(&lx->url, query && *query ? '&' : '?');
            weft_buf_append(&lx->url, lx->authq.data, lx->authq.len);
            weft_buf_cstr(&lx->url);
            if (lx->url.err) return luaL_error(L, "weft.http.request: out of memory");
            if (weft_http_origin_verify(org, lx->url.data, err, sizeof err) != 0) {
                free_url(lx);
                return push_fail(L, "integration", "origin", err);
            }
        }
        req.url = lx->url.data;
    } else if (lx->authq.len) {
        size_t at = 0;
        r = final_url(L, lx, req.url, &at);
        if (r) return r;
        req.url = lx->url.data + at;
    }
    req.header_list = &lx->hdrs;
    lx->x = weft_http_start(lc->c, &req, &callbacks, lx, err, sizeof err);
    /* curl keeps its own copy; what err.url shows of it is kept (the
     * rest, an auth.query credential and the full URL, zeroed) */
    size_t shown = lx->url_shown;
    memset(lx->url.data + shown, 0, lx->url.len - shown);
    lx->url.len = shown;
    weft_buf_free(&lx->authq);
    if (lx->cu) {
        curl_url_cleanup(lx->cu);
        lx->cu = NULL;
    }
    if (!lx->x) return luaL_error(L, "weft.http.request: %s", err);
    lx->state = X_RUNNING;
    lx->lc = lc;
    lx->next = lc->active;
    if (lc->active) lc->active->prev = lx;
    lc->active = lx;
    if (req.has_body && req.body_len > BODY_COPY_MAX) {
        lua_pushvalue(L, body_idx);
        lx->body_ref = weft_ref(L);
    }
    lua_pushvalue(L, lx_idx);
    return 1;
}

static void release_refs(lua_State *L, struct lxfer *lx) {
    weft_buf_free(&lx->reqbody);
    if (lx->body_ref != LUA_NOREF) {
        weft_unref(L, lx->body_ref);
        lx->body_ref = LUA_NOREF;
    }
    if (lx->head_ref != LUA_NOREF) {
        weft_unref(L, lx->head_ref);
        lx->head_ref = LUA_NOREF;
    }
    if (lx->url_shown) { /* (read by the error pushed before this) */
        weft_buf_free(&lx->url);
        lx->url_shown = 0;
    }
}

static void stop_xfer(struct lxfer *lx) {
    if (lx->x) {
        weft_http_cancel(lx->x);
        lx->x = NULL;
    }
    active_unlink(lx);
    /* Only once curl let go of the transfer (or it never started). */
    weft_headers_clear(&lx->hdrs);
}

static void wait_cancel(struct weft_wait *w) {
    struct lxfer *lx = (struct lxfer *)((char *)w - offsetof(struct lxfer, wait));
    lx->waiter = NULL;
    stop_xfer(lx);
    if (lx->state == X_RUNNING) lx->state = X_CANCELLED;
}

static void push_version(lua_State *L, int v) {
    lua_pushnumber(L, v == 10 ? 1.0 : v == 11 ? 1.1 : (double)v / 10.0);
}

/* Push s[0..n) as a Lua string, through redaction when lx->redact. */
static void push_bytes(lua_State *L, struct lxfer *lx, const char *s, size_t n) {
    char *red = NULL;
    size_t rlen = 0;
    if (lx->redact && n > 0 && weft_secrets_redact(s, n, &red, &rlen) != 0)
        luaL_error(L, "weft.http.request: out of memory (redaction)");
    if (red) {
        lua_pushlstring(L, red, rlen);
        free(red);
    } else {
        lua_pushlstring(L, s, n);
    }
}

/* res.json (and res.json_error with res.body for text that is not JSON)
 * from the body buffer, redacted first when lx->redact: the answer never
 * becomes a Lua string only to be parsed (LuaJIT interns every string,
 * and answers of one length that differ only where its hash does not
 * look all land in one chain). */
static void push_json_body(lua_State *L, struct lxfer *lx) {
    const char *b = lx->body.len ? lx->body.data : "";
    size_t n = lx->body.len;
    char *red = NULL;
    size_t rlen = 0;
    if (lx->redact && n > 0 && weft_secrets_redact(b, n, &red, &rlen) != 0)
        luaL_error(L, "weft.http.request: out of memory (redaction)");
    if (red) b = red, n = rlen;
    struct weft_json_src src = {b, n, lx->redact};
    lua_pushcfunction(L, weft_json_decode_cf);
    lua_pushlightuserdata(L, &src);
    int rc = lua_pcall(L, 1, 2, 0); /* [.., resp, v|nil, nil|why] */
    if (rc != 0) {                  /* out of memory: nothing of red may stay */
        free(red);
        lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_setfield(L, -2, "json");
    } else {
        lua_setfield(L, -3, "json_error");
        lua_pop(L, 1);
        lua_pushlstring(L, b, n);
        lua_setfield(L, -2, "body");
    }
    free(red);
}

/* ------------------------------------------------- rate-limit readings */

/* The standard rate-limit headers the host reads of an answer (OpenAI
 * x-ratelimit-*, Anthropic anthropic-ratelimit-*), as numbers: what
 * weft.calls' quota gauges and the limiter take. */
enum { RL_REQUESTS, RL_TOKENS, RL_INPUT, RL_OUTPUT, RL_UNITS };
static const char *const RL_REMAINING[RL_UNITS][2] = {
    {"x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"},
    {"x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"},
    {"x-ratelimit-remaining-input-tokens", "anthropic-ratelimit-input-tokens-remaining"},
    {"x-ratelimit-remaining-output-tokens", "anthropic-ratelimit-output-tokens-remaining"},
};
static const char *const RL_RESET[2][2] = {
    {"x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"},
    {"x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset"},
};

struct rate {
    /* [unit][0: OpenAI's name, 1: Anthropic's]: the first value of each
     * header, NULL when absent (pointers into the header lines or Lua
     * strings, read before anything can free them) */
    const char *remaining[RL_UNITS][2];
    const char *reset[2][2];
};

/* A header value as Lua's tonumber reads it (surrounding blanks allowed),
 * finite; NAN when it is not one. */
static double rate_number(const char *v) {
    char *end;
    while (*v == ' ' || *v == '\t') v++;
    /* the usual value, a whole number of at most 15 digits, without
     * strtod (which costs as much as the rest of the readings) */
    double n = 0;
    const char *q = v;
    while (*q >= '0' && *q <= '9' && q - v < 15) n = n * 10 + (*q++ - '0');
    if (q > v && *q == '\0') return n;
    double d = strtod(v, &end);
    if (end == v) return NAN;
    while (*end == ' ' || *end == '\t') end++;
    return *end == '\0' && isfinite(d) ? d : NAN;
}

/* Note one header line (name in lower case) in r when it is one of the
 * rate-limit headers (the first of each). */
static void rate_note(struct rate *r, const char *name, size_t nlen, const char *value) {
    static size_t lens[2 * (RL_UNITS + 2)]; /* of the names, in the order below */
    if (!lens[0])
        for (int i = 0; i < 2 * (RL_UNITS + 2); i++)
            lens[i] = strlen(i < 2 * RL_UNITS ? RL_REMAINING[i / 2][i % 2]
                                              : RL_RESET[i / 2 - RL_UNITS][i % 2]);
    if (nlen < 24 || (name[0] != 'x' && name[0] != 'a')) return; /* (the shortest is 24) */
    for (int i = 0; i < 2 * (RL_UNITS + 2); i++) {
        int u = i / 2, k = i % 2;
        const char *want = u < RL_UNITS ? RL_REMAINING[u][k] : RL_RESET[u - RL_UNITS][k];
        if (lens[i] != nlen || memcmp(want, name, nlen) != 0) continue;
        const char **slot = u < RL_UNITS ? &r->remaining[u][k] : &r->reset[u - RL_UNITS][k];
        if (!*slot) *slot = value;
        return;
    }
}

/* Push the readings: remaining requests, tokens, input tokens, output
 * tokens, then the reset (seconds from now) of requests and tokens; nil
 * for each that is absent or unreadable. OpenAI's header first, as
 * weft.limiter's observe reads them: a present one that is not a number
 * is no reading; a reset that cannot be read gives way to Anthropic's. */
static int push_rate(lua_State *L, const struct rate *r, int resets) {
    for (int u = 0; u < RL_UNITS; u++) {
        const char *v = r->remaining[u][0] ? r->remaining[u][0] : r->remaining[u][1];
        double d = v ? rate_number(v) : NAN;
        if (isnan(d))
            lua_pushnil(L);
        else
            lua_pushnumber(L, d);
    }
    if (!resets) return RL_UNITS;
    double wall = (double)time(NULL);
    for (int u = 0; u < 2; u++) {
        double d = -1;
        for (int k = 0; k < 2 && d < 0; k++)
            if (r->reset[u][k]) d = weft_retry_hint(RL_RESET[u][k], r->reset[u][k], wall);
        if (d < 0)
            lua_pushnil(L);
        else
            lua_pushnumber(L, d);
    }
    return RL_UNITS + 2;
}

/* ------------------------------------------------- headers made lazily */

/* The header lines of a json response whose res.headers is made when
 * first read: moved out of the transfer at delivery (redacted already
 * when the request asked for it). The response's own metatable holds it:
 * {__index = res_index, [1] = lhead}. */
static const char HEAD_MARK = 'H';
struct lhead {
    const char *mark;  /* &HEAD_MARK */
    struct weft_buf b; /* "name\0value\0"..., names in lower case */
    int scanned;       /* rate holds the lines' rate-limit headers */
    struct rate rate;  /* (pointers into b) */
};

static int head_gc(lua_State *L) {
    struct lhead *hd = lua_touserdata(L, 1);
    weft_buf_free(&hd->b);
    return 0;
}

/* The lhead behind the response table at idx (its metatable's [1], a
 * userdata of lhead's size with its mark), or NULL. Leaves the stack as
 * it was. */
static struct lhead *res_head(lua_State *L, int idx) {
    int top = lua_gettop(L);
    struct lhead *hd = NULL;
    if (lua_getmetatable(L, idx)) { /* [.., mt] */
        lua_rawgeti(L, -1, 1);      /* [.., mt, hd?] */
        if (lua_type(L, -1) == LUA_TUSERDATA && lua_objlen(L, -1) == sizeof *hd) {
            hd = lua_touserdata(L, -1);
            if (hd->mark != &HEAD_MARK) hd = NULL;
        }
    }
    lua_settop(L, top);
    return hd;
}

/* getmetatable(res).__index(res, key): res.headers, made from the lines
 * now and stored in res, which then loses this metatable; any other key
 * is nil, as it would be. */
static int res_index(lua_State *L) {
    /* (the metatable is a plain table: a script can reach this function
     * and the lhead, and call it on anything) */
    if (!lua_istable(L, 1)) return 0;
    size_t n = 0;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
    struct lhead *hd = k && n == 7 && memcmp(k, "headers", 7) == 0 ? res_head(L, 1) : NULL;
    if (!hd) return 0;
    weft_push_headers(L, hd->b.len ? hd->b.data : "", hd->b.len); /* [res, k, h] */
    weft_buf_free(&hd->b); /* (the table has them now) */
    hd->scanned = 0;       /* (rate's pointers went with them) */
    memset(&hd->rate, 0, sizeof hd->rate);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    lua_pushnil(L);
    lua_setmetatable(L, 1); /* (hd goes with the metatable) */
    return 1;
}

/* _http_client.rate(res[, resets]) -> remaining requests, tokens, input
 * tokens, output tokens[, reset of requests, of tokens] (push_rate): read from
 * res.headers, or from the header lines of a json response whose
 * res.headers was not made (without making it). Nothing for a table with
 * neither (an error value). */
static int l_rate(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int resets = lua_toboolean(L, 2);
    lua_settop(L, 1);
    luaL_checkstack(L, 2 * (RL_UNITS + 2) + 4, "weft.http.rate");
    struct rate r;
    memset(&r, 0, sizeof r);
    lua_pushliteral(L, "headers");
    lua_rawget(L, 1); /* [res, h] */
    if (lua_istable(L, 2)) {
        /* (the values stay anchored in h while they are read) */
        for (int u = 0; u < RL_UNITS + 2; u++)
            for (int k = 0; k < 2; k++) {
                const char *name = u < RL_UNITS ? RL_REMAINING[u][k] : RL_RESET[u - RL_UNITS][k];
                lua_getfield(L, 2, name);
                if (lua_istable(L, -1)) {
                    lua_rawgeti(L, -1, 1);
                    lua_replace(L, -2);
                }
                const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
                if (u < RL_UNITS)
                    r.remaining[u][k] = v;
                else
                    r.reset[u - RL_UNITS][k] = v;
                if (!v) lua_pop(L, 1);
            }
        return push_rate(L, &r, resets);
    }
    struct lhead *hd = res_head(L, 1);
    if (!hd) return 0;
    if (!hd->scanned) { /* once: the quota gauges and the limiter both read */
        const char *p = hd->b.len ? hd->b.data : NULL;
        for (size_t off = 0, len = p ? hd->b.len : 0; off < len;) {
            const char *name = p + off;
            size_t nlen = strnlen(name, len - off);
            if (off + nlen + 1 >= len) break;
            const char *v = name + nlen + 1;
            off += nlen + strnlen(v, len - off - nlen - 1) + 2;
            rate_note(&hd->rate, name, nlen, v);
        }
        hd->scanned = 1;
    }
    return push_rate(L, &hd->rate, resets);
}

/* {status=, headers=, http_version=}; lazy: the headers made when first
 * read (res_index) */
static void push_head(lua_State *L, struct lxfer *lx, int lazy) {
    /* room for what deliver and weft.http add: body|json, sends, wire,
     * first_byte */
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, lx->status);
    lua_setfield(L, -2, "status");
    const char *h = lx->head.len ? lx->head.data : "";
    size_t hlen = lx->head.len;
    char *red = NULL;
    /* One pass over the whole "name\0value\0" block: a secret holds no
     * NUL, so no match spans two fields and the layout survives. */
    if (lx->redact && hlen > 0 && weft_secrets_redact(h, hlen, &red, &hlen) != 0)
        luaL_error(L, "weft.http.request: out of memory (redaction)");
    if (lazy) {
        lua_createtable(L, 1, 1);                          /* [res, mt] */
        struct lhead *hd = lua_newuserdata(L, sizeof *hd); /* [res, mt, hd] */
        hd->mark = &HEAD_MARK;
        hd->scanned = 0;
        memset(&hd->rate, 0, sizeof hd->rate);
        if (red) {
            weft_buf_init(&hd->b, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
            int rc = weft_buf_append(&hd->b, red, hlen);
            free(red);
            if (rc != 0) luaL_error(L, "weft.http.request: out of memory");
        } else {
            hd->b = lx->head; /* moved: the transfer keeps an empty buffer */
            weft_buf_init(&lx->head, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, lx->head_mt); /* [res, mt, hd, hmt] */
        lua_rawgeti(L, -1, 1);         /* res_index */
        lua_setfield(L, -4, "__index");
        lua_setmetatable(L, -2);
        lua_rawseti(L, -2, 1);   /* [res, mt] */
        lua_setmetatable(L, -2); /* [res] */
    } else {
        weft_push_headers(L, red ? red : h, red ? hlen : lx->head.len);
        free(red);
        lua_setfield(L, -2, "headers");
    }
    push_version(L, lx->version);
    lua_setfield(L, -2, "http_version");
}

static int push_cancelled(lua_State *L) {
    lua_pushnil(L);
    weft_push_error(L, "cancelled", "request cancelled");
    return 2;
}

/* Push what the transfer has for its waiter: "data", chunk, head | "done",
 * resp | nil, err (a failure or a cancel); returns how many values, 0 when
 * there is nothing yet (running). */
static int deliver(lua_State *L, struct lxfer *lx) {
    if (lx->stream && lx->body.len > 0) {
        lua_pushliteral(L, "data");
        lua_pushlstring(L, lx->body.data, lx->body.len);
        weft_buf_reset(&lx->body);
        if (lx->head_ref == LUA_NOREF) {
            push_head(L, lx, 0);
            lua_pushvalue(L, -1);
            lx->head_ref = weft_ref(L);
        } else {
            weft_getref(L, lx->head_ref);
        }
        if (lx->paused && lx->x) {
            lx->paused = 0;
            weft_http_resume(lx->x); /* may append to lx->body at once */
        }
        return 3;
    }
    switch (lx->state) {
    case X_RUNNING:
        return 0;
    case X_DONE:
        lx->state = X_DELIVERED;
        lua_pushliteral(L, "done");
        push_head(L, lx, lx->json && !lx->stream); /* [.., "done", resp] */
        if (lx->json && !lx->stream && lx->status >= 200 && lx->status < 300) {
            push_json_body(L, lx);
        } else {
            if (lx->stream)
                lua_pushliteral(L, "");
            else
                push_bytes(L, lx, lx->body.len ? lx->body.data : "", lx->body.len);
            lua_setfield(L, -2, "body");
        }
        lua_pushinteger(L, lx->sends);
        lua_setfield(L, -2, "sends");
        weft_buf_free(&lx->body);
        release_refs(L, lx);
        return 2;
    case X_FAILED:
        lx->state = X_DELIVERED;
        lua_pushnil(L);
        weft_push_error(L, lx->err_kind, "%s", lx->err_msg ? lx->err_msg : "request failed");
        if (lx->err_reason) {
            lua_pushstring(L, lx->err_reason);
            lua_setfield(L, -2, "reason");
        }
        lua_pushinteger(L, lx->curl_code);
        lua_setfield(L, -2, "curl_code");
        lua_pushinteger(L, lx->sends);
        lua_setfield(L, -2, "sends");
        if (lx->url_shown) {
            lua_pushlstring(L, lx->url.data, lx->url_shown);
            lua_setfield(L, -2, "url");
        }
        if (lx->status) {
            lua_pushinteger(L, lx->status);
            lua_setfield(L, -2, "status");
        }
        release_refs(L, lx);
        return 2;
    case X_CANCELLED:
        release_refs(L, lx);
        return push_cancelled(L);
    case X_DELIVERED:
    default:
        return luaL_error(L, "weft.http.request: transfer already finished");
    }
}

static int wait_push(lua_State *L, struct weft_wait *w) {
    struct lxfer *lx = (struct lxfer *)((char *)w - offsetof(struct lxfer, wait));
    return deliver(L, lx);
}

/* x:wait() -> "data", chunk, head | "done", resp | nil, err | (nothing:
 * woken with nothing to deliver, call again). A task waits once per
 * event: its results are made at the resume (wait_push). */
static int l_wait(lua_State *L) {
    struct lxfer *lx = check_xfer(L, 1);
    int n = deliver(L, lx);
    if (n) return n;
    struct weft_task *t = weft_task_check_current(L, "weft.http.request");
    if (lx->waiter) return luaL_error(L, "weft.http.request: transfer already has a waiter");
    lx->wait.cancel = wait_cancel;
    lx->wait.push = wait_push;
    lx->wait.what = "http";
    lx->waiter = t;
    return weft_task_suspend(L, t, &lx->wait);
}

/* x:cancel() -> true when it was still running */
static int l_cancel(lua_State *L) {
    struct lxfer *lx = check_xfer(L, 1);
    int running = lx->state == X_RUNNING;
    stop_xfer(lx);
    if (running) lx->state = X_CANCELLED;
    release_refs(L, lx);
    wake_waiter(lx);
    lua_pushboolean(L, running);
    return 1;
}

static int l_gc(lua_State *L) {
    struct lxfer *lx = check_xfer(L, 1);
    stop_xfer(lx);              /* also clears the header lines */
    free_url(lx);
    release_refs(L, lx);
    weft_buf_free(&lx->body);
    weft_buf_free(&lx->head);
    free(lx->err_msg);
    lx->err_msg = NULL;
    return 0;
}

static int l_tostring(lua_State *L) {
    static const char *const names[] = {"new", "running", "done", "failed", "cancelled",
                                        "delivered"};
    struct lxfer *lx = check_xfer(L, 1);
    lua_pushfstring(L, "weft.http.xfer (%s)", names[lx->state]);
    return 1;
}

/* _http_client.stats() -> {in_flight=, sockets=, pooled=, started=} */
static int l_stats(lua_State *L) {
    struct weft_http_stats st = {0};
    struct lclient *lc = get_client(L);
    if (lc) weft_http_client_stats(lc->c, &st);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, st.in_flight);
    lua_setfield(L, -2, "in_flight");
    lua_pushinteger(L, st.sockets);
    lua_setfield(L, -2, "sockets");
    lua_pushinteger(L, st.pooled);
    lua_setfield(L, -2, "pooled");
    lua_pushnumber(L, (lua_Number)st.started);
    lua_setfield(L, -2, "started");
    return 1;
}

int luaopen_weft_http_client(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"wait", l_wait}, {"cancel", l_cancel}, {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"start", l_start},
        {"stats", l_stats},
        {"rate", l_rate},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
    weft_register_class(L, XFER_MT, methods, meta);
    static const luaL_Reg head_meta[] = {{"__gc", head_gc}, {NULL, NULL}};
    weft_register_class(L, HEAD_MT, NULL, head_meta);
    luaL_getmetatable(L, HEAD_MT); /* [1] = the responses' __index (push_head) */
    lua_pushcfunction(L, res_index);
    lua_rawseti(L, -2, 1);
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushnumber(L, DEFAULT_CONNECT_TIMEOUT); /* (weft.http and the config read it) */
    lua_setfield(L, -2, "DEFAULT_CONNECT_TIMEOUT");
    return 1;
}
