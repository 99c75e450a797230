/* ballastd's configuration: one table drives the flags, their environment
 * variables (BALLAST_<FLAG>, dashes as underscores) and --help.
 *
 * Precedence: built-in default < environment < command line. Strings in a
 * loaded config are malloc'd and owned by the config; bl_config_free()
 * releases them. */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bl_config {
    uint64_t id;
    char *name;
    char *data_dir;
    char *listen_client;
    char *listen_peer;
    char *advertise_client;
    char *advertise_peer;
    char *initial_cluster;
    char *join;
    char *statefulset;
    uint64_t replicas;
    char *pod_name;
    int no_auto_promote;
    uint64_t min_free_bytes;
    uint64_t history_revisions;
    uint64_t watch_max_lag;
    char *log_level;
    uint64_t max_value_bytes;
    uint64_t max_request_bytes;
    uint64_t quota_bytes;
    uint64_t request_timeout_ms;
    uint64_t propose_timeout_ms;
    uint64_t ready_lag;
    uint64_t election_timeout_ms;
    uint64_t heartbeat_timeout_ms;
    uint64_t snapshot_threshold;
    uint64_t snapshot_trailing;
    uint64_t install_snapshot_timeout_ms;
    int show_help;
    int show_version;
};

/* Load defaults, then the environment, then @argv. Returns BL_OK, or
 * BL_EBADREQ with @errmsg (BL_ERRMSG_SIZE bytes) naming the bad flag. */
int bl_config_load(struct bl_config *c, int argc, char **argv, char *errmsg);

/* Free the strings of @c. */
void bl_config_free(struct bl_config *c);

/* Print the flag table (name, env var, default, meaning) to @out. */
void bl_config_usage(FILE *out);

/* Parse "250ms", "10s", "2m", "1h" or a bare number of milliseconds. */
int bl_parse_duration_ms(const char *s, uint64_t *ms);

/* Parse "1048576", "64KiB", "1.5MiB", "2GiB" (also KB/MB/GB as powers of 10). */
int bl_parse_bytes(const char *s, uint64_t *bytes);

#endif /* BALLAST_CONFIG_H */
