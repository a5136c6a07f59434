/*
 * large.c - blocks at or above the mmap threshold, each in a mapping of its
 * own: mmap to allocate, munmap to free, mremap to resize (the kernel moves
 * page tables, never bytes). A list of live mappings, under one lock taken
 * only around list edits, lets ma_check and the statistics see them all.
 */
#include <errno.h>
#include <string.h>

#include "large.h"
#include "config.h"
#include "process.h"
#include "decay.h"
#include "../base/error.h"
#include "../base/lock.h"
#include "../base/os.h"
#include "../base/pagemap.h"

#define LARGE_HDR ((size_t)64)

/* Unmaps [p, p + size); the kernel refuses only a range that is not
 * ours, which means a corrupted header. */
static void large_unmap(void *p, size_t size)
{
    if (os_unmap(p, size) != 0)
        ma_fatal("munmap", "kernel would not unmap a region (corrupted size?)", p);
}

static struct ma_lock large_lock; /* zero: free */
static struct large *large_list;   /* guarded by large_lock */
static size_t large_count;         /* guarded by large_lock */
static size_t large_bytes;         /* guarded by large_lock */
static size_t large_peak;          /* guarded by large_lock */
static uint64_t large_maps;        /* guarded by large_lock */
static uint64_t large_unmaps;      /* guarded by large_lock */
static uint64_t large_reuses;      /* guarded by large_lock */

/* The cache of freed mappings. A freed mapping of the default alignment
 * is kept whole, its pages resident, so that a later large request reuses
 * it without mmap, page faults or the kernel's zeroing: one of about the
 * size as it is, a bigger one cut down, a smaller one grown by mremap (only
 * its new pages fault). A mapping that has gone unused for
 * MEMALLOC_RETAIN_MS is unmapped (large_decay, called by every large
 * operation and by the background purger), and the cache never holds more
 * than LARGE_CACHE_SLOTS mappings or cache_cap() bytes. With
 * MEMALLOC_RETAIN_MS=0 nothing is kept (bench/NOTES.md, "Retained
 * memory"). */
#define LARGE_CACHE_SLOTS 16
#define LARGE_CACHE_MIN ((size_t)32 << 20)
static struct large *cache[LARGE_CACHE_SLOTS]; /* guarded by large_lock */
static size_t cache_bytes;                      /* guarded by large_lock */

/* Bytes the cache may hold: an eighth of what is live on this path, and at
 * least LARGE_CACHE_MIN. large_lock held. */
static size_t cache_cap(void)
{
    return large_bytes / 8 > LARGE_CACHE_MIN ? large_bytes / 8 : LARGE_CACHE_MIN;
}

static void list_add(struct large *l)
{
    ma_lock_acquire(&large_lock);
    l->prev = NULL;
    l->next = large_list;
    if (large_list != NULL)
        large_list->prev = l;
    large_list = l;
    large_count++;
    large_bytes += l->map_size;
    if (large_bytes > large_peak)
        large_peak = large_bytes;
    ma_lock_release(&large_lock);
}

static void list_remove(struct large *l)
{
    ma_lock_acquire(&large_lock);
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        large_list = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    large_count--;
    large_bytes -= l->map_size;
    ma_lock_release(&large_lock);
}

/* Registers a mapping at `l` in the pagemap and the list. */
static int large_publish(struct large *l, size_t map_size, size_t offset)
{
    l->magic = LARGE_MAGIC ^ (uintptr_t)l;
    l->map_size = map_size;
    l->offset = offset;
    if (pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_LARGE) != 0)
        return -1;
    list_add(l);
    return 0;
}


static void count_map(int map)
{
    ma_lock_acquire(&large_lock);
    if (map)
        large_maps++;
    else
        large_unmaps++;
    ma_lock_release(&large_lock);
}

/* Removes cache slot i. large_lock held. */
static struct large *cache_remove(unsigned i)
{
    struct large *l = cache[i];
    cache[i] = NULL;
    cache_bytes -= l->map_size;
    return l;
}

/* The cached mapping that best serves map_size bytes, removed from the
 * cache: the smallest at least that big, else the biggest at least half
 * that big (to be grown), else NULL. */
static struct large *cache_take(size_t map_size)
{
    int fit = -1, grow = -1;
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
        struct large *l = cache[i];
        if (l == NULL)
            continue;
        if (l->map_size >= map_size) {
            if (fit < 0 || l->map_size < cache[fit]->map_size)
                fit = (int)i;
        } else if (l->map_size >= map_size / 2 && (grow < 0 || l->map_size > cache[grow]->map_size)) {
            grow = (int)i;
        }
    }
    struct large *l = NULL;
    if (fit >= 0 || grow >= 0) {
        l = cache_remove((unsigned)(fit >= 0 ? fit : grow));
        large_reuses++;
    }
    ma_lock_release(&large_lock);
    return l;
}

/* Unmaps mapping l, which nobody can reach any more. */
static void mapping_drop(struct large *l)
{
    size_t size = l->map_size;
    l->magic = 0;
    pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
    large_unmap(l, size);
    count_map(0);
}

/* Keeps a freed mapping if retention is on and it fits the cache's bounds,
 * making room by dropping the oldest entries. Returns 1 if kept. */
static int cache_put(struct large *l)
{
    if (l->offset != LARGE_HDR || ma_cfg.retain_ms == 0)
        return 0;
    size_t size = l->map_size;
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned n = 0;
    int slot = -1;
    ma_lock_acquire(&large_lock);
    size_t cap = cache_cap();
    if (size <= cap) {
        /* Room by age: the oldest entries go first. */
        for (;;) {
            int oldest = -1;
            slot = -1;
            for (int i = 0; i < LARGE_CACHE_SLOTS; i++) {
                if (cache[i] == NULL)
                    slot = i;
                else if (oldest < 0 || cache[i]->cached_ms < cache[oldest]->cached_ms)
                    oldest = i;
            }
            if (slot >= 0 && cache_bytes + size <= cap)
                break;
            drop[n++] = cache_remove((unsigned)oldest);
        }
        /* A second free of it must still be caught: a distinct magic, and
         * the pagemap keeps the granule as ours. */
        l->magic = LARGE_CACHED_MAGIC ^ (uintptr_t)l;
        l->cached_ms = os_now_ms();
        cache[slot] = l;
        cache_bytes += size;
    }
    ma_lock_release(&large_lock);
    for (unsigned i = 0; i < n; i++)
        mapping_drop(drop[i]);
    return slot >= 0;
}

/* Unmaps the cached mappings unused for retain_ms (all of them with
 * `all`); returns the bytes released. */
static size_t cache_release(int all)
{
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned n = 0;
    uint64_t now = all ? 0 : os_now_ms();
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++)
        if (cache[i] != NULL && (all || now - cache[i]->cached_ms >= ma_cfg.retain_ms))
            drop[n++] = cache_remove(i);
    ma_lock_release(&large_lock);
    size_t released = 0;
    for (unsigned i = 0; i < n; i++) {
        released += drop[i]->map_size;
        mapping_drop(drop[i]);
    }
    return released;
}

void large_decay(void)
{
    if (__atomic_load_n(&cache_bytes, __ATOMIC_RELAXED) != 0)
        cache_release(0);
}

size_t large_trim(void)
{
    return cache_release(1);
}

/* A cached mapping made to serve map_size bytes: a bigger one is cut at the
 * first granule boundary past map_size and its tail cached on its own (its
 * pages stay resident for the next request), or, when the tail would be
 * under a granule, cut to within a quarter of map_size and its tail
 * unmapped; a smaller one grown by mremap
 * (which may move it); then registered live again. NULL if it could not be
 * grown (it is unmapped then). */
static struct large *cache_reuse(struct large *l, size_t map_size)
{
    size_t have = l->map_size;
    size_t cut = MA_ALIGN_UP(map_size, MA_REGION_SIZE);
    if (have >= cut + MA_REGION_SIZE) {
        struct large *tail = (struct large *)((char *)l + cut);
        tail->map_size = have - cut;
        tail->offset = LARGE_HDR;
        if (pagemap_set((uintptr_t)tail, MA_REGION_SIZE, PAGEMAP_LARGE) != 0)
            ma_fatal("malloc", "cannot register a cached large mapping", tail);
        count_map(1);
        have = cut;
        if (!cache_put(tail))
            mapping_drop(tail);
    } else if (have > map_size + map_size / 4) {
        /* Too small a tail to cache on its own: it goes back. */
        large_unmap((char *)l + map_size, have - map_size);
        have = map_size;
    } else if (have < map_size) {
        /* The old slot is marked freed before the kernel can give its range
         * up (see large_realloc). */
        pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
        struct large *m = os_remap(l, have, map_size, MA_REGION_SIZE);
        if (m == NULL) {
            large_unmap(l, have);
            count_map(0);
            return NULL;
        }
        l = m;
        have = map_size;
    }
    if (large_publish(l, have, LARGE_HDR) != 0)
        ma_fatal("malloc", "cannot register a reused large block", l);
    return l;
}

void *large_alloc(size_t n, size_t align, int zero)
{
    size_t offset = LARGE_HDR;
    if (align > offset)
        offset = align <= MA_REGION_SIZE ? align : MA_REGION_SIZE;
    if (n > MA_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    size_t map_size = MA_ALIGN_UP(offset + n, MA_PAGE_SIZE);
    process_note_allocation();
    large_decay();
    if (offset == LARGE_HDR) {
        struct large *l = cache_take(map_size);
        if (l != NULL && (l = cache_reuse(l, map_size)) != NULL) {
            void *p = (char *)l + offset;
            if (zero)
                memset(p, 0, n);
            return p;
        }
    }
    char *base;
    if (align <= MA_REGION_SIZE) {
        base = os_map_aligned(map_size, MA_REGION_SIZE);
        if (base == NULL)
            goto fail;
    } else {
        /* The payload must sit on an `align` boundary with the header one
         * granule before it: map align + n aligned to align, then cut off
         * everything before payload - MA_REGION_SIZE. */
        char *raw = os_map_aligned(align + n, align);
        if (raw == NULL)
            goto fail;
        base = raw + align - MA_REGION_SIZE;
        large_unmap(raw, (size_t)(base - raw));
        map_size = MA_ALIGN_UP(MA_REGION_SIZE + n, MA_PAGE_SIZE);
        size_t tail = (align + MA_ALIGN_UP(n, MA_PAGE_SIZE)) - (size_t)(base - raw) - map_size;
        if (tail)
            large_unmap(base + map_size, tail);
    }
    struct large *l = (struct large *)base;
    if (large_publish(l, map_size, offset) != 0) {
        large_unmap(base, map_size);
        goto fail;
    }
    count_map(1);
    return base + offset;
fail:
    errno = ENOMEM;
    return NULL;
}

struct large *large_lookup(const void *p, const char *fn)
{
    uintptr_t q = (uintptr_t)p - 1;
    int kind = pagemap_get(q);
    if (ma_unlikely(kind != PAGEMAP_LARGE)) {
        if (kind == PAGEMAP_FREED)
            ma_fatal(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected (memory already returned to the OS)"
                                                      : "pointer to memory already freed",
                     p);
        ma_fatal(fn, "invalid pointer (not allocated by memalloc)", p);
    }
    struct large *l = (struct large *)(q & ~(uintptr_t)(MA_REGION_SIZE - 1));
    if (ma_unlikely(l->magic != (LARGE_MAGIC ^ (uintptr_t)l))) {
        if (l->magic == (LARGE_CACHED_MAGIC ^ (uintptr_t)l))
            ma_fatal(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected" : "pointer to memory already freed", p);
        ma_fatal(fn, "corrupted large-block header", p);
    }
    if (ma_unlikely((uintptr_t)p != (uintptr_t)l + l->offset))
        ma_fatal(fn, "invalid pointer (inside a large block)", p);
    return l;
}

void large_free(struct large *l)
{
    list_remove(l);
    large_decay();
    if (!cache_put(l))
        mapping_drop(l);
    else
        decay_wake(1);
}

void *large_realloc(struct large *l, size_t n)
{
    if (n > MA_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    size_t offset = l->offset;
    size_t new_size = MA_ALIGN_UP(offset + n, MA_PAGE_SIZE);
    if (new_size == l->map_size)
        return (char *)l + offset;
    if (new_size < l->map_size) {
        /* map_size changes under the lock that guards the totals, so
         * large_check never sees one without the other. */
        size_t old_size = l->map_size;
        ma_lock_acquire(&large_lock);
        large_bytes -= old_size - new_size;
        l->map_size = new_size;
        ma_lock_release(&large_lock);
        large_unmap((char *)l + new_size, old_size - new_size);
        return (char *)l + offset;
    }
    list_remove(l);
    /* The old slot is marked freed before the kernel can give its range up:
     * marked after, it could overwrite the registration of whatever another
     * thread maps there in between (found by tests/fuzz). */
    pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
    struct large *m = os_remap(l, l->map_size, new_size, MA_REGION_SIZE);
    if (m == NULL) {
        pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_LARGE);
        list_add(l);
        errno = ENOMEM;
        return NULL;
    }
    if (large_publish(m, new_size, offset) != 0) {
        /* Only an address outside the pagemap's range could fail; the
         * block is unreachable without it, so this is fatal, not a leak. */
        ma_fatal("realloc", "cannot register a moved large block", m);
    }
    return (char *)m + offset;
}

void large_check(void)
{
    ma_lock_acquire(&large_lock);
    size_t n = 0, bytes = 0;
    const struct large *prev = NULL;
    for (const struct large *l = large_list; l != NULL; prev = l, l = l->next) {
        if (l->magic != (LARGE_MAGIC ^ (uintptr_t)l) || l->prev != prev)
            ma_fatal("ma_check", "corrupted large-block header or list", l);
        if (((uintptr_t)l & (MA_REGION_SIZE - 1)) || pagemap_get((uintptr_t)l) != PAGEMAP_LARGE)
            ma_fatal("ma_check", "large block not aligned or not registered", l);
        if (l->offset < LARGE_HDR || l->offset > MA_REGION_SIZE || l->offset > l->map_size ||
            (l->map_size & (MA_PAGE_SIZE - 1)))
            ma_fatal("ma_check", "large block has impossible sizes", l);
        if (++n > large_count)
            ma_fatal("ma_check", "large list longer than its count (cycle?)", l);
        bytes += l->map_size;
    }
    if (n != large_count || bytes != large_bytes)
        ma_fatal("ma_check", "large-block totals disagree with the list", NULL);
    size_t held = 0;
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
        const struct large *l = cache[i];
        if (l == NULL)
            continue;
        if (l->magic != (LARGE_CACHED_MAGIC ^ (uintptr_t)l) || pagemap_get((uintptr_t)l) != PAGEMAP_LARGE ||
            l->offset != LARGE_HDR || (l->map_size & (MA_PAGE_SIZE - 1)))
            ma_fatal("ma_check", "corrupted cached large mapping", l);
        held += l->map_size;
    }
    if (held != cache_bytes)
        ma_fatal("ma_check", "large cache bytes disagree with its slots", NULL);
    ma_lock_release(&large_lock);
}

void large_totals(struct large_totals *t)
{
    ma_lock_acquire(&large_lock);
    t->live = large_count;
    t->bytes = large_bytes;
    t->peak_bytes = large_peak;
    t->maps = large_maps;
    t->unmaps = large_unmaps;
    t->reuses = large_reuses;
    t->cached = 0;
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++)
        t->cached += cache[i] != NULL;
    t->cached_bytes = cache_bytes;
    ma_lock_release(&large_lock);
}

void large_each(void (*fn)(void *ctx, const struct large *l), void *ctx, size_t max)
{
    ma_lock_acquire(&large_lock);
    size_t n = 0;
    for (const struct large *l = large_list; l != NULL && n < max; l = l->next, n++)
        fn(ctx, l);
    ma_lock_release(&large_lock);
}

void large_lock_all(void)
{
    ma_lock_acquire(&large_lock);
}

void large_unlock_all(void)
{
    ma_lock_release(&large_lock);
}
