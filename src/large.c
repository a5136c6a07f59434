/*
 * large.c - blocks at or above the mmap threshold, each in a mapping of its
 * own: mmap to allocate, munmap to free, mremap to resize (the kernel moves
 * page tables, never bytes). A list of live mappings, under one lock taken
 * only around list edits, lets ma_check and the statistics see them all.
 */
#include <errno.h>
#include <string.h>

#include "large.h"
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

#define LARGE_CACHE_SLOTS 8
#define LARGE_CACHE_BYTES ((size_t)16 << 20)
/* Of the cached mappings, at most this much stays resident; the pages of
 * the others are discarded when they are cached (all but the header's), so
 * a reuse still saves the mmap/munmap pair and the address-space work but
 * faults its pages in as a fresh mapping would, and a big freed block does
 * not stay resident while it is cached (test
 * large::big_cached_mappings_give_their_pages_back). */
#define LARGE_CACHE_RESIDENT ((size_t)4 << 20)
static struct large *cache[LARGE_CACHE_SLOTS]; /* guarded by large_lock */
static size_t cache_bytes;                      /* guarded by large_lock */
static size_t cache_resident;                   /* guarded by large_lock */

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

/* A cached mapping of map_size to map_size + 25%, removed from the cache,
 * or NULL. */
static struct large *cache_take(size_t map_size)
{
    struct large *found = NULL;
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
        struct large *l = cache[i];
        if (l != NULL && l->map_size >= map_size && l->map_size - map_size <= map_size / 4 &&
            (found == NULL || l->map_size < found->map_size))
            found = l;
    }
    if (found != NULL) {
        for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++)
            if (cache[i] == found)
                cache[i] = NULL;
        cache_bytes -= found->map_size;
        cache_resident -= found->resident;
        large_reuses++;
    }
    ma_lock_release(&large_lock);
    return found;
}

/* A free slot of the cache if `size` more bytes fit its bound, else -1.
 * large_lock held. */
static int cache_slot(size_t size)
{
    if (cache_bytes + size > LARGE_CACHE_BYTES)
        return -1;
    for (int i = 0; i < LARGE_CACHE_SLOTS; i++)
        if (cache[i] == NULL)
            return i;
    return -1;
}

/* Keeps a freed mapping if it fits the cache's bounds, its pages resident
 * while the cache's resident bytes allow. Returns 1 if kept. */
static int cache_put(struct large *l)
{
    if (l->offset != LARGE_HDR)
        return 0;
    size_t size = l->map_size;
    ma_lock_acquire(&large_lock);
    int i = cache_slot(size);
    if (i >= 0 && cache_resident + size > LARGE_CACHE_RESIDENT) {
        /* Discarded outside the lock (nobody else can reach the mapping
         * before it is cached; a second free of it meanwhile finds the
         * cached magic), then a slot is looked for again. */
        l->magic = LARGE_CACHED_MAGIC ^ (uintptr_t)l;
        l->resident = 0;
        ma_lock_release(&large_lock);
        os_discard((char *)l + MA_PAGE_SIZE, size - MA_PAGE_SIZE);
        ma_lock_acquire(&large_lock);
        i = cache_slot(size);
    } else {
        l->resident = size;
    }
    if (i >= 0) {
        cache[i] = l;
        cache_bytes += size;
        cache_resident += l->resident;
        /* A second free of it must still be caught: a distinct magic, and
         * the pagemap keeps the granule as ours. */
        l->magic = LARGE_CACHED_MAGIC ^ (uintptr_t)l;
    }
    ma_lock_release(&large_lock);
    return i >= 0;
}

size_t large_trim(void)
{
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned n = 0;
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
        if (cache[i] != NULL)
            drop[n++] = cache[i];
        cache[i] = NULL;
    }
    cache_bytes = 0;
    cache_resident = 0;
    ma_lock_release(&large_lock);
    size_t released = 0;
    for (unsigned i = 0; i < n; i++) {
        released += drop[i]->map_size;
        drop[i]->magic = 0;
        pagemap_set((uintptr_t)drop[i], MA_REGION_SIZE, PAGEMAP_FREED);
        large_unmap(drop[i], drop[i]->map_size);
        count_map(0);
    }
    return released;
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
    if (offset == LARGE_HDR) {
        struct large *l = cache_take(map_size);
        if (l != NULL) {
            l->magic = LARGE_MAGIC ^ (uintptr_t)l;
            list_add(l);
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
    if (cache_put(l))
        return;
    size_t size = l->map_size;
    l->magic = 0;
    pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
    large_unmap(l, size);
    count_map(0);
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
    size_t held = 0, resident = 0;
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
        const struct large *l = cache[i];
        if (l == NULL)
            continue;
        if (l->magic != (LARGE_CACHED_MAGIC ^ (uintptr_t)l) || pagemap_get((uintptr_t)l) != PAGEMAP_LARGE)
            ma_fatal("ma_check", "corrupted cached large mapping", l);
        if (l->resident != 0 && l->resident != l->map_size)
            ma_fatal("ma_check", "corrupted cached large mapping", l);
        held += l->map_size;
        resident += l->resident;
    }
    if (held != cache_bytes || resident != cache_resident || resident > LARGE_CACHE_RESIDENT)
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
