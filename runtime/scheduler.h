/* scheduler.h -- what the loop asks of the scheduler (task.c), and nothing
 * more: loop.c runs the scheduler through these without knowing what a
 * task is (it includes no task.h), so task.c depends on loop.h and not the
 * other way round. (Not "sched.h": with runtime/ on the include path it
 * would shadow the C library's <sched.h>.)
 */
#ifndef WEFT_SCHEDULER_H
#define WEFT_SCHEDULER_H

struct weft_loop;

/* Resume the ready tasks in FIFO order, tasks made ready meanwhile
 * included, until none is left; a finished task drops its anchor here. */
void weft_sched_drain(struct weft_loop *loop);

/* 1 when a task is ready to run (the loop must not block). */
int weft_sched_ready(const struct weft_loop *loop);

/* Cancel every live task with `reason` (static text). */
void weft_sched_cancel_all(struct weft_loop *loop, const char *reason);

/* Teardown: the operations of waiting tasks are cancelled (their cancel
 * callbacks, nothing resumed), every task is marked failed and its
 * anchors are dropped, the run queue emptied. Before lua_close. */
void weft_sched_free(struct weft_loop *loop);

#endif
