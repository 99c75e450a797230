/* The error table: names, messages and HTTP statuses of every bl_code.
 *
 * One static array indexed by -code keeps the three views of a code in one
 * row, so adding a code means adding one line. Unknown codes (a programmer
 * error) read as "internal". */
#include "error.h"

#include <uv.h>

struct bl_code_row {
    const char *name;
    const char *message;
    int status;
};

static const struct bl_code_row ROWS[] = {
    [0] = {"ok", "success", 200},
    [1] = {"bad_request", "bad request", 400},
    [2] = {"not_found", "not found", 404},
    [3] = {"cas_failed", "compare failed", 412},
    [4] = {"too_large", "request too large", 413},
    [5] = {"no_leader", "no leader", 503},
    [6] = {"timeout", "timed out, outcome unknown", 504},
    [7] = {"unauthorized", "unauthorized", 401},
    [8] = {"forbidden", "forbidden", 403},
    [9] = {"no_space", "no space left", 507},
    [10] = {"internal", "internal error", 500},
    [11] = {"internal", "out of memory", 500},
    [12] = {"internal", "I/O error", 500},
    [13] = {"internal", "corrupt data", 500},
    [14] = {"no_leader", "member shutting down", 503},
    [15] = {"internal", "malformed command", 500},
    [16] = {"bad_request", "method not allowed", 405},
    [17] = {"no_leader", "leader unavailable", 503},
    [18] = {"internal", "internal error", 500}, /* retired code: see error.h */
    [19] = {"compacted", "revision compacted", 410},
};

static const struct bl_code_row *row(int code)
{
    if (code > 0 || code < BL_CODE_MIN) {
        return &ROWS[10];
    }
    return &ROWS[-code];
}

const char *bl_strerror(int code)
{
    return row(code)->message;
}

const char *bl_code_name(int code)
{
    return row(code)->name;
}

int bl_code_http_status(int code)
{
    return row(code)->status;
}

int bl_from_uv(int uv_err)
{
    switch (uv_err) {
    case 0:
        return BL_OK;
    case UV_ENOMEM:
        return BL_ENOMEM;
    case UV_ENOSPC:
        return BL_ENOSPACE;
    case UV_ETIMEDOUT:
        return BL_ETIMEOUT;
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_ECANCELED:
    case UV_EOF:
        return BL_EUNAVAILABLE;
    case UV_EIO:
        return BL_EIO;
    default:
        return BL_EINTERNAL;
    }
}
