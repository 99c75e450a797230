/* StatefulSet identity: a member's settings derived from its pod.
 *
 * A pod of a Kubernetes StatefulSet is named NAME-N (N = its ordinal) and
 * reachable under the stable DNS name NAME-N.SERVICE while its IP changes
 * with every reschedule. From --statefulset SERVICE, the pod name (the
 * hostname by default) and --replicas R this derives:
 *   Raft id      N + 1
 *   name         NAME-N
 *   advertised   NAME-N.SERVICE:PEERPORT and NAME-N.SERVICE:CLIENTPORT
 *   founders     ordinals 0..R-1: "1=NAME-0.SERVICE:PEERPORT,..."
 *   peers        NAME-K.SERVICE:PEERPORT for every other K below max(R, N+1)
 * The Raft configuration therefore holds names, resolved at each connect
 * (transport.h). Ordinals >= R are not founders: they join. */
#ifndef BALLAST_STATEFULSET_H
#define BALLAST_STATEFULSET_H

#include <stdint.h>

struct bl_statefulset {
    uint64_t ordinal;
    uint64_t id;
    char name[128];
    char peer_url[384];
    char client_url[384];
    char *initial_cluster; /* malloc'd */
    char **peers;          /* malloc'd array of malloc'd strings */
    unsigned n_peers;
    unsigned founders; /* R when this pod is a founder, else 0 */
};

/* Derive @out. @pod_name is NAME-N; ports are the listen ports. Returns
 * BL_EBADREQ with @errmsg (a pod name without an ordinal, R of 0 or over
 * 64, a service name with ':'), or BL_ENOMEM. */
int bl_statefulset_derive(const char *service, const char *pod_name, unsigned replicas,
                          int peer_port, int client_port, struct bl_statefulset *out, char *errmsg);

/* Free what @s owns. */
void bl_statefulset_free(struct bl_statefulset *s);

#endif /* BALLAST_STATEFULSET_H */
