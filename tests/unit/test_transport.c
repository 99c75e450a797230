/* Tests for the peer transport (raft_glue/transport.c).
 *
 * Every test runs a real loop on loopback addresses: 127.0.0.1, and
 * 127.0.0.2 and .3 (Linux routes all of 127/8 to lo), so a hosts file can
 * move a name from one listener to another. Listeners bind port 0 and read
 * their port back with bl_transport_port; canonical/raft's own transport,
 * used to prove wire compatibility, gets a port found free by binding a
 * throwaway socket. Raw libuv clients and servers written here send what a
 * well-behaved peer would not. Every wait is bounded by a guard timer; the
 * teardown checks that the loop closes with nothing left open. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <raft.h>
#include <raft/uv.h>

#include "error.h"
#include "transport.h"

static uv_loop_t loop;
static uv_timer_t guard;
static bool guard_fired;
static char tmpdir[64];
static char hosts[128];

/* ---- loop helpers ------------------------------------------------------------ */

static void on_guard(uv_timer_t *t)
{
    (void)t;
    guard_fired = true;
}

/* Run the loop until @pred holds or @ms pass; returns whether it holds. */
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

static bool flag_set(const void *arg)
{
    return *(const bool *)arg;
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

static void write_hosts(const char *content)
{
    char tmp[160];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", hosts);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, hosts), 0);
}

/* A port nobody listens on right now (a throwaway socket bound to 0). */
static int free_port(const char *ip)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(uv_timer_init(&loop, &guard), 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bl-transport-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(hosts, sizeof hosts, "%s/hosts", tmpdir);
    unsetenv(BL_HOSTS_FILE_ENV);
}

static void count_open(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(h->type));
        (*(unsigned *)arg)++;
        uv_close(h, NULL);
    }
}

static void teardown(void)
{
    unsigned left = 0;
    uv_close((uv_handle_t *)&guard, NULL);
    /* Lookups cut loose may still be in the thread pool: let them report. */
    for (int i = 0; i < 2000 && uv_loop_alive(&loop); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    uv_walk(&loop, count_open, &left);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_uint_eq(left, 0);
    unlink(hosts);
    rmdir(tmpdir);
    unsetenv(BL_HOSTS_FILE_ENV);
}

/* ---- streams ----------------------------------------------------------------- */

struct reader {
    char buf[256];
    size_t len;
    bool eof;
};

static void reader_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct reader *r = h->data;
    (void)suggested;
    *buf = uv_buf_init(r->buf + r->len, (unsigned)(sizeof r->buf - r->len));
}

static void reader_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct reader *r = s->data;
    (void)buf;
    if (nread > 0) {
        r->len += (size_t)nread;
    } else if (nread < 0) {
        r->eof = true;
        uv_read_stop(s);
    }
}

struct expect_bytes {
    const struct reader *r;
    size_t len;
};

static bool reader_has(const void *arg)
{
    const struct expect_bytes *e = arg;
    return e->r->len >= e->len;
}

static bool reader_eof(const void *arg)
{
    return ((const struct reader *)arg)->eof;
}

static void stream_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* Close a stream that came from a transport (raft_malloc'd). */
static void stream_close(uv_stream_t *s)
{
    uv_close((uv_handle_t *)s, stream_free_cb);
}

/* Send @text on @from and check it arrives on @to. */
static void check_flow(uv_stream_t *from, uv_stream_t *to, const char *text)
{
    static uv_write_t w;
    struct reader r = {.len = 0};
    struct expect_bytes e = {&r, strlen(text)};
    uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));

    to->data = &r;
    ck_assert_int_eq(uv_read_start(to, reader_alloc, reader_read), 0);
    ck_assert_int_eq(uv_write(&w, from, &buf, 1, NULL), 0);
    ck_assert(run_until(reader_has, &e, 5000));
    ck_assert_uint_eq(r.len, strlen(text));
    ck_assert(memcmp(r.buf, text, r.len) == 0);
    uv_read_stop(to);
    to->data = NULL;
}

/* ---- transports -------------------------------------------------------------- */

#define MAX_ACCEPTED 4

struct node {
    struct raft_uv_transport t;
    bool ours; /* false: canonical/raft's raft_uv_tcp transport */
    unsigned accepted;
    raft_id last_id;
    char last_address[BL_TRANSPORT_MAX_ADDRESS + 1];
    uv_stream_t *streams[MAX_ACCEPTED]; /* accepted, kept open */
    unsigned n_streams;
    bool closed;
};

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    struct node *n = t->data;
    n->accepted++;
    n->last_id = id;
    snprintf(n->last_address, sizeof n->last_address, "%s", address);
    if (n->n_streams < MAX_ACCEPTED) {
        n->streams[n->n_streams++] = stream;
    } else {
        stream_close(stream);
    }
}

static void node_closed_cb(struct raft_uv_transport *t)
{
    ((struct node *)t->data)->closed = true;
}

/* Start one of our transports as server @id advertising @address. */
static void node_start(struct node *n, const struct bl_transport_opts *opts, raft_id id,
                       const char *address, bool listen)
{
    char errmsg[BL_ERRMSG_SIZE];
    memset(n, 0, sizeof *n);
    n->ours = true;
    ck_assert_int_eq(bl_transport_init(&n->t, &loop, opts, errmsg), 0);
    n->t.data = n;
    ck_assert_int_eq(n->t.init(&n->t, id, address), 0);
    if (listen) {
        ck_assert_msg(n->t.listen(&n->t, accept_cb) == 0, "listen: %s", n->t.errmsg);
    }
}

/* Start canonical/raft's own TCP transport, listening on @address. */
static void raft_node_start(struct node *n, raft_id id, const char *address)
{
    memset(n, 0, sizeof *n);
    ck_assert_int_eq(raft_uv_tcp_init(&n->t, &loop), 0);
    n->t.data = n;
    ck_assert_int_eq(n->t.init(&n->t, id, address), 0);
    ck_assert_int_eq(n->t.listen(&n->t, accept_cb), 0);
}

static void node_stop(struct node *n)
{
    for (unsigned i = 0; i < n->n_streams; i++) {
        stream_close(n->streams[i]);
    }
    n->n_streams = 0;
    n->t.close(&n->t, node_closed_cb);
    ck_assert(!n->closed); /* always asynchronous */
    ck_assert(run_until(flag_set, &n->closed, 5000));
    if (n->ours) {
        bl_transport_close(&n->t);
    } else {
        raft_uv_tcp_close(&n->t);
    }
}

static bool accepted_n(const void *arg)
{
    const struct node *n = arg;
    return n->accepted > 0;
}

struct conn_res {
    struct raft_uv_connect req;
    bool done;
    int status;
    uv_stream_t *stream;
    unsigned calls;
};

static void connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct conn_res *r = req->data;
    r->calls++;
    r->done = true;
    r->status = status;
    r->stream = stream;
}

/* Connect through @n to @address and wait for the outcome. */
static void connect_wait(struct node *n, const char *address, struct conn_res *r)
{
    memset(r, 0, sizeof *r);
    r->req.data = r;
    ck_assert_int_eq(n->t.connect(&n->t, &r->req, 99, address, connect_cb), 0);
    ck_assert(!r->done); /* never from within connect() */
    ck_assert(run_until(flag_set, &r->done, 10000));
}

static void conn_res_close(struct conn_res *r)
{
    if (r->stream != NULL) {
        stream_close(r->stream);
        r->stream = NULL;
    }
}

static void address_of(char *out, size_t len, const char *ip, int port)
{
    snprintf(out, len, "%s:%d", ip, port);
}

/* ---- raw peers --------------------------------------------------------------- */

/* A client that connects, writes some bytes and reads until EOF. */
struct raw_client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    unsigned char out[64];
    size_t out_len;
    struct reader in;
    bool closed;
};

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw_client *c = req->data;
    uv_buf_t buf = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    ck_assert_int_eq(status, 0);
    if (c->out_len > 0) {
        ck_assert_int_eq(uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, NULL), 0);
    }
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&c->tcp, reader_alloc, reader_read), 0);
}

static void raw_client_start(struct raw_client *c, const char *ip, int port)
{
    struct sockaddr_in sa;
    ck_assert_int_eq(uv_ip4_addr(ip, port, &sa), 0);
    ck_assert_int_eq(uv_tcp_init(&loop, &c->tcp), 0);
    c->tcp.data = &c->in;
    c->connect.data = c;
    ck_assert_int_eq(uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa, raw_connected),
                     0);
}

static void raw_closed(uv_handle_t *h)
{
    struct raw_client *c = (struct raw_client *)h;
    c->closed = true;
}

static void raw_client_stop(struct raw_client *c)
{
    uv_close((uv_handle_t *)&c->tcp, raw_closed);
    ck_assert(run_until(flag_set, &c->closed, 5000));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* A server that accepts connections and never says a word. */
struct silent_server {
    uv_tcp_t listener;
    uv_tcp_t conns[4];
    unsigned n;
    unsigned closing;
};

static void silent_accept(uv_stream_t *l, int status)
{
    struct silent_server *s = l->data;
    ck_assert_int_eq(status, 0);
    ck_assert_uint_lt(s->n, 4);
    uv_tcp_init(&loop, &s->conns[s->n]);
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&s->conns[s->n]), 0);
    s->n++;
}

static int silent_start(struct silent_server *s, const char *ip)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(uv_ip4_addr(ip, 0, &sa), 0);
    uv_tcp_init(&loop, &s->listener);
    s->listener.data = s;
    ck_assert_int_eq(uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&s->listener, 8, silent_accept), 0);
    ck_assert_int_eq(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void silent_closed(uv_handle_t *h)
{
    struct silent_server *s = h->data;
    s->closing--;
}

static bool silent_done(const void *arg)
{
    return ((const struct silent_server *)arg)->closing == 0;
}

static void silent_stop(struct silent_server *s)
{
    s->closing = s->n + 1;
    for (unsigned i = 0; i < s->n; i++) {
        s->conns[i].data = s;
        uv_close((uv_handle_t *)&s->conns[i], silent_closed);
    }
    uv_close((uv_handle_t *)&s->listener, silent_closed);
    ck_assert(run_until(silent_done, s, 5000));
}

/* ---- probes ------------------------------------------------------------------ */

struct probe_res {
    bool done;
    unsigned calls;
    int status;
    char reply[256];
    size_t reply_len;
};

static void probe_cb(void *arg, int status, const void *reply, size_t reply_len)
{
    struct probe_res *r = arg;
    r->calls++;
    r->done = true;
    r->status = status;
    r->reply_len = reply_len;
    if (reply_len > 0) {
        memcpy(r->reply, reply, reply_len < sizeof r->reply ? reply_len : sizeof r->reply);
    }
}

/* Echo handler: "re:" + request; "no" is declined; "big" gets a 64 KiB reply. */
static int echo_handler(void *arg, const void *req, size_t len, void **reply, size_t *reply_len)
{
    unsigned *calls = arg;
    (*calls)++;
    if (len == 2 && memcmp(req, "no", 2) == 0) {
        return -1;
    }
    if (len == 3 && memcmp(req, "big", 3) == 0) {
        *reply = calloc(1, BL_PROBE_MAX);
        *reply_len = BL_PROBE_MAX;
        return *reply != NULL ? 0 : -1;
    }
    *reply = malloc(len + 3);
    memcpy(*reply, "re:", 3);
    memcpy((char *)*reply + 3, req, len);
    *reply_len = len + 3;
    return 0;
}

static void probe_wait(const char *address, const char *bind, const char *req, unsigned ms,
                       struct probe_res *r)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(bl_transport_probe(&loop, address, bind, req, strlen(req), ms, probe_cb, r),
                     0);
    ck_assert(!r->done);
    ck_assert(run_until(flag_set, &r->done, ms + 5000));
    run_for(10);
    ck_assert_uint_eq(r->calls, 1);
}

/* ---- tests ------------------------------------------------------------------- */

START_TEST(test_handshake_roundtrip)
{
    struct bl_transport_opts so = {.bind_address = "127.0.0.1:0"};
    struct node srv, cli;
    struct conn_res r;
    char addr[64];

    node_start(&srv, &so, 1, "127.0.0.1:1", true);
    node_start(&cli, NULL, 2, "member-two.test:8380", false);
    address_of(addr, sizeof addr, "127.0.0.1", bl_transport_port(&srv.t));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(r.stream);
    ck_assert(run_until(accepted_n, &srv, 5000));
    ck_assert_uint_eq(srv.accepted, 1);
    ck_assert_uint_eq(srv.last_id, 2);
    ck_assert_str_eq(srv.last_address, "member-two.test:8380");
    check_flow(r.stream, srv.streams[0], "hello from the connecting side");
    check_flow(srv.streams[0], r.stream, "and back from the accepting side");
    ck_assert_uint_eq(r.calls, 1);
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&srv);
}
END_TEST

START_TEST(test_source_address)
{
    struct bl_transport_opts so = {.bind_address = "127.0.0.2:0"};
    struct node srv, cli;
    struct conn_res r;
    struct sockaddr_storage peer;
    int len = sizeof peer;
    char addr[64], ip[64];

    node_start(&srv, &so, 1, "127.0.0.2:1", true);
    /* The client's own address is a specific IP: it connects from there. */
    node_start(&cli, NULL, 3, "127.0.0.3:8380", false);
    address_of(addr, sizeof addr, "127.0.0.2", bl_transport_port(&srv.t));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &srv, 5000));
    ck_assert_int_eq(uv_tcp_getpeername((uv_tcp_t *)srv.streams[0], (struct sockaddr *)&peer, &len),
                     0);
    uv_ip4_name((struct sockaddr_in *)&peer, ip, sizeof ip);
    ck_assert_str_eq(ip, "127.0.0.3");
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&srv);

    /* A 0.0.0.0 bind address leaves the source to the kernel. */
    so.bind_address = "127.0.0.2:0";
    node_start(&srv, &so, 1, "127.0.0.2:1", true);
    struct bl_transport_opts co = {.bind_address = "0.0.0.0:8380"};
    node_start(&cli, &co, 3, "127.0.0.3:8380", false);
    address_of(addr, sizeof addr, "127.0.0.2", bl_transport_port(&srv.t));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &srv, 5000));
    len = sizeof peer;
    ck_assert_int_eq(uv_tcp_getpeername((uv_tcp_t *)srv.streams[0], (struct sockaddr *)&peer, &len),
                     0);
    uv_ip4_name((struct sockaddr_in *)&peer, ip, sizeof ip);
    ck_assert_str_ne(ip, "127.0.0.3");
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&srv);
}
END_TEST

START_TEST(test_hosts_file_no_caching)
{
    struct bl_transport_opts a_opts = {.bind_address = "127.0.0.2:0"};
    struct bl_transport_opts c_opts = {.hosts_file = hosts};
    struct node a, b, cli;
    struct conn_res r;
    char addr[64], bind_b[64], ip[64];
    int port;

    node_start(&a, &a_opts, 1, "peer-a.test:1", true);
    port = bl_transport_port(&a.t);
    write_hosts("# test hosts\n127.0.0.9 other.test\n\n127.0.0.2   peer-a.test  peer-a # old\n");
    ck_assert_int_eq(bl_transport_resolve(hosts, "PEER-A.test", ip, sizeof ip), 0);
    ck_assert_str_eq(ip, "127.0.0.2");

    node_start(&cli, &c_opts, 5, "127.0.0.1:8380", false);
    address_of(addr, sizeof addr, "peer-a.test", port);
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &a, 5000));
    ck_assert_uint_eq(a.last_id, 5);
    conn_res_close(&r);

    /* The name moves to 127.0.0.3, where a new listener waits on the same
     * port; the old one stays up, so reaching it would show a cached IP. */
    address_of(bind_b, sizeof bind_b, "127.0.0.3", port);
    struct bl_transport_opts b_opts = {.bind_address = bind_b};
    node_start(&b, &b_opts, 2, "peer-a.test:1", true);
    write_hosts("127.0.0.3 peer-a.test\n");
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &b, 5000));
    ck_assert_uint_eq(b.accepted, 1);
    ck_assert_uint_eq(a.accepted, 1);
    conn_res_close(&r);

    /* And back: every attempt reads the file afresh. */
    write_hosts("127.0.0.2 peer-a.test\n");
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    run_for(50);
    ck_assert_uint_eq(a.accepted, 2);
    ck_assert_uint_eq(b.accepted, 1);
    conn_res_close(&r);

    node_stop(&cli);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

START_TEST(test_hosts_file_from_env)
{
    struct bl_transport_opts so = {.bind_address = "127.0.0.2:0"};
    struct node srv, cli;
    struct conn_res r;
    char addr[64];

    node_start(&srv, &so, 1, "127.0.0.2:1", true);
    write_hosts("127.0.0.2 env-peer.test\n");
    setenv(BL_HOSTS_FILE_ENV, hosts, 1);
    node_start(&cli, NULL, 5, "127.0.0.1:8380", false);
    address_of(addr, sizeof addr, "env-peer.test", bl_transport_port(&srv.t));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&srv);
}
END_TEST

START_TEST(test_refused)
{
    struct node cli;
    struct conn_res r;
    char addr[64];

    node_start(&cli, NULL, 2, "127.0.0.1:8380", false);
    address_of(addr, sizeof addr, "127.0.0.1", free_port("127.0.0.1"));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, RAFT_NOCONNECTION);
    ck_assert_ptr_null(r.stream);
    ck_assert_uint_eq(r.calls, 1);
    node_stop(&cli);
}
END_TEST

START_TEST(test_unknown_name)
{
    struct bl_transport_opts co = {.hosts_file = hosts};
    struct node cli;
    struct conn_res r;

    write_hosts("127.0.0.2 someone-else.test\n");
    node_start(&cli, &co, 2, "127.0.0.1:8380", false);
    connect_wait(&cli, "no-such-peer.invalid:8380", &r);
    ck_assert_int_eq(r.status, RAFT_NOCONNECTION);
    ck_assert_uint_eq(r.calls, 1);
    /* Retries log nothing new; a bad address fails at once, without a callback. */
    connect_wait(&cli, "no-such-peer.invalid:8380", &r);
    ck_assert_int_eq(r.status, RAFT_NOCONNECTION);
    memset(&r, 0, sizeof r);
    r.req.data = &r;
    ck_assert_int_eq(cli.t.connect(&cli.t, &r.req, 3, "no-port", connect_cb), RAFT_NOCONNECTION);
    ck_assert_int_eq(cli.t.connect(&cli.t, &r.req, 3, "::1:80", connect_cb), RAFT_NOCONNECTION);
    run_for(20);
    ck_assert_uint_eq(r.calls, 0);
    node_stop(&cli);
}
END_TEST

START_TEST(test_connect_timeout)
{
    struct bl_transport_opts co = {.connect_timeout_ms = 200};
    struct node cli;
    struct conn_res r[16];
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    unsigned failed = 0;
    char addr[64];
    uint64_t start;
    int fd;

    /* A socket listening with backlog 0 that nobody accepts from: once its
     * queue is full the kernel drops further SYNs and those connects stay
     * pending; the deadline ends them, not the kernel's SYN retries. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 0), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    address_of(addr, sizeof addr, "127.0.0.1", ntohs(sa.sin_port));

    node_start(&cli, &co, 2, "127.0.0.1:8380", false);
    uv_update_time(&loop);
    start = uv_now(&loop);
    for (int i = 0; i < 16; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].req.data = &r[i];
        ck_assert_int_eq(cli.t.connect(&cli.t, &r[i].req, 9, addr, connect_cb), 0);
    }
    for (int i = 0; i < 16; i++) {
        ck_assert(run_until(flag_set, &r[i].done, 5000));
        ck_assert_uint_eq(r[i].calls, 1);
        if (r[i].status == 0) {
            conn_res_close(&r[i]);
        } else {
            ck_assert_int_eq(r[i].status, RAFT_NOCONNECTION);
            failed++;
        }
    }
    uv_update_time(&loop);
    ck_assert_uint_gt(failed, 0);
    ck_assert_uint_ge(uv_now(&loop) - start, 190); /* timed out, not refused */
    ck_assert_uint_lt(uv_now(&loop) - start, 2000);
    node_stop(&cli);
    close(fd);
}
END_TEST

START_TEST(test_close_cancels_pending)
{
    struct bl_transport_opts so = {.bind_address = "127.0.0.1:0"};
    struct node srv, cli;
    struct conn_res r1, r2, r3;
    char addr[64], named[64];

    node_start(&srv, &so, 1, "127.0.0.1:1", true);
    node_start(&cli, NULL, 2, "127.0.0.1:8380", false);
    address_of(addr, sizeof addr, "127.0.0.1", bl_transport_port(&srv.t));
    /* "localhost" is in no hosts file of ours: getaddrinfo is in flight. */
    address_of(named, sizeof named, "localhost", bl_transport_port(&srv.t));
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    memset(&r3, 0, sizeof r3);
    r1.req.data = &r1;
    r2.req.data = &r2;
    r3.req.data = &r3;
    ck_assert_int_eq(cli.t.connect(&cli.t, &r1.req, 1, addr, connect_cb), 0);
    ck_assert_int_eq(cli.t.connect(&cli.t, &r2.req, 1, named, connect_cb), 0);
    cli.t.close(&cli.t, node_closed_cb);
    ck_assert(!r1.done && !r2.done && !cli.closed);
    /* No new attempts once closing. */
    ck_assert_int_eq(cli.t.connect(&cli.t, &r3.req, 1, addr, connect_cb), RAFT_CANCELED);
    ck_assert(run_until(flag_set, &cli.closed, 5000));
    /* Raft's callbacks come before the transport's close callback. */
    ck_assert(r1.done && r2.done);
    ck_assert_int_eq(r1.status, RAFT_CANCELED);
    ck_assert_int_eq(r2.status, RAFT_CANCELED);
    ck_assert_uint_eq(r1.calls + r2.calls, 2);
    ck_assert(!r3.done);
    bl_transport_close(&cli.t);
    bl_transport_close(&cli.t); /* released already: a no-op */
    run_for(50);
    ck_assert_uint_eq(srv.accepted, 0);
    node_stop(&srv);
}
END_TEST

START_TEST(test_close_unused)
{
    struct node n;
    char errmsg[BL_ERRMSG_SIZE];

    /* Closed without listening or connecting: still asynchronous. */
    node_start(&n, NULL, 1, "127.0.0.1:8380", false);
    node_stop(&n);
    /* Never given to raft at all. */
    ck_assert_int_eq(bl_transport_init(&n.t, &loop, NULL, errmsg), 0);
    bl_transport_close(&n.t);
}
END_TEST

START_TEST(test_bad_handshakes)
{
    struct bl_transport_opts so = {.bind_address = "127.0.0.1:0", .handshake_timeout_ms = 300};
    struct raw_client huge, zero_id, garbage, silent, probe_no_handler;
    struct node srv;
    int port;

    node_start(&srv, &so, 1, "127.0.0.1:1", true);
    port = bl_transport_port(&srv.t);

    /* An address length of 1 TiB: rejected before any allocation (under
     * ASan an attempt to allocate it would abort the test). */
    memset(&huge, 0, sizeof huge);
    put64(huge.out, 1);
    put64(huge.out + 8, 5);
    put64(huge.out + 16, (uint64_t)1 << 40);
    huge.out_len = 24;
    raw_client_start(&huge, "127.0.0.1", port);

    memset(&zero_id, 0, sizeof zero_id);
    put64(zero_id.out, 1);
    put64(zero_id.out + 8, 0);
    put64(zero_id.out + 16, 16);
    memcpy(zero_id.out + 24, "127.0.0.1:9000\0\0", 16);
    zero_id.out_len = 40;
    raw_client_start(&zero_id, "127.0.0.1", port);

    memset(&garbage, 0, sizeof garbage);
    memcpy(garbage.out, "GET / HTTP/1.1\r\n\r\n", 18);
    garbage.out_len = 18;
    raw_client_start(&garbage, "127.0.0.1", port);

    memset(&probe_no_handler, 0, sizeof probe_no_handler);
    memcpy(probe_no_handler.out, "BLPROBE1", 8);
    put64(probe_no_handler.out + 8, 2);
    memcpy(probe_no_handler.out + 16, "hi", 2);
    probe_no_handler.out_len = 18;
    raw_client_start(&probe_no_handler, "127.0.0.1", port);

    ck_assert(run_until(reader_eof, &huge.in, 2000));
    ck_assert(run_until(reader_eof, &zero_id.in, 2000));
    ck_assert(run_until(reader_eof, &garbage.in, 2000));
    ck_assert(run_until(reader_eof, &probe_no_handler.in, 2000));
    ck_assert_uint_eq(huge.in.len + zero_id.in.len + garbage.in.len + probe_no_handler.in.len, 0);

    /* Half a handshake, then silence: closed at the handshake deadline. */
    memset(&silent, 0, sizeof silent);
    put64(silent.out, 1);
    put64(silent.out + 8, 5);
    silent.out_len = 12;
    raw_client_start(&silent, "127.0.0.1", port);
    run_for(100);
    ck_assert(!silent.in.eof);
    ck_assert(run_until(reader_eof, &silent.in, 2000));

    ck_assert_uint_eq(srv.accepted, 0);
    raw_client_stop(&huge);
    raw_client_stop(&zero_id);
    raw_client_stop(&garbage);
    raw_client_stop(&probe_no_handler);
    raw_client_stop(&silent);
    node_stop(&srv);
}
END_TEST

START_TEST(test_handshake_split_and_followed)
{
    /* A handshake arriving byte by byte, immediately followed by data that
     * belongs to raft: none of it may be swallowed. */
    struct bl_transport_opts so = {.bind_address = "127.0.0.1:0"};
    struct raw_client c;
    struct node srv;
    struct reader r = {.len = 0};
    struct expect_bytes e = {&r, 6};
    static uv_write_t w[48];

    node_start(&srv, &so, 1, "127.0.0.1:1", true);
    memset(&c, 0, sizeof c);
    raw_client_start(&c, "127.0.0.1", bl_transport_port(&srv.t));
    run_for(30);
    unsigned char hs[40 + 6];
    put64(hs, 1);
    put64(hs + 8, 42);
    put64(hs + 16, 16);
    memcpy(hs + 24, "web-1.svc:8380\0\0", 16);
    memcpy(hs + 40, "RAFT!!", 6);
    for (int i = 0; i < 40; i++) {
        uv_buf_t b = uv_buf_init((char *)hs + i, 1);
        ck_assert_int_eq(uv_write(&w[i], (uv_stream_t *)&c.tcp, &b, 1, NULL), 0);
        if (i % 8 == 0) {
            run_for(2);
        }
    }
    uv_buf_t rest = uv_buf_init((char *)hs + 40, 6);
    ck_assert_int_eq(uv_write(&w[40], (uv_stream_t *)&c.tcp, &rest, 1, NULL), 0);
    ck_assert(run_until(accepted_n, &srv, 5000));
    ck_assert_uint_eq(srv.last_id, 42);
    ck_assert_str_eq(srv.last_address, "web-1.svc:8380");
    srv.streams[0]->data = &r;
    ck_assert_int_eq(uv_read_start(srv.streams[0], reader_alloc, reader_read), 0);
    ck_assert(run_until(reader_has, &e, 5000));
    ck_assert(memcmp(r.buf, "RAFT!!", 6) == 0);
    uv_read_stop(srv.streams[0]);
    raw_client_stop(&c);
    node_stop(&srv);
}
END_TEST

START_TEST(test_probe_roundtrip)
{
    unsigned calls = 0;
    struct bl_transport_opts so = {
        .bind_address = "127.0.0.2:0", .probe_cb = echo_handler, .probe_arg = &calls};
    struct node srv;
    struct probe_res r;
    char addr[64];
    int port;

    node_start(&srv, &so, 1, "127.0.0.2:1", true);
    port = bl_transport_port(&srv.t);
    address_of(addr, sizeof addr, "127.0.0.2", port);
    probe_wait(addr, NULL, "cluster?", 2000, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.reply_len, 11);
    ck_assert(memcmp(r.reply, "re:cluster?", 11) == 0);

    /* An empty request, and the largest reply. */
    probe_wait(addr, "127.0.0.3", "", 2000, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.reply_len, 3);
    probe_wait(addr, NULL, "big", 2000, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.reply_len, BL_PROBE_MAX);

    /* Through a name in the hosts file named by the environment. */
    write_hosts("127.0.0.2 probe-peer.test\n");
    setenv(BL_HOSTS_FILE_ENV, hosts, 1);
    address_of(addr, sizeof addr, "probe-peer.test", port);
    probe_wait(addr, NULL, "by name", 2000, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(memcmp(r.reply, "re:by name", 10) == 0);

    /* The handler declines: closed without a reply. */
    probe_wait(addr, NULL, "no", 2000, &r);
    ck_assert_int_eq(r.status, BL_EUNAVAILABLE);
    ck_assert_uint_eq(r.reply_len, 0);
    ck_assert_uint_eq(calls, 5);
    ck_assert_uint_eq(srv.accepted, 0);
    node_stop(&srv);
}
END_TEST

START_TEST(test_probe_failures)
{
    struct silent_server s;
    struct probe_res r;
    char addr[64];
    uint64_t start;
    char big[BL_PROBE_MAX + 1];

    /* Nobody listening. */
    address_of(addr, sizeof addr, "127.0.0.1", free_port("127.0.0.1"));
    probe_wait(addr, NULL, "x", 2000, &r);
    ck_assert_int_eq(r.status, BL_EUNAVAILABLE);

    /* A name nobody knows. */
    probe_wait("no-such-peer.invalid:8380", NULL, "x", 2000, &r);
    ck_assert_int_eq(r.status, BL_EUNAVAILABLE);

    /* A listener that never answers: the timeout ends it. */
    address_of(addr, sizeof addr, "127.0.0.1", silent_start(&s, "127.0.0.1"));
    uv_update_time(&loop);
    start = uv_now(&loop);
    probe_wait(addr, NULL, "x", 300, &r);
    ck_assert_int_eq(r.status, BL_ETIMEOUT);
    uv_update_time(&loop);
    ck_assert_uint_ge(uv_now(&loop) - start, 290);
    ck_assert_uint_lt(uv_now(&loop) - start, 2000);
    silent_stop(&s);

    /* Refused at the call: no callback. */
    memset(&r, 0, sizeof r);
    memset(big, 'x', sizeof big);
    ck_assert_int_eq(bl_transport_probe(&loop, "no-port", NULL, "x", 1, 100, probe_cb, &r),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_transport_probe(&loop, addr, "not-an-ip", "x", 1, 100, probe_cb, &r),
                     BL_EBADREQ);
    ck_assert_int_eq(bl_transport_probe(&loop, addr, NULL, "x", 1, 100, NULL, &r), BL_EBADREQ);
    ck_assert_int_eq(bl_transport_probe(&loop, addr, NULL, big, sizeof big, 100, probe_cb, &r),
                     BL_ETOOLARGE);
    run_for(20);
    ck_assert_uint_eq(r.calls, 0);
}
END_TEST

START_TEST(test_interop_raft_listens)
{
    /* Ours connects to canonical/raft 0.15's own listener. */
    struct node rn, cli;
    struct conn_res r;
    char addr[64];

    address_of(addr, sizeof addr, "127.0.0.1", free_port("127.0.0.1"));
    raft_node_start(&rn, 7, addr);
    node_start(&cli, NULL, 2, "web-2.svc.cluster.local:8380", false);
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &rn, 5000));
    ck_assert_uint_eq(rn.last_id, 2);
    ck_assert_str_eq(rn.last_address, "web-2.svc.cluster.local:8380");
    check_flow(r.stream, rn.streams[0], "raft bytes");
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&rn);
}
END_TEST

START_TEST(test_interop_raft_connects)
{
    /* canonical/raft 0.15's own transport connects to our listener. */
    struct bl_transport_opts so = {.bind_address = "127.0.0.1:0"};
    struct node rn, srv;
    struct conn_res r;
    char addr[64], raddr[64];

    node_start(&srv, &so, 1, "127.0.0.1:1", true);
    address_of(addr, sizeof addr, "127.0.0.1", bl_transport_port(&srv.t));
    address_of(raddr, sizeof raddr, "127.0.0.1", free_port("127.0.0.1"));
    raft_node_start(&rn, 7, raddr);
    connect_wait(&rn, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &srv, 5000));
    ck_assert_uint_eq(srv.last_id, 7);
    ck_assert_str_eq(srv.last_address, raddr);
    check_flow(r.stream, srv.streams[0], "raft bytes");
    conn_res_close(&r);
    node_stop(&rn);
    node_stop(&srv);
}
END_TEST

START_TEST(test_ipv6)
{
    struct bl_transport_opts so = {.bind_address = "[::1]:0"};
    struct node srv, cli;
    struct conn_res r;
    char errmsg[BL_ERRMSG_SIZE], addr[64], ip[64];

    memset(&srv, 0, sizeof srv);
    srv.ours = true;
    ck_assert_int_eq(bl_transport_init(&srv.t, &loop, &so, errmsg), 0);
    srv.t.data = &srv;
    ck_assert_int_eq(srv.t.init(&srv.t, 1, "[::1]:1"), 0);
    if (srv.t.listen(&srv.t, accept_cb) != 0) {
        fprintf(stderr, "test_ipv6: no IPv6 loopback here (%s), skipped\n", srv.t.errmsg);
        node_stop(&srv);
        return;
    }
    node_start(&cli, NULL, 2, "[::1]:8380", false);
    snprintf(addr, sizeof addr, "[::1]:%d", bl_transport_port(&srv.t));
    connect_wait(&cli, addr, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(run_until(accepted_n, &srv, 5000));
    ck_assert_str_eq(srv.last_address, "[::1]:8380");
    conn_res_close(&r);
    node_stop(&cli);
    node_stop(&srv);
    ck_assert_int_eq(bl_transport_resolve(NULL, "::1", ip, sizeof ip), 0);
    ck_assert_str_eq(ip, "::1");
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct raft_uv_transport t;
    struct bl_transport_opts o = {.bind_address = "127.0.0.1"};
    char errmsg[BL_ERRMSG_SIZE], ip[64], long_address[600];

    ck_assert_int_eq(bl_transport_init(&t, &loop, &o, errmsg), BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(errmsg, "127.0.0.1"));
    o.bind_address = "127.0.0.1:65536";
    ck_assert_int_eq(bl_transport_init(&t, &loop, &o, errmsg), BL_EBADREQ);
    o.bind_address = "[not-v6]:80";
    ck_assert_int_eq(bl_transport_init(&t, &loop, &o, errmsg), BL_EBADREQ);

    /* Our own address must fit a handshake. */
    ck_assert_int_eq(bl_transport_init(&t, &loop, NULL, errmsg), 0);
    memset(long_address, 'a', sizeof long_address);
    memcpy(long_address + sizeof long_address - 6, ":8380", 6);
    ck_assert_int_eq(t.init(&t, 1, long_address), RAFT_NAMETOOLONG);
    bl_transport_close(&t);
    ck_assert_int_eq(bl_transport_port(&t), BL_EBADREQ);

    ck_assert_int_eq(bl_transport_resolve(NULL, "127.0.0.7", ip, sizeof ip), 0);
    ck_assert_str_eq(ip, "127.0.0.7");
    ck_assert_int_eq(bl_transport_resolve(hosts, "nowhere.invalid", ip, sizeof ip), BL_ENOTFOUND);
    ck_assert_int_eq(bl_transport_resolve(NULL, "", ip, sizeof ip), BL_EBADREQ);
    ck_assert_int_eq(bl_transport_resolve(NULL, "127.0.0.7", ip, 4), BL_EBADREQ);
}
END_TEST

/* ---- a Raft cluster over the transport ---------------------------------------- */

struct rnode {
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport t;
    struct raft_fsm fsm;
    raft_id id;
    char dir[128];
    char address[64];
    bool running;
    bool closed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    *bufs = raft_malloc(sizeof **bufs);
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_calloc(1, 8);
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    raft_free(buf->base);
    return 0;
}

static void rnode_start(struct rnode *n, const struct raft_configuration *bootstrap)
{
    struct bl_transport_opts o = {.hosts_file = hosts};
    char errmsg[BL_ERRMSG_SIZE];

    n->closed = false;
    n->fsm = (struct raft_fsm){
        .version = 1, .apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
    ck_assert_int_eq(bl_transport_init(&n->t, &loop, &o, errmsg), 0);
    ck_assert_int_eq(raft_uv_init(&n->io, &loop, n->dir, &n->t), 0);
    raft_uv_set_connect_retry_delay(&n->io, 100);
    ck_assert_int_eq(raft_init(&n->raft, &n->io, &n->fsm, n->id, n->address), 0);
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 400);
    raft_set_heartbeat_timeout(&n->raft, 50);
    raft_set_pre_vote(&n->raft, true);
    if (bootstrap != NULL) {
        ck_assert_int_eq(raft_bootstrap(&n->raft, bootstrap), 0);
    }
    ck_assert_msg(raft_start(&n->raft) == 0, "raft_start: %s", raft_errmsg(&n->raft));
    n->running = true;
}

static void rnode_closed_cb(struct raft *r)
{
    struct rnode *n = r->data;
    /* member.c's order: raft's I/O, then the transport. */
    raft_uv_close(&n->io);
    bl_transport_close(&n->t);
    n->closed = true;
}

static void rnode_stop(struct rnode *n)
{
    if (!n->running) {
        return;
    }
    raft_close(&n->raft, rnode_closed_cb);
    ck_assert(run_until(flag_set, &n->closed, 10000));
    n->running = false;
}

struct cluster {
    struct rnode nodes[3];
    raft_index want; /* every running node has applied this index */
};

static bool one_leader(const void *arg)
{
    const struct cluster *c = arg;
    unsigned leaders = 0;
    for (int i = 0; i < 3; i++) {
        leaders +=
            c->nodes[i].running && raft_state((struct raft *)&c->nodes[i].raft) == RAFT_LEADER;
    }
    return leaders == 1;
}

static bool all_applied(const void *arg)
{
    const struct cluster *c = arg;
    for (int i = 0; i < 3; i++) {
        if (c->nodes[i].running && raft_last_applied((struct raft *)&c->nodes[i].raft) < c->want) {
            return false;
        }
    }
    return true;
}

static struct rnode *leader_of(struct cluster *c)
{
    for (int i = 0; i < 3; i++) {
        if (c->nodes[i].running && raft_state(&c->nodes[i].raft) == RAFT_LEADER) {
            return &c->nodes[i];
        }
    }
    return NULL;
}

static void applied_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    ck_assert_int_eq(status, 0);
    free(req);
}

static void cluster_apply(struct cluster *c)
{
    struct rnode *l = leader_of(c);
    struct raft_apply *req = malloc(sizeof *req);
    struct raft_buffer buf = {.base = raft_calloc(1, 8), .len = 8};
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(raft_apply(&l->raft, req, &buf, 1, applied_cb), 0);
    c->want = raft_last_index(&l->raft);
    ck_assert(run_until(all_applied, c, 10000));
}

START_TEST(test_raft_cluster_by_name)
{
    /* Three raft_uv members on 127.0.0.1-3 know each other only by name;
     * then member 3 "moves" to 127.0.0.4, as a rescheduled pod would, and
     * the others find it there. */
    static struct cluster c;
    struct raft_configuration conf;
    char text[256], ip[16];
    int ports[3];

    memset(&c, 0, sizeof c);
    raft_configuration_init(&conf);
    for (int i = 0; i < 3; i++) {
        struct rnode *n = &c.nodes[i];
        snprintf(ip, sizeof ip, "127.0.0.%d", i + 1);
        ports[i] = free_port(ip);
        n->id = (raft_id)(i + 1);
        snprintf(n->address, sizeof n->address, "n%d.test:%d", i + 1, ports[i]);
        snprintf(n->dir, sizeof n->dir, "%s/n%d", tmpdir, i + 1);
        ck_assert_int_eq(mkdir(n->dir, 0700), 0);
        ck_assert_int_eq(raft_configuration_add(&conf, n->id, n->address, RAFT_VOTER), 0);
    }
    write_hosts("127.0.0.1 n1.test\n127.0.0.2 n2.test\n127.0.0.3 n3.test\n");
    for (int i = 0; i < 3; i++) {
        rnode_start(&c.nodes[i], &conf);
    }
    raft_configuration_close(&conf);
    ck_assert(run_until(one_leader, &c, 15000));
    cluster_apply(&c);

    /* Move a follower: with pre-vote on, it cannot take over, so what it
     * applies next came over the leader's new connection to it. */
    struct rnode *leader = leader_of(&c), *moved = NULL;
    for (int i = 0; i < 3 && moved == NULL; i++) {
        if (&c.nodes[i] != leader) {
            moved = &c.nodes[i];
        }
    }
    rnode_stop(moved);
    text[0] = '\0';
    for (int i = 0; i < 3; i++) {
        char line[64];
        snprintf(line, sizeof line, "127.0.0.%d n%d.test\n", &c.nodes[i] == moved ? 4 : i + 1,
                 i + 1);
        strcat(text, line);
    }
    write_hosts(text);
    rnode_start(moved, NULL);
    cluster_apply(&c);
    cluster_apply(&c);
    ck_assert_ptr_eq(leader_of(&c), leader);

    for (int i = 0; i < 3; i++) {
        rnode_stop(&c.nodes[i]);
    }
    for (int i = 0; i < 3; i++) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.nodes[i].dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

static Suite *transport_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase_create("raft");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_handshake_roundtrip);
    tcase_add_test(tc, test_source_address);
    tcase_add_test(tc, test_hosts_file_no_caching);
    tcase_add_test(tc, test_hosts_file_from_env);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_unknown_name);
    tcase_add_test(tc, test_connect_timeout);
    tcase_add_test(tc, test_close_cancels_pending);
    tcase_add_test(tc, test_close_unused);
    tcase_add_test(tc, test_bad_handshakes);
    tcase_add_test(tc, test_handshake_split_and_followed);
    tcase_add_test(tc, test_interop_raft_listens);
    tcase_add_test(tc, test_interop_raft_connects);
    tcase_add_test(tc, test_ipv6);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("probe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_probe_roundtrip);
    tcase_add_test(tc, test_probe_failures);
    suite_add_tcase(s, tc);

    tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_raft_cluster_by_name);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
    sr = srunner_create(transport_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
