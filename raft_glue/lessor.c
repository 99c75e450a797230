/* The lessor's hash table (see lessor.h). */
#include "lessor.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static size_t slot_of(const struct bl_lessor *l, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 17) & (l->cap - 1);
}

uint64_t bl_lessor_deadline(uint64_t now, uint64_t ttl)
{
    if (ttl > (UINT64_MAX - now) / 1000) {
        return UINT64_MAX;
    }
    return now + ttl * 1000;
}

void bl_lessor_init(struct bl_lessor *l)
{
    memset(l, 0, sizeof *l);
}

void bl_lessor_free(struct bl_lessor *l)
{
    free(l->slots);
    memset(l, 0, sizeof *l);
}

void bl_lessor_clear(struct bl_lessor *l)
{
    if (l->slots != NULL) {
        memset(l->slots, 0, l->cap * sizeof *l->slots);
    }
    l->count = 0;
}

struct bl_lessor_entry *bl_lessor_find(struct bl_lessor *l, uint64_t id)
{
    if (l->cap == 0 || id == 0) {
        return NULL;
    }
    for (size_t i = slot_of(l, id);; i = (i + 1) & (l->cap - 1)) {
        if (l->slots[i].id == id) {
            return &l->slots[i];
        }
        if (l->slots[i].id == 0) {
            return NULL;
        }
    }
}

static int grow(struct bl_lessor *l)
{
    size_t cap = l->cap == 0 ? 64 : l->cap * 2;
    struct bl_lessor_entry *old = l->slots;
    size_t old_cap = l->cap;
    struct bl_lessor_entry *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        return BL_ENOMEM;
    }
    l->slots = slots;
    l->cap = cap;
    for (size_t j = 0; j < old_cap; j++) {
        if (old[j].id != 0) {
            size_t i = slot_of(l, old[j].id);
            while (l->slots[i].id != 0) {
                i = (i + 1) & (cap - 1);
            }
            l->slots[i] = old[j];
        }
    }
    free(old);
    return BL_OK;
}

int bl_lessor_set(struct bl_lessor *l, uint64_t id, uint64_t ttl, uint64_t deadline)
{
    struct bl_lessor_entry *e = bl_lessor_find(l, id);
    if (id == 0) {
        return BL_EBADREQ;
    }
    if (e == NULL) {
        if ((l->count + 1) * 4 > l->cap * 3 && grow(l) != BL_OK) {
            return BL_ENOMEM;
        }
        size_t i = slot_of(l, id);
        while (l->slots[i].id != 0) {
            i = (i + 1) & (l->cap - 1);
        }
        e = &l->slots[i];
        e->id = id;
        l->count++;
    }
    e->ttl = ttl;
    e->deadline = deadline;
    e->revoking = false;
    return BL_OK;
}

void bl_lessor_del(struct bl_lessor *l, uint64_t id)
{
    struct bl_lessor_entry *e = bl_lessor_find(l, id);
    if (e == NULL) {
        return;
    }
    /* Backward-shift deletion keeps every probe chain unbroken. */
    size_t i = (size_t)(e - l->slots);
    size_t j = i;
    for (;;) {
        j = (j + 1) & (l->cap - 1);
        if (l->slots[j].id == 0) {
            break;
        }
        size_t k = slot_of(l, l->slots[j].id);
        /* move j to i unless k lies cyclically in (i, j] */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            l->slots[i] = l->slots[j];
            i = j;
        }
    }
    memset(&l->slots[i], 0, sizeof l->slots[i]);
    l->count--;
}

void bl_lessor_promote(struct bl_lessor *l, uint64_t now)
{
    for (size_t i = 0; i < l->cap; i++) {
        if (l->slots[i].id != 0) {
            l->slots[i].deadline = bl_lessor_deadline(now, l->slots[i].ttl);
            l->slots[i].revoking = false;
        }
    }
}

size_t bl_lessor_expired(struct bl_lessor *l, uint64_t now, uint64_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < l->cap && n < max; i++) {
        const struct bl_lessor_entry *e = &l->slots[i];
        if (e->id != 0 && !e->revoking && e->deadline != 0 && e->deadline <= now) {
            ids[n++] = e->id;
        }
    }
    return n;
}
