/* Lifecycle benchmark: re-seeding a wiped member, and the Raft log on disk
 * under steady writes.
 *
 *   bench/lifecycle [--writes N] [--wipe-keys K] BALLASTD
 *
 * Starts its own 3-member cluster (ballastd at default flags: snapshot every
 * 8192 entries, 2048 trailing, 8 MiB segments) on ephemeral 127.0.0.1 ports
 * in a temporary directory, as bench/failover does.
 *
 * Load (b): 16 writer threads, each with its own libballast client and all
 * three members as endpoints, PUT N writes (default 100,000) of 256-byte
 * values over K distinct keys (default 100,000; keys of 8..16 bytes, write i
 * goes to key i mod K). Every 10,000 acknowledged writes the main thread
 * samples GET /v1/status of each member and prints raft_log_bytes (and
 * db_bytes, applied_index), so one sees whether the log stays bounded.
 *
 * Wipe (a): once every member has applied the leader's revision, SIGKILL one
 * follower, remove its data dir (recreated empty) and restart it with the
 * same command line; it discovers the cluster and rejoins under a fresh id.
 * From the restart the program measures (1) GET /readyz = 200 on it, (2) its
 * /v1/status revision equal to the leader's, (3) GET /v1/members on the
 * leader listing 3 voters again (old id gone), and prints each.
 *
 * Bounded: cluster start 30 s, load 20 min, convergence 60 s, each rejoin
 * step 180 s; a missed deadline exits 1 and keeps the directory (logs).
 * Members run with PR_SET_PDEATHSIG and are SIGKILLed on every exit path; the
 * directory is removed on success. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ballast.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEMBERS      3
#define WRITERS      16
#define VALUE_BYTES  256
#define SAMPLE_EVERY 10000
#define START_MS     30000
#define LOAD_MS      (20 * 60 * 1000)
#define CONVERGE_MS  60000
#define REJOIN_MS    180000

extern char **environ;

struct member {
    char client[32], peer[32], dir[PATH_MAX], log[PATH_MAX], id[8];
    char *argv[12];
};

static const char *ballastd;
static char base_dir[PATH_MAX - 64];
static char initial_cluster[256], endpoints[128];
static struct member members[MEMBERS];
static char **child_env;
static volatile pid_t pids[MEMBERS];
static volatile sig_atomic_t interrupted;
static long n_writes = 100000, n_keys = 100000;
static atomic_long next_write, done_writes, failed_writes;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    for (int i = 0; i < MEMBERS; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
        }
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static int rm_tree(const char *dir)
{
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int free_ports(uint16_t *ports, int n)
{
    int fds[2 * MEMBERS], rv = 0;
    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            rv = -1;
            n = i + 1;
            break;
        }
        ports[i] = ntohs(sa.sin_port);
    }
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    return rv;
}

/* Only async-signal-safe calls in the child: writer threads may hold locks. */
static int member_start(int i)
{
    struct member *m = &members[i];
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || fd < 0 || null < 0) {
            _exit(127);
        }
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execve(ballastd, m->argv, child_env);
        _exit(127);
    }
    pids[i] = pid;
    return 0;
}

static void kill_all(void)
{
    for (int i = 0; i < MEMBERS; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    }
}

static int setup(void)
{
    uint16_t ports[2 * MEMBERS];
    const char *tmp = getenv("TMPDIR");
    size_t n_env = 0, k = 0;

    snprintf(base_dir, sizeof base_dir, "%s/ballast-bench-lifecycle.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(base_dir) == NULL || free_ports(ports, 2 * MEMBERS) != 0) {
        fprintf(stderr, "lifecycle: setup: %s\n", strerror(errno));
        return -1;
    }
    for (int i = 0; i < MEMBERS; i++) {
        struct member *m = &members[i];
        snprintf(m->id, sizeof m->id, "%d", i + 1);
        snprintf(m->client, sizeof m->client, "127.0.0.1:%u", ports[2 * i]);
        snprintf(m->peer, sizeof m->peer, "127.0.0.1:%u", ports[2 * i + 1]);
        snprintf(m->dir, sizeof m->dir, "%s/member-%d", base_dir, i + 1);
        snprintf(m->log, sizeof m->log, "%s/member-%d.log", base_dir, i + 1);
        snprintf(initial_cluster + strlen(initial_cluster),
                 sizeof initial_cluster - strlen(initial_cluster), "%s%d=%s", i ? "," : "", i + 1,
                 m->peer);
        snprintf(endpoints + strlen(endpoints), sizeof endpoints - strlen(endpoints), "%s%.31s",
                 i ? "," : "", m->client);
    }
    for (int i = 0; i < MEMBERS; i++) {
        struct member *m = &members[i];
        char *a[] = {"ballastd",          "--id",          m->id,
                     "--data-dir",        m->dir,          "--listen-client",
                     m->client,           "--listen-peer", m->peer,
                     "--initial-cluster", initial_cluster, NULL};
        memcpy(m->argv, a, sizeof a);
    }
    while (environ[n_env] != NULL) {
        n_env++;
    }
    child_env = calloc(n_env + 1, sizeof *child_env);
    if (child_env == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n_env; i++) {
        if (strncmp(environ[i], "BALLAST_", 8) != 0) {
            child_env[k++] = environ[i]; /* members run with the defaults */
        }
    }
    return 0;
}

static bool ready(struct ballast_client *c, int i)
{
    int status = 0;
    void *body = NULL;
    size_t len;
    int rv = ballast_raw_request_endpoint(c, members[i].client, "GET", "/readyz", NULL, 0, 1,
                                          &status, &body, &len);
    ballast_free(body);
    return rv == 0 && status == 200;
}

/* Index of the member that reports itself leader, or -1. */
static int find_leader(struct ballast_client *c)
{
    for (int i = 0; i < MEMBERS; i++) {
        struct ballast_status *st = NULL;
        bool lead = ballast_status_endpoint(c, members[i].client, &st) == 0 &&
                    strcmp(st->role, "leader") == 0;
        ballast_status_free(st);
        if (lead) {
            return i;
        }
    }
    return -1;
}

static int64_t revision_of(struct ballast_client *c, int i)
{
    struct ballast_status *st = NULL;
    int64_t rev = ballast_status_endpoint(c, members[i].client, &st) == 0 ? st->revision : -1;
    ballast_status_free(st);
    return rev;
}

static void *writer_main(void *arg)
{
    struct ballast_options o = {.request_timeout_ms = 30000, .max_attempts = 100};
    char err[200], key[32], value[VALUE_BYTES];
    struct ballast_client *c = ballast_client_new(endpoints, &o, err, sizeof err);
    long w;

    (void)arg;
    memset(value, 'v', sizeof value);
    if (c == NULL) {
        fprintf(stderr, "lifecycle: client: %s\n", err);
        return NULL;
    }
    while (!interrupted && (w = atomic_fetch_add(&next_write, 1)) < n_writes) {
        long k = w % n_keys;
        /* "k%07ld" is 8 bytes (for k < 10^7); pad to 8 + k % 9 bytes */
        int len = snprintf(key, sizeof key, "k%07ld", k);
        int pad = (int)(k % 9);
        memset(key + len, 'x', (size_t)pad);
        if (ballast_put(c, key, (size_t)(len + pad), value, sizeof value, NULL, NULL) == 0) {
            atomic_fetch_add(&done_writes, 1);
        } else {
            atomic_fetch_add(&failed_writes, 1);
            fprintf(stderr, "lifecycle: put %s: %s\n", key, ballast_errmsg(c));
        }
    }
    ballast_client_free(c);
    return NULL;
}

static void sample(struct ballast_client *c, long writes, int64_t t0)
{
    double s = (double)(now_us() - t0) / 1e6;
    printf("writes %7ld  t %6.1f s  %6.0f w/s  raft_log_bytes", writes, s, writes / s);
    for (int i = 0; i < MEMBERS; i++) {
        struct ballast_status *st = NULL;
        if (ballast_status_endpoint(c, members[i].client, &st) == 0) {
            printf(" m%d=%.2fMiB(db %.1fMiB, applied %" PRIu64 ")", i + 1,
                   st->raft_log_bytes / 1048576.0, st->db_bytes / 1048576.0, st->applied_index);
        } else {
            printf(" m%d=?", i + 1);
        }
        ballast_status_free(st);
    }
    printf("\n");
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: lifecycle [--writes N] [--wipe-keys K] BALLASTD\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct ballast_options co = {
        .connect_timeout_ms = 500, .attempt_timeout_ms = 2000, .request_timeout_ms = 3000};
    struct ballast_client *ctl = NULL;
    struct sigaction sa;
    pthread_t th[WRITERS];
    int n_th = 0, ok = -1, leader = -1, victim;
    int64_t t0, t_load, deadline, t_ready = -1, t_rev = -1, t_voters = -1;
    char err[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--writes") == 0 && i + 1 < argc) {
            n_writes = atol(argv[++i]);
        } else if (strcmp(argv[i], "--wipe-keys") == 0 && i + 1 < argc) {
            n_keys = atol(argv[++i]);
        } else if (argv[i][0] != '-' && ballastd == NULL) {
            ballastd = argv[i];
        } else {
            return usage();
        }
    }
    if (ballastd == NULL || n_writes < 1 || n_keys < 1 || n_keys > 9999999) {
        return usage();
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (setup() != 0) {
        goto out;
    }
    printf("lifecycle: 3 members from %s in %s; %ld writes of %d-byte values over %ld keys, "
           "%d writer threads\n",
           ballastd, base_dir, n_writes, VALUE_BYTES, n_keys, WRITERS);
    for (int i = 0; i < MEMBERS; i++) {
        if (member_start(i) != 0) {
            goto out;
        }
    }
    if ((ctl = ballast_client_new(endpoints, &co, err, sizeof err)) == NULL) {
        fprintf(stderr, "lifecycle: client: %s\n", err);
        goto out;
    }
    deadline = now_us() + (int64_t)START_MS * 1000;
    while ((leader = find_leader(ctl)) < 0 || !(ready(ctl, 0) && ready(ctl, 1) && ready(ctl, 2))) {
        if (interrupted || now_us() > deadline) {
            fprintf(stderr, "lifecycle: the cluster did not start\n");
            goto out;
        }
        sleep_ms(50);
    }

    /* (b) load, sampling raft_log_bytes every SAMPLE_EVERY writes */
    t_load = now_us();
    for (; n_th < WRITERS; n_th++) {
        if (pthread_create(&th[n_th], NULL, writer_main, NULL) != 0) {
            goto out;
        }
    }
    for (long next = SAMPLE_EVERY;;) {
        long d = atomic_load(&done_writes), all = d + atomic_load(&failed_writes);
        if (d >= next) {
            sample(ctl, d, t_load);
            next = (d / SAMPLE_EVERY + 1) * SAMPLE_EVERY;
        }
        if (all >= n_writes) {
            break;
        }
        if (interrupted || now_us() > t_load + (int64_t)LOAD_MS * 1000) {
            fprintf(stderr, "lifecycle: load did not finish\n");
            goto out;
        }
        sleep_ms(2);
    }
    while (n_th > 0) {
        pthread_join(th[--n_th], NULL);
    }
    printf("load: %ld writes acknowledged, %ld failed, in %.1f s (%.0f writes/s)\n",
           atomic_load(&done_writes), atomic_load(&failed_writes),
           (double)(now_us() - t_load) / 1e6,
           atomic_load(&done_writes) / ((double)(now_us() - t_load) / 1e6));
    if (atomic_load(&failed_writes) != 0) {
        goto out;
    }

    /* every member applied the leader's revision */
    deadline = now_us() + (int64_t)CONVERGE_MS * 1000;
    for (;;) {
        int64_t r;
        leader = find_leader(ctl);
        r = leader >= 0 ? revision_of(ctl, leader) : -1;
        if (r > 0 && revision_of(ctl, 0) == r && revision_of(ctl, 1) == r &&
            revision_of(ctl, 2) == r) {
            printf("converged: every member at revision %" PRId64 "\n", r);
            break;
        }
        if (interrupted || now_us() > deadline) {
            fprintf(stderr, "lifecycle: members did not converge\n");
            goto out;
        }
        sleep_ms(20);
    }
    sample(ctl, atomic_load(&done_writes), t_load);

    /* (a) wipe a follower and restart it with the same command line */
    victim = (leader + 1) % MEMBERS;
    kill(pids[victim], SIGKILL);
    waitpid(pids[victim], NULL, 0);
    pids[victim] = 0;
    if (rm_tree(members[victim].dir) != 0 || mkdir(members[victim].dir, 0755) != 0) {
        fprintf(stderr, "lifecycle: wipe %s: %s\n", members[victim].dir, strerror(errno));
        goto out;
    }
    printf("wiped member %d (follower; leader is member %d), restarting it\n", victim + 1,
           leader + 1);
    fflush(stdout);
    t0 = now_us();
    if (member_start(victim) != 0) {
        goto out;
    }
    deadline = t0 + (int64_t)REJOIN_MS * 1000;
    while (t_ready < 0 || t_rev < 0 || t_voters < 0) {
        if (t_ready < 0 && ready(ctl, victim)) {
            t_ready = now_us();
            printf("  /readyz 200 on it after %.3f s\n", (double)(t_ready - t0) / 1e6);
        }
        if (t_rev < 0) {
            int64_t rl = revision_of(ctl, leader), rv = revision_of(ctl, victim);
            if (rl > 0 && rv == rl) {
                t_rev = now_us();
                printf("  revision %" PRId64 " equal to the leader's after %.3f s\n", rv,
                       (double)(t_rev - t0) / 1e6);
            }
        }
        if (t_voters < 0) {
            struct ballast_status *st = NULL;
            int voters = 0;
            if (ballast_status_endpoint(ctl, members[leader].client, &st) == 0) {
                for (size_t k = 0; k < st->n_members; k++) {
                    voters += strcmp(st->members[k].role, "voter") == 0 &&
                              st->members[k].id != (uint64_t)victim + 1;
                }
            }
            ballast_status_free(st);
            if (voters == MEMBERS) {
                t_voters = now_us();
                printf("  3 voters again on the leader (old id %d gone) after %.3f s\n", victim + 1,
                       (double)(t_voters - t0) / 1e6);
            }
        }
        fflush(stdout);
        if (interrupted || now_us() > deadline) {
            fprintf(stderr, "lifecycle: the wiped member did not rejoin within %d s\n",
                    REJOIN_MS / 1000);
            goto out;
        }
        sleep_ms(10);
    }
    printf("lifecycle benchmark: writes=%ld keys=%ld ready_s=%.3f caught_up_s=%.3f "
           "voters_s=%.3f\n",
           n_writes, n_keys, (double)(t_ready - t0) / 1e6, (double)(t_rev - t0) / 1e6,
           (double)(t_voters - t0) / 1e6);
    ok = 0;

out:
    interrupted = 1; /* stops writers after their current put */
    kill_all();
    while (n_th > 0) {
        pthread_join(th[--n_th], NULL);
    }
    ballast_client_free(ctl);
    if (base_dir[0] != '\0') {
        if (ok == 0 && getenv("BENCH_KEEP") == NULL) {
            rm_tree(base_dir);
        } else {
            fprintf(stderr, "lifecycle: member logs kept in %s\n", base_dir);
        }
    }
    free(child_env);
    return ok == 0 ? 0 : 1;
}
