/* Watches and long-polls: streaming a key's (or a prefix's) changes from the
 * watch history, and waking blocked GETs when their key changes.
 *
 * One hub per member, owned by the API. The API hands it an exchange (GET
 * /v1/watch/...) with bl_watch_start() and tells it about every new store
 * revision with bl_watch_hub_notify() (from bl_member_on_revision). Delivery
 * is pull-based: each watch remembers the first revision it has not sent yet
 * and reads the history table (see apply.h) from there in short read
 * transactions, as its connection drains; the applier never waits for a
 * watcher and nothing is buffered per watcher beyond its unsent output
 * (at most about max_buffered bytes).
 *
 * A stream carries one event per changed key, in revision order, each
 * rendered with the kv shape of the rest of the API:
 *   {"type": "put", "kv": kv, "revision": R}
 *   {"type": "delete", "kv": kv (no "value"), "revision": R}
 *   {"type": "progress", "revision": R}        (after progress_ms without events)
 *   {"type": "cancelled", "reason": WHY, "revision": NEXT}   (the last one)
 * WHY is "slow" (more than max_lag revisions behind while its output did
 * not drain for slow_ms), "compacted" (the history it still needed was pruned; NEXT is
 * then the oldest revision kept), "shutdown" (the hub closed) or "internal"
 * (the history could not be read). NEXT is the first revision the client
 * has not received whole: a client reconnecting with ?rev=NEXT misses
 * nothing. (Only a revision whose matching events exceed max_buffered bytes
 * or 16384 events is ever split across chunks; a client cut off inside such
 * a revision gets its first events again.)
 *
 * Callbacks: every callback runs on the loop thread, never from inside the
 * call that registered it. */
#ifndef BALLAST_WATCH_H
#define BALLAST_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"
#include "member.h"

/* Defaults of struct bl_watch_opts (a zero field takes its default). */
#define BL_WATCH_MAX_LAG_DEFAULT      5000
#define BL_WATCH_MAX_BUFFERED_DEFAULT (1u << 20)
#define BL_WATCH_PROGRESS_MS_DEFAULT  10000
#define BL_WATCH_SLOW_MS_DEFAULT      1000

/* At most this many headers may be passed to bl_watch_start(). */
#define BL_WATCH_MAX_HEADERS 16

struct bl_watch_opts {
    uint64_t max_lag;     /* revisions behind (while blocked) before "slow"; default 5000 */
    size_t max_buffered;  /* bytes of unsent output per watch; default 1 MiB */
    unsigned progress_ms; /* progress event after this long without events; default 10000 */
    unsigned slow_ms;     /* blocked this long while max_lag behind: "slow"; default 1000 */
};

/* The stream formats. */
enum bl_watch_format {
    BL_WATCH_NDJSON = 0,  /* application/x-ndjson: one JSON object a line */
    BL_WATCH_MSGPACK = 1, /* application/msgpack: one map per event, back to back */
    BL_WATCH_SSE = 2,     /* text/event-stream: "data: JSON\n\n" per event */
};

struct bl_watch_hub;
struct bl_watch_wait;

/* Create a hub on @loop for member @m (which must outlive it). @o may be
 * NULL for the defaults. On success *@out is owned by the caller until
 * bl_watch_hub_close()'s callback. Returns BL_OK or BL_ENOMEM. */
int bl_watch_hub_new(uv_loop_t *loop, struct bl_member *m, const struct bl_watch_opts *o,
                     struct bl_watch_hub **out);

/* The applied store revision rose to @revision (its LMDB commit is done).
 * Cheap: it only schedules a delivery round on the loop, so it may be
 * called from inside the applier. Ignored once the hub is closing. */
void bl_watch_hub_notify(struct bl_watch_hub *h, uint64_t revision);

/* Take over @ex (a GET /v1/watch/...) and stream the events of @key (or,
 * with @prefix, of every key starting with @key; an empty @key with @prefix
 * is every key) from revision @start_rev (0: the current revision + 1) in
 * @format (enum bl_watch_format).
 *
 * @key is copied. @headers/@n (at most BL_WATCH_MAX_HEADERS) are the
 * standard headers of the reply; they are written into the reply's head
 * before this returns (with Content-Type added here), so they need not
 * outlive the call.
 *
 * Returns BL_OK: the hub owns @ex from now on and ends it (the caller must
 * not touch it again). Otherwise nothing was sent and @ex is still the
 * caller's to answer: BL_ECOMPACTED with *@compact_rev set to the oldest
 * revision kept (410); BL_EBADREQ for an unknown format, an empty key
 * without @prefix, a key over BL_KEY_MAX bytes or too many headers;
 * BL_ESHUTDOWN when the hub is closing; BL_ENOMEM; a store error (BL_EIO,
 * BL_ECORRUPT) when the history could not be read. */
int bl_watch_start(struct bl_watch_hub *h, struct bl_http_exchange *ex, const uint8_t *key,
                   size_t key_len, bool prefix, uint64_t start_rev, int format,
                   const struct bl_http_header *headers, unsigned n, uint64_t *compact_rev);

/* Long-poll: call @cb(@arg, status) exactly once, when
 *   - a revision > @index changed @key (with @prefix: a key starting with
 *     @key), or @index + 1 is below the oldest revision kept: BL_OK (at once,
 *     on the next loop iteration, if that has already happened);
 *   - @timeout_ms passed first (0: no timeout): BL_ETIMEOUT;
 *   - the hub closes first: BL_ESHUTDOWN (also for a wait registered while
 *     it closes).
 * A wake-up may come early (BL_OK without a matching change) when a
 * history record could not be read, or one revision changed too many keys
 * to check against every wait in one round; the caller answers with what
 * it reads then, as after any wake-up. @key is copied (the caller checks
 * its length). Returns the wait, owned by the hub, or NULL when out of
 * memory (then @cb is never called). The handle may be passed to
 * bl_watch_wait_cancel() until @cb has been called, not after: the hub frees
 * it once @cb returns. */
struct bl_watch_wait *bl_watch_wait(struct bl_watch_hub *h, const uint8_t *key, size_t key_len,
                                    bool prefix, uint64_t index, unsigned timeout_ms,
                                    void (*cb)(void *arg, int status), void *arg);

/* Cancel @w (the client went away): its callback is not called, and the
 * hub frees it. @w must not be used afterwards. */
void bl_watch_wait_cancel(struct bl_watch_wait *w);

/* Close @h: end every watch with a "shutdown" cancelled event, call every
 * pending wait back with BL_ESHUTDOWN (from inside this call), close the
 * timers, then free @h and call @cb(@arg). Until then bl_watch_start()
 * returns BL_ESHUTDOWN, a new bl_watch_wait() is answered BL_ESHUTDOWN and
 * notifies are ignored.
 *
 * Close the hub before the HTTP server: the server's close waits for every
 * exchange a handler holds, and a hub only notices that a watch's
 * connection closed at its next round (within a second). */
void bl_watch_hub_close(struct bl_watch_hub *h, void (*cb)(void *arg), void *arg);

/* Number of open watches (for metrics and tests). */
unsigned bl_watch_hub_count(const struct bl_watch_hub *h);

/* Number of pending long-poll waits (for metrics and tests). */
unsigned bl_watch_hub_waits(const struct bl_watch_hub *h);

#endif /* BALLAST_WATCH_H */
