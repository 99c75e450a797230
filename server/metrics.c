/* Counters, fixed-bucket histograms and the Prometheus text format (see
 * metrics.h).
 *
 * Happy path: init allocates one flat array per family, indexed by series
 * (first dimension major); recording indexes into it (a histogram walks its
 * few bounds to find the bucket); rendering walks the series and writes
 * each line with snprintf-free appends into the caller's growable buffer.
 *
 * Failure modes: a bad spec is BL_EBADREQ at init, memory runs out at init
 * (BL_ENOMEM) or while rendering (BL_ENOMEM, sticky in the text; what was
 * written stays, so the caller must not serve a partial exposition). An
 * index out of range when recording is a programmer error (assert). */
#include "metrics.h"

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define MAX_DECIMALS 18
#define MAX_BOUNDS   64

/* ---- families -------------------------------------------------------------------------- */

static int spec_check(const struct bl_metric_spec *spec, unsigned *n_series)
{
    unsigned n = 1;
    if (spec->name == NULL || spec->name[0] == '\0' || spec->help == NULL ||
        spec->n_dims > BL_METRICS_MAX_DIMS || spec->decimals > MAX_DECIMALS) {
        return BL_EBADREQ;
    }
    for (unsigned d = 0; d < spec->n_dims; d++) {
        if (spec->label[d] == NULL || spec->values[d] == NULL || spec->n_values[d] == 0) {
            return BL_EBADREQ;
        }
        n *= spec->n_values[d];
    }
    *n_series = n;
    return 0;
}

/* The flat index of series (@i, @j). */
static unsigned series(const struct bl_metric_spec *spec, unsigned i, unsigned j)
{
    unsigned n0 = spec->n_dims > 0 ? spec->n_values[0] : 1;
    unsigned n1 = spec->n_dims > 1 ? spec->n_values[1] : 1;
    assert(i < n0 && j < n1);
    (void)n0;
    return i * n1 + j;
}

int bl_counter_init(struct bl_counter *c, const struct bl_metric_spec *spec)
{
    unsigned n;
    int rv;

    memset(c, 0, sizeof *c);
    rv = spec_check(spec, &n);
    if (rv != 0) {
        return rv;
    }
    c->v = calloc(n, sizeof *c->v);
    if (c->v == NULL) {
        return BL_ENOMEM;
    }
    c->spec = *spec;
    c->n_series = n;
    return 0;
}

void bl_counter_free(struct bl_counter *c)
{
    free(c->v);
    c->v = NULL;
    c->n_series = 0;
}

void bl_counter_add(struct bl_counter *c, unsigned i, unsigned j, uint64_t n)
{
    c->v[series(&c->spec, i, j)] += n;
}

uint64_t bl_counter_get(const struct bl_counter *c, unsigned i, unsigned j)
{
    return c->v[series(&c->spec, i, j)];
}

int bl_histogram_init(struct bl_histogram *h, const struct bl_metric_spec *spec,
                      const uint64_t *bounds, unsigned n_bounds)
{
    unsigned n;
    int rv;

    memset(h, 0, sizeof *h);
    rv = spec_check(spec, &n);
    if (rv != 0) {
        return rv;
    }
    if (bounds == NULL || n_bounds == 0 || n_bounds > MAX_BOUNDS) {
        return BL_EBADREQ;
    }
    for (unsigned k = 1; k < n_bounds; k++) {
        if (bounds[k] <= bounds[k - 1]) {
            return BL_EBADREQ;
        }
    }
    h->buckets = calloc((size_t)n * (n_bounds + 1), sizeof *h->buckets);
    h->sum = calloc(n, sizeof *h->sum);
    if (h->buckets == NULL || h->sum == NULL) {
        bl_histogram_free(h);
        return BL_ENOMEM;
    }
    h->spec = *spec;
    h->n_series = n;
    h->bounds = bounds;
    h->n_bounds = n_bounds;
    return 0;
}

void bl_histogram_free(struct bl_histogram *h)
{
    free(h->buckets);
    free(h->sum);
    h->buckets = NULL;
    h->sum = NULL;
    h->n_series = 0;
}

void bl_histogram_observe(struct bl_histogram *h, unsigned i, unsigned j, uint64_t value)
{
    unsigned s = series(&h->spec, i, j);
    unsigned b = 0;
    while (b < h->n_bounds && value > h->bounds[b]) {
        b++;
    }
    h->buckets[(size_t)s * (h->n_bounds + 1) + b]++;
    h->sum[s] += value;
}

static uint64_t series_count(const struct bl_histogram *h, unsigned s)
{
    const uint64_t *b = h->buckets + (size_t)s * (h->n_bounds + 1);
    uint64_t n = 0;
    for (unsigned k = 0; k <= h->n_bounds; k++) {
        n += b[k];
    }
    return n;
}

uint64_t bl_histogram_count(const struct bl_histogram *h, unsigned i, unsigned j)
{
    return series_count(h, series(&h->spec, i, j));
}

/* ---- text ---------------------------------------------------------------------------------- */

void bl_metrics_text_init(struct bl_metrics_text *t)
{
    memset(t, 0, sizeof *t);
}

void bl_metrics_text_free(struct bl_metrics_text *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* Make room for @n more bytes and the NUL. */
static bool reserve(struct bl_metrics_text *t, size_t n)
{
    size_t cap;
    char *p;
    if (t->err != 0) {
        return false;
    }
    if (t->len + n + 1 <= t->cap) {
        return true;
    }
    cap = t->cap > 0 ? t->cap : 4096;
    while (cap < t->len + n + 1) {
        cap *= 2;
    }
    p = realloc(t->data, cap);
    if (p == NULL) {
        t->err = BL_ENOMEM;
        return false;
    }
    t->data = p;
    t->cap = cap;
    return true;
}

static void put(struct bl_metrics_text *t, const char *s, size_t n)
{
    if (reserve(t, n)) {
        memcpy(t->data + t->len, s, n);
        t->len += n;
        t->data[t->len] = '\0';
    }
}

static void puts_(struct bl_metrics_text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* @s with backslash and newline escaped, and with the double quote too
 * when @quote (label values; HELP text leaves quotes alone). */
static void put_escaped(struct bl_metrics_text *t, const char *s, bool quote)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (*s == '"' && quote) {
            esc = "\\\"";
        }
        if (esc != NULL) {
            put(t, run, (size_t)(s - run));
            puts_(t, esc);
            run = s + 1;
        }
    }
    put(t, run, (size_t)(s - run));
}

#define VALUE_BUF 48

/* @v / 10^@decimals as a decimal without trailing zeros ("0.0025", "3"),
 * NUL-terminated at the end of @buf; returns where it starts. */
static const char *fmt_value(char buf[VALUE_BUF], uint64_t v, unsigned decimals)
{
    size_t i = VALUE_BUF - 1;
    bool frac = false;

    buf[i] = '\0';
    for (unsigned d = 0; d < decimals; d++) {
        char digit = (char)('0' + v % 10);
        v /= 10;
        if (frac || digit != '0') {
            buf[--i] = digit;
            frac = true;
        }
    }
    if (frac) {
        buf[--i] = '.';
    }
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return buf + i;
}

static void put_value(struct bl_metrics_text *t, uint64_t v, unsigned decimals)
{
    char buf[VALUE_BUF];
    puts_(t, fmt_value(buf, v, decimals));
}

int bl_metrics_text_family(struct bl_metrics_text *t, const char *name, const char *type,
                           const char *help)
{
    puts_(t, "# HELP ");
    puts_(t, name);
    puts_(t, " ");
    put_escaped(t, help, false);
    puts_(t, "\n# TYPE ");
    puts_(t, name);
    puts_(t, " ");
    puts_(t, type);
    puts_(t, "\n");
    return t->err;
}

/* "name{a="x",b="y"} " for series @s of @spec, with @suffix after the name
 * and the extra label @le (NULL: none) last. */
static void put_series(struct bl_metrics_text *t, const struct bl_metric_spec *spec, unsigned s,
                       const char *suffix, const char *le)
{
    unsigned n1 = spec->n_dims > 1 ? spec->n_values[1] : 1;
    unsigned idx[BL_METRICS_MAX_DIMS] = {s / n1, s % n1};
    const char *sep = "{";

    puts_(t, spec->name);
    puts_(t, suffix);
    for (unsigned d = 0; d < spec->n_dims; d++) {
        puts_(t, sep);
        puts_(t, spec->label[d]);
        puts_(t, "=\"");
        put_escaped(t, spec->values[d][idx[d]], true);
        puts_(t, "\"");
        sep = ",";
    }
    if (le != NULL) {
        puts_(t, sep);
        puts_(t, "le=\"");
        puts_(t, le);
        puts_(t, "\"");
        sep = ",";
    }
    if (sep[0] == ',') {
        puts_(t, "}");
    }
    puts_(t, " ");
}

int bl_metrics_text_sample(struct bl_metrics_text *t, const char *name,
                           const struct bl_metric_label *labels, unsigned n, uint64_t value)
{
    puts_(t, name);
    for (unsigned i = 0; i < n; i++) {
        puts_(t, i == 0 ? "{" : ",");
        puts_(t, labels[i].name);
        puts_(t, "=\"");
        put_escaped(t, labels[i].value, true);
        puts_(t, "\"");
    }
    puts_(t, n > 0 ? "} " : " ");
    put_value(t, value, 0);
    puts_(t, "\n");
    return t->err;
}

int bl_metrics_text_gauge(struct bl_metrics_text *t, const char *name, const char *help,
                          uint64_t value)
{
    bl_metrics_text_family(t, name, "gauge", help);
    return bl_metrics_text_sample(t, name, NULL, 0, value);
}

int bl_metrics_text_counter(struct bl_metrics_text *t, const struct bl_counter *c)
{
    bl_metrics_text_family(t, c->spec.name, "counter", c->spec.help);
    for (unsigned s = 0; s < c->n_series; s++) {
        if (c->v[s] == 0 && c->spec.n_dims > 0) {
            continue;
        }
        put_series(t, &c->spec, s, "", NULL);
        put_value(t, c->v[s], c->spec.decimals);
        puts_(t, "\n");
    }
    return t->err;
}

int bl_metrics_text_histogram(struct bl_metrics_text *t, const struct bl_histogram *h)
{
    bl_metrics_text_family(t, h->spec.name, "histogram", h->spec.help);
    for (unsigned s = 0; s < h->n_series; s++) {
        const uint64_t *b = h->buckets + (size_t)s * (h->n_bounds + 1);
        uint64_t cum = 0;
        if (h->spec.n_dims > 0 && series_count(h, s) == 0) {
            continue;
        }
        for (unsigned k = 0; k <= h->n_bounds; k++) {
            char buf[VALUE_BUF];
            cum += b[k];
            put_series(t, &h->spec, s, "_bucket",
                       k < h->n_bounds ? fmt_value(buf, h->bounds[k], h->spec.decimals) : "+Inf");
            put_value(t, cum, 0);
            puts_(t, "\n");
        }
        put_series(t, &h->spec, s, "_sum", NULL);
        put_value(t, h->sum[s], h->spec.decimals);
        puts_(t, "\n");
        put_series(t, &h->spec, s, "_count", NULL);
        put_value(t, cum, 0);
        puts_(t, "\n");
    }
    return t->err;
}
