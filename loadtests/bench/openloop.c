/*
 * openloop: a constant-rate (open-loop) HTTP/1.1 load generator for the submit benchmark.
 *
 * Request i is due at start + i / rate whatever happened to the earlier ones; its latency is
 * measured from that intended time, so a server that stalls is charged for the queue it causes
 * (no coordinated omission, as in wrk2). Due requests wait in a FIFO until a keep-alive
 * connection is free. One thread and epoll: pin it to its own core with taskset.
 *
 * usage: openloop HOST PORT REQUEST_FILE RATE DURATION_S CONNECTIONS DRAIN_S
 *   REQUEST_FILE holds the whole raw request (request line, headers with Content-Length, body).
 * Prints one JSON object on stdout.
 *
 * Built by loadtests/bench/tools.py with the machine's cc; nothing here is project code.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP 65536

typedef struct {
    int fd;
    int busy;          /* a request is in flight on it */
    int connected;
    double intended;   /* intended send time of the request in flight */
    size_t sent;       /* bytes of the request written so far */
    char in[IN_CAP];
    size_t in_len;
} conn_t;

static struct sockaddr_in addr;
static char *request;
static size_t request_len;
static int epfd;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void open_conn(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->busy = 0;
    c->connected = 0;
    c->in_len = 0;
    c->sent = 0;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        perror("connect");
        exit(2);
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void reopen(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    open_conn(c);
}

/* Write what is left of the request; 0 on success or EAGAIN, -1 on a dead connection. */
static int push(conn_t *c) {
    while (c->sent < request_len) {
        ssize_t n = write(c->fd, request + c->sent, request_len - c->sent);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->sent += (size_t)n;
    }
    return 0;
}

/* Length of a complete response at the start of c->in (with its status in *status), or 0. */
static size_t complete_response(conn_t *c, int *status, int *close_after) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->in) + 4;
    *status = atoi(c->in + 9);
    long body = 0;
    *close_after = 0;
    for (char *line = c->in; line < end;) {
        char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        if (!eol) break;
        if (strncasecmp(line, "Content-Length:", 15) == 0) body = strtol(line + 15, NULL, 10);
        if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close") && strcasestr(line, "close") < eol)
            *close_after = 1;
        line = eol + 2;
    }
    if (c->in_len < head + (size_t)body) return 0;
    return head + (size_t)body;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT REQUEST_FILE RATE DURATION_S CONNECTIONS DRAIN_S\n", argv[0]);
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", argv[1]);
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror("request file"); return 2; }
    fseek(f, 0, SEEK_END);
    request_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    request = malloc(request_len);
    if (fread(request, 1, request_len, f) != request_len) { perror("read"); return 2; }
    fclose(f);
    double rate = atof(argv[4]), duration = atof(argv[5]), drain = atof(argv[7]);
    int nconn = atoi(argv[6]);
    if (rate <= 0 || duration <= 0 || nconn <= 0) { fprintf(stderr, "bad numbers\n"); return 2; }
    long total = (long)(rate * duration);

    epfd = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    for (int i = 0; i < nconn; i++) open_conn(&conns[i]);

    double *latency = malloc(sizeof(double) * (size_t)(total + 1));
    double *due = malloc(sizeof(double) * (size_t)(total + 1)); /* FIFO of intended times */
    long due_head = 0, due_tail = 0, scheduled = 0, ok = 0, done = 0, errors = 0;
    long statuses[600] = {0};
    double last_done = 0;
    struct epoll_event events[256];

    double start = now_s() + 0.2; /* let the connections open first */
    double stop_at = start + duration + drain;
    while (done + errors < total) {
        double t = now_s();
        if (t > stop_at) break;
        while (scheduled < total && start + (double)scheduled / rate <= t) {
            due[due_tail++] = start + (double)scheduled / rate;
            scheduled++;
        }
        for (int i = 0; i < nconn && due_head < due_tail; i++) {
            conn_t *c = &conns[i];
            if (c->busy || !c->connected) continue;
            c->busy = 1;
            c->intended = due[due_head++];
            c->sent = 0;
            if (push(c) < 0) { errors++; reopen(c); }
        }
        int n = epoll_wait(epfd, events, 256, 1);
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            if (events[k].events & (EPOLLERR | EPOLLHUP)) {
                if (c->busy) errors++;
                reopen(c);
                continue;
            }
            if (events[k].events & EPOLLOUT) {
                if (!c->connected) c->connected = 1;
                if (c->busy && push(c) < 0) { errors++; reopen(c); continue; }
            }
            if (!(events[k].events & EPOLLIN)) continue;
            for (;;) {
                ssize_t got = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
                if (got > 0) { c->in_len += (size_t)got; continue; }
                if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                    if (c->busy) errors++;
                    reopen(c);
                    c = NULL;
                }
                break;
            }
            if (!c) continue;
            int status, close_after;
            size_t len = complete_response(c, &status, &close_after);
            if (len && c->busy) {
                double end = now_s();
                if (status > 0 && status < 600) statuses[status]++;
                if (status >= 200 && status < 300) latency[ok++] = end - c->intended;
                done++;
                last_done = end;
                c->busy = 0;
                memmove(c->in, c->in + len, c->in_len - len);
                c->in_len -= len;
                if (close_after) reopen(c);
            } else if (c->in_len == IN_CAP) {
                errors++;
                reopen(c);
            }
        }
    }
    double elapsed = (last_done > start ? last_done : now_s()) - start;
    if (elapsed < duration) elapsed = duration;
    qsort(latency, (size_t)ok, sizeof(double), cmp_double);
#define PCT(q) (ok ? latency[(long)((q) * (double)(ok - 1))] * 1000.0 : -1.0)
    printf("{\"offered_per_s\": %.1f, \"sent\": %ld, \"ok\": %ld, \"answered\": %ld, \"errors\": %ld, "
           "\"unanswered\": %ld, \"ok_per_s\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"statuses\": {",
           rate, scheduled, ok, done, errors, total - done - errors, (double)ok / elapsed,
           PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999), ok ? latency[ok - 1] * 1000.0 : -1.0);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (statuses[s]) { printf("%s\"%d\": %ld", first ? "" : ", ", s, statuses[s]); first = 0; }
    printf("}}\n");
    return 0;
}
