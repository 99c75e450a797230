/* Unit tests for server/http.c: a real server on 127.0.0.1 (port 0) and raw
 * client sockets.
 *
 * The test thread owns both ends: it steps the libuv loop with
 * UV_RUN_NOWAIT between non-blocking sends and polls of a plain client
 * socket, so the handler runs on the same thread as the assertions and no
 * locking is needed. Every wait is bounded (WAIT_MS); a test that waits in
 * vain fails instead of hanging. Responses are read back with http-parser in
 * response mode, which also undoes chunked framing.
 *
 * The handler below routes on the path: /echo describes the request in its
 * body, /defer answers after ?ms= milliseconds, /hold keeps the exchange for
 * the test to answer, /stream and /streamhold send chunked replies. The
 * teardown answers whatever is still held, closes the server, and checks
 * that the loop has no handle left. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* poll, strcasecmp, fcntl flags */
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "error.h"
#include "http.h"

#define WAIT_MS   3000
#define MAX_HELD  128
#define MAX_RESPS 128

/* ------------------------------------------------------------------------ */
/* Server side: loop, server and the test handler */

static uv_loop_t loop;
static struct bl_http_server *srv;
static int port;
static int n_seen;                              /* requests the handler got */
static struct bl_http_exchange *held[MAX_HELD]; /* exchanges kept by /hold */
static int n_held;
static struct bl_http_exchange *stream_ex; /* kept by /streamhold */
static int stream_rv[4];                   /* return codes seen by /streamhold */
static bool closed;
static int n_flood; /* chunks /flood could queue before BL_ETOOLARGE */

/* An answer to send later, from a timer. */
struct defer {
    uv_timer_t timer;
    struct bl_http_exchange *ex;
};

static void defer_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void defer_cb(uv_timer_t *t)
{
    struct defer *d = t->data;
    bl_http_respond(d->ex, 200, NULL, 0, d->ex->target, d->ex->target_len);
    uv_close((uv_handle_t *)&d->timer, defer_close_cb);
}

/* Integer value of query parameter @name, or @def. */
static long query_long(const struct bl_http_exchange *ex, const char *name, long def)
{
    const char *v;
    size_t n;
    char tmp[32];
    if (!bl_http_query_get(ex->query, ex->query_len, name, &v, &n) || n == 0 || n >= sizeof tmp) {
        return def;
    }
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    return strtol(tmp, NULL, 10);
}

static bool path_is(const struct bl_http_exchange *ex, const char *p)
{
    return ex->path_len == strlen(p) && memcmp(ex->path, p, ex->path_len) == 0;
}

/* /echo: "M=<method>;P=<path>;Q=<query>;H=<n headers>;X=<x-test>;B=<body>". */
static void echo(struct bl_http_exchange *ex)
{
    static const struct bl_http_header hdr = {"X-Echo", 6, "1", 1};
    char out[4096];
    size_t xlen = 0;
    const char *x = bl_http_header_get(ex, "x-test", &xlen);
    int n = snprintf(out, sizeof out, "M=%s;P=%.*s;Q=%.*s;H=%u;X=%.*s;B=%.*s",
                     http_method_str((enum http_method)ex->method), (int)ex->path_len, ex->path,
                     ex->query ? (int)ex->query_len : 1, ex->query ? ex->query : "-", ex->n_headers,
                     x ? (int)xlen : 1, x ? x : "-", (int)ex->body_len, (const char *)ex->body);
    ck_assert_int_eq(bl_http_respond(ex, 200, &hdr, 1, out, (size_t)n), BL_OK);
}

static void handler(struct bl_http_exchange *ex, void *arg)
{
    ck_assert_ptr_eq(arg, &loop);
    n_seen++;
    if (path_is(ex, "/echo")) {
        echo(ex);
    } else if (path_is(ex, "/defer")) {
        struct defer *d = malloc(sizeof *d);
        ck_assert_ptr_nonnull(d);
        d->ex = ex;
        uv_timer_init(&loop, &d->timer);
        d->timer.data = d;
        uv_timer_start(&d->timer, defer_cb, (uint64_t)query_long(ex, "ms", 10), 0);
    } else if (path_is(ex, "/hold")) {
        ck_assert_int_lt(n_held, MAX_HELD);
        held[n_held++] = ex;
    } else if (path_is(ex, "/stream")) {
        static const struct bl_http_header ct = {"Content-Type", 12, "application/x-ndjson", 20};
        ck_assert_int_eq(bl_http_stream_begin(ex, 200, &ct, 1, 1 << 20), BL_OK);
        ck_assert_int_eq(bl_http_stream_write(ex, "hello\n", 6), BL_OK);
        ck_assert_int_eq(bl_http_stream_write(ex, "", 0), BL_OK);
        ck_assert_int_eq(bl_http_stream_write(ex, "world\n", 6), BL_OK);
        ck_assert_int_eq(bl_http_stream_end(ex), BL_OK);
    } else if (path_is(ex, "/streamhold")) {
        ck_assert_int_eq(
            bl_http_stream_begin(ex, 200, NULL, 0, (size_t)query_long(ex, "max", 1 << 20)), BL_OK);
        stream_rv[0] = bl_http_stream_write(ex, "a", 1);
        stream_rv[1] = bl_http_stream_write(ex, "0123456789abcdefghij", 20);
        stream_ex = ex;
    } else if (path_is(ex, "/big")) {
        size_t n = (size_t)query_long(ex, "n", 0);
        char *body = malloc(n + 1);
        size_t i;
        ck_assert_ptr_nonnull(body);
        for (i = 0; i < n; i++) {
            body[i] = (char)('a' + i % 26);
        }
        ck_assert_int_eq(bl_http_respond(ex, 200, NULL, 0, body, n), BL_OK);
        free(body);
    } else if (path_is(ex, "/flood")) {
        static char chunk[65536];
        int rv = BL_OK;
        memset(chunk, 'f', sizeof chunk);
        ck_assert_int_eq(bl_http_stream_begin(ex, 200, NULL, 0, 1 << 20), BL_OK);
        for (n_flood = 0; n_flood < 1000; n_flood++) {
            rv = bl_http_stream_write(ex, chunk, sizeof chunk);
            if (rv != BL_OK) {
                break;
            }
        }
        ck_assert_int_eq(rv, BL_ETOOLARGE);
        ck_assert_int_eq(bl_http_stream_end(ex), BL_OK);
    } else {
        ck_assert_int_eq(bl_http_respond(ex, 404, NULL, 0, "nf", 2), BL_OK);
    }
}

static void start_server(const struct bl_http_server_opts *opts)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    int rv = bl_http_server_start(&loop, "127.0.0.1:0", opts, handler, &loop, &srv, errmsg);
    ck_assert_msg(rv == BL_OK, "start: %s", errmsg);
    port = bl_http_server_port(srv);
    ck_assert_int_gt(port, 0);
}

/* Options for tests: short timeouts off unless a test sets them. */
static struct bl_http_server_opts test_opts(void)
{
    struct bl_http_server_opts o = {0};
    o.request_timeout_ms = 5000;
    return o;
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

/* Run the loop once without blocking, then sleep @ms at most. */
static void step(int ms)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    if (ms > 0) {
        poll(NULL, 0, ms);
    }
}

/* Step the loop until *@flag or the deadline. */
static bool run_until_flag(const bool *flag)
{
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
    while (!*flag && uv_hrtime() < end) {
        step(1);
    }
    return *flag;
}

/* Step the loop for @ms. */
static void run_for(int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
    while (uv_hrtime() < end) {
        step(1);
    }
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    srv = NULL;
    n_seen = 0;
    n_held = 0;
    stream_ex = NULL;
    memset(stream_rv, 0, sizeof stream_rv);
    closed = false;
}

static void teardown(void)
{
    int i;
    for (i = 0; i < n_held; i++) {
        if (held[i] != NULL) {
            bl_http_respond(held[i], 200, NULL, 0, NULL, 0);
        }
    }
    n_held = 0;
    if (stream_ex != NULL) {
        bl_http_stream_end(stream_ex);
        stream_ex = NULL;
    }
    if (srv != NULL) {
        bl_http_server_close(srv, closed_cb, &closed);
        ck_assert(run_until_flag(&closed));
        srv = NULL;
    }
    run_for(5);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* ------------------------------------------------------------------------ */
/* Client side: raw sockets and a response reader */

/* A blocking connect, then non-blocking I/O. */
static int client_connect(void)
{
    struct sockaddr_in sa;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

/* Send all of @data, stepping the loop while the socket is full. */
static void client_send(int fd, const char *data, size_t len)
{
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s", strerror(errno));
            ck_assert_msg(uv_hrtime() < end, "send timed out");
            step(1);
            continue;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void client_sends(int fd, const char *s)
{
    client_send(fd, s, strlen(s));
}

/* Everything received on one client socket. */
struct reader {
    int fd;
    char *data;
    size_t len, cap;
    bool eof;
};

static void reader_init(struct reader *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
}

static void reader_free(struct reader *r)
{
    free(r->data);
    close(r->fd);
}

/* Step the loop and receive what has arrived. */
static void reader_pump(struct reader *r)
{
    struct pollfd p = {r->fd, POLLIN, 0};
    uv_run(&loop, UV_RUN_NOWAIT);
    if (r->eof || poll(&p, 1, 1) <= 0) {
        return;
    }
    for (;;) {
        ssize_t n;
        if (r->cap - r->len < 4096) {
            r->cap = r->cap * 2 + 8192;
            r->data = realloc(r->data, r->cap);
            ck_assert_ptr_nonnull(r->data);
        }
        n = recv(r->fd, r->data + r->len, r->cap - r->len - 1, 0);
        if (n > 0) {
            r->len += (size_t)n;
            r->data[r->len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            r->eof = true; /* EOF or reset */
        }
        return;
    }
}

/* One parsed response. */
struct resp {
    int status;
    char connection[32];
    char transfer_encoding[32];
    char content_type[64];
    char x_echo[8];
    bool has_date;
    bool has_content_length;
    char body[16384]; /* the first 16383 bytes of the body */
    size_t stored;
    size_t body_len;
};

struct rparse {
    struct resp *resps;
    int n;   /* complete responses */
    int cur; /* index of the response being parsed */
    char field[64];
};

static int rp_begin(http_parser *p)
{
    struct rparse *rp = p->data;
    rp->cur = rp->n;
    if (rp->cur < MAX_RESPS) {
        memset(&rp->resps[rp->cur], 0, sizeof rp->resps[rp->cur]);
    }
    return rp->cur < MAX_RESPS ? 0 : -1;
}

static int rp_field(http_parser *p, const char *at, size_t len)
{
    struct rparse *rp = p->data;
    snprintf(rp->field, sizeof rp->field, "%.*s", (int)len, at);
    return 0;
}

static int rp_value(http_parser *p, const char *at, size_t len)
{
    struct rparse *rp = p->data;
    struct resp *r = &rp->resps[rp->cur];
    if (strcasecmp(rp->field, "Connection") == 0) {
        snprintf(r->connection, sizeof r->connection, "%.*s", (int)len, at);
    } else if (strcasecmp(rp->field, "Transfer-Encoding") == 0) {
        snprintf(r->transfer_encoding, sizeof r->transfer_encoding, "%.*s", (int)len, at);
    } else if (strcasecmp(rp->field, "Content-Type") == 0) {
        snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)len, at);
    } else if (strcasecmp(rp->field, "X-Echo") == 0) {
        snprintf(r->x_echo, sizeof r->x_echo, "%.*s", (int)len, at);
    } else if (strcasecmp(rp->field, "Date") == 0) {
        r->has_date = len > 20;
    } else if (strcasecmp(rp->field, "Content-Length") == 0) {
        r->has_content_length = true;
    }
    return 0;
}

static int rp_headers_complete(http_parser *p)
{
    struct rparse *rp = p->data;
    rp->resps[rp->cur].status = (int)p->status_code;
    return 0;
}

static int rp_body(http_parser *p, const char *at, size_t len)
{
    struct rparse *rp = p->data;
    struct resp *r = &rp->resps[rp->cur];
    size_t keep = r->stored + len < sizeof r->body ? len : sizeof r->body - 1 - r->stored;
    memcpy(r->body + r->stored, at, keep);
    r->stored += keep;
    r->body[r->stored] = '\0';
    r->body_len += len;
    return 0;
}

static int rp_complete(http_parser *p)
{
    struct rparse *rp = p->data;
    rp->n++;
    return 0;
}

/* Parse every complete response in @r into @out; returns how many. */
static int parse_responses(const struct reader *r, struct resp *out)
{
    static const http_parser_settings settings = {
        .on_message_begin = rp_begin,
        .on_header_field = rp_field,
        .on_header_value = rp_value,
        .on_headers_complete = rp_headers_complete,
        .on_body = rp_body,
        .on_message_complete = rp_complete,
    };
    struct rparse rp = {out, 0, 0, ""};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &rp;
    if (r->len > 0) {
        size_t n = http_parser_execute(&p, &settings, r->data, r->len);
        if (n == r->len && r->eof) {
            http_parser_execute(&p, &settings, NULL, 0); /* ends a body read until EOF */
        }
    }
    return rp.n;
}

static struct resp resps[MAX_RESPS];

/* Wait until @n responses are in (and, if @want_eof, the connection has
 * closed). Returns the number of complete responses. */
static int wait_responses(struct reader *r, int n, bool want_eof)
{
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
    int got = 0;
    while (uv_hrtime() < end) {
        reader_pump(r);
        got = parse_responses(r, resps);
        if (got >= n && (!want_eof || r->eof)) {
            break;
        }
        if (r->eof && got < n) {
            break;
        }
    }
    return got;
}

/* Wait for EOF; true if it came. */
static bool wait_eof(struct reader *r)
{
    uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
    while (!r->eof && uv_hrtime() < end) {
        reader_pump(r);
    }
    return r->eof;
}

/* ------------------------------------------------------------------------ */
/* Tests */

START_TEST(test_get_path_query_headers)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd,
                 "GET /echo?a=1&b=two%20x HTTP/1.1\r\nHost: localhost\r\nX-Test: hello\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_str_eq(resps[0].body, "M=GET;P=/echo;Q=a=1&b=two%20x;H=2;X=hello;B=");
    ck_assert_str_eq(resps[0].connection, "keep-alive");
    ck_assert_str_eq(resps[0].x_echo, "1");
    ck_assert(resps[0].has_date);
    ck_assert(resps[0].has_content_length);
    ck_assert(!r.eof);
    ck_assert_uint_eq(bl_http_server_connections(srv), 1);

    /* no query, empty query, a non-matching path */
    client_sends(r.fd, "GET /echo HTTP/1.1\r\n\r\nGET /echo? HTTP/1.1\r\n\r\n"
                       "DELETE /nothing HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 4, false), 4);
    ck_assert_str_eq(resps[1].body, "M=GET;P=/echo;Q=-;H=0;X=-;B=");
    ck_assert_str_eq(resps[2].body, "M=GET;P=/echo;Q=;H=0;X=-;B=");
    ck_assert_int_eq(resps[3].status, 404);
    ck_assert_str_eq(resps[3].body, "nf");
    reader_free(&r);
}
END_TEST

START_TEST(test_post_body)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    ck_assert_str_eq(resps[0].body, "M=POST;P=/echo;Q=-;H=1;X=-;B=hello world");

    /* the body arrives in pieces */
    client_sends(r.fd, "PUT /echo HTTP/1.1\r\nContent-Length: 6\r\nX-Te");
    run_for(20);
    client_sends(r.fd, "st: v\r\n\r\nabc");
    run_for(20);
    ck_assert_int_eq(n_seen, 1);
    client_sends(r.fd, "def");
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_str_eq(resps[1].body, "M=PUT;P=/echo;Q=-;H=2;X=v;B=abcdef");

    /* a chunked request body, with a trailer */
    client_sends(r.fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 3, false), 3);
    ck_assert_str_eq(resps[2].body, "M=POST;P=/echo;Q=-;H=1;X=-;B=hello world");
    reader_free(&r);
}
END_TEST

START_TEST(test_keep_alive)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /echo?n=1 HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    client_sends(r.fd, "GET /echo?n=2 HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_str_eq(resps[1].body, "M=GET;P=/echo;Q=n=2;H=0;X=-;B=");
    ck_assert_uint_eq(bl_http_server_connections(srv), 1);

    /* Connection: close is honoured: reply says so, then EOF */
    client_sends(r.fd, "GET /echo?n=3 HTTP/1.1\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 3, true), 3);
    ck_assert_str_eq(resps[2].connection, "close");
    ck_assert(r.eof);
    reader_free(&r);

    /* HTTP/1.0 without keep-alive closes */
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /echo HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert(r.eof);
    ck_assert_str_eq(resps[0].connection, "close");
    reader_free(&r);
}
END_TEST

START_TEST(test_pipeline_out_of_order)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /defer?ms=150 HTTP/1.1\r\n\r\n"
                       "GET /echo?second HTTP/1.1\r\n\r\n"
                       "GET /defer?ms=20 HTTP/1.1\r\n\r\n"
                       "GET /defer?ms=1 HTTP/1.1\r\n\r\n");
    /* the later ones are answered first, but nothing may come before #1 */
    run_for(80);
    reader_pump(&r);
    ck_assert_int_eq(n_seen, 4);
    ck_assert_uint_eq(r.len, 0);
    ck_assert_int_eq(wait_responses(&r, 4, false), 4);
    ck_assert_str_eq(resps[0].body, "/defer?ms=150");
    ck_assert_str_eq(resps[1].body, "M=GET;P=/echo;Q=second;H=0;X=-;B=");
    ck_assert_str_eq(resps[2].body, "/defer?ms=20");
    ck_assert_str_eq(resps[3].body, "/defer?ms=1");
    reader_free(&r);
}
END_TEST

START_TEST(test_malformed_request)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 400);
    ck_assert_str_eq(resps[0].connection, "close");
    ck_assert_str_eq(resps[0].content_type, "application/json");
    ck_assert_str_eq(resps[0].body, "{\"error\":{\"code\":\"bad_request\",\"message\":"
                                    "\"malformed HTTP request: invalid character in header\"}}");
    ck_assert(r.eof);
    ck_assert_int_eq(n_seen, 0);
    reader_free(&r);

    /* garbage before anything else: invalid method */
    reader_init(&r, client_connect());
    client_sends(r.fd, "\x01\x02garbage\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 400);
    ck_assert_ptr_nonnull(strstr(resps[0].body, "invalid HTTP method"));
    ck_assert(r.eof);
    reader_free(&r);
    run_for(10);
    ck_assert_uint_eq(bl_http_server_connections(srv), 0);
}
END_TEST

START_TEST(test_bad_after_good)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /defer?ms=60 HTTP/1.1\r\n\r\n"
                       "GET /echo HTTP/1.1\r\n\r\n"
                       "GET /x HTTP/9.x\r\n\r\n"
                       "GET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 3, true), 3);
    ck_assert_int_eq(n_seen, 2);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_str_eq(resps[0].body, "/defer?ms=60");
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert_int_eq(resps[2].status, 400);
    ck_assert_str_eq(resps[2].connection, "close");
    ck_assert_ptr_nonnull(strstr(resps[2].body, "bad_request"));
    ck_assert(r.eof);
    reader_free(&r);
}
END_TEST

START_TEST(test_body_too_large)
{
    struct bl_http_server_opts o = test_opts();
    struct reader r;
    o.max_body_bytes = 1000;
    start_server(&o);

    /* a declared length over the limit: 413 before any body byte is sent */
    reader_init(&r, client_connect());
    client_sends(r.fd, "PUT /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 413);
    ck_assert_str_eq(resps[0].connection, "close");
    ck_assert_str_eq(resps[0].body, "{\"error\":{\"code\":\"too_large\",\"message\":"
                                    "\"request body exceeds 1000 bytes\"}}");
    ck_assert(r.eof);
    ck_assert_int_eq(n_seen, 0);
    reader_free(&r);

    /* exactly at the limit is fine */
    {
        char req[1200];
        int n = snprintf(req, sizeof req, "PUT /hold HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
        memset(req + n, 'v', 1000);
        reader_init(&r, client_connect());
        client_send(r.fd, req, (size_t)n + 1000);
        while (n_held == 0 && !r.eof) {
            reader_pump(&r);
        }
        ck_assert_int_eq(n_held, 1);
        ck_assert_uint_eq(held[0]->body_len, 1000);
        ck_assert_int_eq(held[0]->body[999], 'v');
        bl_http_respond(held[0], 204, NULL, 0, NULL, 0);
        held[0] = NULL;
        ck_assert_int_eq(wait_responses(&r, 1, false), 1);
        ck_assert_int_eq(resps[0].status, 204);
        reader_free(&r);
    }

    /* a chunked body growing past the limit */
    reader_init(&r, client_connect());
    client_sends(r.fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    {
        char chunk[600];
        int n = snprintf(chunk, sizeof chunk, "%x\r\n", 500);
        memset(chunk + n, 'x', 500);
        memcpy(chunk + n + 500, "\r\n", 2);
        client_send(r.fd, chunk, (size_t)n + 502);
        client_send(r.fd, chunk, (size_t)n + 502);
        client_send(r.fd, chunk, (size_t)n + 502);
    }
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 413);
    ck_assert(r.eof);
    reader_free(&r);
    ck_assert_int_eq(n_seen, 1);
}
END_TEST

START_TEST(test_header_too_large)
{
    struct bl_http_server_opts o = test_opts();
    struct reader r;
    char big[3000];
    o.max_header_bytes = 1024;
    start_server(&o);
    reader_init(&r, client_connect());
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    client_sends(r.fd, "GET /echo HTTP/1.1\r\nX-Big: ");
    client_sends(r.fd, big);
    client_sends(r.fd, "\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 431);
    ck_assert_str_eq(resps[0].connection, "close");
    ck_assert(r.eof);
    reader_free(&r);

    /* a long target counts too */
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /echo?");
    client_sends(r.fd, big);
    client_sends(r.fd, " HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 431);
    reader_free(&r);
    ck_assert_int_eq(n_seen, 0);
}
END_TEST

START_TEST(test_too_many_headers)
{
    struct reader r;
    char req[4096];
    size_t n = 0;
    int i;
    start_server(NULL);

    /* BL_HTTP_MAX_HEADERS is fine */
    reader_init(&r, client_connect());
    n = (size_t)snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\n");
    for (i = 0; i < BL_HTTP_MAX_HEADERS; i++) {
        n += (size_t)snprintf(req + n, sizeof req - n, "H%d: %d\r\n", i, i);
    }
    n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    client_send(r.fd, req, n);
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_ptr_nonnull(strstr(resps[0].body, ";H=64;"));
    reader_free(&r);

    /* one more is not */
    reader_init(&r, client_connect());
    n = (size_t)snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\n");
    for (i = 0; i <= BL_HTTP_MAX_HEADERS; i++) {
        n += (size_t)snprintf(req + n, sizeof req - n, "H%d: %d\r\n", i, i);
    }
    n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    client_send(r.fd, req, n);
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert_int_eq(resps[0].status, 431);
    ck_assert(r.eof);
    reader_free(&r);
    ck_assert_int_eq(n_seen, 1);
}
END_TEST

START_TEST(test_request_timeout)
{
    struct bl_http_server_opts o = test_opts();
    struct reader r;
    uint64_t t0;
    o.request_timeout_ms = 150;
    start_server(&o);
    reader_init(&r, client_connect());
    /* a complete request first: the timer stops with it */
    client_sends(r.fd, "GET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    run_for(200);
    ck_assert(!r.eof);
    /* then a half-sent one */
    t0 = uv_hrtime();
    client_sends(r.fd, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    ck_assert_int_eq(wait_responses(&r, 2, true), 2);
    ck_assert(r.eof);
    ck_assert_uint_ge(uv_hrtime() - t0, 140 * 1000000ull);
    ck_assert_int_eq(resps[1].status, 408);
    ck_assert_str_eq(resps[1].connection, "close");
    ck_assert_int_eq(n_seen, 1);
    reader_free(&r);

    /* a half-sent request behind a pending one: closed without a reply */
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /hold HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n");
    ck_assert(wait_eof(&r));
    ck_assert_uint_eq(r.len, 0);
    ck_assert_int_eq(n_held, 1);
    ck_assert(bl_http_exchange_gone(held[0]));
    reader_free(&r);
}
END_TEST

START_TEST(test_idle_timeout)
{
    struct bl_http_server_opts o = test_opts();
    struct reader r;
    o.idle_timeout_ms = 100;
    start_server(&o);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    ck_assert(wait_eof(&r));
    reader_free(&r);
    run_for(10);
    ck_assert_uint_eq(bl_http_server_connections(srv), 0);

    /* a pending exchange is not idleness */
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /hold HTTP/1.1\r\n\r\n");
    run_for(300);
    ck_assert(!r.eof);
    ck_assert_int_eq(n_held, 1);
    bl_http_respond(held[0], 200, NULL, 0, "ok", 2);
    held[0] = NULL;
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert(r.eof);
    reader_free(&r);
}
END_TEST

START_TEST(test_max_connections)
{
    struct bl_http_server_opts o = test_opts();
    struct reader a, b;
    o.max_connections = 1;
    start_server(&o);
    reader_init(&a, client_connect());
    client_sends(a.fd, "GET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&a, 1, false), 1);
    reader_init(&b, client_connect());
    ck_assert(wait_eof(&b));
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(bl_http_server_connections(srv), 1);
    client_sends(a.fd, "GET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&a, 2, false), 2);
    reader_free(&a);
    reader_free(&b);
}
END_TEST

START_TEST(test_disconnect_pending)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /hold?x=1 HTTP/1.1\r\nX-Test: kept\r\n\r\nPOST /hold HTTP/1.1\r\n"
                       "Content-Length: 4\r\n\r\nbody");
    while (n_held < 2 && !r.eof) {
        reader_pump(&r);
    }
    ck_assert_int_eq(n_held, 2);
    ck_assert(!bl_http_exchange_gone(held[0]));
    reader_free(&r); /* the client goes away */
    {
        uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
        while (bl_http_server_connections(srv) > 0 && uv_hrtime() < end) {
            step(1);
        }
    }
    ck_assert_uint_eq(bl_http_server_connections(srv), 0);
    run_for(10);
    /* the exchanges are still readable, and answering them is harmless */
    ck_assert(bl_http_exchange_gone(held[0]));
    ck_assert(bl_http_exchange_gone(held[1]));
    {
        size_t len;
        const char *v = bl_http_header_get(held[0], "X-TEST", &len);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq((int)len, 4);
        ck_assert_int_eq(memcmp(v, "kept", 4), 0);
        ck_assert_int_eq(memcmp(held[1]->body, "body", 4), 0);
    }
    ck_assert_int_eq(bl_http_respond(held[1], 200, NULL, 0, "late", 4), BL_OK);
    held[1] = NULL;
    ck_assert_int_eq(bl_http_stream_begin(held[0], 200, NULL, 0, 100), BL_OK);
    ck_assert_int_eq(bl_http_stream_write(held[0], "x", 1), BL_EUNAVAILABLE);
    ck_assert_int_eq(bl_http_stream_end(held[0]), BL_OK);
    held[0] = NULL;
}
END_TEST

START_TEST(test_close_with_pending)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /hold HTTP/1.1\r\n\r\n");
    while (n_held < 1 && !r.eof) {
        reader_pump(&r);
    }
    ck_assert_int_eq(n_held, 1);
    bl_http_server_close(srv, closed_cb, &closed);
    srv = NULL;
    ck_assert(wait_eof(&r));
    run_for(50);
    ck_assert(!closed); /* waits for the exchange */
    ck_assert(bl_http_exchange_gone(held[0]));
    bl_http_respond(held[0], 200, NULL, 0, "late", 4);
    held[0] = NULL;
    ck_assert(closed);
    reader_free(&r);
}
END_TEST

START_TEST(test_stream)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /stream HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_str_eq(resps[0].transfer_encoding, "chunked");
    ck_assert_str_eq(resps[0].content_type, "application/x-ndjson");
    ck_assert(!resps[0].has_content_length);
    ck_assert_str_eq(resps[0].body, "hello\nworld\n");
    ck_assert_str_eq(resps[1].body, "M=GET;P=/echo;Q=-;H=0;X=-;B=");
    ck_assert_ptr_nonnull(strstr(r.data, "6\r\nhello\n\r\n6\r\nworld\n\r\n0\r\n\r\n"));
    reader_free(&r);
}
END_TEST

START_TEST(test_stream_holds_later_replies)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /streamhold HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
    run_for(100);
    reader_pump(&r);
    ck_assert_int_eq(n_seen, 2);
    ck_assert_ptr_nonnull(stream_ex);
    ck_assert_int_eq(stream_rv[0], BL_OK);
    ck_assert_int_eq(stream_rv[1], BL_OK);
    /* the stream has started; the echo reply waits behind it */
    ck_assert_ptr_nonnull(strstr(r.data, "1\r\na\r\n"));
    ck_assert_int_eq(parse_responses(&r, resps), 0);
    ck_assert_ptr_null(strstr(r.data, "M=GET"));
    ck_assert_int_eq(bl_http_stream_write(stream_ex, "!", 1), BL_OK);
    ck_assert_int_eq(bl_http_stream_end(stream_ex), BL_OK);
    stream_ex = NULL;
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_str_eq(resps[0].body, "a0123456789abcdefghij!");
    ck_assert_str_eq(resps[1].body, "M=GET;P=/echo;Q=-;H=0;X=-;B=");
    reader_free(&r);
}
END_TEST

START_TEST(test_stream_buffer_limit)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    /* the stream is behind a held exchange, so its head and chunks are
     * buffered: 108 header bytes, 6 for "a", then 20 more is over 120 */
    client_sends(r.fd, "GET /hold HTTP/1.1\r\n\r\nGET /streamhold?max=120 HTTP/1.1\r\n\r\n");
    while (stream_ex == NULL && !r.eof) {
        reader_pump(&r);
    }
    ck_assert_ptr_nonnull(stream_ex);
    ck_assert_int_eq(stream_rv[0], BL_OK);
    ck_assert_int_eq(stream_rv[1], BL_ETOOLARGE);
    /* what waits is counted as the limit counts it; a final chunk goes
     * past the limit ("7\r\nfinally\r\n": 12 more bytes) */
    ck_assert_uint_eq(bl_http_stream_unsent(stream_ex), 114);
    ck_assert_int_eq(bl_http_stream_write(stream_ex, "finally", 7), BL_ETOOLARGE);
    ck_assert_int_eq(bl_http_stream_write_final(stream_ex, "finally", 7), BL_OK);
    ck_assert_uint_eq(bl_http_stream_unsent(stream_ex), 126);
    ck_assert_int_eq(bl_http_stream_end(stream_ex), BL_OK);
    stream_ex = NULL;
    run_for(20);
    reader_pump(&r);
    ck_assert_uint_eq(r.len, 0);
    bl_http_respond(held[0], 200, NULL, 0, "first", 5);
    held[0] = NULL;
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_str_eq(resps[0].body, "first");
    ck_assert_str_eq(resps[1].body, "afinally");
    reader_free(&r);
}
END_TEST

START_TEST(test_backpressure)
{
    struct reader r;
    char req[8192];
    size_t n = 0;
    int i;
    start_server(NULL);
    reader_init(&r, client_connect());
    for (i = 0; i < 100; i++) {
        n += (size_t)snprintf(req + n, sizeof req - n, "GET /hold?i=%d HTTP/1.1\r\n\r\n", i);
    }
    client_send(r.fd, req, n);
    run_for(100);
    /* parsing paused at 64 pending exchanges */
    ck_assert_int_eq(n_held, 64);
    for (i = 63; i >= 0; i--) {
        char body[16];
        int len = snprintf(body, sizeof body, "%d", i);
        ck_assert_int_eq(bl_http_respond(held[i], 200, NULL, 0, body, (size_t)len), BL_OK);
        held[i] = NULL;
    }
    /* no handler call from inside bl_http_respond(): resumption waits for the loop */
    ck_assert_int_eq(n_held, 64);
    ck_assert_int_eq(wait_responses(&r, 64, false), 64);
    run_for(50);
    ck_assert_int_eq(n_held, 100);
    for (i = 64; i < 100; i++) {
        char body[16];
        int len = snprintf(body, sizeof body, "%d", i);
        ck_assert_int_eq(bl_http_respond(held[i], 200, NULL, 0, body, (size_t)len), BL_OK);
        held[i] = NULL;
    }
    ck_assert_int_eq(wait_responses(&r, 100, false), 100);
    for (i = 0; i < 100; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        ck_assert_str_eq(resps[i].body, body);
    }
    reader_free(&r);
}
END_TEST

START_TEST(test_expect_continue_and_head)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    {
        uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
        while (r.len < 25 && uv_hrtime() < end) {
            reader_pump(&r);
        }
    }
    ck_assert_uint_eq(r.len, 25);
    ck_assert_str_eq(r.data, "HTTP/1.1 100 Continue\r\n\r\n");
    client_sends(r.fd, "abc");
    ck_assert_int_eq(wait_responses(&r, 2, false), 2);
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert_ptr_nonnull(strstr(resps[1].body, ";B=abc"));
    reader_free(&r);

    /* HEAD: the length of the body, not the body */
    reader_init(&r, client_connect());
    client_sends(r.fd, "HEAD /echo HTTP/1.1\r\n\r\n");
    {
        uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
        while ((r.data == NULL || strstr(r.data, "\r\n\r\n") == NULL) && uv_hrtime() < end) {
            reader_pump(&r);
        }
    }
    run_for(20);
    reader_pump(&r);
    ck_assert_ptr_nonnull(r.data);
    ck_assert_ptr_nonnull(strstr(r.data, "Content-Length: 29\r\n"));
    ck_assert_str_eq(strstr(r.data, "\r\n\r\n"), "\r\n\r\n");
    reader_free(&r);
}
END_TEST

START_TEST(test_large_bodies)
{
    struct reader r;
    struct bl_http_server_opts o = test_opts();
    size_t big = 3u << 20;
    size_t n;
    char *req;
    int i;
    o.max_body_bytes = 3u << 19;
    start_server(&o);
    reader_init(&r, client_connect());

    /* an upload of the maximum size, sent in pieces */
    req = malloc(o.max_body_bytes + 200);
    ck_assert_ptr_nonnull(req);
    n = (size_t)sprintf(req, "PUT /hold HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                        (size_t)o.max_body_bytes);
    memset(req + n, 'u', o.max_body_bytes);
    client_send(r.fd, req, n + o.max_body_bytes);
    free(req);
    while (n_held == 0 && !r.eof) {
        reader_pump(&r);
    }
    ck_assert_int_eq(n_held, 1);
    ck_assert_uint_eq(held[0]->body_len, 3u << 19);
    bl_http_respond(held[0], 200, NULL, 0, NULL, 0);
    held[0] = NULL;
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);

    /* replies far bigger than the socket buffers, pipelined, read late */
    {
        char reqs[256];
        int len = 0;
        for (i = 0; i < 3; i++) {
            len += snprintf(reqs + len, sizeof reqs - (size_t)len,
                            "GET /big?n=%zu HTTP/1.1\r\n\r\n", big);
        }
        client_send(r.fd, reqs, (size_t)len);
    }
    run_for(100);
    ck_assert_int_eq(wait_responses(&r, 4, false), 4);
    for (i = 1; i < 4; i++) {
        ck_assert_int_eq(resps[i].status, 200);
        ck_assert_uint_eq(resps[i].body_len, big);
        ck_assert_int_eq(memcmp(resps[i].body, "abcdefghijklmnopqrstuvwxyzabc", 29), 0);
    }
    reader_free(&r);
}
END_TEST

START_TEST(test_stream_slow_reader)
{
    struct reader r;
    start_server(NULL);
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /flood HTTP/1.1\r\n\r\n");
    while (n_seen == 0 && !r.eof) {
        reader_pump(&r);
    }
    /* the handler wrote until more than 1 MiB was waiting */
    ck_assert_int_ge(n_flood, 8);
    ck_assert_int_lt(n_flood, 1000);
    ck_assert_int_eq(wait_responses(&r, 1, false), 1);
    ck_assert_uint_eq(resps[0].body_len, (size_t)n_flood * 65536);
    reader_free(&r);

    /* HTTP/1.0 has no chunks: the body ends with the connection */
    reader_init(&r, client_connect());
    client_sends(r.fd, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert_int_eq(wait_responses(&r, 1, true), 1);
    ck_assert(r.eof);
    ck_assert_str_eq(resps[0].transfer_encoding, "");
    ck_assert_str_eq(resps[0].connection, "close");
    ck_assert_str_eq(resps[0].body, "hello\nworld\n");
    reader_free(&r);
}
END_TEST

START_TEST(test_listen_errors)
{
    char errmsg[BL_ERRMSG_SIZE];
    char addr[64];
    struct bl_http_server *other = NULL;
    int rv;
    start_server(NULL);

    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    rv = bl_http_server_start(&loop, addr, NULL, handler, &loop, &other, errmsg);
    ck_assert_int_ne(rv, BL_OK);
    {
        char want[BL_ERRMSG_SIZE];
        snprintf(want, sizeof want, "listen %s: address already in use", addr);
        ck_assert_str_eq(errmsg, want);
    }
    rv = bl_http_server_start(&loop, "nonsense", NULL, handler, &loop, &other, errmsg);
    ck_assert_int_eq(rv, BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(errmsg, "nonsense"));
    rv = bl_http_server_start(&loop, "127.0.0.1:99999", NULL, handler, &loop, &other, errmsg);
    ck_assert_int_eq(rv, BL_EBADREQ);
    rv = bl_http_server_start(&loop, "::1:80", NULL, handler, &loop, &other, errmsg);
    ck_assert_int_eq(rv, BL_EBADREQ);
    rv = bl_http_server_start(&loop, "[::1]80", NULL, handler, &loop, &other, errmsg);
    ck_assert_int_eq(rv, BL_EBADREQ);

    /* IPv6 where the host has it */
    rv = bl_http_server_start(&loop, "[::1]:0", NULL, handler, &loop, &other, errmsg);
    if (rv == BL_OK) {
        bool done = false;
        ck_assert_int_gt(bl_http_server_port(other), 0);
        bl_http_server_close(other, closed_cb, &done);
        ck_assert(run_until_flag(&done));
    }
}
END_TEST

START_TEST(test_unescape)
{
    uint8_t out[64];
    size_t n = 99;
    ck_assert_int_eq(bl_http_unescape("", 0, out, &n), BL_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(bl_http_unescape("a%2Fb%2fc", 9, out, &n), BL_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(memcmp(out, "a/b/c", 5), 0);
    ck_assert_int_eq(bl_http_unescape("a+b%20c", 7, out, &n), BL_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(memcmp(out, "a+b c", 5), 0);
    ck_assert_int_eq(bl_http_unescape("%00%ff%FF%41", 12, out, &n), BL_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(out,
                            "\0\xff\xff"
                            "A",
                            4),
                     0);
    ck_assert_int_eq(bl_http_unescape("%", 1, out, &n), BL_EBADREQ);
    ck_assert_int_eq(bl_http_unescape("ab%4", 4, out, &n), BL_EBADREQ);
    ck_assert_int_eq(bl_http_unescape("%4g", 3, out, &n), BL_EBADREQ);
    ck_assert_int_eq(bl_http_unescape("%g4", 3, out, &n), BL_EBADREQ);
    ck_assert_int_eq(bl_http_unescape("%%41", 4, out, &n), BL_EBADREQ);
    /* only @in_len bytes are looked at */
    ck_assert_int_eq(bl_http_unescape("ab%41", 3, out, &n), BL_EBADREQ);
    ck_assert_int_eq(bl_http_unescape("ab%41", 2, out, &n), BL_OK);
    ck_assert_uint_eq(n, 2);
}
END_TEST

START_TEST(test_query_get)
{
    const char *q = "a=1&prev&b=x%20y&prev2=&limit=10&ab=2";
    size_t ql = strlen(q);
    const char *v;
    size_t n;
    ck_assert(bl_http_query_get(q, ql, "a", &v, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(*v, '1');
    ck_assert(bl_http_query_get(q, ql, "prev", &v, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(bl_http_query_get(q, ql, "prev2", &v, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(bl_http_query_get(q, ql, "b", &v, &n));
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(memcmp(v, "x%20y", 5), 0);
    ck_assert(bl_http_query_get(q, ql, "ab", &v, &n));
    ck_assert_int_eq(*v, '2');
    ck_assert(bl_http_query_get(q, ql, "limit", NULL, NULL));
    /* whole names only */
    ck_assert(!bl_http_query_get(q, ql, "pre", &v, &n));
    ck_assert(!bl_http_query_get(q, ql, "lim", &v, &n));
    ck_assert(!bl_http_query_get(q, ql, "1", &v, &n));
    ck_assert(!bl_http_query_get(q, ql, "x", &v, &n));
    /* the length bounds the search */
    ck_assert(!bl_http_query_get(q, 3, "prev", &v, &n));
    ck_assert(bl_http_query_get("prev&x", 4, "prev", &v, &n));
    ck_assert(bl_http_query_get("prev=", 5, "prev", &v, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(bl_http_query_get("&&k=v&", 6, "k", &v, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert(!bl_http_query_get(NULL, 0, "a", &v, &n));
    ck_assert(!bl_http_query_get("", 0, "a", &v, &n));
}
END_TEST

START_TEST(test_header_get)
{
    struct bl_http_exchange ex;
    size_t n = 0;
    memset(&ex, 0, sizeof ex);
    ex.headers[0] = (struct bl_http_header){"Content-Type", 12, "text/plain", 10};
    ex.headers[1] = (struct bl_http_header){"Accept", 6, "application/msgpack", 19};
    ex.n_headers = 2;
    ck_assert_ptr_eq(bl_http_header_get(&ex, "accept", &n), ex.headers[1].value);
    ck_assert_uint_eq(n, 19);
    ck_assert_ptr_eq(bl_http_header_get(&ex, "CONTENT-TYPE", &n), ex.headers[0].value);
    ck_assert_ptr_null(bl_http_header_get(&ex, "Content", &n));
    ck_assert_ptr_null(bl_http_header_get(&ex, "Accept-Encoding", &n));
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_get_path_query_headers);
    tcase_add_test(tc, test_post_body);
    tcase_add_test(tc, test_keep_alive);
    tcase_add_test(tc, test_pipeline_out_of_order);
    tcase_add_test(tc, test_malformed_request);
    tcase_add_test(tc, test_bad_after_good);
    tcase_add_test(tc, test_body_too_large);
    tcase_add_test(tc, test_header_too_large);
    tcase_add_test(tc, test_too_many_headers);
    tcase_add_test(tc, test_request_timeout);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_disconnect_pending);
    tcase_add_test(tc, test_close_with_pending);
    tcase_add_test(tc, test_stream);
    tcase_add_test(tc, test_stream_holds_later_replies);
    tcase_add_test(tc, test_stream_buffer_limit);
    tcase_add_test(tc, test_backpressure);
    tcase_add_test(tc, test_expect_continue_and_head);
    tcase_add_test(tc, test_large_bodies);
    tcase_add_test(tc, test_stream_slow_reader);
    tcase_add_test(tc, test_listen_errors);
    tcase_add_test(tc, test_unescape);
    tcase_add_test(tc, test_query_get);
    tcase_add_test(tc, test_header_get);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
