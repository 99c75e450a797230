/* libballast leases: grant, keepalive, get, revoke, list.
 *
 * The happy path of each call: a small msgpack body where there is one
 * ({"ttl": N, "id"?: M} for a grant), the client's call loop with its
 * failover and retries, and a decode of the answer map into the caller's
 * struct. The keys of a lease come back as one allocation: the array of
 * struct ballast_key followed by the key bytes, each NUL-terminated.
 *
 * Retries differ by call, because a repeat does different harm:
 *   - grant and revoke are Raft writes: they carry a request id (drawn once
 *     per call), so a retry after a lost answer is answered as the first
 *     attempt was. A revoke retried after an attempt that may have been
 *     executed and answered 404 has done its work (ballast_member_remove()'s
 *     rule), which also covers a server that does not record revokes;
 *   - keepalive is not a Raft entry, only moves the leader's deadline, and
 *     answers the full TTL every time: it carries no request id and is
 *     resent freely (like a cas write), even with no_retry_unsent_writes;
 *   - get and list are reads. */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_TARGET_MAX 64

static int check_id(struct ballast_client *c, int64_t id)
{
    if (id <= 0) {
        return blc_set_err(c, BALLAST_EBADARG, "lease id %lld (want 1..2^63-1)", (long long)id);
    }
    return 0;
}

int ballast_lease_grant(struct ballast_client *c, int64_t ttl, int64_t id,
                        struct ballast_lease *out)
{
    if (out) {
        memset(out, 0, sizeof *out);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (ttl <= 0 || id < 0) {
        return blc_set_err(c, BALLAST_EBADARG, "lease grant: ttl %lld, id %lld", (long long)ttl,
                           (long long)id);
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int r = msgpack_pack_map(&pk, id > 0 ? 2 : 1);
    r |= blc_pack_str(&pk, "ttl") | msgpack_pack_int64(&pk, ttl);
    if (id > 0) {
        r |= blc_pack_str(&pk, "id") | msgpack_pack_int64(&pk, id);
    }
    if (r != 0) {
        msgpack_sbuffer_destroy(&sb);
        return blc_set_err(c, BALLAST_ENOMEM, "out of memory building a request");
    }
    struct req rq;
    blc_req_init(c, &rq, "POST", "/v1/lease");
    rq.body = sb.data;
    rq.body_len = sb.size;
    rq.has_body = 1;
    rq.content_type = CT_MSGPACK;
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_lease l = {0};
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_i64(&m.u.data, "id", &l.id) != 0 ||
            blc_mp_i64(&m.u.data, "ttl", &l.ttl) != 0 || l.id <= 0) {
            rv = blc_bad_reply(c, BALLAST_EPROTO, &rq);
        } else if (out) {
            l.granted_ttl = l.ttl;
            *out = l;
        }
    }
    blc_mp_reply_free(&m);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

int ballast_lease_keepalive(struct ballast_client *c, int64_t id, int64_t *ttl)
{
    if (ttl) {
        *ttl = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    int rv = check_id(c, id);
    if (rv != 0) {
        return rv;
    }
    char target[LEASE_TARGET_MAX];
    snprintf(target, sizeof target, "/v1/lease/%lld/keepalive", (long long)id);
    struct req rq;
    blc_req_init(c, &rq, "POST", target);
    rq.body = "";
    rq.has_body = 1;
    rq.id[0] = '\0'; /* not a Raft write: nothing to deduplicate */
    rq.cas = 1;      /* a repeat is harmless: always resent */
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        int64_t t = 0;
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_i64(&m.u.data, "ttl", &t) != 0) {
            rv = blc_bad_reply(c, BALLAST_EPROTO, &rq);
        } else if (ttl) {
            *ttl = t;
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

void ballast_lease_info_free(struct ballast_lease_info *r)
{
    if (r) {
        free(r->keys);
        memset(r, 0, sizeof *r);
    }
}

/* Decode the array of keys @a (bin or str items) into one allocation. */
static int keys_decode(const msgpack_object *a, struct ballast_key **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!a) {
        return 0;
    }
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        return BALLAST_EPROTO;
    }
    size_t cnt = a->via.array.size, total = cnt * sizeof(struct ballast_key);
    if (cnt == 0) {
        return 0;
    }
    for (size_t i = 0; i < cnt; i++) {
        const msgpack_object *k = &a->via.array.ptr[i];
        if (k->type != MSGPACK_OBJECT_BIN && k->type != MSGPACK_OBJECT_STR) {
            return BALLAST_EPROTO;
        }
        total += (k->type == MSGPACK_OBJECT_BIN ? k->via.bin.size : k->via.str.size) + 1;
    }
    struct ballast_key *keys = malloc(total);
    if (!keys) {
        return BALLAST_ENOMEM;
    }
    char *data = (char *)(keys + cnt);
    for (size_t i = 0; i < cnt; i++) {
        const msgpack_object *k = &a->via.array.ptr[i];
        const char *p = k->type == MSGPACK_OBJECT_BIN ? k->via.bin.ptr : k->via.str.ptr;
        size_t kl = k->type == MSGPACK_OBJECT_BIN ? k->via.bin.size : k->via.str.size;
        if (kl > 0) {
            memcpy(data, p, kl);
        }
        data[kl] = '\0';
        keys[i].key = data;
        keys[i].key_len = kl;
        data += kl + 1;
    }
    *out = keys;
    *n = cnt;
    return 0;
}

int ballast_lease_get(struct ballast_client *c, int64_t id, struct ballast_lease_info *r)
{
    if (r) {
        memset(r, 0, sizeof *r);
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!r) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL result");
    }
    int rv = check_id(c, id);
    if (rv != 0) {
        return rv;
    }
    char target[LEASE_TARGET_MAX];
    snprintf(target, sizeof target, "/v1/lease/%lld", (long long)id);
    struct req rq;
    blc_req_init(c, &rq, "GET", target);
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        struct ballast_lease_info tmp = {0};
        tmp.id = id;
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_i64(&m.u.data, "id", &tmp.id) != 0 ||
            blc_mp_i64(&m.u.data, "ttl", &tmp.ttl) != 0 ||
            blc_mp_i64(&m.u.data, "granted_ttl", &tmp.granted_ttl) != 0 ||
            blc_mp_bool(&m.u.data, "more", &tmp.more) != 0) {
            rv = BALLAST_EPROTO;
        } else {
            rv = keys_decode(blc_mp_get(&m.u.data, "keys"), &tmp.keys, &tmp.n_keys);
        }
        if (rv != 0) {
            rv = blc_bad_reply(c, rv, &rq);
        } else {
            *r = tmp;
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

int ballast_lease_revoke(struct ballast_client *c, int64_t id, int64_t *revision, int64_t *deleted)
{
    if (revision) {
        *revision = 0;
    }
    if (deleted) {
        *deleted = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    int rv = check_id(c, id);
    if (rv != 0) {
        return rv;
    }
    char target[LEASE_TARGET_MAX];
    snprintf(target, sizeof target, "/v1/lease/%lld", (long long)id);
    struct req rq;
    blc_req_init(c, &rq, "DELETE", target);
    struct mp_reply m;
    rv = blc_mp_call(c, &rq, &m);
    if (rv == BALLAST_ENOTFOUND && m.rs.status == 404 && m.rs.after_maybe) {
        rv = 0; /* an earlier attempt that may have been executed revoked it */
    } else if (rv == 0) {
        int64_t rev = 0, del = 0;
        if (m.u.data.type != MSGPACK_OBJECT_MAP || blc_mp_i64(&m.u.data, "revision", &rev) != 0 ||
            blc_mp_i64(&m.u.data, "deleted", &del) != 0) {
            rv = blc_bad_reply(c, BALLAST_EPROTO, &rq);
        } else {
            if (revision) {
                *revision = rev;
            }
            if (deleted) {
                *deleted = del;
            }
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}

int ballast_lease_list(struct ballast_client *c, struct ballast_lease **out, size_t *n)
{
    if (out) {
        *out = NULL;
    }
    if (n) {
        *n = 0;
    }
    if (!c) {
        return BALLAST_EBADARG;
    }
    if (!out || !n) {
        return blc_set_err(c, BALLAST_EBADARG, "NULL out");
    }
    struct req rq;
    blc_req_init(c, &rq, "GET", "/v1/leases");
    struct mp_reply m;
    int rv = blc_mp_call(c, &rq, &m);
    if (rv == 0) {
        const msgpack_object *a = blc_mp_get(&m.u.data, "leases");
        struct ballast_lease *ls = NULL;
        size_t cnt = 0;
        if (m.u.data.type != MSGPACK_OBJECT_MAP || (a && a->type != MSGPACK_OBJECT_ARRAY)) {
            rv = BALLAST_EPROTO;
        } else if (a && a->via.array.size > 0) {
            cnt = a->via.array.size;
            ls = calloc(cnt, sizeof *ls);
            rv = ls ? 0 : BALLAST_ENOMEM;
            for (size_t i = 0; rv == 0 && i < cnt; i++) {
                const msgpack_object *o = &a->via.array.ptr[i];
                if (o->type != MSGPACK_OBJECT_MAP || blc_mp_i64(o, "id", &ls[i].id) != 0 ||
                    blc_mp_i64(o, "granted_ttl", &ls[i].granted_ttl) != 0 ||
                    blc_mp_i64(o, "ttl", &ls[i].ttl) != 0) {
                    rv = BALLAST_EPROTO;
                }
            }
        }
        if (rv != 0) {
            free(ls);
            rv = blc_bad_reply(c, rv, &rq);
        } else {
            *out = ls;
            *n = cnt;
        }
    }
    blc_mp_reply_free(&m);
    return rv;
}
