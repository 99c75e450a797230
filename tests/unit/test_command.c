/* Unit tests of the command codec (raft_glue/command.c).
 *
 * Round trips of every command type with edge-size fields; the encoding is
 * compared byte for byte with what msgpack-c's packer writes for the same
 * fields, and msgpack-c's unpacker is the oracle for where the msgpack ends.
 * Then the decoder's refusals: every truncation, random and mutated bytes
 * (fixed seeds), and hand-built arrays with a wrong version, type, count,
 * field kind, length or padding. Truncations are decoded from exact-size
 * heap copies so that AddressSanitizer or valgrind sees any over-read. */
#include "command.h"
#include "error.h"

#include <check.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

/* ck_assert for hot loops: Check records a mark point for every passing
 * ck_assert, which costs more than the code under test here. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ck_abort_msg(__VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

static struct bl_slice sl(const void *p, size_t len)
{
    struct bl_slice s = {p, len};
    return s;
}

static struct bl_slice cstr(const char *s)
{
    return sl(s, strlen(s));
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic, seeded per test. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(rng_next() >> 56);
    }
}

static bool slice_eq(struct bl_slice a, struct bl_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Decode @len bytes from a heap copy of exactly that size. */
static int decode_copy(const void *buf, size_t len, struct bl_cmd *cmd, char *errmsg)
{
    void *copy = malloc(len > 0 ? len : 1);
    REQUIRE(copy != NULL, "out of memory");
    if (len > 0) {
        memcpy(copy, buf, len);
    }
    int rv = bl_cmd_decode(copy, len, cmd, errmsg);
    free(copy);
    return rv;
}

/* Length of the msgpack object at the start of @buf, by msgpack-c. */
static size_t msgpack_len(const void *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    msgpack_unpack_return ret = msgpack_unpack_next(&u, buf, len, &off);
    ck_assert_int_eq(ret, MSGPACK_UNPACK_SUCCESS);
    ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
    msgpack_unpacked_destroy(&u);
    return off;
}

/* What msgpack-c's packer writes for @cmd. */
static void pack_reference(const struct bl_cmd *cmd, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    static const size_t counts[] = {0, 8, 6, 5, 8};
    msgpack_pack_array(&pk, counts[cmd->type]);
    msgpack_pack_uint64(&pk, BL_CMD_VERSION);
    msgpack_pack_uint64(&pk, (uint64_t)cmd->type);
    msgpack_pack_bin_with_body(&pk, cmd->request_id.p, cmd->request_id.len);
    switch (cmd->type) {
    case BL_CMD_PUT:
        msgpack_pack_bin_with_body(&pk, cmd->key.p, cmd->key.len);
        msgpack_pack_bin_with_body(&pk, cmd->value.p, cmd->value.len);
        msgpack_pack_int64(&pk, cmd->cas);
        msgpack_pack_uint64(&pk, cmd->lease);
        msgpack_pack_uint64(&pk, cmd->flags);
        break;
    case BL_CMD_DELETE:
        msgpack_pack_bin_with_body(&pk, cmd->key.p, cmd->key.len);
        msgpack_pack_int64(&pk, cmd->cas);
        msgpack_pack_uint64(&pk, cmd->flags);
        break;
    case BL_CMD_DELETE_RANGE:
        msgpack_pack_bin_with_body(&pk, cmd->key.p, cmd->key.len);
        msgpack_pack_uint64(&pk, cmd->flags);
        break;
    case BL_CMD_MEMBER_SET:
        msgpack_pack_uint64(&pk, cmd->member_id);
        msgpack_pack_str_with_body(&pk, cmd->name.p, cmd->name.len);
        msgpack_pack_str_with_body(&pk, cmd->peer_url.p, cmd->peer_url.len);
        msgpack_pack_str_with_body(&pk, cmd->client_url.p, cmd->client_url.len);
        msgpack_pack_uint64(&pk, cmd->flags);
        break;
    }
}

/* Every truncation of @buf (whose msgpack is @raw bytes) fails; every
 * length from @raw to @len decodes. Exact-size copies when @copy. */
static void check_truncations(const uint8_t *buf, size_t raw, size_t len, bool copy)
{
    struct bl_cmd out;
    char errmsg[BL_ERRMSG_SIZE];
    for (size_t n = 0; n <= len; n++) {
        errmsg[0] = '\0';
        int rv = copy ? decode_copy(buf, n, &out, errmsg) : bl_cmd_decode(buf, n, &out, errmsg);
        if (n < raw) {
            REQUIRE(rv == BL_EMALFORMED, "prefix of %zu/%zu bytes gave %d", n, raw, rv);
            REQUIRE(errmsg[0] != '\0', "no message for prefix %zu", n);
        } else {
            REQUIRE(rv == BL_OK, "padded length %zu gave %d: %s", n, rv, errmsg);
        }
    }
}

/* Encode @cmd, check the bytes against msgpack-c, decode, compare, and try
 * every truncation. */
static void round_trip(const struct bl_cmd *cmd)
{
    void *buf;
    size_t len;
    struct bl_cmd out;
    char errmsg[BL_ERRMSG_SIZE] = "";

    ck_assert_int_eq(bl_cmd_encode(cmd, &buf, &len), BL_OK);
    ck_assert_uint_eq(len % 8, 0);
    size_t raw = msgpack_len(buf, len);
    ck_assert_uint_le(raw, len);
    ck_assert_uint_lt(len - raw, 8);
    for (size_t i = raw; i < len; i++) {
        ck_assert_uint_eq(((uint8_t *)buf)[i], 0);
    }

    msgpack_sbuffer ref;
    pack_reference(cmd, &ref);
    ck_assert_uint_eq(ref.size, raw);
    ck_assert_int_eq(memcmp(ref.data, buf, raw), 0);
    msgpack_sbuffer_destroy(&ref);

    int rv = bl_cmd_decode(buf, len, &out, errmsg);
    ck_assert_msg(rv == BL_OK, "decode: %d %s", rv, errmsg);
    ck_assert_int_eq(out.type, cmd->type);
    ck_assert(slice_eq(out.request_id, cmd->request_id));
    /* Slices point into the buffer. */
    ck_assert(out.request_id.p >= (uint8_t *)buf && out.request_id.p < (uint8_t *)buf + len);
    switch (cmd->type) {
    case BL_CMD_PUT:
        ck_assert(slice_eq(out.value, cmd->value));
        ck_assert_int_eq(out.lease, cmd->lease);
        /* fall through */
    case BL_CMD_DELETE:
        ck_assert_int_eq(out.cas, cmd->cas);
        /* fall through */
    case BL_CMD_DELETE_RANGE:
        ck_assert(slice_eq(out.key, cmd->key));
        ck_assert_uint_eq(out.flags, cmd->flags);
        break;
    case BL_CMD_MEMBER_SET:
        ck_assert_uint_eq(out.member_id, cmd->member_id);
        ck_assert(slice_eq(out.name, cmd->name));
        ck_assert(slice_eq(out.peer_url, cmd->peer_url));
        ck_assert(slice_eq(out.client_url, cmd->client_url));
        break;
    }

    check_truncations(buf, raw, len, len <= 16384);
    free(buf);
}

static struct bl_cmd put_cmd(const char *rid, const void *key, size_t key_len, const void *val,
                             size_t val_len)
{
    struct bl_cmd c = {0};
    c.type = BL_CMD_PUT;
    c.request_id = cstr(rid);
    c.key = sl(key, key_len);
    c.value = sl(val, val_len);
    c.cas = BL_CAS_NONE;
    return c;
}

/* ---- round trips -------------------------------------------------------- */

START_TEST(test_put_round_trip)
{
    struct bl_cmd c = put_cmd("req-1", "hello", 5, "world", 5);
    round_trip(&c);

    /* Empty value, NULL pointer. */
    c = put_cmd("r", "k", 1, NULL, 0);
    round_trip(&c);

    /* Binary key and value with zeros and 0xff. */
    static const uint8_t bin[] = {0, 1, 0, 0xff, 0xc4, 0x00, 0x90, 0};
    c = put_cmd("bin", bin, sizeof bin, bin, sizeof bin);
    c.lease = 0x1234567890ULL;
    c.flags = BL_CMD_F_PREV;
    round_trip(&c);

    /* cas: none, absent, small, every width boundary, max. */
    static const int64_t cases[] = {
        BL_CAS_NONE, 0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (int64_t)UINT32_MAX + 1,
        INT64_MAX};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c = put_cmd("cas", "k", 1, "v", 1);
        c.cas = cases[i];
        c.lease = (uint64_t)cases[i] * 3;
        c.flags = UINT64_MAX - (uint64_t)i;
        round_trip(&c);
    }

    /* Value lengths around the bin8/bin16/bin32 boundaries. */
    static const size_t sizes[] = {0, 1, 7, 8, 255, 256, 65535, 65536};
    uint8_t *v = malloc(65536);
    ck_assert_ptr_nonnull(v);
    rng_state = 42;
    fill_random(v, 65536);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        c = put_cmd("sizes", "k", 1, v, sizes[i]);
        round_trip(&c);
    }
    free(v);
}
END_TEST

START_TEST(test_put_big)
{
    /* 4096-byte key, 1 MiB value of random bytes (zeros included). */
    uint8_t *key = malloc(BL_KEY_MAX);
    uint8_t *val = malloc(1 << 20);
    ck_assert_ptr_nonnull(key);
    ck_assert_ptr_nonnull(val);
    rng_state = 7;
    fill_random(key, BL_KEY_MAX);
    fill_random(val, 1 << 20);
    val[0] = 0;
    key[100] = 0;
    struct bl_cmd c = put_cmd("big", key, BL_KEY_MAX, val, 1 << 20);
    c.cas = 99;
    round_trip(&c);

    char rid[BL_CMD_REQUEST_ID_MAX];
    memset(rid, 'x', sizeof rid);
    c = put_cmd("", key, BL_KEY_MAX, NULL, 0);
    c.request_id = sl(rid, sizeof rid);
    round_trip(&c);
    free(key);
    free(val);
}
END_TEST

START_TEST(test_delete_round_trip)
{
    struct bl_cmd c = {0};
    c.type = BL_CMD_DELETE;
    c.request_id = cstr("del");
    c.key = cstr("some/key");
    c.cas = BL_CAS_NONE;
    round_trip(&c);
    c.cas = 0;
    c.flags = BL_CMD_F_PREV;
    round_trip(&c);
    c.cas = 1234567;
    round_trip(&c);

    c.type = BL_CMD_DELETE_RANGE;
    c.key = cstr("some/");
    round_trip(&c);
    c.key = sl(NULL, 0); /* empty prefix: every key */
    c.flags = 0;
    round_trip(&c);
    uint8_t *p = calloc(1, BL_KEY_MAX);
    ck_assert_ptr_nonnull(p);
    c.key = sl(p, BL_KEY_MAX);
    round_trip(&c);
    free(p);
}
END_TEST

START_TEST(test_member_set_round_trip)
{
    struct bl_cmd c = {0};
    c.type = BL_CMD_MEMBER_SET;
    c.request_id = cstr("m");
    c.member_id = 3;
    c.name = cstr("member-3");
    c.peer_url = cstr("http://127.0.0.1:8380");
    c.client_url = cstr("http://127.0.0.1:8379");
    round_trip(&c);

    char big[255];
    memset(big, 'u', sizeof big);
    c.member_id = UINT64_MAX;
    c.name = sl(NULL, 0);
    c.peer_url = sl(big, sizeof big);
    c.client_url = sl(big, 32);
    round_trip(&c);
    c.name = sl(big, 255);
    c.client_url = sl(big, 31);
    round_trip(&c);
}
END_TEST

START_TEST(test_encode_rejects)
{
    void *buf = NULL;
    size_t len = 0;
    uint8_t *key = calloc(1, BL_KEY_MAX + 1);
    char rid[BL_CMD_REQUEST_ID_MAX + 1];
    memset(rid, 'r', sizeof rid);
    ck_assert_ptr_nonnull(key);

    struct bl_cmd c = put_cmd("r", "k", 1, "v", 1);
    c.key = sl(key, 0);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.key = sl(key, BL_KEY_MAX + 1);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.key = sl(NULL, 3);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.key = cstr("k");
    c.request_id = sl(rid, 0);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.request_id = sl(rid, BL_CMD_REQUEST_ID_MAX + 1);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.request_id = cstr("r");
    c.cas = -2;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.cas = INT64_MIN;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.cas = BL_CAS_NONE;
    c.type = 0;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.type = 5;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.type = -1;
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);

    c.type = BL_CMD_DELETE;
    c.key = sl(key, 0);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.type = BL_CMD_DELETE_RANGE;
    c.key = sl(key, BL_KEY_MAX + 1);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);

    char url[257];
    memset(url, 'u', sizeof url);
    c = (struct bl_cmd){0};
    c.type = BL_CMD_MEMBER_SET;
    c.request_id = cstr("m");
    c.name = sl(url, 256);
    c.peer_url = cstr("p");
    c.client_url = cstr("c");
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.name = cstr("n");
    c.peer_url = sl(url, 0);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.peer_url = cstr("p");
    c.client_url = sl(url, 256);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_EBADREQ);
    c.client_url = cstr("c");
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_OK);
    free(buf);
    free(key);
}
END_TEST

/* ---- decode refusals ------------------------------------------------------ */

/* A packer over a fresh buffer, for hand-built commands. */
struct built {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void built_init(struct built *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

/* Decode @b's bytes (followed by @pad zero bytes); returns the code and
 * frees the buffer. */
/* Decode what @b holds (plus @pad zero bytes) into *@out, then free @b. */
static int built_decode_out(struct built *b, size_t pad, struct bl_cmd *out, char *errmsg)
{
    for (size_t i = 0; i < pad; i++) {
        msgpack_sbuffer_write(&b->sb, "", 1);
    }
    errmsg[0] = '\0';
    int rv = decode_copy(b->sb.data, b->sb.size, out, errmsg);
    msgpack_sbuffer_destroy(&b->sb);
    return rv;
}

static int built_decode(struct built *b, size_t pad, char *errmsg)
{
    struct bl_cmd out;
    for (size_t i = 0; i < pad; i++) {
        msgpack_sbuffer_write(&b->sb, "", 1);
    }
    errmsg[0] = '\0';
    int rv = decode_copy(b->sb.data, b->sb.size, &out, errmsg);
    msgpack_sbuffer_destroy(&b->sb);
    return rv;
}

static void head(struct built *b, size_t count, uint64_t version, uint64_t type)
{
    msgpack_pack_array(&b->pk, count);
    msgpack_pack_uint64(&b->pk, version);
    msgpack_pack_uint64(&b->pk, type);
    msgpack_pack_bin_with_body(&b->pk, "rid", 3);
}

/* Which field of a hand-built PUT to spoil, and how. */
enum spoil {
    SP_NONE,
    SP_KEY_STR,
    SP_KEY_EMPTY,
    SP_KEY_LONG,
    SP_VALUE_STR,
    SP_VALUE_NIL,
    SP_CAS_STR,
    SP_CAS_BELOW,
    SP_CAS_HUGE,
    SP_CAS_FLOAT,
    SP_LEASE_NEG,
    SP_LEASE_BOOL,
    SP_FLAGS_BIN,
    SP_FLAGS_MAP,
};

static void build_put(struct built *b, enum spoil sp)
{
    static uint8_t long_key[BL_KEY_MAX + 1];
    msgpack_packer *pk = &b->pk;
    built_init(b);
    head(b, 8, 1, BL_CMD_PUT);
    if (sp == SP_KEY_STR) {
        msgpack_pack_str_with_body(pk, "key", 3);
    } else if (sp == SP_KEY_EMPTY) {
        msgpack_pack_bin(pk, 0);
    } else if (sp == SP_KEY_LONG) {
        msgpack_pack_bin_with_body(pk, long_key, sizeof long_key);
    } else {
        msgpack_pack_bin_with_body(pk, "key", 3);
    }
    if (sp == SP_VALUE_STR) {
        msgpack_pack_str_with_body(pk, "v", 1);
    } else if (sp == SP_VALUE_NIL) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_bin_with_body(pk, "v", 1);
    }
    if (sp == SP_CAS_STR) {
        msgpack_pack_str_with_body(pk, "1", 1);
    } else if (sp == SP_CAS_BELOW) {
        msgpack_pack_int64(pk, -2);
    } else if (sp == SP_CAS_HUGE) {
        msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
    } else if (sp == SP_CAS_FLOAT) {
        msgpack_pack_double(pk, 1.0);
    } else {
        msgpack_pack_int64(pk, -1);
    }
    if (sp == SP_LEASE_NEG) {
        msgpack_pack_int64(pk, -5);
    } else if (sp == SP_LEASE_BOOL) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_uint64(pk, 0);
    }
    if (sp == SP_FLAGS_BIN) {
        msgpack_pack_bin_with_body(pk, "\1", 1);
    } else if (sp == SP_FLAGS_MAP) {
        msgpack_pack_map(pk, 0);
    } else {
        msgpack_pack_uint64(pk, 1);
    }
}

START_TEST(test_decode_wrong_field_types)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct built b;

    build_put(&b, SP_NONE);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_OK);
    for (int sp = SP_KEY_STR; sp <= SP_FLAGS_MAP; sp++) {
        build_put(&b, (enum spoil)sp);
        int rv = built_decode(&b, 0, errmsg);
        ck_assert_msg(rv == BL_EMALFORMED, "spoil %d gave %d", sp, rv);
        ck_assert_msg(errmsg[0] != '\0', "spoil %d: no message", sp);
    }

    /* request id: str instead of bin, empty, too long, exactly 64 fine. */
    char rid[BL_CMD_REQUEST_ID_MAX + 1];
    memset(rid, 'r', sizeof rid);
    static const struct {
        bool str;
        size_t len;
        int want;
    } rids[] = {{true, 3, BL_EMALFORMED},
                {false, 0, BL_EMALFORMED},
                {false, BL_CMD_REQUEST_ID_MAX + 1, BL_EMALFORMED},
                {false, BL_CMD_REQUEST_ID_MAX, BL_OK}};
    for (size_t i = 0; i < sizeof rids / sizeof rids[0]; i++) {
        built_init(&b);
        msgpack_pack_array(&b.pk, 6);
        msgpack_pack_uint64(&b.pk, 1);
        msgpack_pack_uint64(&b.pk, BL_CMD_DELETE);
        if (rids[i].str) {
            msgpack_pack_str_with_body(&b.pk, rid, rids[i].len);
        } else {
            msgpack_pack_bin_with_body(&b.pk, rid, rids[i].len);
        }
        msgpack_pack_bin_with_body(&b.pk, "k", 1);
        msgpack_pack_int64(&b.pk, 0);
        msgpack_pack_uint64(&b.pk, 0);
        ck_assert_int_eq(built_decode(&b, 0, errmsg), rids[i].want);
    }

    /* DELETE with an empty key; DELETE_RANGE with an empty prefix is fine. */
    built_init(&b);
    head(&b, 6, 1, BL_CMD_DELETE);
    msgpack_pack_bin(&b.pk, 0);
    msgpack_pack_int64(&b.pk, 0);
    msgpack_pack_uint64(&b.pk, 0);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
    built_init(&b);
    head(&b, 5, 1, BL_CMD_DELETE_RANGE);
    msgpack_pack_bin(&b.pk, 0);
    msgpack_pack_uint64(&b.pk, 0);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_OK);

    /* MEMBER_SET: name as bin, URL empty, URL too long, id negative; the
     * last two are good: without flags (logs before 0.2) and with them. */
    char url[256];
    memset(url, 'u', sizeof url);
    for (int i = 0; i < 6; i++) {
        struct bl_cmd out;
        built_init(&b);
        head(&b, i == 5 ? 8 : 7, 1, BL_CMD_MEMBER_SET);
        if (i == 0) {
            msgpack_pack_int64(&b.pk, -1);
        } else {
            msgpack_pack_uint64(&b.pk, 2);
        }
        if (i == 1) {
            msgpack_pack_bin_with_body(&b.pk, "n", 1);
        } else {
            msgpack_pack_str_with_body(&b.pk, "n", 1);
        }
        msgpack_pack_str_with_body(&b.pk, url, i == 2 ? 0 : 10);
        msgpack_pack_str_with_body(&b.pk, url, i == 3 ? 256 : 255);
        if (i == 5) {
            msgpack_pack_uint64(&b.pk, BL_CMD_F_SELF);
        }
        ck_assert_int_eq(built_decode_out(&b, 0, &out, errmsg), i >= 4 ? BL_OK : BL_EMALFORMED);
        if (i >= 4) {
            ck_assert_uint_eq(out.flags, i == 5 ? BL_CMD_F_SELF : 0);
        }
    }
}
END_TEST

START_TEST(test_decode_wrong_head)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct built b;

    /* Versions other than 1, as uint, negative and str. */
    static const int64_t versions[] = {0, 2, 255, -1};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        built_init(&b);
        msgpack_pack_array(&b.pk, 5);
        msgpack_pack_int64(&b.pk, versions[i]);
        msgpack_pack_uint64(&b.pk, BL_CMD_DELETE_RANGE);
        msgpack_pack_bin_with_body(&b.pk, "r", 1);
        msgpack_pack_bin_with_body(&b.pk, "p", 1);
        msgpack_pack_uint64(&b.pk, 0);
        ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
        ck_assert_ptr_nonnull(strstr(errmsg, "version"));
    }
    built_init(&b);
    msgpack_pack_array(&b.pk, 5);
    msgpack_pack_str_with_body(&b.pk, "1", 1);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);

    /* Unknown types. */
    static const uint64_t types[] = {0, 5, 99, UINT64_MAX};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        built_init(&b);
        head(&b, 5, 1, types[i]);
        msgpack_pack_bin_with_body(&b.pk, "p", 1);
        msgpack_pack_uint64(&b.pk, 0);
        ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
        ck_assert_ptr_nonnull(strstr(errmsg, "type"));
    }

    /* Wrong element counts for each type: one less and one more, filled
     * with plausible fields so that only the count is wrong. */
    static const size_t counts[] = {0, 9, 6, 5, 8};
    for (int type = BL_CMD_PUT; type <= BL_CMD_MEMBER_SET; type++) {
        /* For MEMBER_SET one less is the older form without flags, for PUT
         * the one without ttl. */
        int deltas[2] = {type == BL_CMD_MEMBER_SET || type == BL_CMD_PUT ? -2 : -1, 1};
        for (int d = 0; d < 2; d++) {
            int delta = deltas[d];
            size_t n = counts[type] + (size_t)delta;
            built_init(&b);
            head(&b, n, 1, (uint64_t)type);
            for (size_t i = 3; i < n; i++) {
                msgpack_pack_uint64(&b.pk, 1);
            }
            ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
            ck_assert_ptr_nonnull(strstr(errmsg, "elements"));
        }
    }
    /* Arrays too short to hold the head; not an array at all. */
    for (size_t n = 0; n < 3; n++) {
        built_init(&b);
        msgpack_pack_array(&b.pk, n);
        for (size_t i = 0; i < n; i++) {
            msgpack_pack_uint64(&b.pk, 1);
        }
        ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
    }
    built_init(&b);
    msgpack_pack_map(&b.pk, 0);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
    built_init(&b);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED); /* empty */
}
END_TEST

START_TEST(test_decode_padding)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct built b;
    void *buf;
    size_t len;

    /* 0..7 zero bytes after the array are fine, 8 are not. */
    for (size_t pad = 0; pad <= 8; pad++) {
        build_put(&b, SP_NONE);
        ck_assert_int_eq(built_decode(&b, pad, errmsg), pad <= 7 ? BL_OK : BL_EMALFORMED);
    }

    /* A non-zero byte anywhere in the padding is refused. */
    struct bl_cmd c = put_cmd("abc", "key", 3, "value", 5);
    ck_assert_int_eq(bl_cmd_encode(&c, &buf, &len), BL_OK);
    size_t raw = msgpack_len(buf, len);
    ck_assert_uint_lt(raw, len); /* this one has padding */
    uint8_t *p = buf;
    for (size_t i = raw; i < len; i++) {
        struct bl_cmd out;
        p[i] = 1;
        ck_assert_int_eq(decode_copy(buf, len, &out, errmsg), BL_EMALFORMED);
        ck_assert_ptr_nonnull(strstr(errmsg, "padding"));
        p[i] = 0;
    }

    /* A second object after the first is junk, not padding (a 0 would
     * pack as the byte 0x00, which is padding). */
    build_put(&b, SP_NONE);
    msgpack_pack_uint64(&b.pk, 1);
    ck_assert_int_eq(built_decode(&b, 0, errmsg), BL_EMALFORMED);
    free(buf);
}
END_TEST

START_TEST(test_batch_round_trip)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct bl_cmd c1 = put_cmd("r1", "key", 3, "value", 5), out;
    struct bl_cmd c2 = put_cmd("r2", "k2", 2, "", 0);
    struct bl_slice cmds[2], got[BL_BATCH_MAX];
    void *b1, *b2, *batch;
    size_t l1, l2, len;
    uint32_t n = 0;

    ck_assert_int_eq(bl_cmd_encode(&c1, &b1, &l1), BL_OK);
    ck_assert_int_eq(bl_cmd_encode(&c2, &b2, &l2), BL_OK);
    cmds[0] = sl(b1, l1);
    cmds[1] = sl(b2, l2);
    ck_assert_int_eq(bl_batch_encode(cmds, 2, &batch, &len), BL_OK);
    ck_assert_uint_eq(len % 8, 0);
    ck_assert(bl_cmd_is_batch(batch, len));
    ck_assert(!bl_cmd_is_batch(b1, l1));
    ck_assert_int_eq(bl_batch_decode(batch, len, got, &n, errmsg), BL_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(got[1].len, l2);
    ck_assert_int_eq(memcmp(got[1].p, b2, l2), 0);
    ck_assert_int_eq(bl_cmd_decode(got[0].p, got[0].len, &out, errmsg), BL_OK);
    ck_assert_uint_eq(out.key.len, 3);
    ck_assert_int_eq(memcmp(out.value.p, "value", 5), 0);
    /* A plain decoder refuses a batch: it is no command of its own. */
    ck_assert_int_eq(bl_cmd_decode(batch, len, &out, errmsg), BL_EMALFORMED);
    /* Every truncation of it is refused. */
    for (size_t cut = 0; cut + 8 <= len; cut++) {
        ck_assert_int_eq(bl_batch_decode(batch, cut, got, &n, errmsg), BL_EMALFORMED);
    }
    /* Out of range counts. */
    ck_assert_int_eq(bl_batch_encode(cmds, 0, &batch, &len), BL_EBADREQ);
    ck_assert_int_eq(bl_batch_encode(cmds, BL_BATCH_MAX + 1, &batch, &len), BL_EBADREQ);
    free(batch);
    free(b1);
    free(b2);
}
END_TEST

START_TEST(test_batch_decode_rejects)
{
    char errmsg[BL_ERRMSG_SIZE];
    struct bl_slice got[BL_BATCH_MAX];
    uint32_t n;
    /* [1, 8, 2, bin "a"] : says 2 commands, holds 1 */
    static const uint8_t short_batch[] = {0x94, 0x01, 0x08, 0x02, 0xc4, 0x01, 'a', 0x00};
    /* [1, 8, 0] : an empty batch */
    static const uint8_t empty[] = {0x93, 0x01, 0x08, 0x00, 0, 0, 0, 0};
    /* [1, 8, 1, str "a"] : a command must be bin */
    static const uint8_t not_bin[] = {0x94, 0x01, 0x08, 0x01, 0xa1, 'a', 0, 0};
    /* [1, 8, 1, bin "a"] then junk in the padding */
    static const uint8_t junk[] = {0x94, 0x01, 0x08, 0x01, 0xc4, 0x01, 'a', 0x07};

    ck_assert_int_eq(bl_batch_decode(short_batch, sizeof short_batch, got, &n, errmsg),
                     BL_EMALFORMED);
    ck_assert_int_eq(bl_batch_decode(empty, sizeof empty, got, &n, errmsg), BL_EMALFORMED);
    ck_assert_int_eq(bl_batch_decode(not_bin, sizeof not_bin, got, &n, errmsg), BL_EMALFORMED);
    ck_assert_int_eq(bl_batch_decode(junk, sizeof junk, got, &n, errmsg), BL_EMALFORMED);
    ck_assert_ptr_nonnull(strstr(errmsg, "padding"));
}
END_TEST

START_TEST(test_decode_wide_forms)
{
    /* A foreign encoder may use array16 and wider integer forms. */
    char errmsg[BL_ERRMSG_SIZE];
    struct built b;
    struct bl_cmd out;

    built_init(&b);
    static const uint8_t array16_8[] = {0xdc, 0x00, 0x08};
    msgpack_sbuffer_write(&b.sb, (const char *)array16_8, sizeof array16_8);
    msgpack_pack_fix_uint64(&b.pk, 1);
    msgpack_pack_fix_int8(&b.pk, BL_CMD_PUT);
    msgpack_pack_bin_with_body(&b.pk, "r", 1);
    msgpack_pack_bin_with_body(&b.pk, "k", 1);
    msgpack_pack_bin_with_body(&b.pk, "v", 1);
    msgpack_pack_fix_int32(&b.pk, -1);
    msgpack_pack_fix_int64(&b.pk, 77);
    msgpack_pack_fix_uint16(&b.pk, 1);
    int rv = bl_cmd_decode(b.sb.data, b.sb.size, &out, errmsg);
    ck_assert_msg(rv == BL_OK, "%s", errmsg);
    ck_assert_int_eq(out.type, BL_CMD_PUT);
    ck_assert_int_eq(out.cas, -1);
    ck_assert_uint_eq(out.lease, 77);
    ck_assert_uint_eq(out.flags, 1);
    msgpack_sbuffer_destroy(&b.sb);
}
END_TEST

START_TEST(test_decode_garbage)
{
    /* Random buffers, and random buffers behind a valid head, must never
     * crash; nearly all are refused. */
    char errmsg[BL_ERRMSG_SIZE];
    struct bl_cmd out;
    uint8_t buf[96];
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 200000; i++) {
        size_t len = (size_t)(rng_next() % (sizeof buf + 1));
        fill_random(buf, len);
        if (i % 2 == 1 && len >= 4) {
            static const uint8_t heads[][3] = {
                {0x98, 1, 1}, {0x96, 1, 2}, {0x95, 1, 3}, {0x97, 1, 4}};
            memcpy(buf, heads[i / 2 % 4], 3);
            buf[3] = 0xc4; /* bin8: the request id */
        }
        int rv = decode_copy(buf, len, &out, errmsg);
        REQUIRE(rv == BL_OK || rv == BL_EMALFORMED, "random bytes gave %d", rv);
    }

    /* Mutations of valid encodings: flip one to three bytes. */
    struct bl_cmd cmds[3];
    cmds[0] = put_cmd("mut", "the-key", 7, "the-value", 9);
    cmds[0].cas = 300;
    cmds[1] = (struct bl_cmd){0};
    cmds[1].type = BL_CMD_MEMBER_SET;
    cmds[1].request_id = cstr("m");
    cmds[1].member_id = 70000;
    cmds[1].name = cstr("n");
    cmds[1].peer_url = cstr("http://a:1");
    cmds[1].client_url = cstr("http://a:2");
    cmds[2] = (struct bl_cmd){0};
    cmds[2].type = BL_CMD_DELETE_RANGE;
    cmds[2].request_id = cstr("d");
    for (int c = 0; c < 3; c++) {
        void *enc;
        size_t len;
        ck_assert_int_eq(bl_cmd_encode(&cmds[c], &enc, &len), BL_OK);
        uint8_t *m = malloc(len);
        ck_assert_ptr_nonnull(m);
        for (int i = 0; i < 50000; i++) {
            memcpy(m, enc, len);
            int flips = 1 + (int)(rng_next() % 3);
            for (int f = 0; f < flips; f++) {
                m[rng_next() % len] = (uint8_t)(rng_next() >> 56);
            }
            int rv = bl_cmd_decode(m, len, &out, errmsg);
            REQUIRE(rv == BL_OK || rv == BL_EMALFORMED, "mutated bytes gave %d", rv);
            if (rv == BL_OK) {
                /* Whatever decoded must re-encode. */
                void *again;
                size_t again_len;
                rv = bl_cmd_encode(&out, &again, &again_len);
                REQUIRE(rv == BL_OK, "re-encoding a decoded command gave %d", rv);
                free(again);
            }
        }
        free(m);
        free(enc);
    }
}
END_TEST

static Suite *command_suite(void)
{
    Suite *s = suite_create("command");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_put_round_trip);
    tcase_add_test(tc, test_put_big);
    tcase_add_test(tc, test_delete_round_trip);
    tcase_add_test(tc, test_member_set_round_trip);
    tcase_add_test(tc, test_encode_rejects);
    tcase_add_test(tc, test_decode_wrong_field_types);
    tcase_add_test(tc, test_decode_wrong_head);
    tcase_add_test(tc, test_decode_padding);
    tcase_add_test(tc, test_decode_wide_forms);
    tcase_add_test(tc, test_decode_garbage);
    tcase_add_test(tc, test_batch_round_trip);
    tcase_add_test(tc, test_batch_decode_rejects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(command_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
