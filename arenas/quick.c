/*
 * quick.c - the quick lists: blocks up to QUICK_MAX_BLOCK that came back
 * from thread caches or remote frees, parked per class without coalescing
 * so that a batch moves between a bin and its arena as a list splice; and
 * their release into the free lists, a run of neighbours at a time. Lock
 * held throughout.
 */
#include "engine.h"

/* Releases the allocated blocks that tile [lo, lo + size), n of them, as
 * one: lo's head becomes the run's (keeping lo's previous-in-use bit), so
 * the run enters the index once, coalesced with its free neighbours, and
 * the heads inside it become free space. */
static void run_release(struct arena *a, struct block *lo, size_t size, uint32_t n)
{
    if (n > 1)
        hd_set(lo, size | B_INUSE | (hd_get(lo) & B_PREV_INUSE));
    block_release(a, lo);
}

/* Releases the count blocks linked from p (allocated, keyed), as free would.
 * A list of blocks carved in one batch and freed in order holds runs of
 * neighbours, one after another in either direction: each run is released
 * whole instead of block by block, each of which would leave the index and
 * join it again grown by one block (bench/NOTES.md, "Tuning constants"). */
static void blocks_release(struct arena *a, void *p, uint32_t count)
{
    struct block *lo = NULL;
    size_t run = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        void *next = link_raw(p);
        link_check(p, next, PAGEMAP_CHUNK + (int)a->index);
        ((uintptr_t *)p)[1] = 0;
        struct block *b = block_of(p);
        size_t size = block_size(b);
        if (n != 0 && (char *)b == (char *)lo + run) {
            run += size;
            n++;
        } else if (n != 0 && (char *)b + size == (char *)lo) {
            lo = b;
            run += size;
            n++;
        } else {
            if (n != 0)
                run_release(a, lo, run, n);
            lo = b;
            run = size;
            n = 1;
        }
        p = next;
    }
    if (n != 0)
        run_release(a, lo, run, n);
}

/* Coalesces the first segment of quick list cls into the free lists. */
static void segment_release(struct arena *a, unsigned cls)
{
    struct qlist *q = &a->quick[cls];
    void *h = q->head;
    uint32_t k = seg_count(h);
    size_t bytes = seg_bytes(h, cls);
    /* The record goes with the first block's release (it may become a free
     * block's footer): read it first. */
    q->head = seg_next(h);
    q->count -= k;
    q->bytes -= bytes;
    a->quick_blocks -= k;
    a->quick_bytes -= bytes;
    a->in_use += bytes; /* parked blocks are not in use; block_release takes them off */
    /* The releases must not start a purge, which would consolidate the
     * lists. */
    int was = a->reclaiming;
    a->reclaiming = 1;
    blocks_release(a, h, k);
    a->reclaiming = was;
}

/* Coalesces the blocks of quick list cls into the free lists. */
static void quick_release(struct arena *a, unsigned cls)
{
    while (a->quick[cls].head != NULL)
        segment_release(a, cls);
}

int arena_release_segment(struct arena *a, unsigned *cls)
{
    unsigned c = *cls;
    while (c > 0 && a->quick[c - 1].head == NULL)
        c--;
    *cls = c;
    if (c == 0)
        return 0;
    segment_release(a, c - 1);
    return 1;
}

void arena_release_unasked(struct arena *a)
{
    for (unsigned c = 0; c < QUICK_CLASSES; c++)
        if (a->quick[c].head != NULL && a->quick[c].asked != a->release_epoch)
            quick_release(a, c);
    a->release_epoch++;
}

void arena_release_cached(struct arena *a, void *head, uint32_t count)
{
    blocks_release(a, head, count);
}

void arena_quick_put(struct arena *a, unsigned cls, void *head, uint32_t count, size_t bytes, int idle)
{
    if (idle) {
        a->idle_releases += count;
        if (a->retain_ms == 0) {
            blocks_release(a, head, count);
            return;
        }
    }
    quick_push(a, cls, head, count, bytes);
    if (ma_unlikely(quick_over(a)))
        arena_consolidate(a);
}

/* The last of the k blocks of a segment of arena a. */
static void *seg_last(const struct arena *a, void *h, uint32_t k)
{
    for (uint32_t i = 1; i < k; i++) {
        void *next = link_raw(h);
        link_check(h, next, PAGEMAP_CHUNK + (int)a->index);
        h = next;
    }
    return h;
}

unsigned arena_quick_take(struct arena *a, unsigned cls, unsigned n, void **head)
{
    struct qlist *q = &a->quick[cls];
    q->asked = a->release_epoch;
    if (q->head == NULL || n == 0)
        return 0;
    /* Whole segments while they fit in n, and always the first. Each is
     * linked to what follows it (the next taken, or the list *head) by
     * walking to its last block, none to walk in a segment of one block as
     * a drain parks them: a refill of an empty bin that takes one segment
     * walks nothing. */
    void *first = q->head, *prev = NULL;
    uint32_t prev_k = 0;
    size_t bytes = 0;
    unsigned got = 0;
    while (q->head != NULL && (got == 0 || got + seg_count(q->head) <= n)) {
        void *h = q->head;
        uint32_t k = seg_count(h);
        got += k;
        bytes += seg_bytes(h, cls);
        q->head = seg_next(h);
        if (prev != NULL)
            link_set(seg_last(a, prev, prev_k), h);
        prev = h;
        prev_k = k;
    }
    q->count -= got;
    q->bytes -= bytes;
    /* An empty list needs no walk: the last segment already ends it. */
    if (*head != LIST_END)
        link_set(seg_last(a, prev, prev_k), *head);
    *head = first;
    a->quick_blocks -= got;
    a->quick_bytes -= bytes;
    a->in_use += bytes;
    if (a->in_use > a->peak_in_use)
        a->peak_in_use = a->in_use;
    return got;
}

void arena_consolidate(struct arena *a)
{
    a->grow_cut = 0;
    for (unsigned c = 0; c < QUICK_CLASSES; c++)
        if (a->quick[c].head != NULL)
            quick_release(a, c);
}
