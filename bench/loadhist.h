/* Latency histogram of bench/load: log-linear buckets over nanoseconds.
 *
 * Values below 2^LOADHIST_SUB_BITS ns have a bucket each; above, every power
 * of two is split into 2^(LOADHIST_SUB_BITS - 1) equal buckets, so a bucket
 * is at most 1/128 of its lower bound wide and the midpoint a percentile
 * reports is within 0.4% of any value in it. Values are clamped to
 * LOADHIST_MAX_NS (100 s); the exact minimum, maximum and sum are kept
 * aside. Recording is a shift, a count-leading-zeros and an increment: no
 * allocation after loadhist_init(). */
#ifndef BALLAST_BENCH_LOADHIST_H
#define BALLAST_BENCH_LOADHIST_H

#include <stdint.h>

#define LOADHIST_SUB_BITS 8
#define LOADHIST_MAX_NS   100000000000LL /* 100 s */
/* Magnitudes above the linear range up to 2^37 ns (137 s) > LOADHIST_MAX_NS. */
#define LOADHIST_BUCKETS ((37 - LOADHIST_SUB_BITS + 2) << (LOADHIST_SUB_BITS - 1))

/* A histogram. Zeroed (loadhist_init()) it is empty. */
struct loadhist {
    uint64_t count;
    int64_t min_ns;
    int64_t max_ns;
    double sum_ns;
    uint64_t buckets[LOADHIST_BUCKETS];
};

/* Empty @h. */
void loadhist_init(struct loadhist *h);

/* Record one value @ns (negative values count as 0, values above
 * LOADHIST_MAX_NS as LOADHIST_MAX_NS; min/max keep the value as given). */
void loadhist_record(struct loadhist *h, int64_t ns);

/* Add every value of @from to @into. */
void loadhist_merge(struct loadhist *into, const struct loadhist *from);

/* The value at quantile @q (0..1, nearest rank) in ns: the midpoint of its
 * bucket, clamped to the recorded min and max; 1.0 gives the exact maximum.
 * 0 when @h is empty. */
int64_t loadhist_quantile(const struct loadhist *h, double q);

/* The mean in ns (exact), 0 when empty. */
double loadhist_mean(const struct loadhist *h);

#endif /* BALLAST_BENCH_LOADHIST_H */
