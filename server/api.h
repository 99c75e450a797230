/* The HTTP API of one member: routing, the KV and cluster handlers, and
 * forwarding to the leader.
 *
 * The write path in one walk: kv_put() builds a bl_cmd from the request,
 * bl_member_propose() hands it to Raft, the FSM applies it to LMDB, and
 * write_done() renders the result. On a follower the same request is relayed
 * to the leader's client address by forward(). Linearizable reads wait for
 * bl_member_read_barrier() on the leader (forwarded from followers);
 * serializable reads are answered from the local store at once.
 *
 * Metrics: every request is tagged with its call (kv_get, kv_put, ...) and
 * arrival time when the handler gets it, and counted with its status when
 * its reply is queued; GET /metrics renders these counters with the
 * member's Raft state (see docs/api-notes.md, "Metrics").
 *
 * Ownership: struct bl_api is owned by the caller (main), which must keep the
 * member and config alive until bl_api_close()'s callback. */
#ifndef BALLAST_API_H
#define BALLAST_API_H

#include <uv.h>

#include "config.h"
#include "doc.h"
#include "http.h"
#include "http_client.h"
#include "member.h"
#include "metrics.h"
#include "readindex.h"
#include "watch.h"

struct bl_api {
    uv_loop_t *loop;
    struct bl_member *member;
    const struct bl_config *cfg;
    struct bl_http_server *http;
    struct bl_http_client *client;
    struct bl_readindex *ri;  /* follower linearizable reads (NULL: relayed) */
    struct call *spare_calls; /* finished calls kept for reuse (api.c call_new) */
    unsigned n_spare_calls;
    struct bl_doc doc; /* scratch writer, reused by every reply */
    uv_timer_t publish_timer;
    uv_timer_t park_timer;
    struct call *parked;      /* requests waiting for a reachable leader */
    struct bl_watch_hub *hub; /* watches and long-polls */
    struct call *polls;       /* long-polls waiting on the hub */
    bool hub_closing;
    bool closing;
    int timers_open;
    bool publishing;
    uint64_t request_seq;
    unsigned pending;                              /* requests waiting on raft or the leader */
    char hdr_rev[24], hdr_term[24], hdr_index[24]; /* values of the standard headers */
    /* Recorded metrics (GET /metrics renders these and the member's state). */
    struct bl_counter m_requests;      /* ballast_http_requests_total{call,code} */
    struct bl_histogram m_latency;     /* ballast_http_request_duration_seconds{call} */
    struct bl_histogram m_apply;       /* ballast_apply_duration_seconds */
    struct bl_histogram m_append;      /* ballast_log_append_duration_seconds */
    struct bl_counter m_append_failed; /* ballast_log_append_failures_total */
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* Start serving the API on cfg->listen_client. */
int bl_api_start(struct bl_api *a, uv_loop_t *loop, struct bl_member *member,
                 const struct bl_config *cfg, char *errmsg);

/* Stop listening and close connections; @cb runs once everything is closed. */
void bl_api_close(struct bl_api *a, void (*cb)(void *arg), void *arg);

/* The member stopped (bl_member_on_stop): end watches and long-polls and
 * stop using the member; requests get 503 from now on. */
void bl_api_member_stopped(struct bl_api *a);

/* Route one request (the HTTP server's handler; exposed for tests). */
void bl_api_handle(struct bl_http_exchange *ex, void *arg);

#endif /* BALLAST_API_H */
