/* lua_http_server.c -- weft._http_server: the Lua binding of http_server.c.
 *
 *   local srv = _http_server.serve{host=, port=, handler=, ...}
 *   srv.port, srv.host, srv:close(), srv:stats()
 *
 * srv:stats() -> {connections=, accepted=, requests=, active=, rejected=,
 * evicted=, paused=} (struct weft_http_server_stats).
 *
 * Each request spawns a task running handler(req, res) (lua/weft/http.lua
 * wraps the user's handler so that res:_complete(ok, value) is called when
 * it returns or fails). res:start/write/finish stream a response;
 * res:abort() drops the connection with a reset; res:gone() is true once
 * the client went away before the response was complete: it closed or
 * reset the connection while the handler ran (the server reads on while a
 * request is handled, so this is known at once: a handler that slept sees
 * it when it wakes, before it writes anything), or a write failed.
 *
 * Ownership: struct lserver is the server userdata; while listening it is
 * anchored by self_ref (a script need not keep it to keep serving), and it
 * owns the C server. struct lres is the per-request userdata (owned by Lua,
 * referenced by the handler task); its `c` is cleared when the connection
 * goes away (on_gone) or the response is complete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "buf.h"
#include "http_server.h"
#include "linger.h"
#include "log.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define SERVER_MT "weft.http.server"
#define RES_MT "weft.http.response"

struct lserver {
    struct weft_http_server *s; /* owned; NULL once freed */
    struct weft_loop *loop;
    int handler_ref;
    int self_ref;               /* anchor while listening */
    int hooks;                  /* interrupt/close hooks registered */
    int freeing;                /* weft_http_server_free is running */
    char host[64];
    struct weft_keeper keeper;  /* on the loop's list while a foreground server
                                  listens: it keeps a finished script running */
};

enum rstate { R_FRESH, R_STARTED, R_DONE };

struct lres {
    struct weft_http_conn *c;   /* NULL when gone or answered */
    enum rstate state;
    int gone;                   /* the client went away */
    struct weft_wait wait;      /* write() waiting for the socket to drain */
    struct weft_task *waiter;
    struct weft_task *canceller; /* res:cancel_on_gone(): the task cancelled
                                  when the client goes away (kept alive by
                                  canceller_ref until the answer is done) */
    int canceller_ref;
    struct lserver *ls;
};

/* ----------------------------------------- server callbacks (libev) */

static void on_request(void *ud, struct weft_http_conn *c, const struct weft_http_msg *m) {
    struct lserver *ls = ud;
    lua_State *L = ls->loop->L;
    luaL_checkstack(L, 8, "http request");
    weft_getref(L, ls->handler_ref);                  /* [fn] */
    lua_createtable(L, 0, 9);                         /* [fn, req] */
    lua_pushstring(L, m->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, m->target, m->target_len);
    lua_setfield(L, -2, "target");
    const char *q = memchr(m->target, '?', m->target_len);
    if (q) {
        lua_pushlstring(L, m->target, (size_t)(q - m->target));
        lua_setfield(L, -2, "path");
        lua_pushlstring(L, q + 1, m->target_len - (size_t)(q - m->target) - 1);
        lua_setfield(L, -2, "query");
    } else {
        lua_pushlstring(L, m->target, m->target_len);
        lua_setfield(L, -2, "path");
    }
    weft_push_headers(L, m->headers, m->headers_len);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, m->body, m->body_len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, m->version == 10 ? "1.0" : "1.1");
    lua_setfield(L, -2, "http_version");
    lua_pushstring(L, m->remote);
    lua_setfield(L, -2, "remote_addr");
    struct lres *r = lua_newuserdata(L, sizeof *r);   /* [fn, req, res] */
    memset(r, 0, sizeof *r);
    r->c = c;
    r->ls = ls;
    r->canceller_ref = LUA_NOREF;
    luaL_getmetatable(L, RES_MT);
    lua_setmetatable(L, -2);
    weft_http_conn_set_ud(c, r);
    weft_task_spawn(L, 2);                            /* [task] */
    lua_pop(L, 1);
}

/* Wake a write() waiting for the socket; pushes only a boolean (no
 * allocation: this may run from a __gc that frees the server). */
static void wake_writer(struct lres *r, int ok) {
    struct weft_task *t = r->waiter;
    if (!t) return;
    r->waiter = NULL;
    lua_pushboolean(t->co, ok);
    weft_task_wake(t, 1);
}

static void on_gone(void *req_ud) {
    struct lres *r = req_ud;
    r->c = NULL;
    r->gone = 1;
    wake_writer(r, 0);
    /* Not while the server is being freed (the loop is going away). */
    if (r->canceller && r->ls->s && !r->ls->freeing)
        weft_task_cancel(r->canceller, "the client went away");
}

static void drop_canceller(lua_State *L, struct lres *r) {
    r->canceller = NULL;
    weft_unref(L, r->canceller_ref);
    r->canceller_ref = LUA_NOREF;
}

static void on_writable(void *req_ud) {
    wake_writer((struct lres *)req_ud, 1);
}

static const struct weft_http_server_callbacks callbacks = {on_request, on_gone, on_writable};

/* ---------------------------------------------------------- helpers */

/* Append "Name: value\r\n" for one value; returns an error message or NULL. */
static const char *add_field(struct weft_buf *b, const char *name, size_t nlen, const char *v,
                             size_t vlen) {
    for (size_t i = 0; i < vlen; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return "contains CR, LF or NUL";
    weft_buf_append(b, name, nlen);
    weft_buf_append(b, ": ", 2);
    weft_buf_append(b, v, vlen);
    return weft_buf_append(b, "\r\n", 2) != 0 ? "out of memory" : NULL;
}

/* Render the headers table at idx as "Name: value\r\n" lines; pushes the
 * string, or pushes nothing and returns an error message. Content-Length,
 * Transfer-Encoding and Connection are the server's to set. */
static const char *render_headers(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) {
        lua_pushliteral(L, "");
        return NULL;
    }
    if (!lua_istable(L, idx)) return "headers must be a table";
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    static char msg[160];
    /* Header lines (a Set-Cookie, a token) are zeroed like every buffer
     * that holds HTTP headers. */
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    const char *err = NULL;
    lua_pushnil(L);
    while (!err && lua_next(L, idx)) {                /* [.., k, v] */
        size_t nlen;
        if (lua_type(L, -2) != LUA_TSTRING) {
            err = "header names must be strings";
            lua_pop(L, 2);
            break;
        }
        const char *name = lua_tolstring(L, -2, &nlen);
        const char *e = weft_is_http_token(name, nlen) ? NULL : "has an invalid name";
        if (!e && (strcasecmp(name, "content-length") == 0 ||
                   strcasecmp(name, "transfer-encoding") == 0 ||
                   strcasecmp(name, "connection") == 0))
            e = "is set by the server";
        if (!e && lua_type(L, -1) == LUA_TSTRING) {
            size_t vlen;
            const char *v = lua_tolstring(L, -1, &vlen);
            e = add_field(&b, name, nlen, v, vlen);
        } else if (!e && lua_istable(L, -1)) {
            int n = (int)lua_objlen(L, -1);
            for (int i = 1; i <= n && !e; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_type(L, -1) != LUA_TSTRING) {
                    e = "has a non-string value";
                } else {
                    size_t vlen;
                    const char *v = lua_tolstring(L, -1, &vlen);
                    e = add_field(&b, name, nlen, v, vlen);
                }
                lua_pop(L, 1);
            }
        } else if (!e) {
            e = "value must be a string or an array of strings";
        }
        if (e) {
            snprintf(msg, sizeof msg, "header '%.64s' %s", name, e);
            err = msg;
            lua_pop(L, 2);
            break;
        }
        lua_pop(L, 1);                                /* [.., k] */
    }
    if (!err) lua_pushlstring(L, b.len ? b.data : "", b.len);
    weft_buf_free(&b);
    return err;
}

static struct lres *check_res(lua_State *L) { return luaL_checkudata(L, 1, RES_MT); }

static int push_gone(lua_State *L) {
    lua_pushnil(L);
    weft_push_error(L, "transient", "client closed the connection");
    return 2;
}

static int valid_status(lua_State *L, int idx, int *status) {
    if (lua_isnoneornil(L, idx)) {
        *status = 200;
        return 1;
    }
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, idx);
    *status = (int)n;
    return n == (lua_Number)*status && *status >= 200 && *status <= 599;
}

/* ------------------------------------------------------- res methods */

/* res:start(status, headers) */
static int l_res_start(lua_State *L) {
    struct lres *r = check_res(L);
    int status;
    if (!valid_status(L, 2, &status))
        return luaL_error(L, "res:start: status must be an integer from 200 to 599");
    if (r->state != R_FRESH) return luaL_error(L, "res:start: the response was already started");
    const char *err = render_headers(L, 3);
    if (err) return luaL_error(L, "res:start: %s", err);
    if (!r->c) return push_gone(L);
    size_t flen;
    const char *fields = lua_tolstring(L, -1, &flen);
    r->state = R_STARTED;
    if (weft_http_conn_start(r->c, status, fields, flen) != 0) {
        r->c = NULL;
        r->gone = 1;
        return push_gone(L);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static void write_cancel(struct weft_wait *w) {
    struct lres *r = (struct lres *)((char *)w - offsetof(struct lres, wait));
    r->waiter = NULL;
}

/* res:write(chunk) -> true | false (client gone while waiting) | nil, err */
static int l_res_write(lua_State *L) {
    struct lres *r = check_res(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (r->state == R_FRESH) return luaL_error(L, "res:write: call res:start first");
    if (r->state == R_DONE) return luaL_error(L, "res:write: the response is finished");
    if (!r->c) return push_gone(L);
    int rc = weft_http_conn_write(r->c, p, n);
    if (rc < 0) {
        r->c = NULL;
        r->gone = 1;
        return push_gone(L);
    }
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    /* Above the high watermark: wait until the client has read enough. */
    struct weft_task *t = weft_task_current(L);
    if (!t) {
        lua_pushboolean(L, 1);
        return 1;
    }
    r->wait.cancel = write_cancel;
    r->wait.what = "http write";
    r->waiter = t;
    return weft_task_suspend(L, t, &r->wait);
}

/* res:finish() */
static int l_res_finish(lua_State *L) {
    struct lres *r = check_res(L);
    if (r->state == R_FRESH) return luaL_error(L, "res:finish: call res:start first");
    if (r->state == R_DONE) return 0;
    r->state = R_DONE;
    if (r->c) {
        struct weft_http_conn *c = r->c;
        r->c = NULL;
        weft_http_conn_finish(c);
    }
    return 0;
}

/* res:gone() -> true once the client went away before the response was
 * complete (on_gone, or a write that found the connection broken); a
 * client that leaves after the response was complete does not count. */
static int l_res_gone(lua_State *L) {
    lua_pushboolean(L, check_res(L)->gone);
    return 1;
}

/* res:cancel_on_gone(): from now on until the answer is complete, the
 * client going away cancels the calling task (the handler), with reason
 * "the client went away": what it waits for (an upstream call) is
 * cancelled and freed at once. Returns false when the client is already
 * gone (nothing is registered), true otherwise. */
static int l_res_cancel_on_gone(lua_State *L) {
    struct lres *r = check_res(L);
    struct weft_task *t = weft_task_check_current(L, "res:cancel_on_gone");
    if (r->gone || r->state == R_DONE) {
        lua_pushboolean(L, !r->gone);
        return 1;
    }
    if (r->canceller != t) {
        drop_canceller(L, r);
        weft_getref(L, t->self_ref); /* the task's userdata: keeps t alive */
        r->canceller_ref = weft_ref(L);
        r->canceller = t;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* res:abort(): drop the connection with a TCP reset */
static int l_res_abort(lua_State *L) {
    struct lres *r = check_res(L);
    r->state = R_DONE;
    if (r->c) {
        struct weft_http_conn *c = r->c;
        r->c = NULL;
        weft_http_conn_abort(c);
    }
    return 0;
}

static void send_500(struct lres *r) {
    static const char body[] = "internal server error\n";
    static const char fields[] = "Content-Type: text/plain\r\n";
    struct weft_http_conn *c = r->c;
    r->c = NULL;
    r->state = R_DONE;
    weft_http_conn_send(c, 500, fields, sizeof fields - 1, body, sizeof body - 1);
}

/* res:_complete(ok, value): called once the handler returned or failed. */
static int l_res_complete(lua_State *L) {
    struct lres *r = check_res(L);
    int ok = lua_toboolean(L, 2);
    drop_canceller(L, r);
    if (r->state == R_DONE || !r->c) {
        r->state = R_DONE;
        return 0;
    }
    if (!ok) {
        if (r->state == R_FRESH) send_500(r);
        else lua_pushcfunction(L, l_res_abort), lua_pushvalue(L, 1), lua_call(L, 1, 0);
        return 0;
    }
    if (r->state == R_STARTED) return l_res_finish(L);
    /* A whole response: {status=, headers=, body=} */
    const char *problem = NULL;
    int status = 200;
    if (!lua_istable(L, 3)) {
        problem = "the handler must return a table {status=, headers=, body=} or stream with res";
    } else {
        lua_getfield(L, 3, "status");
        if (!valid_status(L, -1, &status)) problem = "status must be an integer from 200 to 599";
        lua_pop(L, 1);
    }
    size_t blen = 0;
    const char *body = "";
    if (!problem) {
        lua_getfield(L, 3, "body");
        if (lua_type(L, -1) == LUA_TSTRING) body = lua_tolstring(L, -1, &blen);
        else if (!lua_isnil(L, -1)) problem = "body must be a string";
        /* the body string stays referenced by the table */
        lua_pop(L, 1);
    }
    if (!problem) {
        lua_getfield(L, 3, "headers");
        problem = render_headers(L, -1);         /* [.., headers, fields] */
    }
    if (problem) {
        weft_log(WEFT_LOG_ERROR, "http handler returned an invalid response: %s", problem);
        send_500(r);
        return 0;
    }
    size_t flen;
    const char *fields = lua_tolstring(L, -1, &flen);
    struct weft_http_conn *c = r->c;
    r->c = NULL;
    r->state = R_DONE;
    weft_http_conn_send(c, status, fields, flen, body, blen);
    return 0;
}

static int l_res_gc(lua_State *L) {
    struct lres *r = check_res(L);
    drop_canceller(L, r);
    if (r->c) {
        /* Never answered (the handler task was dropped): do not leave the
         * client hanging. */
        struct weft_http_conn *c = r->c;
        r->c = NULL;
        weft_http_conn_abort(c);
    }
    return 0;
}

static int l_res_tostring(lua_State *L) {
    struct lres *r = check_res(L);
    lua_pushfstring(L, "weft.http.response (%s)",
                    r->gone ? "gone" : r->state == R_FRESH ? "fresh" :
                    r->state == R_STARTED ? "streaming" : "done");
    return 1;
}

/* --------------------------------------------------------- server */

static struct lserver *check_server(lua_State *L) { return luaL_checkudata(L, 1, SERVER_MT); }

static void interrupt_hook(void *ud) {
    struct lserver *ls = ud;
    weft_linger_release(ls->loop, &ls->keeper);
    if (ls->s) weft_http_server_close(ls->s);
    if (ls->self_ref != LUA_NOREF) {
        weft_unref(ls->loop->L, ls->self_ref);
        ls->self_ref = LUA_NOREF;
    }
}

static void close_hook(void *ud) {
    struct lserver *ls = ud;
    weft_linger_release(ls->loop, &ls->keeper);
    weft_loop_remove_hook(ls->loop, interrupt_hook, ls);
    ls->hooks = 0;
    ls->freeing = 1;
    weft_http_server_free(ls->s);
    ls->s = NULL;
}

static lua_Number opt_num(lua_State *L, const char *k, lua_Number def, lua_Number min,
                          lua_Number max) {
    lua_getfield(L, 1, k);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "weft.http.serve: %s must be a number, got %s", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= min && v <= max))
            luaL_error(L, "weft.http.serve: %s must be between %f and %f", k, min, max);
    }
    lua_pop(L, 1);
    return v;
}

/* An optional positive integer option (a count); raises with the option's
 * name when it is anything else or above max. */
static int opt_count(lua_State *L, const char *k, int def, int max) {
    lua_getfield(L, 1, k);
    int v = def;
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 1 && n <= max) || n != (lua_Number)(int)n)
            luaL_error(L, "weft.http.serve: %s must be an integer from 1 to %d, got %s", k, max,
                       lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        v = (int)n;
    }
    lua_pop(L, 1);
    return v;
}

/* _http_server.serve(opts) -> server | nil, err */
static int l_serve(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    struct weft_http_server_opts o;
    memset(&o, 0, sizeof o);
    lua_getfield(L, 1, "host");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "weft.http.serve: host must be a string");
    const char *host = lua_isnil(L, -1) ? "127.0.0.1" : lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_Number port = opt_num(L, "port", 0, 0, 65535);
    if (port != (int)port) return luaL_error(L, "weft.http.serve: port must be an integer");
    o.host = host;
    o.port = (int)port;
    o.max_header = (size_t)opt_num(L, "max_header_size", 64 * 1024, 1024, 64 * 1024 * 1024);
    o.max_body = (size_t)opt_num(L, "max_body_size", 16 * 1024 * 1024, 0, 4.0e9);
    o.header_timeout = opt_num(L, "header_timeout", 30, 0.001, 86400);
    o.keepalive_timeout = opt_num(L, "keepalive_timeout", 60, 0.001, 86400);
    o.max_connections = opt_count(L, "max_connections", 10000, 1000000);
    /* 0: the server's default, a quarter of max_connections */
    o.max_connections_per_address = opt_count(L, "max_connections_per_address", 0, 1000000);
    o.backlog = opt_count(L, "backlog", 511, 65535);
    lua_getfield(L, 1, "background");
    o.background = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "handler");
    if (!lua_isfunction(L, -1)) return luaL_error(L, "weft.http.serve: handler must be a function");

    struct weft_loop *loop = weft_loop_get(L);
    struct lserver *ls = lua_newuserdata(L, sizeof *ls);     /* [opts, fn, ls] */
    memset(ls, 0, sizeof *ls);
    ls->loop = loop;
    ls->self_ref = LUA_NOREF;
    ls->handler_ref = LUA_NOREF;
    snprintf(ls->host, sizeof ls->host, "%s", host);
    luaL_getmetatable(L, SERVER_MT);
    lua_setmetatable(L, -2);
    char err[300];
    ls->s = weft_http_server_new(loop->ev, &o, &callbacks, ls, err, sizeof err);
    if (!ls->s) {
        lua_pushnil(L);
        weft_push_error(L, "invalid_request", "%s", err);
        return 2;
    }
    lua_pushvalue(L, 2);
    ls->handler_ref = weft_ref(L);
    lua_pushvalue(L, 3);
    ls->self_ref = weft_ref(L);
    weft_loop_on_interrupt(loop, interrupt_hook, ls);
    weft_loop_on_close(loop, close_hook, ls);
    ls->hooks = 1;
    if (!o.background) {
        ls->keeper.api = "weft.http.serve";
        weft_where(L, 1, ls->keeper.where, sizeof ls->keeper.where);
        weft_linger_keep(loop, &ls->keeper);
    }
    return 1;
}

static int l_server_close(lua_State *L) {
    struct lserver *ls = check_server(L);
    weft_linger_release(ls->loop, &ls->keeper);
    if (ls->s) weft_http_server_close(ls->s);
    if (ls->self_ref != LUA_NOREF) {
        weft_unref(L, ls->self_ref);
        ls->self_ref = LUA_NOREF;
    }
    return 0;
}

static int l_server_stats(lua_State *L) {
    struct lserver *ls = check_server(L);
    struct weft_http_server_stats st = {0};
    if (ls->s) weft_http_server_stats(ls->s, &st);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, st.connections);
    lua_setfield(L, -2, "connections");
    lua_pushnumber(L, (lua_Number)st.accepted);
    lua_setfield(L, -2, "accepted");
    lua_pushnumber(L, (lua_Number)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, st.active);
    lua_setfield(L, -2, "active");
    lua_pushnumber(L, (lua_Number)st.rejected);
    lua_setfield(L, -2, "rejected");
    lua_pushnumber(L, (lua_Number)st.evicted);
    lua_setfield(L, -2, "evicted");
    lua_pushinteger(L, st.paused);
    lua_setfield(L, -2, "paused");
    return 1;
}

static int l_server_index(lua_State *L) {
    struct lserver *ls = check_server(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "port") == 0) {
        if (ls->s) lua_pushinteger(L, weft_http_server_port(ls->s));
        else lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "host") == 0) {
        lua_pushstring(L, ls->host);
        return 1;
    }
    if (strcmp(k, "close") == 0) {
        lua_pushcfunction(L, l_server_close);
        return 1;
    }
    if (strcmp(k, "stats") == 0) {
        lua_pushcfunction(L, l_server_stats);
        return 1;
    }
    return 0;
}

static int l_server_gc(lua_State *L) {
    struct lserver *ls = check_server(L);
    weft_linger_release(ls->loop, &ls->keeper);
    if (ls->hooks) {
        weft_loop_remove_hook(ls->loop, interrupt_hook, ls);
        weft_loop_remove_hook(ls->loop, close_hook, ls);
        ls->hooks = 0;
    }
    ls->freeing = 1;
    weft_http_server_free(ls->s);
    ls->s = NULL;
    if (ls->handler_ref != LUA_NOREF) {
        weft_unref(L, ls->handler_ref);
        ls->handler_ref = LUA_NOREF;
    }
    return 0;
}

static int l_server_tostring(lua_State *L) {
    struct lserver *ls = check_server(L);
    lua_pushfstring(L, "weft.http.server %s:%d%s", ls->host, ls->s ? weft_http_server_port(ls->s) : 0,
                    ls->self_ref == LUA_NOREF ? " (closed)" : "");
    return 1;
}

int luaopen_weft_http_server(lua_State *L) {
    static const luaL_Reg res_methods[] = {
        {"start", l_res_start},        {"write", l_res_write},
        {"finish", l_res_finish},      {"abort", l_res_abort},
        {"gone", l_res_gone},          {"cancel_on_gone", l_res_cancel_on_gone},
        {"_complete", l_res_complete}, {NULL, NULL},
    };
    static const luaL_Reg res_meta[] = {
        {"__gc", l_res_gc}, {"__tostring", l_res_tostring}, {NULL, NULL},
    };
    weft_register_class(L, RES_MT, res_methods, res_meta);
    /* a server has fields read when asked (port, host) and no method table */
    static const luaL_Reg server_meta[] = {
        {"__index", l_server_index}, {"__gc", l_server_gc}, {"__tostring", l_server_tostring},
        {NULL, NULL},
    };
    weft_register_class(L, SERVER_MT, NULL, server_meta);
    lua_newtable(L);
    lua_pushcfunction(L, l_serve);
    lua_setfield(L, -2, "serve");
    return 1;
}
