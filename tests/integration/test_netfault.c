/* Integration tests of the network fault injector (tests/nemesis/netfault.c)
 * and the delay proxy (tests/nemesis/delayproxy.c) on real clusters.
 *
 * Each test starts a cluster whose members have addresses of their own
 * (tc_cluster_opts.own_addresses, some also .peer_proxy), makes a fault,
 * checks first its shape (a TCP connect from one member's address to
 * another's is dropped or gets through, as the fault says) and then its
 * effect on Raft: who can elect a leader, who can commit. Each test ends by
 * healing, checking that all members converge on one revision, freeing the
 * injector, and checking that `nft list tables` shows no table of this
 * process. Members run with --propose-timeout 2s, so a write that cannot
 * commit fails quickly. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster.h"
#include "delayproxy.h"
#include "netfault.h"

/* A cluster with its injector and (maybe) its proxy. */
struct fx {
    struct tc_cluster *c;
    struct netfault *nf;
    struct delayproxy *dp;
};

static const char *const EXTRA[] = {"--propose-timeout", "2s", NULL};

/* Start @n members on their own addresses (behind a delay proxy when
 * @proxy), create the injector and wait until the cluster is stable.
 * Returns the leader's index. */
static int fx_start(struct fx *f, int n, bool proxy)
{
    struct tc_cluster_opts o = {.n = n, .extra = EXTRA, .own_addresses = true, .peer_proxy = proxy};
    const char *ips[TC_MAX_MEMBERS];
    char err[NETFAULT_ERRMSG_SIZE];

    memset(f, 0, sizeof *f);
    f->c = tc_cluster_start_opts(&o);
    if (proxy) {
        struct delayproxy_route routes[TC_MAX_MEMBERS];
        for (int i = 0; i < n; i++) {
            routes[i].listen = f->c->members[i].proxy_addr;
            routes[i].target = f->c->members[i].peer_addr;
        }
        ck_assert_msg(delayproxy_start(routes, n, &f->dp, err) == 0, "%s", err);
    }
    for (int i = 0; i < n; i++) {
        ips[i] = f->c->members[i].ip;
        ck_assert_str_ne(ips[i], "127.0.0.1");
    }
    ck_assert_msg(netfault_new(ips, n, f->dp, &f->nf, err) == 0, "%s", err);
    return tc_wait_stable(f->c, 30000);
}

/* Heal, stop everything, and check that no table of this process is left. */
static void fx_end(struct fx *f)
{
    char tables[8192];

    ck_assert_msg(netfault_heal(f->nf) == 0, "%s", netfault_errmsg(f->nf));
    ck_assert_int_eq(netfault_free(f->nf), 0);
    tc_cluster_stop(f->c);
    delayproxy_stop(f->dp);
    ck_assert_msg(netfault_list_tables(tables, sizeof tables) == 0, "%s", tables);
    ck_assert_msg(!netfault_has_table_of(tables, (long)getpid()), "a table is left: %s", tables);
}

#define NF_OK(f, call) ck_assert_msg((call) == 0, "%s: %s", #call, netfault_errmsg((f)->nf))

/* Whether a TCP connection from address @from_ip to @to ("IP:PORT") is
 * made within @ms. */
static bool reach(const char *from_ip, const char *to, int ms)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    char host[32];
    const char *colon = strrchr(to, ':');
    struct pollfd p;
    int fd, err = 0, rv;
    socklen_t len = sizeof err;

    ck_assert_ptr_nonnull(colon);
    snprintf(host, sizeof host, "%.*s", (int)(colon - to), to);
    ck_assert_int_eq(inet_pton(AF_INET, from_ip, &src.sin_addr), 1);
    ck_assert_int_eq(inet_pton(AF_INET, host, &dst.sin_addr), 1);
    dst.sin_port = htons((uint16_t)atoi(colon + 1));
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    rv = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    if (rv != 0 && errno == EINPROGRESS) {
        p = (struct pollfd){fd, POLLOUT, 0};
        rv = poll(&p, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
                     err == 0
                 ? 0
                 : -1;
    }
    close(fd);
    return rv == 0;
}

/* Assert that member @i can(not) open a connection to member @j's client
 * port (and its proxy port, if any). */
static void check_link(struct fx *f, int i, int j, bool open)
{
    const struct tc_member *a = &f->c->members[i], *b = &f->c->members[j];
    ck_assert_msg(reach(a->ip, b->client_addr, 700) == open, "%s -> %s: expected %s", a->name,
                  b->name, open ? "a connection" : "no connection");
    if (b->proxy_addr[0] != '\0') {
        ck_assert_msg(reach(a->ip, b->proxy_addr, 700) == open, "%s -> proxy of %s: expected %s",
                      a->name, b->name, open ? "a connection" : "no connection");
    }
}

/* Wait until the members in @mask agree on a leader in @mask other than
 * @not_id that reports role "leader". Returns its index. */
static int wait_leader_among(struct tc_cluster *c, uint32_t mask, uint64_t not_id, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char seen[512] = "";

    for (;;) {
        uint64_t leader = 0;
        bool agree = true;
        size_t used = 0;

        tc_check_running(c);
        for (int i = 0; i < c->n && agree; i++) {
            struct tc_status st;
            char err[128];
            if (!(mask & (1u << i))) {
                continue;
            }
            if (tc_get_status(c, i, &st, err, sizeof err) != 0) {
                agree = false;
                used += (size_t)snprintf(seen + used, sizeof seen - used, " %d:%s", i, err);
                break;
            }
            used += (size_t)snprintf(seen + used, sizeof seen - used, " %d:%s/leader=%llu", i,
                                     st.role, (unsigned long long)st.leader);
            if (leader == 0) {
                leader = st.leader;
            }
            agree = st.leader != 0 && st.leader == leader && st.leader != not_id &&
                    (mask & (1u << (st.leader - 1))) &&
                    (st.id != st.leader || strcmp(st.role, "leader") == 0);
        }
        if (agree) {
            return (int)leader - 1;
        }
        ck_assert_msg(tc_now_ms() < deadline, "no leader among 0x%x (not %llu) within %d ms:%s",
                      mask, (unsigned long long)not_id, timeout_ms, seen);
        tc_sleep_ms(100);
    }
}

/* PUT @key through member @i with a deadline; the HTTP status, or -1 when
 * no answer came. The revision into *@rev when 200 (may be NULL). */
static int put_status(struct tc_cluster *c, int i, const char *key, int timeout_ms, uint64_t *rev)
{
    char target[256];
    struct tc_response r;
    int status;

    tc_kv_target(target, sizeof target, key, strlen(key), NULL);
    status =
        tc_http_ex(tc_addr(c, i), timeout_ms, "PUT", target, "v", 1, NULL, &r) == 0 ? r.status : -1;
    if (status == 200 && rev != NULL) {
        ck_assert(tc_json_u64(r.body, "revision", rev));
    }
    tc_response_free(&r);
    return status;
}

/* PUT @key through member @i until it is acknowledged (the leader may still
 * be settling); fails the test after @timeout_ms. Returns the revision. */
static uint64_t put_until_ok(struct tc_cluster *c, int i, const char *key, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    int status;
    uint64_t rev = 0;

    while ((status = put_status(c, i, key, 8000, &rev)) != 200) {
        ck_assert_msg(tc_now_ms() < deadline, "PUT %s via %s: last status %d after %d ms", key,
                      c->members[i].name, status, timeout_ms);
        tc_sleep_ms(200);
    }
    return rev;
}

/* GET @key from member @i with @consistency: the HTTP status, or -1. */
static int get_status(struct tc_cluster *c, int i, const char *key, const char *consistency)
{
    char target[256], query[64];
    struct tc_response r;
    int status;

    snprintf(query, sizeof query, "consistency=%s", consistency);
    tc_kv_target(target, sizeof target, key, strlen(key), query);
    status = tc_http_ex(tc_addr(c, i), 8000, "GET", target, NULL, 0, NULL, &r) == 0 ? r.status : -1;
    tc_response_free(&r);
    return status;
}

/* Wait until every member reports the same revision, at least @min_rev. */
static void wait_converged(struct tc_cluster *c, uint64_t min_rev, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char seen[256] = "";

    for (;;) {
        uint64_t first = 0;
        bool same = true;
        size_t used = 0;
        for (int i = 0; i < c->n; i++) {
            struct tc_status st;
            char err[128];
            if (tc_get_status(c, i, &st, err, sizeof err) != 0) {
                same = false;
                used += (size_t)snprintf(seen + used, sizeof seen - used, " %d:?", i);
                continue;
            }
            used += (size_t)snprintf(seen + used, sizeof seen - used, " %d:%llu", i,
                                     (unsigned long long)st.revision);
            if (i == 0) {
                first = st.revision;
            }
            same = same && st.revision == first && st.revision >= min_rev;
        }
        if (same) {
            return;
        }
        ck_assert_msg(tc_now_ms() < deadline, "members did not converge on revision >= %llu:%s",
                      (unsigned long long)min_rev, seen);
        tc_sleep_ms(100);
    }
}

static uint32_t all_members(const struct tc_cluster *c)
{
    return (1u << c->n) - 1;
}

/* --- tests ------------------------------------------------------------------ */

/* Isolate the leader: the other two elect a new one and take writes; the
 * old leader can neither commit a write nor serve a linearizable read, and
 * does not see the new write; after healing it catches up. */
START_TEST(isolate_leader)
{
    struct fx f;
    int old = fx_start(&f, 3, false), a = (old + 1) % 3, b = (old + 2) % 3, nl;
    uint64_t rev, cut = 0;

    put_until_ok(f.c, old, "before", 10000);
    NF_OK(&f, netfault_isolate(f.nf, old));
    check_link(&f, old, a, false);
    check_link(&f, b, old, false);
    check_link(&f, a, b, true);

    nl = wait_leader_among(f.c, all_members(f.c) & ~(1u << old), f.c->members[old].id, 20000);
    rev = put_until_ok(f.c, nl, "during", 15000);
    ck_assert_int_ne(put_status(f.c, old, "lost", 8000, NULL), 200);
    ck_assert_int_ne(get_status(f.c, old, "before", "linearizable"), 200);
    ck_assert_int_eq(get_status(f.c, old, "during", "serializable"), 404);
    NF_OK(&f, netfault_dropped(f.nf, &cut, NULL));
    ck_assert_uint_gt(cut, 0);

    NF_OK(&f, netfault_heal(f.nf));
    check_link(&f, old, a, true);
    tc_wait_leader(f.c, 20000);
    rev = put_until_ok(f.c, nl, "after", 15000);
    wait_converged(f.c, rev, 20000);
    ck_assert_int_eq(get_status(f.c, old, "during", "serializable"), 200);
    ck_assert_int_eq(get_status(f.c, old, "after", "linearizable"), 200);
    fx_end(&f);
}
END_TEST

/* Isolate a follower that still believes in the leader: a write through it
 * must not reach the leader by the HTTP relay (ballastd binds the relay to
 * its own --listen-client address, so the cut holds); the other two go on.
 * After healing it has the write made meanwhile. */
START_TEST(isolated_follower)
{
    struct fx f;
    int leader = fx_start(&f, 3, false), fol = (leader + 1) % 3;
    uint64_t rev;

    NF_OK(&f, netfault_isolate(f.nf, fol));
    ck_assert_int_ne(put_status(f.c, fol, "relayed", 8000, NULL), 200);
    rev = put_until_ok(f.c, leader, "direct", 15000);
    ck_assert_int_eq(get_status(f.c, fol, "direct", "serializable"), 404);
    NF_OK(&f, netfault_heal(f.nf));
    wait_converged(f.c, rev, 20000);
    ck_assert_int_eq(get_status(f.c, fol, "direct", "serializable"), 200);
    fx_end(&f);
}
END_TEST

/* Five members: the leader and one follower on the minority side. The
 * majority elects a leader and commits; the minority cannot, either
 * directly or relayed by its follower. Healing brings all together. */
START_TEST(majority_minority)
{
    struct fx f;
    int old = fx_start(&f, 5, false), mate = (old + 1) % 5, nl;
    uint32_t minority = (1u << old) | (1u << mate);
    uint64_t rev;

    ck_assert_int_eq(netfault_majority_minority(f.nf, all_members(f.c) & ~minority), -EINVAL);
    NF_OK(&f, netfault_majority_minority(f.nf, minority));
    check_link(&f, old, mate, true);
    check_link(&f, mate, (old + 2) % 5, false);
    check_link(&f, (old + 3) % 5, old, false);
    check_link(&f, (old + 3) % 5, (old + 4) % 5, true);

    nl = wait_leader_among(f.c, all_members(f.c) & ~minority, f.c->members[old].id, 20000);
    rev = put_until_ok(f.c, nl, "majority", 15000);
    ck_assert_int_ne(put_status(f.c, mate, "minority-follower", 8000, NULL), 200);
    ck_assert_int_ne(put_status(f.c, old, "minority-leader", 8000, NULL), 200);
    ck_assert_int_eq(get_status(f.c, mate, "majority", "serializable"), 404);

    NF_OK(&f, netfault_heal(f.nf));
    tc_wait_leader(f.c, 20000);
    rev = put_until_ok(f.c, mate, "healed", 15000);
    wait_converged(f.c, rev, 20000);
    fx_end(&f);
}
END_TEST

/* Five members behind the delay proxy (delay 0): {0,1} and {3,4} cannot
 * reach each other, member 2 reaches both. Cut rules hold on both hops of
 * the proxy, and the cluster keeps a leader and takes writes. */
START_TEST(bridge)
{
    struct fx f;
    uint64_t rev = 0, conns = 0, bytes = 0;
    int64_t start;

    fx_start(&f, 5, true);
    delayproxy_stats(f.dp, &conns, &bytes);
    ck_assert_uint_ge(conns, 4); /* the members talk through the proxy */
    ck_assert_uint_gt(bytes, 0);
    ck_assert_int_eq(netfault_bridge(f.nf, 2, 1u << 2), -EINVAL);
    NF_OK(&f, netfault_bridge(f.nf, 2, 0x3));
    check_link(&f, 0, 3, false);
    check_link(&f, 4, 1, false);
    check_link(&f, 0, 1, true);
    check_link(&f, 0, 2, true);
    check_link(&f, 3, 2, true);
    check_link(&f, 2, 4, true);

    start = tc_now_ms();
    for (int k = 0; k < 10; k++) {
        char key[32];
        snprintf(key, sizeof key, "bridge-%d", k);
        rev = put_until_ok(f.c, 2, key, 30000);
        tc_sleep_ms(200);
    }
    fprintf(stderr, "METRIC bridge_10_writes_ms=%lld\n", (long long)(tc_now_ms() - start));
    {
        struct tc_status st;
        char err[128];
        ck_assert_msg(tc_get_status(f.c, 2, &st, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_ne(st.leader, 0); /* the bridge knows a leader */
    }

    NF_OK(&f, netfault_heal(f.nf));
    tc_wait_leader(f.c, 20000);
    wait_converged(f.c, rev, 20000);
    fx_end(&f);
}
END_TEST

/* 25 % of the packets between members dropped: writes still commit, and
 * the loss rules did drop packets. Healing converges. */
START_TEST(packet_loss)
{
    struct fx f;
    int leader = fx_start(&f, 3, false);
    uint64_t rev = 0, lost = 0;
    int64_t start;

    ck_assert_int_eq(netfault_loss(f.nf, 101), -EINVAL);
    NF_OK(&f, netfault_loss(f.nf, 25));
    start = tc_now_ms();
    for (int k = 0; k < 20; k++) {
        char key[32];
        snprintf(key, sizeof key, "loss-%d", k);
        rev = put_until_ok(f.c, (leader + k) % 3, key, 30000);
    }
    fprintf(stderr, "METRIC loss25_20_writes_ms=%lld\n", (long long)(tc_now_ms() - start));
    NF_OK(&f, netfault_dropped(f.nf, NULL, &lost));
    ck_assert_uint_gt(lost, 0);

    NF_OK(&f, netfault_heal(f.nf));
    wait_converged(f.c, rev, 20000);
    fx_end(&f);
}
END_TEST

/* The median of five writes through member @i, in ms; the fastest into
 * *@min. */
static int64_t write_latency(struct tc_cluster *c, int i, const char *prefix, int64_t *min)
{
    int64_t t[5];
    for (int k = 0; k < 5; k++) {
        char key[32];
        int64_t s = tc_now_ms();
        snprintf(key, sizeof key, "%s-%d", prefix, k);
        tc_put(c, i, key, "v", 1);
        t[k] = tc_now_ms() - s;
    }
    for (int a = 0; a < 5; a++) {
        for (int b = a + 1; b < 5; b++) {
            if (t[b] < t[a]) {
                int64_t x = t[a];
                t[a] = t[b];
                t[b] = x;
            }
        }
    }
    *min = t[0];
    return t[2];
}

/* 100 ms on every link between members: a write needs the leader's append
 * to reach a follower and its answer to come back, two delayed hops, so
 * even the fastest of five writes takes more than 150 ms. */
START_TEST(delay)
{
    struct fx f;
    int leader = fx_start(&f, 3, true);
    int64_t base_min, base_med, slow_min, slow_med;

    ck_assert_int_eq(netfault_delay(f.nf, -1, 0), -EINVAL);
    base_med = write_latency(f.c, leader, "fast", &base_min);
    NF_OK(&f, netfault_delay(f.nf, 100, 20));
    tc_sleep_ms(500); /* bytes read before the change went out at once */
    leader = tc_wait_leader(f.c, 20000);
    slow_med = write_latency(f.c, leader, "slow", &slow_min);
    fprintf(stderr, "METRIC write_ms_delay0_median=%lld delay100_min=%lld delay100_median=%lld\n",
            (long long)base_med, (long long)slow_min, (long long)slow_med);
    ck_assert_int_gt(slow_min, 150);

    NF_OK(&f, netfault_heal(f.nf)); /* delay back to 0 */
    wait_converged(f.c, 1, 20000);
    fx_end(&f);
}
END_TEST

/* Shape errors are refused without touching the rules. */
START_TEST(bad_shapes)
{
    struct fx f;
    uint32_t self[3] = {1u << 0, 0, 0};
    const char *same[] = {"127.0.0.1", "127.0.0.1"};
    struct netfault *other = NULL;
    char err[NETFAULT_ERRMSG_SIZE];

    fx_start(&f, 3, false);
    ck_assert_int_eq(netfault_apply(f.nf, self), -EINVAL);
    ck_assert_int_eq(netfault_cut(f.nf, 0, 3), -EINVAL);
    ck_assert_int_eq(netfault_isolate(f.nf, -1), -EINVAL);
    ck_assert_int_eq(netfault_partition(f.nf, 0x7), -EINVAL);
    ck_assert_int_eq(netfault_delay(f.nf, 10, 0), -ENOTSUP);
    ck_assert_int_eq(netfault_new(same, 2, NULL, &other, err), -EINVAL);
    ck_assert_int_eq(netfault_new(same, 1, NULL, &other, err), -EINVAL);
    {
        const char *ips[] = {f.c->members[0].ip, f.c->members[1].ip};
        ck_assert_int_eq(netfault_new(ips, 2, NULL, &other, err), -EBUSY);
    }
    NF_OK(&f, netfault_cut(f.nf, 0, 1));
    check_link(&f, 0, 1, false);
    check_link(&f, 0, 2, true);
    fx_end(&f);
}
END_TEST

/* A TCP socket bound to @ip and connected to @sa (blocking). */
static int connect_from(const char *ip, const struct sockaddr_in *sa)
{
    struct sockaddr_in src = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &src.sin_addr), 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    ck_assert_msg(connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

/* Read exactly @len bytes from @fd within 5 s. */
static void read_all(int fd, char *buf, size_t len)
{
    int64_t deadline = tc_now_ms() + 5000;
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        ck_assert_msg(tc_now_ms() < deadline, "read: %zu of %zu bytes after 5 s", got, len);
        if (poll(&p, 1, 100) != 1) {
            continue;
        }
        r = read(fd, buf + got, len - got);
        ck_assert_msg(r > 0, "read: %s", r == 0 ? "EOF" : strerror(errno));
        got += (size_t)r;
    }
}

/* The proxy alone, no cluster: the second hop leaves from the client's
 * address, bytes keep their order through a delay with jitter, the delay
 * holds them back, and a close on one side closes the other. */
START_TEST(proxy_forwarding)
{
    struct sockaddr_in sa = {.sin_family = AF_INET}, peer, front;
    socklen_t len = sizeof sa;
    struct delayproxy *dp;
    struct delayproxy_route route;
    char listen_addr[48], target[48], err[DELAYPROXY_ERRMSG_SIZE], buf[4000], want[4000];
    uint16_t port;
    int lfd, cfd, sfd;
    int64_t t0;
    uint64_t conns, bytes;

    /* The target: a listener on 127.0.0.3. */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.3", &sa.sin_addr);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(target, sizeof target, "127.0.0.3:%u", (unsigned)ntohs(sa.sin_port));
    /* The proxy on 127.0.0.4, a port that was free. */
    {
        struct sockaddr_in p = {.sin_family = AF_INET};
        int tmp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        len = sizeof p;
        inet_pton(AF_INET, "127.0.0.4", &p.sin_addr);
        ck_assert_int_eq(bind(tmp, (struct sockaddr *)&p, sizeof p), 0);
        ck_assert_int_eq(getsockname(tmp, (struct sockaddr *)&p, &len), 0);
        port = ntohs(p.sin_port);
        close(tmp);
        front = p;
    }
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.4:%u", (unsigned)port);
    route.listen = listen_addr;
    route.target = target;
    ck_assert_msg(delayproxy_start(&route, 1, &dp, err) == 0, "%s", err);

    cfd = connect_from("127.0.0.2", &front);
    sfd = accept(lfd, (struct sockaddr *)&peer, &len);
    ck_assert_int_ge(sfd, 0);
    ck_assert_str_eq(inet_ntoa(peer.sin_addr), "127.0.0.2"); /* bound to the client's IP */

    /* Delay 0: both ways at once. */
    ck_assert_int_eq(write(cfd, "ping", 4), 4);
    read_all(sfd, buf, 4);
    ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
    ck_assert_int_eq(write(sfd, "pong", 4), 4);
    read_all(cfd, buf, 4);
    ck_assert_int_eq(memcmp(buf, "pong", 4), 0);

    /* 200 ms + up to 100 ms jitter, 40 writes of 100 bytes: in order, and
     * nothing before 200 ms. */
    delayproxy_set_delay(dp, 200, 100);
    for (int k = 0; k < 4000; k++) {
        want[k] = (char)('a' + (k / 100) % 26);
    }
    t0 = tc_now_ms();
    for (int k = 0; k < 40; k++) {
        ck_assert_int_eq(write(cfd, want + 100 * k, 100), 100);
        tc_sleep_ms(2);
    }
    read_all(sfd, buf, 1);
    ck_assert_int_ge(tc_now_ms() - t0, 190);
    read_all(sfd, buf + 1, 3999);
    ck_assert_int_eq(memcmp(buf, want, 4000), 0);

    /* A close on one side closes the other (after the bytes before it). */
    delayproxy_set_delay(dp, 0, 0);
    ck_assert_int_eq(write(cfd, "bye", 3), 3);
    close(cfd);
    read_all(sfd, buf, 3);
    ck_assert_int_eq(memcmp(buf, "bye", 3), 0);
    {
        struct pollfd p = {sfd, POLLIN, 0};
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        ck_assert_int_eq(read(sfd, buf, 1), 0); /* EOF */
    }
    delayproxy_stats(dp, &conns, &bytes);
    ck_assert_uint_eq(conns, 1);
    ck_assert_uint_eq(bytes, 4 + 4 + 4000 + 3);
    close(sfd);
    close(lfd);
    delayproxy_stop(dp);
}
END_TEST

static Suite *netfault_suite(void)
{
    Suite *s = suite_create("netfault");
    tc_add_case(s, "isolate_leader", isolate_leader, 120);
    tc_add_case(s, "isolated_follower", isolated_follower, 120);
    tc_add_case(s, "majority_minority", majority_minority, 120);
    tc_add_case(s, "bridge", bridge, 120);
    tc_add_case(s, "packet_loss", packet_loss, 120);
    tc_add_case(s, "delay", delay, 120);
    tc_add_case(s, "bad_shapes", bad_shapes, 60);
    tc_add_case(s, "proxy_forwarding", proxy_forwarding, 60);
    return s;
}

int main(void)
{
    char tables[4096];

    /* Without nftables or the right to use it (root), nothing here can run. */
    if (getenv("BALLASTD") != NULL && netfault_list_tables(tables, sizeof tables) != 0) {
        fprintf(stderr, "test-netfault: nft cannot run here (%s); skipping\n", tables);
        return 77;
    }
    return tc_main("test-netfault", netfault_suite);
}
