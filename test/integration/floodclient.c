/* floodclient.c -- hostile HTTP clients for the server flood tests: many
 * connections that pipeline requests without reading the answers, or that
 * connect and then send nothing (or half a request head) and wait.
 *
 *   floodclient PORT [--conns N] [--requests N] [--path PATH] [--idle]
 *               [--partial] [--source A[,B...]] [--rcvbuf BYTES] [--read]
 *               [--duration SECONDS] [--hold SECONDS]
 *
 * Pipelining (the default): each of --conns connections (default 20) writes
 * --requests copies (default 50000) of "GET PATH HTTP/1.1" and never reads
 * (--read: reads and counts the answers instead, to check that every
 * pipelined request is answered). Writing stops when everything is written
 * or no connection made progress for 2 s (the server stopped reading); then
 * it prints "WRITTEN requests=N stalled=0|1" and, with --read, waits for the
 * answers and prints "ANSWERED responses=N".
 *
 * Idle (--idle): opens --conns connections (at most 256 connects in
 * progress at once), writes nothing or, with --partial, an unfinished head,
 * then prints "READY open=N failed=N closed=N" (closed: by the server
 * already).
 *
 * Both modes then hold their connections open until --hold seconds have
 * passed (default 60) or SIGTERM/SIGINT, print "CLOSED n" (connections the
 * server closed) and exit. --duration (default 60) bounds the writing or
 * connecting phase. --source binds the connections round-robin to the
 * given local addresses (any of 127/8 works on Linux loopback). --rcvbuf
 * sets SO_RCVBUF before connecting (a small one makes the server's output
 * back up sooner). RLIMIT_NOFILE is raised to its hard limit.
 *
 * Exit status: 0, 1 on a usage or setup error, 2 with --read when not
 * every request was answered within --duration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOURCES 64
#define CONNECT_WINDOW 256

struct fconn {
    int fd;                /* -1 once closed */
    int connecting;
    long sent;             /* bytes of the request stream written */
    long answers;          /* "HTTP/1.1 " status lines seen (--read) */
    char carry[8];         /* tail of the previous read, for split matches */
    size_t carry_len;
    int closed_by_peer;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Count "HTTP/1.1 " occurrences in what the server sent, across reads. */
static void count_answers(struct fconn *c, const char *p, size_t n) {
    static const char pat[] = "HTTP/1.1 ";
    const size_t plen = sizeof pat - 1;
    char joined[sizeof c->carry + 65536];
    memcpy(joined, c->carry, c->carry_len);
    memcpy(joined + c->carry_len, p, n);
    size_t len = c->carry_len + n;
    for (size_t i = 0; i + plen <= len; i++)
        if (memcmp(joined + i, pat, plen) == 0) {
            c->answers++;
            i += plen - 1;
        }
    c->carry_len = len < plen - 1 ? len : plen - 1;
    memcpy(c->carry, joined + len - c->carry_len, c->carry_len);
}

/* Read what is there; returns 1 when the peer closed. */
static int drain(struct fconn *c, int counting) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            if (counting) count_answers(c, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
        return 1; /* EOF, reset */
    }
}

static void close_conn(struct fconn *c, int by_peer) {
    if (c->fd < 0) return;
    close(c->fd);
    c->fd = -1;
    c->closed_by_peer = by_peer;
}

static int open_conn(int port, const char *source, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (source) {
        struct sockaddr_in la = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, source, &la.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&la, sizeof la) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 2) {
    usage:
        fprintf(stderr, "usage: floodclient PORT [--conns N] [--requests N] [--path PATH] [--idle] "
                        "[--partial] [--source A[,B...]] [--rcvbuf BYTES] [--read] "
                        "[--duration S] [--hold S]\n");
        return 1;
    }
    int port = atoi(argv[1]);
    int nconns = 20, idle = 0, partial = 0, reading = 0, rcvbuf = 0;
    long requests = 50000;
    const char *path = "/";
    double duration = 60, hold = 60;
    char *sources[MAX_SOURCES];
    int nsources = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--conns") == 0 && more) nconns = atoi(argv[++i]);
        else if (strcmp(a, "--requests") == 0 && more) requests = atol(argv[++i]);
        else if (strcmp(a, "--path") == 0 && more) path = argv[++i];
        else if (strcmp(a, "--idle") == 0) idle = 1;
        else if (strcmp(a, "--partial") == 0) partial = 1;
        else if (strcmp(a, "--read") == 0) reading = 1;
        else if (strcmp(a, "--rcvbuf") == 0 && more) rcvbuf = atoi(argv[++i]);
        else if (strcmp(a, "--duration") == 0 && more) duration = atof(argv[++i]);
        else if (strcmp(a, "--hold") == 0 && more) hold = atof(argv[++i]);
        else if (strcmp(a, "--source") == 0 && more) {
            for (char *tok = strtok(argv[++i], ","); tok && nsources < MAX_SOURCES;
                 tok = strtok(NULL, ","))
                sources[nsources++] = tok;
        } else {
            fprintf(stderr, "floodclient: bad argument %s\n", a);
            goto usage;
        }
    }
    if (port <= 0 || nconns <= 0 || requests <= 0) goto usage;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    char req[512];
    int rlen = snprintf(req, sizeof req,
                        partial ? "GET %s HTTP/1.1\r\nHost: flood\r\nX-Partial: "
                                : "GET %s HTTP/1.1\r\nHost: flood\r\n\r\n",
                        path);
    if (rlen <= 0 || (size_t)rlen >= sizeof req) goto usage;
    /* A block of whole requests, written repeatedly (pipelining mode). */
    long per_block = 65536 / rlen;
    char *block = malloc((size_t)(per_block * rlen));
    struct fconn *cs = calloc((size_t)nconns, sizeof *cs);
    struct pollfd *pfd = calloc((size_t)nconns, sizeof *pfd);
    if (!block || !cs || !pfd) {
        fprintf(stderr, "floodclient: out of memory\n");
        return 1;
    }
    for (long k = 0; k < per_block; k++) memcpy(block + k * rlen, req, (size_t)rlen);
    const long total_bytes = requests * rlen;

    /* Connect, CONNECT_WINDOW at a time. */
    double deadline = now() + duration;
    int next = 0, pending = 0, failed = 0;
    for (int i = 0; i < nconns; i++) cs[i].fd = -1;
    while ((next < nconns || pending > 0) && now() < deadline && !stop) {
        while (next < nconns && pending < CONNECT_WINDOW) {
            const char *src = nsources ? sources[next % nsources] : NULL;
            int fd = open_conn(port, src, rcvbuf);
            if (fd < 0) {
                failed++;
            } else {
                cs[next].fd = fd;
                cs[next].connecting = 1;
                pending++;
            }
            next++;
        }
        int np = 0;
        int idx[CONNECT_WINDOW];
        for (int i = 0; i < next && np < CONNECT_WINDOW; i++)
            if (cs[i].fd >= 0 && cs[i].connecting) {
                pfd[np] = (struct pollfd){.fd = cs[i].fd, .events = POLLOUT};
                idx[np++] = i;
            }
        if (np == 0) continue;
        if (poll(pfd, (nfds_t)np, 200) <= 0) continue;
        for (int k = 0; k < np; k++) {
            if (!pfd[k].revents) continue;
            struct fconn *c = &cs[idx[k]];
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            c->connecting = 0;
            pending--;
            if (err != 0) {
                close_conn(c, 0);
                failed++;
                continue;
            }
            if (idle && partial && write(c->fd, req, (size_t)rlen) < 0) close_conn(c, 1);
        }
    }
    for (int i = 0; i < nconns; i++)
        if (cs[i].fd >= 0 && cs[i].connecting) {
            close_conn(&cs[i], 0);
            failed++;
        }

    int rc = 0;
    if (idle) {
        int open = 0, closed = 0;
        for (int i = 0; i < nconns; i++) {
            if (cs[i].fd >= 0 && drain(&cs[i], 0)) close_conn(&cs[i], 1);
            if (cs[i].fd >= 0) open++;
            else if (cs[i].closed_by_peer) closed++;
        }
        printf("READY open=%d failed=%d closed=%d\n", open, failed, closed);
        fflush(stdout);
    } else {
        /* Write the pipelined requests; never read unless --read. */
        double last_progress = now();
        long answered = 0;
        int writing = 1, stalled = 0;
        while (!stop && now() < deadline) {
            int np = 0, want = 0;
            for (int i = 0; i < nconns; i++) {
                struct fconn *c = &cs[i];
                pfd[i] = (struct pollfd){.fd = -1};
                if (c->fd < 0) continue;
                short ev = 0;
                if (writing && c->sent < total_bytes) ev |= POLLOUT;
                if (reading) ev |= POLLIN;
                if (ev) {
                    pfd[i] = (struct pollfd){.fd = c->fd, .events = ev};
                    want++;
                }
                np = i + 1;
            }
            if (want == 0) break;
            poll(pfd, (nfds_t)np, 100);
            for (int i = 0; i < np; i++) {
                struct fconn *c = &cs[i];
                if (c->fd < 0 || !pfd[i].revents) continue;
                if (reading && (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))) {
                    if (drain(c, 1)) {
                        close_conn(c, 1);
                        continue;
                    }
                } else if (pfd[i].revents & (POLLERR | POLLHUP)) {
                    close_conn(c, 1);
                    continue;
                }
                if ((pfd[i].revents & POLLOUT) && c->sent < total_bytes) {
                    long off = c->sent % (per_block * rlen);
                    long left = total_bytes - c->sent;
                    long chunk = per_block * rlen - off;
                    if (chunk > left) chunk = left;
                    ssize_t w = write(c->fd, block + off, (size_t)chunk);
                    if (w > 0) {
                        c->sent += w;
                        last_progress = now();
                    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                        close_conn(c, 1);
                    }
                }
            }
            if (writing) {
                int all = 1;
                for (int i = 0; i < nconns; i++)
                    if (cs[i].fd >= 0 && cs[i].sent < total_bytes) all = 0;
                if (all || now() - last_progress > 2.0) {
                    long whole = 0;
                    for (int i = 0; i < nconns; i++) whole += cs[i].sent / rlen;
                    stalled = !all;
                    printf("WRITTEN requests=%ld stalled=%d\n", whole, stalled);
                    fflush(stdout);
                    writing = 0;
                }
            }
            if (reading) {
                answered = 0;
                int done = 1;
                for (int i = 0; i < nconns; i++) {
                    answered += cs[i].answers;
                    if (cs[i].answers < requests) done = 0;
                }
                if (done) break;
            } else if (!writing) {
                break;
            }
        }
        if (writing) {
            long whole = 0;
            for (int i = 0; i < nconns; i++) whole += cs[i].sent / rlen;
            printf("WRITTEN requests=%ld stalled=1\n", whole);
        }
        if (reading) {
            printf("ANSWERED responses=%ld\n", answered);
            if (answered < requests * nconns) rc = 2;
        }
        fflush(stdout);
    }

    /* Hold the connections open; notice the ones the server closes. */
    double until = now() + hold;
    while (!stop && now() < until) {
        /* A pipelining client still does not read: it only notices errors. */
        short ev = reading || idle ? POLLIN : 0;
        for (int i = 0; i < nconns; i++)
            pfd[i] = cs[i].fd >= 0 ? (struct pollfd){.fd = cs[i].fd, .events = ev}
                                   : (struct pollfd){.fd = -1};
        if (poll(pfd, (nfds_t)nconns, 200) <= 0) continue;
        for (int i = 0; i < nconns; i++)
            if (pfd[i].revents && cs[i].fd >= 0) {
                if (reading || idle) {
                    if (drain(&cs[i], 0)) close_conn(&cs[i], 1);
                } else if (pfd[i].revents & (POLLERR | POLLHUP)) {
                    close_conn(&cs[i], 1);
                }
            }
    }
    int closed = 0;
    for (int i = 0; i < nconns; i++) {
        if (cs[i].closed_by_peer) closed++;
        close_conn(&cs[i], 0);
    }
    printf("CLOSED %d\n", closed);
    fflush(stdout);
    free(block);
    free(cs);
    free(pfd);
    return rc;
}
