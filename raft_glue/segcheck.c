/* Open-segment check: what canonical/raft 0.15 gets wrong when it loads
 * its log, caught before raft_start.
 *
 * The uv backend writes entries in batches to preallocated, zero-filled
 * "open-N" segments. A batch is: two CRC-32s (header, data), the entry
 * count, 16 bytes of header per entry (term, type, length), then the entry
 * data; integers little endian, the segment starts with an 8-byte format
 * version (1). At load, libraft 0.15 reads the batches of an open segment
 * until one fails a check and then truncates the segment there, without
 * looking at what follows. That is right for a torn tail (the last write
 * half done, zeros after it) and wrong for a flipped byte in the middle:
 * every entry from the damaged batch on is dropped and the member starts
 * with a shorter log, acknowledged entries and votes forgotten. Entries in
 * a later open segment are then renumbered, since a format-1 open segment
 * does not record its first index. Auto-recovery being off does not help:
 * it only concerns errors, and this is not one. A segment that ends inside
 * a batch (the file itself cut short) is worse: libraft 0.15 fails the
 * short read and then frees the buffer twice (abort, "double free").
 *
 * So before raft_start: walk each open segment's batches, checking both
 * CRCs (libraft's CRC-32: polynomial 0x04c11db7, MSB first, no reflection,
 * initial value 0). At the first batch that fails, the rest of the segment
 * is either all zeros (the normal end of the data), or a torn tail (nothing
 * valid follows, here or in a later open segment: libraft truncates it, as
 * it should), or corruption (a valid batch follows: refuse to start, say
 * where). A valid batch is searched for at every 8-byte boundary after the
 * damaged one; a false match needs both CRCs to match by chance. A file
 * that ends inside a batch is padded with zeros to the batch's end, so that
 * libraft sees a checksum mismatch and truncates instead of crashing.
 *
 * Closed segments are not checked: libraft verifies them entirely and, with
 * auto-recovery off, refuses to start on a damaged one. */
#include "segcheck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAX_OPEN    64                 /* open segments looked at (libraft keeps ~3) */
#define SEGMENT_MAX (8ULL << 20)       /* UV__MAX_SEGMENT_SIZE */
#define MAX_ENTRIES (SEGMENT_MAX / 32) /* libraft's bound on a batch's count */
#define FORMAT      1                  /* UV__DISK_FORMAT */
#define PREAMBLE    16                 /* two CRCs and the count */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i << 24;
        for (int k = 0; k < 8; k++) {
            c = (c & 0x80000000u) ? (c << 1) ^ 0x04c11db7u : c << 1;
        }
        crc_table[i] = c;
    }
}

static uint32_t crc32_raft(const uint8_t *p, size_t n)
{
    uint32_t crc = 0;
    while (n-- > 0) {
        crc = (crc << 8) ^ crc_table[((crc >> 24) ^ *p++) & 255];
    }
    return crc;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum batch { B_VALID, B_BAD, B_SHORT };

/* Look at the batch at @off of @buf (@len bytes): B_VALID (its end in
 * *@end), B_BAD (a count of 0 or too high, or a CRC mismatch), or B_SHORT
 * (the buffer ends inside it; *@end is where it would end so far). */
static enum batch batch_at(const uint8_t *buf, size_t len, size_t off, size_t *end)
{
    uint64_t n, hdr, data = 0;
    if (len - off < PREAMBLE) {
        *end = off + PREAMBLE;
        return B_SHORT;
    }
    n = le64(buf + off + 8);
    if (n == 0 || n > MAX_ENTRIES) {
        return B_BAD;
    }
    hdr = 8 + 16 * n;
    if (len - off - 8 < hdr) {
        *end = off + 8 + hdr;
        return B_SHORT;
    }
    if (crc32_raft(buf + off + 8, hdr) != le32(buf + off)) {
        return B_BAD;
    }
    for (uint64_t i = 0; i < n; i++) {
        data += le32(buf + off + PREAMBLE + 16 * i + 12);
    }
    if (len - off - 8 - hdr < data) {
        *end = off + 8 + hdr + data;
        return B_SHORT;
    }
    if (crc32_raft(buf + off + 8 + hdr, data) != le32(buf + off + 4)) {
        return B_BAD;
    }
    *end = off + 8 + hdr + data;
    return B_VALID;
}

/* What one open segment holds. */
struct seg {
    unsigned long long counter;
    char name[32];
    bool has_data;      /* at least one valid batch */
    bool damaged;       /* a failing batch with non-zero bytes at or after it */
    size_t bad_at;      /* offset of that batch */
    size_t valid_after; /* offset of a valid batch after it, or 0 */
    size_t pad_to;      /* the file ends inside the last batch: pad to here */
};

static int read_file(const char *dir, const char *name, uint8_t **out, size_t *len, char *errmsg)
{
    char path[4200];
    struct stat st;
    uint8_t *buf;
    size_t off = 0;
    int fd;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "log check: open %.200s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return BL_EIO;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return BL_ENOMEM;
    }
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
        if (n <= 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "log check: read %.200s: %s", path,
                     n == 0 ? "short read" : strerror(errno));
            free(buf);
            close(fd);
            return BL_EIO;
        }
        off += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = off;
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

static int check_segment(const char *dir, struct seg *s, char *errmsg)
{
    uint8_t *buf;
    size_t len, off, end = 0;
    int rv = read_file(dir, s->name, &buf, &len, errmsg);
    if (rv != 0) {
        return rv;
    }
    /* Empty, all zeros or another format: libraft's own checks decide. */
    if (len < 8 || le64(buf) != FORMAT) {
        free(buf);
        return 0;
    }
    for (off = 8; off < len;) {
        enum batch b = batch_at(buf, len, off, &end);
        if (b == B_VALID) {
            s->has_data = true;
            off = end;
            continue;
        }
        if (b == B_SHORT) {
            /* The file ends inside this batch: a torn tail cut short. */
            s->pad_to = end;
            s->bad_at = off;
            break;
        }
        if (all_zero(buf + off, len - off)) {
            break; /* the normal end of the data */
        }
        s->damaged = true;
        s->bad_at = off;
        for (size_t at = off + 8; at + PREAMBLE <= len; at += 8) {
            if (batch_at(buf, len, at, &end) == B_VALID) {
                s->valid_after = at;
                break;
            }
        }
        break;
    }
    free(buf);
    return 0;
}

/* Zero-extend @s's file to s->pad_to (rounded up to 4 KiB) and sync it. */
static int pad_segment(const char *dir, const struct seg *s, char *errmsg)
{
    char path[4200];
    off_t to = (off_t)((s->pad_to + 4095) / 4096 * 4096);
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, s->name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, to) != 0 || fsync(fd) != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "log check: pad %.200s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return BL_EIO;
    }
    close(fd);
    BL_WARN("log check: %s ends inside a batch (a torn tail): padded with zeros to %lld "
            "bytes so that raft truncates it",
            s->name, (long long)to);
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    return x->counter < y->counter ? -1 : x->counter > y->counter;
}

int bl_segcheck_open_segments(const char *raft_dir, char *errmsg)
{
    struct seg *segs;
    struct dirent *de;
    size_t n = 0;
    int rv = 0;
    DIR *d = opendir(raft_dir);

    if (d == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(errmsg, BL_ERRMSG_SIZE, "log check: open %.200s: %s", raft_dir, strerror(errno));
        return BL_EIO;
    }
    segs = calloc(MAX_OPEN, sizeof *segs);
    if (segs == NULL) {
        closedir(d);
        return BL_ENOMEM;
    }
    while ((de = readdir(d)) != NULL && n < MAX_OPEN) {
        char *end;
        unsigned long long c;
        if (strncmp(de->d_name, "open-", 5) != 0 || de->d_name[5] < '0' || de->d_name[5] > '9') {
            continue;
        }
        c = strtoull(de->d_name + 5, &end, 10);
        if (*end != '\0' || strlen(de->d_name) >= sizeof segs[n].name) {
            continue;
        }
        segs[n].counter = c;
        snprintf(segs[n].name, sizeof segs[n].name, "%s", de->d_name);
        n++;
    }
    closedir(d);
    qsort(segs, n, sizeof *segs, cmp_seg);
    crc_init();
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = check_segment(raft_dir, &segs[i], errmsg);
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        struct seg *s = &segs[i];
        bool later_data = false;
        for (size_t j = i + 1; j < n; j++) {
            later_data = later_data || segs[j].has_data;
        }
        if (s->damaged && s->valid_after != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "raft log %.20s: batch at byte %zu fails its checksum and a valid batch "
                     "follows at byte %zu: a corrupt entry inside the log, not a torn tail; "
                     "restore this member from its peers or a backup",
                     s->name, s->bad_at, s->valid_after);
            rv = BL_ECORRUPT;
        } else if ((s->damaged || s->pad_to != 0) && later_data) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "raft log %.20s: batch at byte %zu is damaged and a later open segment "
                     "holds entries: a corrupt entry inside the log, not a torn tail; "
                     "restore this member from its peers or a backup",
                     s->name, s->bad_at);
            rv = BL_ECORRUPT;
        } else if (s->damaged) {
            BL_WARN("log check: %s has a torn tail at byte %zu (nothing valid after it): "
                    "raft truncates it",
                    s->name, s->bad_at);
        } else if (s->pad_to != 0) {
            rv = pad_segment(raft_dir, s, errmsg);
        }
    }
    free(segs);
    return rv;
}
