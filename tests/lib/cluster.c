/* The cluster harness: processes, HTTP, JSON and the CLI for black-box tests.
 *
 * Happy path. tc_cluster_start() picks 2n free ports, makes a temporary
 * directory with an empty data dir per member and forks one ballastd per
 * member, its output appended to DIR/member-N.log. The test talks to the
 * members over HTTP (tc_http(): one connection per request, a deadline on
 * every call), reads answers with the tc_json_* functions, waits for states
 * with the tc_wait_* helpers (polling, each with a hard deadline) and ends
 * with tc_cluster_stop(), which terminates the members and removes the
 * directory.
 *
 * Failure modes. Nothing here blocks without a deadline: connect, send and
 * receive go through poll(); process waits poll waitpid(WNOHANG); a
 * ballastctl run is killed after 20 s. When a deadline passes the test fails
 * through ck_abort_msg() with what was last seen. A member that exits on its
 * own is noticed by every wait helper (tc_check_running()). Members carry
 * PR_SET_PDEATHSIG = SIGKILL, so a test process that dies (an assertion in
 * fork mode exits at once, a Check timeout kills it) takes its members with
 * it; the unchecked fixture teardown, which runs in the Check runner, then
 * finds the cluster directory that tc_cluster_stop() did not remove and
 * prints the tail of each member's log. With CK_FORK=no the teardown also
 * kills members the failed test left running. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "cluster.h"

#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Responses larger than this are refused (a runaway server). */
#define MAX_RESPONSE_BYTES (64u * 1024 * 1024)
/* A response header block larger than this is refused. */
#define MAX_HEAD_BYTES (64u * 1024)
/* Captured ballastctl output per stream. */
#define MAX_CTL_OUTPUT (4u * 1024 * 1024)
/* Clusters started and not yet stopped in this process. */
#define MAX_LIVE_CLUSTERS 16
/* Name of the marker tc_cluster_stop() leaves in a directory it keeps. */
#define STOPPED_MARKER "STOPPED"
/* Prefix of the marker "nft-<pid>" that an own-address cluster leaves in the
 * fixture directory: the teardown deletes that pid's nftables table. */
#define NFT_MARKER "nft-"

static char fixture_dir[TC_PATH_MAX];
static struct tc_cluster *live_clusters[MAX_LIVE_CLUSTERS];
/* Cluster directories a failed test left behind, whose member logs
 * tc_main() prints after check's summary, so that the failure's reason
 * comes first in a log that a reader (or CI) shows only the head of. */
#define MAX_FAILED_DIRS 8
static char failed_dirs[MAX_FAILED_DIRS][TC_PATH_MAX + 300];
static int n_failed_dirs;
static int own_clusters; /* own-address clusters started by this process */

/* --- Utilities ------------------------------------------------------------- */

int64_t tc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t tc_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A growable byte buffer, always NUL-terminated once it holds anything. */
struct dbuf {
    char *p;
    size_t len, cap;
};

static int dbuf_add(struct dbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (p == NULL) {
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Take the buffer's memory (an empty string when nothing was added). */
static char *dbuf_take(struct dbuf *b, size_t *len)
{
    char *p;
    if (b->p == NULL && dbuf_add(b, "", 0) != 0) {
        ck_abort_msg("tc: out of memory");
    }
    p = b->p;
    if (len != NULL) {
        *len = b->len;
    }
    memset(b, 0, sizeof *b);
    return p;
}

static int fail_msg(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Format a reason into @err and return -1. */
static int fail_msg(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -1;
}

static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append to the string in @buf, silently truncating when it is full. */
static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (*used + 1 >= cap) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *used += (size_t)n;
    }
    if (*used >= cap) {
        *used = cap - 1;
    }
}

/* Describe a waitpid() status: "exit 2", "signal 9 (Killed)". */
static const char *describe_status(int st, char *out, size_t len)
{
    if (st < 0) {
        snprintf(out, len, "unknown");
    } else if (WIFEXITED(st)) {
        snprintf(out, len, "exit %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        snprintf(out, len, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    } else {
        snprintf(out, len, "status 0x%x", (unsigned)st);
    }
    return out;
}

/* Wait up to @timeout_ms for @pid to exit. 0 and its status, or -1. */
static int reap(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            *status = -1; /* not our child any more: nothing to wait for */
            return 0;
        }
        if (tc_now_ms() >= deadline) {
            return -1;
        }
        tc_sleep_ms(5);
    }
}

static const char *tmp_base(void)
{
    const char *t = getenv("TMPDIR");
    return (t != NULL && t[0] != '\0') ? t : "/tmp";
}

static void make_temp_dir(char *out, size_t cap, const char *parent, const char *prefix)
{
    int n = snprintf(out, cap, "%s/%sXXXXXX", parent, prefix);
    ck_assert_msg(n > 0 && (size_t)n < cap, "tc: temporary path too long under %s", parent);
    ck_assert_msg(mkdtemp(out) != NULL, "tc: mkdtemp(%s): %s", out, strerror(errno));
}

static int remove_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "tc: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static bool keep_files(void)
{
    const char *k = getenv("TC_KEEP");
    return k != NULL && k[0] != '\0';
}

/* --- Processes --------------------------------------------------------------- */

/* Fork and exec @argv with stdin from /dev/null, stdout and stderr on the
 * given descriptors, every other descriptor closed, BALLAST_* variables
 * removed, default signal dispositions, and SIGKILL when the parent dies. */
static void free_strv(char **v);

static pid_t spawn(char *const argv[], char *const *extra_env, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    sigset_t all, old;
    pid_t pid;

    /* Signals stay blocked from fork until the child has reset its
     * handlers: a SIGTERM sent to a child that has not exec'd yet (a member
     * restarted and stopped at once) must kill it, not run a handler it
     * inherited from the test process (Check's kills the process group). */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid != 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return pid;
    }
    /* Child: only async-signal-safe work and plain memory from here on
     * (malloc is safe too: glibc's fork() leaves it usable in the child even
     * when the test runs threads of its own, e.g. a delay proxy). */
    {
        sigset_t none;
        size_t n = 0, k = 0;
        char **env;
        int in, fd_max;

        for (int sig = 1; sig < NSIG; sig++) {
            signal(sig, SIG_DFL); /* fails harmlessly for SIGKILL, SIGSTOP */
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127); /* the parent died before prctl() took effect */
        }
        in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
            _exit(127);
        }
        fd_max = (int)sysconf(_SC_OPEN_MAX);
        if (fd_max < 0 || fd_max > 65536) {
            fd_max = 65536;
        }
        for (int fd = 3; fd < fd_max; fd++) {
            close(fd);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);

        while (environ[n] != NULL) {
            n++;
        }
        env = calloc(n + 6, sizeof *env);
        if (env == NULL) {
            _exit(127);
        }
        for (size_t i = 0; i < n; i++) {
            if (strncmp(environ[i], "BALLAST_", 8) != 0) {
                env[k++] = environ[i];
            }
        }
        for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && i < 5; i++) {
            env[k++] = extra_env[i];
        }
        env[k] = NULL;
        execve(argv[0], argv, env);
        dprintf(2, "tc: cannot execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
}

static const char *binary(const char *var)
{
    const char *path = getenv(var);
    ck_assert_msg(path != NULL && path[0] != '\0',
                  "tc: $%s is not set (make check sets it to the built binary)", var);
    ck_assert_msg(access(path, X_OK) == 0, "tc: $%s=%s is not executable: %s", var, path,
                  strerror(errno));
    return path;
}

/* tc_free_ports() on IPv4 address @ip (network order). */
static void free_ports_on(uint32_t ip, uint16_t *ports, int n)
{
    int fds[64];

    ck_assert_msg(n > 0 && n <= 64, "tc: tc_free_ports: bad count %d", n);
    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;

        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = ip;
        sa.sin_port = 0;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_msg(fds[i] >= 0, "tc: socket: %s", strerror(errno));
        ck_assert_msg(bind(fds[i], (struct sockaddr *)&sa, sizeof sa) == 0, "tc: bind: %s",
                      strerror(errno));
        ck_assert_msg(getsockname(fds[i], (struct sockaddr *)&sa, &len) == 0, "tc: getsockname: %s",
                      strerror(errno));
        ports[i] = ntohs(sa.sin_port);
    }
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
}

void tc_free_ports(uint16_t *ports, int n)
{
    free_ports_on(htonl(INADDR_LOOPBACK), ports, n);
}

/* Member @i's address into m->ip: 127.0.0.1, or with own_addresses
 * 127.A.B.(ip_base + i), A.B from the pid (A is never 0, so 127.0.0.x is
 * never used). */
static void member_ip(struct tc_cluster *c, int i)
{
    struct tc_member *m = &c->members[i];
    if (!c->own_addresses) {
        snprintf(m->ip, sizeof m->ip, "127.0.0.1");
        return;
    }
    unsigned pid = (unsigned)getpid();
    snprintf(m->ip, sizeof m->ip, "127.%u.%u.%d", 1 + (pid >> 8) % 254, pid & 0xffu,
             c->ip_base + i);
}

/* Fill member @i's ip, client_addr, peer_addr and (with @proxy) proxy_addr
 * with free ports on its address. */
static void member_addresses(struct tc_cluster *c, int i, bool proxy)
{
    struct tc_member *m = &c->members[i];
    struct in_addr ip;
    uint16_t ports[3];
    char host[sizeof m->ip];

    member_ip(c, i);
    memcpy(host, m->ip, sizeof host);
    ck_assert_msg(inet_pton(AF_INET, host, &ip) == 1, "tc: bad address %s", host);
    free_ports_on(ip.s_addr, ports, proxy ? 3 : 2);
    snprintf(m->client_addr, sizeof m->client_addr, "%s:%u", host, (unsigned)ports[0]);
    snprintf(m->peer_addr, sizeof m->peer_addr, "%s:%u", host, (unsigned)ports[1]);
    m->proxy_addr[0] = '\0';
    if (proxy) {
        snprintf(m->proxy_addr, sizeof m->proxy_addr, "%s:%u", host, (unsigned)ports[2]);
    }
}

static void member_start(struct tc_cluster *c, int i)
{
    struct tc_member *m = &c->members[i];
    char id[24], stamp[64];
    char *argv[16 + 3 * TC_MAX_EXTRA];
    time_t now = time(NULL);
    struct tm tm;
    int k = 0, fd;

    snprintf(id, sizeof id, "%llu", (unsigned long long)m->id);
    argv[k++] = (char *)binary("BALLASTD");
    argv[k++] = "--id";
    argv[k++] = id;
    argv[k++] = "--name";
    argv[k++] = m->name;
    argv[k++] = "--data-dir";
    argv[k++] = m->data_dir;
    argv[k++] = "--listen-client";
    argv[k++] = m->client_addr;
    argv[k++] = "--listen-peer";
    argv[k++] = m->peer_addr;
    if (m->custom) {
        k = 0;
        argv[k++] = (char *)binary("BALLASTD");
        argv[k++] = "--data-dir";
        argv[k++] = m->data_dir;
        argv[k++] = "--listen-client";
        argv[k++] = m->client_addr;
        argv[k++] = "--listen-peer";
        argv[k++] = m->peer_addr;
        for (int e = 0; m->args[e] != NULL; e++) {
            argv[k++] = m->args[e];
        }
    } else {
        argv[k++] = "--initial-cluster";
        argv[k++] = c->initial_cluster;
        if (m->proxy_addr[0] != '\0') {
            argv[k++] = "--advertise-peer";
            argv[k++] = m->proxy_addr;
        }
    }
    for (int e = 0; c->extra[e] != NULL; e++) {
        argv[k++] = (char *)c->extra[e];
    }
    argv[k] = NULL;

    fd = open(m->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "tc: open %s: %s", m->log_path, strerror(errno));
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    dprintf(fd, "---- tc: start #%d of %s at %s:", m->starts + 1, m->name, stamp);
    for (int a = 0; argv[a] != NULL; a++) {
        dprintf(fd, " %s", argv[a]);
    }
    dprintf(fd, " ----\n");

    m->pid = spawn(argv, m->env, fd, fd);
    close(fd);
    ck_assert_msg(m->pid > 0, "tc: fork for %s: %s", m->name, strerror(errno));
    m->starts++;
    m->died = false;
}

static void registry_add(struct tc_cluster *c)
{
    for (int k = 0; k < MAX_LIVE_CLUSTERS; k++) {
        if (live_clusters[k] == NULL) {
            live_clusters[k] = c;
            return;
        }
    }
}

static void registry_remove(const struct tc_cluster *c)
{
    for (int k = 0; k < MAX_LIVE_CLUSTERS; k++) {
        if (live_clusters[k] == c) {
            live_clusters[k] = NULL;
        }
    }
}

struct tc_cluster *tc_cluster_start(int n)
{
    return tc_cluster_start_args(n, NULL);
}

struct tc_cluster *tc_cluster_start_args(int n, const char *const *extra)
{
    struct tc_cluster_opts o = {.n = n, .extra = extra};
    return tc_cluster_start_opts(&o);
}

/* Leave the marker that makes the fixture teardown delete this process's
 * nftables table (the test process may die before it can). */
static void note_nft_table(void)
{
    char path[TC_PATH_MAX + 64];
    int fd;
    if (fixture_dir[0] == '\0') {
        return;
    }
    snprintf(path, sizeof path, "%s/%s%d", fixture_dir, NFT_MARKER, (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ck_assert_msg(fd >= 0, "tc: create %s: %s", path, strerror(errno));
    close(fd);
}

struct tc_cluster *tc_cluster_start_opts(const struct tc_cluster_opts *opts)
{
    struct tc_cluster *c;
    const char *const *extra = opts->extra;
    int n = opts->n;
    bool own = opts->own_addresses || opts->peer_proxy;
    size_t used = 0;

    ck_assert_msg(n >= 1 && n <= TC_MAX_MEMBERS, "tc: bad cluster size %d", n);
    binary("BALLASTD");
    c = calloc(1, sizeof *c);
    ck_assert_msg(c != NULL, "tc: out of memory");
    c->n = n;
    if (own) {
        /* Last octets 10..249: 30 clusters of up to 8 members, then reuse. */
        c->own_addresses = true;
        c->ip_base = 10 + 8 * (own_clusters++ % 30);
        note_nft_table();
    }
    for (int e = 0; extra != NULL && extra[e] != NULL; e++) {
        ck_assert_msg(e < TC_MAX_EXTRA, "tc: more than %d extra flags", TC_MAX_EXTRA);
        c->extra[e] = extra[e];
    }
    if (fixture_dir[0] != '\0') {
        make_temp_dir(c->dir, sizeof c->dir, fixture_dir, "cluster-");
    } else {
        make_temp_dir(c->dir, sizeof c->dir, tmp_base(), "ballast-tc-");
    }
    for (int i = 0; i < n; i++) {
        struct tc_member *m = &c->members[i];
        char dir[TC_PATH_MAX];
        snprintf(dir, sizeof dir, "%s", c->dir);
        m->id = (uint64_t)i + 1;
        m->last_status = -1;
        snprintf(m->name, sizeof m->name, "member-%d", i + 1);
        member_addresses(c, i, opts->peer_proxy);
        ck_assert_msg((size_t)snprintf(m->data_dir, sizeof m->data_dir, "%s/member-%d", dir,
                                       i + 1) < sizeof m->data_dir,
                      "tc: path too long");
        ck_assert_msg((size_t)snprintf(m->log_path, sizeof m->log_path, "%s/member-%d.log", dir,
                                       i + 1) < sizeof m->log_path,
                      "tc: path too long");
        ck_assert_msg(mkdir(m->data_dir, 0755) == 0, "tc: mkdir %s: %s", m->data_dir,
                      strerror(errno));
        used += (size_t)snprintf(c->initial_cluster + used, sizeof c->initial_cluster - used,
                                 "%s%llu=%s", i ? "," : "", (unsigned long long)m->id,
                                 m->proxy_addr[0] != '\0' ? m->proxy_addr : m->peer_addr);
    }
    registry_add(c);
    for (int i = 0; i < n; i++) {
        member_start(c, i);
    }
    return c;
}

static void free_strv(char **v)
{
    for (int e = 0; v[e] != NULL; e++) {
        free(v[e]);
        v[e] = NULL;
    }
}

static void copy_strv(char **dst, int cap, const char *const *src)
{
    int e = 0;
    for (; src != NULL && src[e] != NULL; e++) {
        ck_assert_msg(e < cap, "tc: too many strings");
        dst[e] = strdup(src[e]);
        ck_assert_msg(dst[e] != NULL, "tc: out of memory");
    }
    dst[e] = NULL;
}

void tc_member_set(struct tc_cluster *c, int i, const char *client_addr, const char *peer_addr,
                   const char *const *args)
{
    struct tc_member *m = &c->members[i];
    m->custom = true;
    if (client_addr != NULL) {
        const char *colon = strrchr(client_addr, ':');
        snprintf(m->client_addr, sizeof m->client_addr, "%s", client_addr);
        if (colon != NULL && client_addr[0] != '[' &&
            (size_t)(colon - client_addr) < sizeof m->ip) {
            snprintf(m->ip, sizeof m->ip, "%.*s", (int)(colon - client_addr), client_addr);
        }
    }
    if (peer_addr != NULL) {
        snprintf(m->peer_addr, sizeof m->peer_addr, "%s", peer_addr);
    }
    free_strv(m->args);
    copy_strv(m->args, TC_MAX_EXTRA * 2, args);
}

int tc_member_add(struct tc_cluster *c, const char *client_addr, const char *peer_addr,
                  const char *const *args, const char *const *env)
{
    int i = c->n;
    struct tc_member *m = &c->members[i];

    ck_assert_msg(i < TC_MAX_MEMBERS, "tc: more than %d members", TC_MAX_MEMBERS);
    m->id = (uint64_t)i + 1;
    m->last_status = -1;
    snprintf(m->name, sizeof m->name, "member-%d", i + 1);
    member_addresses(c, i, false);
    ck_assert_msg((size_t)snprintf(m->data_dir, sizeof m->data_dir, "%s/member-%d", c->dir, i + 1) <
                      sizeof m->data_dir,
                  "tc: path too long");
    ck_assert_msg((size_t)snprintf(m->log_path, sizeof m->log_path, "%s/member-%d.log", c->dir,
                                   i + 1) < sizeof m->log_path,
                  "tc: path too long");
    ck_assert_msg(mkdir(m->data_dir, 0755) == 0, "tc: mkdir %s: %s", m->data_dir, strerror(errno));
    tc_member_set(c, i, client_addr, peer_addr, args);
    copy_strv(m->env, 4, env);
    c->n++;
    member_start(c, i);
    return i;
}

void tc_member_env(struct tc_cluster *c, int i, const char *const *env)
{
    ck_assert_msg(i >= 0 && i < c->n, "tc: tc_member_env: no member %d", i);
    free_strv(c->members[i].env);
    copy_strv(c->members[i].env, 4, env);
}

void tc_member_wipe(struct tc_cluster *c, int i)
{
    struct tc_member *m = &c->members[i];
    char cmd[TC_PATH_MAX + 32];
    ck_assert_msg(!tc_member_running(c, i), "tc: wipe %s: it is running", m->name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", m->data_dir);
    ck_assert_msg(system(cmd) == 0, "tc: %s failed", cmd);
    ck_assert_msg(mkdir(m->data_dir, 0755) == 0, "tc: mkdir %s: %s", m->data_dir, strerror(errno));
}

bool tc_member_running(struct tc_cluster *c, int i)
{
    struct tc_member *m = &c->members[i];
    int st;

    if (m->pid == 0) {
        return false;
    }
    if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
        m->pid = 0;
        m->last_status = st;
        m->died = true;
        return false;
    }
    return true;
}

void tc_check_running(struct tc_cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        struct tc_member *m = &c->members[i];
        char how[64];
        tc_member_running(c, i);
        if (m->died) {
            ck_abort_msg("tc: %s exited unexpectedly (%s); its log is %s", m->name,
                         describe_status(m->last_status, how, sizeof how), m->log_path);
        }
    }
}

int tc_member_kill(struct tc_cluster *c, int i, int sig)
{
    struct tc_member *m;
    int st = -1, wait_ms = sig == SIGKILL ? 5000 : 10000;
    pid_t pid;

    ck_assert_msg(i >= 0 && i < c->n, "tc: no member %d", i);
    m = &c->members[i];
    tc_check_running(c);
    ck_assert_msg(tc_member_running(c, i), "tc: kill %s: it is not running", m->name);
    pid = m->pid;
    kill(pid, sig);
    if (reap(pid, wait_ms, &st) != 0) {
        kill(pid, SIGKILL);
        reap(pid, 5000, &st);
        m->pid = 0;
        m->last_status = st;
        ck_abort_msg("tc: %s (pid %d) did not exit within %d ms of signal %d", m->name, (int)pid,
                     wait_ms, sig);
    }
    m->pid = 0;
    m->last_status = st;
    return st;
}

void tc_cluster_kill(struct tc_cluster *c, int sig)
{
    tc_check_running(c);
    for (int i = 0; i < c->n; i++) {
        if (tc_member_running(c, i)) {
            kill(c->members[i].pid, sig);
        }
    }
    for (int i = 0; i < c->n; i++) {
        struct tc_member *m = &c->members[i];
        int st = -1;
        if (m->pid == 0) {
            continue;
        }
        if (reap(m->pid, sig == SIGKILL ? 5000 : 10000, &st) != 0) {
            kill(m->pid, SIGKILL);
            reap(m->pid, 5000, &st);
            m->pid = 0;
            ck_abort_msg("tc: %s did not exit after signal %d", m->name, sig);
        }
        m->pid = 0;
        m->last_status = st;
    }
}

void tc_member_restart(struct tc_cluster *c, int i)
{
    ck_assert_msg(i >= 0 && i < c->n, "tc: no member %d", i);
    tc_check_running(c);
    ck_assert_msg(!tc_member_running(c, i), "tc: restart %s: it is still running",
                  c->members[i].name);
    member_start(c, i);
}

void tc_cluster_stop(struct tc_cluster *c)
{
    char problems[2048] = "";
    size_t used = 0;
    int64_t deadline;

    tc_check_running(c);
    for (int i = 0; i < c->n; i++) {
        if (c->members[i].pid != 0) {
            kill(c->members[i].pid, SIGTERM);
        }
    }
    deadline = tc_now_ms() + 10000;
    for (int i = 0; i < c->n; i++) {
        struct tc_member *m = &c->members[i];
        int64_t left = deadline - tc_now_ms();
        char how[64];
        int st = -1;

        if (m->pid == 0) {
            continue;
        }
        if (reap(m->pid, left > 0 ? (int)left : 0, &st) != 0) {
            fprintf(stderr, "tc: warning: %s did not exit within 10 s of SIGTERM; killing it\n",
                    m->name);
            kill(m->pid, SIGKILL);
            reap(m->pid, 5000, &st);
        } else if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            append(problems, sizeof problems, &used, " %s: %s;", m->name,
                   describe_status(st, how, sizeof how));
        }
        m->pid = 0;
        m->last_status = st;
    }
    if (problems[0] != '\0') {
        ck_abort_msg("tc: members did not exit 0 on SIGTERM:%s logs in %s", problems, c->dir);
    }
    registry_remove(c);
    if (keep_files()) {
        char marker[TC_PATH_MAX + 16];
        int fd;
        snprintf(marker, sizeof marker, "%s/%s", c->dir, STOPPED_MARKER);
        fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
        }
        fprintf(stderr, "tc: TC_KEEP is set: cluster files kept in %s\n", c->dir);
    } else {
        remove_tree(c->dir);
    }
    for (int i = 0; i < c->n; i++) {
        free_strv(c->members[i].args);
        free_strv(c->members[i].env);
    }
    free(c);
}

const char *tc_addr(const struct tc_cluster *c, int i)
{
    ck_assert_msg(i >= 0 && i < c->n, "tc: no member %d", i);
    return c->members[i].client_addr;
}

void tc_endpoints(const struct tc_cluster *c, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        int w = snprintf(out + used, len - used, "%s%s", i ? "," : "", c->members[i].client_addr);
        ck_assert_msg(w > 0 && (size_t)w < len - used, "tc: endpoints buffer too small");
        used += (size_t)w;
    }
}

/* Print the last TC_LOG_TAIL_LINES lines of @path, each prefixed by @tag. */
static void dump_tail(const char *path, const char *tag)
{
    enum { WINDOW = 256 * 1024 };
    struct stat sb;
    char *buf;
    size_t n, start;
    ssize_t got;
    int fd, lines = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tc: cannot open %s: %s\n", path, strerror(errno));
        return;
    }
    if (fstat(fd, &sb) != 0 || (buf = malloc(WINDOW + 1)) == NULL) {
        close(fd);
        return;
    }
    n = (size_t)sb.st_size > WINDOW ? WINDOW : (size_t)sb.st_size;
    got = pread(fd, buf, n, sb.st_size - (off_t)n);
    close(fd);
    n = got > 0 ? (size_t)got : 0;
    start = n;
    if (start > 0 && buf[start - 1] == '\n') {
        start--;
    }
    while (start > 0) {
        if (buf[start - 1] == '\n' && ++lines == TC_LOG_TAIL_LINES) {
            break;
        }
        start--;
    }
    fprintf(stderr, "---- tc: last %d lines of %s ----\n", TC_LOG_TAIL_LINES, path);
    while (start < n) {
        char *nl = memchr(buf + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - buf) : n;
        fprintf(stderr, "[%s] %.*s\n", tag, (int)(end - start), buf + start);
        start = end + 1;
    }
    free(buf);
}

void tc_dump_logs(const struct tc_cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        dump_tail(c->members[i].log_path, c->members[i].name);
    }
}

/* --- Fixture ---------------------------------------------------------------- */

void tc_fixture_setup(void)
{
    make_temp_dir(fixture_dir, sizeof fixture_dir, tmp_base(), "ballast-tc-");
}

static int log_filter(const struct dirent *e)
{
    size_t len = strlen(e->d_name);
    return strncmp(e->d_name, "member-", 7) == 0 && len > 4 &&
           strcmp(e->d_name + len - 4, ".log") == 0;
}

static void print_cluster_logs(const char *dir);

/* A cluster directory left behind: note it (its logs are printed by
 * tc_main() at the end), say whether it failed. */
static bool report_cluster_dir(const char *dir)
{
    char path[2 * TC_PATH_MAX + 600];
    struct stat sb;

    snprintf(path, sizeof path, "%s/%s", dir, STOPPED_MARKER);
    if (stat(path, &sb) == 0) {
        return false; /* stopped cleanly and kept for TC_KEEP */
    }
    if (n_failed_dirs < MAX_FAILED_DIRS) {
        fprintf(stderr,
                "tc: the cluster in %s was not stopped: the test failed; its member logs are "
                "printed after the test summary\n",
                dir);
        snprintf(failed_dirs[n_failed_dirs++], sizeof failed_dirs[0], "%s", dir);
        return true;
    }
    print_cluster_logs(dir);
    return true;
}

/* Print the tail of every member log in cluster directory @dir. */
static void print_cluster_logs(const char *dir)
{
    char path[2 * TC_PATH_MAX + 600];
    struct dirent **logs = NULL;
    int n;

    fprintf(stderr, "tc: member logs of the failed cluster in %s follow\n", dir);
    n = scandir(dir, &logs, log_filter, alphasort);
    for (int k = 0; k < n; k++) {
        char tag[64];
        snprintf(path, sizeof path, "%s/%s", dir, logs[k]->d_name);
        snprintf(tag, sizeof tag, "%.*s", (int)(strlen(logs[k]->d_name) - 4), logs[k]->d_name);
        dump_tail(path, tag);
        free(logs[k]);
    }
    free(logs);
}

/* Run `nft ARGS` with its output thrown away; its exit status, or -1 when
 * nft cannot be run or takes longer than 10 s. */
static int run_nft(char *const *args)
{
    static const char *const PATHS[] = {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"};
    char *argv[8];
    int k = 0, null, st = -1;
    pid_t pid;

    for (size_t p = 0; p < sizeof PATHS / sizeof PATHS[0] && k == 0; p++) {
        if (access(PATHS[p], X_OK) == 0) {
            argv[k++] = (char *)PATHS[p];
        }
    }
    if (k == 0) {
        return -1; /* no nftables here: nothing can be left */
    }
    for (int a = 0; args[a] != NULL && k < 7; a++) {
        argv[k++] = args[a];
    }
    argv[k] = NULL;
    null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0) {
        return -1;
    }
    pid = spawn(argv, NULL, null, null);
    close(null);
    if (pid < 0) {
        return -1;
    }
    if (reap(pid, 10000, &st) != 0) {
        kill(pid, SIGKILL);
        reap(pid, 5000, &st);
        return -1;
    }
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* For each marker nft-<pid> in the fixture directory: delete the table
 * inet TC_NFT_TABLE_PREFIX<pid> if it is still there (the test process died
 * or forgot it), then the marker. */
static void remove_nft_tables(void)
{
    DIR *d = opendir(fixture_dir);
    struct dirent *e;

    while (d != NULL && (e = readdir(d)) != NULL) {
        char table[64], path[TC_PATH_MAX + 300];
        char *end;
        long pid;

        if (strncmp(e->d_name, NFT_MARKER, strlen(NFT_MARKER)) != 0) {
            continue;
        }
        pid = strtol(e->d_name + strlen(NFT_MARKER), &end, 10);
        snprintf(path, sizeof path, "%s/%s", fixture_dir, e->d_name);
        if (*end == '\0' && pid > 0) {
            char *list[] = {"list", "table", "inet", table, NULL};
            char *del[] = {"delete", "table", "inet", table, NULL};
            snprintf(table, sizeof table, "%s%ld", TC_NFT_TABLE_PREFIX, pid);
            if (run_nft(list) == 0) {
                int rv = run_nft(del);
                fprintf(stderr, "tc: nftables table inet %s was left behind: %s\n", table,
                        rv == 0 ? "deleted it" : "could NOT delete it");
            }
        }
        unlink(path);
    }
    if (d != NULL) {
        closedir(d);
    }
}

void tc_fixture_teardown(void)
{
    bool failed = false;
    DIR *d;
    struct dirent *e;

    /* CK_FORK=no: a failed test jumped out and left its members running. */
    for (int k = 0; k < MAX_LIVE_CLUSTERS; k++) {
        struct tc_cluster *c = live_clusters[k];
        if (c == NULL) {
            continue;
        }
        for (int i = 0; i < c->n; i++) {
            if (c->members[i].pid != 0) {
                kill(c->members[i].pid, SIGKILL);
                reap(c->members[i].pid, 5000, &c->members[i].last_status);
                c->members[i].pid = 0;
            }
        }
        live_clusters[k] = NULL; /* its memory is left to the process's end */
    }
    if (fixture_dir[0] == '\0') {
        return;
    }
    remove_nft_tables();
    d = opendir(fixture_dir);
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[TC_PATH_MAX + 300];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", fixture_dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && report_cluster_dir(path)) {
            failed = true;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    if (failed || keep_files()) {
        fprintf(stderr, "tc: test files kept in %s\n", fixture_dir);
    } else {
        remove_tree(fixture_dir);
    }
    fixture_dir[0] = '\0';
}

void tc_add_case(Suite *s, const char *name, const TTest *test, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tc_fixture_setup, tc_fixture_teardown);
    tcase_set_timeout(tc, timeout_s);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int tc_main(const char *prog, Suite *(*make_suite)(void))
{
    SRunner *sr;
    int failed;

    if (getenv("BALLASTD") == NULL || getenv("BALLASTD")[0] == '\0') {
        fprintf(stderr, "%s: BALLASTD is not set (make check sets it); skipping\n", prog);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    sr = srunner_create(make_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    fflush(stdout); /* check's summary and the failures' reasons first */
    for (int k = 0; k < n_failed_dirs; k++) {
        print_cluster_logs(failed_dirs[k]);
    }
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* --- HTTP client ------------------------------------------------------------- */

void tc_response_free(struct tc_response *r)
{
    free(r->body);
    free(r->head);
    memset(r, 0, sizeof *r);
}

const char *tc_header(const struct tc_response *r, const char *name)
{
    for (size_t k = 0; k < r->n_headers; k++) {
        if (strcasecmp(r->headers[k].name, name) == 0) {
            return r->headers[k].value;
        }
    }
    return NULL;
}

uint64_t tc_header_u64(const struct tc_response *r, const char *name)
{
    const char *v = tc_header(r, name);
    char *end;
    unsigned long long n;

    ck_assert_msg(v != NULL, "response (status %d) lacks header %s", r->status, name);
    errno = 0;
    n = strtoull(v, &end, 10);
    ck_assert_msg(errno == 0 && end != v && *end == '\0' && isdigit((unsigned char)v[0]),
                  "header %s: '%s' is not a number", name, v);
    return (uint64_t)n;
}

/* Poll @fd for @events until @deadline. 1 with @revents, 0 on timeout, -1. */
static int wait_fd(int fd, short events, int64_t deadline, short *revents)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int64_t left = deadline - tc_now_ms();
        int r;
        if (left <= 0) {
            return 0;
        }
        r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r;
        }
        *revents = p.revents;
        return 1;
    }
}

int tc_conn_open(struct tc_conn *conn, const char *addr, int timeout_ms)
{
    char host[64], *colon;
    struct addrinfo hints, *ai = NULL;
    int64_t deadline = tc_now_ms() + timeout_ms;
    short rev = 0;
    int rv, err = 0, one = 1;
    socklen_t len = sizeof err;

    memset(conn, 0, sizeof *conn);
    conn->fd = -1;
    conn->timeout_ms = timeout_ms;
    snprintf(conn->addr, sizeof conn->addr, "%s", addr);
    snprintf(host, sizeof host, "%s", addr);
    colon = strrchr(host, ':');
    if (colon == NULL) {
        return fail_msg(conn->error, sizeof conn->error, "bad address '%s'", addr);
    }
    *colon = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rv = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rv != 0) {
        return fail_msg(conn->error, sizeof conn->error, "%s: %s", addr, gai_strerror(rv));
    }
    conn->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0) {
        freeaddrinfo(ai);
        return fail_msg(conn->error, sizeof conn->error, "socket: %s", strerror(errno));
    }
    setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    rv = connect(conn->fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rv != 0 && errno != EINPROGRESS) {
        rv = fail_msg(conn->error, sizeof conn->error, "connect %s: %s", addr, strerror(errno));
        tc_conn_close(conn);
        return rv;
    }
    if (rv != 0) {
        rv = wait_fd(conn->fd, POLLOUT, deadline, &rev);
        if (rv == 0) {
            fail_msg(conn->error, sizeof conn->error, "connect %s: timed out after %d ms", addr,
                     timeout_ms);
            tc_conn_close(conn);
            return -1;
        }
        if (rv < 0 || getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            fail_msg(conn->error, sizeof conn->error, "connect %s: %s", addr,
                     strerror(err ? err : errno));
            tc_conn_close(conn);
            return -1;
        }
    }
    return 0;
}

void tc_conn_close(struct tc_conn *conn)
{
    if (conn->fd >= 0) {
        close(conn->fd);
    }
    conn->fd = -1;
    free(conn->buf);
    conn->buf = NULL;
    conn->len = conn->cap = 0;
}

/* Send @len bytes. With @watch_input, stop early (returning 1) when the peer
 * sends something or closes while we are still sending; a peer that reset
 * the connection also returns 1 so that its answer, if any, is read. */
static int send_bytes(struct tc_conn *conn, const char *p, size_t len, int64_t deadline,
                      bool watch_input)
{
    while (len > 0) {
        short rev = 0;
        ssize_t w;
        int rv = wait_fd(conn->fd, (short)(POLLOUT | (watch_input ? POLLIN : 0)), deadline, &rev);
        if (rv == 0) {
            return fail_msg(conn->error, sizeof conn->error, "send to %s: timed out", conn->addr);
        }
        if (rv < 0) {
            return fail_msg(conn->error, sizeof conn->error, "poll: %s", strerror(errno));
        }
        if (watch_input && (rev & (POLLIN | POLLHUP | POLLERR))) {
            return 1;
        }
        w = send(conn->fd, p, len > 65536 ? 65536 : len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue;
            }
            if (watch_input && (errno == EPIPE || errno == ECONNRESET)) {
                return 1;
            }
            return fail_msg(conn->error, sizeof conn->error, "send to %s: %s", conn->addr,
                            strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int tc_conn_send(struct tc_conn *conn, const void *data, size_t len)
{
    return send_bytes(conn, data, len, tc_now_ms() + conn->timeout_ms, false) == 0 ? 0 : -1;
}

/* Read more bytes into the buffer: 1 when some came, 0 at EOF, -1. */
static int fill(struct tc_conn *conn, int64_t deadline)
{
    for (;;) {
        short rev = 0;
        ssize_t r;
        int rv;
        if (conn->eof) {
            return 0;
        }
        if (conn->cap - conn->len < 16384) {
            size_t cap = conn->cap ? conn->cap * 2 : 65536;
            char *p;
            if (cap > MAX_RESPONSE_BYTES + MAX_HEAD_BYTES) {
                return fail_msg(conn->error, sizeof conn->error, "response from %s too large",
                                conn->addr);
            }
            p = realloc(conn->buf, cap);
            if (p == NULL) {
                return fail_msg(conn->error, sizeof conn->error, "out of memory");
            }
            conn->buf = p;
            conn->cap = cap;
        }
        rv = wait_fd(conn->fd, POLLIN, deadline, &rev);
        if (rv == 0) {
            return fail_msg(conn->error, sizeof conn->error,
                            "no complete response from %s within %d ms (%zu bytes buffered)",
                            conn->addr, conn->timeout_ms, conn->len);
        }
        if (rv < 0) {
            return fail_msg(conn->error, sizeof conn->error, "poll: %s", strerror(errno));
        }
        r = recv(conn->fd, conn->buf + conn->len, conn->cap - conn->len, 0);
        if (r > 0) {
            conn->len += (size_t)r;
            return 1;
        }
        if (r == 0 || errno == ECONNRESET) {
            conn->eof = true; /* a reset after the answer ends it like EOF */
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return fail_msg(conn->error, sizeof conn->error, "recv from %s: %s", conn->addr,
                            strerror(errno));
        }
    }
}

static void consume(struct tc_conn *conn, size_t n)
{
    memmove(conn->buf, conn->buf + n, conn->len - n);
    conn->len -= n;
}

/* Make sure @n bytes are buffered; -1 if the connection ends first. */
static int need(struct tc_conn *conn, size_t n, int64_t deadline)
{
    while (conn->len < n) {
        int rv = fill(conn, deadline);
        if (rv == 0) {
            return fail_msg(conn->error, sizeof conn->error,
                            "%s closed the connection inside a response body", conn->addr);
        }
        if (rv < 0) {
            return -1;
        }
    }
    return 0;
}

/* Offset of the first CRLF at or after @from, waiting for more bytes. */
static int find_crlf(struct tc_conn *conn, size_t from, int64_t deadline, size_t *at)
{
    for (;;) {
        for (size_t k = from; k + 1 < conn->len; k++) {
            if (conn->buf[k] == '\r' && conn->buf[k + 1] == '\n') {
                *at = k;
                return 0;
            }
        }
        if (conn->len > MAX_HEAD_BYTES + from) {
            return fail_msg(conn->error, sizeof conn->error, "line too long from %s", conn->addr);
        }
        if (need(conn, conn->len + 1, deadline) != 0) {
            return -1;
        }
    }
}

/* Split the header block @r->head (lines without the status line). */
static void parse_headers(struct tc_response *r)
{
    char *p = r->head;
    while (*p != '\0') {
        char *eol = strstr(p, "\r\n"), *colon, *v, *end;
        if (eol == NULL) {
            eol = p + strlen(p);
        } else {
            *eol = '\0';
            eol += 2;
        }
        colon = strchr(p, ':');
        if (colon != NULL && r->n_headers < TC_MAX_HEADERS) {
            *colon = '\0';
            v = colon + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            end = v + strlen(v);
            while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
                *--end = '\0';
            }
            r->headers[r->n_headers].name = p;
            r->headers[r->n_headers].value = v;
            r->n_headers++;
        }
        p = eol;
    }
}

static int read_chunked(struct tc_conn *conn, struct dbuf *body, int64_t deadline)
{
    for (;;) {
        size_t at, size;
        char *end;
        unsigned long long n;

        if (find_crlf(conn, 0, deadline, &at) != 0) {
            return -1;
        }
        errno = 0;
        n = strtoull(conn->buf, &end, 16);
        if (errno != 0 || end == conn->buf ||
            (end < conn->buf + at && *end != ';' && *end != ' ' && *end != '\t')) {
            return fail_msg(conn->error, sizeof conn->error, "bad chunk size line from %s",
                            conn->addr);
        }
        if (n > MAX_RESPONSE_BYTES || body->len + n > MAX_RESPONSE_BYTES) {
            return fail_msg(conn->error, sizeof conn->error, "chunked body too large");
        }
        size = (size_t)n;
        consume(conn, at + 2);
        if (size == 0) {
            for (;;) { /* trailers up to an empty line */
                if (find_crlf(conn, 0, deadline, &at) != 0) {
                    return -1;
                }
                consume(conn, at + 2);
                if (at == 0) {
                    return 0;
                }
            }
        }
        if (need(conn, size + 2, deadline) != 0) {
            return -1;
        }
        if (conn->buf[size] != '\r' || conn->buf[size + 1] != '\n') {
            return fail_msg(conn->error, sizeof conn->error, "chunk without CRLF from %s",
                            conn->addr);
        }
        if (dbuf_add(body, conn->buf, size) != 0) {
            return fail_msg(conn->error, sizeof conn->error, "out of memory");
        }
        consume(conn, size + 2);
    }
}

static int read_response(struct tc_conn *conn, bool head, struct tc_response *resp,
                         int64_t deadline)
{
    struct dbuf body = {0};
    const char *te, *cl;
    int rv = 0;

    for (;;) { /* skip 1xx answers */
        size_t hend = 0, line_end;
        bool found = false;
        char *status_line;
        int major, minor, status;

        while (!found) {
            for (size_t k = hend; k + 3 < conn->len; k++) {
                if (memcmp(conn->buf + k, "\r\n\r\n", 4) == 0) {
                    hend = k;
                    found = true;
                    break;
                }
            }
            if (found) {
                break;
            }
            hend = conn->len > 3 ? conn->len - 3 : 0;
            if (conn->len > MAX_HEAD_BYTES) {
                return fail_msg(resp->error, sizeof resp->error, "header block from %s too long",
                                conn->addr);
            }
            rv = fill(conn, deadline);
            if (rv == 0) {
                return fail_msg(resp->error, sizeof resp->error, "%s closed the connection %s",
                                conn->addr,
                                conn->len ? "inside the response headers" : "without a response");
            }
            if (rv < 0) {
                snprintf(resp->error, sizeof resp->error, "%s", conn->error);
                return -1;
            }
        }
        status_line = malloc(hend + 1);
        if (status_line == NULL) {
            return fail_msg(resp->error, sizeof resp->error, "out of memory");
        }
        memcpy(status_line, conn->buf, hend);
        status_line[hend] = '\0';
        consume(conn, hend + 4);
        if (sscanf(status_line, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || status < 100 ||
            status > 999) {
            rv = fail_msg(resp->error, sizeof resp->error, "bad status line from %s: '%.60s'",
                          conn->addr, status_line);
            free(status_line);
            return rv;
        }
        line_end = strcspn(status_line, "\r");
        free(resp->head);
        resp->n_headers = 0;
        resp->head = status_line;
        resp->status = status;
        if (status_line[line_end] != '\0') {
            memmove(status_line, status_line + line_end + 2,
                    strlen(status_line + line_end + 2) + 1);
        } else {
            status_line[0] = '\0';
        }
        parse_headers(resp);
        if (status >= 200) {
            break;
        }
    }

    te = tc_header(resp, "Transfer-Encoding");
    cl = tc_header(resp, "Content-Length");
    if (head || resp->status == 204 || resp->status == 304) {
        rv = 0;
    } else if (te != NULL && strcasestr(te, "chunked") != NULL) {
        rv = read_chunked(conn, &body, deadline);
    } else if (cl != NULL) {
        char *end;
        unsigned long long n;
        errno = 0;
        n = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || *end != '\0' || n > MAX_RESPONSE_BYTES) {
            return fail_msg(resp->error, sizeof resp->error, "bad Content-Length '%s'", cl);
        }
        rv = need(conn, (size_t)n, deadline);
        if (rv == 0) {
            rv = dbuf_add(&body, conn->buf, (size_t)n);
            consume(conn, (size_t)n);
        }
    } else {
        while ((rv = fill(conn, deadline)) > 0) {
        }
        if (rv == 0) {
            rv = dbuf_add(&body, conn->buf, conn->len);
            consume(conn, conn->len);
        }
    }
    if (rv != 0) {
        free(body.p);
        if (conn->error[0] != '\0') {
            snprintf(resp->error, sizeof resp->error, "%s", conn->error);
        } else {
            snprintf(resp->error, sizeof resp->error, "out of memory");
        }
        return -1;
    }
    resp->body = dbuf_take(&body, &resp->body_len);
    return 0;
}

int tc_conn_read_response(struct tc_conn *conn, bool head, struct tc_response *resp)
{
    memset(resp, 0, sizeof *resp);
    conn->error[0] = '\0';
    return read_response(conn, head, resp, tc_now_ms() + conn->timeout_ms);
}

int tc_conn_request(struct tc_conn *conn, const char *method, const char *target, const void *body,
                    size_t body_len, const char *const *headers, struct tc_response *resp)
{
    struct dbuf req = {0};
    char line[64];
    int64_t deadline = tc_now_ms() + conn->timeout_ms;
    int rv;

    memset(resp, 0, sizeof *resp);
    conn->error[0] = '\0';
    rv = dbuf_add(&req, method, strlen(method));
    rv |= dbuf_add(&req, " ", 1);
    rv |= dbuf_add(&req, target, strlen(target));
    rv |= dbuf_add(&req, " HTTP/1.1\r\nHost: ", 17);
    rv |= dbuf_add(&req, conn->addr, strlen(conn->addr));
    rv |= dbuf_add(&req, "\r\nAccept: application/json\r\n", 28);
    if (body != NULL || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        snprintf(line, sizeof line, "Content-Length: %zu\r\n", body_len);
        rv |= dbuf_add(&req, line, strlen(line));
    }
    for (size_t k = 0; headers != NULL && headers[k] != NULL; k++) {
        rv |= dbuf_add(&req, headers[k], strlen(headers[k]));
        rv |= dbuf_add(&req, "\r\n", 2);
    }
    rv |= dbuf_add(&req, "\r\n", 2);
    if (rv != 0) {
        free(req.p);
        return fail_msg(resp->error, sizeof resp->error, "out of memory");
    }
    rv = send_bytes(conn, req.p, req.len, deadline, true);
    free(req.p);
    if (rv == 0 && body != NULL && body_len > 0) {
        rv = send_bytes(conn, body, body_len, deadline, true);
    }
    if (rv < 0) {
        snprintf(resp->error, sizeof resp->error, "%s", conn->error);
        return -1;
    }
    return read_response(conn, strcmp(method, "HEAD") == 0, resp, deadline);
}

int tc_http_ex(const char *addr, int timeout_ms, const char *method, const char *target,
               const void *body, size_t body_len, const char *const *headers,
               struct tc_response *resp)
{
    const char *all[34];
    struct tc_conn conn;
    int64_t deadline = tc_now_ms() + timeout_ms, left;
    size_t n = 0;
    int rv;

    memset(resp, 0, sizeof *resp);
    while (headers != NULL && headers[n] != NULL) {
        ck_assert_msg(n < 32, "tc: too many request headers");
        all[n] = headers[n];
        n++;
    }
    all[n++] = "Connection: close";
    all[n] = NULL;
    if (tc_conn_open(&conn, addr, timeout_ms) != 0) {
        snprintf(resp->error, sizeof resp->error, "%s", conn.error);
        return -1;
    }
    left = deadline - tc_now_ms();
    conn.timeout_ms = left > 1 ? (int)left : 1;
    rv = tc_conn_request(&conn, method, target, body, body_len, all, resp);
    tc_conn_close(&conn);
    return rv;
}

int tc_http(const char *addr, const char *method, const char *target, const void *body,
            size_t body_len, const char *const *headers, struct tc_response *resp)
{
    return tc_http_ex(addr, TC_HTTP_TIMEOUT_MS, method, target, body, body_len, headers, resp);
}

/* --- Encoding ------------------------------------------------------------------ */

size_t tc_escape(const void *key, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *k = key;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t ch = k[i];
        ck_assert_msg(n + 4 <= cap, "tc: escape buffer too small for a %zu-byte key", len);
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    ck_assert_msg(n < cap, "tc: escape buffer too small");
    out[n] = '\0';
    return n;
}

char *tc_kv_target(char *out, size_t cap, const void *key, size_t keylen, const char *query)
{
    size_t n;
    ck_assert_msg(cap > 8, "tc: target buffer too small");
    memcpy(out, "/v1/kv/", 7);
    n = 7 + tc_escape(key, keylen, out + 7, cap - 7);
    if (query != NULL) {
        ck_assert_msg(n + 1 + strlen(query) < cap, "tc: target buffer too small");
        out[n++] = '?';
        strcpy(out + n, query);
    }
    return out;
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    if (ch == '+') {
        return 62;
    }
    if (ch == '/') {
        return 63;
    }
    return -1;
}

uint8_t *tc_b64_decode(const char *s, size_t len, size_t *out_len)
{
    uint8_t *out;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 0 && len >= 2 && s[len - 1] == '=') {
        len -= s[len - 2] == '=' ? 2 : 1;
    }
    if (len % 4 == 1) {
        return NULL;
    }
    out = malloc(len / 4 * 3 + 4);
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    out[n] = 0;
    *out_len = n;
    return out;
}

/* --- JSON reading ---------------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

/* @p at '"': the character after the closing quote, or NULL. */
static const char *skip_string(const char *p)
{
    for (p++; *p != '\0'; p++) {
        if (*p == '\\') {
            if (*++p == '\0') {
                return NULL;
            }
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* The character after the value at @p, or NULL if it is malformed. */
static const char *skip_value(const char *p, int depth)
{
    p = skip_ws(p);
    if (depth > 64) {
        return NULL;
    }
    if (*p == '"') {
        return skip_string(p);
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close) {
            return p + 1;
        }
        for (;;) {
            if (close == '}') {
                p = skip_ws(p);
                if (*p != '"' || (p = skip_string(p)) == NULL) {
                    return NULL;
                }
                p = skip_ws(p);
                if (*p++ != ':') {
                    return NULL;
                }
            }
            p = skip_value(p, depth + 1);
            if (p == NULL) {
                return NULL;
            }
            p = skip_ws(p);
            if (*p == ',') {
                p++;
            } else if (*p == close) {
                return p + 1;
            } else {
                return NULL;
            }
        }
    }
    {
        const char *start = p;
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.') {
            p++;
        }
        return p == start ? NULL : p;
    }
}

/* In the object at @p, the value of member @name (@len bytes), or NULL. */
static const char *object_member(const char *p, const char *name, size_t len)
{
    p = skip_ws(p + 1);
    if (*p == '}') {
        return NULL;
    }
    for (;;) {
        const char *key, *end;
        p = skip_ws(p);
        if (*p != '"' || (end = skip_string(p)) == NULL) {
            return NULL;
        }
        key = p + 1;
        p = skip_ws(end);
        if (*p++ != ':') {
            return NULL;
        }
        p = skip_ws(p);
        if ((size_t)(end - 1 - key) == len && memcmp(key, name, len) == 0) {
            return p;
        }
        p = skip_value(p, 1);
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p);
        if (*p != ',') {
            return NULL;
        }
        p++;
    }
}

/* In the array at @p, element @index, or NULL. */
static const char *array_element(const char *p, unsigned long index)
{
    p = skip_ws(p + 1);
    if (*p == ']') {
        return NULL;
    }
    for (unsigned long k = 0;; k++) {
        p = skip_ws(p);
        if (k == index) {
            return p;
        }
        p = skip_value(p, 1);
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p);
        if (*p != ',') {
            return NULL;
        }
        p++;
    }
}

const char *tc_json_find(const char *json, const char *path)
{
    const char *p;

    if (json == NULL) {
        return NULL;
    }
    p = skip_ws(json);
    while (*path != '\0') {
        size_t len = strcspn(path, ".");
        if (*p == '{') {
            p = object_member(p, path, len);
        } else if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(path, &end, 10);
            p = (end == path + len && len > 0) ? array_element(p, idx) : NULL;
        } else {
            p = NULL;
        }
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p);
        path += len;
        if (*path == '.') {
            path++;
        }
    }
    return *p != '\0' ? p : NULL;
}

bool tc_json_u64(const char *json, const char *path, uint64_t *out)
{
    const char *p = tc_json_find(json, path);
    char *end;
    unsigned long long n;

    if (p == NULL || !isdigit((unsigned char)*p)) {
        return false;
    }
    errno = 0;
    n = strtoull(p, &end, 10);
    if (errno != 0 || *end == '.' || *end == 'e' || *end == 'E') {
        return false;
    }
    *out = (uint64_t)n;
    return true;
}

bool tc_json_bool(const char *json, const char *path, bool *out)
{
    const char *p = tc_json_find(json, path);
    if (p != NULL && strncmp(p, "true", 4) == 0) {
        *out = true;
        return true;
    }
    if (p != NULL && strncmp(p, "false", 5) == 0) {
        *out = false;
        return true;
    }
    return false;
}

static void put_utf8(struct dbuf *b, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    dbuf_add(b, u, n);
}

/* The string at @path unescaped into a malloc'd buffer, or NULL. */
static char *json_string(const char *json, const char *path, size_t *len)
{
    const char *p = tc_json_find(json, path);
    struct dbuf b = {0};

    if (p == NULL || *p != '"' || skip_string(p) == NULL) {
        return NULL;
    }
    for (p++; *p != '"'; p++) {
        char ch = *p;
        if (ch == '\\') {
            ch = *++p;
            switch (ch) {
            case 'b':
                ch = '\b';
                break;
            case 'f':
                ch = '\f';
                break;
            case 'n':
                ch = '\n';
                break;
            case 'r':
                ch = '\r';
                break;
            case 't':
                ch = '\t';
                break;
            case 'u': {
                char hex[5] = {0};
                unsigned long cp;
                memcpy(hex, p + 1, 4);
                if (strlen(hex) != 4 || strspn(hex, "0123456789abcdefABCDEF") != 4) {
                    free(b.p);
                    return NULL;
                }
                cp = strtoul(hex, NULL, 16);
                p += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                    char lo[5] = {0};
                    unsigned long low;
                    memcpy(lo, p + 3, 4);
                    low = strtoul(lo, NULL, 16);
                    if (strlen(lo) == 4 && low >= 0xDC00 && low < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        p += 6;
                    }
                }
                put_utf8(&b, cp);
                continue;
            }
            default: /* '"', '\\', '/' stand for themselves */
                break;
            }
        }
        dbuf_add(&b, &ch, 1);
    }
    return dbuf_take(&b, len);
}

bool tc_json_str(const char *json, const char *path, char *out, size_t cap)
{
    size_t len;
    char *s = json_string(json, path, &len);
    if (s == NULL || len + 1 > cap) {
        free(s);
        return false;
    }
    memcpy(out, s, len + 1);
    free(s);
    return true;
}

uint8_t *tc_json_b64(const char *json, const char *path, size_t *len)
{
    size_t n;
    char *s = json_string(json, path, &n);
    uint8_t *out;
    if (s == NULL) {
        return NULL;
    }
    out = tc_b64_decode(s, n, len);
    free(s);
    return out;
}

int tc_json_len(const char *json, const char *path)
{
    const char *p = tc_json_find(json, path);
    char close;
    int n = 0;

    if (p == NULL || (*p != '[' && *p != '{')) {
        return -1;
    }
    close = *p == '[' ? ']' : '}';
    p = skip_ws(p + 1);
    if (*p == close) {
        return 0;
    }
    for (;;) {
        p = skip_ws(p);
        if (close == '}') {
            if (*p != '"' || (p = skip_string(p)) == NULL) {
                return -1;
            }
            p = skip_ws(p);
            if (*p++ != ':') {
                return -1;
            }
        }
        p = skip_value(p, 1);
        if (p == NULL) {
            return -1;
        }
        n++;
        p = skip_ws(p);
        if (*p == close) {
            return n;
        }
        if (*p++ != ',') {
            return -1;
        }
    }
}

/* --- Cluster state ---------------------------------------------------------------- */

int tc_get_status(struct tc_cluster *c, int i, struct tc_status *st, char *err, size_t errlen)
{
    struct tc_response r;
    int rv;

    memset(st, 0, sizeof *st);
    if (tc_http_ex(tc_addr(c, i), 2000, "GET", "/v1/status", NULL, 0, NULL, &r) != 0) {
        rv = fail_msg(err, errlen, "%s", r.error);
        tc_response_free(&r);
        return rv;
    }
    if (r.status != 200) {
        rv = fail_msg(err, errlen, "status %d: %.120s", r.status, r.body);
        tc_response_free(&r);
        return rv;
    }
    if (!tc_json_u64(r.body, "id", &st->id) || !tc_json_u64(r.body, "leader", &st->leader) ||
        !tc_json_str(r.body, "role", st->role, sizeof st->role) ||
        !tc_json_u64(r.body, "revision", &st->revision)) {
        rv = fail_msg(err, errlen, "/v1/status lacks id, leader, role or revision: %.200s", r.body);
        tc_response_free(&r);
        return rv;
    }
    tc_json_u64(r.body, "term", &st->term);
    tc_json_u64(r.body, "commit_index", &st->commit_index);
    tc_json_u64(r.body, "applied_index", &st->applied_index);
    tc_json_str(r.body, "name", st->name, sizeof st->name);
    tc_response_free(&r);
    return 0;
}

int tc_wait_leader(struct tc_cluster *c, int timeout_ms)
{
    int64_t start = tc_now_ms(), deadline = start + timeout_ms;

    for (;;) {
        char seen[2048] = "";
        size_t used = 0;
        uint64_t agreed = 0;
        bool ok = true;
        int live = 0, leader = -1;

        tc_check_running(c);
        for (int i = 0; i < c->n; i++) {
            struct tc_status st;
            char err[256];
            if (!tc_member_running(c, i)) {
                append(seen, sizeof seen, &used, " %s: not running;", c->members[i].name);
                continue;
            }
            live++;
            if (tc_get_status(c, i, &st, err, sizeof err) != 0) {
                ok = false;
                append(seen, sizeof seen, &used, " %s: %s;", c->members[i].name, err);
                continue;
            }
            append(seen, sizeof seen, &used, " %s: role=%s leader=%llu term=%llu;",
                   c->members[i].name, st.role, (unsigned long long)st.leader,
                   (unsigned long long)st.term);
            if (st.id != c->members[i].id) {
                ok = false;
                append(seen, sizeof seen, &used, " (reports id %llu!)", (unsigned long long)st.id);
            }
            if (st.leader == 0 || (agreed != 0 && agreed != st.leader)) {
                ok = false;
            }
            if (agreed == 0) {
                agreed = st.leader;
            }
            if (st.leader == st.id && strcmp(st.role, "leader") == 0) {
                leader = i;
            }
        }
        ck_assert_msg(live > 0, "tc: wait for a leader: no member is running");
        if (ok && leader >= 0 && c->members[leader].id == agreed) {
            return leader;
        }
        if (tc_now_ms() >= deadline) {
            ck_abort_msg("tc: no leader agreed on by all running members within %d ms; last "
                         "seen:%s",
                         timeout_ms, seen);
        }
        tc_sleep_ms(50);
    }
}

void tc_wait_applied(struct tc_cluster *c, int i, uint64_t revision, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char last[300] = "nothing";

    for (;;) {
        struct tc_status st;
        char err[256];
        tc_check_running(c);
        if (tc_get_status(c, i, &st, err, sizeof err) == 0) {
            if (st.revision >= revision) {
                return;
            }
            snprintf(last, sizeof last, "revision %llu (applied index %llu, role %s)",
                     (unsigned long long)st.revision, (unsigned long long)st.applied_index,
                     st.role);
        } else {
            snprintf(last, sizeof last, "%s", err);
        }
        if (tc_now_ms() >= deadline) {
            ck_abort_msg("tc: %s did not apply revision %llu within %d ms; last seen: %s",
                         c->members[i].name, (unsigned long long)revision, timeout_ms, last);
        }
        tc_sleep_ms(20);
    }
}

void tc_wait_ready(struct tc_cluster *c, int i, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    char last[300] = "nothing";

    for (;;) {
        struct tc_response r;
        tc_check_running(c);
        if (tc_http_ex(tc_addr(c, i), 2000, "GET", "/readyz", NULL, 0, NULL, &r) == 0) {
            if (r.status == 200) {
                tc_response_free(&r);
                return;
            }
            snprintf(last, sizeof last, "status %d: %.200s", r.status, r.body);
        } else {
            snprintf(last, sizeof last, "%s", r.error);
        }
        tc_response_free(&r);
        if (tc_now_ms() >= deadline) {
            ck_abort_msg("tc: %s not ready (GET /readyz) within %d ms; last seen: %s",
                         c->members[i].name, timeout_ms, last);
        }
        tc_sleep_ms(50);
    }
}

/* Whether the /v1/members array @body lists every member of @c with its
 * name and client address; else why not, in @why. */
static bool members_published(const struct tc_cluster *c, const char *body, char *why, size_t len)
{
    int n = tc_json_len(body, "");
    if (n < c->n) {
        snprintf(why, len, "%d members listed: %.200s", n, body ? body : "");
        return false;
    }
    for (int i = 0; i < c->n; i++) {
        bool found = false;
        for (int k = 0; k < n && !found; k++) {
            char path[32], name[64], url[128];
            uint64_t id;
            snprintf(path, sizeof path, "%d.id", k);
            if (!tc_json_u64(body, path, &id) || id != c->members[i].id) {
                continue;
            }
            snprintf(path, sizeof path, "%d.name", k);
            if (!tc_json_str(body, path, name, sizeof name) ||
                strcmp(name, c->members[i].name) != 0) {
                snprintf(why, len, "id %llu has no name %s yet", (unsigned long long)id,
                         c->members[i].name);
                return false;
            }
            snprintf(path, sizeof path, "%d.client_url", k);
            if (!tc_json_str(body, path, url, sizeof url) ||
                strstr(url, c->members[i].client_addr) == NULL) {
                snprintf(why, len, "id %llu has no client_url %s yet", (unsigned long long)id,
                         c->members[i].client_addr);
                return false;
            }
            found = true;
        }
        if (!found) {
            snprintf(why, len, "id %llu missing: %.200s", (unsigned long long)c->members[i].id,
                     body);
            return false;
        }
    }
    return true;
}

int tc_wait_stable(struct tc_cluster *c, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms, left;
    char last[400] = "nothing";

    tc_wait_leader(c, timeout_ms);
    for (int i = 0; i < c->n; i++) {
        if (!tc_member_running(c, i)) {
            continue;
        }
        for (;;) {
            struct tc_response r;
            bool done = false;
            tc_check_running(c);
            if (tc_http_ex(tc_addr(c, i), 2000, "GET", "/v1/members", NULL, 0, NULL, &r) != 0) {
                snprintf(last, sizeof last, "%s", r.error);
            } else if (r.status != 200) {
                snprintf(last, sizeof last, "status %d: %.200s", r.status, r.body);
            } else {
                done = members_published(c, r.body, last, sizeof last);
            }
            tc_response_free(&r);
            if (done) {
                break;
            }
            if (tc_now_ms() >= deadline) {
                ck_abort_msg("tc: %s: GET /v1/members did not list all %d members within %d "
                             "ms; last seen: %s",
                             c->members[i].name, c->n, timeout_ms, last);
            }
            tc_sleep_ms(50);
        }
        left = deadline - tc_now_ms();
        tc_wait_ready(c, i, left > 0 ? (int)left : 0);
    }
    left = deadline - tc_now_ms();
    return tc_wait_leader(c, left > 0 ? (int)left : 0);
}

/* --- KV shortcuts --------------------------------------------------------------- */

uint64_t tc_put(struct tc_cluster *c, int i, const char *key, const void *value, size_t len)
{
    char target[3 * 4096 + 64];
    struct tc_response r;
    uint64_t rev = 0;

    tc_kv_target(target, sizeof target, key, strlen(key), NULL);
    if (tc_http(tc_addr(c, i), "PUT", target, value, len, NULL, &r) != 0) {
        tc_check_running(c); /* a crash explains it best */
        ck_abort_msg("PUT %s via %s: %s", key, c->members[i].name, r.error);
    }
    ck_assert_msg(r.status == 200, "PUT %s via %s: status %d: %.300s", key, c->members[i].name,
                  r.status, r.body);
    ck_assert_msg(tc_json_u64(r.body, "revision", &rev) && rev > 0,
                  "PUT %s via %s: no revision in %.300s", key, c->members[i].name, r.body);
    tc_response_free(&r);
    return rev;
}

int tc_get(struct tc_cluster *c, int i, const char *key, const char *consistency, struct tc_kv *kv)
{
    char target[3 * 4096 + 64], query[64];
    struct tc_response r;
    int status;

    memset(kv, 0, sizeof *kv);
    if (consistency != NULL) {
        snprintf(query, sizeof query, "consistency=%s", consistency);
    }
    tc_kv_target(target, sizeof target, key, strlen(key), consistency ? query : NULL);
    if (tc_http(tc_addr(c, i), "GET", target, NULL, 0, NULL, &r) != 0) {
        tc_check_running(c); /* a crash explains it best */
        ck_abort_msg("GET %s from %s: %s", target, c->members[i].name, r.error);
    }
    status = r.status;
    ck_assert_msg(status == 200 || status == 404, "GET %s from %s: status %d: %.300s", target,
                  c->members[i].name, status, r.body);
    if (status == 200) {
        kv->value = tc_json_b64(r.body, "value", &kv->value_len);
        ck_assert_msg(kv->value != NULL, "GET %s from %s: no base64 value in %.300s", target,
                      c->members[i].name, r.body);
        ck_assert_msg(tc_json_u64(r.body, "mod_revision", &kv->mod_revision) &&
                          tc_json_u64(r.body, "create_revision", &kv->create_revision) &&
                          tc_json_u64(r.body, "version", &kv->version),
                      "GET %s from %s: kv lacks revisions: %.300s", target, c->members[i].name,
                      r.body);
    }
    tc_response_free(&r);
    return status;
}

void tc_kv_free(struct tc_kv *kv)
{
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

/* --- CLI ----------------------------------------------------------------------- */

int tc_ctl(const char *endpoints, struct tc_ctl_result *res, const char *arg, ...)
{
    char *argv[40];
    char cmdline[1024] = "";
    struct dbuf out = {0}, err = {0};
    int out_pipe[2], err_pipe[2], k = 0, st = -1, code;
    size_t used = 0;
    int64_t deadline;
    bool out_open = true, err_open = true, timed_out = false;
    pid_t pid;
    va_list ap;

    argv[k++] = (char *)binary("BALLASTCTL");
    if (endpoints != NULL) {
        argv[k++] = "--endpoints";
        argv[k++] = (char *)endpoints;
    }
    va_start(ap, arg);
    for (const char *a = arg; a != NULL; a = va_arg(ap, const char *)) {
        ck_assert_msg(k < 39, "tc: too many ballastctl arguments");
        argv[k++] = (char *)a;
    }
    va_end(ap);
    argv[k] = NULL;
    for (int a = 1; a < k; a++) {
        append(cmdline, sizeof cmdline, &used, " %s", argv[a]);
    }

    ck_assert_msg(pipe2(out_pipe, O_CLOEXEC) == 0 && pipe2(err_pipe, O_CLOEXEC) == 0,
                  "tc: pipe: %s", strerror(errno));
    pid = spawn(argv, NULL, out_pipe[1], err_pipe[1]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    ck_assert_msg(pid > 0, "tc: fork: %s", strerror(errno));

    deadline = tc_now_ms() + TC_CTL_TIMEOUT_MS;
    while ((out_open || err_open) && !timed_out) {
        struct pollfd p[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0},
                              {err_open ? err_pipe[0] : -1, POLLIN, 0}};
        int64_t left = deadline - tc_now_ms();
        int rv;
        if (left <= 0) {
            timed_out = true;
            break;
        }
        rv = poll(p, 2, (int)left);
        if (rv < 0 && errno == EINTR) {
            continue;
        }
        ck_assert_msg(rv >= 0, "tc: poll: %s", strerror(errno));
        for (int s = 0; s < 2; s++) {
            struct dbuf *b = s == 0 ? &out : &err;
            bool *open_flag = s == 0 ? &out_open : &err_open;
            char chunk[4096];
            ssize_t r;
            if (!(p[s].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            r = read(p[s].fd, chunk, sizeof chunk);
            if (r > 0) {
                if (b->len + (size_t)r <= MAX_CTL_OUTPUT) {
                    dbuf_add(b, chunk, (size_t)r);
                }
            } else if (r == 0 || errno != EINTR) {
                *open_flag = false;
            }
        }
    }
    close(out_pipe[0]);
    close(err_pipe[0]);
    if (!timed_out) {
        int64_t left = deadline - tc_now_ms();
        timed_out = reap(pid, left > 0 ? (int)left : 0, &st) != 0;
    }
    if (timed_out) {
        kill(pid, SIGKILL);
        reap(pid, 5000, &st);
        ck_abort_msg("tc: ballastctl%s did not finish within %d ms; stdout: %.500s; stderr: "
                     "%.500s",
                     cmdline, TC_CTL_TIMEOUT_MS, out.p ? out.p : "", err.p ? err.p : "");
    }
    if (st >= 0 && WIFEXITED(st)) {
        code = WEXITSTATUS(st);
    } else if (st >= 0 && WIFSIGNALED(st)) {
        code = 128 + WTERMSIG(st);
    } else {
        code = -1;
    }
    if (res != NULL) {
        res->status = code;
        res->out = dbuf_take(&out, NULL);
        res->err = dbuf_take(&err, NULL);
    } else {
        free(out.p);
        free(err.p);
    }
    return code;
}

void tc_ctl_free(struct tc_ctl_result *res)
{
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof *res);
}
