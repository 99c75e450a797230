/* ballastctl: the command-line client of Ballast, built on libballast.
 *
 * The happy path: parse the flags (global ones are accepted anywhere, "--"
 * ends them), pick the endpoints (--endpoints, else $BALLAST_ENDPOINTS, else
 * 127.0.0.1:8379), create one client and run the command through it, so
 * every command gets the library's failover and retries. "-o json" sends the
 * same request as ballast_raw_request() asking for JSON and prints the body
 * as the server wrote it.
 *
 * members add / remove / promote and snapshot save go through the
 * library's calls (its retry rules: a remove whose lost first attempt
 * already removed the member succeeds); -o json prints the member object
 * the server answered, or for snapshot save a summary object. snapshot save
 * downloads FILE.part (the library streams it into FILE.part.tmp, checks
 * magic, length and checksum, renames it), then opens the image as a store
 * (bl_backup_verify, libglue) and only then renames it to FILE: FILE is
 * never a partial or unchecked backup. snapshot restore is local: no
 * endpoint is asked; it builds a data directory (bl_backup_restore) and
 * prints the ballastd command line that starts it.
 *
 * status and health are about members, not the cluster: they ask each
 * endpoint on a connection of its own (ballast_*_endpoint, no failover,
 * short timeouts), and status also asks every member the member table
 * names that was not listed, so a dead member still gets its row.
 *
 * txn FILE reads the txn document as JSON (the HTTP body's shape, keys
 * and values base64) with jansson, checks it and builds it with the
 * library's txn builder (a malformed document is bad usage, exit 2); -o
 * json sends the document as written and prints the server's answer.
 * watch prints events as they come (flushed one by one, so a pipe sees
 * them at once) until interrupted, and exits 1 on a cancel or a compacted
 * revision; -o json prints each event as the API's NDJSON would (base64
 * keys and values, rendered here: a stream cannot go through
 * ballast_raw_request()). lease keepalive loops at a third of the TTL.
 * get --wait/--index long-polls (with -o json the client's timeouts are
 * stretched by the wait).
 *
 * Exit status: 0 success, 1 a server or connection error (a message
 * "ballastctl: <what>: <why>" on stderr), 2 bad usage (a usage line). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ballast.h"

#include "backup.h" /* snapshot verify and restore: libglue, no server */
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_ENDPOINTS "127.0.0.1:8379"
#define STDIN_MAX         (64 * 1024 * 1024) /* a value read from stdin */
#define PAGE_LIMIT        1000               /* keys per page of get --prefix */
#define MAX_POSITIONAL    8
#define EXIT_OK           0
#define EXIT_FAIL         1
#define EXIT_USAGE        2
#define DEFAULT_PEER_URL  "127.0.0.1:8380"
#define PROMOTE_TIMEOUT   60000              /* ms: the server waits for the learner to catch up */
#define SNAPSHOT_TIMEOUT  300000             /* ms: the server builds the whole backup first */
#define WAIT_MAX_MS       600000             /* get --wait: the server's cap (10 min) */
#define TXN_FILE_MAX      (16 * 1024 * 1024) /* a txn document */

enum fmt { FMT_TEXT, FMT_SIMPLE, FMT_TABLE, FMT_JSON };

/* The parsed command line. */
struct args {
    const char *endpoints; /* NULL: environment or default */
    enum fmt fmt;
    unsigned timeout_ms; /* 0: library default */
    int help;
    int prefix, keys_only, count_only, serializable;
    unsigned long long limit; /* 0: no limit */
    int limit_set;
    int voter;            /* members add --voter */
    uint64_t id;          /* --id, 0: not given */
    const char *data_dir; /* snapshot restore --data-dir */
    const char *name;     /* snapshot restore --name */
    const char *peer_url; /* snapshot restore --peer-url */
    int64_t rev;          /* watch --rev, 0: from now */
    int rev_set;
    unsigned wait_ms; /* get --wait */
    int wait_set;
    int64_t index; /* get --index */
    int index_set;
    int64_t lease;                   /* put --lease, 0: none */
    unsigned ttl_ms;                 /* put --ttl, 0: none */
    int once;                        /* lease keepalive --once */
    int keys;                        /* lease get --keys */
    const char *bad_flag;            /* the first unknown flag, NULL if none */
    const char *pos[MAX_POSITIONAL]; /* the command and its arguments */
    int npos;
};

static const char USAGE[] =
    "usage: ballastctl [--endpoints HOST:PORT,...] [-o text|simple|table|json] [--timeout D]\n"
    "                  <put|get|del|txn|watch|lease grant|keepalive|revoke|get|list|status|\n"
    "                   members list|add|remove|promote|leader transfer|snapshot save|restore|\n"
    "                   health> [args] [flags]\n";

static const char HELP[] =
    "ballastctl: command-line client of the Ballast key-value store.\n"
    "\n"
    "Usage: ballastctl [global flags] COMMAND [ARGS] [flags]\n"
    "\n"
    "Commands:\n"
    "  put KEY VALUE          store VALUE under KEY; VALUE \"-\" reads it from stdin.\n"
    "                         Prints OK.\n"
    "    --lease ID           attach KEY to lease ID (a put without it detaches)\n"
    "    --ttl DURATION       give KEY a lease of its own with this TTL (e.g. 30s); prints\n"
    "                         \"lease ID\" after OK. Not with --lease.\n"
    "  get KEY                print KEY and its value, each followed by a newline.\n"
    "                         A missing key prints nothing, says \"ballastctl: get KEY: not\n"
    "                         found\" on stderr and exits 1.\n"
    "    --prefix             every key starting with KEY (KEY \"\" or left out: all keys),\n"
    "                         sorted; pages are followed to the end. No match exits 0.\n"
    "    --keys-only          print the keys only\n"
    "    --count-only         print the number of keys only (with --prefix)\n"
    "    --limit N            at most N keys (with --prefix)\n"
    "    --serializable       read the member's own state (may be stale) instead of a\n"
    "                         linearizable read\n"
    "    --index R            long-poll: answer once KEY (with --prefix: a key of the\n"
    "                         range) changed after revision R, or when --wait passed\n"
    "    --wait DURATION      the longest wait of --index (default 5m, at most 10m); the\n"
    "                         revision to pass next is the X-Ballast-Revision of the\n"
    "                         answer (-o json: mod_revision / revision)\n"
    "  del KEY [--prefix]     delete KEY (or every key starting with it); prints how many\n"
    "                         keys were deleted. An absent key is not an error.\n"
    "  txn FILE               run the transaction in FILE (- for stdin): JSON as the HTTP\n"
    "                         body, {\"compare\": [...], \"success\": [...], \"failure\": [...]},\n"
    "                         keys and values base64, e.g.\n"
    "                           {\"compare\": [{\"key\": \"Y250\", \"target\": \"mod\", \"op\": "
    "\"==\",\n"
    "                                        \"number\": 7}],\n"
    "                            \"success\": [{\"put\": {\"key\": \"Y250\", \"value\": "
    "\"OA==\"}}],\n"
    "                            \"failure\": [{\"get\": {\"key\": \"Y250\"}}]}\n"
    "                         Prints \"succeeded: true|false\", \"revision: R\", then one line\n"
    "                         per result (\"put: OK\", \"delete: N deleted\", \"get: N of C\n"
    "                         keys\" followed by the keys and values). A txn whose compares\n"
    "                         fail exits 0. A malformed FILE exits 2.\n"
    "  watch KEY [--prefix] [--rev R]\n"
    "                         print the changes to KEY (or every key starting with it)\n"
    "                         from revision R (default: from now) until interrupted:\n"
    "                         \"PUT\", the key and the value, or \"DELETE\" and the key, one\n"
    "                         per line (-o json: one event per line, as the API's NDJSON,\n"
    "                         progress events included). A lost connection resumes on the\n"
    "                         next endpoint without repeating or losing events. Exits 1\n"
    "                         when the server cancels the watch or R is compacted.\n"
    "  lease grant TTL [--id N]\n"
    "                         grant a lease of TTL seconds (or 30s, 5m); prints its id\n"
    "  lease keepalive ID [--once]\n"
    "                         keep lease ID alive (every third of its TTL) until\n"
    "                         interrupted, or once; exits 1 when it expired\n"
    "  lease revoke ID        revoke lease ID, deleting its keys\n"
    "  lease get ID [--keys]  its TTL, the time left, and with --keys its keys\n"
    "  lease list             every lease\n"
    "  status                 one row per member: asks every endpoint, and every member of\n"
    "                         the member table not among them, each on its own; exits 1\n"
    "                         only if none answered.\n"
    "  members list           the member table\n"
    "  members add NAME PEER_URL CLIENT_URL [--voter] [--id N]\n"
    "                         add a member (a learner unless --voter; the server picks\n"
    "                         the id unless --id); prints it. Start it with --join.\n"
    "                         Adding the same member again is not an error.\n"
    "  members remove ID      remove member ID from the cluster\n"
    "  members promote ID     make learner ID a voter once it has caught up (waits for\n"
    "                         it; --timeout default 60s)\n"
    "  leader transfer [ID]   hand leadership to voter ID, or without ID to the most\n"
    "                         caught-up voter; prints \"leader is now NAME (ID)\" once it\n"
    "                         leads. Naming the member that leads already changes nothing.\n"
    "  snapshot save FILE     save a backup of the whole store to FILE (written as\n"
    "                         FILE.part, checked, then renamed; --timeout default 5m)\n"
    "  snapshot restore FILE --data-dir DIR [--id N] [--name NAME] [--peer-url HOST:PORT]\n"
    "                         local, no server: make DIR (new or empty) the data dir of\n"
    "                         member N (default 1) of a new one-member cluster holding\n"
    "                         the backup, Raft at HOST:PORT (default 127.0.0.1:8380);\n"
    "                         prints the ballastd command that starts it. The other\n"
    "                         members then join it with --join (docs/backup.md).\n"
    "  health                 GET /healthz and /readyz on every endpoint; exits 1 if any\n"
    "                         endpoint is unhealthy or not ready.\n"
    "\n"
    "Global flags (before or after the command; \"--\" ends the flags):\n"
    "  --endpoints HOST:PORT,...  members to talk to, in order of preference; the\n"
    "                         client fails over to the next one. Default:\n"
    "                         $BALLAST_ENDPOINTS, else 127.0.0.1:8379.\n"
    "  -o, --output FORMAT    text (default), simple, table, or json: the API's JSON\n"
    "                         for the call (get --prefix: the first page only)\n"
    "  --timeout DURATION     overall time for a command's request, retries included,\n"
    "                         e.g. 500ms, 3s, 1m (default 10s)\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 success; 1 server or connection error (message on stderr);\n"
    "2 bad usage.\n";

/* --- messages ----------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("ballastctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

/* "ballastctl: <cmd> <key>: <message>" for a failed call; returns 1. */
static int fail(struct ballast_client *c, const char *what, const char *key, size_t klen)
{
    fprintf(stderr, "ballastctl: %s%s%.*s: %s\n", what, key ? " " : "", (int)klen, key ? key : "",
            ballast_errmsg(c));
    return EXIT_FAIL;
}

/* --- argument parsing --------------------------------------------------- */

/* Parse a duration ("500ms", "1.5s", "2m", "1h", a bare number is seconds)
 * into milliseconds. Returns 0 or -1. */
static int parse_duration(const char *s, unsigned *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !(v > 0)) {
        return -1;
    }
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0) {
        scale = 1000;
    } else if (strcmp(end, "ms") == 0) {
        scale = 1;
    } else if (strcmp(end, "m") == 0) {
        scale = 60000;
    } else if (strcmp(end, "h") == 0) {
        scale = 3600000;
    } else {
        return -1;
    }
    double t = v * scale;
    if (t > 86400000.0) {
        return -1;
    }
    *ms = t < 1 ? 1 : (unsigned)t;
    return 0;
}

static int parse_format(const char *s, enum fmt *f)
{
    if (strcmp(s, "text") == 0 || strcmp(s, "human") == 0) {
        *f = FMT_TEXT;
    } else if (strcmp(s, "simple") == 0) {
        *f = FMT_SIMPLE;
    } else if (strcmp(s, "table") == 0) {
        *f = FMT_TABLE;
    } else if (strcmp(s, "json") == 0) {
        *f = FMT_JSON;
    } else {
        return -1;
    }
    return 0;
}

/* Every flag, and whether it takes a value. */
static const struct {
    const char *name;
    int takes_value;
} FLAGS[] = {
    {"-h", 0},       {"--help", 0},      {"--endpoints", 1},  {"--endpoint", 1},     {"-o", 1},
    {"--output", 1}, {"-w", 1},          {"--write-out", 1},  {"--timeout", 1},      {"--limit", 1},
    {"--prefix", 0}, {"--keys-only", 0}, {"--count-only", 0}, {"--serializable", 0}, {"--voter", 0},
    {"--id", 1},     {"--data-dir", 1},  {"--name", 1},       {"--peer-url", 1},     {"--rev", 1},
    {"--wait", 1},   {"--index", 1},     {"--lease", 1},      {"--ttl", 1},          {"--once", 0},
    {"--keys", 0},
};

static int find_flag(const char *name)
{
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
        if (strcmp(FLAGS[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Parse a member id (decimal, 1..2^63-1). Returns 0 or -1. */
static int parse_id(const char *s, uint64_t *id)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v == 0 || v > INT64_MAX) {
        return -1;
    }
    *id = v;
    return 0;
}

/* Parse a revision or lease id (decimal, 0..2^63-1). Returns 0 or -1. */
static int parse_i64(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || x > INT64_MAX) {
        return -1;
    }
    *v = (int64_t)x;
    return 0;
}

/* Parse @argv into @a. Returns 0, or 2 after a usage message. */
static int parse_args(int argc, char **argv, struct args *a)
{
    int flags_done = 0;
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (flags_done || arg[0] != '-' || arg[1] == '\0') {
            if (a->npos == MAX_POSITIONAL) {
                return usage_error("too many arguments");
            }
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            flags_done = 1;
            continue;
        }
        /* "--name=value", "--name value", "-o value" or "-ovalue" */
        char name[32];
        const char *value = NULL;
        const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
        size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
        if (eq) {
            value = eq + 1;
        } else if ((arg[1] == 'o' || arg[1] == 'w') && arg[2] != '\0') {
            nl = 2;
            value = arg + 2;
        }
        int f = -1;
        if (nl < sizeof name) {
            memcpy(name, arg, nl);
            name[nl] = '\0';
            f = find_flag(name);
        }
        if (f < 0) {
            if (!a->bad_flag) {
                a->bad_flag = arg; /* reported once the command is known */
            }
            continue;
        }
        if (FLAGS[f].takes_value && !value) {
            if (i + 1 >= argc) {
                return usage_error("flag %s needs a value", name);
            }
            value = argv[++i];
        } else if (!FLAGS[f].takes_value && value) {
            return usage_error("flag %s takes no value", name);
        }
        if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
            a->help = 1;
        } else if (strcmp(name, "--endpoints") == 0 || strcmp(name, "--endpoint") == 0) {
            a->endpoints = value;
        } else if (strcmp(name, "-o") == 0 || strcmp(name, "--output") == 0 ||
                   strcmp(name, "-w") == 0 || strcmp(name, "--write-out") == 0) {
            if (parse_format(value, &a->fmt) != 0) {
                return usage_error("unknown output format \"%s\" (want text, simple, table or "
                                   "json)",
                                   value);
            }
        } else if (strcmp(name, "--timeout") == 0) {
            if (parse_duration(value, &a->timeout_ms) != 0) {
                return usage_error("bad duration \"%s\" (e.g. 500ms, 5s, 1m)", value);
            }
        } else if (strcmp(name, "--limit") == 0) {
            char *end;
            errno = 0;
            a->limit = strtoull(value, &end, 10);
            if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0 || a->limit == 0) {
                return usage_error("bad --limit \"%s\" (want a positive number)", value);
            }
            a->limit_set = 1;
        } else if (strcmp(name, "--prefix") == 0) {
            a->prefix = 1;
        } else if (strcmp(name, "--keys-only") == 0) {
            a->keys_only = 1;
        } else if (strcmp(name, "--count-only") == 0) {
            a->count_only = 1;
        } else if (strcmp(name, "--serializable") == 0) {
            a->serializable = 1;
        } else if (strcmp(name, "--voter") == 0) {
            a->voter = 1;
        } else if (strcmp(name, "--id") == 0) {
            if (parse_id(value, &a->id) != 0) {
                return usage_error("bad --id \"%s\" (want a number 1..2^63-1)", value);
            }
        } else if (strcmp(name, "--data-dir") == 0) {
            a->data_dir = value;
        } else if (strcmp(name, "--name") == 0) {
            a->name = value;
        } else if (strcmp(name, "--peer-url") == 0) {
            a->peer_url = value;
        } else if (strcmp(name, "--rev") == 0) {
            if (parse_i64(value, &a->rev) != 0) {
                return usage_error("bad --rev \"%s\" (want a revision >= 0)", value);
            }
            a->rev_set = 1;
        } else if (strcmp(name, "--wait") == 0) {
            if (parse_duration(value, &a->wait_ms) != 0 || a->wait_ms > WAIT_MAX_MS) {
                return usage_error("bad --wait \"%s\" (e.g. 30s, 5m; at most 10m)", value);
            }
            a->wait_set = 1;
        } else if (strcmp(name, "--index") == 0) {
            if (parse_i64(value, &a->index) != 0) {
                return usage_error("bad --index \"%s\" (want a revision >= 0)", value);
            }
            a->index_set = 1;
        } else if (strcmp(name, "--lease") == 0) {
            if (parse_i64(value, &a->lease) != 0 || a->lease == 0) {
                return usage_error("bad --lease \"%s\" (want a lease id >= 1)", value);
            }
        } else if (strcmp(name, "--ttl") == 0) {
            if (parse_duration(value, &a->ttl_ms) != 0) {
                return usage_error("bad --ttl \"%s\" (e.g. 30s, 5m)", value);
            }
        } else if (strcmp(name, "--once") == 0) {
            a->once = 1;
        } else if (strcmp(name, "--keys") == 0) {
            a->keys = 1;
        }
    }
    return 0;
}

/* --- output helpers ----------------------------------------------------- */

/* A copy of @n bytes at @p with control bytes written as \xNN (for tables). */
static char *printable(const char *p, size_t n)
{
    char *out = malloc(n * 4 + 1), *o = out;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f) {
            o += sprintf(o, "\\x%02x", ch);
        } else {
            *o++ = (char)ch;
        }
    }
    *o = '\0';
    return out;
}

/* Write @s as a JSON string. */
static void print_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

/* Print a raw JSON body and a newline if it lacks one. */
static void print_body(const char *body, size_t len)
{
    fwrite(body, 1, len, stdout);
    if (len == 0 || body[len - 1] != '\n') {
        fputc('\n', stdout);
    }
}

/* Sizes as etcdctl prints them (SI units): "999 B", "1.5 kB", "20 kB". */
static void human_bytes(uint64_t b, char *out, size_t n)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    if (b < 10) {
        snprintf(out, n, "%u B", (unsigned)b);
        return;
    }
    double v = (double)b;
    int e = 0;
    while (v >= 1000 && e < 6) {
        v /= 1000;
        e++;
    }
    v = (double)(long long)(v * 10 + 0.5) / 10;
    snprintf(out, n, v < 10 ? "%.1f %s" : "%.0f %s", v, units[e]);
}

/* A table of strings, printed with borders like etcdctl -w table, or as
 * comma-separated lines (simple). */
struct table {
    size_t ncols;
    const char *const *header;
    char **cells; /* nrows * ncols, owned */
    size_t nrows, cap;
};

/* Display width of UTF-8 text: code points, not bytes. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) {
        w += ((unsigned char)*s & 0xc0) != 0x80;
    }
    return w;
}

/* Append a row of ncols cells (copied). Returns 0 or -1 out of memory. */
static int table_add(struct table *t, const char *const *row)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
        if (!cells) {
            return -1;
        }
        t->cells = cells;
        t->cap = cap;
    }
    char **r = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        r[i] = strdup(row[i] ? row[i] : "");
        if (!r[i]) {
            for (size_t j = 0; j < i; j++) {
                free(r[j]);
            }
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

static void table_rule(const size_t *w, size_t ncols)
{
    for (size_t i = 0; i < ncols; i++) {
        fputc('+', stdout);
        for (size_t k = 0; k < w[i] + 2; k++) {
            fputc('-', stdout);
        }
    }
    fputs("+\n", stdout);
}

static void table_line(const size_t *w, size_t ncols, const char *const *cells, int center)
{
    for (size_t i = 0; i < ncols; i++) {
        size_t pad = w[i] - text_width(cells[i]);
        size_t left = center ? pad / 2 : 0;
        printf("| %*s%s%*s ", (int)left, "", cells[i], (int)(pad - left), "");
    }
    fputs("|\n", stdout);
}

static void table_print(const struct table *t, enum fmt fmt)
{
    if (fmt == FMT_SIMPLE) {
        for (size_t r = 0; r < t->nrows; r++) {
            for (size_t i = 0; i < t->ncols; i++) {
                printf("%s%s", i ? ", " : "", t->cells[r * t->ncols + i]);
            }
            fputc('\n', stdout);
        }
        return;
    }
    size_t w[16] = {0};
    for (size_t i = 0; i < t->ncols && i < 16; i++) {
        w[i] = text_width(t->header[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t cw = text_width(t->cells[r * t->ncols + i]);
            w[i] = cw > w[i] ? cw : w[i];
        }
    }
    table_rule(w, t->ncols);
    table_line(w, t->ncols, t->header, 1);
    table_rule(w, t->ncols);
    for (size_t r = 0; r < t->nrows; r++) {
        table_line(w, t->ncols, (const char *const *)(t->cells + r * t->ncols), 0);
    }
    table_rule(w, t->ncols);
}

/* --- put / get / del ---------------------------------------------------- */

/* Read all of stdin into a buffer to free with free(); @what names the
 * command in messages. */
static char *read_stdin(const char *what, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "ballastctl: %s: reading stdin: %s\n", what, strerror(errno));
                free(buf);
                return NULL;
            }
            *len = n;
            return buf;
        }
        if (n == cap) {
            if (cap >= STDIN_MAX) {
                fprintf(stderr, "ballastctl: %s: stdin is over %d bytes\n", what, STDIN_MAX);
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fprintf(stderr, "ballastctl: %s: out of memory\n", what);
    return NULL;
}

/* Run a raw JSON request and print its body; for -o json. */
static int raw_json(struct ballast_client *c, const char *what, const char *key, size_t klen,
                    const char *method, const char *target, const void *body, size_t len)
{
    int status;
    void *resp;
    size_t rlen;
    int rv = ballast_raw_request(c, method, target, body, len, 1, &status, &resp, &rlen);
    ballast_free(rv != 0 ? resp : NULL);
    if (rv == BALLAST_ENOTFOUND && strcmp(what, "get") == 0 && !strstr(target, "?prefix")) {
        fprintf(stderr, "ballastctl: get %.*s: not found\n", (int)klen, key);
        return EXIT_FAIL;
    }
    if (rv != 0) {
        return fail(c, what, key, klen);
    }
    print_body(resp, rlen);
    ballast_free(resp);
    return EXIT_OK;
}

/* "/v1/kv/<escaped key>" followed by @query (may be ""). */
static char *kv_target(const char *key, size_t klen, const char *query)
{
    char *esc = ballast_escape(key, klen);
    if (!esc) {
        return NULL;
    }
    size_t n = strlen(esc) + strlen(query) + 8;
    char *t = malloc(n);
    if (t) {
        snprintf(t, n, "/v1/kv/%s%s", esc, query);
    }
    ballast_free(esc);
    return t;
}

static int cmd_put(struct ballast_client *c, const struct args *a)
{
    const char *key = a->pos[1];
    size_t klen = strlen(key);
    const char *value = a->pos[2];
    size_t vlen = strlen(value);
    char *owned = NULL;
    int rv;
    if (strcmp(value, "-") == 0) {
        owned = read_stdin("put", &vlen);
        if (!owned) {
            return EXIT_FAIL;
        }
        value = owned;
    }
    struct ballast_put_opts o = BALLAST_PUT_OPTS_INIT;
    struct ballast_put_result r;
    o.lease = a->lease;
    o.ttl_ms = a->ttl_ms;
    if (a->fmt == FMT_JSON) {
        char q[64] = "";
        if (a->lease) {
            snprintf(q, sizeof q, "?lease=%lld", (long long)a->lease);
        } else if (a->ttl_ms % 1000 == 0 && a->ttl_ms) {
            snprintf(q, sizeof q, "?ttl=%us", a->ttl_ms / 1000);
        } else if (a->ttl_ms) {
            snprintf(q, sizeof q, "?ttl=%ums", a->ttl_ms);
        }
        char *t = kv_target(key, klen, q);
        rv = t ? raw_json(c, "put", key, klen, "PUT", t, value, vlen) : EXIT_FAIL;
        free(t);
    } else if (ballast_put(c, key, klen, value, vlen, &o, &r) != 0) {
        rv = fail(c, "put", key, klen);
    } else {
        puts("OK");
        if (a->ttl_ms && r.lease) {
            printf("lease %lld\n", (long long)r.lease);
        }
        ballast_put_result_free(&r);
        rv = EXIT_OK;
    }
    free(owned);
    return rv;
}

/* Print @n kvs in the text/simple formats, or add them to @t (table). */
static int print_kvs(const struct ballast_kv *kvs, size_t n, const struct args *a, struct table *t)
{
    for (size_t i = 0; i < n; i++) {
        const struct ballast_kv *kv = &kvs[i];
        if (a->fmt == FMT_TABLE) {
            char cr[24], mr[24], ver[24], lease[24];
            char *k = printable(kv->key, kv->key_len);
            char *v = printable(kv->value, kv->value_len);
            snprintf(cr, sizeof cr, "%lld", (long long)kv->create_revision);
            snprintf(mr, sizeof mr, "%lld", (long long)kv->mod_revision);
            snprintf(ver, sizeof ver, "%lld", (long long)kv->version);
            snprintf(lease, sizeof lease, "%lld", (long long)kv->lease);
            const char *row[] = {k, v, cr, mr, ver, lease};
            int r = k && v ? table_add(t, row) : -1;
            free(k);
            free(v);
            if (r != 0) {
                fputs("ballastctl: get: out of memory\n", stderr);
                return -1;
            }
            continue;
        }
        fwrite(kv->key, 1, kv->key_len, stdout);
        fputc('\n', stdout);
        if (!a->keys_only) {
            fwrite(kv->value, 1, kv->value_len, stdout);
            fputc('\n', stdout);
        }
    }
    return 0;
}

/* Append "&wait=D&index=R" of get --wait/--index to @q (@n bytes). */
static void wait_query(const struct args *a, char *q, size_t n)
{
    if (a->wait_set) {
        if (a->wait_ms % 1000 == 0) {
            snprintf(q, n, "&wait=%us", a->wait_ms / 1000);
        } else {
            snprintf(q, n, "&wait=%ums", a->wait_ms);
        }
        n -= strlen(q);
        q += strlen(q);
    }
    if (a->index_set) {
        snprintf(q, n, "&index=%lld", (long long)a->index);
    }
}

static int cmd_get_prefix(struct ballast_client *c, const struct args *a, const char *key,
                          size_t klen)
{
    int consistency = a->serializable ? BALLAST_SERIALIZABLE : BALLAST_LINEARIZABLE;
    if (a->fmt == FMT_JSON) {
        char q[160];
        unsigned long long lim = a->limit > 10000 ? 10000 : a->limit;
        snprintf(q, sizeof q, "?prefix");
        if (lim > 0) {
            snprintf(q + strlen(q), sizeof q - strlen(q), "&limit=%llu", lim);
        }
        snprintf(q + strlen(q), sizeof q - strlen(q), "%s%s%s", a->keys_only ? "&keys" : "",
                 a->count_only ? "&count" : "", a->serializable ? "&consistency=serializable" : "");
        wait_query(a, q + strlen(q), sizeof q - strlen(q));
        char *t = kv_target(key, klen, q);
        int rv = t ? raw_json(c, "get", key, klen, "GET", t, NULL, 0) : EXIT_FAIL;
        free(t);
        return rv;
    }
    static const char *const hdr[] = {"KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION", "LEASE"};
    struct table t = {a->keys_only ? 1 : 6, hdr, NULL, 0, 0};
    struct ballast_range_opts o = {0};
    struct ballast_range_result r;
    char *after = NULL;
    unsigned long long got = 0;
    int rv = EXIT_OK;
    o.keys_only = a->keys_only;
    o.count_only = a->count_only;
    o.consistency = consistency;
    o.index = a->index; /* a long-poll: the first page waits, the others do not */
    o.wait_ms = a->wait_ms;
    for (;;) {
        unsigned long long left = a->limit ? a->limit - got : PAGE_LIMIT;
        o.limit = (unsigned)(left < PAGE_LIMIT ? left : PAGE_LIMIT);
        if (ballast_range(c, key, klen, &o, &r) != 0) {
            rv = fail(c, "get", key, klen);
            break;
        }
        if (a->count_only) {
            printf("%lld\n", (long long)r.count);
            ballast_range_result_free(&r);
            break;
        }
        if (print_kvs(r.kvs, r.n, a, &t) != 0) {
            ballast_range_result_free(&r);
            rv = EXIT_FAIL;
            break;
        }
        got += r.n;
        int again = r.more && r.n > 0 && (!a->limit || got < a->limit);
        if (again) {
            const struct ballast_kv *last = &r.kvs[r.n - 1];
            char *na = malloc(last->key_len + 1);
            if (!na) {
                ballast_range_result_free(&r);
                fputs("ballastctl: get: out of memory\n", stderr);
                rv = EXIT_FAIL;
                break;
            }
            memcpy(na, last->key, last->key_len);
            free(after);
            after = na;
            o.after = after;
            o.after_len = last->key_len;
            o.index = 0;
            o.wait_ms = 0;
        }
        ballast_range_result_free(&r);
        if (!again) {
            break;
        }
    }
    if (rv == EXIT_OK && a->fmt == FMT_TABLE && !a->count_only) {
        table_print(&t, FMT_TABLE);
    }
    table_free(&t);
    free(after);
    return rv;
}

static int cmd_get(struct ballast_client *c, const struct args *a)
{
    const char *key = a->npos > 1 ? a->pos[1] : "";
    size_t klen = strlen(key);
    if (a->prefix) {
        return cmd_get_prefix(c, a, key, klen);
    }
    struct ballast_get_opts go = {0};
    go.consistency = a->serializable ? BALLAST_SERIALIZABLE : BALLAST_LINEARIZABLE;
    go.index = a->index;
    go.wait_ms = a->wait_ms;
    if (a->fmt == FMT_JSON) {
        char q[128];
        snprintf(q, sizeof q, "%s", a->serializable ? "?consistency=serializable" : "");
        wait_query(a, q + strlen(q), sizeof q - strlen(q));
        if (q[0] == '&') {
            q[0] = '?';
        }
        char *t = kv_target(key, klen, q);
        int rv = t ? raw_json(c, "get", key, klen, "GET", t, NULL, 0) : EXIT_FAIL;
        free(t);
        return rv;
    }
    struct ballast_kv *kv;
    int rv = ballast_get_wait(c, key, klen, &go, &kv, NULL);
    if (rv == BALLAST_ENOTFOUND) {
        fprintf(stderr, "ballastctl: get %s: not found\n", key);
        return EXIT_FAIL;
    }
    if (rv != 0) {
        return fail(c, "get", key, klen);
    }
    static const char *const hdr[] = {"KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION", "LEASE"};
    struct table t = {a->keys_only ? 1 : 6, hdr, NULL, 0, 0};
    rv = print_kvs(kv, 1, a, &t) == 0 ? EXIT_OK : EXIT_FAIL;
    if (rv == EXIT_OK && a->fmt == FMT_TABLE) {
        table_print(&t, FMT_TABLE);
    }
    table_free(&t);
    ballast_kv_free(kv);
    return rv;
}

static int cmd_del(struct ballast_client *c, const struct args *a)
{
    const char *key = a->npos > 1 ? a->pos[1] : "";
    size_t klen = strlen(key);
    if (a->fmt == FMT_JSON) {
        char *t = kv_target(key, klen, a->prefix ? "?prefix" : "");
        int rv = t ? raw_json(c, "del", key, klen, "DELETE", t, NULL, 0) : EXIT_FAIL;
        free(t);
        return rv;
    }
    struct ballast_delete_opts o = BALLAST_DELETE_OPTS_INIT;
    struct ballast_delete_result r;
    o.prefix = a->prefix;
    if (ballast_delete(c, key, klen, &o, &r) != 0) {
        return fail(c, "del", key, klen);
    }
    printf("%lld\n", (long long)r.deleted);
    ballast_delete_result_free(&r);
    return EXIT_OK;
}

/* --- status / members / health ----------------------------------------- */

/* "host:port" for a client URL or endpoint ("http://h:p/" -> "h:p"; a
 * missing port is 8379), written into @out. */
static void normalize_endpoint(const char *s, char *out, size_t n)
{
    if (strncasecmp(s, "http://", 7) == 0) {
        s += 7;
    }
    size_t len = strcspn(s, "/");
    const char *rb = memchr(s, ']', len);
    const char *colon = memchr(rb ? rb : s, ':', len - (size_t)((rb ? rb : s) - s));
    int bare_v6 = !rb && colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s));
    if (bare_v6) {
        snprintf(out, n, "[%.*s]:8379", (int)len, s);
    } else if (!colon) {
        snprintf(out, n, "%.*s:8379", (int)len, s);
    } else {
        snprintf(out, n, "%.*s", (int)len, s);
    }
}

/* One row of status: an endpoint and what it answered. */
struct status_row {
    char endpoint[300];
    struct ballast_status *st; /* NULL: unreachable */
    char err[256];
    const struct ballast_member *m; /* from a member table, when known */
};

static int find_row(const struct status_row *rows, size_t n, const char *ep)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].endpoint, ep) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int cmd_status(struct ballast_client *c, const struct args *a)
{
    size_t cap = ballast_endpoint_count(c) + 8, n = 0;
    struct status_row *rows = calloc(cap, sizeof *rows);
    int answered = 0, rv = EXIT_OK;
    if (!rows) {
        fputs("ballastctl: status: out of memory\n", stderr);
        return EXIT_FAIL;
    }
    for (size_t i = 0; i < ballast_endpoint_count(c); i++) {
        char ep[300];
        normalize_endpoint(ballast_endpoint_at(c, i), ep, sizeof ep);
        if (find_row(rows, n, ep) < 0) {
            snprintf(rows[n++].endpoint, sizeof rows[0].endpoint, "%s", ep);
        }
    }
    /* Ask each row; rows grow with members found in member tables. */
    for (size_t i = 0; i < n; i++) {
        struct status_row *row = &rows[i];
        if (ballast_status_endpoint(c, row->endpoint, &row->st) != 0) {
            snprintf(row->err, sizeof row->err, "%s", ballast_errmsg(c));
            continue;
        }
        answered++;
        for (size_t k = 0; k < row->st->n_members; k++) {
            const struct ballast_member *m = &row->st->members[k];
            char ep[300];
            if (!m->client_url[0]) {
                continue;
            }
            normalize_endpoint(m->client_url, ep, sizeof ep);
            int j = find_row(rows, n, ep);
            for (size_t q = 0; j < 0 && q < n; q++) {
                if (rows[q].st && rows[q].st->id == m->id) {
                    j = (int)q; /* answered already under another name */
                }
            }
            if (j >= 0) {
                if (!rows[j].m) {
                    rows[j].m = m;
                }
                continue;
            }
            if (n == cap) {
                struct status_row *nr = realloc(rows, cap * 2 * sizeof *rows);
                if (!nr) {
                    continue;
                }
                memset(nr + cap, 0, cap * sizeof *rows);
                rows = nr;
                cap *= 2;
                row = &rows[i];
            }
            snprintf(rows[n].endpoint, sizeof rows[0].endpoint, "%s", ep);
            rows[n].m = m;
            n++;
        }
    }
    if (a->fmt == FMT_JSON) {
        fputs("[", stdout);
        for (size_t i = 0; i < n; i++) {
            int status;
            void *body = NULL;
            size_t len = 0;
            int r = -1;
            if (rows[i].st) {
                r = ballast_raw_request_endpoint(c, rows[i].endpoint, "GET", "/v1/status", NULL, 0,
                                                 1, &status, &body, &len);
                if (r != 0) {
                    snprintf(rows[i].err, sizeof rows[i].err, "%s", ballast_errmsg(c));
                }
            }
            printf("%s\n{\"endpoint\":", i ? "," : "");
            print_json_string(stdout, rows[i].endpoint);
            if (r == 0) {
                fputs(",\"status\":", stdout);
                while (len > 0 &&
                       (((char *)body)[len - 1] == '\n' || ((char *)body)[len - 1] == ' ')) {
                    len--;
                }
                fwrite(body, 1, len, stdout);
            } else {
                fputs(",\"error\":", stdout);
                print_json_string(stdout, rows[i].err);
            }
            fputs("}", stdout);
            ballast_free(body);
        }
        fputs("\n]\n", stdout);
    } else {
        static const char *const hdr[] = {"ENDPOINT", "NAME",    "ID",        "ROLE",
                                          "LEADER",   "TERM",    "COMMIT",    "APPLIED",
                                          "REVISION", "DB SIZE", "REACHABLE", "ERRORS"};
        struct table t = {12, hdr, NULL, 0, 0};
        for (size_t i = 0; i < n; i++) {
            const struct status_row *row = &rows[i];
            const struct ballast_status *st = row->st;
            char id[24] = "", leader[24] = "", term[24] = "", commit[24] = "", applied[24] = "",
                 rev[24] = "", size[24] = "";
            const char *name = "";
            if (st) {
                name = st->name;
                snprintf(id, sizeof id, "%llu", (unsigned long long)st->id);
                snprintf(leader, sizeof leader, "%llu", (unsigned long long)st->leader);
                snprintf(term, sizeof term, "%llu", (unsigned long long)st->term);
                snprintf(commit, sizeof commit, "%llu", (unsigned long long)st->commit_index);
                snprintf(applied, sizeof applied, "%llu", (unsigned long long)st->applied_index);
                snprintf(rev, sizeof rev, "%lld", (long long)st->revision);
                human_bytes(st->db_bytes, size, sizeof size);
            } else if (row->m) {
                name = row->m->name;
                snprintf(id, sizeof id, "%llu", (unsigned long long)row->m->id);
            }
            const char *cells[] = {
                row->endpoint, name, id,   st ? st->role : "",    leader,  term, commit,
                applied,       rev,  size, st ? "true" : "false", row->err};
            if (table_add(&t, cells) != 0) {
                fputs("ballastctl: status: out of memory\n", stderr);
                rv = EXIT_FAIL;
                break;
            }
        }
        if (rv == EXIT_OK) {
            table_print(&t, a->fmt == FMT_SIMPLE ? FMT_SIMPLE : FMT_TABLE);
        }
        table_free(&t);
    }
    if (answered == 0) {
        fprintf(stderr, "ballastctl: status: no endpoint answered%s%s\n", n ? ": " : "",
                n ? rows[n - 1].err : "");
        rv = EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        ballast_status_free(rows[i].st);
    }
    free(rows);
    return rv;
}

static int cmd_members_list(struct ballast_client *c, const struct args *a)
{
    if (a->fmt == FMT_JSON) {
        return raw_json(c, "members list", NULL, 0, "GET", "/v1/members", NULL, 0);
    }
    struct ballast_member *m;
    size_t n;
    if (ballast_members(c, &m, &n) != 0) {
        return fail(c, "members list", NULL, 0);
    }
    static const char *const hdr[] = {"ID",   "NAME",      "PEER URL", "CLIENT URL",
                                      "ROLE", "REACHABLE", "MATCH"};
    struct table t = {7, hdr, NULL, 0, 0};
    int rv = EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        char id[24], match[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)m[i].id);
        snprintf(match, sizeof match, "%llu", (unsigned long long)m[i].match_index);
        const char *cells[] = {id,
                               m[i].name,
                               m[i].peer_url,
                               m[i].client_url,
                               m[i].role,
                               m[i].reachable ? "true" : "false",
                               match};
        if (table_add(&t, cells) != 0) {
            fputs("ballastctl: members list: out of memory\n", stderr);
            rv = EXIT_FAIL;
            break;
        }
    }
    if (rv == EXIT_OK) {
        table_print(&t, a->fmt == FMT_SIMPLE ? FMT_SIMPLE : FMT_TABLE);
    }
    table_free(&t);
    ballast_members_free(m, n);
    return rv;
}

/* GET @path on @ep alone; returns 0 when it answered 2xx, else copies the
 * reason into @err. */
static int probe(struct ballast_client *c, const char *ep, const char *path, char *err, size_t n)
{
    int status;
    void *body;
    size_t len;
    int rv = ballast_raw_request_endpoint(c, ep, "GET", path, NULL, 0, 1, &status, &body, &len);
    if (rv != 0) {
        snprintf(err, n, "%s", ballast_errmsg(c));
    }
    ballast_free(body);
    return rv;
}

static int cmd_health(struct ballast_client *c, const struct args *a)
{
    int rv = EXIT_OK;
    if (a->fmt == FMT_JSON) {
        fputs("[", stdout);
    }
    for (size_t i = 0; i < ballast_endpoint_count(c); i++) {
        const char *ep = ballast_endpoint_at(c, i);
        char err[256] = "";
        int healthy = probe(c, ep, "/healthz", err, sizeof err) == 0;
        int ready = healthy && probe(c, ep, "/readyz", err, sizeof err) == 0;
        if (!ready) {
            rv = EXIT_FAIL;
        }
        if (a->fmt == FMT_JSON) {
            printf("%s\n{\"endpoint\":", i ? "," : "");
            print_json_string(stdout, ep);
            printf(",\"health\":%s,\"ready\":%s", healthy ? "true" : "false",
                   ready ? "true" : "false");
            if (!ready) {
                fputs(",\"error\":", stdout);
                print_json_string(stdout, err);
            }
            fputs("}", stdout);
        } else if (!healthy) {
            printf("%s is unhealthy: %s\n", ep, err);
        } else {
            printf("%s is healthy\n", ep);
            if (ready) {
                printf("%s is ready\n", ep);
            } else {
                printf("%s is not ready: %s\n", ep, err);
            }
        }
    }
    if (a->fmt == FMT_JSON) {
        fputs("\n]\n", stdout);
    }
    return rv;
}

/* --- leader transfer ------------------------------------------------------ */

static int cmd_leader_transfer(struct ballast_client *c, const struct args *a)
{
    uint64_t to = 0, leader = 0;
    if (a->npos == 3 && parse_id(a->pos[2], &to) != 0) {
        return usage_error("bad member id \"%s\"", a->pos[2]);
    }
    if (a->fmt == FMT_JSON) {
        char body[48];
        int len = to ? snprintf(body, sizeof body, "{\"to\":%llu}", (unsigned long long)to) : 0;
        return raw_json(c, "leader transfer", NULL, 0, "POST", "/v1/leader", len ? body : NULL,
                        (size_t)len);
    }
    if (ballast_leader_transfer(c, to, &leader) != 0) {
        return fail(c, "leader transfer", NULL, 0);
    }
    /* The name, from the member table (any member's will do). */
    struct ballast_member *m = NULL;
    size_t n = 0;
    const char *name = NULL;
    if (ballast_members(c, &m, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (m[i].id == leader && m[i].name[0]) {
                name = m[i].name;
            }
        }
    }
    if (name) {
        printf("leader is now %s (%llu)\n", name, (unsigned long long)leader);
    } else {
        printf("leader is now member %llu\n", (unsigned long long)leader);
    }
    ballast_members_free(m, n);
    return EXIT_OK;
}

/* --- members add / remove / promote -------------------------------------- */

/* Print @m as the API's member object. */
static void print_member_json(const struct ballast_member *m)
{
    printf("{\"id\":%llu,\"name\":", (unsigned long long)m->id);
    print_json_string(stdout, m->name);
    fputs(",\"peer_url\":", stdout);
    print_json_string(stdout, m->peer_url);
    fputs(",\"client_url\":", stdout);
    print_json_string(stdout, m->client_url);
    fputs(",\"role\":", stdout);
    print_json_string(stdout, m->role);
    printf(",\"reachable\":%s,\"match_index\":%llu}\n", m->reachable ? "true" : "false",
           (unsigned long long)m->match_index);
}

static int cmd_members_add(struct ballast_client *c, const struct args *a)
{
    struct ballast_member *m;
    if (ballast_member_add(c, a->pos[2], a->pos[3], a->pos[4], a->voter, a->id, &m) != 0) {
        return fail(c, "members add", a->pos[2], strlen(a->pos[2]));
    }
    if (a->fmt == FMT_JSON) {
        print_member_json(m);
    } else {
        printf("Member %s (%llu) added as %s: peer %s, client %s\n", m->name,
               (unsigned long long)m->id, m->role, m->peer_url,
               m->client_url[0] ? m->client_url : "(published when it starts)");
        if (strcmp(m->role, "learner") == 0) {
            printf("Start it with --join; then promote it: ballastctl members promote %llu\n",
                   (unsigned long long)m->id);
        }
    }
    ballast_members_free(m, 1);
    return EXIT_OK;
}

static int cmd_members_remove(struct ballast_client *c, const struct args *a)
{
    uint64_t id;
    if (parse_id(a->pos[2], &id) != 0) {
        return usage_error("bad member id \"%s\" (want a number >= 1)", a->pos[2]);
    }
    if (ballast_member_remove(c, id) != 0) {
        return fail(c, "members remove", a->pos[2], strlen(a->pos[2]));
    }
    if (a->fmt == FMT_JSON) {
        printf("{\"removed\":%llu}\n", (unsigned long long)id);
    } else {
        printf("Member %llu removed\n", (unsigned long long)id);
    }
    return EXIT_OK;
}

static int cmd_members_promote(struct ballast_client *c, const struct args *a)
{
    uint64_t id;
    struct ballast_member *m;
    if (parse_id(a->pos[2], &id) != 0) {
        return usage_error("bad member id \"%s\" (want a number >= 1)", a->pos[2]);
    }
    if (ballast_member_promote(c, id, &m) != 0) {
        return fail(c, "members promote", a->pos[2], strlen(a->pos[2]));
    }
    if (a->fmt == FMT_JSON) {
        print_member_json(m);
    } else {
        printf("Member %s (%llu) is now a %s\n", m->name, (unsigned long long)m->id, m->role);
    }
    ballast_members_free(m, 1);
    return EXIT_OK;
}

/* --- snapshot save / restore ------------------------------------------------ */

/* fsync the directory holding @path (best effort is not enough: the rename
 * must be durable before we say "saved"). Returns 0 or -1 with errno. */
static int sync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rv = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rv;
}

static int cmd_snapshot_save(struct ballast_client *c, const struct args *a)
{
    const char *file = a->pos[2];
    size_t n = strlen(file) + 6;
    char *part = malloc(n);
    char err[BL_ERRMSG_SIZE];
    struct bl_backup_info info;
    uint64_t rev = 0;
    int rv = EXIT_FAIL;
    if (!part) {
        fputs("ballastctl: snapshot save: out of memory\n", stderr);
        return EXIT_FAIL;
    }
    snprintf(part, n, "%s.part", file);
    if (ballast_snapshot_save(c, part, &rev) != 0) {
        rv = fail(c, "snapshot save", file, strlen(file));
        goto out;
    }
    if (bl_backup_verify(part, &info, err) != 0) {
        fprintf(stderr, "ballastctl: snapshot save %s: the received backup fails its check: %s\n",
                file, err);
        unlink(part);
        goto out;
    }
    if (rev != 0 && rev != info.revision) {
        fprintf(stderr,
                "ballastctl: snapshot save %s: warning: the server said revision %" PRIu64
                ", the backup holds revision %" PRIu64 "\n",
                file, rev, info.revision);
    }
    if (rename(part, file) != 0 || sync_dir_of(file) != 0) {
        fprintf(stderr, "ballastctl: snapshot save %s: rename %s: %s\n", file, part,
                strerror(errno));
        unlink(part);
        goto out;
    }
    uint64_t size = info.image_len + BL_BACKUP_HEADER;
    if (a->fmt == FMT_JSON) {
        fputs("{\"path\":", stdout);
        print_json_string(stdout, file);
        printf(",\"revision\":%" PRIu64 ",\"applied_index\":%" PRIu64 ",\"size\":%" PRIu64
               ",\"checksum\":\"%016" PRIx64 "\",\"endpoint\":",
               info.revision, info.applied_index, size, info.checksum);
        print_json_string(stdout, ballast_current_endpoint(c));
        fputs("}\n", stdout);
    } else {
        char hb[32];
        human_bytes(size, hb, sizeof hb);
        printf("Snapshot saved to %s: revision %" PRIu64 ", applied index %" PRIu64 ", %s (%" PRIu64
               " bytes), from %s\n",
               file, info.revision, info.applied_index, hb, size, ballast_current_endpoint(c));
    }
    rv = EXIT_OK;
out:
    free(part);
    return rv;
}

/* Local: no client. */
static int cmd_snapshot_restore(const struct args *a)
{
    const char *file = a->pos[2];
    uint64_t id = a->id ? a->id : 1;
    const char *peer = a->peer_url ? a->peer_url : DEFAULT_PEER_URL;
    char name[64], err[BL_ERRMSG_SIZE];
    struct bl_backup_info info;
    snprintf(name, sizeof name, "member-%" PRIu64, id);
    const char *nm = a->name ? a->name : name;
    if (bl_backup_verify(file, &info, err) != 0) {
        fprintf(stderr, "ballastctl: snapshot restore %s: %s\n", file, err);
        return EXIT_FAIL;
    }
    if (bl_backup_restore(file, a->data_dir, id, nm, peer, err) != 0) {
        fprintf(stderr, "ballastctl: snapshot restore %s: %s\n", file, err);
        return EXIT_FAIL;
    }
    if (a->fmt == FMT_JSON) {
        fputs("{\"data_dir\":", stdout);
        print_json_string(stdout, a->data_dir);
        printf(",\"id\":%" PRIu64 ",\"name\":", id);
        print_json_string(stdout, nm);
        fputs(",\"peer_url\":", stdout);
        print_json_string(stdout, peer);
        printf(",\"revision\":%" PRIu64 ",\"applied_index\":%" PRIu64 "}\n", info.revision,
               info.applied_index);
        return EXIT_OK;
    }
    printf("Restored %s (revision %" PRIu64 ") into %s as member %" PRIu64
           " of a new one-member cluster, Raft at %s.\n"
           "Start it with:\n"
           "  ballastd --id %" PRIu64 " --name %s --data-dir %s --listen-peer %s "
           "--listen-client HOST:PORT\n"
           "(--initial-cluster is not needed: the data dir holds the cluster's configuration.)\n"
           "Then start every other member with an empty data dir and --join <its client "
           "address>,\nand promote each with `ballastctl members promote ID` once it has joined "
           "(docs/backup.md).\n",
           file, info.revision, a->data_dir, id, peer, id, nm, a->data_dir, peer);
    return EXIT_OK;
}

/* --- base64 (keys and values in the API's JSON) ---------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Write @n bytes at @p as standard padded base64. */
static void b64_print(FILE *f, const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        v |= i + 1 < n ? (unsigned)s[i + 1] << 8 : 0;
        v |= i + 2 < n ? s[i + 2] : 0;
        fputc(B64[(v >> 18) & 63], f);
        fputc(B64[(v >> 12) & 63], f);
        fputc(i + 1 < n ? B64[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? B64[v & 63] : '=', f);
    }
}

/* Decode standard base64 @s (padding optional) into a new buffer of *@n
 * bytes (NUL-terminated, to free()). NULL when @s is not base64 or out of
 * memory (*@n is then (size_t)-1 for the former). */
static char *b64_decode(const char *s, size_t *n)
{
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == '=') {
        len--;
    }
    *n = (size_t)-1;
    if (len % 4 == 1 || strlen(s) - len > 2) {
        return NULL;
    }
    char *out = malloc(len / 4 * 3 + 3 + 1);
    if (!out) {
        *n = 0;
        return NULL;
    }
    size_t o = 0;
    unsigned v = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        const char *d = strchr(B64, s[i]);
        if (!d || !s[i]) {
            free(out);
            return NULL;
        }
        v = (v << 6) | (unsigned)(d - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((v >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *n = o;
    return out;
}

/* --- txn ------------------------------------------------------------------ */

/* The ops of the list that ran, as far as printing needs them. */
struct txn_ops {
    int keys_only[2][128 + 1]; /* per list: get with "keys" */
    size_t n[2];
};

/* Read all of @path ("-": stdin) into a NUL-terminated buffer to free(). */
static char *read_file(const char *path, size_t *len)
{
    if (strcmp(path, "-") == 0) {
        return read_stdin("txn", len);
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ballastctl: txn %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
        if (n + 1 == cap) {
            char *nb = cap < TXN_FILE_MAX ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "ballastctl: txn %s: %s\n", path,
                err ? "read error" : "too large or out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* A base64 field @name of @o into a new buffer (free()); @what names it
 * for messages. Absent and not @required: "" of length 0. */
static char *txn_bytes(const json_t *o, const char *name, int required, size_t *n, const char *what,
                       char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, name);
    *n = 0;
    if (!v && !required) {
        return strdup("");
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: \"%s\" must be a base64 string", what, name);
        return NULL;
    }
    char *d = b64_decode(json_string_value(v), n);
    if (!d) {
        snprintf(err, errlen, "%s: \"%s\" is not base64", what, name);
    }
    return d;
}

/* Check that object @o holds only the fields listed in @known. */
static int only_fields(const json_t *o, const char *const *known, const char *what, char *err,
                       size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], k) != 0) {
            i++;
        }
        if (!known[i]) {
            snprintf(err, errlen, "%s: unknown field \"%s\"", what, k);
            return -1;
        }
    }
    return 0;
}

/* A boolean field (absent: 0); -1 when it is not a boolean. */
static int txn_flag(const json_t *o, const char *name, int *out)
{
    const json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* An integer field (absent: 0); -1 when it is not a non-negative integer. */
static int txn_int(const json_t *o, const char *name, json_int_t *out)
{
    const json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* 0 for 0; else -1, with a message unless one was written already. */
static int lib_refusal(int rv, const char *what, char *err, size_t errlen)
{
    if (rv == 0) {
        return 0;
    }
    if (!err[0]) {
        snprintf(err, errlen, "%s: %s", what,
                 rv == BALLAST_ENOMEM ? "out of memory" : "empty key, or a key over 4096 bytes");
    }
    return -1;
}

static int txn_add_compare(struct ballast_txn *t, const json_t *o, const char *what, char *err,
                           size_t errlen)
{
    static const char *const known[] = {"key", "target", "op", "value", "number", NULL};
    static const char *const targets[] = {"value", "version", "create", "mod", "lease"};
    static const char *const ops[] = {"==", "!=", "<", ">"};
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: not an object", what);
        return -1;
    }
    if (only_fields(o, known, what, err, errlen) != 0) {
        return -1;
    }
    const char *target = json_string_value(json_object_get(o, "target"));
    const char *op = json_string_value(json_object_get(o, "op"));
    int ti = -1, oi = -1;
    for (int i = 0; target && i < 5; i++) {
        ti = strcmp(target, targets[i]) == 0 ? i : ti;
    }
    for (int i = 0; op && i < 4; i++) {
        oi = strcmp(op, ops[i]) == 0 ? i : oi;
    }
    if (ti < 0 || oi < 0) {
        snprintf(err, errlen,
                 "%s: want \"target\" value|version|create|mod|lease and \"op\" "
                 "==|!=|<|>",
                 what);
        return -1;
    }
    size_t kl, vl;
    char *key = txn_bytes(o, "key", 1, &kl, what, err, errlen);
    if (!key) {
        return -1;
    }
    int rv;
    if (ti == BALLAST_CMP_VALUE) {
        char *value = txn_bytes(o, "value", 1, &vl, what, err, errlen);
        rv = value ? ballast_txn_compare_value(t, key, kl, oi, value, vl) : -1;
        free(value);
    } else {
        const json_t *num = json_object_get(o, "number");
        if (!json_is_integer(num)) {
            snprintf(err, errlen, "%s: a %s compare wants an integer \"number\"", what, target);
            rv = -1;
        } else {
            rv = ballast_txn_compare(t, key, kl, ti, oi, json_integer_value(num));
        }
    }
    free(key);
    return lib_refusal(rv, what, err, errlen);
}

static int txn_add_op(struct ballast_txn *t, int branch, const json_t *o, const char *what,
                      int *keys_only, char *err, size_t errlen)
{
    static const char *const put_f[] = {"key", "value", "lease", NULL};
    static const char *const del_f[] = {"key", "prefix", NULL};
    static const char *const get_f[] = {"key", "prefix", "limit", "keys", NULL};
    const char *kind = NULL;
    json_t *body = NULL;
    *keys_only = 0;
    if (json_is_object(o) && json_object_size(o) == 1) {
        void *it = json_object_iter((json_t *)o);
        kind = json_object_iter_key(it);
        body = json_object_iter_value(it);
    }
    if (!kind || !json_is_object(body) ||
        (strcmp(kind, "put") != 0 && strcmp(kind, "delete") != 0 && strcmp(kind, "get") != 0)) {
        snprintf(err, errlen, "%s: want {\"put\": {...}}, {\"delete\": {...}} or {\"get\": {...}}",
                 what);
        return -1;
    }
    size_t kl, vl;
    int prefix = 0, keys = 0, rv = -1;
    json_int_t lease = 0, limit = 0;
    if (only_fields(body,
                    kind[0] == 'p'   ? put_f
                    : kind[0] == 'd' ? del_f
                                     : get_f,
                    what, err, errlen) != 0) {
        return -1;
    }
    if (txn_flag(body, "prefix", &prefix) != 0 || txn_flag(body, "keys", &keys) != 0 ||
        txn_int(body, "lease", &lease) != 0 || txn_int(body, "limit", &limit) != 0 ||
        limit > UINT_MAX) {
        snprintf(err, errlen, "%s: prefix and keys want true/false, lease and limit a number",
                 what);
        return -1;
    }
    char *key = txn_bytes(body, "key", !prefix, &kl, what, err, errlen);
    if (!key) {
        return -1;
    }
    if (kind[0] == 'p') {
        char *value = txn_bytes(body, "value", 1, &vl, what, err, errlen);
        rv = value ? ballast_txn_put(t, branch, key, kl, value, vl, lease) : -1;
        free(value);
    } else if (kind[0] == 'd') {
        rv = ballast_txn_delete(t, branch, key, kl, prefix);
    } else {
        rv = ballast_txn_get(t, branch, key, kl, prefix, (unsigned)limit, keys);
        *keys_only = keys;
    }
    free(key);
    return lib_refusal(rv, what, err, errlen);
}

/* Build @t from the txn document @doc (the HTTP body's JSON shape). Returns
 * 0, or -1 with a reason in @err. */
static int txn_from_json(struct ballast_txn *t, const char *doc, size_t len, struct txn_ops *ops,
                         char *err, size_t errlen)
{
    static const char *const known[] = {"compare", "success", "failure", NULL};
    static const char *const lists[] = {"compare", "success", "failure"};
    json_error_t je;
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    int rv = 0;
    if (!root) {
        snprintf(err, errlen, "line %d: %s", je.line, je.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the document is not an object");
        rv = -1;
    } else {
        rv = only_fields(root, known, "the document", err, errlen);
    }
    for (int l = 0; rv == 0 && l < 3; l++) {
        const json_t *a = json_object_get(root, lists[l]);
        if (!a) {
            continue;
        }
        if (!json_is_array(a) || json_array_size(a) > 128) {
            snprintf(err, errlen, "\"%s\" must be an array of at most 128 items", lists[l]);
            rv = -1;
            break;
        }
        for (size_t i = 0; rv == 0 && i < json_array_size(a); i++) {
            char what[32];
            snprintf(what, sizeof what, "%s[%zu]", lists[l], i);
            if (l == 0) {
                rv = txn_add_compare(t, json_array_get(a, i), what, err, errlen);
            } else {
                int *ko = &ops->keys_only[l - 1][ops->n[l - 1]++];
                rv = txn_add_op(t, l - 1, json_array_get(a, i), what, ko, err, errlen);
            }
        }
    }
    json_decref(root);
    return rv;
}

static int cmd_txn(struct ballast_client *c, const struct args *a)
{
    const char *file = a->pos[1];
    size_t len = 0;
    char *doc = read_file(file, &len);
    char err[256] = "";
    struct txn_ops ops;
    struct ballast_txn_result r;
    if (!doc) {
        return EXIT_FAIL;
    }
    memset(&ops, 0, sizeof ops);
    struct ballast_txn *t = ballast_txn_new();
    if (!t) {
        free(doc);
        fputs("ballastctl: txn: out of memory\n", stderr);
        return EXIT_FAIL;
    }
    int rv = EXIT_OK;
    if (txn_from_json(t, doc, len, &ops, err, sizeof err) != 0) {
        rv = usage_error("txn %s: %s", file, err);
    } else if (a->fmt == FMT_JSON) {
        /* the document as written: the server's own JSON answer is printed */
        rv = raw_json(c, "txn", file, strlen(file), "POST", "/v1/txn", doc, len);
    } else if (ballast_txn(c, t, &r) != 0) {
        rv = fail(c, "txn", file, strlen(file));
    } else {
        struct args get_args = *a;
        struct table unused = {0}; /* text output: no table */
        int list = r.succeeded ? 0 : 1;
        printf("succeeded: %s\nrevision: %lld\n", r.succeeded ? "true" : "false",
               (long long)r.revision);
        for (size_t i = 0; i < r.n_results; i++) {
            const struct ballast_txn_op_result *res = &r.results[i];
            if (res->type == BALLAST_OP_PUT) {
                puts("put: OK");
            } else if (res->type == BALLAST_OP_DELETE) {
                printf("delete: %lld deleted\n", (long long)res->deleted);
            } else {
                printf("get: %zu of %lld keys%s\n", res->n, (long long)res->count,
                       res->more ? ", more" : "");
                get_args.fmt = FMT_TEXT;
                get_args.keys_only = i < ops.n[list] && ops.keys_only[list][i];
                print_kvs(res->kvs, res->n, &get_args, &unused);
            }
        }
        ballast_txn_result_free(&r);
    }
    ballast_txn_free(t);
    free(doc);
    return rv;
}

/* --- lease ------------------------------------------------------------------ */

/* Parse a lease id argument; usage message on error. */
static int lease_id_arg(const char *s, int64_t *id)
{
    if (parse_i64(s, id) != 0 || *id == 0) {
        return usage_error("bad lease id \"%s\" (want a number >= 1)", s);
    }
    return 0;
}

/* "/v1/lease/ID" followed by @suffix. */
static void lease_target(char *t, size_t n, int64_t id, const char *suffix)
{
    snprintf(t, n, "/v1/lease/%lld%s", (long long)id, suffix);
}

static int cmd_lease_grant(struct ballast_client *c, const struct args *a)
{
    unsigned ms;
    if (parse_duration(a->pos[2], &ms) != 0) {
        return usage_error("bad TTL \"%s\" (seconds, or e.g. 30s, 5m)", a->pos[2]);
    }
    int64_t ttl = (ms + 999) / 1000;
    if (a->fmt == FMT_JSON) {
        char body[96];
        if (a->id) {
            snprintf(body, sizeof body, "{\"ttl\":%lld,\"id\":%llu}", (long long)ttl,
                     (unsigned long long)a->id);
        } else {
            snprintf(body, sizeof body, "{\"ttl\":%lld}", (long long)ttl);
        }
        return raw_json(c, "lease grant", a->pos[2], strlen(a->pos[2]), "POST", "/v1/lease", body,
                        strlen(body));
    }
    struct ballast_lease l;
    if (ballast_lease_grant(c, ttl, (int64_t)a->id, &l) != 0) {
        return fail(c, "lease grant", a->pos[2], strlen(a->pos[2]));
    }
    printf("lease %lld granted with TTL %llds\n", (long long)l.id, (long long)l.ttl);
    return EXIT_OK;
}

static int cmd_lease_keepalive(struct ballast_client *c, const struct args *a)
{
    int64_t id;
    if (lease_id_arg(a->pos[2], &id) != 0) {
        return EXIT_USAGE;
    }
    for (;;) {
        int64_t ttl = 0;
        if (ballast_lease_keepalive(c, id, &ttl) != 0) {
            return fail(c, "lease keepalive", a->pos[2], strlen(a->pos[2]));
        }
        if (a->fmt == FMT_JSON) {
            printf("{\"id\":%lld,\"ttl\":%lld}\n", (long long)id, (long long)ttl);
        } else {
            printf("lease %lld keepalived with TTL %llds\n", (long long)id, (long long)ttl);
        }
        if (fflush(stdout) != 0 || a->once) {
            return EXIT_OK;
        }
        /* a third of the TTL, as etcd's client does */
        int64_t pause = ttl > 0 ? ttl * 1000 / 3 : 500;
        struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

static int cmd_lease_revoke(struct ballast_client *c, const struct args *a)
{
    int64_t id, rev = 0, deleted = 0;
    if (lease_id_arg(a->pos[2], &id) != 0) {
        return EXIT_USAGE;
    }
    if (a->fmt == FMT_JSON) {
        char t[64];
        lease_target(t, sizeof t, id, "");
        return raw_json(c, "lease revoke", a->pos[2], strlen(a->pos[2]), "DELETE", t, NULL, 0);
    }
    if (ballast_lease_revoke(c, id, &rev, &deleted) != 0) {
        return fail(c, "lease revoke", a->pos[2], strlen(a->pos[2]));
    }
    if (rev > 0) {
        printf("lease %lld revoked: %lld keys deleted at revision %lld\n", (long long)id,
               (long long)deleted, (long long)rev);
    } else {
        printf("lease %lld revoked\n", (long long)id);
    }
    return EXIT_OK;
}

static int cmd_lease_get(struct ballast_client *c, const struct args *a)
{
    int64_t id;
    struct ballast_lease_info info;
    if (lease_id_arg(a->pos[2], &id) != 0) {
        return EXIT_USAGE;
    }
    if (a->fmt == FMT_JSON) {
        char t[64];
        lease_target(t, sizeof t, id, "");
        return raw_json(c, "lease get", a->pos[2], strlen(a->pos[2]), "GET", t, NULL, 0);
    }
    if (ballast_lease_get(c, id, &info) != 0) {
        return fail(c, "lease get", a->pos[2], strlen(a->pos[2]));
    }
    printf("lease %lld granted with TTL %llds, remaining %llds, %zu%s attached keys\n",
           (long long)info.id, (long long)info.granted_ttl, (long long)info.ttl, info.n_keys,
           info.more ? "+" : "");
    for (size_t i = 0; a->keys && i < info.n_keys; i++) {
        fwrite(info.keys[i].key, 1, info.keys[i].key_len, stdout);
        fputc('\n', stdout);
    }
    ballast_lease_info_free(&info);
    return EXIT_OK;
}

static int cmd_lease_list(struct ballast_client *c, const struct args *a)
{
    if (a->fmt == FMT_JSON) {
        return raw_json(c, "lease list", NULL, 0, "GET", "/v1/leases", NULL, 0);
    }
    struct ballast_lease *ls;
    size_t n;
    if (ballast_lease_list(c, &ls, &n) != 0) {
        return fail(c, "lease list", NULL, 0);
    }
    printf("found %zu leases\n", n);
    for (size_t i = 0; i < n; i++) {
        printf("%lld (TTL %llds)\n", (long long)ls[i].id, (long long)ls[i].granted_ttl);
    }
    ballast_free(ls);
    return EXIT_OK;
}

/* --- watch ------------------------------------------------------------------ */

/* Print @ev as the API's NDJSON event. */
static void print_event_json(const struct ballast_event *ev)
{
    static const char *const types[] = {"", "put", "delete", "progress", "cancelled"};
    printf("{\"type\":\"%s\"", types[ev->type]);
    if (ev->type == BALLAST_EVENT_PUT || ev->type == BALLAST_EVENT_DELETE) {
        const struct ballast_kv *kv = &ev->kv;
        fputs(",\"kv\":{\"key\":\"", stdout);
        b64_print(stdout, kv->key, kv->key_len);
        fputc('"', stdout);
        if (ev->type == BALLAST_EVENT_PUT) {
            fputs(",\"value\":\"", stdout);
            b64_print(stdout, kv->value, kv->value_len);
            fputc('"', stdout);
        }
        printf(",\"create_revision\":%lld,\"mod_revision\":%lld,\"version\":%lld,\"lease\":%lld}",
               (long long)kv->create_revision, (long long)kv->mod_revision, (long long)kv->version,
               (long long)kv->lease);
    }
    if (ev->type == BALLAST_EVENT_CANCELLED) {
        fputs(",\"reason\":", stdout);
        print_json_string(stdout, ev->reason);
    }
    printf(",\"revision\":%lld}\n", (long long)ev->revision);
}

static int cmd_watch(struct ballast_client *c, const struct args *a)
{
    const char *key = a->npos > 1 ? a->pos[1] : "";
    size_t klen = strlen(key);
    struct ballast_watch_opts o = {0};
    struct ballast_watch *w = NULL;
    struct ballast_event ev;
    o.prefix = a->prefix;
    o.rev = a->rev;
    int rv = ballast_watch_open(c, key, klen, &o, &w);
    for (; rv == 0;) {
        rv = ballast_watch_next(w, -1, &ev);
        if (rv != 0) {
            break;
        }
        if (a->fmt == FMT_JSON) {
            print_event_json(&ev);
        } else if (ev.type == BALLAST_EVENT_PUT || ev.type == BALLAST_EVENT_DELETE) {
            puts(ev.type == BALLAST_EVENT_PUT ? "PUT" : "DELETE");
            fwrite(ev.kv.key, 1, ev.kv.key_len, stdout);
            fputc('\n', stdout);
            if (ev.type == BALLAST_EVENT_PUT) {
                fwrite(ev.kv.value, 1, ev.kv.value_len, stdout);
                fputc('\n', stdout);
            }
        }
        if (fflush(stdout) != 0) {
            ballast_watch_close(w);
            fprintf(stderr, "ballastctl: writing output: %s\n", strerror(errno));
            return EXIT_FAIL;
        }
        if (ev.type == BALLAST_EVENT_CANCELLED) {
            fprintf(stderr,
                    "ballastctl: watch %s: cancelled by the server (%s); resume with --rev "
                    "%lld\n",
                    key, ev.reason, (long long)ev.revision);
            ballast_watch_close(w);
            return EXIT_FAIL;
        }
    }
    if (rv == BALLAST_ECOMPACTED) {
        fprintf(stderr, "ballastctl: watch %s: %s (the oldest revision kept is %lld)\n", key,
                ballast_errmsg(c), (long long)ballast_compact_revision(c));
    } else {
        fail(c, "watch", key, klen);
    }
    ballast_watch_close(w);
    return EXIT_FAIL;
}

/* --- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct args a;
    if (parse_args(argc, argv, &a) != 0) {
        return EXIT_USAGE;
    }
    if (a.help || (a.npos > 0 && strcmp(a.pos[0], "help") == 0)) {
        fputs(HELP, stdout);
        return EXIT_OK;
    }
    if (a.npos == 0) {
        return usage_error("no command given");
    }
    const char *cmd = a.pos[0];
    int members = strcmp(cmd, "members") == 0 || strcmp(cmd, "member") == 0;
    if (a.bad_flag) {
        return usage_error("unknown flag %s (use -- before a key or value starting with '-')",
                           a.bad_flag);
    }
    int (*run)(struct ballast_client *, const struct args *) = NULL;
    int is_get = strcmp(cmd, "get") == 0;
    int is_del = strcmp(cmd, "del") == 0 || strcmp(cmd, "delete") == 0;
    if (strcmp(cmd, "put") == 0) {
        if (a.npos != 3) {
            return usage_error("put wants KEY VALUE");
        }
        run = cmd_put;
    } else if (is_get) {
        if (a.npos > 2 || (a.npos < 2 && !a.prefix)) {
            return usage_error("get wants KEY");
        }
        if ((a.limit_set || a.count_only) && !a.prefix) {
            return usage_error("--limit and --count-only need --prefix");
        }
        run = cmd_get;
    } else if (is_del) {
        if (a.npos > 2 || (a.npos < 2 && !a.prefix)) {
            return usage_error("del wants KEY");
        }
        run = cmd_del;
    } else if (strcmp(cmd, "status") == 0) {
        if (a.npos != 1) {
            return usage_error("status takes no arguments");
        }
        run = cmd_status;
    } else if (members) {
        const char *sub = a.npos > 1 ? a.pos[1] : "";
        uint64_t id;
        if (strcmp(sub, "list") == 0 && a.npos == 2) {
            run = cmd_members_list;
        } else if (strcmp(sub, "add") == 0 && a.npos == 5) {
            if (!a.pos[2][0] || !a.pos[3][0]) {
                return usage_error("members add wants a NAME and a PEER_URL");
            }
            run = cmd_members_add;
        } else if ((strcmp(sub, "remove") == 0 || strcmp(sub, "promote") == 0) && a.npos == 3) {
            if (parse_id(a.pos[2], &id) != 0) {
                return usage_error("bad member id \"%s\" (want a number >= 1)", a.pos[2]);
            }
            run = sub[0] == 'r' ? cmd_members_remove : cmd_members_promote;
        } else {
            return usage_error("members wants list | add NAME PEER_URL CLIENT_URL [--voter] "
                               "[--id N] | remove ID | promote ID");
        }
    } else if (strcmp(cmd, "snapshot") == 0) {
        const char *sub = a.npos > 1 ? a.pos[1] : "";
        if (strcmp(sub, "save") == 0 && a.npos == 3 && a.pos[2][0]) {
            run = cmd_snapshot_save;
        } else if (strcmp(sub, "restore") == 0 && a.npos == 3 && a.pos[2][0]) {
            if (!a.data_dir || !a.data_dir[0]) {
                return usage_error("snapshot restore wants --data-dir DIR");
            }
        } else {
            return usage_error("snapshot wants save FILE | restore FILE --data-dir DIR [--id N] "
                               "[--name NAME] [--peer-url HOST:PORT]");
        }
    } else if (strcmp(cmd, "leader") == 0) {
        uint64_t id;
        if (a.npos < 2 || a.npos > 3 || strcmp(a.pos[1], "transfer") != 0) {
            return usage_error("leader wants transfer [ID]");
        }
        if (a.npos == 3 && parse_id(a.pos[2], &id) != 0) {
            return usage_error("bad member id \"%s\" (want a number >= 1)", a.pos[2]);
        }
        run = cmd_leader_transfer;
    } else if (strcmp(cmd, "health") == 0) {
        if (a.npos != 1) {
            return usage_error("health takes no arguments");
        }
        run = cmd_health;
    } else if (strcmp(cmd, "txn") == 0) {
        if (a.npos != 2 || !a.pos[1][0]) {
            return usage_error("txn wants FILE (the txn document as JSON, - for stdin)");
        }
        run = cmd_txn;
    } else if (strcmp(cmd, "watch") == 0) {
        if (a.npos > 2 || (a.npos < 2 && !a.prefix)) {
            return usage_error("watch wants KEY [--prefix] [--rev R]");
        }
        run = cmd_watch;
    } else if (strcmp(cmd, "lease") == 0) {
        const char *sub = a.npos > 1 ? a.pos[1] : "";
        int64_t id;
        if (strcmp(sub, "grant") == 0 && a.npos == 3) {
            run = cmd_lease_grant;
        } else if (strcmp(sub, "list") == 0 && a.npos == 2) {
            run = cmd_lease_list;
        } else if ((strcmp(sub, "keepalive") == 0 || strcmp(sub, "revoke") == 0 ||
                    strcmp(sub, "get") == 0) &&
                   a.npos == 3) {
            if (lease_id_arg(a.pos[2], &id) != 0) {
                return EXIT_USAGE;
            }
            run = sub[0] == 'k'   ? cmd_lease_keepalive
                  : sub[0] == 'r' ? cmd_lease_revoke
                                  : cmd_lease_get;
        } else {
            return usage_error("lease wants grant TTL [--id N] | keepalive ID [--once] | "
                               "revoke ID | get ID [--keys] | list");
        }
    } else {
        return usage_error("unknown command \"%s\"", cmd);
    }
    int is_add = run == cmd_members_add;
    int is_restore = strcmp(cmd, "snapshot") == 0 && run == NULL;
    int is_watch = run == cmd_watch, is_put = run == cmd_put;
    if ((a.prefix && !is_get && !is_del && !is_watch) ||
        ((a.keys_only || a.serializable || a.limit_set || a.count_only || a.wait_set ||
          a.index_set) &&
         !is_get) ||
        (a.voter && !is_add) || (a.id && !is_add && !is_restore && run != cmd_lease_grant) ||
        ((a.data_dir || a.name || a.peer_url) && !is_restore) || (a.rev_set && !is_watch) ||
        ((a.lease || a.ttl_ms) && !is_put) || (a.once && run != cmd_lease_keepalive) ||
        (a.keys && run != cmd_lease_get)) {
        int sub = a.npos > 1 && (members || strcmp(cmd, "lease") == 0 ||
                                 strcmp(cmd, "snapshot") == 0 || strcmp(cmd, "leader") == 0);
        return usage_error("flag not valid for %s%s%s", cmd, sub ? " " : "", sub ? a.pos[1] : "");
    }
    if (a.lease && a.ttl_ms) {
        return usage_error("put takes --lease or --ttl, not both");
    }
    if (is_restore) {
        int rv = cmd_snapshot_restore(&a);
        if (fflush(stdout) != 0 && rv == EXIT_OK) {
            fprintf(stderr, "ballastctl: writing output: %s\n", strerror(errno));
            rv = EXIT_FAIL;
        }
        return rv;
    }
    if (a.npos > 1 && a.pos[1][0] == '\0' && !a.prefix) {
        return usage_error("empty key");
    }

    const char *endpoints = a.endpoints;
    if (!endpoints) {
        endpoints = getenv("BALLAST_ENDPOINTS");
    }
    if (!endpoints || !*endpoints) {
        endpoints = DEFAULT_ENDPOINTS;
    }
    struct ballast_options o = {0};
    o.request_timeout_ms = a.timeout_ms;
    if (run == cmd_members_promote || run == cmd_snapshot_save) {
        /* The answer comes once the learner caught up / the backup is
         * built: the library lets the attempt use the whole deadline. */
        if (!a.timeout_ms) {
            o.request_timeout_ms = run == cmd_snapshot_save ? SNAPSHOT_TIMEOUT : PROMOTE_TIMEOUT;
        }
    }
    if (run == cmd_get && a.fmt == FMT_JSON && (a.wait_set || a.index_set)) {
        /* a long-poll sent as is: give the attempt the wait (the library
         * adds it itself to its own long-poll calls) */
        unsigned wait = a.wait_set ? a.wait_ms : 300000;
        o.attempt_timeout_ms = 5000 + wait + wait / 16;
        o.request_timeout_ms = (a.timeout_ms ? a.timeout_ms : 10000) + wait + wait / 16;
    }
    if (run == cmd_status || run == cmd_health) {
        /* one member at a time, no failover: fail fast on a dead one */
        o.connect_timeout_ms = 1000;
        o.attempt_timeout_ms = 3000;
    }
    if (run == cmd_leader_transfer) {
        /* -o json sends it as a plain write: a repeat of "hand it to the
         * best" could move leadership twice, and a 504 (the target did not
         * take over) is the answer to show */
        o.no_retry_unsent_writes = 1;
    }
    char err[256];
    struct ballast_client *c = ballast_client_new(endpoints, &o, err, sizeof err);
    if (!c) {
        return usage_error("%s", err);
    }
    int rv = run(c, &a);
    ballast_client_free(c);
    if (fflush(stdout) != 0 && rv == EXIT_OK) {
        fprintf(stderr, "ballastctl: writing output: %s\n", strerror(errno));
        rv = EXIT_FAIL;
    }
    return rv;
}
