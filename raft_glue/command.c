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
        return 5;
    case BL_CMD_DELETE:
        return 3;
    case BL_CMD_DELETE_RANGE:
        return 2;
    case BL_CMD_MEMBER_SET:
        return 5;
    default:
        return -1;
    }
}

/* ---- encoding --------------------------------------------------------- */

/* Write the whole command; @cmd has been checked. */
static void put_cmd(struct bl_mpw *w, const struct bl_cmd *cmd)
{
    bl_mpw_array(w, (uint32_t)(HEAD_FIELDS + type_fields((uint64_t)cmd->type)));
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
    }
}

/* A slice is usable if its length is within [min, max] and it has bytes
 * when it claims to. */
static bool slice_ok(struct bl_slice s, size_t min, size_t max)
{
    return s.len >= min && s.len <= max && (s.len == 0 || s.p != NULL);
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
    w.cap = cmd->request_id.len + cmd->key.len + cmd->value.len + cmd->name.len +
            cmd->peer_url.len + cmd->client_url.len + 96;
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
    /* MEMBER_SET had no flags before version 0.2: accept both forms. */
    bool old_member_set =
        type == BL_CMD_MEMBER_SET && count == (uint64_t)(HEAD_FIELDS + fields - 1);
    if (count != (uint64_t)(HEAD_FIELDS + fields) && !old_member_set) {
        return fail(&r, "command type %" PRIu64 " has %" PRIu64 " elements, expected %d", type,
                    count, HEAD_FIELDS + fields);
    }
    cmd->type = (int)type;
    rv = get_bin(&r, "request_id", 1, BL_CMD_REQUEST_ID_MAX, &cmd->request_id);
    if (rv != 0) {
        return rv;
    }
    if (cmd->type == BL_CMD_MEMBER_SET) {
        rv = get_member_fields(&r, cmd, !old_member_set);
    } else {
        rv = get_kv_fields(&r, cmd);
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
