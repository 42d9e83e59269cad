/* buf.c -- the growable byte buffer (see buf.h). */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_ALLOC 64 /* small: ten thousand idle connections hold a few */

static void *std_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

void weft_buf_init_alloc(struct weft_buf *b, size_t max, int flags, weft_buf_alloc_fn alloc,
                         void *ud) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
    b->flags = flags;
    b->err = WEFT_BUF_OK;
    b->alloc = alloc ? alloc : std_alloc;
    b->alloc_ud = alloc ? ud : NULL;
}

void weft_buf_init(struct weft_buf *b, size_t max, int flags) {
    weft_buf_init_alloc(b, max, flags, NULL, NULL);
}

static int fail(struct weft_buf *b, enum weft_buf_err e) {
    if (!b->err) b->err = e;
    return -1;
}

/* An allocation of at least `need` bytes (need <= max + 1, the room of a
 * NUL after max bytes). Doubling keeps appends amortised O(1); the
 * allocation never goes past that max + 1. */
static int grow(struct weft_buf *b, size_t need) {
    if (need <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : FIRST_ALLOC;
    while (ncap < need) ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    size_t limit = b->max == WEFT_BUF_NO_MAX ? WEFT_BUF_NO_MAX : b->max + 1;
    if (ncap > limit) ncap = limit;
    char *np;
    if (b->flags & WEFT_BUF_SECRET) {
        /* Not realloc: it may move the bytes and free the old block as it
         * is, secret and all. */
        np = b->alloc(b->alloc_ud, NULL, 0, ncap);
        if (!np) return fail(b, WEFT_BUF_NOMEM);
        if (b->data) {
            memcpy(np, b->data, b->len);
            explicit_bzero(b->data, b->cap);
            b->alloc(b->alloc_ud, b->data, b->cap, 0);
        }
    } else {
        np = b->alloc(b->alloc_ud, b->data, b->cap, ncap);
        if (!np) return fail(b, WEFT_BUF_NOMEM);
    }
    b->data = np;
    b->cap = ncap;
    return 0;
}

int weft_buf_reserve(struct weft_buf *b, size_t more) {
    if (b->err) return -1;
    if (more > b->max - b->len) return fail(b, WEFT_BUF_TOO_BIG);
    return grow(b, b->len + more);
}

char *weft_buf_extend(struct weft_buf *b, size_t n) {
    if (weft_buf_reserve(b, n) != 0) return NULL;
    if (!b->data && grow(b, 1) != 0) return NULL; /* n == 0: still a pointer */
    char *p = b->data + b->len;
    b->len += n;
    return p;
}

const char *weft_buf_cstr(struct weft_buf *b) {
    if (b->err) return NULL;
    if (b->len == SIZE_MAX) {
        fail(b, WEFT_BUF_NOMEM);
        return NULL;
    }
    if (grow(b, b->len + 1) != 0) return NULL;
    b->data[b->len] = '\0';
    return b->data;
}

void weft_buf_drop(struct weft_buf *b, size_t n) {
    if (n >= b->len) n = b->len;
    if (n == 0) return;
    size_t rest = b->len - n;
    memmove(b->data, b->data + n, rest);
    if (b->flags & WEFT_BUF_SECRET) explicit_bzero(b->data + rest, n);
    b->len = rest;
}

void weft_buf_reset(struct weft_buf *b) {
    if ((b->flags & WEFT_BUF_SECRET) && b->len) explicit_bzero(b->data, b->len);
    b->len = 0;
    b->err = WEFT_BUF_OK;
}

char *weft_buf_take(struct weft_buf *b, size_t *len) {
    if (!weft_buf_cstr(b)) {
        weft_buf_free(b);
        if (len) *len = 0;
        return NULL;
    }
    char *p = b->data;
    if (len) *len = b->len;
    /* Ownership of the block passes to the caller. */
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void weft_buf_free(struct weft_buf *b) {
    if (b->data) {
        if (b->flags & WEFT_BUF_SECRET) explicit_bzero(b->data, b->cap);
        b->alloc(b->alloc_ud, b->data, b->cap, 0);
    }
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = WEFT_BUF_OK;
}
