/* test_task.c -- the scheduler from C: spawn, suspend/wake, cancel, join,
 * run-queue order, anchoring against GC, refs released at shutdown.
 *
 * A test operation ("op") written here the way every event source in the
 * runtime is written: a struct embedding struct weft_wait, a cancel
 * callback, a wake from a libev callback. */
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <lauxlib.h>
#include <lualib.h>

#include "harness.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

/* ------------------------------------------------------- a test operation */

struct op {
    struct weft_wait wait;
    struct weft_task *task;
    ev_timer timer;
    int value;
};

static int op_cancels;   /* cancel callbacks run */
static int op_frees;     /* ops freed (by completion or cancel) */
static struct op *last_op;

static void op_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct op *o = (struct op *)((char *)w - offsetof(struct op, timer));
    struct weft_task *t = o->task;
    lua_pushinteger(t->co, o->value * 2);
    lua_pushstring(t->co, "woken");
    last_op = NULL;
    free(o);
    op_frees++;
    weft_task_wake(t, 2);
}

static void op_cancel(struct weft_wait *w) {
    struct op *o = (struct op *)w;
    ev_timer_stop(o->task->loop->ev, &o->timer);
    last_op = NULL;
    free(o);
    op_cancels++;
    op_frees++;
}

/* op(value, seconds) -> value*2, "woken" after `seconds` */
static int l_op(lua_State *L) {
    int v = (int)luaL_checkinteger(L, 1);
    double sec = luaL_optnumber(L, 2, 0.0);
    struct weft_task *t = weft_task_check_current(L, "op");
    struct op *o = calloc(1, sizeof *o);
    o->wait.cancel = op_cancel;
    o->wait.what = "op";
    o->task = t;
    o->value = v;
    ev_timer_init(&o->timer, op_timer_cb, sec, 0.);
    ev_timer_start(t->loop->ev, &o->timer);
    last_op = o;
    return weft_task_suspend(L, t, &o->wait);
}

/* A pushing op: woken by weft_task_wake_push from the libev callback, its
 * results made by push at the resume (the HTTP client's way). */
static int push_calls;   /* push callbacks run */
static int push_in_cb;   /* a push ran inside the libev callback */
static int in_cb;

static int pop_push(lua_State *L, struct weft_wait *w) {
    struct op *o = (struct op *)w;
    push_calls++;
    if (in_cb) push_in_cb++;
    int v = o->value;
    free(o);
    op_frees++;
    if (v < 0) return luaL_error(L, "push failed for %d", v); /* a push that raises */
    lua_pushinteger(L, v * 3);
    lua_createtable(L, 0, 1);          /* a value built at the resume */
    lua_pushstring(L, "made at resume");
    lua_setfield(L, -2, "note");
    return 2;
}

static void pop_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct op *o = (struct op *)((char *)w - offsetof(struct op, timer));
    in_cb = 1;
    last_op = NULL;
    weft_task_wake_push(o->task);     /* nothing pushed here */
    in_cb = 0;
}

/* pop(value) -> value*3, {note=} made at the resume; pop(-1) -> nil, err */
static int l_pop(lua_State *L) {
    int v = (int)luaL_checkinteger(L, 1);
    struct weft_task *t = weft_task_check_current(L, "pop");
    struct op *o = calloc(1, sizeof *o);
    o->wait.cancel = op_cancel;
    o->wait.push = pop_push;
    o->wait.what = "pop";
    o->task = t;
    o->value = v;
    ev_timer_init(&o->timer, pop_timer_cb, 0.001, 0.);
    ev_timer_start(t->loop->ev, &o->timer);
    last_op = o;
    return weft_task_suspend(L, t, &o->wait);
}

/* ---------------------------------------------------------------- helpers */

static struct weft_loop *new_host(void) {
    struct weft_loop *loop = weft_loop_new(ev_loop_new(EVFLAG_AUTO), WEFT_TEST_SOURCE_DIR);
    lua_register(loop->L, "op", l_op);
    lua_register(loop->L, "pop", l_pop);
    push_calls = push_in_cb = 0;
    op_cancels = op_frees = 0;
    return loop;
}

static int free_host(struct weft_loop *loop) {
    struct ev_loop *ev = loop->ev;
    int leaked = weft_loop_free(loop);
    ev_loop_destroy(ev);
    return leaked;
}

/* Run `chunk` (which must return a function) as a new task. */
static struct weft_task *spawn_chunk(struct weft_loop *loop, const char *chunk) {
    lua_State *L = loop->L;
    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stdout, "# chunk failed: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return NULL;
    }
    struct weft_task *t = weft_task_spawn(L, 0);   /* [task] */
    lua_setglobal(L, "last_task");
    return t;
}

static const char *global_string(struct weft_loop *loop, const char *name) {
    lua_getglobal(loop->L, name);
    const char *s = lua_tostring(loop->L, -1);
    lua_pop(loop->L, 1);   /* still anchored by the global */
    return s;
}

/* ------------------------------------------------------------------ tests */

static void test_spawn_runs_on_drain_not_before(void) {
    struct weft_loop *loop = new_host();
    struct weft_task *t = spawn_chunk(loop, "return function() ran = 'yes' end");
    CHECK(t != NULL);
    CHECK(global_string(loop, "ran") == NULL);   /* queued, not run */
    CHECK_EQ_INT(t->state, WEFT_TASK_READY);
    weft_loop_run(loop);
    CHECK_EQ_STR(global_string(loop, "ran"), "yes");
    CHECK_EQ_INT(loop->ntasks, 0);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_suspend_wake_delivers_values(void) {
    struct weft_loop *loop = new_host();
    spawn_chunk(loop, "return function() local a, b = op(21, 0.01); got = a .. ':' .. b end");
    weft_loop_run(loop);
    CHECK_EQ_STR(global_string(loop, "got"), "42:woken");
    CHECK_EQ_INT(op_frees, 1);
    CHECK_EQ_INT(op_cancels, 0);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_wake_push_makes_results_at_resume(void) {
    struct weft_loop *loop = new_host();
    spawn_chunk(loop, "return function() local a, b = pop(14); got = a .. ':' .. b.note; "
                      "local c, err = pop(-1); got2 = tostring(c) .. ':' .. tostring(err) end");
    weft_loop_run(loop);
    /* the values came with the one resume, made outside the libev callback */
    CHECK_EQ_STR(global_string(loop, "got"), "42:made at resume");
    CHECK_EQ_INT(push_calls, 2);
    CHECK_EQ_INT(push_in_cb, 0);
    /* a push that raised: the task resumes with nil and the error */
    const char *got2 = global_string(loop, "got2");
    CHECK(got2 != NULL && strstr(got2, "nil:") == got2 && strstr(got2, "push failed for -1") != NULL);
    CHECK_EQ_INT(op_frees, 2);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_fifo_order(void) {
    struct weft_loop *loop = new_host();
    luaL_dostring(loop->L, "order = {}");
    for (int i = 1; i <= 5; i++) {
        char chunk[128];
        snprintf(chunk, sizeof chunk,
                 "return function() order[#order+1] = %d; coroutine.yield(); "
                 "order[#order+1] = %d end", i, i + 10);
        spawn_chunk(loop, chunk);
    }
    weft_loop_run(loop);
    luaL_dostring(loop->L, "return table.concat(order, ',')");
    CHECK_EQ_STR(lua_tostring(loop->L, -1), "1,2,3,4,5,11,12,13,14,15");
    lua_pop(loop->L, 1);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_cancel_waiting_frees_op_once(void) {
    struct weft_loop *loop = new_host();
    struct weft_task *t = spawn_chunk(loop,
        "return function() local v, err = op(1, 3600); "
        "res = tostring(v) .. ' ' .. err.kind; return 'after' end");
    weft_loop_step(loop, 1);                 /* runs until op() suspends */
    CHECK_EQ_INT(t->state, WEFT_TASK_WAITING);
    CHECK(last_op != NULL);
    CHECK_EQ_INT(weft_task_cancel(t, "test"), 1);
    CHECK_EQ_INT(op_cancels, 1);
    CHECK(last_op == NULL);
    weft_loop_run(loop);                     /* the 3600 s timer is gone */
    CHECK_EQ_STR(global_string(loop, "res"), "nil cancelled");
    CHECK_EQ_INT(t->state, WEFT_TASK_DONE);  /* it handled the error */
    CHECK_EQ_INT(weft_task_cancel(t, "again"), 0);
    CHECK_EQ_INT(op_frees, 1);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_cancel_before_start_never_runs(void) {
    struct weft_loop *loop = new_host();
    struct weft_task *t = spawn_chunk(loop, "return function() ran = true end");
    CHECK_EQ_INT(weft_task_cancel(t, "early"), 1);
    CHECK_EQ_INT(t->state, WEFT_TASK_FAILED);
    weft_loop_run(loop);
    lua_getglobal(loop->L, "ran");
    CHECK(lua_isnil(loop->L, -1));
    lua_pop(loop->L, 1);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_wait_after_cancel_fails_at_once(void) {
    struct weft_loop *loop = new_host();
    /* The task cancels itself, then tries to wait: the op is cancelled at
     * once without ever being armed. */
    spawn_chunk(loop,
        "local T = require 'weft._task'\n"
        "return function() T.methods.cancel(T.current()); local v, e = op(5, 3600); "
        "res = e.kind end");
    weft_loop_run(loop);
    CHECK_EQ_STR(global_string(loop, "res"), "cancelled");
    CHECK_EQ_INT(op_cancels, 1);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_waiting_task_survives_gc(void) {
    struct weft_loop *loop = new_host();
    /* No Lua value refers to the task or its coroutine while it waits. */
    spawn_chunk(loop, "return function() local a = op(4, 0.02); survived = a end");
    luaL_dostring(loop->L, "last_task = nil");
    weft_loop_step(loop, 1);
    lua_gc(loop->L, LUA_GCCOLLECT, 0);
    lua_gc(loop->L, LUA_GCCOLLECT, 0);
    weft_loop_run(loop);
    lua_getglobal(loop->L, "survived");
    CHECK_EQ_INT(lua_tointeger(loop->L, -1), 8);
    lua_pop(loop->L, 1);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_join_results_and_errors(void) {
    struct weft_loop *loop = new_host();
    spawn_chunk(loop,
        "local T = require 'weft._task'\n"
        "return function()\n"
        "  local a = T.spawn(function() op(1, 0.01); return 1, nil, 3 end)\n"
        "  local b = T.spawn(function() error({kind='x'}) end)\n"
        "  local r = {T.methods.join(a)}\n"
        "  local ok, e = T.methods.join(b)\n"
        "  res = table.concat({tostring(r[1]), tostring(r[2]), tostring(r[3]),\n"
        "                      tostring(r[4]), tostring(ok), e.kind}, ',')\n"
        "end");
    weft_loop_run(loop);
    CHECK_EQ_STR(global_string(loop, "res"), "true,1,nil,3,false,x");
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_free_with_waiting_tasks_cancels_ops(void) {
    struct weft_loop *loop = new_host();
    for (int i = 0; i < 3; i++) spawn_chunk(loop, "return function() op(1, 3600) end");
    weft_loop_step(loop, 1);
    CHECK_EQ_INT(loop->ntasks, 3);
    CHECK_EQ_INT(free_host(loop), 0);
    CHECK_EQ_INT(op_cancels, 3);
    CHECK_EQ_INT(op_frees, 3);
}

static void test_interrupt_cancels_everything(void) {
    struct weft_loop *loop = new_host();
    spawn_chunk(loop, "return function() local _, e = op(1, 3600); k1 = e.kind end");
    spawn_chunk(loop, "return function() local _, e = op(1, 3600); k2 = e.message end");
    weft_loop_step(loop, 1);
    weft_loop_interrupt(loop);
    weft_loop_run(loop);
    CHECK_EQ_STR(global_string(loop, "k1"), "cancelled");
    CHECK_EQ_STR(global_string(loop, "k2"), "interrupted");
    CHECK_EQ_INT(loop->ntasks, 0);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_wait_from_main_thread_is_an_error(void) {
    struct weft_loop *loop = new_host();
    int rc = luaL_dostring(loop->L, "op(1, 0)");
    CHECK(rc != 0);
    const char *msg = lua_tostring(loop->L, -1);
    CHECK(msg && strstr(msg, "op") != NULL);
    lua_pop(loop->L, 1);
    rc = luaL_dostring(loop->L, "local co = coroutine.create(function() op(1, 0) end)\n"
                                "local ok, e = coroutine.resume(co); assert(not ok); error(e, 0)");
    CHECK(rc != 0);
    lua_pop(loop->L, 1);
    CHECK_EQ_INT(op_frees, 0);
    CHECK_EQ_INT(free_host(loop), 0);
}

static void test_many_tasks(void) {
    struct weft_loop *loop = new_host();
    luaL_dostring(loop->L, "count = 0");
    for (int i = 0; i < 10000; i++) {
        spawn_chunk(loop, "return function() op(1, 0.001); count = count + 1 end");
    }
    weft_loop_run(loop);
    lua_getglobal(loop->L, "count");
    CHECK_EQ_INT(lua_tointeger(loop->L, -1), 10000);
    lua_pop(loop->L, 1);
    CHECK_EQ_INT(loop->ntasks, 0);
    CHECK_EQ_INT(free_host(loop), 0);
}

int main(void) {
    RUN(test_spawn_runs_on_drain_not_before);
    RUN(test_suspend_wake_delivers_values);
    RUN(test_wake_push_makes_results_at_resume);
    RUN(test_fifo_order);
    RUN(test_cancel_waiting_frees_op_once);
    RUN(test_cancel_before_start_never_runs);
    RUN(test_wait_after_cancel_fails_at_once);
    RUN(test_waiting_task_survives_gc);
    RUN(test_join_results_and_errors);
    RUN(test_free_with_waiting_tasks_cancels_ops);
    RUN(test_interrupt_cancels_everything);
    RUN(test_wait_from_main_thread_is_an_error);
    RUN(test_many_tasks);
    return DONE();
}
