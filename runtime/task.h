/* task.h -- coroutine scheduler.
 *
 * Every script, server request and weft.spawn body runs in a task: a Lua
 * coroutine plus the C state needed to suspend and resume it. A task that
 * waits (sleep, HTTP, join, a queue) registers a struct weft_wait and
 * yields; the event source later pushes the results onto the task's
 * coroutine stack and calls weft_task_wake, which puts the task on the run
 * queue. weft_loop_drain resumes it: task.c holds the only lua_resume call
 * in weft, so no Lua code ever runs inside a libev, libcurl or http-parser
 * callback.
 *
 * Anchoring: while a task is alive (not finished) its coroutine and its
 * task userdata are held by registry refs (co_ref, self_ref), so the GC
 * cannot collect a suspended coroutine whose only pointer is in C.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <lua.h>

struct weft_loop;
struct weft_wait;

typedef void (*weft_cancel_fn)(struct weft_wait *w);

/* A pending operation of a suspended task. Embed it in the operation's own
 * struct. */
struct weft_wait {
    weft_cancel_fn cancel;     /* called when the task is cancelled while
                                  waiting: stop watchers, free the operation.
                                  Must not wake the task (the scheduler
                                  resumes it with a `cancelled` error; while
                                  the task's cancel_error_on_top is set, that
                                  error is on top of its co and cancel may add
                                  fields to it). */
    const char *what;          /* what is being waited for ("sleep", ...) */
    int (*push)(lua_State *L, struct weft_wait *w);
                               /* for weft_task_wake_push: pushes the
                                  operation's results onto L (in protected
                                  mode: it may raise) just before the task
                                  resumes with them, returns how many (the
                                  operation must live until then); NULL
                                  for sources that push before waking */
};

enum weft_task_state {
    WEFT_TASK_READY,           /* on the run queue */
    WEFT_TASK_RUNNING,         /* inside lua_resume */
    WEFT_TASK_WAITING,         /* suspended on a struct weft_wait */
    WEFT_TASK_DONE,            /* returned normally */
    WEFT_TASK_FAILED,          /* raised an error (cancellation included) */
};

struct weft_task {
    struct weft_loop *loop;
    lua_State *co;             /* the coroutine; valid while co_ref is held */
    int co_ref;                /* registry ref to the thread, LUA_NOREF when done */
    int self_ref;              /* registry ref to this userdata while alive */
    int result_ref;            /* table {n=, ...} of results, or the error value */
    int trace_ref;             /* traceback string of a failed task */
    enum weft_task_state state;
    int nresume;               /* values on co's stack for the next resume */
    int cancelled;             /* cancel requested: waits fail with `cancelled` */
    int cancel_error_on_top;   /* 1 while a wait's cancel runs with the task's
                                  `cancelled` error on top of co (it may add
                                  fields to it); 0 at shutdown */
    const char *cancel_reason; /* static text for the cancelled error, or NULL */
    int queued;                /* on the run queue (keeps self_ref held) */
    int started;               /* has been resumed at least once */
    int is_main;               /* the script's main task: its failure is
                                  reported by main.c, not logged here */
    int observed;              /* someone waited for the result */
    int spawned;               /* made by weft.spawn (_task.spawn), not by
                                  the host (the main script, a request) */
    int exiting;               /* called weft.exit: ends as cancelled at
                                  its yield, never resumed */
    struct weft_wait *wait;    /* pending operation while WAITING */
    struct weft_wait *pushing; /* woken by weft_task_wake_push: its push
                                  runs at the resume */
    struct weft_task *runq_next;          /* run queue link */
    struct weft_task *live_prev, *live_next; /* loop->tasks list */
    struct weft_join *joiners; /* tasks waiting for this one to finish */
    unsigned long id;          /* for logs and tostring */
};

/* Create a task running the function at stack index -(nargs+1) with the
 * nargs arguments above it, both popped. Pushes the task userdata. The
 * task is queued; it starts on the next drain. Raises a Lua error on
 * misuse (not a function). */
struct weft_task *weft_task_spawn(lua_State *L, int nargs);

/* The task whose coroutine is L, or NULL when L is the main thread or a
 * coroutine not created by weft (coroutine.create/wrap). */
struct weft_task *weft_task_current(lua_State *L);

/* Like weft_task_current but raises a clear Lua error naming `fname` when
 * L cannot wait (main thread, foreign coroutine). */
struct weft_task *weft_task_check_current(lua_State *L, const char *fname);

/* Suspend the current task on `w`: the C function calling this must
 * `return weft_task_suspend(L, t, w);`. When the task has already been
 * cancelled the operation is cancelled at once (w->cancel) and the task
 * resumes with (nil, cancelled-error). */
int weft_task_suspend(lua_State *L, struct weft_task *t, struct weft_wait *w);

/* Put a waiting task back on the run queue. The caller first pushes
 * `nvals` values onto t->co; they become the results of the C function
 * that suspended. Clears t->wait (the operation is over: its owner frees
 * it). Safe from any C callback: nothing runs until the next drain. */
void weft_task_wake(struct weft_task *t, int nvals);

/* Put a waiting task back on the run queue, its results to be pushed by
 * t->wait->push at the resume site rather than now: an event source whose
 * results are Lua values to build (a response table) makes them in the
 * scheduler, never in a libev or libcurl callback, and the task gets them
 * as the results of the function that suspended, in one resume. Safe from
 * any C callback. */
void weft_task_wake_push(struct weft_task *t);

/* Request cancellation: a waiting task has its operation cancelled and is
 * resumed with (nil, cancelled-error); later waits fail the same way. A
 * task that has not started yet finishes as cancelled without running.
 * Returns 1 when the task was alive, 0 when it had already finished. */
int weft_task_cancel(struct weft_task *t, const char *reason);

/* Resume a READY task (called by weft_loop_drain only). */
void weft_task_resume(struct weft_task *t);

/* 1 when a live task only waits for other tasks (task:wait, weft.all and
 * the like park the caller until a task wakes it): it does nothing of its
 * own that keeps the process running. */
int weft_task_waits_for_tasks(const struct weft_task *t);

/* Where a live task's code comes from, for messages (linger.c): "FILE:LINE"
 * of the first line of the outermost function on its stack that is Lua
 * code and not weft's own (weft_is_own_source) -- for
 * weft.spawn(function() ... end) the line of the spawn -- into buf (n
 * bytes, truncated); "" when there is none. Found when asked, from the
 * task's coroutine, so that spawning costs nothing for it; walks the
 * task's stack: for reports, not hot paths. */
void weft_task_site(struct weft_task *t, char *buf, size_t n);

/* Check that the value at `idx` is a task userdata; raises otherwise. */
struct weft_task *weft_task_check(lua_State *L, int idx);

/* The traceback of a failed script as a user reads it: the frames of
 * weft's own Lua library (files under `libdir`, such as HOME/lua/weft/)
 * and the C `error` frame dropped, and the "stack traceback:" header with
 * them when no frame is left. Returns a malloc'd string (the caller frees
 * it), or NULL when out of memory. */
char *weft_trace_for_user(const char *trace, size_t len, const char *libdir);


#endif
