/* Discovery: what a member whose data dir is empty learns from its peers
 * before it starts Raft, so that it neither bootstraps a second cluster nor
 * votes under an identity whose vote record it lost.
 *
 * It asks every peer it knows (the founders of --initial-cluster, or the
 * StatefulSet's other pods) over the peer port's probe protocol
 * (transport.h) and listens on its own peer address meanwhile, answering
 * probes as "discovering". Rounds repeat every BL_DISCOVER_ROUND_MS until:
 *
 *   - a peer answers as a member of a running cluster. If this member is a
 *     founder that cluster never saw run (it is in the bootstrap
 *     configuration but never published itself, and the leader never saw it
 *     acknowledge an entry), it is a first start that came late: bootstrap
 *     the same configuration. Otherwise join (rejoin) through that peer's
 *     leader: the leader replaces the old entry with one under a fresh id
 *     when the old id has run (see POST /v1/members).
 *   - this member is a founder, and it and the founders answering
 *     "discovering" make a majority of the founders: bootstrap. A wiped
 *     founder whose peers are all down therefore waits instead of
 *     bootstrapping alone with an empty vote record.
 *
 * A non-founder (StatefulSet ordinal >= --replicas) joins once any peer
 * answers as a member, and waits otherwise.
 *
 * Guarantee and its edge: the "has run" evidence is the member's own
 * publication in the replicated member table (about a second after it first
 * reaches a leader) or the leader's view of its match index. A founder wiped
 * after it voted but before either exists would be taken for a late first
 * start; that window is the cluster's first seconds. */
#ifndef BALLAST_DISCOVER_H
#define BALLAST_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define BL_DISCOVER_ROUND_MS 500
#define BL_DISCOVER_PROBE_MS 1000

/* ---- the probe messages (msgpack arrays, version 1) ----
 * request: [1, id, peer_url]
 * reply:   [1, state, responder_id, client_url, leader_client_url,
 *           requester_in_config, requester_seen]
 * state: 0 discovering (not started), 1 member of a running cluster. */
enum { BL_PROBE_DISCOVERING = 0, BL_PROBE_MEMBER = 1 };

struct bl_probe_reply {
    int state;
    uint64_t responder_id;
    char client_url[256];        /* the responder's client address ("" unknown) */
    char leader_client_url[256]; /* the leader's client address ("" unknown) */
    bool in_config;              /* the requester's id is in the Raft configuration */
    bool seen;                   /* the requester's id has run (it may have voted) */
};

/* Encode a request / a reply into a malloc'd buffer (*@out, *@len; the
 * caller frees it). BL_ENOMEM. */
int bl_probe_request_encode(uint64_t id, const char *peer_url, void **out, size_t *len);
int bl_probe_reply_encode(const struct bl_probe_reply *r, void **out, size_t *len);

/* Decode. BL_EMALFORMED on anything else. @peer_url gets at most @url_len-1
 * bytes and a NUL. */
int bl_probe_request_decode(const void *buf, size_t len, uint64_t *id, char *peer_url,
                            size_t url_len);
int bl_probe_reply_decode(const void *buf, size_t len, struct bl_probe_reply *r);

/* ---- discovery ---- */

enum bl_discover_plan {
    BL_DISCOVER_BOOTSTRAP = 1, /* a founder's first start: bootstrap the founders */
    BL_DISCOVER_JOIN,          /* ask join_client_url to (re)add this member */
};

struct bl_discover_opts {
    uint64_t id;              /* this member's configured id */
    const char *peer_url;     /* advertised peer address (sent in probes) */
    const char *bind_address; /* where to answer probes meanwhile (the peer listen address) */
    const char *const *peers; /* peer addresses of the others, n_peers of them */
    unsigned n_peers;
    unsigned founders; /* founders incl. this one; 0: not a founder */
};

struct bl_discover_result {
    int plan; /* enum bl_discover_plan */
    char join_client_url[256];
};

typedef void (*bl_discover_cb)(void *arg, int status, const struct bl_discover_result *res);

struct bl_discover;

/* Start discovering on @loop; @opts and its strings are copied. @cb is
 * called once with BL_OK and the plan (after the temporary listener is
 * closed, so the peer port is free for Raft), or with BL_ESHUTDOWN after
 * bl_discover_stop(). Returns BL_EBADREQ (bad bind address), BL_ENOMEM,
 * with @errmsg; @cb is then never called. */
int bl_discover_start(uv_loop_t *loop, const struct bl_discover_opts *opts, bl_discover_cb cb,
                      void *arg, struct bl_discover **out, char *errmsg);

/* Give up (a signal during start-up): @cb gets BL_ESHUTDOWN. */
void bl_discover_stop(struct bl_discover *d);

#endif /* BALLAST_DISCOVER_H */
