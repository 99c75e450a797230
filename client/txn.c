/* libballast transactions: a builder, POST /v1/txn, and the result.
 *
 * The happy path: each ballast_txn_* builder call packs its compare or op
 * as a msgpack map straight into the buffer of its list (compare, success,
 * failure), copying the caller's key and value there, and counts it. When
 * the txn is sent, the body is the top-level map with the three arrays
 * (their headers written now that the counts are known) followed by each
 * list's bytes, sent as application/msgpack through the client's call loop.
 * The answer {"succeeded", "revision", "results": [{"put": {}},
 * {"delete": {"deleted": N}}, {"get": {"kvs", "count", "more"}}]} is
 * decoded into one array of results; the kvs of each get are one
 * allocation of their own (blc_kvs_decode).
 *
 * Failure modes: a bad argument or an allocation failure while building is
 * kept in the txn (the first one) and returned by ballast_txn() without
 * sending anything, so a caller may build without checking every step. The
 * server's refusals map as for any call; a malformed answer is EPROTO. The
 * request id of the last send stays in the txn so ballast_txn_retry() can
 * repeat a write whose outcome is unknown without applying it twice. */
#include "client_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_LISTS 3 /* compare, success, failure */
#define L_CMP   0

struct ballast_txn {
    msgpack_sbuffer list[N_LISTS]; /* the packed maps of each list */
    uint32_t n[N_LISTS];
    int err; /* the first builder error, 0 if none */
    char errmsg[ERRMSG_SIZE];
    char id[REQUEST_ID_MAX + 1]; /* request id of the last send, "" before */
};

static const char *const LIST_NAME[N_LISTS] = {"compare", "success", "failure"};

struct ballast_txn *ballast_txn_new(void)
{
    struct ballast_txn *t = calloc(1, sizeof *t);
    if (!t) {
        return NULL;
    }
    for (int i = 0; i < N_LISTS; i++) {
        msgpack_sbuffer_init(&t->list[i]);
    }
    return t;
}

void ballast_txn_free(struct ballast_txn *t)
{
    if (!t) {
        return;
    }
    for (int i = 0; i < N_LISTS; i++) {
        msgpack_sbuffer_destroy(&t->list[i]);
    }
    free(t);
}

const char *ballast_txn_request_id(const struct ballast_txn *t)
{
    return t ? t->id : "";
}

/* Keep the first builder error in @t; returns @code. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
txn_fail(struct ballast_txn *t, int code, const char *fmt, ...)
{
    if (t->err == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
        va_end(ap);
        t->err = code;
    }
    return code;
}

/* Check @key for an op or compare: 1..4096 bytes, or empty with @prefix. */
static int txn_check_key(struct ballast_txn *t, const char *what, const void *key, size_t klen,
                         int prefix)
{
    if ((!key && klen > 0) || (klen == 0 && !prefix)) {
        return txn_fail(t, BALLAST_EBADARG, "txn %s: empty key", what);
    }
    if (klen > KEY_MAX) {
        return txn_fail(t, BALLAST_EBADARG, "txn %s: key of %zu bytes is over %d", what, klen,
                        KEY_MAX);
    }
    return 0;
}

static int pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    return msgpack_pack_bin(pk, n) | msgpack_pack_bin_body(pk, n ? p : "", n);
}

/* Count the map just packed into list @l, or undo it after an error. */
static int txn_added(struct ballast_txn *t, int l, size_t mark, int packed)
{
    if (packed != 0) {
        t->list[l].size = mark; /* drop the partial map */
        return txn_fail(t, BALLAST_ENOMEM, "txn: out of memory");
    }
    t->n[l]++;
    return 0;
}

static int txn_compare(struct ballast_txn *t, const void *key, size_t klen, int target, int op,
                       const void *value, size_t vlen, int64_t number)
{
    static const char *const TARGET[] = {"value", "version", "create", "mod", "lease"};
    static const char *const OP[] = {"==", "!=", "<", ">"};
    if (!t) {
        return BALLAST_EBADARG;
    }
    int rv = txn_check_key(t, "compare", key, klen, 0);
    if (rv != 0) {
        return rv;
    }
    if (target < BALLAST_CMP_VALUE || target > BALLAST_CMP_LEASE) {
        return txn_fail(t, BALLAST_EBADARG, "txn compare: unknown target %d", target);
    }
    if (op < BALLAST_CMP_EQ || op > BALLAST_CMP_GT) {
        return txn_fail(t, BALLAST_EBADARG, "txn compare: unknown op %d", op);
    }
    if (target == BALLAST_CMP_VALUE && !value && vlen > 0) {
        return txn_fail(t, BALLAST_EBADARG, "txn compare: NULL value");
    }
    msgpack_packer pk;
    size_t mark = t->list[L_CMP].size;
    msgpack_packer_init(&pk, &t->list[L_CMP], msgpack_sbuffer_write);
    int r = msgpack_pack_map(&pk, 4);
    r |= blc_pack_str(&pk, "key") | pack_bin(&pk, key, klen);
    r |= blc_pack_str(&pk, "target") | blc_pack_str(&pk, TARGET[target]);
    r |= blc_pack_str(&pk, "op") | blc_pack_str(&pk, OP[op]);
    if (target == BALLAST_CMP_VALUE) {
        r |= blc_pack_str(&pk, "value") | pack_bin(&pk, value, vlen);
    } else {
        r |= blc_pack_str(&pk, "number") | msgpack_pack_int64(&pk, number);
    }
    return txn_added(t, L_CMP, mark, r);
}

int ballast_txn_compare(struct ballast_txn *t, const void *key, size_t klen, int target, int op,
                        int64_t number)
{
    if (t && target == BALLAST_CMP_VALUE) {
        return txn_fail(t, BALLAST_EBADARG,
                        "txn compare: a value compare takes bytes (ballast_txn_compare_value)");
    }
    return txn_compare(t, key, klen, target, op, NULL, 0, number);
}

int ballast_txn_compare_value(struct ballast_txn *t, const void *key, size_t klen, int op,
                              const void *value, size_t vlen)
{
    return txn_compare(t, key, klen, BALLAST_CMP_VALUE, op, value, vlen, 0);
}

/* Start an op in list @branch: check it and aim @pk at the list's buffer. */
static int txn_op_begin(struct ballast_txn *t, int branch, const char *name, const void *key,
                        size_t klen, int prefix, msgpack_packer *pk, size_t *mark, int *l)
{
    if (branch != BALLAST_TXN_SUCCESS && branch != BALLAST_TXN_FAILURE) {
        return txn_fail(t, BALLAST_EBADARG, "txn %s: unknown branch %d", name, branch);
    }
    int rv = txn_check_key(t, name, key, klen, prefix);
    if (rv != 0) {
        return rv;
    }
    *l = 1 + branch;
    *mark = t->list[*l].size;
    msgpack_packer_init(pk, &t->list[*l], msgpack_sbuffer_write);
    return 0;
}

int ballast_txn_put(struct ballast_txn *t, int branch, const void *key, size_t klen,
                    const void *value, size_t vlen, int64_t lease)
{
    msgpack_packer pk;
    size_t mark = 0;
    int l = 1;
    if (!t) {
        return BALLAST_EBADARG;
    }
    int rv = txn_op_begin(t, branch, "put", key, klen, 0, &pk, &mark, &l);
    if (rv != 0) {
        return rv;
    }
    if ((!value && vlen > 0) || lease < 0) {
        return txn_fail(t, BALLAST_EBADARG, "txn put: NULL value or negative lease");
    }
    int r = msgpack_pack_map(&pk, 1) | blc_pack_str(&pk, "put");
    r |= msgpack_pack_map(&pk, lease > 0 ? 3 : 2);
    r |= blc_pack_str(&pk, "key") | pack_bin(&pk, key, klen);
    r |= blc_pack_str(&pk, "value") | pack_bin(&pk, value, vlen);
    if (lease > 0) {
        r |= blc_pack_str(&pk, "lease") | msgpack_pack_int64(&pk, lease);
    }
    return txn_added(t, l, mark, r);
}

int ballast_txn_delete(struct ballast_txn *t, int branch, const void *key, size_t klen, int prefix)
{
    msgpack_packer pk;
    size_t mark = 0;
    int l = 1;
    if (!t) {
        return BALLAST_EBADARG;
    }
    int rv = txn_op_begin(t, branch, "delete", key, klen, prefix, &pk, &mark, &l);
    if (rv != 0) {
        return rv;
    }
    int r = msgpack_pack_map(&pk, 1) | blc_pack_str(&pk, "delete");
    r |= msgpack_pack_map(&pk, prefix ? 2 : 1);
    r |= blc_pack_str(&pk, "key") | pack_bin(&pk, key, klen);
    if (prefix) {
        r |= blc_pack_str(&pk, "prefix") | msgpack_pack_true(&pk);
    }
    return txn_added(t, l, mark, r);
}

int ballast_txn_get(struct ballast_txn *t, int branch, const void *key, size_t klen, int prefix,
                    unsigned limit, int keys_only)
{
    msgpack_packer pk;
    size_t mark = 0;
    int l = 1;
    if (!t) {
        return BALLAST_EBADARG;
    }
    int rv = txn_op_begin(t, branch, "get", key, klen, prefix, &pk, &mark, &l);
    if (rv != 0) {
        return rv;
    }
    int r = msgpack_pack_map(&pk, 1) | blc_pack_str(&pk, "get");
    r |= msgpack_pack_map(&pk, 1 + (prefix != 0) + (limit > 0) + (keys_only != 0));
    r |= blc_pack_str(&pk, "key") | pack_bin(&pk, key, klen);
    if (prefix) {
        r |= blc_pack_str(&pk, "prefix") | msgpack_pack_true(&pk);
    }
    if (limit > 0) {
        r |= blc_pack_str(&pk, "limit") | msgpack_pack_unsigned_int(&pk, limit);
    }
    if (keys_only) {
        r |= blc_pack_str(&pk, "keys") | msgpack_pack_true(&pk);
    }
    return txn_added(t, l, mark, r);
}

/* The request body of @t into @sb (initialized here). Returns 0 or ENOMEM. */
static int txn_body(const struct ballast_txn *t, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int r = msgpack_pack_map(&pk, N_LISTS);
    for (int i = 0; i < N_LISTS; i++) {
        r |= blc_pack_str(&pk, LIST_NAME[i]) | msgpack_pack_array(&pk, t->n[i]);
        if (t->list[i].size > 0) {
            r |= msgpack_sbuffer_write(sb, t->list[i].data, t->list[i].size);
        }
    }
    if (r != 0) {
        msgpack_sbuffer_destroy(sb);
        return BALLAST_ENOMEM;
    }
    return 0;
}

void ballast_txn_result_free(struct ballast_txn_result *r)
{
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->n_results; i++) {
        free(r->results[i].kvs);
    }
    free(r->results);
    memset(r, 0, sizeof *r);
}

/* Decode one result map ({"put": {}}, ...) into @res. */
static int op_result_decode(const msgpack_object *o, struct ballast_txn_op_result *res)
{
    const msgpack_object *v;
    if (o->type != MSGPACK_OBJECT_MAP) {
        return BALLAST_EPROTO;
    }
    if ((v = blc_mp_get(o, "put")) != NULL) {
        res->type = BALLAST_OP_PUT;
        return v->type == MSGPACK_OBJECT_MAP ? 0 : BALLAST_EPROTO;
    }
    if ((v = blc_mp_get(o, "delete")) != NULL) {
        res->type = BALLAST_OP_DELETE;
        return v->type == MSGPACK_OBJECT_MAP && blc_mp_i64(v, "deleted", &res->deleted) == 0
                   ? 0
                   : BALLAST_EPROTO;
    }
    if ((v = blc_mp_get(o, "get")) != NULL) {
        res->type = BALLAST_OP_GET;
        if (v->type != MSGPACK_OBJECT_MAP || blc_mp_i64(v, "count", &res->count) != 0 ||
            blc_mp_bool(v, "more", &res->more) != 0) {
            return BALLAST_EPROTO;
        }
        return blc_kvs_field(v, "kvs", &res->kvs, &res->n);
    }
    return BALLAST_EPROTO;
}

/* Decode the answer map @o into @r (zeroed; owns what it holds on error). */
static int txn_result_decode(const msgpack_object *o, struct ballast_txn_result *r)
{
    if (o->type != MSGPACK_OBJECT_MAP || blc_mp_bool(o, "succeeded", &r->succeeded) != 0 ||
        blc_mp_i64(o, "revision", &r->revision) != 0) {
        return BALLAST_EPROTO;
    }
    const msgpack_object *a = blc_mp_get(o, "results");
    if (!a) {
        return 0;
    }
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        return BALLAST_EPROTO;
    }
    if (a->via.array.size == 0) {
        return 0;
    }
    r->results = calloc(a->via.array.size, sizeof *r->results);
    if (!r->results) {
        return BALLAST_ENOMEM;
    }
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        r->n_results = i + 1; /* so that a partial result is freed whole */
        int rv = op_result_decode(&a->via.array.ptr[i], &r->results[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int txn_send(struct ballast_client *c, struct ballast_txn *t, struct ballast_txn_result *r,
                    int same_id)
{
    if (r) {
        memset(r, 0, sizeof *r);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!t) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL txn");
    }
    if (t->err != 0) {
        return blc_set_err(c, t->err, "%s", t->errmsg);
    }
    msgpack_sbuffer sb;
    if (txn_body(t, &sb) != 0) {
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory building a txn");
    }
    struct req rq;
    blc_req_init(c, &rq, "POST", "/v1/txn");
    rq.body = sb.data;
    rq.body_len = sb.size;
    rq.has_body = 1;
    rq.content_type = CT_MSGPACK;
    if (same_id && t->id[0]) {
        memcpy(rq.id, t->id, sizeof rq.id);
    } else {
        memcpy(t->id, rq.id, sizeof t->id);
    }
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_txn_result tmp = {0};
        rv = txn_result_decode(&m.u.data, &tmp);
        if (rv != 0) {
            ballast_txn_result_free(&tmp);
            rv = blc_bad_reply(c, rv, &rq);
        } else if (r) {
            *r = tmp;
        } else {
            ballast_txn_result_free(&tmp);
        }
    }
    blc_mp_reply_free(&m);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

int ballast_txn(struct ballast_client *c, struct ballast_txn *t, struct ballast_txn_result *r)
{
    return txn_send(c, t, r, 0);
}

int ballast_txn_retry(struct ballast_client *c, struct ballast_txn *t, struct ballast_txn_result *r)
{
    return txn_send(c, t, r, 1);
}
