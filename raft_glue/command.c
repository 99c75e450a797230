/* The command codec: struct bl_cmd <-> one msgpack array in a Raft entry.
 *
 * Happy path. bl_cmd_encode() checks every field first, then runs the same
 * writer twice: once without a buffer to count the bytes, once into a buffer
 * of that size rounded up to a multiple of 8, whose tail is zeroed. Integers
 * take their shortest msgpack form (as msgpack-c writes them), so the bytes
 * of a command are a function of its fields alone. bl_cmd_decode() is a
 * small hand-written reader over the buffer: it reads the array header, the
 * version and the type, checks the element count the type calls for, then
 * each field, and finally that nothing but 0..7 zero bytes follows. Slices
 * point into the buffer; nothing is allocated or copied.
 *
 * Failure modes. Encoding fails with BL_EBADREQ for a field out of range
 * (unknown type, request id not 1..64 bytes, key not 1..4096 bytes, prefix
 * over 4096 bytes, cas below -1, value over 4 GiB, member name over 255 or a
 * URL not 1..255 bytes) and with BL_ENOMEM. Decoding checks every length
 * against the bytes left before it reads, so a truncated, padded-with-junk
 * or random buffer is BL_EMALFORMED with a message naming the field and
 * the offset, never a read out of bounds. The decoder accepts any msgpack
 * integer width for an integer field (a foreign encoder may use wider
 * forms) but is strict about kinds: a bin field must be bin, a str field
 * str, an unsigned field a non-negative integer. */
#include "command.h"

#include "error.h"
#include "mp.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER_NAME_MAX 255 /* bytes */
#define MEMBER_URL_MAX  255 /* bytes */

/* Elements of the array: version, type, request id, then the type's fields. */
#define HEAD_FIELDS 3

/* msgpack type bytes used here. */
#define MP_FIXARRAY 0x90
#define MP_FIXSTR   0xa0
#define MP_BIN8     0xc4
#define MP_BIN16    0xc5
#define MP_BIN32    0xc6
#define MP_UINT8    0xcc
#define MP_UINT16   0xcd
#define MP_UINT32   0xce
#define MP_UINT64   0xcf
#define MP_INT8     0xd0
#define MP_INT16    0xd1
#define MP_INT32    0xd2
#define MP_INT64    0xd3
#define MP_STR8     0xd9
#define MP_STR16    0xda
#define MP_STR32    0xdb
#define MP_ARRAY16  0xdc
#define MP_ARRAY32  0xdd

/* Number of fields after the head for @type, or -1 for an unknown type. */
static int type_fields(uint64_t type)
{
    switch (type) {
    case BL_CMD_PUT:
        return 6; /* 5 when ttl is 0 (the form of 0.2) */
    case BL_CMD_DELETE:
        return 3;
    case BL_CMD_DELETE_RANGE:
        return 2;
    case BL_CMD_MEMBER_SET:
        return 5;
    case BL_CMD_TXN:
        return 4;
    case BL_CMD_LEASE_GRANT:
        return 3;
    case BL_CMD_LEASE_REVOKE:
        return 2;
    default:
        return -1;
    }
}

/* ---- encoding --------------------------------------------------------- */

static void put_ops(struct bl_mpw *w, const struct bl_txn_op *ops, uint32_t n)
{
    bl_mpw_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        bl_mpw_array(w, 6);
        bl_mpw_uint(w, (uint64_t)ops[i].type);
        bl_mpw_bin(w, ops[i].key.p, ops[i].key.len);
        bl_mpw_bin(w, ops[i].value.p, ops[i].value.len);
        bl_mpw_uint(w, ops[i].lease);
        bl_mpw_uint(w, ops[i].flags);
        bl_mpw_uint(w, ops[i].limit);
    }
}

static void put_txn(struct bl_mpw *w, const struct bl_txn_req *t)
{
    bl_mpw_array(w, t->n_compares);
    for (uint32_t i = 0; i < t->n_compares; i++) {
        const struct bl_compare *c = &t->compares[i];
        bl_mpw_array(w, 5);
        bl_mpw_bin(w, c->key.p, c->key.len);
        bl_mpw_uint(w, (uint64_t)c->target);
        bl_mpw_uint(w, (uint64_t)c->op);
        bl_mpw_bin(w, c->value.p, c->value.len);
        bl_mpw_int(w, c->number);
    }
    put_ops(w, t->success, t->n_success);
    put_ops(w, t->failure, t->n_failure);
}

/* Write the whole command; @cmd has been checked. */
static void put_cmd(struct bl_mpw *w, const struct bl_cmd *cmd)
{
    int fields = type_fields((uint64_t)cmd->type);
    if (cmd->type == BL_CMD_PUT && cmd->ttl == 0) {
        fields--; /* the form of 0.2, still the shortest */
    }
    bl_mpw_array(w, (uint32_t)(HEAD_FIELDS + fields));
    bl_mpw_uint(w, BL_CMD_VERSION);
    bl_mpw_uint(w, (uint64_t)cmd->type);
    bl_mpw_bin(w, cmd->request_id.p, cmd->request_id.len);
    switch (cmd->type) {
    case BL_CMD_PUT:
        bl_mpw_bin(w, cmd->key.p, cmd->key.len);
        bl_mpw_bin(w, cmd->value.p, cmd->value.len);
        bl_mpw_int(w, cmd->cas);
        bl_mpw_uint(w, cmd->lease);
        bl_mpw_uint(w, cmd->flags);
        if (cmd->ttl != 0) {
            bl_mpw_uint(w, cmd->ttl);
        }
        break;
    case BL_CMD_DELETE:
        bl_mpw_bin(w, cmd->key.p, cmd->key.len);
        bl_mpw_int(w, cmd->cas);
        bl_mpw_uint(w, cmd->flags);
        break;
    case BL_CMD_DELETE_RANGE:
        bl_mpw_bin(w, cmd->key.p, cmd->key.len);
        bl_mpw_uint(w, cmd->flags);
        break;
    case BL_CMD_MEMBER_SET:
        bl_mpw_uint(w, cmd->member_id);
        bl_mpw_str(w, cmd->name.p, cmd->name.len);
        bl_mpw_str(w, cmd->peer_url.p, cmd->peer_url.len);
        bl_mpw_str(w, cmd->client_url.p, cmd->client_url.len);
        bl_mpw_uint(w, cmd->flags);
        break;
    case BL_CMD_TXN:
        if (cmd->txn != NULL) {
            put_txn(w, cmd->txn);
        } else {
            bl_mpw_raw(w, cmd->txn_body.p, cmd->txn_body.len); /* a decoded command */
        }
        bl_mpw_uint(w, cmd->flags);
        break;
    case BL_CMD_LEASE_GRANT:
        bl_mpw_uint(w, cmd->lease);
        bl_mpw_uint(w, cmd->ttl);
        bl_mpw_uint(w, cmd->flags);
        break;
    case BL_CMD_LEASE_REVOKE:
        bl_mpw_uint(w, cmd->lease);
        bl_mpw_uint(w, cmd->flags);
        break;
    }
}

/* A slice is usable if its length is within [min, max] and it has bytes
 * when it claims to. */
static bool slice_ok(struct bl_slice s, size_t min, size_t max)
{
    return s.len >= min && s.len <= max && (s.len == 0 || s.p != NULL);
}

static bool ops_ok(const struct bl_txn_op *ops, uint32_t n)
{
    if (n > BL_TXN_MAX_OPS || (n > 0 && ops == NULL)) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_txn_op *o = &ops[i];
        bool prefix = (o->flags & BL_OP_F_PREFIX) != 0;
        if (o->type < BL_OP_PUT || o->type > BL_OP_GET ||
            !slice_ok(o->key, prefix ? 0 : 1, BL_KEY_MAX) || !slice_ok(o->value, 0, UINT32_MAX) ||
            (o->type == BL_OP_PUT && prefix)) {
            return false;
        }
    }
    return true;
}

static bool txn_ok(const struct bl_txn_req *t)
{
    if (t == NULL || t->n_compares > BL_TXN_MAX_OPS || (t->n_compares > 0 && t->compares == NULL)) {
        return false;
    }
    for (uint32_t i = 0; i < t->n_compares; i++) {
        const struct bl_compare *c = &t->compares[i];
        if (!slice_ok(c->key, 1, BL_KEY_MAX) || !slice_ok(c->value, 0, UINT32_MAX) ||
            c->target < BL_CMP_VALUE || c->target > BL_CMP_LEASE || c->op < BL_CMP_EQ ||
            c->op > BL_CMP_GT) {
            return false;
        }
    }
    return ops_ok(t->success, t->n_success) && ops_ok(t->failure, t->n_failure);
}

/* Bytes of the variable fields of a txn, for the encoder's first guess. */
static size_t txn_bytes(const struct bl_txn_req *t)
{
    size_t n = 0;
    for (uint32_t i = 0; i < t->n_compares; i++) {
        n += t->compares[i].key.len + t->compares[i].value.len + 32;
    }
    for (uint32_t i = 0; i < t->n_success; i++) {
        n += t->success[i].key.len + t->success[i].value.len + 48;
    }
    for (uint32_t i = 0; i < t->n_failure; i++) {
        n += t->failure[i].key.len + t->failure[i].value.len + 48;
    }
    return n;
}

static bool cmd_ok(const struct bl_cmd *cmd)
{
    if (!slice_ok(cmd->request_id, 1, BL_CMD_REQUEST_ID_MAX)) {
        return false;
    }
    switch (cmd->type) {
    case BL_CMD_PUT:
        return slice_ok(cmd->key, 1, BL_KEY_MAX) && slice_ok(cmd->value, 0, UINT32_MAX) &&
               cmd->cas >= BL_CAS_NONE;
    case BL_CMD_DELETE:
        return slice_ok(cmd->key, 1, BL_KEY_MAX) && cmd->cas >= BL_CAS_NONE;
    case BL_CMD_DELETE_RANGE:
        return slice_ok(cmd->key, 0, BL_KEY_MAX);
    case BL_CMD_MEMBER_SET:
        return slice_ok(cmd->name, 0, MEMBER_NAME_MAX) &&
               slice_ok(cmd->peer_url, 1, MEMBER_URL_MAX) &&
               slice_ok(cmd->client_url, 1, MEMBER_URL_MAX);
    case BL_CMD_TXN:
        /* a decoded command's body was checked by the decoder */
        return cmd->txn != NULL ? txn_ok(cmd->txn) : slice_ok(cmd->txn_body, 3, UINT32_MAX);
    case BL_CMD_LEASE_GRANT:
        return cmd->lease != 0 && cmd->ttl != 0;
    case BL_CMD_LEASE_REVOKE:
        return cmd->lease != 0;
    default:
        return false;
    }
}

int bl_cmd_encode(const struct bl_cmd *cmd, void **out, size_t *len)
{
    static const uint8_t zeros[8] = {0};
    struct bl_mpw w = {0};

    if (!cmd_ok(cmd)) {
        return BL_EBADREQ;
    }
    /* One allocation: every field's bytes plus headers and padding. */
    w.cap =
        cmd->request_id.len + cmd->key.len + cmd->value.len + cmd->name.len + cmd->peer_url.len +
        cmd->client_url.len + 96 +
        (cmd->type == BL_CMD_TXN ? cmd->txn != NULL ? txn_bytes(cmd->txn) : cmd->txn_body.len : 0);
    w.buf = malloc(w.cap);
    if (w.buf == NULL) {
        return BL_ENOMEM;
    }
    put_cmd(&w, cmd);
    /* Pad to a multiple of 8: raft 0.15 may hand back shorter entries. */
    bl_mpw_raw(&w, zeros, (8 - w.len % 8) % 8);
    if (w.error != 0) {
        free(w.buf);
        return BL_ENOMEM;
    }
    *out = w.buf;
    *len = w.len;
    return BL_OK;
}

/* ---- decoding --------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t len;
    size_t off; /* always <= len */
    char *errmsg;
};

static int fail(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct reader *r, const char *fmt, ...)
{
    if (r->errmsg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, BL_ERRMSG_SIZE, fmt, ap);
        va_end(ap);
    }
    return BL_EMALFORMED;
}

static int truncated(struct reader *r, const char *what)
{
    return fail(r, "%s: truncated at offset %zu of %zu", what, r->off, r->len);
}

/* Read @width bytes as a big-endian integer. */
static int get_be(struct reader *r, const char *what, unsigned width, uint64_t *v)
{
    if (r->len - r->off < width) {
        return truncated(r, what);
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < width; i++) {
        x = (x << 8) | r->p[r->off + i];
    }
    r->off += width;
    *v = x;
    return BL_OK;
}

static int get_tag(struct reader *r, const char *what, uint8_t *tag)
{
    if (r->off >= r->len) {
        return truncated(r, what);
    }
    *tag = r->p[r->off++];
    return BL_OK;
}

/* Read any msgpack integer. *@neg tells whether it is negative; the value is
 * *@u when not, (int64_t)*@u when it is. */
static int get_integer(struct reader *r, const char *what, bool *neg, uint64_t *u)
{
    size_t at = r->off;
    uint8_t tag = 0;
    uint64_t v = 0;
    int rv = get_tag(r, what, &tag);
    if (rv != 0) {
        return rv;
    }
    *neg = false;
    if (tag <= 0x7f) {
        *u = tag;
        return BL_OK;
    }
    if (tag >= 0xe0) {
        *neg = true;
        *u = (uint64_t)(int64_t)(int8_t)tag;
        return BL_OK;
    }
    switch (tag) {
    case MP_UINT8:
    case MP_UINT16:
    case MP_UINT32:
    case MP_UINT64:
        return get_be(r, what, 1u << (tag - MP_UINT8), u);
    case MP_INT8:
    case MP_INT16:
    case MP_INT32:
    case MP_INT64: {
        unsigned width = 1u << (tag - MP_INT8);
        rv = get_be(r, what, width, &v);
        if (rv != 0) {
            return rv;
        }
        /* Sign-extend from the top bit of the field. */
        if (width < 8 && (v >> (8 * width - 1)) != 0) {
            v |= ~(uint64_t)0 << (8 * width);
        }
        *neg = (v >> 63) != 0;
        *u = v;
        return BL_OK;
    }
    default:
        return fail(r, "%s: expected an integer, found type byte 0x%02x at offset %zu", what, tag,
                    at);
    }
}

static int get_uint(struct reader *r, const char *what, uint64_t *v)
{
    size_t at = r->off;
    bool neg = false;
    int rv = get_integer(r, what, &neg, v);
    if (rv == 0 && neg) {
        return fail(r, "%s: negative value %" PRId64 " at offset %zu", what, (int64_t)*v, at);
    }
    return rv;
}

static int get_int(struct reader *r, const char *what, int64_t *v)
{
    size_t at = r->off;
    bool neg = false;
    uint64_t u = 0;
    int rv = get_integer(r, what, &neg, &u);
    if (rv != 0) {
        return rv;
    }
    if (!neg && u > INT64_MAX) {
        return fail(r, "%s: %" PRIu64 " at offset %zu is out of range", what, u, at);
    }
    *v = (int64_t)u;
    return BL_OK;
}

/* Read a bin (@want_str false) or str (@want_str true) of @min..@max bytes. */
static int get_blob(struct reader *r, const char *what, bool want_str, size_t min, size_t max,
                    struct bl_slice *out)
{
    size_t at = r->off;
    uint8_t tag = 0;
    uint64_t n = 0;
    int rv = get_tag(r, what, &tag);
    if (rv != 0) {
        return rv;
    }
    if (want_str && tag >= MP_FIXSTR && tag <= MP_FIXSTR + 31) {
        n = tag & 0x1f;
    } else if (want_str && tag >= MP_STR8 && tag <= MP_STR32) {
        rv = get_be(r, what, 1u << (tag - MP_STR8), &n);
    } else if (!want_str && tag >= MP_BIN8 && tag <= MP_BIN32) {
        rv = get_be(r, what, 1u << (tag - MP_BIN8), &n);
    } else {
        return fail(r, "%s: expected %s, found type byte 0x%02x at offset %zu", what,
                    want_str ? "str" : "bin", tag, at);
    }
    if (rv != 0) {
        return rv;
    }
    if (n < min || n > max) {
        return fail(r, "%s: length %" PRIu64 " at offset %zu is not in %zu..%zu", what, n, at, min,
                    max);
    }
    if (r->len - r->off < n) {
        return truncated(r, what);
    }
    out->p = r->p + r->off;
    out->len = (size_t)n;
    r->off += (size_t)n;
    return BL_OK;
}

static int get_bin(struct reader *r, const char *what, size_t min, size_t max, struct bl_slice *out)
{
    return get_blob(r, what, false, min, max, out);
}

static int get_str(struct reader *r, const char *what, size_t min, size_t max, struct bl_slice *out)
{
    return get_blob(r, what, true, min, max, out);
}

static int get_array(struct reader *r, uint64_t *count)
{
    uint8_t tag = 0;
    int rv = get_tag(r, "array", &tag);
    if (rv != 0) {
        return rv;
    }
    if (tag >= MP_FIXARRAY && tag <= MP_FIXARRAY + 15) {
        *count = tag & 0x0f;
        return BL_OK;
    }
    if (tag == MP_ARRAY16 || tag == MP_ARRAY32) {
        return get_be(r, "array", tag == MP_ARRAY16 ? 2 : 4, count);
    }
    return fail(r, "expected an array, found type byte 0x%02x", tag);
}

static int get_cas(struct reader *r, int64_t *cas)
{
    size_t at = r->off;
    int rv = get_int(r, "cas", cas);
    if (rv == 0 && *cas < BL_CAS_NONE) {
        return fail(r, "cas: %" PRId64 " at offset %zu is below -1", *cas, at);
    }
    return rv;
}

/* Read the fields of a PUT, DELETE or DELETE_RANGE (@cmd->type is one). */
static int get_kv_fields(struct reader *r, struct bl_cmd *cmd)
{
    int rv;
    if (cmd->type == BL_CMD_DELETE_RANGE) {
        rv = get_bin(r, "prefix", 0, BL_KEY_MAX, &cmd->key);
    } else {
        rv = get_bin(r, "key", 1, BL_KEY_MAX, &cmd->key);
    }
    if (rv != 0) {
        return rv;
    }
    if (cmd->type == BL_CMD_PUT) {
        rv = get_bin(r, "value", 0, SIZE_MAX, &cmd->value);
        if (rv != 0) {
            return rv;
        }
    }
    if (cmd->type != BL_CMD_DELETE_RANGE) {
        rv = get_cas(r, &cmd->cas);
        if (rv != 0) {
            return rv;
        }
    }
    if (cmd->type == BL_CMD_PUT) {
        rv = get_uint(r, "lease", &cmd->lease);
        if (rv != 0) {
            return rv;
        }
    }
    return get_uint(r, "flags", &cmd->flags);
}

static int get_member_fields(struct reader *r, struct bl_cmd *cmd, bool with_flags)
{
    int rv = get_uint(r, "member_id", &cmd->member_id);
    if (rv != 0) {
        return rv;
    }
    rv = get_str(r, "name", 0, MEMBER_NAME_MAX, &cmd->name);
    if (rv != 0) {
        return rv;
    }
    rv = get_str(r, "peer_url", 1, MEMBER_URL_MAX, &cmd->peer_url);
    if (rv != 0) {
        return rv;
    }
    rv = get_str(r, "client_url", 1, MEMBER_URL_MAX, &cmd->client_url);
    if (rv != 0 || !with_flags) {
        return rv;
    }
    return get_uint(r, "flags", &cmd->flags);
}

/* Read one compare of a txn body. bl_cmd_decode() reads (and so checks)
 * the whole body once without keeping it; bl_txn_decode() reads it again
 * into the caller's arrays. */
static int get_compare(struct reader *r, struct bl_compare *c)
{
    uint64_t n = 0, target = 0, op = 0;
    int rv = get_array(r, &n);
    if (rv == 0 && n != 5) {
        rv = fail(r, "compare of %" PRIu64 " elements, expected 5", n);
    }
    if (rv == 0) {
        rv = get_bin(r, "compare key", 1, BL_KEY_MAX, &c->key);
    }
    if (rv == 0) {
        rv = get_uint(r, "compare target", &target);
    }
    if (rv == 0) {
        rv = get_uint(r, "compare op", &op);
    }
    if (rv == 0) {
        rv = get_bin(r, "compare value", 0, SIZE_MAX, &c->value);
    }
    if (rv == 0) {
        rv = get_int(r, "compare number", &c->number);
    }
    if (rv == 0 &&
        (target < BL_CMP_VALUE || target > BL_CMP_LEASE || op < BL_CMP_EQ || op > BL_CMP_GT)) {
        rv = fail(r, "compare target %" PRIu64 " / op %" PRIu64 " unknown", target, op);
    }
    c->target = (int)target;
    c->op = (int)op;
    return rv;
}

static int get_op(struct reader *r, struct bl_txn_op *o)
{
    uint64_t n = 0, type = 0;
    int rv = get_array(r, &n);
    if (rv == 0 && n != 6) {
        rv = fail(r, "txn op of %" PRIu64 " elements, expected 6", n);
    }
    if (rv == 0) {
        rv = get_uint(r, "op type", &type);
    }
    if (rv == 0) {
        rv = get_bin(r, "op key", 0, BL_KEY_MAX, &o->key);
    }
    if (rv == 0) {
        rv = get_bin(r, "op value", 0, SIZE_MAX, &o->value);
    }
    if (rv == 0) {
        rv = get_uint(r, "op lease", &o->lease);
    }
    if (rv == 0) {
        rv = get_uint(r, "op flags", &o->flags);
    }
    if (rv == 0) {
        rv = get_uint(r, "op limit", &o->limit);
    }
    if (rv == 0 && (type < BL_OP_PUT || type > BL_OP_GET)) {
        rv = fail(r, "txn op type %" PRIu64 " unknown", type);
    }
    if (rv == 0 && o->key.len == 0 && !(o->flags & BL_OP_F_PREFIX)) {
        rv = fail(r, "txn op with an empty key and no prefix flag");
    }
    o->type = (int)type;
    return rv;
}

static int get_ops(struct reader *r, struct bl_txn_op *ops, uint32_t *n)
{
    uint64_t count = 0;
    struct bl_txn_op scratch;
    int rv = get_array(r, &count);
    if (rv == 0 && count > BL_TXN_MAX_OPS) {
        rv = fail(r, "txn branch of %" PRIu64 " ops (at most %d)", count, BL_TXN_MAX_OPS);
    }
    for (uint64_t i = 0; rv == 0 && i < count; i++) {
        rv = get_op(r, ops != NULL ? &ops[i] : &scratch);
    }
    if (n != NULL) {
        *n = (uint32_t)count;
    }
    return rv;
}

/* Read (and check) the txn lists; with @out NULL only check them. */
static int get_txn(struct reader *r, struct bl_txn_req *out)
{
    uint64_t count = 0;
    struct bl_compare scratch;
    int rv = get_array(r, &count);
    if (rv == 0 && count > BL_TXN_MAX_OPS) {
        rv = fail(r, "txn with %" PRIu64 " compares (at most %d)", count, BL_TXN_MAX_OPS);
    }
    for (uint64_t i = 0; rv == 0 && i < count; i++) {
        rv = get_compare(r, out != NULL ? &out->compares[i] : &scratch);
    }
    if (out != NULL) {
        out->n_compares = (uint32_t)count;
    }
    if (rv == 0) {
        rv = get_ops(r, out != NULL ? out->success : NULL, out != NULL ? &out->n_success : NULL);
    }
    if (rv == 0) {
        rv = get_ops(r, out != NULL ? out->failure : NULL, out != NULL ? &out->n_failure : NULL);
    }
    return rv;
}

int bl_txn_decode(const struct bl_cmd *cmd, struct bl_txn_req *out, char *errmsg)
{
    struct reader r = {cmd->txn_body.p, cmd->txn_body.len, 0, errmsg};
    if (cmd->type != BL_CMD_TXN) {
        return fail(&r, "not a txn command");
    }
    int rv = get_txn(&r, out);
    if (rv == 0 && r.off != r.len) {
        rv = fail(&r, "%zu bytes after the txn body", r.len - r.off);
    }
    return rv;
}

int bl_cmd_decode(const void *buf, size_t len, struct bl_cmd *cmd, char *errmsg)
{
    struct reader r = {buf, len, 0, errmsg};
    uint64_t count = 0, version = 0, type = 0;
    int rv;

    memset(cmd, 0, sizeof *cmd);
    cmd->cas = BL_CAS_NONE;
    if (buf == NULL && len > 0) {
        return fail(&r, "no buffer");
    }
    rv = get_array(&r, &count);
    if (rv != 0) {
        return rv;
    }
    if (count < HEAD_FIELDS) {
        return fail(&r, "array of %" PRIu64 " elements, expected at least %d", count, HEAD_FIELDS);
    }
    rv = get_uint(&r, "version", &version);
    if (rv != 0) {
        return rv;
    }
    if (version != BL_CMD_VERSION) {
        return fail(&r, "unsupported version %" PRIu64 " (expected %d)", version, BL_CMD_VERSION);
    }
    rv = get_uint(&r, "type", &type);
    if (rv != 0) {
        return rv;
    }
    int fields = type_fields(type);
    if (fields < 0) {
        return fail(&r, "unknown command type %" PRIu64, type);
    }
    /* MEMBER_SET had no flags before version 0.2, PUT no ttl before 0.3:
     * accept both forms. */
    bool old_member_set =
        type == BL_CMD_MEMBER_SET && count == (uint64_t)(HEAD_FIELDS + fields - 1);
    bool short_put = type == BL_CMD_PUT && count == (uint64_t)(HEAD_FIELDS + fields - 1);
    if (count != (uint64_t)(HEAD_FIELDS + fields) && !old_member_set && !short_put) {
        return fail(&r, "command type %" PRIu64 " has %" PRIu64 " elements, expected %d", type,
                    count, HEAD_FIELDS + fields);
    }
    cmd->type = (int)type;
    rv = get_bin(&r, "request_id", 1, BL_CMD_REQUEST_ID_MAX, &cmd->request_id);
    if (rv != 0) {
        return rv;
    }
    switch (cmd->type) {
    case BL_CMD_MEMBER_SET:
        rv = get_member_fields(&r, cmd, !old_member_set);
        break;
    case BL_CMD_TXN: {
        size_t start = r.off;
        rv = get_txn(&r, NULL);
        cmd->txn_body.p = r.p + start;
        cmd->txn_body.len = r.off - start;
        if (rv == 0) {
            rv = get_uint(&r, "flags", &cmd->flags);
        }
        break;
    }
    case BL_CMD_LEASE_GRANT:
        rv = get_uint(&r, "lease", &cmd->lease);
        if (rv == 0) {
            rv = get_uint(&r, "ttl", &cmd->ttl);
        }
        if (rv == 0) {
            rv = get_uint(&r, "flags", &cmd->flags);
        }
        if (rv == 0 && (cmd->lease == 0 || cmd->ttl == 0)) {
            rv = fail(&r, "lease grant with lease id or ttl 0");
        }
        break;
    case BL_CMD_LEASE_REVOKE:
        rv = get_uint(&r, "lease", &cmd->lease);
        if (rv == 0) {
            rv = get_uint(&r, "flags", &cmd->flags);
        }
        if (rv == 0 && cmd->lease == 0) {
            rv = fail(&r, "lease revoke of lease id 0");
        }
        break;
    default:
        rv = get_kv_fields(&r, cmd);
        if (rv == 0 && cmd->type == BL_CMD_PUT && !short_put) {
            rv = get_uint(&r, "ttl", &cmd->ttl);
        }
        break;
    }
    if (rv != 0) {
        return rv;
    }
    if (len - r.off > 7) {
        return fail(&r, "%zu bytes after the command (at most 7 bytes of padding)", len - r.off);
    }
    for (size_t i = r.off; i < len; i++) {
        if (r.p[i] != 0) {
            return fail(&r, "non-zero padding byte 0x%02x at offset %zu", r.p[i], i);
        }
    }
    return BL_OK;
}

/* ---- batches ---------------------------------------------------------- */

int bl_batch_encode(const struct bl_slice *cmds, uint32_t n, void **out, size_t *len)
{
    static const uint8_t zeros[8] = {0};
    struct bl_mpw w = {0};

    if (n < 1 || n > BL_BATCH_MAX) {
        return BL_EBADREQ;
    }
    w.cap = 16;
    for (uint32_t k = 0; k < n; k++) {
        w.cap += cmds[k].len + 5;
    }
    w.buf = malloc(w.cap + 8);
    if (w.buf == NULL) {
        return BL_ENOMEM;
    }
    w.cap += 8;
    bl_mpw_array(&w, 3 + n);
    bl_mpw_uint(&w, BL_CMD_VERSION);
    bl_mpw_uint(&w, BL_CMD_BATCH);
    bl_mpw_uint(&w, n);
    for (uint32_t k = 0; k < n; k++) {
        bl_mpw_bin(&w, cmds[k].p, cmds[k].len);
    }
    bl_mpw_raw(&w, zeros, (8 - w.len % 8) % 8);
    if (w.error != 0) {
        free(w.buf);
        return BL_ENOMEM;
    }
    *out = w.buf;
    *len = w.len;
    return BL_OK;
}

bool bl_cmd_is_batch(const void *buf, size_t len)
{
    struct reader r = {buf, len, 0, NULL};
    uint64_t count = 0, version = 0, type = 0;
    return buf != NULL && get_array(&r, &count) == 0 && count >= 3 &&
           get_uint(&r, "version", &version) == 0 && version == BL_CMD_VERSION &&
           get_uint(&r, "type", &type) == 0 && type == BL_CMD_BATCH;
}

int bl_batch_decode(const void *buf, size_t len, struct bl_slice *cmds, uint32_t *n, char *errmsg)
{
    struct reader r = {buf, len, 0, errmsg};
    uint64_t count = 0, version = 0, type = 0, m = 0;
    int rv;

    if (buf == NULL) {
        return fail(&r, "no buffer");
    }
    rv = get_array(&r, &count);
    if (rv == 0) {
        rv = get_uint(&r, "version", &version);
    }
    if (rv == 0) {
        rv = get_uint(&r, "type", &type);
    }
    if (rv == 0) {
        rv = get_uint(&r, "count", &m);
    }
    if (rv != 0) {
        return rv;
    }
    if (version != BL_CMD_VERSION || type != BL_CMD_BATCH) {
        return fail(&r, "not a batch (version %" PRIu64 ", type %" PRIu64 ")", version, type);
    }
    if (m < 1 || m > BL_BATCH_MAX || count != 3 + m) {
        return fail(&r, "batch of %" PRIu64 " commands in an array of %" PRIu64, m, count);
    }
    for (uint32_t k = 0; k < (uint32_t)m; k++) {
        rv = get_bin(&r, "batched command", 1, SIZE_MAX, &cmds[k]);
        if (rv != 0) {
            return rv;
        }
    }
    if (len - r.off > 7) {
        return fail(&r, "%zu bytes after the batch (at most 7 bytes of padding)", len - r.off);
    }
    for (size_t i = r.off; i < len; i++) {
        if (r.p[i] != 0) {
            return fail(&r, "non-zero padding byte 0x%02x at offset %zu", r.p[i], i);
        }
    }
    *n = (uint32_t)m;
    return BL_OK;
}
