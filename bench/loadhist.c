/* Log-linear latency histogram (see loadhist.h).
 *
 * Bucket index of a value v (ns): v itself below 2^SUB (SUB =
 * LOADHIST_SUB_BITS); otherwise with e = floor(log2 v) - SUB + 1 (so that
 * v >> e lies in [2^(SUB-1), 2^SUB)), the index is
 * e * 2^(SUB-1) + (v >> e). Consecutive magnitudes thus continue each
 * other's index range without gaps, and bucket [lo, lo + 2^e) has
 * lo >= 2^(SUB-1) * 2^e: the width is at most 1/128 of the lower bound. */
#include "loadhist.h"

#include <string.h>

#define SUB  LOADHIST_SUB_BITS
#define HALF (1 << (SUB - 1))

static unsigned bucket_of(uint64_t v)
{
    unsigned e;
    if (v < (1u << SUB)) {
        return (unsigned)v;
    }
    e = (unsigned)(63 - __builtin_clzll(v)) - SUB + 1;
    return e * HALF + (unsigned)(v >> e);
}

/* Lower bound and width of bucket @i. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
    unsigned e;
    if (i < (1u << SUB)) {
        *lo = i;
        *width = 1;
        return;
    }
    e = i / HALF - 1;
    *lo = (uint64_t)(i - e * HALF) << e;
    *width = (uint64_t)1 << e;
}

void loadhist_init(struct loadhist *h)
{
    memset(h, 0, sizeof *h);
}

void loadhist_record(struct loadhist *h, int64_t ns)
{
    int64_t v = ns < 0 ? 0 : ns > LOADHIST_MAX_NS ? LOADHIST_MAX_NS : ns;
    if (h->count == 0 || ns < h->min_ns) {
        h->min_ns = ns;
    }
    if (h->count == 0 || ns > h->max_ns) {
        h->max_ns = ns;
    }
    h->count++;
    h->sum_ns += (double)ns;
    h->buckets[bucket_of((uint64_t)v)]++;
}

void loadhist_merge(struct loadhist *into, const struct loadhist *from)
{
    if (from->count == 0) {
        return;
    }
    if (into->count == 0 || from->min_ns < into->min_ns) {
        into->min_ns = from->min_ns;
    }
    if (into->count == 0 || from->max_ns > into->max_ns) {
        into->max_ns = from->max_ns;
    }
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    for (unsigned i = 0; i < LOADHIST_BUCKETS; i++) {
        into->buckets[i] += from->buckets[i];
    }
}

int64_t loadhist_quantile(const struct loadhist *h, double q)
{
    uint64_t rank, seen = 0;
    if (h->count == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max_ns;
    }
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count || rank == 0) {
        rank++; /* nearest rank: ceil(q * n), at least 1 */
    }
    for (unsigned i = 0; i < LOADHIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, width;
            int64_t mid;
            bucket_range(i, &lo, &width);
            mid = (int64_t)(lo + width / 2);
            return mid < h->min_ns ? h->min_ns : mid > h->max_ns ? h->max_ns : mid;
        }
    }
    return h->max_ns;
}

double loadhist_mean(const struct loadhist *h)
{
    return h->count ? h->sum_ns / (double)h->count : 0;
}
