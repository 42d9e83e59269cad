/* sse.h -- incremental parser of Server-Sent Events (text/event-stream),
 * as the WHATWG HTML standard defines the format ("Parsing an event
 * stream").
 *
 * Feed it the body in chunks of any size, split anywhere (inside a line,
 * between CR and LF, inside a UTF-8 sequence): it calls back once per
 * dispatched event. Lines end in CRLF, LF or CR; a leading BOM is skipped;
 * lines starting with ':' are comments; `data` lines are joined with LF;
 * `event` sets the type (default "message"); `id` without NUL sets the last
 * event id; `retry` with only ASCII digits sets the reconnection time;
 * other fields are ignored; an event is dispatched at an empty line only
 * when it has data (an `event:` line alone is not an event).
 *
 * Nothing here allocates per event beyond growing two buffers, and nothing
 * knows Lua or the network. Pure and deterministic: fuzzed under
 * test/fuzz.
 */
#ifndef WEFT_SSE_H
#define WEFT_SSE_H

#include <stddef.h>

#include "buf.h"

struct weft_sse_event {
    const char *type;   /* "message" unless an event: field said otherwise */
    size_t type_len;
    const char *data;   /* data lines joined by LF, no final LF */
    size_t data_len;
    const char *id;     /* last event id (persists across events), "" if none */
    size_t id_len;
    long retry_ms;      /* last valid retry: value, -1 if none */
};

/* Return 0 to continue; a non-zero value (use a positive one) stops the
 * parser for good and weft_sse_feed returns it. */
typedef int (*weft_sse_cb)(void *ud, const struct weft_sse_event *ev);

struct weft_sse {
    struct weft_buf line; /* the current, unterminated line (max: max_event) */
    struct weft_buf data; /* data of the event being built (max: max_event) */
    int has_data;        /* at least one data: field (data may be empty) */
    char type[64];       /* event type ("" = message); longer types are cut */
    size_t type_len;
    char id[256];        /* last event id; longer ids are cut */
    size_t id_len;
    long retry_ms;
    size_t max_event;    /* cap on line + event data bytes */
    int after_cr;        /* the previous byte was CR: a following LF is part of it */
    int bom_checked;     /* the first bytes were checked for a BOM */
    unsigned char bom[3];
    int bom_len;
    int error;           /* non-zero once spent: what weft_sse_feed returned */
};

enum { WEFT_SSE_OK = 0, WEFT_SSE_TOO_LARGE = -1, WEFT_SSE_NOMEM = -2 };

/* max_event: bytes a line or an event's data may reach (0: 16 MiB). */
void weft_sse_init(struct weft_sse *p, size_t max_event);
void weft_sse_free(struct weft_sse *p);

/* Parse a chunk. Returns WEFT_SSE_OK, or the callback's non-zero result
 * (the consumer stopped: the rest is not parsed), WEFT_SSE_TOO_LARGE or
 * WEFT_SSE_NOMEM; after a non-zero result the parser is spent and every
 * later call returns the same value. */
int weft_sse_feed(struct weft_sse *p, const char *buf, size_t len, weft_sse_cb cb, void *ud);

/* The stream ended. Per the standard an event not followed by an empty
 * line is discarded; this returns 1 when such a partial event (or an
 * unterminated line) was pending, 0 when the stream ended cleanly. */
int weft_sse_pending(const struct weft_sse *p);

#endif
