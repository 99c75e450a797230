/* The LMDB store: the only module that includes lmdb.h.
 *
 * One LMDB environment in DIR/store holds these tables:
 *   kv      user keys -> [create_rev, mod_rev, version, lease, key_len, key, value]
 *   meta    named u64 values: "applied_index", "revision", ...
 *   members member id (u64, big endian) -> opaque record (msgpack, see member.c)
 *   reqids  request id -> opaque result record, plus "reqrev" (revision ->
 *           request id) to prune them in revision order
 *   history revision (u64, big endian) -> the events of that revision (an
 *           opaque record, see apply.h), kept for watchers
 *   leases  lease id (u64, big endian) -> [ttl, flags]
 *   lkeys   lease id + key -> the full key: the keys attached to a lease
 *
 * LMDB keys are at most 511 bytes, Ballast keys up to 4096. A user key of up
 * to BL_STORE_INLINE_KEY bytes is its own LMDB key; a longer one is stored
 * under its first BL_STORE_INLINE_KEY bytes followed by an 8-byte hash of the
 * whole key, and the full key is kept in the record. Ranges and pagination
 * stay exact; only keys sharing their first BL_STORE_INLINE_KEY bytes are
 * ordered among themselves by that hash rather than bytewise.
 *
 * Memory: every pointer a read returns points into LMDB's memory map and is
 * valid until the end of the transaction it was read in. A bl_txn is owned
 * by its caller until bl_store_commit() or bl_store_abort(), which free it.
 * Transactions are used on the thread that began them, except read
 * transactions, which (MDB_NOTLS) may move to another thread. */
#ifndef BALLAST_STORE_H
#define BALLAST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BL_STORE_INLINE_KEY 480

struct bl_store;
struct bl_txn;

struct bl_store_opts {
    size_t map_size; /* LMDB map size in bytes (the store's size limit) */
    bool no_sync;    /* commit without fsync (the Raft log is the durable record);
                        see bl_store_discarded() for what happens after a reboot.
                        Also MDB_WRITEMAP: commits write into the memory map, and
                        the data file is sparse and as large as map_size. A full
                        file system then shows as SIGBUS when a page of the map
                        cannot get a block, not as an error (ballastd turns that
                        into exit 1: server/main.c) */
};

/* One stored key with its metadata. */
struct bl_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t create_revision;
    uint64_t mod_revision;
    uint64_t version;
    uint64_t lease;
};

/* Open (creating if needed) the store in directory @dir (created if
 * missing). On success *@out owns the environment; close it with
 * bl_store_close(). Returns BL_OK, BL_EIO, BL_ENOSPACE, BL_ECORRUPT or
 * BL_ENOMEM, with a message in @errmsg (BL_ERRMSG_SIZE bytes). */
int bl_store_open(const char *dir, const struct bl_store_opts *opts, struct bl_store **out,
                  char *errmsg);

/* Close the environment and free @s. No transaction may be open. */
void bl_store_close(struct bl_store *s);

/* Message describing the last error on @s. */
const char *bl_store_errmsg(const struct bl_store *s);

/* Begin a transaction. Only one write transaction exists at a time (LMDB
 * serialises them); read transactions see a consistent snapshot. */
int bl_store_begin(struct bl_store *s, bool write, struct bl_txn **out);

/* Commit and free @t. On failure (BL_ENOSPACE when the map is full, BL_EIO)
 * nothing of @t is visible and @t is freed all the same. */
int bl_store_commit(struct bl_txn *t);

/* Abort and free @t. */
void bl_store_abort(struct bl_txn *t);

/* Read the u64 named @name from the meta table; an absent name reads 0. */
int bl_store_meta_get(struct bl_txn *t, const char *name, uint64_t *value);

/* Write the u64 named @name. */
int bl_store_meta_set(struct bl_txn *t, const char *name, uint64_t value);

/* Look @key up. Returns BL_OK with *@out filled (pointers valid until the
 * end of @t), BL_ENOTFOUND, or an I/O error. */
int bl_store_kv_get(struct bl_txn *t, const void *key, size_t key_len, struct bl_kv *out);

/* Insert or replace @kv (all fields stored as given). Returns BL_OK,
 * BL_EBADREQ for an empty or too long key, BL_ENOSPACE when the map is full. */
int bl_store_kv_put(struct bl_txn *t, const struct bl_kv *kv);

/* Delete @key. Returns BL_OK or BL_ENOTFOUND. */
int bl_store_kv_del(struct bl_txn *t, const void *key, size_t key_len);

/* Called for each key of a scan, in key order. Return 0 to go on, 1 to stop,
 * or a negative code to stop and make the scan return that code. */
typedef int (*bl_kv_scan_cb)(void *arg, const struct bl_kv *kv);

/* Visit the keys that start with @prefix (an empty prefix is every key),
 * strictly after @after when @after_len > 0, in key order. Returns BL_OK
 * when the scan ended (by running out of keys or the callback's 1), or an
 * error code. */
int bl_store_kv_scan(struct bl_txn *t, const void *prefix, size_t prefix_len, const void *after,
                     size_t after_len, bl_kv_scan_cb cb, void *arg);

/* Members table: opaque records keyed by member id. get returns a pointer
 * valid until the end of @t, or BL_ENOTFOUND. */
int bl_store_member_put(struct bl_txn *t, uint64_t id, const void *rec, size_t len);
int bl_store_member_get(struct bl_txn *t, uint64_t id, const void **rec, size_t *len);
int bl_store_member_del(struct bl_txn *t, uint64_t id);
typedef int (*bl_member_scan_cb)(void *arg, uint64_t id, const void *rec, size_t len);
int bl_store_member_scan(struct bl_txn *t, bl_member_scan_cb cb, void *arg);

/* Request-id table for idempotent retries: the result record of the write
 * that carried @id, committed at @revision. get returns BL_ENOTFOUND or a
 * pointer valid until the end of @t. prune deletes every record whose
 * revision is below @below_revision. */
int bl_store_reqid_put(struct bl_txn *t, const void *id, size_t id_len, uint64_t revision,
                       const void *rec, size_t rec_len);
int bl_store_reqid_get(struct bl_txn *t, const void *id, size_t id_len, const void **rec,
                       size_t *rec_len);
int bl_store_reqid_prune(struct bl_txn *t, uint64_t below_revision);

/* Watch history: the event record of @revision. get returns a pointer
 * valid until the end of @t, or BL_ENOTFOUND. first gives the oldest
 * revision kept (BL_ENOTFOUND when none is). prune deletes every record
 * below @below_revision. */
int bl_store_history_put(struct bl_txn *t, uint64_t revision, const void *rec, size_t len);
int bl_store_history_get(struct bl_txn *t, uint64_t revision, const void **rec, size_t *len);
int bl_store_history_first(struct bl_txn *t, uint64_t *revision);
int bl_store_history_prune(struct bl_txn *t, uint64_t below_revision);

/* A lease: its TTL in seconds and flags (BL_LEASE_F_*). */
#define BL_LEASE_F_OWN 0x1 /* granted by PUT ?ttl=: belongs to one key */
struct bl_lease {
    uint64_t ttl;
    uint64_t flags;
};

/* Leases table. get returns BL_ENOTFOUND for an unknown id. The scan and
 * key callbacks return 0 to go on, 1 to stop, a negative code to fail. */
int bl_store_lease_put(struct bl_txn *t, uint64_t id, const struct bl_lease *l);
int bl_store_lease_get(struct bl_txn *t, uint64_t id, struct bl_lease *out);
int bl_store_lease_del(struct bl_txn *t, uint64_t id);
typedef int (*bl_lease_scan_cb)(void *arg, uint64_t id, const struct bl_lease *l);
int bl_store_lease_scan(struct bl_txn *t, bl_lease_scan_cb cb, void *arg);

/* Keys attached to lease @id (the kv record's lease field is the other
 * half; apply keeps both in step). detach returns BL_ENOTFOUND when @key
 * was not attached. keys visits them in LMDB key order; the key pointer is
 * valid until the end of @t (do not write to the table during the visit). */
int bl_store_lease_attach(struct bl_txn *t, uint64_t id, const void *key, size_t key_len);
int bl_store_lease_detach(struct bl_txn *t, uint64_t id, const void *key, size_t key_len);
typedef int (*bl_lease_key_cb)(void *arg, const uint8_t *key, size_t key_len);
int bl_store_lease_keys(struct bl_txn *t, uint64_t id, bl_lease_key_cb cb, void *arg);

/* Write a compacted, consistent copy of the whole environment (one LMDB
 * data file image) to @fd, from a read snapshot taken when it starts. Safe
 * to call from another thread while writes go on. */
int bl_store_copy_to_fd(struct bl_store *s, int fd);

/* Replace the store's contents by the LMDB data file image @image[0..@len)
 * (as bl_store_copy_to_fd wrote it). The image is written to a temporary
 * directory, synced, checked by opening it, and renamed over the current
 * one; then the environment is reopened. No transaction may be open. On
 * failure the old contents stay. */
int bl_store_replace(struct bl_store *s, const void *image, size_t len);

/* Flush everything committed to disk (needed only with no_sync). */
int bl_store_sync(struct bl_store *s);

/* With no_sync, commits survive the process being killed (they are in the
 * page cache) but not the machine going down. The store keeps a marker file
 * DIR/unsynced holding the boot id (/proc/sys/kernel/random/boot_id) from
 * its open to a clean close (which syncs, then removes it). An open that
 * finds the marker from another boot deletes the data file, which may be
 * torn, and opens an empty store: true here then, and the caller rebuilds
 * the contents (a member: from the Raft snapshot and log). */
bool bl_store_discarded(const struct bl_store *s);

/* Bytes in use (pages in use, not counting pages on LMDB's free list, which
 * are reused before the file grows) and the map size. */
int bl_store_size(struct bl_store *s, uint64_t *used_bytes, uint64_t *map_bytes);

#endif /* BALLAST_STORE_H */
