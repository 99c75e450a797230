/* libballast watches: a msgpack event stream over chunked HTTP, resumed
 * across lost connections without repeating or losing an event.
 *
 * The happy path: ballast_watch_open() sends GET /v1/watch/{key}[?prefix]
 * [&rev=R] with Accept: application/msgpack through the client's call loop
 * (failover, retries) on a connection of the watch's own, and takes the
 * connection over once a 2xx head arrived: the body is left on it. Each
 * ballast_watch_next() then moves body bytes out of their framing (chunked,
 * Content-Length or until close) into the payload buffer (unframe), cuts
 * the first whole msgpack object off it (blc_mp_first: no allocation until
 * an object is whole), decodes it as an event, copies key, value and
 * reason into the watch's event buffer, and hands the caller pointers into
 * it. Reads wait with poll, bounded by the caller's timeout and by the
 * watch's idle limit.
 *
 * Where a resumed watch starts. The watch remembers @last, the revision of
 * the last put/delete it delivered, how many events of that revision it
 * delivered (@n_at_last), and @floor: every event at a revision <= floor
 * has been delivered (the revision before o->rev, the X-Ballast-Revision of
 * a watch "from now", any later revision once a later event arrives, a
 * progress event's revision, a cancel's NEXT - 1). When last > floor the
 * revision last may have more events not yet seen (a txn writes several
 * keys in one revision), so a resume asks for rev = last and drops the
 * first n_at_last events of it, which the server sends again in the same
 * order; otherwise it asks for floor + 1. Events below that are dropped
 * too. So an event is never delivered twice, out of order, or skipped.
 *
 * Failure modes: the connection closes, resets, ends its body, or stays
 * silent for idle_ms (a member sends progress every 10 s): lost, reconnect
 * to the next endpoint (at once after a connection that delivered
 * something, with the client's backoff after one that did not). A cancel
 * with reason "shutdown" is a lost connection the member announced. Any
 * other cancel is delivered and ends the watch. A 410 on (re)connect ends it
 * with BALLAST_ECOMPACTED; a malformed stream is BALLAST_EPROTO and drops
 * the connection (the next call resumes elsewhere). */
#include "client_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define IDLE_DEFAULT_MS 30000    /* three of the server's progress intervals */
#define EVENT_MAX       BODY_MAX /* one event's msgpack bytes */
#define CHUNK_MAX       ((uint64_t)1 << 40)

/* How the body is delimited. */
enum frame { FR_CHUNKED, FR_LENGTH, FR_CLOSE };

/* Where a chunked body is. */
enum chunk { CH_SIZE, CH_DATA, CH_CRLF, CH_TRAILER };

/* Internal outcomes besides 0 and the (negative) error codes. */
enum {
    W_EVENT = 1,     /* an event was delivered */
    W_LOST = 2,      /* the connection is lost (message set): reconnect */
    W_TIMEOUT = 3,   /* the caller's timeout passed */
    W_CANCELLED = 4, /* a cancelled event was delivered: the watch ends */
};

struct ballast_watch {
    struct ballast_client *c;
    char *path; /* "/v1/watch/<escaped key>" */
    int prefix;
    unsigned idle_ms;
    int no_reconnect;
    struct conn cn; /* the stream; fd -1 between connections */
    size_t cur;     /* endpoint of the stream and of the next connect */
    /* the body's framing */
    int frame, chunk;
    uint64_t left; /* bytes left in this chunk, or in the body (FR_LENGTH) */
    int eof;       /* the body ended */
    int64_t last_rx;
    /* payload bytes not yet decoded: acc[acc_off, acc_len) */
    char *acc;
    size_t acc_off, acc_len, acc_cap;
    /* the delivered event's key, value and reason */
    char *ev;
    size_t ev_cap;
    /* position (see the file comment) */
    int64_t floor; /* -1: not known */
    int64_t last;  /* 0: nothing delivered yet */
    uint64_t n_at_last;
    uint64_t skip;        /* events of revision last still to drop after a resume */
    int got;              /* this connection delivered an event */
    unsigned quick_fails; /* connections in a row that delivered nothing */
    int ended;            /* the final error, 0 while the watch goes on */
    char endmsg[ERRMSG_SIZE];
};

static const char *ep_name(const struct ballast_watch *w)
{
    return w->c->eps[w->cur].name;
}

/* End the watch with @code and the client's current message. */
static int watch_end(struct ballast_watch *w, int code)
{
    w->ended = code;
    snprintf(w->endmsg, sizeof w->endmsg, "%s", w->c->errmsg);
    return code;
}

/* Drop the connection; the next connect goes to the next endpoint. */
static void watch_drop(struct ballast_watch *w)
{
    if (w->cn.fd < 0) {
        return;
    }
    blc_conn_close(&w->cn);
    w->acc_off = w->acc_len = 0;
    w->eof = 0;
    w->quick_fails = w->got ? 0 : w->quick_fails + 1;
    w->got = 0;
    w->cur = (w->cur + 1) % w->c->n_eps;
}

/* A lost connection (message set): drop it; with no_reconnect, the end. */
static int watch_lost(struct ballast_watch *w)
{
    watch_drop(w);
    return w->no_reconnect ? watch_end(w, BALLAST_EUNAVAILABLE) : 0;
}

/* The revision to (re)connect at (0: from now), and how many events of it
 * to drop. */
static int64_t resume_rev(const struct ballast_watch *w, uint64_t *skip)
{
    if (w->last > 0 && w->last > w->floor) {
        *skip = w->n_at_last;
        return w->last;
    }
    *skip = 0;
    return w->floor >= 0 ? w->floor + 1 : 0;
}

/* Open the stream at the resume revision. */
static int watch_connect(struct ballast_watch *w)
{
    struct ballast_client *c = w->c;
    uint64_t skip = 0;
    int64_t rev = resume_rev(w, &skip);
    if (w->quick_fails > 0) {
        blc_sleep_ms(blc_backoff_ms(c, w->quick_fails - 1));
    }
    struct sbuf t = {0};
    blc_sb_str(&t, w->path);
    if (w->prefix) {
        blc_sb_query(&t, "prefix", NULL);
    }
    if (rev > 0) {
        blc_sb_query_i64(&t, "rev", rev);
    }
    if (t.oom) {
        free(t.p);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    struct req rq;
    struct resp rs = {0};
    blc_req_init(c, &rq, "GET", t.p);
    rq.stream = 1;
    int rv = blc_call_on(c, &rq, &rs, &w->cn, &w->cur);
    if (rv == 0 && (rs.status < 200 || rs.status > 299)) {
        blc_conn_close(&w->cn);
        rv = blc_reply_error(c, c->last_ep, &rs);
        if (rv == BALLAST_ECOMPACTED || rv == BALLAST_EBADARG || rv == BALLAST_ENOTFOUND ||
            rv == BALLAST_EUNAUTHORIZED || rv == BALLAST_EFORBIDDEN) {
            rv = watch_end(w, rv); /* no retry can mend these */
        }
    } else if (rv == 0 && (strstr(rs.content_type, "json") || strstr(rs.content_type, "event"))) {
        blc_conn_close(&w->cn);
        rv = watch_end(w, blc_set_err(c, BALLAST_EPROTO, "%s: the watch stream is %s, not msgpack",
                                      c->last_ep, rs.content_type));
    } else if (rv == 0) {
        w->frame = rs.chunked ? FR_CHUNKED : rs.content_length >= 0 ? FR_LENGTH : FR_CLOSE;
        w->chunk = CH_SIZE;
        w->left = rs.content_length >= 0 ? (uint64_t)rs.content_length : 0;
        w->eof = 0;
        w->acc_off = w->acc_len = 0;
        w->got = 0;
        w->skip = skip;
        w->last_rx = blc_now_ms();
        if (w->floor < 0 && rev == 0 && rs.revision >= 0) {
            w->floor = rs.revision; /* from now: events after this revision */
        }
    }
    blc_resp_reset(&rs);
    free(t.p);
    return rv;
}

/* Append @n payload bytes at @p to acc. */
static int acc_add(struct ballast_watch *w, const char *p, size_t n)
{
    if (w->acc_off > 0 && w->acc_len + n > w->acc_cap) {
        memmove(w->acc, w->acc + w->acc_off, w->acc_len - w->acc_off);
        w->acc_len -= w->acc_off;
        w->acc_off = 0;
    }
    if (w->acc_len + n > w->acc_cap) {
        size_t cap = w->acc_cap ? w->acc_cap : 4096;
        while (cap < w->acc_len + n) {
            cap *= 2;
        }
        char *na = realloc(w->acc, cap);
        if (!na) {
            return blc_set_err(w->c, BALLAST_ENOMEM, "out of memory reading a watch");
        }
        w->acc = na;
        w->acc_cap = cap;
    }
    memcpy(w->acc + w->acc_len, p, n);
    w->acc_len += n;
    return 0;
}

/* Move what the connection buffer holds of the body out of its framing
 * into acc, without waiting; sets w->eof at the end of the body. */
static int unframe(struct ballast_watch *w)
{
    struct conn *cn = &w->cn;
    while (!w->eof) {
        const char *p = cn->buf + cn->off;
        size_t avail = cn->len - cn->off;
        int in_data = w->frame != FR_CHUNKED || w->chunk == CH_DATA;
        if (in_data) {
            if (w->frame != FR_CLOSE && w->left == 0) {
                if (w->frame == FR_LENGTH) {
                    w->eof = 1;
                } else {
                    w->chunk = CH_CRLF;
                }
                continue;
            }
            if (avail == 0) {
                return 0;
            }
            size_t take = w->frame == FR_CLOSE || avail < w->left ? avail : (size_t)w->left;
            int rv = acc_add(w, p, take);
            if (rv != 0) {
                return rv;
            }
            cn->off += take;
            if (w->frame != FR_CLOSE) {
                w->left -= take;
            }
            continue;
        }
        const char *nl = memchr(p, '\n', avail);
        if (!nl) {
            return 0;
        }
        size_t ll = (size_t)(nl - p);
        cn->off += ll + 1;
        if (ll > 0 && p[ll - 1] == '\r') {
            ll--;
        }
        if (w->chunk == CH_SIZE) {
            uint64_t size = 0;
            if (blc_chunk_size(p, ll, CHUNK_MAX, &size) != 0) {
                return blc_set_err(w->c, BALLAST_EPROTO, "%s: bad chunk size line in a watch",
                                   ep_name(w));
            }
            w->left = size;
            w->chunk = size == 0 ? CH_TRAILER : CH_DATA;
        } else if (w->chunk == CH_CRLF) {
            if (ll != 0) {
                return blc_set_err(w->c, BALLAST_EPROTO,
                                   "%s: chunk not followed by CRLF in a watch", ep_name(w));
            }
            w->chunk = CH_SIZE;
        } else if (ll == 0) { /* CH_TRAILER: the empty line ends the body */
            w->eof = 1;
        }
    }
    return 0;
}

/* Wait for more bytes of the stream, until @deadline or the idle limit.
 * Returns 0 (bytes arrived, or the end of a close-delimited body),
 * W_TIMEOUT, W_LOST (message set) or an error. */
static int stream_more(struct ballast_watch *w, int64_t deadline)
{
    struct conn *cn = &w->cn;
    if (cn->off == cn->len) {
        cn->off = cn->len = 0;
    } else if (cn->off > 0) {
        memmove(cn->buf, cn->buf + cn->off, cn->len - cn->off);
        cn->len -= cn->off;
        cn->off = 0;
    }
    if (cn->len >= HEAD_MAX) {
        return blc_set_err(w->c, BALLAST_EPROTO, "%s: watch stream line over %d bytes", ep_name(w),
                           HEAD_MAX);
    }
    int64_t idle = w->last_rx + w->idle_ms;
    for (;;) {
        ssize_t r = recv(cn->fd, cn->buf + cn->len, HEAD_MAX - cn->len, 0);
        if (r > 0) {
            cn->len += (size_t)r;
            w->last_rx = blc_now_ms();
            return 0;
        }
        if (r == 0) {
            if (w->frame == FR_CLOSE) {
                w->eof = 1;
                return 0;
            }
            blc_set_err(w->c, BALLAST_EUNAVAILABLE, "%s: watch connection closed", ep_name(w));
            return W_LOST;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            blc_set_err(w->c, BALLAST_EUNAVAILABLE, "%s: watch: recv: %s", ep_name(w),
                        strerror(errno));
            return W_LOST;
        }
        int wr = blc_io_wait(cn->fd, POLLIN, deadline < idle ? deadline : idle);
        if (wr > 0) {
            continue;
        }
        if (wr < 0) {
            blc_set_err(w->c, BALLAST_EUNAVAILABLE, "%s: watch: poll: %s", ep_name(w),
                        strerror(errno));
            return W_LOST;
        }
        if (blc_now_ms() >= idle) {
            blc_set_err(w->c, BALLAST_EUNAVAILABLE, "%s: watch: no byte for %u ms", ep_name(w),
                        w->idle_ms);
            return W_LOST;
        }
        return W_TIMEOUT;
    }
}

/* Copy key, value and reason of an event into w->ev and point @ev there. */
static int event_copy(struct ballast_watch *w, struct ballast_event *ev, const char *k, size_t kl,
                      const char *v, size_t vl, const char *why, size_t wl)
{
    size_t need = kl + vl + wl + 3;
    if (need > w->ev_cap) {
        char *nb = realloc(w->ev, need);
        if (!nb) {
            return blc_set_err(w->c, BALLAST_ENOMEM, "out of memory reading a watch");
        }
        w->ev = nb;
        w->ev_cap = need;
    }
    char *d = w->ev;
    memcpy(d, k, kl);
    d[kl] = '\0';
    ev->kv.key = d;
    ev->kv.key_len = kl;
    d += kl + 1;
    memcpy(d, v, vl);
    d[vl] = '\0';
    ev->kv.value = d;
    ev->kv.value_len = vl;
    d += vl + 1;
    memcpy(d, why, wl);
    d[wl] = '\0';
    ev->reason = d;
    return 0;
}

/* Whether the put/delete at revision @rev is new, and move the position on. */
static int event_is_new(struct ballast_watch *w, int64_t rev)
{
    if ((w->floor >= 0 && rev <= w->floor) || rev < w->last) {
        return 0; /* delivered before */
    }
    if (rev == w->last) {
        if (w->skip > 0) {
            w->skip--;
            return 0; /* delivered before the connection was lost */
        }
        w->n_at_last++;
        return 1;
    }
    if (w->last > 0 && w->last > w->floor) {
        w->floor = w->last; /* a later revision: the last one is complete */
    }
    w->last = rev;
    w->n_at_last = 1;
    w->skip = 0;
    return 1;
}

/* Act on the event map @o: W_EVENT (described in @ev), 0 (dropped),
 * W_CANCELLED, W_LOST (a shutdown to resume from) or an error. */
static int event_handle(struct ballast_watch *w, const msgpack_object *o, struct ballast_event *ev)
{
    const char *type = NULL, *k = "", *v = "", *why = "";
    size_t tl = 0, kl = 0, vl = 0, wl = 0;
    int64_t rev = 0;
    if (o->type != MSGPACK_OBJECT_MAP || blc_mp_bytes(o, "type", &type, &tl) != 0 || !type ||
        blc_mp_i64(o, "revision", &rev) != 0 || blc_mp_bytes(o, "reason", &why, &wl) != 0) {
        return blc_set_err(w->c, BALLAST_EPROTO, "%s: malformed watch event", ep_name(w));
    }
    w->got = 1;
    w->quick_fails = 0;
    if ((tl == 3 && memcmp(type, "put", 3) == 0) || (tl == 6 && memcmp(type, "delete", 6) == 0)) {
        const msgpack_object *kv = blc_mp_get(o, "kv");
        memset(&ev->kv, 0, sizeof ev->kv);
        k = NULL;
        if (!kv || blc_mp_bytes(kv, "key", &k, &kl) != 0 || !k ||
            blc_mp_bytes(kv, "value", &v, &vl) != 0 ||
            blc_mp_i64(kv, "create_revision", &ev->kv.create_revision) != 0 ||
            blc_mp_i64(kv, "mod_revision", &ev->kv.mod_revision) != 0 ||
            blc_mp_i64(kv, "version", &ev->kv.version) != 0 ||
            blc_mp_i64(kv, "lease", &ev->kv.lease) != 0 || rev <= 0) {
            return blc_set_err(w->c, BALLAST_EPROTO, "%s: malformed watch event", ep_name(w));
        }
        if (!event_is_new(w, rev)) {
            return 0;
        }
        ev->type = tl == 3 ? BALLAST_EVENT_PUT : BALLAST_EVENT_DELETE;
        ev->revision = rev;
        int rv = event_copy(w, ev, k, kl, v, vl, "", 0);
        return rv != 0 ? rv : W_EVENT;
    }
    if (tl == 8 && memcmp(type, "progress", 8) == 0) {
        if (rev <= w->floor) {
            return 0; /* nothing new (a repeat after a resume) */
        }
        w->floor = rev;
        memset(&ev->kv, 0, sizeof ev->kv);
        ev->type = BALLAST_EVENT_PROGRESS;
        ev->revision = rev;
        int rv = event_copy(w, ev, "", 0, "", 0, "", 0);
        return rv != 0 ? rv : W_EVENT;
    }
    if (tl == 9 && memcmp(type, "cancelled", 9) == 0) {
        if (rev - 1 > w->floor) {
            w->floor = rev - 1; /* rev is NEXT, the first revision not sent */
        }
        if (wl == 8 && memcmp(why, "shutdown", 8) == 0 && !w->no_reconnect) {
            blc_set_err(w->c, BALLAST_EUNAVAILABLE, "%s: the member is shutting down", ep_name(w));
            return W_LOST;
        }
        memset(&ev->kv, 0, sizeof ev->kv);
        ev->type = BALLAST_EVENT_CANCELLED;
        ev->revision = rev;
        int rv = event_copy(w, ev, "", 0, "", 0, why, wl);
        if (rv != 0) {
            return rv;
        }
        blc_set_err(w->c, BALLAST_ECANCELLED,
                    "watch cancelled by %s (%.*s); resume at revision %lld", ep_name(w), (int)wl,
                    why, (long long)rev);
        return W_CANCELLED;
    }
    return 0; /* a type this version does not know: skip it */
}

/* Decode the events acc holds whole until one is to be delivered. Returns
 * 0 (acc holds no whole event) or as event_handle(). */
static int next_event(struct ballast_watch *w, struct ballast_event *ev)
{
    for (;;) {
        const char *p = w->acc + w->acc_off;
        size_t avail = w->acc_len - w->acc_off, len = 0;
        if (avail == 0) {
            return 0;
        }
        int r = blc_mp_first((const unsigned char *)p, avail, &len);
        if (r == 0) {
            if (avail > EVENT_MAX) {
                return blc_set_err(w->c, BALLAST_EPROTO, "%s: watch event over %d bytes",
                                   ep_name(w), EVENT_MAX);
            }
            return 0;
        }
        if (r < 0) {
            return blc_set_err(w->c, BALLAST_EPROTO, "%s: malformed msgpack in a watch stream",
                               ep_name(w));
        }
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        msgpack_unpack_return ur = msgpack_unpack_next(&u, p, len, &off);
        int rv;
        if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
            rv = blc_set_err(w->c, BALLAST_ENOMEM, "out of memory reading a watch");
        } else if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
            rv = blc_set_err(w->c, BALLAST_EPROTO, "%s: malformed msgpack in a watch stream",
                             ep_name(w));
        } else {
            rv = event_handle(w, &u.data, ev);
        }
        msgpack_unpacked_destroy(&u);
        w->acc_off += len;
        if (rv != 0) {
            return rv;
        }
    }
}

int ballast_watch_open(struct ballast_client *c, const void *key, size_t klen,
                       const struct ballast_watch_opts *o, struct ballast_watch **out)
{
    static const struct ballast_watch_opts defaults = {0};
    if (out) {
        *out = NULL;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!out) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL out");
    }
    if (!o) {
        o = &defaults;
    }
    int rv = blc_check_key(c, key, klen, o->prefix);
    if (rv != 0) {
        return rv;
    }
    if (o->rev < 0) {
        return blc_set_err(c, BALLAST_EBADARG, "negative revision");
    }
    struct ballast_watch *w = calloc(1, sizeof *w);
    struct sbuf t = {0};
    blc_sb_str(&t, "/v1/watch/");
    blc_sb_escape(&t, key, klen);
    if (!w || t.oom || !(w->cn.buf = malloc(HEAD_MAX))) {
        free(t.p);
        if (w) {
            free(w->cn.buf);
        }
        free(w);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory");
    }
    w->c = c;
    w->path = t.p;
    w->prefix = o->prefix;
    w->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : IDLE_DEFAULT_MS;
    w->no_reconnect = o->no_reconnect;
    w->cn.fd = -1;
    w->cur = c->cur;
    w->floor = o->rev > 0 ? o->rev - 1 : -1;
    rv = watch_connect(w);
    if (rv != 0) {
        ballast_watch_close(w);
        return rv;
    }
    *out = w;
    return 0;
}

int ballast_watch_next(struct ballast_watch *w, int timeout_ms, struct ballast_event *ev)
{
    if (ev) {
        memset(ev, 0, sizeof *ev);
        ev->reason = "";
        ev->kv.key = ev->kv.value = "";
    }
    if (!w) {
        return BALLAST_EBADARG;
    }
    struct ballast_client *c = w->c;
    if (!ev) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL event");
    }
    if (w->ended) {
        return blc_set_err(c, w->ended, "%s", w->endmsg);
    }
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : blc_now_ms() + timeout_ms;
    unsigned losses = 0; /* connections lost in this call */
    for (;;) {
        int rv = 0;
        if (w->cn.fd < 0) {
            rv = watch_connect(w);
            if (rv != 0) {
                return rv;
            }
        }
        rv = unframe(w);
        if (rv == 0) {
            rv = next_event(w, ev);
        }
        if (rv == 0 && w->eof) {
            blc_set_err(c, BALLAST_EUNAVAILABLE, "%s: the watch stream ended", ep_name(w));
            rv = W_LOST;
        }
        if (rv == 0) {
            rv = stream_more(w, deadline);
        }
        switch (rv) {
        case 0:
            continue;
        case W_EVENT:
            return 0;
        case W_CANCELLED:
            watch_drop(w);
            watch_end(w, BALLAST_ECANCELLED);
            return 0;
        case W_LOST:
            rv = watch_lost(w);
            if (rv != 0) {
                return rv;
            }
            if (++losses >= c->o.max_attempts) {
                return BALLAST_EUNAVAILABLE; /* message set; the next call goes on */
            }
            continue;
        case W_TIMEOUT:
            return blc_set_err(c, BALLAST_EAGAIN, "no watch event within %d ms", timeout_ms);
        default:
            watch_drop(w); /* a malformed stream, out of memory: resume afresh */
            return rv;
        }
    }
}

const char *ballast_watch_endpoint(const struct ballast_watch *w)
{
    return w ? ep_name(w) : NULL;
}

void ballast_watch_close(struct ballast_watch *w)
{
    if (!w) {
        return;
    }
    blc_conn_close(&w->cn);
    free(w->cn.buf);
    free(w->path);
    free(w->acc);
    free(w->ev);
    free(w);
}
