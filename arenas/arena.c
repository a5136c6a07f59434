/*
 * arena.c - allocation inside one arena: the segregated free-list index,
 * splitting, coalescing, chunk growth and release, and the remote-free stack.
 *
 * Every function here except arena_free_remote runs with the arena lock held
 * (the caller takes it). Block heads are read and written with relaxed atomic
 * accesses because arena_free_remote validates a block of a foreign arena
 * without its lock while the owner may be flipping that head's PREV_INUSE bit;
 * on x86-64 and arm64 a relaxed access is a plain load or store.
 */
#include <errno.h>
#include <string.h>
#include <sys/auxv.h>

#include "arena.h"
#include "../src/os.h"

/* A stack that passes this many pending blocks, or REMOTE_DRAIN_BYTES of
 * them, is drained by the pusher itself if the owner's lock happens to be
 * free, so blocks freed into an arena whose threads no longer ask for that
 * class do not pile up. */
#define REMOTE_DRAIN_BOUND 1024
#define REMOTE_DRAIN_BYTES ((size_t)1 << 20)

uintptr_t ma_block_key = CACHED_KEY;

void arena_key_init(void)
{
    uintptr_t k = CACHED_KEY;
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r != NULL) {
        uintptr_t x;
        memcpy(&x, r + 8, sizeof x); /* bytes 0-7 are the stack canary's */
        k ^= x;
    }
    ma_block_key = k != 0 ? k : CACHED_KEY;
}

static inline size_t hd_get(const struct block *b) { return __atomic_load_n(&b->head, __ATOMIC_RELAXED); }
static inline void hd_set(struct block *b, size_t v) { __atomic_store_n(&b->head, v, __ATOMIC_RELAXED); }

/* ---- size classes and the bitmap index ---- */

unsigned arena_class_of(size_t s)
{
    if (s < CLASS_EXACT_LIMIT)
        return (unsigned)(s >> 4);
    unsigned fl = 63u - (unsigned)__builtin_clzl(s);
    unsigned sl = (unsigned)(s >> (fl - CLASS_SUB_LOG)) & ((1u << CLASS_SUB_LOG) - 1);
    return 64u + (fl - 10u) * (1u << CLASS_SUB_LOG) + sl;
}

size_t arena_class_lo(unsigned c)
{
    if (c < 64)
        return (size_t)c * 16;
    unsigned fl = 10 + (c - 64) / 16, sl = (c - 64) % 16;
    return ((size_t)1 << fl) + ((size_t)sl << (fl - CLASS_SUB_LOG));
}

static MA_COLD MA_NORETURN void corrupt(const char *fn, const char *what, const void *p)
{
    ma_fatal(fn, what, p);
}

static inline void index_insert(struct arena *a, struct block *b, size_t size)
{
    unsigned c = arena_class_of(size);
    struct block *h = a->heads[c];
    b->next = h;
    b->prev = NULL;
    if (h != NULL) {
        h->prev = b;
    } else {
        a->bitmap[c >> 6] |= (uint64_t)1 << (c & 63);
        a->bitmap_top |= (uint64_t)1 << (c >> 6);
    }
    a->heads[c] = b;
    a->free_bytes += size;
    a->free_blocks++;
}

/* The checks glibc keeps on every unlink: a neighbour must point back.
 * They turn an overwritten link into an abort instead of a write through an
 * attacker-chosen pointer; a link is checked for alignment before it is
 * followed, which stops most garbage before it can fault. b is in list c
 * with links n and p (read by the caller). */
static inline void links_check(const struct arena *a, unsigned c, struct block *b, const struct block *n,
                               const struct block *p)
{
    if (ma_unlikely((((uintptr_t)n | (uintptr_t)p) & (MA_ALIGN - 1)) ||
                    (a->heads[c] == b ? p != NULL : (p == NULL || p->next != b)) ||
                    (n != NULL && n->prev != b)))
        corrupt("malloc", "corrupted free-list link", block_payload(b));
}

static inline void index_remove(struct arena *a, struct block *b, size_t size)
{
    unsigned c = arena_class_of(size);
    struct block *n = b->next, *p = b->prev;
    links_check(a, c, b, n, p);
    if (p != NULL) {
        p->next = n;
    } else {
        a->heads[c] = n;
        if (n == NULL) {
            a->bitmap[c >> 6] &= ~((uint64_t)1 << (c & 63));
            if (a->bitmap[c >> 6] == 0)
                a->bitmap_top &= ~((uint64_t)1 << (c >> 6));
        }
    }
    if (n != NULL)
        n->prev = p;
    a->free_bytes -= size;
    a->free_blocks--;
}

/* Free block b, of `size` bytes and in the index, gives its first
 * size - rsize bytes away: what remains, r, gets its head (rsize | flags)
 * and footer and takes b's place in the index. When the class stays the
 * same, r takes b's place in its list, the links read before r's head can
 * overwrite them: the common case of a string growing in place into the
 * free space after it (callgrind, bench/realloc strings: arena_resize
 * 136 -> 113 instructions a call, against a removal and an insertion). */
static inline void index_shrink_front(struct arena *a, struct block *b, size_t size, size_t rsize, size_t flags)
{
    struct block *r = (struct block *)((char *)b + (size - rsize));
    unsigned c = arena_class_of(size);
    if (arena_class_of(rsize) != c) {
        index_remove(a, b, size);
        hd_set(r, rsize | flags);
        block_next(r)->prev_size = rsize;
        index_insert(a, r, rsize);
        return;
    }
    struct block *n = b->next, *p = b->prev;
    links_check(a, c, b, n, p);
    hd_set(r, rsize | flags);
    block_next(r)->prev_size = rsize;
    r->next = n;
    r->prev = p;
    if (p != NULL)
        p->next = r;
    else
        a->heads[c] = r;
    if (n != NULL)
        n->prev = r;
    a->free_bytes -= size - rsize;
}

/* First non-empty class at or above c, or -1. Two bit scans at most. */
static inline int index_find(const struct arena *a, unsigned c)
{
    if (c >= N_CLASSES)
        return -1;
    unsigned w = c >> 6;
    uint64_t bits = a->bitmap[w] & (~(uint64_t)0 << (c & 63));
    if (bits != 0)
        return (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
    uint64_t top = (w + 1 < 64) ? (a->bitmap_top & (~(uint64_t)0 << (w + 1))) : 0;
    if (top == 0)
        return -1;
    w = (unsigned)__builtin_ctzll(top);
    return (int)(w * 64 + (unsigned)__builtin_ctzll(a->bitmap[w]));
}

/* Removes and returns a free block of at least bsize bytes, the best fit
 * the index can name: below 1 KiB classes are exact, so the first non-empty
 * class at or above bsize's is the best fit; above, a class spans 1/16 of a
 * power of two, so a few blocks of bsize's own class are tried first. */
static struct block *index_take(struct arena *a, size_t bsize)
{
    unsigned c = arena_class_of(bsize);
    if (bsize >= CLASS_EXACT_LIMIT) {
        struct block *b = a->heads[c];
        for (int tries = 0; b != NULL && tries < 4; tries++, b = b->next) {
            size_t s = hd_get(b) & ~B_FLAGS;
            if (s >= bsize) {
                index_remove(a, b, s);
                return b;
            }
        }
        c++;
    }
    int f = index_find(a, c);
    if (f < 0)
        return NULL;
    struct block *b = a->heads[f];
    index_remove(a, b, hd_get(b) & ~B_FLAGS);
    return b;
}

/* ---- chunks ---- */

/* Maps a new chunk and puts its single free block in the index. */
static struct block *arena_grow(struct arena *a)
{
    size_t cs = a->chunk_size;
    struct chunk *c = os_map_chunk(cs);
    if (c == NULL)
        return NULL;
    if (pagemap_set((uintptr_t)c, cs, PAGEMAP_CHUNK + (int)a->index) != 0) {
        os_unmap_chunk(c, cs);
        errno = ENOMEM;
        return NULL;
    }
    c->magic = CHUNK_MAGIC ^ (uintptr_t)c;
    c->arena = a;
    c->size = cs;
    c->prev = NULL;
    c->next = a->chunks;
    if (a->chunks != NULL)
        a->chunks->prev = c;
    a->chunks = c;
    a->nchunks++;
    a->mapped += cs;
    a->empty_chunks++;

    size_t cap = chunk_capacity(cs);
    struct block *b = chunk_first_block(c);
    hd_set(b, cap | B_PREV_INUSE);
    struct block *fence = (struct block *)((char *)b + cap);
    fence->prev_size = cap;
    hd_set(fence, B_INUSE);
    index_insert(a, b, cap);
    return b;
}

static void chunk_release(struct arena *a, struct chunk *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->chunks = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->nchunks--;
    a->mapped -= c->size;
    size_t size = c->size;
    c->magic = 0;
    pagemap_set((uintptr_t)c, size, PAGEMAP_FREED);
    os_unmap_chunk(c, size);
}

/* ---- allocation ---- */

/* A wholly free chunk is being carved: the arena's lowest count of them
 * since the last spares sweep may fall. */
static inline void chunk_taken(struct arena *a)
{
    if (--a->empty_chunks < a->spare_low)
        a->spare_low = a->empty_chunks;
}

/* Marks free block b (already out of the index) allocated with bsize bytes,
 * splitting off the rest as a free block when it can be one. */
static void *block_carve(struct arena *a, struct block *b, size_t bsize)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    size_t rest = size - bsize;
    if (size == chunk_capacity(a->chunk_size))
        chunk_taken(a);
    if (rest >= B_MIN) {
        hd_set(b, bsize | B_INUSE | (h & B_PREV_INUSE));
        struct block *r = (struct block *)((char *)b + bsize);
        hd_set(r, rest | B_PREV_INUSE);
        block_next(r)->prev_size = rest;
        index_insert(a, r, rest);
        size = bsize;
    } else {
        hd_set(b, (h & ~B_PURGED) | B_INUSE);
        struct block *n = block_next(b);
        hd_set(n, hd_get(n) | B_PREV_INUSE);
    }
    a->in_use += size;
    if (a->in_use > a->peak_in_use)
        a->peak_in_use = a->in_use;
    return block_payload(b);
}

static void arena_purge_fragmented(struct arena *a);

/* A free block of at least bsize bytes out of the index, mapping a new
 * chunk if none is left; NULL if that fails. */
static struct block *block_find(struct arena *a, size_t bsize)
{
    struct block *b = index_take(a, bsize);
    if (ma_unlikely(b == NULL)) {
        /* Take what other threads freed and coalesce what is parked
         * before asking the OS for more. */
        arena_drain(a);
        if (a->quick_blocks != 0) {
            arena_consolidate(a);
            b = index_take(a, bsize);
            if (b != NULL)
                return b;
        }
        arena_purge_fragmented(a);
        if (arena_grow(a) == NULL)
            return NULL;
        b = index_take(a, bsize);
    }
    return b;
}

void *arena_alloc(struct arena *a, size_t bsize)
{
    struct block *b = block_find(a, bsize);
    if (b == NULL)
        return NULL;
    a->allocs++;
    return block_carve(a, b, bsize);
}

void *arena_alloc_growing(struct arena *a, size_t bsize)
{
    /* A free block with as much again after the new one, if there is one,
     * so the next growth finds the free space in place; else the best fit. */
    struct block *b = index_take(a, 2 * bsize);
    if (b == NULL)
        return arena_alloc(a, bsize);
    a->allocs++;
    return block_carve(a, b, bsize);
}

unsigned arena_alloc_batch(struct arena *a, size_t bsize, unsigned n, void **head)
{
    unsigned got = 0;
    /* The blocks are linked in the order they are carved, in front of what
     * *head held: the bin hands them out in address order. */
    void *first = NULL, **tail = &first;
    while (got < n) {
        /* Below 1 KiB every block of a batch must be exactly bsize (bins
         * and quick lists of those classes hold one size): a free block
         * bigger by less than B_MIN cannot be split, and carved whole it is
         * a block of another class, of no use to this refill. So unless
         * bsize's own list (class bsize / 16) has a block, look for one
         * that splits. */
        size_t fit = bsize < CLASS_EXACT_LIMIT && a->heads[bsize / 16] == NULL ? bsize + B_MIN : bsize;
        struct block *b = block_find(a, fit);
        if (b == NULL)
            break;
        size_t h = hd_get(b);
        size_t size = h & ~B_FLAGS;
        size_t k = size / bsize;
        if (k > n - got)
            k = n - got;
        if (k <= 1) {
            void *p = block_carve(a, b, bsize);
            ((uintptr_t *)p)[1] = cached_key(p);
            *tail = p;
            tail = (void **)p;
            got++;
            continue;
        }
        /* Bulk carve: k consecutive blocks out of one free block, the rest
         * back to the index, one index operation instead of k. */
        if (size == chunk_capacity(a->chunk_size))
            chunk_taken(a);
        size_t rest = size - k * bsize;
        /* Every block exactly bsize (a quick list below 1 KiB relies on
         * it): a remainder too small to be a block joins the last one,
         * which then stays free. */
        if (rest != 0 && rest < B_MIN) {
            k--;
            rest += bsize;
        }
        size_t flags = h & B_PREV_INUSE;
        char *at = (char *)b;
        for (size_t i = 0; i < k; i++) {
            struct block *x = (struct block *)at;
            hd_set(x, bsize | B_INUSE | flags);
            flags = B_PREV_INUSE;
            void *p = block_payload(x);
            ((uintptr_t *)p)[1] = cached_key(p);
            *tail = p;
            tail = (void **)p;
            at += bsize;
        }
        struct block *after = (struct block *)at;
        if (rest >= B_MIN) {
            hd_set(after, rest | B_PREV_INUSE);
            block_next(after)->prev_size = rest;
            index_insert(a, after, rest);
            a->in_use += size - rest;
        } else {
            hd_set(after, hd_get(after) | B_PREV_INUSE);
            a->in_use += size;
        }
        if (a->in_use > a->peak_in_use)
            a->peak_in_use = a->in_use;
        got += (unsigned)k;
    }
    *tail = *head;
    *head = first;
    return got;
}

/* ---- giving free pages back ---- */

/* Free blocks at least this big have their inner pages discarded; smaller
 * holes are not worth a system call. */
#define PURGE_MIN_BLOCK ((size_t)64 << 10)

/* A purge pass runs after this many bytes were coalesced into the free
 * lists: rare enough that the system calls are amortised over megabytes of
 * frees, often enough that a program which frees most of its heap gives the
 * pages back without calling malloc_trim (Redis after FLUSHALL: see
 * BENCHMARK.md). */
static size_t purge_trigger(const struct arena *a)
{
    return ((size_t)8 << 20) + a->mapped / 4;
}

/* Discards the whole pages inside free block b, keeping its head and links
 * at the start and its footer (in the next block) intact. */
static size_t block_purge(struct block *b)
{
    uintptr_t lo = MA_ALIGN_UP((uintptr_t)b + sizeof(struct block), MA_PAGE_SIZE);
    uintptr_t hi = ((uintptr_t)b + block_size(b)) & ~(uintptr_t)(MA_PAGE_SIZE - 1);
    if (hi <= lo)
        return 0;
    os_discard((void *)lo, hi - lo);
    return hi - lo;
}

/* Coalesces what is parked, then discards the pages of every big free
 * block not yet purged. */
/* Passes of one arena are at least this far apart, so memory that a workload
 * keeps recycling is not discarded and faulted back in over and over
 * (bench/realloc: 18,254 madvise calls and 108,527 page faults per run
 * without the interval, 1 and 1,798 with it); a trigger that fires too soon
 * stays armed, so the first release after the interval runs the pass. */
#define PURGE_INTERVAL_MS 50

/* Discards the pages of every free block of at least `min` bytes not yet
 * purged. Lock held. */
static void purge_blocks(struct arena *a, size_t min)
{
    a->reclaiming = 1;
    a->purges++;
    for (unsigned c = arena_class_of(min); c < N_CLASSES; c++) {
        for (struct block *b = a->heads[c]; b != NULL; b = b->next) {
            size_t h = hd_get(b);
            if (h & B_PURGED)
                continue;
            block_purge(b);
            hd_set(b, h | B_PURGED);
        }
    }
    a->reclaiming = 0;
}

/* 1, taking the time as *last_ms, if interval_ms have passed since it. */
static int pass_due(uint64_t *last_ms, uint64_t interval_ms)
{
    uint64_t now = os_now_ms();
    if (now - *last_ms < interval_ms)
        return 0;
    *last_ms = now;
    return 1;
}

/* Once the trigger is passed, the pass waits for the interval; the clock is
 * read at the first release past the trigger in each acquisition of the
 * lock, not at every one: a flush that releases a bin of hundreds of blocks
 * reads it once, and a pass is late by at most the rest of one lock hold. */
static void arena_purge(struct arena *a)
{
    if (a->reclaiming)
        return; /* runs again at the next release past the trigger */
    if (a->purge_looked == a->lock_acquires)
        return;
    a->purge_looked = a->lock_acquires;
    if (!pass_due(&a->last_purge_ms, PURGE_INTERVAL_MS))
        return;
    arena_consolidate(a);
    a->dirty = 0;
    purge_blocks(a, PURGE_MIN_BLOCK);
}

/* An arena about to map a chunk while a quarter or more of what it has
 * mapped (and a chunk's worth at least) is free is fragmented: its free
 * blocks are too small for what is asked now. Before it grows, it discards
 * the pages of its free blocks of 8 KiB and more (the smallest with a whole
 * page inside), at most once per GROW_PURGE_INTERVAL_MS: memory that cannot
 * serve the requests of the moment need not stay resident while the heap
 * grows around it. The regular pass above only reaches blocks of 64 KiB,
 * after 8 MiB of frees. build/bench/fragmentation -n 1500k -m 64M, 5 runs
 * each, peak RSS (maxrss_kb / 1000) at 1 / 4 threads: before, 117.2 /
 * 117.5-121.6; with a pass every 10 ms, 111.8-113.0 / 107.4-115.7; every
 * 15 ms, 108.2-113.3 / 107.1-114.2; every 20 ms, 113.3-114.9 /
 * 111.8-117.0 (glibc 114.9-115.1 / 114.5-119.6 in the same runs). About
 * 6,700 / 4,500 madvise calls a run at 10 ms, against 550 / 430 before;
 * at 1 thread the run times stayed within this machine's spread (0.71-0.95
 * s, glibc 0.68-0.89), at 4 threads they rose 19% (median of 7, 0.64 ->
 * 0.76 s: the pass holds a lock two threads share, and each madvise
 * interrupts the other CPU). No other benchmark of the suite grows a
 * fragmented arena: their madvise counts do not change. Passes from 16 KiB
 * instead of 8 gave 116-117 / 110-117. */
#define GROW_PURGE_MIN_BLOCK ((size_t)8 << 10)
#ifndef GROW_PURGE_INTERVAL_MS
#define GROW_PURGE_INTERVAL_MS 10
#endif

static void arena_purge_fragmented(struct arena *a)
{
    if (a->reclaiming || a->free_bytes < a->chunk_size || a->free_bytes < a->mapped / 4 ||
        !pass_due(&a->last_grow_purge_ms, GROW_PURGE_INTERVAL_MS))
        return;
    purge_blocks(a, GROW_PURGE_MIN_BLOCK);
}

/* Spare chunks. A chunk that becomes wholly free beyond the reserve is
 * unmapped at once only if the arena already keeps CHUNK_SPARES more, or
 * has no threads. The others stay mapped as long as they are reused: once
 * per CHUNK_SPARE_MS (looked at as the lock is taken), the spares that
 * stayed wholly free throughout (the lowest count of wholly free chunks
 * since the last look, beyond the reserve) are unmapped; so are all of
 * them when the last thread leaves, and at ma_trim. Threads that come and
 * go empty and refill chunks over and over, and each chunk unmapped and
 * mapped again costs a page fault per page touched (256 for a 1 MiB
 * chunk, each zeroed by the kernel) and two system calls. CHUNK_SPARES is
 * in arena.h, for ma_check. */
#ifndef CHUNK_SPARE_MS
#define CHUNK_SPARE_MS 100
#endif
/* Lock acquisitions between two looks at the clock while there are spares. */
#define SPARE_CHECK_OPS 64u

static inline unsigned chunk_spares(const struct arena *a)
{
    return __atomic_load_n(&a->threads, __ATOMIC_RELAXED) != 0 ? CHUNK_SPARES : 0;
}

/* Unmaps up to n wholly free chunks; returns the bytes unmapped. Lock held. */
static size_t free_chunks_release(struct arena *a, size_t n)
{
    size_t cap = chunk_capacity(a->chunk_size), released = 0;
    for (struct chunk *c = a->chunks, *next; c != NULL && n != 0; c = next) {
        next = c->next;
        struct block *b = chunk_first_block(c);
        if ((hd_get(b) & ~B_PURGED) == (cap | B_PREV_INUSE)) {
            index_remove(a, b, cap);
            a->empty_chunks--;
            released += c->size;
            chunk_release(a, c);
            n--;
        }
    }
    return released;
}

/* Lock just taken. */
static inline void spares_sweep(struct arena *a)
{
    if (ma_likely(a->empty_chunks <= a->reserve) || a->lock_acquires % SPARE_CHECK_OPS != 0 ||
        !pass_due(&a->spare_ms, CHUNK_SPARE_MS))
        return;
    /* ma_trim may have unmapped some since (it does not lower spare_low). */
    size_t low = a->spare_low < a->empty_chunks ? a->spare_low : a->empty_chunks;
    if (low > a->reserve)
        free_chunks_release(a, low - a->reserve);
    a->spare_low = a->empty_chunks;
}

/* ---- threads leaving an arena ---- */

/* An arena that its last thread has left (the thread exited) has nobody
 * to reuse what it holds back: its parked blocks, its remote stacks and
 * the resident pages of its free blocks would stay as they are for as long
 * as other threads keep blocks of it alive, or for the rest of the
 * process. So the last thread out drains the stacks and coalesces what is
 * parked (arena_orphaned), and from then on every remote free into the
 * arena drains its stack at once, so those blocks coalesce too and wholly
 * free chunks go back to the OS. A thread that joins the arena again is
 * its owner: the first remote free to see it puts the drain bound back.
 *
 * Pages are discarded too (free blocks of GROW_PURGE_MIN_BLOCK and more,
 * as before an arena grows) when a thread leaves an arena that then holds
 * at least LEAVE_PURGE_MIN_IDLE bytes free or parked, and, if other
 * threads remain, three quarters of what it has mapped: the end of a
 * phase of the program, not one of many threads that come and go over a
 * heap they keep reusing. At most once per LEAVE_PURGE_INTERVAL_MS.
 * build/bench/threadchurn -t 4 -n 4000 (4000 threads, 4 alive at a time,
 * each allocating and freeing 750 KB four times), minor faults over 5
 * runs: 18-29k without any of this, 36-53k with a pass whenever the last
 * thread left, whatever the size, about as many with passes from 1 MiB
 * idle for the other threads too; with these rules the heap stays below
 * the floor and no pass runs (23-32k). build/bench/fragmentation -n 1500k -m 64M,
 * whose workers exit leaving 4 MB of long-lived blocks in 80 MB, which the
 * main thread then frees: RSS with only those blocks left, then after
 * freeing them, 81 / 79 -> 11 / 1.9 MB at 1 thread, 85 / 80 -> 11 / 6.1
 * MB at 4 (glibc 82 / 19 and 83 / 82, jemalloc 21 / 20 and 22 / 21, in
 * BENCHMARK.md). */
#define LEAVE_PURGE_MIN_IDLE ((size_t)8 << 20)
#ifndef LEAVE_PURGE_INTERVAL_MS
#define LEAVE_PURGE_INTERVAL_MS 10
#endif

/* Lock held; orphan: the arena has no threads. */
static void leave_purge(struct arena *a, int orphan)
{
    size_t idle = a->free_bytes + a->quick_bytes;
    if (a->reclaiming || idle < LEAVE_PURGE_MIN_IDLE || (!orphan && idle < a->mapped - a->mapped / 4) ||
        !pass_due(&a->last_leave_purge_ms, LEAVE_PURGE_INTERVAL_MS))
        return;
    arena_consolidate(a);
    purge_blocks(a, GROW_PURGE_MIN_BLOCK);
}

void arena_orphaned(struct arena *a)
{
    arena_set_orphan(a, 1);
    arena_drain(a);
    arena_consolidate(a);
    if (a->empty_chunks > a->reserve)
        free_chunks_release(a, a->empty_chunks - a->reserve);
    leave_purge(a, 1);
}

void arena_thread_left(struct arena *a)
{
    leave_purge(a, 0);
}

void arena_set_orphan(struct arena *a, int orphan)
{
    __atomic_store_n(&a->remote_drain_at, orphan ? 1 : REMOTE_DRAIN_BOUND, __ATOMIC_RELAXED);
}

/* ---- freeing ---- */

/* Returns allocated block b to the index, coalescing with free neighbours;
 * a chunk that becomes wholly free goes back to the OS beyond the reserve. */
static void block_release(struct arena *a, struct block *b)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    struct block *n = (struct block *)((char *)b + size);
    a->in_use -= size;

    if (!(h & B_PREV_INUSE)) {
        size_t ps = b->prev_size;
        struct block *pb = (struct block *)((char *)b - ps);
        struct chunk *c = chunk_of(b, a->chunk_size);
        if (ma_unlikely(ps < B_MIN || (ps & B_FLAGS) || (char *)pb < (char *)chunk_first_block(c) ||
                        (hd_get(pb) & ~B_FLAGS) != ps || (hd_get(pb) & B_INUSE)))
            corrupt("free", "corrupted footer of the previous block", block_payload(b));
        index_remove(a, pb, ps);
        size += ps;
        b = pb;
    }
    size_t nh = hd_get(n);
    if (!(nh & B_INUSE)) {
        size_t ns = nh & ~B_FLAGS;
        index_remove(a, n, ns);
        size += ns;
    }
    hd_set(b, size | B_PREV_INUSE);
    struct block *after = (struct block *)((char *)b + size);
    after->prev_size = size;
    hd_set(after, hd_get(after) & ~B_PREV_INUSE);

    if (ma_unlikely(size == chunk_capacity(a->chunk_size))) {
        if (a->empty_chunks >= a->reserve + chunk_spares(a)) {
            chunk_release(a, chunk_of(b, a->chunk_size));
            return;
        }
        a->empty_chunks++;
    }
    index_insert(a, b, size);
    a->dirty += size;
    if (ma_unlikely(a->dirty > purge_trigger(a)))
        arena_purge(a);
}

void arena_validate(const struct chunk *c, const void *p, const char *fn)
{
    const struct block *b = block_of(p);
    if (ma_unlikely((uintptr_t)p < (uintptr_t)chunk_first_block(c) + B_HDR))
        corrupt(fn, "invalid pointer (inside a chunk header)", p);
    size_t h = hd_get(b);
    size_t s = h & ~B_FLAGS;
    /* Sizes compared, not pointers: a garbage size must not wrap around. */
    if (ma_unlikely(s < B_MIN || s > (size_t)((const char *)c + c->size - CHUNK_FENCE - (const char *)b)))
        corrupt(fn, "invalid pointer or corrupted block header", p);
    if (ma_unlikely(!(h & B_INUSE)))
        corrupt(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected" : "block is not allocated (already freed?)", p);
    const struct block *n = (const struct block *)((const char *)b + s);
    if (ma_unlikely(!(hd_get(n) & B_PREV_INUSE)))
        corrupt(fn, "invalid pointer or corrupted block header", p);
    uintptr_t key = ((const uintptr_t *)p)[1];
    if (ma_unlikely(key == cached_key(p)))
        corrupt(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected" : "block is not allocated (already freed?)", p);
}

void arena_free(struct arena *a, void *p)
{
    a->frees++;
    block_release(a, block_of(p));
}


/* ---- remote frees ---- */

static inline unsigned remote_class(size_t size)
{
    return size <= QUICK_MAX_BLOCK ? arena_class_of(size) : REMOTE_BIG;
}

void arena_free_remote(struct arena *a, void *p, size_t size)
{
    unsigned cls = remote_class(size);
    /* The key in the second payload word marks the block as pending, so a
     * second free of it is caught instead of linking it twice (which would
     * make the stack a cycle). */
    ((uintptr_t *)p)[1] = cached_key(p);
    uintptr_t *top = &a->remote_top[cls];
    uintptr_t old = __atomic_load_n(top, __ATOMIC_RELAXED), pending;
    do {
        *(void **)p = remote_payload(old);
        pending = remote_count(old) + (remote_count(old) < REMOTE_COUNT_MAX);
    } while (!__atomic_compare_exchange_n(top, &old, (uintptr_t)p | (pending << REMOTE_PTR_BITS), 1,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (ma_unlikely(pending >= __atomic_load_n(&a->remote_drain_at, __ATOMIC_RELAXED) ||
                    pending * size >= REMOTE_DRAIN_BYTES) &&
        ma_lock_try(&a->lock)) {
        a->lock_acquires++;
        arena_drain_class(a, cls);
        /* An arena with no threads left has no owner to drain it: the
         * pusher does, at every push (arena_orphaned lowered the bound),
         * and the blocks coalesce at once. A thread that has joined since
         * is the owner again: the bound goes back up. */
        if (__atomic_load_n(&a->threads, __ATOMIC_RELAXED) == 0)
            leave_purge(a, 1);
        else
            __atomic_store_n(&a->remote_drain_at, REMOTE_DRAIN_BOUND, __ATOMIC_RELAXED);
        ma_lock_release(&a->lock);
    }
}

/* Empties remote stack cls and returns its old word (0 if it was empty):
 * a plain load first, so an empty stack costs no write to a shared line. */
static inline uintptr_t stack_take(struct arena *a, unsigned cls)
{
    if (__atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED) == 0)
        return 0;
    return __atomic_exchange_n(&a->remote_top[cls], 0, __ATOMIC_ACQUIRE);
}

void *arena_remote_take(struct arena *a, unsigned cls, uint32_t max, uint32_t *count)
{
    uintptr_t top = __atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED);
    if (top == 0 || remote_count(top) > max)
        return NULL;
    top = __atomic_exchange_n(&a->remote_top[cls], 0, __ATOMIC_ACQUIRE);
    if (top == 0)
        return NULL;
    if (!__atomic_load_n(&a->remote_taken[cls], __ATOMIC_RELAXED))
        __atomic_store_n(&a->remote_taken[cls], 1, __ATOMIC_RELAXED);
    void *head = remote_payload(top);
    uint64_t n = remote_count(top);
    if (ma_unlikely(n >= REMOTE_COUNT_MAX)) /* the count saturated: count them */
        for (n = 0, top = (uintptr_t)head; top != 0; top = (uintptr_t) * (void **)top)
            n++;
    *count = (uint32_t)n;
    return head;
}

/* ---- quick lists ---- */

/* Parked bytes beyond which everything parked is coalesced. Parking never
 * makes the heap grow (block_find coalesces before mapping a chunk), so the
 * limit only bounds memory held back from the OS: chunks whose blocks are
 * all parked cannot be unmapped. 4 MiB + an eighth of the arena: bench/threadtest
 * frees 1.6 MB per round, which a 1 MiB limit coalesced every round
 * (31% of its instructions under callgrind). */
static size_t quick_limit(const struct arena *a)
{
    return ((size_t)4 << 20) + a->mapped / 8;
}

/* Of those, blocks of 1 KiB and more may be parked up to this much. A few
 * big parked blocks hold as much memory as thousands of small ones and
 * serve only their own class, and the heap spreads around them: with the
 * single limit above, build/bench/fragmentation -t 1 -n 1500k -m 64M
 * peaked at 129 MB RSS, with this one at 120 MB (glibc 115 MB), while
 * bench/churn's instructions per pair stayed the same. */
#define QUICK_MEDIUM_LIMIT ((size_t)256 << 10)

/* A class no refill has asked for in this many of the arena's lock
 * acquisitions, not counting the flushes that parked blocks of it, is
 * idle: what comes back of it is coalesced at once instead of parked, and
 * what is parked of it goes at the next sweep (one every as many
 * acquisitions). Parking serves a class that is allocated again soon; a
 * program whose sizes drift (bench/fragmentation's phases) would otherwise
 * keep the quick lists of the sizes it has left full, holding memory that
 * the sizes it now asks for cannot use. 256 measured best of 64-4096: see
 * the bins' TC_IDLE_OPS (src/tcache.c). */
#ifndef QUICK_IDLE_OPS
#define QUICK_IDLE_OPS 256u
#endif

static inline int quick_idle(const struct arena *a, unsigned cls)
{
    const struct qlist *q = &a->quick[cls];
    return a->lock_acquires - q->used > q->puts + QUICK_IDLE_OPS;
}

static inline int quick_over(const struct arena *a)
{
    return a->quick_bytes > quick_limit(a) || a->quick_medium > QUICK_MEDIUM_LIMIT;
}

static inline void seg_mark(void *head, void *next, uint32_t count, unsigned cls, size_t bytes)
{
    ((uintptr_t *)head)[2] = (uintptr_t)next | ((uintptr_t)count << SEG_COUNT_SHIFT);
    if (cls >= EXACT_CLASSES)
        ((uintptr_t *)head)[3] = bytes;
}

/* Puts a segment (a NULL-terminated list) in front of quick list cls. */
static inline void quick_push(struct arena *a, unsigned cls, void *head, uint32_t count, size_t bytes)
{
    struct qlist *q = &a->quick[cls];
    seg_mark(head, q->head, count, cls, bytes);
    q->head = head;
    q->count += count;
    q->bytes += bytes;
    a->quick_blocks += count;
    a->quick_bytes += bytes;
    if (cls >= EXACT_CLASSES)
        a->quick_medium += bytes;
    a->in_use -= bytes;
}

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
 * join it again grown by one block. callgrind, bench/programs_cg.sh
 * python-json (CPython freeing everything at exit): 640k blocks in 293,595
 * runs, 821.0 -> 781.1 M instructions for the whole program. */
static void blocks_release(struct arena *a, void *p, uint32_t count)
{
    struct block *lo = NULL;
    size_t run = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        void *next = *(void **)p;
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

/* Coalesces the blocks of quick list cls into the free lists (idle: because
 * the class is idle, which the statistics count). */
static void quick_release(struct arena *a, unsigned cls, int idle)
{
    struct qlist *q = &a->quick[cls];
    void *p = q->head;
    uint32_t count = q->count;
    a->quick_blocks -= count;
    a->quick_bytes -= q->bytes;
    if (cls >= EXACT_CLASSES)
        a->quick_medium -= q->bytes;
    if (idle)
        a->idle_releases += count;
    a->in_use += q->bytes; /* parked blocks are not in use; block_release takes them off */
    q->head = NULL;
    q->count = 0;
    q->bytes = 0;
    /* The releases must not start a purge, which would consolidate the
     * lists (this one is already detached, the others are not). */
    int was = a->reclaiming;
    a->reclaiming = 1;
    while (p != NULL) {
        /* The record goes with the first block's release (it may become a
         * free block's footer): read it first. */
        void *next = seg_next(p);
        blocks_release(a, p, seg_count(p));
        p = next;
    }
    a->reclaiming = was;
}

void arena_quick_sweep(struct arena *a)
{
    if (a->lock_acquires - a->quick_aged < QUICK_IDLE_OPS)
        return;
    a->quick_aged = a->lock_acquires;
    for (unsigned c = 0; c < QUICK_CLASSES; c++)
        if (a->quick[c].head != NULL && quick_idle(a, c))
            quick_release(a, c, 1);
}

void arena_quick_put(struct arena *a, unsigned cls, void *head, uint32_t count, size_t bytes)
{
    a->quick[cls].puts++;
    if (quick_idle(a, cls)) {
        a->idle_releases += count;
        blocks_release(a, head, count);
        return;
    }
    quick_push(a, cls, head, count, bytes);
    if (ma_unlikely(quick_over(a)))
        arena_consolidate(a);
}

/* The last of the k blocks of a segment. */
static void *seg_last(void *h, uint32_t k)
{
    for (uint32_t i = 1; i < k; i++)
        h = *(void **)h;
    return h;
}

unsigned arena_quick_take(struct arena *a, unsigned cls, unsigned n, void **head)
{
    struct qlist *q = &a->quick[cls];
    q->used = a->lock_acquires;
    q->puts = 0;
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
            *(void **)seg_last(prev, prev_k) = h;
        prev = h;
        prev_k = k;
    }
    q->count -= got;
    q->bytes -= bytes;
    if (*head != NULL)
        *(void **)seg_last(prev, prev_k) = *head;
    *head = first;
    a->quick_blocks -= got;
    a->quick_bytes -= bytes;
    if (cls >= EXACT_CLASSES)
        a->quick_medium -= bytes;
    a->in_use += bytes;
    if (a->in_use > a->peak_in_use)
        a->peak_in_use = a->in_use;
    return got;
}

void arena_consolidate(struct arena *a)
{
    for (unsigned c = 0; c < QUICK_CLASSES; c++)
        if (a->quick[c].head != NULL)
            quick_release(a, c, 0);
}

/* ---- remote frees, owner side ---- */

void arena_drain_class(struct arena *a, unsigned cls)
{
    void *p = remote_payload(stack_take(a, cls));
    if (p == NULL)
        return;
    /* Parked for the arena's threads, if it has any. */
    int park = __atomic_load_n(&a->threads, __ATOMIC_RELAXED) != 0;
    uint64_t n = 0;
    while (p != NULL) {
        /* Validated in full when it was pushed; what can have changed since
         * is a second free of it, or a write over it after the free (so the
         * link is checked against the pagemap before it is followed). */
        if (ma_unlikely(((uintptr_t)p & (MA_ALIGN - 1)) || pagemap_get((uintptr_t)p) != PAGEMAP_CHUNK + (int)a->index))
            corrupt("free", "corrupted link on the remote-free stack (use after free?)", p);
        void *next = *(void **)p;
        struct block *b = block_of(p);
        if (ma_unlikely(!(hd_get(b) & B_INUSE) || ((uintptr_t *)p)[1] != cached_key(p)))
            corrupt("free", "double free detected or freed block overwritten (remote-free stack)", p);
        if (ma_unlikely(++n > a->mapped / B_MIN))
            corrupt("free", "remote-free stack is a cycle", p);
        size_t size = block_size(b);
        if (size <= QUICK_MAX_BLOCK && park && !quick_idle(a, arena_class_of(size))) {
            /* Parked like a thread cache's flush, no coalescing per block;
             * it keeps the key it was pushed with (the parked key). */
            /* Totals kept per block: block_release below may purge or
             * consolidate, which must see the lists and totals agree. */
            *(void **)p = NULL;
            quick_push(a, arena_class_of(size), p, 1, size);
        } else {
            ((uintptr_t *)p)[1] = 0;
            if (size <= QUICK_MAX_BLOCK)
                a->idle_releases++;
            block_release(a, b);
        }
        p = next;
    }
    a->remote_frees += n;
    a->frees += n;
    if (ma_unlikely(quick_over(a)))
        arena_consolidate(a);
}

void arena_drain_stale(struct arena *a)
{
    for (unsigned cls = 0; cls < REMOTE_STACKS; cls++) {
        if (__atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED) == 0)
            continue;
        if (__atomic_load_n(&a->remote_taken[cls], __ATOMIC_RELAXED))
            __atomic_store_n(&a->remote_taken[cls], 0, __ATOMIC_RELAXED);
        else
            arena_drain_class(a, cls);
    }
}

void arena_drain(struct arena *a)
{
    for (unsigned cls = 0; cls < REMOTE_STACKS; cls++)
        arena_drain_class(a, cls);
}

/* ---- resizing and alignment ---- */

/* Cuts allocated block b down to bsize bytes when the rest can be a block,
 * and frees the rest (which coalesces with a free successor). */
static void block_shrink(struct arena *a, struct block *b, size_t bsize)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    if (size - bsize < B_MIN)
        return;
    hd_set(b, bsize | (h & B_FLAGS));
    struct block *r = (struct block *)((char *)b + bsize);
    hd_set(r, (size - bsize) | B_INUSE | B_PREV_INUSE);
    block_release(a, r);
}

int arena_resize(struct arena *a, void *p, size_t bsize)
{
    struct block *b = block_of(p);
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    if (bsize > size) {
        struct block *n = block_next(b);
        size_t nh = hd_get(n);
        if (nh & B_INUSE)
            return 0;
        size_t ns = nh & ~B_FLAGS;
        if (size + ns < bsize)
            return 0;
        /* Split the free neighbour directly: its rest stays free where it
         * was (its successor is in use, or they would have coalesced), with
         * no release, coalescing or purge accounting of its bytes. */
        size_t rest = size + ns - bsize;
        if (rest >= B_MIN) {
            hd_set(b, bsize | (h & B_FLAGS));
            index_shrink_front(a, n, ns, rest, B_PREV_INUSE | (nh & B_PURGED));
            a->in_use += bsize - size;
        } else {
            index_remove(a, n, ns);
            hd_set(b, (size + ns) | (h & B_FLAGS));
            struct block *after = block_next(b);
            hd_set(after, hd_get(after) | B_PREV_INUSE);
            a->in_use += ns;
        }
        if (a->in_use > a->peak_in_use)
            a->peak_in_use = a->in_use;
        return 1;
    }
    block_shrink(a, b, bsize);
    return 1;
}

void *arena_alloc_aligned(struct arena *a, size_t bsize, size_t align)
{
    void *p = arena_alloc(a, bsize + align + B_MIN);
    if (p == NULL)
        return NULL;
    struct block *b = block_of(p);
    if ((uintptr_t)p & (align - 1)) {
        /* Skip at least B_MIN so the leading piece can be a free block. */
        uintptr_t q = ((uintptr_t)p + B_MIN + align - 1) & ~(uintptr_t)(align - 1);
        size_t lead = q - (uintptr_t)p;
        size_t h = hd_get(b);
        struct block *nb = block_of((void *)q);
        hd_set(nb, ((h & ~B_FLAGS) - lead) | B_INUSE | B_PREV_INUSE);
        hd_set(b, lead | B_INUSE | (h & B_PREV_INUSE));
        block_release(a, b);
        b = nb;
        p = (void *)q;
    }
    block_shrink(a, b, bsize);
    return p;
}

/* ---- giving memory back ---- */

size_t arena_trim(struct arena *a)
{
    arena_consolidate(a);
    size_t released = free_chunks_release(a, SIZE_MAX);
    for (struct chunk *c = a->chunks; c != NULL; c = c->next) {
        for (struct block *b = chunk_first_block(c); (hd_get(b) & ~B_FLAGS) != 0; b = block_next(b)) {
            if (hd_get(b) & B_INUSE)
                continue;
            released += block_purge(b);
            hd_set(b, hd_get(b) | B_PURGED);
        }
    }
    return released;
}

/* ---- setup and locking ---- */

void arena_init(struct arena *a, unsigned index, size_t chunk_size, unsigned reserve)
{
    memset(a, 0, sizeof *a);
    a->index = index;
    a->chunk_size = chunk_size;
    a->reserve = reserve;
    a->remote_drain_at = REMOTE_DRAIN_BOUND;
}

int arena_lock(struct arena *a)
{
    int waited = ma_lock_acquire(&a->lock);
    if (ma_unlikely(waited)) {
        /* Read without the lock by threads choosing a less contended
         * arena, hence the atomic store. */
        __atomic_store_n(&a->lock_waits, a->lock_waits + 1, __ATOMIC_RELAXED);
    }
    a->lock_acquires++;
    spares_sweep(a);
    return waited;
}

void arena_unlock(struct arena *a)
{
    ma_lock_release(&a->lock);
}
