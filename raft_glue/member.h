/* A Ballast member: one canonical/raft server, its libuv I/O, the FSM and
 * the LMDB store, driven by the caller's libuv loop. This is the public,
 * embeddable API: ballastd is a thin main over it plus the HTTP server, and
 * a C service can run a member in its own process the same way.
 *
 * Data directory layout: DIR/raft holds Raft's log, metadata and snapshots
 * (canonical/raft's uv backend), DIR/store the LMDB environment.
 *
 * Lifecycle: bl_member_start() opens the store, bootstraps a new cluster
 * when DIR/raft is empty and this member is one of the founders given in
 * initial_cluster, and starts Raft. bl_member_close() hands leadership to a
 * caught-up voter first when this member leads, then closes Raft, the
 * store and every handle, and calls back once memory may be freed.
 *
 * Callbacks: if a function that takes a callback returns an error, the
 * callback is never called; otherwise it is called exactly once. */
#ifndef BALLAST_MEMBER_H
#define BALLAST_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "apply.h"
#include "command.h"
#include "store.h"

struct bl_member;

struct bl_member_config {
    uint64_t id;                   /* Raft id, >= 1 */
    const char *name;              /* human name, published in the member table */
    const char *data_dir;          /* created if missing */
    const char *peer_listen;       /* "127.0.0.1:8380": Raft transport bind address */
    const char *peer_advertise;    /* address peers use; NULL = peer_listen */
    const char *client_advertise;  /* client URL published in the member table */
    const char *initial_cluster;   /* "1=127.0.0.1:8380,2=..." founders, or NULL */
    unsigned election_timeout_ms;  /* 0 = default (500) */
    unsigned heartbeat_timeout_ms; /* 0 = default (50) */
    unsigned snapshot_threshold;   /* entries between snapshots; 0 = default (8192) */
    unsigned snapshot_trailing;    /* entries kept after a snapshot; 0 = default (2048) */
    unsigned propose_timeout_ms;   /* a write not applied by then is BL_ETIMEOUT; 0 = 10000 */
    unsigned install_snapshot_timeout_ms; /* leader resends a snapshot after; 0 = 10000 */
    uint64_t quota_bytes;                 /* store size limit for new writes; 0 = 2 GiB */
    bool no_auto_promote;                 /* leave caught-up learners learners */
    bool join; /* added to a running cluster: with an empty data dir, never bootstrap */
    uint64_t min_free_bytes;    /* PUTs get BL_ENOSPACE below this much free disk; 0 = default */
    uint64_t history_revisions; /* watch events kept, in revisions; 0 = default (10000) */
};

enum bl_role {
    BL_ROLE_UNAVAILABLE = 0,
    BL_ROLE_FOLLOWER,
    BL_ROLE_CANDIDATE,
    BL_ROLE_LEADER,
    BL_ROLE_LEARNER,
};

/* "leader", "follower", ... */
const char *bl_role_name(int role);

/* Parse "1=host:port,2=host:port" and call @cb for each entry. Returns
 * BL_EBADREQ (with @errmsg) on a malformed list, duplicate ids or addresses. */
int bl_parse_initial_cluster(const char *s, int (*cb)(void *arg, uint64_t id, const char *address),
                             void *arg, char *errmsg);

/* True when @data_dir holds no Raft state yet (a first start, or a volume
 * that was lost): the server then runs discovery or a join first. */
bool bl_member_data_dir_fresh(const char *data_dir);

/* Start a member on @loop. On success *@out is the member, owned by the
 * caller until bl_member_close()'s callback. Errors: BL_EBADREQ (bad
 * config), BL_EIO, BL_ECORRUPT (the Raft log failed its checks: the member
 * refuses to start rather than serve less), BL_ENOMEM; @errmsg says which. */
int bl_member_start(uv_loop_t *loop, const struct bl_member_config *cfg, struct bl_member **out,
                    char *errmsg);

/* Stop: transfer leadership if leader (bounded by the election timeout),
 * fail pending proposals and reads, close Raft and the store, then call @cb.
 * @m is freed after @cb returns. */
void bl_member_close(struct bl_member *m, void (*cb)(void *arg), void *arg);

/* Outcome of a proposal: BL_OK with @res (valid during the callback only),
 * BL_ETIMEOUT when the outcome is unknown (leadership lost after the entry
 * was appended, shutdown, or propose_timeout_ms passed), or another error
 * when the command surely did not commit. */
typedef void (*bl_propose_cb)(void *arg, int status, const struct bl_apply_result *res);

/* Propose @cmd (encoded and padded here; @cmd is not kept). Returns
 * BL_ENOLEADER when this member is not the leader (forward it), BL_EBADREQ,
 * BL_ENOSPACE when a PUT would take the store past quota_bytes (counting
 * writes still in flight; deletes are always admitted, so space can be
 * freed), BL_ENOMEM, BL_ESHUTDOWN. */
int bl_member_propose(struct bl_member *m, const struct bl_cmd *cmd, bl_propose_cb cb, void *arg);

/* Read gate for linearizable reads: @cb(arg, BL_OK) once a Raft barrier
 * proposed after this call has been applied, proving leadership at a point
 * after the call; all reads waiting at once share one barrier. Returns
 * BL_ENOLEADER on a non-leader or when no barrier can be proposed now (a
 * leadership transfer runs), BL_ENOMEM, BL_ESHUTDOWN; after an error @cb is
 * never called, after 0 it is called exactly once and never from inside
 * this call. @cb may get BL_ENOLEADER / BL_ETIMEOUT. */
typedef void (*bl_read_cb)(void *arg, int status);
int bl_member_read_barrier(struct bl_member *m, bl_read_cb cb, void *arg);

/* Outcome of a leadership transfer: BL_OK when @new_leader (the target) is
 * leader, BL_ETIMEOUT when it did not take over within the election timeout
 * (@new_leader is then whoever leads now, 0 if unknown). */
typedef void (*bl_transfer_cb)(void *arg, int status, uint64_t new_leader);

/* Hand leadership to voter @to, or with @to == 0 to the voter with the
 * highest match index. Returns BL_ENOLEADER on a non-leader, BL_EBADREQ when
 * @to is this member, unknown or not a voter, BL_EUNAVAILABLE when there is
 * no other voter or a transfer is already running, BL_ESHUTDOWN. */
int bl_member_transfer(struct bl_member *m, uint64_t to, bl_transfer_cb cb, void *arg);

/* ---- membership (leader only) ----
 *
 * One change runs at a time (canonical/raft allows one uncommitted
 * configuration); a call while one runs returns BL_EUNAVAILABLE. Every call
 * returns BL_ENOLEADER on a non-leader (forward it) and BL_ESHUTDOWN while
 * closing. The callback gets BL_OK once the change is committed, or the
 * error that stopped it (BL_ETIMEOUT: leadership lost, outcome unknown). */
typedef void (*bl_change_cb)(void *arg, int status, uint64_t id);

struct bl_member_add_req {
    uint64_t id;            /* the new member's Raft id (see bl_member_fresh_id) */
    const char *name;       /* NULL or "" = member-ID */
    const char *peer_url;   /* HOST:PORT (a name is resolved at every connect) */
    const char *client_url; /* HOST:PORT of its HTTP API */
    bool voter;             /* false: a learner (promoted automatically once caught up) */
    uint64_t replace;       /* non-zero: remove this member first (a wiped volume's old id) */
};

/* Add a member: commit its attributes to the member table, remove
 * @req->replace if set, raft_add it and make it a learner (or a voter: raft
 * catches it up first). BL_EBADREQ: bad or too long fields, @req->id or its
 * peer address already in the configuration, @req->replace is this member. */
int bl_member_add(struct bl_member *m, const struct bl_member_add_req *req, bl_change_cb cb,
                  void *arg);

/* Remove member @id. BL_ENOTFOUND: not in the configuration; BL_EBADREQ: it
 * is this leader itself (hand leadership over first) or the last voter. */
int bl_member_remove(struct bl_member *m, uint64_t id, bl_change_cb cb, void *arg);

/* Make learner @id a voter (raft first catches it up). BL_ENOTFOUND if unknown. */
int bl_member_promote(struct bl_member *m, uint64_t id, bl_change_cb cb, void *arg);

struct bl_member_info;

/* Fill @out with member @id from bl_member_list(). BL_ENOTFOUND if unknown. */
int bl_member_get(struct bl_member *m, uint64_t id, struct bl_member_info *out);

/* True when member @id has run under that id (it published itself, or the
 * leader has seen it acknowledge entries): it may have voted, so a member
 * that comes back under it with an empty data dir must get a fresh id. */
bool bl_member_id_seen(struct bl_member *m, uint64_t id);

/* An id in [2^32, 2^63) used by no member, current or past. */
uint64_t bl_member_fresh_id(struct bl_member *m);

/* This member's Raft id (may differ from the configured one after a
 * wiped-volume rejoin: see DIR/member-id). */
uint64_t bl_member_id(struct bl_member *m);

/* ---- backups ---- */

struct bl_backup_info;

/* Outcome of a backup: BL_OK with @info, or an error with @errmsg. */
typedef void (*bl_backup_cb)(void *arg, int status, const struct bl_backup_info *info,
                             const char *errmsg);

/* Write a consistent backup of the store (backup.h's file format) to @fd,
 * on libuv's thread pool; writes go on meanwhile. @fd stays the caller's;
 * the member does not finish closing before @cb ran. BL_ESHUTDOWN while
 * closing, BL_ENOMEM. */
int bl_member_backup(struct bl_member *m, int fd, bl_backup_cb cb, void *arg);

/* Call @cb once the member stops serving: Raft has closed and the store is
 * about to. Until then a closing member answers BL_ENOLEADER (forward), so
 * requests arriving during the hand-off reach the next leader. */
void bl_member_on_stop(struct bl_member *m, void (*cb)(void *arg), void *arg);

/* Call @cb once if Raft stops working for good (canonical/raft turns
 * unavailable after an error it cannot go on from: the log or the store
 * could not be written, e.g. a full disk). @why is raft's message, valid
 * during the call. The member keeps answering 503; the caller decides
 * (ballastd closes it and exits non-zero, so its supervisor restarts it and
 * the Raft log replays what the store missed). */
void bl_member_on_fatal(struct bl_member *m, void (*cb)(void *arg, const char *why), void *arg);

/* True when the last BL_ENOSPACE of bl_member_propose() came from the file
 * system's free space (--min-free-bytes), false when from the quota. */
bool bl_member_disk_full(struct bl_member *m);

/* The data directory (owned by the member). */
const char *bl_member_data_dir(struct bl_member *m);

/* Call @cb(@arg, revision) on the loop thread whenever the applied store
 * revision rises (after the entry's LMDB commit, so a read transaction
 * begun in @cb sees it), including when a snapshot is installed. One
 * subscriber; NULL unsubscribes. */
void bl_member_on_revision(struct bl_member *m, void (*cb)(void *arg, uint64_t revision),
                           void *arg);

/* ---- timing, for metrics ---- */

enum bl_member_timing {
    BL_TIMING_APPLY,         /* the FSM applied one entry: @ns it took */
    BL_TIMING_APPEND,        /* a Raft log append is durable: @ns from submit */
    BL_TIMING_APPEND_FAILED, /* a Raft log append failed: @ns until it did */
};

/* Call @cb(@arg, what, ns) on the loop thread for every FSM apply and every
 * log append (enum bl_member_timing). Measuring costs two clock reads per
 * apply or append; @cb should be as cheap. One subscriber; NULL
 * unsubscribes. */
void bl_member_on_timing(struct bl_member *m, void (*cb)(void *arg, int what, uint64_t ns),
                         void *arg);

/* Proposals handed to Raft whose outcome Raft has not reported yet. */
unsigned bl_member_proposals_inflight(struct bl_member *m);

/* ---- leases ----
 *
 * Every member keeps the lease table (replicated); only the leader keeps
 * deadlines (in memory) and commits revokes when they pass. A member that
 * becomes leader gives every lease a fresh full TTL. */

/* An unused lease id in [1, 2^63) (leader). */
uint64_t bl_member_lease_fresh_id(struct bl_member *m);

/* Leader: move lease @id's deadline to now + its TTL; its TTL in *@ttl.
 * BL_ENOTFOUND (expired, revoked), BL_ENOLEADER. */
int bl_member_lease_keepalive(struct bl_member *m, uint64_t id, uint64_t *ttl);

/* Leader: milliseconds until lease @id expires (0 when it is being
 * revoked), and its granted TTL in seconds. BL_ENOTFOUND, BL_ENOLEADER. */
int bl_member_lease_remaining(struct bl_member *m, uint64_t id, uint64_t *remaining_ms,
                              uint64_t *ttl);

/* During a bl_member_read_barrier() callback with status BL_OK: the index
 * of the barrier entry that confirmed the leadership. Every entry committed
 * before the reads were queued lies below it (a follower that applied
 * index - 1 may serve them: GET /v1/internal/readindex). */
uint64_t bl_member_barrier_index(struct bl_member *m);

/* Begin a read transaction on the applied state (serializable). The caller
 * ends it with bl_store_abort(). */
int bl_member_read_begin(struct bl_member *m, struct bl_txn **txn);

struct bl_member_status {
    uint64_t id;
    const char *name; /* owned by the member */
    int role;         /* enum bl_role */
    uint64_t leader_id;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_index;
    uint64_t revision;
    uint64_t db_bytes;
    uint64_t raft_log_bytes;
};

/* Fill @st (reads the store's revision and sizes; cheap). */
void bl_member_status(struct bl_member *m, struct bl_member_status *st);

struct bl_member_info {
    uint64_t id;
    char name[256];
    char peer_url[256];
    char client_url[256]; /* empty until the member published it */
    bool voter;
    bool reachable;
    uint64_t match_index;
};

/* The members of the current Raft configuration joined with the member
 * table. *@out is malloc'd; the caller frees it with free(). */
int bl_member_list(struct bl_member *m, struct bl_member_info **out, unsigned *n);

/* Copy the leader's client address into @buf, to forward a request there.
 * Returns BL_ENOLEADER when no leader is known, it has not published its
 * address yet, or the leader is this member itself (which then refused the
 * request: a leadership transfer is running, or it is closing). */
int bl_member_leader_client_url(struct bl_member *m, char *buf, size_t len);

/* True if this member is the leader. */
bool bl_member_is_leader(struct bl_member *m);

/* Current term and applied index, and the store revision of the applied state. */
void bl_member_indexes(struct bl_member *m, uint64_t *term, uint64_t *applied, uint64_t *revision);

/* True when this member's published attributes (name, peer and client URL)
 * are missing or differ in the replicated member table. */
bool bl_member_needs_publish(struct bl_member *m);

/* Fill @cmd with a BL_CMD_MEMBER_SET command carrying this member's
 * attributes (pointers into @m, valid while @m lives). */
void bl_member_attrs_cmd(struct bl_member *m, struct bl_cmd *cmd);

#endif /* BALLAST_MEMBER_H */
