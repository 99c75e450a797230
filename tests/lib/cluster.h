/* A harness for black-box tests of Ballast: real ballastd processes on
 * 127.0.0.1, a blocking HTTP/1.1 client, a tiny JSON reader, and the CLI.
 *
 * Everything here is for tests: a helper that cannot go on fails the running
 * Check test with ck_abort_msg() and a message saying what it last saw, so a
 * test reads as a straight line of calls. Functions that return an int
 * return 0 on success and -1 on a transport failure (the response's or
 * connection's error[] says what failed); an HTTP error status is not a
 * transport failure.
 *
 * Binaries come from the environment: $BALLASTD (required to start a
 * cluster) and $BALLASTCTL (required by tc_ctl()). `make check` sets both.
 *
 * Files. Each cluster lives in its own temporary directory:
 *   DIR/member-N/      the data dir of member N (created empty)
 *   DIR/member-N.log   its stdout and stderr, appended across restarts
 * DIR is removed by tc_cluster_stop() unless $TC_KEEP is set. A test that
 * fails never reaches tc_cluster_stop(): register tc_fixture_setup() and
 * tc_fixture_teardown() as an unchecked fixture and the teardown (which runs
 * in the Check runner, even when the test process died) prints the last 40
 * lines of each member's log to stderr and keeps the directory. */
#ifndef BALLAST_TESTS_CLUSTER_H
#define BALLAST_TESTS_CLUSTER_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Most members one cluster may have. */
#define TC_MAX_MEMBERS 7
/* Longest path the harness builds. */
#define TC_PATH_MAX 1024
/* Default whole-request deadline of tc_http(). */
#define TC_HTTP_TIMEOUT_MS 10000
/* Response headers kept by the client; later ones are dropped. */
#define TC_MAX_HEADERS 64
/* Lines of each member's log printed when a test fails. */
#define TC_LOG_TAIL_LINES 40
/* A ballastctl run is killed (and the test fails) after this long. */
#define TC_CTL_TIMEOUT_MS 20000

/* --- Fixture ---------------------------------------------------------------- */

/* Unchecked setup: create the directory that clusters of this test case
 * live in (under $TMPDIR, else /tmp). Register with
 * tcase_add_unchecked_fixture(tc, tc_fixture_setup, tc_fixture_teardown)
 * on a test case holding one test. */
void tc_fixture_setup(void);

/* Unchecked teardown: kill members still running in this process (CK_FORK=no
 * after a failure), print the log tails of every cluster that was not
 * stopped by tc_cluster_stop() (the test failed) and keep its directory;
 * remove the directory when nothing is left in it. */
void tc_fixture_teardown(void);

/* Add @test to @s as a test case of its own named @name (so CK_RUN_CASE
 * selects it), with the fixture above and a Check timeout of @timeout_s. */
void tc_add_case(Suite *s, const char *name, const TTest *test, int timeout_s);

/* The main() of an integration test program @prog: exit status 77
 * (automake's "skipped") when $BALLASTD is unset, else run the suite
 * @make_suite() builds (called only then) with SIGPIPE ignored and return
 * EXIT_SUCCESS when every test passed, EXIT_FAILURE otherwise. */
int tc_main(const char *prog, Suite *(*make_suite)(void));

/* --- Cluster ---------------------------------------------------------------- */

/* One member: index i in the cluster has Raft id i + 1 and name member-<id>. */
#define TC_MAX_EXTRA 8

struct tc_member {
    uint64_t id;
    char name[32];
    char ip[16];                /* the address it listens on: 127.0.0.1, or its own */
    char client_addr[48];       /* IP:PORT, for tc_http() */
    char peer_addr[48];         /* IP:PORT it listens on for Raft */
    char proxy_addr[48];        /* IP:PORT it advertises instead (peer_proxy), or "" */
    char data_dir[TC_PATH_MAX]; /* DIR/member-N */
    char log_path[TC_PATH_MAX]; /* DIR/member-N.log */
    pid_t pid;                  /* the running process, or 0 */
    int last_status;            /* waitpid() status of the last exit, or -1 */
    bool died;                  /* exited without being killed by the harness */
    int starts;                 /* how many times it was started */
    /* Custom members (tc_member_add): flags after --data-dir, --listen-client
     * and --listen-peer instead of the founder flags, and extra environment
     * entries ("BALLAST_X=y"); both NULL-terminated, strings copied. */
    bool custom;
    char *args[TC_MAX_EXTRA * 2 + 1];
    char *env[5];
};

/* A cluster started by tc_cluster_start(); owned by the test. */
struct tc_cluster {
    int n;
    bool own_addresses; /* members listen on 127.A.B.C of their own */
    int ip_base;        /* with own_addresses: member i's last octet is ip_base + i */
    const char *extra[TC_MAX_EXTRA + 1]; /* extra ballastd flags, NULL-terminated */
    char dir[TC_PATH_MAX];
    char initial_cluster[TC_MAX_MEMBERS * 32];
    struct tc_member members[TC_MAX_MEMBERS];
};

/* Choose @n distinct free TCP ports on 127.0.0.1: all are bound to port 0 at
 * once, read back, then released. Nothing listens on them afterwards. */
void tc_free_ports(uint16_t *ports, int n);

/* Start @n (1..TC_MAX_MEMBERS) founding members with
 *   --id N --name member-N --data-dir DIR/member-N
 *   --listen-client 127.0.0.1:CPORT --listen-peer 127.0.0.1:PPORT
 *   --initial-cluster 1=127.0.0.1:P1,2=127.0.0.1:P2,...
 * Each child runs with every BALLAST_* environment variable removed (so
 * defaults apply, e.g. the election timeout), stdin from /dev/null, and
 * PR_SET_PDEATHSIG = SIGKILL so it dies with the test process. Returns
 * without waiting for anything: use tc_wait_leader() or tc_wait_stable().
 * Fails the test if $BALLASTD is unset or a process cannot be started. The
 * result is freed by tc_cluster_stop(). */
struct tc_cluster *tc_cluster_start(int n);

/* Like tc_cluster_start(), with @extra (NULL-terminated, at most
 * TC_MAX_EXTRA strings, which must outlive the cluster) appended to every
 * member's command line, e.g. {"--snapshot-threshold", "64", NULL}. */
struct tc_cluster *tc_cluster_start_args(int n, const char *const *extra);

/* The name prefix of the nftables tables a test process makes (in family
 * inet): TC_NFT_TABLE_PREFIX followed by the pid, e.g. ballast_nem_4242
 * (tests/nemesis/netfault.c makes them). */
#define TC_NFT_TABLE_PREFIX "ballast_nem_"

/* Options of tc_cluster_start_opts(). */
struct tc_cluster_opts {
    int n;                    /* founding members, 1..TC_MAX_MEMBERS */
    const char *const *extra; /* as for tc_cluster_start_args(), or NULL */
    /* Member i listens (client and peer) on an address of its own,
     * 127.A.B.C: A.B come from the pid of the test process and C from a
     * per-process cluster counter and i, so two test processes running at
     * once never share an address and firewall rules can tell members
     * apart. Outgoing peer and relay connections leave from that address
     * too (ballastd binds them to the host of its listen addresses). The
     * test's own HTTP requests still come from 127.0.0.1. The fixture
     * teardown then also deletes the nftables table
     * TC_NFT_TABLE_PREFIX<pid> of the test process if it is left. */
    bool own_addresses;
    /* Implies own_addresses. Each member also gets proxy_addr (its own IP,
     * another free port), which it advertises (--advertise-peer) and which
     * --initial-cluster lists, so every peer connection to it goes through
     * whatever the test runs there: start a forwarder from proxy_addr to
     * peer_addr (tests/nemesis/delayproxy.h) right after the start, or no
     * member will hear from any other. */
    bool peer_proxy;
};

/* Start a cluster as tc_cluster_start_args() does, with @opts. Members added
 * later with tc_member_add() and NULL addresses get their own address too
 * (but no proxy). */
struct tc_cluster *tc_cluster_start_opts(const struct tc_cluster_opts *opts);

/* Stop every running member: SIGTERM to all, wait up to 10 s each, then
 * SIGKILL. Fails the test if a member exits non-zero or dies of a signal
 * after SIGTERM (a member that needs SIGKILL is only reported on stderr).
 * Then removes the cluster's directory (unless $TC_KEEP is set) and frees
 * @c. */
void tc_cluster_stop(struct tc_cluster *c);

/* Send @sig (SIGKILL or SIGTERM) to member @i and reap it: up to 5 s after
 * SIGKILL, 10 s after SIGTERM, then SIGKILL and fail the test. Returns the
 * waitpid() status. Fails the test if @i is not running. */
int tc_member_kill(struct tc_cluster *c, int i, int sig);

/* Send @sig to every running member at once, then reap them all. */
void tc_cluster_kill(struct tc_cluster *c, int sig);

/* Start member @i again with the same flags and data dir (its log gets a
 * separator line and is appended to). Fails the test if it is running. */
void tc_member_restart(struct tc_cluster *c, int i);

/* Whether member @i is running. A member that exited on its own is reaped
 * here and reported as not running. */
bool tc_member_running(struct tc_cluster *c, int i);

/* Fail the test if a member that was not killed by the harness has exited,
 * naming it and its exit status. The wait helpers call this on every poll. */
void tc_check_running(struct tc_cluster *c);

/* Member @i's client address "127.0.0.1:PORT", valid as long as @c. */
const char *tc_addr(const struct tc_cluster *c, int i);

/* All client addresses, comma-separated, into @out (for --endpoints). */
void tc_endpoints(const struct tc_cluster *c, char *out, size_t len);

/* Add member index c->n (id c->n + 1 unless @args say otherwise), with a
 * new data dir, started with --data-dir, --listen-client @client_addr,
 * --listen-peer @peer_addr (NULL: 127.0.0.1 with free ports) and @args
 * (e.g. {"--join", endpoints, NULL}) and @env added to its environment.
 * Returns its index. */
int tc_member_add(struct tc_cluster *c, const char *client_addr, const char *peer_addr,
                  const char *const *args, const char *const *env);

/* Replace member @i's custom flags (and listen addresses when not NULL);
 * takes effect at its next start. */
void tc_member_set(struct tc_cluster *c, int i, const char *client_addr, const char *peer_addr,
                   const char *const *args);

/* Set member @i's extra environment entries ("NAME=value", NULL-terminated,
 * at most 4, copied; NULL clears them), founder or added member alike; takes
 * effect at its next start. E.g. {"BALLAST_CRASH_AT=lmdb-commit-after", NULL}
 * or an LD_PRELOAD. (BALLAST_* variables of the test's own environment are
 * never passed on; these are.) */
void tc_member_env(struct tc_cluster *c, int i, const char *const *env);

/* Remove member @i's data dir and create it empty (a lost volume). It must
 * not be running. */
void tc_member_wipe(struct tc_cluster *c, int i);

/* Print the last TC_LOG_TAIL_LINES lines of each member's log to stderr. */
void tc_dump_logs(const struct tc_cluster *c);

/* --- HTTP client ------------------------------------------------------------ */

/* A response. tc_http() and tc_conn_read_response() fill it; release it with
 * tc_response_free(). body is NUL-terminated (not counted in body_len), so
 * JSON can be read with the tc_json_* functions. */
struct tc_response {
    int status; /* HTTP status, 0 if none was read */
    char *body;
    size_t body_len;
    char *head; /* the header block; header names/values point into it */
    size_t n_headers;
    struct {
        const char *name;
        const char *value;
    } headers[TC_MAX_HEADERS];
    char error[256]; /* why a call returned -1 */
};

/* Free what @r owns and zero it. Safe on a zeroed or freed response. */
void tc_response_free(struct tc_response *r);

/* The value of response header @name (case-insensitive), or NULL. Valid
 * until tc_response_free(). */
const char *tc_header(const struct tc_response *r, const char *name);

/* The value of header @name as an unsigned integer; fails the test if it is
 * missing or not a number. */
uint64_t tc_header_u64(const struct tc_response *r, const char *name);

/* A client connection: blocking calls with a deadline per call, a read
 * buffer that keeps bytes of a following (pipelined) response. */
struct tc_conn {
    int fd;
    char addr[64];
    int timeout_ms; /* deadline of each call below */
    char *buf;      /* bytes read and not yet consumed */
    size_t len, cap;
    bool eof;
    char error[256];
};

/* Connect to @addr ("host:port") within @timeout_ms, which also becomes the
 * deadline of each later call. On -1, conn->error says why; the connection
 * need not be closed. */
int tc_conn_open(struct tc_conn *conn, const char *addr, int timeout_ms);

/* Send @len raw bytes (for hand-made or pipelined requests). */
int tc_conn_send(struct tc_conn *conn, const void *data, size_t len);

/* Send one HTTP/1.1 request and read its response. The request carries
 * Host, Accept: application/json, Content-Length when there is a body or the
 * method is PUT/POST, and @headers: a NULL-terminated array of complete
 * "Name: value" lines, or NULL. If the server answers while the body is still
 * being sent (413), sending stops and the answer is read. */
int tc_conn_request(struct tc_conn *conn, const char *method, const char *target, const void *body,
                    size_t body_len, const char *const *headers, struct tc_response *resp);

/* Read one response (Content-Length, chunked, or until EOF); @head: it
 * answers a HEAD request (no body). 1xx responses are skipped. */
int tc_conn_read_response(struct tc_conn *conn, bool head, struct tc_response *resp);

/* Close the socket and free the buffer. Safe to call twice. */
void tc_conn_close(struct tc_conn *conn);

/* One request on its own connection (Connection: close) to @addr, whole
 * call bounded by TC_HTTP_TIMEOUT_MS. On return @resp must be freed with
 * tc_response_free(), also after -1. */
int tc_http(const char *addr, const char *method, const char *target, const void *body,
            size_t body_len, const char *const *headers, struct tc_response *resp);

/* tc_http() with its own deadline. */
int tc_http_ex(const char *addr, int timeout_ms, const char *method, const char *target,
               const void *body, size_t body_len, const char *const *headers,
               struct tc_response *resp);

/* --- Encoding --------------------------------------------------------------- */

/* Percent-encode @len bytes of @key (everything but A-Z a-z 0-9 - . _ ~) into
 * @out, NUL-terminated. Returns the length, or fails the test if @cap is too
 * small (3 * len + 1 always suffices). */
size_t tc_escape(const void *key, size_t len, char *out, size_t cap);

/* "/v1/kv/<escaped key>" followed by "?" and @query when @query is not
 * NULL, into @out; fails the test if @cap is too small. Returns @out. */
char *tc_kv_target(char *out, size_t cap, const void *key, size_t keylen, const char *query);

/* Decode standard base64 (padding optional, no whitespace) into a malloc'd
 * buffer with a NUL after the @out_len bytes. NULL if @s is not base64. */
uint8_t *tc_b64_decode(const char *s, size_t len, size_t *out_len);

/* --- JSON reading ------------------------------------------------------------ */

/* The value at @path in the JSON document @json, or NULL. A path is
 * dot-separated: object member names and, on arrays, decimal indexes, e.g.
 * "error.code" or "kvs.3.key"; "" is the document itself. Only the members
 * on the path are matched: nested objects with the same member names are
 * not confused with them. Returns a pointer into @json at the value's first
 * character. */
const char *tc_json_find(const char *json, const char *path);

/* The unsigned integer at @path into @out; false if absent or not one. */
bool tc_json_u64(const char *json, const char *path, uint64_t *out);

/* The boolean at @path into @out; false if absent or not one. */
bool tc_json_bool(const char *json, const char *path, bool *out);

/* The string at @path, unescaped, NUL-terminated into @out; false if absent,
 * not a string, or longer than @cap - 1 bytes. */
bool tc_json_str(const char *json, const char *path, char *out, size_t cap);

/* The string at @path decoded from base64 into a malloc'd buffer (NUL after
 * the @len bytes); NULL if absent or not base64. */
uint8_t *tc_json_b64(const char *json, const char *path, size_t *len);

/* The number of elements of the array or object at @path, or -1. */
int tc_json_len(const char *json, const char *path);

/* --- Cluster state ------------------------------------------------------------ */

/* The fields of GET /v1/status the tests use. */
struct tc_status {
    uint64_t id, leader, term, commit_index, applied_index, revision;
    char role[32];
    char name[64];
};

/* GET /v1/status on member @i with a 2 s deadline. -1 (and a reason in
 * @err) if it cannot be read or lacks a field. */
int tc_get_status(struct tc_cluster *c, int i, struct tc_status *st, char *err, size_t errlen);

/* Wait until every running member answers /v1/status with the same nonzero
 * `leader`, that member is running and reports role "leader"; poll every
 * 50 ms, at least once. Returns the leader's index. After @timeout_ms the
 * test fails with what each member last reported. */
int tc_wait_leader(struct tc_cluster *c, int timeout_ms);

/* Wait until member @i's /v1/status `revision` is >= @revision (its applied
 * state holds every write up to it). Fails the test after @timeout_ms with
 * the last revision seen. */
void tc_wait_applied(struct tc_cluster *c, int i, uint64_t revision, int timeout_ms);

/* Wait until member @i answers GET /readyz with 200. */
void tc_wait_ready(struct tc_cluster *c, int i, int timeout_ms);

/* tc_wait_leader(), then wait until every running member's GET /v1/members
 * lists all n members with their names and client URLs (published at start)
 * and every running member is ready. Returns the leader's index. Start tests
 * with this: a follower can forward only once the leader's address is in the
 * replicated member table. */
int tc_wait_stable(struct tc_cluster *c, int timeout_ms);

/* --- KV shortcuts ---------------------------------------------------------------- */

/* A kv object as read by tc_get(). */
struct tc_kv {
    uint8_t *value; /* malloc'd, NUL after value_len bytes */
    size_t value_len;
    uint64_t create_revision, mod_revision, version;
};

/* PUT @key = @value through member @i; fails the test unless the answer is
 * 200 with a revision. Returns the revision. */
uint64_t tc_put(struct tc_cluster *c, int i, const char *key, const void *value, size_t len);

/* GET @key from member @i with ?consistency=@consistency (NULL: default).
 * Returns 200 (and fills @kv, free with tc_kv_free()) or 404 (kv zeroed);
 * fails the test on anything else. */
int tc_get(struct tc_cluster *c, int i, const char *key, const char *consistency, struct tc_kv *kv);

/* Free what @kv owns. */
void tc_kv_free(struct tc_kv *kv);

/* --- CLI ----------------------------------------------------------------------- */

/* What one ballastctl run did. */
struct tc_ctl_result {
    int status; /* exit status, or 128 + signal */
    char *out;  /* stdout, malloc'd, NUL-terminated */
    char *err;  /* stderr, malloc'd, NUL-terminated */
};

/* The end of tc_ctl()'s argument list (a typed NULL, as variadic calls need). */
#define TC_END ((const char *)NULL)

/* Run `$BALLASTCTL [--endpoints @endpoints] ARG...` (the arguments end with
 * TC_END; @endpoints NULL leaves the flag out) with BALLAST_* variables removed
 * and stdin from /dev/null. Captures both outputs; kills it and fails the
 * test after TC_CTL_TIMEOUT_MS. Returns the exit status. @res may be NULL;
 * else free it with tc_ctl_free(). */
int tc_ctl(const char *endpoints, struct tc_ctl_result *res, const char *arg, ...)
    __attribute__((sentinel));

/* Free what @res owns. */
void tc_ctl_free(struct tc_ctl_result *res);

/* --- Utilities -------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t tc_now_ms(void);

/* Sleep @ms milliseconds. */
void tc_sleep_ms(int ms);

/* Next number of a seeded xorshift64* generator; @state must be nonzero. */
uint64_t tc_rand(uint64_t *state);

#endif /* BALLAST_TESTS_CLUSTER_H */
