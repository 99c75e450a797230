/* A watcher thread and the checks of what it saw (see watchcheck.h).
 *
 * The watcher owns a libballast client and one watch. Its thread calls
 * ballast_watch_next() in 200 ms slices so that it notices a stop request;
 * transient errors (no member reachable while a fault lasts) are retried by
 * calling again, which is how the library wants a watch driven. It records
 * PUT/DELETE events under a mutex and the highest revision known delivered
 * (from events and progress events), which watcher_stop() waits on.
 *
 * watchcheck() indexes the history's writes by value (the workload never
 * writes a value twice), then walks the events once: order, invention and
 * duplicates; then the writes: loss; then per key the acknowledged writes in
 * real-time order against their events' revisions. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "watchcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast.h"

#define SLICE_MS        200
#define REPORT_MAX      4096
#define REPORT_PROBLEMS 12

struct watcher {
    struct ballast_client *cl;
    struct ballast_watch *w;
    char *prefix;
    size_t prefix_len;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    struct wc_events ev; /* under mu */
    int64_t delivered;   /* under mu: every event up to it was delivered */
    int error;           /* under mu: a final error, or -ENOMEM when an event was lost */
    char errmsg[256];    /* under mu */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int events_add(struct wc_events *e, const struct wc_event *x)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 1024;
        struct wc_event *p = realloc(e->ev, cap * sizeof *p);
        if (p == NULL) {
            return -1;
        }
        e->ev = p;
        e->cap = cap;
    }
    e->ev[e->n++] = *x;
    return 0;
}

static void record(struct watcher *w, const struct ballast_event *ev)
{
    struct wc_event x = {.revision = ev->revision, .type = ev->type, .value = -1};
    char *end;
    unsigned long id;

    /* the key id after the prefix; anything else is recorded as key
     * UINT32_MAX, which no op has, so watchcheck() reports it */
    x.key = UINT32_MAX;
    if (ev->kv.key_len > w->prefix_len && ev->kv.key_len - w->prefix_len < 16 &&
        memcmp(ev->kv.key, w->prefix, w->prefix_len) == 0) {
        char buf[16];
        memcpy(buf, ev->kv.key + w->prefix_len, ev->kv.key_len - w->prefix_len);
        buf[ev->kv.key_len - w->prefix_len] = '\0';
        errno = 0;
        id = strtoul(buf, &end, 10);
        if (errno == 0 && *end == '\0' && id < UINT32_MAX) {
            x.key = (uint32_t)id;
        }
    }
    if (ev->type == BALLAST_EVENT_PUT) {
        x.value = hist_parse_value(ev->kv.value, ev->kv.value_len);
    }
    pthread_mutex_lock(&w->mu);
    if (events_add(&w->ev, &x) != 0 && w->error == 0) {
        w->error = -ENOMEM;
        snprintf(w->errmsg, sizeof w->errmsg, "out of memory recording an event");
    }
    if (ev->revision > w->delivered) {
        w->delivered = ev->revision;
    }
    pthread_mutex_unlock(&w->mu);
}

static void fail(struct watcher *w, int rv, const char *what)
{
    pthread_mutex_lock(&w->mu);
    if (w->error == 0) {
        w->error = rv;
        snprintf(w->errmsg, sizeof w->errmsg, "%s: %s: %s", what, ballast_strerror(rv),
                 ballast_errmsg(w->cl));
    }
    pthread_mutex_unlock(&w->mu);
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;

    while (!atomic_load(&w->stop)) {
        struct ballast_event ev;
        int rv = ballast_watch_next(w->w, SLICE_MS, &ev);

        if (rv == BALLAST_OK) {
            if (ev.type == BALLAST_EVENT_PUT || ev.type == BALLAST_EVENT_DELETE) {
                record(w, &ev);
            } else if (ev.type == BALLAST_EVENT_PROGRESS) {
                pthread_mutex_lock(&w->mu);
                if (ev.revision > w->delivered) {
                    w->delivered = ev.revision;
                }
                pthread_mutex_unlock(&w->mu);
            } else if (ev.type == BALLAST_EVENT_CANCELLED) {
                /* a slow cancel: go on from the revision it names, as a
                 * client must */
                struct ballast_watch_opts o = {.prefix = 1, .rev = ev.revision};
                struct ballast_watch *nw = NULL;
                int orv;

                do {
                    orv = ballast_watch_open(w->cl, w->prefix, w->prefix_len, &o, &nw);
                } while (orv != BALLAST_OK && orv != BALLAST_ECOMPACTED && !atomic_load(&w->stop) &&
                         (sleep_ms(50), true));
                if (orv != BALLAST_OK) {
                    if (!atomic_load(&w->stop)) {
                        fail(w, orv, "reopening after a cancel");
                    }
                    return NULL;
                }
                ballast_watch_close(w->w);
                w->w = nw;
                pthread_mutex_lock(&w->mu);
                w->ev.reconnects++;
                pthread_mutex_unlock(&w->mu);
            }
            continue;
        }
        if (rv == BALLAST_EAGAIN) {
            continue;
        }
        if (rv == BALLAST_ECOMPACTED || rv == BALLAST_EBADARG || rv == BALLAST_ENOTFOUND ||
            rv == BALLAST_EUNAUTHORIZED || rv == BALLAST_EFORBIDDEN || rv == BALLAST_ECANCELLED) {
            fail(w, rv, "watch ended");
            return NULL;
        }
        /* unavailable, timeout, no leader: the next call tries again */
        sleep_ms(50);
    }
    return NULL;
}

int watcher_start(const char *endpoints, const char *prefix, int64_t from_rev, struct watcher **out,
                  char *err, size_t errlen)
{
    struct ballast_options bo = {.request_timeout_ms = 5000, .attempt_timeout_ms = 1000};
    struct ballast_watch_opts o = {.prefix = 1, .rev = from_rev, .idle_timeout_ms = 15000};
    struct watcher *w = calloc(1, sizeof *w);
    int rv;

    *out = NULL;
    if (w == NULL || (w->prefix = strdup(prefix)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(w);
        return -1;
    }
    w->prefix_len = strlen(prefix);
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->stop, false);
    w->cl = ballast_client_new(endpoints, &bo, err, errlen);
    if (w->cl == NULL) {
        goto err_after_prefix;
    }
    rv = ballast_watch_open(w->cl, prefix, w->prefix_len, &o, &w->w);
    if (rv != BALLAST_OK) {
        snprintf(err, errlen, "watch_open: %s: %s", ballast_strerror(rv), ballast_errmsg(w->cl));
        goto err_after_client;
    }
    if (pthread_create(&w->thread, NULL, watcher_main, w) != 0) {
        snprintf(err, errlen, "pthread_create failed");
        goto err_after_watch;
    }
    *out = w;
    return 0;

err_after_watch:
    ballast_watch_close(w->w);
err_after_client:
    ballast_client_free(w->cl);
err_after_prefix:
    pthread_mutex_destroy(&w->mu);
    free(w->prefix);
    free(w);
    return -1;
}

int watcher_stop(struct watcher *w, int64_t until_rev, int timeout_ms, struct wc_events *out,
                 char *err, size_t errlen)
{
    int64_t deadline = mono_ms() + timeout_ms, delivered;
    int rv = 0, error;

    memset(out, 0, sizeof *out);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        delivered = w->delivered;
        error = w->error;
        pthread_mutex_unlock(&w->mu);
        if (delivered >= until_rev || error != 0 || mono_ms() > deadline) {
            break;
        }
        sleep_ms(20);
    }
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    if (w->error != 0) {
        snprintf(err, errlen, "%s", w->errmsg);
        rv = -1;
    } else if (w->delivered < until_rev) {
        snprintf(err, errlen,
                 "delivered up to revision %" PRId64 " only, %" PRId64 " wanted, after %d ms",
                 w->delivered, until_rev, timeout_ms);
        rv = -1;
    }
    *out = w->ev;
    ballast_watch_close(w->w);
    ballast_client_free(w->cl);
    pthread_mutex_destroy(&w->mu);
    free(w->prefix);
    free(w);
    return rv;
}

void wc_events_free(struct wc_events *e)
{
    free(e->ev);
    memset(e, 0, sizeof *e);
}

/* --- the checks ------------------------------------------------------------ */

struct report {
    char *buf;
    size_t len;
    int problems;
};

static void problem(struct report *r, const char *fmt, ...)
{
    va_list ap;

    r->problems++;
    if (r->problems > REPORT_PROBLEMS ||
        (r->buf == NULL && (r->buf = malloc(REPORT_MAX)) == NULL)) {
        return;
    }
    if (r->len + 2 < REPORT_MAX) {
        va_start(ap, fmt);
        int k = vsnprintf(r->buf + r->len, REPORT_MAX - r->len - 1, fmt, ap);
        va_end(ap);
        if (k > 0) {
            r->len += (size_t)k < REPORT_MAX - r->len - 1 ? (size_t)k : REPORT_MAX - r->len - 2;
        }
        r->buf[r->len++] = '\n';
        r->buf[r->len] = '\0';
    }
}

/* A write of the history that stored, or may have stored, a value. */
struct wr {
    int64_t value;
    const struct hist_op *op;
    bool acked; /* it certainly stored the value */
    size_t seen;
    int64_t revision; /* of its (first) event */
};

static int cmp_wr_value(const void *a, const void *b)
{
    const struct wr *x = a, *y = b;
    return x->value < y->value ? -1 : x->value > y->value;
}

static int cmp_wr_key_invoke(const void *a, const void *b)
{
    const struct wr *x = *(const struct wr *const *)a, *y = *(const struct wr *const *)b;
    if (x->op->key != y->op->key) {
        return x->op->key < y->op->key ? -1 : 1;
    }
    return x->op->invoke_ns < y->op->invoke_ns ? -1 : x->op->invoke_ns > y->op->invoke_ns;
}

static struct wr *find(struct wr *w, size_t n, int64_t value)
{
    struct wr k = {.value = value};
    return bsearch(&k, w, n, sizeof *w, cmp_wr_value);
}

int watchcheck(const struct wc_events *e, const struct history *h, char **report)
{
    struct report r = {0};
    struct wr *w = malloc((h->n ? h->n : 1) * sizeof *w);
    struct wr **acked = malloc((h->n ? h->n : 1) * sizeof *acked);
    size_t nw = 0, na = 0;
    char line[200];

    *report = NULL;
    if (w == NULL || acked == NULL) {
        free(w);
        free(acked);
        return -1;
    }
    for (size_t i = 0; i < h->n; i++) {
        const struct hist_op *op = &h->ops[i];
        bool stores = op->type == HIST_WRITE || (op->type == HIST_CAS && op->out_ok);
        if (op->type == HIST_READ || op->status == HIST_FAIL ||
            (op->status == HIST_OK && !stores)) {
            continue;
        }
        w[nw++] = (struct wr){.value = op->value, .op = op, .acked = op->status == HIST_OK};
    }
    qsort(w, nw, sizeof *w, cmp_wr_value);

    /* the events: order, invention, duplicates */
    for (size_t i = 0; i < e->n; i++) {
        const struct wc_event *x = &e->ev[i];
        struct wr *f;

        if (i > 0 && x->revision <= e->ev[i - 1].revision) {
            problem(&r, "event %zu at revision %" PRId64 " follows one at revision %" PRId64, i,
                    x->revision, e->ev[i - 1].revision);
        }
        if (x->type != BALLAST_EVENT_PUT) {
            problem(&r,
                    "event %zu at revision %" PRId64 " on key %" PRIu32
                    " is not a put (the workload never deletes)",
                    i, x->revision, x->key);
            continue;
        }
        f = find(w, nw, x->value);
        if (f == NULL || f->op->key != x->key) {
            problem(&r,
                    "event %zu: key %" PRIu32 " = %" PRId64 " at revision %" PRId64
                    ", which no write of that key stored",
                    i, x->key, x->value, x->revision);
            continue;
        }
        if (f->seen++ > 0) {
            problem(&r,
                    "event %zu: value %" PRId64 " of key %" PRIu32
                    " delivered again (revisions %" PRId64 " and %" PRId64 ")",
                    i, x->value, x->key, f->revision, x->revision);
        } else {
            f->revision = x->revision;
        }
    }
    /* loss */
    for (size_t i = 0; i < nw; i++) {
        if (w[i].acked && w[i].seen == 0) {
            hist_format(w[i].op, line, sizeof line);
            problem(&r, "acknowledged write never delivered: %s", line);
        }
        if (w[i].acked && w[i].seen > 0) {
            acked[na++] = &w[i];
        }
    }
    /* real-time order per key: a write acknowledged before another began
     * must have the smaller revision (every pair of one key: a key has at
     * most the workload's ops_per_key ops) */
    qsort(acked, na, sizeof *acked, cmp_wr_key_invoke);
    for (size_t i = 0; i < na;) {
        size_t j = i;
        for (; j < na && acked[j]->op->key == acked[i]->op->key; j++) {
            for (size_t k = i; k < j; k++) {
                if (acked[k]->op->complete_ns < acked[j]->op->invoke_ns &&
                    acked[k]->revision > acked[j]->revision) {
                    problem(&r,
                            "key %" PRIu32 ": value %" PRId64 " (revision %" PRId64
                            ") was acknowledged before the write of value %" PRId64
                            " (revision %" PRId64 ") began",
                            acked[j]->op->key, acked[k]->value, acked[k]->revision, acked[j]->value,
                            acked[j]->revision);
                }
            }
        }
        i = j;
    }
    free(acked);
    free(w);
    if (r.problems > REPORT_PROBLEMS && r.buf != NULL && r.len + 64 < REPORT_MAX) {
        r.len += (size_t)snprintf(r.buf + r.len, REPORT_MAX - r.len, "... %d problems in all\n",
                                  r.problems);
    }
    if (r.problems == 0) {
        free(r.buf);
        r.buf = NULL;
    }
    *report = r.buf;
    return r.problems;
}
