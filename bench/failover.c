/* Failover benchmark: how long writes stop when the leader is stopped.
 *
 *   bench/failover [--rounds R] [BALLASTD]
 *
 * Starts its own 3-member cluster (ballastd from the argument, else
 * $BALLASTD, else ../server/ballastd next to this program) on ephemeral
 * 127.0.0.1 ports in a temporary directory. One writer thread PUTs a
 * 16-byte value in a loop through libballast over one keep-alive connection,
 * with all three members as endpoints, a short per-attempt timeout (500 ms)
 * and a short backoff (2..10 ms, also capping the servers' Retry-After), so
 * that what is measured is the cluster's unavailability rather than the
 * client's patience. The completion time of every acknowledged write is
 * recorded.
 *
 * A round: wait until all three members are ready and agree on a leader,
 * let writes run for the 3 s before the signal, send the signal to the
 * leader (SIGTERM in R rounds, then SIGKILL in R rounds), reap it, wait
 * until 3 s after the signal and until a write acknowledged after that
 * exists, then restart the stopped member. The round's gap is the longest
 * interval between two consecutive acknowledged writes that overlaps the
 * window of +-3 s around the signal (so a stall that runs past the window
 * is counted whole). The round's signal gap is the longest interval that
 * ends after the signal and starts within SIGNAL_SPAN_MS of it: what the
 * signal itself costs, apart from stalls elsewhere in the window (a Raft
 * snapshot stalls appends for tens of ms every --snapshot-threshold
 * entries). The program prints each round (its gap, where the gap
 * starts relative to the signal, when the first write after the signal was
 * acknowledged, how the member ended), the median and max gap per signal,
 * and one summary line:
 *   failover benchmark: rounds=R sigterm_gap_median_ms=.. sigterm_gap_max_ms=..
 *   sigkill_gap_median_ms=.. sigkill_gap_max_ms=..
 *
 * FAILOVER_TRACE=1 prints each write call slower than 20 ms (when, how
 * long, which endpoint answered, the outcome) and each signal to stderr.
 *
 * Bounded: every wait has a deadline (cluster ready 30 s, SIGTERM exit 15 s,
 * SIGKILL reap 5 s, writes resuming 30 s); a missed deadline ends the run
 * with exit status 1 and keeps the directory (member logs) for a look.
 * Members run with PR_SET_PDEATHSIG and are killed on every exit path,
 * SIGINT and SIGTERM included; the directory is removed on success. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ballast.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEMBERS           3
#define DEFAULT_ROUNDS    5
#define WINDOW_MS         3000  /* before and after the signal */
#define READY_TIMEOUT_MS  30000 /* cluster (re)started and agreeing on a leader */
#define TERM_TIMEOUT_MS   15000 /* a SIGTERMed member exits */
#define KILL_TIMEOUT_MS   5000  /* a SIGKILLed member is reaped */
#define RESUME_TIMEOUT_MS 30000 /* a write acknowledged after the window */
#define POLL_MS           10
#define VALUE_BYTES       16
#define KEYS              100 /* the writer cycles over this many keys */

extern char **environ;

struct member {
    uint64_t id;
    char client[32]; /* 127.0.0.1:PORT */
    char peer[32];
    char dir[PATH_MAX];
    char log[PATH_MAX];
    char *argv[12];
};

static const char *ballastd;
static char base_dir[PATH_MAX - 64]; /* leaves room for "/member-N.log" */
static char initial_cluster[256];
static char endpoints[128];
static struct member members[MEMBERS];
static char **child_env; /* environ without BALLAST_* */

/* Member pids, read by the signal handler. 0: not running. */
static volatile pid_t pids[MEMBERS];
static volatile sig_atomic_t interrupted;

/* The writer's record, shared with the main thread under ack_mu. */
static pthread_mutex_t ack_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t *acks; /* completion times (us, CLOCK_MONOTONIC), ascending */
static size_t n_acks, cap_acks;
static uint64_t n_failed;
static char last_error[256];
static volatile sig_atomic_t stop_writer;

/* --- utilities ------------------------------------------------------------ */

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
    stop_writer = 1;
    for (int i = 0; i < MEMBERS; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
        }
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Pick MEMBERS * 2 distinct free ports: bind all to port 0 at once, read
 * them back, release them. */
static int free_ports(uint16_t *ports, int n)
{
    int fds[2 * MEMBERS];
    int rv = 0;

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

/* --- members ---------------------------------------------------------------- */

/* Start member @i. Only async-signal-safe calls run in the child: the
 * writer thread may hold locks at the fork. */
static int member_start(int i)
{
    struct member *m = &members[i];
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid < 0) {
        fprintf(stderr, "failover: fork: %s\n", strerror(errno));
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

/* Reap member @i if it has exited; true while it runs. */
static bool member_running(int i, int *status)
{
    int st;
    if (pids[i] <= 0) {
        return false;
    }
    if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        pids[i] = 0;
        if (status != NULL) {
            *status = st;
        }
        return false;
    }
    return true;
}

/* Wait until member @i exits, at most @timeout_ms; then SIGKILL it. Returns
 * its wait status, or -1 when it had to be killed. */
static int member_reap(int i, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    int st = 0;

    while (member_running(i, &st)) {
        if (now_us() > deadline || interrupted) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
            return -1;
        }
        sleep_ms(1);
    }
    return st;
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

/* Every member runs, answers /readyz with 200, and all name the same
 * leader, which calls itself leader. Returns the leader's index, or -1 with
 * a reason in @why after @timeout_ms. */
static int wait_stable(struct ballast_client *ctl, int timeout_ms, char *why, size_t n)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;

    snprintf(why, n, "nothing checked yet");
    while (!interrupted) {
        uint64_t leader = 0;
        int leader_index = -1;
        bool ok = true;

        for (int i = 0; i < MEMBERS && ok; i++) {
            struct ballast_status *st = NULL;
            int status, exit_status = 0;
            void *body = NULL;
            size_t len;

            if (!member_running(i, &exit_status)) {
                snprintf(why, n, "member %d is not running (wait status 0x%x)", i + 1,
                         (unsigned)exit_status);
                return -1;
            }
            if (ballast_raw_request_endpoint(ctl, members[i].client, "GET", "/readyz", NULL, 0, 1,
                                             &status, &body, &len) != 0) {
                snprintf(why, n, "member %d not ready: %s", i + 1, ballast_errmsg(ctl));
                ok = false;
            } else if (ballast_status_endpoint(ctl, members[i].client, &st) != 0) {
                snprintf(why, n, "member %d status: %s", i + 1, ballast_errmsg(ctl));
                ok = false;
            } else if (st->leader == 0 || (leader != 0 && st->leader != leader)) {
                snprintf(why, n, "members disagree on the leader");
                ok = false;
            } else {
                leader = st->leader;
                if (st->id == leader && strcmp(st->role, "leader") == 0) {
                    leader_index = i;
                }
            }
            ballast_free(body);
            ballast_status_free(st);
        }
        if (ok && leader_index >= 0) {
            return leader_index;
        }
        if (ok) {
            snprintf(why, n, "leader %" PRIu64 " does not report itself as leader", leader);
        }
        if (now_us() > deadline) {
            return -1;
        }
        sleep_ms(50);
    }
    snprintf(why, n, "interrupted");
    return -1;
}

/* --- the writer ---------------------------------------------------------------- */

static void record(int64_t t)
{
    pthread_mutex_lock(&ack_mu);
    if (n_acks == cap_acks) {
        size_t cap = cap_acks ? cap_acks * 2 : 65536;
        int64_t *p = realloc(acks, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&ack_mu);
            return; /* the gap analysis sees a hole; reported via n_failed */
        }
        acks = p;
        cap_acks = cap;
    }
    acks[n_acks++] = t;
    pthread_mutex_unlock(&ack_mu);
}

static void *writer_main(void *arg)
{
    struct ballast_options o = {
        .connect_timeout_ms = 200,
        .request_timeout_ms = 2000,
        .attempt_timeout_ms = 500,
        .max_attempts = 1000,
        .backoff_base_ms = 2,
        .backoff_max_ms = 10,
    };
    struct ballast_client *c;
    char err[200], key[32], value[VALUE_BYTES];
    uint64_t seq = 0;
    bool trace = getenv("FAILOVER_TRACE") != NULL;

    (void)arg;
    memset(value, 'v', sizeof value);
    c = ballast_client_new(endpoints, &o, err, sizeof err);
    if (c == NULL) {
        pthread_mutex_lock(&ack_mu);
        snprintf(last_error, sizeof last_error, "client: %s", err);
        n_failed++;
        pthread_mutex_unlock(&ack_mu);
        return NULL;
    }
    while (!stop_writer) {
        int64_t t0 = now_us(), t1;
        int rv;
        snprintf(key, sizeof key, "failover/%03u", (unsigned)(seq++ % KEYS));
        rv = ballast_put(c, key, strlen(key), value, sizeof value, NULL, NULL);
        t1 = now_us();
        if (trace && t1 - t0 > 20000) {
            fprintf(stderr, "trace: put at %.3f s took %.1f ms, answered by %s: %s\n",
                    (double)t0 / 1e6, (double)(t1 - t0) / 1000.0, ballast_current_endpoint(c),
                    rv == 0 ? "ok" : ballast_errmsg(c));
        }
        if (rv == 0) {
            record(t1);
            continue;
        }
        pthread_mutex_lock(&ack_mu);
        n_failed++;
        snprintf(last_error, sizeof last_error, "%s", ballast_errmsg(c));
        pthread_mutex_unlock(&ack_mu);
        sleep_ms(1);
    }
    ballast_client_free(c);
    return NULL;
}

/* The longest interval between consecutive acknowledged writes that
 * overlaps [t - WINDOW_MS, t + WINDOW_MS], in ms, and where it starts
 * relative to @t into *@start_ms; the number of writes acknowledged in the
 * window into *@n_in. -1 when there is no such pair. */
static double gap_ms(int64_t t, size_t *n_in, double *start_ms)
{
    int64_t lo = t - (int64_t)WINDOW_MS * 1000, hi = t + (int64_t)WINDOW_MS * 1000;
    int64_t best = -1;

    *n_in = 0;
    pthread_mutex_lock(&ack_mu);
    for (size_t k = 0; k < n_acks; k++) {
        if (acks[k] >= lo && acks[k] <= hi) {
            (*n_in)++;
        }
        if (k > 0 && acks[k] >= lo && acks[k - 1] <= hi && acks[k] - acks[k - 1] > best) {
            best = acks[k] - acks[k - 1];
            *start_ms = (double)(acks[k - 1] - t) / 1000.0;
        }
    }
    pthread_mutex_unlock(&ack_mu);
    return best < 0 ? -1 : (double)best / 1000.0;
}

/* The longest interval between consecutive acknowledged writes that ends
 * after @t and starts before @t + @span_ms: the stall the signal itself
 * causes, apart from stalls elsewhere in the window (e.g. a snapshot). */
static double signal_gap_ms(int64_t t, int span_ms)
{
    int64_t best = -1, hi = t + (int64_t)span_ms * 1000;
    pthread_mutex_lock(&ack_mu);
    for (size_t k = 1; k < n_acks; k++) {
        if (acks[k] > t && acks[k - 1] < hi && acks[k] - acks[k - 1] > best) {
            best = acks[k] - acks[k - 1];
        }
    }
    pthread_mutex_unlock(&ack_mu);
    return best < 0 ? -1 : (double)best / 1000.0;
}

/* Time from @t to the first write acknowledged after it, in ms (-1: none). */
static double resumed_ms(int64_t t)
{
    double ms = -1;
    pthread_mutex_lock(&ack_mu);
    for (size_t k = n_acks; k > 0 && acks[k - 1] > t; k--) {
        ms = (double)(acks[k - 1] - t) / 1000.0;
    }
    pthread_mutex_unlock(&ack_mu);
    return ms;
}

/* Whether a write was acknowledged after @t. */
static bool acked_after(int64_t t)
{
    bool yes;
    pthread_mutex_lock(&ack_mu);
    yes = n_acks > 0 && acks[n_acks - 1] > t;
    pthread_mutex_unlock(&ack_mu);
    return yes;
}

#define SIGNAL_SPAN_MS 200

/* --- rounds --------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[256];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) {
        m = v[i] > m ? v[i] : m;
    }
    return m;
}

/* One round with @sig; the gap into *@gap. Returns 0 or -1 (message printed). */
static int round_once(struct ballast_client *ctl, int sig, int round, int rounds, double *gap,
                      double *sgap)
{
    const char *name = sig == SIGTERM ? "SIGTERM" : "SIGKILL";
    char why[300];
    int leader, st;
    int64_t t_sig, deadline;
    double gap_start = 0;
    size_t n_in;

    leader = wait_stable(ctl, READY_TIMEOUT_MS, why, sizeof why);
    if (leader < 0) {
        fprintf(stderr, "failover: %s round %d: cluster not stable: %s\n", name, round, why);
        return -1;
    }
    /* Writes for the whole window before the signal. */
    sleep_ms(WINDOW_MS + 200);
    leader = wait_stable(ctl, READY_TIMEOUT_MS, why, sizeof why);
    if (leader < 0 || interrupted) {
        fprintf(stderr, "failover: %s round %d: cluster not stable: %s\n", name, round, why);
        return -1;
    }
    t_sig = now_us();
    if (getenv("FAILOVER_TRACE") != NULL) {
        fprintf(stderr, "trace: %s to member %d (%s) at %.3f s\n", name, leader + 1,
                members[leader].client, (double)t_sig / 1e6);
    }
    kill(pids[leader], sig);
    st = member_reap(leader, sig == SIGTERM ? TERM_TIMEOUT_MS : KILL_TIMEOUT_MS);

    deadline = t_sig + (int64_t)RESUME_TIMEOUT_MS * 1000;
    while (!interrupted && (now_us() < t_sig + (int64_t)WINDOW_MS * 1000 ||
                            !acked_after(t_sig + (int64_t)WINDOW_MS * 1000))) {
        if (now_us() > deadline) {
            pthread_mutex_lock(&ack_mu);
            fprintf(stderr,
                    "failover: %s round %d: no write acknowledged within %d ms of the signal; "
                    "last error: %s\n",
                    name, round, RESUME_TIMEOUT_MS, last_error);
            pthread_mutex_unlock(&ack_mu);
            return -1;
        }
        sleep_ms(POLL_MS);
    }
    if (interrupted) {
        return -1;
    }
    *gap = gap_ms(t_sig, &n_in, &gap_start);
    *sgap = signal_gap_ms(t_sig, SIGNAL_SPAN_MS);
    printf("round %d/%d %s member %d (leader): gap %.1f ms from %+.1f ms, first write after the "
           "signal at +%.1f ms, %zu writes in the +-%d s window, member %s\n",
           round, rounds, name, leader + 1, *gap, gap_start, resumed_ms(t_sig), n_in,
           WINDOW_MS / 1000,
           st == -1        ? "needed SIGKILL after SIGTERM"
           : WIFEXITED(st) ? (WEXITSTATUS(st) == 0 ? "exited 0" : "exited non-zero")
           : WIFSIGNALED(st) && WTERMSIG(st) == sig ? "killed"
                                                    : "died otherwise");
    fflush(stdout);
    return member_start(leader);
}

/* --- setup ------------------------------------------------------------------------- */

static int setup(void)
{
    uint16_t ports[2 * MEMBERS];
    const char *tmp = getenv("TMPDIR");
    size_t n_env = 0, k = 0;

    snprintf(base_dir, sizeof base_dir, "%s/ballast-bench-failover.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(base_dir) == NULL) {
        fprintf(stderr, "failover: mkdtemp %s: %s\n", base_dir, strerror(errno));
        base_dir[0] = '\0';
        return -1;
    }
    if (free_ports(ports, 2 * MEMBERS) != 0) {
        fprintf(stderr, "failover: cannot pick free ports: %s\n", strerror(errno));
        return -1;
    }
    for (int i = 0; i < MEMBERS; i++) {
        struct member *m = &members[i];
        m->id = (uint64_t)i + 1;
        snprintf(m->client, sizeof m->client, "127.0.0.1:%u", ports[2 * i]);
        snprintf(m->peer, sizeof m->peer, "127.0.0.1:%u", ports[2 * i + 1]);
        snprintf(m->dir, sizeof m->dir, "%s/member-%d", base_dir, i + 1);
        snprintf(m->log, sizeof m->log, "%s/member-%d.log", base_dir, i + 1);
        snprintf(initial_cluster + strlen(initial_cluster),
                 sizeof initial_cluster - strlen(initial_cluster), "%s%d=%s", i ? "," : "", i + 1,
                 m->peer);
        snprintf(endpoints + strlen(endpoints), sizeof endpoints - strlen(endpoints), "%s%s",
                 i ? "," : "", m->client);
    }
    for (int i = 0; i < MEMBERS; i++) {
        static char ids[MEMBERS][8];
        struct member *m = &members[i];
        char **a = m->argv;
        snprintf(ids[i], sizeof ids[i], "%d", i + 1);
        *a++ = "ballastd";
        *a++ = "--id";
        *a++ = ids[i];
        *a++ = "--data-dir";
        *a++ = m->dir;
        *a++ = "--listen-client";
        *a++ = m->client;
        *a++ = "--listen-peer";
        *a++ = m->peer;
        *a++ = "--initial-cluster";
        *a++ = initial_cluster;
        *a = NULL;
    }
    /* Members run with the defaults: no BALLAST_* from the caller. */
    while (environ[n_env] != NULL) {
        n_env++;
    }
    child_env = calloc(n_env + 1, sizeof *child_env);
    if (child_env == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n_env; i++) {
        if (strncmp(environ[i], "BALLAST_", 8) != 0) {
            child_env[k++] = environ[i];
        }
    }
    return 0;
}

/* ballastd from @arg, $BALLASTD, or ../server/ballastd next to this program. */
static const char *find_ballastd(const char *arg)
{
    static char path[PATH_MAX];
    const char *env = getenv("BALLASTD");
    ssize_t n;
    char *slash;

    if (arg != NULL) {
        return arg;
    }
    if (env != NULL && *env) {
        return env;
    }
    n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n <= 0) {
        return NULL;
    }
    path[n] = '\0';
    slash = strrchr(path, '/');
    if (slash == NULL) {
        return NULL;
    }
    strcpy(slash, "/../server/ballastd");
    return path;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    struct ballast_options co = {
        .connect_timeout_ms = 500, .attempt_timeout_ms = 1000, .request_timeout_ms = 2000};
    struct ballast_client *ctl = NULL;
    const char *arg = NULL;
    int rounds = DEFAULT_ROUNDS, ok = -1;
    double term_gaps[128], kill_gaps[128], term_sgaps[128], kill_sgaps[128];
    pthread_t writer;
    bool writer_started = false;
    char err[256], why[300];

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--rounds") == 0 || strcmp(argv[i], "-r") == 0) && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && arg == NULL) {
            arg = argv[i];
        } else {
            fprintf(stderr, "usage: failover [--rounds R (1..128)] [BALLASTD]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 128) {
        fprintf(stderr, "failover: --rounds must be 1..128\n");
        return 2;
    }
    ballastd = find_ballastd(arg);
    if (ballastd == NULL || access(ballastd, X_OK) != 0) {
        fprintf(stderr, "failover: no ballastd (give its path or set BALLASTD)\n");
        return 2;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (setup() != 0) {
        goto out;
    }
    printf("failover benchmark: 3 members from %s in %s; 1 writer, %d-byte PUTs over %d keys, "
           "attempt timeout 500 ms, backoff 2..10 ms; window +-%d s; %d rounds per signal\n",
           ballastd, base_dir, VALUE_BYTES, KEYS, WINDOW_MS / 1000, rounds);
    fflush(stdout);
    for (int i = 0; i < MEMBERS; i++) {
        if (member_start(i) != 0) {
            goto out;
        }
    }
    ctl = ballast_client_new(endpoints, &co, err, sizeof err);
    if (ctl == NULL) {
        fprintf(stderr, "failover: client: %s\n", err);
        goto out;
    }
    if (wait_stable(ctl, READY_TIMEOUT_MS, why, sizeof why) < 0) {
        fprintf(stderr, "failover: the cluster did not start: %s\n", why);
        goto out;
    }
    if (pthread_create(&writer, NULL, writer_main, NULL) != 0) {
        fprintf(stderr, "failover: cannot start the writer thread\n");
        goto out;
    }
    writer_started = true;

    for (int r = 0; r < rounds; r++) {
        if (round_once(ctl, SIGTERM, r + 1, rounds, &term_gaps[r], &term_sgaps[r]) != 0) {
            goto out;
        }
    }
    for (int r = 0; r < rounds; r++) {
        if (round_once(ctl, SIGKILL, r + 1, rounds, &kill_gaps[r], &kill_sgaps[r]) != 0) {
            goto out;
        }
    }
    ok = 0;

out:
    stop_writer = 1;
    if (writer_started) {
        pthread_join(writer, NULL); /* a put ends within its 2 s deadline */
    }
    kill_all();
    ballast_client_free(ctl);
    if (ok == 0) {
        pthread_mutex_lock(&ack_mu);
        printf("writes: %zu acknowledged, %" PRIu64 " calls failed%s%s\n", n_acks, n_failed,
               n_failed ? "; last error: " : "", n_failed ? last_error : "");
        pthread_mutex_unlock(&ack_mu);
        printf("SIGTERM of the leader: gap median %.1f ms, max %.1f ms; at the signal "
               "(first %d ms): median %.1f ms, max %.1f ms\n",
               median(term_gaps, rounds), max_of(term_gaps, rounds), SIGNAL_SPAN_MS,
               median(term_sgaps, rounds), max_of(term_sgaps, rounds));
        printf("SIGKILL of the leader: gap median %.1f ms, max %.1f ms; at the signal "
               "(first %d ms): median %.1f ms, max %.1f ms\n",
               median(kill_gaps, rounds), max_of(kill_gaps, rounds), SIGNAL_SPAN_MS,
               median(kill_sgaps, rounds), max_of(kill_sgaps, rounds));
        printf("failover benchmark: rounds=%d sigterm_gap_median_ms=%.1f sigterm_gap_max_ms=%.1f "
               "sigkill_gap_median_ms=%.1f sigkill_gap_max_ms=%.1f "
               "sigterm_signal_gap_median_ms=%.1f sigkill_signal_gap_median_ms=%.1f\n",
               rounds, median(term_gaps, rounds), max_of(term_gaps, rounds),
               median(kill_gaps, rounds), max_of(kill_gaps, rounds), median(term_sgaps, rounds),
               median(kill_sgaps, rounds));
    }
    if (base_dir[0] != '\0') {
        if (ok == 0 && getenv("BENCH_KEEP") == NULL) {
            nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        } else {
            fprintf(stderr, "failover: member logs kept in %s\n", base_dir);
        }
    }
    free(child_env);
    free(acks);
    return ok == 0 ? 0 : 1;
}
