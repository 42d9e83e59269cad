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

/* Bumped whenever the set of loaded values changes (set, clear, free):
 * the redaction index below is rebuilt when it no longer matches. */
static unsigned long generation = 1;

static void clear_value(struct weft_secret *s) {
    if (s->value) generation++;
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
    generation++;
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

/* ----------------------------------------------------------- redaction
 *
 * One pass over the text for every pattern (each loaded value of 4 bytes
 * or more, and its base64, URL- and JSON-escaped forms when they differ
 * from it): Wu-Manber, with blocks of B = 2 bytes hashed into 4096 slots.
 * m is the shortest pattern's length (at most 255). The scan looks at the
 * block that ends a window of m bytes; shift[] says how far the window may
 * move without skipping a possible start (m - 1 for a block found in no
 * pattern's first m bytes), and a shift of 0 means "some pattern's first m
 * bytes end with this block": the patterns chained from head[] for it are
 * compared in full. API keys are 20..200 bytes, so the window usually
 * jumps dozens of bytes at a time; text without a loaded value costs a
 * fraction of a byte-by-byte pass, however many secrets are loaded.
 * Chosen over Aho-Corasick: its automaton is states x 256 entries (MBs for
 * 40 patterns of 50 bytes), it visits every byte, and it is rebuilt on
 * every rotation; this index is 12 KiB plus one entry per pattern and
 * points into the secrets' own buffers (no copy of a value).
 *
 * The index is rebuilt on the first redaction after the set of loaded
 * values changed (a generation counter bumped by every set, clear and
 * free). Overlaps resolve leftmost-longest; a tie goes to the first secret
 * in creation order, then value before base64, URL, JSON form. */

#define RX_BITS 12
#define RX_SLOTS (1u << RX_BITS)
#define RX_MAXWIN 255           /* shifts are bytes */

struct rxpat {
    const char *p;              /* a secret's value or one of its forms */
    size_t len;
    const char *name;           /* the secret's name, for "<secret NAME>" */
    int next;                   /* next pattern in the same head[] chain, -1 */
};

static struct {
    unsigned long gen;          /* generation built for; 0: never */
    struct rxpat *pats;         /* owned; points into the secrets */
    int npats, cap;
    size_t m;                   /* window: shortest pattern, <= RX_MAXWIN */
    unsigned char shift[RX_SLOTS];
    short head[RX_SLOTS];       /* first candidate pattern, -1: none */
} rx;

static inline unsigned rx_hash(unsigned char a, unsigned char b) {
    return (((unsigned)a << 4) ^ b) & (RX_SLOTS - 1);
}

static int rx_add(const char *p, size_t len, const char *name) {
    if (rx.npats == rx.cap) {
        int cap = rx.cap ? rx.cap * 2 : 16;
        if (cap > 32767) return -1; /* head[] holds shorts */
        struct rxpat *n = realloc(rx.pats, (size_t)cap * sizeof *n);
        if (!n) return -1;
        rx.pats = n;
        rx.cap = cap;
    }
    rx.pats[rx.npats++] = (struct rxpat){p, len, name, -1};
    return 0;
}

static int rx_build(void) {
    rx.npats = 0;
    rx.m = RX_MAXWIN;
    for (int i = 0; i < nall; i++) {
        struct weft_secret *s = all[i];
        if (!s->value || s->len < 4) continue; /* short values would blank out words */
        const char *forms[4] = {s->value, s->b64, s->url, s->json};
        size_t lens[4] = {s->len, s->b64len, s->urllen, s->jsonlen};
        for (int f = 0; f < 4; f++) {
            if (!forms[f] || lens[f] < 4) continue;
            if (f > 0 && lens[f] == s->len && memcmp(forms[f], s->value, s->len) == 0) continue;
            if (rx_add(forms[f], lens[f], s->name) != 0) return -1;
            if (lens[f] < rx.m) rx.m = lens[f];
        }
    }
    size_t m = rx.m;
    memset(rx.shift, (int)(m - 1), sizeof rx.shift);
    memset(rx.head, 0xff, sizeof rx.head);
    /* Chains are built back to front so that each lists patterns in
     * creation order (the tie-break). */
    for (int k = rx.npats - 1; k >= 0; k--) {
        const unsigned char *p = (const unsigned char *)rx.pats[k].p;
        for (size_t j = 1; j < m; j++) {
            unsigned h = rx_hash(p[j - 1], p[j]);
            if (m - 1 - j < rx.shift[h]) rx.shift[h] = (unsigned char)(m - 1 - j);
        }
        unsigned h = rx_hash(p[m - 2], p[m - 1]);
        rx.pats[k].next = rx.head[h];
        rx.head[h] = (short)k;
    }
    rx.gen = generation;
    return 0;
}

/* Append n bytes to the output, growing it. */
static int rx_out(char **buf, size_t *o, size_t *cap, const char *p, size_t n) {
    if (*o + n > *cap) {
        size_t c = *cap;
        while (c < *o + n) c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) return -1;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *o, p, n);
    *o += n;
    return 0;
}

int weft_secrets_redact(const char *in, size_t len, char **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    if (rx.gen != generation && rx_build() != 0) {
        rx.gen = 0;
        return -1;
    }
    if (rx.npats == 0 || len < rx.m) return 0;
    const unsigned char *t = (const unsigned char *)in;
    const size_t m = rx.m;
    char *buf = NULL;
    size_t o = 0, cap = 0;
    size_t last = 0;                /* input copied up to here */
    size_t pos = m - 1;             /* last byte of the window */
    while (pos < len) {
        unsigned h = rx_hash(t[pos - 1], t[pos]);
        size_t sh = rx.shift[h];
        if (sh) {
            pos += sh;
            continue;
        }
        size_t start = pos - (m - 1);
        const struct rxpat *best = NULL;
        for (int k = rx.head[h]; k >= 0; k = rx.pats[k].next) {
            const struct rxpat *c = &rx.pats[k];
            if (c->len <= len - start && (!best || c->len > best->len) &&
                memcmp(t + start, c->p, c->len) == 0)
                best = c;
        }
        if (!best) {
            pos++;
            continue;
        }
        if (!buf) {
            cap = len + 64;
            buf = malloc(cap);
            if (!buf) return -1;
        }
        size_t nlen = strlen(best->name);
        if (rx_out(&buf, &o, &cap, in + last, start - last) != 0 ||
            rx_out(&buf, &o, &cap, "<secret ", 8) != 0 ||
            rx_out(&buf, &o, &cap, best->name, nlen) != 0 || rx_out(&buf, &o, &cap, ">", 1) != 0)
            goto fail;
        last = start + best->len;
        pos = last + m - 1;
    }
    if (!buf) return 0;
    if (rx_out(&buf, &o, &cap, in + last, len - last) != 0) goto fail;
    *out = buf;
    *outlen = o;
    return 0;
fail:
    /* Only redacted text is in buf; cleared all the same. */
    explicit_bzero(buf, o);
    free(buf);
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
    free(rx.pats);
    rx.pats = NULL;
    rx.npats = rx.cap = 0;
    rx.gen = 0;
}
