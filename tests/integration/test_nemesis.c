/* Fault injection ("nemesis") against real ballastd processes.
 *
 * A register workload (tests/nemesis/workload.h: 6 client threads, 4 active
 * keys at a time, each key retired after 150 ops; linearizable reads, unique
 * blind writes, compare-and-swaps as txns) and two watchers of its keys
 * (tests/nemesis/watchcheck.h) run while the main thread injects one fault at
 * a time, chosen by a seeded generator (the seed is printed; $NEMESIS_SEED
 * replays the fault schedule and the clients' choices). The fault kinds are
 * the enum below; each heals before the next one and before the end. Once
 * the workload stopped and the cluster is stable again, run_profile() checks:
 *   (a) linearizability of the whole history (tests/nemesis/lincheck.h),
 *       with a final linearizable read of every key used appended to it (so
 *       an acknowledged write that was lost is a violation too); an
 *       undecided verdict counts as a failure;
 *   (b) no invented values: each key's final value is absent or a value
 *       written by a write/cas that was acknowledged or whose outcome is
 *       unknown;
 *   (c) convergence: every member, once it applied the leader's revision,
 *       holds (serializable read) the same value of every key as the
 *       leader's linearizable read, the same whole content (a hash of a
 *       range read of every key), and reports that revision;
 *   (d) the watchers saw every acknowledged write once, in revision order,
 *       in real-time order per key, and nothing that was not written;
 *   (e) every enabled fault kind was injected at least once.
 * It prints one summary line, "nemesis: profile=... ops=... violations=...".
 * On a failure the history is written to <cluster dir>/history.txt (the
 * directory is kept: the test fails before tc_cluster_stop()).
 *
 * Cases: nemesis_kill_and_pause (30 s: kill -9 and SIGSTOP only);
 * nemesis_all_faults (every kind; 90 s on 3 members by default, the long
 * profile with NEMESIS_MEMBERS/NEMESIS_RUN_S/NEMESIS_FAULTS, see
 * tests/README.md); paused_leader_with_reads (a regression);
 * nemesis_checker_catches_injected_fault (no cluster: the pipeline from
 * history to verdict can fail). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ballast.h"
#include "cluster.h"
#include "history.h"
#include "delayproxy.h"
#include "lincheck.h"
#include "netfault.h"
#include "watchcheck.h"
#include "workload.h"

#define START_TIMEOUT_MS 20000
#define HEAL_TIMEOUT_MS  30000
#define NEMESIS_RUN_S    90
#define NEM_CLIENTS      6
#define NEM_KEYS         4
#define NEM_OPS_PER_KEY  150
#define NEM_PREFIX       "nem/"
#define CHECK_MAX_MS     40000 /* the checker's wall-time budget, plus 100 ms per second run */

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

/* --- the faults ------------------------------------------------------------------ */

enum fault {
    F_KILL,       /* kill -9 a member (the leader half the time), restart it */
    F_PAUSE,      /* SIGSTOP a member (the leader half the time), SIGCONT */
    F_CLOCK,      /* restart a member under libfaketime, jump/drift its clocks, restore */
    F_DISK,       /* fill the file system of the disk member's data dir, then free it */
    F_WIPE,       /* kill -9 a member, remove its data dir, restart: it rejoins */
    F_MEMBERSHIP, /* remove a member through the API, wipe it, restart: it joins again */
    F_TRANSFER,   /* hand leadership to a random other voter */
    F_ISOLATE,    /* cut one member (the leader half the time) off from the others */
    F_SPLIT,      /* a random minority against the majority */
    F_BRIDGE,     /* two halves that cannot reach each other, both reaching one member */
    F_LOSS,       /* drop 10-30 % of the packets between members */
    F_DELAY,      /* delay traffic between members by 20-150 ms (+ up to 50 ms jitter) */
    F_CRASHPOINT, /* restart a member with BALLAST_CRASH_AT: it aborts inside the server */
    F__COUNT
};

static const char *const FAULT_NAMES[F__COUNT] = {
    [F_KILL] = "kill",
    [F_PAUSE] = "pause",
    [F_CLOCK] = "clock",
    [F_DISK] = "disk",
    [F_WIPE] = "wipe",
    [F_MEMBERSHIP] = "membership",
    [F_TRANSFER] = "transfer",
    [F_ISOLATE] = "isolate",
    [F_SPLIT] = "split",
    [F_BRIDGE] = "bridge",
    [F_LOSS] = "loss",
    [F_DELAY] = "delay",
    [F_CRASHPOINT] = "crashpoint",
};

/* The crash points of ballastd (raft_glue/crashpoint.h) and how many hits
 * to let pass before aborting: appends and commits come hundreds a second,
 * snapshots every --snapshot-threshold entries, installs only on a member
 * that fell behind (it is down for the fault's duration first). */
static const struct {
    const char *name;
    int max_hits;
} CRASH_POINTS[] = {
    {"raft-append-before", 200},    {"raft-append-after", 200},    {"lmdb-commit-before", 200},
    {"lmdb-commit-after", 200},     {"snapshot-take-before", 2},   {"snapshot-take-after", 2},
    {"snapshot-install-before", 1}, {"snapshot-install-after", 1},
};

/* Whether fault @f needs members on their own addresses (and the proxy). */
static bool net_fault(int f)
{
    return f == F_ISOLATE || f == F_SPLIT || f == F_BRIDGE || f == F_LOSS || f == F_DELAY;
}

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
#define DISK_MB      256

/* One nemesis run's settings. */
struct profile {
    const char *name;
    int members;
    unsigned run_s;
    bool faults[F__COUNT];
    int gap_ms[2]; /* pause between two faults: [min, max] */
    int dur_ms[2]; /* how long a fault lasts: [min, max] */
};

/* What the nemesis holds while it runs. */
struct nemesis {
    struct tc_cluster *c;
    const struct profile *p;
    uint64_t rng;
    int64_t t0;
    uint64_t founder_ids[TC_MAX_MEMBERS]; /* the --id each member was founded with: a
                                             wiped member starts with it again, as a pod
                                             with unchanged flags would */
    int disk_member;                      /* its data dir is a small tmpfs, or -1 */
    char clock_file[TC_PATH_MAX + 32];    /* libfaketime's FAKETIME_TIMESTAMP_FILE */
    char clock_env[4][TC_PATH_MAX + 64];
    int injected[F__COUNT];
    int total;
    int transfers_refused;
    int crashed_on_disk_full;
    int crash_points_hit, crash_points_missed;
    struct delayproxy *proxy; /* with network faults: between every two members */
    struct netfault *nf;      /* with network faults: the nftables rules */
};

static unsigned pick(struct nemesis *n, unsigned bound)
{
    return (unsigned)(tc_rand(&n->rng) % bound);
}

static int between(struct nemesis *n, const int range[2])
{
    return range[0] + (int)pick(n, (unsigned)(range[1] - range[0] + 1));
}

static double t_s(const struct nemesis *n)
{
    return (double)(tc_now_ms() - n->t0) / 1000.0;
}

/* A random member other than @avoid (-1: none) and other than the disk
 * member when @not_disk. */
static int pick_member(struct nemesis *n, int avoid, bool not_disk)
{
    for (;;) {
        int v = (int)pick(n, (unsigned)n->c->n);
        if (v != avoid && !(not_disk && v == n->disk_member)) {
            return v;
        }
    }
}

/* The leader half the time (when one is found), else a random member. */
static int pick_victim(struct nemesis *n, bool not_disk, bool *at_leader)
{
    int v = pick_member(n, -1, not_disk);
    *at_leader = false;
    if (pick(n, 2) == 0) {
        int l = find_leader(n->c);
        if (l >= 0 && !(not_disk && l == n->disk_member)) {
            v = l;
            *at_leader = true;
        }
    }
    return v;
}

static void run_cmd(const char *cmd)
{
    int rv = system(cmd);
    ck_assert_msg(rv == 0, "nemesis: `%s` failed (status %d)", cmd, rv);
}

/* After a wipe: wait until member @i runs under a new id (it rejoined) and
 * is ready, and record the id. */
static void wait_rejoined(struct nemesis *n, int i, uint64_t old_id)
{
    int64_t deadline = tc_now_ms() + HEAL_TIMEOUT_MS;
    uint64_t id;

    for (;;) {
        struct tc_status st;
        char err[256];
        tc_check_running(n->c);
        if (tc_get_status(n->c, i, &st, err, sizeof err) == 0 && st.id != 0 && st.id != old_id &&
            st.id != n->founder_ids[i]) {
            id = st.id;
            break;
        }
        ck_assert_msg(tc_now_ms() < deadline, "member-%d did not rejoin within %d ms", i + 1,
                      HEAL_TIMEOUT_MS);
        tc_sleep_ms(100);
    }
    n->c->members[i].id = id;
    tc_wait_ready(n->c, i, HEAL_TIMEOUT_MS);
    fprintf(stderr, "nemesis: t=%.1fs member-%d rejoined as id %" PRIu64 "\n", t_s(n), i + 1, id);
}

/* kill -9, wait @dur_ms, restart, wait until ready. */
static void fault_kill(struct nemesis *n, int v, int dur_ms)
{
    tc_member_kill(n->c, v, SIGKILL);
    tc_sleep_ms(dur_ms);
    tc_member_restart(n->c, v);
    tc_wait_ready(n->c, v, HEAL_TIMEOUT_MS);
}

static void fault_pause(struct nemesis *n, int v, int dur_ms)
{
    pid_t pid = n->c->members[v].pid;
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    tc_sleep_ms(dur_ms);
    ck_assert_int_eq(kill(pid, SIGCONT), 0);
}

static void write_clock(const struct nemesis *n, const char *spec)
{
    char tmp[TC_PATH_MAX + 48];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.tmp", n->clock_file);
    f = fopen(tmp, "w");
    ck_assert_msg(f != NULL, "nemesis: %s: %s", tmp, strerror(errno));
    fprintf(f, "%s\n", spec);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_msg(rename(tmp, n->clock_file) == 0, "nemesis: rename %s: %s", tmp, strerror(errno));
}

/* Restart member @v under libfaketime (all its clocks, CLOCK_MONOTONIC
 * included, follow the spec in clock_file, re-read every second), then step
 * through two clock changes: a jump forward of 2-30 s, a jump back of 1-5 s,
 * or a drift of 0.5x-2x, each lasting half of @dur_ms. Then restart it with
 * the real clock. */
static void fault_clock(struct nemesis *n, int v, int dur_ms)
{
    const char *env[] = {n->clock_env[0], n->clock_env[1], n->clock_env[2], n->clock_env[3], NULL};
    int64_t offset = 0;

    write_clock(n, "+0 x1");
    tc_member_kill(n->c, v, SIGKILL);
    tc_member_env(n->c, v, env);
    tc_member_restart(n->c, v);
    tc_wait_ready(n->c, v, HEAL_TIMEOUT_MS);
    for (int step = 0; step < 2; step++) {
        char spec[64];
        switch (pick(n, 3)) {
        case 0:
            offset += 2 + (int64_t)pick(n, 29);
            snprintf(spec, sizeof spec, "%+" PRId64 "s x1", offset);
            break;
        case 1:
            offset -= 1 + (int64_t)pick(n, 5);
            snprintf(spec, sizeof spec, "%+" PRId64 "s x1", offset);
            break;
        default: {
            static const char *const rates[] = {"0.5", "0.8", "1.25", "2"};
            snprintf(spec, sizeof spec, "%+" PRId64 "s x%s", offset, rates[pick(n, 4)]);
        }
        }
        write_clock(n, spec);
        fprintf(stderr, "nemesis: t=%.1fs member-%d clock \"%s\"\n", t_s(n), v + 1, spec);
        tc_sleep_ms(dur_ms / 2);
    }
    tc_member_kill(n->c, v, SIGKILL);
    tc_member_env(n->c, v, NULL);
    tc_member_restart(n->c, v);
    tc_wait_ready(n->c, v, HEAL_TIMEOUT_MS);
}

/* Free bytes of the file system holding @path. */
static uint64_t free_bytes(const char *path)
{
    struct statvfs sv;
    ck_assert_msg(statvfs(path, &sv) == 0, "statvfs %s: %s", path, strerror(errno));
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/* Fill the disk member's tmpfs to the last byte with a file of ours. */
static void fill_disk(struct nemesis *n)
{
    struct tc_member *m = &n->c->members[n->disk_member];
    char filler[TC_PATH_MAX + 32];
    char buf[1 << 16];
    int fd;
    uint64_t before = free_bytes(m->data_dir);

    snprintf(filler, sizeof filler, "%s/nemesis-filler", m->data_dir);
    fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_msg(fd >= 0, "open %s: %s", filler, strerror(errno));
    memset(buf, 'f', sizeof buf);
    while (write(fd, buf, sizeof buf) > 0) {
    }
    while (write(fd, buf, 1) > 0) {
    }
    close(fd);
    fprintf(stderr,
            "nemesis: t=%.1fs member-%d disk full (%" PRIu64 " bytes were free, %" PRIu64 " now)\n",
            t_s(n), n->disk_member + 1, before, free_bytes(m->data_dir));
}

/* Remove the filler, then wait until the disk member serves again. If its
 * log or store could not be written meanwhile, Raft stopped working and
 * ballastd exited with status 1 (asserted) for its supervisor to restart
 * it: restart it (counted) and wait until it is ready. */
static void free_disk(struct nemesis *n)
{
    struct tc_member *m = &n->c->members[n->disk_member];
    char filler[TC_PATH_MAX + 32];
    int64_t deadline = tc_now_ms() + HEAL_TIMEOUT_MS;

    snprintf(filler, sizeof filler, "%s/nemesis-filler", m->data_dir);
    ck_assert_msg(unlink(filler) == 0, "unlink %s: %s", filler, strerror(errno));
    for (;;) {
        struct tc_response r;
        bool ready;

        if (!tc_member_running(n->c, n->disk_member)) {
            int st = m->last_status;
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1,
                          "member-%d, out of disk, ended with status 0x%x, not exit 1: see %s",
                          n->disk_member + 1, st, m->log_path);
            fprintf(stderr, "nemesis: t=%.1fs member-%d exited 1 on the full disk; restarting it\n",
                    t_s(n), n->disk_member + 1);
            m->died = false; /* the exit a supervisor is expected to answer */
            n->crashed_on_disk_full++;
            tc_member_restart(n->c, n->disk_member);
            tc_wait_ready(n->c, n->disk_member, HEAL_TIMEOUT_MS);
            return;
        }
        ready = tc_http_ex(tc_addr(n->c, n->disk_member), 2000, "GET", "/readyz", NULL, 0, NULL,
                           &r) == 0 &&
                r.status == 200;
        tc_response_free(&r);
        if (ready) {
            return;
        }
        ck_assert_msg(tc_now_ms() < deadline,
                      "member-%d neither ready nor exited %d ms after its disk was freed: see %s",
                      n->disk_member + 1, HEAL_TIMEOUT_MS, m->log_path);
        tc_sleep_ms(100);
    }
}

/* Fill the disk member's tmpfs for @dur_ms, then free it. The member may
 * refuse writes (507) meanwhile, or exit (see free_disk()). */
static void fault_disk(struct nemesis *n, int dur_ms)
{
    fill_disk(n);
    tc_sleep_ms(dur_ms);
    free_disk(n);
}

static void fault_wipe(struct nemesis *n, int v, int dur_ms)
{
    uint64_t old_id = n->c->members[v].id;
    tc_member_kill(n->c, v, SIGKILL);
    tc_member_wipe(n->c, v);
    n->c->members[v].id = n->founder_ids[v];
    tc_sleep_ms(dur_ms);
    tc_member_restart(n->c, v);
    wait_rejoined(n, v, old_id);
}

/* Remove follower @v through the API (the leader answers once the
 * configuration without it is committed), stop it, wipe it, start it: it
 * joins again under a new id. */
static void fault_membership(struct nemesis *n, int v, int dur_ms)
{
    uint64_t old_id = n->c->members[v].id;
    int64_t deadline = tc_now_ms() + HEAL_TIMEOUT_MS;
    char target[64];

    snprintf(target, sizeof target, "/v1/members/%" PRIu64, old_id);
    for (;;) {
        struct tc_response r;
        int l = find_leader(n->c);
        int rv =
            l >= 0 && l != v ? tc_http(tc_addr(n->c, l), "DELETE", target, NULL, 0, NULL, &r) : -1;
        int status = rv == 0 ? r.status : 0;
        if (l >= 0 && l != v) {
            tc_response_free(&r);
        }
        if (status == 200 || status == 404) {
            break;
        }
        if (l == v) {
            /* it leads: hand leadership away first */
            tc_http(tc_addr(n->c, v), "POST", "/v1/leader", NULL, 0, NULL, &r);
            tc_response_free(&r);
        }
        ck_assert_msg(tc_now_ms() < deadline, "nemesis: could not remove member-%d (last %d)",
                      v + 1, status);
        tc_sleep_ms(200);
    }
    fprintf(stderr, "nemesis: t=%.1fs member-%d (id %" PRIu64 ") removed\n", t_s(n), v + 1, old_id);
    tc_member_kill(n->c, v, SIGKILL);
    tc_member_wipe(n->c, v);
    n->c->members[v].id = n->founder_ids[v];
    tc_sleep_ms(dur_ms);
    tc_member_restart(n->c, v);
    wait_rejoined(n, v, old_id);
}

static void fault_transfer(struct nemesis *n)
{
    int l = find_leader(n->c), to;
    char body[64];
    struct tc_response r;

    if (l < 0) {
        n->transfers_refused++;
        return;
    }
    to = pick_member(n, l, false);
    snprintf(body, sizeof body, "{\"to\":%" PRIu64 "}", n->c->members[to].id);
    if (tc_http(tc_addr(n->c, l), "POST", "/v1/leader", body, strlen(body), NULL, &r) != 0 ||
        r.status != 200) {
        fprintf(stderr, "nemesis: t=%.1fs transfer to member-%d refused: %d %s\n", t_s(n), to + 1,
                r.status, r.body ? r.body : r.error);
        n->transfers_refused++;
    }
    tc_response_free(&r);
}

/* Stop member @v, start it @dur_ms later armed with a crash point; wait
 * (bounded) until it aborts there, then start it unarmed. A point not
 * reached in time is disarmed with kill -9 instead (counted). */
static void fault_crashpoint(struct nemesis *n, int v, int dur_ms)
{
    struct tc_member *m = &n->c->members[v];
    int k = (int)pick(n, sizeof CRASH_POINTS / sizeof CRASH_POINTS[0]);
    int hits = 1 + (int)pick(n, (unsigned)CRASH_POINTS[k].max_hits);
    char spec[96];
    const char *env[] = {spec, NULL};
    int64_t deadline;

    snprintf(spec, sizeof spec, "BALLAST_CRASH_AT=%s:%d", CRASH_POINTS[k].name, hits);
    fprintf(stderr, "nemesis: t=%.1fs member-%d armed: %s\n", t_s(n), v + 1, spec);
    tc_member_kill(n->c, v, SIGKILL);
    tc_sleep_ms(dur_ms);
    tc_member_env(n->c, v, env);
    tc_member_restart(n->c, v);
    deadline = tc_now_ms() + 15000;
    while (tc_member_running(n->c, v) && tc_now_ms() < deadline) {
        tc_sleep_ms(50);
    }
    if (tc_member_running(n->c, v)) {
        fprintf(stderr, "nemesis: t=%.1fs member-%d did not reach %s in 15 s\n", t_s(n), v + 1,
                CRASH_POINTS[k].name);
        n->crash_points_missed++;
        tc_member_kill(n->c, v, SIGKILL);
    } else {
        ck_assert_msg(WIFSIGNALED(m->last_status) && WTERMSIG(m->last_status) == SIGABRT,
                      "member-%d armed with %s exited otherwise (status 0x%x): see %s", v + 1, spec,
                      m->last_status, m->log_path);
        m->died = false; /* the exit it was armed for */
        n->crash_points_hit++;
    }
    tc_member_env(n->c, v, NULL);
    tc_member_restart(n->c, v);
    tc_wait_ready(n->c, v, HEAL_TIMEOUT_MS);
}

/* Network faults: put the rules in place, wait @dur_ms, heal. */
static void net_ok(struct nemesis *n, int rv, const char *what)
{
    ck_assert_msg(rv == 0, "nemesis: %s: %s", what, netfault_errmsg(n->nf));
}

static void fault_net(struct nemesis *n, enum fault f, int v, int dur_ms)
{
    int members = n->c->n;
    uint64_t cut = 0, lost = 0;

    switch (f) {
    case F_ISOLATE:
        net_ok(n, netfault_isolate(n->nf, v), "isolate");
        break;
    case F_SPLIT: {
        /* a random non-empty minority (fewer than half) */
        uint32_t minority = 0;
        int size = 1 + (int)pick(n, (unsigned)((members - 1) / 2));
        while (__builtin_popcount(minority) < size) {
            minority |= 1u << pick(n, (unsigned)members);
        }
        fprintf(stderr, "nemesis: t=%.1fs minority 0x%x\n", t_s(n), minority);
        net_ok(n, netfault_majority_minority(n->nf, minority), "split");
        break;
    }
    case F_BRIDGE: {
        /* v bridges; the others split in two non-empty halves */
        uint32_t half = 0, others = ((1u << members) - 1) & ~(1u << v);
        while (half == 0 || half == others) {
            half = (uint32_t)tc_rand(&n->rng) & others;
        }
        fprintf(stderr, "nemesis: t=%.1fs halves 0x%x / 0x%x\n", t_s(n), half, others & ~half);
        net_ok(n, netfault_bridge(n->nf, v, half), "bridge");
        break;
    }
    case F_LOSS: {
        int pct = 10 + (int)pick(n, 21);
        fprintf(stderr, "nemesis: t=%.1fs %d %% loss\n", t_s(n), pct);
        net_ok(n, netfault_loss(n->nf, pct), "loss");
        break;
    }
    case F_DELAY: {
        int ms = 20 + (int)pick(n, 131), jitter = (int)pick(n, 51);
        fprintf(stderr, "nemesis: t=%.1fs delay %d ms + [0, %d] ms\n", t_s(n), ms, jitter);
        net_ok(n, netfault_delay(n->nf, ms, jitter), "delay");
        break;
    }
    default:
        ck_abort_msg("not a network fault: %d", f);
    }
    tc_sleep_ms(dur_ms);
    netfault_dropped(n->nf, &cut, &lost);
    net_ok(n, netfault_heal(n->nf), "heal");
    fprintf(stderr, "nemesis: t=%.1fs packets dropped: %" PRIu64 " by cuts, %" PRIu64 " by loss\n",
            t_s(n), cut, lost);
}

/* Start the delay proxy between the members and the nftables injector. */
static void net_start(struct nemesis *n)
{
    struct delayproxy_route routes[TC_MAX_MEMBERS];
    const char *ips[TC_MAX_MEMBERS];
    char err[NETFAULT_ERRMSG_SIZE];

    for (int i = 0; i < n->c->n; i++) {
        routes[i].listen = n->c->members[i].proxy_addr;
        routes[i].target = n->c->members[i].peer_addr;
        ips[i] = n->c->members[i].ip;
    }
    ck_assert_msg(delayproxy_start(routes, n->c->n, &n->proxy, err) == 0, "delay proxy: %s", err);
    ck_assert_msg(netfault_new(ips, n->c->n, n->proxy, &n->nf, err) == 0, "netfault: %s", err);
}

/* Remove every rule and the table, stop the proxy (after the members). */
static void net_stop(struct nemesis *n)
{
    if (n->nf != NULL) {
        ck_assert_msg(netfault_heal(n->nf) == 0, "heal: %s", netfault_errmsg(n->nf));
        ck_assert_int_eq(netfault_free(n->nf), 0);
        n->nf = NULL;
    }
}

/* The disk member's data dir becomes a DISK_MB tmpfs: stop it, move its
 * files onto the new file system, start it again. The mount is made in a
 * mount namespace of this test process's own (the members, its children,
 * share it), so it goes away with the process even when a failed check
 * ends it without cleanup. */
static void mount_disk(struct nemesis *n, int i)
{
    struct tc_member *m = &n->c->members[i];
    char cmd[3 * TC_PATH_MAX + 128], opts[32];

    ck_assert_msg(unshare(CLONE_NEWNS) == 0, "the disk fault needs a mount namespace: %s",
                  strerror(errno));
    ck_assert_msg(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0,
                  "making mounts private: %s", strerror(errno));
    tc_member_kill(n->c, i, SIGKILL);
    snprintf(cmd, sizeof cmd, "mv '%s' '%s.orig' && mkdir '%s'", m->data_dir, m->data_dir,
             m->data_dir);
    run_cmd(cmd);
    snprintf(opts, sizeof opts, "size=%dm", DISK_MB);
    ck_assert_msg(mount("nemesis", m->data_dir, "tmpfs", 0, opts) == 0, "mount tmpfs on %s: %s",
                  m->data_dir, strerror(errno));
    n->disk_member = i;
    snprintf(cmd, sizeof cmd, "cp -a '%s.orig/.' '%s/' && rm -rf '%s.orig'", m->data_dir,
             m->data_dir, m->data_dir);
    run_cmd(cmd);
    tc_member_restart(n->c, i);
    tc_wait_ready(n->c, i, HEAL_TIMEOUT_MS);
}

/* Stop the disk member (SIGTERM: it must exit 0) and unmount its tmpfs
 * (its files go with it). Stopping first: a member whose data dir is
 * unmounted under it would look for its files in the empty directory
 * beneath when it closes its log. */
static void unmount_disk(struct nemesis *n)
{
    struct tc_member *m;
    if (n->disk_member < 0) {
        return;
    }
    m = &n->c->members[n->disk_member];
    if (tc_member_running(n->c, n->disk_member)) {
        int st = tc_member_kill(n->c, n->disk_member, SIGTERM);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "member-%d did not exit 0 on SIGTERM (status 0x%x): see %s",
                      n->disk_member + 1, st, m->log_path);
    }
    if (umount2(m->data_dir, MNT_DETACH) != 0) {
        fprintf(stderr, "nemesis: warning: umount %s: %s\n", m->data_dir, strerror(errno));
    }
    n->disk_member = -1;
}

/* Inject one fault of kind @f and heal it. */
static void inject(struct nemesis *n, enum fault f)
{
    int dur = between(n, n->p->dur_ms);
    bool at_leader = false;
    int v = -1;

    switch (f) {
    case F_KILL:
    case F_PAUSE:
    case F_CLOCK:
        v = pick_victim(n, false, &at_leader);
        break;
    case F_WIPE:
    case F_MEMBERSHIP:
        v = pick_victim(n, true, &at_leader);
        break;
    case F_DISK:
        v = n->disk_member;
        break;
    case F_ISOLATE:
    case F_BRIDGE:
    case F_CRASHPOINT:
        v = pick_victim(n, false, &at_leader);
        break;
    default:
        break;
    }
    n->injected[f]++;
    n->total++;
    fprintf(stderr, "nemesis: t=%.1fs fault %d: %s", t_s(n), n->total, FAULT_NAMES[f]);
    if (v >= 0) {
        fprintf(stderr, " member-%d%s", v + 1, at_leader ? " (leader)" : "");
    }
    fprintf(stderr, " for %d ms\n", dur);
    switch (f) {
    case F_KILL:
        fault_kill(n, v, dur);
        break;
    case F_PAUSE:
        fault_pause(n, v, dur);
        break;
    case F_CLOCK:
        fault_clock(n, v, dur);
        break;
    case F_DISK:
        fault_disk(n, dur);
        break;
    case F_WIPE:
        fault_wipe(n, v, dur);
        break;
    case F_MEMBERSHIP:
        fault_membership(n, v, dur);
        break;
    case F_TRANSFER:
        fault_transfer(n);
        break;
    case F_ISOLATE:
    case F_SPLIT:
    case F_BRIDGE:
    case F_LOSS:
    case F_DELAY:
        fault_net(n, f, v, dur);
        break;
    case F_CRASHPOINT:
        fault_crashpoint(n, v, dur);
        break;
    case F__COUNT:
        break;
    }
    fprintf(stderr, "nemesis: t=%.1fs fault %d healed\n", t_s(n), n->total);
}

/* Run faults until @t_end_ms: the enabled kinds in a seeded random order,
 * each kind once before any repeats, one at a time, each healed before the
 * next. */
static void run_nemesis(struct nemesis *n, int64_t t_end_ms)
{
    enum fault order[F__COUNT];
    int k = 0, m = 0;

    for (;;) {
        int gap = between(n, n->p->gap_ms);
        if (k == m) {
            m = 0;
            for (int f = 0; f < F__COUNT; f++) {
                if (n->p->faults[f]) {
                    order[m++] = (enum fault)f;
                }
            }
            for (int i = m - 1; i > 0; i--) {
                int j = (int)pick(n, (unsigned)i + 1);
                enum fault t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            k = 0;
            if (m == 0) {
                break;
            }
        }
        /* a fault may last twice its duration (clock: two restarts) plus
         * the time to heal; stop early rather than run past the end */
        if (tc_now_ms() + gap + 2 * n->p->dur_ms[1] + 2000 > t_end_ms) {
            break;
        }
        tc_sleep_ms(gap);
        inject(n, order[k++]);
    }
    while (tc_now_ms() < t_end_ms) {
        tc_sleep_ms((int)(t_end_ms - tc_now_ms() < 100 ? t_end_ms - tc_now_ms() : 100));
    }
}

/* --- one run: cluster, workload, watchers, nemesis, checks ---------------------------- */

/* FNV-1a of member @i's whole key space, read (serializable, so the member's
 * own state) page by page; *@keys gets the number of keys. */
static uint64_t content_hash(struct tc_cluster *c, int i, size_t *keys)
{
    uint64_t h = 1469598103934665603ULL;
    char after[256] = "";
    *keys = 0;

    for (int page = 0; page < 1000; page++) {
        char target[1024], esc[3 * 256 + 1];
        struct tc_response r;
        bool more = false;
        int n;

        if (after[0] != '\0') {
            tc_escape(after, strlen(after), esc, sizeof esc);
            snprintf(target, sizeof target,
                     "/v1/kv/?prefix&consistency=serializable&limit=10000&after=%s", esc);
        } else {
            snprintf(target, sizeof target, "/v1/kv/?prefix&consistency=serializable&limit=10000");
        }
        ck_assert_msg(tc_http(tc_addr(c, i), "GET", target, NULL, 0, NULL, &r) == 0 &&
                          r.status == 200,
                      "range read on member-%d: %d %s", i + 1, r.status, r.body ? r.body : r.error);
        n = tc_json_len(r.body, "kvs");
        ck_assert_int_ge(n, 0);
        for (int k = 0; k < n; k++) {
            char path[48];
            const char *kv;
            const char *end;
            snprintf(path, sizeof path, "kvs.%d", k);
            kv = tc_json_find(r.body, path);
            snprintf(path, sizeof path, "kvs.%d", k + 1);
            end = k + 1 < n ? tc_json_find(r.body, path) : strrchr(r.body, ']');
            ck_assert(kv != NULL && end != NULL && end > kv);
            for (const char *p = kv; p < end; p++) {
                h = (h ^ (uint8_t)*p) * 1099511628211ULL;
            }
            snprintf(path, sizeof path, "kvs.%d.key", k);
            ck_assert(tc_json_str(r.body, path, after, sizeof after));
        }
        *keys += (size_t)n;
        tc_json_bool(r.body, "more", &more);
        tc_response_free(&r);
        if (!more) {
            return h;
        }
    }
    ck_abort_msg("range read on member-%d: more than 1000 pages", i + 1);
    return 0;
}

/* Run profile @p; fails the test on any violation. */
static void run_profile(const struct profile *p)
{
    uint64_t seed = env_unsigned("NEMESIS_SEED", 0);
    struct nemesis nem;
    struct tc_cluster *c;
    struct workload_opts wo;
    struct workload *w;
    struct watcher *watchers[2];
    struct history h;
    struct lincheck_opts lo = {.max_states = 1u << 22,
                               .max_ms = CHECK_MAX_MS + (int64_t)p->run_s * 100};
    struct lincheck_result lr;
    struct ballast_client *cl;
    char eps[1024], hist_path[TC_PATH_MAX + 32] = "(not written)", err[256];
    size_t n_ops, n_ok = 0, n_fail = 0, n_unknown = 0, n_keys, lost = 0, diverged = 0;
    size_t watch_events = 0;
    uint32_t *keys;
    int64_t *final, start_rev;
    int leader, lin_rv, violations, watch_problems = 0;
    uint64_t hash0 = 0;
    struct tc_status lst;
    bool revisions_equal = true, hashes_equal = true, recorded, net = false;
    struct tc_cluster_opts co;
    const char *extra[] = {"--snapshot-threshold",
                           "1024",
                           "--snapshot-trailing",
                           "256",
                           "--history-revisions",
                           "1000000",
                           NULL};

    if (seed == 0) {
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    }
    memset(&nem, 0, sizeof nem);
    memset(&co, 0, sizeof co);
    nem.p = p;
    nem.rng = seed;
    nem.disk_member = -1;
    fprintf(stderr,
            "nemesis: profile %s: %d members, %u s; seed %" PRIu64 " (NEMESIS_SEED=%" PRIu64
            " replays the schedule and the clients' choices)\n",
            p->name, p->members, p->run_s, seed, seed);

    for (int f = 0; f < F__COUNT; f++) {
        net |= p->faults[f] && net_fault(f);
    }
    co.n = p->members;
    co.extra = extra;
    co.own_addresses = co.peer_proxy = net;
    c = tc_cluster_start_opts(&co);
    nem.c = c;
    if (net) {
        net_start(&nem);
    }
    for (int i = 0; i < c->n; i++) {
        nem.founder_ids[i] = c->members[i].id;
    }
    tc_wait_stable(c, START_TIMEOUT_MS);
    snprintf(nem.clock_file, sizeof nem.clock_file, "%s/faketime", c->dir);
    snprintf(nem.clock_env[0], sizeof nem.clock_env[0], "LD_PRELOAD=%s", FAKETIME_LIB);
    snprintf(nem.clock_env[1], sizeof nem.clock_env[1], "FAKETIME_TIMESTAMP_FILE=%s",
             nem.clock_file);
    snprintf(nem.clock_env[2], sizeof nem.clock_env[2], "FAKETIME_CACHE_DURATION=1");
    /* an ASan build of ballastd (BALLASTD=...) refuses a preloaded library
     * ahead of its runtime unless told */
    snprintf(nem.clock_env[3], sizeof nem.clock_env[3], "ASAN_OPTIONS=verify_asan_link_order=0");
    if (p->faults[F_CLOCK]) {
        ck_assert_msg(access(FAKETIME_LIB, R_OK) == 0,
                      "the clock fault needs %s (Debian package faketime; scripts/deps.sh "
                      "installs it)",
                      FAKETIME_LIB);
    }
    if (p->faults[F_DISK]) {
        mount_disk(&nem, p->members - 1);
    }
    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_endpoints(c, eps, sizeof eps);
    start_rev = (int64_t)tc_put(c, 0, "nemesis/start", "1", 1) + 1;

    /* two watchers of the workload's keys, on different members first */
    for (int i = 0; i < 2; i++) {
        char weps[1024];
        size_t k = 0;
        for (int j = 0; j < c->n; j++) {
            k += (size_t)snprintf(weps + k, sizeof weps - k, "%s%s", j ? "," : "",
                                  tc_addr(c, (i + j) % c->n));
        }
        ck_assert_msg(watcher_start(weps, NEM_PREFIX, start_rev, &watchers[i], err, sizeof err) ==
                          0,
                      "watcher: %s", err);
    }

    memset(&wo, 0, sizeof wo);
    wo.endpoints = eps;
    wo.clients = NEM_CLIENTS;
    wo.keys = NEM_KEYS;
    wo.ops_per_key = NEM_OPS_PER_KEY;
    wo.prefix = NEM_PREFIX;
    wo.op_timeout_ms = 2000;
    wo.seed = seed;
    ck_assert_int_eq(workload_start(&wo, &w), 0);

    nem.t0 = tc_now_ms();
    run_nemesis(&nem, nem.t0 + (int64_t)p->run_s * 1000);

    hist_init(&h);
    recorded = workload_stop(w, &h) == 0;
    ck_assert_msg(recorded, "the workload could not record every op (out of memory)");
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
        op.out = rv == BALLAST_OK ? hist_parse_value(kv->value, kv->value_len) : 0;
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

    /* convergence: every member applied the leader's revision, holds the
     * same values, the same whole content, and reports the same revision */
    ck_assert_msg(tc_get_status(c, leader, &lst, err, sizeof err) == 0, "status of leader: %s",
                  err);
    for (int i = 0; i < c->n; i++) {
        struct tc_status st;
        size_t nk;
        uint64_t hash;
        tc_wait_applied(c, i, lst.revision, HEAL_TIMEOUT_MS);
        for (size_t k = 0; k < n_keys; k++) {
            char key[64];
            struct tc_kv kv;
            int64_t v;
            snprintf(key, sizeof key, NEM_PREFIX "%" PRIu32, keys[k]);
            v = tc_get(c, i, key, "serializable", &kv) == 200
                    ? hist_parse_value(kv.value, kv.value_len)
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
        hash = content_hash(c, i, &nk);
        fprintf(stderr,
                "nemesis: member-%d: revision %" PRIu64 ", %zu keys, content %016" PRIx64 "\n",
                i + 1, st.revision, nk, hash);
        if (i == 0) {
            hash0 = hash;
        } else if (hash != hash0) {
            hashes_equal = false;
        }
    }
    lost += diverged;

    /* the watchers: every event once, in order, nothing lost or invented */
    for (int i = 0; i < 2; i++) {
        struct wc_events ev;
        char *report = NULL;
        int rv =
            watcher_stop(watchers[i], (int64_t)lst.revision, HEAL_TIMEOUT_MS, &ev, err, sizeof err);
        int problems;
        if (rv != 0) {
            fprintf(stderr, "nemesis: watcher %d: %s\n", i, err);
            watch_problems++;
        }
        problems = watchcheck(&ev, &h, &report);
        fprintf(stderr,
                "nemesis: watcher %d: %zu events, %u reopened after a cancel, %d problems\n", i,
                ev.n, ev.reconnects, problems);
        if (problems != 0) {
            fprintf(stderr, "%s", report ? report : "(no report)\n");
            watch_problems += problems;
        }
        watch_events += ev.n;
        free(report);
        wc_events_free(&ev);
    }

    /* linearizability (the final reads included) */
    memset(&lr, 0, sizeof lr);
    lin_rv = lincheck_run(&h, &lo, &lr);
    violations = lin_rv != LIN_OK || lr.verdict != LIN_OK;

    fprintf(stderr, "nemesis: faults injected:");
    for (int f = 0; f < F__COUNT; f++) {
        if (p->faults[f]) {
            fprintf(stderr, " %s=%d", FAULT_NAMES[f], nem.injected[f]);
        }
    }
    fprintf(stderr,
            " (transfers refused %d, member exits on a full disk %d, crash points hit %d, "
            "not reached %d)\n",
            nem.transfers_refused, nem.crashed_on_disk_full, nem.crash_points_hit,
            nem.crash_points_missed);
    fprintf(stderr,
            "nemesis: profile=%s members=%d run_s=%u ops=%zu ok=%zu failed=%zu unknown=%zu "
            "faults=%d violations=%d lost=%zu watch_events=%zu watch_problems=%d "
            "converged=%s seed=%" PRIu64 "\n",
            p->name, p->members, p->run_s, n_ops, n_ok, n_fail, n_unknown, nem.total, violations,
            lost, watch_events, watch_problems, revisions_equal && hashes_equal ? "yes" : "no",
            seed);
    if (violations || lost || !revisions_equal || !hashes_equal || watch_problems) {
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
    unmount_disk(&nem);
    ck_assert_msg(!violations,
                  "history not linearizable (verdict %d, key %" PRIu32 ", seed %" PRIu64
                  "): see %s",
                  lr.verdict, lr.key, seed, hist_path);
    ck_assert_msg(lost == 0,
                  "%zu keys hold an invented or diverged value (seed %" PRIu64 "): see %s", lost,
                  seed, hist_path);
    ck_assert_msg(revisions_equal, "members report different revisions (seed %" PRIu64 ")", seed);
    ck_assert_msg(hashes_equal, "members hold different contents (seed %" PRIu64 ")", seed);
    ck_assert_msg(watch_problems == 0, "watchers saw %d problems (seed %" PRIu64 "): see %s",
                  watch_problems, seed, hist_path);
    for (int f = 0; f < F__COUNT; f++) {
        ck_assert_msg(!p->faults[f] || nem.injected[f] > 0,
                      "fault %s was enabled but never injected: the run is too short",
                      FAULT_NAMES[f]);
    }

    lincheck_result_free(&lr);
    free(final);
    free(keys);
    hist_free(&h);
    net_stop(&nem);
    tc_cluster_stop(c);
    delayproxy_stop(nem.proxy);
}

/* Which faults $NEMESIS_FAULTS names (comma-separated, or "all"); unset:
 * @dflt. An unknown name fails the test. */
static void faults_from_env(struct profile *p, const bool *dflt)
{
    const char *s = getenv("NEMESIS_FAULTS");
    char buf[512], *save = NULL;

    memcpy(p->faults, dflt, sizeof p->faults);
    if (s == NULL || *s == '\0') {
        return;
    }
    memset(p->faults, 0, sizeof p->faults);
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (int f = 0; f < F__COUNT; f++) {
            if (strcmp(t, "all") == 0 || strcmp(t, FAULT_NAMES[f]) == 0) {
                p->faults[f] = true;
                found = true;
            }
        }
        ck_assert_msg(found, "NEMESIS_FAULTS: unknown fault \"%s\"", t);
    }
}

/* The short profile of kill -9 and pauses (the first nemesis; keeps its
 * shape so its history stays comparable). */
START_TEST(test_kill_and_pause)
{
    struct profile p = {.name = "kill-and-pause",
                        .members = 3,
                        .run_s = env_unsigned("NEMESIS_RUN_S", 30),
                        .gap_ms = {1000, 2000},
                        .dur_ms = {1000, 3000}};
    p.faults[F_KILL] = p.faults[F_PAUSE] = true;
    run_profile(&p);
}
END_TEST

/* Every fault kind, each at least once, in a seeded order: the short profile
 * of `make check` by default (3 members, 90 s); the long profile with
 * NEMESIS_MEMBERS=5 NEMESIS_RUN_S=1800 (scripts/nemesis-long.sh). */
START_TEST(test_all_faults)
{
    bool all[F__COUNT];
    struct profile p = {.name = getenv("NEMESIS_PROFILE") ? getenv("NEMESIS_PROFILE") : "all",
                        .members = (int)env_unsigned("NEMESIS_MEMBERS", 3),
                        .run_s = env_unsigned("NEMESIS_RUN_S", NEMESIS_RUN_S),
                        .gap_ms = {500, 1500},
                        .dur_ms = {1000, 3000}};
    for (int f = 0; f < F__COUNT; f++) {
        all[f] = true;
    }
    faults_from_env(&p, all);
    ck_assert_msg(p.members >= 3 && p.members <= TC_MAX_MEMBERS, "NEMESIS_MEMBERS: 3..%d",
                  TC_MAX_MEMBERS);
    run_profile(&p);
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
    unsigned refused; /* answers other than 200 and 404 */
    int last_status;
    char last_body[200];
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
            if (resp.status != 200 && resp.status != 404) {
                r->refused++;
                r->last_status = resp.status;
                snprintf(r->last_body, sizeof r->last_body, "%s", resp.body ? resp.body : "");
            }
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

/* Regression (found by the long profile): a follower whose store could not
 * be written because its disk filled up (LMDB commit: ENOSPC) had Raft turn
 * unavailable for good while the process lived on, answering 503 and
 * passing /healthz, until someone restarted it by hand. Now ballastd exits
 * 1 (a supervisor restarts it) and, once space is back, the restarted
 * member replays what it missed. The follower's data dir is a tmpfs filled
 * to the last byte; 64 KiB puts go on through the leader until it exits. */
START_TEST(test_full_disk_follower_exits_and_recovers)
{
    struct nemesis n;
    struct tc_cluster *c = tc_cluster_start(3);
    char value[64 * 1024];
    uint64_t rev = 0;
    int leader, f, acked;

    memset(&n, 0, sizeof n);
    n.c = c;
    n.disk_member = -1;
    n.t0 = tc_now_ms();
    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    f = (leader + 1) % 3;
    mount_disk(&n, f);
    leader = tc_wait_stable(c, START_TIMEOUT_MS);
    memset(value, 'v', sizeof value);
    fill_disk(&n);
    /* 400 puts of 64 KiB: 25 MiB, more than the follower's preallocated
     * log segments and its store's free pages */
    for (acked = 0; acked < 400; acked++) {
        char key[32];
        snprintf(key, sizeof key, "fill/%d", acked);
        rev = tc_put(c, leader, key, value, sizeof value);
    }
    fprintf(stderr, "full_disk: member-%d %s after %d writes\n", f + 1,
            tc_member_running(c, f) ? "still runs" : "exited", acked);
    free_disk(&n); /* an exit must have been status 1; restarted, ready */
    tc_wait_applied(c, f, rev, HEAL_TIMEOUT_MS);
    for (int i = 0; i < acked; i++) {
        char key[32];
        struct tc_kv kv;
        snprintf(key, sizeof key, "fill/%d", i);
        ck_assert_int_eq(tc_get(c, f, key, "serializable", &kv), 200);
        ck_assert_uint_eq(kv.value_len, sizeof value);
        tc_kv_free(&kv);
    }
    unmount_disk(&n);
    tc_cluster_stop(c);
}
END_TEST

/* Regression: a linearizable read that arrived while the leader was
 * handing leadership over (canonical/raft refuses a barrier then) was
 * answered 503 from inside bl_member_read_barrier(), which freed the
 * request before api.c counted it as pending: a use-after-free that
 * corrupted the heap (found by nemesis_all_faults: ballastd crashed in
 * malloc a little after a transfer). Now the read is relayed like a write:
 * 16 readers on the leader through 10 transfers must see only 200/404,
 * and every member must still be running. */
START_TEST(test_reads_during_transfer)
{
    struct tc_cluster *c = tc_cluster_start(3);
    enum { READERS = 16, ROUNDS = 10 };
    struct reader rd[READERS];
    pthread_t th[READERS];
    volatile int stop = 0;
    unsigned total = 0, refused = 0;
    int last = 0;
    char last_body[200] = "";

    tc_wait_stable(c, START_TIMEOUT_MS);
    tc_put(c, 0, "r", "1", 1);
    for (int round = 0; round < ROUNDS; round++) {
        int leader = tc_wait_leader(c, START_TIMEOUT_MS);
        struct tc_response r;

        stop = 0;
        for (int i = 0; i < READERS; i++) {
            rd[i] = (struct reader){.c = c, .member = leader, .stop = &stop};
            ck_assert_int_eq(pthread_create(&th[i], NULL, read_loop, &rd[i]), 0);
        }
        tc_sleep_ms(200);
        ck_assert_int_eq(tc_http(tc_addr(c, leader), "POST", "/v1/leader", NULL, 0, NULL, &r), 0);
        ck_assert_msg(r.status == 200, "transfer: %d %s", r.status, r.body);
        tc_response_free(&r);
        tc_sleep_ms(300);
        stop = 1;
        for (int i = 0; i < READERS; i++) {
            pthread_join(th[i], NULL);
            total += rd[i].done;
            refused += rd[i].refused;
            if (rd[i].refused) {
                last = rd[i].last_status;
                memcpy(last_body, rd[i].last_body, sizeof last_body);
            }
        }
        tc_check_running(c);
    }
    fprintf(stderr, "reads_during_transfer: %u reads in %d transfers, %u refused (last %d %s)\n",
            total, ROUNDS, refused, last, last_body);
    ck_assert_uint_gt(total, 0);
    ck_assert_msg(refused == 0, "%u reads refused during transfers (last status %d)", refused,
                  last);
    tc_cluster_stop(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nemesis");
    tc_add_case(s, "paused_leader_with_reads", test_paused_leader_with_reads, 120);
    tc_add_case(s, "reads_during_transfer", test_reads_during_transfer, 120);
    tc_add_case(s, "full_disk_follower_exits_and_recovers",
                test_full_disk_follower_exits_and_recovers, 150);
    tc_add_case(s, "nemesis_checker_catches_injected_fault", test_checker_catches_injected_fault,
                30);
    tc_add_case(s, "nemesis_kill_and_pause", test_kill_and_pause,
                (int)env_unsigned("NEMESIS_RUN_S", 30) + 120);
    tc_add_case(s, "nemesis_all_faults", test_all_faults,
                (int)env_unsigned("NEMESIS_RUN_S", NEMESIS_RUN_S) + 300);
    return s;
}

int main(void)
{
    return tc_main("test-nemesis", suite);
}
