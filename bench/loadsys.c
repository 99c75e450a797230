/* Systems under test for bench/load: start, watch and stop local 3-member
 * ballast or etcd clusters, or describe running ones; a blocking HTTP call
 * for the setup steps; CPU, RSS and disk readings from /proc and the data
 * directories.
 *
 * A started member is a fork()+execve() of the binary with its stdout and
 * stderr appended to a log file in the cluster directory, stdin from
 * /dev/null, the caller's BALLAST_* (ballast) or ETCD_* (etcd) environment
 * removed so that only the command line configures it, and
 * PR_SET_PDEATHSIG(SIGKILL) so that it never outlives the load generator.
 * Readiness is polled with short HTTP calls until a deadline; a member that
 * exited ends the wait at once with its log named in the message. Stopping
 * is SIGTERM, a bounded wait, then SIGKILL, always reaped. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loadsys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER_SIZE 3
#define POLL_MS      100
#define CALL_MS      1000 /* one readiness call */

extern char **environ;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *loadsys_name(enum loadsys_kind kind)
{
    return kind == LOADSYS_ETCD ? "etcd" : "ballast";
}

bool loadsys_json_u64(const char *s, size_t len, const char *field, uint64_t *out)
{
    char pat[64];
    const char *p, *end = s + len;
    uint64_t v = 0;
    int n = snprintf(pat, sizeof pat, "\"%s\":", field);

    if (n <= 0 || (size_t)n >= sizeof pat) {
        return false;
    }
    p = memmem(s, len, pat, (size_t)n);
    if (p == NULL) {
        return false;
    }
    p += n;
    if (p < end && *p == '"') {
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') {
        return false;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    *out = v;
    return true;
}

int loadsys_resolve(const char *addr, struct sockaddr_storage *sa, char *err, size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl;
    int rv;

    if (colon == NULL || colon == addr || colon[1] == '\0') {
        snprintf(err, err_len, "%s: not host:port", addr);
        return -1;
    }
    hl = (size_t)(colon - addr);
    if (hl >= sizeof host) {
        snprintf(err, err_len, "%s: host too long", addr);
        return -1;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    rv = getaddrinfo(host, colon + 1, &hints, &res);
    if (rv != 0 || res == NULL) {
        snprintf(err, err_len, "%s: %s", addr, rv ? gai_strerror(rv) : "no address");
        return -1;
    }
    memset(sa, 0, sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* --- blocking HTTP -------------------------------------------------------------- */

struct call {
    char *out;
    size_t out_len, used;
    bool done;
};

static int call_body_cb(http_parser *p, const char *at, size_t len)
{
    struct call *c = p->data;
    size_t room = c->out_len - 1 - c->used;
    if (len > room) {
        len = room;
    }
    memcpy(c->out + c->used, at, len);
    c->used += len;
    c->out[c->used] = '\0';
    return 0;
}

static int call_done_cb(http_parser *p)
{
    struct call *c = p->data;
    c->done = true;
    return 0;
}

/* Wait until @fd is ready for @events or @deadline (ms) passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int64_t left = deadline - mono_ms();
    int rv;
    if (left <= 0) {
        return -1;
    }
    do {
        rv = poll(&pfd, 1, (int)left);
    } while (rv < 0 && errno == EINTR);
    return rv > 0 ? 0 : -1;
}

int loadsys_http(const char *addr, const char *method, const char *path, const char *body,
                 size_t body_len, int timeout_ms, int *status, char *out, size_t out_len, char *err,
                 size_t err_len)
{
    struct sockaddr_storage sa;
    int64_t deadline = mono_ms() + timeout_ms;
    http_parser_settings settings;
    http_parser parser;
    struct call call = {.out = out, .out_len = out_len};
    char head[512], buf[4096];
    size_t head_len, off = 0;
    int fd, n, rv = -1;
    int soerr = 0;
    socklen_t slen = sizeof soerr;

    out[0] = '\0';
    if (loadsys_resolve(addr, &sa, err, err_len) != 0) {
        return -1;
    }
    n = snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 method, path, addr, body_len);
    if (n <= 0 || (size_t)n >= sizeof head) {
        snprintf(err, err_len, "request head too long");
        return -1;
    }
    head_len = (size_t)n;
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa,
                sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in)) != 0 &&
        errno != EINPROGRESS) {
        snprintf(err, err_len, "connect %s: %s", addr, strerror(errno));
        goto out;
    }
    if (wait_fd(fd, POLLOUT, deadline) != 0) {
        snprintf(err, err_len, "connect %s: timed out", addr);
        goto out;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
        snprintf(err, err_len, "connect %s: %s", addr, strerror(soerr ? soerr : errno));
        goto out;
    }
    /* Head, then body. */
    while (off < head_len + body_len) {
        const char *p = off < head_len ? head + off : body + (off - head_len);
        size_t len = off < head_len ? head_len - off : body_len - (off - head_len);
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) {
                snprintf(err, err_len, "%s: send timed out", addr);
                goto out;
            }
            continue;
        }
        if (w < 0) {
            snprintf(err, err_len, "%s: send: %s", addr, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    http_parser_settings_init(&settings);
    settings.on_body = call_body_cb;
    settings.on_message_complete = call_done_cb;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &call;
    while (!call.done) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline) != 0) {
                snprintf(err, err_len, "%s %s %s: no answer within %d ms", method, addr, path,
                         timeout_ms);
                goto out;
            }
            continue;
        }
        if (r < 0) {
            snprintf(err, err_len, "%s: recv: %s", addr, strerror(errno));
            goto out;
        }
        http_parser_execute(&parser, &settings, buf, (size_t)r);
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
            snprintf(err, err_len, "%s: bad response: %s", addr,
                     http_errno_description(HTTP_PARSER_ERRNO(&parser)));
            goto out;
        }
        if (r == 0 && !call.done) {
            snprintf(err, err_len, "%s: connection closed before the answer ended", addr);
            goto out;
        }
    }
    *status = (int)parser.status_code;
    rv = 0;
out:
    close(fd);
    return rv;
}

/* --- /proc ------------------------------------------------------------------------ */

double loadsys_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    const char *p;
    size_t n;
    FILE *f;

    if (pid <= 0) {
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt (fields 3..13), then utime stime (14, 15). */
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The fields of /proc/PID/status named @names (each "Name:"), in KiB, into
 * @out (-1 each when unknown). */
static void status_kib(pid_t pid, const char *const *names, long *const *out, int n)
{
    char path[64], line[256];
    FILE *f;

    for (int i = 0; i < n; i++) {
        *out[i] = -1;
    }
    if (pid <= 0) {
        return;
    }
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        for (int i = 0; i < n; i++) {
            size_t len = strlen(names[i]);
            if (strncmp(line, names[i], len) == 0) {
                *out[i] = strtol(line + len, NULL, 10);
            }
        }
    }
    fclose(f);
}

void loadsys_mem_kib(pid_t pid, long *rss_kib, long *hwm_kib)
{
    static const char *const names[] = {"VmRSS:", "VmHWM:"};
    long *const out[] = {rss_kib, hwm_kib};
    status_kib(pid, names, out, 2);
}

void loadsys_rss_split_kib(pid_t pid, long *anon_kib, long *file_kib)
{
    static const char *const names[] = {"RssAnon:", "RssFile:"};
    long *const out[] = {anon_kib, file_kib};
    status_kib(pid, names, out, 2);
}

static int64_t du_total;

static int du_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F || flag == FTW_D || flag == FTW_DP) {
        du_total += (int64_t)st->st_blocks * 512;
    }
    return 0;
}

int64_t loadsys_du(const char *dir)
{
    du_total = 0;
    if (nftw(dir, du_entry, 16, FTW_PHYS) != 0) {
        return -1;
    }
    return du_total;
}

/* --- clusters -------------------------------------------------------------------- */

int loadsys_attach(struct loadsys *s, enum loadsys_kind kind, const char *endpoints,
                   const char *pids, char *err, size_t err_len)
{
    const char *p = endpoints;

    memset(s, 0, sizeof *s);
    s->kind = kind;
    while (*p) {
        size_t len = strcspn(p, ",");
        struct loadsys_member *m;
        if (s->n == LOADSYS_MAX_MEMBERS) {
            snprintf(err, err_len, "more than %d endpoints", LOADSYS_MAX_MEMBERS);
            return -1;
        }
        m = &s->m[s->n];
        if (len == 0 || len >= sizeof m->client) {
            snprintf(err, err_len, "bad endpoint list \"%s\"", endpoints);
            return -1;
        }
        memcpy(m->client, p, len);
        m->client[len] = '\0';
        snprintf(m->name, sizeof m->name, "member-%d", s->n + 1);
        s->n++;
        p += len;
        p += *p == ',';
    }
    if (s->n == 0) {
        snprintf(err, err_len, "empty endpoint list");
        return -1;
    }
    for (int i = 0; pids != NULL && *pids; i++) {
        char *end;
        long v = strtol(pids, &end, 10);
        if (i == s->n || end == pids || v <= 0 || (*end != ',' && *end != '\0')) {
            snprintf(err, err_len, "--pids: one positive pid per endpoint, in the same order");
            return -1;
        }
        s->m[i].pid = (pid_t)v;
        pids = end + (*end == ',');
    }
    return 0;
}

/* Pick @n free ports on 127.0.0.1: bind all to port 0 at once, read them
 * back, release them. */
static int free_ports(int *ports, int n, char *err, size_t err_len)
{
    int fds[2 * LOADSYS_MAX_MEMBERS];
    int rv = 0, opened = 0;

    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        opened = i + 1;
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            snprintf(err, err_len, "cannot pick free ports: %s", strerror(errno));
            rv = -1;
            break;
        }
        ports[i] = ntohs(sa.sin_port);
    }
    for (int i = 0; i < opened; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    return rv;
}

/* @binary itself when it names a path, else its first match on $PATH. */
static int find_binary(const char *binary, char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (strchr(binary, '/') != NULL) {
        snprintf(out, n, "%s", binary);
        return access(out, X_OK);
    }
    while (path != NULL && *path) {
        size_t len = strcspn(path, ":");
        snprintf(out, n, "%.*s/%s", (int)len, path, binary);
        if (len > 0 && access(out, X_OK) == 0) {
            return 0;
        }
        path += len;
        path += *path == ':';
    }
    return -1;
}

/* environ without the variables starting with @prefix; NULL on no memory. */
static char **child_environ(const char *prefix)
{
    size_t n = 0, k = 0, pl = strlen(prefix);
    char **env;
    while (environ[n] != NULL) {
        n++;
    }
    env = calloc(n + 1, sizeof *env);
    for (size_t i = 0; env != NULL && i < n; i++) {
        if (strncmp(environ[i], prefix, pl) != 0) {
            env[k++] = environ[i];
        }
    }
    return env;
}

/* Fork and exec @argv with @env; the log at @log. Only async-signal-safe
 * calls in the child. */
static pid_t spawn(const char *path, char **argv, char **env, const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || fd < 0 || null < 0) {
            _exit(127);
        }
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execve(path, argv, env);
        _exit(127);
    }
    return pid;
}

int loadsys_start(struct loadsys *s, enum loadsys_kind kind, const char *binary, const char *dir,
                  int base_port, char *const *args, int n_args, char *err, size_t err_len)
{
    int ports[2 * CLUSTER_SIZE];
    char path[PATH_MAX], cluster[1024] = "";
    char ids[CLUSTER_SIZE][24], urls[CLUSTER_SIZE][2][80];
    char **env;
    int rv = 0;

    memset(s, 0, sizeof *s);
    s->kind = kind;
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir) {
        snprintf(err, err_len, "%s: path too long", dir);
        return -1;
    }
    if (find_binary(binary, path, sizeof path) != 0) {
        snprintf(err, err_len, "%s: not found or not executable", binary);
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (base_port > 0) {
        for (int i = 0; i < 2 * CLUSTER_SIZE; i++) {
            ports[i] = base_port + i;
        }
    } else if (free_ports(ports, 2 * CLUSTER_SIZE, err, err_len) != 0) {
        return -1;
    }
    for (int i = 0; i < CLUSTER_SIZE; i++) {
        struct loadsys_member *m = &s->m[i];
        size_t used = strlen(cluster);
        snprintf(m->client, sizeof m->client, "127.0.0.1:%d", ports[2 * i]);
        snprintf(m->peer, sizeof m->peer, "127.0.0.1:%d", ports[2 * i + 1]);
        if (kind == LOADSYS_BALLAST) {
            snprintf(m->name, sizeof m->name, "member-%d", i + 1);
            snprintf(m->dir, sizeof m->dir, "%s/%d", dir, i + 1);
            snprintf(m->log, sizeof m->log, "%s/member-%d.log", dir, i + 1);
            snprintf(cluster + used, sizeof cluster - used, "%s%d=%s", i ? "," : "", i + 1,
                     m->peer);
        } else {
            snprintf(m->name, sizeof m->name, "e%d", i + 1);
            snprintf(m->dir, sizeof m->dir, "%s/e%d", dir, i + 1);
            snprintf(m->log, sizeof m->log, "%s/e%d.log", dir, i + 1);
            snprintf(cluster + used, sizeof cluster - used, "%se%d=http://%s", i ? "," : "", i + 1,
                     m->peer);
        }
        snprintf(ids[i], sizeof ids[i], "%d", i + 1);
        snprintf(urls[i][0], sizeof urls[i][0], "http://%s", m->client);
        snprintf(urls[i][1], sizeof urls[i][1], "http://%s", m->peer);
    }
    s->n = CLUSTER_SIZE;
    s->started = true;
    env = child_environ(kind == LOADSYS_BALLAST ? "BALLAST_" : "ETCD_");
    if (env == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (int i = 0; i < CLUSTER_SIZE && rv == 0; i++) {
        struct loadsys_member *m = &s->m[i];
        char *argv[32 + LOADSYS_MAX_ARGS];
        int a = 0;
        argv[a++] = path;
        if (kind == LOADSYS_BALLAST) {
            argv[a++] = "--id";
            argv[a++] = ids[i];
            argv[a++] = "--name";
            argv[a++] = m->name;
            argv[a++] = "--data-dir";
            argv[a++] = m->dir;
            argv[a++] = "--listen-client";
            argv[a++] = m->client;
            argv[a++] = "--listen-peer";
            argv[a++] = m->peer;
        } else {
            argv[a++] = "--name";
            argv[a++] = m->name;
            argv[a++] = "--data-dir";
            argv[a++] = m->dir;
            argv[a++] = "--listen-client-urls";
            argv[a++] = urls[i][0];
            argv[a++] = "--advertise-client-urls";
            argv[a++] = urls[i][0];
            argv[a++] = "--listen-peer-urls";
            argv[a++] = urls[i][1];
            argv[a++] = "--initial-advertise-peer-urls";
            argv[a++] = urls[i][1];
            argv[a++] = "--initial-cluster-state";
            argv[a++] = "new";
            argv[a++] = "--initial-cluster-token";
            argv[a++] = "bench";
            argv[a++] = "--quota-backend-bytes";
            argv[a++] = "8589934592";
        }
        argv[a++] = "--initial-cluster";
        argv[a++] = cluster;
        for (int k = 0; k < n_args && k < LOADSYS_MAX_ARGS; k++) {
            argv[a++] = args[k];
        }
        argv[a] = NULL;
        m->pid = spawn(path, argv, env, m->log);
        if (m->pid < 0) {
            snprintf(err, err_len, "fork: %s", strerror(errno));
            m->pid = 0;
            rv = -1;
        }
    }
    free(env);
    return rv;
}

bool loadsys_running(struct loadsys *s, int i)
{
    struct loadsys_member *m = &s->m[i];
    if (!s->started) {
        return true;
    }
    if (m->pid <= 0) {
        return false;
    }
    if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
        m->pid = 0;
        return false;
    }
    return true;
}

/* One member's readiness; 0 or -1 with a reason in @why. For ballast the
 * leader it names into *@leader. */
static int member_ready(struct loadsys *s, int i, uint64_t *leader, char *why, size_t n)
{
    struct loadsys_member *m = &s->m[i];
    char body[4096], err[256];
    int status;

    if (s->kind == LOADSYS_ETCD) {
        if (loadsys_http(m->client, "GET", "/health", NULL, 0, CALL_MS, &status, body, sizeof body,
                         err, sizeof err) != 0) {
            snprintf(why, n, "%s: %s", m->name, err);
            return -1;
        }
        if (status != 200 || strstr(body, "\"health\":\"true\"") == NULL) {
            snprintf(why, n, "%s: /health %d %.200s", m->name, status, body);
            return -1;
        }
        return 0;
    }
    if (loadsys_http(m->client, "GET", "/v1/status", NULL, 0, CALL_MS, &status, body, sizeof body,
                     err, sizeof err) != 0) {
        snprintf(why, n, "%s: %s", m->name, err);
        return -1;
    }
    if (status != 200 || !loadsys_json_u64(body, strlen(body), "leader", leader) || *leader == 0) {
        snprintf(why, n, "%s: no leader yet (/v1/status %d)", m->name, status);
        return -1;
    }
    if (loadsys_http(m->client, "GET", "/readyz", NULL, 0, CALL_MS, &status, body, sizeof body, err,
                     sizeof err) != 0) {
        snprintf(why, n, "%s: %s", m->name, err);
        return -1;
    }
    if (status != 200) {
        snprintf(why, n, "%s: /readyz %d", m->name, status);
        return -1;
    }
    return 0;
}

int loadsys_wait_ready(struct loadsys *s, int timeout_ms, char *err, size_t err_len)
{
    int64_t deadline = mono_ms() + timeout_ms;

    snprintf(err, err_len, "nothing checked yet");
    for (;;) {
        uint64_t first = 0;
        bool ok = true;
        for (int i = 0; i < s->n && ok; i++) {
            uint64_t leader = 0;
            if (!loadsys_running(s, i)) {
                snprintf(err, err_len, "%s exited (see %s)", s->m[i].name, s->m[i].log);
                return -1;
            }
            if (member_ready(s, i, &leader, err, err_len) != 0) {
                ok = false;
            } else if (s->kind == LOADSYS_BALLAST && first != 0 && leader != first) {
                snprintf(err, err_len, "members disagree on the leader");
                ok = false;
            }
            first = first ? first : leader;
        }
        if (ok) {
            return 0;
        }
        if (mono_ms() + POLL_MS > deadline) {
            return -1;
        }
        sleep_ms(POLL_MS);
    }
}

int loadsys_leader(struct loadsys *s)
{
    for (int i = 0; i < s->n; i++) {
        char body[4096], err[256];
        int status;
        uint64_t self, leader;

        if (s->kind == LOADSYS_BALLAST) {
            if (loadsys_http(s->m[i].client, "GET", "/v1/status", NULL, 0, CALL_MS, &status, body,
                             sizeof body, err, sizeof err) == 0 &&
                status == 200 && strstr(body, "\"role\":\"leader\"") != NULL) {
                return i;
            }
            continue;
        }
        if (loadsys_http(s->m[i].client, "POST", "/v3/maintenance/status", "{}", 2, CALL_MS,
                         &status, body, sizeof body, err, sizeof err) == 0 &&
            status == 200 && loadsys_json_u64(body, strlen(body), "member_id", &self) &&
            loadsys_json_u64(body, strlen(body), "leader", &leader) && self == leader) {
            return i;
        }
    }
    return -1;
}

void loadsys_stop(struct loadsys *s, int grace_ms)
{
    int64_t deadline = mono_ms() + grace_ms;
    bool any;

    if (!s->started) {
        return;
    }
    for (int i = 0; i < s->n; i++) {
        if (s->m[i].pid > 0) {
            kill(s->m[i].pid, SIGTERM);
        }
    }
    do {
        any = false;
        for (int i = 0; i < s->n; i++) {
            any = loadsys_running(s, i) || any;
        }
        if (any) {
            sleep_ms(10);
        }
    } while (any && mono_ms() < deadline);
    for (int i = 0; i < s->n; i++) {
        if (s->m[i].pid > 0) {
            kill(s->m[i].pid, SIGKILL);
            waitpid(s->m[i].pid, NULL, 0);
            s->m[i].pid = 0;
        }
    }
}

void loadsys_kill_all_unsafe(const struct loadsys *s)
{
    for (int i = 0; s->started && i < s->n; i++) {
        if (s->m[i].pid > 0) {
            kill(s->m[i].pid, SIGKILL);
        }
    }
}
