/* Unit tests for transactions and leases at the apply layer (apply.c) on a
 * real LMDB store in a temporary directory: compare semantics (every target
 * and op, on present and absent keys), ANDed compares, one revision per txn
 * with its history record, gets inside a txn, lease grant / attach / detach
 * / revoke, a key's own lease (PUT ?ttl=), and request-id replays of txns.
 *
 * Every command goes through bl_cmd_encode() and bl_cmd_decode() before
 * bl_apply(), as a Raft entry does (a txn's body is only read from the
 * encoded form). The expected semantics are docs/api-notes.md's
 * "Transactions" and "Leases" sections and the comment of apply.h. */
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "command.h"
#include "error.h"
#include "store.h"

/* Every test's store lives in its own directory under @top, which main()
 * creates before the tests run (in forked children) and removes after, so
 * a failed test (whose teardown does not run) leaves nothing behind. */
static char top[128];
static char dir[256];
static struct bl_store *store;
static struct bl_applier applier;
static uint64_t next_index;

static void setup(void)
{
    struct bl_store_opts o = {.map_size = 64 << 20, .no_sync = true};
    char err[BL_ERRMSG_SIZE];
    snprintf(dir, sizeof dir, "%s/t-XXXXXX", top);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    next_index = 1;
    ck_assert_int_eq(bl_store_open(dir, &o, &store, err), 0);
    bl_applier_init(&applier, store);
}

static void teardown(void)
{
    char cmd[300];
    bl_applier_close(&applier);
    bl_store_close(store);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- commands ---------------------------------------------------------------------------- */

static struct bl_slice sl(const char *s)
{
    struct bl_slice x = {(const uint8_t *)s, s != NULL ? strlen(s) : 0};
    return x;
}

static struct bl_cmd cmd_of(int type, const char *key)
{
    struct bl_cmd c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.request_id = sl("r");
    c.key = sl(key);
    c.cas = BL_CAS_NONE;
    return c;
}

/* Encode @c, decode it again and apply the decoded command as the next
 * Raft entry; returns what bl_apply() returned. The record stays valid
 * until the next apply. */
static int try_apply(const struct bl_cmd *c, struct bl_apply_result *r)
{
    struct bl_cmd d;
    char err[BL_ERRMSG_SIZE];
    void *buf;
    size_t len;
    int rv;

    ck_assert_int_eq(bl_cmd_encode(c, &buf, &len), 0);
    rv = bl_cmd_decode(buf, len, &d, err);
    ck_assert_msg(rv == 0, "decode: %s", err);
    rv = bl_apply(&applier, next_index, &d, r);
    free(buf);
    if (rv == 0) {
        next_index++;
    }
    return rv;
}

static struct bl_apply_result apply(const struct bl_cmd *c)
{
    struct bl_apply_result r;
    int rv = try_apply(c, &r);
    ck_assert_msg(rv == 0, "bl_apply returned %d: %s", rv, applier.errmsg);
    return r;
}

static struct bl_apply_result put_l(const char *key, const char *value, uint64_t lease)
{
    struct bl_cmd c = cmd_of(BL_CMD_PUT, key);
    c.value = sl(value);
    c.lease = lease;
    return apply(&c);
}

static struct bl_apply_result put(const char *key, const char *value)
{
    return put_l(key, value, 0);
}

/* PUT ?ttl=: grant lease @lease (owned by the key) and attach it. */
static struct bl_apply_result put_own(const char *key, const char *value, uint64_t lease,
                                      uint64_t ttl, int64_t cas)
{
    struct bl_cmd c = cmd_of(BL_CMD_PUT, key);
    c.value = sl(value);
    c.lease = lease;
    c.ttl = ttl;
    c.cas = cas;
    c.flags = BL_CMD_F_OWN_LEASE;
    return apply(&c);
}

static struct bl_apply_result del(const char *key)
{
    struct bl_cmd c = cmd_of(BL_CMD_DELETE, key);
    return apply(&c);
}

static struct bl_apply_result del_prefix(const char *prefix)
{
    struct bl_cmd c = cmd_of(BL_CMD_DELETE_RANGE, prefix);
    return apply(&c);
}

static struct bl_apply_result lease_grant(uint64_t id, uint64_t ttl)
{
    struct bl_cmd c = cmd_of(BL_CMD_LEASE_GRANT, NULL);
    c.lease = id;
    c.ttl = ttl;
    return apply(&c);
}

static struct bl_apply_result lease_revoke(uint64_t id)
{
    struct bl_cmd c = cmd_of(BL_CMD_LEASE_REVOKE, NULL);
    c.lease = id;
    return apply(&c);
}

/* A txn under construction. */
struct txn {
    struct bl_compare cmp[8];
    uint32_t ncmp;
    struct bl_txn_op ok[16];
    uint32_t nok;
    struct bl_txn_op ko[16];
    uint32_t nko;
};

static void cmp_add(struct txn *t, const char *key, int target, int op, const char *value,
                    int64_t number)
{
    struct bl_compare *c = &t->cmp[t->ncmp++];
    ck_assert_uint_le(t->ncmp, 8);
    memset(c, 0, sizeof *c);
    c->key = sl(key);
    c->target = target;
    c->op = op;
    c->value = sl(value);
    c->number = number;
}

static struct bl_txn_op op_put(const char *key, const char *value, uint64_t lease)
{
    struct bl_txn_op o;
    memset(&o, 0, sizeof o);
    o.type = BL_OP_PUT;
    o.key = sl(key);
    o.value = sl(value);
    o.lease = lease;
    return o;
}

static struct bl_txn_op op_del(const char *key, bool prefix)
{
    struct bl_txn_op o;
    memset(&o, 0, sizeof o);
    o.type = BL_OP_DELETE;
    o.key = sl(key);
    o.flags = prefix ? BL_OP_F_PREFIX : 0;
    return o;
}

static struct bl_txn_op op_get(const char *key, uint64_t flags, uint64_t limit)
{
    struct bl_txn_op o;
    memset(&o, 0, sizeof o);
    o.type = BL_OP_GET;
    o.key = sl(key);
    o.flags = flags;
    o.limit = limit;
    return o;
}

#define OK(t, o)                                                                                   \
    do {                                                                                           \
        ck_assert_uint_lt((t)->nok, 16);                                                           \
        (t)->ok[(t)->nok++] = (o);                                                                 \
    } while (0)
#define KO(t, o)                                                                                   \
    do {                                                                                           \
        ck_assert_uint_lt((t)->nko, 16);                                                           \
        (t)->ko[(t)->nko++] = (o);                                                                 \
    } while (0)

static int txn_try_id(const struct txn *t, const char *reqid, bool record,
                      struct bl_apply_result *r)
{
    struct bl_txn_req req;
    struct bl_cmd c = cmd_of(BL_CMD_TXN, NULL);
    memset(&req, 0, sizeof req);
    req.compares = (struct bl_compare *)t->cmp;
    req.n_compares = t->ncmp;
    req.success = (struct bl_txn_op *)t->ok;
    req.n_success = t->nok;
    req.failure = (struct bl_txn_op *)t->ko;
    req.n_failure = t->nko;
    c.request_id = sl(reqid);
    c.txn = &req;
    c.flags = record ? BL_CMD_F_RECORD : 0;
    return try_apply(&c, r);
}

static struct bl_apply_result txn_apply_id(const struct txn *t, const char *reqid, bool record)
{
    struct bl_apply_result r;
    int rv = txn_try_id(t, reqid, record, &r);
    ck_assert_msg(rv == 0, "bl_apply returned %d: %s", rv, applier.errmsg);
    return r;
}

static struct bl_apply_result txn_apply(const struct txn *t)
{
    return txn_apply_id(t, "r", false);
}

/* ---- reading results and the store ------------------------------------------------------- */

/* A decoded txn record; the ops' kvs point into the applier's buffer. */
struct txn_out {
    int code;
    uint64_t revision;
    bool succeeded;
    uint32_t n;
    struct bl_op_result ops[16];
};

static struct txn_out txn_result(const struct bl_apply_result *r)
{
    struct bl_result_view v;
    struct bl_op_result extra;
    struct txn_out o;

    memset(&o, 0, sizeof o);
    ck_assert_ptr_nonnull(r->record);
    ck_assert_int_eq(bl_result_decode(r->record, r->record_len, &v), 0);
    ck_assert(v.is_txn);
    ck_assert_int_eq(v.code, r->code);
    ck_assert_uint_eq(v.revision, r->revision);
    ck_assert_int_eq(bl_result_txn(&v), 0);
    o.code = v.code;
    o.revision = v.revision;
    o.succeeded = v.succeeded;
    o.n = v.n_results;
    ck_assert_uint_le(o.n, 16);
    for (uint32_t i = 0; i < o.n; i++) {
        ck_assert_int_eq(bl_result_next_op(&v, &o.ops[i]), 1);
    }
    ck_assert_int_eq(bl_result_next_op(&v, &extra), 0);
    return o;
}

static void assert_bytes(const uint8_t *p, size_t len, const char *want, const char *what)
{
    size_t n = strlen(want);
    ck_assert_msg(len == n && (n == 0 || memcmp(p, want, n) == 0), "%s: got \"%.*s\", want \"%s\"",
                  what, (int)len, p != NULL ? (const char *)p : "", want);
}

/* The @idx-th kv of get result @op (the op itself is left as it was). */
static struct bl_kv op_kv(const struct bl_op_result *op, uint32_t idx)
{
    struct bl_op_result o = *op;
    struct bl_kv kv;
    ck_assert_uint_lt(idx, op->n_kvs);
    for (uint32_t i = 0; i <= idx; i++) {
        ck_assert_int_eq(bl_op_result_next_kv(&o, &kv), 1);
    }
    return kv;
}

static void assert_kv(const struct bl_op_result *op, uint32_t idx, const char *key,
                      const char *value)
{
    struct bl_kv kv = op_kv(op, idx);
    assert_bytes(kv.key, kv.key_len, key, "key");
    assert_bytes(kv.value, kv.value_len, value, "value");
}

/* A stored key, copied out of the read transaction. */
struct kvc {
    bool found;
    char value[64];
    uint64_t create, mod, version, lease;
};

static struct kvc get(const char *key)
{
    struct kvc c;
    struct bl_txn *t;
    struct bl_kv kv;
    int rv;

    memset(&c, 0, sizeof c);
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    rv = bl_store_kv_get(t, key, strlen(key), &kv);
    ck_assert(rv == 0 || rv == BL_ENOTFOUND);
    if (rv == 0) {
        ck_assert_uint_lt(kv.value_len, sizeof c.value);
        c.found = true;
        memcpy(c.value, kv.value, kv.value_len);
        c.create = kv.create_revision;
        c.mod = kv.mod_revision;
        c.version = kv.version;
        c.lease = kv.lease;
    }
    bl_store_abort(t);
    return c;
}

static uint64_t revision(void)
{
    struct bl_txn *t;
    uint64_t v;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    ck_assert_int_eq(bl_store_meta_get(t, "revision", &v), 0);
    bl_store_abort(t);
    return v;
}

/* Lease @id: BL_OK with *@l filled, or BL_ENOTFOUND. */
static int lease_get(uint64_t id, struct bl_lease *l)
{
    struct bl_txn *t;
    struct bl_lease dummy;
    int rv;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    rv = bl_store_lease_get(t, id, l != NULL ? l : &dummy);
    bl_store_abort(t);
    ck_assert(rv == 0 || rv == BL_ENOTFOUND);
    return rv;
}

/* Keys attached to a lease, joined with ',' ("" for none). */
struct keylist {
    char s[256];
};

static int keylist_cb(void *arg, const uint8_t *key, size_t len)
{
    struct keylist *k = arg;
    size_t at = strlen(k->s);
    ck_assert_uint_lt(at + len + 2, sizeof k->s);
    if (at > 0) {
        k->s[at++] = ',';
    }
    memcpy(k->s + at, key, len);
    k->s[at + len] = '\0';
    return 0;
}

static struct keylist lease_keys(uint64_t id)
{
    struct keylist k = {{0}};
    struct bl_txn *t;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    ck_assert_int_eq(bl_store_lease_keys(t, id, keylist_cb, &k), 0);
    bl_store_abort(t);
    return k;
}

/* The events of revision @rev: returns their number (or -1 when the
 * revision has no history record) and fills @ev. */
struct ev {
    int type;
    char key[32];
    char value[32];
    uint64_t create, mod, version, lease;
};

static int history(uint64_t rev, struct ev *ev, int max)
{
    struct bl_txn *t;
    struct bl_events e;
    struct bl_kv kv;
    const void *rec;
    size_t len;
    int rv, n = 0, type;

    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    rv = bl_store_history_get(t, rev, &rec, &len);
    if (rv == BL_ENOTFOUND) {
        bl_store_abort(t);
        return -1;
    }
    ck_assert_int_eq(rv, 0);
    ck_assert_int_eq(bl_events_init(&e, rec, len), 0);
    while ((rv = bl_events_next(&e, &type, &kv)) == 1) {
        ck_assert_int_lt(n, max);
        ck_assert_uint_lt(kv.key_len, sizeof ev[n].key);
        ck_assert_uint_lt(kv.value_len, sizeof ev[n].value);
        memset(&ev[n], 0, sizeof ev[n]);
        ev[n].type = type;
        memcpy(ev[n].key, kv.key, kv.key_len);
        memcpy(ev[n].value, kv.value, kv.value_len);
        ev[n].create = kv.create_revision;
        ev[n].mod = kv.mod_revision;
        ev[n].version = kv.version;
        ev[n].lease = kv.lease;
        n++;
    }
    ck_assert_int_eq(rv, 0);
    bl_store_abort(t);
    return n;
}

/* The lease tables and the kv table agree: a key with lease L has L in
 * the lease table and is listed under L; every key listed under a lease
 * exists with that lease, and the lease exists. Returns the number of
 * violations, each described in @why (the first one). */
struct consistency {
    struct bl_txn *t;
    int bad;
    char why[256];
    uint64_t lease; /* lease whose keys are being walked */
    bool found;     /* the key looked for was listed */
    const uint8_t *want;
    size_t want_len;
};

static void violation(struct consistency *c, const char *what, const uint8_t *key, size_t len,
                      uint64_t lease)
{
    if (c->bad++ == 0) {
        snprintf(c->why, sizeof c->why, "key %.*s, lease %" PRIu64 ": %s", (int)len,
                 (const char *)key, lease, what);
    }
}

static int find_key_cb(void *arg, const uint8_t *key, size_t len)
{
    struct consistency *c = arg;
    if (len == c->want_len && memcmp(key, c->want, len) == 0) {
        c->found = true;
        return 1;
    }
    return 0;
}

static int kv_lease_cb(void *arg, const struct bl_kv *kv)
{
    struct consistency *c = arg;
    struct bl_lease l;
    if (kv->lease == 0) {
        return 0;
    }
    if (bl_store_lease_get(c->t, kv->lease, &l) != 0) {
        violation(c, "the key names a lease that does not exist", kv->key, kv->key_len, kv->lease);
    }
    c->found = false;
    c->want = kv->key;
    c->want_len = kv->key_len;
    ck_assert_int_eq(bl_store_lease_keys(c->t, kv->lease, find_key_cb, c), 0);
    if (!c->found) {
        violation(c, "the key is not listed under its lease", kv->key, kv->key_len, kv->lease);
    }
    return 0;
}

static int listed_key_cb(void *arg, const uint8_t *key, size_t len)
{
    struct consistency *c = arg;
    struct bl_kv kv;
    if (bl_store_kv_get(c->t, key, len, &kv) != 0 || kv.lease != c->lease) {
        violation(c, "the key is listed under the lease but does not carry it", key, len, c->lease);
    }
    return 0;
}

static int lease_walk_cb(void *arg, uint64_t id, const struct bl_lease *l)
{
    struct consistency *c = arg;
    (void)l;
    c->lease = id;
    ck_assert_int_eq(bl_store_lease_keys(c->t, id, listed_key_cb, c), 0);
    return 0;
}

static struct consistency lease_consistency(void)
{
    struct consistency c;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(bl_store_begin(store, false, &c.t), 0);
    ck_assert_int_eq(bl_store_kv_scan(c.t, "", 0, NULL, 0, kv_lease_cb, &c), 0);
    ck_assert_int_eq(bl_store_lease_scan(c.t, lease_walk_cb, &c), 0);
    bl_store_abort(c.t);
    c.t = NULL;
    return c;
}

#define ASSERT_LEASES_CONSISTENT()                                                                 \
    do {                                                                                           \
        struct consistency cons_ = lease_consistency();                                            \
        ck_assert_msg(cons_.bad == 0, "%d lease inconsistencies, first: %s", cons_.bad,            \
                      cons_.why);                                                                  \
    } while (0)

/* ---- 1. compare semantics ---------------------------------------------------------------- */

static const char *const target_names[] = {"?", "value", "version", "create", "mod", "lease"};
static const char *const op_names[] = {"?", "==", "!=", "<", ">"};

/* Run a txn with the one compare given; its success branch is one put
 * (of a key no compare looks at), its failure branch two gets, so the
 * record and the revision show which one ran. (Branches without a put
 * are test_txn_holds_without_put's.) */
static void check_compare(const char *key, int target, int op, const char *value, int64_t number,
                          bool holds)
{
    struct txn t;
    struct bl_apply_result r;
    struct txn_out o;
    uint64_t rev = revision();

    memset(&t, 0, sizeof t);
    cmp_add(&t, key, target, op, value, number);
    OK(&t, op_put("_branch", "success", 0));
    KO(&t, op_get(key, 0, 0));
    KO(&t, op_get(key, 0, 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    if (target == BL_CMP_VALUE) {
        ck_assert_msg(o.succeeded == holds && o.n == (holds ? 1u : 2u),
                      "compare %s value %s \"%s\": succeeded=%d (%u results), want %d", key,
                      op_names[op], value, o.succeeded, o.n, holds);
    } else {
        ck_assert_msg(o.succeeded == holds && o.n == (holds ? 1u : 2u),
                      "compare %s %s %s %" PRId64 ": succeeded=%d (%u results), want %d", key,
                      target_names[target], op_names[op], number, o.succeeded, o.n, holds);
    }
    ck_assert_int_eq(o.ops[0].type, holds ? BL_OP_PUT : BL_OP_GET);
    ck_assert(r.changed == holds);
    ck_assert_uint_eq(r.revision, holds ? rev + 1 : rev);
    ck_assert_uint_eq(revision(), r.revision);
}

/* k: value "b", create 2, mod 6, version 3, lease 7; v_ab = "ab", v_empty
 * = "" (no lease). */
static void compare_fixture(void)
{
    struct kvc k;
    ck_assert_int_eq(lease_grant(7, 60).code, BL_OK);
    put("v_ab", "ab");  /* 1 */
    put_l("k", "b", 7); /* 2 */
    put("v_empty", ""); /* 3 */
    put("v_ab", "ab");  /* 4 */
    put_l("k", "b", 7); /* 5 */
    put_l("k", "b", 7); /* 6 */
    k = get("k");
    ck_assert(k.found);
    ck_assert_uint_eq(k.create, 2);
    ck_assert_uint_eq(k.mod, 6);
    ck_assert_uint_eq(k.version, 3);
    ck_assert_uint_eq(k.lease, 7);
    ck_assert_uint_eq(revision(), 6);
}

/* want - have, and whether "have OP want" holds. */
static const struct {
    int delta;
    int op;
    bool holds;
} num_cases[] = {{0, BL_CMP_EQ, true},   {0, BL_CMP_NE, false},  {0, BL_CMP_LT, false},
                 {0, BL_CMP_GT, false},  {-1, BL_CMP_EQ, false}, {-1, BL_CMP_NE, true},
                 {-1, BL_CMP_LT, false}, {-1, BL_CMP_GT, true},  {1, BL_CMP_EQ, false},
                 {1, BL_CMP_NE, true},   {1, BL_CMP_LT, true},   {1, BL_CMP_GT, false},
                 {-5, BL_CMP_GT, true},  {100, BL_CMP_LT, true}, {100, BL_CMP_GT, false}};

START_TEST(test_compare_numbers)
{
    /* target, its value on k */
    static const struct {
        int target;
        int64_t have;
    } targets[] = {{BL_CMP_VERSION, 3}, {BL_CMP_CREATE, 2}, {BL_CMP_MOD, 6}, {BL_CMP_LEASE, 7}};

    compare_fixture();
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        for (size_t j = 0; j < sizeof num_cases / sizeof num_cases[0]; j++) {
            /* an existing key */
            check_compare("k", targets[i].target, num_cases[j].op, NULL,
                          targets[i].have + num_cases[j].delta, num_cases[j].holds);
            /* an absent key reads 0 for every number (docs, etcd); so
             * "version < 1" or "mod == 0" hold, "version > -1" too */
            check_compare("absent", targets[i].target, num_cases[j].op, NULL, num_cases[j].delta,
                          num_cases[j].holds);
        }
    }
    /* a key without a lease has lease 0 */
    check_compare("v_ab", BL_CMP_LEASE, BL_CMP_EQ, NULL, 0, true);
    check_compare("v_ab", BL_CMP_LEASE, BL_CMP_NE, NULL, 0, false);
    ck_assert_uint_eq(get("k").mod, 6); /* the compares did not touch k */
}
END_TEST

START_TEST(test_compare_values)
{
    static const struct {
        const char *key;
        const char *value;
        int op;
        bool holds;
    } cases[] = {
        /* k = "b" */
        {"k", "b", BL_CMP_EQ, true},
        {"k", "b", BL_CMP_NE, false},
        {"k", "b", BL_CMP_LT, false},
        {"k", "b", BL_CMP_GT, false},
        {"k", "a", BL_CMP_EQ, false},
        {"k", "a", BL_CMP_NE, true},
        {"k", "a", BL_CMP_LT, false},
        {"k", "a", BL_CMP_GT, true}, /* "b" > "a" */
        {"k", "c", BL_CMP_LT, true}, /* "b" < "c" */
        {"k", "c", BL_CMP_GT, false},
        {"k", "ba", BL_CMP_LT, true}, /* a shorter prefix is less */
        {"k", "ba", BL_CMP_GT, false},
        {"k", "ba", BL_CMP_EQ, false},
        {"k", "ba", BL_CMP_NE, true},
        {"k", "", BL_CMP_GT, true}, /* anything > empty */
        {"k", "", BL_CMP_EQ, false},
        {"k", "", BL_CMP_LT, false},
        {"k", "B", BL_CMP_GT, true},    /* bytewise: 'b' (0x62) > 'B' (0x42) */
        {"k", "\xff", BL_CMP_LT, true}, /* bytes are unsigned */
        {"k", "\xff", BL_CMP_GT, false},
        /* v_ab = "ab" */
        {"v_ab", "a", BL_CMP_GT, true}, /* "ab" > "a" */
        {"v_ab", "a", BL_CMP_LT, false},
        {"v_ab", "ab", BL_CMP_EQ, true},
        {"v_ab", "abc", BL_CMP_LT, true},
        {"v_ab", "b", BL_CMP_LT, true},
        {"v_ab", "aa", BL_CMP_GT, true},
        /* v_empty = "" */
        {"v_empty", "", BL_CMP_EQ, true},
        {"v_empty", "", BL_CMP_NE, false},
        {"v_empty", "", BL_CMP_LT, false},
        {"v_empty", "", BL_CMP_GT, false},
        {"v_empty", "a", BL_CMP_LT, true},
        {"v_empty", "a", BL_CMP_GT, false},
        {"v_empty", "a", BL_CMP_NE, true},
        /* an absent key: a value compare is false whatever the op (docs,
         * etcd: there is no value to compare), even != and even "" */
        {"absent", "", BL_CMP_EQ, false},
        {"absent", "", BL_CMP_NE, false},
        {"absent", "", BL_CMP_LT, false},
        {"absent", "", BL_CMP_GT, false},
        {"absent", "x", BL_CMP_EQ, false},
        {"absent", "x", BL_CMP_NE, false},
        {"absent", "x", BL_CMP_LT, false},
        {"absent", "x", BL_CMP_GT, false},
    };

    compare_fixture();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_compare(cases[i].key, BL_CMP_VALUE, cases[i].op, cases[i].value, 0, cases[i].holds);
    }
    ck_assert_uint_eq(get("k").mod, 6);
}
END_TEST

/* ---- 2. compares are ANDed --------------------------------------------------------------- */

static bool run_compares(struct txn *t)
{
    struct bl_apply_result r;
    struct txn_out o;
    OK(t, op_put("_branch", "success", 0)); /* see check_compare */
    r = txn_apply(t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(o.n, o.succeeded ? 1 : 0);
    return o.succeeded;
}

START_TEST(test_compares_are_anded)
{
    struct txn t;

    compare_fixture();
    /* no compare at all: success runs */
    memset(&t, 0, sizeof t);
    ck_assert(run_compares(&t));

    /* all hold */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VALUE, BL_CMP_EQ, "b", 0);
    cmp_add(&t, "k", BL_CMP_VERSION, BL_CMP_EQ, NULL, 3);
    cmp_add(&t, "v_ab", BL_CMP_MOD, BL_CMP_GT, NULL, 1);
    cmp_add(&t, "absent", BL_CMP_VERSION, BL_CMP_EQ, NULL, 0);
    ck_assert(run_compares(&t));

    /* the last one fails */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VALUE, BL_CMP_EQ, "b", 0);
    cmp_add(&t, "k", BL_CMP_VERSION, BL_CMP_EQ, NULL, 3);
    cmp_add(&t, "v_ab", BL_CMP_MOD, BL_CMP_GT, NULL, 1);
    cmp_add(&t, "absent", BL_CMP_VERSION, BL_CMP_EQ, NULL, 1);
    ck_assert(!run_compares(&t));

    /* the first one fails, the others hold */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VALUE, BL_CMP_EQ, "x", 0);
    cmp_add(&t, "k", BL_CMP_VERSION, BL_CMP_EQ, NULL, 3);
    ck_assert(!run_compares(&t));

    /* one in the middle fails */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_LEASE, BL_CMP_EQ, NULL, 7);
    cmp_add(&t, "k", BL_CMP_CREATE, BL_CMP_NE, NULL, 2);
    cmp_add(&t, "k", BL_CMP_MOD, BL_CMP_EQ, NULL, 6);
    ck_assert(!run_compares(&t));

    /* a value compare on an absent key fails the whole set */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_MOD, BL_CMP_EQ, NULL, 6);
    cmp_add(&t, "absent", BL_CMP_VALUE, BL_CMP_NE, "x", 0);
    ck_assert(!run_compares(&t));
    ck_assert_uint_eq(get("k").mod, 6);
}
END_TEST

/* Compares that hold with a success branch of only gets and/or deletes (or
 * no op): a regression test. run_txn used to keep eval_compare's 1
 * ("holds") as its status, run no op and return 1, which bl_apply took for
 * a storage error: the entry was not applied and the member stopped. */
START_TEST(test_txn_holds_without_put)
{
    static const char *const names[] = {"get", "no op", "delete", "prefix delete"};
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    int rv[4], bad = 0;
    char msg[512] = "";

    put("k", "v");   /* 1 */
    put("d/1", "v"); /* 2 */

    /* control: the same kind of branch without a compare works */
    memset(&t, 0, sizeof t);
    OK(&t, op_get("k", 0, 0));
    r = txn_apply(&t);
    ck_assert_int_eq(r.code, BL_OK);

    /* 0: compare holds, success = [get] */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VERSION, BL_CMP_EQ, NULL, 1);
    OK(&t, op_get("k", 0, 0));
    rv[0] = txn_try_id(&t, "r", false, &r);
    if (rv[0] == 0) {
        o = txn_result(&r);
        ck_assert(o.succeeded);
        ck_assert_uint_eq(o.n, 1);
        assert_kv(&o.ops[0], 0, "k", "v");
        ck_assert(!r.changed);
    }

    /* 1: compare holds, success = [] */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VALUE, BL_CMP_EQ, "v", 0);
    KO(&t, op_put("k", "failure branch", 0));
    rv[1] = txn_try_id(&t, "r", false, &r);
    if (rv[1] == 0) {
        o = txn_result(&r);
        ck_assert(o.succeeded);
        ck_assert_uint_eq(o.n, 0);
        ck_assert(!r.changed);
    }

    /* 2: compare-and-delete */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "k", BL_CMP_VALUE, BL_CMP_EQ, "v", 0);
    OK(&t, op_del("k", false));
    rv[2] = txn_try_id(&t, "r", false, &r);
    if (rv[2] == 0) {
        o = txn_result(&r);
        ck_assert(o.succeeded);
        ck_assert_uint_eq(o.ops[0].deleted, 1);
        ck_assert_uint_eq(r.revision, 3);
        ck_assert(!get("k").found);
    } else {
        ck_assert(get("k").found); /* at least nothing half-done */
        ck_assert_uint_eq(revision(), 2);
    }

    /* 3: compare-and-delete-range */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "d/1", BL_CMP_MOD, BL_CMP_EQ, NULL, 2);
    OK(&t, op_del("d/", true));
    rv[3] = txn_try_id(&t, "r", false, &r);
    if (rv[3] == 0) {
        o = txn_result(&r);
        ck_assert(o.succeeded);
        ck_assert_uint_eq(o.ops[0].deleted, 1);
        ck_assert(!get("d/1").found);
    }

    for (int i = 0; i < 4; i++) {
        if (rv[i] != 0) {
            size_t at = strlen(msg);
            snprintf(msg + at, sizeof msg - at, "%s[%s: bl_apply returned %d]", bad++ ? ", " : "",
                     names[i], rv[i]);
        }
    }
    ck_assert_msg(bad == 0, "compares hold, success branch without a put: %s (last: %s)", msg,
                  applier.errmsg);
}
END_TEST

/* ---- 3. atomicity, one revision, history ------------------------------------------------- */

START_TEST(test_txn_one_revision)
{
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    struct ev ev[16];
    struct kvc k;
    int n;

    put("a", "1");   /* 1 */
    put("b", "1");   /* 2 */
    put("c", "1");   /* 3 */
    put("d/1", "1"); /* 4 */
    put("d/2", "1"); /* 5 */
    put("e", "1");   /* 6 */

    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VERSION, BL_CMP_EQ, NULL, 1);
    OK(&t, op_put("a", "2", 0));
    OK(&t, op_put("n", "new", 0));
    OK(&t, op_del("c", false));
    OK(&t, op_del("d/", true));
    OK(&t, op_del("absent", false));
    OK(&t, op_put("b", "2", 0));
    KO(&t, op_put("z", "failure branch", 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert(o.succeeded);
    ck_assert(r.changed);
    ck_assert_uint_eq(r.revision, 7); /* one revision for the whole txn */
    ck_assert_uint_eq(revision(), 7);
    ck_assert_uint_eq(o.n, 6);
    ck_assert_int_eq(o.ops[0].type, BL_OP_PUT);
    ck_assert_int_eq(o.ops[1].type, BL_OP_PUT);
    ck_assert_int_eq(o.ops[2].type, BL_OP_DELETE);
    ck_assert_uint_eq(o.ops[2].deleted, 1);
    ck_assert_int_eq(o.ops[3].type, BL_OP_DELETE);
    ck_assert_uint_eq(o.ops[3].deleted, 2);
    ck_assert_int_eq(o.ops[4].type, BL_OP_DELETE);
    ck_assert_uint_eq(o.ops[4].deleted, 0);
    ck_assert_int_eq(o.ops[5].type, BL_OP_PUT);

    /* every key written carries the txn's revision; versions rose once */
    k = get("a");
    ck_assert_str_eq(k.value, "2");
    ck_assert_uint_eq(k.create, 1);
    ck_assert_uint_eq(k.mod, 7);
    ck_assert_uint_eq(k.version, 2);
    k = get("b");
    ck_assert_str_eq(k.value, "2");
    ck_assert_uint_eq(k.create, 2);
    ck_assert_uint_eq(k.mod, 7);
    ck_assert_uint_eq(k.version, 2);
    k = get("n");
    ck_assert_str_eq(k.value, "new");
    ck_assert_uint_eq(k.create, 7);
    ck_assert_uint_eq(k.mod, 7);
    ck_assert_uint_eq(k.version, 1);
    ck_assert(!get("c").found);
    ck_assert(!get("d/1").found);
    ck_assert(!get("d/2").found);
    ck_assert(!get("z").found); /* the failure branch did not run */
    k = get("e");
    ck_assert_uint_eq(k.mod, 6);

    /* the history record of revision 7: the events in op order */
    n = history(7, ev, 16);
    ck_assert_int_eq(n, 6);
    ck_assert_int_eq(ev[0].type, BL_EVENT_PUT);
    ck_assert_str_eq(ev[0].key, "a");
    ck_assert_str_eq(ev[0].value, "2");
    ck_assert_uint_eq(ev[0].mod, 7);
    ck_assert_uint_eq(ev[0].create, 1);
    ck_assert_uint_eq(ev[0].version, 2);
    ck_assert_int_eq(ev[1].type, BL_EVENT_PUT);
    ck_assert_str_eq(ev[1].key, "n");
    ck_assert_str_eq(ev[1].value, "new");
    ck_assert_uint_eq(ev[1].create, 7);
    ck_assert_uint_eq(ev[1].version, 1);
    ck_assert_int_eq(ev[2].type, BL_EVENT_DELETE);
    ck_assert_str_eq(ev[2].key, "c");
    ck_assert_uint_eq(ev[2].mod, 7);
    ck_assert_str_eq(ev[2].value, "");
    ck_assert_int_eq(ev[3].type, BL_EVENT_DELETE);
    ck_assert_str_eq(ev[3].key, "d/1");
    ck_assert_uint_eq(ev[3].mod, 7);
    ck_assert_int_eq(ev[4].type, BL_EVENT_DELETE);
    ck_assert_str_eq(ev[4].key, "d/2");
    ck_assert_uint_eq(ev[4].mod, 7);
    ck_assert_int_eq(ev[5].type, BL_EVENT_PUT);
    ck_assert_str_eq(ev[5].key, "b");
    ck_assert_uint_eq(ev[5].mod, 7);
    ck_assert_uint_eq(ev[5].version, 2);
    /* the revisions before keep their own records */
    n = history(6, ev, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(ev[0].key, "e");

    /* The failure branch writes as well: one more revision. */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VERSION, BL_CMP_EQ, NULL, 1); /* now 2 */
    OK(&t, op_put("y", "success branch", 0));
    KO(&t, op_put("z", "1", 0));
    KO(&t, op_put("a", "3", 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert(!o.succeeded);
    ck_assert_uint_eq(o.n, 2);
    ck_assert_uint_eq(r.revision, 8);
    ck_assert(!get("y").found);
    ck_assert_uint_eq(get("z").mod, 8);
    ck_assert_uint_eq(get("a").mod, 8);
    ck_assert_uint_eq(get("a").version, 3);
    ck_assert_int_eq(history(8, ev, 16), 2);
}
END_TEST

START_TEST(test_txn_without_change_keeps_revision)
{
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    struct ev ev[4];

    put("a", "1"); /* 1 */
    put("b", "1"); /* 2 */

    /* only gets */
    memset(&t, 0, sizeof t);
    OK(&t, op_get("a", 0, 0));
    OK(&t, op_get("", BL_OP_F_PREFIX, 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert(o.succeeded);
    ck_assert_uint_eq(o.n, 2);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 2);

    /* compares fail, the failure branch only reads */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "2", 0);
    OK(&t, op_put("a", "2", 0));
    KO(&t, op_get("a", 0, 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK); /* a failed txn compare is no error */
    ck_assert(!o.succeeded);
    ck_assert_uint_eq(o.n, 1);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 2);

    /* compares fail and there is no failure branch */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "2", 0);
    OK(&t, op_put("a", "2", 0));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert(!o.succeeded);
    ck_assert_uint_eq(o.n, 0);
    ck_assert(!r.changed);

    /* deletes of nothing (a key and a prefix) */
    memset(&t, 0, sizeof t);
    OK(&t, op_del("absent", false));
    OK(&t, op_del("nothing/", true));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert(o.succeeded);
    ck_assert_uint_eq(o.ops[0].deleted, 0);
    ck_assert_uint_eq(o.ops[1].deleted, 0);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 2);

    /* the empty txn */
    memset(&t, 0, sizeof t);
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert(o.succeeded);
    ck_assert_uint_eq(o.n, 0);
    ck_assert(!r.changed);

    ck_assert_uint_eq(revision(), 2);
    ck_assert_int_eq(history(3, ev, 4), -1); /* no history record either */
    ck_assert_str_eq(get("a").value, "1");
    ck_assert_uint_eq(get("a").version, 1);
}
END_TEST

/* ---- 4. gets inside a txn ---------------------------------------------------------------- */

START_TEST(test_txn_gets)
{
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    struct bl_kv kv;

    put("p/1", "x"); /* 1 */
    put("p/2", "y"); /* 2 */
    put("p/3", "z"); /* 3 */
    put("q", "w");   /* 4 */
    put("o", "v");   /* 5 */

    memset(&t, 0, sizeof t);
    OK(&t, op_get("p/", BL_OP_F_PREFIX, 0));                /* 0: before the writes */
    OK(&t, op_put("p/0", "new", 0));                        /* 1 */
    OK(&t, op_put("p/2", "y2", 0));                         /* 2 */
    OK(&t, op_get("p/", BL_OP_F_PREFIX, 2));                /* 3: a page of 2 */
    OK(&t, op_get("p/", BL_OP_F_PREFIX | BL_OP_F_KEYS, 0)); /* 4: keys only */
    OK(&t, op_get("p/2", 0, 0));                            /* 5: one key */
    OK(&t, op_get("missing", 0, 0));                        /* 6 */
    OK(&t, op_del("p/3", false));                           /* 7 */
    OK(&t, op_get("p/", BL_OP_F_PREFIX, 0));                /* 8: after the delete */
    OK(&t, op_get("", BL_OP_F_PREFIX, 3));                  /* 9: every key, page of 3 */
    OK(&t, op_get("p/", BL_OP_F_PREFIX, 4));                /* 10: limit == count */
    OK(&t, op_get("p", BL_OP_F_PREFIX | BL_OP_F_KEYS, 1));  /* 11 */
    OK(&t, op_get("none/", BL_OP_F_PREFIX, 0));             /* 12: an empty range */
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert(o.succeeded);
    ck_assert_uint_eq(r.revision, 6);
    ck_assert_uint_eq(o.n, 13);
    for (uint32_t i = 0; i < o.n; i++) {
        int want = i == 1 || i == 2 ? BL_OP_PUT : i == 7 ? BL_OP_DELETE : BL_OP_GET;
        ck_assert_int_eq(o.ops[i].type, want);
    }

    /* 0: the state before the txn */
    ck_assert_uint_eq(o.ops[0].count, 3);
    ck_assert(!o.ops[0].more);
    ck_assert_uint_eq(o.ops[0].n_kvs, 3);
    assert_kv(&o.ops[0], 0, "p/1", "x");
    assert_kv(&o.ops[0], 1, "p/2", "y");
    assert_kv(&o.ops[0], 2, "p/3", "z");
    kv = op_kv(&o.ops[0], 1);
    ck_assert_uint_eq(kv.mod_revision, 2);
    ck_assert_uint_eq(kv.version, 1);

    /* 3: gets see the puts made before them in the same txn (docs) */
    ck_assert_uint_eq(o.ops[3].count, 4); /* the whole range, not the page */
    ck_assert(o.ops[3].more);
    ck_assert_uint_eq(o.ops[3].n_kvs, 2);
    assert_kv(&o.ops[3], 0, "p/0", "new");
    assert_kv(&o.ops[3], 1, "p/1", "x");
    kv = op_kv(&o.ops[3], 0);
    ck_assert_uint_eq(kv.create_revision, 6);
    ck_assert_uint_eq(kv.mod_revision, 6);
    ck_assert_uint_eq(kv.version, 1);

    /* 4: keys only: every value empty, the metadata kept */
    ck_assert_uint_eq(o.ops[4].count, 4);
    ck_assert(!o.ops[4].more);
    ck_assert_uint_eq(o.ops[4].n_kvs, 4);
    assert_kv(&o.ops[4], 0, "p/0", "");
    assert_kv(&o.ops[4], 1, "p/1", "");
    assert_kv(&o.ops[4], 2, "p/2", "");
    assert_kv(&o.ops[4], 3, "p/3", "");
    kv = op_kv(&o.ops[4], 2);
    ck_assert_uint_eq(kv.create_revision, 2);
    ck_assert_uint_eq(kv.mod_revision, 6);
    ck_assert_uint_eq(kv.version, 2);

    /* 5: a single key, as just written */
    ck_assert_uint_eq(o.ops[5].count, 1);
    ck_assert(!o.ops[5].more);
    ck_assert_uint_eq(o.ops[5].n_kvs, 1);
    assert_kv(&o.ops[5], 0, "p/2", "y2");

    /* 6: an absent key is an empty result, not an error */
    ck_assert_uint_eq(o.ops[6].count, 0);
    ck_assert(!o.ops[6].more);
    ck_assert_uint_eq(o.ops[6].n_kvs, 0);

    /* 7, 8: the delete is seen too */
    ck_assert_uint_eq(o.ops[7].deleted, 1);
    ck_assert_uint_eq(o.ops[8].count, 3);
    ck_assert_uint_eq(o.ops[8].n_kvs, 3);
    assert_kv(&o.ops[8], 0, "p/0", "new");
    assert_kv(&o.ops[8], 1, "p/1", "x");
    assert_kv(&o.ops[8], 2, "p/2", "y2");

    /* 9: the empty prefix is every key, in key order */
    ck_assert_uint_eq(o.ops[9].count, 5); /* o, p/0, p/1, p/2, q */
    ck_assert(o.ops[9].more);
    ck_assert_uint_eq(o.ops[9].n_kvs, 3);
    assert_kv(&o.ops[9], 0, "o", "v");
    assert_kv(&o.ops[9], 1, "p/0", "new");
    assert_kv(&o.ops[9], 2, "p/1", "x");

    /* 10: limit equal to the count: no more */
    ck_assert_uint_eq(o.ops[10].count, 3);
    ck_assert(!o.ops[10].more);
    ck_assert_uint_eq(o.ops[10].n_kvs, 3);

    /* 11: prefix "p" without the slash, keys only, limit 1 */
    ck_assert_uint_eq(o.ops[11].count, 3);
    ck_assert(o.ops[11].more);
    ck_assert_uint_eq(o.ops[11].n_kvs, 1);
    assert_kv(&o.ops[11], 0, "p/0", "");

    /* 12 */
    ck_assert_uint_eq(o.ops[12].count, 0);
    ck_assert(!o.ops[12].more);
    ck_assert_uint_eq(o.ops[12].n_kvs, 0);

    /* The store after the txn agrees with what the gets saw. */
    ck_assert_str_eq(get("p/2").value, "y2");
    ck_assert(!get("p/3").found);
}
END_TEST

/* ---- 5. leases --------------------------------------------------------------------------- */

START_TEST(test_lease_grant)
{
    struct bl_apply_result r;
    struct bl_lease l;

    ck_assert_int_eq(lease_get(10, NULL), BL_ENOTFOUND);
    r = lease_grant(10, 30);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.lease_granted, 10);
    ck_assert_uint_eq(r.lease_ttl, 30);
    /* a grant is no KV write: the revision stays (etcd does the same) */
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 0);
    ck_assert_int_eq(lease_get(10, &l), 0);
    ck_assert_uint_eq(l.ttl, 30);
    ck_assert_uint_eq(l.flags, 0);
    ck_assert_str_eq(lease_keys(10).s, "");

    /* an id in use: bad request, nothing changes */
    put_l("k", "v", 10); /* 1 */
    r = lease_grant(10, 99);
    ck_assert_int_eq(r.code, BL_EBADREQ);
    ck_assert_uint_eq(r.lease_granted, 0);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 1);
    ck_assert_int_eq(lease_get(10, &l), 0);
    ck_assert_uint_eq(l.ttl, 30);
    ck_assert_uint_eq(l.flags, 0);
    ck_assert_str_eq(lease_keys(10).s, "k");
    ck_assert_uint_eq(get("k").lease, 10);

    /* another id is independent */
    ck_assert_int_eq(lease_grant(11, 5).code, BL_OK);
    ck_assert_int_eq(lease_get(11, &l), 0);
    ck_assert_uint_eq(l.ttl, 5);
    ck_assert_uint_eq(revision(), 1);
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

START_TEST(test_put_attaches_and_detaches)
{
    struct bl_apply_result r;
    struct kvc k;

    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);
    ck_assert_int_eq(lease_grant(11, 30).code, BL_OK);
    r = put_l("k", "v", 10); /* 1 */
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(get("k").lease, 10);
    ck_assert_str_eq(lease_keys(10).s, "k");
    put_l("k2", "v", 10); /* 2 */
    ck_assert_str_eq(lease_keys(10).s, "k,k2");
    ASSERT_LEASES_CONSISTENT();

    /* the same lease again: still listed once */
    put_l("k", "v2", 10); /* 3 */
    ck_assert_str_eq(lease_keys(10).s, "k,k2");

    /* a put without a lease detaches; the (shared) lease stays */
    r = put("k", "v3"); /* 4 */
    ck_assert_int_eq(r.code, BL_OK);
    k = get("k");
    ck_assert_uint_eq(k.lease, 0);
    ck_assert_uint_eq(k.version, 3);
    ck_assert_str_eq(lease_keys(10).s, "k2");
    ck_assert_int_eq(lease_get(10, NULL), 0);

    /* moving a key from one lease to another */
    put_l("k2", "v", 11); /* 5 */
    ck_assert_str_eq(lease_keys(10).s, "");
    ck_assert_str_eq(lease_keys(11).s, "k2");
    ck_assert_int_eq(lease_get(10, NULL), 0);
    ASSERT_LEASES_CONSISTENT();

    /* a lease that does not exist: not found, nothing changes */
    r = put_l("k2", "other", 99);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 5);
    k = get("k2");
    ck_assert_str_eq(k.value, "v");
    ck_assert_uint_eq(k.lease, 11);
    ck_assert_str_eq(lease_keys(11).s, "k2");
    ck_assert_str_eq(lease_keys(99).s, "");
    r = put_l("fresh", "x", 99);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!get("fresh").found);
    ck_assert_uint_eq(revision(), 5);

    /* txn puts attach and detach the same way */
    {
        struct txn t;
        memset(&t, 0, sizeof t);
        OK(&t, op_put("k", "t", 10));
        OK(&t, op_put("k2", "t", 0));
        r = txn_apply(&t);
        ck_assert_int_eq(r.code, BL_OK);
        ck_assert_uint_eq(r.revision, 6);
        ck_assert_str_eq(lease_keys(10).s, "k");
        ck_assert_str_eq(lease_keys(11).s, "");
        ck_assert_uint_eq(get("k").lease, 10);
        ck_assert_uint_eq(get("k2").lease, 0);
    }
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

START_TEST(test_txn_unknown_lease_fails_whole)
{
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    struct ev ev[4];

    put("a", "1"); /* 1 */
    put("b", "1"); /* 2 */
    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);

    /* the unknown lease comes last: the ops before it must not apply */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "1", 0);
    OK(&t, op_put("a", "2", 0));
    OK(&t, op_del("b", false));
    OK(&t, op_put("c", "x", 10));
    OK(&t, op_get("a", 0, 0));
    OK(&t, op_put("d", "y", 99));
    r = txn_apply(&t);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 2);
    o = txn_result(&r);
    ck_assert_int_eq(o.code, BL_ENOTFOUND);
    ck_assert_uint_eq(revision(), 2);
    ck_assert_str_eq(get("a").value, "1");
    ck_assert_uint_eq(get("a").version, 1);
    ck_assert(get("b").found);
    ck_assert(!get("c").found);
    ck_assert(!get("d").found);
    ck_assert_str_eq(lease_keys(10).s, "");
    ck_assert_str_eq(lease_keys(99).s, "");
    ck_assert_int_eq(lease_get(99, NULL), BL_ENOTFOUND);
    ck_assert_int_eq(history(3, ev, 4), -1);

    /* the same in the failure branch */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "no", 0);
    KO(&t, op_put("e", "1", 0));
    KO(&t, op_put("f", "1", 99));
    r = txn_apply(&t);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!get("e").found);
    ck_assert_uint_eq(revision(), 2);

    /* An unknown lease in the branch that does not run does not matter
     * (etcd checks the leases of the ops it runs; the docs speak of "a put
     * naming a lease that does not exist" without saying which branch). */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "no", 0);
    OK(&t, op_put("g", "1", 99));
    KO(&t, op_put("h", "1", 10));
    r = txn_apply(&t);
    o = txn_result(&r);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert(!o.succeeded);
    ck_assert_uint_eq(r.revision, 3);
    ck_assert(!get("g").found);
    ck_assert_uint_eq(get("h").lease, 10);
    ck_assert_str_eq(lease_keys(10).s, "h");
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

START_TEST(test_lease_revoke)
{
    struct bl_apply_result r;
    struct ev ev[8];
    int n;

    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);
    ck_assert_int_eq(lease_grant(11, 30).code, BL_OK);
    put_l("k2", "v", 10);  /* 1 */
    put_l("k1", "v", 10);  /* 2 */
    put("other", "x");     /* 3 */
    put_l("k3", "v", 10);  /* 4 */
    put_l("k4", "v", 11);  /* 5 */
    put_l("k5", "v", 10);  /* 6 */
    put("k5", "detached"); /* 7: no longer on lease 10 */
    ck_assert_str_eq(lease_keys(10).s, "k1,k2,k3");

    r = lease_revoke(10);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert(r.changed);
    ck_assert_uint_eq(r.revision, 8); /* all keys in one revision */
    ck_assert_uint_eq(r.deleted, 3);
    ck_assert_uint_eq(revision(), 8);
    ck_assert(!get("k1").found);
    ck_assert(!get("k2").found);
    ck_assert(!get("k3").found);
    ck_assert(get("other").found);
    ck_assert_uint_eq(get("k4").lease, 11);
    ck_assert_str_eq(get("k5").value, "detached");
    ck_assert_int_eq(lease_get(10, NULL), BL_ENOTFOUND);
    ck_assert_str_eq(lease_keys(10).s, "");
    ck_assert_int_eq(lease_get(11, NULL), 0);
    ck_assert_str_eq(lease_keys(11).s, "k4");

    /* one delete event per key */
    n = history(8, ev, 8);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < n; i++) {
        char want[4];
        snprintf(want, sizeof want, "k%d", i + 1);
        ck_assert_int_eq(ev[i].type, BL_EVENT_DELETE);
        ck_assert_str_eq(ev[i].key, want);
        ck_assert_uint_eq(ev[i].mod, 8);
    }

    /* revoking it again, or an unknown lease: not found, nothing changes */
    r = lease_revoke(10);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 8);
    r = lease_revoke(77);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!r.changed);
    ck_assert_uint_eq(revision(), 8);
    ck_assert_int_eq(lease_get(11, NULL), 0);
    ck_assert_int_eq(history(9, ev, 8), -1);

    /* a lease without keys: it goes, the revision stays (nothing deleted) */
    ck_assert_int_eq(lease_grant(12, 30).code, BL_OK);
    r = lease_revoke(12);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.deleted, 0);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.revision, 8);
    ck_assert_int_eq(lease_get(12, NULL), BL_ENOTFOUND);
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

START_TEST(test_own_lease)
{
    struct bl_apply_result r;
    struct bl_lease l;
    struct kvc k;
    struct ev ev[4];

    /* PUT ?ttl=: the lease is granted, owned by the key, and attached */
    r = put_own("k", "v", 50, 30, BL_CAS_NONE); /* 1 */
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.lease_granted, 50);
    ck_assert_uint_eq(r.lease_ttl, 30);
    ck_assert_uint_eq(r.revision, 1);
    ck_assert_int_eq(lease_get(50, &l), 0);
    ck_assert_uint_eq(l.ttl, 30);
    ck_assert_uint_eq(l.flags, BL_LEASE_F_OWN);
    k = get("k");
    ck_assert_uint_eq(k.lease, 50);
    ck_assert_str_eq(lease_keys(50).s, "k");
    ASSERT_LEASES_CONSISTENT();

    /* deleting the key deletes its lease */
    r = del("k"); /* 2 */
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert_int_eq(lease_get(50, NULL), BL_ENOTFOUND);
    ck_assert_str_eq(lease_keys(50).s, "");

    /* overwriting it without a lease deletes its lease */
    put_own("k", "v", 51, 30, BL_CAS_NONE); /* 3 */
    ck_assert_int_eq(lease_get(51, NULL), 0);
    put("k", "plain"); /* 4 */
    ck_assert_int_eq(lease_get(51, NULL), BL_ENOTFOUND);
    ck_assert_str_eq(lease_keys(51).s, "");
    ck_assert_uint_eq(get("k").lease, 0);

    /* overwriting it with a new ?ttl= replaces the lease */
    put_own("k", "v", 52, 30, BL_CAS_NONE);     /* 5 */
    r = put_own("k", "v", 53, 60, BL_CAS_NONE); /* 6 */
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_int_eq(lease_get(52, NULL), BL_ENOTFOUND);
    ck_assert_int_eq(lease_get(53, &l), 0);
    ck_assert_uint_eq(l.ttl, 60);
    ck_assert_uint_eq(get("k").lease, 53);
    ck_assert_str_eq(lease_keys(53).s, "k");

    /* overwriting it with a shared lease deletes the own one */
    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);
    put_l("k", "v", 10); /* 7 */
    ck_assert_int_eq(lease_get(53, NULL), BL_ENOTFOUND);
    ck_assert_str_eq(lease_keys(10).s, "k");

    /* an id in use: bad request, nothing written */
    r = put_own("k2", "v", 10, 30, BL_CAS_NONE);
    ck_assert_int_eq(r.code, BL_EBADREQ);
    ck_assert(!r.changed);
    ck_assert_uint_eq(r.lease_granted, 0);
    ck_assert(!get("k2").found);
    ck_assert_int_eq(lease_get(10, &l), 0);
    ck_assert_uint_eq(l.flags, 0);

    /* a failed cas leaves no lease behind */
    r = put_own("k3", "v", 54, 30, 99);
    ck_assert_int_eq(r.code, BL_ECASFAILED);
    ck_assert_uint_eq(r.lease_granted, 0);
    ck_assert_int_eq(lease_get(54, NULL), BL_ENOTFOUND);
    ck_assert(!get("k3").found);
    ck_assert_uint_eq(revision(), 7);

    /* a txn delete (here a prefix delete) deletes the own lease too */
    put_own("p/1", "v", 55, 30, BL_CAS_NONE); /* 8 */
    {
        struct txn t;
        memset(&t, 0, sizeof t);
        OK(&t, op_del("p/", true));
        r = txn_apply(&t);
        ck_assert_int_eq(r.code, BL_OK);
        ck_assert_uint_eq(r.revision, 9);
    }
    ck_assert_int_eq(lease_get(55, NULL), BL_ENOTFOUND);
    ck_assert_str_eq(lease_keys(55).s, "");

    /* revoking an own lease deletes its key (the lease expired) */
    put_own("q", "v", 56, 30, BL_CAS_NONE); /* 10 */
    r = lease_revoke(56);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert_uint_eq(r.revision, 11);
    ck_assert(!get("q").found);
    ck_assert_int_eq(lease_get(56, NULL), BL_ENOTFOUND);
    ck_assert_int_eq(history(11, ev, 4), 1);
    ck_assert_int_eq(ev[0].type, BL_EVENT_DELETE);
    ck_assert_str_eq(ev[0].key, "q");
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

START_TEST(test_delete_keeps_shared_lease)
{
    struct bl_apply_result r;

    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);
    put_l("k1", "v", 10);  /* 1 */
    put_l("k2", "v", 10);  /* 2 */
    put_l("d/1", "v", 10); /* 3 */
    put_l("d/2", "v", 10); /* 4 */

    r = del("k1"); /* 5 */
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert_int_eq(lease_get(10, NULL), 0);
    ck_assert_str_eq(lease_keys(10).s, "d/1,d/2,k2");

    r = del_prefix("d/"); /* 6 */
    ck_assert_uint_eq(r.deleted, 2);
    ck_assert_int_eq(lease_get(10, NULL), 0);
    ck_assert_str_eq(lease_keys(10).s, "k2");

    {
        struct txn t;
        memset(&t, 0, sizeof t);
        OK(&t, op_del("k2", false));
        r = txn_apply(&t); /* 7 */
        ck_assert_int_eq(r.code, BL_OK);
    }
    /* the lease lives on without keys, until revoked or expired */
    ck_assert_int_eq(lease_get(10, NULL), 0);
    ck_assert_str_eq(lease_keys(10).s, "");
    ck_assert_uint_eq(revision(), 7);

    /* a later put can still use it */
    r = put_l("k3", "v", 10);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_str_eq(lease_keys(10).s, "k3");
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

/* A key's own lease (PUT ?ttl=, BL_LEASE_F_OWN) goes with its owner, so
 * no other key may be attached to it: a put of another key naming it is
 * BL_EBADREQ and changes nothing (it used to be accepted, and deleting
 * the owner then left the other key on a lease that no longer existed). */
START_TEST(test_own_lease_shared_by_another_key)
{
    struct bl_apply_result r;

    r = put_own("owner", "v", 50, 30, BL_CAS_NONE); /* 1 */
    ck_assert_int_eq(r.code, BL_OK);
    r = put_l("guest", "v", 50);
    ck_assert_int_eq(r.code, BL_EBADREQ);
    ck_assert(!r.changed);
    ck_assert(!get("guest").found);
    r = put_l("owner", "v2", 50); /* the owner itself may name it */
    ck_assert_int_eq(r.code, BL_OK);
    ASSERT_LEASES_CONSISTENT();
    del("owner");
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

/* The same inside one txn: the leases named are checked before the first
 * op, so a txn that deletes an own lease's owner and attaches another key
 * to that lease is refused as a whole. */
START_TEST(test_txn_attaches_to_lease_it_deleted)
{
    struct bl_apply_result r;
    struct txn t;

    r = put_own("owner", "v", 60, 30, BL_CAS_NONE); /* 1 */
    ck_assert_int_eq(r.code, BL_OK);
    memset(&t, 0, sizeof t);
    OK(&t, op_del("owner", false)); /* deletes lease 60 (own) */
    OK(&t, op_put("guest", "v", 60));
    r = txn_apply(&t);
    ck_assert_int_eq(r.code, BL_EBADREQ);
    ck_assert(!r.changed);
    ck_assert(get("owner").found);
    ck_assert(!get("guest").found);
    ASSERT_LEASES_CONSISTENT();
}
END_TEST

/* ---- 6. request-id replay of a txn ------------------------------------------------------- */

START_TEST(test_txn_replay)
{
    struct bl_apply_result r;
    struct txn_out o;
    struct txn t;
    uint8_t first[512];
    size_t first_len;
    struct kvc k;

    put("a", "1"); /* 1 */

    /* Succeeds the first time; run again it would fail (a is now "2"). */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "a", BL_CMP_VALUE, BL_CMP_EQ, "1", 0);
    OK(&t, op_put("a", "2", 0));
    OK(&t, op_put("n", "x", 0));
    OK(&t, op_get("a", 0, 0));
    KO(&t, op_put("failed", "x", 0));
    r = txn_apply_id(&t, "client-txn-1", true);
    ck_assert(!r.replayed);
    ck_assert_uint_eq(r.revision, 2);
    o = txn_result(&r);
    ck_assert(o.succeeded);
    ck_assert_uint_le(r.record_len, sizeof first);
    memcpy(first, r.record, r.record_len);
    first_len = r.record_len;

    r = txn_apply_id(&t, "client-txn-1", true);
    ck_assert(r.replayed);
    ck_assert(!r.changed);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.revision, 2);
    ck_assert_uint_eq(r.record_len, first_len);
    ck_assert_int_eq(memcmp(r.record, first, first_len), 0);
    o = txn_result(&r);
    ck_assert(o.succeeded);
    ck_assert_uint_eq(o.n, 3);
    assert_kv(&o.ops[2], 0, "a", "2");
    ck_assert_uint_eq(revision(), 2);
    k = get("a");
    ck_assert_uint_eq(k.version, 2);
    ck_assert_uint_eq(get("n").version, 1);
    ck_assert(!get("failed").found);

    /* A failed compare is recorded and replayed as such, even once the
     * compare would hold. */
    memset(&t, 0, sizeof t);
    cmp_add(&t, "b", BL_CMP_VERSION, BL_CMP_GT, NULL, 0);
    OK(&t, op_put("b-ok", "x", 0));
    KO(&t, op_put("b-failed", "x", 0));
    r = txn_apply_id(&t, "client-txn-2", true);
    o = txn_result(&r);
    ck_assert(!o.succeeded);
    ck_assert_uint_eq(r.revision, 3);
    put("b", "now exists"); /* 4 */
    r = txn_apply_id(&t, "client-txn-2", true);
    ck_assert(r.replayed);
    ck_assert_uint_eq(r.revision, 3);
    o = txn_result(&r);
    ck_assert(!o.succeeded);
    ck_assert(!get("b-ok").found);
    ck_assert_uint_eq(get("b-failed").version, 1);
    ck_assert_uint_eq(revision(), 4);

    /* A txn refused for an unknown lease is replayed as refused, even once
     * the lease exists. */
    memset(&t, 0, sizeof t);
    OK(&t, op_put("c", "x", 10));
    r = txn_apply_id(&t, "client-txn-3", true);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert_int_eq(lease_grant(10, 30).code, BL_OK);
    r = txn_apply_id(&t, "client-txn-3", true);
    ck_assert(r.replayed);
    ck_assert_int_eq(r.code, BL_ENOTFOUND);
    ck_assert(!get("c").found);
    ck_assert_uint_eq(revision(), 4);

    /* Without the record flag nothing is replayed: the txn runs again. */
    memset(&t, 0, sizeof t);
    OK(&t, op_put("d", "x", 0));
    r = txn_apply_id(&t, "client-txn-4", false);
    ck_assert_uint_eq(r.revision, 5);
    r = txn_apply_id(&t, "client-txn-4", false);
    ck_assert(!r.replayed);
    ck_assert_uint_eq(r.revision, 6);
    ck_assert_uint_eq(get("d").version, 2);
}
END_TEST

static Suite *txn_suite(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_compare_numbers);
    tcase_add_test(tc, test_compare_values);
    tcase_add_test(tc, test_compares_are_anded);
    tcase_add_test(tc, test_txn_holds_without_put);
    tcase_add_test(tc, test_txn_one_revision);
    tcase_add_test(tc, test_txn_without_change_keeps_revision);
    tcase_add_test(tc, test_txn_gets);
    tcase_add_test(tc, test_lease_grant);
    tcase_add_test(tc, test_put_attaches_and_detaches);
    tcase_add_test(tc, test_txn_unknown_lease_fails_whole);
    tcase_add_test(tc, test_lease_revoke);
    tcase_add_test(tc, test_own_lease);
    tcase_add_test(tc, test_delete_keeps_shared_lease);
    tcase_add_test(tc, test_own_lease_shared_by_another_key);
    tcase_add_test(tc, test_txn_attaches_to_lease_it_deleted);
    tcase_add_test(tc, test_txn_replay);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    char cmd[300];
    int failed;

    snprintf(top, sizeof top, "/tmp/ballast-txn-XXXXXX");
    if (mkdtemp(top) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    sr = srunner_create(txn_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof cmd, "rm -rf %s", top);
    if (system(cmd) != 0) {
        failed++;
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
