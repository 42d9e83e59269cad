/* lua_digest.c -- weft._digest: message digests from OpenSSL's libcrypto
 * (the library libcurl already links), for keys that must not collide:
 *
 *   _digest.sha256_hex(s) -> the SHA-256 of string s, 64 lowercase hex digits
 *
 * A non-string argument raises "sha256: expected a string, got TYPE".
 */
#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>

#include "bindings.h"

int weft_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) return -1;
    static const char hexd[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hexd[md[i] >> 4];
        out[2 * i + 1] = hexd[md[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

static int l_sha256_hex(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "sha256: expected a string, got %s", luaL_typename(L, 1));
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    char out[65];
    if (weft_sha256_hex(s, len, out) != 0) return luaL_error(L, "sha256: the digest failed");
    lua_pushlstring(L, out, 64);
    return 1;
}

int luaopen_weft_digest(lua_State *L) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_sha256_hex);
    lua_setfield(L, -2, "sha256_hex");
    return 1;
}
