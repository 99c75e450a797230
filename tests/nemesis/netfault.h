/* Network faults between the members of one test cluster: partitions and
 * packet loss with nftables, delay through a delayproxy.
 *
 * Each member must have an address of its own (tc_cluster_opts
 * .own_addresses): rules match source and destination addresses, so the
 * traffic of the test itself (from 127.0.0.1) and of other test processes
 * (other addresses) is never touched. The injector owns one nftables table,
 * inet TC_NFT_TABLE_PREFIX<pid> (e.g. ballast_nem_4242), whose output-hook
 * chain jumps to two chains it rewrites atomically: "cuts" (drop everything
 * between cut pairs) and "loss" (drop a random share of packets between
 * members, `numgen random`). Each rule counts what it drops.
 *
 * A cut also aborts (`ss -K`) the TCP connections already open between the
 * two addresses, on both ends, so that nothing keeps talking over them
 * until a timeout.
 *
 * Cleanup: netfault_free() deletes the table; an atexit() handler deletes
 * the table of an injector not freed when the process exits; and the
 * harness's fixture teardown deletes the table of a test process that died
 * (see tests/lib/cluster.h).
 *
 * Functions return 0 or a negative errno value; on error the injector's
 * message (netfault_errmsg()) says what failed, with nft's own stderr.
 * Members are given by index 0..n-1; member sets by bit masks (bit i =
 * member i). One injector per process at a time. Not thread-safe: call
 * from one thread. Rules go to nft through a pipe: the process must ignore
 * SIGPIPE (tc_main() does). Needs root (CAP_NET_ADMIN). */
#ifndef BALLAST_TESTS_NETFAULT_H
#define BALLAST_TESTS_NETFAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "delayproxy.h"

/* Most members an injector handles. */
#define NETFAULT_MAX_MEMBERS 16
/* Size of the error messages. */
#define NETFAULT_ERRMSG_SIZE 512

struct netfault;

/* Create the table for members with IPv4 addresses @ips[0..@n-1] (copied),
 * replacing a table of the same name left by an earlier injector of this
 * process. @proxy (may be NULL, else it must outlive the injector, which
 * does not own it) is what netfault_delay() acts on. On 0, *@out is the
 * injector, freed by netfault_free(). Errors: -EINVAL (bad count or
 * address), -EBUSY (this process has an injector already), -ENOMEM, -EIO
 * (nft failed; @errmsg has its stderr). */
int netfault_new(const char *const *ips, int n, struct delayproxy *proxy, struct netfault **out,
                 char errmsg[NETFAULT_ERRMSG_SIZE]);

/* Why the last call on @nf failed. Valid until the next call. */
const char *netfault_errmsg(const struct netfault *nf);

/* The table's name, e.g. "ballast_nem_4242" (family inet). */
const char *netfault_table(const struct netfault *nf);

/* Make the cuts exactly @from[i] for each member i: bit j of @from[i] drops
 * every packet from member i to member j (the other direction is cut only
 * if bit i of @from[j] is set). Replaces the cuts in force, in one nft
 * transaction; then aborts the connections between every pair cut in
 * either direction. -EINVAL if a bit names no member or a member itself. */
int netfault_apply(struct netfault *nf, const uint32_t *from);

/* Add a cut between @i and @j (both directions) to those in force. */
int netfault_cut(struct netfault *nf, int i, int j);

/* Two sides: cut every pair with one member in @side and the other not,
 * replacing the cuts in force. @side must be neither empty nor everyone. */
int netfault_partition(struct netfault *nf, uint32_t side);

/* Cut member @i off from every other member (netfault_partition(1 << i)). */
int netfault_isolate(struct netfault *nf, int i);

/* Split into @minority, fewer than half of the members and at least one,
 * and the majority, the rest. -EINVAL if @minority is not such a set. */
int netfault_majority_minority(struct netfault *nf, uint32_t minority);

/* Two halves that cannot reach each other but both reach @bridge: @half
 * (without @bridge) against everyone outside @half (without @bridge).
 * Replaces the cuts in force. -EINVAL if either half is empty. */
int netfault_bridge(struct netfault *nf, int bridge, uint32_t half);

/* Drop @percent (0..100; 0 removes it) of the packets between any two
 * members, at random, independently of the cuts. */
int netfault_loss(struct netfault *nf, int percent);

/* Delay traffic between members through the proxy by @ms plus a random
 * [0, @jitter_ms]. -ENOTSUP without a proxy (unless both are 0). */
int netfault_delay(struct netfault *nf, int ms, int jitter_ms);

/* Remove every cut and loss rule (the table and its hook chain stay) and
 * set the delay to 0. */
int netfault_heal(struct netfault *nf);

/* Packets dropped by the cut and the loss rules in force (counters start
 * at 0 when the rules are replaced) into *@cut and *@loss (either may be
 * NULL). */
int netfault_dropped(struct netfault *nf, uint64_t *cut, uint64_t *loss);

/* Delete the table (every rule with it) and free @nf. The delay proxy is
 * left as it is. NULL is a no-op. Returns 0, or -EIO if nft failed (the
 * message goes to stderr, and @nf is freed all the same). */
int netfault_free(struct netfault *nf);

/* Run `nft list tables` and put its output, NUL-terminated, into @out. */
int netfault_list_tables(char *out, size_t cap);

/* Whether @tables (from netfault_list_tables()) has a table of process
 * @pid: TC_NFT_TABLE_PREFIX<pid>. */
bool netfault_has_table_of(const char *tables, long pid);

#endif /* BALLAST_TESTS_NETFAULT_H */
