/* The member-to-member HTTP/1.1 client: pooled keep-alive connections on libuv.
 *
 * Happy path: bl_http_client_request() checks and copies the request into
 * one wire buffer (request line, the caller's headers, Host, Content-Length,
 * Connection: keep-alive, body), starts the request's deadline timer, and
 * takes the newest idle connection to the same "host:port" from the pool.
 * With none there, it connects afresh: an IPv4 or [IPv6] literal at once, a
 * host name after uv_getaddrinfo() (each address it returns is tried in
 * turn); after bl_http_client_bind() a new IPv4 connection is first bound to
 * the member's own address, so it is not sent from 127.0.0.1 or whatever
 * the route picks. The wire buffer goes out with uv_try_write() and, for what does not
 * fit, one uv_write(). The response is parsed by http-parser as it arrives
 * (Content-Length, chunked, or read-until-EOF bodies), with headers and body
 * gathered in the request. When it is complete the connection goes back to
 * the pool if both sides allow keep-alive (at most max_idle per
 * destination), and then the callback runs once with the response.
 *
 * Idle connections keep reading: anything from the peer on an idle
 * connection (its close, or stray bytes) closes it, and one timer closes
 * those idle for CLIENT_IDLE_MS. Idle connections and that timer do not keep
 * the loop alive.
 *
 * Failure modes, and what the caller learns:
 * - No connection (resolve or connect failed, every address refused):
 *   BL_EUNAVAILABLE. The request never left this process.
 * - A pooled connection that the peer has closed meanwhile: a non-blocking
 *   peek finds most of them before use, and they are dropped. If one still
 *   fails the very first write (not one byte of the request written), the
 *   request is retried once on a fresh connection; after that failure, or on
 *   a fresh connection, it is BL_EUNAVAILABLE.
 * - Once any byte of the request may have been written, a broken connection,
 *   an EOF, or a malformed response before the response is complete is
 *   BL_ETIMEOUT: the peer may have acted on it, so it is never retried.
 * - The deadline (@timeout_ms; 0 means none) is BL_ETIMEOUT, at any stage.
 * - A response body over CLIENT_MAX_BODY or headers over
 *   CLIENT_MAX_HEADER_BYTES is BL_ETOOLARGE (the request was sent: the
 *   outcome is unknown all the same). Headers past BL_HTTP_MAX_HEADERS are
 *   dropped.
 * - bl_http_client_close() fails every pending request with BL_ESHUTDOWN.
 * - Bad arguments (a malformed "host:port", CR or LF in a header, a client
 *   that is closing) are returned at once and the callback never runs.
 *   Failures found later, even inside bl_http_client_request(), are
 *   reported through the callback from the loop, never from within the call.
 * The callback runs exactly once per accepted request. Writes use write(2):
 * the process must ignore SIGPIPE, as for any libuv stream.
 *
 * Ownership: a request copies everything it needs when it is made. The
 * response handed to the callback lives in the request and is freed when
 * the callback returns. Memory of a connection or request is freed only in
 * the close callback of its libuv handle; the client itself is freed by the
 * last close callback after bl_http_client_close() (counted in n_closing).
 * A name lookup in flight when its request ends is cut loose: it owns itself
 * and frees itself when libuv reports it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "http_client.h"

#include <errno.h>
#include <limits.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "error.h"

#define CLIENT_MAX_BODY         (64u << 20) /* largest response body accepted */
#define CLIENT_MAX_HEADER_BYTES (64u << 10) /* largest response header section */
#define CLIENT_READ_SIZE        65536       /* read buffer of each connection */
#define CLIENT_MAX_ADDRS        8           /* addresses of a host name tried in turn */
#define CLIENT_MAX_METHOD       32

/* An idle connection is closed after this long (a build may lower it to
 * watch the sweep at work). */
#ifndef CLIENT_IDLE_MS
#define CLIENT_IDLE_MS 30000
#endif

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct conn;
struct req;

struct bl_http_client {
    uv_loop_t *loop;
    uv_timer_t sweep;                   /* closes connections idle too long */
    struct conn *idle_head, *idle_tail; /* the pool, oldest first */
    struct req *reqs;                   /* requests whose callback is due */
    struct sockaddr_in src;             /* IPv4 source of new connections */
    bool has_src;                       /* set by bl_http_client_bind() */
    unsigned n_closing;                 /* close callbacks still to come */
    unsigned max_idle;                  /* pooled connections per destination */
    bool closing;
};

enum conn_state { CONN_CONNECTING, CONN_ACTIVE, CONN_IDLE, CONN_CLOSING };

struct conn {
    struct bl_http_client *c;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    http_parser parser;
    int state;
    bool writing; /* a uv_write is in flight */
    bool used;    /* it has carried a response before: it came from the pool */
    char *dest;   /* the pool key, "host:port" */
    struct req *req;
    struct conn *prev, *next; /* in the idle list */
    uint64_t idle_since;
    char rbuf[CLIENT_READ_SIZE];
};

/* A name lookup; outlives its request if that ends first (req is then NULL). */
struct resolve {
    uv_getaddrinfo_t gai;
    struct req *req;
};

struct resp_header {
    size_t name_off, name_len, value_off, value_len;
};

struct req {
    struct bl_http_client *c;
    struct req *prev, *next;
    char *dest; /* "host:port", the pool key and Host header */
    char *host; /* for uv_getaddrinfo, without brackets */
    char port[6];
    struct sockaddr_storage addrs[CLIENT_MAX_ADDRS];
    unsigned n_addrs, next_addr;
    struct resolve *resolve; /* lookup in flight */
    struct conn *conn;       /* connection in use */
    char *wire;              /* the whole request as sent */
    size_t wire_len;
    bool is_head;
    bool retried;
    bool done;         /* the callback has run */
    int pending_error; /* to report from the timer callback */
    uv_timer_t timer;
    bl_http_client_cb cb;
    void *arg;

    /* The response as parsed so far. */
    int status;
    bool complete, keep_alive;
    int parse_error; /* set by a parser callback that gave up */
    int hstate;      /* 0: no header yet, 1: in a name, 2: in a value */
    bool hdrop;      /* the current header is past BL_HTTP_MAX_HEADERS */
    char *hbuf;      /* names and values, each NUL-terminated */
    size_t hlen, hcap;
    struct resp_header hdrs[BL_HTTP_MAX_HEADERS];
    unsigned n_hdrs;
    uint8_t *body;
    size_t body_len, body_cap;
};

static void req_finish(struct req *r, int status);
static void start_fresh(struct req *r);
static void on_req_timer(uv_timer_t *t);

/* --- the client ----------------------------------------------------------- */

static void client_maybe_free(struct bl_http_client *c)
{
    if (c->closing && c->n_closing == 0 && c->reqs == NULL && c->idle_head == NULL) {
        free(c);
    }
}

static void on_sweep_closed(uv_handle_t *h)
{
    struct bl_http_client *c = CONTAINER_OF(h, struct bl_http_client, sweep);
    c->n_closing--;
    client_maybe_free(c);
}

int bl_http_client_init(uv_loop_t *loop, struct bl_http_client **out)
{
    struct bl_http_client *c = calloc(1, sizeof *c);
    int rv;

    if (c == NULL) {
        return BL_ENOMEM;
    }
    c->loop = loop;
    c->max_idle = BL_HTTP_CLIENT_MAX_IDLE;
    rv = uv_timer_init(loop, &c->sweep);
    if (rv != 0) {
        free(c);
        return bl_from_uv(rv);
    }
    uv_unref((uv_handle_t *)&c->sweep);
    *out = c;
    return BL_OK;
}

void bl_http_client_set_max_idle(struct bl_http_client *c, unsigned n)
{
    c->max_idle = n;
}

int bl_http_client_bind(struct bl_http_client *c, const char *listen)
{
    char host[INET_ADDRSTRLEN + 8];
    const char *colon = strrchr(listen, ':');
    struct sockaddr_in sa;
    size_t len;

    if (colon == NULL || colon == listen || colon[1] == '\0') {
        return BL_EBADREQ;
    }
    len = (size_t)(colon - listen);
    if (listen[0] == '[' || len >= sizeof host) {
        return BL_OK; /* IPv6 or a long name: no IPv4 literal */
    }
    memcpy(host, listen, len);
    host[len] = '\0';
    if (uv_ip4_addr(host, 0, &sa) != 0 || sa.sin_addr.s_addr == htonl(INADDR_ANY)) {
        return BL_OK; /* a name, or every address */
    }
    c->src = sa;
    c->has_src = true;
    return BL_OK;
}

/* --- connections and the pool -------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *k = CONTAINER_OF(h, struct conn, tcp);
    struct bl_http_client *c = k->c;

    free(k->dest);
    free(k);
    c->n_closing--;
    client_maybe_free(c);
}

static void idle_unlink(struct conn *k)
{
    struct bl_http_client *c = k->c;

    if (k->prev != NULL) {
        k->prev->next = k->next;
    } else {
        c->idle_head = k->next;
    }
    if (k->next != NULL) {
        k->next->prev = k->prev;
    } else {
        c->idle_tail = k->prev;
    }
    k->prev = k->next = NULL;
}

/* Close @k (at most once), detaching it from its request or the pool. */
static void conn_close(struct conn *k)
{
    if (k->state == CONN_CLOSING) {
        return;
    }
    if (k->state == CONN_IDLE) {
        idle_unlink(k);
    }
    k->state = CONN_CLOSING;
    if (k->req != NULL) {
        k->req->conn = NULL;
        k->req = NULL;
    }
    k->c->n_closing++;
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

static void on_sweep(uv_timer_t *t);

/* Arm the sweep timer for the oldest idle connection. */
static void sweep_arm(struct bl_http_client *c)
{
    uint64_t now = uv_now(c->loop);
    uint64_t due;

    if (c->idle_head == NULL) {
        uv_timer_stop(&c->sweep);
        return;
    }
    due = c->idle_head->idle_since + CLIENT_IDLE_MS;
    uv_timer_start(&c->sweep, on_sweep, due > now ? due - now : 0, 0);
}

static void on_sweep(uv_timer_t *t)
{
    struct bl_http_client *c = CONTAINER_OF(t, struct bl_http_client, sweep);
    uint64_t now = uv_now(c->loop);

    while (c->idle_head != NULL && c->idle_head->idle_since + CLIENT_IDLE_MS <= now) {
        conn_close(c->idle_head);
    }
    sweep_arm(c);
}

/* Put @k (just done with a response) into the pool, or close it. */
static void pool_put(struct conn *k)
{
    struct bl_http_client *c = k->c;
    unsigned same = 0;

    for (struct conn *i = c->idle_head; i != NULL; i = i->next) {
        same += strcmp(i->dest, k->dest) == 0;
    }
    if (c->closing || same >= c->max_idle) {
        conn_close(k);
        return;
    }
    k->state = CONN_IDLE;
    k->used = true;
    k->idle_since = uv_now(c->loop);
    k->next = NULL;
    k->prev = c->idle_tail;
    if (c->idle_tail != NULL) {
        c->idle_tail->next = k;
    } else {
        c->idle_head = k;
    }
    c->idle_tail = k;
    uv_unref((uv_handle_t *)&k->tcp);
    if (!uv_is_active((uv_handle_t *)&c->sweep)) {
        sweep_arm(c);
    }
}

/* Whether the peer of idle connection @k still seems to be there: nothing
 * to read (no EOF, no stray bytes, no error) without blocking. */
static bool conn_alive(struct conn *k)
{
    uv_os_fd_t fd;
    char byte;
    ssize_t n;

    if (uv_fileno((uv_handle_t *)&k->tcp, &fd) != 0) {
        return false;
    }
    n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/* The newest live idle connection to @dest, taken out of the pool. */
static struct conn *pool_take(struct bl_http_client *c, const char *dest)
{
    struct conn *k = c->idle_tail;

    while (k != NULL) {
        struct conn *prev = k->prev;
        if (strcmp(k->dest, dest) == 0) {
            if (conn_alive(k)) {
                idle_unlink(k);
                k->state = CONN_ACTIVE;
                uv_ref((uv_handle_t *)&k->tcp);
                return k;
            }
            conn_close(k);
        }
        k = prev;
    }
    return NULL;
}

/* --- response parsing ------------------------------------------------------ */

static void resp_reset(struct req *r)
{
    r->status = 0;
    r->complete = false;
    r->keep_alive = false;
    r->hstate = 0;
    r->hdrop = false;
    r->hlen = 0;
    r->n_hdrs = 0;
    r->body_len = 0;
}

/* Append to the header buffer; false (with parse_error set) past the limit. */
static bool hbuf_append(struct req *r, const char *p, size_t n)
{
    if (n > CLIENT_MAX_HEADER_BYTES - r->hlen) {
        r->parse_error = BL_ETOOLARGE;
        return false;
    }
    if (r->hlen + n > r->hcap) {
        size_t cap = r->hcap == 0 ? 1024 : r->hcap;
        char *b;
        while (cap < r->hlen + n) {
            cap *= 2;
        }
        b = realloc(r->hbuf, cap);
        if (b == NULL) {
            r->parse_error = BL_ENOMEM;
            return false;
        }
        r->hbuf = b;
        r->hcap = cap;
    }
    memcpy(r->hbuf + r->hlen, p, n);
    r->hlen += n;
    return true;
}

/* End the name or value being gathered with a NUL. */
static bool header_end_part(struct req *r)
{
    return r->hstate == 0 || r->hdrop || hbuf_append(r, "", 1);
}

static int on_message_begin(http_parser *p)
{
    struct conn *k = p->data;

    if (k->req->complete) {
        return -1; /* bytes after the response: the connection is not reusable */
    }
    resp_reset(k->req);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct req *r = ((struct conn *)p->data)->req;

    if (r->hstate != 1) {
        if (!header_end_part(r)) {
            return -1;
        }
        r->hstate = 1;
        r->hdrop = r->n_hdrs == BL_HTTP_MAX_HEADERS;
        if (!r->hdrop) {
            r->hdrs[r->n_hdrs].name_off = r->hlen;
            r->hdrs[r->n_hdrs].name_len = 0;
            r->hdrs[r->n_hdrs].value_len = 0;
            r->hdrs[r->n_hdrs].value_off = r->hlen;
            r->n_hdrs++;
        }
    }
    if (r->hdrop) {
        return 0;
    }
    if (!hbuf_append(r, at, len)) {
        return -1;
    }
    r->hdrs[r->n_hdrs - 1].name_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct req *r = ((struct conn *)p->data)->req;

    if (r->hstate != 2) {
        if (!header_end_part(r)) {
            return -1;
        }
        r->hstate = 2;
        if (!r->hdrop) {
            r->hdrs[r->n_hdrs - 1].value_off = r->hlen;
        }
    }
    if (r->hdrop) {
        return 0;
    }
    if (!hbuf_append(r, at, len)) {
        return -1;
    }
    r->hdrs[r->n_hdrs - 1].value_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct req *r = ((struct conn *)p->data)->req;

    if (!header_end_part(r)) {
        return -1;
    }
    if (r->hstate == 1 && !r->hdrop) {
        /* A name without a value: give it an empty one. */
        r->hdrs[r->n_hdrs - 1].value_off = r->hlen - 1;
    }
    r->hstate = 0;
    r->status = (int)p->status_code;
    if ((p->flags & F_CONTENTLENGTH) != 0 && !r->is_head && r->status >= 200 && r->status != 204 &&
        r->status != 304) {
        /* Check the limit before allocating, then allocate once. */
        if (p->content_length > CLIENT_MAX_BODY) {
            r->parse_error = BL_ETOOLARGE;
            return -1;
        }
        if (p->content_length > r->body_cap) {
            uint8_t *b = realloc(r->body, (size_t)p->content_length);
            if (b == NULL) {
                r->parse_error = BL_ENOMEM;
                return -1;
            }
            r->body = b;
            r->body_cap = (size_t)p->content_length;
        }
    }
    return r->is_head ? 1 : 0; /* 1: a HEAD response has no body */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct req *r = ((struct conn *)p->data)->req;

    if (len > CLIENT_MAX_BODY - r->body_len) {
        r->parse_error = BL_ETOOLARGE;
        return -1;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap < 4096 ? 4096 : r->body_cap;
        uint8_t *b;
        while (cap < r->body_len + len) {
            cap *= 2;
        }
        if (cap > CLIENT_MAX_BODY) {
            cap = CLIENT_MAX_BODY;
        }
        b = realloc(r->body, cap);
        if (b == NULL) {
            r->parse_error = BL_ENOMEM;
            return -1;
        }
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct req *r = ((struct conn *)p->data)->req;

    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
        resp_reset(r); /* an interim response: the real one follows */
        return 0;
    }
    r->complete = true;
    r->keep_alive = http_should_keep_alive(p) != 0;
    return 0;
}

static const http_parser_settings PARSER_SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- the exchange on a connection -------------------------------------------- */

/* The response is complete: pool or close the connection, run the callback. */
static void req_complete(struct req *r, bool reusable)
{
    struct conn *k = r->conn;

    /* Hand the connection back first, so that the callback can reuse it. */
    k->req = NULL;
    r->conn = NULL;
    if (reusable && !k->writing) {
        pool_put(k);
    } else {
        conn_close(k);
    }
    req_finish(r, BL_OK);
}

/* Report @code for @r from the loop (never from within the caller's call). */
static void fail_later(struct req *r, int code)
{
    r->pending_error = code;
    uv_timer_start(&r->timer, on_req_timer, 0, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *k = CONTAINER_OF(h, struct conn, tcp);

    (void)suggested;
    *buf = uv_buf_init(k->rbuf, sizeof k->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *k = CONTAINER_OF(s, struct conn, tcp);
    struct req *r = k->req;
    size_t parsed;
    enum http_errno err;

    (void)buf;
    if (nread == 0 || k->state == CONN_CLOSING) {
        return;
    }
    if (r == NULL) {
        /* Idle: the peer closed, or sent what nobody asked for. */
        conn_close(k);
        return;
    }
    if (nread > 0) {
        parsed = http_parser_execute(&k->parser, &PARSER_SETTINGS, k->rbuf, (size_t)nread);
    } else {
        /* EOF (or an error): tell the parser, which ends a read-until-EOF body. */
        parsed = 0;
        if (nread == UV_EOF) {
            http_parser_execute(&k->parser, &PARSER_SETTINGS, NULL, 0);
        }
    }
    err = HTTP_PARSER_ERRNO(&k->parser);
    if (r->complete) {
        req_complete(r, nread > 0 && r->keep_alive && err == HPE_OK && parsed == (size_t)nread);
        return;
    }
    if (r->parse_error != 0 || nread < 0 || err != HPE_OK) {
        /* The request went out: whatever broke, the outcome is unknown. */
        int code = r->parse_error != 0 ? r->parse_error : BL_ETIMEOUT;
        conn_close(k);
        req_finish(r, code);
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *k = CONTAINER_OF(w, struct conn, write);
    struct req *r = k->req;

    k->writing = false;
    if (k->state == CONN_CLOSING || r == NULL) {
        return; /* the request ended while this was in flight */
    }
    if (status < 0) {
        conn_close(k);
        req_finish(r, BL_ETIMEOUT);
    }
}

/* A connection that failed before any byte of @r went out. */
static void send_failed_unsent(struct req *r, struct conn *k)
{
    bool was_pooled = k->used;

    conn_close(k);
    if (was_pooled && !r->retried) {
        r->retried = true;
        start_fresh(r);
    } else {
        fail_later(r, BL_EUNAVAILABLE);
    }
}

/* Send @r on its connection, which is connected and reading. */
static void req_send(struct req *r)
{
    struct conn *k = r->conn;
    uv_buf_t buf = uv_buf_init(r->wire, (unsigned)r->wire_len);
    int n;
    int rv;

    http_parser_init(&k->parser, HTTP_RESPONSE);
    k->parser.data = k;
    resp_reset(r);
    r->parse_error = 0;

    n = uv_try_write((uv_stream_t *)&k->tcp, &buf, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) {
        n = 0;
    } else if (n < 0) {
        send_failed_unsent(r, k);
        return;
    }
    if ((size_t)n == r->wire_len) {
        return;
    }
    buf = uv_buf_init(r->wire + n, (unsigned)(r->wire_len - (size_t)n));
    rv = uv_write(&k->write, (uv_stream_t *)&k->tcp, &buf, 1, on_write);
    if (rv != 0) {
        if (n == 0) {
            send_failed_unsent(r, k);
        } else {
            conn_close(k);
            fail_later(r, BL_ETIMEOUT);
        }
        return;
    }
    k->writing = true;
}

static void on_connect(uv_connect_t *creq, int status);

/* Bind @tcp (a socket already of @dst's family) to the client's source
 * address when there is one and @dst is IPv4. The port is left to connect()
 * (IP_BIND_ADDRESS_NO_PORT), so a bound source does not use up ephemeral
 * ports faster than an unbound one. Returns 0 or a libuv error. */
static int bind_source(struct bl_http_client *c, uv_tcp_t *tcp, const struct sockaddr *dst)
{
    if (!c->has_src || dst->sa_family != AF_INET) {
        return 0;
    }
#ifdef IP_BIND_ADDRESS_NO_PORT
    {
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        }
    }
#endif
    return uv_tcp_bind(tcp, (const struct sockaddr *)&c->src, 0);
}

/* Connect to the next address of @r; report BL_EUNAVAILABLE when none is left. */
static void connect_next(struct req *r)
{
    struct bl_http_client *c = r->c;

    while (r->next_addr < r->n_addrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[r->next_addr++];
        struct conn *k = malloc(sizeof *k);
        int rv;

        if (k != NULL) {
            memset(k, 0, offsetof(struct conn, rbuf));
            k->dest = strdup(r->dest);
        }
        if (k == NULL || k->dest == NULL) {
            free(k);
            fail_later(r, BL_ENOMEM);
            return;
        }
        k->c = c;
        k->state = CONN_CONNECTING;
        rv = uv_tcp_init_ex(c->loop, &k->tcp, sa->sa_family);
        if (rv != 0) {
            free(k->dest);
            free(k);
            fail_later(r, bl_from_uv(rv));
            return;
        }
        k->req = r;
        r->conn = k;
        uv_tcp_nodelay(&k->tcp, 1);
        rv = bind_source(c, &k->tcp, sa);
        if (rv == 0) {
            rv = uv_tcp_connect(&k->connect, &k->tcp, sa, on_connect);
        }
        if (rv == 0) {
            return;
        }
        conn_close(k);
    }
    fail_later(r, BL_EUNAVAILABLE);
}

static void on_connect(uv_connect_t *creq, int status)
{
    struct conn *k = CONTAINER_OF(creq, struct conn, connect);
    struct req *r = k->req;

    if (k->state == CONN_CLOSING || r == NULL) {
        return;
    }
    if (status == 0) {
        status = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    }
    if (status != 0) {
        conn_close(k);
        connect_next(r);
        return;
    }
    k->state = CONN_ACTIVE;
    req_send(r);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct resolve *rs = CONTAINER_OF(gai, struct resolve, gai);
    struct req *r = rs->req;

    free(rs);
    if (r == NULL) {
        uv_freeaddrinfo(res); /* the request ended meanwhile */
        return;
    }
    r->resolve = NULL;
    r->n_addrs = 0;
    r->next_addr = 0;
    if (status == 0) {
        for (struct addrinfo *ai = res; ai != NULL && r->n_addrs < CLIENT_MAX_ADDRS;
             ai = ai->ai_next) {
            if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                ai->ai_addrlen <= sizeof r->addrs[0]) {
                memcpy(&r->addrs[r->n_addrs++], ai->ai_addr, ai->ai_addrlen);
            }
        }
    }
    uv_freeaddrinfo(res);
    connect_next(r); /* with no address, this reports BL_EUNAVAILABLE */
}

/* Open a new connection for @r: resolve the name if it is not a literal. */
static void start_fresh(struct req *r)
{
    struct addrinfo hints;
    struct resolve *rs;
    int rv;

    if (r->host == NULL) {
        r->next_addr = 0; /* a literal: addrs[0] was filled when parsed */
        connect_next(r);
        return;
    }
    rs = malloc(sizeof *rs);
    if (rs == NULL) {
        fail_later(r, BL_ENOMEM);
        return;
    }
    rs->req = r;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rv = uv_getaddrinfo(r->c->loop, &rs->gai, on_resolved, r->host, r->port, &hints);
    if (rv != 0) {
        free(rs);
        fail_later(r, BL_EUNAVAILABLE);
        return;
    }
    r->resolve = rs;
}

/* --- requests ---------------------------------------------------------------- */

static void on_req_closed(uv_handle_t *h)
{
    struct req *r = CONTAINER_OF(h, struct req, timer);
    struct bl_http_client *c = r->c;

    free(r);
    c->n_closing--;
    client_maybe_free(c);
}

static void on_req_timer(uv_timer_t *t)
{
    struct req *r = CONTAINER_OF(t, struct req, timer);

    req_finish(r, r->pending_error != 0 ? r->pending_error : BL_ETIMEOUT);
}

/* End @r: detach it from everything, run its callback once, free it. */
static void req_finish(struct req *r, int status)
{
    struct bl_http_client *c = r->c;
    struct bl_http_response resp;

    if (r->done) {
        return;
    }
    r->done = true;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        c->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    uv_timer_stop(&r->timer);
    if (r->resolve != NULL) {
        r->resolve->req = NULL; /* it frees itself when libuv reports */
        uv_cancel((uv_req_t *)&r->resolve->gai);
        r->resolve = NULL;
    }
    if (r->conn != NULL) {
        conn_close(r->conn); /* mid-exchange: not reusable */
    }

    if (status == BL_OK) {
        resp.status = r->status;
        resp.n_headers = r->n_hdrs;
        for (unsigned i = 0; i < r->n_hdrs; i++) {
            resp.headers[i].name = r->hbuf + r->hdrs[i].name_off;
            resp.headers[i].name_len = r->hdrs[i].name_len;
            resp.headers[i].value = r->hbuf + r->hdrs[i].value_off;
            resp.headers[i].value_len = r->hdrs[i].value_len;
        }
        resp.body = r->body != NULL ? r->body : (const uint8_t *)"";
        resp.body_len = r->body_len;
        r->cb(r->arg, BL_OK, &resp);
    } else {
        r->cb(r->arg, status, NULL);
    }

    free(r->wire);
    free(r->dest);
    free(r->host);
    free(r->hbuf);
    free(r->body);
    r->wire = r->dest = r->host = r->hbuf = NULL;
    r->body = NULL;
    c->n_closing++;
    uv_close((uv_handle_t *)&r->timer, on_req_closed);
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Headers the client writes itself; the caller's copies are left out. */
static bool is_own_header(const struct bl_http_header *h)
{
    static const char *const OWN[] = {"host", "content-length", "connection", "keep-alive",
                                      "transfer-encoding"};
    for (size_t i = 0; i < sizeof OWN / sizeof OWN[0]; i++) {
        if (h->name_len == strlen(OWN[i]) && strncasecmp(h->name, OWN[i], h->name_len) == 0) {
            return true;
        }
    }
    return false;
}

/* Parse "host:port", "[v6]:port" (optionally after "http://", optionally
 * with a trailing "/") into @r: dest, and either addrs[0] for a literal or
 * host/port for a lookup. Returns BL_EBADREQ or BL_ENOMEM. */
static int parse_dest(struct req *r, const char *host_port)
{
    const char *s = host_port;
    size_t len;
    const char *host;
    size_t host_len;
    const char *port;
    size_t port_len;
    unsigned long pnum = 0;
    char hostbuf[256];

    if (strncasecmp(s, "http://", 7) == 0) {
        s += 7;
    }
    len = strlen(s);
    if (len > 0 && s[len - 1] == '/') {
        len--;
    }
    if (len == 0 || len >= sizeof hostbuf) {
        return BL_EBADREQ;
    }
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close + 1 == s + len || close[1] != ':') {
            return BL_EBADREQ;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL) {
            return BL_EBADREQ; /* no port, or an IPv6 address without brackets */
        }
        host = s;
        host_len = (size_t)(colon - s);
        port = colon + 1;
    }
    port_len = len - (size_t)(port - s);
    if (host_len == 0 || port_len == 0 || port_len > 5) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9') {
            return BL_EBADREQ;
        }
        pnum = pnum * 10 + (unsigned long)(port[i] - '0');
    }
    if (pnum == 0 || pnum > 65535) {
        return BL_EBADREQ;
    }
    memcpy(hostbuf, host, host_len);
    hostbuf[host_len] = '\0';
    snprintf(r->port, sizeof r->port, "%lu", pnum);

    if (s[0] == '[') {
        if (uv_ip6_addr(hostbuf, (int)pnum, (struct sockaddr_in6 *)&r->addrs[0]) != 0) {
            return BL_EBADREQ;
        }
        r->n_addrs = 1;
    } else if (uv_ip4_addr(hostbuf, (int)pnum, (struct sockaddr_in *)&r->addrs[0]) == 0) {
        r->n_addrs = 1;
    } else {
        for (size_t i = 0; i < host_len; i++) {
            unsigned char ch = (unsigned char)hostbuf[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_')) {
                return BL_EBADREQ;
            }
        }
        r->host = strdup(hostbuf);
        if (r->host == NULL) {
            return BL_ENOMEM;
        }
    }
    r->dest = strndup(s, len);
    return r->dest == NULL ? BL_ENOMEM : BL_OK;
}

static char *wire_put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Check the request and write it, whole, into r->wire. */
static int build_wire(struct req *r, const char *method, const char *target, size_t target_len,
                      const struct bl_http_header *headers, unsigned n, const void *body,
                      size_t body_len)
{
    size_t method_len = strlen(method);
    size_t size;
    char clen[48];
    int clen_len;
    char *p;

    if (!is_token(method, method_len) || method_len > CLIENT_MAX_METHOD || target_len == 0 ||
        (body == NULL && body_len > 0) || (headers == NULL && n > 0)) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < target_len; i++) {
        unsigned char ch = (unsigned char)target[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            return BL_EBADREQ;
        }
    }
    clen_len = snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", body_len);

    size = method_len + 1 + target_len + sizeof " HTTP/1.1\r\nHost: \r\n" - 1 + strlen(r->dest);
    for (unsigned i = 0; i < n; i++) {
        const struct bl_http_header *h = &headers[i];
        if (!is_token(h->name, h->name_len) || (h->value == NULL && h->value_len > 0)) {
            return BL_EBADREQ;
        }
        for (size_t j = 0; j < h->value_len; j++) {
            unsigned char ch = (unsigned char)h->value[j];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return BL_EBADREQ; /* CR, LF, NUL would split or end the header */
            }
        }
        if (!is_own_header(h)) {
            size += h->name_len + 2 + h->value_len + 2;
        }
    }
    size += (size_t)clen_len + sizeof "Connection: keep-alive\r\n\r\n" - 1;
    if (size > UINT_MAX || body_len > UINT_MAX - size) {
        return BL_ETOOLARGE; /* a uv_buf_t holds at most UINT_MAX bytes */
    }
    size += body_len;

    r->wire = malloc(size);
    if (r->wire == NULL) {
        return BL_ENOMEM;
    }
    p = wire_put(r->wire, method, method_len);
    p = wire_put(p, " ", 1);
    p = wire_put(p, target, target_len);
    p = wire_put(p, " HTTP/1.1\r\nHost: ", 17);
    p = wire_put(p, r->dest, strlen(r->dest));
    p = wire_put(p, "\r\n", 2);
    for (unsigned i = 0; i < n; i++) {
        const struct bl_http_header *h = &headers[i];
        if (is_own_header(h)) {
            continue;
        }
        p = wire_put(p, h->name, h->name_len);
        p = wire_put(p, ": ", 2);
        if (h->value_len > 0) {
            p = wire_put(p, h->value, h->value_len);
        }
        p = wire_put(p, "\r\n", 2);
    }
    p = wire_put(p, clen, (size_t)clen_len);
    p = wire_put(p, "Connection: keep-alive\r\n\r\n", 26);
    if (body_len > 0) {
        p = wire_put(p, body, body_len);
    }
    r->wire_len = (size_t)(p - r->wire);
    return BL_OK;
}

int bl_http_client_request(struct bl_http_client *c, const char *host_port, const char *method,
                           const char *target, size_t target_len,
                           const struct bl_http_header *headers, unsigned n, const void *body,
                           size_t body_len, unsigned timeout_ms, bl_http_client_cb cb, void *arg)
{
    struct req *r;
    struct conn *k;
    int rv;

    if (c->closing) {
        return BL_ESHUTDOWN;
    }
    if (host_port == NULL || method == NULL || target == NULL || cb == NULL) {
        return BL_EBADREQ;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return BL_ENOMEM;
    }
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->is_head = strcmp(method, "HEAD") == 0;
    rv = parse_dest(r, host_port);
    if (rv == BL_OK) {
        rv = build_wire(r, method, target, target_len, headers, n, body, body_len);
    }
    if (rv == BL_OK) {
        rv = bl_from_uv(uv_timer_init(c->loop, &r->timer));
    }
    if (rv != BL_OK) {
        free(r->wire);
        free(r->dest);
        free(r->host);
        free(r);
        return rv;
    }
    r->next = c->reqs;
    if (c->reqs != NULL) {
        c->reqs->prev = r;
    }
    c->reqs = r;
    if (timeout_ms > 0) {
        uv_timer_start(&r->timer, on_req_timer, timeout_ms, 0);
    }

    k = pool_take(c, r->dest);
    if (k != NULL) {
        k->req = r;
        r->conn = k;
        req_send(r);
    } else {
        start_fresh(r);
    }
    return BL_OK;
}

void bl_http_client_close(struct bl_http_client *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    while (c->reqs != NULL) {
        req_finish(c->reqs, BL_ESHUTDOWN);
    }
    while (c->idle_head != NULL) {
        conn_close(c->idle_head);
    }
    c->n_closing++;
    uv_close((uv_handle_t *)&c->sweep, on_sweep_closed);
}

const char *bl_http_response_header(const struct bl_http_response *r, const char *name, size_t *len)
{
    size_t name_len = strlen(name);

    for (unsigned i = 0; i < r->n_headers; i++) {
        const struct bl_http_header *h = &r->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0) {
            if (len != NULL) {
                *len = h->value_len;
            }
            return h->value;
        }
    }
    return NULL;
}
