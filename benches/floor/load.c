/*
 * The load side of the chat floor, shaped like `storm --scenario chat -n 5500
 * --agents 500 --capacity 10 --rate R`: connections below -a are agents, the rest
 * visitors; visitor v talks with agent (v - A) / K; each side of each conversation
 * sends R/2 messages a second (an agent round-robin over its conversations from one
 * per-connection timer), so the offered rate is (N - A) x R messages a second.
 *
 * J threads (default 2, like storm), each with its epoll and a min-heap of send
 * times; a due message is written at once (one write, as storm does). A message
 * carries its CLOCK_MONOTONIC send time; latency is its arrival at the peer minus
 * that. The measurement window is [go + warm-up, go + warm-up + duration); the
 * relay's CPU (-P PID: /proc/PID/stat utime + stime, all threads) is sampled at its
 * start and end, and CPU per message = that / deliveries counted in the window.
 * Prints one JSON line to stdout. Exits after the drain period whatever happens.
 *
 * Usage: load -p PORT -P RELAY_PID [-n CONNS] [-a AGENTS] [-k CAPACITY] [-R RATE]
 *             [-s MSG_BYTES] [-W WARMUP_S] [-D DURATION_S] [-j THREADS] [-S SOURCES]
 */
#include "floor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_CAP 8192u
#define OUT_BOUND (64u << 10)
#define MAX_THREADS 16

struct lconn {
    int fd;
    uint32_t idx;
    uint32_t in_len;
    uint32_t rr;
    uint32_t peers; /* conversations: 1 for a visitor, its visitors for an agent */
    uint64_t period_ns;
    struct buf out;
    uint8_t in[IN_CAP];
};

struct timer {
    uint64_t due;
    uint32_t slot;
};

struct lthread {
    int id, ep;
    struct lconn *c;
    uint32_t n;
    struct timer *heap;
    uint32_t heap_len;
    uint64_t sent, delivered, acks, dropped, closed, msg_id;
    uint64_t sent_all, delivered_all, acks_all; /* the whole run, warm-up and drain too */
    uint32_t *lat_us;
    size_t lat_len, lat_cap;
};

static uint32_t n_conns = 5500, n_agents = 500, capacity = 10, msg_size = 112;
static double rate = 4, warmup_s = 2, duration_s = 10, drain_s = 1;
static int port, relay_pid, n_threads = 2, n_sources = 8;
static uint64_t go_ns, win_start, win_end, stop_at;
static pthread_barrier_t ready, started;

/* Storm's `spread`: where in its period a connection's first message falls. */
static double spread(uint64_t i) {
    double x = (double)i * 0.618033988749895;
    return x - floor(x);
}

static void heap_push(struct lthread *t, struct timer e) {
    uint32_t i = t->heap_len++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (t->heap[p].due <= e.due) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = e;
}

static struct timer heap_pop(struct lthread *t) {
    struct timer top = t->heap[0], last = t->heap[--t->heap_len];
    uint32_t i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        if (l >= t->heap_len) break;
        m = (l + 1 < t->heap_len && t->heap[l + 1].due < t->heap[l].due) ? l + 1 : l;
        if (last.due <= t->heap[m].due) break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (t->heap_len) t->heap[i] = last;
    return top;
}

static void conn_close(struct lthread *t, struct lconn *c) {
    if (c->fd < 0) return;
    close(c->fd);
    c->fd = -1;
    t->closed++;
}

static void try_flush(struct lthread *t, struct lconn *c) {
    if (c->fd < 0 || c->out.len == 0) return;
    ssize_t n = write(c->fd, c->out.p, c->out.len);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) conn_close(t, c);
        return;
    }
    memmove(c->out.p, c->out.p + n, c->out.len - (size_t)n);
    c->out.len -= (size_t)n;
}

static void send_msg(struct lthread *t, struct lconn *c, uint64_t now) {
    if (c->fd < 0) return;
    uint32_t dest;
    if (c->idx < n_agents) {
        dest = n_agents + c->idx * capacity + (c->rr++ % c->peers);
    } else {
        dest = (c->idx - n_agents) / capacity;
    }
    uint8_t f[MAX_FRAME];
    memset(f, 'x', msg_size);
    struct hdr h = {.len = msg_size, .kind = K_MSG, .dest = dest, .src = c->idx};
    struct body b = {.stamp_ns = now_ns(), .id = ++t->msg_id};
    memcpy(f, &h, HDR_LEN);
    memcpy(f + HDR_LEN, &b, sizeof b);
    if (c->out.len + msg_size > OUT_BOUND) { /* the relay does not read: not sent */
        t->dropped++;
        return;
    }
    if (now >= win_start && now < win_end) t->sent++;
    t->sent_all++;
    if (c->out.len > 0) { /* earlier output still waits: keep the order */
        buf_put(&c->out, f, msg_size);
        try_flush(t, c);
        return;
    }
    ssize_t n = write(c->fd, f, msg_size);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_close(t, c);
            return;
        }
        n = 0;
    }
    if ((uint32_t)n < msg_size) buf_put(&c->out, f + n, msg_size - (size_t)n);
}

static void on_frame(struct lthread *t, const uint8_t *f, uint64_t now) {
    struct hdr h;
    memcpy(&h, f, HDR_LEN);
    t->acks_all += h.kind == K_ACK;
    t->delivered_all += h.kind == K_DELIVER;
    if (now < win_start || now >= win_end) return;
    if (h.kind == K_ACK) {
        t->acks++;
    } else if (h.kind == K_DELIVER) {
        struct body b;
        memcpy(&b, f + HDR_LEN, sizeof b);
        uint64_t lat = now > b.stamp_ns ? (now - b.stamp_ns) / 1000 : 0;
        if (t->lat_len == t->lat_cap) {
            t->lat_cap = t->lat_cap ? t->lat_cap * 2 : 65536;
            t->lat_us = realloc(t->lat_us, t->lat_cap * sizeof *t->lat_us);
            if (!t->lat_us) die("realloc");
        }
        t->lat_us[t->lat_len++] = lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
        t->delivered++;
    }
}

static void on_readable(struct lthread *t, struct lconn *c, uint64_t now) {
    for (;;) {
        if (c->fd < 0) return;
        size_t room = IN_CAP - c->in_len;
        ssize_t n = read(c->fd, c->in + c->in_len, room);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(t, c);
            return;
        }
        if (n < 0) return;
        c->in_len += (uint32_t)n;
        uint32_t at = 0;
        for (int64_t len; (len = frame_at(c->in + at, c->in_len - at)) != 0; at += (uint32_t)len) {
            if (len < 0) {
                conn_close(t, c);
                return;
            }
            on_frame(t, c->in + at, now);
        }
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
        if ((size_t)n < room) return;
    }
}

static void connect_all(struct lthread *t) {
    int one = 1;
    for (uint32_t k = 0; k < t->n; k++) {
        struct lconn *c = &t->c[k];
        c->idx = (uint32_t)t->id + k * (uint32_t)n_threads;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket");
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + c->idx % (uint32_t)n_sources);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind");
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t group = c->idx < n_agents ? c->idx : (c->idx - n_agents) / capacity;
        struct hdr h = {.len = HDR_LEN, .kind = K_HELLO, .dest = group, .src = c->idx};
        if (write(c->fd, &h, HDR_LEN) != HDR_LEN) die("hello");
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
                                 .data.u32 = k};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
        /* visitor: R/2 a second; agent: R/2 per conversation, round robin */
        if (c->idx < n_agents) {
            uint32_t first = n_agents + c->idx * capacity;
            c->peers = first >= n_conns ? 0
                       : (n_conns - first < capacity ? n_conns - first : capacity);
        } else {
            c->peers = 1;
        }
        c->period_ns = c->peers ? (uint64_t)(2e9 / rate / c->peers) : 0;
    }
}

static void *thread_main(void *arg) {
    struct lthread *t = arg;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0) die("epoll_create1");
    connect_all(t);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&started);
    for (uint32_t k = 0; k < t->n; k++) {
        struct lconn *c = &t->c[k];
        if (c->period_ns)
            heap_push(t, (struct timer){go_ns + (uint64_t)(c->period_ns * spread(c->idx)), k});
    }
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= stop_at) break;
        while (t->heap_len && t->heap[0].due <= now) {
            struct timer e = heap_pop(t);
            if (e.due >= win_end) {
                t->heap_len = 0; /* the load is over; only the drain is left */
                break;
            }
            struct lconn *c = &t->c[e.slot];
            send_msg(t, c, now);
            uint64_t next = e.due + c->period_ns;
            if (next <= now) next = now + c->period_ns; /* behind: skip missed ticks */
            heap_push(t, (struct timer){next, e.slot});
        }
        uint64_t wake = t->heap_len ? t->heap[0].due : stop_at;
        if (wake > stop_at) wake = stop_at;
        uint64_t left = wake > now ? wake - now : 0;
        int ms = (int)((left + 999999) / 1000000); /* rounded up, as mio does */
        if (ms > 100) ms = 100;
        int n = epoll_wait(t->ep, evs, 1024, ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct lconn *c = &t->c[evs[i].data.u32];
            uint64_t at = now_ns(); /* a fresh time per event, as storm takes */
            if (evs[i].events & EPOLLOUT) try_flush(t, c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(t, c, at);
        }
    }
    for (uint32_t k = 0; k < t->n; k++)
        if (t->c[k].fd >= 0) close(t->c[k].fd); /* ours, not counted as `closed` */
    return NULL;
}

/* utime + stime of a process (all threads), in clock ticks; stime alone in *sys. */
static long long proc_ticks(int pid, long long *sys) {
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    /* after the name: state (field 3) ... utime (14) stime (15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    if (sys) *sys = (long long)st;
    return (long long)(ut + st);
}

static void sleep_until(uint64_t t) {
    uint64_t now;
    while ((now = now_ns()) < t) {
        uint64_t d = t - now;
        struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: load -p PORT -P RELAY_PID [-n CONNS] [-a AGENTS] [-k CAPACITY] "
                    "[-R RATE] [-s MSG_BYTES] [-W WARMUP_S] [-D DURATION_S] [-j THREADS] "
                    "[-S SOURCES]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "p:P:n:a:k:R:s:W:D:j:S:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': relay_pid = atoi(optarg); break;
        case 'n': n_conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'a': n_agents = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': capacity = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'R': rate = atof(optarg); break;
        case 's': msg_size = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'W': warmup_s = atof(optarg); break;
        case 'D': duration_s = atof(optarg); break;
        case 'j': n_threads = atoi(optarg); break;
        case 'S': n_sources = atoi(optarg); break;
        default: usage();
        }
    }
    if (port <= 0 || relay_pid <= 0 || n_agents == 0 || n_agents >= n_conns || capacity == 0 ||
        (uint64_t)n_agents * capacity < n_conns - n_agents || rate <= 0 ||
        msg_size < MIN_MSG || msg_size > MAX_FRAME || n_threads < 1 ||
        n_threads > MAX_THREADS || n_sources < 1 || n_sources > 8 || duration_s <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Self-stopping: setup has a minute, the run its own length. */
    alarm((unsigned)(60 + warmup_s + duration_s + drain_s + 10));

    struct lthread t[MAX_THREADS];
    memset(t, 0, sizeof t);
    pthread_barrier_init(&ready, NULL, (unsigned)n_threads + 1);
    pthread_barrier_init(&started, NULL, (unsigned)n_threads + 1);
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        t[i].id = i;
        t[i].n = (n_conns - (uint32_t)i + (uint32_t)n_threads - 1) / (uint32_t)n_threads;
        t[i].c = calloc(t[i].n, sizeof *t[i].c);
        t[i].heap = calloc(t[i].n, sizeof *t[i].heap);
        if (!t[i].c || !t[i].heap) die("calloc");
        pthread_create(&th[i], NULL, thread_main, &t[i]);
    }
    pthread_barrier_wait(&ready);
    go_ns = now_ns() + 200000000ull;
    win_start = go_ns + (uint64_t)(warmup_s * 1e9);
    win_end = win_start + (uint64_t)(duration_s * 1e9);
    stop_at = win_end + (uint64_t)(drain_s * 1e9);
    pthread_barrier_wait(&started);

    sleep_until(win_start);
    long long s0 = 0, s1 = 0;
    long long r0 = proc_ticks(relay_pid, &s0), l0 = proc_ticks(getpid(), NULL);
    uint64_t w0 = now_ns();
    sleep_until(win_end);
    long long r1 = proc_ticks(relay_pid, &s1), l1 = proc_ticks(getpid(), NULL);
    uint64_t w1 = now_ns();
    for (int i = 0; i < n_threads; i++) pthread_join(th[i], NULL);

    uint64_t sent = 0, delivered = 0, acks = 0, dropped = 0, closed = 0;
    uint64_t sent_all = 0, delivered_all = 0, acks_all = 0;
    size_t lat_n = 0;
    for (int i = 0; i < n_threads; i++) {
        sent += t[i].sent, delivered += t[i].delivered, acks += t[i].acks;
        dropped += t[i].dropped, closed += t[i].closed;
        sent_all += t[i].sent_all, delivered_all += t[i].delivered_all, acks_all += t[i].acks_all;
        lat_n += t[i].lat_len;
    }
    uint32_t *lat = malloc((lat_n ? lat_n : 1) * sizeof *lat);
    if (!lat) die("malloc");
    size_t at = 0;
    for (int i = 0; i < n_threads; i++) {
        if (t[i].lat_len) memcpy(lat + at, t[i].lat_us, t[i].lat_len * sizeof *lat);
        at += t[i].lat_len;
    }
    qsort(lat, lat_n, sizeof *lat, cmp_u32);
#define PCT(p) (lat_n ? lat[(size_t)((double)(lat_n - 1) * (p))] : 0)
    double tick = (double)sysconf(_SC_CLK_TCK);
    double win = (double)(w1 - w0) / 1e9;
    double relay_cpu = (r0 >= 0 && r1 >= 0) ? (double)(r1 - r0) / tick : -1;
    double load_cpu = (double)(l1 - l0) / tick;
    uint32_t convs = n_conns - n_agents;
    printf("{\"offered_per_s\":%.0f,\"window_s\":%.3f,\"sent\":%llu,\"delivered\":%llu,"
           "\"acks\":%llu,\"delivered_per_s\":%.0f,\"relay_cpu_s\":%.2f,\"relay_cores\":%.3f,"
           "\"relay_sys_s\":%.2f,\"us_per_msg\":%.3f,\"load_cpu_s\":%.2f,\"latency_us\":{\"p50\":%u,\"p90\":%u,"
           "\"p99\":%u,\"p999\":%u,\"max\":%u},\"dropped\":%llu,\"closed\":%llu,\"sent_all\":%llu,\"delivered_all\":%llu,\"acks_all\":%llu}\n",
           convs * rate, win, (unsigned long long)sent, (unsigned long long)delivered,
           (unsigned long long)acks, (double)delivered / win, relay_cpu, relay_cpu / win,
           (double)(s1 - s0) / tick,
           delivered ? relay_cpu * 1e6 / (double)delivered : 0.0, load_cpu, PCT(0.50),
           PCT(0.90), PCT(0.99), PCT(0.999), lat_n ? lat[lat_n - 1] : 0,
           (unsigned long long)dropped, (unsigned long long)closed, (unsigned long long)sent_all,
           (unsigned long long)delivered_all, (unsigned long long)acks_all);
    return 0;
}
