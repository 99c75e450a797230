/* The network fault injector: an nftables table per test process, `ss -K`.
 *
 * Happy path. netfault_new() sends nft one transaction that (re)creates
 * table inet ballast_nem_<pid> with three chains: "output" (hook output,
 * policy accept) jumps to "cuts" and then "loss". Loopback packets pass the
 * output hook once, so one drop there stops a packet for good. Every change
 * is one transaction on nft's stdin (`nft -f -`) that flushes the chain it
 * owns and adds the new rules, one per ordered pair of member addresses
 * ("ip saddr A ip daddr B counter drop"; loss rules add "numgen random mod
 * 100 < P"), so a shape is replaced atomically and never half applied. After
 * new cuts, `ss -K` aborts the TCP sockets between each cut pair, one run
 * per direction, so that both ends see the connection fail at once.
 *
 * Failure modes. nft and ss run through posix_spawn() (argv and stdin, no
 * shell; the process may have other threads, e.g. a delay proxy) with a
 * 20 s limit; a non-zero exit is -EIO with the tool's stderr in the
 * message. A rule change that fails leaves the previous rules in force (the
 * transaction is all or nothing); the injector's idea of the cuts is then
 * unchanged too. The table is removed by netfault_free(), by the atexit()
 * handler if the process exits with the injector still alive, and by the
 * harness's fixture teardown if the process died (it knows the name from
 * TC_NFT_TABLE_PREFIX and the pid).
 *
 * Ownership: the injector copies the addresses; the delay proxy stays the
 * caller's. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "netfault.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h" /* TC_NFT_TABLE_PREFIX */

extern char **environ;

/* A run of nft or ss is killed after this long. */
#define TOOL_TIMEOUT_MS 20000
/* Largest rule script (16 members: 240 pairs of ~90 bytes). */
#define SCRIPT_MAX (64 * 1024)

struct netfault {
    int n;
    char ips[NETFAULT_MAX_MEMBERS][INET_ADDRSTRLEN];
    char table[64];
    uint32_t from[NETFAULT_MAX_MEMBERS]; /* the cuts in force */
    int loss;                            /* percent in force */
    struct delayproxy *proxy;            /* not owned */
    char errmsg[NETFAULT_ERRMSG_SIZE];
};

static struct netfault *live; /* the process's injector, for the atexit handler */
static bool atexit_set;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int nf_fail(char *msg, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Format a reason into @msg (NETFAULT_ERRMSG_SIZE bytes) and return @rv. */
static int nf_fail(char *msg, int rv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, NETFAULT_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    return rv;
}

/* --- running tools ---------------------------------------------------------- */

/* The path of system tool @name, or NULL. */
static const char *tool_path(const char *name, char *buf, size_t cap)
{
    static const char *const DIRS[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    for (size_t d = 0; d < sizeof DIRS / sizeof DIRS[0]; d++) {
        snprintf(buf, cap, "%s/%s", DIRS[d], name);
        if (access(buf, X_OK) == 0) {
            return buf;
        }
    }
    return NULL;
}

/* Run tool @argv[0] (a bare name, found in the system directories) with
 * @argv, @input (may be NULL) on its stdin, its stdout into @out (may be
 * NULL; NUL-terminated, truncated to @out_cap - 1) and its stderr into
 * @err. 0 if it exited 0, else -EIO (or -ENOENT, -ETIMEDOUT, -errno) with
 * a message in @msg. */
static int run_tool(char *const argv[], const char *input, char *out, size_t out_cap, char *msg)
{
    char path[256], err[1024] = "";
    size_t out_len = 0, err_len = 0, in_len = input ? strlen(input) : 0, in_off = 0;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    int64_t deadline = now_ms() + TOOL_TIMEOUT_MS;
    pid_t pid;
    int rv, st = 0;
    char *const *real_argv;
    char *args[32];

    if (tool_path(argv[0], path, sizeof path) == NULL) {
        return nf_fail(msg, -ENOENT, "%s is not installed (scripts/deps.sh installs it)", argv[0]);
    }
    args[0] = path;
    for (int a = 1; a < 31 && (args[a] = argv[a]) != NULL; a++) {
    }
    args[31] = NULL;
    real_argv = args;
    if (pipe2(pin, O_CLOEXEC) != 0 || pipe2(pout, O_CLOEXEC) != 0 || pipe2(perr, O_CLOEXEC) != 0) {
        rv = nf_fail(msg, -errno, "pipe: %s", strerror(errno));
        goto err_after_pipes;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    rv = posix_spawn(&pid, path, &fa, NULL, real_argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rv != 0) {
        rv = nf_fail(msg, -rv, "cannot run %s: %s", path, strerror(rv));
        goto err_after_pipes;
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    pin[0] = pout[1] = perr[1] = -1;
    if (in_len == 0) {
        close(pin[1]);
        pin[1] = -1;
    } else {
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
    }
    /* Feed stdin and drain both outputs until both reach EOF. */
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[3];
        int k = 0, left = (int)(deadline - now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            rv = nf_fail(msg, -ETIMEDOUT, "%s did not finish within %d ms", argv[0],
                         TOOL_TIMEOUT_MS);
            goto err_after_pipes;
        }
        p[k++] = (struct pollfd){pout[0], POLLIN, 0};
        p[k++] = (struct pollfd){perr[0], POLLIN, 0};
        p[k++] = (struct pollfd){pin[1], POLLOUT, 0};
        if (poll(p, 3, left) < 0 && errno != EINTR) {
            break;
        }
        if (pin[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(pin[1], input + in_off, in_len - in_off);
            if (w > 0) {
                in_off += (size_t)w;
            }
            if ((w < 0 && errno != EAGAIN) || in_off == in_len) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
        for (int s = 0; s < 2; s++) {
            int *fd = s == 0 ? &pout[0] : &perr[0];
            char tmp[4096];
            ssize_t r;
            if (*fd < 0 || !(p[s].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            r = read(*fd, tmp, sizeof tmp);
            if (r <= 0) {
                close(*fd);
                *fd = -1;
                continue;
            }
            if (s == 0 && out != NULL && out_len + 1 < out_cap) {
                size_t take = (size_t)r < out_cap - 1 - out_len ? (size_t)r : out_cap - 1 - out_len;
                memcpy(out + out_len, tmp, take);
                out_len += take;
            } else if (s == 1 && err_len + 1 < sizeof err) {
                size_t take =
                    (size_t)r < sizeof err - 1 - err_len ? (size_t)r : sizeof err - 1 - err_len;
                memcpy(err + err_len, tmp, take);
                err_len += take;
            }
        }
    }
    if (out != NULL && out_cap > 0) {
        out[out_len] = '\0';
    }
    err[err_len] = '\0';
    while (err_len > 0 && isspace((unsigned char)err[err_len - 1])) {
        err[--err_len] = '\0';
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    rv = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rv = nf_fail(msg, -EIO, "%s failed (%s %d): %s", argv[0], WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), err[0] ? err : "(no message)");
    }
err_after_pipes:
    for (int k = 0; k < 2; k++) {
        if (pin[k] >= 0) {
            close(pin[k]);
        }
        if (pout[k] >= 0) {
            close(pout[k]);
        }
        if (perr[k] >= 0) {
            close(perr[k]);
        }
    }
    return rv;
}

/* Run nft with @script on stdin (`nft -f -`). */
static int nft_script(const char *script, char *msg)
{
    char *argv[] = {"nft", "-f", "-", NULL};
    return run_tool(argv, script, NULL, 0, msg);
}

/* --- scripts ------------------------------------------------------------------ */

struct script {
    char buf[SCRIPT_MAX];
    size_t len;
    bool overflow;
};

static void add(struct script *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct script *s, const char *fmt, ...)
{
    va_list ap;
    int w;
    if (s->overflow) {
        return;
    }
    va_start(ap, fmt);
    w = vsnprintf(s->buf + s->len, sizeof s->buf - s->len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof s->buf - s->len) {
        s->overflow = true;
        return;
    }
    s->len += (size_t)w;
}

static int run_script(struct netfault *nf, struct script *s)
{
    if (s->overflow) {
        return nf_fail(nf->errmsg, -ENOMEM, "nft script longer than %d bytes", SCRIPT_MAX);
    }
    return nft_script(s->buf, nf->errmsg);
}

/* Abort the TCP sockets from @a to @b (addresses), as seen by ss. */
static int abort_connections(struct netfault *nf, const char *a, const char *b)
{
    char *argv[] = {"ss", "-K", "-4", "-t", "-n", "src", (char *)a, "dst", (char *)b, NULL};
    return run_tool(argv, NULL, NULL, 0, nf->errmsg);
}

/* --- the injector ----------------------------------------------------------------- */

static void delete_live_table(void)
{
    char msg[NETFAULT_ERRMSG_SIZE];
    char script[128];
    if (live == NULL) {
        return;
    }
    snprintf(script, sizeof script, "delete table inet %s\n", live->table);
    if (nft_script(script, msg) != 0) {
        fprintf(stderr, "netfault: cannot delete table inet %s: %s\n", live->table, msg);
    }
    live = NULL; /* its memory goes with the process */
}

int netfault_new(const char *const *ips, int n, struct delayproxy *proxy, struct netfault **out,
                 char errmsg[NETFAULT_ERRMSG_SIZE])
{
    struct netfault *nf;
    char script[512];
    int rv;

    if (n < 2 || n > NETFAULT_MAX_MEMBERS) {
        return nf_fail(errmsg, -EINVAL, "netfault: %d members (2..%d)", n, NETFAULT_MAX_MEMBERS);
    }
    nf = calloc(1, sizeof *nf);
    if (nf == NULL) {
        return nf_fail(errmsg, -ENOMEM, "netfault: out of memory");
    }
    nf->n = n;
    nf->proxy = proxy;
    for (int i = 0; i < n; i++) {
        struct in_addr a;
        if (ips[i] == NULL || inet_pton(AF_INET, ips[i], &a) != 1) {
            free(nf);
            return nf_fail(errmsg, -EINVAL, "netfault: member %d: '%s' is not an IPv4 address", i,
                           ips[i] ? ips[i] : "(null)");
        }
        inet_ntop(AF_INET, &a, nf->ips[i], sizeof nf->ips[i]);
        for (int j = 0; j < i; j++) {
            if (strcmp(nf->ips[i], nf->ips[j]) == 0) {
                int err = nf_fail(errmsg, -EINVAL,
                                  "netfault: members %d and %d share address %s (own_addresses?)",
                                  j, i, nf->ips[i]);
                free(nf);
                return err;
            }
        }
    }
    if (live != NULL) {
        free(nf);
        return nf_fail(errmsg, -EBUSY, "netfault: this process has an injector already (table %s)",
                       live->table);
    }
    snprintf(nf->table, sizeof nf->table, "%s%ld", TC_NFT_TABLE_PREFIX, (long)getpid());
    /* "add" then "delete" removes a leftover of this pid; then the table. */
    snprintf(script, sizeof script,
             "add table inet %s\n"
             "delete table inet %s\n"
             "table inet %s {\n"
             "  chain cuts {\n  }\n"
             "  chain loss {\n  }\n"
             "  chain output {\n"
             "    type filter hook output priority 0; policy accept;\n"
             "    jump cuts\n"
             "    jump loss\n"
             "  }\n"
             "}\n",
             nf->table, nf->table, nf->table);
    rv = nft_script(script, errmsg);
    if (rv != 0) {
        free(nf);
        return rv;
    }
    live = nf;
    if (!atexit_set) {
        atexit(delete_live_table);
        atexit_set = true;
    }
    *out = nf;
    return 0;
}

const char *netfault_errmsg(const struct netfault *nf)
{
    return nf->errmsg;
}

const char *netfault_table(const struct netfault *nf)
{
    return nf->table;
}

int netfault_apply(struct netfault *nf, const uint32_t *from)
{
    struct script *s;
    uint32_t all = (1u << nf->n) - 1;
    int rv;

    for (int i = 0; i < nf->n; i++) {
        if ((from[i] & ~all) != 0 || (from[i] & (1u << i)) != 0) {
            return nf_fail(nf->errmsg, -EINVAL, "netfault: cut mask 0x%x of member %d", from[i], i);
        }
    }
    s = malloc(sizeof *s);
    if (s == NULL) {
        return nf_fail(nf->errmsg, -ENOMEM, "netfault: out of memory");
    }
    s->len = 0;
    s->overflow = false;
    add(s, "flush chain inet %s cuts\n", nf->table);
    for (int i = 0; i < nf->n; i++) {
        for (int j = 0; j < nf->n; j++) {
            if (from[i] & (1u << j)) {
                add(s, "add rule inet %s cuts ip saddr %s ip daddr %s counter drop\n", nf->table,
                    nf->ips[i], nf->ips[j]);
            }
        }
    }
    rv = run_script(nf, s);
    free(s);
    if (rv != 0) {
        return rv;
    }
    memcpy(nf->from, from, sizeof nf->from[0] * (size_t)nf->n);
    for (int i = 0; i < nf->n; i++) {
        for (int j = i + 1; j < nf->n; j++) {
            if ((from[i] & (1u << j)) || (from[j] & (1u << i))) {
                rv = abort_connections(nf, nf->ips[i], nf->ips[j]);
                if (rv == 0) {
                    rv = abort_connections(nf, nf->ips[j], nf->ips[i]);
                }
                if (rv != 0) {
                    return rv;
                }
            }
        }
    }
    return 0;
}

/* Check member index @i. */
static int check_member(struct netfault *nf, int i)
{
    if (i < 0 || i >= nf->n) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: no member %d (of %d)", i, nf->n);
    }
    return 0;
}

int netfault_cut(struct netfault *nf, int i, int j)
{
    uint32_t from[NETFAULT_MAX_MEMBERS];
    if (check_member(nf, i) != 0 || check_member(nf, j) != 0 || i == j) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: cannot cut %d from %d", i, j);
    }
    memcpy(from, nf->from, sizeof from);
    from[i] |= 1u << j;
    from[j] |= 1u << i;
    return netfault_apply(nf, from);
}

/* The cuts between @a and @b (disjoint sets), both directions. */
static void cut_between(uint32_t *from, int n, uint32_t a, uint32_t b)
{
    for (int i = 0; i < n; i++) {
        if (a & (1u << i)) {
            from[i] |= b;
        }
        if (b & (1u << i)) {
            from[i] |= a;
        }
    }
}

int netfault_partition(struct netfault *nf, uint32_t side)
{
    uint32_t from[NETFAULT_MAX_MEMBERS] = {0};
    uint32_t all = (1u << nf->n) - 1;

    if ((side & all) == 0 || (side & all) == all || (side & ~all) != 0) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: partition side 0x%x of %d members", side,
                       nf->n);
    }
    cut_between(from, nf->n, side, all & ~side);
    return netfault_apply(nf, from);
}

int netfault_isolate(struct netfault *nf, int i)
{
    if (check_member(nf, i) != 0) {
        return -EINVAL;
    }
    return netfault_partition(nf, 1u << i);
}

int netfault_majority_minority(struct netfault *nf, uint32_t minority)
{
    int count = __builtin_popcount(minority);
    if (count < 1 || 2 * count >= nf->n || (minority >> nf->n) != 0) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: 0x%x is no minority of %d members", minority,
                       nf->n);
    }
    return netfault_partition(nf, minority);
}

int netfault_bridge(struct netfault *nf, int bridge, uint32_t half)
{
    uint32_t from[NETFAULT_MAX_MEMBERS] = {0};
    uint32_t all = (1u << nf->n) - 1, a, b;

    if (check_member(nf, bridge) != 0) {
        return -EINVAL;
    }
    a = half & all & ~(1u << bridge);
    b = all & ~half & ~(1u << bridge);
    if (a == 0 || b == 0 || (half & ~all) != 0) {
        return nf_fail(nf->errmsg, -EINVAL,
                       "netfault: bridge %d with half 0x%x leaves a side empty", bridge, half);
    }
    cut_between(from, nf->n, a, b);
    return netfault_apply(nf, from);
}

int netfault_loss(struct netfault *nf, int percent)
{
    struct script *s;
    int rv;

    if (percent < 0 || percent > 100) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: loss of %d%%", percent);
    }
    s = malloc(sizeof *s);
    if (s == NULL) {
        return nf_fail(nf->errmsg, -ENOMEM, "netfault: out of memory");
    }
    s->len = 0;
    s->overflow = false;
    add(s, "flush chain inet %s loss\n", nf->table);
    for (int i = 0; i < nf->n && percent > 0; i++) {
        for (int j = 0; j < nf->n; j++) {
            if (i != j) {
                add(s,
                    "add rule inet %s loss ip saddr %s ip daddr %s numgen random mod 100 < %d "
                    "counter drop\n",
                    nf->table, nf->ips[i], nf->ips[j], percent);
            }
        }
    }
    rv = run_script(nf, s);
    free(s);
    if (rv == 0) {
        nf->loss = percent;
    }
    return rv;
}

int netfault_delay(struct netfault *nf, int ms, int jitter_ms)
{
    if (nf->proxy == NULL) {
        if (ms == 0 && jitter_ms == 0) {
            return 0;
        }
        return nf_fail(nf->errmsg, -ENOTSUP,
                       "netfault: delay needs a delay proxy (tc_cluster_opts.peer_proxy)");
    }
    if (ms < 0 || jitter_ms < 0) {
        return nf_fail(nf->errmsg, -EINVAL, "netfault: delay %d ms, jitter %d ms", ms, jitter_ms);
    }
    delayproxy_set_delay(nf->proxy, ms, jitter_ms);
    return 0;
}

int netfault_heal(struct netfault *nf)
{
    char script[256];
    int rv;

    snprintf(script, sizeof script, "flush chain inet %s cuts\nflush chain inet %s loss\n",
             nf->table, nf->table);
    rv = nft_script(script, nf->errmsg);
    if (rv != 0) {
        return rv;
    }
    memset(nf->from, 0, sizeof nf->from);
    nf->loss = 0;
    return netfault_delay(nf, 0, 0);
}

/* Sum the "counter packets N" of chain @chain. */
static int chain_dropped(struct netfault *nf, const char *chain, uint64_t *sum)
{
    char *argv[] = {"nft", "list", "chain", "inet", nf->table, (char *)chain, NULL};
    char *out = malloc(SCRIPT_MAX * 2);
    int rv;

    if (out == NULL) {
        return nf_fail(nf->errmsg, -ENOMEM, "netfault: out of memory");
    }
    rv = run_tool(argv, NULL, out, SCRIPT_MAX * 2, nf->errmsg);
    *sum = 0;
    for (const char *p = out; rv == 0 && (p = strstr(p, "counter packets ")) != NULL;) {
        p += strlen("counter packets ");
        *sum += strtoull(p, NULL, 10);
    }
    free(out);
    return rv;
}

int netfault_dropped(struct netfault *nf, uint64_t *cut, uint64_t *loss)
{
    uint64_t dummy;
    int rv = chain_dropped(nf, "cuts", cut != NULL ? cut : &dummy);
    if (rv == 0) {
        rv = chain_dropped(nf, "loss", loss != NULL ? loss : &dummy);
    }
    return rv;
}

int netfault_free(struct netfault *nf)
{
    char script[128];
    int rv;

    if (nf == NULL) {
        return 0;
    }
    snprintf(script, sizeof script, "delete table inet %s\n", nf->table);
    rv = nft_script(script, nf->errmsg);
    if (rv != 0) {
        fprintf(stderr, "netfault: cannot delete table inet %s: %s\n", nf->table, nf->errmsg);
    }
    if (live == nf) {
        live = NULL;
    }
    free(nf);
    return rv;
}

int netfault_list_tables(char *out, size_t cap)
{
    char msg[NETFAULT_ERRMSG_SIZE];
    char *argv[] = {"nft", "list", "tables", NULL};
    int rv = run_tool(argv, NULL, out, cap, msg);
    if (rv != 0 && cap > 0) {
        snprintf(out, cap, "%s", msg);
    }
    return rv;
}

bool netfault_has_table_of(const char *tables, long pid)
{
    char name[64];
    size_t len;

    len = (size_t)snprintf(name, sizeof name, "%s%ld", TC_NFT_TABLE_PREFIX, pid);
    for (const char *p = tables; (p = strstr(p, name)) != NULL; p += len) {
        char next = p[len];
        if ((p == tables || isspace((unsigned char)p[-1])) &&
            (next == '\0' || isspace((unsigned char)next))) {
            return true;
        }
    }
    return false;
}
