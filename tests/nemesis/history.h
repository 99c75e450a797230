/* The history of a register workload: what each client asked, when, and
 * what it learned. The workload runner (workload.c) records one; the
 * linearizability checker (lincheck.c) judges it.
 *
 * Model: every key is an independent register holding a value (an opaque
 * int64; 0 means "absent": never written, or deleted). Operations:
 *   - READ  k        -> out = the value read (0: key absent)
 *   - WRITE k v      -> sets k to v (v != 0)
 *   - CAS   k old new-> if k holds old, sets it to new (old may be 0:
 *                       "only if absent"); out_ok says whether it did
 * Each op has the client that issued it, its invoke and complete times
 * (monotonic ns) and a status: OK (the answer was received), FAIL (the
 * server said, for sure, that nothing happened: a cas that did not hold
 * is OK with out_ok = false, not FAIL; FAIL is e.g. a 4xx/503 before the
 * request could apply) or UNKNOWN (timeout, lost connection: it may or
 * may not have taken effect, at any time after its invoke; such an op's
 * complete time is treated as +infinity).
 *
 * Ownership: a history owns its ops array (hist_free). */
#ifndef BALLAST_TESTS_HISTORY_H
#define BALLAST_TESTS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hist_op_type { HIST_READ = 1, HIST_WRITE = 2, HIST_CAS = 3 };
enum hist_status { HIST_OK = 1, HIST_FAIL = 2, HIST_UNKNOWN = 3 };

struct hist_op {
    int client;
    int type;   /* enum hist_op_type */
    int status; /* enum hist_status */
    uint32_t key;
    int64_t value;                  /* WRITE: the value written; CAS: the new value */
    int64_t expect;                 /* CAS: the value it must hold (0: absent) */
    int64_t out;                    /* READ with HIST_OK: the value read (0: absent) */
    bool out_ok;                    /* CAS with HIST_OK: whether it swapped */
    int64_t invoke_ns, complete_ns; /* complete_ns ignored for HIST_UNKNOWN */
};

struct history {
    struct hist_op *ops;
    size_t n, cap;
};

void hist_init(struct history *h);
void hist_free(struct history *h);
/* Append a copy of @op; returns 0 or -1 (out of memory). */
int hist_add(struct history *h, const struct hist_op *op);

/* Text form, one op a line (for files and counterexamples):
 *   <client> <read|write|cas> <key> <value> <expect> <out> <ok|fail|unknown> <out_ok 0|1>
 *   <invoke_ns> <complete_ns>
 * hist_write() writes @h to @path; hist_read() reads one back (0, or -1
 * with errno set / a parse error). */
int hist_write(const struct history *h, const char *path);
int hist_read(struct history *h, const char *path);
/* A register value as the workload stores it (a positive decimal int64,
 * e.g. "3000000042"), or -1 when the @len bytes at @s are not one: no op
 * writes -1, so a checker reading it reports the value as invented. */
int64_t hist_parse_value(const void *s, size_t len);

/* One op as such a line into @buf (NUL-terminated, truncated to @len). */
void hist_format(const struct hist_op *op, char *buf, size_t len);

#endif /* BALLAST_TESTS_HISTORY_H */
