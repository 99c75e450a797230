/* The peer transport: a struct raft_uv_transport for canonical/raft 0.15's
 * libuv I/O that replaces raft_uv_tcp_init, plus the "probe" protocol that
 * shares its port.
 *
 * Peer addresses are "HOST:PORT" where HOST is an IPv4 literal, a DNS name or
 * a bracketed IPv6 literal ("[::1]:8380"). A name is resolved afresh at every
 * connection attempt, never cached: first in a hosts file (the format of
 * /etc/hosts, re-read at every resolution), then with getaddrinfo. On the
 * wire a Raft connection opens with the same handshake as canonical/raft
 * 0.15's own TCP transport, so members using either interoperate.
 *
 * A probe is one request and one reply on a connection of its own, answered
 * by the listener before or while Raft runs: the client writes the magic
 * "BLPROBE1", a little-endian uint64 length and the request; the listener
 * answers with a uint64 length and the reply, then closes. */
#ifndef BALLAST_TRANSPORT_H
#define BALLAST_TRANSPORT_H

#include <stddef.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* An outgoing connection attempt (resolve, connect, handshake) that takes
 * longer than this fails with RAFT_NOCONNECTION; raft retries it. */
#define BL_TRANSPORT_CONNECT_TIMEOUT_MS 2000

/* An accepted connection that has not sent its whole handshake (or probe
 * request) after this long is closed. */
#define BL_TRANSPORT_HANDSHAKE_TIMEOUT_MS 5000

/* Largest address field accepted in a handshake, padding included. Our own
 * address (the one given to raft_init) must fit too. */
#define BL_TRANSPORT_MAX_ADDRESS 512

/* Largest probe request and largest probe reply, in bytes. */
#define BL_PROBE_MAX (64u << 10)

/* The environment variable naming the hosts file when no option does. */
#define BL_HOSTS_FILE_ENV "BALLAST_HOSTS_FILE"

/* Answers one probe request on the listener.
 *
 * @req/@len is the request, valid only during the call. On success the
 * handler returns 0 and sets *@reply to a malloc()'d buffer of *@reply_len
 * bytes (at most BL_PROBE_MAX; NULL if 0), which the transport frees after
 * writing it. Any other return closes the connection without a reply. The
 * handler runs on the loop thread and must not close the transport. */
typedef int (*bl_probe_handler)(void *arg, const void *req, size_t len, void **reply,
                                size_t *reply_len);

/* Completion of bl_transport_probe, called exactly once.
 *
 * @status is 0 or a negative Ballast code (error.h): BL_EUNAVAILABLE (name
 * not found, refused, closed without a reply), BL_ETIMEOUT (no reply within
 * the timeout), BL_ETOOLARGE (the reply is over BL_PROBE_MAX), BL_ENOMEM.
 * @reply/@reply_len is the reply when @status is 0 (NULL/0 otherwise); it is
 * valid only during the call. Every handle of the probe is closed by then. */
typedef void (*bl_probe_cb)(void *arg, int status, const void *reply, size_t reply_len);

/* Options of bl_transport_init. Zeroed fields take their defaults. */
struct bl_transport_opts {
    /* "HOST:PORT" the listener binds. NULL: the address raft passes to
     * init() (the one given to raft_init). HOST may be "0.0.0.0" or "[::]"
     * (every interface), a literal, or a name resolved once, when raft starts
     * listening. Port 0 picks a free port (tests; see bl_transport_port). */
    const char *bind_address;
    /* The hosts file consulted before getaddrinfo. NULL: the file named by
     * the BALLAST_HOSTS_FILE environment variable, read at each resolution;
     * no file at all if that is unset too. A missing file is no error. */
    const char *hosts_file;
    /* Probe handler; NULL closes probe connections without a reply. */
    bl_probe_handler probe_cb;
    void *probe_arg;
    /* 0: BL_TRANSPORT_CONNECT_TIMEOUT_MS. */
    unsigned connect_timeout_ms;
    /* 0: BL_TRANSPORT_HANDSHAKE_TIMEOUT_MS. */
    unsigned handshake_timeout_ms;
};

/* Initialize @t, a transport for raft_uv_init, on @loop. Call it before
 * raft_uv_init, as one would raft_uv_tcp_init.
 *
 * @opts may be NULL (all defaults); its strings are copied. Outgoing
 * connections are bound to the listen host when it is a specific IP literal
 * (not 0.0.0.0, ::, nor a name), so peers see this member's address as their
 * source. No handle is opened until raft calls listen() or connect().
 *
 * Returns 0, or BL_EBADREQ (@opts->bind_address is not HOST:PORT) or
 * BL_ENOMEM, with a message in @errmsg (BL_ERRMSG_SIZE bytes). On error @t
 * needs no bl_transport_close. */
int bl_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
                      const struct bl_transport_opts *opts, char *errmsg);

/* Release the memory of @t. The same contract as raft_uv_tcp_close: call it
 * after raft_uv_close, once raft's I/O has closed the transport (its close
 * callback has run, as it has when raft_close's callback runs), or when raft
 * never listened nor connected through it. Safe on a transport whose init
 * failed or that was released already. */
void bl_transport_close(struct raft_uv_transport *t);

/* The port the listener of @t is bound to (useful with port 0).
 *
 * Returns the port, or BL_EBADREQ if @t is not listening. */
int bl_transport_port(const struct raft_uv_transport *t);

/* Resolve @host (a name or literal, without port or brackets) synchronously
 * the way connections do: literal, then the hosts file (@hosts_file, or
 * BALLAST_HOSTS_FILE if NULL), then getaddrinfo (blocking). Writes the
 * address as text to @ip_out (@len bytes; INET6_ADDRSTRLEN is enough).
 *
 * Returns 0, BL_ENOTFOUND (no address), BL_EBADREQ (empty or overlong
 * @host, @ip_out too small). */
int bl_transport_resolve(const char *hosts_file, const char *host, char *ip_out, size_t len);

/* Send one probe request to the listener at @address ("HOST:PORT") and read
 * its reply.
 *
 * The name is resolved like a Raft connection's (hosts file named by
 * BALLAST_HOSTS_FILE, then getaddrinfo). @bind_host, if not NULL, "" or an
 * unspecified address, is an IP literal the connection is bound to.
 * @req/@len is copied. The whole exchange is bounded by @timeout_ms (0:
 * BL_TRANSPORT_CONNECT_TIMEOUT_MS); @cb is called exactly once, on @loop,
 * after the probe's handles are closed, so a loop that runs until it has
 * nothing left to do also completes every probe. A probe cannot be canceled.
 *
 * Returns 0 (@cb will be called), or BL_EBADREQ (@address is not HOST:PORT,
 * @bind_host is not an IP literal, @cb is NULL), BL_ETOOLARGE (@len over
 * BL_PROBE_MAX), BL_ENOMEM; @cb is then never called. */
int bl_transport_probe(uv_loop_t *loop, const char *address, const char *bind_host, const void *req,
                       size_t len, unsigned timeout_ms, bl_probe_cb cb, void *arg);

#endif /* BALLAST_TRANSPORT_H */
