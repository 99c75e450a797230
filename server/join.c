/* Joining a running cluster over the HTTP API (see join.h).
 *
 * Happy path: POST /v1/members {"name","peer_url","client_url","id"?,
 * "rejoin": true} to the first endpoint; a follower relays it to the
 * leader, which answers 201 with the member (a fresh id when the asked one
 * has run before) or 200 when it was added before (a retry). Failure modes:
 * an endpoint that is down, a cluster without a leader (503), another
 * membership change running (503): wait and try the next endpoint. */
#include "join.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http_client.h"
#include "log.h"

#define JOIN_RETRY_MS     1000
#define JOIN_TIMEOUT_MS   30000
#define JOIN_LOG_EVERY_MS 5000

struct bl_join {
    uv_loop_t *loop;
    struct bl_http_client *client;
    uv_timer_t timer;
    char **endpoints;
    unsigned n_endpoints, next;
    char *body;
    bl_join_cb cb;
    void *arg;
    bool busy, stopped, finished;
    uint64_t attempts, last_log;
    char last_error[256];
};

static void join_free_cb(uv_handle_t *h)
{
    struct bl_join *j = h->data;
    for (unsigned i = 0; i < j->n_endpoints; i++) {
        free(j->endpoints[i]);
    }
    free(j->endpoints);
    free(j->body);
    free(j);
}

static void finish(struct bl_join *j, int status, uint64_t id, const char *msg)
{
    if (j->finished) {
        return;
    }
    j->finished = true;
    j->cb(j->arg, status, id, msg);
    bl_http_client_close(j->client);
    uv_close((uv_handle_t *)&j->timer, join_free_cb);
}

static void attempt(uv_timer_t *t);

/* The "message" of a contract error body, or a summary. */
static void error_message(const struct bl_http_response *resp, char *out, size_t len)
{
    json_t *doc = json_loadb((const char *)resp->body, resp->body_len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    snprintf(out, len, "HTTP %d: %s", resp->status, msg != NULL ? msg : "(no message)");
    json_decref(doc);
}

static void response_cb(void *arg, int status, const struct bl_http_response *resp)
{
    struct bl_join *j = arg;
    const char *ep = j->endpoints[(j->next + j->n_endpoints - 1) % j->n_endpoints];
    uint64_t now = uv_now(j->loop);

    j->busy = false;
    if (j->stopped) {
        finish(j, BL_ESHUTDOWN, 0, "stopped");
        return;
    }
    if (status != 0) {
        snprintf(j->last_error, sizeof j->last_error, "%s: %s", ep, bl_strerror(status));
    } else if (resp->status == 200 || resp->status == 201) {
        json_t *doc = json_loadb((const char *)resp->body, resp->body_len, 0, NULL);
        json_t *id = json_object_get(doc, "id");
        if (json_is_integer(id) && json_integer_value(id) > 0) {
            uint64_t v = (uint64_t)json_integer_value(id);
            json_decref(doc);
            BL_INFO("join: added to the cluster through %s as member %" PRIu64, ep, v);
            finish(j, BL_OK, v, NULL);
            return;
        }
        json_decref(doc);
        snprintf(j->last_error, sizeof j->last_error, "%s: answer without a member id", ep);
    } else if (resp->status == 400) {
        char msg[256];
        error_message(resp, msg, sizeof msg);
        BL_ERROR("join: %s refused to add this member: %s", ep, msg);
        finish(j, BL_EBADREQ, 0, msg);
        return;
    } else {
        char msg[200];
        error_message(resp, msg, sizeof msg);
        snprintf(j->last_error, sizeof j->last_error, "%s: %s", ep, msg);
    }
    if (now - j->last_log >= JOIN_LOG_EVERY_MS) {
        j->last_log = now;
        BL_INFO("join: not added yet after %" PRIu64 " attempts (last: %s); retrying", j->attempts,
                j->last_error);
    }
    uv_timer_start(&j->timer, attempt, j->next % j->n_endpoints == 0 ? JOIN_RETRY_MS : 0, 0);
}

static void attempt(uv_timer_t *t)
{
    struct bl_join *j = t->data;
    static const char target[] = "/v1/members";
    struct bl_http_header h = {"Content-Type", 12, "application/json", 16};
    const char *ep;

    if (j->stopped) {
        finish(j, BL_ESHUTDOWN, 0, "stopped");
        return;
    }
    ep = j->endpoints[j->next];
    j->next = (j->next + 1) % j->n_endpoints;
    j->attempts++;
    if (bl_http_client_request(j->client, ep, "POST", target, sizeof target - 1, &h, 1, j->body,
                               strlen(j->body), JOIN_TIMEOUT_MS, response_cb, j) != 0) {
        snprintf(j->last_error, sizeof j->last_error, "%s: cannot send", ep);
        uv_timer_start(&j->timer, attempt, JOIN_RETRY_MS, 0);
        return;
    }
    j->busy = true;
}

int bl_join_start(uv_loop_t *loop, const struct bl_join_opts *opts, bl_join_cb cb, void *arg,
                  struct bl_join **out)
{
    struct bl_join *j;
    json_t *doc;

    if (opts->n_endpoints == 0) {
        return BL_EBADREQ;
    }
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        return BL_ENOMEM;
    }
    j->loop = loop;
    j->cb = cb;
    j->arg = arg;
    j->endpoints = calloc(opts->n_endpoints, sizeof *j->endpoints);
    doc = json_pack("{s:s, s:s, s:b}", "peer_url", opts->peer_url, "client_url", opts->client_url,
                    "rejoin", 1);
    if (doc != NULL && opts->name != NULL && opts->name[0] != '\0') {
        json_object_set_new(doc, "name", json_string(opts->name));
    }
    if (doc != NULL && opts->id != 0) {
        json_object_set_new(doc, "id", json_integer((json_int_t)opts->id));
    }
    j->body = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (j->endpoints == NULL || j->body == NULL || bl_http_client_init(loop, &j->client) != 0) {
        free(j->endpoints);
        free(j->body);
        free(j);
        return BL_ENOMEM;
    }
    for (unsigned i = 0; i < opts->n_endpoints; i++) {
        j->endpoints[i] = strdup(opts->endpoints[i]);
        j->n_endpoints++;
    }
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    j->last_log = uv_now(loop);
    BL_INFO("join: asking %s (and %u more) to add this member", opts->endpoints[0],
            opts->n_endpoints - 1);
    uv_timer_start(&j->timer, attempt, 0, 0);
    *out = j;
    return 0;
}

void bl_join_stop(struct bl_join *j)
{
    j->stopped = true;
    if (!j->busy) {
        uv_timer_stop(&j->timer);
        finish(j, BL_ESHUTDOWN, 0, "stopped");
    }
}
