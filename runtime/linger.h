/* linger.h -- why a script that has ended keeps running, said once.
 *
 * `weft run` ends when the script's main chunk has returned and nothing is
 * left that keeps the loop alive: servers (not background ones) and tasks
 * do. That is often the point (a mock server, a gateway) and sometimes a
 * mistake (a server never closed, a task sleeping in a loop), and both
 * look the same from outside: a process that does not end. So once the
 * main task has returned and the process is still running WEFT_LINGER_DELAY
 * seconds later, one line on stderr says what keeps it running, where the
 * user's code made it, and how to end it:
 *
 *   weft: the script has ended but 1 server (weft.http.serve at x.lua:3)
 *   and 2 tasks (weft.spawn at x.lua:7) keep it running; close them
 *   (srv:close(), task:cancel()) or call weft.exit()
 *
 * It is a hint, not an exit: the process goes on. Nothing is said after
 * weft.exit or a signal, nor when only tasks of weft's own (a request
 * being answered, a task waiting for other tasks) are left.
 *
 * Servers say where they were made when they open (weft_linger_keep, a
 * short string: servers are few); tasks are looked at only when the hint is
 * due (weft_task_site), so weft.spawn pays nothing for it.
 */
#ifndef WEFT_LINGER_H
#define WEFT_LINGER_H

struct weft_loop;

#define WEFT_LINGER_DELAY 1.0 /* seconds after the main task returned */
#define WEFT_WHERE_MAX 96     /* "FILE:LINE", truncated */

/* A server that keeps a finished script running (tasks are found from
 * the loop's list of them). Embed it in the server's struct; the loop's
 * list links it while kept. */
struct weft_keeper {
    const char *api;                 /* the call that made it ("weft.http.serve"); static */
    char where[WEFT_WHERE_MAX];      /* the user's FILE:LINE that made it (weft_where), or "" */
    int kept;                        /* on loop->keepers */
    struct weft_keeper *prev, *next; /* loop->keepers, oldest first */
};

/* Put `k` on the loop's list (its fields set by the caller). Idempotent. */
void weft_linger_keep(struct weft_loop *loop, struct weft_keeper *k);

/* Take `k` off the list (the server closed). Idempotent. */
void weft_linger_release(struct weft_loop *loop, struct weft_keeper *k);

/* Say it, once, for this loop: sets loop->on_main_done so that the hint is
 * due WEFT_LINGER_DELAY seconds after the main task returned (an
 * unreferenced timer: it keeps nothing alive). `weft run` and `weft -e`
 * call it; `weft mock` and the REPL, whose servers are the point, do not.
 * Returns 0, or -1 on allocation failure (then no hint). */
int weft_linger_enable(struct weft_loop *loop);

#endif
