/* libballast: the client library of Ballast, a replicated key-value store.
 *
 * A client object talks HTTP/1.1 to one member at a time over one keep-alive
 * connection, sends msgpack-accepting requests and decodes the replies into
 * the structs below. Calls are blocking and run one at a time; a client is
 * not thread-safe (use one per thread). Nothing is connected until the first
 * call.
 *
 * Errors. Every function returning int returns 0 (BALLAST_OK) or a negative
 * enum ballast_err. After an error, ballast_errmsg() says what failed: the
 * server's own message for an error reply, or a transport message such as
 * "connect 127.0.0.1:8379: Connection refused".
 *
 * Failover and retries. A call has an overall deadline (request_timeout_ms)
 * and at most max_attempts attempts. After a failed attempt the client moves
 * to the next endpoint of its list (round robin) and tries again, waiting a
 * jittered exponential backoff between attempts (none while first trying the
 * other endpoints after a connect failure; after an HTTP 503 at least the
 * server's Retry-After, capped at backoff_max_ms). An attempt fails over when:
 *   - the connection cannot be made (resolve, refused, connect timeout):
 *     the request was never sent, so every call is retried;
 *   - the server answers 503 (no_leader): the request was not executed, so
 *     every call is retried;
 *   - the connection breaks, or the attempt times out, after the request may
 *     have been sent, or the server answers 504 (timeout: outcome unknown).
 *     Reads (GET) are retried. Writes are retried too, because every write
 *     carries an X-Ballast-Request-Id: the library draws a random 32-hex-digit
 *     id per write call and sends the same id on each retry of that call, so
 *     the server applies the write at most once and answers a retry as it
 *     answered the first attempt (within its deduplication window of 100,000
 *     revisions). Setting no_retry_unsent_writes stops those retries of
 *     possibly-sent writes (the call then fails with BALLAST_ETIMEOUT or
 *     BALLAST_EUNAVAILABLE and the write may or may not have been applied),
 *     except for cas writes (put/delete with cas >= 0), which can never apply
 *     twice and are always retried.
 * Every other answer (2xx, 4xx, 500, 507, ...) is final. Calls that change
 * the member table follow the same rules, with these answers to "could the
 * retry do harm": an add is answered by the server as the first attempt was
 * when the identical member exists already (idempotent by identity); a
 * promote of a voter is a no-op, so it is retried like a cas write; and a
 * remove retried after an attempt that may have been executed may find the
 * member gone: that 404 means the earlier attempt removed it, and
 * ballast_member_remove() reports success (see there). A stale keep-alive
 * connection found closed by the server is reopened to the same endpoint
 * without counting as an attempt; if it was found closed only after a write
 * was sent on it, that write counts as possibly sent (so with
 * no_retry_unsent_writes it fails with BALLAST_EUNAVAILABLE instead).
 *
 * Ownership. Everything a call returns (structs, strings, buffers) belongs to
 * the caller and stays valid until the caller frees it with the matching
 * ballast_*_free() or ballast_free(); none of it refers to the client, which
 * may be freed first. Inputs are only read during the call. */
#ifndef BALLAST_H
#define BALLAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. The server's error codes map one to one where they exist. */
enum ballast_err {
    BALLAST_OK = 0,
    BALLAST_EBADARG = -1,        /* invalid argument, or server bad_request (400/405) */
    BALLAST_ENOTFOUND = -2,      /* not_found (404): key or path absent */
    BALLAST_ECASFAILED = -3,     /* cas_failed (412): the compare did not hold */
    BALLAST_ETOOLARGE = -4,      /* too_large (413): key, value or request too large */
    BALLAST_ENOLEADER = -5,      /* no_leader (503) on every attempt */
    BALLAST_ETIMEOUT = -6,       /* deadline passed or timeout (504); outcome unknown */
    BALLAST_EUNAVAILABLE = -7,   /* no endpoint reachable / connection lost */
    BALLAST_ENOSPACE = -8,       /* no_space (507) */
    BALLAST_ESERVER = -9,        /* any other server error (internal, 500, ...) */
    BALLAST_EPROTO = -10,        /* unparseable or oversized reply */
    BALLAST_ENOMEM = -11,        /* out of memory */
    BALLAST_EUNAUTHORIZED = -12, /* unauthorized (401) */
    BALLAST_EFORBIDDEN = -13,    /* forbidden (403) */
    BALLAST_EIO = -14,           /* a local file could not be written (snapshot save) */
};

/* Read consistency (contract: ?consistency=). */
enum ballast_consistency {
    BALLAST_LINEARIZABLE = 0, /* default: reflects every write acknowledged before the call */
    BALLAST_SERIALIZABLE = 1, /* the answering member's applied state; may be stale */
};

/* "No compare" value of the cas fields. */
#define BALLAST_NO_CAS (-1)

/* Client options. A zero field means its default, so a zeroed struct (or a
 * NULL pointer to ballast_client_new) gives the defaults. */
struct ballast_options {
    unsigned connect_timeout_ms; /* per connection attempt; default 2000 */
    unsigned request_timeout_ms; /* overall deadline of one call, retries included;
                                    default 10000 */
    unsigned attempt_timeout_ms; /* bound of one attempt (connect, send, answer);
                                    default 5000, never past the overall deadline */
    unsigned max_attempts;       /* default 2 * number of endpoints, at least 3 */
    unsigned backoff_base_ms;    /* first backoff; default 50 */
    unsigned backoff_max_ms;     /* backoff cap, also caps Retry-After; default 1000 */
    int no_retry_unsent_writes;  /* non-zero: do not retry a non-cas write that may
                                    have reached a server (see the file comment) */
};

/* A key-value pair. key and value point into memory allocated together with
 * the struct; both are never NULL, and both are followed by a NUL byte that
 * is not counted in the length (so text can be printed directly). value is
 * empty when the server left it out (keys_only). */
struct ballast_kv {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version; /* writes since creation, 1 after the first put */
    int64_t lease;   /* 0 when none */
};

/* Options of ballast_put(). Use BALLAST_PUT_OPTS_INIT: a zeroed struct has
 * cas 0, which means "only if absent". */
struct ballast_put_opts {
    int64_t cas;   /* BALLAST_NO_CAS: none; 0: only if absent; N: only if mod_revision == N */
    int64_t lease; /* lease id to attach, 0 for none */
    int prev;      /* non-zero: return the previous kv in the result */
};
/* clang-format off */
#define BALLAST_PUT_OPTS_INIT {BALLAST_NO_CAS, 0, 0}
/* clang-format on */

/* Result of ballast_put(). Free with ballast_put_result_free(). */
struct ballast_put_result {
    int64_t revision;        /* store revision of this write */
    int has_prev;            /* non-zero when prev is set */
    struct ballast_kv *prev; /* previous kv with opts->prev if the key existed, else NULL */
};

/* Options of ballast_delete(). Use BALLAST_DELETE_OPTS_INIT (see put opts). */
struct ballast_delete_opts {
    int prefix;  /* non-zero: delete every key starting with key */
    int64_t cas; /* BALLAST_NO_CAS: none; 0 / N as for put */
    int prev;    /* non-zero: return the deleted kvs in the result */
};
/* clang-format off */
#define BALLAST_DELETE_OPTS_INIT {0, BALLAST_NO_CAS, 0}
/* clang-format on */

/* Result of ballast_delete(). Free with ballast_delete_result_free(). */
struct ballast_delete_result {
    int64_t revision;            /* store revision after the delete */
    int64_t deleted;             /* number of keys deleted (0 for an absent key) */
    struct ballast_kv *prev_kvs; /* with opts->prev: the deleted kvs (n_prev), else NULL */
    size_t n_prev;
};

/* Options of ballast_range(). A zeroed struct is the default. */
struct ballast_range_opts {
    unsigned limit;    /* page size, 1..10000; 0: the server's default (1000) */
    const void *after; /* start strictly after this key (next page); NULL: from the start */
    size_t after_len;
    int keys_only;   /* non-zero: values left out (kv.value is empty) */
    int count_only;  /* non-zero: no kvs, only count */
    int consistency; /* enum ballast_consistency */
};

/* One page of a range. Free with ballast_range_result_free(). */
struct ballast_range_result {
    struct ballast_kv *kvs; /* n pairs sorted by key, or NULL when n is 0 */
    size_t n;
    int more;         /* non-zero: more keys follow; ask again with after = last key */
    int64_t count;    /* number of keys in the whole range, not just this page */
    int64_t revision; /* store revision the page reflects */
};

/* A member of the cluster (GET /v1/members). Strings are never NULL. */
struct ballast_member {
    uint64_t id;
    char *name;
    char *peer_url;
    char *client_url;
    char *role;           /* "voter" or "learner" */
    int reachable;        /* as judged by the leader */
    uint64_t match_index; /* leader's match index for this member */
};

/* One member's status (GET /v1/status). Strings are never NULL. */
struct ballast_status {
    char *endpoint; /* the endpoint ("host:port") that answered */
    uint64_t id;
    char *name;
    char *role;      /* leader, follower, candidate, learner or unavailable */
    uint64_t leader; /* leader id, 0 when none is known */
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    int64_t revision;
    uint64_t db_bytes;
    uint64_t raft_log_bytes;
    char *version;
    struct ballast_member *members; /* the member table, n_members entries */
    size_t n_members;
};

struct ballast_client;

/* Create a client for the comma-separated @endpoints ("host:port,..."; a
 * host may be "[v6addr]", a missing port means 8379, an "http://" prefix and
 * a trailing "/" are accepted). @opts may be NULL for the defaults; it is
 * copied. Nothing is connected yet.
 * Returns the client, to be freed with ballast_client_free(), or NULL with a
 * message in @errbuf (when @errlen > 0): empty or malformed endpoint list,
 * "https" endpoints, out of memory. */
struct ballast_client *ballast_client_new(const char *endpoints, const struct ballast_options *opts,
                                          char *errbuf, size_t errlen);

/* Close the connection and free @c. NULL is a no-op. */
void ballast_client_free(struct ballast_client *c);

/* The message of the last error on @c ("" before any error). Valid until the
 * next call on @c. Never NULL. */
const char *ballast_errmsg(const struct ballast_client *c);

/* A static description of @code ("compare failed"). Never NULL. */
const char *ballast_strerror(int code);

/* The number of endpoints of @c, and endpoint @i as "host:port" (NULL when
 * @i is out of range). Valid as long as @c. */
size_t ballast_endpoint_count(const struct ballast_client *c);
const char *ballast_endpoint_at(const struct ballast_client *c, size_t i);

/* The endpoint the next call goes to first (the one that answered last). */
const char *ballast_current_endpoint(const struct ballast_client *c);

/* Free memory returned by this library as a plain buffer. NULL is a no-op. */
void ballast_free(void *p);

/* Percent-encode @len bytes at @key as the API writes keys in paths and
 * query values: every byte except A-Za-z0-9-._~ becomes %XX ('/' is %2F).
 * Returns a NUL-terminated string to free with ballast_free(), or NULL when
 * out of memory. */
char *ballast_escape(const void *key, size_t len);

/* PUT @value (@vlen bytes, may be 0) under @key (1..4096 bytes).
 * @o may be NULL (no cas, no lease, no prev). @r may be NULL; otherwise it is
 * always initialized (zeroed on error) and must be released with
 * ballast_put_result_free().
 * Errors: BALLAST_EBADARG (empty or oversized key, or rejected by the server),
 * BALLAST_ECASFAILED (cas did not hold), BALLAST_ETOOLARGE, BALLAST_ENOLEADER,
 * BALLAST_ETIMEOUT (outcome unknown), BALLAST_EUNAVAILABLE, BALLAST_ENOSPACE,
 * BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO,
 * BALLAST_ENOMEM. */
int ballast_put(struct ballast_client *c, const void *key, size_t klen, const void *value,
                size_t vlen, const struct ballast_put_opts *o, struct ballast_put_result *r);

/* Free what @r owns and zero it. NULL is a no-op. */
void ballast_put_result_free(struct ballast_put_result *r);

/* GET @key with @consistency (enum ballast_consistency). On success *@out is
 * a kv to free with ballast_kv_free(); on error *@out is NULL.
 * Errors: BALLAST_ENOTFOUND (no such key), BALLAST_EBADARG, BALLAST_ENOLEADER,
 * BALLAST_ETIMEOUT, BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED,
 * BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_get(struct ballast_client *c, const void *key, size_t klen, int consistency,
                struct ballast_kv **out);

/* Free a kv returned by ballast_get(). NULL is a no-op. Never call it on the
 * kvs inside a result struct: those go with the result. */
void ballast_kv_free(struct ballast_kv *kv);

/* DELETE @key (or, with @o->prefix, every key starting with it; an empty
 * prefix is every key). @o may be NULL (plain delete). Deleting an absent key
 * succeeds with deleted = 0. @r may be NULL; otherwise it is always
 * initialized and must be released with ballast_delete_result_free().
 * Errors: as ballast_put() (BALLAST_ECASFAILED with cas). */
int ballast_delete(struct ballast_client *c, const void *key, size_t klen,
                   const struct ballast_delete_opts *o, struct ballast_delete_result *r);

/* Free what @r owns and zero it. NULL is a no-op. */
void ballast_delete_result_free(struct ballast_delete_result *r);

/* One page of the keys starting with @prefix (@plen may be 0: all keys),
 * sorted by key. @o may be NULL (defaults). @r is always initialized and
 * must be released with ballast_range_result_free(). To read the whole
 * range, call again with o->after = the last key of the page while r->more.
 * Errors: BALLAST_EBADARG (e.g. limit over 10000), BALLAST_ENOLEADER,
 * BALLAST_ETIMEOUT, BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED,
 * BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_range(struct ballast_client *c, const void *prefix, size_t plen,
                  const struct ballast_range_opts *o, struct ballast_range_result *r);

/* Free what @r owns and zero it. NULL is a no-op. */
void ballast_range_result_free(struct ballast_range_result *r);

/* GET /v1/status from the member @c reaches (with failover); (*@out)->endpoint
 * says which. On success *@out is to be freed with ballast_status_free(); on
 * error it is NULL.
 * Errors: BALLAST_EUNAVAILABLE, BALLAST_ETIMEOUT, BALLAST_ENOLEADER,
 * BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM, BALLAST_EUNAUTHORIZED,
 * BALLAST_EFORBIDDEN. */
int ballast_status(struct ballast_client *c, struct ballast_status **out);

/* As ballast_status(), but ask exactly @endpoint ("host:port" or a client URL
 * "http://host:port"; need not be in the client's list) over a connection of
 * its own, once, without failover or retry: the attempt is bounded by the
 * client's connect and attempt timeouts. The client's own connection and
 * current endpoint are left alone; ballast_errmsg() reports failures.
 * Errors: as ballast_status(), plus BALLAST_EBADARG for a malformed @endpoint. */
int ballast_status_endpoint(struct ballast_client *c, const char *endpoint,
                            struct ballast_status **out);

/* Free @st and everything it owns. NULL is a no-op. */
void ballast_status_free(struct ballast_status *st);

/* GET /v1/members (with failover). On success *@out is an array of *@n
 * members to free with ballast_members_free(*out, *n); on error *@out is
 * NULL and *@n 0. Errors: as ballast_status(). */
int ballast_members(struct ballast_client *c, struct ballast_member **out, size_t *n);

/* Free the array @m of @n members and everything they own. */
void ballast_members_free(struct ballast_member *m, size_t n);

/* POST /v1/leader: hand leadership to voter @to, or with @to == 0 to the
 * voter the leader finds most caught up. Any member may be asked (a
 * follower relays it to the leader); the call fails over like a write. The
 * server answers once the target leads, or after its election timeout.
 * Asking for the member that already leads succeeds at once (no election).
 * On success *@new_leader (@new_leader may be NULL) is the id of the leader
 * now. Retries: a transfer to a given @to is retried like a cas write (a
 * repeat is harmless); a transfer to the best candidate is never sent again
 * once it may have reached a server, since a repeat could move leadership
 * a second time (it then fails with BALLAST_ETIMEOUT or BALLAST_EUNAVAILABLE).
 * A 504 answer is never retried: it is the leader's verdict that the target
 * did not take over within its election timeout.
 * Errors: BALLAST_EBADARG (@to is not a voter of the cluster),
 * BALLAST_ENOLEADER (no leader, no other voter, or a transfer already
 * running, on every attempt), BALLAST_ETIMEOUT (the target did not take
 * over within the election timeout: ballast_errmsg() names the leader now
 * when the server knows it; or the outcome is unknown), BALLAST_EUNAVAILABLE,
 * BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO,
 * BALLAST_ENOMEM. */
int ballast_leader_transfer(struct ballast_client *c, uint64_t to, uint64_t *new_leader);

/* POST /v1/members: add a member to the cluster, as a learner, or with
 * @voter non-zero as a voter (prefer a learner: promote it once it caught
 * up). @name and @peer_url ("host:port" of its Raft transport) are
 * required; @client_url (its HTTP API address) is required by the API
 * contract too: NULL or "" leaves the field out, for a server that lets the
 * member publish it when it starts (ballastd 0.1 answers bad_request); @id 0
 * lets the server choose the id. Adding a member identical to an existing one (same name and
 * addresses, and the same id when one is given) answers with that member
 * again (HTTP 200 instead of 201), which makes retries safe.
 * On success *@out (@out may be NULL) is the member as the server stored
 * it, one struct to free with ballast_members_free(*out, 1); on error it is
 * NULL.
 * Errors: BALLAST_EBADARG (missing name or peer_url, or rejected by the
 * server: id or address already in use by another member), BALLAST_ENOLEADER,
 * BALLAST_ETIMEOUT (outcome unknown), BALLAST_EUNAVAILABLE,
 * BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO,
 * BALLAST_ENOMEM. */
int ballast_member_add(struct ballast_client *c, const char *name, const char *peer_url,
                       const char *client_url, int voter, uint64_t id, struct ballast_member **out);

/* DELETE /v1/members/{id}: remove member @id from the cluster.
 * Returns 0 once the removal is committed. Retry rule: when an attempt may
 * have reached a server (the connection broke after sending, or a 504) and
 * a retry of the same call is answered 404, the earlier attempt removed
 * the member: the call returns 0. A 404 to a call whose attempts never
 * reached a server before is BALLAST_ENOTFOUND (no such member).
 * Errors: BALLAST_ENOTFOUND, BALLAST_EBADARG (@id 0, or refused by the
 * server, e.g. the last voter), BALLAST_ENOLEADER, BALLAST_ETIMEOUT,
 * BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN,
 * BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_member_remove(struct ballast_client *c, uint64_t id);

/* POST /v1/members/{id}/promote: make learner @id a voter. The server
 * answers once the learner has caught up with the leader's log and the
 * configuration naming it a voter is committed, or 504 when it did not
 * within the server's own time limit; promoting a voter succeeds at once.
 * Because the answer can take long, this call's attempt may use the whole
 * request_timeout_ms (not attempt_timeout_ms): set it above the server's
 * wait. Retried like a cas write (a repeat is harmless); a 504 answer is the
 * server's verdict and final. On success *@out (@out may be NULL) is the
 * member, to free with ballast_members_free(*out, 1).
 * Errors: BALLAST_ENOTFOUND (no such member), BALLAST_ETIMEOUT (did not
 * catch up in time, or outcome unknown), BALLAST_EBADARG, BALLAST_ENOLEADER,
 * BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN,
 * BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_member_promote(struct ballast_client *c, uint64_t id, struct ballast_member **out);

/* GET /v1/snapshot: save a backup of the whole store (docs/backup.md) to
 * the file @path. The body is streamed into "@path.tmp" (created or
 * truncated, mode 0600; any size, never held in memory), fsynced and
 * checked: the magic, the image length against the bytes received, and the
 * FNV-1a checksum over the image (a backup without checksum is refused).
 * Only then is it renamed to @path (replacing a file there) and the
 * directory fsynced, so @path is either the old file or a whole, checked
 * backup. On failure "@path.tmp" is removed. The LMDB image itself is not
 * opened here (libballast does not link LMDB): `ballastctl snapshot save`
 * does that too.
 * The server first writes the backup into a temporary file, then sends it:
 * the answer's head may take as long as request_timeout_ms (not
 * attempt_timeout_ms), and the body is bounded by inactivity: an attempt
 * fails when no byte arrives for attempt_timeout_ms. A GET: fails over to
 * the next endpoint freely (the partial file is truncated first).
 * On success *@revision (may be NULL) is the backup's store revision from
 * the X-Ballast-Snapshot-Revision header, else X-Ballast-Revision (0 if the
 * server sent neither).
 * Errors: BALLAST_EBADARG (@path NULL or empty), BALLAST_EIO (the file could
 * not be written, synced or renamed), BALLAST_EPROTO (the body is not a
 * whole backup or fails its checksum), BALLAST_ENOLEADER, BALLAST_ETIMEOUT,
 * BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN,
 * BALLAST_ESERVER, BALLAST_ENOMEM. */
int ballast_snapshot_save(struct ballast_client *c, const char *path, uint64_t *revision);

/* Send any request and hand back the reply body as it came: @method ("GET",
 * "PUT", ...), @target (path and query, already percent-encoded), @body of
 * @len bytes (NULL/0 for none). With @accept_json the request asks for
 * application/json, else application/msgpack. A body sent to /v1/kv/... goes
 * as application/octet-stream, any other body as the format asked for.
 * Retries follow the rules above; every method but GET and HEAD counts as a
 * write and carries a fresh request id.
 * Returns 0 for a 2xx answer. For any other answer returns its mapped error
 * (message from the error body in ballast_errmsg()) and still sets *@status,
 * *@resp_body and *@resp_len. On a transport error *@status is 0 and
 * *@resp_body NULL. *@resp_body, when set, is NUL-terminated (the NUL not
 * counted in *@resp_len) and must be freed with ballast_free().
 * Errors: any of enum ballast_err. */
int ballast_raw_request(struct ballast_client *c, const char *method, const char *target,
                        const void *body, size_t len, int accept_json, int *status,
                        void **resp_body, size_t *resp_len);

/* As ballast_raw_request(), to exactly @endpoint, once, on a connection of
 * its own, without failover (see ballast_status_endpoint()). */
int ballast_raw_request_endpoint(struct ballast_client *c, const char *endpoint, const char *method,
                                 const char *target, const void *body, size_t len, int accept_json,
                                 int *status, void **resp_body, size_t *resp_len);

#ifdef __cplusplus
}
#endif

#endif /* BALLAST_H */
