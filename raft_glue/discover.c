/* Discovery before Raft starts (see discover.h).
 *
 * Happy path of a founder's first start: listen on the peer address with a
 * temporary transport that answers probes "discovering", probe every other
 * founder each round, and once this member and the founders that answered
 * "discovering" are a majority, close the listener and report BOOTSTRAP.
 * A wiped member finds a peer answering "member" and reports JOIN with the
 * leader's client address, where the server asks to be re-added.
 *
 * Failure modes: a peer that does not answer (down, refused, name not
 * resolvable yet: a StatefulSet pod's DNS record appears only once it runs)
 * just counts as silent; rounds go on until a decision, logging progress
 * every few seconds. A reply that does not decode is ignored and logged. */
#include "discover.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>

#include "error.h"
#include "log.h"
#include "mp.h"
#include "transport.h"

#define PROBE_VERSION   1
#define LOG_INTERVAL_MS 5000

/* ---- messages ------------------------------------------------------------------- */

static int take_buf(struct bl_mpw *w, void **out, size_t *len)
{
    if (w->error != 0) {
        free(w->buf);
        return w->error;
    }
    *out = w->buf;
    *len = w->len;
    return 0;
}

int bl_probe_request_encode(uint64_t id, const char *peer_url, void **out, size_t *len)
{
    struct bl_mpw w = {0};
    bl_mpw_array(&w, 3);
    bl_mpw_uint(&w, PROBE_VERSION);
    bl_mpw_uint(&w, id);
    bl_mpw_str(&w, peer_url, strlen(peer_url));
    return take_buf(&w, out, len);
}

int bl_probe_reply_encode(const struct bl_probe_reply *r, void **out, size_t *len)
{
    struct bl_mpw w = {0};
    bl_mpw_array(&w, 7);
    bl_mpw_uint(&w, PROBE_VERSION);
    bl_mpw_uint(&w, (uint64_t)r->state);
    bl_mpw_uint(&w, r->responder_id);
    bl_mpw_str(&w, r->client_url, strlen(r->client_url));
    bl_mpw_str(&w, r->leader_client_url, strlen(r->leader_client_url));
    bl_mpw_uint(&w, r->in_config ? 1 : 0);
    bl_mpw_uint(&w, r->seen ? 1 : 0);
    return take_buf(&w, out, len);
}

static int get_str(struct bl_mpr *r, char *out, size_t out_len)
{
    const uint8_t *p;
    size_t n;
    if (bl_mpr_bytes(r, true, &p, &n) != 0 || n >= out_len) {
        return BL_EMALFORMED;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int bl_probe_request_decode(const void *buf, size_t len, uint64_t *id, char *peer_url,
                            size_t url_len)
{
    struct bl_mpr r = {buf, (const uint8_t *)buf + len};
    uint64_t version;
    uint32_t n;
    if (bl_mpr_array(&r, &n) != 0 || n < 3 || bl_mpr_uint(&r, &version) != 0 ||
        version != PROBE_VERSION || bl_mpr_uint(&r, id) != 0 ||
        get_str(&r, peer_url, url_len) != 0) {
        return BL_EMALFORMED;
    }
    return 0;
}

int bl_probe_reply_decode(const void *buf, size_t len, struct bl_probe_reply *out)
{
    struct bl_mpr r = {buf, (const uint8_t *)buf + len};
    uint64_t version, state, in_config, seen;
    uint32_t n;
    memset(out, 0, sizeof *out);
    if (bl_mpr_array(&r, &n) != 0 || n < 7 || bl_mpr_uint(&r, &version) != 0 ||
        version != PROBE_VERSION || bl_mpr_uint(&r, &state) != 0 || state > 1 ||
        bl_mpr_uint(&r, &out->responder_id) != 0 ||
        get_str(&r, out->client_url, sizeof out->client_url) != 0 ||
        get_str(&r, out->leader_client_url, sizeof out->leader_client_url) != 0 ||
        bl_mpr_uint(&r, &in_config) != 0 || bl_mpr_uint(&r, &seen) != 0) {
        return BL_EMALFORMED;
    }
    out->state = (int)state;
    out->in_config = in_config != 0;
    out->seen = seen != 0;
    return 0;
}

/* ---- discovery ------------------------------------------------------------------ */

struct bl_discover {
    uv_loop_t *loop;
    uint64_t id;
    char *peer_url;
    char bind_host[64]; /* IP literal outgoing probes bind to, or "" */
    char **peers;
    unsigned n_peers;
    unsigned founders;
    bl_discover_cb cb;
    void *arg;

    struct raft_uv_transport t;
    bool transport_open, transport_closing;
    uv_timer_t timer;
    bool timer_open;

    unsigned outstanding; /* probes of this round not answered yet */
    unsigned rounds;
    unsigned discovering; /* founders that answered "discovering" this round */
    unsigned answered;
    bool have_member;           /* some peer answered as a member */
    struct bl_probe_reply best; /* that member's reply */
    uint64_t last_log;

    bool done; /* decided or stopped; waiting for handles and probes */
    int status;
    struct bl_discover_result result;
};

static void finish_maybe(struct bl_discover *d);

static int answer_discovering(void *arg, const void *req, size_t len, void **reply,
                              size_t *reply_len)
{
    struct bl_discover *d = arg;
    struct bl_probe_reply r;
    (void)req;
    (void)len;
    memset(&r, 0, sizeof r);
    r.state = BL_PROBE_DISCOVERING;
    r.responder_id = d->id;
    return bl_probe_reply_encode(&r, reply, reply_len);
}

static void stream_closed(uv_handle_t *h)
{
    raft_free(h);
}

/* Raft connections before Raft runs: drop them, the peer retries. */
static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    (void)t;
    (void)id;
    (void)address;
    uv_close((uv_handle_t *)stream, stream_closed);
}

static void transport_closed(struct raft_uv_transport *t)
{
    struct bl_discover *d = t->data;
    bl_transport_close(&d->t);
    d->transport_open = false;
    finish_maybe(d);
}

static void timer_closed(uv_handle_t *h)
{
    struct bl_discover *d = h->data;
    d->timer_open = false;
    finish_maybe(d);
}

static void discover_free(struct bl_discover *d)
{
    for (unsigned i = 0; i < d->n_peers; i++) {
        free(d->peers[i]);
    }
    free(d->peers);
    free(d->peer_url);
    free(d);
}

/* Once decided (or stopped): close the timer and the listener, wait for the
 * round's probes, then call back and free. */
static void finish_maybe(struct bl_discover *d)
{
    if (!d->done) {
        return;
    }
    if (d->timer_open) {
        if (!uv_is_closing((uv_handle_t *)&d->timer)) {
            uv_close((uv_handle_t *)&d->timer, timer_closed);
        }
        return;
    }
    if (d->transport_open) {
        if (!d->transport_closing) {
            d->transport_closing = true;
            d->t.close(&d->t, transport_closed);
        }
        return;
    }
    if (d->outstanding > 0) {
        return;
    }
    if (d->cb != NULL) {
        d->cb(d->arg, d->status, d->status == 0 ? &d->result : NULL);
    }
    discover_free(d);
}

static void decide(struct bl_discover *d, int plan, const char *url)
{
    d->done = true;
    d->status = 0;
    d->result.plan = plan;
    snprintf(d->result.join_client_url, sizeof d->result.join_client_url, "%s",
             url != NULL ? url : "");
    finish_maybe(d);
}

static void round_start(struct bl_discover *d);

static void round_timer_cb(uv_timer_t *t)
{
    round_start(t->data);
}

/* All probes of a round are in: decide, or schedule the next round. */
static void round_end(struct bl_discover *d)
{
    unsigned majority = d->founders / 2 + 1;
    uint64_t now = uv_now(d->loop);

    if (d->have_member) {
        const struct bl_probe_reply *r = &d->best;
        const char *url = r->leader_client_url[0] ? r->leader_client_url : r->client_url;
        if (d->founders > 0 && r->in_config && !r->seen) {
            BL_INFO("discover: member %" PRIu64 " answers for a running cluster that never saw "
                    "member %" PRIu64 " run: first start, bootstrapping the founders",
                    r->responder_id, d->id);
            decide(d, BL_DISCOVER_BOOTSTRAP, NULL);
        } else if (url[0] == '\0') {
            BL_INFO("discover: member %" PRIu64 " runs but knows no client address yet; retrying",
                    r->responder_id);
        } else {
            BL_INFO("discover: a cluster is running (member %" PRIu64 " answered)%s: joining "
                    "through %s",
                    r->responder_id, r->seen ? "; this id ran before and lost its data" : "", url);
            decide(d, BL_DISCOVER_JOIN, url);
        }
    } else if (d->founders > 0 && 1 + d->discovering >= majority) {
        BL_INFO("discover: %u of %u founders are starting and no cluster runs: bootstrapping",
                1 + d->discovering, d->founders);
        decide(d, BL_DISCOVER_BOOTSTRAP, NULL);
    }
    if (d->done) {
        return;
    }
    if (now - d->last_log >= LOG_INTERVAL_MS) {
        d->last_log = now;
        if (d->founders > 0) {
            BL_INFO("discover: waiting for peers: %u of %u peers answered, %u founders "
                    "starting, %u needed to bootstrap",
                    d->answered, d->n_peers, 1 + d->discovering, majority);
        } else {
            BL_INFO("discover: waiting for a running member: %u of %u peers answered", d->answered,
                    d->n_peers);
        }
    }
    uv_timer_start(&d->timer, round_timer_cb, BL_DISCOVER_ROUND_MS, 0);
}

static void probe_cb(void *arg, int status, const void *reply, size_t len)
{
    struct bl_discover *d = arg;
    struct bl_probe_reply r;

    d->outstanding--;
    if (d->done) {
        finish_maybe(d);
        return;
    }
    if (status == 0) {
        if (bl_probe_reply_decode(reply, len, &r) != 0) {
            BL_WARN("discover: a peer sent a probe reply that does not decode");
        } else {
            d->answered++;
            if (r.state == BL_PROBE_MEMBER) {
                /* Prefer a reply that knows the leader. */
                if (!d->have_member ||
                    (d->best.leader_client_url[0] == '\0' && r.leader_client_url[0] != '\0')) {
                    d->best = r;
                }
                d->have_member = true;
            } else {
                d->discovering++;
            }
        }
    }
    if (d->outstanding == 0) {
        round_end(d);
    }
}

static void round_start(struct bl_discover *d)
{
    void *req;
    size_t len;

    if (d->done) {
        return;
    }
    d->rounds++;
    d->answered = 0;
    d->discovering = 0;
    d->have_member = false;
    if (bl_probe_request_encode(d->id, d->peer_url, &req, &len) != 0) {
        uv_timer_start(&d->timer, round_timer_cb, BL_DISCOVER_ROUND_MS, 0);
        return;
    }
    d->outstanding = 1; /* held while starting the probes */
    for (unsigned i = 0; i < d->n_peers; i++) {
        if (bl_transport_probe(d->loop, d->peers[i], d->bind_host[0] ? d->bind_host : NULL, req,
                               len, BL_DISCOVER_PROBE_MS, probe_cb, d) == 0) {
            d->outstanding++;
        }
    }
    free(req);
    d->outstanding--;
    if (d->outstanding == 0) {
        round_end(d);
    }
}

int bl_discover_start(uv_loop_t *loop, const struct bl_discover_opts *opts, bl_discover_cb cb,
                      void *arg, struct bl_discover **out, char *errmsg)
{
    struct bl_transport_opts topts;
    struct bl_discover *d;
    struct in_addr ip;
    const char *colon;
    int rv;

    d = calloc(1, sizeof *d);
    if (d == NULL) {
        return BL_ENOMEM;
    }
    d->loop = loop;
    d->id = opts->id;
    d->founders = opts->founders;
    d->cb = cb;
    d->arg = arg;
    d->peer_url = strdup(opts->peer_url);
    d->peers = calloc(opts->n_peers ? opts->n_peers : 1, sizeof *d->peers);
    if (d->peer_url == NULL || d->peers == NULL) {
        discover_free(d);
        return BL_ENOMEM;
    }
    for (unsigned i = 0; i < opts->n_peers; i++) {
        d->peers[i] = strdup(opts->peers[i]);
        if (d->peers[i] == NULL) {
            discover_free(d);
            return BL_ENOMEM;
        }
        d->n_peers++;
    }
    colon = strrchr(opts->bind_address, ':');
    if (colon != NULL && (size_t)(colon - opts->bind_address) < sizeof d->bind_host) {
        memcpy(d->bind_host, opts->bind_address, (size_t)(colon - opts->bind_address));
        d->bind_host[colon - opts->bind_address] = '\0';
        if (inet_pton(AF_INET, d->bind_host, &ip) != 1 || ip.s_addr == htonl(INADDR_ANY)) {
            d->bind_host[0] = '\0';
        }
    }

    memset(&topts, 0, sizeof topts);
    topts.bind_address = opts->bind_address;
    topts.probe_cb = answer_discovering;
    topts.probe_arg = d;
    rv = bl_transport_init(&d->t, loop, &topts, errmsg);
    if (rv != 0) {
        discover_free(d);
        return rv;
    }
    d->t.data = d;
    rv = d->t.init(&d->t, d->id, d->peer_url);
    if (rv == 0) {
        rv = d->t.listen(&d->t, accept_cb);
    }
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen on %.100s: %.120s", opts->bind_address,
                 d->t.errmsg);
        /* Nothing is listening; the transport may still hold a handle. */
        d->transport_open = true;
        d->done = true;
        d->status = BL_EUNAVAILABLE;
        d->cb = NULL;
        finish_maybe(d);
        return BL_EUNAVAILABLE;
    }
    d->transport_open = true;
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->timer_open = true;
    d->last_log = uv_now(loop);
    BL_INFO("discover: member %" PRIu64 " has an empty data dir: asking %u peers whether a "
            "cluster runs",
            d->id, d->n_peers);
    round_start(d);
    *out = d;
    return 0;
}

void bl_discover_stop(struct bl_discover *d)
{
    if (d->done) {
        return;
    }
    d->done = true;
    d->status = BL_ESHUTDOWN;
    finish_maybe(d);
}
