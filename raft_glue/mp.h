/* A tiny bounds-checked msgpack reader and writer for Ballast's own records.
 *
 * Reading: a cursor over [p, end); every read checks the remaining length
 * before touching a byte and returns BL_EMALFORMED on any mismatch, never
 * reading past @end. Byte and text strings come back as pointers into the
 * buffer (no copy). Writing: appends to a growable malloc'd buffer owned by
 * the caller (struct bl_mpw); errors (out of memory) are sticky. */
#ifndef BALLAST_MP_H
#define BALLAST_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bl_mpr {
    const uint8_t *p;
    const uint8_t *end;
};

/* Read an array header; its element count goes to *@n. */
int bl_mpr_array(struct bl_mpr *r, uint32_t *n);
/* Read a non-negative integer. */
int bl_mpr_uint(struct bl_mpr *r, uint64_t *v);
/* Read a signed integer (any msgpack int that fits int64). */
int bl_mpr_int(struct bl_mpr *r, int64_t *v);
/* Read a bin (or, with @allow_str, a str) into a borrowed slice. */
int bl_mpr_bytes(struct bl_mpr *r, bool allow_str, const uint8_t **p, size_t *len);

struct bl_mpw {
    uint8_t *buf;
    size_t len, cap;
    int error;
};

void bl_mpw_array(struct bl_mpw *w, uint32_t n);
void bl_mpw_uint(struct bl_mpw *w, uint64_t v);
void bl_mpw_int(struct bl_mpw *w, int64_t v);
void bl_mpw_bin(struct bl_mpw *w, const void *p, size_t len);
void bl_mpw_str(struct bl_mpw *w, const void *p, size_t len);
/* Append @n raw bytes (padding, pre-encoded parts). */
void bl_mpw_raw(struct bl_mpw *w, const void *p, size_t n);

#endif /* BALLAST_MP_H */
