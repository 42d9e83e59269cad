/* floor.c -- the floor under bench/pipeline: the work a call must do, done
 * in C. bench_baseline's client (raw libcurl-multi on libev, keep-alive, C
 * slots each reusing its easy handle) plus, for every request, the request
 * built as a Lua table and encoded with cjson.encode, and for every answer
 * the body collected and decoded with cjson.decode, reading the reply text
 * and the token counts a caller needs. The Lua state is a plain one
 * (luaL_newstate, the standard libraries, cjson linked in), not weft's: no
 * tasks, no pipeline. What the pipeline costs over this floor is what Lua
 * code and weft's mechanisms add.
 *
 *   bench_floor N C URL BODY_FILE [HEADER...]
 *
 * BODY_FILE is the request the other clients send (client.lua body FILE);
 * its model, max_tokens and prompt are read once at start. A request that
 * fails, or an answer without choices[1].message.content (a string) or
 * usage.prompt_tokens and usage.completion_tokens (numbers), counts as
 * failed, and the exit status is then 1. Prints requests/s and its own CPU
 * time per request, in bench_baseline's words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lua-cjson.h> /* Debian's: luaopen_cjson alone, needs lua.h first */
#include <lualib.h>

#include "../curl_ev.h"
#include "buf.h"

/* Stack slots of L that stay put for the whole run: cjson's two functions
 * and the request's constant strings (a Lua caller has them as constants). */
enum { ENCODE = 1, DECODE, MODEL, PROMPT, BASE = PROMPT };

#define MAX_ANSWER (1 << 20) /* bytes; a bigger answer fails its request */

static lua_State *L;
static long started, finished, failed;
static long max_tokens;
static double tokens; /* prompt + completion tokens of all answers read */
static struct bench_args args; /* (its body is the template, read by setup_lua) */

/* One of the C concurrent requests: its easy handle is reused (keep-alive)
 * from one request to the next. Owned by main's slot array. */
struct slot {
    CURL *easy;
    struct weft_buf req; /* the encoded request; curl reads it while the
                            transfer runs (CURLOPT_POSTFIELDS does not copy) */
    struct weft_buf ans; /* the answer's body, filled by write_cb */
};

/* Count a failed request and say why, the first time only: a run that
 * goes wrong says why without flooding the terminal. */
static void fail(const char *what, const char *detail) {
    if (failed++ == 0)
        fprintf(stderr, "floor: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

/* ------------------------------------------------------------ the Lua side */

/* Push t[k] of the value on top, or nil when that is not a table: a
 * malformed answer must not raise outside a protected call. */
static void get(const char *k) {
    if (lua_istable(L, -1))
        lua_getfield(L, -1, k);
    else
        lua_pushnil(L);
}

/* The same for t[i]. */
static void get_index(int i) {
    if (lua_istable(L, -1))
        lua_rawgeti(L, -1, i);
    else
        lua_pushnil(L);
}

/* Build the request table and encode it into s->req. Returns 0, or -1 when
 * cjson or the buffer failed (counted as a failed request). */
static int encode_request(struct slot *s) {
    lua_pushvalue(L, ENCODE);
    lua_createtable(L, 0, 3); /* [.., encode, req] */
    lua_pushvalue(L, MODEL);
    lua_setfield(L, -2, "model");
    lua_pushinteger(L, max_tokens);
    lua_setfield(L, -2, "max_tokens");
    lua_createtable(L, 1, 0); /* [.., encode, req, messages] */
    lua_createtable(L, 0, 2); /* [.., encode, req, messages, message] */
    lua_pushliteral(L, "user");
    lua_setfield(L, -2, "role");
    lua_pushvalue(L, PROMPT);
    lua_setfield(L, -2, "content");
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "messages"); /* [.., encode, req] */
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fail("cjson.encode", lua_tostring(L, -1));
        lua_settop(L, BASE);
        return -1;
    }
    size_t n;
    const char *json = lua_tolstring(L, -1, &n); /* [.., body] */
    weft_buf_reset(&s->req);
    int rc = weft_buf_append(&s->req, json, n);
    lua_settop(L, BASE);
    if (rc != 0) {
        fail("out of memory", NULL);
        return -1;
    }
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->req.data);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    return 0;
}

/* Decode the answer in s->ans and read the reply text and the token counts.
 * Returns 0, or -1 when it is not JSON or one of them is missing. */
static int decode_answer(struct slot *s) {
    lua_pushvalue(L, DECODE);
    lua_pushlstring(L, s->ans.data ? s->ans.data : "", s->ans.len);
    if (lua_pcall(L, 1, 1, 0) != 0) { /* [.., answer] */
        fail("cjson.decode", lua_tostring(L, -1));
        lua_settop(L, BASE);
        return -1;
    }
    int answer = lua_gettop(L);
    get("choices");
    get_index(1);
    get("message");
    get("content"); /* [.., answer, choices, choice, message, content] */
    int have_text = lua_type(L, -1) == LUA_TSTRING;
    lua_settop(L, answer);
    get("usage");
    get("prompt_tokens"); /* [.., answer, usage, prompt_tokens] */
    int have_prompt = lua_type(L, -1) == LUA_TNUMBER;
    double n = lua_tonumber(L, -1);
    lua_pop(L, 1);
    get("completion_tokens"); /* [.., answer, usage, completion_tokens] */
    int have_completion = lua_type(L, -1) == LUA_TNUMBER;
    n += lua_tonumber(L, -1);
    lua_settop(L, BASE);
    if (!have_text || !have_prompt || !have_completion) {
        fail("an answer lacks", !have_text     ? "choices[1].message.content"
                                : !have_prompt ? "usage.prompt_tokens"
                                               : "usage.completion_tokens");
        return -1;
    }
    tokens += n;
    return 0;
}

/* The cjson module's encode and decode at ENCODE and DECODE, the model and
 * prompt of the body file at MODEL and PROMPT. Returns 0, or -1 with a
 * message printed. */
static int setup_lua(const char *body, size_t len, const char *path) {
    L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "floor: cannot make a Lua state\n");
        return -1;
    }
    luaL_openlibs(L);
    /* cjson linked in (as the weft binary has it), so no package.cpath */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "floor: require \"cjson\": %s\n", lua_tostring(L, -1));
        return -1;
    }
    lua_getfield(L, 1, "encode");
    lua_getfield(L, 1, "decode");
    lua_remove(L, 1); /* [encode, decode] */

    lua_pushvalue(L, DECODE);
    lua_pushlstring(L, body, len);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "floor: %s: %s\n", path, lua_tostring(L, -1));
        return -1;
    }
    int req = lua_gettop(L); /* [encode, decode, req] */
    get("max_tokens");
    max_tokens = (long)lua_tointeger(L, -1);
    lua_settop(L, req);
    get("model");
    lua_insert(L, MODEL); /* [encode, decode, model, req] */
    get("messages");
    get_index(1);
    get("content");
    lua_replace(L, PROMPT); /* [encode, decode, model, prompt, messages, message] */
    lua_settop(L, BASE);
    if (lua_type(L, MODEL) != LUA_TSTRING || lua_type(L, PROMPT) != LUA_TSTRING ||
        max_tokens <= 0) {
        fprintf(stderr, "floor: %s: expected model, max_tokens and messages[1].content\n", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the client */

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
    struct slot *s = ud;
    return weft_buf_append(&s->ans, p, size * n) == 0 ? size * n : 0; /* 0: curl fails it */
}

static void slot_init(struct slot *s) {
    s->easy = curl_ev_easy(&args);
    weft_buf_init(&s->req, WEFT_BUF_NO_MAX, 0);
    weft_buf_init(&s->ans, MAX_ANSWER, 0);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
}

/* Start the next request on slot s; when all are started, let the slot go. */
static void next(struct slot *s) {
    while (started < args.total) {
        started++;
        weft_buf_reset(&s->ans);
        if (encode_request(s) == 0) {
            curl_multi_add_handle(multi, s->easy);
            return;
        }
        finished++; /* (failed counted by encode_request) */
    }
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
    weft_buf_free(&s->req);
    weft_buf_free(&s->ans);
}

/* Finish the transfers curl reports done and start the next requests, here
 * after curl_multi_socket_action returned (never inside a curl callback). */
static void drain(void) {
    CURL *e;
    CURLcode result;
    long status;
    while ((e = curl_ev_next_done(&result, &status))) {
        char *priv;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct slot *s = (struct slot *)priv;
        char why[32];
        if (result != CURLE_OK) {
            fail("transfer", curl_easy_strerror(result));
        } else if (status != 200) {
            snprintf(why, sizeof why, "%ld", status);
            fail("status", why);
        } else {
            decode_answer(s);
        }
        finished++;
        next(s);
    }
}

int main(int argc, char **argv) {
    bench_args(argc, argv, "bench_floor", &args);
    long conc = args.conc;
    int ok = setup_lua(args.body, args.body_len, args.body_path) == 0;
    free(args.body);
    args.body = NULL;
    if (!ok) return 2;

    curl_ev_init();
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "floor: out of memory\n");
        return 1;
    }

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < conc; i++) {
        slot_init(&slots[i]);
        next(&slots[i]);
    }
    ev_run(loop, 0);
    double secs = seconds_since(&t0), cpu = cpu_seconds();
    long answered = finished - failed;
    printf("floor: %ld requests, %ld failed, %.0f req/s, %.1f us CPU/request, %.1f tokens/answer\n",
           finished, failed, (double)finished / secs, cpu * 1e6 / (double)finished,
           answered > 0 ? tokens / (double)answered : 0.);
    for (long i = 0; i < conc; i++) { /* (a slot left by a loop that ended early) */
        if (slots[i].easy) {
            curl_multi_remove_handle(multi, slots[i].easy);
            curl_easy_cleanup(slots[i].easy);
            weft_buf_free(&slots[i].req);
            weft_buf_free(&slots[i].ans);
        }
    }
    free(slots);
    curl_multi_cleanup(multi);
    curl_slist_free_all(args.headers);
    lua_close(L);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
