/* Asynchronous HTTP/1.1 client on libuv, for member-to-member calls:
 * forwarding a request to the leader and publishing this member's attributes.
 *
 * Keeps a small pool of idle keep-alive connections per destination
 * ("host:port"), so forwarding does not pay a TCP handshake per request.
 * A request either completes with the full response or fails with a code:
 * BL_EUNAVAILABLE when the connection could not be made or broke before any
 * response byte arrived (the request may or may not have reached the peer
 * if it broke after sending: then BL_ETIMEOUT), BL_ETIMEOUT on the deadline.
 *
 * Ownership: the client copies the request; the response given to the
 * callback (status, headers, body) is valid only during the callback. */
#ifndef BALLAST_HTTP_CLIENT_H
#define BALLAST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

struct bl_http_client;

/* A response, valid during the callback only. */
struct bl_http_response {
    int status;
    struct bl_http_header headers[BL_HTTP_MAX_HEADERS];
    unsigned n_headers;
    const uint8_t *body;
    size_t body_len;
};

/* @status is BL_OK with @resp set, or an error code with @resp NULL. */
typedef void (*bl_http_client_cb)(void *arg, int status, const struct bl_http_response *resp);

/* Idle keep-alive connections kept per destination by default. A follower
 * relays every write and read that reaches it over these: with 8, most of
 * 128 concurrent relayed requests opened and closed a TCP connection each
 * (bench/RESULTS.md: 18.0k -> 23.8k puts/s at 128 connections). */
#define BL_HTTP_CLIENT_MAX_IDLE 256

/* Create a client on @loop. */
int bl_http_client_init(uv_loop_t *loop, struct bl_http_client **out);

/* Keep at most @n idle connections per destination (default above). */
void bl_http_client_set_max_idle(struct bl_http_client *c, unsigned n);

/* Make new connections to IPv4 destinations leave from the host of @listen
 * ("HOST:PORT", e.g. this member's --listen-client) when that host is a
 * specific IPv4 literal, so that traffic between members carries the
 * member's own source address (a partition drawn by address then holds).
 * For 0.0.0.0, a host name or an IPv6 literal nothing changes. Connections
 * already in the pool keep their address. Returns BL_OK, or BL_EBADREQ
 * (nothing changes) when @listen is not HOST:PORT. If the address cannot be
 * bound later, those requests fail with BL_EUNAVAILABLE. */
int bl_http_client_bind(struct bl_http_client *c, const char *listen);

/* Close idle connections, fail pending requests with BL_ESHUTDOWN (their
 * callbacks run), and free @c once every handle is closed. */
void bl_http_client_close(struct bl_http_client *c);

/* Send @method @target to @host_port with the @n headers (Host,
 * Content-Length and Connection are added) and @body; call @cb exactly once
 * unless this returns an error. @timeout_ms bounds the whole exchange. */
int bl_http_client_request(struct bl_http_client *c, const char *host_port, const char *method,
                           const char *target, size_t target_len,
                           const struct bl_http_header *headers, unsigned n, const void *body,
                           size_t body_len, unsigned timeout_ms, bl_http_client_cb cb, void *arg);

/* The value of response header @name (case-insensitive) or NULL. */
const char *bl_http_response_header(const struct bl_http_response *r, const char *name,
                                    size_t *len);

#endif /* BALLAST_HTTP_CLIENT_H */
