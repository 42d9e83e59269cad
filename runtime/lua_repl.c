/* lua_repl.c -- weft._repl: line input for `weft repl` on the event loop.
 *
 *   local r = _repl.open { history = PATH }  -- at most one at a time
 *   local line = r:read(prompt)   -- suspends the calling task until a whole
 *                                 -- line arrives; nil at end of input
 *   r:add_history(line)           -- and saved to PATH on close
 *   r:running(task | nil)         -- the task Ctrl-C cancels (the line that runs);
 *                                 -- true when Ctrl-C cancelled the one it replaces
 *   r:tty()                       -- true when stdin is a terminal
 *   r:close()
 *
 * On a terminal, libedit's callback interface reads keys from an ev_io
 * watcher, so timers, reloads and background tasks go on while a line is
 * typed. The line handler removes itself (libedit otherwise leaves the
 * terminal cooked with no prompt); read() installs it again with the next
 * prompt. Without a terminal (a pipe), lines are read directly from the
 * descriptor: libedit's callback mode loses lines there (TOOLCHAIN.md).
 *
 * Tab completion walks the Lua globals with raw access only (no Lua code
 * runs inside the libev callback): `weft.mo<TAB>` completes from the table's
 * keys, the __index tables of its metatable chain (a class and its base
 * classes) and, when present, its `_lazy` table of names (weft's lazily
 * loaded modules). After a colon (`r:st<TAB>`) only methods are offered:
 * the keys whose values are functions.
 *
 * SIGINT while a line runs cancels that line's task; at the prompt it drops
 * the line being typed. Either way the REPL goes on.
 */

#include <errno.h>
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "bindings.h"
#include "buf.h"
#include "loop.h"
#include "luax.h"
#include "task.h"

#define REPL_MT "weft.repl"

struct repl {
    struct weft_loop *loop;
    lua_State *L;              /* main state: completion reads its globals */
    ev_io io;
    struct weft_wait wait;
    struct weft_task *waiter;  /* task suspended in read() */
    struct weft_task *running; /* task Ctrl-C cancels */
    int running_ref;           /* keeps it alive */
    int interrupted;           /* Ctrl-C cancelled `running` (on a terminal a newline
                                  followed the ^C echo) */
    int tty;
    int open;
    int installed;             /* libedit line handler installed */
    int eof;
    char *history;             /* file, or NULL */
    struct weft_buf in;        /* lines that arrived with nobody waiting
                                  (pipe input, or a tty line) */
};

static struct repl *current; /* libedit's state is global: one REPL */

/* ------------------------------------------------------------ lines */

/* Input that cannot be kept (out of memory) takes what was buffered with
 * it: lines with a piece missing must not run as code. */
static void buf_append(struct repl *r, const char *s, size_t n) {
    if (weft_buf_append(&r->in, s, n) != 0) weft_buf_reset(&r->in);
}

/* Push the next complete line of the buffer onto co (nil at the end of
 * input; a last line without a newline counts). Returns 0 when no line is
 * complete yet (nothing pushed). */
static int take_line(struct repl *r, lua_State *co) {
    struct weft_buf *b = &r->in;
    char *nl = b->len ? memchr(b->data, '\n', b->len) : NULL;
    if (nl) {
        size_t n = (size_t)(nl - b->data);
        lua_pushlstring(co, b->data, n > 0 && b->data[n - 1] == '\r' ? n - 1 : n);
        weft_buf_drop(b, n + 1);
        return 1;
    }
    if (!r->eof) return 0;
    if (b->len) {
        lua_pushlstring(co, b->data, b->len);
        weft_buf_reset(b);
    } else {
        lua_pushnil(co);
    }
    return 1;
}

/* Hand the waiting task a line, when one is complete. Returns 1 when the
 * waiter was woken. */
static int deliver(struct repl *r) {
    if (!r->waiter) return 0;
    struct weft_task *t = r->waiter;
    if (!take_line(r, t->co)) return 0;
    r->waiter = NULL;
    ev_io_stop(r->loop->ev, &r->io);
    weft_task_wake(t, 1);
    return 1;
}

static void on_line(char *line) {
    struct repl *r = current;
    if (!r) {
        free(line);
        return;
    }
    rl_callback_handler_remove();
    r->installed = 0;
    if (line) {
        buf_append(r, line, strlen(line));
        buf_append(r, "\n", 1);
        free(line);
    } else {
        r->eof = 1; /* Ctrl-D on an empty line */
        fputc('\n', stdout);
        fflush(stdout);
    }
    deliver(r);
}

static void io_cb(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    (void)revents;
    struct repl *r = (struct repl *)((char *)w - offsetof(struct repl, io));
    if (r->tty) {
        if (r->installed) rl_callback_read_char();
        return;
    }
    char tmp[4096];
    ssize_t n = read(r->io.fd, tmp, sizeof tmp);
    if (n > 0) {
        buf_append(r, tmp, (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        r->eof = 1;
    }
    deliver(r);
}

static void read_cancel(struct weft_wait *w) {
    struct repl *r = (struct repl *)((char *)w - offsetof(struct repl, wait));
    r->waiter = NULL;
    ev_io_stop(r->loop->ev, &r->io);
    if (r->installed) {
        rl_callback_handler_remove();
        r->installed = 0;
    }
}

/* ------------------------------------------------------- completion */

static char **candidates;
static size_t ncand, icand;

static void add_candidate(const char *s) {
    char **p = realloc(candidates, (ncand + 1) * sizeof *p);
    if (!p) return;
    candidates = p;
    candidates[ncand] = strdup(s);
    if (candidates[ncand]) ncand++;
}

/* keys of the table at the top of the stack starting with `part`, as
 * prefix .. key; with `methods`, only the keys whose values are functions */
static void keys_of(lua_State *L, const char *prefix, size_t plen, const char *part, size_t partlen,
                    int methods) {
    char full[512];
    lua_pushnil(L);
    while (lua_next(L, -2)) { /* [t, key, value] */
        int fn = lua_type(L, -1) == LUA_TFUNCTION;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || (methods && !fn)) continue;
        size_t kl;
        const char *k = lua_tolstring(L, -1, &kl);
        if (kl < partlen || strncmp(k, part, partlen) != 0) continue;
        if (k[0] == '_' && partlen == 0) continue; /* private fields only when asked for */
        if (plen + kl + 1 > sizeof full) continue;
        memcpy(full, prefix, plen);
        memcpy(full + plen, k, kl + 1);
        int dup = 0;
        for (size_t i = 0; i < ncand && !dup; i++) dup = strcmp(candidates[i], full) == 0;
        if (!dup) add_candidate(full);
    }
}

static void collect(const char *text) {
    lua_State *L = current->L;
    if (!lua_checkstack(L, 24)) return; /* the walk, 8 __index levels, lua_next */
    int top = lua_gettop(L);
    const char *last = NULL;
    for (const char *p = text; *p; p++)
        if (*p == '.' || *p == ':') last = p;
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    if (last) {
        /* walk the path before the last separator with raw access */
        const char *p = text;
        while (p < last) {
            const char *q = p;
            while (q < last && *q != '.' && *q != ':') q++;
            lua_pushlstring(L, p, (size_t)(q - p));
            lua_rawget(L, -2);
            if (!lua_istable(L, -1)) {
                /* userdata with a metatable (a limiter, a task): its methods */
                if (lua_getmetatable(L, -1)) {
                    lua_pushliteral(L, "__index");
                    lua_rawget(L, -2);
                    lua_remove(L, -2);
                    lua_remove(L, -2);
                }
            }
            lua_remove(L, -2);
            if (!lua_istable(L, -1)) {
                lua_settop(L, top);
                return;
            }
            p = q + 1;
        }
    }
    const char *part = last ? last + 1 : text;
    size_t plen = (size_t)(part - text), partlen = strlen(part);
    int methods = last && *last == ':'; /* `r:` calls a method: no data fields */
    keys_of(L, text, plen, part, partlen, methods);
    if (!methods) {
        lua_pushliteral(L, "_lazy"); /* weft's lazy names are a plain field */
        lua_rawget(L, -2);
        if (lua_istable(L, -1)) keys_of(L, text, plen, part, partlen, 0);
        lua_pop(L, 1);
    }
    /* the __index tables up the metatable chain: [t] -> [t, index] -> ...
     * (bounded: a chain may loop back on itself) */
    for (int depth = 0; depth < 8 && lua_getmetatable(L, -1); depth++) { /* [.., x, mt] */
        lua_pushliteral(L, "__index");
        lua_rawget(L, -2); /* [.., x, mt, index] */
        lua_remove(L, -2); /* [.., x, index] */
        if (!lua_istable(L, -1)) break;
        keys_of(L, text, plen, part, partlen, methods);
    }
    lua_settop(L, top);
}

static char *generator(const char *text, int state) {
    if (state == 0) {
        for (size_t i = 0; i < ncand; i++) free(candidates[i]);
        ncand = icand = 0;
        if (current && current->L) collect(text);
    }
    if (icand < ncand) {
        char *s = candidates[icand];
        candidates[icand++] = NULL;
        return s;
    }
    return NULL;
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    return rl_completion_matches(text, generator);
}

/* ------------------------------------------------------------ SIGINT */

static int on_sigint(void *ud) {
    struct repl *r = ud;
    if (r->running) {
        if (r->tty) {
            fputc('\n', stdout); /* after the terminal's ^C echo */
            fflush(stdout);
        }
        r->interrupted = 1;
        weft_task_cancel(r->running, "interrupted");
        return 1;
    }
    if (r->tty && r->installed) {
        /* drop the line being typed and show a fresh prompt */
        fputs("^C\n", stdout);
        fflush(stdout);
        char *prompt = rl_prompt ? strdup(rl_prompt) : NULL;
        rl_callback_handler_remove();
        rl_callback_handler_install(prompt ? prompt : "> ", on_line);
        free(prompt);
        return 1;
    }
    return 0;
}

/* --------------------------------------------------------------- Lua */

static struct repl *check(lua_State *L) {
    struct repl *r = luaL_checkudata(L, 1, REPL_MT);
    if (!r->open) luaL_error(L, "repl: closed");
    return r;
}

static int l_open(lua_State *L) {
    if (current) return luaL_error(L, "weft._repl.open: a REPL is already open");
    luaL_checktype(L, 1, LUA_TTABLE);
    struct weft_loop *loop = weft_loop_get(L);
    struct repl *r = lua_newuserdata(L, sizeof *r);
    memset(r, 0, sizeof *r);
    weft_buf_init(&r->in, WEFT_BUF_NO_MAX, 0); /* typed code: nothing to zero */
    r->loop = loop;
    r->L = loop->L;
    r->running_ref = LUA_NOREF;
    r->tty = isatty(STDIN_FILENO);
    r->wait.cancel = read_cancel;
    r->wait.what = "input";
    lua_getfield(L, 1, "history");
    if (lua_isstring(L, -1)) r->history = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, 1, "tty");
    if (lua_isboolean(L, -1)) r->tty = r->tty && lua_toboolean(L, -1);
    lua_pop(L, 1);
    luaL_getmetatable(L, REPL_MT);
    lua_setmetatable(L, -2);
    ev_io_init(&r->io, io_cb, STDIN_FILENO, EV_READ);
    if (r->tty) {
        rl_readline_name = "weft";
        rl_attempted_completion_function = complete;
        rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]}";
        using_history();
        stifle_history(1000);
        if (r->history) read_history(r->history);
    }
    r->open = 1;
    current = r;
    loop->on_sigint = on_sigint;
    loop->on_sigint_ud = r;
    return 1;
}

static int l_read(lua_State *L) {
    struct repl *r = check(L);
    const char *prompt = luaL_optstring(L, 2, "> ");
    if (r->waiter) return luaL_error(L, "repl:read: another task is reading");
    struct weft_task *t = weft_task_check_current(L, "repl:read");
    if (take_line(r, L)) return 1; /* a line already buffered (pipe input, type-ahead) */
    if (r->tty) {
        rl_callback_handler_install(prompt, on_line);
        r->installed = 1;
    }
    r->waiter = t;
    ev_io_start(r->loop->ev, &r->io);
    return weft_task_suspend(L, t, &r->wait);
}

static int l_add_history(lua_State *L) {
    struct repl *r = check(L);
    const char *line = luaL_checkstring(L, 2);
    if (r->tty && *line) add_history(line);
    return 0;
}

static int l_running(lua_State *L) {
    struct repl *r = check(L);
    int interrupted = r->interrupted;
    r->interrupted = 0;
    if (r->running_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, r->running_ref);
        r->running_ref = LUA_NOREF;
    }
    r->running = NULL;
    if (!lua_isnoneornil(L, 2)) {
        r->running = weft_task_check(L, 2);
        lua_pushvalue(L, 2);
        r->running_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushboolean(L, interrupted);
    return 1;
}

static int l_tty(lua_State *L) {
    lua_pushboolean(L, check(L)->tty);
    return 1;
}

static void shut(lua_State *L, struct repl *r) {
    if (!r->open) return;
    r->open = 0;
    if (r->installed) {
        rl_callback_handler_remove();
        r->installed = 0;
    }
    ev_io_stop(r->loop->ev, &r->io);
    if (r->tty && r->history) write_history(r->history);
    if (r->running_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->running_ref);
    r->running_ref = LUA_NOREF;
    r->running = NULL;
    if (r->loop->on_sigint_ud == r) {
        r->loop->on_sigint = NULL;
        r->loop->on_sigint_ud = NULL;
    }
    free(r->history);
    r->history = NULL;
    weft_buf_free(&r->in);
    for (size_t i = 0; i < ncand; i++) free(candidates[i]);
    free(candidates);
    candidates = NULL;
    ncand = icand = 0;
    if (current == r) current = NULL;
}

static int l_close(lua_State *L) {
    struct repl *r = luaL_checkudata(L, 1, REPL_MT);
    if (r->waiter) return luaL_error(L, "repl:close: a task is reading");
    shut(L, r);
    return 0;
}

static int l_gc(lua_State *L) {
    struct repl *r = luaL_checkudata(L, 1, REPL_MT);
    shut(L, r);
    return 0;
}

/* _repl.exit(): cancel every task (the ones started at the prompt) so the
 * process ends with the REPL. */
static int l_exit(lua_State *L) {
    weft_loop_interrupt(weft_loop_get(L));
    return 0;
}

int luaopen_weft_repl(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"read", l_read}, {"add_history", l_add_history}, {"running", l_running},
        {"tty", l_tty}, {"close", l_close}, {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    weft_register_class(L, REPL_MT, methods, meta);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, l_exit);
    lua_setfield(L, -2, "exit");
    return 1;
}
