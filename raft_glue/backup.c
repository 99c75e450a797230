/* Backups: write, check and restore (see backup.h for the file format).
 *
 * Write. LMDB can copy a consistent, compacted image of the environment
 * into any file descriptor, but the header must carry the image's own
 * "applied_index" (and the caller wants its revision), and a read taken
 * beside the copy could see a later commit. So the image goes to a scratch
 * directory first, is opened there as a store to read its meta values and
 * hashed, and only then is the backup written: header, then the image,
 * sequentially, so @fd may be a pipe. Cost: the image is written twice and
 * read twice (from the page cache, mostly); memory stays at one 1 MiB
 * buffer.
 *
 * Verify. Header first (magic, length against the file size), then the
 * image is copied into a scratch directory while it is hashed, and opened
 * there as a store: a checksum catches damage anywhere, the open catches
 * an image that is not LMDB (or a file without checksum), and the meta
 * values must agree with the header.
 *
 * Restore. The same checks, with the image copied straight into
 * DIR/store/data.mdb; then one write transaction resets "applied_index" to
 * 0 and empties the member table; then DIR/raft is bootstrapped by
 * canonical/raft itself (raft_init + raft_bootstrap + raft_close on a
 * private loop: the same files a founding member writes), then the marker
 * files. The data directory is checked to be new or empty before anything
 * is written, and every failure after that removes what was made, so a
 * failed restore never leaves a half data directory that a member would
 * start from.
 *
 * Failure modes: a short or failing write (disk full: BL_ENOSPACE), a
 * truncated or damaged file (BL_ECORRUPT, naming the check that failed), a
 * store that does not open (BL_ECORRUPT or BL_EIO from store.c). Scratch
 * directories are removed on every path. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nftw, mkdtemp, readlink */
#endif

#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "error.h"
#include "fsm.h"

#define COPY_BUF       (1024 * 1024)
#define SCRATCH_PREFIX ".ballast-backup-"
#define META_APPLIED   "applied_index"
#define META_REVISION  "revision"

_Static_assert(BL_BACKUP_HEADER == BL_SNAP_HEADER, "backup header is the snapshot header");
_Static_assert(sizeof BL_BACKUP_MAGIC == 8 && sizeof BL_SNAP_MAGIC == 8, "8-byte magic");

/* ---- small helpers ----------------------------------------------------------------------- */

static int fail(char *errmsg, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *errmsg, int code, const char *fmt, ...)
{
    if (errmsg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, BL_ERRMSG_SIZE, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The one translation of errno values here. */
static int from_errno(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return BL_ENOSPACE;
    case ENOMEM:
        return BL_ENOMEM;
    default:
        return BL_EIO;
    }
}

uint64_t bl_backup_fnv1a(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
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

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? errno : EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read exactly @len bytes at @off; 0, an errno value, or -1 at end of file. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno;
        }
        if (n == 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Copy @len bytes of @src at offset @off to @dst (from its position) and
 * hash them into *@fnv. @what names the pair in messages. */
static int copy_hash(int src, uint64_t off, uint64_t len, int dst, uint64_t *fnv, const char *what,
                     char *errmsg)
{
    uint8_t *buf = malloc(COPY_BUF);
    int rv = 0;
    if (buf == NULL) {
        return fail(errmsg, BL_ENOMEM, "%s: out of memory", what);
    }
    while (len > 0) {
        size_t n = len < COPY_BUF ? (size_t)len : COPY_BUF;
        int e = pread_all(src, buf, n, off);
        if (e != 0) {
            rv = e < 0 ? fail(errmsg, BL_ECORRUPT, "%s: file ends early", what)
                       : fail(errmsg, from_errno(e), "%s: read: %s", what, strerror(e));
            break;
        }
        *fnv = bl_backup_fnv1a(*fnv, buf, n);
        if (dst >= 0 && (e = write_all(dst, buf, n)) != 0) {
            rv = fail(errmsg, from_errno(e), "%s: write: %s", what, strerror(e));
            break;
        }
        off += n;
        len -= n;
    }
    free(buf);
    return rv;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_RDONLY | O_CLOEXEC);
    int e = 0;
    if (fd < 0) {
        return errno;
    }
    if (fsync(fd) != 0) {
        e = errno;
    }
    close(fd);
    return e;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    if (ftw->level == 0) {
        return 0; /* the root is handled by the caller */
    }
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove everything inside @dir, and @dir itself when @self. Best effort:
 * what is left is named in the caller's message, not retried. */
static int remove_tree(const char *dir, bool self)
{
    int rv = nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (rv != 0 && errno == ENOENT) {
        return 0;
    }
    if (rv == 0 && self && rmdir(dir) != 0 && errno != ENOENT) {
        rv = -1;
    }
    return rv;
}

/* mkdir -p @path (mode 0700). 0 or an errno value. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        return ENAMETOOLONG;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            return errno;
        }
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
        return errno;
    }
    return 0;
}

/* Make a scratch directory in @near (NULL: skip), else $TMPDIR, else /tmp,
 * into @out (PATH_MAX bytes). */
static int make_scratch(const char *near, char *out, char *errmsg)
{
    const char *cands[3] = {near, getenv("TMPDIR"), "/tmp"};
    int e = ENOENT;
    for (int i = 0; i < 3; i++) {
        if (cands[i] == NULL || cands[i][0] == '\0') {
            continue;
        }
        int n = snprintf(out, PATH_MAX, "%s/" SCRATCH_PREFIX "XXXXXX", cands[i]);
        if (n < 0 || n >= PATH_MAX) {
            e = ENAMETOOLONG;
            continue;
        }
        if (mkdtemp(out) != NULL) {
            return 0;
        }
        e = errno;
    }
    return fail(errmsg, from_errno(e), "create a scratch directory: %s", strerror(e));
}

/* The directory holding the file @fd refers to, from /proc/self/fd, into
 * @out (PATH_MAX bytes); NULL when it cannot be told. */
static const char *dir_of_fd(int fd, char *out)
{
    char link[64], target[PATH_MAX];
    struct stat st;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0 || target[0] != '/') {
        return NULL; /* a pipe, a socket, no /proc */
    }
    target[n] = '\0';
    char *slash = strrchr(target, '/');
    *slash = '\0';
    snprintf(out, PATH_MAX, "%s", slash == target ? "/" : target);
    return stat(out, &st) == 0 && S_ISDIR(st.st_mode) ? out : NULL;
}

/* The directory part of @path into @out (PATH_MAX bytes). */
static const char *dir_of_path(const char *path, char *out)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(out, PATH_MAX, "%s", dirname(tmp));
    return out;
}

/* ---- the image as a store ------------------------------------------------------------------ */

/* Open the store in @dir and read its applied index and revision. */
static int read_meta(const char *dir, uint64_t *applied, uint64_t *revision, char *errmsg)
{
    struct bl_store *s;
    struct bl_txn *t;
    char msg[BL_ERRMSG_SIZE];
    int rv = bl_store_open(dir, NULL, &s, msg);
    if (rv != 0) {
        return fail(errmsg, rv, "the image does not open as a store: %s", msg);
    }
    rv = bl_store_begin(s, false, &t);
    if (rv == 0) {
        rv = bl_store_meta_get(t, META_APPLIED, applied);
        if (rv == 0) {
            rv = bl_store_meta_get(t, META_REVISION, revision);
        }
        bl_store_abort(t);
    }
    if (rv != 0) {
        fail(errmsg, rv, "read the image's meta values: %s", bl_store_errmsg(s));
    }
    bl_store_close(s);
    return rv;
}

/* The image's applied index must be the header's: exactly for a backup,
 * at least for a file without checksum (a Raft snapshot may be ahead). */
static int check_applied(const struct bl_backup_info *h, uint64_t applied, char *errmsg)
{
    if (applied == h->applied_index || (h->checksum == 0 && applied > h->applied_index)) {
        return 0;
    }
    return fail(errmsg, BL_ECORRUPT,
                "the image's applied index %" PRIu64 " does not match the header's %" PRIu64,
                applied, h->applied_index);
}

/* ---- write ------------------------------------------------------------------------------------
 */

int bl_backup_write_fd(struct bl_store *s, int fd, struct bl_backup_info *info, char *errmsg)
{
    char near[PATH_MAX], scratch[PATH_MAX], image[PATH_MAX + 16];
    struct bl_backup_info bi = {0};
    uint8_t header[BL_BACKUP_HEADER];
    struct stat st;
    int ifd = -1, rv, e;

    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    rv = make_scratch(dir_of_fd(fd, near), scratch, errmsg);
    if (rv != 0) {
        return rv;
    }
    snprintf(image, sizeof image, "%s/data.mdb", scratch);
    ifd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (ifd < 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "create %s: %s", image, strerror(e));
        goto out;
    }
    /* Only the code: the store's message buffer belongs to its own thread. */
    rv = bl_store_copy_to_fd(s, ifd);
    if (rv != 0) {
        fail(errmsg, rv, "copy the store: %s", bl_strerror(rv));
        goto out;
    }
    rv = read_meta(scratch, &bi.applied_index, &bi.revision, errmsg);
    if (rv != 0) {
        goto out;
    }
    if (fstat(ifd, &st) != 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "stat %s: %s", image, strerror(e));
        goto out;
    }
    bi.image_len = (uint64_t)st.st_size;
    bi.checksum = BL_BACKUP_FNV_INIT;
    rv = copy_hash(ifd, 0, bi.image_len, -1, &bi.checksum, "hash the image", errmsg);
    if (rv != 0) {
        goto out;
    }

    memcpy(header, BL_BACKUP_MAGIC, 8);
    put_le64(header + 8, bi.applied_index);
    put_le64(header + 16, bi.image_len);
    put_le64(header + 24, bi.checksum);
    e = write_all(fd, header, sizeof header);
    if (e != 0) {
        rv = fail(errmsg, from_errno(e), "write the backup header: %s", strerror(e));
        goto out;
    }
    uint64_t again = BL_BACKUP_FNV_INIT;
    rv = copy_hash(ifd, 0, bi.image_len, fd, &again, "write the backup", errmsg);
    if (rv == 0 && again != bi.checksum) {
        rv = fail(errmsg, BL_EIO, "the scratch image changed while it was written");
    }
    if (rv == 0 && info != NULL) {
        *info = bi;
    }
out:
    if (ifd >= 0) {
        close(ifd);
    }
    remove_tree(scratch, true);
    return rv;
}

/* ---- verify -------------------------------------------------------------------------------- */

/* Open @path and check its header against its size; fills @h (revision 0). */
static int open_backup(const char *path, int *fdp, struct bl_backup_info *h, char *errmsg)
{
    uint8_t header[BL_BACKUP_HEADER];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), e;
    if (fd < 0) {
        e = errno;
        return fail(errmsg, e == ENOENT ? BL_EBADREQ : from_errno(e), "open %s: %s", path,
                    strerror(e));
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        return fail(errmsg, from_errno(e), "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(errmsg, BL_EBADREQ, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size < BL_BACKUP_HEADER) {
        close(fd);
        return fail(errmsg, BL_ECORRUPT,
                    "%s: %lld bytes, shorter than the %d-byte header of a backup", path,
                    (long long)st.st_size, BL_BACKUP_HEADER);
    }
    e = pread_all(fd, header, sizeof header, 0);
    if (e != 0) {
        close(fd);
        return fail(errmsg, e < 0 ? BL_ECORRUPT : from_errno(e), "read %s: %s", path,
                    e < 0 ? "file ends early" : strerror(e));
    }
    if (memcmp(header, BL_BACKUP_MAGIC, 8) != 0) {
        close(fd);
        return fail(errmsg, BL_ECORRUPT, "%s is not a Ballast backup (bad magic)", path);
    }
    memset(h, 0, sizeof *h);
    h->applied_index = get_le64(header + 8);
    h->image_len = get_le64(header + 16);
    h->checksum = get_le64(header + 24);
    if (h->image_len == 0 || h->image_len != (uint64_t)st.st_size - BL_BACKUP_HEADER) {
        close(fd);
        return fail(errmsg, BL_ECORRUPT,
                    "%s: the header announces %" PRIu64 " image bytes, the file has %lld "
                    "(truncated or not a whole backup)",
                    path, h->image_len, (long long)st.st_size - BL_BACKUP_HEADER);
    }
    *fdp = fd;
    return 0;
}

/* Copy the image of the open backup @fd into @dir/data.mdb (created; @dir
 * exists), hash it and check the checksum; fsync the copy when @sync. */
static int extract_image(int fd, const char *path, const struct bl_backup_info *h, const char *dir,
                         bool sync, char *errmsg)
{
    char image[PATH_MAX + 16];
    uint64_t fnv = BL_BACKUP_FNV_INIT;
    int e, rv;
    snprintf(image, sizeof image, "%s/data.mdb", dir);
    int out = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        e = errno;
        return fail(errmsg, from_errno(e), "create %s: %s", image, strerror(e));
    }
    rv = copy_hash(fd, BL_BACKUP_HEADER, h->image_len, out, &fnv, path, errmsg);
    if (rv == 0 && sync && fsync(out) != 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "fsync %s: %s", image, strerror(e));
    }
    if (close(out) != 0 && rv == 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "close %s: %s", image, strerror(e));
    }
    if (rv == 0 && h->checksum != 0 && fnv != h->checksum) {
        rv = fail(errmsg, BL_ECORRUPT,
                  "%s: checksum mismatch (header %016" PRIx64 ", image %016" PRIx64
                  "): the file is damaged",
                  path, h->checksum, fnv);
    }
    return rv;
}

int bl_backup_verify(const char *path, struct bl_backup_info *info, char *errmsg)
{
    char near[PATH_MAX], scratch[PATH_MAX];
    struct bl_backup_info h;
    uint64_t applied = 0;
    int fd = -1, rv;

    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    if (path == NULL || path[0] == '\0') {
        return fail(errmsg, BL_EBADREQ, "no backup file given");
    }
    rv = open_backup(path, &fd, &h, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = make_scratch(dir_of_path(path, near), scratch, errmsg);
    if (rv != 0) {
        close(fd);
        return rv;
    }
    rv = extract_image(fd, path, &h, scratch, false, errmsg);
    close(fd);
    if (rv == 0) {
        rv = read_meta(scratch, &applied, &h.revision, errmsg);
    }
    if (rv == 0) {
        rv = check_applied(&h, applied, errmsg);
        h.applied_index = applied; /* the image's own (ahead in a Raft snapshot) */
    }
    remove_tree(scratch, true);
    if (rv == 0 && info != NULL) {
        *info = h;
    }
    return rv;
}

/* ---- restore ------------------------------------------------------------------------------- */

struct id_list {
    uint64_t *ids;
    size_t n, cap;
};

static int collect_member(void *arg, uint64_t id, const void *rec, size_t len)
{
    struct id_list *l = arg;
    (void)rec;
    (void)len;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        uint64_t *ids = realloc(l->ids, cap * sizeof *ids);
        if (ids == NULL) {
            return BL_ENOMEM;
        }
        l->ids = ids;
        l->cap = cap;
    }
    l->ids[l->n++] = id;
    return 0;
}

/* In the store at @dir: check the meta values against the header, then in
 * one write transaction reset the applied index and empty the member
 * table. */
static int rewrite_store(const char *dir, const struct bl_backup_info *h, char *errmsg)
{
    struct bl_store *s;
    struct bl_txn *t;
    struct id_list members = {0};
    uint64_t applied = 0, revision = 0;
    char msg[BL_ERRMSG_SIZE];
    int rv = read_meta(dir, &applied, &revision, errmsg);
    if (rv == 0) {
        rv = check_applied(h, applied, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    rv = bl_store_open(dir, NULL, &s, msg);
    if (rv != 0) {
        return fail(errmsg, rv, "open the restored store: %s", msg);
    }
    rv = bl_store_begin(s, true, &t);
    if (rv != 0) {
        goto out;
    }
    rv = bl_store_meta_set(t, META_APPLIED, 0);
    if (rv == 0) {
        rv = bl_store_member_scan(t, collect_member, &members);
    }
    for (size_t i = 0; rv == 0 && i < members.n; i++) {
        rv = bl_store_member_del(t, members.ids[i]);
    }
    if (rv != 0) {
        bl_store_abort(t);
        goto out;
    }
    rv = bl_store_commit(t);
out:
    if (rv != 0) {
        fail(errmsg, rv, "reset the restored store: %s",
             rv == BL_ENOMEM ? "out of memory" : bl_store_errmsg(s));
    }
    free(members.ids);
    bl_store_close(s);
    return rv;
}

static void boot_closed_cb(struct raft *r)
{
    *(bool *)r->data = true;
}

static int boot_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    (void)result;
    return RAFT_NOTFOUND; /* never called: the instance is not started */
}

static int boot_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    (void)bufs;
    (void)n_bufs;
    return RAFT_NOTFOUND;
}

static int boot_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    (void)buf;
    return RAFT_NOTFOUND;
}

/* Bootstrap a one-voter configuration in the Raft directory @dir (exists,
 * empty) with canonical/raft's own code, on a private loop. */
static int bootstrap_raft(const char *dir, uint64_t id, const char *peer_url, char *errmsg)
{
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm = {1, NULL, boot_apply, boot_snapshot, boot_restore, NULL, NULL};
    struct raft raft;
    struct raft_configuration conf;
    bool closed = false;
    int rv;

    memset(&transport, 0, sizeof transport);
    memset(&io, 0, sizeof io);
    rv = uv_loop_init(&loop);
    if (rv != 0) {
        return fail(errmsg, BL_EIO, "raft bootstrap: loop: %s", uv_strerror(rv));
    }
    rv = raft_uv_tcp_init(&transport, &loop);
    if (rv != 0) {
        fail(errmsg, BL_EIO, "raft bootstrap: transport: %s", raft_strerror(rv));
        rv = BL_EIO;
        goto err_after_loop;
    }
    rv = raft_uv_init(&io, &loop, dir, &transport);
    if (rv != 0) {
        fail(errmsg, BL_EIO, "raft bootstrap: I/O in %.150s: %.80s", dir, io.errmsg);
        rv = BL_EIO;
        goto err_after_transport;
    }
    rv = raft_init(&raft, &io, &fsm, id, peer_url);
    if (rv != 0) {
        fail(errmsg, BL_EIO, "raft bootstrap: init: %.200s", raft_errmsg(&raft));
        raft_uv_close(&io);
        rv = BL_EIO;
        goto err_after_transport;
    }
    raft.data = &closed;
    raft_configuration_init(&conf);
    rv = raft_configuration_add(&conf, id, peer_url, RAFT_VOTER);
    if (rv == 0) {
        rv = raft_bootstrap(&raft, &conf);
        if (rv != 0) {
            fail(errmsg, rv == RAFT_NOSPACE ? BL_ENOSPACE : BL_EIO, "raft bootstrap: %.200s",
                 raft_errmsg(&raft)[0] != '\0' ? raft_errmsg(&raft) : raft_strerror(rv));
        }
    } else {
        fail(errmsg, BL_ENOMEM, "raft bootstrap: configuration: %s", raft_strerror(rv));
    }
    raft_configuration_close(&conf);
    rv = rv == 0 ? 0 : rv == RAFT_NOMEM ? BL_ENOMEM : rv == RAFT_NOSPACE ? BL_ENOSPACE : BL_EIO;
    /* Closing is asynchronous; raft_uv_close and raft_uv_tcp_close free
     * what is left once raft is closed, then the loop runs dry. */
    raft_close(&raft, boot_closed_cb);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    raft_uv_close(&io);
err_after_transport:
    raft_uv_tcp_close(&transport);
err_after_loop:
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0 && rv == 0) {
        rv = fail(errmsg, BL_EINTERNAL, "raft bootstrap: handles left open on the loop");
    }
    return rv;
}

/* Write @text into the new file @dir/@name and fsync it. */
static int write_marker(const char *dir, const char *name, const char *text, char *errmsg)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), e;
    if (fd < 0) {
        e = errno;
        return fail(errmsg, from_errno(e), "create %s: %s", path, strerror(e));
    }
    e = write_all(fd, text, strlen(text));
    if (e == 0 && fsync(fd) != 0) {
        e = errno;
    }
    if (close(fd) != 0 && e == 0) {
        e = errno;
    }
    return e == 0 ? 0 : fail(errmsg, from_errno(e), "write %s: %s", path, strerror(e));
}

/* "HOST:PORT" with a port 1..65535 and a host. */
static bool valid_peer_url(const char *s)
{
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    if (colon == NULL || colon == s || colon[1] == '\0' || strlen(s) > 255) {
        return false;
    }
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    return *end == '\0' && colon[1] >= '0' && colon[1] <= '9' && port >= 1 && port <= 65535;
}

/* 1 if @dir is an empty directory, 0 if it does not exist; else BL_EBADREQ
 * or an I/O error with the message set. */
static int check_data_dir(const char *dir, char *errmsg)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        int e = errno;
        return e == ENOENT ? 0 : fail(errmsg, from_errno(e), "%s: %s", dir, strerror(e));
    }
    if (!S_ISDIR(st.st_mode)) {
        return fail(errmsg, BL_EBADREQ, "data dir %s exists and is not a directory", dir);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return fail(errmsg, from_errno(e), "open data dir %s: %s", dir, strerror(e));
    }
    struct dirent *de;
    int rv = 1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            rv = fail(errmsg, BL_EBADREQ,
                      "data dir %s is not empty (it holds %s): restore into a new or empty "
                      "directory, never over a member's data",
                      dir, de->d_name);
            break;
        }
    }
    closedir(d);
    return rv;
}

int bl_backup_restore(const char *path, const char *data_dir, uint64_t id, const char *name,
                      const char *peer_url, char *errmsg)
{
    char sub[PATH_MAX + 16], text[32];
    struct bl_backup_info h;
    int fd = -1, rv, e;
    bool existed;

    if (path == NULL || path[0] == '\0' || data_dir == NULL || data_dir[0] == '\0') {
        return fail(errmsg, BL_EBADREQ, "restore needs a backup file and a data dir");
    }
    if (id == 0 || id > INT64_MAX) {
        return fail(errmsg, BL_EBADREQ, "member id %" PRIu64 " is out of range (1..2^63-1)", id);
    }
    if (!valid_peer_url(peer_url)) {
        return fail(errmsg, BL_EBADREQ, "peer address \"%.100s\" is not HOST:PORT",
                    peer_url != NULL ? peer_url : "");
    }
    if (strlen(data_dir) > PATH_MAX - 64) {
        return fail(errmsg, BL_EBADREQ, "data dir path is too long");
    }
    rv = open_backup(path, &fd, &h, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = check_data_dir(data_dir, errmsg);
    if (rv < 0) {
        close(fd);
        return rv;
    }
    existed = rv == 1;
    if (!existed && (e = mkdir_p(data_dir)) != 0) {
        close(fd);
        return fail(errmsg, from_errno(e), "create data dir %s: %s", data_dir, strerror(e));
    }

    /* From here on, a failure removes what was made. */
    snprintf(sub, sizeof sub, "%s/store", data_dir);
    if (mkdir(sub, 0700) != 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "create %s: %s", sub, strerror(e));
        goto err;
    }
    rv = extract_image(fd, path, &h, sub, true, errmsg);
    close(fd);
    fd = -1;
    if (rv == 0) {
        rv = rewrite_store(sub, &h, errmsg);
    }
    if (rv == 0 && (e = fsync_path(sub, O_DIRECTORY)) != 0) {
        rv = fail(errmsg, from_errno(e), "fsync %s: %s", sub, strerror(e));
    }
    if (rv != 0) {
        goto err;
    }
    snprintf(sub, sizeof sub, "%s/raft", data_dir);
    if (mkdir(sub, 0700) != 0) {
        e = errno;
        rv = fail(errmsg, from_errno(e), "create %s: %s", sub, strerror(e));
        goto err;
    }
    rv = bootstrap_raft(sub, id, peer_url, errmsg);
    if (rv != 0) {
        goto err;
    }
    snprintf(text, sizeof text, "%" PRIu64 "\n", id);
    rv = write_marker(data_dir, BL_BACKUP_ID_FILE, text, errmsg);
    if (rv == 0) {
        rv = write_marker(data_dir, BL_BACKUP_RESTORED_FILE, "", errmsg);
    }
    if (rv == 0 && (e = fsync_path(data_dir, O_DIRECTORY)) != 0) {
        rv = fail(errmsg, from_errno(e), "fsync %s: %s", data_dir, strerror(e));
    }
    if (rv != 0) {
        goto err;
    }
    (void)name; /* the member publishes its own --name */
    return 0;

err:
    if (fd >= 0) {
        close(fd);
    }
    if (remove_tree(data_dir, !existed) != 0 && errmsg != NULL) {
        size_t n = strlen(errmsg);
        snprintf(errmsg + n, BL_ERRMSG_SIZE - n, " (and %s could not be removed)", data_dir);
    }
    return rv;
}
