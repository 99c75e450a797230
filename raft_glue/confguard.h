/* Guard against canonical/raft 0.15 crashing when it rolls back an
 * uncommitted membership change (canonical/raft issues #250 and #323,
 * fixed upstream in 0.17 by PR #354, not in Debian 12's 0.15).
 *
 * The bug. A follower that holds an uncommitted configuration entry and
 * receives AppendEntries that truncate it calls membershipRollback(), which
 * decodes the last committed configuration from the log entry at
 * raft->configuration_index. Once a snapshot compacted that entry away (the
 * usual case: the last committed configuration is often the bootstrap at
 * index 1), the entry is NULL and the process dies with a segfault
 * (Debian's build has no asserts). It happens when a leader loses its
 * leadership while a member is being added, removed or promoted: found by
 * the nemesis (removal of a member while the leader moved).
 *
 * The workaround. The guard keeps its own copy of the last committed
 * configuration, taken whenever raft has none uncommitted. Before raft
 * sees an AppendEntries message, the guard checks, as raft 0.15 would,
 * whether the message truncates the uncommitted configuration entry while
 * the committed one is no longer in the log. If so it does the rollback
 * itself, from the copy (what the upstream fix does from its backup), so
 * raft finds nothing to roll back. A member that leads when such a message
 * arrives (it is about to step down) does not get the message: raft frees
 * its leader state on stepping down and must see the configuration it
 * sized that state for; the sender retries within a heartbeat, by when the
 * member has stepped down (a lost message is ordinary in Raft).
 *
 * Ownership: the guard owns its copy (raft heap); bl_confguard_close()
 * frees it. It reads raft's public state (struct raft, struct raft_log) and
 * writes only raft->configuration and raft->configuration_uncommitted_index,
 * on the loop thread, between raft's own callbacks. */
#ifndef BALLAST_CONFGUARD_H
#define BALLAST_CONFGUARD_H

#include <raft.h>
#include <stdbool.h>

struct bl_confguard {
    struct raft_configuration committed; /* copy of the last committed configuration */
    raft_index committed_index;          /* its entry's index (0: no copy) */
    unsigned rollbacks;                  /* rollbacks done from the copy */
    unsigned dropped;                    /* messages held back from a leader */
};

void bl_confguard_init(struct bl_confguard *g);
void bl_confguard_close(struct bl_confguard *g);

enum {
    BL_CONFGUARD_DELIVER = 0, /* hand @msg to raft (rolled back first if needed) */
    BL_CONFGUARD_DROP = 1,    /* raft must not see it: free it (bl_confguard_free_msg) */
    BL_CONFGUARD_FATAL = -1,  /* raft would crash and the guard cannot help: stop */
};

/* Decide what to do with @msg, which raft @r is about to receive. */
int bl_confguard_before_recv(struct bl_confguard *g, struct raft *r,
                             const struct raft_message *msg);

/* Free what an AppendEntries message owns (its entries and their batches),
 * as raft does for a message it rejects. */
void bl_confguard_free_msg(struct raft_message *msg);

/* The term of entry @index in @log: 0 when it is not there (nor the last
 * snapshot's), as canonical/raft's logTermOf(). */
raft_term bl_confguard_term_of(const struct raft_log *log, raft_index index);

#endif /* BALLAST_CONFGUARD_H */
