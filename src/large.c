/*
 * large.c - blocks at or above the mmap threshold, each in a mapping of its
 * own. Freed mappings are cached with their pages resident, and a request is
 * cut from a cached mapping big enough or assembled: a fresh range is
 * reserved and cached pieces' pages are moved into it with mremap (the
 * kernel moves page tables: no copy, no zeroing, no faults), fresh pages
 * covering only what the cache cannot. A list of live mappings, under one
 * lock taken only around list and cache edits and never across a system
 * call, lets ma_check and the statistics see them all.
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

/* Header to payload at the default alignment: struct large and its seams. */
#define LARGE_HDR ((size_t)256)
_Static_assert(sizeof(struct large) <= LARGE_HDR, "struct large must fit before the payload");

#define PAGES(bytes) ((bytes) / MA_PAGE_SIZE)
/* Seams are 32-bit page indexes: bigger mappings are never assembled. */
#define LARGE_SEAM_MAX ((size_t)UINT32_MAX * MA_PAGE_SIZE)

/* Unmaps [p, p + size); the kernel refuses only a range that is not
 * ours, which means a corrupted header. */
static void large_unmap(void *p, size_t size)
{
    if (os_unmap(p, size) != 0)
        ma_fatal("munmap", "kernel would not unmap a region (corrupted size?)", p);
}

/* Mappings are counted as they come to be (mapped fresh, a cut tail cached
 * on its own, a block assembled) and as they end (unmapped, or moved whole
 * into an assembled block): maps - unmaps = live + cached. */
static struct ma_lock large_lock; /* zero: free */
static struct large *large_list;   /* guarded by large_lock */
static size_t large_count;         /* guarded by large_lock */
static size_t large_bytes;         /* guarded by large_lock */
static size_t large_peak;          /* guarded by large_lock */
static uint64_t large_maps;        /* guarded by large_lock */
static uint64_t large_unmaps;      /* guarded by large_lock */
static uint64_t large_reuses;      /* guarded by large_lock */
/* The most bytes live on this path in the current interval of
 * MEMALLOC_RETAIN_MS and in the one before, and when the current one began:
 * the cache's byte bound follows them. */
static size_t recent_peak[2];      /* guarded by large_lock */
static uint64_t recent_start;      /* guarded by large_lock */
static uint32_t cache_seq;         /* guarded by large_lock: frees cached so far */

/* The cache of freed mappings ("pieces"), kept with their pages resident. A
 * request takes the smallest piece big enough, cut to size (its tail cached
 * on its own); when none is, it takes pieces biggest first and moves their
 * pages into a fresh range, the last piece perhaps only its tail (its head
 * stays cached). A piece unused for MEMALLOC_RETAIN_MS is unmapped
 * (large_decay, called by every large operation and by the background
 * purger). The cache holds at most LARGE_CACHE_SLOTS pieces and cache_cap()
 * bytes and makes room by cutting the oldest piece's tail or dropping the
 * oldest pieces. With MEMALLOC_RETAIN_MS=0 nothing is kept (bench/NOTES.md,
 * "Retained memory" and "Assembled large blocks"). */
#define LARGE_CACHE_SLOTS 32
#define LARGE_CACHE_MIN ((size_t)32 << 20)
/* The smallest part worth a move, and the smallest piece kept: below it the
 * mremap costs about what faulting fresh pages does (bench/NOTES.md). */
#define LARGE_MOVE_MIN ((size_t)64 << 10)
static struct large *cache[LARGE_CACHE_SLOTS]; /* guarded by large_lock */
/* Written under large_lock, read without it by large_decay: atomic. */
static size_t cache_bytes;

/* Bytes the cache may hold: the most that was live on this path lately
 * (in this interval of MEMALLOC_RETAIN_MS or the one before), and at least
 * LARGE_CACHE_MIN; whole pages. So memory freed at the end of a peak is
 * kept for reuse until it has gone unused for an interval, while the cache
 * never holds more than the program recently had live. large_lock held. */
static size_t cache_cap(void)
{
    uint64_t now = os_now_ms();
    if (now - recent_start >= ma_cfg.retain_ms) {
        recent_peak[1] = recent_peak[0];
        recent_peak[0] = large_bytes;
        recent_start = now;
    }
    size_t peak = recent_peak[0] > recent_peak[1] ? recent_peak[0] : recent_peak[1];
    peak &= ~(MA_PAGE_SIZE - 1);
    return peak > LARGE_CACHE_MIN ? peak : LARGE_CACHE_MIN;
}

/* Adds to the live bytes. large_lock held. */
static void live_grow(size_t bytes)
{
    large_bytes += bytes;
    if (large_bytes > large_peak)
        large_peak = large_bytes;
    if (large_bytes > recent_peak[0])
        recent_peak[0] = large_bytes;
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
    live_grow(l->map_size);
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

/* Registers a block at `l` in the pagemap and the list. The whole header is
 * written: an assembled block's first page held someone else's data. */
static int large_publish(struct large *l, size_t map_size, size_t offset, const uint32_t *seams, unsigned nseams)
{
    l->magic = LARGE_MAGIC ^ (uintptr_t)l;
    l->map_size = map_size;
    l->offset = offset;
    l->sampled = 0;
    if (nseams > 0 && seams != l->seams)
        memcpy(l->seams, seams, nseams * sizeof *seams);
    l->nseams = nseams;
    if (pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_LARGE) != 0)
        return -1;
    list_add(l);
    return 0;
}

static void count_maps(unsigned maps, unsigned unmaps)
{
    ma_lock_acquire(&large_lock);
    large_maps += maps;
    large_unmaps += unmaps;
    ma_lock_release(&large_lock);
}

/* ---- seams ---- */

/* Seams of l strictly between pages lo and hi. */
static unsigned seams_between(const struct large *l, size_t lo, size_t hi)
{
    unsigned n = 0;
    for (unsigned i = 0; i < l->nseams; i++)
        n += l->seams[i] > lo && l->seams[i] < hi;
    return n;
}

/* Drops the seams at or past byte `size`, for l cut down to it. */
static void seams_cut(struct large *l, size_t size)
{
    unsigned n = 0;
    while (n < l->nseams && l->seams[n] < PAGES(size))
        n++;
    l->nseams = n;
}

/* Whether l's seams are ascending and inside it (ma_check). */
static int seams_ok(const struct large *l)
{
    if (l->nseams > LARGE_SEAMS)
        return 0;
    for (unsigned i = 0; i < l->nseams; i++)
        if (l->seams[i] == 0 || l->seams[i] >= PAGES(l->map_size) || (i > 0 && l->seams[i] <= l->seams[i - 1]))
            return 0;
    return 1;
}

/* ---- the cache ---- */

/* Removes cache slot i. large_lock held. */
static struct large *cache_remove(unsigned i)
{
    struct large *l = cache[i];
    cache[i] = NULL;
    __atomic_store_n(&cache_bytes, cache_bytes - l->map_size, __ATOMIC_RELAXED);
    return l;
}

/* Unmaps mapping l, which nobody can reach any more and which is counted
 * as unmapped already. */
static void mapping_unmap(struct large *l)
{
    size_t size = l->map_size;
    l->magic = 0;
    pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
    large_unmap(l, size);
}

/* Unmaps mapping l, which nobody can reach any more. */
static void mapping_drop(struct large *l)
{
    count_maps(0, 1);
    mapping_unmap(l);
}

/* Whether cached piece a was freed before b. */
static int freed_before(const struct large *a, const struct large *b)
{
    return (int32_t)(a->cached_seq - b->cached_seq) < 0;
}

/* The slot of the piece cached longest, or -1 if the cache is empty.
 * large_lock held. */
static int cache_oldest(void)
{
    int oldest = -1;
    for (int i = 0; i < LARGE_CACHE_SLOTS; i++)
        if (cache[i] != NULL && (oldest < 0 || freed_before(cache[i], cache[oldest])))
            oldest = i;
    return oldest;
}

/* Caches mapping l if retention is on, within the bounds: a mapping over
 * the byte bound keeps its head only, and room is made by cutting the
 * oldest piece's tail or dropping the oldest pieces. `freed`: l was just
 * freed, else it keeps the age it had in the cache. Returns 1 if kept; 0
 * and the caller unmaps it. */
static int cache_put(struct large *l, int freed)
{
    if (ma_cfg.retain_ms == 0)
        return 0;
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned ndrop = 0;
    char *trim = NULL;
    size_t trim_len = 0;
    size_t have = l->map_size;
    int slot = -1;
    ma_lock_acquire(&large_lock);
    size_t cap = cache_cap();
    size_t keep = have < cap ? have : cap;
    if (keep >= LARGE_MOVE_MIN) {
        for (;;) {
            int oldest = cache_oldest();
            slot = -1;
            for (int i = 0; i < LARGE_CACHE_SLOTS; i++)
                if (cache[i] == NULL)
                    slot = i;
            size_t excess = cache_bytes + keep > cap ? cache_bytes + keep - cap : 0;
            if (slot >= 0 && excess == 0)
                break;
            struct large *o = cache[oldest];
            if (slot >= 0 && o->map_size >= excess + LARGE_MOVE_MIN) {
                /* Its head stays cached; the tail is unmapped below. */
                o->map_size -= excess;
                seams_cut(o, o->map_size);
                __atomic_store_n(&cache_bytes, cache_bytes - excess, __ATOMIC_RELAXED);
                trim = (char *)o + o->map_size;
                trim_len = excess;
            } else {
                drop[ndrop++] = cache_remove((unsigned)oldest);
            }
        }
        /* A second free of it must still be caught: a distinct magic, and
         * the pagemap keeps the granule as ours. */
        l->magic = LARGE_CACHED_MAGIC ^ (uintptr_t)l;
        l->map_size = keep;
        seams_cut(l, keep);
        l->offset = LARGE_HDR;
        if (freed) {
            l->cached_ms = (uint32_t)os_now_ms();
            l->cached_seq = ++cache_seq;
        }
        cache[slot] = l;
        __atomic_store_n(&cache_bytes, cache_bytes + keep, __ATOMIC_RELAXED);
    }
    /* Counted under the lock that removed them, so that the figures add up
     * whenever the lock is free. */
    large_unmaps += ndrop;
    ma_lock_release(&large_lock);
    if (trim != NULL)
        large_unmap(trim, trim_len);
    for (unsigned i = 0; i < ndrop; i++)
        mapping_unmap(drop[i]);
    if (slot >= 0 && keep < have)
        large_unmap((char *)l + keep, have - keep);
    return slot >= 0;
}

/* Puts back a piece taken out of the cache and not used up (it keeps its
 * age), or unmaps it if the cache has no room now. */
static void cache_return(struct large *l)
{
    if (!cache_put(l, 0))
        mapping_drop(l);
}

/* Unmaps the cached mappings unused for retain_ms (all of them with
 * `all`); returns the bytes released. */
static size_t cache_release(int all)
{
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned n = 0;
    uint32_t now = all ? 0 : (uint32_t)os_now_ms();
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++)
        if (cache[i] != NULL && (all || (uint32_t)(now - cache[i]->cached_ms) >= ma_cfg.retain_ms))
            drop[n++] = cache_remove(i);
    large_unmaps += n;
    ma_lock_release(&large_lock);
    size_t released = 0;
    for (unsigned i = 0; i < n; i++) {
        released += drop[i]->map_size;
        mapping_unmap(drop[i]);
    }
    return released;
}

size_t large_shed(size_t bytes)
{
    struct large *drop[LARGE_CACHE_SLOTS];
    unsigned n = 0;
    size_t released = 0;
    if (__atomic_load_n(&cache_bytes, __ATOMIC_RELAXED) == 0)
        return 0;
    ma_lock_acquire(&large_lock);
    while (released < bytes) {
        int oldest = cache_oldest();
        if (oldest < 0)
            break;
        drop[n] = cache_remove((unsigned)oldest);
        released += drop[n++]->map_size;
    }
    large_unmaps += n;
    ma_lock_release(&large_lock);
    for (unsigned i = 0; i < n; i++)
        mapping_unmap(drop[i]);
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

/* ---- taking pages from the cache ---- */

/* The pages one block is made of, in the order they are placed: a realloc's
 * block first, then pieces out of the cache, whole or (the last one) only
 * their tail from byte `from` on. */
struct plan {
    struct large *piece[LARGE_CACHE_SLOTS + 1];
    size_t from[LARGE_CACHE_SLOTS + 1];
    unsigned n;
    size_t bytes;   /* bytes the parts cover */
    unsigned seams; /* seams the block gets from them */
};

/* Where the part of piece l begins that a block still missing `need`
 * bytes takes: its tail, or all of it (0) when less than LARGE_MOVE_MIN
 * would be left. */
static size_t part_from(const struct large *l, size_t need)
{
    return l->map_size >= need + LARGE_MOVE_MIN ? l->map_size - need : 0;
}

/* Adds pieces to pl until it covers `size` bytes or nothing more fits,
 * large_lock held: each time the piece that gives the most bytes (ties: the
 * fewest seams, then the smallest piece), at least LARGE_MOVE_MIN, within
 * the seam budget (one seam is kept for fresh pages after it). */
static void plan_take(struct plan *pl, size_t size)
{
    while (pl->bytes < size) {
        size_t need = size - pl->bytes;
        int best = -1;
        size_t best_from = 0, best_take = 0;
        unsigned best_seams = 0;
        for (unsigned i = 0; i < LARGE_CACHE_SLOTS; i++) {
            const struct large *l = cache[i];
            if (l == NULL)
                continue;
            size_t from = part_from(l, need);
            size_t take = l->map_size - from;
            unsigned seams = (pl->bytes > 0) + seams_between(l, PAGES(from), PAGES(l->map_size));
            if (take < LARGE_MOVE_MIN || pl->seams + seams + (take < need) > LARGE_SEAMS)
                continue;
            if (best >= 0) {
                size_t got = take < need ? take : need, best_got = best_take < need ? best_take : need;
                if (got < best_got || (got == best_got && (seams > best_seams ||
                                                           (seams == best_seams && l->map_size >= cache[best]->map_size))))
                    continue;
            }
            best = (int)i;
            best_from = from;
            best_take = take;
            best_seams = seams;
        }
        if (best < 0)
            break;
        pl->piece[pl->n] = cache_remove((unsigned)best);
        pl->from[pl->n++] = best_from;
        pl->bytes += best_take;
        pl->seams += best_seams;
    }
}

/* Takes out of the cache what serves a block of `size` bytes: the smallest
 * piece at least that big (the newest of equals, its pages the likeliest
 * still in the CPU caches) when `fit`, returned; else NULL and pieces added
 * to pl. */
static struct large *cache_take(size_t size, struct plan *pl, int fit)
{
    int best = -1;
    unsigned had = pl->n;
    ma_lock_acquire(&large_lock);
    for (unsigned i = 0; fit && i < LARGE_CACHE_SLOTS; i++) {
        const struct large *l = cache[i];
        if (l == NULL || l->map_size < size)
            continue;
        if (best < 0 || l->map_size < cache[best]->map_size ||
            (l->map_size == cache[best]->map_size && freed_before(cache[best], l)))
            best = (int)i;
    }
    struct large *l = NULL;
    if (best >= 0)
        l = cache_remove((unsigned)best);
    else
        plan_take(pl, size);
    if (l != NULL || pl->n > had)
        large_reuses++;
    ma_lock_release(&large_lock);
    return l;
}

/* A cached piece at least map_size big made fit a block: cut at the first
 * granule boundary past map_size, the tail cached on its own; or, when that
 * tail would be too small to keep, cut to map_size if it holds more than a
 * quarter over (the rest unmapped). */
static void piece_fit(struct large *l, size_t map_size)
{
    size_t have = l->map_size;
    size_t cut = MA_ALIGN_UP(map_size, MA_REGION_SIZE);
    if (have >= cut + LARGE_MOVE_MIN) {
        struct large *tail = (struct large *)((char *)l + cut);
        unsigned n = 0;
        for (unsigned i = 0; i < l->nseams; i++)
            if (l->seams[i] > PAGES(cut))
                tail->seams[n++] = l->seams[i] - (uint32_t)PAGES(cut);
        tail->nseams = n;
        tail->map_size = have - cut;
        tail->offset = LARGE_HDR;
        tail->cached_ms = l->cached_ms;
        tail->cached_seq = l->cached_seq;
        if (pagemap_set((uintptr_t)tail, MA_REGION_SIZE, PAGEMAP_LARGE) != 0)
            ma_fatal("malloc", "cannot register a cached large mapping", tail);
        count_maps(1, 0);
        l->map_size = cut;
        seams_cut(l, cut);
        if (!cache_put(tail, 0))
            mapping_drop(tail);
    } else if (have - map_size > map_size / 4) {
        large_unmap((char *)l + map_size, have - map_size);
        l->map_size = map_size;
        seams_cut(l, map_size);
    }
}

/* ---- assembling ---- */

/* Moves bytes [from, end) of mapping l to dst + at, one kernel mapping at a
 * time, and appends to seams[] where each landed. Returns the bytes moved:
 * all, or fewer if the kernel refused a move (the rest is still at l). l's
 * header may leave with its first page, so its seams are read first. */
static size_t part_move(const struct large *l, size_t from, size_t end, char *dst, size_t at, uint32_t *seams,
                        unsigned *nseams)
{
    uint32_t stop[LARGE_SEAMS + 1];
    unsigned n = 0;
    for (unsigned i = 0; i < l->nseams; i++)
        if (l->seams[i] > PAGES(from) && l->seams[i] < PAGES(end))
            stop[n++] = l->seams[i];
    stop[n++] = (uint32_t)PAGES(end);
    size_t done = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t len = (size_t)stop[i] * MA_PAGE_SIZE - (from + done);
        if (os_move((char *)l + from + done, len, dst + at + done) != 0)
            break;
        if (at + done > 0)
            seams[(*nseams)++] = (uint32_t)PAGES(at + done);
        done += len;
    }
    return done;
}

/* What the plan's first part is: a cached piece like the others, a live
 * block whose bytes must survive (realloc), or a piece already grown in
 * place at the destination. */
enum part0 { PART0_PIECE, PART0_LIVE, PART0_IN_PLACE };

/* Moves the planned parts into dst, in order from its start, recording
 * dst's seams; returns the bytes from dst on that hold reused pages (the
 * rest are fresh). A refused move ends the moving, and what did not move is
 * dealt with cleanly: a piece still whole goes back to the cache, a piece's
 * head stays cached while the rest of it is unmapped, and a live block's
 * remaining bytes are copied into dst's fresh pages before they are
 * unmapped. Pieces moved whole, which end as mappings, are counted. */
static size_t plan_fill(struct plan *pl, char *dst, uint32_t *seams, unsigned *nseams, enum part0 part0)
{
    size_t at = 0;
    unsigned gone = 0, i = 0;
    *nseams = 0;
    if (part0 == PART0_IN_PLACE) {
        at = pl->piece[0]->map_size;
        i = 1;
    }
    for (; i < pl->n; i++) {
        struct large *l = pl->piece[i];
        size_t from = pl->from[i], end = l->map_size;
        /* Marked freed before the kernel can give the range up (see
         * large_realloc). */
        if (from == 0)
            pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
        size_t done = part_move(l, from, end, dst, at, seams, nseams);
        at += done;
        int whole = done == end - from;
        if (part0 == PART0_LIVE && i == 0) {
            if (!whole) {
                memcpy(dst + at, (char *)l + done, end - done);
                large_unmap((char *)l + done, end - done);
            }
        } else if (from == 0 && done == 0) {
            pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_LARGE);
            cache_return(l);
        } else if (from == 0) {
            if (!whole)
                large_unmap((char *)l + done, end - done);
            gone++;
        } else {
            if (!whole)
                large_unmap((char *)l + from + done, end - from - done);
            l->map_size = from;
            seams_cut(l, from);
            cache_return(l);
        }
        if (!whole) {
            i++;
            break;
        }
    }
    for (; i < pl->n; i++)
        cache_return(pl->piece[i]);
    if (gone)
        count_maps(0, gone);
    return at;
}

/* Unmaps every piece of the plan from `first` on. */
static void plan_drop(struct plan *pl, unsigned first)
{
    for (unsigned i = first; i < pl->n; i++)
        mapping_drop(pl->piece[i]);
}

/* A fresh range of `size` bytes for a block whose payload is aligned to
 * `align`: the header on a granule boundary, and for alignments beyond a
 * granule the payload one granule past it on an `align` boundary (an
 * over-sized range, cut down). NULL if the kernel has no room. */
static char *reserve(size_t size, size_t align)
{
    if (align <= MA_REGION_SIZE)
        return os_map_aligned(size, MA_REGION_SIZE);
    char *raw = os_map_aligned(size - MA_REGION_SIZE + align, align);
    if (raw == NULL)
        return NULL;
    large_unmap(raw, align - MA_REGION_SIZE);
    return raw + align - MA_REGION_SIZE;
}

/* A fresh range for the plan's block of `size` bytes; when the kernel has
 * no room while the pieces hold address space, they and the rest of the
 * cache are given back and the range asked for once more, the plan then
 * down to its first `keep` parts. NULL if there is still no room. */
static char *plan_reserve(struct plan *pl, size_t *size, size_t want, size_t align, unsigned keep)
{
    char *base = reserve(*size, align);
    if (base != NULL || pl->n == keep)
        return base;
    plan_drop(pl, keep);
    pl->n = keep;
    large_trim();
    *size = want;
    return reserve(want, align);
}

/* Grows the plan's first piece in place to `size` bytes when the kernel
 * can (one kernel mapping, free address space after it): the block is then
 * made where that piece lies, and its pages do not move. Returns the block's
 * start, or NULL. */
static char *plan_grow_first(struct plan *pl, size_t size)
{
    if (pl->n == 0 || pl->from[0] != 0 || pl->piece[0]->nseams != 0)
        return NULL;
    struct large *l = pl->piece[0];
    return os_resize(l, l->map_size, size) == 0 ? (char *)l : NULL;
}

/* Makes the plan's block at base (`size` bytes, the payload `offset` bytes
 * in) and publishes it; returns the bytes from base on that hold reused
 * pages. */
static size_t plan_build(struct plan *pl, char *base, size_t size, size_t offset, enum part0 part0)
{
    uint32_t seams[LARGE_SEAMS];
    unsigned nseams = 0;
    size_t grown = part0 == PART0_IN_PLACE ? pl->piece[0]->map_size : 0;
    size_t moved = plan_fill(pl, base, seams, &nseams, part0);
    /* Fresh pages after the reused ones are a kernel mapping of their own,
     * unless they are the growth of a piece grown in place. */
    if (moved > 0 && moved < size && moved != grown)
        seams[nseams++] = (uint32_t)PAGES(moved);
    /* Only an address outside the pagemap's range could fail; the block is
     * unreachable without it, so this is fatal, not a leak. */
    if (large_publish((struct large *)base, size, offset, seams, nseams) != 0)
        ma_fatal(part0 == PART0_LIVE ? "realloc" : "malloc", "cannot register a large block", base);
    return moved;
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
    struct plan pl = { .n = 0, .bytes = 0, .seams = 0 };
    if (map_size <= LARGE_SEAM_MAX) {
        struct large *l = cache_take(map_size, &pl, align <= MA_REGION_SIZE);
        if (l != NULL) {
            piece_fit(l, map_size);
            if (large_publish(l, l->map_size, offset, l->seams, l->nseams) != 0)
                ma_fatal("malloc", "cannot register a reused large block", l);
            if (zero)
                memset((char *)l + offset, 0, n);
            return (char *)l + offset;
        }
    }
    size_t size = pl.bytes > map_size ? pl.bytes : map_size;
    enum part0 part0 = PART0_IN_PLACE;
    char *base = align <= MA_REGION_SIZE ? plan_grow_first(&pl, size) : NULL;
    if (base == NULL) {
        part0 = PART0_PIECE;
        if ((base = plan_reserve(&pl, &size, map_size, align, 0)) == NULL) {
            errno = ENOMEM;
            return NULL;
        }
    }
    size_t moved = plan_build(&pl, base, size, offset, part0);
    /* A piece grown in place ends as a mapping of its own. */
    count_maps(1, part0 == PART0_IN_PLACE);
    if (zero && moved > offset)
        memset(base + offset, 0, moved - offset < n ? moved - offset : n);
    return base + offset;
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
    if (!cache_put(l, 1))
        mapping_drop(l);
    else
        decay_wake(1);
}

/* Moves live block l (list_remove'd) into a fresh mapping of new_size
 * bytes by copying, for a block whose pages cannot move (its seams would
 * overflow, or it is too big for them). NULL if the kernel has no room. */
static char *block_copy(struct large *l, size_t new_size)
{
    char *base = reserve(new_size, MA_REGION_SIZE);
    if (base == NULL)
        return NULL;
    memcpy(base, l, l->map_size);
    pagemap_set((uintptr_t)l, MA_REGION_SIZE, PAGEMAP_FREED);
    large_unmap(l, l->map_size);
    return base;
}

void *large_realloc(struct large *l, size_t n)
{
    if (n > MA_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    size_t offset = l->offset;
    size_t old_size = l->map_size;
    size_t new_size = MA_ALIGN_UP(offset + n, MA_PAGE_SIZE);
    if (new_size == old_size)
        return (char *)l + offset;
    if (new_size < old_size || (l->nseams == 0 && os_resize(l, old_size, new_size) == 0)) {
        /* In place. map_size changes under the lock that guards the totals,
         * so large_check never sees one without the other. */
        ma_lock_acquire(&large_lock);
        large_bytes -= old_size;
        live_grow(new_size);
        l->map_size = new_size;
        seams_cut(l, new_size);
        ma_lock_release(&large_lock);
        if (new_size < old_size)
            large_unmap((char *)l + new_size, old_size - new_size);
        return (char *)l + offset;
    }
    /* Elsewhere: the block's pages move into a fresh range and cached pieces
     * (or fresh pages) make up the rest. */
    list_remove(l);
    large_decay();
    struct plan pl = { .piece = { l }, .from = { 0 }, .n = 1, .bytes = old_size, .seams = l->nseams };
    char *base;
    if (new_size <= LARGE_SEAM_MAX && l->nseams < LARGE_SEAMS) {
        cache_take(new_size, &pl, 0);
        size_t size = pl.bytes > new_size ? pl.bytes : new_size;
        if ((base = plan_reserve(&pl, &size, new_size, MA_REGION_SIZE, 1)) == NULL)
            goto fail;
        plan_build(&pl, base, size, offset, PART0_LIVE);
    } else {
        if ((base = block_copy(l, new_size)) == NULL)
            goto fail;
        if (large_publish((struct large *)base, new_size, offset, NULL, 0) != 0)
            ma_fatal("realloc", "cannot register a large block", base);
    }
    return base + offset;
fail:
    list_add(l);
    errno = ENOMEM;
    return NULL;
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
            (l->map_size & (MA_PAGE_SIZE - 1)) || !seams_ok(l))
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
            l->offset != LARGE_HDR || (l->map_size & (MA_PAGE_SIZE - 1)) || l->map_size < LARGE_MOVE_MIN ||
            !seams_ok(l))
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
