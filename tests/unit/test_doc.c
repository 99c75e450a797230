/* Tests for the document writer (server/doc.c) and its base64 helpers.
 *
 * JSON output is compared as exact strings. msgpack output is checked two
 * ways: decoded with msgpack-c's own unpacker and compared field by field,
 * and compared byte for byte with what msgpack-c's packer writes for the same
 * values, across every encoding boundary (15/16 elements, 31/32-byte strings,
 * 255/256, 65535/65536 and the integer widths). */
#include <check.h>
#include <msgpack.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "error.h"

/* The document as a NUL-terminated string (JSON tests). */
static const char *json_of(struct bl_doc *d)
{
    static char out[4096];
    size_t len;
    const char *p;

    ck_assert_int_eq(bl_doc_error(d), 0);
    p = bl_doc_data(d, &len);
    ck_assert_uint_lt(len, sizeof out);
    memcpy(out, p, len);
    out[len] = '\0';
    return out;
}

/* --- JSON ---------------------------------------------------------------- */

START_TEST(test_json_scalars)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_uint(&d, 0);
    ck_assert_str_eq(json_of(&d), "0");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_uint(&d, UINT64_MAX);
    ck_assert_str_eq(json_of(&d), "18446744073709551615");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_int(&d, INT64_MIN);
    ck_assert_str_eq(json_of(&d), "-9223372036854775808");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_int(&d, INT64_MAX);
    ck_assert_str_eq(json_of(&d), "9223372036854775807");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_int(&d, -1);
    ck_assert_str_eq(json_of(&d), "-1");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_bool(&d, true);
    ck_assert_str_eq(json_of(&d), "true");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_bool(&d, false);
    ck_assert_str_eq(json_of(&d), "false");
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_null(&d);
    ck_assert_str_eq(json_of(&d), "null");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_nested)
{
    struct bl_doc d;
    static const uint8_t key[] = {'a', 0x00, 0xff};

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_map(&d, 5);
    bl_doc_key(&d, "kvs");
    bl_doc_array(&d, 2);
    bl_doc_map(&d, 2);
    bl_doc_key(&d, "key");
    bl_doc_bin(&d, key, sizeof key);
    bl_doc_key(&d, "version");
    bl_doc_uint(&d, 3);
    bl_doc_map(&d, 0);
    bl_doc_key(&d, "more");
    bl_doc_bool(&d, false);
    bl_doc_key(&d, "empty");
    bl_doc_array(&d, 0);
    bl_doc_key(&d, "deep");
    bl_doc_array(&d, 1);
    bl_doc_array(&d, 1);
    bl_doc_array(&d, 2);
    bl_doc_int(&d, -5);
    bl_doc_null(&d);
    bl_doc_key(&d, "count");
    bl_doc_uint(&d, 42);
    ck_assert_uint_eq(d.depth, 0);
    ck_assert_str_eq(json_of(&d), "{\"kvs\":[{\"key\":\"YQD/\",\"version\":3},{}],\"more\":false,"
                                  "\"empty\":[],\"deep\":[[[-5,null]]],\"count\":42}");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_error_shape)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_map(&d, 1);
    bl_doc_key(&d, "error");
    bl_doc_map(&d, 2);
    bl_doc_key(&d, "code");
    bl_doc_cstr(&d, "cas_failed");
    bl_doc_key(&d, "message");
    bl_doc_cstr(&d, "compare failed");
    ck_assert_str_eq(json_of(&d),
                     "{\"error\":{\"code\":\"cas_failed\",\"message\":\"compare failed\"}}");
    ck_assert_str_eq(bl_doc_content_type(BL_DOC_JSON), "application/json");
    ck_assert_str_eq(bl_doc_content_type(BL_DOC_MSGPACK), "application/msgpack");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_escapes)
{
    struct bl_doc d;
    static const char s[] = "q\"b\\s/n\nr\rt\tb\bf\fz\x01\x1f\x7f";

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_str(&d, s, sizeof s - 1);
    ck_assert_str_eq(json_of(&d), "\"q\\\"b\\\\s/n\\nr\\rt\\tb\\bf\\fz\\u0001\\u001f\x7f\"");

    /* An embedded NUL is data, not the end. */
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_str(&d, "a\0b", 3);
    ck_assert_str_eq(json_of(&d), "\"a\\u0000b\"");

    /* Keys are escaped too. */
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_map(&d, 1);
    bl_doc_key(&d, "k\"");
    bl_doc_cstr(&d, "");
    ck_assert_str_eq(json_of(&d), "{\"k\\\"\":\"\"}");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_utf8)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_JSON);
    /* Valid 2-, 3- and 4-byte sequences pass through. */
    bl_doc_cstr(&d, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf");
    ck_assert_str_eq(json_of(&d),
                     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");

    /* Invalid bytes become U+FFFD, one per byte, and the rest survives. */
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_cstr(&d, "a\x80"
                    "b\xc0\xaf"
                    "c\xed\xa0\x80"
                    "d\xf4\x90\x80\x80"
                    "e\xff"
                    "f\xe2\x82");
    ck_assert_str_eq(json_of(&d), "\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffd"
                                  "d\\ufffd\\ufffd\\ufffd\\ufffde\\ufffdf\\ufffd\\ufffd\"");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_base64)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_array(&d, 2);
    bl_doc_bin(&d, NULL, 0);
    bl_doc_str(&d, NULL, 0);
    ck_assert_str_eq(json_of(&d), "[\"\",\"\"]");
    bl_doc_reset(&d, BL_DOC_MSGPACK);
    bl_doc_bin(&d, NULL, 0);
    bl_doc_str(&d, NULL, 0);
    {
        size_t len;
        const char *p = bl_doc_data(&d, &len);
        ck_assert_uint_eq(len, 3);
        ck_assert_int_eq(memcmp(p, "\xc4\x00\xa0", 3), 0);
    }

    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_array(&d, 4);
    bl_doc_bin(&d, "", 0);
    bl_doc_bin(&d, "f", 1);
    bl_doc_bin(&d, "fo", 2);
    bl_doc_bin(&d, "foobar", 6);
    ck_assert_str_eq(json_of(&d), "[\"\",\"Zg==\",\"Zm8=\",\"Zm9vYmFy\"]");
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_json_reuse)
{
    struct bl_doc d;

    /* A buffer grows across many documents and a big one. */
    bl_doc_init(&d, BL_DOC_JSON);
    for (int i = 0; i < 3; i++) {
        bl_doc_reset(&d, BL_DOC_JSON);
        bl_doc_array(&d, 1000);
        for (int j = 0; j < 1000; j++) {
            bl_doc_cstr(&d, "0123456789");
        }
        size_t len;
        const char *p = bl_doc_data(&d, &len);
        ck_assert_int_eq(bl_doc_error(&d), 0);
        ck_assert_uint_eq(len, 2 + 1000 * 12 + 999);
        ck_assert_int_eq(p[0], '[');
        ck_assert_int_eq(p[len - 1], ']');
    }
    bl_doc_free(&d);

    /* An empty document is empty, not NULL. */
    bl_doc_init(&d, BL_DOC_MSGPACK);
    size_t len = 99;
    ck_assert_ptr_nonnull(bl_doc_data(&d, &len));
    ck_assert_uint_eq(len, 0);
    bl_doc_free(&d);
}
END_TEST

/* --- msgpack: byte-exact against msgpack-c's packer ------------------------ */

/* Compare the writer's bytes with the packer's. */
static void ck_same_bytes(struct bl_doc *d, const msgpack_sbuffer *sb)
{
    size_t len;
    const char *p = bl_doc_data(d, &len);

    ck_assert_int_eq(bl_doc_error(d), 0);
    ck_assert_uint_eq(len, sb->size);
    ck_assert_int_eq(memcmp(p, sb->data, len), 0);
}

START_TEST(test_msgpack_ints_exact)
{
    static const uint64_t uvals[] = {0,      1,       0x7f,       0x80,           0xff,      0x100,
                                     0xffff, 0x10000, 0xffffffff, 0x100000000ULL, UINT64_MAX};
    static const int64_t ivals[] = {
        0,         1,         -1,     -31,    -32,    -33,       -127,
        -128,      -129,      -32767, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1,
        INT64_MIN, INT64_MAX, 127,    128,    65535,  65536,     4294967295,
        4294967296};
    struct bl_doc d;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    bl_doc_init(&d, BL_DOC_MSGPACK);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < sizeof uvals / sizeof uvals[0]; i++) {
        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_uint(&d, uvals[i]);
        msgpack_pack_uint64(&pk, uvals[i]);
        ck_same_bytes(&d, &sb);
    }
    for (size_t i = 0; i < sizeof ivals / sizeof ivals[0]; i++) {
        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_int(&d, ivals[i]);
        msgpack_pack_int64(&pk, ivals[i]);
        ck_same_bytes(&d, &sb);
    }
    bl_doc_reset(&d, BL_DOC_MSGPACK);
    msgpack_sbuffer_clear(&sb);
    bl_doc_bool(&d, true);
    bl_doc_bool(&d, false);
    bl_doc_null(&d);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_nil(&pk);
    ck_same_bytes(&d, &sb);
    msgpack_sbuffer_destroy(&sb);
    bl_doc_free(&d);
}
END_TEST

/* Lengths on both sides of every header size change. */
static const size_t BOUNDARY_LENS[] = {0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000};
#define N_BOUNDARY (sizeof BOUNDARY_LENS / sizeof BOUNDARY_LENS[0])

START_TEST(test_msgpack_str_bin_exact)
{
    struct bl_doc d;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char *data = malloc(70000);

    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < 70000; i++) {
        data[i] = (char)('a' + i % 26);
    }
    bl_doc_init(&d, BL_DOC_MSGPACK);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < N_BOUNDARY; i++) {
        size_t n = BOUNDARY_LENS[i];
        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_str(&d, data, n);
        msgpack_pack_str_with_body(&pk, data, n);
        ck_same_bytes(&d, &sb);

        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_bin(&d, data, n);
        msgpack_pack_bin_with_body(&pk, data, n);
        ck_same_bytes(&d, &sb);
    }
    msgpack_sbuffer_destroy(&sb);
    bl_doc_free(&d);
    free(data);
}
END_TEST

START_TEST(test_msgpack_containers_exact)
{
    struct bl_doc d;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    bl_doc_init(&d, BL_DOC_MSGPACK);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < N_BOUNDARY; i++) {
        uint32_t n = (uint32_t)BOUNDARY_LENS[i];

        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_array(&d, n);
        msgpack_pack_array(&pk, n);
        for (uint32_t j = 0; j < n; j++) {
            bl_doc_uint(&d, j);
            msgpack_pack_uint32(&pk, j);
        }
        ck_assert_uint_eq(d.depth, 0);
        ck_same_bytes(&d, &sb);

        bl_doc_reset(&d, BL_DOC_MSGPACK);
        msgpack_sbuffer_clear(&sb);
        bl_doc_map(&d, n);
        msgpack_pack_map(&pk, n);
        for (uint32_t j = 0; j < n; j++) {
            bl_doc_key(&d, "k");
            bl_doc_int(&d, -(int64_t)j);
            msgpack_pack_str_with_body(&pk, "k", 1);
            msgpack_pack_int64(&pk, -(int64_t)j);
        }
        ck_assert_uint_eq(d.depth, 0);
        ck_same_bytes(&d, &sb);
    }
    msgpack_sbuffer_destroy(&sb);
    bl_doc_free(&d);
}
END_TEST

/* --- msgpack: decoded with msgpack-c, field by field -------------------------- */

/* Unpack exactly one object from the document into @u. */
static const msgpack_object *unpack_one(struct bl_doc *d, msgpack_unpacked *u)
{
    size_t len;
    size_t off = 0;
    const char *p = bl_doc_data(d, &len);

    ck_assert_int_eq(bl_doc_error(d), 0);
    ck_assert_int_eq(msgpack_unpack_next(u, p, len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, len);
    return &u->data;
}

static void ck_key(const msgpack_object_kv *kv, const char *name)
{
    ck_assert_int_eq(kv->key.type, MSGPACK_OBJECT_STR);
    ck_assert_uint_eq(kv->key.via.str.size, strlen(name));
    ck_assert_int_eq(memcmp(kv->key.via.str.ptr, name, strlen(name)), 0);
}

START_TEST(test_msgpack_decode_kv)
{
    struct bl_doc d;
    msgpack_unpacked u;
    const msgpack_object *o;
    const msgpack_object_kv *kv;
    static const uint8_t key[] = {0x00, 0xff, '/'};

    bl_doc_init(&d, BL_DOC_MSGPACK);
    bl_doc_map(&d, 4);
    bl_doc_key(&d, "kvs");
    bl_doc_array(&d, 1);
    bl_doc_map(&d, 3);
    bl_doc_key(&d, "key");
    bl_doc_bin(&d, key, sizeof key);
    bl_doc_key(&d, "mod_revision");
    bl_doc_uint(&d, UINT64_MAX);
    bl_doc_key(&d, "lease");
    bl_doc_int(&d, INT64_MIN);
    bl_doc_key(&d, "more");
    bl_doc_bool(&d, true);
    bl_doc_key(&d, "prev");
    bl_doc_null(&d);
    bl_doc_key(&d, "name");
    bl_doc_cstr(&d, "n\"1");

    msgpack_unpacked_init(&u);
    o = unpack_one(&d, &u);
    ck_assert_int_eq(o->type, MSGPACK_OBJECT_MAP);
    ck_assert_uint_eq(o->via.map.size, 4);
    kv = o->via.map.ptr;
    ck_key(&kv[0], "kvs");
    ck_assert_int_eq(kv[0].val.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq(kv[0].val.via.array.size, 1);
    {
        const msgpack_object *m = &kv[0].val.via.array.ptr[0];
        ck_assert_int_eq(m->type, MSGPACK_OBJECT_MAP);
        ck_assert_uint_eq(m->via.map.size, 3);
        ck_key(&m->via.map.ptr[0], "key");
        ck_assert_int_eq(m->via.map.ptr[0].val.type, MSGPACK_OBJECT_BIN);
        ck_assert_uint_eq(m->via.map.ptr[0].val.via.bin.size, sizeof key);
        ck_assert_int_eq(memcmp(m->via.map.ptr[0].val.via.bin.ptr, key, sizeof key), 0);
        ck_key(&m->via.map.ptr[1], "mod_revision");
        ck_assert_int_eq(m->via.map.ptr[1].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        ck_assert(m->via.map.ptr[1].val.via.u64 == UINT64_MAX);
        ck_key(&m->via.map.ptr[2], "lease");
        ck_assert_int_eq(m->via.map.ptr[2].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
        ck_assert(m->via.map.ptr[2].val.via.i64 == INT64_MIN);
    }
    ck_key(&kv[1], "more");
    ck_assert_int_eq(kv[1].val.type, MSGPACK_OBJECT_BOOLEAN);
    ck_assert(kv[1].val.via.boolean);
    ck_key(&kv[2], "prev");
    ck_assert_int_eq(kv[2].val.type, MSGPACK_OBJECT_NIL);
    ck_key(&kv[3], "name");
    ck_assert_int_eq(kv[3].val.type, MSGPACK_OBJECT_STR);
    ck_assert_uint_eq(kv[3].val.via.str.size, 3);
    ck_assert_int_eq(memcmp(kv[3].val.via.str.ptr, "n\"1", 3), 0);
    msgpack_unpacked_destroy(&u);
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_msgpack_decode_boundaries)
{
    struct bl_doc d;
    msgpack_unpacked u;
    char *data = malloc(70000);

    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < 70000; i++) {
        data[i] = (char)(i * 7);
    }
    bl_doc_init(&d, BL_DOC_MSGPACK);
    msgpack_unpacked_init(&u);
    for (size_t i = 0; i < N_BOUNDARY; i++) {
        size_t n = BOUNDARY_LENS[i];
        const msgpack_object *o;

        /* An array of n elements, then a map of n pairs, in one document. */
        bl_doc_reset(&d, BL_DOC_MSGPACK);
        bl_doc_array(&d, 3);
        bl_doc_array(&d, (uint32_t)n);
        for (size_t j = 0; j < n; j++) {
            bl_doc_uint(&d, (uint64_t)j * 1000003);
        }
        bl_doc_map(&d, (uint32_t)n);
        for (size_t j = 0; j < n; j++) {
            bl_doc_key(&d, "x");
            bl_doc_int(&d, -(int64_t)j * 1000003);
        }
        bl_doc_array(&d, 2);
        bl_doc_str(&d, data, n);
        bl_doc_bin(&d, data, n);
        ck_assert_uint_eq(d.depth, 0);

        o = unpack_one(&d, &u);
        ck_assert_int_eq(o->type, MSGPACK_OBJECT_ARRAY);
        ck_assert_uint_eq(o->via.array.size, 3);
        const msgpack_object *a = &o->via.array.ptr[0];
        const msgpack_object *m = &o->via.array.ptr[1];
        const msgpack_object *sb = &o->via.array.ptr[2];
        ck_assert_int_eq(a->type, MSGPACK_OBJECT_ARRAY);
        ck_assert_uint_eq(a->via.array.size, n);
        for (size_t j = 0; j < n; j++) {
            ck_assert(a->via.array.ptr[j].via.u64 == (uint64_t)j * 1000003);
        }
        ck_assert_int_eq(m->type, MSGPACK_OBJECT_MAP);
        ck_assert_uint_eq(m->via.map.size, n);
        for (size_t j = 0; j < n; j++) {
            ck_key(&m->via.map.ptr[j], "x");
            ck_assert(m->via.map.ptr[j].val.via.i64 == -(int64_t)j * 1000003);
        }
        ck_assert_uint_eq(sb->via.array.size, 2);
        ck_assert_int_eq(sb->via.array.ptr[0].type, MSGPACK_OBJECT_STR);
        ck_assert_uint_eq(sb->via.array.ptr[0].via.str.size, n);
        ck_assert(n == 0 || memcmp(sb->via.array.ptr[0].via.str.ptr, data, n) == 0);
        ck_assert_int_eq(sb->via.array.ptr[1].type, MSGPACK_OBJECT_BIN);
        ck_assert_uint_eq(sb->via.array.ptr[1].via.bin.size, n);
        ck_assert(n == 0 || memcmp(sb->via.array.ptr[1].via.bin.ptr, data, n) == 0);
    }
    msgpack_unpacked_destroy(&u);
    bl_doc_free(&d);
    free(data);
}
END_TEST

/* Several top-level documents back to back (a msgpack stream). */
START_TEST(test_msgpack_stream)
{
    struct bl_doc d;
    msgpack_unpacked u;
    size_t len;
    size_t off = 0;
    const char *p;

    bl_doc_init(&d, BL_DOC_MSGPACK);
    for (int i = 0; i < 3; i++) {
        bl_doc_map(&d, 1);
        bl_doc_key(&d, "revision");
        bl_doc_uint(&d, (uint64_t)i);
    }
    p = bl_doc_data(&d, &len);
    msgpack_unpacked_init(&u);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(msgpack_unpack_next(&u, p, len, &off), MSGPACK_UNPACK_SUCCESS);
        ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_MAP);
        ck_assert(u.data.via.map.ptr[0].val.via.u64 == (uint64_t)i);
    }
    ck_assert_uint_eq(off, len);
    msgpack_unpacked_destroy(&u);
    bl_doc_free(&d);
}
END_TEST

/* --- sticky errors ------------------------------------------------------------ */

START_TEST(test_sticky_errors)
{
    struct bl_doc d;
    size_t len;

    /* A string too long to escape fails before anything is read or allocated,
     * and everything after it is ignored. */
    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_array(&d, 3);
    bl_doc_uint(&d, 1);
    bl_doc_str(&d, "x", SIZE_MAX / 2);
    ck_assert_int_eq(bl_doc_error(&d), BL_ENOMEM);
    bl_doc_uint(&d, 2);
    bl_doc_data(&d, &len); /* no assert on an errored document */
    ck_assert_int_eq(bl_doc_error(&d), BL_ENOMEM);
    ck_assert_uint_eq(len, 3); /* "[1," */

    /* reset clears the error. */
    bl_doc_reset(&d, BL_DOC_MSGPACK);
    ck_assert_int_eq(bl_doc_error(&d), 0);
    bl_doc_bin(&d, "x", (size_t)UINT32_MAX + 1);
    ck_assert_int_eq(bl_doc_error(&d), BL_ETOOLARGE);
    bl_doc_str(&d, "x", (size_t)UINT32_MAX + 1);
    ck_assert_int_eq(bl_doc_error(&d), BL_ETOOLARGE);
    bl_doc_reset(&d, BL_DOC_MSGPACK);
    bl_doc_str(&d, "x", (size_t)UINT32_MAX + 1);
    ck_assert_int_eq(bl_doc_error(&d), BL_ETOOLARGE);
    bl_doc_free(&d);
}
END_TEST

#ifdef NDEBUG
/* Without assert, misuse poisons the document instead of emitting it. */
START_TEST(test_misuse_release)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_map(&d, 1);
    bl_doc_uint(&d, 1); /* a key is due */
    ck_assert_int_eq(bl_doc_error(&d), BL_EINTERNAL);
    bl_doc_reset(&d, BL_DOC_JSON);
    bl_doc_key(&d, "a"); /* no map open */
    ck_assert_int_eq(bl_doc_error(&d), BL_EINTERNAL);
    bl_doc_reset(&d, BL_DOC_JSON);
    for (int i = 0; i <= BL_DOC_MAX_DEPTH; i++) {
        bl_doc_array(&d, 1);
    }
    ck_assert_int_eq(bl_doc_error(&d), BL_EINTERNAL);
    bl_doc_free(&d);
}
END_TEST
#endif

/* --- programmer errors (assert) ------------------------------------------- */

#ifndef NDEBUG
START_TEST(test_assert_too_many)
{
    struct bl_doc d;

    /* Containers close by themselves when full, so one element too many
     * shows up as a key with no map open. */
    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_map(&d, 1);
    bl_doc_key(&d, "a");
    bl_doc_uint(&d, 1);
    bl_doc_key(&d, "b"); /* the map is full: aborts */
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_assert_value_for_key)
{
    struct bl_doc d;

    bl_doc_init(&d, BL_DOC_MSGPACK);
    bl_doc_map(&d, 1);
    bl_doc_uint(&d, 1); /* a key is due: aborts */
    bl_doc_free(&d);
}
END_TEST

START_TEST(test_assert_unfinished)
{
    struct bl_doc d;
    size_t len;

    bl_doc_init(&d, BL_DOC_JSON);
    bl_doc_map(&d, 2);
    bl_doc_key(&d, "a");
    bl_doc_uint(&d, 1);
    bl_doc_data(&d, &len); /* one pair short: aborts */
    bl_doc_free(&d);
}
END_TEST
#endif

/* --- base64 ------------------------------------------------------------------ */

static void ck_b64(const char *plain, const char *encoded)
{
    char out[64];
    uint8_t back[64];
    size_t n;
    size_t len = strlen(plain);

    n = bl_base64_encode(plain, len, out);
    ck_assert_uint_eq(n, strlen(encoded));
    ck_assert_int_eq(memcmp(out, encoded, n), 0);
    ck_assert_int_eq(bl_base64_decode(encoded, n, back, &n), BL_OK);
    ck_assert_uint_eq(n, len);
    ck_assert_int_eq(memcmp(back, plain, len), 0);
}

START_TEST(test_base64_rfc4648)
{
    ck_b64("", "");
    ck_b64("f", "Zg==");
    ck_b64("fo", "Zm8=");
    ck_b64("foo", "Zm9v");
    ck_b64("foob", "Zm9vYg==");
    ck_b64("fooba", "Zm9vYmE=");
    ck_b64("foobar", "Zm9vYmFy");
}
END_TEST

START_TEST(test_base64_roundtrip)
{
    uint8_t in[100];
    char enc[136];
    uint8_t dec[102];

    for (size_t len = 0; len <= 100; len++) {
        size_t n;
        size_t m = 12345;

        for (size_t i = 0; i < len; i++) {
            in[i] = (uint8_t)(i * 37 + len * 11 + 0x80);
        }
        n = bl_base64_encode(in, len, enc);
        ck_assert_uint_eq(n, 4 * ((len + 2) / 3));
        for (size_t i = 0; i < n; i++) {
            ck_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                             enc[i]) != NULL);
        }
        ck_assert_int_eq(bl_base64_decode(enc, n, dec, &m), BL_OK);
        ck_assert_uint_eq(m, len);
        ck_assert_uint_le(m, 3 * (n / 4));
        ck_assert_int_eq(memcmp(in, dec, len), 0);
    }
    /* Every byte value, and both alphabet extras. */
    {
        uint8_t all[256];
        char e[344];
        uint8_t back[258];
        size_t n;
        size_t m;

        for (int i = 0; i < 256; i++) {
            all[i] = (uint8_t)i;
        }
        n = bl_base64_encode(all, 256, e);
        ck_assert_int_eq(bl_base64_decode(e, n, back, &m), BL_OK);
        ck_assert_uint_eq(m, 256);
        ck_assert_int_eq(memcmp(all, back, 256), 0);
        ck_assert_int_eq(bl_base64_decode("+/+/", 4, back, &m), BL_OK);
        ck_assert_uint_eq(m, 3);
        ck_assert_int_eq(back[0], 0xfb);
        ck_assert_int_eq(back[1], 0xff);
        ck_assert_int_eq(back[2], 0xbf);
    }
}
END_TEST

START_TEST(test_base64_rejects)
{
    static const char *const bad[] = {
        "Zg=",                     /* wrong length */
        "Zg",                      /* unpadded */
        "Z",                       /* wrong length */
        "Zm9vY",                   /* wrong length */
        "Zg==Zg==",                /* padding before the end */
        "Z===",                    /* too much padding */
        "====",                    /* only padding */
        "Zm=v",                    /* '=' in the middle of a quad */
        "=Zm9",                    /* '=' first */
        "Zm9v Zg=",                /* whitespace */
        "Zm9v\nZg==", "Zm9-",      /* URL-safe alphabet */
        "Zm9_",       "Zm9v\0Zg=", /* NUL */
        "Zh==",                    /* non-zero pad bits */
        "Zm9=",                    /* non-zero pad bits */
        "Zm\xc3\xa9",              /* non-ASCII */
    };
    static const size_t lens[] = {3, 2, 1, 5, 8, 4, 4, 4, 4, 8, 9, 4, 4, 8, 4, 4, 4};
    uint8_t out[16];
    size_t n;

    ck_assert_uint_eq(sizeof bad / sizeof bad[0], sizeof lens / sizeof lens[0]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 99;
        ck_assert_msg(bl_base64_decode(bad[i], lens[i], out, &n) == BL_EBADREQ,
                      "accepted bad input #%zu", i);
        ck_assert_uint_eq(n, 0);
    }
}
END_TEST

static Suite *doc_suite(bool forking)
{
    Suite *s = suite_create("doc");
    TCase *tc = tcase_create("json");

    tcase_add_test(tc, test_json_scalars);
    tcase_add_test(tc, test_json_nested);
    tcase_add_test(tc, test_json_error_shape);
    tcase_add_test(tc, test_json_escapes);
    tcase_add_test(tc, test_json_utf8);
    tcase_add_test(tc, test_json_base64);
    tcase_add_test(tc, test_json_reuse);
    suite_add_tcase(s, tc);

    tc = tcase_create("msgpack");
    tcase_add_test(tc, test_msgpack_ints_exact);
    tcase_add_test(tc, test_msgpack_str_bin_exact);
    tcase_add_test(tc, test_msgpack_containers_exact);
    tcase_add_test(tc, test_msgpack_decode_kv);
    tcase_add_test(tc, test_msgpack_decode_boundaries);
    tcase_add_test(tc, test_msgpack_stream);
    suite_add_tcase(s, tc);

    tc = tcase_create("base64");
    tcase_add_test(tc, test_base64_rfc4648);
    tcase_add_test(tc, test_base64_roundtrip);
    tcase_add_test(tc, test_base64_rejects);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_sticky_errors);
#ifdef NDEBUG
    tcase_add_test(tc, test_misuse_release);
#endif
    suite_add_tcase(s, tc);

#ifndef NDEBUG
    /* An abort can only be caught in a forked test (not under CK_FORK=no). */
    if (forking) {
        tc = tcase_create("asserts");
        tcase_add_test_raise_signal(tc, test_assert_too_many, SIGABRT);
        tcase_add_test_raise_signal(tc, test_assert_value_for_key, SIGABRT);
        tcase_add_test_raise_signal(tc, test_assert_unfinished, SIGABRT);
        suite_add_tcase(s, tc);
    }
#else
    (void)forking;
#endif
    return s;
}

int main(void)
{
    SRunner *sr;
    const char *fork_env = getenv("CK_FORK");
    bool forking = fork_env == NULL || strcmp(fork_env, "no") != 0;
    int failed;

    sr = srunner_create(doc_suite(forking));
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
