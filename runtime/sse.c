/* sse.c -- the event-stream parser (see sse.h). */
#include "sse.h"

#include <string.h>

#define DEFAULT_MAX (16u << 20)

void weft_sse_init(struct weft_sse *p, size_t max_event) {
    memset(p, 0, sizeof *p);
    p->retry_ms = -1;
    p->max_event = max_event ? max_event : DEFAULT_MAX;
    /* Stream bytes, not credentials: no zeroing. */
    weft_buf_init(&p->line, p->max_event, 0);
    weft_buf_init(&p->data, p->max_event, 0);
}

void weft_sse_free(struct weft_sse *p) {
    weft_buf_free(&p->line);
    weft_buf_free(&p->data);
}

/* Why an append to one of the buffers failed. */
static int buf_error(const struct weft_buf *b) {
    return b->err == WEFT_BUF_TOO_BIG ? WEFT_SSE_TOO_LARGE : WEFT_SSE_NOMEM;
}

static void reset_event(struct weft_sse *p) {
    weft_buf_reset(&p->data);
    p->has_data = 0;
    p->type_len = 0;
}

/* One complete line (without its terminator). */
static int line(struct weft_sse *p, const char *s, size_t n, weft_sse_cb cb, void *ud) {
    if (n == 0) {
        /* dispatch */
        if (!p->has_data) {
            reset_event(p);
            return 0;
        }
        struct weft_sse_event ev;
        ev.type = p->type_len ? p->type : "message";
        ev.type_len = p->type_len ? p->type_len : 7;
        ev.data = p->data.len ? p->data.data : "";
        ev.data_len = p->data.len;
        ev.id = p->id;
        ev.id_len = p->id_len;
        ev.retry_ms = p->retry_ms;
        int r = cb ? cb(ud, &ev) : 0;
        reset_event(p);
        return r;
    }
    if (s[0] == ':') return 0; /* comment */
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        /* joined with LF: a separator before every line but the first */
        if (weft_buf_reserve(&p->data, (p->has_data ? 1 : 0) + vlen) != 0)
            return buf_error(&p->data);
        if (p->has_data) weft_buf_append_char(&p->data, '\n');
        weft_buf_append(&p->data, v, vlen);
        p->has_data = 1;
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        size_t k = vlen < sizeof p->type - 1 ? vlen : sizeof p->type - 1;
        memcpy(p->type, v, k);
        p->type[k] = '\0';
        p->type_len = k;
    } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
        if (!memchr(v, '\0', vlen)) {
            size_t k = vlen < sizeof p->id - 1 ? vlen : sizeof p->id - 1;
            memcpy(p->id, v, k);
            p->id[k] = '\0';
            p->id_len = k;
        }
    } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
        long ms = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            if (ms < 100000000L) ms = ms * 10 + (v[i] - '0'); /* saturates at ~1 day */
        if (i == vlen && vlen > 0) p->retry_ms = ms;
    }
    return 0;
}

/* Feed bytes after the BOM check. */
static int feed(struct weft_sse *p, const char *buf, size_t len, weft_sse_cb cb, void *ud) {
    size_t i = 0;
    if (p->after_cr && len > 0) {
        p->after_cr = 0;
        if (buf[0] == '\n') i = 1; /* the LF of a CRLF split across chunks */
    }
    while (i < len) {
        /* the end of the current line, if it is in this chunk */
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r') j++;
        if (j == len) {
            if (weft_buf_append(&p->line, buf + i, len - i) != 0) return buf_error(&p->line);
            return 0;
        }
        int r;
        if (p->line.len) {
            if (weft_buf_append(&p->line, buf + i, j - i) != 0) return buf_error(&p->line);
            const char *s = p->line.data;
            size_t n = p->line.len;
            /* Consumed below, before any callback can feed; the bytes stay
             * in place (reset keeps the memory of a non-secret buffer). */
            weft_buf_reset(&p->line);
            r = line(p, s, n, cb, ud);
        } else {
            if (j - i > p->max_event) return WEFT_SSE_TOO_LARGE;
            r = line(p, buf + i, j - i, cb, ud);
        }
        /* the terminator: CRLF, LF or CR */
        if (buf[j] == '\r') {
            if (j + 1 < len) {
                if (buf[j + 1] == '\n') j++;
            } else {
                p->after_cr = 1;
            }
        }
        i = j + 1;
        if (r != 0) return r; /* stopped by the callback (or an error) */
    }
    return 0;
}

int weft_sse_feed(struct weft_sse *p, const char *buf, size_t len, weft_sse_cb cb, void *ud) {
    if (p->error) return p->error;
    if (!p->bom_checked) {
        /* Collect up to three bytes to see whether they are a BOM. */
        static const unsigned char BOM[3] = {0xef, 0xbb, 0xbf};
        while (len > 0 && p->bom_len < 3) {
            p->bom[p->bom_len] = (unsigned char)*buf;
            if (p->bom[p->bom_len] != BOM[p->bom_len]) break;
            p->bom_len++;
            buf++;
            len--;
        }
        if (p->bom_len < 3 && len == 0) return 0; /* a BOM prefix so far: wait */
        p->bom_checked = 1;
        if (p->bom_len < 3 && p->bom_len > 0) {
            /* not a BOM after all: those bytes are content */
            int n = p->bom_len;
            p->bom_len = 0;
            int r = feed(p, (const char *)p->bom, (size_t)n, cb, ud);
            if (r != 0) {
                p->error = r;
                return r;
            }
        }
    }
    int r = feed(p, buf, len, cb, ud);
    if (r != 0) p->error = r;
    return r;
}

int weft_sse_pending(const struct weft_sse *p) {
    return p->line.len > 0 || p->has_data || (!p->bom_checked && p->bom_len > 0);
}
