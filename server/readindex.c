/* Follower reads through a read index from the leader (see readindex.h).
 *
 * Reads move forward in batches: queued (arrived, not yet covered by a
 * request), asked (one request in flight per batch; several may be) and
 * waiting (the leader answered index N: until this member applied N).
 * Everything happens in run(), called from a check handle at the end of
 * the loop iteration in which reads were queued (so reads parsed together
 * share one request), from a request's callback and from a timer that
 * sweeps deadlines while anything waits. Callbacks never run from inside
 * bl_readindex_wait(). A batch is one allocation per request, not per
 * read: a waiter lives in the caller's request. */
#include "readindex.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#define SWEEP_MS 50
#define TARGET   "/v1/internal/readindex"

struct list {
    struct bl_readindex_waiter *head, *tail;
};

/* The reads one request covers: asked (no index yet), then waiting until
 * this member applied @index. */
struct batch {
    struct bl_readindex *ri;
    uint64_t index;
    uint64_t deadline; /* uv_now() */
    struct bl_readindex_waiter *waiters;
    struct batch *prev, *next;
};

struct bl_readindex {
    uv_loop_t *loop;
    struct bl_member *member;
    struct bl_http_client *client;
    unsigned timeout_ms;
    struct list queued;
    struct batch *asked;   /* requests in flight */
    struct batch *waiting; /* index known */
    unsigned inflight;
    uv_check_t check;
    uv_timer_t timer;
    bool active; /* check and timer started */
    bool closing;
    int handles_open;
    uint64_t served, given_back, requests;
};

static void list_add(struct list *l, struct bl_readindex_waiter *w)
{
    w->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = w;
    } else {
        l->head = w;
    }
    l->tail = w;
}

static struct bl_readindex_waiter *list_take(struct list *l)
{
    struct bl_readindex_waiter *w = l->head;
    l->head = l->tail = NULL;
    return w;
}

static void batch_link(struct batch **head, struct batch *b)
{
    b->prev = NULL;
    b->next = *head;
    if (*head != NULL) {
        (*head)->prev = b;
    }
    *head = b;
}

static void batch_unlink(struct batch **head, struct batch *b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        *head = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
}

/* Call back every waiter of the detached chain @w with @status. */
static void finish(struct bl_readindex *ri, struct bl_readindex_waiter *w, int status)
{
    while (w != NULL) {
        struct bl_readindex_waiter *next = w->next;
        if (status == 0) {
            ri->served++;
        } else if (status == BL_EUNAVAILABLE) {
            ri->given_back++;
        }
        w->cb(w->arg, status);
        w = next;
    }
}

static void maybe_free(struct bl_readindex *ri)
{
    if (ri->closing && ri->handles_open == 0 && ri->inflight == 0) {
        free(ri);
    }
}

static void run(struct bl_readindex *ri);

static bool parse_index(const struct bl_http_response *resp, uint64_t *index)
{
    char buf[64];
    const char *p;
    char *end;
    size_t n = resp->body_len < sizeof buf - 1 ? resp->body_len : sizeof buf - 1;

    memcpy(buf, resp->body, n);
    buf[n] = '\0';
    p = strstr(buf, "\"index\":");
    if (p == NULL) {
        return false;
    }
    p += strlen("\"index\":");
    *index = strtoull(p, &end, 10);
    return end != p;
}

static void answered(void *arg, int status, const struct bl_http_response *resp)
{
    struct batch *b = arg;
    struct bl_readindex *ri = b->ri;
    uint64_t index = 0, term, applied, revision;

    ri->inflight--;
    batch_unlink(&ri->asked, b);
    if (ri->closing) {
        finish(ri, b->waiters, BL_ESHUTDOWN); /* none: close answered them */
        free(b);
        maybe_free(ri);
        return;
    }
    bl_member_indexes(ri->member, &term, &applied, &revision);
    if (status != 0 || resp->status != 200 || !parse_index(resp, &index) ||
        index > applied + BL_READINDEX_MAX_LAG) {
        finish(ri, b->waiters, BL_EUNAVAILABLE);
        free(b);
    } else {
        b->index = index;
        b->deadline = uv_now(ri->loop) + ri->timeout_ms;
        batch_link(&ri->waiting, b);
    }
    run(ri);
}

/* Ask the leader for a read index covering every queued read: one request
 * per loop iteration that queued reads, several may be in flight. */
static void ask(struct bl_readindex *ri)
{
    char url[256];
    struct batch *b;
    int rv = bl_member_leader_client_url(ri->member, url, sizeof url);

    b = rv == 0 ? calloc(1, sizeof *b) : NULL;
    if (b != NULL) {
        b->ri = ri;
        rv = bl_http_client_request(ri->client, url, "GET", TARGET, strlen(TARGET), NULL, 0, NULL,
                                    0, ri->timeout_ms, answered, b);
    }
    if (b == NULL || rv != 0) {
        free(b);
        finish(ri, list_take(&ri->queued), BL_EUNAVAILABLE);
        return;
    }
    b->waiters = list_take(&ri->queued);
    batch_link(&ri->asked, b);
    ri->requests++;
    ri->inflight++;
}

static void run(struct bl_readindex *ri)
{
    uint64_t term, applied, revision, now = uv_now(ri->loop);
    struct batch *b, *next;

    if (ri->closing) {
        return;
    }
    bl_member_indexes(ri->member, &term, &applied, &revision);
    for (b = ri->waiting; b != NULL; b = next) {
        next = b->next;
        if (b->index <= applied || now >= b->deadline) {
            batch_unlink(&ri->waiting, b);
            finish(ri, b->waiters, b->index <= applied ? 0 : BL_EUNAVAILABLE);
            free(b);
            if (ri->closing) {
                return; /* a callback closed us */
            }
            next = ri->waiting; /* the list may have changed meanwhile */
        }
    }
    if (ri->queued.head != NULL) {
        ask(ri);
    }
    if (ri->queued.head == NULL && ri->inflight == 0 && ri->waiting == NULL && ri->active) {
        uv_check_stop(&ri->check);
        uv_timer_stop(&ri->timer);
        ri->active = false;
    }
}

static void check_cb(uv_check_t *h)
{
    run(h->data);
}

static void timer_cb(uv_timer_t *t)
{
    run(t->data);
}

int bl_readindex_init(uv_loop_t *loop, struct bl_member *member, struct bl_http_client *client,
                      unsigned timeout_ms, struct bl_readindex **out)
{
    struct bl_readindex *ri = calloc(1, sizeof *ri);
    if (ri == NULL) {
        return BL_ENOMEM;
    }
    ri->loop = loop;
    ri->member = member;
    ri->client = client;
    ri->timeout_ms = timeout_ms;
    uv_check_init(loop, &ri->check);
    uv_timer_init(loop, &ri->timer);
    ri->check.data = ri;
    ri->timer.data = ri;
    ri->handles_open = 2;
    *out = ri;
    return BL_OK;
}

void bl_readindex_wait(struct bl_readindex *ri, struct bl_readindex_waiter *w, bl_readindex_cb cb,
                       void *arg)
{
    w->cb = cb;
    w->arg = arg;
    list_add(&ri->queued, w);
    if (!ri->active) {
        ri->active = true;
        uv_check_start(&ri->check, check_cb);
        uv_timer_start(&ri->timer, timer_cb, SWEEP_MS, SWEEP_MS);
    }
}

void bl_readindex_counts(const struct bl_readindex *ri, uint64_t *served, uint64_t *given_back,
                         uint64_t *requests)
{
    *served = ri->served;
    *given_back = ri->given_back;
    *requests = ri->requests;
}

static void handle_closed(uv_handle_t *h)
{
    struct bl_readindex *ri = h->data;
    ri->handles_open--;
    maybe_free(ri);
}

void bl_readindex_close(struct bl_readindex *ri)
{
    if (ri == NULL || ri->closing) {
        return;
    }
    ri->closing = true;
    finish(ri, list_take(&ri->queued), BL_ESHUTDOWN);
    while (ri->waiting != NULL) {
        struct batch *b = ri->waiting;
        batch_unlink(&ri->waiting, b);
        finish(ri, b->waiters, BL_ESHUTDOWN);
        free(b);
    }
    /* Requests in flight still call answered() (the HTTP client fails
     * them when it closes), which frees them; their reads end now. */
    for (struct batch *b = ri->asked; b != NULL; b = b->next) {
        struct bl_readindex_waiter *w = b->waiters;
        b->waiters = NULL;
        finish(ri, w, BL_ESHUTDOWN);
    }
    uv_close((uv_handle_t *)&ri->check, handle_closed);
    uv_close((uv_handle_t *)&ri->timer, handle_closed);
}
