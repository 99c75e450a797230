/* Unit tests for the configuration guard (raft_glue/confguard.c): on a
 * struct raft set up by hand (its public fields only), the guard must do
 * the rollback canonical/raft 0.15 would crash on, and leave every other
 * message alone. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "confguard.h"

static struct raft r;
static struct bl_confguard g;

/* A log holding entries offset+1..offset+n with the given terms. */
static void set_log(raft_index offset, const raft_term *terms, unsigned n)
{
    free(r.log.entries);
    memset(&r.log, 0, sizeof r.log);
    r.log.entries = calloc(n + 4, sizeof *r.log.entries);
    r.log.size = n + 4;
    r.log.front = 2; /* not at 0: exercise the circular buffer */
    r.log.back = (2 + n) % r.log.size;
    r.log.offset = offset;
    for (unsigned i = 0; i < n; i++) {
        r.log.entries[(2 + i) % r.log.size].term = terms[i];
    }
    r.log.snapshot.last_index = offset;
    r.log.snapshot.last_term = offset > 0 ? terms[0] : 0;
}

static void set_conf(struct raft_configuration *c, unsigned n)
{
    raft_configuration_close(c);
    raft_configuration_init(c);
    for (unsigned i = 1; i <= n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.%u:9000", i);
        ck_assert_int_eq(raft_configuration_add(c, i, addr, RAFT_VOTER), 0);
    }
}

static void setup(void)
{
    static const raft_term terms[] = {2, 2, 2, 2, 2, 2};
    memset(&r, 0, sizeof r);
    bl_confguard_init(&g);
    raft_configuration_init(&r.configuration);
    r.state = RAFT_FOLLOWER;
    r.current_term = 2;
    /* Entries 101..106 of term 2; the committed configuration (3 voters)
     * came from entry 1, compacted long ago. */
    set_log(100, terms, 6);
    set_conf(&r.configuration, 3);
    r.configuration_index = 1;
    r.commit_index = 104;
}

static void teardown(void)
{
    raft_configuration_close(&r.configuration);
    free(r.log.entries);
    r.log.entries = NULL;
    bl_confguard_close(&g);
}

/* A heartbeat: the guard copies the committed configuration. Then entry
 * 106 brings an uncommitted one (2 voters), as raft would on receiving it. */
static void take_uncommitted_change(void)
{
    struct raft_message hb = {.type = RAFT_IO_APPEND_ENTRIES};
    hb.append_entries.term = 2;
    hb.append_entries.prev_log_index = 106;
    hb.append_entries.prev_log_term = 2;
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &hb), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(g.committed_index, 1);
    set_conf(&r.configuration, 2);
    r.configuration_uncommitted_index = 106;
}

/* AppendEntries of term 3 that overwrite 105.. with term-3 entries. */
static struct raft_message overwrite_from(raft_index first, raft_term term)
{
    static struct raft_entry entries[2];
    struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES, .server_id = 2};
    entries[0].term = entries[1].term = term;
    m.append_entries.term = 3;
    m.append_entries.prev_log_index = first - 1;
    m.append_entries.prev_log_term = 2;
    m.append_entries.entries = entries;
    m.append_entries.n_entries = 2;
    return m;
}

START_TEST(test_term_of)
{
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 100), 2); /* the snapshot's */
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 101), 2);
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 106), 2);
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 107), 0);
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 50), 0);
    ck_assert_uint_eq(bl_confguard_term_of(&r.log, 0), 0);
}
END_TEST

START_TEST(test_rollback_from_copy)
{
    struct raft_message m;
    take_uncommitted_change();
    m = overwrite_from(105, 3);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 0);
    ck_assert_uint_eq(r.configuration.n, 3);
    ck_assert_uint_eq(r.configuration.servers[2].id, 3);
    ck_assert_str_eq(r.configuration.servers[2].address, "127.0.0.3:9000");
    ck_assert_uint_eq(g.rollbacks, 1);
}
END_TEST

START_TEST(test_left_to_raft)
{
    struct raft_message m;
    take_uncommitted_change();

    /* Entries that agree with ours: nothing is truncated. */
    m = overwrite_from(105, 2);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 106);

    /* A stale term: raft rejects it. */
    m = overwrite_from(105, 3);
    m.append_entries.term = 1;
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 106);

    /* The previous entry does not match: raft rejects it. */
    m = overwrite_from(105, 3);
    m.append_entries.prev_log_term = 1;
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 106);

    /* A truncation above the uncommitted entry: no rollback. */
    r.configuration_uncommitted_index = 104;
    m = overwrite_from(105, 3);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 104);

    /* The committed configuration's entry is in the log: raft 0.15 can do
     * the rollback itself. */
    r.configuration_uncommitted_index = 106;
    r.configuration_index = 102;
    g.committed_index = 102;
    m = overwrite_from(105, 3);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DELIVER);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 106);
    ck_assert_uint_eq(r.configuration.n, 2);
    ck_assert_uint_eq(g.rollbacks, 0);
}
END_TEST

START_TEST(test_leader_does_not_see_it)
{
    struct raft_message m;
    take_uncommitted_change();
    r.state = RAFT_LEADER;
    m = overwrite_from(105, 3);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_DROP);
    ck_assert_uint_eq(r.configuration_uncommitted_index, 106);
    ck_assert_uint_eq(g.dropped, 1);
}
END_TEST

START_TEST(test_no_copy_is_fatal)
{
    struct raft_message m;
    take_uncommitted_change();
    r.configuration_index = 7; /* a committed configuration never seen */
    m = overwrite_from(105, 3);
    ck_assert_int_eq(bl_confguard_before_recv(&g, &r, &m), BL_CONFGUARD_FATAL);
}
END_TEST

START_TEST(test_free_msg)
{
    struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES};
    void *batch = raft_malloc(64), *other = raft_malloc(32);
    m.append_entries.entries = raft_calloc(3, sizeof *m.append_entries.entries);
    m.append_entries.n_entries = 3;
    m.append_entries.entries[0].batch = batch;
    m.append_entries.entries[1].batch = batch;
    m.append_entries.entries[2].batch = other;
    bl_confguard_free_msg(&m); /* the sanitizer build checks nothing leaks */
    ck_assert_ptr_null(m.append_entries.entries);
    ck_assert_uint_eq(m.append_entries.n_entries, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("confguard");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_term_of);
    tcase_add_test(tc, test_rollback_from_copy);
    tcase_add_test(tc, test_left_to_raft);
    tcase_add_test(tc, test_leader_does_not_see_it);
    tcase_add_test(tc, test_no_copy_is_fatal);
    tcase_add_test(tc, test_free_msg);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
