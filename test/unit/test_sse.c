/* test_sse.c -- the event-stream parser: the standard's examples, every
 * kind of line ending, split points everywhere, limits, the provider
 * dialects' streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "sse.h"

/* Events rendered as text: "type|data|id|retry\n" per event. */
struct out {
    char buf[8192];
    size_t len;
    int count;
    int stop_after; /* stop (return 1) after this many events; 0: never */
};

static int collect(void *ud, const struct weft_sse_event *ev) {
    struct out *o = ud;
    int n = snprintf(o->buf + o->len, sizeof o->buf - o->len, "%.*s|%.*s|%.*s|%ld\n", (int)ev->type_len,
                     ev->type, (int)ev->data_len, ev->data, (int)ev->id_len, ev->id, ev->retry_ms);
    if (n > 0 && (size_t)n < sizeof o->buf - o->len) o->len += (size_t)n;
    o->count++;
    return o->stop_after && o->count >= o->stop_after ? 1 : 0;
}

/* Parse `in` in chunks of `step` bytes (0: one chunk). */
static int parse(const char *in, size_t n, size_t step, struct out *o, int *pending) {
    struct weft_sse p;
    weft_sse_init(&p, 0);
    memset(o, 0, sizeof *o);
    int r = 0;
    if (step == 0) step = n ? n : 1;
    for (size_t i = 0; i < n && r == 0; i += step)
        r = weft_sse_feed(&p, in + i, i + step <= n ? step : n - i, collect, o);
    if (pending) *pending = weft_sse_pending(&p);
    weft_sse_free(&p);
    o->buf[o->len] = '\0';
    return r;
}

static void expect(const char *in, const char *events) {
    size_t n = strlen(in);
    struct out o;
    CHECK_EQ_INT(parse(in, n, 0, &o, NULL), 0);
    CHECK_EQ_STR(o.buf, events);
    /* the same events whatever the chunking */
    for (size_t step = 1; step <= 7 && step < n; step++) {
        struct out o2;
        parse(in, n, step, &o2, NULL);
        if (strcmp(o2.buf, events) != 0) {
            fprintf(stdout, "# step %zu differs\n", step);
            CHECK_EQ_STR(o2.buf, events);
        }
    }
    /* and with two chunks split at every position */
    for (size_t cut = 1; cut < n; cut++) {
        struct weft_sse p;
        struct out o3;
        memset(&o3, 0, sizeof o3);
        weft_sse_init(&p, 0);
        weft_sse_feed(&p, in, cut, collect, &o3);
        weft_sse_feed(&p, in + cut, n - cut, collect, &o3);
        weft_sse_free(&p);
        o3.buf[o3.len] = '\0';
        if (strcmp(o3.buf, events) != 0) {
            fprintf(stdout, "# cut at %zu differs\n", cut);
            CHECK_EQ_STR(o3.buf, events);
            break;
        }
    }
}

static void test_standard_examples(void) {
    /* from the HTML standard's event stream section */
    expect("data: YHOO\ndata: +2\ndata: 10\n\n", "message|YHOO\n+2\n10||-1\n");
    expect(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
           "message|first event|1|-1\nmessage|second event||-1\nmessage| third event||-1\n");
    expect("data\n\ndata\ndata\n\ndata:", "message|||-1\nmessage|\n||-1\n");
    expect("data:test\n\ndata: test\n\n", "message|test||-1\nmessage|test||-1\n");
}

static void test_line_endings(void) {
    expect("data: a\r\n\r\ndata: b\r\rdata: c\n\n", "message|a||-1\nmessage|b||-1\nmessage|c||-1\n");
    expect("data: x\r\ndata: y\r\n\r\n", "message|x\ny||-1\n");
    /* CR then LF as separate line ends would be two lines; CRLF is one */
    expect("data: 1\r\n\n", "message|1||-1\n");
    expect("data: 1\n\r\n", "message|1||-1\n");
}

static void test_fields(void) {
    expect("event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
           "add|73857293||-1\nremove|2153||-1\n");
    /* the type resets after each event; id persists */
    expect("event: a\nid: 7\ndata: 1\n\ndata: 2\n\n", "a|1|7|-1\nmessage|2|7|-1\n");
    /* an event: line alone dispatches nothing, and does not leak on */
    expect("event: lonely\n\ndata: x\n\n", "message|x||-1\n");
    /* retry: digits only */
    expect("retry: 3000\ndata: a\n\nretry: 12x\ndata: b\n\nretry:\ndata: c\n\n",
           "message|a||3000\nmessage|b||3000\nmessage|c||3000\n");
    /* unknown fields and a field without a colon are ignored; one space only is stripped */
    expect("foo: bar\ndata\ndata:  two spaces\nnocolon\n\n", "message|\n two spaces||-1\n");
    /* comments anywhere, including between data lines */
    expect("data: a\n: keep-alive\ndata: b\n\n", "message|a\nb||-1\n");
    /* a BOM at the start is skipped, only there */
    expect("\xef\xbb\xbf" "data: bom\n\n", "message|bom||-1\n");
}

static void test_id_with_nul(void) {
    const char in[] = "id: a\0b\ndata: x\n\n";
    struct out o;
    parse(in, sizeof in - 1, 0, &o, NULL);
    CHECK_EQ_STR(o.buf, "message|x||-1\n");
}

static void test_not_a_bom(void) {
    /* EF BB then 'd' is content: the line starts with those two bytes,
     * so its field name is not "data" and nothing is dispatched */
    struct out o;
    const char *in = "\xef\xbb" "data: x\n\ndata: y\n\n";
    for (size_t step = 0; step <= 3; step++) {
        parse(in, strlen(in), step, &o, NULL);
        CHECK_EQ_STR(o.buf, "message|y||-1\n");
    }
}

static void test_pending_and_stop(void) {
    struct out o;
    int pending = 0;
    parse("data: complete\n\ndata: partial", 30, 0, &o, &pending);
    CHECK_EQ_STR(o.buf, "message|complete||-1\n");
    CHECK_EQ_INT(pending, 1);
    parse("data: complete\n\ndata: partial\n", 31, 3, &o, &pending);
    CHECK_EQ_INT(o.count, 1);
    CHECK_EQ_INT(pending, 1); /* data without the closing empty line */
    parse("data: complete\n\n", 16, 0, &o, &pending);
    CHECK_EQ_INT(pending, 0);

    /* a consumer that stops: the parser is spent */
    struct weft_sse p;
    weft_sse_init(&p, 0);
    memset(&o, 0, sizeof o);
    o.stop_after = 1;
    CHECK_EQ_INT(weft_sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18, collect, &o), 1);
    CHECK_EQ_INT(o.count, 1);
    CHECK_EQ_INT(weft_sse_feed(&p, "data: 3\n\n", 9, collect, &o), 1);
    CHECK_EQ_INT(o.count, 1);
    weft_sse_free(&p);
}

static void test_limits(void) {
    struct weft_sse p;
    struct out o;
    memset(&o, 0, sizeof o);
    weft_sse_init(&p, 64);
    char big[200];
    memset(big, 'x', sizeof big);
    /* a line over the cap, even in small pieces */
    int r = 0;
    for (size_t i = 0; i < sizeof big && r == 0; i += 10) r = weft_sse_feed(&p, big + i, 10, collect, &o);
    CHECK_EQ_INT(r, WEFT_SSE_TOO_LARGE);
    CHECK_EQ_INT(weft_sse_feed(&p, "\n\n", 2, collect, &o), WEFT_SSE_TOO_LARGE);
    weft_sse_free(&p);
    /* an event whose data lines add up over the cap */
    weft_sse_init(&p, 64);
    r = 0;
    for (int i = 0; i < 10 && r == 0; i++) r = weft_sse_feed(&p, "data: 0123456789\n", 17, collect, &o);
    CHECK_EQ_INT(r, WEFT_SSE_TOO_LARGE);
    CHECK_EQ_INT(o.count, 0);
    weft_sse_free(&p);
    /* a long event type and id are cut, not overflowed */
    char in[1200];
    int n = snprintf(in, sizeof in, "event: %0300d\nid: %0600d\ndata: d\n\n", 1, 2);
    weft_sse_init(&p, 0);
    memset(&o, 0, sizeof o);
    CHECK_EQ_INT(weft_sse_feed(&p, in, (size_t)n, collect, &o), 0);
    CHECK_EQ_INT(o.count, 1);
    CHECK_EQ_INT(p.type_len, 0); /* reset after dispatch */
    CHECK_EQ_INT(p.id_len, sizeof p.id - 1);
    weft_sse_free(&p);
}

static void test_dialects(void) {
    /* OpenAI chat completions stream */
    expect("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
           "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
           "data: [DONE]\n\n",
           "message|{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}||-1\n"
           "message|{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}||-1\n"
           "message|[DONE]||-1\n");
    /* Anthropic messages stream (typed events, ping) */
    expect("event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
           "event: ping\ndata: {\"type\": \"ping\"}\n\n"
           "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
           "message_start|{\"type\":\"message_start\"}||-1\n"
           "ping|{\"type\": \"ping\"}||-1\n"
           "message_stop|{\"type\":\"message_stop\"}||-1\n");
    /* Gemini streamGenerateContent?alt=sse, CRLF line ends */
    expect("data: {\"candidates\":[]}\r\n\r\ndata: {\"candidates\":[1]}\r\n\r\n",
           "message|{\"candidates\":[]}||-1\nmessage|{\"candidates\":[1]}||-1\n");
}

int main(void) {
    RUN(test_standard_examples);
    RUN(test_line_endings);
    RUN(test_fields);
    RUN(test_id_with_nul);
    RUN(test_not_a_bom);
    RUN(test_pending_and_stop);
    RUN(test_limits);
    RUN(test_dialects);
    return DONE();
}
