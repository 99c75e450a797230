/* Transactions over HTTP (see txn.h). */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define GET_DEFAULT 1000
#define GET_MAX     10000

/* Offsets into the arena are turned into pointers only once it stops
 * growing; until then slices hold the offset in .p (as an integer). */
static int arena_add(struct bl_txn_parsed *t, const char *b64, size_t len, size_t *off,
                     size_t *out_len)
{
    size_t need = (len / 4) * 3 + 3;
    if (t->arena_len + need > t->arena_cap) {
        size_t cap = t->arena_cap == 0 ? 4096 : t->arena_cap;
        while (cap < t->arena_len + need) {
            cap *= 2;
        }
        uint8_t *a = realloc(t->arena, cap);
        if (a == NULL) {
            return BL_ENOMEM;
        }
        t->arena = a;
        t->arena_cap = cap;
    }
    if (bl_base64_decode(b64, len, t->arena + t->arena_len, out_len) != 0) {
        return BL_EBADREQ;
    }
    *off = t->arena_len;
    t->arena_len += *out_len;
    return BL_OK;
}

static int bad(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, BL_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    return BL_EBADREQ;
}

/* Read byte field @name of @obj (base64 string) into the arena. */
static int bytes_field(struct bl_txn_parsed *t, json_t *obj, const char *where, const char *name,
                       bool required, size_t min, size_t max, struct bl_slice *out, char *errmsg)
{
    json_t *v = json_object_get(obj, name);
    size_t off, len;
    int rv;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            return bad(errmsg, "%s: \"%s\" is required", where, name);
        }
        out->p = NULL;
        out->len = 0;
        return BL_OK;
    }
    if (!json_is_string(v)) {
        return bad(errmsg, "%s: \"%s\" must be base64 (JSON) or bin (msgpack)", where, name);
    }
    rv = arena_add(t, json_string_value(v), json_string_length(v), &off, &len);
    if (rv == BL_EBADREQ) {
        return bad(errmsg, "%s: \"%s\" is not valid base64", where, name);
    }
    if (rv != 0) {
        return rv;
    }
    if (len < min || len > max) {
        if (len > max && max > BL_KEY_MAX) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "%s: \"%s\" of %zu bytes is over the limit of %zu",
                     where, name, len, max);
            return BL_ETOOLARGE;
        }
        return bad(errmsg, "%s: \"%s\" must be %zu..%zu bytes", where, name, min, max);
    }
    out->p = (const uint8_t *)(uintptr_t)(off + 1); /* fixed up later; +1 keeps it non-NULL */
    out->len = len;
    return BL_OK;
}

/* Check that @obj has only the fields in @known. */
static int only_fields(json_t *obj, const char *where, const char *const *known, char *errmsg)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool ok = false;
        for (const char *const *p = known; *p != NULL && !ok; p++) {
            ok = strcmp(k, *p) == 0;
        }
        if (!ok) {
            return bad(errmsg, "%s: unknown field \"%s\"", where, k);
        }
    }
    return BL_OK;
}

static bool get_bool(json_t *obj, const char *name, bool *out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v)) {
        *out = false;
        return true;
    }
    if (!json_is_boolean(v)) {
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static int parse_compare(struct bl_txn_parsed *t, json_t *c, unsigned i, struct bl_compare *out,
                         char *errmsg)
{
    static const char *const known[] = {"key", "target", "op", "value", "number", NULL};
    static const char *const targets[] = {"value", "version", "create", "mod", "lease"};
    static const char *const ops[] = {"==", "!=", "<", ">"};
    char where[32];
    json_t *v;
    int rv;

    snprintf(where, sizeof where, "compare[%u]", i);
    if (!json_is_object(c)) {
        return bad(errmsg, "%s must be an object", where);
    }
    rv = only_fields(c, where, known, errmsg);
    if (rv == 0) {
        rv = bytes_field(t, c, where, "key", true, 1, BL_KEY_MAX, &out->key, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    v = json_object_get(c, "target");
    out->target = 0;
    for (int k = 0; v != NULL && json_is_string(v) && k < 5; k++) {
        if (strcmp(json_string_value(v), targets[k]) == 0) {
            out->target = BL_CMP_VALUE + k;
        }
    }
    if (out->target == 0) {
        return bad(errmsg, "%s: \"target\" must be value, version, create, mod or lease", where);
    }
    v = json_object_get(c, "op");
    out->op = 0;
    for (int k = 0; v != NULL && json_is_string(v) && k < 4; k++) {
        if (strcmp(json_string_value(v), ops[k]) == 0) {
            out->op = BL_CMP_EQ + k;
        }
    }
    if (out->op == 0) {
        return bad(errmsg, "%s: \"op\" must be ==, !=, < or >", where);
    }
    if (out->target == BL_CMP_VALUE) {
        if (json_object_get(c, "number") != NULL) {
            return bad(errmsg, "%s: a value compare takes \"value\", not \"number\"", where);
        }
        return bytes_field(t, c, where, "value", true, 0, UINT32_MAX, &out->value, errmsg);
    }
    if (json_object_get(c, "value") != NULL) {
        return bad(errmsg, "%s: a %s compare takes \"number\", not \"value\"", where,
                   targets[out->target - 1]);
    }
    v = json_object_get(c, "number");
    if (v == NULL || !json_is_integer(v)) {
        return bad(errmsg, "%s: \"number\" (an integer) is required", where);
    }
    out->number = (int64_t)json_integer_value(v);
    return BL_OK;
}

static int parse_op(struct bl_txn_parsed *t, json_t *o, const char *list, unsigned i,
                    uint64_t max_value, struct bl_txn_op *out, char *errmsg)
{
    static const char *const put_known[] = {"key", "value", "lease", NULL};
    static const char *const del_known[] = {"key", "prefix", NULL};
    static const char *const get_known[] = {"key", "prefix", "limit", "keys", NULL};
    char where[48];
    const char *name;
    json_t *body, *v;
    bool flag;
    int rv;

    snprintf(where, sizeof where, "%s[%u]", list, i);
    if (!json_is_object(o) || json_object_size(o) != 1) {
        return bad(errmsg, "%s must be an object with one of put, delete or get", where);
    }
    name = json_object_iter_key(json_object_iter(o));
    body = json_object_iter_value(json_object_iter(o));
    snprintf(where, sizeof where, "%s[%u].%s", list, i, name);
    if (!json_is_object(body)) {
        return bad(errmsg, "%s must be an object", where);
    }
    memset(out, 0, sizeof *out);
    if (strcmp(name, "put") == 0) {
        out->type = BL_OP_PUT;
        rv = only_fields(body, where, put_known, errmsg);
        if (rv == 0) {
            rv = bytes_field(t, body, where, "key", true, 1, BL_KEY_MAX, &out->key, errmsg);
        }
        if (rv == 0) {
            rv = bytes_field(t, body, where, "value", true, 0, max_value, &out->value, errmsg);
        }
        v = json_object_get(body, "lease");
        if (rv == 0 && v != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                return bad(errmsg, "%s: \"lease\" must be a lease id", where);
            }
            out->lease = (uint64_t)json_integer_value(v);
        }
        return rv;
    }
    if (strcmp(name, "delete") == 0 || strcmp(name, "get") == 0) {
        bool get = name[0] == 'g';
        out->type = get ? BL_OP_GET : BL_OP_DELETE;
        rv = only_fields(body, where, get ? get_known : del_known, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (!get_bool(body, "prefix", &flag)) {
            return bad(errmsg, "%s: \"prefix\" must be a boolean", where);
        }
        out->flags |= flag ? BL_OP_F_PREFIX : 0;
        rv = bytes_field(t, body, where, "key", !flag, flag ? 0 : 1, BL_KEY_MAX, &out->key, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (!get) {
            return BL_OK;
        }
        if (!get_bool(body, "keys", &flag)) {
            return bad(errmsg, "%s: \"keys\" must be a boolean", where);
        }
        out->flags |= flag ? BL_OP_F_KEYS : 0;
        out->limit = GET_DEFAULT;
        v = json_object_get(body, "limit");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > GET_MAX) {
                return bad(errmsg, "%s: \"limit\" must be 1..%d", where, GET_MAX);
            }
            out->limit = (uint64_t)json_integer_value(v);
        }
        return BL_OK;
    }
    return bad(errmsg, "%s[%u]: unknown op \"%s\" (put, delete or get)", list, i, name);
}

static void fix_slice(struct bl_txn_parsed *t, struct bl_slice *s)
{
    if (s->p != NULL) {
        s->p = t->arena + ((uintptr_t)s->p - 1);
    } else {
        s->p = t->arena; /* empty slices still point somewhere */
    }
}

static bool covers(const struct bl_txn_op *range, const struct bl_txn_op *o)
{
    return o->key.len >= range->key.len && memcmp(o->key.p, range->key.p, range->key.len) == 0;
}

/* Two writes of one key in a branch are refused, as etcd does. */
static int check_dups(const struct bl_txn_op *ops, uint32_t n, const char *list, char *errmsg)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].type == BL_OP_GET) {
            continue;
        }
        for (uint32_t j = i + 1; j < n; j++) {
            const struct bl_txn_op *a = &ops[i], *b = &ops[j];
            bool clash;
            if (b->type == BL_OP_GET) {
                continue;
            }
            if (a->flags & BL_OP_F_PREFIX) {
                clash = b->type == BL_OP_PUT && covers(a, b);
            } else if (b->flags & BL_OP_F_PREFIX) {
                clash = a->type == BL_OP_PUT && covers(b, a);
            } else {
                clash = a->key.len == b->key.len && memcmp(a->key.p, b->key.p, a->key.len) == 0;
            }
            if (clash) {
                return bad(errmsg, "%s[%u] and %s[%u] write the same key (duplicate key in txn)",
                           list, i, list, j);
            }
        }
    }
    return BL_OK;
}

static int parse_list(struct bl_txn_parsed *t, json_t *doc, const char *list, uint64_t max_value,
                      struct bl_txn_op *ops, uint32_t *n, char *errmsg)
{
    json_t *arr = json_object_get(doc, list), *o;
    size_t i;
    int rv;
    *n = 0;
    if (arr == NULL || json_is_null(arr)) {
        return BL_OK;
    }
    if (!json_is_array(arr)) {
        return bad(errmsg, "\"%s\" must be an array", list);
    }
    if (json_array_size(arr) > BL_TXN_MAX_OPS) {
        return bad(errmsg, "\"%s\" has %zu ops, at most %d", list, json_array_size(arr),
                   BL_TXN_MAX_OPS);
    }
    json_array_foreach(arr, i, o)
    {
        rv = parse_op(t, o, list, (unsigned)i, max_value, &ops[i], errmsg);
        if (rv != 0) {
            return rv;
        }
        (*n)++;
    }
    return BL_OK;
}

int bl_txn_parse(json_t *doc, uint64_t max_value, struct bl_txn_parsed **out, char *errmsg)
{
    static const char *const known[] = {"compare", "success", "failure", NULL};
    struct bl_txn_parsed *t;
    json_t *arr, *c;
    size_t i;
    int rv;

    *out = NULL;
    if (!json_is_object(doc)) {
        return bad(errmsg, "a txn must be an object");
    }
    rv = only_fields(doc, "txn", known, errmsg);
    if (rv != 0) {
        return rv;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return BL_ENOMEM;
    }
    arr = json_object_get(doc, "compare");
    if (arr != NULL && !json_is_null(arr)) {
        if (!json_is_array(arr)) {
            rv = bad(errmsg, "\"compare\" must be an array");
            goto err;
        }
        if (json_array_size(arr) > BL_TXN_MAX_OPS) {
            rv = bad(errmsg, "\"compare\" has %zu entries, at most %d", json_array_size(arr),
                     BL_TXN_MAX_OPS);
            goto err;
        }
        json_array_foreach(arr, i, c)
        {
            rv = parse_compare(t, c, (unsigned)i, &t->compares[i], errmsg);
            if (rv != 0) {
                goto err;
            }
            t->req.n_compares++;
        }
    }
    rv = parse_list(t, doc, "success", max_value, t->success, &t->req.n_success, errmsg);
    if (rv == 0) {
        rv = parse_list(t, doc, "failure", max_value, t->failure, &t->req.n_failure, errmsg);
    }
    if (rv != 0) {
        goto err;
    }
    for (uint32_t k = 0; k < t->req.n_compares; k++) {
        fix_slice(t, &t->compares[k].key);
        fix_slice(t, &t->compares[k].value);
    }
    for (uint32_t k = 0; k < t->req.n_success; k++) {
        fix_slice(t, &t->success[k].key);
        fix_slice(t, &t->success[k].value);
    }
    for (uint32_t k = 0; k < t->req.n_failure; k++) {
        fix_slice(t, &t->failure[k].key);
        fix_slice(t, &t->failure[k].value);
    }
    rv = check_dups(t->success, t->req.n_success, "success", errmsg);
    if (rv == 0) {
        rv = check_dups(t->failure, t->req.n_failure, "failure", errmsg);
    }
    if (rv != 0) {
        goto err;
    }
    t->req.compares = t->compares;
    t->req.success = t->success;
    t->req.failure = t->failure;
    *out = t;
    return BL_OK;
err:
    bl_txn_parsed_free(t);
    return rv;
}

void bl_txn_parsed_free(struct bl_txn_parsed *t)
{
    if (t != NULL) {
        free(t->arena);
        free(t);
    }
}

int bl_txn_render(struct bl_doc *d, const uint8_t *rec, size_t len)
{
    struct bl_result_view v;
    struct bl_op_result o;
    struct bl_kv kv;
    int rv;

    if (bl_result_decode(rec, len, &v) != 0 || bl_result_txn(&v) != 0) {
        return BL_EMALFORMED;
    }
    bl_doc_map(d, 3);
    bl_doc_key(d, "succeeded");
    bl_doc_bool(d, v.succeeded);
    bl_doc_key(d, "revision");
    bl_doc_uint(d, v.revision);
    bl_doc_key(d, "results");
    bl_doc_array(d, v.n_results);
    while ((rv = bl_result_next_op(&v, &o)) == 1) {
        bl_doc_map(d, 1);
        switch (o.type) {
        case BL_OP_PUT:
            bl_doc_key(d, "put");
            bl_doc_map(d, 0);
            break;
        case BL_OP_DELETE:
            bl_doc_key(d, "delete");
            bl_doc_map(d, 1);
            bl_doc_key(d, "deleted");
            bl_doc_uint(d, o.deleted);
            break;
        default:
            bl_doc_key(d, "get");
            bl_doc_map(d, 3);
            bl_doc_key(d, "kvs");
            bl_doc_array(d, o.n_kvs);
            /* keys-only gets stored no value: an empty value marks them */
            while (bl_op_result_next_kv(&o, &kv) == 1) {
                bl_doc_kv(d, &kv, true);
            }
            bl_doc_key(d, "count");
            bl_doc_uint(d, o.count);
            bl_doc_key(d, "more");
            bl_doc_bool(d, o.more);
            break;
        }
    }
    return rv == 0 ? BL_OK : BL_EMALFORMED;
}
