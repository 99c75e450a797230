/* Integration tests of replicas that come and go (issue 3): learners that
 * join and get promoted, removing the leader, a wiped volume that rejoins
 * under a fresh id, StatefulSet-derived identity with names that move to new
 * addresses, and a full disk. Real ballastd processes on 127.0.0.N, every
 * wait bounded. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"

/* HTTP with the harness's defaults; fails the test if no answer at all. */
static void call(const char *addr, const char *method, const char *target, const char *body,
                 struct tc_response *r)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    int rv = tc_http(addr, method, target, body, body != NULL ? strlen(body) : 0,
                     body != NULL ? json : NULL, r);
    ck_assert_msg(rv == 0, "%s %s on %s: no answer", method, target, addr);
}

/* GET /v1/members on @i: count voters and learners; whether @id is listed. */
static void members(struct tc_cluster *c, int i, int *voters, int *learners, uint64_t id,
                    bool *has_id)
{
    struct tc_response r;
    char path[32], role[16];
    int n;

    *voters = *learners = 0;
    if (has_id != NULL) {
        *has_id = false;
    }
    if (tc_http(tc_addr(c, i), "GET", "/v1/members", NULL, 0, NULL, &r) != 0) {
        return;
    }
    n = r.status == 200 ? tc_json_len(r.body, "") : 0;
    for (int k = 0; k < n; k++) {
        uint64_t mid = 0;
        snprintf(path, sizeof path, "%d.role", k);
        if (tc_json_str(r.body, path, role, sizeof role)) {
            *voters += strcmp(role, "voter") == 0;
            *learners += strcmp(role, "learner") == 0;
        }
        snprintf(path, sizeof path, "%d.id", k);
        if (has_id != NULL && tc_json_u64(r.body, path, &mid) && mid == id) {
            *has_id = true;
        }
    }
    tc_response_free(&r);
}

/* Wait until member @i lists @voters voters and @learners learners. */
static void wait_members(struct tc_cluster *c, int i, int voters, int learners, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    int v = -1, l = -1;
    for (;;) {
        members(c, i, &v, &l, 0, NULL);
        if (v == voters && l == learners) {
            return;
        }
        if (tc_now_ms() > deadline) {
            tc_dump_logs(c);
            ck_abort_msg("member %d lists %d voters and %d learners after %d ms, want %d and %d", i,
                         v, l, timeout_ms, voters, learners);
        }
        tc_check_running(c);
        tc_sleep_ms(100);
    }
}

/* Wait until member @i's GET /v1/members shows @n members with client URLs
 * (each published itself), so followers can forward. */
static void wait_published(struct tc_cluster *c, int i, int n, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        struct tc_response r;
        int found = 0;
        if (tc_http(tc_addr(c, i), "GET", "/v1/members", NULL, 0, NULL, &r) == 0) {
            for (const char *p = r.body; p != NULL && (p = strstr(p, "\"client_url\":\"1")) != NULL;
                 p++) {
                found++;
            }
            tc_response_free(&r);
        }
        if (found >= n) {
            return;
        }
        ck_assert_msg(tc_now_ms() < deadline, "member %d lists %d published members, want %d", i,
                      found, n);
        tc_check_running(c);
        tc_sleep_ms(100);
    }
}

/* PUT through member @i until it is acknowledged (a leader change is under
 * way); returns the revision. Fails after @timeout_ms. */
static uint64_t put_retry(struct tc_cluster *c, int i, const char *key, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char target[128];
    uint64_t rev = 0;
    tc_kv_target(target, sizeof target, key, strlen(key), NULL);
    for (;;) {
        struct tc_response r;
        int status = 0;
        if (tc_http(tc_addr(c, i), "PUT", target, "v", 1, NULL, &r) == 0) {
            status = r.status;
            if (status == 200) {
                ck_assert(tc_json_u64(r.body, "revision", &rev));
            }
            tc_response_free(&r);
        }
        if (status == 200) {
            return rev;
        }
        ck_assert_msg(tc_now_ms() < deadline, "PUT %s via member %d: last status %d", key, i,
                      status);
        tc_sleep_ms(100);
    }
}

/* Member @i's own Raft id from /v1/status (it changes on a rejoin). */
static uint64_t status_id(struct tc_cluster *c, int i, int timeout_ms)
{
    struct tc_status st;
    char err[256];
    int64_t deadline = tc_now_ms() + timeout_ms;
    while (tc_get_status(c, i, &st, err, sizeof err) != 0) {
        ck_assert_msg(tc_now_ms() < deadline, "status of %d: %s", i, err);
        tc_check_running(c);
        tc_sleep_ms(100);
    }
    return st.id;
}

static void put_many(struct tc_cluster *c, int i, const char *prefix, int n, uint64_t *rev)
{
    char key[64], value[300];
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof key, "%s/%04d", prefix, k);
        snprintf(value, sizeof value, "%s-value-%d", prefix, k * 13);
        *rev = tc_put(c, i, key, value, strlen(value));
    }
}

static void check_many(struct tc_cluster *c, int i, const char *prefix, int n)
{
    char key[64], value[300];
    struct tc_kv kv;
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof key, "%s/%04d", prefix, k);
        snprintf(value, sizeof value, "%s-value-%d", prefix, k * 13);
        ck_assert_msg(tc_get(c, i, key, "serializable", &kv) == 200, "%s missing on member %d", key,
                      i);
        ck_assert_msg(kv.value_len == strlen(value) && memcmp(kv.value, value, kv.value_len) == 0,
                      "%s on member %d: '%s', want '%s'", key, i, (char *)kv.value, value);
        tc_kv_free(&kv);
    }
}

/* How many lines of member @i's log contain @needle. */
static int log_count(const struct tc_cluster *c, int i, const char *needle)
{
    FILE *f = fopen(c->members[i].log_path, "r");
    char line[2048];
    int n = 0;
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

static bool log_contains(const struct tc_cluster *c, int i, const char *needle)
{
    return log_count(c, i, needle) > 0;
}

/* --- 1. A member joins with --join, catches up as a learner, is promoted ---------- */

START_TEST(learner_joins_and_is_promoted)
{
    struct tc_cluster *c = tc_cluster_start(3);
    char endpoints[256];
    uint64_t rev = 0;
    int leader, j;

    leader = tc_wait_stable(c, 20000);
    put_many(c, leader, "join", 200, &rev);
    tc_endpoints(c, endpoints, sizeof endpoints);
    const char *args[] = {"--join", endpoints, "--name", "joiner", NULL};
    j = tc_member_add(c, NULL, NULL, args, NULL);
    wait_members(c, leader, 4, 0, 30000);
    tc_wait_applied(c, j, rev, 20000);
    check_many(c, j, "join", 200);
    ck_assert_msg(log_contains(c, leader, "as a learner"), "the member was not added as a learner");
    ck_assert_msg(log_contains(c, leader, "is a voter now"), "no automatic promotion logged");
    /* It takes part in new writes and forwards them. */
    tc_wait_applied(c, j, tc_put(c, j, "join/after", "x", 1), 10000);
    tc_cluster_stop(c);
}
END_TEST

/* --- 2. A learner never counts toward quorum; promotion on demand ------------------ */

START_TEST(learner_does_not_count_toward_quorum)
{
    static const char *const extra[] = {"--no-auto-promote", NULL};
    struct tc_cluster *c = tc_cluster_start_args(3, extra);
    struct tc_response r;
    char endpoints[256], target[64];
    uint64_t rev = 0, id;
    int leader, j, a, b;

    leader = tc_wait_stable(c, 20000);
    put_many(c, leader, "q", 20, &rev);
    tc_endpoints(c, endpoints, sizeof endpoints);
    const char *args[] = {"--join", endpoints, NULL};
    j = tc_member_add(c, NULL, NULL, args, NULL);
    wait_members(c, leader, 3, 1, 30000);
    id = status_id(c, j, 5000);
    c->members[j].id = id; /* the leader chose it: none was asked for */
    tc_wait_applied(c, j, rev, 20000);

    /* Two of three voters down: leader + learner are two of four processes,
     * but the learner has no vote, so nothing may commit. */
    a = (leader + 1) % 3;
    b = (leader + 2) % 3;
    tc_member_kill(c, a, SIGKILL);
    tc_member_kill(c, b, SIGKILL);
    ck_assert_int_eq(
        tc_http_ex(tc_addr(c, leader), 4000, "PUT", "/v1/kv/q%2Fnoquorum", "x", 1, NULL, &r), 0);
    ck_assert_msg(r.status == 504 || r.status == 503,
                  "a write committed with one voter of three and a learner: %d %s", r.status,
                  r.body);
    tc_response_free(&r);
    tc_member_restart(c, a);
    tc_member_restart(c, b);
    leader = tc_wait_leader(c, 20000);

    snprintf(target, sizeof target, "/v1/members/%llu/promote", (unsigned long long)id);
    call(tc_addr(c, (leader + 1) % 3), "POST", target, NULL, &r);
    ck_assert_msg(r.status == 200, "promote: %d %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"voter\""));
    tc_response_free(&r);
    wait_members(c, leader, 4, 0, 10000);
    tc_cluster_stop(c);
}
END_TEST

/* --- 3. Removing the leader hands leadership over first ----------------------------- */

START_TEST(remove_leader)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_response r;
    char target[64];
    uint64_t rev = 0;
    int leader, other, now;

    leader = tc_wait_stable(c, 20000);
    put_many(c, leader, "rm", 10, &rev);
    other = (leader + 1) % 3;
    snprintf(target, sizeof target, "/v1/members/%llu", (unsigned long long)c->members[leader].id);
    call(tc_addr(c, other), "DELETE", target, NULL, &r);
    ck_assert_msg(r.status == 200, "DELETE leader: %d %s", r.status, r.body);
    tc_response_free(&r);
    wait_members(c, other, 2, 0, 10000);
    /* The old leader is out: stop it and check the two others serve. */
    tc_member_kill(c, leader, SIGTERM);
    now = tc_wait_leader(c, 10000);
    ck_assert_int_ne(now, leader);
    rev = tc_put(c, other, "rm/after", "y", 1);
    tc_wait_applied(c, (leader + 2) % 3, rev, 10000);
    check_many(c, (leader + 2) % 3, "rm", 10);
    tc_cluster_stop(c);
}
END_TEST

/* --- 4. A wiped follower rejoins by itself under a fresh id --------------------------- */

START_TEST(wiped_follower_rejoins)
{
    struct tc_cluster *c = tc_cluster_start(3);
    uint64_t rev = 0, old_id, new_id;
    bool has_old = true;
    int leader, victim, v, l;

    leader = tc_wait_stable(c, 20000);
    put_many(c, leader, "wipe", 300, &rev);
    victim = (leader + 1) % 3;
    old_id = c->members[victim].id;
    tc_wait_applied(c, victim, rev, 10000);
    tc_member_kill(c, victim, SIGKILL);
    tc_member_wipe(c, victim);
    put_many(c, leader, "wipe2", 50, &rev); /* acknowledged while it is down */
    tc_member_restart(c, victim);

    /* It is replaced: a fresh id, three voters again, the old id gone. */
    int64_t deadline = tc_now_ms() + 40000;
    for (;;) {
        members(c, leader, &v, &l, old_id, &has_old);
        if (v == 3 && l == 0 && !has_old) {
            break;
        }
        if (tc_now_ms() > deadline) {
            tc_dump_logs(c);
            ck_abort_msg("after the wipe: %d voters, %d learners, old id listed: %d", v, l,
                         has_old);
        }
        tc_check_running(c);
        tc_sleep_ms(200);
    }
    new_id = status_id(c, victim, 5000);
    ck_assert_msg(new_id != old_id, "the wiped member runs under its old id %llu",
                  (unsigned long long)old_id);
    c->members[victim].id = new_id;
    tc_wait_applied(c, victim, rev, 20000);
    check_many(c, victim, "wipe", 300);
    check_many(c, victim, "wipe2", 50);
    ck_assert_msg(log_count(c, victim, "bootstrapped a new cluster") == 1,
                  "the wiped member bootstrapped again");
    /* A restart keeps the new identity. */
    tc_member_kill(c, victim, SIGTERM);
    tc_member_restart(c, victim);
    ck_assert_uint_eq(status_id(c, victim, 10000), new_id);
    tc_wait_applied(c, victim, tc_put(c, leader, "wipe/after", "z", 1), 10000);
    tc_cluster_stop(c);
}
END_TEST

/* --- 5. StatefulSet identity, names at new addresses, scale 3 -> 5 -------------------- */

static char hosts_path[TC_PATH_MAX + 16];

static void write_hosts(const char *const *lines)
{
    char tmp[TC_PATH_MAX + 32];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", hosts_path);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; lines[i] != NULL; i++) {
        fprintf(f, "%s\n", lines[i]);
    }
    fclose(f);
    ck_assert_int_eq(rename(tmp, hosts_path), 0);
}

START_TEST(statefulset_identity_and_scale)
{
    struct tc_cluster *c = tc_cluster_start(1); /* a placeholder: replaced below */
    uint16_t ports[2];
    char pport[8], cport[8], env[TC_PATH_MAX + 64], peer[7][48], client[7][48], pod[7][16];
    uint64_t rev = 0;

    /* The placeholder founder is not part of this test. */
    tc_member_kill(c, 0, SIGKILL);
    tc_free_ports(ports, 2);
    snprintf(cport, sizeof cport, "%u", ports[0]);
    snprintf(pport, sizeof pport, "%u", ports[1]);
    snprintf(hosts_path, sizeof hosts_path, "%s/hosts", c->dir);
    const char *hosts[] = {"127.0.0.2 web-0.db", "127.0.0.3 web-1.db", "127.0.0.4 web-2.db",
                           "127.0.0.5 web-3.db", "127.0.0.6 web-4.db", NULL};
    write_hosts(hosts);
    snprintf(env, sizeof env, "BALLAST_HOSTS_FILE=%s", hosts_path);
    const char *envv[] = {env, NULL};
    for (int k = 0; k < 5; k++) {
        snprintf(pod[k], sizeof pod[k], "web-%d", k);
        snprintf(peer[k], sizeof peer[k], "127.0.0.%d:%s", k + 2, pport);
        snprintf(client[k], sizeof client[k], "127.0.0.%d:%s", k + 2, cport);
    }
    /* Client addresses are advertised as IPs: the test's HTTP client does
     * not read the hosts file; peers use the StatefulSet names. */
    for (int k = 0; k < 3; k++) {
        const char *args[] = {
            "--statefulset",      "db",      "--replicas", "3", "--pod-name", pod[k],
            "--advertise-client", client[k], NULL};
        tc_member_add(c, client[k], peer[k], args, envv);
    }
    /* Members 1..3 are the pods; member 0 stays down. */
    int64_t deadline = tc_now_ms() + 30000;
    struct tc_status st;
    char err[256];
    for (;;) {
        int ok = 0;
        for (int k = 1; k <= 3; k++) {
            ok += tc_get_status(c, k, &st, err, sizeof err) == 0 && st.leader != 0;
        }
        if (ok == 3) {
            break;
        }
        if (tc_now_ms() > deadline) {
            tc_dump_logs(c);
            ck_abort_msg("the StatefulSet pods found no leader");
        }
        tc_check_running(c);
        tc_sleep_ms(100);
    }
    for (int k = 1; k <= 3; k++) {
        ck_assert_int_eq(tc_get_status(c, k, &st, err, sizeof err), 0);
        ck_assert_uint_eq(st.id, (uint64_t)k); /* id = ordinal + 1 */
        ck_assert_str_eq(st.name, pod[k - 1]);
    }
    wait_members(c, 1, 3, 0, 20000);
    for (int k = 1; k <= 3; k++) {
        wait_published(c, k, 3, 20000);
    }
    for (int k = 0; k < 20; k++) {
        char key[32];
        snprintf(key, sizeof key, "sts/%d", k);
        rev = tc_put(c, 1 + k % 3, key, "v", 1);
    }

    /* web-1 is rescheduled: same name and volume, a new address. */
    tc_member_kill(c, 2, SIGKILL);
    const char *moved[] = {"127.0.0.2 web-0.db", "127.0.0.7 web-1.db", "127.0.0.4 web-2.db",
                           "127.0.0.5 web-3.db", "127.0.0.6 web-4.db", NULL};
    write_hosts(moved);
    snprintf(peer[1], sizeof peer[1], "127.0.0.7:%s", pport);
    snprintf(client[1], sizeof client[1], "127.0.0.7:%s", cport);
    {
        const char *args[] = {
            "--statefulset",      "db",      "--replicas", "3", "--pod-name", pod[1],
            "--advertise-client", client[1], NULL};
        tc_member_set(c, 2, client[1], peer[1], args);
    }
    tc_member_restart(c, 2);
    rev = put_retry(c, 1, "sts/moved", 20000);
    tc_wait_applied(c, 2, rev, 20000);

    /* Scale to five: ordinals 3 and 4 are not founders, they join. */
    for (int k = 3; k < 5; k++) {
        const char *args[] = {
            "--statefulset",      "db",      "--replicas", "3", "--pod-name", pod[k],
            "--advertise-client", client[k], NULL};
        tc_member_add(c, client[k], peer[k], args, envv);
    }
    wait_members(c, 1, 5, 0, 40000);
    for (int k = 4; k <= 5; k++) {
        tc_wait_applied(c, k, rev, 20000);
        ck_assert_int_eq(tc_get_status(c, k, &st, err, sizeof err), 0);
        ck_assert_uint_eq(st.id, (uint64_t)k);
    }
    tc_cluster_stop(c);
}
END_TEST

/* --- 6. A full disk refuses writes with 507, reads go on, writes resume ------------ */

START_TEST(disk_full_then_recovers)
{
    struct tc_cluster *c = tc_cluster_start(1);
    struct tc_response r;
    char path[TC_PATH_MAX + 16], env[TC_PATH_MAX + 64];
    struct tc_kv kv;
    FILE *f;

    tc_wait_stable(c, 20000);
    tc_put(c, 0, "disk/a", "1", 1);
    tc_member_kill(c, 0, SIGTERM);
    snprintf(path, sizeof path, "%s/free-bytes", c->dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%llu\n", 1ULL << 40);
    fclose(f);
    snprintf(env, sizeof env, "BALLAST_FAKE_FREE_FILE=%s", path);
    c->members[0].env[0] = strdup(env);
    c->members[0].env[1] = NULL;
    tc_member_restart(c, 0);
    tc_wait_leader(c, 20000);
    tc_put(c, 0, "disk/b", "2", 1);

    /* The file system fills up. */
    f = fopen(path, "w");
    fprintf(f, "%llu\n", 1ULL << 20);
    fclose(f);
    tc_sleep_ms(300); /* the checker samples every 100 ms */
    call(tc_addr(c, 0), "PUT", "/v1/kv/disk%2Fc", "3", &r);
    ck_assert_msg(r.status == 507 && strstr(r.body, "no_space") != NULL, "full disk: %d %s",
                  r.status, r.body);
    tc_response_free(&r);
    ck_assert_int_eq(tc_get(c, 0, "disk/a", "linearizable", &kv), 200);
    tc_kv_free(&kv);
    call(tc_addr(c, 0), "DELETE", "/v1/kv/disk%2Fa", NULL, &r);
    ck_assert_msg(r.status == 200, "a delete on a full disk: %d %s", r.status, r.body);
    tc_response_free(&r);

    /* Space is made: writes work again. */
    f = fopen(path, "w");
    fprintf(f, "%llu\n", 1ULL << 40);
    fclose(f);
    tc_sleep_ms(300);
    tc_put(c, 0, "disk/c", "3", 1);
    ck_assert_int_eq(tc_get(c, 0, "disk/c", "linearizable", &kv), 200);
    tc_kv_free(&kv);
    ck_assert_int_eq(tc_get(c, 0, "disk/b", "linearizable", &kv), 200);
    tc_kv_free(&kv);
    tc_cluster_stop(c);
}
END_TEST

/* --- Suite ----------------------------------------------------------------------- */

static Suite *lifecycle_suite(void)
{
    Suite *s = suite_create("lifecycle");
    tc_add_case(s, "learner_joins_and_is_promoted", learner_joins_and_is_promoted, 150);
    tc_add_case(s, "learner_does_not_count_toward_quorum", learner_does_not_count_toward_quorum,
                150);
    tc_add_case(s, "remove_leader", remove_leader, 150);
    tc_add_case(s, "wiped_follower_rejoins", wiped_follower_rejoins, 150);
    tc_add_case(s, "statefulset_identity_and_scale", statefulset_identity_and_scale, 150);
    tc_add_case(s, "disk_full_then_recovers", disk_full_then_recovers, 150);
    return s;
}

int main(void)
{
    return tc_main("test-lifecycle", lifecycle_suite);
}
