/*
 * engine.h - what the files of arenas/ share and nobody above them sees:
 * relaxed access to block heads, the free-list index (inline: every
 * allocation and release goes through it), the quick lists' bookkeeping,
 * and the functions one file of the engine calls in another.
 *
 * Every function here runs with the arena lock held. Block heads are read
 * and written with relaxed atomic accesses because arena_free_remote
 * validates a block of a foreign arena without its lock while the owner may
 * be flipping that head's PREV_INUSE bit; on x86-64 and arm64 a relaxed
 * access is a plain load or store. The head of a block that may be
 * allocated and handed out, whose holder may be changing its B_SAMPLED bit,
 * is only ever changed by an atomic read-modify-write (hd_prev_inuse_*).
 */
#ifndef MA_ENGINE_H
#define MA_ENGINE_H

#include "arena.h"
#include "../base/error.h"
#include "../base/os.h"

static inline size_t hd_get(const struct block *b) { return __atomic_load_n(&b->head, __ATOMIC_RELAXED); }
static inline void hd_set(struct block *b, size_t v) { __atomic_store_n(&b->head, v, __ATOMIC_RELAXED); }

/* Set or clear the PREV_INUSE bit of block b, the neighbour after a block
 * being carved or released, which may be allocated and handed out: its
 * holder sets and clears B_SAMPLED in the same word without the lock
 * (block_set_sampled), so the bit changes by an atomic read-modify-write,
 * which cannot undo the holder's change as a load and a store could. */
static inline void hd_prev_inuse_set(struct block *b) { __atomic_fetch_or(&b->head, B_PREV_INUSE, __ATOMIC_RELAXED); }
static inline void hd_prev_inuse_clear(struct block *b)
{
    __atomic_fetch_and(&b->head, ~B_PREV_INUSE, __ATOMIC_RELAXED);
}

/* ---- the free-list index ---- */

/* Free blocks at least this big have their inner pages discarded when they
 * stay unused; smaller holes are not worth a system call. Such a block
 * keeps, after its links, the decay epoch at which it entered the index,
 * so a pass discards only blocks free since the pass before. */
#define PURGE_MIN_BLOCK ((size_t)64 << 10)
static inline void block_stamp(const struct arena *a, struct block *b, size_t size)
{
    if (size >= PURGE_MIN_BLOCK)
        ((uint64_t *)b)[4] = a->epoch;
}
static inline uint64_t block_stamp_of(const struct block *b) { return ((const uint64_t *)b)[4]; }

/* Links free block b into its list, its stamp as it is: a block taken out
 * and put straight back (block.c, index_take_reusing) keeps its age. */
static inline void index_link(struct arena *a, struct block *b, size_t size)
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

static inline void index_insert(struct arena *a, struct block *b, size_t size)
{
    block_stamp(a, b, size);
    index_link(a, b, size);
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
        ma_fatal("malloc", "corrupted free list", block_payload(b));
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
 * free space after it, done without a removal and an insertion. */
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
    block_stamp(a, r, rsize);
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

/* ---- chunks (chunk.c) ---- */

/* A wholly free chunk is being carved: the arena's lowest count of them
 * since the last spares sweep may fall. */
static inline void chunk_taken(struct arena *a)
{
    if (--a->empty_chunks < a->spare_low)
        a->spare_low = a->empty_chunks;
}
/* Whether a chunk that falls wholly free beyond the reserve stays mapped
 * until a decay pass finds it unused: yes whenever memory is retained at
 * all, also in an arena whose threads have all left, for the threads to
 * come (chunk.c, "retained chunks"; purge.c, "threads leaving"). */
static inline int chunk_retained(const struct arena *a)
{
    return a->retain_ms != 0;
}
/* Maps a new chunk and puts its single free block in the index; NULL if
 * the kernel refuses. */
MA_HIDDEN struct block *chunk_grow(struct arena *a);
/* Unlinks chunk c from the arena and unmaps it. */
MA_HIDDEN void chunk_release(struct arena *a, struct chunk *c);
/* Unmaps up to n wholly free chunks; returns the bytes unmapped. */
MA_HIDDEN size_t chunks_release_free(struct arena *a, size_t n);
/* Unmaps the chunks beyond the reserve that stayed wholly free since the
 * last decay pass. */
MA_HIDDEN void chunks_release_unused(struct arena *a);
/* Lock acquisitions between two looks at the clock for a decay pass. */
#define DECAY_CHECK_OPS 64u

/* ---- blocks (block.c) ---- */

/* Returns allocated block b to the index, coalescing with free neighbours;
 * a chunk that becomes wholly free goes back to the OS beyond the reserve. */
MA_HIDDEN void block_release(struct arena *a, struct block *b);

/* ---- purging (purge.c) ---- */

/* 1, taking the time as *last_ms, if interval_ms have passed since it. */
static inline int pass_due(uint64_t *last_ms, uint64_t interval_ms)
{
    uint64_t now = os_now_ms();
    if (now - *last_ms < interval_ms)
        return 0;
    *last_ms = now;
    return 1;
}
/* Discards the whole pages inside free block b; returns the bytes. */
MA_HIDDEN size_t block_purge(struct block *b);
/* The regular pass without retention, run when bytes coalesced since the
 * last one pass the trigger (purge_trigger); at most one per
 * PURGE_INTERVAL_MS. With retention it leaves the work to arena_decay. */
MA_HIDDEN void arena_purge(struct arena *a);
/* A bytes-coalesced count above which arena_purge runs. */
static inline size_t purge_trigger(const struct arena *a)
{
    return ((size_t)8 << 20) + a->mapped / 4;
}
/* The pass before an arena that is a quarter free grows. */
MA_HIDDEN void arena_purge_fragmented(struct arena *a);
/* The pass when a thread leaves (orphan: the last one). */
MA_HIDDEN void leave_purge(struct arena *a, int orphan);

/* ---- quick lists (quick.c) ---- */

/* Parked blocks are coalesced when the arena needs their space, not when
 * they arrive: before it maps a chunk (block_find), before it carves from a
 * free block bigger than the request by CARVE_REST while more than
 * carve_reuse_min() is parked (block.c: reuse comes before fresh or big
 * space; realloc's growth waits until it has cut GROW_PATIENCE bytes per
 * parked block), at every decay pass, and, without retention, past a limit
 * (quick_over). The first two coalesce the classes no refill has asked
 * for since the last such pass, then a segment at a time, the biggest
 * classes first, only until the request fits without such a cut.
 * So memory a program frees and no longer asks for (a free-only phase, the
 * sizes it has left behind, its teardown at exit) is coalesced only if
 * something needs it (bench/NOTES.md, "Parked blocks coalesced on demand"). */
#define CARVE_REST ((size_t)64 << 10)
static inline size_t carve_reuse_min(const struct arena *a)
{
    return ((size_t)256 << 10) + a->mapped / 64;
}

/* Whether so much is parked that all of it is to be coalesced. With
 * retention never: the decay passes coalesce what is parked, as they give
 * back what stays unused. Without it, parked memory is memory kept from
 * the OS: the limit bounds that, and is big enough that a program freeing a
 * few megabytes per round does not coalesce every round (bench/NOTES.md,
 * "Tuning constants"). */
static inline int quick_over(const struct arena *a)
{
    return a->retain_ms == 0 && a->quick_bytes > ((size_t)4 << 20) + a->mapped / 8;
}

static inline void seg_mark(void *head, void *next, uint32_t count, unsigned cls, size_t bytes)
{
    ((uintptr_t *)head)[2] = (((uintptr_t)next ^ ma_link_key) & SEG_PTR_MASK) | ((uintptr_t)count << SEG_COUNT_SHIFT);
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
    a->in_use -= bytes;
}

/* ---- remote frees (remote.c) ---- */

/* A stack that passes this many pending blocks, or REMOTE_DRAIN_BYTES of
 * them, is drained by the pusher itself if the owner's lock happens to be
 * free, so blocks freed into an arena whose threads no longer ask for that
 * class do not pile up. */
#define REMOTE_DRAIN_BOUND 1024
#define REMOTE_DRAIN_BYTES ((size_t)1 << 20)

#endif /* MA_ENGINE_H */
