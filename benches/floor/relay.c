/*
 * The relay side of the chat floor: the system calls of Switchboard's chat path with
 * no protocol work (see benches/chat_floor.sh and the README's "The floor").
 *
 * Per chat message the daemon reads the sender's frame (one read per readiness,
 * amortised over what is queued), writes an `Accepted` to the sender and a `Deliver`
 * to the receiver (one writev per socket per reactor turn), and hands the frame from
 * its reactor to a worker and the answer back (two thread wake-ups per batch). This
 * program does exactly that and nothing else:
 *
 *   direct   R reactor threads (epoll, edge-triggered). A connection belongs to the
 *            reactor of its pair group (an agent and its visitors share one), so a
 *            message never leaves the thread that read it: read -> ack appended to
 *            the sender's output, the frame appended to the receiver's output -> at
 *            the end of the turn one write per connection with output.
 *   handoff  R reactor threads and W worker threads; connections are spread over the
 *            reactors by index (so about half of the deliveries cross reactors, as in
 *            the daemon). A reactor's turn hands the frames it read to the worker of
 *            their conversation (one locked append and one eventfd write per worker
 *            per turn); a worker sleeps in read(eventfd), takes its batch, and gives
 *            each reactor its acks and deliveries (one locked append and one eventfd
 *            write per reactor per batch); the reactor, woken through its eventfd in
 *            epoll, appends them and writes once per connection per turn.
 *
 * Setup (not measured): accepts -n connections on 127.0.0.1:PORT, reads each one's
 * 16-byte hello (index and pair group), then starts the threads. Exits when every
 * connection is closed, or after -T seconds whatever happens. On exit prints one JSON
 * line of counters (system calls and frames over the whole run) to stdout.
 *
 * Usage: relay -p PORT -n CONNS [-m direct|handoff] [-r REACTORS] [-w WORKERS] [-T SECS]
 */
#include "floor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 16
#define IN_CAP 4096u
#define OUT_BOUND (4u << 20) /* a connection with more pending output is closed */
#define EFD_TOKEN UINT32_MAX

struct conn {
    int fd;
    uint32_t in_len;
    uint8_t dirty;
    struct buf out;
    uint8_t in[IN_CAP];
};

/* A locked byte queue between threads: producers append, the consumer swaps. */
struct bq {
    pthread_mutex_t mu;
    struct buf b;
};

struct counters {
    uint64_t reads, writes, epoll_waits, efd_writes, efd_reads, frames, closed_slow;
};

struct reactor {
    int id, ep, efd;
    uint32_t live;
    uint32_t *dirty;
    size_t n_dirty;
    struct buf to_worker[MAX_THREADS];
    struct bq commands;
    struct buf taken;
    struct counters c;
};

struct worker {
    int id, efd;
    struct bq events;
    struct buf taken;
    struct buf to_reactor[MAX_THREADS];
    struct counters c;
};

static int mode_handoff;
static uint32_t n_conns;
static int n_reactors = 2, n_workers = 2;
static struct conn *conns;
static uint8_t *owner; /* reactor of each connection, fixed after setup */
static struct reactor reactors[MAX_THREADS];
static struct worker workers[MAX_THREADS];
static atomic_int stopping;

static void bq_give(struct bq *q, const struct buf *b) {
    pthread_mutex_lock(&q->mu);
    buf_put(&q->b, b->p, b->len);
    pthread_mutex_unlock(&q->mu);
}

/* Swaps the queue's bytes into `into` (emptied first). */
static void bq_take(struct bq *q, struct buf *into) {
    into->len = 0;
    pthread_mutex_lock(&q->mu);
    struct buf t = q->b;
    q->b = *into;
    *into = t;
    pthread_mutex_unlock(&q->mu);
}

static void wake(int efd, struct counters *c) {
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) == sizeof one) c->efd_writes++;
}

static void mark(struct reactor *r, uint32_t idx) {
    struct conn *c = &conns[idx];
    if (!c->dirty) {
        c->dirty = 1;
        r->dirty[r->n_dirty++] = idx;
    }
}

static void close_conn(struct reactor *r, uint32_t idx) {
    struct conn *c = &conns[idx];
    if (c->fd < 0) return;
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->out.len = 0;
    r->live--;
}

/* Appends a frame for connection `target` (owned by r) to its output. */
static void emit(struct reactor *r, uint32_t target, const uint8_t *frame, size_t len) {
    struct conn *c = &conns[target];
    if (c->fd < 0) return;
    if (c->out.len + len > OUT_BOUND) {
        r->c.closed_slow++;
        close_conn(r, target);
        return;
    }
    buf_put(&c->out, frame, len);
    mark(r, target);
}

/* The ack of message `m` (from connection src): 40 bytes back to the sender. */
static void make_ack(uint8_t ack[ACK_LEN], const uint8_t *m, uint32_t src) {
    memset(ack, 0, ACK_LEN);
    struct hdr h = {.len = ACK_LEN, .kind = K_ACK, .dest = src, .src = src};
    memcpy(ack, &h, HDR_LEN);
    memcpy(ack + HDR_LEN, m + HDR_LEN, sizeof(struct body));
}

/* One complete message frame read from connection `src`. */
static void on_frame(struct reactor *r, uint32_t src, uint8_t *f, uint32_t len) {
    struct hdr h;
    memcpy(&h, f, HDR_LEN);
    if (h.kind != K_MSG || h.dest >= n_conns) return;
    h.src = src;
    memcpy(f, &h, HDR_LEN);
    r->c.frames++;
    if (mode_handoff) {
        uint32_t conv = h.src > h.dest ? h.src : h.dest; /* the visitor's index */
        buf_put(&r->to_worker[conv % (uint32_t)n_workers], f, len);
        return;
    }
    uint8_t ack[ACK_LEN];
    make_ack(ack, f, src);
    emit(r, src, ack, ACK_LEN);
    if (owner[h.dest] != r->id) return; /* cannot happen with pair placement */
    f[4] = K_DELIVER;
    emit(r, h.dest, f, len);
}

/* Reads what is queued on a connection: one read when it comes back short (the
 * socket is drained; edge-triggered epoll reports new data), more while it fills
 * the buffer. */
static void on_readable(struct reactor *r, uint32_t idx) {
    struct conn *c = &conns[idx];
    for (;;) {
        if (c->fd < 0) return;
        size_t room = IN_CAP - c->in_len;
        ssize_t n = read(c->fd, c->in + c->in_len, room);
        r->c.reads++;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close_conn(r, idx);
            return;
        }
        if (n < 0) return;
        c->in_len += (uint32_t)n;
        uint32_t at = 0;
        for (int64_t len; (len = frame_at(c->in + at, c->in_len - at)) != 0; at += (uint32_t)len) {
            if (len < 0) {
                close_conn(r, idx);
                return;
            }
            on_frame(r, idx, c->in + at, (uint32_t)len);
        }
        if (at) {
            memmove(c->in, c->in + at, c->in_len - at);
            c->in_len -= at;
        }
        if ((size_t)n < room) return;
    }
}

/* End of a turn: one write per connection with output. */
static void flush(struct reactor *r) {
    for (size_t i = 0; i < r->n_dirty; i++) {
        uint32_t idx = r->dirty[i];
        struct conn *c = &conns[idx];
        c->dirty = 0;
        if (c->fd < 0 || c->out.len == 0) continue;
        ssize_t n = write(c->fd, c->out.p, c->out.len);
        r->c.writes++;
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) close_conn(r, idx);
            continue; /* EPOLLOUT's edge marks it again */
        }
        memmove(c->out.p, c->out.p + n, c->out.len - (size_t)n);
        c->out.len -= (size_t)n;
    }
    r->n_dirty = 0;
}

static void *reactor_main(void *arg) {
    struct reactor *r = arg;
    struct epoll_event evs[512];
    while (r->live > 0 && !atomic_load(&stopping)) {
        int n = epoll_wait(r->ep, evs, 512, 1000);
        r->c.epoll_waits++;
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            uint32_t idx = evs[i].data.u32;
            if (idx == EFD_TOKEN) {
                uint64_t v;
                if (read(r->efd, &v, sizeof v) == sizeof v) r->c.efd_reads++;
                continue;
            }
            if (evs[i].events & EPOLLOUT) mark(r, idx);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(r, idx);
        }
        if (mode_handoff) {
            for (int w = 0; w < n_workers; w++) {
                if (r->to_worker[w].len == 0) continue;
                bq_give(&workers[w].events, &r->to_worker[w]);
                r->to_worker[w].len = 0;
                wake(workers[w].efd, &r->c);
            }
            bq_take(&r->commands, &r->taken);
            for (size_t at = 0; at + HDR_LEN <= r->taken.len;) {
                struct hdr h;
                memcpy(&h, r->taken.p + at, HDR_LEN);
                emit(r, h.dest, r->taken.p + at, h.len);
                at += h.len;
            }
        }
        flush(r);
    }
    return NULL;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (;;) {
        uint64_t v;
        ssize_t n = read(w->efd, &v, sizeof v); /* parks here when idle */
        if (n < 0 && errno == EINTR) continue;
        w->c.efd_reads++;
        if (atomic_load(&stopping)) return NULL;
        bq_take(&w->events, &w->taken);
        for (size_t at = 0; at + HDR_LEN <= w->taken.len;) {
            uint8_t *f = w->taken.p + at;
            struct hdr h;
            memcpy(&h, f, HDR_LEN);
            uint8_t ack[ACK_LEN];
            make_ack(ack, f, h.src);
            buf_put(&w->to_reactor[owner[h.src]], ack, ACK_LEN);
            f[4] = K_DELIVER;
            buf_put(&w->to_reactor[owner[h.dest]], f, h.len);
            w->c.frames++;
            at += h.len;
        }
        for (int r = 0; r < n_reactors; r++) {
            if (w->to_reactor[r].len == 0) continue;
            bq_give(&reactors[r].commands, &w->to_reactor[r]);
            w->to_reactor[r].len = 0;
            wake(reactors[r].efd, &w->c);
        }
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: relay -p PORT -n CONNS [-m direct|handoff] [-r REACTORS] [-w WORKERS] [-T SECS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int port = 0, max_secs = 300, opt;
    while ((opt = getopt(argc, argv, "p:n:m:r:w:T:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'n': n_conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'm':
            if (!strcmp(optarg, "handoff")) mode_handoff = 1;
            else if (strcmp(optarg, "direct")) usage();
            break;
        case 'r': n_reactors = atoi(optarg); break;
        case 'w': n_workers = atoi(optarg); break;
        case 'T': max_secs = atoi(optarg); break;
        default: usage();
        }
    }
    if (port <= 0 || n_conns == 0 || n_reactors < 1 || n_reactors > MAX_THREADS ||
        n_workers < 1 || n_workers > MAX_THREADS)
        usage();
    alarm((unsigned)max_secs); /* self-stopping whatever the load does */
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 4096) < 0) die("listen");
    fprintf(stderr, "relay: listening on 127.0.0.1:%d\n", port); /* the script waits for it */

    conns = calloc(n_conns, sizeof *conns);
    owner = calloc(n_conns, 1);
    if (!conns || !owner) die("calloc");
    for (uint32_t i = 0; i < n_conns; i++) conns[i].fd = -1;

    for (int r = 0; r < n_reactors; r++) {
        struct reactor *re = &reactors[r];
        re->id = r;
        re->ep = epoll_create1(EPOLL_CLOEXEC);
        re->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        re->dirty = calloc(n_conns, sizeof *re->dirty);
        pthread_mutex_init(&re->commands.mu, NULL);
        if (re->ep < 0 || re->efd < 0 || !re->dirty) die("reactor setup");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EFD_TOKEN};
        if (mode_handoff && epoll_ctl(re->ep, EPOLL_CTL_ADD, re->efd, &ev) < 0) die("epoll_ctl");
    }
    for (int w = 0; w < n_workers; w++) {
        workers[w].id = w;
        workers[w].efd = eventfd(0, EFD_CLOEXEC); /* blocking: a worker parks in read */
        pthread_mutex_init(&workers[w].events.mu, NULL);
        if (workers[w].efd < 0) die("eventfd");
    }

    /* Setup: every connection and its hello, before any thread runs. */
    for (uint32_t got = 0; got < n_conns; got++) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) die("accept");
        struct hdr h;
        if (recv(fd, &h, HDR_LEN, MSG_WAITALL) != HDR_LEN || h.kind != K_HELLO ||
            h.src >= n_conns || conns[h.src].fd >= 0) {
            fprintf(stderr, "relay: bad hello\n");
            exit(1);
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[h.src].fd = fd;
        /* direct: the pair group's reactor; handoff: spread by index. */
        int r = (int)((mode_handoff ? h.src : h.dest) % (uint32_t)n_reactors);
        owner[h.src] = (uint8_t)r;
        reactors[r].live++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
                                 .data.u32 = h.src};
        if (epoll_ctl(reactors[r].ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
    close(ls);
    fprintf(stderr, "relay: %u connections, mode %s, %d reactors%s\n", n_conns,
            mode_handoff ? "handoff" : "direct", n_reactors,
            mode_handoff ? " + workers" : "");

    pthread_t rt[MAX_THREADS], wt[MAX_THREADS];
    for (int r = 0; r < n_reactors; r++) pthread_create(&rt[r], NULL, reactor_main, &reactors[r]);
    if (mode_handoff)
        for (int w = 0; w < n_workers; w++) pthread_create(&wt[w], NULL, worker_main, &workers[w]);
    for (int r = 0; r < n_reactors; r++) pthread_join(rt[r], NULL);
    atomic_store(&stopping, 1);
    struct counters t = {0};
    if (mode_handoff)
        for (int w = 0; w < n_workers; w++) {
            struct counters dummy = {0};
            wake(workers[w].efd, &dummy);
            pthread_join(wt[w], NULL);
        }
    for (int r = 0; r < n_reactors; r++) {
        struct counters *c = &reactors[r].c;
        t.reads += c->reads, t.writes += c->writes, t.epoll_waits += c->epoll_waits;
        t.efd_writes += c->efd_writes, t.efd_reads += c->efd_reads, t.frames += c->frames;
        t.closed_slow += c->closed_slow;
    }
    for (int w = 0; mode_handoff && w < n_workers; w++) {
        struct counters *c = &workers[w].c;
        t.efd_writes += c->efd_writes, t.efd_reads += c->efd_reads;
    }
    printf("{\"mode\":\"%s\",\"frames\":%llu,\"reads\":%llu,\"writes\":%llu,\"epoll_waits\":%llu,"
           "\"eventfd_writes\":%llu,\"eventfd_reads\":%llu,\"closed_slow\":%llu}\n",
           mode_handoff ? "handoff" : "direct", (unsigned long long)t.frames,
           (unsigned long long)t.reads, (unsigned long long)t.writes,
           (unsigned long long)t.epoll_waits, (unsigned long long)t.efd_writes,
           (unsigned long long)t.efd_reads, (unsigned long long)t.closed_slow);
    return 0;
}
