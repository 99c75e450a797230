/* A TCP proxy that delays the bytes between cluster members, for tests.
 *
 * The kernel has no `tc netem` here, so delay is made in user space: each
 * member advertises a proxy address (tc_cluster_opts.peer_proxy) and a
 * delayproxy forwards every connection made to it to the member's real peer
 * address. The outgoing connection is bound to the source IP of the
 * incoming one, so on both hops the packets carry the two members'
 * addresses and nftables rules between members (netfault.h) still match.
 *
 * Bytes are forwarded in order in each direction, each read held back by
 * the current delay plus a random jitter in [0, jitter]; 0 passes bytes on
 * at once. When either side closes, the other is closed once what was read
 * before has gone out; when either side fails (reset), both are closed at
 * once. At most DELAYPROXY_MAX_QUEUED bytes wait per direction (reading
 * stops until they leave).
 *
 * One thread runs every listener and connection. Functions return 0 or a
 * negative errno value. Not for production: it trusts its peers. */
#ifndef BALLAST_TESTS_DELAYPROXY_H
#define BALLAST_TESTS_DELAYPROXY_H

#include <stdint.h>

/* Most listeners one proxy runs. */
#define DELAYPROXY_MAX_ROUTES 16
/* Most connections open at once; more are accepted and closed at once. */
#define DELAYPROXY_MAX_CONNS 256
/* Bytes that may wait in one direction of one connection. */
#define DELAYPROXY_MAX_QUEUED (256 * 1024)
/* Size of the error message buffer delayproxy_start() fills. */
#define DELAYPROXY_ERRMSG_SIZE 256

struct delayproxy;

/* One listener: accept on @listen ("IPv4:PORT") and forward to @target
 * ("IPv4:PORT"). */
struct delayproxy_route {
    const char *listen;
    const char *target;
};

/* Bind and listen on every route's address and start the proxy thread. On
 * 0, *@out is the running proxy (stop and free it with delayproxy_stop());
 * on error nothing is left open and @errmsg says what failed: -EINVAL (a
 * bad address or count), -ENOMEM, or the errno of socket(), bind() or
 * listen(), or of pthread_create(). */
int delayproxy_start(const struct delayproxy_route *routes, int n, struct delayproxy **out,
                     char errmsg[DELAYPROXY_ERRMSG_SIZE]);

/* Hold back bytes read from now on by @ms plus a uniform random [0,
 * @jitter_ms] (both clamped to 0..60000). Bytes already queued keep their
 * time. Safe from any thread. */
void delayproxy_set_delay(struct delayproxy *p, int ms, int jitter_ms);

/* Counters since the start, safe from any thread: connections accepted,
 * and bytes written to either side. Either pointer may be NULL. */
void delayproxy_stats(const struct delayproxy *p, uint64_t *connections, uint64_t *bytes);

/* Stop the thread, close every listener and connection (queued bytes are
 * dropped) and free @p. NULL is a no-op. */
void delayproxy_stop(struct delayproxy *p);

#endif /* BALLAST_TESTS_DELAYPROXY_H */
