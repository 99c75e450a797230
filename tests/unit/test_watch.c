/* Unit tests for server/watch.c: watches and long-polls against a
 * single-member cluster in this process, over real sockets.
 *
 * The fixture starts a member on a fresh libuv loop (a temporary data dir,
 * a peer port the system picked), waits until it leads, makes a watch hub,
 * and starts an HTTP server (port 0) whose handler does what the API's
 * watch route will do: GET /w/KEY?prefix&rev=N&fmt=ndjson|msgpack|sse calls
 * bl_watch_start() and answers its errors itself (410 with
 * {"compact_revision": N}, 400 otherwise). Writes go through
 * bl_member_propose(); after each one the test calls bl_watch_hub_notify()
 * itself, standing in for the API's bl_member_on_revision() subscription.
 *
 * The test thread owns both ends: it steps the loop (UV_RUN_NOWAIT, then a
 * 1 ms poll) between non-blocking reads of plain client sockets, undoes the
 * chunked framing, and splits the body into events (NDJSON lines, SSE
 * "data:" blocks, or msgpack maps, which are turned into the same JSON shape
 * with bytes as base64, so one set of checks serves every format). Every
 * wait is bounded; a test that waits in vain fails instead of hanging. The
 * teardown closes the hub, the HTTP server and the member, checks that the
 * loop has no handle left, and removes the data dir. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "doc.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "member.h"
#include "watch.h"

#define START_WAIT_MS 10000 /* leader elected */
#define WAIT_MS       10000 /* one reply, one write, closing */
#define MAX_EVENTS    4096
#define BIG_VALUE     (32u * 1024u)

/* ------------------------------------------------------------------------ */
/* The member, the hub and the HTTP server under test */

static uv_loop_t loop;
static char suite_dir[64]; /* made by main(), holds every test's data dir */
static char data_dir[96];
static char peer_addr[32], initial_cluster[48];
static struct bl_member *member;
static struct bl_watch_hub *hub;
static struct bl_http_server *srv;
static int http_port;
static bool member_done, hub_done, srv_done;
static uint64_t history_revisions; /* of the member; 0: default */
static struct bl_watch_opts opts;  /* of the hub */
static unsigned request_seq;

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

/* A port free right now on 127.0.0.1. */
static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;
    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* The route: GET /w/KEY?prefix&rev=N&fmt=F. */
static void handler(struct bl_http_exchange *ex, void *arg)
{
    static const struct bl_http_header std = {"X-Test", 6, "yes", 3};
    static const struct bl_http_header json = {"Content-Type", 12, "application/json", 16};
    uint8_t key[BL_KEY_MAX];
    size_t key_len = 0, vlen;
    const char *v;
    uint64_t rev = 0, compact = 0;
    int format = BL_WATCH_NDJSON;
    char body[128];
    int rv, n;

    (void)arg;
    if (ex->path_len < 3 || memcmp(ex->path, "/w/", 3) != 0 || ex->path_len - 3 > sizeof key ||
        bl_http_unescape(ex->path + 3, ex->path_len - 3, key, &key_len) != BL_OK) {
        bl_http_respond(ex, 404, NULL, 0, NULL, 0);
        return;
    }
    if (bl_http_query_get(ex->query, ex->query_len, "rev", &v, &vlen)) {
        rev = strtoull(v, NULL, 10);
    }
    if (bl_http_query_get(ex->query, ex->query_len, "fmt", &v, &vlen)) {
        format = vlen == 7 && memcmp(v, "msgpack", 7) == 0 ? BL_WATCH_MSGPACK
                 : vlen == 3 && memcmp(v, "sse", 3) == 0   ? BL_WATCH_SSE
                 : vlen == 3 && memcmp(v, "bad", 3) == 0   ? 42
                                                           : BL_WATCH_NDJSON;
    }
    rv = bl_watch_start(hub, ex, key, key_len,
                        bl_http_query_get(ex->query, ex->query_len, "prefix", NULL, NULL), rev,
                        format, &std, 1, &compact);
    if (rv == BL_OK) {
        return;
    }
    if (rv == BL_ECOMPACTED) {
        n = snprintf(body, sizeof body, "{\"compact_revision\":%" PRIu64 "}", compact);
    } else {
        n = snprintf(body, sizeof body, "{\"code\":\"%s\"}", bl_code_name(rv));
    }
    bl_http_respond(ex, bl_code_http_status(rv), &json, 1, body, (size_t)n);
}

static void setup(void)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    struct bl_member_config mc;
    uint64_t end;
    int rv;

    snprintf(data_dir, sizeof data_dir, "%s/member-XXXXXX", suite_dir);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    snprintf(peer_addr, sizeof peer_addr, "127.0.0.1:%d", free_port());
    snprintf(initial_cluster, sizeof initial_cluster, "1=%s", peer_addr);
    bl_log_set_level(BL_LOG_WARN);
    ck_assert_int_eq(uv_loop_init(&loop), 0);

    memset(&mc, 0, sizeof mc);
    mc.id = 1;
    mc.name = "m1";
    mc.data_dir = data_dir;
    mc.peer_listen = peer_addr;
    mc.client_advertise = "127.0.0.1:1";
    mc.initial_cluster = initial_cluster;
    mc.history_revisions = history_revisions;
    member = NULL;
    hub = NULL;
    srv = NULL;
    member_done = hub_done = srv_done = false;
    rv = bl_member_start(&loop, &mc, &member, errmsg);
    ck_assert_msg(rv == 0, "member: %s", errmsg);
    end = deadline(START_WAIT_MS);
    while (!bl_member_is_leader(member)) {
        ck_assert_msg(uv_hrtime() < end, "no leader in time");
        step(-1);
    }
    ck_assert_int_eq(bl_watch_hub_new(&loop, member, &opts, &hub), BL_OK);
    rv = bl_http_server_start(&loop, "127.0.0.1:0", NULL, handler, NULL, &srv, errmsg);
    ck_assert_msg(rv == 0, "http: %s", errmsg);
    http_port = bl_http_server_port(srv);
}

static void hub_closed_cb(void *arg)
{
    (void)arg;
    hub_done = true;
}

static void srv_closed_cb(void *arg)
{
    (void)arg;
    srv_done = true;
}

static void member_closed_cb(void *arg)
{
    (void)arg;
    member_done = true;
}

static void teardown(void)
{
    if (hub != NULL) {
        bl_watch_hub_close(hub, hub_closed_cb, NULL);
        hub = NULL;
        ck_assert_msg(run_until(&hub_done, WAIT_MS), "hub not closed in time");
    }
    bl_http_server_close(srv, srv_closed_cb, NULL);
    ck_assert_msg(run_until(&srv_done, WAIT_MS), "http server not closed in time");
    bl_member_close(member, member_closed_cb, NULL);
    ck_assert_msg(run_until(&member_done, WAIT_MS), "member not closed in time");
    run_for(5);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    remove_tree(data_dir);
}

/* ------------------------------------------------------------------------ */
/* Writes */

struct proposal {
    bool done;
    int status;
    uint64_t revision;
};

static void propose_cb(void *arg, int status, const struct bl_apply_result *res)
{
    struct proposal *p = arg;
    p->done = true;
    p->status = status;
    p->revision = status == BL_OK ? res->revision : 0;
}

/* Commit @cmd and tell the hub; returns the store revision after it. */
static uint64_t commit(struct bl_cmd *cmd)
{
    struct proposal p = {0};
    char rid[32];
    snprintf(rid, sizeof rid, "test-%u", ++request_seq);
    cmd->request_id.p = (const uint8_t *)rid;
    cmd->request_id.len = strlen(rid);
    ck_assert_int_eq(bl_member_propose(member, cmd, propose_cb, &p), BL_OK);
    ck_assert_msg(run_until(&p.done, WAIT_MS), "write not applied in time");
    ck_assert_int_eq(p.status, BL_OK);
    bl_watch_hub_notify(hub, p.revision);
    return p.revision;
}

static uint64_t put_bytes(const char *key, const void *value, size_t len)
{
    struct bl_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = BL_CMD_PUT;
    cmd.key.p = (const uint8_t *)key;
    cmd.key.len = strlen(key);
    cmd.value.p = value;
    cmd.value.len = len;
    cmd.cas = BL_CAS_NONE;
    return commit(&cmd);
}

static uint64_t put(const char *key, const char *value)
{
    return put_bytes(key, value, strlen(value));
}

static uint64_t del(const char *key)
{
    struct bl_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = BL_CMD_DELETE;
    cmd.key.p = (const uint8_t *)key;
    cmd.key.len = strlen(key);
    cmd.cas = BL_CAS_NONE;
    return commit(&cmd);
}

static uint64_t del_prefix(const char *prefix)
{
    struct bl_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = BL_CMD_DELETE_RANGE;
    cmd.key.p = (const uint8_t *)prefix;
    cmd.key.len = strlen(prefix);
    return commit(&cmd);
}

static uint64_t current_revision(void)
{
    uint64_t term, applied, revision;
    bl_member_indexes(member, &term, &applied, &revision);
    return revision;
}

/* ------------------------------------------------------------------------ */
/* The client: one watch stream on a raw socket */

struct watch_client {
    int fd;
    int format;
    char *buf; /* bytes received and not decoded yet */
    size_t len, cap;
    bool eof;
    int status;
    char head[4096];
    bool head_done;
    bool chunked;
    size_t content_length; /* when not chunked */
    bool ended;            /* the last chunk (or the whole body) arrived */
    char *body;            /* decoded body bytes not split into events yet */
    size_t body_len, body_cap;
    json_t *events[MAX_EVENTS];
    unsigned n_events;
};

/* Connect to the server (@rcvbuf > 0: with that receive buffer, so that a
 * client that stops reading fills up quickly) and send GET @target. */
static void wc_open(struct watch_client *c, const char *target, int format, int rcvbuf)
{
    struct sockaddr_in sa;
    char req[512];
    int one = 1;
    int n;

    memset(c, 0, sizeof *c);
    c->format = format;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(c->fd, 0);
    if (rcvbuf > 0) {
        ck_assert_int_eq(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ck_assert_int_eq(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
    n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target);
    ck_assert(n > 0 && (size_t)n < sizeof req);
    ck_assert_int_eq(send(c->fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

static void wc_close(struct watch_client *c)
{
    for (unsigned i = 0; i < c->n_events; i++) {
        json_decref(c->events[i]);
    }
    free(c->buf);
    free(c->body);
    if (c->fd >= 0) {
        close(c->fd);
    }
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Header @name of the reply head, or NULL (a pointer into a static copy). */
static const char *wc_header(const struct watch_client *c, const char *name)
{
    static char value[256];
    size_t n = strlen(name);
    const char *p = strstr(c->head, "\r\n");
    while (p != NULL) {
        const char *line = p + 2;
        const char *eol = strstr(line, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (len > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;
            while (*v == ' ') {
                v++;
            }
            len -= (size_t)(v - line);
            ck_assert_uint_lt(len, sizeof value);
            memcpy(value, v, len);
            value[len] = '\0';
            return value;
        }
        p = eol;
    }
    return NULL;
}

static void body_append(struct watch_client *c, const char *p, size_t n)
{
    if (c->body_cap - c->body_len < n + 1) {
        c->body_cap = (c->body_len + n + 1) * 2;
        c->body = realloc(c->body, c->body_cap);
        ck_assert_ptr_nonnull(c->body);
    }
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
}

/* A msgpack object as JSON: bin as base64 text, as the JSON format has it. */
static json_t *mp_to_json(const msgpack_object *o)
{
    json_t *j;
    char *b64;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        b64 = malloc(o->via.bin.size / 3 * 4 + 5);
        ck_assert_ptr_nonnull(b64);
        b64[bl_base64_encode(o->via.bin.ptr, o->via.bin.size, b64)] = '\0';
        j = json_string(b64);
        free(b64);
        return j;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            ck_assert_int_eq(kv->key.type, MSGPACK_OBJECT_STR);
            json_object_setn_new(j, kv->key.via.str.ptr, kv->key.via.str.size,
                                 mp_to_json(&kv->val));
        }
        return j;
    default:
        ck_abort_msg("unexpected msgpack type %d", (int)o->type);
        return NULL;
    }
}

static void add_event(struct watch_client *c, json_t *e)
{
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_lt(c->n_events, MAX_EVENTS);
    c->events[c->n_events++] = e;
}

/* Split whole events off the front of the decoded body. */
static void split_events(struct watch_client *c)
{
    size_t used = 0;
    json_error_t err;
    for (;;) {
        const char *p = c->body + used;
        size_t left = c->body_len - used;
        const char *end;
        if (left == 0) {
            break;
        }
        if (c->format == BL_WATCH_MSGPACK) {
            msgpack_unpacked u;
            size_t off = 0;
            msgpack_unpacked_init(&u);
            if (msgpack_unpack_next(&u, p, left, &off) != MSGPACK_UNPACK_SUCCESS) {
                msgpack_unpacked_destroy(&u);
                break;
            }
            ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_MAP);
            add_event(c, mp_to_json(&u.data));
            msgpack_unpacked_destroy(&u);
            used += off;
        } else if (c->format == BL_WATCH_SSE) {
            end = memmem(p, left, "\n\n", 2);
            if (end == NULL) {
                break;
            }
            ck_assert_msg(strncmp(p, "data: ", 6) == 0, "SSE block: %.40s", p);
            ck_assert_ptr_null(memchr(p, '\n', (size_t)(end - p)));
            add_event(c, json_loadb(p + 6, (size_t)(end - p) - 6, 0, &err));
            used += (size_t)(end - p) + 2;
        } else {
            end = memchr(p, '\n', left);
            if (end == NULL) {
                break;
            }
            add_event(c, json_loadb(p, (size_t)(end - p), 0, &err));
            used += (size_t)(end - p) + 1;
        }
    }
    if (used > 0) {
        memmove(c->body, c->body + used, c->body_len - used);
        c->body_len -= used;
    }
}

/* Decode what can be decoded of the received bytes: the head, then chunks
 * (or a Content-Length body). */
static void wc_decode(struct watch_client *c)
{
    size_t pos = 0;
    if (!c->head_done) {
        const char *end = c->len > 0 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        const char *v;
        if (end == NULL) {
            return;
        }
        pos = (size_t)(end - c->buf) + 4;
        ck_assert_uint_lt(pos, sizeof c->head);
        memcpy(c->head, c->buf, pos - 4);
        c->head[pos - 4] = '\0';
        ck_assert_int_eq(sscanf(c->head, "HTTP/1.1 %d", &c->status), 1);
        c->head_done = true;
        v = wc_header(c, "Transfer-Encoding");
        c->chunked = v != NULL && strcmp(v, "chunked") == 0;
        if (!c->chunked) {
            v = wc_header(c, "Content-Length");
            ck_assert_ptr_nonnull(v);
            c->content_length = strtoul(v, NULL, 10);
        }
    }
    while (!c->ended) {
        if (!c->chunked) {
            size_t take = c->len - pos;
            if (take > c->content_length - c->body_len) {
                take = c->content_length - c->body_len;
            }
            body_append(c, c->buf + pos, take);
            pos += take;
            c->ended = c->body_len == c->content_length;
            break;
        }
        const char *eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2);
        size_t size, line;
        if (eol == NULL) {
            break;
        }
        line = (size_t)(eol - (c->buf + pos));
        size = strtoul(c->buf + pos, NULL, 16);
        if (c->len - pos < line + 2 + size + 2) {
            break;
        }
        ck_assert(memcmp(c->buf + pos + line + 2 + size, "\r\n", 2) == 0);
        body_append(c, c->buf + pos + line + 2, size);
        pos += line + 2 + size + 2;
        c->ended = size == 0;
    }
    if (pos > 0) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
    }
    if (c->chunked) {
        split_events(c);
    }
}

/* Step the loop and take in whatever has arrived (when @read). */
static void wc_pump(struct watch_client *c)
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
            c->eof = true;
        } else {
            break;
        }
    }
    wc_decode(c);
}

static void wc_wait_head(struct watch_client *c)
{
    uint64_t end = deadline(WAIT_MS);
    while (!c->head_done) {
        ck_assert_msg(!c->eof, "connection closed before the reply head");
        ck_assert_msg(uv_hrtime() < end, "no reply head in time");
        wc_pump(c);
    }
}

/* Wait until @n events have arrived. */
static void wc_wait_events(struct watch_client *c, unsigned n)
{
    uint64_t end = deadline(WAIT_MS);
    while (c->n_events < n) {
        ck_assert_msg(!c->ended && !c->eof, "stream ended after %u of %u events", c->n_events, n);
        ck_assert_msg(uv_hrtime() < end, "%u of %u events in time", c->n_events, n);
        wc_pump(c);
    }
}

static void wc_wait_end(struct watch_client *c)
{
    uint64_t end = deadline(WAIT_MS);
    while (!c->ended) {
        ck_assert_msg(!c->eof, "connection closed before the end of the reply");
        ck_assert_msg(uv_hrtime() < end, "reply not ended in time");
        wc_pump(c);
    }
}

/* Open a watch on @target and check the head of the stream. */
static void wc_watch(struct watch_client *c, const char *target, int format, int rcvbuf)
{
    static const char *const TYPES[] = {"application/x-ndjson", "application/msgpack",
                                        "text/event-stream"};
    wc_open(c, target, format, rcvbuf);
    wc_wait_head(c);
    ck_assert_msg(c->status == 200, "status %d: %s", c->status, c->body ? c->body : "");
    ck_assert(c->chunked);
    ck_assert_str_eq(wc_header(c, "Content-Type"), TYPES[format]);
    ck_assert_str_eq(wc_header(c, "X-Test"), "yes");
}

/* ------------------------------------------------------------------------ */
/* Checking events */

static const char *b64(const char *s)
{
    static char out[256];
    size_t n = strlen(s);
    ck_assert_uint_lt(n / 3 * 4 + 5, sizeof out);
    out[bl_base64_encode(s, n, out)] = '\0';
    return out;
}

static uint64_t ju(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v) && json_integer_value(v) >= 0, "'%s' is not a number", k);
    return (uint64_t)json_integer_value(v);
}

static const char *js(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_string(v), "'%s' is not a string", k);
    return json_string_value(v);
}

/* A put event of @key = @value at @revision (created at @create, @version). */
static void check_put(const json_t *e, const char *key, const char *value, uint64_t revision,
                      uint64_t create, uint64_t version)
{
    const json_t *kv = json_object_get(e, "kv");
    ck_assert_uint_eq(json_object_size(e), 3);
    ck_assert_str_eq(js(e, "type"), "put");
    ck_assert_uint_eq(ju(e, "revision"), revision);
    ck_assert_msg(json_is_object(kv), "no kv");
    ck_assert_uint_eq(json_object_size(kv), 6);
    ck_assert_str_eq(js(kv, "key"), b64(key));
    if (value != NULL) {
        ck_assert_str_eq(js(kv, "value"), b64(value));
    }
    ck_assert_uint_eq(ju(kv, "mod_revision"), revision);
    ck_assert_uint_eq(ju(kv, "create_revision"), create);
    ck_assert_uint_eq(ju(kv, "version"), version);
    ck_assert_uint_eq(ju(kv, "lease"), 0);
}

static void check_delete(const json_t *e, const char *key, uint64_t revision)
{
    const json_t *kv = json_object_get(e, "kv");
    ck_assert_uint_eq(json_object_size(e), 3);
    ck_assert_str_eq(js(e, "type"), "delete");
    ck_assert_uint_eq(ju(e, "revision"), revision);
    ck_assert_msg(json_is_object(kv), "no kv");
    ck_assert_uint_eq(json_object_size(kv), 5);
    ck_assert_ptr_null(json_object_get(kv, "value"));
    ck_assert_str_eq(js(kv, "key"), b64(key));
    ck_assert_uint_eq(ju(kv, "mod_revision"), revision);
}

static void check_cancelled(const json_t *e, const char *reason, uint64_t revision)
{
    ck_assert_uint_eq(json_object_size(e), 3);
    ck_assert_str_eq(js(e, "type"), "cancelled");
    ck_assert_str_eq(js(e, "reason"), reason);
    ck_assert_uint_eq(ju(e, "revision"), revision);
}

/* Events of @c that are changes (puts and deletes), not progress. */
static unsigned n_changes(const struct watch_client *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n_events; i++) {
        n += strcmp(js(c->events[i], "type"), "progress") != 0;
    }
    return n;
}

/* Step until the hub has @n watches. */
static void wait_count(unsigned n)
{
    uint64_t end = deadline(WAIT_MS);
    while (bl_watch_hub_count(hub) != n) {
        ck_assert_msg(uv_hrtime() < end, "%u watches, want %u", bl_watch_hub_count(hub), n);
        step(-1);
    }
}

/* ------------------------------------------------------------------------ */
/* Long-poll results */

struct wait_result {
    bool done;
    int status;
    unsigned calls;
    uint64_t at; /* uv_hrtime() of the call */
};

static void wait_cb(void *arg, int status)
{
    struct wait_result *r = arg;
    r->done = true;
    r->status = status;
    r->calls++;
    r->at = uv_hrtime();
}

static struct bl_watch_wait *wait_on(const char *key, bool prefix, uint64_t index,
                                     unsigned timeout_ms, struct wait_result *r)
{
    struct bl_watch_wait *w;
    memset(r, 0, sizeof *r);
    w = bl_watch_wait(hub, (const uint8_t *)key, strlen(key), prefix, index, timeout_ms, wait_cb,
                      r);
    ck_assert_ptr_nonnull(w);
    ck_assert(!r->done); /* never called back from inside the call */
    return w;
}

/* ------------------------------------------------------------------------ */
/* Tests */

/* Events from a past revision, in order, exactly once; then live ones. */
START_TEST(test_history_then_live)
{
    struct watch_client c;
    uint64_t r1, r2, r3, r4, r5;

    r1 = put("a", "1");
    r2 = put("b", "2");
    r3 = put("a", "3");
    r4 = del("a");
    ck_assert_uint_eq(r2, r1 + 1);
    ck_assert_uint_eq(r4, r3 + 1);

    char target[64];
    snprintf(target, sizeof target, "/w/a?rev=%" PRIu64, r1);
    wc_watch(&c, target, BL_WATCH_NDJSON, 0);
    wc_wait_events(&c, 3);
    check_put(c.events[0], "a", "1", r1, r1, 1);
    check_put(c.events[1], "a", "3", r3, r1, 2);
    check_delete(c.events[2], "a", r4);
    ck_assert_uint_eq(bl_watch_hub_count(hub), 1);

    r5 = put("a", "4");
    put("c", "x");
    put("ab", "not a");
    wc_wait_events(&c, 4);
    check_put(c.events[3], "a", "4", r5, r5, 1);
    /* nothing more, and nothing twice (progress events may come) */
    for (int i = 0; i < 100; i++) {
        wc_pump(&c);
    }
    ck_assert_uint_eq(n_changes(&c), 4);
    ck_assert(!c.ended);

    /* the client leaves: the hub notices and lets go */
    wc_close(&c);
    wait_count(0);
}
END_TEST

/* A prefix watch in msgpack: only keys under the prefix (the watch is on
 * "p/"; the range delete on "p" also removes "p", which it does not see). */
START_TEST(test_prefix_msgpack)
{
    struct watch_client c;
    uint64_t r1, r3, r5;
    char target[64];

    r1 = put("p/1", "one");
    put("q/1", "other");
    r3 = put("p/2", "two");
    put("p", "not under p/");
    snprintf(target, sizeof target, "/w/p%%2F?prefix&fmt=msgpack&rev=%" PRIu64, r1);
    wc_watch(&c, target, BL_WATCH_MSGPACK, 0);
    wc_wait_events(&c, 2);
    check_put(c.events[0], "p/1", "one", r1, r1, 1);
    check_put(c.events[1], "p/2", "two", r3, r3, 1);
    put("q/2", "other");
    r5 = put("p/1", "again");
    wc_wait_events(&c, 3);
    check_put(c.events[2], "p/1", "again", r5, r1, 2);
    /* one revision, several events, in the order they were made */
    r5 = del_prefix("p");
    wc_wait_events(&c, 5);
    check_delete(c.events[3], "p/1", r5);
    check_delete(c.events[4], "p/2", r5);
    run_for(50);
    wc_pump(&c);
    ck_assert_uint_eq(n_changes(&c), 5);
    wc_close(&c);
}
END_TEST

/* The default start is the next revision: only new events, here as SSE. A
 * watch of every key (empty prefix) sees them all. */
START_TEST(test_live_sse)
{
    struct watch_client c, all;
    uint64_t r;

    put("s", "before");
    wc_watch(&c, "/w/s?fmt=sse", BL_WATCH_SSE, 0);
    ck_assert_str_eq(wc_header(&c, "Cache-Control"), "no-cache");
    wc_watch(&all, "/w/?prefix", BL_WATCH_NDJSON, 0);
    wait_count(2);
    r = put("s", "after");
    wc_wait_events(&c, 1);
    check_put(c.events[0], "s", "after", r, r - 1, 2);
    wc_wait_events(&all, 1);
    check_put(all.events[0], "s", "after", r, r - 1, 2);
    r = put("t", "x");
    wc_wait_events(&all, 2);
    check_put(all.events[1], "t", "x", r, r, 1);
    wc_close(&c);
    wc_close(&all);
}
END_TEST

/* Bad requests are the caller's to answer; nothing is streamed. */
START_TEST(test_bad_request)
{
    struct watch_client c;
    wc_open(&c, "/w/", BL_WATCH_NDJSON, 0); /* empty key without prefix */
    wc_wait_head(&c);
    ck_assert_int_eq(c.status, 400);
    wc_wait_end(&c);
    ck_assert_str_eq(c.body, "{\"code\":\"bad_request\"}");
    wc_close(&c);
    wc_open(&c, "/w/k?fmt=bad", BL_WATCH_NDJSON, 0);
    wc_wait_head(&c);
    ck_assert_int_eq(c.status, 400);
    wc_close(&c);
    ck_assert_uint_eq(bl_watch_hub_count(hub), 0);
}
END_TEST

/* A client that stops reading while large values are written is cut off
 * with a final "slow" event naming the first revision it did not get;
 * writers never wait for it. */
START_TEST(test_slow_watcher)
{
    struct watch_client c;
    char *value = malloc(BIG_VALUE);
    uint64_t first = 0, last = 0, next;
    unsigned i, writes = 0;

    ck_assert_ptr_nonnull(value);
    wc_watch(&c, "/w/big", BL_WATCH_NDJSON, 4096);
    wait_count(1);
    /* the client reads nothing from here on */
    for (i = 0; i < 400 && bl_watch_hub_count(hub) == 1; i++) {
        memset(value, 'a' + (int)(i % 26), BIG_VALUE);
        last = put_bytes("big", value, BIG_VALUE);
        if (first == 0) {
            first = last;
        }
        writes++;
        step(-1);
    }
    free(value);
    wait_count(0);
    ck_assert_uint_lt(writes, 400); /* cut off long before the writes ended */

    /* now read it all: events in order, then the cancelled event */
    wc_wait_end(&c);
    ck_assert_uint_ge(c.n_events, 2);
    for (i = 0; i + 1 < c.n_events; i++) {
        const json_t *e = c.events[i];
        ck_assert_str_eq(js(e, "type"), "put");
        ck_assert_uint_eq(ju(e, "revision"), first + i);
    }
    next = first + c.n_events - 1;
    check_cancelled(c.events[c.n_events - 1], "slow", next);
    ck_assert_uint_gt(last + 1 - next, opts.max_lag); /* it was that far behind */
    wc_close(&c);
}
END_TEST

/* A client far behind that reads is not "slow": it catches up, however
 * much more than max_lag it is behind; and an event larger than
 * max_buffered goes out alone. */
START_TEST(test_catch_up)
{
    struct watch_client c;
    char *value = malloc(3 * BIG_VALUE);
    uint64_t first = 0, last = 0, big;
    char target[64];
    unsigned i, n = 10 * (unsigned)opts.max_lag;

    ck_assert_ptr_nonnull(value);
    for (i = 0; i < n; i++) {
        memset(value, 'a' + (int)(i % 26), BIG_VALUE);
        last = put_bytes("big", value, BIG_VALUE);
        first = first == 0 ? last : first;
    }
    snprintf(target, sizeof target, "/w/big?rev=%" PRIu64, first);
    wc_watch(&c, target, BL_WATCH_NDJSON, 0);
    wc_wait_events(&c, n);
    for (i = 0; i < n; i++) {
        ck_assert_str_eq(js(c.events[i], "type"), "put");
        ck_assert_uint_eq(ju(c.events[i], "revision"), first + i);
    }
    memset(value, 'z', 3 * BIG_VALUE);
    ck_assert_uint_gt(3 * BIG_VALUE, opts.max_buffered);
    big = put_bytes("big", value, 3 * BIG_VALUE);
    wc_wait_events(&c, n + 1);
    ck_assert_uint_eq(ju(c.events[n], "revision"), big);
    ck_assert_uint_eq(strlen(js(json_object_get(c.events[n], "kv"), "value")), 4 * BIG_VALUE);
    ck_assert_uint_eq(bl_watch_hub_count(hub), 1);
    free(value);
    wc_close(&c);
}
END_TEST

/* A revision with more matching bytes than max_buffered (a txn of 100
 * puts) is split over rounds and still arrives whole, in order, once. */
START_TEST(test_big_revision)
{
    static struct bl_txn_op ops[100];
    static char keys[100][8];
    struct bl_txn_req txn;
    struct watch_client c;
    struct bl_cmd cmd;
    char value[1024];
    uint64_t r;

    memset(value, 'v', sizeof value);
    memset(&txn, 0, sizeof txn);
    for (unsigned i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof keys[i], "t/%03u", i);
        memset(&ops[i], 0, sizeof ops[i]);
        ops[i].type = BL_OP_PUT;
        ops[i].key.p = (const uint8_t *)keys[i];
        ops[i].key.len = strlen(keys[i]);
        ops[i].value.p = (const uint8_t *)value;
        ops[i].value.len = sizeof value;
    }
    txn.success = ops;
    txn.n_success = 100;
    wc_watch(&c, "/w/t%2F?prefix", BL_WATCH_NDJSON, 0);
    wait_count(1);
    put("t/first", "x");
    memset(&cmd, 0, sizeof cmd);
    cmd.type = BL_CMD_TXN;
    cmd.txn = &txn;
    r = commit(&cmd);
    put("t/last", "x");
    wc_wait_events(&c, 102);
    ck_assert_uint_eq(ju(c.events[0], "revision"), r - 1);
    for (unsigned i = 0; i < 100; i++) {
        check_put(c.events[1 + i], keys[i], NULL, r, r, 1);
    }
    ck_assert_uint_eq(ju(c.events[101], "revision"), r + 1);
    ck_assert_uint_gt(100 * sizeof value, opts.max_buffered);
    run_for(50);
    wc_pump(&c);
    ck_assert_uint_eq(n_changes(&c), 102);
    wc_close(&c);
}
END_TEST

/* Progress events while nothing matches. */
START_TEST(test_progress)
{
    struct watch_client c;
    uint64_t r, t0, end;
    unsigned i;

    wc_watch(&c, "/w/quiet", BL_WATCH_NDJSON, 0);
    wait_count(1);
    t0 = uv_hrtime();
    r = put("loud", "x");
    end = deadline(WAIT_MS);
    for (;;) {
        wc_pump(&c);
        if (c.n_events > 0 && ju(c.events[c.n_events - 1], "revision") == r) {
            break;
        }
        ck_assert_msg(uv_hrtime() < end, "no progress event at revision %" PRIu64, r);
    }
    /* not before progress_ms, and never more often */
    ck_assert_uint_ge(uv_hrtime() - t0, (uint64_t)(opts.progress_ms - 20) * 1000000);
    wc_wait_events(&c, c.n_events + 1);
    for (i = 0; i < c.n_events; i++) {
        ck_assert_uint_eq(json_object_size(c.events[i]), 2);
        ck_assert_str_eq(js(c.events[i], "type"), "progress");
        ck_assert_uint_le(ju(c.events[i], "revision"), r);
    }
    ck_assert_uint_le(c.n_events, (uv_hrtime() - t0) / ((uint64_t)opts.progress_ms * 900000) + 2);
    wc_close(&c);
}
END_TEST

/* Long-poll: wakes on a matching write only; at once when the change is
 * already there; times out; cancelled waits stay silent. */
START_TEST(test_long_poll)
{
    struct wait_result r1, r2, r3, r4, r5;
    struct bl_watch_wait *w5;
    uint64_t rev, t0;

    rev = put("lp", "1");
    wait_on("lp", false, rev, 5000, &r1);
    run_for(50);
    ck_assert(!r1.done);
    put("lpx", "not it");
    put("other", "not it");
    run_for(50);
    ck_assert(!r1.done);
    put("lp", "2");
    ck_assert(run_until(&r1.done, WAIT_MS));
    ck_assert_int_eq(r1.status, BL_OK);

    /* the change after @index is already there */
    wait_on("lp", false, rev, 5000, &r2);
    ck_assert(run_until(&r2.done, WAIT_MS));
    ck_assert_int_eq(r2.status, BL_OK);
    /* a delete counts as a change */
    rev = current_revision();
    del("lp");
    wait_on("lp", false, rev, 5000, &r2);
    ck_assert(run_until(&r2.done, WAIT_MS));
    ck_assert_int_eq(r2.status, BL_OK);

    /* a prefix */
    wait_on("dir/", true, current_revision(), 5000, &r3);
    put("dir", "not under dir/");
    run_for(50);
    ck_assert(!r3.done);
    put("dir/x", "1");
    ck_assert(run_until(&r3.done, WAIT_MS));
    ck_assert_int_eq(r3.status, BL_OK);

    /* a timeout */
    t0 = uv_hrtime();
    wait_on("never", false, current_revision(), 100, &r4);
    put("other", "again");
    ck_assert(run_until(&r4.done, WAIT_MS));
    ck_assert_int_eq(r4.status, BL_ETIMEOUT);
    ck_assert_uint_ge(r4.at - t0, 90 * 1000000ull);

    /* cancelled */
    w5 = wait_on("lp", false, current_revision(), 5000, &r5);
    ck_assert_uint_eq(bl_watch_hub_waits(hub), 1);
    bl_watch_wait_cancel(w5);
    ck_assert_uint_eq(bl_watch_hub_waits(hub), 0);
    put("lp", "3");
    run_for(100);
    ck_assert(!r5.done);

    ck_assert_uint_eq(r1.calls + r2.calls + r3.calls + r4.calls, 4);
}
END_TEST

/* Closing the hub ends every watch with "shutdown" and every wait with
 * BL_ESHUTDOWN. */
START_TEST(test_close)
{
    struct watch_client c;
    struct wait_result r1, r2;
    uint64_t rev;

    rev = put("x", "1");
    wc_watch(&c, "/w/x", BL_WATCH_NDJSON, 0);
    wait_count(1);
    wait_on("x", false, rev, 0, &r1);
    bl_watch_hub_close(hub, hub_closed_cb, NULL);
    /* a wait that comes in while the hub closes is answered too */
    wait_on("y", false, rev, 0, &r2);
    ck_assert(!r1.done || r1.status == BL_ESHUTDOWN);
    ck_assert(run_until(&hub_done, WAIT_MS));
    hub = NULL;
    ck_assert(r1.done && r2.done);
    ck_assert_int_eq(r1.status, BL_ESHUTDOWN);
    ck_assert_int_eq(r2.status, BL_ESHUTDOWN);
    ck_assert_uint_eq(r1.calls, 1);
    wc_wait_end(&c);
    ck_assert_uint_eq(c.n_events, 1);
    check_cancelled(c.events[0], "shutdown", rev + 1);
    wc_close(&c);
}
END_TEST

/* ---- with a history of HISTORY revisions ---- */

#define HISTORY 5

/* Past the kept history: 410 with the oldest revision kept, and waits
 * below it answer at once. */
START_TEST(test_compacted)
{
    struct watch_client c;
    struct wait_result r1;
    uint64_t last = 0, oldest;
    char target[64];
    json_t *j;

    for (int i = 0; i < 20; i++) {
        last = put("k", "v");
    }
    oldest = last - HISTORY + 1;
    wc_open(&c, "/w/k?rev=1", BL_WATCH_NDJSON, 0);
    wc_wait_head(&c);
    ck_assert_msg(c.status == 410,
                  "status %d: is bl_member_config.history_revisions wired to the applier?",
                  c.status);
    wc_wait_end(&c);
    j = json_loads(c.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_uint_eq(ju(j, "compact_revision"), oldest);
    json_decref(j);
    wc_close(&c);

    snprintf(target, sizeof target, "/w/k?rev=%" PRIu64, oldest);
    wc_watch(&c, target, BL_WATCH_NDJSON, 0);
    wc_wait_events(&c, HISTORY);
    for (unsigned i = 0; i < HISTORY; i++) {
        ck_assert_uint_eq(ju(c.events[i], "revision"), oldest + i);
    }
    wc_close(&c);

    /* a key that has not changed, but the history cannot tell */
    wait_on("unchanged", false, 2, 5000, &r1);
    ck_assert(run_until(&r1.done, WAIT_MS));
    ck_assert_int_eq(r1.status, BL_OK);
}
END_TEST

/* A watcher blocked while the history it needs is pruned ends with
 * "compacted" and the oldest revision kept. */
START_TEST(test_compacted_while_blocked)
{
    struct watch_client c;
    char *value = malloc(BIG_VALUE);
    uint64_t first = 0, last = 0;
    const json_t *e;
    unsigned i;

    ck_assert_ptr_nonnull(value);
    wc_watch(&c, "/w/big", BL_WATCH_NDJSON, 4096);
    wait_count(1);
    for (i = 0; i < 400 && bl_watch_hub_count(hub) == 1; i++) {
        memset(value, 'a' + (int)(i % 26), BIG_VALUE);
        last = put_bytes("big", value, BIG_VALUE);
        if (first == 0) {
            first = last;
        }
        step(-1);
    }
    free(value);
    wait_count(0);
    wc_wait_end(&c);
    ck_assert_uint_ge(c.n_events, 2);
    for (i = 0; i + 1 < c.n_events; i++) {
        ck_assert_uint_eq(ju(c.events[i], "revision"), first + i);
    }
    e = c.events[c.n_events - 1];
    ck_assert_str_eq(js(e, "type"), "cancelled");
    ck_assert_str_eq(js(e, "reason"), "compacted");
    /* the oldest kept when it was cut (right after the last write), past
     * what it got */
    ck_assert_uint_eq(ju(e, "revision"), last - HISTORY + 1);
    ck_assert_uint_gt(ju(e, "revision"), first + c.n_events - 2);
    wc_close(&c);
}
END_TEST

static void setup_default(void)
{
    history_revisions = 0;
    memset(&opts, 0, sizeof opts);
    opts.max_lag = 8;
    opts.max_buffered = 64 * 1024;
    opts.slow_ms = 25;
    setup();
}

static void setup_fast_progress(void)
{
    history_revisions = 0;
    memset(&opts, 0, sizeof opts);
    opts.progress_ms = 200;
    setup();
}

static void setup_small_history(void)
{
    history_revisions = HISTORY;
    memset(&opts, 0, sizeof opts);
    opts.max_lag = 1000;
    opts.max_buffered = 64 * 1024;
    setup();
}

static Suite *watch_suite(void)
{
    Suite *s = suite_create("watch");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup_default, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_history_then_live);
    tcase_add_test(tc, test_prefix_msgpack);
    tcase_add_test(tc, test_live_sse);
    tcase_add_test(tc, test_bad_request);
    tcase_add_test(tc, test_slow_watcher);
    tcase_add_test(tc, test_catch_up);
    tcase_add_test(tc, test_big_revision);
    tcase_add_test(tc, test_long_poll);
    tcase_add_test(tc, test_close);
    suite_add_tcase(s, tc);

    tc = tcase_create("progress");
    tcase_add_checked_fixture(tc, setup_fast_progress, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_progress);
    suite_add_tcase(s, tc);

    tc = tcase_create("history");
    tcase_add_checked_fixture(tc, setup_small_history, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_compacted);
    tcase_add_test(tc, test_compacted_while_blocked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(watch_suite());
    int failed;

    signal(SIGPIPE, SIG_IGN);
    snprintf(suite_dir, sizeof suite_dir, "/tmp/ballast-test-watch-XXXXXX");
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
