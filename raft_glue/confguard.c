/* Guard against canonical/raft 0.15's membership rollback crash (see
 * confguard.h for the bug and the workaround).
 *
 * bl_confguard_before_recv() mirrors the steps canonical/raft 0.15 takes
 * for an AppendEntries message up to the rollback (recvAppendEntries,
 * checkLogMatchingProperty, deleteConflictingEntries in its replication.c):
 * a message of an older term is rejected; one that arrives while a
 * snapshot is being installed, or whose previous entry does not match, is
 * rejected too; otherwise the first entry whose term differs from ours at
 * the same index is where raft truncates, and if that index is at or below
 * the uncommitted configuration's, raft rolls back. Only then, and only
 * when the committed configuration's entry is gone from the log, does the
 * guard act. Everything else reaches raft untouched. */
#include "confguard.h"

#include <string.h>

#include "log.h"

void bl_confguard_init(struct bl_confguard *g)
{
    memset(g, 0, sizeof *g);
    raft_configuration_init(&g->committed);
}

void bl_confguard_close(struct bl_confguard *g)
{
    raft_configuration_close(&g->committed);
    g->committed_index = 0;
}

/* Copy @src into @dst (initialised, emptied first). 0 or RAFT_NOMEM. */
static int conf_copy(const struct raft_configuration *src, struct raft_configuration *dst)
{
    raft_configuration_close(dst);
    raft_configuration_init(dst);
    for (unsigned i = 0; i < src->n; i++) {
        const struct raft_server *s = &src->servers[i];
        int rv = raft_configuration_add(dst, s->id, s->address, s->role);
        if (rv != 0) {
            raft_configuration_close(dst);
            raft_configuration_init(dst);
            return rv;
        }
    }
    return 0;
}

static size_t log_n(const struct raft_log *log)
{
    if (log->entries == NULL || log->size == 0) {
        return 0;
    }
    return log->back >= log->front ? log->back - log->front : log->size - log->front + log->back;
}

static bool log_has(const struct raft_log *log, raft_index index)
{
    return index > log->offset && index <= log->offset + log_n(log);
}

raft_term bl_confguard_term_of(const struct raft_log *log, raft_index index)
{
    if (index == 0) {
        return 0;
    }
    if (log_has(log, index)) {
        size_t pos = (log->front + (size_t)(index - log->offset - 1)) % log->size;
        return log->entries[pos].term;
    }
    if (index == log->snapshot.last_index) {
        return log->snapshot.last_term;
    }
    return 0;
}

/* The index at which raft will truncate its log for @a, or 0 for none. */
static raft_index truncation_index(const struct raft *r, const struct raft_append_entries *a)
{
    if (a->term < r->current_term) {
        return 0; /* stale: rejected */
    }
    if (r->snapshot.put.data != NULL && a->n_entries > 0) {
        return 0; /* installing a snapshot: rejected */
    }
    if (a->prev_log_index > 0 &&
        bl_confguard_term_of(&r->log, a->prev_log_index) != a->prev_log_term) {
        return 0; /* missing or mismatching previous entry: rejected */
    }
    for (unsigned j = 0; j < a->n_entries; j++) {
        raft_index index = a->prev_log_index + 1 + j;
        raft_term local = bl_confguard_term_of(&r->log, index);
        if (local == 0) {
            return 0; /* only new entries from here on */
        }
        if (local != a->entries[j].term) {
            return index;
        }
    }
    return 0;
}

int bl_confguard_before_recv(struct bl_confguard *g, struct raft *r, const struct raft_message *msg)
{
    raft_index cut;

    if (r->configuration_uncommitted_index == 0) {
        /* raft holds the committed configuration: keep a copy of it. */
        if (r->configuration_index != g->committed_index &&
            conf_copy(&r->configuration, &g->committed) == 0) {
            g->committed_index = r->configuration_index;
        }
        return BL_CONFGUARD_DELIVER;
    }
    if (msg->type != RAFT_IO_APPEND_ENTRIES) {
        return BL_CONFGUARD_DELIVER;
    }
    cut = truncation_index(r, &msg->append_entries);
    if (cut == 0 || r->configuration_uncommitted_index < cut ||
        log_has(&r->log, r->configuration_index)) {
        return BL_CONFGUARD_DELIVER; /* no rollback, or raft 0.15 can do it */
    }
    if (r->state == RAFT_LEADER) {
        /* It is about to step down (the message has a higher term); raft
         * must free its leader state with the configuration it has. */
        g->dropped++;
        BL_WARN("confguard: held back AppendEntries (term %llu) from %llu that would roll back "
                "the uncommitted configuration at %llu while leading",
                (unsigned long long)msg->append_entries.term, (unsigned long long)msg->server_id,
                (unsigned long long)r->configuration_uncommitted_index);
        return BL_CONFGUARD_DROP;
    }
    if (g->committed_index != r->configuration_index) {
        /* No copy of it (never seen committed here): raft 0.15 would
         * crash; the member stops instead (exit 1, for its supervisor). */
        BL_ERROR("confguard: must roll back the configuration at %llu but the committed one "
                 "(%llu) is neither in the log nor copied",
                 (unsigned long long)r->configuration_uncommitted_index,
                 (unsigned long long)r->configuration_index);
        return BL_CONFGUARD_FATAL;
    }
    if (conf_copy(&g->committed, &r->configuration) != 0) {
        BL_ERROR("confguard: out of memory rolling back the configuration");
        return BL_CONFGUARD_FATAL;
    }
    BL_INFO("confguard: rolled back the uncommitted configuration at %llu to the committed one "
            "at %llu (its entry is compacted; canonical/raft 0.15 would crash here)",
            (unsigned long long)r->configuration_uncommitted_index,
            (unsigned long long)r->configuration_index);
    r->configuration_uncommitted_index = 0;
    g->rollbacks++;
    return BL_CONFGUARD_DELIVER;
}

void bl_confguard_free_msg(struct raft_message *msg)
{
    struct raft_append_entries *a = &msg->append_entries;
    void *batch = NULL;

    if (msg->type != RAFT_IO_APPEND_ENTRIES || a->entries == NULL) {
        return;
    }
    for (unsigned i = 0; i < a->n_entries; i++) {
        if (a->entries[i].batch != batch) {
            batch = a->entries[i].batch;
            raft_free(batch);
        }
    }
    raft_free(a->entries);
    a->entries = NULL;
    a->n_entries = 0;
}
