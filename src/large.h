/*
 * large.h - the large-object path: requests at or above the mmap threshold
 * get a mapping of their own, with no arena and no arena lock.
 */
#ifndef MA_LARGE_H
#define MA_LARGE_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

/* The header at the start of every large mapping. Mappings start on a
 * MA_REGION_SIZE boundary and the payload lies within the first granule's
 * reach ((payload - 1) rounds down to the header), so any pointer can be
 * checked through the pagemap before the header is read. */
struct large {
    uint64_t magic;        /* set at map/remap: LARGE_MAGIC ^ address */
    size_t map_size;       /* bytes mapped from the header on */
    size_t offset;         /* payload - header: 64 .. MA_REGION_SIZE */
    struct large *next;    /* guarded by large_lock */
    struct large *prev;    /* guarded by large_lock */
    uint64_t cached_ms;    /* guarded by large_lock, while cached: when it was freed */
    int sampled;           /* owned by the block's holder: 1 if the profiler sampled it */
};

#define LARGE_MAGIC ((uint64_t)0x4c617267e0b1ec75ull)
#define LARGE_CACHED_MAGIC ((uint64_t)0x6361636865644c67ull)

/* Serves a block of n bytes aligned to `align` (0 or <= 16: default) from a
 * cached mapping of a close size or a fresh one; zeroed when `zero` (a fresh
 * mapping already is, so only a reused one is cleared). NULL + ENOMEM on
 * failure. */
MA_HIDDEN void *large_alloc(size_t n, size_t align, int zero);
/* Validates that p is a live large block; aborts naming fn otherwise. */
MA_HIDDEN struct large *large_lookup(const void *p, const char *fn);
MA_HIDDEN void large_free(struct large *l);
/* Resizes in place or by mremap (pages move, no copy). NULL + ENOMEM on
 * failure, the block intact. */
MA_HIDDEN void *large_realloc(struct large *l, size_t n);
static inline size_t large_usable(const struct large *l) { return l->map_size - l->offset; }
/* Verifies every live large mapping; aborts on a violation. */
MA_HIDDEN void large_check(void);
/* Unmaps the cached mappings that went unused for MEMALLOC_RETAIN_MS. */
MA_HIDDEN void large_decay(void);
/* Unmaps every cached mapping; returns the bytes released. */
MA_HIDDEN size_t large_trim(void);
/* Figures of the large-object path. */
struct large_totals {
    size_t live, bytes, peak_bytes;
    uint64_t maps, unmaps, reuses;
    size_t cached, cached_bytes;
};
MA_HIDDEN void large_totals(struct large_totals *t);
/* Calls fn for up to `max` live large blocks, under the list lock (fn must
 * not allocate). */
MA_HIDDEN void large_each(void (*fn)(void *ctx, const struct large *l), void *ctx, size_t max);
/* fork support: take and release the large-list lock. */
MA_HIDDEN void large_lock_all(void);
MA_HIDDEN void large_unlock_all(void);

#endif /* MA_LARGE_H */
