/* What the files of libballast share: the client object, one request and
 * its response, the call loop, and the msgpack decoding helpers. Not
 * installed. client.c owns the transport (connections, HTTP, the call loop
 * with failover and retries) and the KV and cluster calls; txn.c, lease.c
 * and watch.c build on the functions below. Every name here starts with
 * blc_ and is hidden from the shared library: only ballast.h is the API. */
#ifndef BALLAST_CLIENT_INT_H
#define BALLAST_CLIENT_INT_H

#include "ballast.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BLC_HIDDEN       __attribute__((visibility("hidden")))
#define BLC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BLC_HIDDEN
#define BLC_PRINTF(f, a)
#endif

#define HEAD_MAX        (64 * 1024)        /* response head (and line) cap */
#define BODY_MAX        (64 * 1024 * 1024) /* response body cap */
#define KEY_MAX         4096               /* contract: keys are 1..4096 bytes */
#define ERRMSG_SIZE     256
#define REQUEST_ID_MAX  64 /* api-notes: 1..64 visible ASCII bytes */
#define DEFAULT_PORT    "8379"
#define USER_AGENT      "libballast/0.1"
#define CT_MSGPACK      "application/msgpack"
#define CT_JSON         "application/json"
#define CT_OCTET_STREAM "application/octet-stream"

/* One parsed endpoint. */
struct endpoint {
    char *host; /* without brackets */
    char *port;
    char *name; /* "host:port" ("[v6]:port"), for Host: and messages */
};

/* A connection and its input buffer. */
struct conn {
    int fd;          /* -1 when closed; else open, idle between calls */
    char *buf;       /* HEAD_MAX bytes */
    size_t off, len; /* unread input is buf[off, len) */
};

struct ballast_client {
    struct endpoint *eps;
    size_t n_eps;
    size_t cur; /* endpoint the next attempt goes to */
    struct conn conn;
    struct ballast_options o;
    uint64_t rng;             /* backoff jitter */
    int64_t compact_revision; /* from the last 410 compacted answer, else 0 */
    char last_ep[300];        /* the endpoint that answered the last call */
    char errmsg[ERRMSG_SIZE];
};

/* One request, as sent on every attempt. */
struct req {
    const char *method;
    const char *target;
    const void *body;
    size_t body_len;
    int has_body;             /* send Content-Length (even 0) */
    const char *content_type; /* NULL: none */
    int accept_json;
    int write;     /* not GET/HEAD: carries a request id */
    int cas;       /* a cas write: can never apply twice */
    int once;      /* never resent once it may have reached a server */
    int final_504; /* a 504 answer is the server's verdict, not a lost answer */
    int long_head; /* the answer may take the whole call deadline to start */
    int sink;      /* a 2xx body goes to sink_fd as it arrives, not to memory */
    int sink_fd;
    const char *sink_name;       /* the file behind sink_fd, for messages */
    int stream;                  /* a 2xx body is left on the connection for the caller */
    unsigned extra_ms;           /* added to the attempt and call deadlines (long-poll) */
    char id[REQUEST_ID_MAX + 1]; /* X-Ballast-Request-Id, "" for none */
};

/* One response. body is always allocated (NUL-terminated) once complete. */
struct resp {
    int status;
    int close; /* the connection cannot be reused */
    int chunked;
    int64_t content_length; /* -1: absent */
    long retry_after;       /* seconds, -1: absent */
    char content_type[64];
    char *body;
    size_t body_len;
    int64_t revision;      /* X-Ballast-Revision, -1: absent */
    int64_t snap_revision; /* X-Ballast-Snapshot-Revision, -1: absent */
    uint64_t sunk;         /* body bytes written to the request's sink */
    int after_maybe;       /* an earlier attempt of the call may have been executed */
};

/* A growable string; an allocation failure is sticky. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

/* A decoded msgpack reply. The objects point into the body, so both live
 * and go together (blc_mp_reply_free). */
struct mp_reply {
    struct resp rs;
    msgpack_unpacked u;
};

/* --- errors and time ------------------------------------------------------ */

/* Set @c's message from @fmt; returns @code. */
BLC_HIDDEN int blc_set_err(struct ballast_client *c, int code, const char *fmt, ...)
    BLC_PRINTF(3, 4);

/* Map a non-2xx response to an error and set the message from its body;
 * a 410 also sets c->compact_revision. */
BLC_HIDDEN int blc_reply_error(struct ballast_client *c, const char *ep_name,
                               const struct resp *rs);

/* EPROTO "unexpected reply to ..." or ENOMEM "out of memory decoding ...". */
BLC_HIDDEN int blc_bad_reply(struct ballast_client *c, int rv, const struct req *rq);

/* 0, or BALLAST_EBADARG with a message: NULL/empty (unless @allow_empty) or
 * oversized key. */
BLC_HIDDEN int blc_check_key(struct ballast_client *c, const void *key, size_t klen,
                             int allow_empty);

/* 0, or BALLAST_EBADARG: @id is not 1..64 bytes of visible ASCII. */
BLC_HIDDEN int blc_check_request_id(struct ballast_client *c, const char *id);

/* A fresh random 32-hex-digit request id. */
BLC_HIDDEN void blc_make_request_id(struct ballast_client *c, char id[33]);

BLC_HIDDEN int64_t blc_now_ms(void);
BLC_HIDDEN void blc_sleep_ms(int64_t ms);

/* Jittered exponential backoff for the @k-th wait of a call. */
BLC_HIDDEN int64_t blc_backoff_ms(struct ballast_client *c, unsigned k);

/* --- strings -------------------------------------------------------------- */

BLC_HIDDEN void blc_sb_add(struct sbuf *s, const char *d, size_t n);
BLC_HIDDEN void blc_sb_str(struct sbuf *s, const char *str);
/* Percent-encode @n bytes (every byte but A-Za-z0-9-._~). */
BLC_HIDDEN void blc_sb_escape(struct sbuf *s, const void *data, size_t n);
/* Append "?name[=value]" or "&name[=value]" (value already encoded). */
BLC_HIDDEN void blc_sb_query(struct sbuf *s, const char *name, const char *value);
BLC_HIDDEN void blc_sb_query_i64(struct sbuf *s, const char *name, int64_t v);
/* Append a duration as the API reads it: "30s" when whole seconds, else "1500ms". */
BLC_HIDDEN void blc_sb_query_ms(struct sbuf *s, const char *name, unsigned ms);

/* --- connections and calls ------------------------------------------------ */

BLC_HIDDEN void blc_conn_close(struct conn *cn);

/* Wait until @fd is ready for @events or @deadline (blc_now_ms() clock)
 * passes. Returns 1 ready, 0 timed out, -1 poll failed (errno). */
BLC_HIDDEN int blc_io_wait(int fd, short events, int64_t deadline);

/* Parse the chunk size line @line (@ll bytes) into *@size, at most @max.
 * Returns 0, -1 for a malformed line, -2 for a size over @max. */
BLC_HIDDEN int blc_chunk_size(const char *line, size_t ll, uint64_t max, uint64_t *size);

BLC_HIDDEN void blc_resp_reset(struct resp *rs);

/* Initialize a request; writes get a fresh request id. */
BLC_HIDDEN void blc_req_init(struct ballast_client *c, struct req *rq, const char *method,
                             const char *target);

/* Run @rq with the client's failover and retries over connection @cn,
 * starting at endpoint *@cur and moving *@cur on as it fails over (the
 * client's own calls use c->conn and c->cur). Returns 0 with a response
 * in @rs (any status; the caller maps errors), or an error with the
 * message set and @rs empty. With rq->stream, a 2xx body is left unread on
 * @cn (which stays open) for the caller. */
BLC_HIDDEN int blc_call_on(struct ballast_client *c, const struct req *rq, struct resp *rs,
                           struct conn *cn, size_t *cur);

/* Run a msgpack call with failover: send, map error answers, unpack a 2xx
 * body into @m, which the caller frees with blc_mp_reply_free() whatever
 * this returns (m->rs holds the answer's status and headers either way). */
BLC_HIDDEN int blc_mp_call(struct ballast_client *c, const struct req *rq, struct mp_reply *m);
BLC_HIDDEN void blc_mp_reply_free(struct mp_reply *m);

/* --- msgpack -------------------------------------------------------------- */

/* Whether @n bytes at @p start with one whole, well-formed msgpack object:
 * 1 (its length in *@len), 0 (not yet: more bytes needed), -1 (malformed).
 * Containers never claim more elements than bytes follow once whole, so
 * unpacking a whole object cannot allocate far beyond its size. */
BLC_HIDDEN int blc_mp_first(const unsigned char *p, size_t n, size_t *len);

/* 0 when @n bytes at @p hold exactly one well-formed msgpack object. */
BLC_HIDDEN int blc_mp_check(const unsigned char *p, size_t n);

/* Field @name of map @m, or NULL when absent, nil, or @m is not a map. */
BLC_HIDDEN const msgpack_object *blc_mp_get(const msgpack_object *m, const char *name);

/* These leave *@out alone for an absent field and return -1 for a field of
 * the wrong type. */
BLC_HIDDEN int blc_mp_u64(const msgpack_object *m, const char *name, uint64_t *out);
BLC_HIDDEN int blc_mp_i64(const msgpack_object *m, const char *name, int64_t *out);
BLC_HIDDEN int blc_mp_bool(const msgpack_object *m, const char *name, int *out);
/* Bytes of a bin or str field (pointing into the msgpack buffer). */
BLC_HIDDEN int blc_mp_bytes(const msgpack_object *m, const char *name, const char **p, size_t *n);

/* Decode the kv maps @objs[0..n) into one allocation (free()): the array
 * followed by each key and value, NUL-terminated. *@out is NULL when n is
 * 0. Returns 0, BALLAST_EPROTO or BALLAST_ENOMEM. */
BLC_HIDDEN int blc_kvs_decode(const msgpack_object *objs, size_t n, struct ballast_kv **out);

/* Decode an optional array-of-kvs field of map @m. */
BLC_HIDDEN int blc_kvs_field(const msgpack_object *m, const char *name, struct ballast_kv **out,
                             size_t *n);

/* Pack a str. Returns 0 or non-zero (out of memory). */
BLC_HIDDEN int blc_pack_str(msgpack_packer *pk, const char *s);

#endif /* BALLAST_CLIENT_INT_H */
