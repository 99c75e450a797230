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
}

void bl_applier_close(struct bl_applier *a)
{
    free(a->buf);
    a->buf = NULL;
    a->cap = a->len = 0;
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
};

static int run_put(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct bl_kv old, kv;
    bool exists;
    int rv;

    rv = bl_store_kv_get(r->txn, c->key.p, c->key.len, &old);
    if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    exists = rv == 0;
    if (c->cas != BL_CAS_NONE) {
        uint64_t want = (uint64_t)c->cas;
        if ((want == 0 && exists) || (want != 0 && (!exists || old.mod_revision != want))) {
            r->code = BL_ECASFAILED;
            return 0;
        }
    }
    if (exists && (c->flags & BL_CMD_F_PREV)) {
        write_kv(&r->prev, &old);
        r->n_prev++;
    }
    kv.key = c->key.p;
    kv.key_len = c->key.len;
    kv.value = c->value.p;
    kv.value_len = c->value.len;
    kv.mod_revision = r->revision + 1;
    kv.create_revision = exists ? old.create_revision : kv.mod_revision;
    kv.version = exists ? old.version + 1 : 1;
    kv.lease = c->lease;
    rv = bl_store_kv_put(r->txn, &kv);
    if (rv != 0) {
        return rv;
    }
    r->changed = true;
    return 0;
}

static int run_delete(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct bl_kv old;
    int rv;

    rv = bl_store_kv_get(r->txn, c->key.p, c->key.len, &old);
    if (rv != 0 && rv != BL_ENOTFOUND) {
        return rv;
    }
    if (c->cas != BL_CAS_NONE) {
        uint64_t want = (uint64_t)c->cas;
        bool exists = rv == 0;
        if ((want == 0 && exists) || (want != 0 && (!exists || old.mod_revision != want))) {
            r->code = BL_ECASFAILED;
            return 0;
        }
    }
    if (rv == BL_ENOTFOUND) {
        return 0;
    }
    if (c->flags & BL_CMD_F_PREV) {
        write_kv(&r->prev, &old);
        r->n_prev++;
    }
    rv = bl_store_kv_del(r->txn, c->key.p, c->key.len);
    if (rv != 0) {
        return rv;
    }
    r->deleted = 1;
    r->changed = true;
    return 0;
}

/* Keys to delete are collected during the scan (LMDB cursors and deletes
 * in the same pass would need care); the copies live in one buffer. */
struct range_del {
    struct run *r;
    struct bl_mpw keys; /* concatenated [len u32][bytes] */
};

static int collect_cb(void *arg, const struct bl_kv *kv)
{
    struct range_del *d = arg;
    uint32_t n = (uint32_t)kv->key_len;
    if (d->r->cmd->flags & BL_CMD_F_PREV) {
        write_kv(&d->r->prev, kv);
        d->r->n_prev++;
    }
    bl_mpw_raw(&d->keys, &n, sizeof n);
    bl_mpw_raw(&d->keys, kv->key, kv->key_len);
    return d->keys.error != 0 ? d->keys.error : 0;
}

static int run_delete_range(struct run *r)
{
    const struct bl_cmd *c = r->cmd;
    struct range_del d = {.r = r};
    size_t off = 0;
    int rv;

    rv = bl_store_kv_scan(r->txn, c->key.p, c->key.len, NULL, 0, collect_cb, &d);
    while (rv == 0 && off < d.keys.len) {
        uint32_t n;
        memcpy(&n, d.keys.buf + off, sizeof n);
        off += sizeof n;
        rv = bl_store_kv_del(r->txn, d.keys.buf + off, n);
        off += n;
        r->deleted++;
    }
    free(d.keys.buf);
    if (rv == 0 && r->deleted > 0) {
        r->changed = true;
    }
    return rv;
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
    bl_mpw_array(&w, 4);
    bl_mpw_int(&w, r->code);
    bl_mpw_uint(&w, revision);
    bl_mpw_uint(&w, r->deleted);
    bl_mpw_array(&w, r->n_prev);
    bl_mpw_raw(&w, r->prev.buf, r->prev.len);
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

int bl_apply(struct bl_applier *a, uint64_t index, const struct bl_cmd *cmd,
             struct bl_apply_result *res)
{
    struct run r = {.cmd = cmd, .code = BL_OK};
    uint64_t applied, revision;
    const void *rec;
    size_t rec_len;
    bool record = (cmd->flags & BL_CMD_F_RECORD) != 0;
    int rv;

    memset(res, 0, sizeof *res);
    rv = bl_store_begin(a->store, true, &r.txn);
    if (rv != 0) {
        fail(a, rv, "begin", index);
        return rv;
    }
    rv = bl_store_meta_get(r.txn, META_APPLIED, &applied);
    if (rv == 0) {
        rv = bl_store_meta_get(r.txn, META_REVISION, &r.revision);
    }
    if (rv != 0) {
        goto err_after_begin;
    }
    if (index <= applied) {
        bl_store_abort(r.txn);
        res->skipped = true;
        res->revision = r.revision;
        return 0;
    }

    if (record) {
        rv = bl_store_reqid_get(r.txn, cmd->request_id.p, cmd->request_id.len, &rec, &rec_len);
        if (rv == 0) {
            struct bl_result_view v;
            if (rec_len > a->cap) {
                uint8_t *b = realloc(a->buf, rec_len);
                if (b == NULL) {
                    rv = BL_ENOMEM;
                    goto err_after_begin;
                }
                a->buf = b;
                a->cap = rec_len;
            }
            memcpy(a->buf, rec, rec_len);
            a->len = rec_len;
            if (bl_result_decode(a->buf, a->len, &v) != 0) {
                rv = BL_ECORRUPT;
                goto err_after_begin;
            }
            rv = bl_store_meta_set(r.txn, META_APPLIED, index);
            if (rv != 0) {
                goto err_after_begin;
            }
            rv = bl_store_commit(r.txn);
            if (rv != 0) {
                fail(a, rv, "commit", index);
                return rv;
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
            goto err_after_begin;
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
    default:
        rv = BL_EMALFORMED;
        break;
    }
    if (rv == 0) {
        rv = r.prev.error;
    }
    if (rv != 0) {
        goto err_after_begin;
    }

    revision = r.changed && cmd->type != BL_CMD_MEMBER_SET ? r.revision + 1 : r.revision;
    rv = write_record(a, &r, revision);
    if (rv == 0 && record) {
        rv = bl_store_reqid_put(r.txn, cmd->request_id.p, cmd->request_id.len, revision, a->buf,
                                a->len);
        if (rv == 0 && revision > BL_REQID_WINDOW) {
            rv = bl_store_reqid_prune(r.txn, revision - BL_REQID_WINDOW);
        }
    }
    if (rv == 0) {
        rv = bl_store_meta_set(r.txn, META_APPLIED, index);
    }
    if (rv == 0 && revision != r.revision) {
        rv = bl_store_meta_set(r.txn, META_REVISION, revision);
    }
    if (rv != 0) {
        goto err_after_begin;
    }
    free(r.prev.buf);
    rv = bl_store_commit(r.txn);
    if (rv != 0) {
        fail(a, rv, "commit", index);
        return rv;
    }
    res->code = r.code;
    res->revision = revision;
    res->deleted = r.deleted;
    res->record = a->buf;
    res->record_len = a->len;
    return 0;

err_after_begin:
    fail(a, rv, "store", index);
    free(r.prev.buf);
    bl_store_abort(r.txn);
    return rv;
}

int bl_result_decode(const uint8_t *rec, size_t len, struct bl_result_view *v)
{
    struct bl_mpr r = {rec, rec + len};
    uint32_t n;
    int64_t code;

    if (bl_mpr_array(&r, &n) != 0 || n != 4 || bl_mpr_int(&r, &code) != 0 ||
        bl_mpr_uint(&r, &v->revision) != 0 || bl_mpr_uint(&r, &v->deleted) != 0 ||
        bl_mpr_array(&r, &v->n_prev) != 0) {
        return BL_EMALFORMED;
    }
    if (code > 0 || code < BL_CODE_MIN) {
        return BL_EMALFORMED;
    }
    v->code = (int)code;
    v->prev_p = r.p;
    v->end = r.end;
    return 0;
}

int bl_result_next_prev(struct bl_result_view *v, struct bl_kv *kv)
{
    struct bl_mpr r = {v->prev_p, v->end};
    uint32_t n;

    if (v->n_prev == 0) {
        return 0;
    }
    if (bl_mpr_array(&r, &n) != 0 || n != 6 || bl_mpr_bytes(&r, true, &kv->key, &kv->key_len) ||
        bl_mpr_bytes(&r, true, &kv->value, &kv->value_len) != 0 ||
        bl_mpr_uint(&r, &kv->create_revision) != 0 || bl_mpr_uint(&r, &kv->mod_revision) != 0 ||
        bl_mpr_uint(&r, &kv->version) != 0 || bl_mpr_uint(&r, &kv->lease) != 0) {
        return BL_EMALFORMED;
    }
    v->prev_p = r.p;
    v->n_prev--;
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
