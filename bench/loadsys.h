/* The systems bench/load drives: local ballast or etcd clusters it starts
 * and stops, or running clusters it is pointed at; plus the blocking HTTP
 * call and the /proc readings it uses around the measured phase. */
#ifndef BALLAST_BENCH_LOADSYS_H
#define BALLAST_BENCH_LOADSYS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOADSYS_MAX_MEMBERS 16
#define LOADSYS_MAX_ARGS    32 /* extra member flags (--server-arg / --etcd-arg) */

enum loadsys_kind { LOADSYS_BALLAST, LOADSYS_ETCD };

/* One member. @pid is 0 when unknown (--endpoints without --pids) or not
 * running. */
struct loadsys_member {
    pid_t pid;
    char name[24];
    char client[64]; /* host:port of the client API */
    char peer[64];   /* host:port of the peer port, "" when not started here */
    char dir[PATH_MAX - 32];
    char log[PATH_MAX];
};

/* A cluster. @started: its members were started by loadsys_start() (and
 * loadsys_stop() stops them). */
struct loadsys {
    enum loadsys_kind kind;
    int n;
    bool started;
    char dir[PATH_MAX - 64]; /* the members' parent directory, "" when not started here */
    struct loadsys_member m[LOADSYS_MAX_MEMBERS];
};

/* The name of @kind: "ballast" or "etcd". */
const char *loadsys_name(enum loadsys_kind kind);

/* Describe a running cluster of @kind at the comma-separated @endpoints
 * (host:port,...) with the optional comma-separated @pids (same order, may be
 * NULL). Returns 0, or -1 with a message in @err (bad list). */
int loadsys_attach(struct loadsys *s, enum loadsys_kind kind, const char *endpoints,
                   const char *pids, char *err, size_t err_len);

/* Start a 3-member cluster of @kind from the program @binary in the new
 * directory @dir (created; members' data in @dir/N or @dir/eN, their stderr and
 * stdout in @dir/member-N.log or @dir/eN.log) on 127.0.0.1, with ports from
 * @base_port up (client N = base + 2(N-1), peer = that + 1), or free ports
 * when @base_port is 0. @args (@n_args of them) are appended to every member's
 * command line. Members die with this process (PR_SET_PDEATHSIG). Does not
 * wait for them: see loadsys_wait_ready(). Returns 0, or -1 with a message in
 * @err; members started before a failure keep running until loadsys_stop(). */
int loadsys_start(struct loadsys *s, enum loadsys_kind kind, const char *binary, const char *dir,
                  int base_port, char *const *args, int n_args, char *err, size_t err_len);

/* Wait at most @timeout_ms until the cluster serves: ballast: every member's
 * /v1/status names the same leader and /readyz answers 200; etcd: every
 * member's /health is {"health":"true"}. Returns 0, or -1 with the last
 * reason in @err (a started member that exited is reported at once). */
int loadsys_wait_ready(struct loadsys *s, int timeout_ms, char *err, size_t err_len);

/* The index of the member that says it is the leader (ballast /v1/status
 * role, etcd /v3/maintenance/status member_id == leader), or -1. */
int loadsys_leader(struct loadsys *s);

/* Stop the members started by loadsys_start(): SIGTERM, then SIGKILL after
 * @grace_ms; reaps them. No-op for an attached cluster. */
void loadsys_stop(struct loadsys *s, int grace_ms);

/* Async-signal-safe: SIGKILL every started member (from a signal handler). */
void loadsys_kill_all_unsafe(const struct loadsys *s);

/* Whether started member @i still runs (reaps it if it exited). */
bool loadsys_running(struct loadsys *s, int i);

/* One blocking HTTP/1.1 request (Connection: close) to @addr (host:port):
 * @method @path with @body (@body_len bytes, may be NULL); the response's
 * status into *@status and up to @out_len - 1 bytes of its body into @out
 * (NUL-terminated). Everything within @timeout_ms. Returns 0, or -1 with a
 * message in @err. */
int loadsys_http(const char *addr, const char *method, const char *path, const char *body,
                 size_t body_len, int timeout_ms, int *status, char *out, size_t out_len, char *err,
                 size_t err_len);

/* Resolve @addr (host:port) into @sa (IPv4 or IPv6). Returns 0, or -1 with a
 * message in @err. */
struct sockaddr_storage;
int loadsys_resolve(const char *addr, struct sockaddr_storage *sa, char *err, size_t err_len);

/* Find "@field": in the @len bytes at @s and read the unsigned integer after
 * it, bare (ballast) or quoted (etcd's gateway prints int64 as strings).
 * Returns true and the number in *@out, false when absent or not a number. */
bool loadsys_json_u64(const char *s, size_t len, const char *field, uint64_t *out);

/* CPU time (user + system) of process @pid in seconds, -1 when unknown. */
double loadsys_cpu_s(pid_t pid);

/* VmRSS and VmHWM of process @pid in KiB (-1 each when unknown). */
void loadsys_mem_kib(pid_t pid, long *rss_kib, long *hwm_kib);

/* RssAnon (heap, stacks: what the process itself holds) and RssFile (file
 * pages it has mapped, e.g. LMDB's or bbolt's memory map, which the kernel
 * may drop and read back) of @pid in KiB, -1 when unknown. */
void loadsys_rss_split_kib(pid_t pid, long *anon_kib, long *file_kib);

/* Bytes allocated on disk under @dir (st_blocks, like du), -1 on error. */
int64_t loadsys_du(const char *dir);

#endif /* BALLAST_BENCH_LOADSYS_H */
