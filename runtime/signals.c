/* signals.c -- SIGINT/SIGTERM honoured without the loop: see signals.h.
 *
 * Everything the handlers touch is a lock-free atomic or a value written
 * before any signal can need it (the timer, the grace period), and they
 * call only async-signal-safe functions: write, _exit, timer_settime,
 * sigaction, raise, and ev_feed_signal (documented by libev as safe "at any
 * time, from any context, including signal handlers"). errno is preserved.
 *
 * Why a POSIX timer and not a watchdog thread: the timer needs no thread
 * (no signal masks to manage, nothing running beside the Lua state), it is
 * armed and disarmed from the handler itself, and SIGEV_THREAD_ID delivers
 * its SIGALRM to the thread running Lua, which the stall function needs
 * (it sets a Lua hook). Why not setitimer/alarm: setitimer is not on the
 * POSIX list of async-signal-safe functions, alarm has whole seconds, and
 * both share ITIMER_REAL with any other user in the process.
 */
#include "signals.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid /* older glibc: the kernel's name only */
#endif

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handlers need lock-free atomic ints");
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "the signal handlers need lock-free atomic pointers");

enum stage {
    STAGE_OFF,   /* no grace timer running */
    STAGE_STALL, /* next expiry: half the grace is over, call the stall fn */
    STAGE_EXIT,  /* next expiry: the grace is over, _exit */
};

static atomic_int pending;   /* SIGINT/SIGTERM received, not yet handled by the loop */
static atomic_int shutting;  /* the clean shutdown has started */
static atomic_int stage;     /* enum stage */
static atomic_int armed_sig; /* the signal whose grace runs: the exit status (0: weft.exit's) */
static atomic_int exit_grace_code; /* weft.exit's status, for a grace exit with armed_sig 0 */
static _Atomic(weft_stall_fn) stall_fn;

static timer_t timer;   /* CLOCK_MONOTONIC, SIGALRM to the installing thread */
static pid_t timer_pid; /* process that created it (timers do not survive fork) */
static struct itimerspec first_half = {.it_value = {1, 0}}; /* WEFT_SIGNALS_GRACE / 2 */
static struct itimerspec second_half = {.it_value = {1, 0}};
static char grace_text[32] = "2 s"; /* for the exit message */

/* ------------------------------------------------------ handler helpers */

static void say(const char *s) {
    size_t n = strlen(s); /* strlen is async-signal-safe (POSIX.1-2016) */
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static const char *name_of(int signum) {
    return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "signal";
}

/* "weft: SIGTERM<why>" on stderr, then exit as the shell reports a death by
 * that signal. */
static void die(int signum, const char *why) {
    say("weft: ");
    say(name_of(signum));
    say(why);
    _exit(128 + signum);
}

static void start_timer(int signum) {
    atomic_store(&armed_sig, signum);
    atomic_store(&stage, STAGE_STALL); /* before arming: the expiry must see it */
    timer_settime(timer, 0, &first_half, NULL);
}

static void stop_timer(void) {
    static const struct itimerspec off; /* all zero: disarm */
    atomic_store(&stage, STAGE_OFF);
    timer_settime(timer, 0, &off, NULL);
}

/* ------------------------------------------------------------ handlers */

static void on_signal(int signum) {
    int saved = errno;
    if (atomic_load(&shutting) || atomic_load(&pending)) die(signum, " again: exiting at once\n");
    atomic_store(&pending, signum);
    start_timer(signum);
    ev_feed_signal(signum); /* the clean path, when the loop gets control */
    errno = saved;
}

static void on_alarm(int signum, siginfo_t *si, void *ctx) {
    (void)ctx;
    int saved = errno;
    if (si->si_code != SI_TIMER || si->si_value.sival_ptr != &timer) {
        /* Not our timer (alarm(), kill -ALRM): the default action, as
         * before this handler existed. SIGALRM is blocked while this runs,
         * so the raised one is delivered with SIG_DFL on return. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(signum, &dfl, NULL);
        raise(signum);
        errno = saved;
        return;
    }
    int sig = atomic_load(&armed_sig);
    switch (atomic_load(&stage)) {
    case STAGE_STALL: {
        atomic_store(&stage, STAGE_EXIT);
        weft_stall_fn fn = atomic_load(&stall_fn);
        if (fn) fn(sig);
        timer_settime(timer, 0, &second_half, NULL);
        break;
    }
    case STAGE_EXIT:
        if (sig == 0) { /* weft.exit's grace */
            say("weft: weft.exit: Lua code did not give control back within the grace period (");
            say(grace_text);
            say("); exiting\n");
            _exit(atomic_load(&exit_grace_code) & 0xff);
        }
        say("weft: ");
        say(name_of(sig));
        say(": Lua code did not give control back within the grace period (");
        say(grace_text);
        say("); exiting\n");
        _exit(128 + sig);
    default:
        /* An expiry that raced with weft_signals_idle/ack: nothing to do. */
        break;
    }
    errno = saved;
}

/* --------------------------------------------------------------- API */

int weft_signals_install(void) {
    if (timer_pid != getpid()) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_notify_thread_id = gettid();
        sev.sigev_signo = SIGALRM;
        sev.sigev_value.sival_ptr = &timer; /* how on_alarm knows its own */
        if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) return -1;
        timer_pid = getpid();
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    /* The three handlers never interrupt one another: a second signal is
     * seen once the first one's handler has returned. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGALRM);
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sa.sa_sigaction = on_alarm;
    if (sigaction(SIGALRM, &sa, NULL) != 0) return -1;
    sa.sa_flags = SA_RESTART; /* as libev's own handler */
    sa.sa_handler = on_signal;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) return -1;
    return 0;
}

int weft_signals_set_grace(double seconds) {
    if (!(seconds > 0 && seconds <= 3600)) return -1;
    double half = seconds / 2, rest = seconds - half;
    first_half.it_value.tv_sec = (time_t)half;
    first_half.it_value.tv_nsec = (long)((half - (double)(time_t)half) * 1e9);
    second_half.it_value.tv_sec = (time_t)rest;
    second_half.it_value.tv_nsec = (long)((rest - (double)(time_t)rest) * 1e9);
    if (first_half.it_value.tv_sec == 0 && first_half.it_value.tv_nsec == 0)
        first_half.it_value.tv_nsec = 1; /* zero would disarm */
    if (second_half.it_value.tv_sec == 0 && second_half.it_value.tv_nsec == 0)
        second_half.it_value.tv_nsec = 1;
    snprintf(grace_text, sizeof grace_text, "%g s", seconds);
    return 0;
}

void weft_signals_on_stall(weft_stall_fn fn) {
    atomic_store(&stall_fn, fn);
}

int weft_signals_pending(void) {
    return atomic_load(&pending);
}

int weft_signals_ack(int signum, int shutdown) {
    /* Shutting down first: a signal arriving from here on is a second one. */
    if (shutdown) atomic_store(&shutting, 1);
    stop_timer();
    int was = atomic_exchange(&pending, 0);
    if (shutdown) start_timer(signum);
    return was;
}

void weft_signals_exit_grace(int code) {
    atomic_store(&exit_grace_code, code);
    atomic_store(&shutting, 1);
    stop_timer();
    start_timer(0);
}

void weft_signals_busy(void) {
    if (atomic_load(&shutting)) start_timer(atomic_load(&armed_sig));
}

void weft_signals_idle(void) {
    if (atomic_load(&shutting)) stop_timer();
}

void weft_signals_reset(void) {
    atomic_store(&shutting, 0);
    atomic_store(&pending, 0);
    atomic_store(&stall_fn, NULL);
    if (timer_pid == getpid()) stop_timer();
}
