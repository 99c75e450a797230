/* The flag table and its three uses: defaults, environment, command line.
 *
 * Each option is one row: its flag, kind, where it lives in struct
 * bl_config, its default and a one-line meaning. Parsing walks the rows, so
 * a new option is one line here and shows up in the environment and --help
 * by itself. Bad values are errors naming the flag or variable and the
 * value; nothing is silently clamped. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

enum kind { K_STR, K_U64, K_BYTES, K_DURATION, K_FLAG };

struct option_row {
    const char *flag;
    enum kind kind;
    size_t offset;
    const char *def;
    const char *help;
};

#define OPT(flag, kind, field, def, help)                                                          \
    {                                                                                              \
        flag, kind, offsetof(struct bl_config, field), def, help                                   \
    }

static const struct option_row OPTIONS[] = {
    OPT("id", K_U64, id, NULL,
        "Raft id of this member, 1..2^63 (required, unless --statefulset or --join give it)"),
    OPT("name", K_STR, name, NULL, "human name (default member-ID)"),
    OPT("data-dir", K_STR, data_dir, NULL, "directory for the Raft log, snapshots and store"),
    OPT("listen-client", K_STR, listen_client, "127.0.0.1:8379", "HTTP API address HOST:PORT"),
    OPT("listen-peer", K_STR, listen_peer, "127.0.0.1:8380", "Raft transport address HOST:PORT"),
    OPT("advertise-client", K_STR, advertise_client, NULL,
        "client address others use (default: --listen-client)"),
    OPT("advertise-peer", K_STR, advertise_peer, NULL,
        "peer address others use (default: --listen-peer)"),
    OPT("initial-cluster", K_STR, initial_cluster, NULL,
        "founding voters ID=HOST:PEERPORT,... (used only with an empty data dir)"),
    OPT("join", K_STR, join, NULL,
        "with an empty data dir, join a running cluster through HOST:CLIENTPORT,... (as a "
        "learner, promoted once caught up)"),
    OPT("statefulset", K_STR, statefulset, NULL,
        "derive id, name, addresses and peers from the pod name NAME-N and this service"),
    OPT("replicas", K_U64, replicas, "3", "with --statefulset: ordinals 0..N-1 found the cluster"),
    OPT("pod-name", K_STR, pod_name, NULL, "with --statefulset: NAME-N (default: the hostname)"),
    OPT("no-auto-promote", K_FLAG, no_auto_promote, NULL,
        "leave caught-up learners learners (promote with ballastctl members promote)"),
    OPT("min-free-bytes", K_BYTES, min_free_bytes, "80MiB",
        "refuse writes (507) when the data dir's file system has less free space"),
    OPT("history-revisions", K_U64, history_revisions, "10000",
        "revisions of watch events kept (a watch from an older revision gets 410)"),
    OPT("watch-max-lag", K_U64, watch_max_lag, "5000",
        "a watcher this many revisions behind with its output blocked is cut off"),
    OPT("log-level", K_STR, log_level, "info", "debug, info, warn or error"),
    OPT("max-value-bytes", K_BYTES, max_value_bytes, "1MiB", "largest value accepted"),
    OPT("max-request-bytes", K_BYTES, max_request_bytes, "1.5MiB",
        "largest request body accepted (413 beyond, before reading it)"),
    OPT("quota-bytes", K_BYTES, quota_bytes, "2GiB", "store size limit (LMDB map size)"),
    OPT("request-timeout", K_DURATION, request_timeout_ms, "30s",
        "a request not fully received by then closes its connection"),
    OPT("propose-timeout", K_DURATION, propose_timeout_ms, "10s",
        "a write not committed by then answers 504 timeout (outcome unknown)"),
    OPT("ready-lag", K_U64, ready_lag, "1000",
        "/readyz fails when applied index trails the commit index by more"),
    OPT("election-timeout", K_DURATION, election_timeout_ms, "500ms",
        "Raft election timeout (randomized to 1-2x; pre-vote on)"),
    OPT("heartbeat-timeout", K_DURATION, heartbeat_timeout_ms, "50ms", "Raft heartbeat interval"),
    OPT("snapshot-threshold", K_U64, snapshot_threshold, "65536",
        "log entries between two snapshots (fewer when entries are large: about 64 MiB of log "
        "is kept in memory)"),
    OPT("snapshot-trailing", K_U64, snapshot_trailing, "8192",
        "log entries kept behind a snapshot for slow followers (scaled down with the threshold)"),
    OPT("install-snapshot-timeout", K_DURATION, install_snapshot_timeout_ms, "10s",
        "a leader resends a snapshot not acknowledged by then (must cover sending it)"),
    OPT("help", K_FLAG, show_help, NULL, "print this help"),
    OPT("version", K_FLAG, show_version, NULL, "print the version"),
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

int bl_parse_duration_ms(const char *s, uint64_t *ms)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0) {
        return BL_EBADREQ;
    }
    if (strcmp(end, "") == 0 || strcmp(end, "ms") == 0) {
        /* milliseconds */
    } else if (strcmp(end, "s") == 0) {
        v *= 1000;
    } else if (strcmp(end, "m") == 0) {
        v *= 60000;
    } else if (strcmp(end, "h") == 0) {
        v *= 3600000;
    } else {
        return BL_EBADREQ;
    }
    if (v > 1e15) {
        return BL_EBADREQ;
    }
    *ms = (uint64_t)v;
    return 0;
}

int bl_parse_bytes(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024.0},
                 {"MiB", 1048576.0},
                 {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"TB", 1e12}};
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            v *= units[i].mult;
            if (v > 1e18) {
                return BL_EBADREQ;
            }
            *bytes = (uint64_t)v;
            return 0;
        }
    }
    return BL_EBADREQ;
}

static int set_value(struct bl_config *c, const struct option_row *o, const char *value,
                     const char *source, char *errmsg)
{
    char *field = (char *)c + o->offset;
    uint64_t v = 0;
    char *end;
    int rv = 0;

    switch (o->kind) {
    case K_STR: {
        char *copy = strdup(value);
        if (copy == NULL) {
            return BL_ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case K_FLAG:
        *(int *)field = 1;
        return 0;
    case K_U64:
        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || value[0] == '-') {
            rv = BL_EBADREQ;
        }
        break;
    case K_BYTES:
        rv = bl_parse_bytes(value, &v);
        break;
    case K_DURATION:
        rv = bl_parse_duration_ms(value, &v);
        break;
    }
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "%s: bad value '%.80s' for --%s", source, value, o->flag);
        return rv;
    }
    *(uint64_t *)field = v;
    return 0;
}

static void env_name(const char *flag, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "BALLAST_");
    for (const char *p = flag; *p && n + 1 < len; p++) {
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    out[n] = '\0';
}

int bl_config_load(struct bl_config *c, int argc, char **argv, char *errmsg)
{
    char name[64];
    int rv;

    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (OPTIONS[i].def != NULL) {
            rv = set_value(c, &OPTIONS[i], OPTIONS[i].def, "default", errmsg);
            if (rv != 0) {
                return rv;
            }
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v;
        if (OPTIONS[i].kind == K_FLAG) {
            continue;
        }
        env_name(OPTIONS[i].flag, name, sizeof name);
        v = getenv(name);
        if (v != NULL && v[0] != '\0') {
            rv = set_value(c, &OPTIONS[i], v, name, errmsg);
            if (rv != 0) {
                return rv;
            }
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a], *value = NULL, *eq;
        const struct option_row *o = NULL;
        size_t len;
        if (strcmp(arg, "-h") == 0) {
            arg = "--help";
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "unexpected argument '%.80s'", arg);
            return BL_EBADREQ;
        }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        for (size_t i = 0; i < N_OPTIONS; i++) {
            if (strlen(OPTIONS[i].flag) == len && strncmp(OPTIONS[i].flag, arg, len) == 0) {
                o = &OPTIONS[i];
            }
        }
        if (o == NULL) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "unknown flag '--%.80s' (see --help)", arg);
            return BL_EBADREQ;
        }
        if (o->kind != K_FLAG) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (a + 1 < argc) {
                value = argv[++a];
            } else {
                snprintf(errmsg, BL_ERRMSG_SIZE, "--%s needs a value", o->flag);
                return BL_EBADREQ;
            }
        }
        rv = set_value(c, o, value ? value : "", "command line", errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

void bl_config_free(struct bl_config *c)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (OPTIONS[i].kind == K_STR) {
            char **field = (char **)((char *)c + OPTIONS[i].offset);
            free(*field);
            *field = NULL;
        }
    }
}

void bl_config_usage(FILE *out)
{
    char name[64];
    fprintf(out, "usage: ballastd --id N --data-dir DIR [flags]\n\n"
                 "Every flag can also be set through its environment variable.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_row *o = &OPTIONS[i];
        env_name(o->flag, name, sizeof name);
        fprintf(out, "  --%-20s %s", o->flag, o->help);
        if (o->def != NULL) {
            fprintf(out, " [%s]", o->def);
        }
        if (o->kind != K_FLAG) {
            fprintf(out, " (env %s)", name);
        }
        fprintf(out, "\n");
    }
}
