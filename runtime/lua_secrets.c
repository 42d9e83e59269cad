/* lua_secrets.c -- weft._secrets: opaque secret handles for Lua.
 *
 * A handle is a userdata holding only its class mark and a pointer to a
 * struct weft_secret; the value never becomes a Lua string through this
 * module: there is no function returning it. tostring gives "<secret
 * NAME>", concatenation
 * raises, weft.json refuses userdata, and the metatable is hidden
 * (__metatable). Values are loaded from the environment, a file or a
 * command by C code here, or handed in by a Lua source plugin (set).
 * Honest limit: a script with the ffi or debug library can read process
 * memory; plugins run sandboxed without them. The protection is against
 * leaks through logs, errors, serialization and printing.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings.h"
#include "clock.h"
#include "log.h"
#include "loop.h"
#include "luax.h"
#include "secrets.h"
#include "task.h"

#define SECRET_MT "weft.secret"

static const char SECRET_MARK = 'K';
struct lsecret {
    const char *mark;          /* &SECRET_MARK (weft_check_marked) */
    struct weft_secret *s;     /* one reference, released by __gc */
};

struct weft_secret *weft_lua_check_secret(lua_State *L, int idx) {
    struct lsecret *h = weft_check_marked(L, idx, &SECRET_MARK, sizeof *h, SECRET_MT);
    return h->s;
}

static struct lsecret *check(lua_State *L) {
    return weft_check_marked(L, 1, &SECRET_MARK, sizeof(struct lsecret), SECRET_MT);
}

/* _secrets.handle(name) */
static int l_handle(lua_State *L) {
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    if (n == 0 || n > 512) return luaL_error(L, "weft.secret: a reference of 1..512 bytes is needed");
    struct lsecret *h = lua_newuserdata(L, sizeof *h);
    h->mark = &SECRET_MARK;
    h->s = NULL;
    luaL_getmetatable(L, SECRET_MT);
    lua_setmetatable(L, -2);
    h->s = weft_secret_get(name);
    if (!h->s) return luaL_error(L, "weft.secret: out of memory");
    return 1;
}

static int fail(lua_State *L, struct weft_secret *s, const char *fmt, const char *detail) {
    lua_pushnil(L);
    weft_push_error(L, "auth", fmt, s->name, detail);
    return 2;
}

static int store(lua_State *L, struct weft_secret *s, const char *v, size_t len, double ttl) {
    const char *why = NULL;
    double expires = ttl > 0 ? weft_clock_now(NULL) + ttl : 0;
    int was = s->value != NULL;
    /* The same value again (a file not rotated yet, a command printing the
     * same key): only its expiry moves. The version changes only with the
     * value, so a caller can tell whether a refresh gave anything new
     * (weft.http resends after a 401 only then) without seeing the value. */
    if (was && s->len == len && memcmp(s->value, v, len) == 0) s->expires = expires;
    else if (weft_secret_set(s, v, len, expires, &why) != 0) return fail(L, s, "secret %s %s", why);
    if (was) s->refreshes++;
    else s->loads++;
    weft_log(WEFT_LOG_INFO, "secret %s %s", s->name, was ? "refreshed" : "loaded");
    lua_pushboolean(L, 1);
    return 1;
}

/* h:_set(value[, ttl]) -- for Lua source plugins. */
static int l_set(lua_State *L) {
    struct lsecret *h = check(L);
    size_t len;
    const char *v = luaL_checklstring(L, 2, &len);
    return store(L, h->s, v, len, luaL_optnumber(L, 3, 0));
}

/* h:_load_env(var) */
static int l_load_env(lua_State *L) {
    struct lsecret *h = check(L);
    const char *var = luaL_checkstring(L, 2);
    const char *v = getenv(var);
    if (!v) return fail(L, h->s, "secret %s: environment variable %s is not set", var);
    if (!*v) return fail(L, h->s, "secret %s: environment variable %s is empty", var);
    return store(L, h->s, v, strlen(v), luaL_optnumber(L, 3, 0));
}

/* h:_load_file(path, allow_insecure, ttl) */
static int l_load_file(lua_State *L) {
    struct lsecret *h = check(L);
    const char *path = luaL_checkstring(L, 2);
    int insecure = lua_toboolean(L, 3);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(L, h->s, "secret %s: cannot open the file: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(L, h->s, "secret %s: %s", "not a regular file");
    }
    if ((st.st_mode & 077) && !insecure) {
        close(fd);
        char detail[160];
        snprintf(detail, sizeof detail,
                 "mode %03o: readable by group or others; chmod 600 it (or allow_insecure=true)",
                 (unsigned)(st.st_mode & 0777));
        return fail(L, h->s, "secret %s: file %s", detail);
    }
    if (st.st_size > 1024 * 1024) {
        close(fd);
        return fail(L, h->s, "secret %s: %s", "file larger than 1 MiB");
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return luaL_error(L, "out of memory");
    }
    ssize_t n;
    while (len < cap && (n = read(fd, buf + len, cap - len)) > 0) len += (size_t)n;
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    int r = len ? store(L, h->s, buf, len, luaL_optnumber(L, 4, 0))
                : fail(L, h->s, "secret %s: %s", "the file is empty");
    explicit_bzero(buf, cap);
    free(buf);
    return r;
}

/* ------------------------------------------------------ cmd: source */

struct cmdrun {
    struct weft_wait wait;
    struct weft_task *task;
    struct weft_loop *loop;
    struct weft_secret *s;
    pid_t pid;
    int fd;
    ev_io io;
    ev_timer timer;
    ev_child child;
    char *buf;
    size_t len, cap;
    int eof, exited, status, timed_out;
    double ttl, timeout;
};

static void cmd_free(struct cmdrun *c) {
    ev_io_stop(c->loop->ev, &c->io);
    ev_timer_stop(c->loop->ev, &c->timer);
    if (c->fd >= 0) close(c->fd);
    if (!c->exited) {
        kill(c->pid, SIGKILL);
        ev_child_stop(c->loop->ev, &c->child);
        waitpid(c->pid, NULL, 0); /* killed: returns at once */
    } else {
        ev_child_stop(c->loop->ev, &c->child);
    }
    if (c->buf) {
        explicit_bzero(c->buf, c->cap);
        free(c->buf);
    }
    weft_secret_release(c->s);
    free(c);
}

static void cmd_finish(struct cmdrun *c) {
    struct weft_task *t = c->task;
    lua_State *co = t->co;
    int n = 2;
    if (c->timed_out) {
        lua_pushnil(co);
        weft_push_error(co, "auth", "secret %s: the command did not finish within %.3g s", c->s->name, c->timeout);
    } else if (!WIFEXITED(c->status) || WEXITSTATUS(c->status) != 0) {
        lua_pushnil(co);
        weft_push_error(co, "auth", "secret %s: the command failed (exit status %d)", c->s->name,
                        WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1);
    } else {
        size_t len = c->len;
        while (len > 0 && (c->buf[len - 1] == '\n' || c->buf[len - 1] == '\r')) len--;
        if (len == 0) {
            lua_pushnil(co);
            weft_push_error(co, "auth", "secret %s: the command printed nothing", c->s->name);
        } else {
            n = store(co, c->s, c->buf, len, c->ttl);
        }
    }
    cmd_free(c);
    weft_task_wake(t, n);
}

static void cmd_maybe_done(struct cmdrun *c) {
    if ((c->eof && c->exited) || c->timed_out) cmd_finish(c);
}

static void cmd_io_cb(struct ev_loop *ev, ev_io *w, int revents) {
    struct cmdrun *c = w->data;
    if (c->len + 4096 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8192;
        char *nb = malloc(cap);
        if (!nb) return;
        if (c->buf) {
            memcpy(nb, c->buf, c->len);
            explicit_bzero(c->buf, c->cap);
            free(c->buf);
        }
        c->buf = nb;
        c->cap = cap;
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    c->eof = 1;
    ev_io_stop(ev, &c->io);
    cmd_maybe_done(c);
}

static void cmd_child_cb(struct ev_loop *ev, ev_child *w, int revents) {
    struct cmdrun *c = w->data;
    ev_child_stop(ev, w);
    c->exited = 1;
    c->status = w->rstatus;
    cmd_maybe_done(c);
}

static void cmd_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct cmdrun *c = w->data;
    c->timed_out = 1;
    cmd_finish(c);
}

static void cmd_cancel(struct weft_wait *w) {
    cmd_free((struct cmdrun *)w);
}

/* h:_load_cmd(command, timeout, ttl) -- runs /bin/sh -c command; stdout is
 * the value (trailing newline trimmed); stderr is discarded. */
static int l_load_cmd(lua_State *L) {
    struct lsecret *h = check(L);
    const char *cmd = luaL_checkstring(L, 2);
    double timeout = luaL_optnumber(L, 3, 10);
    struct weft_task *t = weft_task_check_current(L, "weft.secret(\"cmd:...\")");
    struct weft_loop *loop = weft_loop_get(L);
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return fail(L, h->s, "secret %s: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return fail(L, h->s, "secret %s: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(p[1], 1);
        dup2(nul, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    struct cmdrun *c = calloc(1, sizeof *c);
    if (!c) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(p[0]);
        return luaL_error(L, "out of memory");
    }
    c->wait.cancel = cmd_cancel;
    c->wait.what = "secret command";
    c->task = t;
    c->loop = loop;
    c->s = h->s;
    c->s->refs++;
    c->pid = pid;
    c->fd = p[0];
    c->ttl = luaL_optnumber(L, 4, 0);
    c->timeout = timeout;
    ev_io_init(&c->io, cmd_io_cb, c->fd, EV_READ);
    c->io.data = c;
    ev_io_start(loop->ev, &c->io);
    ev_child_init(&c->child, cmd_child_cb, pid, 0);
    c->child.data = c;
    ev_child_start(loop->ev, &c->child);
    ev_now_update(loop->ev);
    ev_timer_init(&c->timer, cmd_timer_cb, timeout, 0.);
    c->timer.data = c;
    ev_timer_start(loop->ev, &c->timer);
    return weft_task_suspend(L, t, &c->wait);
}

/* ------------------------------------------------------- introspect */

static int l_index(lua_State *L) {
    struct lsecret *h = check(L);
    const char *k = luaL_checkstring(L, 2);
    struct weft_secret *s = h->s;
    if (strcmp(k, "name") == 0) lua_pushstring(L, s->name);
    else if (strcmp(k, "loaded") == 0) lua_pushboolean(L, weft_secret_valid(s, weft_clock_now(NULL)));
    else if (strcmp(k, "version") == 0) lua_pushnumber(L, (lua_Number)s->version);
    else if (strcmp(k, "expires_in") == 0) {
        if (s->expires > 0) lua_pushnumber(L, s->expires - weft_clock_now(NULL));
        else lua_pushnil(L);
    } else if (strcmp(k, "events") == 0) {
        lua_createtable(L, 0, 3);
        lua_pushnumber(L, (lua_Number)s->loads);
        lua_setfield(L, -2, "loaded");
        lua_pushnumber(L, (lua_Number)s->refreshes);
        lua_setfield(L, -2, "refreshed");
        lua_pushnumber(L, (lua_Number)s->rejections);
        lua_setfield(L, -2, "rejected");
    } else {
        /* the private loaders, reachable only through this module's table */
        lua_getfield(L, lua_upvalueindex(1), k);
    }
    return 1;
}

static int l_rejected(lua_State *L) {
    struct lsecret *h = check(L);
    h->s->rejections++;
    weft_log(WEFT_LOG_WARN, "secret %s rejected by the provider", h->s->name);
    return 0;
}

static int l_tostring(lua_State *L) {
    lua_pushfstring(L, "<secret %s>", check(L)->s->name);
    return 1;
}

static int l_concat(lua_State *L) {
    return luaL_error(L, "a secret cannot be concatenated (it prints as <secret NAME>; pass the handle "
                         "to weft.http auth instead)");
}

static int l_gc(lua_State *L) {
    struct lsecret *h = check(L);
    if (h->s) {
        weft_secret_release(h->s);
        h->s = NULL;
    }
    return 0;
}

static int l_eq(lua_State *L) {
    struct lsecret *a = luaL_checkudata(L, 1, SECRET_MT), *b = luaL_checkudata(L, 2, SECRET_MT);
    lua_pushboolean(L, a->s == b->s);
    return 1;
}

/* _secrets.redact(text) -> text with every loaded value replaced */
static int l_redact(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out;
    size_t olen;
    if (weft_secrets_redact(s, len, &out, &olen) != 0) return luaL_error(L, "redaction failed");
    if (!out) {
        lua_pushvalue(L, 1);
        return 1;
    }
    lua_pushlstring(L, out, olen);
    explicit_bzero(out, olen);
    free(out);
    return 1;
}

static int l_is(lua_State *L) {
    lua_pushboolean(L, luaL_testudata(L, 1, SECRET_MT) != NULL);
    return 1;
}

/* _secrets.state(v) -> loaded, version for a handle; nothing for any
 * other value (what weft.http reads of each secret before it sends, in
 * one call) */
static int l_state(lua_State *L) {
    struct lsecret *h = lua_touserdata(L, 1);
    if (!h || lua_objlen(L, 1) != sizeof *h || h->mark != &SECRET_MARK) return 0;
    if (!h->s) return 0; /* (a handle its __gc already released) */
    lua_pushboolean(L, weft_secret_valid(h->s, weft_clock_now(NULL)));
    lua_pushnumber(L, (lua_Number)h->s->version);
    return 2;
}

/* _secrets.sha256_hex(handle) -> the SHA-256 of the loaded value as 64 hex
 * digits (weft serve compares a client's key by its digest, so the value
 * never becomes a Lua string), or nil when the handle holds no valid value. */
static int l_sha256_hex(lua_State *L) {
    struct lsecret *h = check(L);
    if (!h->s || !weft_secret_valid(h->s, weft_clock_now(NULL))) return 0;
    char out[65];
    if (weft_sha256_hex(h->s->value, h->s->len, out) != 0)
        return luaL_error(L, "sha256: the digest failed");
    lua_pushlstring(L, out, 64);
    return 1;
}

static int l_loaded(lua_State *L) {
    lua_pushinteger(L, weft_secrets_loaded());
    return 1;
}

int luaopen_weft_secrets(lua_State *L) {
    static const luaL_Reg priv[] = {
        {"_set", l_set}, {"_load_env", l_load_env}, {"_load_file", l_load_file},
        {"_load_cmd", l_load_cmd}, {"_rejected", l_rejected}, {NULL, NULL},
    };
    /* l_index reads the fields and finds the private methods in its
     * upvalue, the method table (weft_register_class) */
    static const luaL_Reg meta[] = {
        {"__index", l_index}, {"__tostring", l_tostring}, {"__concat", l_concat},
        {"__gc", l_gc},       {"__eq", l_eq},             {NULL, NULL},
    };
    weft_register_class(L, SECRET_MT, priv, meta);
    static const luaL_Reg fns[] = {
        {"handle", l_handle}, {"redact", l_redact},         {"is", l_is}, {"state", l_state},
        {"loaded", l_loaded}, {"sha256_hex", l_sha256_hex}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
