/* Ballast error codes: the one table every module returns from.
 *
 * Functions return 0 (BL_OK) or one of the negative codes below. Each code
 * maps to exactly one API error code string (bl_code_name) and one HTTP
 * status (bl_code_http_status), so a handler never has to invent either.
 * Codes coming from libuv, LMDB and raft are translated into this table in
 * one place each (uv: bl_from_uv here; LMDB: store.c; raft: member.c). */
#ifndef BALLAST_ERROR_H
#define BALLAST_ERROR_H

/* Size of the error message buffers that long-lived objects keep. */
#define BL_ERRMSG_SIZE 256

enum bl_code {
    BL_OK = 0,
    BL_EBADREQ = -1,       /* bad_request, 400: the request is malformed */
    BL_ENOTFOUND = -2,     /* not_found, 404 */
    BL_ECASFAILED = -3,    /* cas_failed, 412: a compare did not hold */
    BL_ETOOLARGE = -4,     /* too_large, 413 */
    BL_ENOLEADER = -5,     /* no_leader, 503: no leader known right now */
    BL_ETIMEOUT = -6,      /* timeout, 504: the outcome is unknown */
    BL_EUNAUTHORIZED = -7, /* unauthorized, 401 */
    BL_EFORBIDDEN = -8,    /* forbidden, 403 */
    BL_ENOSPACE = -9,      /* no_space, 507: store or disk full */
    BL_EINTERNAL = -10,    /* internal, 500 */
    BL_ENOMEM = -11,       /* internal, 500: out of memory */
    BL_EIO = -12,          /* internal, 500: file system or storage error */
    BL_ECORRUPT = -13,     /* internal, 500: on-disk data failed a check */
    BL_ESHUTDOWN = -14,    /* no_leader, 503: this member is shutting down */
    BL_EMALFORMED = -15,   /* internal, 500: an encoded command did not decode */
    BL_EMETHOD = -16,      /* bad_request, 405: method not allowed on path */
    BL_EUNAVAILABLE = -17, /* no_leader, 503: leader unreachable */
    /* -18 is retired (it was "not implemented", 501, for /metrics and /v1/watch, both
     * served now); the numbers are kept so that no code changes meaning. */
    BL_ECOMPACTED = -19, /* compacted, 410: revision older than the kept history */
};
#define BL_CODE_MIN (-19)

/* Human-readable description of @code ("compare failed"). Never NULL. */
const char *bl_strerror(int code);

/* The API's error code string for @code ("cas_failed"). Never NULL. */
const char *bl_code_name(int code);

/* The HTTP status an API reply carries for @code (BL_OK gives 200). */
int bl_code_http_status(int code);

/* Translate a negative libuv error (UV_E*) into the table. */
int bl_from_uv(int uv_err);

#endif /* BALLAST_ERROR_H */
