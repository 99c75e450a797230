/* StatefulSet identity (see statefulset.h): string work only, no I/O. */
#include "statefulset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define MAX_REPLICAS 64

int bl_statefulset_derive(const char *service, const char *pod_name, unsigned replicas,
                          int peer_port, int client_port, struct bl_statefulset *out, char *errmsg)
{
    const char *dash = strrchr(pod_name, '-');
    char base[128], *end;
    unsigned long long ordinal;
    size_t cap, len = 0;
    unsigned span;

    memset(out, 0, sizeof *out);
    if (service == NULL || service[0] == '\0' || strchr(service, ':') != NULL ||
        strlen(service) > 200) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "--statefulset needs a service name (no ':')");
        return BL_EBADREQ;
    }
    if (dash == NULL || dash == pod_name || dash[1] == '\0' ||
        (size_t)(dash - pod_name) >= sizeof base) {
        snprintf(errmsg, BL_ERRMSG_SIZE,
                 "pod name '%.100s' is not NAME-ORDINAL (set --pod-name or the hostname)",
                 pod_name);
        return BL_EBADREQ;
    }
    errno = 0;
    ordinal = strtoull(dash + 1, &end, 10);
    if (errno != 0 || *end != '\0' || ordinal >= 1000000) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "pod name '%.100s' does not end in an ordinal", pod_name);
        return BL_EBADREQ;
    }
    if (replicas == 0 || replicas > MAX_REPLICAS) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "--replicas must be 1..%d", MAX_REPLICAS);
        return BL_EBADREQ;
    }
    memcpy(base, pod_name, (size_t)(dash - pod_name));
    base[dash - pod_name] = '\0';
    out->ordinal = ordinal;
    out->id = ordinal + 1;
    snprintf(out->name, sizeof out->name, "%s", pod_name);
    snprintf(out->peer_url, sizeof out->peer_url, "%s.%s:%d", pod_name, service, peer_port);
    snprintf(out->client_url, sizeof out->client_url, "%s.%s:%d", pod_name, service, client_port);
    out->founders = ordinal < replicas ? replicas : 0;

    cap = (size_t)replicas * 420 + 1;
    out->initial_cluster = malloc(cap);
    span = ordinal + 1 > replicas ? (unsigned)ordinal + 1 : replicas;
    out->peers = calloc(span, sizeof *out->peers);
    if (out->initial_cluster == NULL || out->peers == NULL) {
        bl_statefulset_free(out);
        return BL_ENOMEM;
    }
    out->initial_cluster[0] = '\0';
    for (unsigned k = 0; k < replicas; k++) {
        len += (size_t)snprintf(out->initial_cluster + len, cap - len, "%s%u=%s-%u.%s:%d",
                                k ? "," : "", k + 1, base, k, service, peer_port);
    }
    for (unsigned k = 0; k < span; k++) {
        char buf[400];
        if (k == ordinal) {
            continue;
        }
        snprintf(buf, sizeof buf, "%s-%u.%s:%d", base, k, service, peer_port);
        out->peers[out->n_peers] = strdup(buf);
        if (out->peers[out->n_peers] == NULL) {
            bl_statefulset_free(out);
            return BL_ENOMEM;
        }
        out->n_peers++;
    }
    return 0;
}

void bl_statefulset_free(struct bl_statefulset *s)
{
    for (unsigned i = 0; i < s->n_peers; i++) {
        free(s->peers[i]);
    }
    free(s->peers);
    free(s->initial_cluster);
    s->peers = NULL;
    s->initial_cluster = NULL;
    s->n_peers = 0;
}
