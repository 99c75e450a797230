/* Decimal formatting of unsigned integers for the hot paths (HTTP heads,
 * headers, JSON numbers), where snprintf's format parsing showed up at
 * ~7% of a member's instructions (callgrind, bench/RESULTS.md). Header
 * only; owns nothing. */
#ifndef BALLAST_FMT_H
#define BALLAST_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Decimal digits of @v written backwards ending at @end; returns the first. */
static inline char *bl_utoa(uint64_t v, char *end)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

/* @v in decimal into @buf (at least 21 bytes), NUL-terminated; returns its length. */
static inline size_t bl_fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    char *p = bl_utoa(v, tmp + sizeof tmp);
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}

#endif /* BALLAST_FMT_H */
