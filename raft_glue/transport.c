/* The peer transport: canonical/raft's raft_uv_transport over TCP, with peer
 * names resolved afresh at every connection, and the probe protocol.
 *
 * Connect, the happy path: raft calls connect() with a peer's "HOST:PORT".
 * A TCP handle (raft_malloc'd: raft frees it with its own heap) and a
 * deadline timer are opened. The host is resolved: a literal as it is,
 * otherwise the hosts file is read (now, synchronously: it is small, and it
 * may have changed since the last attempt) and then uv_getaddrinfo asked;
 * nothing is cached, so a peer whose name moved to a new IP is found at the
 * next attempt. If our listen host is a specific IP, the socket is bound to
 * it (port 0) so the peer sees us coming from our own address. Then
 * uv_tcp_connect, then the handshake is written (uint64 LE protocol version
 * 1, our server id, the length of our address padded to 8 bytes, the padded
 * address: canonical/raft 0.15's format), and raft's callback gets the
 * stream, which is raft's from then on.
 *
 * Connect, the failure modes: a resolution that finds nothing, a refused or
 * failed connect, a failed write, or the deadline passing first end the
 * attempt with RAFT_NOCONNECTION (raft retries after its connect retry
 * delay); close() ends every attempt in flight with RAFT_CANCELED. Either
 * way the handles are closed first and raft's callback runs from the last
 * close callback, so it always comes after connect() returned. A name lookup
 * still running in the thread pool is cut loose: it owns itself and frees
 * itself when libuv reports it. A name that stops resolving, or resolves to
 * a new address, is logged once per change, not once per retry.
 *
 * Accept, the happy path: listen() binds the bind address and accepts.
 * Each connection gets its own deadline timer and is read through a window
 * that never goes past the current field, so not one byte of what follows
 * the handshake is taken from raft: 8 bytes (protocol version 1, or the
 * probe magic), then id and address length, then the address. Raft's accept
 * callback then gets the id, the address and the stream.
 *
 * Accept, the failure modes: anything but version 1 or the probe magic, a
 * zero id, an address length of 0 or over BL_TRANSPORT_MAX_ADDRESS (checked
 * before anything is read into it; the address buffer is part of the
 * connection's state, never allocated from the wire), a peer that hangs up,
 * or the handshake deadline passing: the connection is closed. close()
 * closes every connection still in its handshake.
 *
 * Probe: a connection opening with "BLPROBE1" carries a uint64 LE length (at
 * most BL_PROBE_MAX, checked before the request buffer is allocated) and the
 * request. The handler's reply goes back as a length and the bytes, then
 * the connection is closed; with no handler, or if it declines, it is closed
 * at once. bl_transport_probe is the client: it resolves like connect(),
 * writes magic, length and request, and reads the reply, all under one
 * deadline; its callback runs once, after its handles are closed.
 *
 * Close: close() cancels connects, closes handshaking connections and the
 * listener, and opens and closes one more timer handle so that raft's close
 * callback is always asynchronous; raft's callback runs when the last of
 * these handles is closed. bl_transport_close then frees the rest.
 *
 * Established connections use TCP_NODELAY, keepalive and TCP_USER_TIMEOUT:
 * raft notices a broken connection only when a write fails, and without a
 * user timeout writes to a peer that vanished with its IP (a rescheduled
 * pod) keep "succeeding" into the send buffer for many minutes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strtok_r, strcasecmp, getaddrinfo, TCP_USER_TIMEOUT */
#endif

#include "transport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "error.h"
#include "log.h"

#define PROTOCOL_VERSION 1 /* canonical/raft's handshake protocol */
#define PROBE_MAGIC      "BLPROBE1"
#define MAX_HOST         255
#define LISTEN_BACKLOG   128
#define KEEPALIVE_S      15
#define USER_TIMEOUT_MS  10000
#define HOSTS_LINE       1024
#define NOTES            16 /* peers whose last resolution is remembered for logging */

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- addresses and resolution -------------------------------------------- */

struct hostport {
    char host[MAX_HOST + 1]; /* without brackets */
    char port[6];
    unsigned port_num;
    int family; /* AF_INET or AF_INET6 for a literal, AF_UNSPEC for a name */
};

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Split "HOST:PORT" / "[V6]:PORT". Returns 0 or BL_EBADREQ. */
static int parse_address(const char *address, struct hostport *hp)
{
    const char *host = address, *host_end, *port;
    unsigned char buf[sizeof(struct in6_addr)];
    size_t host_len, port_len;
    unsigned long n = 0;

    if (address == NULL) {
        return BL_EBADREQ;
    }
    if (address[0] == '[') {
        host = address + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':') {
            return BL_EBADREQ;
        }
        port = host_end + 2;
    } else {
        host_end = strrchr(address, ':');
        if (host_end == NULL) {
            return BL_EBADREQ;
        }
        port = host_end + 1;
    }
    host_len = (size_t)(host_end - host);
    port_len = strlen(port);
    if (host_len == 0 || host_len > MAX_HOST || port_len == 0 || port_len > 5) {
        return BL_EBADREQ;
    }
    for (size_t i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9') {
            return BL_EBADREQ;
        }
        n = n * 10 + (unsigned long)(port[i] - '0');
    }
    if (n > 65535) {
        return BL_EBADREQ;
    }
    memcpy(hp->host, host, host_len);
    hp->host[host_len] = '\0';
    snprintf(hp->port, sizeof hp->port, "%lu", n);
    hp->port_num = (unsigned)n;
    if (address[0] == '[') {
        if (inet_pton(AF_INET6, hp->host, buf) != 1) {
            return BL_EBADREQ;
        }
        hp->family = AF_INET6;
    } else if (inet_pton(AF_INET, hp->host, buf) == 1) {
        hp->family = AF_INET;
    } else {
        /* A name: no ':' (an unbracketed IPv6 literal), no blanks. */
        if (strpbrk(hp->host, ": \t\r\n[]") != NULL) {
            return BL_EBADREQ;
        }
        hp->family = AF_UNSPEC;
    }
    return 0;
}

/* Fill @sa from an IP literal and a port. Returns 0 or BL_EBADREQ. */
static int make_sockaddr(const char *ip, unsigned port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof *sa);
    if (strchr(ip, ':') != NULL) {
        return uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)sa) == 0 ? 0 : BL_EBADREQ;
    }
    return uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)sa) == 0 ? 0 : BL_EBADREQ;
}

static void sockaddr_ip(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, out, len);
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, out, len);
    }
}

static bool is_unspecified(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &in6addr_any,
                  sizeof in6addr_any) == 0;
}

static const char *hosts_path(const char *option)
{
    return option != NULL ? option : getenv(BL_HOSTS_FILE_ENV);
}

/* Look @name up in the hosts file at @path ("IP name [name...]", '#'
 * comments; the first line naming it wins). Returns 0 with the IP in @ip, or
 * BL_ENOTFOUND (not there, no file, unreadable file). */
static int hosts_lookup(const char *path, const char *name, char *ip, size_t len)
{
    char line[HOSTS_LINE];
    bool found = false;
    FILE *f;

    if (path == NULL || path[0] == '\0') {
        return BL_ENOTFOUND;
    }
    f = fopen(path, "re");
    if (f == NULL) {
        return BL_ENOTFOUND;
    }
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char *save = NULL, *addr, *tok, *hash;
        unsigned char buf[sizeof(struct in6_addr)];
        if (strchr(line, '\n') == NULL && !feof(f)) {
            int ch; /* an overlong line: skip it whole */
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
            }
            continue;
        }
        hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        addr = strtok_r(line, " \t\r\n", &save);
        if (addr == NULL || strlen(addr) >= len ||
            (inet_pton(AF_INET, addr, buf) != 1 && inet_pton(AF_INET6, addr, buf) != 1)) {
            continue;
        }
        while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
            if (strcasecmp(tok, name) == 0) {
                memcpy(ip, addr, strlen(addr) + 1);
                found = true;
                break;
            }
        }
    }
    fclose(f);
    return found ? 0 : BL_ENOTFOUND;
}

/* The first address of @res of @family (AF_UNSPEC: any), else the first. */
static const struct addrinfo *pick_address(const struct addrinfo *res, int family)
{
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
            (family == AF_UNSPEC || a->ai_family == family)) {
            return a;
        }
    }
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
            return a;
        }
    }
    return NULL;
}

/* Resolve what needs no waiting: a literal, or a name in the hosts file.
 * Returns 0 with @sa filled, or BL_ENOTFOUND. */
static int resolve_now(const struct hostport *hp, const char *hosts_file,
                       struct sockaddr_storage *sa)
{
    char ip[INET6_ADDRSTRLEN];
    if (hp->family != AF_UNSPEC) {
        return make_sockaddr(hp->host, hp->port_num, sa);
    }
    if (hosts_lookup(hosts_path(hosts_file), hp->host, ip, sizeof ip) == 0) {
        return make_sockaddr(ip, hp->port_num, sa) == 0 ? 0 : BL_ENOTFOUND;
    }
    return BL_ENOTFOUND;
}

/* Resolve synchronously: resolve_now, then a blocking getaddrinfo. */
static int resolve_sync(const struct hostport *hp, const char *hosts_file,
                        struct sockaddr_storage *sa)
{
    struct addrinfo hints, *res = NULL;
    const struct addrinfo *a;
    int rv;

    if (resolve_now(hp, hosts_file, sa) == 0) {
        return 0;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(hp->host, hp->port, &hints, &res) != 0) {
        return BL_ENOTFOUND;
    }
    a = pick_address(res, AF_UNSPEC);
    rv = BL_ENOTFOUND;
    if (a != NULL && a->ai_addrlen <= sizeof *sa) {
        memset(sa, 0, sizeof *sa);
        memcpy(sa, a->ai_addr, a->ai_addrlen);
        rv = 0;
    }
    freeaddrinfo(res);
    return rv;
}

/* A name lookup in the thread pool. If its owner gives up first, owner is
 * set to NULL and the lookup frees itself when libuv reports it. */
typedef void (*resolve_done_fn)(void *owner, int status, const struct sockaddr *sa);

struct resolve {
    uv_getaddrinfo_t gai;
    resolve_done_fn done;
    void *owner;
    int family; /* preferred address family */
};

static void resolve_cb(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct resolve *r = CONTAINER_OF(gai, struct resolve, gai);
    if (r->owner != NULL) {
        const struct addrinfo *a = status == 0 ? pick_address(res, r->family) : NULL;
        if (status == 0 && a == NULL) {
            status = UV_EAI_NONAME;
        }
        r->done(r->owner, status, a != NULL ? a->ai_addr : NULL);
    }
    if (res != NULL) {
        uv_freeaddrinfo(res);
    }
    free(r);
}

/* Start resolving @hp. Returns 0 with @sa filled now, 1 with a lookup
 * started (*@out, which calls @done later), or a negative libuv code. */
static int resolve_start(uv_loop_t *loop, const struct hostport *hp, const char *hosts_file,
                         int family, resolve_done_fn done, void *owner, struct sockaddr_storage *sa,
                         struct resolve **out)
{
    struct addrinfo hints;
    struct resolve *r;
    int rv;

    if (resolve_now(hp, hosts_file, sa) == 0) {
        return 0;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return UV_ENOMEM;
    }
    r->done = done;
    r->owner = owner;
    r->family = family;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rv = uv_getaddrinfo(loop, &r->gai, resolve_cb, hp->host, hp->port, &hints);
    if (rv != 0) {
        free(r);
        return rv;
    }
    *out = r;
    return 1;
}

/* The owner gives up on @r. */
static void resolve_detach(struct resolve *r)
{
    r->owner = NULL;
    uv_cancel((uv_req_t *)&r->gai);
}

/* Set the options of an established connection; failures are harmless. */
static void tune_socket(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, KEEPALIVE_S);
#ifdef TCP_USER_TIMEOUT
    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
        unsigned ms = USER_TIMEOUT_MS;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    }
#else
    (void)fd;
#endif
}

/* Bind @tcp to @src (if any, and of the family of @dst), then connect. */
static int tcp_start_connect(uv_tcp_t *tcp, uv_connect_t *req, const struct sockaddr *dst,
                             const struct sockaddr_storage *src, uv_connect_cb cb)
{
    int rv;
    if (src != NULL && src->ss_family == dst->sa_family) {
        rv = uv_tcp_bind(tcp, (const struct sockaddr *)src, 0);
        if (rv != 0) {
            return rv;
        }
    }
    return uv_tcp_connect(req, tcp, dst, cb);
}

/* ---- the transport ----------------------------------------------------------- */

struct connect;
struct incoming;

struct note {
    char *address;
    char state[96]; /* the last IP, or "!" and the last error */
};

struct bl_transport {
    struct raft_uv_transport *iface;
    uv_loop_t *loop;
    raft_id id;
    char *bind_address; /* NULL: the address given to init() */
    char *hosts_file;   /* NULL: BALLAST_HOSTS_FILE */
    bl_probe_handler probe_cb;
    void *probe_arg;
    unsigned connect_timeout_ms;
    unsigned handshake_timeout_ms;

    unsigned char handshake[24 + BL_TRANSPORT_MAX_ADDRESS];
    size_t handshake_len;
    struct sockaddr_storage src; /* outgoing connections bind here */
    bool has_src;
    bool warned_src;

    uv_tcp_t listener;
    bool listener_open; /* initialized, not yet closed */
    bool listening;
    raft_uv_accept_cb accept_cb;

    struct connect *connects;   /* attempts in flight */
    struct incoming *incomings; /* connections in their handshake */
    unsigned handles;           /* handles not yet closed */

    bool closing;
    bool close_fired;
    uv_timer_t closer;
    raft_uv_transport_close_cb close_cb;

    struct note notes[NOTES];
    unsigned next_note;
};

static void maybe_fire_close(struct bl_transport *t)
{
    if (t->closing && !t->close_fired && t->handles == 0) {
        t->close_fired = true;
        if (t->close_cb != NULL) {
            t->close_cb(t->iface);
        }
    }
}

/* Log a peer's resolution when it differs from the last one logged. */
static void note_resolution(struct bl_transport *t, const char *address, const char *ip,
                            const char *error)
{
    char state[sizeof t->notes[0].state];
    struct note *n = NULL;

    snprintf(state, sizeof state, "%s%s", error != NULL ? "!" : "", error != NULL ? error : ip);
    for (unsigned i = 0; i < NOTES; i++) {
        if (t->notes[i].address != NULL && strcmp(t->notes[i].address, address) == 0) {
            n = &t->notes[i];
            break;
        }
    }
    if (n != NULL && strcmp(n->state, state) == 0) {
        return;
    }
    if (error != NULL) {
        BL_WARN("transport: cannot resolve peer %s: %s", address, error);
    } else if (n != NULL && n->state[0] != '!') {
        BL_INFO("transport: peer %s now resolves to %s (was %s)", address, ip, n->state);
    } else if (n != NULL) {
        BL_INFO("transport: peer %s resolves again, to %s", address, ip);
    } else {
        BL_DEBUG("transport: peer %s resolves to %s", address, ip);
    }
    if (n == NULL) {
        char *copy = strdup(address);
        if (copy == NULL) {
            return;
        }
        n = &t->notes[t->next_note++ % NOTES];
        free(n->address);
        n->address = copy;
    }
    memcpy(n->state, state, sizeof state);
}

/* ---- connect ----------------------------------------------------------------- */

struct connect {
    struct bl_transport *t;
    struct raft_uv_connect *req;
    uv_tcp_t *tcp; /* raft_malloc'd; raft's once handed over */
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    struct resolve *resolve; /* lookup in flight */
    struct connect *prev, *next;
    struct hostport hp;
    char *address; /* for logging */
    unsigned open; /* handles not yet closed */
    int status;    /* for raft's callback, once finished */
    bool finished;
};

static void connect_unlink(struct connect *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        c->t->connects = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
}

static void connect_closed_cb(uv_handle_t *h)
{
    struct connect *c = h->data;
    struct bl_transport *t = c->t;

    if (h == (uv_handle_t *)c->tcp) {
        raft_free(c->tcp);
        c->tcp = NULL;
    }
    t->handles--;
    if (--c->open > 0) {
        return;
    }
    if (c->status != 0) {
        c->req->cb(c->req, NULL, c->status);
    }
    free(c->address);
    free(c);
    maybe_fire_close(t);
}

/* End the attempt: hand the stream to raft (status 0), or close it and call
 * raft back with @status once every handle is closed. */
static void connect_finish(struct connect *c, int status)
{
    uv_tcp_t *tcp = c->tcp;

    if (c->finished) {
        return;
    }
    c->finished = true;
    connect_unlink(c);
    if (c->resolve != NULL) {
        resolve_detach(c->resolve);
        c->resolve = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, connect_closed_cb);
    if (status == 0) {
        c->tcp = NULL;
        c->open--;
        c->t->handles--;
        tune_socket(tcp);
        c->req->cb(c->req, (uv_stream_t *)tcp, 0);
        return;
    }
    c->status = status;
    uv_close((uv_handle_t *)tcp, connect_closed_cb);
}

static void connect_timeout_cb(uv_timer_t *timer)
{
    connect_finish(timer->data, RAFT_NOCONNECTION);
}

static void connect_write_cb(uv_write_t *w, int status)
{
    struct connect *c = w->data;
    if (c->finished) {
        return; /* canceled: the close callbacks report it */
    }
    connect_finish(c, status == 0 ? 0 : RAFT_NOCONNECTION);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct connect *c = req->data;
    struct bl_transport *t = c->t;
    uv_buf_t buf;

    if (c->finished) {
        return;
    }
    if (status != 0) {
        connect_finish(c, RAFT_NOCONNECTION);
        return;
    }
    buf = uv_buf_init((char *)t->handshake, (unsigned)t->handshake_len);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)c->tcp, &buf, 1, connect_write_cb) != 0) {
        connect_finish(c, RAFT_NOCONNECTION);
    }
}

static void connect_to(struct connect *c, const struct sockaddr *dst)
{
    struct bl_transport *t = c->t;
    int rv;

    c->connect.data = c;
    rv = tcp_start_connect(c->tcp, &c->connect, dst, t->has_src ? &t->src : NULL, connect_cb);
    if (rv != 0) {
        if (rv == UV_EADDRNOTAVAIL && !t->warned_src) {
            char ip[INET6_ADDRSTRLEN];
            sockaddr_ip((const struct sockaddr *)&t->src, ip, sizeof ip);
            BL_WARN("transport: cannot bind outgoing connections to %s: %s", ip, uv_strerror(rv));
            t->warned_src = true;
        }
        connect_finish(c, RAFT_NOCONNECTION);
    }
}

static void connect_resolved(void *owner, int status, const struct sockaddr *sa)
{
    struct connect *c = owner;
    char ip[INET6_ADDRSTRLEN];

    c->resolve = NULL;
    if (status != 0) {
        note_resolution(c->t, c->address, NULL, uv_strerror(status));
        connect_finish(c, RAFT_NOCONNECTION);
        return;
    }
    sockaddr_ip(sa, ip, sizeof ip);
    note_resolution(c->t, c->address, ip, NULL);
    connect_to(c, sa);
}

/* Implementation of raft_uv_transport->connect. */
static int transport_connect(struct raft_uv_transport *iface, struct raft_uv_connect *req,
                             raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct bl_transport *t = iface->impl;
    struct sockaddr_storage sa;
    struct connect *c;
    int rv;

    if (t->closing) {
        return RAFT_CANCELED;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return RAFT_NOMEM;
    }
    if (parse_address(address, &c->hp) != 0) {
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE,
                 "server %llu: address '%.100s' is not HOST:PORT", id, address);
        free(c);
        return RAFT_NOCONNECTION;
    }
    c->address = strdup(address);
    c->tcp = raft_malloc(sizeof *c->tcp);
    if (c->address == NULL || c->tcp == NULL) {
        free(c->address);
        raft_free(c->tcp);
        free(c);
        return RAFT_NOMEM;
    }
    c->t = t;
    c->req = req;
    req->cb = cb;
    uv_tcp_init(t->loop, c->tcp);
    uv_timer_init(t->loop, &c->timer);
    c->tcp->data = c;
    c->timer.data = c;
    c->open = 2;
    t->handles += 2;
    c->next = t->connects;
    if (t->connects != NULL) {
        t->connects->prev = c;
    }
    t->connects = c;
    uv_timer_start(&c->timer, connect_timeout_cb, t->connect_timeout_ms, 0);

    /* From here on every failure goes through the callback. */
    rv = resolve_start(t->loop, &c->hp, t->hosts_file, t->has_src ? t->src.ss_family : AF_UNSPEC,
                       connect_resolved, c, &sa, &c->resolve);
    if (rv == 0) {
        if (c->hp.family == AF_UNSPEC) {
            char ip[INET6_ADDRSTRLEN];
            sockaddr_ip((const struct sockaddr *)&sa, ip, sizeof ip);
            note_resolution(t, c->address, ip, NULL);
        }
        connect_to(c, (const struct sockaddr *)&sa);
    } else if (rv < 0) {
        note_resolution(t, c->address, NULL, uv_strerror(rv));
        connect_finish(c, RAFT_NOCONNECTION);
    }
    return 0;
}

/* ---- accept ------------------------------------------------------------------ */

enum incoming_phase {
    IN_MAGIC,      /* 8 bytes: protocol version or probe magic */
    IN_RAFT_HEAD,  /* server id, address length */
    IN_RAFT_ADDR,  /* the padded address */
    IN_PROBE_LEN,  /* request length */
    IN_PROBE_BODY, /* the request */
    IN_PROBE_REPLY /* writing the reply */
};

struct incoming {
    struct bl_transport *t;
    uv_tcp_t *tcp; /* raft_malloc'd; raft's once handed over */
    uv_timer_t timer;
    uv_write_t write;
    struct incoming *prev, *next;
    int phase;
    char *cur; /* the read window: need bytes at cur, got of them so far */
    size_t need, got;
    unsigned char head[24];
    char *body; /* probe request */
    void *reply;
    unsigned char reply_head[8];
    unsigned open; /* handles not yet closed */
    bool aborted;
    char address[BL_TRANSPORT_MAX_ADDRESS + 1];
};

static void incoming_unlink(struct incoming *in)
{
    if (in->prev != NULL) {
        in->prev->next = in->next;
    } else {
        in->t->incomings = in->next;
    }
    if (in->next != NULL) {
        in->next->prev = in->prev;
    }
    in->prev = in->next = NULL;
}

static void incoming_closed_cb(uv_handle_t *h)
{
    struct incoming *in = h->data;
    struct bl_transport *t = in->t;

    if (h == (uv_handle_t *)in->tcp) {
        raft_free(in->tcp);
        in->tcp = NULL;
    }
    t->handles--;
    if (--in->open > 0) {
        return;
    }
    free(in->body);
    free(in->reply);
    free(in);
    maybe_fire_close(t);
}

static void incoming_abort(struct incoming *in)
{
    if (in->aborted) {
        return;
    }
    in->aborted = true;
    incoming_unlink(in);
    uv_close((uv_handle_t *)in->tcp, incoming_closed_cb);
    uv_close((uv_handle_t *)&in->timer, incoming_closed_cb);
}

static void incoming_expect(struct incoming *in, int phase, void *buf, size_t need)
{
    in->phase = phase;
    in->cur = buf;
    in->need = need;
    in->got = 0;
}

static void incoming_timeout_cb(uv_timer_t *timer)
{
    incoming_abort(timer->data);
}

static void incoming_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct incoming *in = h->data;
    (void)suggested;
    *buf = uv_buf_init(in->cur + in->got, (unsigned)(in->need - in->got));
}

/* The handshake is complete: the stream is raft's. */
static void incoming_handover(struct incoming *in)
{
    struct bl_transport *t = in->t;
    uv_tcp_t *tcp = in->tcp;
    raft_id id = get64(in->head + 8);

    uv_read_stop((uv_stream_t *)tcp);
    incoming_unlink(in);
    in->aborted = true; /* nothing left to abort */
    in->tcp = NULL;
    in->open--;
    t->handles--;
    uv_timer_stop(&in->timer);
    uv_close((uv_handle_t *)&in->timer, incoming_closed_cb); /* in->address lives on */
    tune_socket(tcp);
    t->accept_cb(t->iface, id, in->address, (uv_stream_t *)tcp);
}

static void probe_reply_written_cb(uv_write_t *w, int status)
{
    (void)status;
    incoming_abort(w->data); /* done either way; no-op if already closing */
}

/* The probe request is in: ask the handler, write its reply. */
static void incoming_answer(struct incoming *in)
{
    struct bl_transport *t = in->t;
    size_t reply_len = 0;
    uv_buf_t bufs[2];
    int rv;

    uv_read_stop((uv_stream_t *)in->tcp);
    in->phase = IN_PROBE_REPLY;
    rv = t->probe_cb(t->probe_arg, in->body, in->need, &in->reply, &reply_len);
    free(in->body);
    in->body = NULL;
    if (rv != 0) {
        incoming_abort(in);
        return;
    }
    if (reply_len > BL_PROBE_MAX) {
        BL_WARN("transport: probe reply of %zu bytes is over the limit", reply_len);
        incoming_abort(in);
        return;
    }
    put64(in->reply_head, reply_len);
    bufs[0] = uv_buf_init((char *)in->reply_head, sizeof in->reply_head);
    bufs[1] = uv_buf_init(in->reply, (unsigned)reply_len);
    in->write.data = in;
    if (uv_write(&in->write, (uv_stream_t *)in->tcp, bufs, reply_len > 0 ? 2 : 1,
                 probe_reply_written_cb) != 0) {
        incoming_abort(in);
    }
}

/* The current field is complete: decide what comes next. */
static void incoming_advance(struct incoming *in)
{
    static const unsigned char version[8] = {PROTOCOL_VERSION};
    uint64_t len;

    switch (in->phase) {
    case IN_MAGIC:
        if (memcmp(in->head, version, 8) == 0) {
            incoming_expect(in, IN_RAFT_HEAD, in->head + 8, 16);
        } else if (memcmp(in->head, PROBE_MAGIC, 8) == 0 && in->t->probe_cb != NULL) {
            incoming_expect(in, IN_PROBE_LEN, in->head + 8, 8);
        } else {
            incoming_abort(in);
        }
        return;
    case IN_RAFT_HEAD:
        len = get64(in->head + 16);
        if (get64(in->head + 8) == 0 || len == 0 || len > BL_TRANSPORT_MAX_ADDRESS) {
            incoming_abort(in);
            return;
        }
        incoming_expect(in, IN_RAFT_ADDR, in->address, (size_t)len);
        return;
    case IN_RAFT_ADDR:
        in->address[in->need] = '\0'; /* the padding holds the NUL; make sure */
        incoming_handover(in);
        return;
    case IN_PROBE_LEN:
        len = get64(in->head + 8);
        if (len > BL_PROBE_MAX) {
            incoming_abort(in);
            return;
        }
        in->body = malloc(len > 0 ? (size_t)len : 1);
        if (in->body == NULL) {
            incoming_abort(in);
            return;
        }
        incoming_expect(in, IN_PROBE_BODY, in->body, (size_t)len);
        if (len == 0) {
            incoming_answer(in);
        }
        return;
    case IN_PROBE_BODY:
        incoming_answer(in);
        return;
    default:
        return;
    }
}

static void incoming_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct incoming *in = stream->data;
    (void)buf;

    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        incoming_abort(in);
        return;
    }
    in->got += (size_t)nread;
    if (in->got == in->need) {
        incoming_advance(in);
    }
}

static void free_handle_cb(uv_handle_t *h)
{
    raft_free(h);
}

static void listen_cb(uv_stream_t *server, int status)
{
    struct bl_transport *t = server->data;
    struct incoming *in;

    if (status != 0) {
        BL_WARN("transport: accept: %s", uv_strerror(status));
        return;
    }
    in = calloc(1, sizeof *in);
    if (in != NULL) {
        in->tcp = raft_malloc(sizeof *in->tcp);
    }
    if (in == NULL || in->tcp == NULL) {
        uv_tcp_t *drop = raft_malloc(sizeof *drop); /* take it off the backlog if we can */
        if (drop != NULL) {
            uv_tcp_init(t->loop, drop);
            (void)uv_accept(server, (uv_stream_t *)drop);
            uv_close((uv_handle_t *)drop, free_handle_cb);
        }
        free(in);
        return;
    }
    in->t = t;
    uv_tcp_init(t->loop, in->tcp);
    uv_timer_init(t->loop, &in->timer);
    in->tcp->data = in;
    in->timer.data = in;
    in->open = 2;
    t->handles += 2;
    in->next = t->incomings;
    if (t->incomings != NULL) {
        t->incomings->prev = in;
    }
    t->incomings = in;
    incoming_expect(in, IN_MAGIC, in->head, 8);
    if (uv_accept(server, (uv_stream_t *)in->tcp) != 0 ||
        uv_read_start((uv_stream_t *)in->tcp, incoming_alloc_cb, incoming_read_cb) != 0) {
        incoming_abort(in);
        return;
    }
    uv_timer_start(&in->timer, incoming_timeout_cb, t->handshake_timeout_ms, 0);
}

/* Implementation of raft_uv_transport->listen. */
static int transport_listen(struct raft_uv_transport *iface, raft_uv_accept_cb cb)
{
    struct bl_transport *t = iface->impl;
    struct sockaddr_storage sa;
    struct hostport hp;
    int rv;

    assert(!t->listener_open && !t->closing);
    t->accept_cb = cb;
    if (parse_address(t->bind_address, &hp) != 0) {
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE, "bind address '%.100s' is not HOST:PORT",
                 t->bind_address);
        return RAFT_INVALID;
    }
    if (resolve_sync(&hp, t->hosts_file, &sa) != 0) {
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE, "bind address %.100s: cannot resolve %.100s",
                 t->bind_address, hp.host);
        return RAFT_IOERR;
    }
    uv_tcp_init(t->loop, &t->listener);
    t->listener.data = t;
    t->listener_open = true;
    t->handles++;
    rv = uv_tcp_bind(&t->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&t->listener, LISTEN_BACKLOG, listen_cb);
    }
    if (rv != 0) {
        /* The listener is closed by close(), which raft calls next. */
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE, "listen on %.100s: %s", t->bind_address,
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    t->listening = true;
    return 0;
}

/* ---- init and close ---------------------------------------------------------- */

/* Implementation of raft_uv_transport->init. */
static int transport_init(struct raft_uv_transport *iface, raft_id id, const char *address)
{
    struct bl_transport *t = iface->impl;
    size_t len = strlen(address) + 1, padded = (len + 7) & ~(size_t)7;
    struct hostport hp;

    if (padded > BL_TRANSPORT_MAX_ADDRESS) {
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE, "address of %zu bytes is too long", len);
        return RAFT_NAMETOOLONG;
    }
    if (t->bind_address == NULL) {
        t->bind_address = strdup(address);
        if (t->bind_address == NULL) {
            return RAFT_NOMEM;
        }
    }
    if (parse_address(t->bind_address, &hp) != 0) {
        snprintf(iface->errmsg, RAFT_ERRMSG_BUF_SIZE, "address '%.100s' is not HOST:PORT",
                 t->bind_address);
        return RAFT_INVALID;
    }
    t->has_src = false;
    if (hp.family != AF_UNSPEC && make_sockaddr(hp.host, 0, &t->src) == 0 &&
        !is_unspecified((const struct sockaddr *)&t->src)) {
        t->has_src = true;
    }
    t->id = id;
    memset(t->handshake, 0, sizeof t->handshake);
    put64(t->handshake, PROTOCOL_VERSION);
    put64(t->handshake + 8, id);
    put64(t->handshake + 16, padded);
    memcpy(t->handshake + 24, address, len);
    t->handshake_len = 24 + padded;
    return 0;
}

static void transport_handle_closed_cb(uv_handle_t *h)
{
    struct bl_transport *t = h->data;
    t->handles--;
    maybe_fire_close(t);
}

/* Implementation of raft_uv_transport->close. */
static void transport_close(struct raft_uv_transport *iface, raft_uv_transport_close_cb cb)
{
    struct bl_transport *t = iface->impl;

    assert(!t->closing);
    t->closing = true;
    t->close_cb = cb;
    while (t->connects != NULL) {
        connect_finish(t->connects, RAFT_CANCELED);
    }
    while (t->incomings != NULL) {
        incoming_abort(t->incomings);
    }
    if (t->listener_open) {
        t->listener_open = false;
        t->listening = false;
        uv_close((uv_handle_t *)&t->listener, transport_handle_closed_cb);
    }
    /* One more handle, so that @cb runs from a close callback even when
     * nothing else was open. */
    uv_timer_init(t->loop, &t->closer);
    t->closer.data = t;
    t->handles++;
    uv_close((uv_handle_t *)&t->closer, transport_handle_closed_cb);
}

int bl_transport_init(struct raft_uv_transport *iface, uv_loop_t *loop,
                      const struct bl_transport_opts *opts, char *errmsg)
{
    static const struct bl_transport_opts defaults;
    struct bl_transport *t;
    struct hostport hp;

    if (opts == NULL) {
        opts = &defaults;
    }
    if (opts->bind_address != NULL && parse_address(opts->bind_address, &hp) != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE,
                 "peer bind address '%.100s' is not HOST:PORT (IPv4, name or [IPv6])",
                 opts->bind_address);
        return BL_EBADREQ;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "transport: out of memory");
        return BL_ENOMEM;
    }
    t->iface = iface;
    t->loop = loop;
    t->probe_cb = opts->probe_cb;
    t->probe_arg = opts->probe_arg;
    t->connect_timeout_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : BL_TRANSPORT_CONNECT_TIMEOUT_MS;
    t->handshake_timeout_ms =
        opts->handshake_timeout_ms ? opts->handshake_timeout_ms : BL_TRANSPORT_HANDSHAKE_TIMEOUT_MS;
    if (opts->bind_address != NULL) {
        t->bind_address = strdup(opts->bind_address);
    }
    if (opts->hosts_file != NULL) {
        t->hosts_file = strdup(opts->hosts_file);
    }
    if ((opts->bind_address != NULL && t->bind_address == NULL) ||
        (opts->hosts_file != NULL && t->hosts_file == NULL)) {
        free(t->bind_address);
        free(t->hosts_file);
        free(t);
        snprintf(errmsg, BL_ERRMSG_SIZE, "transport: out of memory");
        return BL_ENOMEM;
    }
    memset(iface, 0, sizeof *iface);
    iface->impl = t;
    iface->init = transport_init;
    iface->listen = transport_listen;
    iface->connect = transport_connect;
    iface->close = transport_close;
    return 0;
}

void bl_transport_close(struct raft_uv_transport *iface)
{
    struct bl_transport *t = iface->impl;
    if (t == NULL) {
        return;
    }
    /* Handles still open here would be freed under libuv's feet. */
    assert(t->handles == 0);
    for (unsigned i = 0; i < NOTES; i++) {
        free(t->notes[i].address);
    }
    free(t->bind_address);
    free(t->hosts_file);
    free(t);
    iface->impl = NULL;
}

int bl_transport_port(const struct raft_uv_transport *iface)
{
    const struct bl_transport *t = iface->impl;
    struct sockaddr_storage sa;
    int len = sizeof sa;

    if (t == NULL || !t->listening ||
        uv_tcp_getsockname(&t->listener, (struct sockaddr *)&sa, &len) != 0) {
        return BL_EBADREQ;
    }
    if (sa.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

int bl_transport_resolve(const char *hosts_file, const char *host, char *ip_out, size_t len)
{
    struct sockaddr_storage sa;
    struct hostport hp;
    char ip[INET6_ADDRSTRLEN];
    unsigned char buf[sizeof(struct in6_addr)];
    size_t host_len = host != NULL ? strlen(host) : 0;

    if (host_len == 0 || host_len > MAX_HOST) {
        return BL_EBADREQ;
    }
    memcpy(hp.host, host, host_len + 1);
    memcpy(hp.port, "0", 2);
    hp.port_num = 0;
    hp.family = inet_pton(AF_INET, host, buf) == 1    ? AF_INET
                : inet_pton(AF_INET6, host, buf) == 1 ? AF_INET6
                                                      : AF_UNSPEC;
    if (resolve_sync(&hp, hosts_file, &sa) != 0) {
        return BL_ENOTFOUND;
    }
    sockaddr_ip((const struct sockaddr *)&sa, ip, sizeof ip);
    if (strlen(ip) >= len) {
        return BL_EBADREQ;
    }
    memcpy(ip_out, ip, strlen(ip) + 1);
    return 0;
}

/* ---- probe client ------------------------------------------------------------ */

struct probe {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    struct resolve *resolve;
    struct sockaddr_storage src;
    bool has_src;
    unsigned char len_buf[8];
    bool have_len;
    size_t got;
    char *reply;
    size_t reply_len;
    int status;
    bool finished;
    unsigned open;
    bl_probe_cb cb;
    void *arg;
    size_t msg_len;
    unsigned char msg[]; /* magic, length, request */
};

static void probe_closed_cb(uv_handle_t *h)
{
    struct probe *p = h->data;
    if (--p->open > 0) {
        return;
    }
    if (p->status == 0) {
        p->cb(p->arg, 0, p->reply_len > 0 ? p->reply : NULL, p->reply_len);
    } else {
        p->cb(p->arg, p->status, NULL, 0);
    }
    free(p->reply);
    free(p);
}

static void probe_finish(struct probe *p, int status)
{
    if (p->finished) {
        return;
    }
    p->finished = true;
    p->status = status;
    if (p->resolve != NULL) {
        resolve_detach(p->resolve);
        p->resolve = NULL;
    }
    uv_close((uv_handle_t *)&p->tcp, probe_closed_cb);
    uv_close((uv_handle_t *)&p->timer, probe_closed_cb);
}

static void probe_timeout_cb(uv_timer_t *timer)
{
    probe_finish(timer->data, BL_ETIMEOUT);
}

static void probe_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    (void)suggested;
    if (!p->have_len) {
        *buf = uv_buf_init((char *)p->len_buf + p->got, (unsigned)(sizeof p->len_buf - p->got));
    } else {
        *buf = uv_buf_init(p->reply + p->got, (unsigned)(p->reply_len - p->got));
    }
}

static void probe_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct probe *p = stream->data;
    (void)buf;

    if (p->finished || nread == 0) {
        return;
    }
    if (nread < 0) {
        probe_finish(p, nread == UV_EOF ? BL_EUNAVAILABLE : bl_from_uv((int)nread));
        return;
    }
    p->got += (size_t)nread;
    if (!p->have_len) {
        uint64_t len;
        if (p->got < sizeof p->len_buf) {
            return;
        }
        len = get64(p->len_buf);
        if (len > BL_PROBE_MAX) {
            probe_finish(p, BL_ETOOLARGE);
            return;
        }
        p->reply = malloc(len > 0 ? (size_t)len : 1);
        if (p->reply == NULL) {
            probe_finish(p, BL_ENOMEM);
            return;
        }
        p->reply_len = (size_t)len;
        p->have_len = true;
        p->got = 0;
    }
    if (p->got == p->reply_len) {
        probe_finish(p, 0);
    }
}

static void probe_write_cb(uv_write_t *w, int status)
{
    struct probe *p = w->data;
    if (!p->finished && status != 0) {
        probe_finish(p, bl_from_uv(status));
    }
}

static void probe_connect_cb(uv_connect_t *req, int status)
{
    struct probe *p = req->data;
    uv_buf_t buf;

    if (p->finished) {
        return;
    }
    if (status != 0) {
        probe_finish(p, bl_from_uv(status) == BL_ETIMEOUT ? BL_ETIMEOUT : BL_EUNAVAILABLE);
        return;
    }
    tune_socket(&p->tcp);
    buf = uv_buf_init((char *)p->msg, (unsigned)p->msg_len);
    p->write.data = p;
    if (uv_write(&p->write, (uv_stream_t *)&p->tcp, &buf, 1, probe_write_cb) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, probe_alloc_cb, probe_read_cb) != 0) {
        probe_finish(p, BL_EUNAVAILABLE);
    }
}

static void probe_connect_to(struct probe *p, const struct sockaddr *dst)
{
    p->connect.data = p;
    if (tcp_start_connect(&p->tcp, &p->connect, dst, p->has_src ? &p->src : NULL,
                          probe_connect_cb) != 0) {
        probe_finish(p, BL_EUNAVAILABLE);
    }
}

static void probe_resolved(void *owner, int status, const struct sockaddr *sa)
{
    struct probe *p = owner;
    p->resolve = NULL;
    if (status != 0) {
        probe_finish(p, BL_EUNAVAILABLE);
        return;
    }
    probe_connect_to(p, sa);
}

int bl_transport_probe(uv_loop_t *loop, const char *address, const char *bind_host, const void *req,
                       size_t len, unsigned timeout_ms, bl_probe_cb cb, void *arg)
{
    struct sockaddr_storage src, sa;
    bool has_src = false;
    struct hostport hp;
    struct probe *p;
    int rv;

    if (cb == NULL || parse_address(address, &hp) != 0 || (len > 0 && req == NULL)) {
        return BL_EBADREQ;
    }
    if (len > BL_PROBE_MAX) {
        return BL_ETOOLARGE;
    }
    if (bind_host != NULL && bind_host[0] != '\0') {
        char host[INET6_ADDRSTRLEN + 2];
        size_t n = strlen(bind_host);
        if (n >= sizeof host) {
            return BL_EBADREQ;
        }
        memcpy(host, bind_host, n + 1);
        if (host[0] == '[' && host[n - 1] == ']') { /* "[::1]" as well as "::1" */
            host[n - 1] = '\0';
            memmove(host, host + 1, n - 1);
        }
        if (make_sockaddr(host, 0, &src) != 0) {
            return BL_EBADREQ;
        }
        has_src = !is_unspecified((const struct sockaddr *)&src);
    }
    p = calloc(1, sizeof *p + 16 + len);
    if (p == NULL) {
        return BL_ENOMEM;
    }
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    p->has_src = has_src;
    if (has_src) {
        p->src = src;
    }
    memcpy(p->msg, PROBE_MAGIC, 8);
    put64(p->msg + 8, len);
    if (len > 0) {
        memcpy(p->msg + 16, req, len);
    }
    p->msg_len = 16 + len;
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->open = 2;
    uv_timer_start(&p->timer, probe_timeout_cb,
                   timeout_ms ? timeout_ms : BL_TRANSPORT_CONNECT_TIMEOUT_MS, 0);

    /* From here on every failure goes through the callback. */
    rv = resolve_start(loop, &hp, NULL, has_src ? src.ss_family : AF_UNSPEC, probe_resolved, p, &sa,
                       &p->resolve);
    if (rv == 0) {
        probe_connect_to(p, (const struct sockaddr *)&sa);
    } else if (rv < 0) {
        probe_finish(p, rv == UV_ENOMEM ? BL_ENOMEM : BL_EUNAVAILABLE);
    }
    return 0;
}
