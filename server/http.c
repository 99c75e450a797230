/* HTTP/1.1 server: listener, connections, incremental parsing, ordered replies.
 *
 * Happy path. bl_http_server_start() binds and listens on a socket of its own
 * (so bind and listen errors come back synchronously, with nothing to close
 * asynchronously) and hands it to libuv. Each accepted connection gets one
 * struct conn holding everything it needs: the libuv handles, the http-parser
 * state, a 16 KiB read buffer that the alloc callback hands out, and an output
 * buffer that replies are assembled in. Bytes are parsed as they arrive; the
 * parser callbacks copy the request-target, the header names and values and
 * the body into the request buffer of the exchange being parsed (so an
 * exchange owns its bytes and outlives the read buffer, which the next read
 * overwrites). When a message completes, the exchange joins the connection's
 * queue, which is in request order, and goes to the handler.
 *
 * Replies. The exchange at the head of the queue writes straight into the
 * output buffer; any other exchange writes into its own `held` buffer, which
 * is moved to the output buffer when the exchange reaches the head. So a reply
 * completed out of order waits for the earlier ones, and a stream (chunked
 * reply) at the head keeps every later reply held until it ends. The output
 * buffer goes to uv_write() whole while the next replies collect in a second
 * buffer; the two are swapped when the write completes (no allocation per
 * reply once the buffers have grown). Exchange structs and their buffers are
 * recycled through a per-connection free list.
 *
 * Limits, checked before anything is copied: request line and headers over
 * max_header_bytes, or more than BL_HTTP_MAX_HEADERS headers, get 431; a
 * Content-Length over max_body_bytes gets 413 before any body byte is read;
 * a chunked body growing past it gets 413 too. A request that http-parser
 * rejects gets 400 with a JSON error body. These internal replies are queued
 * behind the replies already pending, say "Connection: close", and nothing
 * after them is parsed. More than PIPELINE_MAX exchanges pending (or more
 * than REQ_HIGH_WATER request bytes queued, or OUT_HIGH_WATER reply bytes
 * waiting for the socket) pauses the parser and stops reading until replies
 * drain. Parsing resumes from a write callback, never from inside
 * bl_http_respond(), so a handler is only ever called from the loop, not
 * re-entered from its own reply.
 *
 * Closing. A connection that is done (Connection: close, or an error reply)
 * shuts down its write side once every reply is written, then reads and
 * discards for up to LINGER_MS until the client closes, so that unread
 * request bytes do not turn into a reset that destroys the reply in flight.
 * EOF (a half-close counts as the client leaving), a read or write error,
 * the idle timer (no request pending) or the request timer (a request
 * started but not complete; 408 first if nothing else is pending) close it
 * at once. A closed connection keeps its struct
 * while the handler still holds exchanges of it: bl_http_exchange_gone()
 * turns true and their replies are discarded; the struct is freed when both
 * handles are closed and the last exchange is answered.
 *
 * Failure modes. Out of memory while parsing or replying closes the
 * connection (bl_http_respond() then returns BL_ENOMEM). A failed accept is
 * dropped. Connections beyond max_connections are accepted and closed at
 * once. bl_http_server_close() stops listening and closes every connection;
 * it calls back once all handles are closed and all exchanges answered. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* SOCK_NONBLOCK, gmtime_r, strncasecmp, getaddrinfo */
#endif

#include "http.h"

#include "fmt.h"

#include <assert.h>
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#define READ_BUF_SIZE      16384
#define PIPELINE_MAX       64          /* pending exchanges before parsing pauses */
#define OUT_HIGH_WATER     (4u << 20)  /* unsent reply bytes before parsing pauses */
#define REQ_HIGH_WATER     (8u << 20)  /* bytes of queued requests before parsing pauses */
#define FREE_LIST_MAX      16          /* exchanges kept for reuse per connection */
#define KEEP_BUF_MAX       (64u << 10) /* bigger buffers are freed, not kept */
#define LINGER_MS          2000        /* read-and-discard time after shutdown */
#define LISTEN_BACKLOG     511
#define LINE_OVERHEAD      4  /* ": " and CRLF of each header line */
#define REQ_LINE_OVERHEAD  16 /* method, version and CRLF, roughly */
#define DEFAULT_MAX_HEADER (16u << 10)
#define DEFAULT_MAX_BODY   (3u << 19) /* 1.5 MiB */
#define DEFAULT_REQ_TO     30000
#define DEFAULT_IDLE_TO    300000
#define DEFAULT_MAX_CONNS  10000
#define REJECT_NOMEM       (-1) /* conn.reject: close without a reply */

/* A growable byte buffer. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

enum ex_state {
    EX_PARSING, /* the request is being parsed into it */
    EX_HANDLER, /* handed to the handler, not answered yet */
    EX_DONE,    /* answered; its reply may still be held */
};

/* Offsets of one header into the request buffer while it may still move. */
struct header_off {
    size_t name_off, name_len;
    size_t value_off, value_len;
};

/* The private side of a bl_http_exchange: pub.impl points back here. */
struct exchange {
    struct bl_http_exchange pub;
    struct conn *conn;
    struct exchange *next; /* in the connection's queue or free list */
    enum ex_state state;
    bool internal;  /* an error reply made here, never seen by the handler */
    bool streaming; /* bl_http_stream_begin() was called */
    bool chunked;   /* the stream uses chunked framing (HTTP/1.1) */
    bool no_body;   /* HEAD request: reply headers only */
    size_t max_buffered;
    struct buf req;  /* target, header names and values, body */
    struct buf held; /* reply bytes waiting for earlier replies */
    size_t target_len;
    size_t body_off;
    size_t header_bytes; /* counted against max_header_bytes */
    struct header_off hoff[BL_HTTP_MAX_HEADERS];
    enum { LAST_NONE, LAST_FIELD, LAST_VALUE } last;
    bool headers_done; /* later header callbacks are chunked trailers */
    unsigned short http_major, http_minor;
};

enum conn_state {
    CONN_OPEN,    /* reading requests, writing replies */
    CONN_LINGER,  /* write side shut down; discarding input until EOF */
    CONN_CLOSING, /* uv_close() called on the handles */
    CONN_CLOSED,  /* both handles closed; waits for outstanding exchanges */
};

enum timer_mode { TIMER_OFF, TIMER_IDLE, TIMER_REQUEST, TIMER_LINGER };

struct conn {
    struct bl_http_server *srv;
    struct conn *prev, *next; /* the server's list */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    http_parser parser;
    enum conn_state state;
    enum timer_mode timer_mode;
    int handles_open;         /* tcp and timer until their close callbacks */
    unsigned outstanding;     /* exchanges the handler holds */
    unsigned n_pending;       /* exchanges in the queue */
    size_t req_bytes;         /* request bytes of the exchanges in the queue */
    struct exchange *head;    /* queue, in request order */
    struct exchange *tail;    /* last of the queue */
    struct exchange *free_ex; /* recycled exchanges */
    unsigned n_free;
    struct exchange *cur; /* the request being parsed */
    int reject;           /* status of a limit hit inside a parser callback */
    bool in_request;      /* a request has begun and not completed */
    bool no_more;         /* parse nothing more: the last request is queued */
    bool last_written;    /* the reply that ends the connection is out */
    bool paused;          /* parser paused for backpressure */
    bool in_parse;        /* inside conn_parse(): do not re-enter */
    bool reading;
    bool writing;
    bool shutting_down;
    struct buf out;  /* replies being assembled */
    struct buf wbuf; /* replies being written */
    size_t rpos, rlen;
    char rbuf[READ_BUF_SIZE];
};

struct bl_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct bl_http_server_opts opts;
    bl_http_handler_cb handler;
    void *handler_arg;
    struct conn *conns;
    unsigned n_open;    /* connections not yet closing */
    unsigned n_refused; /* refused handles not yet closed */
    int port;
    bool closing;
    bool listener_closed;
    void (*close_cb)(void *arg);
    void *close_arg;
    time_t date_time;
    char date[40];
};

static void conn_close(struct conn *c);
static void conn_pump(struct conn *c);
static void conn_parse(struct conn *c);
static void conn_update_reading(struct conn *c);

/* ------------------------------------------------------------------------ */
/* Buffers */

/* Make room for @extra more bytes in @b. Returns BL_OK or BL_ENOMEM. */
static int buf_reserve(struct buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *p;
    if (extra > SIZE_MAX - b->len) {
        return BL_ENOMEM;
    }
    need = b->len + extra;
    if (need <= b->cap) {
        return BL_OK;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return BL_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return BL_OK;
}

/* Append @len bytes at @data to @b. Returns BL_OK or BL_ENOMEM. */
static int buf_append(struct buf *b, const void *data, size_t len)
{
    if (len == 0) {
        return BL_OK;
    }
    if (buf_reserve(b, len) != BL_OK) {
        return BL_ENOMEM;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return BL_OK;
}

/* Append a NUL-terminated string. */
static int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Empty @b, freeing its memory if it grew past KEEP_BUF_MAX. */
static void buf_recycle(struct buf *b)
{
    b->len = 0;
    if (b->cap > KEEP_BUF_MAX) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* Free the memory of @b and leave it empty. */
static void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Exchange the contents of two buffers (no copy). */
static void buf_swap(struct buf *a, struct buf *b)
{
    struct buf t = *a;
    *a = *b;
    *b = t;
}

/* ------------------------------------------------------------------------ */
/* Formatting helpers */

/* The reason phrase for @status. */
static const char *reason(int status)
{
    switch (status) {
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 507:
        return "Insufficient Storage";
    default:
        break;
    }
    const char *r = http_status_str((enum http_status)status);
    return r[0] == '<' ? "Unknown" : r;
}

/* The server's Date header value, recomputed once a second. */
static const char *server_date(struct bl_http_server *s)
{
    static const char *const DAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (now != s->date_time || s->date[0] == '\0') {
        if (gmtime_r(&now, &tm) == NULL) {
            return s->date;
        }
        snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 DAYS[tm.tm_wday % 7], tm.tm_mday, MONTHS[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        s->date_time = now;
    }
    return s->date;
}

/* Write {"error":{"code":@code,"message":@message}} into @out (@cap bytes,
 * truncating the message if needed). Returns the length. */
static size_t json_error(char *out, size_t cap, const char *code, const char *message)
{
    size_t n = 0;
    const char *p;
    int w = snprintf(out, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    if (w < 0 || (size_t)w >= cap) {
        return 0;
    }
    n = (size_t)w;
    for (p = message; *p != '\0' && n + 8 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    if (n + 4 > cap) {
        return 0;
    }
    memcpy(out + n, "\"}}", 3);
    return n + 3;
}

/* ------------------------------------------------------------------------ */
/* Exchanges */

/* Clear @ex for a new request, keeping its buffers. */
static void ex_reset(struct exchange *ex, struct conn *c)
{
    ex->pub.method = 0;
    ex->pub.target = ex->pub.path = ex->pub.query = NULL;
    ex->pub.target_len = ex->pub.path_len = ex->pub.query_len = 0;
    ex->pub.n_headers = 0;
    ex->pub.body = NULL;
    ex->pub.body_len = 0;
    ex->pub.keep_alive = false;
    ex->pub.data = NULL;
    ex->pub.impl = ex;
    ex->conn = c;
    ex->next = NULL;
    ex->state = EX_PARSING;
    ex->internal = ex->streaming = ex->chunked = ex->no_body = false;
    ex->max_buffered = 0;
    ex->req.len = 0;
    ex->held.len = 0;
    ex->target_len = 0;
    ex->body_off = 0;
    ex->header_bytes = REQ_LINE_OVERHEAD;
    ex->last = LAST_NONE;
    ex->headers_done = false;
    ex->http_major = 1;
    ex->http_minor = 1;
}

/* A clean exchange for @c, from the free list or the heap; NULL if out of
 * memory. */
static struct exchange *ex_get(struct conn *c)
{
    struct exchange *ex = c->free_ex;
    if (ex != NULL) {
        c->free_ex = ex->next;
        c->n_free--;
    } else {
        ex = calloc(1, sizeof *ex);
        if (ex == NULL) {
            return NULL;
        }
    }
    ex_reset(ex, c);
    return ex;
}

/* Free @ex and its buffers. */
static void ex_destroy(struct exchange *ex)
{
    buf_free(&ex->req);
    buf_free(&ex->held);
    free(ex);
}

/* Done with @ex: keep it for reuse if the connection is open and the free
 * list has room, else free it. */
static void ex_release(struct exchange *ex)
{
    struct conn *c = ex->conn;
    if (c->state >= CONN_CLOSING || c->n_free >= FREE_LIST_MAX) {
        ex_destroy(ex);
        return;
    }
    buf_recycle(&ex->req);
    buf_recycle(&ex->held);
    ex->next = c->free_ex;
    c->free_ex = ex;
    c->n_free++;
}

/* Point the public fields of @ex into its request buffer (after it last
 * moved). */
static void ex_fix_pointers(struct exchange *ex)
{
    static const char EMPTY[1] = "";
    const char *base = ex->req.data != NULL ? ex->req.data : EMPTY;
    const char *q;
    unsigned i;

    ex->pub.target = base;
    ex->pub.target_len = ex->target_len;
    q = ex->target_len > 0 ? memchr(base, '?', ex->target_len) : NULL;
    ex->pub.path = base;
    if (q != NULL) {
        ex->pub.path_len = (size_t)(q - base);
        ex->pub.query = q + 1;
        ex->pub.query_len = ex->target_len - ex->pub.path_len - 1;
    } else {
        ex->pub.path_len = ex->target_len;
        ex->pub.query = NULL;
        ex->pub.query_len = 0;
    }
    for (i = 0; i < ex->pub.n_headers; i++) {
        ex->pub.headers[i].name = base + ex->hoff[i].name_off;
        ex->pub.headers[i].name_len = ex->hoff[i].name_len;
        ex->pub.headers[i].value = base + ex->hoff[i].value_off;
        ex->pub.headers[i].value_len = ex->hoff[i].value_len;
    }
    if (ex->headers_done) {
        ex->pub.body = (const uint8_t *)base + ex->body_off;
        ex->pub.body_len = ex->req.len - ex->body_off;
    }
}

/* Where reply bytes of @ex go: the connection's output buffer when @ex is
 * at the head of the queue, else its own held buffer. */
static struct buf *ex_sink(struct exchange *ex)
{
    return ex->conn->head == ex ? &ex->conn->out : &ex->held;
}

/* Status line and headers of a reply to @ex. @content_length is the body
 * length, or SIZE_MAX for a stream. Returns BL_OK or BL_ENOMEM. */
static int ex_put_head(struct exchange *ex, int status, const struct bl_http_header *headers,
                       unsigned n, size_t content_length)
{
    struct buf *b = ex_sink(ex);
    char line[192];
    unsigned i;
    int rv = 0;

    /* No snprintf here: it was a good part of a small reply's cost. */
    bl_fmt_u64(line, (uint64_t)status);
    rv |= buf_puts(b, "HTTP/1.1 ");
    rv |= buf_puts(b, line);
    rv |= buf_puts(b, " ");
    rv |= buf_puts(b, reason(status));
    rv |= buf_puts(b, "\r\nDate: ");
    rv |= buf_puts(b, server_date(ex->conn->srv));
    rv |= buf_puts(b, "\r\n");
    if (content_length == SIZE_MAX) {
        if (ex->chunked) {
            rv |= buf_puts(b, "Transfer-Encoding: chunked\r\n");
        }
    } else if (status != 204 && status != 304 && status >= 200) {
        bl_fmt_u64(line, (uint64_t)content_length);
        rv |= buf_puts(b, "Content-Length: ");
        rv |= buf_puts(b, line);
        rv |= buf_puts(b, "\r\n");
    }
    rv |= buf_puts(b, ex->pub.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    for (i = 0; i < n; i++) {
        rv |= buf_append(b, headers[i].name, headers[i].name_len);
        rv |= buf_append(b, ": ", 2);
        rv |= buf_append(b, headers[i].value, headers[i].value_len);
        rv |= buf_append(b, "\r\n", 2);
    }
    rv |= buf_append(b, "\r\n", 2);
    return rv != 0 ? BL_ENOMEM : BL_OK;
}

/* A complete reply to @ex. Returns BL_OK or BL_ENOMEM. */
static int ex_put_reply(struct exchange *ex, int status, const struct bl_http_header *headers,
                        unsigned n, const void *body, size_t len)
{
    bool body_allowed = status >= 200 && status != 204 && status != 304;
    int rv = ex_put_head(ex, status, headers, n, body_allowed ? len : 0);
    if (rv == BL_OK && body_allowed && !ex->no_body) {
        rv = buf_append(ex_sink(ex), body, len);
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* Connections: timers, reading, writing, closing */

static void timer_cb(uv_timer_t *t);

/* Run the connection timer in @mode for @ms (TIMER_OFF or 0: stop it). */
static void conn_timer(struct conn *c, enum timer_mode mode, unsigned ms)
{
    if (c->state >= CONN_CLOSING) {
        return;
    }
    if (mode == TIMER_OFF || ms == 0) {
        uv_timer_stop(&c->timer);
        c->timer_mode = TIMER_OFF;
        return;
    }
    uv_timer_start(&c->timer, timer_cb, ms, 0);
    c->timer_mode = mode;
}

/* Bytes of replies queued on @c and not yet taken by the kernel. */
static size_t conn_unsent(const struct conn *c)
{
    return c->out.len + uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

/* True when parsing should pause: too many exchanges, request bytes or
 * unsent reply bytes pending. */
static bool conn_over_high_water(const struct conn *c)
{
    return c->n_pending >= PIPELINE_MAX || c->req_bytes > REQ_HIGH_WATER ||
           conn_unsent(c) > OUT_HIGH_WATER;
}

static void server_maybe_finish(struct bl_http_server *s);

/* Free @c once its handles are closed and the handler holds no exchange of
 * it; then the server may be done closing too. */
static void conn_maybe_free(struct conn *c)
{
    struct bl_http_server *s = c->srv;
    struct exchange *ex;
    if (c->state != CONN_CLOSED || c->outstanding > 0) {
        return;
    }
    while ((ex = c->free_ex) != NULL) {
        c->free_ex = ex->next;
        ex_destroy(ex);
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    buf_free(&c->out);
    buf_free(&c->wbuf);
    free(c);
    server_maybe_finish(s);
}

/* Close callback of both connection handles: the second one marks @c
 * closed and frees it if no exchange is outstanding. */
static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open == 0) {
        c->state = CONN_CLOSED;
        conn_maybe_free(c);
    }
}

/* Close @c now. Answered exchanges in its queue are freed; those the handler
 * still holds stay valid (and "gone") until answered. */
static void conn_close(struct conn *c)
{
    struct exchange *ex;
    struct exchange *next;
    if (c->state >= CONN_CLOSING) {
        return;
    }
    c->state = CONN_CLOSING;
    c->srv->n_open--;
    if (c->cur != NULL) {
        ex_destroy(c->cur);
        c->cur = NULL;
    }
    for (ex = c->head; ex != NULL; ex = next) {
        next = ex->next;
        ex->next = NULL;
        if (ex->state == EX_HANDLER) {
            buf_free(&ex->held);
        } else {
            ex_destroy(ex);
        }
    }
    c->head = c->tail = NULL;
    c->n_pending = 0;
    c->req_bytes = 0;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* Every reply is out and the write side is shut down: linger, reading and
 * discarding until EOF or LINGER_MS, then close. */
static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_OPEN) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    c->rpos = c->rlen = 0;
    conn_timer(c, TIMER_LINGER, LINGER_MS);
    conn_update_reading(c);
}

/* Called whenever replies made progress: close a finished connection,
 * resume a paused one (only when @may_parse: from a write callback, never
 * from inside a handler's call, so that a handler is not re-entered from
 * bl_http_respond()), run the idle timer when nothing is pending. */
static void conn_after_progress(struct conn *c, bool may_parse)
{
    unsigned idle = c->srv->opts.idle_timeout_ms;
    if (c->state != CONN_OPEN) {
        return;
    }
    if (c->no_more) {
        if ((c->head == NULL || c->last_written) && !c->writing && c->out.len == 0 &&
            !c->shutting_down) {
            c->shutting_down = true;
            conn_timer(c, TIMER_OFF, 0);
            c->sreq.data = c;
            if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
                conn_close(c);
            }
        }
        return;
    }
    if (may_parse && c->paused && !c->in_parse && !conn_over_high_water(c)) {
        c->paused = false;
        http_parser_pause(&c->parser, 0);
        conn_parse(c);
        conn_update_reading(c);
        if (c->state != CONN_OPEN || c->no_more) {
            return;
        }
    }
    if (!c->in_request && c->head == NULL) {
        conn_timer(c, TIMER_IDLE, idle);
    } else if (c->timer_mode == TIMER_IDLE) {
        conn_timer(c, TIMER_OFF, 0);
    }
}

static void write_cb(uv_write_t *req, int status);

/* Start writing the output buffer unless a write is in flight. */
static void conn_flush(struct conn *c)
{
    uv_buf_t b;
    if (c->writing || c->out.len == 0 || c->state != CONN_OPEN) {
        return;
    }
    buf_swap(&c->out, &c->wbuf);
    b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
}

/* The output buffer went out (or failed: close). Write what collected
 * meanwhile, then see whether the connection can resume, idle or end. */
static void write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    buf_recycle(&c->wbuf);
    if (c->state >= CONN_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    conn_after_progress(c, true);
}

/* Move replies from the head of the queue to the output buffer, in order,
 * releasing the answered exchanges; then flush. */
static void conn_pump(struct conn *c)
{
    struct exchange *ex;
    if (c->state >= CONN_CLOSING) {
        return;
    }
    while ((ex = c->head) != NULL && !c->last_written) {
        if (ex->held.len > 0) {
            if (c->out.len == 0) {
                buf_swap(&c->out, &ex->held);
            } else if (buf_append(&c->out, ex->held.data, ex->held.len) != BL_OK) {
                conn_close(c);
                return;
            }
            ex->held.len = 0;
        }
        if (ex->state != EX_DONE) {
            break; /* the handler still writes to it, straight to out now */
        }
        c->head = ex->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->n_pending--;
        c->req_bytes -= ex->req.len;
        if (!ex->pub.keep_alive) {
            c->last_written = true;
            c->no_more = true;
        }
        ex_release(ex);
    }
    conn_flush(c);
    conn_after_progress(c, false);
}

/* Append @ex (parsed or internal) to the queue of @c. */
static void conn_enqueue(struct conn *c, struct exchange *ex)
{
    ex->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = ex;
    } else {
        c->head = ex;
    }
    c->tail = ex;
    c->n_pending++;
    c->req_bytes += ex->req.len;
}

/* Queue an error reply that ends the connection, behind the pending ones. */
static void conn_reply_error(struct conn *c, int status, const char *code, const char *message)
{
    struct bl_http_header h[9] = {{"Content-Type", 12, "application/json", 16}};
    struct bl_http_server *s = c->srv;
    struct exchange *ex = c->cur;
    unsigned n = 1;
    char body[512];
    size_t len;

    c->cur = NULL;
    if (ex == NULL) {
        ex = ex_get(c);
        if (ex == NULL) {
            conn_close(c);
            return;
        }
    }
    ex_reset(ex, c);
    ex->internal = true;
    ex->state = EX_DONE;
    ex->pub.keep_alive = false;
    c->in_request = false;
    c->no_more = true;
    conn_timer(c, TIMER_OFF, 0);
    conn_enqueue(c, ex);
    len = json_error(body, sizeof body, code, message);
    if (s->opts.extra_headers != NULL) {
        n += s->opts.extra_headers(s->handler_arg, h + 1, 8);
    }
    if (ex_put_reply(ex, status, h, n, body, len) != BL_OK) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
    conn_pump(c);
}

/* After http_parser_execute() failed with @err: reply 400, 413 or 431. */
static void conn_parse_error(struct conn *c, enum http_errno err)
{
    struct bl_http_server *s = c->srv;
    char msg[160];
    int reject = c->reject;
    c->reject = 0;
    if (c->state != CONN_OPEN || c->no_more) {
        return;
    }
    if (reject == REJECT_NOMEM) {
        conn_close(c);
    } else if (reject == 413) {
        snprintf(msg, sizeof msg, "request body exceeds %zu bytes", s->opts.max_body_bytes);
        conn_reply_error(c, 413, "too_large", msg);
    } else if (reject == 431 || err == HPE_HEADER_OVERFLOW) {
        snprintf(msg, sizeof msg, "request header section exceeds %zu bytes or %d fields",
                 s->opts.max_header_bytes, BL_HTTP_MAX_HEADERS);
        conn_reply_error(c, 431, "too_large", msg);
    } else {
        snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(err));
        conn_reply_error(c, 400, "bad_request", msg);
    }
}

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

/* The parser callbacks, defined further down. */
static const http_parser_settings SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parse what the read buffer holds, until it is used up, the parser pauses
 * (backpressure, or the last request of the connection) or fails. */
static void conn_parse(struct conn *c)
{
    size_t n;
    enum http_errno err;

    c->in_parse = true;
    while (c->state == CONN_OPEN && !c->no_more && !c->paused && c->rpos < c->rlen) {
        n = http_parser_execute(&c->parser, &SETTINGS, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rpos += n;
        err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            if (c->state == CONN_OPEN && !c->no_more) {
                c->paused = true;
            }
            break;
        }
        if (err != HPE_OK) {
            conn_parse_error(c, err);
            break;
        }
        if (n == 0) {
            /* no progress and no error: an upgrade; nothing more to parse */
            c->no_more = true;
            break;
        }
    }
    c->in_parse = false;
    if (c->rpos == c->rlen || c->no_more || c->state != CONN_OPEN) {
        c->rpos = c->rlen = 0;
    }
}

/* Hand libuv the free end of the connection's read buffer (all of it: the
 * buffer is only read into once the previous bytes are parsed). */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;
    (void)suggested;
    b->base = c->rbuf + c->rlen;
    b->len = sizeof c->rbuf - c->rlen;
}

/* New bytes: parse them. EOF or an error means the client is gone. While
 * lingering, or after the last request, input is discarded. */
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = stream->data;
    (void)b;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->state != CONN_OPEN || c->no_more) {
        return; /* nothing, or lingering: discard */
    }
    c->rlen += (size_t)nread;
    conn_parse(c);
    conn_update_reading(c);
}

/* Read when requests are wanted (or to discard while lingering). */
static void conn_update_reading(struct conn *c)
{
    bool want = (c->state == CONN_OPEN && !c->no_more && !c->paused) || c->state == CONN_LINGER;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* The connection timer fired: a request took too long (408 if nothing else
 * is pending, else just close), the connection idled, or lingering is over. */
static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum timer_mode mode = c->timer_mode;
    char msg[96];
    c->timer_mode = TIMER_OFF;
    if (mode == TIMER_REQUEST && c->head == NULL && c->state == CONN_OPEN && !c->no_more) {
        snprintf(msg, sizeof msg, "request not complete within %u ms",
                 c->srv->opts.request_timeout_ms);
        conn_reply_error(c, 408, "bad_request", msg);
        return;
    }
    conn_close(c);
}

/* ------------------------------------------------------------------------ */
/* Parser callbacks: copy the request into the current exchange. */

/* Count @len more header bytes against the limit; false (and a 431 reject)
 * when over. */
static bool header_bytes_ok(struct conn *c, struct exchange *ex, size_t len)
{
    if (len > c->srv->opts.max_header_bytes ||
        ex->header_bytes > c->srv->opts.max_header_bytes - len) {
        c->reject = 431;
        return false;
    }
    ex->header_bytes += len;
    return true;
}

/* A request starts: take an exchange and start the request timer. */
static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    if (c->state != CONN_OPEN || c->no_more) {
        return -1;
    }
    c->cur = ex_get(c);
    if (c->cur == NULL) {
        c->reject = REJECT_NOMEM;
        return -1;
    }
    c->in_request = true;
    conn_timer(c, TIMER_REQUEST, c->srv->opts.request_timeout_ms);
    return 0;
}

/* A piece of the request-target: count it, copy it. */
static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct exchange *ex = c->cur;
    if (ex == NULL || c->state != CONN_OPEN || !header_bytes_ok(c, ex, len)) {
        return -1;
    }
    if (buf_append(&ex->req, at, len) != BL_OK) {
        c->reject = REJECT_NOMEM;
        return -1;
    }
    ex->target_len += len;
    return 0;
}

/* A piece of a header name; a new name after a value starts a new header.
 * Trailers after a chunked body are counted against the limit, not kept. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct exchange *ex = c->cur;
    struct header_off *h;
    bool fresh;
    if (ex == NULL || c->state != CONN_OPEN) {
        return -1;
    }
    fresh = ex->last != LAST_FIELD;
    if (!header_bytes_ok(c, ex, len + (fresh ? LINE_OVERHEAD : 0))) {
        return -1;
    }
    ex->last = LAST_FIELD;
    if (ex->headers_done) {
        return 0; /* a chunked trailer: counted, not kept */
    }
    if (fresh) {
        if (ex->pub.n_headers == BL_HTTP_MAX_HEADERS) {
            c->reject = 431;
            return -1;
        }
        h = &ex->hoff[ex->pub.n_headers++];
        h->name_off = ex->req.len;
        h->name_len = 0;
        h->value_off = ex->req.len;
        h->value_len = 0;
    }
    h = &ex->hoff[ex->pub.n_headers - 1];
    if (buf_append(&ex->req, at, len) != BL_OK) {
        c->reject = REJECT_NOMEM;
        return -1;
    }
    h->name_len += len;
    return 0;
}

/* A piece of a header value. */
static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct exchange *ex = c->cur;
    struct header_off *h;
    if (ex == NULL || c->state != CONN_OPEN || !header_bytes_ok(c, ex, len)) {
        return -1;
    }
    if (ex->headers_done || ex->pub.n_headers == 0) {
        ex->last = LAST_VALUE;
        return 0;
    }
    h = &ex->hoff[ex->pub.n_headers - 1];
    if (ex->last != LAST_VALUE) {
        h->value_off = ex->req.len;
        h->value_len = 0;
    }
    ex->last = LAST_VALUE;
    if (buf_append(&ex->req, at, len) != BL_OK) {
        c->reject = REJECT_NOMEM;
        return -1;
    }
    h->value_len += len;
    return 0;
}

/* Headers done: refuse a declared body over the limit before reading it,
 * reserve room for an acceptable one, answer Expect: 100-continue. */
static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct exchange *ex = c->cur;
    size_t vlen;
    const char *v;
    bool has_body;
    if (ex == NULL || c->state != CONN_OPEN) {
        return -1;
    }
    ex->headers_done = true;
    ex->body_off = ex->req.len;
    ex->http_major = p->http_major;
    ex->http_minor = p->http_minor;
    has_body = (p->flags & F_CHUNKED) != 0;
    if (!has_body && p->content_length != ULLONG_MAX && p->content_length > 0) {
        has_body = true;
        if (p->content_length > c->srv->opts.max_body_bytes) {
            c->reject = 413;
            return -1;
        }
        if (buf_reserve(&ex->req, (size_t)p->content_length) != BL_OK) {
            c->reject = REJECT_NOMEM;
            return -1;
        }
    }
    /* Expect: 100-continue, answered only when it cannot jump the queue. */
    ex_fix_pointers(ex);
    v = bl_http_header_get(&ex->pub, "Expect", &vlen);
    if (v != NULL && has_body && c->head == NULL && p->http_major == 1 && p->http_minor >= 1 &&
        vlen == 12 && strncasecmp(v, "100-continue", 12) == 0) {
        if (buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") != BL_OK) {
            c->reject = REJECT_NOMEM;
            return -1;
        }
        conn_flush(c);
        if (c->state != CONN_OPEN) {
            return -1;
        }
    }
    return 0;
}

/* A piece of the (de-chunked) body, refused past max_body_bytes. */
static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct exchange *ex = c->cur;
    size_t have;
    if (ex == NULL || c->state != CONN_OPEN) {
        return -1;
    }
    have = ex->req.len - ex->body_off;
    if (len > c->srv->opts.max_body_bytes || have > c->srv->opts.max_body_bytes - len) {
        c->reject = 413;
        return -1;
    }
    if (buf_append(&ex->req, at, len) != BL_OK) {
        c->reject = REJECT_NOMEM;
        return -1;
    }
    return 0;
}

/* A request is complete: queue it and hand it to the handler; pause the
 * parser if it was the last one, or too much is pending. */
static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct bl_http_server *s = c->srv;
    struct exchange *ex = c->cur;
    if (ex == NULL || c->state != CONN_OPEN) {
        return -1;
    }
    c->cur = NULL;
    c->in_request = false;
    conn_timer(c, TIMER_OFF, 0);
    if (!ex->headers_done) {
        ex->headers_done = true;
        ex->body_off = ex->req.len;
    }
    ex_fix_pointers(ex);
    ex->pub.method = (int)p->method;
    ex->pub.keep_alive = http_should_keep_alive(p) && !p->upgrade;
    ex->no_body = p->method == HTTP_HEAD;
    ex->state = EX_HANDLER;
    if (!ex->pub.keep_alive) {
        c->no_more = true;
    }
    conn_enqueue(c, ex);
    c->outstanding++;
    s->handler(&ex->pub, s->handler_arg);
    if (c->state != CONN_OPEN || c->no_more || conn_over_high_water(c)) {
        http_parser_pause(p, 1);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Accepting */

/* A refused connection's handle is closed. */
static void refused_close_cb(uv_handle_t *h)
{
    struct bl_http_server *s = h->data;
    free(h);
    s->n_refused--;
    server_maybe_finish(s);
}

/* Accept the pending connection and close it at once. */
static void server_refuse(struct bl_http_server *s)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL) {
        return;
    }
    if (uv_tcp_init(s->loop, t) != 0) {
        free(t);
        return;
    }
    t->data = s;
    s->n_refused++;
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, refused_close_cb);
}

/* A client connects: set up its connection and start reading (or refuse
 * it beyond max_connections). */
static void connection_cb(uv_stream_t *listener, int status)
{
    struct bl_http_server *s = listener->data;
    struct conn *c;
    if (status < 0 || s->closing) {
        return;
    }
    if (s->n_open >= s->opts.max_connections) {
        server_refuse(s);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        server_refuse(s);
        return;
    }
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        server_refuse(s);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->srv = s;
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->state = CONN_OPEN;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->n_open++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_update_reading(c);
    conn_after_progress(c, false);
}

/* ------------------------------------------------------------------------ */
/* The server */

/* Once closing, the listener closed and every connection freed: call the
 * close callback and free @s. */
static void server_maybe_finish(struct bl_http_server *s)
{
    void (*cb)(void *arg) = s->close_cb;
    void *arg = s->close_arg;
    if (!s->closing || !s->listener_closed || s->conns != NULL || s->n_refused > 0) {
        return;
    }
    free(s);
    if (cb != NULL) {
        cb(arg);
    }
}

/* The listener handle is closed. */
static void listener_close_cb(uv_handle_t *h)
{
    struct bl_http_server *s = h->data;
    s->listener_closed = true;
    server_maybe_finish(s);
}

/* Split "host:port" or "[v6]:port" into @host (@host_size bytes) and @port.
 * An empty host means every interface. Returns BL_OK or BL_EBADREQ. */
static int split_host_port(const char *hp, char *host, size_t host_size, const char **port)
{
    const char *colon;
    const char *h = hp;
    size_t hlen;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL || close[1] != ':') {
            return BL_EBADREQ;
        }
        h = hp + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL) {
            return BL_EBADREQ;
        }
        hlen = (size_t)(colon - hp);
        if (memchr(hp, ':', hlen) != NULL) {
            return BL_EBADREQ; /* a bare IPv6 address needs brackets */
        }
    }
    if (hlen >= host_size) {
        return BL_EBADREQ;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = colon + 1;
    if (strlen(*port) == 0 || strlen(*port) > 5 || strspn(*port, "0123456789") != strlen(*port) ||
        atoi(*port) > 65535) {
        return BL_EBADREQ;
    }
    return BL_OK;
}

/* A listening, non-blocking socket on @host_port, or a negative errno-style
 * libuv code with @errmsg filled. */
static int listen_socket(const char *host_port, int *fd_out, char *errmsg)
{
    char host[256];
    const char *port;
    struct addrinfo hints;
    struct addrinfo *ai = NULL;
    int one = 1;
    int fd;
    int rv;

    if (split_host_port(host_port, host, sizeof host, &port) != BL_OK) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: expected HOST:PORT or [IPV6]:PORT", host_port);
        return BL_EBADREQ;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rv = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai);
    if (rv != 0 || ai == NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: %s", host_port,
                 rv != 0 ? gai_strerror(rv) : "no address");
        if (ai != NULL) {
            freeaddrinfo(ai);
        }
        return BL_EBADREQ;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rv = -errno;
        goto err;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        rv = -errno;
        goto err_after_socket;
    }
    freeaddrinfo(ai);
    *fd_out = fd;
    return BL_OK;

err_after_socket:
    close(fd);
err:
    freeaddrinfo(ai);
    snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: %s", host_port, uv_strerror(rv));
    return bl_from_uv(rv);
}

/* The port @fd is bound to. */
static int socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

/* Frees a server whose start failed after its handle existed. */
static void free_server_cb(uv_handle_t *h)
{
    free(h->data);
}

/* See http.h. Zero fields of @opts take the defaults, except
 * request_timeout_ms where 0 means none. Bind and listen happen on a socket
 * of our own, so their errors need no asynchronous cleanup; only a failure
 * inside libuv after that leaves a handle for the loop to close and free. */
int bl_http_server_start(uv_loop_t *loop, const char *host_port,
                         const struct bl_http_server_opts *opts, bl_http_handler_cb handler,
                         void *handler_arg, struct bl_http_server **out, char *errmsg)
{
    struct bl_http_server *s;
    int fd = -1;
    int rv;

    assert(loop != NULL && host_port != NULL && handler != NULL && out != NULL);
    rv = listen_socket(host_port, &fd, errmsg);
    if (rv != BL_OK) {
        return rv;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: out of memory", host_port);
        rv = BL_ENOMEM;
        goto err_after_socket;
    }
    s->loop = loop;
    s->handler = handler;
    s->handler_arg = handler_arg;
    if (opts != NULL) {
        s->opts = *opts;
    } else {
        s->opts.request_timeout_ms = DEFAULT_REQ_TO;
    }
    if (s->opts.max_header_bytes == 0) {
        s->opts.max_header_bytes = DEFAULT_MAX_HEADER;
    }
    if (s->opts.max_body_bytes == 0) {
        s->opts.max_body_bytes = DEFAULT_MAX_BODY;
    }
    if (s->opts.idle_timeout_ms == 0) {
        s->opts.idle_timeout_ms = DEFAULT_IDLE_TO;
    }
    if (s->opts.max_connections == 0) {
        s->opts.max_connections = DEFAULT_MAX_CONNS;
    }
    s->port = socket_port(fd);
    rv = uv_tcp_init(loop, &s->listener);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: %s", host_port, uv_strerror(rv));
        rv = bl_from_uv(rv);
        goto err_after_alloc;
    }
    s->listener.data = s;
    rv = uv_tcp_open(&s->listener, fd);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, connection_cb);
    } else {
        close(fd);
    }
    if (rv != 0) {
        /* the handle exists now: it is freed by the loop */
        snprintf(errmsg, BL_ERRMSG_SIZE, "listen %s: %s", host_port, uv_strerror(rv));
        uv_close((uv_handle_t *)&s->listener, free_server_cb);
        return bl_from_uv(rv);
    }
    *out = s;
    return BL_OK;

err_after_alloc:
    free(s);
err_after_socket:
    close(fd);
    return rv;
}

/* See http.h. */
void bl_http_server_close(struct bl_http_server *s, void (*cb)(void *arg), void *arg)
{
    struct conn *c;
    assert(!s->closing);
    s->closing = true;
    s->close_cb = cb;
    s->close_arg = arg;
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
    for (c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
}

/* See http.h: connections not yet closing (lingering ones included). */
unsigned bl_http_server_connections(const struct bl_http_server *s)
{
    return s->n_open;
}

/* See http.h. */
int bl_http_server_port(const struct bl_http_server *s)
{
    return s->port;
}

/* ------------------------------------------------------------------------ */
/* Replies */

/* See http.h. */
bool bl_http_exchange_gone(const struct bl_http_exchange *pub)
{
    const struct exchange *ex = pub->impl;
    return ex->conn->state >= CONN_CLOSING;
}

/* See http.h. */
int bl_http_exchange_send_buffer(struct bl_http_exchange *pub, int bytes)
{
    struct exchange *ex = pub->impl;
    int value = bytes;
    if (ex->conn->state >= CONN_CLOSING) {
        return BL_EUNAVAILABLE;
    }
    return uv_send_buffer_size((uv_handle_t *)&ex->conn->tcp, &value) == 0 ? BL_OK : BL_EIO;
}

/* The handler is done with @ex: count it answered. Returns false if the
 * connection is gone, in which case @ex has been freed. */
static bool ex_answered(struct exchange *ex)
{
    struct conn *c = ex->conn;
    assert(c->outstanding > 0);
    c->outstanding--;
    ex->state = EX_DONE;
    if (c->state >= CONN_CLOSING) {
        ex_destroy(ex);
        conn_maybe_free(c);
        return false;
    }
    return true;
}

/* See http.h. Handler headers must not repeat Content-Length, Connection,
 * Date or Transfer-Encoding. A reply to HEAD keeps the Content-Length of
 * @body but not its bytes; 1xx, 204 and 304 replies carry no body. */
int bl_http_respond(struct bl_http_exchange *pub, int status, const struct bl_http_header *headers,
                    unsigned n, const void *body, size_t len)
{
    struct exchange *ex = pub->impl;
    struct conn *c = ex->conn;
    assert(ex->state == EX_HANDLER && !ex->streaming && !ex->internal);
    if (!ex_answered(ex)) {
        return BL_OK;
    }
    if (ex_put_reply(ex, status, headers, n, body, len) != BL_OK) {
        conn_close(c);
        return BL_ENOMEM;
    }
    conn_pump(c);
    return BL_OK;
}

/* See http.h. Whatever this returns, the stream must be ended with
 * bl_http_stream_end(). An HTTP/1.0 client gets the bytes unframed and the
 * connection closes after the stream. */
int bl_http_stream_begin(struct bl_http_exchange *pub, int status,
                         const struct bl_http_header *headers, unsigned n, size_t max_buffered)
{
    struct exchange *ex = pub->impl;
    struct conn *c = ex->conn;
    assert(ex->state == EX_HANDLER && !ex->streaming);
    ex->streaming = true;
    ex->max_buffered = max_buffered;
    ex->chunked = ex->http_major > 1 || (ex->http_major == 1 && ex->http_minor >= 1);
    if (!ex->chunked) {
        /* HTTP/1.0: the body ends when the connection does */
        ex->pub.keep_alive = false;
        c->no_more = true;
        conn_update_reading(c);
    }
    if (c->state >= CONN_CLOSING) {
        return BL_OK; /* writes will say BL_EUNAVAILABLE */
    }
    if (ex_put_head(ex, status, headers, n, SIZE_MAX) != BL_OK) {
        conn_close(c);
        return BL_ENOMEM;
    }
    conn_pump(c);
    return BL_OK;
}

/* "Waiting" bytes of the stream @ex: those in the output buffer plus
 * libuv's write queue when it is at the head of the queue, else those held
 * behind earlier replies (its header included). */
static size_t ex_waiting(const struct exchange *ex)
{
    const struct conn *c = ex->conn;
    if (c->state >= CONN_CLOSING) {
        return 0;
    }
    return c->head == ex ? conn_unsent(c) : ex->held.len;
}

/* See http.h. */
size_t bl_http_stream_unsent(const struct bl_http_exchange *pub)
{
    const struct exchange *ex = pub->impl;
    assert(ex->streaming);
    return ex_waiting(ex);
}

/* Queue one chunk of the stream @ex; with @limit, refuse it when it would
 * take the waiting bytes past max_buffered, unless nothing waits. */
static int stream_put(struct exchange *ex, const void *data, size_t len, bool limit)
{
    struct conn *c = ex->conn;
    struct buf *b;
    size_t queued;
    char size_line[24];
    int rv = 0;
    assert(ex->state == EX_HANDLER && ex->streaming);
    if (c->state >= CONN_CLOSING) {
        return BL_EUNAVAILABLE;
    }
    if (len == 0 || ex->no_body) {
        return BL_OK;
    }
    queued = ex_waiting(ex);
    if (limit && queued > 0 && (len > ex->max_buffered || queued > ex->max_buffered - len)) {
        return BL_ETOOLARGE;
    }
    b = ex_sink(ex);
    if (ex->chunked) {
        snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        rv |= buf_puts(b, size_line);
        rv |= buf_append(b, data, len);
        rv |= buf_append(b, "\r\n", 2);
    } else {
        rv |= buf_append(b, data, len);
    }
    if (rv != 0) {
        conn_close(c);
        return BL_ENOMEM;
    }
    conn_pump(c);
    return BL_OK;
}

/* See http.h. */
int bl_http_stream_write(struct bl_http_exchange *pub, const void *data, size_t len)
{
    return stream_put(pub->impl, data, len, true);
}

/* See http.h. */
int bl_http_stream_write_final(struct bl_http_exchange *pub, const void *data, size_t len)
{
    return stream_put(pub->impl, data, len, false);
}

/* See http.h. */
int bl_http_stream_end(struct bl_http_exchange *pub)
{
    struct exchange *ex = pub->impl;
    struct conn *c = ex->conn;
    assert(ex->state == EX_HANDLER && ex->streaming);
    if (!ex_answered(ex)) {
        return BL_OK;
    }
    if (ex->chunked && !ex->no_body && buf_puts(ex_sink(ex), "0\r\n\r\n") != BL_OK) {
        conn_close(c);
        return BL_ENOMEM;
    }
    conn_pump(c);
    return BL_OK;
}

/* ------------------------------------------------------------------------ */
/* Request helpers */

/* See http.h. */
const char *bl_http_header_get(const struct bl_http_exchange *ex, const char *name, size_t *len)
{
    size_t n = strlen(name);
    unsigned i;
    for (i = 0; i < ex->n_headers; i++) {
        const struct bl_http_header *h = &ex->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            if (len != NULL) {
                *len = h->value_len;
            }
            return h->value;
        }
    }
    return NULL;
}

/* The value of hex digit @ch, or -1. */
static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* See http.h. '+' is kept (this is not form decoding). */
int bl_http_unescape(const char *in, size_t in_len, uint8_t *out, size_t *out_len)
{
    size_t i = 0;
    size_t n = 0;
    while (i < in_len) {
        if (in[i] != '%') {
            out[n++] = (uint8_t)in[i++];
            continue;
        }
        if (in_len - i < 3) {
            return BL_EBADREQ;
        }
        int hi = hex_value(in[i + 1]);
        int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) {
            return BL_EBADREQ;
        }
        out[n++] = (uint8_t)(hi << 4 | lo);
        i += 3;
    }
    *out_len = n;
    return BL_OK;
}

/* See http.h. Names are compared raw (still escaped), whole. */
bool bl_http_query_get(const char *query, size_t query_len, const char *name, const char **value,
                       size_t *value_len)
{
    size_t name_len = strlen(name);
    const char *p = query;
    const char *end;
    if (query == NULL) {
        return false;
    }
    end = query + query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *key_end = eq != NULL ? eq : stop;
        if ((size_t)(key_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            if (value != NULL) {
                *value = eq != NULL ? eq + 1 : stop;
            }
            if (value_len != NULL) {
                *value_len = eq != NULL ? (size_t)(stop - eq - 1) : 0;
            }
            return true;
        }
        if (amp == NULL) {
            break;
        }
        p = amp + 1;
    }
    return false;
}
