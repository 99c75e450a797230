/* The member: canonical/raft 0.15 with its libuv backend, glued to the FSM
 * and the store, on the caller's loop (see member.h).
 *
 * Start: check the open log segments (segcheck.c: libraft 0.15 silently
 * truncates an open segment at a corrupt entry), open the store, init the
 * uv transport and I/O (auto-recovery off: a corrupt segment must stop the
 * member, not be renamed away so that it comes back with a shorter log and
 * votes), raft_init, pre-vote on, then
 * bootstrap when the Raft directory is empty and this member is a founder,
 * and raft_start.
 *
 * Writes: bl_member_propose encodes the command (padded to 8 bytes) and
 * calls raft_apply; raft calls back after the FSM applied the entry, with
 * the FSM's result. A callback with RAFT_LEADERSHIPLOST or RAFT_SHUTDOWN
 * means the entry may still commit: reported as BL_ETIMEOUT (unknown), never
 * as "did not happen". A watch timer also answers proposals still pending
 * after propose_timeout_ms with BL_ETIMEOUT (raft keeps the request until it
 * calls back; the late callback is then dropped).
 *
 * Reads: canonical/raft 0.15's new leader appends no no-op entry, so its
 * commit index may lag; and a deposed leader may not know it yet. A Raft
 * barrier proposed after a read arrived and then applied settles both. Reads
 * arriving while a barrier is in flight wait for the next one, which starts
 * as soon as the current one completes: one log entry per batch of reads.
 *
 * Close: a leader first hands leadership to the most caught-up voter
 * (raft_transfer, bounded by the election timeout), then raft_close; its
 * callback releases the uv I/O and transport, the store, and the member. */
#include "member.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "confguard.h"
#include "crashpoint.h"
#include "error.h"
#include "fsm.h"
#include "lessor.h"
#include "discover.h"
#include "diskcheck.h"
#include "log.h"
#include "segcheck.h"
#include "transport.h"

#define WATCH_INTERVAL_MS 50
/* canonical/raft keeps every log entry since the last snapshot (and the
 * trailing ones) in memory, and a threshold counts entries, not bytes: with
 * group commit an entry holds many writes, so the threshold is lowered to
 * keep about LOG_MEMORY_BUDGET bytes of log (adapt_snapshot_threshold()). */
#define LOG_MEMORY_BUDGET          (64U << 20)
#define MIN_SNAPSHOT_THRESH        256
#define DEFAULT_SNAPSHOT_THRESHOLD 65536
#define DEFAULT_SNAPSHOT_TRAILING  8192
#define DEFAULT_PROPOSE_TIMEOUT_MS 10000
/* canonical/raft 0.15 drops an InstallSnapshot that arrives while the
 * follower takes its own snapshot, without answering; the leader resends it
 * only after this timeout (raft's default is 30 s). It must still cover
 * sending the largest snapshot. */
#define DEFAULT_INSTALL_SNAPSHOT_TIMEOUT_MS 10000
#define DEFAULT_QUOTA_BYTES                 (2ULL << 30)
/* The LMDB map is larger than the quota: writes are admitted against the
 * quota on the leader, and the rest absorbs what admission cannot see
 * (other members' page layout, deletes, the request-id table). A committed
 * entry that does not fit would stop the member (canonical/raft 0.15 turns
 * it unavailable), so this margin is what keeps a full store serving. */
#define MAP_HEADROOM_MIN (64ULL << 20)
#define PAGE_OVERHEAD    8192 /* B-tree pages a put may add besides its data */
/* A learner within this many entries of the leader's log is promoted;
 * raft then catches it up the rest of the way before the voter role commits. */
#define PROMOTE_LAG 256

/* Group commit: the writes proposed during one event loop iteration wait
 * in m->queue and go to raft in the loop's check phase (after the poll
 * phase's reads parsed them) as one entry: alone as a plain command, two or
 * more as a batch entry (command.h) of at most GROUP_MAX commands and about
 * GROUP_BYTES bytes. canonical/raft sends AppendEntries and appends to its
 * log per raft_apply() call; a batch pays that once. (raft_apply() of n
 * entries would not do: raft 0.15 reports the first entry's result only.) */
#define GROUP_MAX   BL_BATCH_MAX
#define GROUP_BYTES (1U << 20)

struct group;

struct proposal {
    struct raft_apply req; /* submitted alone */
    struct bl_member *m;
    bl_propose_cb cb;
    void *arg;
    uint64_t deadline;
    uint64_t bytes; /* admitted against the quota until applied */
    bool answered;
    struct raft_buffer buf; /* the encoded command while queued */
    struct proposal *prev, *next;
};

/* A batch entry in flight: its proposals in entry order. Owns itself and
 * its proposals until group_apply_cb. */
struct group {
    struct raft_apply req;
    struct bl_member *m;
    uint32_t n;
    struct proposal *items[];
};

struct read_wait {
    bl_read_cb cb;
    void *arg;
    struct read_wait *next;
};

struct read_list {
    struct read_wait *head, *tail;
};

struct bl_member {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    /* The uv backend's append, which wrapped_append() calls. */
    int (*uv_append)(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
    struct raft_uv_transport transport;
    struct bl_fsm fsm;
    struct bl_store *store;
    struct bl_diskcheck disk; /* free-space admission of writes */
    struct bl_lessor lessor;  /* leases: TTLs everywhere, deadlines on the leader */
    uint64_t lease_term;      /* term the lessor's deadlines were set in (0: not leading) */
    unsigned revokes_inflight;
    uint64_t revoke_seq;
    void (*revision_cb)(void *arg, uint64_t revision);
    void *revision_arg;
    bool disk_full; /* the last BL_ENOSPACE came from the disk, not the quota */
    void (*stop_cb)(void *arg);
    void *stop_arg;
    void (*fatal_cb)(void *arg, const char *why);
    void *fatal_arg;
    bool fatal_reported;
    int append_failed; /* the first failed log append's raft code, or 0 */
    /* The uv backend's start, and raft's receive callback, which
     * wrapped_recv() calls after the configuration guard. */
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv;
    struct bl_confguard confguard;
    bool guard_fatal; /* the guard met a rollback it cannot do */
    /* The FSM's apply, which timed_apply() calls. */
    int (*fsm_apply)(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result);
    void (*timing_cb)(void *arg, int what, uint64_t ns);
    void *timing_arg;
    unsigned n_proposals; /* in m->proposals */
    uv_timer_t watch;
    uv_check_t flush; /* submits m->queue once per loop iteration */
    struct proposal *queue[GROUP_MAX];
    unsigned n_queued;
    size_t queued_bytes;

    uint64_t id;
    char *name, *peer_url, *client_url, *data_dir;
    unsigned propose_timeout_ms;
    uint64_t quota_bytes;
    uint64_t inflight_bytes; /* admitted PUT bytes not yet applied */

    /* Observed state, for logging transitions. */
    int last_state;
    uint64_t last_leader;
    uint64_t last_term;
    bool publishing;
    uint64_t publish_seq;
    char publish_id[48];

    struct proposal *proposals; /* pending, doubly linked */
    struct read_list reads_next;
    struct read_list reads_inflight;
    struct raft_barrier barrier;
    bool barrier_busy;

    /* One membership change at a time (raft allows one uncommitted
     * configuration): m->change is in use while change_busy. */
    struct raft_change change;
    bool change_busy;
    int change_step; /* enum change_step */
    bool change_voter;
    uint64_t change_id, change_replace;
    char *change_peer_url;
    bl_change_cb change_cb;
    void *change_arg;
    bool promoting; /* the pending change is an automatic promotion */
    bool auto_promote;
    bool restored; /* DIR/restored: snapshot at once (see bl_member_start) */
    unsigned snapshot_threshold, snapshot_trailing; /* configured */
    unsigned eff_threshold, eff_trailing;           /* in use (adapt_snapshot_threshold) */
    uint64_t appended_bytes, appended_entries;      /* since the last adaptation */
    uint64_t adapted_at;                            /* uv_now() of the last one */
    char change_name[256];

    struct raft_transfer transfer;
    bool transferring; /* m->transfer is in use */
    uint64_t transfer_to;
    bl_transfer_cb transfer_user_cb;
    void *transfer_arg;
    unsigned async_pending; /* snapshot copies running on the thread pool */
    bool close_requested;   /* do_close waits for async_pending to drain */
    bool closing;
    unsigned handles_open;
    void (*close_cb)(void *arg);
    void *close_arg;
    char errmsg[BL_ERRMSG_SIZE];
};

const char *bl_role_name(int role)
{
    static const char *const names[] = {"unavailable", "follower", "candidate", "leader",
                                        "learner"};
    return role >= 0 && role <= BL_ROLE_LEARNER ? names[role] : "unknown";
}

/* The one place raft codes become Ballast codes. */
static int from_raft(int rv)
{
    switch (rv) {
    case 0:
        return BL_OK;
    case RAFT_NOMEM:
        return BL_ENOMEM;
    case RAFT_NOTLEADER:
        return BL_ENOLEADER;
    case RAFT_LEADERSHIPLOST:
    case RAFT_SHUTDOWN:
        return BL_ETIMEOUT;
    case RAFT_CORRUPT:
    case RAFT_MALFORMED:
        return BL_ECORRUPT;
    case RAFT_NOSPACE:
        return BL_ENOSPACE;
    case RAFT_BADID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
    case RAFT_INVALID:
    case RAFT_NAMETOOLONG:
    case RAFT_CANTBOOTSTRAP:
        return BL_EBADREQ;
    case RAFT_TOOBIG:
        return BL_ETOOLARGE;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY:
        return BL_EUNAVAILABLE;
    case RAFT_IOERR:
        return BL_EIO;
    default:
        return BL_EINTERNAL;
    }
}

static int state_role(struct bl_member *m)
{
    switch (raft_state(&m->raft)) {
    case RAFT_LEADER:
        return BL_ROLE_LEADER;
    case RAFT_CANDIDATE:
        return BL_ROLE_CANDIDATE;
    case RAFT_FOLLOWER:
        for (unsigned i = 0; i < m->raft.configuration.n; i++) {
            const struct raft_server *s = &m->raft.configuration.servers[i];
            if (s->id == m->id) {
                return s->role == RAFT_VOTER ? BL_ROLE_FOLLOWER : BL_ROLE_LEARNER;
            }
        }
        return BL_ROLE_LEARNER;
    default:
        return BL_ROLE_UNAVAILABLE;
    }
}

/* ---- initial cluster ------------------------------------------------------ */

int bl_parse_initial_cluster(const char *s, int (*cb)(void *arg, uint64_t id, const char *address),
                             void *arg, char *errmsg)
{
    char *copy, *save = NULL, *item;
    uint64_t ids[64];
    unsigned n = 0;
    int rv = 0;

    copy = strdup(s);
    if (copy == NULL) {
        return BL_ENOMEM;
    }
    for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        unsigned long long id;
        if (eq == NULL || eq == item || eq[1] == '\0') {
            snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: '%.100s' is not ID=HOST:PORT", item);
            rv = BL_EBADREQ;
            break;
        }
        *eq = '\0';
        errno = 0;
        id = strtoull(item, &end, 10);
        if (errno != 0 || *end != '\0' || id == 0 || id > INT64_MAX) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: bad member id '%.60s'", item);
            rv = BL_EBADREQ;
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            if (ids[i] == id) {
                snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: id %llu appears twice", id);
                rv = BL_EBADREQ;
                break;
            }
        }
        if (rv != 0) {
            break;
        }
        if (n == sizeof ids / sizeof ids[0]) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: more than 64 members");
            rv = BL_EBADREQ;
            break;
        }
        ids[n++] = id;
        if (strchr(eq + 1, ':') == NULL) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: '%.100s' has no port", eq + 1);
            rv = BL_EBADREQ;
            break;
        }
        rv = cb(arg, id, eq + 1);
        if (rv != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: member %llu at %.100s: %s", id,
                     eq + 1, bl_strerror(rv));
            break;
        }
    }
    if (rv == 0 && n == 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "initial cluster: empty");
        rv = BL_EBADREQ;
    }
    free(copy);
    return rv;
}

struct founders {
    struct raft_configuration conf;
    uint64_t self;
    const char *self_address;
    bool self_found;
    bool self_address_matches;
};

static int add_founder(void *arg, uint64_t id, const char *address)
{
    struct founders *f = arg;
    int rv = raft_configuration_add(&f->conf, id, address, RAFT_VOTER);
    if (id == f->self) {
        f->self_found = true;
        f->self_address_matches = strcmp(address, f->self_address) == 0;
    }
    return from_raft(rv);
}

/* True if the Raft directory holds no Raft state yet. */
static bool raft_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool empty = true;
    if (d == NULL) {
        return true;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    return empty;
}

static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t total = 0;
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return total;
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

/* ---- proposals ------------------------------------------------------------- */

static void proposal_unlink(struct bl_member *m, struct proposal *p)
{
    m->n_proposals--;
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        m->proposals = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    }
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    struct bl_member *m = p->m;

    proposal_unlink(m, p);
    m->inflight_bytes -= p->bytes;
    if (!p->answered) {
        /* Once raft_apply() took the entry, a failure here (leadership
         * lost, shutdown, the leader's own append failing with a full disk
         * or an I/O error) does not say the entry is gone: it may have
         * reached followers and commit under the next leader. So every
         * failure is "outcome unknown" (BL_ETIMEOUT: 504), never a definite
         * refusal such as 507, which clients may take as "not applied". */
        int rv = status == 0 ? BL_OK : BL_ETIMEOUT;
        p->cb(p->arg, rv, rv == 0 ? result : NULL);
    }
    free(p);
}

/* Bytes the puts of txn @t may add to the store (both branches: which one
 * runs is not known yet). */
static uint64_t txn_put_bytes(const struct bl_txn_req *t)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < t->n_success; i++) {
        if (t->success[i].type == BL_OP_PUT) {
            n += t->success[i].key.len + t->success[i].value.len + PAGE_OVERHEAD;
        }
    }
    for (uint32_t i = 0; i < t->n_failure; i++) {
        if (t->failure[i].type == BL_OP_PUT) {
            n += t->failure[i].key.len + t->failure[i].value.len + PAGE_OVERHEAD;
        }
    }
    return n;
}

static void group_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct group *g = req->data;
    struct bl_member *m = g->m;
    const struct bl_fsm_batch *b = result;

    for (uint32_t k = 0; k < g->n; k++) {
        struct proposal *p = g->items[k];
        proposal_unlink(m, p);
        m->inflight_bytes -= p->bytes;
        if (!p->answered) {
            /* As in apply_cb: a failure after raft took it is unknown. */
            bool ok = status == 0 && b != NULL && k < b->n;
            p->cb(p->arg, ok ? BL_OK : BL_ETIMEOUT, ok ? &b->res[k] : NULL);
        }
        free(p);
    }
    free(g);
}

/* Drop the queued proposals @ps[0..@n) that raft did not take: @rv (a
 * definite refusal: nothing was submitted) to each. */
static void refuse_queued(struct bl_member *m, struct proposal **ps, unsigned n, int rv)
{
    for (unsigned k = 0; k < n; k++) {
        struct proposal *p = ps[k];
        proposal_unlink(m, p);
        m->inflight_bytes -= p->bytes;
        free(p->buf.base);
        if (!p->answered) {
            p->cb(p->arg, rv, NULL);
        }
        free(p);
    }
}

/* Hand the queued proposals to raft: one alone, more as one batch entry. */
static void flush_queue(struct bl_member *m)
{
    unsigned n = m->n_queued;
    struct proposal *ps[GROUP_MAX];
    int rv;

    if (n == 0) {
        return;
    }
    memcpy(ps, m->queue, n * sizeof ps[0]);
    m->n_queued = 0;
    m->queued_bytes = 0;
    if (m->closing || raft_state(&m->raft) != RAFT_LEADER) {
        refuse_queued(m, ps, n, m->closing ? BL_ESHUTDOWN : BL_ENOLEADER);
        return;
    }
    if (n == 1) {
        struct proposal *p = ps[0];
        p->req.data = p;
        rv = raft_apply(&m->raft, &p->req, &p->buf, 1, apply_cb);
        if (rv == 0) {
            p->buf.base = NULL; /* raft owns it now */
            return;
        }
        rv = from_raft(rv);
    } else {
        struct bl_slice cmds[GROUP_MAX];
        struct raft_buffer buf;
        struct group *g = malloc(sizeof *g + n * sizeof g->items[0]);

        for (unsigned k = 0; k < n; k++) {
            cmds[k].p = ps[k]->buf.base;
            cmds[k].len = ps[k]->buf.len;
        }
        rv = g == NULL ? BL_ENOMEM : bl_batch_encode(cmds, n, &buf.base, &buf.len);
        if (rv == 0) {
            g->m = m;
            g->n = n;
            g->req.data = g;
            memcpy(g->items, ps, n * sizeof ps[0]);
            rv = raft_apply(&m->raft, &g->req, &buf, 1, group_apply_cb);
            if (rv == 0) {
                for (unsigned k = 0; k < n; k++) {
                    free(ps[k]->buf.base);
                    ps[k]->buf.base = NULL;
                }
                return;
            }
            free(buf.base);
            rv = from_raft(rv);
        }
        free(g);
    }
    refuse_queued(m, ps, n, rv);
}

static void flush_cb(uv_check_t *h)
{
    struct bl_member *m = h->data;
    uv_check_stop(h);
    flush_queue(m);
}

int bl_member_propose(struct bl_member *m, const struct bl_cmd *cmd, bl_propose_cb cb, void *arg)
{
    struct raft_buffer buf;
    struct proposal *p;
    int rv;

    if (m->closing) {
        /* Handing over before closing: the caller forwards to the next leader. */
        return m->store != NULL ? BL_ENOLEADER : BL_ESHUTDOWN;
    }
    if (raft_state(&m->raft) != RAFT_LEADER) {
        return BL_ENOLEADER;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        return BL_ENOMEM;
    }
    if (cmd->type == BL_CMD_PUT) {
        p->bytes = cmd->key.len + cmd->value.len + PAGE_OVERHEAD;
    } else if (cmd->type == BL_CMD_TXN && cmd->txn != NULL) {
        p->bytes = txn_put_bytes(cmd->txn); /* 0 for a txn that only reads or deletes */
    }
    if (p->bytes > 0) {
        uint64_t used, map;
        rv = bl_store_size(m->store, &used, &map);
        if (rv != 0) {
            free(p);
            return rv;
        }
        /* canonical/raft 0.15 notices a full disk only when it preallocates
         * a segment; check the file system's free space first. */
        m->disk_full = bl_diskcheck_admit(&m->disk, uv_now(m->loop), p->bytes) != 0;
        if (m->disk_full) {
            free(p);
            return BL_ENOSPACE;
        }
        if (used + m->inflight_bytes + p->bytes > m->quota_bytes) {
            free(p);
            return BL_ENOSPACE;
        }
    }
    rv = bl_cmd_encode(cmd, &buf.base, &buf.len);
    if (rv != 0) {
        free(p);
        return rv;
    }
    p->m = m;
    p->cb = cb;
    p->arg = arg;
    p->deadline = uv_now(m->loop) + m->propose_timeout_ms;
    p->buf = buf;
    m->inflight_bytes += p->bytes;
    p->next = m->proposals;
    if (m->proposals != NULL) {
        m->proposals->prev = p;
    }
    m->proposals = p;
    m->n_proposals++;
    /* Queued until this loop iteration's check phase (see GROUP_MAX). */
    if (m->n_queued == GROUP_MAX || m->queued_bytes + buf.len > GROUP_BYTES) {
        flush_queue(m);
    }
    m->queue[m->n_queued++] = p;
    m->queued_bytes += buf.len;
    if (m->n_queued == 1) {
        uv_check_start(&m->flush, flush_cb);
    }
    return 0;
}

unsigned bl_member_proposals_inflight(struct bl_member *m)
{
    return m->n_proposals;
}

/* Answer proposals that overran their deadline (raft keeps them). */
static void expire_proposals(struct bl_member *m, bool all)
{
    uint64_t now = uv_now(m->loop);
    for (struct proposal *p = m->proposals; p != NULL; p = p->next) {
        if (!p->answered && (all || now >= p->deadline)) {
            p->answered = true;
            p->cb(p->arg, BL_ETIMEOUT, NULL);
        }
    }
}

/* ---- linearizable reads ------------------------------------------------------ */

static void reads_complete(struct read_list *l, int status)
{
    struct read_wait *w = l->head;
    l->head = l->tail = NULL;
    while (w != NULL) {
        struct read_wait *next = w->next;
        w->cb(w->arg, status);
        free(w);
        w = next;
    }
}

static int start_barrier(struct bl_member *m);

/* A failed barrier means leadership was lost, and canonical/raft 0.15 fails
 * it while it is still converting to follower (raft_state() still says
 * leader, the progress array is already gone): a barrier started from here
 * then crashes it. So the reads queued meanwhile fail with the ones in
 * flight (clients retry through the new leader); only a barrier that
 * succeeded starts the next one. */
static void barrier_cb(struct raft_barrier *req, int status)
{
    struct bl_member *m = req->data;

    m->barrier_busy = false;
    if (status != 0) {
        reads_complete(&m->reads_inflight, BL_ENOLEADER);
        reads_complete(&m->reads_next, BL_ENOLEADER);
        return;
    }
    reads_complete(&m->reads_inflight, BL_OK);
    if (m->reads_next.head != NULL) {
        int rv = start_barrier(m);
        if (rv != 0) {
            reads_complete(&m->reads_inflight, rv);
        }
    }
}

/* Move the queued reads in flight and start a barrier for them. On an
 * error they are still in reads_inflight and nobody was called back: the
 * caller answers them (or, for a single new read, hands the error back). */
static int start_barrier(struct bl_member *m)
{
    int rv;

    m->reads_inflight = m->reads_next;
    m->reads_next.head = m->reads_next.tail = NULL;
    m->barrier.data = m;
    rv = raft_barrier(&m->raft, &m->barrier, barrier_cb);
    if (rv != 0) {
        /* e.g. RAFT_NOTLEADER while a leadership transfer runs */
        return rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST ? BL_ENOLEADER : from_raft(rv);
    }
    m->barrier_busy = true;
    return 0;
}

int bl_member_read_barrier(struct bl_member *m, bl_read_cb cb, void *arg)
{
    struct read_wait *w;
    int rv;

    if (m->closing) {
        return m->store != NULL ? BL_ENOLEADER : BL_ESHUTDOWN;
    }
    if (raft_state(&m->raft) != RAFT_LEADER) {
        return BL_ENOLEADER;
    }
    w = malloc(sizeof *w);
    if (w == NULL) {
        return BL_ENOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = NULL;
    if (m->reads_next.tail != NULL) {
        m->reads_next.tail->next = w;
    } else {
        m->reads_next.head = w;
    }
    m->reads_next.tail = w;
    if (!m->barrier_busy) {
        /* No barrier runs, so reads_next held nothing before @w (the
         * callback of one that ended starts the next at once). A barrier
         * that cannot start is this call's error, never a callback from
         * inside it: the caller has not finished setting up for one
         * (api.c counts the read as pending after 0, and a callback run
         * from in here freed the request first). */
        rv = start_barrier(m);
        if (rv != 0) {
            assert(m->reads_inflight.head == w && w->next == NULL);
            m->reads_inflight.head = m->reads_inflight.tail = NULL;
            free(w);
            return rv;
        }
    }
    return 0;
}

uint64_t bl_member_barrier_index(struct bl_member *m)
{
    return m->barrier.index; /* reads_complete() runs before the next barrier starts */
}

int bl_member_read_begin(struct bl_member *m, struct bl_txn **txn)
{
    return bl_store_begin(m->store, false, txn);
}

/* ---- member table -------------------------------------------------------------- */

static bool slice_eq(struct bl_slice s, const char *str)
{
    return s.len == strlen(str) && memcmp(s.p, str, s.len) == 0;
}

bool bl_member_needs_publish(struct bl_member *m)
{
    struct bl_member_attrs a;
    struct bl_txn *txn;
    const void *rec;
    size_t len;
    bool needs = true;

    if (bl_store_begin(m->store, false, &txn) != 0) {
        return false;
    }
    if (bl_store_member_get(txn, m->id, &rec, &len) == 0 &&
        bl_member_attrs_decode(rec, len, &a) == 0) {
        needs = !(slice_eq(a.name, m->name) && slice_eq(a.peer_url, m->peer_url) &&
                  slice_eq(a.client_url, m->client_url) && a.seen);
    }
    bl_store_abort(txn);
    return needs;
}

void bl_member_attrs_cmd(struct bl_member *m, struct bl_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    snprintf(m->publish_id, sizeof m->publish_id, "publish-%" PRIu64 "-%" PRIu64, m->id,
             ++m->publish_seq);
    cmd->type = BL_CMD_MEMBER_SET;
    cmd->request_id.p = (const uint8_t *)m->publish_id;
    cmd->request_id.len = strlen(m->publish_id);
    cmd->cas = BL_CAS_NONE;
    cmd->member_id = m->id;
    cmd->name.p = (const uint8_t *)m->name;
    cmd->name.len = strlen(m->name);
    cmd->peer_url.p = (const uint8_t *)m->peer_url;
    cmd->peer_url.len = strlen(m->peer_url);
    cmd->client_url.p = (const uint8_t *)m->client_url;
    cmd->client_url.len = strlen(m->client_url);
    cmd->flags = BL_CMD_F_SELF;
}

static void publish_cb(void *arg, int status, const struct bl_apply_result *res)
{
    struct bl_member *m = arg;
    (void)res;
    m->publishing = false;
    if (status == 0) {
        BL_INFO("member %" PRIu64 ": published name=%s client=%s", m->id, m->name, m->client_url);
    } else {
        BL_WARN("member %" PRIu64 ": publishing attributes failed: %s", m->id, bl_strerror(status));
    }
}

/* The leader publishes its own attributes; followers do it through the
 * leader's client API (the server's job, see bl_member_needs_publish). */
static void maybe_publish_self(struct bl_member *m)
{
    struct bl_cmd cmd;
    if (m->publishing || raft_state(&m->raft) != RAFT_LEADER || !bl_member_needs_publish(m)) {
        return;
    }
    bl_member_attrs_cmd(m, &cmd);
    if (bl_member_propose(m, &cmd, publish_cb, m) == 0) {
        m->publishing = true;
    }
}

int bl_member_list(struct bl_member *m, struct bl_member_info **out, unsigned *n)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    struct bl_member_info *list;
    struct bl_txn *txn;
    raft_id leader_id;
    const char *leader_addr;
    bool leading = raft_state(&m->raft) == RAFT_LEADER;
    int rv;

    list = calloc(conf->n ? conf->n : 1, sizeof *list);
    if (list == NULL) {
        return BL_ENOMEM;
    }
    rv = bl_store_begin(m->store, false, &txn);
    if (rv != 0) {
        free(list);
        return rv;
    }
    raft_leader(&m->raft, &leader_id, &leader_addr);
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        struct bl_member_info *info = &list[i];
        struct bl_member_attrs a;
        const void *rec;
        size_t len;

        info->id = s->id;
        info->voter = s->role == RAFT_VOTER;
        snprintf(info->peer_url, sizeof info->peer_url, "%s", s->address);
        snprintf(info->name, sizeof info->name, "member-%llu", s->id);
        if (bl_store_member_get(txn, s->id, &rec, &len) == 0 &&
            bl_member_attrs_decode(rec, len, &a) == 0) {
            snprintf(info->name, sizeof info->name, "%.*s", (int)a.name.len, a.name.p);
            snprintf(info->client_url, sizeof info->client_url, "%.*s", (int)a.client_url.len,
                     a.client_url.p);
        }
        if (leading && m->raft.leader_state.progress != NULL) {
            const struct raft_progress *pr = &m->raft.leader_state.progress[i];
            info->match_index = s->id == m->id ? raft_last_index(&m->raft) : pr->match_index;
            info->reachable = s->id == m->id || pr->recent_recv;
        } else {
            info->reachable = s->id == m->id || s->id == leader_id;
            info->match_index = s->id == m->id ? raft_last_index(&m->raft) : 0;
        }
    }
    bl_store_abort(txn);
    *out = list;
    *n = conf->n;
    return 0;
}

int bl_member_leader_client_url(struct bl_member *m, char *buf, size_t len)
{
    struct bl_member_attrs a;
    struct bl_txn *txn;
    raft_id id;
    const char *addr;
    const void *rec;
    size_t rec_len;
    int rv;

    raft_leader(&m->raft, &id, &addr);
    if (id == 0) {
        return BL_ENOLEADER;
    }
    if (id == m->id) {
        /* This member leads but refused the request: a leadership transfer
         * is running (on request or before closing). Its target is the next
         * leader; relaying there now (it answers 503 until it has won, and
         * the caller retries) beats waiting to hear from it. */
        if (m->transfer_to == 0 || (!m->transferring && !m->closing)) {
            return BL_ENOLEADER;
        }
        id = m->transfer_to;
    }
    if (m->store == NULL) {
        return BL_ESHUTDOWN;
    }
    rv = bl_store_begin(m->store, false, &txn);
    if (rv != 0) {
        return rv;
    }
    rv = bl_store_member_get(txn, id, &rec, &rec_len);
    if (rv == 0) {
        rv = bl_member_attrs_decode(rec, rec_len, &a);
    }
    if (rv == 0 && a.client_url.len > 0 && a.client_url.len < len) {
        memcpy(buf, a.client_url.p, a.client_url.len);
        buf[a.client_url.len] = '\0';
    } else {
        rv = BL_ENOLEADER;
    }
    bl_store_abort(txn);
    return rv;
}

bool bl_member_is_leader(struct bl_member *m)
{
    return !m->closing && raft_state(&m->raft) == RAFT_LEADER;
}

void bl_member_indexes(struct bl_member *m, uint64_t *term, uint64_t *applied, uint64_t *revision)
{
    uint64_t raft_applied = raft_last_applied(&m->raft);
    *term = m->raft.current_term;
    /* Inside an apply callback raft has not counted the entry yet. */
    *applied = m->fsm.applied_index > raft_applied ? m->fsm.applied_index : raft_applied;
    *revision = m->fsm.revision;
}

void bl_member_status(struct bl_member *m, struct bl_member_status *st)
{
    raft_id leader_id;
    const char *leader_addr;
    uint64_t map_bytes;
    char dir[4200];

    memset(st, 0, sizeof *st);
    raft_leader(&m->raft, &leader_id, &leader_addr);
    st->id = m->id;
    st->name = m->name;
    st->role = state_role(m);
    st->leader_id = leader_id;
    st->term = m->raft.current_term;
    st->commit_index = m->raft.commit_index;
    bl_member_indexes(m, &st->term, &st->applied_index, &st->revision);
    st->last_index = raft_last_index(&m->raft);
    bl_store_size(m->store, &st->db_bytes, &map_bytes);
    snprintf(dir, sizeof dir, "%s/raft", m->data_dir);
    st->raft_log_bytes = dir_bytes(dir);
}

static void maybe_promote(struct bl_member *m);

/* ---- leases and revision subscribers --------------------------------------------------- */

#define REVOKES_MAX 16 /* expiry revokes in flight at once */

static int lessor_load_cb(void *arg, uint64_t id, const struct bl_lease *l)
{
    struct bl_member *m = arg;
    return bl_lessor_set(&m->lessor, id, l->ttl, 0);
}

/* Fill the lessor from the store (start, snapshot installed). */
static int lessor_load(struct bl_member *m)
{
    struct bl_txn *txn;
    int rv = bl_store_begin(m->store, false, &txn);
    if (rv != 0) {
        return rv;
    }
    bl_lessor_clear(&m->lessor);
    rv = bl_store_lease_scan(txn, lessor_load_cb, m);
    bl_store_abort(txn);
    m->lease_term = 0; /* a leader gives every lease a fresh TTL again */
    return rv;
}

static void fsm_applied(void *arg, const struct bl_apply_result *res)
{
    struct bl_member *m = arg;
    if (res->lease_granted != 0) {
        uint64_t deadline =
            m->lease_term != 0 ? bl_lessor_deadline(uv_now(m->loop), res->lease_ttl) : 0;
        if (bl_lessor_set(&m->lessor, res->lease_granted, res->lease_ttl, deadline) != 0) {
            BL_ERROR("member %" PRIu64 ": out of memory for lease %" PRIu64
                     ": it will not expire before the next leader change",
                     m->id, res->lease_granted);
        }
    }
    if (res->changed && !res->replayed && m->revision_cb != NULL) {
        m->revision_cb(m->revision_arg, res->revision);
    }
}

static void fsm_restored(void *arg)
{
    struct bl_member *m = arg;
    if (lessor_load(m) != 0) {
        BL_ERROR("member %" PRIu64 ": reloading leases after a snapshot: %s", m->id,
                 bl_store_errmsg(m->store));
    }
    if (m->revision_cb != NULL) {
        m->revision_cb(m->revision_arg, m->fsm.revision);
    }
}

void bl_member_on_revision(struct bl_member *m, void (*cb)(void *arg, uint64_t revision), void *arg)
{
    m->revision_cb = cb;
    m->revision_arg = arg;
}

/* True when lease @id is in the applied store. */
static bool lease_stored(struct bl_member *m, uint64_t id)
{
    struct bl_txn *txn;
    struct bl_lease l;
    bool found = true; /* on a read error, keep the lease */
    if (bl_store_begin(m->store, false, &txn) == 0) {
        found = bl_store_lease_get(txn, id, &l) != BL_ENOTFOUND;
        bl_store_abort(txn);
    }
    return found;
}

struct revoke {
    struct bl_member *m;
    uint64_t id;
};

static void revoke_cb(void *arg, int status, const struct bl_apply_result *res)
{
    struct revoke *r = arg;
    struct bl_member *m = r->m;
    struct bl_lessor_entry *e = bl_lessor_find(&m->lessor, r->id);
    m->revokes_inflight--;
    if (status == 0 && (res->code == BL_OK || res->code == BL_ENOTFOUND)) {
        BL_DEBUG("member %" PRIu64 ": lease %" PRIu64 " expired (%" PRIu64 " keys deleted)", m->id,
                 r->id, res->deleted);
        bl_lessor_del(&m->lessor, r->id);
    } else if (e != NULL) {
        e->revoking = false; /* tried again at the next tick while leading */
    }
    free(r);
}

/* Leader, from the watch timer: give leases fresh TTLs after an election,
 * and revoke those whose deadline passed. */
static void tick_leases(struct bl_member *m)
{
    uint64_t ids[REVOKES_MAX];
    uint64_t now = uv_now(m->loop);
    size_t n;

    if (raft_state(&m->raft) != RAFT_LEADER || m->closing) {
        m->lease_term = 0;
        return;
    }
    if (m->lease_term != m->raft.current_term) {
        bl_lessor_promote(&m->lessor, now);
        m->lease_term = m->raft.current_term;
        return;
    }
    if (m->revokes_inflight >= REVOKES_MAX) {
        return;
    }
    n = bl_lessor_expired(&m->lessor, now, ids, REVOKES_MAX - m->revokes_inflight);
    for (size_t i = 0; i < n; i++) {
        struct bl_lessor_entry *e = bl_lessor_find(&m->lessor, ids[i]);
        char reqid[48];
        struct bl_cmd cmd;
        struct revoke *r;
        if (!lease_stored(m, ids[i])) {
            bl_lessor_del(&m->lessor, ids[i]); /* revoked, or went with its key */
            continue;
        }
        r = malloc(sizeof *r);
        if (r == NULL) {
            return;
        }
        r->m = m;
        r->id = ids[i];
        memset(&cmd, 0, sizeof cmd);
        cmd.type = BL_CMD_LEASE_REVOKE;
        cmd.lease = ids[i];
        snprintf(reqid, sizeof reqid, "expire-%" PRIu64 "-%" PRIu64, m->id, ++m->revoke_seq);
        cmd.request_id.p = (const uint8_t *)reqid;
        cmd.request_id.len = strlen(reqid);
        if (bl_member_propose(m, &cmd, revoke_cb, r) != 0) {
            free(r);
            return;
        }
        e->revoking = true;
        m->revokes_inflight++;
    }
}

uint64_t bl_member_lease_fresh_id(struct bl_member *m)
{
    for (;;) {
        uint64_t id = (((uint64_t)rand() << 31) ^ (uint64_t)rand()) & (INT64_MAX >> 1);
        if (id != 0 && bl_lessor_find(&m->lessor, id) == NULL) {
            return id;
        }
    }
}

static int lease_entry(struct bl_member *m, uint64_t id, struct bl_lessor_entry **out)
{
    if (m->closing || raft_state(&m->raft) != RAFT_LEADER) {
        return BL_ENOLEADER;
    }
    if (m->lease_term != m->raft.current_term) {
        bl_lessor_promote(&m->lessor, uv_now(m->loop));
        m->lease_term = m->raft.current_term;
    }
    *out = bl_lessor_find(&m->lessor, id);
    if (*out == NULL || (*out)->revoking) {
        return BL_ENOTFOUND;
    }
    if (!lease_stored(m, id)) {
        bl_lessor_del(&m->lessor, id);
        return BL_ENOTFOUND;
    }
    return BL_OK;
}

int bl_member_lease_keepalive(struct bl_member *m, uint64_t id, uint64_t *ttl)
{
    struct bl_lessor_entry *e;
    int rv = lease_entry(m, id, &e);
    if (rv != 0) {
        return rv;
    }
    e->deadline = bl_lessor_deadline(uv_now(m->loop), e->ttl);
    *ttl = e->ttl;
    return BL_OK;
}

int bl_member_lease_remaining(struct bl_member *m, uint64_t id, uint64_t *remaining_ms,
                              uint64_t *ttl)
{
    struct bl_lessor_entry *e;
    uint64_t now = uv_now(m->loop);
    int rv = lease_entry(m, id, &e);
    if (rv != 0) {
        return rv;
    }
    *remaining_ms = e->deadline > now ? e->deadline - now : 0;
    *ttl = e->ttl;
    return BL_OK;
}

/* ---- the watch timer --------------------------------------------------------------- */

/* Every second: from the mean size of the entries appended meanwhile, the
 * snapshot threshold (and trailing) that keep about LOG_MEMORY_BUDGET bytes
 * of log in memory, never above the configured values. */
static void adapt_snapshot_threshold(struct bl_member *m)
{
    uint64_t now = uv_now(m->loop), mean, thresh, trail;

    if (now - m->adapted_at < 1000 || m->restored) {
        return;
    }
    m->adapted_at = now;
    if (m->appended_entries < 16) {
        return; /* too few to say: keep what is in use */
    }
    mean = m->appended_bytes / m->appended_entries;
    m->appended_bytes = m->appended_entries = 0;
    thresh = mean > 0 ? LOG_MEMORY_BUDGET / mean : m->snapshot_threshold;
    thresh = thresh < MIN_SNAPSHOT_THRESH ? MIN_SNAPSHOT_THRESH : thresh;
    thresh = thresh > m->snapshot_threshold ? m->snapshot_threshold : thresh;
    trail = m->snapshot_trailing * thresh / m->snapshot_threshold;
    if (thresh != m->eff_threshold || trail != m->eff_trailing) {
        BL_DEBUG("member %" PRIu64 ": entries of %" PRIu64
                 " bytes on average: snapshot every %" PRIu64 " entries, keeping %" PRIu64
                 " behind",
                 m->id, mean, thresh, trail);
        m->eff_threshold = (unsigned)thresh;
        m->eff_trailing = (unsigned)trail;
        raft_set_snapshot_threshold(&m->raft, m->eff_threshold);
        raft_set_snapshot_trailing(&m->raft, m->eff_trailing);
    }
}

static void watch_cb(uv_timer_t *t)
{
    struct bl_member *m = t->data;
    int state = raft_state(&m->raft);
    raft_id leader;
    const char *addr;

    raft_leader(&m->raft, &leader, &addr);
    if (state != m->last_state || leader != m->last_leader) {
        if (state == RAFT_LEADER) {
            BL_INFO("member %" PRIu64 ": became leader (term %llu)", m->id, m->raft.current_term);
        } else if (leader != 0) {
            BL_INFO("member %" PRIu64 ": %s, leader is %llu at %s (term %llu)", m->id,
                    bl_role_name(state_role(m)), leader, addr ? addr : "?", m->raft.current_term);
        } else {
            BL_INFO("member %" PRIu64 ": %s, no leader (term %llu)", m->id,
                    bl_role_name(state_role(m)), m->raft.current_term);
        }
        m->last_state = state;
        m->last_leader = leader;
    }
    if ((state == RAFT_UNAVAILABLE || m->append_failed != 0 || m->guard_fatal) && !m->closing &&
        !m->fatal_reported) {
        /* canonical/raft turns unavailable for good after an error it
         * cannot go on from (an entry could not be applied: e.g. the disk
         * filled up under the store), and a failed log append leaves a
         * follower that never appends again. Neither recovers by itself,
         * so say so once; ballastd exits on it. */
        char why[300];
        if (m->append_failed != 0) {
            /* raft_strerror() of 0.15 has no text for RAFT_NOSPACE */
            snprintf(why, sizeof why, "a log append failed (raft code %d: %s) %s", m->append_failed,
                     m->append_failed == RAFT_NOSPACE ? "no space left on the data dir's disk"
                                                      : raft_strerror(m->append_failed),
                     raft_errmsg(&m->raft));
        } else if (m->guard_fatal) {
            snprintf(why, sizeof why,
                     "a membership change must be rolled back and canonical/raft 0.15 cannot "
                     "(see confguard.h)");
        } else {
            snprintf(why, sizeof why, "%s", raft_errmsg(&m->raft));
        }
        m->fatal_reported = true;
        BL_ERROR("member %" PRIu64 ": raft stopped working: %s", m->id, why);
        if (m->fatal_cb != NULL) {
            m->fatal_cb(m->fatal_arg, why);
        }
    }
    if (m->restored && m->raft.log.snapshot.last_index > 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/restored", m->data_dir);
        unlink(path);
        m->restored = false;
        raft_set_snapshot_threshold(&m->raft, m->eff_threshold);
        raft_set_snapshot_trailing(&m->raft, m->eff_trailing);
        BL_INFO("member %" PRIu64 ": first snapshot after the restore taken (index %llu)", m->id,
                m->raft.log.snapshot.last_index);
    }
    adapt_snapshot_threshold(m);
    maybe_publish_self(m);
    maybe_promote(m);
    tick_leases(m);
    expire_proposals(m, false);
}

/* ---- leadership transfer ------------------------------------------------------------------ */

static raft_id best_transfer_target(struct bl_member *m);
static void do_close(struct bl_member *m);

static void user_transfer_cb(struct raft_transfer *req)
{
    struct bl_member *m = req->data;
    bl_transfer_cb cb = m->transfer_user_cb;
    raft_id leader;
    const char *addr;

    m->transferring = false;
    raft_leader(&m->raft, &leader, &addr);
    BL_INFO("member %" PRIu64 ": leadership transfer to %" PRIu64 " %s (leader now %llu)", m->id,
            m->transfer_to, leader == m->transfer_to ? "done" : "timed out", leader);
    cb(m->transfer_arg, leader == m->transfer_to ? BL_OK : BL_ETIMEOUT, leader);
    if (m->closing && !m->close_requested) {
        /* bl_member_close() came while the transfer ran: finish closing. */
        do_close(m);
    }
}

int bl_member_transfer(struct bl_member *m, uint64_t to, bl_transfer_cb cb, void *arg)
{
    const struct raft_server *target = NULL;
    int rv;

    if (m->closing) {
        return BL_ESHUTDOWN;
    }
    if (raft_state(&m->raft) != RAFT_LEADER) {
        return BL_ENOLEADER;
    }
    if (m->transferring) {
        return BL_EUNAVAILABLE;
    }
    if (to == 0) {
        to = best_transfer_target(m);
        if (to == 0) {
            return BL_EUNAVAILABLE;
        }
    }
    for (unsigned i = 0; i < m->raft.configuration.n; i++) {
        if (m->raft.configuration.servers[i].id == to) {
            target = &m->raft.configuration.servers[i];
        }
    }
    if (to == m->id || target == NULL || target->role != RAFT_VOTER) {
        return BL_EBADREQ;
    }
    m->transfer.data = m;
    rv = raft_transfer(&m->raft, &m->transfer, to, user_transfer_cb);
    if (rv != 0) {
        return from_raft(rv);
    }
    m->transferring = true;
    m->transfer_to = to;
    m->transfer_user_cb = cb;
    m->transfer_arg = arg;
    BL_INFO("member %" PRIu64 ": handing leadership to %" PRIu64 " on request", m->id, to);
    return 0;
}

/* ---- membership changes --------------------------------------------------------------- */

/* The steps of one change, in order; an add may skip the first two. */
enum change_step {
    STEP_REMOVE_OLD = 1, /* replace: raft_remove(change_replace) */
    STEP_ATTRS,          /* commit the new member's name and client URL */
    STEP_ADD,            /* raft_add(change_id): joins as a spare */
    STEP_ASSIGN,         /* raft_assign(change_id, standby or voter) */
    STEP_REMOVE,         /* a plain removal */
};

static const struct raft_server *conf_get(struct bl_member *m, uint64_t id, unsigned *index)
{
    for (unsigned i = 0; i < m->raft.configuration.n; i++) {
        if (m->raft.configuration.servers[i].id == id) {
            if (index != NULL) {
                *index = i;
            }
            return &m->raft.configuration.servers[i];
        }
    }
    return NULL;
}

static void change_step_run(struct bl_member *m);

static void change_finish(struct bl_member *m, int status)
{
    bl_change_cb cb = m->change_cb;
    void *arg = m->change_arg;
    uint64_t id = m->change_id;

    m->change_busy = false;
    m->promoting = false;
    free(m->change_peer_url);
    m->change_peer_url = NULL;
    if (cb != NULL) {
        cb(arg, status, id);
    }
}

static void change_raft_cb(struct raft_change *req, int status)
{
    struct bl_member *m = req->data;
    if (status != 0) {
        BL_WARN("member %" PRIu64 ": membership change for %" PRIu64 " failed at step %d: %s",
                m->id, m->change_id, m->change_step, raft_strerror(status));
        change_finish(m, from_raft(status));
        return;
    }
    change_step_run(m);
}

static void change_attrs_cb(void *arg, int status, const struct bl_apply_result *res)
{
    struct bl_member *m = arg;
    (void)res;
    if (status != 0) {
        change_finish(m, status);
        return;
    }
    change_step_run(m);
}

/* Run the next step of the pending change; the last one calls back. */
static void change_step_run(struct bl_member *m)
{
    int rv = 0;

    if (m->closing) {
        change_finish(m, BL_ESHUTDOWN);
        return;
    }
    m->change.data = m;
    switch (m->change_step) {
    case STEP_REMOVE_OLD:
        m->change_step = STEP_ATTRS;
        if (conf_get(m, m->change_replace, NULL) != NULL) {
            BL_INFO("member %" PRIu64 ": removing %" PRIu64 " to replace it with %" PRIu64, m->id,
                    m->change_replace, m->change_id);
            rv = raft_remove(&m->raft, &m->change, m->change_replace, change_raft_cb);
            break;
        }
        /* Already gone. */
        /* fall through */
    case STEP_ATTRS:
        /* The attributes were proposed by bl_member_add(); continue there. */
        m->change_step = STEP_ADD;
        change_step_run(m);
        return;
    case STEP_ADD:
        m->change_step = STEP_ASSIGN;
        if (conf_get(m, m->change_id, NULL) == NULL) {
            rv = raft_add(&m->raft, &m->change, m->change_id, m->change_peer_url, change_raft_cb);
            break;
        }
        /* Already in the configuration. */
        /* fall through */
    case STEP_ASSIGN: {
        const struct raft_server *s = conf_get(m, m->change_id, NULL);
        int role = m->change_voter ? RAFT_VOTER : RAFT_STANDBY;
        m->change_step = 0;
        if (s != NULL && s->role != role) {
            BL_INFO("member %" PRIu64 ": making %" PRIu64 " a %s", m->id, m->change_id,
                    m->change_voter ? "voter (after catching it up)" : "learner");
            rv = raft_assign(&m->raft, &m->change, m->change_id, role, change_raft_cb);
            break;
        }
        change_finish(m, s != NULL ? BL_OK : BL_EINTERNAL);
        return;
    }
    case STEP_REMOVE:
        m->change_step = 0;
        rv = raft_remove(&m->raft, &m->change, m->change_id, change_raft_cb);
        break;
    default:
        change_finish(m, BL_OK);
        return;
    }
    if (rv != 0) {
        BL_WARN("member %" PRIu64 ": membership change for %" PRIu64 " refused: %s", m->id,
                m->change_id, raft_strerror(rv));
        change_finish(m, from_raft(rv));
    }
}

/* Common checks; sets up m->change_* on success. */
static int change_begin(struct bl_member *m, uint64_t id, bl_change_cb cb, void *arg)
{
    if (m->closing) {
        return BL_ESHUTDOWN;
    }
    if (raft_state(&m->raft) != RAFT_LEADER) {
        return BL_ENOLEADER;
    }
    if (m->change_busy || m->raft.configuration_uncommitted_index != 0) {
        return BL_EUNAVAILABLE;
    }
    if (id == 0 || id > INT64_MAX) {
        return BL_EBADREQ;
    }
    m->change_busy = true;
    m->change_id = id;
    m->change_replace = 0;
    m->change_cb = cb;
    m->change_arg = arg;
    m->change_voter = false;
    return 0;
}

int bl_member_add(struct bl_member *m, const struct bl_member_add_req *req, bl_change_cb cb,
                  void *arg)
{
    struct bl_cmd cmd;
    char rid[64];
    int rv;

    if (req->peer_url == NULL || req->peer_url[0] == '\0' || req->client_url == NULL ||
        req->client_url[0] == '\0' || strlen(req->peer_url) > 255 ||
        strlen(req->client_url) > 255 || (req->name != NULL && strlen(req->name) > 255)) {
        return BL_EBADREQ;
    }
    if (req->replace == m->id) {
        return BL_EBADREQ; /* the caller hands leadership over first */
    }
    for (unsigned i = 0; i < m->raft.configuration.n; i++) {
        const struct raft_server *s = &m->raft.configuration.servers[i];
        if (s->id == req->id || (strcmp(s->address, req->peer_url) == 0 && s->id != req->replace)) {
            return BL_EBADREQ;
        }
    }
    rv = change_begin(m, req->id, cb, arg);
    if (rv != 0) {
        return rv;
    }
    m->change_replace = req->replace;
    m->change_voter = req->voter;
    m->change_peer_url = strdup(req->peer_url);
    if (m->change_peer_url == NULL) {
        m->change_busy = false;
        return BL_ENOMEM;
    }
    /* The attributes first, so the member shows its name as soon as it is
     * in the configuration; an orphan row (if a later step fails) is never
     * listed: the list walks the configuration. */
    memset(&cmd, 0, sizeof cmd);
    snprintf(rid, sizeof rid, "add-%" PRIu64 "-%" PRIu64, req->id, ++m->publish_seq);
    cmd.type = BL_CMD_MEMBER_SET;
    cmd.request_id.p = (const uint8_t *)rid;
    cmd.request_id.len = strlen(rid);
    cmd.cas = BL_CAS_NONE;
    cmd.member_id = req->id;
    snprintf(m->change_name, sizeof m->change_name, "%s",
             req->name != NULL && req->name[0] != '\0' ? req->name : "");
    if (m->change_name[0] == '\0') {
        snprintf(m->change_name, sizeof m->change_name, "member-%" PRIu64, req->id);
    }
    cmd.name.p = (const uint8_t *)m->change_name;
    cmd.name.len = strlen(m->change_name);
    cmd.peer_url.p = (const uint8_t *)req->peer_url;
    cmd.peer_url.len = strlen(req->peer_url);
    cmd.client_url.p = (const uint8_t *)req->client_url;
    cmd.client_url.len = strlen(req->client_url);
    m->change_step = req->replace != 0 ? STEP_REMOVE_OLD : STEP_ADD;
    BL_INFO("member %" PRIu64 ": adding %" PRIu64 " (%s) at %s as a %s%s", m->id, req->id,
            m->change_name, req->peer_url, req->voter ? "voter" : "learner",
            req->replace != 0 ? " in place of an old member" : "");
    rv = bl_member_propose(m, &cmd, change_attrs_cb, m);
    if (rv != 0) {
        free(m->change_peer_url);
        m->change_peer_url = NULL;
        m->change_busy = false;
        return rv;
    }
    return 0;
}

int bl_member_remove(struct bl_member *m, uint64_t id, bl_change_cb cb, void *arg)
{
    const struct raft_server *s;
    unsigned voters = 0;
    int rv;

    if (id == m->id && raft_state(&m->raft) == RAFT_LEADER) {
        return BL_EBADREQ; /* hand leadership over first (bl_member_transfer) */
    }
    if (raft_state(&m->raft) == RAFT_LEADER && (s = conf_get(m, id, NULL)) == NULL) {
        return BL_ENOTFOUND;
    }
    for (unsigned i = 0; i < m->raft.configuration.n; i++) {
        voters += m->raft.configuration.servers[i].role == RAFT_VOTER;
    }
    s = conf_get(m, id, NULL);
    if (s != NULL && s->role == RAFT_VOTER && voters <= 1) {
        return BL_EBADREQ;
    }
    rv = change_begin(m, id, cb, arg);
    if (rv != 0) {
        return rv;
    }
    m->change_step = STEP_REMOVE;
    BL_INFO("member %" PRIu64 ": removing member %" PRIu64, m->id, id);
    change_step_run(m);
    return 0;
}

int bl_member_promote(struct bl_member *m, uint64_t id, bl_change_cb cb, void *arg)
{
    int rv;
    if (raft_state(&m->raft) == RAFT_LEADER && conf_get(m, id, NULL) == NULL) {
        return BL_ENOTFOUND;
    }
    rv = change_begin(m, id, cb, arg);
    if (rv != 0) {
        return rv;
    }
    m->change_voter = true;
    m->change_step = STEP_ASSIGN;
    change_step_run(m);
    return 0;
}

static void auto_promote_cb(void *arg, int status, uint64_t id)
{
    struct bl_member *m = arg;
    if (status == 0) {
        BL_INFO("member %" PRIu64 ": learner %" PRIu64 " caught up and is a voter now", m->id, id);
    }
}

/* Leader, from the watch timer: a learner that has caught up becomes a
 * voter; a spare (an add that stopped half-way) becomes a learner. Raft
 * itself runs a last catch-up round before it commits a voter. */
static void maybe_promote(struct bl_member *m)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    raft_index last = raft_last_index(&m->raft);

    if (!m->auto_promote || m->closing || m->change_busy || raft_state(&m->raft) != RAFT_LEADER ||
        m->raft.configuration_uncommitted_index != 0 || m->raft.leader_state.progress == NULL) {
        return;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        const struct raft_progress *pr = &m->raft.leader_state.progress[i];
        /* Only a learner the leader hears from and that holds entries: one
         * that never started would keep raft's catch-up (and with it every
         * other membership change) waiting. */
        bool caught_up =
            pr->recent_recv && pr->match_index > 0 && pr->match_index + PROMOTE_LAG >= last;
        if (s->role == RAFT_VOTER || (s->role == RAFT_STANDBY && !caught_up)) {
            continue;
        }
        if (change_begin(m, s->id, auto_promote_cb, m) != 0) {
            return;
        }
        m->promoting = true;
        m->change_voter = s->role == RAFT_STANDBY;
        m->change_step = STEP_ASSIGN;
        change_step_run(m);
        return;
    }
}

bool bl_member_id_seen(struct bl_member *m, uint64_t id)
{
    struct bl_member_attrs a;
    struct bl_txn *txn;
    const void *rec;
    size_t len;
    unsigned i;
    bool seen = false;

    if (conf_get(m, id, &i) != NULL && raft_state(&m->raft) == RAFT_LEADER &&
        m->raft.leader_state.progress != NULL && m->raft.leader_state.progress[i].match_index > 0) {
        return true;
    }
    if (bl_store_begin(m->store, false, &txn) != 0) {
        return true; /* when in doubt, treat the id as used */
    }
    if (bl_store_member_get(txn, id, &rec, &len) == 0 &&
        bl_member_attrs_decode(rec, len, &a) == 0) {
        seen = a.seen;
    }
    bl_store_abort(txn);
    return seen;
}

uint64_t bl_member_fresh_id(struct bl_member *m)
{
    struct bl_txn *txn;
    const void *rec;
    size_t len;

    for (;;) {
        /* 2^32..2^63-1: clear of the small ids operators and StatefulSet
         * ordinals use, so a replacement never takes a future ordinal's id. */
        uint64_t id = (((uint64_t)rand() << 31) ^ (uint64_t)rand()) & (INT64_MAX >> 1);
        id |= 1ULL << 32;
        bool used = conf_get(m, id, NULL) != NULL;
        if (!used && bl_store_begin(m->store, false, &txn) == 0) {
            used = bl_store_member_get(txn, id, &rec, &len) == 0;
            bl_store_abort(txn);
        }
        if (!used) {
            return id;
        }
    }
}

int bl_member_get(struct bl_member *m, uint64_t id, struct bl_member_info *out)
{
    struct bl_member_info *list;
    unsigned n;
    int rv = bl_member_list(m, &list, &n);
    if (rv != 0) {
        return rv;
    }
    rv = BL_ENOTFOUND;
    for (unsigned i = 0; i < n; i++) {
        if (list[i].id == id) {
            *out = list[i];
            rv = 0;
        }
    }
    free(list);
    return rv;
}

uint64_t bl_member_id(struct bl_member *m)
{
    return m->id;
}

void bl_member_on_stop(struct bl_member *m, void (*cb)(void *arg), void *arg)
{
    m->stop_cb = cb;
    m->stop_arg = arg;
}

void bl_member_on_fatal(struct bl_member *m, void (*cb)(void *arg, const char *why), void *arg)
{
    m->fatal_cb = cb;
    m->fatal_arg = arg;
}

bool bl_member_disk_full(struct bl_member *m)
{
    return m->disk_full;
}

const char *bl_member_data_dir(struct bl_member *m)
{
    return m->data_dir;
}

/* ---- probes (discover.h) ------------------------------------------------------------ */

/* Answer a starting member's probe: this member runs; does the cluster
 * know the asker's id, and has that id run? */
static int probe_answer(void *arg, const void *req, size_t len, void **reply, size_t *reply_len)
{
    struct bl_member *m = arg;
    struct bl_probe_reply r;
    char peer_url[256];
    uint64_t id;
    struct bl_member_attrs a;
    struct bl_txn *txn;
    const void *rec;
    size_t rec_len;

    if (m->closing || bl_probe_request_decode(req, len, &id, peer_url, sizeof peer_url) != 0) {
        return BL_EBADREQ;
    }
    memset(&r, 0, sizeof r);
    r.state = BL_PROBE_MEMBER;
    r.responder_id = m->id;
    snprintf(r.client_url, sizeof r.client_url, "%s", m->client_url);
    if (raft_state(&m->raft) == RAFT_LEADER) {
        snprintf(r.leader_client_url, sizeof r.leader_client_url, "%s", m->client_url);
    } else if (bl_member_leader_client_url(m, r.leader_client_url, sizeof r.leader_client_url) !=
               0) {
        r.leader_client_url[0] = '\0';
    }
    r.in_config = conf_get(m, id, NULL) != NULL;
    r.seen = bl_member_id_seen(m, id);
    /* A member at the asker's address under another id that has run: the
     * asker is its new incarnation, and must not bootstrap. */
    if (!r.seen && bl_store_begin(m->store, false, &txn) == 0) {
        for (unsigned i = 0; i < m->raft.configuration.n; i++) {
            const struct raft_server *s = &m->raft.configuration.servers[i];
            if (s->id != id && strcmp(s->address, peer_url) == 0 &&
                bl_store_member_get(txn, s->id, &rec, &rec_len) == 0 &&
                bl_member_attrs_decode(rec, rec_len, &a) == 0 && a.seen) {
                r.seen = true;
            }
        }
        bl_store_abort(txn);
    }
    return bl_probe_reply_encode(&r, reply, reply_len);
}

bool bl_member_data_dir_fresh(const char *data_dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/raft", data_dir);
    return raft_dir_empty(path);
}

/* ---- async work -------------------------------------------------------------------------- */

/* canonical/raft 0.15's uv backend has no async_work (raft_io version 2),
 * which raft needs to take snapshots off the loop thread (fsm version 3).
 * Provide it on libuv's thread pool, as later raft releases do. */
struct async_work {
    uv_work_t work;
    struct bl_member *m;
    struct raft_io_async_work *req;
    raft_io_async_work_cb cb;
    int status;
};

static void do_close(struct bl_member *m);

static void async_work_run(uv_work_t *w)
{
    struct async_work *aw = w->data;
    aw->status = aw->req->work(aw->req);
}

static void async_work_done(uv_work_t *w, int status)
{
    struct async_work *aw = w->data;
    struct bl_member *m = aw->m;
    aw->cb(aw->req, status != 0 ? RAFT_CANCELED : aw->status);
    free(aw);
    if (--m->async_pending == 0 && m->close_requested) {
        do_close(m);
    }
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
                         raft_io_async_work_cb cb)
{
    struct raft *r = io->data; /* raft_init points io->data at the raft */
    struct bl_member *m = r->data;
    struct async_work *aw = calloc(1, sizeof *aw);
    int rv;
    if (aw == NULL) {
        return RAFT_NOMEM;
    }
    aw->work.data = aw;
    aw->m = m;
    aw->req = req;
    aw->cb = cb;
    rv = uv_queue_work(m->loop, &aw->work, async_work_run, async_work_done);
    if (rv != 0) {
        free(aw);
        return RAFT_IOERR;
    }
    m->async_pending++;
    return 0;
}

/* ---- the log append: failures and crash points -------------------------------------------- */

/* Every append of the uv backend runs on a request of ours, so that the
 * member sees its outcome before raft does:
 *   - a failed append (ENOSPC when a new segment cannot be allocated, an
 *     I/O error) is recorded; canonical/raft 0.15 does not recover from it
 *     (a follower stays a follower that never appends again, even once
 *     space is back: reproduced by test-nemesis
 *     full_disk_follower_exits_and_recovers), so watch_cb() reports it as
 *     fatal, as it does raft turning unavailable;
 *   - the raft-append crash points (crashpoint.h) abort before the append
 *     and after it completed, before raft sees the entries durable;
 *   - its duration, submit to durable (or failed), goes to the
 *     bl_member_on_timing subscriber (metrics), as does each FSM apply's. */
struct append_wrap {
    struct raft_io_append req; /* what the uv backend sees */
    struct raft_io_append *orig;
    raft_io_append_cb cb;
    struct bl_member *m;
    uint64_t start; /* uv_hrtime() at submit, for bl_member_on_timing */
};

static void report_timing(struct bl_member *m, int what, uint64_t start)
{
    if (m->timing_cb != NULL) {
        m->timing_cb(m->timing_arg, what, uv_hrtime() - start);
    }
}

void bl_member_on_timing(struct bl_member *m, void (*cb)(void *arg, int what, uint64_t ns),
                         void *arg)
{
    m->timing_cb = cb;
    m->timing_arg = arg;
}

/* The FSM's apply, timed for bl_member_on_timing. */
static int timed_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct bl_fsm *f = fsm->data;
    struct bl_member *m = f->hook_arg;
    uint64_t start = uv_hrtime();
    int rv = m->fsm_apply(fsm, buf, result);
    report_timing(m, BL_TIMING_APPLY, start);
    return rv;
}

static void note_append_failure(struct bl_member *m, int status)
{
    if (m->append_failed == 0) {
        m->append_failed = status;
    }
}

static void wrapped_append_cb(struct raft_io_append *req, int status)
{
    struct append_wrap *w = req->data;
    struct raft_io_append *orig = w->orig;
    raft_io_append_cb cb = w->cb;
    struct bl_member *m = w->m;
    uint64_t start = w->start;

    free(w);
    if (status == 0) {
        BL_CRASH_POINT(BL_CRASH_RAFT_APPEND_AFTER);
        report_timing(m, BL_TIMING_APPEND, start);
    } else if (status != RAFT_CANCELED) {
        note_append_failure(m, status);
        report_timing(m, BL_TIMING_APPEND_FAILED, start);
    }
    cb(orig, status);
}

static int wrapped_append(struct raft_io *io, struct raft_io_append *req,
                          const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct raft *r = io->data; /* raft_init points io->data at the raft */
    struct bl_member *m = r->data;
    struct append_wrap *w;
    int rv;

    BL_CRASH_POINT(BL_CRASH_RAFT_APPEND_BEFORE);
    for (unsigned i = 0; i < n; i++) {
        m->appended_bytes += entries[i].buf.len;
    }
    m->appended_entries += n;
    w = malloc(sizeof *w);
    if (w == NULL) {
        return RAFT_NOMEM;
    }
    memset(&w->req, 0, sizeof w->req);
    w->req.data = w;
    w->orig = req;
    w->cb = cb;
    w->m = m;
    w->start = uv_hrtime();
    req->cb = cb; /* as the uv backend would */
    rv = m->uv_append(io, &w->req, entries, n, wrapped_append_cb);
    if (rv != 0) {
        uint64_t start = w->start;
        free(w); /* the callback is never called */
        if (rv != RAFT_NOMEM && rv != RAFT_CANCELED) {
            note_append_failure(m, rv);
        }
        if (rv != RAFT_CANCELED) {
            report_timing(m, BL_TIMING_APPEND_FAILED, start);
        }
    }
    return rv;
}

/* Every message raft receives passes the configuration guard first (see
 * confguard.h: canonical/raft 0.15 crashes rolling back a membership change
 * whose committed predecessor was compacted away). */
static void wrapped_recv(struct raft_io *io, struct raft_message *msg)
{
    struct raft *r = io->data;
    struct bl_member *m = r->data;
    int what = bl_confguard_before_recv(&m->confguard, r, msg);

    if (what == BL_CONFGUARD_DELIVER) {
        m->raft_recv(io, msg);
        return;
    }
    bl_confguard_free_msg(msg);
    if (what == BL_CONFGUARD_FATAL) {
        m->guard_fatal = true; /* watch_cb reports it: ballastd exits 1 */
    }
}

static int wrapped_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                         raft_io_recv_cb recv)
{
    struct raft *r = io->data;
    struct bl_member *m = r->data;
    m->raft_recv = recv;
    return m->uv_start(io, msecs, tick, wrapped_recv);
}

/* ---- backups ------------------------------------------------------------------------------ */

struct backup_work {
    uv_work_t work;
    struct bl_member *m;
    int fd;
    int status;
    struct bl_backup_info info;
    bl_backup_cb cb;
    void *arg;
    char errmsg[BL_ERRMSG_SIZE];
};

static void backup_run(uv_work_t *w)
{
    struct backup_work *bw = w->data;
    bw->status = bl_backup_write_fd(bw->m->store, bw->fd, &bw->info, bw->errmsg);
}

static void backup_done(uv_work_t *w, int status)
{
    struct backup_work *bw = w->data;
    struct bl_member *m = bw->m;
    if (status != 0 && bw->status == 0) {
        bw->status = BL_ESHUTDOWN;
        snprintf(bw->errmsg, sizeof bw->errmsg, "backup canceled");
    }
    bw->cb(bw->arg, bw->status, &bw->info, bw->errmsg);
    free(bw);
    if (--m->async_pending == 0 && m->close_requested) {
        do_close(m);
    }
}

int bl_member_backup(struct bl_member *m, int fd, bl_backup_cb cb, void *arg)
{
    struct backup_work *bw;
    if (m->closing) {
        return BL_ESHUTDOWN;
    }
    bw = calloc(1, sizeof *bw);
    if (bw == NULL) {
        return BL_ENOMEM;
    }
    bw->work.data = bw;
    bw->m = m;
    bw->fd = fd;
    bw->cb = cb;
    bw->arg = arg;
    if (uv_queue_work(m->loop, &bw->work, backup_run, backup_done) != 0) {
        free(bw);
        return BL_EINTERNAL;
    }
    m->async_pending++; /* close waits: the worker reads the store */
    return 0;
}

/* ---- start and close ------------------------------------------------------------------ */

static void member_free(struct bl_member *m)
{
    bl_lessor_free(&m->lessor);
    free(m->name);
    free(m->peer_url);
    free(m->client_url);
    free(m->data_dir);
    free(m);
}

static char *dup_or(const char *s, const char *fallback)
{
    return strdup(s != NULL && s[0] != '\0' ? s : fallback);
}

static void start_failed_close_cb(struct raft *r)
{
    struct bl_member *m = r->data;
    m->closing = true;
}

/* DIR/member-id: the Raft id this data dir belongs to. It is written when
 * the data dir gets its first Raft state and wins over the configured id
 * afterwards, because a member that rejoined after losing its volume runs
 * under a fresh id (see discover.h). */
static int read_member_id(const char *data_dir, uint64_t *id)
{
    char path[4200], buf[32];
    unsigned long long v;
    FILE *f;
    snprintf(path, sizeof path, "%s/member-id", data_dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return errno == ENOENT ? BL_ENOTFOUND : BL_EIO;
    }
    if (fgets(buf, sizeof buf, f) == NULL || sscanf(buf, "%llu", &v) != 1 || v == 0 ||
        v > INT64_MAX) {
        fclose(f);
        return BL_ECORRUPT;
    }
    fclose(f);
    *id = v;
    return 0;
}

static int write_member_id(const char *data_dir, uint64_t id)
{
    char path[4200], tmp[4200], buf[32];
    int fd, n;
    snprintf(path, sizeof path, "%s/member-id", data_dir);
    snprintf(tmp, sizeof tmp, "%s/member-id.tmp", data_dir);
    n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", id);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return BL_EIO;
    }
    if (write(fd, buf, (size_t)n) != n || fsync(fd) != 0) {
        close(fd);
        return BL_EIO;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        return BL_EIO;
    }
    fd = open(data_dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

/* Remove the files of DIR/store (not subdirectories): a store without the
 * Raft log it was built from must not be kept, or apply would skip entries
 * of the new log at or below its applied index. */
static void clear_store_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
}

static bool file_exists(const char *dir, const char *name)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

int bl_member_start(uv_loop_t *loop, const struct bl_member_config *cfg, struct bl_member **out,
                    char *errmsg)
{
    uint64_t quota = cfg->quota_bytes ? cfg->quota_bytes : DEFAULT_QUOTA_BYTES;
    uint64_t headroom = quota / 4 > MAP_HEADROOM_MIN ? quota / 4 : MAP_HEADROOM_MIN;
    /* The Raft log is the durable record: the store commits without fsync
     * (see bl_store_discarded() for a reboot, fsm.c for snapshots). */
    struct bl_store_opts sopts = {.map_size = (size_t)(quota + headroom), .no_sync = true};
    struct bl_transport_opts topts;
    struct bl_diskcheck_facts facts;
    char diag[BL_DISKCHECK_MSG_SIZE];
    struct founders founders;
    struct bl_member *m;
    struct bl_txn *txn;
    char path[4200];
    bool fresh;
    int rv;

    rv = bl_crashpoint_init(errmsg);
    if (rv != 0) {
        return rv;
    }
    if (cfg->id == 0 || cfg->id > INT64_MAX || cfg->data_dir == NULL || cfg->peer_listen == NULL) {
        snprintf(errmsg, BL_ERRMSG_SIZE,
                 "member needs an id (1..2^63), a data dir and a peer "
                 "address");
        return BL_EBADREQ;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        return BL_ENOMEM;
    }
    m->loop = loop;
    m->id = cfg->id;
    snprintf(path, sizeof path, "member-%" PRIu64, cfg->id);
    m->name = dup_or(cfg->name, path);
    m->peer_url = dup_or(cfg->peer_advertise, cfg->peer_listen);
    m->client_url = dup_or(cfg->client_advertise, "");
    m->data_dir = strdup(cfg->data_dir);
    m->propose_timeout_ms =
        cfg->propose_timeout_ms ? cfg->propose_timeout_ms : DEFAULT_PROPOSE_TIMEOUT_MS;
    m->quota_bytes = quota;
    m->last_state = -1;
    m->auto_promote = !cfg->no_auto_promote;
    if (m->name == NULL || m->peer_url == NULL || m->client_url == NULL || m->data_dir == NULL) {
        rv = BL_ENOMEM;
        goto err_after_alloc;
    }

    snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
    if (mkdir_p(path) != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "create %.200s: %s", path, strerror(errno));
        rv = BL_EIO;
        goto err_after_alloc;
    }
    fresh = raft_dir_empty(path);
    if (bl_diskcheck_diagnose(cfg->data_dir, 0, NULL, diag, sizeof diag) == 1) {
        /* e.g. a full file system: LMDB would fault on its first page. */
        snprintf(errmsg, BL_ERRMSG_SIZE, "%.250s", diag);
        rv = BL_ENOSPACE;
        goto err_after_alloc;
    }
    bl_diskcheck_gather(cfg->data_dir, &facts);
    if (bl_diskcheck_warn(&facts, diag, sizeof diag) == 1) {
        BL_WARN("member: %s", diag);
    }
    rv =
        bl_diskcheck_init(&m->disk, cfg->data_dir,
                          cfg->min_free_bytes ? cfg->min_free_bytes : BL_DISKCHECK_DEFAULT_RESERVE);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "%.250s", m->disk.errmsg);
        goto err_after_alloc;
    }
    snprintf(path, sizeof path, "%s/store", cfg->data_dir);
    if (fresh) {
        clear_store_dir(path);
        rv = write_member_id(cfg->data_dir, m->id);
        if (rv != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "write %.200s/member-id: %s", cfg->data_dir,
                     strerror(errno));
            goto err_after_alloc;
        }
    } else {
        uint64_t stored_id = 0;
        rv = read_member_id(cfg->data_dir, &stored_id);
        if (rv == BL_ENOTFOUND) {
            rv = write_member_id(cfg->data_dir, m->id); /* a data dir from before 0.2 */
        } else if (rv == 0 && stored_id != m->id) {
            BL_INFO("member: data dir %s belongs to Raft id %" PRIu64
                    " (it rejoined under a fresh id); configured id %" PRIu64 " is not used",
                    cfg->data_dir, stored_id, m->id);
            m->id = stored_id;
        }
        if (rv != 0) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "%.200s/member-id: %s", cfg->data_dir,
                     rv == BL_ECORRUPT ? "not a member id" : strerror(errno));
            goto err_after_alloc;
        }
    }
    m->restored = file_exists(cfg->data_dir, "restored");
    if (!fresh) {
        /* Before libraft loads the log: see segcheck.c for what it misses. */
        snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
        rv = bl_segcheck_open_segments(path, errmsg);
        if (rv != 0) {
            goto err_after_alloc;
        }
        snprintf(path, sizeof path, "%s/store", cfg->data_dir);
    }

    rv = bl_store_open(path, &sopts, &m->store, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (bl_store_discarded(m->store)) {
        BL_WARN("member: the store in %s had commits not yet on disk when the machine went down "
                "(another boot id): discarded it; it is rebuilt from the Raft snapshot and log",
                path);
    }
    bl_fsm_init(&m->fsm, m->store);
    m->fsm.raft = &m->raft;
    m->fsm.scratch_dir = m->data_dir;
    m->fsm.on_apply = fsm_applied;
    m->fsm.on_restore = fsm_restored;
    m->fsm.hook_arg = m;
    m->fsm_apply = m->fsm.fsm.apply;
    m->fsm.fsm.apply = timed_apply;
    m->fsm.applier.history_revisions =
        cfg->history_revisions != 0 ? cfg->history_revisions : BL_HISTORY_DEFAULT;
    rv = bl_store_begin(m->store, false, &txn);
    if (rv == 0) {
        rv = bl_store_meta_get(txn, "revision", &m->fsm.revision);
        bl_store_abort(txn);
    }
    if (rv == 0) {
        rv = lessor_load(m);
    }
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "store: %s", bl_store_errmsg(m->store));
        goto err_after_store;
    }

    memset(&topts, 0, sizeof topts);
    topts.bind_address = cfg->peer_listen;
    topts.probe_cb = probe_answer;
    topts.probe_arg = m;
    rv = bl_transport_init(&m->transport, loop, &topts, errmsg);
    if (rv != 0) {
        goto err_after_store;
    }
    snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
    rv = raft_uv_init(&m->io, loop, path, &m->transport);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "raft I/O in %.100s: %.120s", path, m->io.errmsg);
        if (bl_diskcheck_diagnose(cfg->data_dir, rv, m->io.errmsg, diag, sizeof diag) == 1) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "%.250s", diag);
        }
        rv = from_raft(rv);
        goto err_after_transport;
    }
    /* A corrupt segment must stop the member, not shorten its log. */
    raft_uv_set_auto_recovery(&m->io, false);
    m->io.version = 2;
    m->io.async_work = io_async_work;
    m->uv_append = m->io.append;
    m->io.append = wrapped_append;
    m->uv_start = m->io.start;
    m->io.start = wrapped_start;
    bl_confguard_init(&m->confguard);

    rv = raft_init(&m->raft, &m->io, &m->fsm.fsm, m->id, m->peer_url);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "raft init: %.200s", raft_errmsg(&m->raft));
        if (bl_diskcheck_diagnose(cfg->data_dir, rv, raft_errmsg(&m->raft), diag, sizeof diag) ==
            1) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "%.250s", diag);
        }
        rv = from_raft(rv);
        goto err_after_io;
    }
    m->raft.data = m;
    raft_set_pre_vote(&m->raft, true);
    raft_set_election_timeout(&m->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 500);
    raft_set_heartbeat_timeout(&m->raft,
                               cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 50);
    raft_set_snapshot_threshold(&m->raft, cfg->snapshot_threshold ? cfg->snapshot_threshold
                                                                  : DEFAULT_SNAPSHOT_THRESHOLD);
    raft_set_snapshot_trailing(&m->raft, cfg->snapshot_trailing ? cfg->snapshot_trailing
                                                                : DEFAULT_SNAPSHOT_TRAILING);
    raft_set_install_snapshot_timeout(&m->raft, cfg->install_snapshot_timeout_ms
                                                    ? cfg->install_snapshot_timeout_ms
                                                    : DEFAULT_INSTALL_SNAPSHOT_TIMEOUT_MS);
    m->snapshot_threshold =
        cfg->snapshot_threshold ? cfg->snapshot_threshold : DEFAULT_SNAPSHOT_THRESHOLD;
    m->snapshot_trailing =
        cfg->snapshot_trailing ? cfg->snapshot_trailing : DEFAULT_SNAPSHOT_TRAILING;
    m->eff_threshold = m->snapshot_threshold;
    m->eff_trailing = m->snapshot_trailing;
    if (m->restored) {
        /* Restored from a backup: the data is in the store but in no log
         * entry, so members that join must get it by InstallSnapshot. Take
         * a snapshot at the first applied entry and keep no log behind it;
         * watch_cb restores the settings once it exists. */
        raft_set_snapshot_threshold(&m->raft, 1);
        raft_set_snapshot_trailing(&m->raft, 0);
        BL_INFO("member %" PRIu64 ": restored from a backup: taking a first snapshot", m->id);
    }

    if (fresh && cfg->join) {
        BL_INFO("member %" PRIu64 ": empty data dir, joining: waiting for the leader to "
                "replicate to this member",
                m->id);
    } else if (fresh) {
        if (cfg->initial_cluster == NULL || cfg->initial_cluster[0] == '\0') {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "data dir %.150s is empty and no --initial-cluster was given", cfg->data_dir);
            rv = BL_EBADREQ;
            goto err_after_raft;
        }
        memset(&founders, 0, sizeof founders);
        raft_configuration_init(&founders.conf);
        founders.self = m->id;
        founders.self_address = m->peer_url;
        rv = bl_parse_initial_cluster(cfg->initial_cluster, add_founder, &founders, errmsg);
        if (rv == 0 && !founders.self_found) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "data dir is empty and member %" PRIu64
                     " is not in --initial-cluster (use --join to join a running cluster)",
                     m->id);
            rv = BL_EBADREQ;
        } else if (rv == 0 && !founders.self_address_matches) {
            snprintf(errmsg, BL_ERRMSG_SIZE,
                     "--initial-cluster gives member %" PRIu64
                     " another peer address than its own %.100s",
                     m->id, m->peer_url);
            rv = BL_EBADREQ;
        }
        if (rv == 0) {
            rv = raft_bootstrap(&m->raft, &founders.conf);
            if (rv != 0) {
                snprintf(errmsg, BL_ERRMSG_SIZE, "bootstrap: %.200s", raft_errmsg(&m->raft));
                rv = from_raft(rv);
            } else {
                BL_INFO("member %" PRIu64 ": bootstrapped a new cluster of %u founders", m->id,
                        founders.conf.n);
            }
        }
        raft_configuration_close(&founders.conf);
        if (rv != 0) {
            goto err_after_raft;
        }
    }

    rv = raft_start(&m->raft);
    if (rv != 0) {
        snprintf(errmsg, BL_ERRMSG_SIZE, "raft start: %.200s",
                 raft_errmsg(&m->raft)[0] != '\0' ? raft_errmsg(&m->raft) : raft_strerror(rv));
        if (bl_diskcheck_diagnose(cfg->data_dir, rv, raft_errmsg(&m->raft), diag, sizeof diag) ==
            1) {
            snprintf(errmsg, BL_ERRMSG_SIZE, "%.250s", diag);
        }
        rv = from_raft(rv);
        goto err_after_raft;
    }
    uv_timer_init(loop, &m->watch);
    m->watch.data = m;
    uv_timer_start(&m->watch, watch_cb, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
    uv_check_init(loop, &m->flush);
    m->flush.data = m;
    m->handles_open = 2;
    BL_INFO("member %" PRIu64 " (%s): raft started, peer %s, data %s, store revision %" PRIu64
            ", applied index %llu",
            m->id, m->name, m->peer_url, m->data_dir, m->fsm.revision, raft_last_applied(&m->raft));
    *out = m;
    return 0;

err_after_raft:
    /* raft_init succeeded: the only way back is raft_close, which is
     * asynchronous; run the loop (bounded) until it is done. */
    m->raft.data = m;
    m->closing = false;
    raft_close(&m->raft, start_failed_close_cb);
    for (int i = 0; i < 1000 && !m->closing; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    raft_uv_close(&m->io);
    bl_transport_close(&m->transport);
    goto err_after_store;
err_after_io:
    raft_uv_close(&m->io);
err_after_transport:
    bl_transport_close(&m->transport);
err_after_store:
    bl_fsm_close(&m->fsm);
    bl_confguard_close(&m->confguard);
    bl_store_close(m->store);
err_after_alloc:
    member_free(m);
    return rv;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct bl_member *m = h->data;
    if (--m->handles_open == 0) {
        void (*cb)(void *) = m->close_cb;
        void *arg = m->close_arg;
        member_free(m);
        if (cb != NULL) {
            cb(arg);
        }
    }
}

static void raft_closed_cb(struct raft *r)
{
    struct bl_member *m = r->data;

    if (m->stop_cb != NULL) {
        m->stop_cb(m->stop_arg); /* callers stop using @m from here on */
    }

    raft_uv_close(&m->io);
    bl_transport_close(&m->transport);
    /* Never submitted: a definite refusal. */
    {
        struct proposal *ps[GROUP_MAX];
        unsigned n = m->n_queued;
        memcpy(ps, m->queue, n * sizeof ps[0]);
        m->n_queued = 0;
        m->queued_bytes = 0;
        refuse_queued(m, ps, n, BL_ESHUTDOWN);
    }
    /* Raft answers pending requests when it closes; anything left is unknown. */
    expire_proposals(m, true);
    while (m->proposals != NULL) {
        struct proposal *p = m->proposals;
        proposal_unlink(m, p);
        free(p);
    }
    reads_complete(&m->reads_inflight, BL_ESHUTDOWN);
    reads_complete(&m->reads_next, BL_ESHUTDOWN);
    bl_fsm_close(&m->fsm);
    bl_confguard_close(&m->confguard);
    bl_store_close(m->store);
    m->store = NULL;
    BL_INFO("member %" PRIu64 ": raft closed", m->id);
    uv_close((uv_handle_t *)&m->watch, handle_closed_cb);
    uv_close((uv_handle_t *)&m->flush, handle_closed_cb);
}

static void do_close(struct bl_member *m)
{
    if (m->async_pending > 0) {
        /* A snapshot copy is running: raft must outlive its callback. */
        m->close_requested = true;
        return;
    }
    m->close_requested = false;
    uv_timer_stop(&m->watch);
    reads_complete(&m->reads_next, BL_ESHUTDOWN);
    raft_close(&m->raft, raft_closed_cb);
}

static void transfer_cb(struct raft_transfer *req)
{
    struct bl_member *m = req->data;
    raft_id leader;
    const char *addr;
    raft_leader(&m->raft, &leader, &addr);
    BL_INFO("member %" PRIu64 ": leadership transfer done, leader now %llu", m->id, leader);
    do_close(m);
}

/* The voter (other than us) with the highest match index, or 0. */
static raft_id best_transfer_target(struct bl_member *m)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    raft_id best = 0;
    raft_index best_match = 0;
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        raft_index match = m->raft.leader_state.progress[i].match_index;
        if (s->id != m->id && s->role == RAFT_VOTER && (best == 0 || match > best_match)) {
            best = s->id;
            best_match = match;
        }
    }
    return best;
}

void bl_member_close(struct bl_member *m, void (*cb)(void *arg), void *arg)
{
    raft_id target;

    if (m->closing) {
        return;
    }
    m->closing = true;
    m->close_cb = cb;
    m->close_arg = arg;
    if (m->transferring) {
        return; /* user_transfer_cb finishes the close */
    }
    if (raft_state(&m->raft) == RAFT_LEADER && (target = best_transfer_target(m)) != 0) {
        m->transfer.data = m;
        if (raft_transfer(&m->raft, &m->transfer, target, transfer_cb) == 0) {
            m->transfer_to = target;
            BL_INFO("member %" PRIu64 ": handing leadership to %llu before closing", m->id, target);
            return;
        }
    }
    do_close(m);
}
