/* loop.c -- the host: libev loop + LuaJIT state + run queue + hooks. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua-cjson.h> /* Debian's: luaopen_cjson alone, needs lua.h first */
#include <lualib.h>

#include "bindings.h"
#include "budget.h"
#include "log.h"
#include "luax.h"
#include "signals.h"
#include "scheduler.h"

static const char LOOP_KEY = 'L'; /* registry key: address of this byte */

/* C modules reachable with require, independent of package.cpath. */
static const luaL_Reg preloads[] = {
    {"weft._task", luaopen_weft_task},
    {"weft._error", luaopen_weft_error},
    {"weft._log", luaopen_weft_log},
    {"weft._http_client", luaopen_weft_http_client},
    {"weft._http_server", luaopen_weft_http_server},
    {"weft._limiter", luaopen_weft_limiter},
    {"weft._retry", luaopen_weft_retry},
    {"weft._breaker", luaopen_weft_breaker},
    {"weft._secrets", luaopen_weft_secrets},
    {"weft._signal", luaopen_weft_signal},
    {"weft._metrics", luaopen_weft_metrics},
    {"weft._sse", luaopen_weft_sse},
    {"weft._watch", luaopen_weft_watch},
    {"weft._json", luaopen_weft_json},
    {"weft._repl", luaopen_weft_repl},
    {"weft._budget", luaopen_weft_budget},
    {"weft._redis", luaopen_weft_redis},
    {"weft._digest", luaopen_weft_digest},
    {"cjson", luaopen_cjson},
    {NULL, NULL},
};

struct weft_loop *weft_loop_get(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&LOOP_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    struct weft_loop *loop = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return loop;
}

/* ------------------------------------------------------------ run queue */

static int collect(lua_State *L) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

void weft_loop_drain(struct weft_loop *loop) {
    if (loop->draining) return;
    loop->draining = 1;
    weft_sched_drain(loop);
    if (ev_is_active(&loop->idle)) ev_idle_stop(loop->ev, &loop->idle);
    loop->draining = 0;
    /* Here, with no task struct in hand: the collection may free finished
     * tasks' userdata. Protected: a finalizer may raise. */
    if (loop->exit_collect) {
        loop->exit_collect = 0;
        lua_pushcfunction(loop->L, collect);
        weft_pcall(loop->L, 0, 0, "the collection after weft.exit");
    }
}

static void prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents) {
    weft_loop_drain(w->data);
    /* The loop is about to wait: waiting is not stalling (signals.h). */
    weft_signals_idle();
}

static void idle_cb(struct ev_loop *ev, ev_idle *w, int revents) {
    weft_loop_drain(w->data);
}

/* ---------------------------------------------------------------- hooks */

static int add_hook(struct weft_hook **list, weft_hook_fn fn, void *ud) {
    struct weft_hook *h = malloc(sizeof *h);
    if (!h) return -1;
    h->fn = fn;
    h->ud = ud;
    h->next = *list;
    *list = h;
    return 0;
}

int weft_loop_on_close(struct weft_loop *loop, weft_hook_fn fn, void *ud) {
    return add_hook(&loop->close_hooks, fn, ud);
}

int weft_loop_on_interrupt(struct weft_loop *loop, weft_hook_fn fn, void *ud) {
    return add_hook(&loop->interrupt_hooks, fn, ud);
}

static int remove_from(struct weft_hook **pp, weft_hook_fn fn, void *ud) {
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->fn == fn && (*pp)->ud == ud) {
            struct weft_hook *h = *pp;
            *pp = h->next;
            free(h);
            return 0;
        }
    }
    return -1;
}

int weft_loop_remove_hook(struct weft_loop *loop, weft_hook_fn fn, void *ud) {
    int a = remove_from(&loop->close_hooks, fn, ud);
    int b = remove_from(&loop->interrupt_hooks, fn, ud);
    return (a == 0 || b == 0) ? 0 : -1;
}

/* Pop and run every hook of a list; a hook may register or remove others. */
static void run_hooks(struct weft_hook **list) {
    struct weft_hook *h;
    while ((h = *list) != NULL) {
        *list = h->next;
        weft_hook_fn fn = h->fn;
        void *ud = h->ud;
        free(h);
        fn(ud);
    }
}

/* -------------------------------------------------------------- signals */

/* SIGINT/SIGTERM reach signal_cb when the loop gets control; signals.c's
 * handler covers the time it does not (Lua that never yields). Half-way
 * through its grace period that handler calls stall_fn, which sets a Lua
 * hook: interpreted code then stops at its next instruction with a
 * `cancelled` error, its task fails and the loop gets control after all.
 * JIT-compiled loops never see a hook (TOOLCHAIN.md); for them the grace
 * exit remains. The hook is one-shot (like luajit.c's SIGINT handler) so
 * that the code handling the error runs normally, and it puts back the
 * hook it replaced (the plugin budget's count hook, lua_budget.c). A stall
 * that lands while lua_budget.c is itself switching hooks may leave the
 * wrong one of the two in place for that call; it only happens after the
 * loop has been stuck for half the grace period, and the grace exit still
 * follows if the loop does not get control. */

static _Atomic(lua_State *) stall_L; /* main state of the live loop, or NULL */
static lua_Hook stall_prev;          /* the hook stall_fn replaced */
static int stall_prev_mask, stall_prev_count;
static volatile sig_atomic_t stall_signum;
static int stall_fired;              /* stall_hook raised since the last signal_cb */

static void stall_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, stall_prev, stall_prev_mask, stall_prev_count);
    stall_fired = 1;
    weft_raise_error(L, "cancelled", "interrupted by %s: Lua code did not yield",
                     stall_signum == SIGINT ? "SIGINT" : stall_signum == 0 ? "weft.exit" : "SIGTERM");
}

/* Runs in the signal handler. lua_gethook* only read the global state;
 * lua_sethook stores the hook and switches the interpreter's dispatch
 * table, which is what LuaJIT's own standalone interpreter does from its
 * SIGINT handler. */
static void stall_fn(int signum) {
    lua_State *L = atomic_load(&stall_L);
    if (!L || lua_gethook(L) == stall_hook) return;
    stall_prev = lua_gethook(L);
    stall_prev_mask = lua_gethookmask(L);
    stall_prev_count = lua_gethookcount(L);
    stall_signum = signum;
    lua_sethook(L, stall_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* The loop has control again: a stall hook that has not fired yet is not
 * needed any more. */
static void stall_unhook(lua_State *L) {
    if (lua_gethook(L) == stall_hook) lua_sethook(L, stall_prev, stall_prev_mask, stall_prev_count);
}

/* Active from the first cancel-all signal on, at the highest priority so it
 * runs before any other callback of the iteration: Lua is about to run, the
 * grace timer starts again (prepare_cb stops it before the next wait). */
static void leash_cb(struct ev_loop *ev, ev_check *w, int revents) {
    weft_signals_busy();
}

/* Cancel every live task with `reason` (static text), then run the
 * interrupt hooks. */
static void cancel_all(struct weft_loop *loop, const char *reason) {
    weft_sched_cancel_all(loop, reason);
    run_hooks(&loop->interrupt_hooks);
}

void weft_loop_interrupt(struct weft_loop *loop) { cancel_all(loop, "interrupted"); }

void weft_loop_exit(struct weft_loop *loop, int code) {
    if (!loop->exit_requested) {
        loop->exit_requested = 1;
        loop->exit_code = code;
        /* a task that catches its cancellation and loops without waiting
         * would hold the process for ever: the signals' grace leash */
        if (!loop->interrupted) {
            weft_signals_exit_grace(code);
            if (!ev_is_active(&loop->leash)) {
                ev_check_start(loop->ev, &loop->leash);
                ev_unref(loop->ev); /* the leash keeps nothing alive */
            }
        }
    }
    cancel_all(loop, "the script called weft.exit");
}

static void signal_cb(struct ev_loop *ev, ev_signal *w, int revents) {
    struct weft_loop *loop = w->data;
    stall_unhook(loop->L);
    int fired = stall_fired;
    stall_fired = 0;
    /* With the REPL open, a stall hook that fired has already interrupted
     * the stuck line (the REPL printed it cancelled and shows a new prompt):
     * the SIGINT is spent. */
    if (w->signum == SIGINT && loop->on_sigint &&
        (fired || loop->on_sigint(loop->on_sigint_ud))) {
        weft_signals_ack(w->signum, 0); /* the REPL took it: the next one is a first again */
        return;
    }
    /* From here on the clean shutdown runs: Lua stays on the grace leash
     * and any further signal ends the process at once (signals.c). */
    weft_signals_ack(w->signum, 1);
    if (!ev_is_active(&loop->leash)) {
        ev_check_start(ev, &loop->leash);
        ev_unref(ev); /* the leash keeps nothing alive */
    }
    /* A task handles the shutdown itself (weft serve drains): no cancel-all. */
    if (loop->interrupted == 0 && loop->on_term && loop->on_term(loop->on_term_ud, w->signum)) {
        weft_log(WEFT_LOG_WARN, "%s: shutting down (again to force exit)",
                 w->signum == SIGINT ? "SIGINT" : "SIGTERM");
        loop->on_term = NULL; /* a second signal is signals.c's: exit at once */
        return;
    }
    loop->interrupted++;
    if (loop->interrupted == 1) {
        loop->interrupt_signum = w->signum;
        weft_log(WEFT_LOG_WARN, "%s: cancelling all tasks (again to force exit)",
                 w->signum == SIGINT ? "SIGINT" : "SIGTERM");
        weft_loop_interrupt(loop);
    } else {
        /* Only reached when signals.c's handler is not installed (it exits
         * on a second signal itself). */
        ev_break(ev, EVBREAK_ALL);
    }
}

/* ----------------------------------------------------------------- home */

static int has_file(const char *dir, const char *rel) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, rel) >= (int)sizeof path) return 0;
    return access(path, R_OK) == 0;
}

char *weft_loop_find_home(void) {
    const char *env = getenv("WEFT_HOME");
    if (env && *env) return strdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (has_file(exe, "lua/weft/init.lua")) return strdup(exe);
            char share[PATH_MAX];
            if (snprintf(share, sizeof share, "%s/../share/weft", exe) < (int)sizeof share &&
                has_file(share, "lua/weft/init.lua")) {
                char *real = realpath(share, NULL);
                return real ? real : strdup(share);
            }
        }
    }
    return strdup(WEFT_INSTALL_DATADIR);
}

/* ----------------------------------------------------------- lifecycle */

static void setup_package(lua_State *L, const char *home) {
    lua_getglobal(L, "package");                /* [package] */
    lua_getfield(L, -1, "preload");             /* [package, preload] */
    for (const luaL_Reg *r = preloads; r->name; r++) {
        if (!r->func) continue;
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 1);                              /* [package] */
    lua_getfield(L, -1, "path");                /* [package, path] */
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", home, home,
                    lua_tostring(L, -1));       /* [package, path, newpath] */
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);                              /* [package] */
    lua_pushstring(L, home);
    lua_setfield(L, -2, "weft_home");
    lua_pop(L, 1);                              /* [] */
}

/* The state's libraries, the preloads, and the two classes C code uses
 * before any require; protected (weft_loop_new), so running out of memory
 * here is an error returned, not a panic. [loop] */
static int open_state(lua_State *L) {
    struct weft_loop *loop = lua_touserdata(L, 1);
    lua_pushlightuserdata(L, (void *)&LOOP_KEY);
    lua_pushlightuserdata(L, loop);
    lua_rawset(L, LUA_REGISTRYINDEX);
    luaL_openlibs(L);
    setup_package(L, loop->home);
    /* The error metatable must exist before any C code pushes an error. */
    lua_pushcfunction(L, luaopen_weft_error);
    lua_call(L, 0, 0);
    lua_pushcfunction(L, luaopen_weft_task);
    lua_call(L, 0, 0);
    return 0;
}

struct weft_loop *weft_loop_new(struct ev_loop *ev, const char *home) {
    struct weft_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->ev = ev ? ev : ev_default_loop(EVFLAG_AUTO);
    if (!loop->ev) {
        free(loop);
        return NULL;
    }
    loop->home = home ? strdup(home) : weft_loop_find_home();
    loop->L = luaL_newstate();
    if (loop->L) loop->budget = weft_budget_install(loop->L);
    if (!loop->L || !loop->home || !loop->budget) {
        if (loop->L) lua_close(loop->L);
        weft_budget_free(loop->budget);
        free(loop->home);
        free(loop);
        return NULL;
    }
    lua_State *L = loop->L;
    lua_pushcfunction(L, open_state);
    lua_pushlightuserdata(L, loop);
    if (weft_pcall(L, 1, 0, "opening the Lua state") != 0) {
        lua_close(L);
        weft_budget_free(loop->budget);
        free(loop->home);
        free(loop);
        return NULL;
    }

    ev_prepare_init(&loop->prepare, prepare_cb);
    loop->prepare.data = loop;
    ev_prepare_start(loop->ev, &loop->prepare);
    ev_unref(loop->ev); /* the prepare watcher alone keeps nothing alive */
    ev_idle_init(&loop->idle, idle_cb);
    loop->idle.data = loop;

    ev_signal_init(&loop->sigint, signal_cb, SIGINT);
    loop->sigint.data = loop;
    ev_signal_start(loop->ev, &loop->sigint);
    ev_unref(loop->ev);
    ev_signal_init(&loop->sigterm, signal_cb, SIGTERM);
    loop->sigterm.data = loop;
    ev_signal_start(loop->ev, &loop->sigterm);
    ev_unref(loop->ev);
    /* ev_signal_start has just installed libev's own handler: put the one of
     * signals.h back in front (it forwards to libev with ev_feed_signal). */
    if (weft_signals_install() != 0)
        weft_log(WEFT_LOG_WARN, "cannot install the signal handlers (%s): Lua code that never "
                 "yields will not be interruptible", strerror(errno));
    atomic_store(&stall_L, L);
    weft_signals_on_stall(stall_fn);
    ev_check_init(&loop->leash, leash_cb);
    ev_set_priority(&loop->leash, EV_MAXPRI);
    loop->leash.data = loop;
    return loop;
}

int weft_loop_run(struct weft_loop *loop) {
    weft_loop_drain(loop);
    ev_run(loop->ev, 0);
    /* The loop is over (possibly right after a leash_cb): what follows is
     * the host's own teardown, not policed by the grace timer. */
    weft_signals_idle();
    return 0;
}

int weft_loop_step(struct weft_loop *loop, int nowait) {
    weft_loop_drain(loop);
    int alive = ev_run(loop->ev, nowait ? EVRUN_NOWAIT : EVRUN_ONCE);
    return alive || weft_sched_ready(loop);
}

int weft_loop_free(struct weft_loop *loop) {
    if (!loop) return 0;
    lua_State *L = loop->L;

    /* 1. Free the operations of tasks still waiting (without resuming), and
     *    drop every task anchor. */
    weft_sched_free(loop);

    /* 2. Modules release their resources (servers, HTTP client, ...). */
    run_hooks(&loop->interrupt_hooks);
    run_hooks(&loop->close_hooks);

    /* 3. Close Lua: __gc of every remaining object runs here. */
    if (ev_is_active(&loop->idle)) ev_idle_stop(loop->ev, &loop->idle);
    ev_ref(loop->ev);
    ev_prepare_stop(loop->ev, &loop->prepare);
    ev_ref(loop->ev);
    ev_signal_stop(loop->ev, &loop->sigint);
    ev_ref(loop->ev);
    ev_signal_stop(loop->ev, &loop->sigterm); /* SIGINT/SIGTERM: default action again */
    if (ev_is_active(&loop->leash)) {
        ev_ref(loop->ev);
        ev_check_stop(loop->ev, &loop->leash);
    }
    /* No stall hook may be set on a state being closed. */
    lua_State *expected = L;
    if (atomic_compare_exchange_strong(&stall_L, &expected, NULL)) weft_signals_reset();
    lua_close(L);
    weft_budget_free(loop->budget); /* the allocator's state: after lua_close */
    int leaked = loop->nrefs;
    free(loop->home);
    free(loop);
    return leaked;
}
