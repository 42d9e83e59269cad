/* test_signals.c -- the SIGINT/SIGTERM fallback of signals.h without a loop
 * or a Lua state: the pending signal, acknowledgement, the stall function
 * at half the grace period, the grace exit, a second signal, the shutdown
 * leash, a foreign SIGALRM.
 *
 * Each case that may end its process runs in a forked child; the parent
 * checks how the child ended. Grace periods are short (0.2 s) and every
 * wait for a child is bounded (a hang fails the test instead). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "signals.h"

static int stall_pipe = -1; /* the child's stall function writes here */

static void stall_fn(int signum) {
    char c = signum == SIGINT ? 'I' : 'T';
    if (write(stall_pipe, &c, 1) < 0) _exit(99);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

struct child {
    int status;  /* from waitpid */
    int exited;  /* 0: still running after the bound (killed) */
    char stall;  /* what the stall function wrote, or 0 */
    double secs; /* from fork to exit */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run body() in a child with the handlers installed and a 0.2 s grace;
 * the child exits 0 when body returns. Waits 10 s at most. */
static struct child run_child(void (*body)(void)) {
    struct child c = {0, 0, 0, 0};
    int fds[2];
    if (pipe(fds) != 0) return c;
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        stall_pipe = fds[1];
        if (weft_signals_install() != 0 || weft_signals_set_grace(0.2) != 0) _exit(98);
        weft_signals_on_stall(stall_fn);
        body();
        _exit(0);
    }
    close(fds[1]);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &c.status, WNOHANG) == pid) {
            c.exited = 1;
            break;
        }
        sleep_s(0.01);
    }
    if (!c.exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &c.status, 0);
    }
    c.secs = now() - t0;
    if (read(fds[0], &c.stall, 1) != 1) c.stall = 0;
    close(fds[0]);
    return c;
}

static int exit_code(struct child c) {
    return c.exited && WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
}

/* ------------------------------------------------------------- bodies */

/* A signal nobody handles (the loop is stuck): stall fn, then grace exit. */
static void body_stuck(void) {
    raise(SIGTERM);
    for (;;) sleep_s(1);
}

static void body_stuck_int(void) {
    raise(SIGINT);
    for (;;) sleep_s(1);
}

/* The loop handles it in time (the REPL's way: no shutdown). */
static void body_acked(void) {
    raise(SIGINT);
    if (weft_signals_pending() != SIGINT) _exit(10);
    if (weft_signals_ack(SIGINT, 0) != SIGINT) _exit(11);
    if (weft_signals_pending() != 0) _exit(12);
    sleep_s(0.5); /* past the grace: nothing happens */
    /* the next signal is a first one again */
    raise(SIGINT);
    if (weft_signals_pending() != SIGINT) _exit(13);
    weft_signals_ack(SIGINT, 0);
    sleep_s(0.5);
}

static void body_second(void) {
    raise(SIGINT);
    raise(SIGTERM); /* before the first one was handled */
    for (;;) sleep_s(1);
}

/* Shutdown: waiting (idle) is not stalling; running (busy) past the grace
 * is. */
static void body_shutdown(void) {
    raise(SIGTERM);
    weft_signals_ack(SIGTERM, 1); /* the clean shutdown starts: on the leash */
    weft_signals_idle();
    sleep_s(0.5); /* waiting for events */
    weft_signals_busy();
    sleep_s(0.05); /* a short callback */
    weft_signals_idle();
    sleep_s(0.5);
    weft_signals_busy();
    for (;;) sleep_s(1); /* a callback that never returns */
}

static void body_shutdown_second(void) {
    raise(SIGTERM);
    weft_signals_ack(SIGTERM, 1);
    weft_signals_idle();
    raise(SIGINT); /* any signal after the shutdown started */
    for (;;) sleep_s(1);
}

static void body_alarm(void) {
    alarm(1); /* not ours: its default action ends the process */
    for (;;) sleep_s(1);
}

static void body_reset(void) {
    raise(SIGTERM);
    weft_signals_reset(); /* the loop is freed: the timer stops */
    if (weft_signals_pending() != 0) _exit(20);
    sleep_s(0.5);
}

/* -------------------------------------------------------------- tests */

static void test_grace_exit(void) {
    struct child c = run_child(body_stuck);
    CHECK_EQ_INT(exit_code(c), 143);
    CHECK_EQ_INT(c.stall, 'T'); /* the stall function ran, with the signal */
    c = run_child(body_stuck_int);
    CHECK_EQ_INT(exit_code(c), 130);
    CHECK_EQ_INT(c.stall, 'I');
}

static void test_ack_stops_the_timer(void) {
    struct child c = run_child(body_acked);
    CHECK_EQ_INT(exit_code(c), 0);
    CHECK_EQ_INT(c.stall, 0);
}

static void test_second_signal(void) {
    struct child c = run_child(body_second);
    CHECK_EQ_INT(exit_code(c), 143); /* 128 + the second one */
    CHECK_EQ_INT(c.stall, 0);        /* at once, not after half the grace */
    c = run_child(body_shutdown_second);
    CHECK_EQ_INT(exit_code(c), 130);
}

static void test_shutdown_leash(void) {
    struct child c = run_child(body_shutdown);
    CHECK_EQ_INT(exit_code(c), 143);
    CHECK(c.secs > 1.0); /* the waits (1 s in all) did not count */
    CHECK_EQ_INT(c.stall, 'T');
}

static void test_foreign_alarm(void) {
    struct child c = run_child(body_alarm);
    CHECK(c.exited && WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGALRM);
}

static void test_reset(void) {
    struct child c = run_child(body_reset);
    CHECK_EQ_INT(exit_code(c), 0);
}

static void test_grace_range(void) {
    CHECK_EQ_INT(weft_signals_set_grace(0), -1);
    CHECK_EQ_INT(weft_signals_set_grace(-1), -1);
    CHECK_EQ_INT(weft_signals_set_grace(3601), -1);
    CHECK_EQ_INT(weft_signals_set_grace(NAN), -1);
    CHECK_EQ_INT(weft_signals_set_grace(0.001), 0);
    CHECK_EQ_INT(weft_signals_set_grace(WEFT_SIGNALS_GRACE), 0);
}

int main(void) {
    RUN(test_grace_exit);
    RUN(test_ack_stops_the_timer);
    RUN(test_second_signal);
    RUN(test_shutdown_leash);
    RUN(test_foreign_alarm);
    RUN(test_reset);
    RUN(test_grace_range);
    return DONE();
}
