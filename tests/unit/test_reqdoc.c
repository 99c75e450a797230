/* Tests for request documents (server/reqdoc.c).
 *
 * msgpack inputs are written with msgpack-c's own packer, and each decoded
 * document is compared with the jansson value expected for it (json_equal),
 * so the JSON and msgpack forms of one document are checked to read the
 * same. Errors are checked for their code and for a message that says what
 * was wrong; every proper prefix of a valid msgpack body must be refused. */
#include <check.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "reqdoc.h"

/* A msgpack buffer and its packer. */
struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_free(struct mp *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

static void mp_key(struct mp *m, const char *k)
{
    msgpack_pack_str(&m->pk, strlen(k));
    msgpack_pack_str_body(&m->pk, k, strlen(k));
}

/* Decode @len bytes of @format as an object; must succeed. */
static json_t *decode_ok(int format, const void *body, size_t len)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    json_t *v = NULL;
    int rv = bl_reqdoc_decode(format, body, len, true, &v, errmsg);

    ck_assert_msg(rv == 0, "decode failed (%d): %s", rv, errmsg);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* Decoding must fail with BL_EBADREQ and a message containing @word. */
static void decode_bad(int format, const void *body, size_t len, bool want_object, const char *word)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    json_t *v = (json_t *)1;
    int rv = bl_reqdoc_decode(format, body, len, want_object, &v, errmsg);

    ck_assert_msg(rv == BL_EBADREQ, "decode of %zu bytes: %d, want BL_EBADREQ", len, rv);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(errmsg, word) != NULL, "message '%s' lacks '%s'", errmsg, word);
}

static void expect_equal(json_t *got, json_t *want)
{
    char *g, *w;
    char msg[2048];

    if (json_equal(got, want)) {
        return;
    }
    g = json_dumps(got, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    snprintf(msg, sizeof msg, "decoded %s, want %s", g, w);
    free(g);
    free(w);
    ck_abort_msg("%s", msg);
}

/* --- format -------------------------------------------------------------- */

START_TEST(test_format)
{
    static const char *const mp[] = {"application/msgpack", "Application/MsgPack",
                                     " application/msgpack ; charset=binary",
                                     "application/x-msgpack"};
    static const char *const js[] = {"application/json", "text/plain", "", "application/msgpackx",
                                     "application/json; x=msgpack"};

    for (unsigned i = 0; i < sizeof mp / sizeof mp[0]; i++) {
        ck_assert_msg(bl_reqdoc_format(mp[i], strlen(mp[i])) == BL_REQDOC_MSGPACK, "'%s'", mp[i]);
    }
    for (unsigned i = 0; i < sizeof js / sizeof js[0]; i++) {
        ck_assert_msg(bl_reqdoc_format(js[i], strlen(js[i])) == BL_REQDOC_JSON, "'%s'", js[i]);
    }
    ck_assert_int_eq(bl_reqdoc_format(NULL, 0), BL_REQDOC_JSON);
}
END_TEST

/* --- JSON ------------------------------------------------------------------- */

START_TEST(test_json_object)
{
    static const char body[] = "{\"to\": 3, \"name\": \"m\\u00e9\", \"list\": [1, -2, 2.5, "
                               "true, null, {\"a\": []}]}";
    json_t *v = decode_ok(BL_REQDOC_JSON, body, sizeof body - 1);
    json_t *want = json_pack("{s:i, s:s, s:[i, i, f, b, n, {s:[]}]}", "to", 3, "name", "m\xc3\xa9",
                             "list", 1, -2, 2.5, 1, "a");
    char errmsg[BL_ERRMSG_SIZE];
    uint64_t to = 0;

    expect_equal(v, want);
    ck_assert_int_eq(bl_reqdoc_u64(v, "to", true, &to, errmsg), 0);
    ck_assert_uint_eq(to, 3);
    json_decref(v);
    json_decref(want);
}
END_TEST

START_TEST(test_empty_body)
{
    json_t *v = decode_ok(BL_REQDOC_JSON, "", 0);
    char errmsg[BL_ERRMSG_SIZE];
    uint64_t to = 77;

    ck_assert(json_is_object(v));
    ck_assert_uint_eq(json_object_size(v), 0);
    ck_assert_int_eq(bl_reqdoc_u64(v, "to", false, &to, errmsg), 0);
    ck_assert_uint_eq(to, 77); /* absent: left alone */
    ck_assert_int_eq(bl_reqdoc_u64(v, "to", true, &to, errmsg), BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(errmsg, "\"to\" is required"));
    json_decref(v);

    v = decode_ok(BL_REQDOC_MSGPACK, NULL, 0);
    ck_assert(json_is_object(v));
    ck_assert_uint_eq(json_object_size(v), 0);
    json_decref(v);
}
END_TEST

START_TEST(test_json_errors)
{
    static const char trailing[] = "{\"to\": 1} x";
    static const char twice[] = "{\"to\": 1, \"to\": 2}";
    char deep[200], ok[200];
    json_t *v;

    decode_bad(BL_REQDOC_JSON, "{\"to\": ", 7, true, "JSON body");
    decode_bad(BL_REQDOC_JSON, "{to: 1}", 7, true, "JSON body");
    decode_bad(BL_REQDOC_JSON, trailing, sizeof trailing - 1, true, "JSON body");
    decode_bad(BL_REQDOC_JSON, twice, sizeof twice - 1, true, "JSON body");
    decode_bad(BL_REQDOC_JSON, "[1, 2]", 6, true, "must be a JSON object");
    decode_bad(BL_REQDOC_JSON, "\"a\\u0000b\"", 10, false, "JSON body");
    decode_bad(BL_REQDOC_JSON, "99999999999999999999", 20, false, "JSON body");

    /* 32 nested containers are allowed, 33 are not */
    memset(ok, 0, sizeof ok);
    for (int i = 0; i < 32; i++) {
        ok[i] = '[';
        ok[63 - i] = ']';
    }
    v = NULL;
    {
        char errmsg[BL_ERRMSG_SIZE] = "";
        ck_assert_int_eq(bl_reqdoc_decode(BL_REQDOC_JSON, ok, 64, false, &v, errmsg), 0);
    }
    json_decref(v);
    memset(deep, 0, sizeof deep);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    for (int i = 0; i < 32; i++) {
        deep[5 + i] = '[';
        deep[5 + 32 + i] = ']';
    }
    deep[5 + 64] = '}';
    decode_bad(BL_REQDOC_JSON, deep, strlen(deep), true, "nests more than 32");
}
END_TEST

/* --- msgpack ---------------------------------------------------------------- */

/* The document of test_json_object, and more, packed as msgpack. */
static void pack_sample(struct mp *m)
{
    static const uint8_t bytes[] = {0x00, 0xff, 0x10};

    msgpack_pack_map(&m->pk, 9);
    mp_key(m, "to");
    msgpack_pack_uint64(&m->pk, 3);
    mp_key(m, "name");
    msgpack_pack_str(&m->pk, 3);
    msgpack_pack_str_body(&m->pk, "m\xc3\xa9", 3);
    mp_key(m, "neg");
    msgpack_pack_int64(&m->pk, INT64_MIN);
    mp_key(m, "big");
    msgpack_pack_uint64(&m->pk, INT64_MAX);
    mp_key(m, "f");
    msgpack_pack_float(&m->pk, 0.5f);
    mp_key(m, "d");
    msgpack_pack_double(&m->pk, -1.25);
    mp_key(m, "list");
    msgpack_pack_array(&m->pk, 4);
    msgpack_pack_true(&m->pk);
    msgpack_pack_false(&m->pk);
    msgpack_pack_nil(&m->pk);
    msgpack_pack_map(&m->pk, 0);
    mp_key(m, "value");
    msgpack_pack_bin(&m->pk, sizeof bytes);
    msgpack_pack_bin_body(&m->pk, bytes, sizeof bytes);
    mp_key(m, "empty");
    msgpack_pack_bin(&m->pk, 0);
}

START_TEST(test_msgpack_object)
{
    struct mp m;
    json_t *v, *want;
    char errmsg[BL_ERRMSG_SIZE];
    uint64_t to = 0, big = 0;

    mp_init(&m);
    pack_sample(&m);
    v = decode_ok(BL_REQDOC_MSGPACK, m.sb.data, m.sb.size);
    want = json_pack("{s:i, s:s, s:I, s:I, s:f, s:f, s:[b, b, n, {}], s:s, s:s}", "to", 3, "name",
                     "m\xc3\xa9", "neg", (json_int_t)INT64_MIN, "big", (json_int_t)INT64_MAX, "f",
                     0.5, "d", -1.25, "list", 1, 0, "value", "AP8Q", "empty", "");
    expect_equal(v, want);
    ck_assert_int_eq(bl_reqdoc_u64(v, "to", true, &to, errmsg), 0);
    ck_assert_uint_eq(to, 3);
    ck_assert_int_eq(bl_reqdoc_u64(v, "big", true, &big, errmsg), 0);
    ck_assert_uint_eq(big, INT64_MAX);
    ck_assert_int_eq(bl_reqdoc_u64(v, "neg", true, &to, errmsg), BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(errmsg, "\"neg\" must be an integer >= 0"));
    ck_assert_int_eq(bl_reqdoc_u64(v, "d", true, &to, errmsg), BL_EBADREQ);
    ck_assert_int_eq(bl_reqdoc_u64(v, "name", true, &to, errmsg), BL_EBADREQ);
    ck_assert_uint_eq(to, 3);
    json_decref(v);
    json_decref(want);
    mp_free(&m);
}
END_TEST

/* bin becomes base64 text, the same string a JSON client would send. */
START_TEST(test_msgpack_bin_base64)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *b64;
    } cases[] = {
        {"", 0, ""},
        {"f", 1, "Zg=="},
        {"fo", 2, "Zm8="},
        {"foo", 3, "Zm9v"},
        {"foob", 4, "Zm9vYg=="},
        {"\x00\xff\xfe", 3, "AP/+"},
        {"fooba", 5, "Zm9vYmE="},
    };

    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mp m;
        json_t *v, *js;
        char body[64];

        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_key(&m, "value");
        msgpack_pack_bin(&m.pk, cases[i].len);
        msgpack_pack_bin_body(&m.pk, cases[i].bytes, cases[i].len);
        v = decode_ok(BL_REQDOC_MSGPACK, m.sb.data, m.sb.size);
        ck_assert_str_eq(json_string_value(json_object_get(v, "value")), cases[i].b64);

        /* the JSON form of the same document reads the same */
        snprintf(body, sizeof body, "{\"value\": \"%s\"}", cases[i].b64);
        js = decode_ok(BL_REQDOC_JSON, body, strlen(body));
        expect_equal(v, js);
        json_decref(js);
        json_decref(v);
        mp_free(&m);
    }
}
END_TEST

START_TEST(test_msgpack_any_top)
{
    struct mp m;
    char errmsg[BL_ERRMSG_SIZE];
    json_t *v = NULL;

    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_int(&m.pk, -1);
    msgpack_pack_uint8(&m.pk, 200);
    ck_assert_int_eq(bl_reqdoc_decode(BL_REQDOC_MSGPACK, m.sb.data, m.sb.size, false, &v, errmsg),
                     0);
    ck_assert(json_is_array(v));
    ck_assert_int_eq(json_integer_value(json_array_get(v, 0)), -1);
    ck_assert_int_eq(json_integer_value(json_array_get(v, 1)), 200);
    json_decref(v);
    decode_bad(BL_REQDOC_MSGPACK, m.sb.data, m.sb.size, true, "must be a msgpack map");
    mp_free(&m);
}
END_TEST

START_TEST(test_msgpack_truncated)
{
    struct mp m;

    mp_init(&m);
    pack_sample(&m);
    /* every proper prefix is refused, none crashes or over-reads */
    for (size_t n = 1; n < m.sb.size; n++) {
        char *copy = malloc(n);
        memcpy(copy, m.sb.data, n);
        decode_bad(BL_REQDOC_MSGPACK, copy, n, true, "truncated");
        free(copy);
    }
    mp_free(&m);

    /* containers claiming more than the body holds, refused before any
     * allocation: array32 / map32 of 2^32-1 elements */
    decode_bad(BL_REQDOC_MSGPACK, "\xdd\xff\xff\xff\xff\x01", 6, false, "truncated");
    decode_bad(BL_REQDOC_MSGPACK, "\xdf\xff\xff\xff\xff\xa1k\x01", 8, false, "truncated");
    decode_bad(BL_REQDOC_MSGPACK, "\xc6\xff\xff\xff\xff", 5, false, "truncated");
    decode_bad(BL_REQDOC_MSGPACK, "\xda\x00", 2, false, "truncated");
    /* nested claims add up: [ [x, x, x], ... ] in three bytes */
    decode_bad(BL_REQDOC_MSGPACK, "\x92\x93\x01", 3, false, "truncated");
}
END_TEST

START_TEST(test_msgpack_errors)
{
    struct mp m;
    uint8_t deep[40];

    /* trailing bytes */
    decode_bad(BL_REQDOC_MSGPACK, "\x80\x00", 2, true, "trailing bytes after the document (1)");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\x01\xc0\xc0", 6, true,
               "trailing bytes after the document (2)");

    /* non-string keys */
    decode_bad(BL_REQDOC_MSGPACK, "\x81\x01\x02", 3, true, "keys must be strings");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xc4\x01k\x02", 5, true, "keys must be strings");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xc0\x02", 3, true, "keys must be strings");

    /* duplicate keys, bad text, unsupported types, range */
    decode_bad(BL_REQDOC_MSGPACK, "\x82\xa1k\x01\xa1k\x02", 7, true, "duplicate key");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xa2\xc3\x28", 6, true, "not UTF-8");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xa2\x61\x00", 6, true, "not UTF-8");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa2\xed\xa0\x01", 5, true, "not UTF-8");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xd4\x01\x02", 6, true, "ext types");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xc1", 4, true, "0xc1");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 12, true,
               "out of range");
    decode_bad(BL_REQDOC_MSGPACK, "\x81\xa1k\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 12, true,
               "finite");

    /* 32 nested containers are allowed, 33 are not (empty ones count) */
    memset(deep, 0x91, sizeof deep);
    deep[31] = 0x90;
    {
        char errmsg[BL_ERRMSG_SIZE] = "";
        json_t *v = NULL;
        ck_assert_int_eq(bl_reqdoc_decode(BL_REQDOC_MSGPACK, deep, 32, false, &v, errmsg), 0);
        json_decref(v);
    }
    deep[31] = 0x91;
    deep[32] = 0x90;
    decode_bad(BL_REQDOC_MSGPACK, deep, 33, false, "nests more than 32");
    deep[32] = 0x91;
    deep[33] = 0x01;
    decode_bad(BL_REQDOC_MSGPACK, deep, 34, false, "nests more than 32");

    /* a map inside the limit, keyed and nested, still decodes */
    mp_init(&m);
    for (int i = 0; i < 31; i++) {
        msgpack_pack_map(&m.pk, 1);
        mp_key(&m, "k");
    }
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_uint8(&m.pk, 1);
    json_decref(decode_ok(BL_REQDOC_MSGPACK, m.sb.data, m.sb.size));
    mp_free(&m);
}
END_TEST

START_TEST(test_u64)
{
    static const char body[] = "{\"a\": 0, \"b\": null, \"c\": \"7\", \"d\": 1.0, \"e\": -1, "
                               "\"f\": 9223372036854775807, \"g\": true}";
    json_t *v = decode_ok(BL_REQDOC_JSON, body, sizeof body - 1);
    json_t *arr = json_array();
    char errmsg[BL_ERRMSG_SIZE];
    uint64_t x = 5;

    ck_assert_int_eq(bl_reqdoc_u64(v, "a", true, &x, errmsg), 0);
    ck_assert_uint_eq(x, 0);
    x = 5;
    ck_assert_int_eq(bl_reqdoc_u64(v, "b", false, &x, errmsg), 0); /* null: absent */
    ck_assert_uint_eq(x, 5);
    ck_assert_int_eq(bl_reqdoc_u64(v, "b", true, &x, errmsg), BL_EBADREQ);
    ck_assert_int_eq(bl_reqdoc_u64(v, "c", false, &x, errmsg), BL_EBADREQ);
    ck_assert_ptr_nonnull(strstr(errmsg, "\"c\""));
    ck_assert_int_eq(bl_reqdoc_u64(v, "d", false, &x, errmsg), BL_EBADREQ);
    ck_assert_int_eq(bl_reqdoc_u64(v, "e", false, &x, errmsg), BL_EBADREQ);
    ck_assert_int_eq(bl_reqdoc_u64(v, "g", false, &x, errmsg), BL_EBADREQ);
    ck_assert_int_eq(bl_reqdoc_u64(v, "f", false, &x, errmsg), 0);
    ck_assert_uint_eq(x, INT64_MAX);
    ck_assert_int_eq(bl_reqdoc_u64(arr, "a", false, &x, errmsg), BL_EBADREQ);
    json_decref(arr);
    json_decref(v);
}
END_TEST

static Suite *reqdoc_suite(void)
{
    Suite *s = suite_create("reqdoc");
    TCase *tc;

    tc = tcase_create("format");
    tcase_add_test(tc, test_format);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, test_json_object);
    tcase_add_test(tc, test_empty_body);
    tcase_add_test(tc, test_json_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("msgpack");
    tcase_add_test(tc, test_msgpack_object);
    tcase_add_test(tc, test_msgpack_bin_base64);
    tcase_add_test(tc, test_msgpack_any_top);
    tcase_add_test(tc, test_msgpack_truncated);
    tcase_add_test(tc, test_msgpack_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("fields");
    tcase_add_test(tc, test_u64);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reqdoc_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
