/* The lessor: the in-memory lease table of one member.
 *
 * Every member mirrors the replicated lease table here (id -> TTL), fed by
 * the applier's grants and a scan of the store at start and after a
 * snapshot is installed. Only the leader uses deadlines: when a member
 * becomes leader it gives every lease a full TTL from that moment
 * (bl_lessor_promote), keepalives move one deadline, and the leader asks
 * bl_lessor_expired() which leases to revoke through Raft. A revoked lease
 * leaves the store through that Raft entry; the lessor forgets it when told
 * (bl_lessor_del) or when the leader finds it gone from the store.
 *
 * Open addressing with linear probing and backward-shift deletion; grows
 * at 3/4 load. Memory: the table is owned by the lessor (bl_lessor_free). */
#ifndef BALLAST_LESSOR_H
#define BALLAST_LESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bl_lessor_entry {
    uint64_t id;       /* 0: empty slot */
    uint64_t ttl;      /* seconds */
    uint64_t deadline; /* loop time in ms; 0 while not leading */
    bool revoking;     /* a revoke entry is in flight */
};

struct bl_lessor {
    struct bl_lessor_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
};

/* The deadline of a lease of @ttl seconds kept alive at @now (ms),
 * saturating: a TTL too large for the clock never wraps to a near deadline
 * (the HTTP API caps TTLs at 10 days; the member API does not). */
uint64_t bl_lessor_deadline(uint64_t now, uint64_t ttl);

void bl_lessor_init(struct bl_lessor *l);
void bl_lessor_free(struct bl_lessor *l);
void bl_lessor_clear(struct bl_lessor *l);

/* Add lease @id (or update its TTL) with @deadline (0 = none yet). */
int bl_lessor_set(struct bl_lessor *l, uint64_t id, uint64_t ttl, uint64_t deadline);
void bl_lessor_del(struct bl_lessor *l, uint64_t id);
/* The entry of @id, or NULL. Valid until the next set/del. */
struct bl_lessor_entry *bl_lessor_find(struct bl_lessor *l, uint64_t id);
/* Every deadline := @now + TTL, revoking flags cleared (a new leader). */
void bl_lessor_promote(struct bl_lessor *l, uint64_t now);
/* Up to @max ids whose deadline passed at @now and whose revoke is not in
 * flight, into @ids; returns how many. */
size_t bl_lessor_expired(struct bl_lessor *l, uint64_t now, uint64_t *ids, size_t max);

#endif /* BALLAST_LESSOR_H */
