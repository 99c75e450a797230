/* libballast: the client library of Ballast, a replicated key-value store.
 *
 * A client object talks HTTP/1.1 to one member at a time over one keep-alive
 * connection, sends msgpack-accepting requests and decodes the replies into
 * the structs below. Calls are blocking and run one at a time; a client is
 * not thread-safe (use one per thread). Nothing is connected until the first
 * call. A watch (ballast_watch_open) has a connection of its own and refers
 * to its client: same thread, and the client outlives it.
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
 *     revisions). A write whose answer was lost is only ever resent with the
 *     id of its first attempt: this holds for put, delete, txn, lease grant
 *     and lease revoke alike. Setting no_retry_unsent_writes stops those
 *     retries of possibly-sent writes (the call then fails with
 *     BALLAST_ETIMEOUT or BALLAST_EUNAVAILABLE and the write may or may not
 *     have been applied), except for cas writes (put/delete with cas >= 0),
 *     which can never apply twice, and lease keepalives, which repeat
 *     harmlessly (they carry no id): those are always retried.
 * Every other answer (2xx, 4xx, 500, 507, ...) is final. Calls that change
 * the member table follow the same rules, with these answers to "could the
 * retry do harm": an add is answered by the server as the first attempt was
 * when the identical member exists already (idempotent by identity); a
 * promote of a voter is a no-op, so it is retried like a cas write; and a
 * remove retried after an attempt that may have been executed may find the
 * member gone: that 404 means the earlier attempt removed it, and
 * ballast_member_remove() reports success (see there); a lease revoke
 * likewise. A stale keep-alive connection found closed by the server is
 * reopened to the same endpoint without counting as an attempt; if it was
 * found closed only after a write was sent on it, that write counts as
 * possibly sent (so with no_retry_unsent_writes it fails with
 * BALLAST_EUNAVAILABLE instead).
 * When a write call gives up with BALLAST_ETIMEOUT or BALLAST_EUNAVAILABLE
 * its outcome is unknown. To retry it safely later, send it under the same
 * id again: ballast_txn_retry() for a txn, ballast_put_opts.request_id (and
 * ballast_new_request_id()) for a put. A fresh call is a new write.
 * A long-poll (ballast_get_wait, range with index) extends the attempt and
 * call deadlines by its wait. A watch reconnects by itself after a lost
 * connection, to the next endpoint, and resumes right after the last event
 * it delivered (at last + 1, or at the last revision skipping what it
 * delivered of it when that revision may have more events): see the watch
 * section below.
 *
 * Ownership. Everything a call returns belongs to the caller and stays
 * valid until the caller frees it; none of it refers to the client, which
 * may be freed first. Inputs are only read during the call (a txn builder
 * copies keys and values). Who frees what:
 *   - struct ballast_kv from ballast_get()/_wait(): ballast_kv_free();
 *     kvs inside a result struct go with that result;
 *   - put, delete, range, txn results and lease info (structs the caller
 *     provides): ballast_put_result_free(), ballast_delete_result_free(),
 *     ballast_range_result_free(), ballast_txn_result_free(),
 *     ballast_lease_info_free() free what they hold (the struct itself is
 *     the caller's);
 *   - ballast_status(): ballast_status_free(); member arrays:
 *     ballast_members_free(); lease lists, ballast_escape() strings and raw
 *     reply bodies: ballast_free();
 *   - a txn: ballast_txn_free(); a watch: ballast_watch_close();
 *   - a watch event is the one exception: it points into the watch and is
 *     valid until the next ballast_watch_next() or ballast_watch_close() on
 *     that watch (no allocation per event); copy what must live longer;
 *   - strings from ballast_errmsg(), ballast_txn_request_id() and the
 *     endpoint accessors belong to the library (see each). */
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
    BALLAST_ECOMPACTED = -15,    /* compacted (410): the revision asked for is no longer kept;
                                    ballast_compact_revision() says the oldest kept */
    BALLAST_ECANCELLED = -16,    /* the server cancelled the watch (see ballast_watch_next) */
    BALLAST_EAGAIN = -17,        /* no event within the timeout: call again (watch) */
};

/* Read consistency (contract: ?consistency=). */
enum ballast_consistency {
    BALLAST_LINEARIZABLE = 0, /* default: reflects every write acknowledged before the call */
    BALLAST_SERIALIZABLE = 1, /* the answering member's applied state; may be stale */
};

/* "No compare" value of the cas fields. */
#define BALLAST_NO_CAS (-1)

/* Size of a buffer for ballast_new_request_id() (32 hex digits and a NUL). */
#define BALLAST_REQUEST_ID_SIZE 33

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
    int64_t cas;     /* BALLAST_NO_CAS: none; 0: only if absent; N: only if mod_revision == N */
    int64_t lease;   /* lease id to attach, 0 for none (a put without lease detaches) */
    int prev;        /* non-zero: return the previous kv in the result */
    unsigned ttl_ms; /* > 0: give the key a lease of its own with this TTL (?ttl=),
                        granted in the same write; the result names it. Not with
                        lease. The server counts whole seconds (at least 2 s). */
    const char *request_id; /* NULL: a fresh random id for this call (the default).
                               Else 1..64 bytes of visible ASCII, sent as is: call
                               again with the same id to retry a put that failed
                               with BALLAST_ETIMEOUT or BALLAST_EUNAVAILABLE
                               without applying it twice. */
};
/* clang-format off */
#define BALLAST_PUT_OPTS_INIT {BALLAST_NO_CAS, 0, 0, 0, NULL}
/* clang-format on */

/* Result of ballast_put(). Free with ballast_put_result_free(). */
struct ballast_put_result {
    int64_t revision;        /* store revision of this write */
    int64_t lease;           /* with ttl_ms: the id of the key's own lease, else 0 */
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
    int keys_only;    /* non-zero: values left out (kv.value is empty) */
    int count_only;   /* non-zero: no kvs, only count */
    int consistency;  /* enum ballast_consistency */
    int64_t index;    /* > 0: long-poll: answer once a key of the range changed after
                         revision index, or when wait_ms passed (see ballast_get_wait) */
    unsigned wait_ms; /* with index: the longest wait; 0: the server's default (5 min) */
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

/* Options of ballast_get_wait(). A zeroed struct is a plain linearizable get. */
struct ballast_get_opts {
    int consistency;  /* enum ballast_consistency */
    int64_t index;    /* > 0: long-poll (Consul's blocking query): answer once the key
                         changed after revision index, or when wait_ms passed; 0: at once */
    unsigned wait_ms; /* with index: the longest wait (server cap 10 min); 0: the
                         server's default (5 min) */
};

/* Long-poll GET of @key: as ballast_get(), but with @o->index > 0 the server
 * holds the answer until the key changes after that revision or @o->wait_ms
 * passes, then answers the key as it is then (a kv, or BALLAST_ENOTFOUND).
 * *@revision (@revision may be NULL) is the store revision the answer
 * reflects (its X-Ballast-Revision header; 0 when absent), set on success
 * and with BALLAST_ENOTFOUND alike: pass it as the next index to loop
 *     for (int64_t idx = 0;;) { o.index = idx; rv = ballast_get_wait(c, k, n, &o, &kv, &idx); ... }
 * The call's attempt and overall deadlines are extended by the wait (plus
 * 1/16 for jitter), so the client's timeouts need not cover it. A GET:
 * retried and failed over like any read (a retry waits again).
 * On success *@out is a kv to free with ballast_kv_free(); else NULL. @o may
 * be NULL (a plain get). Errors: as ballast_get(), BALLAST_EBADARG also for
 * a negative index. */
int ballast_get_wait(struct ballast_client *c, const void *key, size_t klen,
                     const struct ballast_get_opts *o, struct ballast_kv **out, int64_t *revision);

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

/* The oldest revision the server still keeps, from the last answer that
 * was 410 compacted (BALLAST_ECOMPACTED); 0 when not known. */
int64_t ballast_compact_revision(const struct ballast_client *c);

/* Write a fresh random request id (32 hex digits and a NUL) into @id, for
 * ballast_put_opts.request_id: an id the caller keeps, to retry a write
 * safely after the library gave up on it. */
void ballast_new_request_id(struct ballast_client *c, char id[BALLAST_REQUEST_ID_SIZE]);

/* --- transactions (POST /v1/txn) -------------------------------------------
 *
 * A txn is built with the ballast_txn_* functions, then sent with
 * ballast_txn(): if every compare holds, the success ops run, else the
 * failure ops; atomically, in one revision. Keys and values are copied into
 * the txn when added: the caller's buffers are not used after the call.
 * Building never talks to a server. A builder function that fails (bad
 * argument, out of memory) returns the error and leaves it in the txn:
 * ballast_txn() then fails with it (and its message) without sending, so a
 * caller may check only the final result.
 *
 *     struct ballast_txn *t = ballast_txn_new();
 *     ballast_txn_compare(t, "n", 1, BALLAST_CMP_MOD, BALLAST_CMP_EQ, 41);
 *     ballast_txn_put(t, BALLAST_TXN_SUCCESS, "n", 1, "8", 1, 0);
 *     ballast_txn_get(t, BALLAST_TXN_FAILURE, "n", 1, 0, 0, 0);
 *     rv = ballast_txn(c, t, &r);   ... ballast_txn_result_free(&r);
 *     ballast_txn_free(t); */

/* What a compare looks at: the value (bytewise), or a number of the key.
 * A missing key has version, create, mod and lease 0, and a value compare
 * on it is false whatever the op. */
enum ballast_cmp_target {
    BALLAST_CMP_VALUE = 0,
    BALLAST_CMP_VERSION = 1,
    BALLAST_CMP_CREATE = 2, /* create_revision */
    BALLAST_CMP_MOD = 3,    /* mod_revision */
    BALLAST_CMP_LEASE = 4,
};

enum ballast_cmp_op {
    BALLAST_CMP_EQ = 0, /* == */
    BALLAST_CMP_NE = 1, /* != */
    BALLAST_CMP_LT = 2, /* <  */
    BALLAST_CMP_GT = 3, /* >  */
};

/* Which list of ops an op goes to. */
enum ballast_txn_branch {
    BALLAST_TXN_SUCCESS = 0, /* run when every compare holds */
    BALLAST_TXN_FAILURE = 1, /* run otherwise */
};

/* The kind of an op and of its result. */
enum ballast_op_type {
    BALLAST_OP_PUT = 1,
    BALLAST_OP_DELETE = 2,
    BALLAST_OP_GET = 3,
};

/* The result of one op of the list that ran. */
struct ballast_txn_op_result {
    int type;               /* enum ballast_op_type */
    int64_t deleted;        /* DELETE: keys deleted */
    struct ballast_kv *kvs; /* GET: n kvs sorted by key (NULL when n is 0) */
    size_t n;
    int64_t count; /* GET: keys in the whole range */
    int more;      /* GET: non-zero when more keys follow than were returned */
};

/* Result of ballast_txn(). Free with ballast_txn_result_free(). */
struct ballast_txn_result {
    int succeeded;    /* non-zero: the compares held and the success ops ran */
    int64_t revision; /* store revision after the txn (unchanged if nothing changed) */
    struct ballast_txn_op_result *results; /* one per op of the list that ran, in order */
    size_t n_results;
};

struct ballast_txn;

/* A new, empty txn, to free with ballast_txn_free(); NULL when out of memory. */
struct ballast_txn *ballast_txn_new(void);

/* Free @t and the copies it holds. NULL is a no-op. */
void ballast_txn_free(struct ballast_txn *t);

/* Add a compare of a number of @key (@target not BALLAST_CMP_VALUE) with
 * @number. Returns 0, BALLAST_EBADARG (empty or oversized key, bad target or
 * op) or BALLAST_ENOMEM, and then the txn fails (see above). */
int ballast_txn_compare(struct ballast_txn *t, const void *key, size_t klen, int target, int op,
                        int64_t number);

/* Add a compare of @key's value with the @vlen bytes at @value (bytewise).
 * Returns as ballast_txn_compare(). */
int ballast_txn_compare_value(struct ballast_txn *t, const void *key, size_t klen, int op,
                              const void *value, size_t vlen);

/* Add to list @branch (enum ballast_txn_branch) a put of @value under @key,
 * attached to @lease (0: none; a lease that does not exist fails the whole
 * txn with BALLAST_ENOTFOUND). Returns 0, BALLAST_EBADARG (bad key, branch,
 * NULL value, negative lease) or BALLAST_ENOMEM; see above. */
int ballast_txn_put(struct ballast_txn *t, int branch, const void *key, size_t klen,
                    const void *value, size_t vlen, int64_t lease);

/* Add to list @branch a delete of @key, or with @prefix of every key
 * starting with it (an empty key with @prefix: every key). Returns as
 * ballast_txn_put(). */
int ballast_txn_delete(struct ballast_txn *t, int branch, const void *key, size_t klen, int prefix);

/* Add to list @branch a get of @key (or with @prefix, of the range), at most
 * @limit kvs (0: the server's default, 1000), keys only with @keys_only. It
 * sees the writes of the ops before it in the list. Returns as
 * ballast_txn_put(). */
int ballast_txn_get(struct ballast_txn *t, int branch, const void *key, size_t klen, int prefix,
                    unsigned limit, int keys_only);

/* Send @t (msgpack) and decode the answer into @r, which is always
 * initialized (zeroed on error) and must be released with
 * ballast_txn_result_free(). The ops of @t are not changed (it may be
 * sent again); @t keeps the request id of this send for ballast_txn_retry().
 * A txn whose compares fail is not an error (r->succeeded is 0).
 * Retries: a txn is a write. Each ballast_txn() call draws a fresh request
 * id and sends it on every attempt of that call, so a txn whose answer was
 * lost is retried (failover included) only with the same id: the server
 * applies it at most once and answers the retry with the first outcome.
 * With no_retry_unsent_writes it is not resent once it may have reached a
 * server. When the call gives up with BALLAST_ETIMEOUT or
 * BALLAST_EUNAVAILABLE the outcome is unknown: ballast_txn_retry() sends it
 * again under the same id (safe within the server's window of 100,000
 * revisions); ballast_txn() would send it as a new write.
 * Errors: BALLAST_EBADARG (a builder error, or refused by the server: too
 * many ops, two writes of one key, ...), BALLAST_ENOTFOUND (a put names a
 * lease that does not exist), BALLAST_ETOOLARGE, BALLAST_ENOSPACE,
 * BALLAST_ENOLEADER, BALLAST_ETIMEOUT, BALLAST_EUNAVAILABLE,
 * BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN, BALLAST_ESERVER,
 * BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_txn(struct ballast_client *c, struct ballast_txn *t, struct ballast_txn_result *r);

/* Send @t again under the request id of the last ballast_txn() on it (as
 * ballast_txn() when there was none). Same results and errors. */
int ballast_txn_retry(struct ballast_client *c, struct ballast_txn *t,
                      struct ballast_txn_result *r);

/* The request id @t was last sent with ("" before the first send). Valid
 * until the next ballast_txn() on @t or ballast_txn_free(). */
const char *ballast_txn_request_id(const struct ballast_txn *t);

/* Free what @r owns (the results and their kvs) and zero it. NULL is a no-op. */
void ballast_txn_result_free(struct ballast_txn_result *r);

/* --- leases (POST /v1/lease, ...) ------------------------------------------
 *
 * A lease is granted with a TTL in seconds and kept alive by the client; when
 * it expires (the leader decides, through Raft) or is revoked, every key
 * attached to it is deleted in one revision. Lease ids are 1..2^63-1. */

/* A lease as granted or listed. */
struct ballast_lease {
    int64_t id;
    int64_t ttl;         /* grant: the TTL granted (raised to the server's minimum, 2 s) */
    int64_t granted_ttl; /* list: the TTL it was granted with; grant: = ttl */
};

/* One key attached to a lease; key is followed by a NUL byte not counted in
 * key_len. */
struct ballast_key {
    const char *key;
    size_t key_len;
};

/* Result of ballast_lease_get(). Free with ballast_lease_info_free(). */
struct ballast_lease_info {
    int64_t id;
    int64_t ttl;              /* seconds remaining, rounded up */
    int64_t granted_ttl;      /* the TTL it was granted (or last kept alive) with */
    struct ballast_key *keys; /* n_keys attached keys, or NULL */
    size_t n_keys;
    int more; /* non-zero: more keys than the server lists (10000) */
};

/* POST /v1/lease: grant a lease of @ttl seconds (1..10 days); @id 0 lets the
 * leader pick the id, else it is @id (in use: BALLAST_EBADARG). On success
 * *@out (may be NULL) holds the id and the TTL granted. A write: carries a
 * request id, retried as a put is (a retry after a lost answer gets the first
 * answer again, so it never grants two leases).
 * Errors: BALLAST_EBADARG, BALLAST_ENOSPACE, BALLAST_ENOLEADER,
 * BALLAST_ETIMEOUT, BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED,
 * BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_lease_grant(struct ballast_client *c, int64_t ttl, int64_t id,
                        struct ballast_lease *out);

/* POST /v1/lease/{id}/keepalive: give lease @id its full TTL again; on
 * success *@ttl (may be NULL) is that TTL in seconds. Call it well within
 * the TTL (a third of it is usual). A keepalive only moves the leader's
 * deadline: repeating it is harmless, so it carries no request id and is
 * always retried and failed over, even with no_retry_unsent_writes.
 * Errors: BALLAST_ENOTFOUND (the lease expired or was revoked: its keys are
 * gone), BALLAST_EBADARG, BALLAST_ENOLEADER, BALLAST_ETIMEOUT,
 * BALLAST_EUNAVAILABLE, BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN,
 * BALLAST_ESERVER, BALLAST_EPROTO, BALLAST_ENOMEM. */
int ballast_lease_keepalive(struct ballast_client *c, int64_t id, int64_t *ttl);

/* GET /v1/lease/{id}: @r is always initialized and must be released with
 * ballast_lease_info_free(). A read: retried and failed over.
 * Errors: BALLAST_ENOTFOUND (no such lease), as ballast_lease_keepalive(). */
int ballast_lease_get(struct ballast_client *c, int64_t id, struct ballast_lease_info *r);

/* Free what @r owns and zero it. NULL is a no-op. */
void ballast_lease_info_free(struct ballast_lease_info *r);

/* DELETE /v1/lease/{id}: revoke lease @id, deleting its keys in one
 * revision. On success *@revision and *@deleted (each may be NULL) are the
 * store revision of the revoke and the number of keys deleted. A write:
 * carries a request id. Retry rule (as ballast_member_remove()): when an
 * attempt may have reached a server and a retry is answered 404, the
 * earlier attempt revoked it (or the lease expired meanwhile): the call
 * returns 0 with *revision and *deleted 0 (not known).
 * Errors: BALLAST_ENOTFOUND (no such lease), as ballast_lease_grant(). */
int ballast_lease_revoke(struct ballast_client *c, int64_t id, int64_t *revision, int64_t *deleted);

/* GET /v1/leases: every lease (id and granted_ttl; ttl when the server
 * names it, else 0). On success
 * *@out is an array of *@n leases, one allocation to free with
 * ballast_free(); on error NULL and 0. Errors: as ballast_lease_get(). */
int ballast_lease_list(struct ballast_client *c, struct ballast_lease **out, size_t *n);

/* --- watch (GET /v1/watch/{key}) --------------------------------------------
 *
 * A watch is a stream of the changes to a key or a prefix, from a revision
 * on, read one event at a time with ballast_watch_next(). It has a
 * connection of its own (the client's calls go on meanwhile, from the same
 * thread) and refers to the client, which must outlive it; errors are
 * reported through ballast_errmsg() of that client.
 *
 * Resuming. When the connection is lost (closed, reset, or silent for
 * idle_timeout_ms: the server sends a progress event every 10 s when idle)
 * or the member announces its shutdown (a "cancelled" event with reason
 * "shutdown"), ballast_watch_next() reconnects by itself to the next
 * endpoint, with the client's failover rules, and resumes right after the
 * last event it delivered: at revision last + 1 when that revision is
 * known to be complete (a later event, a progress event or the server's
 * "revision" NEXT said so), else at the last revision itself, skipping the
 * events of it already delivered (the server sends the events of one
 * revision, e.g. a txn, in the same order every time). So no event is
 * delivered twice, out of order, or lost, as long as the server still keeps
 * the revision: if not, the watch ends with BALLAST_ECOMPACTED. */

/* Options of ballast_watch_open(). A zeroed struct: one key, from now. */
struct ballast_watch_opts {
    int prefix;               /* non-zero: every key starting with the key (empty: all) */
    int64_t rev;              /* first revision to deliver; 0: only changes after now */
    unsigned idle_timeout_ms; /* no byte for this long: the connection is lost;
                                 default 30000 (three progress intervals) */
    int no_reconnect;         /* non-zero: never reconnect: a lost connection ends the
                                 watch (BALLAST_EUNAVAILABLE), and a shutdown
                                 cancel is delivered like any cancel */
};

enum ballast_event_type {
    BALLAST_EVENT_PUT = 1,
    BALLAST_EVENT_DELETE = 2,    /* kv holds the key and mod_revision, no value */
    BALLAST_EVENT_PROGRESS = 3,  /* every event up to revision has been delivered */
    BALLAST_EVENT_CANCELLED = 4, /* the server ended the watch; the last event */
};

/* One event. kv.key, kv.value and reason point into memory of the watch
 * and stay valid until the next ballast_watch_next() or
 * ballast_watch_close() on it; copy what must live longer. */
struct ballast_event {
    int type;             /* enum ballast_event_type */
    int64_t revision;     /* PUT/DELETE: the revision of the change; PROGRESS: every
                             event up to it was delivered; CANCELLED: NEXT, the first
                             revision not delivered (a new watch resumes there) */
    struct ballast_kv kv; /* PUT/DELETE: the key (and the value of a PUT) */
    const char *reason;   /* CANCELLED: the server's reason ("slow"); else "" */
};

struct ballast_watch;

/* Open a watch on @key (@klen may be 0 with o->prefix) and wait until the
 * server accepted it (a 200 head): every change committed after that is
 * delivered, even with rev 0. @o may be NULL (one key, from now). The
 * request is a GET with failover and retries. On success *@out is the
 * watch, to close with ballast_watch_close(); on error NULL.
 * Errors: BALLAST_ECOMPACTED (o->rev is older than the history the server
 * keeps; ballast_compact_revision() says the oldest kept), BALLAST_EBADARG,
 * BALLAST_ENOLEADER, BALLAST_ETIMEOUT, BALLAST_EUNAVAILABLE,
 * BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN, BALLAST_ESERVER, BALLAST_EPROTO,
 * BALLAST_ENOMEM. */
int ballast_watch_open(struct ballast_client *c, const void *key, size_t klen,
                       const struct ballast_watch_opts *o, struct ballast_watch **out);

/* Wait at most @timeout_ms (negative: without limit; 0: only what already
 * arrived) for the next event and describe it in *@ev (see struct
 * ballast_event for how long its memory lives). Reconnecting after a lost
 * connection happens in here and may take the client's request_timeout_ms
 * whatever @timeout_ms. Progress events are delivered too.
 * A cancel other than a shutdown (e.g. "slow": the watcher fell too far
 * behind) is delivered as a BALLAST_EVENT_CANCELLED event, the last one:
 * later calls fail with BALLAST_ECANCELLED; open a new watch at its revision
 * to go on.
 * Errors: BALLAST_EAGAIN (no event within @timeout_ms; the watch is fine),
 * BALLAST_ECANCELLED (after the cancelled event), BALLAST_ECOMPACTED (the
 * revision to resume at is no longer kept: final), BALLAST_EPROTO (a
 * malformed stream: the connection is dropped), BALLAST_EUNAVAILABLE,
 * BALLAST_ETIMEOUT, BALLAST_ENOLEADER, BALLAST_ESERVER (reconnecting failed
 * on every endpoint, or max_attempts connections in a row were lost in
 * this call), BALLAST_ENOMEM. After these last ones the watch is
 * still usable: the next call tries again from where it was. Errors the
 * server gives to a reconnect that no retry can mend (BALLAST_EBADARG,
 * BALLAST_ENOTFOUND, BALLAST_EUNAUTHORIZED, BALLAST_EFORBIDDEN) are final,
 * as is BALLAST_EUNAVAILABLE with no_reconnect. */
int ballast_watch_next(struct ballast_watch *w, int timeout_ms, struct ballast_event *ev);

/* The endpoint @w streams from (or connects to next, between connections):
 * a watch keeps its own place in the endpoint list, apart from its client's
 * ballast_current_endpoint(). The string belongs to the client. */
const char *ballast_watch_endpoint(const struct ballast_watch *w);

/* Close the watch's connection and free @w. NULL is a no-op. */
void ballast_watch_close(struct ballast_watch *w);

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
