/* loop.h -- the host: one libev loop, one lua_State, the run queue.
 *
 * A weft process owns exactly one struct weft_loop. It ties the libev loop
 * to the LuaJIT state, keeps the run queue of tasks that are ready to be
 * resumed (see task.h) and runs shutdown hooks registered by the modules
 * that hang resources on the loop (HTTP client, servers, ...).
 */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <ev.h>
#include <lua.h>

struct weft_task;
struct weft_budget;
struct weft_keeper;

typedef void (*weft_hook_fn)(void *ud);

struct weft_hook {
    weft_hook_fn fn;           /* called once with ud */
    void *ud;
    struct weft_hook *next;    /* singly linked, newest first */
};

struct weft_loop {
    struct ev_loop *ev;        /* the libev loop (not owned when borrowed) */
    lua_State *L;              /* main Lua state, owned */
    ev_prepare prepare;        /* drains the run queue before each poll */
    ev_idle idle;              /* active while the run queue is non-empty so
                                  the poll does not block */
    ev_signal sigint;          /* SIGINT: cancel everything, exit 130 */
    ev_signal sigterm;         /* SIGTERM: same, exit 143 */
    ev_check leash;            /* active from the first signal on: restarts
                                  the grace timer of signals.h after each
                                  poll (prepare stops it before the next) */
    struct weft_task *runq_head; /* tasks ready to resume, FIFO */
    struct weft_task *runq_tail;
    struct weft_task *tasks;   /* every live (not finished) task */
    struct weft_hook *close_hooks; /* run by weft_loop_free, newest first */
    struct weft_hook *interrupt_hooks; /* run on SIGINT/SIGTERM */
    int nrefs;                 /* registry refs held through weft_ref */
    int ntasks;                /* live tasks */
    int interrupted;           /* number of SIGINT/SIGTERM handled by the
                                  loop with a cancel-all */
    int interrupt_signum;      /* the first of them: exit status 128 + it */
    int (*on_sigint)(void *ud); /* when set, SIGINT goes here first (the
                                  REPL cancels the running line); returning
                                  1 means handled: no cancel-all */
    void *on_sigint_ud;
    int (*on_term)(void *ud, int signum); /* when set, the first SIGINT or
                                  SIGTERM goes here instead of the
                                  cancel-all (weft._signal "shutdown":
                                  weft serve drains); returning 1 means
                                  handled. The clean shutdown's leash holds
                                  and a second signal ends the process. */
    void *on_term_ud;
    int exit_requested;        /* weft.exit (os.exit in a script) asked the
                                  process to end (weft_loop_exit) */
    int exit_code;             /* the status the first request asked for */
    int exit_collect;          /* the task that called weft.exit was dropped:
                                  a full collection is due (weft_loop_drain) */
    weft_hook_fn on_main_done; /* when set, called once the main task has
                                  returned (not failed): linger.c's exit hint */
    void *on_main_done_ud;
    struct weft_keeper *keepers; /* what keeps a finished script running
                                  besides its tasks: open servers (linger.h) */
    ev_timer linger;           /* the exit hint's delay (linger.c) */
    int draining;              /* inside weft_loop_drain (no re-entry) */
    char *home;                /* directory holding lua/ and plugins/, owned */
    struct weft_budget *budget; /* wraps the state's allocator (budget.h); owned,
                                  freed after lua_close */
};

/* Create the host: a libev loop (the default loop when `ev` is NULL), a new
 * Lua state with the standard libraries, the weft C modules in
 * package.preload and package.path pointing at `home`/lua. `home` may be
 * NULL (then located from the executable, see weft_loop_find_home).
 * Returns NULL on allocation failure. The caller owns the result and frees
 * it with weft_loop_free. */
struct weft_loop *weft_loop_new(struct ev_loop *ev, const char *home);

/* Free the operations of tasks still waiting, run shutdown hooks, close the
 * Lua state (running __gc of everything) and free the loop. Does not
 * destroy the libev loop. Returns the number of registry refs taken with
 * weft_ref and never released (0 unless something leaks). */
int weft_loop_free(struct weft_loop *loop);

/* Run the libev loop until no watcher is active and the run queue is
 * empty. Returns 0. */
int weft_loop_run(struct weft_loop *loop);

/* Run one loop iteration (blocks when nothing is ready unless `nowait`).
 * Used by tests. Returns non-zero while watchers or ready tasks remain. */
int weft_loop_step(struct weft_loop *loop, int nowait);

/* Resume every ready task, in FIFO order, until the queue is empty.
 * Called from the prepare/idle watchers; safe to call from the main C
 * stack when not already draining. */
void weft_loop_drain(struct weft_loop *loop);

/* The loop owning a Lua state (stored in the registry). Never NULL inside
 * the host. */
struct weft_loop *weft_loop_get(lua_State *L);

/* Register `fn(ud)` to run when the loop is freed (newest first). Returns
 * 0, or -1 on allocation failure. */
int weft_loop_on_close(struct weft_loop *loop, weft_hook_fn fn, void *ud);

/* Register `fn(ud)` to run on SIGINT/SIGTERM, after every task has been
 * cancelled (servers close their listeners here). Returns 0 or -1. */
int weft_loop_on_interrupt(struct weft_loop *loop, weft_hook_fn fn, void *ud);

/* Remove a hook registered with weft_loop_on_close/on_interrupt (matching
 * fn and ud). Returns 0 when found, -1 otherwise. */
int weft_loop_remove_hook(struct weft_loop *loop, weft_hook_fn fn, void *ud);

/* Cancel every live task and run the interrupt hooks, as on SIGINT.
 *
 * Signals: weft_loop_new installs the handlers of signals.h, so SIGINT and
 * SIGTERM are honoured even while Lua code never yields. The first one,
 * once the loop gets control, cancels every task (the REPL may take
 * SIGINT instead, see on_sigint) and the process should exit with status
 * 128 + interrupt_signum. If the loop does not get control within the
 * grace period (half of it: interpreted Lua is stopped by a hook raising a
 * `cancelled` error), or a second signal arrives, the process exits at
 * once with that status. */
void weft_loop_interrupt(struct weft_loop *loop);

/* End the process cleanly with status `code` (weft.exit, os.exit in a
 * script): as on SIGINT, every task is cancelled and the interrupt hooks
 * run (servers close), so the loop ends once the cancelled tasks have
 * finished; the host then does what it does at the end of any script
 * (summary, shutdown hooks) and exits with exit_code. The first request's
 * code stands; a later one cancels again (tasks started since) and keeps
 * it. Safe from inside a running task. */
void weft_loop_exit(struct weft_loop *loop, int code);

/* Locate weft's data directory (holding lua/ and plugins/): $WEFT_HOME,
 * else the executable's directory when it has lua/weft/init.lua (build
 * tree), else <exe>/../share/weft (installed), else the compile-time
 * install path. Returns a malloc'd string owned by the caller. */
char *weft_loop_find_home(void);

#endif
