/* Disk checks for a member's data dir: free-space admission of writes, and
 * the diagnosis of start-up failures (see diskcheck.c).
 *
 * Admission. canonical/raft 0.15 reports RAFT_NOSPACE only when it fails to
 * preallocate a log segment, after the write was accepted; so the leader
 * asks a bl_diskcheck before it proposes a write that adds data, and answers
 * BL_ENOSPACE (507) once the data dir is down to its reserve. Deletes free
 * space and are always admitted: the caller simply does not ask for them.
 *
 * Diagnosis. When raft_uv_init, raft_init, raft_bootstrap or raft_start
 * fails, bl_diskcheck_diagnose() looks at the data dir's file system, its
 * free space and the kernel's async I/O counters, and says what to change.
 *
 * Test hook (tests only, never set it in production): if the environment
 * variable BALLAST_FAKE_FREE_FILE names a file when bl_diskcheck_init()
 * runs, the checker reads the number of free bytes from that file (decimal,
 * trailing whitespace allowed) instead of calling statvfs, once per period.
 * A missing file means "use the real statvfs". An integration test fills the
 * "disk" by writing 0 to the file and makes space again by writing a large
 * number; write it atomically (a temporary file renamed over it), since a
 * half-written file reads as an error. Only the checker honours the hook:
 * bl_disk_free() and the diagnosis always see the real file system. */
#ifndef BALLAST_DISKCHECK_H
#define BALLAST_DISKCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* canonical/raft 0.15's uv backend preallocates its log in open segments of
 * 8 MiB (UV__MAX_SEGMENT_SIZE in src/uv.h) and keeps 2 of them prepared
 * ahead of the writes (UV__TARGET_POOL_SIZE in src/uv_prepare.c). */
#define BL_DISKCHECK_SEGMENT_BYTES (8ULL << 20)
#define BL_DISKCHECK_SEGMENT_POOL  2

/* Default reserve, 80 MiB: the 2 segments raft prepares next (16 MiB), so
 * that a committed entry always finds its segment, plus 64 MiB for LMDB to
 * grow its data file while applying what was admitted (B-tree pages copied
 * on write, free-list pages, the request-id table) and for what is admitted
 * between two free-space samples but not yet on disk. */
#define BL_DISKCHECK_DEFAULT_RESERVE                                                               \
    (BL_DISKCHECK_SEGMENT_POOL * BL_DISKCHECK_SEGMENT_BYTES + (64ULL << 20))

/* Below this much free space a member cannot start and take writes: raft
 * must prepare its 2 segments, and LMDB needs its lock file and first pages
 * (17 MiB). A completely full file system is worse than an error: LMDB's
 * mdb_env_open dies of SIGBUS touching its memory-mapped lock file. */
#define BL_DISKCHECK_START_MIN                                                                     \
    (BL_DISKCHECK_SEGMENT_POOL * BL_DISKCHECK_SEGMENT_BYTES + (1ULL << 20))

/* statvfs is called at most once per this many milliseconds. */
#define BL_DISKCHECK_PERIOD_MS 100

/* Longest directory or hook file path, including the terminating NUL. */
#define BL_DISKCHECK_PATH_MAX 1024

/* Suggested size of the buffer given to bl_diskcheck_diagnose() and
 * bl_diskcheck_warn(); a shorter one truncates the message. */
#define BL_DISKCHECK_MSG_SIZE 512

/* The test hook's environment variable (see above). */
#define BL_DISKCHECK_FAKE_ENV "BALLAST_FAKE_FREE_FILE"

/* Free space in @dir available to unprivileged users: statvfs f_bavail *
 * f_frsize. Not f_bfree: that also counts the blocks ext4 reserves for root
 * (5% by default). CI runs as root, which may write into those blocks, so a
 * check on f_bfree would pass there and fail in a non-root deployment; and
 * as root, f_bavail leaves the root reserve to the system (journald, the
 * kubelet) instead of letting the store eat it.
 *
 * Returns BL_OK with *@free_bytes set, or BL_EIO (statvfs failed: @dir
 * missing, not a directory, not accessible) or BL_ENOMEM, with a message in
 * @errmsg (BL_ERRMSG_SIZE bytes). */
int bl_disk_free(const char *dir, uint64_t *free_bytes, char *errmsg);

/* A cached free-space checker for one data dir. Its fields are private;
 * it owns no resource, so it needs no close and may simply be dropped. Not
 * thread safe: use it from the loop thread only. */
struct bl_diskcheck {
    char dir[BL_DISKCHECK_PATH_MAX];
    char fake_file[BL_DISKCHECK_PATH_MAX]; /* "" unless the test hook is set */
    uint64_t reserve_bytes;
    uint64_t period_ms;
    bool sampled;        /* free_bytes and sampled_at are valid */
    uint64_t sampled_at; /* now_ms of the last sample */
    uint64_t free_bytes; /* free bytes at the last sample */
    uint64_t admitted;   /* bytes admitted since the last sample */
    char errmsg[BL_ERRMSG_SIZE];
};

/* Initialise @d for directory @dir (copied) with @reserve_bytes kept free
 * (0 means BL_DISKCHECK_DEFAULT_RESERVE), reading the test hook's variable
 * now. Nothing is checked yet: the first bl_diskcheck_admit() samples.
 *
 * Returns BL_OK, or BL_EBADREQ if @dir or the hook's path is longer than
 * BL_DISKCHECK_PATH_MAX - 1 bytes, with a message in @d->errmsg. */
int bl_diskcheck_init(struct bl_diskcheck *d, const char *dir, uint64_t reserve_bytes);

/* Admit a write that may add @write_bytes to the data dir: the caller's
 * estimate of its Raft log entry plus its growth of the store. @now_ms is a
 * monotonic clock in milliseconds (uv_now). Free space is sampled when
 * BL_DISKCHECK_PERIOD_MS have passed since the last sample; in between, the
 * bytes admitted are subtracted from the last sample, so a burst cannot run
 * through the reserve between two samples. A write is admitted if, after it,
 * the reserve would still be free. Deletes are not to be asked about.
 *
 * Returns BL_OK (the bytes are counted as used), BL_ENOSPACE (the write
 * would eat into the reserve; nothing is counted), or BL_EIO (statvfs or
 * the hook's file failed; retried on the next call), with a message in
 * @d->errmsg on error. */
int bl_diskcheck_admit(struct bl_diskcheck *d, uint64_t now_ms, uint64_t write_bytes);

/* What the diagnosis knows about a data dir. bl_diskcheck_gather() fills it
 * from the system; tests fill it by hand. */
struct bl_diskcheck_facts {
    const char *dir;       /* the data dir as given (borrowed) */
    bool have_fs;          /* statfs succeeded on dir or its nearest parent */
    unsigned long fs_type; /* statfs f_type (TMPFS_MAGIC is 0x01021994) */
    uint64_t free_bytes;   /* f_bavail * f_frsize */
    uint64_t total_bytes;  /* f_blocks * f_frsize */
    bool have_aio;         /* /proc/sys/fs/aio-nr and aio-max-nr were read */
    uint64_t aio_nr;       /* async I/O events reserved system-wide */
    uint64_t aio_max_nr;   /* the system-wide limit */
};

/* Fill @f for @dir (borrowed by @f->dir: it must outlive @f). If @dir does
 * not exist, the file system facts are those of its nearest existing parent.
 * Facts that cannot be read are marked absent (have_fs, have_aio false). */
void bl_diskcheck_gather(const char *dir, struct bl_diskcheck_facts *f);

/* Explain a start-up failure from @f: @raft_rv is the RAFT_* code the
 * failing call returned (0 if unknown) and @raft_errmsg its message
 * (raft_errmsg() or the raft_io's errmsg; NULL or "" if unknown). With
 * @raft_rv 0 and no message this is a pre-start check of @f. Known causes,
 * in this order: the kernel's async I/O limit exhausted; the file system
 * full or nearly so (with advice for tmpfs); a file system on which raft
 * 0.15 refuses to run. A tmpfs data dir is not a cause: raft 0.15 runs on it.
 *
 * Writes a NUL-terminated message saying what to change into @out (@len
 * bytes, truncated if needed; "" when nothing is known) and returns 1 if it
 * found a known cause, 0 otherwise. */
int bl_diskcheck_explain(const struct bl_diskcheck_facts *f, int raft_rv, const char *raft_errmsg,
                         char *out, size_t len);

/* bl_diskcheck_gather() then bl_diskcheck_explain() for @dir, the Raft
 * directory that was given to raft_uv_init. Returns 1 or 0 likewise. */
int bl_diskcheck_diagnose(const char *dir, int raft_rv, const char *raft_errmsg, char *out,
                          size_t len);

/* A warning worth logging at start even when everything works: the data dir
 * is on tmpfs, so the Raft log and the store live in memory and are lost
 * when the node reboots. Writes it into @out (@len bytes, "" if none) and
 * returns 1 if there is one, 0 otherwise. */
int bl_diskcheck_warn(const struct bl_diskcheck_facts *f, char *out, size_t len);

#endif /* BALLAST_DISKCHECK_H */
