/* Raft command codec: what one Raft log entry of type RAFT_COMMAND holds.
 *
 * A command is one msgpack array, zero-padded to a multiple of 8 bytes
 * (canonical/raft 0.15 can hand back entries truncated to 8-byte multiples
 * after a restart when they are not). Layout, version 1:
 *
 *   [1, type, request_id(bin), ...type-specific fields]
 *
 *   BL_CMD_PUT:          key(bin), value(bin), cas(int), lease(uint), flags(uint),
 *                        ttl(uint) (absent before 0.3: read as 0)
 *   BL_CMD_DELETE:       key(bin), cas(int), flags(uint)
 *   BL_CMD_DELETE_RANGE: prefix(bin), flags(uint)
 *   BL_CMD_MEMBER_SET:   member_id(uint), name(str), peer_url(str), client_url(str),
 *                        flags(uint) (absent in logs written before 0.2: read as 0)
 *   BL_CMD_TXN:          compares(array), success(array), failure(array), flags(uint)
 *                        compare = [key(bin), target(uint), op(uint), value(bin), number(int)]
 *                        op      = [type(uint), key(bin), value(bin), lease(uint),
 *                                   flags(uint), limit(uint)]
 *   BL_CMD_LEASE_GRANT:  lease(uint), ttl(uint), flags(uint)
 *   BL_CMD_LEASE_REVOKE: lease(uint), flags(uint)
 *
 * A batch entry (group commit: the writes a leader received in one event
 * loop iteration, in one Raft entry) has no request id of its own:
 *
 *   [1, BL_CMD_BATCH, n(uint), command_1(bin), ..., command_n(bin)]
 *
 * where each command is an encoded command as above (with its padding),
 * 1 <= n <= BL_BATCH_MAX. The whole entry is zero-padded to 8 bytes too.
 *
 * Decoding never copies: the slices of a decoded command point into the
 * buffer it was decoded from and stay valid while that buffer does. Every
 * length is checked against the buffer before it is read; anything that is
 * not exactly a command of a known version and type is BL_EMALFORMED. */
#ifndef BALLAST_COMMAND_H
#define BALLAST_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BL_CMD_VERSION        1
#define BL_CMD_REQUEST_ID_MAX 64   /* bytes */
#define BL_KEY_MAX            4096 /* bytes */

/* Sentinel for "no compare": cas = N means mod_revision must be N (0: absent). */
#define BL_CAS_NONE (-1)

/* Flags carried by PUT/DELETE/DELETE_RANGE. */
#define BL_CMD_F_PREV 0x1 /* answer with the previous kv(s) */
/* MEMBER_SET: the member publishes itself, so it has run (and may have
 * voted) under this id; an id added by an operator has not. */
#define BL_CMD_F_SELF 0x2
/* PUT: grant lease @lease with @ttl seconds, owned by this key, and attach
 * it (PUT ?ttl=). */
#define BL_CMD_F_OWN_LEASE 0x4

enum bl_cmd_type {
    BL_CMD_PUT = 1,
    BL_CMD_DELETE = 2,
    BL_CMD_DELETE_RANGE = 3,
    BL_CMD_MEMBER_SET = 4,
    BL_CMD_TXN = 5,
    BL_CMD_LEASE_GRANT = 6,
    BL_CMD_LEASE_REVOKE = 7,
    BL_CMD_BATCH = 8, /* only as a batch entry's type, see above */
};

/* Commands in one batch entry at most. */
#define BL_BATCH_MAX 1024

/* Transactions: at most this many compares, and ops per branch. */
#define BL_TXN_MAX_OPS 128

enum bl_cmp_target {
    BL_CMP_VALUE = 1,
    BL_CMP_VERSION = 2,
    BL_CMP_CREATE = 3,
    BL_CMP_MOD = 4,
    BL_CMP_LEASE = 5,
};

enum bl_cmp_op {
    BL_CMP_EQ = 1,
    BL_CMP_NE = 2,
    BL_CMP_LT = 3,
    BL_CMP_GT = 4,
};

enum bl_op_type {
    BL_OP_PUT = 1,
    BL_OP_DELETE = 2,
    BL_OP_GET = 3,
};

/* Flags of a txn op. */
#define BL_OP_F_PREFIX 0x1 /* delete/get: the key is a prefix */
#define BL_OP_F_KEYS   0x2 /* get: keys only */

/* A borrowed byte range. */
struct bl_slice {
    const uint8_t *p;
    size_t len;
};

struct bl_compare {
    struct bl_slice key;
    int target;            /* enum bl_cmp_target */
    int op;                /* enum bl_cmp_op */
    struct bl_slice value; /* BL_CMP_VALUE */
    int64_t number;        /* the other targets */
};

struct bl_txn_op {
    int type; /* enum bl_op_type */
    struct bl_slice key;
    struct bl_slice value; /* put */
    uint64_t lease;        /* put: 0 for none */
    uint64_t flags;        /* BL_OP_F_* */
    uint64_t limit;        /* get: at most this many kvs (1..10000) */
};

/* A transaction's body. For encoding the caller fills the arrays; decoding
 * (bl_txn_decode) fills caller-provided arrays of BL_TXN_MAX_OPS entries. */
struct bl_txn_req {
    struct bl_compare *compares;
    uint32_t n_compares;
    struct bl_txn_op *success;
    uint32_t n_success;
    struct bl_txn_op *failure;
    uint32_t n_failure;
};

/* A decoded (or to-be-encoded) command. Only the fields of @type are used. */
struct bl_cmd {
    int type;                     /* enum bl_cmd_type */
    struct bl_slice request_id;   /* 1..BL_CMD_REQUEST_ID_MAX bytes */
    struct bl_slice key;          /* PUT, DELETE: the key; DELETE_RANGE: the prefix */
    struct bl_slice value;        /* PUT */
    int64_t cas;                  /* PUT, DELETE: BL_CAS_NONE or a mod_revision */
    uint64_t lease;               /* PUT: lease id, 0 for none */
    uint64_t flags;               /* BL_CMD_F_* (PUT, DELETE*, MEMBER_SET) */
    uint64_t member_id;           /* MEMBER_SET */
    struct bl_slice name;         /* MEMBER_SET */
    struct bl_slice peer_url;     /* MEMBER_SET */
    struct bl_slice client_url;   /* MEMBER_SET */
    uint64_t ttl;                 /* LEASE_GRANT, PUT with BL_CMD_F_OWN_LEASE: seconds */
    const struct bl_txn_req *txn; /* TXN, to encode */
    struct bl_slice txn_body;     /* TXN, decoded: compares..failure, see bl_txn_decode */
};

/* Encode @cmd into a new buffer of *@len bytes (a multiple of 8), stored in
 * *@out. The buffer is allocated with malloc(); the caller owns it and frees
 * it with free() (or hands it to raft_apply(), which frees it with the
 * default raft heap, i.e. free()).
 *
 * Returns BL_OK, BL_EBADREQ if a field is out of range (empty or oversized
 * key or request id, unknown type), or BL_ENOMEM. */
int bl_cmd_encode(const struct bl_cmd *cmd, void **out, size_t *len);

/* Decode the command in @buf[0..@len) into @cmd, whose slices then point
 * into @buf. Returns BL_OK or BL_EMALFORMED; on error @errmsg (if not NULL,
 * BL_ERRMSG_SIZE bytes) says what was wrong. */
int bl_cmd_decode(const void *buf, size_t len, struct bl_cmd *cmd, char *errmsg);

/* Decode the body of a decoded BL_CMD_TXN @cmd into @out, whose three
 * arrays (BL_TXN_MAX_OPS entries each) the caller provides; slices point
 * into the command's buffer. Returns BL_OK or BL_EMALFORMED. */
int bl_txn_decode(const struct bl_cmd *cmd, struct bl_txn_req *out, char *errmsg);

/* Encode the batch entry of the @n (1..BL_BATCH_MAX) encoded commands
 * @cmds into a new malloc'd buffer (*@out, *@len bytes, a multiple of 8),
 * owned by the caller as for bl_cmd_encode(). BL_OK, BL_EBADREQ, BL_ENOMEM. */
int bl_batch_encode(const struct bl_slice *cmds, uint32_t n, void **out, size_t *len);

/* True when @buf holds a batch entry (by its header; decode to check it). */
bool bl_cmd_is_batch(const void *buf, size_t len);

/* Split batch entry @buf into its commands: @cmds (BL_BATCH_MAX slices,
 * caller-provided) point into @buf, *@n is their count. Each is then
 * decoded with bl_cmd_decode(). BL_OK or BL_EMALFORMED (@errmsg). */
int bl_batch_decode(const void *buf, size_t len, struct bl_slice *cmds, uint32_t *n, char *errmsg);

#endif /* BALLAST_COMMAND_H */
