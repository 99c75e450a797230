/* Watching through faults, and checking what the watch delivered.
 *
 * A watcher is a thread that follows every key under the workload's prefix
 * with libballast's watch (ballast_watch_open/next: it reconnects to another
 * member by itself and resumes after the last event it delivered) and records
 * each event. A "slow" cancel is answered the way a client would: a new watch
 * at the revision the cancel named. A compacted revision ends the watcher with
 * an error (the history kept was too short for the faults).
 *
 * watchcheck() then holds the events against the register history
 * (tests/nemesis/history.h) of the same run:
 *   - order: revisions strictly increase (the workload writes one key per
 *     revision, so a repeated revision is an event delivered twice);
 *   - nothing invented: every event is a PUT of a value some write or cas
 *     of that key stored or may have stored (acknowledged or unknown);
 *   - nothing lost: every acknowledged write and every acknowledged cas that
 *     swapped shows up, exactly once; an unknown one at most once;
 *   - real-time order: a write acknowledged before another write of the same
 *     key began has the smaller revision.
 * The watcher starts before the workload and is stopped after it, so every op
 * of the history falls inside the watched range.
 *
 * Ownership: watcher_start() returns a watcher that watcher_stop() frees;
 * the events it hands over belong to the caller (wc_events_free()). The
 * report of watchcheck() is malloc'd and the caller frees it. */
#ifndef BALLAST_TESTS_WATCHCHECK_H
#define BALLAST_TESTS_WATCHCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

/* One PUT or DELETE the watcher received. */
struct wc_event {
    int64_t revision;
    uint32_t key;  /* the key id (the name is <prefix><id>) */
    int64_t value; /* the value parsed as the workload writes it; -1 if not one */
    int type;      /* enum ballast_event_type: PUT or DELETE */
};

/* The events of one watcher, in the order delivered. */
struct wc_events {
    struct wc_event *ev;
    size_t n, cap;
    unsigned reconnects; /* watches opened again after a "slow" cancel */
};

struct watcher;

/* Start a watcher of every key under @prefix through a client on
 * @endpoints (comma-separated; the first is tried first), delivering every
 * change from revision @from_rev on. Returns 0 once the watch is open (the
 * server accepted it), else -1 with a reason in @err. */
int watcher_start(const char *endpoints, const char *prefix, int64_t from_rev, struct watcher **out,
                  char *err, size_t errlen);

/* Wait up to @timeout_ms until the watcher has delivered everything up to
 * revision @until_rev (an event or a progress event at or past it), then
 * stop its thread, move its events into @out (zeroed first) and free @w.
 * Returns 0, or -1 with a reason in @err when it did not get there in time,
 * ended with an error, or could not record an event (out of memory); @out
 * holds what it got in every case. */
int watcher_stop(struct watcher *w, int64_t until_rev, int timeout_ms, struct wc_events *out,
                 char *err, size_t errlen);

/* Free what @e owns and zero it. */
void wc_events_free(struct wc_events *e);

/* Check @e against @h (see the file comment). Returns 0 when every check
 * holds, else the number of problems found, with a description of the
 * first few in *@report (malloc'd, the caller frees it; NULL when 0 is
 * returned or out of memory). */
int watchcheck(const struct wc_events *e, const struct history *h, char **report);

#endif /* BALLAST_TESTS_WATCHCHECK_H */
