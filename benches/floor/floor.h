/*
 * The chat floor's wire format and helpers, shared by relay.c and load.c.
 *
 * Not Switchboard's protocol: a fixed 16-byte header and an opaque body, so the relay
 * does no protocol work at all (no validation beyond the length, no decoding, no
 * routing table beyond an array), and what it costs is the system calls of the
 * daemon's chat path and nothing else.
 */
#ifndef FLOOR_H
#define FLOOR_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum kind {
    K_HELLO = 1,   /* load -> relay, once per connection: src = index, dest = pair group */
    K_MSG = 2,     /* load -> relay: a chat message for connection `dest` */
    K_ACK = 3,     /* relay -> sender: the message was taken (like `Accepted`) */
    K_DELIVER = 4, /* relay -> receiver: the message (like `Deliver`) */
};

/* Every frame starts with this (little-endian, as the machine is). */
struct hdr {
    uint32_t len; /* whole frame, header included */
    uint8_t kind;
    uint8_t pad[3];
    uint32_t dest; /* receiving connection's index */
    uint32_t src;  /* sending connection's index */
};

/* A message body (after the header) starts with this; padded to the message size. */
struct body {
    uint64_t stamp_ns; /* CLOCK_MONOTONIC at the sender's write */
    uint64_t id;
};

#define HDR_LEN 16u
#define MIN_MSG (HDR_LEN + 16u)
#define MAX_FRAME 1024u
/* An ack is header + body + 8 bytes: 40 B, about what `Accepted` is. */
#define ACK_LEN 40u

_Static_assert(sizeof(struct hdr) == HDR_LEN, "header is 16 bytes");
_Static_assert(sizeof(struct body) == 16, "body prefix is 16 bytes");

/* The length of the whole frame at the start of buf[0..avail): 0 while it is not all
 * there, -1 when its length field is out of bounds (the caller closes). */
static inline int64_t frame_at(const uint8_t *buf, uint32_t avail) {
    if (avail < HDR_LEN) return 0;
    uint32_t len;
    memcpy(&len, buf, 4);
    if (len < HDR_LEN || len > MAX_FRAME) return -1;
    return avail < len ? 0 : (int64_t)len;
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

/* A growable byte buffer. */
struct buf {
    uint8_t *p;
    size_t len, cap;
};

static inline void buf_put(struct buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) die("realloc");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

#endif
