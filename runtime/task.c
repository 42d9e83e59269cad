/* task.c -- coroutine scheduler: spawn, suspend/wake, join, cancel, sleep.
 *
 * weft_task_resume below is the only lua_resume in weft. Event sources never
 * resume a coroutine themselves: they push results onto the suspended
 * coroutine's stack and call weft_task_wake, which queues the task; the
 * loop's prepare/idle watchers drain the queue from a clean C stack.
 */
#include "task.h"
#include "bindings.h"
#include "scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "luax.h"

static const char TASK_MT[] = "weft.task";

static unsigned long next_task_id = 1;
static struct weft_task *running; /* task inside lua_resume, or NULL */

/* A task waiting for another task to finish. Owned by the waiter's wait
 * slot: freed on wake (target finished, timeout) or on cancel. */
struct weft_join {
    struct weft_wait wait;     /* must be first */
    struct weft_task *waiter;  /* suspended task */
    struct weft_task *target;  /* task being waited for */
    struct weft_join *next;    /* target->joiners list */
    ev_timer timer;            /* optional timeout */
    double timeout;            /* seconds, for the message */
    int has_timer;
};

/* A sleeping task. */
struct weft_sleep {
    struct weft_wait wait;     /* must be first */
    struct weft_task *task;
    ev_timer timer;
};

/* A task parked by _task.suspend() until _task.wake(). */
struct weft_park {
    struct weft_wait wait;     /* must be first */
    struct weft_task *task;
};

/* ------------------------------------------------------------ run queue */

void weft_sched_drain(struct weft_loop *loop) {
    struct weft_task *t;
    while ((t = loop->runq_head) != NULL) {
        loop->runq_head = t->runq_next;
        if (!loop->runq_head) loop->runq_tail = NULL;
        t->runq_next = NULL;
        t->queued = 0;
        if (t->state == WEFT_TASK_READY) weft_task_resume(t);
        /* A task that finished while queued (cancelled before it ran) or
         * just now drops its anchor here. */
        if (t->state >= WEFT_TASK_DONE && !t->queued && t->self_ref != LUA_NOREF) {
            int ref = t->self_ref;
            t->self_ref = LUA_NOREF;
            weft_unref(loop->L, ref);
        }
    }
}

int weft_sched_ready(const struct weft_loop *loop) { return loop->runq_head != NULL; }

void weft_sched_cancel_all(struct weft_loop *loop, const char *reason) {
    /* Cancel from a snapshot of ids: cancelling may finish tasks (unlinking
     * them) but never frees another live task's struct synchronously. */
    struct weft_task *t = loop->tasks;
    while (t) {
        struct weft_task *next = t->live_next;
        weft_task_cancel(t, reason);
        t = next;
    }
}

void weft_sched_free(struct weft_loop *loop) {
    lua_State *L = loop->L;
    struct weft_task *t;
    while ((t = loop->tasks) != NULL) {
        if (t->state == WEFT_TASK_WAITING && t->wait) {
            struct weft_wait *w = t->wait;
            t->wait = NULL;
            w->cancel(w);
        }
        loop->tasks = t->live_next;
        t->live_prev = t->live_next = NULL;
        loop->ntasks--;
        t->state = WEFT_TASK_FAILED;
        weft_unref(L, t->co_ref);
        t->co_ref = LUA_NOREF;
        t->co = NULL;
        if (!t->queued) {
            weft_unref(L, t->self_ref);
            t->self_ref = LUA_NOREF;
        }
    }
    while ((t = loop->runq_head) != NULL) {
        loop->runq_head = t->runq_next;
        t->queued = 0;
        weft_unref(L, t->self_ref);
        t->self_ref = LUA_NOREF;
    }
    loop->runq_tail = NULL;
}

static void enqueue(struct weft_task *t) {
    struct weft_loop *loop = t->loop;
    t->state = WEFT_TASK_READY;
    if (t->queued) return;
    t->queued = 1;
    t->runq_next = NULL;
    if (loop->runq_tail) loop->runq_tail->runq_next = t;
    else loop->runq_head = t;
    loop->runq_tail = t;
    if (!ev_is_active(&loop->idle)) ev_idle_start(loop->ev, &loop->idle);
}

static void live_unlink(struct weft_task *t) {
    struct weft_loop *loop = t->loop;
    if (t->live_prev) t->live_prev->live_next = t->live_next;
    else if (loop->tasks == t) loop->tasks = t->live_next;
    if (t->live_next) t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    loop->ntasks--;
}

/* Drop the self anchor once the task is finished and off the run queue;
 * from then on the userdata lives as long as Lua references it. */
static void release_if_idle(struct weft_task *t) {
    if (t->state >= WEFT_TASK_DONE && !t->queued && t->self_ref != LUA_NOREF) {
        int ref = t->self_ref;
        t->self_ref = LUA_NOREF;
        weft_unref(t->loop->L, ref);
    }
}

/* ---------------------------------------------------------------- spawn */

struct weft_task *weft_task_spawn(lua_State *L, int nargs) {
    struct weft_loop *loop = weft_loop_get(L);
    luaL_checktype(L, -(nargs + 1), LUA_TFUNCTION);
    luaL_checkstack(L, 4, "weft.spawn");

    lua_State *co = lua_newthread(L);      /* [fn args.. co] */
    lua_pushvalue(L, -1);
    int co_ref = weft_ref(L);              /* [fn args.. co] */
    lua_insert(L, -(nargs + 2));           /* [co fn args..] */
    lua_xmove(L, co, nargs + 1);           /* [co]; co: [fn args..] */
    lua_pop(L, 1);                         /* [] */

    struct weft_task *t = lua_newuserdata(L, sizeof *t); /* [task] */
    memset(t, 0, sizeof *t);
    luaL_getmetatable(L, TASK_MT);
    lua_setmetatable(L, -2);
    t->loop = loop;
    t->co = co;
    t->co_ref = co_ref;
    t->result_ref = LUA_NOREF;
    t->trace_ref = LUA_NOREF;
    t->nresume = nargs;
    t->id = next_task_id++;
    lua_pushvalue(L, -1);
    t->self_ref = weft_ref(L);             /* [task] */

    t->live_next = loop->tasks;
    if (loop->tasks) loop->tasks->live_prev = t;
    loop->tasks = t;
    loop->ntasks++;
    enqueue(t);
    return t;
}

struct weft_task *weft_task_current(lua_State *L) {
    if (running && running->co == L) return running;
    return NULL;
}

struct weft_task *weft_task_check_current(lua_State *L, const char *fname) {
    struct weft_task *t = weft_task_current(L);
    if (!t) {
        if (lua_pushthread(L)) {
            lua_pop(L, 1);
            luaL_error(L, "%s: must be called from a weft task (weft run, weft.spawn), "
                          "not from the main Lua thread", fname);
        }
        lua_pop(L, 1);
        luaL_error(L, "%s: cannot wait inside a coroutine created with coroutine.create/wrap; "
                      "use weft.spawn", fname);
    }
    return t;
}

struct weft_task *weft_task_check(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, TASK_MT);
}

/* --------------------------------------------------------- suspend/wake */

static void push_cancelled(lua_State *L, struct weft_task *t) {
    weft_push_error(L, "cancelled", "%s", t->cancel_reason ? t->cancel_reason : "task cancelled");
}

int weft_task_suspend(lua_State *L, struct weft_task *t, struct weft_wait *w) {
    if (t->cancelled) {
        lua_pushnil(L);
        push_cancelled(L, t);
        t->cancel_error_on_top = 1;
        w->cancel(w);
        t->cancel_error_on_top = 0;
        return 2;
    }
    t->wait = w;
    t->state = WEFT_TASK_WAITING;
    return lua_yield(L, 0);
}

void weft_task_wake(struct weft_task *t, int nvals) {
    if (t->state != WEFT_TASK_WAITING) {
        /* Programming error in an event source; drop the values rather than
         * corrupting the coroutine. */
        weft_log(WEFT_LOG_ERROR, "internal: wake of task %lu that is not waiting", t->id);
        lua_pop(t->co, nvals);
        return;
    }
    t->wait = NULL;
    t->nresume = nvals;
    enqueue(t);
}

void weft_task_wake_push(struct weft_task *t) {
    if (t->state != WEFT_TASK_WAITING || !t->wait || !t->wait->push) {
        weft_log(WEFT_LOG_ERROR, "internal: push-wake of task %lu that is not waiting on a pushing source", t->id);
        return;
    }
    t->pushing = t->wait;
    t->wait = NULL;
    t->nresume = 0;
    enqueue(t);
}

/* ----------------------------------------------------------- finishing */

static void finish(struct weft_task *t, int ok);

static void wake_joiners(struct weft_task *t) {
    lua_State *L = t->loop->L;
    struct weft_join *j = t->joiners;
    t->joiners = NULL;
    while (j) {
        struct weft_join *next = j->next;
        lua_State *co = j->waiter->co;
        if (j->has_timer) ev_timer_stop(t->loop->ev, &j->timer);
        int n;
        if (t->state == WEFT_TASK_DONE) {
            /* co: [true, results...] */
            weft_getref(L, t->result_ref);          /* L: [res] */
            lua_getfield(L, -1, "n");
            int nres = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            luaL_checkstack(co, nres + 2, "join results");
            lua_pushboolean(co, 1);
            for (int i = 1; i <= nres; i++) {
                lua_rawgeti(L, -1, i);
                lua_xmove(L, co, 1);
            }
            lua_pop(L, 1);
            n = nres + 1;
        } else {
            lua_pushboolean(co, 0);
            weft_getref(L, t->result_ref);
            lua_xmove(L, co, 1);
            n = 2;
        }
        t->observed = 1;
        weft_task_wake(j->waiter, n);
        free(j);
        j = next;
    }
}

/* Record the outcome. ok: results are co's whole stack; !ok: the error
 * value is on top of co's stack (co is dead but its frames are intact, so
 * the traceback is taken from it). */
static void finish(struct weft_task *t, int ok) {
    struct weft_loop *loop = t->loop;
    lua_State *L = loop->L;
    lua_State *co = t->co;

    if (ok) {
        int n = lua_gettop(co);
        lua_createtable(L, n, 1);                   /* [res] */
        for (int i = n; i >= 1; i--) {
            lua_xmove(co, L, 1);                    /* [res, v] */
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "n");
        t->result_ref = weft_ref(L);
        t->state = WEFT_TASK_DONE;
    } else {
        lua_pushvalue(co, -1);
        lua_xmove(co, L, 1);                        /* [err] */
        const char *text = weft_error_text(L, -1);  /* [err, text] */
        luaL_traceback(L, co, text, 0);             /* [err, text, tb] */
        lua_remove(L, -2);                          /* [err, tb] */
        if (weft_is_error(L, -2)) {
            lua_getfield(L, -2, "traceback");
            int has = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!has) {
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "traceback");
            }
        }
        t->trace_ref = weft_ref(L);                 /* [err] */
        t->result_ref = weft_ref(L);                /* [] */
        t->state = WEFT_TASK_FAILED;
    }

    int co_ref = t->co_ref;
    t->co_ref = LUA_NOREF;
    t->co = NULL;
    weft_unref(L, co_ref);
    live_unlink(t);

    if (t->joiners) wake_joiners(t);
    release_if_idle(t);
    /* A script whose main task failed is over: cancel what it started and
     * close its servers (interrupt hooks), so the process ends and reports
     * the error instead of serving on after it. */
    if (t->is_main && !ok) weft_loop_interrupt(loop);
    if (t->is_main && ok && loop->on_main_done) loop->on_main_done(loop->on_main_done_ud);
}

/* --------------------------------------------------------------- resume */

/* The results of a weft_task_wake_push, made here: in protected mode on
 * the main state (idle while the loop drains; the suspended coroutine can
 * run nothing), then moved onto the task's stack. A push that fails (out
 * of memory) resumes the task with (nil, that error). */
struct push_call {
    struct weft_wait *w;
};

static int push_protected(lua_State *L) {
    struct push_call *pc = lua_touserdata(L, 1);
    lua_pop(L, 1);
    return pc->w->push(L, pc->w);
}

static int push_results(struct weft_task *t) {
    static const char key = 'p'; /* registry key of push_protected's closure */
    lua_State *L = t->loop->L, *co = t->co;
    struct push_call pc = {t->pushing};
    t->pushing = NULL;
    int top = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)&key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushcfunction(L, push_protected);
        lua_pushlightuserdata(L, (void *)&key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_pushlightuserdata(L, &pc);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != 0) {
        lua_pushnil(co);
        lua_xmove(L, co, 1);
        lua_settop(L, top);
        return 2;
    }
    int n = lua_gettop(L) - top;
    if (n > 0) lua_xmove(L, co, n);
    return n;
}

void weft_task_resume(struct weft_task *t) {
    lua_State *co = t->co;
    int nargs = t->nresume;
    t->nresume = 0;
    if (t->pushing) nargs += push_results(t);
    t->state = WEFT_TASK_RUNNING;
    t->started = 1;
    struct weft_task *prev = running;
    running = t;
    int rc = lua_resume(co, nargs);
    running = prev;

    switch (rc) {
    case LUA_YIELD:
        lua_settop(co, 0);
        if (t->exiting) {
            /* weft.exit: the task ends here, cancelled, and the code after
             * the call never runs. What its stack held (a request it was
             * answering, ...) is left to the collector: weft_loop_drain
             * runs a full collection next, so that the request's
             * connection is dropped now (lua_http_server.c's res __gc)
             * rather than keep the loop alive. */
            push_cancelled(co, t);
            finish(t, 0);
            t->loop->exit_collect = 1;
        } else if (t->state == WEFT_TASK_RUNNING) {
            /* A bare coroutine.yield() in a task: give the other ready tasks
             * a turn and continue on the next drain. */
            enqueue(t);
        }
        break;
    case 0:
        finish(t, 1);
        break;
    default:
        finish(t, 0);
        break;
    }
}

/* --------------------------------------------------------------- cancel */

int weft_task_cancel(struct weft_task *t, const char *reason) {
    if (t->state >= WEFT_TASK_DONE) return 0;
    if (!t->cancelled) {
        t->cancelled = 1;
        t->cancel_reason = reason;
    }
    if (t->state == WEFT_TASK_WAITING) {
        struct weft_wait *w = t->wait;
        t->wait = NULL;
        lua_pushnil(t->co);
        push_cancelled(t->co, t);
        t->cancel_error_on_top = 1;
        w->cancel(w);
        t->cancel_error_on_top = 0;
        t->nresume = 2;
        enqueue(t);
    } else if (t->state == WEFT_TASK_READY && !t->started) {
        /* Never ran: finish as cancelled without running any of its code. */
        lua_settop(t->co, 0);
        push_cancelled(t->co, t);
        finish(t, 0);
    }
    return 1;
}

/* ---------------------------------------------------------------- sleep */

static void sleep_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_sleep *s = (struct weft_sleep *)((char *)w - offsetof(struct weft_sleep, timer));
    struct weft_task *t = s->task;
    free(s);
    weft_task_wake(t, 0);
}

static void sleep_cancel(struct weft_wait *w) {
    struct weft_sleep *s = (struct weft_sleep *)w;
    ev_timer_stop(s->task->loop->ev, &s->timer);
    free(s);
}

/* _task.sleep(seconds) */
static int l_sleep(lua_State *L) {
    lua_Number sec = luaL_checknumber(L, 1);
    if (!(sec >= 0) || isinf(sec)) return luaL_argerror(L, 1, "seconds must be a finite number >= 0");
    struct weft_task *t = weft_task_check_current(L, "weft.sleep");
    struct weft_sleep *s = malloc(sizeof *s);
    if (!s) return luaL_error(L, "weft.sleep: out of memory");
    s->wait.cancel = sleep_cancel;
    s->wait.what = "sleep";
    s->task = t;
    /* The loop's cached time is as old as the current drain: a task that
     * ran for a while would otherwise wake early. */
    ev_now_update(t->loop->ev);
    ev_timer_init(&s->timer, sleep_timer_cb, sec, 0.);
    ev_timer_start(t->loop->ev, &s->timer);
    return weft_task_suspend(L, t, &s->wait);
}

/* ----------------------------------------------------------------- park */

static void park_cancel(struct weft_wait *w) { free(w); }

/* _task.suspend([what]): park the current task until _task.wake(task, ...);
 * returns the values given to wake, or nil, cancelled-error. */
static int l_suspend(lua_State *L) {
    struct weft_task *t = weft_task_check_current(L, "weft.suspend");
    struct weft_park *p = malloc(sizeof *p);
    if (!p) return luaL_error(L, "weft.suspend: out of memory");
    p->wait.cancel = park_cancel;
    p->wait.what = "suspend";
    p->task = t;
    return weft_task_suspend(L, t, &p->wait);
}

/* _task.wake(task, ...) -> true when the task was parked by suspend(). */
static int l_wake(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    int n = lua_gettop(L) - 1;
    if (t->state != WEFT_TASK_WAITING || !t->wait || t->wait->cancel != park_cancel) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct weft_wait *w = t->wait;
    luaL_checkstack(t->co, n + 1, "weft.wake");
    lua_xmove(L, t->co, n);
    free(w);
    weft_task_wake(t, n);
    lua_pushboolean(L, 1);
    return 1;
}

/* ----------------------------------------------------------------- join */

static void join_unlink(struct weft_join *j) {
    struct weft_join **pp = &j->target->joiners;
    while (*pp && *pp != j) pp = &(*pp)->next;
    if (*pp) *pp = j->next;
}

static void join_cancel(struct weft_wait *w) {
    struct weft_join *j = (struct weft_join *)w;
    join_unlink(j);
    if (j->has_timer) ev_timer_stop(j->waiter->loop->ev, &j->timer);
    free(j);
}

static void join_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_join *j = (struct weft_join *)((char *)w - offsetof(struct weft_join, timer));
    struct weft_task *waiter = j->waiter;
    join_unlink(j);
    lua_pushnil(waiter->co);
    weft_push_error(waiter->co, "timeout", "timed out after %.3f s waiting for task %lu",
                    j->timeout, j->target->id);
    free(j);
    weft_task_wake(waiter, 2);
}

static int push_outcome(lua_State *L, struct weft_task *t) {
    t->observed = 1;
    if (t->state == WEFT_TASK_DONE) {
        weft_getref(L, t->result_ref);           /* [.., res] */
        lua_getfield(L, -1, "n");
        int n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 1, "task results");
        int resi = lua_gettop(L);
        lua_pushboolean(L, 1);
        for (int i = 1; i <= n; i++) lua_rawgeti(L, resi, i);
        lua_remove(L, resi);
        return n + 1;
    }
    lua_pushboolean(L, 0);
    weft_getref(L, t->result_ref);
    return 2;
}

/* task:join([timeout]) -> true, results... | false, err | nil, timeout-err */
static int l_join(lua_State *L) {
    struct weft_task *target = weft_task_check(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, -1);
    if (target->state >= WEFT_TASK_DONE) return push_outcome(L, target);
    struct weft_task *t = weft_task_check_current(L, "task:wait");
    if (t == target) return luaL_error(L, "task:wait: a task cannot wait for itself");
    struct weft_join *j = calloc(1, sizeof *j);
    if (!j) return luaL_error(L, "task:wait: out of memory");
    j->wait.cancel = join_cancel;
    j->wait.what = "task";
    j->waiter = t;
    j->target = target;
    j->next = target->joiners;
    target->joiners = j;
    if (timeout >= 0) {
        ev_now_update(t->loop->ev);
        ev_timer_init(&j->timer, join_timer_cb, timeout, 0.);
        j->timeout = timeout;
        ev_timer_start(t->loop->ev, &j->timer);
        j->has_timer = 1;
    }
    return weft_task_suspend(L, t, &j->wait);
}

/* ----------------------------------------------------------------- exit */

/* _task.exit(code): end the process cleanly with status `code` (weft.exit,
 * os.exit in a script; see weft_loop_exit). The calling task yields and is
 * never resumed: weft_task_resume finishes it as cancelled, so no code
 * after weft.exit runs. Where it cannot yield (the main Lua thread while a
 * configuration file runs, a coroutine of coroutine.create) it raises
 * `cancelled` instead: the code unwinds, its task (cancelled like every
 * other) ends, and the process exits with `code` all the same. */
static int l_exit(lua_State *L) {
    lua_Integer code = luaL_checkinteger(L, 1);
    if (code < 0 || code > 255) return luaL_argerror(L, 1, "exit status from 0 to 255");
    struct weft_task *t = weft_task_current(L);
    weft_loop_exit(weft_loop_get(L), (int)code);
    if (!t) return weft_raise_error(L, "cancelled", "weft.exit(%d): the process is ending", (int)code);
    t->exiting = 1; /* after weft_loop_exit: its cancel-all marked this task cancelled too */
    return lua_yield(L, 0);
}

/* ------------------------------------------------------------ reports */

int weft_task_waits_for_tasks(const struct weft_task *t) {
    return t->state == WEFT_TASK_WAITING && t->wait &&
           (t->wait->cancel == park_cancel || t->wait->cancel == join_cancel);
}

/* buf = "FILE:FIRSTLINE" of the function ar describes when it is the user's. */
static int user_site(lua_State *co, lua_Debug *ar, char *buf, size_t n) {
    if (strcmp(ar->what, "C") == 0 || weft_is_own_source(co, ar->source)) return 0;
    snprintf(buf, n, "%s:%d", ar->short_src, ar->linedefined > 0 ? ar->linedefined : ar->currentline);
    return 1;
}

void weft_task_site(struct weft_task *t, char *buf, size_t n) {
    lua_State *co = t->co;
    lua_Debug ar;
    if (n) buf[0] = '\0';
    if (!co) return;
    int depth = 0;
    while (lua_getstack(co, depth, &ar)) depth++;
    for (int level = depth - 1; level >= 0; level--) /* outermost first */
        if (lua_getstack(co, level, &ar) && lua_getinfo(co, "Sl", &ar) && user_site(co, &ar, buf, n))
            return;
    /* Not started yet: its stack holds the function and its arguments. */
    if (depth == 0 && !t->started && lua_gettop(co) >= 1 && lua_isfunction(co, 1) &&
        lua_checkstack(co, 1)) {
        lua_pushvalue(co, 1);
        if (lua_getinfo(co, ">S", &ar)) { /* pops the function */
            ar.currentline = 0;
            user_site(co, &ar, buf, n);
        }
    }
}

/* ------------------------------------------------------------ Lua API */

/* _task.spawn(fn, ...): a task of weft's own (a plugin watcher, a policy's
 * target call); _task.spawn_user(fn, ...): one the script started
 * (weft.spawn), which the "still running" hint names when it outlives the
 * script. */
static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    weft_task_spawn(L, lua_gettop(L) - 1);
    return 1;
}

static int l_spawn_user(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    weft_task_spawn(L, lua_gettop(L) - 1)->spawned = 1;
    return 1;
}

static int l_current(lua_State *L) {
    struct weft_task *t = weft_task_current(L);
    if (!t) return 0;
    weft_getref(L, t->self_ref);
    return 1;
}

static int l_cancel(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    lua_pushboolean(L, weft_task_cancel(t, NULL));
    return 1;
}

static const char *const state_names[] = {"ready", "running", "waiting", "done", "failed"};

static int l_status(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    if (t->state == WEFT_TASK_FAILED && t->cancelled) lua_pushliteral(L, "cancelled");
    else lua_pushstring(L, state_names[t->state]);
    return 1;
}

static int l_id(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)weft_task_check(L, 1)->id);
    return 1;
}

static int l_traceback(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    if (t->trace_ref == LUA_NOREF) return 0;
    weft_getref(L, t->trace_ref);
    return 1;
}

static int l_tostring(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    lua_pushfstring(L, "weft.task: %d (%s)", (int)t->id,
                    t->state == WEFT_TASK_FAILED && t->cancelled ? "cancelled" : state_names[t->state]);
    return 1;
}

static int l_gc(lua_State *L) {
    struct weft_task *t = weft_task_check(L, 1);
    /* A live task is anchored by self_ref, so __gc only sees finished
     * tasks, or every task when the state closes. A failure nobody ever
     * waited for must not pass silently; it is reported here, when no one
     * can wait for it any more, rather than when it happens (a task may
     * well be joined after it failed). */
    if (t->state == WEFT_TASK_FAILED && !t->observed && !t->is_main && !t->cancelled &&
        t->trace_ref != LUA_NOREF) {
        weft_getref(L, t->trace_ref);
        weft_log(WEFT_LOG_ERROR, "task %lu failed and nobody waited for it: %s", t->id,
                 lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    if (t->result_ref != LUA_NOREF) {
        weft_unref(L, t->result_ref);
        t->result_ref = LUA_NOREF;
    }
    if (t->trace_ref != LUA_NOREF) {
        weft_unref(L, t->trace_ref);
        t->trace_ref = LUA_NOREF;
    }
    return 0;
}

static double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, monotonic_now());
    return 1;
}

static int l_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    return 1;
}

static int l_stats(lua_State *L) {
    struct weft_loop *loop = weft_loop_get(L);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, loop->ntasks);
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, loop->nrefs);
    lua_setfield(L, -2, "refs");
    return 1;
}

int luaopen_weft_task(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"join", l_join},     {"cancel", l_cancel}, {"status", l_status},
        {"id", l_id},         {"traceback", l_traceback},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"spawn", l_spawn},     {"spawn_user", l_spawn_user}, {"sleep", l_sleep}, {"suspend", l_suspend},
        {"wake", l_wake},       {"current", l_current}, {"now", l_now},
        {"time", l_time},       {"stats", l_stats},     {"exit", l_exit},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {"__gc", l_gc}, {NULL, NULL}};
    weft_register_class(L, TASK_MT, methods, meta);
    lua_newtable(L);                        /* [M] */
    luaL_register(L, NULL, fns);
    /* M.methods: the method table itself, which lua/weft/init.lua extends */
    luaL_getmetatable(L, TASK_MT);          /* [M, mt] */
    lua_getfield(L, -1, "__index");         /* [M, mt, methods] */
    lua_setfield(L, -3, "methods");         /* [M, mt] */
    lua_pop(L, 1);                          /* [M] */
    return 1;
}

/* ------------------------------------------------------ user traceback */

char *weft_trace_for_user(const char *trace, size_t len, const char *libdir) {
    char *out = malloc(len + 1);
    if (!out) return NULL;
    size_t dlen = libdir ? strlen(libdir) : 0, n = 0, kept = 0;
    const char *header = "stack traceback:";
    size_t header_at = (size_t)-1;
    const char *p = trace, *end = trace + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int frame = l > 0 && p[0] == '\t';
        int drop = 0;
        if (frame) {
            const char *f = p + 1;
            size_t fl = l - 1;
            if (dlen && fl >= dlen && memcmp(f, libdir, dlen) == 0) drop = 1;
            /* a long path shortened by Lua ("...uild/lua/weft/x.lua:1:") */
            const char *colon = memchr(f, ':', fl);
            static const char lib[] = "/lua/weft/";
            if (fl > 3 && memcmp(f, "...", 3) == 0 && colon) {
                for (const char *q = f; q + (sizeof lib - 1) <= colon; q++)
                    if (memcmp(q, lib, sizeof lib - 1) == 0) drop = 1;
            }
            static const char cerror[] = "[C]: in function 'error'";
            if (fl == sizeof cerror - 1 && memcmp(f, cerror, fl) == 0) drop = 1;
            if (!drop) kept++;
        }
        if (!drop) {
            if (l == strlen(header) && memcmp(p, header, l) == 0) header_at = n;
            memcpy(out + n, p, l);
            n += l;
            if (nl) out[n++] = '\n';
        }
        p = nl ? nl + 1 : end;
    }
    if (kept == 0 && header_at != (size_t)-1) n = header_at > 0 ? header_at - 1 : 0; /* no frame left */
    while (n > 0 && out[n - 1] == '\n') n--;
    out[n] = '\0';
    return out;
}
