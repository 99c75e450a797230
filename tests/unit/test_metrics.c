/* Unit tests of the metrics module (server/metrics.c).
 *
 * Specs: bad ones are refused at init. Counters: adding, series indexing
 * over two dimensions, which series are rendered (unlabelled always,
 * labelled once non-zero). Histograms: bucket placement at, just below and
 * just above each bound and past the last (+Inf), the cumulative bucket
 * lines, _sum rendered as an exact decimal in seconds, _count. The text:
 * HELP/TYPE lines, label value escaping (backslash, double quote, newline),
 * HELP escaping, decimals trimmed, and whole expected outputs compared byte
 * for byte. */
#include "error.h"
#include "metrics.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const CALLS[] = {"get", "put"};
static const char *const CODES[] = {"200", "404", "other"};

static const struct bl_metric_spec REQ_SPEC = {
    .name = "t_requests_total",
    .help = "Requests.",
    .n_dims = 2,
    .label = {"call", "code"},
    .values = {CALLS, CODES},
    .n_values = {2, 3},
};

/* Bounds 1 ms, 10 ms, 100 ms in nanoseconds, rendered in seconds. */
static const uint64_t BOUNDS[] = {1000000, 10000000, 100000000};

static const struct bl_metric_spec LAT_SPEC = {
    .name = "t_seconds",
    .help = "Latency.",
    .n_dims = 1,
    .label = {"call"},
    .values = {CALLS},
    .n_values = {2},
    .decimals = 9,
};

/* @t's text, which must be NUL-terminated and error-free. */
static const char *text(const struct bl_metrics_text *t)
{
    ck_assert_int_eq(t->err, 0);
    ck_assert_ptr_nonnull(t->data);
    ck_assert_uint_eq(strlen(t->data), t->len);
    return t->data;
}

START_TEST(test_bad_specs)
{
    struct bl_counter c;
    struct bl_histogram h;
    struct bl_metric_spec s = REQ_SPEC;
    const uint64_t unsorted[] = {5, 5};

    s.name = NULL;
    ck_assert_int_eq(bl_counter_init(&c, &s), BL_EBADREQ);
    s = REQ_SPEC;
    s.n_dims = 3;
    ck_assert_int_eq(bl_counter_init(&c, &s), BL_EBADREQ);
    s = REQ_SPEC;
    s.n_values[1] = 0;
    ck_assert_int_eq(bl_counter_init(&c, &s), BL_EBADREQ);
    s = REQ_SPEC;
    s.decimals = 19;
    ck_assert_int_eq(bl_counter_init(&c, &s), BL_EBADREQ);
    ck_assert_int_eq(bl_histogram_init(&h, &LAT_SPEC, unsorted, 2), BL_EBADREQ);
    ck_assert_int_eq(bl_histogram_init(&h, &LAT_SPEC, BOUNDS, 0), BL_EBADREQ);
    bl_histogram_free(&h); /* a failed init may be freed */
    bl_counter_free(&c);
}
END_TEST

START_TEST(test_counter)
{
    struct bl_counter c;
    struct bl_metrics_text t;

    ck_assert_int_eq(bl_counter_init(&c, &REQ_SPEC), 0);
    ck_assert_uint_eq(c.n_series, 6);
    bl_counter_add(&c, 0, 0, 1);
    bl_counter_add(&c, 0, 0, 2);
    bl_counter_add(&c, 1, 2, 7);
    bl_counter_add(&c, 1, 1, 0); /* adding 0 does not make a series appear */
    ck_assert_uint_eq(bl_counter_get(&c, 0, 0), 3);
    ck_assert_uint_eq(bl_counter_get(&c, 1, 2), 7);
    ck_assert_uint_eq(bl_counter_get(&c, 0, 2), 0);
    ck_assert_uint_eq(bl_counter_get(&c, 1, 0), 0);

    bl_metrics_text_init(&t);
    ck_assert_int_eq(bl_metrics_text_counter(&t, &c), 0);
    ck_assert_str_eq(text(&t), "# HELP t_requests_total Requests.\n"
                               "# TYPE t_requests_total counter\n"
                               "t_requests_total{call=\"get\",code=\"200\"} 3\n"
                               "t_requests_total{call=\"put\",code=\"other\"} 7\n");
    bl_metrics_text_free(&t);
    ck_assert_ptr_null(t.data);
    bl_counter_free(&c);
}
END_TEST

START_TEST(test_counter_unlabelled)
{
    static const struct bl_metric_spec spec = {.name = "t_failures_total", .help = "F."};
    struct bl_counter c;
    struct bl_metrics_text t;

    ck_assert_int_eq(bl_counter_init(&c, &spec), 0);
    bl_metrics_text_init(&t);
    bl_metrics_text_counter(&t, &c); /* rendered while 0 */
    bl_counter_add(&c, 0, 0, 18446744073709551615ULL);
    bl_metrics_text_counter(&t, &c);
    ck_assert_str_eq(text(&t), "# HELP t_failures_total F.\n"
                               "# TYPE t_failures_total counter\n"
                               "t_failures_total 0\n"
                               "# HELP t_failures_total F.\n"
                               "# TYPE t_failures_total counter\n"
                               "t_failures_total 18446744073709551615\n");
    bl_metrics_text_free(&t);
    bl_counter_free(&c);
}
END_TEST

START_TEST(test_bucket_placement)
{
    struct bl_histogram h;
    /* value -> bucket index (3 = +Inf) */
    static const struct {
        uint64_t v;
        unsigned bucket;
    } cases[] = {
        {0, 0},         {1, 0},         {999999, 0},     {1000000, 0},
        {1000001, 1},   {10000000, 1},  {10000001, 2},   {99999999, 2},
        {100000000, 2}, {100000001, 3}, {UINT64_MAX, 3},
    };

    ck_assert_int_eq(bl_histogram_init(&h, &LAT_SPEC, BOUNDS, 3), 0);
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t before[4];
        memcpy(before, h.buckets + 4, sizeof before); /* series "put" */
        bl_histogram_observe(&h, 1, 0, cases[i].v);
        for (unsigned b = 0; b < 4; b++) {
            uint64_t want = before[b] + (b == cases[i].bucket);
            ck_assert_msg(h.buckets[4 + b] == want, "value %llu: bucket %u is %llu, want %llu",
                          (unsigned long long)cases[i].v, b, (unsigned long long)h.buckets[4 + b],
                          (unsigned long long)want);
        }
    }
    ck_assert_uint_eq(bl_histogram_count(&h, 1, 0), sizeof cases / sizeof cases[0]);
    ck_assert_uint_eq(bl_histogram_count(&h, 0, 0), 0);
    for (unsigned b = 0; b < 4; b++) {
        ck_assert_uint_eq(h.buckets[b], 0); /* series "get" untouched */
    }
    bl_histogram_free(&h);
}
END_TEST

START_TEST(test_histogram_text)
{
    struct bl_histogram h;
    struct bl_metrics_text t;

    ck_assert_int_eq(bl_histogram_init(&h, &LAT_SPEC, BOUNDS, 3), 0);
    bl_histogram_observe(&h, 1, 0, 500000);     /* 0.5 ms: le 0.001 */
    bl_histogram_observe(&h, 1, 0, 1000000);    /* 1 ms exactly: le 0.001 */
    bl_histogram_observe(&h, 1, 0, 20000000);   /* 20 ms: le 0.1 */
    bl_histogram_observe(&h, 1, 0, 2500000001); /* 2.500000001 s: +Inf */
    bl_metrics_text_init(&t);
    ck_assert_int_eq(bl_metrics_text_histogram(&t, &h), 0);
    ck_assert_str_eq(text(&t), "# HELP t_seconds Latency.\n"
                               "# TYPE t_seconds histogram\n"
                               "t_seconds_bucket{call=\"put\",le=\"0.001\"} 2\n"
                               "t_seconds_bucket{call=\"put\",le=\"0.01\"} 2\n"
                               "t_seconds_bucket{call=\"put\",le=\"0.1\"} 3\n"
                               "t_seconds_bucket{call=\"put\",le=\"+Inf\"} 4\n"
                               "t_seconds_sum{call=\"put\"} 2.521500001\n"
                               "t_seconds_count{call=\"put\"} 4\n");
    bl_metrics_text_free(&t);
    bl_histogram_free(&h);
}
END_TEST

START_TEST(test_histogram_unlabelled)
{
    static const struct bl_metric_spec spec = {.name = "t_apply", .help = "A.", .decimals = 3};
    static const uint64_t bounds[] = {5, 1000};
    struct bl_histogram h;
    struct bl_metrics_text t;

    ck_assert_int_eq(bl_histogram_init(&h, &spec, bounds, 2), 0);
    bl_metrics_text_init(&t);
    bl_metrics_text_histogram(&t, &h); /* rendered while empty */
    ck_assert_str_eq(text(&t), "# HELP t_apply A.\n"
                               "# TYPE t_apply histogram\n"
                               "t_apply_bucket{le=\"0.005\"} 0\n"
                               "t_apply_bucket{le=\"1\"} 0\n"
                               "t_apply_bucket{le=\"+Inf\"} 0\n"
                               "t_apply_sum 0\n"
                               "t_apply_count 0\n");
    bl_metrics_text_free(&t);
    bl_histogram_observe(&h, 0, 0, 5);
    bl_histogram_observe(&h, 0, 0, 6);
    bl_histogram_observe(&h, 0, 0, 1001);
    bl_metrics_text_histogram(&t, &h);
    ck_assert_ptr_nonnull(strstr(text(&t), "t_apply_bucket{le=\"0.005\"} 1\n"
                                           "t_apply_bucket{le=\"1\"} 2\n"
                                           "t_apply_bucket{le=\"+Inf\"} 3\n"
                                           "t_apply_sum 1.012\n"
                                           "t_apply_count 3\n"));
    bl_metrics_text_free(&t);
    bl_histogram_free(&h);
}
END_TEST

START_TEST(test_escaping)
{
    static const char *const odd[] = {"a\\b\"c\nd", "plain"};
    static const struct bl_metric_spec spec = {
        .name = "t_odd_total",
        .help = "Back\\slash, \"quotes\" and\nnewline.",
        .n_dims = 1,
        .label = {"v"},
        .values = {odd},
        .n_values = {2},
    };
    struct bl_metric_label l[2] = {{"name", "x\"y\\z\n"}, {"empty", ""}};
    struct bl_counter c;
    struct bl_metrics_text t;

    ck_assert_int_eq(bl_counter_init(&c, &spec), 0);
    bl_counter_add(&c, 0, 0, 1);
    bl_metrics_text_init(&t);
    bl_metrics_text_counter(&t, &c);
    bl_metrics_text_family(&t, "t_info", "gauge", "I.");
    bl_metrics_text_sample(&t, "t_info", l, 2, 1);
    bl_metrics_text_gauge(&t, "t_plain", "P.", 42);
    ck_assert_str_eq(text(&t), "# HELP t_odd_total Back\\\\slash, \"quotes\" and\\nnewline.\n"
                               "# TYPE t_odd_total counter\n"
                               "t_odd_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                               "# HELP t_info I.\n"
                               "# TYPE t_info gauge\n"
                               "t_info{name=\"x\\\"y\\\\z\\n\",empty=\"\"} 1\n"
                               "# HELP t_plain P.\n"
                               "# TYPE t_plain gauge\n"
                               "t_plain 42\n");
    bl_metrics_text_free(&t);
    bl_counter_free(&c);
}
END_TEST

START_TEST(test_large_text)
{
    struct bl_metrics_text t;
    char name[32];

    /* grows well past the first allocation */
    bl_metrics_text_init(&t);
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "t_gauge_%u", i);
        ck_assert_int_eq(bl_metrics_text_gauge(&t, name, "G.", i), 0);
    }
    ck_assert_uint_gt(t.len, 4096 * 4);
    ck_assert_ptr_nonnull(strstr(text(&t), "\nt_gauge_1999 1999\n"));
    bl_metrics_text_free(&t);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_bad_specs);
    tcase_add_test(tc, test_counter);
    tcase_add_test(tc, test_counter_unlabelled);
    tcase_add_test(tc, test_bucket_placement);
    tcase_add_test(tc, test_histogram_text);
    tcase_add_test(tc, test_histogram_unlabelled);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_large_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
