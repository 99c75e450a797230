/* Fault injection ("nemesis") against three real ballastd processes: the
 * short profile run by `make check`.
 *
 * nemesis_kill_and_pause: a register workload (tests/nemesis/workload.h: 6
 * client threads, 4 active keys at a time, each key retired after 150 ops;
 * linearizable reads, unique blind writes, compare-and-swaps as txns) runs
 * for NEMESIS_RUN_S seconds (40; $NEMESIS_RUN_S overrides) while the main
 * thread injects one fault at a time, about every 3 s, chosen by a seeded
 * generator (the seed is printed; $NEMESIS_SEED replays a schedule):
 *   - kill -9 a member (the leader half the time, else a random member),
 *     restart it 1-3 s later and wait until it is ready;
 *   - SIGSTOP a member (the leader half the time) for 1-3 s, then SIGCONT.
 * Each fault heals before the next one and before the end. Once the
 * workload stopped and the cluster is stable again, it checks:
 *   (a) linearizability of the whole history (tests/nemesis/lincheck.h),
 *       with a final linearizable read of every key used appended to it (so
 *       an acknowledged write that was lost is a violation too); an
 *       undecided verdict counts as a failure;
 *   (b) no invented values: each key's final value is absent or a value
 *       written by a write/cas that was acknowledged or whose outcome is
 *       unknown;
 *   (c) convergence: every member, once it applied the leader's revision,
 *       holds (serializable read) the same value of every key as the
 *       leader's linearizable read, and all members report that revision.
 * On a failure the history is written to <cluster dir>/history.txt (the
 * directory is kept: the test fails before tc_cluster_stop()), and the
 * checker's report and the seed are printed.
 *
 * nemesis_checker_catches_injected_fault: no cluster. A history shaped like
 * the workload's (three clients a key, overlapping ops, two keys) is checked as
 * linearizable; then one read is made to return a stale value, and the
 * checker must report a violation on that key: the pipeline from history to
 * verdict can fail. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ballast.h"
#include "cluster.h"
#include "history.h"
#include "lincheck.h"
#include "workload.h"

#define START_TIMEOUT_MS 20000
#define HEAL_TIMEOUT_MS  30000
#define NEMESIS_RUN_S    40
#define NEM_CLIENTS      6
#define NEM_KEYS         4
#define NEM_OPS_PER_KEY  150
#define NEM_PREFIX       "nem/"
#define CHECK_MAX_MS     40000

/* --- helpers ------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned env_unsigned(const char *name, unsigned dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (s == NULL || *s == '\0') {
        return dflt;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    return errno == 0 && *end == '\0' ? (unsigned)v : dflt;
}

/* The index of the member that says it leads, or -1 (never fails). */
static int find_leader(struct tc_cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        struct tc_status st;
        char err[256];
        if (tc_member_running(c, i) && tc_get_status(c, i, &st, err, sizeof err) == 0 &&
            strcmp(st.role, "leader") == 0) {
            return i;
        }
    }
    return -1;
}

/* Parse a stored value as the workload does: -1 when it is not a positive
 * decimal int64 (no op writes that). */
static int64_t parse_value(const uint8_t *s, size_t len)
{
    char buf[32], *end;
    long long v;

    if (len == 0 || len >= sizeof buf) {
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    return errno != 0 || *end != '\0' || v <= 0 ? -1 : (int64_t)v;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct keys of @h, sorted, into a malloc'd array of *@n. */
static uint32_t *history_keys(const struct history *h, size_t *n)
{
    uint32_t *k = malloc((h->n ? h->n : 1) * sizeof *k);
    size_t m = 0;

    ck_assert(k != NULL);
    for (size_t i = 0; i < h->n; i++) {
        k[i] = h->ops[i].key;
    }
    qsort(k, h->n, sizeof *k, cmp_u32);
    for (size_t i = 0; i < h->n; i++) {
        if (m == 0 || k[m - 1] != k[i]) {
            k[m++] = k[i];
        }
    }
    *n = m;
    return k;
}

/* Whether some write or cas of @key in @h may have stored @value: an
 * acknowledged write, a cas that swapped, or one of either whose outcome is
 * unknown. */
static bool value_written(const struct history *h, uint32_t key, int64_t value)
{
    for (size_t i = 0; i < h->n; i++) {
        const struct hist_op *op = &h->ops[i];
        if (op->key != key || op->value != value) {
            continue;
        }
        if (op->type == HIST_WRITE && (op->status == HIST_OK || op->status == HIST_UNKNOWN)) {
            return true;
        }
        if (op->type == HIST_CAS &&
            ((op->status == HIST_OK && op->out_ok) || op->status == HIST_UNKNOWN)) {
            return true;
        }
    }
    return false;
}

/* A client on every member of @c, @first's address first, with a patient
 * deadline (for the checks after healing). */
static struct ballast_client *client_for(struct tc_cluster *c, int first)
{
    struct ballast_options o = {.request_timeout_ms = 20000, .attempt_timeout_ms = 3000};
    char eps[512], err[256];
    size_t n = 0;
    struct ballast_client *cl;

    n += (size_t)snprintf(eps + n, sizeof eps - n, "%s", tc_addr(c, first));
    for (int i = 0; i < c->n; i++) {
        if (i != first) {
            n += (size_t)snprintf(eps + n, sizeof eps - n, ",%s", tc_addr(c, i));
        }
    }
    cl = ballast_client_new(eps, &o, err, sizeof err);
    ck_assert_msg(cl != NULL, "client: %s", err);
    return cl;
}

/* --- the nemesis -------------------------------------------------------------- */

/* Run the fault schedule until @t_end_ms (tc_now_ms() clock); returns the
 * number of faults injected. Every fault is healed on return. */
static int run_nemesis(struct tc_cluster *c, uint64_t *rng, int64_t t0_ms, int64_t t_end_ms)
{
    int faults = 0;

    for (;;) {
        int gap = 1000 + (int)(tc_rand(rng) % 1001);
        int dur = 1000 + (int)(tc_rand(rng) % 2001);
        bool kill9 = tc_rand(rng) % 2 == 0;
        bool at_leader = tc_rand(rng) % 2 == 0;
        int victim = (int)(tc_rand(rng) % (uint64_t)c->n);

        if (tc_now_ms() + gap + dur + 500 > t_end_ms) {
            break;
        }
        tc_sleep_ms(gap);
        if (at_leader) {
            int l = find_leader(c);
            if (l >= 0) {
                victim = l;
            }
        }
        faults++;
        fprintf(stderr, "nemesis: t=%.1fs fault %d: %s member-%d%s for %d ms\n",
                (double)(tc_now_ms() - t0_ms) / 1000.0, faults, kill9 ? "kill -9" : "SIGSTOP",
                victim + 1, at_leader ? " (leader)" : "", dur);
        if (kill9) {
            tc_member_kill(c, victim, SIGKILL);
            tc_sleep_ms(dur);
            tc_member_restart(c, victim);
            tc_wait_ready(c, victim, HEAL_TIMEOUT_MS);
        } else {
            pid_t pid = c->members[victim].pid;
            ck_assert_int_gt(pid, 0);
            ck_assert_int_eq(kill(pid, SIGSTOP), 0);
            tc_sleep_ms(dur);
            ck_assert_int_eq(kill(pid, SIGCONT), 0);
        }
        fprintf(stderr, "nemesis: t=%.1fs fault %d healed\n",
                (double)(tc_now_ms() - t0_ms) / 1000.0, faults);
    }
    while (tc_now_ms() < t_end_ms) {
        tc_sleep_ms((int)(t_end_ms - tc_now_ms() < 100 ? t_end_ms - tc_now_ms() : 100));
    }
    return faults;
}

START_TEST(test_kill_and_pause)
{
    uint64_t seed = env_unsigned("NEMESIS_SEED", 0), rng;
    unsigned run_s = env_unsigned("NEMESIS_RUN_S", NEMESIS_RUN_S);
    struct tc_cluster *c;
    struct workload_opts wo;
    struct workload *w;
    struct history h;
    struct lincheck_opts lo = {.max_states = 1u << 22, .max_ms = CHECK_MAX_MS};
    struct lincheck_result lr;
    struct ballast_client *cl;
    char eps[512], hist_path[TC_PATH_MAX + 32] = "(not written)";
    size_t n_ops, n_ok = 0, n_fail = 0, n_unknown = 0, n_keys, lost = 0, diverged = 0;
    uint32_t *keys;
    int64_t *final;
    int leader, faults, lin_rv, violations;
    int64_t t0;
    struct tc_status lst;
    char err[256];
    bool revisions_equal = true;

    if (seed == 0) {
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    }
    rng = seed ? seed : 1;
    fprintf(stderr, "nemesis: seed %" PRIu64 " (NEMESIS_SEED=%" PRIu64 " replays the schedule)\n",
            seed, seed);

    c = tc_cluster_start(3);
    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_endpoints(c, eps, sizeof eps);

    memset(&wo, 0, sizeof wo);
    wo.endpoints = eps;
    wo.clients = NEM_CLIENTS;
    wo.keys = NEM_KEYS;
    wo.ops_per_key = NEM_OPS_PER_KEY;
    wo.prefix = NEM_PREFIX;
    wo.op_timeout_ms = 2000;
    ck_assert_int_eq(workload_start(&wo, &w), 0);

    t0 = tc_now_ms();
    faults = run_nemesis(c, &rng, t0, t0 + (int64_t)run_s * 1000);

    hist_init(&h);
    workload_stop(w, &h);
    n_ops = h.n;
    for (size_t i = 0; i < h.n; i++) {
        n_ok += h.ops[i].status == HIST_OK;
        n_fail += h.ops[i].status == HIST_FAIL;
        n_unknown += h.ops[i].status == HIST_UNKNOWN;
    }
    ck_assert_msg(n_ops > 0, "the workload recorded no ops");

    /* heal: a stable cluster, then the final value of every key through
     * the leader, appended to the history as reads of one more client */
    leader = tc_wait_stable(c, HEAL_TIMEOUT_MS);
    keys = history_keys(&h, &n_keys);
    final = calloc(n_keys ? n_keys : 1, sizeof *final);
    ck_assert(final != NULL);
    cl = client_for(c, leader);
    for (size_t k = 0; k < n_keys; k++) {
        char key[64];
        int kl = snprintf(key, sizeof key, NEM_PREFIX "%" PRIu32, keys[k]);
        struct ballast_kv *kv = NULL;
        struct hist_op op;
        int rv;

        memset(&op, 0, sizeof op);
        op.client = NEM_CLIENTS;
        op.type = HIST_READ;
        op.key = keys[k];
        op.invoke_ns = mono_ns();
        rv = ballast_get(cl, key, (size_t)kl, BALLAST_LINEARIZABLE, &kv);
        op.complete_ns = mono_ns();
        ck_assert_msg(rv == BALLAST_OK || rv == BALLAST_ENOTFOUND, "final read of %s: %s: %s", key,
                      ballast_strerror(rv), ballast_errmsg(cl));
        op.status = HIST_OK;
        op.out = rv == BALLAST_OK ? parse_value((const uint8_t *)kv->value, kv->value_len) : 0;
        ballast_kv_free(kv);
        final[k] = op.out;
        ck_assert_int_eq(hist_add(&h, &op), 0);
        if (op.out != 0 && !value_written(&h, keys[k], op.out)) {
            fprintf(stderr,
                    "nemesis: LOST/INVENTED: key %s holds %" PRId64
                    ", which no acknowledged or unknown write stored\n",
                    key, op.out);
            lost++;
        }
    }
    ballast_client_free(cl);

    /* (c) convergence: every member applied the leader's revision, holds
     * the same values and reports the same revision */
    ck_assert_msg(tc_get_status(c, leader, &lst, err, sizeof err) == 0, "status of leader: %s",
                  err);
    for (int i = 0; i < c->n; i++) {
        struct tc_status st;
        tc_wait_applied(c, i, lst.revision, HEAL_TIMEOUT_MS);
        for (size_t k = 0; k < n_keys; k++) {
            char key[64];
            struct tc_kv kv;
            int64_t v;
            snprintf(key, sizeof key, NEM_PREFIX "%" PRIu32, keys[k]);
            v = tc_get(c, i, key, "serializable", &kv) == 200 ? parse_value(kv.value, kv.value_len)
                                                              : 0;
            tc_kv_free(&kv);
            if (v != final[k]) {
                fprintf(stderr,
                        "nemesis: DIVERGED: %s on member-%d is %" PRId64
                        ", the leader's linearizable read %" PRId64 "\n",
                        key, i + 1, v, final[k]);
                diverged++;
            }
        }
        ck_assert_msg(tc_get_status(c, i, &st, err, sizeof err) == 0, "status of member-%d: %s",
                      i + 1, err);
        if (st.revision != lst.revision) {
            fprintf(stderr,
                    "nemesis: member-%d reports revision %" PRIu64 ", the leader %" PRIu64 "\n",
                    i + 1, st.revision, lst.revision);
            revisions_equal = false;
        }
    }
    lost += diverged;

    /* (a) linearizability (the final reads included) */
    memset(&lr, 0, sizeof lr);
    lin_rv = lincheck_run(&h, &lo, &lr);
    violations = lin_rv != LIN_OK || lr.verdict != LIN_OK;

    fprintf(stderr,
            "nemesis: ops=%zu ok=%zu failed=%zu unknown=%zu faults=%d violations=%d lost=%zu "
            "(keys=%zu, checked %zu keys / %zu ops, verdict %d, seed %" PRIu64 ")\n",
            n_ops, n_ok, n_fail, n_unknown, faults, violations, lost, n_keys, lr.keys, lr.ops,
            lr.verdict, seed);
    if (violations || lost || !revisions_equal) {
        snprintf(hist_path, sizeof hist_path, "%s/history.txt", c->dir);
        if (hist_write(&h, hist_path) == 0) {
            fprintf(stderr, "nemesis: history written to %s\n", hist_path);
        } else {
            fprintf(stderr, "nemesis: could not write %s: %s\n", hist_path, strerror(errno));
        }
        if (violations) {
            fprintf(stderr, "nemesis: %s on key %s%" PRIu32 " (lincheck_run %d):\n%s\n",
                    lr.verdict == LIN_UNDECIDED ? "UNDECIDED" : "VIOLATION", NEM_PREFIX, lr.key,
                    lin_rv, lr.report ? lr.report : "(no report)");
        }
    }
    ck_assert_msg(!violations,
                  "history not linearizable (verdict %d, key %" PRIu32 ", seed %" PRIu64
                  "): see %s",
                  lr.verdict, lr.key, seed, hist_path);
    ck_assert_msg(lost == 0,
                  "%zu keys hold an invented or diverged value (seed %" PRIu64 "): see %s", lost,
                  seed, hist_path);
    ck_assert_msg(revisions_equal, "members report different revisions (seed %" PRIu64 ")", seed);

    lincheck_result_free(&lr);
    free(final);
    free(keys);
    hist_free(&h);
    tc_cluster_stop(c);
}
END_TEST

/* --- the checker can fail -------------------------------------------------- */

/* A history like the workload's: ops of clients client0..client0+2 in turn on @key, with
 * linearization points 10 us apart and invoke/complete up to 14 us either
 * side (so neighbouring ops overlap, but one client's ops never do),
 * applied to a register in the order of those points. */
static void make_history(struct history *h, uint32_t key, int client0, int n, uint64_t *rng,
                         int64_t base)
{
    int64_t reg = 0, seq = 0, last_read[3] = {0, 0, 0};

    for (int i = 0; i < n; i++) {
        struct hist_op op;
        int64_t at = base + (int64_t)i * 10000;
        uint64_t r = tc_rand(rng) % 10;

        memset(&op, 0, sizeof op);
        op.client = client0 + i % 3;
        op.key = key;
        op.status = HIST_OK;
        op.invoke_ns = at - (int64_t)(tc_rand(rng) % 14000);
        op.complete_ns = at + (int64_t)(tc_rand(rng) % 14000);
        if (r < 4) {
            op.type = HIST_READ;
            op.out = reg;
            last_read[i % 3] = reg;
        } else if (r < 7) {
            op.type = HIST_WRITE;
            op.value = (int64_t)(op.client + 1) * 1000000000 + ++seq;
            reg = op.value;
        } else {
            op.type = HIST_CAS;
            op.expect = last_read[i % 3];
            op.value = (int64_t)(op.client + 1) * 1000000000 + ++seq;
            op.out_ok = reg == op.expect;
            if (op.out_ok) {
                reg = op.value;
            }
        }
        ck_assert_int_eq(hist_add(h, &op), 0);
    }
}

/* Whether @op (OK) stored its value. */
static bool swaps(const struct hist_op *op)
{
    return op->type == HIST_WRITE || (op->type == HIST_CAS && op->out_ok);
}

START_TEST(test_checker_catches_injected_fault)
{
    struct history h;
    struct lincheck_opts lo = {.max_states = 1000000, .max_ms = 10000};
    struct lincheck_result lr;
    uint64_t rng = 0x5eed;
    size_t victim = SIZE_MAX;
    int64_t stale = 0;
    struct hist_op extra;

    hist_init(&h);
    make_history(&h, 1, 0, 60, &rng, 1000000);
    make_history(&h, 2, 5, 60, &rng, 1000000);
    /* an op whose outcome is unknown and a failed read, as faults leave
     * them: neither may make the clean history fail */
    memset(&extra, 0, sizeof extra);
    extra.client = 3;
    extra.key = 1;
    extra.type = HIST_WRITE;
    extra.value = 4000000001;
    extra.status = HIST_UNKNOWN;
    extra.invoke_ns = 2000000;
    ck_assert_int_eq(hist_add(&h, &extra), 0);
    extra.client = 4;
    extra.type = HIST_READ;
    extra.value = 0;
    extra.out = 77;
    extra.status = HIST_FAIL;
    extra.invoke_ns = 1000000;
    extra.complete_ns = 3000000;
    ck_assert_int_eq(hist_add(&h, &extra), 0);

    memset(&lr, 0, sizeof lr);
    ck_assert_int_eq(lincheck_run(&h, &lo, &lr), lr.verdict);
    ck_assert_msg(lr.verdict == LIN_OK, "clean history judged %d on key %" PRIu32 ": %s",
                  lr.verdict, lr.key, lr.report ? lr.report : "");
    lincheck_result_free(&lr);

    /* On key 2, a read R made to return the value V of a write W1 that
     * completed before a swapping write W2 began, W2 having completed
     * before R began: every order puts W1 < W2 < R, and values are never
     * written twice, so no linearization lets R see V. */
    for (size_t i = 0; i < h.n && victim == SIZE_MAX; i++) {
        const struct hist_op *r = &h.ops[i];
        if (r->key != 2 || r->type != HIST_READ) {
            continue;
        }
        for (size_t j = 0; j < h.n && victim == SIZE_MAX; j++) {
            const struct hist_op *w2 = &h.ops[j];
            if (w2->key != 2 || !swaps(w2) || w2->complete_ns >= r->invoke_ns) {
                continue;
            }
            for (size_t k = 0; k < h.n; k++) {
                const struct hist_op *w1 = &h.ops[k];
                if (w1->key == 2 && swaps(w1) && w1->complete_ns < w2->invoke_ns &&
                    w1->value != r->out) {
                    victim = i;
                    stale = w1->value;
                    break;
                }
            }
        }
    }
    ck_assert_msg(victim != SIZE_MAX, "no read to make stale in the generated history");
    h.ops[victim].out = stale;

    memset(&lr, 0, sizeof lr);
    ck_assert_int_eq(lincheck_run(&h, &lo, &lr), lr.verdict);
    ck_assert_msg(lr.verdict == LIN_VIOLATION,
                  "a read of a stale value (op %zu) was not caught: verdict %d", victim,
                  lr.verdict);
    ck_assert_uint_eq(lr.key, 2);
    fprintf(stderr, "nemesis: checker sanity: injected stale read caught:\n%s\n",
            lr.report ? lr.report : "(no report)");
    lincheck_result_free(&lr);
    hist_free(&h);
}
END_TEST

/* --- a paused leader with linearizable reads queued ------------------------------ */

struct reader {
    struct tc_cluster *c;
    int member;
    volatile int *stop;
    unsigned done;
};

/* Linearizable GETs on one keep-alive connection, as fast as they come
 * back; errors (the member paused, stepped down) just reconnect. */
static void *read_loop(void *arg)
{
    struct reader *r = arg;
    struct tc_conn conn = {.fd = -1};
    while (!*r->stop) {
        struct tc_response resp;
        if (conn.fd < 0 && tc_conn_open(&conn, tc_addr(r->c, r->member), 500) != 0) {
            tc_conn_close(&conn);
            conn.fd = -1;
            tc_sleep_ms(20);
            continue;
        }
        memset(&resp, 0, sizeof resp);
        if (tc_conn_request(&conn, "GET", "/v1/kv/r", NULL, 0, NULL, &resp) != 0) {
            tc_conn_close(&conn);
            conn.fd = -1;
        } else {
            r->done++;
        }
        tc_response_free(&resp);
    }
    tc_conn_close(&conn);
    return NULL;
}

/* Regression: a leader paused (SIGSTOP) while linearizable reads wait on
 * its barrier, then resumed after the others elected a new leader, steps
 * down; canonical/raft 0.15 fails the barrier while still converting, and
 * member.c started the next barrier from that callback, which crashed in
 * libraft (progress array already freed). 32 readers keep reads queued on
 * the leader through each pause; every member must still be running. */
START_TEST(test_paused_leader_with_reads)
{
    struct tc_cluster *c = tc_cluster_start(3);
    enum { READERS = 32, ROUNDS = 6 };
    struct reader rd[READERS];
    pthread_t th[READERS];
    volatile int stop = 0;
    unsigned total = 0;

    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_put(c, 0, "r", "1", 1);
    for (int round = 0; round < ROUNDS; round++) {
        int leader = tc_wait_leader(c, START_TIMEOUT_MS);
        stop = 0;
        for (int i = 0; i < READERS; i++) {
            rd[i] = (struct reader){.c = c, .member = leader, .stop = &stop};
            ck_assert_int_eq(pthread_create(&th[i], NULL, read_loop, &rd[i]), 0);
        }
        tc_sleep_ms(300);
        ck_assert_int_eq(kill(c->members[leader].pid, SIGSTOP), 0);
        tc_sleep_ms(1500); /* the others elect a new leader meanwhile */
        ck_assert_int_eq(kill(c->members[leader].pid, SIGCONT), 0);
        tc_sleep_ms(1000); /* it resumes with reads queued and steps down */
        stop = 1;
        for (int i = 0; i < READERS; i++) {
            pthread_join(th[i], NULL);
            total += rd[i].done;
        }
        tc_check_running(c);
        tc_wait_stable(c, START_TIMEOUT_MS);
    }
    fprintf(stderr, "paused_leader_with_reads: %u reads answered in %d rounds\n", total, ROUNDS);
    ck_assert_uint_gt(total, 0);
    tc_cluster_stop(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nemesis");
    tc_add_case(s, "paused_leader_with_reads", test_paused_leader_with_reads, 120);
    tc_add_case(s, "nemesis_checker_catches_injected_fault", test_checker_catches_injected_fault,
                30);
    tc_add_case(s, "nemesis_kill_and_pause", test_kill_and_pause, 140);
    return s;
}

int main(void)
{
    return tc_main("test-nemesis", suite);
}
