/* bindings.h -- the lua_<module>.c bindings as other files see them: the
 * luaopen_ function of each C module, which loop.c puts in package.preload
 * under its "weft._<module>" name, and the few functions one binding lends
 * another.
 *
 * Each luaopen_ function registers its classes (weft_register_class) and
 * returns the module table; it may raise (out of memory), so it runs
 * through require or a protected call. luaopen_weft_error, which the host
 * opens itself before any require, is declared with its mechanism in
 * luax.h.
 */
#ifndef WEFT_BINDINGS_H
#define WEFT_BINDINGS_H

#include <lua.h>
#include <stddef.h>

struct weft_secret;

/* ------------------------------------------------------------- modules */

int luaopen_weft_breaker(lua_State *L);     /* lua_breaker.c: weft._breaker */
int luaopen_weft_budget(lua_State *L);      /* lua_budget.c: weft._budget */
int luaopen_weft_digest(lua_State *L);      /* lua_digest.c: weft._digest */
int luaopen_weft_http_client(lua_State *L); /* lua_http_client.c: weft._http_client */
int luaopen_weft_http_server(lua_State *L); /* lua_http_server.c: weft._http_server */
int luaopen_weft_json(lua_State *L);        /* lua_json.c: weft._json */
int luaopen_weft_limiter(lua_State *L);     /* lua_limiter.c: weft._limiter */
int luaopen_weft_log(lua_State *L);         /* lua_log.c: weft._log */
int luaopen_weft_metrics(lua_State *L);     /* lua_metrics.c: weft._metrics */
int luaopen_weft_redis(lua_State *L);       /* lua_redis.c: weft._redis */
int luaopen_weft_repl(lua_State *L);        /* lua_repl.c: weft._repl */
int luaopen_weft_retry(lua_State *L);       /* lua_retry.c: weft._retry */
int luaopen_weft_secrets(lua_State *L);     /* lua_secrets.c: weft._secrets */
int luaopen_weft_signal(lua_State *L);      /* lua_signal.c: weft._signal */
int luaopen_weft_sse(lua_State *L);         /* lua_sse.c: weft._sse */
int luaopen_weft_task(lua_State *L);        /* task.c: weft._task */
int luaopen_weft_watch(lua_State *L);       /* lua_watch.c: weft._watch */

/* ------------------------------------------------------------- lua_digest.c */

/* The SHA-256 of data[0..len) as 64 lowercase hex digits and a NUL into
 * out. Returns 0, or -1 when the digest failed. */
int weft_sha256_hex(const void *data, size_t len, char out[65]);

/* --------------------------------------------------------------- lua_json.c */

/* Decode JSON text s[0..n) by weft.json's rules (null is the light
 * userdata NULL, json.null; empty arrays and objects carry the marks that
 * _json.decoder registered) and push two values: the value and nil, or
 * nil and "<why> at character <N>" for invalid text. With `redact`,
 * strings that held escapes go through weft_secrets_redact too (an escape
 * can spell what a redaction of the raw text cannot see). Raises only
 * out of memory, or when no decoder was made yet. */
int weft_json_push_decoded(lua_State *L, const char *s, size_t n, int redact);

/* weft_json_push_decoded as a lua_CFunction for lua_pcall, for a caller
 * holding memory of its own: argument 1 is a light userdata pointing to
 * a struct weft_json_src. */
struct weft_json_src {
    const char *s;
    size_t n;
    int redact;
};
int weft_json_decode_cf(lua_State *L);

/* ------------------------------------------------------------ lua_secrets.c */

/* The secret behind the handle at `idx`; raises a Lua argument error when
 * the value is not a secret handle. The secret stays owned by the handle
 * (its reference is released by the handle's __gc): a caller that keeps it
 * past the handle (whose owner, a Lua value, may be collected) takes its
 * own with weft_secret_get. */
struct weft_secret *weft_lua_check_secret(lua_State *L, int idx);

#endif
