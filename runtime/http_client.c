/* http_client.c -- libcurl multi_socket_action driven by libev.
 *
 * Shape (after curl's docs/examples/multi-uv.c):
 *   - CURLMOPT_TIMERFUNCTION only (re)arms one ev_timer; the timer callback
 *     calls curl_multi_socket_action(CURL_SOCKET_TIMEOUT).
 *   - CURLMOPT_SOCKETFUNCTION keeps one ev_io per socket, attached with
 *     curl_multi_assign and freed on CURL_POLL_REMOVE (curl closes the fd
 *     right after, so the watcher must be stopped first).
 *   - after every curl_multi_socket_action, curl_multi_info_read is
 *     drained and finished transfers are reported through on_done.
 * Gotcha (found with ASan elsewhere): curl_multi_socket_action called from
 * an ev_io callback may free that very watcher (CURL_POLL_REMOVE), so the
 * callback copies what it needs before the call and touches nothing after.
 */
#include "http_client.h"
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POOL_MAX 256            /* idle easy handles kept for reuse */
#define ORIGINS_MAX 16          /* parsed origins kept (providers use a few) */

struct sockw {
    ev_io io;                   /* watches one of curl's sockets */
    struct weft_http_client *c;
};

struct weft_http_client {
    struct ev_loop *ev;
    CURLM *multi;
    ev_timer timer;             /* curl's single timeout */
    CURL *pool[POOL_MAX];       /* idle easy handles ready for reuse; their
                                   per-request options are all set again by
                                   weft_http_start */
    unsigned char pool_ca[POOL_MAX]; /* handle had a custom CA: reset it */
    int npool;
    int nsockets;
    int in_flight;
    unsigned long started;
    struct weft_xfer *xfers;    /* in-flight transfers (for free) */
    struct weft_http_origin *origins; /* parsed origins, ORIGINS_MAX, owned */
    int norigins, origin_next;  /* in use; the next to replace when full */
};

struct weft_xfer {
    struct weft_http_client *c;
    CURL *easy;
    int custom_ca;              /* CA options set: reset before reuse */
    struct curl_slist *headers; /* owned (weft_http_request.headers); a
                                   header_list stays its owner's */
    struct weft_http_callbacks cb;
    void *ud;
    ev_timer idle;              /* idle timeout, active when idle_ms > 0 */
    long idle_ms;
    long timeout_ms;
    long connect_timeout_ms;
    int status;                 /* last status line seen */
    int sends;                  /* CURLOPT_PREREQFUNCTION calls */
    int aborted;                /* on_data returned -1 */
    int bad_scheme;             /* not http(s)://: never handed to curl, the
                                   idle timer reports it on the next turn */
    curl_off_t received;        /* body bytes of the final response */
    curl_off_t content_length;  /* -1 when unknown */
    struct weft_xfer *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
};

/* ------------------------------------------------------------- helpers */

static void xfer_unlink(struct weft_xfer *x) {
    struct weft_http_client *c = x->c;
    if (x->prev) x->prev->next = x->next;
    else c->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Detach a transfer from curl and free it. The easy handle goes back to
 * the pool (reset) or is cleaned up. */
static void xfer_release(struct weft_xfer *x) {
    struct weft_http_client *c = x->c;
    if (x->idle_ms > 0 || x->bad_scheme) ev_timer_stop(c->ev, &x->idle);
    if (!x->bad_scheme) curl_multi_remove_handle(c->multi, x->easy);
    /* The header list is freed now (or by its owner right after on_done):
     * the idle handle must not keep pointing at it. */
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
    if (c->npool < POOL_MAX) {
        c->pool_ca[c->npool] = (unsigned char)x->custom_ca;
        c->pool[c->npool++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    xfer_unlink(x);
    c->in_flight--;
    free(x);
}

/* host:port of the transfer's URL, for messages. */
static void url_hostport(CURL *easy, char *out, size_t outlen) {
    char *url = NULL;
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    snprintf(out, outlen, "the server");
    if (!url) return;
    CURLU *u = curl_url();
    if (!u) return;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        char *host = NULL, *port = NULL;
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
            snprintf(out, outlen, "%s:%s", host, port);
        }
        curl_free(host);
        curl_free(port);
    }
    curl_url_cleanup(u);
}

/* Classify a finished transfer into the weft taxonomy and report it. */
static void xfer_finish(struct weft_xfer *x, CURLcode rc, const char *forced_reason) {
    struct weft_http_outcome o = {0};
    char msg[1024];
    char where[300];
    o.curl_code = (long)rc;
    o.status = x->status;
    o.sends = x->sends;
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);

    if (forced_reason && strcmp(forced_reason, "idle_timeout") == 0) {
        o.kind = "timeout";
        o.reason = "idle_timeout";
        url_hostport(x->easy, where, sizeof where);
        snprintf(msg, sizeof msg, "no data received for %.3g s from %s", (double)x->idle_ms / 1000.0,
                 where);
    } else if (forced_reason && strcmp(forced_reason, "bad_url") == 0) {
        o.kind = "invalid_request";
        o.reason = "bad_url";
        snprintf(msg, sizeof msg, "invalid URL: no http:// or https:// scheme (only http:// and "
                 "https:// are allowed)");
    } else if (rc == CURLE_OK) {
        o.kind = NULL;
    } else {
        long oserr = 0;
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
        url_hostport(x->easy, where, sizeof where);
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
            o.kind = "transient";
            if (oserr == ECONNREFUSED) {
                o.reason = "refused";
                snprintf(msg, sizeof msg, "connection refused by %s", where);
            } else {
                o.reason = "connect";
                snprintf(msg, sizeof msg, "could not connect to %s: %s", where, detail);
            }
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            o.kind = "transient";
            o.reason = "dns";
            snprintf(msg, sizeof msg, "DNS: could not resolve host of %s (%s)", where, detail);
            break;
        case CURLE_OPERATION_TIMEDOUT:
            /* curl names the phase in its message (multi.c,
             * multi_handle_timeout): resolving, connecting, or later. */
            o.kind = "timeout";
            if (strncmp(detail, "Connection timed out", 20) == 0 ||
                strncmp(detail, "Resolving timed out", 19) == 0) {
                o.reason = "connect_timeout";
                snprintf(msg, sizeof msg, "connect timeout to %s after %.3g s", where,
                         (double)(x->connect_timeout_ms > 0 &&
                                  (x->timeout_ms <= 0 || x->connect_timeout_ms < x->timeout_ms)
                                      ? x->connect_timeout_ms : x->timeout_ms) / 1000.0);
            } else {
                o.reason = "timeout";
                snprintf(msg, sizeof msg, "request to %s timed out after %.3g s (%s)", where,
                         (double)x->timeout_ms / 1000.0,
                         x->status ? "response incomplete" : "no response");
            }
            break;
        case CURLE_PARTIAL_FILE:
            o.kind = "transient";
            o.reason = "reset";
            if (x->content_length >= 0)
                snprintf(msg, sizeof msg,
                         "server %s closed the connection before the response was complete "
                         "(got %lld of %lld body bytes)",
                         where, (long long)x->received, (long long)x->content_length);
            else
                snprintf(msg, sizeof msg,
                         "server %s closed the connection before the response was complete "
                         "(%s)", where, detail);
            break;
        case CURLE_GOT_NOTHING:
            o.kind = "transient";
            o.reason = "reset";
            snprintf(msg, sizeof msg, "server %s closed the connection without a response", where);
            break;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            o.kind = "transient";
            o.reason = "reset";
            snprintf(msg, sizeof msg, "connection %s by %s while %s (%s)",
                     oserr == ECONNRESET ? "reset" : "broken", where,
                     rc == CURLE_SEND_ERROR ? "sending the request" :
                     x->status ? "receiving the body" : "waiting for the response",
                     detail);
            break;
        case CURLE_PEER_FAILED_VERIFICATION:
            o.kind = "auth";
            o.reason = "tls_verify";
            snprintf(msg, sizeof msg, "TLS: certificate verification failed for %s: %s", where, detail);
            break;
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
            o.kind = "invalid_request";
            o.reason = "tls_config";
            snprintf(msg, sizeof msg, "TLS: cannot use the configured CA certificates: %s", detail);
            break;
        case CURLE_SSL_CERTPROBLEM:
            o.kind = "invalid_request";
            o.reason = "tls_client_cert";
            snprintf(msg, sizeof msg, "TLS: cannot use the client certificate or key: %s", detail);
            break;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_SHUTDOWN_FAILED:
            o.kind = "transient";
            o.reason = "tls";
            snprintf(msg, sizeof msg, "TLS handshake with %s failed: %s", where, detail);
            break;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
            o.kind = "invalid_request";
            o.reason = "bad_url";
            snprintf(msg, sizeof msg, "invalid URL: %s (only http:// and https:// are allowed)",
                     detail);
            break;
        case CURLE_FILESIZE_EXCEEDED:
            o.kind = "integration";
            o.reason = "too_large";
            snprintf(msg, sizeof msg, "response body from %s exceeds max_body (Content-Length %lld)",
                     where, (long long)x->content_length);
            break;
        case CURLE_WRITE_ERROR:
            if (x->aborted) {
                o.kind = "integration";
                o.reason = "too_large";
                snprintf(msg, sizeof msg, "response body from %s exceeds max_body (%lld bytes "
                         "received)", where, (long long)x->received);
                break;
            }
            /* fall through */
        default:
            o.kind = "transient";
            o.reason = "other";
            snprintf(msg, sizeof msg, "request to %s failed: %s", where, detail);
            break;
        }
    }
    /* A TLS alert about certificates during the handshake means the server
     * refused our client certificate (mutual TLS): that is an auth failure,
     * not a network blip. */
    if (o.kind && (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
        strstr(detail, "alert") &&
        (strstr(detail, "certificate") || strstr(detail, "unknown ca") || strstr(detail, "decrypt error"))) {
        url_hostport(x->easy, where, sizeof where);
        o.kind = "auth";
        o.reason = "tls_client_cert";
        snprintf(msg, sizeof msg, "TLS: %s rejected the client certificate: %s", where, detail);
    }
    o.message = o.kind ? msg : NULL;

    struct weft_http_callbacks cb = x->cb;
    void *ud = x->ud;
    xfer_release(x);
    cb.on_done(ud, &o);
}

/* Report every finished transfer curl has queued. */
static void drain_info(struct weft_http_client *c) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        struct weft_xfer *x = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) xfer_finish(x, rc, NULL);
    }
}

/* -------------------------------------------------------- header lists */

/* One line of a struct weft_headers: the curl node and its text in one
 * allocation. */
struct hline {
    struct curl_slist node;     /* first member: what curl reads */
    size_t len;                 /* bytes of text, without the NUL */
    int secret;                 /* zeroed before free */
    char text[];                /* node.data points here */
};

void weft_headers_init(struct weft_headers *h) {
    memset(h, 0, sizeof *h);
}

int weft_headers_add(struct weft_headers *h, int secret, size_t n, const char *const p[],
                     const size_t len[]) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += len[i];
    struct hline *l = malloc(sizeof *l + total + 1);
    if (!l) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(l->text + o, p[i], len[i]);
        o += len[i];
    }
    l->text[o] = '\0';
    l->len = total;
    l->secret = secret;
    l->node.data = l->text;
    l->node.next = NULL;
    if (h->last) h->last->next = &l->node;
    else h->first = &l->node;
    h->last = &l->node;
    h->count++;
    return 0;
}

int weft_headers_has(const struct weft_headers *h, const char *name, size_t nlen) {
    for (const struct curl_slist *n = h->first; n; n = n->next) {
        size_t k = strcspn(n->data, ":;");
        if (k == nlen && strncasecmp(n->data, name, nlen) == 0) return 1;
    }
    return 0;
}

void weft_headers_clear(struct weft_headers *h) {
    struct curl_slist *n = h->first;
    while (n) {
        struct curl_slist *next = n->next;
        struct hline *l = (struct hline *)n;
        if (l->secret) explicit_bzero(l->text, l->len);
        if (h->on_free) h->on_free(l->text, l->len, l->secret);
        free(l);
        n = next;
    }
    h->first = h->last = NULL;
    h->count = 0;
}

/* ------------------------------------------------- URLs on an origin */

static int is_pchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("-._~!$&'()*+,;=:@", ch) != NULL);
}

static int is_hex(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* 0 when s holds only path (or, with `query`, query) characters and
 * well-formed %XX escapes; -1 with a message naming the first bad byte. */
static int check_chars(const char *s, int query, char *err, size_t errlen) {
    const char *what = query ? "query" : "path";
    for (size_t i = 0; s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (!is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2])) {
                snprintf(err, errlen, "the request %s has a '%%' that does not start a %%XX escape "
                         "(offset %zu)", what, i);
                return -1;
            }
            i += 2;
        } else if (!is_pchar(ch) && ch != '/' && !(query && ch == '?')) {
            snprintf(err, errlen, "the request %s has a character not allowed in a URL %s "
                     "(byte 0x%02x at offset %zu): encode it", what, what, ch, i);
            return -1;
        }
    }
    return 0;
}

/* 1 when the path has a "." or ".." segment, also spelt %2e. */
static int has_dot_segment(const char *path) {
    const char *p = path;
    while (*p) {
        if (*p == '/') {
            p++;
            continue;
        }
        int dots = 0, other = 0;
        while (*p && *p != '/') {
            if (*p == '.') {
                dots++;
                p++;
            } else if (p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E')) {
                dots++;
                p += 3;
            } else {
                other = 1;
                p++;
            }
        }
        if (!other && (dots == 1 || dots == 2)) return 1;
    }
    return 0;
}

/* The parts of a URL compared by the origin check; strings from curl. */
struct urlparts {
    char *scheme, *host, *port, *path;
    int userinfo;               /* has a user name or a password */
    int extra;                  /* has a query or a fragment */
};

static void parts_free(struct urlparts *p) {
    curl_free(p->scheme);
    curl_free(p->host);
    curl_free(p->port);
    curl_free(p->path);
    memset(p, 0, sizeof *p);
}

/* The parts of a parsed URL handle into *p; -1 with a message naming
 * `what` when it is not a whole http(s) URL. */
static int parts_of(CURLU *h, const char *what, struct urlparts *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    char *user = NULL, *pw = NULL, *q = NULL, *frag = NULL;
    if (curl_url_get(h, CURLUPART_SCHEME, &p->scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &p->host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PORT, &p->port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PATH, &p->path, 0) != CURLUE_OK) {
        snprintf(err, errlen, "%s is not a valid URL (no scheme, host, port or path)", what);
        parts_free(p);
        return -1;
    }
    p->userinfo = curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
                  curl_url_get(h, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK;
    p->extra = curl_url_get(h, CURLUPART_QUERY, &q, 0) == CURLUE_OK ||
               curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK;
    if (user) explicit_bzero(user, strlen(user));
    if (pw) explicit_bzero(pw, strlen(pw));
    if (q) explicit_bzero(q, strlen(q));
    curl_free(user);
    curl_free(pw);
    curl_free(q);
    curl_free(frag);
    if (strcmp(p->scheme, "http") != 0 && strcmp(p->scheme, "https") != 0) {
        snprintf(err, errlen, "%s is not an http:// or https:// URL", what);
        parts_free(p);
        return -1;
    }
    return 0;
}

/* Parse url (an http or https URL) into *p; -1 with a message naming
 * `what` on failure. On success, *u keeps the parsed handle when u is not
 * NULL (the caller frees it). */
static int parts_parse(const char *url, const char *what, struct urlparts *p, CURLU **u, char *err,
                       size_t errlen) {
    memset(p, 0, sizeof *p);
    CURLU *h = curl_url();
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        snprintf(err, errlen, "%s is not a valid URL (%s)", what, curl_url_strerror(rc));
        curl_url_cleanup(h);
        return -1;
    }
    if (parts_of(h, what, p, err, errlen) != 0) {
        curl_url_cleanup(h);
        return -1;
    }
    if (u) *u = h;
    else curl_url_cleanup(h);
    return 0;
}

/* Length of the origin's path prefix without its trailing slashes. */
static size_t prefix_len(const char *path) {
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/') n--;
    return n;
}

/* A parsed origin: its text, its handle (the template every request's URL
 * is made from) and its parts (what every request's URL is checked
 * against). */
struct weft_http_origin {
    char *text;                 /* owned */
    CURLU *u;                   /* owned */
    struct urlparts parts;      /* owned */
    size_t plen;                /* path prefix without trailing slashes */
    char *base;                 /* owned: the origin as curl renders it,
                                   up to its path prefix (no trailing '/') */
    size_t blen;
};

static void origin_free(struct weft_http_origin *o) {
    free(o->text);
    free(o->base);
    curl_url_cleanup(o->u);
    parts_free(&o->parts);
    memset(o, 0, sizeof *o);
}

static int origin_init(struct weft_http_origin *o, const char *origin, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    if (!origin) {
        snprintf(err, errlen, "no origin");
        return -1;
    }
    if (parts_parse(origin, "the origin", &o->parts, &o->u, err, errlen) != 0) return -1;
    if (o->parts.userinfo || o->parts.extra) {
        snprintf(err, errlen, "the origin must be scheme://host[:port][/path], without %s",
                 o->parts.userinfo ? "user info" : "a query or fragment");
        origin_free(o);
        return -1;
    }
    o->text = strdup(origin);
    if (!o->text) {
        snprintf(err, errlen, "out of memory");
        origin_free(o);
        return -1;
    }
    o->plen = prefix_len(o->parts.path);
    /* What weft_http_origin_render starts every URL with: curl's own
     * rendering of the origin, its path cut to the prefix. */
    char *url = NULL;
    size_t ulen = 0, path_len = strlen(o->parts.path);
    if (curl_url_get(o->u, CURLUPART_URL, &url, 0) == CURLUE_OK) ulen = strlen(url);
    if (!url || ulen < path_len || strcmp(url + ulen - path_len, o->parts.path) != 0 ||
        !(o->base = malloc(ulen - path_len + o->plen + 1))) {
        snprintf(err, errlen, url ? "out of memory" : "the origin cannot be rendered");
        curl_free(url);
        origin_free(o);
        return -1;
    }
    o->blen = ulen - path_len + o->plen;
    memcpy(o->base, url, ulen - path_len);
    memcpy(o->base + ulen - path_len, o->parts.path, o->plen);
    o->base[o->blen] = '\0';
    curl_free(url);
    return 0;
}

const struct weft_http_origin *weft_http_origin_get(struct weft_http_client *c, const char *origin,
                                                    char *err, size_t errlen) {
    for (int i = 0; i < c->norigins; i++)
        if (strcmp(c->origins[i].text, origin) == 0) return &c->origins[i];
    struct weft_http_origin o;
    if (origin_init(&o, origin, err, errlen) != 0) return NULL;
    int slot = c->norigins;
    if (slot == ORIGINS_MAX) {          /* full: replace in turn */
        slot = c->origin_next;
        c->origin_next = (c->origin_next + 1) % ORIGINS_MAX;
        origin_free(&c->origins[slot]);
    } else {
        c->norigins++;
    }
    c->origins[slot] = o;
    return &c->origins[slot];
}

/* 0 when path (and query, when not NULL) may go on an origin; -1 with
 * a message in err. */
static int check_request(const char *path, const char *query, char *err, size_t errlen) {
    if (!path || path[0] != '/') {
        snprintf(err, errlen, "the request path must begin with '/'");
        return -1;
    }
    if (check_chars(path, 0, err, errlen) != 0) return -1;
    if (has_dot_segment(path)) {
        snprintf(err, errlen, "the request path has a '.' or '..' segment");
        return -1;
    }
    if (query && check_chars(query, 1, err, errlen) != 0) return -1;
    return 0;
}

/* s[0..n) appended to b with the hex digits of its %XX escapes in lower
 * case, as curl writes them. */
static void append_lower_escapes(struct weft_buf *b, const char *s, size_t n) {
    char *d = weft_buf_extend(b, n);
    if (!d) return;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (i >= 1 && (s[i - 1] == '%' || (i >= 2 && s[i - 2] == '%')) && ch >= 'A' && ch <= 'F')
            ch += 32;
        d[i] = ch;
    }
}

int weft_http_origin_render(const struct weft_http_origin *o, const char *path, const char *query,
                            struct weft_buf *out, char *err, size_t errlen) {
    if (check_request(path, query, err, errlen) != 0) return -1;
    size_t pl = strlen(path), ql = query ? strlen(query) : 0;
    weft_buf_reset(out);
    if (weft_buf_reserve(out, o->blen + pl + 1 + ql + 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    weft_buf_append(out, o->base, o->blen);
    append_lower_escapes(out, path, pl);
    if (ql) {
        weft_buf_append_char(out, '?');
        append_lower_escapes(out, query, ql);
    }
    weft_buf_cstr(out);
    return 0;
}

CURLU *weft_http_origin_join(const struct weft_http_origin *o, const char *path, const char *query,
                             char *err, size_t errlen) {
    if (check_request(path, query, err, errlen) != 0) return NULL;
    CURLU *u = curl_url_dup(o->u);
    size_t rlen = strlen(path);
    char *full = u ? malloc(o->plen + rlen + 1) : NULL;
    CURLUcode rc = CURLUE_OUT_OF_MEMORY;
    if (full) {
        memcpy(full, o->parts.path, o->plen);
        memcpy(full + o->plen, path, rlen + 1);
        rc = curl_url_set(u, CURLUPART_PATH, full, 0);
        free(full);
    }
    if (rc == CURLUE_OK && query && *query) rc = curl_url_set(u, CURLUPART_QUERY, query, 0);
    if (rc != CURLUE_OK) {
        snprintf(err, errlen, "cannot build the request URL (%s)", curl_url_strerror(rc));
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

/* Compare the parts of a request URL with the origin's. */
static int same_origin(const struct weft_http_origin *o, const struct urlparts *r, char *err,
                       size_t errlen) {
    const struct urlparts *op = &o->parts;
    if (strcmp(r->scheme, op->scheme) != 0)
        snprintf(err, errlen, "the request URL has scheme %s, the origin %s", r->scheme, op->scheme);
    else if (strcasecmp(r->host, op->host) != 0)
        snprintf(err, errlen, "the request URL goes to host %s, not to the origin's host %s",
                 r->host, op->host);
    else if (strcmp(r->port, op->port) != 0)
        snprintf(err, errlen, "the request URL goes to port %s, not to the origin's port %s",
                 r->port, op->port);
    else if (r->userinfo)
        snprintf(err, errlen, "the request URL has user info");
    else if (strncmp(r->path, op->path, o->plen) != 0 || r->path[o->plen] != '/')
        snprintf(err, errlen, "the request URL's path is outside the origin's path %.*s",
                 (int)o->plen, op->path);
    else
        return 0;
    return -1;
}

int weft_http_origin_verify(const struct weft_http_origin *o, const char *url, char *err,
                            size_t errlen) {
    struct urlparts r;
    if (parts_parse(url, "the request URL", &r, NULL, err, errlen) != 0) return -1;
    int rc = same_origin(o, &r, err, errlen);
    parts_free(&r);
    return rc;
}

CURLU *weft_http_origin_url(const char *origin, const char *path, const char *query, char *err,
                            size_t errlen) {
    struct weft_http_origin o;
    if (origin_init(&o, origin, err, errlen) != 0) return NULL;
    CURLU *u = weft_http_origin_join(&o, path, query, err, errlen);
    origin_free(&o);
    return u;
}

int weft_http_origin_check(const char *origin, const char *url, char *err, size_t errlen) {
    struct weft_http_origin o;
    if (origin_init(&o, origin, err, errlen) != 0) return -1;
    int rc = weft_http_origin_verify(&o, url, err, errlen);
    origin_free(&o);
    return rc;
}

/* ------------------------------------------------------ libev <-> curl */

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_http_client *c = w->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_info(c);
}

/* CURLMOPT_TIMERFUNCTION: only re-arm the timer (calling back into curl
 * here would be CURLM_RECURSIVE_API_CALL). */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    struct weft_http_client *c = userp;
    ev_timer_stop(c->ev, &c->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(c->ev, &c->timer);
    }
    return 0;
}

static void io_cb(struct ev_loop *ev, ev_io *w, int revents) {
    struct sockw *s = (struct sockw *)w;
    /* Copy out: the action may free s (CURL_POLL_REMOVE). */
    struct weft_http_client *c = s->c;
    curl_socket_t fd = (curl_socket_t)w->fd;
    int flags = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    drain_info(c);
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    struct weft_http_client *c = userp;
    struct sockw *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(c->ev, &s->io);
            curl_multi_assign(c->multi, fd, NULL);
            free(s);
            c->nsockets--;
        }
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->c = c;
        ev_io_init(&s->io, io_cb, fd, events);
        curl_multi_assign(c->multi, fd, s);
        c->nsockets++;
    } else {
        ev_io_stop(c->ev, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(c->ev, &s->io);
    return 0;
}

/* ------------------------------------------------- transfer callbacks */

static void idle_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    struct weft_xfer *x = (struct weft_xfer *)((char *)w - offsetof(struct weft_xfer, idle));
    if (x->bad_scheme) xfer_finish(x, CURLE_URL_MALFORMAT, "bad_url");
    else xfer_finish(x, CURLE_OPERATION_TIMEDOUT, "idle_timeout");
}

static void touch_idle(struct weft_xfer *x) {
    if (x->idle_ms > 0) ev_timer_again(x->c->ev, &x->idle);
}

static int version_code(const char *p, size_t n) {
    /* "HTTP/1.1", "HTTP/2", "HTTP/3" */
    if (n >= 8 && p[5] == '1' && p[6] == '.') return 10 + (p[7] - '0');
    if (n >= 6) return (p[5] - '0') * 10;
    return 0;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *userp) {
    struct weft_xfer *x = userp;
    size_t n = size * nmemb;
    size_t len = n;
    touch_idle(x);
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* Status line: a new head starts. */
        const char *sp = memchr(p, ' ', len);
        int status = 0;
        if (sp) {
            for (const char *q = sp + 1; q < p + len && *q >= '0' && *q <= '9'; q++)
                status = status * 10 + (*q - '0');
        }
        x->status = status;
        x->received = 0;
        x->content_length = -1;
        x->cb.on_status(x->ud, status, version_code(p, sp ? (size_t)(sp - p) : len));
        return n;
    }
    if (len == 0) return n; /* end of head */
    const char *colon = memchr(p, ':', len);
    if (!colon) return n;   /* obsolete line folding or junk: ignored */
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    const char *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
        curl_off_t cl = 0;
        const char *q = v;
        for (; q < end && *q >= '0' && *q <= '9'; q++) cl = cl * 10 + (*q - '0');
        if (q == end && q > v) x->content_length = cl;
    }
    x->cb.on_header(x->ud, p, nlen, v, (size_t)(end - v));
    return n;
}

/* CURLOPT_PREREQFUNCTION: called right before each time the request is
 * sent, including libcurl's own resend on a fresh connection when a reused
 * one turned out dead (multi.c sends that transfer back to CONNECT, and
 * every pass through DO calls this). */
static int prereq_cb(void *userp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port) {
    struct weft_xfer *x = userp;
    x->sends++;
    return CURL_PREREQFUNC_OK;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *userp) {
    struct weft_xfer *x = userp;
    size_t n = size * nmemb;
    touch_idle(x);
    int r = x->cb.on_data(x->ud, p, n);
    if (r == 1) {
        /* The owner is not keeping up: that is no idle server. The idle
         * clock stops here and restarts at weft_http_resume (curl delivers
         * these same bytes again then). */
        if (x->idle_ms > 0) ev_timer_stop(x->c->ev, &x->idle);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r < 0) {
        x->aborted = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    x->received += (curl_off_t)n;
    return n;
}

/* ------------------------------------------------------------ public */

struct weft_http_client *weft_http_client_new(struct ev_loop *ev) {
    struct weft_http_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ev = ev;
    c->multi = curl_multi_init();
    c->origins = calloc(ORIGINS_MAX, sizeof *c->origins);
    if (!c->multi || !c->origins) {
        if (c->multi) curl_multi_cleanup(c->multi);
        free(c->origins);
        free(c);
        return NULL;
    }
    ev_timer_init(&c->timer, timer_cb, 0., 0.);
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Idle connections kept for reuse across requests. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return c;
}

void weft_http_client_free(struct weft_http_client *c) {
    if (!c) return;
    while (c->xfers) weft_http_cancel(c->xfers);
    for (int i = 0; i < c->npool; i++) curl_easy_cleanup(c->pool[i]);
    c->npool = 0;
    curl_multi_cleanup(c->multi);   /* closes cached connections (REMOVE callbacks) */
    ev_timer_stop(c->ev, &c->timer);
    for (int i = 0; i < c->norigins; i++) origin_free(&c->origins[i]);
    free(c->origins);
    free(c);
}

void weft_http_client_stats(const struct weft_http_client *c, struct weft_http_stats *st) {
    st->in_flight = c->in_flight;
    st->sockets = c->nsockets;
    st->pooled = c->npool;
    st->started = c->started;
}

struct weft_xfer *weft_http_start(struct weft_http_client *c, const struct weft_http_request *req,
                                  const struct weft_http_callbacks *cb, void *ud, char *err,
                                  size_t errlen) {
    if (req->headers && req->header_list) {
        snprintf(err, errlen, "headers and header_list are exclusive");
        return NULL;
    }
    struct weft_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Reuse an idle handle: options that never change stay set; every
     * per-request option is set below, so nothing leaks from the previous
     * request. A handle that had a custom CA is reset (NULL would not bring
     * back the default bundle). curl_easy_reset costs as much as all the
     * setopts, hence the pool. */
    CURL *e = NULL;
    int fresh = 0;
    if (c->npool > 0) {
        c->npool--;
        e = c->pool[c->npool];
        if (c->pool_ca[c->npool] || req->ca_file || req->ca_path || req->cert_pem || req->ca_pem) {
            curl_easy_reset(e);
            fresh = 1;
        }
    } else {
        e = curl_easy_init();
        fresh = 1;
    }
    if (!e) {
        free(x);
        snprintf(err, errlen, "curl_easy_init failed");
        return NULL;
    }
    x->c = c;
    x->easy = e;
    x->cb = *cb;
    x->ud = ud;
    x->content_length = -1;
    x->timeout_ms = req->timeout_ms;
    x->connect_timeout_ms = req->connect_timeout_ms;
    x->custom_ca = req->ca_file || req->ca_path || req->cert_pem || req->ca_pem;

    if (fresh) {
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        /* TLS verification is never turned off: there is no option for it. */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "weft/" WEFT_VERSION);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
        if (req->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
        if (req->ca_path) curl_easy_setopt(e, CURLOPT_CAPATH, req->ca_path);
        /* Mutual TLS and CA from memory: blobs copied by curl, no files. */
        if (req->cert_pem) {
            struct curl_blob b = {(void *)req->cert_pem, req->cert_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
            curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        }
        if (req->key_pem) {
            struct curl_blob b = {(void *)req->key_pem, req->key_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
        if (req->ca_pem) {
            struct curl_blob b = {(void *)req->ca_pem, req->ca_len, CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        }
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, req->max_body > 0 ? req->max_body : (curl_off_t)0);

    /* The method, set from a known state every time. */
    const char *method = req->method;
    int is_head = method && strcmp(method, "HEAD") == 0;
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (req->has_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                         method && strcmp(method, "POST") != 0 ? method : NULL);
    } else if (is_head) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                         method && strcmp(method, "GET") != 0 ? method : NULL);
    }
    x->headers = req->headers;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER,
                     req->header_list ? req->header_list->first : x->headers);

    if (req->idle_timeout_ms > 0) {
        x->idle_ms = req->idle_timeout_ms;
        ev_now_update(c->ev); /* the cached time may be a whole drain old */
        ev_timer_init(&x->idle, idle_cb, 0., (double)x->idle_ms / 1000.0);
        ev_timer_again(c->ev, &x->idle);
    }

    /* curl guesses a scheme for "host/path" (and for "http//x"); only an
     * explicit http:// or https:// goes to curl. The failure is reported
     * from the loop, like curl's own, never from inside this call. */
    x->bad_scheme = !req->url || (strncasecmp(req->url, "http://", 7) != 0 &&
                                  strncasecmp(req->url, "https://", 8) != 0);
    if (x->bad_scheme) {
        if (x->idle_ms > 0) ev_timer_stop(c->ev, &x->idle);
        x->idle_ms = 0;
        ev_timer_init(&x->idle, idle_cb, 0., 0.);
        ev_timer_start(c->ev, &x->idle);
    }
    CURLMcode mc = x->bad_scheme ? CURLM_OK : curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        if (x->idle_ms > 0) ev_timer_stop(c->ev, &x->idle);
        curl_easy_cleanup(e);
        x->headers = NULL; /* stays with the caller on failure */
        free(x);
        return NULL;
    }
    x->next = c->xfers;
    if (c->xfers) c->xfers->prev = x;
    c->xfers = x;
    c->in_flight++;
    c->started++;
    return x;
}

void weft_http_cancel(struct weft_xfer *x) {
    if (x) xfer_release(x);
}

void weft_http_resume(struct weft_xfer *x) {
    touch_idle(x);
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
}
