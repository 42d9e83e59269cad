/* linger.c -- the one-time hint about what keeps a finished script running. */
#include "linger.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "task.h"

#define NAMED 3     /* places named per kind */
#define MAX_SITES 16 /* distinct places told apart per kind; beyond, "more" */

/* ------------------------------------------------------------- keepers */

void weft_linger_keep(struct weft_loop *loop, struct weft_keeper *k) {
    if (k->kept) return;
    k->kept = 1;
    k->next = NULL;
    /* append: the hint names places in the order they were made */
    struct weft_keeper **pp = &loop->keepers, *prev = NULL;
    while (*pp) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    k->prev = prev;
    *pp = k;
}

void weft_linger_release(struct weft_loop *loop, struct weft_keeper *k) {
    if (!k->kept) return;
    k->kept = 0;
    if (k->prev) k->prev->next = k->next;
    else loop->keepers = k->next;
    if (k->next) k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

/* -------------------------------------------------------------- report */

/* How many things of one kind, and their distinct places in order. */
struct tally {
    int count;
    int nsites;                /* distinct non-empty places kept */
    int more;                  /* places beyond MAX_SITES (not told apart) */
    char sites[MAX_SITES][WEFT_WHERE_MAX];
};

static void tally_add(struct tally *t, const char *where) {
    t->count++;
    if (!where[0]) return;
    for (int i = 0; i < t->nsites; i++)
        if (strcmp(t->sites[i], where) == 0) return;
    if (t->nsites == MAX_SITES) {
        t->more = 1;
        return;
    }
    snprintf(t->sites[t->nsites++], WEFT_WHERE_MAX, "%s", where);
}

/* A line being written: truncated when full, always NUL-terminated. */
struct out {
    char *p;
    size_t cap, len;
};

static void add(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct out *o, const char *fmt, ...) {
    if (o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (w > 0) o->len += (size_t)w < o->cap - o->len ? (size_t)w : o->cap - o->len - 1;
}

/* "2 tasks (weft.spawn at x.lua:7, x.lua:9)" */
static void add_tally(struct out *o, const struct tally *t, const char *kind, const char *api) {
    add(o, "%d %s%s", t->count, kind, t->count == 1 ? "" : "s");
    if (!t->nsites) return;
    add(o, " (%s at ", api);
    for (int i = 0; i < t->nsites && i < NAMED; i++) add(o, "%s%s", i ? ", " : "", t->sites[i]);
    if (t->more) add(o, " and more places");
    else if (t->nsites > NAMED) add(o, " and %d more place%s", t->nsites - NAMED, t->nsites - NAMED == 1 ? "" : "s");
    add(o, ")");
}

/* The hint's line into buf (cap bytes, ending in a newline), or 0 when
 * nothing the user made is left. */
static int compose(struct weft_loop *loop, char *buf, size_t cap) {
    struct tally servers = {0}, tasks = {0};
    const char *api = "weft.http.serve";
    for (struct weft_keeper *k = loop->keepers; k; k = k->next) {
        tally_add(&servers, k->where);
        api = k->api;
    }
    /* loop->tasks is newest first: name places oldest first */
    struct weft_task *t = loop->tasks;
    while (t && t->live_next) t = t->live_next;
    for (; t; t = t->live_prev) {
        if (!t->spawned || weft_task_waits_for_tasks(t)) continue;
        char where[WEFT_WHERE_MAX];
        weft_task_site(t, where, sizeof where);
        tally_add(&tasks, where);
    }
    if (!servers.count && !tasks.count) return 0;
    struct out o = {buf, cap - 1, 0}; /* room for the newline */
    buf[0] = '\0';
    int one = servers.count + tasks.count == 1;
    add(&o, "weft: the script has ended but ");
    if (servers.count) add_tally(&o, &servers, "server", api);
    if (servers.count && tasks.count) add(&o, " and ");
    if (tasks.count) add_tally(&o, &tasks, "task", "weft.spawn");
    add(&o, " %s it running; ", one ? "keeps" : "keep");
    if (servers.count && tasks.count) add(&o, "close them (srv:close(), task:cancel())");
    else if (servers.count) add(&o, "close %s (srv:close())", one ? "it" : "them");
    else add(&o, "cancel %s (task:cancel())", one ? "it" : "them");
    add(&o, " or call weft.exit()");
    buf[o.len] = '\n';
    buf[o.len + 1] = '\0';
    return 1;
}

/* ---------------------------------------------------------------- timer */

/* The timer is unreferenced (it keeps nothing alive), which libev wants
 * balanced: ev_ref before it stops, by itself (here, at once) or not. */
static void linger_start(struct weft_loop *loop) {
    /* libev's time is cached from before the main chunk ran, which may
     * have run long without yielding */
    ev_now_update(loop->ev);
    ev_timer_set(&loop->linger, WEFT_LINGER_DELAY, 0.);
    ev_timer_start(loop->ev, &loop->linger);
    ev_unref(loop->ev);
}

static void linger_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_loop *loop = w->data;
    ev_ref(ev);
    if (loop->exit_requested || loop->interrupted) return;
    char line[1024];
    if (compose(loop, line, sizeof line)) weft_log_emit(line, strlen(line));
    else linger_start(loop); /* only weft's own work left for now: look again later */
}

static void main_done(void *ud) {
    struct weft_loop *loop = ud;
    loop->on_main_done = NULL; /* once */
    if (!ev_is_active(&loop->linger)) linger_start(loop);
}

static void linger_close(void *ud) {
    struct weft_loop *loop = ud;
    loop->on_main_done = NULL;
    if (ev_is_active(&loop->linger)) {
        ev_ref(loop->ev);
        ev_timer_stop(loop->ev, &loop->linger);
    }
}

int weft_linger_enable(struct weft_loop *loop) {
    if (weft_loop_on_close(loop, linger_close, loop) != 0) return -1;
    ev_timer_init(&loop->linger, linger_cb, WEFT_LINGER_DELAY, 0.);
    loop->linger.data = loop;
    loop->on_main_done = main_done;
    loop->on_main_done_ud = loop;
    return 0;
}
