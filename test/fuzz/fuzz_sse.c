/* fuzz_sse.c -- libFuzzer target for the event-stream parser (runtime/sse.c).
 *
 * Properties checked on every input, besides ASan/UBSan cleanliness:
 *  - the events are the same whether the input arrives whole, in two
 *    chunks split at a position chosen by the input, or byte by byte;
 *  - with a small size cap the parser fails with WEFT_SSE_TOO_LARGE, and
 *    never emits an event whose data is over the cap.
 * The first byte picks the split position; the rest is the stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

struct acc {
    unsigned char *buf;
    size_t len, cap;
    size_t max_data;
};

static void put(struct acc *a, const void *p, size_t n) {
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        while (cap < a->len + n) cap *= 2;
        a->buf = realloc(a->buf, cap);
        if (!a->buf) abort();
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static int on_event(void *ud, const struct weft_sse_event *ev) {
    struct acc *a = ud;
    if (ev->data_len > a->max_data) a->max_data = ev->data_len;
    size_t lens[3] = {ev->type_len, ev->data_len, ev->id_len};
    put(a, lens, sizeof lens);
    put(a, ev->type, ev->type_len);
    put(a, ev->data, ev->data_len);
    put(a, ev->id, ev->id_len);
    put(a, &ev->retry_ms, sizeof ev->retry_ms);
    return 0;
}

static int run(const uint8_t *d, size_t n, size_t step, size_t cut, size_t cap, struct acc *a) {
    struct weft_sse p;
    weft_sse_init(&p, cap);
    int r = 0;
    if (cut) {
        r = weft_sse_feed(&p, (const char *)d, cut, on_event, a);
        if (r == 0) r = weft_sse_feed(&p, (const char *)d + cut, n - cut, on_event, a);
    } else {
        if (step == 0) step = n ? n : 1;
        for (size_t i = 0; i < n && r == 0; i += step)
            r = weft_sse_feed(&p, (const char *)d + i, i + step <= n ? step : n - i, on_event, a);
    }
    int pending = weft_sse_pending(&p);
    weft_sse_free(&p);
    return r == 0 ? pending : r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t cut = size > 1 ? 1 + data[0] % (size - 1) : 0;
    data++;
    size--;
    if (cut > size) cut = size;
    struct acc whole = {0}, split = {0}, bytes = {0}, small = {0};
    int r1 = run(data, size, 0, 0, 0, &whole);
    int r2 = run(data, size, 0, cut, 0, &split);
    int r3 = run(data, size, 1, 0, 0, &bytes);
    if (r1 != r2 || r1 != r3) abort();
    if (whole.len != split.len || (whole.len && memcmp(whole.buf, split.buf, whole.len) != 0)) abort();
    if (whole.len != bytes.len || (whole.len && memcmp(whole.buf, bytes.buf, whole.len) != 0)) abort();
    /* with a 32-byte cap: no event over it, and an error iff something was */
    int r4 = run(data, size, 7, 0, 32, &small);
    if (small.max_data > 32) abort();
    if (r4 != WEFT_SSE_TOO_LARGE && small.len != whole.len) abort();
    free(whole.buf);
    free(split.buf);
    free(bytes.buf);
    free(small.buf);
    return 0;
}
