/* Raft command codec: what one Raft log entry of type RAFT_COMMAND holds.
 *
 * A command is one msgpack array, zero-padded to a multiple of 8 bytes
 * (canonical/raft 0.15 can hand back entries truncated to 8-byte multiples
 * after a restart when they are not). Layout, version 1:
 *
 *   [1, type, request_id(bin), ...type-specific fields]
 *
 *   BL_CMD_PUT:          key(bin), value(bin), cas(int), lease(uint), flags(uint)
 *   BL_CMD_DELETE:       key(bin), cas(int), flags(uint)
 *   BL_CMD_DELETE_RANGE: prefix(bin), flags(uint)
 *   BL_CMD_MEMBER_SET:   member_id(uint), name(str), peer_url(str), client_url(str),
 *                        flags(uint) (absent in logs written before 0.2: read as 0)
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

enum bl_cmd_type {
    BL_CMD_PUT = 1,
    BL_CMD_DELETE = 2,
    BL_CMD_DELETE_RANGE = 3,
    BL_CMD_MEMBER_SET = 4,
};

/* A borrowed byte range. */
struct bl_slice {
    const uint8_t *p;
    size_t len;
};

/* A decoded (or to-be-encoded) command. Only the fields of @type are used. */
struct bl_cmd {
    int type;                   /* enum bl_cmd_type */
    struct bl_slice request_id; /* 1..BL_CMD_REQUEST_ID_MAX bytes */
    struct bl_slice key;        /* PUT, DELETE: the key; DELETE_RANGE: the prefix */
    struct bl_slice value;      /* PUT */
    int64_t cas;                /* PUT, DELETE: BL_CAS_NONE or a mod_revision */
    uint64_t lease;             /* PUT: lease id, 0 for none */
    uint64_t flags;             /* BL_CMD_F_* (PUT, DELETE*, MEMBER_SET) */
    uint64_t member_id;         /* MEMBER_SET */
    struct bl_slice name;       /* MEMBER_SET */
    struct bl_slice peer_url;   /* MEMBER_SET */
    struct bl_slice client_url; /* MEMBER_SET */
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

#endif /* BALLAST_COMMAND_H */
