/* Backups: a consistent copy of the whole store in one file, its check,
 * and the restore of a data directory from it.
 *
 * File format (all integers little endian), the FSM snapshot format of
 * fsm.h with a checksum in its reserved word:
 *   [8 bytes "BLSNAP1\0"]
 *   [u64 applied_index]  the store's "applied_index" meta value in the image
 *   [u64 image_len]      bytes of image that follow; the file is exactly
 *                        BL_BACKUP_HEADER + image_len bytes
 *   [u64 checksum]       FNV-1a 64 of the image bytes (not of the header);
 *                        0 = none, as in Raft snapshots; a backup written by
 *                        bl_backup_write_fd() always has one
 *   [image]              a compacted LMDB data file (data.mdb) of the store
 *
 * The image holds every table of the store (store.h): the keys with their
 * revisions, the meta values ("revision", "applied_index"), the replicated
 * member table and the request-id table, as of one LMDB read snapshot.
 *
 * Restore turns a backup into the data directory of a new one-member
 * cluster (see bl_backup_restore()); the other members then join it.
 *
 * Errors: every function returns 0 (BL_OK) or a code of error.h and leaves
 * a message saying what failed in @errmsg (BL_ERRMSG_SIZE bytes). */
#ifndef BALLAST_BACKUP_H
#define BALLAST_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define BL_BACKUP_MAGIC  "BLSNAP1" /* 8 bytes with its NUL; the same as BL_SNAP_MAGIC */
#define BL_BACKUP_HEADER 32        /* header bytes before the image */

/* Marker files bl_backup_restore() leaves in the data directory. */
#define BL_BACKUP_ID_FILE       "member-id" /* the Raft id in decimal and "\n" */
#define BL_BACKUP_RESTORED_FILE "restored"  /* empty; see bl_backup_restore() */

/* What a backup holds. */
struct bl_backup_info {
    uint64_t revision;      /* store revision of the image */
    uint64_t applied_index; /* Raft index the image reflects (header and meta) */
    uint64_t image_len;     /* bytes of LMDB image */
    uint64_t checksum;      /* FNV-1a 64 of the image, 0 when the file has none */
};

/* FNV-1a 64 of @len bytes at @p, continuing from @h (start with
 * BL_BACKUP_FNV_INIT). */
#define BL_BACKUP_FNV_INIT UINT64_C(0xcbf29ce484222325)
uint64_t bl_backup_fnv1a(uint64_t h, const void *p, size_t len);

/* Write a backup of @s to @fd with write(2), from @fd's current position
 * (a fresh regular file, a pipe or a socket will do; nothing is read from
 * @fd). Blocking file I/O throughout, and no libuv or Raft call: run it on a
 * worker thread, writes to the store go on meanwhile.
 *
 * How: the store is copied (bl_store_copy_to_fd, one LMDB read snapshot,
 * compacted) into a scratch directory, which is opened as a store to read
 * the image's own "revision" and "applied_index" (so the header and @info
 * describe exactly that image) and hashed; then header and image are
 * written to @fd and the scratch directory is removed. The scratch
 * directory is made (mkdtemp, ".ballast-backup-XXXXXX") in the directory of
 * the file @fd refers to when /proc/self/fd tells it, else in $TMPDIR or
 * /tmp: it needs room for one more copy of the image. Memory use is a fixed
 * 1 MiB buffer, whatever the store's size.
 *
 * On success @info (may be NULL) describes the backup; @fd then holds
 * BL_BACKUP_HEADER + info->image_len bytes more. On failure @fd may hold a
 * partial backup: the caller discards it. Errors: BL_EIO (file system,
 * including a failing write to @fd), BL_ENOSPACE (no room for the scratch
 * copy), BL_ECORRUPT (the copy does not open as a store), BL_ENOMEM. */
int bl_backup_write_fd(struct bl_store *s, int fd, struct bl_backup_info *info, char *errmsg);

/* Check the backup file @path: the magic, that the file is exactly
 * BL_BACKUP_HEADER + image_len bytes, the checksum when it is not 0, and
 * that the image opens as a Ballast store (a scratch copy next to @path, or
 * in $TMPDIR or /tmp when that directory is not writable) whose
 * "applied_index" is the header's (at least the header's for a file without
 * checksum, a Raft snapshot, whose image may be ahead of its header). On
 * success @info (may be NULL) is filled: revision and applied_index as the
 * image holds them, image_len and checksum from the header.
 * Errors: BL_ECORRUPT (not a backup, truncated, checksum mismatch, image
 * does not open), BL_EIO (cannot read the file or write the scratch copy),
 * BL_ENOSPACE, BL_ENOMEM. */
int bl_backup_verify(const char *path, struct bl_backup_info *info, char *errmsg);

/* Make @data_dir the data directory of member @id (1..2^63-1) of a new
 * one-voter cluster holding the contents of the backup @path:
 *   DIR/store      the image, then in one write transaction: every key and
 *                  the revision kept, "applied_index" set to 0 (the new
 *                  Raft log starts at index 1 and its entries must be
 *                  applied, not skipped as already seen), every row of the
 *                  replicated member table deleted (they name the old
 *                  cluster's members; the member publishes itself again
 *                  when it starts)
 *   DIR/raft       canonical/raft's bootstrap of the configuration
 *                  {@id voter at @peer_url} (term 1, entry 1), as
 *                  `ballastd --initial-cluster ID=PEER_URL` would make it
 *   DIR/member-id  @id in decimal and "\n": the member's id, read on start
 *   DIR/restored   empty: tells the member to take a Raft snapshot as soon
 *                  as it has applied an entry (its own member-table publish),
 *                  and remove the file once the snapshot is stored. Members
 *                  that join later must get the data through InstallSnapshot:
 *                  the new Raft log does not contain it. The snapshot must
 *                  come after an applied entry: the FSM keeps a store whose
 *                  "applied_index" is at least the snapshot's, and a joining
 *                  member's empty store has 0, the restored store's value
 *                  until its first apply.
 * @peer_url is the address ("HOST:PORT", IPv4 for canonical/raft) the member
 * will listen on and advertise for Raft (ballastd --listen-peer or
 * --advertise-peer). @name (may be NULL) is not stored: the member
 * publishes its own --name into the member table when it starts.
 *
 * @data_dir must not exist (it is created, with missing parents) or be an
 * empty directory; else BL_EBADREQ and nothing is touched. The backup is
 * checked as bl_backup_verify() does. On any failure everything created is
 * removed again (an empty @data_dir that existed stays, empty). Runs its
 * own private libuv loop; nothing is sent on the network.
 * Errors: BL_EBADREQ (bad argument, @data_dir not empty), BL_ECORRUPT (bad
 * backup), BL_EIO, BL_ENOSPACE, BL_ENOMEM. */
int bl_backup_restore(const char *path, const char *data_dir, uint64_t id, const char *name,
                      const char *peer_url, char *errmsg);

#endif /* BALLAST_BACKUP_H */
