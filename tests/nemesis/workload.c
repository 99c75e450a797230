/* The register workload runner: see workload.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "workload.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast.h"

/* Pause between two ops of one client, in ms: MIN..MAX. */
#define PAUSE_MIN_MS 1
#define PAUSE_MAX_MS 5

struct wl_client {
    struct workload *w;
    int id;
    pthread_t thread;
    bool started;
    struct ballast_client *cl;
    struct history h;
    uint64_t rng;
    int64_t seq;
    /* the last value this client read of key id k: last_read[k] (0: none) */
    int64_t *last_read;
    size_t n_last_read;
};

struct workload {
    struct workload_opts o;
    char *endpoints, *prefix;
    atomic_bool stop;
    atomic_int unrecorded; /* ops a client could not record */
    pthread_mutex_t mu;
    uint32_t *active; /* o.keys active key ids */
    int *count;       /* ops handed out on each active key */
    uint32_t next_key;
    struct wl_client *clients;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* The key id of the next op: a random active key; a key that reached
 * ops_per_key ops is replaced by a fresh one first. */
static uint32_t pick_key(struct workload *w, uint64_t *rng)
{
    uint32_t k;
    int slot;

    pthread_mutex_lock(&w->mu);
    slot = (int)(rnd(rng) % (uint64_t)w->o.keys);
    if (w->count[slot] >= w->o.ops_per_key) {
        w->active[slot] = w->next_key++;
        w->count[slot] = 0;
    }
    w->count[slot]++;
    k = w->active[slot];
    pthread_mutex_unlock(&w->mu);
    return k;
}

static int64_t *last_read_slot(struct wl_client *c, uint32_t key)
{
    if (key >= c->n_last_read) {
        size_t n = c->n_last_read ? c->n_last_read : 64;
        while (n <= key) {
            n *= 2;
        }
        int64_t *p = realloc(c->last_read, n * sizeof *p);
        if (p == NULL) {
            return NULL;
        }
        memset(p + c->n_last_read, 0, (n - c->n_last_read) * sizeof *p);
        c->last_read = p;
        c->n_last_read = n;
    }
    return &c->last_read[key];
}

/* A write's outcome from libballast's answer. Refusals the server gives
 * before proposing (400 bad request, 413 too large, 507 no space: ballastd
 * answers 507 only from its admission check; a failure after the entry
 * was proposed is a 504 "outcome unknown") are definite failures; anything
 * else that is not OK may or may not have taken effect. */
static int write_status(int rv)
{
    switch (rv) {
    case BALLAST_OK:
        return HIST_OK;
    case BALLAST_EBADARG:
    case BALLAST_ETOOLARGE:
    case BALLAST_ENOSPACE:
        return HIST_FAIL;
    default:
        return HIST_UNKNOWN;
    }
}

static void do_read(struct wl_client *c, const char *key, size_t klen, struct hist_op *op)
{
    struct ballast_kv *kv = NULL;
    int rv;

    op->type = HIST_READ;
    op->invoke_ns = now_ns();
    rv = ballast_get(c->cl, key, klen, BALLAST_LINEARIZABLE, &kv);
    op->complete_ns = now_ns();
    if (rv == BALLAST_OK) {
        op->status = HIST_OK;
        op->out = hist_parse_value(kv->value, kv->value_len);
    } else if (rv == BALLAST_ENOTFOUND) {
        op->status = HIST_OK;
        op->out = 0;
    } else {
        op->status = HIST_FAIL;
    }
    ballast_kv_free(kv);
    if (op->status == HIST_OK) {
        int64_t *slot = last_read_slot(c, op->key);
        if (slot != NULL) {
            *slot = op->out;
        }
    }
}

static void do_write(struct wl_client *c, const char *key, size_t klen, struct hist_op *op)
{
    char val[32];
    int vl, rv;

    op->type = HIST_WRITE;
    op->value = (int64_t)(c->id + 1) * 1000000000 + ++c->seq;
    vl = snprintf(val, sizeof val, "%" PRId64, op->value);
    op->invoke_ns = now_ns();
    rv = ballast_put(c->cl, key, klen, val, (size_t)vl, NULL, NULL);
    op->complete_ns = now_ns();
    op->status = write_status(rv);
}

static void do_cas(struct wl_client *c, const char *key, size_t klen, struct hist_op *op)
{
    struct ballast_txn *t = ballast_txn_new();
    struct ballast_txn_result r;
    char val[32], exp[32];
    int vl, el, rv;
    int64_t *slot = last_read_slot(c, op->key);

    op->type = HIST_CAS;
    op->expect = slot != NULL ? *slot : 0;
    op->value = (int64_t)(c->id + 1) * 1000000000 + ++c->seq;
    vl = snprintf(val, sizeof val, "%" PRId64, op->value);
    el = snprintf(exp, sizeof exp, "%" PRId64, op->expect);
    if (t == NULL) {
        op->invoke_ns = op->complete_ns = now_ns();
        op->status = HIST_FAIL;
        return;
    }
    if (op->expect == 0) {
        ballast_txn_compare(t, key, klen, BALLAST_CMP_VERSION, BALLAST_CMP_EQ, 0);
    } else {
        ballast_txn_compare_value(t, key, klen, BALLAST_CMP_EQ, exp, (size_t)el);
    }
    ballast_txn_put(t, BALLAST_TXN_SUCCESS, key, klen, val, (size_t)vl, 0);
    op->invoke_ns = now_ns();
    rv = ballast_txn(c->cl, t, &r);
    op->complete_ns = now_ns();
    op->status = write_status(rv);
    op->out_ok = rv == BALLAST_OK && r.succeeded;
    ballast_txn_result_free(&r);
    ballast_txn_free(t);
}

static void *client_main(void *arg)
{
    struct wl_client *c = arg;
    struct workload *w = c->w;

    while (!atomic_load(&w->stop)) {
        struct hist_op op;
        char key[256];
        int kl;
        uint64_t r;

        memset(&op, 0, sizeof op);
        op.client = c->id;
        op.key = pick_key(w, &c->rng);
        kl = snprintf(key, sizeof key, "%s%" PRIu32, w->prefix, op.key);
        r = rnd(&c->rng) % 10;
        if (r < 4) {
            do_read(c, key, (size_t)kl, &op);
        } else if (r < 7) {
            do_write(c, key, (size_t)kl, &op);
        } else {
            do_cas(c, key, (size_t)kl, &op);
        }
        /* an op that cannot be recorded makes the history incomplete:
         * counted, and workload_stop() reports it */
        if (hist_add(&c->h, &op) != 0) {
            atomic_fetch_add(&w->unrecorded, 1);
        }
        sleep_ms(PAUSE_MIN_MS + (int)(rnd(&c->rng) % (PAUSE_MAX_MS - PAUSE_MIN_MS + 1)));
    }
    return NULL;
}

/* @eps rotated so that it starts at its @first-th entry (so the clients do
 * not all talk to the same member). malloc'd, or NULL. */
static char *rotate_endpoints(const char *eps, int first)
{
    size_t len = strlen(eps);
    char *out = malloc(len + 2);
    const char *p = eps;
    int n = 1;

    if (out == NULL) {
        return NULL;
    }
    for (const char *q = eps; *q; q++) {
        n += *q == ',';
    }
    first %= n;
    for (int i = 0; i < first; i++) {
        p = strchr(p, ',') + 1;
    }
    if (p == eps) {
        memcpy(out, eps, len + 1);
    } else {
        size_t tail = len - (size_t)(p - eps);
        memcpy(out, p, tail);
        out[tail] = ',';
        memcpy(out + tail + 1, eps, (size_t)(p - eps) - 1);
        out[len] = '\0';
    }
    return out;
}

static void free_workload(struct workload *w)
{
    if (w->clients != NULL) {
        for (int i = 0; i < w->o.clients; i++) {
            ballast_client_free(w->clients[i].cl);
            hist_free(&w->clients[i].h);
            free(w->clients[i].last_read);
        }
    }
    free(w->clients);
    free(w->active);
    free(w->count);
    free(w->endpoints);
    free(w->prefix);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void join_all(struct workload *w)
{
    atomic_store(&w->stop, true);
    for (int i = 0; i < w->o.clients; i++) {
        if (w->clients[i].started) {
            pthread_join(w->clients[i].thread, NULL);
            w->clients[i].started = false;
        }
    }
}

int workload_start(const struct workload_opts *o, struct workload **out)
{
    struct workload *w;
    struct ballast_options bo = {0};
    uint64_t seed;

    *out = NULL;
    if (o == NULL || o->endpoints == NULL || o->prefix == NULL || o->clients < 1 || o->keys < 1 ||
        o->ops_per_key < 1) {
        return -1;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->stop, false);
    atomic_init(&w->unrecorded, 0);
    seed = o->seed != 0 ? o->seed : (uint64_t)now_ns();
    w->o = *o;
    w->endpoints = strdup(o->endpoints);
    w->prefix = strdup(o->prefix);
    w->active = calloc((size_t)o->keys, sizeof *w->active);
    w->count = calloc((size_t)o->keys, sizeof *w->count);
    w->clients = calloc((size_t)o->clients, sizeof *w->clients);
    if (w->endpoints == NULL || w->prefix == NULL || w->active == NULL || w->count == NULL ||
        w->clients == NULL) {
        free_workload(w);
        return -1;
    }
    w->o.endpoints = w->endpoints;
    w->o.prefix = w->prefix;
    for (int i = 0; i < o->keys; i++) {
        w->active[i] = w->next_key++;
    }

    /* fail fast during faults: a short deadline, short attempts, small
     * backoff (an op that gives up is recorded, not retried) */
    bo.request_timeout_ms = o->op_timeout_ms ? o->op_timeout_ms : 2000;
    bo.attempt_timeout_ms = bo.request_timeout_ms / 2 > 200 ? bo.request_timeout_ms / 2 : 200;
    bo.connect_timeout_ms = 300;
    bo.backoff_base_ms = 10;
    bo.backoff_max_ms = 100;

    for (int i = 0; i < o->clients; i++) {
        struct wl_client *c = &w->clients[i];
        char err[256];
        char *eps = rotate_endpoints(w->endpoints, i);

        c->w = w;
        c->id = i;
        c->rng = (seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL)) | 1;
        hist_init(&c->h);
        c->cl = eps != NULL ? ballast_client_new(eps, &bo, err, sizeof err) : NULL;
        free(eps);
        if (c->cl == NULL) {
            free_workload(w);
            return -1;
        }
    }
    for (int i = 0; i < o->clients; i++) {
        if (pthread_create(&w->clients[i].thread, NULL, client_main, &w->clients[i]) != 0) {
            join_all(w);
            free_workload(w);
            return -1;
        }
        w->clients[i].started = true;
    }
    *out = w;
    return 0;
}

int workload_stop(struct workload *w, struct history *out)
{
    int rv;

    if (w == NULL) {
        return 0;
    }
    join_all(w);
    rv = atomic_load(&w->unrecorded) == 0 ? 0 : -1;
    if (out != NULL) {
        for (int i = 0; i < w->o.clients; i++) {
            for (size_t j = 0; j < w->clients[i].h.n; j++) {
                if (hist_add(out, &w->clients[i].h.ops[j]) != 0) {
                    rv = -1;
                }
            }
        }
    }
    free_workload(w);
    return rv;
}
