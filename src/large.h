/*
 * large.h - the large-object path: requests at or above the mmap threshold
 * get a mapping of their own, with no arena and no arena lock.
 */
#ifndef MA_LARGE_H
#define MA_LARGE_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

/* Where, inside a large mapping, another kernel mapping (VMA) begins. A
 * block assembled from cached pieces (src/large.c) spans one kernel mapping
 * per piece and one for its fresh pages: the kernel does not merge pages
 * moved in from different mappings. mremap resizes only within one kernel
 * mapping, so moving such a block moves it one kernel mapping at a time.
 * At most LARGE_SEAMS seams per mapping bound that work and the kernel
 * mappings a block costs. */
#define LARGE_SEAMS 48

/* The header at the start of every large mapping. Mappings start on a
 * MA_REGION_SIZE boundary and the payload lies within the first granule's
 * reach ((payload - 1) rounds down to the header), so any pointer can be
 * checked through the pagemap before the header is read. A live block's
 * header is written before the block is published and changes afterwards
 * only under large_lock (map_size, nseams) or by its holder (sampled); a
 * cached mapping's belongs to large_lock, or to the thread that took it out
 * of the cache. */
struct large {
    uint64_t magic;        /* LARGE_MAGIC ^ address (live), LARGE_CACHED_MAGIC ^ address (cached) */
    size_t map_size;       /* bytes mapped from the header on */
    size_t offset;         /* payload - header: LARGE_HDR .. MA_REGION_SIZE */
    struct large *next;    /* guarded by large_lock */
    struct large *prev;    /* guarded by large_lock */
    uint32_t cached_ms;    /* guarded by large_lock, while cached: when it was freed (ms, wrapping) */
    uint32_t cached_seq;   /* guarded by large_lock, while cached: order of the frees (wrapping) */
    int sampled;           /* owned by the block's holder: 1 if the profiler sampled it */
    uint32_t nseams;       /* entries of seams[] */
    uint32_t seams[LARGE_SEAMS]; /* ascending page indexes (from the header) where a kernel mapping begins */
};

#define LARGE_MAGIC ((uint64_t)0x4c617267e0b1ec75ull)
#define LARGE_CACHED_MAGIC ((uint64_t)0x6361636865644c67ull)

/* Serves a block of n bytes aligned to `align` (0 or <= 16: default): cut
 * from a cached mapping big enough, else assembled from cached pieces with
 * fresh pages for the rest; zeroed when `zero` (fresh pages already are, so
 * only reused ones are cleared). NULL + ENOMEM on failure. */
MA_HIDDEN void *large_alloc(size_t n, size_t align, int zero);
/* Validates that p is a live large block; aborts naming fn otherwise. */
MA_HIDDEN struct large *large_lookup(const void *p, const char *fn);
MA_HIDDEN void large_free(struct large *l);
/* Resizes in place, or moves the block's pages into a new mapping and adds
 * cached or fresh pages (pages the kernel will not move are copied). NULL +
 * ENOMEM on failure, the block intact. */
MA_HIDDEN void *large_realloc(struct large *l, size_t n);
static inline size_t large_usable(const struct large *l) { return l->map_size - l->offset; }
/* Verifies every live large mapping; aborts on a violation. */
MA_HIDDEN void large_check(void);
/* Unmaps the cached mappings that went unused for MEMALLOC_RETAIN_MS. */
MA_HIDDEN void large_decay(void);
/* Unmaps every cached mapping; returns the bytes released. */
MA_HIDDEN size_t large_trim(void);
/* Unmaps cached mappings, the longest cached first, until at least `bytes`
 * are released or none is left; returns the bytes released. An arena
 * calls it before it maps a chunk (arena_chunk_shed): memory kept for
 * large blocks that the program now asks for as small ones goes back
 * before fresh pages are added. */
MA_HIDDEN size_t large_shed(size_t bytes);
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
