/* ballastd: one Ballast member and its HTTP API on one libuv loop.
 *
 * Start: load the configuration (flags over environment over defaults),
 * start the Raft member, then the API. Stop (SIGTERM/SIGINT): the member
 * hands leadership over and closes Raft cleanly, then the API closes, and
 * the process exits 0. A second signal during shutdown exits at once: Raft's
 * log is the durable record, so even that loses no acknowledged write. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "member.h"

struct daemon {
    uv_loop_t *loop;
    struct bl_config cfg;
    struct bl_member *member;
    struct bl_api api;
    uv_signal_t sigterm, sigint;
    bool stopping;
};

static void api_closed(void *arg)
{
    struct daemon *d = arg;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    BL_INFO("ballastd: stopped");
}

static void member_closed(void *arg)
{
    struct daemon *d = arg;
    d->member = NULL;
    bl_api_close(&d->api, api_closed, d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    if (d->stopping) {
        BL_WARN("ballastd: second signal %d, exiting now", signum);
        _exit(1);
    }
    d->stopping = true;
    BL_INFO("ballastd: signal %d, shutting down", signum);
    d->api.member = NULL; /* new requests get 503 while the member closes */
    bl_member_close(d->member, member_closed, d);
}

int main(int argc, char **argv)
{
    struct daemon d;
    struct bl_member_config mc;
    char errmsg[BL_ERRMSG_SIZE] = "";
    int level, rv;

    memset(&d, 0, sizeof d);
    signal(SIGPIPE, SIG_IGN);
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
    if (d.cfg.id == 0 || d.cfg.data_dir == NULL) {
        fprintf(stderr, "ballastd: --id and --data-dir are required (see --help)\n");
        return 2;
    }
    if (d.cfg.join != NULL) {
        fprintf(stderr, "ballastd: --join is not supported by this version yet: start the "
                        "founders with --initial-cluster\n");
        return 2;
    }

    d.loop = uv_default_loop();
    memset(&mc, 0, sizeof mc);
    mc.id = d.cfg.id;
    mc.name = d.cfg.name;
    mc.data_dir = d.cfg.data_dir;
    mc.peer_listen = d.cfg.listen_peer;
    mc.peer_advertise = d.cfg.advertise_peer;
    mc.client_advertise = d.cfg.advertise_client ? d.cfg.advertise_client : d.cfg.listen_client;
    mc.initial_cluster = d.cfg.initial_cluster;
    mc.election_timeout_ms = (unsigned)d.cfg.election_timeout_ms;
    mc.heartbeat_timeout_ms = (unsigned)d.cfg.heartbeat_timeout_ms;
    mc.snapshot_threshold = (unsigned)d.cfg.snapshot_threshold;
    mc.snapshot_trailing = (unsigned)d.cfg.snapshot_trailing;
    mc.propose_timeout_ms = (unsigned)d.cfg.propose_timeout_ms;
    mc.install_snapshot_timeout_ms = (unsigned)d.cfg.install_snapshot_timeout_ms;
    mc.quota_bytes = d.cfg.quota_bytes;

    rv = bl_member_start(d.loop, &mc, &d.member, errmsg);
    if (rv != 0) {
        BL_ERROR("ballastd: cannot start member %llu: %s", (unsigned long long)d.cfg.id, errmsg);
        bl_config_free(&d.cfg);
        return 1;
    }
    rv = bl_api_start(&d.api, d.loop, d.member, &d.cfg, errmsg);
    if (rv != 0) {
        BL_ERROR("ballastd: cannot serve the API: %s", errmsg);
        return 1;
    }
    BL_INFO("ballastd %s: member %llu serving clients on %s, peers on %s", PACKAGE_VERSION,
            (unsigned long long)d.cfg.id, d.cfg.listen_client, d.cfg.listen_peer);

    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d.sigint, signal_cb, SIGINT);

    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    bl_config_free(&d.cfg);
    return 0;
}
