/* Load generator: throughput, latency, CPU and memory of ballast (and etcd).
 *
 *   bench/load [--workload put|get|getser|mixed|txn|watch] [--conns N[,N...]]
 *              [--pipeline N] [--rate OPS/S] [--seconds S | --ops N] [--warmup S]
 *              [--key-size B] [--value-size B] [--keys N] [--seed N]
 *              [--preload | --no-preload] [--preload-conns N] [--timeout S]
 *              [--watchers W] [--target all|leader] [--system ballast|etcd] [--vs-etcd]
 *              [--endpoints HOST:PORT,... [--pids PID,...]]
 *              [--ballastd PATH] [--etcd PATH] [--server-arg ARG]... [--etcd-arg ARG]...
 *              [--data-dir DIR] [--keep] [--base-port P] [--rss-after-keys [N]]
 *
 * One libuv loop in one thread drives M keep-alive HTTP/1.1 connections
 * (--conns, default 16; a list runs each count in turn on the same cluster),
 * each with up to --pipeline requests in flight (default 1). Closed loop by
 * default: a connection sends its next request as soon as an answer frees a
 * slot, latency from send to answer. With --rate the load is open loop: the
 * i-th request of the run is scheduled at start + i / rate (evenly spaced)
 * and sent on the first free slot of any connection; its latency is counted
 * from its scheduled time, so a stalled server is charged for the requests it
 * kept from being sent (no coordinated omission). Requests that started more
 * than 1 ms after their scheduled time are counted as late; requests still
 * unsent when the run ends (the drain deadline) are errors of kind "unsent".
 * The run is --warmup seconds (default 2, not measured), then --seconds
 * (default 10) or --ops requests (then --seconds, if given, still caps the
 * run; else 3600 s), then a drain of the requests in flight (at most
 * --timeout).
 *
 * Workloads (keys: the zero-padded decimal of an index below --keys, exactly
 * --key-size bytes wide, default 8 and 100000; picked uniformly at random with
 * --seed, default 1; values: --value-size printable bytes, default 256):
 *   put     ballast PUT /v1/kv/KEY (raw body)     etcd POST /v3/kv/put
 *   get     GET /v1/kv/KEY?raw (linearizable)     POST /v3/kv/range {"key"}
 *   getser  ...?raw&consistency=serializable      ... "serializable":true
 *   mixed   90% get, 10% put
 *   txn     compare-and-swap: POST /v1/txn (etcd /v3/kv/txn) comparing the key's
 *           mod_revision with the last one this generator saw for it ("create"
 *           == 0 when it saw none), success = put, failure = get; the answer
 *           updates the seen revision. A failed compare is a success of the
 *           request, counted apart ("txn failed").
 *   watch   --watchers W (default 100) streams on the prefix bench/ (ballast
 *           GET /v1/watch/bench/?prefix, NDJSON; etcd POST /v3/watch), spread
 *           over the members and all open before the warmup, while the
 *           connections put bench/KEY (at --rate if given); every value begins
 *           with the CLOCK_MONOTONIC ns of its send (20 digits, so --value-size
 *           >= 21). Reported: the event delay (receive minus send) of the puts
 *           sent in the measured phase, and the events missed: every watcher
 *           should see every acknowledged put; after the drain the watchers get
 *           --timeout to catch up.
 * get, getser, mixed and txn preload every key once (--preload-conns
 * connections, default 64) before the warmup; --no-preload skips it,
 * --preload forces it for put and watch. An etcd range answer without kvs
 * counts as a 404.
 *
 * Targets. By default the program starts a fresh local 3-member cluster of
 * --system (ballast, default, or etcd) on 127.0.0.1 (free ports, or
 * --base-port P: member N gets client port P+2(N-1) and peer port one above),
 * with data under --data-dir (default: a new /var/tmp/ballast-load.XXXXXX:
 * a real disk, since fsync latency is most of a write's cost; not /tmp, which
 * may be tmpfs), waits at most 30 s for it (ballast: every /v1/status names
 * the same leader and every /readyz is 200; etcd: every /health is
 * {"health":"true"}), and stops it at the end (SIGTERM, SIGKILL after 10 s).
 * Member N of ballast runs
 *   ballastd --id N --name member-N --data-dir D/ballast/N --listen-client
 *   127.0.0.1:C --listen-peer 127.0.0.1:P --initial-cluster 1=...,2=...,3=...
 *   [--server-arg ARG...]
 * (ballastd from --ballastd, else $BALLASTD, else ./server/ballastd) with its
 * output in D/ballast/member-N.log; etcd member eN (etcd from --etcd, else
 * $ETCD, else etcd on $PATH) runs
 *   etcd --name eN --data-dir D/etcd/eN --listen-client-urls http://127.0.0.1:C
 *   --advertise-client-urls (same) --listen-peer-urls http://127.0.0.1:P
 *   --initial-advertise-peer-urls (same) --initial-cluster e1=http://...,...
 *   --initial-cluster-state new --initial-cluster-token bench
 *   --quota-backend-bytes 8589934592 [--etcd-arg ARG...]
 * with its output in D/etcd/eN.log. The rest of etcd is at its defaults; the
 * ones that matter here: --snapshot-count 100000 (entries between snapshots;
 * ballast's --snapshot-threshold is 8192), --heartbeat-interval 100 ms and
 * --election-timeout 1000 ms (ballast: 50 ms and 500 ms), fsync of the WAL on
 * every batch (as ballast) and the backend committed every 100 ms or 10000
 * writes (batch-interval / batch-limit). etcd is driven through its HTTP/JSON
 * gateway (grpc-gateway: int64 fields as strings, keys and values base64),
 * which costs it a JSON/gRPC translation per request that its Go clients do
 * not pay. D is removed at the end unless --keep (or a failure: then kept and
 * named).
 *
 * --endpoints HOST:PORT,... uses a running cluster of --system instead and
 * starts nothing; CPU and memory are then sampled only with --pids (one per
 * endpoint, same order). --target leader sends every connection to the
 * leader (found through /v1/status or /v3/maintenance/status before each
 * run); the default "all" spreads connections round-robin over the members
 * (ballast followers relay writes and linearizable reads to the leader, etcd
 * followers forward them through raft).
 *
 * --vs-etcd runs the same workload and flags against ballast and then etcd,
 * each on a fresh cluster in its own directory (every --conns count runs on
 * that system's one cluster, one after the other), and prints a side-by-side
 * table per count: ops/s, p50/p90/p99/p99.9/max latency, errors, member
 * CPU-seconds per 1000 ops and peak RSS (the largest VmHWM of a member),
 * ballast, etcd and ballast/etcd.
 *
 * --rss-after-keys [N] (default 1000000) loads N keys of the given sizes
 * with --preload-conns connections (progress every 100k keys on stderr) and
 * reports every member's VmRSS and VmHWM and data directory size, instead of
 * a workload (with --vs-etcd for both systems).
 *
 * Measured per run: ops (every request sent in the measured phase ends once:
 * a 2xx, or an error by kind: HTTP status, reset/EOF (its connection broke),
 * timeout (no answer within --timeout, default 10 s: the connection is then
 * closed and every request on it counts as timed out), parse error, unsent),
 * ops/s (the successful ones over the time from the start of the measured
 * phase to its last answer), latency of the successful ops (log-linear histogram, 1 us .. 100 s,
 * < 0.5% error: mean, p50, p90, p99, p99.9, max; per op kind for mixed),
 * connection failures (refused, other, closed by the server: a connection is
 * reopened after 10 ms, doubling to 500 ms), each member's CPU time
 * (utime+stime from /proc/PID/stat) over the measured phase and drain, its
 * VmRSS and VmHWM at the end and its data directory size, member CPU-seconds
 * per 1000 ops, and the generator's own CPU (getrusage). The report header
 * names the command line, the machine (cores, CPU model, kernel) and the
 * fsync latency of the data directory's disk (200 sequential 4 KiB writes,
 * each followed by fdatasync, in a new file: p50 and p99).
 *
 * Output: a human report on stdout and, per run, one line
 *   load: system=ballast workload=put conns=16 pipeline=1 rate=0 seconds=10.00
 *   ops=.. ops_s=.. ok=.. errors=.. p50_us=.. p90_us=.. p99_us=.. p999_us=..
 *   max_us=.. mean_us=.. late=.. txn_failed=.. cpu_s_per_1k=.. gen_cpu_s=..
 *   rss_kib_max=.. hwm_kib_max=.. [delay_p50_us=.. delay_p99_us=.. missed=..]
 * (one line, key=value). --rss-after-keys prints "load-rss: system=.. keys=..
 * rss_kib_max=.. hwm_kib_max=.. disk_bytes=..".
 *
 * Bounded: cluster start 30 s, every request --timeout, the drain --timeout
 * plus 1 s, the watchers' open 30 s and catch-up --timeout, a preload without
 * progress for --timeout aborts, member stop 10 s. Members die with the
 * generator (PR_SET_PDEATHSIG); SIGINT/SIGTERM kill them and end the run.
 * Exit status 0 when every run completed (errors in the answers are results,
 * not failures), 1 on a setup failure or an interruption, 2 on bad usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loadhist.h"
#include "loadsys.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <http_parser.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_CONNS        4096
#define MAX_PIPELINE     256
#define MAX_WATCHERS     10000
#define MAX_CONN_COUNTS  16
#define MAX_KEY_SIZE     1024
#define MAX_VALUE_SIZE   (1024 * 1024)
#define READY_MS         30000 /* cluster started */
#define OPEN_MS          30000 /* every watcher's stream open */
#define STOP_GRACE_MS    10000 /* SIGTERM to SIGKILL */
#define TICK_MS          1
#define TIMEOUT_CHECK_NS 10000000LL /* 10 ms between request timeout scans */
#define LATE_NS          1000000LL  /* "late" open-loop start */
#define BACKOFF_MIN_MS   10
#define BACKOFF_MAX_MS   500
#define READ_BUF         65536
#define STAMP_DIGITS     20 /* watch: the send time at the head of a value */
#define STAMP_B64        28 /* base64 of the first 21 value bytes */
#define WATCH_PREFIX     "bench/"
#define FSYNC_ROUNDS     200
#define NS               1000000000LL

enum workload { WL_PUT, WL_GET, WL_GETSER, WL_MIXED, WL_TXN, WL_WATCH };
static const char *const workload_names[] = {"put", "get", "getser", "mixed", "txn", "watch"};

enum op { OP_PUT, OP_GET, OP_GETSER, OP_TXN, N_OPS };
static const char *const op_names[] = {"put", "get", "getser", "txn"};

/* Request errors other than an HTTP status. */
enum ekind { E_RESET, E_TIMEOUT, E_PARSE, E_UNSENT, N_EKINDS };
static const char *const ekind_names[] = {"reset/EOF", "timeout", "parse error", "unsent"};

/* --- options -------------------------------------------------------------------- */

static struct options {
    enum loadsys_kind system;
    enum workload workload;
    int conns[MAX_CONN_COUNTS];
    int n_conns;
    int pipeline;
    double rate; /* 0: closed loop */
    double seconds;
    bool seconds_given;
    uint64_t ops; /* 0: by duration */
    double warmup;
    int key_size;
    int value_size;
    uint64_t keys;
    uint64_t seed;
    int preload; /* -1: the workload's default */
    int preload_conns;
    double timeout;
    int watchers;
    bool target_leader;
    bool vs_etcd;
    uint64_t rss_keys; /* --rss-after-keys: 0 off */
    const char *ballastd;
    const char *etcd;
    const char *data_dir;
    bool keep;
    int base_port;
    char *server_args[LOADSYS_MAX_ARGS];
    int n_server_args;
    char *etcd_args[LOADSYS_MAX_ARGS];
    int n_etcd_args;
    const char *endpoints;
    const char *pids;
} opt;

/* --- per-run results ---------------------------------------------------------------- */

struct member_result {
    char name[24];
    pid_t pid;
    bool leader;
    double cpu_s; /* -1 unknown */
    long rss_kib, hwm_kib;
    long anon_kib, file_kib; /* RssAnon, RssFile at the end */
    int64_t disk_bytes;      /* -1 unknown */
};

struct result {
    enum loadsys_kind system;
    int conns;
    uint64_t ops; /* measured requests that ended: ok + errors */
    uint64_t ok;
    uint64_t errors;
    uint64_t by_status[600];
    uint64_t by_kind[N_EKINDS];
    uint64_t txn_failed; /* included in ok */
    uint64_t late;
    int64_t late_max_ns;
    uint64_t conn_refused, conn_failed, conn_closed;
    double elapsed_s;
    struct loadhist lat;
    struct loadhist by_op[N_OPS];
    /* watch */
    struct loadhist delay;
    uint64_t acked_puts; /* over the whole run, warmup included */
    uint64_t ev_expected, ev_received, ev_missed, ev_extra;
    uint64_t watch_errors;
    /* resources */
    int n_members;
    struct member_result m[LOADSYS_MAX_MEMBERS];
    double cpu_total; /* -1 unknown */
    double gen_user_s, gen_sys_s;
    /* preload */
    uint64_t preload_failed;
};

/* --- engine state ---------------------------------------------------------------- */

struct slot {
    uv_write_t wreq;
    char *buf;
    size_t len;
    int64_t sched_ns; /* open loop: scheduled start; closed loop: = sent_ns */
    int64_t sent_ns;
    uint32_t key;
    uint8_t op;
    bool measured;
    bool wpending; /* a uv_write of it has not called back yet */
};

enum cstate { C_CLOSED, C_CONNECTING, C_OPEN, C_CLOSING };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t retry;
    int index;
    int ep;
    enum cstate state;
    int64_t connect_ns;
    int backoff_ms;
    http_parser parser;
    struct slot *slots; /* opt pipeline of them, a ring from head */
    unsigned head, n_inflight;
    char *body; /* the current answer's body, up to body_cap bytes */
    size_t body_len;
    bool keep_body;
    bool closing_after; /* the server said Connection: close */
    char *rbuf;
};

struct watcher {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int ep;
    enum cstate state;
    bool open; /* its 200 head arrived */
    int64_t retry_at_ns;
    http_parser parser;
    int mpos; /* matched bytes of "value":" */
    int nb64; /* collected base64 bytes of a value's head */
    char b64[STAMP_B64];
    uint64_t events;
    char *rbuf;
};

struct endpoint {
    char addr[64];
    struct sockaddr_storage sa;
};

enum phase { PH_OPENING, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CATCHUP, PH_DONE };

/* What one run does. */
struct runspec {
    int conns;
    bool preload; /* put every key 0..keys-1 once; no warmup */
    bool progress;
    int watchers;
};

static struct engine {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_poll_t dispatch; /* open loop: the timerfd of the next scheduled send */
    int tfd;
    bool dispatch_armed;
    const struct runspec *spec;
    struct result *res;
    struct loadsys *sys;
    struct endpoint eps[LOADSYS_MAX_MEMBERS];
    int n_eps;
    struct conn *conns;
    int n_conns;
    struct watcher *watchers;
    int n_watchers;
    enum phase phase;
    int64_t t0, measure_start, measure_end, deadline, last_timeout_check;
    int64_t last_answer_ns; /* the last measured answer */
    uint64_t inflight;
    uint64_t measured_issued; /* closed loop */
    int64_t interval_ns;      /* open loop */
    uint64_t sched_next, sched_lo, sched_hi;
    unsigned rr;
    /* preload */
    uint64_t preload_next, preload_done, preload_retries_left;
    uint32_t *retry;
    size_t n_retry;
    int64_t last_progress_ns;
    uint64_t next_report;
    /* resources at the start of the measured phase */
    double cpu0[LOADSYS_MAX_MEMBERS];
    struct rusage ru0;
    bool failed;
    char errmsg[256];
} eng;

/* Workload data. */
static int64_t *last_rev; /* txn: the mod revision last seen per key (0: absent) */
static char *value_raw;   /* --value-size printable bytes */
static char *value_b64;   /* its base64 */
static size_t value_b64_len;
static size_t req_cap;  /* bytes of one request slot */
static size_t body_cap; /* bytes of an answer body kept */
static char *scratch;   /* a JSON body being built */
static uint64_t rng_state;
static volatile sig_atomic_t interrupted;
static struct loadsys *current_sys;    /* for the signal handler */
static char created[2][PATH_MAX - 64]; /* the cluster directories made */
static int n_created;

/* --- utilities ------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n). */
static uint64_t rng_below(uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next() * n) >> 64);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    if (current_sys != NULL) {
        loadsys_kill_all_unsafe(current_sys);
    }
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 (standard, padded) of @n bytes at @in into @out; returns its length. */
static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static int b64_value(char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* Decode @n (a multiple of 4, no padding) base64 bytes; -1 on a bad byte. */
static int b64_decode(const char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i + 3 < n; i += 4) {
        int a = b64_value(in[i]), b = b64_value(in[i + 1]), c = b64_value(in[i + 2]),
            d = b64_value(in[i + 3]);
        uint32_t v;
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            return -1;
        }
        v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        *out++ = (unsigned char)(v >> 16);
        *out++ = (unsigned char)(v >> 8);
        *out++ = (unsigned char)v;
    }
    return 0;
}

/* Append helpers for building requests. */
static char *cat(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define CATS(p, lit) cat((p), (lit), sizeof(lit) - 1)

static char *cat_str(char *p, const char *s)
{
    return cat(p, s, strlen(s));
}

static char *cat_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

/* The key of index @k: --key-size zero-padded decimal digits (after
 * "bench/" for the watch workload). */
static char *cat_key(char *p, uint64_t k)
{
    if (opt.workload == WL_WATCH) {
        p = CATS(p, WATCH_PREFIX);
    }
    for (int i = opt.key_size - 1; i >= 0; i--) {
        p[i] = (char)('0' + k % 10);
        k /= 10;
    }
    return p + opt.key_size;
}

static size_t key_len(void)
{
    return (size_t)opt.key_size + (opt.workload == WL_WATCH ? sizeof WATCH_PREFIX - 1 : 0);
}

/* Base64 of the key of index @k. */
static char *cat_key_b64(char *p, uint64_t k)
{
    char key[MAX_KEY_SIZE + 16];
    size_t n = (size_t)(cat_key(key, k) - key);
    return p + b64_encode((const unsigned char *)key, n, p);
}

/* Fill 20 digits at @p with @ns. */
static void put_stamp(char *p, int64_t ns)
{
    uint64_t v = (uint64_t)ns;
    for (int i = STAMP_DIGITS - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* --- building requests ------------------------------------------------------------ */

/* Write the head of a request with a body of @body_len bytes. */
static char *cat_head(char *p, const char *method_path, const char *host, size_t body_len)
{
    p = cat_str(p, method_path);
    p = CATS(p, " HTTP/1.1\r\nHost: ");
    p = cat_str(p, host);
    if (body_len > 0) {
        p = CATS(p, "\r\nContent-Type: application/json\r\nContent-Length: ");
        p = cat_u64(p, body_len);
    }
    return CATS(p, "\r\n\r\n");
}

/* The value of a put into @p: raw or base64, stamped for the watch workload. */
static char *cat_value(char *p, bool b64, int64_t stamp)
{
    if (!b64) {
        memcpy(p, value_raw, (size_t)opt.value_size);
        if (opt.workload == WL_WATCH) {
            put_stamp(p, stamp);
        }
        return p + opt.value_size;
    }
    memcpy(p, value_b64, value_b64_len);
    if (opt.workload == WL_WATCH) {
        unsigned char head[STAMP_DIGITS + 1];
        put_stamp((char *)head, stamp);
        head[STAMP_DIGITS] = (unsigned char)value_raw[STAMP_DIGITS];
        b64_encode(head, sizeof head, p);
    }
    return p + value_b64_len;
}

/* Build the request of @s (op, key) for endpoint @host into s->buf. */
static void build_request(struct slot *s, const char *host, int64_t stamp)
{
    char *p = s->buf, *b = scratch;
    int64_t rev = last_rev != NULL ? last_rev[s->key] : 0;

    if (opt.system == LOADSYS_BALLAST) {
        switch (s->op) {
        case OP_PUT:
            p = CATS(p, "PUT /v1/kv/");
            p = cat_key(p, s->key);
            p = CATS(p, " HTTP/1.1\r\nHost: ");
            p = cat_str(p, host);
            p = CATS(p, "\r\nContent-Length: ");
            p = cat_u64(p, (uint64_t)opt.value_size);
            p = CATS(p, "\r\n\r\n");
            p = cat_value(p, false, stamp);
            break;
        case OP_GET:
        case OP_GETSER:
            p = CATS(p, "GET /v1/kv/");
            p = cat_key(p, s->key);
            p = s->op == OP_GET ? CATS(p, "?raw") : CATS(p, "?raw&consistency=serializable");
            p = cat_head(p, "", host, 0);
            break;
        default: /* OP_TXN */
            b = CATS(b, "{\"compare\":[{\"key\":\"");
            b = cat_key_b64(b, s->key);
            b = rev > 0 ? CATS(b, "\",\"target\":\"mod\",\"op\":\"==\",\"number\":")
                        : CATS(b, "\",\"target\":\"create\",\"op\":\"==\",\"number\":");
            b = cat_u64(b, (uint64_t)rev);
            b = CATS(b, "}],\"success\":[{\"put\":{\"key\":\"");
            b = cat_key_b64(b, s->key);
            b = CATS(b, "\",\"value\":\"");
            b = cat_value(b, true, stamp);
            b = CATS(b, "\"}}],\"failure\":[{\"get\":{\"key\":\"");
            b = cat_key_b64(b, s->key);
            b = CATS(b, "\"}}]}");
            p = cat_head(p, "POST /v1/txn", host, (size_t)(b - scratch));
            p = cat(p, scratch, (size_t)(b - scratch));
            break;
        }
        s->len = (size_t)(p - s->buf);
        return;
    }
    /* etcd's JSON gateway */
    switch (s->op) {
    case OP_PUT:
        b = CATS(b, "{\"key\":\"");
        b = cat_key_b64(b, s->key);
        b = CATS(b, "\",\"value\":\"");
        b = cat_value(b, true, stamp);
        b = CATS(b, "\"}");
        p = cat_head(p, "POST /v3/kv/put", host, (size_t)(b - scratch));
        break;
    case OP_GET:
    case OP_GETSER:
        b = CATS(b, "{\"key\":\"");
        b = cat_key_b64(b, s->key);
        b = s->op == OP_GET ? CATS(b, "\"}") : CATS(b, "\",\"serializable\":true}");
        p = cat_head(p, "POST /v3/kv/range", host, (size_t)(b - scratch));
        break;
    default: /* OP_TXN */
        b = CATS(b, "{\"compare\":[{\"key\":\"");
        b = cat_key_b64(b, s->key);
        b = rev > 0 ? CATS(b, "\",\"target\":\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":\"")
                    : CATS(b, "\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
                              "\"create_revision\":\"");
        b = cat_u64(b, (uint64_t)rev);
        b = CATS(b, "\"}],\"success\":[{\"request_put\":{\"key\":\"");
        b = cat_key_b64(b, s->key);
        b = CATS(b, "\",\"value\":\"");
        b = cat_value(b, true, stamp);
        b = CATS(b, "\"}}],\"failure\":[{\"request_range\":{\"key\":\"");
        b = cat_key_b64(b, s->key);
        b = CATS(b, "\"}}]}");
        p = cat_head(p, "POST /v3/kv/txn", host, (size_t)(b - scratch));
        break;
    }
    p = cat(p, scratch, (size_t)(b - scratch));
    s->len = (size_t)(p - s->buf);
}

/* --- counting ------------------------------------------------------------------------ */

static bool counting(void)
{
    return eng.phase == PH_MEASURE || eng.phase == PH_DRAIN || eng.phase == PH_CATCHUP;
}

static void count_error(const struct slot *s, int status, enum ekind kind)
{
    if (eng.spec->preload && eng.retry != NULL) {
        if (eng.preload_retries_left > 0) {
            eng.preload_retries_left--;
            eng.retry[eng.n_retry++] = s->key; /* at most one slot per key is out */
        } else {
            eng.res->preload_failed++;
        }
    }
    if (!s->measured) {
        return;
    }
    eng.res->ops++;
    eng.res->errors++;
    if (status > 0) {
        eng.res->by_status[status < 600 ? status : 599]++;
    } else {
        eng.res->by_kind[kind]++;
    }
}

/* --- connections -------------------------------------------------------------------- */

static void conn_connect(struct conn *c);
static void conn_issue(struct conn *c);
static void dispatch_arm(int64_t now);

static void conn_retry_cb(uv_timer_t *t)
{
    conn_connect(t->data);
}

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->state = C_CLOSED;
    for (unsigned i = 0; i < (unsigned)opt.pipeline; i++) {
        c->slots[i].wpending = false;
    }
    if (eng.phase <= PH_DRAIN) {
        uv_timer_start(&c->retry, conn_retry_cb, (uint64_t)c->backoff_ms, 0);
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
}

/* Close @c; every request in flight on it ends as an error of @kind. */
static void conn_fail(struct conn *c, enum ekind kind)
{
    if (c->state == C_CLOSING || c->state == C_CLOSED) {
        return;
    }
    while (c->n_inflight > 0) {
        struct slot *s = &c->slots[c->head];
        count_error(s, 0, kind);
        c->head = (c->head + 1) % (unsigned)opt.pipeline;
        c->n_inflight--;
        eng.inflight--;
    }
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct slot *s = req->data;
    struct conn *c = req->handle->data;
    s->wpending = false;
    if (status < 0) {
        conn_fail(c, E_RESET);
        return;
    }
    conn_issue(c);
}

/* The next request to send, if any: its key, op, scheduled time and whether
 * it is measured. */
static bool next_request(struct slot *s, int64_t now)
{
    if (eng.spec->preload) {
        if (eng.n_retry > 0) {
            s->key = eng.retry[--eng.n_retry];
        } else if (eng.preload_next < opt.keys) {
            s->key = (uint32_t)eng.preload_next++;
        } else {
            return false;
        }
        s->op = OP_PUT;
        s->sched_ns = now;
        s->measured = true;
        return true;
    }
    if (opt.rate > 0) {
        uint64_t due;
        if (eng.phase < PH_WARMUP || eng.phase > PH_DRAIN || eng.sched_next >= eng.sched_hi) {
            return false;
        }
        due = (uint64_t)((now - eng.t0) / eng.interval_ns) + 1;
        if (eng.sched_next >= due) {
            return false;
        }
        s->sched_ns = eng.t0 + (int64_t)eng.sched_next * eng.interval_ns;
        s->measured = eng.sched_next >= eng.sched_lo;
        eng.sched_next++;
    } else {
        if (eng.phase != PH_WARMUP && eng.phase != PH_MEASURE) {
            return false;
        }
        s->sched_ns = now;
        s->measured = eng.phase == PH_MEASURE;
        if (s->measured && ++eng.measured_issued >= opt.ops && opt.ops > 0) {
            eng.phase = PH_DRAIN; /* this one is the last */
            eng.measure_end = now;
            eng.deadline = now + (int64_t)(opt.timeout * NS) + NS;
        }
    }
    s->key = (uint32_t)rng_below(opt.keys);
    switch (opt.workload) {
    case WL_GET:
        s->op = OP_GET;
        break;
    case WL_GETSER:
        s->op = OP_GETSER;
        break;
    case WL_MIXED:
        s->op = rng_below(10) == 0 ? OP_PUT : OP_GET;
        break;
    case WL_TXN:
        s->op = OP_TXN;
        break;
    default:
        s->op = OP_PUT;
        break;
    }
    return true;
}

static bool conn_can_send(const struct conn *c)
{
    unsigned tail = (c->head + c->n_inflight) % (unsigned)opt.pipeline;
    return c->state == C_OPEN && !c->closing_after && c->n_inflight < (unsigned)opt.pipeline &&
           !c->slots[tail].wpending;
}

/* Send requests on @c while it has room and there is something to send. */
static void conn_issue(struct conn *c)
{
    while (conn_can_send(c)) {
        unsigned tail = (c->head + c->n_inflight) % (unsigned)opt.pipeline;
        struct slot *s = &c->slots[tail];
        int64_t now = now_ns();
        uv_buf_t buf;
        int n;

        if (!next_request(s, now)) {
            return;
        }
        s->sent_ns = now;
        build_request(s, eng.eps[c->ep].addr, now);
        if (opt.rate > 0 && s->measured && now - s->sched_ns > LATE_NS) {
            eng.res->late++;
            if (now - s->sched_ns > eng.res->late_max_ns) {
                eng.res->late_max_ns = now - s->sched_ns;
            }
        }
        c->n_inflight++;
        eng.inflight++;
        buf = uv_buf_init(s->buf, (unsigned)s->len);
        n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (n == (int)s->len) {
            continue;
        }
        if (n < 0 && n != UV_EAGAIN) {
            conn_fail(c, E_RESET);
            return;
        }
        if (n > 0) {
            buf = uv_buf_init(s->buf + n, (unsigned)(s->len - (size_t)n));
        }
        s->wreq.data = s;
        s->wpending = true;
        if (uv_write(&s->wreq, (uv_stream_t *)&c->tcp, &buf, 1, conn_write_cb) != 0) {
            s->wpending = false;
            conn_fail(c, E_RESET);
            return;
        }
    }
}

/* A whole answer with @status arrived for the oldest request on @c. */
static void conn_answer(struct conn *c, int status, int64_t now)
{
    struct slot *s = &c->slots[c->head];
    const char *body = c->body;
    size_t len = c->body_len;
    bool ok = status >= 200 && status < 300;
    uint64_t rev = 0;

    c->head = (c->head + 1) % (unsigned)opt.pipeline;
    c->n_inflight--;
    eng.inflight--;
    c->backoff_ms = BACKOFF_MIN_MS;
    if (ok && (s->op == OP_GET || s->op == OP_GETSER) && opt.system == LOADSYS_ETCD &&
        memmem(body, len, "\"kvs\":", 6) == NULL) {
        ok = false;
        status = 404; /* etcd answers an absent key with an empty range */
    }
    if (!ok) {
        count_error(s, status, E_PARSE);
        return;
    }
    if (s->op == OP_PUT) {
        eng.res->acked_puts++;
        if (last_rev != NULL && loadsys_json_u64(body, len, "revision", &rev)) {
            last_rev[s->key] = (int64_t)rev;
        }
    } else if (s->op == OP_TXN) {
        bool succeeded = memmem(body, len, "\"succeeded\":true", 16) != NULL;
        if (succeeded) {
            if (loadsys_json_u64(body, len, "revision", &rev)) {
                last_rev[s->key] = (int64_t)rev;
            }
        } else {
            last_rev[s->key] = loadsys_json_u64(body, len, "mod_revision", &rev) ? (int64_t)rev : 0;
            if (s->measured) {
                eng.res->txn_failed++;
            }
        }
    }
    if (eng.spec->preload) {
        eng.preload_done++;
        eng.last_progress_ns = now;
        if (eng.spec->progress && eng.preload_done >= eng.next_report) {
            fprintf(stderr, "load: %" PRIu64 " keys loaded in %.1f s\n", eng.preload_done,
                    (double)(now - eng.t0) / 1e9);
            eng.next_report += 100000;
        }
    }
    if (!s->measured) {
        return;
    }
    eng.res->ops++;
    eng.res->ok++;
    eng.last_answer_ns = now;
    loadhist_record(&eng.res->lat, now - s->sched_ns);
    loadhist_record(&eng.res->by_op[s->op], now - s->sched_ns);
}

static int conn_begin_cb(http_parser *p)
{
    struct conn *c = p->data;
    c->body_len = 0;
    c->keep_body = false;
    if (c->n_inflight == 0) {
        return -1; /* an answer nobody asked for */
    }
    return 0;
}

static int conn_headers_cb(http_parser *p)
{
    struct conn *c = p->data;
    const struct slot *s = &c->slots[c->head];
    c->keep_body =
        s->op == OP_TXN || (s->op == OP_PUT && last_rev != NULL) || opt.system == LOADSYS_ETCD;
    return 0;
}

static int conn_body_cb(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->keep_body) {
        size_t room = body_cap - c->body_len;
        len = len < room ? len : room;
        memcpy(c->body + c->body_len, at, len);
        c->body_len += len;
    }
    return 0;
}

static int conn_complete_cb(http_parser *p)
{
    struct conn *c = p->data;
    if (!http_should_keep_alive(p)) {
        c->closing_after = true;
    }
    conn_answer(c, (int)p->status_code, now_ns());
    return 0;
}

static const http_parser_settings conn_parser_settings = {
    .on_message_begin = conn_begin_cb,
    .on_headers_complete = conn_headers_cb,
    .on_body = conn_body_cb,
    .on_message_complete = conn_complete_cb,
};

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->rbuf, READ_BUF);
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    size_t done;

    if (nread == 0 || c->state != C_OPEN) {
        return;
    }
    if (nread < 0) {
        if (counting()) {
            eng.res->conn_closed++;
        }
        conn_fail(c, E_RESET);
        return;
    }
    done = http_parser_execute(&c->parser, &conn_parser_settings, buf->base, (size_t)nread);
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || done != (size_t)nread) {
        conn_fail(c, E_PARSE);
        return;
    }
    if (c->closing_after) {
        conn_fail(c, E_RESET);
        return;
    }
    conn_issue(c);
    if (opt.rate > 0) {
        dispatch_arm(now_ns());
    }
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != C_CONNECTING) {
        return; /* closed meanwhile (timeout) */
    }
    if (status < 0) {
        if (counting()) {
            if (status == UV_ECONNREFUSED) {
                eng.res->conn_refused++;
            } else {
                eng.res->conn_failed++;
            }
        }
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
        return;
    }
    c->state = C_OPEN;
    c->closing_after = false;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) != 0) {
        conn_fail(c, E_RESET);
        return;
    }
    conn_issue(c);
}

static void conn_connect(struct conn *c)
{
    const struct endpoint *ep = &eng.eps[c->ep];
    if (c->state != C_CLOSED || eng.phase > PH_DRAIN) {
        return;
    }
    uv_tcp_init(&eng.loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->state = C_CONNECTING;
    c->connect_ns = now_ns();
    c->head = 0;
    c->n_inflight = 0;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ep->sa, conn_connect_cb) != 0) {
        if (counting()) {
            eng.res->conn_failed++;
        }
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    }
}

/* --- watchers ---------------------------------------------------------------------------- */

static void watcher_close_cb(uv_handle_t *h)
{
    struct watcher *w = h->data;
    w->state = C_CLOSED;
}

static void watcher_fail(struct watcher *w)
{
    if (w->state == C_CLOSING || w->state == C_CLOSED) {
        return;
    }
    eng.res->watch_errors++;
    w->open = false;
    w->state = C_CLOSING;
    w->retry_at_ns = now_ns() + 100 * 1000000LL;
    uv_close((uv_handle_t *)&w->tcp, watcher_close_cb);
}

/* One value head (base64 of its first 21 bytes) of a put event arrived. */
static void watcher_event(struct watcher *w, int64_t now)
{
    unsigned char head[STAMP_DIGITS + 1];
    int64_t sent = 0;

    w->events++;
    if (b64_decode(w->b64, STAMP_B64, head) != 0) {
        return;
    }
    for (int i = 0; i < STAMP_DIGITS; i++) {
        if (head[i] < '0' || head[i] > '9') {
            return;
        }
        sent = sent * 10 + (head[i] - '0');
    }
    if (sent >= eng.measure_start && eng.measure_start > 0 &&
        (eng.measure_end == 0 || sent < eng.measure_end)) {
        loadhist_record(&eng.res->delay, now - sent);
    }
}

static int watcher_headers_cb(http_parser *p)
{
    struct watcher *w = p->data;
    if (p->status_code != 200) {
        return -1;
    }
    w->open = true;
    return 0;
}

/* Scan the stream for "value":" and the base64 after it: one per put event,
 * in ballast's NDJSON and in etcd's JSON stream alike. */
static int watcher_body_cb(http_parser *p, const char *at, size_t len)
{
    static const char pat[] = "\"value\":\"";
    struct watcher *w = p->data;
    int64_t now = 0;

    for (size_t i = 0; i < len; i++) {
        char ch = at[i];
        if (w->mpos == (int)sizeof pat - 1) {
            if (ch == '"') {
                w->mpos = 0; /* a value shorter than the stamp: not ours */
                continue;
            }
            w->b64[w->nb64++] = ch;
            if (w->nb64 == STAMP_B64) {
                now = now ? now : now_ns();
                watcher_event(w, now);
                w->mpos = 0;
            }
            continue;
        }
        if (ch == pat[w->mpos]) {
            w->mpos++;
            w->nb64 = 0;
        } else {
            w->mpos = ch == '"' ? 1 : 0;
        }
    }
    return 0;
}

static int watcher_complete_cb(http_parser *p)
{
    (void)p;
    return -1; /* the stream ended */
}

static const http_parser_settings watcher_parser_settings = {
    .on_headers_complete = watcher_headers_cb,
    .on_body = watcher_body_cb,
    .on_message_complete = watcher_complete_cb,
};

static void watcher_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct watcher *w = h->data;
    (void)suggested;
    *buf = uv_buf_init(w->rbuf, READ_BUF);
}

static void watcher_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct watcher *w = st->data;
    if (nread == 0 || w->state != C_OPEN) {
        return;
    }
    if (nread < 0) {
        watcher_fail(w);
        return;
    }
    http_parser_execute(&w->parser, &watcher_parser_settings, buf->base, (size_t)nread);
    if (HTTP_PARSER_ERRNO(&w->parser) != HPE_OK) {
        watcher_fail(w);
    }
}

static void watcher_write_cb(uv_write_t *req, int status)
{
    struct watcher *w = req->data;
    free(req);
    if (status < 0) {
        watcher_fail(w);
    }
}

static void watcher_connect_cb(uv_connect_t *req, int status)
{
    struct watcher *w = req->data;
    const char *host = eng.eps[w->ep].addr;
    uv_write_t *wr;
    char *p, body[256], *b = body;
    uv_buf_t buf;

    if (w->state != C_CONNECTING) {
        return;
    }
    if (status < 0) {
        w->state = C_OPEN; /* so that watcher_fail closes it */
        watcher_fail(w);
        return;
    }
    w->state = C_OPEN;
    http_parser_init(&w->parser, HTTP_RESPONSE);
    w->parser.data = w;
    w->mpos = 0;
    wr = malloc(sizeof *wr + 1024); /* once per (re)connection, not per request */
    if (wr == NULL) {
        watcher_fail(w);
        return;
    }
    p = (char *)(wr + 1);
    buf.base = p;
    if (opt.system == LOADSYS_BALLAST) {
        p = cat_head(p, "GET /v1/watch/" WATCH_PREFIX "?prefix", host, 0);
    } else {
        b = CATS(b, "{\"create_request\":{\"key\":\"");
        b += b64_encode((const unsigned char *)WATCH_PREFIX, sizeof WATCH_PREFIX - 1, b);
        b = CATS(b, "\",\"range_end\":\"");
        /* the prefix with its last byte raised by one: "bench0" */
        b += b64_encode((const unsigned char *)"bench0", 6, b);
        b = CATS(b, "\"}}");
        p = cat_head(p, "POST /v3/watch", host, (size_t)(b - body));
        p = cat(p, body, (size_t)(b - body));
    }
    buf.len = (size_t)(p - buf.base);
    wr->data = w;
    uv_tcp_nodelay(&w->tcp, 1);
    if (uv_read_start((uv_stream_t *)&w->tcp, watcher_alloc_cb, watcher_read_cb) != 0 ||
        uv_write(wr, (uv_stream_t *)&w->tcp, &buf, 1, watcher_write_cb) != 0) {
        free(wr);
        watcher_fail(w);
    }
}

static void watcher_connect(struct watcher *w)
{
    uv_tcp_init(&eng.loop, &w->tcp);
    w->tcp.data = w;
    w->creq.data = w;
    w->state = C_CONNECTING;
    if (uv_tcp_connect(&w->creq, &w->tcp, (const struct sockaddr *)&eng.eps[w->ep].sa,
                       watcher_connect_cb) != 0) {
        w->state = C_OPEN;
        watcher_fail(w);
    }
}

/* --- phases --------------------------------------------------------------------------- */

static void sample_start(void)
{
    for (int i = 0; i < eng.sys->n; i++) {
        eng.cpu0[i] = loadsys_cpu_s(eng.sys->m[i].pid);
    }
    getrusage(RUSAGE_SELF, &eng.ru0);
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void sample_end(void)
{
    struct result *r = eng.res;
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    r->gen_user_s = tv_s(ru.ru_utime) - tv_s(eng.ru0.ru_utime);
    r->gen_sys_s = tv_s(ru.ru_stime) - tv_s(eng.ru0.ru_stime);
    r->n_members = eng.sys->n;
    r->cpu_total = 0;
    for (int i = 0; i < eng.sys->n; i++) {
        struct member_result *m = &r->m[i];
        double cpu = loadsys_cpu_s(eng.sys->m[i].pid);
        snprintf(m->name, sizeof m->name, "%s", eng.sys->m[i].name);
        m->pid = eng.sys->m[i].pid;
        m->cpu_s = cpu >= 0 && eng.cpu0[i] >= 0 ? cpu - eng.cpu0[i] : -1;
        loadsys_mem_kib(m->pid, &m->rss_kib, &m->hwm_kib);
        loadsys_rss_split_kib(m->pid, &m->anon_kib, &m->file_kib);
        m->disk_bytes = eng.sys->started ? loadsys_du(eng.sys->m[i].dir) : -1;
        if (m->cpu_s < 0) {
            r->cpu_total = -1;
        } else if (r->cpu_total >= 0) {
            r->cpu_total += m->cpu_s;
        }
    }
}

static void start_measure(int64_t now)
{
    eng.phase = PH_MEASURE;
    eng.measure_start =
        opt.rate > 0 && !eng.spec->preload ? eng.t0 + (int64_t)eng.sched_lo * eng.interval_ns : now;
    sample_start();
}

static void start_drain(int64_t now)
{
    eng.phase = PH_DRAIN;
    eng.measure_end = now;
    eng.deadline = now + (int64_t)(opt.timeout * NS) + NS;
}

static void engine_shutdown(void);

static bool open_loop_sending(void)
{
    return opt.rate > 0 && !eng.spec->preload && eng.phase >= PH_WARMUP && eng.phase <= PH_DRAIN &&
           eng.sched_next < eng.sched_hi;
}

/* Open loop: arm the timerfd for the next scheduled request, unless requests
 * are already due (then an answer freeing a slot sends them) or it is armed. */
static void dispatch_arm(int64_t now)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    int64_t t;

    if (eng.dispatch_armed || !open_loop_sending()) {
        return;
    }
    t = eng.t0 + (int64_t)eng.sched_next * eng.interval_ns;
    if (t <= now) {
        return;
    }
    its.it_value.tv_sec = t / NS;
    its.it_value.tv_nsec = t % NS;
    if (timerfd_settime(eng.tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
        eng.dispatch_armed = true;
    }
}

/* Open loop: hand the due requests to free connections, round-robin. */
static void dispatch_due(int64_t now)
{
    if (!open_loop_sending()) {
        return;
    }
    for (int k = 0; k < eng.n_conns && eng.sched_next < eng.sched_hi; k++) {
        struct conn *c = &eng.conns[eng.rr];
        eng.rr = (eng.rr + 1) % (unsigned)eng.n_conns;
        if (conn_can_send(c)) {
            conn_issue(c);
            if ((uint64_t)((now - eng.t0) / eng.interval_ns) + 1 <= eng.sched_next) {
                break; /* nothing more is due */
            }
        }
    }
    dispatch_arm(now);
}

static void dispatch_cb(uv_poll_t *h, int status, int events)
{
    uint64_t expirations;
    (void)h;
    (void)status;
    (void)events;
    if (read(eng.tfd, &expirations, sizeof expirations) < 0) {
        /* EAGAIN: nothing expired after all */
    }
    eng.dispatch_armed = false;
    dispatch_due(now_ns());
}

/* Every millisecond: phase changes, open-loop sends, timeouts, the end. */
static void tick_cb(uv_timer_t *t)
{
    int64_t now = now_ns();
    (void)t;

    if (interrupted) {
        eng.failed = true;
        snprintf(eng.errmsg, sizeof eng.errmsg, "interrupted");
        engine_shutdown();
        return;
    }
    switch (eng.phase) {
    case PH_OPENING: {
        int open = 0;
        for (int i = 0; i < eng.n_watchers; i++) {
            struct watcher *w = &eng.watchers[i];
            open += w->open;
            if (w->state == C_CLOSED && now >= w->retry_at_ns) {
                watcher_connect(w);
            }
        }
        if (open == eng.n_watchers) {
            eng.phase = PH_WARMUP;
            eng.t0 = now;
            for (int i = 0; i < eng.n_conns; i++) {
                conn_connect(&eng.conns[i]);
            }
        } else if (now > eng.deadline) {
            eng.failed = true;
            snprintf(eng.errmsg, sizeof eng.errmsg, "only %d of %d watchers open after %d s", open,
                     eng.n_watchers, OPEN_MS / 1000);
            engine_shutdown();
            return;
        }
        break;
    }
    case PH_WARMUP:
        if (now >= eng.t0 + (int64_t)(opt.warmup * NS)) {
            start_measure(now);
        }
        break;
    case PH_MEASURE:
        if (eng.spec->preload) {
            if (eng.preload_next >= opt.keys && eng.n_retry == 0) {
                start_drain(now);
            } else if (now - eng.last_progress_ns > (int64_t)(opt.timeout * NS) + NS) {
                eng.failed = true;
                snprintf(eng.errmsg, sizeof eng.errmsg,
                         "preload: no put acknowledged for %.0f s (%" PRIu64 " of %" PRIu64
                         " done)",
                         opt.timeout + 1, eng.preload_done, opt.keys);
                engine_shutdown();
                return;
            }
        } else if ((opt.rate > 0 && now >= eng.t0 + (int64_t)eng.sched_hi * eng.interval_ns) ||
                   (opt.rate <= 0 && now >= eng.measure_start + (int64_t)(opt.seconds * NS))) {
            start_drain(now);
        }
        break;
    default:
        break;
    }
    dispatch_due(now);
    /* Request and connect timeouts. */
    if (now - eng.last_timeout_check >= TIMEOUT_CHECK_NS) {
        int64_t limit = (int64_t)(opt.timeout * NS);
        eng.last_timeout_check = now;
        for (int i = 0; i < eng.n_conns; i++) {
            struct conn *c = &eng.conns[i];
            if (c->state == C_OPEN && c->n_inflight > 0 &&
                now - c->slots[c->head].sent_ns > limit) {
                conn_fail(c, E_TIMEOUT);
            } else if (c->state == C_CONNECTING && now - c->connect_ns > limit) {
                if (counting()) {
                    eng.res->conn_failed++;
                }
                c->state = C_CLOSING;
                uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
            }
        }
    }
    if (eng.phase >= PH_WARMUP && eng.phase <= PH_CATCHUP) {
        for (int i = 0; i < eng.n_watchers; i++) {
            struct watcher *w = &eng.watchers[i];
            if (w->state == C_CLOSED && now >= w->retry_at_ns) {
                watcher_connect(w);
            }
        }
    }
    if (eng.phase == PH_DRAIN) {
        bool unsent = (opt.rate > 0 && !eng.spec->preload && eng.sched_next < eng.sched_hi) ||
                      eng.n_retry > 0;
        if ((eng.inflight == 0 && !unsent) || now > eng.deadline) {
            /* Whatever is still out or unsent by now ends as an error. */
            for (int i = 0; i < eng.n_conns; i++) {
                if (eng.conns[i].n_inflight > 0) {
                    conn_fail(&eng.conns[i], E_TIMEOUT);
                }
            }
            eng.res->preload_failed += eng.n_retry; /* preload: keys never put */
            eng.n_retry = 0;
            if (unsent && opt.rate > 0 && !eng.spec->preload) {
                uint64_t from = eng.sched_next > eng.sched_lo ? eng.sched_next : eng.sched_lo;
                eng.res->by_kind[E_UNSENT] += eng.sched_hi - from;
                eng.res->errors += eng.sched_hi - from;
                eng.res->ops += eng.sched_hi - from;
                eng.sched_next = eng.sched_hi;
            }
            sample_end();
            eng.phase = eng.n_watchers > 0 ? PH_CATCHUP : PH_DONE;
            eng.deadline = now + (int64_t)(opt.timeout * NS);
        }
    }
    if (eng.phase == PH_CATCHUP) {
        bool all = true;
        for (int i = 0; i < eng.n_watchers && all; i++) {
            all = eng.watchers[i].events >= eng.res->acked_puts;
        }
        if (all || now > eng.deadline) {
            eng.phase = PH_DONE;
        }
    }
    if (eng.phase == PH_DONE) {
        engine_shutdown();
    }
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void engine_shutdown(void)
{
    eng.phase = PH_DONE;
    close_if_open((uv_handle_t *)&eng.tick);
    close_if_open((uv_handle_t *)&eng.dispatch);
    for (int i = 0; i < eng.n_conns; i++) {
        struct conn *c = &eng.conns[i];
        close_if_open((uv_handle_t *)&c->retry);
        if (c->state == C_OPEN || c->state == C_CONNECTING) {
            c->state = C_CLOSING;
            uv_close((uv_handle_t *)&c->tcp, NULL);
        }
    }
    for (int i = 0; i < eng.n_watchers; i++) {
        struct watcher *w = &eng.watchers[i];
        if (w->state == C_OPEN || w->state == C_CONNECTING) {
            w->state = C_CLOSING;
            uv_close((uv_handle_t *)&w->tcp, NULL);
        }
    }
}

/* The endpoints of @sys for this run: all members, or the leader alone. */
static int resolve_endpoints(struct loadsys *sys, char *err, size_t n)
{
    int leader = -1;
    eng.n_eps = 0;
    if (opt.target_leader) {
        leader = loadsys_leader(sys);
        if (leader < 0) {
            snprintf(err, n, "no member says it is the leader");
            return -1;
        }
    }
    for (int i = 0; i < sys->n; i++) {
        struct endpoint *ep = &eng.eps[eng.n_eps];
        if (leader >= 0 && i != leader) {
            continue;
        }
        snprintf(ep->addr, sizeof ep->addr, "%s", sys->m[i].client);
        if (loadsys_resolve(ep->addr, &ep->sa, err, n) != 0) {
            return -1;
        }
        eng.n_eps++;
    }
    return 0;
}

/* One run of @spec against @sys into @res. Returns 0, or -1 with a message
 * in @err (setup failure, interruption, a stalled preload). */
static int run(struct loadsys *sys, const struct runspec *spec, struct result *res, char *err,
               size_t err_len)
{
    int rv = -1;
    int n_conns = spec->conns;
    char *slab = NULL;

    memset(&eng, 0, sizeof eng);
    memset(res, 0, sizeof *res);
    res->system = sys->kind;
    res->conns = n_conns;
    res->cpu_total = -1;
    eng.spec = spec;
    eng.res = res;
    eng.sys = sys;
    if (resolve_endpoints(sys, err, err_len) != 0) {
        return -1;
    }
    eng.conns = calloc((size_t)n_conns, sizeof *eng.conns);
    eng.watchers = calloc((size_t)(spec->watchers + 1), sizeof *eng.watchers);
    slab = malloc((size_t)n_conns * ((size_t)opt.pipeline * (req_cap + sizeof(struct slot)) +
                                     body_cap + READ_BUF) +
                  (size_t)spec->watchers * READ_BUF);
    if (eng.conns == NULL || eng.watchers == NULL || slab == NULL) {
        snprintf(err, err_len, "out of memory for %d connections", n_conns);
        goto out;
    }
    if (spec->preload) {
        eng.retry = malloc((size_t)opt.keys * sizeof *eng.retry);
        if (eng.retry == NULL) {
            snprintf(err, err_len, "out of memory");
            goto out;
        }
        eng.preload_retries_left = opt.keys + 1000;
    }
    eng.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (eng.tfd < 0) {
        snprintf(err, err_len, "timerfd_create: %s", strerror(errno));
        goto out;
    }
    if (uv_loop_init(&eng.loop) != 0) {
        snprintf(err, err_len, "uv_loop_init failed");
        goto out;
    }
    if (uv_poll_init(&eng.loop, &eng.dispatch, eng.tfd) != 0) {
        snprintf(err, err_len, "uv_poll_init of a timerfd failed");
        uv_loop_close(&eng.loop);
        goto out;
    }
    uv_poll_start(&eng.dispatch, UV_READABLE, dispatch_cb);
    {
        char *p = slab;
        for (int i = 0; i < n_conns; i++) {
            struct conn *c = &eng.conns[i];
            c->index = i;
            c->ep = i % eng.n_eps;
            c->state = C_CLOSED;
            c->backoff_ms = BACKOFF_MIN_MS;
            c->slots = (struct slot *)(void *)p;
            p += (size_t)opt.pipeline * sizeof(struct slot);
            memset(c->slots, 0, (size_t)opt.pipeline * sizeof(struct slot));
            for (int k = 0; k < opt.pipeline; k++) {
                c->slots[k].buf = p;
                p += req_cap;
            }
            c->body = p;
            p += body_cap;
            c->rbuf = p;
            p += READ_BUF;
            uv_timer_init(&eng.loop, &c->retry);
            c->retry.data = c;
        }
        for (int i = 0; i < spec->watchers; i++) {
            struct watcher *w = &eng.watchers[i];
            w->ep = i % eng.n_eps;
            w->state = C_CLOSED;
            w->rbuf = p;
            p += READ_BUF;
        }
    }
    eng.n_conns = n_conns;
    eng.n_watchers = spec->watchers;
    if (opt.rate > 0 && !spec->preload) {
        eng.interval_ns = (int64_t)((double)NS / opt.rate);
        eng.interval_ns = eng.interval_ns > 0 ? eng.interval_ns : 1;
        eng.sched_lo =
            (uint64_t)((opt.warmup * NS + (double)eng.interval_ns - 1) / (double)eng.interval_ns);
        eng.sched_hi =
            eng.sched_lo +
            (opt.ops > 0 ? opt.ops : (uint64_t)(opt.seconds * NS / (double)eng.interval_ns));
    }
    uv_timer_init(&eng.loop, &eng.tick);
    eng.phase = PH_OPENING;
    eng.deadline = now_ns() + (int64_t)OPEN_MS * 1000000LL;
    eng.last_progress_ns = now_ns();
    eng.next_report = 100000;
    if (spec->preload) {
        /* No warmup: everything is measured, from the start. */
        eng.phase = PH_WARMUP;
        eng.t0 = now_ns();
        start_measure(eng.t0);
        for (int i = 0; i < n_conns; i++) {
            conn_connect(&eng.conns[i]);
        }
    } else {
        for (int i = 0; i < spec->watchers; i++) {
            watcher_connect(&eng.watchers[i]);
        }
    }
    uv_timer_start(&eng.tick, tick_cb, TICK_MS, TICK_MS);
    uv_run(&eng.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&eng.loop) != 0) {
        fprintf(stderr, "load: warning: handles left open at the end of a run\n");
    }
    if (eng.failed) {
        snprintf(err, err_len, "%s", eng.errmsg);
        goto out;
    }
    res->elapsed_s =
        (double)((eng.last_answer_ns > eng.measure_end ? eng.last_answer_ns : eng.measure_end) -
                 eng.measure_start) /
        1e9;
    if (spec->watchers > 0) {
        res->ev_expected = res->acked_puts * (uint64_t)spec->watchers;
        for (int i = 0; i < spec->watchers; i++) {
            uint64_t got = eng.watchers[i].events;
            res->ev_received += got;
            if (got < res->acked_puts) {
                res->ev_missed += res->acked_puts - got;
            } else {
                res->ev_extra += got - res->acked_puts;
            }
        }
    }
    rv = 0;
out:
    if (eng.tfd > 0) {
        close(eng.tfd);
    }
    free(eng.retry);
    free(slab);
    free(eng.conns);
    free(eng.watchers);
    return rv;
}

/* --- reports -------------------------------------------------------------------------- */

static double us(int64_t ns)
{
    return (double)ns / 1000.0;
}

static const char *fmt_kib(char *buf, size_t n, long kib)
{
    if (kib < 0) {
        snprintf(buf, n, "-");
    } else {
        snprintf(buf, n, "%.1f MiB", (double)kib / 1024.0);
    }
    return buf;
}

static long max_hwm(const struct result *r)
{
    long m = -1;
    for (int i = 0; i < r->n_members; i++) {
        m = r->m[i].hwm_kib > m ? r->m[i].hwm_kib : m;
    }
    return m;
}

static long max_rss(const struct result *r)
{
    long m = -1;
    for (int i = 0; i < r->n_members; i++) {
        m = r->m[i].rss_kib > m ? r->m[i].rss_kib : m;
    }
    return m;
}

static long max_anon(const struct result *r)
{
    long m = -1;
    for (int i = 0; i < r->n_members; i++) {
        m = r->m[i].anon_kib > m ? r->m[i].anon_kib : m;
    }
    return m;
}

static int64_t total_disk(const struct result *r)
{
    int64_t t = 0;
    for (int i = 0; i < r->n_members; i++) {
        if (r->m[i].disk_bytes < 0) {
            return -1;
        }
        t += r->m[i].disk_bytes;
    }
    return r->n_members ? t : -1;
}

static double cpu_per_1k(const struct result *r)
{
    return r->cpu_total >= 0 && r->ops > 0 ? r->cpu_total / (double)r->ops * 1000.0 : -1;
}

/* Throughput: successful requests per second of the measured phase. */
static double ops_s(const struct result *r)
{
    return r->elapsed_s > 0 ? (double)r->ok / r->elapsed_s : 0;
}

static void print_hist(const char *label, const struct loadhist *h)
{
    printf("%-10s n=%" PRIu64 " mean %.0f  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f "
           "(us)\n",
           label, h->count, loadhist_mean(h) / 1000.0, us(loadhist_quantile(h, 0.5)),
           us(loadhist_quantile(h, 0.9)), us(loadhist_quantile(h, 0.99)),
           us(loadhist_quantile(h, 0.999)), us(h->max_ns));
}

static void print_members(const struct result *r)
{
    char a[32], b[32];
    if (r->n_members == 0) {
        return;
    }
    printf("%-10s %8s %9s %12s %12s %12s %12s %12s\n", "member", "pid", "cpu-s", "VmRSS", "VmHWM",
           "RssAnon", "RssFile", "data dir");
    for (int i = 0; i < r->n_members; i++) {
        const struct member_result *m = &r->m[i];
        char cpu[32], disk[32];
        if (m->cpu_s < 0) {
            snprintf(cpu, sizeof cpu, "-");
        } else {
            snprintf(cpu, sizeof cpu, "%.2f", m->cpu_s);
        }
        if (m->disk_bytes < 0) {
            snprintf(disk, sizeof disk, "-");
        } else {
            snprintf(disk, sizeof disk, "%.1f MiB", (double)m->disk_bytes / 1048576.0);
        }
        char c[32], d[32];
        printf("%-10s %8d %9s %12s %12s %12s %12s %12s\n", m->name, (int)m->pid, cpu,
               fmt_kib(a, sizeof a, m->rss_kib), fmt_kib(b, sizeof b, m->hwm_kib),
               fmt_kib(c, sizeof c, m->anon_kib), fmt_kib(d, sizeof d, m->file_kib), disk);
    }
    if (r->cpu_total >= 0) {
        printf("%-10s %8s %9.2f   => %.3f member cpu-s per 1000 ops\n", "total", "", r->cpu_total,
               cpu_per_1k(r));
    } else {
        printf("member CPU: unknown (no pids; give --pids with --endpoints)\n");
    }
}

static void print_errors(const struct result *r)
{
    bool any = false;
    printf("errors     ");
    for (int s = 0; s < 600; s++) {
        if (r->by_status[s]) {
            printf("%sHTTP %d: %" PRIu64, any ? ", " : "", s, r->by_status[s]);
            any = true;
        }
    }
    for (int k = 0; k < N_EKINDS; k++) {
        if (r->by_kind[k]) {
            printf("%s%s: %" PRIu64, any ? ", " : "", ekind_names[k], r->by_kind[k]);
            any = true;
        }
    }
    printf("%s\n", any ? "" : "none");
    printf("connects   refused %" PRIu64 ", failed otherwise %" PRIu64
           ", closed by the server %" PRIu64 " (measured phase)\n",
           r->conn_refused, r->conn_failed, r->conn_closed);
}

static void print_report(const struct result *r, const char *cluster_note)
{
    bool multi = false;
    int kinds = 0;

    printf("\n--- %s %s: %d connection%s x pipeline %d, ", loadsys_name(r->system),
           workload_names[opt.workload], r->conns, r->conns == 1 ? "" : "s", opt.pipeline);
    if (opt.rate > 0) {
        printf("open loop at %.0f ops/s", opt.rate);
    } else {
        printf("closed loop");
    }
    if (opt.ops > 0) {
        printf(", %" PRIu64 " ops", opt.ops);
    } else {
        printf(", %.1f s", opt.seconds);
    }
    printf(" after %.1f s warmup; %s; %s\n", opt.warmup,
           opt.target_leader ? "all to the leader" : "round-robin over the members", cluster_note);
    printf("ops        %" PRIu64 " in %.3f s: ok %" PRIu64 " = %.1f ops/s, errors %" PRIu64 "\n",
           r->ops, r->elapsed_s, r->ok, ops_s(r), r->errors);
    if (opt.workload == WL_TXN) {
        printf("txn        %" PRIu64 " succeeded, %" PRIu64 " failed compares\n",
               r->ok - r->txn_failed, r->txn_failed);
    }
    print_hist("latency", &r->lat);
    for (int k = 0; k < N_OPS; k++) {
        kinds += r->by_op[k].count > 0;
    }
    multi = kinds > 1;
    for (int k = 0; multi && k < N_OPS; k++) {
        if (r->by_op[k].count > 0) {
            char label[16];
            snprintf(label, sizeof label, "  %s", op_names[k]);
            print_hist(label, &r->by_op[k]);
        }
    }
    if (opt.rate > 0) {
        printf("schedule   %" PRIu64 " requests started > 1 ms late (latest by %.1f ms)\n", r->late,
               (double)r->late_max_ns / 1e6);
    }
    print_errors(r);
    if (opt.workload == WL_WATCH) {
        printf("watch      %d watchers: %" PRIu64 " events of %" PRIu64 " expected (%" PRIu64
               " acknowledged puts x %d), missed %" PRIu64 ", extra %" PRIu64
               ", watcher errors %" PRIu64 "\n",
               opt.watchers, r->ev_received, r->ev_expected, r->acked_puts, opt.watchers,
               r->ev_missed, r->ev_extra, r->watch_errors);
        print_hist("delay", &r->delay);
    }
    print_members(r);
    printf("generator  cpu %.2f s (user %.2f, sys %.2f) = %.3f cpu-s per 1000 ops\n",
           r->gen_user_s + r->gen_sys_s, r->gen_user_s, r->gen_sys_s,
           r->ops ? (r->gen_user_s + r->gen_sys_s) / (double)r->ops * 1000.0 : 0);
    printf("load: system=%s workload=%s conns=%d pipeline=%d rate=%.0f target=%s seconds=%.3f "
           "ops=%" PRIu64 " ops_s=%.1f ok=%" PRIu64 " errors=%" PRIu64
           " p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f mean_us=%.0f"
           " late=%" PRIu64 " txn_failed=%" PRIu64 " cpu_s=%.2f cpu_s_per_1k=%.3f gen_cpu_s=%.2f"
           " rss_kib_max=%ld hwm_kib_max=%ld disk_bytes=%" PRId64,
           loadsys_name(r->system), workload_names[opt.workload], r->conns, opt.pipeline, opt.rate,
           opt.target_leader ? "leader" : "all", r->elapsed_s, r->ops, ops_s(r), r->ok, r->errors,
           us(loadhist_quantile(&r->lat, 0.5)), us(loadhist_quantile(&r->lat, 0.9)),
           us(loadhist_quantile(&r->lat, 0.99)), us(loadhist_quantile(&r->lat, 0.999)),
           us(r->lat.max_ns), loadhist_mean(&r->lat) / 1000.0, r->late, r->txn_failed, r->cpu_total,
           cpu_per_1k(r), r->gen_user_s + r->gen_sys_s, max_rss(r), max_hwm(r), total_disk(r));
    if (opt.workload == WL_WATCH) {
        printf(" watchers=%d delay_p50_us=%.0f delay_p99_us=%.0f delay_max_us=%.0f missed=%" PRIu64
               " extra=%" PRIu64,
               opt.watchers, us(loadhist_quantile(&r->delay, 0.5)),
               us(loadhist_quantile(&r->delay, 0.99)), us(r->delay.max_ns), r->ev_missed,
               r->ev_extra);
    }
    printf("\n");
    fflush(stdout);
}

static void table_row(const char *label, double b, double e, const char *fmt)
{
    char bs[32], es[32], ratio[32];
    if (b < 0) {
        snprintf(bs, sizeof bs, "-");
    } else {
        snprintf(bs, sizeof bs, fmt, b);
    }
    if (e < 0) {
        snprintf(es, sizeof es, "-");
    } else {
        snprintf(es, sizeof es, fmt, e);
    }
    if (b >= 0 && e > 0) {
        snprintf(ratio, sizeof ratio, "%.2f", b / e);
    } else {
        snprintf(ratio, sizeof ratio, "-");
    }
    printf("%-24s %14s %14s %14s\n", label, bs, es, ratio);
}

static void print_table(const struct result *b, const struct result *e)
{
    printf("\n=== %s, %d connection%s x pipeline %d, %s: ballast vs etcd 3.4\n",
           workload_names[opt.workload], b->conns, b->conns == 1 ? "" : "s", opt.pipeline,
           opt.rate > 0 ? "open loop" : "closed loop");
    printf("%-24s %14s %14s %14s\n", "metric", "ballast", "etcd", "ballast/etcd");
    table_row("ops/s", ops_s(b), ops_s(e), "%.1f");
    table_row("p50 us", us(loadhist_quantile(&b->lat, 0.5)), us(loadhist_quantile(&e->lat, 0.5)),
              "%.0f");
    table_row("p90 us", us(loadhist_quantile(&b->lat, 0.9)), us(loadhist_quantile(&e->lat, 0.9)),
              "%.0f");
    table_row("p99 us", us(loadhist_quantile(&b->lat, 0.99)), us(loadhist_quantile(&e->lat, 0.99)),
              "%.0f");
    table_row("p99.9 us", us(loadhist_quantile(&b->lat, 0.999)),
              us(loadhist_quantile(&e->lat, 0.999)), "%.0f");
    table_row("max us", us(b->lat.max_ns), us(e->lat.max_ns), "%.0f");
    table_row("errors", (double)b->errors, (double)e->errors, "%.0f");
    if (opt.workload == WL_TXN) {
        table_row("txn failed compares", (double)b->txn_failed, (double)e->txn_failed, "%.0f");
    }
    if (opt.workload == WL_WATCH) {
        table_row("event delay p50 us", us(loadhist_quantile(&b->delay, 0.5)),
                  us(loadhist_quantile(&e->delay, 0.5)), "%.0f");
        table_row("event delay p99 us", us(loadhist_quantile(&b->delay, 0.99)),
                  us(loadhist_quantile(&e->delay, 0.99)), "%.0f");
        table_row("events missed", (double)b->ev_missed, (double)e->ev_missed, "%.0f");
    }
    table_row("member cpu-s per 1k ops", cpu_per_1k(b), cpu_per_1k(e), "%.3f");
    table_row("peak RSS/member MiB", max_hwm(b) < 0 ? -1 : (double)max_hwm(b) / 1024.0,
              max_hwm(e) < 0 ? -1 : (double)max_hwm(e) / 1024.0, "%.1f");
    table_row("RSS at end/member MiB", max_rss(b) < 0 ? -1 : (double)max_rss(b) / 1024.0,
              max_rss(e) < 0 ? -1 : (double)max_rss(e) / 1024.0, "%.1f");
    table_row("RssAnon at end/member MiB", max_anon(b) < 0 ? -1 : (double)max_anon(b) / 1024.0,
              max_anon(e) < 0 ? -1 : (double)max_anon(e) / 1024.0, "%.1f");
    table_row("generator cpu-s", b->gen_user_s + b->gen_sys_s, e->gen_user_s + e->gen_sys_s,
              "%.2f");
}

static void print_rss_report(const struct result *r, uint64_t keys, double secs)
{
    printf("\n--- %s: %" PRIu64 " keys of %d + %d bytes loaded in %.1f s (%.0f puts/s, %" PRIu64
           " failed)\n",
           loadsys_name(r->system), keys, opt.key_size, opt.value_size, secs,
           secs > 0 ? (double)keys / secs : 0, r->preload_failed);
    print_members(r);
    printf("load-rss: system=%s keys=%" PRIu64 " key_size=%d value_size=%d rss_kib_max=%ld "
           "hwm_kib_max=%ld anon_kib_max=%ld disk_bytes=%" PRId64 " load_s=%.1f failed=%" PRIu64
           "\n",
           loadsys_name(r->system), keys, opt.key_size, opt.value_size, max_rss(r), max_hwm(r),
           max_anon(r), total_disk(r), secs, r->preload_failed);
    fflush(stdout);
}

/* --- the machine --------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* fdatasync latency of @dir's disk: FSYNC_ROUNDS sequential 4 KiB writes to a
 * new file, each followed by fdatasync (like etcd's fio disk check). */
static void print_fsync(const char *dir)
{
    char path[PATH_MAX], block[4096];
    int64_t lat[FSYNC_ROUNDS];
    int fd;

    snprintf(path, sizeof path, "%s/fsync-probe", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        printf("fsync      %s: %s\n", path, strerror(errno));
        return;
    }
    memset(block, 'f', sizeof block);
    for (int i = 0; i < FSYNC_ROUNDS; i++) {
        int64_t t = now_ns();
        if (pwrite(fd, block, sizeof block, (off_t)i * (off_t)sizeof block) !=
                (ssize_t)sizeof block ||
            fdatasync(fd) != 0) {
            printf("fsync      %s: %s\n", path, strerror(errno));
            close(fd);
            unlink(path);
            return;
        }
        lat[i] = now_ns() - t;
    }
    close(fd);
    unlink(path);
    qsort(lat, FSYNC_ROUNDS, sizeof lat[0], cmp_i64);
    printf("fsync      %s: 4 KiB write + fdatasync x %d: p50 %.0f us, p99 %.0f us, max %.0f us\n",
           dir, FSYNC_ROUNDS, us(lat[FSYNC_ROUNDS / 2]), us(lat[FSYNC_ROUNDS * 99 / 100]),
           us(lat[FSYNC_ROUNDS - 1]));
}

static void print_header(int argc, char **argv, const char *dir)
{
    char model[256] = "unknown", line[512];
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");

    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon != NULL) {
                snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
            }
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    printf("command   ");
    for (int i = 0; i < argc; i++) {
        printf(" %s", argv[i]);
    }
    printf("\n");
    if (uname(&u) == 0) {
        printf("machine    %ld cores, %s, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
               u.sysname, u.release, u.machine);
    }
    print_fsync(dir);
    fflush(stdout);
}

/* --- options -------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: load [flags]   (the header comment of bench/load.c has the details)\n"
                 "  --workload W          put, get, getser, mixed, txn or watch [put]\n"
                 "  --conns N[,N...]      connections; a list runs each count in turn [16]\n"
                 "  --pipeline N          requests in flight per connection [1]\n"
                 "  --rate OPS/S          open loop at this total rate [closed loop]\n"
                 "  --seconds S           measured duration [10]\n"
                 "  --ops N               measured requests instead of a duration\n"
                 "  --warmup S            unmeasured warmup [2]\n"
                 "  --key-size B          key bytes (zero-padded decimal) [8]\n"
                 "  --value-size B        value bytes [256]\n"
                 "  --keys N              key space [100000]\n"
                 "  --seed N              random seed [1]\n"
                 "  --preload, --no-preload  put every key once first [on for get, getser, mixed, "
                 "txn]\n"
                 "  --preload-conns N     connections of the preload [64]\n"
                 "  --timeout S           per request [10]\n"
                 "  --watchers W          watch streams of the watch workload [100]\n"
                 "  --target all|leader   spread connections over the members, or all to the "
                 "leader [all]\n"
                 "  --system ballast|etcd the system to start or to drive [ballast]\n"
                 "  --vs-etcd             run against ballast, then etcd, and compare\n"
                 "  --endpoints H:P,...   a running cluster: start nothing\n"
                 "  --pids PID,...        its members' pids (for CPU and memory)\n"
                 "  --ballastd PATH       [$BALLASTD, else ./server/ballastd]\n"
                 "  --etcd PATH           [$ETCD, else etcd on $PATH]\n"
                 "  --server-arg ARG      one more ballastd flag (repeatable)\n"
                 "  --etcd-arg ARG        one more etcd flag (repeatable)\n"
                 "  --data-dir DIR        members' data [a new /var/tmp/ballast-load.XXXXXX]\n"
                 "  --keep                keep the data directory\n"
                 "  --base-port P         member N: client P+2(N-1), peer one above [free ports]\n"
                 "  --rss-after-keys [N]  load N keys, report memory and disk [1000000]\n"
                 "  --help\n");
}

static void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "load: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (--help lists the flags)\n");
    exit(2);
}

static uint64_t parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "load: %s: \"%s\" is not a number in %" PRIu64 "..%" PRIu64 "\n", flag, s,
                min, max);
        exit(2);
    }
    return v;
}

static double parse_double(const char *flag, const char *s, double min, double max)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min) || !(v <= max)) {
        fprintf(stderr, "load: %s: \"%s\" is not a number in %g..%g\n", flag, s, min, max);
        exit(2);
    }
    return v;
}

static void parse_conns(const char *s)
{
    char buf[256];
    char *save = NULL, *tok;
    snprintf(buf, sizeof buf, "%s", s);
    opt.n_conns = 0;
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (opt.n_conns == MAX_CONN_COUNTS) {
            bad_usage("--conns: at most 16 counts", "");
        }
        opt.conns[opt.n_conns++] = (int)parse_u64("--conns", tok, 1, MAX_CONNS);
    }
    if (opt.n_conns == 0) {
        bad_usage("--conns: no count in \"%s\"", s);
    }
}

static void parse_args(int argc, char **argv)
{
    opt.system = LOADSYS_BALLAST;
    opt.workload = WL_PUT;
    opt.conns[0] = 16;
    opt.n_conns = 1;
    opt.pipeline = 1;
    opt.seconds = 10;
    opt.warmup = 2;
    opt.key_size = 8;
    opt.value_size = 256;
    opt.keys = 100000;
    opt.seed = 1;
    opt.preload = -1;
    opt.preload_conns = 64;
    opt.timeout = 10;
    opt.watchers = 100;

    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *arg = argv[i], *val = NULL, *eq;
        size_t nl;

        if (strncmp(arg, "--", 2) != 0) {
            bad_usage("unexpected argument \"%s\"", arg);
        }
        eq = strchr(arg, '=');
        nl = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nl >= sizeof name) {
            bad_usage("unknown flag %s", arg);
        }
        memcpy(name, arg, nl);
        name[nl] = '\0';
        if (eq != NULL) {
            val = eq + 1;
        }
#define FLAG(n) (strcmp(name, (n)) == 0)
#define VALUE()                                                                                    \
    (val != NULL ? val : i + 1 < argc ? argv[++i] : (bad_usage("%s needs a value", name), ""))
#define NOVALUE()                                                                                  \
    do {                                                                                           \
        if (val != NULL) {                                                                         \
            bad_usage("%s takes no value", name);                                                  \
        }                                                                                          \
    } while (0)
        if (FLAG("--help")) {
            usage(stdout);
            exit(0);
        } else if (FLAG("--workload")) {
            const char *w = VALUE();
            int k;
            for (k = 0; k <= WL_WATCH && strcmp(w, workload_names[k]) != 0; k++) {
            }
            if (k > WL_WATCH) {
                bad_usage("--workload: unknown workload \"%s\"", w);
            }
            opt.workload = (enum workload)k;
        } else if (FLAG("--conns")) {
            parse_conns(VALUE());
        } else if (FLAG("--pipeline")) {
            opt.pipeline = (int)parse_u64(name, VALUE(), 1, MAX_PIPELINE);
        } else if (FLAG("--rate")) {
            opt.rate = parse_double(name, VALUE(), 0.001, 1e8);
        } else if (FLAG("--seconds")) {
            opt.seconds = parse_double(name, VALUE(), 0.001, 86400);
            opt.seconds_given = true;
        } else if (FLAG("--ops")) {
            opt.ops = parse_u64(name, VALUE(), 1, UINT64_MAX / 2);
        } else if (FLAG("--warmup")) {
            opt.warmup = parse_double(name, VALUE(), 0, 3600);
        } else if (FLAG("--key-size")) {
            opt.key_size = (int)parse_u64(name, VALUE(), 1, MAX_KEY_SIZE);
        } else if (FLAG("--value-size")) {
            opt.value_size = (int)parse_u64(name, VALUE(), 0, MAX_VALUE_SIZE);
        } else if (FLAG("--keys")) {
            opt.keys = parse_u64(name, VALUE(), 1, UINT32_MAX);
        } else if (FLAG("--seed")) {
            opt.seed = parse_u64(name, VALUE(), 0, UINT64_MAX);
        } else if (FLAG("--preload")) {
            NOVALUE();
            opt.preload = 1;
        } else if (FLAG("--no-preload")) {
            NOVALUE();
            opt.preload = 0;
        } else if (FLAG("--preload-conns")) {
            opt.preload_conns = (int)parse_u64(name, VALUE(), 1, MAX_CONNS);
        } else if (FLAG("--timeout")) {
            opt.timeout = parse_double(name, VALUE(), 0.001, 3600);
        } else if (FLAG("--watchers")) {
            opt.watchers = (int)parse_u64(name, VALUE(), 0, MAX_WATCHERS);
        } else if (FLAG("--target")) {
            const char *t = VALUE();
            if (strcmp(t, "all") != 0 && strcmp(t, "leader") != 0) {
                bad_usage("--target: \"%s\" is neither all nor leader", t);
            }
            opt.target_leader = strcmp(t, "leader") == 0;
        } else if (FLAG("--system")) {
            const char *s = VALUE();
            if (strcmp(s, "ballast") != 0 && strcmp(s, "etcd") != 0) {
                bad_usage("--system: \"%s\" is neither ballast nor etcd", s);
            }
            opt.system = strcmp(s, "etcd") == 0 ? LOADSYS_ETCD : LOADSYS_BALLAST;
        } else if (FLAG("--vs-etcd")) {
            NOVALUE();
            opt.vs_etcd = true;
        } else if (FLAG("--endpoints")) {
            opt.endpoints = VALUE();
        } else if (FLAG("--pids")) {
            opt.pids = VALUE();
        } else if (FLAG("--ballastd")) {
            opt.ballastd = VALUE();
        } else if (FLAG("--etcd")) {
            opt.etcd = VALUE();
        } else if (FLAG("--server-arg") || FLAG("--etcd-arg")) {
            bool etcd = FLAG("--etcd-arg");
            int *n = etcd ? &opt.n_etcd_args : &opt.n_server_args;
            if (*n == LOADSYS_MAX_ARGS) {
                bad_usage("%s: too many", name);
            }
            (etcd ? opt.etcd_args : opt.server_args)[(*n)++] = (char *)VALUE();
        } else if (FLAG("--data-dir")) {
            opt.data_dir = VALUE();
        } else if (FLAG("--keep")) {
            NOVALUE();
            opt.keep = true;
        } else if (FLAG("--base-port")) {
            opt.base_port = (int)parse_u64(name, VALUE(), 1, 65000);
        } else if (FLAG("--rss-after-keys")) {
            opt.rss_keys = 1000000;
            if (val != NULL) {
                opt.rss_keys = parse_u64(name, val, 1, UINT32_MAX);
            } else if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
                opt.rss_keys = parse_u64(name, argv[++i], 1, UINT32_MAX);
            }
        } else {
            bad_usage("unknown flag %s", arg);
        }
#undef FLAG
#undef VALUE
#undef NOVALUE
    }
    if (opt.rss_keys > 0) {
        opt.keys = opt.rss_keys;
    }
    if (opt.ops > 0 && !opt.seconds_given) {
        opt.seconds = 3600; /* a cap only */
    }
    {
        uint64_t top = opt.keys - 1;
        int digits = 1;
        while (top >= 10) {
            top /= 10;
            digits++;
        }
        if (digits > opt.key_size) {
            char msg[128];
            snprintf(msg, sizeof msg, "%" PRIu64 " keys need --key-size >= %d", opt.keys, digits);
            bad_usage("%s", msg);
        }
    }
    if (opt.workload == WL_WATCH && opt.value_size < STAMP_DIGITS + 1) {
        bad_usage("--workload watch needs --value-size >= 21%s", "");
    }
    if (opt.vs_etcd && opt.endpoints != NULL) {
        bad_usage("--vs-etcd starts its own clusters: no --endpoints%s", "");
    }
    if (opt.pids != NULL && opt.endpoints == NULL) {
        bad_usage("--pids goes with --endpoints%s", "");
    }
    if (opt.preload < 0) {
        opt.preload = opt.workload == WL_GET || opt.workload == WL_GETSER ||
                      opt.workload == WL_MIXED || opt.workload == WL_TXN;
    }
    if (opt.workload != WL_WATCH) {
        opt.watchers = 0;
    }
    if (opt.ballastd == NULL) {
        const char *env = getenv("BALLASTD");
        opt.ballastd = env != NULL && *env ? env : "./server/ballastd";
    }
    if (opt.etcd == NULL) {
        const char *env = getenv("ETCD");
        opt.etcd = env != NULL && *env ? env : "etcd";
    }
    if (opt.endpoints == NULL && (opt.vs_etcd || opt.system == LOADSYS_BALLAST) &&
        access(opt.ballastd, X_OK) != 0) {
        bad_usage("no ballastd at %s (give --ballastd PATH or set BALLASTD)", opt.ballastd);
    }
}

/* --- main ------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Buffers of the workload: the value, its base64, request and body sizes. */
static int prepare(void)
{
    size_t kl = key_len(), k64 = (kl + 2) / 3 * 4;
    value_raw = malloc((size_t)opt.value_size + 1);
    value_b64 = malloc(((size_t)opt.value_size + 2) / 3 * 4 + 1);
    if (value_raw == NULL || value_b64 == NULL) {
        return -1;
    }
    for (int i = 0; i < opt.value_size; i++) {
        value_raw[i] = (char)('a' + rng_below(26));
    }
    value_b64_len = b64_encode((unsigned char *)value_raw, (size_t)opt.value_size, value_b64);
    /* head (< 512) + three base64 keys + the value in either form */
    req_cap = 1024 + 3 * k64 + value_b64_len + (size_t)opt.value_size;
    body_cap = 4096 + 2 * value_b64_len + 3 * k64;
    /* The slab of run() packs slots, buffers and bodies: keep them aligned. */
    req_cap = (req_cap + 15) & ~(size_t)15;
    body_cap = (body_cap + 15) & ~(size_t)15;
    scratch = malloc(req_cap);
    if (opt.workload == WL_TXN) {
        last_rev = calloc((size_t)opt.keys, sizeof *last_rev);
        if (last_rev == NULL) {
            return -1;
        }
    }
    return scratch == NULL ? -1 : 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t need = 0;
    for (int i = 0; i < opt.n_conns; i++) {
        need = (rlim_t)opt.conns[i] > need ? (rlim_t)opt.conns[i] : need;
    }
    need += (rlim_t)opt.watchers + (rlim_t)opt.preload_conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need) {
            fprintf(stderr, "load: warning: open files limited to %lu, %lu needed\n",
                    (unsigned long)rl.rlim_cur, (unsigned long)need);
        }
    }
}

/* Everything one system's runs need: start or attach, preload, the runs, stop.
 * Results of the --conns counts into @res. Returns 0 or -1 (message printed;
 * *@keep_dir set when its logs are worth keeping). */
static int run_system(enum loadsys_kind kind, const char *base, struct result *res, bool *keep_dir)
{
    static struct loadsys sys;
    char err[512], dir[PATH_MAX - 64], note[128];
    int rv = -1;
    int64_t t;

    opt.system = kind;
    if (opt.endpoints != NULL) {
        if (loadsys_attach(&sys, kind, opt.endpoints, opt.pids, err, sizeof err) != 0) {
            fprintf(stderr, "load: %s\n", err);
            return -1;
        }
        snprintf(note, sizeof note, "running cluster at %s", opt.endpoints);
    } else {
        snprintf(dir, sizeof dir, "%s/%s.XXXXXX", base, loadsys_name(kind));
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "load: mkdtemp %s: %s\n", dir, strerror(errno));
            return -1;
        }
        memcpy(created[n_created++], dir, sizeof dir);
        t = now_ns();
        current_sys = &sys;
        if (loadsys_start(&sys, kind, kind == LOADSYS_ETCD ? opt.etcd : opt.ballastd, dir,
                          opt.base_port, kind == LOADSYS_ETCD ? opt.etcd_args : opt.server_args,
                          kind == LOADSYS_ETCD ? opt.n_etcd_args : opt.n_server_args, err,
                          sizeof err) != 0 ||
            loadsys_wait_ready(&sys, READY_MS, err, sizeof err) != 0) {
            fprintf(stderr, "load: %s cluster in %s did not start: %s\n", loadsys_name(kind), dir,
                    err);
            *keep_dir = true;
            goto out;
        }
        printf("\ncluster    %s: 3 members (%s, %s, %s) in %s, ready in %.1f s\n",
               loadsys_name(kind), sys.m[0].client, sys.m[1].client, sys.m[2].client, dir,
               (double)(now_ns() - t) / 1e9);
        snprintf(note, sizeof note, "%s",
                 opt.n_conns > 1 ? "fresh cluster, shared by the connection counts in turn"
                                 : "fresh cluster");
    }
    fflush(stdout);
    if (last_rev != NULL) {
        memset(last_rev, 0, (size_t)opt.keys * sizeof *last_rev);
    }
    if (opt.preload || opt.rss_keys > 0) {
        struct runspec spec = {
            .conns = opt.preload_conns, .preload = true, .progress = opt.rss_keys > 0};
        struct result *pre = &res[MAX_CONN_COUNTS];
        if (run(&sys, &spec, pre, err, sizeof err) != 0) {
            fprintf(stderr, "load: %s preload: %s\n", loadsys_name(kind), err);
            *keep_dir = true;
            goto out;
        }
        if (opt.rss_keys > 0) {
            print_rss_report(pre, opt.keys, pre->elapsed_s);
            res[0] = *pre;
            rv = 0;
            goto out;
        }
        printf("preload    %" PRIu64 " puts in %.2f s = %.0f puts/s over %d connections (%" PRIu64
               " failed)\n",
               pre->ok, pre->elapsed_s, ops_s(pre), opt.preload_conns, pre->preload_failed);
        fflush(stdout);
    }
    for (int i = 0; i < opt.n_conns; i++) {
        struct runspec spec = {.conns = opt.conns[i], .watchers = opt.watchers};
        if (run(&sys, &spec, &res[i], err, sizeof err) != 0) {
            fprintf(stderr, "load: %s run with %d connections: %s\n", loadsys_name(kind),
                    opt.conns[i], err);
            goto out;
        }
        print_report(&res[i], note);
    }
    rv = 0;
out:
    loadsys_stop(&sys, STOP_GRACE_MS);
    current_sys = NULL;
    return rv;
}

int main(int argc, char **argv)
{
    static struct result results[2][MAX_CONN_COUNTS + 1];
    struct sigaction sa;
    char base[PATH_MAX - 128];
    bool own_base = false, keep_dir = false;
    enum loadsys_kind kinds[2];
    int n_kinds, rv = 0;

    parse_args(argc, argv);
    rng_state = opt.seed * 0x9E3779B97F4A7C15ULL + 1;
    if (prepare() != 0) {
        fprintf(stderr, "load: out of memory\n");
        return 1;
    }
    raise_nofile();
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (opt.data_dir != NULL) {
        snprintf(base, sizeof base, "%s", opt.data_dir);
        if (mkdir(base, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "load: mkdir %s: %s\n", base, strerror(errno));
            return 1;
        }
    } else {
        snprintf(base, sizeof base, "/var/tmp/ballast-load.XXXXXX");
        if (mkdtemp(base) == NULL) {
            fprintf(stderr, "load: mkdtemp %s: %s\n", base, strerror(errno));
            return 1;
        }
        own_base = true;
    }
    print_header(argc, argv, base);

    n_kinds = opt.vs_etcd ? 2 : 1;
    kinds[0] = opt.vs_etcd ? LOADSYS_BALLAST : opt.system;
    kinds[1] = LOADSYS_ETCD;
    for (int k = 0; k < n_kinds && rv == 0 && !interrupted; k++) {
        rng_state = opt.seed * 0x9E3779B97F4A7C15ULL + 1; /* same keys for each system */
        if (run_system(kinds[k], base, results[k], &keep_dir) != 0) {
            rv = 1;
        }
    }
    if (interrupted) {
        rv = 1;
    }
    if (rv == 0 && opt.vs_etcd) {
        if (opt.rss_keys > 0) {
            const struct result *b = &results[0][0], *e = &results[1][0];
            printf("\n=== %" PRIu64 " keys: ballast vs etcd 3.4\n", opt.keys);
            printf("%-24s %14s %14s %14s\n", "metric", "ballast", "etcd", "ballast/etcd");
            table_row("RSS at end/member MiB", (double)max_rss(b) / 1024.0,
                      (double)max_rss(e) / 1024.0, "%.1f");
            table_row("peak RSS/member MiB", (double)max_hwm(b) / 1024.0,
                      (double)max_hwm(e) / 1024.0, "%.1f");
            table_row("RssAnon at end/member MiB", (double)max_anon(b) / 1024.0,
                      (double)max_anon(e) / 1024.0, "%.1f");
            table_row("data dirs MiB", (double)total_disk(b) / 1048576.0,
                      (double)total_disk(e) / 1048576.0, "%.1f");
            table_row("load puts/s", ops_s(b), ops_s(e), "%.0f");
        } else {
            for (int i = 0; i < opt.n_conns; i++) {
                print_table(&results[0][i], &results[1][i]);
            }
        }
    }
    if (opt.keep || keep_dir || rv != 0) {
        fprintf(stderr, "load: data kept in %s\n", base);
    } else if (own_base) {
        remove_tree(base);
    } else {
        /* A given --data-dir: remove only what this run made in it. */
        for (int k = 0; k < n_created; k++) {
            remove_tree(created[k]);
        }
    }
    free(value_raw);
    free(value_b64);
    free(scratch);
    free(last_rev);
    return rv;
}
