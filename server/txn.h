/* Transactions over HTTP: the txn request document -> a bl_txn_req, and a
 * txn's result record -> the reply document.
 *
 * Parsing reads the decoded body (reqdoc.h: JSON and msgpack alike; keys
 * and values are base64 strings there) into one struct bl_txn_parsed that
 * owns everything the request points at: the three op arrays and one byte
 * arena holding every decoded key and value. Free it with
 * bl_txn_parsed_free(). The rules (limits, duplicate keys, what a compare
 * on a missing key means) are in docs/api-notes.md, "Transactions". */
#ifndef BALLAST_TXN_H
#define BALLAST_TXN_H

#include <jansson.h>

#include "apply.h"
#include "command.h"
#include "doc.h"

struct bl_txn_parsed {
    struct bl_txn_req req;
    struct bl_compare compares[BL_TXN_MAX_OPS];
    struct bl_txn_op success[BL_TXN_MAX_OPS];
    struct bl_txn_op failure[BL_TXN_MAX_OPS];
    uint8_t *arena; /* decoded keys and values */
    size_t arena_len, arena_cap;
};

/* Parse @doc (an object) into a new *@out. BL_EBADREQ with @errmsg
 * (BL_ERRMSG_SIZE) for bad input, BL_ETOOLARGE when a value is over
 * @max_value bytes, BL_ENOMEM. */
int bl_txn_parse(json_t *doc, uint64_t max_value, struct bl_txn_parsed **out, char *errmsg);

void bl_txn_parsed_free(struct bl_txn_parsed *t);

/* Render the txn result record @rec into @d (already reset to its format):
 * {"succeeded", "revision", "results": [...]}. BL_EMALFORMED if @rec is not
 * a txn record. */
int bl_txn_render(struct bl_doc *d, const uint8_t *rec, size_t len);

#endif /* BALLAST_TXN_H */
