/* The delay proxy: one thread, poll(), a queue of timed chunks per direction.
 *
 * Happy path. delayproxy_start() binds every listener and starts the
 * thread. A connection accepted from a member at IP S gets a partner socket
 * bound to S (port left to connect(), IP_BIND_ADDRESS_NO_PORT) and connected
 * without blocking to the route's target. Each pass of the loop first pumps:
 * for each direction it writes the chunks whose time has come, in order,
 * until the socket would block; then it polls the wake pipe, the listeners,
 * and each socket for reading (while its direction has room) and for
 * writing (only when a due chunk is blocked), with a timeout that ends at
 * the next chunk's time. Each read becomes one chunk (malloc'd, at most
 * CHUNK_SIZE bytes) due at max(now + delay + jitter, the previous chunk's
 * time), so a direction never reorders and a smaller later delay never
 * overtakes bytes already held.
 *
 * Failure modes. A reset, a failed read or write, or a failed connect to the
 * target closes both sockets of the connection at once (queued bytes are
 * dropped: what a broken link does). An end of stream from either side
 * closes both once the bytes read from that side before it have been
 * written. Too many connections: the new one is accepted and closed.
 * Errors of accept() on a listener are ignored (the next poll retries).
 *
 * Ownership: the proxy owns every socket and chunk; delayproxy_stop() joins
 * the thread, then closes and frees them all. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "delayproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The most one read takes in (one chunk). */
#define CHUNK_SIZE (16 * 1024)
/* Longest delay or jitter accepted, ms. */
#define MAX_DELAY_MS 60000

struct chunk {
    struct chunk *next;
    int64_t due_us; /* CLOCK_MONOTONIC time it may be written */
    size_t len, off;
    char data[];
};

/* One direction: bytes read from fd[k], written to fd[1 - k]. */
struct dir {
    struct chunk *head, *tail;
    size_t queued;
    int64_t last_due_us;
    bool eof;     /* the reading side ended its stream */
    bool blocked; /* a due chunk met a full socket: wait for POLLOUT */
};

struct pconn {
    int fd[2]; /* 0: accepted from a member, 1: to the route's target */
    bool connecting;
    bool dead; /* close at the next pump */
    struct dir d[2];
    int pi[2]; /* index of each fd in the poll array, or -1 */
};

struct delayproxy {
    pthread_t thread;
    int wake[2]; /* the pipe that interrupts poll() */
    int n_routes;
    int listeners[DELAYPROXY_MAX_ROUTES];
    struct sockaddr_in targets[DELAYPROXY_MAX_ROUTES];
    struct pconn *conns[DELAYPROXY_MAX_CONNS];
    int n_conns;
    uint64_t rng; /* jitter, the thread's alone */
    atomic_int delay_ms, jitter_ms;
    atomic_bool stop;
    atomic_uint_fast64_t accepted, bytes;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Parse "a.b.c.d:port" into @sa. 0 or -EINVAL. */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    char *end;
    long port;

    if (colon == NULL || (size_t)(colon - s) >= sizeof host) {
        return -EINVAL;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 || errno != 0 || *end != '\0' ||
        end == colon + 1 || port <= 0 || port > 65535) {
        return -EINVAL;
    }
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

/* --- connections ------------------------------------------------------------- */

static void conn_free(struct pconn *c)
{
    for (int k = 0; k < 2; k++) {
        struct chunk *ch = c->d[k].head;
        while (ch != NULL) {
            struct chunk *next = ch->next;
            free(ch);
            ch = next;
        }
        if (c->fd[k] >= 0) {
            close(c->fd[k]);
        }
    }
    free(c);
}

/* Accept one connection on listener @r and start connecting its partner. */
static void conn_accept(struct delayproxy *p, int r)
{
    struct sockaddr_in peer, src;
    socklen_t len = sizeof peer;
    struct pconn *c;
    int fd, out, one = 1, rv;

    fd = accept4(p->listeners[r], (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    atomic_fetch_add(&p->accepted, 1);
    if (p->n_conns == DELAYPROXY_MAX_CONNS || peer.sin_family != AF_INET ||
        (c = calloc(1, sizeof *c)) == NULL) {
        close(fd);
        return;
    }
    c->fd[0] = fd;
    c->fd[1] = -1;
    c->pi[0] = c->pi[1] = -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    out = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (out < 0) {
        conn_free(c);
        return;
    }
    c->fd[1] = out;
    setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(out, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    /* Leave from the connecting member's address: rules between members
     * then match this hop as they match the first. */
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr = peer.sin_addr;
    if (bind(out, (const struct sockaddr *)&src, sizeof src) != 0) {
        conn_free(c);
        return;
    }
    rv = connect(out, (const struct sockaddr *)&p->targets[r], sizeof p->targets[r]);
    if (rv != 0 && errno != EINPROGRESS) {
        conn_free(c);
        return;
    }
    c->connecting = rv != 0;
    p->conns[p->n_conns++] = c;
}

/* Read once from fd[@k] into a new chunk of direction @k. */
static void conn_read(struct delayproxy *p, struct pconn *c, int k)
{
    struct dir *d = &c->d[k];
    size_t room = DELAYPROXY_MAX_QUEUED - d->queued;
    struct chunk *ch;
    ssize_t n;
    int64_t due;
    int delay = atomic_load(&p->delay_ms), jitter = atomic_load(&p->jitter_ms);

    if (room > CHUNK_SIZE) {
        room = CHUNK_SIZE;
    }
    ch = malloc(sizeof *ch + room);
    if (ch == NULL) {
        return; /* try again at the next pass */
    }
    n = recv(c->fd[k], ch->data, room, 0);
    if (n <= 0) {
        free(ch);
        if (n == 0) {
            d->eof = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            c->dead = true;
        }
        return;
    }
    due = now_us() + (int64_t)delay * 1000;
    if (jitter > 0) {
        uint64_t x = p->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p->rng = x;
        due += (int64_t)((x * 0x2545F4914F6CDD1DULL) % ((uint64_t)jitter * 1000 + 1));
    }
    if (due < d->last_due_us) {
        due = d->last_due_us;
    }
    d->last_due_us = due;
    ch->next = NULL;
    ch->due_us = due;
    ch->len = (size_t)n;
    ch->off = 0;
    if (d->tail != NULL) {
        d->tail->next = ch;
    } else {
        d->head = ch;
    }
    d->tail = ch;
    d->queued += (size_t)n;
}

/* Write the due chunks of each direction; lower *@next_us to the time of
 * the next chunk that is not due yet. Marks @c dead when it is finished. */
static void conn_pump(struct delayproxy *p, struct pconn *c, int64_t now, int64_t *next_us)
{
    for (int k = 0; k < 2 && !c->dead; k++) {
        struct dir *d = &c->d[k];
        int out = c->fd[1 - k];

        d->blocked = false;
        if (c->connecting) {
            continue; /* nothing can be written either way yet */
        }
        while (d->head != NULL && d->head->due_us <= now) {
            struct chunk *ch = d->head;
            ssize_t n =
                send(out, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    d->blocked = true;
                } else {
                    c->dead = true;
                }
                break;
            }
            atomic_fetch_add(&p->bytes, (uint64_t)n);
            ch->off += (size_t)n;
            if (ch->off == ch->len) {
                d->head = ch->next;
                if (d->head == NULL) {
                    d->tail = NULL;
                }
                d->queued -= ch->len;
                free(ch);
            }
        }
        if (d->head != NULL && !d->blocked && d->head->due_us < *next_us) {
            *next_us = d->head->due_us;
        }
        if (d->head == NULL && d->eof) {
            c->dead = true; /* one side ended and all it sent is out */
        }
    }
}

/* The connect of fd[1] has finished (or failed). */
static void conn_connected(struct pconn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        c->dead = true;
        return;
    }
    c->connecting = false;
}

/* --- the thread ---------------------------------------------------------------- */

static void *proxy_run(void *arg)
{
    struct delayproxy *p = arg;
    static const int MAX_FDS = 1 + DELAYPROXY_MAX_ROUTES + 2 * DELAYPROXY_MAX_CONNS;
    struct pollfd *pfd = calloc((size_t)MAX_FDS, sizeof *pfd);

    if (pfd == NULL) {
        return NULL; /* the proxy forwards nothing; stop() still works */
    }
    while (!atomic_load(&p->stop)) {
        int64_t now = now_us(), next = now + 1000000;
        int n = 0, timeout;

        for (int i = 0; i < p->n_conns; i++) {
            conn_pump(p, p->conns[i], now, &next);
        }
        for (int i = 0; i < p->n_conns;) {
            if (p->conns[i]->dead) {
                conn_free(p->conns[i]);
                p->conns[i] = p->conns[--p->n_conns];
            } else {
                i++;
            }
        }
        pfd[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
        for (int r = 0; r < p->n_routes; r++) {
            pfd[n++] = (struct pollfd){p->listeners[r], POLLIN, 0};
        }
        for (int i = 0; i < p->n_conns; i++) {
            struct pconn *c = p->conns[i];
            for (int k = 0; k < 2; k++) {
                short ev = 0;
                if (k == 1 && c->connecting) {
                    ev = POLLOUT;
                } else {
                    if (!c->d[k].eof && c->d[k].queued < DELAYPROXY_MAX_QUEUED) {
                        ev |= POLLIN;
                    }
                    if (c->d[1 - k].blocked) {
                        ev |= POLLOUT;
                    }
                }
                c->pi[k] = n;
                pfd[n++] = (struct pollfd){c->fd[k], ev, 0};
            }
        }
        timeout = (int)((next - now + 999) / 1000);
        if (timeout < 0) {
            timeout = 0;
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            continue; /* EINTR */
        }
        if (pfd[0].revents != 0) {
            char buf[64];
            while (read(p->wake[0], buf, sizeof buf) > 0) {
            }
        }
        for (int i = 0; i < p->n_conns; i++) {
            struct pconn *c = p->conns[i];
            for (int k = 0; k < 2 && !c->dead; k++) {
                short rev = pfd[c->pi[k]].revents;
                if (rev == 0) {
                    continue;
                }
                if (k == 1 && c->connecting) {
                    conn_connected(c);
                    continue;
                }
                if (rev & (POLLERR | POLLHUP)) {
                    c->dead = true; /* reset: drop both sides now */
                } else if (rev & POLLIN) {
                    conn_read(p, c, k);
                }
            }
        }
        for (int r = 0; r < p->n_routes; r++) {
            if (pfd[1 + r].revents & POLLIN) {
                conn_accept(p, r);
            }
        }
    }
    free(pfd);
    return NULL;
}

/* --- the API ---------------------------------------------------------------------- */

static void proxy_free(struct delayproxy *p)
{
    for (int i = 0; i < p->n_conns; i++) {
        conn_free(p->conns[i]);
    }
    for (int r = 0; r < p->n_routes; r++) {
        close(p->listeners[r]);
    }
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}

int delayproxy_start(const struct delayproxy_route *routes, int n, struct delayproxy **out,
                     char errmsg[DELAYPROXY_ERRMSG_SIZE])
{
    struct delayproxy *p;
    int rv;

    if (n < 1 || n > DELAYPROXY_MAX_ROUTES) {
        snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: %d routes (1..%d)", n,
                 DELAYPROXY_MAX_ROUTES);
        return -EINVAL;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: out of memory");
        return -ENOMEM;
    }
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        rv = -errno;
        snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: pipe: %s", strerror(errno));
        free(p);
        return rv;
    }
    p->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)now_us();
    atomic_init(&p->delay_ms, 0);
    atomic_init(&p->jitter_ms, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->accepted, 0);
    atomic_init(&p->bytes, 0);
    for (int r = 0; r < n; r++) {
        struct sockaddr_in sa;
        int fd, one = 1;

        if (parse_addr(routes[r].listen, &sa) != 0 ||
            parse_addr(routes[r].target, &p->targets[r]) != 0) {
            snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE,
                     "delayproxy: route %d: '%.80s' -> '%.80s' is not IPv4:PORT -> IPv4:PORT", r,
                     routes[r].listen ? routes[r].listen : "(null)",
                     routes[r].target ? routes[r].target : "(null)");
            proxy_free(p);
            return -EINVAL;
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rv = -errno;
            snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: socket: %s", strerror(errno));
            proxy_free(p);
            return rv;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
            rv = -errno;
            snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: listen on %.80s: %s",
                     routes[r].listen, strerror(errno));
            close(fd);
            proxy_free(p);
            return rv;
        }
        p->listeners[p->n_routes++] = fd;
    }
    rv = pthread_create(&p->thread, NULL, proxy_run, p);
    if (rv != 0) {
        snprintf(errmsg, DELAYPROXY_ERRMSG_SIZE, "delayproxy: pthread_create: %s", strerror(rv));
        proxy_free(p);
        return -rv;
    }
    *out = p;
    return 0;
}

void delayproxy_set_delay(struct delayproxy *p, int ms, int jitter_ms)
{
    ms = ms < 0 ? 0 : (ms > MAX_DELAY_MS ? MAX_DELAY_MS : ms);
    jitter_ms = jitter_ms < 0 ? 0 : (jitter_ms > MAX_DELAY_MS ? MAX_DELAY_MS : jitter_ms);
    atomic_store(&p->delay_ms, ms);
    atomic_store(&p->jitter_ms, jitter_ms);
}

void delayproxy_stats(const struct delayproxy *p, uint64_t *connections, uint64_t *bytes)
{
    struct delayproxy *q = (struct delayproxy *)p; /* atomic loads of a const object */
    if (connections != NULL) {
        *connections = atomic_load(&q->accepted);
    }
    if (bytes != NULL) {
        *bytes = atomic_load(&q->bytes);
    }
}

void delayproxy_stop(struct delayproxy *p)
{
    if (p == NULL) {
        return;
    }
    atomic_store(&p->stop, true);
    (void)!write(p->wake[1], "x", 1);
    pthread_join(p->thread, NULL);
    proxy_free(p);
}
