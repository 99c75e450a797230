/* Unit tests of the data dir checks (raft_glue/diskcheck.c).
 *
 * bl_disk_free against statvfs on /tmp; admission through the test hook
 * (BALLAST_FAKE_FREE_FILE, a file in the test's own directory) with a clock
 * the test drives: the reserve holds within one period even though the file
 * does not change, a full "disk" recovers once the file says so and the
 * period has passed, a missing file falls back to statvfs, bad content is an
 * error; admission on the real file system. The diagnosis is tested through
 * facts built by hand (file system type, free space, AIO counters) with the
 * exact messages canonical/raft 0.15 gave in our experiments, then once on
 * the real system: a missing dir falls back to its parent, and /dev/shm,
 * when it is a tmpfs, gives the tmpfs warning without mounting anything. */
#include "diskcheck.h"
#include "error.h"

#include <check.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static char tmp_root[64];
static char fake_path[128];

static void setup(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/ballast-test-diskcheck-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_root));
    snprintf(fake_path, sizeof fake_path, "%s/free", tmp_root);
    unsetenv(BL_DISKCHECK_FAKE_ENV);
}

static void teardown(void)
{
    char path[160];
    unsetenv(BL_DISKCHECK_FAKE_ENV);
    unlink(fake_path);
    snprintf(path, sizeof path, "%s/free.tmp", tmp_root);
    unlink(path);
    snprintf(path, sizeof path, "%s/later", tmp_root);
    rmdir(path);
    rmdir(tmp_root);
}

/* Write the hook's file the way an integration test must: atomically. */
static void set_fake_free(const char *content)
{
    char tmp[160];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s/free.tmp", tmp_root);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(content, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, fake_path), 0);
}

static void set_fake_free_bytes(uint64_t n)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)n);
    set_fake_free(buf);
}

static void init_with_hook(struct bl_diskcheck *d, uint64_t reserve)
{
    ck_assert_int_eq(setenv(BL_DISKCHECK_FAKE_ENV, fake_path, 1), 0);
    ck_assert_int_eq(bl_diskcheck_init(d, tmp_root, reserve), BL_OK);
}

#define ASSERT_HAS(s, needle)                                                                      \
    ck_assert_msg(strstr((s), (needle)) != NULL, "'%s' not in '%s'", (needle), (s))

/* ---- bl_disk_free ------------------------------------------------------ */

START_TEST(test_disk_free_tmp)
{
    struct statvfs st;
    uint64_t free_bytes = 0, total, direct;
    char errmsg[BL_ERRMSG_SIZE] = "";

    ck_assert_int_eq(bl_disk_free("/tmp", &free_bytes, errmsg), BL_OK);
    ck_assert_int_eq(statvfs("/tmp", &st), 0);
    total = (uint64_t)st.f_blocks * st.f_frsize;
    direct = (uint64_t)st.f_bavail * st.f_frsize;
    ck_assert_uint_gt(free_bytes, 0);
    ck_assert_uint_le(free_bytes, total);
    /* Others write to /tmp meanwhile: close, not equal. */
    ck_assert_uint_lt(free_bytes > direct ? free_bytes - direct : direct - free_bytes, 256 * MiB);
    /* f_bavail, not f_bfree: never more than the free blocks root sees. */
    ck_assert_uint_le(free_bytes, (uint64_t)st.f_bfree * st.f_frsize + 256 * MiB);
}
END_TEST

START_TEST(test_disk_free_missing)
{
    uint64_t free_bytes = 7;
    char errmsg[BL_ERRMSG_SIZE] = "";
    char path[128];

    snprintf(path, sizeof path, "%s/missing", tmp_root);
    ck_assert_int_eq(bl_disk_free(path, &free_bytes, errmsg), BL_EIO);
    ck_assert_uint_eq(free_bytes, 7);
    ASSERT_HAS(errmsg, path);
    ASSERT_HAS(errmsg, "No such file");
}
END_TEST

/* ---- admission ----------------------------------------------------------- */

START_TEST(test_init)
{
    struct bl_diskcheck d;
    char long_path[BL_DISKCHECK_PATH_MAX + 8];

    ck_assert_uint_eq(BL_DISKCHECK_DEFAULT_RESERVE, 80 * MiB);
    ck_assert_int_eq(bl_diskcheck_init(&d, tmp_root, 0), BL_OK);
    ck_assert_uint_eq(d.reserve_bytes, BL_DISKCHECK_DEFAULT_RESERVE);
    ck_assert_str_eq(d.fake_file, "");
    ck_assert_int_eq(bl_diskcheck_init(&d, tmp_root, 12345), BL_OK);
    ck_assert_uint_eq(d.reserve_bytes, 12345);

    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    ck_assert_int_eq(bl_diskcheck_init(&d, long_path, 0), BL_EBADREQ);
    ASSERT_HAS(d.errmsg, "longer than");
    ck_assert_int_eq(setenv(BL_DISKCHECK_FAKE_ENV, long_path, 1), 0);
    ck_assert_int_eq(bl_diskcheck_init(&d, tmp_root, 0), BL_EBADREQ);
    ASSERT_HAS(d.errmsg, BL_DISKCHECK_FAKE_ENV);
}
END_TEST

/* Within one period the checker counts what it admitted: the reserve holds
 * although the (fake) free space never changes. */
START_TEST(test_admit_burst_stops_at_reserve)
{
    struct bl_diskcheck d;

    set_fake_free_bytes(100 * MiB);
    init_with_hook(&d, 80 * MiB);
    ck_assert_str_eq(d.fake_file, fake_path);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1000, 10 * MiB), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1001, 10 * MiB - 1), BL_OK);
    /* 80 MiB + 1 byte left: 1 byte passes, then nothing does. */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1002, 2), BL_ENOSPACE);
    ASSERT_HAS(d.errmsg, "refused");
    ASSERT_HAS(d.errmsg, tmp_root);
    ASSERT_HAS(d.errmsg, "80 MiB");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1003, 1), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1004, 1), BL_ENOSPACE);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1099, 1), BL_ENOSPACE);
    /* A zero-byte write is admitted only while the reserve is not reached. */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1099, 0), BL_ENOSPACE);
    /* No overflow on absurd sizes. */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1099, UINT64_MAX), BL_ENOSPACE);
    /* The next period samples again (and forgets what it admitted). */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1100, 1), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1100, UINT64_MAX), BL_ENOSPACE);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1100, 20 * MiB - 1), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 1101, 1), BL_ENOSPACE);
}
END_TEST

/* The "disk" fills, then space is made again: admission follows the file
 * once the period has passed, not before. */
START_TEST(test_admit_full_then_recovers)
{
    struct bl_diskcheck d;

    set_fake_free_bytes(GiB);
    init_with_hook(&d, 0);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, MiB), BL_OK);

    set_fake_free_bytes(0);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 99, MiB), BL_OK); /* cached sample */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 100, MiB), BL_ENOSPACE);
    ASSERT_HAS(d.errmsg, "0 B free");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 150, 1), BL_ENOSPACE);

    set_fake_free_bytes(GiB);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 199, 1), BL_ENOSPACE); /* cached sample */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 200, MiB), BL_OK);

    /* Exactly at the reserve: refused; one byte more: a one-byte write. */
    set_fake_free_bytes(BL_DISKCHECK_DEFAULT_RESERVE);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 300, 1), BL_ENOSPACE);
    set_fake_free_bytes(BL_DISKCHECK_DEFAULT_RESERVE + 1);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 400, 2), BL_ENOSPACE);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 400, 1), BL_OK);

    /* A clock that goes back samples again rather than trusting the cache. */
    set_fake_free_bytes(GiB);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 10, MiB), BL_OK);
}
END_TEST

START_TEST(test_admit_hook_file_missing_or_bad)
{
    struct bl_diskcheck d;
    uint64_t real_free;
    char errmsg[BL_ERRMSG_SIZE];

    ck_assert_int_eq(bl_disk_free(tmp_root, &real_free, errmsg), BL_OK);
    init_with_hook(&d, 1);
    /* No file: the real statvfs. */
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, 1), real_free > 2 ? BL_OK : BL_ENOSPACE);
    ck_assert_uint_lt(
        d.free_bytes > real_free ? d.free_bytes - real_free : real_free - d.free_bytes, 256 * MiB);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, real_free + GiB), BL_ENOSPACE);

    set_fake_free("not a number\n");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 100, 1), BL_EIO);
    ASSERT_HAS(d.errmsg, "not a decimal number");
    ASSERT_HAS(d.errmsg, fake_path);
    set_fake_free("");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 101, 1), BL_EIO);
    set_fake_free("12abc");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 102, 1), BL_EIO);
    set_fake_free("-5");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 103, 1), BL_EIO);
    /* An error is not cached: the next call reads again. */
    set_fake_free(" \t");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 104, 1), BL_EIO);
    set_fake_free("4096 \n");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 104, 4094), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 104, 2), BL_ENOSPACE);

    /* The file goes away: back to the real file system at the next period. */
    ck_assert_int_eq(unlink(fake_path), 0);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 204, 1), real_free > 2 ? BL_OK : BL_ENOSPACE);
}
END_TEST

/* Without the hook: the real file system. The variable is read at init
 * only, so setting it later changes nothing. */
START_TEST(test_admit_real_file_system)
{
    struct bl_diskcheck d;
    char dir[128];
    uint64_t real_free;
    char errmsg[BL_ERRMSG_SIZE];

    ck_assert_int_eq(bl_disk_free(tmp_root, &real_free, errmsg), BL_OK);
    if (real_free > 2 * GiB) {
        ck_assert_int_eq(bl_diskcheck_init(&d, tmp_root, GiB), BL_OK);
        ck_assert_int_eq(bl_diskcheck_admit(&d, 0, MiB), BL_OK);
    } else {
        fprintf(stderr, "test_admit_real_file_system: /tmp has under 2 GiB free, "
                        "admission case skipped\n");
    }
    ck_assert_int_eq(bl_diskcheck_init(&d, tmp_root, real_free + GiB), BL_OK);
    set_fake_free_bytes(UINT64_MAX);
    ck_assert_int_eq(setenv(BL_DISKCHECK_FAKE_ENV, fake_path, 1), 0);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, 1), BL_ENOSPACE);
    ASSERT_HAS(d.errmsg, "refused");

    /* A data dir that does not exist (yet) is an error, retried each call. */
    snprintf(dir, sizeof dir, "%s/later", tmp_root);
    unsetenv(BL_DISKCHECK_FAKE_ENV);
    ck_assert_int_eq(bl_diskcheck_init(&d, dir, 1), BL_OK);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, 1), BL_EIO);
    ASSERT_HAS(d.errmsg, "statvfs");
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, 1), BL_EIO);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(bl_diskcheck_admit(&d, 0, 1), real_free > 2 ? BL_OK : BL_ENOSPACE);
}
END_TEST

/* ---- diagnosis from facts ---------------------------------------------- */

#define EXT4_MAGIC  0xEF53UL
#define TMPFS_MAGIC 0x01021994UL
#define RAMFS_MAGIC 0x858458F6UL

static struct bl_diskcheck_facts facts(unsigned long fs_type, uint64_t free_bytes, uint64_t aio_nr,
                                       uint64_t aio_max_nr)
{
    struct bl_diskcheck_facts f = {
        .dir = "/var/lib/ballast/raft",
        .have_fs = true,
        .fs_type = fs_type,
        .free_bytes = free_bytes,
        .total_bytes = 10 * GiB,
        .have_aio = true,
        .aio_nr = aio_nr,
        .aio_max_nr = aio_max_nr,
    };
    return f;
}

/* The messages raft 0.15 gave in the experiments (see diskcheck.c). */
#define MSG_PROBE_AIO  "io: probe Async I/O: io_setup: resource temporarily unavailable"
#define MSG_WRITER_AIO "io: setup writer for open-1: AIO events user limit exceeded"
#define MSG_PROBE_FULL                                                                             \
    "io: create I/O capabilities probe file: not enough space to allocate 4096 bytes"
#define MSG_SEGMENT_FULL "io: create segment open-1: not enough space to allocate 8388608 bytes"

START_TEST(test_explain_aio)
{
    char out[BL_DISKCHECK_MSG_SIZE];
    struct bl_diskcheck_facts f = facts(EXT4_MAGIC, 5 * GiB, 65536, 65536);

    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, MSG_PROBE_AIO, out, sizeof out), 1);
    ASSERT_HAS(out, "async I/O limit is exhausted (fs.aio-nr 65536 of fs.aio-max-nr 65536)");
    ASSERT_HAS(out, "sysctl -w fs.aio-max-nr=1048576");
    ASSERT_HAS(out, "on the node");
    ck_assert_uint_lt(strlen(out), sizeof out - 1); /* not truncated */

    /* After start, from the writer; the counters have recovered since. */
    f.aio_nr = 100;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_TOOMANY, MSG_WRITER_AIO, out, sizeof out), 1);
    ASSERT_HAS(out, "at start; now fs.aio-nr 100 of fs.aio-max-nr 65536");
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_TOOMANY, NULL, out, sizeof out), 1);

    /* A limit already large: suggest doubling it. */
    f.aio_nr = f.aio_max_nr = 1048576;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, MSG_PROBE_AIO, out, sizeof out), 1);
    ASSERT_HAS(out, "fs.aio-max-nr=2097152");

    /* Counters unreadable: the message is still the cause. */
    f.have_aio = false;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, MSG_PROBE_AIO, out, sizeof out), 1);
    ASSERT_HAS(out, "unreadable");
}
END_TEST

/* Without a message (a pre-start check) the counters alone decide; with an
 * unrelated message they do not. */
START_TEST(test_explain_aio_counters)
{
    char out[BL_DISKCHECK_MSG_SIZE];
    struct bl_diskcheck_facts f = facts(EXT4_MAGIC, 5 * GiB, 65536, 65536);

    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 1);
    ASSERT_HAS(out, "fs.aio-nr 65536 of fs.aio-max-nr 65536");
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, "", out, sizeof out), 1);
    f.aio_nr = 70000; /* over the limit after it was lowered */
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 1);
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_CORRUPT, "load closed segment 1-1: bad checksum",
                                          out, sizeof out),
                     0);
    ck_assert_str_eq(out, "");
    f.aio_nr = 65535; /* one event left is enough for raft's io_setup(1) */
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_explain_space)
{
    char out[BL_DISKCHECK_MSG_SIZE];
    struct bl_diskcheck_facts f = facts(EXT4_MAGIC, 0, 0, 65536);

    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, MSG_PROBE_FULL, out, sizeof out), 1);
    ASSERT_HAS(out, "data dir /var/lib/ballast/raft has 0 B free of 10 GiB");
    ASSERT_HAS(out, "8 MiB segments");
    ASSERT_HAS(out, "at least 17 MiB free");
    ASSERT_HAS(out, "grow the volume");

    /* The message alone, with the code lost on the way. */
    f.free_bytes = 3 * GiB + 512 * MiB;
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, MSG_SEGMENT_FULL, out, sizeof out), 1);
    ASSERT_HAS(out, "has 3.5 GiB free");
    ck_assert_int_eq(
        bl_diskcheck_explain(&f, RAFT_IOERR, "write: No space left on device", out, sizeof out), 1);
    ck_assert_int_eq(
        bl_diskcheck_explain(&f, RAFT_IOERR, "open: Disk quota exceeded", out, sizeof out), 1);

    /* Nearly full, whatever raft said; and as a pre-start check. */
    f.free_bytes = 5 * MiB;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, "fsync: I/O error", out, sizeof out), 1);
    ASSERT_HAS(out, "has 5 MiB free");
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 1);
    f.free_bytes = BL_DISKCHECK_START_MIN;
    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 0);

    /* A full tmpfs: grow it or leave memory. */
    f = facts(TMPFS_MAGIC, 40 * 1024, 0, 65536);
    f.total_bytes = MiB;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, MSG_SEGMENT_FULL, out, sizeof out), 1);
    ASSERT_HAS(out, "is on tmpfs (memory) with 40 KiB free of 1 MiB");
    ASSERT_HAS(out, "emptyDir without medium: Memory");

    /* No file system facts: still the cause, said without numbers. */
    f.have_fs = false;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, MSG_PROBE_FULL, out, sizeof out), 1);
    ASSERT_HAS(out, "is full");
}
END_TEST

/* tmpfs works with raft 0.15: alone it is no cause, only a warning. */
START_TEST(test_explain_tmpfs_is_no_cause)
{
    char out[BL_DISKCHECK_MSG_SIZE];
    struct bl_diskcheck_facts f = facts(TMPFS_MAGIC, 5 * GiB, 0, 65536);

    ck_assert_int_eq(bl_diskcheck_explain(&f, 0, NULL, out, sizeof out), 0);
    ck_assert_int_eq(
        bl_diskcheck_explain(&f, RAFT_IOERR, "probe Direct I/O: write: I/O error", out, sizeof out),
        0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(bl_diskcheck_warn(&f, out, sizeof out), 1);
    ASSERT_HAS(out, "/var/lib/ballast/raft is on tmpfs");
    ASSERT_HAS(out, "lost when the node reboots");

    f.fs_type = EXT4_MAGIC;
    ck_assert_int_eq(bl_diskcheck_warn(&f, out, sizeof out), 0);
    ck_assert_str_eq(out, "");
    f.fs_type = TMPFS_MAGIC;
    f.have_fs = false;
    ck_assert_int_eq(bl_diskcheck_warn(&f, out, sizeof out), 0);
}
END_TEST

START_TEST(test_explain_unsupported_fs)
{
    char out[BL_DISKCHECK_MSG_SIZE];
    struct bl_diskcheck_facts f = facts(RAMFS_MAGIC, 5 * GiB, 0, 65536);

    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR,
                                          "io: probe Direct I/O: unsupported file system: 858458f6",
                                          out, sizeof out),
                     1);
    ASSERT_HAS(out, "is on ramfs (f_type 0x858458f6), which refuses direct I/O");
    ASSERT_HAS(out, "ext4 or xfs");
    f.fs_type = 0x12345678;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, "io: unsupported file system: 12345678",
                                          out, sizeof out),
                     1);
    ASSERT_HAS(out, "an unknown file system (f_type 0x12345678)");
    f.have_fs = false;
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_IOERR, "io: unsupported file system: 12345678",
                                          out, sizeof out),
                     1);
    ASSERT_HAS(out, "refuses direct I/O");
}
END_TEST

START_TEST(test_explain_short_buffers)
{
    char out[16];
    struct bl_diskcheck_facts f = facts(EXT4_MAGIC, 0, 0, 65536);

    memset(out, 'x', sizeof out);
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, NULL, out, sizeof out), 1);
    ck_assert_uint_eq(strlen(out), sizeof out - 1);
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, NULL, out, 1), 1);
    ck_assert_str_eq(out, "");
    out[0] = 'x';
    ck_assert_int_eq(bl_diskcheck_explain(&f, RAFT_NOSPACE, NULL, out, 0), 1);
    ck_assert_int_eq(out[0], 'x');
}
END_TEST

/* ---- diagnosis on this system ------------------------------------------ */

START_TEST(test_gather_real)
{
    struct bl_diskcheck_facts f, parent;
    struct statfs st;
    char out[BL_DISKCHECK_MSG_SIZE];
    char path[160];

    bl_diskcheck_gather(tmp_root, &parent);
    ck_assert_ptr_eq(parent.dir, tmp_root);
    ck_assert(parent.have_fs);
    ck_assert_int_eq(statfs(tmp_root, &st), 0);
    ck_assert_uint_eq(parent.fs_type, (unsigned long)st.f_type);
    ck_assert_uint_gt(parent.total_bytes, 0);
    ck_assert_uint_le(parent.free_bytes, parent.total_bytes);
    if (access("/proc/sys/fs/aio-max-nr", R_OK) == 0) {
        ck_assert(parent.have_aio);
        ck_assert_uint_gt(parent.aio_max_nr, 0);
    }

    /* A dir not created yet: its nearest parent's file system. */
    snprintf(path, sizeof path, "%s/not/yet/raft", tmp_root);
    bl_diskcheck_gather(path, &f);
    ck_assert(f.have_fs);
    ck_assert_uint_eq(f.fs_type, parent.fs_type);
    bl_diskcheck_gather("no-such-relative-dir/raft", &f);
    ck_assert(f.have_fs);

    /* The whole path, as member.c would call it. */
    ck_assert_int_eq(bl_diskcheck_diagnose(path, RAFT_IOERR, MSG_PROBE_AIO, out, sizeof out), 1);
    ASSERT_HAS(out, "fs.aio-max-nr=");
}
END_TEST

/* A real tmpfs without mounting one: /dev/shm usually is. */
START_TEST(test_gather_tmpfs)
{
    struct bl_diskcheck_facts f;
    char out[BL_DISKCHECK_MSG_SIZE];
    struct statfs st;

    if (statfs("/dev/shm", &st) != 0 || (unsigned long)st.f_type != TMPFS_MAGIC) {
        fprintf(stderr, "test_gather_tmpfs: skipped, /dev/shm is not a tmpfs here\n");
        return;
    }
    bl_diskcheck_gather("/dev/shm/ballast-not-created/raft", &f);
    ck_assert(f.have_fs);
    ck_assert_uint_eq(f.fs_type, TMPFS_MAGIC);
    ck_assert_int_eq(bl_diskcheck_warn(&f, out, sizeof out), 1);
    ASSERT_HAS(out, "/dev/shm/ballast-not-created/raft is on tmpfs");
}
END_TEST

static Suite *diskcheck_suite(void)
{
    Suite *s = suite_create("diskcheck");
    TCase *tc = tcase_create("diskcheck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_disk_free_tmp);
    tcase_add_test(tc, test_disk_free_missing);
    tcase_add_test(tc, test_init);
    tcase_add_test(tc, test_admit_burst_stops_at_reserve);
    tcase_add_test(tc, test_admit_full_then_recovers);
    tcase_add_test(tc, test_admit_hook_file_missing_or_bad);
    tcase_add_test(tc, test_admit_real_file_system);
    tcase_add_test(tc, test_explain_aio);
    tcase_add_test(tc, test_explain_aio_counters);
    tcase_add_test(tc, test_explain_space);
    tcase_add_test(tc, test_explain_tmpfs_is_no_cause);
    tcase_add_test(tc, test_explain_unsupported_fs);
    tcase_add_test(tc, test_explain_short_buffers);
    tcase_add_test(tc, test_gather_real);
    tcase_add_test(tc, test_gather_tmpfs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(diskcheck_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
