/* The Raft state machine: canonical/raft's struct raft_fsm over the store.
 *
 * apply decodes the entry (command.h) and hands it to the applier
 * (apply.h) with the entry's index, which raft does not pass: it is
 * raft->last_applied + 1 while raft applies an entry. A batch entry applies
 * its commands in one LMDB transaction (bl_apply_batch) and calls on_apply
 * for each of them, in order, after the commit. The result of the last
 * apply stays in the fsm until the next one, so the proposer's callback,
 * which raft calls right after apply, can read it.
 *
 * Snapshots (fsm version 3, asynchronous): snapshot runs on the loop thread
 * and only notes the store's applied index; snapshot_async runs on a worker
 * thread and copies the whole LMDB environment (compacted, from an LMDB read
 * snapshot, so writes go on meanwhile) into one buffer:
 *   [8 bytes "BLSNAP1\0"][u64 applied_index][u64 image_len][u64 0][image]
 * (little endian), staged in an unlinked file of scratch_dir and mapped
 * (page cache, not process memory). The image may include entries applied after the noted
 * index: that is harmless, because apply skips entries at or below the
 * store's own applied index. restore replaces the store with the image,
 * unless the store already holds that index or later (a restart loading its
 * own last snapshot): then it keeps the store and only frees the buffer. */
#ifndef BALLAST_FSM_H
#define BALLAST_FSM_H

#include <raft.h>

#include "apply.h"
#include "store.h"

#define BL_SNAP_MAGIC  "BLSNAP1"
#define BL_SNAP_HEADER 32

struct bl_fsm {
    struct raft_fsm fsm; /* the vtable handed to raft_init() */
    struct raft *raft;   /* set before raft_start(); for the entry index */
    struct bl_store *store;
    const char *scratch_dir; /* where snapshot images are staged (the data dir) */
    struct bl_applier applier;
    struct bl_apply_result last; /* result of the last applied command */
    /* A batch entry (command.h): its decoded commands and their results
     * (BL_BATCH_MAX each, allocated on the first batch). The result raft
     * hands the proposer of a batch is &batch (struct bl_fsm_batch). */
    struct bl_cmd *batch_cmds;
    struct bl_apply_result *batch_res;
    struct bl_fsm_batch {
        uint32_t n;
        const struct bl_apply_result *res;
    } batch;
    uint64_t revision;      /* store revision of the applied state */
    uint64_t applied_index; /* index of the last command applied */
    uint64_t snap_applied;  /* store applied index noted by snapshot */
    unsigned snapshots_taken;
    unsigned restores;
    /* Optional hooks, on the loop thread: after every applied command (its
     * LMDB transaction committed), and after the store was replaced from a
     * snapshot. */
    void (*on_apply)(void *arg, const struct bl_apply_result *res);
    void (*on_restore)(void *arg);
    void *hook_arg;
    char errmsg[256];
};

/* Fill @f's vtable over @store (not owned). */
void bl_fsm_init(struct bl_fsm *f, struct bl_store *store);

/* Release the applier's buffers. */
void bl_fsm_close(struct bl_fsm *f);

#endif /* BALLAST_FSM_H */
