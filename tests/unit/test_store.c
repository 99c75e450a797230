/* Unit tests of the LMDB store (raft_glue/store.c).
 *
 * Each test gets a fresh directory from mkdtemp() under /tmp, removed at
 * teardown; the store lives in DIR/store so that the siblings a replace
 * makes (store.old, store.tmp-replace) stay inside it. Scans are checked
 * against a model: a sorted array of the keys and a filter written the
 * obvious way. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkdtemp, dirfd, openat */
#endif

#include "command.h" /* BL_KEY_MAX */
#include "error.h"
#include "store.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ck_assert for hot loops: Check records a mark point for every passing
 * ck_assert, which costs more than the code under test here. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ck_abort_msg(__VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

/* ---- fixture ---------------------------------------------------------------- */

static char tmp_root[64];
static char store_dir[128];
static struct bl_store *store;
static char errmsg[BL_ERRMSG_SIZE];

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        ck_assert_ptr_nonnull(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        closedir(d);
        ck_assert_int_eq(rmdir(path), 0);
    } else {
        ck_assert_int_eq(unlink(path), 0);
    }
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void open_store(const char *dir, size_t map_size, struct bl_store **out)
{
    struct bl_store_opts opts = {map_size, true};
    int rv = bl_store_open(dir, &opts, out, errmsg);
    ck_assert_msg(rv == BL_OK, "open %s: %d %s", dir, rv, errmsg);
}

static void setup(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/ballast-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_root));
    snprintf(store_dir, sizeof store_dir, "%s/store", tmp_root);
    open_store(store_dir, 0, &store);
}

static void teardown(void)
{
    if (store != NULL) {
        bl_store_close(store);
        store = NULL;
    }
    rm_rf(tmp_root);
}

/* ---- helpers ------------------------------------------------------------------- */

static struct bl_txn *begin(struct bl_store *s, bool write)
{
    struct bl_txn *t = NULL;
    int rv = bl_store_begin(s, write, &t);
    ck_assert_msg(rv == BL_OK, "begin: %d %s", rv, bl_store_errmsg(s));
    return t;
}

static void commit(struct bl_txn *t, struct bl_store *s)
{
    int rv = bl_store_commit(t);
    ck_assert_msg(rv == BL_OK, "commit: %d %s", rv, bl_store_errmsg(s));
}

static void put(struct bl_txn *t, const void *key, size_t key_len, const void *val, size_t val_len,
                uint64_t rev)
{
    struct bl_kv kv = {key, key_len, val, val_len, rev, rev, 1, 0};
    int rv = bl_store_kv_put(t, &kv);
    ck_assert_msg(rv == BL_OK, "put of %zu bytes: %d", key_len, rv);
}

static void put_str(struct bl_txn *t, const char *key, const char *val, uint64_t rev)
{
    put(t, key, strlen(key), val, strlen(val), rev);
}

/* The value of @key as a C string in @buf, or NULL when absent. */
static const char *get_str(struct bl_txn *t, const char *key, char *buf, size_t size)
{
    struct bl_kv kv;
    int rv = bl_store_kv_get(t, key, strlen(key), &kv);
    if (rv == BL_ENOTFOUND) {
        return NULL;
    }
    ck_assert_int_eq(rv, BL_OK);
    ck_assert_uint_lt(kv.value_len, size);
    memcpy(buf, kv.value, kv.value_len);
    buf[kv.value_len] = '\0';
    return buf;
}

/* A collected key. */
struct key {
    uint8_t *p;
    size_t len;
};

struct collect {
    struct key *keys;
    size_t n;
    size_t cap;
    size_t stop_after; /* return 1 after this many, 0 for never */
    int fail_with;     /* return this after stop_after keys instead */
};

static int collect_cb(void *arg, const struct bl_kv *kv)
{
    struct collect *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap == 0 ? 64 : c->cap * 2;
        c->keys = realloc(c->keys, c->cap * sizeof c->keys[0]);
        REQUIRE(c->keys != NULL, "out of memory");
    }
    c->keys[c->n].p = malloc(kv->key_len);
    REQUIRE(c->keys[c->n].p != NULL, "out of memory");
    memcpy(c->keys[c->n].p, kv->key, kv->key_len);
    c->keys[c->n].len = kv->key_len;
    c->n++;
    if (c->stop_after != 0 && c->n == c->stop_after) {
        return c->fail_with != 0 ? c->fail_with : 1;
    }
    return 0;
}

static void collect_free(struct collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->keys[i].p);
    }
    free(c->keys);
    memset(c, 0, sizeof *c);
}

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n == 0 ? 0 : memcmp(x->p, y->p, n);
    if (c != 0) {
        return c;
    }
    return x->len < y->len ? -1 : x->len > y->len;
}

static bool key_has_prefix(const struct key *k, const struct key *prefix)
{
    return k->len >= prefix->len && (prefix->len == 0 || memcmp(k->p, prefix->p, prefix->len) == 0);
}

static void read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_gt(n, 0);
    rewind(f);
    *data = malloc((size_t)n);
    ck_assert_ptr_nonnull(*data);
    ck_assert_uint_eq(fread(*data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
}

/* ---- kv basics ---------------------------------------------------------------- */

START_TEST(test_kv_round_trip)
{
    struct bl_txn *t = begin(store, true);
    struct bl_kv in = {(const uint8_t *)"k\0ey", 4, (const uint8_t *)"v\0alue", 6, 5, 7, 3, 99};
    ck_assert_int_eq(bl_store_kv_put(t, &in), BL_OK);
    struct bl_kv empty = {(const uint8_t *)"e", 1, NULL, 0, 1, 1, 1, 0};
    ck_assert_int_eq(bl_store_kv_put(t, &empty), BL_OK);
    commit(t, store);

    struct bl_kv out;
    t = begin(store, false);
    ck_assert_int_eq(bl_store_kv_get(t, "k\0ey", 4, &out), BL_OK);
    ck_assert_uint_eq(out.key_len, 4);
    ck_assert_int_eq(memcmp(out.key, "k\0ey", 4), 0);
    ck_assert_uint_eq(out.value_len, 6);
    ck_assert_int_eq(memcmp(out.value, "v\0alue", 6), 0);
    ck_assert_uint_eq(out.create_revision, 5);
    ck_assert_uint_eq(out.mod_revision, 7);
    ck_assert_uint_eq(out.version, 3);
    ck_assert_uint_eq(out.lease, 99);
    ck_assert_int_eq(bl_store_kv_get(t, "e", 1, &out), BL_OK);
    ck_assert_uint_eq(out.value_len, 0);
    ck_assert_int_eq(bl_store_kv_get(t, "k", 1, &out), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, "k\0eyy", 5, &out), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, "nope", 4, &out), BL_ENOTFOUND);
    bl_store_abort(t);

    /* Overwrite with new metadata, then delete. */
    t = begin(store, true);
    struct bl_kv upd = {(const uint8_t *)"k\0ey", 4, (const uint8_t *)"x", 1, 5, 8, 4, 0};
    ck_assert_int_eq(bl_store_kv_put(t, &upd), BL_OK);
    ck_assert_int_eq(bl_store_kv_get(t, "k\0ey", 4, &out), BL_OK);
    ck_assert_uint_eq(out.mod_revision, 8);
    ck_assert_uint_eq(out.version, 4);
    ck_assert_uint_eq(out.value_len, 1);
    ck_assert_int_eq(bl_store_kv_del(t, "k\0ey", 4), BL_OK);
    ck_assert_int_eq(bl_store_kv_del(t, "k\0ey", 4), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, "k\0ey", 4, &out), BL_ENOTFOUND);
    commit(t, store);

    t = begin(store, false);
    ck_assert_int_eq(bl_store_kv_get(t, "k\0ey", 4, &out), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, "e", 1, &out), BL_OK);
    bl_store_abort(t);
}
END_TEST

START_TEST(test_kv_bad_keys)
{
    static uint8_t big[BL_KEY_MAX + 1];
    struct bl_kv out;
    struct bl_txn *t = begin(store, true);
    struct bl_kv kv = {big, 0, NULL, 0, 1, 1, 1, 0};
    ck_assert_int_eq(bl_store_kv_put(t, &kv), BL_EBADREQ);
    kv.key_len = BL_KEY_MAX + 1;
    ck_assert_int_eq(bl_store_kv_put(t, &kv), BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(bl_store_errmsg(store), "kv put"));
    ck_assert_int_eq(bl_store_kv_get(t, big, 0, &out), BL_EBADREQ);
    ck_assert_int_eq(bl_store_kv_get(t, big, BL_KEY_MAX + 1, &out), BL_EBADREQ);
    ck_assert_int_eq(bl_store_kv_del(t, big, 0), BL_EBADREQ);
    ck_assert_int_eq(bl_store_kv_del(t, big, BL_KEY_MAX + 1), BL_EBADREQ);
    kv.key_len = BL_KEY_MAX; /* the largest key is fine */
    ck_assert_int_eq(bl_store_kv_put(t, &kv), BL_OK);
    ck_assert_int_eq(bl_store_kv_get(t, big, BL_KEY_MAX, &out), BL_OK);
    commit(t, store);
}
END_TEST

START_TEST(test_abort_discards)
{
    char buf[64];
    uint64_t v;
    struct bl_txn *t = begin(store, true);
    put_str(t, "a", "1", 1);
    ck_assert_int_eq(bl_store_meta_set(t, "revision", 1), BL_OK);
    commit(t, store);

    t = begin(store, true);
    put_str(t, "a", "2", 2);
    put_str(t, "b", "2", 2);
    ck_assert_int_eq(bl_store_meta_set(t, "revision", 2), BL_OK);
    ck_assert_str_eq(get_str(t, "a", buf, sizeof buf), "2");
    bl_store_abort(t);

    t = begin(store, false);
    ck_assert_str_eq(get_str(t, "a", buf, sizeof buf), "1");
    ck_assert_ptr_null(get_str(t, "b", buf, sizeof buf));
    ck_assert_int_eq(bl_store_meta_get(t, "revision", &v), BL_OK);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(bl_store_commit(t), BL_OK); /* commit of a read txn just ends it */
}
END_TEST

START_TEST(test_read_snapshot_isolation)
{
    char buf[64];
    struct bl_txn *w = begin(store, true);
    put_str(w, "k", "old", 1);
    commit(w, store);
    struct bl_txn *r = begin(store, false);
    w = begin(store, true);
    put_str(w, "k", "new", 2);
    commit(w, store);
    ck_assert_str_eq(get_str(r, "k", buf, sizeof buf), "old");
    bl_store_abort(r);
    r = begin(store, false);
    ck_assert_str_eq(get_str(r, "k", buf, sizeof buf), "new");
    bl_store_abort(r);
}
END_TEST

START_TEST(test_meta)
{
    uint64_t v = 123;
    struct bl_txn *t = begin(store, true);
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &v), BL_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(bl_store_meta_set(t, "applied_index", 42), BL_OK);
    ck_assert_int_eq(bl_store_meta_set(t, "revision", UINT64_MAX), BL_OK);
    ck_assert_int_eq(bl_store_meta_set(t, "", 1), BL_EBADREQ);
    ck_assert_int_eq(bl_store_meta_get(t, "", &v), BL_EBADREQ);
    commit(t, store);

    t = begin(store, true);
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &v), BL_OK);
    ck_assert_uint_eq(v, 42);
    ck_assert_int_eq(bl_store_meta_get(t, "revision", &v), BL_OK);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(bl_store_meta_set(t, "applied_index", 43), BL_OK);
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &v), BL_OK);
    ck_assert_uint_eq(v, 43);
    commit(t, store);

    /* Meta names do not collide with kv keys. */
    t = begin(store, false);
    struct bl_kv kv;
    ck_assert_int_eq(bl_store_kv_get(t, "revision", 8, &kv), BL_ENOTFOUND);
    bl_store_abort(t);
}
END_TEST

/* ---- long keys ------------------------------------------------------------------ */

START_TEST(test_long_keys)
{
    static const size_t lens[] = {479, 480, 481, 482, 500, 1000, 2048, 4095, 4096};
    const size_t n = sizeof lens / sizeof lens[0];
    uint8_t *keys[sizeof lens / sizeof lens[0]];
    struct bl_kv out;

    /* All share their first 479 bytes, so 481.. share their first 480. */
    for (size_t i = 0; i < n; i++) {
        keys[i] = malloc(lens[i]);
        ck_assert_ptr_nonnull(keys[i]);
        for (size_t j = 0; j < lens[i]; j++) {
            keys[i][j] = (uint8_t)(j < 479 ? 'p' : 'a' + (j + i) % 26);
        }
    }
    struct bl_txn *t = begin(store, true);
    for (size_t i = 0; i < n; i++) {
        put(t, keys[i], lens[i], &i, sizeof i, i + 1);
    }
    put_str(t, "other", "x", 100);
    commit(t, store);

    t = begin(store, false);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(bl_store_kv_get(t, keys[i], lens[i], &out), BL_OK);
        ck_assert_uint_eq(out.key_len, lens[i]);
        ck_assert_int_eq(memcmp(out.key, keys[i], lens[i]), 0);
        ck_assert_uint_eq(out.value_len, sizeof(size_t));
        size_t v;
        memcpy(&v, out.value, sizeof v);
        ck_assert_uint_eq(v, i);
        ck_assert_uint_eq(out.create_revision, i + 1);
    }
    /* A long key that differs only after byte 480 is another key. */
    uint8_t *miss = malloc(1000);
    ck_assert_ptr_nonnull(miss);
    memcpy(miss, keys[5], 1000);
    miss[999] ^= 1;
    ck_assert_int_eq(bl_store_kv_get(t, miss, 1000, &out), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, keys[5], 999, &out), BL_ENOTFOUND);

    /* Every one is listed once by a prefix scan, and by a scan whose
     * prefix is longer than 480 bytes where it applies. */
    struct collect c = {0};
    ck_assert_int_eq(bl_store_kv_scan(t, keys[0], 479, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, n);
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t j = 0; j < c.n; j++) {
            if (c.keys[j].len == lens[i] && memcmp(c.keys[j].p, keys[i], lens[i]) == 0) {
                found++;
            }
        }
        ck_assert_uint_eq(found, 1);
    }
    collect_free(&c);
    /* Prefix = the first 600 bytes of the 1000-byte key: keys 5.. whose
     * first 600 bytes agree with it. */
    ck_assert_int_eq(bl_store_kv_scan(t, keys[5], 600, NULL, 0, collect_cb, &c), BL_OK);
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] >= 600 && memcmp(keys[i], keys[5], 600) == 0) {
            want++;
        }
    }
    ck_assert_uint_ge(want, 1);
    ck_assert_uint_eq(c.n, want);
    for (size_t j = 0; j < c.n; j++) {
        ck_assert_int_eq(memcmp(c.keys[j].p, keys[5], 600), 0);
    }
    collect_free(&c);

    /* Paging one key at a time through them returns each exactly once. */
    size_t pages = 0;
    struct collect all = {0};
    const uint8_t *after = NULL;
    size_t after_len = 0;
    uint8_t *last = NULL;
    for (;;) {
        struct collect page = {0};
        page.stop_after = 1;
        ck_assert_int_eq(bl_store_kv_scan(t, keys[0], 479, after, after_len, collect_cb, &page),
                         BL_OK);
        if (page.n == 0) {
            break;
        }
        free(last);
        last = malloc(page.keys[0].len);
        ck_assert_ptr_nonnull(last);
        memcpy(last, page.keys[0].p, page.keys[0].len);
        after = last;
        after_len = page.keys[0].len;
        collect_cb(&all, &(struct bl_kv){.key = last, .key_len = after_len});
        collect_free(&page);
        pages++;
        ck_assert_uint_le(pages, n);
    }
    free(last);
    ck_assert_uint_eq(all.n, n);
    qsort(all.keys, all.n, sizeof all.keys[0], key_cmp);
    for (size_t j = 1; j < all.n; j++) {
        ck_assert_int_lt(key_cmp(&all.keys[j - 1], &all.keys[j]), 0);
    }
    collect_free(&all);
    bl_store_abort(t);

    /* Deleting one of two keys sharing 480 bytes leaves the other. */
    t = begin(store, true);
    ck_assert_int_eq(bl_store_kv_del(t, miss, 1000), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_del(t, keys[2], lens[2]), BL_OK);
    commit(t, store);
    t = begin(store, false);
    ck_assert_int_eq(bl_store_kv_get(t, keys[2], lens[2], &out), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_kv_get(t, keys[3], lens[3], &out), BL_OK);
    ck_assert_int_eq(bl_store_kv_get(t, keys[8], lens[8], &out), BL_OK);
    ck_assert_int_eq(bl_store_kv_scan(t, keys[0], 479, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, n - 1);
    collect_free(&c);
    bl_store_abort(t);

    free(miss);
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
    }
}
END_TEST

/* ---- scans against a model ------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* A random short key over a small alphabet (many shared prefixes). */
static struct key random_key(size_t min_len)
{
    static const uint8_t alphabet[] = {'a', 'b', 'c', '/', 0x00, 0xff};
    struct key k;
    k.len = min_len + (size_t)(rng_next() % 6);
    k.p = malloc(k.len > 0 ? k.len : 1);
    REQUIRE(k.p != NULL, "out of memory");
    for (size_t i = 0; i < k.len; i++) {
        k.p[i] = alphabet[rng_next() % sizeof alphabet];
    }
    return k;
}

/* The model's answer: keys with @prefix strictly after @after, in order. */
static size_t model_scan(const struct key *sorted, size_t n, const struct key *prefix,
                         const struct key *after, struct key *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (key_has_prefix(&sorted[i], prefix) &&
            (after->len == 0 || key_cmp(&sorted[i], after) > 0)) {
            out[m++] = sorted[i];
        }
    }
    return m;
}

static void assert_same(const struct collect *c, const struct key *want, size_t n)
{
    REQUIRE(c->n == n, "scan gave %zu keys, the model %zu", c->n, n);
    for (size_t i = 0; i < n; i++) {
        REQUIRE(key_cmp(&c->keys[i], &want[i]) == 0, "key %zu differs from the model", i);
    }
}

START_TEST(test_scan_model)
{
    enum { N = 400 };
    struct key *keys = calloc(N, sizeof *keys);
    struct key *want = calloc(N, sizeof *want);
    ck_assert_ptr_nonnull(keys);
    ck_assert_ptr_nonnull(want);
    rng_state = 12345;
    size_t n = 0;
    struct bl_txn *t = begin(store, true);
    for (size_t i = 0; i < N; i++) {
        struct key k = random_key(1);
        bool dup = false;
        for (size_t j = 0; j < n; j++) {
            dup = dup || key_cmp(&keys[j], &k) == 0;
        }
        if (dup) {
            free(k.p);
            continue;
        }
        keys[n++] = k;
        put(t, k.p, k.len, "v", 1, i + 1);
    }
    commit(t, store);
    qsort(keys, n, sizeof keys[0], key_cmp);

    t = begin(store, false);
    struct collect c = {0};
    struct key none = {NULL, 0};

    /* Empty prefix: everything, in order. */
    ck_assert_int_eq(bl_store_kv_scan(t, NULL, 0, NULL, 0, collect_cb, &c), BL_OK);
    assert_same(&c, keys, n);
    collect_free(&c);

    /* Random prefixes (0..3 bytes) and random afters (none, inside, before
     * and past the prefix range, and stored keys themselves). */
    for (int round = 0; round < 2000; round++) {
        struct key prefix = random_key(0);
        prefix.len %= 4;
        struct key after;
        switch (round % 4) {
        case 0:
            after = (struct key){NULL, 0};
            break;
        case 1: {
            /* A stored key. */
            struct key *k = &keys[rng_next() % n];
            after.len = k->len;
            after.p = malloc(k->len);
            REQUIRE(after.p != NULL, "out of memory");
            memcpy(after.p, k->p, k->len);
            break;
        }
        case 2:
            /* Starting with the prefix: inside the range. */
            after = random_key(prefix.len + 1);
            if (prefix.len > 0) {
                memcpy(after.p, prefix.p, prefix.len);
            }
            break;
        default:
            after = random_key(1); /* anywhere, mostly outside */
            break;
        }
        size_t m = model_scan(keys, n, &prefix, &after, want);
        int rv = bl_store_kv_scan(t, prefix.p, prefix.len, after.p, after.len, collect_cb, &c);
        REQUIRE(rv == BL_OK, "scan: %d", rv);
        assert_same(&c, want, m);
        collect_free(&c);
        free(prefix.p);
        free(after.p);
    }

    /* Paging in steps of 1, 7 and 50 under several prefixes gives exactly
     * the model's set, in order. */
    static const size_t steps[] = {1, 7, 50};
    static const char *const prefixes[] = {"", "a", "ab", "/", "\xff"};
    for (size_t si = 0; si < 3; si++) {
        for (size_t pi = 0; pi < 5; pi++) {
            struct key prefix = {(uint8_t *)prefixes[pi], strlen(prefixes[pi])};
            size_t m = model_scan(keys, n, &prefix, &none, want);
            struct collect all = {0};
            uint8_t after[16];
            size_t after_len = 0;
            for (;;) {
                struct collect page = {0};
                page.stop_after = steps[si];
                ck_assert_int_eq(
                    bl_store_kv_scan(t, prefix.p, prefix.len, after, after_len, collect_cb, &page),
                    BL_OK);
                for (size_t i = 0; i < page.n; i++) {
                    collect_cb(&all,
                               &(struct bl_kv){.key = page.keys[i].p, .key_len = page.keys[i].len});
                }
                size_t got = page.n;
                if (got > 0) {
                    after_len = page.keys[got - 1].len;
                    memcpy(after, page.keys[got - 1].p, after_len);
                }
                collect_free(&page);
                if (got < steps[si]) {
                    break;
                }
            }
            assert_same(&all, want, m);
            collect_free(&all);
        }
    }
    bl_store_abort(t);

    for (size_t i = 0; i < n; i++) {
        free(keys[i].p);
    }
    free(keys);
    free(want);
}
END_TEST

START_TEST(test_scan_stop_and_error)
{
    struct bl_txn *t = begin(store, true);
    put_str(t, "p/1", "1", 1);
    put_str(t, "p/2", "2", 2);
    put_str(t, "p/3", "3", 3);
    put_str(t, "q", "4", 4);
    commit(t, store);

    t = begin(store, false);
    struct collect c = {0};
    c.stop_after = 2;
    ck_assert_int_eq(bl_store_kv_scan(t, "p/", 2, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 2);
    collect_free(&c);

    c.stop_after = 1;
    c.fail_with = BL_ETOOLARGE;
    ck_assert_int_eq(bl_store_kv_scan(t, "p/", 2, NULL, 0, collect_cb, &c), BL_ETOOLARGE);
    ck_assert_uint_eq(c.n, 1);
    collect_free(&c);

    /* After the last key of the range, and past the range: nothing. */
    ck_assert_int_eq(bl_store_kv_scan(t, "p/", 2, "p/3", 3, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_eq(bl_store_kv_scan(t, "p/", 2, "pz", 2, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 0);
    /* Before the range: the whole range. */
    ck_assert_int_eq(bl_store_kv_scan(t, "p/", 2, "a", 1, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 3);
    collect_free(&c);
    /* After equal to the prefix, and the prefix a stored key itself. */
    ck_assert_int_eq(bl_store_kv_scan(t, "q", 1, "q", 1, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_eq(bl_store_kv_scan(t, "q", 1, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 1);
    collect_free(&c);
    /* A prefix nothing has. */
    ck_assert_int_eq(bl_store_kv_scan(t, "zzz", 3, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 0);
    bl_store_abort(t);

    /* An empty store. */
    t = begin(store, true);
    ck_assert_int_eq(bl_store_kv_del(t, "p/1", 3), BL_OK);
    ck_assert_int_eq(bl_store_kv_del(t, "p/2", 3), BL_OK);
    ck_assert_int_eq(bl_store_kv_del(t, "p/3", 3), BL_OK);
    ck_assert_int_eq(bl_store_kv_del(t, "q", 1), BL_OK);
    ck_assert_int_eq(bl_store_kv_scan(t, NULL, 0, NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_int_eq(bl_store_kv_scan(t, "p", 1, "a", 1, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 0);
    bl_store_abort(t);
}
END_TEST

/* ---- members and request ids ------------------------------------------------------------ */

struct member_seen {
    uint64_t ids[8];
    size_t n;
    size_t stop_after;
};

static int member_cb(void *arg, uint64_t id, const void *rec, size_t len)
{
    struct member_seen *m = arg;
    ck_assert_uint_lt(m->n, 8);
    ck_assert_uint_eq(len, sizeof id);
    uint64_t v;
    memcpy(&v, rec, sizeof v);
    ck_assert_uint_eq(v, id * 10);
    m->ids[m->n++] = id;
    return m->n == m->stop_after ? 1 : 0;
}

START_TEST(test_members)
{
    static const uint64_t ids[] = {300, 1, UINT64_MAX, 256, 2};
    struct bl_txn *t = begin(store, true);
    for (size_t i = 0; i < 5; i++) {
        uint64_t rec = ids[i] * 10;
        ck_assert_int_eq(bl_store_member_put(t, ids[i], &rec, sizeof rec), BL_OK);
    }
    commit(t, store);

    t = begin(store, true);
    const void *rec;
    size_t len;
    ck_assert_int_eq(bl_store_member_get(t, 256, &rec, &len), BL_OK);
    ck_assert_uint_eq(len, 8);
    ck_assert_int_eq(bl_store_member_get(t, 3, &rec, &len), BL_ENOTFOUND);
    struct member_seen seen = {0};
    ck_assert_int_eq(bl_store_member_scan(t, member_cb, &seen), BL_OK);
    ck_assert_uint_eq(seen.n, 5);
    static const uint64_t sorted[] = {1, 2, 256, 300, UINT64_MAX};
    for (size_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(seen.ids[i], sorted[i]);
    }
    seen = (struct member_seen){.stop_after = 2};
    ck_assert_int_eq(bl_store_member_scan(t, member_cb, &seen), BL_OK);
    ck_assert_uint_eq(seen.n, 2);

    ck_assert_int_eq(bl_store_member_del(t, 256), BL_OK);
    ck_assert_int_eq(bl_store_member_del(t, 256), BL_ENOTFOUND);
    uint64_t rec2 = 20;
    ck_assert_int_eq(bl_store_member_put(t, 2, &rec2, sizeof rec2), BL_OK);
    commit(t, store);

    t = begin(store, false);
    ck_assert_int_eq(bl_store_member_get(t, 256, &rec, &len), BL_ENOTFOUND);
    seen = (struct member_seen){0};
    ck_assert_int_eq(bl_store_member_scan(t, member_cb, &seen), BL_OK);
    ck_assert_uint_eq(seen.n, 4);
    bl_store_abort(t);
}
END_TEST

START_TEST(test_reqids)
{
    const void *rec;
    size_t len;
    char id[32];
    struct bl_txn *t = begin(store, true);
    for (uint64_t rev = 1; rev <= 100; rev++) {
        snprintf(id, sizeof id, "req-%llu", (unsigned long long)rev);
        ck_assert_int_eq(bl_store_reqid_put(t, id, strlen(id), rev, id, strlen(id)), BL_OK);
    }
    ck_assert_int_eq(bl_store_reqid_put(t, "empty", 5, 100, NULL, 0), BL_OK);
    ck_assert_int_eq(bl_store_reqid_put(t, "", 0, 1, "x", 1), BL_EBADREQ);
    commit(t, store);

    t = begin(store, true);
    ck_assert_int_eq(bl_store_reqid_get(t, "req-7", 5, &rec, &len), BL_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(rec, "req-7", 5), 0);
    ck_assert_int_eq(bl_store_reqid_get(t, "empty", 5, &rec, &len), BL_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(bl_store_reqid_get(t, "req-101", 7, &rec, &len), BL_ENOTFOUND);

    /* req-5 is recorded again at revision 200: pruning below 50 keeps it. */
    ck_assert_int_eq(bl_store_reqid_put(t, "req-5", 5, 200, "again", 5), BL_OK);
    ck_assert_int_eq(bl_store_reqid_prune(t, 50), BL_OK);
    commit(t, store);

    t = begin(store, true);
    for (uint64_t rev = 1; rev <= 100; rev++) {
        snprintf(id, sizeof id, "req-%llu", (unsigned long long)rev);
        int want = rev >= 50 || rev == 5 ? BL_OK : BL_ENOTFOUND;
        ck_assert_int_eq(bl_store_reqid_get(t, id, strlen(id), &rec, &len), want);
    }
    ck_assert_int_eq(bl_store_reqid_get(t, "req-5", 5, &rec, &len), BL_OK);
    ck_assert_int_eq(memcmp(rec, "again", 5), 0);
    /* Pruning is idempotent; pruning everything empties both tables. */
    ck_assert_int_eq(bl_store_reqid_prune(t, 50), BL_OK);
    ck_assert_int_eq(bl_store_reqid_prune(t, 0), BL_OK);
    ck_assert_int_eq(bl_store_reqid_get(t, "req-50", 6, &rec, &len), BL_OK);
    ck_assert_int_eq(bl_store_reqid_prune(t, UINT64_MAX), BL_OK);
    ck_assert_int_eq(bl_store_reqid_get(t, "req-5", 5, &rec, &len), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_reqid_get(t, "req-100", 7, &rec, &len), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_reqid_get(t, "empty", 5, &rec, &len), BL_ENOTFOUND);
    ck_assert_int_eq(bl_store_reqid_prune(t, UINT64_MAX), BL_OK);
    commit(t, store);
}
END_TEST

/* ---- limits, durability, files ------------------------------------------------------- */

START_TEST(test_map_full)
{
    struct bl_store *s;
    char dir[160];
    char key[32];
    size_t val_len = 64 * 1024;
    uint8_t *val = malloc(val_len);
    ck_assert_ptr_nonnull(val);
    memset(val, 0xab, val_len);
    snprintf(dir, sizeof dir, "%s/small", tmp_root);
    open_store(dir, 1 << 20, &s);

    int committed = 0;
    int rv = BL_OK;
    for (int i = 0; i < 1000 && rv == BL_OK; i++) {
        struct bl_txn *t = begin(s, true);
        snprintf(key, sizeof key, "key-%04d", i);
        struct bl_kv kv = {(const uint8_t *)key, strlen(key), val, val_len, 1, 1, 1, 0};
        rv = bl_store_kv_put(t, &kv);
        if (rv != BL_OK) {
            bl_store_abort(t);
            break;
        }
        rv = bl_store_commit(t);
        if (rv == BL_OK) {
            committed++;
        }
    }
    ck_assert_int_eq(rv, BL_ENOSPACE);
    ck_assert_ptr_nonnull(strstr(bl_store_errmsg(s), "MDB_MAP_FULL"));
    ck_assert_int_gt(committed, 2);

    uint64_t used, map;
    ck_assert_int_eq(bl_store_size(s, &used, &map), BL_OK);
    ck_assert_uint_eq(map, 1 << 20);
    ck_assert_uint_le(used, map);

    /* Everything committed is still there. */
    struct bl_txn *t = begin(s, false);
    for (int i = 0; i < committed; i++) {
        struct bl_kv out;
        snprintf(key, sizeof key, "key-%04d", i);
        ck_assert_int_eq(bl_store_kv_get(t, key, strlen(key), &out), BL_OK);
        ck_assert_uint_eq(out.value_len, val_len);
        ck_assert_uint_eq(out.value[val_len - 1], 0xab);
    }
    bl_store_abort(t);

    /* And the store takes writes again once space is freed. */
    t = begin(s, true);
    snprintf(key, sizeof key, "key-%04d", 0);
    ck_assert_int_eq(bl_store_kv_del(t, key, strlen(key)), BL_OK);
    snprintf(key, sizeof key, "key-%04d", 1);
    ck_assert_int_eq(bl_store_kv_del(t, key, strlen(key)), BL_OK);
    commit(t, s);
    /* Pages freed by a commit are reused from the second write after it
     * (the previous snapshot still refers to them until then). */
    t = begin(s, true);
    ck_assert_int_eq(bl_store_meta_set(t, "revision", 2), BL_OK);
    commit(t, s);
    t = begin(s, true);
    struct bl_kv kv = {(const uint8_t *)"again", 5, val, val_len, 2, 2, 1, 0};
    ck_assert_int_eq(bl_store_kv_put(t, &kv), BL_OK);
    commit(t, s);
    bl_store_close(s);
    free(val);
}
END_TEST

START_TEST(test_reopen_keeps_data)
{
    char buf[64];
    uint64_t v;
    struct bl_txn *t = begin(store, true);
    put_str(t, "durable", "yes", 9);
    ck_assert_int_eq(bl_store_meta_set(t, "applied_index", 77), BL_OK);
    commit(t, store);
    ck_assert_int_eq(bl_store_sync(store), BL_OK);
    bl_store_close(store);
    store = NULL;

    /* A trailing slash names the same directory. */
    char dir[160];
    snprintf(dir, sizeof dir, "%s/", store_dir);
    open_store(dir, 0, &store);
    t = begin(store, false);
    ck_assert_str_eq(get_str(t, "durable", buf, sizeof buf), "yes");
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &v), BL_OK);
    ck_assert_uint_eq(v, 77);
    bl_store_abort(t);

    uint64_t used, map;
    ck_assert_int_eq(bl_store_size(store, &used, &map), BL_OK);
    ck_assert_uint_gt(used, 0);
    ck_assert_uint_eq(map, (uint64_t)1 << 30);
}
END_TEST

START_TEST(test_open_errors)
{
    struct bl_store *s = NULL;
    char path[160];
    /* A regular file where the directory should be. */
    snprintf(path, sizeof path, "%s/file", tmp_root);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    errmsg[0] = '\0';
    ck_assert_int_eq(bl_store_open(path, NULL, &s, errmsg), BL_EIO);
    ck_assert_str_ne(errmsg, "");
    /* Nested directories are created. */
    snprintf(path, sizeof path, "%s/a/b/c", tmp_root);
    open_store(path, 0, &s);
    bl_store_close(s);
    ck_assert(exists(path));
}
END_TEST

/* Fill @s with a recognisable data set tagged @tag. */
static void fill(struct bl_store *s, const char *tag, uint64_t applied)
{
    struct bl_txn *t = begin(s, true);
    char key[600];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "%s/%03d", tag, i);
        put_str(t, key, tag, (uint64_t)i + 1);
    }
    memset(key, 'L', sizeof key);
    put(t, key, sizeof key, tag, strlen(tag), 1000);
    ck_assert_int_eq(bl_store_meta_set(t, "applied_index", applied), BL_OK);
    uint64_t m = applied;
    ck_assert_int_eq(bl_store_member_put(t, 1, &m, sizeof m), BL_OK);
    ck_assert_int_eq(bl_store_reqid_put(t, tag, strlen(tag), applied, "r", 1), BL_OK);
    commit(t, s);
}

/* Check @s holds exactly the data set @tag. */
static void check_filled(struct bl_store *s, const char *tag, uint64_t applied)
{
    char key[600], buf[64];
    uint64_t v;
    struct bl_txn *t = begin(s, false);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "%s/%03d", tag, i);
        ck_assert_str_eq(get_str(t, key, buf, sizeof buf), tag);
    }
    struct collect c = {0};
    snprintf(key, sizeof key, "%s/", tag);
    ck_assert_int_eq(bl_store_kv_scan(t, key, strlen(key), NULL, 0, collect_cb, &c), BL_OK);
    ck_assert_uint_eq(c.n, 200);
    collect_free(&c);
    memset(key, 'L', sizeof key);
    struct bl_kv kv;
    ck_assert_int_eq(bl_store_kv_get(t, key, sizeof key, &kv), BL_OK);
    ck_assert_uint_eq(kv.value_len, strlen(tag));
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &v), BL_OK);
    ck_assert_uint_eq(v, applied);
    const void *rec;
    size_t len;
    ck_assert_int_eq(bl_store_member_get(t, 1, &rec, &len), BL_OK);
    memcpy(&v, rec, sizeof v);
    ck_assert_uint_eq(v, applied);
    ck_assert_int_eq(bl_store_reqid_get(t, tag, strlen(tag), &rec, &len), BL_OK);
    bl_store_abort(t);
}

/* Copy @s into a file under the temp dir and read it back. */
static void snapshot(struct bl_store *s, uint8_t **image, size_t *len)
{
    char path[160];
    snprintf(path, sizeof path, "%s/snapshot", tmp_root);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bl_store_copy_to_fd(s, fd), BL_OK);
    ck_assert_int_eq(close(fd), 0);
    read_file(path, image, len);
    unlink(path);
}

static void assert_no_leftovers(const char *dir)
{
    char path[200];
    snprintf(path, sizeof path, "%s.old", dir);
    ck_assert(!exists(path));
    snprintf(path, sizeof path, "%s.tmp-replace", dir);
    ck_assert(!exists(path));
}

START_TEST(test_copy_and_replace)
{
    uint8_t *image;
    size_t len;
    struct bl_store *b;
    char dir_b[160];
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp_root);

    fill(store, "aaa", 11);
    snapshot(store, &image, &len);
    open_store(dir_b, 0, &b);
    fill(b, "bbb", 22);
    check_filled(b, "bbb", 22);

    int rv = bl_store_replace(b, image, len);
    ck_assert_msg(rv == BL_OK, "replace: %d %s", rv, bl_store_errmsg(b));
    check_filled(b, "aaa", 11);
    assert_no_leftovers(dir_b);
    struct bl_txn *t = begin(b, false);
    struct bl_kv kv;
    ck_assert_int_eq(bl_store_kv_get(t, "bbb/000", 7, &kv), BL_ENOTFOUND);
    bl_store_abort(t);

    /* The replaced store takes writes and survives a reopen. */
    t = begin(b, true);
    put_str(t, "after", "replace", 500);
    commit(t, b);
    bl_store_close(b);
    open_store(dir_b, 0, &b);
    check_filled(b, "aaa", 11);
    char buf[64];
    t = begin(b, false);
    ck_assert_str_eq(get_str(t, "after", buf, sizeof buf), "replace");
    bl_store_abort(t);

    /* A store can take its own image back (a Raft snapshot of itself). */
    uint8_t *image_b;
    size_t len_b;
    snapshot(b, &image_b, &len_b);
    ck_assert_int_eq(bl_store_replace(b, image_b, len_b), BL_OK);
    t = begin(b, false);
    ck_assert_str_eq(get_str(t, "after", buf, sizeof buf), "replace");
    bl_store_abort(t);

    bl_store_close(b);
    free(image);
    free(image_b);
}
END_TEST

START_TEST(test_replace_rejects_bad_images)
{
    uint8_t *image;
    size_t len;
    fill(store, "keep", 5);
    snapshot(store, &image, &len);
    ck_assert_uint_gt(len, 3 * 4096);

    /* Random bytes of several sizes; the empty image; a truncated one. */
    uint8_t *junk = malloc(len);
    ck_assert_ptr_nonnull(junk);
    rng_state = 99;
    for (size_t i = 0; i < len; i++) {
        junk[i] = (uint8_t)(rng_next() >> 56);
    }
    static const size_t sizes[] = {1, 100, 4096, 8192, 65536};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i] < len ? sizes[i] : len;
        int rv = bl_store_replace(store, junk, n);
        ck_assert_msg(rv == BL_ECORRUPT, "junk of %zu bytes: %d %s", n, rv, bl_store_errmsg(store));
        check_filled(store, "keep", 5);
        assert_no_leftovers(store_dir);
    }
    ck_assert_int_eq(bl_store_replace(store, junk, 0), BL_ECORRUPT);
    int rv = bl_store_replace(store, image, len / 2);
    ck_assert_msg(rv == BL_ECORRUPT, "truncated: %d %s", rv, bl_store_errmsg(store));
    ck_assert_ptr_nonnull(strstr(bl_store_errmsg(store), "truncated"));
    check_filled(store, "keep", 5);
    assert_no_leftovers(store_dir);

    /* Intact meta pages over zeroed data pages: refused, not a crash. */
    size_t meta_bytes = 2 * (size_t)sysconf(_SC_PAGESIZE);
    memset(junk, 0, len);
    memcpy(junk, image, meta_bytes);
    rv = bl_store_replace(store, junk, len);
    ck_assert_int_ne(rv, BL_OK);
    check_filled(store, "keep", 5);

    /* The store is still writable. */
    struct bl_txn *t = begin(store, true);
    put_str(t, "still", "here", 1);
    commit(t, store);
    free(junk);
    free(image);
}
END_TEST

START_TEST(test_open_recovers_from_interrupted_replace)
{
    char old_dir[200], tmp_dir[200], junk[240], buf[64];
    snprintf(old_dir, sizeof old_dir, "%s.old", store_dir);
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-replace", store_dir);
    snprintf(junk, sizeof junk, "%s/data.mdb", tmp_dir);
    struct bl_txn *t = begin(store, true);
    put_str(t, "k", "v", 1);
    commit(t, store);
    bl_store_close(store);
    store = NULL;

    /* Crash between the two renames: DIR.old and DIR.tmp-replace, no DIR. */
    ck_assert_int_eq(rename(store_dir, old_dir), 0);
    ck_assert_int_eq(mkdir(tmp_dir, 0700), 0);
    FILE *f = fopen(junk, "w");
    ck_assert_ptr_nonnull(f);
    fputs("partial", f);
    fclose(f);
    open_store(store_dir, 0, &store);
    t = begin(store, false);
    ck_assert_str_eq(get_str(t, "k", buf, sizeof buf), "v");
    bl_store_abort(t);
    assert_no_leftovers(store_dir);
    bl_store_close(store);
    store = NULL;

    /* Crash after the commit point: DIR (new) and DIR.old both there. */
    ck_assert_int_eq(mkdir(old_dir, 0700), 0);
    snprintf(junk, sizeof junk, "%s/data.mdb", old_dir);
    f = fopen(junk, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(mkdir(tmp_dir, 0700), 0);
    open_store(store_dir, 0, &store);
    t = begin(store, false);
    ck_assert_str_eq(get_str(t, "k", buf, sizeof buf), "v");
    bl_store_abort(t);
    assert_no_leftovers(store_dir);
    bl_store_close(store);
    store = NULL;

    /* Only a stray DIR.tmp-replace: a new, empty store. */
    rm_rf(store_dir);
    ck_assert_int_eq(mkdir(tmp_dir, 0700), 0);
    open_store(store_dir, 0, &store);
    t = begin(store, false);
    ck_assert_ptr_null(get_str(t, "k", buf, sizeof buf));
    bl_store_abort(t);
    assert_no_leftovers(store_dir);
}
END_TEST

/* A child opens the store, commits k=@value, and exits without closing it
 * (as a killed process would), leaving its "unsynced" marker. */
static void commit_and_die(const char *value)
{
    pid_t pid = fork();
    int st;
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct bl_store *s;
        struct bl_store_opts opts = {0, true};
        struct bl_txn *t;
        struct bl_kv kv = {
            (const uint8_t *)"k", 1, (const uint8_t *)value, strlen(value), 1, 1, 1, 0};
        if (bl_store_open(store_dir, &opts, &s, errmsg) != BL_OK ||
            bl_store_begin(s, true, &t) != BL_OK || bl_store_kv_put(t, &kv) != BL_OK ||
            bl_store_meta_set(t, "applied_index", 5) != BL_OK || bl_store_commit(t) != BL_OK) {
            _exit(1);
        }
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status 0x%x", st);
}

static bool read_marker(char *out, size_t size)
{
    char path[200];
    FILE *f;
    snprintf(path, sizeof path, "%s/unsynced", store_dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    if (fgets(out, (int)size, f) == NULL) {
        out[0] = '\0';
    }
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    return true;
}

START_TEST(test_unsynced_marker)
{
    char mine[64], marker[64], buf[64], path[200];
    uint64_t applied;
    struct bl_txn *t;
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(mine, sizeof mine, f));
    fclose(f);
    mine[strcspn(mine, "\n")] = '\0';

    /* Open: marked with this boot; a clean close syncs and unmarks. */
    ck_assert(read_marker(marker, sizeof marker));
    ck_assert_str_eq(marker, mine);
    ck_assert(!bl_store_discarded(store));
    bl_store_close(store);
    store = NULL;
    ck_assert(!read_marker(marker, sizeof marker));

    /* Killed in this boot: the page cache has the commit; kept. */
    commit_and_die("v1");
    ck_assert(read_marker(marker, sizeof marker));
    open_store(store_dir, 0, &store);
    ck_assert(!bl_store_discarded(store));
    t = begin(store, false);
    ck_assert_str_eq(get_str(t, "k", buf, sizeof buf), "v1");
    bl_store_abort(t);
    bl_store_close(store);
    store = NULL;

    /* Killed, then the machine went down (another boot id): the data file
     * may be torn, so it is discarded and the store opens empty. */
    commit_and_die("v2");
    snprintf(path, sizeof path, "%s/unsynced", store_dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("00000000-0000-0000-0000-000000000000\n", f);
    fclose(f);
    open_store(store_dir, 0, &store);
    ck_assert(bl_store_discarded(store));
    t = begin(store, false);
    ck_assert_ptr_null(get_str(t, "k", buf, sizeof buf));
    ck_assert_int_eq(bl_store_meta_get(t, "applied_index", &applied), BL_OK);
    ck_assert_uint_eq(applied, 0);
    bl_store_abort(t);
    ck_assert(read_marker(marker, sizeof marker));
    ck_assert_str_eq(marker, mine);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("lmdb");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kv_round_trip);
    tcase_add_test(tc, test_kv_bad_keys);
    tcase_add_test(tc, test_abort_discards);
    tcase_add_test(tc, test_read_snapshot_isolation);
    tcase_add_test(tc, test_meta);
    tcase_add_test(tc, test_long_keys);
    tcase_add_test(tc, test_scan_model);
    tcase_add_test(tc, test_scan_stop_and_error);
    tcase_add_test(tc, test_members);
    tcase_add_test(tc, test_reqids);
    tcase_add_test(tc, test_map_full);
    tcase_add_test(tc, test_reopen_keeps_data);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_copy_and_replace);
    tcase_add_test(tc, test_replace_rejects_bad_images);
    tcase_add_test(tc, test_open_recovers_from_interrupted_replace);
    tcase_add_test(tc, test_unsynced_marker);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
