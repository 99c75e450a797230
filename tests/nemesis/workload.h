/* A register workload for fault-injection tests: client threads doing
 * linearizable reads, blind writes and compare-and-swaps on a few keys of a
 * running Ballast cluster through libballast, recording every operation in a
 * history (history.h) for the linearizability checker (lincheck.h).
 *
 * Each client thread has its own ballast_client (a client is not
 * thread-safe) and loops until workload_stop():
 *   - pick one of o->keys active keys at random; a key is retired once it
 *     has had o->ops_per_key operations and replaced by a fresh key id, so
 *     no key ever has more than ops_per_key operations (this bounds the
 *     checker's work per key);
 *   - do a READ (linearizable get; absent = 0), a WRITE of a value unique
 *     in the whole run ((client + 1) * 1e9 + seq, as decimal text) or a CAS
 *     (a txn: compare value == expect, or version == 0 when expect is 0,
 *     then put a fresh unique value), expect being the last value this
 *     client read of that key (0 if none);
 *   - record invoke and complete times (CLOCK_MONOTONIC ns) and a status:
 *     READ: OK on success or not-found, else FAIL (a read changes nothing).
 *     WRITE/CAS: OK when answered (CAS with out_ok = whether it swapped);
 *     BALLAST_EBADARG: FAIL (never applied); any other error: UNKNOWN (the
 *     library may have sent it, with retries under one request id: it may
 *     have applied at any time after its invoke).
 * Key names are <prefix><key id> (decimal key id, as hist_op.key).
 *
 * Ownership: workload_start() copies what it needs from @o (endpoints and
 * prefix included); the struct workload it returns belongs to the caller
 * and is freed by workload_stop(), which must be called exactly once. The
 * ops are appended (copied) to the caller's history @out, which stays the
 * caller's (hist_init() before, hist_free() after). Nothing in here calls
 * Check: errors are returned or counted, so the threads never abort a
 * test. */
#ifndef BALLAST_TESTS_WORKLOAD_H
#define BALLAST_TESTS_WORKLOAD_H

#include "history.h"

struct workload_opts {
    const char *endpoints;  /* comma-separated "host:port" list of the members */
    int clients;            /* threads, each with its own ballast_client */
    int keys;               /* active keys at a time, e.g. 4 */
    int ops_per_key;        /* retire a key after this many ops, e.g. 150 */
    const char *prefix;     /* key names: <prefix><key id> */
    unsigned op_timeout_ms; /* the clients' request_timeout_ms, e.g. 2000 */
    uint64_t seed;          /* the clients' choices of key, op and pause; 0: from the clock.
                               The same seed replays the same choices (the timing, so
                               the interleaving, is the machine's) */
};

struct workload;

/* Start the client threads. Returns 0 and *@out, or -1 (bad options, out
 * of memory, a client or thread that could not be created; nothing is left
 * running then). */
int workload_start(const struct workload_opts *o, struct workload **out);

/* Stop the threads (each finishes the op it is in: at most about
 * op_timeout_ms), append every op they recorded to @out (may be NULL),
 * grouped by client, and free @w. Returns 0, or -1 when an op could not be
 * recorded (out of memory, in a client or here): the history is incomplete
 * then and must not be judged. */
int workload_stop(struct workload *w, struct history *out);

#endif /* BALLAST_TESTS_WORKLOAD_H */
