/* secrets.c -- the store, its encodings and redaction. */
#include "secrets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct weft_secret **all; /* every secret, in creation order */
static int nall, capall;

static void zero_free(char *p, size_t len, int locked) {
    if (!p) return;
    explicit_bzero(p, len);
    if (locked) munlock(p, len);
    free(p);
}

static void clear_value(struct weft_secret *s) {
    zero_free(s->value, s->len, s->locked);
    zero_free(s->b64, s->b64len, s->locked);
    zero_free(s->url, s->urllen, s->locked);
    zero_free(s->json, s->jsonlen, s->locked);
    s->value = s->b64 = s->url = s->json = NULL;
    s->len = s->b64len = s->urllen = s->jsonlen = 0;
    s->locked = 0;
}

struct weft_secret *weft_secret_get(const char *name) {
    for (int i = 0; i < nall; i++) {
        if (strcmp(all[i]->name, name) == 0) {
            all[i]->refs++;
            return all[i];
        }
    }
    if (nall == capall) {
        int cap = capall ? capall * 2 : 16;
        struct weft_secret **n = realloc(all, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        all = n;
        capall = cap;
    }
    struct weft_secret *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    s->refs = 1;
    all[nall++] = s;
    return s;
}

void weft_secret_release(struct weft_secret *s) {
    if (!s || --s->refs > 0) return;
    for (int i = 0; i < nall; i++) {
        if (all[i] == s) {
            memmove(&all[i], &all[i + 1], (size_t)(nall - i - 1) * sizeof *all);
            nall--;
            break;
        }
    }
    clear_value(s);
    free(s->name);
    free(s);
}

static char *b64(const char *in, size_t len, size_t *outlen) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 4 * ((len + 2) / 3);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < len) v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < len) v |= (unsigned char)in[i + 2];
        o[j++] = t[(v >> 18) & 63];
        o[j++] = t[(v >> 12) & 63];
        o[j++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < len ? t[v & 63] : '=';
    }
    o[j] = '\0';
    /* Without padding: base64 of a longer text holding the value at a
     * 3-byte boundary contains this prefix; use the unpadded core. */
    while (j > 0 && o[j - 1] == '=') j--;
    if (len >= 3) j = 4 * (len / 3);
    *outlen = j;
    return o;
}

static char *urlenc(const char *in, size_t len, size_t *outlen) {
    char *o = malloc(3 * len + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            o[j++] = (char)c;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            o[j++] = '%';
            o[j++] = hex[c >> 4];
            o[j++] = hex[c & 15];
        }
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

/* The value as it appears inside a JSON string (log lines): only when
 * escaping changes it (multi-line keys, quotes). */
static char *jsonesc(const char *in, size_t len, size_t *outlen) {
    char *o = malloc(6 * len + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '"' || c == '\\') { o[j++] = '\\'; o[j++] = (char)c; }
        else if (c == '\n') { o[j++] = '\\'; o[j++] = 'n'; }
        else if (c == '\r') { o[j++] = '\\'; o[j++] = 'r'; }
        else if (c == '\t') { o[j++] = '\\'; o[j++] = 't'; }
        else if (c < 0x20) j += (size_t)snprintf(o + j, 7, "\\u%04x", c);
        else o[j++] = (char)c;
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

int weft_secret_set(struct weft_secret *s, const char *value, size_t len, double expires,
                    const char **why) {
    if (memchr(value, '\0', len)) {
        *why = "contains a NUL byte";
        return -1;
    }
    if (len == 0) {
        *why = "is empty";
        return -1;
    }
    clear_value(s);
    s->value = malloc(len + 1);
    if (!s->value) {
        *why = "out of memory";
        return -1;
    }
    memcpy(s->value, value, len);
    s->value[len] = '\0';
    s->len = len;
    s->b64 = b64(value, len, &s->b64len);
    s->url = urlenc(value, len, &s->urllen);
    s->json = jsonesc(value, len, &s->jsonlen);
    s->locked = mlock(s->value, len + 1) == 0;
    if (s->locked) {
        if (s->b64) mlock(s->b64, s->b64len);
        if (s->url) mlock(s->url, s->urllen);
        if (s->json) mlock(s->json, s->jsonlen);
    }
    s->expires = expires > 0 ? expires : 0;
    s->version++;
    return 0;
}

int weft_secret_valid(const struct weft_secret *s, double now) {
    return s->value && (s->expires <= 0 || now < s->expires);
}

int weft_secrets_loaded(void) {
    int n = 0;
    for (int i = 0; i < nall; i++) n += all[i]->value != NULL;
    return n;
}

/* Does `needle` (len n >= 4) occur in text? Short values (< 4 bytes) are
 * not redacted: they would blank out ordinary words. */
int weft_secrets_redact(const char *in, size_t len, char **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    char *cur = NULL;
    size_t curlen = len;
    const char *text = in;
    for (int i = 0; i < nall; i++) {
        struct weft_secret *s = all[i];
        if (!s->value || s->len < 4) continue;
        const char *forms[4] = {s->value, s->b64, s->url, s->json};
        size_t lens[4] = {s->len, s->b64len, s->urllen, s->jsonlen};
        for (int f = 0; f < 4; f++) {
            if (!forms[f] || lens[f] < 4 || (f > 0 && lens[f] == s->len && memcmp(forms[f], s->value, s->len) == 0))
                continue;
            if (!memmem(text, curlen, forms[f], lens[f])) continue;
            /* rebuild: replace every occurrence */
            size_t rlen = strlen(s->name) + 10;
            char *repl = malloc(rlen + 1);
            if (!repl) goto fail;
            rlen = (size_t)snprintf(repl, rlen + 1, "<secret %s>", s->name);
            size_t cap = curlen + 64, o = 0;
            char *buf = malloc(cap);
            if (!buf) {
                free(repl);
                goto fail;
            }
            const char *p = text, *end = text + curlen;
            while (p < end) {
                const char *m = memmem(p, (size_t)(end - p), forms[f], lens[f]);
                size_t chunk = m ? (size_t)(m - p) : (size_t)(end - p);
                size_t need = o + chunk + (m ? rlen : 0);
                if (need > cap) {
                    while (cap < need) cap *= 2;
                    char *nb = realloc(buf, cap);
                    if (!nb) {
                        free(buf);
                        free(repl);
                        goto fail;
                    }
                    buf = nb;
                }
                memcpy(buf + o, p, chunk);
                o += chunk;
                if (!m) break;
                memcpy(buf + o, repl, rlen);
                o += rlen;
                p = m + lens[f];
            }
            free(repl);
            if (cur) zero_free(cur, curlen, 0);
            cur = buf;
            curlen = o;
            text = cur;
        }
    }
    *out = cur;
    *outlen = cur ? curlen : 0;
    return 0;
fail:
    if (cur) zero_free(cur, curlen, 0);
    return -1;
}

void weft_secrets_shutdown(void) {
    while (nall > 0) {
        struct weft_secret *s = all[nall - 1];
        s->refs = 1;
        weft_secret_release(s);
    }
    free(all);
    all = NULL;
    capall = 0;
}
