/* Tests for libballast (client/client.c) against a fake Ballast server.
 *
 * The fake server is written here: a listening socket on 127.0.0.1 port 0
 * served by a pthread that polls its connections, reads whole requests
 * (head and Content-Length body), records each one (method, target,
 * headers, body, arrival time, connection) and answers it with the next
 * step of a script the test wrote beforehand: canned bytes (any status,
 * msgpack built with msgpack-c's packer, chunked, garbage), the same then
 * close (a stale keep-alive), close right after reading the request (a lost
 * answer), or never answer (a hung member). The last step repeats. A
 * "refused" endpoint is a socket bound to a port but not listening, so
 * connects to it are refused and nobody else can take the port. A step may
 * wait before it answers (a long-poll held by the server). A watch stream
 * is a canned chunked msgpack body whose events straddle chunks; a step
 * that sends it and closes without the last chunk is a lost connection,
 * one that sends it and stays open is a silent member.
 *
 * The client side is the public API only. Timing claims of the retry rules
 * (no wait before the next endpoint after a 503, a backoff of at least
 * Retry-After after a whole pass of 503s, attempt and call deadlines) are
 * checked on the server's arrival times and the call's duration, with
 * short timeouts in struct ballast_options. Every wait is bounded: server
 * sockets have send timeouts, the fixture teardown wakes and joins every
 * server thread, and the test cases have a Check timeout. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ballast.h"

#define MAX_STEPS 32
#define MAX_RECS  64
#define MAX_CONNS 16
#define MAX_SRVS  32
#define MAX_CLIS  4
#define REQ_MAX   (1024 * 1024) /* a request the fake server accepts */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* --- the fake server ---------------------------------------------------------- */

/* What the server does with one request. */
enum act {
    ACT_REPLY,       /* send the response, keep the connection */
    ACT_REPLY_CLOSE, /* send it, then close without saying so (stale keep-alive) */
    ACT_CLOSE,       /* close as soon as the request is in (the answer is lost) */
    ACT_HANG,        /* never answer; the connection stays open until the test ends */
};

/* A byte string (a canned response). */
struct blob {
    char *p;
    size_t n;
};

struct step {
    enum act act;
    struct blob resp;  /* owned */
    size_t piece;      /* > 0: written in pieces of this many bytes, 2 ms apart */
    unsigned delay_ms; /* wait this long before answering (a long-poll) */
};

/* One request as the server saw it. */
struct rec {
    char method[16];
    char *target;
    char *head; /* the whole head, NUL-terminated */
    char id[80];
    char accept[80];
    char ctype[80];
    char host[80];
    int has_id, has_cl;
    char *body;
    size_t body_len;
    int64_t t_ms;  /* arrival of the whole request (now_ms()) */
    unsigned conn; /* accept order of its connection, from 1 */
};

struct fconn {
    int fd; /* -1: free slot */
    unsigned id;
    int hung;
    char *buf;
    size_t len, cap;
};

struct fsrv {
    int fd;
    int port;
    char name[32]; /* "127.0.0.1:port" */
    int refused;   /* bound but not listening: no thread */
    pthread_t th;
    int wake[2];
    pthread_mutex_t mu;
    /* under mu */
    struct step steps[MAX_STEPS];
    size_t n_steps, next;
    struct rec recs[MAX_RECS];
    size_t n_recs;
    unsigned accepted, closed;
    /* the thread's own */
    struct fconn conns[MAX_CONNS];
};

static const char NO_SCRIPT[] =
    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"; /* no step given */

/* Value of header @name in request head @head into @out ("" and 0 when absent). */
static int hdr_get(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ') {
                v++;
            }
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            snprintf(out, outlen, "%.*s", (int)n, v);
            return 1;
        }
    }
    return 0;
}

static void fconn_close(struct fsrv *s, struct fconn *c)
{
    close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    c->hung = 0;
    pthread_mutex_lock(&s->mu);
    s->closed++;
    pthread_mutex_unlock(&s->mu);
}

static void send_all(int fd, const char *p, size_t n, size_t piece)
{
    while (n > 0) {
        size_t k = piece > 0 && piece < n ? piece : n;
        ssize_t w = send(fd, p, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return; /* the client went away (or the send timed out) */
        }
        p += w;
        n -= (size_t)w;
        if (piece > 0 && n > 0) {
            sleep_ms(2);
        }
    }
}

/* Record the request of @hl head bytes and @bl body bytes at the start of
 * @c's buffer, pick its step and carry it out. Returns 0 when the
 * connection is still open and not hung. */
static int handle_request(struct fsrv *s, struct fconn *c, size_t hl, size_t bl)
{
    struct rec r;
    char cl[32];
    memset(&r, 0, sizeof r);
    r.head = strndup(c->buf, hl);
    r.body = malloc(bl + 1);
    if (!r.head || !r.body) {
        abort();
    }
    memcpy(r.body, c->buf + hl, bl);
    r.body[bl] = '\0';
    r.body_len = bl;
    const char *sp1 = strchr(r.head, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 && sp2) {
        snprintf(r.method, sizeof r.method, "%.*s", (int)(sp1 - r.head), r.head);
        r.target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    } else {
        r.target = strdup("");
    }
    r.has_id = hdr_get(r.head, "X-Ballast-Request-Id", r.id, sizeof r.id);
    hdr_get(r.head, "Accept", r.accept, sizeof r.accept);
    hdr_get(r.head, "Content-Type", r.ctype, sizeof r.ctype);
    hdr_get(r.head, "Host", r.host, sizeof r.host);
    r.has_cl = hdr_get(r.head, "Content-Length", cl, sizeof cl);
    r.t_ms = now_ms();
    r.conn = c->id;

    const struct step *st = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_recs < MAX_RECS) {
        s->recs[s->n_recs++] = r;
    } else {
        free(r.head);
        free(r.target);
        free(r.body);
    }
    if (s->n_steps > 0) {
        st = &s->steps[s->next < s->n_steps ? s->next : s->n_steps - 1];
    }
    s->next++;
    pthread_mutex_unlock(&s->mu);

    /* consume the request */
    memmove(c->buf, c->buf + hl + bl, c->len - hl - bl);
    c->len -= hl + bl;

    if (!st) {
        send_all(c->fd, NO_SCRIPT, strlen(NO_SCRIPT), 0);
        return 0;
    }
    if (st->delay_ms > 0) {
        sleep_ms(st->delay_ms);
    }
    switch (st->act) {
    case ACT_REPLY:
        send_all(c->fd, st->resp.p, st->resp.n, st->piece);
        return 0;
    case ACT_REPLY_CLOSE:
        send_all(c->fd, st->resp.p, st->resp.n, st->piece);
        fconn_close(s, c);
        return -1;
    case ACT_CLOSE:
        fconn_close(s, c);
        return -1;
    case ACT_HANG:
        c->hung = 1;
        return -1;
    }
    return 0;
}

/* Read what @c has and serve every whole request in it. */
static void fconn_read(struct fsrv *s, struct fconn *c)
{
    if (c->cap - c->len < 4096) {
        size_t ncap = c->cap ? c->cap * 2 : 8192;
        char *nb = ncap <= 2 * REQ_MAX ? realloc(c->buf, ncap) : NULL;
        if (!nb) {
            fconn_close(s, c);
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (r < 0 && errno == EINTR) {
        return;
    }
    if (r <= 0) {
        fconn_close(s, c);
        return;
    }
    if (c->hung) {
        return; /* a hung member reads and ignores */
    }
    c->len += (size_t)r;
    for (;;) {
        const char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!e) {
            return;
        }
        size_t hl = (size_t)(e - c->buf) + 4;
        size_t bl = 0;
        char head[8192], cl[32];
        snprintf(head, sizeof head, "%.*s", (int)(hl < sizeof head ? hl : sizeof head - 1), c->buf);
        if (hdr_get(head, "Content-Length", cl, sizeof cl)) {
            bl = strtoul(cl, NULL, 10);
        }
        if (bl > REQ_MAX) {
            fconn_close(s, c);
            return;
        }
        if (c->len < hl + bl) {
            return;
        }
        if (handle_request(s, c, hl, bl) != 0) {
            return;
        }
    }
}

static void *srv_main(void *arg)
{
    struct fsrv *s = arg;
    for (;;) {
        struct pollfd p[2 + MAX_CONNS];
        int slot[2 + MAX_CONNS];
        nfds_t n = 2;
        p[0] = (struct pollfd){s->wake[0], POLLIN, 0};
        p[1] = (struct pollfd){s->fd, POLLIN, 0};
        for (int i = 0; i < MAX_CONNS; i++) {
            if (s->conns[i].fd >= 0) {
                p[n] = (struct pollfd){s->conns[i].fd, POLLIN, 0};
                slot[n++] = i;
            }
        }
        if (poll(p, n, 1000) < 0 && errno != EINTR) {
            break;
        }
        if (p[0].revents) {
            break;
        }
        for (nfds_t i = 2; i < n; i++) {
            if (p[i].revents) {
                fconn_read(s, &s->conns[slot[i]]);
            }
        }
        if (p[1].revents & POLLIN) {
            int fd = accept(s->fd, NULL, NULL);
            if (fd < 0) {
                continue;
            }
            struct timeval tv = {2, 0};
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            pthread_mutex_lock(&s->mu);
            unsigned id = ++s->accepted;
            pthread_mutex_unlock(&s->mu);
            int i = 0;
            while (i < MAX_CONNS && s->conns[i].fd >= 0) {
                i++;
            }
            if (i == MAX_CONNS) {
                close(fd);
                continue;
            }
            s->conns[i] = (struct fconn){fd, id, 0, NULL, 0, 0};
        }
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (s->conns[i].fd >= 0) {
            fconn_close(s, &s->conns[i]);
        }
    }
    return NULL;
}

/* Servers and clients of the running test, released by the teardown. */
static struct fsrv *g_srv[MAX_SRVS];
static size_t g_nsrv;
static struct ballast_client *g_cli[MAX_CLIS];
static size_t g_ncli;

static struct fsrv *srv_new(int listening)
{
    struct fsrv *s = calloc(1, sizeof *s);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_lt(g_nsrv, MAX_SRVS);
    g_srv[g_nsrv++] = s;
    s->wake[0] = s->wake[1] = -1;
    s->refused = !listening;
    pthread_mutex_init(&s->mu, NULL);
    for (int i = 0; i < MAX_CONNS; i++) {
        s->conns[i].fd = -1;
    }
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s->fd, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    snprintf(s->name, sizeof s->name, "127.0.0.1:%d", s->port);
    if (!listening) {
        return s;
    }
    ck_assert_int_eq(listen(s->fd, 16), 0);
    ck_assert_int_eq(pipe(s->wake), 0);
    ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

/* A member that answers as scripted with srv_push(). */
static struct fsrv *srv_start(void)
{
    return srv_new(1);
}

/* A port where connections are refused. */
static struct fsrv *srv_refused(void)
{
    return srv_new(0);
}

static void srv_free(struct fsrv *s)
{
    if (!s->refused) {
        ssize_t w = write(s->wake[1], "x", 1);
        (void)w;
        pthread_join(s->th, NULL);
        close(s->wake[0]);
        close(s->wake[1]);
    }
    close(s->fd);
    for (size_t i = 0; i < s->n_steps; i++) {
        free(s->steps[i].resp.p);
    }
    for (size_t i = 0; i < s->n_recs; i++) {
        free(s->recs[i].head);
        free(s->recs[i].target);
        free(s->recs[i].body);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Append a step to @s's script; @resp passes to the server. */
static void srv_push_step(struct fsrv *s, enum act act, struct blob resp, size_t piece,
                          unsigned delay_ms)
{
    pthread_mutex_lock(&s->mu);
    ck_assert_uint_lt(s->n_steps, MAX_STEPS);
    s->steps[s->n_steps++] = (struct step){act, resp, piece, delay_ms};
    pthread_mutex_unlock(&s->mu);
}

static void srv_push_piece(struct fsrv *s, enum act act, struct blob resp, size_t piece)
{
    srv_push_step(s, act, resp, piece, 0);
}

static void srv_push(struct fsrv *s, enum act act, struct blob resp)
{
    srv_push_piece(s, act, resp, 0);
}

static size_t srv_nrecs(struct fsrv *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_recs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Request @i seen by @s (a record never changes once made). */
static const struct rec *srv_rec(struct fsrv *s, size_t i)
{
    size_t n = srv_nrecs(s);
    ck_assert_msg(i < n, "%s saw %zu requests, want #%zu", s->name, n, i + 1);
    return &s->recs[i];
}

static unsigned srv_accepted(struct fsrv *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->accepted;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Wait (at most 2 s) until @s has closed @n connections. */
static void srv_wait_closed(struct fsrv *s, unsigned n)
{
    int64_t end = now_ms() + 2000;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        unsigned closed = s->closed;
        pthread_mutex_unlock(&s->mu);
        if (closed >= n) {
            return;
        }
        ck_assert_msg(now_ms() < end, "%s closed %u connections, want %u", s->name, closed, n);
        sleep_ms(2);
    }
}

static void setup(void)
{
    g_nsrv = 0;
    g_ncli = 0;
}

static void teardown(void)
{
    for (size_t i = 0; i < g_ncli; i++) {
        ballast_client_free(g_cli[i]);
    }
    g_ncli = 0;
    for (size_t i = 0; i < g_nsrv; i++) {
        srv_free(g_srv[i]);
    }
    g_nsrv = 0;
}

/* A client of the @n servers that follow, with options @o (NULL: defaults). */
static struct ballast_client *client_for(const struct ballast_options *o, int n, ...)
{
    char eps[256] = "", err[256] = "";
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const struct fsrv *s = va_arg(ap, const struct fsrv *);
        size_t l = strlen(eps);
        snprintf(eps + l, sizeof eps - l, "%s%s", i ? "," : "", s->name);
    }
    va_end(ap);
    struct ballast_client *c = ballast_client_new(eps, o, err, sizeof err);
    ck_assert_msg(c != NULL, "ballast_client_new(%s): %s", eps, err);
    ck_assert_uint_lt(g_ncli, MAX_CLIS);
    g_cli[g_ncli++] = c;
    return c;
}

/* --- responses ---------------------------------------------------------------- */

static struct blob blob_dup(const void *p, size_t n)
{
    struct blob b = {malloc(n + 1), n};
    ck_assert_ptr_nonnull(b.p);
    memcpy(b.p, p, n);
    b.p[n] = '\0';
    return b;
}

/* Exactly the bytes of @text. */
static struct blob raw_resp(const char *text)
{
    return blob_dup(text, strlen(text));
}

/* A whole response: status @status, @headers ("Name: value\r\n" lines), a
 * Content-Type when @ctype is not NULL, Content-Length and @body. */
static struct blob http_resp(int status, const char *headers, const char *ctype, const void *body,
                             size_t len)
{
    char head[1024];
    int hn = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\n%s%s%s%sContent-Length: %zu\r\n\r\n",
                      status, headers, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                      ctype ? "\r\n" : "", len);
    ck_assert(hn > 0 && (size_t)hn < sizeof head);
    struct blob b = {malloc((size_t)hn + len + 1), (size_t)hn + len};
    ck_assert_ptr_nonnull(b.p);
    memcpy(b.p, head, (size_t)hn);
    if (len > 0) {
        memcpy(b.p + hn, body, len);
    }
    b.p[b.n] = '\0';
    return b;
}

/* A msgpack buffer and its packer. */
struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(struct mp *m, const char *s)
{
    msgpack_pack_str(&m->pk, strlen(s));
    msgpack_pack_str_body(&m->pk, s, strlen(s));
}

static void mp_bin(struct mp *m, const void *p, size_t n)
{
    msgpack_pack_bin(&m->pk, n);
    msgpack_pack_bin_body(&m->pk, p, n);
}

/* A kv map as the server writes it; no "value" field when @v is NULL. */
static void mp_kv(struct mp *m, const void *k, size_t kl, const void *v, size_t vl, int64_t crev,
                  int64_t mrev, int64_t ver, int64_t lease)
{
    msgpack_pack_map(&m->pk, v ? 6 : 5);
    mp_str(m, "key");
    mp_bin(m, k, kl);
    if (v) {
        mp_str(m, "value");
        mp_bin(m, v, vl);
    }
    mp_str(m, "create_revision");
    msgpack_pack_int64(&m->pk, crev);
    mp_str(m, "mod_revision");
    msgpack_pack_int64(&m->pk, mrev);
    mp_str(m, "version");
    msgpack_pack_int64(&m->pk, ver);
    mp_str(m, "lease");
    msgpack_pack_int64(&m->pk, lease);
}

/* A msgpack response with the body packed in @m (destroyed). */
static struct blob mp_resp(int status, const char *headers, struct mp *m)
{
    struct blob b = http_resp(status, headers, "application/msgpack", m->sb.data, m->sb.size);
    msgpack_sbuffer_destroy(&m->sb);
    return b;
}

/* 200 {"revision": rev} */
static struct blob rev_resp(int64_t rev)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, rev);
    return mp_resp(200, "", &m);
}

/* 200 with a kv object. */
static struct blob kv_resp(const char *key, const char *value, int64_t mrev)
{
    struct mp m;
    mp_init(&m);
    mp_kv(&m, key, strlen(key), value, strlen(value), 1, mrev, 1, 0);
    return mp_resp(200, "", &m);
}

/* An error answer {"error": {"code": .., "message": ..}} in msgpack. */
static struct blob err_resp(int status, const char *headers, const char *code, const char *msg)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "error");
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "code");
    mp_str(&m, code);
    mp_str(&m, "message");
    mp_str(&m, msg);
    return mp_resp(status, headers, &m);
}

static struct blob no_leader_resp(void)
{
    return err_resp(503, "Retry-After: 1\r\n", "no_leader", "no leader known (fake)");
}

/* @body sent chunked, @chunk bytes a chunk, with an extension on the first
 * chunk and a trailer. */
static struct blob chunked_resp(const void *body, size_t len, size_t chunk)
{
    size_t cap = 256 + len + (len / chunk + 1) * 32;
    struct blob b = {malloc(cap), 0};
    const char *p = body;
    ck_assert_ptr_nonnull(b.p);
    b.n = (size_t)snprintf(b.p, cap,
                           "HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < len; off += chunk) {
        size_t k = len - off < chunk ? len - off : chunk;
        b.n += (size_t)snprintf(b.p + b.n, cap - b.n, "%zx%s\r\n", k, off == 0 ? ";ext=1" : "");
        memcpy(b.p + b.n, p + off, k);
        b.n += k;
        memcpy(b.p + b.n, "\r\n", 2);
        b.n += 2;
    }
    b.n += (size_t)snprintf(b.p + b.n, cap - b.n, "0\r\nX-Trailer: yes\r\n\r\n");
    return b;
}

/* --- assertions on requests ----------------------------------------------------- */

/* A request id is 32 lowercase hex digits. */
static void assert_request_id(const struct rec *r)
{
    ck_assert_msg(r->has_id, "%s %s without X-Ballast-Request-Id", r->method, r->target);
    ck_assert_uint_eq(strlen(r->id), 32);
    ck_assert_uint_eq(strspn(r->id, "0123456789abcdef"), 32);
}

static void assert_req(const struct rec *r, const char *method, const char *target)
{
    ck_assert_str_eq(r->method, method);
    ck_assert_str_eq(r->target, target);
}

/* The key used throughout: '/', 0x00 and 0xff need escaping; and its wire form. */
static const char KEY[] = "dir/sub\0\xff";
#define KEY_LEN  ((size_t)9)
#define KEY_WIRE "/v1/kv/dir%2Fsub%00%FF"

/* --- decoding: put, get, delete, range, status, members ----------------------------- */

START_TEST(test_put_decodes_revision_and_prev)
{
    static const char val[] = "v\0\xffz";
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 42);
    mp_str(&m, "prev");
    mp_kv(&m, KEY, KEY_LEN, "old\0", 4, 5, 41, 3, 9);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    srv_push(s, ACT_REPLY, rev_resp(43));
    struct ballast_client *c = client_for(NULL, 1, s);

    struct ballast_put_opts po = BALLAST_PUT_OPTS_INIT;
    struct ballast_put_result r;
    po.cas = 4;
    po.lease = 9;
    po.prev = 1;
    ck_assert_int_eq(ballast_put(c, KEY, KEY_LEN, val, 4, &po, &r), 0);
    ck_assert_int_eq(r.revision, 42);
    ck_assert_int_ne(r.has_prev, 0);
    ck_assert_ptr_nonnull(r.prev);
    ck_assert_uint_eq(r.prev->key_len, KEY_LEN);
    ck_assert_mem_eq(r.prev->key, KEY, KEY_LEN);
    ck_assert_int_eq(r.prev->key[KEY_LEN], '\0');
    ck_assert_uint_eq(r.prev->value_len, 4);
    ck_assert_mem_eq(r.prev->value, "old\0", 4);
    ck_assert_int_eq(r.prev->value[4], '\0');
    ck_assert_int_eq(r.prev->create_revision, 5);
    ck_assert_int_eq(r.prev->mod_revision, 41);
    ck_assert_int_eq(r.prev->version, 3);
    ck_assert_int_eq(r.prev->lease, 9);
    ballast_put_result_free(&r);
    ck_assert_ptr_null(r.prev);
    ck_assert_int_eq(r.has_prev, 0);

    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "PUT", KEY_WIRE "?cas=4&lease=9&prev");
    ck_assert_uint_eq(q->body_len, 4);
    ck_assert_mem_eq(q->body, val, 4);
    ck_assert_str_eq(q->ctype, "application/octet-stream");
    ck_assert_str_eq(q->accept, "application/msgpack");
    ck_assert_str_eq(q->host, s->name);
    assert_request_id(q);

    /* no opts, empty value, an answer without prev */
    ck_assert_int_eq(ballast_put(c, KEY, KEY_LEN, NULL, 0, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 43);
    ck_assert_int_eq(r.has_prev, 0);
    ck_assert_ptr_null(r.prev);
    ballast_put_result_free(&r);
    q = srv_rec(s, 1);
    assert_req(q, "PUT", KEY_WIRE);
    ck_assert_int_ne(q->has_cl, 0);
    ck_assert_uint_eq(q->body_len, 0);
    /* cas 0 ("only if absent") and a NULL result */
    po = (struct ballast_put_opts)BALLAST_PUT_OPTS_INIT;
    po.cas = 0;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), 0);
    assert_req(srv_rec(s, 2), "PUT", "/v1/kv/k?cas=0");
    /* one keep-alive connection for all three */
    ck_assert_uint_eq(srv_accepted(s), 1);
}
END_TEST

START_TEST(test_get_decodes_kv)
{
    static const char val[] = "\0a\xff\0";
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    mp_kv(&m, KEY, KEY_LEN, val, 4, 7, 12, 2, 77);
    srv_push(s, ACT_REPLY, mp_resp(200, "X-Ballast-Revision: 12\r\n", &m));
    mp_init(&m);
    mp_kv(&m, "e", 1, NULL, 0, 3, 3, 1, 0); /* no value field */
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_kv *kv = NULL;

    ck_assert_int_eq(ballast_get(c, KEY, KEY_LEN, BALLAST_SERIALIZABLE, &kv), 0);
    ck_assert_ptr_nonnull(kv);
    ck_assert_uint_eq(kv->key_len, KEY_LEN);
    ck_assert_mem_eq(kv->key, KEY, KEY_LEN);
    ck_assert_int_eq(kv->key[KEY_LEN], '\0');
    ck_assert_uint_eq(kv->value_len, 4);
    ck_assert_mem_eq(kv->value, val, 4);
    ck_assert_int_eq(kv->value[4], '\0');
    ck_assert_int_eq(kv->create_revision, 7);
    ck_assert_int_eq(kv->mod_revision, 12);
    ck_assert_int_eq(kv->version, 2);
    ck_assert_int_eq(kv->lease, 77);
    ballast_kv_free(kv);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "GET", KEY_WIRE "?consistency=serializable");
    ck_assert_int_eq(q->has_id, 0); /* reads carry no request id */
    ck_assert_int_eq(q->has_cl, 0);
    ck_assert_str_eq(q->accept, "application/msgpack");

    ck_assert_int_eq(ballast_get(c, "e", 1, BALLAST_LINEARIZABLE, &kv), 0);
    ck_assert_ptr_nonnull(kv->value);
    ck_assert_uint_eq(kv->value_len, 0);
    ck_assert_str_eq(kv->value, "");
    ballast_kv_free(kv);
    assert_req(srv_rec(s, 1), "GET", "/v1/kv/e");
}
END_TEST

START_TEST(test_get_missing_key_not_found)
{
    struct fsrv *s = srv_start();
    srv_push(s, ACT_REPLY, err_resp(404, "", "not_found", "key \"dir/x\" not found"));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_kv *kv = (struct ballast_kv *)&kv;

    ck_assert_int_eq(ballast_get(c, "dir/x", 5, 0, &kv), BALLAST_ENOTFOUND);
    ck_assert_ptr_null(kv);
    ck_assert_str_eq(ballast_errmsg(c), "key \"dir/x\" not found");
    assert_req(srv_rec(s, 0), "GET", "/v1/kv/dir%2Fx");
    ck_assert_uint_eq(srv_nrecs(s), 1);
}
END_TEST

/* Error answers map to their codes, carry the server's message, and are
 * final: never retried, never failed over. */
START_TEST(test_error_answers_map_and_are_final)
{
    struct fsrv *s = srv_start(), *other = srv_start();
    srv_push(s, ACT_REPLY, err_resp(412, "", "cas_failed", "compare failed: mod_revision 3"));
    srv_push(s, ACT_REPLY, err_resp(413, "", "too_large", "value of 2000000 bytes is too large"));
    srv_push(s, ACT_REPLY, err_resp(507, "", "no_space", "store quota reached"));
    srv_push(s, ACT_REPLY, err_resp(400, "", "bad_request", "limit out of range"));
    srv_push(s, ACT_REPLY, err_resp(401, "", "unauthorized", "who are you"));
    srv_push(s, ACT_REPLY, err_resp(403, "", "forbidden", "not you"));
    srv_push(s, ACT_REPLY, err_resp(500, "", "internal", "disk on fire"));
    static const char json[] =
        "{\"error\": {\"code\": \"cas_failed\", \"message\": \"json \\\"cas\\\"\"}}";
    srv_push(s, ACT_REPLY, http_resp(412, "", "application/json", json, strlen(json)));
    srv_push(s, ACT_REPLY, http_resp(412, "", NULL, "", 0)); /* no body: status alone */
    srv_push(s, ACT_REPLY, http_resp(507, "", NULL, "", 0));
    srv_push(s, ACT_REPLY, err_resp(418, "", "teapot", "short and stout"));
    struct ballast_client *c = client_for(NULL, 2, s, other);
    struct ballast_put_opts po = BALLAST_PUT_OPTS_INIT;
    struct ballast_put_result r;
    struct ballast_range_opts ro = {0};
    struct ballast_range_result rr;
    struct ballast_kv *kv;
    char want[128];

    po.cas = 3;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, &r), BALLAST_ECASFAILED);
    ck_assert_int_eq(r.revision, 0);
    ck_assert_ptr_null(r.prev);
    ck_assert_str_eq(ballast_errmsg(c), "compare failed: mod_revision 3");
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_ETOOLARGE);
    ck_assert_str_eq(ballast_errmsg(c), "value of 2000000 bytes is too large");
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_ENOSPACE);
    ck_assert_str_eq(ballast_errmsg(c), "store quota reached");
    ro.limit = 10000;
    ck_assert_int_eq(ballast_range(c, "k", 1, &ro, &rr), BALLAST_EBADARG);
    ck_assert_ptr_null(rr.kvs);
    ck_assert_str_eq(ballast_errmsg(c), "limit out of range");
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_EUNAUTHORIZED);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_EFORBIDDEN);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_ESERVER);
    ck_assert_str_eq(ballast_errmsg(c), "disk on fire");
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), BALLAST_ECASFAILED);
    ck_assert_str_eq(ballast_errmsg(c), "json \"cas\"");
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), BALLAST_ECASFAILED);
    snprintf(want, sizeof want, "HTTP 412 from %s", s->name);
    ck_assert_str_eq(ballast_errmsg(c), want);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_ENOSPACE);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_ESERVER);
    ck_assert_str_eq(ballast_errmsg(c), "short and stout");
    ck_assert_ptr_null(kv);

    ck_assert_uint_eq(srv_nrecs(s), 11);
    ck_assert_uint_eq(srv_nrecs(other), 0);
    ck_assert_str_eq(ballast_current_endpoint(c), s->name);
}
END_TEST

START_TEST(test_delete_decodes_prev_kvs)
{
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 20);
    mp_str(&m, "deleted");
    msgpack_pack_int64(&m.pk, 2);
    mp_str(&m, "prev_kvs");
    msgpack_pack_array(&m.pk, 2);
    mp_kv(&m, "p/a", 3, "1", 1, 4, 5, 2, 0);
    mp_kv(&m, KEY, KEY_LEN, "\xff", 1, 6, 19, 1, 3);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 20);
    mp_str(&m, "deleted");
    msgpack_pack_int64(&m.pk, 0);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_delete_opts o = BALLAST_DELETE_OPTS_INIT;
    struct ballast_delete_result r;

    o.prefix = 1;
    o.prev = 1;
    o.cas = 5;
    ck_assert_int_eq(ballast_delete(c, "p/", 2, &o, &r), 0);
    ck_assert_int_eq(r.revision, 20);
    ck_assert_int_eq(r.deleted, 2);
    ck_assert_uint_eq(r.n_prev, 2);
    ck_assert_ptr_nonnull(r.prev_kvs);
    ck_assert_str_eq(r.prev_kvs[0].key, "p/a");
    ck_assert_str_eq(r.prev_kvs[0].value, "1");
    ck_assert_int_eq(r.prev_kvs[0].version, 2);
    ck_assert_uint_eq(r.prev_kvs[1].key_len, KEY_LEN);
    ck_assert_mem_eq(r.prev_kvs[1].key, KEY, KEY_LEN);
    ck_assert_uint_eq(r.prev_kvs[1].value_len, 1);
    ck_assert_int_eq((unsigned char)r.prev_kvs[1].value[0], 0xff);
    ck_assert_int_eq(r.prev_kvs[1].mod_revision, 19);
    ck_assert_int_eq(r.prev_kvs[1].lease, 3);
    ballast_delete_result_free(&r);
    ck_assert_ptr_null(r.prev_kvs);
    ck_assert_uint_eq(r.n_prev, 0);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "DELETE", "/v1/kv/p%2F?prefix&cas=5&prev");
    assert_request_id(q);
    ck_assert_int_eq(q->has_cl, 0);

    ck_assert_int_eq(ballast_delete(c, KEY, KEY_LEN, NULL, &r), 0);
    ck_assert_int_eq(r.deleted, 0);
    ck_assert_ptr_null(r.prev_kvs);
    ck_assert_uint_eq(r.n_prev, 0);
    ballast_delete_result_free(&r);
    assert_req(srv_rec(s, 1), "DELETE", KEY_WIRE);
    /* an empty prefix is every key */
    ck_assert_int_eq(ballast_delete(c, "", 0, &o, &r), 0);
    ballast_delete_result_free(&r);
    assert_req(srv_rec(s, 2), "DELETE", "/v1/kv/?prefix&cas=5&prev");
}
END_TEST

START_TEST(test_range_decodes_page)
{
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 4);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 3);
    mp_kv(&m, "p/b", 3, NULL, 0, 2, 2, 1, 0);
    mp_kv(&m, "p/c\0", 4, NULL, 0, 3, 8, 4, 0);
    mp_kv(&m, "p/d/e", 5, NULL, 0, 9, 9, 1, 0);
    mp_str(&m, "more");
    msgpack_pack_true(&m.pk);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 10);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 31);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    mp_init(&m);
    msgpack_pack_map(&m.pk, 4);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 0);
    mp_str(&m, "more");
    msgpack_pack_false(&m.pk);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 7);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 32);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    mp_init(&m);
    msgpack_pack_map(&m.pk, 4);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 1);
    mp_kv(&m, "a", 1, "x", 1, 1, 1, 1, 0);
    mp_str(&m, "more");
    msgpack_pack_false(&m.pk);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 1);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 33);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_range_opts o = {0};
    struct ballast_range_result r;

    o.limit = 3;
    o.after = "p/a\0\xff";
    o.after_len = 5;
    o.keys_only = 1;
    o.consistency = BALLAST_SERIALIZABLE;
    ck_assert_int_eq(ballast_range(c, "p/", 2, &o, &r), 0);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_int_ne(r.more, 0);
    ck_assert_int_eq(r.count, 10);
    ck_assert_int_eq(r.revision, 31);
    ck_assert_str_eq(r.kvs[0].key, "p/b");
    ck_assert_uint_eq(r.kvs[0].value_len, 0);
    ck_assert_str_eq(r.kvs[0].value, "");
    ck_assert_uint_eq(r.kvs[1].key_len, 4);
    ck_assert_mem_eq(r.kvs[1].key, "p/c\0", 5);
    ck_assert_int_eq(r.kvs[1].mod_revision, 8);
    ck_assert_int_eq(r.kvs[1].version, 4);
    ck_assert_str_eq(r.kvs[2].key, "p/d/e");
    ballast_range_result_free(&r);
    ck_assert_ptr_null(r.kvs);
    ck_assert_uint_eq(r.n, 0);
    assert_req(srv_rec(s, 0), "GET",
               "/v1/kv/p%2F?prefix&limit=3&after=p%2Fa%00%FF&keys&consistency=serializable");
    ck_assert_int_eq(srv_rec(s, 0)->has_id, 0);

    memset(&o, 0, sizeof o);
    o.count_only = 1;
    ck_assert_int_eq(ballast_range(c, "p/", 2, &o, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_ptr_null(r.kvs);
    ck_assert_int_eq(r.more, 0);
    ck_assert_int_eq(r.count, 7);
    ck_assert_int_eq(r.revision, 32);
    ballast_range_result_free(&r);
    assert_req(srv_rec(s, 1), "GET", "/v1/kv/p%2F?prefix&count");

    ck_assert_int_eq(ballast_range(c, NULL, 0, NULL, &r), 0);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_str_eq(r.kvs[0].value, "x");
    ballast_range_result_free(&r);
    assert_req(srv_rec(s, 2), "GET", "/v1/kv/?prefix");
}
END_TEST

START_TEST(test_status_and_members_decode)
{
    struct fsrv *s = srv_start(), *r = srv_refused();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 13);
    mp_str(&m, "id");
    msgpack_pack_uint64(&m.pk, UINT64_C(9223372036854775808));
    mp_str(&m, "name");
    mp_str(&m, "m1");
    mp_str(&m, "role");
    mp_str(&m, "leader");
    mp_str(&m, "leader");
    msgpack_pack_uint64(&m.pk, 1);
    mp_str(&m, "term");
    msgpack_pack_uint64(&m.pk, 4);
    mp_str(&m, "commit_index");
    msgpack_pack_uint64(&m.pk, 100);
    mp_str(&m, "applied_index");
    msgpack_pack_uint64(&m.pk, 99);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 50);
    mp_str(&m, "db_bytes");
    msgpack_pack_uint64(&m.pk, 20480);
    mp_str(&m, "raft_log_bytes");
    msgpack_pack_uint64(&m.pk, 1);
    mp_str(&m, "version");
    mp_str(&m, "0.1.0");
    mp_str(&m, "future_field");
    msgpack_pack_array(&m.pk, 0);
    mp_str(&m, "members");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_map(&m.pk, 7);
    mp_str(&m, "id");
    msgpack_pack_uint64(&m.pk, 1);
    mp_str(&m, "name");
    mp_str(&m, "m1");
    mp_str(&m, "peer_url");
    mp_str(&m, "http://127.0.0.1:8380");
    mp_str(&m, "client_url");
    mp_str(&m, "http://127.0.0.1:8379");
    mp_str(&m, "role");
    mp_str(&m, "voter");
    mp_str(&m, "reachable");
    msgpack_pack_true(&m.pk);
    mp_str(&m, "match_index");
    msgpack_pack_uint64(&m.pk, 99);
    struct blob st_body = mp_resp(200, "", &m);
    srv_push(s, ACT_REPLY, blob_dup(st_body.p, st_body.n));
    srv_push(s, ACT_REPLY, st_body);
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    for (int i = 1; i <= 2; i++) {
        msgpack_pack_map(&m.pk, 3);
        mp_str(&m, "id");
        msgpack_pack_uint64(&m.pk, (uint64_t)i);
        mp_str(&m, "name");
        mp_str(&m, i == 1 ? "m1" : "m2");
        mp_str(&m, "role");
        mp_str(&m, i == 1 ? "voter" : "learner");
    }
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    struct ballast_client *c = client_for(NULL, 2, r, s);
    struct ballast_status *st = NULL;
    struct ballast_member *ms = NULL;
    size_t n = 0;
    char want[128];

    ck_assert_int_eq(ballast_status(c, &st), 0);
    ck_assert_str_eq(st->endpoint, s->name);
    ck_assert_uint_eq(st->id, UINT64_C(9223372036854775808));
    ck_assert_str_eq(st->name, "m1");
    ck_assert_str_eq(st->role, "leader");
    ck_assert_uint_eq(st->leader, 1);
    ck_assert_uint_eq(st->term, 4);
    ck_assert_uint_eq(st->commit_index, 100);
    ck_assert_uint_eq(st->applied_index, 99);
    ck_assert_int_eq(st->revision, 50);
    ck_assert_uint_eq(st->db_bytes, 20480);
    ck_assert_str_eq(st->version, "0.1.0");
    ck_assert_uint_eq(st->n_members, 1);
    ck_assert_str_eq(st->members[0].client_url, "http://127.0.0.1:8379");
    ck_assert_int_ne(st->members[0].reachable, 0);
    ck_assert_uint_eq(st->members[0].match_index, 99);
    ballast_status_free(st);
    assert_req(srv_rec(s, 0), "GET", "/v1/status");

    /* one endpoint, once, on a connection of its own */
    ck_assert_int_eq(ballast_status_endpoint(c, s->name, &st), 0);
    ck_assert_str_eq(st->endpoint, s->name);
    ballast_status_free(st);
    ck_assert_int_eq(ballast_status_endpoint(c, r->name, &st), BALLAST_EUNAVAILABLE);
    ck_assert_ptr_null(st);
    snprintf(want, sizeof want, "connect %s: Connection refused", r->name);
    ck_assert_str_eq(ballast_errmsg(c), want);

    ck_assert_int_eq(ballast_members(c, &ms, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(ms[1].id, 2);
    ck_assert_str_eq(ms[1].role, "learner");
    ck_assert_str_eq(ms[1].peer_url, ""); /* absent: "" */
    ballast_members_free(ms, n);
    assert_req(srv_rec(s, 2), "GET", "/v1/members");
}
END_TEST

/* Bodies in other framings: chunked (with an extension and a trailer,
 * trickled in 3-byte writes), after a 1xx interim answer, and delimited by
 * the connection closing (HTTP/1.0 without Content-Length). */
START_TEST(test_chunked_interim_and_close_delimited_bodies)
{
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    mp_kv(&m, "c", 1, "chunked value", 13, 1, 2, 1, 0);
    srv_push_piece(s, ACT_REPLY, chunked_resp(m.sb.data, m.sb.size, 5), 3);
    msgpack_sbuffer_destroy(&m.sb);
    struct blob ok = kv_resp("i", "interim", 3);
    struct blob b = {malloc(ok.n + 64), 0};
    ck_assert_ptr_nonnull(b.p);
    b.n = (size_t)sprintf(b.p, "HTTP/1.1 100 Continue\r\n\r\n");
    memcpy(b.p + b.n, ok.p, ok.n);
    b.n += ok.n;
    free(ok.p);
    srv_push(s, ACT_REPLY, b);
    mp_init(&m);
    mp_kv(&m, "e", 1, "until eof", 9, 1, 4, 1, 0);
    b.p = malloc(m.sb.size + 64);
    ck_assert_ptr_nonnull(b.p);
    b.n = (size_t)sprintf(b.p, "HTTP/1.0 200 OK\r\nContent-Type: application/msgpack\r\n\r\n");
    memcpy(b.p + b.n, m.sb.data, m.sb.size);
    b.n += m.sb.size;
    msgpack_sbuffer_destroy(&m.sb);
    srv_push(s, ACT_REPLY_CLOSE, b);
    srv_push(s, ACT_REPLY, kv_resp("z", "after", 5));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_kv *kv;

    ck_assert_int_eq(ballast_get(c, "c", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "chunked value");
    ck_assert_int_eq(kv->mod_revision, 2);
    ballast_kv_free(kv);
    ck_assert_int_eq(ballast_get(c, "i", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "interim");
    ballast_kv_free(kv);
    ck_assert_int_eq(ballast_get(c, "e", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "until eof");
    ballast_kv_free(kv);
    ck_assert_int_eq(ballast_get(c, "z", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "after");
    ballast_kv_free(kv);
    ck_assert_uint_eq(srv_nrecs(s), 4);
    /* chunked and interim answers kept the connection; the close-delimited one did not */
    ck_assert_uint_eq(srv_rec(s, 2)->conn, 1);
    ck_assert_uint_eq(srv_rec(s, 3)->conn, 2);
}
END_TEST

/* --- failover and retries ----------------------------------------------------------- */

START_TEST(test_failover_refused_then_next_endpoint)
{
    struct fsrv *r = srv_refused(), *s = srv_start();
    srv_push(s, ACT_REPLY, kv_resp("k", "from 2", 9));
    srv_push(s, ACT_REPLY, rev_resp(10));
    struct ballast_client *c = client_for(NULL, 2, r, s);
    struct ballast_kv *kv;

    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ck_assert_int_lt(now_ms() - t0, 500); /* no wait before the other endpoint */
    ck_assert_str_eq(kv->value, "from 2");
    ballast_kv_free(kv);
    ck_assert_uint_eq(srv_nrecs(s), 1);
    assert_req(srv_rec(s, 0), "GET", "/v1/kv/k");
    ck_assert_str_eq(ballast_current_endpoint(c), s->name);
    /* the next call goes to the endpoint that answered, over the same connection */
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_uint_eq(srv_nrecs(s), 2);
    ck_assert_uint_eq(srv_accepted(s), 1);
}
END_TEST

START_TEST(test_failover_503_tries_next_endpoint_at_once)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    srv_push(a, ACT_REPLY, no_leader_resp());
    srv_push(b, ACT_REPLY, rev_resp(5));
    struct ballast_client *c = client_for(NULL, 2, a, b);
    struct ballast_put_result r;

    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_put(c, KEY, KEY_LEN, "v", 1, NULL, &r), 0);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 500, "503 then next endpoint took %lld ms (Retry-After is 1 s)",
                  (long long)took);
    ck_assert_int_eq(r.revision, 5);
    ballast_put_result_free(&r);
    ck_assert_uint_eq(srv_nrecs(a), 1);
    ck_assert_uint_eq(srv_nrecs(b), 1);
    assert_req(srv_rec(b, 0), "PUT", KEY_WIRE);
    /* the same write: one id on both members */
    assert_request_id(srv_rec(a, 0));
    ck_assert_str_eq(srv_rec(a, 0)->id, srv_rec(b, 0)->id);
    ck_assert_str_eq(ballast_current_endpoint(c), b->name);
}
END_TEST

/* Every endpoint answers 503: a pass over all of them with no wait, then a
 * backoff of at least Retry-After, another pass, and ENOLEADER with the
 * server's message once the attempts are spent. */
START_TEST(test_all_503_backoff_between_passes_then_enoleader)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    srv_push(a, ACT_REPLY, no_leader_resp());
    srv_push(b, ACT_REPLY, no_leader_resp());
    struct ballast_options o = {0};
    o.max_attempts = 4;
    o.backoff_max_ms = 2000; /* Retry-After: 1 is honored whole */
    struct ballast_client *c = client_for(&o, 2, a, b);

    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_ENOLEADER);
    int64_t took = now_ms() - t0;
    ck_assert_str_eq(ballast_errmsg(c), "no leader known (fake)");
    ck_assert_uint_eq(srv_nrecs(a), 2);
    ck_assert_uint_eq(srv_nrecs(b), 2);
    const struct rec *a1 = srv_rec(a, 0), *b1 = srv_rec(b, 0);
    const struct rec *a2 = srv_rec(a, 1), *b2 = srv_rec(b, 1);
    ck_assert_int_lt(b1->t_ms - a1->t_ms, 250); /* within a pass: no wait */
    ck_assert_int_lt(b2->t_ms - a2->t_ms, 250);
    ck_assert_msg(a2->t_ms - b1->t_ms >= 995, "waited %lld ms between passes, want >= 1000",
                  (long long)(a2->t_ms - b1->t_ms));
    ck_assert_int_lt(a2->t_ms - b1->t_ms, 1600);
    ck_assert_int_lt(took, 2000);
    /* one id for the four attempts of one write */
    assert_request_id(a1);
    ck_assert_str_eq(a1->id, b1->id);
    ck_assert_str_eq(a1->id, a2->id);
    ck_assert_str_eq(a1->id, b2->id);
}
END_TEST

/* Retry-After is capped at backoff_max_ms. */
START_TEST(test_retry_after_capped_by_backoff_max)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    srv_push(a, ACT_REPLY, no_leader_resp());
    srv_push(b, ACT_REPLY, no_leader_resp());
    struct ballast_options o = {0};
    o.max_attempts = 3;
    o.backoff_base_ms = 10;
    o.backoff_max_ms = 300;
    struct ballast_client *c = client_for(&o, 2, a, b);
    struct ballast_kv *kv;

    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_ENOLEADER);
    ck_assert_ptr_null(kv);
    ck_assert_uint_eq(srv_nrecs(a), 2);
    ck_assert_uint_eq(srv_nrecs(b), 1);
    int64_t gap = srv_rec(a, 1)->t_ms - srv_rec(b, 0)->t_ms;
    ck_assert_msg(gap >= 295 && gap < 800, "waited %lld ms, want 300 (capped Retry-After)",
                  (long long)gap);
}
END_TEST

/* A write whose answer was lost (the connection closed after the request
 * was read) is sent again with the same request id; separate calls get
 * different ids. */
START_TEST(test_lost_answer_write_retried_with_same_id)
{
    struct fsrv *s = srv_start();
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, rev_resp(8));
    srv_push(s, ACT_REPLY, rev_resp(9));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_put_result r;

    ck_assert_int_eq(ballast_put(c, KEY, KEY_LEN, "value", 5, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 8);
    ballast_put_result_free(&r);
    ck_assert_uint_eq(srv_nrecs(s), 2);
    const struct rec *q1 = srv_rec(s, 0), *q2 = srv_rec(s, 1);
    assert_request_id(q1);
    ck_assert_str_eq(q1->id, q2->id);
    ck_assert_str_eq(q1->target, q2->target);
    ck_assert_uint_eq(q2->body_len, 5);
    ck_assert_str_eq(q2->body, "value");
    ck_assert_uint_ne(q1->conn, q2->conn);

    ck_assert_int_eq(ballast_put(c, KEY, KEY_LEN, "value", 5, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 9);
    ballast_put_result_free(&r);
    const struct rec *q3 = srv_rec(s, 2);
    assert_request_id(q3);
    ck_assert_str_ne(q3->id, q1->id);
}
END_TEST

START_TEST(test_separate_writes_carry_different_ids)
{
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 3);
    mp_str(&m, "deleted");
    msgpack_pack_int64(&m.pk, 1);
    srv_push(s, ACT_REPLY, rev_resp(1));
    srv_push(s, ACT_REPLY, rev_resp(2));
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    srv_push(s, ACT_REPLY, http_resp(200, "", "application/json", "{}", 2));
    struct ballast_client *c = client_for(NULL, 1, s);
    int status = 0;
    void *body = NULL;
    size_t len = 0;

    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_int_eq(ballast_delete(c, "k", 1, NULL, NULL), 0);
    ck_assert_int_eq(ballast_raw_request(c, "POST", "/v1/lease", "{}", 2, 1, &status, &body, &len),
                     0);
    ballast_free(body);
    ck_assert_uint_eq(srv_nrecs(s), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_request_id(srv_rec(s, i));
        for (size_t j = 0; j < i; j++) {
            ck_assert_str_ne(srv_rec(s, i)->id, srv_rec(s, j)->id);
        }
    }
}
END_TEST

/* no_retry_unsent_writes: a write that may have been sent is not sent
 * again, a cas write is; a write never sent (refused) still fails over. */
START_TEST(test_no_retry_unsent_writes)
{
    struct fsrv *s = srv_start(), *t = srv_start(), *u = srv_start(), *r = srv_refused();
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, rev_resp(4));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, rev_resp(5));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, rev_resp(6));
    srv_push(u, ACT_REPLY, rev_resp(7));
    struct ballast_options o = {0};
    o.no_retry_unsent_writes = 1;
    struct ballast_client *c = client_for(&o, 1, s);
    struct ballast_client *ct = client_for(&o, 1, t);
    struct ballast_client *cr = client_for(&o, 2, r, u);
    struct ballast_put_opts po = BALLAST_PUT_OPTS_INIT;
    struct ballast_delete_opts dop = BALLAST_DELETE_OPTS_INIT;

    char want[128];
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_EUNAVAILABLE);
    ck_assert_uint_eq(srv_nrecs(s), 1);
    snprintf(want, sizeof want, "%s: connection closed before an answer", s->name);
    ck_assert_str_eq(ballast_errmsg(c), want);

    po.cas = 0;
    ck_assert_int_eq(ballast_put(ct, "k", 1, "v", 1, &po, NULL), 0);
    ck_assert_uint_eq(srv_nrecs(t), 2);
    ck_assert_str_eq(srv_rec(t, 0)->id, srv_rec(t, 1)->id);
    assert_req(srv_rec(t, 1), "PUT", "/v1/kv/k?cas=0");
    dop.cas = 5;
    ck_assert_int_eq(ballast_delete(ct, "k", 1, &dop, NULL), 0);
    ck_assert_uint_eq(srv_nrecs(t), 4);
    assert_req(srv_rec(t, 3), "DELETE", "/v1/kv/k?cas=5");
    ck_assert_str_eq(srv_rec(t, 2)->id, srv_rec(t, 3)->id);
    ck_assert_str_ne(srv_rec(t, 1)->id, srv_rec(t, 3)->id);
    ck_assert_int_eq(ballast_put(cr, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_uint_eq(srv_nrecs(u), 1);
}
END_TEST

/* 504 (outcome unknown): a read is retried, a write too with the same id,
 * but not with no_retry_unsent_writes. */
START_TEST(test_504_once_then_200)
{
    struct fsrv *s = srv_start(), *t = srv_start();
    struct blob e504 = err_resp(504, "", "timeout", "leader did not answer in time");
    srv_push(s, ACT_REPLY, blob_dup(e504.p, e504.n));
    srv_push(s, ACT_REPLY, kv_resp("k", "v", 3));
    srv_push(s, ACT_REPLY, blob_dup(e504.p, e504.n));
    srv_push(s, ACT_REPLY, rev_resp(4));
    srv_push(t, ACT_REPLY, e504);
    srv_push(t, ACT_REPLY, rev_resp(5));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_options o = {0};
    o.no_retry_unsent_writes = 1;
    struct ballast_client *ct = client_for(&o, 1, t);
    struct ballast_kv *kv;
    struct ballast_put_result r;

    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "v");
    ballast_kv_free(kv);
    ck_assert_uint_eq(srv_nrecs(s), 2);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 4);
    ballast_put_result_free(&r);
    ck_assert_uint_eq(srv_nrecs(s), 4);
    assert_request_id(srv_rec(s, 2));
    ck_assert_str_eq(srv_rec(s, 2)->id, srv_rec(s, 3)->id);

    ck_assert_int_eq(ballast_put(ct, "k", 1, "v", 1, NULL, &r), BALLAST_ETIMEOUT);
    ck_assert_str_eq(ballast_errmsg(ct), "leader did not answer in time");
    ck_assert_uint_eq(srv_nrecs(t), 1);
}
END_TEST

/* A 507 is the server's admission check refusing *this* attempt: final and
 * definite on a first attempt, but after an attempt whose answer was lost
 * (which may still commit) the outcome is unknown: BALLAST_ETIMEOUT. */
START_TEST(test_507_after_lost_answer_is_unknown)
{
    struct fsrv *s = srv_start();
    struct blob e507 = err_resp(507, "", "no_space", "less than 80 MiB free");
    srv_push(s, ACT_REPLY, blob_dup(e507.p, e507.n));
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, e507);
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_put_result r;

    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), BALLAST_ENOSPACE);
    ck_assert_str_eq(ballast_errmsg(c), "less than 80 MiB free");
    ck_assert_uint_eq(srv_nrecs(s), 1);

    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), BALLAST_ETIMEOUT);
    ck_assert_ptr_nonnull(strstr(ballast_errmsg(c), "outcome unknown"));
    ck_assert_ptr_nonnull(strstr(ballast_errmsg(c), "less than 80 MiB free"));
    ck_assert_uint_eq(srv_nrecs(s), 3);
    ck_assert_str_eq(srv_rec(s, 1)->id, srv_rec(s, 2)->id);
}
END_TEST

/* A member that accepts and never answers is left after attempt_timeout_ms. */
START_TEST(test_hung_endpoint_abandoned_after_attempt_timeout)
{
    struct fsrv *h = srv_start(), *s = srv_start();
    srv_push(h, ACT_HANG, raw_resp(""));
    srv_push(s, ACT_REPLY, kv_resp("k", "alive", 2));
    srv_push(s, ACT_REPLY, rev_resp(3));
    struct ballast_options o = {0};
    o.attempt_timeout_ms = 300;
    struct ballast_client *c = client_for(&o, 2, h, s);
    struct ballast_kv *kv;

    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    int64_t took = now_ms() - t0;
    ck_assert_str_eq(kv->value, "alive");
    ballast_kv_free(kv);
    ck_assert_msg(took >= 295 && took < 1000, "took %lld ms, want about 300", (long long)took);
    ck_assert_uint_eq(srv_nrecs(h), 1);
    ck_assert_uint_eq(srv_nrecs(s), 1);
    ck_assert_int_ge(srv_rec(s, 0)->t_ms - srv_rec(h, 0)->t_ms, 295);

    /* the next call starts at the member that answered */
    ck_assert_str_eq(ballast_current_endpoint(c), s->name);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_uint_eq(srv_nrecs(s), 2);
}
END_TEST

/* request_timeout_ms bounds a whole call against members that all hang. */
START_TEST(test_request_timeout_bounds_call)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    srv_push(a, ACT_HANG, raw_resp(""));
    srv_push(b, ACT_HANG, raw_resp(""));
    struct ballast_options o = {0};
    o.request_timeout_ms = 600; /* attempts default to 5 s: the deadline cuts the first */
    struct ballast_client *c = client_for(&o, 2, a, b);
    struct ballast_kv *kv;

    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), BALLAST_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_ptr_null(kv);
    ck_assert_msg(took >= 595 && took < 1000, "took %lld ms, want about 600", (long long)took);
    ck_assert_uint_eq(srv_nrecs(a), 1);
    ck_assert_uint_eq(srv_nrecs(b), 0);

    /* short attempts: several of them, none past the deadline */
    o.attempt_timeout_ms = 150;
    o.max_attempts = 100;
    c = client_for(&o, 2, a, b);
    t0 = now_ms();
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_ETIMEOUT);
    took = now_ms() - t0;
    ck_assert_msg(took >= 300 && took < 1000, "took %lld ms, want at most about 600",
                  (long long)took);
    ck_assert_uint_ge(srv_nrecs(a), 2);
    ck_assert_uint_ge(srv_nrecs(b), 1);
    ck_assert_str_eq(srv_rec(a, 1)->id, srv_rec(b, 0)->id);
}
END_TEST

/* Unparseable or oversized answers fail at once with EPROTO: no retry, no
 * failover. */
START_TEST(test_garbage_and_oversized_replies_eproto)
{
    static const unsigned char huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char truncated[] = {0x86, 0xa3, 'k', 'e', 'y', 0xc4, 0x05, 'a'};
    static const unsigned char array[] = {0x91, 0x01};
    struct blob big_head = {malloc(71000), 0};
    ck_assert_ptr_nonnull(big_head.p);
    big_head.n = (size_t)sprintf(big_head.p, "HTTP/1.1 200 OK\r\nX-Pad: ");
    memset(big_head.p + big_head.n, 'a', 70000);
    big_head.n += 70000;
    big_head.n += (size_t)sprintf(big_head.p + big_head.n, "\r\nContent-Length: 0\r\n\r\n");
    struct blob bad[] = {
        raw_resp("SSH-2.0-OpenSSH_9.2\r\n\r\n"),
        big_head,
        raw_resp("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nxx"),
        raw_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n"),
        raw_resp("HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n"),
        raw_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        raw_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
        http_resp(200, "", "application/msgpack", huge_array, sizeof huge_array),
        http_resp(200, "", "application/msgpack", truncated, sizeof truncated),
        http_resp(200, "", "application/msgpack", array, sizeof array),
        http_resp(200, "", "application/json", "{\"key\":\"YQ==\"}", 14),
    };
    struct ballast_kv *kv;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fsrv *a = srv_start(), *b = srv_start();
        srv_push(a, ACT_REPLY, bad[i]);
        srv_push(b, ACT_REPLY, kv_resp("k", "v", 1));
        struct ballast_client *c = client_for(NULL, 2, a, b);
        int rv = ballast_get(c, "k", 1, 0, &kv);
        ck_assert_msg(rv == BALLAST_EPROTO, "bad reply #%zu: %d (%s)", i, rv, ballast_errmsg(c));
        ck_assert_ptr_null(kv);
        ck_assert_str_ne(ballast_errmsg(c), "");
        ck_assert_uint_eq(srv_nrecs(a), 1);
        ck_assert_uint_eq(srv_nrecs(b), 0);
        /* release this round's servers and client now: few threads at a time */
        teardown();
    }
}
END_TEST

/* A kept-alive connection the server closed is reopened to the same member
 * without counting as an attempt (max_attempts 1 leaves no room for one):
 * closed while idle, and closed after reading the next request. */
START_TEST(test_stale_keepalive_reopened)
{
    struct fsrv *s = srv_start(), *t = srv_start(), *u = srv_start();
    srv_push(s, ACT_REPLY_CLOSE, kv_resp("k", "one", 1));
    srv_push(s, ACT_REPLY, kv_resp("k", "two", 1));
    srv_push(s, ACT_REPLY_CLOSE, rev_resp(3));
    srv_push(s, ACT_REPLY, rev_resp(4));
    srv_push(t, ACT_REPLY, kv_resp("k", "one", 1));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, kv_resp("k", "two", 1));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, rev_resp(6));
    srv_push(u, ACT_REPLY_CLOSE, rev_resp(1));
    srv_push(u, ACT_REPLY, rev_resp(2));
    srv_push(u, ACT_CLOSE, raw_resp(""));
    srv_push(u, ACT_REPLY, rev_resp(3));
    struct ballast_options o = {0};
    o.max_attempts = 1;
    struct ballast_client *c = client_for(&o, 1, s);
    struct ballast_kv *kv;
    struct ballast_put_result r;

    /* closed while idle */
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ballast_kv_free(kv);
    srv_wait_closed(s, 1);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "two");
    ballast_kv_free(kv);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), 0);
    ballast_put_result_free(&r);
    srv_wait_closed(s, 2);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 4);
    ballast_put_result_free(&r);
    ck_assert_uint_eq(srv_nrecs(s), 4);
    ck_assert_uint_eq(srv_accepted(s), 3);

    /* closed after reading the request, before any byte of an answer */
    c = client_for(&o, 1, t);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ballast_kv_free(kv);
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ck_assert_str_eq(kv->value, "two");
    ballast_kv_free(kv);
    ck_assert_uint_eq(srv_nrecs(t), 3);
    ck_assert_uint_eq(srv_accepted(t), 2);
    ck_assert_uint_eq(srv_rec(t, 1)->conn, 1);
    ck_assert_uint_eq(srv_rec(t, 2)->conn, 2);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, &r), 0);
    ck_assert_int_eq(r.revision, 6);
    ballast_put_result_free(&r);
    ck_assert_uint_eq(srv_nrecs(t), 5);
    ck_assert_str_eq(srv_rec(t, 3)->id, srv_rec(t, 4)->id);

    /* no_retry_unsent_writes: found closed while idle, the write was never
     * sent and goes on a new connection; closed after the request went out,
     * it may have been executed and is not sent again */
    o.no_retry_unsent_writes = 1;
    c = client_for(&o, 1, u);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    srv_wait_closed(u, 1);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), 0);
    ck_assert_uint_eq(srv_rec(u, 1)->conn, 2);
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, NULL, NULL), BALLAST_EUNAVAILABLE);
    ck_assert_uint_eq(srv_nrecs(u), 3);
}
END_TEST

/* --- raw requests and leader transfer ------------------------------------------------ */

START_TEST(test_raw_request_returns_body_and_status)
{
    static const char kv_json[] = "{\"key\":\"YQ==\",\"value\":\"MQ==\",\"create_revision\":1,"
                                  "\"mod_revision\":2,\"version\":1,\"lease\":0}";
    static const char nf_json[] =
        "{\"error\":{\"code\":\"not_found\",\"message\":\"key not found\"}}";
    struct fsrv *s = srv_start(), *r = srv_refused();
    srv_push(s, ACT_REPLY, http_resp(200, "", "application/json", kv_json, strlen(kv_json)));
    srv_push(s, ACT_REPLY, http_resp(404, "", "application/json", nf_json, strlen(nf_json)));
    srv_push(s, ACT_REPLY, rev_resp(3));
    srv_push(s, ACT_REPLY, http_resp(200, "", "application/json", "{\"leader\":2}", 12));
    struct ballast_client *c = client_for(NULL, 1, s);
    int status = -1;
    void *body = NULL;
    size_t len = 0;

    ck_assert_int_eq(ballast_raw_request(c, "GET", "/v1/kv/a", NULL, 0, 1, &status, &body, &len),
                     0);
    ck_assert_int_eq(status, 200);
    ck_assert_uint_eq(len, strlen(kv_json));
    ck_assert_str_eq(body, kv_json); /* NUL-terminated */
    ballast_free(body);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "GET", "/v1/kv/a");
    ck_assert_str_eq(q->accept, "application/json");
    ck_assert_int_eq(q->has_id, 0);

    ck_assert_int_eq(ballast_raw_request(c, "GET", "/v1/kv/none", NULL, 0, 1, &status, &body, &len),
                     BALLAST_ENOTFOUND);
    ck_assert_int_eq(status, 404);
    ck_assert_ptr_nonnull(body);
    ck_assert_uint_eq(len, strlen(nf_json));
    ck_assert_str_eq(body, nf_json);
    ck_assert_str_eq(ballast_errmsg(c), "key not found");
    ballast_free(body);

    ck_assert_int_eq(
        ballast_raw_request(c, "PUT", "/v1/kv/a%2Fb?cas=0", "xyz", 3, 0, &status, &body, &len), 0);
    ballast_free(body);
    q = srv_rec(s, 2);
    assert_req(q, "PUT", "/v1/kv/a%2Fb?cas=0");
    ck_assert_str_eq(q->ctype, "application/octet-stream");
    ck_assert_str_eq(q->accept, "application/msgpack");
    ck_assert_str_eq(q->body, "xyz");
    assert_request_id(q);

    ck_assert_int_eq(
        ballast_raw_request(c, "POST", "/v1/leader", "{\"to\":2}", 8, 1, &status, &body, &len), 0);
    ck_assert_str_eq(body, "{\"leader\":2}");
    ballast_free(body);
    q = srv_rec(s, 3);
    ck_assert_str_eq(q->ctype, "application/json");
    ck_assert_str_eq(q->body, "{\"to\":2}");
    assert_request_id(q);

    /* bad arguments: nothing sent */
    ck_assert_int_eq(ballast_raw_request(c, "GET X", "/v1", NULL, 0, 1, &status, &body, &len),
                     BALLAST_EBADARG);
    ck_assert_int_eq(ballast_raw_request(c, "GET", "v1", NULL, 0, 1, &status, &body, &len),
                     BALLAST_EBADARG);
    ck_assert_int_eq(ballast_raw_request(c, "GET", "/v1/a b", NULL, 0, 1, &status, &body, &len),
                     BALLAST_EBADARG);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_null(body);
    ck_assert_uint_eq(srv_nrecs(s), 4);

    /* a transport error: status 0, no body */
    c = client_for(NULL, 1, r);
    ck_assert_int_eq(ballast_raw_request(c, "GET", "/healthz", NULL, 0, 1, &status, &body, &len),
                     BALLAST_EUNAVAILABLE);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_null(body);
    ck_assert_uint_eq(len, 0);
}
END_TEST

/* The body a leader transfer sent: {"to": to} in msgpack, or {}. */
static void assert_transfer_body(const struct rec *q, uint64_t to)
{
    msgpack_unpacked u;
    size_t off = 0;

    assert_req(q, "POST", "/v1/leader");
    ck_assert_str_eq(q->ctype, "application/msgpack");
    assert_request_id(q);
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, q->body, q->body_len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, q->body_len);
    ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_MAP);
    if (to == 0) {
        ck_assert_uint_eq(u.data.via.map.size, 0);
    } else {
        ck_assert_uint_eq(u.data.via.map.size, 1);
        const msgpack_object *k = &u.data.via.map.ptr[0].key, *v = &u.data.via.map.ptr[0].val;
        ck_assert_int_eq(k->type, MSGPACK_OBJECT_STR);
        ck_assert_uint_eq(k->via.str.size, 2);
        ck_assert_mem_eq(k->via.str.ptr, "to", 2);
        ck_assert_int_eq(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        ck_assert_uint_eq(v->via.u64, to);
    }
    msgpack_unpacked_destroy(&u);
}

static struct blob leader_resp(uint64_t leader, uint64_t term)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "leader");
    msgpack_pack_uint64(&m.pk, leader);
    mp_str(&m, "term");
    msgpack_pack_uint64(&m.pk, term);
    return mp_resp(200, "", &m);
}

START_TEST(test_leader_transfer)
{
    struct fsrv *s = srv_start(), *t = srv_start(), *u = srv_start();
    srv_push(s, ACT_REPLY, leader_resp(3, 9));
    srv_push(s, ACT_REPLY, leader_resp(2, 10));
    srv_push(s, ACT_REPLY,
             err_resp(504, "", "timeout", "member 3 did not take over; member 2 leads"));
    srv_push(s, ACT_REPLY, leader_resp(3, 11));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, leader_resp(3, 12));
    srv_push(u, ACT_CLOSE, raw_resp(""));
    srv_push(u, ACT_REPLY, leader_resp(3, 12));
    struct ballast_client *c = client_for(NULL, 1, s);
    uint64_t leader = 77;

    ck_assert_int_eq(ballast_leader_transfer(c, 3, &leader), 0);
    ck_assert_uint_eq(leader, 3);
    assert_transfer_body(srv_rec(s, 0), 3);
    ck_assert_int_eq(ballast_leader_transfer(c, 0, &leader), 0);
    ck_assert_uint_eq(leader, 2);
    assert_transfer_body(srv_rec(s, 1), 0);
    /* a 504 is the leader's verdict: final even for a named target */
    ck_assert_int_eq(ballast_leader_transfer(c, 3, &leader), BALLAST_ETIMEOUT);
    ck_assert_uint_eq(leader, 0);
    ck_assert_str_eq(ballast_errmsg(c), "member 3 did not take over; member 2 leads");
    ck_assert_uint_eq(srv_nrecs(s), 3);
    ck_assert_int_eq(ballast_leader_transfer(c, UINT64_C(0x0102030405060708), NULL), 0);
    assert_transfer_body(srv_rec(s, 3), UINT64_C(0x0102030405060708));

    /* lost answer: a named target is asked again (same id), the best candidate is not */
    c = client_for(NULL, 1, t);
    ck_assert_int_eq(ballast_leader_transfer(c, 3, &leader), 0);
    ck_assert_uint_eq(leader, 3);
    ck_assert_uint_eq(srv_nrecs(t), 2);
    ck_assert_str_eq(srv_rec(t, 0)->id, srv_rec(t, 1)->id);
    c = client_for(NULL, 1, u);
    ck_assert_int_eq(ballast_leader_transfer(c, 0, &leader), BALLAST_EUNAVAILABLE);
    ck_assert_uint_eq(srv_nrecs(u), 1);
}
END_TEST

/* --- Retry-After across a round that ends on a refused endpoint ------------------------ */

/* client.c's header comment: "only after a whole pass of endpoints that
 * refused or answered 503 a backoff of at least Retry-After". A pass of
 * [503 with Retry-After: 1, refused] must then wait at least 1 s before
 * asking the first member again. */
START_TEST(test_retry_after_kept_when_pass_ends_refused)
{
    struct fsrv *a = srv_start(), *r = srv_refused();
    srv_push(a, ACT_REPLY, no_leader_resp());
    struct ballast_options o = {0};
    o.max_attempts = 3;
    o.backoff_max_ms = 2000;
    struct ballast_client *c = client_for(&o, 2, a, r);
    struct ballast_kv *kv;

    int rv = ballast_get(c, "k", 1, 0, &kv);
    ck_assert_int_ne(rv, 0);
    ck_assert_uint_eq(srv_nrecs(a), 2);
    int64_t gap = srv_rec(a, 1)->t_ms - srv_rec(a, 0)->t_ms;
    ck_assert_msg(gap >= 995, "asked the member that said Retry-After: 1 again after %lld ms",
                  (long long)gap);
}
END_TEST

/* --- members add / remove / promote ------------------------------------------------------ */

/* A member object as the server writes it. */
static void mp_member(struct mp *m, uint64_t id, const char *name, const char *role)
{
    msgpack_pack_map(&m->pk, 7);
    mp_str(m, "id");
    msgpack_pack_uint64(&m->pk, id);
    mp_str(m, "name");
    mp_str(m, name);
    mp_str(m, "peer_url");
    mp_str(m, "127.0.0.1:8384");
    mp_str(m, "client_url");
    mp_str(m, "127.0.0.1:8383");
    mp_str(m, "role");
    mp_str(m, role);
    mp_str(m, "reachable");
    msgpack_pack_true(&m->pk);
    mp_str(m, "match_index");
    msgpack_pack_uint64(&m->pk, 12);
}

static struct blob member_resp(int status, uint64_t id, const char *name, const char *role)
{
    struct mp m;
    mp_init(&m);
    mp_member(&m, id, name, role);
    return mp_resp(status, "", &m);
}

/* The request body of @q as a msgpack map, unpacked into @u. */
static const msgpack_object *body_map(const struct rec *q, msgpack_unpacked *u)
{
    size_t off = 0;
    ck_assert_str_eq(q->ctype, "application/msgpack");
    msgpack_unpacked_init(u);
    ck_assert_int_eq(msgpack_unpack_next(u, q->body, q->body_len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, q->body_len);
    ck_assert_int_eq(u->data.type, MSGPACK_OBJECT_MAP);
    return &u->data;
}

/* Field @name of map @m (a str key), or NULL. */
static const msgpack_object *field(const msgpack_object *m, const char *name)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
            memcmp(k->via.str.ptr, name, k->via.str.size) == 0) {
            return &m->via.map.ptr[i].val;
        }
    }
    return NULL;
}

static void assert_str_field(const msgpack_object *m, const char *name, const char *want)
{
    const msgpack_object *v = field(m, name);
    ck_assert_msg(v != NULL, "no field %s", name);
    ck_assert_int_eq(v->type, MSGPACK_OBJECT_STR);
    ck_assert_uint_eq(v->via.str.size, strlen(want));
    ck_assert_mem_eq(v->via.str.ptr, want, strlen(want));
}

START_TEST(test_member_add)
{
    struct fsrv *s = srv_start(), *t = srv_start();
    srv_push(s, ACT_REPLY, member_resp(201, 4, "m4", "learner"));
    srv_push(s, ACT_REPLY, member_resp(200, 9, "m9", "voter"));
    srv_push(s, ACT_REPLY, err_resp(400, "", "bad_request", "peer URL 127.0.0.1:8384 in use"));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, member_resp(200, 4, "m4", "learner"));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_member *m = NULL;
    msgpack_unpacked u;

    /* a learner, the server picks the id: no "id" field */
    ck_assert_int_eq(ballast_member_add(c, "m4", "127.0.0.1:8384", "127.0.0.1:8383", 0, 0, &m), 0);
    ck_assert_uint_eq(m->id, 4);
    ck_assert_str_eq(m->name, "m4");
    ck_assert_str_eq(m->peer_url, "127.0.0.1:8384");
    ck_assert_str_eq(m->client_url, "127.0.0.1:8383");
    ck_assert_str_eq(m->role, "learner");
    ck_assert_int_ne(m->reachable, 0);
    ck_assert_uint_eq(m->match_index, 12);
    ballast_members_free(m, 1);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "POST", "/v1/members");
    assert_request_id(q);
    const msgpack_object *b = body_map(q, &u);
    ck_assert_uint_eq(b->via.map.size, 4);
    assert_str_field(b, "name", "m4");
    assert_str_field(b, "peer_url", "127.0.0.1:8384");
    assert_str_field(b, "client_url", "127.0.0.1:8383");
    assert_str_field(b, "role", "learner");
    ck_assert_ptr_null(field(b, "id"));
    msgpack_unpacked_destroy(&u);

    /* a voter with its id, no client URL (published by the member itself) */
    ck_assert_int_eq(ballast_member_add(c, "m9", "127.0.0.1:8390", NULL, 1, 9, NULL), 0);
    b = body_map(srv_rec(s, 1), &u);
    ck_assert_uint_eq(b->via.map.size, 4);
    assert_str_field(b, "role", "voter");
    ck_assert_ptr_null(field(b, "client_url"));
    ck_assert_int_eq(field(b, "id")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ck_assert_uint_eq(field(b, "id")->via.u64, 9);
    msgpack_unpacked_destroy(&u);
    ck_assert_str_ne(srv_rec(s, 0)->id, srv_rec(s, 1)->id);

    /* errors: the server's, final; bad arguments never sent */
    struct ballast_member dummy;
    m = &dummy; /* must be reset to NULL */
    ck_assert_int_eq(ballast_member_add(c, "m5", "127.0.0.1:8384", "", 0, 0, &m), BALLAST_EBADARG);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(ballast_errmsg(c), "peer URL 127.0.0.1:8384 in use");
    ck_assert_uint_eq(srv_nrecs(s), 3);
    ck_assert_int_eq(ballast_member_add(c, "", "127.0.0.1:1", NULL, 0, 0, &m), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_member_add(c, "x", NULL, NULL, 0, 0, &m), BALLAST_EBADARG);
    ck_assert_uint_eq(srv_nrecs(s), 3);

    /* a lost answer: sent again with the same request id; the server answers
     * the identical member with 200 */
    c = client_for(NULL, 1, t);
    ck_assert_int_eq(ballast_member_add(c, "m4", "127.0.0.1:8384", "127.0.0.1:8383", 0, 0, &m), 0);
    ck_assert_uint_eq(m->id, 4);
    ballast_members_free(m, 1);
    ck_assert_uint_eq(srv_nrecs(t), 2);
    ck_assert_str_eq(srv_rec(t, 0)->id, srv_rec(t, 1)->id);
}
END_TEST

static struct blob removed_resp(uint64_t id)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "removed");
    msgpack_pack_uint64(&m.pk, id);
    return mp_resp(200, "", &m);
}

START_TEST(test_member_remove)
{
    struct fsrv *s = srv_start(), *t = srv_start(), *u = srv_start();
    srv_push(s, ACT_REPLY, removed_resp(7));
    srv_push(s, ACT_REPLY, err_resp(404, "", "not_found", "no member 8"));
    srv_push(s, ACT_REPLY, removed_resp(3));
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, err_resp(404, "", "not_found", "no member 7"));
    srv_push(u, ACT_REPLY, err_resp(504, "", "timeout", "not committed in time"));
    srv_push(u, ACT_REPLY, err_resp(404, "", "not_found", "no member 7"));
    struct ballast_client *c = client_for(NULL, 1, s);

    ck_assert_int_eq(ballast_member_remove(c, 7), 0);
    assert_req(srv_rec(s, 0), "DELETE", "/v1/members/7");
    assert_request_id(srv_rec(s, 0));
    /* unknown on the first attempt: not found */
    ck_assert_int_eq(ballast_member_remove(c, 8), BALLAST_ENOTFOUND);
    ck_assert_str_eq(ballast_errmsg(c), "no member 8");
    ck_assert_uint_eq(srv_nrecs(s), 2);
    /* an answer naming another member is not this call's */
    ck_assert_int_eq(ballast_member_remove(c, 9), BALLAST_EPROTO);
    ck_assert_int_eq(ballast_member_remove(c, 0), BALLAST_EBADARG);
    ck_assert_uint_eq(srv_nrecs(s), 3);

    /* the first attempt's answer was lost (or 504): the retry's 404 means
     * that attempt removed it */
    c = client_for(NULL, 1, t);
    ck_assert_int_eq(ballast_member_remove(c, 7), 0);
    ck_assert_uint_eq(srv_nrecs(t), 2);
    ck_assert_str_eq(srv_rec(t, 0)->id, srv_rec(t, 1)->id);
    c = client_for(NULL, 1, u);
    ck_assert_int_eq(ballast_member_remove(c, 7), 0);
    ck_assert_uint_eq(srv_nrecs(u), 2);
}
END_TEST

START_TEST(test_member_promote)
{
    struct fsrv *s = srv_start(), *t = srv_start();
    srv_push(s, ACT_REPLY, member_resp(200, 5, "m5", "voter"));
    srv_push(s, ACT_REPLY, err_resp(504, "", "timeout", "member 5 did not catch up in 10s"));
    srv_push(s, ACT_REPLY, err_resp(404, "", "not_found", "no member 6"));
    /* an answer trickled out over ~0.6 s, far beyond the attempt timeout */
    srv_push_piece(t, ACT_REPLY, member_resp(200, 5, "m5", "voter"), 1);
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_member *m = NULL;

    ck_assert_int_eq(ballast_member_promote(c, 5, &m), 0);
    ck_assert_uint_eq(m->id, 5);
    ck_assert_str_eq(m->role, "voter");
    ballast_members_free(m, 1);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "POST", "/v1/members/5/promote");
    assert_request_id(q);
    ck_assert_int_ne(q->has_cl, 0);
    ck_assert_uint_eq(q->body_len, 0);
    /* 504: the server's verdict, not retried */
    ck_assert_int_eq(ballast_member_promote(c, 5, &m), BALLAST_ETIMEOUT);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(ballast_errmsg(c), "member 5 did not catch up in 10s");
    ck_assert_uint_eq(srv_nrecs(s), 2);
    ck_assert_int_eq(ballast_member_promote(c, 6, NULL), BALLAST_ENOTFOUND);

    /* the answer comes after the learner caught up: the attempt may use the
     * whole call deadline */
    struct ballast_options o = {0};
    o.attempt_timeout_ms = 150;
    o.request_timeout_ms = 5000;
    c = client_for(&o, 1, t);
    ck_assert_int_eq(ballast_member_promote(c, 5, &m), 0);
    ck_assert_str_eq(m->name, "m5");
    ballast_members_free(m, 1);
    ck_assert_uint_eq(srv_nrecs(t), 1);
}
END_TEST

/* --- snapshot save ------------------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* A backup file of @image_len pseudo-random image bytes (not a real LMDB
 * image: the library's check does not open it), with a correct header and
 * FNV-1a 64 checksum unless @checksum is 0. */
static struct blob fake_backup(size_t image_len, uint64_t seed, int checksum)
{
    struct blob b = {malloc(32 + image_len + 1), 32 + image_len};
    uint64_t h = UINT64_C(0xcbf29ce484222325), x = seed | 1;
    ck_assert_ptr_nonnull(b.p);
    memcpy(b.p, "BLSNAP1", 8);
    put_le((uint8_t *)b.p + 8, 1234);
    put_le((uint8_t *)b.p + 16, image_len);
    for (size_t i = 0; i < image_len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.p[32 + i] = (char)x;
        h = (h ^ (uint8_t)x) * UINT64_C(0x100000001b3);
    }
    put_le((uint8_t *)b.p + 24, checksum ? h : 0);
    return b;
}

static struct blob snapshot_resp(const struct blob *backup, int64_t rev)
{
    char hdr[64];
    snprintf(hdr, sizeof hdr, "X-Ballast-Revision: %lld\r\n", (long long)rev);
    return http_resp(200, hdr, "application/octet-stream", backup->p, backup->n);
}

/* The whole file @path into a blob ({NULL, 0} when it cannot be read). */
static struct blob slurp(const char *path)
{
    struct blob b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        return b;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b.p);
    b.n = fread(b.p, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

START_TEST(test_snapshot_save)
{
    char dir[] = "/tmp/ballast-test-client-XXXXXX", path[128], tmp[140];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/b.snap", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct blob good = fake_backup(300 * 1000, 7, 1), other = fake_backup(5000, 9, 1);
    struct fsrv *s = srv_start();
    uint64_t rev = 0;

    /* a whole backup: written, checked, renamed; the revision from the header */
    srv_push(s, ACT_REPLY, snapshot_resp(&good, 42));
    struct ballast_client *c = client_for(NULL, 1, s);
    ck_assert_int_eq(ballast_snapshot_save(c, path, &rev), 0);
    ck_assert_uint_eq(rev, 42);
    assert_req(srv_rec(s, 0), "GET", "/v1/snapshot");
    ck_assert_int_eq(srv_rec(s, 0)->has_id, 0);
    struct blob got = slurp(path);
    ck_assert_uint_eq(got.n, good.n);
    ck_assert_mem_eq(got.p, good.p, good.n);
    free(got.p);
    ck_assert(!exists(tmp));
    teardown();

    /* bodies that are not whole, checked backups: refused, the file at
     * @path is left as it was, no .tmp stays */
    struct blob flipped = blob_dup(good.p, good.n), magic = blob_dup(good.p, good.n),
                longer = blob_dup(good.p, good.n), nosum = fake_backup(1000, 7, 0);
    flipped.p[32 + 1000] ^= 0x20;
    magic.p[0] = 'X';
    put_le((uint8_t *)longer.p + 16, good.n - 32 + 1);
    struct blob bad[] = {flipped, magic, longer, nosum, blob_dup("BLSNAP1", 8)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = srv_start();
        srv_push(s, ACT_REPLY, snapshot_resp(&bad[i], 42));
        c = client_for(NULL, 1, s);
        rev = 77;
        int rv = ballast_snapshot_save(c, path, &rev);
        ck_assert_msg(rv == BALLAST_EPROTO, "bad body #%zu: %d (%s)", i, rv, ballast_errmsg(c));
        ck_assert_uint_eq(rev, 0);
        ck_assert_uint_eq(srv_nrecs(s), 1);
        got = slurp(path);
        ck_assert_uint_eq(got.n, good.n);
        ck_assert_mem_eq(got.p, good.p, good.n);
        free(got.p);
        ck_assert(!exists(tmp));
        free(bad[i].p);
        teardown();
    }

    /* an error answer: mapped, nothing written */
    s = srv_start();
    srv_push(s, ACT_REPLY, err_resp(500, "", "internal", "copy the store: I/O error"));
    c = client_for(NULL, 1, s);
    ck_assert_int_eq(ballast_snapshot_save(c, path, &rev), BALLAST_ESERVER);
    ck_assert_str_eq(ballast_errmsg(c), "copy the store: I/O error");
    ck_assert(!exists(tmp));
    ck_assert_int_eq(ballast_snapshot_save(c, "", &rev), BALLAST_EBADARG);
    teardown();

    /* fail over freely: a 503, then a member whose body breaks off half way,
     * then a chunked answer; the file holds exactly the last body */
    struct fsrv *a = srv_start(), *b = srv_start(), *d = srv_start();
    srv_push(a, ACT_REPLY, no_leader_resp());
    struct blob half = snapshot_resp(&good, 41);
    half.n -= good.n / 2;
    srv_push(b, ACT_REPLY_CLOSE, half);
    struct blob ch = chunked_resp(other.p, other.n, 999);
    srv_push(d, ACT_REPLY, ch);
    c = client_for(NULL, 3, a, b, d);
    ck_assert_int_eq(ballast_snapshot_save(c, path, &rev), 0);
    ck_assert_uint_eq(rev, 0); /* that answer carried no revision */
    ck_assert_str_eq(ballast_current_endpoint(c), d->name);
    got = slurp(path);
    ck_assert_uint_eq(got.n, other.n);
    ck_assert_mem_eq(got.p, other.p, other.n);
    free(got.p);
    teardown();

    /* the backup's revision in X-Ballast-Snapshot-Revision wins over the
     * store's current one in X-Ballast-Revision */
    s = srv_start();
    srv_push(s, ACT_REPLY,
             http_resp(200, "X-Ballast-Revision: 50\r\nX-Ballast-Snapshot-Revision: 44\r\n",
                       "application/octet-stream", other.p, other.n));
    c = client_for(NULL, 1, s);
    ck_assert_int_eq(ballast_snapshot_save(c, path, &rev), 0);
    ck_assert_uint_eq(rev, 44);
    teardown();

    /* a body that keeps coming is not cut off by the deadline: inactivity
     * bounds it (300 kB in 4 kB pieces 2 ms apart: ~150 ms, over the 100 ms
     * attempt timeout) */
    s = srv_start();
    srv_push_piece(s, ACT_REPLY, snapshot_resp(&good, 43), 4096);
    struct ballast_options o = {0};
    o.attempt_timeout_ms = 100;
    o.request_timeout_ms = 120;
    c = client_for(&o, 1, s);
    ck_assert_int_eq(ballast_snapshot_save(c, path, &rev), 0);
    ck_assert_uint_eq(rev, 43);

    unlink(path);
    rmdir(dir);
    free(good.p);
    free(other.p);
}
END_TEST

/* --- transactions ------------------------------------------------------------------ */

/* Field @i of array @a. */
static const msgpack_object *item(const msgpack_object *a, uint32_t i)
{
    ck_assert_int_eq(a->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_lt(i, a->via.array.size);
    return &a->via.array.ptr[i];
}

static void assert_bin_field(const msgpack_object *m, const char *name, const void *want, size_t n)
{
    const msgpack_object *v = field(m, name);
    ck_assert_msg(v != NULL, "no field %s", name);
    ck_assert_int_eq(v->type, MSGPACK_OBJECT_BIN);
    ck_assert_uint_eq(v->via.bin.size, n);
    if (n > 0) {
        ck_assert_mem_eq(v->via.bin.ptr, want, n);
    }
}

static void assert_int_field(const msgpack_object *m, const char *name, int64_t want)
{
    const msgpack_object *v = field(m, name);
    ck_assert_msg(v != NULL, "no field %s", name);
    ck_assert_msg(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                      v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER,
                  "field %s is not an integer", name);
    ck_assert_int_eq(v->via.i64, want);
}

static void assert_true_field(const msgpack_object *m, const char *name)
{
    const msgpack_object *v = field(m, name);
    ck_assert_msg(v != NULL, "no field %s", name);
    ck_assert_int_eq(v->type, MSGPACK_OBJECT_BOOLEAN);
    ck_assert(v->via.boolean);
}

/* The single-key map {@name: {...}} of an op: its inner map. */
static const msgpack_object *op_body(const msgpack_object *op, const char *name)
{
    ck_assert_int_eq(op->type, MSGPACK_OBJECT_MAP);
    ck_assert_uint_eq(op->via.map.size, 1);
    const msgpack_object *v = field(op, name);
    ck_assert_msg(v != NULL, "op is not a %s", name);
    ck_assert_int_eq(v->type, MSGPACK_OBJECT_MAP);
    return v;
}

static struct blob txn_resp(void)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "succeeded");
    msgpack_pack_true(&m.pk);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 42);
    mp_str(&m, "results");
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "put");
    msgpack_pack_map(&m.pk, 0);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "put");
    msgpack_pack_map(&m.pk, 0);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "delete");
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "deleted");
    msgpack_pack_int64(&m.pk, 3);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "get");
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 2);
    mp_kv(&m, "p/a", 3, NULL, 0, 4, 42, 2, 0);
    mp_kv(&m, "p/b", 3, NULL, 0, 5, 42, 1, 9);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 5);
    mp_str(&m, "more");
    msgpack_pack_true(&m.pk);
    return mp_resp(200, "", &m);
}

/* {"succeeded": false, "revision": rev, "results": [{"get": {kvs: [KEY]}}]} */
static struct blob txn_failed_resp(int64_t rev)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "succeeded");
    msgpack_pack_false(&m.pk);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, rev);
    mp_str(&m, "results");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "get");
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 1);
    mp_kv(&m, KEY, KEY_LEN, "7", 1, 3, 40, 6, 0);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 1);
    mp_str(&m, "more");
    msgpack_pack_false(&m.pk);
    return mp_resp(200, "", &m);
}

START_TEST(test_txn_request_and_result)
{
    struct fsrv *s = srv_start();
    srv_push(s, ACT_REPLY, txn_resp());
    srv_push(s, ACT_REPLY, txn_failed_resp(43));
    srv_push(s, ACT_REPLY, err_resp(404, "", "not_found", "lease 9 not found"));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_txn *t = ballast_txn_new();
    struct ballast_txn_result r;
    msgpack_unpacked u;
    ck_assert_ptr_nonnull(t);

    ck_assert_int_eq(ballast_txn_compare(t, KEY, KEY_LEN, BALLAST_CMP_MOD, BALLAST_CMP_EQ, 41), 0);
    ck_assert_int_eq(ballast_txn_compare_value(t, "k", 1, BALLAST_CMP_NE, "v\0x", 3), 0);
    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_SUCCESS, KEY, KEY_LEN, "8", 1, 0), 0);
    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_SUCCESS, "k2", 2, "", 0, 9), 0);
    ck_assert_int_eq(ballast_txn_delete(t, BALLAST_TXN_SUCCESS, "p/", 2, 1), 0);
    ck_assert_int_eq(ballast_txn_get(t, BALLAST_TXN_SUCCESS, "p/", 2, 1, 10, 1), 0);
    ck_assert_int_eq(ballast_txn_get(t, BALLAST_TXN_FAILURE, KEY, KEY_LEN, 0, 0, 0), 0);
    ck_assert_str_eq(ballast_txn_request_id(t), "");

    ck_assert_int_eq(ballast_txn(c, t, &r), 0);
    ck_assert_int_ne(r.succeeded, 0);
    ck_assert_int_eq(r.revision, 42);
    ck_assert_uint_eq(r.n_results, 4);
    ck_assert_int_eq(r.results[0].type, BALLAST_OP_PUT);
    ck_assert_int_eq(r.results[1].type, BALLAST_OP_PUT);
    ck_assert_int_eq(r.results[2].type, BALLAST_OP_DELETE);
    ck_assert_int_eq(r.results[2].deleted, 3);
    ck_assert_int_eq(r.results[3].type, BALLAST_OP_GET);
    ck_assert_uint_eq(r.results[3].n, 2);
    ck_assert_int_eq(r.results[3].count, 5);
    ck_assert_int_ne(r.results[3].more, 0);
    ck_assert_str_eq(r.results[3].kvs[0].key, "p/a");
    ck_assert_str_eq(r.results[3].kvs[1].key, "p/b");
    ck_assert_uint_eq(r.results[3].kvs[1].value_len, 0);
    ck_assert_int_eq(r.results[3].kvs[1].lease, 9);
    ballast_txn_result_free(&r);
    ck_assert_ptr_null(r.results);
    ck_assert_uint_eq(r.n_results, 0);

    /* the request: msgpack both ways, a request id, the document's shape */
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "POST", "/v1/txn");
    ck_assert_str_eq(q->accept, "application/msgpack");
    assert_request_id(q);
    ck_assert_str_eq(ballast_txn_request_id(t), q->id);
    const msgpack_object *b = body_map(q, &u);
    ck_assert_uint_eq(b->via.map.size, 3);
    const msgpack_object *cmp = field(b, "compare"), *ok = field(b, "success"),
                         *ko = field(b, "failure");
    ck_assert_ptr_nonnull(cmp);
    ck_assert_ptr_nonnull(ok);
    ck_assert_ptr_nonnull(ko);
    ck_assert_uint_eq(cmp->via.array.size, 2);
    ck_assert_uint_eq(ok->via.array.size, 4);
    ck_assert_uint_eq(ko->via.array.size, 1);
    const msgpack_object *o = item(cmp, 0);
    ck_assert_uint_eq(o->via.map.size, 4);
    assert_bin_field(o, "key", KEY, KEY_LEN);
    assert_str_field(o, "target", "mod");
    assert_str_field(o, "op", "==");
    assert_int_field(o, "number", 41);
    o = item(cmp, 1);
    assert_bin_field(o, "key", "k", 1);
    assert_str_field(o, "target", "value");
    assert_str_field(o, "op", "!=");
    assert_bin_field(o, "value", "v\0x", 3);
    ck_assert_ptr_null(field(o, "number"));
    o = op_body(item(ok, 0), "put");
    ck_assert_uint_eq(o->via.map.size, 2);
    assert_bin_field(o, "key", KEY, KEY_LEN);
    assert_bin_field(o, "value", "8", 1);
    o = op_body(item(ok, 1), "put");
    assert_bin_field(o, "value", "", 0);
    assert_int_field(o, "lease", 9);
    o = op_body(item(ok, 2), "delete");
    assert_bin_field(o, "key", "p/", 2);
    assert_true_field(o, "prefix");
    o = op_body(item(ok, 3), "get");
    ck_assert_uint_eq(o->via.map.size, 4);
    assert_true_field(o, "prefix");
    assert_int_field(o, "limit", 10);
    assert_true_field(o, "keys");
    o = op_body(item(ko, 0), "get");
    ck_assert_uint_eq(o->via.map.size, 1);
    assert_bin_field(o, "key", KEY, KEY_LEN);
    msgpack_unpacked_destroy(&u);

    /* the compares failed: not an error; the failure list's get */
    ck_assert_int_eq(ballast_txn(c, t, &r), 0);
    ck_assert_int_eq(r.succeeded, 0);
    ck_assert_int_eq(r.revision, 43);
    ck_assert_uint_eq(r.n_results, 1);
    ck_assert_int_eq(r.results[0].type, BALLAST_OP_GET);
    ck_assert_uint_eq(r.results[0].kvs[0].key_len, KEY_LEN);
    ck_assert_mem_eq(r.results[0].kvs[0].key, KEY, KEY_LEN);
    ck_assert_str_eq(r.results[0].kvs[0].value, "7");
    ballast_txn_result_free(&r);
    /* a second ballast_txn() is a new write: a new id */
    ck_assert_str_ne(srv_rec(s, 1)->id, srv_rec(s, 0)->id);
    ck_assert_str_eq(ballast_txn_request_id(t), srv_rec(s, 1)->id);

    /* an error answer: mapped, result zeroed */
    ck_assert_int_eq(ballast_txn(c, t, &r), BALLAST_ENOTFOUND);
    ck_assert_str_eq(ballast_errmsg(c), "lease 9 not found");
    ck_assert_ptr_null(r.results);
    ck_assert_int_eq(r.revision, 0);
    ck_assert_uint_eq(srv_nrecs(s), 3);
    ballast_txn_free(t);

    /* an empty txn is three empty lists */
    t = ballast_txn_new();
    srv_push(s, ACT_REPLY, txn_failed_resp(44));
    ck_assert_int_eq(ballast_txn(c, t, NULL), 0);
    b = body_map(srv_rec(s, 3), &u);
    ck_assert_uint_eq(field(b, "compare")->via.array.size, 0);
    ck_assert_uint_eq(field(b, "success")->via.array.size, 0);
    ck_assert_uint_eq(field(b, "failure")->via.array.size, 0);
    msgpack_unpacked_destroy(&u);
    ballast_txn_free(t);
}
END_TEST

/* Builder errors stay in the txn and fail it without a request. */
START_TEST(test_txn_builder_errors)
{
    struct fsrv *s = srv_start();
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_txn *t = ballast_txn_new();
    struct ballast_txn_result r;
    char big[4097];
    memset(big, 'k', sizeof big);

    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_SUCCESS, "ok", 2, "v", 1, 0), 0);
    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_SUCCESS, "", 0, "v", 1, 0), BALLAST_EBADARG);
    /* later mistakes do not replace the first message */
    ck_assert_int_eq(ballast_txn_get(t, 7, "k", 1, 0, 0, 0), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_txn(c, t, &r), BALLAST_EBADARG);
    ck_assert_str_eq(ballast_errmsg(c), "txn put: empty key");
    ck_assert_ptr_null(r.results);
    ballast_txn_free(t);

    t = ballast_txn_new();
    ck_assert_int_eq(ballast_txn_compare(t, "k", 1, BALLAST_CMP_VALUE, BALLAST_CMP_EQ, 1),
                     BALLAST_EBADARG);
    ck_assert_int_eq(ballast_txn(c, t, &r), BALLAST_EBADARG);
    ballast_txn_free(t);
    t = ballast_txn_new();
    ck_assert_int_eq(ballast_txn_compare(t, "k", 1, BALLAST_CMP_LEASE, 9, 1), BALLAST_EBADARG);
    ballast_txn_free(t);
    t = ballast_txn_new();
    ck_assert_int_eq(ballast_txn_delete(t, BALLAST_TXN_FAILURE, big, sizeof big, 0),
                     BALLAST_EBADARG);
    ballast_txn_free(t);
    /* an empty key is every key with prefix */
    t = ballast_txn_new();
    ck_assert_int_eq(ballast_txn_delete(t, BALLAST_TXN_FAILURE, "", 0, 1), 0);
    ck_assert_int_eq(ballast_txn_get(t, BALLAST_TXN_FAILURE, NULL, 0, 1, 0, 0), 0);
    ballast_txn_free(t);
    ck_assert_uint_eq(srv_nrecs(s), 0);
}
END_TEST

/* A txn whose answer was lost is sent again with the same request id, and
 * ballast_txn_retry() repeats the id of the last call after the library
 * gave up. */
START_TEST(test_txn_lost_answer_and_retry_keep_id)
{
    struct fsrv *s = srv_start();
    struct ballast_options o = {0};
    o.max_attempts = 2;
    o.backoff_base_ms = 1;
    o.backoff_max_ms = 2;
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, txn_failed_resp(5));
    /* a call that gives up: the kept-alive connection found closed (reopened
     * at once, not an attempt), then two attempts with lost answers */
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, txn_failed_resp(6));
    srv_push(s, ACT_REPLY, txn_failed_resp(7));
    struct ballast_client *c = client_for(&o, 1, s);
    struct ballast_txn *t = ballast_txn_new();
    struct ballast_txn_result r;
    ballast_txn_put(t, BALLAST_TXN_SUCCESS, "k", 1, "v", 1, 0);

    ck_assert_int_eq(ballast_txn(c, t, &r), 0);
    ck_assert_int_eq(r.revision, 5);
    ballast_txn_result_free(&r);
    ck_assert_str_eq(srv_rec(s, 0)->id, srv_rec(s, 1)->id);
    ck_assert_uint_eq(srv_rec(s, 1)->body_len, srv_rec(s, 0)->body_len);
    ck_assert_mem_eq(srv_rec(s, 1)->body, srv_rec(s, 0)->body, srv_rec(s, 0)->body_len);

    int rv = ballast_txn(c, t, &r);
    ck_assert_msg(rv == BALLAST_EUNAVAILABLE || rv == BALLAST_ETIMEOUT, "got %d", rv);
    ck_assert_uint_eq(srv_nrecs(s), 5);
    ck_assert_str_eq(srv_rec(s, 2)->id, srv_rec(s, 3)->id);
    ck_assert_str_eq(srv_rec(s, 2)->id, srv_rec(s, 4)->id);
    ck_assert_str_ne(srv_rec(s, 2)->id, srv_rec(s, 0)->id);
    ck_assert_int_eq(ballast_txn_retry(c, t, &r), 0);
    ck_assert_int_eq(r.revision, 6);
    ballast_txn_result_free(&r);
    ck_assert_str_eq(srv_rec(s, 5)->id, srv_rec(s, 2)->id);
    ck_assert_int_eq(ballast_txn(c, t, &r), 0);
    ck_assert_int_eq(r.revision, 7);
    ck_assert_str_ne(srv_rec(s, 6)->id, srv_rec(s, 2)->id);
    ballast_txn_result_free(&r);
    ballast_txn_free(t);
}
END_TEST

/* --- leases and per-key TTLs ------------------------------------------------------------ */

static struct blob lease_resp(int64_t id, int64_t ttl)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "id");
    msgpack_pack_int64(&m.pk, id);
    mp_str(&m, "ttl");
    msgpack_pack_int64(&m.pk, ttl);
    return mp_resp(200, "", &m);
}

START_TEST(test_lease_calls)
{
    struct fsrv *s = srv_start();
    struct mp m;
    srv_push(s, ACT_REPLY, lease_resp(7, 10)); /* grant */
    srv_push(s, ACT_REPLY, lease_resp(99, 2)); /* grant with id, ttl raised */
    srv_push(s, ACT_REPLY, lease_resp(7, 10)); /* keepalive */
    srv_push(s, ACT_REPLY, err_resp(404, "", "not_found", "lease 8 not found"));
    mp_init(&m);
    msgpack_pack_map(&m.pk, 4);
    mp_str(&m, "id");
    msgpack_pack_int64(&m.pk, 7);
    mp_str(&m, "ttl");
    msgpack_pack_int64(&m.pk, 4);
    mp_str(&m, "granted_ttl");
    msgpack_pack_int64(&m.pk, 10);
    mp_str(&m, "keys");
    msgpack_pack_array(&m.pk, 2);
    mp_bin(&m, KEY, KEY_LEN);
    mp_bin(&m, "b", 1);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m)); /* get */
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 30);
    mp_str(&m, "deleted");
    msgpack_pack_int64(&m.pk, 2);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m)); /* revoke */
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "leases");
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "id");
    msgpack_pack_int64(&m.pk, 7);
    mp_str(&m, "granted_ttl");
    msgpack_pack_int64(&m.pk, 10);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "id");
    msgpack_pack_int64(&m.pk, 99);
    mp_str(&m, "granted_ttl");
    msgpack_pack_int64(&m.pk, 2);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m)); /* list */
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_lease l;
    struct ballast_lease_info info;
    msgpack_unpacked u;
    int64_t ttl = -1, rev = -1, del = -1;

    ck_assert_int_eq(ballast_lease_grant(c, 10, 0, &l), 0);
    ck_assert_int_eq(l.id, 7);
    ck_assert_int_eq(l.ttl, 10);
    const struct rec *q = srv_rec(s, 0);
    assert_req(q, "POST", "/v1/lease");
    assert_request_id(q);
    const msgpack_object *b = body_map(q, &u);
    ck_assert_uint_eq(b->via.map.size, 1);
    assert_int_field(b, "ttl", 10);
    msgpack_unpacked_destroy(&u);

    ck_assert_int_eq(ballast_lease_grant(c, 1, 99, &l), 0);
    ck_assert_int_eq(l.id, 99);
    ck_assert_int_eq(l.ttl, 2);
    b = body_map(srv_rec(s, 1), &u);
    ck_assert_uint_eq(b->via.map.size, 2);
    assert_int_field(b, "ttl", 1);
    assert_int_field(b, "id", 99);
    msgpack_unpacked_destroy(&u);

    ck_assert_int_eq(ballast_lease_keepalive(c, 7, &ttl), 0);
    ck_assert_int_eq(ttl, 10);
    q = srv_rec(s, 2);
    assert_req(q, "POST", "/v1/lease/7/keepalive");
    ck_assert_int_eq(q->has_id, 0); /* not a Raft write */
    ck_assert_int_ne(q->has_cl, 0);
    ck_assert_uint_eq(q->body_len, 0);
    ck_assert_int_eq(ballast_lease_keepalive(c, 8, &ttl), BALLAST_ENOTFOUND);
    ck_assert_int_eq(ttl, 0);
    ck_assert_str_eq(ballast_errmsg(c), "lease 8 not found");

    ck_assert_int_eq(ballast_lease_get(c, 7, &info), 0);
    assert_req(srv_rec(s, 4), "GET", "/v1/lease/7");
    ck_assert_int_eq(srv_rec(s, 4)->has_id, 0);
    ck_assert_int_eq(info.id, 7);
    ck_assert_int_eq(info.ttl, 4);
    ck_assert_int_eq(info.granted_ttl, 10);
    ck_assert_int_eq(info.more, 0);
    ck_assert_uint_eq(info.n_keys, 2);
    ck_assert_uint_eq(info.keys[0].key_len, KEY_LEN);
    ck_assert_mem_eq(info.keys[0].key, KEY, KEY_LEN);
    ck_assert_int_eq(info.keys[0].key[KEY_LEN], '\0');
    ck_assert_str_eq(info.keys[1].key, "b");
    ballast_lease_info_free(&info);
    ck_assert_ptr_null(info.keys);

    ck_assert_int_eq(ballast_lease_revoke(c, 7, &rev, &del), 0);
    ck_assert_int_eq(rev, 30);
    ck_assert_int_eq(del, 2);
    assert_req(srv_rec(s, 5), "DELETE", "/v1/lease/7");
    assert_request_id(srv_rec(s, 5));

    struct ballast_lease *ls = NULL;
    size_t n = 0;
    ck_assert_int_eq(ballast_lease_list(c, &ls, &n), 0);
    assert_req(srv_rec(s, 6), "GET", "/v1/leases");
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ls[0].id, 7);
    ck_assert_int_eq(ls[0].granted_ttl, 10);
    ck_assert_int_eq(ls[1].id, 99);
    ck_assert_int_eq(ls[1].granted_ttl, 2);
    ballast_free(ls);

    /* bad ids and ttls are never sent */
    ck_assert_int_eq(ballast_lease_keepalive(c, 0, NULL), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_lease_revoke(c, -1, NULL, NULL), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_lease_grant(c, 0, 0, NULL), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_lease_get(c, 0, &info), BALLAST_EBADARG);
    ck_assert_uint_eq(srv_nrecs(s), 7);
}
END_TEST

/* A keepalive is resent after a lost answer even when unsent writes are
 * not retried; a revoke retried into a 404 has done its work. */
START_TEST(test_lease_retry_rules)
{
    struct fsrv *s = srv_start();
    struct ballast_options o = {0};
    o.no_retry_unsent_writes = 1;
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, lease_resp(7, 10));
    srv_push(s, ACT_CLOSE, raw_resp("")); /* grant: not resent */
    struct ballast_client *c = client_for(&o, 1, s);
    int64_t ttl = 0, rev = -1, del = -1;

    ck_assert_int_eq(ballast_lease_keepalive(c, 7, &ttl), 0);
    ck_assert_int_eq(ttl, 10);
    ck_assert_uint_eq(srv_nrecs(s), 2);
    ck_assert_int_eq(ballast_lease_grant(c, 10, 0, NULL), BALLAST_EUNAVAILABLE);
    ck_assert_uint_eq(srv_nrecs(s), 3);

    struct fsrv *t = srv_start();
    srv_push(t, ACT_CLOSE, raw_resp(""));
    srv_push(t, ACT_REPLY, err_resp(404, "", "not_found", "lease 7 not found"));
    srv_push(t, ACT_REPLY, err_resp(404, "", "not_found", "lease 7 not found"));
    c = client_for(NULL, 1, t);
    ck_assert_int_eq(ballast_lease_revoke(c, 7, &rev, &del), 0);
    ck_assert_int_eq(rev, 0);
    ck_assert_int_eq(del, 0);
    ck_assert_str_eq(srv_rec(t, 0)->id, srv_rec(t, 1)->id);
    /* a 404 to a first attempt is a 404 */
    ck_assert_int_eq(ballast_lease_revoke(c, 7, &rev, &del), BALLAST_ENOTFOUND);
}
END_TEST

/* put ?ttl= and ?lease=, and a caller's request id on every attempt. */
START_TEST(test_put_ttl_lease_and_request_id)
{
    struct fsrv *s = srv_start();
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "revision");
    msgpack_pack_int64(&m.pk, 5);
    mp_str(&m, "lease");
    msgpack_pack_int64(&m.pk, 77);
    srv_push(s, ACT_REPLY, mp_resp(200, "", &m));
    srv_push(s, ACT_REPLY, rev_resp(6));
    srv_push(s, ACT_REPLY, rev_resp(7));
    srv_push(s, ACT_CLOSE, raw_resp(""));
    srv_push(s, ACT_REPLY, rev_resp(8));
    struct ballast_client *c = client_for(NULL, 1, s);
    struct ballast_put_opts po = BALLAST_PUT_OPTS_INIT;
    struct ballast_put_result r;
    char id[BALLAST_REQUEST_ID_SIZE];

    po.ttl_ms = 30000;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, &r), 0);
    ck_assert_int_eq(r.revision, 5);
    ck_assert_int_eq(r.lease, 77);
    ballast_put_result_free(&r);
    assert_req(srv_rec(s, 0), "PUT", "/v1/kv/k?ttl=30s");
    po.ttl_ms = 1500;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, &r), 0);
    ck_assert_int_eq(r.lease, 0);
    assert_req(srv_rec(s, 1), "PUT", "/v1/kv/k?ttl=1500ms");
    po.ttl_ms = 0;
    po.lease = 12;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), 0);
    assert_req(srv_rec(s, 2), "PUT", "/v1/kv/k?lease=12");

    ballast_new_request_id(c, id);
    ck_assert_uint_eq(strlen(id), 32);
    ck_assert_uint_eq(strspn(id, "0123456789abcdef"), 32);
    po = (struct ballast_put_opts)BALLAST_PUT_OPTS_INIT;
    po.request_id = "svc-a:order-17";
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, &r), 0);
    ck_assert_int_eq(r.revision, 8);
    ck_assert_str_eq(srv_rec(s, 3)->id, "svc-a:order-17");
    ck_assert_str_eq(srv_rec(s, 4)->id, "svc-a:order-17");

    /* refused before sending */
    po.request_id = "has space";
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), BALLAST_EBADARG);
    po.request_id = "";
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), BALLAST_EBADARG);
    po.request_id = NULL;
    po.lease = 3;
    po.ttl_ms = 1000;
    ck_assert_int_eq(ballast_put(c, "k", 1, "v", 1, &po, NULL), BALLAST_EBADARG);
    ck_assert_uint_eq(srv_nrecs(s), 5);
}
END_TEST

/* --- long-poll ------------------------------------------------------------------- */

START_TEST(test_long_poll_get_and_range)
{
    struct fsrv *s = srv_start();
    struct ballast_options o = {0};
    struct mp m;
    o.attempt_timeout_ms = 200;
    o.request_timeout_ms = 400;
    /* answered after 700 ms: past both timeouts, within the wait */
    mp_init(&m);
    mp_kv(&m, KEY, KEY_LEN, "new", 3, 1, 12, 2, 0);
    srv_push_step(s, ACT_REPLY, mp_resp(200, "X-Ballast-Revision: 12\r\n", &m), 0, 700);
    srv_push(s, ACT_REPLY,
             http_resp(404, "X-Ballast-Revision: 13\r\n", NULL, "", 0)); /* deleted meanwhile */
    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "kvs");
    msgpack_pack_array(&m.pk, 1);
    mp_kv(&m, "p/a", 3, "1", 1, 14, 14, 1, 0);
    mp_str(&m, "more");
    msgpack_pack_false(&m.pk);
    mp_str(&m, "count");
    msgpack_pack_int64(&m.pk, 1);
    srv_push_step(s, ACT_REPLY, mp_resp(200, "X-Ballast-Revision: 14\r\n", &m), 0, 300);
    srv_push(s, ACT_REPLY, kv_resp("k", "v", 3));
    struct ballast_client *c = client_for(&o, 1, s);
    struct ballast_get_opts go = {0};
    struct ballast_kv *kv = NULL;
    int64_t rev = -1;

    go.index = 7;
    go.wait_ms = 1000;
    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_get_wait(c, KEY, KEY_LEN, &go, &kv, &rev), 0);
    ck_assert_int_ge(now_ms() - t0, 690);
    ck_assert_str_eq(kv->value, "new");
    ck_assert_int_eq(rev, 12);
    ballast_kv_free(kv);
    assert_req(srv_rec(s, 0), "GET", KEY_WIRE "?wait=1s&index=7");
    ck_assert_uint_eq(srv_nrecs(s), 1); /* no retry: the attempt waited */

    go.index = rev;
    ck_assert_int_eq(ballast_get_wait(c, KEY, KEY_LEN, &go, &kv, &rev), BALLAST_ENOTFOUND);
    ck_assert_ptr_null(kv);
    ck_assert_int_eq(rev, 13);
    assert_req(srv_rec(s, 1), "GET", KEY_WIRE "?wait=1s&index=12");

    struct ballast_range_opts ro = {0};
    struct ballast_range_result rr;
    ro.index = 13;
    ro.wait_ms = 1500;
    ck_assert_int_eq(ballast_range(c, "p/", 2, &ro, &rr), 0);
    ck_assert_uint_eq(rr.n, 1);
    ck_assert_int_eq(rr.revision, 14); /* no revision field: the header's */
    ballast_range_result_free(&rr);
    assert_req(srv_rec(s, 2), "GET", "/v1/kv/p%2F?prefix&wait=1500ms&index=13");

    /* no index: a plain get, no wait parameters */
    ck_assert_int_eq(ballast_get_wait(c, "k", 1, NULL, &kv, &rev), 0);
    ballast_kv_free(kv);
    assert_req(srv_rec(s, 3), "GET", "/v1/kv/k");
    go.index = -1;
    ck_assert_int_eq(ballast_get_wait(c, "k", 1, &go, &kv, &rev), BALLAST_EBADARG);
}
END_TEST

/* --- watch -------------------------------------------------------------------------- */

/* The head of a watch stream (chunked msgpack). */
static void stream_head(struct blob *b, int64_t rev)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\n"
                     "Transfer-Encoding: chunked\r\nX-Ballast-Revision: %lld\r\n\r\n",
                     (long long)rev);
    b->p = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b->p);
    memcpy(b->p, head, (size_t)n + 1);
    b->n = (size_t)n;
}

static void blob_add(struct blob *b, const void *p, size_t n)
{
    char *np = realloc(b->p, b->n + n + 1);
    ck_assert_ptr_nonnull(np);
    b->p = np;
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Append @m's bytes (destroyed) as chunks of @chunk bytes: events straddle
 * chunks. */
static void add_chunks(struct blob *b, struct mp *m, size_t chunk)
{
    for (size_t off = 0; off < m->sb.size; off += chunk) {
        size_t k = m->sb.size - off < chunk ? m->sb.size - off : chunk;
        char line[32];
        int n = snprintf(line, sizeof line, "%zx\r\n", k);
        blob_add(b, line, (size_t)n);
        blob_add(b, m->sb.data + off, k);
        blob_add(b, "\r\n", 2);
    }
    msgpack_sbuffer_destroy(&m->sb);
}

static void ev_put(struct mp *m, const char *key, const char *value, size_t vlen, int64_t rev)
{
    msgpack_pack_map(&m->pk, 3);
    mp_str(m, "type");
    mp_str(m, "put");
    mp_str(m, "kv");
    mp_kv(m, key, strlen(key), value, vlen, rev - 1, rev, 1, 0);
    mp_str(m, "revision");
    msgpack_pack_int64(&m->pk, rev);
}

static void ev_del(struct mp *m, const char *key, int64_t rev)
{
    msgpack_pack_map(&m->pk, 3);
    mp_str(m, "type");
    mp_str(m, "delete");
    mp_str(m, "kv");
    mp_kv(m, key, strlen(key), NULL, 0, 0, rev, 0, 0);
    mp_str(m, "revision");
    msgpack_pack_int64(&m->pk, rev);
}

static void ev_progress(struct mp *m, int64_t rev)
{
    msgpack_pack_map(&m->pk, 2);
    mp_str(m, "type");
    mp_str(m, "progress");
    mp_str(m, "revision");
    msgpack_pack_int64(&m->pk, rev);
}

static void ev_cancel(struct mp *m, const char *reason, int64_t next)
{
    msgpack_pack_map(&m->pk, 3);
    mp_str(m, "type");
    mp_str(m, "cancelled");
    mp_str(m, "reason");
    mp_str(m, reason);
    mp_str(m, "revision");
    msgpack_pack_int64(&m->pk, next);
}

/* Wait for the next event and check its type, key, value and revision. */
static void expect_event(struct ballast_watch *w, int type, const char *key, const char *value,
                         int64_t rev)
{
    struct ballast_event ev;
    int rv = ballast_watch_next(w, 5000, &ev);
    ck_assert_msg(rv == 0, "watch_next: %d", rv);
    ck_assert_int_eq(ev.type, type);
    ck_assert_int_eq(ev.revision, rev);
    ck_assert_str_eq(ev.kv.key, key);
    ck_assert_uint_eq(ev.kv.key_len, strlen(key));
    ck_assert_str_eq(ev.kv.value, value);
    if (type == BALLAST_EVENT_PUT || type == BALLAST_EVENT_DELETE) {
        ck_assert_int_eq(ev.kv.mod_revision, rev);
    }
}

/* Three dropped connections and a shutdown: the watch resumes each time on
 * the next endpoint, at last + 1 once the last revision is known complete
 * (a progress event, a later revision, the cancel's NEXT), else at the last
 * revision, dropping what it delivered of it already. Every event comes
 * once, in order; a "slow" cancel ends the watch. */
START_TEST(test_watch_resumes_across_dropped_connections)
{
    struct fsrv *a = srv_start(), *b = srv_start(), *d = srv_start();
    struct blob x;
    struct mp m;
    static char big[100 * 1000];
    memset(big, 'g', sizeof big);

    /* a: 5, 6, 7, progress 7, then the connection drops (no last chunk) */
    stream_head(&x, 4);
    mp_init(&m);
    ev_put(&m, "p/a", "1", 1, 5);
    ev_put(&m, "p/b", "2", 1, 6);
    ev_del(&m, "p/a", 7);
    ev_progress(&m, 7);
    add_chunks(&x, &m, 5);
    srv_push_piece(a, ACT_REPLY_CLOSE, x, 7);
    /* b: two events of the txn at 8, then it drops */
    stream_head(&x, 9);
    mp_init(&m);
    ev_put(&m, "p/c", "3", 1, 8);
    ev_put(&m, "p/d", "4", 1, 8);
    add_chunks(&x, &m, 11);
    srv_push(b, ACT_REPLY_CLOSE, x);
    /* d: revision 8 again, whole (three events), 9, then a shutdown */
    stream_head(&x, 9);
    mp_init(&m);
    ev_put(&m, "p/c", "3", 1, 8);
    ev_put(&m, "p/d", "4", 1, 8);
    ev_put(&m, "p/e", "5", 1, 8);
    ev_put(&m, "p/f", "6", 1, 9);
    ev_cancel(&m, "shutdown", 10);
    add_chunks(&x, &m, 64);
    blob_add(&x, "0\r\n\r\n", 5);
    srv_push(d, ACT_REPLY_CLOSE, x);
    /* a again: a 100 kB value over many reads, progress, a slow cancel */
    stream_head(&x, 12);
    mp_init(&m);
    ev_put(&m, "p/g", big, sizeof big, 10);
    ev_progress(&m, 12);
    ev_cancel(&m, "slow", 13);
    add_chunks(&x, &m, 4096);
    srv_push(a, ACT_REPLY, x); /* and the connection stays open */

    struct ballast_client *c = client_for(NULL, 3, a, b, d);
    struct ballast_watch_opts wo = {0};
    struct ballast_watch *w = NULL;
    struct ballast_event ev;
    wo.prefix = 1;
    ck_assert_int_eq(ballast_watch_open(c, "p/", 2, &wo, &w), 0);
    ck_assert_ptr_nonnull(w);
    const struct rec *q = srv_rec(a, 0);
    assert_req(q, "GET", "/v1/watch/p%2F?prefix");
    ck_assert_str_eq(q->accept, "application/msgpack");
    ck_assert_int_eq(q->has_id, 0);

    expect_event(w, BALLAST_EVENT_PUT, "p/a", "1", 5);
    expect_event(w, BALLAST_EVENT_PUT, "p/b", "2", 6);
    expect_event(w, BALLAST_EVENT_DELETE, "p/a", "", 7);
    expect_event(w, BALLAST_EVENT_PROGRESS, "", "", 7);
    expect_event(w, BALLAST_EVENT_PUT, "p/c", "3", 8);
    assert_req(srv_rec(b, 0), "GET", "/v1/watch/p%2F?prefix&rev=8");
    expect_event(w, BALLAST_EVENT_PUT, "p/d", "4", 8);
    expect_event(w, BALLAST_EVENT_PUT, "p/e", "5", 8);
    assert_req(srv_rec(d, 0), "GET", "/v1/watch/p%2F?prefix&rev=8");
    expect_event(w, BALLAST_EVENT_PUT, "p/f", "6", 9);

    ck_assert_int_eq(ballast_watch_next(w, 5000, &ev), 0);
    assert_req(srv_rec(a, 1), "GET", "/v1/watch/p%2F?prefix&rev=10");
    ck_assert_int_eq(ev.type, BALLAST_EVENT_PUT);
    ck_assert_int_eq(ev.revision, 10);
    ck_assert_uint_eq(ev.kv.value_len, sizeof big);
    ck_assert_mem_eq(ev.kv.value, big, sizeof big);
    ck_assert_int_eq(ev.kv.value[sizeof big], '\0');
    expect_event(w, BALLAST_EVENT_PROGRESS, "", "", 12);
    ck_assert_int_eq(ballast_watch_next(w, 5000, &ev), 0);
    ck_assert_int_eq(ev.type, BALLAST_EVENT_CANCELLED);
    ck_assert_int_eq(ev.revision, 13);
    ck_assert_str_eq(ev.reason, "slow");
    ck_assert_int_eq(ballast_watch_next(w, 5000, &ev), BALLAST_ECANCELLED);
    ck_assert_int_eq(ballast_watch_next(w, 0, &ev), BALLAST_ECANCELLED);
    ck_assert_ptr_nonnull(strstr(ballast_errmsg(c), "slow"));
    ck_assert_uint_eq(srv_nrecs(a), 2);
    ck_assert_uint_eq(srv_nrecs(b), 1);
    ck_assert_uint_eq(srv_nrecs(d), 1);
    ballast_watch_close(w);
    /* the client's own calls were never disturbed */
    srv_push(b, ACT_REPLY, kv_resp("k", "v", 3));
    struct ballast_kv *kv;
    ck_assert_int_eq(ballast_get(c, "k", 1, 0, &kv), 0);
    ballast_kv_free(kv);
}
END_TEST

/* A silent connection is taken as lost after the idle timeout; until then
 * a short wait is BALLAST_EAGAIN. Resuming at the last revision drops the
 * event delivered before. */
START_TEST(test_watch_idle_timeout_and_eagain)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    struct blob x;
    struct mp m;
    stream_head(&x, 2);
    mp_init(&m);
    ev_put(&m, "x", "old", 3, 3);
    add_chunks(&x, &m, 1000);
    srv_push(a, ACT_REPLY, x);
    stream_head(&x, 4);
    mp_init(&m);
    ev_put(&m, "x", "old", 3, 3);
    ev_put(&m, "x", "new", 3, 4);
    add_chunks(&x, &m, 1000);
    srv_push(b, ACT_REPLY, x);
    struct ballast_client *c = client_for(NULL, 2, a, b);
    struct ballast_watch_opts wo = {0};
    struct ballast_watch *w = NULL;
    struct ballast_event ev;
    wo.idle_timeout_ms = 400;

    ck_assert_int_eq(ballast_watch_open(c, "x", 1, &wo, &w), 0);
    assert_req(srv_rec(a, 0), "GET", "/v1/watch/x");
    expect_event(w, BALLAST_EVENT_PUT, "x", "old", 3);
    int64_t t0 = now_ms();
    ck_assert_int_eq(ballast_watch_next(w, 0, &ev), BALLAST_EAGAIN);
    ck_assert_int_eq(ballast_watch_next(w, 100, &ev), BALLAST_EAGAIN);
    ck_assert_int_eq(ev.type, 0);
    ck_assert_int_ge(now_ms() - t0, 95);
    ck_assert_uint_eq(srv_nrecs(b), 0);
    expect_event(w, BALLAST_EVENT_PUT, "x", "new", 4);
    ck_assert_int_ge(now_ms() - t0, 300); /* waited for the idle limit */
    assert_req(srv_rec(b, 0), "GET", "/v1/watch/x?rev=3");
    ballast_watch_close(w);
}
END_TEST

START_TEST(test_watch_errors)
{
    struct fsrv *a = srv_start(), *b = srv_start();
    struct blob x;
    struct mp m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "error");
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "code");
    mp_str(&m, "compacted");
    mp_str(&m, "message");
    mp_str(&m, "revision 3 is compacted");
    mp_str(&m, "compact_revision");
    msgpack_pack_int64(&m.pk, 50);
    srv_push(a, ACT_REPLY, mp_resp(410, "", &m));
    static const char json410[] =
        "{\"error\": {\"code\": \"compacted\", \"message\": \"gone\"}, \"compact_revision\": 61}";
    srv_push(a, ACT_REPLY, http_resp(410, "", "application/json", json410, strlen(json410)));
    /* a stream answered as NDJSON: the server ignored Accept */
    srv_push(a, ACT_REPLY, http_resp(200, "", "application/x-ndjson", "{}\n", 3));
    /* a malformed stream (0xc1 is never msgpack) */
    stream_head(&x, 1);
    blob_add(&x, "1\r\n\xc1\r\n", 6);
    srv_push(a, ACT_REPLY, x);
    stream_head(&x, 1);
    mp_init(&m);
    ev_put(&m, "k", "v", 1, 2);
    add_chunks(&x, &m, 100);
    srv_push(b, ACT_REPLY_CLOSE, x); /* no_reconnect: then the end */
    stream_head(&x, 1);
    mp_init(&m);
    ev_cancel(&m, "shutdown", 3);
    add_chunks(&x, &m, 100);
    srv_push(b, ACT_REPLY, x);
    struct ballast_client *c = client_for(NULL, 2, a, b);
    struct ballast_watch_opts wo = {0};
    struct ballast_watch *w = (struct ballast_watch *)&wo;
    struct ballast_event ev;

    wo.rev = 3;
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), BALLAST_ECOMPACTED);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(ballast_compact_revision(c), 50);
    ck_assert_str_eq(ballast_errmsg(c), "revision 3 is compacted");
    assert_req(srv_rec(a, 0), "GET", "/v1/watch/k?rev=3");
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), BALLAST_ECOMPACTED);
    ck_assert_int_eq(ballast_compact_revision(c), 61);
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), BALLAST_EPROTO);
    ck_assert_uint_eq(srv_nrecs(b), 0); /* final answers: no failover */

    wo.rev = 0;
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), 0);
    ck_assert_int_eq(ballast_watch_next(w, 2000, &ev), BALLAST_EPROTO);
    ck_assert_ptr_nonnull(strstr(ballast_errmsg(c), "malformed"));
    ballast_watch_close(w);

    /* no_reconnect: a lost connection ends the watch; a shutdown is delivered */
    c = client_for(NULL, 1, b);
    wo.no_reconnect = 1;
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), 0);
    expect_event(w, BALLAST_EVENT_PUT, "k", "v", 2);
    ck_assert_int_eq(ballast_watch_next(w, 2000, &ev), BALLAST_EUNAVAILABLE);
    ck_assert_int_eq(ballast_watch_next(w, 2000, &ev), BALLAST_EUNAVAILABLE);
    ck_assert_uint_eq(srv_nrecs(b), 1);
    ballast_watch_close(w);
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), 0);
    ck_assert_int_eq(ballast_watch_next(w, 2000, &ev), 0);
    ck_assert_int_eq(ev.type, BALLAST_EVENT_CANCELLED);
    ck_assert_str_eq(ev.reason, "shutdown");
    ck_assert_int_eq(ev.revision, 3);
    ballast_watch_close(w);

    /* bad arguments */
    ck_assert_int_eq(ballast_watch_open(c, "", 0, NULL, &w), BALLAST_EBADARG);
    wo.rev = -2;
    ck_assert_int_eq(ballast_watch_open(c, "k", 1, &wo, &w), BALLAST_EBADARG);
    ck_assert_int_eq(ballast_watch_next(NULL, 0, &ev), BALLAST_EBADARG);
    ballast_watch_close(NULL);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc;

    tc = tcase_create("decode");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_put_decodes_revision_and_prev);
    tcase_add_test(tc, test_get_decodes_kv);
    tcase_add_test(tc, test_get_missing_key_not_found);
    tcase_add_test(tc, test_error_answers_map_and_are_final);
    tcase_add_test(tc, test_delete_decodes_prev_kvs);
    tcase_add_test(tc, test_range_decodes_page);
    tcase_add_test(tc, test_status_and_members_decode);
    tcase_add_test(tc, test_chunked_interim_and_close_delimited_bodies);
    tcase_add_test(tc, test_garbage_and_oversized_replies_eproto);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_failover_refused_then_next_endpoint);
    tcase_add_test(tc, test_failover_503_tries_next_endpoint_at_once);
    tcase_add_test(tc, test_all_503_backoff_between_passes_then_enoleader);
    tcase_add_test(tc, test_retry_after_capped_by_backoff_max);
    tcase_add_test(tc, test_lost_answer_write_retried_with_same_id);
    tcase_add_test(tc, test_separate_writes_carry_different_ids);
    tcase_add_test(tc, test_no_retry_unsent_writes);
    tcase_add_test(tc, test_504_once_then_200);
    tcase_add_test(tc, test_507_after_lost_answer_is_unknown);
    tcase_add_test(tc, test_hung_endpoint_abandoned_after_attempt_timeout);
    tcase_add_test(tc, test_request_timeout_bounds_call);
    tcase_add_test(tc, test_stale_keepalive_reopened);
    suite_add_tcase(s, tc);

    tc = tcase_create("calls");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_raw_request_returns_body_and_status);
    tcase_add_test(tc, test_leader_transfer);
    tcase_add_test(tc, test_retry_after_kept_when_pass_ends_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("members and snapshot");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_member_add);
    tcase_add_test(tc, test_member_remove);
    tcase_add_test(tc, test_member_promote);
    tcase_add_test(tc, test_snapshot_save);
    suite_add_tcase(s, tc);

    tc = tcase_create("txn, lease, long-poll");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_txn_request_and_result);
    tcase_add_test(tc, test_txn_builder_errors);
    tcase_add_test(tc, test_txn_lost_answer_and_retry_keep_id);
    tcase_add_test(tc, test_lease_calls);
    tcase_add_test(tc, test_lease_retry_rules);
    tcase_add_test(tc, test_put_ttl_lease_and_request_id);
    tcase_add_test(tc, test_long_poll_get_and_range);
    suite_add_tcase(s, tc);

    tc = tcase_create("watch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_watch_resumes_across_dropped_connections);
    tcase_add_test(tc, test_watch_idle_timeout_and_eagain);
    tcase_add_test(tc, test_watch_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(client_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
