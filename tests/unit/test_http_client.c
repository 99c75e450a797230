/* Tests for the HTTP/1.1 client (server/http_client.c).
 *
 * Each test runs a tiny HTTP server of its own, written here with raw libuv
 * and http-parser on 127.0.0.1 port 0, on the same loop as the client. The
 * server answers in the way the test sets (echo, chunked, body until EOF,
 * silence, a connection cut mid-response, ...) and counts the connections
 * it accepts, so keep-alive reuse can be checked from the outside. Every
 * wait is bounded by a guard timer; the teardown closes the client and the
 * server and checks that the loop closes with nothing left open. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <http_parser.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "error.h"
#include "http_client.h"

/* --- the test server ---------------------------------------------------------- */

enum srv_mode {
    M_ECHO,       /* 200, Content-Length, body "<method> <target> <len>:<body>" */
    M_CHUNKED,    /* 200, chunked "hello, world!" in three writes */
    M_EOF,        /* 200, Connection: close, body until EOF */
    M_SILENT,     /* read the request, never answer */
    M_CLOSE_MID,  /* headers promising 100 bytes, 7 bytes, then close */
    M_CLOSE_NOW,  /* close as soon as the request is in */
    M_BIG,        /* 200 with big_len bytes of pattern */
    M_HUGE_DECL,  /* headers declaring a body over the client's limit */
    M_INTERIM,    /* 100 Continue, then 200 "ok" */
    M_SPLIT_HEAD, /* echo, written one byte at a time */
};

struct tsrv;

struct tconn {
    uv_tcp_t tcp;
    struct tsrv *s;
    http_parser parser;
    bool in_value;
    struct tconn *next;
};

struct tsrv {
    uv_tcp_t listener;
    bool listening;
    int port;
    int mode;
    unsigned accepted, requests, open;
    struct tconn *conns;
    size_t big_len;
    char peer_ip[64]; /* source address of the last connection accepted */
    /* the last request */
    char method[16];
    char target[512];
    size_t target_len;
    char headers[8192]; /* "Name: value\n" lines */
    size_t headers_len;
    char *body;
    size_t body_len, body_cap;
};

struct twrite {
    uv_write_t w;
    bool close_after;
    char data[];
};

static uv_loop_t loop;
static struct tsrv srv;
static struct bl_http_client *client;
static uv_timer_t guard;
static bool guard_fired;
static char dest[64];
static char read_buf[65536];

static void tconn_closed(uv_handle_t *h)
{
    struct tconn *t = h->data;
    struct tsrv *s = t->s;

    for (struct tconn **pp = &s->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    s->open--;
    free(t);
}

static void tconn_close(struct tconn *t)
{
    if (!uv_is_closing((uv_handle_t *)&t->tcp)) {
        uv_close((uv_handle_t *)&t->tcp, tconn_closed);
    }
}

static void twrite_done(uv_write_t *w, int status)
{
    struct twrite *tw = (struct twrite *)w;
    struct tconn *t = w->handle->data;

    (void)status;
    if (tw->close_after) {
        tconn_close(t);
    }
    free(tw);
}

static void twrite(struct tconn *t, const void *p, size_t len, bool close_after)
{
    struct twrite *tw = malloc(sizeof *tw + len);
    uv_buf_t buf;

    ck_assert_ptr_nonnull(tw);
    memcpy(tw->data, p, len);
    tw->close_after = close_after;
    buf = uv_buf_init(tw->data, (unsigned)len);
    if (uv_write(&tw->w, (uv_stream_t *)&t->tcp, &buf, 1, twrite_done) != 0) {
        free(tw);
        tconn_close(t);
    }
}

static void twrite_str(struct tconn *t, const char *s, bool close_after)
{
    twrite(t, s, strlen(s), close_after);
}

static void respond(struct tconn *t)
{
    struct tsrv *s = t->s;
    char head[256];
    char *body;
    size_t blen;
    int n;

    switch (s->mode) {
    case M_ECHO:
    case M_SPLIT_HEAD:
        body = malloc(600 + s->body_len);
        ck_assert_ptr_nonnull(body);
        n = snprintf(body, 600, "%s %.*s %zu:", s->method, (int)s->target_len, s->target,
                     s->body_len);
        if (s->body_len > 0) {
            memcpy(body + n, s->body, s->body_len);
        }
        blen = (size_t)n + s->body_len;
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nX-Test: yes\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     blen);
        if (s->mode == M_SPLIT_HEAD) {
            for (int i = 0; i < n; i++) {
                twrite(t, head + i, 1, false);
            }
        } else {
            twrite(t, head, (size_t)n, false);
        }
        if (strcmp(s->method, "HEAD") != 0) {
            twrite(t, body, blen, false);
        }
        free(body);
        break;
    case M_CHUNKED:
        twrite_str(
            t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: chunked\r\n\r\n5\r\nhe",
            false);
        twrite_str(t, "llo\r\n8\r\n, world!\r\n", false);
        twrite_str(t, "0\r\n\r\n", false);
        break;
    case M_EOF:
        twrite_str(t, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof ", false);
        twrite_str(t, "body", true);
        break;
    case M_SILENT:
        break;
    case M_CLOSE_MID:
        twrite_str(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", true);
        break;
    case M_CLOSE_NOW:
        tconn_close(t);
        break;
    case M_BIG:
        n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                     s->big_len);
        twrite(t, head, (size_t)n, false);
        body = malloc(s->big_len);
        ck_assert_ptr_nonnull(body);
        for (size_t i = 0; i < s->big_len; i++) {
            body[i] = (char)(i * 31 + 7);
        }
        twrite(t, body, s->big_len, false);
        free(body);
        break;
    case M_HUGE_DECL:
        twrite_str(t, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nxyz", false);
        break;
    case M_INTERIM:
        twrite_str(t, "HTTP/1.1 100 Continue\r\n\r\n", false);
        twrite_str(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        break;
    default:
        ck_abort();
    }
}

static int srv_on_begin(http_parser *p)
{
    struct tconn *t = p->data;
    t->s->target_len = 0;
    t->s->headers_len = 0;
    t->s->body_len = 0;
    t->in_value = false;
    return 0;
}

static int srv_on_url(http_parser *p, const char *at, size_t len)
{
    struct tsrv *s = ((struct tconn *)p->data)->s;
    ck_assert_uint_lt(s->target_len + len, sizeof s->target);
    memcpy(s->target + s->target_len, at, len);
    s->target_len += len;
    return 0;
}

static void headers_add(struct tsrv *s, const char *at, size_t len)
{
    ck_assert_uint_lt(s->headers_len + len, sizeof s->headers);
    memcpy(s->headers + s->headers_len, at, len);
    s->headers_len += len;
    s->headers[s->headers_len] = '\0';
}

static int srv_on_field(http_parser *p, const char *at, size_t len)
{
    struct tconn *t = p->data;
    if (t->in_value) {
        headers_add(t->s, "\n", 1);
        t->in_value = false;
    }
    headers_add(t->s, at, len);
    return 0;
}

static int srv_on_value(http_parser *p, const char *at, size_t len)
{
    struct tconn *t = p->data;
    if (!t->in_value) {
        headers_add(t->s, ": ", 2);
        t->in_value = true;
    }
    headers_add(t->s, at, len);
    return 0;
}

static int srv_on_headers_complete(http_parser *p)
{
    struct tconn *t = p->data;
    if (t->in_value) {
        headers_add(t->s, "\n", 1);
    }
    return 0;
}

static int srv_on_body(http_parser *p, const char *at, size_t len)
{
    struct tsrv *s = ((struct tconn *)p->data)->s;
    if (s->body_len + len > s->body_cap) {
        s->body_cap = 2 * (s->body_len + len);
        s->body = realloc(s->body, s->body_cap);
        ck_assert_ptr_nonnull(s->body);
    }
    memcpy(s->body + s->body_len, at, len);
    s->body_len += len;
    return 0;
}

static int srv_on_complete(http_parser *p)
{
    struct tconn *t = p->data;
    struct tsrv *s = t->s;

    snprintf(s->method, sizeof s->method, "%s", http_method_str((enum http_method)p->method));
    s->requests++;
    respond(t);
    return 0;
}

static const http_parser_settings SRV_SETTINGS = {
    .on_message_begin = srv_on_begin,
    .on_url = srv_on_url,
    .on_header_field = srv_on_field,
    .on_header_value = srv_on_value,
    .on_headers_complete = srv_on_headers_complete,
    .on_body = srv_on_body,
    .on_message_complete = srv_on_complete,
};

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct tconn *t = st->data;

    if (nread < 0) {
        tconn_close(t);
        return;
    }
    if (nread > 0 && !uv_is_closing((uv_handle_t *)st)) {
        size_t n = http_parser_execute(&t->parser, &SRV_SETTINGS, buf->base, (size_t)nread);
        if (n != (size_t)nread && !uv_is_closing((uv_handle_t *)st)) {
            tconn_close(t);
        }
    }
}

static void srv_accept(uv_stream_t *l, int status)
{
    struct tsrv *s = l->data;
    struct tconn *t;

    ck_assert_int_eq(status, 0);
    t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->s = s;
    ck_assert_int_eq(uv_tcp_init(&loop, &t->tcp), 0);
    t->tcp.data = t;
    t->next = s->conns;
    s->conns = t;
    s->open++;
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&t->tcp), 0);
    s->accepted++;
    {
        struct sockaddr_storage peer;
        int plen = sizeof peer;
        ck_assert_int_eq(uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&peer, &plen), 0);
        if (peer.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&peer, s->peer_ip, sizeof s->peer_ip);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&peer, s->peer_ip, sizeof s->peer_ip);
        }
    }
    http_parser_init(&t->parser, HTTP_REQUEST);
    t->parser.data = t;
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&t->tcp, srv_alloc, srv_read), 0);
}

/* Listen on @ip port 0; returns 0 or a libuv error (then nothing is open). */
static int tsrv_start(struct tsrv *s, const char *ip, int mode)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rv;

    memset(s, 0, sizeof *s);
    s->mode = mode;
    if (strchr(ip, ':') != NULL) {
        rv = uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss);
    } else {
        rv = uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss);
    }
    ck_assert_int_eq(rv, 0);
    ck_assert_int_eq(uv_tcp_init(&loop, &s->listener), 0);
    s->listener.data = s;
    s->listening = true;
    rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->listener, 128, srv_accept);
    }
    if (rv == 0) {
        rv = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
        return rv;
    }
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Close every accepted connection (the listener stays). */
static void tsrv_close_conns(struct tsrv *s)
{
    for (struct tconn *t = s->conns; t != NULL; t = t->next) {
        tconn_close(t);
    }
}

static void tsrv_stop(struct tsrv *s)
{
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
    }
    tsrv_close_conns(s);
}

/* --- waiting ------------------------------------------------------------------- */

static void on_guard(uv_timer_t *t)
{
    (void)t;
    guard_fired = true;
}

/* Run the loop until @pred holds or @ms pass; returns @pred's value. */
static bool run_until(bool (*pred)(const void *), const void *arg, unsigned ms)
{
    guard_fired = false;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!pred(arg) && !guard_fired) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&guard);
    return pred(arg);
}

static bool never(const void *arg)
{
    (void)arg;
    return false;
}

static void run_for(unsigned ms)
{
    run_until(never, NULL, ms);
}

static bool accepted_is(const void *arg)
{
    return srv.accepted == *(const unsigned *)arg;
}

static bool requests_are(const void *arg)
{
    return srv.requests == *(const unsigned *)arg;
}

static bool open_is(const void *arg)
{
    return srv.open == *(const unsigned *)arg;
}

/* --- client results ----------------------------------------------------------- */

struct result {
    int calls;
    int status;
    int http_status;
    char *body;
    size_t body_len;
    char xtest[64];   /* X-Test, looked up case-insensitively */
    bool has_missing; /* a header that was not sent was found */
    bool has_clen;
    uint64_t at;  /* uv_hrtime() of the callback */
    bool chain;   /* issue a follow-up request from the callback */
    int chain_rv; /* what that returned */
    struct result *next;
};

static bool result_done(const void *arg)
{
    return ((const struct result *)arg)->calls > 0;
}

static void on_result(void *arg, int status, const struct bl_http_response *r)
{
    struct result *res = arg;
    const char *v;
    size_t len;

    res->calls++;
    res->status = status;
    res->at = uv_hrtime();
    if (r != NULL) {
        res->http_status = r->status;
        res->body = malloc(r->body_len + 1);
        ck_assert_ptr_nonnull(res->body);
        memcpy(res->body, r->body, r->body_len);
        res->body[r->body_len] = '\0';
        res->body_len = r->body_len;
        v = bl_http_response_header(r, "x-TEST", &len);
        if (v != NULL) {
            ck_assert_uint_lt(len, sizeof res->xtest);
            memcpy(res->xtest, v, len);
            res->xtest[len] = '\0';
        }
        res->has_missing = bl_http_response_header(r, "X-Missing", NULL) != NULL;
        res->has_clen = bl_http_response_header(r, "content-length", NULL) != NULL;
    }
    if (res->chain) {
        res->chain_rv = bl_http_client_request(client, dest, "GET", "/chained", 8, NULL, 0, NULL, 0,
                                               5000, on_result, res->next);
    }
}

static void result_free(struct result *r)
{
    free(r->body);
    r->body = NULL;
}

/* Send a request to the test server and wait for its callback. */
static void request_wait(const char *method, const char *target, const void *body, size_t len,
                         struct result *res)
{
    ck_assert_int_eq(bl_http_client_request(client, dest, method, target, strlen(target), NULL, 0,
                                            body, len, 5000, on_result, res),
                     BL_OK);
    ck_assert(run_until(result_done, res, 10000));
    ck_assert_int_eq(res->calls, 1);
}

/* --- fixture -------------------------------------------------------------------- */

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(uv_timer_init(&loop, &guard), 0);
    ck_assert_int_eq(tsrv_start(&srv, "127.0.0.1", M_ECHO), 0);
    snprintf(dest, sizeof dest, "127.0.0.1:%d", srv.port);
    ck_assert_int_eq(bl_http_client_init(&loop, &client), BL_OK);
}

static void teardown(void)
{
    uint64_t deadline = uv_hrtime() + 5000000000ULL;

    if (client != NULL) {
        bl_http_client_close(client);
        client = NULL;
    }
    tsrv_stop(&srv);
    uv_close((uv_handle_t *)&guard, NULL);
    while (uv_loop_alive(&loop) && uv_hrtime() < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert(!uv_loop_alive(&loop));
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(srv.body);
    srv.body = NULL;
}

/* --- tests ------------------------------------------------------------------------ */

START_TEST(test_get)
{
    struct result res = {0};
    struct bl_http_header hdrs[] = {
        {"X-Ballast-Forwarded-By", 22, "2", 1},
        {"host", 4, "evil", 4}, /* the client writes its own */
        {"X-Empty", 7, "", 0},
    };
    char want[128];

    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/v1/kv/a?x=1", 12, hdrs, 3, NULL,
                                            0, 5000, on_result, &res),
                     BL_OK);
    ck_assert_int_eq(res.calls, 0); /* never from within the call */
    ck_assert(run_until(result_done, &res, 10000));
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_int_eq(res.http_status, 200);
    ck_assert_str_eq(res.body, "GET /v1/kv/a?x=1 0:");
    ck_assert_str_eq(res.xtest, "yes");
    ck_assert(!res.has_missing);
    ck_assert(res.has_clen);

    ck_assert_str_eq(srv.method, "GET");
    snprintf(want, sizeof want, "Host: %s\n", dest);
    ck_assert_ptr_nonnull(strstr(srv.headers, want));
    ck_assert_ptr_nonnull(strstr(srv.headers, "Content-Length: 0\n"));
    ck_assert_ptr_nonnull(strstr(srv.headers, "Connection: keep-alive\n"));
    ck_assert_ptr_nonnull(strstr(srv.headers, "X-Ballast-Forwarded-By: 2\n"));
    ck_assert_ptr_nonnull(strstr(srv.headers, "X-Empty: \n"));
    ck_assert_ptr_null(strstr(srv.headers, "evil"));
    result_free(&res);
}
END_TEST

START_TEST(test_put_body)
{
    struct result res = {0};
    static const char body[] = "a\0b\r\n\xff";
    struct bl_http_header ct = {"Content-Type", 12, "application/octet-stream", 24};
    char *copy = malloc(sizeof body - 1);

    /* The client copies the request: the caller's memory is gone at once. */
    memcpy(copy, body, sizeof body - 1);
    ck_assert_int_eq(bl_http_client_request(client, dest, "PUT", "/v1/kv/k", 8, &ct, 1, copy,
                                            sizeof body - 1, 5000, on_result, &res),
                     BL_OK);
    memset(copy, 'X', sizeof body - 1);
    free(copy);
    ck_assert(run_until(result_done, &res, 10000));
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_int_eq(res.http_status, 200);
    ck_assert_uint_eq(res.body_len, 15 + sizeof body - 1);
    ck_assert_int_eq(memcmp(res.body, "PUT /v1/kv/k 6:", 15), 0);
    ck_assert_int_eq(memcmp(res.body + 15, body, sizeof body - 1), 0);
    ck_assert_str_eq(srv.method, "PUT");
    ck_assert_uint_eq(srv.body_len, sizeof body - 1);
    ck_assert_int_eq(memcmp(srv.body, body, sizeof body - 1), 0);
    ck_assert_ptr_nonnull(strstr(srv.headers, "Content-Length: 6\n"));
    ck_assert_ptr_nonnull(strstr(srv.headers, "Content-Type: application/octet-stream\n"));
    result_free(&res);
}
END_TEST

START_TEST(test_big_bodies)
{
    struct result res = {0};
    size_t req_len = 24u << 20; /* more than a socket buffer: uv_write finishes it */
    char *body = malloc(req_len);

    srv.mode = M_BIG;
    srv.big_len = 5u << 20;
    for (size_t i = 0; i < req_len; i++) {
        body[i] = (char)(i * 13 + 1);
    }
    request_wait("PUT", "/big", body, req_len, &res);
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_uint_eq(srv.body_len, req_len);
    ck_assert_int_eq(memcmp(srv.body, body, req_len), 0);
    ck_assert_uint_eq(res.body_len, srv.big_len);
    for (size_t i = 0; i < res.body_len; i++) {
        if (res.body[i] != (char)(i * 31 + 7)) {
            ck_abort_msg("response byte %zu differs", i);
        }
    }
    free(body);
    result_free(&res);
}
END_TEST

START_TEST(test_chunked)
{
    struct result res = {0};

    srv.mode = M_CHUNKED;
    request_wait("GET", "/c", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_int_eq(res.http_status, 200);
    ck_assert_str_eq(res.body, "hello, world!");
    ck_assert_str_eq(res.xtest, "chunked");
    result_free(&res);

    /* A chunked response leaves the connection reusable. */
    struct result res2 = {0};
    srv.mode = M_ECHO;
    request_wait("GET", "/again", NULL, 0, &res2);
    ck_assert_int_eq(res2.status, BL_OK);
    ck_assert_uint_eq(srv.accepted, 1);
    result_free(&res2);
}
END_TEST

START_TEST(test_body_until_eof)
{
    struct result res = {0};
    struct result res2 = {0};

    srv.mode = M_EOF;
    request_wait("GET", "/eof", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_str_eq(res.body, "until-eof body");
    /* That connection is gone: the next request opens another. */
    srv.mode = M_ECHO;
    request_wait("GET", "/next", NULL, 0, &res2);
    ck_assert_int_eq(res2.status, BL_OK);
    ck_assert_uint_eq(srv.accepted, 2);
    result_free(&res);
    result_free(&res2);
}
END_TEST

START_TEST(test_bind_source)
{
    struct result res = {0};
    struct result res2 = {0};
    struct result res3 = {0};

    /* Every address (and a bad argument) changes nothing: 127.0.0.1. */
    ck_assert_int_eq(bl_http_client_bind(client, "no-port"), BL_EBADREQ);
    ck_assert_int_eq(bl_http_client_bind(client, "0.0.0.0:8379"), BL_OK);
    srv.mode = M_EOF; /* each request on a connection of its own */
    request_wait("GET", "/any", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_str_eq(srv.peer_ip, "127.0.0.1");
    /* A specific IPv4 address: new connections leave from it. */
    ck_assert_int_eq(bl_http_client_bind(client, "127.0.0.2:8379"), BL_OK);
    request_wait("GET", "/bound", NULL, 0, &res2);
    ck_assert_int_eq(res2.status, BL_OK);
    ck_assert_str_eq(srv.peer_ip, "127.0.0.2");
    /* A keep-alive connection, bound the same way. */
    srv.mode = M_ECHO;
    request_wait("GET", "/again", NULL, 0, &res3);
    ck_assert_int_eq(res3.status, BL_OK);
    ck_assert_str_eq(srv.peer_ip, "127.0.0.2");
    ck_assert_uint_eq(srv.accepted, 3);
    result_free(&res);
    result_free(&res2);
    result_free(&res3);
}
END_TEST

START_TEST(test_split_and_interim)
{
    struct result res = {0};
    struct result res2 = {0};
    struct result res3 = {0};

    srv.mode = M_SPLIT_HEAD;
    request_wait("GET", "/split", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_str_eq(res.body, "GET /split 0:");
    ck_assert_str_eq(res.xtest, "yes");

    srv.mode = M_INTERIM;
    request_wait("GET", "/interim", NULL, 0, &res2);
    ck_assert_int_eq(res2.status, BL_OK);
    ck_assert_int_eq(res2.http_status, 200);
    ck_assert_str_eq(res2.body, "ok");

    /* HEAD: the Content-Length is there, the body is not. */
    srv.mode = M_ECHO;
    request_wait("HEAD", "/head", NULL, 0, &res3);
    ck_assert_int_eq(res3.status, BL_OK);
    ck_assert_uint_eq(res3.body_len, 0);
    ck_assert(res3.has_clen);
    result_free(&res3);
    memset(&res3, 0, sizeof res3);
    request_wait("GET", "/after-head", NULL, 0, &res3);
    ck_assert_str_eq(res3.body, "GET /after-head 0:");
    ck_assert_uint_eq(srv.accepted, 1);
    result_free(&res);
    result_free(&res2);
    result_free(&res3);
}
END_TEST

START_TEST(test_keep_alive_reuse)
{
    struct result second = {0};
    struct result first = {.chain = true, .next = &second};
    struct result third = {0};

    /* The second request is made from the first one's callback. */
    request_wait("GET", "/one", NULL, 0, &first);
    ck_assert_int_eq(first.status, BL_OK);
    ck_assert_int_eq(first.chain_rv, BL_OK);
    ck_assert(run_until(result_done, &second, 10000));
    ck_assert_int_eq(second.status, BL_OK);
    ck_assert_str_eq(second.body, "GET /chained 0:");
    request_wait("GET", "/three", NULL, 0, &third);
    ck_assert_int_eq(third.status, BL_OK);
    ck_assert_uint_eq(srv.requests, 3);
    ck_assert_uint_eq(srv.accepted, 1);
    result_free(&first);
    result_free(&second);
    result_free(&third);
}
END_TEST

START_TEST(test_server_closes_idle)
{
    struct result r1 = {0};
    struct result r2 = {0};
    struct result r3 = {0};
    unsigned zero = 0;

    request_wait("GET", "/1", NULL, 0, &r1);
    ck_assert_int_eq(r1.status, BL_OK);

    /* The server drops the pooled connection; the client has not seen it
     * yet (no loop turn) when the next request takes it from the pool. */
    tsrv_close_conns(&srv);
    request_wait("GET", "/2", NULL, 0, &r2);
    ck_assert_int_eq(r2.status, BL_OK);
    ck_assert_str_eq(r2.body, "GET /2 0:");
    ck_assert_uint_eq(srv.accepted, 2);

    /* Again, but this time the client notices the close while idle. */
    tsrv_close_conns(&srv);
    ck_assert(run_until(open_is, &zero, 5000));
    run_for(50);
    request_wait("GET", "/3", NULL, 0, &r3);
    ck_assert_int_eq(r3.status, BL_OK);
    ck_assert_uint_eq(srv.accepted, 3);
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
}
END_TEST

static bool all_done(const void *arg)
{
    const struct result *r = arg;
    for (int i = 0; i < 10; i++) {
        if (r[i].calls == 0) {
            return false;
        }
    }
    return true;
}

START_TEST(test_pool_limit)
{
    struct result res[10];
    unsigned eight = 8;
    unsigned ten = 10;

    bl_http_client_set_max_idle(client, 8); /* the default is 256: more than this test opens */
    srv.mode = M_SILENT;                    /* hold all ten requests until the server answers */
    memset(res, 0, sizeof res);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/p", 2, NULL, 0, NULL, 0,
                                                5000, on_result, &res[i]),
                         BL_OK);
    }
    ck_assert(run_until(requests_are, &ten, 5000));
    ck_assert_uint_eq(srv.accepted, 10);
    /* Now answer them all (the server echoes on request; replay by hand). */
    srv.mode = M_ECHO;
    for (struct tconn *t = srv.conns; t != NULL; t = t->next) {
        snprintf(srv.method, sizeof srv.method, "GET");
        srv.target_len = 2;
        memcpy(srv.target, "/p", 2);
        srv.body_len = 0;
        respond(t);
    }
    ck_assert(run_until(all_done, res, 10000));
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(res[i].status, BL_OK);
        result_free(&res[i]);
    }
    /* Only eight stay in the pool. */
    ck_assert(run_until(open_is, &eight, 5000));
    run_for(50);
    ck_assert_uint_eq(srv.open, 8);

    /* Ten more at once: eight pooled connections and two new ones. */
    memset(res, 0, sizeof res);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/q", 2, NULL, 0, NULL, 0,
                                                5000, on_result, &res[i]),
                         BL_OK);
    }
    ck_assert(run_until(all_done, res, 10000));
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(res[i].status, BL_OK);
        ck_assert_str_eq(res[i].body, "GET /q 0:");
        result_free(&res[i]);
    }
    ck_assert_uint_eq(srv.accepted, 12);
}
END_TEST

START_TEST(test_refused)
{
    struct result res = {0};
    struct tsrv gone;
    char d[64];

    /* A port that was free a moment ago: nobody listens there now. */
    ck_assert_int_eq(tsrv_start(&gone, "127.0.0.1", M_ECHO), 0);
    snprintf(d, sizeof d, "127.0.0.1:%d", gone.port);
    tsrv_stop(&gone);
    run_for(10);
    ck_assert_int_eq(
        bl_http_client_request(client, d, "GET", "/", 1, NULL, 0, NULL, 0, 5000, on_result, &res),
        BL_OK);
    ck_assert(run_until(result_done, &res, 10000));
    ck_assert_int_eq(res.status, BL_EUNAVAILABLE);
    run_for(20);
    ck_assert_int_eq(res.calls, 1);
}
END_TEST

START_TEST(test_deadline)
{
    struct result res = {0};
    uint64_t start;
    uint64_t ms;

    srv.mode = M_SILENT;
    start = uv_hrtime();
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/slow", 5, NULL, 0, NULL, 0, 300,
                                            on_result, &res),
                     BL_OK);
    ck_assert(run_until(result_done, &res, 10000));
    ms = (res.at - start) / 1000000;
    ck_assert_int_eq(res.status, BL_ETIMEOUT);
    ck_assert_uint_eq(srv.requests, 1);
    ck_assert_uint_ge(ms, 280);
    ck_assert_uint_lt(ms, 3000);
    run_for(20);
    ck_assert_int_eq(res.calls, 1);
}
END_TEST

START_TEST(test_close_mid_response)
{
    struct result res = {0};
    struct result res2 = {0};
    uint64_t start = uv_hrtime();

    srv.mode = M_CLOSE_MID;
    request_wait("GET", "/mid", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_ETIMEOUT);
    ck_assert_uint_lt((res.at - start) / 1000000, 4000); /* at the close, not the deadline */

    /* Closed after the request arrived, before any response byte. */
    srv.mode = M_CLOSE_NOW;
    request_wait("POST", "/now", "x", 1, &res2);
    ck_assert_int_eq(res2.status, BL_ETIMEOUT);
    ck_assert_uint_eq(srv.requests, 2);
}
END_TEST

START_TEST(test_limits)
{
    struct result res = {0};

    srv.mode = M_HUGE_DECL;
    request_wait("GET", "/huge", NULL, 0, &res);
    ck_assert_int_eq(res.status, BL_ETOOLARGE);
}
END_TEST

START_TEST(test_close_pending)
{
    struct result res = {.chain = true};
    struct result never_called = {0};
    unsigned one = 1;

    res.next = &never_called;
    srv.mode = M_SILENT;
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/pending", 8, NULL, 0, NULL, 0,
                                            5000, on_result, &res),
                     BL_OK);
    ck_assert(run_until(accepted_is, &one, 5000));
    bl_http_client_close(client);
    ck_assert_int_eq(res.calls, 1);
    ck_assert_int_eq(res.status, BL_ESHUTDOWN);
    ck_assert_int_eq(res.chain_rv, BL_ESHUTDOWN); /* a closing client takes no more */
    client = NULL;
    run_for(20);
    ck_assert_int_eq(res.calls, 1);
    ck_assert_int_eq(never_called.calls, 0);
}
END_TEST

START_TEST(test_close_resolving_and_connecting)
{
    struct result a = {0};
    struct result b = {0};
    char d[64];

    /* One request still resolving a name, one still connecting. */
    snprintf(d, sizeof d, "localhost:%d", srv.port);
    ck_assert_int_eq(
        bl_http_client_request(client, d, "GET", "/a", 2, NULL, 0, NULL, 0, 5000, on_result, &a),
        BL_OK);
    ck_assert_int_eq(
        bl_http_client_request(client, dest, "GET", "/b", 2, NULL, 0, NULL, 0, 5000, on_result, &b),
        BL_OK);
    bl_http_client_close(client);
    client = NULL;
    ck_assert_int_eq(a.status, BL_ESHUTDOWN);
    ck_assert_int_eq(b.status, BL_ESHUTDOWN);
    run_for(50);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
}
END_TEST

START_TEST(test_hostname_and_url_forms)
{
    struct result res = {0};
    struct result res2 = {0};
    char d[64];
    char want[80];

    snprintf(d, sizeof d, "localhost:%d", srv.port);
    ck_assert_int_eq(
        bl_http_client_request(client, d, "GET", "/h", 2, NULL, 0, NULL, 0, 5000, on_result, &res),
        BL_OK);
    ck_assert(run_until(result_done, &res, 10000));
    ck_assert_int_eq(res.status, BL_OK);
    snprintf(want, sizeof want, "Host: %s\n", d);
    ck_assert_ptr_nonnull(strstr(srv.headers, want));

    snprintf(d, sizeof d, "http://127.0.0.1:%d/", srv.port);
    ck_assert_int_eq(
        bl_http_client_request(client, d, "GET", "/u", 2, NULL, 0, NULL, 0, 5000, on_result, &res2),
        BL_OK);
    ck_assert(run_until(result_done, &res2, 10000));
    ck_assert_int_eq(res2.status, BL_OK);
    snprintf(want, sizeof want, "Host: %s\n", dest);
    ck_assert_ptr_nonnull(strstr(srv.headers, want));
    result_free(&res);
    result_free(&res2);
}
END_TEST

START_TEST(test_ipv6_literal)
{
    struct tsrv six;
    struct result res = {0};
    char d[64];

    if (tsrv_start(&six, "::1", M_ECHO) != 0) {
        run_for(10);
        return; /* no IPv6 loopback here */
    }
    snprintf(d, sizeof d, "[::1]:%d", six.port);
    ck_assert_int_eq(
        bl_http_client_request(client, d, "GET", "/6", 2, NULL, 0, NULL, 0, 5000, on_result, &res),
        BL_OK);
    ck_assert(run_until(result_done, &res, 10000));
    ck_assert_int_eq(res.status, BL_OK);
    ck_assert_str_eq(res.body, "GET /6 0:");
    ck_assert_uint_eq(six.accepted, 1);
    bl_http_client_close(client);
    client = NULL;
    tsrv_stop(&six);
    run_for(50);
    free(six.body);
    result_free(&res);
}
END_TEST

START_TEST(test_bad_arguments)
{
    static const char *const bad_dests[] = {
        "",        "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",  "127.0.0.1:65536", "::1:80",
        "[::1]80", "[::1:80",   "[zz]:80",    "host name:80", "127.0.0.1:8a",    "127.0.0.1:123456",
        ":80",
    };
    struct result res = {0};
    struct bl_http_header crlf = {"X-A", 3, "a\r\nb", 4};
    struct bl_http_header space = {"X A", 3, "a", 1};

    for (size_t i = 0; i < sizeof bad_dests / sizeof bad_dests[0]; i++) {
        ck_assert_msg(bl_http_client_request(client, bad_dests[i], "GET", "/", 1, NULL, 0, NULL, 0,
                                             5000, on_result, &res) == BL_EBADREQ,
                      "accepted \"%s\"", bad_dests[i]);
    }
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/", 1, &crlf, 1, NULL, 0, 5000,
                                            on_result, &res),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/", 1, &space, 1, NULL, 0, 5000,
                                            on_result, &res),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_http_client_request(client, dest, "GE T", "/", 1, NULL, 0, NULL, 0, 5000,
                                            on_result, &res),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/a b", 4, NULL, 0, NULL, 0, 5000,
                                            on_result, &res),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_http_client_request(client, dest, "GET", "/", 0, NULL, 0, NULL, 0, 5000,
                                            on_result, &res),
                     BL_EBADREQ);
    run_for(20);
    ck_assert_int_eq(res.calls, 0);
    ck_assert_uint_eq(srv.accepted, 0);
}
END_TEST

static Suite *http_client_suite(void)
{
    Suite *s = suite_create("http_client");
    TCase *tc = tcase_create("exchange");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_get);
    tcase_add_test(tc, test_put_body);
    tcase_add_test(tc, test_big_bodies);
    tcase_add_test(tc, test_chunked);
    tcase_add_test(tc, test_body_until_eof);
    tcase_add_test(tc, test_bind_source);
    tcase_add_test(tc, test_split_and_interim);
    tcase_add_test(tc, test_keep_alive_reuse);
    tcase_add_test(tc, test_server_closes_idle);
    tcase_add_test(tc, test_pool_limit);
    tcase_add_test(tc, test_hostname_and_url_forms);
    tcase_add_test(tc, test_ipv6_literal);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_deadline);
    tcase_add_test(tc, test_close_mid_response);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_close_pending);
    tcase_add_test(tc, test_close_resolving_and_connecting);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
    sr = srunner_create(http_client_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
