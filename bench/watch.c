/* Watch benchmark: do watchers slow writers, and how fast do events reach them?
 *
 *   bench/watch [--endpoints E] [--seconds S] [--watchers N[,N...]] [--stalled]
 *               [--warmup S] [--pid-dir DIR]
 *
 * Runs against a running cluster: --endpoints (default $BALLAST_ENDPOINTS)
 * lists its members' client addresses ("host:port,..."). It starts nothing
 * and stops nothing. First the writers below run for --warmup seconds
 * (default 3; not measured), so that the first phase does not pay for a
 * cold cluster. Then for each watcher count N (default 0,1,10,100) one
 * phase of S seconds (default 10), 1 s apart:
 *   - N watcher threads, each with a libballast client of its own and a
 *     watch on the prefix "bench/watch/" from now, spread over the members
 *     (watcher i's endpoint list starts at member i mod M). Every watch is
 *     open (its 200 head arrived) before the first write.
 *   - 4 writer threads, one client each, with the leader first in their
 *     endpoint list, PUT 256-byte values to bench/watch/<thread>/<i % 1000>
 *     as fast as they can for S seconds. A value starts with a tag of the
 *     run and phase and the CLOCK_MONOTONIC time its put was sent; the
 *     writer records every put's latency and the revision and time of every
 *     acknowledgement.
 *   - With --stalled, one more watch on the prefix over a plain TCP socket to
 *     the leader (SO_RCVBUF 4 KiB), of which only the head is peeked at
 *     (MSG_PEEK) and nothing is read during the phase. When the writes end,
 *     the kernel queues of both ends of that connection are read from
 *     /proc/net/tcp; then it is read to its end (or until it delivered the
 *     last write): the report says whether the server cut it off with
 *     {"type":"cancelled","reason":"slow",...}. The member counts a watcher
 *     as behind only once its own unsent output (~0.5..1 MiB) and the
 *     kernel's send buffer (autotuned up to net.ipv4.tcp_wmem's max) are
 *     full, so the cut-off takes those events plus --watch-max-lag (5000)
 *     revisions plus a second: about 12,000 writes of this size here,
 *     more than a 10 s phase makes (use --seconds 30 to see it).
 * A watcher counts the put events of this phase (by the tag) and the delivery
 * lag of each: receive time minus send time of the put (commit plus
 * delivery), and receive time minus the put's acknowledgement (negative
 * when the event arrived before the writer had its answer). After the
 * writers stop, each watcher runs until it saw the highest acknowledged
 * revision, or until the drain deadline. Then every acknowledged revision
 * is looked up in every watcher's events: one it lacks is missed; an event
 * of a revision that was not acknowledged (a put whose answer was lost) is
 * extra; revisions must come in increasing order.
 *
 * Per phase it prints writes/s, put latency p50/p99/max, events per watcher
 * against the acknowledged writes, missed/extra events and watcher errors,
 * lag p50/p99/max over all watchers (and by the first member of their lists),
 * the RSS (VmRSS) of each ballastd before, at most during and after the
 * phase and its CPU time in the phase (pids from DIR/member-N.pid, default
 * .cluster as scripts/cluster.sh writes them; skipped when absent), and one
 * summary line:
 *   watch bench: watchers=N writes_per_s=.. put_p50_ms=.. put_p99_ms=.. lag_p50_ms=..
 *   lag_p99_ms=.. missed=0 ...
 *
 * Bounded: every wait has a deadline (watches open 60 s, a put or a
 * reconnecting watch_next within the client's request timeout of 5 s,
 * watchers catching up 15 s after the last write, the stalled socket read
 * 15 s). Exit status 0 when every watcher got every acknowledged write
 * without error, 1 otherwise (or on a setup failure), 2 for a usage error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ballast.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PREFIX          "bench/watch/"
#define WRITERS         4
#define VALUE_BYTES     256
#define KEYS_PER_WRITER 1000
#define MAX_ENDPOINTS   16
#define MAX_PHASES      32
#define MAX_WATCHERS    1000
#define MAX_MEMBERS     16
#define OPEN_TIMEOUT_MS 60000 /* every watch open */
#define DRAIN_MS        15000 /* watchers caught up after the last write */
#define STOP_MS         8000  /* watcher threads ended after being told */
#define STALLED_READ_MS 15000 /* reading the stalled watch to its end */
#define NEXT_TIMEOUT_MS 100   /* one ballast_watch_next() wait */
#define RSS_SAMPLE_MS   100
#define STALLED_RCVBUF  4096

/* --- shared state ------------------------------------------------------------ */

static char endpoints_arg[1024];
static char *eps[MAX_ENDPOINTS]; /* "host:port" as given */
static size_t n_eps;
static char leader_ep[128]; /* the leader's endpoint at the start of a phase, "" unknown */
static char tag[48];        /* "r<pid>p<phase>": the values of this phase start with it */
static size_t tag_len;
static atomic_llong t_end_us; /* writers stop sending after this */
static atomic_int interrupted;
static atomic_int writers_go;
static atomic_int watchers_stop;
static atomic_llong max_acked_rev; /* set after the writers ended; -1 before */
static atomic_int n_watchers_ready;

static const struct ballast_options client_opts = {
    .connect_timeout_ms = 1000,
    .request_timeout_ms = 5000,
    .attempt_timeout_ms = 2000,
};

struct wevent {
    int64_t rev;
    int64_t recv_us;
    int64_t send_us;
};

struct watcher {
    int index;
    pthread_t th;
    bool started;
    char endpoints[1024]; /* rotated list */
    char on[128];         /* first endpoint of its list: where the watch opens while that
                             member is up (libballast does not say where a watch is:
                             ballast_current_endpoint() is the client's, not the watch's) */
    atomic_int state;     /* 0 opening, 1 open, -1 failed to open */
    atomic_int done;
    int64_t caught_up_us; /* when it received the last acknowledged write; 0 never */
    struct wevent *ev;
    size_t n, cap;
    uint64_t other_tag; /* put events of another phase or run */
    uint64_t deletes;
    uint64_t out_of_order;
    uint64_t errors;
    uint64_t nomem;
    char last_error[200];
    char cancelled[64]; /* reason of a cancelled event, "" none */
};

/* One acknowledged put. */
struct wrec {
    int64_t lat_us;
    int64_t rev;
    int64_t ack_us; /* when its answer arrived */
};

struct writer {
    int index;
    pthread_t th;
    bool started;
    struct wrec *rec;
    size_t n, cap;
    uint64_t sent;
    uint64_t failed;
    uint64_t unknown; /* failed with ETIMEOUT/EUNAVAILABLE: may have been applied */
    uint64_t nomem;   /* acknowledged puts not recorded */
    char last_error[200];
};

/* --- utilities ---------------------------------------------------------------- */

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
    atomic_store(&interrupted, 1);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile @p (0..1] of the sorted @v, in ms; 0 when empty. */
static double pct_ms(const int64_t *v, size_t n, double p)
{
    size_t k;
    if (n == 0) {
        return 0;
    }
    k = (size_t)(p * (double)n + 0.999999);
    k = k < 1 ? 1 : k > n ? n : k;
    return (double)v[k - 1] / 1000.0;
}

/* "host:port" of a member URL or endpoint: without "http://" and a trailing '/'. */
static void norm_endpoint(const char *in, char *out, size_t n)
{
    size_t len;
    if (strncmp(in, "http://", 7) == 0) {
        in += 7;
    }
    snprintf(out, n, "%s", in);
    len = strlen(out);
    while (len > 0 && out[len - 1] == '/') {
        out[--len] = '\0';
    }
}

/* @eps as one comma-separated list starting at endpoint @first. */
static void rotated_list(size_t first, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t k = 0; k < n_eps; k++) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", k ? "," : "", eps[(first + k) % n_eps]);
    }
}

static int endpoint_index(const char *ep)
{
    char a[128], b[128];
    norm_endpoint(ep, a, sizeof a);
    for (size_t k = 0; k < n_eps; k++) {
        norm_endpoint(eps[k], b, sizeof b);
        if (strcmp(a, b) == 0) {
            return (int)k;
        }
    }
    return -1;
}

static bool grow(void **p, size_t *cap, size_t n, size_t size)
{
    void *q;
    size_t c;
    if (n < *cap) {
        return true;
    }
    c = *cap ? *cap * 2 : 16384;
    q = realloc(*p, c * size);
    if (q == NULL) {
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

/* --- ballastd processes: RSS and CPU ------------------------------------------ */

struct member_proc {
    int number;         /* N of member-N.pid */
    pid_t pid;          /* 0: none */
    long rss_before_kb; /* -1: unknown */
    long rss_max_kb;
    long rss_after_kb;
    double cpu_before_s;
    double cpu_after_s;
};

static struct member_proc procs[MAX_MEMBERS];
static int n_procs;

static void find_members(const char *dir)
{
    for (int i = 1; i <= MAX_MEMBERS && n_procs < MAX_MEMBERS; i++) {
        char path[512], comm[64] = "";
        FILE *f;
        long pid = 0;

        snprintf(path, sizeof path, "%s/member-%d.pid", dir, i);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        if (fscanf(f, "%ld", &pid) != 1) {
            pid = 0;
        }
        fclose(f);
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        f = pid > 0 ? fopen(path, "r") : NULL;
        if (f == NULL) {
            continue;
        }
        if (fgets(comm, sizeof comm, f) == NULL) {
            comm[0] = '\0';
        }
        fclose(f);
        if (strncmp(comm, "ballastd", 8) != 0) {
            continue;
        }
        procs[n_procs].number = i;
        procs[n_procs].pid = (pid_t)pid;
        n_procs++;
    }
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* utime + stime of @pid in seconds; -1 when unknown. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut, st;
    const char *p;
    size_t len;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    p = strrchr(buf, ')'); /* comm may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void sample_rss(int when) /* 0 before, 1 during, 2 after */
{
    for (int i = 0; i < n_procs; i++) {
        struct member_proc *m = &procs[i];
        long kb = rss_kb(m->pid);
        if (when == 0) {
            m->rss_before_kb = kb;
            m->rss_max_kb = kb;
            m->cpu_before_s = cpu_s(m->pid);
        } else {
            m->rss_max_kb = kb > m->rss_max_kb ? kb : m->rss_max_kb;
        }
        if (when == 2) {
            m->rss_after_kb = kb;
            m->cpu_after_s = cpu_s(m->pid);
        }
    }
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* --- the leader ------------------------------------------------------------------ */

/* The leader's endpoint into leader_ep ("" when not known). */
static void find_leader(struct ballast_client *ctl)
{
    struct ballast_status *st = NULL;

    leader_ep[0] = '\0';
    if (ballast_status(ctl, &st) != 0) {
        fprintf(stderr, "watch: status: %s\n", ballast_errmsg(ctl));
        return;
    }
    for (size_t k = 0; k < st->n_members; k++) {
        if (st->members[k].id == st->leader && st->members[k].client_url[0] != '\0') {
            norm_endpoint(st->members[k].client_url, leader_ep, sizeof leader_ep);
        }
    }
    ballast_status_free(st);
}

/* --- the writers ------------------------------------------------------------------- */

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct ballast_client *c;
    char list[1024], err[160], key[64], value[VALUE_BYTES];
    int li = leader_ep[0] ? endpoint_index(leader_ep) : -1;
    uint64_t seq = 0;

    rotated_list(li >= 0 ? (size_t)li : 0, list, sizeof list);
    c = ballast_client_new(list, &client_opts, err, sizeof err);
    if (c == NULL) {
        w->failed++;
        snprintf(w->last_error, sizeof w->last_error, "client: %s", err);
        return NULL;
    }
    while (!atomic_load(&writers_go) && !atomic_load(&interrupted)) {
        sleep_ms(1);
    }
    while (!atomic_load(&interrupted)) {
        struct ballast_put_result r;
        int64_t t0 = now_us(), t1;
        int rv, len;

        if (t0 >= atomic_load(&t_end_us)) {
            break;
        }
        snprintf(key, sizeof key, PREFIX "%d/%u", w->index, (unsigned)(seq % KEYS_PER_WRITER));
        memset(value, '.', sizeof value);
        len = snprintf(value, sizeof value, "%s w%d i%" PRIu64 " t%" PRId64 " ", tag, w->index, seq,
                       t0);
        if (len > 0 && (size_t)len < sizeof value) {
            value[len] = '.'; /* over snprintf's NUL: the value is 256 bytes of text */
        }
        seq++;
        w->sent++;
        rv = ballast_put(c, key, strlen(key), value, sizeof value, NULL, &r);
        t1 = now_us();
        if (rv == 0) {
            if (grow((void **)&w->rec, &w->cap, w->n, sizeof *w->rec)) {
                w->rec[w->n].lat_us = t1 - t0;
                w->rec[w->n].rev = r.revision;
                w->rec[w->n].ack_us = t1;
                w->n++;
            } else {
                w->nomem++;
            }
            ballast_put_result_free(&r);
            continue;
        }
        w->failed++;
        if (rv == BALLAST_ETIMEOUT || rv == BALLAST_EUNAVAILABLE) {
            w->unknown++;
        }
        snprintf(w->last_error, sizeof w->last_error, "%s", ballast_errmsg(c));
        sleep_ms(1);
    }
    ballast_client_free(c);
    return NULL;
}

/* --- the watchers -------------------------------------------------------------------- */

static bool final_error(int rv)
{
    return rv == BALLAST_ECANCELLED || rv == BALLAST_ECOMPACTED || rv == BALLAST_EBADARG ||
           rv == BALLAST_ENOTFOUND || rv == BALLAST_EUNAUTHORIZED || rv == BALLAST_EFORBIDDEN;
}

/* A put event: keep it when its value carries this phase's tag. */
static void watcher_put(struct watcher *w, const struct ballast_event *ev, int64_t t)
{
    char head[96];
    size_t n = ev->kv.value_len < sizeof head - 1 ? ev->kv.value_len : sizeof head - 1;
    const char *p;
    int64_t send_us;

    memcpy(head, ev->kv.value, n);
    head[n] = '\0';
    if (n <= tag_len || memcmp(head, tag, tag_len) != 0 || head[tag_len] != ' ') {
        w->other_tag++;
        return;
    }
    p = strstr(head + tag_len, " t");
    send_us = p != NULL ? strtoll(p + 2, NULL, 10) : 0;
    if (w->n > 0 && ev->revision <= w->ev[w->n - 1].rev) {
        w->out_of_order++;
    }
    if (!grow((void **)&w->ev, &w->cap, w->n, sizeof *w->ev)) {
        w->nomem++;
        return;
    }
    w->ev[w->n].rev = ev->revision;
    w->ev[w->n].recv_us = t;
    w->ev[w->n].send_us = send_us;
    w->n++;
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;
    struct ballast_watch_opts o = {.prefix = 1};
    struct ballast_client *c;
    struct ballast_watch *wt = NULL;
    char err[160];
    int rv;

    c = ballast_client_new(w->endpoints, &client_opts, err, sizeof err);
    if (c == NULL) {
        w->errors++;
        snprintf(w->last_error, sizeof w->last_error, "client: %s", err);
        atomic_store(&w->state, -1);
        atomic_fetch_add(&n_watchers_ready, 1);
        atomic_store(&w->done, 1);
        return NULL;
    }
    rv = ballast_watch_open(c, PREFIX, strlen(PREFIX), &o, &wt);
    if (rv != 0) {
        w->errors++;
        snprintf(w->last_error, sizeof w->last_error, "open: %s", ballast_errmsg(c));
        atomic_store(&w->state, -1);
    } else {
        atomic_store(&w->state, 1);
    }
    atomic_fetch_add(&n_watchers_ready, 1);

    while (rv == 0 && !atomic_load(&watchers_stop) && !atomic_load(&interrupted)) {
        struct ballast_event ev;
        int64_t target = atomic_load(&max_acked_rev), t;

        if (target >= 0 && w->n > 0 && w->ev[w->n - 1].rev >= target) {
            size_t k = w->n - 1; /* saw the last acknowledged write: when? */
            while (k > 0 && w->ev[k - 1].rev >= target) {
                k--;
            }
            w->caught_up_us = w->ev[k].recv_us;
            break;
        }
        rv = ballast_watch_next(wt, NEXT_TIMEOUT_MS, &ev);
        t = now_us();
        if (rv == BALLAST_EAGAIN) {
            rv = 0;
            continue;
        }
        if (rv != 0) {
            w->errors++;
            snprintf(w->last_error, sizeof w->last_error, "next: %s: %s", ballast_strerror(rv),
                     ballast_errmsg(c));
            if (final_error(rv)) {
                break;
            }
            rv = 0;
            sleep_ms(10);
            continue;
        }
        if (ev.type == BALLAST_EVENT_PUT) {
            watcher_put(w, &ev, t);
        } else if (ev.type == BALLAST_EVENT_DELETE) {
            w->deletes++;
        } else if (ev.type == BALLAST_EVENT_CANCELLED) {
            w->errors++;
            snprintf(w->cancelled, sizeof w->cancelled, "%s", ev.reason);
            snprintf(w->last_error, sizeof w->last_error, "cancelled: %s at revision %" PRId64,
                     ev.reason, ev.revision);
            break;
        }
    }
    ballast_watch_close(wt);
    ballast_client_free(c);
    atomic_store(&w->done, 1);
    return NULL;
}

/* --- the stalled watcher --------------------------------------------------------------- */

struct stalled {
    int fd;
    char on[128];
    bool opened;
    char error[200];
    /* what reading it afterwards found */
    uint64_t bytes, puts, progress;
    bool ended;     /* the chunked body ended (terminating chunk) or the connection closed */
    bool cancelled; /* a cancelled event came */
    char reason[64];
    int64_t next_rev;
    int64_t last_rev; /* revision of the last put or progress line */
    bool caught_up;   /* reading stopped at a put or progress line of the last write */
    /* kernel queues of the connection when the writes ended (/proc/net/tcp;
     * -1 unknown): the member's send queue and this end's receive queue */
    long srv_tx, cli_rx;
    char last_line[256];
};

/* Connect to @ep ("127.0.0.1:port") with a small receive buffer, send the
 * watch request and peek (without reading) until its 200 head arrived. */
static void stalled_open(struct stalled *s, const char *ep)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char host[64], req[512], peek[4096];
    const char *colon = strrchr(ep, ':');
    int rcvbuf = STALLED_RCVBUF;
    int64_t deadline = now_us() + 5000000;
    size_t len, off = 0;

    snprintf(s->on, sizeof s->on, "%s", ep);
    s->fd = -1;
    if (colon == NULL || (size_t)(colon - ep) >= sizeof host) {
        snprintf(s->error, sizeof s->error, "endpoint %s is not host:port", ep);
        return;
    }
    memcpy(host, ep, (size_t)(colon - ep));
    host[colon - ep] = '\0';
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(s->error, sizeof s->error, "endpoint %s: not an IPv4 address", ep);
        return;
    }
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0) {
        snprintf(s->error, sizeof s->error, "socket: %s", strerror(errno));
        return;
    }
    /* Before connect, so that the window announced is small from the start. */
    setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(s->error, sizeof s->error, "connect %s: %s", ep, strerror(errno));
        return;
    }
    len = (size_t)snprintf(req, sizeof req,
                           "GET /v1/watch/bench%%2Fwatch%%2F?prefix HTTP/1.1\r\nHost: %s\r\n"
                           "Accept: application/x-ndjson\r\n\r\n",
                           ep);
    while (off < len) {
        ssize_t k = send(s->fd, req + off, len - off, MSG_NOSIGNAL);
        if (k <= 0) {
            snprintf(s->error, sizeof s->error, "send: %s", strerror(errno));
            return;
        }
        off += (size_t)k;
    }
    while (now_us() < deadline) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        ssize_t k;
        if (poll(&pfd, 1, 50) < 0 && errno != EINTR) {
            break;
        }
        k = recv(s->fd, peek, sizeof peek - 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) {
            snprintf(s->error, sizeof s->error, "closed before the head");
            return;
        }
        if (k > 0) {
            peek[k] = '\0';
            if (strstr(peek, "\r\n\r\n") != NULL) {
                if (strncmp(peek, "HTTP/1.1 200", 12) != 0) {
                    char *eol = strstr(peek, "\r\n");
                    *eol = '\0';
                    snprintf(s->error, sizeof s->error, "answer: %.150s", peek);
                    return;
                }
                s->opened = true;
                return;
            }
        }
    }
    snprintf(s->error, sizeof s->error, "no head within 5 s");
}

/* The send queue of the member's end of the stalled connection and the
 * receive queue of ours, from /proc/net/tcp (loopback: both ends are here). */
static void stalled_queues(struct stalled *s)
{
    struct sockaddr_in me, peer;
    socklen_t l1 = sizeof me, l2 = sizeof peer;
    char line[512];
    FILE *f;

    s->srv_tx = s->cli_rx = -1;
    if (getsockname(s->fd, (struct sockaddr *)&me, &l1) != 0 ||
        getpeername(s->fd, (struct sockaddr *)&peer, &l2) != 0) {
        return;
    }
    f = fopen("/proc/net/tcp", "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned la, lp, ra, rp, st;
        unsigned long tx, rx;
        if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &la, &lp, &ra, &rp, &st, &tx, &rx) != 7) {
            continue;
        }
        if (lp == ntohs(peer.sin_port) && rp == ntohs(me.sin_port)) {
            s->srv_tx = (long)tx;
        } else if (lp == ntohs(me.sin_port) && rp == ntohs(peer.sin_port)) {
            s->cli_rx = (long)rx;
        }
    }
    fclose(f);
}

static void stalled_line(struct stalled *s, const char *line, size_t len)
{
    if (len == 0) {
        return;
    }
    const char *rv = memmem(line, len, "\"revision\":", 11);

    snprintf(s->last_line, sizeof s->last_line, "%.*s", (int)(len < 200 ? len : 200), line);
    if (len >= 14 && memcmp(line, "{\"type\":\"put\"", 13) == 0) {
        s->puts++;
        s->last_rev = rv != NULL ? strtoll(rv + 11, NULL, 10) : s->last_rev;
    } else if (memmem(line, len, "\"progress\"", 10) != NULL) {
        s->progress++;
        s->last_rev = rv != NULL ? strtoll(rv + 11, NULL, 10) : s->last_rev;
    } else if (memmem(line, len, "\"cancelled\"", 11) != NULL) {
        const char *r = memmem(line, len, "\"reason\":\"", 10);
        const char *v = memmem(line, len, "\"revision\":", 11);
        s->cancelled = true;
        if (r != NULL) {
            const char *q = memchr(r + 10, '"', len - (size_t)(r + 10 - line));
            if (q != NULL) {
                snprintf(s->reason, sizeof s->reason, "%.*s", (int)(q - (r + 10)), r + 10);
            }
        }
        if (v != NULL) {
            s->next_rev = strtoll(v + 11, NULL, 10);
        }
    }
}

/* Read the stalled watch to the end of its body, until it delivered
 * revision @last (it was not cut off), or for STALLED_READ_MS: decode the
 * chunked framing and look at each NDJSON line. */
static void stalled_read(struct stalled *s, int64_t last)
{
    size_t cap = 8u << 20, len = 0, pos = 0, hdr_end = 0;
    char *buf = malloc(cap);
    char *line = malloc(cap);
    size_t line_len = 0;
    int64_t deadline = now_us() + (int64_t)STALLED_READ_MS * 1000;
    bool chunked = false;

    if (buf == NULL || line == NULL) {
        snprintf(s->error, sizeof s->error, "out of memory");
        goto out;
    }
    while (!s->ended && now_us() < deadline && !atomic_load(&interrupted)) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        ssize_t k;

        if (!s->cancelled && last > 0 && s->last_rev >= last) {
            s->caught_up = true;
            break;
        }
        if (len == cap) { /* unparsed bytes fill the buffer: drop what was parsed */
            memmove(buf, buf + pos, len - pos);
            len -= pos;
            pos = 0;
            if (len == cap) {
                snprintf(s->error, sizeof s->error, "a chunk header over 8 MiB");
                goto out;
            }
        }
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        k = recv(s->fd, buf + len, cap - len, MSG_DONTWAIT);
        if (k == 0) {
            s->ended = true;
        }
        if (k <= 0) {
            continue;
        }
        len += (size_t)k;
        s->bytes += (uint64_t)k;
        if (hdr_end == 0) {
            char *e = memmem(buf, len, "\r\n\r\n", 4);
            if (e == NULL) {
                continue;
            }
            hdr_end = (size_t)(e - buf) + 4;
            chunked = memmem(buf, hdr_end, "chunked", 7) != NULL;
            pos = hdr_end;
        }
        /* Chunks (or, unchunked, the bytes as they are) into lines. */
        while (pos < len && !s->ended) {
            const char *data;
            size_t dlen;
            if (chunked) {
                char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
                unsigned long size;
                if (eol == NULL) {
                    break;
                }
                size = strtoul(buf + pos, NULL, 16);
                if (size == 0) {
                    s->ended = true; /* the terminating chunk */
                    break;
                }
                if ((size_t)(eol + 2 - buf) + size + 2 > len) {
                    if (size + 64 > cap) {
                        snprintf(s->error, sizeof s->error, "a chunk of %lu bytes", size);
                        goto out;
                    }
                    break;
                }
                data = eol + 2;
                dlen = size;
                pos = (size_t)(eol + 2 - buf) + size + 2;
            } else {
                data = buf + pos;
                dlen = len - pos;
                pos = len;
            }
            for (size_t i = 0; i < dlen; i++) {
                if (data[i] == '\n') {
                    stalled_line(s, line, line_len);
                    line_len = 0;
                } else if (line_len < cap) {
                    line[line_len++] = data[i];
                }
            }
        }
        if (pos == len) {
            pos = len = 0;
        }
    }
out:
    free(buf);
    free(line);
}

/* --- one phase ------------------------------------------------------------------------- */

struct lagset {
    int64_t *v;
    size_t n;
};

static void lag_add(struct lagset *l, int64_t x)
{
    l->v[l->n++] = x;
}

static void lag_sort(struct lagset *l)
{
    qsort(l->v, l->n, sizeof *l->v, cmp_i64);
}

static const char *writer_error(const struct writer *wr)
{
    for (int i = 0; i < WRITERS; i++) {
        if (wr[i].failed > 0) {
            return wr[i].last_error;
        }
    }
    return "";
}

/* @v sorted, as "%.2f" ms at percentile @p (1: the max), or "na" when empty. */
static const char *fmt_pct(char *buf, size_t n, const int64_t *v, size_t cnt, double p)
{
    if (cnt == 0) {
        snprintf(buf, n, "na");
    } else {
        snprintf(buf, n, "%.2f", pct_ms(v, cnt, p));
    }
    return buf;
}

/* Runs one phase; returns 0 when every watcher got every acknowledged
 * write without error, 1 when not, -1 when the phase could not run. */
static int run_phase(struct ballast_client *ctl, int phase, int n_watchers, int seconds,
                     bool with_stalled)
{
    struct watcher *ws = calloc((size_t)n_watchers + 1, sizeof *ws);
    struct writer wr[WRITERS];
    struct stalled st = {.fd = -1};
    struct lagset lag_send = {0}, lag_ack = {0}, lag_ep[MAX_ENDPOINTS];
    int64_t *lat = NULL, *rev_ack = NULL, t_start = 0, t_writes_done = 0, t_caught_up = 0, deadline;
    int64_t min_rev = INT64_MAX, max_rev = -1, last_ack = 0;
    size_t n_acked = 0, n_rev_ack = 0, total_events = 0;
    uint64_t failed = 0, unknown = 0, nomem = 0, missed = 0, extra = 0, ooo = 0, werrors = 0;
    int n_open = 0, n_short = 0, n_err = 0, rc = -1;
    double self0 = 0, self1 = 0, elapsed_s;
    char f[6][32];

    memset(wr, 0, sizeof wr);
    memset(lag_ep, 0, sizeof lag_ep);
    if (ws == NULL) {
        fprintf(stderr, "watch: out of memory\n");
        return -1;
    }
    snprintf(tag, sizeof tag, "r%ldp%d", (long)getpid(), phase);
    tag_len = strlen(tag);
    atomic_store(&writers_go, 0);
    atomic_store(&watchers_stop, 0);
    atomic_store(&max_acked_rev, -1);
    atomic_store(&n_watchers_ready, 0);
    find_leader(ctl);
    sample_rss(0);
    self0 = self_cpu_s();

    /* Watchers: open every watch before the first write. */
    for (int i = 0; i < n_watchers; i++) {
        ws[i].index = i;
        rotated_list((size_t)i % n_eps, ws[i].endpoints, sizeof ws[i].endpoints);
        snprintf(ws[i].on, sizeof ws[i].on, "%s", eps[(size_t)i % n_eps]);
        if (pthread_create(&ws[i].th, NULL, watcher_main, &ws[i]) != 0) {
            fprintf(stderr, "watch: cannot start watcher thread %d\n", i);
            atomic_store(&watchers_stop, 1);
            goto join;
        }
        ws[i].started = true;
    }
    deadline = now_us() + (int64_t)OPEN_TIMEOUT_MS * 1000;
    while (atomic_load(&n_watchers_ready) < n_watchers) {
        if (now_us() > deadline || atomic_load(&interrupted)) {
            fprintf(stderr, "watch: only %d of %d watches opened within %d ms\n",
                    atomic_load(&n_watchers_ready), n_watchers, OPEN_TIMEOUT_MS);
            atomic_store(&watchers_stop, 1);
            goto join;
        }
        sleep_ms(5);
    }
    for (int i = 0; i < n_watchers; i++) {
        n_open += atomic_load(&ws[i].state) == 1;
    }
    if (with_stalled) {
        stalled_open(&st, leader_ep[0] ? leader_ep : eps[0]);
    }

    /* Writers for @seconds. */
    for (int i = 0; i < WRITERS; i++) {
        wr[i].index = i;
        if (pthread_create(&wr[i].th, NULL, writer_main, &wr[i]) != 0) {
            fprintf(stderr, "watch: cannot start writer thread %d\n", i);
            atomic_store(&interrupted, 1);
            goto join;
        }
        wr[i].started = true;
    }
    sleep_ms(50); /* the writers make their clients */
    t_start = now_us();
    atomic_store(&t_end_us, t_start + (int64_t)seconds * 1000000);
    atomic_store(&writers_go, 1);
    while (now_us() < atomic_load(&t_end_us) && !atomic_load(&interrupted)) {
        sleep_ms(RSS_SAMPLE_MS);
        sample_rss(1);
    }
    for (int i = 0; i < WRITERS; i++) {
        if (wr[i].started) {
            pthread_join(wr[i].th, NULL); /* a put ends within its 5 s deadline */
            wr[i].started = false;
        }
    }
    t_writes_done = now_us();
    if (st.opened) {
        stalled_queues(&st);
    }
    for (int i = 0; i < WRITERS; i++) {
        for (size_t k = 0; k < wr[i].n; k++) {
            min_rev = wr[i].rec[k].rev < min_rev ? wr[i].rec[k].rev : min_rev;
            last_ack = wr[i].rec[k].rev > max_rev ? wr[i].rec[k].ack_us : last_ack;
            max_rev = wr[i].rec[k].rev > max_rev ? wr[i].rec[k].rev : max_rev;
        }
        n_acked += wr[i].n;
        failed += wr[i].failed;
        unknown += wr[i].unknown;
        nomem += wr[i].nomem;
    }
    /* Watchers catch up to the last acknowledged write. */
    atomic_store(&max_acked_rev, max_rev);
    if (max_rev < 0) {
        atomic_store(&watchers_stop, 1); /* nothing to wait for */
    }
    deadline = t_writes_done + (int64_t)DRAIN_MS * 1000;
    for (;;) {
        int n_done = 0;
        for (int i = 0; i < n_watchers; i++) {
            n_done += atomic_load(&ws[i].done);
        }
        sample_rss(1);
        if (n_done == n_watchers) {
            break;
        }
        if (now_us() > deadline || atomic_load(&interrupted)) {
            fprintf(stderr, "watch: %d of %d watchers not caught up %d ms after the writes\n",
                    n_watchers - n_done, n_watchers, DRAIN_MS);
            break;
        }
        sleep_ms(20);
    }
    for (int i = 0; i < n_watchers; i++) {
        if (!atomic_load(&ws[i].done) || ws[i].caught_up_us == 0) {
            t_caught_up = 0;
            break;
        }
        t_caught_up = ws[i].caught_up_us > t_caught_up ? ws[i].caught_up_us : t_caught_up;
    }
    sample_rss(2);
    self1 = self_cpu_s();
    rc = 0;

join:
    atomic_store(&watchers_stop, 1);
    atomic_store(&writers_go, 1);
    atomic_store(&t_end_us, 0);
    deadline = now_us() + (int64_t)STOP_MS * 1000;
    for (int i = 0; i < n_watchers; i++) {
        while (ws[i].started && !atomic_load(&ws[i].done) && now_us() < deadline) {
            sleep_ms(5);
        }
        if (ws[i].started && !atomic_load(&ws[i].done)) {
            /* The library bounds every call; this would be a client bug. */
            fprintf(stderr, "watch: watcher %d did not end within %d ms; exiting\n", i, STOP_MS);
            fflush(NULL);
            _exit(1);
        }
        if (ws[i].started) {
            pthread_join(ws[i].th, NULL);
        }
    }
    for (int i = 0; i < WRITERS; i++) {
        if (wr[i].started) {
            pthread_join(wr[i].th, NULL);
        }
    }
    if (rc != 0) {
        goto out;
    }
    if (st.opened) {
        stalled_read(&st, max_rev);
    }

    /* Put latencies. */
    elapsed_s = (double)(t_writes_done - t_start) / 1e6;
    lat = malloc((n_acked ? n_acked : 1) * sizeof *lat);
    rev_ack = malloc((n_acked ? n_acked : 1) * 2 * sizeof *rev_ack);
    if (lat == NULL || rev_ack == NULL) {
        fprintf(stderr, "watch: out of memory\n");
        rc = -1;
        goto out;
    }
    n_acked = 0;
    for (int i = 0; i < WRITERS; i++) {
        for (size_t k = 0; k < wr[i].n; k++) {
            lat[n_acked++] = wr[i].rec[k].lat_us;
            rev_ack[2 * n_rev_ack] = wr[i].rec[k].rev;
            rev_ack[2 * n_rev_ack + 1] = wr[i].rec[k].ack_us;
            n_rev_ack++;
        }
    }
    qsort(lat, n_acked, sizeof *lat, cmp_i64);
    qsort(rev_ack, n_rev_ack, 2 * sizeof *rev_ack, cmp_i64); /* by revision (first field) */

    /* Events: each watcher against the acknowledged revisions. */
    for (int i = 0; i < n_watchers; i++) {
        total_events += ws[i].n;
    }
    lag_send.v = malloc((total_events ? total_events : 1) * sizeof *lag_send.v);
    lag_ack.v = malloc((total_events ? total_events : 1) * sizeof *lag_ack.v);
    bool lag_ok = lag_send.v != NULL && lag_ack.v != NULL;
    for (size_t e = 0; e < n_eps; e++) {
        lag_ep[e].v = malloc((total_events ? total_events : 1) * sizeof *lag_ep[e].v);
        lag_ok = lag_ok && lag_ep[e].v != NULL;
    }
    if (!lag_ok) {
        fprintf(stderr, "watch: out of memory\n");
        rc = -1;
        goto out;
    }
    for (int i = 0; i < n_watchers; i++) {
        struct watcher *w = &ws[i];
        size_t a = 0, e = 0;
        uint64_t w_missed = 0, w_extra = 0;
        int ep = endpoint_index(w->on);

        if (atomic_load(&w->state) != 1) {
            n_err++;
            w_missed = n_rev_ack;
        } else {
            /* Both lists ascend (the watcher's unless out of order, counted). */
            while (a < n_rev_ack || e < w->n) {
                if (e >= w->n || (a < n_rev_ack && rev_ack[2 * a] < w->ev[e].rev)) {
                    w_missed++;
                    a++;
                } else if (a >= n_rev_ack || w->ev[e].rev < rev_ack[2 * a]) {
                    w_extra++;
                    lag_add(&lag_send, w->ev[e].recv_us - w->ev[e].send_us);
                    e++;
                } else {
                    int64_t l = w->ev[e].recv_us - w->ev[e].send_us;
                    lag_add(&lag_send, l);
                    lag_add(&lag_ack, w->ev[e].recv_us - rev_ack[2 * a + 1]);
                    if (ep >= 0) {
                        lag_add(&lag_ep[ep], l);
                    }
                    a++;
                    e++;
                }
            }
        }
        missed += w_missed;
        extra += w_extra;
        ooo += w->out_of_order;
        werrors += w->errors + w->nomem;
        if (w_missed > 0) {
            n_short++;
        }
        if (w->errors > 0 || w->nomem > 0 || w->out_of_order > 0) {
            n_err++;
        }
        if ((w_missed > 0 || w->errors > 0 || w->out_of_order > 0) && n_short + n_err <= 10) {
            printf("  watcher %d on %s: %zu events, missed %" PRIu64 ", extra %" PRIu64
                   ", out of order %" PRIu64 ", errors %" PRIu64 "%s%s\n",
                   i, w->on, w->n, w_missed, w_extra, w->out_of_order, w->errors,
                   w->last_error[0] ? ", last: " : "", w->last_error);
        }
    }
    lag_sort(&lag_send);
    lag_sort(&lag_ack);

    /* Report. */
    printf("phase %d: watchers=%d (%d open)%s, %d writers to %s, %d s\n", phase, n_watchers, n_open,
           with_stalled ? " + 1 stalled" : "", WRITERS,
           leader_ep[0] ? leader_ep : "(leader unknown)", seconds);
    printf("  writes: %zu acknowledged in %.2f s = %.0f/s, %" PRIu64 " failed (%" PRIu64
           " outcome unknown, %" PRIu64 " not recorded)%s%s; revisions %" PRId64 "..%" PRId64 "\n",
           n_acked, elapsed_s, (double)n_acked / elapsed_s, failed, unknown, nomem,
           failed ? "; last error: " : "", failed ? writer_error(wr) : "",
           max_rev >= 0 ? min_rev : 0, max_rev >= 0 ? max_rev : 0);
    printf("  put latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", pct_ms(lat, n_acked, 0.5),
           pct_ms(lat, n_acked, 0.99), n_acked ? (double)lat[n_acked - 1] / 1000.0 : 0);
    if (n_watchers > 0) {
        size_t mn = SIZE_MAX, mx = 0;
        for (int i = 0; i < n_watchers; i++) {
            mn = ws[i].n < mn ? ws[i].n : mn;
            mx = ws[i].n > mx ? ws[i].n : mx;
        }
        printf("  events per watcher: min %zu, max %zu (acknowledged writes %zu); %d watchers "
               "missed some (%" PRIu64 " events in all), extra %" PRIu64 ", out of order %" PRIu64
               ", watcher errors %" PRIu64 " in %d watchers\n",
               mn, mx, n_acked, n_short, missed, extra, ooo, werrors, n_err);
        if (t_caught_up > 0) {
            printf("  the last watcher received the last acknowledged write %.2f ms after its "
                   "acknowledgement\n",
                   (double)(t_caught_up - last_ack) / 1000.0);
        }
        printf("  lag from put sent: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu events)\n",
               pct_ms(lag_send.v, lag_send.n, 0.5), pct_ms(lag_send.v, lag_send.n, 0.99),
               lag_send.n ? (double)lag_send.v[lag_send.n - 1] / 1000.0 : 0, lag_send.n);
        printf("  lag after put acknowledged: p50 %.2f ms, p99 %.2f ms, max %.2f ms, min %.2f ms\n",
               pct_ms(lag_ack.v, lag_ack.n, 0.5), pct_ms(lag_ack.v, lag_ack.n, 0.99),
               lag_ack.n ? (double)lag_ack.v[lag_ack.n - 1] / 1000.0 : 0,
               lag_ack.n ? (double)lag_ack.v[0] / 1000.0 : 0);
        for (size_t e = 0; e < n_eps; e++) {
            int n_on = 0;
            for (int i = 0; i < n_watchers; i++) {
                n_on += endpoint_index(ws[i].on) == (int)e;
            }
            if (n_on == 0) {
                continue;
            }
            lag_sort(&lag_ep[e]);
            printf("    starting at %s%s: %d watchers, lag from put sent p50 %.2f ms, p99 %.2f ms, "
                   "max "
                   "%.2f ms\n",
                   eps[e], endpoint_index(leader_ep) == (int)e ? " (leader)" : "", n_on,
                   pct_ms(lag_ep[e].v, lag_ep[e].n, 0.5), pct_ms(lag_ep[e].v, lag_ep[e].n, 0.99),
                   lag_ep[e].n ? (double)lag_ep[e].v[lag_ep[e].n - 1] / 1000.0 : 0);
        }
    }
    for (int i = 0; i < n_procs; i++) {
        struct member_proc *m = &procs[i];
        printf("  ballastd member-%d (pid %ld): RSS %.1f MiB before, %.1f max, %.1f after; CPU "
               "%.2f s\n",
               m->number, (long)m->pid, (double)m->rss_before_kb / 1024.0,
               (double)m->rss_max_kb / 1024.0, (double)m->rss_after_kb / 1024.0,
               m->cpu_after_s - m->cpu_before_s);
    }
    if (n_procs == 0) {
        printf("  ballastd RSS: no member-N.pid files with a running ballastd: skipped\n");
    }
    printf("  this program: CPU %.2f s\n", self1 - self0);
    if (with_stalled) {
        if (!st.opened) {
            printf("  stalled watcher on %s: could not open: %s\n", st.on, st.error);
        } else if (st.cancelled) {
            printf("  stalled watcher on %s: cut off, cancelled with reason \"%s\" at revision "
                   "%" PRId64 " (%" PRId64 " revisions before the last write); %" PRIu64
                   " bytes, %" PRIu64 " put events were buffered for it%s%s%s\n",
                   st.on, st.reason, st.next_rev, max_rev - st.next_rev + 1, st.bytes, st.puts,
                   st.ended ? ", then the stream ended" : ", but the stream did NOT end",
                   st.error[0] ? "; " : "", st.error);
        } else {
            printf("  stalled watcher on %s: NOT cut off: %" PRIu64 " bytes, %" PRIu64
                   " put events, %" PRIu64 " progress read afterwards; %s; last line: %.100s%s%s\n",
                   st.on, st.bytes, st.puts, st.progress,
                   st.ended       ? "the stream ended"
                   : st.caught_up ? "it had every write when reading stopped"
                                  : "still streaming when reading stopped",
                   st.last_line, st.error[0] ? "; " : "", st.error);
        }
        if (st.opened) {
            printf("  stalled watcher's kernel queues when the writes ended: member's send queue "
                   "%ld bytes, our receive queue %ld bytes\n",
                   st.srv_tx, st.cli_rx);
        }
    }
    printf("watch bench: watchers=%d writes_per_s=%.0f put_p50_ms=%s put_p99_ms=%s "
           "put_max_ms=%s lag_p50_ms=%s lag_p99_ms=%s lag_max_ms=%s missed=%" PRIu64
           " watcher_errors=%" PRIu64 " put_errors=%" PRIu64 "%s\n",
           n_watchers, (double)n_acked / elapsed_s, fmt_pct(f[0], sizeof f[0], lat, n_acked, 0.5),
           fmt_pct(f[1], sizeof f[1], lat, n_acked, 0.99),
           fmt_pct(f[2], sizeof f[2], lat, n_acked, 1.0),
           fmt_pct(f[3], sizeof f[3], lag_send.v, lag_send.n, 0.5),
           fmt_pct(f[4], sizeof f[4], lag_send.v, lag_send.n, 0.99),
           fmt_pct(f[5], sizeof f[5], lag_send.v, lag_send.n, 1.0), missed, werrors, failed,
           !with_stalled ? ""
           : !st.opened  ? " stalled=not_opened"
           : st.cancelled
               ? (strcmp(st.reason, "slow") == 0 ? " stalled=cancelled_slow" : " stalled=cancelled")
               : " stalled=not_cut_off");
    fflush(stdout);
    rc = (missed > 0 || werrors > 0 || ooo > 0) ? 1 : 0;

out:
    if (st.fd >= 0) {
        close(st.fd);
    }
    for (int i = 0; i < n_watchers; i++) {
        free(ws[i].ev);
    }
    for (int i = 0; i < WRITERS; i++) {
        free(wr[i].rec);
    }
    for (size_t e = 0; e < n_eps; e++) {
        free(lag_ep[e].v);
    }
    free(ws);
    free(lat);
    free(rev_ack);
    free(lag_send.v);
    free(lag_ack.v);
    return rc;
}

/* Writes without watchers for @seconds, not measured: the first phase
 * should not pay for a cold cluster (LMDB growing, first snapshot). */
static int warmup(struct ballast_client *ctl, int seconds)
{
    struct writer wr[WRITERS];
    uint64_t n = 0, failed = 0;
    int rc = 0;

    memset(wr, 0, sizeof wr);
    snprintf(tag, sizeof tag, "r%ldw", (long)getpid());
    tag_len = strlen(tag);
    find_leader(ctl);
    atomic_store(&writers_go, 0);
    atomic_store(&t_end_us, now_us() + (int64_t)seconds * 1000000 + 50000);
    for (int i = 0; i < WRITERS; i++) {
        wr[i].index = i;
        if (pthread_create(&wr[i].th, NULL, writer_main, &wr[i]) != 0) {
            rc = -1;
            break;
        }
        wr[i].started = true;
    }
    atomic_store(&writers_go, 1);
    for (int i = 0; i < WRITERS; i++) {
        if (wr[i].started) {
            pthread_join(wr[i].th, NULL);
            n += wr[i].n;
            failed += wr[i].failed;
        }
        free(wr[i].rec);
    }
    printf("warm-up: %" PRIu64 " writes in %d s, %" PRIu64 " failed%s%s\n", n, seconds, failed,
           failed ? "; last error: " : "", failed ? writer_error(wr) : "");
    fflush(stdout);
    return rc != 0 || n == 0 ? -1 : 0;
}

/* --- main ---------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: watch [--endpoints E] [--seconds S] [--watchers N[,N...]] "
                    "[--stalled] [--warmup S] [--pid-dir DIR]\n");
}

int main(int argc, char **argv)
{
    const char *endpoints = getenv("BALLAST_ENDPOINTS");
    const char *watchers_arg = "0,1,10,100", *pid_dir = ".cluster";
    int seconds = 10, warm = 3, counts[MAX_PHASES], n_counts = 0, status = 0;
    bool stalled = false;
    struct ballast_client *ctl;
    struct sigaction sa;
    char err[256], list[256], *save = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--endpoints") == 0 && i + 1 < argc) {
            endpoints = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--watchers") == 0 && i + 1 < argc) {
            watchers_arg = argv[++i];
        } else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) {
            warm = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--pid-dir") == 0 && i + 1 < argc) {
            pid_dir = argv[++i];
        } else if (strcmp(argv[i], "--stalled") == 0) {
            stalled = true;
        } else {
            usage();
            return 2;
        }
    }
    if (endpoints == NULL || *endpoints == '\0') {
        fprintf(stderr, "watch: no endpoints (--endpoints or $BALLAST_ENDPOINTS)\n");
        return 2;
    }
    if (seconds < 1 || seconds > 3600 || warm < 0 || warm > 3600) {
        fprintf(stderr, "watch: --seconds must be 1..3600, --warmup 0..3600\n");
        return 2;
    }
    snprintf(list, sizeof list, "%s", watchers_arg);
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long n = strtol(t, &end, 10);
        if (*end != '\0' || n < 0 || n > MAX_WATCHERS || n_counts == MAX_PHASES) {
            fprintf(stderr, "watch: --watchers takes up to %d counts of 0..%d\n", MAX_PHASES,
                    MAX_WATCHERS);
            return 2;
        }
        counts[n_counts++] = (int)n;
    }
    if (n_counts == 0) {
        usage();
        return 2;
    }
    snprintf(endpoints_arg, sizeof endpoints_arg, "%s", endpoints);
    save = NULL;
    for (char *t = strtok_r(endpoints_arg, ",", &save); t != NULL && n_eps < MAX_ENDPOINTS;
         t = strtok_r(NULL, ",", &save)) {
        eps[n_eps++] = t;
    }
    if (n_eps == 0) {
        fprintf(stderr, "watch: no endpoints in \"%s\"\n", endpoints);
        return 2;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rotated_list(0, list, sizeof list);
    ctl = ballast_client_new(list, &client_opts, err, sizeof err);
    if (ctl == NULL) {
        fprintf(stderr, "watch: client: %s\n", err);
        return 1;
    }
    find_members(pid_dir);
    printf("watch benchmark: endpoints %s; %d writers, %d-byte PUTs over %d keys each; "
           "phases of %d s with watchers %s%s; ballastd pids from %s/member-N.pid: %d found\n",
           list, WRITERS, VALUE_BYTES, KEYS_PER_WRITER, seconds, watchers_arg,
           stalled ? " and one stalled raw watch" : "", pid_dir, n_procs);
    fflush(stdout);
    if (warm > 0 && warmup(ctl, warm) != 0) {
        fprintf(stderr, "watch: the warm-up wrote nothing\n");
        ballast_client_free(ctl);
        return 1;
    }
    sleep_ms(1000);
    for (int p = 0; p < n_counts && !atomic_load(&interrupted); p++) {
        int rv = run_phase(ctl, p + 1, counts[p], seconds, stalled);
        if (rv < 0) {
            status = 1;
            break;
        }
        status |= rv;
        sleep_ms(1000); /* let the members settle between phases */
    }
    ballast_client_free(ctl);
    if (atomic_load(&interrupted)) {
        fprintf(stderr, "watch: interrupted\n");
        return 1;
    }
    return status;
}
