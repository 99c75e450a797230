/* Linearizability checker: per-key WGL search with memoisation (see
 * lincheck.h for the algorithm and the counterexample it reports). */
#define _POSIX_C_SOURCE 200809L

#include "lincheck.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_STATES (UINT64_C(1) << 20)
#define DEFAULT_MAX_MS     10000

/* ---- budget ------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct budget {
    uint64_t max_states;
    int64_t deadline_ns;
    const char *why; /* set when a search gives up */
};

/* ---- memo: a hash set of (linearized bitset, register value) ----------- */

struct memo {
    size_t nw;       /* bitset words; an entry is nw + 1 words */
    uint64_t *arena; /* entries, back to back */
    size_t count, arena_cap;
    uint32_t *slots; /* 0: empty, else entry index + 1 */
    size_t nslots;   /* power of two */
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

static uint64_t memo_hash(const uint64_t *bits, size_t nw, int64_t state)
{
    uint64_t h = mix((uint64_t)state + UINT64_C(0x9e3779b97f4a7c15));
    for (size_t i = 0; i < nw; i++) {
        h = mix(h ^ bits[i]) + i;
    }
    return h;
}

static void memo_free(struct memo *m)
{
    free(m->arena);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static int memo_grow_slots(struct memo *m)
{
    size_t nslots = m->nslots ? m->nslots * 2 : 1024;
    uint32_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots) {
        return -1;
    }
    size_t ew = m->nw + 1;
    for (size_t i = 0; i < m->count; i++) {
        const uint64_t *e = m->arena + i * ew;
        size_t s = memo_hash(e, m->nw, (int64_t)e[m->nw]) & (nslots - 1);
        while (slots[s]) {
            s = (s + 1) & (nslots - 1);
        }
        slots[s] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

/* 1: added, 0: already there, -1: budget or memory ran out (b->why). */
static int memo_add(struct memo *m, const uint64_t *bits, int64_t state, struct budget *b)
{
    size_t ew = m->nw + 1;
    size_t s = memo_hash(bits, m->nw, state) & (m->nslots - 1);
    while (m->slots[s]) {
        const uint64_t *e = m->arena + (size_t)(m->slots[s] - 1) * ew;
        if ((int64_t)e[m->nw] == state && memcmp(e, bits, m->nw * sizeof(*bits)) == 0) {
            return 0;
        }
        s = (s + 1) & (m->nslots - 1);
    }
    if (m->count >= b->max_states || m->count >= UINT32_MAX - 1) {
        b->why = "max_states memo entries";
        return -1;
    }
    if (m->count == m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 1024;
        uint64_t *arena = realloc(m->arena, cap * ew * sizeof(*arena));
        if (!arena) {
            b->why = "memory";
            return -1;
        }
        m->arena = arena;
        m->arena_cap = cap;
    }
    uint64_t *e = m->arena + m->count * ew;
    memcpy(e, bits, m->nw * sizeof(*bits));
    e[m->nw] = (uint64_t)state;
    m->slots[s] = (uint32_t)(++m->count);
    if (m->count * 2 > m->nslots && memo_grow_slots(m) != 0) {
        b->why = "memory";
        return -1;
    }
    return 1;
}

/* ---- the register model ------------------------------------------------- */

/* Can @op take effect in @state? If so, *next is the state after it. */
static bool model_step(const struct hist_op *op, int64_t state, int64_t *next)
{
    *next = state;
    switch (op->type) {
    case HIST_READ:
        return op->status == HIST_OK && op->out == state;
    case HIST_WRITE:
        *next = op->value;
        return true;
    case HIST_CAS:
        if (op->status == HIST_OK && !op->out_ok) {
            return state != op->expect;
        }
        if (state != op->expect) {
            return false;
        }
        *next = op->value;
        return true;
    default:
        return false;
    }
}

/* ---- WGL search --------------------------------------------------------- */

struct event {
    int32_t op;
    bool call;
    int64_t t;
};

static int event_cmp(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t) {
        return x->t < y->t ? -1 : 1;
    }
    if (x->call != y->call) {
        return x->call ? -1 : 1; /* calls first: ties are concurrent */
    }
    return (x->op > y->op) - (x->op < y->op);
}

struct node {
    int32_t prev, next; /* -1: none */
    int32_t op;
    int32_t match; /* a call's return node */
    bool call;
};

struct frame {
    int32_t node;
    int64_t state;
};

static void lift(struct node *nd, int32_t e)
{
    int32_t r = nd[e].match;
    nd[nd[e].prev].next = nd[e].next;
    if (nd[e].next >= 0) {
        nd[nd[e].next].prev = nd[e].prev;
    }
    nd[nd[r].prev].next = nd[r].next;
    if (nd[r].next >= 0) {
        nd[nd[r].next].prev = nd[r].prev;
    }
}

static void unlift(struct node *nd, int32_t e)
{
    int32_t r = nd[e].match;
    nd[nd[r].prev].next = r;
    if (nd[r].next >= 0) {
        nd[nd[r].next].prev = r;
    }
    nd[nd[e].prev].next = e;
    if (nd[e].next >= 0) {
        nd[nd[e].next].prev = e;
    }
}

/* Check one key's ops (only OK ops and UNKNOWN writes/cas). */
static int wgl(const struct hist_op *ops, size_t n, struct budget *b)
{
    size_t nfin = 0;
    for (size_t i = 0; i < n; i++) {
        nfin += ops[i].status == HIST_OK;
    }
    if (nfin == 0) {
        return LIN_OK;
    }
    size_t ne = 2 * n, nw = (n + 63) / 64;
    struct event *ev = malloc(ne * sizeof(*ev));
    struct node *nd = malloc((ne + 1) * sizeof(*nd));
    uint64_t *bits = calloc(nw, sizeof(*bits));
    struct frame *stack = malloc(n * sizeof(*stack));
    struct memo m = {.nw = nw};
    int verdict = LIN_UNDECIDED;
    b->why = "memory";
    if (!ev || !nd || !bits || !stack || memo_grow_slots(&m) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t ret = ops[i].status == HIST_OK ? ops[i].complete_ns : INT64_MAX;
        if (ret < ops[i].invoke_ns) {
            ret = ops[i].invoke_ns;
        }
        ev[2 * i] = (struct event){(int32_t)i, true, ops[i].invoke_ns};
        ev[2 * i + 1] = (struct event){(int32_t)i, false, ret};
    }
    qsort(ev, ne, sizeof(*ev), event_cmp);
    int32_t head = (int32_t)ne;
    int32_t *ret_node = malloc(n * sizeof(*ret_node));
    if (!ret_node) {
        goto out;
    }
    for (size_t k = 0; k < ne; k++) {
        nd[k] = (struct node){(int32_t)k - 1, k + 1 < ne ? (int32_t)k + 1 : -1, ev[k].op, -1,
                              ev[k].call};
        if (!ev[k].call) {
            ret_node[ev[k].op] = (int32_t)k;
        }
    }
    nd[0].prev = head;
    nd[head] = (struct node){-1, 0, -1, -1, false};
    for (size_t k = 0; k < ne; k++) {
        if (nd[k].call) {
            nd[k].match = ret_node[nd[k].op];
        }
    }
    free(ret_node);

    size_t depth = 0, done = 0;
    int64_t state = 0;
    int32_t e = nd[head].next;
    uint64_t iter = 0;
    for (;;) {
        if ((++iter & 1023) == 0 && now_ns() > b->deadline_ns) {
            b->why = "max_ms wall time";
            verdict = LIN_UNDECIDED;
            break;
        }
        if (e >= 0 && nd[e].call) {
            int32_t op = nd[e].op;
            int64_t next;
            if (model_step(&ops[op], state, &next)) {
                uint64_t bit = UINT64_C(1) << (op % 64);
                bits[op / 64] |= bit;
                int added = memo_add(&m, bits, next, b);
                if (added < 0) {
                    verdict = LIN_UNDECIDED;
                    break;
                }
                if (added > 0) {
                    stack[depth++] = (struct frame){e, state};
                    state = next;
                    lift(nd, e);
                    if (ops[op].status == HIST_OK && ++done == nfin) {
                        verdict = LIN_OK;
                        break;
                    }
                    e = nd[head].next;
                    continue;
                }
                bits[op / 64] &= ~bit;
            }
            e = nd[e].next;
        } else {
            /* a return (or the end): the pending op cannot go later */
            if (depth == 0) {
                verdict = LIN_VIOLATION;
                break;
            }
            struct frame f = stack[--depth];
            e = f.node;
            state = f.state;
            int32_t op = nd[e].op;
            bits[op / 64] &= ~(UINT64_C(1) << (op % 64));
            if (ops[op].status == HIST_OK) {
                done--;
            }
            unlift(nd, e);
            e = nd[e].next;
        }
    }
out:
    memo_free(&m);
    free(ev);
    free(nd);
    free(bits);
    free(stack);
    return verdict;
}

/* ---- reports ------------------------------------------------------------ */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
    if (s->oom) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            s->oom = true;
            return;
        }
        if (s->p && s->len + (size_t)k < s->cap) {
            s->len += (size_t)k;
            return;
        }
        size_t cap = s->cap ? s->cap : 256;
        while (cap <= s->len + (size_t)k) {
            cap *= 2;
        }
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = true;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
}

/* ---- per key ------------------------------------------------------------ */

/* The cut of a key's ops (sorted by invoke) at time @t: ops invoked by
 * then, those not completed by then as UNKNOWN (reads dropped). Returns
 * the count; inflight[i] says whether out[i] was cut short. */
static size_t make_cut(const struct hist_op *const *ops, size_t n, int64_t t, struct hist_op *out,
                       bool *inflight, const struct hist_op **orig)
{
    size_t k = 0;
    for (size_t i = 0; i < n && ops[i]->invoke_ns <= t; i++) {
        bool done = ops[i]->status == HIST_OK && ops[i]->complete_ns <= t;
        if (!done && ops[i]->type == HIST_READ) {
            continue;
        }
        out[k] = *ops[i];
        if (!done) {
            out[k].status = HIST_UNKNOWN;
        }
        inflight[k] = !done && ops[i]->status == HIST_OK;
        orig[k] = ops[i];
        k++;
    }
    return k;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The key's history violates: find the shortest violating cut and report. */
static char *report_violation(const struct hist_op *const *ops, size_t n, struct budget *b)
{
    struct hist_op *cut = malloc((n ? n : 1) * sizeof(*cut));
    bool *inflight = malloc((n ? n : 1) * sizeof(*inflight));
    const struct hist_op **orig = malloc((n ? n : 1) * sizeof(*orig));
    int64_t *ts = malloc((n ? n : 1) * sizeof(*ts));
    struct sbuf s = {0};
    if (!cut || !inflight || !orig || !ts) {
        goto out;
    }
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->status == HIST_OK) {
            ts[nt++] = ops[i]->complete_ns;
        }
    }
    qsort(ts, nt, sizeof(*ts), cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < nt; i++) {
        if (u == 0 || ts[u - 1] != ts[i]) {
            ts[u++] = ts[i];
        }
    }
    nt = u;
    /* Invariant: the cut at ts[hi] violates (or hi == nt: the whole key). */
    size_t lo = 0, hi = nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t k = make_cut(ops, n, ts[mid], cut, inflight, orig);
        if (wgl(cut, k, b) == LIN_VIOLATION) {
            hi = mid;
        } else {
            lo = mid + 1; /* linearizable, or out of budget: look later */
        }
    }
    size_t k;
    if (hi < nt) {
        k = make_cut(ops, n, ts[hi], cut, inflight, orig);
        sb_printf(&s,
                  "key %" PRIu32 " is not linearizable; shortest failing prefix: the %zu of its "
                  "%zu ops invoked by %" PRId64 " ns (an op's completion); ops marked '?' had not "
                  "completed by then and count as unknown; later ops omitted:\n",
                  ops[0]->key, k, n, ts[hi]);
    } else {
        k = make_cut(ops, n, INT64_MAX, cut, inflight, orig);
        for (size_t i = 0; i < k; i++) {
            inflight[i] = false;
        }
        sb_printf(&s, "key %" PRIu32 " is not linearizable; its %zu ops:\n", ops[0]->key, n);
    }
    for (size_t i = 0; i < k; i++) {
        char line[256];
        hist_format(orig[i], line, sizeof(line));
        sb_printf(&s, "%c %s\n", inflight[i] ? '?' : ' ', line);
    }
out:
    free(cut);
    free(inflight);
    free(orig);
    free(ts);
    if (s.oom || !s.p) {
        free(s.p);
        return strdup("not linearizable (out of memory writing the report)");
    }
    return s.p;
}

static int key_check(const struct hist_op *const *ops, size_t n, struct budget *b, char **report)
{
    struct hist_op *copy = malloc((n ? n : 1) * sizeof(*copy));
    if (!copy) {
        b->why = "memory";
        return LIN_UNDECIDED;
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = *ops[i];
    }
    int v = wgl(copy, n, b);
    free(copy);
    if (v == LIN_VIOLATION) {
        *report = report_violation(ops, n, b);
    }
    return v;
}

/* ---- the run ------------------------------------------------------------ */

static int op_ptr_cmp(const void *a, const void *b)
{
    const struct hist_op *x = *(const struct hist_op *const *)a;
    const struct hist_op *y = *(const struct hist_op *const *)b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    if (x->invoke_ns != y->invoke_ns) {
        return x->invoke_ns < y->invoke_ns ? -1 : 1;
    }
    return (x > y) - (x < y); /* stable: history order */
}

int lincheck_run(const struct history *h, const struct lincheck_opts *o, struct lincheck_result *r)
{
    memset(r, 0, sizeof(*r));
    struct budget b = {DEFAULT_MAX_STATES, 0, NULL};
    int64_t max_ms = DEFAULT_MAX_MS;
    if (o && o->max_states) {
        b.max_states = o->max_states;
    }
    if (o && o->max_ms > 0) {
        max_ms = o->max_ms;
    }
    b.deadline_ns = now_ns() + max_ms * 1000000;

    const struct hist_op **ops = malloc((h->n ? h->n : 1) * sizeof(*ops));
    if (!ops) {
        r->verdict = LIN_UNDECIDED;
        r->report = strdup("undecided: out of memory");
        return r->verdict;
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const struct hist_op *op = &h->ops[i];
        if (op->status == HIST_FAIL || (op->type == HIST_READ && op->status != HIST_OK)) {
            continue; /* did not happen, or constrains nothing */
        }
        ops[n++] = op;
    }
    qsort(ops, n, sizeof(*ops), op_ptr_cmp);
    r->ops = n;

    int verdict = LIN_OK;
    uint32_t undecided_key = 0;
    const char *undecided_why = NULL;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && ops[j]->key == ops[i]->key) {
            j++;
        }
        r->keys++;
        if (verdict != LIN_VIOLATION) {
            char *report = NULL;
            int v = key_check(ops + i, j - i, &b, &report);
            if (v == LIN_VIOLATION) {
                verdict = v;
                r->key = ops[i]->key;
                r->report = report;
            } else if (v == LIN_UNDECIDED && verdict == LIN_OK) {
                verdict = v;
                undecided_key = ops[i]->key;
                undecided_why = b.why;
            }
        }
        i = j;
    }
    if (verdict == LIN_UNDECIDED) {
        char buf[160];
        snprintf(buf, sizeof(buf),
                 "undecided: the search on key %" PRIu32 " ran out of %s (count as a failure)",
                 undecided_key, undecided_why ? undecided_why : "budget");
        r->key = undecided_key;
        r->report = strdup(buf);
    }
    free(ops);
    r->verdict = verdict;
    return verdict;
}

void lincheck_result_free(struct lincheck_result *r)
{
    free(r->report);
    r->report = NULL;
}
