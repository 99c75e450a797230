/* Request documents: JSON or msgpack bodies decoded into jansson values.
 *
 * JSON goes straight to jansson (any top-level value, duplicate keys
 * refused, its end-of-input check refusing trailing bytes), then one walk
 * checks the nesting depth, which jansson itself allows to 2048.
 *
 * msgpack takes two passes. The first walks the bytes without allocating:
 * it checks every type byte and length against what is left of the body,
 * keeps a count of the elements still owed by the open containers (each
 * needs at least one byte, so a container that claims more than the body
 * can hold is refused before msgpack-c would allocate room for it), tracks
 * the nesting depth, and refuses ext types and trailing bytes. Only then
 * does msgpack_unpack() build the object tree in a zone, and a recursive
 * conversion (bounded by the depth checked first) makes the jansson value:
 * string keys only, strings checked as UTF-8 without NUL bytes, integers
 * within int64, floats finite, bin as standard base64 text (see reqdoc.h).
 *
 * Failure modes: bad input is BL_EBADREQ with a message for the client;
 * out of memory (jansson or the zone) is BL_ENOMEM. Nothing is kept. */
#include "reqdoc.h"

#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "doc.h"
#include "error.h"

#define ZONE_CHUNK 2048

/* ---- format ------------------------------------------------------------------ */

int bl_reqdoc_format(const char *content_type, size_t len)
{
    static const char *const msgpack_types[] = {"application/msgpack", "application/x-msgpack"};
    size_t start = 0, end;

    if (content_type == NULL) {
        return BL_REQDOC_JSON;
    }
    while (start < len && (content_type[start] == ' ' || content_type[start] == '\t')) {
        start++;
    }
    end = start;
    while (end < len && content_type[end] != ';') {
        end++;
    }
    while (end > start && (content_type[end - 1] == ' ' || content_type[end - 1] == '\t')) {
        end--;
    }
    for (unsigned i = 0; i < 2; i++) {
        size_t n = strlen(msgpack_types[i]);
        if (end - start == n && strncasecmp(content_type + start, msgpack_types[i], n) == 0) {
            return BL_REQDOC_MSGPACK;
        }
    }
    return BL_REQDOC_JSON;
}

/* ---- shared checks ---------------------------------------------------------------- */

static int bad(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, BL_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    return BL_EBADREQ;
}

static int oom(char *errmsg)
{
    snprintf(errmsg, BL_ERRMSG_SIZE, "out of memory decoding the request body");
    return BL_ENOMEM;
}

/* Whether @n bytes at @s are UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF) without a NUL byte. */
static bool text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i], len, cp;
        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
            return false;
        }
        i += len;
    }
    return true;
}

/* ---- JSON ------------------------------------------------------------------------- */

/* Whether @v nests at most BL_REQDOC_MAX_DEPTH containers, @v being at
 * depth @depth. Stops descending past the limit. */
static bool json_depth_ok(json_t *v, unsigned depth)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        return true;
    }
    if (depth > BL_REQDOC_MAX_DEPTH) {
        return false;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!json_depth_ok(e, depth + 1)) {
                return false;
            }
        }
    } else {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            if (!json_depth_ok(e, depth + 1)) {
                return false;
            }
        }
    }
    return true;
}

static int json_decode(const void *body, size_t len, json_t **out, char *errmsg)
{
    json_error_t err;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);

    if (v == NULL) {
        if (json_error_code(&err) == json_error_out_of_memory) {
            return oom(errmsg);
        }
        return bad(errmsg, "JSON body: %s (line %d, column %d)", err.text, err.line, err.column);
    }
    if (!json_depth_ok(v, 1)) {
        json_decref(v);
        return bad(errmsg, "JSON body nests more than %d levels", BL_REQDOC_MAX_DEPTH);
    }
    *out = v;
    return 0;
}

/* ---- msgpack: the bounds walk ------------------------------------------------------- */

/* The element kinds of the type bytes 0xc4..0xdf. */
enum { K_BYTES, K_ARRAY, K_MAP, K_EXT };

/* How each of the type bytes 0xc4..0xdf continues: bytes of its length
 * field, fixed bytes after it, and what the length counts. */
static const struct {
    unsigned char len_bytes, fixed, kind;
} MP_TYPES[28] = {
    {1, 0, K_BYTES}, {2, 0, K_BYTES}, {4, 0, K_BYTES},                  /* bin 8/16/32 */
    {1, 1, K_EXT},   {2, 1, K_EXT},   {4, 1, K_EXT},                    /* ext 8/16/32 */
    {0, 4, K_BYTES}, {0, 8, K_BYTES},                                   /* float 32/64 */
    {0, 1, K_BYTES}, {0, 2, K_BYTES}, {0, 4, K_BYTES}, {0, 8, K_BYTES}, /* uint 8..64 */
    {0, 1, K_BYTES}, {0, 2, K_BYTES}, {0, 4, K_BYTES}, {0, 8, K_BYTES}, /* int 8..64 */
    {0, 2, K_EXT},   {0, 3, K_EXT},   {0, 5, K_EXT},   {0, 9, K_EXT},   /* fixext 1..8 */
    {0, 17, K_EXT},                                                     /* fixext 16 */
    {1, 0, K_BYTES}, {2, 0, K_BYTES}, {4, 0, K_BYTES},                  /* str 8/16/32 */
    {2, 0, K_ARRAY}, {4, 0, K_ARRAY}, {2, 0, K_MAP},   {4, 0, K_MAP},   /* array, map 16/32 */
};

/* Check that the @n bytes at @p are exactly one msgpack object within the
 * limits in the file comment, without allocating. */
static int mp_walk(const uint8_t *p, size_t n, char *errmsg)
{
    uint64_t left[BL_REQDOC_MAX_DEPTH + 1]; /* elements still to read per open level */
    uint64_t owed = 1;                      /* elements still to read, all levels */
    unsigned top = 0;                       /* open containers */
    size_t i = 0;

    left[0] = 1; /* level 0: the document itself */
    for (;;) {
        unsigned t, kind = K_BYTES;
        uint64_t len = 0;

        while (left[top] == 0) {
            if (top == 0) {
                if (i != n) {
                    return bad(errmsg, "msgpack body has trailing bytes after the document (%zu)",
                               n - i);
                }
                return 0;
            }
            top--;
        }
        left[top]--;
        owed--;
        if (i >= n) {
            return bad(errmsg, "msgpack body is truncated");
        }
        t = p[i++];
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool: the type byte is all */
        } else if (t <= 0x8f) {
            len = t & 0x0f;
            kind = K_MAP;
        } else if (t <= 0x9f) {
            len = t & 0x0f;
            kind = K_ARRAY;
        } else if (t <= 0xbf) {
            len = t & 0x1f;
        } else if (t >= 0xc4) {
            unsigned lb = MP_TYPES[t - 0xc4].len_bytes;
            if (n - i < lb) {
                return bad(errmsg, "msgpack body is truncated");
            }
            for (unsigned k = 0; k < lb; k++) {
                len = (len << 8) | p[i++];
            }
            len += MP_TYPES[t - 0xc4].fixed;
            kind = MP_TYPES[t - 0xc4].kind;
        } else {
            return bad(errmsg, "msgpack body holds the unused type byte 0xc1");
        }
        if (kind == K_EXT) {
            return bad(errmsg, "msgpack ext types are not supported in request bodies");
        }
        if (kind == K_BYTES) {
            if (len > n - i) {
                return bad(errmsg, "msgpack body is truncated");
            }
            i += (size_t)len;
            continue;
        }
        /* A container at depth top + 1, owing len (array) or 2 * len (map)
         * elements of at least one byte each. */
        if (top == BL_REQDOC_MAX_DEPTH) {
            return bad(errmsg, "msgpack body nests more than %d levels", BL_REQDOC_MAX_DEPTH);
        }
        if (kind == K_MAP) {
            len *= 2;
        }
        owed += len;
        if (owed > n - i) {
            return bad(errmsg,
                       "msgpack body is truncated: its containers claim %" PRIu64
                       " more elements than bytes remain",
                       owed - (n - i));
        }
        left[++top] = len;
    }
}

/* ---- msgpack: conversion ------------------------------------------------------------ */

static int mp_to_json(const msgpack_object *o, json_t **out, char *errmsg);

static int mp_map(const msgpack_object *o, json_t **out, char *errmsg)
{
    json_t *obj = json_object();

    if (obj == NULL) {
        return oom(errmsg);
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        json_t *v;
        int rv;

        if (k->type != MSGPACK_OBJECT_STR) {
            json_decref(obj);
            return bad(errmsg, "msgpack body: map keys must be strings");
        }
        if (!text_ok(k->via.str.ptr, k->via.str.size)) {
            json_decref(obj);
            return bad(errmsg, "msgpack body: a map key is not UTF-8 text without NUL bytes");
        }
        if (json_object_getn(obj, k->via.str.ptr, k->via.str.size) != NULL) {
            json_decref(obj);
            return bad(errmsg, "msgpack body: duplicate key \"%.*s\"", (int)k->via.str.size,
                       k->via.str.ptr);
        }
        rv = mp_to_json(&o->via.map.ptr[i].val, &v, errmsg);
        if (rv != 0) {
            json_decref(obj);
            return rv;
        }
        if (json_object_setn_new_nocheck(obj, k->via.str.ptr, k->via.str.size, v) != 0) {
            json_decref(obj);
            return oom(errmsg);
        }
    }
    *out = obj;
    return 0;
}

static int mp_array(const msgpack_object *o, json_t **out, char *errmsg)
{
    json_t *arr = json_array();

    if (arr == NULL) {
        return oom(errmsg);
    }
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        json_t *v;
        int rv = mp_to_json(&o->via.array.ptr[i], &v, errmsg);
        if (rv != 0) {
            json_decref(arr);
            return rv;
        }
        if (json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            return oom(errmsg);
        }
    }
    *out = arr;
    return 0;
}

/* A bin as a JSON string of its standard padded base64. */
static int mp_bin(const msgpack_object *o, json_t **out, char *errmsg)
{
    size_t n = o->via.bin.size;
    char *b64 = malloc((n + 2) / 3 * 4 + 1);

    if (b64 == NULL) {
        return oom(errmsg);
    }
    n = bl_base64_encode(o->via.bin.ptr, n, b64);
    *out = json_stringn_nocheck(b64, n);
    free(b64);
    return *out == NULL ? oom(errmsg) : 0;
}

/* Convert @o (already bounded by mp_walk) into a new jansson value. */
static int mp_to_json(const msgpack_object *o, json_t **out, char *errmsg)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        *out = json_null();
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        *out = json_boolean(o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) {
            return bad(errmsg,
                       "msgpack body: integer %" PRIu64 " is out of range (most is %" PRId64 ")",
                       o->via.u64, INT64_MAX);
        }
        *out = json_integer((json_int_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = json_integer((json_int_t)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            return bad(errmsg, "msgpack body: floats must be finite");
        }
        *out = json_real(o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        if (!text_ok(o->via.str.ptr, o->via.str.size)) {
            return bad(
                errmsg,
                "msgpack body: a str is not UTF-8 text without NUL bytes (use bin for bytes)");
        }
        *out = json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        return mp_bin(o, out, errmsg);
    case MSGPACK_OBJECT_ARRAY:
        return mp_array(o, out, errmsg);
    case MSGPACK_OBJECT_MAP:
        return mp_map(o, out, errmsg);
    default:
        return bad(errmsg, "msgpack body: type %d is not supported", (int)o->type);
    }
    return *out == NULL ? oom(errmsg) : 0;
}

static int msgpack_decode(const void *body, size_t len, json_t **out, char *errmsg)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    int rv;

    rv = mp_walk(body, len, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (!msgpack_zone_init(&zone, ZONE_CHUNK)) {
        return oom(errmsg);
    }
    switch (msgpack_unpack(body, len, &off, &zone, &obj)) {
    case MSGPACK_UNPACK_SUCCESS:
        rv = mp_to_json(&obj, out, errmsg);
        break;
    case MSGPACK_UNPACK_EXTRA_BYTES:
        rv = bad(errmsg, "msgpack body has trailing bytes after the document (%zu)", len - off);
        break;
    case MSGPACK_UNPACK_CONTINUE:
        rv = bad(errmsg, "msgpack body is truncated");
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        rv = oom(errmsg);
        break;
    default:
        rv = bad(errmsg, "msgpack body is malformed");
        break;
    }
    msgpack_zone_destroy(&zone);
    return rv;
}

/* ---- entry points -------------------------------------------------------------------- */

int bl_reqdoc_decode(int format, const void *body, size_t len, bool want_object, json_t **out,
                     char *errmsg)
{
    json_t *v = NULL;
    int rv;

    *out = NULL;
    if (len == 0) {
        v = json_object();
        if (v == NULL) {
            return oom(errmsg);
        }
        *out = v;
        return 0;
    }
    if (format == BL_REQDOC_MSGPACK) {
        rv = msgpack_decode(body, len, &v, errmsg);
    } else {
        rv = json_decode(body, len, &v, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    if (want_object && !json_is_object(v)) {
        json_decref(v);
        return bad(errmsg, "the request body must be %s",
                   format == BL_REQDOC_MSGPACK ? "a msgpack map" : "a JSON object");
    }
    *out = v;
    return 0;
}

int bl_reqdoc_u64(json_t *obj, const char *field, bool required, uint64_t *out, char *errmsg)
{
    json_t *v;

    if (!json_is_object(obj)) {
        return bad(errmsg, "the request body must be an object");
    }
    v = json_object_get(obj, field);
    if (v == NULL || json_is_null(v)) {
        if (required) {
            return bad(errmsg, "field \"%s\" is required", field);
        }
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return bad(errmsg, "field \"%s\" must be an integer >= 0", field);
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}
