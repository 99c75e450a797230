/* Black-box tests of transactions and leases over three real ballastd
 * processes on 127.0.0.1 (docs/api-notes.md, "Transactions", "Leases").
 *
 * - A counter incremented by compare-and-swap txns from four client
 *   threads, each through a different member, ends exact: every increment
 *   that was answered succeeded=true happened once, none was lost.
 * - A lease's keys live while keepalives arrive (sent to a follower, which
 *   relays them to the leader) and are deleted on every member, in one
 *   revision, once they stop; the lease is then 404.
 * - kill -9 of the leader with a lease pending: the new leader does not
 *   expire it early (it gives it a full TTL) and does expire it later; the
 *   killed member, restarted, agrees.
 * - PUT ?ttl= makes a key that goes away by itself.
 *
 * Every wait has a deadline; threads report errors instead of asserting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

#define START_TIMEOUT_MS 20000
#define WORKERS          4
#define INCREMENTS       25

static void b64(const void *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = in;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= p[i + 2];
        }
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* --- the cas counter ------------------------------------------------------ */

struct worker {
    struct tc_cluster *c;
    int member;
    int done;     /* increments that succeeded */
    int attempts; /* txns sent */
    char error[256];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char kb[16], ob[32], nb[32], body[512];
    const char *const headers[] = {"Content-Type: application/json", NULL};
    b64("counter", 7, kb);
    int64_t deadline = tc_now_ms() + 60000;
    while (w->done < INCREMENTS && tc_now_ms() < deadline) {
        struct tc_response r;
        char target[64];
        bool ok = false;
        tc_kv_target(target, sizeof target, "counter", 7, NULL);
        if (tc_http(tc_addr(w->c, w->member), "GET", target, NULL, 0, NULL, &r) != 0 ||
            r.status != 200) {
            snprintf(w->error, sizeof w->error, "GET counter: %d %.100s", r.status, r.error);
            tc_response_free(&r);
            return NULL;
        }
        size_t vlen = 0;
        uint8_t *v = tc_json_b64(r.body, "value", &vlen);
        tc_response_free(&r);
        if (v == NULL || vlen > 20) {
            snprintf(w->error, sizeof w->error, "counter value unreadable");
            free(v);
            return NULL;
        }
        long n = strtol((const char *)v, NULL, 10);
        b64(v, vlen, ob);
        free(v);
        char next[24];
        int nl = snprintf(next, sizeof next, "%ld", n + 1);
        b64(next, (size_t)nl, nb);
        snprintf(body, sizeof body,
                 "{\"compare\":[{\"key\":\"%s\",\"target\":\"value\",\"op\":\"==\",\"value\":"
                 "\"%s\"}],\"success\":[{\"put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                 kb, ob, kb, nb);
        w->attempts++;
        if (tc_http(tc_addr(w->c, w->member), "POST", "/v1/txn", body, strlen(body), headers, &r) !=
                0 ||
            r.status != 200 || !tc_json_bool(r.body, "succeeded", &ok)) {
            snprintf(w->error, sizeof w->error, "txn: %d %.80s %.100s", r.status, r.error,
                     r.body ? r.body : "");
            tc_response_free(&r);
            return NULL;
        }
        tc_response_free(&r);
        if (ok) {
            w->done++;
        }
    }
    return NULL;
}

START_TEST(test_txn_counter)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct worker w[WORKERS];
    pthread_t th[WORKERS];
    struct tc_kv kv;
    int attempts = 0;

    tc_wait_leader(c, START_TIMEOUT_MS);
    tc_put(c, 0, "counter", "0", 1);
    for (int i = 0; i < WORKERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].c = c;
        w[i].member = i % 3;
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].error[0] == '\0', "worker %d: %s", i, w[i].error);
        ck_assert_int_eq(w[i].done, INCREMENTS);
        attempts += w[i].attempts;
    }
    ck_assert_int_eq(tc_get(c, 1, "counter", NULL, &kv), 200);
    ck_assert_str_eq((const char *)kv.value, "100");
    /* one put of "0", then one revision per successful increment only */
    ck_assert_uint_eq(kv.version, 1 + WORKERS * INCREMENTS);
    tc_kv_free(&kv);
    fprintf(stderr, "txn counter: %d increments in %d txns\n", WORKERS * INCREMENTS, attempts);
    tc_cluster_stop(c);
}
END_TEST

/* --- leases ------------------------------------------------------------------------ */

static uint64_t grant(struct tc_cluster *c, int i, int ttl)
{
    struct tc_response r;
    char body[64];
    uint64_t id = 0;
    snprintf(body, sizeof body, "{\"ttl\":%d}", ttl);
    ck_assert_int_eq(tc_http(tc_addr(c, i), "POST", "/v1/lease", body, strlen(body), NULL, &r), 0);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "id", &id) && id != 0, "grant: %d %s",
                  r.status, r.body);
    tc_response_free(&r);
    return id;
}

static void put_lease(struct tc_cluster *c, int i, const char *key, uint64_t lease)
{
    struct tc_response r;
    char q[40], target[96];
    snprintf(q, sizeof q, "lease=%llu", (unsigned long long)lease);
    tc_kv_target(target, sizeof target, key, strlen(key), q);
    ck_assert_int_eq(tc_http(tc_addr(c, i), "PUT", target, "v", 1, NULL, &r), 0);
    ck_assert_msg(r.status == 200, "put %s with lease: %d %s", key, r.status, r.body);
    tc_response_free(&r);
}

static int lease_status(struct tc_cluster *c, int i, uint64_t lease, const char *what)
{
    struct tc_response r;
    char target[64];
    int status;
    snprintf(target, sizeof target, "/v1/lease/%llu%s", (unsigned long long)lease, what);
    ck_assert_int_eq(tc_http(tc_addr(c, i), what[0] ? "POST" : "GET", target, NULL, 0, NULL, &r),
                     0);
    status = r.status;
    tc_response_free(&r);
    return status;
}

/* 200 or 404 for @key on member @i, read serializable (its own state). */
static int local_get(struct tc_cluster *c, int i, const char *key)
{
    struct tc_kv kv;
    int status = tc_get(c, i, key, "serializable", &kv);
    tc_kv_free(&kv);
    return status;
}

/* Wait until @key is gone from every running member, bounded. */
static void wait_gone(struct tc_cluster *c, const char *key, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        bool all = true;
        for (int i = 0; i < c->n; i++) {
            if (tc_member_running(c, i) && local_get(c, i, key) != 404) {
                all = false;
            }
        }
        if (all) {
            return;
        }
        ck_assert_msg(tc_now_ms() < deadline, "%s still present after %d ms", key, timeout_ms);
        tc_sleep_ms(100);
    }
}

START_TEST(test_lease_keepalive_and_expiry)
{
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_leader(c, START_TIMEOUT_MS);
    int follower = (leader + 1) % 3;
    uint64_t lease = grant(c, follower, 2);

    put_lease(c, 0, "l/a", lease);
    put_lease(c, 1, "l/b", lease);
    put_lease(c, 2, "other", 0);
    /* 4 s of keepalives through a follower: twice the TTL */
    for (int k = 0; k < 8; k++) {
        ck_assert_int_eq(lease_status(c, follower, lease, "/keepalive"), 200);
        tc_sleep_ms(500);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(local_get(c, i, "l/a"), 200);
        ck_assert_int_eq(local_get(c, i, "l/b"), 200);
    }
    ck_assert_int_eq(lease_status(c, leader, lease, ""), 200);
    /* stop: gone within TTL + a tick + replication */
    int64_t t0 = tc_now_ms();
    wait_gone(c, "l/a", 5000);
    wait_gone(c, "l/b", 5000);
    ck_assert_int_ge(tc_now_ms() - t0, 1000); /* not before (most of) the TTL */
    ck_assert_int_eq(lease_status(c, follower, lease, ""), 404);
    ck_assert_int_eq(lease_status(c, follower, lease, "/keepalive"), 404);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(local_get(c, i, "other"), 200);
    }
    /* a put with an unknown lease is 404 and writes nothing */
    {
        struct tc_response r;
        char target[96];
        tc_kv_target(target, sizeof target, "l/c", 3, "lease=12345");
        ck_assert_int_eq(tc_http(tc_addr(c, 0), "PUT", target, "v", 1, NULL, &r), 0);
        ck_assert_int_eq(r.status, 404);
        tc_response_free(&r);
        ck_assert_int_eq(local_get(c, leader, "l/c"), 404);
    }
    tc_cluster_stop(c);
}
END_TEST

START_TEST(test_lease_leader_kill)
{
    struct tc_cluster *c = tc_cluster_start(3);
    int leader = tc_wait_leader(c, START_TIMEOUT_MS);
    uint64_t lease = grant(c, leader, 4);
    int64_t granted = tc_now_ms();

    put_lease(c, (leader + 1) % 3, "pending", lease);
    tc_sleep_ms(1000);
    tc_member_kill(c, leader, SIGKILL);
    int next = tc_wait_leader(c, START_TIMEOUT_MS);
    int64_t elected = tc_now_ms();
    /* The new leader gives the lease a full TTL from its election: the key
     * is still there 4 s after the grant (the old deadline). */
    int64_t wait = granted + 4500 - tc_now_ms();
    if (wait > 0) {
        tc_sleep_ms((int)wait);
    }
    if (tc_now_ms() < elected + 3500) {
        ck_assert_int_eq(local_get(c, next, "pending"), 200);
    }
    wait_gone(c, "pending", 10000);
    ck_assert_int_eq(lease_status(c, next, lease, ""), 404);
    tc_member_restart(c, leader);
    tc_wait_ready(c, leader, START_TIMEOUT_MS);
    wait_gone(c, "pending", 10000);
    tc_cluster_stop(c);
}
END_TEST

START_TEST(test_put_ttl)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_response r;
    char target[96];
    uint64_t lease = 0;

    tc_wait_leader(c, START_TIMEOUT_MS);
    tc_kv_target(target, sizeof target, "session", 7, "ttl=2s");
    ck_assert_int_eq(tc_http(tc_addr(c, 1), "PUT", target, "me", 2, NULL, &r), 0);
    ck_assert_msg(r.status == 200 && tc_json_u64(r.body, "lease", &lease) && lease != 0,
                  "put ttl: %d %s", r.status, r.body);
    tc_response_free(&r);
    /* replicated to every member (a serializable read may lag a little) */
    for (int i = 0; i < 3; i++) {
        int64_t deadline = tc_now_ms() + 1000;
        while (local_get(c, i, "session") != 200) {
            ck_assert_msg(tc_now_ms() < deadline, "session not on member %d", i);
            tc_sleep_ms(20);
        }
    }
    /* overwritten without ttl: the key's own lease goes, the key stays */
    tc_put(c, 0, "kept", "x", 1);
    tc_kv_target(target, sizeof target, "kept", 4, "ttl=2s");
    ck_assert_int_eq(tc_http(tc_addr(c, 0), "PUT", target, "y", 1, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    tc_response_free(&r);
    tc_put(c, 0, "kept", "z", 1);
    wait_gone(c, "session", 6000);
    tc_sleep_ms(1500);
    ck_assert_int_eq(local_get(c, 0, "kept"), 200);
    /* ttl with lease, and a bad ttl, are 400 */
    tc_kv_target(target, sizeof target, "k", 1, "ttl=2s&lease=5");
    ck_assert_int_eq(tc_http(tc_addr(c, 0), "PUT", target, "y", 1, NULL, &r), 0);
    ck_assert_int_eq(r.status, 400);
    tc_response_free(&r);
    tc_kv_target(target, sizeof target, "k", 1, "ttl=soon");
    ck_assert_int_eq(tc_http(tc_addr(c, 0), "PUT", target, "y", 1, NULL, &r), 0);
    ck_assert_int_eq(r.status, 400);
    tc_response_free(&r);
    tc_cluster_stop(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("txn_lease");
    const struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"txn_counter", test_txn_counter},
        {"lease_keepalive_and_expiry", test_lease_keepalive_and_expiry},
        {"lease_leader_kill", test_lease_leader_kill},
        {"put_ttl", test_put_ttl},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_add_case(s, cases[i].name, cases[i].fn, 120);
    }
    return s;
}

int main(void)
{
    return tc_main("test-txn-lease", suite);
}
