/* Unit tests of the register history (tests/nemesis/history.c) and the
 * linearizability checker (tests/nemesis/lincheck.c).
 *
 * The history's text form round trips, and malformed lines are refused.
 * The checker accepts hand-built linearizable histories (concurrent writes,
 * cas that swapped or not, UNKNOWN and FAIL writes, several keys) and
 * rejects hand-built violations naming the right key with a counterexample.
 * Randomized: histories generated from a simulated register (effects at a
 * random point inside each op's interval, some ops UNKNOWN or FAIL; fixed
 * seeds) must check OK, and each one mutated so that a read returns a
 * value that could not be current during its interval must be a violation.
 * Finally, a pathological history with a tiny budget is LIN_UNDECIDED. */
#define _POSIX_C_SOURCE 200809L

#include "history.h"
#include "lincheck.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* ck_assert for loops: Check records a mark point for every passing one. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ck_abort_msg(__VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic, seeded per test. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd(uint64_t n)
{
    return rng_next() % n;
}

static void add(struct history *h, int client, int type, int status, uint32_t key, int64_t value,
                int64_t expect, int64_t out, bool out_ok, int64_t inv, int64_t comp)
{
    struct hist_op op = {client, type, status, key, value, expect, out, out_ok, inv, comp};
    ck_assert_int_eq(hist_add(h, &op), 0);
}

static void wr(struct history *h, int c, uint32_t k, int64_t v, int st, int64_t inv, int64_t comp)
{
    add(h, c, HIST_WRITE, st, k, v, 0, 0, false, inv, comp);
}

static void rd(struct history *h, int c, uint32_t k, int64_t out, int st, int64_t inv, int64_t comp)
{
    add(h, c, HIST_READ, st, k, 0, 0, out, false, inv, comp);
}

static void cas(struct history *h, int c, uint32_t k, int64_t expect, int64_t v, bool ok, int st,
                int64_t inv, int64_t comp)
{
    add(h, c, HIST_CAS, st, k, v, expect, 0, ok, inv, comp);
}

/* Check @h, expect @verdict (and for a violation, @key and a report). */
static void expect_verdict(struct history *h, int verdict, uint32_t key, const char *what)
{
    struct lincheck_result r;
    int v = lincheck_run(h, NULL, &r);
    ck_assert_int_eq(v, r.verdict);
    if (v != verdict) {
        ck_abort_msg("%s: verdict %d, want %d; report:\n%s", what, v, verdict,
                     r.report ? r.report : "(none)");
    }
    if (verdict == LIN_OK) {
        ck_assert_msg(r.report == NULL, "%s: a report when OK", what);
    } else {
        ck_assert_msg(r.key == key, "%s: key %u, want %u", what, (unsigned)r.key, (unsigned)key);
        ck_assert_msg(r.report && r.report[0], "%s: no report", what);
    }
    lincheck_result_free(&r);
    hist_free(h);
    hist_init(h);
}

/* ---- history.c ---------------------------------------------------------- */

static bool op_eq(const struct hist_op *a, const struct hist_op *b)
{
    return a->client == b->client && a->type == b->type && a->status == b->status &&
           a->key == b->key && a->value == b->value && a->expect == b->expect && a->out == b->out &&
           a->out_ok == b->out_ok && a->invoke_ns == b->invoke_ns &&
           a->complete_ns == b->complete_ns;
}

static void tmp_path(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/test-lincheck-XXXXXX");
    int fd = mkstemp(buf);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_history_round_trip)
{
    char path[64];
    tmp_path(path, sizeof(path));
    struct history h, back;
    hist_init(&h);
    add(&h, -1, HIST_CAS, HIST_OK, UINT32_MAX, INT64_MAX, INT64_MIN, -5, true, INT64_MIN,
        INT64_MAX);
    add(&h, 0, HIST_READ, HIST_UNKNOWN, 0, 0, 0, 0, false, 0, 0);
    rng_state = 42;
    for (int i = 0; i < 500; i++) {
        add(&h, (int)rnd(100), 1 + (int)rnd(3), 1 + (int)rnd(3), (uint32_t)rng_next(),
            (int64_t)rng_next(), (int64_t)rng_next(), (int64_t)rng_next(), rnd(2) == 1,
            (int64_t)rng_next(), (int64_t)rng_next());
    }
    ck_assert_int_eq(hist_write(&h, path), 0);
    ck_assert_int_eq(hist_read(&back, path), 0);
    ck_assert_uint_eq(back.n, h.n);
    for (size_t i = 0; i < h.n; i++) {
        char a[256], b[256];
        hist_format(&h.ops[i], a, sizeof(a));
        hist_format(&back.ops[i], b, sizeof(b));
        REQUIRE(op_eq(&h.ops[i], &back.ops[i]), "op %zu: wrote %s, read %s", i, a, b);
    }
    hist_free(&back);

    /* Blank lines are fine. */
    write_text(path, "\n1 write 7 3 0 0 ok 0 10 20\n\n");
    ck_assert_int_eq(hist_read(&back, path), 0);
    ck_assert_uint_eq(back.n, 1);
    ck_assert(back.ops[0].type == HIST_WRITE && back.ops[0].key == 7 && back.ops[0].value == 3);
    hist_free(&back);

    static const char *const bad[] = {
        "1 write 7 3 0 0 ok 0 10\n",                      /* a field short */
        "1 write 7 3 0 0 ok 0 10 20 30\n",                /* a field long */
        "1 put 7 3 0 0 ok 0 10 20\n",                     /* type */
        "1 write 7 3 0 0 maybe 0 10 20\n",                /* status */
        "1 write 7 3 0 0 ok 2 10 20\n",                   /* out_ok */
        "1 write -7 3 0 0 ok 0 10 20\n",                  /* key range */
        "1 write 4294967296 3 0 0 ok 0 1 2\n",            /* key range */
        "1 write 7 3x 0 0 ok 0 10 20\n",                  /* trailing junk */
        "1 write 7 3 0 0 ok 0 10 99999999999999999999\n", /* overflow */
        "x write 7 3 0 0 ok 0 10 20\n",                   /* client */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "1 read 7 0 0 0 ok 0 1 2\n%s", bad[i]);
        write_text(path, text);
        errno = 0;
        ck_assert_msg(hist_read(&back, path) == -1, "accepted: %s", bad[i]);
        ck_assert_int_eq(errno, EINVAL);
        ck_assert_uint_eq(back.n, 0);
    }
    unlink(path);
    ck_assert_int_eq(hist_read(&back, path), -1);
    ck_assert_int_eq(errno, ENOENT);
    hist_free(&h);
}
END_TEST

/* ---- known linearizable ------------------------------------------------- */

START_TEST(test_linearizable)
{
    struct history h;
    hist_init(&h);

    wr(&h, 1, 1, 5, HIST_OK, 0, 10);
    rd(&h, 1, 1, 5, HIST_OK, 20, 30);
    wr(&h, 1, 1, 6, HIST_OK, 40, 50);
    rd(&h, 2, 1, 6, HIST_OK, 60, 70);
    expect_verdict(&h, LIN_OK, 0, "sequential write/read");

    /* Two concurrent writes; readers during and after see either order,
     * but consistently once both are done. */
    wr(&h, 1, 1, 1, HIST_OK, 0, 100);
    wr(&h, 2, 1, 2, HIST_OK, 10, 90);
    rd(&h, 3, 1, 2, HIST_OK, 20, 30);
    rd(&h, 4, 1, 1, HIST_OK, 40, 50);
    rd(&h, 3, 1, 1, HIST_OK, 110, 120);
    expect_verdict(&h, LIN_OK, 0, "concurrent writes, order 2 then 1");
    wr(&h, 1, 1, 1, HIST_OK, 0, 100);
    wr(&h, 2, 1, 2, HIST_OK, 10, 90);
    rd(&h, 3, 1, 1, HIST_OK, 20, 30);
    rd(&h, 3, 1, 2, HIST_OK, 110, 120);
    expect_verdict(&h, LIN_OK, 0, "concurrent writes, order 1 then 2");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    cas(&h, 2, 1, 1, 2, true, HIST_OK, 20, 30);
    rd(&h, 1, 1, 2, HIST_OK, 40, 50);
    expect_verdict(&h, LIN_OK, 0, "cas swapped");

    wr(&h, 1, 1, 3, HIST_OK, 0, 10);
    cas(&h, 2, 1, 1, 2, false, HIST_OK, 20, 30);
    rd(&h, 1, 1, 3, HIST_OK, 40, 50);
    cas(&h, 2, 1, 0, 9, false, HIST_OK, 60, 70); /* "only if absent" on a present key */
    expect_verdict(&h, LIN_OK, 0, "cas failed on a different value");

    cas(&h, 2, 1, 0, 4, true, HIST_OK, 0, 10); /* "only if absent" on an absent key */
    rd(&h, 1, 1, 4, HIST_OK, 20, 30);
    expect_verdict(&h, LIN_OK, 0, "cas from absent");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    wr(&h, 2, 1, 2, HIST_UNKNOWN, 20, 30);
    rd(&h, 1, 1, 1, HIST_OK, 40, 50);
    rd(&h, 1, 1, 2, HIST_OK, 1000, 1010); /* took effect late */
    rd(&h, 3, 1, 2, HIST_OK, 2000, 2010);
    expect_verdict(&h, LIN_OK, 0, "unknown write seen later");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    wr(&h, 2, 1, 2, HIST_UNKNOWN, 20, 30);
    rd(&h, 1, 1, 1, HIST_OK, 40, 50);
    rd(&h, 1, 1, 1, HIST_OK, 1000, 1010);
    expect_verdict(&h, LIN_OK, 0, "unknown write never seen");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    cas(&h, 2, 1, 1, 7, false, HIST_UNKNOWN, 20, 30);
    rd(&h, 1, 1, 7, HIST_OK, 40, 50);
    expect_verdict(&h, LIN_OK, 0, "unknown cas took effect");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    wr(&h, 2, 1, 2, HIST_FAIL, 20, 30);
    rd(&h, 1, 1, 1, HIST_OK, 40, 50);
    rd(&h, 3, 1, 99, HIST_UNKNOWN, 40, 50); /* no answer: constrains nothing */
    rd(&h, 3, 1, 98, HIST_FAIL, 60, 70);
    expect_verdict(&h, LIN_OK, 0, "failed write never seen");

    rd(&h, 1, 1, 0, HIST_OK, 0, 10);
    rd(&h, 2, 1, 0, HIST_OK, 5, 25);
    wr(&h, 3, 1, 1, HIST_OK, 20, 30);
    rd(&h, 1, 1, 1, HIST_OK, 40, 50);
    expect_verdict(&h, LIN_OK, 0, "reads of absent before the first write");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    wr(&h, 2, 2, 2, HIST_OK, 5, 15);
    rd(&h, 3, 1, 1, HIST_OK, 12, 20);
    rd(&h, 4, 2, 2, HIST_OK, 16, 22);
    rd(&h, 1, 3, 0, HIST_OK, 20, 30);
    wr(&h, 2, 1, 3, HIST_OK, 25, 35);
    rd(&h, 3, 2, 2, HIST_OK, 30, 40);
    rd(&h, 4, 1, 3, HIST_OK, 40, 45);
    expect_verdict(&h, LIN_OK, 0, "several keys interleaved");

    expect_verdict(&h, LIN_OK, 0, "empty history");
}
END_TEST

/* ---- known violations --------------------------------------------------- */

START_TEST(test_violations)
{
    struct history h;
    hist_init(&h);

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    rd(&h, 2, 1, 0, HIST_OK, 20, 30);
    expect_verdict(&h, LIN_VIOLATION, 1, "stale read");

    wr(&h, 1, 1, 5, HIST_OK, 0, 10);
    rd(&h, 2, 1, 0, HIST_OK, 20, 30);
    rd(&h, 2, 1, 0, HIST_OK, 40, 50);
    rd(&h, 3, 1, 0, HIST_OK, 60, 70);
    expect_verdict(&h, LIN_VIOLATION, 1, "lost write");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    cas(&h, 2, 1, 1, 2, true, HIST_OK, 20, 30);
    cas(&h, 3, 1, 1, 2, true, HIST_OK, 40, 50);
    expect_verdict(&h, LIN_VIOLATION, 1, "duplicated cas");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    cas(&h, 2, 1, 1, 2, false, HIST_OK, 20, 30);
    expect_verdict(&h, LIN_VIOLATION, 1, "cas refused on the expected value");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    rd(&h, 2, 1, 42, HIST_OK, 5, 30);
    expect_verdict(&h, LIN_VIOLATION, 1, "read of a value never written");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    wr(&h, 2, 1, 2, HIST_FAIL, 20, 30);
    rd(&h, 3, 1, 2, HIST_OK, 25, 40);
    expect_verdict(&h, LIN_VIOLATION, 1, "read of a failed write");

    rd(&h, 1, 1, 3, HIST_OK, 0, 10);
    wr(&h, 2, 1, 3, HIST_OK, 20, 30);
    expect_verdict(&h, LIN_VIOLATION, 1, "read from the future");

    wr(&h, 1, 1, 1, HIST_OK, 0, 10);
    rd(&h, 2, 1, 1, HIST_OK, 20, 30);
    wr(&h, 3, 2, 7, HIST_OK, 0, 10);
    rd(&h, 4, 2, 7, HIST_OK, 20, 30);
    wr(&h, 3, 2, 8, HIST_OK, 40, 50);
    rd(&h, 4, 2, 7, HIST_OK, 60, 70);
    rd(&h, 1, 1, 1, HIST_OK, 60, 70);
    expect_verdict(&h, LIN_VIOLATION, 2, "violation on key 2, key 1 fine");
}
END_TEST

/* The report is the shortest failing cut: the later ops are not in it. */
START_TEST(test_counterexample_is_short)
{
    struct history h;
    hist_init(&h);
    for (int i = 0; i < 20; i++) {
        wr(&h, 1, 1, i + 1, HIST_OK, i * 100, i * 100 + 10);
        rd(&h, 2, 1, i + 1, HIST_OK, i * 100 + 20, i * 100 + 30);
    }
    rd(&h, 3, 1, 1, HIST_OK, 150, 160); /* stale: 2 was written at 110 */
    for (int i = 20; i < 40; i++) {
        wr(&h, 1, 1, i + 1, HIST_OK, i * 100, i * 100 + 10);
    }
    struct lincheck_result r;
    ck_assert_int_eq(lincheck_run(&h, NULL, &r), LIN_VIOLATION);
    ck_assert_uint_eq(r.key, 1);
    ck_assert_uint_eq(r.keys, 1);
    ck_assert_uint_eq(r.ops, 61);
    ck_assert_ptr_nonnull(strstr(r.report, "1 write 1 2 0 0 ok 0 100 110"));
    ck_assert_ptr_nonnull(strstr(r.report, "3 read 1 0 0 1 ok 0 150 160"));
    ck_assert_ptr_null(strstr(r.report, "1 write 1 4 0 0 ok 0"));
    ck_assert_ptr_null(strstr(r.report, "1 write 1 40 0 0"));
    lincheck_result_free(&r);
    hist_free(&h);
}
END_TEST

/* ---- randomized --------------------------------------------------------- */

struct gen {
    struct hist_op op;
    int64_t at; /* when it takes effect */
    bool effect;
};

static int gen_cmp(const void *a, const void *b)
{
    const struct gen *x = a, *y = b;
    return (x->at > y->at) - (x->at < y->at);
}

/* A history of @nops ops by 10 clients on @nkeys keys, from a simulated
 * register: each op takes effect at a random point inside its interval
 * (UNKNOWN ones maybe not at all, FAIL ones never). */
static void gen_history(struct history *h, int nops, int nkeys)
{
    struct gen *g = calloc((size_t)nops, sizeof(*g));
    ck_assert_ptr_nonnull(g);
    int64_t t[10] = {0};
    int64_t next_val = 1;
    for (int i = 0; i < nops; i++) {
        int c = (int)rnd(10);
        int64_t inv = t[c] + (int64_t)rnd(30);
        int64_t dur = 1 + (int64_t)rnd(100);
        t[c] = inv + dur;
        uint64_t roll = rnd(100);
        int type = roll < 40 ? HIST_READ : roll < 75 ? HIST_WRITE : HIST_CAS;
        roll = rnd(100);
        int status = roll < 5 ? HIST_UNKNOWN : roll < 8 ? HIST_FAIL : HIST_OK;
        struct hist_op op = {c,     type, status,   1 + (uint32_t)rnd((uint64_t)nkeys), 0, 0, 0,
                             false, inv,  inv + dur};
        if (type != HIST_READ) {
            op.value = next_val++;
        }
        g[i].op = op;
        g[i].at = inv + (int64_t)rnd((uint64_t)dur + 1);
        g[i].effect = status == HIST_OK || (status == HIST_UNKNOWN && rnd(2) == 0);
    }
    qsort(g, (size_t)nops, sizeof(*g), gen_cmp);
    int64_t state[8] = {0};
    int64_t seen[64] = {0}; /* values recently current, for cas expects */
    for (int i = 0; i < nops; i++) {
        struct hist_op *op = &g[i].op;
        int64_t *s = &state[op->key];
        if (op->type == HIST_READ) {
            op->out = g[i].effect ? *s : (int64_t)rnd(5);
        } else if (op->type == HIST_WRITE) {
            if (g[i].effect) {
                *s = op->value;
            }
        } else {
            op->expect = rnd(2) ? *s : seen[rnd(64)];
            bool swap = *s == op->expect;
            op->out_ok = op->status == HIST_OK && swap;
            if (g[i].effect && swap) {
                *s = op->value;
            }
        }
        seen[rnd(64)] = *s;
    }
    /* Record in a shuffled order: the checker must not rely on it. */
    for (int i = nops - 1; i > 0; i--) {
        int j = (int)rnd((uint64_t)i + 1);
        struct gen tmp = g[i];
        g[i] = g[j];
        g[j] = tmp;
    }
    for (int i = 0; i < nops; i++) {
        ck_assert_int_eq(hist_add(h, &g[i].op), 0);
    }
    free(g);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

START_TEST(test_random)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double worst = 0, worst_bad = 0;
    int mutated_future = 0;
    for (int n = 0; n < 200; n++) {
        rng_state = 0x1234567ULL + (uint64_t)n * 7919;
        int nkeys = 1 + n % 3;
        struct history h;
        hist_init(&h);
        gen_history(&h, 200, nkeys);

        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        struct lincheck_result r;
        int v = lincheck_run(&h, NULL, &r);
        double ms = ms_since(&t1);
        worst = ms > worst ? ms : worst;
        REQUIRE(v == LIN_OK, "history %d (seed %d): verdict %d: %s", n, n, v,
                r.report ? r.report : "");
        REQUIRE(r.ops > 0 && r.keys <= (size_t)nkeys, "history %d: %zu keys %zu ops", n, r.keys,
                r.ops);
        lincheck_result_free(&r);

        /* Mutate one answered read. */
        size_t reads[200], nr = 0;
        for (size_t i = 0; i < h.n; i++) {
            if (h.ops[i].type == HIST_READ && h.ops[i].status == HIST_OK) {
                reads[nr++] = i;
            }
        }
        REQUIRE(nr > 0, "history %d has no read", n);
        struct hist_op *victim = &h.ops[reads[rnd(nr)]];
        int64_t saved = victim->out;
        /* (a) a value never written by anyone */
        victim->out = 1000000 + (int64_t)rnd(1000);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        v = lincheck_run(&h, NULL, &r);
        ms = ms_since(&t1);
        worst_bad = ms > worst_bad ? ms : worst_bad;
        REQUIRE(v == LIN_VIOLATION && r.key == victim->key && r.report,
                "history %d, never-written read: verdict %d key %u", n, v, (unsigned)r.key);
        lincheck_result_free(&r);
        /* (b) the (unique) value of a write on that key invoked only after
         * the read completed: never current during the read. */
        victim->out = saved;
        for (size_t i = 0; i < h.n; i++) {
            const struct hist_op *w = &h.ops[i];
            if (w->key == victim->key && w->type != HIST_READ &&
                w->invoke_ns > victim->complete_ns) {
                victim->out = w->value;
                break;
            }
        }
        if (victim->out != saved) {
            mutated_future++;
            v = lincheck_run(&h, NULL, &r);
            REQUIRE(v == LIN_VIOLATION && r.key == victim->key,
                    "history %d, read from the future: verdict %d key %u", n, v, (unsigned)r.key);
            lincheck_result_free(&r);
        }
        hist_free(&h);
    }
    ck_assert_int_gt(mutated_future, 100);
    fprintf(stderr,
            "test_random: 200 histories of 200 ops (+ mutants) in %.1f ms; worst OK check "
            "%.2f ms, worst violation (with counterexample) %.2f ms\n",
            ms_since(&t0), worst, worst_bad);
}
END_TEST

/* ---- budget ------------------------------------------------------------- */

START_TEST(test_budget)
{
    struct history h;
    hist_init(&h);
    for (int i = 0; i < 40; i++) {
        wr(&h, i, 1, i + 1, HIST_UNKNOWN, i, 0);
    }
    rd(&h, 99, 1, 40, HIST_OK, 100, 200);
    struct lincheck_opts o = {1000, 10000};
    struct lincheck_result r;
    ck_assert_int_eq(lincheck_run(&h, &o, &r), LIN_OK); /* possible, and found first */
    lincheck_result_free(&r);

    h.ops[h.n - 1].out = 4242; /* impossible: needs the whole search */
    ck_assert_int_eq(lincheck_run(&h, &o, &r), LIN_UNDECIDED);
    ck_assert_uint_eq(r.key, 1);
    ck_assert_ptr_nonnull(r.report);
    ck_assert_ptr_nonnull(strstr(r.report, "max_states"));
    lincheck_result_free(&r);

    /* The wall-time budget too. */
    struct lincheck_opts slow = {UINT64_C(1) << 40, 50};
    ck_assert_int_eq(lincheck_run(&h, &slow, &r), LIN_UNDECIDED);
    ck_assert_ptr_nonnull(strstr(r.report, "max_ms"));
    lincheck_result_free(&r);
    hist_free(&h);
}
END_TEST

static Suite *lincheck_suite(void)
{
    Suite *s = suite_create("lincheck");
    TCase *tc = tcase_create("history");
    tcase_add_test(tc, test_history_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("checker");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_linearizable);
    tcase_add_test(tc, test_violations);
    tcase_add_test(tc, test_counterexample_is_short);
    tcase_add_test(tc, test_random);
    tcase_add_test(tc, test_budget);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lincheck_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
