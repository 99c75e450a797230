/* Unit tests for server/api.c: a single-member Ballast cluster in this
 * process, spoken to over real sockets.
 *
 * The fixture does what ballastd's main does, on a fresh libuv loop: load a
 * bl_config from an argv (a temporary data dir, a client and a peer port
 * the system picked), start the member, start the API, then step the loop
 * until GET /v1/status says this member leads. The test thread owns both
 * ends: it writes raw HTTP on a non-blocking client socket and steps the
 * loop (UV_RUN_NOWAIT, then a 1 ms poll of the socket) until a whole reply
 * has arrived; replies are framed by their Content-Length, which the server
 * always sends for these calls. Every reply read this way is checked for the
 * three standard headers (X-Ballast-Revision, -Raft-Term, -Raft-Index, each
 * exactly once), and JSON bodies are parsed with Jansson.
 *
 * Every wait is bounded: a test that waits in vain fails instead of
 * hanging. The teardown shuts down as main's signal handler does (member
 * first, then the API), runs the loop until both have called back, checks
 * that uv_loop_close() finds no handle left, and removes the data dir. The
 * data dirs live in one directory main() makes and removes, so a test that
 * fails (and exits without its teardown) leaves nothing behind in /tmp. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem, strcasecmp, nftw */
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "loop.h"
#include "member.h"

#define START_WAIT_MS 10000 /* leader elected, attributes published */
#define WAIT_MS       10000 /* one reply; the member and API closing */
#define MAX_HDRS      32
#define MIB           (1024u * 1024u)

/* ------------------------------------------------------------------------ */
/* The member under test */

static uv_loop_t loop;
static char suite_dir[64]; /* made by main(), holds every test's data dir */
static char data_dir[96];
static char client_addr[32], peer_addr[32], initial_cluster[48];
static struct bl_config cfg;
static struct bl_member *member;
static struct bl_api api;
static bool member_done, api_done;

static void step(int fd)
{
    tl_step(&loop, fd);
}

static uint64_t deadline(unsigned ms)
{
    return tl_deadline(ms);
}

static void run_for(unsigned ms)
{
    tl_run_for(&loop, ms);
}

static bool run_until(const bool *flag, unsigned ms)
{
    return tl_run_until(&loop, flag, ms);
}

/* A port free right now on 127.0.0.1: bind port 0, read it back. The socket
 * is returned open so that two calls give two different ports. */
static int bind_any(int *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(char *dir)
{
    if (dir[0] != '\0') {
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        dir[0] = '\0';
    }
}

static void wait_leader(void);

static void setup(void)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    struct bl_member_config mc;
    int client_port, peer_port, fd1, fd2, level, rv;
    char *argv[] = {"test",
                    "--id",
                    "1",
                    "--data-dir",
                    data_dir,
                    "--listen-client",
                    client_addr,
                    "--listen-peer",
                    peer_addr,
                    "--initial-cluster",
                    initial_cluster,
                    "--history-revisions",
                    "20",
                    "--log-level",
                    "warn"};

    snprintf(data_dir, sizeof data_dir, "%s/member-XXXXXX", suite_dir);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    fd1 = bind_any(&client_port);
    fd2 = bind_any(&peer_port);
    close(fd1);
    close(fd2);
    snprintf(client_addr, sizeof client_addr, "127.0.0.1:%d", client_port);
    snprintf(peer_addr, sizeof peer_addr, "127.0.0.1:%d", peer_port);
    snprintf(initial_cluster, sizeof initial_cluster, "1=%s", peer_addr);
    rv = bl_config_load(&cfg, (int)(sizeof argv / sizeof argv[0]), argv, errmsg);
    ck_assert_msg(rv == 0, "config: %s", errmsg);
    level = bl_log_parse_level(cfg.log_level);
    ck_assert_int_ge(level, 0);
    bl_log_set_level(level);

    /* the wiring of ballastd's main */
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    memset(&mc, 0, sizeof mc);
    mc.id = cfg.id;
    mc.name = cfg.name;
    mc.data_dir = cfg.data_dir;
    mc.peer_listen = cfg.listen_peer;
    mc.peer_advertise = cfg.advertise_peer;
    mc.client_advertise = cfg.advertise_client ? cfg.advertise_client : cfg.listen_client;
    mc.initial_cluster = cfg.initial_cluster;
    mc.election_timeout_ms = (unsigned)cfg.election_timeout_ms;
    mc.heartbeat_timeout_ms = (unsigned)cfg.heartbeat_timeout_ms;
    mc.snapshot_threshold = (unsigned)cfg.snapshot_threshold;
    mc.snapshot_trailing = (unsigned)cfg.snapshot_trailing;
    mc.propose_timeout_ms = (unsigned)cfg.propose_timeout_ms;
    mc.quota_bytes = cfg.quota_bytes;
    mc.history_revisions = cfg.history_revisions;
    member = NULL;
    member_done = api_done = false;
    rv = bl_member_start(&loop, &mc, &member, errmsg);
    ck_assert_msg(rv == 0, "member: %s", errmsg);
    rv = bl_api_start(&api, &loop, member, &cfg, errmsg);
    ck_assert_msg(rv == 0, "api: %s", errmsg);
    wait_leader();
}

static void api_closed_cb(void *arg)
{
    (void)arg;
    api_done = true;
}

static void member_closed_cb(void *arg)
{
    (void)arg;
    member_done = true;
    member = NULL;
    bl_api_close(&api, api_closed_cb, NULL);
}

static void teardown(void)
{
    bl_api_member_stopped(&api); /* as main's stop hook: watches end, new requests get 503 */
    bl_member_close(member, member_closed_cb, NULL);
    ck_assert_msg(run_until(&api_done, WAIT_MS), "member %s, api not closed in time",
                  member_done ? "closed" : "not closed");
    run_for(5);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    bl_config_free(&cfg);
    remove_tree(data_dir);
}

/* ------------------------------------------------------------------------ */
/* The client: raw HTTP on a non-blocking socket */

struct client {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
};

/* One reply. head holds the header lines, split in place into names/values. */
struct resp {
    int status;
    char *head;
    unsigned n_hdrs;
    const char *names[MAX_HDRS];
    const char *values[MAX_HDRS];
    char *body; /* NUL-terminated copy of the body_len bytes */
    size_t body_len;
    json_t *json; /* the body, when its Content-Type is JSON */
};

static void client_open(struct client *c)
{
    struct sockaddr_in sa;
    int one = 1;
    int port = atoi(strchr(client_addr, ':') + 1);

    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(c->fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* the listener is open, so the kernel completes the handshake itself */
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ck_assert_int_eq(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void client_close(struct client *c)
{
    free(c->buf);
    close(c->fd);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Send all of @data, stepping the loop while the socket is full. */
static void client_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    uint64_t end = deadline(WAIT_MS);
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s", strerror(errno));
            ck_assert_msg(uv_hrtime() < end, "send timed out");
            step(-1);
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Step the loop and take in whatever has arrived. */
static void client_pump(struct client *c)
{
    step(c->eof ? -1 : c->fd);
    while (!c->eof) {
        ssize_t n;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
            ck_assert_ptr_nonnull(c->buf);
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c->eof = true; /* EOF or reset */
        } else {
            return;
        }
    }
}

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    if (r->json != NULL) {
        json_decref(r->json);
    }
    memset(r, 0, sizeof *r);
}

/* The value of header @name in @r, or NULL. */
static const char *hdr(const struct resp *r, const char *name)
{
    for (unsigned i = 0; i < r->n_hdrs; i++) {
        if (strcasecmp(r->names[i], name) == 0) {
            return r->values[i];
        }
    }
    return NULL;
}

static unsigned hdr_count(const struct resp *r, const char *name)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->n_hdrs; i++) {
        n += strcasecmp(r->names[i], name) == 0;
    }
    return n;
}

/* Header @name, which must be there. */
static const char *hdr_req(const struct resp *r, const char *name)
{
    const char *v = hdr(r, name);
    ck_assert_msg(v != NULL, "reply %d has no %s header", r->status, name);
    return v;
}

/* Header @name as a decimal number. */
static uint64_t hdr_u64(const struct resp *r, const char *name)
{
    const char *v = hdr_req(r, name);
    char *end;
    unsigned long long u;
    errno = 0;
    u = strtoull(v, &end, 10);
    ck_assert_msg(errno == 0 && end != v && *end == '\0' && v[0] != '-', "%s: '%s' is not a number",
                  name, v);
    return (uint64_t)u;
}

/* Split the header lines of @r->head (NUL-terminated, no final CRLF). */
static void split_head(struct resp *r)
{
    char *p = strstr(r->head, "\r\n");
    ck_assert_msg(sscanf(r->head, "HTTP/1.1 %3d ", &r->status) == 1, "bad status line: %.80s",
                  r->head);
    while (p != NULL) {
        char *line = p + 2, *colon;
        *p = '\0';
        p = strstr(line, "\r\n"); /* the end of this line, cut by the next round */
        colon = strchr(line, ':');
        ck_assert_msg(colon != NULL && (p == NULL || colon < p), "bad header line: %.80s", line);
        ck_assert_uint_lt(r->n_hdrs, MAX_HDRS);
        *colon++ = '\0';
        while (*colon == ' ') {
            colon++;
        }
        r->names[r->n_hdrs] = line;
        r->values[r->n_hdrs] = colon;
        r->n_hdrs++;
    }
}

/* Take one whole reply off the front of @c's buffer into @r, if there is
 * one. */
static bool take_reply(struct client *c, struct resp *r)
{
    const char *end;
    size_t head_len, body_len;
    uint64_t cl;

    if (c->len == 0 || (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        return false;
    }
    head_len = (size_t)(end - c->buf);
    r->head = malloc(head_len + 1);
    ck_assert_ptr_nonnull(r->head);
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    split_head(r);
    cl = hdr_u64(r, "Content-Length");
    ck_assert_uint_le(cl, 64 * MIB);
    body_len = (size_t)cl;
    if (c->len < head_len + 4 + body_len) {
        resp_free(r);
        return false;
    }
    r->body = malloc(body_len + 1);
    ck_assert_ptr_nonnull(r->body);
    memcpy(r->body, c->buf + head_len + 4, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    c->len -= head_len + 4 + body_len;
    memmove(c->buf, c->buf + head_len + 4 + body_len, c->len);
    return true;
}

/* Every reply carries the three standard headers, once each. */
static void check_standard_headers(const struct resp *r)
{
    static const char *const names[] = {"X-Ballast-Revision", "X-Ballast-Raft-Term",
                                        "X-Ballast-Raft-Index"};
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_msg(hdr_count(r, names[i]) == 1, "reply %d carries %s %u times", r->status,
                      names[i], hdr_count(r, names[i]));
        (void)hdr_u64(r, names[i]);
    }
}

/* Wait (bounded) for the next reply on @c; @r is freed first. */
static void wait_reply(struct client *c, struct resp *r)
{
    uint64_t end = deadline(WAIT_MS);
    const char *ct;

    resp_free(r);
    while (!take_reply(c, r)) {
        ck_assert_msg(!c->eof, "connection closed before a whole reply (%zu bytes)", c->len);
        ck_assert_msg(uv_hrtime() < end, "no reply in time (%zu bytes)", c->len);
        client_pump(c);
    }
    check_standard_headers(r);
    ct = hdr(r, "Content-Type");
    if (ct != NULL && strcmp(ct, "application/json") == 0) {
        json_error_t err;
        r->json = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &err);
        ck_assert_msg(r->json != NULL, "reply %d: bad JSON (%s): %.200s", r->status, err.text,
                      r->body);
    }
}

/* Send one request: @hdrs are extra header lines, each ending in CRLF. */
static void send_req(struct client *c, const char *method, const char *target, const char *hdrs,
                     const void *body, size_t len)
{
    size_t cap = strlen(method) + strlen(target) + (hdrs ? strlen(hdrs) : 0) + 128;
    char *head = malloc(cap);
    int n;
    ck_assert_ptr_nonnull(head);
    n = snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n",
                 method, target, hdrs ? hdrs : "", len);
    ck_assert(n > 0 && (size_t)n < cap);
    client_send(c, head, (size_t)n);
    free(head);
    if (len > 0) {
        client_send(c, body, len);
    }
}

/* One request and its reply. */
static void req(struct client *c, struct resp *r, const char *method, const char *target,
                const char *hdrs, const void *body, size_t len)
{
    send_req(c, method, target, hdrs, body, len);
    wait_reply(c, r);
}

static void get(struct client *c, struct resp *r, const char *target)
{
    req(c, r, "GET", target, NULL, NULL, 0);
}

/* req() with a printf-formatted target. */
static void reqf(struct client *c, struct resp *r, const char *method, const char *hdrs,
                 const void *body, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void reqf(struct client *c, struct resp *r, const char *method, const char *hdrs,
                 const void *body, size_t len, const char *fmt, ...)
{
    va_list ap;
    char *target;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    target = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(target);
    va_start(ap, fmt);
    vsnprintf(target, (size_t)n + 1, fmt, ap);
    va_end(ap);
    req(c, r, method, target, hdrs, body, len);
    free(target);
}

/* ------------------------------------------------------------------------ */
/* Checking bodies */

static const json_t *jfield(const json_t *o, const char *k)
{
    const json_t *v;
    ck_assert_msg(json_is_object(o), "not an object where '%s' was expected", k);
    v = json_object_get(o, k);
    ck_assert_msg(v != NULL, "no field '%s'", k);
    return v;
}

static uint64_t ju(const json_t *o, const char *k)
{
    const json_t *v = jfield(o, k);
    ck_assert_msg(json_is_integer(v) && json_integer_value(v) >= 0, "'%s' is not a number", k);
    return (uint64_t)json_integer_value(v);
}

static const char *js(const json_t *o, const char *k)
{
    const json_t *v = jfield(o, k);
    ck_assert_msg(json_is_string(v), "'%s' is not a string", k);
    return json_string_value(v);
}

static bool jb(const json_t *o, const char *k)
{
    const json_t *v = jfield(o, k);
    ck_assert_msg(json_is_boolean(v), "'%s' is not a boolean", k);
    return json_is_true(v);
}

static const json_t *ja(const json_t *o, const char *k)
{
    const json_t *v = jfield(o, k);
    ck_assert_msg(json_is_array(v), "'%s' is not an array", k);
    return v;
}

/* A 4xx/5xx reply with the contract's JSON error body. */
static void expect_error(const struct resp *r, int status, const char *code)
{
    const json_t *e;
    ck_assert_msg(r->status == status, "status %d, want %d: %.300s", r->status, status, r->body);
    ck_assert_str_eq(hdr_req(r, "Content-Type"), "application/json");
    ck_assert_ptr_nonnull(r->json);
    ck_assert_uint_eq(json_object_size(r->json), 1);
    e = jfield(r->json, "error");
    ck_assert_uint_eq(json_object_size(e), 2);
    ck_assert_str_eq(js(e, "code"), code);
    ck_assert_uint_gt(strlen(js(e, "message")), 0);
}

/* Standard padded base64 of @in, written here rather than taken from
 * server/doc.c so the server's encoder is checked against another one. */
static char *b64(const void *in, size_t len)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static char out[4][16384];
    static unsigned next;
    const uint8_t *p = in;
    char *o = out[next++ % 4];
    size_t i, n = 0;

    ck_assert_uint_lt(4 * ((len + 2) / 3), sizeof out[0]);
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[n++] = T[v >> 18];
        o[n++] = T[(v >> 12) & 63];
        o[n++] = T[(v >> 6) & 63];
        o[n++] = T[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[n++] = T[v >> 18];
        o[n++] = T[(v >> 12) & 63];
        o[n++] = '=';
        o[n++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[n++] = T[v >> 18];
        o[n++] = T[(v >> 12) & 63];
        o[n++] = T[(v >> 6) & 63];
        o[n++] = '=';
    }
    o[n] = '\0';
    return o;
}

/* Every byte of @in as %XX (malloc'd). */
static char *pct(const void *in, size_t len)
{
    const uint8_t *p = in;
    char *out = malloc(3 * len + 1);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < len; i++) {
        snprintf(out + 3 * i, 4, "%%%02X", p[i]);
    }
    out[3 * len] = '\0';
    return out;
}

/* A kv object: key/value as base64 (@val NULL: no value field, as ?keys). */
static void check_kv(const json_t *kv, const char *key, size_t key_len, const void *val,
                     size_t val_len, uint64_t create, uint64_t mod, uint64_t version)
{
    ck_assert_uint_eq(json_object_size(kv), val != NULL ? 6 : 5);
    ck_assert_str_eq(js(kv, "key"), b64(key, key_len));
    if (val != NULL) {
        ck_assert_str_eq(js(kv, "value"), b64(val, val_len));
    } else {
        ck_assert_ptr_null(json_object_get(kv, "value"));
    }
    ck_assert_uint_eq(ju(kv, "create_revision"), create);
    ck_assert_uint_eq(ju(kv, "mod_revision"), mod);
    ck_assert_uint_eq(ju(kv, "version"), version);
    ck_assert_uint_eq(ju(kv, "lease"), 0);
}

/* PUT @val at /v1/kv/@path (already percent-encoded); returns the revision. */
static uint64_t put(struct client *c, const char *path, const void *val, size_t len)
{
    struct resp r = {0};
    uint64_t rev;
    reqf(c, &r, "PUT", NULL, val, len, "/v1/kv/%s", path);
    ck_assert_msg(r.status == 200, "PUT %s: %d %.200s", path, r.status, r.body);
    ck_assert_uint_eq(json_object_size(r.json), 1);
    rev = ju(r.json, "revision");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    resp_free(&r);
    return rev;
}

static uint64_t puts_(struct client *c, const char *path, const char *val)
{
    return put(c, path, val, strlen(val));
}

/* The store revision the member reports now (serializable, no Raft). */
static uint64_t store_revision(struct client *c)
{
    struct resp r = {0};
    uint64_t rev;
    get(c, &r, "/v1/status");
    ck_assert_int_eq(r.status, 200);
    rev = ju(r.json, "revision");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    resp_free(&r);
    return rev;
}

/* Poll GET /v1/status until this member leads (bounded). */
static void wait_leader(void)
{
    struct client c;
    struct resp r = {0};
    uint64_t end = deadline(START_WAIT_MS);
    bool leader = false;

    client_open(&c);
    while (!leader) {
        get(&c, &r, "/v1/status");
        ck_assert_int_eq(r.status, 200);
        leader = strcmp(js(r.json, "role"), "leader") == 0;
        ck_assert_msg(leader || uv_hrtime() < end, "no leader after %d ms (role %s)", START_WAIT_MS,
                      js(r.json, "role"));
        if (!leader) {
            run_for(20);
        }
    }
    resp_free(&r);
    client_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Routing and cluster calls */

START_TEST(test_routing)
{
    struct client c;
    struct resp r = {0};
    const json_t *m, *list;
    uint64_t end;
    bool published = false;

    client_open(&c);

    get(&c, &r, "/nope");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/kv"); /* no slash: not the KV prefix */
    expect_error(&r, 404, "not_found");

    get(&c, &r, "/healthz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/json");
    ck_assert_str_eq(js(r.json, "health"), "ok");

    req(&c, &r, "DELETE", "/healthz", NULL, NULL, 0);
    expect_error(&r, 405, "bad_request");
    ck_assert_str_eq(hdr_req(&r, "Allow"), "GET");
    /* routes are matched on path segments, not prefixes */
    get(&c, &r, "/v1/leases");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "leases")), 0);
    get(&c, &r, "/v1/txnx");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/leasex");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/lease/7");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/lease/7/renew");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/lease/x");
    expect_error(&r, 400, "bad_request");
    get(&c, &r, "/v1/txn");
    expect_error(&r, 405, "bad_request");
    req(&c, &r, "PUT", "/v1/status", NULL, "x", 1);
    expect_error(&r, 405, "bad_request");
    ck_assert_ptr_nonnull(hdr(&r, "Allow"));

    get(&c, &r, "/metrics"); /* implemented: see test_metrics */
    ck_assert_int_eq(r.status, 200);
    get(&c, &r, "/metrics/x");
    expect_error(&r, 404, "not_found");

    /* membership: bad bodies and ids are 400, unknown members 404 */
    req(&c, &r, "POST", "/v1/members", NULL, NULL, 0);
    expect_error(&r, 400, "bad_request");
    req(&c, &r, "POST", "/v1/members", "Content-Type: application/json\r\n",
        "{\"peer_url\": \"nohost\", \"client_url\": \"127.0.0.1:1\"}", 51);
    expect_error(&r, 400, "bad_request");
    req(&c, &r, "POST", "/v1/members", "Content-Type: application/json\r\n",
        "{\"peer_url\": \"127.0.0.1:2\", \"client_url\": \"127.0.0.1:1\", \"x\": 1}", 64);
    expect_error(&r, 400, "bad_request");
    req(&c, &r, "DELETE", "/v1/members/99", NULL, NULL, 0);
    expect_error(&r, 404, "not_found");
    req(&c, &r, "DELETE", "/v1/members/1", NULL, NULL, 0);
    expect_error(&r, 503, "no_leader"); /* the leader itself, with no voter to hand over to */
    req(&c, &r, "DELETE", "/v1/members/abc", NULL, NULL, 0);
    expect_error(&r, 400, "bad_request");
    get(&c, &r, "/v1/members/1");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(js(r.json, "role"), "voter");
    req(&c, &r, "POST", "/v1/members/99/promote", NULL, NULL, 0);
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/snapshot");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/octet-stream");

    /* leadership transfer on a single member: nobody to hand it to */
    req(&c, &r, "POST", "/v1/leader", NULL, NULL, 0);
    expect_error(&r, 503, "no_leader");
    req(&c, &r, "POST", "/v1/leader", "Content-Type: application/json\r\n", "{\"to\": 1}", 9);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "leader"), 1);
    ck_assert_uint_ge(ju(r.json, "term"), 1);
    req(&c, &r, "POST", "/v1/leader", "Content-Type: application/msgpack\r\n", "\x81\xa2to\x07", 5);
    expect_error(&r, 400, "bad_request");
    /* to a learner: 400 saying so (regression: the reason was read from the
     * member list after it was freed; ASan in CI caught it) */
    req(&c, &r, "POST", "/v1/members", "Content-Type: application/json\r\n",
        "{\"id\": 5, \"name\": \"l5\", \"peer_url\": \"127.0.0.1:2\", \"client_url\": "
        "\"127.0.0.1:1\"}",
        79);
    ck_assert_msg(r.status == 201, "POST /v1/members: %d", r.status);
    req(&c, &r, "POST", "/v1/leader", "Content-Type: application/json\r\n", "{\"to\": 5}", 9);
    expect_error(&r, 400, "bad_request");
    ck_assert_ptr_nonnull(
        strstr(js(json_object_get(r.json, "error"), "message"), "is a learner, not a voter"));
    req(&c, &r, "DELETE", "/v1/members/5", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    req(&c, &r, "GET", "/v1/leader", NULL, NULL, 0);
    expect_error(&r, 405, "bad_request");
    ck_assert_str_eq(hdr_req(&r, "Allow"), "POST");

    get(&c, &r, "/v1/status");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/json");
    ck_assert_str_eq(js(r.json, "role"), "leader");
    ck_assert_uint_eq(ju(r.json, "id"), 1);
    ck_assert_str_eq(js(r.json, "name"), "member-1");
    ck_assert_uint_eq(ju(r.json, "leader"), 1);
    ck_assert_uint_ge(ju(r.json, "term"), 1);
    ck_assert_uint_ge(ju(r.json, "commit_index"), ju(r.json, "applied_index"));
    ck_assert_uint_ge(ju(r.json, "applied_index"), 1);
    (void)ju(r.json, "revision");
    (void)ju(r.json, "db_bytes");
    (void)ju(r.json, "raft_log_bytes");
    ck_assert_uint_eq(json_array_size(ja(r.json, "members")), 1);
    ck_assert_str_eq(js(r.json, "version"), PACKAGE_VERSION);

    /* the member table: the leader publishes its client URL shortly after
     * its election */
    end = deadline(START_WAIT_MS);
    while (!published) {
        get(&c, &r, "/v1/members");
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(json_is_array(r.json), "members is not a top-level array: %s", r.body);
        ck_assert_uint_eq(json_array_size(r.json), 1);
        published = strcmp(js(json_array_get(r.json, 0), "client_url"), client_addr) == 0;
        ck_assert_msg(published || uv_hrtime() < end, "client URL not published: %s", r.body);
        if (!published) {
            run_for(20);
        }
    }
    m = json_array_get(r.json, 0);
    ck_assert_uint_eq(json_object_size(m), 7);
    ck_assert_uint_eq(ju(m, "id"), 1);
    ck_assert_str_eq(js(m, "name"), "member-1");
    ck_assert_str_eq(js(m, "peer_url"), peer_addr);
    ck_assert_str_eq(js(m, "client_url"), client_addr);
    ck_assert_str_eq(js(m, "role"), "voter");
    ck_assert(jb(m, "reachable"));
    ck_assert_uint_ge(ju(m, "match_index"), 1);

    /* /v1/status lists the same members */
    get(&c, &r, "/v1/status");
    list = ja(r.json, "members");
    ck_assert_str_eq(js(json_array_get(list, 0), "client_url"), client_addr);

    get(&c, &r, "/readyz");
    ck_assert_int_eq(r.status, 200);
    ck_assert(jb(r.json, "ready"));

    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Metrics */

static bool name_char(char ch, bool first)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' ||
           (!first && ch >= '0' && ch <= '9');
}

/* Check one sample line of the text format 0.0.4: name, optional
 * {label="value",...} with only \\, \" and \n escapes, one space, a number.
 * The name goes to @name (cut at @cap), the label block (without braces) to
 * @labels, the value to *@value. */
static void parse_sample(const char *line, char *name, size_t cap, char *labels, size_t lcap,
                         double *value)
{
    const char *p = line, *start;
    char *end;

    ck_assert_msg(name_char(*p, true), "bad metric name: %s", line);
    while (name_char(*p, false)) {
        p++;
    }
    ck_assert_uint_lt((size_t)(p - line), cap);
    memcpy(name, line, (size_t)(p - line));
    name[p - line] = '\0';
    labels[0] = '\0';
    if (*p == '{') {
        start = ++p;
        while (*p != '}') {
            ck_assert_msg(name_char(*p, true) && *p != ':', "bad label name: %s", line);
            while (name_char(*p, false) && *p != ':') {
                p++;
            }
            ck_assert_msg(p[0] == '=' && p[1] == '"', "bad label: %s", line);
            p += 2;
            while (*p != '"') {
                ck_assert_msg(*p != '\0' && *p != '\n', "unterminated label value: %s", line);
                if (*p == '\\') {
                    ck_assert_msg(p[1] == '\\' || p[1] == '"' || p[1] == 'n', "bad escape: %s",
                                  line);
                    p++;
                }
                p++;
            }
            p++;
            ck_assert_msg(*p == ',' || *p == '}', "bad label separator: %s", line);
            if (*p == ',') {
                p++;
            }
        }
        ck_assert_uint_lt((size_t)(p - start), lcap);
        memcpy(labels, start, (size_t)(p - start));
        labels[p - start] = '\0';
        p++;
    }
    ck_assert_msg(*p == ' ' && p[1] != ' ' && p[1] != '\0', "no value: %s", line);
    errno = 0;
    *value = strtod(p + 1, &end);
    ck_assert_msg(errno == 0 && end != p + 1 && *end == '\0', "value is not a number: %s", line);
}

/* Check every line of exposition @body (the text format 0.0.4): comments
 * are "# HELP name text" or "# TYPE name type", and every sample's family
 * (its name, less _bucket/_sum/_count for a histogram) was TYPEd before it.
 * Returns the number of samples. */
static unsigned check_exposition(const char *body)
{
    char *copy = strdup(body), *save = NULL;
    char typed[8192] = " ";
    unsigned samples = 0;

    ck_assert_ptr_nonnull(copy);
    ck_assert_msg(body[0] != '\0' && body[strlen(body) - 1] == '\n', "not newline-terminated");
    ck_assert_msg(strstr(body, "\n\n") == NULL, "empty line");
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[128], labels[512], fam[140];
        double v;
        if (line[0] == '#') {
            char kind[8], type[16];
            int n = sscanf(line, "# %7s %127s %15s", kind, name, type);
            ck_assert_msg(n >= 2 && (strcmp(kind, "HELP") == 0 || strcmp(kind, "TYPE") == 0),
                          "bad comment: %s", line);
            if (strcmp(kind, "TYPE") == 0) {
                ck_assert_msg(n == 3 &&
                                  (strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                                   strcmp(type, "histogram") == 0),
                              "bad TYPE: %s", line);
                snprintf(fam, sizeof fam, " %s ", name);
                ck_assert_msg(strstr(typed, fam) == NULL, "%s TYPEd twice", name);
                ck_assert_uint_lt(strlen(typed) + strlen(name) + 2, sizeof typed);
                strcat(typed, name);
                strcat(typed, " ");
            }
            continue;
        }
        parse_sample(line, name, sizeof name, labels, sizeof labels, &v);
        snprintf(fam, sizeof fam, " %s ", name);
        if (strstr(typed, fam) == NULL) {
            static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
            for (unsigned i = 0; i < 3; i++) {
                size_t nl = strlen(name), sl = strlen(suffixes[i]);
                if (nl > sl && strcmp(name + nl - sl, suffixes[i]) == 0) {
                    snprintf(fam, sizeof fam, " %.*s ", (int)(nl - sl), name);
                    break;
                }
            }
        }
        ck_assert_msg(strstr(typed, fam) != NULL, "sample before its TYPE: %s", line);
        samples++;
    }
    free(copy);
    return samples;
}

/* The sum of the samples of metric @name whose label block contains each
 * of the comma-separated @filter labels ("" for any); their number in *@n. */
static double msum(const char *body, const char *name, const char *filter, unsigned *n)
{
    char *copy = strdup(body), *save = NULL;
    double sum = 0;

    ck_assert_ptr_nonnull(copy);
    *n = 0;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char got[128], labels[512], want[256], *wsave = NULL;
        double v;
        bool match = true;
        if (line[0] == '#') {
            continue;
        }
        parse_sample(line, got, sizeof got, labels, sizeof labels, &v);
        if (strcmp(got, name) != 0) {
            continue;
        }
        snprintf(want, sizeof want, "%s", filter);
        for (char *w = strtok_r(want, ",", &wsave); w != NULL; w = strtok_r(NULL, ",", &wsave)) {
            char *hit = strstr(labels, w);
            /* a whole label: at the start or after a comma */
            match = match && hit != NULL && (hit == labels || hit[-1] == ',');
        }
        if (match) {
            sum += v;
            (*n)++;
        }
    }
    free(copy);
    return sum;
}

/* msum() of a metric that must have exactly one matching sample. */
static double mone(const char *body, const char *name, const char *filter)
{
    unsigned n;
    double v = msum(body, name, filter, &n);
    ck_assert_msg(n == 1, "%s{%s}: %u samples, want 1", name, filter, n);
    return v;
}

START_TEST(test_metrics)
{
    enum { N = 7, M = 4 };
    struct client c;
    struct resp r = {0};
    const char *end;
    unsigned n, samples;
    double count, prev = 0;
    uint64_t rev = 0;
    char filter[64];

    client_open(&c);
    for (unsigned i = 0; i < N; i++) {
        char path[16];
        snprintf(path, sizeof path, "m%u", i);
        rev = puts_(&c, path, "v");
    }
    for (unsigned i = 0; i < M; i++) {
        get(&c, &r, "/v1/kv/m0");
        ck_assert_int_eq(r.status, 200);
    }
    get(&c, &r, "/v1/kv/nope");
    ck_assert_int_eq(r.status, 404);
    get(&c, &r, "/v1/kv/m?prefix");
    ck_assert_int_eq(r.status, 200);
    /* a long-poll that waits 50 ms: counted, not in the latency histogram */
    reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/m0?index=%" PRIu64 "&wait=50ms", rev + 1000);
    ck_assert_int_eq(r.status, 200);

    get(&c, &r, "/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    samples = check_exposition(r.body);
    ck_assert_uint_gt(samples, 40);

    /* requests by call and code */
    ck_assert_double_ge(msum(r.body, "ballast_http_requests_total", "call=\"kv_put\"", &n), N);
    ck_assert_double_ge(mone(r.body, "ballast_http_requests_total", "call=\"kv_put\",code=\"200\""),
                        N);
    ck_assert_double_ge(mone(r.body, "ballast_http_requests_total", "call=\"kv_get\",code=\"200\""),
                        M);
    ck_assert_double_ge(mone(r.body, "ballast_http_requests_total", "call=\"kv_get\",code=\"404\""),
                        1);
    ck_assert_double_ge(
        mone(r.body, "ballast_http_requests_total", "call=\"kv_range\",code=\"200\""), 1);
    ck_assert_double_eq(
        mone(r.body, "ballast_http_requests_total", "call=\"kv_poll\",code=\"200\""), 1);
    /* latency: put and get series, none for the long-poll */
    count = mone(r.body, "ballast_http_request_duration_seconds_count", "call=\"kv_put\"");
    ck_assert_double_ge(count, N);
    ck_assert_double_eq(
        mone(r.body, "ballast_http_request_duration_seconds_bucket", "call=\"kv_put\",le=\"+Inf\""),
        count);
    ck_assert_double_gt(
        mone(r.body, "ballast_http_request_duration_seconds_sum", "call=\"kv_put\""), 0);
    ck_assert_double_ge(
        mone(r.body, "ballast_http_request_duration_seconds_count", "call=\"kv_get\""), M + 1);
    msum(r.body, "ballast_http_request_duration_seconds_count", "call=\"kv_poll\"", &n);
    ck_assert_uint_eq(n, 0);
    /* the put buckets are cumulative */
    end = r.body;
    while (
        (end = strstr(end, "ballast_http_request_duration_seconds_bucket{call=\"kv_put\",le=\"")) !=
        NULL) {
        double v = strtod(strchr(end, '}') + 2, NULL);
        ck_assert_double_ge(v, prev);
        prev = v;
        end++;
    }
    ck_assert_double_eq(prev, count);

    /* raft */
    ck_assert_double_eq(mone(r.body, "ballast_raft_role", "role=\"leader\""), 1);
    ck_assert_double_eq(msum(r.body, "ballast_raft_role", "", &n), 1);
    ck_assert_uint_eq(n, 5);
    ck_assert_double_eq(mone(r.body, "ballast_raft_leader_id", ""), 1);
    ck_assert_double_ge(mone(r.body, "ballast_raft_term", ""), 1);
    ck_assert_double_ge(mone(r.body, "ballast_raft_applied_index", ""), N);
    ck_assert_double_ge(mone(r.body, "ballast_raft_commit_index", ""),
                        mone(r.body, "ballast_raft_applied_index", ""));
    ck_assert_double_ge(mone(r.body, "ballast_revision", ""), (double)rev);
    ck_assert_double_gt(mone(r.body, "ballast_log_append_duration_seconds_count", ""), 0);
    ck_assert_double_ge(mone(r.body, "ballast_apply_duration_seconds_count", ""), N);
    ck_assert_double_eq(mone(r.body, "ballast_log_append_failures_total", ""), 0);
    /* a publish of the member's attributes may be in flight, never a put */
    ck_assert_double_lt(mone(r.body, "ballast_proposals_inflight", ""), N);
    /* store and members */
    ck_assert_double_gt(mone(r.body, "ballast_db_bytes", ""), 0);
    ck_assert_double_gt(mone(r.body, "ballast_raft_log_bytes", ""), 0);
    ck_assert_double_eq(mone(r.body, "ballast_members", "role=\"voter\""), 1);
    ck_assert_double_eq(mone(r.body, "ballast_members", "role=\"learner\""), 0);
    ck_assert_double_eq(mone(r.body, "ballast_members_reachable", ""), 1);
    ck_assert_double_eq(mone(r.body, "ballast_info", "id=\"1\",name=\"member-1\""), 1);
    ck_assert_double_ge(mone(r.body, "ballast_http_connections", ""), 1);

    /* the scrape itself is counted by the next one */
    get(&c, &r, "/metrics");
    snprintf(filter, sizeof filter, "call=\"metrics\",code=\"200\"");
    ck_assert_double_ge(mone(r.body, "ballast_http_requests_total", filter), 1);

    /* GET and HEAD only */
    req(&c, &r, "POST", "/metrics", NULL, NULL, 0);
    expect_error(&r, 405, "bad_request");
    ck_assert_str_eq(hdr_req(&r, "Allow"), "GET, HEAD");
    send_req(&c, "HEAD", "/metrics", NULL, NULL, 0);
    {
        uint64_t until = deadline(WAIT_MS);
        const char *eoh;
        while ((eoh = c.len > 0 ? memmem(c.buf, c.len, "\r\n\r\n", 4) : NULL) == NULL) {
            ck_assert_msg(!c.eof && uv_hrtime() < until, "no HEAD reply");
            client_pump(&c);
        }
        ck_assert_msg(strncmp(c.buf, "HTTP/1.1 200 ", 13) == 0, "HEAD: %.40s", c.buf);
        size_t head = (size_t)(eoh - c.buf) + 4;
        ck_assert_ptr_nonnull(memmem(c.buf, head, "text/plain; version=0.0.4", 25));
        run_for(20);
        client_pump(&c);
        ck_assert_uint_eq(c.len, head); /* headers only */
        c.len = 0;
    }
    get(&c, &r, "/healthz"); /* the connection goes on */
    ck_assert_int_eq(r.status, 200);

    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* KV */

START_TEST(test_kv_put_get)
{
    struct client c;
    struct resp r = {0};
    uint64_t r1, r2, r3;

    client_open(&c);
    get(&c, &r, "/v1/kv/foo");
    expect_error(&r, 404, "not_found");

    r1 = puts_(&c, "foo", "bar");
    get(&c, &r, "/v1/kv/foo");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/json");
    check_kv(r.json, "foo", 3, "bar", 3, r1, r1, 1);
    ck_assert_str_eq(js(r.json, "key"), "Zm9v");
    ck_assert_str_eq(js(r.json, "value"), "YmFy");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r1);

    /* a second put: same create_revision, new mod_revision, version 2 */
    r2 = puts_(&c, "foo", "bazz");
    ck_assert_uint_eq(r2, r1 + 1);
    get(&c, &r, "/v1/kv/foo?consistency=linearizable");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "foo", 3, "bazz", 4, r1, r2, 2);
    get(&c, &r, "/v1/kv/foo?consistency=serializable");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "foo", 3, "bazz", 4, r1, r2, 2);

    /* an empty value is a value */
    r3 = put(&c, "empty", "", 0);
    ck_assert_uint_eq(r3, r2 + 1);
    get(&c, &r, "/v1/kv/empty");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "empty", 5, "", 0, r3, r3, 1);
    ck_assert_str_eq(js(r.json, "value"), "");

    /* percent-decoding of the path: %20 is a space, '+' stays '+' */
    r3 = puts_(&c, "x+y%20z", "sp");
    get(&c, &r, "/v1/kv/x%2By%20z");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "x+y z", 5, "sp", 2, r3, r3, 1);

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_kv_raw)
{
    static const uint8_t val[] = {0x00, 0xff, 'a', 0x00, 0x80, 0xff};
    struct client c;
    struct resp r = {0};
    uint64_t rev;

    client_open(&c);
    rev = put(&c, "bin%00key", val, sizeof val);

    get(&c, &r, "/v1/kv/bin%00key?raw");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/octet-stream");
    ck_assert_uint_eq(r.body_len, sizeof val);
    ck_assert_int_eq(memcmp(r.body, val, sizeof val), 0);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Mod-Revision"), rev);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Create-Revision"), rev);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Version"), 1);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Lease"), 0);

    /* the same value in JSON */
    get(&c, &r, "/v1/kv/bin%00key");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(js(r.json, "value"), "AP9hAID/");
    check_kv(r.json, "bin\0key", 7, val, sizeof val, rev, rev, 1);

    /* a missing key with ?raw is still a JSON error */
    get(&c, &r, "/v1/kv/nothing?raw");
    expect_error(&r, 404, "not_found");

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_kv_prev_and_delete)
{
    struct client c;
    struct resp r = {0};
    const json_t *prev;
    uint64_t r1, r2, r3, r4;

    client_open(&c);

    /* ?prev on an absent key: no "prev" field */
    req(&c, &r, "PUT", "/v1/kv/k?prev", NULL, "v1", 2);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_object_size(r.json), 1);
    r1 = ju(r.json, "revision");

    req(&c, &r, "PUT", "/v1/kv/k?prev", NULL, "v2", 2);
    ck_assert_int_eq(r.status, 200);
    r2 = ju(r.json, "revision");
    ck_assert_uint_eq(r2, r1 + 1);
    ck_assert_uint_eq(json_object_size(r.json), 2);
    check_kv(jfield(r.json, "prev"), "k", 1, "v1", 2, r1, r1, 1);

    /* DELETE ?prev: the deleted kv */
    req(&c, &r, "DELETE", "/v1/kv/k?prev", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_object_size(r.json), 3);
    r3 = ju(r.json, "revision");
    ck_assert_uint_eq(r3, r2 + 1);
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    prev = ja(r.json, "prev_kvs");
    ck_assert_uint_eq(json_array_size(prev), 1);
    check_kv(json_array_get(prev, 0), "k", 1, "v2", 2, r1, r2, 2);
    get(&c, &r, "/v1/kv/k");
    expect_error(&r, 404, "not_found");

    /* deleting nothing is no error and leaves the revision */
    req(&c, &r, "DELETE", "/v1/kv/k", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_object_size(r.json), 2);
    ck_assert_uint_eq(ju(r.json, "deleted"), 0);
    ck_assert_uint_eq(ju(r.json, "revision"), r3);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r3);
    req(&c, &r, "DELETE", "/v1/kv/k?prev", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "deleted"), 0);
    ck_assert_uint_eq(json_array_size(ja(r.json, "prev_kvs")), 0);

    /* created anew: version 1, a new create_revision */
    r4 = puts_(&c, "k", "v3");
    ck_assert_uint_eq(r4, r3 + 1);
    get(&c, &r, "/v1/kv/k");
    check_kv(r.json, "k", 1, "v3", 2, r4, r4, 1);

    /* DELETE ?prefix: one revision for the whole range */
    puts_(&c, "d/1", "1");
    puts_(&c, "d/2", "2");
    puts_(&c, "d/3", "3");
    puts_(&c, "d", "outside");
    r4 = puts_(&c, "e", "outside");
    req(&c, &r, "DELETE", "/v1/kv/d/?prefix&prev", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "deleted"), 3);
    ck_assert_uint_eq(ju(r.json, "revision"), r4 + 1);
    prev = ja(r.json, "prev_kvs");
    ck_assert_uint_eq(json_array_size(prev), 3);
    ck_assert_str_eq(js(json_array_get(prev, 0), "key"), b64("d/1", 3));
    ck_assert_str_eq(js(json_array_get(prev, 2), "key"), b64("d/3", 3));
    get(&c, &r, "/v1/kv/d/2");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/kv/d");
    ck_assert_int_eq(r.status, 200);
    get(&c, &r, "/v1/kv/e");
    ck_assert_int_eq(r.status, 200);

    resp_free(&r);
    client_close(&c);
}
END_TEST

/* The key of entry @i of the paging test's range, into @out. */
static size_t page_key(unsigned i, unsigned n, char *out)
{
    if (i == 0) {
        memcpy(out, "p/", 2); /* the prefix itself sorts first */
        return 2;
    }
    if (i == n - 1) {
        memcpy(out, "p/\xff", 3); /* a high byte sorts last */
        return 3;
    }
    return (size_t)snprintf(out, 8, "p/%02u", i - 1);
}

START_TEST(test_kv_range_paging)
{
    enum { N = 22, LIMIT = 5 };
    struct client c;
    struct resp r = {0};
    char keys[N][8];
    size_t lens[N];
    uint64_t revs[N], last;
    unsigned got = 0, pages = 0;
    char *after = NULL;

    client_open(&c);
    /* written out of order, with neighbours just outside the prefix */
    puts_(&c, "p", "outside");
    puts_(&c, "p0", "outside");
    puts_(&c, "o", "outside");
    puts_(&c, "q", "outside");
    for (unsigned k = 0; k < N; k++) {
        unsigned i = (k * 7) % N; /* 7 and 22 are coprime: every i once */
        char *enc;
        lens[i] = page_key(i, N, keys[i]);
        enc = pct(keys[i], lens[i]);
        revs[i] = put(&c, enc, keys[i], lens[i]);
        free(enc);
    }
    last = store_revision(&c);

    /* page through with limit and after */
    for (;;) {
        const json_t *kvs;
        size_t n;
        if (after == NULL) {
            reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/p%%2F?prefix&limit=%d", LIMIT);
        } else {
            reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/p/?limit=%d&prefix&after=%s", LIMIT, after);
            free(after);
        }
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(json_object_size(r.json), 4);
        ck_assert_uint_eq(ju(r.json, "count"), N);
        ck_assert_uint_eq(ju(r.json, "revision"), last);
        kvs = ja(r.json, "kvs");
        n = json_array_size(kvs);
        ck_assert_uint_eq(n, N - got < LIMIT ? N - got : LIMIT);
        for (size_t j = 0; j < n; j++, got++) {
            check_kv(json_array_get(kvs, j), keys[got], lens[got], keys[got], lens[got], revs[got],
                     revs[got], 1);
        }
        pages++;
        ck_assert_int_eq(jb(r.json, "more"), got < N);
        if (!jb(r.json, "more")) {
            break;
        }
        after = pct(keys[got - 1], lens[got - 1]);
    }
    ck_assert_uint_eq(got, N);
    ck_assert_uint_eq(pages, (N + LIMIT - 1) / LIMIT);

    /* the default limit takes it all */
    get(&c, &r, "/v1/kv/p/?prefix");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "kvs")), N);
    ck_assert(!jb(r.json, "more"));
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), last);
    get(&c, &r, "/v1/kv/p/?prefix&limit=10000&consistency=serializable");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "kvs")), N);

    /* ?keys: no values */
    get(&c, &r, "/v1/kv/p/?prefix&keys&limit=3&after=p/00");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "kvs")), 3);
    for (unsigned j = 0; j < 3; j++) {
        check_kv(json_array_get(ja(r.json, "kvs"), j), keys[2 + j], lens[2 + j], NULL, 0,
                 revs[2 + j], revs[2 + j], 1);
    }
    ck_assert(jb(r.json, "more"));
    ck_assert_uint_eq(ju(r.json, "count"), N);

    /* ?count: the count only */
    get(&c, &r, "/v1/kv/p/?prefix&count");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "kvs")), 0);
    ck_assert_uint_eq(ju(r.json, "count"), N);
    ck_assert(!jb(r.json, "more"));

    /* the empty prefix is every key; a prefix nothing has is empty */
    get(&c, &r, "/v1/kv/?prefix&count");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "count"), N + 4);
    get(&c, &r, "/v1/kv/zzz?prefix");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(ja(r.json, "kvs")), 0);
    ck_assert_uint_eq(ju(r.json, "count"), 0);
    ck_assert(!jb(r.json, "more"));

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_kv_slash_keys)
{
    struct client c;
    struct resp r = {0};
    uint64_t r1, r2, r3;

    client_open(&c);
    /* a literal '/' and %2F name the same key "a/b" */
    r1 = puts_(&c, "a/b", "one");
    get(&c, &r, "/v1/kv/a%2Fb");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(js(r.json, "key"), "YS9i");
    check_kv(r.json, "a/b", 3, "one", 3, r1, r1, 1);

    r2 = puts_(&c, "a%2fb", "two");
    get(&c, &r, "/v1/kv/a/b");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "a/b", 3, "two", 3, r1, r2, 2);

    /* "a/b" is one key, not "a" and "b" */
    get(&c, &r, "/v1/kv/a");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/kv/a?prefix");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "count"), 1);
    check_kv(json_array_get(ja(r.json, "kvs"), 0), "a/b", 3, "two", 3, r1, r2, 2);

    /* an escaped '%' is a key of its own: "a%2Fb" literally */
    r3 = puts_(&c, "a%252Fb", "three");
    get(&c, &r, "/v1/kv/a%252Fb");
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "a%2Fb", 5, "three", 5, r3, r3, 1);
    get(&c, &r, "/v1/kv/a/b");
    check_kv(r.json, "a/b", 3, "two", 3, r1, r2, 2);
    get(&c, &r, "/v1/kv/a?prefix&keys");
    ck_assert_uint_eq(ju(r.json, "count"), 2);

    /* DELETE through the other spelling */
    req(&c, &r, "DELETE", "/v1/kv/a%2Fb", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    get(&c, &r, "/v1/kv/a/b");
    expect_error(&r, 404, "not_found");

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_key_limits)
{
    struct client c;
    struct resp r = {0};
    char *key = malloc(4098), *enc;
    uint64_t rev;

    ck_assert_ptr_nonnull(key);
    client_open(&c);
    /* 4096 bytes is the largest key; sent escaped (3 path bytes each) */
    memset(key, 'k', 4096);
    key[4096] = '\0';
    enc = pct(key, 4096);
    rev = put(&c, enc, "big key", 7);
    free(enc);
    reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/%s?raw", key);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "big key");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Mod-Revision"), rev);

    /* 4097 is one too many, plain or escaped, path or ?after */
    key[4096] = 'k';
    key[4097] = '\0';
    reqf(&c, &r, "PUT", NULL, "x", 1, "/v1/kv/%s", key);
    expect_error(&r, 400, "bad_request");
    reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/%s", key);
    expect_error(&r, 400, "bad_request");
    enc = pct(key, 4097);
    reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/%s", enc);
    expect_error(&r, 400, "bad_request");
    free(enc);
    reqf(&c, &r, "GET", NULL, NULL, 0, "/v1/kv/k?prefix&after=%s", key);
    expect_error(&r, 400, "bad_request");
    ck_assert_uint_eq(store_revision(&c), rev);

    free(key);
    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* msgpack */

static const msgpack_object *mp_get(const msgpack_object *map, const char *k)
{
    size_t n = strlen(k);
    ck_assert_int_eq(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        ck_assert_int_eq(kv->key.type, MSGPACK_OBJECT_STR);
        if (kv->key.via.str.size == n && memcmp(kv->key.via.str.ptr, k, n) == 0) {
            return &kv->val;
        }
    }
    ck_abort_msg("no field '%s' in the msgpack map", k);
    return NULL;
}

static uint64_t mp_uint(const msgpack_object *map, const char *k)
{
    const msgpack_object *v = mp_get(map, k);
    ck_assert_msg(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER, "'%s' is not a uint", k);
    return v->via.u64;
}

static void mp_check_bin(const msgpack_object *map, const char *k, const void *p, size_t len)
{
    const msgpack_object *v = mp_get(map, k);
    ck_assert_msg(v->type == MSGPACK_OBJECT_BIN, "'%s' is not bin (type %d)", k, (int)v->type);
    ck_assert_uint_eq(v->via.bin.size, len);
    ck_assert_int_eq(memcmp(v->via.bin.ptr, p, len), 0);
}

/* Decode @r's whole body as one msgpack object into @u. */
static const msgpack_object *mp_decode(const struct resp *r, msgpack_unpacked *u)
{
    size_t off = 0;
    ck_assert_str_eq(hdr_req(r, "Content-Type"), "application/msgpack");
    ck_assert_int_eq(msgpack_unpack_next(u, r->body, r->body_len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, r->body_len);
    return &u->data;
}

START_TEST(test_msgpack)
{
    static const char accept[] = "Accept: application/msgpack\r\n";
    static const uint8_t val[] = {'v', 0x00, 0xff, 'x'};
    struct client c;
    struct resp r = {0};
    msgpack_unpacked u;
    const msgpack_object *o, *e, *kvs;
    uint64_t rev;

    msgpack_unpacked_init(&u);
    client_open(&c);

    req(&c, &r, "PUT", "/v1/kv/mp", accept, val, sizeof val);
    ck_assert_int_eq(r.status, 200);
    o = mp_decode(&r, &u);
    ck_assert_uint_eq(o->via.map.size, 1);
    rev = mp_uint(o, "revision");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);

    req(&c, &r, "GET", "/v1/kv/mp", accept, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    o = mp_decode(&r, &u);
    ck_assert_uint_eq(o->via.map.size, 6);
    mp_check_bin(o, "key", "mp", 2);
    mp_check_bin(o, "value", val, sizeof val);
    ck_assert_uint_eq(mp_uint(o, "create_revision"), rev);
    ck_assert_uint_eq(mp_uint(o, "mod_revision"), rev);
    ck_assert_uint_eq(mp_uint(o, "version"), 1);
    ck_assert_uint_eq(mp_uint(o, "lease"), 0);

    /* Accept naming msgpack among others */
    req(&c, &r, "GET", "/v1/kv/m?prefix", "Accept: text/plain, application/msgpack;q=0.9\r\n", NULL,
        0);
    ck_assert_int_eq(r.status, 200);
    o = mp_decode(&r, &u);
    kvs = mp_get(o, "kvs");
    ck_assert_int_eq(kvs->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq(kvs->via.array.size, 1);
    mp_check_bin(&kvs->via.array.ptr[0], "key", "mp", 2);
    ck_assert_uint_eq(mp_uint(o, "count"), 1);
    ck_assert_int_eq(mp_get(o, "more")->type, MSGPACK_OBJECT_BOOLEAN);

    /* errors come in msgpack too */
    req(&c, &r, "GET", "/v1/kv/none", accept, NULL, 0);
    ck_assert_int_eq(r.status, 404);
    o = mp_decode(&r, &u);
    e = mp_get(o, "error");
    ck_assert_int_eq(mp_get(e, "code")->type, MSGPACK_OBJECT_STR);
    ck_assert_uint_eq(mp_get(e, "code")->via.str.size, 9);
    ck_assert_int_eq(memcmp(mp_get(e, "code")->via.str.ptr, "not_found", 9), 0);

    /* without Accept: JSON */
    get(&c, &r, "/v1/kv/mp");
    ck_assert_str_eq(hdr_req(&r, "Content-Type"), "application/json");
    ck_assert_str_eq(js(r.json, "value"), b64(val, sizeof val));

    msgpack_unpacked_destroy(&u);
    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Bad input */

START_TEST(test_bad_input)
{
    static const struct {
        const char *method, *target, *hdrs, *msg; /* msg: a part of the message, or NULL */
    } bad[] = {
        {"GET", "/v1/kv/%ZZ", NULL, NULL},
        {"GET", "/v1/kv/ab%4", NULL, NULL},
        {"PUT", "/v1/kv/%G0", NULL, NULL},
        {"GET", "/v1/kv/", NULL, "empty key"},
        {"PUT", "/v1/kv/", NULL, "empty key"},
        {"DELETE", "/v1/kv/", NULL, "empty key"},
        {"GET", "/v1/kv/x?prefix&limit=0", NULL, "limit"},
        {"GET", "/v1/kv/x?prefix&limit=10001", NULL, "limit"},
        {"GET", "/v1/kv/x?prefix&limit=abc", NULL, "limit"},
        {"GET", "/v1/kv/x?prefix&limit=", NULL, "limit"},
        {"PUT", "/v1/kv/x?cas=abc", NULL, "cas"},
        {"PUT", "/v1/kv/x?cas=-1", NULL, "cas"},
        {"PUT", "/v1/kv/x?cas=", NULL, "cas"},
        {"PUT", "/v1/kv/x?cas=99999999999999999999", NULL, "cas"},
        {"DELETE", "/v1/kv/x?prefix&cas=1", NULL, "prefix"},
        {"DELETE", "/v1/kv/x?cas=1&prefix", NULL, "prefix"},
        {"GET", "/v1/kv/x?consistency=bogus", NULL, "consistency"},
        {"GET", "/v1/kv/x?consistency=", NULL, "consistency"},
        {"GET", "/v1/kv/x?lease=1", NULL, "are for PUT"},
        {"PUT", "/v1/kv/x?lease=abc", NULL, "lease must be"},
        {"PUT", "/v1/kv/x?ttl=2s&lease=3", NULL, "cannot be combined"},
        {"PUT", "/v1/kv/x?ttl=0s", NULL, "ttl must be"},
        {"GET", "/v1/kv/x?wait=abc&index=3", NULL, "wait must be"},
        {"GET", "/v1/kv/x?wait=&index=3", NULL, "wait must be"},
        {"GET", "/v1/kv/x?wait=5d&index=3", NULL, "wait must be"},
        {"GET", "/v1/kv/x?index=-1", NULL, "index must be"},
        {"GET", "/v1/kv/x?index=", NULL, "index must be"},
        {"PUT", "/v1/kv/x?index=3", NULL, "are for GET"},
        {"DELETE", "/v1/kv/x?wait=1s", NULL, "are for GET"},
        {"GET", "/v1/watch/", NULL, "empty key"},
        {"GET", "/v1/watch/x?rev=abc", NULL, "rev must be"},
        {"GET", "/v1/watch/x?rev=0", NULL, "rev must be"},
        {"GET", "/v1/watch/%ZZ", NULL, "key must be"},
        {"PUT", "/v1/kv/x?prefix", NULL, "prefix"},
        {"GET", "/v1/kv/x?prefix&after=%ZZ", NULL, "after"},
        {"PUT", "/v1/kv/x",
         "X-Ballast-Request-Id: "
         "01234567890123456789012345678901234567890123456789012345678901234\r\n",
         "X-Ballast-Request-Id"},
        {"PUT", "/v1/kv/x", "X-Ballast-Request-Id: a b\r\n", "X-Ballast-Request-Id"},
        {"PUT", "/v1/kv/x", "X-Ballast-Request-Id:\r\n", "X-Ballast-Request-Id"},
    };
    struct client c;
    struct resp r = {0};
    uint64_t rev;

    client_open(&c);
    rev = puts_(&c, "ok", "fine");
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req(&c, &r, bad[i].method, bad[i].target, bad[i].hdrs, "v", 1);
        ck_assert_msg(r.status == 400, "%s %s: %d %s", bad[i].method, bad[i].target, r.status,
                      r.body);
        expect_error(&r, 400, "bad_request");
        if (bad[i].msg != NULL) {
            const char *msg = js(jfield(r.json, "error"), "message");
            ck_assert_msg(strstr(msg, bad[i].msg) != NULL, "%s %s: message '%s' lacks '%s'",
                          bad[i].method, bad[i].target, msg, bad[i].msg);
        }
        ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
        ck_assert_str_ne(hdr_req(&r, "Connection"), "close");
        /* the connection still serves */
        get(&c, &r, "/v1/kv/ok?raw");
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(r.body, "fine");
    }

    /* a method /v1/kv/ does not take */
    req(&c, &r, "POST", "/v1/kv/x", NULL, "v", 1);
    expect_error(&r, 405, "bad_request");
    ck_assert_ptr_nonnull(hdr(&r, "Allow"));

    /* nothing changed */
    get(&c, &r, "/v1/kv/x");
    expect_error(&r, 404, "not_found");
    ck_assert_uint_eq(store_revision(&c), rev);

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_too_large)
{
    struct client c;
    struct resp r = {0};
    size_t n = MIB + 1;
    char *val = malloc(n);
    const char *head = "PUT /v1/kv/huge HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n";
    uint64_t rev;

    ck_assert_ptr_nonnull(val);
    memset(val, 'v', n);
    client_open(&c);

    /* exactly --max-value-bytes (1 MiB) is fine */
    rev = put(&c, "big", val, MIB);
    get(&c, &r, "/v1/kv/big?raw");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, MIB);

    /* one byte more: 413, the body is read, the connection stays */
    req(&c, &r, "PUT", "/v1/kv/big", NULL, val, n);
    expect_error(&r, 413, "too_large");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    get(&c, &r, "/v1/kv/big?raw");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, MIB);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Mod-Revision"), rev);

    /* over --max-request-bytes (1.5 MiB): 413 before the body is read, and
     * the connection closes */
    client_send(&c, head, strlen(head));
    wait_reply(&c, &r);
    expect_error(&r, 413, "too_large");
    ck_assert_str_eq(hdr_req(&r, "Connection"), "close");
    {
        uint64_t end = deadline(WAIT_MS);
        while (!c.eof && uv_hrtime() < end) {
            client_pump(&c);
        }
        ck_assert(c.eof);
    }
    client_close(&c);

    client_open(&c);
    get(&c, &r, "/v1/kv/huge");
    expect_error(&r, 404, "not_found");
    ck_assert_uint_eq(store_revision(&c), rev);

    free(val);
    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_txn_and_own_lease)
{
    static const char del_if_v1[] =
        "{\"compare\":[{\"key\":\"dA==\",\"target\":\"version\",\"op\":\"==\",\"number\":1}],"
        "\"success\":[{\"delete\":{\"key\":\"dA==\"}}],\"failure\":[]}";
    struct client c;
    struct resp r = {0};
    uint64_t lease;

    client_open(&c);
    /* compare-and-delete: a branch without a put (regression: not applied) */
    puts_(&c, "t", "1");
    req(&c, &r, "POST", "/v1/txn", "Content-Type: application/json\r\n", del_if_v1,
        sizeof del_if_v1 - 1);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert(jb(r.json, "succeeded"));
    get(&c, &r, "/v1/kv/t");
    expect_error(&r, 404, "not_found");

    /* a key's own lease (?ttl=) cannot be shared */
    req(&c, &r, "PUT", "/v1/kv/own?ttl=30s", NULL, "v", 1);
    ck_assert_int_eq(r.status, 200);
    lease = ju(r.json, "lease");
    ck_assert_uint_gt(lease, 0);
    reqf(&c, &r, "PUT", NULL, "v", 1, "/v1/kv/guest?lease=%" PRIu64, lease);
    expect_error(&r, 400, "bad_request");
    ck_assert_ptr_nonnull(strstr(js(jfield(r.json, "error"), "message"), "own lease"));
    get(&c, &r, "/v1/kv/guest");
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Long-poll and watch */

/* Whether @c has no bytes pending after stepping the loop for @ms. */
static bool quiet_for(struct client *c, unsigned ms)
{
    uint64_t end = deadline(ms);
    while (uv_hrtime() < end) {
        client_pump(c);
    }
    return c->len == 0;
}

START_TEST(test_long_poll)
{
    struct client a, b, gone;
    struct resp r = {0};
    uint64_t r1, r2, r3, t0;
    char target[128];

    client_open(&a);
    client_open(&b);
    r1 = puts_(&b, "lp", "v1");

    /* a change after ?index wakes the poll, which answers the GET of then */
    snprintf(target, sizeof target, "/v1/kv/lp?index=%" PRIu64 "&wait=10s", r1);
    send_req(&a, "GET", target, NULL, NULL, 0);
    ck_assert_msg(quiet_for(&a, 200), "answered before any change");
    puts_(&b, "lp-other", "x"); /* another key (even one it prefixes) does not */
    ck_assert_msg(quiet_for(&a, 200), "woken by another key");
    r2 = puts_(&b, "lp", "v2");
    wait_reply(&a, &r);
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "lp", 2, "v2", 2, r1, r2, 2);
    ck_assert_uint_ge(hdr_u64(&r, "X-Ballast-Revision"), r2);

    /* an index the key already moved past answers at once */
    snprintf(target, sizeof target, "/v1/kv/lp?index=%" PRIu64 "&wait=10s", r1);
    t0 = uv_hrtime();
    get(&a, &r, target);
    ck_assert_int_eq(r.status, 200);
    check_kv(r.json, "lp", 2, "v2", 2, r1, r2, 2);
    ck_assert_uint_lt(uv_hrtime() - t0, 2000000000ull);

    /* no change: the wait passes and the current state comes back */
    snprintf(target, sizeof target, "/v1/kv/lp?index=%" PRIu64 "&wait=300ms", r2);
    t0 = uv_hrtime();
    get(&a, &r, target);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_ge(uv_hrtime() - t0, 250000000ull);
    check_kv(r.json, "lp", 2, "v2", 2, r1, r2, 2);

    /* a prefix poll wakes on any key of the range; a delete wakes a key poll */
    snprintf(target, sizeof target, "/v1/kv/lpp/?prefix&index=%" PRIu64 "&wait=10s", r2);
    send_req(&a, "GET", target, NULL, NULL, 0);
    ck_assert_msg(quiet_for(&a, 100), "prefix poll answered before any change");
    r3 = puts_(&b, "lpp/x", "1");
    wait_reply(&a, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "count"), 1);
    ck_assert_uint_eq(ju(r.json, "revision"), r3);
    snprintf(target, sizeof target, "/v1/kv/lp?index=%" PRIu64 "&wait=10s", r3);
    send_req(&a, "GET", target, NULL, NULL, 0);
    ck_assert_msg(quiet_for(&a, 100), "answered before the delete");
    req(&b, &r, "DELETE", "/v1/kv/lp", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    wait_reply(&a, &r);
    expect_error(&r, 404, "not_found");

    /* a poll whose client goes away stops waiting (swept every second) */
    client_open(&gone);
    snprintf(target, sizeof target, "/v1/kv/lp?index=%" PRIu64 "&wait=60s", r3 + 10);
    send_req(&gone, "GET", target, NULL, NULL, 0);
    run_for(50);
    ck_assert_uint_eq(bl_watch_hub_waits(api.hub), 1);
    client_close(&gone);
    t0 = deadline(3000);
    while (bl_watch_hub_waits(api.hub) > 0 && uv_hrtime() < t0) {
        step(-1);
    }
    ck_assert_uint_eq(bl_watch_hub_waits(api.hub), 0);

    /* one left waiting when the member stops gets 503 (teardown) */
    send_req(&a, "GET", target, NULL, NULL, 0);
    run_for(20);
    ck_assert_uint_eq(bl_watch_hub_waits(api.hub), 1);
    resp_free(&r);
    client_close(&a);
    client_close(&b);
}
END_TEST

/* A chunked stream being read: its head, and the body so far (dechunked). */
struct stream {
    char head[2048];
    char *body;
    size_t len;
    bool ended;
};

/* Move whatever whole chunks @c holds into @s. */
static void stream_take(struct client *c, struct stream *s)
{
    char *end;
    if (c->len == 0) {
        return; /* nothing arrived yet (c->buf may still be NULL) */
    }
    if (s->head[0] == '\0') {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL) {
            return;
        }
        size_t n = (size_t)(end - c->buf) + 4;
        ck_assert_uint_lt(n, sizeof s->head);
        memcpy(s->head, c->buf, n);
        s->head[n] = '\0';
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
    }
    while (!s->ended) {
        char *eol = memmem(c->buf, c->len, "\r\n", 2);
        size_t size, line;
        if (eol == NULL) {
            return;
        }
        size = strtoul(c->buf, NULL, 16);
        line = (size_t)(eol - c->buf) + 2;
        if (c->len < line + size + 2) {
            return;
        }
        s->body = realloc(s->body, s->len + size + 1);
        ck_assert_ptr_nonnull(s->body);
        memcpy(s->body + s->len, c->buf + line, size);
        s->len += size;
        s->body[s->len] = '\0';
        memmove(c->buf, c->buf + line + size + 2, c->len - line - size - 2);
        c->len -= line + size + 2;
        s->ended = size == 0;
    }
}

/* Read @s until it holds @n lines that start with @lead (bounded). */
static void stream_lines(struct client *c, struct stream *s, const char *lead, unsigned n)
{
    uint64_t end = deadline(WAIT_MS);
    for (;;) {
        unsigned have = 0;
        stream_take(c, s);
        for (const char *p = s->body; p != NULL && p < s->body + s->len;) {
            const char *nl = strchr(p, '\n');
            if (nl == NULL) {
                break;
            }
            have += strncmp(p, lead, strlen(lead)) == 0;
            p = nl + 1;
        }
        if (have >= n) {
            return;
        }
        ck_assert_msg(!c->eof && !s->ended, "stream ended with %u of %u events: %s", have, n,
                      s->body ? s->body : "");
        ck_assert_msg(uv_hrtime() < end, "%u of %u events in time: %s", have, n,
                      s->body ? s->body : "");
        client_pump(c);
    }
}

/* The @i-th NDJSON line of @s, parsed (the caller frees it). */
static json_t *stream_event(const struct stream *s, unsigned i)
{
    const char *p = s->body;
    json_error_t err;
    json_t *j;
    for (unsigned k = 0; k < i; k++) {
        p = strchr(p, '\n') + 1;
    }
    j = json_loadb(p, (size_t)(strchr(p, '\n') - p), 0, &err);
    ck_assert_msg(j != NULL, "event %u: %s", i, err.text);
    return j;
}

static void check_event(const struct stream *s, unsigned i, const char *type, const char *key,
                        const char *val, uint64_t rev)
{
    json_t *e = stream_event(s, i);
    const json_t *kv = jfield(e, "kv");
    ck_assert_str_eq(js(e, "type"), type);
    ck_assert_uint_eq(ju(e, "revision"), rev);
    ck_assert_str_eq(js(kv, "key"), b64(key, strlen(key)));
    ck_assert_uint_eq(ju(kv, "mod_revision"), rev);
    if (val != NULL) {
        ck_assert_str_eq(js(kv, "value"), b64(val, strlen(val)));
    } else {
        ck_assert_ptr_null(json_object_get(kv, "value"));
    }
    json_decref(e);
}

START_TEST(test_watch_stream)
{
    struct client c, w, sse;
    struct resp r = {0};
    struct stream s = {0}, s2 = {0};
    uint64_t r1, r2, r3, r4, r5, oldest;
    char target[128];

    client_open(&c);
    client_open(&w);
    client_open(&sse);
    r1 = puts_(&c, "wa", "1");
    r2 = puts_(&c, "wb", "x");
    r3 = puts_(&c, "wa", "2");
    req(&c, &r, "DELETE", "/v1/kv/wa", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    r4 = ju(r.json, "revision");

    /* from a past revision: that key's events, in order, then live ones */
    snprintf(target, sizeof target, "/v1/watch/wa?rev=%" PRIu64, r1);
    send_req(&w, "GET", target, NULL, NULL, 0);
    stream_lines(&w, &s, "{", 3);
    ck_assert_msg(strncmp(s.head, "HTTP/1.1 200", 12) == 0, "%s", s.head);
    ck_assert_ptr_nonnull(strcasestr(s.head, "Content-Type: application/x-ndjson"));
    ck_assert_ptr_nonnull(strcasestr(s.head, "Transfer-Encoding: chunked"));
    ck_assert_ptr_nonnull(strcasestr(s.head, "X-Ballast-Revision:"));
    check_event(&s, 0, "put", "wa", "1", r1);
    check_event(&s, 1, "put", "wa", "2", r3);
    check_event(&s, 2, "delete", "wa", NULL, r4);
    r5 = puts_(&c, "wa", "3");
    stream_lines(&w, &s, "{", 4);
    check_event(&s, 3, "put", "wa", "3", r5);

    /* a prefix as SSE: every key of the range */
    snprintf(target, sizeof target, "/v1/watch/w?prefix&rev=%" PRIu64, r1);
    send_req(&sse, "GET", target, "Accept: text/event-stream\r\n", NULL, 0);
    stream_lines(&sse, &s2, "data: {", 5);
    ck_assert_ptr_nonnull(strcasestr(s2.head, "Content-Type: text/event-stream"));
    ck_assert_msg(strstr(s2.body, "\"revision\":") != NULL, "%s", s2.body);
    (void)r2;

    /* below the kept history (20 revisions here): 410 with the oldest kept */
    for (unsigned i = 0; i < 25; i++) {
        puts_(&c, "filler", "f");
    }
    get(&c, &r, "/v1/watch/wa?rev=1");
    ck_assert_int_eq(r.status, 410);
    ck_assert_str_eq(js(jfield(r.json, "error"), "code"), "compacted");
    oldest = ju(jfield(r.json, "error"), "compact_revision");
    ck_assert_uint_gt(oldest, 1);
    snprintf(target, sizeof target, "/v1/watch/wa?rev=%" PRIu64, oldest);
    send_req(&c, "GET", target, NULL, NULL, 0);
    client_pump(&c);
    run_for(50);
    client_pump(&c);
    ck_assert_msg(c.len > 12 && strncmp(c.buf, "HTTP/1.1 200", 12) == 0, "oldest kept: %.*s",
                  (int)c.len, c.buf);

    resp_free(&r);
    free(s.body);
    free(s2.body);
    client_close(&w);
    /* c and sse stay open: teardown ends their streams ("shutdown") */
    ck_assert_uint_ge(bl_watch_hub_count(api.hub), 1);
    client_close(&sse);
    client_close(&c);
}
END_TEST

START_TEST(test_watch_method)
{
    struct client c;
    struct resp r = {0};
    client_open(&c);
    req(&c, &r, "POST", "/v1/watch/wa", NULL, NULL, 0);
    expect_error(&r, 405, "bad_request");
    ck_assert_str_eq(hdr_req(&r, "Allow"), "GET");
    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Compare-and-swap, idempotent retries, headers */

START_TEST(test_cas)
{
    struct client c;
    struct resp r = {0};
    uint64_t r1, r2, r3;

    client_open(&c);
    req(&c, &r, "PUT", "/v1/kv/c?cas=0", NULL, "a", 1);
    ck_assert_int_eq(r.status, 200);
    r1 = ju(r.json, "revision");

    /* cas=0 on a present key fails and changes nothing */
    req(&c, &r, "PUT", "/v1/kv/c?cas=0", NULL, "b", 1);
    expect_error(&r, 412, "cas_failed");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r1);
    get(&c, &r, "/v1/kv/c?raw");
    ck_assert_str_eq(r.body, "a");

    reqf(&c, &r, "PUT", NULL, "c", 1, "/v1/kv/c?cas=%llu", (unsigned long long)r1);
    ck_assert_int_eq(r.status, 200);
    r2 = ju(r.json, "revision");
    ck_assert_uint_eq(r2, r1 + 1);

    /* stale */
    reqf(&c, &r, "PUT", NULL, "d", 1, "/v1/kv/c?cas=%llu", (unsigned long long)r1);
    expect_error(&r, 412, "cas_failed");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r2);
    req(&c, &r, "PUT", "/v1/kv/c?cas=999999", NULL, "d", 1);
    expect_error(&r, 412, "cas_failed");
    get(&c, &r, "/v1/kv/c");
    check_kv(r.json, "c", 1, "c", 1, r1, r2, 2);
    ck_assert_uint_eq(store_revision(&c), r2);

    /* DELETE ?cas */
    reqf(&c, &r, "DELETE", NULL, NULL, 0, "/v1/kv/c?cas=%llu", (unsigned long long)r1);
    expect_error(&r, 412, "cas_failed");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r2);
    reqf(&c, &r, "DELETE", NULL, NULL, 0, "/v1/kv/c?cas=%llu", (unsigned long long)r2);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    r3 = ju(r.json, "revision");
    ck_assert_uint_eq(r3, r2 + 1);

    /* an absent key has no mod_revision to match */
    reqf(&c, &r, "DELETE", NULL, NULL, 0, "/v1/kv/c?cas=%llu", (unsigned long long)r2);
    expect_error(&r, 412, "cas_failed");
    reqf(&c, &r, "PUT", NULL, "e", 1, "/v1/kv/c?cas=%llu", (unsigned long long)r2);
    expect_error(&r, 412, "cas_failed");
    ck_assert_uint_eq(store_revision(&c), r3);
    req(&c, &r, "PUT", "/v1/kv/c?cas=0", NULL, "f", 1);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "revision"), r3 + 1);

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_idempotency)
{
    static const char id64[] = "X-Ballast-Request-Id: "
                               "0123456789012345678901234567890123456789012345678901234567890123"
                               "\r\n";
    struct client c;
    struct resp r = {0};
    uint64_t r1, r2;

    client_open(&c);
    req(&c, &r, "PUT", "/v1/kv/idem", "X-Ballast-Request-Id: req-1\r\n", "first", 5);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(hdr(&r, "X-Ballast-Replayed"));
    r1 = ju(r.json, "revision");

    /* the retry (another body, as a client bug might send) replays */
    req(&c, &r, "PUT", "/v1/kv/idem", "X-Ballast-Request-Id: req-1\r\n", "second", 6);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "revision"), r1);
    ck_assert_str_eq(hdr_req(&r, "X-Ballast-Replayed"), "true");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r1);
    get(&c, &r, "/v1/kv/idem");
    check_kv(r.json, "idem", 4, "first", 5, r1, r1, 1);

    /* another id is another write; 64 bytes is the longest id */
    req(&c, &r, "PUT", "/v1/kv/idem", "X-Ballast-Request-Id: req-2\r\n", "third", 5);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(hdr(&r, "X-Ballast-Replayed"));
    r2 = ju(r.json, "revision");
    ck_assert_uint_eq(r2, r1 + 1);
    req(&c, &r, "PUT", "/v1/kv/idem", id64, "fourth", 6);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "revision"), r2 + 1);
    req(&c, &r, "PUT", "/v1/kv/idem", id64, "fifth", 5);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "revision"), r2 + 1);
    ck_assert_str_eq(hdr_req(&r, "X-Ballast-Replayed"), "true");

    /* a DELETE replays as well, and deletes nothing more */
    puts_(&c, "gone", "x");
    req(&c, &r, "DELETE", "/v1/kv/gone", "X-Ballast-Request-Id: del-1\r\n", NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    r2 = ju(r.json, "revision");
    puts_(&c, "gone", "again");
    req(&c, &r, "DELETE", "/v1/kv/gone", "X-Ballast-Request-Id: del-1\r\n", NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr_req(&r, "X-Ballast-Replayed"), "true");
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    ck_assert_uint_eq(ju(r.json, "revision"), r2);
    get(&c, &r, "/v1/kv/gone?raw");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "again");

    /* a failed compare is recorded too: its retry fails again even though
     * the compare would hold now, and writes nothing */
    req(&c, &r, "PUT", "/v1/kv/gone?cas=0", "X-Ballast-Request-Id: cas-1\r\n", "new", 3);
    expect_error(&r, 412, "cas_failed");
    req(&c, &r, "DELETE", "/v1/kv/gone", NULL, NULL, 0);
    ck_assert_uint_eq(ju(r.json, "deleted"), 1);
    r2 = ju(r.json, "revision");
    req(&c, &r, "PUT", "/v1/kv/gone?cas=0", "X-Ballast-Request-Id: cas-1\r\n", "new", 3);
    expect_error(&r, 412, "cas_failed");
    ck_assert_str_eq(hdr_req(&r, "X-Ballast-Replayed"), "true");
    /* a replay does not move the member's revision back to the recorded one */
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), r2);
    get(&c, &r, "/v1/kv/gone");
    expect_error(&r, 404, "not_found");
    get(&c, &r, "/v1/kv/?prefix&count");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(ju(r.json, "revision"), r2);

    resp_free(&r);
    client_close(&c);
}
END_TEST

START_TEST(test_headers)
{
    struct client c;
    struct resp r = {0};
    uint64_t index, rev;

    client_open(&c);
    /* the headers agree with /v1/status, computed at the same instant */
    get(&c, &r, "/v1/status");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Raft-Term"), ju(r.json, "term"));
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Raft-Index"), ju(r.json, "applied_index"));
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), ju(r.json, "revision"));
    index = ju(r.json, "applied_index");

    /* a write moves the revision and the applied index */
    req(&c, &r, "PUT", "/v1/kv/h", NULL, "v", 1);
    ck_assert_int_eq(r.status, 200);
    rev = ju(r.json, "revision");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    /* The write's own reply already reflects its entry. */
    ck_assert_uint_gt(hdr_u64(&r, "X-Ballast-Raft-Index"), index);
    get(&c, &r, "/v1/kv/h?consistency=serializable");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_gt(hdr_u64(&r, "X-Ballast-Raft-Index"), index);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    ck_assert_uint_ge(hdr_u64(&r, "X-Ballast-Raft-Term"), 1);

    /* error replies carry them too (checked for every reply by wait_reply) */
    get(&c, &r, "/nope");
    ck_assert_int_eq(r.status, 404);
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    get(&c, &r, "/healthz");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    get(&c, &r, "/v1/kv/h?raw");
    ck_assert_uint_eq(hdr_u64(&r, "X-Ballast-Revision"), rev);
    ck_assert_ptr_nonnull(hdr(&r, "Date"));
    ck_assert_str_eq(hdr_req(&r, "Connection"), "keep-alive");

    resp_free(&r);
    client_close(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Malformed HTTP */

START_TEST(test_malformed_http)
{
    static const char *const garbage[] = {
        "THIS IS NOT HTTP\r\n\r\n",
        "\x01\x02garbage\r\n\r\n",
        "GET /v1/kv/x HTTP/9.x\r\n\r\n",
    };
    struct client c;
    struct resp r = {0};

    for (unsigned i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        uint64_t end = deadline(WAIT_MS);
        client_open(&c);
        client_send(&c, garbage[i], strlen(garbage[i]));
        wait_reply(&c, &r);
        expect_error(&r, 400, "bad_request");
        ck_assert_str_eq(hdr_req(&r, "Connection"), "close");
        while (!c.eof && uv_hrtime() < end) {
            client_pump(&c);
        }
        ck_assert_msg(c.eof, "the server kept the connection after garbage #%u", i);
        ck_assert_uint_eq(c.len, 0);
        client_close(&c);
    }

    /* a good request, then garbage, on one connection: a reply each, then
     * the connection closes */
    client_open(&c);
    {
        static const char two[] = "GET /healthz HTTP/1.1\r\n\r\nBAD\x7f\r\n\r\n";
        client_send(&c, two, sizeof two - 1);
    }
    wait_reply(&c, &r);
    ck_assert_int_eq(r.status, 200);
    wait_reply(&c, &r);
    expect_error(&r, 400, "bad_request");
    client_close(&c);

    /* the server keeps serving new connections */
    client_open(&c);
    get(&c, &r, "/healthz");
    ck_assert_int_eq(r.status, 200);
    puts_(&c, "after", "garbage");
    get(&c, &r, "/v1/kv/after?raw");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "garbage");

    resp_free(&r);
    client_close(&c);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_routing);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_kv_put_get);
    tcase_add_test(tc, test_kv_raw);
    tcase_add_test(tc, test_kv_prev_and_delete);
    tcase_add_test(tc, test_kv_range_paging);
    tcase_add_test(tc, test_kv_slash_keys);
    tcase_add_test(tc, test_key_limits);
    tcase_add_test(tc, test_msgpack);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_cas);
    tcase_add_test(tc, test_idempotency);
    tcase_add_test(tc, test_headers);
    tcase_add_test(tc, test_malformed_http);
    tcase_add_test(tc, test_txn_and_own_lease);
    tcase_add_test(tc, test_long_poll);
    tcase_add_test(tc, test_watch_stream);
    tcase_add_test(tc, test_watch_method);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    int failed;

    signal(SIGPIPE, SIG_IGN);
    /* a test that fails exits without its teardown: its data dir goes
     * with this one */
    snprintf(suite_dir, sizeof suite_dir, "/tmp/ballast-test-api-XXXXXX");
    if (mkdtemp(suite_dir) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(suite_dir);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
