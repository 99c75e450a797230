/* canonical/raft FSM glue: decode, apply, snapshot, restore (see fsm.h).
 *
 * Failure modes: an entry that does not decode is RAFT_MALFORMED (a bug or
 * corruption: the member stops applying rather than skip a committed entry);
 * a storage error while applying returns an error to raft, which leaves the
 * entry unapplied to be retried, so nothing committed is ever skipped. A
 * snapshot that fails to copy is reported to raft, which simply tries again
 * at the next threshold; a restore that fails leaves the old store intact. */
#include "fsm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashpoint.h"
#include "error.h"
#include "log.h"

static struct bl_fsm *fsm_of(struct raft_fsm *fsm)
{
    return fsm->data;
}

/* Translate a Ballast code into raft's table (storage errors only). */
static int to_raft(int rv)
{
    switch (rv) {
    case BL_ENOMEM:
        return RAFT_NOMEM;
    case BL_ENOSPACE:
        return RAFT_NOSPACE;
    case BL_EMALFORMED:
        return RAFT_MALFORMED;
    case BL_ECORRUPT:
        return RAFT_CORRUPT;
    default:
        return RAFT_IOERR;
    }
}

static int apply_batch(struct bl_fsm *f, uint64_t index, const struct raft_buffer *buf,
                       void **result)
{
    struct bl_slice slices[BL_BATCH_MAX];
    char msg[256];
    uint32_t n = 0;
    int rv;

    if (f->batch_cmds == NULL) {
        f->batch_cmds = calloc(BL_BATCH_MAX, sizeof *f->batch_cmds);
        f->batch_res = calloc(BL_BATCH_MAX, sizeof *f->batch_res);
        if (f->batch_cmds == NULL || f->batch_res == NULL) {
            return RAFT_NOMEM; /* retried: nothing was applied */
        }
    }
    rv = bl_batch_decode(buf->base, buf->len, slices, &n, msg);
    for (uint32_t k = 0; rv == 0 && k < n; k++) {
        rv = bl_cmd_decode(slices[k].p, slices[k].len, &f->batch_cmds[k], msg);
    }
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "batch entry %llu does not decode: %.200s",
                 (unsigned long long)index, msg);
        BL_ERROR("fsm: %s", f->errmsg);
        return RAFT_MALFORMED;
    }
    rv = bl_apply_batch(&f->applier, index, f->batch_cmds, n, f->batch_res);
    if (rv != 0) {
        memcpy(f->errmsg, f->applier.errmsg, sizeof f->errmsg);
        BL_ERROR("fsm: %s", f->errmsg);
        return to_raft(rv);
    }
    for (uint32_t k = 0; k < n; k++) {
        const struct bl_apply_result *r = &f->batch_res[k];
        if (!r->replayed && !r->skipped) {
            f->revision = r->revision;
        }
        if (f->on_apply != NULL && !r->skipped) {
            f->on_apply(f->hook_arg, r);
        }
    }
    f->applied_index = index;
    f->batch.n = n;
    f->batch.res = f->batch_res;
    *result = &f->batch;
    return 0;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct bl_fsm *f = fsm_of(fsm);
    uint64_t index = f->raft->last_applied + 1;
    struct bl_cmd cmd;
    char msg[256];
    int rv;

    if (bl_cmd_is_batch(buf->base, buf->len)) {
        return apply_batch(f, index, buf, result);
    }

    rv = bl_cmd_decode(buf->base, buf->len, &cmd, msg);
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "entry %llu does not decode: %.200s",
                 (unsigned long long)index, msg);
        BL_ERROR("fsm: %s", f->errmsg);
        return RAFT_MALFORMED;
    }
    rv = bl_apply(&f->applier, index, &cmd, &f->last);
    if (rv != 0) {
        memcpy(f->errmsg, f->applier.errmsg, sizeof f->errmsg);
        BL_ERROR("fsm: %s", f->errmsg);
        return to_raft(rv);
    }
    /* A replayed result carries the revision of the first attempt; the store
     * itself did not move. */
    if (!f->last.replayed && !f->last.skipped) {
        f->revision = f->last.revision;
    }
    f->applied_index = index;
    *result = &f->last;
    if (f->on_apply != NULL && !f->last.skipped) {
        f->on_apply(f->hook_arg, &f->last);
    }
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct bl_fsm *f = fsm_of(fsm);
    struct bl_txn *txn;
    int rv;

    BL_CRASH_POINT(BL_CRASH_SNAPSHOT_TAKE_BEFORE);
    rv = bl_store_begin(f->store, false, &txn);
    if (rv != 0) {
        return to_raft(rv);
    }
    rv = bl_store_meta_get(txn, "applied_index", &f->snap_applied);
    bl_store_abort(txn);
    if (rv != 0) {
        return to_raft(rv);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* A scratch file for a snapshot image: unlinked from the start, in
 * @dir (the data dir: a disk, not memory). -1 on error. */
static int scratch_file(const char *dir)
{
    char path[4200];
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
        return fd;
    }
    snprintf(path, sizeof path, "%s/.snapshot-XXXXXX", dir); /* no O_TMPFILE here */
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

/* Runs on a libuv worker thread: copy the store into one raft buffer, the
 * header and the LMDB image in a scratch file of the data dir, mapped
 * read-only. So the snapshot costs page cache the kernel can reclaim, not
 * process memory the size of the store (canonical/raft 0.15 keeps the
 * buffer until it has written the snapshot; its LZ4 compression, left on,
 * still holds the compressed copy in memory meanwhile: a fraction of the
 * store for compressible data, and the snapshot files on disk shrink by
 * the same). fsm_snapshot_finalize() unmaps it. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct bl_fsm *f = fsm_of(fsm);
    uint8_t header[BL_SNAP_HEADER] = {0};
    struct raft_buffer *b = NULL;
    struct stat st;
    void *map;
    int fd, rv;

    fd = scratch_file(f->scratch_dir != NULL ? f->scratch_dir : "/tmp");
    if (fd < 0) {
        return errno == ENOSPC ? RAFT_NOSPACE : RAFT_IOERR;
    }
    if (write(fd, header, sizeof header) != (ssize_t)sizeof header) {
        rv = RAFT_IOERR;
        goto out;
    }
    rv = bl_store_copy_to_fd(f->store, fd);
    if (rv != 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < BL_SNAP_HEADER) {
        rv = rv != 0 ? to_raft(rv) : RAFT_IOERR;
        goto out;
    }
    memcpy(header, BL_SNAP_MAGIC, 8);
    put_le64(header + 8, f->snap_applied);
    put_le64(header + 16, (uint64_t)st.st_size - BL_SNAP_HEADER);
    if (pwrite(fd, header, sizeof header, 0) != (ssize_t)sizeof header) {
        rv = RAFT_IOERR;
        goto out;
    }
    b = raft_malloc(sizeof *b);
    if (b == NULL) {
        rv = RAFT_NOMEM;
        goto out;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        raft_free(b);
        rv = RAFT_NOMEM;
        goto out;
    }
    b->base = map;
    b->len = (size_t)st.st_size;
    *bufs = b;
    *n_bufs = 1;
    rv = 0;
out:
    close(fd); /* the mapping keeps the file */
    return rv;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct bl_fsm *f = fsm_of(fsm);
    if (*bufs != NULL) {
        for (unsigned i = 0; i < *n_bufs; i++) {
            munmap((*bufs)[i].base, (*bufs)[i].len); /* mapped by fsm_snapshot_async */
        }
        raft_free(*bufs);
        BL_CRASH_POINT(BL_CRASH_SNAPSHOT_TAKE_AFTER);
        f->snapshots_taken++;
        BL_INFO("fsm: snapshot taken (store applied index %llu)",
                (unsigned long long)f->snap_applied);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct bl_fsm *f = fsm_of(fsm);
    const uint8_t *p = buf->base;
    uint64_t snap_applied, len, applied = 0;
    struct bl_txn *txn;
    int rv;

    if (buf->len < BL_SNAP_HEADER || memcmp(p, BL_SNAP_MAGIC, 8) != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "restore: not a Ballast snapshot");
        BL_ERROR("fsm: %s", f->errmsg);
        return RAFT_MALFORMED;
    }
    snap_applied = get_le64(p + 8);
    len = get_le64(p + 16);
    if (len != buf->len - BL_SNAP_HEADER) {
        snprintf(f->errmsg, sizeof f->errmsg, "restore: snapshot length %llu, expected %llu",
                 (unsigned long long)(buf->len - BL_SNAP_HEADER), (unsigned long long)len);
        BL_ERROR("fsm: %s", f->errmsg);
        return RAFT_MALFORMED;
    }
    rv = bl_store_begin(f->store, false, &txn);
    if (rv == 0) {
        rv = bl_store_meta_get(txn, "applied_index", &applied);
        bl_store_abort(txn);
    }
    if (rv != 0) {
        return to_raft(rv);
    }
    if (applied >= snap_applied) {
        BL_INFO("fsm: store already at applied index %llu >= snapshot's %llu: kept",
                (unsigned long long)applied, (unsigned long long)snap_applied);
        raft_free(buf->base);
        return 0;
    }
    BL_CRASH_POINT(BL_CRASH_SNAPSHOT_INSTALL_BEFORE);
    rv = bl_store_replace(f->store, p + BL_SNAP_HEADER, (size_t)len);
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "restore: %s", bl_store_errmsg(f->store));
        BL_ERROR("fsm: %s", f->errmsg);
        return to_raft(rv);
    }
    BL_CRASH_POINT(BL_CRASH_SNAPSHOT_INSTALL_AFTER);
    f->restores++;
    rv = bl_store_begin(f->store, false, &txn);
    if (rv == 0) {
        rv = bl_store_meta_get(txn, "revision", &f->revision);
        bl_store_abort(txn);
    }
    if (rv != 0) {
        return to_raft(rv);
    }
    BL_INFO("fsm: store replaced from snapshot (applied index %llu -> >= %llu, %llu bytes)",
            (unsigned long long)applied, (unsigned long long)snap_applied, (unsigned long long)len);
    raft_free(buf->base);
    if (f->on_restore != NULL) {
        f->on_restore(f->hook_arg);
    }
    return 0;
}

void bl_fsm_init(struct bl_fsm *f, struct bl_store *store)
{
    memset(f, 0, sizeof *f);
    f->store = store;
    bl_applier_init(&f->applier, store);
    f->fsm.version = 3;
    f->fsm.data = f;
    f->fsm.apply = fsm_apply;
    f->fsm.snapshot = fsm_snapshot;
    f->fsm.restore = fsm_restore;
    f->fsm.snapshot_finalize = fsm_snapshot_finalize;
    f->fsm.snapshot_async = fsm_snapshot_async;
}

void bl_fsm_close(struct bl_fsm *f)
{
    bl_applier_close(&f->applier);
    free(f->batch_cmds);
    free(f->batch_res);
    f->batch_cmds = NULL;
    f->batch_res = NULL;
}
