/* signals.h -- SIGINT and SIGTERM are honoured even when Lua never yields.
 *
 * The clean path is the loop's: an ev_signal watcher cancels every task
 * and the process exits with 128 + the signal number (130 for SIGINT, 143
 * for SIGTERM). That path needs the loop to get control, and Lua code that
 * never yields (an endless loop in a script, a configuration file or a
 * plugin; a JIT-compiled loop where no hook fires) keeps it from ever
 * running. This module is the fallback that needs neither the loop nor
 * Lua: the process's own async-signal-safe handler for SIGINT/SIGTERM.
 *
 * - The first signal is forwarded to libev (ev_feed_signal, which is what
 *   libev's own handler does) and starts a grace timer.
 * - When the loop handles it (its ev_signal callback calls
 *   weft_signals_ack) the timer stops: the clean path goes on.
 * - When half the grace period has passed without that, the stall
 *   function (weft_signals_on_stall) runs in the handler: the loop uses it
 *   to set a Lua hook so that *interpreted* code stops with an error and
 *   the loop gets control after all.
 * - When the whole grace period has passed, a short message goes to
 *   stderr (write(2)) and the process ends with _exit(128 + signum).
 * - A second SIGINT/SIGTERM, while the first is not yet handled or once
 *   the clean shutdown has started, ends the process at once the same way.
 *
 * During the clean shutdown the loop keeps Lua on the same leash
 * (weft_signals_busy/idle around each batch of callbacks): cleanup code
 * may wait as long as it needs, but it may not hold the CPU for longer
 * than the grace period without giving control back.
 *
 * The timer is a POSIX timer on CLOCK_MONOTONIC delivering SIGALRM, created
 * once at install time; timer_settime is async-signal-safe, and a timer of
 * our own leaves alarm()/setitimer() to anyone else. Nothing else in weft
 * uses SIGALRM (libcurl runs with CURLOPT_NOSIGNAL); a SIGALRM that does not
 * come from our timer gets its default action (the process ends, as it did
 * before this handler existed). The functions below are for the loop's
 * thread (the one that first calls weft_signals_install, which also
 * receives the timer's SIGALRM); the SIGINT/SIGTERM handler itself may run
 * on any thread (a process-directed signal can land on libcurl's resolver
 * threads) and only touches atomics, the timer and libev's signal pipe.
 */
#ifndef WEFT_SIGNALS_H
#define WEFT_SIGNALS_H

#define WEFT_SIGNALS_GRACE 2.0 /* default grace period, seconds */

/* Called from the signal handler (so it must be async-signal-safe) when
 * half the grace period has passed and the loop has not handled signal
 * `signum` yet. */
typedef void (*weft_stall_fn)(int signum);

/* Install the SIGINT, SIGTERM and SIGALRM handlers (and create the timer
 * on the first call). Call it first thing in main, so that signals during
 * start-up and configuration loading are covered, and again after every
 * ev_signal_start for SIGINT/SIGTERM: libev installs its own handler then
 * (weft_loop_new does this). Returns 0, or -1 with errno set when
 * sigaction or timer_create fails (then signals keep their previous
 * handling). */
int weft_signals_install(void);

/* Set the grace period in seconds (default WEFT_SIGNALS_GRACE). Returns 0,
 * or -1 when `seconds` is not in (0, 3600]. */
int weft_signals_set_grace(double seconds);

/* Set (or clear, with NULL) the stall function. */
void weft_signals_on_stall(weft_stall_fn fn);

/* The signal received and not yet handled by the loop (SIGINT or SIGTERM),
 * or 0. Code running before the loop (main's start-up) polls this. */
int weft_signals_pending(void);

/* The loop has handled signal `signum` (its ev_signal callback runs): stop
 * the grace timer. With `shutdown` non-zero the signal starts the clean
 * shutdown: the grace timer starts again at once (the Lua that the
 * cancellations resume is on the leash), and from now on every SIGINT or
 * SIGTERM ends the process at once; the exit status of a grace exit is
 * then 128 + `signum`. With `shutdown` zero (the REPL cancelled one line)
 * the next signal is a first one again. Returns the signal that was
 * pending, or 0. */
int weft_signals_ack(int signum, int shutdown);

/* weft.exit(code) started the clean shutdown: the same grace as a signal's
 * (Lua that never gives control back is stopped half-way, then the process
 * ends), the grace exit's status being `code`. From now on every SIGINT or
 * SIGTERM ends the process at once. */
void weft_signals_exit_grace(int code);

/* During the clean shutdown: callbacks (Lua) are about to run -- start the
 * grace timer; and the loop is about to wait for events -- stop it. No
 * effect before the shutdown has started. */
void weft_signals_busy(void);
void weft_signals_idle(void);

/* Forget everything (pending signal, shutdown, stall function) and stop
 * the timer. The handlers stay installed. Called when the loop is freed. */
void weft_signals_reset(void);

#endif
