/* Unit tests of the lessor, the in-memory lease table (raft_glue/lessor.c).
 *
 * Set/find/del and the count; which leases bl_lessor_expired() reports
 * (deadline <= now exactly, never deadline 0 as on a follower, at most max,
 * none whose revoke is in flight); bl_lessor_promote() giving every lease a
 * full TTL from the election (etcd's rule) and clearing revoking flags; a
 * keepalive done as member.c does it (find, then move the deadline); grow
 * keeping every field; clear and free.
 *
 * The hash table itself: backward-shift deletion across the end of the table
 * is checked slot by slot with ids whose home slots are computed with a copy
 * of slot_of() from lessor.c (home() below), and a model-based random test
 * (fixed seed) runs some 15,000 operations against an array model
 * with ids that cluster around the wrap-around point at every capacity up to
 * 1024, growing the table from 64 to 2048 slots and emptying it again.
 *
 * Allocation failure: this file defines calloc() (the only allocator the
 * lessor calls, when it grows) so that a test can make it fail; if the
 * definition is not the one the lessor calls (valgrind replaces it with its
 * own), that test checks nothing rather than fail. */
#include "error.h"
#include "lessor.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ck_assert for hot loops: Check records a mark point for every passing
 * ck_assert, which costs more than the code under test here. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ck_abort_msg(__VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

/* ---- allocation failure injection ---------------------------------------- */

static bool calloc_fail;       /* the next calloc() calls return NULL */
static unsigned long calloc_n; /* calls of this calloc() */
/* Through a volatile pointer: the compiler would turn malloc and memset
 * back into a call of calloc, this very function. */
static void *(*volatile malloc_fn)(size_t) = malloc;

void *calloc(size_t n, size_t size)
{
    calloc_n++;
    if (calloc_fail || (size != 0 && n > SIZE_MAX / size)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc_fn(n * size);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

/* ---- helpers ------------------------------------------------------------- */

/* The home slot of @id in a table of @cap slots: a copy of slot_of() in
 * lessor.c, used to pick ids that collide and to check exact layouts. */
static size_t home(size_t cap, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 17) & (cap - 1);
}

/* The @nth id (from 0) counting up from @from whose home at @cap is @slot. */
static uint64_t id_at(size_t cap, size_t slot, uint64_t from, int nth)
{
    for (uint64_t id = from;; id++) {
        if (home(cap, id) == slot && nth-- == 0) {
            return id;
        }
    }
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic, seeded per test. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_below(uint64_t n)
{
    return rng_next() % n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
}

static struct bl_lessor_entry *must_find(struct bl_lessor *l, uint64_t id)
{
    struct bl_lessor_entry *e = bl_lessor_find(l, id);
    ck_assert_msg(e != NULL, "lease %llu not found", (unsigned long long)id);
    ck_assert_uint_eq(e->id, id);
    return e;
}

static void set_ok(struct bl_lessor *l, uint64_t id, uint64_t ttl, uint64_t deadline)
{
    int rv = bl_lessor_set(l, id, ttl, deadline);
    ck_assert_msg(rv == BL_OK, "set %llu: %d", (unsigned long long)id, rv);
}

/* bl_lessor_expired(@now) with room for everything, sorted; must equal the
 * @n ids in @want (any order). */
static void expect_expired(struct bl_lessor *l, uint64_t now, const uint64_t *want, size_t n)
{
    uint64_t got[64], exp[64];
    ck_assert_uint_le(n, 64);
    size_t k = bl_lessor_expired(l, now, got, 64);
    ck_assert_msg(k == n, "expired at %llu: %zu ids, want %zu", (unsigned long long)now, k, n);
    if (n > 0) {
        memcpy(exp, want, n * sizeof *want);
    }
    sort_u64(got, k);
    sort_u64(exp, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(got[i] == exp[i], "expired at %llu: id %llu, want %llu",
                      (unsigned long long)now, (unsigned long long)got[i],
                      (unsigned long long)exp[i]);
    }
}

/* The table's invariants: capacity 0 or a power of two with load <= 3/4,
 * count = occupied slots, and every stored id found in its own slot (so no
 * probe chain is broken and no id is stored twice). */
static void check_table(struct bl_lessor *l)
{
    size_t used = 0;
    if (l->cap == 0) {
        REQUIRE(l->count == 0 && l->slots == NULL, "cap 0 with count %zu", l->count);
        return;
    }
    REQUIRE((l->cap & (l->cap - 1)) == 0, "cap %zu not a power of two", l->cap);
    REQUIRE(l->count * 4 <= l->cap * 3, "count %zu over 3/4 of cap %zu", l->count, l->cap);
    for (size_t i = 0; i < l->cap; i++) {
        uint64_t id = l->slots[i].id;
        if (id != 0) {
            used++;
            REQUIRE(bl_lessor_find(l, id) == &l->slots[i], "id %llu in slot %zu not found there",
                    (unsigned long long)id, i);
        } else {
            REQUIRE(l->slots[i].ttl == 0 && l->slots[i].deadline == 0 && !l->slots[i].revoking,
                    "empty slot %zu not zeroed", i);
        }
    }
    REQUIRE(used == l->count, "%zu slots used, count %zu", used, l->count);
}

/* ---- set, find, del ------------------------------------------------------ */

START_TEST(test_set_find_del)
{
    struct bl_lessor l;
    bl_lessor_init(&l);

    /* Empty and never allocated. */
    ck_assert_ptr_null(bl_lessor_find(&l, 1));
    bl_lessor_del(&l, 1);
    ck_assert_uint_eq(l.count, 0);

    set_ok(&l, 7, 10, 0);
    ck_assert_uint_eq(l.count, 1);
    struct bl_lessor_entry *e = must_find(&l, 7);
    ck_assert_uint_eq(e->ttl, 10);
    ck_assert_uint_eq(e->deadline, 0);
    ck_assert(!e->revoking);
    ck_assert_ptr_null(bl_lessor_find(&l, 8));
    ck_assert_ptr_null(bl_lessor_find(&l, 0));

    /* Update: TTL and deadline change, still one entry. */
    set_ok(&l, 7, 20, 5000);
    ck_assert_uint_eq(l.count, 1);
    e = must_find(&l, 7);
    ck_assert_uint_eq(e->ttl, 20);
    ck_assert_uint_eq(e->deadline, 5000);
    set_ok(&l, 7, 3, 0);
    e = must_find(&l, 7);
    ck_assert_uint_eq(e->ttl, 3);
    ck_assert_uint_eq(e->deadline, 0);

    /* A set is a grant and replaces the whole entry, revoking flag too: a
     * stale entry (a lease revoked while this member followed) re-granted
     * under the same id has no revoke in flight. */
    e->revoking = true;
    set_ok(&l, 7, 3, 0);
    ck_assert(!must_find(&l, 7)->revoking);

    /* Id 0 marks an empty slot: refused. */
    ck_assert_int_eq(bl_lessor_set(&l, 0, 5, 5), BL_EBADREQ);
    ck_assert_uint_eq(l.count, 1);
    ck_assert_ptr_null(bl_lessor_find(&l, 0));

    /* More leases, each with its own fields. */
    for (uint64_t id = 100; id < 120; id++) {
        set_ok(&l, id, id - 99, id * 1000);
    }
    ck_assert_uint_eq(l.count, 21);
    for (uint64_t id = 100; id < 120; id++) {
        e = must_find(&l, id);
        ck_assert_uint_eq(e->ttl, id - 99);
        ck_assert_uint_eq(e->deadline, id * 1000);
    }

    /* Del of absent ids: nothing changes. */
    bl_lessor_del(&l, 8);
    bl_lessor_del(&l, 0);
    bl_lessor_del(&l, 120);
    ck_assert_uint_eq(l.count, 21);
    check_table(&l);

    /* Del removes exactly that id; twice is harmless. */
    bl_lessor_del(&l, 7);
    ck_assert_ptr_null(bl_lessor_find(&l, 7));
    ck_assert_uint_eq(l.count, 20);
    bl_lessor_del(&l, 7);
    ck_assert_uint_eq(l.count, 20);
    for (uint64_t id = 100; id < 120; id += 2) {
        bl_lessor_del(&l, id);
    }
    ck_assert_uint_eq(l.count, 10);
    for (uint64_t id = 100; id < 120; id++) {
        e = bl_lessor_find(&l, id);
        if (id % 2 == 0) {
            ck_assert_ptr_null(e);
        } else {
            ck_assert_ptr_nonnull(e);
            ck_assert_uint_eq(e->ttl, id - 99);
            ck_assert_uint_eq(e->deadline, id * 1000);
        }
    }
    check_table(&l);

    /* A deleted id can come back. */
    set_ok(&l, 7, 4, 44);
    e = must_find(&l, 7);
    ck_assert_uint_eq(e->ttl, 4);
    ck_assert_uint_eq(e->deadline, 44);
    ck_assert(!e->revoking);
    ck_assert_uint_eq(l.count, 11);
    bl_lessor_free(&l);
}
END_TEST

/* Growing from 64 to 128 slots (at the 49th lease) keeps every field,
 * revoking flags included. */
START_TEST(test_grow_keeps_entries)
{
    struct bl_lessor l;
    bl_lessor_init(&l);
    for (uint64_t id = 1; id <= 48; id++) {
        set_ok(&l, id * 7919, id, id * 10);
        if (id % 3 == 0) {
            must_find(&l, id * 7919)->revoking = true;
        }
    }
    ck_assert_uint_eq(l.cap, 64);
    set_ok(&l, 49 * 7919, 49, 490);
    ck_assert_uint_eq(l.cap, 128);
    ck_assert_uint_eq(l.count, 49);
    for (uint64_t id = 1; id <= 49; id++) {
        struct bl_lessor_entry *e = must_find(&l, id * 7919);
        ck_assert_uint_eq(e->ttl, id);
        ck_assert_uint_eq(e->deadline, id * 10);
        ck_assert_int_eq(e->revoking, id % 3 == 0 && id != 49);
    }
    check_table(&l);
    bl_lessor_free(&l);
}
END_TEST

/* ---- expiry -------------------------------------------------------------- */

START_TEST(test_expired_boundary)
{
    struct bl_lessor l;
    uint64_t ids[4] = {0};
    bl_lessor_init(&l);
    ck_assert_uint_eq(bl_lessor_expired(&l, UINT64_MAX, ids, 4), 0);

    set_ok(&l, 1, 10, 1000);
    set_ok(&l, 2, 10, 1001);
    set_ok(&l, 3, 10, 0); /* no deadline: never expires */
    set_ok(&l, 4, 10, 999);

    expect_expired(&l, 0, NULL, 0);
    expect_expired(&l, 998, NULL, 0);
    expect_expired(&l, 999, (uint64_t[]){4}, 1);
    expect_expired(&l, 1000, (uint64_t[]){1, 4}, 2); /* deadline == now: expired */
    expect_expired(&l, 1001, (uint64_t[]){1, 2, 4}, 3);
    expect_expired(&l, UINT64_MAX, (uint64_t[]){1, 2, 4}, 3);

    /* Expired does not remove anything. */
    ck_assert_uint_eq(l.count, 4);
    expect_expired(&l, 1001, (uint64_t[]){1, 2, 4}, 3);

    /* A revoke in flight: skipped until the flag is cleared. */
    must_find(&l, 1)->revoking = true;
    expect_expired(&l, 1001, (uint64_t[]){2, 4}, 2);
    must_find(&l, 1)->revoking = false;
    expect_expired(&l, 1001, (uint64_t[]){1, 2, 4}, 3);

    /* A set (a new grant of the id) replaces the deadline. */
    set_ok(&l, 4, 10, 5000);
    expect_expired(&l, 1001, (uint64_t[]){1, 2}, 2);
    bl_lessor_free(&l);
}
END_TEST

/* A follower keeps TTLs but no deadlines: nothing ever expires. */
START_TEST(test_follower_never_expires)
{
    struct bl_lessor l;
    uint64_t ids[8];
    bl_lessor_init(&l);
    for (uint64_t id = 1; id <= 100; id++) {
        set_ok(&l, id, id % 5, 0); /* a TTL of 0 too */
    }
    ck_assert_uint_eq(bl_lessor_expired(&l, 0, ids, 8), 0);
    ck_assert_uint_eq(bl_lessor_expired(&l, 1, ids, 8), 0);
    ck_assert_uint_eq(bl_lessor_expired(&l, UINT64_MAX, ids, 8), 0);

    /* One lease with a deadline among them: only that one. */
    set_ok(&l, 50, 3, 7);
    ck_assert_uint_eq(bl_lessor_expired(&l, UINT64_MAX, ids, 8), 1);
    ck_assert_uint_eq(ids[0], 50);
    bl_lessor_free(&l);
}
END_TEST

/* At most max ids; marking them revoking (as the leader does when it
 * proposes the revokes) lets the next call return the others. */
START_TEST(test_expired_max)
{
    enum { N = 20, SENTINEL = 0xdead };
    struct bl_lessor l;
    uint64_t ids[N + 4];
    bool seen[N + 1] = {false};
    size_t total = 0;
    bl_lessor_init(&l);
    for (uint64_t id = 1; id <= N; id++) {
        set_ok(&l, id, 1, 100);
    }
    set_ok(&l, 1000, 1, 201); /* not yet */

    for (size_t i = 0; i < N + 4; i++) {
        ids[i] = SENTINEL;
    }
    ck_assert_uint_eq(bl_lessor_expired(&l, 200, ids, 0), 0);
    ck_assert_uint_eq(ids[0], SENTINEL);

    const size_t want[] = {7, 7, 6, 0, 0};
    for (size_t round = 0; round < sizeof want / sizeof want[0]; round++) {
        for (size_t i = 0; i < N + 4; i++) {
            ids[i] = SENTINEL;
        }
        size_t n = bl_lessor_expired(&l, 200, ids, 7);
        ck_assert_msg(n == want[round], "round %zu: %zu ids, want %zu", round, n, want[round]);
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg(ids[i] >= 1 && ids[i] <= N, "round %zu: id %llu", round,
                          (unsigned long long)ids[i]);
            ck_assert_msg(!seen[ids[i]], "id %llu returned twice", (unsigned long long)ids[i]);
            seen[ids[i]] = true;
            must_find(&l, ids[i])->revoking = true;
        }
        for (size_t i = n; i < N + 4; i++) {
            ck_assert_msg(ids[i] == SENTINEL, "round %zu: wrote ids[%zu] past %zu", round, i, n);
        }
        total += n;
    }
    ck_assert_uint_eq(total, N);

    /* A failed revoke clears its flag: that lease comes back, alone. */
    must_find(&l, 13)->revoking = false;
    expect_expired(&l, 200, (uint64_t[]){13}, 1);
    expect_expired(&l, 201, (uint64_t[]){13, 1000}, 2);
    bl_lessor_free(&l);
}
END_TEST

/* A new leader gives every lease a full TTL from its election: a lease
 * about to expire under the old leader lives ttl seconds more. */
/* Deadlines saturate: a TTL too large for the clock never expires early. */
START_TEST(test_deadline_saturates)
{
    struct bl_lessor l;
    uint64_t ids[4];

    ck_assert_uint_eq(bl_lessor_deadline(5000, 10), 15000);
    ck_assert_uint_eq(bl_lessor_deadline(5000, UINT64_MAX / 1000), UINT64_MAX);
    ck_assert_uint_eq(bl_lessor_deadline(5000, 18446744073709552ull), UINT64_MAX);
    ck_assert_uint_eq(bl_lessor_deadline(UINT64_MAX - 999, 1), UINT64_MAX);
    bl_lessor_init(&l);
    ck_assert_int_eq(bl_lessor_set(&l, 7, 18446744073709552ull, 0), 0);
    bl_lessor_promote(&l, 5000);
    ck_assert_uint_eq(bl_lessor_find(&l, 7)->deadline, UINT64_MAX);
    ck_assert_uint_eq(bl_lessor_expired(&l, 5000 + 384, ids, 4), 0);
    bl_lessor_free(&l);
}
END_TEST

START_TEST(test_promote)
{
    struct bl_lessor l;
    bl_lessor_init(&l);
    bl_lessor_promote(&l, 5000); /* empty, never allocated */
    ck_assert_uint_eq(l.count, 0);

    set_ok(&l, 1, 10, 1000); /* old leader: expired at 1000 */
    set_ok(&l, 2, 3, 0);     /* follower: no deadline */
    set_ok(&l, 3, 60, 2000);
    must_find(&l, 3)->revoking = true; /* the old leader's revoke in flight */
    expect_expired(&l, 5000, (uint64_t[]){1}, 1);

    bl_lessor_promote(&l, 5000);
    ck_assert_uint_eq(must_find(&l, 1)->deadline, 15000);
    ck_assert_uint_eq(must_find(&l, 2)->deadline, 8000);
    ck_assert_uint_eq(must_find(&l, 3)->deadline, 65000);
    ck_assert(!must_find(&l, 3)->revoking);
    ck_assert_uint_eq(must_find(&l, 1)->ttl, 10);
    ck_assert_uint_eq(l.count, 3);

    expect_expired(&l, 5000, NULL, 0);
    expect_expired(&l, 7999, NULL, 0);
    expect_expired(&l, 8000, (uint64_t[]){2}, 1);
    expect_expired(&l, 14999, (uint64_t[]){2}, 1);
    expect_expired(&l, 15000, (uint64_t[]){1, 2}, 2);
    expect_expired(&l, 64999, (uint64_t[]){1, 2}, 2);
    expect_expired(&l, 65000, (uint64_t[]){1, 2, 3}, 3);

    /* Promoting again (the next term) starts over from that moment. */
    must_find(&l, 2)->revoking = true;
    bl_lessor_promote(&l, 100000);
    ck_assert_uint_eq(must_find(&l, 1)->deadline, 110000);
    ck_assert_uint_eq(must_find(&l, 2)->deadline, 103000);
    ck_assert(!must_find(&l, 2)->revoking);
    expect_expired(&l, 102999, NULL, 0);
    expect_expired(&l, 103000, (uint64_t[]){2}, 1);
    bl_lessor_free(&l);
}
END_TEST

/* A keepalive as bl_member_lease_keepalive() does it: find, then deadline
 * := now + TTL. Only that lease moves, also in a table that has grown. */
START_TEST(test_keepalive)
{
    enum { N = 200 };
    struct bl_lessor l;
    bl_lessor_init(&l);
    for (uint64_t id = 1; id <= N; id++) {
        set_ok(&l, id * 1000003, 5 + id % 20, 0);
    }
    bl_lessor_promote(&l, 1000);

    uint64_t now = 4000, kid = 77 * 1000003;
    struct bl_lessor_entry *e = must_find(&l, kid);
    ck_assert_uint_eq(e->ttl, 5 + 77 % 20);
    ck_assert_uint_eq(e->deadline, 1000 + (5 + 77 % 20) * 1000);
    e->deadline = now + e->ttl * 1000;

    for (uint64_t id = 1; id <= N; id++) {
        e = must_find(&l, id * 1000003);
        uint64_t want = (id == 77 ? now : 1000) + (5 + id % 20) * 1000;
        ck_assert_msg(e->deadline == want, "lease %llu: deadline %llu, want %llu",
                      (unsigned long long)id, (unsigned long long)e->deadline,
                      (unsigned long long)want);
    }

    /* The others with its TTL (22 s) expire at 23000, the longest (24 s) at
     * 25000; it lives until 26000. */
    uint64_t ids[N];
    size_t n = bl_lessor_expired(&l, 23000, ids, N);
    ck_assert_uint_eq(n, N / 20 * 18 - 1); /* TTLs 5..22: 18 of every 20 ids */
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_ne(ids[i], kid);
    }
    n = bl_lessor_expired(&l, 25999, ids, N);
    ck_assert_uint_eq(n, N - 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_ne(ids[i], kid);
    }
    ck_assert_uint_eq(bl_lessor_expired(&l, 26000, ids, N), N);
    bl_lessor_free(&l);
}
END_TEST

/* ---- the hash table -------------------------------------------------------- */

/* Backward-shift deletion around the end of a 64-slot table, slot by slot. */
START_TEST(test_wraparound_delete)
{
    struct bl_lessor l;
    const size_t C = 64;
    uint64_t a1 = id_at(C, 63, 1, 0), a2 = id_at(C, 63, 1, 1), a3 = id_at(C, 63, 1, 2);
    uint64_t b = id_at(C, 0, 1, 0), c = id_at(C, 1, 1, 0), d = id_at(C, 4, 1, 0);
    uint64_t e62 = id_at(C, 62, 1, 0);
    bl_lessor_init(&l);

    /* Home 63 x3, home 0, home 1, home 4: one run 63, 0, 1, 2, 3, 4. */
    set_ok(&l, a1, 1, 11);
    set_ok(&l, a2, 2, 12);
    set_ok(&l, a3, 3, 13);
    set_ok(&l, b, 4, 14);
    set_ok(&l, c, 5, 15);
    set_ok(&l, d, 6, 16);
    ck_assert_uint_eq(l.cap, C);
    ck_assert_msg(l.slots[63].id == a1 && l.slots[0].id == a2 && l.slots[1].id == a3 &&
                      l.slots[2].id == b && l.slots[3].id == c && l.slots[4].id == d,
                  "layout not as computed: home() must match slot_of() in lessor.c");
    check_table(&l);

    /* Deleting a1 (slot 63) shifts a2, a3, b, c back by one across the
     * end; d is in its home slot and stays. */
    bl_lessor_del(&l, a1);
    ck_assert_uint_eq(l.slots[63].id, a2);
    ck_assert_uint_eq(l.slots[0].id, a3);
    ck_assert_uint_eq(l.slots[1].id, b);
    ck_assert_uint_eq(l.slots[2].id, c);
    ck_assert_uint_eq(l.slots[3].id, 0);
    ck_assert_uint_eq(l.slots[4].id, d);
    ck_assert_uint_eq(l.slots[63].ttl, 2);
    ck_assert_uint_eq(l.slots[63].deadline, 12);
    ck_assert_uint_eq(l.slots[2].ttl, 5);
    ck_assert_ptr_null(bl_lessor_find(&l, a1));
    check_table(&l);

    /* Deleting b (slot 1): c (home 1) moves home. */
    bl_lessor_del(&l, b);
    ck_assert_uint_eq(l.slots[0].id, a3);
    ck_assert_uint_eq(l.slots[1].id, c);
    ck_assert_uint_eq(l.slots[2].id, 0);
    check_table(&l);

    /* Deleting a2 (slot 63): a3 wraps back to 63; c, at home, stays. */
    bl_lessor_del(&l, a2);
    ck_assert_uint_eq(l.slots[63].id, a3);
    ck_assert_uint_eq(l.slots[0].id, 0);
    ck_assert_uint_eq(l.slots[1].id, c);
    ck_assert_uint_eq(l.slots[4].id, d);
    ck_assert_uint_eq(l.count, 3);
    check_table(&l);

    /* Home 62 in 62, home 63 in 63 and (wrapped) in 0: deleting the
     * first must move neither of the others, though the hole is before
     * them, since both their homes lie in (62, their slot]. */
    set_ok(&l, a1, 1, 11);
    ck_assert_uint_eq(l.slots[0].id, a1);
    set_ok(&l, e62, 7, 17);
    ck_assert_uint_eq(l.slots[62].id, e62);
    bl_lessor_del(&l, e62);
    ck_assert_uint_eq(l.slots[62].id, 0);
    ck_assert_uint_eq(l.slots[63].id, a3);
    ck_assert_uint_eq(l.slots[0].id, a1);
    ck_assert_uint_eq(l.slots[1].id, c);
    check_table(&l);

    /* And the hole at 63 with a1 (home 63) in 0: a1 moves back to 63. */
    bl_lessor_del(&l, a3);
    ck_assert_uint_eq(l.slots[63].id, a1);
    ck_assert_uint_eq(l.slots[0].id, 0);
    ck_assert_uint_eq(l.slots[1].id, c);
    ck_assert_uint_eq(l.count, 3);
    check_table(&l);
    bl_lessor_free(&l);
}
END_TEST

struct mlease {
    uint64_t id;
    uint64_t ttl, deadline;
    bool revoking, present;
};

#define POOL      1200
#define COLLIDERS 400

static struct mlease model[POOL];
static size_t model_count;

static void model_check_one(struct bl_lessor *l, const struct mlease *m, unsigned long step)
{
    struct bl_lessor_entry *e = bl_lessor_find(l, m->id);
    if (!m->present) {
        REQUIRE(e == NULL, "step %lu: deleted id %llu found", step, (unsigned long long)m->id);
        return;
    }
    REQUIRE(e != NULL, "step %lu: id %llu not found", step, (unsigned long long)m->id);
    REQUIRE(e->id == m->id && e->ttl == m->ttl && e->deadline == m->deadline &&
                e->revoking == m->revoking,
            "step %lu: id %llu: ttl %llu deadline %llu revoking %d, want %llu %llu %d", step,
            (unsigned long long)m->id, (unsigned long long)e->ttl, (unsigned long long)e->deadline,
            e->revoking, (unsigned long long)m->ttl, (unsigned long long)m->deadline, m->revoking);
}

/* Compare bl_lessor_expired(@now) with the model, with room for all and
 * with a small max. */
static void model_check_expired(struct bl_lessor *l, uint64_t now, unsigned long step)
{
    static uint64_t want[POOL], got[POOL + 1];
    size_t n = 0;
    for (size_t i = 0; i < POOL; i++) {
        const struct mlease *m = &model[i];
        if (m->present && !m->revoking && m->deadline != 0 && m->deadline <= now) {
            want[n++] = m->id;
        }
    }
    size_t k = bl_lessor_expired(l, now, got, POOL);
    REQUIRE(k == n, "step %lu: %zu expired at %llu, want %zu", step, k, (unsigned long long)now, n);
    sort_u64(want, n);
    sort_u64(got, k);
    for (size_t i = 0; i < n; i++) {
        REQUIRE(got[i] == want[i], "step %lu: expired id %llu, want %llu", step,
                (unsigned long long)got[i], (unsigned long long)want[i]);
    }
    size_t max = (size_t)rng_below(6);
    for (size_t i = 0; i <= max; i++) {
        got[i] = 0;
    }
    k = bl_lessor_expired(l, now, got, max);
    REQUIRE(k == (n < max ? n : max), "step %lu: %zu expired with max %zu of %zu", step, k, max, n);
    REQUIRE(got[max] == 0, "step %lu: wrote past max %zu", step, max);
    for (size_t i = 0; i < k; i++) {
        REQUIRE(bsearch(&got[i], want, n, sizeof *want, cmp_u64) != NULL,
                "step %lu: id %llu expired early", step, (unsigned long long)got[i]);
        for (size_t j = 0; j < i; j++) {
            REQUIRE(got[j] != got[i], "step %lu: id %llu twice", step, (unsigned long long)got[i]);
        }
    }
}

/* Random pool index: colliders and plain ids alike; @want_present 0/1 looks
 * for the next one in that state (-1: any). */
static size_t pick(int want_present)
{
    size_t i = rng_next() & 1 ? (size_t)rng_below(COLLIDERS)
                              : COLLIDERS + (size_t)rng_below(POOL - COLLIDERS);
    if (want_present < 0) {
        return i;
    }
    for (size_t n = 0; n < POOL; n++, i = (i + 1) % POOL) {
        if (model[i].present == (want_present != 0)) {
            return i;
        }
    }
    return i;
}

START_TEST(test_model_random)
{
    /* Targets for the count, phase by phase: small tables that wrap, then
     * growth to 2048 slots, deletions down to a handful, a clear. */
    static const size_t targets[] = {40, 2, 47, 10, 45, 200, 20, 700, 30, 1100, 5, 900, 0, 300};
    struct bl_lessor l;
    uint64_t now = 1;
    unsigned long step = 0, dels = 0, wrapped = 0;
    size_t max_cap = 0;

    rng_state = 0x1e550a5eedULL;
    /* Colliders: home in {cap-2, cap-1, 0, 1} at every capacity up to 1024. */
    for (uint64_t id = 1, n = 0; n < COLLIDERS; id++) {
        size_t h = home(1024, id);
        if (h >= 1022 || h <= 1) {
            model[n++].id = id;
        }
    }
    for (size_t n = COLLIDERS; n < POOL;) {
        uint64_t id = rng_next() >> 1;
        bool dup = id == 0;
        for (size_t i = 0; i < n && !dup; i++) {
            dup = model[i].id == id;
        }
        if (!dup) {
            model[n++].id = id;
        }
    }
    for (size_t i = 0; i < POOL; i++) {
        model[i].present = false;
    }
    model_count = 0;

    bl_lessor_init(&l);
    for (size_t phase = 0; phase < sizeof targets / sizeof targets[0]; phase++) {
        size_t target = targets[phase];
        if (target == 0) {
            bl_lessor_clear(&l);
            for (size_t i = 0; i < POOL; i++) {
                model[i].present = false;
            }
            model_count = 0;
        }
        for (unsigned long left = 20000; left > 0 && model_count != target; left--) {
            bool up = model_count < target;
            unsigned r = (unsigned)rng_below(100);
            size_t i;
            step++;
            now += rng_below(300);
            if (r < (up ? 55u : 25u)) { /* set: a new id when going up */
                i = pick(up ? 0 : -1);
                struct mlease *m = &model[i];
                m->ttl = 1 + rng_below(30);
                m->deadline = rng_below(3) == 0 ? 0 : now + rng_below(m->ttl * 1000 + 1);
                m->revoking = false;
                if (!m->present) {
                    m->present = true;
                    model_count++;
                }
                REQUIRE(bl_lessor_set(&l, m->id, m->ttl, m->deadline) == BL_OK, "step %lu: set",
                        step);
            } else if (r < 80) { /* del, mostly of a present id when going down */
                i = pick(up || rng_below(4) == 0 ? -1 : 1);
                if (model[i].present) {
                    model[i].present = false;
                    model_count--;
                    dels++;
                }
                bl_lessor_del(&l, model[i].id);
            } else if (r < 88) { /* find */
                i = pick(-1);
            } else if (r < 93) { /* a revoke proposed, or one that failed */
                i = pick(1);
                if (model[i].present) {
                    model[i].revoking = !model[i].revoking;
                    must_find(&l, model[i].id)->revoking = model[i].revoking;
                }
            } else if (r < 97) { /* keepalive */
                i = pick(1);
                if (model[i].present) {
                    struct bl_lessor_entry *e = must_find(&l, model[i].id);
                    model[i].deadline = e->deadline = now + e->ttl * 1000;
                }
            } else if (r < 98) { /* elected */
                i = pick(-1);
                bl_lessor_promote(&l, now);
                for (size_t j = 0; j < POOL; j++) {
                    model[j].deadline = now + model[j].ttl * 1000;
                    model[j].revoking = false;
                }
            } else {
                i = pick(-1);
                model_check_expired(&l, now + rng_below(40000), step);
            }
            model_check_one(&l, &model[i], step);
            REQUIRE(l.count == model_count, "step %lu: count %zu, want %zu", step, l.count,
                    model_count);
            if (step % 32 == 0 || model_count == target) {
                check_table(&l);
                for (size_t j = 0; j < POOL; j++) {
                    model_check_one(&l, &model[j], step);
                }
                for (size_t j = 0; j < l.cap; j++) {
                    wrapped += l.slots[j].id != 0 && j < home(l.cap, l.slots[j].id);
                }
                model_check_expired(&l, now, step);
            }
            max_cap = l.cap > max_cap ? l.cap : max_cap;
        }
        ck_assert_msg(model_count == target, "phase %zu: count %zu, target %zu", phase, model_count,
                      target);
    }
    /* The run did what it is for: grew to 2048 slots, deleted a lot, and
     * saw entries stored past the end of the table. */
    ck_assert_uint_eq(max_cap, 2048);
    ck_assert_uint_gt(dels, 3000);
    ck_assert_uint_gt(wrapped, 100);
    bl_lessor_free(&l);
}
END_TEST

/* ---- clear, free, allocation failure -------------------------------------- */

START_TEST(test_clear_and_free)
{
    struct bl_lessor l;
    uint64_t ids[4];

    /* Never used: clear, free, free again. */
    bl_lessor_init(&l);
    bl_lessor_clear(&l);
    ck_assert_uint_eq(l.count, 0);
    bl_lessor_free(&l);
    bl_lessor_free(&l);
    ck_assert_ptr_null(l.slots);

    for (uint64_t id = 1; id <= 100; id++) {
        set_ok(&l, id, 5, 10);
    }
    size_t cap = l.cap;
    ck_assert_uint_eq(cap, 256);
    bl_lessor_clear(&l);
    ck_assert_uint_eq(l.count, 0);
    ck_assert_uint_eq(l.cap, cap);
    for (uint64_t id = 1; id <= 100; id++) {
        ck_assert_ptr_null(bl_lessor_find(&l, id));
    }
    ck_assert_uint_eq(bl_lessor_expired(&l, UINT64_MAX, ids, 4), 0);
    check_table(&l);
    bl_lessor_clear(&l);

    /* Reusable after clear: nothing of the old contents comes back. */
    set_ok(&l, 50, 9, 0);
    set_ok(&l, 5000, 8, 0);
    ck_assert_uint_eq(l.count, 2);
    ck_assert_uint_eq(must_find(&l, 50)->ttl, 9);
    ck_assert_ptr_null(bl_lessor_find(&l, 51));
    ck_assert_uint_eq(bl_lessor_expired(&l, UINT64_MAX, ids, 4), 0);
    check_table(&l);

    /* Free leaves an empty lessor, usable and freeable again. */
    bl_lessor_free(&l);
    ck_assert_uint_eq(l.count, 0);
    ck_assert_ptr_null(bl_lessor_find(&l, 50));
    set_ok(&l, 50, 1, 0);
    ck_assert_uint_eq(l.count, 1);
    bl_lessor_free(&l);
}
END_TEST

/* Growing fails: the set is refused with BL_ENOMEM and the table is as
 * before; updates need no memory; once memory is back the set succeeds. */
START_TEST(test_grow_failure)
{
    struct bl_lessor l;
    bl_lessor_init(&l);

    unsigned long before = calloc_n;
    calloc_fail = true;
    int rv = bl_lessor_set(&l, 1, 5, 0);
    calloc_fail = false;
    if (calloc_n == before) {
        /* Not our calloc (a tool's allocator): nothing to test. */
        ck_assert_int_eq(rv, BL_OK);
        bl_lessor_free(&l);
        return;
    }
    ck_assert_int_eq(rv, BL_ENOMEM);
    ck_assert_uint_eq(l.count, 0);
    ck_assert_uint_eq(l.cap, 0);
    ck_assert_ptr_null(bl_lessor_find(&l, 1));

    for (uint64_t id = 1; id <= 48; id++) {
        set_ok(&l, id, id, id * 100);
    }
    struct bl_lessor_entry *slots = l.slots;
    ck_assert_uint_eq(l.cap, 64);
    calloc_fail = true;
    rv = bl_lessor_set(&l, 49, 49, 4900);
    int rv_update = bl_lessor_set(&l, 48, 480, 48000);
    calloc_fail = false;
    ck_assert_int_eq(rv, BL_ENOMEM);
    ck_assert_int_eq(rv_update, BL_OK);
    ck_assert_ptr_eq(l.slots, slots);
    ck_assert_uint_eq(l.cap, 64);
    ck_assert_uint_eq(l.count, 48);
    ck_assert_ptr_null(bl_lessor_find(&l, 49));
    for (uint64_t id = 1; id <= 47; id++) {
        struct bl_lessor_entry *e = must_find(&l, id);
        ck_assert_uint_eq(e->ttl, id);
        ck_assert_uint_eq(e->deadline, id * 100);
    }
    ck_assert_uint_eq(must_find(&l, 48)->ttl, 480);
    check_table(&l);

    set_ok(&l, 49, 49, 4900);
    ck_assert_uint_eq(l.cap, 128);
    ck_assert_uint_eq(l.count, 49);
    ck_assert_uint_eq(must_find(&l, 49)->deadline, 4900);
    check_table(&l);
    bl_lessor_free(&l);
}
END_TEST

static Suite *lessor_suite(void)
{
    Suite *s = suite_create("lessor");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_set_find_del);
    tcase_add_test(tc, test_grow_keeps_entries);
    tcase_add_test(tc, test_expired_boundary);
    tcase_add_test(tc, test_deadline_saturates);
    tcase_add_test(tc, test_follower_never_expires);
    tcase_add_test(tc, test_expired_max);
    tcase_add_test(tc, test_promote);
    tcase_add_test(tc, test_keepalive);
    tcase_add_test(tc, test_wraparound_delete);
    tcase_add_test(tc, test_model_random);
    tcase_add_test(tc, test_clear_and_free);
    tcase_add_test(tc, test_grow_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lessor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
