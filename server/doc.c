/* The document writer: one description of a reply, rendered as JSON or msgpack.
 *
 * Happy path: a handler calls bl_doc_map(d, 2), bl_doc_key(d, "revision"),
 * bl_doc_uint(d, 7), ... and every call appends its encoding to d->buf at
 * once. msgpack is written by hand in the smallest encoding msgpack-c itself
 * would choose (fixint before uint8, fixstr before str8, fixmap before map16,
 * and so on), so the bytes match what msgpack_pack_* would produce. JSON has
 * no element counts, so the writer keeps a small stack of open containers:
 * each level knows how many elements are still due, whether the next item of
 * a map is a key, and whether a comma is needed. When the last element of a
 * container has been written the closing bracket follows at once, and that
 * may close the parent as well; there is no explicit "end" call.
 *
 * Failure modes:
 * - Out of memory: the first failed allocation sets d->error to BL_ENOMEM and
 *   every later call does nothing, so a handler checks bl_doc_error() once at
 *   the end. A string or byte string over 4 GiB (msgpack's limit) is
 *   BL_ETOOLARGE, sticky in the same way.
 * - Wrong counts are programmer errors: a value where a key is due, a key
 *   where a value is due or with no map open (which is how one element too
 *   many shows up, as a full container has already closed), nesting deeper
 *   than BL_DOC_MAX_DEPTH, or bl_doc_data() on an unfinished document. They
 *   assert() in debug builds; with NDEBUG the document is marked BL_EINTERNAL
 *   instead of going out malformed. Values after a finished top-level value
 *   are simply the next document (a msgpack or NDJSON stream).
 * - JSON strings are expected to be UTF-8. They are checked as they are
 *   escaped: an invalid byte (a stray continuation byte, an overlong form, a
 *   surrogate, a code point past U+10FFFF, a truncated sequence) is written
 *   as \ufffd, so the output is always valid JSON. Control characters are
 *   escaped per RFC 8259; valid multi-byte sequences pass through unchanged.
 *
 * Ownership: the writer owns d->buf; bl_doc_data() points into it until the
 * next write, bl_doc_reset() or bl_doc_free(). The base64 helpers write into
 * caller memory and allocate nothing. */
#include "doc.h"

#include "fmt.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store.h" /* struct bl_kv */

#define DOC_MIN_CAP 256

static const char B64_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void bl_doc_init(struct bl_doc *d, int format)
{
    memset(d, 0, sizeof *d);
    d->format = format;
}

void bl_doc_reset(struct bl_doc *d, int format)
{
    d->format = format;
    d->len = 0;
    d->error = 0;
    d->depth = 0;
}

void bl_doc_free(struct bl_doc *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = 0;
    d->cap = 0;
    d->depth = 0;
}

int bl_doc_error(const struct bl_doc *d)
{
    return d->error;
}

const char *bl_doc_data(const struct bl_doc *d, size_t *len)
{
    /* A document that still waits for elements is a programmer error. */
    assert(d->error != 0 || d->depth == 0);
    *len = d->len;
    return d->buf != NULL ? d->buf : "";
}

const char *bl_doc_content_type(int format)
{
    return format == BL_DOC_MSGPACK ? "application/msgpack" : "application/json";
}

/* --- the buffer ------------------------------------------------------------ */

/* Make room for @n more bytes. Returns false (with d->error set, or already
 * set) when the document cannot grow. */
static bool reserve(struct bl_doc *d, size_t n)
{
    size_t need;
    size_t cap;
    char *p;

    if (d->error != 0) {
        return false;
    }
    if (n <= d->cap - d->len) {
        return true;
    }
    if (n > SIZE_MAX - d->len) {
        d->error = BL_ENOMEM;
        return false;
    }
    need = d->len + n;
    cap = d->cap < DOC_MIN_CAP ? DOC_MIN_CAP : d->cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    p = realloc(d->buf, cap);
    if (p == NULL) {
        d->error = BL_ENOMEM;
        return false;
    }
    d->buf = p;
    d->cap = cap;
    return true;
}

/* Append without checking: the caller reserved the room. */
static void put_raw(struct bl_doc *d, const void *p, size_t n)
{
    memcpy(d->buf + d->len, p, n);
    d->len += n;
}

static void put(struct bl_doc *d, const void *p, size_t n)
{
    if (n > 0 && reserve(d, n)) {
        put_raw(d, p, n);
    }
}

static void put_byte(struct bl_doc *d, uint8_t b)
{
    if (reserve(d, 1)) {
        d->buf[d->len++] = (char)b;
    }
}

/* A type byte followed by @v big-endian in @width bytes (0, 1, 2, 4 or 8). */
static void put_tagged(struct bl_doc *d, uint8_t tag, uint64_t v, unsigned width)
{
    uint8_t b[9];

    b[0] = tag;
    for (unsigned i = 0; i < width; i++) {
        b[1 + i] = (uint8_t)(v >> (8 * (width - 1 - i)));
    }
    put(d, b, 1 + width);
}

/* --- nesting ------------------------------------------------------------- */

/* Mark a programmer error: assert in debug builds, poison the document in
 * release builds so nothing malformed goes out. */
static void misuse(struct bl_doc *d)
{
    assert(!"bl_doc: element counts or nesting do not match");
    if (d->error == 0) {
        d->error = BL_EINTERNAL;
    }
}

/* Account for one value about to be written at the current level: check
 * the counts and, in JSON, place the comma. Returns false if nothing should
 * be written. */
static bool before_value(struct bl_doc *d)
{
    if (d->error != 0) {
        return false;
    }
    if (d->depth == 0) {
        return true; /* a top-level value */
    }
    if (d->stack[d->depth - 1].is_map) {
        if (d->stack[d->depth - 1].want_key) {
            misuse(d); /* a value where a key is due, or too many pairs */
            return false;
        }
        d->stack[d->depth - 1].want_key = true;
        d->stack[d->depth - 1].remaining--;
        return true;
    }
    if (d->stack[d->depth - 1].remaining == 0) {
        misuse(d); /* more elements than declared */
        return false;
    }
    if (d->format == BL_DOC_JSON && !d->stack[d->depth - 1].first) {
        put_byte(d, ',');
    }
    d->stack[d->depth - 1].first = false;
    d->stack[d->depth - 1].remaining--;
    return true;
}

/* A value is complete: close every container that has no element left. */
static void after_value(struct bl_doc *d)
{
    while (d->depth > 0 && d->stack[d->depth - 1].remaining == 0 &&
           (!d->stack[d->depth - 1].is_map || d->stack[d->depth - 1].want_key)) {
        if (d->format == BL_DOC_JSON) {
            put_byte(d, d->stack[d->depth - 1].is_map ? '}' : ']');
        }
        d->depth--;
    }
}

static void open_container(struct bl_doc *d, uint32_t n, bool is_map)
{
    if (!before_value(d)) {
        return;
    }
    if (d->format == BL_DOC_JSON) {
        if (n == 0) {
            put(d, is_map ? "{}" : "[]", 2);
            after_value(d);
            return;
        }
        put_byte(d, is_map ? '{' : '[');
    } else if (n < 16) {
        put_byte(d, (uint8_t)((is_map ? 0x80 : 0x90) | n));
    } else if (n <= UINT16_MAX) {
        put_tagged(d, is_map ? 0xde : 0xdc, n, 2);
    } else {
        put_tagged(d, is_map ? 0xdf : 0xdd, n, 4);
    }
    if (n == 0) {
        after_value(d);
        return;
    }
    if (d->depth == BL_DOC_MAX_DEPTH) {
        misuse(d);
        return;
    }
    d->stack[d->depth].remaining = n;
    d->stack[d->depth].is_map = is_map;
    d->stack[d->depth].want_key = is_map;
    d->stack[d->depth].first = true;
    d->depth++;
}

void bl_doc_map(struct bl_doc *d, uint32_t n_pairs)
{
    open_container(d, n_pairs, true);
}

void bl_doc_array(struct bl_doc *d, uint32_t n)
{
    open_container(d, n, false);
}

/* --- JSON strings ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), or 0 if the
 * bytes there are not one (RFC 3629: no overlongs, no surrogates, nothing
 * past U+10FFFF). @s[0] is >= 0x80. */
static size_t utf8_seq_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80;
    uint8_t hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) {
            lo = 0xa0; /* no overlongs */
        } else if (c == 0xed) {
            hi = 0x9f; /* no surrogates */
        }
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) {
            lo = 0x90; /* no overlongs */
        } else if (c == 0xf4) {
            hi = 0x8f; /* nothing past U+10FFFF */
        }
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return len;
}

/* Append @s[0..@len) as a quoted, escaped JSON string. */
static void json_string(struct bl_doc *d, const char *s, size_t len)
{
    static const char HEX[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    /* Worst case is 6 output bytes per input byte, plus the quotes. */
    if (len > (SIZE_MAX - 2) / 6) {
        d->error = BL_ENOMEM;
        return;
    }
    if (!reserve(d, 6 * len + 2)) {
        return;
    }
    d->buf[d->len++] = '"';
    while (i < len) {
        uint8_t c = p[i];
        size_t run = i;

        /* Copy the longest run that needs no escaping in one go. */
        while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') {
            run++;
        }
        if (run > i) {
            put_raw(d, p + i, run - i);
            i = run;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                put_raw(d, "\\ufffd", 6);
                i++;
            } else {
                put_raw(d, p + i, n);
                i += n;
            }
            continue;
        }
        switch (c) {
        case '"':
            put_raw(d, "\\\"", 2);
            break;
        case '\\':
            put_raw(d, "\\\\", 2);
            break;
        case '\n':
            put_raw(d, "\\n", 2);
            break;
        case '\r':
            put_raw(d, "\\r", 2);
            break;
        case '\t':
            put_raw(d, "\\t", 2);
            break;
        case '\b':
            put_raw(d, "\\b", 2);
            break;
        case '\f':
            put_raw(d, "\\f", 2);
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 0xf]};
            put_raw(d, esc, 6);
            break;
        }
        }
        i++;
    }
    d->buf[d->len++] = '"';
}

/* --- scalars ------------------------------------------------------------------ */

static void msgpack_str_header(struct bl_doc *d, size_t len)
{
    if (len < 32) {
        put_byte(d, (uint8_t)(0xa0 | len));
    } else if (len <= UINT8_MAX) {
        put_tagged(d, 0xd9, len, 1);
    } else if (len <= UINT16_MAX) {
        put_tagged(d, 0xda, len, 2);
    } else {
        put_tagged(d, 0xdb, len, 4);
    }
}

static void write_str(struct bl_doc *d, const char *s, size_t len)
{
    if (d->format == BL_DOC_JSON) {
        json_string(d, s, len);
        return;
    }
    if (len > UINT32_MAX) {
        d->error = BL_ETOOLARGE;
        return;
    }
    msgpack_str_header(d, len);
    put(d, s, len);
}

void bl_doc_key(struct bl_doc *d, const char *name)
{
    if (d->error != 0) {
        return;
    }
    if (d->depth == 0 || !d->stack[d->depth - 1].is_map || !d->stack[d->depth - 1].want_key ||
        d->stack[d->depth - 1].remaining == 0) {
        misuse(d); /* a key outside a map, two keys in a row, or too many */
        return;
    }
    if (d->format == BL_DOC_JSON && !d->stack[d->depth - 1].first) {
        put_byte(d, ',');
    }
    d->stack[d->depth - 1].first = false;
    d->stack[d->depth - 1].want_key = false;
    write_str(d, name, strlen(name));
    if (d->format == BL_DOC_JSON) {
        put_byte(d, ':');
    }
}

static void write_uint(struct bl_doc *d, uint64_t v)
{
    if (d->format == BL_DOC_JSON) {
        char buf[20];
        char *p = bl_utoa(v, buf + sizeof buf);
        put(d, p, (size_t)(buf + sizeof buf - p));
    } else if (v <= 0x7f) {
        put_byte(d, (uint8_t)v);
    } else if (v <= UINT8_MAX) {
        put_tagged(d, 0xcc, v, 1);
    } else if (v <= UINT16_MAX) {
        put_tagged(d, 0xcd, v, 2);
    } else if (v <= UINT32_MAX) {
        put_tagged(d, 0xce, v, 4);
    } else {
        put_tagged(d, 0xcf, v, 8);
    }
}

void bl_doc_uint(struct bl_doc *d, uint64_t v)
{
    if (!before_value(d)) {
        return;
    }
    write_uint(d, v);
    after_value(d);
}

void bl_doc_int(struct bl_doc *d, int64_t v)
{
    if (!before_value(d)) {
        return;
    }
    if (v >= 0) {
        /* msgpack-c packs non-negative signed values as unsigned ones. */
        write_uint(d, (uint64_t)v);
    } else if (d->format == BL_DOC_JSON) {
        char buf[21];
        /* Negate in unsigned arithmetic: INT64_MIN has no positive twin. */
        char *p = bl_utoa(0 - (uint64_t)v, buf + sizeof buf);
        *--p = '-';
        put(d, p, (size_t)(buf + sizeof buf - p));
    } else if (v >= -32) {
        put_byte(d, (uint8_t)(int8_t)v); /* negative fixint */
    } else if (v >= INT8_MIN) {
        put_tagged(d, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        put_tagged(d, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        put_tagged(d, 0xd2, (uint64_t)v, 4);
    } else {
        put_tagged(d, 0xd3, (uint64_t)v, 8);
    }
    after_value(d);
}

void bl_doc_bool(struct bl_doc *d, bool v)
{
    if (!before_value(d)) {
        return;
    }
    if (d->format == BL_DOC_JSON) {
        put(d, v ? "true" : "false", v ? 4 : 5);
    } else {
        put_byte(d, v ? 0xc3 : 0xc2);
    }
    after_value(d);
}

void bl_doc_null(struct bl_doc *d)
{
    if (!before_value(d)) {
        return;
    }
    if (d->format == BL_DOC_JSON) {
        put(d, "null", 4);
    } else {
        put_byte(d, 0xc0);
    }
    after_value(d);
}

void bl_doc_str(struct bl_doc *d, const char *s, size_t len)
{
    if (!before_value(d)) {
        return;
    }
    write_str(d, s, len);
    after_value(d);
}

void bl_doc_cstr(struct bl_doc *d, const char *s)
{
    bl_doc_str(d, s, strlen(s));
}

void bl_doc_bin(struct bl_doc *d, const void *p, size_t len)
{
    if (!before_value(d)) {
        return;
    }
    if (d->format == BL_DOC_JSON) {
        size_t n;
        if (len / 3 > (SIZE_MAX - 8) / 4) {
            d->error = BL_ENOMEM;
            return;
        }
        n = 4 * ((len + 2) / 3);
        if (reserve(d, n + 2)) {
            d->buf[d->len++] = '"';
            d->len += bl_base64_encode(p, len, d->buf + d->len);
            d->buf[d->len++] = '"';
        }
    } else if (len > UINT32_MAX) {
        d->error = BL_ETOOLARGE;
        return;
    } else {
        if (len <= UINT8_MAX) {
            put_tagged(d, 0xc4, len, 1);
        } else if (len <= UINT16_MAX) {
            put_tagged(d, 0xc5, len, 2);
        } else {
            put_tagged(d, 0xc6, len, 4);
        }
        put(d, p, len);
    }
    after_value(d);
}

/* --- base64 ------------------------------------------------------------------ */

size_t bl_base64_encode(const void *in, size_t len, char *out)
{
    const uint8_t *p = in;
    char *o = out;
    size_t i = 0;

    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = B64_ALPHABET[v >> 18];
        *o++ = B64_ALPHABET[(v >> 12) & 0x3f];
        *o++ = B64_ALPHABET[(v >> 6) & 0x3f];
        *o++ = B64_ALPHABET[v & 0x3f];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = B64_ALPHABET[v >> 18];
        *o++ = B64_ALPHABET[(v >> 12) & 0x3f];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = B64_ALPHABET[v >> 18];
        *o++ = B64_ALPHABET[(v >> 12) & 0x3f];
        *o++ = B64_ALPHABET[(v >> 6) & 0x3f];
        *o++ = '=';
    }
    return (size_t)(o - out);
}

/* The 6-bit value of base64 character @c, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

int bl_base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len)
{
    size_t o = 0;

    *out_len = 0;
    if (len % 4 != 0) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        unsigned pad = 0;
        uint32_t v = 0;

        if (last && in[i + 3] == '=') {
            pad = in[i + 2] == '=' ? 2 : 1;
        }
        for (unsigned j = 0; j < 4 - pad; j++) {
            int x = b64_value(in[i + j]);
            if (x < 0) {
                return BL_EBADREQ; /* a bad character, or '=' too early */
            }
            v = v << 6 | (uint32_t)x;
        }
        v <<= 6 * pad;
        /* The bits that padding leaves over must be zero (RFC 4648 3.5):
         * this keeps the encoding of every byte string unique. */
        if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0)) {
            return BL_EBADREQ;
        }
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) {
            out[o++] = (uint8_t)(v >> 8);
        }
        if (pad < 1) {
            out[o++] = (uint8_t)v;
        }
    }
    *out_len = o;
    return BL_OK;
}

void bl_doc_kv(struct bl_doc *d, const struct bl_kv *kv, bool with_value)
{
    bl_doc_map(d, with_value ? 6 : 5);
    bl_doc_key(d, "key");
    bl_doc_bin(d, kv->key, kv->key_len);
    if (with_value) {
        bl_doc_key(d, "value");
        bl_doc_bin(d, kv->value, kv->value_len);
    }
    bl_doc_key(d, "create_revision");
    bl_doc_uint(d, kv->create_revision);
    bl_doc_key(d, "mod_revision");
    bl_doc_uint(d, kv->mod_revision);
    bl_doc_key(d, "version");
    bl_doc_uint(d, kv->version);
    bl_doc_key(d, "lease");
    bl_doc_uint(d, kv->lease);
}
