/* Response documents: one writer that emits either JSON or msgpack.
 *
 * Handlers describe a reply once (maps, arrays, numbers, strings, byte
 * strings) and the writer renders it in the format the client asked for:
 * msgpack with byte strings as `bin`, or JSON with byte strings as standard
 * padded base64, as the contract says. Maps and arrays declare their element
 * count up front (msgpack needs it); the JSON side tracks nesting to place
 * commas and checks the counts in debug builds.
 *
 * Memory: the writer owns one growable buffer, reused across documents with
 * bl_doc_reset(); bl_doc_data() points into it until the next write, reset or
 * bl_doc_free(). Write errors (out of memory) are sticky: check bl_doc_error()
 * once at the end. */
#ifndef BALLAST_DOC_H
#define BALLAST_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BL_DOC_MAX_DEPTH 32

enum bl_doc_format { BL_DOC_JSON = 0, BL_DOC_MSGPACK = 1 };

struct bl_doc {
    int format;
    char *buf;
    size_t len, cap;
    int error;
    unsigned depth;
    /* per level: remaining elements and whether it is a map expecting a key */
    struct {
        uint32_t remaining;
        bool is_map;
        bool want_key;
        bool first;
    } stack[BL_DOC_MAX_DEPTH];
};

void bl_doc_init(struct bl_doc *d, int format);
void bl_doc_reset(struct bl_doc *d, int format);
void bl_doc_free(struct bl_doc *d);
int bl_doc_error(const struct bl_doc *d);
const char *bl_doc_data(const struct bl_doc *d, size_t *len);
/* The Content-Type of the format ("application/json", "application/msgpack"). */
const char *bl_doc_content_type(int format);

void bl_doc_map(struct bl_doc *d, uint32_t n_pairs);
void bl_doc_array(struct bl_doc *d, uint32_t n);
void bl_doc_key(struct bl_doc *d, const char *name); /* a map key: always a string */
void bl_doc_uint(struct bl_doc *d, uint64_t v);
void bl_doc_int(struct bl_doc *d, int64_t v);
void bl_doc_bool(struct bl_doc *d, bool v);
void bl_doc_null(struct bl_doc *d);
void bl_doc_str(struct bl_doc *d, const char *s, size_t len); /* UTF-8 text, JSON-escaped */
void bl_doc_cstr(struct bl_doc *d, const char *s);
void bl_doc_bin(struct bl_doc *d, const void *p, size_t len); /* base64 in JSON, bin in msgpack */

/* A kv object, as the contract shapes it: {"key", "value" (unless
 * !@with_value), "create_revision", "mod_revision", "version", "lease"}. */
struct bl_kv;
void bl_doc_kv(struct bl_doc *d, const struct bl_kv *kv, bool with_value);

/* Standard padded base64. encode writes 4*ceil(len/3) bytes to @out.
 * decode returns BL_EBADREQ on bad input; @out needs 3*(len/4) bytes. */
size_t bl_base64_encode(const void *in, size_t len, char *out);
int bl_base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len);

#endif /* BALLAST_DOC_H */
