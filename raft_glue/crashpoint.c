/* Crash points (see crashpoint.h): one armed point, one counter per point.
 *
 * bl_crashpoint_init() reads BALLAST_CRASH_AT once at member start: a name
 * from the table, optionally ":n" (decimal, 1..INT_MAX). Anything else is
 * refused, so that a typo in a test's environment fails loudly instead of
 * running a test that never crashes. Armed, the point's counter counts the
 * passes (on any thread: the counter is atomic, since the snapshot copy runs
 * on libuv's pool) and the n-th pass logs one line and calls abort(): no
 * atexit handlers, no buffers flushed, no files closed, like a crash. The
 * log line is written with one write(2) before abort(), so the test can
 * tell a crash point from a real crash in the member's log. */
#include "crashpoint.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *const BL_CRASH_NAMES[BL_CRASH_N] = {
    "raft-append-before",      "raft-append-after",      "lmdb-commit-before",
    "lmdb-commit-after",       "snapshot-take-before",   "snapshot-take-after",
    "snapshot-install-before", "snapshot-install-after",
};

int bl_crash_armed = -1;

static atomic_uint hits[BL_CRASH_N];
static unsigned crash_at_pass = 1;
static int init_rv = 1; /* 1: not parsed yet */
static char init_msg[BL_ERRMSG_SIZE];

const char *bl_crashpoint_name(int point)
{
    return point >= 0 && point < BL_CRASH_N ? BL_CRASH_NAMES[point] : "?";
}

static int parse(const char *v)
{
    const char *colon = strchr(v, ':');
    size_t len = colon != NULL ? (size_t)(colon - v) : strlen(v);
    int point = -1;
    unsigned long n = 1;

    for (int i = 0; i < BL_CRASH_N; i++) {
        if (strlen(BL_CRASH_NAMES[i]) == len && strncmp(BL_CRASH_NAMES[i], v, len) == 0) {
            point = i;
        }
    }
    if (point < 0) {
        size_t off = (size_t)snprintf(init_msg, sizeof init_msg,
                                      "%s: unknown crash point '%.*s'; known:", BL_CRASH_ENV,
                                      (int)(len > 40 ? 40 : len), v);
        for (int i = 0; i < BL_CRASH_N && off < sizeof init_msg; i++) {
            off +=
                (size_t)snprintf(init_msg + off, sizeof init_msg - off, " %s", BL_CRASH_NAMES[i]);
        }
        return BL_EBADREQ;
    }
    if (colon != NULL) {
        char *end;
        n = strtoul(colon + 1, &end, 10);
        if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || n == 0 || n > INT_MAX) {
            snprintf(init_msg, sizeof init_msg,
                     "%s: bad count '%.40s' (want <point>[:<n>], n = 1..%d)", BL_CRASH_ENV,
                     colon + 1, INT_MAX);
            return BL_EBADREQ;
        }
    }
    crash_at_pass = (unsigned)n;
    bl_crash_armed = point;
    BL_WARN("crash point armed: %s will abort() at pass %u (%s is a testing aid)",
            BL_CRASH_NAMES[point], crash_at_pass, BL_CRASH_ENV);
    return 0;
}

int bl_crashpoint_init(char *errmsg)
{
    if (init_rv == 1) {
        const char *v = getenv(BL_CRASH_ENV);
        init_rv = v == NULL || v[0] == '\0' ? 0 : parse(v);
    }
    if (init_rv != 0 && errmsg != NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "%s", init_msg);
    }
    return init_rv;
}

void bl_crashpoint_hit(int point)
{
    unsigned pass;
    if (point < 0 || point >= BL_CRASH_N) {
        return;
    }
    pass = atomic_fetch_add(&hits[point], 1) + 1;
    if (pass == crash_at_pass) {
        BL_ERROR("crash point %s reached (pass %u): abort()", BL_CRASH_NAMES[point], pass);
        abort();
    }
}
