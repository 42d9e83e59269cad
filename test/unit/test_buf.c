/* test_buf.c -- the growable buffer: growth (amortised), the cap, the
 * sticky failure flag (over cap vs out of memory), reset, drop, take, the
 * zeroing of secret buffers (seen through the allocator hook) and the
 * empty / NULL edge cases. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "harness.h"

/* An allocator that counts, refuses on demand and, when asked, checks that
 * every block it is given back holds only zero bytes. */
struct track {
    int fail_after;        /* allocations left before refusing; -1: never */
    size_t limit;          /* larger blocks are refused */
    int check_zero;        /* inspect freed blocks (only for secret buffers:
                              others hold bytes never written) */
    int allocs, reallocs, frees, dirty;
    size_t last_size;
};

static void *track_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct track *t = ud;
    if (nsize == 0) {
        if (ptr) {
            t->frees++;
            if (t->check_zero) {
                const unsigned char *p = ptr;
                for (size_t i = 0; i < osize; i++)
                    if (p[i]) {
                        t->dirty++;
                        break;
                    }
            }
            free(ptr);
        }
        return NULL;
    }
    if (t->fail_after == 0 || nsize > t->limit) return NULL;
    if (t->fail_after > 0) t->fail_after--;
    if (ptr) t->reallocs++;
    else t->allocs++;
    t->last_size = nsize;
    return realloc(ptr, nsize);
}

static struct track tracker(void) {
    struct track t = {0};
    t.fail_after = -1;
    t.limit = (size_t)1 << 30;
    return t;
}

static int all_zero(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void test_append_and_growth(void) {
    struct track t = tracker();
    struct weft_buf b;
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, track_alloc, &t);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(t.allocs, 0); /* init allocates nothing */
    CHECK_EQ_INT(weft_buf_append(&b, "hello", 5), 0);
    CHECK_EQ_INT(weft_buf_append_char(&b, ' '), 0);
    CHECK_EQ_INT(weft_buf_append(&b, "world", 5), 0);
    CHECK_EQ_INT(b.len, 11);
    CHECK(memcmp(b.data, "hello world", 11) == 0);
    CHECK_EQ_STR(weft_buf_cstr(&b), "hello world");
    CHECK_EQ_INT(b.len, 11); /* the NUL is not counted */
    /* 100000 single bytes: doubling means a handful of (re)allocations,
     * not one per append, and every byte where it belongs. */
    weft_buf_reset(&b);
    for (int i = 0; i < 100000; i++) weft_buf_append_char(&b, (char)('a' + i % 26));
    CHECK_EQ_INT(b.err, WEFT_BUF_OK);
    CHECK_EQ_INT(b.len, 100000);
    CHECK(t.allocs + t.reallocs <= 13);
    CHECK(b.cap >= b.len && b.cap < 2 * b.len);
    int ok = 1;
    for (int i = 0; i < 100000; i++) ok &= b.data[i] == (char)('a' + i % 26);
    CHECK(ok);
    /* One large append grows at once. */
    int before = t.reallocs;
    char big[300000];
    memset(big, 'x', sizeof big);
    CHECK_EQ_INT(weft_buf_append(&b, big, sizeof big), 0);
    CHECK_EQ_INT(t.reallocs, before + 1);
    CHECK_EQ_INT(b.len, 400000);
    weft_buf_free(&b);
    CHECK_EQ_INT(t.frees, 1);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_reserve_and_extend(void) {
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    CHECK_EQ_INT(weft_buf_reserve(&b, 1000), 0);
    CHECK(b.cap >= 1000);
    CHECK_EQ_INT(b.len, 0);
    char *keep = b.data;
    for (int i = 0; i < 1000; i++) weft_buf_append_char(&b, 'z');
    CHECK(b.data == keep); /* reserved: no regrowth */
    char *d = weft_buf_extend(&b, 3);
    CHECK(d != NULL);
    if (d) memcpy(d, "abc", 3);
    CHECK_EQ_INT(b.len, 1003);
    CHECK(memcmp(b.data + 1000, "abc", 3) == 0);
    weft_buf_free(&b);
}

static void test_cap(void) {
    struct track t = tracker();
    struct weft_buf b;
    weft_buf_init_alloc(&b, 10, 0, track_alloc, &t);
    CHECK_EQ_INT(weft_buf_append(&b, "123456", 6), 0);
    /* Past the cap: refused whole, flagged, the buffer unchanged. */
    CHECK_EQ_INT(weft_buf_append(&b, "78901", 5), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    CHECK_EQ_INT(b.len, 6);
    CHECK(memcmp(b.data, "123456", 6) == 0);
    /* Sticky: a later append that would fit fails too (no hole). */
    CHECK_EQ_INT(weft_buf_append(&b, "7", 1), -1);
    CHECK_EQ_INT(weft_buf_append_char(&b, '7'), -1);
    CHECK(weft_buf_extend(&b, 1) == NULL);
    CHECK(weft_buf_cstr(&b) == NULL);
    CHECK_EQ_INT(weft_buf_reserve(&b, 0), -1);
    CHECK_EQ_INT(b.len, 6);
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    /* Reset clears the flag; exactly max fits, and so does its NUL. */
    weft_buf_reset(&b);
    CHECK_EQ_INT(b.err, WEFT_BUF_OK);
    CHECK_EQ_INT(weft_buf_append(&b, "0123456789", 10), 0);
    CHECK_EQ_STR(weft_buf_cstr(&b), "0123456789");
    CHECK(b.cap <= 11); /* never allocates past max + 1 */
    CHECK_EQ_INT(weft_buf_append_char(&b, 'x'), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    /* A reserve past the cap fails the same way. */
    weft_buf_reset(&b);
    CHECK_EQ_INT(weft_buf_reserve(&b, 11), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    weft_buf_reset(&b);
    CHECK_EQ_INT(weft_buf_reserve(&b, SIZE_MAX), -1); /* no overflow in len + more */
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    weft_buf_free(&b);
    /* max 0: nothing fits, but the empty string does. */
    weft_buf_init_alloc(&b, 0, 0, track_alloc, &t);
    CHECK_EQ_INT(weft_buf_append(&b, "", 0), 0);
    CHECK_EQ_STR(weft_buf_cstr(&b), "");
    CHECK_EQ_INT(weft_buf_append_char(&b, 'a'), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_TOO_BIG);
    weft_buf_free(&b);
}

static void test_out_of_memory(void) {
    struct track t = tracker();
    struct weft_buf b;
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, track_alloc, &t);
    CHECK_EQ_INT(weft_buf_append(&b, "abc", 3), 0);
    t.fail_after = 0; /* every allocation from now on fails */
    char big[200];
    memset(big, 'q', sizeof big);
    CHECK_EQ_INT(weft_buf_append(&b, big, sizeof big), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_NOMEM); /* told apart from over cap */
    CHECK_EQ_INT(b.len, 3);
    CHECK(memcmp(b.data, "abc", 3) == 0);
    /* Sticky, even for what would fit without allocating. */
    CHECK_EQ_INT(weft_buf_append_char(&b, 'd'), -1);
    CHECK_EQ_INT(b.len, 3);
    /* The first failure is the one recorded. */
    t.fail_after = -1;
    CHECK_EQ_INT(weft_buf_append(&b, "x", 1), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_NOMEM);
    /* take of a failed buffer: NULL, and its memory is given back. */
    int frees = t.frees;
    size_t len = 99;
    CHECK(weft_buf_take(&b, &len) == NULL);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(t.frees, frees + 1);
    CHECK(b.data == NULL);
    /* ... and the buffer works again. */
    CHECK_EQ_INT(weft_buf_append(&b, "ok", 2), 0);
    /* A request the allocator refuses (no overflow in the doubling). */
    CHECK_EQ_INT(weft_buf_reserve(&b, SIZE_MAX - b.len), -1);
    CHECK_EQ_INT(b.err, WEFT_BUF_NOMEM);
    weft_buf_free(&b);
    /* Out of memory for the terminating NUL alone. */
    t = tracker();
    weft_buf_init_alloc(&b, 4, 0, track_alloc, &t);
    weft_buf_append(&b, "abcd", 4);
    CHECK_EQ_INT(b.cap, 5); /* first allocation clamped to max + 1 */
    weft_buf_free(&b);
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, track_alloc, &t);
    t.fail_after = 0;
    CHECK(weft_buf_cstr(&b) == NULL);
    CHECK_EQ_INT(b.err, WEFT_BUF_NOMEM);
    weft_buf_free(&b);
}

static void test_reset_keeps_memory(void) {
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    weft_buf_append(&b, "some bytes", 10);
    char *data = b.data;
    size_t cap = b.cap;
    weft_buf_reset(&b);
    CHECK_EQ_INT(b.len, 0);
    CHECK(b.data == data);
    CHECK_EQ_INT(b.cap, cap);
    /* Not secret: the bytes stay where they were (sse.c reads a line it
     * has just consumed). */
    CHECK(memcmp(data, "some bytes", 10) == 0);
    weft_buf_append(&b, "new", 3);
    CHECK(b.data == data);
    CHECK(memcmp(b.data, "new", 3) == 0);
    weft_buf_free(&b);
}

static void test_drop(void) {
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET);
    weft_buf_append(&b, "line one\nline two", 17);
    weft_buf_drop(&b, 9);
    CHECK_EQ_INT(b.len, 8);
    CHECK(memcmp(b.data, "line two", 8) == 0);
    CHECK(all_zero(b.data + 8, 9)); /* secret: the vacated tail is zeroed */
    weft_buf_drop(&b, 0);
    CHECK_EQ_INT(b.len, 8);
    weft_buf_drop(&b, 100); /* more than held: all of it */
    CHECK_EQ_INT(b.len, 0);
    CHECK(all_zero(b.data, 17));
    weft_buf_free(&b);
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    weft_buf_drop(&b, 5); /* empty, never allocated */
    CHECK(b.data == NULL && b.len == 0);
    weft_buf_free(&b);
}

static void test_take(void) {
    struct weft_buf b;
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    weft_buf_append(&b, "taken", 5);
    size_t len = 0;
    char *p = weft_buf_take(&b, &len);
    CHECK_EQ_STR(p, "taken");
    CHECK_EQ_INT(len, 5);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    free(p); /* the caller's now */
    /* Still usable; an empty buffer gives "" (a real allocation). */
    p = weft_buf_take(&b, NULL);
    CHECK_EQ_STR(p, "");
    free(p);
    weft_buf_append(&b, "again", 5);
    CHECK_EQ_STR(weft_buf_cstr(&b), "again");
    weft_buf_free(&b);
    /* Through a custom allocator: the block is that allocator's. */
    struct track t = tracker();
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, track_alloc, &t);
    weft_buf_append(&b, "mine", 4);
    p = weft_buf_take(&b, &len);
    CHECK_EQ_STR(p, "mine");
    CHECK_EQ_INT(t.frees, 0);
    track_alloc(&t, p, t.last_size, 0);
    CHECK_EQ_INT(t.frees, 1);
    weft_buf_free(&b);
    CHECK_EQ_INT(t.frees, 1); /* nothing left to free */
}

static void test_secret_zeroing(void) {
    struct track t = tracker();
    t.check_zero = 1;
    struct weft_buf b;
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, WEFT_BUF_SECRET, track_alloc, &t);
    const char *cred = "Authorization: Bearer sk-canary-0123456789";
    size_t clen = strlen(cred);
    /* Grow it several times: every old block goes back zeroed, and never
     * through realloc (which would free a copy as it is). */
    for (int i = 0; i < 64; i++) weft_buf_append(&b, cred, clen);
    CHECK_EQ_INT(b.err, WEFT_BUF_OK);
    CHECK(t.allocs > 1);
    CHECK_EQ_INT(t.reallocs, 0);
    CHECK_EQ_INT(t.frees, t.allocs - 1);
    CHECK_EQ_INT(t.dirty, 0);
    CHECK(memcmp(b.data + 63 * clen, cred, clen) == 0); /* copied over intact */
    /* Reset zeroes what it discards, keeping the memory. */
    char *data = b.data;
    size_t len = b.len;
    weft_buf_reset(&b);
    CHECK(b.data == data);
    CHECK(all_zero(data, len));
    /* Free zeroes the whole allocation, written or not. */
    weft_buf_append(&b, cred, clen);
    weft_buf_cstr(&b);
    weft_buf_free(&b);
    CHECK_EQ_INT(t.frees, t.allocs);
    CHECK_EQ_INT(t.dirty, 0);
    /* The same append on a buffer that is not secret: realloc, no zeroing
     * (the check would fail: that is what makes it a check). */
    struct track u = tracker();
    weft_buf_init_alloc(&b, WEFT_BUF_NO_MAX, 0, track_alloc, &u);
    for (int i = 0; i < 64; i++) weft_buf_append(&b, cred, clen);
    CHECK(u.reallocs > 0);
    weft_buf_reset(&b);
    CHECK(memcmp(b.data, cred, clen) == 0);
    u.check_zero = 1;
    weft_buf_free(&b);
    CHECK_EQ_INT(u.dirty, 1);
}

static void test_edges(void) {
    struct weft_buf b;
    /* A buffer of zero bytes (never initialised) may be freed. */
    memset(&b, 0, sizeof b);
    weft_buf_free(&b);
    weft_buf_free(&b);
    weft_buf_init(&b, WEFT_BUF_NO_MAX, 0);
    /* Zero bytes, NULL source: nothing happens, nothing is allocated. */
    CHECK_EQ_INT(weft_buf_append(&b, NULL, 0), 0);
    CHECK_EQ_INT(weft_buf_append(&b, "", 0), 0);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(weft_buf_reserve(&b, 0), 0);
    weft_buf_reset(&b); /* on an empty, unallocated buffer */
    CHECK(b.data == NULL);
    /* extend by 0 still gives a pointer (the end of the bytes). */
    char *d = weft_buf_extend(&b, 0);
    CHECK(d != NULL);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_STR(weft_buf_cstr(&b), "");
    /* NUL bytes are bytes. */
    CHECK_EQ_INT(weft_buf_append(&b, "a\0b", 3), 0);
    CHECK_EQ_INT(b.len, 3);
    CHECK(memcmp(b.data, "a\0b", 3) == 0);
    /* Free then use again: same max and flags. */
    weft_buf_free(&b);
    CHECK_EQ_INT(weft_buf_append(&b, "x", 1), 0);
    weft_buf_free(&b);
    /* Zero bytes to a failed buffer report the failure. */
    weft_buf_init(&b, 1, 0);
    weft_buf_append(&b, "xy", 2);
    CHECK_EQ_INT(weft_buf_append(&b, NULL, 0), -1);
    weft_buf_free(&b);
    CHECK_EQ_INT(b.err, WEFT_BUF_OK); /* free clears the flag too */
}

int main(void) {
    RUN(test_append_and_growth);
    RUN(test_reserve_and_extend);
    RUN(test_cap);
    RUN(test_out_of_memory);
    RUN(test_reset_keeps_memory);
    RUN(test_drop);
    RUN(test_take);
    RUN(test_secret_zeroing);
    RUN(test_edges);
    return DONE();
}
