/* The key-value state machine (see apply.h for the semantics).
 *
 * Happy path: begin a write transaction, check the entry was not applied
 * before, look the request id up when the command asks to be recorded, run
 * the command (put / delete / delete range / member set), write the result
 * record, store "applied_index" and "revision", commit. Deterministic
 * outcomes (a failed compare) are results, not errors: they commit too, so
 * the applied index moves on and every member reaches the same state.
 *
 * Failure: a storage error (map full, I/O) aborts the whole transaction, so
 * the store is exactly as before the command and the same entry can be
 * applied again later. The caller must not report such an entry as done. */
#include "apply.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mp.h"

#define META_APPLIED  "applied_index"
#define META_REVISION "revision"

void bl_applier_init(struct bl_applier *a, struct bl_store *store)
{
    memset(a, 0, sizeof *a);
    a->store = store;
    a->history_revisions = BL_HISTORY_DEFAULT;
}

void bl_applier_close(struct bl_applier *a)
{
    free(a->txn_space);
    a->txn_space = NULL;
    free(a->buf);
    a->buf = NULL;
    a->cap = a->len = 0;
    free(a->batch_buf);
    a->batch_buf = NULL;
    a->batch_cap = 0;
}

static void write_kv(struct bl_mpw *w, const struct bl_kv *kv)
{
    bl_mpw_array(w, 6);
    bl_mpw_bin(w, kv->key, kv->key_len);
    bl_mpw_bin(w, kv->value, kv->value_len);
    bl_mpw_uint(w, kv->create_revision);
    bl_mpw_uint(w, kv->mod_revision);
    bl_mpw_uint(w, kv->version);
    bl_mpw_uint(w, kv->lease);
}

/* State of one command while it runs. The prev kvs are written into @prev
 * as they are found (before they are overwritten or deleted), then the record
 * is assembled around them. */
struct run {
    struct bl_txn *txn;
    const struct bl_cmd *cmd;
    uint64_t revision; /* store revision before the command */
    int code;
    uint64_t deleted;
    bool changed;
    uint32_t n_prev;
    struct bl_mpw prev;
    uint32_t n_events;
    struct bl_mpw events; /* [type, kv] per change, for the watch history */
    bool is_txn;
    bool succeeded;
    uint32_t n_results;
    struct bl_mpw results; /* txn: one result per op */
    uint64_t lease_granted, lease_ttl;
};

static void add_event(struct run *r, int type, const struct bl_kv *kv)
{
    bl_mpw_array(&r->events, 2);
    bl_mpw_uint(&r->events, (uint64_t)type);
    write_kv(&r->events, kv);
    r->n_events++;
}

static void add_delete_event(struct run *r, const uint8_t *key, size_t len)
{
    struct bl_kv kv = {.key = key, .key_len = len, .mod_revision = r->revision + 1};
    add_event(r, BL_EVENT_DELETE, &kv);
}

/* The key @key (with lease @lease) stops using that lease: detach it, and
 * when the lease was the key's own (PUT ?ttl=), delete the lease too. */
static int leave_lease(struct run *r, uint64_t lease, const uint8_t *key, size_t len)
{
    struct bl_lease l;
    int rv;
    if (lease == 0) {
        return 0;
    }
    rv = bl_store_lease_detach(r->txn, lease, key, len);
    if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    rv = bl_store_lease_get(r->txn, lease, &l);
    if (rv == BL_ENOTFOUND) {
        return 0;
    }
    if (rv == 0 && (l.flags & BL_LEASE_F_OWN)) {
        rv = bl_store_lease_del(r->txn, lease);
    }
    return rv;
}

/* Put @key = @value attached to @lease (which exists), under compare
 * @cas. A failed compare sets r->code and changes nothing. */
static int do_put(struct run *r, struct bl_slice key, struct bl_slice value, uint64_t lease,
                  int64_t cas, bool want_prev)
{
    struct bl_kv old, kv;
    bool exists;
    int rv;

    rv = bl_store_kv_get(r->txn, key.p, key.len, &old);
    if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    exists = rv == 0;
    if (cas != BL_CAS_NONE) {
        uint64_t want = (uint64_t)cas;
        if ((want == 0 && exists) || (want != 0 && (!exists || old.mod_revision != want))) {
            r->code = BL_ECASFAILED;
            return 0;
        }
    }
    if (exists && want_prev) {
        write_kv(&r->prev, &old);
        r->n_prev++;
    }
    kv.key = key.p;
    kv.key_len = key.len;
    kv.value = value.p;
    kv.value_len = value.len;
    kv.mod_revision = r->revision + 1;
    kv.create_revision = exists ? old.create_revision : kv.mod_revision;
    kv.version = exists ? old.version + 1 : 1;
    kv.lease = lease;
    if (exists && old.lease != lease) {
        /* old's pointers die with the first write: take the id first */
        rv = leave_lease(r, old.lease, key.p, key.len);
        if (rv != 0) {
            return rv;
        }
    }
    if (lease != 0 && (!exists || old.lease != lease)) {
        rv = bl_store_lease_attach(r->txn, lease, key.p, key.len);
        if (rv != 0) {
            return rv;
        }
    }
    rv = bl_store_kv_put(r->txn, &kv);
    if (rv != 0) {
        return rv;
    }
    add_event(r, BL_EVENT_PUT, &kv);
    r->changed = true;
    return 0;
}

/* Check that lease @id exists: BL_OK, or r->code = BL_ENOTFOUND. */
/* A put of @key may name lease @id: it must exist (else r->code is
 * BL_ENOTFOUND), and a key's own lease (PUT ?ttl=) is only ever attached
 * to that key (else BL_EBADREQ): its owner takes the lease along when it
 * goes, and a second key would be left on a lease that no longer exists. */
static int check_lease(struct run *r, uint64_t id, struct bl_slice key)
{
    struct bl_lease l;
    struct bl_kv kv;
    int rv;
    if (id == 0) {
        return 0;
    }
    rv = bl_store_lease_get(r->txn, id, &l);
    if (rv == BL_ENOTFOUND) {
        r->code = BL_ENOTFOUND;
        return 0;
    }
    if (rv != 0 || !(l.flags & BL_LEASE_F_OWN)) {
        return rv;
    }
    rv = bl_store_kv_get(r->txn, key.p, key.len, &kv);
    if (rv == BL_ENOTFOUND || (rv == 0 && kv.lease != id)) {
        r->code = BL_EBADREQ;
        return 0;
    }
    return rv;
}

static int run_put(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    int rv;
    if (c->flags & BL_CMD_F_OWN_LEASE) {
        struct bl_lease l = {.ttl = c->ttl, .flags = BL_LEASE_F_OWN};
        rv = bl_store_lease_get(r->txn, c->lease, &l);
        if (rv == 0) {
            r->code = BL_EBADREQ; /* the id is taken: the proposer picks another */
            return 0;
        }
        if (rv != BL_ENOTFOUND) {
            return rv;
        }
        l.ttl = c->ttl;
        l.flags = BL_LEASE_F_OWN;
        /* the compare first: a failed one must not leave a lease behind */
        rv = do_put(r, c->key, c->value, c->lease, c->cas, (c->flags & BL_CMD_F_PREV) != 0);
        if (rv == 0 && r->code == BL_OK) {
            rv = bl_store_lease_put(r->txn, c->lease, &l);
            r->lease_granted = c->lease;
            r->lease_ttl = c->ttl;
        }
        return rv;
    }
    rv = check_lease(r, c->lease, c->key);
    if (rv != 0 || r->code != BL_OK) {
        return rv;
    }
    return do_put(r, c->key, c->value, c->lease, c->cas, (c->flags & BL_CMD_F_PREV) != 0);
}

static int do_delete(struct run *r, struct bl_slice key, int64_t cas, bool want_prev)
{
    struct bl_kv old;
    uint64_t lease;
    int rv;

    rv = bl_store_kv_get(r->txn, key.p, key.len, &old);
    if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    if (cas != BL_CAS_NONE) {
        uint64_t want = (uint64_t)cas;
        bool exists = rv == 0;
        if ((want == 0 && exists) || (want != 0 && (!exists || old.mod_revision != want))) {
            r->code = BL_ECASFAILED;
            return 0;
        }
    }
    if (rv == BL_ENOTFOUND) {
        return 0;
    }
    if (want_prev) {
        write_kv(&r->prev, &old);
        r->n_prev++;
    }
    lease = old.lease;
    rv = bl_store_kv_del(r->txn, key.p, key.len);
    if (rv == 0) {
        rv = leave_lease(r, lease, key.p, key.len);
    }
    if (rv != 0) {
        return rv;
    }
    add_delete_event(r, key.p, key.len);
    r->deleted++;
    r->changed = true;
    return 0;
}

static int run_delete(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    return do_delete(r, c->key, c->cas, (c->flags & BL_CMD_F_PREV) != 0);
}

/* Keys to delete are collected during a scan (LMDB cursors and deletes in
 * the same pass would need care); the copies live in one buffer of
 * [len u32][bytes] records. */
struct key_list {
    struct bl_mpw keys;
    bool want_prev;
    struct run *r;
};

static int collect_cb(void *arg, const struct bl_kv *kv)
{
    struct key_list *d = arg;
    uint32_t n = (uint32_t)kv->key_len;
    if (d->want_prev) {
        write_kv(&d->r->prev, kv);
        d->r->n_prev++;
    }
    bl_mpw_raw(&d->keys, &n, sizeof n);
    bl_mpw_raw(&d->keys, kv->key, kv->key_len);
    return d->keys.error != 0 ? d->keys.error : 0;
}

static int lease_key_cb(void *arg, const uint8_t *key, size_t len)
{
    struct key_list *d = arg;
    uint32_t n = (uint32_t)len;
    bl_mpw_raw(&d->keys, &n, sizeof n);
    bl_mpw_raw(&d->keys, key, len);
    return d->keys.error != 0 ? d->keys.error : 0;
}

/* Delete every key of @d (prev already written by the scan). */
static int delete_listed(struct run *r, struct key_list *d)
{
    size_t off = 0;
    int rv = d->keys.error;
    while (rv == 0 && off < d->keys.len) {
        uint32_t n;
        memcpy(&n, d->keys.buf + off, sizeof n);
        off += sizeof n;
        struct bl_slice k = {d->keys.buf + off, n};
        rv = do_delete(r, k, BL_CAS_NONE, false);
        off += n;
    }
    free(d->keys.buf);
    d->keys.buf = NULL;
    return rv;
}

static int do_delete_range(struct run *r, struct bl_slice prefix, bool want_prev)
{
    struct key_list d = {.r = r, .want_prev = want_prev};
    int rv = bl_store_kv_scan(r->txn, prefix.p, prefix.len, NULL, 0, collect_cb, &d);
    if (rv != 0) {
        free(d.keys.buf);
        return rv;
    }
    return delete_listed(r, &d);
}

static int run_delete_range(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    return do_delete_range(r, c->key, (c->flags & BL_CMD_F_PREV) != 0);
}

static int run_lease_grant(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct bl_lease l;
    int rv = bl_store_lease_get(r->txn, c->lease, &l);
    if (rv == 0) {
        r->code = BL_EBADREQ; /* lease id in use */
        return 0;
    }
    if (rv != BL_ENOTFOUND) {
        return rv;
    }
    l.ttl = c->ttl;
    l.flags = 0;
    rv = bl_store_lease_put(r->txn, c->lease, &l);
    if (rv == 0) {
        r->lease_granted = c->lease;
        r->lease_ttl = c->ttl;
    }
    return rv;
}

/* Revoke (or expire) a lease: all its keys go in one revision. */
static int run_lease_revoke(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct key_list d = {.r = r};
    struct bl_lease l;
    int rv = bl_store_lease_get(r->txn, c->lease, &l);
    if (rv == BL_ENOTFOUND) {
        r->code = BL_ENOTFOUND;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    rv = bl_store_lease_keys(r->txn, c->lease, lease_key_cb, &d);
    if (rv != 0) {
        free(d.keys.buf);
        return rv;
    }
    rv = delete_listed(r, &d);
    if (rv == 0) {
        rv = bl_store_lease_del(r->txn, c->lease);
        /* an own lease was deleted with its key */
        rv = rv == BL_ENOTFOUND ? 0 : rv;
    }
    return rv;
}

/* ---- transactions ---- */

static int cmp_num(uint64_t have, int64_t want, int op)
{
    /* compare as signed: etcd's fields are int64 */
    int64_t h = (int64_t)have;
    switch (op) {
    case BL_CMP_EQ:
        return h == want;
    case BL_CMP_NE:
        return h != want;
    case BL_CMP_LT:
        return h < want;
    default:
        return h > want;
    }
}

static int cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int op)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c == 0) {
        c = alen < blen ? -1 : alen > blen ? 1 : 0;
    }
    switch (op) {
    case BL_CMP_EQ:
        return c == 0;
    case BL_CMP_NE:
        return c != 0;
    case BL_CMP_LT:
        return c < 0;
    default:
        return c > 0;
    }
}

/* Evaluate compare @c: 1 holds, 0 not, negative: storage error. */
static int eval_compare(struct run *r, const struct bl_compare *c)
{
    struct bl_kv kv;
    int rv = bl_store_kv_get(r->txn, c->key.p, c->key.len, &kv);
    if (rv == BL_ENOTFOUND) {
        if (c->target == BL_CMP_VALUE) {
            return 0; /* etcd: a value compare on a missing key is false */
        }
        memset(&kv, 0, sizeof kv);
    } else if (rv != 0) {
        return rv;
    }
    switch (c->target) {
    case BL_CMP_VALUE:
        return cmp_bytes(kv.value, kv.value_len, c->value.p, c->value.len, c->op);
    case BL_CMP_VERSION:
        return cmp_num(kv.version, c->number, c->op);
    case BL_CMP_CREATE:
        return cmp_num(kv.create_revision, c->number, c->op);
    case BL_CMP_MOD:
        return cmp_num(kv.mod_revision, c->number, c->op);
    default:
        return cmp_num(kv.lease, c->number, c->op);
    }
}

struct get_walk {
    struct bl_mpw *kvs;
    uint64_t limit, count;
    uint32_t n;
    bool keys_only;
};

static int get_cb(void *arg, const struct bl_kv *kv)
{
    struct get_walk *g = arg;
    g->count++;
    if (g->n < g->limit) {
        struct bl_kv k = *kv;
        if (g->keys_only) {
            k.value = NULL;
            k.value_len = 0;
        }
        write_kv(g->kvs, &k);
        g->n++;
    }
    return g->kvs->error != 0 ? g->kvs->error : 0;
}

static int run_get(struct run *r, const struct bl_txn_op *o)
{
    struct bl_mpw kvs = {0};
    struct get_walk g = {.kvs = &kvs, .limit = o->limit, .keys_only = o->flags & BL_OP_F_KEYS};
    struct bl_kv kv;
    int rv;
    if (g.limit == 0 || g.limit > BL_TXN_GET_MAX) {
        g.limit = BL_TXN_GET_DEFAULT;
    }
    if (o->flags & BL_OP_F_PREFIX) {
        rv = bl_store_kv_scan(r->txn, o->key.p, o->key.len, NULL, 0, get_cb, &g);
    } else {
        rv = bl_store_kv_get(r->txn, o->key.p, o->key.len, &kv);
        if (rv == 0) {
            rv = get_cb(&g, &kv);
        } else if (rv == BL_ENOTFOUND) {
            rv = 0;
        }
    }
    if (rv == 0) {
        bl_mpw_array(&r->results, 4);
        bl_mpw_uint(&r->results, BL_OP_GET);
        bl_mpw_uint(&r->results, g.count);
        bl_mpw_uint(&r->results, g.count > g.n ? 1 : 0);
        bl_mpw_array(&r->results, g.n);
        bl_mpw_raw(&r->results, kvs.buf, kvs.len);
        rv = kvs.error;
    }
    free(kvs.buf);
    return rv;
}

static int run_txn(struct bl_applier *a, struct run *r)
{
    struct bl_txn_req t;
    const struct bl_txn_op *ops;
    uint32_t n_ops;
    int rv;

    if (a->txn_space == NULL) {
        a->txn_space =
            calloc(3 * BL_TXN_MAX_OPS, sizeof(struct bl_txn_op) + sizeof(struct bl_compare));
        if (a->txn_space == NULL) {
            return BL_ENOMEM;
        }
    }
    t.success = a->txn_space;
    t.failure = t.success + BL_TXN_MAX_OPS;
    t.compares = (struct bl_compare *)(t.failure + BL_TXN_MAX_OPS);
    rv = bl_txn_decode(r->cmd, &t, a->errmsg);
    if (rv != 0) {
        return rv;
    }
    r->is_txn = true;
    r->succeeded = true;
    for (uint32_t i = 0; i < t.n_compares && r->succeeded; i++) {
        rv = eval_compare(r, &t.compares[i]);
        if (rv < 0) {
            return rv;
        }
        r->succeeded = rv == 1;
    }
    rv = 0; /* eval_compare's 1 ("held") is no error */
    ops = r->succeeded ? t.success : t.failure;
    n_ops = r->succeeded ? t.n_success : t.n_failure;
    /* Every lease named must exist before anything is written. */
    for (uint32_t i = 0; i < n_ops; i++) {
        if (ops[i].type == BL_OP_PUT) {
            rv = check_lease(r, ops[i].lease, ops[i].key);
            if (rv != 0 || r->code != BL_OK) {
                return rv;
            }
        }
    }
    for (uint32_t i = 0; i < n_ops && rv == 0; i++) {
        const struct bl_txn_op *o = &ops[i];
        uint64_t before = r->deleted;
        switch (o->type) {
        case BL_OP_PUT:
            rv = do_put(r, o->key, o->value, o->lease, BL_CAS_NONE, false);
            bl_mpw_array(&r->results, 1);
            bl_mpw_uint(&r->results, BL_OP_PUT);
            break;
        case BL_OP_DELETE:
            if (o->flags & BL_OP_F_PREFIX) {
                rv = do_delete_range(r, o->key, false);
            } else {
                rv = do_delete(r, o->key, BL_CAS_NONE, false);
            }
            bl_mpw_array(&r->results, 2);
            bl_mpw_uint(&r->results, BL_OP_DELETE);
            bl_mpw_uint(&r->results, r->deleted - before);
            break;
        default:
            rv = run_get(r, o);
            break;
        }
        r->n_results++;
    }
    return rv == 0 ? r->results.error : rv;
}

static int run_member_set(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct bl_mpw w = {0};
    struct bl_member_attrs old;
    const void *rec;
    size_t len;
    bool seen = (c->flags & BL_CMD_F_SELF) != 0;
    int rv;

    /* "seen" only ever turns on: once a member ran under an id, that id
     * may have voted, whatever is written about it later. */
    rv = bl_store_member_get(r->txn, c->member_id, &rec, &len);
    if (rv == 0 && bl_member_attrs_decode(rec, len, &old) == 0 && old.seen) {
        seen = true;
    } else if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    bl_mpw_array(&w, 4);
    bl_mpw_str(&w, c->name.p, c->name.len);
    bl_mpw_str(&w, c->peer_url.p, c->peer_url.len);
    bl_mpw_str(&w, c->client_url.p, c->client_url.len);
    bl_mpw_uint(&w, seen ? 1 : 0);
    rv = w.error != 0 ? w.error : bl_store_member_put(r->txn, c->member_id, w.buf, w.len);
    free(w.buf);
    return rv;
}

/* Assemble the result record into the applier's buffer. */
static int write_record(struct bl_applier *a, const struct run *r, uint64_t revision)
{
    struct bl_mpw w = {.buf = a->buf, .cap = a->cap};
    bl_mpw_array(&w, r->is_txn ? 5 : 4);
    bl_mpw_int(&w, r->code);
    bl_mpw_uint(&w, revision);
    bl_mpw_uint(&w, r->deleted);
    bl_mpw_array(&w, r->n_prev);
    bl_mpw_raw(&w, r->prev.buf, r->prev.len);
    if (r->is_txn) {
        bl_mpw_array(&w, 2);
        bl_mpw_uint(&w, r->succeeded ? 1 : 0);
        bl_mpw_array(&w, r->n_results);
        bl_mpw_raw(&w, r->results.buf, r->results.len);
    }
    a->buf = w.buf;
    a->cap = w.cap;
    a->len = w.len;
    return w.error;
}

static void fail(struct bl_applier *a, int rv, const char *what, uint64_t index)
{
    snprintf(a->errmsg, sizeof a->errmsg, "apply entry %llu: %s: %s (%s)",
             (unsigned long long)index, what, bl_strerror(rv), bl_store_errmsg(a->store));
}

/* Run @cmd inside @txn, whose store revision is *@revision (raised when
 * the command changes something). Fills @res; its record is in a->buf.
 * Commits nothing: on error the caller aborts the whole transaction. */
static int apply_in(struct bl_applier *a, struct bl_txn *txn, uint64_t index, uint64_t *revision_io,
                    const struct bl_cmd *cmd, struct bl_apply_result *res)
{
    struct run r = {.txn = txn, .cmd = cmd, .code = BL_OK, .revision = *revision_io};
    uint64_t revision;
    const void *rec;
    size_t rec_len;
    bool record = (cmd->flags & BL_CMD_F_RECORD) != 0;
    int rv;

    memset(res, 0, sizeof *res);
    if (record) {
        rv = bl_store_reqid_get(txn, cmd->request_id.p, cmd->request_id.len, &rec, &rec_len);
        if (rv == 0) {
            struct bl_result_view v;
            if (rec_len > a->cap) {
                uint8_t *b = realloc(a->buf, rec_len);
                if (b == NULL) {
                    fail(a, BL_ENOMEM, "store", index);
                    return BL_ENOMEM;
                }
                a->buf = b;
                a->cap = rec_len;
            }
            memcpy(a->buf, rec, rec_len);
            a->len = rec_len;
            if (bl_result_decode(a->buf, a->len, &v) != 0) {
                fail(a, BL_ECORRUPT, "store", index);
                return BL_ECORRUPT;
            }
            res->code = v.code;
            res->revision = v.revision;
            res->deleted = v.deleted;
            res->replayed = true;
            res->record = a->buf;
            res->record_len = a->len;
            return 0;
        }
        if (rv != BL_ENOTFOUND) {
            goto err;
        }
    }

    switch (cmd->type) {
    case BL_CMD_PUT:
        rv = run_put(&r);
        break;
    case BL_CMD_DELETE:
        rv = run_delete(&r);
        break;
    case BL_CMD_DELETE_RANGE:
        rv = run_delete_range(&r);
        break;
    case BL_CMD_MEMBER_SET:
        rv = run_member_set(&r);
        break;
    case BL_CMD_TXN:
        rv = run_txn(a, &r);
        break;
    case BL_CMD_LEASE_GRANT:
        rv = run_lease_grant(&r);
        break;
    case BL_CMD_LEASE_REVOKE:
        rv = run_lease_revoke(&r);
        break;
    default:
        rv = BL_EMALFORMED;
        break;
    }
    if (rv == 0) {
        rv = r.prev.error != 0 ? r.prev.error : r.events.error;
    }
    /* Every deterministic failure (compare, missing lease, lease id in
     * use) is found before the first write, so a failed command has
     * changed nothing and commits only its outcome. */
    assert(rv != 0 || r.code == BL_OK || !r.changed);
    if (rv != 0) {
        goto err;
    }

    revision = r.changed && cmd->type != BL_CMD_MEMBER_SET ? r.revision + 1 : r.revision;
    if (revision != r.revision && a->history_revisions > 0) {
        struct bl_mpw h = {0};
        bl_mpw_array(&h, r.n_events);
        bl_mpw_raw(&h, r.events.buf, r.events.len);
        rv = h.error != 0 ? h.error : bl_store_history_put(txn, revision, h.buf, h.len);
        free(h.buf);
        if (rv == 0 && revision > a->history_revisions) {
            rv = bl_store_history_prune(txn, revision - a->history_revisions + 1);
        }
        if (rv != 0) {
            goto err;
        }
    }
    rv = write_record(a, &r, revision);
    if (rv == 0 && record) {
        rv = bl_store_reqid_put(txn, cmd->request_id.p, cmd->request_id.len, revision, a->buf,
                                a->len);
        if (rv == 0 && revision > BL_REQID_WINDOW) {
            rv = bl_store_reqid_prune(txn, revision - BL_REQID_WINDOW);
        }
    }
    if (rv != 0) {
        goto err;
    }
    free(r.prev.buf);
    free(r.events.buf);
    free(r.results.buf);
    res->code = r.code;
    res->revision = revision;
    res->deleted = r.deleted;
    res->record = a->buf;
    res->record_len = a->len;
    res->lease_granted = r.code == BL_OK ? r.lease_granted : 0;
    res->lease_ttl = r.lease_ttl;
    res->changed = revision != r.revision;
    *revision_io = revision;
    return 0;

err:
    fail(a, rv, "store", index);
    free(r.prev.buf);
    free(r.events.buf);
    free(r.results.buf);
    return rv;
}

/* Begin the entry's write transaction; *@skip when @index was applied. */
static int entry_begin(struct bl_applier *a, uint64_t index, struct bl_txn **txn,
                       uint64_t *revision, bool *skip)
{
    uint64_t applied;
    int rv = bl_store_begin(a->store, true, txn);
    if (rv != 0) {
        fail(a, rv, "begin", index);
        return rv;
    }
    rv = bl_store_meta_get(*txn, META_APPLIED, &applied);
    if (rv == 0) {
        rv = bl_store_meta_get(*txn, META_REVISION, revision);
    }
    if (rv != 0) {
        fail(a, rv, "store", index);
        bl_store_abort(*txn);
        return rv;
    }
    *skip = index <= applied;
    if (*skip) {
        bl_store_abort(*txn);
    }
    return 0;
}

/* Record @index (and @revision if it moved from @before) and commit. */
static int entry_commit(struct bl_applier *a, struct bl_txn *txn, uint64_t index, uint64_t before,
                        uint64_t revision)
{
    int rv = bl_store_meta_set(txn, META_APPLIED, index);
    if (rv == 0 && revision != before) {
        rv = bl_store_meta_set(txn, META_REVISION, revision);
    }
    if (rv != 0) {
        fail(a, rv, "store", index);
        bl_store_abort(txn);
        return rv;
    }
    rv = bl_store_commit(txn);
    if (rv != 0) {
        fail(a, rv, "commit", index);
    }
    return rv;
}

int bl_apply(struct bl_applier *a, uint64_t index, const struct bl_cmd *cmd,
             struct bl_apply_result *res)
{
    struct bl_txn *txn;
    uint64_t before, revision;
    bool skip;
    int rv;

    memset(res, 0, sizeof *res);
    rv = entry_begin(a, index, &txn, &before, &skip);
    if (rv != 0) {
        return rv;
    }
    if (skip) {
        res->skipped = true;
        res->revision = before;
        return 0;
    }
    revision = before;
    rv = apply_in(a, txn, index, &revision, cmd, res);
    if (rv != 0) {
        bl_store_abort(txn);
        return rv;
    }
    return entry_commit(a, txn, index, before, revision);
}

int bl_apply_batch(struct bl_applier *a, uint64_t index, const struct bl_cmd *cmds, uint32_t n,
                   struct bl_apply_result *res)
{
    struct bl_txn *txn;
    uint64_t before, revision;
    size_t *offs = NULL, used = 0;
    bool skip;
    int rv;

    memset(res, 0, n * sizeof *res);
    rv = entry_begin(a, index, &txn, &before, &skip);
    if (rv != 0) {
        return rv;
    }
    if (skip) {
        for (uint32_t k = 0; k < n; k++) {
            res[k].skipped = true;
            res[k].revision = before;
        }
        return 0;
    }
    offs = malloc((n ? n : 1) * sizeof *offs);
    if (offs == NULL) {
        fail(a, BL_ENOMEM, "store", index);
        bl_store_abort(txn);
        return BL_ENOMEM;
    }
    revision = before;
    for (uint32_t k = 0; k < n; k++) {
        rv = apply_in(a, txn, index, &revision, &cmds[k], &res[k]);
        if (rv == 0 && used + a->len > a->batch_cap) {
            size_t cap = a->batch_cap ? a->batch_cap : 4096;
            uint8_t *b;
            while (cap < used + a->len) {
                cap *= 2;
            }
            b = realloc(a->batch_buf, cap);
            if (b == NULL) {
                fail(a, BL_ENOMEM, "store", index);
                rv = BL_ENOMEM;
            } else {
                a->batch_buf = b;
                a->batch_cap = cap;
            }
        }
        if (rv != 0) {
            free(offs);
            bl_store_abort(txn);
            return rv;
        }
        /* The record moves out of a->buf, which the next command reuses. */
        memcpy(a->batch_buf + used, a->buf, a->len);
        offs[k] = used;
        used += a->len;
    }
    for (uint32_t k = 0; k < n; k++) {
        res[k].record = a->batch_buf + offs[k];
    }
    free(offs);
    return entry_commit(a, txn, index, before, revision);
}

int bl_result_decode(const uint8_t *rec, size_t len, struct bl_result_view *v)
{
    struct bl_mpr r = {rec, rec + len};
    uint32_t n;
    int64_t code;

    memset(v, 0, sizeof *v);
    if (bl_mpr_array(&r, &n) != 0 || (n != 4 && n != 5) || bl_mpr_int(&r, &code) != 0 ||
        bl_mpr_uint(&r, &v->revision) != 0 || bl_mpr_uint(&r, &v->deleted) != 0 ||
        bl_mpr_array(&r, &v->n_prev) != 0) {
        return BL_EMALFORMED;
    }
    v->is_txn = n == 5;
    if (code > 0 || code < BL_CODE_MIN) {
        return BL_EMALFORMED;
    }
    v->code = (int)code;
    v->prev_p = r.p;
    v->end = r.end;
    return 0;
}

static int read_kv(struct bl_mpr *r, struct bl_kv *kv)
{
    uint32_t n;
    if (bl_mpr_array(r, &n) != 0 || n != 6 || bl_mpr_bytes(r, true, &kv->key, &kv->key_len) ||
        bl_mpr_bytes(r, true, &kv->value, &kv->value_len) != 0 ||
        bl_mpr_uint(r, &kv->create_revision) != 0 || bl_mpr_uint(r, &kv->mod_revision) != 0 ||
        bl_mpr_uint(r, &kv->version) != 0 || bl_mpr_uint(r, &kv->lease) != 0) {
        return BL_EMALFORMED;
    }
    return 0;
}

int bl_result_next_prev(struct bl_result_view *v, struct bl_kv *kv)
{
    struct bl_mpr r = {v->prev_p, v->end};

    if (v->n_prev == 0) {
        return 0;
    }
    if (read_kv(&r, kv) != 0) {
        return BL_EMALFORMED;
    }
    v->prev_p = r.p;
    v->n_prev--;
    return 1;
}

int bl_result_txn(struct bl_result_view *v)
{
    struct bl_mpr r = {v->prev_p, v->end};
    struct bl_kv kv;
    uint32_t n;
    uint64_t ok;
    if (!v->is_txn) {
        return BL_EMALFORMED;
    }
    while (v->n_prev > 0) { /* txns have none today, but skip them */
        if (read_kv(&r, &kv) != 0) {
            return BL_EMALFORMED;
        }
        v->n_prev--;
    }
    if (bl_mpr_array(&r, &n) != 0 || n != 2 || bl_mpr_uint(&r, &ok) != 0 ||
        bl_mpr_array(&r, &v->n_results) != 0) {
        return BL_EMALFORMED;
    }
    v->succeeded = ok != 0;
    v->prev_p = r.p;
    return 0;
}

int bl_result_next_op(struct bl_result_view *v, struct bl_op_result *o)
{
    struct bl_mpr r = {v->prev_p, v->end};
    uint32_t n;
    uint64_t type, more = 0;
    if (v->n_results == 0) {
        return 0;
    }
    memset(o, 0, sizeof *o);
    if (bl_mpr_array(&r, &n) != 0 || n < 1 || bl_mpr_uint(&r, &type) != 0) {
        return BL_EMALFORMED;
    }
    o->type = (int)type;
    if (type == BL_OP_PUT && n == 1) {
        /* nothing more */
    } else if (type == BL_OP_DELETE && n == 2) {
        if (bl_mpr_uint(&r, &o->deleted) != 0) {
            return BL_EMALFORMED;
        }
    } else if (type == BL_OP_GET && n == 4) {
        if (bl_mpr_uint(&r, &o->count) != 0 || bl_mpr_uint(&r, &more) != 0 ||
            bl_mpr_array(&r, &o->n_kvs) != 0) {
            return BL_EMALFORMED;
        }
        o->more = more != 0;
        o->kvs.p = r.p;
        o->kvs.end = r.end;
        for (uint32_t i = 0; i < o->n_kvs; i++) {
            struct bl_kv kv;
            if (read_kv(&r, &kv) != 0) {
                return BL_EMALFORMED;
            }
        }
    } else {
        return BL_EMALFORMED;
    }
    v->prev_p = r.p;
    v->n_results--;
    return 1;
}

int bl_op_result_next_kv(struct bl_op_result *o, struct bl_kv *kv)
{
    if (o->n_kvs == 0) {
        return 0;
    }
    if (read_kv(&o->kvs, kv) != 0) {
        return BL_EMALFORMED;
    }
    o->n_kvs--;
    return 1;
}

int bl_events_init(struct bl_events *e, const void *rec, size_t len)
{
    e->r.p = rec;
    e->r.end = (const uint8_t *)rec + len;
    return bl_mpr_array(&e->r, &e->n) != 0 ? BL_EMALFORMED : 0;
}

int bl_events_next(struct bl_events *e, int *type, struct bl_kv *kv)
{
    uint32_t n;
    uint64_t t;
    if (e->n == 0) {
        return 0;
    }
    if (bl_mpr_array(&e->r, &n) != 0 || n != 2 || bl_mpr_uint(&e->r, &t) != 0 ||
        (t != BL_EVENT_PUT && t != BL_EVENT_DELETE) || read_kv(&e->r, kv) != 0) {
        return BL_EMALFORMED;
    }
    *type = (int)t;
    e->n--;
    return 1;
}

int bl_member_attrs_decode(const void *rec, size_t len, struct bl_member_attrs *m)
{
    struct bl_mpr r = {rec, (const uint8_t *)rec + len};
    uint64_t seen = 1; /* records before 0.2 were all written by the member itself */
    uint32_t n;

    if (bl_mpr_array(&r, &n) != 0 || (n != 3 && n != 4) ||
        bl_mpr_bytes(&r, true, &m->name.p, &m->name.len) != 0 ||
        bl_mpr_bytes(&r, true, &m->peer_url.p, &m->peer_url.len) != 0 ||
        bl_mpr_bytes(&r, true, &m->client_url.p, &m->client_url.len) != 0 ||
        (n == 4 && bl_mpr_uint(&r, &seen) != 0)) {
        return BL_EMALFORMED;
    }
    m->seen = seen != 0;
    return 0;
}
