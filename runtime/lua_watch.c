/* lua_watch.c -- weft._watch: file change notification (ev_stat) for Lua.
 *
 *   local w = _watch.new(path, interval)  -- interval: stat polling period
 *                                         -- when inotify is unavailable (0: libev's default)
 *   w:wait()                              -- suspends the task until the file changed
 *                                         -- (returns true at once when it already has)
 *   w:close()
 *
 * The watcher does not keep the loop alive (a script that is done exits
 * while its plugins are still watched). libev compares the whole stat
 * record, so a change is seen when a file is replaced (new inode: editors,
 * `mv`) or rewritten with another size or mtime second; a same-size
 * in-place rewrite within the same second can go unnoticed, which is why
 * weft.reload() exists.
 */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define WATCH_MT "weft.watch"

struct watch {
    ev_stat st;
    struct weft_wait wait;
    struct weft_loop *loop;
    struct weft_task *waiter; /* task parked in wait(), or NULL */
    int changed;              /* a change not yet reported */
    int active;
    char path[];              /* ev_stat keeps a pointer to it */
};

static void stat_cb(struct ev_loop *ev, ev_stat *st, int revents) {
    (void)ev;
    (void)revents;
    struct watch *w = (struct watch *)st;
    if (w->waiter) {
        struct weft_task *t = w->waiter;
        w->waiter = NULL;
        lua_pushboolean(t->co, 1);
        weft_task_wake(t, 1);
    } else {
        w->changed = 1;
    }
}

static void watch_cancel(struct weft_wait *wt) {
    struct watch *w = (struct watch *)((char *)wt - offsetof(struct watch, wait));
    w->waiter = NULL;
}

static void stop(struct watch *w) {
    if (!w->active) return;
    w->active = 0;
    ev_ref(w->loop->ev);
    ev_stat_stop(w->loop->ev, &w->st);
}

static int l_new(lua_State *L) {
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    lua_Number interval = luaL_optnumber(L, 2, 0);
    if (!(interval >= 0) || interval > 3600) return luaL_argerror(L, 2, "interval must be 0..3600 seconds");
    struct weft_loop *loop = weft_loop_get(L);
    if (!loop) return luaL_error(L, "weft._watch: no loop");
    struct watch *w = lua_newuserdata(L, sizeof *w + n + 1);
    memset(w, 0, sizeof *w);
    memcpy(w->path, path, n + 1);
    w->loop = loop;
    w->wait.cancel = watch_cancel;
    w->wait.what = "file change";
    luaL_getmetatable(L, WATCH_MT);
    lua_setmetatable(L, -2);
    ev_stat_init(&w->st, stat_cb, w->path, interval);
    ev_stat_start(loop->ev, &w->st);
    ev_unref(loop->ev);
    w->active = 1;
    return 1;
}

static int l_wait(lua_State *L) {
    struct watch *w = luaL_checkudata(L, 1, WATCH_MT);
    if (!w->active) return luaL_error(L, "watch:wait: the watcher is closed");
    if (w->waiter) return luaL_error(L, "watch:wait: another task is already waiting");
    if (w->changed) {
        w->changed = 0;
        lua_pushboolean(L, 1);
        return 1;
    }
    struct weft_task *t = weft_task_check_current(L, "watch:wait");
    w->waiter = t;
    return weft_task_suspend(L, t, &w->wait);
}

static int l_close(lua_State *L) {
    struct watch *w = luaL_checkudata(L, 1, WATCH_MT);
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
    struct watch *w = luaL_checkudata(L, 1, WATCH_MT);
    stop(w);
    return 0;
}

static int l_tostring(lua_State *L) {
    struct watch *w = luaL_checkudata(L, 1, WATCH_MT);
    lua_pushfstring(L, "weft.watch(%s)", w->path);
    return 1;
}

int luaopen_weft_watch(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"wait", l_wait}, {"close", l_close}, {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
    weft_register_class(L, WATCH_MT, methods, meta);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 1;
}
