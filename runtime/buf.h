/* buf.h -- the growable byte buffer every C file uses (after curl's
 * lib/dynbuf.c): a size cap, a sticky failure flag, and a free that zeroes
 * the bytes of a buffer that may hold a credential.
 *
 *   struct weft_buf b;
 *   weft_buf_init(&b, max, WEFT_BUF_SECRET);
 *   weft_buf_append(&b, p, n); weft_buf_append_char(&b, ',');  ...
 *   if (b.err) ...            -- once, at the end: nothing was half-added
 *   weft_buf_free(&b);
 *
 * Growth doubles the allocation (64 bytes first), so n appends cost O(n)
 * copies in all. An append that would take `len` past `max`, or that needs
 * memory the allocator refuses, changes nothing, records why in `err`
 * (WEFT_BUF_TOO_BIG or WEFT_BUF_NOMEM) and returns -1; every later append,
 * reserve, extend, cstr or take fails too until weft_buf_reset, so a
 * caller that checks only at the end never ships a buffer with a hole.
 *
 * A WEFT_BUF_SECRET buffer never leaves its bytes in memory it gives back:
 * it grows by allocate-copy-zero-free instead of realloc (which may copy
 * and free the old block without clearing it), reset and drop zero what
 * they discard, and free zeroes the whole allocation. Bytes handed on with
 * weft_buf_take are the taker's to zero.
 */
#ifndef WEFT_BUF_H
#define WEFT_BUF_H

#include <stddef.h>
#include <string.h>

/* The shape of lua_Alloc, so a Lua state's allocator (and with it a
 * plugin's allocation budget) can be given as it is: nsize 0 frees and
 * returns NULL; otherwise (re)allocates ptr (NULL: a new block, osize 0)
 * to nsize bytes, NULL on failure with ptr untouched. */
typedef void *(*weft_buf_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

enum { WEFT_BUF_SECRET = 1 };  /* flags: may hold a credential: zeroed */

enum weft_buf_err {
    WEFT_BUF_OK = 0,
    WEFT_BUF_TOO_BIG,          /* an append would have passed `max` */
    WEFT_BUF_NOMEM,            /* the allocator failed */
};

#define WEFT_BUF_NO_MAX ((size_t)-1)

struct weft_buf {
    char *data;                /* the bytes, not NUL-terminated (see
                                  weft_buf_cstr); NULL until the first
                                  allocation; owned */
    size_t len;                /* bytes held */
    size_t cap;                /* bytes allocated (may reach max + 1: the
                                  room of a terminating NUL) */
    size_t max;                /* len never exceeds this */
    int flags;                 /* WEFT_BUF_SECRET */
    enum weft_buf_err err;     /* the first failure since init or reset */
    weft_buf_alloc_fn alloc;   /* where memory comes from */
    void *alloc_ud;
};

/* An empty buffer holding at most `max` bytes (WEFT_BUF_NO_MAX: no cap)
 * that allocates with realloc/free. Allocates nothing. A buffer of all
 * zero bytes (never initialised) may be given to weft_buf_free only. */
void weft_buf_init(struct weft_buf *b, size_t max, int flags);

/* The same, allocating through `alloc` (with `ud`): memory from
 * weft_buf_take then belongs to that allocator. */
void weft_buf_init_alloc(struct weft_buf *b, size_t max, int flags, weft_buf_alloc_fn alloc,
                         void *ud);

/* Room for `more` bytes after len, so that appending them cannot fail.
 * Returns 0, or -1 with err set (see the top of this file). */
int weft_buf_reserve(struct weft_buf *b, size_t more);

/* Append n bytes from p (p may be NULL when n is 0). Returns 0, or -1 with
 * err set and the buffer unchanged. */
static inline int weft_buf_append(struct weft_buf *b, const void *p, size_t n) {
    /* The common case inline (the JSON encoder appends a byte at a time);
     * max too, since cap may be one past it. */
    if (b->err || n > b->cap - b->len || n > b->max - b->len) {
        if (weft_buf_reserve(b, n) != 0) return -1;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int weft_buf_append_char(struct weft_buf *b, char c) {
    if (b->err || b->len == b->cap || b->len == b->max) {
        if (weft_buf_reserve(b, 1) != 0) return -1;
    }
    b->data[b->len++] = c;
    return 0;
}

/* Grow len by n and return the n new bytes (uninitialised, for the caller
 * to fill at once), or NULL with err set and the buffer unchanged. */
char *weft_buf_extend(struct weft_buf *b, size_t n);

/* The bytes followed by a NUL (not counted in len; it may stand one past
 * max), valid until the next change. NULL when the buffer has failed or
 * the NUL needs memory that cannot be had (err set). */
const char *weft_buf_cstr(struct weft_buf *b);

/* Remove the first n bytes (all of them when n >= len), moving the rest
 * to the front; memory is kept. Does not clear err. */
void weft_buf_drop(struct weft_buf *b, size_t n);

/* Empty the buffer and clear err; memory is kept for reuse. The bytes of a
 * secret buffer are zeroed; those of any other stay where they were (so a
 * caller may still read what it just consumed, until the next append). */
void weft_buf_reset(struct weft_buf *b);

/* Hand the bytes on: returns them NUL-terminated (the NUL not counted in
 * *len; len may be NULL), owned by the caller, to be freed with free() --
 * or with the allocator given to weft_buf_init_alloc. An empty buffer
 * gives "" in a new allocation. The buffer is left empty, with no memory,
 * still usable. NULL (and the buffer freed) when it had failed or the NUL
 * cannot be had. */
char *weft_buf_take(struct weft_buf *b, size_t *len);

/* Give the memory back (zeroed first for a secret buffer) and empty the
 * buffer, clearing err; it stays initialised (same max, flags, allocator)
 * and may be used again. Safe on a buffer of all zero bytes. */
void weft_buf_free(struct weft_buf *b);

#endif
