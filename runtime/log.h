/* log.h -- structured logging: one JSON object per line on stderr.
 *
 * Every line, from C or Lua, goes through weft_log_emit, the single place
 * where output is produced (the secrets work adds redaction there).
 */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include <stddef.h>

enum weft_log_level {
    WEFT_LOG_DEBUG = 0,
    WEFT_LOG_INFO = 1,
    WEFT_LOG_WARN = 2,
    WEFT_LOG_ERROR = 3,
    WEFT_LOG_OFF = 4,
};

/* Line formats: JSON lines (the default, for machines) or logfmt
 * (key=value, for a person at a terminal). */
enum weft_log_format { WEFT_LOG_JSON = 0, WEFT_LOG_LOGFMT = 1 };
int weft_log_format(void);
void weft_log_set_format(int format);
/* "json" | "logfmt" | "auto" (logfmt when stderr is a terminal). Returns
 * the format, or -1 for an unknown name. */
int weft_log_parse_format(const char *name);

/* Current minimum level (process-wide; default WEFT_LOG_INFO). */
int weft_log_level(void);
void weft_log_set_level(int level);

/* Parse "debug" | "info" | "warn" | "error" | "off" (case-insensitive).
 * Returns the level, or -1 when the name is unknown. */
int weft_log_parse_level(const char *name);

/* Name of a level ("info", ...). */
const char *weft_log_level_name(int level);

/* Write one line {"ts":..., "level":..., "msg":..., <fields>} when `level`
 * is enabled. `fields_json` is NULL or the text of a JSON object whose
 * members are appended after msg (the caller guarantees it is valid JSON).
 * In logfmt the line is `ts=... level=... msg="..."` followed by
 * `fields_json` as given: the caller renders fields in the active format
 * (" k=v k2=\"v 2\"", leading space included).
 * Never fails visibly: a short write is dropped. */
void weft_log_write(int level, const char *msg, size_t msglen,
                    const char *fields_json, size_t fieldslen);

/* printf-style convenience for C code: message only. */
void weft_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The one output function: writes `len` bytes of `line` (which must end in
 * '\n') to stderr. */
void weft_log_emit(const char *line, size_t len);

/* Append `s` as a JSON string literal (with quotes) to buf. Returns the
 * number of bytes needed (like snprintf); writes at most cap bytes. */
size_t weft_json_quote(char *buf, size_t cap, const char *s, size_t len);

#endif
