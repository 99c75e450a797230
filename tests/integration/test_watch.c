/* Black-box tests of watches and long-polls over three real ballastd
 * processes on 127.0.0.1 (docs/api-notes.md, "Watch", "Long-poll").
 *
 * - A watch on a follower, started at a past revision, stays open while the
 *   leader is killed with SIGKILL, a new one is elected and the old one
 *   restarts; a writer thread meanwhile retries every write through the
 *   surviving members under the same X-Ballast-Request-Id. The stream holds
 *   every acknowledged write exactly once, with the revision of its ack, in
 *   increasing revision order, and nothing that was not written.
 * - The watched member itself is killed with SIGKILL mid-stream and
 *   restarted; a watch reconnected with rev = last seen + 1 continues the
 *   stream: the two streams together hold every acknowledged write once.
 * - With --history-revisions 500, a watch from revision 1 is 410 compacted
 *   with the oldest kept revision, and a watch from that revision replays
 *   the kept history exactly. With --watch-max-lag 50, a watcher that never
 *   reads (small receive buffer) does not slow writers and is cut off: its
 *   stream is the writes up to NEXT - 1, then {"type":"cancelled","reason":
 *   "slow","revision":NEXT}, then the last chunk; a watch from NEXT gets
 *   the rest, starting at NEXT.
 * - A long-poll on a follower waits (an unrelated key does not wake it),
 *   wakes on a change made through another member and answers with the new
 *   value; a poll that times out answers after about `wait`, not twice that
 *   (the leader must not wait again); a prefix poll wakes on a key under the
 *   prefix only.
 *
 * The watch stream is read by hand (raw socket, chunked framing, NDJSON)
 * so that framing errors and the end of the stream are seen. Every wait has
 * a deadline; the writer thread reports errors instead of asserting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster.h"

#define START_TIMEOUT_MS 20000
/* How long one write is retried through the members before its outcome is
 * called unknown. */
#define WRITE_RETRY_MS 15000
/* Per-attempt deadline of a write (a follower holds a write up to 3 s while
 * there is no leader). */
#define WRITE_ATTEMPT_MS 5000
/* A writer thread gives up after this long in all. */
#define WRITER_MAX_MS 45000
/* Most writes (and events) one test makes. */
#define MAX_WRITES 2048
/* --history-revisions of the compacted/slow test, and the writes that
 * make the first ones fall out of it. */
#define HISTORY  500
#define K_WRITES 560
/* Slow watcher: this many values of SLOW_VALUE bytes. Fewer than HISTORY
 * so that NEXT is still kept after the last one, and far more than
 * --watch-max-lag (50) plus what the server (~1 MiB) and the kernel buffer
 * before the watcher blocks (~80 events seen on Linux loopback; the margin
 * covers send buffers autotuned to several MiB) so that it falls behind far
 * enough to be cut off. 64 KiB values (31 MiB in all): with 32 KiB a CI run
 * once saw all 480 events absorbed by buffers, and no cut-off. */
#define SLOW_WRITES 480
#define SLOW_VALUE  65536

/* --- a byte buffer --------------------------------------------------------------- */

/* Live bytes are p[off..len); NUL-terminated at len once anything was added. */
struct bytes {
    char *p;
    size_t off, len, cap;
};

/* Make room for @n more bytes (and a NUL), dropping the consumed ones. */
static void bytes_reserve(struct bytes *b, size_t n)
{
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        char *p;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        ck_assert_msg(p != NULL, "out of memory");
        b->p = p;
        b->cap = cap;
    }
}

static void bytes_add(struct bytes *b, const void *data, size_t n)
{
    bytes_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* --- a watch stream ---------------------------------------------------------------- */

enum chunk_state { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER, CHUNK_DONE };

/* One GET /v1/watch/... on its own connection, read incrementally. */
struct watch_stream {
    struct tc_conn conn; /* the socket; its buffer is not used */
    char target[256];
    int status;        /* of the response head */
    bool chunked;      /* Transfer-Encoding: chunked */
    char head[4096];   /* status line and headers */
    struct bytes raw;  /* received, not yet de-chunked */
    struct bytes body; /* de-chunked, not yet split into lines */
    enum chunk_state state;
    size_t chunk_left;
    bool ended;  /* the last (zero-size) chunk came */
    bool closed; /* the connection ended (EOF or reset) */
};

/* One event. value is malloc'd (NULL for delete and the other types). */
struct ws_event {
    char type[16];
    char reason[32];
    uint64_t revision;
    char key[64];
    uint8_t *value;
    size_t value_len;
    uint64_t create_revision, mod_revision, version;
};

/* Connect to @addr with SO_RCVBUF @rcvbuf set before connect(), so that
 * the window the server sees is small from the first byte. */
static void connect_small(struct tc_conn *conn, const char *addr, int rcvbuf, int timeout_ms)
{
    struct sockaddr_in sa;
    char host[64], *colon;
    int rv, err = 0;
    socklen_t len = sizeof err;

    memset(conn, 0, sizeof *conn);
    conn->fd = -1;
    conn->timeout_ms = timeout_ms;
    snprintf(conn->addr, sizeof conn->addr, "%s", addr);
    snprintf(host, sizeof host, "%s", addr);
    colon = strrchr(host, ':');
    ck_assert_msg(colon != NULL, "bad address %s", addr);
    *colon = '\0';
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    ck_assert_msg(inet_pton(AF_INET, host, &sa.sin_addr) == 1, "bad address %s", addr);
    conn->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_msg(conn->fd >= 0, "socket: %s", strerror(errno));
    ck_assert_msg(setsockopt(conn->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0,
                  "SO_RCVBUF: %s", strerror(errno));
    rv = connect(conn->fd, (struct sockaddr *)&sa, sizeof sa);
    ck_assert_msg(rv == 0 || errno == EINPROGRESS, "connect %s: %s", addr, strerror(errno));
    if (rv != 0) {
        struct pollfd p = {conn->fd, POLLOUT, 0};
        ck_assert_msg(poll(&p, 1, timeout_ms) == 1, "connect %s: timed out", addr);
        ck_assert_msg(getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
                      "connect %s: %s", addr, strerror(err));
    }
}

/* Read what the socket has into ws->raw, waiting until @deadline: 1 when
 * bytes came, 0 on timeout, -1 when the connection ended. */
static int ws_fill(struct watch_stream *ws, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {ws->conn.fd, POLLIN, 0};
        int64_t left = deadline - tc_now_ms();
        ssize_t r;
        int rv;

        rv = poll(&p, 1, left > 0 ? (int)left : 0);
        if (rv < 0 && errno == EINTR) {
            continue;
        }
        ck_assert_msg(rv >= 0, "poll: %s", strerror(errno));
        if (rv == 0) {
            return 0;
        }
        bytes_reserve(&ws->raw, 65536);
        r = recv(ws->conn.fd, ws->raw.p + ws->raw.len, ws->raw.cap - ws->raw.len - 1, 0);
        if (r > 0) {
            ws->raw.len += (size_t)r;
            ws->raw.p[ws->raw.len] = '\0';
            return 1;
        }
        if (r == 0 || errno == ECONNRESET || errno == EPIPE) {
            ws->closed = true;
            return -1;
        }
        ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, "recv from %s: %s",
                      ws->conn.addr, strerror(errno));
        if (left <= 0) {
            return 0;
        }
    }
}

/* Move the payload of the chunks in ws->raw into ws->body. */
static void ws_decode(struct watch_stream *ws)
{
    struct bytes *raw = &ws->raw;

    if (raw->p == NULL) {
        return;
    }
    if (!ws->chunked) { /* a body up to the end of the connection */
        bytes_add(&ws->body, raw->p + raw->off, raw->len - raw->off);
        raw->off = raw->len;
        return;
    }
    for (;;) {
        char *p = raw->p + raw->off, *eol, *end;
        size_t avail = raw->len - raw->off, n;

        switch (ws->state) {
        case CHUNK_SIZE:
        case CHUNK_TRAILER:
            eol = memmem(p, avail, "\r\n", 2);
            if (eol == NULL) {
                ck_assert_msg(avail < 4096, "watch %s: chunk line too long", ws->target);
                return;
            }
            if (ws->state == CHUNK_SIZE) {
                unsigned long long size;
                errno = 0;
                size = strtoull(p, &end, 16);
                ck_assert_msg(
                    errno == 0 && end != p && (end == eol || *end == ';') && size < (64u << 20),
                    "watch %s: bad chunk size line '%.*s'", ws->target, (int)(eol - p), p);
                ws->chunk_left = (size_t)size;
                ws->state = size == 0 ? CHUNK_TRAILER : CHUNK_DATA;
            } else if (eol == p) {
                ws->state = CHUNK_DONE;
                ws->ended = true;
            }
            raw->off += (size_t)(eol - p) + 2;
            break;
        case CHUNK_DATA:
            n = avail < ws->chunk_left ? avail : ws->chunk_left;
            if (n == 0) {
                return;
            }
            bytes_add(&ws->body, p, n);
            raw->off += n;
            ws->chunk_left -= n;
            if (ws->chunk_left == 0) {
                ws->state = CHUNK_DATA_END;
            }
            break;
        case CHUNK_DATA_END:
            if (avail < 2) {
                return;
            }
            ck_assert_msg(p[0] == '\r' && p[1] == '\n', "watch %s: chunk not followed by CRLF",
                          ws->target);
            raw->off += 2;
            ws->state = CHUNK_SIZE;
            break;
        case CHUNK_DONE:
            ck_assert_msg(avail == 0, "watch %s: %zu bytes after the last chunk: '%.60s'",
                          ws->target, avail, p);
            return;
        }
    }
}

/* Whether the header block @head has header @name whose value contains
 * @word (both case-insensitive). */
static bool head_has(const char *head, const char *name, const char *word)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        const char *eol;
        line += 2;
        eol = strstr(line, "\r\n");
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            char value[256];
            size_t vlen = eol != NULL ? (size_t)(eol - line) - nlen - 1 : strlen(line + nlen + 1);
            snprintf(value, sizeof value, "%.*s", (int)vlen, line + nlen + 1);
            if (strcasestr(value, word) != NULL) {
                return true;
            }
        }
    }
    return false;
}

/* Open a watch: connect to @addr (with SO_RCVBUF @rcvbuf when > 0), send
 * GET @target and read the response head. Returns its status; the test
 * fails if no head comes within 10 s. */
static int ws_open(struct watch_stream *ws, const char *addr, const char *target, int rcvbuf)
{
    char req[512];
    int64_t deadline;
    char *end;
    size_t hlen;
    int n;

    memset(ws, 0, sizeof *ws);
    snprintf(ws->target, sizeof ws->target, "%s", target);
    if (rcvbuf > 0) {
        connect_small(&ws->conn, addr, rcvbuf, 5000);
    } else {
        ck_assert_msg(tc_conn_open(&ws->conn, addr, 5000) == 0, "watch %s: %s", target,
                      ws->conn.error);
    }
    ws->conn.timeout_ms = 10000;
    n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, addr);
    ck_assert_msg(n > 0 && (size_t)n < sizeof req, "watch target too long");
    ck_assert_msg(tc_conn_send(&ws->conn, req, (size_t)n) == 0, "watch %s: %s", target,
                  ws->conn.error);
    deadline = tc_now_ms() + 10000;
    for (;;) {
        if (ws->raw.p != NULL && (end = memmem(ws->raw.p, ws->raw.len, "\r\n\r\n", 4)) != NULL) {
            break;
        }
        ck_assert_msg(ws->raw.len < sizeof ws->head, "watch %s: response head too long", target);
        n = ws_fill(ws, deadline);
        ck_assert_msg(n > 0, "watch %s on %s: no response head (%s)", target, addr,
                      n == 0 ? "timed out" : "connection closed");
    }
    hlen = (size_t)(end - ws->raw.p);
    ck_assert_msg(hlen < sizeof ws->head, "watch %s: response head too long", target);
    memcpy(ws->head, ws->raw.p, hlen);
    ws->head[hlen] = '\0';
    ws->raw.off = hlen + 4;
    ck_assert_msg(sscanf(ws->head, "HTTP/%*d.%*d %d", &ws->status) == 1,
                  "watch %s: bad status line '%.80s'", target, ws->head);
    ws->chunked = head_has(ws->head, "Transfer-Encoding", "chunked");
    ws_decode(ws);
    return ws->status;
}

static void ws_close(struct watch_stream *ws)
{
    tc_conn_close(&ws->conn);
    free(ws->raw.p);
    free(ws->body.p);
    memset(ws, 0, sizeof *ws);
    ws->conn.fd = -1;
}

/* Parse one NDJSON line into @ev; the test fails on a malformed event. */
static void parse_event(const struct watch_stream *ws, const char *line, struct ws_event *ev)
{
    free(ev->value);
    memset(ev, 0, sizeof *ev);
    ck_assert_msg(tc_json_str(line, "type", ev->type, sizeof ev->type) &&
                      tc_json_u64(line, "revision", &ev->revision),
                  "watch %s: event without type or revision: %.300s", ws->target, line);
    if (strcmp(ev->type, "put") == 0 || strcmp(ev->type, "delete") == 0) {
        size_t klen = 0;
        uint8_t *key = tc_json_b64(line, "kv.key", &klen);
        ck_assert_msg(key != NULL && klen < sizeof ev->key, "watch %s: bad kv.key in %.300s",
                      ws->target, line);
        memcpy(ev->key, key, klen + 1);
        free(key);
        ck_assert_msg(tc_json_u64(line, "kv.mod_revision", &ev->mod_revision),
                      "watch %s: no kv.mod_revision in %.300s", ws->target, line);
        tc_json_u64(line, "kv.create_revision", &ev->create_revision);
        tc_json_u64(line, "kv.version", &ev->version);
        if (ev->type[0] == 'p') {
            ev->value = tc_json_b64(line, "kv.value", &ev->value_len);
            ck_assert_msg(ev->value != NULL, "watch %s: put without a base64 value: %.300s",
                          ws->target, line);
        }
    } else if (strcmp(ev->type, "cancelled") == 0) {
        ck_assert_msg(tc_json_str(line, "reason", ev->reason, sizeof ev->reason),
                      "watch %s: cancelled without a reason: %.300s", ws->target, line);
    } else {
        ck_assert_msg(strcmp(ev->type, "progress") == 0, "watch %s: unknown event: %.300s",
                      ws->target, line);
    }
}

/* The next event of @ws within @timeout_ms: 1 (in @ev, which must be
 * zeroed before the first call; its old value is freed), 0 when none came
 * in time, -1 when the stream is over: ws->ended (the last chunk came) or
 * ws->closed (the connection ended; a partial line is left in ws->body). */
static int ws_next_event(struct watch_stream *ws, int timeout_ms, struct ws_event *ev)
{
    int64_t deadline = tc_now_ms() + timeout_ms;

    for (;;) {
        struct bytes *b = &ws->body;
        int rv;

        if (b->p != NULL) {
            char *start = b->p + b->off;
            char *nl = memchr(start, '\n', b->len - b->off);
            if (nl != NULL) {
                *nl = '\0';
                b->off += (size_t)(nl - start) + 1;
                if (*start == '\0') {
                    continue;
                }
                parse_event(ws, start, ev);
                return 1;
            }
        }
        if (ws->ended || ws->closed) {
            return -1;
        }
        rv = ws_fill(ws, deadline);
        if (rv == 0) {
            return 0;
        }
        ws_decode(ws);
    }
}

/* --- the events of numbered writes ------------------------------------------------- */

/* Events of writes PREFIX<i> = "<i>", in stream order. */
struct seen {
    int n;
    int idx[MAX_WRITES];
    uint64_t rev[MAX_WRITES];
};

/* Record the put event @ev of write PREFIX<i> = "<i>"; anything else fails. */
static void seen_add(struct seen *s, const struct ws_event *ev, const char *prefix,
                     const char *what)
{
    size_t plen = strlen(prefix);
    char value[24], *end;
    long i;

    ck_assert_msg(strcmp(ev->type, "put") == 0, "%s: unexpected %s event (%s) at revision %llu",
                  what, ev->type, ev->reason, (unsigned long long)ev->revision);
    ck_assert_msg(strncmp(ev->key, prefix, plen) == 0, "%s: event for key %s", what, ev->key);
    i = strtol(ev->key + plen, &end, 10);
    ck_assert_msg(end != ev->key + plen && *end == '\0' && i >= 0 && i < MAX_WRITES,
                  "%s: event for key %s", what, ev->key);
    snprintf(value, sizeof value, "%ld", i);
    ck_assert_msg(ev->value_len == strlen(value) && memcmp(ev->value, value, ev->value_len) == 0,
                  "%s: event for %s has value '%.40s', written was '%s'", what, ev->key,
                  (const char *)ev->value, value);
    ck_assert_msg(ev->mod_revision == ev->revision,
                  "%s: event for %s at revision %llu has mod_revision %llu", what, ev->key,
                  (unsigned long long)ev->revision, (unsigned long long)ev->mod_revision);
    ck_assert_msg(s->n < MAX_WRITES, "%s: more than %d events (duplicates?)", what, MAX_WRITES);
    s->idx[s->n] = (int)i;
    s->rev[s->n] = ev->revision;
    s->n++;
}

/* Read the events of @ws into @s for about @ms milliseconds (0: what has
 * come). 0, or -1 when the stream is over. Progress events are skipped. */
static int pump(struct watch_stream *ws, struct seen *s, const char *prefix, int ms)
{
    int64_t deadline = tc_now_ms() + ms;
    struct ws_event ev;
    int rv;

    memset(&ev, 0, sizeof ev);
    for (;;) {
        int64_t left = deadline - tc_now_ms();
        rv = ws_next_event(ws, left > 0 ? (int)left : 0, &ev);
        if (rv <= 0) {
            break;
        }
        if (strcmp(ev.type, "progress") != 0) {
            seen_add(s, &ev, prefix, ws->target);
        }
    }
    free(ev.value);
    return rv < 0 ? -1 : 0;
}

/* Read @ws until @s holds an event at revision @rev or later, then for
 * 300 ms more (a duplicate after the end would show); fails after
 * @timeout_ms or when the stream ends. */
static void pump_until_rev(struct watch_stream *ws, struct seen *s, const char *prefix,
                           uint64_t rev, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    while (s->n == 0 || s->rev[s->n - 1] < rev) {
        ck_assert_msg(tc_now_ms() < deadline,
                      "watch %s: revision %llu not seen within %d ms (%d events, last %llu)",
                      ws->target, (unsigned long long)rev, timeout_ms, s->n,
                      (unsigned long long)(s->n ? s->rev[s->n - 1] : 0));
        ck_assert_msg(pump(ws, s, prefix, 50) == 0,
                      "watch %s ended (%s) before revision %llu (%d events, last %llu)", ws->target,
                      ws->ended ? "last chunk" : "connection closed", (unsigned long long)rev, s->n,
                      (unsigned long long)(s->n ? s->rev[s->n - 1] : 0));
    }
    ck_assert_msg(pump(ws, s, prefix, 300) == 0, "watch %s ended", ws->target);
}

/* Check @s against the writes 0..@n-1: every acknowledged write i (rev[i]
 * != 0) is in it exactly once with revision rev[i]; a write whose outcome
 * is unknown (unknown[i]) at most once; nothing else; events in increasing
 * order of revision (and of i: the writes were made one after another). */
static void check_stream(const struct seen *s, const uint64_t *rev, const bool *unknown, int n,
                         const char *what)
{
    bool got[MAX_WRITES] = {false};

    for (int k = 0; k < s->n; k++) {
        int i = s->idx[k];
        if (k > 0) {
            ck_assert_msg(s->rev[k] > s->rev[k - 1],
                          "%s: event %d (write %d) has revision %llu after %llu", what, k, i,
                          (unsigned long long)s->rev[k], (unsigned long long)s->rev[k - 1]);
            ck_assert_msg(i > s->idx[k - 1],
                          "%s: event %d is write %d after write %d (duplicate or reordered)", what,
                          k, i, s->idx[k - 1]);
        }
        ck_assert_msg(i < n && (rev[i] != 0 || unknown[i]),
                      "%s: event for write %d at revision %llu, which was never made", what, i,
                      (unsigned long long)s->rev[k]);
        ck_assert_msg(rev[i] == 0 || s->rev[k] == rev[i],
                      "%s: write %d was acknowledged at revision %llu, its event says %llu", what,
                      i, (unsigned long long)rev[i], (unsigned long long)s->rev[k]);
        got[i] = true;
    }
    for (int i = 0; i < n; i++) {
        ck_assert_msg(rev[i] == 0 || got[i],
                      "%s: acknowledged write %d (revision %llu) is missing from the stream (%d "
                      "events, revisions %llu..%llu)",
                      what, i, (unsigned long long)rev[i], s->n,
                      (unsigned long long)(s->n ? s->rev[0] : 0),
                      (unsigned long long)(s->n ? s->rev[s->n - 1] : 0));
    }
}

/* --- a writer thread ------------------------------------------------------------------ */

/* Writes PREFIX<i> = "<i>" for first <= i < last, one after another, each
 * under its own X-Ballast-Request-Id and retried through the next usable
 * member until it is answered. */
struct writer {
    struct tc_cluster *c;
    const char *prefix;
    int first, last;
    int pace_ms;                      /* pause after each write */
    bool use[TC_MAX_MEMBERS];         /* members it may write through */
    atomic_bool down[TC_MAX_MEMBERS]; /* set by the test around a kill */
    atomic_bool stop;
    atomic_bool finished;
    atomic_int acked; /* writes acknowledged by the thread */
    /* Read by the test after pthread_join() (rev[0..first) set before): */
    uint64_t rev[MAX_WRITES]; /* revision of acknowledged write i, else 0 */
    bool unknown[MAX_WRITES]; /* given up on: applied or not */
    int end;                  /* writes 0..end-1 were made */
    int retries, replays, unknowns;
    char last_retry[200];
    char error[256];
};

/* Write number @i: 1 with its revision in @rev, 0 when its outcome stays
 * unknown after WRITE_RETRY_MS, -1 on an answer that is an error. */
static int write_one(struct writer *w, int i, uint64_t *rev)
{
    char key[32], value[16], target[96], reqid[96];
    const char *const headers[] = {reqid, NULL};
    int64_t deadline = tc_now_ms() + WRITE_RETRY_MS;
    int n = w->c->n, m = i % n;

    snprintf(key, sizeof key, "%s%d", w->prefix, i);
    snprintf(value, sizeof value, "%d", i);
    snprintf(reqid, sizeof reqid, "X-Ballast-Request-Id: test-watch-%d-%s%d", (int)getpid(),
             w->prefix, i);
    tc_kv_target(target, sizeof target, key, strlen(key), NULL);
    for (;;) {
        struct tc_response r;
        int k = 0, rc;

        while (k < n && (!w->use[m] || atomic_load(&w->down[m]))) {
            m = (m + 1) % n;
            k++;
        }
        if (k == n) { /* every usable member is down for now */
            if (tc_now_ms() >= deadline) {
                return 0;
            }
            tc_sleep_ms(20);
            continue;
        }
        rc = tc_http_ex(tc_addr(w->c, m), WRITE_ATTEMPT_MS, "PUT", target, value, strlen(value),
                        headers, &r);
        if (rc == 0 && r.status == 200) {
            bool ok = tc_json_u64(r.body, "revision", rev) && *rev > 0;
            if (tc_header(&r, "X-Ballast-Replayed") != NULL) {
                w->replays++;
            }
            if (!ok) {
                snprintf(w->error, sizeof w->error, "PUT %s: 200 without a revision: %.150s", key,
                         r.body);
            }
            tc_response_free(&r);
            return ok ? 1 : -1;
        }
        if (rc == 0 && r.status >= 400 && r.status < 500) {
            snprintf(w->error, sizeof w->error, "PUT %s via %s: %d %.150s", key,
                     w->c->members[m].name, r.status, r.body);
            tc_response_free(&r);
            return -1;
        }
        /* no answer, 503 or 504: the next member, the same request id */
        w->retries++;
        snprintf(w->last_retry, sizeof w->last_retry, "PUT %s via %s: %d %.60s %.80s", key,
                 w->c->members[m].name, r.status, r.error, r.body ? r.body : "");
        tc_response_free(&r);
        m = (m + 1) % n;
        if (tc_now_ms() >= deadline) {
            return 0;
        }
        tc_sleep_ms(20);
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int64_t deadline = tc_now_ms() + WRITER_MAX_MS;
    int i;

    for (i = w->first; i < w->last && !atomic_load(&w->stop); i++) {
        uint64_t rev = 0;
        int rv;
        if (tc_now_ms() >= deadline) {
            snprintf(w->error, sizeof w->error, "only %d writes within %d ms", i - w->first,
                     WRITER_MAX_MS);
            break;
        }
        rv = write_one(w, i, &rev);
        if (rv < 0) {
            break;
        }
        if (rv == 0) {
            w->unknown[i] = true;
            w->unknowns++;
        } else {
            w->rev[i] = rev;
            atomic_fetch_add(&w->acked, 1);
        }
        if (w->pace_ms > 0) {
            tc_sleep_ms(w->pace_ms);
        }
    }
    w->end = i;
    atomic_store(&w->finished, true);
    return NULL;
}

static void writer_init(struct writer *w, struct tc_cluster *c, const char *prefix, int first,
                        int last)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->prefix = prefix;
    w->first = first;
    w->last = last;
    w->pace_ms = 10;
    for (int i = 0; i < TC_MAX_MEMBERS; i++) {
        w->use[i] = i < c->n;
        atomic_init(&w->down[i], false);
    }
    atomic_init(&w->stop, false);
    atomic_init(&w->finished, false);
    atomic_init(&w->acked, 0);
}

/* Wait until the writer has @count acknowledged writes, reading @ws (when
 * not NULL) into @s meanwhile; the watch must not end. */
static void wait_acked(struct writer *w, int count, struct watch_stream *ws, struct seen *s,
                       int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    while (atomic_load(&w->acked) < count) {
        ck_assert_msg(!atomic_load(&w->finished), "writer stopped after %d writes: %s",
                      atomic_load(&w->acked), w->error);
        ck_assert_msg(tc_now_ms() < deadline,
                      "writer: %d of %d writes within %d ms (%d retries, last: %s)",
                      atomic_load(&w->acked), count, timeout_ms, w->retries, w->last_retry);
        if (ws != NULL) {
            ck_assert_msg(pump(ws, s, w->prefix, 50) == 0, "watch %s ended (%s) after %d events",
                          ws->target, ws->ended ? "last chunk" : "connection closed", s->n);
        } else {
            tc_sleep_ms(20);
        }
    }
}

/* Wait for the writer to finish (reading @ws meanwhile) and join it. */
static void writer_join(struct writer *w, pthread_t th, struct watch_stream *ws, struct seen *s)
{
    int64_t deadline = tc_now_ms() + WRITER_MAX_MS + WRITE_RETRY_MS;
    while (!atomic_load(&w->finished)) {
        ck_assert_msg(tc_now_ms() < deadline, "writer thread did not finish");
        ck_assert_msg(pump(ws, s, w->prefix, 50) == 0, "watch %s ended after %d events", ws->target,
                      s->n);
    }
    pthread_join(th, NULL);
    ck_assert_msg(w->error[0] == '\0', "writer: %s", w->error);
}

static uint64_t max_rev(const struct writer *w)
{
    uint64_t m = 0;
    for (int i = 0; i < w->end; i++) {
        m = w->rev[i] > m ? w->rev[i] : m;
    }
    return m;
}

/* --- watch through a leader kill ------------------------------------------------------ */

START_TEST(test_watch_leader_kill)
{
    static struct writer w;
    static struct seen s;
    struct tc_cluster *c = tc_cluster_start(3);
    struct watch_stream ws;
    char target[96];
    pthread_t th;
    int leader, watched, next, at_kill;
    int64_t killed;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    watched = (leader + 1) % 3;
    writer_init(&w, c, "w/", 50, 300);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 50; i++) {
        char key[16], value[16];
        snprintf(key, sizeof key, "w/%d", i);
        snprintf(value, sizeof value, "%d", i);
        w.rev[i] = tc_put(c, i % 3, key, value, strlen(value));
    }
    snprintf(target, sizeof target, "/v1/watch/w%%2F?prefix&rev=%llu",
             (unsigned long long)w.rev[0]);
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, watched), target, 0), 200);
    ck_assert_msg(ws.chunked, "watch answer is not chunked: %s", ws.head);
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);

    wait_acked(&w, 100, &ws, &s, 20000);
    at_kill = atomic_load(&w.acked);
    atomic_store(&w.down[leader], true);
    tc_member_kill(c, leader, SIGKILL);
    killed = tc_now_ms();
    next = tc_wait_leader(c, START_TIMEOUT_MS);
    fprintf(stderr, "watch_leader_kill: killed %s after %d writes; %s leads after %lld ms%s\n",
            c->members[leader].name, at_kill, c->members[next].name,
            (long long)(tc_now_ms() - killed), next == watched ? " (the watched member)" : "");
    wait_acked(&w, at_kill + 30, &ws, &s, 20000);
    tc_member_restart(c, leader);
    tc_wait_ready(c, leader, START_TIMEOUT_MS);
    atomic_store(&w.down[leader], false);
    writer_join(&w, th, &ws, &s);
    ck_assert_int_eq(w.end, 300);
    ck_assert_msg(w.unknowns <= 2, "%d writes never answered (last retry: %s)", w.unknowns,
                  w.last_retry);

    pump_until_rev(&ws, &s, "w/", max_rev(&w), 15000);
    check_stream(&s, w.rev, w.unknown, w.end, "watch on the follower");
    fprintf(stderr,
            "watch_leader_kill: %d events, %d retries (%d replayed), %d unknown; last retry: "
            "%s\n",
            s.n, w.retries, w.replays, w.unknowns, w.last_retry);
    ws_close(&ws);
    tc_cluster_stop(c);
}
END_TEST

/* --- the watched member restarts -------------------------------------------------------- */

START_TEST(test_watch_member_restart)
{
    static struct writer w;
    static struct seen s;
    struct tc_cluster *c = tc_cluster_start(3);
    struct watch_stream ws;
    char target[96];
    pthread_t th;
    int leader, watched, at_kill, before, at_reconnect;
    uint64_t last;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    watched = (leader + 1) % 3;
    writer_init(&w, c, "r/", 20, MAX_WRITES);
    w.use[watched] = false;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 20; i++) {
        char key[16], value[16];
        snprintf(key, sizeof key, "r/%d", i);
        snprintf(value, sizeof value, "%d", i);
        w.rev[i] = tc_put(c, leader, key, value, strlen(value));
    }
    snprintf(target, sizeof target, "/v1/watch/r%%2F?prefix&rev=%llu",
             (unsigned long long)w.rev[0]);
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, watched), target, 0), 200);
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);

    /* some history and some live events, then the watched member dies */
    wait_acked(&w, 40, &ws, &s, 20000);
    at_kill = atomic_load(&w.acked);
    tc_member_kill(c, watched, SIGKILL);
    {
        int64_t deadline = tc_now_ms() + 5000;
        while (pump(&ws, &s, "r/", 50) == 0) {
            ck_assert_msg(tc_now_ms() < deadline,
                          "watch %s still open 5 s after its member was killed", ws.target);
        }
    }
    ck_assert_msg(!ws.ended, "watch ended with the last chunk, not a broken connection");
    ws_close(&ws);
    before = s.n;
    ck_assert_msg(before >= 20, "only %d events before the kill", before);
    last = s.rev[before - 1];

    /* writes go on while it is down; then it comes back */
    wait_acked(&w, at_kill + 20, NULL, NULL, 20000);
    tc_member_restart(c, watched);
    tc_wait_ready(c, watched, START_TIMEOUT_MS);
    snprintf(target, sizeof target, "/v1/watch/r%%2F?prefix&rev=%llu",
             (unsigned long long)last + 1);
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, watched), target, 0), 200);
    at_reconnect = atomic_load(&w.acked);
    wait_acked(&w, at_reconnect + 30, &ws, &s, 20000);
    atomic_store(&w.stop, true);
    writer_join(&w, th, &ws, &s);
    ck_assert_msg(w.unknowns == 0, "%d writes never answered (last retry: %s)", w.unknowns,
                  w.last_retry);

    pump_until_rev(&ws, &s, "r/", max_rev(&w), 15000);
    ck_assert_msg(s.n > before, "no events after the reconnect");
    check_stream(&s, w.rev, w.unknown, w.end, "watch across the restart");
    fprintf(stderr,
            "watch_member_restart: %d writes, %d events before the kill (last revision %llu), "
            "%d after; %d retries\n",
            w.end, before, (unsigned long long)last, s.n - before, w.retries);
    ws_close(&ws);
    tc_cluster_stop(c);
}
END_TEST

/* --- compacted history and a slow watcher ------------------------------------------------ */

/* Value number @i of the slow watcher's writes: "NNNNNN" then a letter. */
static void slow_value(int i, char *out)
{
    char tag[16];
    int n = snprintf(tag, sizeof tag, "%06d", i);
    memset(out, 'a' + i % 26, SLOW_VALUE);
    memcpy(out, tag, (size_t)n);
}

/* Check a put event of the slow watcher's write @i at revision @rev. */
static void check_slow_event(const struct ws_event *ev, int i, uint64_t rev, char *expect)
{
    char key[16];
    snprintf(key, sizeof key, "s/%d", i);
    slow_value(i, expect);
    ck_assert_msg(strcmp(ev->type, "put") == 0 && strcmp(ev->key, key) == 0 && ev->revision == rev,
                  "slow watch: expected the put of %s at revision %llu, got %s %s at %llu (%s)",
                  key, (unsigned long long)rev, ev->type, ev->key, (unsigned long long)ev->revision,
                  ev->reason);
    ck_assert_msg(ev->value_len == SLOW_VALUE && memcmp(ev->value, expect, SLOW_VALUE) == 0,
                  "slow watch: value of %s differs (%zu bytes)", key, ev->value_len);
}

START_TEST(test_watch_compacted_and_slow)
{
    static const char *const extra[] = {"--history-revisions", "500", "--watch-max-lag", "50",
                                        NULL};
    static uint64_t krev[K_WRITES], srev[SLOW_WRITES];
    struct tc_cluster *c = tc_cluster_start_args(3, extra);
    struct watch_stream ws;
    struct ws_event ev;
    struct tc_response r;
    char target[96], code[32], *value;
    uint64_t compact = 0, compact2 = 0, next;
    int leader, follower, k, got, rv;
    int64_t t0, took;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    follower = (leader + 1) % 3;
    memset(&ev, 0, sizeof ev);

    /* (a) a watch below the kept history is 410 with the oldest kept revision */
    for (int i = 0; i < K_WRITES; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        krev[i] = tc_put(c, leader, "k", v, strlen(v));
    }
    tc_wait_applied(c, follower, krev[K_WRITES - 1], 10000);
    ck_assert_int_eq(tc_http(tc_addr(c, follower), "GET", "/v1/watch/k?rev=1", NULL, 0, NULL, &r),
                     0);
    ck_assert_msg(r.status == 410, "watch from revision 1 after %d writes: %d %.200s", K_WRITES,
                  r.status, r.body);
    ck_assert_msg(tc_json_str(r.body, "error.code", code, sizeof code) &&
                      strcmp(code, "compacted") == 0 &&
                      tc_json_u64(r.body, "error.compact_revision", &compact),
                  "410 body: %.300s", r.body);
    tc_response_free(&r);
    ck_assert_msg(compact > 1 && compact + HISTORY - 1 <= krev[K_WRITES - 1],
                  "compact_revision %llu: want > 1 and at least HISTORY revisions kept up to %llu",
                  (unsigned long long)compact, (unsigned long long)krev[K_WRITES - 1]);
    ck_assert_msg(compact >= krev[0], "compact_revision %llu before the first write %llu",
                  (unsigned long long)compact, (unsigned long long)krev[0]);
    fprintf(stderr, "watch_compacted_and_slow: compact_revision %llu at revision %llu\n",
            (unsigned long long)compact, (unsigned long long)krev[K_WRITES - 1]);
    /* the boundary: one below is compacted too, with the same answer */
    snprintf(target, sizeof target, "/v1/watch/k?rev=%llu", (unsigned long long)compact - 1);
    ck_assert_int_eq(tc_http(tc_addr(c, follower), "GET", target, NULL, 0, NULL, &r), 0);
    ck_assert_msg(r.status == 410 && tc_json_u64(r.body, "error.compact_revision", &compact2) &&
                      compact2 == compact,
                  "watch from %llu: %d %.200s", (unsigned long long)compact - 1, r.status, r.body);
    tc_response_free(&r);
    /* from compact_revision: the kept history of k, exactly */
    snprintf(target, sizeof target, "/v1/watch/k?rev=%llu", (unsigned long long)compact);
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, follower), target, 0), 200);
    ck_assert_msg(ws.chunked && head_has(ws.head, "Content-Type", "ndjson"),
                  "watch from compact_revision: not a chunked NDJSON stream: %s", ws.head);
    k = 0;
    while (krev[k] < compact) {
        k++;
    }
    for (; k < K_WRITES; k++) {
        char v[16];
        rv = ws_next_event(&ws, 10000, &ev);
        ck_assert_msg(rv == 1, "watch from %llu: no event for write %d (revision %llu): %d",
                      (unsigned long long)compact, k, (unsigned long long)krev[k], rv);
        snprintf(v, sizeof v, "v%d", k);
        ck_assert_msg(strcmp(ev.type, "put") == 0 && strcmp(ev.key, "k") == 0 &&
                          ev.revision == krev[k] && ev.value_len == strlen(v) &&
                          memcmp(ev.value, v, ev.value_len) == 0,
                      "watch from %llu: expected put k=%s at %llu, got %s %s=%.20s at %llu",
                      (unsigned long long)compact, v, (unsigned long long)krev[k], ev.type, ev.key,
                      ev.value ? (const char *)ev.value : "", (unsigned long long)ev.revision);
        ck_assert_msg(ev.version == (uint64_t)k + 1 && ev.create_revision == krev[0],
                      "k at %llu: version %llu, create_revision %llu (want %d, %llu)",
                      (unsigned long long)ev.revision, (unsigned long long)ev.version,
                      (unsigned long long)ev.create_revision, k + 1, (unsigned long long)krev[0]);
    }
    rv = ws_next_event(&ws, 300, &ev);
    ck_assert_msg(rv == 0, "watch from %llu: more after the last write: %d %s at %llu",
                  (unsigned long long)compact, rv, ev.type, (unsigned long long)ev.revision);
    ws_close(&ws);

    /* (b) a watcher that never reads is cut off; writers do not wait for it */
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, leader), "/v1/watch/s%2F?prefix", 4096), 200);
    value = malloc(SLOW_VALUE);
    ck_assert_ptr_nonnull(value);
    t0 = tc_now_ms();
    for (int i = 0; i < SLOW_WRITES; i++) {
        char key[16];
        snprintf(key, sizeof key, "s/%d", i);
        slow_value(i, value);
        srev[i] = tc_put(c, leader, key, value, SLOW_VALUE);
    }
    took = tc_now_ms() - t0;
    fprintf(stderr, "watch_compacted_and_slow: %d writes of %d bytes took %lld ms\n", SLOW_WRITES,
            SLOW_VALUE, (long long)took);
    for (int i = 1; i < SLOW_WRITES; i++) {
        ck_assert_msg(srev[i] == srev[i - 1] + 1, "s/%d at %llu after s/%d at %llu", i,
                      (unsigned long long)srev[i], i - 1, (unsigned long long)srev[i - 1]);
    }
    tc_sleep_ms(500); /* the server decides on its own (it polls blocked watchers) */
    got = 0;
    for (;;) {
        rv = ws_next_event(&ws, 10000, &ev);
        ck_assert_msg(rv == 1, "slow watch: stream %s after %d events, without a cancelled event",
                      rv == 0 ? "stalled" : "ended", got);
        if (strcmp(ev.type, "cancelled") == 0) {
            break;
        }
        ck_assert_msg(got < SLOW_WRITES, "slow watch: more events than writes");
        check_slow_event(&ev, got, srev[got], value);
        got++;
    }
    next = ev.revision;
    fprintf(stderr,
            "watch_compacted_and_slow: slow watcher got %d events, then cancelled (%s) at "
            "%llu\n",
            got, ev.reason, (unsigned long long)next);
    ck_assert_str_eq(ev.reason, "slow");
    ck_assert_msg(got < SLOW_WRITES, "slow watch: cancelled after every write was delivered");
    /* What the server held for it (its unsent output, at most ~1 MiB, and
     * the kernel send buffer, capped at 2 x 128 KiB) plus this socket's
     * small receive buffer: everything it got before the cut-off fits in
     * that (values are base64 on the wire), give or take two events. */
    {
        size_t wire = (size_t)SLOW_VALUE * 4 / 3;
        ck_assert_msg((size_t)got * wire <= (size_t)(1024 + 256 + 64) * 1024 + 2 * wire,
                      "slow watch: %d events (%zu bytes) were buffered for a watcher that never "
                      "read",
                      got, (size_t)got * wire);
    }
    ck_assert_msg(next == srev[got],
                  "slow watch: cancelled at revision %llu, but the first write not delivered "
                  "is at %llu",
                  (unsigned long long)next, (unsigned long long)srev[got]);
    rv = ws_next_event(&ws, 5000, &ev);
    ck_assert_msg(rv == -1 && ws.ended,
                  "slow watch: after the cancelled event: %d (%s), ended=%d closed=%d", rv,
                  rv == 1 ? ev.type : "-", ws.ended, ws.closed);
    ws_close(&ws);
    /* the rest, from NEXT */
    snprintf(target, sizeof target, "/v1/watch/s%%2F?prefix&rev=%llu", (unsigned long long)next);
    ck_assert_int_eq(ws_open(&ws, tc_addr(c, leader), target, 0), 200);
    for (int i = got; i < SLOW_WRITES; i++) {
        rv = ws_next_event(&ws, 10000, &ev);
        ck_assert_msg(rv == 1, "watch from NEXT %llu: no event for s/%d: %d",
                      (unsigned long long)next, i, rv);
        check_slow_event(&ev, i, srev[i], value);
    }
    rv = ws_next_event(&ws, 300, &ev);
    ck_assert_msg(rv == 0, "watch from NEXT: more after the last write: %d %s", rv, ev.type);
    ws_close(&ws);
    free(ev.value);
    free(value);
    tc_cluster_stop(c);
}
END_TEST

/* --- long-poll on a follower ------------------------------------------------------------ */

/* Send GET @target to @addr on @conn without reading the answer. */
static void poll_send(struct tc_conn *conn, const char *addr, const char *target)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     target, addr);
    ck_assert_msg(tc_conn_open(conn, addr, 25000) == 0, "poll %s: %s", target, conn->error);
    ck_assert_msg(tc_conn_send(conn, req, (size_t)n) == 0, "poll %s: %s", target, conn->error);
}

/* Whether anything (an answer, a close) came on @conn. */
static bool answered(const struct tc_conn *conn)
{
    struct pollfd p = {conn->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* Read the answer of a poll on @conn; the time since @since into @took. */
static void poll_read(struct tc_conn *conn, struct tc_response *r, int64_t since, int64_t *took)
{
    ck_assert_msg(tc_conn_read_response(conn, false, r) == 0, "poll on %s: %s", conn->addr,
                  r->error);
    *took = tc_now_ms() - since;
    tc_conn_close(conn);
}

START_TEST(test_long_poll_follower)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_conn conn;
    struct tc_response r;
    char target[96], key[32];
    uint64_t r1, r2, rev, mod = 0, count = 0, ra, rb;
    uint8_t *v;
    size_t vlen = 0;
    int leader, follower, other;
    int64_t t0, took;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    follower = (leader + 1) % 3;
    other = (leader + 2) % 3;

    /* a change through another member wakes a poll on the follower */
    r1 = tc_put(c, leader, "lp", "v1", 2);
    tc_wait_applied(c, follower, r1, 10000);
    snprintf(target, sizeof target, "/v1/kv/lp?index=%llu&wait=20s", (unsigned long long)r1);
    poll_send(&conn, tc_addr(c, follower), target);
    tc_sleep_ms(300);
    ck_assert_msg(!answered(&conn), "a poll of lp at index %llu answered before lp changed",
                  (unsigned long long)r1);
    tc_put(c, leader, "lp2", "x", 1); /* another key, with lp as a prefix */
    tc_sleep_ms(500);
    ck_assert_msg(!answered(&conn), "a put of lp2 woke a poll of lp");
    t0 = tc_now_ms();
    r2 = tc_put(c, other, "lp", "v2", 2);
    poll_read(&conn, &r, t0, &took);
    ck_assert_msg(r.status == 200, "poll: %d %.200s", r.status, r.body);
    v = tc_json_b64(r.body, "value", &vlen);
    ck_assert_msg(v != NULL && vlen == 2 && memcmp(v, "v2", 2) == 0 &&
                      tc_json_u64(r.body, "mod_revision", &mod) && mod == r2,
                  "poll answered %.200s; the put of v2 was at %llu", r.body,
                  (unsigned long long)r2);
    free(v);
    rev = tc_header_u64(&r, "X-Ballast-Revision");
    ck_assert_msg(rev >= r2, "X-Ballast-Revision %llu < %llu", (unsigned long long)rev,
                  (unsigned long long)r2);
    ck_assert_msg(took < 5000, "the poll answered %lld ms after the change", (long long)took);
    fprintf(stderr, "long_poll_follower: woken %lld ms after the put returned\n", (long long)took);
    tc_response_free(&r);

    /* no change: the answer comes after `wait`, once (not a second wait on the leader) */
    snprintf(target, sizeof target, "/v1/kv/lp?index=%llu&wait=1s", (unsigned long long)rev);
    t0 = tc_now_ms();
    ck_assert_int_eq(tc_http_ex(tc_addr(c, follower), 10000, "GET", target, NULL, 0, NULL, &r), 0);
    took = tc_now_ms() - t0;
    v = tc_json_b64(r.body, "value", &vlen);
    ck_assert_msg(r.status == 200 && v != NULL && vlen == 2 && memcmp(v, "v2", 2) == 0,
                  "poll with wait=1s: %d %.200s", r.status, r.body);
    free(v);
    tc_response_free(&r);
    fprintf(stderr, "long_poll_follower: wait=1s answered after %lld ms\n", (long long)took);
    ck_assert_msg(took >= 900, "wait=1s answered after %lld ms, before the wait passed",
                  (long long)took);
    ck_assert_msg(took < 1900,
                  "wait=1s on a follower answered after %lld ms: the wait was served twice "
                  "(the follower's read through the leader waited again?)",
                  (long long)took);

    /* a prefix poll wakes on a key under the prefix, only */
    ra = tc_put(c, leader, "lpp/a", "a", 1);
    tc_wait_applied(c, follower, ra, 10000);
    snprintf(target, sizeof target, "/v1/kv/lpp%%2F?prefix&index=%llu&wait=20s",
             (unsigned long long)ra);
    poll_send(&conn, tc_addr(c, follower), target);
    tc_sleep_ms(300);
    ck_assert_msg(!answered(&conn), "a prefix poll answered before anything changed");
    tc_put(c, leader, "lpp", "x", 1); /* the prefix without its slash: outside */
    tc_put(c, leader, "lpq/a", "x", 1);
    tc_sleep_ms(500);
    ck_assert_msg(!answered(&conn), "a put outside lpp/ woke a prefix poll of lpp/");
    t0 = tc_now_ms();
    rb = tc_put(c, other, "lpp/b", "b", 1);
    poll_read(&conn, &r, t0, &took);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "count", &count) && count == 2,
                  "prefix poll: %d %.300s", r.status, r.body);
    v = tc_json_b64(r.body, "kvs.1.key", &vlen);
    ck_assert_msg(v != NULL && vlen < sizeof key, "prefix poll: %.300s", r.body);
    memcpy(key, v, vlen + 1);
    free(v);
    ck_assert_str_eq(key, "lpp/b");
    rev = tc_header_u64(&r, "X-Ballast-Revision");
    ck_assert_msg(rev >= rb, "prefix poll: X-Ballast-Revision %llu < %llu", (unsigned long long)rev,
                  (unsigned long long)rb);
    ck_assert_msg(took < 5000, "the prefix poll answered %lld ms after the change",
                  (long long)took);
    tc_response_free(&r);
    tc_cluster_stop(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("watch");
    const struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"watch_leader_kill", test_watch_leader_kill},
        {"watch_member_restart", test_watch_member_restart},
        {"watch_compacted_and_slow", test_watch_compacted_and_slow},
        {"long_poll_follower", test_long_poll_follower},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_add_case(s, cases[i].name, cases[i].fn, 90);
    }
    return s;
}

int main(void)
{
    return tc_main("test-watch", suite);
}
