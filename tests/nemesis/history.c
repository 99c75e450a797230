/* The history of a register workload (see history.h): an append-only array
 * of ops, and its one-op-a-line text form for files and counterexamples.
 *
 * hist_read() is strict: every non-blank line must have exactly the ten
 * fields of hist_format(), each in range; anything else fails with EINVAL
 * and leaves @h empty. */
#define _POSIX_C_SOURCE 200809L

#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hist_init(struct history *h)
{
    h->ops = NULL;
    h->n = 0;
    h->cap = 0;
}

void hist_free(struct history *h)
{
    free(h->ops);
    hist_init(h);
}

int hist_add(struct history *h, const struct hist_op *op)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct hist_op *ops = realloc(h->ops, cap * sizeof(*ops));
        if (!ops) {
            return -1;
        }
        h->ops = ops;
        h->cap = cap;
    }
    h->ops[h->n++] = *op;
    return 0;
}

static const char *type_name(int type)
{
    switch (type) {
    case HIST_READ:
        return "read";
    case HIST_WRITE:
        return "write";
    case HIST_CAS:
        return "cas";
    default:
        return "?";
    }
}

static const char *status_name(int status)
{
    switch (status) {
    case HIST_OK:
        return "ok";
    case HIST_FAIL:
        return "fail";
    case HIST_UNKNOWN:
        return "unknown";
    default:
        return "?";
    }
}

void hist_format(const struct hist_op *op, char *buf, size_t len)
{
    if (len == 0) {
        return;
    }
    snprintf(buf, len,
             "%d %s %" PRIu32 " %" PRId64 " %" PRId64 " %" PRId64 " %s %d %" PRId64 " %" PRId64,
             op->client, type_name(op->type), op->key, op->value, op->expect, op->out,
             status_name(op->status), op->out_ok ? 1 : 0, op->invoke_ns, op->complete_ns);
}

int hist_write(const struct history *h, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    char line[256];
    for (size_t i = 0; i < h->n; i++) {
        hist_format(&h->ops[i], line, sizeof(line));
        if (fprintf(f, "%s\n", line) < 0) {
            int e = errno;
            fclose(f);
            errno = e ? e : EIO;
            return -1;
        }
    }
    if (fclose(f) != 0) {
        return -1;
    }
    return 0;
}

/* A whole token as a signed integer in [lo, hi]. */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_line(char *line, struct hist_op *op)
{
    char *tok[11];
    int nt = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (nt == 11) {
            return -1;
        }
        tok[nt++] = t;
    }
    if (nt != 10) {
        return -1;
    }
    int64_t v;
    memset(op, 0, sizeof(*op));
    if (parse_int(tok[0], INT_MIN, INT_MAX, &v) != 0) {
        return -1;
    }
    op->client = (int)v;
    if (strcmp(tok[1], "read") == 0) {
        op->type = HIST_READ;
    } else if (strcmp(tok[1], "write") == 0) {
        op->type = HIST_WRITE;
    } else if (strcmp(tok[1], "cas") == 0) {
        op->type = HIST_CAS;
    } else {
        return -1;
    }
    if (parse_int(tok[2], 0, UINT32_MAX, &v) != 0) {
        return -1;
    }
    op->key = (uint32_t)v;
    if (parse_int(tok[3], INT64_MIN, INT64_MAX, &op->value) != 0 ||
        parse_int(tok[4], INT64_MIN, INT64_MAX, &op->expect) != 0 ||
        parse_int(tok[5], INT64_MIN, INT64_MAX, &op->out) != 0) {
        return -1;
    }
    if (strcmp(tok[6], "ok") == 0) {
        op->status = HIST_OK;
    } else if (strcmp(tok[6], "fail") == 0) {
        op->status = HIST_FAIL;
    } else if (strcmp(tok[6], "unknown") == 0) {
        op->status = HIST_UNKNOWN;
    } else {
        return -1;
    }
    if (parse_int(tok[7], 0, 1, &v) != 0) {
        return -1;
    }
    op->out_ok = v == 1;
    if (parse_int(tok[8], INT64_MIN, INT64_MAX, &op->invoke_ns) != 0 ||
        parse_int(tok[9], INT64_MIN, INT64_MAX, &op->complete_ns) != 0) {
        return -1;
    }
    return 0;
}

int hist_read(struct history *h, const char *path)
{
    hist_init(h);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    char line[512];
    int err = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            err = EINVAL; /* longer than any valid line */
            break;
        }
        if (strspn(line, " \t\r\n") == len) {
            continue; /* blank */
        }
        struct hist_op op;
        if (parse_line(line, &op) != 0) {
            err = EINVAL;
            break;
        }
        if (hist_add(h, &op) != 0) {
            err = ENOMEM;
            break;
        }
    }
    if (!err && ferror(f)) {
        err = EIO;
    }
    fclose(f);
    if (err) {
        hist_free(h);
        errno = err;
        return -1;
    }
    return 0;
}

int64_t hist_parse_value(const void *s, size_t len)
{
    char buf[32], *end;
    long long v;

    if (s == NULL || len == 0 || len >= sizeof buf) {
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    return errno != 0 || *end != '\0' || v <= 0 ? -1 : (int64_t)v;
}
