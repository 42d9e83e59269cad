/* test_redact.c -- weft_secrets_redact (secrets.c): the one-pass redactor.
 *
 * Besides fixed cases (forms, edges, overlaps, rotation), every result is
 * compared with a byte-by-byte reference written here (at each position,
 * the longest pattern that matches, first secret on a tie; else copy one
 * byte), on random texts seeded with random values and their forms.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "secrets.h"

/* ------------------------------------------------------------ helpers */

static struct weft_secret *load(const char *name, const char *value) {
    struct weft_secret *s = weft_secret_get(name);
    const char *why = NULL;
    if (!s || weft_secret_set(s, value, strlen(value), 0, &why) != 0) {
        fprintf(stdout, "# cannot load %s: %s\n", name, why ? why : "oom");
        return NULL;
    }
    return s;
}

/* Redact and return a NUL-terminated copy of the result (of the input
 * itself when nothing matched; *matched says which). */
static char *red(const char *in, int *matched) {
    char *out = NULL;
    size_t olen = 0;
    int rc = weft_secrets_redact(in, strlen(in), &out, &olen);
    CHECK_EQ_INT(rc, 0);
    *matched = out != NULL;
    if (!out) return strdup(in);
    char *z = malloc(olen + 1);
    memcpy(z, out, olen);
    z[olen] = '\0';
    free(out);
    return z;
}

static void check_red(const char *in, const char *expect) {
    int matched;
    char *got = red(in, &matched);
    CHECK_EQ_STR(got, expect);
    CHECK_EQ_INT(matched, strcmp(in, expect) != 0);
    free(got);
}

/* The reference: leftmost-longest, one byte at a time, over every
 * secret's forms in creation order. */
struct refpat {
    const char *p;
    size_t len;
    const char *name;
};

static size_t ref_patterns(struct weft_secret **ss, int n, struct refpat *out) {
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        struct weft_secret *s = ss[i];
        if (!s->value || s->len < 4) continue;
        const char *forms[4] = {s->value, s->b64, s->url, s->json};
        size_t lens[4] = {s->len, s->b64len, s->urllen, s->jsonlen};
        for (int f = 0; f < 4; f++) {
            if (!forms[f] || lens[f] < 4) continue;
            if (f > 0 && lens[f] == s->len && memcmp(forms[f], s->value, s->len) == 0) continue;
            out[k++] = (struct refpat){forms[f], lens[f], s->name};
        }
    }
    return k;
}

static char *ref_redact(const char *in, size_t len, const struct refpat *pats, size_t np,
                        size_t *olen) {
    size_t cap = len * 4 + 1024, o = 0;
    char *b = malloc(cap);
    for (size_t i = 0; i < len;) {
        const struct refpat *best = NULL;
        for (size_t k = 0; k < np; k++)
            if (pats[k].len <= len - i && (!best || pats[k].len > best->len) &&
                memcmp(in + i, pats[k].p, pats[k].len) == 0)
                best = &pats[k];
        if (!best) {
            b[o++] = in[i++];
            continue;
        }
        o += (size_t)snprintf(b + o, cap - o, "<secret %s>", best->name);
        i += best->len;
    }
    *olen = o;
    return b;
}

static uint32_t rnd_state = 12345;
static uint32_t rnd(void) {
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* -------------------------------------------------------------- tests */

static void test_nothing_loaded(void) {
    char *out = (char *)1;
    size_t olen = 99;
    CHECK_EQ_INT(weft_secrets_redact("some text with nothing", 22, &out, &olen), 0);
    CHECK(out == NULL);
    CHECK_EQ_INT(olen, 0);
    CHECK_EQ_INT(weft_secrets_redact("", 0, &out, &olen), 0);
    CHECK(out == NULL);
}

static void test_forms_and_edges(void) {
    struct weft_secret *s = load("env:KEY", "sk-test-0123456789abcdef");
    check_red("no match here at all, long enough text", "no match here at all, long enough text");
    check_red("sk-test-0123456789abcdef", "<secret env:KEY>");
    check_red("Bearer sk-test-0123456789abcdef", "Bearer <secret env:KEY>");
    check_red("sk-test-0123456789abcdef is the key", "<secret env:KEY> is the key");
    check_red("a sk-test-0123456789abcdef b sk-test-0123456789abcdef",
              "a <secret env:KEY> b <secret env:KEY>");
    check_red("sk-test-0123456789abcdefsk-test-0123456789abcdef",
              "<secret env:KEY><secret env:KEY>");
    /* cut at either edge: not the value */
    check_red("k-test-0123456789abcdef", "k-test-0123456789abcdef");
    check_red("x sk-test-0123456789abcde", "x sk-test-0123456789abcde");
    check_red("short", "short");
    /* base64 ("c2stdGVzdC0wMTIzNDU2Nzg5YWJjZGVm" is the padded-free core) */
    check_red("basic c2stdGVzdC0wMTIzNDU2Nzg5YWJjZGVm", "basic <secret env:KEY>");
    weft_secret_release(s);

    s = load("file:odd", "p@ss w/rd+\"q\"\n2");
    check_red("u=p%40ss%20w%2Frd%2B%22q%22%0A2&x", "u=<secret file:odd>&x");  /* URL */
    check_red("{\"k\":\"p@ss w/rd+\\\"q\\\"\\n2\"}", "{\"k\":\"<secret file:odd>\"}"); /* JSON */
    check_red("raw p@ss w/rd+\"q\"\n2 end", "raw <secret file:odd> end");
    weft_secret_release(s);

    /* values under 4 bytes are never redacted; 4 bytes are */
    s = load("env:TINY", "abc");
    check_red("abc abc", "abc abc");
    weft_secret_release(s);
    s = load("env:FOUR", "wxyz");
    check_red("wxyz-wxyz", "<secret env:FOUR>-<secret env:FOUR>");
    weft_secret_release(s);
    check_red("wxyz", "wxyz"); /* released: gone from the index */
}

/* Overlaps: the longest at the leftmost start; a tie goes to the secret
 * created first. */
static void test_overlaps(void) {
    struct weft_secret *a = load("a", "abcdefgh");
    struct weft_secret *b = load("b", "abcdefghijkl");
    struct weft_secret *c = load("c", "ghijklmnop");
    struct weft_secret *d = load("d", "abcdefgh"); /* same value as a */
    check_red("abcdefghijkl", "<secret b>");
    check_red("abcdefghijk", "<secret a>ijk");
    check_red("xxabcdefghijklmnop", "xx<secret b>mnop");
    check_red("ghijklmnop", "<secret c>");
    check_red("zzabcdefghzz", "zz<secret a>zz");
    weft_secret_release(a);
    check_red("zzabcdefghzz", "zz<secret d>zz");
    weft_secret_release(b);
    weft_secret_release(c);
    weft_secret_release(d);
}

/* Rotation: the old value is no longer redacted, the new one is. */
static void test_rotation(void) {
    struct weft_secret *s = load("env:ROT", "first-value-1234");
    check_red("x first-value-1234", "x <secret env:ROT>");
    const char *why;
    CHECK_EQ_INT(weft_secret_set(s, "second-value-5678", 17, 0, &why), 0);
    check_red("x first-value-1234", "x first-value-1234");
    check_red("x second-value-5678", "x <secret env:ROT>");
    /* a secret created without a value changes nothing */
    struct weft_secret *e = weft_secret_get("env:EMPTY");
    check_red("x second-value-5678", "x <secret env:ROT>");
    weft_secret_release(e);
    weft_secret_release(s);
}

/* 60 random secrets of 4..80 bytes (some sharing prefixes), random texts
 * holding their forms at random places: the same as the reference. */
static void test_many_random(void) {
    enum { NS = 60 };
    struct weft_secret *ss[NS];
    static const char alpha[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+/= \"\n";
    char val[96];
    for (int i = 0; i < NS; i++) {
        size_t n = 4 + rnd() % 77;
        if (i > 0 && i % 5 == 0) {
            /* share a prefix with the previous secret */
            memcpy(val, ss[i - 1]->value, ss[i - 1]->len < n ? ss[i - 1]->len : n);
            for (size_t k = n / 2; k < n; k++) val[k] = alpha[rnd() % (sizeof alpha - 1)];
        } else {
            for (size_t k = 0; k < n; k++) val[k] = alpha[rnd() % (sizeof alpha - 1)];
        }
        val[n] = '\0';
        char name[32];
        snprintf(name, sizeof name, "env:S%d", i);
        ss[i] = load(name, val);
    }
    static struct refpat pats[NS * 4];
    size_t np = ref_patterns(ss, NS, pats);
    int mismatches = 0, matched_texts = 0;
    for (int round = 0; round < 400; round++) {
        size_t cap = 4096, len = 0;
        char *text = malloc(cap);
        int pieces = 1 + (int)(rnd() % 12);
        for (int k = 0; k < pieces; k++) {
            size_t filler = rnd() % 60;
            for (size_t f = 0; f < filler && len < cap - 1; f++) text[len++] = alpha[rnd() % 26];
            if (rnd() % 3) {
                const struct refpat *p = &pats[rnd() % np];
                size_t take = p->len;
                if (rnd() % 4 == 0) take = take / 2 + 1; /* a partial one */
                if (len + take < cap) {
                    memcpy(text + len, p->p, take);
                    len += take;
                }
            }
        }
        char *out = NULL;
        size_t olen = 0;
        CHECK_EQ_INT(weft_secrets_redact(text, len, &out, &olen), 0);
        size_t rlen;
        char *ref = ref_redact(text, len, pats, np, &rlen);
        int same_as_input = rlen == len && memcmp(ref, text, len) == 0;
        if (same_as_input) {
            if (out) mismatches++;
        } else {
            matched_texts++;
            if (!out || olen != rlen || memcmp(out, ref, rlen) != 0) {
                if (mismatches < 3)
                    fprintf(stdout, "# round %d: got \"%.*s\"\n#   expected \"%.*s\"\n", round,
                            out ? (int)olen : 0, out ? out : "", (int)rlen, ref);
                mismatches++;
            }
        }
        free(out);
        free(ref);
        free(text);
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(matched_texts > 200);
    for (int i = 0; i < NS; i++) weft_secret_release(ss[i]);
}

/* Long text: a value at the very start, the very end, and across what
 * would be window boundaries; nothing in between. */
static void test_long_text(void) {
    struct weft_secret *s = load("env:LONG", "0123456789ABCDEFGHIJ0123456789ABCDEFGHIJ");
    size_t n = 100000;
    char *t = malloc(n + 1);
    memset(t, '.', n);
    t[n] = '\0';
    memcpy(t, s->value, s->len);
    memcpy(t + n - s->len, s->value, s->len);
    memcpy(t + 50001, s->value, s->len);
    char *out = NULL;
    size_t olen = 0;
    CHECK_EQ_INT(weft_secrets_redact(t, n, &out, &olen), 0);
    CHECK(out != NULL);
    const char *rep = "<secret env:LONG>";
    CHECK_EQ_INT(olen, n - 3 * s->len + 3 * strlen(rep));
    if (out) {
        CHECK(memcmp(out, rep, strlen(rep)) == 0);
        CHECK(memcmp(out + olen - strlen(rep), rep, strlen(rep)) == 0);
        CHECK(memmem(out, olen, "0123456789", 10) == NULL);
    }
    free(out);
    /* nothing to find: no copy */
    memset(t, 'x', n);
    out = (char *)1;
    CHECK_EQ_INT(weft_secrets_redact(t, n, &out, &olen), 0);
    CHECK(out == NULL);
    free(t);
    weft_secret_release(s);
}

int main(void) {
    RUN(test_nothing_loaded);
    RUN(test_forms_and_edges);
    RUN(test_overlaps);
    RUN(test_rotation);
    RUN(test_many_random);
    RUN(test_long_text);
    weft_secrets_shutdown();
    RUN(test_nothing_loaded);
    return DONE();
}
