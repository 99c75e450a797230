/* HTTP/1.1 server side: listener, connections, request parsing, replies.
 *
 * Built on libuv and http-parser (libhttp-parser-dev). A connection reads
 * into its own buffer, parses incrementally, and turns every complete request
 * into a bl_http_exchange that it hands to the server's handler. The handler
 * answers now or later (after a Raft commit) with bl_http_respond() or the
 * bl_http_stream_* calls. Pipelined requests are handed over in order and
 * their replies are written in request order, whatever order they complete in.
 *
 * Limits are checked before anything is buffered whole: a header section over
 * max_header_bytes closes the connection (431 reply first), a declared body
 * over max_body_bytes gets 413 and the connection closes; a request not
 * complete within request_timeout_ms closes the connection. A request that
 * http-parser rejects gets 400 with a JSON error body and the connection
 * closes (HTTP gives no way to find the next request). Errors the handler
 * finds (bad key, bad query) are ordinary replies and keep the connection.
 *
 * Ownership: an exchange and everything its fields point to belong to the
 * connection and stay valid until the handler calls bl_http_respond() (or
 * bl_http_stream_end()); after that the handler must not touch it. If the
 * client goes away first, the exchange stays valid all the same, the reply is
 * simply discarded, and bl_http_exchange_gone() says so. */
#ifndef BALLAST_HTTP_H
#define BALLAST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define BL_HTTP_MAX_HEADERS 64

struct bl_http_server;

/* A header name/value pair, pointing into the request (or caller memory). */
struct bl_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* One request and, later, its reply. Fields are read-only for handlers. */
struct bl_http_exchange {
    int method;         /* enum http_method (HTTP_GET, HTTP_PUT, ...) */
    const char *target; /* raw request-target, e.g. "/v1/kv/a%2Fb?prev" */
    size_t target_len;
    const char *path; /* target up to '?', still percent-encoded */
    size_t path_len;
    const char *query; /* after '?', NULL/0 when absent */
    size_t query_len;
    struct bl_http_header headers[BL_HTTP_MAX_HEADERS];
    unsigned n_headers;
    const uint8_t *body;
    size_t body_len;
    bool keep_alive; /* the connection stays open after the reply */
    void *data;      /* for the handler */
    void *impl;      /* private to http.c */
};

/* Called for each complete request. @arg is the server's handler_arg. */
typedef void (*bl_http_handler_cb)(struct bl_http_exchange *ex, void *arg);

struct bl_http_server_opts {
    size_t max_header_bytes;     /* default 16 KiB */
    size_t max_body_bytes;       /* default 1.5 MiB */
    unsigned request_timeout_ms; /* default 30000; 0 = none */
    unsigned idle_timeout_ms;    /* close idle keep-alive connections; default 300000 */
    unsigned max_connections;    /* default 10000 */
    /* Optional: headers to add to the replies the server makes itself (400,
     * 408, 413, 431). Called with the handler's argument; fills at most @max
     * headers into @out, whose strings must stay valid until the next call,
     * and returns how many. */
    unsigned (*extra_headers)(void *arg, struct bl_http_header *out, unsigned max);
};

/* Start listening on @host_port ("127.0.0.1:8379", IPv4 or [v6]:port). @opts
 * may be NULL for defaults. Returns BL_OK with *@out set, or an error code
 * with @errmsg (BL_ERRMSG_SIZE bytes) filled. */
int bl_http_server_start(uv_loop_t *loop, const char *host_port,
                         const struct bl_http_server_opts *opts, bl_http_handler_cb handler,
                         void *handler_arg, struct bl_http_server **out, char *errmsg);

/* Stop accepting, close every connection (pending exchanges stay valid until
 * answered; their replies are discarded), then call @cb and free @s once all
 * handles are closed and all exchanges answered. */
void bl_http_server_close(struct bl_http_server *s, void (*cb)(void *arg), void *arg);

/* Number of open connections (for metrics and tests). */
unsigned bl_http_server_connections(const struct bl_http_server *s);

/* The TCP port @s listens on: the one chosen by the system when @host_port
 * asked for port 0 (for tests). */
int bl_http_server_port(const struct bl_http_server *s);

/* The value of header @name (case-insensitive) or NULL; its length in *@len. */
const char *bl_http_header_get(const struct bl_http_exchange *ex, const char *name, size_t *len);

/* True once the client connection of @ex has closed. */
bool bl_http_exchange_gone(const struct bl_http_exchange *ex);

/* Cap the kernel's send buffer of @ex's connection at about @bytes
 * (SO_SNDBUF; Linux doubles it and stops autotuning it): for a long stream
 * whose unsent bytes must stay bounded when the client stops reading. */
int bl_http_exchange_send_buffer(struct bl_http_exchange *ex, int bytes);

/* Reply with @status, the @n extra headers, and @body[0..@len). Content-Length,
 * Connection and Date are added here. Copies what it needs, then releases
 * @ex. Returns BL_OK or BL_ENOMEM (the connection is then closed). */
int bl_http_respond(struct bl_http_exchange *ex, int status, const struct bl_http_header *headers,
                    unsigned n, const void *body, size_t len);

/* A chunked (Transfer-Encoding: chunked) reply: begin once, write any number
 * of chunks, end once (which releases @ex). write returns BL_EUNAVAILABLE
 * once the client is gone, and BL_ETOOLARGE when more than @max_buffered
 * bytes given to bl_http_stream_begin are waiting to be sent (a slow
 * reader); the caller then ends the stream. */
int bl_http_stream_begin(struct bl_http_exchange *ex, int status,
                         const struct bl_http_header *headers, unsigned n, size_t max_buffered);
int bl_http_stream_write(struct bl_http_exchange *ex, const void *data, size_t len);
int bl_http_stream_end(struct bl_http_exchange *ex);

/* bl_http_stream_write() without the max_buffered limit: for the last chunk
 * of a stream (a watch's "cancelled" event), which must go out even when a
 * slow reader has max_buffered bytes waiting. Returns BL_OK,
 * BL_EUNAVAILABLE or BL_ENOMEM (the connection is then closed). */
int bl_http_stream_write_final(struct bl_http_exchange *ex, const void *data, size_t len);

/* Bytes of the stream @ex waiting to be sent, as bl_http_stream_write()
 * counts them against max_buffered (0 once the client is gone). A stream
 * writer paces itself with it: it has no callback when the bytes drain. */
size_t bl_http_stream_unsent(const struct bl_http_exchange *ex);

/* Percent-decode @in[0..@in_len) into @out (at least @in_len bytes); the
 * decoded length goes to *@out_len. Returns BL_EBADREQ on a bad escape. */
int bl_http_unescape(const char *in, size_t in_len, uint8_t *out, size_t *out_len);

/* Find query parameter @name in @query. Returns true if present, with its
 * raw (still escaped) value in *@value / *@value_len (empty for "?prev"). */
bool bl_http_query_get(const char *query, size_t query_len, const char *name, const char **value,
                       size_t *value_len);

#endif /* BALLAST_HTTP_H */
