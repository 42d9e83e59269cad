/* log.c -- JSON-lines logger on stderr. */
#include "log.h"
#include "secrets.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int current_level = WEFT_LOG_INFO;
static int current_format = WEFT_LOG_JSON;

int weft_log_format(void) { return current_format; }

void weft_log_set_format(int format) {
    if (format == WEFT_LOG_JSON || format == WEFT_LOG_LOGFMT) current_format = format;
}

int weft_log_parse_format(const char *name) {
    if (!name) return -1;
    if (strcasecmp(name, "json") == 0) return WEFT_LOG_JSON;
    if (strcasecmp(name, "logfmt") == 0) return WEFT_LOG_LOGFMT;
    if (strcasecmp(name, "auto") == 0) return isatty(STDERR_FILENO) ? WEFT_LOG_LOGFMT : WEFT_LOG_JSON;
    return -1;
}

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int weft_log_level(void) { return current_level; }

void weft_log_set_level(int level) {
    if (level >= WEFT_LOG_DEBUG && level <= WEFT_LOG_OFF) current_level = level;
}

int weft_log_parse_level(const char *name) {
    if (!name) return -1;
    for (int i = 0; i <= WEFT_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return WEFT_LOG_WARN;
    return -1;
}

const char *weft_log_level_name(int level) {
    if (level < 0 || level > WEFT_LOG_OFF) return "?";
    return level_names[level];
}

void weft_log_emit(const char *line, size_t len) {
    /* Every loaded secret value (and its encodings) is replaced here, the
     * one place all output passes through. */
    char *red = NULL;
    size_t redlen = 0;
    if (weft_secrets_redact(line, len, &red, &redlen) != 0) {
        static const char dropped[] = "{\"level\":\"error\",\"msg\":\"log line dropped: redaction failed\"}\n";
        line = dropped;
        len = sizeof dropped - 1;
    } else if (red) {
        line = red;
        len = redlen;
    }
    /* One write(2) per line so concurrent writers (several processes on one
     * terminal or pipe) never interleave inside a line. */
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n <= 0) break;
        line += n;
        len -= (size_t)n;
    }
    if (red) {
        explicit_bzero(red, redlen);
        free(red);
    }
}

size_t weft_json_quote(char *buf, size_t cap, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
#define PUT(c) do { if (o < cap) buf[o] = (char)(c); o++; } while (0)
    PUT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': PUT('\\'); PUT('"'); break;
        case '\\': PUT('\\'); PUT('\\'); break;
        case '\n': PUT('\\'); PUT('n'); break;
        case '\r': PUT('\\'); PUT('r'); break;
        case '\t': PUT('\\'); PUT('t'); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                PUT('\\'); PUT('u'); PUT('0'); PUT('0');
                PUT(hex[c >> 4]); PUT(hex[c & 15]);
            } else {
                PUT(c);
            }
        }
    }
    PUT('"');
#undef PUT
    return o;
}

void weft_log_write(int level, const char *msg, size_t msglen,
                    const char *fields_json, size_t fieldslen) {
    if (level < current_level || level >= WEFT_LOG_OFF) return;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[96];
    int logfmt = current_format == WEFT_LOG_LOGFMT;
    int hn = snprintf(head, sizeof head,
                      logfmt ? "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg="
                             : "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level]);
    if (hn < 0) return;

    /* What follows msg: in logfmt the caller's rendered " k=v" text as
     * given; in JSON the members of the fields object without its braces,
     * after a comma. msg itself is JSON-quoted in both (valid logfmt). */
    const char *fb = NULL;
    size_t fl = 0;
    const char *sep = "";
    if (logfmt) {
        fb = fields_json;
        fl = fields_json ? fieldslen : 0;
    } else if (fields_json && fieldslen >= 2) {
        const char *open = memchr(fields_json, '{', fieldslen);
        const char *close = fields_json + fieldslen;
        while (close > fields_json && close[-1] != '}') close--;
        if (open && close > open + 1) {
            fb = open + 1;
            fl = (size_t)(close - 1 - fb);
            while (fl > 0 && (*fb == ' ' || *fb == '\n')) { fb++; fl--; }
            sep = ",";
        }
    }
    const char *tail = logfmt ? "\n" : "}\n";

    size_t qn = weft_json_quote(NULL, 0, msg, msglen);
    size_t total = (size_t)hn + qn + strlen(sep) + fl + strlen(tail);
    char stackbuf[1024];
    char *line = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (!line) return;
    size_t o = (size_t)hn;
    memcpy(line, head, o);
    o += weft_json_quote(line + o, qn, msg, msglen);
    if (fl) {
        memcpy(line + o, sep, strlen(sep));
        o += strlen(sep);
        memcpy(line + o, fb, fl);
        o += fl;
    }
    memcpy(line + o, tail, strlen(tail));
    o += strlen(tail);
    weft_log_emit(line, o);
    if (line != stackbuf) free(line);
}

void weft_log(int level, const char *fmt, ...) {
    if (level < current_level) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    weft_log_write(level, buf, (size_t)n, NULL, 0);
}
