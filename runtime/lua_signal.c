/* lua_signal.c -- weft._signal: signals a Lua task handles itself.
 *
 *   local s = _signal.new("hup")       -- SIGHUP: an ev_signal of its own
 *   local s = _signal.new("shutdown")  -- the first SIGINT or SIGTERM
 *   s:wait()   -- suspends the task until the signal came: "SIGHUP",
 *              -- "SIGINT" or "SIGTERM" (at once when one came meanwhile);
 *              -- false once the watcher is closed
 *   s:close()
 *
 * "shutdown" replaces the loop's cancel-all for the first SIGINT/SIGTERM
 * (loop->on_term): the task that waits decides how to end (weft serve
 * drains its requests). The clean shutdown's rules still hold (signals.h):
 * from that signal on, Lua is on the grace leash and a second SIGINT or
 * SIGTERM ends the process at once. One "shutdown" watcher at a time.
 * Neither watcher keeps the loop alive. Signals that come while nobody
 * waits are remembered (the last one), not counted.
 */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "bindings.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define SIGNAL_MT "weft.signal"

struct sigwatch {
    ev_signal sig; /* SIGHUP only */
    struct weft_wait wait;
    struct weft_loop *loop;
    struct weft_task *waiter; /* task parked in wait(), or NULL */
    int pending;              /* signal number not yet reported, or 0 */
    int shutdown;             /* the loop's on_term watcher */
    int active;
};

static const char *signame(int signum) {
    return signum == SIGHUP ? "SIGHUP" : signum == SIGINT ? "SIGINT" : "SIGTERM";
}

static void deliver(struct sigwatch *w, int signum) {
    if (w->waiter) {
        struct weft_task *t = w->waiter;
        w->waiter = NULL;
        lua_pushstring(t->co, signame(signum));
        weft_task_wake(t, 1);
    } else {
        w->pending = signum;
    }
}

static void hup_cb(struct ev_loop *ev, ev_signal *s, int revents) {
    (void)ev;
    (void)revents;
    deliver((struct sigwatch *)s, s->signum);
}

static int on_term(void *ud, int signum) {
    deliver(ud, signum);
    return 1;
}

static void sig_cancel(struct weft_wait *wt) {
    struct sigwatch *w = (struct sigwatch *)((char *)wt - offsetof(struct sigwatch, wait));
    w->waiter = NULL;
}

static void stop(struct sigwatch *w) {
    if (!w->active) return;
    w->active = 0;
    if (w->shutdown) {
        if (w->loop->on_term_ud == w) {
            w->loop->on_term = NULL;
            w->loop->on_term_ud = NULL;
        }
    } else {
        ev_ref(w->loop->ev);
        ev_signal_stop(w->loop->ev, &w->sig);
    }
}

static int l_new(lua_State *L) {
    const char *what = luaL_checkstring(L, 1);
    int shutdown = strcmp(what, "shutdown") == 0;
    if (!shutdown && strcmp(what, "hup") != 0)
        return luaL_argerror(L, 1, "expected \"hup\" or \"shutdown\"");
    struct weft_loop *loop = weft_loop_get(L);
    if (!loop) return luaL_error(L, "weft._signal: no loop");
    if (shutdown && loop->on_term)
        return luaL_error(L, "weft._signal: shutdown is already watched");
    struct sigwatch *w = lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->shutdown = shutdown;
    w->wait.cancel = sig_cancel;
    w->wait.what = shutdown ? "SIGINT or SIGTERM" : "SIGHUP";
    luaL_getmetatable(L, SIGNAL_MT);
    lua_setmetatable(L, -2);
    if (shutdown) {
        loop->on_term = on_term;
        loop->on_term_ud = w;
    } else {
        ev_signal_init(&w->sig, hup_cb, SIGHUP);
        ev_signal_start(loop->ev, &w->sig);
        ev_unref(loop->ev);
    }
    w->active = 1;
    return 1;
}

static int l_wait(lua_State *L) {
    struct sigwatch *w = luaL_checkudata(L, 1, SIGNAL_MT);
    if (!w->active) return luaL_error(L, "signal:wait: the watcher is closed");
    if (w->waiter) return luaL_error(L, "signal:wait: another task is already waiting");
    if (w->pending) {
        lua_pushstring(L, signame(w->pending));
        w->pending = 0;
        return 1;
    }
    struct weft_task *t = weft_task_check_current(L, "signal:wait");
    w->waiter = t;
    return weft_task_suspend(L, t, &w->wait);
}

static int l_close(lua_State *L) {
    struct sigwatch *w = luaL_checkudata(L, 1, SIGNAL_MT);
    stop(w);
    if (w->waiter) {
        struct weft_task *t = w->waiter;
        w->waiter = NULL;
        lua_pushboolean(t->co, 0);
        weft_task_wake(t, 1);
    }
    return 0;
}

static int l_gc(lua_State *L) {
    stop(luaL_checkudata(L, 1, SIGNAL_MT));
    return 0;
}

static int l_tostring(lua_State *L) {
    struct sigwatch *w = luaL_checkudata(L, 1, SIGNAL_MT);
    lua_pushfstring(L, "weft.signal(%s)", w->shutdown ? "shutdown" : "hup");
    return 1;
}

int luaopen_weft_signal(lua_State *L) {
    static const luaL_Reg methods[] = {{"wait", l_wait}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
    weft_register_class(L, SIGNAL_MT, methods, meta);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 1;
}
