/* Joining a running cluster: ask one of its members, over the HTTP API, to
 * add this member (POST /v1/members with "rejoin": true), and learn the Raft
 * id to run under. The member answering relays to the leader.
 *
 * The request is retried every JOIN_RETRY_MS, round robin over the given
 * client addresses, until a member answers 200/201 with the id, or answers
 * 400 (a request the cluster will never accept: the callback gets
 * BL_EBADREQ and the server's message). Progress is logged every few
 * seconds, so a member waiting for an unreachable cluster says so. */
#ifndef BALLAST_JOIN_H
#define BALLAST_JOIN_H

#include <stdint.h>
#include <uv.h>

struct bl_join;

struct bl_join_opts {
    const char *const *endpoints; /* client addresses HOST:PORT of running members */
    unsigned n_endpoints;
    uint64_t id; /* the id asked for (0: the leader picks one) */
    const char *name;
    const char *peer_url;
    const char *client_url;
};

/* @status BL_OK with the id to use, BL_EBADREQ with the cluster's reason in
 * @errmsg, or BL_ESHUTDOWN after bl_join_stop(). */
typedef void (*bl_join_cb)(void *arg, int status, uint64_t id, const char *errmsg);

/* Start on @loop; @opts is copied. Returns BL_ENOMEM or BL_EBADREQ (no
 * endpoints); @cb is then never called. */
int bl_join_start(uv_loop_t *loop, const struct bl_join_opts *opts, bl_join_cb cb, void *arg,
                  struct bl_join **out);

/* Give up: @cb gets BL_ESHUTDOWN once the pending request is done. */
void bl_join_stop(struct bl_join *j);

#endif /* BALLAST_JOIN_H */
