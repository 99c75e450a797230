/* Black-box tests of a three-member Ballast cluster: real ballastd processes
 * on 127.0.0.1, driven over HTTP and through ballastctl.
 *
 * Each test is its own test case (so CK_RUN_CASE can pick one) and starts
 * its own cluster in a fresh temporary directory (tests/lib/cluster.h).
 * Values come from fixed seeds, so a failure repeats with the same data;
 * they are random bytes, 0x00 and 0xff included, which exercises base64 in
 * JSON. Keys share a per-test prefix and some hold characters that must be
 * percent-encoded. Every wait has a deadline; when a test fails, the fixture
 * teardown prints the tail of each member's log and keeps the files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

/* Time for a fresh cluster to elect a leader and publish its members. */
#define START_TIMEOUT_MS 20000
/* Time for a member to apply what the leader acknowledged. */
#define APPLY_TIMEOUT_MS 10000

/* One acknowledged write: the key, the value and the revision of the ack. */
struct entry {
    char key[64];
    uint8_t value[256];
    size_t len;
    uint64_t rev;
};

/* A key "<prefix><word>-<NN>": random lowercase and digits, and every tenth
 * one with a character that must be percent-encoded; unique by its suffix. */
static void random_key(uint64_t *rng, const char *prefix, int i, char *out, size_t cap)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static const char specials[] = " %+&?#=:";
    char word[16];
    size_t n = 3 + (size_t)(tc_rand(rng) % 8);

    for (size_t k = 0; k < n; k++) {
        word[k] = alphabet[tc_rand(rng) % (sizeof alphabet - 1)];
    }
    if (i % 10 == 3) {
        word[1] = specials[tc_rand(rng) % (sizeof specials - 1)];
    }
    word[n] = '\0';
    snprintf(out, cap, "%s%s-%02d", prefix, word, i);
}

/* A value of 1..200 random bytes (0 bytes when @empty). */
static void random_value(uint64_t *rng, struct entry *e, bool empty)
{
    e->len = empty ? 0 : 1 + (size_t)(tc_rand(rng) % 200);
    for (size_t k = 0; k < e->len; k++) {
        e->value[k] = (uint8_t)tc_rand(rng);
    }
    if (e->len >= 2) {
        e->value[0] = 0x00;
        e->value[e->len - 1] = 0xff;
    }
}

/* Key @e must read as its value from member @m; with @check_rev, its
 * mod_revision must be the revision of the acknowledgement. */
static void expect_entry(struct tc_cluster *c, int m, const struct entry *e,
                         const char *consistency, bool check_rev)
{
    struct tc_kv kv;
    int status = tc_get(c, m, e->key, consistency, &kv);

    ck_assert_msg(status == 200, "GET '%s' (%s) from %s: %d, want 200", e->key,
                  consistency ? consistency : "default", c->members[m].name, status);
    ck_assert_msg(kv.value_len == e->len && memcmp(kv.value, e->value, e->len) == 0,
                  "GET '%s' (%s) from %s: wrong value (%zu bytes, want %zu)", e->key,
                  consistency ? consistency : "default", c->members[m].name, kv.value_len, e->len);
    if (check_rev) {
        ck_assert_msg(kv.mod_revision == e->rev,
                      "GET '%s' (%s) from %s: mod_revision %llu, but the write was "
                      "acknowledged with revision %llu",
                      e->key, consistency ? consistency : "default", c->members[m].name,
                      (unsigned long long)kv.mod_revision, (unsigned long long)e->rev);
    }
    tc_kv_free(&kv);
}

static void expect_absent(struct tc_cluster *c, int m, const char *key, const char *consistency)
{
    struct tc_kv kv;
    int status = tc_get(c, m, key, consistency, &kv);
    ck_assert_msg(status == 404, "GET '%s' (%s) from %s: %d, want 404", key,
                  consistency ? consistency : "default", c->members[m].name, status);
    tc_kv_free(&kv);
}

static int compare_entries(const void *a, const void *b)
{
    const struct entry *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

/* One request that must get an answer (any status). */
static void call(const char *addr, const char *method, const char *target, const void *body,
                 size_t len, const char *const *headers, struct tc_response *r)
{
    int rv = tc_http(addr, method, target, body, len, headers, r);
    ck_assert_msg(rv == 0, "%s %s on %s: %s", method, target, addr, r->error);
}

/* The JSON error code of @r, or "" (for messages). */
static const char *error_code(const struct tc_response *r, char *out, size_t cap)
{
    if (!tc_json_str(r->body, "error.code", out, cap)) {
        out[0] = '\0';
    }
    return out;
}

/* The answer must be @status with error code @code. */
static void expect_error(const struct tc_response *r, int status, const char *code,
                         const char *what)
{
    char got[64];
    ck_assert_msg(r->status == status, "%s: status %d, want %d: %.300s", what, r->status, status,
                  r->body);
    ck_assert_msg(strcmp(error_code(r, got, sizeof got), code) == 0,
                  "%s: error code '%s', want '%s' in %.300s", what, got, code, r->body);
}

/* Every response carries the revision and Raft position headers. */
static void expect_ballast_headers(const struct tc_response *r, const char *what)
{
    static const char *const names[] = {"X-Ballast-Revision", "X-Ballast-Raft-Term",
                                        "X-Ballast-Raft-Index"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        ck_assert_msg(tc_header(r, names[k]) != NULL, "%s (status %d): no %s header", what,
                      r->status, names[k]);
        tc_header_u64(r, names[k]);
    }
}

/* Page through the range under @prefix on member @m, 20 keys at a time,
 * and compare it with @sorted (the @n entries in key order). */
static void expect_range(struct tc_cluster *c, int m, const char *prefix,
                         struct entry *const *sorted, int n, const char *consistency)
{
    char target[512], query[400], after[256] = "";
    int seen = 0, pages = 0;
    bool more = true;

    while (more) {
        struct tc_response r;
        uint64_t count = 0;
        int n_kvs;

        ck_assert_msg(++pages <= 10, "range on %s: too many pages", c->members[m].name);
        snprintf(query, sizeof query, "prefix&limit=20&consistency=%s%s%s", consistency,
                 after[0] ? "&after=" : "", after);
        tc_kv_target(target, sizeof target, prefix, strlen(prefix), query);
        ck_assert_msg(tc_http(tc_addr(c, m), "GET", target, NULL, 0, NULL, &r) == 0, "GET %s: %s",
                      target, r.error);
        ck_assert_msg(r.status == 200, "GET %s from %s: %d %.300s", target, c->members[m].name,
                      r.status, r.body);
        n_kvs = tc_json_len(r.body, "kvs");
        ck_assert_msg(n_kvs > 0 && n_kvs <= 20, "GET %s: %d kvs in a page of 20: %.300s", target,
                      n_kvs, r.body);
        ck_assert_msg(tc_json_bool(r.body, "more", &more), "GET %s: no 'more' in %.300s", target,
                      r.body);
        ck_assert_msg(tc_json_u64(r.body, "count", &count) && count == (uint64_t)n,
                      "GET %s: count %llu, want %d", target, (unsigned long long)count, n);
        for (int k = 0; k < n_kvs; k++, seen++) {
            char path[32];
            size_t klen, vlen;
            uint8_t *key, *value;

            ck_assert_msg(seen < n, "GET %s: more than %d keys under %s", target, n, prefix);
            snprintf(path, sizeof path, "kvs.%d.key", k);
            key = tc_json_b64(r.body, path, &klen);
            snprintf(path, sizeof path, "kvs.%d.value", k);
            value = tc_json_b64(r.body, path, &vlen);
            ck_assert_msg(key != NULL && value != NULL, "GET %s: kv %d lacks key or value", target,
                          k);
            ck_assert_msg(klen == strlen(sorted[seen]->key) &&
                              memcmp(key, sorted[seen]->key, klen) == 0,
                          "range on %s: key %d is '%s', want '%s' (sorted order)",
                          c->members[m].name, seen, (const char *)key, sorted[seen]->key);
            ck_assert_msg(
                vlen == sorted[seen]->len && memcmp(value, sorted[seen]->value, vlen) == 0,
                "range on %s: wrong value for '%s'", c->members[m].name, sorted[seen]->key);
            if (k == n_kvs - 1) {
                tc_escape(key, klen, after, sizeof after);
            }
            free(key);
            free(value);
        }
        tc_response_free(&r);
    }
    ck_assert_msg(seen == n, "range on %s: %d keys, want %d", c->members[m].name, seen, n);
    ck_assert_msg(pages == (n + 19) / 20, "range on %s: %d pages of 20 for %d keys",
                  c->members[m].name, pages, n);
}

/* --- 1 ----------------------------------------------------------------------- */

START_TEST(write_through_follower_readable_everywhere)
{
    enum { N = 50 };
    static struct entry e[N];
    struct entry *sorted[N];
    uint64_t rng = 0x5eed0001, last = 0, rev = 0, deleted = 0;
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS);
    int follower = (leader + 1) % 3, other = (leader + 2) % 3;
    char target[512];
    struct tc_response r;

    for (int i = 0; i < N; i++) {
        random_key(&rng, "t1/", i, e[i].key, sizeof e[i].key);
        random_value(&rng, &e[i], i == 7);
        e[i].rev = tc_put(c, follower, e[i].key, e[i].value, e[i].len);
        ck_assert_msg(e[i].rev > last, "PUT %d: revision %llu after %llu", i,
                      (unsigned long long)e[i].rev, (unsigned long long)last);
        last = e[i].rev;
        sorted[i] = &e[i];
    }
    qsort(sorted, N, sizeof sorted[0], compare_entries);

    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < N; i++) {
            expect_entry(c, m, &e[i], "linearizable", true);
        }
        tc_wait_applied(c, m, last, APPLY_TIMEOUT_MS);
        for (int i = 0; i < N; i++) {
            expect_entry(c, m, &e[i], "serializable", true);
        }
        expect_range(c, m, "t1/", sorted, N, "linearizable");
        expect_range(c, m, "t1/", sorted, N, "serializable");
    }

    /* The followers served those linearizable reads themselves, through a
     * read index from the leader, instead of relaying each one. */
    for (int m = 0; m < 3; m++) {
        static const char served[] = "ballast_read_index_reads_total{outcome=\"served\"} ";
        const char *at;
        if (m == leader) {
            continue;
        }
        ck_assert_int_eq(tc_http(tc_addr(c, m), "GET", "/metrics", NULL, 0, NULL, &r), 0);
        at = r.body != NULL ? strstr(r.body, served) : NULL;
        ck_assert_msg(at != NULL && strtoull(at + sizeof served - 1, NULL, 10) >= N,
                      "%s served fewer than %d reads through a read index: %.200s",
                      c->members[m].name, N, at != NULL ? at : "(no metric)");
        tc_response_free(&r);
    }

    tc_kv_target(target, sizeof target, e[5].key, strlen(e[5].key), NULL);
    ck_assert_msg(tc_http(tc_addr(c, other), "DELETE", target, NULL, 0, NULL, &r) == 0,
                  "DELETE: %s", r.error);
    ck_assert_msg(r.status == 200, "DELETE %s: %d %.300s", target, r.status, r.body);
    ck_assert_msg(tc_json_u64(r.body, "revision", &rev) && rev > last,
                  "DELETE: revision %llu after %llu", (unsigned long long)rev,
                  (unsigned long long)last);
    ck_assert_msg(tc_json_u64(r.body, "deleted", &deleted) && deleted == 1,
                  "DELETE: deleted %llu, want 1: %.300s", (unsigned long long)deleted, r.body);
    tc_response_free(&r);
    for (int m = 0; m < 3; m++) {
        expect_absent(c, m, e[5].key, "linearizable");
        tc_wait_applied(c, m, rev, APPLY_TIMEOUT_MS);
        expect_absent(c, m, e[5].key, "serializable");
        expect_entry(c, m, &e[6], "serializable", true);
    }
    tc_cluster_stop(c);
}
END_TEST

/* --- 2 ----------------------------------------------------------------------- */

START_TEST(leader_kill9_new_leader_and_writes_continue)
{
    enum { N = 40 };
    static struct entry e[N];
    uint64_t rng = 0x5eed0002, last = 0;
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS), survivors[2], new_leader, attempts = 0;
    int64_t killed, elapsed, left;
    char target[512], outcome[400] = "no attempt";

    for (int i = 0; i < N; i++) {
        snprintf(e[i].key, sizeof e[i].key, "t2/%c-%03d", i < 20 ? 'a' : 'b', i);
        random_value(&rng, &e[i], false);
    }
    for (int i = 0; i < 20; i++) {
        e[i].rev = tc_put(c, i % 3, e[i].key, e[i].value, e[i].len);
        last = e[i].rev;
    }

    survivors[0] = (leader + 1) % 3;
    survivors[1] = (leader + 2) % 3;
    killed = tc_now_ms();
    tc_member_kill(c, leader, SIGKILL);

    /* The first write after the kill, retried every 20 ms through the
     * survivors in turn; the same value each time, so a retry whose first
     * attempt did commit changes nothing that is checked below. */
    tc_kv_target(target, sizeof target, e[20].key, strlen(e[20].key), NULL);
    for (;;) {
        struct tc_response r;
        int m = survivors[attempts++ % 2];
        uint64_t rev = 0;

        if (tc_http_ex(tc_addr(c, m), 2000, "PUT", target, e[20].value, e[20].len, NULL, &r) != 0) {
            snprintf(outcome, sizeof outcome, "via %s: %s", c->members[m].name, r.error);
        } else if (r.status == 200 && tc_json_u64(r.body, "revision", &rev)) {
            tc_response_free(&r);
            e[20].rev = last = rev;
            break;
        } else {
            snprintf(outcome, sizeof outcome, "via %s: %d %.200s", c->members[m].name, r.status,
                     r.body);
        }
        tc_response_free(&r);
        ck_assert_msg(tc_now_ms() - killed < 10000,
                      "no write succeeded within 10 s of killing the leader %s (%d attempts); "
                      "last: %s",
                      c->members[leader].name, attempts, outcome);
        tc_sleep_ms(20);
    }
    elapsed = tc_now_ms() - killed;
    fprintf(stderr, "METRIC kill9_to_first_write_ms=%lld\n", (long long)elapsed);

    left = 5000 - (tc_now_ms() - killed);
    new_leader = tc_wait_leader(c, left > 0 ? (int)left : 0);
    ck_assert_msg(new_leader != leader, "the killed member is still the leader");

    for (int i = 21; i < N; i++) {
        e[i].rev = tc_put(c, survivors[i % 2], e[i].key, e[i].value, e[i].len);
        ck_assert_msg(e[i].rev > last, "revision went back after the failover");
        last = e[i].rev;
    }

    tc_member_restart(c, leader);
    tc_wait_applied(c, leader, last, 20000);
    for (int i = 0; i < N; i++) {
        /* An attempt at the first write that timed out may have committed
         * after the one acknowledged: its revision is not checked. */
        expect_entry(c, leader, &e[i], "serializable", i != 20);
    }
    tc_wait_leader(c, 10000); /* it rejoined without disturbing the leadership */
    tc_cluster_stop(c);
}
END_TEST

/* --- 3 ----------------------------------------------------------------------- */

START_TEST(whole_cluster_restart_keeps_acknowledged_writes)
{
    enum { N = 100 };
    static struct entry e[N];
    uint64_t rng = 0x5eed0003, last = 0;
    struct tc_cluster *c = tc_cluster_start(3);

    tc_wait_stable(c, START_TIMEOUT_MS);
    for (int i = 0; i < N; i++) {
        random_key(&rng, "t3/", i, e[i].key, sizeof e[i].key);
        random_value(&rng, &e[i], false);
        e[i].rev = tc_put(c, i % 3, e[i].key, e[i].value, e[i].len);
        last = e[i].rev;
    }

    tc_cluster_kill(c, SIGKILL);
    for (int m = 0; m < 3; m++) {
        tc_member_restart(c, m);
    }
    tc_wait_stable(c, START_TIMEOUT_MS);

    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < N; i++) {
            expect_entry(c, m, &e[i], "linearizable", true);
        }
        tc_wait_applied(c, m, last, APPLY_TIMEOUT_MS);
        for (int i = 0; i < N; i++) {
            expect_entry(c, m, &e[i], "serializable", true);
        }
    }
    tc_cluster_stop(c);
}
END_TEST

/* --- 4 ----------------------------------------------------------------------- */

/* Whether @line holds @word as a whole token (between spaces, tabs or |). */
static bool has_token(const char *line, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t k = 0; k + wl <= len; k++) {
        bool before = k == 0 || strchr(" \t|,", line[k - 1]) != NULL;
        bool after = k + wl == len || strchr(" \t|,", line[k + wl]) != NULL;
        if (before && after && memcmp(line + k, word, wl) == 0) {
            return true;
        }
    }
    return false;
}

START_TEST(ctl_status_shows_three_members_one_leader)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_ctl_result res;
    char all[256], failover[128], raw_target[128];
    uint16_t closed_port;
    int rows = 0, leaders = 0;
    struct tc_response r;

    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_endpoints(c, all, sizeof all);

    tc_ctl(all, &res, "status", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl status: exit %d; stderr: %s", res.status, res.err);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(strstr(res.out, c->members[i].name) != NULL,
                      "ballastctl status does not name %s:\n%s", c->members[i].name, res.out);
    }
    for (const char *line = res.out; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        const char *hit = memmem(line, len, "member-", 7);
        if (hit != NULL) {
            rows++;
            leaders += has_token(line, len, "leader");
        }
        line += len + (line[len] == '\n');
    }
    ck_assert_msg(rows == 3, "ballastctl status: %d rows naming a member, want 3:\n%s", rows,
                  res.out);
    ck_assert_msg(leaders == 1, "ballastctl status: %d rows with role leader, want 1:\n%s", leaders,
                  res.out);
    tc_ctl_free(&res);

    tc_ctl(all, &res, "-o", "json", "status", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl -o json status: exit %d; stderr: %s", res.status,
                  res.err);
    ck_assert_msg(strstr(res.out, "\"leader\"") != NULL,
                  "ballastctl -o json status has no \"leader\":\n%s", res.out);
    tc_ctl_free(&res);

    tc_ctl(all, &res, "put", "ctl-key", "ctl-value-42", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl put: exit %d; stderr: %s", res.status, res.err);
    tc_ctl_free(&res);
    tc_ctl(all, &res, "get", "ctl-key", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl get: exit %d; stderr: %s", res.status, res.err);
    ck_assert_msg(strstr(res.out, "ctl-value-42") != NULL, "ballastctl get printed:\n%s", res.out);
    tc_ctl_free(&res);

    /* The CLI stored the value bytes alone (no newline). */
    tc_kv_target(raw_target, sizeof raw_target, "ctl-key", 7, "raw");
    ck_assert_msg(tc_http(tc_addr(c, 0), "GET", raw_target, NULL, 0, NULL, &r) == 0, "GET: %s",
                  r.error);
    ck_assert_msg(r.status == 200 && r.body_len == 12 && memcmp(r.body, "ctl-value-42", 12) == 0,
                  "GET %s: %d, %zu bytes '%s'", raw_target, r.status, r.body_len, r.body);
    tc_response_free(&r);

    tc_ctl(all, &res, "get", "ctl-missing-key", TC_END);
    ck_assert_msg(res.status == 1, "ballastctl get of a missing key: exit %d, want 1", res.status);
    tc_ctl_free(&res);
    tc_ctl(all, &res, "bogus", TC_END);
    ck_assert_msg(res.status == 2, "ballastctl bogus: exit %d, want 2", res.status);
    tc_ctl_free(&res);

    /* Failover: the first endpoint refuses connections. */
    tc_free_ports(&closed_port, 1);
    snprintf(failover, sizeof failover, "127.0.0.1:%u,%s", (unsigned)closed_port, tc_addr(c, 1));
    tc_ctl(failover, &res, "get", "ctl-key", TC_END);
    ck_assert_msg(res.status == 0 && strstr(res.out, "ctl-value-42") != NULL,
                  "ballastctl get with the first endpoint down: exit %d, stdout: %s; stderr: %s",
                  res.status, res.out, res.err);
    tc_ctl_free(&res);
    tc_ctl(failover, &res, "put", "ctl-key2", "v2", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl put with the first endpoint down: exit %d; %s",
                  res.status, res.err);
    tc_ctl_free(&res);
    tc_cluster_stop(c);
}
END_TEST

/* --- 5 ----------------------------------------------------------------------- */

START_TEST(http_errors_and_formats)
{
    static const uint8_t raw_value[] = {'a', 0x00, 0xff, '\n', 'z', 0x80};
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS), m = (leader + 1) % 3;
    const char *addr = tc_addr(c, m);
    char target[256];
    uint64_t r1 = 0, r2 = 0, rraw = 0;
    struct tc_response r, r_two;
    struct tc_conn conn;
    struct tc_kv kv;
    size_t big_len = 1572864 + 65536;
    char *big;
    uint8_t *key;
    size_t klen;
    static const char pipelined[] = "GET /v1/kv/t5%2Fcas HTTP/1.1\r\n"
                                    "Host: test\r\n"
                                    "Accept: application/json\r\n"
                                    "\r\n"
                                    "GET /healthz HTTP/1.1\r\n"
                                    "Host: test\r\n"
                                    "\r\n";

    /* A missing key. */
    call(addr, "GET", "/v1/kv/t5%2Fmissing", NULL, 0, NULL, &r);
    expect_error(&r, 404, "not_found", "GET of a missing key");
    expect_ballast_headers(&r, "GET of a missing key");
    tc_response_free(&r);

    /* Compare-and-set. */
    call(addr, "PUT", "/v1/kv/t5%2Fcas", "one", 3, NULL, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &r1), "PUT: %d %s", r.status,
                  r.body);
    expect_ballast_headers(&r, "PUT");
    tc_response_free(&r);
    call(addr, "PUT", "/v1/kv/t5%2Fcas?cas=0", "two", 3, NULL, &r);
    expect_error(&r, 412, "cas_failed", "PUT ?cas=0 on an existing key");
    expect_ballast_headers(&r, "PUT ?cas=0");
    tc_response_free(&r);
    snprintf(target, sizeof target, "/v1/kv/t5%%2Fcas?cas=%llu", (unsigned long long)r1);
    call(addr, "PUT", target, "two", 3, NULL, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &r2) && r2 > r1,
                  "PUT ?cas=<mod_revision>: %d %s", r.status, r.body);
    tc_response_free(&r);
    call(addr, "PUT", target, "three", 5, NULL, &r);
    expect_error(&r, 412, "cas_failed", "PUT with a stale ?cas");
    tc_response_free(&r);
    ck_assert_int_eq(tc_get(c, m, "t5/cas", NULL, &kv), 200);
    ck_assert_msg(kv.value_len == 3 && memcmp(kv.value, "two", 3) == 0 && kv.mod_revision == r2,
                  "after the CAS: '%s' at %llu", (const char *)kv.value,
                  (unsigned long long)kv.mod_revision);
    tc_kv_free(&kv);

    /* Bad range limits. */
    call(addr, "GET", "/v1/kv/t5%2F?prefix&limit=0", NULL, 0, NULL, &r);
    expect_error(&r, 400, "bad_request", "GET ?prefix&limit=0");
    expect_ballast_headers(&r, "GET ?prefix&limit=0");
    tc_response_free(&r);
    call(addr, "GET", "/v1/kv/t5%2F?prefix&limit=10001", NULL, 0, NULL, &r);
    expect_error(&r, 400, "bad_request", "GET ?prefix&limit=10001");
    tc_response_free(&r);

    /* A body over --max-request-bytes (1.5 MiB). */
    big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', big_len);
    ck_assert_msg(tc_http(addr, "PUT", "/v1/kv/t5%2Fbig", big, big_len, NULL, &r) == 0,
                  "PUT of %zu bytes: %s", big_len, r.error);
    expect_error(&r, 413, "too_large", "PUT of 1.5 MiB + 64 KiB");
    expect_ballast_headers(&r, "413");
    tc_response_free(&r);
    free(big);
    ck_assert_int_eq(tc_get(c, m, "t5/big", NULL, &kv), 404);

    /* ?raw: the exact bytes, metadata in headers. */
    call(addr, "PUT", "/v1/kv/t5%2Fraw", raw_value, sizeof raw_value, NULL, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &rraw), "PUT raw: %d %s",
                  r.status, r.body);
    tc_response_free(&r);
    call(addr, "GET", "/v1/kv/t5%2Fraw?raw", NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200, "GET ?raw: %d %s", r.status, r.body);
    ck_assert_msg(r.body_len == sizeof raw_value && memcmp(r.body, raw_value, r.body_len) == 0,
                  "GET ?raw: %zu bytes, want the %zu written", r.body_len, sizeof raw_value);
    ck_assert_msg(tc_header_u64(&r, "X-Ballast-Mod-Revision") == rraw,
                  "GET ?raw: X-Ballast-Mod-Revision %s, want %llu",
                  tc_header(&r, "X-Ballast-Mod-Revision"), (unsigned long long)rraw);
    expect_ballast_headers(&r, "GET ?raw");
    tc_response_free(&r);
    ck_assert_int_eq(tc_get(c, m, "t5/raw", "serializable", &kv), 200);
    ck_assert(kv.value_len == sizeof raw_value && memcmp(kv.value, raw_value, kv.value_len) == 0);
    tc_kv_free(&kv);

    /* Health and readiness. */
    call(addr, "GET", "/healthz", NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200, "/healthz: %d %s", r.status, r.body);
    expect_ballast_headers(&r, "/healthz");
    tc_response_free(&r);
    for (int i = 0; i < 3; i++) {
        tc_wait_ready(c, i, 5000);
    }

    /* Keep-alive: two pipelined requests in one write, then a third request,
     * all on one connection, answered in order. */
    ck_assert_msg(tc_conn_open(&conn, addr, 10000) == 0, "connect: %s", conn.error);
    ck_assert_msg(tc_conn_send(&conn, pipelined, sizeof pipelined - 1) == 0, "send: %s",
                  conn.error);
    ck_assert_msg(tc_conn_read_response(&conn, false, &r) == 0, "pipelined response 1: %s",
                  r.error);
    ck_assert_msg(tc_conn_read_response(&conn, false, &r_two) == 0, "pipelined response 2: %s",
                  r_two.error);
    ck_assert_msg(r.status == 200, "pipelined GET: %d %s", r.status, r.body);
    key = tc_json_b64(r.body, "key", &klen);
    ck_assert_msg(key != NULL && klen == 6 && memcmp(key, "t5/cas", 6) == 0,
                  "pipelined response 1 is not the kv of t5/cas: %.300s", r.body);
    free(key);
    ck_assert_msg(r_two.status == 200 && tc_json_find(r_two.body, "key") == NULL,
                  "pipelined response 2 is not /healthz: %d %.300s", r_two.status, r_two.body);
    tc_response_free(&r);
    tc_response_free(&r_two);
    ck_assert_msg(tc_conn_request(&conn, "GET", "/v1/kv/t5%2Fraw?raw", NULL, 0, NULL, &r) == 0,
                  "third request on the kept-alive connection: %s", r.error);
    ck_assert_msg(r.status == 200 && r.body_len == sizeof raw_value &&
                      memcmp(r.body, raw_value, r.body_len) == 0,
                  "third request: %d, %zu bytes", r.status, r.body_len);
    tc_response_free(&r);
    tc_conn_close(&conn);

    /* A malformed request line. */
    ck_assert_msg(tc_conn_open(&conn, addr, 10000) == 0, "connect: %s", conn.error);
    ck_assert(tc_conn_send(&conn, "this is not http\r\n\r\n", 20) == 0);
    ck_assert_msg(tc_conn_read_response(&conn, false, &r) == 0,
                  "no answer to a malformed request line: %s", r.error);
    ck_assert_msg(r.status == 400, "malformed request line: %d, want 400: %.300s", r.status,
                  r.body);
    tc_response_free(&r);
    tc_conn_close(&conn);

    tc_cluster_stop(c);
}
END_TEST

/* --- 6 ----------------------------------------------------------------------- */

START_TEST(idempotent_retry_with_request_id)
{
    static const char *const id[] = {"X-Ballast-Request-Id: abc123", NULL};
    static const char *const other_id[] = {"X-Ballast-Request-Id: abc124", NULL};
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS), follower = (leader + 1) % 3;
    uint64_t rev = 0, again = 0, third = 0;
    const char *replayed;
    struct tc_response r;
    struct tc_kv kv;

    call(tc_addr(c, follower), "PUT", "/v1/kv/t6%2Fidem", "v1", 2, id, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &rev), "first PUT: %d %s",
                  r.status, r.body);
    tc_response_free(&r);

    /* The retry goes to another member: the id is in the replicated store. */
    call(tc_addr(c, leader), "PUT", "/v1/kv/t6%2Fidem", "v2", 2, id, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &again), "retried PUT: %d %s",
                  r.status, r.body);
    ck_assert_msg(again == rev, "retried PUT answered revision %llu, the first %llu",
                  (unsigned long long)again, (unsigned long long)rev);
    replayed = tc_header(&r, "X-Ballast-Replayed");
    ck_assert_msg(replayed != NULL && strcmp(replayed, "true") == 0,
                  "retried PUT: X-Ballast-Replayed is %s", replayed ? replayed : "absent");
    tc_response_free(&r);

    call(tc_addr(c, follower), "GET", "/v1/kv/t6%2Fidem", NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200, "GET: %d %s", r.status, r.body);
    ck_assert_msg(tc_header_u64(&r, "X-Ballast-Revision") == rev,
                  "store revision %s after the retry, want %llu unchanged",
                  tc_header(&r, "X-Ballast-Revision"), (unsigned long long)rev);
    tc_response_free(&r);
    ck_assert_int_eq(tc_get(c, follower, "t6/idem", NULL, &kv), 200);
    ck_assert_msg(kv.value_len == 2 && memcmp(kv.value, "v1", 2) == 0,
                  "the retry overwrote the value: '%s'", (const char *)kv.value);
    ck_assert_msg(kv.mod_revision == rev && kv.version == 1, "mod_revision %llu version %llu",
                  (unsigned long long)kv.mod_revision, (unsigned long long)kv.version);
    tc_kv_free(&kv);

    /* A different id is a different write. */
    call(tc_addr(c, follower), "PUT", "/v1/kv/t6%2Fidem", "v3", 2, other_id, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &third) && third > rev,
                  "PUT with another id: %d %s", r.status, r.body);
    ck_assert_msg(tc_header(&r, "X-Ballast-Replayed") == NULL, "a new id was replayed");
    tc_response_free(&r);
    ck_assert_int_eq(tc_get(c, leader, "t6/idem", NULL, &kv), 200);
    ck_assert(kv.value_len == 2 && memcmp(kv.value, "v3", 2) == 0 && kv.version == 2);
    tc_kv_free(&kv);
    tc_cluster_stop(c);
}
END_TEST

/* --- 7. A corrupt Raft log refuses to start ------------------------------------- */

/* Flip one byte in the middle of the largest closed segment of @dir/raft.
 * Returns the segment's name in @name. */
static void corrupt_closed_segment(const char *data_dir, char *name, size_t cap)
{
    char raft_dir[TC_PATH_MAX + 8], path[TC_PATH_MAX + 48];
    struct dirent *e;
    off_t best_size = 0;
    struct stat st;
    DIR *d;
    FILE *f;
    int ch;

    snprintf(raft_dir, sizeof raft_dir, "%s/raft", data_dir);
    d = opendir(raft_dir);
    ck_assert_msg(d != NULL, "open %s", raft_dir);
    name[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        /* Closed segments are named START-END, 16 digits each. */
        if (strlen(e->d_name) != 33 || e->d_name[16] != '-') {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", raft_dir, e->d_name);
        if (stat(path, &st) == 0 && st.st_size > best_size) {
            best_size = st.st_size;
            snprintf(name, cap, "%s", e->d_name);
        }
    }
    closedir(d);
    ck_assert_msg(name[0] != '\0' && best_size > 64, "no closed segment in %s", raft_dir);
    snprintf(path, sizeof path, "%s/%s", raft_dir, name);
    f = fopen(path, "r+b");
    ck_assert_msg(f != NULL, "open %s", path);
    ck_assert_int_eq(fseeko(f, best_size / 2, SEEK_SET), 0);
    ch = fgetc(f);
    ck_assert_int_ne(ch, EOF);
    ck_assert_int_eq(fseeko(f, best_size / 2, SEEK_SET), 0);
    ck_assert_int_ne(fputc(ch ^ 0xff, f), EOF);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(corrupt_log_refuses_to_start)
{
    struct tc_cluster *c = tc_cluster_start(3);
    char key[32], segment[64], log[8192];
    int leader, victim;
    int64_t deadline;
    FILE *f;
    size_t n;

    ck_assert_int_ge(tc_wait_stable(c, 20000), 0);
    leader = tc_wait_leader(c, 10000);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "t7/k%03d", i);
        tc_put(c, leader, key, "value", 5);
    }
    victim = (leader + 1) % 3;
    /* A clean stop closes the open segment, so the entries sit in closed ones. */
    ck_assert_int_eq(tc_member_kill(c, victim, SIGTERM), 0);
    corrupt_closed_segment(c->members[victim].data_dir, segment, sizeof segment);

    tc_member_restart(c, victim);
    deadline = tc_now_ms() + 10000;
    while (tc_member_running(c, victim) && tc_now_ms() < deadline) {
        tc_sleep_ms(50);
    }
    ck_assert_msg(!tc_member_running(c, victim),
                  "member started on a log with a corrupt segment %s", segment);
    ck_assert_msg(WIFEXITED(c->members[victim].last_status) &&
                      WEXITSTATUS(c->members[victim].last_status) != 0,
                  "a member refusing to start must exit non-zero");
    c->members[victim].died = false; /* expected */

    f = fopen(c->members[victim].log_path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(log, 1, sizeof log - 1, f);
    if (n == sizeof log - 1) { /* keep the tail: the last start's lines */
        fseeko(f, -(off_t)(sizeof log - 1), SEEK_END);
        n = fread(log, 1, sizeof log - 1, f);
    }
    fclose(f);
    log[n] = '\0';
    ck_assert_msg(strstr(log, "cannot start member") != NULL && strstr(log, segment) != NULL,
                  "the refusal names neither the member nor the segment:\n%s", log);

    /* The two others still form a majority and serve writes. */
    tc_put(c, leader, "t7/after", "ok", 2);
    tc_cluster_stop(c);
}
END_TEST

/* --- 8. A follower that missed snapshots catches up through one --------------- */

/* Whether the log of member @i contains @needle. */
static bool log_contains(const struct tc_cluster *c, int i, const char *needle)
{
    FILE *f = fopen(c->members[i].log_path, "r");
    char line[1024];
    bool found = false;
    ck_assert_ptr_nonnull(f);
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

START_TEST(follower_catches_up_through_snapshot)
{
    static const char *const extra[] = {"--snapshot-threshold", "64", "--snapshot-trailing", "16",
                                        NULL};
    struct tc_cluster *c = tc_cluster_start_args(3, extra);
    char key[32], value[32], target[64];
    struct tc_response r;
    struct tc_kv kv;
    uint64_t rev = 0;
    int leader, victim;

    ck_assert_int_ge(tc_wait_stable(c, 20000), 0);
    leader = tc_wait_leader(c, 10000);
    victim = (leader + 1) % 3;
    tc_put(c, leader, "t8/gone", "x", 1);
    tc_wait_applied(c, victim, tc_put(c, leader, "t8/before", "b", 1), 10000);
    ck_assert_int_eq(tc_member_kill(c, victim, SIGKILL), SIGKILL);

    /* Several snapshots (every 64 entries) move the log far past the victim. */
    call(tc_addr(c, leader), "DELETE", "/v1/kv/t8%2Fgone", NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200, "DELETE: %d %s", r.status, r.body);
    tc_response_free(&r);
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof key, "t8/k%03d", i);
        snprintf(value, sizeof value, "v%d", i * 7);
        rev = tc_put(c, leader, key, value, strlen(value));
    }

    tc_member_restart(c, victim);
    tc_wait_applied(c, victim, rev, 30000);
    ck_assert_msg(log_contains(c, victim, "store replaced from snapshot"),
                  "the follower caught up without installing a snapshot: the test did not "
                  "exercise InstallSnapshot");
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof key, "t8/k%03d", i);
        snprintf(value, sizeof value, "v%d", i * 7);
        ck_assert_int_eq(tc_get(c, victim, key, "serializable", &kv), 200);
        ck_assert_msg(kv.value_len == strlen(value) && memcmp(kv.value, value, kv.value_len) == 0,
                      "%s on the restored follower: '%s', want '%s'", key, (char *)kv.value, value);
        tc_kv_free(&kv);
    }
    ck_assert_int_eq(tc_get(c, victim, "t8/before", "serializable", &kv), 200);
    tc_kv_free(&kv);
    /* A key deleted while the follower was down is gone from it too. */
    ck_assert_int_eq(tc_get(c, victim, "t8/gone", "serializable", &kv), 404);
    snprintf(target, sizeof target, "/v1/status");
    call(tc_addr(c, victim), "GET", target, NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &rev) && rev > 400,
                  "status: %s", r.body);
    tc_response_free(&r);
    /* And it takes part in new writes. */
    tc_wait_applied(c, victim, tc_put(c, leader, "t8/after", "a", 1), 10000);
    tc_cluster_stop(c);
}
END_TEST

/* --- 9. A full store refuses writes with 507 and keeps serving ---------------------- */

START_TEST(store_quota_full_then_recovers)
{
    static const char *const extra[] = {"--quota-bytes", "2MiB", NULL};
    struct tc_cluster *c = tc_cluster_start_args(3, extra);
    static char value[100 * 1000];
    char key[32], target[64], code[32];
    struct tc_response r;
    struct tc_kv kv;
    int leader, follower, accepted = 0, refused = 0;

    ck_assert_int_ge(tc_wait_stable(c, 20000), 0);
    leader = tc_wait_leader(c, 10000);
    follower = (leader + 1) % 3;
    memset(value, 'q', sizeof value);
    for (int i = 0; i < 60 && refused == 0; i++) {
        snprintf(target, sizeof target, "/v1/kv/t9%%2Fbig%02d", i);
        /* Through a follower: the leader's refusal must be relayed as is. */
        call(tc_addr(c, follower), "PUT", target, value, sizeof value, NULL, &r);
        if (r.status == 200) {
            accepted++;
        } else {
            ck_assert_msg(r.status == 507, "PUT %d: %d %s", i, r.status, r.body);
            ck_assert_str_eq(error_code(&r, code, sizeof code), "no_space");
            refused++;
        }
        tc_response_free(&r);
    }
    ck_assert_msg(refused == 1 && accepted >= 10 && accepted < 30,
                  "2 MiB quota: %d writes of 100 kB accepted before the first 507", accepted);

    /* Every member still runs Raft and serves reads. */
    tc_wait_leader(c, 10000);
    for (int m = 0; m < 3; m++) {
        ck_assert_int_eq(tc_get(c, m, "t9/big00", "serializable", &kv), 200);
        ck_assert_uint_eq(kv.value_len, sizeof value);
        tc_kv_free(&kv);
        ck_assert_msg(!log_contains(c, m, "fsm: apply entry"),
                      "member-%d failed to apply a committed entry", m + 1);
    }
    /* Deletes are admitted, and free space for new writes. */
    call(tc_addr(c, follower), "DELETE", "/v1/kv/t9%2Fbig?prefix", NULL, 0, NULL, &r);
    ck_assert_msg(r.status == 200, "DELETE prefix: %d %s", r.status, r.body);
    tc_response_free(&r);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "/v1/kv/t9%%2Fagain%d", i);
        call(tc_addr(c, leader), "PUT", key, value, sizeof value, NULL, &r);
        ck_assert_msg(r.status == 200, "PUT after freeing space: %d %s", r.status, r.body);
        tc_response_free(&r);
    }
    tc_cluster_stop(c);
}
END_TEST

/* --- 10. Leadership transfer on demand ------------------------------------------- */

/* POST /v1/leader with a JSON body to member @via; the answer must be 200
 * naming @want (a member index) as leader. */
static void transfer_to(struct tc_cluster *c, int via, int want, const char *what)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    struct tc_response r;
    char body[64];
    uint64_t id = 0, term = 0;

    snprintf(body, sizeof body, "{\"to\": %llu}", (unsigned long long)c->members[want].id);
    call(tc_addr(c, via), "POST", "/v1/leader", body, strlen(body), json, &r);
    ck_assert_msg(r.status == 200, "%s: POST /v1/leader %s via %s: %d %.300s", what, body,
                  c->members[via].name, r.status, r.body);
    ck_assert_msg(tc_json_u64(r.body, "leader", &id) && id == c->members[want].id,
                  "%s: the answer names leader %llu, want %llu: %.300s", what,
                  (unsigned long long)id, (unsigned long long)c->members[want].id, r.body);
    ck_assert_msg(tc_json_u64(r.body, "term", &term) && term > 0, "%s: no term in %.300s", what,
                  r.body);
    expect_ballast_headers(&r, what);
    tc_response_free(&r);
}

START_TEST(leader_transfer_on_demand)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    static const char not_member[] = "{\"to\": 99}", unknown_field[] = "{\"too\": 1}";
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS);
    int target = (leader + 1) % 3, via = (leader + 2) % 3, now;
    char all[256], line[128];
    uint64_t rev, next;
    struct tc_ctl_result res;
    struct tc_response r;
    int64_t start, elapsed;
    const char *allow;

    rev = tc_put(c, leader, "t10/before", "0", 1);

    /* Through a follower that is not the target: relayed to the leader,
     * which answers once the target leads. */
    start = tc_now_ms();
    transfer_to(c, via, target, "transfer through a follower");
    elapsed = tc_now_ms() - start;
    now = tc_wait_leader(c, elapsed < 5000 ? (int)(5000 - elapsed) : 0);
    ck_assert_msg(now == target, "%s leads after the transfer to %s", c->members[now].name,
                  c->members[target].name);
    ck_assert_msg(tc_now_ms() - start < 5000, "the transfer took %lld ms",
                  (long long)(tc_now_ms() - start));
    fprintf(stderr, "METRIC leader_transfer_ms=%lld\n", (long long)elapsed);
    next = tc_put(c, via, "t10/after-http", "1", 1);
    ck_assert_msg(next > rev, "revision %llu after the transfer, %llu before",
                  (unsigned long long)next, (unsigned long long)rev);
    rev = next;

    /* Naming the member that leads already is a no-op answered 200. */
    transfer_to(c, leader, target, "transfer to the leader itself");
    ck_assert_int_eq(tc_wait_leader(c, 5000), target);

    /* Only POST. */
    call(tc_addr(c, via), "GET", "/v1/leader", NULL, 0, NULL, &r);
    expect_error(&r, 405, "bad_request", "GET /v1/leader");
    allow = tc_header(&r, "Allow");
    ck_assert_msg(allow != NULL && strcmp(allow, "POST") == 0, "GET /v1/leader: Allow %s",
                  allow ? allow : "absent");
    tc_response_free(&r);

    /* ballastctl without an id: the most caught-up other voter. */
    tc_endpoints(c, all, sizeof all);
    tc_ctl(all, &res, "leader", "transfer", TC_END);
    ck_assert_msg(res.status == 0, "ballastctl leader transfer: exit %d; stdout: %s; stderr: %s",
                  res.status, res.out, res.err);
    now = tc_wait_leader(c, 5000);
    ck_assert_msg(now != target, "ballastctl leader transfer: %s still leads; it printed %s",
                  c->members[now].name, res.out);
    snprintf(line, sizeof line, "leader is now %s (%llu)", c->members[now].name,
             (unsigned long long)c->members[now].id);
    ck_assert_msg(strstr(res.out, line) != NULL,
                  "ballastctl leader transfer printed '%s', want '%s'", res.out, line);
    tc_ctl_free(&res);
    next = tc_put(c, target, "t10/after-ctl", "2", 1);
    ck_assert_msg(next > rev, "revision %llu after the second transfer, %llu before",
                  (unsigned long long)next, (unsigned long long)rev);
    rev = next;

    /* Not a member: 400, relayed from the leader; leadership stays. */
    call(tc_addr(c, (now + 1) % 3), "POST", "/v1/leader", not_member, strlen(not_member), json, &r);
    expect_error(&r, 400, "bad_request", "POST /v1/leader {\"to\": 99}");
    ck_assert_msg(strstr(r.body, "member 99 is not a voter") != NULL, "message: %.300s", r.body);
    tc_response_free(&r);
    call(tc_addr(c, now), "POST", "/v1/leader?to=99", NULL, 0, NULL, &r);
    expect_error(&r, 400, "bad_request", "POST /v1/leader?to=99");
    tc_response_free(&r);
    call(tc_addr(c, now), "POST", "/v1/leader", unknown_field, strlen(unknown_field), json, &r);
    expect_error(&r, 400, "bad_request", "POST /v1/leader {\"too\": 1}");
    tc_response_free(&r);
    ck_assert_int_eq(tc_wait_leader(c, 5000), now);
    next = tc_put(c, (now + 2) % 3, "t10/after-refusal", "3", 1);
    ck_assert_msg(next > rev, "revision %llu after the refused transfer, %llu before",
                  (unsigned long long)next, (unsigned long long)rev);
    tc_cluster_stop(c);
}
END_TEST

/* --- Suite ----------------------------------------------------------------------- */

/* Group commit: writes that arrive together at the leader share Raft
 * entries, and each still gets its own revision and answer. 8 connections
 * with 16 pipelined PUTs each: 128 acknowledged writes, 128 distinct
 * revisions, every value readable on every member, and far fewer than 128
 * new log entries (without batching there is one entry per write). */
START_TEST(concurrent_writes_share_raft_entries)
{
    enum { CONNS = 8, DEPTH = 16 };
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_conn conns[CONNS];
    struct tc_status before, after;
    bool seen[CONNS * DEPTH + 1] = {false};
    char err[128], req[256], v[32];
    uint64_t base;
    int leader = tc_wait_stable(c, 30000);

    ck_assert_int_eq(tc_get_status(c, leader, &before, err, sizeof err), 0);
    base = before.revision;
    for (int j = 0; j < CONNS; j++) {
        ck_assert_int_eq(tc_conn_open(&conns[j], tc_addr(c, leader), 2000), 0);
        for (int d = 0; d < DEPTH; d++) {
            int vl = snprintf(v, sizeof v, "v%d-%d", j, d);
            int len = snprintf(req, sizeof req,
                               "PUT /v1/kv/gc/%d/%d HTTP/1.1\r\nHost: %s\r\n"
                               "Content-Length: %d\r\n\r\n%s",
                               j, d, tc_addr(c, leader), vl, v);
            ck_assert_int_eq(tc_conn_send(&conns[j], req, (size_t)len), 0);
        }
    }
    for (int j = 0; j < CONNS; j++) {
        for (int d = 0; d < DEPTH; d++) {
            struct tc_response r;
            uint64_t rev = 0;
            ck_assert_int_eq(tc_conn_read_response(&conns[j], false, &r), 0);
            ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "revision", &rev),
                          "put %d/%d: %d %s", j, d, r.status, r.body);
            ck_assert_msg(rev > base && rev <= base + CONNS * DEPTH && !seen[rev - base],
                          "put %d/%d: revision %" PRIu64 " (base %" PRIu64 ") out of range or "
                          "given twice",
                          j, d, rev, base);
            seen[rev - base] = true;
            tc_response_free(&r);
        }
        tc_conn_close(&conns[j]);
    }
    ck_assert_int_eq(tc_get_status(c, leader, &after, err, sizeof err), 0);
    ck_assert_uint_eq(after.revision, base + CONNS * DEPTH);
    ck_assert_msg(after.commit_index - before.commit_index < CONNS * DEPTH / 2,
                  "%d writes took %" PRIu64 " log entries: not group committed", CONNS * DEPTH,
                  after.commit_index - before.commit_index);
    fprintf(stderr, "group commit: %d writes in %" PRIu64 " log entries\n", CONNS * DEPTH,
            after.commit_index - before.commit_index);
    for (int i = 0; i < 3; i++) {
        tc_wait_applied(c, i, after.revision, 10000);
        for (int j = 0; j < CONNS; j += 3) {
            struct tc_kv kv;
            char key[32];
            snprintf(key, sizeof key, "gc/%d/%d", j, DEPTH - 1);
            snprintf(v, sizeof v, "v%d-%d", j, DEPTH - 1);
            ck_assert_int_eq(tc_get(c, i, key, "serializable", &kv), 200);
            ck_assert_str_eq((char *)kv.value, v);
            tc_kv_free(&kv);
        }
    }
    tc_cluster_stop(c);
}
END_TEST

/* The leader appends a membership change (removing a follower) that never
 * commits, and the next leader's log overwrites it, after snapshots have
 * compacted the last committed configuration's entry out of every log.
 * canonical/raft 0.15 then crashes in membershipRollback() (upstream issues
 * #250/#323); the configuration guard rolls back from its own copy. Made
 * deterministic: kill -9 both followers, ask the leader to remove one (it
 * appends the entry, cannot commit it), pause the leader (SIGSTOP), restart
 * the followers (they elect a leader and write over that index), resume
 * the old leader. It must survive, follow, keep all three members
 * and apply new writes. */
START_TEST(uncommitted_removal_rolled_back_after_compaction)
{
    static const char *const args[] = {"--snapshot-threshold", "24", "--snapshot-trailing", "4",
                                       NULL};
    struct tc_cluster *c = tc_cluster_start_args(3, args);
    int old = tc_wait_stable(c, 30000), f1 = (old + 1) % 3, f2 = (old + 2) % 3, leader = -1;
    struct tc_response r;
    struct tc_status st;
    char target[64], err[128], key[32];
    int64_t deadline;
    uint64_t rev = 0;

    for (int k = 0; k < 100; k++) {
        snprintf(key, sizeof key, "fill/%d", k);
        rev = tc_put(c, old, key, "x", 1);
    }
    for (int i = 0; i < 3; i++) {
        tc_wait_applied(c, i, rev, 10000);
    }

    /* Followers killed, not paused: a paused one would still find the
     * entry in its socket buffer when resumed. */
    tc_member_kill(c, f1, SIGKILL);
    tc_member_kill(c, f2, SIGKILL);
    snprintf(target, sizeof target, "/v1/members/%" PRIu64, c->members[f1].id);
    /* It cannot commit: the answer does not come in time, and need not. */
    tc_http_ex(tc_addr(c, old), 300, "DELETE", target, NULL, 0, NULL, &r);
    tc_response_free(&r);
    kill(c->members[old].pid, SIGSTOP);
    tc_member_restart(c, f1);
    tc_member_restart(c, f2);

    deadline = tc_now_ms() + 20000;
    while (leader < 0) {
        for (int i = 0; i < 3 && leader < 0; i++) {
            if (i != old && tc_get_status(c, i, &st, err, sizeof err) == 0 &&
                strcmp(st.role, "leader") == 0) {
                leader = i;
            }
        }
        ck_assert_msg(leader >= 0 || tc_now_ms() < deadline, "no leader among the resumed two");
        tc_sleep_ms(50);
    }
    for (int k = 0; k < 10; k++) {
        snprintf(key, sizeof key, "after/%d", k);
        rev = tc_put(c, leader, key, "y", 1);
    }
    kill(c->members[old].pid, SIGCONT);

    tc_wait_applied(c, old, rev, 20000);
    tc_check_running(c);
    ck_assert_msg(log_contains(c, old, "confguard: rolled back"),
                  "%s did not roll back through the guard: see %s", c->members[old].name,
                  c->members[old].log_path);
    ck_assert_int_eq(
        tc_http(tc_addr(c, old), "GET", "/v1/members?consistency=serializable", NULL, 0, NULL, &r),
        0);
    ck_assert_msg(r.status == 200 && tc_json_len(r.body, "") == 3,
                  "members after the rollback: %d %s", r.status, r.body);
    tc_response_free(&r);
    leader = tc_wait_stable(c, 30000);
    rev = tc_put(c, leader, "last", "z", 1);
    for (int i = 0; i < 3; i++) {
        tc_wait_applied(c, i, rev, 10000);
    }
    tc_cluster_stop(c);
}
END_TEST

/* A members request that reaches a follower while its leader is gone is
 * parked until a leader is known, then relayed. Regression: a parked
 * members request was re-run as a KV read (its kind was never set), which
 * the read index path then answered 400 "get: bad request" (found by the
 * nemesis: a wiped member could not rejoin through a member that was
 * electing). */
START_TEST(members_request_parked_during_election_is_relayed)
{
    static const char body[] =
        "{\"name\":\"extra\",\"peer_url\":\"127.0.0.1:1\",\"client_url\":\"127.0.0.1:2\"}";
    static const char *const json[] = {"Content-Type: application/json", NULL};
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_stable(c, START_TIMEOUT_MS), follower = (leader + 1) % 3;
    struct tc_response r;

    tc_member_kill(c, leader, SIGKILL);
    ck_assert_int_eq(tc_http_ex(tc_addr(c, follower), 20000, "POST", "/v1/members", body,
                                sizeof body - 1, json, &r),
                     0);
    ck_assert_msg(r.status == 201, "POST /v1/members during an election: %d %.300s", r.status,
                  r.body);
    tc_response_free(&r);
    tc_member_restart(c, leader);
    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_cluster_stop(c);
}
END_TEST

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");
    tc_add_case(s, "write_through_follower_readable_everywhere",
                write_through_follower_readable_everywhere, 120);
    tc_add_case(s, "leader_kill9_new_leader_and_writes_continue",
                leader_kill9_new_leader_and_writes_continue, 120);
    tc_add_case(s, "whole_cluster_restart_keeps_acknowledged_writes",
                whole_cluster_restart_keeps_acknowledged_writes, 120);
    tc_add_case(s, "ctl_status_shows_three_members_one_leader",
                ctl_status_shows_three_members_one_leader, 120);
    tc_add_case(s, "http_errors_and_formats", http_errors_and_formats, 120);
    tc_add_case(s, "idempotent_retry_with_request_id", idempotent_retry_with_request_id, 120);
    tc_add_case(s, "corrupt_log_refuses_to_start", corrupt_log_refuses_to_start, 120);
    tc_add_case(s, "follower_catches_up_through_snapshot", follower_catches_up_through_snapshot,
                120);
    tc_add_case(s, "store_quota_full_then_recovers", store_quota_full_then_recovers, 120);
    tc_add_case(s, "leader_transfer_on_demand", leader_transfer_on_demand, 120);
    tc_add_case(s, "concurrent_writes_share_raft_entries", concurrent_writes_share_raft_entries,
                120);
    tc_add_case(s, "members_request_parked_during_election_is_relayed",
                members_request_parked_during_election_is_relayed, 120);
    tc_add_case(s, "uncommitted_removal_rolled_back_after_compaction",
                uncommitted_removal_rolled_back_after_compaction, 120);
    return s;
}

int main(void)
{
    return tc_main("test-cluster", cluster_suite);
}
