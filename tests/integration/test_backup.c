/* Black-box tests of backups: `ballastctl snapshot save` against real
 * ballastd processes, the backup file format (docs/backup.md), the checks
 * `ballastctl snapshot restore` makes before it builds anything, and a
 * member started on a restored data dir serving exactly the saved state.
 *
 * The first test case is the unit-level one of raft_glue/backup.c, driven
 * through ballastctl (this program links no Ballast library): damaged
 * copies of a real backup (truncated, a flipped image byte, a wrong magic,
 * a header that does not match its image, an image that is not LMDB) are
 * refused with a message naming the check, and leave no data dir behind;
 * a non-empty data dir is refused and left alone.
 *
 * A restored member is started through the harness: a one-member cluster is
 * started, stopped, its data dir emptied and restored into with the same id
 * and peer address, then the member is started again with its usual flags
 * (the founders' --initial-cluster is ignored: the data dir is not empty).
 *
 * State is compared as the API shows it: every key, value, create and mod
 * revision and version from one range read, and the store revision. Every
 * wait has a deadline; a failing test keeps its files and prints the logs
 * (tests/lib/cluster.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"

#define START_TIMEOUT_MS 20000
#define APPLY_TIMEOUT_MS 20000
#define MAX_KEYS         512
#define HEADER           32

/* --- files -------------------------------------------------------------------- */

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    uint8_t *p = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(p);
    *len = fread(p, 1, (size_t)n, f);
    ck_assert_uint_eq(*len, (size_t)n);
    fclose(f);
    return p;
}

static void write_whole(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "create %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(p, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in directory @dir (without . and ..). */
static int dir_entries(const char *dir)
{
    char cmd[TC_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* FNV-1a 64, as docs/backup.md defines the checksum. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    }
    return h;
}

/* --- state as the API shows it ----------------------------------------------------- */

struct skv {
    uint8_t *key, *value;
    size_t klen, vlen;
    uint64_t create_revision, mod_revision, version;
};

struct state {
    int n;
    struct skv kv[MAX_KEYS];
    uint64_t revision;
};

/* Every key of member @i's store in one linearizable range read. */
static void capture(struct tc_cluster *c, int i, struct state *st)
{
    struct tc_response r;
    char path[64];

    memset(st, 0, sizeof *st);
    ck_assert_int_eq(tc_http(tc_addr(c, i), "GET", "/v1/kv/?prefix&limit=10000", NULL, 0, NULL, &r),
                     0);
    ck_assert_msg(r.status == 200, "range on %s: %d %.300s", c->members[i].name, r.status, r.body);
    bool more = true;
    ck_assert(tc_json_bool(r.body, "more", &more) && !more);
    ck_assert(tc_json_u64(r.body, "revision", &st->revision));
    st->n = tc_json_len(r.body, "kvs");
    ck_assert_msg(st->n >= 0 && st->n <= MAX_KEYS, "%d kvs", st->n);
    for (int k = 0; k < st->n; k++) {
        struct skv *kv = &st->kv[k];
        snprintf(path, sizeof path, "kvs.%d.key", k);
        kv->key = tc_json_b64(r.body, path, &kv->klen);
        snprintf(path, sizeof path, "kvs.%d.value", k);
        kv->value = tc_json_b64(r.body, path, &kv->vlen);
        ck_assert_msg(kv->key != NULL && kv->value != NULL, "kv %d of %.200s", k, r.body);
        snprintf(path, sizeof path, "kvs.%d.create_revision", k);
        ck_assert(tc_json_u64(r.body, path, &kv->create_revision));
        snprintf(path, sizeof path, "kvs.%d.mod_revision", k);
        ck_assert(tc_json_u64(r.body, path, &kv->mod_revision));
        snprintf(path, sizeof path, "kvs.%d.version", k);
        ck_assert(tc_json_u64(r.body, path, &kv->version));
    }
    tc_response_free(&r);
}

static void state_free(struct state *st)
{
    for (int k = 0; k < st->n; k++) {
        free(st->kv[k].key);
        free(st->kv[k].value);
    }
    st->n = 0;
}

/* @got must be @want exactly: the same keys, values, revisions, versions. */
static void expect_same(const struct state *want, const struct state *got, const char *what)
{
    ck_assert_msg(got->revision == want->revision, "%s: store revision %llu, want %llu", what,
                  (unsigned long long)got->revision, (unsigned long long)want->revision);
    ck_assert_msg(got->n == want->n, "%s: %d keys, want %d", what, got->n, want->n);
    for (int k = 0; k < want->n; k++) {
        const struct skv *a = &want->kv[k], *b = &got->kv[k];
        ck_assert_msg(a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0,
                      "%s: key #%d is '%.*s', want '%.*s'", what, k, (int)b->klen, b->key,
                      (int)a->klen, a->key);
        ck_assert_msg(a->vlen == b->vlen && memcmp(a->value, b->value, a->vlen) == 0,
                      "%s: value of '%.*s' differs (%zu bytes, want %zu)", what, (int)a->klen,
                      a->key, b->vlen, a->vlen);
        ck_assert_msg(a->create_revision == b->create_revision &&
                          a->mod_revision == b->mod_revision && a->version == b->version,
                      "%s: '%.*s' has create %llu mod %llu version %llu, want %llu %llu %llu", what,
                      (int)a->klen, a->key, (unsigned long long)b->create_revision,
                      (unsigned long long)b->mod_revision, (unsigned long long)b->version,
                      (unsigned long long)a->create_revision, (unsigned long long)a->mod_revision,
                      (unsigned long long)a->version);
    }
}

/* A store with history: @n keys written through every member in turn, a
 * third overwritten, some twice, a fifth deleted, a long key, an empty
 * value, keys that need percent-encoding, binary values. */
static void workload(struct tc_cluster *c, int n, uint64_t seed)
{
    char key[64], target[256];
    uint8_t value[128];
    struct tc_response r;
    uint64_t rng = seed;

    for (int pass = 0; pass < 3; pass++) {
        for (int k = 0; k < n; k++) {
            if ((pass == 1 && k % 3 != 0) || (pass == 2 && k % 7 != 0)) {
                continue;
            }
            snprintf(key, sizeof key, "bk/%s%03d", k % 10 == 4 ? "a b%/" : "", k);
            size_t len = 1 + (size_t)(tc_rand(&rng) % sizeof value);
            for (size_t b = 0; b < len; b++) {
                value[b] = (uint8_t)tc_rand(&rng);
            }
            value[0] = 0x00;
            tc_put(c, k % c->n, key, value, len);
        }
    }
    for (int k = 0; k < n; k += 5) {
        snprintf(key, sizeof key, "bk/%s%03d", k % 10 == 4 ? "a b%/" : "", k);
        tc_kv_target(target, sizeof target, key, strlen(key), NULL);
        ck_assert_int_eq(tc_http(tc_addr(c, k % c->n), "DELETE", target, NULL, 0, NULL, &r), 0);
        ck_assert_msg(r.status == 200, "DELETE %s: %d %.200s", key, r.status, r.body);
        tc_response_free(&r);
    }
    char long_key[700];
    memset(long_key, 'L', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    tc_put(c, 0, long_key, "long", 4);
    tc_put(c, c->n - 1, "bk/empty", "", 0);
}

/* --- restore ---------------------------------------------------------------------- */

/* Fail unless the ballastctl run @res exited with @want. */
static void check_exit(const struct tc_ctl_result *res, int want, const char *what)
{
    ck_assert_msg(res->status == want, "ballastctl %s: exit %d, want %d; stdout: %s; stderr: %s",
                  what, res->status, want, res->out, res->err);
}

/* Run ballastctl with the arguments after @endpoints into *@res and expect
 * exit status @want. */
#define CTL(res, want, endpoints, ...)                                                             \
    do {                                                                                           \
        tc_ctl((endpoints), (res), __VA_ARGS__, TC_END);                                           \
        check_exit((res), (want), #__VA_ARGS__);                                                   \
    } while (0)

/* `ballastctl snapshot restore FILE --data-dir DIR ...` must fail (exit 1)
 * with @needle in its message. */
static void restore_refused(const char *file, const char *dir, const char *needle)
{
    struct tc_ctl_result res;
    CTL(&res, 1, NULL, "snapshot", "restore", file, "--data-dir", dir);
    ck_assert_msg(strstr(res.err, needle) != NULL, "restore of %s: '%s' does not say '%s'", file,
                  res.err, needle);
    tc_ctl_free(&res);
}

/* Stop member 0 of the one-member cluster @r, empty its data dir, restore
 * @file into it as member 1 at its own peer address, start it again and
 * wait until it serves. */
static void restore_member(struct tc_cluster *r, const char *file)
{
    struct tc_ctl_result res;
    char expect[TC_PATH_MAX + 160];

    ck_assert_int_eq(tc_member_kill(r, 0, SIGTERM), 0);
    tc_member_wipe(r, 0);
    CTL(&res, 0, NULL, "snapshot", "restore", file, "--data-dir", r->members[0].data_dir, "--id",
        "1", "--peer-url", r->members[0].peer_addr);
    snprintf(expect, sizeof expect,
             "ballastd --id 1 --name member-1 --data-dir %s --listen-peer %s",
             r->members[0].data_dir, r->members[0].peer_addr);
    ck_assert_msg(strstr(res.out, expect) != NULL, "restore printed '%s', want a line with '%s'",
                  res.out, expect);
    tc_ctl_free(&res);
    tc_member_restart(r, 0);
    tc_wait_stable(r, START_TIMEOUT_MS);
}

/* Save a backup of @c into @file with ballastctl; returns its revision. */
static uint64_t save(struct tc_cluster *c, const char *file)
{
    char endpoints[256], part[TC_PATH_MAX + 16];
    uint64_t rev = 0;
    tc_endpoints(c, endpoints, sizeof endpoints);
    struct tc_ctl_result res;
    CTL(&res, 0, endpoints, "-o", "json", "snapshot", "save", file);
    ck_assert_msg(tc_json_u64(res.out, "revision", &rev), "snapshot save printed %s", res.out);
    tc_ctl_free(&res);
    snprintf(part, sizeof part, "%s.part", file);
    ck_assert_msg(!exists(part), "%s left behind", part);
    snprintf(part, sizeof part, "%s.part.tmp", file);
    ck_assert_msg(!exists(part), "%s left behind", part);
    return rev;
}

/* --- 1. The file format and restore's checks ---------------------------------------- */

START_TEST(backup_file_checks)
{
    struct tc_cluster *c = tc_cluster_start(1);
    char file[TC_PATH_MAX + 64], bad[TC_PATH_MAX + 64], dir[TC_PATH_MAX + 64],
        path[TC_PATH_MAX + 128];
    char key[32];
    struct tc_ctl_result res;
    size_t len;

    tc_wait_stable(c, START_TIMEOUT_MS);
    for (int k = 0; k < 40; k++) {
        snprintf(key, sizeof key, "fc/%02d", k);
        tc_put(c, 0, key, key, strlen(key));
    }
    snprintf(file, sizeof file, "%s/good.snap", c->dir);
    uint64_t rev = save(c, file);
    ck_assert_uint_eq(rev, 40);

    /* The format: magic, applied index, image length = the rest, FNV-1a 64. */
    uint8_t *b = read_whole(file, &len);
    ck_assert_uint_gt(len, HEADER + 4096);
    ck_assert_mem_eq(b, "BLSNAP1\0", 8);
    ck_assert_uint_gt(get_le64(b + 8), 40); /* entries besides the puts: config, publish */
    ck_assert_uint_eq(get_le64(b + 16), len - HEADER);
    ck_assert_uint_eq(get_le64(b + 24), fnv1a(b + HEADER, len - HEADER));

    /* Damaged copies: refused, nothing made (a dir that did not exist stays
     * absent; an empty one stays empty). */
    snprintf(bad, sizeof bad, "%s/bad.snap", c->dir);
    snprintf(dir, sizeof dir, "%s/restored", c->dir);
    write_whole(bad, b, len - 100);
    restore_refused(bad, dir, "truncated");
    ck_assert(!exists(dir));
    write_whole(bad, b, 20);
    restore_refused(bad, dir, "shorter than the 32-byte header");
    b[HEADER + (len - HEADER) / 2] ^= 0x01;
    write_whole(bad, b, len);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    restore_refused(bad, dir, "checksum mismatch");
    ck_assert_int_eq(dir_entries(dir), 0);
    b[HEADER + (len - HEADER) / 2] ^= 0x01;
    b[3] = 'X';
    write_whole(bad, b, len);
    restore_refused(bad, dir, "bad magic");
    b[3] = 'N';
    put_le64(b + 8, get_le64(b + 8) + 1); /* the checksum covers the image only */
    write_whole(bad, b, len);
    restore_refused(bad, dir, "applied index");
    put_le64(b + 8, get_le64(b + 8) - 1);
    uint8_t *junk = malloc(len);
    ck_assert_ptr_nonnull(junk);
    memcpy(junk, b, HEADER);
    memset(junk + HEADER, 0x5a, len - HEADER);
    put_le64(junk + 24, fnv1a(junk + HEADER, len - HEADER));
    write_whole(bad, junk, len);
    restore_refused(bad, dir, "does not open as a store");
    free(junk);
    ck_assert_int_eq(dir_entries(dir), 0);

    /* A data dir that holds anything is never written to. */
    snprintf(path, sizeof path, "%s/keep", dir);
    write_whole(path, "x", 1);
    restore_refused(file, dir, "is not empty");
    ck_assert_int_eq(dir_entries(dir), 1);
    restore_refused(file, c->members[0].data_dir, "is not empty");

    /* Bad usage: exit 2, nothing made. */
    snprintf(dir, sizeof dir, "%s/new/nested", c->dir);
    CTL(&res, 2, NULL, "snapshot", "restore", file);
    tc_ctl_free(&res);
    CTL(&res, 2, NULL, "snapshot", "restore", file, "--data-dir", dir, "--id", "0");
    tc_ctl_free(&res);
    CTL(&res, 1, NULL, "snapshot", "restore", file, "--data-dir", dir, "--peer-url", "localhost");
    tc_ctl_free(&res);
    ck_assert(!exists(dir));
    CTL(&res, 2, tc_addr(c, 0), "snapshot", "save");
    tc_ctl_free(&res);
    snprintf(path, sizeof path, "%s/no/such/dir/x.snap", c->dir);
    CTL(&res, 1, tc_addr(c, 0), "snapshot", "save", path);
    ck_assert_msg(strstr(res.err, "x.snap") != NULL, "message: %s", res.err);
    tc_ctl_free(&res);

    /* The good file into a new nested dir: the layout the member starts from. */
    CTL(&res, 0, NULL, "snapshot", "restore", file, "--data-dir", dir, "--id", "7", "-o", "json");
    uint64_t v = 0;
    ck_assert_msg(tc_json_u64(res.out, "revision", &v) && v == 40, "restore printed %s", res.out);
    ck_assert_msg(tc_json_u64(res.out, "id", &v) && v == 7, "restore printed %s", res.out);
    tc_ctl_free(&res);
    snprintf(path, sizeof path, "%s/member-id", dir);
    free(b);
    b = read_whole(path, &len);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(b, "7\n", 2);
    free(b);
    snprintf(path, sizeof path, "%s/restored", dir);
    ck_assert(exists(path));
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    ck_assert(exists(path));
    snprintf(path, sizeof path, "%s/raft", dir);
    ck_assert_int_ge(dir_entries(path), 2); /* metadata and the bootstrap segment */
    ck_assert_int_eq(dir_entries(dir), 4);
    tc_cluster_stop(c);
}
END_TEST

/* --- 2. A 3-member cluster's backup restored into one member -------------------------- */

START_TEST(save_restore_matches_original)
{
    struct tc_cluster *c = tc_cluster_start(3), *r;
    struct state *want = malloc(sizeof *want), *got = malloc(sizeof *got);
    char file[TC_PATH_MAX + 64];
    int leader;

    ck_assert(want != NULL && got != NULL);
    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    workload(c, 300, 42);
    capture(c, leader, want);
    ck_assert_int_ge(want->n, 200);
    ck_assert_uint_gt(want->revision, 400);
    snprintf(file, sizeof file, "%s/cluster.snap", c->dir);
    ck_assert_uint_eq(save(c, file), want->revision);
    tc_put(c, leader, "bk/after-the-backup", "x", 1); /* must not come back */

    r = tc_cluster_start(1);
    tc_wait_stable(r, START_TIMEOUT_MS);
    restore_member(r, file);
    capture(r, 0, got);
    expect_same(want, got, "restored member");
    state_free(got);

    /* It serves writes: the revision counter goes on from the backup's. */
    ck_assert_uint_eq(tc_put(r, 0, "bk/new", "n", 1), want->revision + 1);
    /* And keeps all of it across a restart. */
    ck_assert_int_eq(tc_member_kill(r, 0, SIGTERM), 0);
    tc_member_restart(r, 0);
    tc_wait_stable(r, START_TIMEOUT_MS);
    struct tc_kv kv;
    ck_assert_int_eq(tc_get(r, 0, "bk/new", NULL, &kv), 200);
    ck_assert_uint_eq(kv.mod_revision, want->revision + 1);
    tc_kv_free(&kv);
    ck_assert_int_eq(tc_get(r, 0, "bk/after-the-backup", NULL, &kv), 404);
    tc_kv_free(&kv);

    state_free(want);
    free(want);
    free(got);
    tc_cluster_stop(r);
    tc_cluster_stop(c);
}
END_TEST

/* --- 3. Two members join the restored one and get the data by InstallSnapshot ------- */

static bool log_contains(const struct tc_cluster *c, int i, const char *needle)
{
    FILE *f = fopen(c->members[i].log_path, "r");
    char line[2048];
    bool found = false;
    ck_assert_ptr_nonnull(f);
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* Wait until member @i's GET /v1/members lists @voters voters and no learner. */
static void wait_voters(struct tc_cluster *c, int i, int voters, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char path[32], role[16];
    for (;;) {
        struct tc_response r;
        int v = -1, other = 0;
        if (tc_http(tc_addr(c, i), "GET", "/v1/members", NULL, 0, NULL, &r) == 0 &&
            r.status == 200) {
            int n = tc_json_len(r.body, "");
            v = 0;
            for (int k = 0; k < n; k++) {
                snprintf(path, sizeof path, "%d.role", k);
                if (tc_json_str(r.body, path, role, sizeof role) && strcmp(role, "voter") == 0) {
                    v++;
                } else {
                    other++;
                }
            }
        }
        tc_response_free(&r);
        if (v == voters && other == 0) {
            return;
        }
        if (tc_now_ms() > deadline) {
            tc_dump_logs(c);
            ck_abort_msg("member %d lists %d voters and %d others after %d ms, want %d voters", i,
                         v, other, timeout_ms, voters);
        }
        tc_check_running(c);
        tc_sleep_ms(100);
    }
}

START_TEST(restore_then_join)
{
    struct tc_cluster *c = tc_cluster_start(3), *r;
    struct state *want = malloc(sizeof *want), *got = malloc(sizeof *got);
    char file[TC_PATH_MAX + 64];
    int leader;

    ck_assert(want != NULL && got != NULL);
    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    workload(c, 150, 7);
    capture(c, leader, want);
    r = tc_cluster_start(1);
    tc_wait_stable(r, START_TIMEOUT_MS);
    snprintf(file, sizeof file, "%s/cluster.snap", r->dir);
    ck_assert_uint_eq(save(c, file), want->revision);
    tc_cluster_stop(c); /* the old cluster is gone: its backup is all there is */

    restore_member(r, file);
    const char *args[] = {"--join", tc_addr(r, 0), NULL};
    int joiners[2];
    joiners[0] = tc_member_add(r, NULL, NULL, args, NULL);
    joiners[1] = tc_member_add(r, NULL, NULL, args, NULL);
    wait_voters(r, 0, 3, 60000);
    for (int k = 0; k < 2; k++) {
        int j = joiners[k];
        struct tc_status st;
        char err[256];
        ck_assert_msg(tc_get_status(r, j, &st, err, sizeof err) == 0, "status: %s", err);
        r->members[j].id = st.id; /* the leader chose it */
        tc_wait_applied(r, j, want->revision, APPLY_TIMEOUT_MS);
        ck_assert_msg(log_contains(r, j, "store replaced from snapshot"),
                      "%s got the data without InstallSnapshot: the restored log cannot hold it",
                      r->members[j].name);
        capture(r, j, got);
        expect_same(want, got, r->members[j].name);
        state_free(got);
    }

    /* The restored member may go: the two that joined hold everything. */
    tc_member_kill(r, 0, SIGKILL);
    leader = tc_wait_leader(r, START_TIMEOUT_MS);
    ck_assert_int_ne(leader, 0);
    capture(r, leader, got);
    expect_same(want, got, "the joined members without the restored one");
    state_free(got);
    ck_assert_uint_eq(tc_put(r, leader, "bk/after-join", "j", 1), want->revision + 1);

    state_free(want);
    free(want);
    free(got);
    tc_cluster_stop(r);
}
END_TEST

/* --- Suite -------------------------------------------------------------------------- */

/* Whether `ballastd --help` offers --join (the join test needs it). */
static bool ballastd_has_join(void)
{
    char cmd[TC_PATH_MAX + 32], line[512];
    bool found = false;
    snprintf(cmd, sizeof cmd, "'%s' --help 2>&1", getenv("BALLASTD"));
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return false;
    }
    while (fgets(line, sizeof line, p) != NULL) {
        found = found || strstr(line, "--join") != NULL;
    }
    pclose(p);
    return found;
}

static Suite *backup_suite(void)
{
    Suite *s = suite_create("backup");
    tc_add_case(s, "backup_file_checks", backup_file_checks, 180);
    tc_add_case(s, "save_restore_matches_original", save_restore_matches_original, 180);
    if (ballastd_has_join()) {
        tc_add_case(s, "restore_then_join", restore_then_join, 180);
    } else {
        fprintf(stderr, "test-backup: ballastd has no --join: restore_then_join not run\n");
    }
    return s;
}

int main(void)
{
    return tc_main("test-backup", backup_suite);
}
