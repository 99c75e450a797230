/* Linearizability checker for register histories (history.h).
 *
 * How it works: keys are independent registers, so the history is split
 * per key and each key is checked on its own (the verdict is the first
 * violating key, else the first undecided one, else OK). Per key, FAIL ops
 * are dropped (they did not happen), and so are READs that did not
 * answer (FAIL or UNKNOWN: they constrain nothing). The rest are checked
 * with the Wing-Gong search with Lowe's memoisation (WGL, as in Porcupine
 * and Knossos "linear"): call/return events sorted by time (calls before
 * returns at equal times, i.e. ties count as concurrent), an UNKNOWN op's
 * return at +infinity; at each step one pending op whose call precedes the
 * first return is linearized against the register model (initial value 0,
 * "absent"), (linearized-set, value) pairs already seen are skipped, and
 * dead ends backtrack on an explicit stack. The key is linearizable once
 * every op with a finite return is linearized; UNKNOWN writes and cas may
 * take effect at any point after their call or never.
 *
 * On a violation the report holds a small counterexample: the shortest
 * cut of that key's history at some op's completion time that is already
 * non-linearizable (all ops invoked by then; those still in flight at the
 * cut are treated as UNKNOWN, which keeps any cut of a linearizable
 * history linearizable), found by binary search over the cuts.
 *
 * Budgets (struct lincheck_opts): at most max_states memo entries per
 * search, and max_ms wall time for the whole lincheck_run(); running out
 * gives LIN_UNDECIDED, which callers must count as a failure.
 *
 * Ownership: lincheck_run() does not keep @h; the result owns its report
 * (lincheck_result_free). */
#ifndef BALLAST_TESTS_LINCHECK_H
#define BALLAST_TESTS_LINCHECK_H

#include "history.h"

#include <stddef.h>
#include <stdint.h>

struct lincheck_opts {
    uint64_t max_states; /* memo entries per key search; 0: default 1 << 20 */
    int64_t max_ms;      /* wall time per lincheck_run(); <= 0: default 10000 */
};

enum lincheck_verdict {
    LIN_OK = 0,
    LIN_VIOLATION = 1,
    LIN_UNDECIDED = 2 /* a budget ran out (or memory did): count as a failure */
};

struct lincheck_result {
    int verdict;  /* enum lincheck_verdict */
    uint32_t key; /* the offending key (violation or undecided); 0 when OK */
    /* malloc'd, human-readable: for a violation, the counterexample ops
     * (hist_format lines); for undecided, which budget ran out; NULL when OK */
    char *report;
    size_t keys, ops; /* distinct keys and ops checked (after dropping) */
};

/* Check @h; @o NULL means the defaults. Fills @r and returns its verdict. */
int lincheck_run(const struct history *h, const struct lincheck_opts *o, struct lincheck_result *r);
void lincheck_result_free(struct lincheck_result *r);

#endif /* BALLAST_TESTS_LINCHECK_H */
