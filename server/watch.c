/* Watches and long-polls, served from the watch history.
 *
 * Happy path. bl_watch_start() checks the start revision against the
 * history (410 below the oldest revision kept), begins a chunked reply and
 * links a watcher that knows only where it is: next_rev, the first revision
 * not yet sent, and next_ev, how many events of next_rev are done (non-zero
 * only inside a revision too large for one round). Delivery runs in rounds:
 * a round begins one read transaction, reads the current revision R and the
 * oldest kept revision from it (one consistent snapshot), and lets each
 * watcher read the history records next_rev..R, filter their events by key
 * or prefix, render the matching ones with bl_doc into the hub's batch
 * buffer and hand the batch to bl_http_stream_write() as one chunk. Then it
 * checks the long-poll waits against the new records, ends the transaction
 * and only then calls the fired waits back (a callback may start or cancel
 * anything). A round runs on the next loop iteration after a notify (the
 * pace timer at 0 ms: many commits in one iteration make one round), after
 * a watch or a wait that needs history starts, and on the tick timer (every
 * progress_ms/10, at most 1 s, while watches exist) for progress events and
 * to notice clients that left.
 *
 * Bounds. A watcher's turn reads at most WATCHER_TURN records plus events
 * and WATCHER_REVS revisions; a round gives turns until ROUND_BUDGET is
 * spent, and the next round, on the next loop iteration, starts with the
 * watcher that did not get its turn (round robin), so the loop never stalls
 * and the read transaction is short. A watcher stops filling once its
 * unsent bytes plus the batch reach low water (max_buffered / 2) at a
 * revision boundary; a revision that would pass max_buffered or the turn
 * is left for a later round whole (see fill_revision() for the one
 * exception, a revision too large to ever fit). The HTTP layer has no
 * "drained" callback, so while some watcher is behind and blocked or
 * filled up, the pace timer polls every PACE_MS. The batch and the document
 * writer are the hub's, reused by every watcher; a watcher holds no buffer
 * of its own, so its memory is its struct plus its unsent output.
 *
 * Failure modes. A client that left (bl_http_exchange_gone, or a write that
 * says BL_EUNAVAILABLE/BL_ENOMEM) is ended silently. A watcher is blocked
 * when its output cannot take one more event (unsent >= low water, or the
 * next event does not fit under max_buffered); one blocked for slow_ms or
 * more (a client that read nothing for that long, not a short stall of a
 * client that is catching up) while more than max_lag revisions behind
 * gets {"type":"cancelled","reason":"slow","revision":next_rev}, written
 * past the limit with bl_http_stream_write_final(), and its stream ends;
 * one whose next_rev was pruned ends with reason "compacted" and the
 * oldest kept revision; a history record that cannot be read or decoded
 * ends it with "internal".
 * A read transaction that cannot begin is retried at the pace. Waits whose
 * index is below the history fire at once; a revision that changed too
 * many keys to check against every wait within WAIT_WORK wakes the waits
 * still behind it early (BL_OK: the caller re-reads, as after any wake-up).
 *
 * Ownership. The hub owns its watchers (and their exchanges, until it ends
 * them) and its waits; a wait is freed in the close callback of its timer
 * after its callback ran or it was cancelled. The hub frees itself after
 * every handle closed, then calls the close callback. */
#include "watch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "doc.h"
#include "error.h"
#include "log.h"
#include "store.h"

#define PACE_MS        25           /* poll blocked watchers this often */
#define WATCH_SNDBUF   (128 * 1024) /* SO_SNDBUF of a watch connection */
#define ROUND_BUDGET   65536        /* records and events one round reads ... */
#define WATCHER_TURN   16384        /* ... and one watcher's turn in it */
#define WATCHER_REVS   1024         /* revisions one watcher's turn reads */
#define WAIT_REVS      1024         /* revisions the waits read per round */
#define WAIT_WORK      4000000      /* event x wait visits per round (a few ms) */
#define TICK_MIN_MS    5
#define TICK_MAX_MS    1000
#define BATCH_KEEP_MAX (4u << 20) /* a bigger batch buffer is freed after the round */
#define META_REVISION  "revision" /* the store revision in the meta table (apply.c) */

struct watcher {
    struct bl_watch_hub *hub;
    struct watcher *prev, *next;
    struct bl_http_exchange *ex;
    int format;             /* enum bl_watch_format */
    bool prefix;            /* key is a prefix */
    uint64_t next_rev;      /* first revision not sent whole */
    uint32_t next_ev;       /* events of next_rev already handled */
    uint64_t last_sent;     /* uv_now() of the last event or progress written */
    bool blocked;           /* its output could not take one more event ... */
    uint64_t blocked_since; /* ... since this uv_now() */
    size_t key_len;
    uint8_t key[]; /* key_len bytes */
};

enum wait_state {
    WAIT_PENDING,   /* in the hub's list */
    WAIT_FIRING,    /* in the firing queue, its callback due */
    WAIT_CANCELLED, /* in the firing queue, cancelled: no callback */
    WAIT_DONE,      /* called back; its timer is closing */
};

struct bl_watch_wait {
    struct bl_watch_hub *hub;
    struct bl_watch_wait *prev, *next; /* pending list, or (next) the firing queue */
    uv_timer_t timer;
    void (*cb)(void *arg, int status);
    void *arg;
    enum wait_state state;
    int status;        /* what the callback gets */
    int timer_status;  /* what it gets when its timer fires */
    uint64_t next_rev; /* first revision not checked yet */
    bool prefix;
    size_t key_len;
    uint8_t key[];
};

/* A growable byte buffer. */
struct batch {
    char *data;
    size_t len, cap;
};

struct bl_watch_hub {
    uv_loop_t *loop;
    struct bl_member *member;
    struct bl_watch_opts opts;
    size_t low_water;
    uv_timer_t pace; /* the next round: 0 ms after a notify, PACE_MS while blocked */
    uv_timer_t tick; /* progress and departed clients, while watches exist */
    unsigned tick_ms;
    unsigned handles; /* open handles: pace, tick, one timer per wait */
    struct watcher *watchers;
    struct watcher *resume; /* first watcher of the next round, if not the head */
    unsigned n_watchers;
    struct bl_watch_wait *waits; /* pending */
    unsigned n_waits;
    struct bl_watch_wait *firing_head, *firing_tail;
    bool draining;    /* calling waits back: do not re-enter */
    bool more_now;    /* a round ran out of budget: run again at once */
    bool more_later;  /* a watcher is behind and blocked: poll at the pace */
    bool read_failed; /* the last round could not read (logged once) */
    bool closing;
    struct bl_doc doc;
    struct batch out;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* What a round's read transaction shows. */
struct snap {
    uint64_t revision; /* the store revision */
    uint64_t oldest;   /* the oldest revision in the history (revision + 1 if none) */
};

static void pace_cb(uv_timer_t *t);

/* ------------------------------------------------------------------------ */
/* Rendering */

/* Make room for @extra more bytes. */
static int batch_reserve(struct batch *b, size_t extra)
{
    size_t cap;
    char *p;
    if (extra <= b->cap - b->len) {
        return BL_OK;
    }
    if (extra > SIZE_MAX / 2 - b->len) {
        return BL_ENOMEM;
    }
    cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return BL_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return BL_OK;
}

static void batch_put(struct batch *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Start the hub's document for one event in @format. */
static struct bl_doc *doc_begin(struct bl_watch_hub *h, int format)
{
    bl_doc_reset(&h->doc, format == BL_WATCH_MSGPACK ? BL_DOC_MSGPACK : BL_DOC_JSON);
    return &h->doc;
}

/* Append the finished document to the batch, framed for @format. */
static int doc_frame(struct bl_watch_hub *h, int format)
{
    size_t len;
    const char *data;
    if (bl_doc_error(&h->doc) != 0) {
        return bl_doc_error(&h->doc);
    }
    data = bl_doc_data(&h->doc, &len);
    if (len > SIZE_MAX / 2 || batch_reserve(&h->out, len + 8) != BL_OK) {
        return BL_ENOMEM;
    }
    if (format == BL_WATCH_SSE) {
        batch_put(&h->out, "data: ", 6);
    }
    batch_put(&h->out, data, len);
    if (format == BL_WATCH_NDJSON) {
        batch_put(&h->out, "\n", 1);
    } else if (format == BL_WATCH_SSE) {
        batch_put(&h->out, "\n\n", 2);
    }
    return BL_OK;
}

/* Append a put or delete event to the batch. */
static int render_event(struct bl_watch_hub *h, int format, int type, const struct bl_kv *kv,
                        uint64_t revision)
{
    struct bl_doc *d = doc_begin(h, format);
    bl_doc_map(d, 3);
    bl_doc_key(d, "type");
    bl_doc_cstr(d, type == BL_EVENT_PUT ? "put" : "delete");
    bl_doc_key(d, "kv");
    bl_doc_kv(d, kv, type == BL_EVENT_PUT); /* a delete event's kv has no value */
    bl_doc_key(d, "revision");
    bl_doc_uint(d, revision);
    return doc_frame(h, format);
}

/* Append a progress event (@reason NULL) or a cancelled event. */
static int render_status(struct bl_watch_hub *h, int format, const char *reason, uint64_t revision)
{
    struct bl_doc *d = doc_begin(h, format);
    bl_doc_map(d, reason != NULL ? 3 : 2);
    bl_doc_key(d, "type");
    bl_doc_cstr(d, reason != NULL ? "cancelled" : "progress");
    if (reason != NULL) {
        bl_doc_key(d, "reason");
        bl_doc_cstr(d, reason);
    }
    bl_doc_key(d, "revision");
    bl_doc_uint(d, revision);
    return doc_frame(h, format);
}

/* True when @kv's key is @key, or starts with it when @prefix. */
static bool key_matches(const uint8_t *key, size_t key_len, bool prefix, const struct bl_kv *kv)
{
    if (prefix) {
        return kv->key_len >= key_len && (key_len == 0 || memcmp(kv->key, key, key_len) == 0);
    }
    return kv->key_len == key_len && memcmp(kv->key, key, key_len) == 0;
}

/* ------------------------------------------------------------------------ */
/* Rounds: reading */

/* The revision and the oldest kept revision as @txn sees them. */
static int read_snap(struct bl_txn *txn, struct snap *s)
{
    int rv = bl_store_meta_get(txn, META_REVISION, &s->revision);
    if (rv != BL_OK) {
        return rv;
    }
    rv = bl_store_history_first(txn, &s->oldest);
    if (rv == BL_ENOTFOUND) {
        s->oldest = s->revision + 1;
        rv = BL_OK;
    }
    return rv;
}

/* Decode history record @revision into @e. A gap (no record where the
 * history should have one) is BL_ECORRUPT. */
static int history_events(struct bl_txn *txn, uint64_t revision, struct bl_events *e)
{
    const void *rec;
    size_t len;
    int rv = bl_store_history_get(txn, revision, &rec, &len);
    if (rv == BL_ENOTFOUND) {
        return BL_ECORRUPT;
    }
    if (rv == BL_OK && bl_events_init(e, rec, len) != 0) {
        rv = BL_EMALFORMED;
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* Watchers */

/* Unlink and free @w; stop the tick when it was the last watcher. */
static void watcher_free(struct watcher *w)
{
    struct bl_watch_hub *h = w->hub;
    if (h->resume == w) {
        h->resume = w->next;
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        h->watchers = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    h->n_watchers--;
    if (h->n_watchers == 0 && !h->closing) {
        uv_timer_stop(&h->tick);
    }
    free(w);
}

/* End @w's stream, after a final cancelled event with @reason and
 * @revision unless @reason is NULL (the client is gone), and free @w. */
static void watcher_end(struct watcher *w, const char *reason, uint64_t revision)
{
    struct bl_watch_hub *h = w->hub;
    if (reason != NULL && !bl_http_exchange_gone(w->ex)) {
        h->out.len = 0;
        if (render_status(h, w->format, reason, revision) == BL_OK) {
            (void)bl_http_stream_write_final(w->ex, h->out.data, h->out.len);
        }
        h->out.len = 0;
    }
    bl_http_stream_end(w->ex);
    watcher_free(w);
}

enum fill {
    FILL_DONE,   /* the revision is consumed */
    FILL_FULL,   /* stopped: the output has no room for (the rest of) it */
    FILL_BUDGET, /* stopped: the watcher's turn is over */
};

/* Render the events of revision w->next_rev that match @w, from event
 * w->next_ev on, into the batch; @unsent bytes wait already; @turn counts
 * the events this turn may still read. Returns an enum fill, or a negative
 * error code; w->next_ev counts what the batch holds.
 *
 * A revision goes into the batch whole or not at all (back to where it
 * began): so a client cut off between rounds never has half a revision.
 * Only a revision that cannot fit even alone is split over several rounds:
 * more than max_buffered bytes of matching events (split when no byte
 * waits before it; a single event larger than max_buffered goes alone), or
 * more than a turn's events (split when the batch holds nothing before it,
 * else it starts the next turn). */
static int fill_revision(struct bl_watch_hub *h, struct watcher *w, struct bl_txn *txn,
                         size_t unsent, unsigned *turn)
{
    const size_t start_len = h->out.len;
    const uint32_t start_ev = w->next_ev;
    const bool alone = unsent == 0 && start_len == 0; /* no byte waits before it */
    struct bl_events e;
    struct bl_kv kv;
    uint32_t i;
    size_t mark;
    int type;
    int rv = history_events(txn, w->next_rev, &e);
    if (rv != BL_OK) {
        return rv;
    }
    for (i = 0; (rv = bl_events_next(&e, &type, &kv)) == 1; i++) {
        if (i < w->next_ev) {
            continue; /* sent in an earlier round */
        }
        if (*turn == 0) {
            rv = FILL_BUDGET;
            break;
        }
        (*turn)--;
        if (key_matches(w->key, w->key_len, w->prefix, &kv)) {
            mark = h->out.len;
            rv = render_event(h, w->format, type, &kv, w->next_rev);
            if (rv != BL_OK) {
                return rv;
            }
            if (unsent + h->out.len > h->opts.max_buffered && (unsent > 0 || mark > 0)) {
                h->out.len = mark;
                rv = FILL_FULL;
                break;
            }
        }
        w->next_ev = i + 1;
    }
    if (rv < 0) {
        return BL_EMALFORMED;
    }
    if (rv == 0) {
        return FILL_DONE;
    }
    if (rv == FILL_BUDGET ? start_len > 0 : !alone) {
        h->out.len = start_len; /* all or nothing: another round */
        w->next_ev = start_ev;
    }
    return rv;
}

/* Write a progress event to @w if it is due. */
static void watcher_progress(struct bl_watch_hub *h, struct watcher *w, uint64_t revision)
{
    uint64_t now = uv_now(h->loop);
    if (now - w->last_sent < h->opts.progress_ms) {
        return;
    }
    h->out.len = 0;
    if (render_status(h, w->format, NULL, revision) != BL_OK) {
        return;
    }
    if (bl_http_stream_write(w->ex, h->out.data, h->out.len) == BL_OK) {
        w->last_sent = now;
    }
    h->out.len = 0;
}

/* @w could not take a single event: cut it off if it is more than max_lag
 * behind and has been blocked for slow_ms (not just at this instant), else
 * come back at the pace. */
static void watcher_blocked(struct bl_watch_hub *h, struct watcher *w, const struct snap *s)
{
    uint64_t now = uv_now(h->loop);
    if (!w->blocked) {
        w->blocked = true;
        w->blocked_since = now;
    }
    if (s->revision - w->next_rev + 1 > h->opts.max_lag &&
        now - w->blocked_since >= h->opts.slow_ms) {
        watcher_end(w, "slow", w->next_rev);
        return;
    }
    h->more_later = true;
}

/* One watcher's turn in a round: end it if it is gone, cut off or
 * compacted; else send what it may of next_rev..s->revision. */
static void watcher_serve(struct bl_watch_hub *h, struct watcher *w, struct bl_txn *txn,
                          const struct snap *s, unsigned *turn)
{
    uint64_t rev0 = w->next_rev;
    uint32_t ev0 = w->next_ev;
    unsigned revs = 0;
    bool full = false;
    bool failed = false;
    size_t unsent;
    int rv;

    if (bl_http_exchange_gone(w->ex)) {
        watcher_end(w, NULL, 0);
        return;
    }
    if (w->next_rev > s->revision) {
        w->blocked = false;
        watcher_progress(h, w, s->revision);
        return;
    }
    if (w->next_rev < s->oldest) {
        watcher_end(w, "compacted", s->oldest);
        return;
    }
    unsent = bl_http_stream_unsent(w->ex);
    if (unsent >= h->low_water) {
        watcher_blocked(h, w, s);
        return;
    }

    h->out.len = 0;
    while (w->next_rev <= s->revision && !full) {
        if (*turn == 0 || revs == WATCHER_REVS) {
            h->more_now = true;
            break;
        }
        (*turn)--;
        revs++;
        rv = fill_revision(h, w, txn, unsent, turn);
        if (rv < 0) {
            BL_ERROR("watch: revision %llu: %s", (unsigned long long)w->next_rev, bl_strerror(rv));
            failed = true;
            break;
        }
        if (rv == FILL_BUDGET) {
            h->more_now = true;
            break;
        }
        if (rv == FILL_FULL) {
            full = true;
            break;
        }
        w->next_rev++;
        w->next_ev = 0;
        full = unsent + h->out.len >= h->low_water;
    }

    if (h->out.len > 0) {
        rv = bl_http_stream_write(w->ex, h->out.data, h->out.len);
        h->out.len = 0;
        if (rv == BL_ETOOLARGE) {
            /* cannot happen (the batch was sized to fit): try again later */
            w->next_rev = rev0;
            w->next_ev = ev0;
            h->more_later = true;
            return;
        }
        if (rv != BL_OK) {
            watcher_end(w, NULL, 0); /* gone, or out of memory: closed */
            return;
        }
        w->last_sent = uv_now(h->loop);
        w->blocked = false;
    } else if (full) {
        watcher_blocked(h, w, s); /* not even one event fits */
        return;
    }
    if (failed) {
        watcher_end(w, "internal", w->next_rev);
        return;
    }
    if (w->next_rev <= s->revision) {
        if (full && bl_http_stream_unsent(w->ex) >= h->low_water) {
            h->more_later = true; /* the bytes wait: come back at the pace */
        } else if (full) {
            h->more_now = true; /* the kernel took them: go on at once */
        }
        return;
    }
    watcher_progress(h, w, s->revision);
}

/* Give every watcher its turn, starting where the last round stopped. */
static void serve_watchers(struct bl_watch_hub *h, struct bl_txn *txn, const struct snap *s,
                           unsigned *budget)
{
    struct watcher *w = h->resume != NULL ? h->resume : h->watchers;
    unsigned count = h->n_watchers;
    h->resume = NULL;
    for (unsigned i = 0; i < count && w != NULL; i++) {
        /* only @w may be freed by its turn */
        struct watcher *next = w->next != NULL ? w->next : h->watchers;
        unsigned turn = WATCHER_TURN;
        if (*budget == 0) {
            h->resume = w;
            h->more_now = true;
            return;
        }
        watcher_serve(h, w, txn, s, &turn);
        *budget -= WATCHER_TURN - turn < *budget ? WATCHER_TURN - turn : *budget;
        w = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Waits */

static void wait_closed_cb(uv_handle_t *handle);

/* Move pending @w to the firing queue with @status. */
static void wait_fire(struct bl_watch_wait *w, int status)
{
    struct bl_watch_hub *h = w->hub;
    assert(w->state == WAIT_PENDING);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        h->waits = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    h->n_waits--;
    w->state = WAIT_FIRING;
    w->status = status;
    w->prev = w->next = NULL;
    if (h->firing_tail != NULL) {
        h->firing_tail->next = w;
    } else {
        h->firing_head = w;
    }
    h->firing_tail = w;
}

/* Call the firing waits back, in order, and close their timers. A callback
 * may register, cancel or fire waits, start watches or close the hub. */
static void drain(struct bl_watch_hub *h)
{
    struct bl_watch_wait *w;
    if (h->draining) {
        return; /* the outer drain gets to them */
    }
    h->draining = true;
    while ((w = h->firing_head) != NULL) {
        h->firing_head = w->next;
        if (h->firing_head == NULL) {
            h->firing_tail = NULL;
        }
        w->next = NULL;
        if (w->state == WAIT_FIRING) {
            w->state = WAIT_DONE;
            w->cb(w->arg, w->status);
        }
        w->state = WAIT_DONE;
        uv_close((uv_handle_t *)&w->timer, wait_closed_cb);
    }
    h->draining = false;
}

/* Fire every pending wait that has not been checked past @revision. */
static void fire_behind(struct bl_watch_hub *h, uint64_t revision)
{
    struct bl_watch_wait *w, *next;
    for (w = h->waits; w != NULL; w = next) {
        next = w->next;
        if (w->next_rev <= revision) {
            wait_fire(w, BL_OK);
        }
    }
}

/* Check the pending waits against the history from the oldest revision
 * one of them has not checked, at most WAIT_REVS records and WAIT_WORK
 * comparisons. Each record is decoded once for all waits. */
static void serve_waits(struct bl_watch_hub *h, struct bl_txn *txn, const struct snap *s)
{
    struct bl_watch_wait *w, *next;
    struct bl_events e;
    struct bl_kv kv;
    uint64_t lo = UINT64_MAX, hi, r;
    unsigned long work = 0;
    unsigned recs = 0;
    int type, rv;

    for (w = h->waits; w != NULL; w = next) {
        next = w->next;
        if (w->next_rev > s->revision) {
            continue;
        }
        if (w->next_rev < s->oldest) {
            wait_fire(w, BL_OK); /* below the history: answer at once */
        } else if (w->next_rev < lo) {
            lo = w->next_rev;
        }
    }
    if (lo == UINT64_MAX) {
        return;
    }
    hi = lo - 1;
    for (r = lo; r <= s->revision && h->waits != NULL; r++) {
        if (recs == WAIT_REVS || work >= WAIT_WORK) {
            h->more_now = true;
            break;
        }
        recs++;
        rv = history_events(txn, r, &e);
        while (rv == BL_OK && (rv = bl_events_next(&e, &type, &kv)) == 1) {
            if (work >= WAIT_WORK) {
                break; /* too many keys in one revision: wake the rest early */
            }
            for (w = h->waits; w != NULL; w = next) {
                next = w->next;
                work++;
                if (w->next_rev <= r && key_matches(w->key, w->key_len, w->prefix, &kv)) {
                    wait_fire(w, BL_OK);
                }
            }
            rv = BL_OK;
        }
        if (rv != 0) {
            /* unreadable or not checked to the end: wake those it concerns */
            fire_behind(h, r);
        }
        hi = r;
    }
    for (w = h->waits; w != NULL; w = w->next) {
        if (w->next_rev <= hi) {
            w->next_rev = hi + 1;
        }
    }
}

/* A wait's timer fired: its timeout passed (or the hub was closing when it
 * was registered). */
static void wait_timer_cb(uv_timer_t *t)
{
    struct bl_watch_wait *w = t->data;
    if (w->state != WAIT_PENDING) {
        return;
    }
    wait_fire(w, w->timer_status);
    drain(w->hub);
}

/* ------------------------------------------------------------------------ */
/* Rounds */

/* Run the next round at once, or at the pace, if the last one asked. */
static void schedule(struct bl_watch_hub *h)
{
    if (h->closing) {
        return;
    }
    if (h->more_now) {
        uv_timer_start(&h->pace, pace_cb, 0, 0);
    } else if (h->more_later && !uv_is_active((uv_handle_t *)&h->pace)) {
        uv_timer_start(&h->pace, pace_cb, PACE_MS, 0);
    }
}

/* One delivery round: every watcher, then the waits, in one short read
 * transaction; then the waits' callbacks. */
static void hub_round(struct bl_watch_hub *h)
{
    struct bl_txn *txn;
    struct snap s;
    unsigned budget = ROUND_BUDGET;
    int rv;

    h->more_now = h->more_later = false;
    if (h->closing || (h->watchers == NULL && h->waits == NULL)) {
        return;
    }
    rv = bl_member_read_begin(h->member, &txn);
    if (rv == BL_OK) {
        rv = read_snap(txn, &s);
        if (rv != BL_OK) {
            bl_store_abort(txn);
        }
    }
    if (rv != BL_OK) {
        if (!h->read_failed) {
            BL_ERROR("watch: cannot read the store: %s (retrying)", bl_strerror(rv));
        }
        h->read_failed = true;
        h->more_later = true;
        schedule(h);
        return;
    }
    h->read_failed = false;
    serve_watchers(h, txn, &s, &budget);
    serve_waits(h, txn, &s);
    bl_store_abort(txn);
    if (h->out.cap > BATCH_KEEP_MAX) {
        free(h->out.data);
        h->out.data = NULL;
        h->out.len = h->out.cap = 0;
    }
    drain(h);
    schedule(h);
}

static void pace_cb(uv_timer_t *t)
{
    hub_round(t->data);
}

static void tick_cb(uv_timer_t *t)
{
    hub_round(t->data);
}

/* ------------------------------------------------------------------------ */
/* The hub */

/* See watch.h. */
int bl_watch_hub_new(uv_loop_t *loop, struct bl_member *m, const struct bl_watch_opts *o,
                     struct bl_watch_hub **out)
{
    struct bl_watch_hub *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return BL_ENOMEM;
    }
    h->loop = loop;
    h->member = m;
    if (o != NULL) {
        h->opts = *o;
    }
    if (h->opts.max_lag == 0) {
        h->opts.max_lag = BL_WATCH_MAX_LAG_DEFAULT;
    }
    if (h->opts.max_buffered == 0) {
        h->opts.max_buffered = BL_WATCH_MAX_BUFFERED_DEFAULT;
    }
    if (h->opts.progress_ms == 0) {
        h->opts.progress_ms = BL_WATCH_PROGRESS_MS_DEFAULT;
    }
    if (h->opts.slow_ms == 0) {
        h->opts.slow_ms = BL_WATCH_SLOW_MS_DEFAULT;
    }
    h->low_water = h->opts.max_buffered / 2;
    h->tick_ms = h->opts.progress_ms / 10;
    if (h->tick_ms < TICK_MIN_MS) {
        h->tick_ms = TICK_MIN_MS;
    } else if (h->tick_ms > TICK_MAX_MS) {
        h->tick_ms = TICK_MAX_MS;
    }
    bl_doc_init(&h->doc, BL_DOC_JSON);
    uv_timer_init(loop, &h->pace);
    uv_timer_init(loop, &h->tick);
    h->pace.data = h;
    h->tick.data = h;
    h->handles = 2;
    *out = h;
    return BL_OK;
}

/* See watch.h. */
void bl_watch_hub_notify(struct bl_watch_hub *h, uint64_t revision)
{
    (void)revision; /* the round reads it from its own snapshot */
    if (h->closing || (h->watchers == NULL && h->waits == NULL)) {
        return;
    }
    uv_timer_start(&h->pace, pace_cb, 0, 0);
}

/* See watch.h. */
int bl_watch_start(struct bl_watch_hub *h, struct bl_http_exchange *ex, const uint8_t *key,
                   size_t key_len, bool prefix, uint64_t start_rev, int format,
                   const struct bl_http_header *headers, unsigned n, uint64_t *compact_rev)
{
    static const char *const TYPES[] = {"application/x-ndjson", "application/msgpack",
                                        "text/event-stream"};
    struct bl_http_header hdrs[BL_WATCH_MAX_HEADERS + 2];
    struct bl_txn *txn;
    struct watcher *w;
    struct snap s;
    unsigned m = 0;
    int rv;

    if (h->closing) {
        return BL_ESHUTDOWN;
    }
    if (format < BL_WATCH_NDJSON || format > BL_WATCH_SSE || (key_len == 0 && !prefix) ||
        key_len > BL_KEY_MAX || n > BL_WATCH_MAX_HEADERS) {
        return BL_EBADREQ;
    }
    rv = bl_member_read_begin(h->member, &txn);
    if (rv != BL_OK) {
        return rv;
    }
    rv = read_snap(txn, &s);
    bl_store_abort(txn);
    if (rv != BL_OK) {
        return rv;
    }
    if (start_rev == 0) {
        start_rev = s.revision + 1;
    }
    if (start_rev <= s.revision && start_rev < s.oldest) {
        if (compact_rev != NULL) {
            *compact_rev = s.oldest;
        }
        return BL_ECOMPACTED;
    }
    w = calloc(1, sizeof *w + key_len);
    if (w == NULL) {
        return BL_ENOMEM;
    }
    w->hub = h;
    w->ex = ex;
    w->format = format;
    w->prefix = prefix;
    w->next_rev = start_rev;
    w->key_len = key_len;
    if (key_len > 0) {
        memcpy(w->key, key, key_len);
    }

    hdrs[m++] = (struct bl_http_header){"Content-Type", 12, TYPES[format], strlen(TYPES[format])};
    if (format == BL_WATCH_SSE) {
        hdrs[m++] = (struct bl_http_header){"Cache-Control", 13, "no-cache", 8};
    }
    for (unsigned i = 0; i < n; i++) {
        hdrs[m++] = headers[i];
    }
    rv = bl_http_stream_begin(ex, 200, hdrs, m, h->opts.max_buffered);
    /* The kernel's share of a stalled watcher's backlog stays small too
     * (autotuned loopback buffers held ~3 MB of events). Best effort. */
    (void)bl_http_exchange_send_buffer(ex, WATCH_SNDBUF);

    w->next = h->watchers;
    if (h->watchers != NULL) {
        h->watchers->prev = w;
    }
    h->watchers = w;
    if (h->n_watchers++ == 0) {
        uv_timer_start(&h->tick, tick_cb, h->tick_ms, h->tick_ms);
    }
    if (rv != BL_OK) {
        watcher_end(w, NULL, 0); /* out of memory: the connection is closed */
        return BL_OK;
    }
    w->last_sent = uv_now(h->loop);
    if (start_rev <= s.revision) {
        uv_timer_start(&h->pace, pace_cb, 0, 0); /* send the history now */
    }
    return BL_OK;
}

/* See watch.h. */
struct bl_watch_wait *bl_watch_wait(struct bl_watch_hub *h, const uint8_t *key, size_t key_len,
                                    bool prefix, uint64_t index, unsigned timeout_ms,
                                    void (*cb)(void *arg, int status), void *arg)
{
    struct bl_watch_wait *w = calloc(1, sizeof *w + key_len);
    uint64_t term, applied, revision;
    if (w == NULL) {
        return NULL;
    }
    w->hub = h;
    w->cb = cb;
    w->arg = arg;
    w->state = WAIT_PENDING;
    w->timer_status = h->closing ? BL_ESHUTDOWN : BL_ETIMEOUT;
    w->next_rev = index < UINT64_MAX ? index + 1 : index;
    w->prefix = prefix;
    w->key_len = key_len;
    if (key_len > 0) {
        memcpy(w->key, key, key_len);
    }
    uv_timer_init(h->loop, &w->timer);
    w->timer.data = w;
    h->handles++;
    w->next = h->waits;
    if (h->waits != NULL) {
        h->waits->prev = w;
    }
    h->waits = w;
    h->n_waits++;
    if (h->closing) {
        uv_timer_start(&w->timer, wait_timer_cb, 0, 0);
        return w;
    }
    if (timeout_ms > 0) {
        uv_timer_start(&w->timer, wait_timer_cb, timeout_ms, 0);
    }
    bl_member_indexes(h->member, &term, &applied, &revision);
    if (w->next_rev <= revision) {
        uv_timer_start(&h->pace, pace_cb, 0, 0); /* check the history now */
    }
    return w;
}

/* See watch.h. */
void bl_watch_wait_cancel(struct bl_watch_wait *w)
{
    switch (w->state) {
    case WAIT_PENDING:
        wait_fire(w, BL_OK); /* into the firing queue, then out without a callback */
        w->state = WAIT_CANCELLED;
        drain(w->hub);
        break;
    case WAIT_FIRING:
        w->state = WAIT_CANCELLED; /* the running drain skips it */
        break;
    default:
        break; /* cancelled already, or called from inside its own callback */
    }
}

/* Free @h once every handle is closed, then call its close callback. */
static void hub_maybe_finish(struct bl_watch_hub *h)
{
    void (*cb)(void *arg) = h->close_cb;
    void *arg = h->close_arg;
    if (!h->closing || h->handles > 0) {
        return;
    }
    bl_doc_free(&h->doc);
    free(h->out.data);
    free(h);
    if (cb != NULL) {
        cb(arg);
    }
}

static void hub_handle_closed_cb(uv_handle_t *handle)
{
    struct bl_watch_hub *h = handle->data;
    h->handles--;
    hub_maybe_finish(h);
}

static void wait_closed_cb(uv_handle_t *handle)
{
    struct bl_watch_wait *w = handle->data;
    struct bl_watch_hub *h = w->hub;
    free(w);
    h->handles--;
    hub_maybe_finish(h);
}

/* See watch.h. */
void bl_watch_hub_close(struct bl_watch_hub *h, void (*cb)(void *arg), void *arg)
{
    assert(!h->closing);
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    while (h->watchers != NULL) {
        watcher_end(h->watchers, "shutdown", h->watchers->next_rev);
    }
    while (h->waits != NULL) {
        wait_fire(h->waits, BL_ESHUTDOWN);
    }
    drain(h);
    uv_close((uv_handle_t *)&h->pace, hub_handle_closed_cb);
    uv_close((uv_handle_t *)&h->tick, hub_handle_closed_cb);
}

/* See watch.h. */
unsigned bl_watch_hub_count(const struct bl_watch_hub *h)
{
    return h->n_watchers;
}

/* See watch.h. */
unsigned bl_watch_hub_waits(const struct bl_watch_hub *h)
{
    return h->n_waits;
}
