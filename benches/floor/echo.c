/*
 * The echo floor: a TCP echo server making the fewest plain system calls the echo
 * workloads need, to measure Switchboard's echo listener and gnet against (issue 22;
 * see the README's "The echo floor"). No protocol, no framing, no allocator in the
 * hot path: what it costs is the kernel's socket work and epoll, nothing else.
 *
 *   - T threads (default 2: the daemon's 2 reactors, gnet's 2 loops), each with its
 *     own epoll instance; a connection lives on the thread that accepted it.
 *   - --listen reuseport (default): one SO_REUSEPORT listener per thread, so the
 *     kernel spreads new connections over the threads and no two threads touch one
 *     accept queue (gnet's WithReusePort). --listen shared: one listener in every
 *     thread's epoll with EPOLLEXCLUSIVE (one thread woken per new connection); the
 *     spread then follows whichever thread is idle.
 *   - Listener: level-triggered; accept4(SOCK_NONBLOCK) in a loop until EAGAIN.
 *   - Connections, --epoll et (default): registered once for EPOLLIN | EPOLLOUT |
 *     EPOLLRDHUP | EPOLLET, never modified. On readiness: read up to 64 KiB into the
 *     thread's buffer and write it straight back; repeat while the read filled the
 *     buffer (a short read means the receive queue was empty at that moment, and any
 *     later data raises a new edge, so no read that ends in EAGAIN is needed).
 *     --epoll lt: registered for EPOLLIN, level-triggered, one read per readiness
 *     (gnet's pattern); interest switched to EPOLLOUT while output is pending.
 *   - Output that the socket did not take stays in a per-connection buffer (at most
 *     one read's worth: the connection is not read again until it is written out),
 *     flushed on EPOLLOUT. So every byte is echoed once, in order, and memory per
 *     connection is bounded by 64 KiB however slowly the client reads.
 *
 * Binds 127.0.0.1:PORT. Runs until killed, or --timeout SECS (default 3600; 0 = no
 * bound) have passed.
 *
 * Usage: echo --port PORT [--threads T] [--listen reuseport|shared] [--epoll et|lt]
 *             [--timeout SECS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 64
#define RBUF (64u * 1024u)
#define MAX_EVENTS 512

/* Per connection, indexed by fd (fds are process-wide; each is owned by one thread). */
struct conn {
    uint8_t *pend;    /* bytes read but not yet written back, NULL when none */
    uint32_t off, len; /* pend[off..len) is still to be written */
};

static struct conn *conns;
static size_t max_fds;
static int opt_port = -1, opt_threads = 2, opt_shared = 0, opt_lt = 0;
static unsigned opt_timeout = 3600;
static int shared_listener = -1;

static void die(const char *what) {
    fprintf(stderr, "echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int make_listener(int reuseport) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("SO_REUSEPORT");
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)opt_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 65535) < 0) die("listen"); /* clamped to net.core.somaxconn */
    return fd;
}

static void close_conn(int fd) {
    free(conns[fd].pend);
    conns[fd] = (struct conn){0};
    close(fd); /* also removes it from the epoll set */
}

/* Writes pend out; 1 when all of it went, 0 when the socket is full, -1 on error. */
static int flush(int fd) {
    struct conn *c = &conns[fd];
    while (c->off < c->len) {
        ssize_t n = write(fd, c->pend + c->off, c->len - c->off);
        if (n > 0) {
            c->off += (uint32_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    free(c->pend);
    c->pend = NULL;
    c->off = c->len = 0;
    return 1;
}

/* Echoes buf[0..n): writes what the socket takes, keeps the rest in pend. 1 when all
 * went, 0 when some is pending, -1 on error. */
static int echo_back(int fd, const uint8_t *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            struct conn *c = &conns[fd];
            c->pend = malloc(n - done);
            if (!c->pend) die("malloc");
            memcpy(c->pend, buf + done, n - done);
            c->off = 0;
            c->len = (uint32_t)(n - done);
            return 0;
        } else {
            return -1;
        }
    }
    return 1;
}

/* Reads and echoes while there is input and nothing pending. -1: close. `drain`: read
 * until EAGAIN or end of stream even after a short read (the peer has closed or the
 * socket has an error, and no later edge would report it). */
static int serve_input(int fd, uint8_t *buf, int drain) {
    for (;;) {
        ssize_t n = read(fd, buf, RBUF);
        if (n == 0) return -1; /* the peer closed: nothing more to echo */
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        int r = echo_back(fd, buf, (size_t)n);
        if (r <= 0) return r; /* error, or output pending: read no more for now */
        /* Edge-triggered: go on while the read filled the buffer. Level-triggered:
         * epoll reports the socket again if more is queued. */
        if (opt_lt || ((size_t)n < RBUF && !drain)) return 0;
    }
}

static void set_interest(int ep, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl MOD");
}

static void accept_all(int ep, int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EMFILE || errno == ENFILE) return;
            die("accept4");
        }
        if ((size_t)fd >= max_fds) { /* cannot happen below RLIMIT_NOFILE */
            close(fd);
            continue;
        }
        int one = 1; /* like gnet and the daemon: no Nagle delay on small echoes */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {
            .events = opt_lt ? EPOLLIN : (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET),
            .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl ADD");
    }
}

static void *loop(void *arg) {
    int lfd = (int)(intptr_t)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN | (opt_shared ? EPOLLEXCLUSIVE : 0),
                              .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listener");
    uint8_t *buf = malloc(RBUF);
    if (!buf) die("malloc");
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t e = evs[i].events;
            if (fd == lfd) {
                accept_all(ep, lfd);
                continue;
            }
            int r = 1, drain = (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
            if (conns[fd].pend) {
                /* Waiting for room: write out first, read only once all went. */
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) r = flush(fd);
                else r = 0;
                if (r == 1 && opt_lt) set_interest(ep, fd, EPOLLIN);
                /* Edge-triggered: input that came while we waited raised no new edge
                 * for us to see, so read now. */
                if (r == 1 && !opt_lt) r = serve_input(fd, buf, drain);
                else if (r == 1) r = 0;
            } else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
                r = serve_input(fd, buf, drain);
                if (r == 0 && opt_lt && conns[fd].pend) set_interest(ep, fd, EPOLLOUT);
            } else {
                r = 0; /* edge-triggered EPOLLOUT with nothing pending */
            }
            if (r < 0) close_conn(fd);
        }
    }
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: echo --port PORT [--threads T] [--listen reuseport|shared] "
                    "[--epoll et|lt] [--timeout SECS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--port") || !strcmp(a, "-port")) opt_port = atoi(v);
        else if (!strcmp(a, "--threads")) opt_threads = atoi(v);
        else if (!strcmp(a, "--timeout")) opt_timeout = (unsigned)atoi(v);
        else if (!strcmp(a, "--listen") && !strcmp(v, "reuseport")) opt_shared = 0;
        else if (!strcmp(a, "--listen") && !strcmp(v, "shared")) opt_shared = 1;
        else if (!strcmp(a, "--epoll") && !strcmp(v, "et")) opt_lt = 0;
        else if (!strcmp(a, "--epoll") && !strcmp(v, "lt")) opt_lt = 1;
        else usage();
        i++;
    }
    if (opt_port < 0 || opt_port > 65535 || opt_threads < 1 || opt_threads > MAX_THREADS)
        usage();

    /* As many sockets as the hard limit allows; the table is indexed by fd. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    max_fds = rl.rlim_cur > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_cur;
    conns = calloc(max_fds, sizeof *conns); /* untouched pages cost no RSS */
    if (!conns) die("calloc");
    if (opt_timeout) alarm(opt_timeout); /* SIGALRM's default action ends the process */
    /* A write to a connection the peer has reset fails with EPIPE (and the connection
     * is closed) instead of ending the process, as in gnet and the daemon. */
    signal(SIGPIPE, SIG_IGN);

    if (opt_shared) shared_listener = make_listener(0);
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < opt_threads; t++) {
        int lfd = opt_shared ? shared_listener : make_listener(1);
        if (pthread_create(&th[t], NULL, loop, (void *)(intptr_t)lfd) != 0) die("pthread_create");
    }
    /* Every listener is bound and listening (connections queue until a loop takes them). */
    fprintf(stderr, "echo: listening on 127.0.0.1:%d (%d threads, %s, epoll %s)\n", opt_port,
            opt_threads, opt_shared ? "shared listener" : "SO_REUSEPORT", opt_lt ? "lt" : "et");
    for (int t = 0; t < opt_threads; t++) pthread_join(th[t], NULL);
    return 0;
}
