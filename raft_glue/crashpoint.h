/* Crash points: a testing aid that makes ballastd abort() at a chosen place
 * on the write, snapshot or install path (see crashpoint.c).
 *
 * BALLAST_CRASH_AT=<point>[:<n>] makes the process call abort() (SIGABRT:
 * no cleanup, no flush, like a crash) the n-th time (default: the first)
 * execution reaches <point>. The variable is read once, by
 * bl_crashpoint_init() at member start; an unknown point name or a bad
 * count refuses the start. Unset, each point costs one compare of a global.
 *
 *   point                    reached
 *   raft-append-before       raft hands entries to the log, before the write
 *   raft-append-after        the entries are durable, before raft is told
 *   lmdb-commit-before       an applied entry's LMDB txn, before the commit
 *   lmdb-commit-after        that commit returned, before raft is told
 *   snapshot-take-before     raft asks the FSM for a snapshot, before the copy
 *   snapshot-take-after      the snapshot is on disk, before raft records it
 *   snapshot-install-before  a received snapshot, before the store is replaced
 *   snapshot-install-after   the store was replaced, before raft is told
 *
 * Never set it in production. */
#ifndef BALLAST_CRASHPOINT_H
#define BALLAST_CRASHPOINT_H

#include "error.h"

/* The points; the names in the table above are BL_CRASH_NAMES order. */
enum bl_crash_point {
    BL_CRASH_RAFT_APPEND_BEFORE = 0,
    BL_CRASH_RAFT_APPEND_AFTER,
    BL_CRASH_LMDB_COMMIT_BEFORE,
    BL_CRASH_LMDB_COMMIT_AFTER,
    BL_CRASH_SNAPSHOT_TAKE_BEFORE,
    BL_CRASH_SNAPSHOT_TAKE_AFTER,
    BL_CRASH_SNAPSHOT_INSTALL_BEFORE,
    BL_CRASH_SNAPSHOT_INSTALL_AFTER,
    BL_CRASH_N
};

/* The environment variable that arms a point. */
#define BL_CRASH_ENV "BALLAST_CRASH_AT"

/* The armed point, or -1 (nothing armed). Read it through BL_CRASH_POINT. */
extern int bl_crash_armed;

/* Parse BALLAST_CRASH_AT the first time it is called (later calls return
 * the first result). Returns 0 when the variable is unset or empty, or names
 * a known point and a count of 1..2^31-1; else BL_EBADREQ with a message
 * listing the known points in @errmsg (BL_ERRMSG_SIZE bytes). */
int bl_crashpoint_init(char *errmsg);

/* The name of @point ("raft-append-before"), or "?" if out of range. */
const char *bl_crashpoint_name(int point);

/* Count one pass through the armed point @point; on the n-th, log it and
 * abort(). Call through BL_CRASH_POINT only. */
void bl_crashpoint_hit(int point);

/* Mark a crash point: one branch when nothing is armed. */
#define BL_CRASH_POINT(p)                                                                          \
    do {                                                                                           \
        if (bl_crash_armed == (int)(p)) {                                                          \
            bl_crashpoint_hit(p);                                                                  \
        }                                                                                          \
    } while (0)

#endif /* BALLAST_CRASHPOINT_H */
