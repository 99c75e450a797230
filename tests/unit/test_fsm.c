/* Unit tests for the raft FSM glue (fsm.c): entries decode and apply at
 * raft's next index, malformed entries are refused, and a snapshot taken
 * from one store restores into another with every key and revision, while a
 * store that is already ahead keeps its contents. */
#include <check.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "error.h"
#include "fsm.h"
#include "store.h"

struct node {
    char dir[256];
    struct bl_store *store;
    struct bl_fsm fsm;
    struct raft raft;
};

static struct node a, b;

static void node_open(struct node *n)
{
    struct bl_store_opts o = {.map_size = 64 << 20};
    char err[256];
    snprintf(n->dir, sizeof n->dir, "/tmp/ballast-fsm-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(n->dir));
    ck_assert_int_eq(bl_store_open(n->dir, &o, &n->store, err), 0);
    bl_fsm_init(&n->fsm, n->store);
    memset(&n->raft, 0, sizeof n->raft);
    n->fsm.raft = &n->raft;
}

static void node_close(struct node *n)
{
    char cmd[300];
    bl_fsm_close(&n->fsm);
    bl_store_close(n->store);
    snprintf(cmd, sizeof cmd, "rm -rf %s", n->dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
    node_open(&a);
    node_open(&b);
}

static void teardown(void)
{
    node_close(&a);
    node_close(&b);
}

/* Apply a PUT through the raft vtable, as raft does: index = last_applied + 1. */
static int apply_put(struct node *n, const char *key, const char *value)
{
    struct bl_cmd c;
    struct raft_buffer buf;
    void *result = NULL;
    int rv;

    memset(&c, 0, sizeof c);
    c.type = BL_CMD_PUT;
    c.request_id.p = (const uint8_t *)"id";
    c.request_id.len = 2;
    c.key.p = (const uint8_t *)key;
    c.key.len = strlen(key);
    c.value.p = (const uint8_t *)value;
    c.value.len = strlen(value);
    c.cas = BL_CAS_NONE;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf.base, &buf.len), 0);
    ck_assert_uint_eq(buf.len % 8, 0);
    rv = n->fsm.fsm.apply(&n->fsm.fsm, &buf, &result);
    if (rv == 0) {
        ck_assert_ptr_eq(result, &n->fsm.last);
        n->raft.last_applied++;
    }
    free(buf.base);
    return rv;
}

static uint64_t revision_of(struct node *n, const char *key)
{
    struct bl_txn *t;
    struct bl_kv kv;
    uint64_t rev = 0;
    ck_assert_int_eq(bl_store_begin(n->store, false, &t), 0);
    if (bl_store_kv_get(t, key, strlen(key), &kv) == 0) {
        rev = kv.mod_revision;
    }
    bl_store_abort(t);
    return rev;
}

START_TEST(test_apply_uses_raft_index)
{
    struct bl_txn *t;
    uint64_t applied;

    a.raft.last_applied = 41;
    ck_assert_int_eq(apply_put(&a, "k1", "v1"), 0);
    ck_assert_int_eq(apply_put(&a, "k2", "v2"), 0);
    ck_assert_int_eq(bl_store_begin(a.store, false, &t), 0);
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &applied), 0);
    bl_store_abort(t);
    ck_assert_uint_eq(applied, 43);
    ck_assert_uint_eq(a.fsm.revision, 2);
    ck_assert_uint_eq(revision_of(&a, "k2"), 2);
}
END_TEST

START_TEST(test_malformed_entry_is_refused)
{
    uint8_t junk[16] = {0xde, 0xad, 0xbe, 0xef};
    struct raft_buffer buf = {junk, sizeof junk};
    void *result = NULL;
    ck_assert_int_eq(a.fsm.fsm.apply(&a.fsm.fsm, &buf, &result), RAFT_MALFORMED);
    ck_assert_ptr_null(result);
}
END_TEST

/* Take a snapshot of @n the way raft 0.15 does with a version-3 FSM. */
static void take_snapshot(struct node *n, struct raft_buffer *copy)
{
    struct raft_buffer *bufs = NULL;
    unsigned n_bufs = 0;
    ck_assert_int_eq(n->fsm.fsm.snapshot(&n->fsm.fsm, &bufs, &n_bufs), 0);
    ck_assert_int_eq(n->fsm.fsm.snapshot_async(&n->fsm.fsm, &bufs, &n_bufs), 0);
    ck_assert_uint_eq(n_bufs, 1);
    copy->len = bufs[0].len;
    copy->base = raft_malloc(copy->len);
    memcpy(copy->base, bufs[0].base, copy->len);
    ck_assert_int_eq(n->fsm.fsm.snapshot_finalize(&n->fsm.fsm, &bufs, &n_bufs), 0);
    ck_assert_ptr_null(bufs);
}

START_TEST(test_snapshot_restores_elsewhere)
{
    struct raft_buffer snap;
    char key[32];

    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%03d", i);
        ck_assert_int_eq(apply_put(&a, key, "value"), 0);
    }
    take_snapshot(&a, &snap);
    /* Writes after the snapshot do not leak into it. */
    ck_assert_int_eq(apply_put(&a, "later", "x"), 0);

    ck_assert_int_eq(b.fsm.fsm.restore(&b.fsm.fsm, &snap), 0); /* takes ownership */
    ck_assert_uint_eq(b.fsm.revision, 200);
    ck_assert_uint_eq(revision_of(&b, "key-000"), 1);
    ck_assert_uint_eq(revision_of(&b, "key-199"), 200);
    ck_assert_uint_eq(revision_of(&b, "later"), 0);
    ck_assert_uint_eq(b.fsm.restores, 1);
}
END_TEST

START_TEST(test_restore_keeps_a_store_that_is_ahead)
{
    struct raft_buffer snap;

    ck_assert_int_eq(apply_put(&a, "k", "old"), 0);
    take_snapshot(&a, &snap);
    ck_assert_int_eq(apply_put(&a, "k", "new"), 0);
    /* A restart loads the member's own older snapshot: the store is kept. */
    ck_assert_int_eq(a.fsm.fsm.restore(&a.fsm.fsm, &snap), 0);
    ck_assert_uint_eq(a.fsm.restores, 0);
    ck_assert_uint_eq(revision_of(&a, "k"), 2);
}
END_TEST

START_TEST(test_restore_rejects_garbage)
{
    struct raft_buffer snap;
    ck_assert_int_eq(apply_put(&a, "k", "v"), 0);
    take_snapshot(&a, &snap);
    ((uint8_t *)snap.base)[16] ^= 0xff; /* length field */
    ck_assert_int_eq(b.fsm.fsm.restore(&b.fsm.fsm, &snap), RAFT_MALFORMED);
    raft_free(snap.base);
    ck_assert_uint_eq(b.fsm.restores, 0);
}
END_TEST

static Suite *fsm_suite(void)
{
    Suite *s = suite_create("fsm");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_apply_uses_raft_index);
    tcase_add_test(tc, test_malformed_entry_is_refused);
    tcase_add_test(tc, test_snapshot_restores_elsewhere);
    tcase_add_test(tc, test_restore_keeps_a_store_that_is_ahead);
    tcase_add_test(tc, test_restore_rejects_garbage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fsm_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
