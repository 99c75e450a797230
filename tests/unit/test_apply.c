/* Unit tests for the key-value state machine (apply.c) on a real LMDB
 * store in a temporary directory: revisions, compare-and-swap, deletes,
 * prefix deletes, replays of applied entries and of request ids, and a
 * storage error that must leave the store untouched. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "error.h"
#include "store.h"

static char dir[256];
static struct bl_store *store;
static struct bl_applier applier;
static uint64_t next_index;

static void open_store(size_t map_size)
{
    struct bl_store_opts o = {.map_size = map_size};
    char err[256];
    ck_assert_int_eq(bl_store_open(dir, &o, &store, err), 0);
    bl_applier_init(&applier, store);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ballast-apply-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    next_index = 1;
    open_store(64 << 20);
}

static void teardown(void)
{
    char cmd[300];
    bl_applier_close(&applier);
    bl_store_close(store);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct bl_cmd cmd_of(int type, const char *key, const char *value, int64_t cas)
{
    struct bl_cmd c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.request_id.p = (const uint8_t *)"r";
    c.request_id.len = 1;
    c.key.p = (const uint8_t *)key;
    c.key.len = strlen(key);
    if (value != NULL) {
        c.value.p = (const uint8_t *)value;
        c.value.len = strlen(value);
    }
    c.cas = cas;
    return c;
}

static struct bl_apply_result run(const struct bl_cmd *c)
{
    struct bl_apply_result r;
    ck_assert_int_eq(bl_apply(&applier, next_index++, c, &r), 0);
    return r;
}

static struct bl_apply_result put(const char *key, const char *value, int64_t cas)
{
    struct bl_cmd c = cmd_of(BL_CMD_PUT, key, value, cas);
    return run(&c);
}

/* Read @key; returns 0 and fills @kv with a copy of the value in @buf. */
static int get(const char *key, struct bl_kv *kv, char *buf, size_t len)
{
    struct bl_txn *t;
    int rv;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    rv = bl_store_kv_get(t, key, strlen(key), kv);
    if (rv == 0) {
        ck_assert_uint_lt(kv->value_len, len);
        memcpy(buf, kv->value, kv->value_len);
        buf[kv->value_len] = '\0';
        kv->value = (const uint8_t *)buf;
        kv->key = NULL;
    }
    bl_store_abort(t);
    return rv;
}

static uint64_t meta(const char *name)
{
    struct bl_txn *t;
    uint64_t v;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    ck_assert_int_eq(bl_store_meta_get(t, name, &v), 0);
    bl_store_abort(t);
    return v;
}

START_TEST(test_put_revisions_and_versions)
{
    struct bl_apply_result r;
    struct bl_kv kv;
    char buf[64];

    r = put("a", "1", BL_CAS_NONE);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.revision, 1);
    r = put("b", "2", BL_CAS_NONE);
    ck_assert_uint_eq(r.revision, 2);
    r = put("a", "3", BL_CAS_NONE);
    ck_assert_uint_eq(r.revision, 3);

    ck_assert_int_eq(get("a", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "3");
    ck_assert_uint_eq(kv.create_revision, 1);
    ck_assert_uint_eq(kv.mod_revision, 3);
    ck_assert_uint_eq(kv.version, 2);
    ck_assert_uint_eq(meta("revision"), 3);
    ck_assert_uint_eq(meta("applied_index"), 3);
}
END_TEST

START_TEST(test_cas_hit_and_miss)
{
    struct bl_apply_result r;
    struct bl_kv kv;
    char buf[64];

    r = put("k", "v1", 0); /* only if absent: hit */
    ck_assert_int_eq(r.code, BL_OK);
    r = put("k", "v2", 0); /* only if absent: miss */
    ck_assert_int_eq(r.code, BL_ECASFAILED);
    ck_assert_uint_eq(r.revision, 1);
    r = put("k", "v3", 7); /* wrong mod revision */
    ck_assert_int_eq(r.code, BL_ECASFAILED);
    r = put("k", "v4", 1); /* right mod revision */
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.revision, 2);
    r = put("absent", "x", 5); /* cas on an absent key */
    ck_assert_int_eq(r.code, BL_ECASFAILED);

    ck_assert_int_eq(get("k", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "v4");
    ck_assert_int_eq(get("absent", &kv, buf, sizeof buf), BL_ENOTFOUND);
    /* Failed compares change nothing, but the entries are applied. */
    ck_assert_uint_eq(meta("revision"), 2);
    ck_assert_uint_eq(meta("applied_index"), 5);
}
END_TEST

START_TEST(test_delete_and_recreate)
{
    struct bl_apply_result r;
    struct bl_cmd c;
    struct bl_kv kv;
    char buf[64];

    put("k", "v", BL_CAS_NONE);
    c = cmd_of(BL_CMD_DELETE, "k", NULL, 5); /* cas miss */
    r = run(&c);
    ck_assert_int_eq(r.code, BL_ECASFAILED);
    c = cmd_of(BL_CMD_DELETE, "k", NULL, BL_CAS_NONE);
    c.flags = BL_CMD_F_PREV;
    r = run(&c);
    ck_assert_int_eq(r.code, BL_OK);
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert_uint_eq(r.revision, 2);
    {
        struct bl_result_view v;
        struct bl_kv p;
        ck_assert_int_eq(bl_result_decode(r.record, r.record_len, &v), 0);
        ck_assert_uint_eq(v.n_prev, 1);
        ck_assert_int_eq(bl_result_next_prev(&v, &p), 1);
        ck_assert_uint_eq(p.value_len, 1);
        ck_assert_int_eq(memcmp(p.value, "v", 1), 0);
        ck_assert_int_eq(bl_result_next_prev(&v, &p), 0);
    }
    /* Deleting nothing is not an error and does not raise the revision. */
    r = run(&c);
    ck_assert_uint_eq(r.deleted, 0);
    ck_assert_uint_eq(r.revision, 2);
    ck_assert_int_eq(get("k", &kv, buf, sizeof buf), BL_ENOTFOUND);
    r = put("k", "again", BL_CAS_NONE);
    ck_assert_uint_eq(r.revision, 3);
    ck_assert_int_eq(get("k", &kv, buf, sizeof buf), 0);
    ck_assert_uint_eq(kv.create_revision, 3);
    ck_assert_uint_eq(kv.version, 1);
}
END_TEST

struct collect {
    char keys[64][16];
    unsigned n;
};

static int collect_cb(void *arg, const struct bl_kv *kv)
{
    struct collect *c = arg;
    ck_assert_uint_lt(kv->key_len, 16);
    memcpy(c->keys[c->n], kv->key, kv->key_len);
    c->keys[c->n][kv->key_len] = '\0';
    return ++c->n >= 64 ? 1 : 0;
}

static struct collect scan(const char *prefix, const char *after)
{
    struct collect c = {.n = 0};
    struct bl_txn *t;
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    ck_assert_int_eq(bl_store_kv_scan(t, prefix, strlen(prefix), after, after ? strlen(after) : 0,
                                      collect_cb, &c),
                     0);
    bl_store_abort(t);
    return c;
}

START_TEST(test_prefix_delete_and_paging)
{
    struct bl_apply_result r;
    struct bl_cmd c;
    struct collect got;
    char key[16];

    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "dir/%02d", i);
        put(key, "x", BL_CAS_NONE);
    }
    put("dis", "x", BL_CAS_NONE);
    put("e", "x", BL_CAS_NONE);
    /* Page through dir/ in steps, as ?after does. */
    got = scan("dir/", NULL);
    ck_assert_uint_eq(got.n, 20);
    got = scan("dir/", "dir/09");
    ck_assert_uint_eq(got.n, 10);
    ck_assert_str_eq(got.keys[0], "dir/10");
    got = scan("dir/", "dir/19");
    ck_assert_uint_eq(got.n, 0);
    got = scan("", NULL);
    ck_assert_uint_eq(got.n, 22);
    ck_assert_str_eq(got.keys[0], "dir/00");
    ck_assert_str_eq(got.keys[20], "dis");

    c = cmd_of(BL_CMD_DELETE_RANGE, "dir/", NULL, BL_CAS_NONE);
    r = run(&c);
    ck_assert_uint_eq(r.deleted, 20);
    ck_assert_uint_eq(r.revision, 23); /* one revision for the whole range */
    got = scan("", NULL);
    ck_assert_uint_eq(got.n, 2);
}
END_TEST

START_TEST(test_applied_entries_are_skipped)
{
    struct bl_apply_result r;
    struct bl_cmd c = cmd_of(BL_CMD_PUT, "k", "v", BL_CAS_NONE);
    struct bl_kv kv;
    char buf[64];

    ck_assert_int_eq(bl_apply(&applier, 10, &c, &r), 0);
    ck_assert(!r.skipped);
    /* A restart replays entries the store already holds: no effect. */
    c.value.p = (const uint8_t *)"other";
    c.value.len = 5;
    ck_assert_int_eq(bl_apply(&applier, 10, &c, &r), 0);
    ck_assert(r.skipped);
    ck_assert_int_eq(bl_apply(&applier, 7, &c, &r), 0);
    ck_assert(r.skipped);
    ck_assert_int_eq(get("k", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "v");
    ck_assert_uint_eq(meta("revision"), 1);
    ck_assert_uint_eq(meta("applied_index"), 10);
}
END_TEST

START_TEST(test_request_id_replay)
{
    struct bl_apply_result r;
    struct bl_cmd c = cmd_of(BL_CMD_PUT, "k", "first", BL_CAS_NONE);
    struct bl_kv kv;
    char buf[64];

    c.request_id.p = (const uint8_t *)"client-1";
    c.request_id.len = 8;
    c.flags = BL_CMD_F_RECORD;
    r = run(&c);
    ck_assert_uint_eq(r.revision, 1);
    ck_assert(!r.replayed);
    c.value.p = (const uint8_t *)"second";
    c.value.len = 6;
    r = run(&c);
    ck_assert(r.replayed);
    ck_assert_uint_eq(r.revision, 1);
    ck_assert_int_eq(get("k", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "first");
    ck_assert_uint_eq(meta("revision"), 1);
    /* A failed compare is recorded and replayed as such. */
    c = cmd_of(BL_CMD_PUT, "k", "x", 0);
    c.request_id.p = (const uint8_t *)"client-2";
    c.request_id.len = 8;
    c.flags = BL_CMD_F_RECORD;
    r = run(&c);
    ck_assert_int_eq(r.code, BL_ECASFAILED);
    r = run(&c);
    ck_assert(r.replayed);
    ck_assert_int_eq(r.code, BL_ECASFAILED);
}
END_TEST

START_TEST(test_member_set)
{
    struct bl_cmd c;
    struct bl_apply_result r;
    struct bl_member_attrs a;
    struct bl_txn *t;
    const void *rec;
    size_t len;

    memset(&c, 0, sizeof c);
    c.type = BL_CMD_MEMBER_SET;
    c.request_id.p = (const uint8_t *)"p";
    c.request_id.len = 1;
    c.member_id = 3;
    c.name.p = (const uint8_t *)"member-3";
    c.name.len = 8;
    c.peer_url.p = (const uint8_t *)"127.0.0.1:8380";
    c.peer_url.len = 14;
    c.client_url.p = (const uint8_t *)"127.0.0.1:8379";
    c.client_url.len = 14;
    r = run(&c);
    ck_assert_uint_eq(r.revision, 0); /* member table changes are not KV revisions */
    ck_assert_int_eq(bl_store_begin(store, false, &t), 0);
    ck_assert_int_eq(bl_store_member_get(t, 3, &rec, &len), 0);
    ck_assert_int_eq(bl_member_attrs_decode(rec, len, &a), 0);
    ck_assert_uint_eq(a.client_url.len, 14);
    ck_assert_int_eq(memcmp(a.name.p, "member-3", 8), 0);
    bl_store_abort(t);
}
END_TEST

START_TEST(test_storage_error_changes_nothing)
{
    static char big[256 * 1024];
    struct bl_apply_result r;
    struct bl_cmd c;
    char key[32], cmd[300];
    uint64_t applied;
    int rv = 0, i;

    bl_applier_close(&applier);
    bl_store_close(store);
    snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
    ck_assert_int_eq(system(cmd), 0);
    open_store(2 << 20);
    memset(big, 'x', sizeof big - 1);
    for (i = 0; i < 64 && rv == 0; i++) {
        snprintf(key, sizeof key, "big-%d", i);
        c = cmd_of(BL_CMD_PUT, key, big, BL_CAS_NONE);
        rv = bl_apply(&applier, next_index, &c, &r);
        if (rv == 0) {
            next_index++;
        }
    }
    ck_assert_int_eq(rv, BL_ENOSPACE);
    applied = meta("applied_index");
    ck_assert_uint_eq(applied, next_index - 1);
    ck_assert_uint_eq(meta("revision"), next_index - 1);
    /* The store still works for what fits. */
    r = put("small", "v", BL_CAS_NONE);
    ck_assert_uint_eq(r.revision, next_index - 1);
}
END_TEST

/* A batch entry applies its commands in order in one transaction: each
 * gets its own revision and outcome, a failed compare in the middle changes
 * nothing but its own outcome, a request id repeated inside the batch is
 * replayed, and the entry's index is recorded once. */
START_TEST(test_batch_applies_each_command)
{
    struct bl_cmd c[5];
    struct bl_apply_result r[5];
    struct bl_result_view v;
    struct bl_kv kv;
    char buf[64];

    put("a", "0", BL_CAS_NONE); /* revision 1, index 1 */
    c[0] = cmd_of(BL_CMD_PUT, "a", "1", BL_CAS_NONE);
    c[1] = cmd_of(BL_CMD_PUT, "b", "2", 0);
    c[2] = cmd_of(BL_CMD_PUT, "a", "x", 99); /* cas miss */
    c[3] = cmd_of(BL_CMD_PUT, "c", "3", BL_CAS_NONE);
    c[3].request_id.p = (const uint8_t *)"req-9";
    c[3].request_id.len = 5;
    c[3].flags = BL_CMD_F_RECORD;
    c[4] = c[3]; /* a retry of the same request in the same batch */
    c[4].value.p = (const uint8_t *)"other";
    c[4].value.len = 5;
    ck_assert_int_eq(bl_apply_batch(&applier, next_index++, c, 5, r), 0);
    ck_assert_uint_eq(r[0].revision, 2);
    ck_assert_uint_eq(r[1].revision, 3);
    ck_assert_int_eq(r[2].code, BL_ECASFAILED);
    ck_assert_uint_eq(r[2].revision, 3);
    ck_assert(!r[2].changed);
    ck_assert_uint_eq(r[3].revision, 4);
    ck_assert(!r[3].replayed);
    ck_assert(r[4].replayed);
    ck_assert_uint_eq(r[4].revision, 4);
    /* Every record is its own, still readable after the whole batch. */
    for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(bl_result_decode(r[k].record, r[k].record_len, &v), 0);
        ck_assert_uint_eq(v.revision, r[k].revision);
        ck_assert_int_eq(v.code, r[k].code);
    }
    ck_assert_uint_eq(meta("applied_index"), 2);
    ck_assert_uint_eq(meta("revision"), 4);
    ck_assert_int_eq(get("a", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "1");
    ck_assert_uint_eq(kv.version, 2);
    ck_assert_int_eq(get("c", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "3");

    /* Replayed after a restart: skipped whole, nothing changes. */
    c[0] = cmd_of(BL_CMD_PUT, "a", "again", BL_CAS_NONE);
    ck_assert_int_eq(bl_apply_batch(&applier, 2, c, 2, r), 0);
    ck_assert(r[0].skipped && r[1].skipped);
    ck_assert_int_eq(get("a", &kv, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "1");
    ck_assert_uint_eq(meta("revision"), 4);
}
END_TEST

/* A storage error in the middle of a batch aborts the whole entry. */
START_TEST(test_batch_storage_error_changes_nothing)
{
    static char big[512 * 1024];
    struct bl_cmd c[8];
    struct bl_apply_result r[8];
    char keys[8][16], cmd[300];
    struct bl_kv kv;
    char buf[64];

    bl_applier_close(&applier);
    bl_store_close(store);
    snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
    ck_assert_int_eq(system(cmd), 0);
    open_store(2 << 20);
    put("small", "v", BL_CAS_NONE);
    memset(big, 'x', sizeof big - 1);
    for (int k = 0; k < 8; k++) {
        snprintf(keys[k], sizeof keys[k], "big-%d", k);
        c[k] = cmd_of(BL_CMD_PUT, keys[k], big, BL_CAS_NONE);
    }
    ck_assert_int_eq(bl_apply_batch(&applier, next_index, c, 8, r), BL_ENOSPACE);
    ck_assert_uint_eq(meta("applied_index"), next_index - 1);
    ck_assert_uint_eq(meta("revision"), 1);
    ck_assert_int_eq(get("big-0", &kv, buf, sizeof buf), BL_ENOTFOUND);
}
END_TEST

static Suite *apply_suite(void)
{
    Suite *s = suite_create("apply");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_revisions_and_versions);
    tcase_add_test(tc, test_cas_hit_and_miss);
    tcase_add_test(tc, test_delete_and_recreate);
    tcase_add_test(tc, test_prefix_delete_and_paging);
    tcase_add_test(tc, test_applied_entries_are_skipped);
    tcase_add_test(tc, test_request_id_replay);
    tcase_add_test(tc, test_member_set);
    tcase_add_test(tc, test_storage_error_changes_nothing);
    tcase_add_test(tc, test_batch_applies_each_command);
    tcase_add_test(tc, test_batch_storage_error_changes_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(apply_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
