/* The key-value state machine: what a committed command does to the store.
 *
 * bl_apply() runs one decoded command against the LMDB store in one write
 * transaction that also records the Raft index it came from ("applied_index"),
 * so the store on disk always equals "the log applied up to applied_index".
 * A command at or below that index was already applied (a restart replays
 * the log tail) and is skipped, which is what lets a member restart without
 * rebuilding its store.
 *
 * Semantics (etcd's): every command that changes something raises the store
 * revision by one; a failed compare or a delete of nothing changes nothing,
 * not even the revision. A command whose request id is marked for recording
 * (BL_CMD_F_RECORD) stores its outcome under that id; a later command with
 * the same id changes nothing and returns the recorded outcome (replayed).
 *
 * The outcome of a command is a result record (msgpack):
 *   [code(int), revision(uint), deleted(uint), prev(array of kv)]
 * and for a txn one more element [succeeded(uint), results(array)], where a
 * result is [1] (put), [2, deleted] (delete) or [3, count, more, kvs] (get),
 * and kv = [key(bin), value(bin), create(uint), mod(uint), version(uint), lease(uint)].
 * The record lives in the applier's buffer until the next bl_apply().
 *
 * Leases: a put naming a lease that does not exist, or a revoke of an
 * unknown lease, is the deterministic outcome BL_ENOTFOUND; a grant of an
 * id in use, or a put attaching a key to another key's own lease, is
 * BL_EBADREQ. A key's own lease (PUT ?ttl=) is deleted when the key is
 * overwritten without it or deleted.
 *
 * Watch history: every command that raises the revision also stores the
 * events it made under that revision (history table), an array of
 * [type(uint: BL_EVENT_*), kv]; for a delete the kv holds the key and
 * mod_revision = the deleting revision. Revisions older than the last
 * history_revisions are pruned in the same transaction. */
#ifndef BALLAST_APPLY_H
#define BALLAST_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "mp.h"
#include "store.h"

/* Keep request-id records for this many revisions (the retry window). */
#define BL_REQID_WINDOW 100000

/* Keep watch events for this many revisions unless configured. */
#define BL_HISTORY_DEFAULT 10000

/* A get inside a txn returns at most this many kvs (default, max). */
#define BL_TXN_GET_DEFAULT 1000
#define BL_TXN_GET_MAX     10000

/* Flag (in bl_cmd.flags): record this command's outcome under its request id. */
#define BL_CMD_F_RECORD 0x2

/* Outcome of one applied command. */
struct bl_apply_result {
    int code;               /* deterministic outcome: BL_OK, BL_ECASFAILED (put/delete
                               cas), BL_ENOTFOUND or BL_EBADREQ (leases, above); a txn
                               whose compares failed is BL_OK with succeeded false */
    uint64_t revision;      /* store revision after the command */
    uint64_t deleted;       /* keys removed (DELETE, DELETE_RANGE) */
    bool replayed;          /* answered from the request-id table */
    bool skipped;           /* index already applied: nothing done, record empty */
    bool changed;           /* the revision rose */
    uint64_t lease_granted; /* a lease this command granted (0: none) ... */
    uint64_t lease_ttl;     /* ... with this TTL in seconds */
    const uint8_t *record;  /* result record, valid until the next bl_apply */
    size_t record_len;
};

/* Applies commands to a store; owns a scratch buffer for result records. */
struct bl_applier {
    struct bl_store *store;
    uint64_t history_revisions; /* watch history kept; 0 keeps none */
    void *txn_space;            /* decoded txn ops, allocated on first use */
    uint8_t *buf;
    size_t len, cap;
    uint8_t *batch_buf; /* a batch's result records, one after the other */
    size_t batch_cap;
    char errmsg[256];
};

void bl_applier_init(struct bl_applier *a, struct bl_store *store);
void bl_applier_close(struct bl_applier *a);

/* Apply @cmd, the command of Raft entry @index. Returns BL_OK with @res
 * filled (a failed cas is BL_OK with res->code == BL_ECASFAILED), or a
 * storage error (BL_ENOSPACE, BL_EIO, BL_ENOMEM) with nothing changed and
 * a->errmsg set: the entry is then not applied and must be retried. */
int bl_apply(struct bl_applier *a, uint64_t index, const struct bl_cmd *cmd,
             struct bl_apply_result *res);

/* Apply the @n commands of batch entry @index (see command.h) in order, in
 * one write transaction: each its own command as bl_apply() would run it
 * (its own revision, request id, watch events), then "applied_index" once.
 * Fills @res[0..@n); their records stay valid until the next bl_apply_batch.
 * A storage error aborts the whole entry (nothing changed), as bl_apply. */
int bl_apply_batch(struct bl_applier *a, uint64_t index, const struct bl_cmd *cmds, uint32_t n,
                   struct bl_apply_result *res);

/* A decoded result record. */
struct bl_result_view {
    int code;
    uint64_t revision;
    uint64_t deleted;
    uint32_t n_prev;
    const uint8_t *prev_p; /* cursor over the prev kvs, then the txn results */
    const uint8_t *end;
    bool is_txn;
    bool succeeded;     /* after bl_result_txn() */
    uint32_t n_results; /* after bl_result_txn(): results left */
};

/* Decode a result record; iterate its prev kvs with bl_result_next_prev()
 * (returns 1 and fills @kv, 0 at the end, BL_EMALFORMED on bad input). The
 * kv's pointers point into the record. */
int bl_result_decode(const uint8_t *rec, size_t len, struct bl_result_view *v);
int bl_result_next_prev(struct bl_result_view *v, struct bl_kv *kv);

/* For a txn's record: read the txn part (succeeded, result count); then
 * bl_result_next_op() gives each op's result (1, 0 at the end, or
 * BL_EMALFORMED), and bl_op_result_next_kv() a get's kvs. */
struct bl_op_result {
    int type; /* enum bl_op_type */
    uint64_t deleted;
    uint64_t count;
    bool more;
    uint32_t n_kvs;
    struct bl_mpr kvs;
};
int bl_result_txn(struct bl_result_view *v);
int bl_result_next_op(struct bl_result_view *v, struct bl_op_result *o);
int bl_op_result_next_kv(struct bl_op_result *o, struct bl_kv *kv);

/* Events of one revision (a history record). */
#define BL_EVENT_PUT    1
#define BL_EVENT_DELETE 2
struct bl_events {
    struct bl_mpr r;
    uint32_t n;
};
int bl_events_init(struct bl_events *e, const void *rec, size_t len);
/* 1 with *@type and @kv (pointers into the record), 0 at the end, or
 * BL_EMALFORMED. */
int bl_events_next(struct bl_events *e, int *type, struct bl_kv *kv);

/* A member's published attributes (the member table's record). */
struct bl_member_attrs {
    struct bl_slice name;
    struct bl_slice peer_url;
    struct bl_slice client_url;
    bool seen; /* the member published itself under this id: it has run */
};

/* Decode a member table record (pointers into @rec). BL_EMALFORMED on error. */
int bl_member_attrs_decode(const void *rec, size_t len, struct bl_member_attrs *m);

#endif /* BALLAST_APPLY_H */
