/*
 * The io_uring echo floor: the C counterpart of echo.c on io_uring, to measure the
 * daemon's io_uring backend against (issue 22; see the README's "io_uring against
 * epoll"). The plainest good io_uring pattern for an echo server, nothing else:
 *
 *   - T threads (default 2: the daemon's 2 reactors), each with its own ring set up
 *     with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (what the daemon
 *     uses) and its own SO_REUSEPORT listener; a connection lives on the thread that
 *     accepted it.
 *   - A multishot accept per listener; a multishot receive per connection, from the
 *     thread's provided-buffer ring (--buffers N of --buffer-size B bytes; default
 *     512 x 8 KiB, the daemon's `reactor.uring_buffers` x `uring_buffer_bytes`).
 *   - Each received buffer is sent back straight from the buffer (no copy) and goes
 *     back to the buffer ring when its send has completed. A connection's received
 *     buffers wait in its queue, linked through the buffer ids; one SENDMSG sends
 *     the queue's first 64 (a vector of buffers). A connection has at most one send
 *     in flight (two sends in flight on one socket may complete out of order when
 *     the first is short); what comes meanwhile waits for the next. A short send is
 *     re-sent from where it stopped. So every byte is echoed once, in order.
 *   - A receive that finds no buffer (-ENOBUFS ends the multishot) is re-armed once a
 *     buffer has come back; meanwhile the connection waits (TCP's window pushes back
 *     on the client), as the epoll floor stops reading while output is pending.
 *   - The loop: io_uring_submit_and_wait(1), handle every completion, repeat. The
 *     sends a turn's completions ask for are submitted with the next turn's wait,
 *     unless --flush K submits them every K completions within the turn.
 *   - End of stream: the queued echo is sent, then the socket closed. An error on
 *     a connection shuts it down (which ends its receive) and closes it once nothing
 *     of it is in flight. SIGPIPE is ignored (sends use MSG_NOSIGNAL anyway).
 *
 * Binds 127.0.0.1:PORT. Runs until killed, or --timeout SECS (default 3600; 0 = no
 * bound) have passed.
 *
 * Usage: uring_echo --port PORT [--threads T] [--buffers N] [--buffer-size B]
 *                   [--flush K] [--timeout SECS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 64
#define NO_BUF 0xffffu

enum op { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

#define MAX_IOV 64

/* A connection's send in flight: the kernel reads the header and vector until its
 * completion. */
struct sendmsg_rec {
    struct msghdr hdr;
    struct iovec iov[MAX_IOV];
};

/* Per connection, indexed by fd (each fd is owned by one thread). */
struct conn {
    struct sendmsg_rec *msg; /* allocated at the first send, freed at close */
    uint16_t head, tail; /* the queue of received buffers to echo, NO_BUF when empty */
    uint8_t recv_armed;  /* a multishot receive is in the ring */
    uint8_t sending;     /* the head buffer's send is in flight */
    uint8_t eof;         /* the peer has finished sending */
    uint8_t dead;        /* an error: drop the queue, close once nothing is in flight */
    uint8_t starved;     /* waiting for a buffer to re-arm the receive */
};

/* Per thread. */
struct worker {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    uint32_t *len, *off; /* per buffer id: bytes received, bytes already sent */
    uint16_t *next;      /* per buffer id: the next buffer in its connection's queue */
    unsigned held;       /* buffers taken by receives and not yet given back */
    int *starved;        /* connections waiting for a buffer */
    unsigned nstarved;
    int lfd;
};

static struct conn *conns;
static size_t max_fds;
static int opt_port = -1, opt_threads = 2;
static unsigned opt_buffers = 512, opt_buf_size = 8192, opt_flush = 0, opt_timeout = 3600;

static void die(const char *what, int err) {
    fprintf(stderr, "uring_echo: %s: %s\n", what, strerror(err));
    exit(1);
}

static int make_listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket", errno);
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR", errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT", errno);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)opt_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind", errno);
    if (listen(fd, 65535) < 0) die("listen", errno); /* clamped to net.core.somaxconn */
    return fd;
}

static inline uint64_t tag(enum op op, int fd) { return ((uint64_t)op << 32) | (uint32_t)fd; }

static struct io_uring_sqe *sqe_of(struct worker *w) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel first */
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
        if (!sqe) die("io_uring_get_sqe", EBUSY);
    }
    return sqe;
}

static void arm_accept(struct worker *w) {
    struct io_uring_sqe *sqe = sqe_of(w);
    io_uring_prep_multishot_accept(sqe, w->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, w->lfd));
}

static void arm_recv(struct worker *w, int fd) {
    struct io_uring_sqe *sqe = sqe_of(w);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, tag(OP_RECV, fd));
    conns[fd].recv_armed = 1;
}

static void send_queue(struct worker *w, int fd) {
    struct conn *c = &conns[fd];
    if (!c->msg) {
        c->msg = calloc(1, sizeof *c->msg);
        if (!c->msg) die("calloc", ENOMEM);
    }
    struct sendmsg_rec *m = c->msg;
    unsigned n = 0;
    for (uint16_t b = c->head; b != NO_BUF && n < MAX_IOV; b = w->next[b], n++) {
        m->iov[n].iov_base = w->bufs + (size_t)b * opt_buf_size + w->off[b];
        m->iov[n].iov_len = w->len[b] - w->off[b];
    }
    m->hdr = (struct msghdr){.msg_iov = m->iov, .msg_iovlen = n};
    struct io_uring_sqe *sqe = sqe_of(w);
    io_uring_prep_sendmsg(sqe, fd, &m->hdr, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(OP_SEND, fd));
    c->sending = 1;
}

/* Gives buffer b back to the kernel's ring. */
static void give_back(struct worker *w, uint16_t b) {
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)b * opt_buf_size, opt_buf_size, b,
                          io_uring_buf_ring_mask(opt_buffers), 0);
    io_uring_buf_ring_advance(w->br, 1);
    w->held--;
}

/* Gives back every queued buffer, unless a send is in flight (it may read any of
 * them): then the completion drops them (the connection is dead by then). */
static void drop_queue(struct worker *w, int fd) {
    struct conn *c = &conns[fd];
    if (c->sending) return;
    for (uint16_t b = c->head; b != NO_BUF;) {
        uint16_t n = w->next[b];
        give_back(w, b);
        b = n;
    }
    c->head = c->tail = NO_BUF;
}

static void fail(struct worker *w, int fd) {
    struct conn *c = &conns[fd];
    if (!c->dead) {
        c->dead = 1;
        if (c->recv_armed) shutdown(fd, SHUT_RDWR); /* ends the multishot receive */
    }
    drop_queue(w, fd);
}

static void maybe_close(struct worker *w, int fd) {
    struct conn *c = &conns[fd];
    if (c->recv_armed || c->sending || c->starved) return;
    if (!c->dead && !(c->eof && c->head == NO_BUF)) return;
    drop_queue(w, fd);
    free(c->msg);
    *c = (struct conn){.head = NO_BUF, .tail = NO_BUF};
    close(fd);
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(w);
    int fd = cqe->res;
    if (fd < 0) return; /* EMFILE and the like: the listener is still armed */
    if ((size_t)fd >= max_fds) { /* cannot happen below RLIMIT_NOFILE */
        close(fd);
        return;
    }
    int one = 1; /* like gnet, the daemon and echo.c: no Nagle delay on small echoes */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns[fd] = (struct conn){.head = NO_BUF, .tail = NO_BUF};
    arm_recv(w, fd);
}

static void on_recv(struct worker *w, struct io_uring_cqe *cqe, int fd) {
    struct conn *c = &conns[fd];
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) c->recv_armed = 0;
    if (cqe->res > 0) {
        uint16_t b = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        w->held++;
        if (c->dead) {
            give_back(w, b);
        } else {
            w->len[b] = (uint32_t)cqe->res;
            w->off[b] = 0;
            w->next[b] = NO_BUF;
            if (c->tail == NO_BUF) c->head = b;
            else w->next[c->tail] = b;
            c->tail = b;
            if (!c->sending) send_queue(w, fd);
        }
        /* The multishot ended with data (a full completion queue, say): go on. */
        if (!more && !c->dead && !c->eof) arm_recv(w, fd);
    } else if (cqe->res == 0) {
        c->eof = 1;
    } else if (cqe->res == -ENOBUFS) {
        if (!c->dead && !c->starved) {
            c->starved = 1;
            w->starved[w->nstarved++] = fd;
        }
    } else {
        fail(w, fd);
    }
    maybe_close(w, fd);
}

static void on_send(struct worker *w, struct io_uring_cqe *cqe, int fd) {
    struct conn *c = &conns[fd];
    c->sending = 0;
    if (cqe->res > 0) {
        /* Whole buffers sent go back; a partly sent one keeps its place. */
        uint32_t left = (uint32_t)cqe->res;
        while (left > 0 && c->head != NO_BUF) {
            uint16_t b = c->head;
            uint32_t rest = w->len[b] - w->off[b];
            if (left < rest) {
                w->off[b] += left;
                break;
            }
            left -= rest;
            c->head = w->next[b];
            if (c->head == NO_BUF) c->tail = NO_BUF;
            give_back(w, b);
        }
    } else if (cqe->res != -EAGAIN && cqe->res != -EINTR && cqe->res != 0) {
        fail(w, fd);
    }
    if (c->dead) drop_queue(w, fd);
    else if (c->head != NO_BUF) send_queue(w, fd); /* the rest, and what came since */
    maybe_close(w, fd);
}

/* Re-arms the receives that found no buffer, as many as there are buffers free. */
static void feed_starved(struct worker *w) {
    unsigned free_bufs = opt_buffers - w->held;
    while (w->nstarved > 0 && free_bufs > 0) {
        int fd = w->starved[--w->nstarved];
        struct conn *c = &conns[fd];
        c->starved = 0;
        if (!c->dead && !c->eof) {
            arm_recv(w, fd);
            free_bufs--;
        }
        maybe_close(w, fd);
    }
}

static void *loop(void *arg) {
    struct worker *w = arg;
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    int r = io_uring_queue_init_params(4096, &w->ring, &p);
    if (r < 0) die("io_uring_queue_init_params", -r);

    /* The provided-buffer ring: its entries in one page-aligned mapping, the buffers
     * in another (untouched pages cost no RSS, so a pool the load never fills shows
     * as what it used). */
    size_t ring_bytes = opt_buffers * sizeof(struct io_uring_buf);
    w->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    w->bufs = mmap(NULL, (size_t)opt_buffers * opt_buf_size, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (w->br == MAP_FAILED || w->bufs == MAP_FAILED) die("mmap", errno);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)w->br, .ring_entries = opt_buffers, .bgid = 0};
    r = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (r < 0) die("io_uring_register_buf_ring", -r);
    io_uring_buf_ring_init(w->br);
    for (unsigned b = 0; b < opt_buffers; b++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)b * opt_buf_size, opt_buf_size,
                              (unsigned short)b, io_uring_buf_ring_mask(opt_buffers), (int)b);
    io_uring_buf_ring_advance(w->br, (int)opt_buffers);
    w->len = calloc(opt_buffers, sizeof *w->len);
    w->off = calloc(opt_buffers, sizeof *w->off);
    w->next = calloc(opt_buffers, sizeof *w->next);
    w->starved = calloc(max_fds, sizeof *w->starved);
    if (!w->len || !w->off || !w->next || !w->starved) die("calloc", ENOMEM);

    arm_accept(w);
    for (;;) {
        r = io_uring_submit_and_wait(&w->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) die("io_uring_submit_and_wait", -r);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            int fd = (int)(uint32_t)cqe->user_data;
            switch ((enum op)(cqe->user_data >> 32)) {
            case OP_ACCEPT: on_accept(w, cqe); break;
            case OP_RECV: on_recv(w, cqe, fd); break;
            case OP_SEND: on_send(w, cqe, fd); break;
            }
            n++;
            if (opt_flush && n % opt_flush == 0) io_uring_submit(&w->ring);
        }
        io_uring_cq_advance(&w->ring, n);
        feed_starved(w);
    }
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: uring_echo --port PORT [--threads T] [--buffers N] "
                    "[--buffer-size B] [--flush K] [--timeout SECS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--port") || !strcmp(a, "-port")) opt_port = atoi(v);
        else if (!strcmp(a, "--threads")) opt_threads = atoi(v);
        else if (!strcmp(a, "--buffers")) opt_buffers = (unsigned)atoi(v);
        else if (!strcmp(a, "--buffer-size")) opt_buf_size = (unsigned)atoi(v);
        else if (!strcmp(a, "--flush")) opt_flush = (unsigned)atoi(v);
        else if (!strcmp(a, "--timeout")) opt_timeout = (unsigned)atoi(v);
        else usage();
        i++;
    }
    /* Buffer ids are 16-bit and NO_BUF is reserved; the ring's size a power of two. */
    if (opt_port < 0 || opt_port > 65535 || opt_threads < 1 || opt_threads > MAX_THREADS ||
        opt_buffers < 1 || opt_buffers > 32768 || (opt_buffers & (opt_buffers - 1)) ||
        opt_buf_size < 64 || opt_buf_size > (1u << 20))
        usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit", errno);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    max_fds = rl.rlim_cur > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_cur;
    conns = calloc(max_fds, sizeof *conns); /* untouched pages cost no RSS */
    if (!conns) die("calloc", ENOMEM);
    if (opt_timeout) alarm(opt_timeout); /* SIGALRM's default action ends the process */
    signal(SIGPIPE, SIG_IGN);

    static struct worker workers[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < opt_threads; t++) {
        workers[t].lfd = make_listener();
        if (pthread_create(&th[t], NULL, loop, &workers[t]) != 0) die("pthread_create", errno);
    }
    /* Every listener is bound and listening (connections queue until a loop takes them). */
    fprintf(stderr,
            "uring_echo: listening on 127.0.0.1:%d (%d threads, SO_REUSEPORT, %u x %u B buffers, "
            "flush %u)\n",
            opt_port, opt_threads, opt_buffers, opt_buf_size, opt_flush);
    for (int t = 0; t < opt_threads; t++) pthread_join(th[t], NULL);
    return 0;
}
