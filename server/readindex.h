/* Linearizable reads served by a follower (Raft's ReadIndex, as etcd does
 * it): instead of relaying each read to the leader, the follower asks the
 * leader for a read index, one request for every read waiting at that
 * moment, waits until it has applied that index itself, and then serves
 * the reads from its own store.
 *
 * Why it is linearizable: the leader answers GET /v1/internal/readindex
 * after a Raft barrier it proposed on receiving the request has committed
 * (so it was still the leader then, and every entry committed before is
 * applied), with its applied index N. Every write acknowledged before a
 * read arrived here was committed before the request was sent, so it is at
 * or below N; applied state at N or later holds it. A read that arrives
 * while a request is already on its way waits for the next one.
 *
 * Failures: when no leader is known, the leader cannot be reached or does
 * not answer in time, or this member trails the index by more than
 * BL_READINDEX_MAX_LAG entries, the waiting reads are given back
 * (BL_EUNAVAILABLE) and the caller relays them to the leader as before.
 *
 * Ownership: a waiter is storage the caller provides (embedded in its
 * request) and must keep until its callback ran; the callback runs exactly
 * once. bl_readindex_close() fails every waiter with BL_ESHUTDOWN and frees
 * the module once its handles and its request are done. */
#ifndef BALLAST_READINDEX_H
#define BALLAST_READINDEX_H

#include <stdint.h>
#include <uv.h>

#include "http_client.h"
#include "member.h"

/* A follower this many entries behind the read index relays instead. */
#define BL_READINDEX_MAX_LAG 1000

struct bl_readindex;

/* 0: the applied state is now linearizable for this read: serve it here.
 * BL_EUNAVAILABLE: not confirmed: relay the read. BL_ESHUTDOWN: closing. */
typedef void (*bl_readindex_cb)(void *arg, int status);

struct bl_readindex_waiter {
    bl_readindex_cb cb;
    void *arg;
    struct bl_readindex_waiter *next;
};

/* Start on @loop for @member, asking the leader through @client (not
 * owned; it must outlive the module's last request) with @timeout_ms. */
int bl_readindex_init(uv_loop_t *loop, struct bl_member *member, struct bl_http_client *client,
                      unsigned timeout_ms, struct bl_readindex **out);

/* Queue a read: @cb(@arg, status) runs later, never from inside this call. */
void bl_readindex_wait(struct bl_readindex *ri, struct bl_readindex_waiter *w, bl_readindex_cb cb,
                       void *arg);

/* Reads served since start: confirmed (served here) and given back. */
void bl_readindex_counts(const struct bl_readindex *ri, uint64_t *served, uint64_t *given_back,
                         uint64_t *requests);

void bl_readindex_close(struct bl_readindex *ri);

#endif /* BALLAST_READINDEX_H */
