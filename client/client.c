/* libballast: blocking HTTP/1.1 + msgpack client with endpoint failover.
 *
 * The happy path of a call: build the target (key percent-encoded into the
 * path, options into the query), reuse the keep-alive connection to the
 * current endpoint (or connect: getaddrinfo, non-blocking connect bounded by
 * poll), send head and body in one sendmsg, read the response head into the
 * connection's 64 KiB buffer, parse it in place (status line, Content-Length
 * or chunked, Connection, Retry-After, Content-Type), read the body (at most
 * 64 MiB, checked before allocating), check the msgpack structure without
 * allocating, unpack it with msgpack-c and copy the fields into the caller's
 * structs, which are allocated in as few blocks as possible.
 *
 * The failure modes, and what the call loop (do_call) does with each:
 *   - connect fails: nothing was sent; next endpoint, no wait during the
 *     first pass over the endpoints, backoff after;
 *   - the kept-alive connection turns out to have been closed by the server
 *     (seen before sending, or EOF before any byte of the answer): reconnect
 *     to the same endpoint once, not counted as an attempt;
 *   - the connection breaks or times out after sending, or the server
 *     answers 504: the request may have been executed; retried for reads,
 *     and for writes unless no_retry_unsent_writes (cas writes always),
 *     which is safe because every write carries one request id for all its
 *     attempts;
 *   - the server answers 503: not executed; like a failed connect, the next
 *     endpoint at once (another member may already know the new leader),
 *     and only after a whole pass of endpoints that refused or answered 503
 *     a backoff of at least Retry-After (capped at backoff_max_ms);
 *   - an unparseable answer or out of memory: fail at once.
 * Attempts are bounded by max_attempts, each by attempt_timeout_ms, and the
 * whole call by request_timeout_ms. When the last attempt got a 503 or 504,
 * that answer is what the caller sees (its error body gives the message).
 * Every error leaves a message in c->errmsg saying what failed and where.
 *
 * Two calls wait longer for their answer: a promote (the server answers
 * once the learner caught up) and a snapshot (the server builds the backup
 * before its first byte): their attempt may take the whole call deadline
 * (long_head). A snapshot body is not held in memory: a 2xx body of a
 * request with a sink is streamed into the caller's file through the
 * connection buffer, has no size cap, and is bounded by inactivity
 * (attempt_timeout_ms without a byte) rather than by the deadline. The
 * call loop also remembers whether an earlier attempt may have been
 * executed (after_maybe), which is how a member remove tells "already
 * removed by my lost first attempt" from "no such member".
 *
 * Two more kinds of request: a long-poll read (extra_ms) has its attempt
 * and call deadlines extended by the wait it asked the server for; a
 * stream (a watch) gets its 2xx body left on the connection, which the
 * caller then owns (watch.c). txn.c, lease.c and watch.c build on the call
 * loop and the decoders here through client_int.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/random.h>
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define LONG_POLL_DEFAULT_MS 300000 /* the server's wait when a long-poll names none */

/* What an attempt came to; see the file comment. */
enum outcome {
    OUT_DONE,   /* a complete response is in the resp */
    OUT_UNSENT, /* failed before anything was sent */
    OUT_STALE,  /* a reused connection was closed under us, nothing received */
    OUT_MAYBE,  /* failed after the request may have been sent */
    OUT_FATAL,  /* do not retry */
};

/* --- errors ------------------------------------------------------------- */

static const char *const ERR_TEXT[] = {
    [0] = "success",
    [1] = "invalid argument",
    [2] = "not found",
    [3] = "compare failed",
    [4] = "too large",
    [5] = "no leader",
    [6] = "timed out, outcome unknown",
    [7] = "no endpoint reachable",
    [8] = "no space left on the server",
    [9] = "server error",
    [10] = "unparseable reply",
    [11] = "out of memory",
    [12] = "unauthorized",
    [13] = "forbidden",
    [14] = "local file error",
    [15] = "revision compacted",
    [16] = "watch cancelled",
    [17] = "no event yet",
};

const char *ballast_strerror(int code)
{
    if (code > 0 || code < BALLAST_EAGAIN) {
        return "unknown error";
    }
    return ERR_TEXT[-code];
}

int blc_set_err(struct ballast_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

const char *ballast_errmsg(const struct ballast_client *c)
{
    return c ? c->errmsg : "no client";
}

int64_t ballast_compact_revision(const struct ballast_client *c)
{
    return c ? c->compact_revision : 0;
}

/* The error for a server error code string. */
static int code_to_err(const char *code)
{
    static const struct {
        const char *name;
        int err;
    } map[] = {
        {"bad_request", BALLAST_EBADARG},   {"not_found", BALLAST_ENOTFOUND},
        {"cas_failed", BALLAST_ECASFAILED}, {"too_large", BALLAST_ETOOLARGE},
        {"no_leader", BALLAST_ENOLEADER},   {"timeout", BALLAST_ETIMEOUT},
        {"no_space", BALLAST_ENOSPACE},     {"unauthorized", BALLAST_EUNAUTHORIZED},
        {"forbidden", BALLAST_EFORBIDDEN},  {"internal", BALLAST_ESERVER},
        {"compacted", BALLAST_ECOMPACTED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(code, map[i].name) == 0) {
            return map[i].err;
        }
    }
    return BALLAST_ESERVER;
}

/* The error for an HTTP status when the body names no code. */
static int status_to_err(int status)
{
    switch (status) {
    case 400:
    case 405:
        return BALLAST_EBADARG;
    case 401:
        return BALLAST_EUNAUTHORIZED;
    case 403:
        return BALLAST_EFORBIDDEN;
    case 404:
        return BALLAST_ENOTFOUND;
    case 412:
        return BALLAST_ECASFAILED;
    case 410:
        return BALLAST_ECOMPACTED;
    case 413:
        return BALLAST_ETOOLARGE;
    case 503:
        return BALLAST_ENOLEADER;
    case 504:
        return BALLAST_ETIMEOUT;
    case 507:
        return BALLAST_ENOSPACE;
    default:
        return BALLAST_ESERVER;
    }
}

/* --- small helpers ------------------------------------------------------ */

int64_t blc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void blc_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fill @b with @n bytes from the kernel's random source; -1 when none. */
static int fill_random(unsigned char *b, size_t n)
{
#ifdef __linux__
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        got += (size_t)r;
    }
    if (got == n) {
        return 0;
    }
#endif
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, b + done, n - done);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        done += (size_t)r;
    }
    close(fd);
    return done == n ? 0 : -1;
}

void blc_make_request_id(struct ballast_client *c, char id[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (fill_random(b, sizeof b) != 0) {
        uint64_t x = splitmix64(&c->rng), y = splitmix64(&c->rng);
        for (int i = 0; i < 8; i++) {
            b[i] = (unsigned char)(x >> (8 * i));
            b[8 + i] = (unsigned char)(y >> (8 * i));
        }
    }
    for (int i = 0; i < 16; i++) {
        id[2 * i] = hex[b[i] >> 4];
        id[2 * i + 1] = hex[b[i] & 15];
    }
    id[32] = '\0';
}

void ballast_new_request_id(struct ballast_client *c, char id[BALLAST_REQUEST_ID_SIZE])
{
    if (c && id) {
        blc_make_request_id(c, id);
    }
}

int blc_check_request_id(struct ballast_client *c, const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > REQUEST_ID_MAX) {
        return blc_set_err(c, BALLAST_EBADARG, "request id of %zu bytes (want 1..%d)", n,
                           REQUEST_ID_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (id[i] <= ' ' || id[i] >= 0x7f) {
            return blc_set_err(c, BALLAST_EBADARG,
                               "request id holds a byte that is not visible ASCII");
        }
    }
    return 0;
}

void blc_sb_add(struct sbuf *s, const char *d, size_t n)
{
    if (s->oom) {
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 128;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, d, n);
    s->len += n;
    s->p[s->len] = '\0';
}

void blc_sb_str(struct sbuf *s, const char *str)
{
    blc_sb_add(s, str, strlen(str));
}

void blc_sb_escape(struct sbuf *s, const void *data, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            blc_sb_add(s, (const char *)&p[i], 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            blc_sb_add(s, e, 3);
        }
    }
}

/* Append a query parameter "name" or "name=value" (value already encoded). */
void blc_sb_query(struct sbuf *s, const char *name, const char *value)
{
    blc_sb_str(s, strchr(s->p ? s->p : "", '?') ? "&" : "?");
    blc_sb_str(s, name);
    if (value) {
        blc_sb_str(s, "=");
        blc_sb_str(s, value);
    }
}

void blc_sb_query_i64(struct sbuf *s, const char *name, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    blc_sb_query(s, name, num);
}

void blc_sb_query_ms(struct sbuf *s, const char *name, unsigned ms)
{
    char num[24];
    if (ms % 1000 == 0) {
        snprintf(num, sizeof num, "%us", ms / 1000);
    } else {
        snprintf(num, sizeof num, "%ums", ms);
    }
    blc_sb_query(s, name, num);
}

char *ballast_escape(const void *key, size_t len)
{
    struct sbuf s = {0};
    blc_sb_add(&s, "", 0);
    blc_sb_escape(&s, key, len);
    if (s.oom) {
        free(s.p);
        return NULL;
    }
    return s.p;
}

void ballast_free(void *p)
{
    free(p);
}

/* --- endpoints ---------------------------------------------------------- */

static void endpoint_clear(struct endpoint *ep)
{
    free(ep->host);
    free(ep->port);
    free(ep->name);
    memset(ep, 0, sizeof *ep);
}

/* Parse one endpoint of @n bytes at @s into @ep. Returns 0, or
 * BALLAST_EBADARG / BALLAST_ENOMEM with a reason in @why. */
static int endpoint_parse(const char *s, size_t n, struct endpoint *ep, char *why, size_t whylen)
{
    memset(ep, 0, sizeof *ep);
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    const char *full = s;
    size_t full_n = n;
    if (n >= 7 && strncasecmp(s, "http://", 7) == 0) {
        s += 7;
        n -= 7;
    } else if (n >= 8 && strncasecmp(s, "https://", 8) == 0) {
        snprintf(why, whylen, "endpoint \"%.*s\": https is not supported", (int)full_n, full);
        return BALLAST_EBADARG;
    }
    const char *slash = memchr(s, '/', n);
    if (slash) {
        n = (size_t)(slash - s); /* "host:port/" or a path: ignore it */
    }
    const char *host = s, *port = NULL;
    size_t host_n = n, port_n = 0;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb) {
            goto bad;
        }
        host = s + 1;
        host_n = (size_t)(rb - host);
        size_t rest = n - (size_t)(rb + 1 - s);
        if (rest > 0) {
            if (rb[1] != ':') {
                goto bad;
            }
            port = rb + 2;
            port_n = rest - 1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon && !memchr(colon + 1, ':', n - (size_t)(colon + 1 - s))) {
            host_n = (size_t)(colon - s);
            port = colon + 1;
            port_n = n - host_n - 1;
        } /* else: no port, or a bare IPv6 address */
    }
    if (host_n == 0 || host_n > 255 || memchr(host, '%', host_n) || memchr(host, ' ', host_n)) {
        goto bad;
    }
    if (port) {
        unsigned long v = 0;
        if (port_n == 0 || port_n > 5) {
            goto bad;
        }
        for (size_t i = 0; i < port_n; i++) {
            if (port[i] < '0' || port[i] > '9') {
                goto bad;
            }
            v = v * 10 + (unsigned long)(port[i] - '0');
        }
        if (v == 0 || v > 65535) {
            goto bad;
        }
    } else {
        port = DEFAULT_PORT;
        port_n = strlen(DEFAULT_PORT);
    }
    ep->host = strndup(host, host_n);
    ep->port = strndup(port, port_n);
    size_t name_n = host_n + port_n + 4;
    ep->name = malloc(name_n);
    if (!ep->host || !ep->port || !ep->name) {
        endpoint_clear(ep);
        snprintf(why, whylen, "out of memory");
        return BALLAST_ENOMEM;
    }
    int v6 = memchr(host, ':', host_n) != NULL;
    snprintf(ep->name, name_n, "%s%s%s:%s", v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port);
    return 0;
bad:
    snprintf(why, whylen, "malformed endpoint \"%.*s\" (want HOST:PORT)", (int)full_n, full);
    return BALLAST_EBADARG;
}

size_t ballast_endpoint_count(const struct ballast_client *c)
{
    return c ? c->n_eps : 0;
}

const char *ballast_endpoint_at(const struct ballast_client *c, size_t i)
{
    return c && i < c->n_eps ? c->eps[i].name : NULL;
}

const char *ballast_current_endpoint(const struct ballast_client *c)
{
    return c ? c->eps[c->cur].name : NULL;
}

/* --- connections -------------------------------------------------------- */

void blc_conn_close(struct conn *cn)
{
    if (cn->fd >= 0) {
        close(cn->fd);
    }
    cn->fd = -1;
    cn->off = cn->len = 0;
}

/* Wait until @fd is ready for @events or @deadline passes.
 * Returns 1 ready, 0 timed out, -1 poll failed (errno). */
int blc_io_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - blc_now_ms();
        if (left <= 0) {
            return 0;
        }
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0) {
            return 1;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
    }
}

/* Whether an idle kept-alive connection is still usable: nothing to read
 * (neither EOF nor stray bytes) and nothing left in the buffer. */
static int conn_idle_ok(const struct conn *cn)
{
    if (cn->off != cn->len) {
        return 0;
    }
    struct pollfd p = {cn->fd, POLLIN, 0};
    int r = poll(&p, 1, 0);
    return r == 0;
}

/* Connect @cn to @ep before @deadline, trying each address in turn. */
static int conn_open(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                     int64_t deadline)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (gai != 0) {
        return blc_set_err(c, BALLAST_EUNAVAILABLE, "resolve %s: %s", ep->name,
                           gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    }
    int rv = blc_set_err(c, BALLAST_EUNAVAILABLE, "connect %s: no address", ep->name);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rv = blc_set_err(c, BALLAST_EUNAVAILABLE, "connect %s: socket: %s", ep->name,
                             strerror(errno));
            continue;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            rv = blc_set_err(c, BALLAST_EUNAVAILABLE, "connect %s: fcntl: %s", ep->name,
                             strerror(errno));
            close(fd);
            continue;
        }
#ifdef SO_NOSIGPIPE
        int one_ = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one_, sizeof one_);
#endif
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS || err == EINTR) {
                int w = blc_io_wait(fd, POLLOUT, deadline);
                socklen_t elen = sizeof err;
                if (w == 0) {
                    err = ETIMEDOUT;
                } else if (w < 0) {
                    err = errno;
                } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) {
                    err = errno;
                }
            }
        }
        if (err != 0) {
            rv = blc_set_err(c, BALLAST_EUNAVAILABLE, "connect %s: %s", ep->name,
                             err == ETIMEDOUT ? "timed out" : strerror(err));
            close(fd);
            if (blc_now_ms() >= deadline) {
                break;
            }
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cn->fd = fd;
        cn->off = cn->len = 0;
        rv = 0;
        break;
    }
    freeaddrinfo(res);
    return rv;
}

/* Send the whole of @iov (@n entries, modified) before @deadline. */
static int conn_send(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                     struct iovec *iov, int n, int64_t deadline)
{
    while (n > 0) {
        if (iov[0].iov_len == 0) {
            iov++;
            n--;
            continue;
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(cn->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = blc_io_wait(cn->fd, POLLOUT, deadline);
                if (r == 0) {
                    return blc_set_err(c, BALLAST_ETIMEOUT, "%s: timed out sending the request",
                                       ep->name);
                }
                if (r > 0) {
                    continue;
                }
            }
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: send: %s", ep->name, strerror(errno));
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= iov[0].iov_len) {
            done -= iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + done;
            iov[0].iov_len -= done;
        }
    }
    return 0;
}

/* Receive at most @cap bytes into @dst before @deadline; *@got > 0 on
 * success. EOF, reset and timeout are errors (@what says during what). */
static int conn_recv(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                     char *dst, size_t cap, int64_t deadline, size_t *got, const char *what)
{
    for (;;) {
        ssize_t r = recv(cn->fd, dst, cap, 0);
        if (r > 0) {
            *got = (size_t)r;
            return 0;
        }
        if (r == 0) {
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: connection closed %s", ep->name, what);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: recv %s: %s", ep->name, what,
                               strerror(errno));
        }
        int w = blc_io_wait(cn->fd, POLLIN, deadline);
        if (w == 0) {
            return blc_set_err(c, BALLAST_ETIMEOUT, "%s: timed out %s", ep->name, what);
        }
        if (w < 0) {
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: poll: %s", ep->name, strerror(errno));
        }
    }
}

/* Read more input into the connection buffer (compacting it first). */
static int conn_fill(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                     int64_t deadline, const char *what)
{
    if (cn->off > 0) {
        memmove(cn->buf, cn->buf + cn->off, cn->len - cn->off);
        cn->len -= cn->off;
        cn->off = 0;
    }
    if (cn->len >= HEAD_MAX) {
        return blc_set_err(c, BALLAST_EPROTO, "%s: response line or headers over %d bytes",
                           ep->name, HEAD_MAX);
    }
    size_t got = 0;
    int rv = conn_recv(c, cn, ep, cn->buf + cn->len, HEAD_MAX - cn->len, deadline, &got, what);
    if (rv == 0) {
        cn->len += got;
    }
    return rv;
}

/* Read exactly @n bytes into @dst: first what is buffered, then directly. */
static int conn_read_exact(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                           char *dst, size_t n, int64_t deadline)
{
    size_t take = cn->len - cn->off < n ? cn->len - cn->off : n;
    memcpy(dst, cn->buf + cn->off, take);
    cn->off += take;
    dst += take;
    n -= take;
    while (n > 0) {
        size_t got = 0;
        int rv = conn_recv(c, cn, ep, dst, n, deadline, &got, "reading the response body");
        if (rv != 0) {
            return rv;
        }
        dst += got;
        n -= got;
    }
    return 0;
}

/* Read one line (up to '\n', the '\r' before it dropped). *@line points
 * into the connection buffer and stays valid until the next read. */
static int conn_read_line(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                          int64_t deadline, const char **line, size_t *n)
{
    for (;;) {
        char *p = cn->buf + cn->off;
        char *nl = memchr(p, '\n', cn->len - cn->off);
        if (nl) {
            size_t ll = (size_t)(nl - p);
            cn->off += ll + 1;
            if (ll > 0 && p[ll - 1] == '\r') {
                ll--;
            }
            *line = p;
            *n = ll;
            return 0;
        }
        int rv = conn_fill(c, cn, ep, deadline, "reading the response body");
        if (rv != 0) {
            return rv;
        }
    }
}

/* --- HTTP response parsing ---------------------------------------------- */

/* Length of the response head at @p (through the empty line), 0 if the
 * buffer does not hold a whole head yet. Bare LF line ends are accepted. */
static size_t head_end(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            continue;
        }
        if (i + 1 < n && p[i + 1] == '\n') {
            return i + 2;
        }
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
            return i + 3;
        }
    }
    return 0;
}

/* Whether comma-separated header value @v (@n bytes) holds token @tok. */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t s = i;
        while (i < n && v[i] != ',') {
            i++;
        }
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) {
            e--;
        }
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Parse the status line and headers at @p (@n bytes, a whole head as found
 * by head_end()) into @rs. Returns 0 or -1 with a reason in @why. */
static int parse_head(const char *p, size_t n, struct resp *rs, char *why, size_t whylen)
{
    const char *end = p + n;
    const char *nl = memchr(p, '\n', n);
    size_t ll = (size_t)(nl - p);
    if (ll > 0 && p[ll - 1] == '\r') {
        ll--;
    }
    /* "HTTP/1.x SSS[ reason]" */
    if (ll < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (ll > 12 && p[12] != ' ')) {
        snprintf(why, whylen, "bad status line \"%.*s\"", (int)(ll > 60 ? 60 : ll), p);
        return -1;
    }
    int minor = p[7] - '0';
    rs->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    rs->content_length = -1;
    rs->retry_after = -1;
    rs->revision = -1;
    rs->snap_revision = -1;
    rs->chunked = 0;
    rs->close = minor == 0; /* HTTP/1.0: close unless keep-alive */
    rs->content_type[0] = '\0';
    p = nl + 1;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        ll = (size_t)(nl - p);
        if (ll > 0 && p[ll - 1] == '\r') {
            ll--;
        }
        if (ll == 0) {
            break; /* the empty line ending the head */
        }
        if (p[0] == ' ' || p[0] == '\t') {
            snprintf(why, whylen, "folded header line");
            return -1;
        }
        const char *colon = memchr(p, ':', ll);
        if (!colon || colon == p) {
            snprintf(why, whylen, "bad header line \"%.*s\"", (int)(ll > 60 ? 60 : ll), p);
            return -1;
        }
        size_t name_n = (size_t)(colon - p);
        const char *v = colon + 1, *ve = p + ll;
        while (v < ve && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }
        size_t vn = (size_t)(ve - v);
        if (name_n == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            int64_t cl = 0;
            if (vn == 0 || vn > 18) {
                snprintf(why, whylen, "bad Content-Length");
                return -1;
            }
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    snprintf(why, whylen, "bad Content-Length");
                    return -1;
                }
                cl = cl * 10 + (v[i] - '0');
            }
            if (rs->content_length >= 0 && rs->content_length != cl) {
                snprintf(why, whylen, "conflicting Content-Length headers");
                return -1;
            }
            rs->content_length = cl;
        } else if (name_n == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            /* only "chunked" (or "identity") is understood, no compression */
            if (vn == 7 && strncasecmp(v, "chunked", 7) == 0) {
                rs->chunked = 1;
            } else if (!(vn == 8 && strncasecmp(v, "identity", 8) == 0)) {
                snprintf(why, whylen, "unsupported Transfer-Encoding \"%.*s\"",
                         (int)(vn > 40 ? 40 : vn), v);
                return -1;
            }
        } else if (name_n == 10 && strncasecmp(p, "Connection", 10) == 0) {
            if (has_token(v, vn, "close")) {
                rs->close = 1;
            } else if (has_token(v, vn, "keep-alive")) {
                rs->close = 0;
            }
        } else if (name_n == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
            long ra = 0;
            size_t i = 0;
            for (; i < vn && v[i] >= '0' && v[i] <= '9' && ra < 86400; i++) {
                ra = ra * 10 + (v[i] - '0');
            }
            if (i > 0) {
                rs->retry_after = ra; /* an HTTP-date is ignored: plain backoff */
            }
        } else if ((name_n == 18 && strncasecmp(p, "X-Ballast-Revision", 18) == 0) ||
                   (name_n == 27 && strncasecmp(p, "X-Ballast-Snapshot-Revision", 27) == 0)) {
            int64_t rev = 0;
            size_t i = 0;
            for (; i < vn && i < 18 && v[i] >= '0' && v[i] <= '9'; i++) {
                rev = rev * 10 + (v[i] - '0');
            }
            *(name_n == 18 ? &rs->revision : &rs->snap_revision) = i > 0 && i == vn ? rev : -1;
        } else if (name_n == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
            size_t cn = vn < sizeof rs->content_type - 1 ? vn : sizeof rs->content_type - 1;
            memcpy(rs->content_type, v, cn);
            rs->content_type[cn] = '\0';
        }
        p = nl + 1;
    }
    return 0;
}

void blc_resp_reset(struct resp *rs)
{
    free(rs->body);
    memset(rs, 0, sizeof *rs);
    rs->content_length = -1;
    rs->retry_after = -1;
    rs->revision = -1;
    rs->snap_revision = -1;
}

/* Parse the chunk size line @line (@ll bytes) into *@size, at most @max.
 * Returns 0, -1 for a malformed line, -2 for a size over @max. */
int blc_chunk_size(const char *line, size_t ll, uint64_t max, uint64_t *size)
{
    size_t i = 0;
    *size = 0;
    for (; i < ll; i++) {
        char h = line[i];
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) {
            break;
        }
        *size = *size * 16 + (uint64_t)d;
        if (*size > max) {
            return -2;
        }
    }
    if (i == 0 || (i < ll && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) {
        return -1;
    }
    return 0;
}

/* Read and drop the trailers after the last chunk, bounded like a head. */
static int skip_trailers(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                         int64_t deadline)
{
    for (size_t total = 0;;) {
        const char *line;
        size_t ll;
        int rv = conn_read_line(c, cn, ep, deadline, &line, &ll);
        if (rv != 0) {
            return rv;
        }
        if (ll == 0) {
            return 0;
        }
        total += ll;
        if (total > HEAD_MAX) {
            return blc_set_err(c, BALLAST_EPROTO, "%s: trailers over %d bytes", ep->name, HEAD_MAX);
        }
    }
}

/* Read a chunked body into @rs. */
static int read_chunked(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                        struct resp *rs, int64_t deadline)
{
    size_t cap = 0, len = 0;
    char *body = NULL;
    int rv;
    for (;;) {
        const char *line;
        size_t ll;
        uint64_t size = 0;
        rv = conn_read_line(c, cn, ep, deadline, &line, &ll);
        if (rv != 0) {
            goto err;
        }
        rv = blc_chunk_size(line, ll, BODY_MAX, &size);
        if (rv != 0) {
            rv = rv == -2 ? blc_set_err(c, BALLAST_EPROTO, "%s: response body over %d bytes",
                                        ep->name, BODY_MAX)
                          : blc_set_err(c, BALLAST_EPROTO, "%s: bad chunk size line", ep->name);
            goto err;
        }
        if (size == 0) {
            break;
        }
        if (size > (uint64_t)BODY_MAX - len) {
            rv = blc_set_err(c, BALLAST_EPROTO, "%s: response body over %d bytes", ep->name,
                             BODY_MAX);
            goto err;
        }
        if (len + size + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            while (ncap < len + size + 1) {
                ncap *= 2;
            }
            if (ncap > (size_t)BODY_MAX + 1) {
                ncap = (size_t)BODY_MAX + 1; /* len + size <= BODY_MAX */
            }
            char *nb = realloc(body, ncap);
            if (!nb) {
                rv = blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
                goto err;
            }
            body = nb;
            cap = ncap;
        }
        rv = conn_read_exact(c, cn, ep, body + len, (size_t)size, deadline);
        if (rv != 0) {
            goto err;
        }
        len += (size_t)size;
        rv = conn_read_line(c, cn, ep, deadline, &line, &ll);
        if (rv != 0) {
            goto err;
        }
        if (ll != 0) {
            rv = blc_set_err(c, BALLAST_EPROTO, "%s: chunk not followed by CRLF", ep->name);
            goto err;
        }
    }
    rv = skip_trailers(c, cn, ep, deadline);
    if (rv != 0) {
        goto err;
    }
    if (!body) {
        body = malloc(1);
        if (!body) {
            return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
        }
    }
    body[len] = '\0';
    rs->body = body;
    rs->body_len = len;
    return 0;
err:
    free(body);
    return rv;
}

/* Read a body delimited by the connection closing. */
static int read_until_close(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                            struct resp *rs, int64_t deadline)
{
    size_t cap = 4096, len = cn->len - cn->off;
    while (cap < len + 1) {
        cap *= 2;
    }
    char *body = malloc(cap);
    if (!body) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
    }
    memcpy(body, cn->buf + cn->off, len);
    cn->off = cn->len;
    for (;;) {
        if (len + 1 == cap) {
            /* room for BODY_MAX + 1 bytes at most: one more means too large */
            if (len > BODY_MAX) {
                free(body);
                return blc_set_err(c, BALLAST_EPROTO, "%s: response body over %d bytes", ep->name,
                                   BODY_MAX);
            }
            size_t ncap = cap * 2 > (size_t)BODY_MAX + 2 ? (size_t)BODY_MAX + 2 : cap * 2;
            char *nb = realloc(body, ncap);
            if (!nb) {
                free(body);
                return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
            }
            body = nb;
            cap = ncap;
        }
        ssize_t r = recv(cn->fd, body + len, cap - len - 1, 0);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r == 0) {
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        int w =
            (errno == EAGAIN || errno == EWOULDBLOCK) ? blc_io_wait(cn->fd, POLLIN, deadline) : -1;
        if (w > 0) {
            continue;
        }
        free(body);
        return w == 0 ? blc_set_err(c, BALLAST_ETIMEOUT, "%s: timed out reading the response body",
                                    ep->name)
                      : blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: recv: %s", ep->name,
                                    strerror(errno));
    }
    if (len > BODY_MAX) {
        free(body);
        return blc_set_err(c, BALLAST_EPROTO, "%s: response body over %d bytes", ep->name,
                           BODY_MAX);
    }
    body[len] = '\0';
    rs->body = body;
    rs->body_len = len;
    rs->close = 1;
    return 0;
}

/* --- bodies streamed to a file (snapshot save) ----------------------------- */

/* Write @n bytes at @p to the request's sink. */
static int sink_put(struct ballast_client *c, const struct req *rq, struct resp *rs, const char *p,
                    size_t n)
{
    while (n > 0) {
        ssize_t w = write(rq->sink_fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return blc_set_err(c, BALLAST_EIO, "write %s: %s", rq->sink_name,
                               w < 0 ? strerror(errno) : "no progress");
        }
        p += w;
        n -= (size_t)w;
        rs->sunk += (uint64_t)w;
    }
    return 0;
}

/* Refill the (drained) connection buffer; *@eof is set at end of stream.
 * The wait is bounded by attempt_timeout_ms from now: a streamed body is
 * bounded by inactivity, not by the call's deadline. */
static int sink_fill(struct ballast_client *c, struct conn *cn, const struct endpoint *ep, int *eof)
{
    int64_t deadline = blc_now_ms() + c->o.attempt_timeout_ms;
    cn->off = cn->len = 0;
    for (;;) {
        ssize_t r = recv(cn->fd, cn->buf, HEAD_MAX, 0);
        if (r >= 0) {
            cn->len = (size_t)r;
            *eof = r == 0;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: recv reading the response body: %s",
                               ep->name, strerror(errno));
        }
        int w = blc_io_wait(cn->fd, POLLIN, deadline);
        if (w == 0) {
            return blc_set_err(c, BALLAST_ETIMEOUT, "%s: no byte of the response body for %u ms",
                               ep->name, c->o.attempt_timeout_ms);
        }
        if (w < 0) {
            return blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: poll: %s", ep->name, strerror(errno));
        }
    }
}

/* Move @n body bytes (with @until_close: everything up to the end of the
 * stream) from @cn to the sink, through the connection buffer. */
static int sink_copy(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                     const struct req *rq, struct resp *rs, uint64_t n, int until_close)
{
    while (until_close || n > 0) {
        size_t have = cn->len - cn->off;
        if (have == 0) {
            int eof = 0;
            int rv = sink_fill(c, cn, ep, &eof);
            if (rv != 0) {
                return rv;
            }
            if (eof && until_close) {
                return 0;
            }
            if (eof) {
                return blc_set_err(c, BALLAST_EUNAVAILABLE,
                                   "%s: connection closed reading the response body", ep->name);
            }
            continue;
        }
        size_t take = until_close || have < n ? have : (size_t)n;
        int rv = sink_put(c, rq, rs, cn->buf + cn->off, take);
        if (rv != 0) {
            return rv;
        }
        cn->off += take;
        n -= until_close ? 0 : take;
    }
    return 0;
}

/* Stream the 2xx body of @rs (head parsed) into the request's sink, which
 * is emptied first (an earlier attempt may have left part of a body). */
static int read_to_sink(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                        const struct req *rq, struct resp *rs)
{
    int rv;
    rs->sunk = 0;
    if (ftruncate(rq->sink_fd, 0) != 0 || lseek(rq->sink_fd, 0, SEEK_SET) < 0) {
        return blc_set_err(c, BALLAST_EIO, "truncate %s: %s", rq->sink_name, strerror(errno));
    }
    if (rs->chunked) {
        for (;;) {
            const char *line;
            size_t ll;
            uint64_t size;
            rv = conn_read_line(c, cn, ep, blc_now_ms() + c->o.attempt_timeout_ms, &line, &ll);
            if (rv != 0) {
                return rv;
            }
            if (blc_chunk_size(line, ll, UINT64_MAX / 16, &size) != 0) {
                return blc_set_err(c, BALLAST_EPROTO, "%s: bad chunk size line", ep->name);
            }
            if (size == 0) {
                break;
            }
            rv = sink_copy(c, cn, ep, rq, rs, size, 0);
            if (rv == 0) {
                rv = conn_read_line(c, cn, ep, blc_now_ms() + c->o.attempt_timeout_ms, &line, &ll);
            }
            if (rv != 0) {
                return rv;
            }
            if (ll != 0) {
                return blc_set_err(c, BALLAST_EPROTO, "%s: chunk not followed by CRLF", ep->name);
            }
        }
        rv = skip_trailers(c, cn, ep, blc_now_ms() + c->o.attempt_timeout_ms);
    } else if (rs->content_length >= 0) {
        rv = sink_copy(c, cn, ep, rq, rs, (uint64_t)rs->content_length, 0);
    } else {
        rv = sink_copy(c, cn, ep, rq, rs, 0, 1);
        rs->close = 1;
    }
    if (rv != 0) {
        return rv;
    }
    rs->body = malloc(1);
    if (!rs->body) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
    }
    rs->body[0] = '\0';
    rs->body_len = 0;
    return 0;
}

/* Read one whole response for @rq from @cn. *@got_any tells whether any
 * byte of it arrived (to tell a stale connection from a broken answer). */
static int read_response(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                         const struct req *rq, struct resp *rs, int64_t deadline, int *got_any)
{
    char why[128];
    int rv;
    for (;;) {
        size_t hl;
        while ((hl = head_end(cn->buf + cn->off, cn->len - cn->off)) == 0) {
            rv = conn_fill(c, cn, ep, deadline,
                           *got_any ? "reading the response" : "before an answer");
            if (rv != 0) {
                return rv;
            }
            *got_any = 1;
        }
        if (parse_head(cn->buf + cn->off, hl, rs, why, sizeof why) != 0) {
            return blc_set_err(c, BALLAST_EPROTO, "%s: malformed response to %s %s: %s", ep->name,
                               rq->method, rq->target, why);
        }
        cn->off += hl;
        if (rs->status == 101) {
            return blc_set_err(c, BALLAST_EPROTO, "%s: unexpected 101 Switching Protocols",
                               ep->name);
        }
        if (rs->status >= 200) {
            break;
        }
        /* 1xx interim response: wait for the real one */
    }
    int no_body = strcmp(rq->method, "HEAD") == 0 || rs->status == 204 || rs->status == 304;
    int stream = rq->stream && rs->status >= 200 && rs->status <= 299;
    if (no_body || stream) { /* a stream's body is the caller's to read */
        rs->body = malloc(1);
        if (!rs->body) {
            return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
        }
        rs->body[0] = '\0';
        rs->body_len = 0;
        return 0;
    }
    if (rq->sink && rs->status >= 200 && rs->status <= 299) {
        return read_to_sink(c, cn, ep, rq, rs);
    }
    if (rs->chunked) {
        return read_chunked(c, cn, ep, rs, deadline);
    }
    if (rs->content_length < 0) {
        return read_until_close(c, cn, ep, rs, deadline);
    }
    if (rs->content_length > BODY_MAX) {
        return blc_set_err(c, BALLAST_EPROTO, "%s: response body of %lld bytes is over %d",
                           ep->name, (long long)rs->content_length, BODY_MAX);
    }
    size_t cl = (size_t)rs->content_length;
    rs->body = malloc(cl + 1);
    if (!rs->body) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory reading a response");
    }
    rv = conn_read_exact(c, cn, ep, rs->body, cl, deadline);
    if (rv != 0) {
        free(rs->body);
        rs->body = NULL;
        return rv;
    }
    rs->body[cl] = '\0';
    rs->body_len = cl;
    return 0;
}

/* --- attempts and the call loop ----------------------------------------- */

/* Send @rq over @cn to @ep and read the answer, all before @deadline. */
static enum outcome attempt(struct ballast_client *c, struct conn *cn, const struct endpoint *ep,
                            const struct req *rq, struct resp *rs, int64_t deadline, int *err)
{
    int64_t t = blc_now_ms();
    if (cn->fd >= 0 && !conn_idle_ok(cn)) {
        blc_conn_close(cn); /* closed by the server while idle: reopen */
    }
    int reused = cn->fd >= 0; /* kept alive from an earlier call */
    if (!reused) {
        int64_t cd = t + c->o.connect_timeout_ms;
        *err = conn_open(c, cn, ep, cd < deadline ? cd : deadline);
        if (*err != 0) {
            return OUT_UNSENT;
        }
    }

    struct sbuf h = {0};
    blc_sb_str(&h, rq->method);
    blc_sb_str(&h, " ");
    blc_sb_str(&h, rq->target);
    blc_sb_str(&h, " HTTP/1.1\r\nHost: ");
    blc_sb_str(&h, ep->name);
    blc_sb_str(&h, "\r\nUser-Agent: " USER_AGENT "\r\nAccept: ");
    blc_sb_str(&h, rq->accept_json ? CT_JSON : CT_MSGPACK);
    blc_sb_str(&h, "\r\n");
    if (rq->content_type) {
        blc_sb_str(&h, "Content-Type: ");
        blc_sb_str(&h, rq->content_type);
        blc_sb_str(&h, "\r\n");
    }
    if (rq->has_body) {
        char num[64];
        snprintf(num, sizeof num, "Content-Length: %zu\r\n", rq->body_len);
        blc_sb_str(&h, num);
    }
    if (rq->id[0]) {
        blc_sb_str(&h, "X-Ballast-Request-Id: ");
        blc_sb_str(&h, rq->id);
        blc_sb_str(&h, "\r\n");
    }
    blc_sb_str(&h, "\r\n");
    if (h.oom) {
        free(h.p);
        *err = blc_set_err(c, BALLAST_ENOMEM, "out of memory building a request");
        return OUT_FATAL;
    }
    struct iovec iov[2] = {{h.p, h.len}, {(void *)rq->body, rq->has_body ? rq->body_len : 0}};
    *err = conn_send(c, cn, ep, iov, 2, deadline);
    free(h.p);
    int got_any = 0;
    if (*err == 0) {
        *err = read_response(c, cn, ep, rq, rs, deadline, &got_any);
    }
    if (*err == 0) {
        return OUT_DONE;
    }
    if (*err == BALLAST_EPROTO || *err == BALLAST_ENOMEM || *err == BALLAST_EIO) {
        return OUT_FATAL;
    }
    if (reused && !got_any && *err == BALLAST_EUNAVAILABLE) {
        return OUT_STALE;
    }
    return OUT_MAYBE;
}

/* Whether a request that may have been executed can be sent again. */
static int may_resend(const struct ballast_client *c, const struct req *rq)
{
    return !rq->write || rq->cas || (!rq->once && !c->o.no_retry_unsent_writes);
}

/* Jittered exponential backoff for the @k-th wait of a call. */
int64_t blc_backoff_ms(struct ballast_client *c, unsigned k)
{
    uint64_t d = c->o.backoff_base_ms;
    for (unsigned i = 0; i < k && d < c->o.backoff_max_ms; i++) {
        d *= 2;
    }
    if (d > c->o.backoff_max_ms) {
        d = c->o.backoff_max_ms;
    }
    /* equal jitter: half fixed, half random */
    return (int64_t)(d / 2 + splitmix64(&c->rng) % (d / 2 + 1));
}

/* Run @rq with retries and failover (or once against @fixed over @fixed_cn).
 * Returns 0 with a response in @rs (any status; the caller maps errors), or
 * an error with the message set and @rs empty. */
static int do_call(struct ballast_client *c, const struct req *rq, struct resp *rs,
                   const struct endpoint *fixed, struct conn *cn, size_t *cur)
{
    int64_t deadline = blc_now_ms() + c->o.request_timeout_ms + rq->extra_ms;
    unsigned attempts = 0, waits = 0, since_wait = 0;
    int64_t round_retry_after = 0;
    int stale_done = 0;
    int maybe = 0; /* an attempt so far may have been executed */
    blc_resp_reset(rs);
    for (;;) {
        const struct endpoint *ep = fixed ? fixed : &c->eps[*cur];
        int64_t ad =
            rq->long_head ? deadline : blc_now_ms() + c->o.attempt_timeout_ms + rq->extra_ms;
        int err = 0;
        blc_resp_reset(rs);
        enum outcome oc = attempt(c, cn, ep, rq, rs, ad < deadline ? ad : deadline, &err);
        int earlier = maybe;
        maybe |= oc == OUT_MAYBE || (oc == OUT_STALE && rq->write) ||
                 (oc == OUT_DONE && rs->status == 504);
        if (oc == OUT_DONE) {
            int streaming = rq->stream && rs->status >= 200 && rs->status <= 299;
            if (rs->close && !streaming) {
                blc_conn_close(cn);
            }
            rs->after_maybe = earlier;
            if (fixed || (rs->status != 503 && rs->status != 504) ||
                (rs->status == 504 && (!may_resend(c, rq) || rq->final_504))) {
                return 0;
            }
        } else {
            blc_conn_close(cn);
            blc_resp_reset(rs);
            if (oc == OUT_FATAL) {
                return err;
            }
            if (oc == OUT_STALE && !stale_done && may_resend(c, rq)) {
                stale_done = 1;
                continue; /* same endpoint, fresh connection, not an attempt */
            }
            if (fixed || (oc != OUT_UNSENT && !may_resend(c, rq))) {
                return err;
            }
        }
        attempts++;
        int64_t delay = 0;
        /* The largest Retry-After of this round of endpoints. */
        if (oc == OUT_DONE && rs->status == 503 && rs->retry_after >= 0 &&
            rs->retry_after * 1000 > round_retry_after) {
            round_retry_after = rs->retry_after * 1000;
        }
        /* Not executed (refused, 503): try the other endpoints first. */
        int not_executed = oc == OUT_UNSENT || (oc == OUT_DONE && rs->status == 503);
        if (!not_executed || ++since_wait >= c->n_eps) {
            int64_t ra =
                round_retry_after < c->o.backoff_max_ms ? round_retry_after : c->o.backoff_max_ms;
            since_wait = 0;
            round_retry_after = 0;
            delay = blc_backoff_ms(c, waits++);
            if (ra > delay) {
                delay = ra;
            }
        }
        if (attempts >= c->o.max_attempts || blc_now_ms() + delay >= deadline) {
            return oc == OUT_DONE ? 0 : err; /* a 503/504 answer speaks for itself */
        }
        blc_conn_close(cn);
        *cur = (*cur + 1) % c->n_eps;
        blc_sleep_ms(delay);
    }
}

/* --- msgpack ------------------------------------------------------------ */

/* How msgpack type bytes 0xc4..0xdf continue: bytes of a length field,
 * fixed bytes to skip after it, and whether the length counts bytes (0),
 * array items (1) or map pairs (2). */
static const struct {
    unsigned char lb, skip, kind;
} MP_TYPES[28] = {
    {1, 0, 0}, {2, 0, 0}, {4, 0, 0},            /* bin 8/16/32 */
    {1, 1, 0}, {2, 1, 0}, {4, 1, 0},            /* ext 8/16/32: length, then a type byte */
    {0, 4, 0}, {0, 8, 0},                       /* float 32/64 */
    {0, 1, 0}, {0, 2, 0}, {0, 4, 0}, {0, 8, 0}, /* uint 8..64 */
    {0, 1, 0}, {0, 2, 0}, {0, 4, 0}, {0, 8, 0}, /* int 8..64 */
    {0, 2, 0}, {0, 3, 0}, {0, 5, 0}, {0, 9, 0}, {0, 17, 0}, /* fixext 1..16 */
    {1, 0, 0}, {2, 0, 0}, {4, 0, 0},                        /* str 8/16/32 */
    {2, 0, 1}, {4, 0, 1},                                   /* array 16/32 */
    {2, 0, 2}, {4, 0, 2},                                   /* map 16/32 */
};

/* Walk the first msgpack object of the @n bytes at @p without allocating
 * (see client_int.h): @pending counts the objects still to read. A
 * container claiming more elements than bytes remain is incomplete, so a
 * whole object never claims more than its size. */
int blc_mp_first(const unsigned char *p, size_t n, size_t *used)
{
    size_t i = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        pending--;
        if (i >= n) {
            return 0;
        }
        unsigned t = p[i++];
        uint64_t len = 0;
        unsigned kind = 0;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool: the type byte is all */
        } else if (t <= 0x8f) {
            len = t & 0x0f;
            kind = 2;
        } else if (t <= 0x9f) {
            len = t & 0x0f;
            kind = 1;
        } else if (t <= 0xbf) {
            len = t & 0x1f;
        } else if (t >= 0xc4) {
            unsigned lb = MP_TYPES[t - 0xc4].lb;
            if (n - i < lb) {
                return 0;
            }
            for (unsigned k = 0; k < lb; k++) {
                len = (len << 8) | p[i++];
            }
            len += MP_TYPES[t - 0xc4].skip;
            kind = MP_TYPES[t - 0xc4].kind;
        } else {
            return -1; /* 0xc1 is never used */
        }
        if (kind == 0) {
            if (len > n - i) {
                return 0;
            }
            i += (size_t)len;
        } else {
            pending += kind == 2 ? len * 2 : len;
            if (pending > n - i) {
                return 0;
            }
        }
    }
    *used = i;
    return 1;
}

/* Check that @n bytes at @p hold exactly one well-formed msgpack object
 * whose containers never claim more elements than bytes remain, so that
 * unpacking cannot be made to allocate far beyond the body's size. */
int blc_mp_check(const unsigned char *p, size_t n)
{
    size_t used = 0;
    return blc_mp_first(p, n, &used) == 1 && used == n ? 0 : -1;
}

/* Unpack the body of @rs into @u (to be destroyed by the caller). */
static int mp_parse(struct ballast_client *c, const struct req *rq, const struct resp *rs,
                    msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    if (strstr(rs->content_type, "json")) {
        return blc_set_err(c, BALLAST_EPROTO, "reply to %s %s is %s, not msgpack", rq->method,
                           rq->target, rs->content_type);
    }
    if (blc_mp_check((const unsigned char *)rs->body, rs->body_len) != 0) {
        return blc_set_err(c, BALLAST_EPROTO, "reply to %s %s is not well-formed msgpack",
                           rq->method, rq->target);
    }
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(u, rs->body, rs->body_len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory decoding a reply");
    }
    if (ur != MSGPACK_UNPACK_SUCCESS || off != rs->body_len) {
        return blc_set_err(c, BALLAST_EPROTO, "reply to %s %s is not well-formed msgpack",
                           rq->method, rq->target);
    }
    return 0;
}

/* Field @name of map @m, or NULL when absent, nil, or @m is not a map. */
const msgpack_object *blc_mp_get(const msgpack_object *m, const char *name)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == nl &&
            memcmp(k->via.str.ptr, name, nl) == 0) {
            return v->type == MSGPACK_OBJECT_NIL ? NULL : v;
        }
    }
    return NULL;
}

/* The decoders below leave the output alone for an absent field and return
 * -1 for a field of the wrong type. */
int blc_mp_u64(const msgpack_object *m, const char *name, uint64_t *out)
{
    const msgpack_object *v = blc_mp_get(m, name);
    if (!v) {
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return -1;
    }
    *out = v->via.u64;
    return 0;
}

int blc_mp_i64(const msgpack_object *m, const char *name, int64_t *out)
{
    const msgpack_object *v = blc_mp_get(m, name);
    if (!v) {
        return 0;
    }
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX) {
        *out = (int64_t)v->via.u64;
    } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = v->via.i64;
    } else {
        return -1;
    }
    return 0;
}

int blc_mp_bool(const msgpack_object *m, const char *name, int *out)
{
    const msgpack_object *v = blc_mp_get(m, name);
    if (!v) {
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_BOOLEAN) {
        return -1;
    }
    *out = v->via.boolean;
    return 0;
}

/* Bytes of a bin or str field. */
int blc_mp_bytes(const msgpack_object *m, const char *name, const char **p, size_t *n)
{
    const msgpack_object *v = blc_mp_get(m, name);
    if (!v) {
        return 0;
    }
    if (v->type == MSGPACK_OBJECT_BIN) {
        *p = v->via.bin.ptr;
        *n = v->via.bin.size;
    } else if (v->type == MSGPACK_OBJECT_STR) {
        *p = v->via.str.ptr;
        *n = v->via.str.size;
    } else {
        return -1;
    }
    return 0;
}

/* A newly allocated copy of a string field ("" when absent) in *@out.
 * Returns 0, -1 (wrong type) or -2 (out of memory). */
static int mp_strdup(const msgpack_object *m, const char *name, char **out)
{
    const char *p = "";
    size_t n = 0;
    if (blc_mp_bytes(m, name, &p, &n) != 0) {
        return -1;
    }
    *out = strndup(p, n);
    return *out ? 0 : -2;
}

/* Decode the kv maps @objs[0..n) into one allocation: the array of structs
 * followed by each key and value, NUL-terminated. *@out is NULL when n is 0. */
int blc_kvs_decode(const msgpack_object *objs, size_t n, struct ballast_kv **out)
{
    *out = NULL;
    if (n == 0) {
        return 0;
    }
    size_t total = n * sizeof(struct ballast_kv);
    for (size_t i = 0; i < n; i++) {
        const char *k = NULL, *v = "";
        size_t kl = 0, vl = 0;
        if (objs[i].type != MSGPACK_OBJECT_MAP || blc_mp_bytes(&objs[i], "key", &k, &kl) != 0 ||
            !k || blc_mp_bytes(&objs[i], "value", &v, &vl) != 0) {
            return BALLAST_EPROTO;
        }
        total += kl + vl + 2;
    }
    struct ballast_kv *kvs = malloc(total);
    if (!kvs) {
        return BALLAST_ENOMEM;
    }
    char *data = (char *)(kvs + n);
    for (size_t i = 0; i < n; i++) {
        struct ballast_kv *kv = &kvs[i];
        const char *k = NULL, *v = "";
        size_t kl = 0, vl = 0;
        memset(kv, 0, sizeof *kv);
        blc_mp_bytes(&objs[i], "key", &k, &kl);
        blc_mp_bytes(&objs[i], "value", &v, &vl);
        memcpy(data, k, kl);
        data[kl] = '\0';
        kv->key = data;
        kv->key_len = kl;
        data += kl + 1;
        memcpy(data, v, vl);
        data[vl] = '\0';
        kv->value = data;
        kv->value_len = vl;
        data += vl + 1;
        if (blc_mp_i64(&objs[i], "create_revision", &kv->create_revision) != 0 ||
            blc_mp_i64(&objs[i], "mod_revision", &kv->mod_revision) != 0 ||
            blc_mp_i64(&objs[i], "version", &kv->version) != 0 ||
            blc_mp_i64(&objs[i], "lease", &kv->lease) != 0) {
            free(kvs);
            return BALLAST_EPROTO;
        }
    }
    *out = kvs;
    return 0;
}

/* Decode an optional array-of-kvs field. */
int blc_kvs_field(const msgpack_object *m, const char *name, struct ballast_kv **out, size_t *n)
{
    const msgpack_object *a = blc_mp_get(m, name);
    *out = NULL;
    *n = 0;
    if (!a) {
        return 0;
    }
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        return BALLAST_EPROTO;
    }
    int rv = blc_kvs_decode(a->via.array.ptr, a->via.array.size, out);
    if (rv == 0) {
        *n = a->via.array.size;
    }
    return rv;
}

static void member_clear(struct ballast_member *m)
{
    free(m->name);
    free(m->peer_url);
    free(m->client_url);
    free(m->role);
}

void ballast_members_free(struct ballast_member *m, size_t n)
{
    if (!m) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        member_clear(&m[i]);
    }
    free(m);
}

/* Decode the member map @o into @m (zeroed). Returns 0, -1 malformed, -2
 * out of memory; @m then owns what was copied so far. */
static int member_decode(const msgpack_object *o, struct ballast_member *m)
{
    int r = o->type == MSGPACK_OBJECT_MAP ? 0 : -1;
    if (r == 0) {
        r = mp_strdup(o, "name", &m->name);
    }
    if (r == 0) {
        r = mp_strdup(o, "peer_url", &m->peer_url);
    }
    if (r == 0) {
        r = mp_strdup(o, "client_url", &m->client_url);
    }
    if (r == 0) {
        r = mp_strdup(o, "role", &m->role);
    }
    if (r == 0 &&
        (blc_mp_u64(o, "id", &m->id) != 0 || blc_mp_bool(o, "reachable", &m->reachable) != 0 ||
         blc_mp_u64(o, "match_index", &m->match_index) != 0)) {
        r = -1;
    }
    return r;
}

/* Decode an array of member maps into *@out / *@n. */
static int members_decode(const msgpack_object *a, struct ballast_member **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!a) {
        return 0;
    }
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        return BALLAST_EPROTO;
    }
    size_t cnt = a->via.array.size;
    if (cnt == 0) {
        return 0;
    }
    struct ballast_member *ms = calloc(cnt, sizeof *ms);
    if (!ms) {
        return BALLAST_ENOMEM;
    }
    for (size_t i = 0; i < cnt; i++) {
        int r = member_decode(&a->via.array.ptr[i], &ms[i]);
        if (r != 0) {
            ballast_members_free(ms, i + 1);
            return r == -2 ? BALLAST_ENOMEM : BALLAST_EPROTO;
        }
    }
    *out = ms;
    *n = cnt;
    return 0;
}

void ballast_status_free(struct ballast_status *st)
{
    if (!st) {
        return;
    }
    free(st->endpoint);
    free(st->name);
    free(st->role);
    free(st->version);
    ballast_members_free(st->members, st->n_members);
    free(st);
}

static int status_decode(const msgpack_object *o, const char *endpoint, struct ballast_status **out)
{
    struct ballast_status *st = calloc(1, sizeof *st);
    if (!st) {
        return BALLAST_ENOMEM;
    }
    int r = o->type == MSGPACK_OBJECT_MAP ? 0 : -1;
    if (r == 0) {
        st->endpoint = strdup(endpoint);
        r = st->endpoint ? 0 : -2;
    }
    if (r == 0) {
        r = mp_strdup(o, "name", &st->name);
    }
    if (r == 0) {
        r = mp_strdup(o, "role", &st->role);
    }
    if (r == 0) {
        r = mp_strdup(o, "version", &st->version);
    }
    if (r == 0 && (blc_mp_u64(o, "id", &st->id) != 0 || blc_mp_u64(o, "leader", &st->leader) != 0 ||
                   blc_mp_u64(o, "term", &st->term) != 0 ||
                   blc_mp_u64(o, "commit_index", &st->commit_index) != 0 ||
                   blc_mp_u64(o, "applied_index", &st->applied_index) != 0 ||
                   blc_mp_i64(o, "revision", &st->revision) != 0 ||
                   blc_mp_u64(o, "db_bytes", &st->db_bytes) != 0 ||
                   blc_mp_u64(o, "raft_log_bytes", &st->raft_log_bytes) != 0)) {
        r = -1;
    }
    if (r == 0) {
        int mr = members_decode(blc_mp_get(o, "members"), &st->members, &st->n_members);
        r = mr == 0 ? 0 : mr == BALLAST_ENOMEM ? -2 : -1;
    }
    if (r != 0) {
        ballast_status_free(st);
        return r == -2 ? BALLAST_ENOMEM : BALLAST_EPROTO;
    }
    *out = st;
    return 0;
}

/* --- error bodies ------------------------------------------------------- */

static void put_utf8(char **o, const char *oe, unsigned cp)
{
    char b[4];
    int n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    }
    if (oe - *o > n) {
        memcpy(*o, b, (size_t)n);
        *o += n;
    }
}

/* Find the JSON string member "@name": "..." in @p (@n bytes) and decode it
 * into @out (truncated). A small scanner, enough for error bodies.
 * Returns 0 when found. */
static int json_string_field(const char *p, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 2 <= n; i++) {
        if (p[i] != '"' || memcmp(p + i + 1, name, nl) != 0 || p[i + nl + 1] != '"') {
            continue;
        }
        size_t j = i + nl + 2;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n')) {
            j++;
        }
        if (j >= n || p[j] != ':') {
            continue;
        }
        j++;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n')) {
            j++;
        }
        if (j >= n || p[j] != '"') {
            continue;
        }
        j++;
        char *o = out, *oe = out + outlen;
        while (j < n && p[j] != '"') {
            char ch = p[j++];
            if (ch == '\\' && j < n) {
                char e = p[j++];
                switch (e) {
                case 'n':
                    ch = '\n';
                    break;
                case 't':
                    ch = '\t';
                    break;
                case 'r':
                    ch = '\r';
                    break;
                case 'b':
                    ch = '\b';
                    break;
                case 'f':
                    ch = '\f';
                    break;
                case 'u': {
                    unsigned cp = 0;
                    size_t k = 0;
                    for (; k < 4 && j < n; k++, j++) {
                        char h = p[j];
                        int d = h >= '0' && h <= '9'   ? h - '0'
                                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                       : -1;
                        if (d < 0) {
                            break;
                        }
                        cp = cp * 16 + (unsigned)d;
                    }
                    put_utf8(&o, oe, (cp >= 0xd800 && cp <= 0xdfff) ? '?' : cp);
                    continue;
                }
                default: /* \" \\ \/ */
                    ch = e;
                }
            }
            if (oe - o > 1) {
                *o++ = ch;
            }
        }
        *o = '\0';
        return 0;
    }
    return -1;
}

/* Find the JSON integer member "@name": N in @p (@n bytes) into *@out.
 * Returns 0 when found. */
static int json_int_field(const char *p, size_t n, const char *name, int64_t *out)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 2 <= n; i++) {
        if (p[i] != '"' || memcmp(p + i + 1, name, nl) != 0 || p[i + nl + 1] != '"') {
            continue;
        }
        size_t j = i + nl + 2;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n')) {
            j++;
        }
        if (j >= n || p[j] != ':') {
            continue;
        }
        j++;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n')) {
            j++;
        }
        int64_t v = 0;
        size_t k = j;
        for (; k < n && k - j < 18 && p[k] >= '0' && p[k] <= '9'; k++) {
            v = v * 10 + (p[k] - '0');
        }
        if (k > j) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Map a non-2xx response to an error and set the message from its body. */
int blc_reply_error(struct ballast_client *c, const char *ep_name, const struct resp *rs)
{
    char code[64] = "", msg[ERRMSG_SIZE] = "";
    int64_t compact = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (rs->body_len > 0 && blc_mp_check((const unsigned char *)rs->body, rs->body_len) == 0 &&
        msgpack_unpack_next(&u, rs->body, rs->body_len, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *e = blc_mp_get(&u.data, "error");
        const char *p;
        size_t n;
        p = NULL;
        n = 0;
        if (blc_mp_bytes(e, "code", &p, &n) == 0 && p) {
            snprintf(code, sizeof code, "%.*s", (int)n, p);
        }
        p = NULL;
        n = 0;
        if (blc_mp_bytes(e, "message", &p, &n) == 0 && p) {
            snprintf(msg, sizeof msg, "%.*s", (int)n, p);
        }
        /* 410 compacted: in the error object, or beside it */
        if (blc_mp_i64(e, "compact_revision", &compact) != 0 || compact == 0) {
            compact = 0;
            if (blc_mp_i64(&u.data, "compact_revision", &compact) != 0) {
                compact = 0;
            }
        }
    } else if (rs->body_len > 0) {
        const char *start = rs->body;
        const char *e = strstr(rs->body, "\"error\"");
        if (e) {
            start = e;
        }
        size_t left = rs->body_len - (size_t)(start - rs->body);
        json_string_field(start, left, "code", code, sizeof code);
        json_string_field(start, left, "message", msg, sizeof msg);
        json_int_field(rs->body, rs->body_len, "compact_revision", &compact);
    }
    msgpack_unpacked_destroy(&u);
    int err = code[0] ? code_to_err(code) : status_to_err(rs->status);
    if (err == BALLAST_ENOSPACE && rs->after_maybe) {
        /* 507 comes from the server's admission check, before the write is
         * proposed: it says nothing of an earlier attempt of this call whose
         * answer was lost, which may still commit. So the outcome is
         * unknown, as after a 504. */
        return blc_set_err(c, BALLAST_ETIMEOUT,
                           "outcome unknown: an earlier attempt may have been applied; the "
                           "last one was refused: %s",
                           msg[0] ? msg : "no space (507)");
    }
    if (err == BALLAST_ECOMPACTED) {
        c->compact_revision = compact > 0 ? compact : 0;
    }
    if (msg[0]) {
        return blc_set_err(c, err, "%s", msg);
    }
    if (code[0]) {
        return blc_set_err(c, err, "%s (HTTP %d from %s)", code, rs->status, ep_name);
    }
    return blc_set_err(c, err, "HTTP %d from %s", rs->status, ep_name);
}

/* --- client ------------------------------------------------------------- */

struct ballast_client *ballast_client_new(const char *endpoints, const struct ballast_options *opts,
                                          char *errbuf, size_t errlen)
{
    char why[ERRMSG_SIZE];
    char dummy[1];
    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof dummy;
    }
    errbuf[0] = '\0';
    if (!endpoints) {
        snprintf(errbuf, errlen, "no endpoints given");
        return NULL;
    }
    struct ballast_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    c->conn.fd = -1;
    size_t cap = 1;
    for (const char *p = endpoints; *p; p++) {
        cap += *p == ',';
    }
    c->eps = calloc(cap, sizeof *c->eps);
    c->conn.buf = malloc(HEAD_MAX);
    if (!c->eps || !c->conn.buf) {
        snprintf(errbuf, errlen, "out of memory");
        goto err;
    }
    for (const char *p = endpoints;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        size_t blank = 0;
        while (blank < n && (p[blank] == ' ' || p[blank] == '\t')) {
            blank++;
        }
        if (blank < n) {
            if (endpoint_parse(p, n, &c->eps[c->n_eps], why, sizeof why) != 0) {
                snprintf(errbuf, errlen, "%s", why);
                goto err;
            }
            c->n_eps++;
        }
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    if (c->n_eps == 0) {
        snprintf(errbuf, errlen, "no endpoints given");
        goto err;
    }
    if (opts) {
        c->o = *opts;
    }
    if (!c->o.connect_timeout_ms) {
        c->o.connect_timeout_ms = 2000;
    }
    if (!c->o.request_timeout_ms) {
        c->o.request_timeout_ms = 10000;
    }
    if (!c->o.attempt_timeout_ms) {
        c->o.attempt_timeout_ms = 5000;
    }
    if (!c->o.max_attempts) {
        c->o.max_attempts = c->n_eps * 2 < 3 ? 3 : (unsigned)(c->n_eps * 2);
    }
    if (!c->o.backoff_base_ms) {
        c->o.backoff_base_ms = 50;
    }
    if (!c->o.backoff_max_ms) {
        c->o.backoff_max_ms = 1000;
    }
    if (c->o.backoff_max_ms < c->o.backoff_base_ms) {
        c->o.backoff_max_ms = c->o.backoff_base_ms;
    }
    unsigned char seed[8];
    if (fill_random(seed, sizeof seed) == 0) {
        memcpy(&c->rng, seed, sizeof c->rng);
    }
    c->rng ^= (uint64_t)blc_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    return c;
err:
    ballast_client_free(c);
    return NULL;
}

void ballast_client_free(struct ballast_client *c)
{
    if (!c) {
        return;
    }
    blc_conn_close(&c->conn);
    free(c->conn.buf);
    for (size_t i = 0; c->eps && i < c->n_eps; i++) {
        endpoint_clear(&c->eps[i]);
    }
    free(c->eps);
    free(c);
}

/* Run @rq against @endpoint alone (NULL: with failover); see do_call().
 * c->last_ep names the endpoint tried last. */
static int call(struct ballast_client *c, const struct req *rq, struct resp *rs,
                const char *endpoint)
{
    if (!endpoint) {
        return blc_call_on(c, rq, rs, &c->conn, &c->cur);
    }
    struct endpoint ep;
    char why[ERRMSG_SIZE];
    int rv = endpoint_parse(endpoint, strlen(endpoint), &ep, why, sizeof why);
    if (rv != 0) {
        return blc_set_err(c, rv, "%s", why);
    }
    struct conn cn = {-1, malloc(HEAD_MAX), 0, 0};
    if (!cn.buf) {
        endpoint_clear(&ep);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    size_t unused = 0; /* a fixed endpoint never fails over */
    rv = do_call(c, rq, rs, &ep, &cn, &unused);
    blc_conn_close(&cn);
    free(cn.buf);
    snprintf(c->last_ep, sizeof c->last_ep, "%s", ep.name);
    endpoint_clear(&ep);
    return rv;
}

int blc_call_on(struct ballast_client *c, const struct req *rq, struct resp *rs, struct conn *cn,
                size_t *cur)
{
    int rv = do_call(c, rq, rs, NULL, cn, cur);
    snprintf(c->last_ep, sizeof c->last_ep, "%s", c->eps[*cur].name);
    return rv;
}

/* Build "/v1/kv/<escaped key>" into @s. */
static void kv_target(struct sbuf *s, const void *key, size_t klen)
{
    blc_sb_str(s, "/v1/kv/");
    blc_sb_escape(s, key, klen);
}

/* Initialize a request; writes get a fresh request id. */
void blc_req_init(struct ballast_client *c, struct req *rq, const char *method, const char *target)
{
    memset(rq, 0, sizeof *rq);
    rq->method = method;
    rq->target = target;
    rq->write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    if (rq->write) {
        blc_make_request_id(c, rq->id);
    }
}

void blc_mp_reply_free(struct mp_reply *m)
{
    msgpack_unpacked_destroy(&m->u);
    blc_resp_reset(&m->rs);
}

/* Run a msgpack call: send, map error answers, unpack a 2xx body into @m,
 * which the caller frees with blc_mp_reply_free() whatever this returns. */
static int mp_call_at(struct ballast_client *c, const struct req *rq, struct mp_reply *m,
                      const char *endpoint)
{
    memset(&m->rs, 0, sizeof m->rs);
    msgpack_unpacked_init(&m->u);
    int rv = call(c, rq, &m->rs, endpoint);
    if (rv == 0 && (m->rs.status < 200 || m->rs.status > 299)) {
        rv = blc_reply_error(c, c->last_ep, &m->rs);
    }
    if (rv == 0) {
        msgpack_unpacked_destroy(&m->u);
        rv = mp_parse(c, rq, &m->rs, &m->u);
    }
    return rv;
}

int blc_mp_call(struct ballast_client *c, const struct req *rq, struct mp_reply *m)
{
    return mp_call_at(c, rq, m, NULL);
}

int blc_check_key(struct ballast_client *c, const void *key, size_t klen, int allow_empty)
{
    if ((!key && klen > 0) || (klen == 0 && !allow_empty)) {
        return blc_set_err(c, BALLAST_EBADARG, "empty key");
    }
    if (klen > KEY_MAX) {
        return blc_set_err(c, BALLAST_EBADARG, "key of %zu bytes is over %d", klen, KEY_MAX);
    }
    return 0;
}

int blc_bad_reply(struct ballast_client *c, int rv, const struct req *rq)
{
    if (rv == BALLAST_ENOMEM) {
        return blc_set_err(c, rv, "out of memory decoding the reply to %s %s", rq->method,
                           rq->target);
    }
    return blc_set_err(c, BALLAST_EPROTO, "unexpected reply to %s %s", rq->method, rq->target);
}

int ballast_put(struct ballast_client *c, const void *key, size_t klen, const void *value,
                size_t vlen, const struct ballast_put_opts *o, struct ballast_put_result *r)
{
    static const struct ballast_put_opts defaults = BALLAST_PUT_OPTS_INIT;
    if (r) {
        memset(r, 0, sizeof *r);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    int rv = blc_check_key(c, key, klen, 0);
    if (rv != 0) {
        return rv;
    }
    if (!value && vlen > 0) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL value");
    }
    if (!o) {
        o = &defaults;
    }
    if (o->cas < BALLAST_NO_CAS || o->lease < 0) {
        return blc_set_err(c, BALLAST_EBADARG, "negative cas or lease");
    }
    if (o->lease > 0 && o->ttl_ms > 0) {
        return blc_set_err(c, BALLAST_EBADARG, "a put takes a lease or a ttl, not both");
    }
    if (o->request_id && (rv = blc_check_request_id(c, o->request_id)) != 0) {
        return rv;
    }
    struct sbuf t = {0};
    kv_target(&t, key, klen);
    if (o->cas >= 0) {
        blc_sb_query_i64(&t, "cas", o->cas);
    }
    if (o->lease > 0) {
        blc_sb_query_i64(&t, "lease", o->lease);
    }
    if (o->ttl_ms > 0) {
        blc_sb_query_ms(&t, "ttl", o->ttl_ms);
    }
    if (o->prev) {
        blc_sb_query(&t, "prev", NULL);
    }
    if (t.oom) {
        free(t.p);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    struct req rq;
    blc_req_init(c, &rq, "PUT", t.p);
    rq.body = value ? value : "";
    rq.body_len = vlen;
    rq.has_body = 1;
    rq.content_type = CT_OCTET_STREAM;
    rq.cas = o->cas >= 0;
    if (o->request_id) {
        snprintf(rq.id, sizeof rq.id, "%s", o->request_id);
    }
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_put_result tmp = {0};
        const msgpack_object *prev = blc_mp_get(&m.u.data, "prev");
        if (m.u.data.type != MSGPACK_OBJECT_MAP ||
            blc_mp_i64(&m.u.data, "revision", &tmp.revision) != 0 ||
            blc_mp_i64(&m.u.data, "lease", &tmp.lease) != 0) {
            rv = BALLAST_EPROTO;
        } else if (prev && r) {
            rv = blc_kvs_decode(prev, 1, &tmp.prev);
            tmp.has_prev = rv == 0;
        }
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        } else if (r) {
            *r = tmp;
        }
    }
    blc_mp_reply_free(&m);
    free(t.p);
    return rv;
}

void ballast_put_result_free(struct ballast_put_result *r)
{
    if (r) {
        free(r->prev);
        memset(r, 0, sizeof *r);
    }
}

/* Add "wait" and "index" for a long-poll (Consul's blocking query) to @t;
 * returns how much longer than a plain read its answer may take. */
static unsigned long_poll_query(struct sbuf *t, int64_t index, unsigned wait_ms)
{
    if (wait_ms > 0) {
        blc_sb_query_ms(t, "wait", wait_ms);
    }
    if (index <= 0) {
        return 0; /* the server answers at once */
    }
    blc_sb_query_i64(t, "index", index);
    unsigned w = wait_ms ? wait_ms : LONG_POLL_DEFAULT_MS;
    return w + w / 16; /* and a margin for a server that adds jitter */
}

static int get_call(struct ballast_client *c, const void *key, size_t klen,
                    const struct ballast_get_opts *o, struct ballast_kv **out, int64_t *revision)
{
    if (out) {
        *out = NULL;
    }
    if (revision) {
        *revision = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!out) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL out");
    }
    int rv = blc_check_key(c, key, klen, 0);
    if (rv != 0) {
        return rv;
    }
    if (o->index < 0) {
        return blc_set_err(c, BALLAST_EBADARG, "negative index");
    }
    struct sbuf t = {0};
    kv_target(&t, key, klen);
    if (o->consistency == BALLAST_SERIALIZABLE) {
        blc_sb_query(&t, "consistency", "serializable");
    }
    unsigned extra = long_poll_query(&t, o->index, o->wait_ms);
    if (t.oom) {
        free(t.p);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", t.p);
    rq.extra_ms = extra;
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        rv = blc_kvs_decode(&m.u.data, 1, out);
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        }
    }
    if (revision && m.rs.revision > 0 && (rv == 0 || rv == BALLAST_ENOTFOUND)) {
        *revision = m.rs.revision;
    }
    blc_mp_reply_free(&m);
    free(t.p);
    return rv;
}

int ballast_get(struct ballast_client *c, const void *key, size_t klen, int consistency,
                struct ballast_kv **out)
{
    struct ballast_get_opts o = {0};
    o.consistency = consistency;
    return get_call(c, key, klen, &o, out, NULL);
}

int ballast_get_wait(struct ballast_client *c, const void *key, size_t klen,
                     const struct ballast_get_opts *o, struct ballast_kv **out, int64_t *revision)
{
    static const struct ballast_get_opts defaults = {0};
    return get_call(c, key, klen, o ? o : &defaults, out, revision);
}

void ballast_kv_free(struct ballast_kv *kv)
{
    free(kv);
}

int ballast_delete(struct ballast_client *c, const void *key, size_t klen,
                   const struct ballast_delete_opts *o, struct ballast_delete_result *r)
{
    static const struct ballast_delete_opts defaults = BALLAST_DELETE_OPTS_INIT;
    if (r) {
        memset(r, 0, sizeof *r);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!o) {
        o = &defaults;
    }
    int rv = blc_check_key(c, key, klen, o->prefix);
    if (rv != 0) {
        return rv;
    }
    if (o->cas < BALLAST_NO_CAS) {
        return blc_set_err(c, BALLAST_EBADARG, "negative cas");
    }
    struct sbuf t = {0};
    kv_target(&t, key, klen);
    if (o->prefix) {
        blc_sb_query(&t, "prefix", NULL);
    }
    if (o->cas >= 0) {
        blc_sb_query_i64(&t, "cas", o->cas);
    }
    if (o->prev) {
        blc_sb_query(&t, "prev", NULL);
    }
    if (t.oom) {
        free(t.p);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    struct req rq;
    blc_req_init(c, &rq, "DELETE", t.p);
    rq.cas = o->cas >= 0;
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_delete_result tmp = {0};
        if (m.u.data.type != MSGPACK_OBJECT_MAP ||
            blc_mp_i64(&m.u.data, "revision", &tmp.revision) != 0 ||
            blc_mp_i64(&m.u.data, "deleted", &tmp.deleted) != 0) {
            rv = BALLAST_EPROTO;
        } else if (r) {
            rv = blc_kvs_field(&m.u.data, "prev_kvs", &tmp.prev_kvs, &tmp.n_prev);
        }
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        } else if (r) {
            *r = tmp;
        }
    }
    blc_mp_reply_free(&m);
    free(t.p);
    return rv;
}

void ballast_delete_result_free(struct ballast_delete_result *r)
{
    if (r) {
        free(r->prev_kvs);
        memset(r, 0, sizeof *r);
    }
}

int ballast_range(struct ballast_client *c, const void *prefix, size_t plen,
                  const struct ballast_range_opts *o, struct ballast_range_result *r)
{
    static const struct ballast_range_opts defaults = {0};
    if (r) {
        memset(r, 0, sizeof *r);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!r) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL result");
    }
    if (!o) {
        o = &defaults;
    }
    int rv = blc_check_key(c, prefix, plen, 1);
    if (rv == 0 && o->after) {
        rv = blc_check_key(c, o->after, o->after_len, 1);
    }
    if (rv == 0 && o->index < 0) {
        rv = blc_set_err(c, BALLAST_EBADARG, "negative index");
    }
    if (rv != 0) {
        return rv;
    }
    struct sbuf t = {0};
    kv_target(&t, prefix, plen);
    blc_sb_query(&t, "prefix", NULL);
    if (o->limit > 0) {
        blc_sb_query_i64(&t, "limit", o->limit);
    }
    if (o->after && o->after_len > 0) {
        blc_sb_str(&t, "&after=");
        blc_sb_escape(&t, o->after, o->after_len);
    }
    if (o->keys_only) {
        blc_sb_query(&t, "keys", NULL);
    }
    if (o->count_only) {
        blc_sb_query(&t, "count", NULL);
    }
    if (o->consistency == BALLAST_SERIALIZABLE) {
        blc_sb_query(&t, "consistency", "serializable");
    }
    unsigned extra = long_poll_query(&t, o->index, o->wait_ms);
    if (t.oom) {
        free(t.p);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", t.p);
    rq.extra_ms = extra;
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_range_result tmp = {0};
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_bool(&m.u.data, "more", &tmp.more) != 0 ||
            blc_mp_i64(&m.u.data, "count", &tmp.count) != 0 ||
            blc_mp_i64(&m.u.data, "revision", &tmp.revision) != 0) {
            rv = BALLAST_EPROTO;
        } else {
            rv = blc_kvs_field(&m.u.data, "kvs", &tmp.kvs, &tmp.n);
        }
        if (tmp.revision == 0 && m.rs.revision > 0) {
            tmp.revision = m.rs.revision;
        }
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        } else {
            *r = tmp;
        }
    }
    blc_mp_reply_free(&m);
    free(t.p);
    return rv;
}

void ballast_range_result_free(struct ballast_range_result *r)
{
    if (r) {
        free(r->kvs);
        memset(r, 0, sizeof *r);
    }
}

/* GET /v1/status from @endpoint (NULL: with failover). */
static int status_call(struct ballast_client *c, const char *endpoint, struct ballast_status **out)
{
    if (out) {
        *out = NULL;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!out) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL out");
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", "/v1/status");
    struct mp_reply m;
    int rv = mp_call_at(c, &rq, &m, endpoint);
    if (rv == 0) {
        rv = status_decode(&m.u.data, c->last_ep, out);
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

int ballast_status(struct ballast_client *c, struct ballast_status **out)
{
    return status_call(c, NULL, out);
}

int ballast_status_endpoint(struct ballast_client *c, const char *endpoint,
                            struct ballast_status **out)
{
    if (c && !endpoint) {
        if (out) {
            *out = NULL;
        }
        return blc_set_err(c, BALLAST_EBADARG, "NULL endpoint");
    }
    return status_call(c, endpoint, out);
}

int ballast_members(struct ballast_client *c, struct ballast_member **out, size_t *n)
{
    if (out) {
        *out = NULL;
    }
    if (n) {
        *n = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!out || !n) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL out");
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", "/v1/members");
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        rv = m.u.data.type == MSGPACK_OBJECT_ARRAY ? members_decode(&m.u.data, out, n)
                                                   : BALLAST_EPROTO;
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

int ballast_leader_transfer(struct ballast_client *c, uint64_t to, uint64_t *new_leader)
{
    if (new_leader) {
        *new_leader = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    /* {"to": to} as fixmap(1), fixstr "to", uint64; {} for the best candidate */
    unsigned char body[13] = {0x81, 0xa2, 't', 'o', 0xcf};
    size_t len = 13;
    for (int i = 0; i < 8; i++) {
        body[5 + i] = (unsigned char)(to >> (56 - 8 * i));
    }
    if (to == 0) {
        body[0] = 0x80;
        len = 1;
    }
    struct req rq;
    blc_req_init(c, &rq, "POST", "/v1/leader");
    rq.body = body;
    rq.body_len = len;
    rq.has_body = 1;
    rq.content_type = CT_MSGPACK;
    /* Asking again for one target is harmless: once it leads, the server
     * answers 200 without an election. Asking again for "the best" could
     * move leadership a second time, so that request is never resent. A 504
     * says the target did not take over in time (and who leads): final. */
    rq.cas = to != 0;
    rq.once = to == 0;
    rq.final_504 = 1;
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        uint64_t leader = 0;
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_u64(&m.u.data, "leader", &leader) != 0 ||
            leader == 0) {
            rv = blc_bad_reply(c, BALLAST_EPROTO, &rq);
        } else if (new_leader) {
            *new_leader = leader;
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

/* --- members ---------------------------------------------------------------- */

/* Decode the member object of a 2xx reply into *@out (when @out is set). */
static int member_reply(struct ballast_client *c, const struct req *rq, const struct mp_reply *m,
                        struct ballast_member **out)
{
    struct ballast_member *mb = calloc(1, sizeof *mb);
    if (!mb) {
        return blc_bad_reply(c, BALLAST_ENOMEM, rq);
    }
    int r = member_decode(&m->u.data, mb);
    if (r == 0 && mb->id == 0) {
        r = -1; /* a member object always names its id */
    }
    if (r != 0) {
        ballast_members_free(mb, 1);
        return blc_bad_reply(c, r == -2 ? BALLAST_ENOMEM : BALLAST_EPROTO, rq);
    }
    if (out) {
        *out = mb;
    } else {
        ballast_members_free(mb, 1);
    }
    return 0;
}

int blc_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

int ballast_member_add(struct ballast_client *c, const char *name, const char *peer_url,
                       const char *client_url, int voter, uint64_t id, struct ballast_member **out)
{
    if (out) {
        *out = NULL;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!name || !*name || !peer_url || !*peer_url) {
        return blc_set_err(c, BALLAST_EBADARG, "a member needs a name and a peer URL");
    }
    int has_client = client_url && *client_url;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int r = msgpack_pack_map(&pk, 3 + (size_t)has_client + (id != 0));
    r |= blc_pack_str(&pk, "name") | blc_pack_str(&pk, name);
    r |= blc_pack_str(&pk, "peer_url") | blc_pack_str(&pk, peer_url);
    if (has_client) {
        r |= blc_pack_str(&pk, "client_url") | blc_pack_str(&pk, client_url);
    }
    if (id != 0) {
        r |= blc_pack_str(&pk, "id") | msgpack_pack_uint64(&pk, id);
    }
    r |= blc_pack_str(&pk, "role") | blc_pack_str(&pk, voter ? "voter" : "learner");
    if (r != 0) {
        msgpack_sbuffer_destroy(&sb);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory building a request");
    }
    struct req rq;
    blc_req_init(c, &rq, "POST", "/v1/members");
    rq.body = sb.data;
    rq.body_len = sb.size;
    rq.has_body = 1;
    rq.content_type = CT_MSGPACK;
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        rv = member_reply(c, &rq, &m, out);
    }
    blc_mp_reply_free(&m);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

int ballast_member_remove(struct ballast_client *c, uint64_t id)
{
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (id == 0) {
        return blc_set_err(c, BALLAST_EBADARG, "member id 0");
    }
    char target[64];
    snprintf(target, sizeof target, "/v1/members/%llu", (unsigned long long)id);
    struct req rq;
    blc_req_init(c, &rq, "DELETE", target);
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == BALLAST_ENOTFOUND && m.rs.status == 404 && m.rs.after_maybe) {
        rv = 0; /* an earlier attempt that may have been executed removed it */
    } else if (rv == 0) {
        uint64_t removed = id;
        if (m.u.data.type != MSGPACK_OBJECT_MAP ||
            blc_mp_u64(&m.u.data, "removed", &removed) != 0 || removed != id) {
            rv = blc_bad_reply(c, BALLAST_EPROTO, &rq);
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

int ballast_member_promote(struct ballast_client *c, uint64_t id, struct ballast_member **out)
{
    if (out) {
        *out = NULL;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (id == 0) {
        return blc_set_err(c, BALLAST_EBADARG, "member id 0");
    }
    char target[64];
    snprintf(target, sizeof target, "/v1/members/%llu/promote", (unsigned long long)id);
    struct req rq;
    blc_req_init(c, &rq, "POST", target);
    rq.body = "";
    rq.has_body = 1;
    /* Promoting a voter is a no-op: a repeat is harmless. The server waits
     * for the learner to catch up before it answers, and its 504 is the
     * verdict that it did not in time. */
    rq.cas = 1;
    rq.final_504 = 1;
    rq.long_head = 1;
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        rv = member_reply(c, &rq, &m, out);
    }
    blc_mp_reply_free(&m);
    return rv;
}

/* --- snapshot save --------------------------------------------------------- */

#define BACKUP_MAGIC  "BLSNAP1" /* 8 bytes with the NUL; raft_glue/backup.h */
#define BACKUP_HEADER 32

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The light check of a received backup of @size bytes in @fd: magic,
 * length, FNV-1a 64 checksum of the image (docs/backup.md). */
static int check_backup(struct ballast_client *c, int fd, const char *name, uint64_t size)
{
    unsigned char head[BACKUP_HEADER];
    if (size < BACKUP_HEADER || pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head) {
        return blc_set_err(c, BALLAST_EPROTO, "snapshot: %llu bytes received, not a whole backup",
                           (unsigned long long)size);
    }
    if (memcmp(head, BACKUP_MAGIC, 8) != 0) {
        return blc_set_err(c, BALLAST_EPROTO,
                           "snapshot: the body is not a Ballast backup (bad magic)");
    }
    uint64_t len = le64(head + 16), sum = le64(head + 24);
    if (len != size - BACKUP_HEADER) {
        return blc_set_err(c, BALLAST_EPROTO,
                           "snapshot: the header announces %llu image bytes, %llu were received",
                           (unsigned long long)len, (unsigned long long)(size - BACKUP_HEADER));
    }
    if (sum == 0) {
        return blc_set_err(c, BALLAST_EPROTO, "snapshot: the backup carries no checksum");
    }
    unsigned char *buf = malloc(HEAD_MAX);
    if (!buf) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory checking %s", name);
    }
    uint64_t h = UINT64_C(0xcbf29ce484222325), off = BACKUP_HEADER;
    int rv = 0;
    while (off < size) {
        size_t want = size - off < HEAD_MAX ? (size_t)(size - off) : HEAD_MAX;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rv =
                blc_set_err(c, BALLAST_EIO, "read %s: %s", name, r < 0 ? strerror(errno) : "short");
            break;
        }
        for (ssize_t i = 0; i < r; i++) {
            h = (h ^ buf[i]) * UINT64_C(0x100000001b3);
        }
        off += (uint64_t)r;
    }
    free(buf);
    if (rv == 0 && h != sum) {
        rv = blc_set_err(c, BALLAST_EPROTO,
                         "snapshot: checksum mismatch (header %016llx, received %016llx): "
                         "the body is damaged",
                         (unsigned long long)sum, (unsigned long long)h);
    }
    return rv;
}

/* fsync the directory holding @path. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rv = fsync(fd);
    close(fd);
    return rv;
}

int ballast_snapshot_save(struct ballast_client *c, const char *path, uint64_t *revision)
{
    if (revision) {
        *revision = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!path || !*path) {
        return blc_set_err(c, BALLAST_EBADARG, "no file to save the snapshot to");
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rv = blc_set_err(c, BALLAST_EIO, "create %s: %s", tmp, strerror(errno));
        free(tmp);
        return rv;
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", "/v1/snapshot");
    rq.sink = 1;
    rq.sink_fd = fd;
    rq.sink_name = tmp;
    rq.long_head = 1;
    struct resp rs = {0};
    int rv = call(c, &rq, &rs, NULL);
    if (rv == 0 && (rs.status < 200 || rs.status > 299)) {
        rv = blc_reply_error(c, c->last_ep, &rs);
    }
    if (rv == 0 && fsync(fd) != 0) {
        rv = blc_set_err(c, BALLAST_EIO, "fsync %s: %s", tmp, strerror(errno));
    }
    if (rv == 0) {
        rv = check_backup(c, fd, tmp, rs.sunk);
    }
    if (close(fd) != 0 && rv == 0) {
        rv = blc_set_err(c, BALLAST_EIO, "close %s: %s", tmp, strerror(errno));
    }
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = blc_set_err(c, BALLAST_EIO, "rename %s to %s: %s", tmp, path, strerror(errno));
    }
    if (rv == 0 && sync_parent(path) != 0) {
        rv = blc_set_err(c, BALLAST_EIO, "fsync the directory of %s: %s", path, strerror(errno));
    }
    if (rv != 0) {
        unlink(tmp);
    } else if (revision) {
        /* the backup's own revision; X-Ballast-Revision may be the store's now */
        int64_t r = rs.snap_revision >= 0 ? rs.snap_revision : rs.revision;
        *revision = r > 0 ? (uint64_t)r : 0;
    }
    blc_resp_reset(&rs);
    free(tmp);
    return rv;
}

/* Whether @s is a plausible HTTP method token / request target (no
 * spaces or control bytes that would break the request line). */
static int is_token(const char *s, int target)
{
    if (!s || !*s || (target && *s != '/')) {
        return 0;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int raw_request(struct ballast_client *c, const char *endpoint, const char *method,
                       const char *target, const void *body, size_t len, int accept_json,
                       int *status, void **resp_body, size_t *resp_len)
{
    if (status) {
        *status = 0;
    }
    if (resp_body) {
        *resp_body = NULL;
    }
    if (resp_len) {
        *resp_len = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!is_token(method, 0) || !is_token(target, 1) || (!body && len > 0) || !status ||
        !resp_body || !resp_len) {
        return blc_set_err(c, BALLAST_EBADARG, "bad raw request arguments");
    }
    struct req rq;
    blc_req_init(c, &rq, method, target);
    rq.accept_json = accept_json;
    rq.body = body ? body : "";
    rq.body_len = len;
    rq.has_body = len > 0 || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0;
    if (rq.has_body) {
        rq.content_type = strncmp(target, "/v1/kv/", 7) == 0 ? CT_OCTET_STREAM
                          : accept_json                      ? CT_JSON
                                                             : CT_MSGPACK;
    }
    rq.cas = rq.write && (strstr(target, "?cas=") || strstr(target, "&cas="));
    struct resp rs = {0};
    int rv = call(c, &rq, &rs, endpoint);
    if (rv != 0) {
        return rv;
    }
    if (rs.status < 200 || rs.status > 299) {
        rv = blc_reply_error(c, c->last_ep, &rs);
    }
    *status = rs.status;
    *resp_body = rs.body;
    *resp_len = rs.body_len;
    return rv;
}

int ballast_raw_request(struct ballast_client *c, const char *method, const char *target,
                        const void *body, size_t len, int accept_json, int *status,
                        void **resp_body, size_t *resp_len)
{
    return raw_request(c, NULL, method, target, body, len, accept_json, status, resp_body,
                       resp_len);
}

int ballast_raw_request_endpoint(struct ballast_client *c, const char *endpoint, const char *method,
                                 const char *target, const void *body, size_t len, int accept_json,
                                 int *status, void **resp_body, size_t *resp_len)
{
    if (c && !endpoint) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL endpoint");
    }
    return raw_request(c, endpoint, method, target, body, len, accept_json, status, resp_body,
                       resp_len);
}
