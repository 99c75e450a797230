/* The member's HTTP API: routes, KV handlers, cluster handlers, forwarding.
 *
 * Happy path of a write: parse the key and query, build a command, propose
 * it; when Raft has applied it, render the result (JSON or msgpack, from the
 * request's Accept) with the revision headers. Linearizable reads wait for
 * the member's shared barrier; serializable reads answer at once from one
 * LMDB read transaction, which keeps a range and its count consistent.
 *
 * Failure modes, each a contract error: bad input is 400 before anything is
 * proposed; a follower relays to the leader (a forwarded request that lands
 * on a non-leader is 503 no_leader, never forwarded twice); a leader that
 * cannot be reached before the request was sent is 503, after it 504; a
 * write whose outcome Raft cannot tell (leadership lost after append,
 * timeout) is 504 timeout, never an error that claims nothing happened. */
#include "api.h"

#include "fmt.h"

#include "txn.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <http_parser.h>

#include "backup.h"
#include "error.h"
#include "log.h"
#include "reqdoc.h"

#define KV_PREFIX           "/v1/kv/"
#define MAX_RAW_KEY         (3 * BL_KEY_MAX)
#define DEFAULT_LIMIT       1000
#define MAX_LIMIT           10000
#define PUBLISH_INTERVAL_MS 1000
#define FORWARD_SLACK_MS    2000
#define PARK_RETRY_MS       5
#define PARK_MAX_MS         3000
#define MIN_TTL_S           2
#define MAX_TTL_S           (10 * 24 * 3600)
#define POLL_DEFAULT_MS     (5 * 60 * 1000)
#define POLL_MAX_MS         (10 * 60 * 1000)
#define WATCH_PREFIX        "/v1/watch/"

enum call_kind {
    CALL_GET,
    CALL_PUT,
    CALL_DELETE,
    CALL_PUBLISH,
    CALL_TXN,
    CALL_LEASE_GRANT,
    CALL_LEASE_REVOKE,
    CALL_LEASE_KEEPALIVE,
    CALL_LEASE_GET,
    CALL_LEASE_LIST,
    CALL_READINDEX,
    CALL_RELAY, /* a members or leader request: only ever relayed by the KV machinery */
};

/* One request that waits on Raft or on the leader. */
struct call {
    struct bl_api *a;
    struct bl_http_exchange *ex;
    int kind;
    int format;
    bool prefix, prev, raw, keys_only, count_only, serializable;
    bool client_reqid;
    bool waited;            /* a long-poll that has waited: forward without ?wait */
    bool reforward;         /* relayed here, and this member relays it on (leader removal) */
    uint64_t park_deadline; /* while no leader is reachable, retry until then */
    struct call *park_next;
    struct bl_watch_wait *wait; /* a long-poll's pending wait */
    struct call *poll_prev, *poll_next;
    uint64_t index;   /* ?index= of a long-poll */
    uint64_t wait_ms; /* ?wait= of a long-poll (0: none) */
    int64_t cas;
    uint64_t limit;
    uint64_t lease; /* ?lease=, a lease call's id */
    uint64_t ttl;   /* ?ttl= in seconds, a grant's TTL */
    struct bl_txn_parsed *txn;
    struct bl_readindex_waiter ri; /* a linearizable read on a follower */
    size_t key_len, after_len;
    char reqid[BL_CMD_REQUEST_ID_MAX + 1];
    uint8_t key[BL_KEY_MAX];
    uint8_t after[BL_KEY_MAX];
};

static const char SERVER_VERSION[] = PACKAGE_VERSION;

static void park_timer_cb(uv_timer_t *t);

/* ---- metrics -------------------------------------------------------------------------------
 *
 * bl_api_handle() tags each exchange (ex->data, which is the handler's) with
 * its call label and its arrival time in microseconds, packed in one
 * uintptr_t: (arrival_us << TAG_BITS) | (call + 1), never 0. The arrival
 * time keeps its low bits only on a 32-bit system; differences are taken
 * modulo that width, right for any latency under 2^27 us (about 2 min).
 * reply() counts the exchange when its reply is queued and clears the tag,
 * so a reply is counted once. */

enum metric_call {
    MC_KV_GET,
    MC_KV_RANGE,
    MC_KV_PUT,
    MC_KV_DELETE,
    MC_KV_POLL, /* a GET with ?index that waited: not in the latency histogram */
    MC_TXN,
    MC_WATCH, /* streams: counted when they start, not in the latency histogram */
    MC_LEASE,
    MC_MEMBERS,
    MC_LEADER,
    MC_STATUS,
    MC_SNAPSHOT,
    MC_HEALTH,
    MC_METRICS,
    MC_OTHER,
    MC_N
};

static const char *const CALL_NAMES[MC_N] = {
    "kv_get",  "kv_range", "kv_put", "kv_delete", "kv_poll", "txn",     "watch", "lease",
    "members", "leader",   "status", "snapshot",  "health",  "metrics", "other",
};

/* The statuses this API answers with; any other is counted as "other". */
static const char *const CODE_NAMES[] = {"200", "201", "400", "401", "403", "404", "405",  "410",
                                         "412", "413", "500", "503", "504", "507", "other"};
#define N_CODES (sizeof CODE_NAMES / sizeof CODE_NAMES[0])

#define TAG_BITS 5
#define TAG_CALL ((uintptr_t)((1u << TAG_BITS) - 1))

/* Latency bounds in microseconds (rendered in seconds). */
static const uint64_t HTTP_BOUNDS_US[] = {50,     100,     250,     500,     1000,    2500,
                                          5000,   10000,   25000,   50000,   100000,  250000,
                                          500000, 1000000, 2500000, 5000000, 10000000};
/* Log append bounds in nanoseconds: 50 us .. 10 s. */
static const uint64_t APPEND_BOUNDS_NS[] = {
    50000,     100000,     250000,     500000,     1000000,    2500000,
    5000000,   10000000,   25000000,   50000000,   100000000,  250000000,
    500000000, 1000000000, 2500000000, 5000000000, 10000000000};
/* FSM apply bounds in nanoseconds: 5 us .. 1 s. */
static const uint64_t APPLY_BOUNDS_NS[] = {
    5000,    10000,   25000,    50000,    100000,   250000,    500000,    1000000,
    2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 1000000000};

#define N_BOUNDS(b) ((unsigned)(sizeof(b) / sizeof(b)[0]))

/* The index of @status in CODE_NAMES. */
static unsigned code_index(int status)
{
    static const int codes[] = {200, 201, 400, 401, 403, 404, 405,
                                410, 412, 413, 500, 503, 504, 507};
    _Static_assert(sizeof codes / sizeof codes[0] == N_CODES - 1, "CODE_NAMES and codes differ");
    for (unsigned i = 0; i < N_CODES - 1; i++) {
        if (codes[i] == status) {
            return i;
        }
    }
    return N_CODES - 1;
}

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

/* The tag of a request of @call arriving now. */
static void *tag_new(unsigned call)
{
    return (void *)(((uintptr_t)now_us() << TAG_BITS) | (uintptr_t)(call + 1));
}

/* @tag with its call label changed to @call (its arrival time kept). */
static void *tag_relabel(void *tag, unsigned call)
{
    if (tag == NULL) {
        return NULL;
    }
    return (void *)(((uintptr_t)tag & ~TAG_CALL) | (uintptr_t)(call + 1));
}

/* Count the request tagged @tag, answered with @status (the tag is 0 for
 * an exchange the handler never saw, or counted already). */
static void record(struct bl_api *a, void *tag, int status)
{
    uintptr_t t = (uintptr_t)tag;
    unsigned call;

    if (t == 0 || a->m_requests.v == NULL) {
        return;
    }
    call = (unsigned)(t & TAG_CALL) - 1;
    bl_counter_add(&a->m_requests, call, code_index(status), 1);
    if (call != MC_KV_POLL && call != MC_WATCH) {
        uintptr_t us = ((uintptr_t)now_us() - (t >> TAG_BITS)) & (UINTPTR_MAX >> TAG_BITS);
        bl_histogram_observe(&a->m_latency, call, 0, (uint64_t)us);
    }
}

/* bl_http_respond(), counting the request first. */
static void reply(struct bl_api *a, struct bl_http_exchange *ex, int status,
                  const struct bl_http_header *h, unsigned n, const void *body, size_t len)
{
    record(a, ex->data, status);
    ex->data = NULL;
    bl_http_respond(ex, status, h, n, body, len);
}

/* The member's timings (bl_member_on_timing). */
static void timing_cb(void *arg, int what, uint64_t ns)
{
    struct bl_api *a = arg;
    if (what == BL_TIMING_APPLY) {
        bl_histogram_observe(&a->m_apply, 0, 0, ns);
    } else if (what == BL_TIMING_APPEND) {
        bl_histogram_observe(&a->m_append, 0, 0, ns);
    } else {
        bl_counter_add(&a->m_append_failed, 0, 0, 1);
    }
}

static void metrics_free(struct bl_api *a)
{
    bl_counter_free(&a->m_requests);
    bl_histogram_free(&a->m_latency);
    bl_histogram_free(&a->m_apply);
    bl_histogram_free(&a->m_append);
    bl_counter_free(&a->m_append_failed);
}

static int metrics_init(struct bl_api *a)
{
    static const struct bl_metric_spec requests = {
        .name = "ballast_http_requests_total",
        .help = "HTTP requests answered by this member, by call and status code.",
        .n_dims = 2,
        .label = {"call", "code"},
        .values = {CALL_NAMES, CODE_NAMES},
        .n_values = {MC_N, N_CODES},
    };
    static const struct bl_metric_spec latency = {
        .name = "ballast_http_request_duration_seconds",
        .help = "Time from a request read whole to its reply queued, by call (long-polls "
                "and watches excluded).",
        .n_dims = 1,
        .label = {"call"},
        .values = {CALL_NAMES},
        .n_values = {MC_N},
        .decimals = 6,
    };
    static const struct bl_metric_spec apply = {
        .name = "ballast_apply_duration_seconds",
        .help = "Time the state machine took to apply one Raft log entry.",
        .decimals = 9,
    };
    static const struct bl_metric_spec append = {
        .name = "ballast_log_append_duration_seconds",
        .help = "Time from submitting a Raft log append to it being durable (fsync).",
        .decimals = 9,
    };
    static const struct bl_metric_spec append_failed = {
        .name = "ballast_log_append_failures_total",
        .help = "Raft log appends that failed (full disk, I/O error).",
    };
    int rv = bl_counter_init(&a->m_requests, &requests);
    if (rv == 0) {
        rv = bl_histogram_init(&a->m_latency, &latency, HTTP_BOUNDS_US, N_BOUNDS(HTTP_BOUNDS_US));
    }
    if (rv == 0) {
        rv = bl_histogram_init(&a->m_apply, &apply, APPLY_BOUNDS_NS, N_BOUNDS(APPLY_BOUNDS_NS));
    }
    if (rv == 0) {
        rv = bl_histogram_init(&a->m_append, &append, APPEND_BOUNDS_NS, N_BOUNDS(APPEND_BOUNDS_NS));
    }
    if (rv == 0) {
        rv = bl_counter_init(&a->m_append_failed, &append_failed);
    }
    if (rv != 0) {
        metrics_free(a);
    }
    return rv;
}

/* ---- replies ------------------------------------------------------------------ */

static int want_format(const struct bl_http_exchange *ex)
{
    size_t len;
    const char *accept = bl_http_header_get(ex, "Accept", &len);
    if (accept != NULL && memmem(accept, len, "application/msgpack", 19) != NULL) {
        return BL_DOC_MSGPACK;
    }
    return BL_DOC_JSON;
}

static struct bl_http_header header(const char *name, const char *value)
{
    struct bl_http_header h = {name, strlen(name), value, strlen(value)};
    return h;
}

/* Fill the headers every response carries (revision, term, applied index)
 * into @out; their values live in @a until the next call. */
static unsigned standard_headers(void *arg, struct bl_http_header *out, unsigned max)
{
    struct bl_api *a = arg;
    uint64_t t = 0, i = 0, r = 0;

    if (max < 3) {
        return 0;
    }
    if (a->member != NULL) {
        bl_member_indexes(a->member, &t, &i, &r);
    }
    bl_fmt_u64(a->hdr_rev, r);
    bl_fmt_u64(a->hdr_term, t);
    bl_fmt_u64(a->hdr_index, i);
    out[0] = header("X-Ballast-Revision", a->hdr_rev);
    out[1] = header("X-Ballast-Raft-Term", a->hdr_term);
    out[2] = header("X-Ballast-Raft-Index", a->hdr_index);
    return 3;
}

/* Reply with @body and the standard headers plus @extra. */
static void respond(struct bl_api *a, struct bl_http_exchange *ex, int status,
                    const char *content_type, const void *body, size_t len,
                    const struct bl_http_header *extra, unsigned n_extra)
{
    struct bl_http_header h[16];
    unsigned n = 0;

    h[n++] = header("Content-Type", content_type);
    n += standard_headers(a, h + n, 16 - n);
    for (unsigned i = 0; i < n_extra && n < 16; i++) {
        h[n++] = extra[i];
    }
    reply(a, ex, status, h, n, body, len);
}

static void respond_doc(struct bl_api *a, struct bl_http_exchange *ex, int status,
                        const struct bl_http_header *extra, unsigned n_extra)
{
    size_t len;
    const char *body = bl_doc_data(&a->doc, &len);
    if (bl_doc_error(&a->doc) != 0) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        respond(a, ex, 500, "application/json", oom, sizeof oom - 1, NULL, 0);
        return;
    }
    respond(a, ex, status, bl_doc_content_type(a->doc.format), body, len, extra, n_extra);
}

/* Reply with the contract's error body for @code, plus the @n_extra headers. */
static void respond_error_v(struct bl_api *a, struct bl_http_exchange *ex,
                            const struct bl_http_header *extra_in, unsigned n_extra, int code,
                            const char *fmt, va_list ap)
{
    struct bl_http_header extra[4];
    unsigned n = 0;
    char msg[512];

    vsnprintf(msg, sizeof msg, fmt, ap);
    bl_doc_reset(&a->doc, want_format(ex));
    bl_doc_map(&a->doc, 1);
    bl_doc_key(&a->doc, "error");
    bl_doc_map(&a->doc, 2);
    bl_doc_key(&a->doc, "code");
    bl_doc_cstr(&a->doc, bl_code_name(code));
    bl_doc_key(&a->doc, "message");
    bl_doc_cstr(&a->doc, msg);
    if (code == BL_ENOLEADER || code == BL_ESHUTDOWN || code == BL_EUNAVAILABLE) {
        extra[n++] = header("Retry-After", "1");
    }
    for (unsigned i = 0; i < n_extra && n < 4; i++) {
        extra[n++] = extra_in[i];
    }
    respond_doc(a, ex, bl_code_http_status(code), extra, n);
}

static void respond_error(struct bl_api *a, struct bl_http_exchange *ex, int code, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

static void respond_error(struct bl_api *a, struct bl_http_exchange *ex, int code, const char *fmt,
                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_error_v(a, ex, NULL, 0, code, fmt, ap);
    va_end(ap);
}

/* respond_error() with extra headers (X-Ballast-Replayed, Allow). */
static void respond_error_h(struct bl_api *a, struct bl_http_exchange *ex,
                            const struct bl_http_header *extra, unsigned n_extra, int code,
                            const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void respond_error_h(struct bl_api *a, struct bl_http_exchange *ex,
                            const struct bl_http_header *extra, unsigned n_extra, int code,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_error_v(a, ex, extra, n_extra, code, fmt, ap);
    va_end(ap);
}

/* 405 with an Allow header naming the methods @allow ("GET, PUT"). */
static void method_not_allowed(struct bl_api *a, struct bl_http_exchange *ex, const char *allow)
{
    struct bl_http_header h = header("Allow", allow);
    respond_error_h(a, ex, &h, 1, BL_EMETHOD, "%s is not allowed here (allowed: %s)",
                    http_method_str((enum http_method)ex->method), allow);
}

/* Calls are ~8.5 KB (two key buffers). Zeroing a fresh one per request was
 * 18% of a member's instructions (callgrind, bench/RESULTS.md), so finished
 * calls are kept for reuse (up to CALL_CACHE) and only their fields before
 * the key buffers are cleared: the buffers are read only up to key_len and
 * after_len, which are among those fields. */
#define CALL_CACHE 256

static void call_free(struct call *c)
{
    struct bl_api *a = c->a;
    bl_txn_parsed_free(c->txn);
    if (a != NULL && a->n_spare_calls < CALL_CACHE) {
        c->park_next = a->spare_calls;
        a->spare_calls = c;
        a->n_spare_calls++;
        return;
    }
    free(c);
}

static void kv_read(struct call *c);
static void kv_write(struct call *c);
static void run_call(struct call *c);

/* Park @c while no leader can be reached (an election, a hand-off): a KV
 * request that surely was not sent is retried every PARK_RETRY_MS until
 * PARK_MAX_MS after it first failed, so a leader change costs clients
 * latency instead of an error. False when it is not parkable or out of time. */
static bool park(struct call *c)
{
    struct bl_api *a = c->a;
    uint64_t now = uv_now(a->loop);
    if (c->kind == CALL_PUBLISH || a->member == NULL || a->closing) {
        return false;
    }
    if (c->park_deadline == 0) {
        c->park_deadline = now + PARK_MAX_MS;
    }
    if (now >= c->park_deadline) {
        return false;
    }
    c->park_next = a->parked;
    a->parked = c;
    a->pending++;
    if (!uv_is_active((uv_handle_t *)&a->park_timer)) {
        uv_timer_start(&a->park_timer, park_timer_cb, PARK_RETRY_MS, 0);
    }
    return true;
}

/* Retry every parked call: it may find a leader now, or be the leader. */
static void park_timer_cb(uv_timer_t *t)
{
    struct bl_api *a = t->data;
    struct call *c = a->parked;
    a->parked = NULL;
    while (c != NULL) {
        struct call *next = c->park_next;
        a->pending--;
        if (a->member == NULL) {
            respond_error(a, c->ex, BL_ESHUTDOWN, "member is shutting down");
            call_free(c);
        } else {
            run_call(c);
        }
        c = next;
    }
}

/* ---- forwarding ------------------------------------------------------------------ */

static const char *method_name(int method)
{
    return http_method_str((enum http_method)method);
}

static void forward_cb(void *arg, int status, const struct bl_http_response *resp)
{
    struct call *c = arg;
    struct bl_api *a = c->a;
    struct bl_http_header h[16];
    unsigned n = 0;

    a->pending--;
    if ((status == BL_EUNAVAILABLE || (status == 0 && resp->status == 503)) && park(c)) {
        return; /* surely not applied: the leader was unreachable or had stepped down */
    }
    if (status != 0) {
        if (status == BL_ETIMEOUT) {
            respond_error(a, c->ex, BL_ETIMEOUT,
                          "the leader did not answer in time; the request may or may not have "
                          "been applied");
        } else {
            respond_error(a, c->ex, BL_ENOLEADER, "leader unreachable: %s", bl_strerror(status));
        }
        call_free(c);
        return;
    }
    /* Relay the leader's answer with its own headers (revision, content type). */
    for (unsigned i = 0; i < resp->n_headers && n < 16; i++) {
        const struct bl_http_header *rh = &resp->headers[i];
        if ((rh->name_len > 10 && strncasecmp(rh->name, "X-Ballast-", 10) == 0) ||
            (rh->name_len == 12 && strncasecmp(rh->name, "Content-Type", 12) == 0) ||
            (rh->name_len == 11 && strncasecmp(rh->name, "Retry-After", 11) == 0)) {
            h[n++] = *rh;
        }
    }
    reply(a, c->ex, resp->status, h, n, resp->body, resp->body_len);
    call_free(c);
}

/* @ex's target without its ?wait and ?index parameters, in a new buffer
 * (the caller frees it), its length in *@len. NULL when out of memory. */
static char *target_without_wait(const struct bl_http_exchange *ex, size_t *len)
{
    const char *q = memchr(ex->target, '?', ex->target_len);
    const char *end = ex->target + ex->target_len;
    char *out = malloc(ex->target_len + 1);
    char sep = '?';
    size_t n;

    if (out == NULL) {
        return NULL;
    }
    n = q != NULL ? (size_t)(q - ex->target) : ex->target_len;
    memcpy(out, ex->target, n);
    for (const char *p = q != NULL ? q + 1 : end; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t pl;
        amp = amp != NULL ? amp : end;
        pl = (size_t)(amp - p);
        bool drop = (pl >= 4 && memcmp(p, "wait", 4) == 0 && (pl == 4 || p[4] == '=')) ||
                    (pl >= 5 && memcmp(p, "index", 5) == 0 && (pl == 5 || p[5] == '='));
        if (!drop && pl > 0) {
            out[n++] = sep;
            sep = '&';
            memcpy(out + n, p, pl);
            n += pl;
        }
        p = amp + 1;
    }
    *len = n;
    return out;
}

/* Relay @c's request to the leader, or fail it when that is not possible. */
static void forward(struct call *c)
{
    static const char *const copied[] = {"Content-Type", "Accept", "X-Ballast-Request-Id"};
    struct bl_api *a = c->a;
    struct bl_http_exchange *ex = c->ex;
    struct bl_http_header h[4];
    char url[256], self[24];
    char *stripped = NULL;
    const char *target;
    size_t target_len;
    unsigned n = 0;
    int rv;

    if (!c->reforward && bl_http_header_get(ex, "X-Ballast-Forwarded-By", NULL) != NULL) {
        respond_error(a, ex, BL_ENOLEADER, "member %" PRIu64 " is not the leader",
                      bl_member_id(a->member));
        call_free(c);
        return;
    }
    rv = bl_member_leader_client_url(a->member, url, sizeof url);
    if (rv != 0 && park(c)) {
        return;
    }
    if (rv != 0) {
        respond_error(a, ex, BL_ENOLEADER, "no leader known to member %" PRIu64 " yet",
                      bl_member_id(a->member));
        call_free(c);
        return;
    }
    for (unsigned i = 0; i < 3; i++) {
        size_t len;
        const char *v = bl_http_header_get(ex, copied[i], &len);
        if (v != NULL) {
            h[n].name = copied[i];
            h[n].name_len = strlen(copied[i]);
            h[n].value = v;
            h[n].value_len = len;
            n++;
        }
    }
    snprintf(self, sizeof self, "%" PRIu64, bl_member_id(a->member));
    h[n++] = header("X-Ballast-Forwarded-By", self);
    target = ex->target;
    target_len = ex->target_len;
    if (c->waited) {
        /* The long-poll waited here; the leader only serves the read. */
        target = stripped = target_without_wait(ex, &target_len);
        if (stripped == NULL) {
            respond_error(a, ex, BL_ENOMEM, "out of memory");
            call_free(c);
            return;
        }
    }
    rv = bl_http_client_request(
        a->client, url, method_name(ex->method), target, target_len, h, n, ex->body, ex->body_len,
        (unsigned)(a->cfg->propose_timeout_ms + FORWARD_SLACK_MS), forward_cb, c);
    free(stripped);
    if (rv != 0 && park(c)) {
        return;
    }
    if (rv != 0) {
        respond_error(a, ex, BL_ENOLEADER, "cannot reach the leader at %s: %s", url,
                      bl_strerror(rv));
        call_free(c);
        return;
    }
    a->pending++;
}

/* ---- KV reads -------------------------------------------------------------------------- */

struct range_walk {
    struct bl_doc *d;
    uint64_t count;
    uint64_t limit;
    bool keys_only;
};

static int count_cb(void *arg, const struct bl_kv *kv)
{
    struct range_walk *w = arg;
    (void)kv;
    w->count++;
    return 0;
}

static int emit_cb(void *arg, const struct bl_kv *kv)
{
    struct range_walk *w = arg;
    bl_doc_kv(w->d, kv, !w->keys_only);
    return ++w->count >= w->limit ? 1 : 0;
}

static void serve_read(struct call *c)
{
    struct bl_api *a = c->a;
    struct bl_doc *d = &a->doc;
    struct bl_txn *txn;
    struct bl_kv kv;
    uint64_t revision = 0;
    int rv;

    rv = bl_member_read_begin(a->member, &txn);
    if (rv == 0) {
        rv = bl_store_meta_get(txn, "revision", &revision);
        if (rv != 0) {
            bl_store_abort(txn);
        }
    }
    if (rv != 0) {
        respond_error(a, c->ex, rv, "read: %s", bl_strerror(rv));
        return;
    }
    bl_doc_reset(d, c->format);
    if (c->prefix) {
        struct range_walk w = {.d = d}, total = {.d = d};
        uint64_t n;
        /* w counts what is left from this page on (for "more"); total the
         * whole range (the "count" field), both in this one read txn. */
        rv = bl_store_kv_scan(txn, c->key, c->key_len, c->after, c->after_len, count_cb, &w);
        if (rv == 0 && c->after_len > 0) {
            rv = bl_store_kv_scan(txn, c->key, c->key_len, NULL, 0, count_cb, &total);
        } else {
            total.count = w.count;
        }
        n = w.count < c->limit ? w.count : c->limit;
        bl_doc_map(d, 4);
        bl_doc_key(d, "kvs");
        bl_doc_array(d, c->count_only ? 0 : (uint32_t)n);
        if (rv == 0 && !c->count_only && n > 0) {
            struct range_walk e = {.d = d, .limit = n, .keys_only = c->keys_only};
            rv = bl_store_kv_scan(txn, c->key, c->key_len, c->after, c->after_len, emit_cb, &e);
        }
        bl_doc_key(d, "more");
        bl_doc_bool(d, !c->count_only && w.count > c->limit);
        bl_doc_key(d, "count");
        bl_doc_uint(d, total.count);
        bl_doc_key(d, "revision");
        bl_doc_uint(d, revision);
        bl_store_abort(txn);
        if (rv != 0) {
            respond_error(a, c->ex, rv, "range: %s", bl_strerror(rv));
            return;
        }
        respond_doc(a, c->ex, 200, NULL, 0);
        return;
    }
    rv = bl_store_kv_get(txn, c->key, c->key_len, &kv);
    if (rv == BL_ENOTFOUND) {
        bl_store_abort(txn);
        respond_error(a, c->ex, BL_ENOTFOUND, "key not found");
        return;
    }
    if (rv != 0) {
        bl_store_abort(txn);
        respond_error(a, c->ex, rv, "get: %s", bl_strerror(rv));
        return;
    }
    if (c->raw) {
        char cr[24], mr[24], ver[24], lease[24];
        struct bl_http_header h[4];
        snprintf(cr, sizeof cr, "%" PRIu64, kv.create_revision);
        snprintf(mr, sizeof mr, "%" PRIu64, kv.mod_revision);
        snprintf(ver, sizeof ver, "%" PRIu64, kv.version);
        snprintf(lease, sizeof lease, "%" PRIu64, kv.lease);
        h[0] = header("X-Ballast-Create-Revision", cr);
        h[1] = header("X-Ballast-Mod-Revision", mr);
        h[2] = header("X-Ballast-Version", ver);
        h[3] = header("X-Ballast-Lease", lease);
        /* The value is sent straight from LMDB's map; respond copies it. */
        respond(a, c->ex, 200, "application/octet-stream", kv.value, kv.value_len, h, 4);
        bl_store_abort(txn);
        return;
    }
    bl_doc_kv(d, &kv, true);
    bl_store_abort(txn);
    respond_doc(a, c->ex, 200, NULL, 0);
}

static void read_ready(void *arg, int status)
{
    struct call *c = arg;
    c->a->pending--;
    if (status == BL_ENOLEADER && !c->a->closing) {
        /* Leadership moved while the read waited for its barrier (a
         * transfer, or this leader lost its majority): a read can be asked
         * again, so relay it to the leader now, or hold it until one is
         * known, as a request arriving at a follower is. */
        forward(c);
        return;
    }
    if (status != 0) {
        respond_error(c->a, c->ex, status == BL_ESHUTDOWN ? BL_ESHUTDOWN : BL_ENOLEADER,
                      "leadership could not be confirmed for a linearizable read");
    } else {
        serve_read(c);
    }
    call_free(c);
}

/* A follower's linearizable read whose read index came back (readindex.h). */
static void read_index_ready(void *arg, int status)
{
    struct call *c = arg;
    c->a->pending--;
    if (status == 0) {
        serve_read(c);
        call_free(c);
    } else if (status == BL_EUNAVAILABLE && !c->a->closing && c->a->member != NULL) {
        forward(c); /* not confirmed: relay it, as before read indexes */
    } else {
        respond_error(c->a, c->ex, BL_ESHUTDOWN, "member is shutting down");
        call_free(c);
    }
}

static void kv_read(struct call *c)
{
    struct bl_api *a = c->a;
    int rv;
    if (c->serializable) {
        serve_read(c);
        call_free(c);
        return;
    }
    if (a->ri != NULL && !bl_member_is_leader(a->member) &&
        bl_http_header_get(c->ex, "X-Ballast-Forwarded-By", NULL) == NULL) {
        bl_readindex_wait(a->ri, &c->ri, read_index_ready, c);
        a->pending++;
        return;
    }
    rv = bl_member_read_barrier(c->a->member, read_ready, c);
    if (rv == BL_ENOLEADER) {
        forward(c);
        return;
    }
    if (rv != 0) {
        respond_error(c->a, c->ex, rv, "read: %s", bl_strerror(rv));
        call_free(c);
        return;
    }
    c->a->pending++;
}

/* ---- KV writes ------------------------------------------------------------------------- */

static void write_done(void *arg, int status, const struct bl_apply_result *res)
{
    struct call *c = arg;
    struct bl_api *a = c->a;
    struct bl_doc *d = &a->doc;
    struct bl_http_header extra[1];
    struct bl_result_view v;
    struct bl_kv kv;
    unsigned n_extra = 0;

    a->pending--;
    if (status == BL_ENOLEADER) {
        /* Leadership moved before the write reached raft (group commit
         * queues it until the end of the loop iteration): not proposed,
         * so it is relayed to the new leader as a refused proposal is. */
        forward(c);
        return;
    }
    if (status == BL_ETIMEOUT) {
        respond_error(a, c->ex, BL_ETIMEOUT,
                      "outcome unknown: the write was proposed but its commit could not be "
                      "confirmed (leadership lost or timeout); it may or may not have been "
                      "applied: retry with the same X-Ballast-Request-Id");
        goto out;
    }
    if (status != 0) {
        respond_error(a, c->ex, status, "write failed: %s", bl_strerror(status));
        goto out;
    }
    if (res->replayed) {
        extra[n_extra++] = header("X-Ballast-Replayed", "true");
    }
    if (res->code == BL_ECASFAILED) {
        if (c->cas == 0) {
            respond_error_h(a, c->ex, extra, n_extra, BL_ECASFAILED,
                            "compare failed: the key exists");
        } else {
            respond_error_h(a, c->ex, extra, n_extra, BL_ECASFAILED,
                            "compare failed: the key is absent or its mod_revision is not %" PRId64,
                            c->cas);
        }
        goto out;
    }
    if (res->code == BL_ENOTFOUND) {
        if (c->kind == CALL_LEASE_REVOKE) {
            respond_error_h(a, c->ex, extra, n_extra, BL_ENOTFOUND, "lease %" PRIu64 " not found",
                            c->lease);
        } else {
            respond_error_h(a, c->ex, extra, n_extra, BL_ENOTFOUND,
                            "lease not found: a put named a lease that does not exist (expired "
                            "or revoked)");
        }
        goto out;
    }
    if (res->code == BL_EBADREQ && (c->kind == CALL_LEASE_GRANT || c->ttl != 0)) {
        respond_error_h(a, c->ex, extra, n_extra, BL_EBADREQ, "lease id %" PRIu64 " is in use",
                        c->lease);
        goto out;
    }
    if (res->code == BL_EBADREQ) {
        respond_error_h(a, c->ex, extra, n_extra, BL_EBADREQ,
                        "a put named the own lease of another key (made by ?ttl=); such a lease "
                        "cannot be shared: grant a lease with POST /v1/lease");
        goto out;
    }
    if (bl_result_decode(res->record, res->record_len, &v) != 0) {
        respond_error(a, c->ex, BL_EINTERNAL, "result record does not decode");
        goto out;
    }
    bl_doc_reset(d, c->format);
    if (c->kind == CALL_TXN) {
        if (bl_txn_render(d, res->record, res->record_len) != 0) {
            respond_error(a, c->ex, BL_EINTERNAL, "txn result record does not decode");
            goto out;
        }
    } else if (c->kind == CALL_LEASE_GRANT) {
        bl_doc_map(d, 2);
        bl_doc_key(d, "id");
        bl_doc_uint(d, c->lease);
        bl_doc_key(d, "ttl");
        bl_doc_uint(d, c->ttl);
    } else if (c->kind == CALL_LEASE_REVOKE) {
        bl_doc_map(d, 2);
        bl_doc_key(d, "revision");
        bl_doc_uint(d, v.revision);
        bl_doc_key(d, "deleted");
        bl_doc_uint(d, v.deleted);
    } else if (c->kind == CALL_PUBLISH) {
        bl_doc_map(d, 1);
        bl_doc_key(d, "revision");
        bl_doc_uint(d, v.revision);
    } else if (c->kind == CALL_PUT) {
        bool has_prev = v.n_prev > 0;
        bl_doc_map(d, (has_prev ? 2 : 1) + (c->ttl != 0 ? 1 : 0));
        bl_doc_key(d, "revision");
        bl_doc_uint(d, v.revision);
        if (c->ttl != 0) {
            bl_doc_key(d, "lease");
            bl_doc_uint(d, c->lease);
        }
        if (has_prev && bl_result_next_prev(&v, &kv) == 1) {
            bl_doc_key(d, "prev");
            bl_doc_kv(d, &kv, true);
        }
    } else {
        bl_doc_map(d, c->prev ? 3 : 2);
        bl_doc_key(d, "revision");
        bl_doc_uint(d, v.revision);
        bl_doc_key(d, "deleted");
        bl_doc_uint(d, v.deleted);
        if (c->prev) {
            bl_doc_key(d, "prev_kvs");
            bl_doc_array(d, v.n_prev);
            while (bl_result_next_prev(&v, &kv) == 1) {
                bl_doc_kv(d, &kv, true);
            }
        }
    }
    respond_doc(a, c->ex, 200, extra, n_extra);
out:
    call_free(c);
}

/* A lease id derived from a client's request id: a retry proposes the
 * same id, so a replayed answer (which records no lease id) is right. */
static uint64_t reqid_lease(const char *reqid)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = reqid; *p != '\0'; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3ULL;
    }
    h &= INT64_MAX;
    return h != 0 ? h : 1;
}

static void kv_write(struct call *c)
{
    struct bl_http_exchange *ex = c->ex;
    struct bl_cmd cmd;
    int rv;

    memset(&cmd, 0, sizeof cmd);
    cmd.request_id.p = (const uint8_t *)c->reqid;
    cmd.request_id.len = strlen(c->reqid);
    cmd.key.p = c->key;
    cmd.key.len = c->key_len;
    cmd.cas = c->cas;
    cmd.flags = (c->prev ? BL_CMD_F_PREV : 0) | (c->client_reqid ? BL_CMD_F_RECORD : 0);
    if (c->kind == CALL_PUT) {
        if (ex->body_len > c->a->cfg->max_value_bytes) {
            respond_error(c->a, ex, BL_ETOOLARGE,
                          "value of %zu bytes is over the limit of %" PRIu64, ex->body_len,
                          c->a->cfg->max_value_bytes);
            call_free(c);
            return;
        }
        cmd.type = BL_CMD_PUT;
        cmd.value.p = ex->body;
        cmd.value.len = ex->body_len;
        cmd.lease = c->lease;
        if (c->ttl != 0) {
            /* The key's own lease. With a client request id the lease id
             * comes from it, so a replayed answer names the same lease. */
            c->lease =
                c->client_reqid ? reqid_lease(c->reqid) : bl_member_lease_fresh_id(c->a->member);
            cmd.lease = c->lease;
            cmd.ttl = c->ttl;
            cmd.flags |= BL_CMD_F_OWN_LEASE;
        }
    } else if (c->kind == CALL_TXN) {
        cmd.type = BL_CMD_TXN;
        cmd.txn = &c->txn->req;
        cmd.flags = c->client_reqid ? BL_CMD_F_RECORD : 0;
    } else if (c->kind == CALL_LEASE_GRANT) {
        cmd.type = BL_CMD_LEASE_GRANT;
        if (c->lease == 0) {
            c->lease =
                c->client_reqid ? reqid_lease(c->reqid) : bl_member_lease_fresh_id(c->a->member);
        }
        cmd.lease = c->lease;
        cmd.ttl = c->ttl;
        cmd.flags = c->client_reqid ? BL_CMD_F_RECORD : 0;
    } else if (c->kind == CALL_LEASE_REVOKE) {
        cmd.type = BL_CMD_LEASE_REVOKE;
        cmd.lease = c->lease;
        cmd.flags = c->client_reqid ? BL_CMD_F_RECORD : 0;
    } else {
        cmd.type = c->prefix ? BL_CMD_DELETE_RANGE : BL_CMD_DELETE;
    }
    rv = bl_member_propose(c->a->member, &cmd, write_done, c);
    if (rv == BL_ENOLEADER) {
        forward(c);
        return;
    }
    if (rv == BL_ENOSPACE && bl_member_disk_full(c->a->member)) {
        respond_error(c->a, ex, rv,
                      "the data dir's file system has less than %" PRIu64
                      " bytes free (--min-free-bytes): free disk space; deletes still work",
                      c->a->cfg->min_free_bytes);
        call_free(c);
        return;
    }
    if (rv == BL_ENOSPACE) {
        respond_error(c->a, ex, rv,
                      "the store quota of %" PRIu64 " bytes is reached: delete keys or raise "
                      "--quota-bytes",
                      c->a->cfg->quota_bytes);
        call_free(c);
        return;
    }
    if (rv != 0) {
        respond_error(c->a, ex, rv, "write: %s", bl_strerror(rv));
        call_free(c);
        return;
    }
    c->a->pending++;
}

/* ---- KV request parsing --------------------------------------------------------------------- */

/* Decode a percent-encoded key (path or ?after) into @out. */
static int decode_key(const char *raw, size_t raw_len, uint8_t *out, size_t *out_len)
{
    uint8_t buf[MAX_RAW_KEY];
    size_t n;
    if (raw_len > MAX_RAW_KEY || bl_http_unescape(raw, raw_len, buf, &n) != 0 || n > BL_KEY_MAX) {
        return BL_EBADREQ;
    }
    memcpy(out, buf, n);
    *out_len = n;
    return 0;
}

static bool query_has(const struct bl_http_exchange *ex, const char *name, const char **v,
                      size_t *len)
{
    const char *dummy_v;
    size_t dummy_len;
    return bl_http_query_get(ex->query, ex->query_len, name, v ? v : &dummy_v,
                             len ? len : &dummy_len);
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return BL_EBADREQ;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "30s", "500ms", "5m", "2h" or a bare number of seconds, in ms. */
static int parse_duration_ms(const char *s, size_t len, uint64_t *ms)
{
    size_t digits = 0;
    uint64_t n, unit = 1000;
    while (digits < len && s[digits] >= '0' && s[digits] <= '9') {
        digits++;
    }
    if (digits == 0 || parse_u64(s, digits, &n) != 0) {
        return BL_EBADREQ;
    }
    const char *suf = s + digits;
    size_t sl = len - digits;
    if (sl == 0 || (sl == 1 && suf[0] == 's')) {
        unit = 1000;
    } else if (sl == 2 && memcmp(suf, "ms", 2) == 0) {
        unit = 1;
    } else if (sl == 1 && suf[0] == 'm') {
        unit = 60000;
    } else if (sl == 1 && suf[0] == 'h') {
        unit = 3600000;
    } else {
        return BL_EBADREQ;
    }
    if (n > UINT64_MAX / unit) {
        return BL_EBADREQ;
    }
    *ms = n * unit;
    return 0;
}

/* Read X-Ballast-Request-Id into @c, or make a server id. */
static int parse_reqid(struct call *c)
{
    struct bl_http_exchange *ex = c->ex;
    struct bl_api *a = c->a;
    size_t len;
    const char *v = bl_http_header_get(ex, "X-Ballast-Request-Id", &len);
    if (v != NULL) {
        if (len == 0 || len > BL_CMD_REQUEST_ID_MAX) {
            respond_error(a, ex, BL_EBADREQ, "X-Ballast-Request-Id must be 1..%d bytes",
                          BL_CMD_REQUEST_ID_MAX);
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            if (v[i] <= ' ' || v[i] > '~') {
                respond_error(a, ex, BL_EBADREQ, "X-Ballast-Request-Id must be visible ASCII");
                return -1;
            }
        }
        memcpy(c->reqid, v, len);
        c->reqid[len] = '\0';
        c->client_reqid = true;
    } else {
        snprintf(c->reqid, sizeof c->reqid, "srv-%" PRIu64 "-%" PRIu64 "-%08x",
                 bl_member_id(a->member), ++a->request_seq, (unsigned)rand());
    }
    return 0;
}

/* Fill @c from the request; on bad input answer 400 and return non-zero. */
static int parse_kv(struct call *c)
{
    struct bl_http_exchange *ex = c->ex;
    struct bl_api *a = c->a;
    const char *v;
    size_t len;
    uint64_t u;

    if (query_has(ex, "index", &v, &len)) {
        if (parse_u64(v, len, &u) != 0) {
            respond_error(a, ex, BL_EBADREQ, "index must be a revision");
            return -1;
        }
        c->index = u;
        c->wait_ms = POLL_DEFAULT_MS;
    }
    if (query_has(ex, "wait", &v, &len)) {
        if (parse_duration_ms(v, len, &u) != 0) {
            respond_error(a, ex, BL_EBADREQ,
                          "wait must be a duration (30s, 500ms, 5m, or seconds), at most 10m");
            return -1;
        }
        c->wait_ms = u > POLL_MAX_MS ? POLL_MAX_MS : u; /* Consul's cap, not an error */
    }
    if ((query_has(ex, "index", NULL, NULL) || query_has(ex, "wait", NULL, NULL)) &&
        ex->method != HTTP_GET) {
        respond_error(a, ex, BL_EBADREQ, "wait and index are for GET");
        return -1;
    }
    if (query_has(ex, "lease", &v, &len)) {
        if (parse_u64(v, len, &u) != 0 || u > INT64_MAX) {
            respond_error(a, ex, BL_EBADREQ, "lease must be a lease id");
            return -1;
        }
        c->lease = u;
    }
    if (query_has(ex, "ttl", &v, &len)) {
        if (parse_duration_ms(v, len, &u) != 0 || u < 1000 || u > MAX_TTL_S * 1000) {
            respond_error(a, ex, BL_EBADREQ,
                          "ttl must be a duration of 1s..10 days (30s, 5m, 2h, or seconds)");
            return -1;
        }
        if (c->lease != 0) {
            respond_error(a, ex, BL_EBADREQ, "ttl and lease cannot be combined");
            return -1;
        }
        c->ttl = (u + 999) / 1000;
        c->ttl = c->ttl < MIN_TTL_S ? MIN_TTL_S : c->ttl;
    }
    if ((c->lease != 0 || c->ttl != 0) && ex->method != HTTP_PUT) {
        respond_error(a, ex, BL_EBADREQ, "lease and ttl are for PUT");
        return -1;
    }
    c->prefix = query_has(ex, "prefix", NULL, NULL);
    if (decode_key(ex->path + strlen(KV_PREFIX), ex->path_len - strlen(KV_PREFIX), c->key,
                   &c->key_len) != 0) {
        respond_error(a, ex, BL_EBADREQ, "key must be 1..%d bytes, percent-encoded", BL_KEY_MAX);
        return -1;
    }
    if (c->key_len == 0 && !c->prefix) {
        respond_error(a, ex, BL_EBADREQ, "empty key (use ?prefix for a range of all keys)");
        return -1;
    }
    c->prev = query_has(ex, "prev", NULL, NULL);
    c->raw = query_has(ex, "raw", NULL, NULL);
    c->keys_only = query_has(ex, "keys", NULL, NULL);
    c->count_only = query_has(ex, "count", NULL, NULL);
    c->cas = BL_CAS_NONE;
    if (query_has(ex, "cas", &v, &len)) {
        if (parse_u64(v, len, &u) != 0 || u > INT64_MAX) {
            respond_error(a, ex, BL_EBADREQ, "cas must be a revision (0: only if absent)");
            return -1;
        }
        if (c->prefix) {
            respond_error(a, ex, BL_EBADREQ, "cas cannot be combined with prefix");
            return -1;
        }
        c->cas = (int64_t)u;
    }
    c->limit = DEFAULT_LIMIT;
    if (query_has(ex, "limit", &v, &len)) {
        if (parse_u64(v, len, &u) != 0 || u < 1 || u > MAX_LIMIT) {
            respond_error(a, ex, BL_EBADREQ, "limit must be 1..%d", MAX_LIMIT);
            return -1;
        }
        c->limit = u;
    }
    if (query_has(ex, "after", &v, &len) && decode_key(v, len, c->after, &c->after_len) != 0) {
        respond_error(a, ex, BL_EBADREQ, "after must be a percent-encoded key");
        return -1;
    }
    if (query_has(ex, "consistency", &v, &len)) {
        if (len == 12 && memcmp(v, "serializable", 12) == 0) {
            c->serializable = true;
        } else if (!(len == 12 && memcmp(v, "linearizable", 12) == 0)) {
            respond_error(a, ex, BL_EBADREQ, "consistency must be linearizable or serializable");
            return -1;
        }
    }
    if (parse_reqid(c) != 0) {
        return -1;
    }
    return 0;
}

static struct call *call_new(struct bl_api *a, struct bl_http_exchange *ex, int kind)
{
    struct call *c = a->spare_calls;
    if (c != NULL) {
        a->spare_calls = c->park_next;
        a->n_spare_calls--;
    } else if ((c = malloc(sizeof *c)) == NULL) {
        respond_error(a, ex, BL_ENOMEM, "out of memory");
        return NULL;
    }
    memset(c, 0, offsetof(struct call, key));
    c->a = a;
    c->ex = ex;
    c->kind = kind;
    c->format = want_format(ex);
    return c;
}

/* ---- long-poll --------------------------------------------------------------------------- */

static void poll_unlink(struct call *c)
{
    struct bl_api *a = c->a;
    if (c->poll_prev != NULL) {
        c->poll_prev->poll_next = c->poll_next;
    } else {
        a->polls = c->poll_next;
    }
    if (c->poll_next != NULL) {
        c->poll_next->poll_prev = c->poll_prev;
    }
    c->poll_prev = c->poll_next = NULL;
}

/* The key changed after ?index, the wait passed, or the hub closed. */
static void poll_done(void *arg, int status)
{
    struct call *c = arg;
    struct bl_api *a = c->a;
    c->wait = NULL;
    poll_unlink(c);
    if (status == BL_ESHUTDOWN || a->member == NULL) {
        respond_error(a, c->ex, BL_ESHUTDOWN, "member is shutting down");
        call_free(c);
        return;
    }
    c->waited = true;
    kv_read(c); /* a change or the timeout: either way the GET of this moment */
}

/* Wait (at most c->wait_ms) for @c's key to change after c->index. */
static void poll_start(struct call *c)
{
    struct bl_api *a = c->a;
    if (a->hub == NULL) {
        respond_error(a, c->ex, BL_ESHUTDOWN, "member is shutting down");
        call_free(c);
        return;
    }
    c->wait = bl_watch_wait(a->hub, c->key, c->key_len, c->prefix, c->index, (unsigned)c->wait_ms,
                            poll_done, c);
    if (c->wait == NULL) {
        respond_error(a, c->ex, BL_ENOMEM, "out of memory");
        call_free(c);
        return;
    }
    c->poll_next = a->polls;
    if (a->polls != NULL) {
        a->polls->poll_prev = c;
    }
    a->polls = c;
}

/* Long-polls whose client went away stop waiting (called every second). */
static void poll_sweep(struct bl_api *a)
{
    struct call *c, *next;
    for (c = a->polls; c != NULL; c = next) {
        next = c->poll_next;
        if (bl_http_exchange_gone(c->ex)) {
            bl_watch_wait_cancel(c->wait);
            c->wait = NULL;
            poll_unlink(c);
            respond_error(a, c->ex, BL_EBADREQ, "client went away"); /* discarded */
            call_free(c);
        }
    }
}

static void handle_kv(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct call *c;
    int kind;

    switch (ex->method) {
    case HTTP_GET:
        kind = CALL_GET;
        break;
    case HTTP_PUT:
        kind = CALL_PUT;
        break;
    case HTTP_DELETE:
        kind = CALL_DELETE;
        break;
    default:
        method_not_allowed(a, ex, "GET, PUT, DELETE");
        return;
    }
    c = call_new(a, ex, kind);
    if (c == NULL) {
        return;
    }
    if (parse_kv(c) != 0) {
        call_free(c);
        return;
    }
    if (kind == CALL_PUT && c->prefix) {
        respond_error(a, ex, BL_EBADREQ, "PUT does not take ?prefix");
        call_free(c);
        return;
    }
    if (kind == CALL_GET && c->index > 0 && c->wait_ms > 0) {
        ex->data = tag_relabel(ex->data, MC_KV_POLL);
        poll_start(c);
    } else if (kind == CALL_GET) {
        kv_read(c);
    } else {
        kv_write(c);
    }
}

/* ---- watch ----------------------------------------------------------------------------------- */

static bool method_is(struct bl_api *a, struct bl_http_exchange *ex, int method);

static int watch_format(const struct bl_http_exchange *ex)
{
    size_t len;
    const char *accept = bl_http_header_get(ex, "Accept", &len);
    if (accept != NULL && memmem(accept, len, "text/event-stream", 17) != NULL) {
        return BL_WATCH_SSE;
    }
    return want_format(ex) == BL_DOC_MSGPACK ? BL_WATCH_MSGPACK : BL_WATCH_NDJSON;
}

/* GET /v1/watch/{key}[?prefix][&rev=R]: the hub takes the exchange over. */
static void handle_watch(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct bl_http_header h[BL_WATCH_MAX_HEADERS];
    uint8_t key[BL_KEY_MAX];
    size_t key_len, len;
    uint64_t rev = 0, compact = 0;
    const char *v;
    void *tag;
    bool prefix;
    unsigned n;
    int rv;

    if (!method_is(a, ex, HTTP_GET)) {
        return;
    }
    prefix = query_has(ex, "prefix", NULL, NULL);
    if (decode_key(ex->path + strlen(WATCH_PREFIX), ex->path_len - strlen(WATCH_PREFIX), key,
                   &key_len) != 0) {
        respond_error(a, ex, BL_EBADREQ, "key must be 1..%d bytes, percent-encoded", BL_KEY_MAX);
        return;
    }
    if (key_len == 0 && !prefix) {
        respond_error(a, ex, BL_EBADREQ, "empty key (use ?prefix to watch every key)");
        return;
    }
    if (query_has(ex, "rev", &v, &len) && (parse_u64(v, len, &rev) != 0 || rev == 0)) {
        respond_error(a, ex, BL_EBADREQ, "rev must be a revision (1 or more)");
        return;
    }
    if (a->hub == NULL) {
        respond_error(a, ex, BL_ESHUTDOWN, "member is shutting down");
        return;
    }
    n = standard_headers(a, h, BL_WATCH_MAX_HEADERS);
    tag = ex->data;
    rv = bl_watch_start(a->hub, ex, key, key_len, prefix, rev, watch_format(ex), h, n, &compact);
    if (rv == BL_OK) {
        record(a, tag, 200); /* the hub owns @ex now: counted as the stream starts */
        return;
    }
    if (rv != BL_ECOMPACTED) {
        respond_error(a, ex, rv, "watch: %s", bl_strerror(rv));
        return;
    }
    bl_doc_reset(&a->doc, want_format(ex));
    bl_doc_map(&a->doc, 1);
    bl_doc_key(&a->doc, "error");
    bl_doc_map(&a->doc, 3);
    bl_doc_key(&a->doc, "code");
    bl_doc_cstr(&a->doc, bl_code_name(BL_ECOMPACTED));
    bl_doc_key(&a->doc, "message");
    bl_doc_cstr(&a->doc, "revision is older than the kept history (see compact_revision)");
    bl_doc_key(&a->doc, "compact_revision");
    bl_doc_uint(&a->doc, compact);
    respond_doc(a, ex, bl_code_http_status(BL_ECOMPACTED), NULL, 0);
}

/* ---- transactions and leases ------------------------------------------------------------ */

static bool method_is(struct bl_api *a, struct bl_http_exchange *ex, int method);

struct lease_keys_walk {
    struct bl_doc *d;
    uint32_t n;
};

static int lease_key_doc_cb(void *arg, const uint8_t *key, size_t len)
{
    struct lease_keys_walk *w = arg;
    bl_doc_bin(w->d, key, len);
    return ++w->n >= MAX_LIMIT ? 1 : 0;
}

static int lease_count_cb(void *arg, const uint8_t *key, size_t len)
{
    uint32_t *n = arg;
    (void)key;
    (void)len;
    return ++*n > MAX_LIMIT ? 1 : 0;
}

/* Leader: GET /v1/lease/{id}, POST /v1/lease/{id}/keepalive. */
static void lease_local(struct call *c)
{
    struct bl_api *a = c->a;
    struct bl_doc *d = &a->doc;
    uint64_t remaining_ms = 0, ttl = 0;
    int rv;

    if (c->kind == CALL_LEASE_KEEPALIVE) {
        rv = bl_member_lease_keepalive(a->member, c->lease, &ttl);
    } else {
        rv = bl_member_lease_remaining(a->member, c->lease, &remaining_ms, &ttl);
    }
    if (rv == BL_ENOLEADER) {
        forward(c);
        return;
    }
    if (rv == BL_ENOTFOUND) {
        respond_error(a, c->ex, rv, "lease %" PRIu64 " not found (expired or revoked)", c->lease);
        call_free(c);
        return;
    }
    if (rv != 0) {
        respond_error(a, c->ex, rv, "lease: %s", bl_strerror(rv));
        call_free(c);
        return;
    }
    bl_doc_reset(d, c->format);
    if (c->kind == CALL_LEASE_KEEPALIVE) {
        bl_doc_map(d, 2);
        bl_doc_key(d, "id");
        bl_doc_uint(d, c->lease);
        bl_doc_key(d, "ttl");
        bl_doc_uint(d, ttl);
    } else {
        struct bl_txn *txn;
        uint32_t n = 0;
        rv = bl_member_read_begin(a->member, &txn);
        if (rv == 0) {
            rv = bl_store_lease_keys(txn, c->lease, lease_count_cb, &n);
        }
        if (rv != 0) {
            if (txn != NULL && rv != BL_ENOTFOUND) {
                bl_store_abort(txn);
            }
            respond_error(a, c->ex, rv, "lease keys: %s", bl_strerror(rv));
            call_free(c);
            return;
        }
        bool more = n > MAX_LIMIT;
        struct lease_keys_walk w = {d, 0};
        bl_doc_map(d, 5);
        bl_doc_key(d, "id");
        bl_doc_uint(d, c->lease);
        bl_doc_key(d, "ttl");
        bl_doc_uint(d, (remaining_ms + 999) / 1000);
        bl_doc_key(d, "granted_ttl");
        bl_doc_uint(d, ttl);
        bl_doc_key(d, "keys");
        bl_doc_array(d, more ? MAX_LIMIT : n);
        rv = bl_store_lease_keys(txn, c->lease, lease_key_doc_cb, &w);
        bl_doc_key(d, "more");
        bl_doc_bool(d, more);
        bl_store_abort(txn);
        if (rv != 0) {
            respond_error(a, c->ex, rv, "lease keys: %s", bl_strerror(rv));
            call_free(c);
            return;
        }
    }
    respond_doc(a, c->ex, 200, NULL, 0);
    call_free(c);
}

struct lease_list_walk {
    struct bl_doc *d;
    uint32_t n;
};

static int lease_list_count_cb(void *arg, uint64_t id, const struct bl_lease *l)
{
    (void)id;
    (void)l;
    ((struct lease_list_walk *)arg)->n++;
    return 0;
}

static int lease_list_doc_cb(void *arg, uint64_t id, const struct bl_lease *l)
{
    struct lease_list_walk *w = arg;
    bl_doc_map(w->d, 2);
    bl_doc_key(w->d, "id");
    bl_doc_uint(w->d, id);
    bl_doc_key(w->d, "granted_ttl");
    bl_doc_uint(w->d, l->ttl);
    return 0;
}

/* GET /v1/leases: this member's applied lease table. */
static void lease_list(struct call *c)
{
    struct bl_api *a = c->a;
    struct lease_list_walk w = {&a->doc, 0};
    struct bl_txn *txn = NULL;
    int rv = bl_member_read_begin(a->member, &txn);
    if (rv == 0) {
        rv = bl_store_lease_scan(txn, lease_list_count_cb, &w);
    }
    if (rv == 0) {
        bl_doc_reset(&a->doc, c->format);
        bl_doc_map(&a->doc, 1);
        bl_doc_key(&a->doc, "leases");
        bl_doc_array(&a->doc, w.n);
        rv = bl_store_lease_scan(txn, lease_list_doc_cb, &w);
    }
    if (txn != NULL) {
        bl_store_abort(txn);
    }
    if (rv != 0) {
        respond_error(a, c->ex, rv, "leases: %s", bl_strerror(rv));
    } else {
        respond_doc(a, c->ex, 200, NULL, 0);
    }
    call_free(c);
}

/* Run (or re-run, from the park timer) a call of any kind. */
static void run_call(struct call *c)
{
    switch (c->kind) {
    case CALL_GET:
        kv_read(c);
        break;
    case CALL_RELAY:
        /* A members or leader request parked while no leader was known:
         * relay it now, or, if this member leads meanwhile, handle it here
         * as if it arrived now. */
        if (bl_member_is_leader(c->a->member)) {
            struct bl_api *a = c->a;
            struct bl_http_exchange *ex = c->ex;
            call_free(c);
            bl_api_handle(ex, a);
        } else {
            forward(c);
        }
        break;
    case CALL_LEASE_KEEPALIVE:
    case CALL_LEASE_GET:
        lease_local(c);
        break;
    case CALL_LEASE_LIST:
        lease_list(c);
        break;
    default:
        kv_write(c);
        break;
    }
}

/* Decode the request body as an object; on error answer 400 and return NULL. */
static json_t *body_doc(struct bl_api *a, struct bl_http_exchange *ex)
{
    char errmsg[BL_ERRMSG_SIZE];
    size_t ct_len = 0;
    const char *ct = bl_http_header_get(ex, "Content-Type", &ct_len);
    json_t *doc = NULL;
    int rv =
        bl_reqdoc_decode(bl_reqdoc_format(ct, ct_len), ex->body, ex->body_len, true, &doc, errmsg);
    if (rv != 0) {
        respond_error(a, ex, rv, "%s", errmsg);
        return NULL;
    }
    return doc;
}

static void handle_txn(struct bl_api *a, struct bl_http_exchange *ex)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct call *c;
    json_t *doc;
    int rv;

    if (!method_is(a, ex, HTTP_POST)) {
        return;
    }
    doc = body_doc(a, ex);
    if (doc == NULL) {
        return;
    }
    c = call_new(a, ex, CALL_TXN);
    if (c == NULL) {
        json_decref(doc);
        return;
    }
    rv = bl_txn_parse(doc, a->cfg->max_value_bytes, &c->txn, errmsg);
    json_decref(doc);
    if (rv != 0) {
        respond_error(a, ex, rv, "%s", errmsg);
        call_free(c);
        return;
    }
    if (parse_reqid(c) != 0) {
        call_free(c);
        return;
    }
    kv_write(c);
}

/* POST /v1/lease, GET /v1/leases, /v1/lease/{id}[/keepalive]. */
static void handle_lease(struct bl_api *a, struct bl_http_exchange *ex)
{
    static const char base[] = "/v1/lease";
    char errmsg[BL_ERRMSG_SIZE];
    const char *rest = ex->path + strlen(base);
    size_t rest_len = ex->path_len - strlen(base);
    struct call *c;
    int kind;
    uint64_t id = 0;

    if (rest_len == 1 && rest[0] == 's') { /* /v1/leases */
        if (!method_is(a, ex, HTTP_GET)) {
            return;
        }
        kind = CALL_LEASE_LIST;
    } else if (rest_len == 0) {
        if (!method_is(a, ex, HTTP_POST)) {
            return;
        }
        kind = CALL_LEASE_GRANT;
    } else {
        size_t digits = 1;
        while (digits < rest_len && rest[digits] != '/') {
            digits++;
        }
        if (rest[0] != '/' || parse_u64(rest + 1, digits - 1, &id) != 0 || id == 0 ||
            id > INT64_MAX) {
            respond_error(a, ex, BL_EBADREQ, "lease id must be a number 1..2^63-1");
            return;
        }
        if (digits == rest_len) {
            if (ex->method == HTTP_GET) {
                kind = CALL_LEASE_GET;
            } else if (ex->method == HTTP_DELETE) {
                kind = CALL_LEASE_REVOKE;
            } else {
                method_not_allowed(a, ex, "GET, DELETE");
                return;
            }
        } else if (rest_len - digits == strlen("/keepalive") &&
                   memcmp(rest + digits, "/keepalive", strlen("/keepalive")) == 0) {
            if (!method_is(a, ex, HTTP_POST)) {
                return;
            }
            kind = CALL_LEASE_KEEPALIVE;
        } else {
            respond_error(a, ex, BL_ENOTFOUND, "no such endpoint: %.*s", (int)ex->path_len,
                          ex->path);
            return;
        }
    }
    c = call_new(a, ex, kind);
    if (c == NULL) {
        return;
    }
    c->lease = id;
    if (kind == CALL_LEASE_GRANT) {
        json_t *doc = body_doc(a, ex);
        uint64_t ttl = 0, want = 0;
        int rv;
        if (doc == NULL) {
            call_free(c);
            return;
        }
        rv = bl_reqdoc_u64(doc, "ttl", true, &ttl, errmsg);
        if (rv == 0) {
            rv = bl_reqdoc_u64(doc, "id", false, &want, errmsg);
        }
        if (rv == 0 && json_object_size(doc) > (size_t)(json_object_get(doc, "id") ? 2 : 1)) {
            rv = BL_EBADREQ;
            snprintf(errmsg, sizeof errmsg, "a lease grant takes \"ttl\" and \"id\" only");
        }
        json_decref(doc);
        if (rv == 0 && (ttl < 1 || ttl > MAX_TTL_S || want > INT64_MAX)) {
            rv = BL_EBADREQ;
            snprintf(errmsg, sizeof errmsg, "ttl must be 1..%d seconds, id 1..2^63-1", MAX_TTL_S);
        }
        if (rv != 0) {
            respond_error(a, ex, rv, "%s", errmsg);
            call_free(c);
            return;
        }
        c->ttl = ttl < MIN_TTL_S ? MIN_TTL_S : ttl;
        c->lease = want;
    }
    if ((kind == CALL_LEASE_GRANT || kind == CALL_LEASE_REVOKE) && parse_reqid(c) != 0) {
        call_free(c);
        return;
    }
    run_call(c);
}

/* ---- cluster ------------------------------------------------------------------------------------
 */

static void doc_member(struct bl_doc *d, const struct bl_member_info *m);

static void doc_members(struct bl_api *a)
{
    struct bl_member_info *list = NULL;
    unsigned n = 0;

    if (bl_member_list(a->member, &list, &n) != 0) {
        n = 0;
    }
    bl_doc_array(&a->doc, n);
    for (unsigned i = 0; i < n; i++) {
        doc_member(&a->doc, &list[i]);
    }
    free(list);
}

static void handle_status(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct bl_member_status st;
    struct bl_doc *d = &a->doc;

    bl_member_status(a->member, &st);
    bl_doc_reset(d, want_format(ex));
    bl_doc_map(d, 12);
    bl_doc_key(d, "id");
    bl_doc_uint(d, st.id);
    bl_doc_key(d, "name");
    bl_doc_cstr(d, st.name);
    bl_doc_key(d, "role");
    bl_doc_cstr(d, bl_role_name(st.role));
    bl_doc_key(d, "leader");
    bl_doc_uint(d, st.leader_id);
    bl_doc_key(d, "term");
    bl_doc_uint(d, st.term);
    bl_doc_key(d, "commit_index");
    bl_doc_uint(d, st.commit_index);
    bl_doc_key(d, "applied_index");
    bl_doc_uint(d, st.applied_index);
    bl_doc_key(d, "revision");
    bl_doc_uint(d, st.revision);
    bl_doc_key(d, "db_bytes");
    bl_doc_uint(d, st.db_bytes);
    bl_doc_key(d, "raft_log_bytes");
    bl_doc_uint(d, st.raft_log_bytes);
    bl_doc_key(d, "members");
    doc_members(a);
    bl_doc_key(d, "version");
    bl_doc_cstr(d, SERVER_VERSION);
    respond_doc(a, ex, 200, NULL, 0);
}

static void handle_ready(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct bl_member_status st;
    bl_member_status(a->member, &st);
    if (st.leader_id == 0) {
        respond_error(a, ex, BL_ENOLEADER, "not ready: no leader known");
        return;
    }
    if (st.commit_index > st.applied_index + a->cfg->ready_lag) {
        respond_error(a, ex, BL_ENOLEADER,
                      "not ready: applied index %" PRIu64 " trails commit index %" PRIu64,
                      st.applied_index, st.commit_index);
        return;
    }
    bl_doc_reset(&a->doc, want_format(ex));
    bl_doc_map(&a->doc, 1);
    bl_doc_key(&a->doc, "ready");
    bl_doc_bool(&a->doc, true);
    respond_doc(a, ex, 200, NULL, 0);
}

/* GET /metrics: the Prometheus text exposition of this member's own state
 * and counters (never forwarded). */
static void handle_metrics(struct bl_api *a, struct bl_http_exchange *ex)
{
    static const struct {
        int role;
        const char *name;
    } roles[] = {{BL_ROLE_LEADER, "leader"},
                 {BL_ROLE_FOLLOWER, "follower"},
                 {BL_ROLE_CANDIDATE, "candidate"},
                 {BL_ROLE_LEARNER, "learner"},
                 {BL_ROLE_UNAVAILABLE, "unavailable"}};
    struct bl_member_status st;
    struct bl_member_info *list = NULL;
    struct bl_metrics_text t;
    struct bl_metric_label l[3];
    unsigned n = 0, voters = 0, learners = 0, reachable = 0;
    char id[24];

    bl_member_status(a->member, &st);
    if (bl_member_list(a->member, &list, &n) != 0) {
        n = 0;
    }
    for (unsigned i = 0; i < n; i++) {
        voters += list[i].voter;
        learners += !list[i].voter;
        reachable += list[i].reachable;
    }
    free(list);

    bl_metrics_text_init(&t);
    snprintf(id, sizeof id, "%" PRIu64, st.id);
    l[0] = (struct bl_metric_label){"id", id};
    l[1] = (struct bl_metric_label){"name", st.name != NULL ? st.name : ""};
    l[2] = (struct bl_metric_label){"version", SERVER_VERSION};
    bl_metrics_text_family(&t, "ballast_info", "gauge", "This member: always 1, with its labels.");
    bl_metrics_text_sample(&t, "ballast_info", l, 3, 1);
    bl_metrics_text_counter(&t, &a->m_requests);
    bl_metrics_text_histogram(&t, &a->m_latency);

    bl_metrics_text_gauge(&t, "ballast_raft_term", "Current Raft term.", st.term);
    bl_metrics_text_gauge(&t, "ballast_raft_commit_index", "Raft commit index known here.",
                          st.commit_index);
    bl_metrics_text_gauge(&t, "ballast_raft_applied_index",
                          "Raft index of the last entry applied to the store.", st.applied_index);
    bl_metrics_text_gauge(&t, "ballast_raft_last_index", "Raft index of the last log entry.",
                          st.last_index);
    bl_metrics_text_family(&t, "ballast_raft_role", "gauge",
                           "1 for this member's current Raft role, 0 for the others.");
    for (unsigned i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        l[0] = (struct bl_metric_label){"role", roles[i].name};
        bl_metrics_text_sample(&t, "ballast_raft_role", l, 1, st.role == roles[i].role);
    }
    bl_metrics_text_gauge(&t, "ballast_raft_leader_id", "Raft id of the known leader, 0 if none.",
                          st.leader_id);
    bl_metrics_text_gauge(&t, "ballast_revision", "Store revision of the applied state.",
                          st.revision);
    bl_metrics_text_histogram(&t, &a->m_apply);
    bl_metrics_text_histogram(&t, &a->m_append);
    bl_metrics_text_counter(&t, &a->m_append_failed);
    bl_metrics_text_gauge(&t, "ballast_proposals_inflight",
                          "Writes handed to Raft whose outcome is not known yet.",
                          bl_member_proposals_inflight(a->member));

    bl_metrics_text_gauge(&t, "ballast_db_bytes", "Bytes used by the store (LMDB).", st.db_bytes);
    bl_metrics_text_gauge(&t, "ballast_raft_log_bytes",
                          "Bytes of the Raft directory (log segments and snapshots).",
                          st.raft_log_bytes);
    bl_metrics_text_family(&t, "ballast_members", "gauge",
                           "Members of the Raft configuration, by role.");
    l[0] = (struct bl_metric_label){"role", "voter"};
    bl_metrics_text_sample(&t, "ballast_members", l, 1, voters);
    l[0] = (struct bl_metric_label){"role", "learner"};
    bl_metrics_text_sample(&t, "ballast_members", l, 1, learners);
    bl_metrics_text_gauge(&t, "ballast_members_reachable",
                          "Members reachable as GET /v1/members reports them (the leader's "
                          "view on the leader; this member included).",
                          reachable);

    bl_metrics_text_gauge(&t, "ballast_watchers", "Open watch streams.",
                          a->hub != NULL ? bl_watch_hub_count(a->hub) : 0);
    bl_metrics_text_gauge(&t, "ballast_long_polls", "Long-poll GETs waiting for a change.",
                          a->hub != NULL ? bl_watch_hub_waits(a->hub) : 0);
    bl_metrics_text_gauge(&t, "ballast_http_connections", "Open client connections.",
                          a->http != NULL ? bl_http_server_connections(a->http) : 0);
    {
        uint64_t served = 0, relayed = 0, requests = 0;
        if (a->ri != NULL) {
            bl_readindex_counts(a->ri, &served, &relayed, &requests);
        }
        bl_metrics_text_family(&t, "ballast_read_index_reads_total", "counter",
                               "Linearizable reads that reached this member as a follower: "
                               "served here after a read index from the leader, or relayed to "
                               "the leader because none could be had.");
        l[0] = (struct bl_metric_label){"outcome", "served"};
        bl_metrics_text_sample(&t, "ballast_read_index_reads_total", l, 1, served);
        l[0] = (struct bl_metric_label){"outcome", "relayed"};
        bl_metrics_text_sample(&t, "ballast_read_index_reads_total", l, 1, relayed);
        bl_metrics_text_family(&t, "ballast_read_index_requests_total", "counter",
                               "Read index requests this follower sent to the leader (one "
                               "covers every read that arrived in one event loop pass).");
        bl_metrics_text_sample(&t, "ballast_read_index_requests_total", NULL, 0, requests);
    }
    if (t.err != 0) {
        bl_metrics_text_free(&t);
        respond_error(a, ex, BL_ENOMEM, "out of memory rendering the metrics");
        return;
    }
    respond(a, ex, 200, "text/plain; version=0.0.4; charset=utf-8", t.data, t.len, NULL, 0);
    bl_metrics_text_free(&t);
}

/* POST /v1/internal/publish: a follower's MEMBER_SET command, proposed by the leader. */
/* GET /v1/internal/readindex (leader): once a barrier proposed now has
 * committed, the index just below it (every entry committed before the
 * request arrived is at or below it). A follower serves linearizable reads
 * once it has applied that far (readindex.h). */
static void read_index_barrier_done(void *arg, int status)
{
    struct call *c = arg;
    struct bl_api *a = c->a;
    a->pending--;
    if (status != 0 || a->member == NULL) {
        respond_error(a, c->ex, status == BL_ESHUTDOWN ? BL_ESHUTDOWN : BL_ENOLEADER,
                      "leadership could not be confirmed for a read index");
    } else {
        /* Not the applied index (the barrier's own entry): a follower
         * would wait for the barrier's commit to reach it, up to a
         * heartbeat later. Everything before the barrier is enough. */
        char body[64];
        int n = snprintf(body, sizeof body, "{\"index\":%" PRIu64 "}",
                         bl_member_barrier_index(a->member) - 1);
        respond(a, c->ex, 200, "application/json", body, (size_t)n, NULL, 0);
    }
    call_free(c);
}

static void handle_read_index(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct call *c;
    int rv;

    if (!bl_member_is_leader(a->member)) {
        respond_error(a, ex, BL_ENOLEADER, "member %" PRIu64 " is not the leader",
                      bl_member_id(a->member));
        return;
    }
    c = call_new(a, ex, CALL_READINDEX);
    if (c == NULL) {
        return;
    }
    rv = bl_member_read_barrier(a->member, read_index_barrier_done, c);
    if (rv != 0) {
        respond_error(a, ex, rv == BL_ENOLEADER ? BL_ENOLEADER : rv, "read index: %s",
                      bl_strerror(rv));
        call_free(c);
        return;
    }
    a->pending++;
}

static void handle_publish(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct bl_cmd cmd;
    struct call *c;
    char msg[BL_ERRMSG_SIZE];
    int rv;

    if (bl_cmd_decode(ex->body, ex->body_len, &cmd, msg) != 0 || cmd.type != BL_CMD_MEMBER_SET) {
        respond_error(a, ex, BL_EBADREQ, "publish: body is not a member attributes command");
        return;
    }
    c = call_new(a, ex, CALL_PUBLISH);
    if (c == NULL) {
        return;
    }
    rv = bl_member_propose(a->member, &cmd, write_done, c);
    if (rv != 0) {
        respond_error(a, ex, rv, "publish: %s", bl_strerror(rv));
        call_free(c);
        return;
    }
    a->pending++;
}

static bool method_is(struct bl_api *a, struct bl_http_exchange *ex, int method);

/* ---- membership ------------------------------------------------------------------------ */

/* A members request waiting on a Raft configuration change (or on the
 * leadership transfer that must come before removing the leader). As with
 * leader_call, the call comes first so forward() can take &mc->base. */
struct member_call {
    struct call base;
    struct bl_member *member;
    uint64_t id;
    int op; /* MEMBER_OP_* */
};

enum { MEMBER_OP_ADD, MEMBER_OP_REMOVE, MEMBER_OP_PROMOTE };

static void doc_member(struct bl_doc *d, const struct bl_member_info *m)
{
    bl_doc_map(d, 7);
    bl_doc_key(d, "id");
    bl_doc_uint(d, m->id);
    bl_doc_key(d, "name");
    bl_doc_cstr(d, m->name);
    bl_doc_key(d, "peer_url");
    bl_doc_cstr(d, m->peer_url);
    bl_doc_key(d, "client_url");
    bl_doc_cstr(d, m->client_url);
    bl_doc_key(d, "role");
    bl_doc_cstr(d, m->voter ? "voter" : "learner");
    bl_doc_key(d, "reachable");
    bl_doc_bool(d, m->reachable);
    bl_doc_key(d, "match_index");
    bl_doc_uint(d, m->match_index);
}

static void respond_member(struct bl_api *a, struct bl_http_exchange *ex, int format,
                           struct bl_member *member, uint64_t id, int status)
{
    struct bl_member_info info;
    if (bl_member_get(member, id, &info) != 0) {
        respond_error(a, ex, BL_EINTERNAL, "member %" PRIu64 " is not in the configuration", id);
        return;
    }
    bl_doc_reset(&a->doc, format);
    doc_member(&a->doc, &info);
    respond_doc(a, ex, status, NULL, 0);
}

static struct member_call *member_call_new(struct bl_api *a, struct bl_http_exchange *ex, int op,
                                           uint64_t id)
{
    struct member_call *mc = calloc(1, sizeof *mc);
    if (mc == NULL) {
        respond_error(a, ex, BL_ENOMEM, "out of memory");
        return NULL;
    }
    mc->base.a = a;
    mc->base.ex = ex;
    mc->base.kind = CALL_RELAY;
    mc->base.format = want_format(ex);
    mc->member = a->member;
    mc->op = op;
    mc->id = id;
    return mc;
}

static void member_change_done(void *arg, int status, uint64_t id)
{
    struct member_call *mc = arg;
    struct bl_api *a = mc->base.a;
    struct bl_http_exchange *ex = mc->base.ex;

    a->pending--;
    if (status != 0) {
        respond_error(a, ex, status,
                      status == BL_ETIMEOUT
                          ? "membership change for %" PRIu64
                            ": leadership was lost; the change may or may not have committed"
                          : "membership change for %" PRIu64 " failed",
                      id);
    } else if (mc->op == MEMBER_OP_REMOVE) {
        bl_doc_reset(&a->doc, mc->base.format);
        bl_doc_map(&a->doc, 1);
        bl_doc_key(&a->doc, "removed");
        bl_doc_uint(&a->doc, id);
        respond_doc(a, ex, 200, NULL, 0);
    } else {
        respond_member(a, ex, mc->base.format, mc->member, id, mc->op == MEMBER_OP_ADD ? 201 : 200);
    }
    call_free(&mc->base);
}

static void respond_change_refused(struct bl_api *a, struct bl_http_exchange *ex, int rv,
                                   uint64_t id)
{
    if (rv == BL_EUNAVAILABLE) {
        respond_error(a, ex, rv, "another membership change is in progress; retry");
    } else if (rv == BL_ENOTFOUND) {
        respond_error(a, ex, rv, "member %" PRIu64 " is not in the configuration", id);
    } else {
        respond_error(a, ex, rv, "membership change for %" PRIu64 ": %s", id, bl_strerror(rv));
    }
}

/* String field @name of @doc into @out (NULL if absent). 400 on a non-string. */
static int doc_str(struct bl_api *a, struct bl_http_exchange *ex, json_t *doc, const char *name,
                   bool required, const char **out)
{
    json_t *v = json_object_get(doc, name);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            respond_error(a, ex, BL_EBADREQ, "field \"%s\" is required", name);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255) {
        respond_error(a, ex, BL_EBADREQ, "field \"%s\" must be a string of 1..255 bytes", name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* "host:port" with a non-empty host and a port 1..65535. */
static bool host_port_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    char *end;
    unsigned long port;
    if (colon == NULL || colon == s) {
        return false;
    }
    port = strtoul(colon + 1, &end, 10);
    return *end == '\0' && colon[1] != '\0' && port >= 1 && port <= 65535;
}

/* POST /v1/members {"name", "peer_url", "client_url", "id"?, "role"?,
 * "rejoin"?}. Adds a learner (or a voter) and answers 201 with it. An
 * identical member that never ran is answered 200 (a retried add). With
 * "rejoin": true (a member that lost its data dir asks for itself), the old
 * entry with that id or peer address is replaced by one under a fresh id
 * when the old id has run, because a member that lost its vote record must
 * never vote under that id again. */
static void handle_members_post(struct bl_api *a, struct bl_http_exchange *ex)
{
    static const char *const fields[] = {"name", "peer_url", "client_url", "id", "role", "rejoin"};
    char errmsg[BL_ERRMSG_SIZE];
    struct bl_member_add_req req;
    struct bl_member_info *list = NULL;
    const struct bl_member_info *by_id = NULL, *by_peer = NULL, *old;
    const char *ct, *key, *role = NULL;
    struct member_call *mc;
    size_t ct_len = 0;
    unsigned n = 0;
    json_t *doc, *val;
    bool rejoin = false;
    int rv;

    memset(&req, 0, sizeof req);
    ct = bl_http_header_get(ex, "Content-Type", &ct_len);
    rv = bl_reqdoc_decode(bl_reqdoc_format(ct, ct_len), ex->body, ex->body_len, true, &doc, errmsg);
    if (rv != 0) {
        respond_error(a, ex, rv, "%s", errmsg);
        return;
    }
    json_object_foreach(doc, key, val)
    {
        bool known = false;
        for (unsigned i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            known |= strcmp(key, fields[i]) == 0;
        }
        if (!known) {
            respond_error(a, ex, BL_EBADREQ,
                          "unknown field \"%s\" (fields: name, peer_url, client_url, id, role, "
                          "rejoin)",
                          key);
            goto out;
        }
    }
    if (doc_str(a, ex, doc, "name", false, &req.name) != 0 ||
        doc_str(a, ex, doc, "peer_url", true, &req.peer_url) != 0 ||
        doc_str(a, ex, doc, "client_url", true, &req.client_url) != 0 ||
        doc_str(a, ex, doc, "role", false, &role) != 0) {
        goto out;
    }
    if (bl_reqdoc_u64(doc, "id", false, &req.id, errmsg) != 0) {
        respond_error(a, ex, BL_EBADREQ, "%s", errmsg);
        goto out;
    }
    val = json_object_get(doc, "rejoin");
    if (val != NULL && !json_is_boolean(val)) {
        respond_error(a, ex, BL_EBADREQ, "field \"rejoin\" must be true or false");
        goto out;
    }
    rejoin = val != NULL && json_is_true(val);
    if (role != NULL && strcmp(role, "learner") != 0 && strcmp(role, "voter") != 0) {
        respond_error(a, ex, BL_EBADREQ, "field \"role\" must be \"learner\" or \"voter\"");
        goto out;
    }
    req.voter = role != NULL && strcmp(role, "voter") == 0;
    if (!host_port_ok(req.peer_url) || !host_port_ok(req.client_url)) {
        respond_error(a, ex, BL_EBADREQ, "peer_url and client_url must be HOST:PORT");
        goto out;
    }
    if (req.id > INT64_MAX) {
        respond_error(a, ex, BL_EBADREQ, "field \"id\" must be 1..2^63-1");
        goto out;
    }
    if (!bl_member_is_leader(a->member)) {
        mc = member_call_new(a, ex, MEMBER_OP_ADD, req.id);
        if (mc != NULL) {
            forward(&mc->base);
        }
        goto out;
    }

    if (bl_member_list(a->member, &list, &n) != 0) {
        respond_error(a, ex, BL_ENOMEM, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        if (req.id != 0 && list[i].id == req.id) {
            by_id = &list[i];
        }
        if (strcmp(list[i].peer_url, req.peer_url) == 0) {
            by_peer = &list[i];
        }
    }
    old = by_id != NULL ? by_id : by_peer;
    if (old != NULL && (req.id == 0 || old->id == req.id) &&
        strcmp(old->peer_url, req.peer_url) == 0 && !bl_member_id_seen(a->member, old->id)) {
        /* Added before and never ran: this is a retry, or the member
         * that an operator added is starting. */
        respond_member(a, ex, want_format(ex), a->member, old->id, 200);
        goto out;
    }
    if (!rejoin) {
        if (by_id != NULL) {
            respond_error(a, ex, BL_EBADREQ, "member %" PRIu64 " already exists", by_id->id);
            goto out;
        }
        if (by_peer != NULL) {
            respond_error(a, ex, BL_EBADREQ, "peer address %s is member %" PRIu64 "'s",
                          req.peer_url, by_peer->id);
            goto out;
        }
        if (req.id != 0 && bl_member_id_seen(a->member, req.id)) {
            respond_error(a, ex, BL_EBADREQ,
                          "id %" PRIu64 " belonged to a member before: ids are never reused",
                          req.id);
            goto out;
        }
    } else if (old != NULL) {
        req.replace = old->id;
        if (old->id == bl_member_id(a->member)) {
            respond_error(a, ex, BL_EBADREQ,
                          "member %" PRIu64 " is the running leader: it has not lost its data",
                          old->id);
            goto out;
        }
    }
    if (req.id == 0 || (old != NULL && old->id == req.id) || bl_member_id_seen(a->member, req.id)) {
        req.id = bl_member_fresh_id(a->member);
    }
    mc = member_call_new(a, ex, MEMBER_OP_ADD, req.id);
    if (mc == NULL) {
        goto out;
    }
    rv = bl_member_add(a->member, &req, member_change_done, mc);
    if (rv == BL_ENOLEADER) {
        forward(&mc->base);
        goto out;
    }
    if (rv != 0) {
        respond_change_refused(a, ex, rv, req.id);
        call_free(&mc->base);
        goto out;
    }
    a->pending++;
out:
    free(list);
    json_decref(doc);
}

static void remove_after_transfer(void *arg, int status, uint64_t new_leader)
{
    struct member_call *mc = arg;
    struct bl_api *a = mc->base.a;
    (void)new_leader;
    a->pending--;
    if (status != 0) {
        respond_error(a, mc->base.ex, BL_EUNAVAILABLE,
                      "member %" PRIu64 " leads and could not hand leadership over before "
                      "its removal; retry",
                      mc->id);
        call_free(&mc->base);
        return;
    }
    mc->base.reforward = true;
    forward(&mc->base); /* the new leader removes this member */
}

/* DELETE /v1/members/{id}, POST /v1/members/{id}/promote. Removing the
 * leader hands leadership to the most caught-up voter first, then relays
 * the removal to the new leader. */
static void handle_member_id(struct bl_api *a, struct bl_http_exchange *ex)
{
    const char *p = ex->path + strlen("/v1/members/");
    size_t len = ex->path_len - strlen("/v1/members/");
    const char *slash = memchr(p, '/', len);
    size_t id_len = slash != NULL ? (size_t)(slash - p) : len;
    bool promote = slash != NULL && (size_t)(p + len - slash) == strlen("/promote") &&
                   memcmp(slash, "/promote", strlen("/promote")) == 0;
    struct member_call *mc;
    struct bl_member_info info;
    uint64_t id;
    int rv;

    if (parse_u64(p, id_len, &id) != 0 || id == 0) {
        respond_error(a, ex, BL_EBADREQ, "member id must be a number 1..2^63-1");
        return;
    }
    if (slash != NULL && !promote) {
        respond_error(a, ex, BL_ENOTFOUND, "no such endpoint: %.*s", (int)ex->path_len, ex->path);
        return;
    }
    if (promote ? !method_is(a, ex, HTTP_POST)
                : (ex->method != HTTP_DELETE && ex->method != HTTP_GET)) {
        if (!promote) {
            method_not_allowed(a, ex, "GET, DELETE");
        }
        return;
    }
    if (ex->method == HTTP_GET) {
        if (bl_member_get(a->member, id, &info) != 0) {
            respond_error(a, ex, BL_ENOTFOUND, "member %" PRIu64 " is not in the configuration",
                          id);
            return;
        }
        bl_doc_reset(&a->doc, want_format(ex));
        doc_member(&a->doc, &info);
        respond_doc(a, ex, 200, NULL, 0);
        return;
    }
    mc = member_call_new(a, ex, promote ? MEMBER_OP_PROMOTE : MEMBER_OP_REMOVE, id);
    if (mc == NULL) {
        return;
    }
    if (!promote && id == bl_member_id(a->member) && bl_member_is_leader(a->member)) {
        rv = bl_member_transfer(a->member, 0, remove_after_transfer, mc);
        if (rv == 0) {
            a->pending++;
            return;
        }
    } else {
        rv = promote ? bl_member_promote(a->member, id, member_change_done, mc)
                     : bl_member_remove(a->member, id, member_change_done, mc);
    }
    if (rv == BL_ENOLEADER) {
        forward(&mc->base);
        return;
    }
    if (rv != 0) {
        if (rv == BL_EBADREQ && !promote && id != bl_member_id(a->member)) {
            respond_error(a, ex, rv, "member %" PRIu64 " is the last voter", id);
        } else if (rv == BL_EUNAVAILABLE && !promote && id == bl_member_id(a->member)) {
            respond_error(a, ex, rv, "member %" PRIu64 " leads and has no voter to hand over to",
                          id);
        } else {
            respond_change_refused(a, ex, rv, id);
        }
        call_free(&mc->base);
        return;
    }
    a->pending++;
}

/* ---- backup ------------------------------------------------------------------------------ */

struct snapshot_call {
    struct call base;
    int fd;
};

static void snapshot_done(void *arg, int status, const struct bl_backup_info *info,
                          const char *errmsg)
{
    struct snapshot_call *sc = arg;
    struct bl_api *a = sc->base.a;
    struct bl_http_exchange *ex = sc->base.ex;
    struct bl_http_header h[2];
    char rev[24], disp[64];
    struct stat st;
    void *map = NULL;

    a->pending--;
    if (status == 0 && fstat(sc->fd, &st) != 0) {
        status = BL_EIO;
        errmsg = "cannot stat the backup file";
    }
    if (status == 0 && st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, sc->fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            status = BL_ENOMEM;
            errmsg = "cannot map the backup file";
        }
    }
    if (status != 0) {
        respond_error(a, ex, status, "backup: %s", errmsg);
    } else {
        snprintf(rev, sizeof rev, "%" PRIu64, info->revision);
        snprintf(disp, sizeof disp, "attachment; filename=\"ballast-%" PRIu64 ".snap\"",
                 info->revision);
        h[0] = header("X-Ballast-Snapshot-Revision", rev);
        h[1] = header("Content-Disposition", disp);
        respond(a, ex, 200, "application/octet-stream", map, (size_t)st.st_size, h, 2);
    }
    if (map != NULL) {
        munmap(map, (size_t)st.st_size);
    }
    close(sc->fd);
    call_free(&sc->base);
}

/* GET /v1/snapshot: a consistent backup of the whole store (backup.h's
 * format), written by a worker thread into an unlinked temporary file in
 * the data dir, then sent whole. */
static void handle_snapshot(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct snapshot_call *sc;
    char path[4200];
    int rv;

    snprintf(path, sizeof path, "%s/backup-XXXXXX", bl_member_data_dir(a->member));
    sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        respond_error(a, ex, BL_ENOMEM, "out of memory");
        return;
    }
    sc->base.a = a;
    sc->base.ex = ex;
    sc->base.kind = CALL_RELAY;
    sc->base.format = want_format(ex);
    sc->fd = mkstemp(path);
    if (sc->fd < 0) {
        respond_error(a, ex, BL_EIO, "backup: cannot create a temporary file in the data dir");
        free(sc);
        return;
    }
    unlink(path);
    rv = bl_member_backup(a->member, sc->fd, snapshot_done, sc);
    if (rv != 0) {
        respond_error(a, ex, rv, "backup: %s", bl_strerror(rv));
        close(sc->fd);
        free(sc);
        return;
    }
    a->pending++;
}

/* ---- leadership transfer ------------------------------------------------------------------ */

/* POST /v1/leader waiting for bl_member_transfer(). The call comes first so
 * that forward() can take &lc->base and free it with call_free(); of the
 * call, only a, ex and format are used on this path. */
struct leader_call {
    struct call base;
    struct bl_member *member; /* the member that runs the transfer */
    uint64_t to;              /* as asked: 0 = the best candidate */
};

/* 200 {"leader": id, "term": T}. */
static void respond_leader(struct bl_api *a, struct bl_http_exchange *ex, int format,
                           struct bl_member *m, uint64_t leader)
{
    uint64_t term = 0, applied, revision;

    bl_member_indexes(m, &term, &applied, &revision);
    bl_doc_reset(&a->doc, format);
    bl_doc_map(&a->doc, 2);
    bl_doc_key(&a->doc, "leader");
    bl_doc_uint(&a->doc, leader);
    bl_doc_key(&a->doc, "term");
    bl_doc_uint(&a->doc, term);
    respond_doc(a, ex, 200, NULL, 0);
}

static void leader_done(void *arg, int status, uint64_t new_leader)
{
    struct leader_call *lc = arg;
    struct bl_api *a = lc->base.a;
    char who[64], now[64];

    a->pending--;
    if (status == BL_OK) {
        respond_leader(a, lc->base.ex, lc->base.format, lc->member, new_leader);
    } else {
        if (lc->to != 0) {
            snprintf(who, sizeof who, "member %" PRIu64, lc->to);
        } else {
            snprintf(who, sizeof who, "the most caught-up voter");
        }
        if (new_leader != 0) {
            snprintf(now, sizeof now, "member %" PRIu64 " leads now", new_leader);
        } else {
            snprintf(now, sizeof now, "no leader is known now");
        }
        respond_error(a, lc->base.ex, BL_ETIMEOUT,
                      "%s did not take over within the election timeout; %s", who, now);
    }
    call_free(&lc->base);
}

/* Why bl_member_transfer() refused @to with @rv (BL_EBADREQ or
 * BL_EUNAVAILABLE), from the member list. */
static void respond_transfer_refused(struct bl_api *a, struct bl_http_exchange *ex, int rv,
                                     uint64_t to)
{
    struct bl_member_info *list = NULL;
    unsigned n = 0, others = 0;
    bool target_learner = false; /* @to is listed, as a learner */

    if (bl_member_list(a->member, &list, &n) != 0) {
        n = 0;
    }
    for (unsigned i = 0; i < n; i++) {
        if (list[i].id != bl_member_id(a->member) && list[i].voter) {
            others++;
        }
        if (list[i].id == to) {
            target_learner = !list[i].voter;
        }
    }
    free(list); /* nothing below may point into it */
    if (rv == BL_EBADREQ) {
        if (target_learner) {
            respond_error(a, ex, BL_EBADREQ,
                          "member %" PRIu64 " is a learner, not a voter of this cluster", to);
        } else {
            respond_error(a, ex, BL_EBADREQ, "member %" PRIu64 " is not a voter of this cluster",
                          to);
        }
    } else if (others == 0) {
        respond_error(a, ex, BL_EUNAVAILABLE,
                      "no other voter to hand leadership to: member %" PRIu64 " stays leader",
                      bl_member_id(a->member));
    } else {
        respond_error(a, ex, BL_EUNAVAILABLE, "a leadership transfer is already running");
    }
}

/* The target from the body ({"to": id}, JSON or msgpack) and ?to=; 0 when
 * neither names one. On bad input answer 400 and return non-zero. */
static int parse_leader(struct bl_api *a, struct bl_http_exchange *ex, uint64_t *to)
{
    char errmsg[BL_ERRMSG_SIZE];
    const char *ct, *v, *key;
    size_t ct_len = 0, len;
    uint64_t body_to = 0, query_to = 0;
    json_t *doc, *val;
    bool in_query;
    int rv;

    ct = bl_http_header_get(ex, "Content-Type", &ct_len);
    rv = bl_reqdoc_decode(bl_reqdoc_format(ct, ct_len), ex->body, ex->body_len, true, &doc, errmsg);
    if (rv != 0) {
        respond_error(a, ex, rv, "%s", errmsg);
        return -1;
    }
    json_object_foreach(doc, key, val)
    {
        if (strcmp(key, "to") != 0) {
            respond_error(a, ex, BL_EBADREQ, "unknown field \"%s\" (the body is {\"to\": id})",
                          key);
            json_decref(doc);
            return -1;
        }
    }
    rv = bl_reqdoc_u64(doc, "to", false, &body_to, errmsg);
    json_decref(doc);
    if (rv != 0) {
        respond_error(a, ex, rv, "%s", errmsg);
        return -1;
    }
    in_query = query_has(ex, "to", &v, &len);
    if (in_query && parse_u64(v, len, &query_to) != 0) {
        respond_error(a, ex, BL_EBADREQ, "?to must be a member id");
        return -1;
    }
    if (in_query && body_to != 0 && query_to != body_to) {
        respond_error(a, ex, BL_EBADREQ,
                      "?to=%" PRIu64 " and the body's \"to\": %" PRIu64 " disagree", query_to,
                      body_to);
        return -1;
    }
    *to = body_to != 0 ? body_to : query_to;
    return 0;
}

/* POST /v1/leader: hand leadership to voter "to" (absent or 0: the voter
 * with the highest match index). A follower relays it to the leader; a
 * transfer to the leader itself is a no-op answered 200. */
static void handle_leader(struct bl_api *a, struct bl_http_exchange *ex)
{
    struct leader_call *lc;
    uint64_t to = 0;
    int rv;

    if (parse_leader(a, ex, &to) != 0) {
        return;
    }
    if (to == bl_member_id(a->member) && bl_member_is_leader(a->member)) {
        respond_leader(a, ex, want_format(ex), a->member, to);
        return;
    }
    lc = calloc(1, sizeof *lc);
    if (lc == NULL) {
        respond_error(a, ex, BL_ENOMEM, "out of memory");
        return;
    }
    lc->base.a = a;
    lc->base.ex = ex;
    lc->base.kind = CALL_RELAY;
    lc->base.format = want_format(ex);
    lc->member = a->member;
    lc->to = to;
    rv = bl_member_transfer(a->member, to, leader_done, lc);
    if (rv == BL_ENOLEADER) {
        forward(&lc->base);
        return;
    }
    if (rv == BL_EBADREQ || rv == BL_EUNAVAILABLE) {
        respond_transfer_refused(a, ex, rv, to);
    } else if (rv != 0) {
        respond_error(a, ex, rv, "leadership transfer: %s", bl_strerror(rv));
    }
    if (rv != 0) {
        call_free(&lc->base);
        return;
    }
    a->pending++;
}

static void publish_done(void *arg, int status, const struct bl_http_response *resp)
{
    struct bl_api *a = arg;
    a->publishing = false;
    if (status != 0 || resp->status != 200) {
        BL_WARN("api: publishing member attributes through the leader failed: %s",
                status != 0 ? bl_strerror(status) : "leader refused");
    }
}

/* Followers publish their attributes through the leader's client API. */
static void publish_timer_cb(uv_timer_t *t)
{
    struct bl_api *a = t->data;
    struct bl_cmd cmd;
    char url[256];
    void *buf;
    size_t len;

    poll_sweep(a);
    if (a->publishing || a->member == NULL || bl_member_is_leader(a->member) ||
        !bl_member_needs_publish(a->member) ||
        bl_member_leader_client_url(a->member, url, sizeof url) != 0) {
        return;
    }
    bl_member_attrs_cmd(a->member, &cmd);
    if (bl_cmd_encode(&cmd, &buf, &len) != 0) {
        return;
    }
    if (bl_http_client_request(a->client, url, "POST", "/v1/internal/publish", 20, NULL, 0, buf,
                               len, 5000, publish_done, a) == 0) {
        a->publishing = true;
    }
    free(buf);
}

/* ---- routing
 * -------------------------------------------------------------------------------------- */

static bool path_is(const struct bl_http_exchange *ex, const char *p)
{
    size_t n = strlen(p);
    return ex->path_len == n && memcmp(ex->path, p, n) == 0;
}

static bool path_starts(const struct bl_http_exchange *ex, const char *p)
{
    size_t n = strlen(p);
    return ex->path_len >= n && memcmp(ex->path, p, n) == 0;
}

/* The path is @p or below it ("/v1/lease" matches "/v1/lease/7", not "/v1/leases"). */
static bool path_under(const struct bl_http_exchange *ex, const char *p)
{
    size_t n = strlen(p);
    return path_starts(ex, p) && (ex->path_len == n || ex->path[n] == '/');
}

static bool method_is(struct bl_api *a, struct bl_http_exchange *ex, int method)
{
    if (ex->method == method) {
        return true;
    }
    method_not_allowed(a, ex, method_name(method));
    return false;
}

/* The call label of @ex (enum metric_call), from its path and method. */
static unsigned classify(const struct bl_http_exchange *ex)
{
    if (path_starts(ex, KV_PREFIX)) {
        switch (ex->method) {
        case HTTP_GET:
            return query_has(ex, "prefix", NULL, NULL) ? MC_KV_RANGE : MC_KV_GET;
        case HTTP_PUT:
            return MC_KV_PUT;
        case HTTP_DELETE:
            return MC_KV_DELETE;
        default:
            return MC_OTHER;
        }
    }
    if (path_starts(ex, WATCH_PREFIX)) {
        return MC_WATCH;
    }
    if (path_is(ex, "/v1/txn")) {
        return MC_TXN;
    }
    if (path_is(ex, "/v1/lease") || path_is(ex, "/v1/leases") || path_starts(ex, "/v1/lease/")) {
        return MC_LEASE;
    }
    if (path_under(ex, "/v1/members")) {
        return MC_MEMBERS;
    }
    if (path_is(ex, "/v1/leader")) {
        return MC_LEADER;
    }
    if (path_is(ex, "/v1/status")) {
        return MC_STATUS;
    }
    if (path_is(ex, "/v1/snapshot")) {
        return MC_SNAPSHOT;
    }
    if (path_is(ex, "/healthz") || path_is(ex, "/readyz")) {
        return MC_HEALTH;
    }
    if (path_is(ex, "/metrics")) {
        return MC_METRICS;
    }
    return MC_OTHER;
}

void bl_api_handle(struct bl_http_exchange *ex, void *arg)
{
    struct bl_api *a = arg;

    ex->data = tag_new(classify(ex));
    if (path_is(ex, "/healthz")) {
        static const char ok[] = "{\"health\":\"ok\"}";
        if (method_is(a, ex, HTTP_GET)) {
            respond(a, ex, 200, "application/json", ok, sizeof ok - 1, NULL, 0);
        }
        return;
    }
    if (a->member == NULL) {
        respond_error(a, ex, BL_ESHUTDOWN, "member is shutting down");
        return;
    }
    if (path_starts(ex, KV_PREFIX)) {
        handle_kv(a, ex);
    } else if (path_is(ex, "/v1/status")) {
        if (method_is(a, ex, HTTP_GET)) {
            handle_status(a, ex);
        }
    } else if (path_is(ex, "/v1/members")) {
        if (ex->method == HTTP_POST) {
            handle_members_post(a, ex);
        } else if (ex->method == HTTP_GET) {
            bl_doc_reset(&a->doc, want_format(ex));
            doc_members(a);
            respond_doc(a, ex, 200, NULL, 0);
        } else {
            method_not_allowed(a, ex, "GET, POST");
        }
    } else if (path_starts(ex, "/v1/members/")) {
        handle_member_id(a, ex);
    } else if (path_is(ex, "/v1/snapshot")) {
        if (method_is(a, ex, HTTP_GET)) {
            handle_snapshot(a, ex);
        }
    } else if (path_is(ex, "/readyz")) {
        if (method_is(a, ex, HTTP_GET)) {
            handle_ready(a, ex);
        }
    } else if (path_is(ex, "/v1/leader")) {
        if (method_is(a, ex, HTTP_POST)) {
            handle_leader(a, ex);
        }
    } else if (path_starts(ex, WATCH_PREFIX)) {
        handle_watch(a, ex);
    } else if (path_is(ex, "/v1/txn")) {
        handle_txn(a, ex);
    } else if (path_is(ex, "/v1/lease") || path_is(ex, "/v1/leases") ||
               path_starts(ex, "/v1/lease/")) {
        handle_lease(a, ex);
    } else if (path_is(ex, "/v1/internal/publish")) {
        if (method_is(a, ex, HTTP_POST)) {
            handle_publish(a, ex);
        }
    } else if (path_is(ex, "/v1/internal/readindex")) {
        if (method_is(a, ex, HTTP_GET)) {
            handle_read_index(a, ex);
        }
    } else if (path_is(ex, "/metrics")) {
        if (ex->method == HTTP_GET || ex->method == HTTP_HEAD) {
            handle_metrics(a, ex);
        } else {
            method_not_allowed(a, ex, "GET, HEAD");
        }
    } else {
        respond_error(a, ex, BL_ENOTFOUND, "no such endpoint: %.*s", (int)ex->path_len, ex->path);
    }
}

/* ---- lifecycle
 * --------------------------------------------------------------------------------------- */

static void revision_cb(void *arg, uint64_t revision)
{
    struct bl_api *a = arg;
    if (a->hub != NULL) {
        bl_watch_hub_notify(a->hub, revision);
    }
}

/* The last of the API's parts has closed: close the HTTP server. */
static void close_step(struct bl_api *a);

static void hub_closed(void *arg)
{
    struct bl_api *a = arg;
    a->hub = NULL;
    a->hub_closing = false;
    close_step(a);
}

/* Watches end ("shutdown") and long-polls answer 503; the hub stops using
 * the member. Idempotent. */
static void close_hub(struct bl_api *a)
{
    if (a->hub != NULL && !a->hub_closing) {
        a->hub_closing = true;
        bl_watch_hub_close(a->hub, hub_closed, a);
    }
}

void bl_api_member_stopped(struct bl_api *a)
{
    if (a->member != NULL) {
        bl_member_on_revision(a->member, NULL, NULL);
        bl_member_on_timing(a->member, NULL, NULL);
    }
    a->member = NULL;
    bl_readindex_close(a->ri);
    a->ri = NULL;
    close_hub(a);
}

int bl_api_start(struct bl_api *a, uv_loop_t *loop, struct bl_member *member,
                 const struct bl_config *cfg, char *errmsg)
{
    struct bl_http_server_opts opts = {
        .max_header_bytes = 16 * 1024,
        .max_body_bytes = (size_t)cfg->max_request_bytes,
        .request_timeout_ms = (unsigned)cfg->request_timeout_ms,
        .idle_timeout_ms = 300000,
        .max_connections = 10000,
        .extra_headers = standard_headers,
    };
    int rv;

    struct bl_watch_opts wo = {.max_lag = cfg->watch_max_lag};

    memset(a, 0, sizeof *a);
    a->loop = loop;
    a->member = member;
    a->cfg = cfg;
    rv = metrics_init(a);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "metrics: %s", bl_strerror(rv));
        return rv;
    }
    bl_doc_init(&a->doc, BL_DOC_JSON);
    rv = bl_http_client_init(loop, &a->client);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "http client: %s", bl_strerror(rv));
        bl_doc_free(&a->doc);
        metrics_free(a);
        return rv;
    }
    (void)bl_http_client_bind(a->client, cfg->listen_client); /* relay from our own address */
    rv = bl_readindex_init(loop, member, a->client,
                           (unsigned)(cfg->propose_timeout_ms + FORWARD_SLACK_MS), &a->ri);
    if (rv != 0) {
        a->ri = NULL; /* linearizable reads on followers are relayed instead */
    }
    rv = bl_watch_hub_new(loop, member, &wo, &a->hub);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "watch hub: %s", bl_strerror(rv));
        bl_http_client_close(a->client);
        bl_doc_free(&a->doc);
        metrics_free(a);
        return rv;
    }
    rv = bl_http_server_start(loop, cfg->listen_client, &opts, bl_api_handle, a, &a->http, errmsg);
    if (rv != 0) {
        a->closing = true; /* hub_closed() must not close the server */
        bl_watch_hub_close(a->hub, hub_closed, a);
        bl_http_client_close(a->client);
        bl_doc_free(&a->doc);
        metrics_free(a);
        return rv;
    }
    bl_member_on_revision(member, revision_cb, a);
    bl_member_on_timing(member, timing_cb, a);
    uv_timer_init(loop, &a->publish_timer);
    a->publish_timer.data = a;
    uv_timer_init(loop, &a->park_timer);
    a->park_timer.data = a;
    uv_timer_start(&a->publish_timer, publish_timer_cb, 200, PUBLISH_INTERVAL_MS);
    return 0;
}

static void api_closed(void *arg)
{
    struct bl_api *a = arg;
    while (a->spare_calls != NULL) {
        struct call *c = a->spare_calls;
        a->spare_calls = c->park_next;
        free(c);
    }
    a->n_spare_calls = 0;
    bl_doc_free(&a->doc);
    metrics_free(a);
    if (a->close_cb != NULL) {
        a->close_cb(a->close_arg);
    }
}

static void close_step(struct bl_api *a)
{
    if (a->closing && a->timers_open == 0 && a->hub == NULL && a->http != NULL) {
        struct bl_http_server *http = a->http;
        a->http = NULL;
        bl_http_server_close(http, api_closed, a);
    }
}

static void timer_closed(uv_handle_t *h)
{
    struct bl_api *a = h->data;
    a->timers_open--;
    close_step(a);
}

void bl_api_close(struct bl_api *a, void (*cb)(void *arg), void *arg)
{
    a->close_cb = cb;
    a->close_arg = arg;
    if (a->member != NULL) {
        bl_member_on_revision(a->member, NULL, NULL);
        bl_member_on_timing(a->member, NULL, NULL);
    }
    a->member = NULL;
    a->closing = true;
    bl_readindex_close(a->ri); /* before the client, which fails its request */
    a->ri = NULL;
    a->timers_open = 2;
    close_hub(a); /* before the server: its close waits for the watches' exchanges */
    park_timer_cb(&a->park_timer); /* answers every parked call: shutting down */
    bl_http_client_close(a->client);
    uv_close((uv_handle_t *)&a->publish_timer, timer_closed);
    uv_close((uv_handle_t *)&a->park_timer, timer_closed);
}
