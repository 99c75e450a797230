/* Black-box tests of libballast and ballastctl against three real ballastd
 * processes on 127.0.0.1 (client/ballast.h, README "Using libballast").
 *
 * - Failover of writes: 300 puts through one client while the leader is
 *   killed (-9), restarted, and then the member the client talks to is
 *   killed: every put returns 0, and every key is there once (version 1:
 *   no retry applied a write twice).
 * - A watch from a past revision follows 200 writes made by another thread
 *   while the member serving it is killed (-9): it resumes on another
 *   member and delivers every write exactly once, in revision order.
 * - txn, leases, put with ttl and long-poll through the library.
 * - ballastctl txn FILE, lease grant/get/keepalive/revoke, put --lease,
 *   watch --rev (read from a running process), get --wait --index, and the
 *   bad-usage exits.
 *
 * Every wait has a deadline; threads report errors instead of asserting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ballast.h"
#include "cluster.h"

#define START_TIMEOUT_MS 20000
#define FAILOVER_PUTS    300
#define WATCH_PUTS       200

/* A client on every member of @c, @first's address first. */
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

/* The member index whose client address is @ep. */
static int member_at(struct tc_cluster *c, const char *ep)
{
    for (int i = 0; i < c->n; i++) {
        if (ep != NULL && strcmp(tc_addr(c, i), ep) == 0) {
            return i;
        }
    }
    ck_abort_msg("endpoint %s is no member", ep ? ep : "(none)");
    return -1;
}

/* --- failover of writes ----------------------------------------------------- */

START_TEST(test_failover_writes)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct ballast_client *cl;
    struct ballast_range_result rr;
    struct ballast_range_opts ro = {0};
    int leader, killed = -1;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    cl = client_for(c, leader);
    for (int i = 0; i < FAILOVER_PUTS; i++) {
        char key[32], val[32];
        int kl = snprintf(key, sizeof key, "f/%04d", i), vl = snprintf(val, sizeof val, "%d", i);
        if (i == 100) {
            /* the leader, which is also the member the client talks to */
            killed = tc_wait_leader(c, START_TIMEOUT_MS);
            tc_member_kill(c, killed, SIGKILL);
        } else if (i == 200) {
            tc_member_restart(c, killed);
            tc_wait_ready(c, killed, START_TIMEOUT_MS);
            killed = member_at(c, ballast_current_endpoint(cl));
            tc_member_kill(c, killed, SIGKILL);
        }
        int rv = ballast_put(cl, key, (size_t)kl, val, (size_t)vl, NULL, NULL);
        ck_assert_msg(rv == 0, "put %s: %s: %s", key, ballast_strerror(rv), ballast_errmsg(cl));
    }
    ro.limit = 1000;
    ck_assert_int_eq(ballast_range(cl, "f/", 2, &ro, &rr), 0);
    ck_assert_uint_eq(rr.count, FAILOVER_PUTS);
    ck_assert_uint_eq(rr.n, FAILOVER_PUTS);
    for (size_t i = 0; i < rr.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "%zu", i);
        ck_assert_str_eq(rr.kvs[i].value, want);
        ck_assert_msg(rr.kvs[i].version == 1, "%s applied %" PRId64 " times", rr.kvs[i].key,
                      rr.kvs[i].version);
    }
    ballast_range_result_free(&rr);
    ballast_client_free(cl);
    tc_member_restart(c, killed);
    tc_wait_ready(c, killed, START_TIMEOUT_MS); /* it catches up and stops cleanly */
    tc_cluster_stop(c);
}
END_TEST

/* --- a watch across the death of its member ------------------------------------ */

struct writer {
    struct tc_cluster *c;
    int first;
    int64_t revs[WATCH_PUTS]; /* the revision of each put */
    char error[256];
};

static void *write_all(void *arg)
{
    struct writer *w = arg;
    struct ballast_client *cl = client_for(w->c, w->first);
    for (int i = 0; i < WATCH_PUTS; i++) {
        struct ballast_put_result r;
        char key[32], val[32];
        int kl = snprintf(key, sizeof key, "w/%04d", i), vl = snprintf(val, sizeof val, "%d", i);
        int rv = ballast_put(cl, key, (size_t)kl, val, (size_t)vl, NULL, &r);
        if (rv != 0) {
            snprintf(w->error, sizeof w->error, "put %s: %s: %s", key, ballast_strerror(rv),
                     ballast_errmsg(cl));
            break;
        }
        w->revs[i] = r.revision;
        ballast_put_result_free(&r);
        tc_sleep_ms(5);
    }
    ballast_client_free(cl);
    return NULL;
}

START_TEST(test_watch_failover)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct ballast_watch_opts wo = {.prefix = 1};
    struct ballast_client *cl;
    struct ballast_watch *w;
    struct writer wr;
    pthread_t th;
    int leader, watched, got = 0;
    int64_t last = 0, deadline;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    watched = (leader + 1) % 3;
    wo.rev = (int64_t)tc_put(c, leader, "before", "x", 1) + 1; /* a past revision */
    cl = client_for(c, watched);
    memset(&wr, 0, sizeof wr);
    wr.c = c;
    wr.first = leader;
    ck_assert_int_eq(pthread_create(&th, NULL, write_all, &wr), 0);
    tc_sleep_ms(100); /* the watch starts behind the writes */
    ck_assert_int_eq(ballast_watch_open(cl, "w/", 2, &wo, &w), 0);
    ck_assert_str_eq(ballast_watch_endpoint(w), tc_addr(c, watched));
    deadline = tc_now_ms() + 60000;
    while (got < WATCH_PUTS && tc_now_ms() < deadline) {
        struct ballast_event ev;
        char want[32];
        int rv = ballast_watch_next(w, 1000, &ev);
        if (rv == BALLAST_EAGAIN || rv == BALLAST_EUNAVAILABLE || rv == BALLAST_ETIMEOUT) {
            continue; /* reconnecting */
        }
        ck_assert_msg(rv == 0, "watch: %s: %s", ballast_strerror(rv), ballast_errmsg(cl));
        if (ev.type == BALLAST_EVENT_PROGRESS) {
            continue;
        }
        ck_assert_int_eq(ev.type, BALLAST_EVENT_PUT);
        ck_assert_msg(ev.revision > last, "revision %" PRId64 " after %" PRId64, ev.revision, last);
        last = ev.revision;
        snprintf(want, sizeof want, "w/%04d", got);
        ck_assert_str_eq(ev.kv.key, want);
        snprintf(want, sizeof want, "%d", got);
        ck_assert_str_eq(ev.kv.value, want);
        if (++got == 60) {
            tc_member_kill(c, watched, SIGKILL); /* mid-stream, writes still coming */
        } else if (got > 60) {
            ck_assert_str_ne(ballast_watch_endpoint(w), tc_addr(c, watched)); /* moved on */
        }
    }
    pthread_join(th, NULL);
    ck_assert_msg(wr.error[0] == '\0', "writer: %s", wr.error);
    ck_assert_msg(got == WATCH_PUTS, "%d of %d events", got, WATCH_PUTS);
    ck_assert_int_eq(last, wr.revs[WATCH_PUTS - 1]);
    {
        /* nothing more: no event was delivered twice */
        struct ballast_event ev;
        int rv = ballast_watch_next(w, 300, &ev);
        ck_assert_msg(rv == BALLAST_EAGAIN || (rv == 0 && ev.type == BALLAST_EVENT_PROGRESS),
                      "an extra event: rv %d type %d rev %" PRId64, rv, ev.type, ev.revision);
    }
    ballast_watch_close(w);
    ballast_client_free(cl);
    tc_member_restart(c, watched);
    tc_wait_ready(c, watched, START_TIMEOUT_MS);
    tc_cluster_stop(c);
}
END_TEST

/* --- txn, leases, ttl, long-poll ------------------------------------------------- */

struct later_put {
    struct tc_cluster *c;
    int member, delay_ms;
    const char *key, *value;
};

static void *put_later(void *arg)
{
    struct later_put *p = arg;
    tc_sleep_ms(p->delay_ms);
    struct tc_response r;
    char target[128];
    tc_kv_target(target, sizeof target, p->key, strlen(p->key), NULL);
    tc_http(tc_addr(p->c, p->member), "PUT", target, p->value, strlen(p->value), NULL, &r);
    tc_response_free(&r);
    return NULL;
}

START_TEST(test_txn_lease_wait)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct ballast_client *cl;
    struct ballast_txn *t;
    struct ballast_txn_result tr;
    struct ballast_lease lease;
    struct ballast_lease_info li;
    struct ballast_put_opts po = BALLAST_PUT_OPTS_INIT;
    struct ballast_put_result pr;
    struct ballast_get_opts go = {0};
    struct ballast_kv *kv;
    struct later_put lp;
    pthread_t th;
    int64_t rev = 0, ttl = 0, deleted = 0, t0;
    int leader;

    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    cl = client_for(c, (leader + 1) % 3); /* through a follower */

    /* txn: the failure branch when the compare fails, then the success one */
    t = ballast_txn_new();
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(ballast_txn_compare(t, "t", 1, BALLAST_CMP_VERSION, BALLAST_CMP_EQ, 1), 0);
    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_SUCCESS, "t", 1, "two", 3, 0), 0);
    ck_assert_int_eq(ballast_txn_put(t, BALLAST_TXN_FAILURE, "t", 1, "one", 3, 0), 0);
    ck_assert_int_eq(ballast_txn_get(t, BALLAST_TXN_FAILURE, "t", 1, 0, 0, 0), 0);
    ck_assert_int_eq(ballast_txn(cl, t, &tr), 0);
    ck_assert(!tr.succeeded);
    ck_assert_uint_eq(tr.n_results, 2);
    ck_assert_int_eq(tr.results[1].type, BALLAST_OP_GET);
    ck_assert_uint_eq(tr.results[1].n, 1);
    ck_assert_str_eq(tr.results[1].kvs[0].value, "one"); /* the txn's own put, same revision */
    ck_assert_int_eq(tr.results[1].kvs[0].mod_revision, tr.revision);
    ballast_txn_result_free(&tr);
    ck_assert_int_eq(ballast_txn(cl, t, &tr), 0); /* a new txn: now version is 1 */
    ck_assert(tr.succeeded);
    ballast_txn_result_free(&tr);
    ballast_txn_free(t);
    ck_assert_int_eq(ballast_get(cl, "t", 1, BALLAST_LINEARIZABLE, &kv), 0);
    ck_assert_str_eq(kv->value, "two");
    ballast_kv_free(kv);

    /* a lease: its key lives until the revoke, which deletes it */
    ck_assert_int_eq(ballast_lease_grant(cl, 30, 0, &lease), 0);
    ck_assert_int_eq(lease.ttl, 30);
    po.lease = lease.id;
    ck_assert_int_eq(ballast_put(cl, "leased", 6, "v", 1, &po, NULL), 0);
    ck_assert_int_eq(ballast_lease_get(cl, lease.id, &li), 0);
    ck_assert_uint_eq(li.n_keys, 1);
    ck_assert_str_eq(li.keys[0].key, "leased");
    ck_assert_int_le(li.ttl, 30);
    ballast_lease_info_free(&li);
    ck_assert_int_eq(ballast_lease_keepalive(cl, lease.id, &ttl), 0);
    ck_assert_int_eq(ttl, 30);
    ck_assert_int_eq(ballast_lease_revoke(cl, lease.id, &rev, &deleted), 0);
    ck_assert_int_eq(deleted, 1);
    ck_assert_int_eq(ballast_get(cl, "leased", 6, BALLAST_LINEARIZABLE, &kv), BALLAST_ENOTFOUND);
    ck_assert_int_eq(ballast_lease_keepalive(cl, lease.id, &ttl), BALLAST_ENOTFOUND);

    /* a key with a TTL of its own goes away by itself */
    po = (struct ballast_put_opts)BALLAST_PUT_OPTS_INIT;
    po.ttl_ms = 2000;
    ck_assert_int_eq(ballast_put(cl, "ttl", 3, "v", 1, &po, &pr), 0);
    ck_assert_int_gt(pr.lease, 0);
    ballast_put_result_free(&pr);
    t0 = tc_now_ms();
    while (ballast_get(cl, "ttl", 3, BALLAST_LINEARIZABLE, &kv) == 0) {
        ballast_kv_free(kv);
        ck_assert_msg(tc_now_ms() - t0 < 10000, "ttl key still there after 10 s");
        tc_sleep_ms(100);
    }
    ck_assert_int_ge(tc_now_ms() - t0, 1000);

    /* long-poll: a put elsewhere wakes it; with no change the wait passes */
    rev = (int64_t)tc_put(c, leader, "lp", "v1", 2);
    go.index = rev;
    go.wait_ms = 20000;
    lp = (struct later_put){c, (leader + 2) % 3, 300, "lp", "v2"};
    ck_assert_int_eq(pthread_create(&th, NULL, put_later, &lp), 0);
    t0 = tc_now_ms();
    ck_assert_int_eq(ballast_get_wait(cl, "lp", 2, &go, &kv, &rev), 0);
    pthread_join(th, NULL);
    ck_assert_str_eq(kv->value, "v2");
    ck_assert_int_ge(tc_now_ms() - t0, 250);
    ck_assert_int_ge(rev, kv->mod_revision);
    ballast_kv_free(kv);
    go.index = rev;
    go.wait_ms = 500;
    t0 = tc_now_ms();
    ck_assert_int_eq(ballast_get_wait(cl, "lp", 2, &go, &kv, &rev), 0);
    ck_assert_int_ge(tc_now_ms() - t0, 450);
    ck_assert_str_eq(kv->value, "v2");
    ballast_kv_free(kv);

    ballast_client_free(cl);
    tc_cluster_stop(c);
}
END_TEST

/* --- ballastctl ------------------------------------------------------------------- */

/* A running `ballastctl watch ...` with its stdout on a pipe. */
struct ctl_proc {
    pid_t pid;
    int fd;
    char out[8192];
    size_t len;
};

static void ctl_spawn(struct ctl_proc *p, const char *endpoints, const char *const *args)
{
    const char *ctl = getenv("BALLASTCTL");
    int pfd[2];
    ck_assert_msg(ctl != NULL && ctl[0] != '\0', "BALLASTCTL is not set");
    ck_assert_int_eq(pipe(pfd), 0);
    memset(p, 0, sizeof *p);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        const char *argv[16] = {ctl, "--endpoints", endpoints};
        int n = 3;
        for (int i = 0; args[i] != NULL && n < 15; i++) {
            argv[n++] = args[i];
        }
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execv(ctl, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    p->fd = pfd[0];
}

/* Read until the output holds @n lines (bounded). */
static void ctl_read_lines(struct ctl_proc *p, unsigned n)
{
    int64_t deadline = tc_now_ms() + 10000;
    for (;;) {
        unsigned lines = 0;
        for (size_t i = 0; i < p->len; i++) {
            lines += p->out[i] == '\n';
        }
        if (lines >= n) {
            return;
        }
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        int64_t left = deadline - tc_now_ms();
        ck_assert_msg(left > 0, "ballastctl printed %u of %u lines: %.*s", lines, n, (int)p->len,
                      p->out);
        if (poll(&pfd, 1, (int)left) > 0) {
            ssize_t r = read(p->fd, p->out + p->len, sizeof p->out - 1 - p->len);
            ck_assert_msg(r > 0, "ballastctl ended after %u lines: %.*s", lines, (int)p->len,
                          p->out);
            p->len += (size_t)r;
            p->out[p->len] = '\0';
        }
    }
}

static void ctl_stop(struct ctl_proc *p)
{
    int st;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, &st, 0);
    close(p->fd);
}

START_TEST(test_ctl)
{
    struct tc_cluster *c = tc_cluster_start(3);
    struct tc_ctl_result res;
    struct ctl_proc watch;
    char eps[512], file[TC_PATH_MAX + 16], id[32], rev_s[32], idx[32];
    uint64_t rev;
    FILE *f;

    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_endpoints(c, eps, sizeof eps);

    /* txn FILE: "a" is "1" ("MQ==") so the success branch runs */
    rev = tc_put(c, 0, "a", "1", 1);
    snprintf(file, sizeof file, "%s/txn.json", c->dir);
    f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"compare\":[{\"key\":\"YQ==\",\"target\":\"value\",\"op\":\"==\",\"value\":\"MQ==\"}],"
          "\"success\":[{\"put\":{\"key\":\"Yg==\",\"value\":\"Mg==\"}}],"
          "\"failure\":[{\"get\":{\"key\":\"YQ==\"}}]}",
          f);
    fclose(f);
    ck_assert_int_eq(tc_ctl(eps, &res, "txn", file, TC_END), 0);
    ck_assert_msg(strstr(res.out, "succeeded: true") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, &res, "get", "b", TC_END), 0);
    ck_assert_msg(strstr(res.out, "b\n2\n") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"compare\":[{\"key\":\"YQ==\",\"target\":\"value\",\"op\":\"=\"}]}", f);
    fclose(f);
    ck_assert_int_eq(tc_ctl(eps, &res, "txn", file, TC_END), 2); /* bad usage */
    ck_assert_msg(strstr(res.err, "compare") != NULL, "%s", res.err);
    tc_ctl_free(&res);

    /* watch from a past revision, read while it runs: a, then b, then live c */
    snprintf(rev_s, sizeof rev_s, "%" PRIu64, rev);
    ctl_spawn(&watch, eps, (const char *const[]){"watch", "", "--prefix", "--rev", rev_s, NULL});
    ctl_read_lines(&watch, 6);
    ck_assert_msg(strcmp(watch.out, "PUT\na\n1\nPUT\nb\n2\n") == 0, "%s", watch.out);
    tc_put(c, 1, "c", "3", 1);
    ctl_read_lines(&watch, 9);
    ck_assert_msg(strcmp(watch.out + 16, "PUT\nc\n3\n") == 0, "%s", watch.out);
    ctl_stop(&watch);

    /* leases */
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "grant", "30", TC_END), 0);
    ck_assert_msg(sscanf(res.out, "lease %31s granted", id) == 1, "%s", res.out);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, NULL, "put", "--lease", id, "lk", "v", TC_END), 0);
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "get", id, TC_END), 0);
    ck_assert_msg(strstr(res.out, "1 attached keys") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "keepalive", id, "--once", TC_END), 0);
    ck_assert_msg(strstr(res.out, "TTL 30s") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "revoke", id, TC_END), 0);
    ck_assert_msg(strstr(res.out, "1 keys deleted") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, NULL, "get", "lk", TC_END), 1);
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "revoke", id, TC_END), 1);
    tc_ctl_free(&res);
    ck_assert_int_eq(tc_ctl(eps, &res, "lease", "grant", "zero", TC_END), 2);
    tc_ctl_free(&res);

    /* get --wait --index: no change within the wait answers the current value */
    rev = tc_put(c, 2, "a", "9", 1);
    snprintf(idx, sizeof idx, "%" PRIu64, rev);
    int64_t t0 = tc_now_ms();
    ck_assert_int_eq(tc_ctl(eps, &res, "get", "a", "--wait", "1s", "--index", idx, TC_END), 0);
    ck_assert_int_ge(tc_now_ms() - t0, 900);
    ck_assert_msg(strstr(res.out, "a\n9\n") != NULL, "%s", res.out);
    tc_ctl_free(&res);
    tc_cluster_stop(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("libballast");
    const struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"failover_writes", test_failover_writes},
        {"watch_failover", test_watch_failover},
        {"txn_lease_wait", test_txn_lease_wait},
        {"ctl", test_ctl},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_add_case(s, cases[i].name, cases[i].fn, 120);
    }
    return s;
}

int main(void)
{
    return tc_main("test-libballast", suite);
}
