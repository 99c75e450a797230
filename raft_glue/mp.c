/* Minimal msgpack reading and writing for commands, result records and
 * member records: only the types those use (arrays, ints, bin, str).
 *
 * Reads check the remaining length before every access and fail with
 * BL_EMALFORMED; nothing is allocated. Writes grow the buffer geometrically
 * and turn an allocation failure into a sticky BL_ENOMEM. */
#include "mp.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static int need(const struct bl_mpr *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n ? 0 : BL_EMALFORMED;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Read a big-endian length of @n bytes following the type byte. */
static int read_len(struct bl_mpr *r, unsigned n, uint64_t *v)
{
    if (need(r, n) != 0) {
        return BL_EMALFORMED;
    }
    *v = be(r->p, n);
    r->p += n;
    return 0;
}

int bl_mpr_array(struct bl_mpr *r, uint32_t *n)
{
    uint64_t v;
    uint8_t t;
    if (need(r, 1) != 0) {
        return BL_EMALFORMED;
    }
    t = *r->p++;
    if ((t & 0xf0) == 0x90) {
        *n = t & 0x0f;
        return 0;
    }
    if (t == 0xdc || t == 0xdd) {
        if (read_len(r, t == 0xdc ? 2 : 4, &v) != 0) {
            return BL_EMALFORMED;
        }
        *n = (uint32_t)v;
        return 0;
    }
    return BL_EMALFORMED;
}

int bl_mpr_int(struct bl_mpr *r, int64_t *v)
{
    uint64_t u;
    uint8_t t;
    if (need(r, 1) != 0) {
        return BL_EMALFORMED;
    }
    t = *r->p;
    if (t <= 0x7f || (t >= 0xcc && t <= 0xcf)) {
        if (bl_mpr_uint(r, &u) != 0 || u > (uint64_t)INT64_MAX) {
            return BL_EMALFORMED;
        }
        *v = (int64_t)u;
        return 0;
    }
    r->p++;
    if (t >= 0xe0) {
        *v = (int8_t)t;
        return 0;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        unsigned n = 1u << (t - 0xd0);
        if (read_len(r, n, &u) != 0) {
            return BL_EMALFORMED;
        }
        switch (n) {
        case 1:
            *v = (int8_t)u;
            break;
        case 2:
            *v = (int16_t)u;
            break;
        case 4:
            *v = (int32_t)u;
            break;
        default:
            *v = (int64_t)u;
            break;
        }
        return 0;
    }
    return BL_EMALFORMED;
}

int bl_mpr_uint(struct bl_mpr *r, uint64_t *v)
{
    uint8_t t;
    if (need(r, 1) != 0) {
        return BL_EMALFORMED;
    }
    t = *r->p++;
    if (t <= 0x7f) {
        *v = t;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
        return read_len(r, 1u << (t - 0xcc), v);
    }
    return BL_EMALFORMED;
}

int bl_mpr_bytes(struct bl_mpr *r, bool allow_str, const uint8_t **p, size_t *len)
{
    uint64_t n;
    uint8_t t;
    if (need(r, 1) != 0) {
        return BL_EMALFORMED;
    }
    t = *r->p++;
    if (t >= 0xc4 && t <= 0xc6) {
        if (read_len(r, 1u << (t - 0xc4), &n) != 0) {
            return BL_EMALFORMED;
        }
    } else if (allow_str && (t & 0xe0) == 0xa0) {
        n = t & 0x1f;
    } else if (allow_str && t >= 0xd9 && t <= 0xdb) {
        if (read_len(r, 1u << (t - 0xd9), &n) != 0) {
            return BL_EMALFORMED;
        }
    } else {
        return BL_EMALFORMED;
    }
    if (need(r, n) != 0) {
        return BL_EMALFORMED;
    }
    *p = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

void bl_mpw_raw(struct bl_mpw *w, const void *p, size_t n)
{
    if (w->error != 0) {
        return;
    }
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap : 256;
        uint8_t *b;
        while (cap - w->len < n) {
            cap *= 2;
        }
        b = realloc(w->buf, cap);
        if (b == NULL) {
            w->error = BL_ENOMEM;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    if (n > 0) {
        memcpy(w->buf + w->len, p, n);
    }
    w->len += n;
}

/* Write type byte @t followed by @v big-endian in @n bytes. */
static void put_be(struct bl_mpw *w, uint8_t t, uint64_t v, unsigned n)
{
    uint8_t b[9];
    b[0] = t;
    for (unsigned i = 0; i < n; i++) {
        b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    }
    bl_mpw_raw(w, b, 1 + n);
}

void bl_mpw_array(struct bl_mpw *w, uint32_t n)
{
    if (n < 16) {
        put_be(w, (uint8_t)(0x90 | n), 0, 0);
    } else if (n <= 0xffff) {
        put_be(w, 0xdc, n, 2);
    } else {
        put_be(w, 0xdd, n, 4);
    }
}

void bl_mpw_uint(struct bl_mpw *w, uint64_t v)
{
    if (v <= 0x7f) {
        put_be(w, (uint8_t)v, 0, 0);
    } else if (v <= 0xff) {
        put_be(w, 0xcc, v, 1);
    } else if (v <= 0xffff) {
        put_be(w, 0xcd, v, 2);
    } else if (v <= 0xffffffffu) {
        put_be(w, 0xce, v, 4);
    } else {
        put_be(w, 0xcf, v, 8);
    }
}

void bl_mpw_int(struct bl_mpw *w, int64_t v)
{
    if (v >= 0) {
        bl_mpw_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        put_be(w, (uint8_t)(0xe0 | ((uint64_t)v & 0x1f)), 0, 0);
    } else if (v >= INT8_MIN) {
        put_be(w, 0xd0, (uint64_t)v & 0xff, 1);
    } else if (v >= INT16_MIN) {
        put_be(w, 0xd1, (uint64_t)v & 0xffff, 2);
    } else if (v >= INT32_MIN) {
        put_be(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    } else {
        put_be(w, 0xd3, (uint64_t)v, 8);
    }
}

static void put_bytes(struct bl_mpw *w, const uint8_t types[3], const void *p, size_t len)
{
    if (len <= 0xff) {
        put_be(w, types[0], len, 1);
    } else if (len <= 0xffff) {
        put_be(w, types[1], len, 2);
    } else {
        put_be(w, types[2], len, 4);
    }
    bl_mpw_raw(w, p, len);
}

void bl_mpw_bin(struct bl_mpw *w, const void *p, size_t len)
{
    static const uint8_t types[3] = {0xc4, 0xc5, 0xc6};
    put_bytes(w, types, p, len);
}

void bl_mpw_str(struct bl_mpw *w, const void *p, size_t len)
{
    static const uint8_t types[3] = {0xd9, 0xda, 0xdb};
    if (len < 32) {
        put_be(w, (uint8_t)(0xa0 | len), 0, 0);
        bl_mpw_raw(w, p, len);
        return;
    }
    put_bytes(w, types, p, len);
}
