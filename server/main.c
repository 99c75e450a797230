/* ballastd: one Ballast member and its HTTP API on one libuv loop.
 *
 * Start: load the configuration (flags over environment over defaults);
 * with --statefulset derive the identity from the pod. With an empty data
 * dir, first find out what to be (discover.h, join.h): a founder's first
 * start bootstraps; a member of a running cluster (--join, a StatefulSet
 * ordinal beyond the founders, or a founder whose volume was lost) asks to
 * be added and learns its id. Then start the Raft member, then the API. Stop (SIGTERM/SIGINT): the
 * member hands leadership over and closes Raft cleanly, then the API closes, and the process exits
 * 0. A second signal during shutdown exits at once: Raft's log is the durable record, so even that
 * loses no acknowledged write. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "discover.h"
#include "join.h"
#include "statefulset.h"
#include "error.h"
#include "log.h"
#include "member.h"

struct daemon {
    uv_loop_t *loop;
    struct bl_config cfg;
    struct bl_member_config mc;
    struct bl_statefulset sts;
    struct bl_discover *discover;
    struct bl_join *join;
    char **join_endpoints;
    unsigned n_join_endpoints;
    char *founder_peers[64];
    unsigned n_founder_peers, n_founders;
    struct bl_member *member;
    struct bl_api api;
    bool api_started;
    uv_signal_t sigterm, sigint;
    bool stopping;
    int exit_code;
    uv_timer_t drain;
    uint64_t drain_deadline;
};

#define DRAIN_MS 2000

static void api_closed(void *arg)
{
    struct daemon *d = arg;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    BL_INFO("ballastd: stopped");
}

/* The member stopped serving: the API answers 503 from now on. */
static void member_stopped(void *arg)
{
    struct daemon *d = arg;
    bl_api_member_stopped(&d->api);
}

/* Requests relayed to the new leader during the hand-off finish before the
 * API closes their connections (bounded by DRAIN_MS). */
static void drain_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (d->api.pending > 0 && uv_now(d->loop) < d->drain_deadline) {
        return;
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    bl_api_close(&d->api, api_closed, d);
}

static void member_closed(void *arg)
{
    struct daemon *d = arg;
    d->member = NULL;
    d->api.member = NULL;
    d->drain_deadline = uv_now(d->loop) + DRAIN_MS;
    uv_timer_init(d->loop, &d->drain);
    d->drain.data = d;
    uv_timer_start(&d->drain, drain_cb, 0, 5);
}

static void shut_down(struct daemon *d);

static void signal_cb(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    if (d->stopping) {
        BL_WARN("ballastd: second signal %d, exiting now", signum);
        _exit(1);
    }
    BL_INFO("ballastd: signal %d, shutting down", signum);
    shut_down(d);
}

/* Stop whatever runs (discovery, a join, or the member and then the API);
 * the loop ends when everything closed. */
static void shut_down(struct daemon *d)
{
    d->stopping = true;
    if (d->discover != NULL) {
        bl_discover_stop(d->discover);
        return;
    }
    if (d->join != NULL) {
        bl_join_stop(d->join);
        return;
    }
    if (d->member == NULL) {
        uv_close((uv_handle_t *)&d->sigterm, NULL);
        uv_close((uv_handle_t *)&d->sigint, NULL);
        return;
    }
    /* The member hands leadership over first; meanwhile the API relays
     * requests to the new leader (see bl_member_on_stop). */
    bl_member_close(d->member, member_closed, d);
}

/* Raft stopped working for good (see bl_member_on_fatal): shut down as on
 * SIGTERM, but exit 1, so that a supervisor restarts the member; lingering
 * would leave a member that answers 503 for ever and passes /healthz. */
static void member_fatal(void *arg, const char *why)
{
    struct daemon *d = arg;
    BL_ERROR("ballastd: exiting with status 1 so that a supervisor restarts this member (%s); "
             "on restart it replays from its Raft log what its store missed",
             why);
    d->exit_code = 1;
    if (!d->stopping) {
        shut_down(d);
    }
}

static void stop_signals(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

/* Start the member and the API with d->mc. On failure stop the loop. */
static void start_member(struct daemon *d)
{
    char errmsg[BL_ERRMSG_SIZE] = "";
    int rv;

    rv = bl_member_start(d->loop, &d->mc, &d->member, errmsg);
    if (rv != 0) {
        BL_ERROR("ballastd: cannot start member %llu: %s", (unsigned long long)d->mc.id, errmsg);
        d->member = NULL;
        d->exit_code = 1;
        stop_signals(d);
        return;
    }
    rv = bl_api_start(&d->api, d->loop, d->member, &d->cfg, errmsg);
    if (rv != 0) {
        BL_ERROR("ballastd: cannot serve the API: %s", errmsg);
        d->exit_code = 1;
        d->stopping = true;
        bl_member_close(d->member, NULL, NULL);
        d->member = NULL;
        stop_signals(d);
        return;
    }
    d->api_started = true;
    bl_member_on_stop(d->member, member_stopped, d);
    bl_member_on_fatal(d->member, member_fatal, d);
    BL_INFO("ballastd %s: member %llu serving clients on %s, peers on %s", PACKAGE_VERSION,
            (unsigned long long)bl_member_id(d->member), d->cfg.listen_client, d->cfg.listen_peer);
}

static void join_done(void *arg, int status, uint64_t id, const char *errmsg)
{
    struct daemon *d = arg;
    d->join = NULL;
    if (status != 0) {
        if (status != BL_ESHUTDOWN) {
            BL_ERROR("ballastd: cannot join the cluster: %s", errmsg);
            d->exit_code = 1;
        }
        stop_signals(d);
        return;
    }
    d->mc.id = id;
    d->mc.join = true;
    start_member(d);
}

static void start_join(struct daemon *d, const char *const *endpoints, unsigned n)
{
    struct bl_join_opts jo = {
        .endpoints = endpoints,
        .n_endpoints = n,
        .id = d->mc.id,
        .name = d->mc.name != NULL ? d->mc.name : "",
        .peer_url = d->mc.peer_advertise != NULL ? d->mc.peer_advertise : d->mc.peer_listen,
        .client_url = d->mc.client_advertise,
    };
    char name[64];
    if (jo.name[0] == '\0' && d->mc.id != 0) {
        snprintf(name, sizeof name, "member-%llu", (unsigned long long)d->mc.id);
        jo.name = name;
    }
    if (bl_join_start(d->loop, &jo, join_done, d, &d->join) != 0) {
        BL_ERROR("ballastd: cannot start joining");
        d->exit_code = 1;
        stop_signals(d);
    }
}

static void discover_done(void *arg, int status, const struct bl_discover_result *res)
{
    struct daemon *d = arg;
    const char *url;
    d->discover = NULL;
    if (status != 0) {
        stop_signals(d);
        return;
    }
    if (res->plan == BL_DISCOVER_BOOTSTRAP) {
        start_member(d);
        return;
    }
    url = res->join_client_url;
    start_join(d, &url, 1);
}

/* Collect the founders' peer addresses other than ours. */
static int collect_founder(void *arg, uint64_t id, const char *address)
{
    struct daemon *d = arg;
    d->n_founders++;
    if (id != d->mc.id && d->n_founder_peers < 64) {
        d->founder_peers[d->n_founder_peers] = strdup(address);
        if (d->founder_peers[d->n_founder_peers] == NULL) {
            return BL_ENOMEM;
        }
        d->n_founder_peers++;
    }
    return 0;
}

/* Split "a,b,c" into d->join_endpoints. */
static int split_join(struct daemon *d, const char *list)
{
    char *copy = strdup(list), *save = NULL, *item;
    if (copy == NULL) {
        return BL_ENOMEM;
    }
    d->join_endpoints = calloc(strlen(list) / 2 + 2, sizeof *d->join_endpoints);
    for (item = strtok_r(copy, ",", &save); item != NULL && d->join_endpoints != NULL;
         item = strtok_r(NULL, ",", &save)) {
        d->join_endpoints[d->n_join_endpoints++] = strdup(item);
    }
    free(copy);
    return d->join_endpoints != NULL && d->n_join_endpoints > 0 ? 0 : BL_EBADREQ;
}

/* Decide how to start: at once, after discovery, or after a join. */
static int begin(struct daemon *d, char *errmsg)
{
    bool founder;
    struct bl_discover_opts dopts;

    if (!bl_member_data_dir_fresh(d->cfg.data_dir)) {
        start_member(d);
        return 0;
    }
    if (d->cfg.join != NULL) {
        if (split_join(d, d->cfg.join) != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "--join needs HOST:CLIENTPORT,...");
            return BL_EBADREQ;
        }
        start_join(d, (const char *const *)d->join_endpoints, d->n_join_endpoints);
        return 0;
    }
    memset(&dopts, 0, sizeof dopts);
    dopts.id = d->mc.id;
    dopts.peer_url = d->mc.peer_advertise != NULL ? d->mc.peer_advertise : d->mc.peer_listen;
    dopts.bind_address = d->mc.peer_listen;
    if (d->cfg.statefulset != NULL) {
        dopts.peers = (const char *const *)d->sts.peers;
        dopts.n_peers = d->sts.n_peers;
        dopts.founders = d->sts.founders;
    } else {
        if (d->mc.initial_cluster == NULL) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "data dir %.150s is empty: give --initial-cluster (founders) or --join",
                     d->cfg.data_dir);
            return BL_EBADREQ;
        }
        if (bl_parse_initial_cluster(d->mc.initial_cluster, collect_founder, d, errmsg) != 0) {
            return BL_EBADREQ;
        }
        founder = d->n_founder_peers < d->n_founders;
        if (!founder) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "data dir is empty and member %llu is not in --initial-cluster (use --join "
                     "to join a running cluster)",
                     (unsigned long long)d->mc.id);
            return BL_EBADREQ;
        }
        dopts.peers = (const char *const *)d->founder_peers;
        dopts.n_peers = d->n_founder_peers;
        dopts.founders = d->n_founders;
    }
    return bl_discover_start(d->loop, &dopts, discover_done, d, &d->discover, errmsg);
}

/* The port of "host:port", or -1. */
static int port_of(const char *host_port)
{
    const char *colon = strrchr(host_port, ':');
    return colon != NULL ? atoi(colon + 1) : -1;
}

/* The store writes into its memory map (MDB_WRITEMAP, store.h): a page
 * that cannot get a disk block (the file system is full, or failing) is
 * SIGBUS, not an error code. Exit 1 then, as for a failed log append: every
 * acknowledged write is in the synced Raft log, the store's last commit is
 * whole (LMDB's meta page is written last), and the supervisor restarts the
 * member, which refuses to start on a full file system. */
static void sigbus_handler(int sig)
{
    static const char msg[] = "ballastd: SIGBUS writing the memory-mapped store: its file "
                              "system is full or failing; exiting with status 1\n";
    (void)sig;
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    struct daemon d;
    struct bl_member_config *mc;
    char errmsg[BL_ERRMSG_SIZE] = "";
    struct sigaction sa;
    int level, rv;

    memset(&d, 0, sizeof d);
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sigbus_handler;
    sigaction(SIGBUS, &sa, NULL);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (bl_config_load(&d.cfg, argc, argv, errmsg) != 0) {
        fprintf(stderr, "ballastd: %s\n", errmsg);
        return 2;
    }
    if (d.cfg.show_help) {
        bl_config_usage(stdout);
        bl_config_free(&d.cfg);
        return 0;
    }
    if (d.cfg.show_version) {
        printf("ballastd %s\n", PACKAGE_VERSION);
        bl_config_free(&d.cfg);
        return 0;
    }
    level = bl_log_parse_level(d.cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "ballastd: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    bl_log_set_level(level);
    if (d.cfg.statefulset != NULL) {
        char host[256];
        const char *pod = d.cfg.pod_name;
        if (pod == NULL) {
            pod = getenv("HOSTNAME");
        }
        if (pod == NULL && gethostname(host, sizeof host) == 0) {
            host[sizeof host - 1] = '\0';
            pod = host;
        }
        if (bl_statefulset_derive(d.cfg.statefulset, pod != NULL ? pod : "",
                                  (unsigned)d.cfg.replicas, port_of(d.cfg.listen_peer),
                                  port_of(d.cfg.listen_client), &d.sts, errmsg) != 0) {
            fprintf(stderr, "ballastd: %s\n", errmsg);
            return 2;
        }
    }
    if ((d.cfg.id == 0 && d.cfg.statefulset == NULL && d.cfg.join == NULL) ||
        d.cfg.data_dir == NULL) {
        fprintf(stderr, "ballastd: --id and --data-dir are required (see --help)\n");
        return 2;
    }

    d.loop = uv_default_loop();
    memset(&d.mc, 0, sizeof d.mc);
    mc = &d.mc;
    mc->id = d.cfg.id != 0 ? d.cfg.id : d.sts.id;
    mc->name = d.cfg.name != NULL ? d.cfg.name : (d.cfg.statefulset ? d.sts.name : NULL);
    mc->data_dir = d.cfg.data_dir;
    mc->peer_listen = d.cfg.listen_peer;
    mc->peer_advertise = d.cfg.advertise_peer != NULL
                             ? d.cfg.advertise_peer
                             : (d.cfg.statefulset != NULL ? d.sts.peer_url : NULL);
    mc->client_advertise =
        d.cfg.advertise_client != NULL
            ? d.cfg.advertise_client
            : (d.cfg.statefulset != NULL ? d.sts.client_url : d.cfg.listen_client);
    mc->initial_cluster = d.cfg.initial_cluster != NULL
                              ? d.cfg.initial_cluster
                              : (d.cfg.statefulset != NULL ? d.sts.initial_cluster : NULL);
    mc->election_timeout_ms = (unsigned)d.cfg.election_timeout_ms;
    mc->heartbeat_timeout_ms = (unsigned)d.cfg.heartbeat_timeout_ms;
    mc->snapshot_threshold = (unsigned)d.cfg.snapshot_threshold;
    mc->snapshot_trailing = (unsigned)d.cfg.snapshot_trailing;
    mc->propose_timeout_ms = (unsigned)d.cfg.propose_timeout_ms;
    mc->install_snapshot_timeout_ms = (unsigned)d.cfg.install_snapshot_timeout_ms;
    mc->quota_bytes = d.cfg.quota_bytes;
    mc->no_auto_promote = d.cfg.no_auto_promote != 0;
    mc->min_free_bytes = d.cfg.min_free_bytes;
    mc->history_revisions = d.cfg.history_revisions;

    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d.sigint, signal_cb, SIGINT);

    rv = begin(&d, errmsg);
    if (rv != 0) {
        BL_ERROR("ballastd: %s", errmsg);
        stop_signals(&d);
        d.exit_code = rv == BL_EBADREQ ? 2 : 1;
    }

    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    for (unsigned i = 0; i < d.n_founder_peers; i++) {
        free(d.founder_peers[i]);
    }
    for (unsigned i = 0; i < d.n_join_endpoints; i++) {
        free(d.join_endpoints[i]);
    }
    free(d.join_endpoints);
    bl_statefulset_free(&d.sts);
    bl_config_free(&d.cfg);
    return d.exit_code;
}
