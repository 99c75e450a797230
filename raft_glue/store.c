/* The LMDB store: tables, records, transactions, snapshots in and out.
 *
 * Happy path. bl_store_open() creates the directory (mkdir -p, mode 0700),
 * opens one LMDB environment in it (MDB_NOTLS so read transactions may move
 * between threads, MDB_NORDAHEAD, MDB_NOSYNC | MDB_WRITEMAP when the caller
 * says the Raft log is the durable record) and opens or creates five named tables in one
 * write transaction. Every other call works inside a bl_txn, a thin wrapper
 * of an MDB_txn: read transactions get a malloc'd wrapper, the one write
 * transaction LMDB allows at a time reuses a wrapper kept in the store
 * (filled only after mdb_txn_begin() returned, i.e. while holding LMDB's
 * writer lock, so two threads never share it).
 *
 * Records. All integers in records are little endian; keys that must sort
 * numerically are big endian.
 *   kv       LMDB key: the user key when it has at most BL_STORE_INLINE_KEY
 *            (480) bytes, else its first 480 bytes followed by an 8-byte
 *            big-endian hash of the whole key (FNV-1a 64 with a murmur3
 *            finaliser), 488 bytes, below LMDB's 511-byte limit.
 *            Value: a 36-byte header
 *              create_rev u64 | mod_rev u64 | version u64 | lease u64 |
 *              key_len u32
 *            then the key_len bytes of the full key, then the value bytes.
 *            Every record read is checked (sizes, the stored key against the
 *            LMDB key and its hash); one that does not fit is BL_ECORRUPT.
 *   meta     the bytes of a C string name -> u64 (8 bytes); absent reads 0.
 *   members  big-endian u64 member id -> opaque record.
 *   reqids   request id -> revision u64 | opaque result record.
 *   reqrev   big-endian u64 revision ++ request id -> empty, the same
 *            entries in revision order, so pruning walks from the front.
 *
 * Long keys. Two keys longer than 480 bytes with the same first 480 bytes
 * and the same 64-bit hash would share an LMDB key. A lookup of one finds
 * the other's record, sees that the stored full key differs and answers
 * BL_ENOTFOUND; a put of one while the other exists fails with BL_EINTERNAL
 * ("hash collision"), changing nothing. With a 64-bit hash this needs on
 * the order of 2^32 such keys under one 480-byte prefix.
 *
 * Order and scans. LMDB compares keys bytewise (shorter first on a tie),
 * which is exactly the bytewise order of user keys except among long keys
 * that share their first 480 bytes: those follow their hash. A scan walks
 * LMDB order. It starts with MDB_SET_RANGE at the later of the prefix's
 * LMDB form (the prefix cut to 480 bytes) and @after's LMDB key, skips an
 * entry equal to @after's LMDB key, and stops at the first LMDB key that
 * does not start with the cut prefix; with a prefix over 480 bytes, entries
 * whose full key lacks the prefix are skipped on the way. "Strictly after
 * @after" is taken in that same store order, not bytewise: for keys up to
 * 480 bytes the two are the same, and for long keys it is what keeps
 * pagination exact (a page ending at a long key K resumes right after K even
 * if a key bytewise greater than K hashed before it). A scan callback must
 * not write to the kv table in the scan's transaction (collect, then write).
 *
 * Limits. Keys are 1..BL_KEY_MAX bytes (else BL_EBADREQ), as are scan
 * prefixes and @after (0..BL_KEY_MAX); meta names 1..480 bytes; request
 * ids 1..256 bytes.
 *
 * Errors. LMDB and errno codes are translated in one place, from_mdb():
 * MDB_NOTFOUND -> BL_ENOTFOUND; MDB_MAP_FULL, ENOSPC, EDQUOT -> BL_ENOSPACE;
 * MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, MDB_VERSION_MISMATCH ->
 * BL_ECORRUPT; ENOMEM -> BL_ENOMEM; anything else -> BL_EIO. Every error
 * but "not found" (an answer, not a failure) leaves "what: why" in the
 * store's errmsg, e.g. "kv put: MDB_MAP_FULL: Environment mapsize limit
 * reached". errmsg is one buffer per store: it describes the last error on
 * the thread that owns the store, and is not meant to be read from others.
 * After a failed LMDB write the write transaction is unusable; the caller
 * aborts it (a failed commit frees it by itself).
 *
 * Replacing the contents (snapshot install). bl_store_replace() writes the
 * image to DIR.tmp-replace/data.mdb, fsyncs file and directory, and checks
 * it by opening it read-only (every page up to its last page number must lie
 * inside the image, the five tables must exist, "applied_index" must read).
 * Only then does it close the live environment, rename DIR to DIR.old and
 * DIR.tmp-replace to DIR (the commit point), fsync the parent, remove
 * DIR.old and reopen into the same struct bl_store, so DBI handles are
 * refreshed. A failure before the commit point reopens the old directory
 * and returns the error; a failure to reopen after it leaves the store
 * closed (every call, replace included, then fails with BL_EIO until the
 * store is closed and opened again) and is returned. An image that
 * passes the check but has damaged pages inside is beyond what LMDB can
 * detect on open; snapshots are expected to be integrity-checked by their
 * transport.
 *
 * Crash in the middle of a replace. bl_store_open() looks at the three
 * names before it opens anything:
 *   DIR present       DIR is complete (it was either never moved or is the
 *                     renamed, verified image): use it; remove any
 *                     DIR.tmp-replace and DIR.old left behind.
 *   DIR missing,      the crash came between the two renames, before the
 *   DIR.old present   commit point: roll back by renaming DIR.old to DIR,
 *                     then remove DIR.tmp-replace.
 *   neither           a new store (a stray DIR.tmp-replace is removed: it
 *                     cannot be known complete).
 * Raft installs the snapshot again after a restart if it still needs it.
 * Removing leftovers at open is best effort; bl_store_replace() removes
 * them again, strictly, before it starts. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strndup, dirfd, O_CLOEXEC, O_DIRECTORY */
#endif

#include "store.h"

#include "command.h" /* BL_KEY_MAX */
#include "crashpoint.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define MAX_DBS          16
#define LONG_KEY_SIZE    (BL_STORE_INLINE_KEY + 8)
#define KV_HEADER        36  /* bytes before the key in a kv record */
#define REQID_MAX        256 /* bytes; reqrev keys are 8 more */
#define TMP_SUFFIX       ".tmp-replace"
#define OLD_SUFFIX       ".old"
#define DATA_FILE        "data.mdb"
#define LOCK_FILE        "lock.mdb"
#define UNSYNCED_FILE    "unsynced"
#define BOOT_ID_PATH     "/proc/sys/kernel/random/boot_id"

struct bl_txn {
    MDB_txn *txn;
    struct bl_store *s;
    bool write;
};

struct bl_store {
    MDB_env *env; /* NULL only after a replace that could not reopen */
    MDB_dbi kv;
    MDB_dbi meta;
    MDB_dbi members;
    MDB_dbi reqids;
    MDB_dbi reqrev;
    MDB_dbi history;
    MDB_dbi leases;
    MDB_dbi lkeys;
    struct bl_store_opts opts;
    char *dir;          /* DIR, without trailing slashes */
    char *tmp_dir;      /* DIR.tmp-replace */
    char *tmp_data;     /* DIR.tmp-replace/data.mdb */
    char *old_dir;      /* DIR.old */
    char *parent;       /* the directory holding DIR */
    struct bl_txn wtxn; /* the wrapper of the current write transaction */
    bool discarded;     /* no_sync: open found the store unsynced across a reboot */
    char errmsg[BL_ERRMSG_SIZE];
};

/* ---- errors -------------------------------------------------------------- */

static void set_msg(struct bl_store *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void set_msg(struct bl_store *s, const char *fmt, va_list ap)
{
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
}

/* Record an error of our own making. Returns @code. */
static int set_err(struct bl_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(struct bl_store *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_msg(s, fmt, ap);
    va_end(ap);
    return code;
}

/* The one translation of LMDB (and errno) codes. @what says where. */
static int from_mdb(struct bl_store *s, int rc, const char *what, ...)
    __attribute__((format(printf, 3, 4)));

static int from_mdb(struct bl_store *s, int rc, const char *what, ...)
{
    int code;
    switch (rc) {
    case MDB_SUCCESS:
        return BL_OK;
    case MDB_NOTFOUND:
        return BL_ENOTFOUND; /* an answer, not a failure: no message */
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
        code = BL_ENOSPACE;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        code = BL_ECORRUPT;
        break;
    case ENOMEM:
        code = BL_ENOMEM;
        break;
    default:
        code = BL_EIO;
        break;
    }
    va_list ap;
    va_start(ap, what);
    set_msg(s, what, ap);
    va_end(ap);
    /* Then ": why"; mdb_strerror() also knows errno values. */
    size_t n = strlen(s->errmsg);
    snprintf(s->errmsg + n, sizeof s->errmsg - n, ": %s", mdb_strerror(rc));
    return code;
}

/* ---- byte order and hashing ------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* FNV-1a 64 over @len bytes, then murmur3's finaliser to spread the bits. */
static uint64_t key_hash(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* ---- kv records -------------------------------------------------------------- */

/* The LMDB key of user key @key: the key itself, or built in @buf. */
static MDB_val kv_lmdb_key(const uint8_t *key, size_t len, uint8_t buf[LONG_KEY_SIZE])
{
    MDB_val v;
    if (len <= BL_STORE_INLINE_KEY) {
        v.mv_data = (void *)key;
        v.mv_size = len;
        return v;
    }
    memcpy(buf, key, BL_STORE_INLINE_KEY);
    put_be64(buf + BL_STORE_INLINE_KEY, key_hash(key, len));
    v.mv_data = buf;
    v.mv_size = LONG_KEY_SIZE;
    return v;
}

/* Parse and check the kv record @d stored under LMDB key @k. */
static int kv_decode(struct bl_store *s, const MDB_val *k, const MDB_val *d, struct bl_kv *out)
{
    const uint8_t *p = d->mv_data;
    const uint8_t *lk = k->mv_data;
    if (d->mv_size < KV_HEADER) {
        return set_err(s, BL_ECORRUPT, "kv record: %zu bytes, shorter than its header", d->mv_size);
    }
    size_t key_len = (size_t)get_le(p + 32, 4);
    if (key_len == 0 || key_len > BL_KEY_MAX || key_len > d->mv_size - KV_HEADER) {
        return set_err(s, BL_ECORRUPT, "kv record: key length %zu in a record of %zu bytes",
                       key_len, d->mv_size);
    }
    const uint8_t *key = p + KV_HEADER;
    bool ok;
    if (key_len <= BL_STORE_INLINE_KEY) {
        ok = k->mv_size == key_len && memcmp(lk, key, key_len) == 0;
    } else {
        ok = k->mv_size == LONG_KEY_SIZE && memcmp(lk, key, BL_STORE_INLINE_KEY) == 0 &&
             get_be64(lk + BL_STORE_INLINE_KEY) == key_hash(key, key_len);
    }
    if (!ok) {
        return set_err(s, BL_ECORRUPT,
                       "kv record: stored key (%zu bytes) does not match its "
                       "LMDB key (%zu bytes)",
                       key_len, k->mv_size);
    }
    out->create_revision = get_le(p, 8);
    out->mod_revision = get_le(p + 8, 8);
    out->version = get_le(p + 16, 8);
    out->lease = get_le(p + 24, 8);
    out->key = key;
    out->key_len = key_len;
    out->value = key + key_len;
    out->value_len = d->mv_size - KV_HEADER - key_len;
    return BL_OK;
}

static bool same_key(const struct bl_kv *kv, const void *key, size_t len)
{
    return kv->key_len == len && memcmp(kv->key, key, len) == 0;
}

int bl_store_kv_get(struct bl_txn *t, const void *key, size_t key_len, struct bl_kv *out)
{
    struct bl_store *s = t->s;
    uint8_t buf[LONG_KEY_SIZE];
    MDB_val d;
    if (key == NULL || key_len == 0 || key_len > BL_KEY_MAX) {
        return set_err(s, BL_EBADREQ, "kv get: key of %zu bytes", key_len);
    }
    MDB_val k = kv_lmdb_key(key, key_len, buf);
    int rc = mdb_get(t->txn, s->kv, &k, &d);
    if (rc != 0) {
        return from_mdb(s, rc, "kv get");
    }
    int rv = kv_decode(s, &k, &d, out);
    if (rv != 0) {
        return rv;
    }
    /* A different long key with the same LMDB key (hash collision). */
    return same_key(out, key, key_len) ? BL_OK : BL_ENOTFOUND;
}

int bl_store_kv_put(struct bl_txn *t, const struct bl_kv *kv)
{
    struct bl_store *s = t->s;
    uint8_t buf[LONG_KEY_SIZE];
    MDB_val d;
    int rc;
    if (kv->key == NULL || kv->key_len == 0 || kv->key_len > BL_KEY_MAX) {
        return set_err(s, BL_EBADREQ, "kv put: key of %zu bytes", kv->key_len);
    }
    if (kv->value_len > SIZE_MAX - KV_HEADER - BL_KEY_MAX ||
        (kv->value == NULL && kv->value_len > 0)) {
        return set_err(s, BL_EBADREQ, "kv put: value of %zu bytes", kv->value_len);
    }
    MDB_val k = kv_lmdb_key(kv->key, kv->key_len, buf);
    if (kv->key_len > BL_STORE_INLINE_KEY) {
        struct bl_kv old;
        rc = mdb_get(t->txn, s->kv, &k, &d);
        if (rc == 0) {
            int rv = kv_decode(s, &k, &d, &old);
            if (rv != 0) {
                return rv;
            }
            if (!same_key(&old, kv->key, kv->key_len)) {
                return set_err(s, BL_EINTERNAL,
                               "kv put: hash collision between two keys of %zu and %zu bytes "
                               "sharing their first %d bytes",
                               kv->key_len, old.key_len, BL_STORE_INLINE_KEY);
            }
        } else if (rc != MDB_NOTFOUND) {
            return from_mdb(s, rc, "kv put: lookup");
        }
    }
    d.mv_size = KV_HEADER + kv->key_len + kv->value_len;
    d.mv_data = NULL;
    rc = mdb_put(t->txn, s->kv, &k, &d, MDB_RESERVE);
    if (rc != 0) {
        return from_mdb(s, rc, "kv put");
    }
    uint8_t *p = d.mv_data;
    put_le(p, kv->create_revision, 8);
    put_le(p + 8, kv->mod_revision, 8);
    put_le(p + 16, kv->version, 8);
    put_le(p + 24, kv->lease, 8);
    put_le(p + 32, kv->key_len, 4);
    memcpy(p + KV_HEADER, kv->key, kv->key_len);
    if (kv->value_len > 0) {
        memcpy(p + KV_HEADER + kv->key_len, kv->value, kv->value_len);
    }
    return BL_OK;
}

int bl_store_kv_del(struct bl_txn *t, const void *key, size_t key_len)
{
    struct bl_store *s = t->s;
    uint8_t buf[LONG_KEY_SIZE];
    if (key == NULL || key_len == 0 || key_len > BL_KEY_MAX) {
        return set_err(s, BL_EBADREQ, "kv del: key of %zu bytes", key_len);
    }
    if (key_len > BL_STORE_INLINE_KEY) {
        /* Make sure the record under this LMDB key is this key's. */
        struct bl_kv old;
        int rv = bl_store_kv_get(t, key, key_len, &old);
        if (rv != 0) {
            return rv;
        }
    }
    MDB_val k = kv_lmdb_key(key, key_len, buf);
    int rc = mdb_del(t->txn, s->kv, &k, NULL);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "kv del");
}

static bool has_prefix(const void *p, size_t len, const void *prefix, size_t prefix_len)
{
    return prefix_len == 0 || (len >= prefix_len && memcmp(p, prefix, prefix_len) == 0);
}

int bl_store_kv_scan(struct bl_txn *t, const void *prefix, size_t prefix_len, const void *after,
                     size_t after_len, bl_kv_scan_cb cb, void *arg)
{
    struct bl_store *s = t->s;
    uint8_t buf[LONG_KEY_SIZE];
    MDB_cursor *cur;
    MDB_val k = {0, NULL}, d, ak = {0, NULL};
    MDB_cursor_op op;
    int rc, rv = BL_OK;

    if (prefix_len > BL_KEY_MAX || after_len > BL_KEY_MAX || (prefix == NULL && prefix_len > 0) ||
        (after == NULL && after_len > 0)) {
        return set_err(s, BL_EBADREQ, "kv scan: prefix of %zu or after of %zu bytes", prefix_len,
                       after_len);
    }
    /* The LMDB form of the prefix: its first 480 bytes. */
    MDB_val tp = {prefix_len < BL_STORE_INLINE_KEY ? prefix_len : BL_STORE_INLINE_KEY,
                  (void *)prefix};
    if (after_len > 0) {
        ak = kv_lmdb_key(after, after_len, buf);
    }
    rc = mdb_cursor_open(t->txn, s->kv, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "kv scan: cursor");
    }
    if (after_len > 0 && mdb_cmp(t->txn, s->kv, &ak, &tp) > 0) {
        k = ak;
        op = MDB_SET_RANGE;
    } else if (tp.mv_size > 0) {
        k = tp;
        op = MDB_SET_RANGE;
    } else {
        op = MDB_FIRST;
    }
    for (rc = mdb_cursor_get(cur, &k, &d, op); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (!has_prefix(k.mv_data, k.mv_size, tp.mv_data, tp.mv_size)) {
            break;
        }
        if (after_len > 0 && k.mv_size == ak.mv_size &&
            memcmp(k.mv_data, ak.mv_data, ak.mv_size) == 0) {
            continue; /* @after itself */
        }
        struct bl_kv kv;
        rv = kv_decode(s, &k, &d, &kv);
        if (rv != 0) {
            break;
        }
        if (prefix_len > BL_STORE_INLINE_KEY &&
            !has_prefix(kv.key, kv.key_len, prefix, prefix_len)) {
            continue;
        }
        rv = cb(arg, &kv);
        if (rv != 0) {
            rv = rv > 0 ? BL_OK : rv;
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv = from_mdb(s, rc, "kv scan");
    }
    mdb_cursor_close(cur);
    return rv;
}

/* ---- meta ---------------------------------------------------------------------- */

static int meta_key(struct bl_store *s, const char *name, MDB_val *k)
{
    size_t len = name == NULL ? 0 : strlen(name);
    if (len == 0 || len > BL_STORE_INLINE_KEY) {
        return set_err(s, BL_EBADREQ, "meta: name of %zu bytes", len);
    }
    k->mv_data = (void *)name;
    k->mv_size = len;
    return BL_OK;
}

int bl_store_meta_get(struct bl_txn *t, const char *name, uint64_t *value)
{
    struct bl_store *s = t->s;
    MDB_val k, d;
    int rv = meta_key(s, name, &k);
    if (rv != 0) {
        return rv;
    }
    int rc = mdb_get(t->txn, s->meta, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *value = 0;
        return BL_OK;
    }
    if (rc != 0) {
        return from_mdb(s, rc, "meta get %s", name);
    }
    if (d.mv_size != 8) {
        return set_err(s, BL_ECORRUPT, "meta get %s: %zu bytes, expected 8", name, d.mv_size);
    }
    *value = get_le(d.mv_data, 8);
    return BL_OK;
}

int bl_store_meta_set(struct bl_txn *t, const char *name, uint64_t value)
{
    struct bl_store *s = t->s;
    uint8_t buf[8];
    MDB_val k, d = {sizeof buf, buf};
    int rv = meta_key(s, name, &k);
    if (rv != 0) {
        return rv;
    }
    put_le(buf, value, 8);
    int rc = mdb_put(t->txn, s->meta, &k, &d, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "meta set %s", name);
}

/* ---- members --------------------------------------------------------------------- */

int bl_store_member_put(struct bl_txn *t, uint64_t id, const void *rec, size_t len)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {sizeof kb, kb}, d = {len, (void *)rec};
    if (rec == NULL && len > 0) {
        return set_err(s, BL_EBADREQ, "member put: no record");
    }
    int rc = mdb_put(t->txn, s->members, &k, &d, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "member put %llu", (unsigned long long)id);
}

int bl_store_member_get(struct bl_txn *t, uint64_t id, const void **rec, size_t *len)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {sizeof kb, kb}, d;
    int rc = mdb_get(t->txn, s->members, &k, &d);
    if (rc != 0) {
        return from_mdb(s, rc, "member get %llu", (unsigned long long)id);
    }
    *rec = d.mv_data;
    *len = d.mv_size;
    return BL_OK;
}

int bl_store_member_del(struct bl_txn *t, uint64_t id)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {sizeof kb, kb};
    int rc = mdb_del(t->txn, s->members, &k, NULL);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "member del %llu", (unsigned long long)id);
}

int bl_store_member_scan(struct bl_txn *t, bl_member_scan_cb cb, void *arg)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    MDB_val k, d;
    int rc, rv = BL_OK;
    rc = mdb_cursor_open(t->txn, s->members, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "member scan: cursor");
    }
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 8) {
            rv = set_err(s, BL_ECORRUPT, "member scan: key of %zu bytes", k.mv_size);
            break;
        }
        rv = cb(arg, get_be64(k.mv_data), d.mv_data, d.mv_size);
        if (rv != 0) {
            rv = rv > 0 ? BL_OK : rv;
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv = from_mdb(s, rc, "member scan");
    }
    mdb_cursor_close(cur);
    return rv;
}

/* ---- request ids ------------------------------------------------------------------- */

/* reqrev key of (@revision, @id) into @buf (8 + REQID_MAX bytes). */
static MDB_val reqrev_key(uint64_t revision, const void *id, size_t id_len, uint8_t *buf)
{
    put_be64(buf, revision);
    memcpy(buf + 8, id, id_len);
    MDB_val k = {8 + id_len, buf};
    return k;
}

int bl_store_reqid_put(struct bl_txn *t, const void *id, size_t id_len, uint64_t revision,
                       const void *rec, size_t rec_len)
{
    struct bl_store *s = t->s;
    uint8_t rk[8 + REQID_MAX];
    MDB_val k = {id_len, (void *)id}, d, r, empty = {0, NULL};
    int rc;
    if (id == NULL || id_len == 0 || id_len > REQID_MAX || (rec == NULL && rec_len > 0) ||
        rec_len > SIZE_MAX - 8) {
        return set_err(s, BL_EBADREQ, "reqid put: id of %zu bytes", id_len);
    }
    /* A record under the same id at another revision: drop its index entry. */
    rc = mdb_get(t->txn, s->reqids, &k, &d);
    if (rc == 0 && d.mv_size >= 8 && get_le(d.mv_data, 8) != revision) {
        r = reqrev_key(get_le(d.mv_data, 8), id, id_len, rk);
        rc = mdb_del(t->txn, s->reqrev, &r, NULL);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return from_mdb(s, rc, "reqid put: old entry");
    }
    d.mv_size = 8 + rec_len;
    d.mv_data = NULL;
    rc = mdb_put(t->txn, s->reqids, &k, &d, MDB_RESERVE);
    if (rc != 0) {
        return from_mdb(s, rc, "reqid put");
    }
    put_le(d.mv_data, revision, 8);
    if (rec_len > 0) {
        memcpy((uint8_t *)d.mv_data + 8, rec, rec_len);
    }
    r = reqrev_key(revision, id, id_len, rk);
    rc = mdb_put(t->txn, s->reqrev, &r, &empty, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "reqid put: revision index");
}

int bl_store_reqid_get(struct bl_txn *t, const void *id, size_t id_len, const void **rec,
                       size_t *rec_len)
{
    struct bl_store *s = t->s;
    MDB_val k = {id_len, (void *)id}, d;
    if (id == NULL || id_len == 0 || id_len > REQID_MAX) {
        return set_err(s, BL_EBADREQ, "reqid get: id of %zu bytes", id_len);
    }
    int rc = mdb_get(t->txn, s->reqids, &k, &d);
    if (rc != 0) {
        return from_mdb(s, rc, "reqid get");
    }
    if (d.mv_size < 8) {
        return set_err(s, BL_ECORRUPT, "reqid get: record of %zu bytes", d.mv_size);
    }
    *rec = (const uint8_t *)d.mv_data + 8;
    *rec_len = d.mv_size - 8;
    return BL_OK;
}

int bl_store_reqid_prune(struct bl_txn *t, uint64_t below_revision)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    MDB_val k, d;
    int rc, rv = BL_OK;
    rc = mdb_cursor_open(t->txn, s->reqrev, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "reqid prune: cursor");
    }
    /* Take the first entry each time: deletions never disturb the walk. */
    while ((rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST)) == 0) {
        if (k.mv_size <= 8 || k.mv_size > 8 + REQID_MAX) {
            rv = set_err(s, BL_ECORRUPT, "reqid prune: index key of %zu bytes", k.mv_size);
            break;
        }
        uint64_t revision = get_be64(k.mv_data);
        if (revision >= below_revision) {
            break;
        }
        /* Copy the id out of the page the cursor is about to change. */
        uint8_t idb[REQID_MAX];
        size_t id_len = k.mv_size - 8;
        memcpy(idb, (uint8_t *)k.mv_data + 8, id_len);
        MDB_val id = {id_len, idb};
        rc = mdb_get(t->txn, s->reqids, &id, &d);
        if (rc == 0 && d.mv_size >= 8 && get_le(d.mv_data, 8) == revision) {
            rc = mdb_del(t->txn, s->reqids, &id, NULL);
        }
        if (rc == 0 || rc == MDB_NOTFOUND) {
            rc = mdb_cursor_del(cur, 0);
        }
        if (rc != 0) {
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv = from_mdb(s, rc, "reqid prune");
    }
    mdb_cursor_close(cur);
    return rv;
}

/* ---- watch history ------------------------------------------------------------------ */

int bl_store_history_put(struct bl_txn *t, uint64_t revision, const void *rec, size_t len)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, revision);
    MDB_val k = {sizeof kb, kb}, d = {len, (void *)rec};
    if (rec == NULL || len == 0) {
        return set_err(s, BL_EBADREQ, "history put: empty record");
    }
    int rc = mdb_put(t->txn, s->history, &k, &d, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "history put %llu", (unsigned long long)revision);
}

int bl_store_history_get(struct bl_txn *t, uint64_t revision, const void **rec, size_t *len)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, revision);
    MDB_val k = {sizeof kb, kb}, d;
    int rc = mdb_get(t->txn, s->history, &k, &d);
    if (rc != 0) {
        return from_mdb(s, rc, "history get %llu", (unsigned long long)revision);
    }
    *rec = d.mv_data;
    *len = d.mv_size;
    return BL_OK;
}

int bl_store_history_first(struct bl_txn *t, uint64_t *revision)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    MDB_val k, d;
    int rc = mdb_cursor_open(t->txn, s->history, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "history first: cursor");
    }
    rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    mdb_cursor_close(cur);
    if (rc != 0) {
        return from_mdb(s, rc, "history first");
    }
    if (k.mv_size != 8) {
        return set_err(s, BL_ECORRUPT, "history: key of %zu bytes", k.mv_size);
    }
    *revision = get_be64(k.mv_data);
    return BL_OK;
}

int bl_store_history_prune(struct bl_txn *t, uint64_t below_revision)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    MDB_val k, d;
    int rc = mdb_cursor_open(t->txn, s->history, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "history prune: cursor");
    }
    while ((rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || get_be64(k.mv_data) >= below_revision) {
            break;
        }
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? BL_OK : from_mdb(s, rc, "history prune");
}

/* ---- leases ---------------------------------------------------------------------------- */

/* A lease record: ttl (8, LE), flags (8, LE). */
#define LEASE_REC 16

int bl_store_lease_put(struct bl_txn *t, uint64_t id, const struct bl_lease *l)
{
    struct bl_store *s = t->s;
    uint8_t kb[8], rec[LEASE_REC];
    put_be64(kb, id);
    put_le(rec, l->ttl, 8);
    put_le(rec + 8, l->flags, 8);
    MDB_val k = {sizeof kb, kb}, d = {sizeof rec, rec};
    int rc = mdb_put(t->txn, s->leases, &k, &d, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "lease put %llu", (unsigned long long)id);
}

static int lease_decode(struct bl_store *s, const MDB_val *d, struct bl_lease *out)
{
    if (d->mv_size != LEASE_REC) {
        return set_err(s, BL_ECORRUPT, "lease record of %zu bytes", d->mv_size);
    }
    out->ttl = get_le(d->mv_data, 8);
    out->flags = get_le((const uint8_t *)d->mv_data + 8, 8);
    return BL_OK;
}

int bl_store_lease_get(struct bl_txn *t, uint64_t id, struct bl_lease *out)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {sizeof kb, kb}, d;
    int rc = mdb_get(t->txn, s->leases, &k, &d);
    if (rc != 0) {
        return from_mdb(s, rc, "lease get %llu", (unsigned long long)id);
    }
    return lease_decode(s, &d, out);
}

int bl_store_lease_del(struct bl_txn *t, uint64_t id)
{
    struct bl_store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {sizeof kb, kb};
    int rc = mdb_del(t->txn, s->leases, &k, NULL);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "lease del %llu", (unsigned long long)id);
}

int bl_store_lease_scan(struct bl_txn *t, bl_lease_scan_cb cb, void *arg)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    MDB_val k, d;
    struct bl_lease l;
    int rc, rv = BL_OK;
    rc = mdb_cursor_open(t->txn, s->leases, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "lease scan: cursor");
    }
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 8) {
            rv = set_err(s, BL_ECORRUPT, "lease scan: key of %zu bytes", k.mv_size);
            break;
        }
        rv = lease_decode(s, &d, &l);
        if (rv == 0) {
            rv = cb(arg, get_be64(k.mv_data), &l);
        }
        if (rv != 0) {
            rv = rv > 0 ? BL_OK : rv;
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv = from_mdb(s, rc, "lease scan");
    }
    mdb_cursor_close(cur);
    return rv;
}

/* The lkeys key of (@id, @key): 8-byte id then the key's LMDB key. */
static MDB_val lkey_key(uint64_t id, const uint8_t *key, size_t len, uint8_t buf[8 + LONG_KEY_SIZE])
{
    uint8_t tmp[LONG_KEY_SIZE];
    MDB_val k = kv_lmdb_key(key, len, tmp);
    put_be64(buf, id);
    memcpy(buf + 8, k.mv_data, k.mv_size);
    MDB_val v = {8 + k.mv_size, buf};
    return v;
}

int bl_store_lease_attach(struct bl_txn *t, uint64_t id, const void *key, size_t key_len)
{
    struct bl_store *s = t->s;
    uint8_t buf[8 + LONG_KEY_SIZE];
    if (key == NULL || key_len == 0 || key_len > BL_KEY_MAX) {
        return set_err(s, BL_EBADREQ, "lease attach: key of %zu bytes", key_len);
    }
    MDB_val k = lkey_key(id, key, key_len, buf), d = {key_len, (void *)key};
    int rc = mdb_put(t->txn, s->lkeys, &k, &d, 0);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "lease attach %llu", (unsigned long long)id);
}

int bl_store_lease_detach(struct bl_txn *t, uint64_t id, const void *key, size_t key_len)
{
    struct bl_store *s = t->s;
    uint8_t buf[8 + LONG_KEY_SIZE];
    if (key == NULL || key_len == 0 || key_len > BL_KEY_MAX) {
        return set_err(s, BL_EBADREQ, "lease detach: key of %zu bytes", key_len);
    }
    MDB_val k = lkey_key(id, key, key_len, buf);
    int rc = mdb_del(t->txn, s->lkeys, &k, NULL);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "lease detach %llu", (unsigned long long)id);
}

int bl_store_lease_keys(struct bl_txn *t, uint64_t id, bl_lease_key_cb cb, void *arg)
{
    struct bl_store *s = t->s;
    MDB_cursor *cur;
    uint8_t kb[8];
    MDB_val k, d;
    int rc, rv = BL_OK;
    put_be64(kb, id);
    k.mv_size = sizeof kb;
    k.mv_data = kb;
    rc = mdb_cursor_open(t->txn, s->lkeys, &cur);
    if (rc != 0) {
        return from_mdb(s, rc, "lease keys: cursor");
    }
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (k.mv_size < 8 || get_be64(k.mv_data) != id) {
            break;
        }
        rv = cb(arg, d.mv_data, d.mv_size);
        if (rv != 0) {
            rv = rv > 0 ? BL_OK : rv;
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv = from_mdb(s, rc, "lease keys");
    }
    mdb_cursor_close(cur);
    return rv;
}

/* ---- transactions -------------------------------------------------------------------- */

int bl_store_begin(struct bl_store *s, bool write, struct bl_txn **out)
{
    MDB_txn *txn;
    if (s->env == NULL) {
        return set_err(s, BL_EIO, "begin: the store is closed (a replace could not reopen it)");
    }
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
    if (rc != 0) {
        return from_mdb(s, rc, "begin %s transaction", write ? "write" : "read");
    }
    struct bl_txn *t;
    if (write) {
        t = &s->wtxn; /* ours alone while LMDB's writer lock is held */
    } else {
        t = malloc(sizeof *t);
        if (t == NULL) {
            mdb_txn_abort(txn);
            return set_err(s, BL_ENOMEM, "begin read transaction: out of memory");
        }
    }
    t->txn = txn;
    t->s = s;
    t->write = write;
    *out = t;
    return BL_OK;
}

int bl_store_commit(struct bl_txn *t)
{
    struct bl_store *s = t->s;
    MDB_txn *txn = t->txn;
    if (!t->write) {
        mdb_txn_abort(txn);
        free(t);
        return BL_OK;
    }
    t->txn = NULL;
    BL_CRASH_POINT(BL_CRASH_LMDB_COMMIT_BEFORE);
    /* Frees the transaction whether or not it succeeds. */
    int rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return from_mdb(s, rc, "commit");
    }
    BL_CRASH_POINT(BL_CRASH_LMDB_COMMIT_AFTER);
    return BL_OK;
}

void bl_store_abort(struct bl_txn *t)
{
    MDB_txn *txn = t->txn;
    if (t->write) {
        t->txn = NULL;
    } else {
        free(t);
    }
    mdb_txn_abort(txn);
}

/* ---- files and directories --------------------------------------------------------------- */

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p != NULL) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

/* Fill the store's path names from @dir. */
static int make_paths(struct bl_store *s, const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') {
        len--;
    }
    if (len == 0) {
        return set_err(s, BL_EIO, "open: empty directory name");
    }
    s->dir = strndup(dir, len);
    if (s->dir == NULL) {
        return set_err(s, BL_ENOMEM, "open: out of memory");
    }
    const char *slash = strrchr(s->dir, '/');
    if (slash == NULL) {
        s->parent = strdup(".");
    } else {
        s->parent = strndup(s->dir, slash == s->dir ? 1 : (size_t)(slash - s->dir));
    }
    s->tmp_dir = concat(s->dir, TMP_SUFFIX);
    s->old_dir = concat(s->dir, OLD_SUFFIX);
    s->tmp_data = s->tmp_dir == NULL ? NULL : concat(s->tmp_dir, "/" DATA_FILE);
    if (s->parent == NULL || s->tmp_dir == NULL || s->old_dir == NULL || s->tmp_data == NULL) {
        return set_err(s, BL_ENOMEM, "open: out of memory");
    }
    return BL_OK;
}

/* 1 if @path exists, 0 if not, or a negative code. */
static int path_exists(struct bl_store *s, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        return 1;
    }
    return errno == ENOENT ? 0 : from_mdb(s, errno, "stat %s", path);
}

/* Remove directory @path and the files in it; a missing one is fine. */
static int remove_dir(struct bl_store *s, const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return errno == ENOENT ? BL_OK : from_mdb(s, errno, "open directory %s", path);
    }
    struct dirent *e;
    int rv = BL_OK;
    while (rv == BL_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            rv = from_mdb(s, errno, "remove %s/%s", path, e->d_name);
        }
    }
    closedir(d);
    if (rv == BL_OK && rmdir(path) != 0) {
        rv = from_mdb(s, errno, "remove directory %s", path);
    }
    return rv;
}

static int fsync_dir(struct bl_store *s, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return from_mdb(s, errno, "open directory %s", path);
    }
    int rv = fsync(fd) == 0 ? BL_OK : from_mdb(s, errno, "fsync directory %s", path);
    close(fd);
    return rv;
}

/* mkdir -p @path, creating missing components with mode 0700. */
static int mkdir_p(struct bl_store *s, const char *path)
{
    char *p = strdup(path);
    int rv = BL_OK;
    if (p == NULL) {
        return set_err(s, BL_ENOMEM, "open: out of memory");
    }
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0') {
            continue;
        }
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rv = from_mdb(s, errno, "create directory %s", p);
            break;
        }
        *c = saved;
        if (saved == '\0') {
            break;
        }
    }
    free(p);
    return rv;
}

/* Put DIR back in order after a crash during a replace (see the top). */
static int recover(struct bl_store *s)
{
    int have_dir = path_exists(s, s->dir);
    if (have_dir < 0) {
        return have_dir;
    }
    if (have_dir == 0) {
        int have_old = path_exists(s, s->old_dir);
        if (have_old < 0) {
            return have_old;
        }
        if (have_old == 1) {
            if (rename(s->old_dir, s->dir) != 0) {
                return from_mdb(s, errno, "open: roll back %s", s->old_dir);
            }
            int rv = fsync_dir(s, s->parent);
            if (rv != 0) {
                return rv;
            }
        }
    }
    /* Best effort: bl_store_replace() retries strictly. */
    (void)remove_dir(s, s->tmp_dir);
    (void)remove_dir(s, s->old_dir);
    s->errmsg[0] = '\0';
    return BL_OK;
}

/* ---- the environment ------------------------------------------------------------------------ */

/* The first N_REQUIRED tables exist in every store image since 0.1; the
 * others were added later and are created when missing (an image from an
 * older member, a backup taken by one). */
static const char *const TABLES[] = {"kv",     "meta",    "members", "reqids",
                                     "reqrev", "history", "leases",  "lkeys"};
#define N_TABLES   (sizeof TABLES / sizeof TABLES[0])
#define N_REQUIRED 5

/* ---- unsynced commits ------------------------------------------------------------------------ */

/* This boot's id (the kernel's random boot_id), "" when it cannot be read. */
static void boot_id(char *out, size_t size)
{
    FILE *f = fopen(BOOT_ID_PATH, "re");
    out[0] = '\0';
    if (f != NULL) {
        if (fgets(out, (int)size, f) == NULL) {
            out[0] = '\0';
        }
        fclose(f);
    }
    out[strcspn(out, "\n")] = '\0';
}

/* With no_sync, commits reach the page cache, not the disk: they survive the
 * process being killed, not the machine going down. DIR/unsynced holds the
 * boot id of the run that may have left such commits; it is written (and
 * synced) before the first one and removed after a clean close synced
 * everything. */
static int mark_unsynced(struct bl_store *s)
{
    char path[4200], tmp[4300], id[64];
    int fd, rv = BL_OK;
    size_t len;

    boot_id(id, sizeof id);
    len = strlen(id);
    snprintf(path, sizeof path, "%s/%s", s->dir, UNSYNCED_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return from_mdb(s, errno, "open: write %s", tmp);
    }
    if (write(fd, id, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rv = from_mdb(s, errno != 0 ? errno : EIO, "open: write %s", tmp);
    }
    close(fd);
    if (rv == BL_OK && rename(tmp, path) != 0) {
        rv = from_mdb(s, errno, "open: rename %s", tmp);
    }
    return rv == BL_OK ? fsync_dir(s, s->dir) : rv;
}

/* Before opening: a marker left by another boot means the machine went down
 * (or the disk was moved) while unsynced commits were in the page cache, so
 * data.mdb may be torn: delete it. The member rebuilds it from the Raft
 * snapshot and log, which are synced. A marker from this boot (the process
 * was killed) keeps the store: the page cache holds every commit. */
static int check_unsynced(struct bl_store *s)
{
    char path[4200], mine[64], theirs[64];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", s->dir, UNSYNCED_FILE);
    f = fopen(path, "re");
    if (f == NULL) {
        return errno == ENOENT ? BL_OK : from_mdb(s, errno, "open: read %s", path);
    }
    if (fgets(theirs, sizeof theirs, f) == NULL) {
        theirs[0] = '\0';
    }
    fclose(f);
    theirs[strcspn(theirs, "\n")] = '\0';
    boot_id(mine, sizeof mine);
    if (strcmp(mine, theirs) == 0) {
        return BL_OK;
    }
    const char *files[] = {DATA_FILE, LOCK_FILE};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", s->dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            return from_mdb(s, errno, "open: delete unsynced %s", path);
        }
    }
    s->discarded = true;
    return fsync_dir(s, s->dir);
}

bool bl_store_discarded(const struct bl_store *s)
{
    return s->discarded;
}

static int env_open(struct bl_store *s)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[N_TABLES];
    /* no_sync: commits are memory writes into the map (MDB_WRITEMAP): no
     * write(2) of each dirty page per commit (23% of a member's CPU under
     * load), the kernel writes them back. See store.h for the costs. */
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (s->opts.no_sync ? MDB_NOSYNC | MDB_WRITEMAP : 0);
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        return from_mdb(s, rc, "open: create environment");
    }
    rc = mdb_env_set_mapsize(env, s->opts.map_size);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(env, MAX_DBS);
    }
    if (rc != 0) {
        mdb_env_close(env);
        return from_mdb(s, rc, "open: configure environment");
    }
    rc = mdb_env_open(env, s->dir, flags, 0600);
    if (rc != 0) {
        mdb_env_close(env);
        return from_mdb(s, rc, "open %s", s->dir);
    }
    if (mdb_env_get_maxkeysize(env) < LONG_KEY_SIZE) {
        mdb_env_close(env);
        return set_err(s, BL_EINTERNAL, "open: LMDB keys are limited to %d bytes, need %d",
                       mdb_env_get_maxkeysize(env), LONG_KEY_SIZE);
    }
    rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0) {
        mdb_env_close(env);
        return from_mdb(s, rc, "open: begin");
    }
    for (size_t i = 0; i < N_TABLES && rc == 0; i++) {
        rc = mdb_dbi_open(txn, TABLES[i], MDB_CREATE, &dbi[i]);
        if (rc != 0) {
            mdb_txn_abort(txn);
            mdb_env_close(env);
            return from_mdb(s, rc, "open: table %s", TABLES[i]);
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        mdb_env_close(env);
        return from_mdb(s, rc, "open: commit tables");
    }
    if (s->opts.no_sync) {
        int rv = mark_unsynced(s);
        if (rv != 0) {
            mdb_env_close(env);
            return rv;
        }
    }
    s->env = env;
    s->kv = dbi[0];
    s->meta = dbi[1];
    s->members = dbi[2];
    s->reqids = dbi[3];
    s->reqrev = dbi[4];
    s->history = dbi[5];
    s->leases = dbi[6];
    s->lkeys = dbi[7];
    return BL_OK;
}

static void store_free(struct bl_store *s)
{
    if (s->env != NULL) {
        /* With no_sync: sync everything, then the marker may go. */
        if (s->opts.no_sync && mdb_env_sync(s->env, 1) == 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", s->dir, UNSYNCED_FILE);
            unlink(path);
        }
        mdb_env_close(s->env);
    }
    free(s->dir);
    free(s->parent);
    free(s->tmp_dir);
    free(s->tmp_data);
    free(s->old_dir);
    free(s);
}

int bl_store_open(const char *dir, const struct bl_store_opts *opts, struct bl_store **out,
                  char *errmsg)
{
    struct bl_store *s = calloc(1, sizeof *s);
    int rv;
    if (s == NULL) {
        if (errmsg != NULL) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "open: out of memory");
        }
        return BL_ENOMEM;
    }
    if (opts != NULL) {
        s->opts = *opts;
    }
    if (s->opts.map_size == 0) {
        s->opts.map_size = DEFAULT_MAP_SIZE;
    }
    rv = make_paths(s, dir);
    if (rv != 0) {
        goto err;
    }
    rv = recover(s);
    if (rv != 0) {
        goto err;
    }
    rv = mkdir_p(s, s->dir);
    if (rv == 0 && s->opts.no_sync) {
        rv = check_unsynced(s);
    }
    if (rv != 0) {
        goto err;
    }
    rv = env_open(s);
    if (rv != 0) {
        goto err;
    }
    *out = s;
    return BL_OK;

err:
    if (errmsg != NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "%s", s->errmsg);
    }
    store_free(s);
    return rv;
}

void bl_store_close(struct bl_store *s)
{
    if (s != NULL) {
        store_free(s);
    }
}

const char *bl_store_errmsg(const struct bl_store *s)
{
    return s->errmsg;
}

int bl_store_sync(struct bl_store *s)
{
    if (s->env == NULL) {
        return set_err(s, BL_EIO, "sync: the store is closed");
    }
    int rc = mdb_env_sync(s->env, 1);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "sync");
}

int bl_store_size(struct bl_store *s, uint64_t *used_bytes, uint64_t *map_bytes)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t free_pages = 0;
    int rc;

    if (s->env == NULL) {
        return set_err(s, BL_EIO, "size: the store is closed");
    }
    rc = mdb_env_info(s->env, &info);
    if (rc == 0) {
        rc = mdb_env_stat(s->env, &st);
    }
    /* Pages on LMDB's free list (database 0) are reused before the file
     * grows: they are not "in use". Each record is an ID list whose first
     * word is its length, as mdb_stat -f counts them. */
    if (rc == 0) {
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    }
    if (rc == 0) {
        rc = mdb_cursor_open(txn, 0, &cur);
    }
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (v.mv_size >= sizeof(size_t)) {
            size_t n;
            memcpy(&n, v.mv_data, sizeof n);
            free_pages += n;
        }
    }
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        return from_mdb(s, rc, "size");
    }
    if (free_pages > (uint64_t)info.me_last_pgno + 1) {
        free_pages = (uint64_t)info.me_last_pgno + 1;
    }
    *used_bytes = ((uint64_t)info.me_last_pgno + 1 - free_pages) * st.ms_psize;
    *map_bytes = info.me_mapsize;
    return BL_OK;
}

int bl_store_copy_to_fd(struct bl_store *s, int fd)
{
    if (s->env == NULL) {
        return set_err(s, BL_EIO, "copy: the store is closed");
    }
    int rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    return rc == 0 ? BL_OK : from_mdb(s, rc, "copy to fd %d", fd);
}

/* ---- replace ----------------------------------------------------------------------------------
 */

/* Remove a leftover directory, keeping the message of the error at hand:
 * what is left is removed at the next open or replace. */
static void remove_quietly(struct bl_store *s, const char *path)
{
    char msg[BL_ERRMSG_SIZE];
    memcpy(msg, s->errmsg, sizeof msg);
    (void)remove_dir(s, path);
    memcpy(s->errmsg, msg, sizeof msg);
}

static int write_file(struct bl_store *s, const char *path, const void *image, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return from_mdb(s, errno, "replace: create %s", path);
    }
    const uint8_t *p = image;
    size_t done = 0;
    int rv = BL_OK;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rv = from_mdb(s, n < 0 ? errno : EIO, "replace: write %s", path);
            break;
        }
        done += (size_t)n;
    }
    if (rv == BL_OK && fsync(fd) != 0) {
        rv = from_mdb(s, errno, "replace: fsync %s", path);
    }
    if (close(fd) != 0 && rv == BL_OK) {
        rv = from_mdb(s, errno, "replace: close %s", path);
    }
    return rv;
}

/* Open the environment in @dir read-only and check it is a whole store
 * image of @len bytes. */
static int verify_image(struct bl_store *s, const char *dir, size_t len)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    MDB_stat st;
    MDB_dbi dbi;
    MDB_val k = {strlen("applied_index"), "applied_index"}, d;
    int rv = BL_OK;
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        return from_mdb(s, rc, "replace: check: create environment");
    }
    rc = mdb_env_set_maxdbs(env, MAX_DBS);
    if (rc == 0) {
        rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
    }
    if (rc != 0) {
        rv = from_mdb(s, rc, "replace: check: open image");
        goto out;
    }
    rc = mdb_env_info(env, &info);
    if (rc == 0) {
        rc = mdb_env_stat(env, &st);
    }
    if (rc != 0) {
        rv = from_mdb(s, rc, "replace: check: stat image");
        goto out;
    }
    /* Pages past the end of the file would fault when read. */
    if (((uint64_t)info.me_last_pgno + 1) * st.ms_psize > len) {
        rv = set_err(s, BL_ECORRUPT,
                     "replace: check: image of %zu bytes is truncated (%zu pages "
                     "of %u bytes)",
                     len, info.me_last_pgno + 1, st.ms_psize);
        goto out;
    }
    rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        rv = from_mdb(s, rc, "replace: check: begin");
        goto out;
    }
    for (size_t i = 0; i < N_REQUIRED; i++) {
        rc = mdb_dbi_open(txn, TABLES[i], 0, &dbi);
        if (rc != 0) {
            rv = rc == MDB_NOTFOUND
                     ? set_err(s, BL_ECORRUPT, "replace: check: no table %s", TABLES[i])
                     : from_mdb(s, rc, "replace: check: table %s", TABLES[i]);
            goto out;
        }
        if (strcmp(TABLES[i], "meta") != 0) {
            continue;
        }
        rc = mdb_get(txn, dbi, &k, &d);
        if (rc == 0 && d.mv_size != 8) {
            rv = set_err(s, BL_ECORRUPT, "replace: check: applied_index of %zu bytes", d.mv_size);
            goto out;
        }
        if (rc != 0 && rc != MDB_NOTFOUND) {
            rv = from_mdb(s, rc, "replace: check: read applied_index");
            goto out;
        }
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return rv;
}

int bl_store_replace(struct bl_store *s, const void *image, size_t len)
{
    int rv;
    if (s->env == NULL) {
        /* A replace that could not reopen: DIR may be missing, and DIR.old
         * the only copy, which the cleanup below would remove. Reopening the
         * store (bl_store_open) sorts the directories out first. */
        return set_err(s, BL_EIO, "replace: the store is closed");
    }
    if (image == NULL || len == 0) {
        return set_err(s, BL_ECORRUPT, "replace: empty image");
    }
    rv = remove_dir(s, s->tmp_dir);
    if (rv == 0) {
        rv = remove_dir(s, s->old_dir);
    }
    if (rv != 0) {
        return rv;
    }
    if (mkdir(s->tmp_dir, 0700) != 0) {
        return from_mdb(s, errno, "replace: create %s", s->tmp_dir);
    }
    rv = write_file(s, s->tmp_data, image, len);
    if (rv == 0) {
        rv = fsync_dir(s, s->tmp_dir);
    }
    if (rv == 0) {
        rv = verify_image(s, s->tmp_dir, len);
    }
    if (rv != 0) {
        goto err_after_tmp;
    }

    /* Swap. The live environment must be closed before its directory moves. */
    mdb_env_close(s->env);
    s->env = NULL;
    if (rename(s->dir, s->old_dir) != 0) {
        rv = from_mdb(s, errno, "replace: rename %s to %s", s->dir, s->old_dir);
        goto err_after_close;
    }
    if (rename(s->tmp_dir, s->dir) != 0) {
        rv = from_mdb(s, errno, "replace: rename %s to %s", s->tmp_dir, s->dir);
        if (rename(s->old_dir, s->dir) != 0) {
            return rv; /* closed; bl_store_open() rolls back from DIR.old */
        }
        goto err_after_close;
    }
    /* Past the commit point: the new contents are DIR. */
    rv = fsync_dir(s, s->parent);
    remove_quietly(s, s->old_dir);
    int rv_open = env_open(s);
    return rv_open != 0 ? rv_open : rv;

err_after_close:
    if (env_open(s) != 0) {
        remove_quietly(s, s->tmp_dir);
        return rv; /* the store stays closed; the message says why */
    }
err_after_tmp:
    remove_quietly(s, s->tmp_dir);
    return rv;
}
