/* Metrics: counters and fixed-bucket histograms, and their rendering in the
 * Prometheus text exposition format 0.0.4.
 *
 * A metric family has up to two label dimensions, each with a fixed list of
 * values given at init; a series is picked by the indexes of its label
 * values. Every array is sized and allocated at init, so recording is a few
 * integer operations and never allocates: counters count, histograms keep
 * per-bucket (non-cumulative) counts and an integer sum of the observed
 * values. Values are unsigned integers in the metric's own unit; a family
 * with decimals = 9 records nanoseconds and is rendered in seconds (value /
 * 10^9, written as an exact decimal).
 *
 * Rendering appends to a struct bl_metrics_text, a growable buffer the
 * caller owns: bl_metrics_text_init() before, bl_metrics_text_free() after.
 * An out-of-memory error is sticky: later writes do nothing and return it,
 * so a caller may check only the last one (or t->err).
 *
 * Series without labels are always rendered; a labelled series only once it
 * is non-zero (a counter added to, a histogram observed), so the output
 * stays small for label combinations that never occur.
 *
 * Not thread-safe: record and render on one thread (the loop's). */
#ifndef BALLAST_METRICS_H
#define BALLAST_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define BL_METRICS_MAX_DIMS 2

/* What a family is called and how its series are labelled. The strings and
 * arrays must outlive the family (string literals and static arrays). */
struct bl_metric_spec {
    const char *name;                               /* "ballast_http_requests_total" */
    const char *help;                               /* one line; escaped when rendered */
    unsigned n_dims;                                /* 0..BL_METRICS_MAX_DIMS label dimensions */
    const char *label[BL_METRICS_MAX_DIMS];         /* label names */
    const char *const *values[BL_METRICS_MAX_DIMS]; /* label values of each dimension */
    unsigned n_values[BL_METRICS_MAX_DIMS];         /* how many, >= 1 each */
    unsigned decimals; /* rendered value = recorded / 10^decimals (0..18) */
};

/* A counter family: one uint64_t per series. */
struct bl_counter {
    struct bl_metric_spec spec;
    unsigned n_series;
    uint64_t *v;
};

/* A histogram family: for every series, n_bounds + 1 bucket counts (the
 * last is +Inf) and the sum of the observed values. */
struct bl_histogram {
    struct bl_metric_spec spec;
    unsigned n_series;
    const uint64_t *bounds; /* upper bounds (inclusive), strictly ascending */
    unsigned n_bounds;
    uint64_t *buckets; /* n_series * (n_bounds + 1), not cumulative */
    uint64_t *sum;     /* n_series */
};

/* One label of a sample written with bl_metrics_text_sample(). */
struct bl_metric_label {
    const char *name;
    const char *value; /* any bytes but NUL; escaped when rendered */
};

/* A rendered exposition: @data[0..@len) (NUL-terminated when @len > 0).
 * Owned by the caller; @data is freed by bl_metrics_text_free(). */
struct bl_metrics_text {
    char *data;
    size_t len, cap;
    int err; /* 0, or BL_ENOMEM once a write failed */
};

/* Allocate @c's series (all zero) for @spec (copied; its strings are not).
 * Returns 0, BL_ENOMEM, or BL_EBADREQ when @spec is not valid (no name, too
 * many dimensions, a dimension without values, decimals over 18). On error
 * @c needs no bl_counter_free() but may be given to it. */
int bl_counter_init(struct bl_counter *c, const struct bl_metric_spec *spec);

/* Free @c's series (a zeroed or failed @c is fine). */
void bl_counter_free(struct bl_counter *c);

/* Add @n to the series with label value indexes @i (first dimension) and
 * @j (second); pass 0 for a dimension the family does not have. The
 * indexes must be in range (a programmer error otherwise: asserted). */
void bl_counter_add(struct bl_counter *c, unsigned i, unsigned j, uint64_t n);

/* The value of series (@i, @j). */
uint64_t bl_counter_get(const struct bl_counter *c, unsigned i, unsigned j);

/* Allocate @h's series for @spec and the @n_bounds upper bounds @bounds
 * (not copied: must outlive @h; strictly ascending, 1..64 of them).
 * Returns 0, BL_ENOMEM or BL_EBADREQ as bl_counter_init(). */
int bl_histogram_init(struct bl_histogram *h, const struct bl_metric_spec *spec,
                      const uint64_t *bounds, unsigned n_bounds);

/* Free @h's series (a zeroed or failed @h is fine). */
void bl_histogram_free(struct bl_histogram *h);

/* Record @value in series (@i, @j): it lands in the first bucket whose
 * bound is >= @value, or in +Inf. Indexes as bl_counter_add(). */
void bl_histogram_observe(struct bl_histogram *h, unsigned i, unsigned j, uint64_t value);

/* Observations of series (@i, @j) so far. */
uint64_t bl_histogram_count(const struct bl_histogram *h, unsigned i, unsigned j);

/* Start an empty text. */
void bl_metrics_text_init(struct bl_metrics_text *t);

/* Free @t's buffer; @t is empty (and usable) again. */
void bl_metrics_text_free(struct bl_metrics_text *t);

/* Write the "# HELP" and "# TYPE" lines of family @name; @type is
 * "counter", "gauge", "histogram" or "untyped". Returns 0 or BL_ENOMEM. */
int bl_metrics_text_family(struct bl_metrics_text *t, const char *name, const char *type,
                           const char *help);

/* Write one sample line "@name{l1="v1",...} @value" (no braces when @n is
 * 0), label values escaped. Returns 0 or BL_ENOMEM. */
int bl_metrics_text_sample(struct bl_metrics_text *t, const char *name,
                           const struct bl_metric_label *labels, unsigned n, uint64_t value);

/* A gauge family with one unlabelled sample: the family's lines and
 * "@name @value". Returns 0 or BL_ENOMEM. */
int bl_metrics_text_gauge(struct bl_metrics_text *t, const char *name, const char *help,
                          uint64_t value);

/* Write counter family @c: HELP, TYPE counter, one line per series (see the
 * file comment for which). Returns 0 or BL_ENOMEM. */
int bl_metrics_text_counter(struct bl_metrics_text *t, const struct bl_counter *c);

/* Write histogram family @h: HELP, TYPE histogram, and for each series its
 * cumulative name_bucket{...,le="B"} lines ending with le="+Inf", then
 * name_sum and name_count. Returns 0 or BL_ENOMEM. */
int bl_metrics_text_histogram(struct bl_metrics_text *t, const struct bl_histogram *h);

#endif /* BALLAST_METRICS_H */
