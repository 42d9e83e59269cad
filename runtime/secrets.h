/* secrets.h -- the secrets store: values live only here, in host memory.
 *
 * A secret has a name (its reference, e.g. "env:OPENAI_API_KEY") and a
 * value held in a malloc'd buffer, locked in RAM with mlock where the
 * process may (best effort), and zeroed before it is freed or replaced.
 * Lua only ever holds an opaque handle (lua_secrets.c).
 *
 * Redaction: weft_secrets_redact rewrites a text so that every loaded
 * value, and its base64 and URL-encoded forms, reads "<secret NAME>".
 * log.c runs every line through it; error messages and tracebacks printed
 * by the host go through it too.
 *
 * The store is process-wide. Nothing here knows Lua.
 */
#ifndef WEFT_SECRETS_H
#define WEFT_SECRETS_H

#include <stddef.h>

struct weft_secret {
    char *name;                /* reference, owned */
    char *value;               /* NULL until loaded; owned, zeroed on free */
    size_t len;
    char *b64, *url, *json;    /* encodings for redaction, owned, zeroed */
    size_t b64len, urllen, jsonlen;
    double expires;            /* monotonic time; 0 = never */
    unsigned long version;     /* increments on every set */
    int locked;                /* mlock succeeded */
    int refs;                  /* handles and users; freed at 0 */
    unsigned long loads, refreshes, rejections; /* auth events */
};

/* Find or create the secret named `name` (one per name). Returns it with
 * one more reference, or NULL on allocation failure. */
struct weft_secret *weft_secret_get(const char *name);

/* Drop a reference; at 0 the value is zeroed and everything freed. */
void weft_secret_release(struct weft_secret *s);

/* Set the value (copied); the previous one is zeroed. `expires` > 0 is the
 * monotonic time the value stops being valid (0: never). Empty values and
 * values with a NUL byte are refused (-1, *why set); CR/LF are allowed here
 * (PEM keys) and refused where a value is rendered into a header. Returns 0
 * on success. */
int weft_secret_set(struct weft_secret *s, const char *value, size_t len, double expires,
                    const char **why);

/* 1 when a value is loaded and not expired at `now` (monotonic). */
int weft_secret_valid(const struct weft_secret *s, double now);

/* Redact `in` into a malloc'd copy (*out, *outlen; the caller frees it):
 * every occurrence of a loaded value of 4 bytes or more (expired or not),
 * or of its base64, URL- or JSON-escaped form, becomes "<secret NAME>".
 * Overlapping occurrences resolve leftmost-longest (a tie: the secret
 * created first). One pass over the text whatever the number of secrets;
 * an index of the values is rebuilt on the first call after a value was
 * set, cleared or freed. When nothing is loaded or nothing matches, *out
 * is NULL and 0 is returned without allocating: use the input as is.
 * Returns -1 on allocation failure (then *out is NULL). */
int weft_secrets_redact(const char *in, size_t len, char **out, size_t *outlen);

/* Number of secrets with a value loaded. */
int weft_secrets_loaded(void);

/* Zero and free every secret (at exit). */
void weft_secrets_shutdown(void);

#endif
