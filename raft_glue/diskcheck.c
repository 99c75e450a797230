/* Free-space admission and start-up diagnosis for a member's data dir (see
 * diskcheck.h).
 *
 * Admission, the happy path: the leader calls bl_diskcheck_admit() before it
 * proposes a PUT. Every BL_DISKCHECK_PERIOD_MS the checker samples statvfs
 * (f_bavail * f_frsize); in between it subtracts the bytes it admitted since
 * the sample, so a burst of writes cannot overshoot the reserve before the
 * next sample sees them. A write passes if the reserve is still free after
 * it. The reserve exists because canonical/raft 0.15 only learns that the
 * disk is full when it fails to preallocate a segment, and a committed entry
 * that cannot be written or applied stops the member; refusing new writes
 * with 507 while 80 MiB are left keeps the member serving. The estimate is
 * deliberately rough: free space drops in 8 MiB steps when raft prepares a
 * segment and in pages when LMDB grows, neither per write; the reserve
 * absorbs the difference.
 *
 * Admission, failure modes: statvfs failing (the data dir was removed or
 * unmounted) is BL_EIO and is retried on the next call, never cached as
 * "full" or "free". The test hook's file (BALLAST_FAKE_FREE_FILE) replaces
 * statvfs while it exists; unreadable or malformed content is BL_EIO.
 *
 * Diagnosis, found by experiment on Linux 6.18 with Debian's raft 0.15.0:
 * - The kernel's async I/O limit exhausted (fs.aio-nr == fs.aio-max-nr):
 *   raft_init fails with RAFT_IOERR, "io: probe Async I/O: io_setup:
 *   resource temporarily unavailable" (raft probes the data dir with one
 *   AIO context). If the limit runs out after start, the first append fails
 *   with RAFT_TOOMANY, "io: setup writer for open-1: AIO events user limit
 *   exceeded". The limit is global, not per container: raise it on the node.
 * - A full file system: raft_init fails with RAFT_NOSPACE, "io: create I/O
 *   capabilities probe file: not enough space to allocate 4096 bytes"; with
 *   some space but less than a segment, the first append fails with "io:
 *   create segment open-1: not enough space to allocate 8388608 bytes". A
 *   completely full one kills the process earlier with SIGBUS inside LMDB's
 *   mdb_env_open, hence the pre-start check (raft_rv 0, no message).
 * - tmpfs works: since Linux 6.6 tmpfs accepts O_DIRECT, and on older
 *   kernels raft 0.15's probe sees TMPFS_MAGIC and falls back to buffered
 *   writes. So tmpfs is only a warning (no durability across a node reboot),
 *   and advice when the tmpfs is full. File systems that refuse O_DIRECT
 *   other than tmpfs, ZFS and UBIFS make raft_init fail with RAFT_IOERR;
 *   ramfs: "io: probe Direct I/O: unsupported file system: 858458f6". */
#include "diskcheck.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#define TMPFS_MAGIC_      0x01021994UL
#define AIO_SUGGESTED_MAX 1048576ULL

/* ---- helpers -------------------------------------------------------------- */

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a) {
        return UINT64_MAX;
    }
    return a * b;
}

/* "80 MiB", "1.5 GiB", "512 B": for messages only. */
static const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    unsigned u = 0;
    uint64_t whole = n, tenths = 0;

    while (whole >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        tenths = (whole % 1024) * 10 / 1024;
        whole /= 1024;
        u++;
    }
    if (tenths != 0 && whole < 100) {
        snprintf(buf, len, "%" PRIu64 ".%" PRIu64 " %s", whole, tenths, units[u]);
    } else {
        snprintf(buf, len, "%" PRIu64 " %s", whole, units[u]);
    }
    return buf;
}

/* True if @s contains @needle, ignoring ASCII case. */
static bool contains(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    if (s == NULL) {
        return false;
    }
    for (; *s != '\0'; s++) {
        size_t i = 0;
        while (i < n && s[i] != '\0' &&
               tolower((unsigned char)s[i]) == tolower((unsigned char)needle[i])) {
            i++;
        }
        if (i == n) {
            return true;
        }
    }
    return false;
}

/* Read a decimal u64 (trailing whitespace allowed) from @path. Returns 0,
 * -ENOENT if the file does not exist, or another negative errno (-EINVAL
 * for content that is not a number). */
static int read_u64_file(const char *path, uint64_t *value)
{
    char buf[64];
    char *end;
    unsigned long long v;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -errno;
    }
    n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    close(fd);
    buf[n] = '\0';
    if (n == 0 || buf[0] < '0' || buf[0] > '9') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(buf, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') {
        end++;
    }
    if (errno != 0 || *end != '\0') {
        return -EINVAL;
    }
    *value = v;
    return 0;
}

static int copy_path(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= BL_DISKCHECK_PATH_MAX) {
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* ---- free space ------------------------------------------------------------ */

int bl_disk_free(const char *dir, uint64_t *free_bytes, char *errmsg)
{
    struct statvfs st;
    if (statvfs(dir, &st) != 0) {
        int err = errno;
        snprintf(errmsg, BL_ERRMSG_SIZE, "statvfs %.200s: %s", dir, strerror(err));
        return err == ENOMEM ? BL_ENOMEM : BL_EIO;
    }
    *free_bytes = mul_sat(st.f_bavail, st.f_frsize != 0 ? st.f_frsize : st.f_bsize);
    return BL_OK;
}

int bl_diskcheck_init(struct bl_diskcheck *d, const char *dir, uint64_t reserve_bytes)
{
    const char *fake = getenv(BL_DISKCHECK_FAKE_ENV);

    memset(d, 0, sizeof *d);
    d->reserve_bytes = reserve_bytes != 0 ? reserve_bytes : BL_DISKCHECK_DEFAULT_RESERVE;
    d->period_ms = BL_DISKCHECK_PERIOD_MS;
    if (copy_path(d->dir, dir) != 0) {
        snprintf(d->errmsg, sizeof d->errmsg, "data dir path longer than %d bytes: %.100s...",
                 BL_DISKCHECK_PATH_MAX - 1, dir);
        return BL_EBADREQ;
    }
    if (fake != NULL && fake[0] != '\0' && copy_path(d->fake_file, fake) != 0) {
        snprintf(d->errmsg, sizeof d->errmsg, "%s longer than %d bytes", BL_DISKCHECK_FAKE_ENV,
                 BL_DISKCHECK_PATH_MAX - 1);
        return BL_EBADREQ;
    }
    return BL_OK;
}

/* Take a new sample of the free space into @d. */
static int sample(struct bl_diskcheck *d, uint64_t now_ms)
{
    uint64_t free_bytes;
    int rv;

    if (d->fake_file[0] != '\0') {
        rv = read_u64_file(d->fake_file, &free_bytes);
        if (rv == 0) {
            goto sampled;
        }
        if (rv != -ENOENT) {
            d->sampled = false;
            snprintf(d->errmsg, sizeof d->errmsg, "%s %.150s: %s", BL_DISKCHECK_FAKE_ENV,
                     d->fake_file, rv == -EINVAL ? "not a decimal number" : strerror(-rv));
            return BL_EIO;
        }
    }
    rv = bl_disk_free(d->dir, &free_bytes, d->errmsg);
    if (rv != 0) {
        d->sampled = false;
        return rv;
    }
sampled:
    d->sampled = true;
    d->sampled_at = now_ms;
    d->free_bytes = free_bytes;
    d->admitted = 0;
    return BL_OK;
}

int bl_diskcheck_admit(struct bl_diskcheck *d, uint64_t now_ms, uint64_t write_bytes)
{
    uint64_t avail;
    char b1[32], b2[32], b3[32];

    if (!d->sampled || now_ms < d->sampled_at || now_ms - d->sampled_at >= d->period_ms) {
        int rv = sample(d, now_ms);
        if (rv != 0) {
            return rv;
        }
    }
    avail = d->free_bytes > d->admitted ? d->free_bytes - d->admitted : 0;
    if (avail <= d->reserve_bytes || avail - d->reserve_bytes < write_bytes) {
        snprintf(d->errmsg, sizeof d->errmsg,
                 "data dir %.120s has %s free, %s of it reserved for the Raft log and the "
                 "store: a write of %s is refused",
                 d->dir, fmt_bytes(avail, b1, sizeof b1),
                 fmt_bytes(d->reserve_bytes, b2, sizeof b2), fmt_bytes(write_bytes, b3, sizeof b3));
        return BL_ENOSPACE;
    }
    d->admitted += write_bytes;
    return BL_OK;
}

/* ---- diagnosis ------------------------------------------------------------- */

static const char *fs_name(unsigned long type)
{
    static const struct {
        unsigned long magic;
        const char *name;
    } names[] = {
        {0xEF53UL, "ext4"},         {0x58465342UL, "xfs"},   {0x9123683EUL, "btrfs"},
        {TMPFS_MAGIC_, "tmpfs"},    {0x858458F6UL, "ramfs"}, {0x794C7630UL, "overlayfs"},
        {0x65735546UL, "FUSE"},     {0x01021997UL, "9p"},    {0x6969UL, "NFS"},
        {0xFF534D42UL, "CIFS"},     {0xFE534D42UL, "SMB2"},  {0x2FC12FC1UL, "ZFS"},
        {0x73717368UL, "squashfs"}, {0xF15FUL, "ecryptfs"},  {0x24051905UL, "UBIFS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].magic == type) {
            return names[i].name;
        }
    }
    return "an unknown file system";
}

void bl_diskcheck_gather(const char *dir, struct bl_diskcheck_facts *f)
{
    char path[BL_DISKCHECK_PATH_MAX];
    struct statfs st;

    memset(f, 0, sizeof *f);
    f->dir = dir;
    if (copy_path(path, dir) == 0) {
        for (;;) {
            char *slash;
            if (statfs(path[0] != '\0' ? path : ".", &st) == 0) {
                uint64_t unit = st.f_frsize != 0 ? (uint64_t)st.f_frsize : (uint64_t)st.f_bsize;
                f->have_fs = true;
                f->fs_type = (unsigned long)st.f_type;
                f->free_bytes = mul_sat(st.f_bavail, unit);
                f->total_bytes = mul_sat(st.f_blocks, unit);
                break;
            }
            /* Not there yet: try the nearest parent. */
            slash = strrchr(path, '/');
            if (slash == NULL) {
                if (path[0] == '\0') {
                    break;
                }
                path[0] = '\0';
            } else if (slash == path) {
                if (path[1] == '\0') {
                    break;
                }
                path[1] = '\0';
            } else {
                *slash = '\0';
            }
        }
    }
    f->have_aio = read_u64_file("/proc/sys/fs/aio-nr", &f->aio_nr) == 0 &&
                  read_u64_file("/proc/sys/fs/aio-max-nr", &f->aio_max_nr) == 0;
}

static bool is_tmpfs(const struct bl_diskcheck_facts *f)
{
    return f->have_fs && f->fs_type == TMPFS_MAGIC_;
}

static int explain_aio(const struct bl_diskcheck_facts *f, bool now, char *out, size_t len)
{
    uint64_t suggest = AIO_SUGGESTED_MAX;
    char counters[96];

    if (f->have_aio) {
        if (f->aio_max_nr >= suggest / 2) {
            suggest = mul_sat(f->aio_max_nr, 2);
        }
        snprintf(counters, sizeof counters, "fs.aio-nr %" PRIu64 " of fs.aio-max-nr %" PRIu64,
                 f->aio_nr, f->aio_max_nr);
    } else {
        snprintf(counters, sizeof counters, "fs.aio-nr and fs.aio-max-nr unreadable");
    }
    snprintf(out, len,
             "the kernel's async I/O limit is exhausted (%s%s): canonical/raft needs an AIO "
             "context (io_setup) to write its log; raise the limit with sysctl -w "
             "fs.aio-max-nr=%" PRIu64
             " (it is system-wide: on Kubernetes set it on the node), or stop the processes "
             "holding AIO contexts",
             now ? "" : "at start; now ", counters, suggest);
    return 1;
}

static int explain_space(const struct bl_diskcheck_facts *f, char *out, size_t len)
{
    char free_s[32], total_s[32], need_s[32];

    fmt_bytes(f->free_bytes, free_s, sizeof free_s);
    fmt_bytes(f->total_bytes, total_s, sizeof total_s);
    fmt_bytes(BL_DISKCHECK_START_MIN, need_s, sizeof need_s);
    if (!f->have_fs) {
        snprintf(out, len,
                 "the file system of data dir %.150s is full: canonical/raft preallocates its "
                 "log in %llu MiB segments and needs at least %s free; free space or grow the "
                 "volume",
                 f->dir, BL_DISKCHECK_SEGMENT_BYTES >> 20, need_s);
    } else if (is_tmpfs(f)) {
        snprintf(out, len,
                 "data dir %.150s is on tmpfs (memory) with %s free of %s: canonical/raft "
                 "preallocates its log in %llu MiB segments and needs at least %s free; raise "
                 "the tmpfs size (size=, or the emptyDir sizeLimit) or better use a disk-backed "
                 "volume (emptyDir without medium: Memory, or a PersistentVolume)",
                 f->dir, free_s, total_s, BL_DISKCHECK_SEGMENT_BYTES >> 20, need_s);
    } else {
        snprintf(out, len,
                 "data dir %.150s has %s free of %s: canonical/raft preallocates its log in "
                 "%llu MiB segments and needs at least %s free; free space or grow the volume",
                 f->dir, free_s, total_s, BL_DISKCHECK_SEGMENT_BYTES >> 20, need_s);
    }
    return 1;
}

int bl_diskcheck_explain(const struct bl_diskcheck_facts *f, int raft_rv, const char *raft_errmsg,
                         char *out, size_t len)
{
    bool no_msg = raft_errmsg == NULL || raft_errmsg[0] == '\0';
    bool aio_full = f->have_aio && f->aio_nr >= f->aio_max_nr;
    bool low_space = f->have_fs && f->free_bytes < BL_DISKCHECK_START_MIN;

    if (len > 0) {
        out[0] = '\0';
    }
    /* 1. Async I/O: raft says so, or (without a message) the counters do. */
    if (raft_rv == RAFT_TOOMANY || contains(raft_errmsg, "io_setup") ||
        contains(raft_errmsg, "AIO events")) {
        return explain_aio(f, !f->have_aio || aio_full, out, len);
    }
    if (no_msg && aio_full) {
        return explain_aio(f, true, out, len);
    }
    /* 2. Space: raft says so, or the file system is nearly full anyway. */
    if (raft_rv == RAFT_NOSPACE || contains(raft_errmsg, "not enough space") ||
        contains(raft_errmsg, "no space") || contains(raft_errmsg, "quota exceeded") || low_space) {
        return explain_space(f, out, len);
    }
    /* 3. A file system that refuses direct I/O and that raft does not know. */
    if (contains(raft_errmsg, "unsupported file system")) {
        if (f->have_fs) {
            snprintf(out, len,
                     "data dir %.150s is on %s (f_type 0x%lx), which refuses direct I/O; "
                     "canonical/raft 0.15 falls back to buffered I/O only on tmpfs, ZFS and "
                     "UBIFS: put the data dir on a disk-backed ext4 or xfs volume",
                     f->dir, fs_name(f->fs_type), f->fs_type);
        } else {
            snprintf(out, len,
                     "the file system of data dir %.150s refuses direct I/O; canonical/raft "
                     "0.15 falls back to buffered I/O only on tmpfs, ZFS and UBIFS: put the "
                     "data dir on a disk-backed ext4 or xfs volume",
                     f->dir);
        }
        return 1;
    }
    return 0;
}

int bl_diskcheck_diagnose(const char *dir, int raft_rv, const char *raft_errmsg, char *out,
                          size_t len)
{
    struct bl_diskcheck_facts f;
    bl_diskcheck_gather(dir, &f);
    return bl_diskcheck_explain(&f, raft_rv, raft_errmsg, out, len);
}

int bl_diskcheck_warn(const struct bl_diskcheck_facts *f, char *out, size_t len)
{
    if (len > 0) {
        out[0] = '\0';
    }
    if (!is_tmpfs(f)) {
        return 0;
    }
    snprintf(out, len,
             "data dir %.150s is on tmpfs: the Raft log and the store live in memory (counted "
             "against the pod's memory limit) and are lost when the node reboots, after which "
             "this member comes back having forgotten its log and its votes; use a "
             "disk-backed volume for anything but tests",
             f->dir);
    return 1;
}
