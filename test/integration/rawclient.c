/* rawclient.c -- send raw bytes to 127.0.0.1:PORT and print what comes back.
 *
 *   rawclient PORT [--shut-wr] [--repeat-header BYTES] [--timeout SECONDS] < request
 *
 * Writes stdin to the socket as is (garbage included). --repeat-header N
 * then appends a header line of N bytes and the end of the head, to send an
 * oversized head without holding it in a file. --shut-wr half-closes the
 * connection after sending (shutdown(SHUT_WR)). The response is read until
 * the server closes or the timeout (default 10 s) passes, and written to
 * stdout. Exit status: 0 when the server sent something, 2 when it closed
 * without a byte, 3 on a timeout, 1 on connect or I/O failure. A write that
 * fails because the server closed early (EPIPE/ECONNRESET) is not an error:
 * what it answered before closing is still read and printed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rawclient PORT [--shut-wr] [--repeat-header BYTES] [--timeout S]\n");
        return 1;
    }
    int port = atoi(argv[1]);
    int shut_wr = 0;
    long repeat = 0;
    double timeout = 10;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--shut-wr") == 0) shut_wr = 1;
        else if (strcmp(argv[i], "--repeat-header") == 0 && i + 1 < argc) repeat = atol(argv[++i]);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = atof(argv[++i]);
        else {
            fprintf(stderr, "rawclient: unknown argument %s\n", argv[i]);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("rawclient: connect");
        return 1;
    }

    char buf[65536];
    int write_failed = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        if (write_all(fd, buf, (size_t)n) != 0) {
            write_failed = 1;
            break;
        }
    }
    if (!write_failed && repeat > 0) {
        if (write_all(fd, "X-Big: ", 7) != 0) write_failed = 1;
        memset(buf, 'a', sizeof buf);
        for (long left = repeat; !write_failed && left > 0; left -= (long)sizeof buf) {
            size_t chunk = left < (long)sizeof buf ? (size_t)left : sizeof buf;
            if (write_all(fd, buf, chunk) != 0) write_failed = 1;
        }
        if (!write_failed && write_all(fd, "\r\n\r\n", 4) != 0) write_failed = 1;
    }
    if (write_failed && errno != EPIPE && errno != ECONNRESET) {
        perror("rawclient: write");
        return 1;
    }
    if (shut_wr) shutdown(fd, SHUT_WR);

    size_t total = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(timeout * 1000));
        if (r == 0) {
            fprintf(stderr, "rawclient: timed out after %.1f s (%zu bytes read)\n", timeout, total);
            return total ? 0 : 3;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            perror("rawclient: poll");
            return 1;
        }
        n = read(fd, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) break;
            perror("rawclient: read");
            return 1;
        }
        fwrite(buf, 1, (size_t)n, stdout);
        total += (size_t)n;
    }
    close(fd);
    return total ? 0 : 2;
}
