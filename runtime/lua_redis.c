/* lua_redis.c -- weft._redis: hiredis's async client on weft's libev loop.
 *
 *   local c = _redis.open(host, port)      -- or _redis.open_unix(path); connecting
 *   c:await_connect(timeout)               -- waits: the connect callback or the timeout
 *   c:state()                              -- "connected" | "connecting" | nil, why
 *   local op = c:send(timeout, cmds)       -- cmds: { {"SET", "k", "v"}, ... }; a
 *                                          -- secret handle as an argument is sent as its value
 *   c:await(op)                            -- waits: every reply, the timeout, or the end of
 *                                          -- the connection
 *   local replies, err = c:collect(op)     -- the replies (in order), or nil and why
 *   c:close()
 *
 * hiredis 0.14 has no async timeouts (TOOLCHAIN.md): each connect and each
 * send has its own ev_timer; a send that times out fails its task with
 * `timeout` and leaves the others alone (its replies are dropped when they
 * come, or when the connection ends). No Lua runs in hiredis's callbacks:
 * replies are copied into C, and the task converts them (collect).
 *
 * The adapter between hiredis and libev is weft's own (not
 * adapters/libev.h): its watchers are unreferenced, so an idle connection
 * keeps nothing alive (a script that ends is not held by the limiter's
 * Redis connection); what waits on Redis is held by its task's timer.
 */
#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "loop.h"
#include "luax.h"
#include "secrets.h"
#include "task.h"

#define CONN_MT "weft.redis"
#define MAX_COMMANDS 100000
#define MAX_ARGS 1000000

/* A reply, copied out of hiredis (which frees its own after the callback). */
struct rnode {
    int type;
    long long integer;
    char *str;
    size_t len;
    size_t n;
    struct rnode *el;
};

struct conn;

/* One send: its commands' replies, its timer, its task. Freed when both the
 * task side (collected or abandoned) and every reply callback are done. */
struct op {
    struct weft_wait wait;
    struct weft_task *task;    /* NULL once the task side is done */
    struct ev_loop *ev;
    ev_timer timer;
    int n, done;               /* commands sent, replies in */
    int waiting;               /* the task is suspended on it */
    int timed_out, lost;       /* the timer fired; the connection ended first */
    int refs;                  /* reply callbacks to come + the task side */
    struct rnode *replies;
};

struct conn {
    redisAsyncContext *ac;     /* NULL once disconnected (hiredis freed it) */
    struct ev_loop *ev;
    ev_io rev, wev;
    int reading, writing;
    int connected, closed;
    char why[256];             /* the reason it is not connected */
    /* connecting */
    struct weft_wait wait;
    struct weft_task *waiter;
    ev_timer timer;
};

/* ------------------------------------------------------------ adapter */

static void io_cb(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    struct conn *c = w->data;
    if (!c->ac) return;
    if (revents & EV_READ) redisAsyncHandleRead(c->ac);
    if (c->ac && (revents & EV_WRITE)) redisAsyncHandleWrite(c->ac);
}

/* Unreferenced watchers (see the top): ev_unref after a start, ev_ref
 * before a stop, kept balanced. */
static void io_on(struct conn *c, ev_io *w, int *flag) {
    if (*flag) return;
    *flag = 1;
    ev_io_start(c->ev, w);
    ev_unref(c->ev);
}
static void io_off(struct conn *c, ev_io *w, int *flag) {
    if (!*flag) return;
    *flag = 0;
    ev_ref(c->ev);
    ev_io_stop(c->ev, w);
}
static void add_read(void *p) { struct conn *c = p; io_on(c, &c->rev, &c->reading); }
static void del_read(void *p) { struct conn *c = p; io_off(c, &c->rev, &c->reading); }
static void add_write(void *p) { struct conn *c = p; io_on(c, &c->wev, &c->writing); }
static void del_write(void *p) { struct conn *c = p; io_off(c, &c->wev, &c->writing); }
static void cleanup(void *p) {
    struct conn *c = p;
    io_off(c, &c->rev, &c->reading);
    io_off(c, &c->wev, &c->writing);
}

/* ------------------------------------------------------------ replies */

static void rnode_free(struct rnode *r) {
    if (!r) return;
    free(r->str);
    for (size_t i = 0; i < r->n; i++) rnode_free(&r->el[i]);
    free(r->el);
    r->str = NULL;
    r->el = NULL;
    r->n = 0;
}

/* Copy `src` into `dst`; -1 when out of memory (dst then holds what was copied). */
static int rnode_copy(struct rnode *dst, const redisReply *src) {
    memset(dst, 0, sizeof *dst);
    dst->type = src->type;
    dst->integer = src->integer;
    if (src->str) {
        dst->str = malloc(src->len + 1);
        if (!dst->str) return -1;
        memcpy(dst->str, src->str, src->len);
        dst->str[src->len] = '\0';
        dst->len = src->len;
    }
    if (src->type == REDIS_REPLY_ARRAY && src->elements) {
        dst->el = calloc(src->elements, sizeof *dst->el);
        if (!dst->el) return -1;
        dst->n = src->elements;
        for (size_t i = 0; i < src->elements; i++)
            if (rnode_copy(&dst->el[i], src->element[i]) != 0) return -1;
    }
    return 0;
}

/* Push a reply: bulk and status strings as strings, integers as numbers,
 * nil as nil (json.null inside an array, so it keeps its length: upvalue
 * 1), arrays as lists; an error reply as an error value (kind auth for a
 * refused password, invalid_request otherwise, reason "redis"). */
static void push_reply(lua_State *L, const struct rnode *r, int nested) {
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(L, r->str ? r->str : "", r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushnumber(L, (lua_Number)r->integer); break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->n, 0);
        for (size_t i = 0; i < r->n; i++) {
            push_reply(L, &r->el[i], 1);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR: {
        const char *s = r->str ? r->str : "ERR";
        int auth = strncmp(s, "NOAUTH", 6) == 0 || strncmp(s, "WRONGPASS", 9) == 0 ||
                   strstr(s, "invalid password") != NULL || strstr(s, "without any password configured");
        weft_push_error(L, auth ? "auth" : "invalid_request", "redis: %s", s);
        lua_pushliteral(L, "redis");
        lua_setfield(L, -2, "reason");
        break;
    }
    default:
        if (nested) lua_pushvalue(L, lua_upvalueindex(1));
        else lua_pushnil(L);
    }
}

/* ------------------------------------------------------------ ops */

static void op_release(struct op *o) {
    if (--o->refs > 0) return;
    for (int i = 0; i < o->n; i++) rnode_free(&o->replies[i]);
    free(o->replies);
    free(o);
}

static void op_wake(struct op *o) {
    ev_timer_stop(o->ev, &o->timer);
    if (o->task && o->waiting) {
        o->waiting = 0;
        weft_task_wake(o->task, 0);
    }
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata) {
    (void)ac;
    struct op *o = privdata;
    int i = o->done++;
    if (!r) o->lost = 1;
    else if (o->task && rnode_copy(&o->replies[i], r) != 0) o->lost = 1;
    if (o->done == o->n || o->lost) op_wake(o);
    op_release(o);
}

static void op_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev;
    (void)revents;
    struct op *o = w->data;
    o->timed_out = 1;
    op_wake(o);
}

static void op_cancel(struct weft_wait *w) {
    struct op *o = (struct op *)w;
    ev_timer_stop(o->ev, &o->timer);
    o->waiting = 0;
    o->task = NULL;
    op_release(o);
}

/* ------------------------------------------------------------ connection */

static struct conn *check(lua_State *L) { return luaL_checkudata(L, 1, CONN_MT); }

static void connect_done(struct conn *c) {
    ev_timer_stop(c->ev, &c->timer);
    struct weft_task *t = c->waiter;
    if (t) {
        c->waiter = NULL;
        weft_task_wake(t, 0);
    }
}

static void on_connect(const redisAsyncContext *ac, int status) {
    struct conn *c = ac->data;
    if (status == REDIS_OK) {
        c->connected = 1;
    } else {
        snprintf(c->why, sizeof c->why, "%s", ac->errstr[0] ? ac->errstr : "cannot connect");
        c->ac = NULL; /* hiredis frees a context that failed to connect */
    }
    connect_done(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    struct conn *c = ac->data;
    if (status != REDIS_OK && !c->closed) snprintf(c->why, sizeof c->why, "%s", ac->errstr[0] ? ac->errstr : "connection lost");
    else if (!c->why[0]) snprintf(c->why, sizeof c->why, "closed");
    c->connected = 0;
    c->ac = NULL; /* hiredis frees it after this returns */
    connect_done(c);
}

static void connect_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev;
    (void)revents;
    struct conn *c = w->data;
    snprintf(c->why, sizeof c->why, "connect timeout");
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->closed = 1;
        redisAsyncFree(ac); /* calls on_disconnect: c->ac = NULL */
        c->ac = NULL;
    }
    connect_done(c);
}

static void connect_cancel(struct weft_wait *w) {
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, wait));
    ev_timer_stop(c->ev, &c->timer);
    c->waiter = NULL;
}

static int open_ctx(lua_State *L, redisAsyncContext *ac) {
    struct weft_loop *loop = weft_loop_get(L);
    struct conn *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    c->ev = loop->ev;
    if (!ac) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return 1;
    }
    if (ac->err) {
        snprintf(c->why, sizeof c->why, "%s", ac->errstr);
        redisAsyncFree(ac);
        return 1;
    }
    c->ac = ac;
    ac->data = c;
    ev_io_init(&c->rev, io_cb, ac->c.fd, EV_READ);
    ev_io_init(&c->wev, io_cb, ac->c.fd, EV_WRITE);
    c->rev.data = c->wev.data = c;
    ac->ev.data = c;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ev_timer_init(&c->timer, connect_timer_cb, 0., 0.);
    c->timer.data = c;
    return 1;
}

/* _redis.open(host, port) -> conn (connecting) */
static int l_open(lua_State *L) {
    const char *host = luaL_checkstring(L, 1);
    int port = (int)luaL_checkinteger(L, 2);
    if (port < 1 || port > 65535) return luaL_argerror(L, 2, "port must be 1..65535");
    return open_ctx(L, redisAsyncConnect(host, port));
}

/* _redis.open_unix(path) -> conn (connecting) */
static int l_open_unix(lua_State *L) {
    return open_ctx(L, redisAsyncConnectUnix(luaL_checkstring(L, 1)));
}

/* c:await_connect(timeout): waits until connected, refused or timed out. */
static int l_await_connect(lua_State *L) {
    struct conn *c = check(L);
    lua_Number timeout = luaL_checknumber(L, 2);
    if (!c->ac || c->connected) return 0;
    struct weft_task *t = weft_task_check_current(L, "weft.redis.connect");
    if (c->waiter) return luaL_error(L, "weft.redis: a connect is already being waited for");
    c->waiter = t;
    c->wait.cancel = connect_cancel;
    c->wait.what = "redis connect";
    ev_now_update(c->ev);
    ev_timer_set(&c->timer, timeout > 0 ? timeout : 0.001, 0.);
    ev_timer_start(c->ev, &c->timer);
    return weft_task_suspend(L, t, &c->wait);
}

/* c:state() -> "connected" | "connecting" | nil, why */
static int l_state(lua_State *L) {
    struct conn *c = check(L);
    if (c->ac && c->connected) {
        lua_pushliteral(L, "connected");
        return 1;
    }
    if (c->ac) {
        lua_pushliteral(L, "connecting");
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, c->why[0] ? c->why : "not connected");
    return 2;
}

/* c:send(timeout, cmds) -> op (lightuserdata), or nil, why */
static int l_send(lua_State *L) {
    struct conn *c = check(L);
    lua_Number timeout = luaL_checknumber(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    int n = (int)lua_objlen(L, 3);
    if (n < 1 || n > MAX_COMMANDS) return luaL_argerror(L, 3, "expected 1 to 100000 commands");
    if (!c->ac || !c->connected) {
        lua_pushnil(L);
        lua_pushstring(L, c->why[0] ? c->why : "not connected");
        return 2;
    }
    struct op *o = calloc(1, sizeof *o);
    if (!o || !(o->replies = calloc((size_t)n, sizeof *o->replies))) {
        free(o);
        return luaL_error(L, "weft.redis: out of memory");
    }
    o->ev = c->ev;
    o->refs = 1;
    ev_timer_init(&o->timer, op_timer_cb, timeout > 0 ? timeout : 0.001, 0.);
    o->timer.data = o;
    const char **argv = NULL;
    size_t *argl = NULL;
    int cap = 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        if (!lua_istable(L, -1)) {
            free(argv), free(argl);
            if (o->n == 0) op_release(o);
            else o->task = NULL, op_release(o);
            return luaL_error(L, "weft.redis: command %d is not a list of arguments", i);
        }
        int argc = (int)lua_objlen(L, -1);
        if (argc < 1 || argc > MAX_ARGS) {
            free(argv), free(argl);
            if (o->n == 0) op_release(o);
            else o->task = NULL, op_release(o);
            return luaL_error(L, "weft.redis: command %d has no arguments", i);
        }
        if (argc > cap) {
            const char **na = realloc(argv, (size_t)argc * sizeof *na);
            if (na) argv = na;
            size_t *nl = na ? realloc(argl, (size_t)argc * sizeof *nl) : NULL;
            if (!na || !nl) {
                free(argv), free(argl);
                o->task = NULL, op_release(o);
                return luaL_error(L, "weft.redis: out of memory");
            }
            argl = nl;
            cap = argc;
        }
        int top = lua_gettop(L);
        for (int a = 1; a <= argc; a++) {
            lua_rawgeti(L, top, a);
            int ty = lua_type(L, -1);
            if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
                argv[a - 1] = lua_tolstring(L, -1, &argl[a - 1]);
            } else if (ty == LUA_TUSERDATA) {
                struct weft_secret *s = weft_lua_check_secret(L, -1);
                if (!s->value) {
                    free(argv), free(argl);
                    o->task = NULL, op_release(o);
                    return luaL_error(L, "weft.redis: secret %s has no value loaded", s->name);
                }
                argv[a - 1] = s->value;
                argl[a - 1] = s->len;
            } else {
                free(argv), free(argl);
                o->task = NULL, op_release(o);
                return luaL_error(L, "weft.redis: command %d argument %d is a %s (strings, numbers or secrets)", i,
                                  a, lua_typename(L, ty));
            }
        }
        o->refs++;
        if (redisAsyncCommandArgv(c->ac, reply_cb, o, argc, argv, argl) != REDIS_OK) {
            o->refs--;
            o->lost = 1;
            lua_settop(L, top - 1);
            break;
        }
        o->n++;
        lua_settop(L, top - 1);
    }
    free(argv);
    free(argl);
    if (o->n == 0) { /* nothing went out */
        op_release(o);
        lua_pushnil(L);
        lua_pushstring(L, c->why[0] ? c->why : "the connection refused the command");
        return 2;
    }
    ev_now_update(c->ev);
    ev_timer_start(c->ev, &o->timer);
    o->task = weft_task_current(L);
    lua_pushlightuserdata(L, o);
    return 1;
}

/* c:await(op): waits until every reply is in, the timeout or the end. */
static int l_await(lua_State *L) {
    check(L);
    struct op *o = lua_touserdata(L, 2);
    if (!o) return luaL_argerror(L, 2, "expected an op from send");
    if (o->done == o->n || o->timed_out || o->lost) return 0;
    struct weft_task *t = weft_task_check_current(L, "weft.redis");
    o->task = t;
    o->waiting = 1;
    o->wait.cancel = op_cancel;
    o->wait.what = "redis";
    return weft_task_suspend(L, t, &o->wait);
}

/* c:collect(op) -> replies, or nil, kind, why. Frees the task's side. */
static int l_collect(lua_State *L) {
    check(L);
    struct op *o = lua_touserdata(L, 2);
    if (!o) return luaL_argerror(L, 2, "expected an op from send");
    int complete = o->done == o->n && !o->lost;
    ev_timer_stop(o->ev, &o->timer);
    o->task = NULL;
    if (!complete) {
        lua_pushnil(L);
        if (o->timed_out && !o->lost) {
            lua_pushliteral(L, "timeout");
            lua_pushfstring(L, "no reply within the command timeout (%d of %d replies in)", o->done, o->n);
        } else {
            lua_pushliteral(L, "transient");
            lua_pushliteral(L, "the connection ended before the replies");
        }
        op_release(o);
        return 3;
    }
    lua_createtable(L, o->n, 0);
    for (int i = 0; i < o->n; i++) {
        push_reply(L, &o->replies[i], 0);
        lua_rawseti(L, -2, i + 1);
    }
    op_release(o);
    return 1;
}

/* _redis.collector(null) -> collect(conn, op), `null` standing for a nil
 * inside an array reply (weft.json.null) */
static int l_collector(lua_State *L) {
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_collect, 1);
    return 1;
}

static int l_close(lua_State *L) {
    struct conn *c = check(L);
    c->closed = 1;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        redisAsyncFree(ac); /* pending replies end as lost; on_disconnect clears c->ac */
        c->ac = NULL;
    }
    c->connected = 0;
    if (!c->why[0]) snprintf(c->why, sizeof c->why, "closed");
    return 0;
}

static int l_gc(lua_State *L) {
    struct conn *c = check(L);
    if (c->waiter) connect_cancel(&c->wait);
    ev_timer_stop(c->ev, &c->timer);
    return l_close(L);
}

int luaopen_weft_redis(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"await_connect", l_await_connect}, {"state", l_state}, {"send", l_send},
        {"await", l_await}, {"close", l_close}, {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    weft_register_class(L, CONN_MT, methods, meta);
    /* collect needs json.null for nil inside arrays: given at open time */
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, l_open_unix);
    lua_setfield(L, -2, "open_unix");
    lua_pushcfunction(L, l_collector);
    lua_setfield(L, -2, "collector");
    return 1;
}
