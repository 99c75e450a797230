/* Request documents: a request body (JSON or msgpack) decoded into one
 * jansson value, so a handler reads its fields one way in both formats.
 *
 * The format comes from the request's Content-Type: application/msgpack
 * (also application/x-msgpack; parameters after ';' and case are ignored)
 * is msgpack; anything else, or no Content-Type, is JSON. An empty body is
 * an empty object in both formats.
 *
 * msgpack maps to JSON as follows: map (string keys only) -> object, array
 * -> array, positive and negative int -> integer (-2^63 .. 2^63-1; larger
 * ones are refused), bool, nil -> null, str (UTF-8) -> string, float 32/64
 * -> real (finite only), and bin -> a string holding the bytes' standard
 * padded base64. The last rule makes a byte field read the same in both
 * formats: a JSON client sends base64 text (as the contract asks), a msgpack
 * client sends bin, and the handler decodes the string with
 * bl_base64_decode() either way. ext types are refused.
 *
 * Limits, checked before anything is allocated: nesting deeper than
 * BL_REQDOC_MAX_DEPTH containers, a msgpack container that claims more
 * elements than bytes remain, bytes after the document (both formats),
 * duplicate keys in an object or map, and strings that are not UTF-8 or hold
 * a NUL byte are all BL_EBADREQ.
 *
 * Errors: every function returns 0 or a bl_code (BL_EBADREQ for bad input,
 * BL_ENOMEM) and fills @errmsg (BL_ERRMSG_SIZE bytes) with what was wrong,
 * phrased for the client ("msgpack body is truncated"). */
#ifndef BALLAST_REQDOC_H
#define BALLAST_REQDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Most containers a document may nest (the top level counts as one). */
#define BL_REQDOC_MAX_DEPTH 32

enum bl_reqdoc_format { BL_REQDOC_JSON = 0, BL_REQDOC_MSGPACK = 1 };

/* The format of a body with Content-Type @content_type (@len bytes, not
 * NUL-terminated; NULL when the header is absent). */
int bl_reqdoc_format(const char *content_type, size_t len);

/* Decode @len bytes at @body in @format (enum bl_reqdoc_format). With
 * @want_object, a top level other than an object (map) is BL_EBADREQ.
 * On success *@out is a new reference the caller releases with
 * json_decref(); it does not point into @body. On error *@out is NULL.
 * Errors: BL_EBADREQ (malformed, truncated, trailing bytes, too deep, a
 * non-string map key, an unsupported type, not an object), BL_ENOMEM. */
int bl_reqdoc_decode(int format, const void *body, size_t len, bool want_object, json_t **out,
                     char *errmsg);

/* Read field @field of object @obj as an unsigned integer into *@out. An
 * absent field, or one that is null, is BL_EBADREQ when @required and
 * otherwise leaves *@out alone and returns 0. A field that is not an integer
 * >= 0 (a real, a string, a negative number) is BL_EBADREQ. @obj must be an
 * object (as bl_reqdoc_decode() gives with @want_object). */
int bl_reqdoc_u64(json_t *obj, const char *field, bool required, uint64_t *out, char *errmsg);

#endif /* BALLAST_REQDOC_H */
