/*
 * arena.h - the engine: one arena is a lock, a list of chunks, a
 * segregated free-list index with a bitmap, and a lock-free stack of blocks
 * freed by threads of other arenas.
 *
 * Nothing in arenas/ knows about threads, environment variables or the
 * standard names: callers pass the sizes they want and hold the lock when a
 * function says so.
 *
 * ---- block layout (boundary tags) ----
 *
 *   b ->  +-----------------+
 *         | prev_size       |  footer of the previous block, valid only
 *         +-----------------+  while that block is free (else its payload)
 *         | head            |  this block's size | flags
 *   p ->  +-----------------+  payload, 16-byte aligned
 *         | next | prev     |  free-list links, only while free
 *         | ...             |
 *         +-----------------+
 *         | (next block's prev_size: our footer while free, our last
 *         |  8 payload bytes while allocated)
 *
 * A block of size S (a multiple of 16, at least 32) serves S - 8 bytes, so an
 * allocated block costs 8 bytes of overhead. A chunk is
 *   [struct chunk][block][block]...[fence]
 * where the fence is a zero-size block flagged in use, so walks and coalescing
 * stop at the chunk's end without a bounds test.
 */
#ifndef MA_ARENA_H
#define MA_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../base/error.h"
#include "../base/lock.h"
#include "../base/pagemap.h"

struct block {
    size_t prev_size;     /* guarded by arena->lock, valid while prev is free */
    size_t head;          /* size | flags: guarded by arena->lock, but B_SAMPLED (atomic, by the block's holder) */
    struct block *next;   /* guarded by arena->lock, only while free */
    struct block *prev;   /* guarded by arena->lock, only while free */
};

#define B_INUSE ((size_t)1)
#define B_PREV_INUSE ((size_t)2)
#define B_PURGED ((size_t)4)           /* free block whose inner pages were discarded */
#define B_SAMPLED ((size_t)8)          /* allocated block the profiler sampled: free's fast path passes it on */
#define B_FLAGS ((size_t)15)
#define B_HDR ((size_t)16)             /* from block start to payload */
#define B_OVERHEAD ((size_t)8)         /* bytes an allocated block costs */
#define B_MIN ((size_t)32)             /* smallest block: head + two links + footer */

#define CHUNK_HDR ((size_t)64)         /* struct chunk, rounded to keep blocks aligned */
/* The fence block (16 bytes) and, after it, 8 KiB that no block covers and
 * nothing writes (so never resident): a free() fast path may read the head
 * of the block after a plausible-looking one of up to QUICK_MAX_BLOCK bytes
 * without first proving that it lies inside the chunk. */
#define CHUNK_FENCE ((size_t)16 + QUICK_MAX_BLOCK)

/* Classes: exact 16-byte steps below 1 KiB, then 16 classes per power of two
 * (TLSF's second level), enough for blocks up to 1 GiB. */
#define CLASS_EXACT_LIMIT ((size_t)1024)
#define CLASS_SUB_LOG 4
#define N_CLASSES 384
#define N_WORDS (N_CLASSES / 64)

/* The second payload word of a freed block that is not yet in the free
 * lists (in a thread's bin, an arena's quick list, or on a remote-free
 * stack) holds this key, and only then: it is cleared whenever a block
 * leaves those places, so a free of a block that carries it is a double
 * free. The key is random per process (from the kernel's AT_RANDOM bytes,
 * as glibc's tcache key is), set once at init before any block is cached;
 * CACHED_KEY is its value until then and the fallback. The same key for
 * every block keeps the check to one compare on free's fast path. */
#define CACHED_KEY ((uintptr_t)0x3c6ef372fe94f82bull)
MA_HIDDEN extern uintptr_t ma_block_key;
static inline uintptr_t cached_key(const void *p)
{
    (void)p;
    return ma_block_key;
}
/* Draws ma_block_key and ma_link_key; called once at init. */
MA_HIDDEN void arena_key_init(void);

/* ---- free-list links in block memory ----
 *
 * Every singly linked list whose links live in freed blocks (thread-cache
 * bins and reserves, quick-list segments, remote-free stacks) stores each
 * link XORed with ma_link_key, a per-process secret: a use-after-free write
 * of an address into a freed block no longer makes a later malloc return
 * that address. The key's low four bits are LINK_KEY_LOW, never zero, so
 * any 16-byte-aligned address written there decodes to a misaligned one,
 * which the pop's alignment check (no extra instruction) turns into an
 * abort; its other bits are random, so a crafted value decodes to an
 * address nobody can choose. The slow paths that walk lists also check a
 * decoded link against the pagemap (link_check).
 *
 * Such a list ends in LIST_END, not NULL: the address of a read-only zero
 * word, which decodes (whatever the key) to a misaligned link. An empty
 * thread-cache bin holds LIST_END as its head, so the malloc fast path
 * makes one test, the alignment of the link it reads from the head, for
 * both "bin empty" and "link overwritten" (tcache_pop). link_get and
 * link_set turn LIST_END into NULL and back, so that every other path
 * walks lists to NULL; link_raw and link_set_raw do not. */
#define LINK_KEY_LOW ((uintptr_t)7)
MA_HIDDEN extern uintptr_t ma_link_key; /* set once at init, before any block is cached */
MA_HIDDEN extern const uintptr_t ma_list_end[2];
#define LIST_END ((void *)ma_list_end)
static inline void *link_raw(const void *p) { return (void *)(*(const uintptr_t *)p ^ ma_link_key); }
static inline void link_set_raw(void *p, const void *next) { *(uintptr_t *)p = (uintptr_t)next ^ ma_link_key; }
static inline void *link_get(const void *p)
{
    void *next = link_raw(p);
    return next != LIST_END ? next : NULL;
}
static inline void link_set(void *p, const void *next) { link_set_raw(p, next != NULL ? next : LIST_END); }
/* Aborts with "malloc(): corrupted free list at p" unless next, read raw
 * (link_raw) from block p of the arena with pagemap tag `tag`, is LIST_END
 * or a 16-byte aligned address in a chunk of that arena. The walks that
 * check their links go by count, so they read links raw. */
static inline void link_check(const void *p, const void *next, int tag)
{
    uintptr_t u = (uintptr_t)next;
    if (ma_unlikely(u != (uintptr_t)LIST_END && ((u & (MA_ALIGN - 1)) || pagemap_get(u) != tag)))
        ma_fatal("malloc", "corrupted free list", p);
}
/* The same, for a link followed on a path that cannot afford the pagemap:
 * alignment only. */
static inline void *link_get_aligned(const void *p)
{
    void *next = link_get(p);
    if (ma_unlikely((uintptr_t)next & (MA_ALIGN - 1)))
        ma_fatal("malloc", "corrupted free list", p);
    return next;
}

/* Quick lists: blocks up to 8 KiB that came back from thread caches or from
 * remote frees are parked per class without coalescing, so a batch moves
 * between a thread cache and its arena as a list splice. They still count
 * as allocated in the heap (in-use bit set) and are coalesced in one pass
 * when the index cannot serve a request, when they exceed QUICK_LIMIT, or on
 * ma_trim. */
#define QUICK_MAX_BLOCK ((size_t)8192)
#define QUICK_CLASSES 113 /* arena_class_of(8192) + 1 */
#define REMOTE_BIG QUICK_CLASSES          /* the remote stack of blocks above QUICK_MAX_BLOCK */
#define REMOTE_STACKS (QUICK_CLASSES + 1)

/* A quick list is a chain of segments: the blocks one flush parked, or one
 * block a drain parked. Each segment is a NULL-terminated list; its first
 * block records in its third payload word the next segment and its own
 * length (and, above the exact classes, its bytes in the fourth). So a
 * flush parks a list without finding its last block, and a refill takes a
 * segment whole without walking it: walking cold blocks is a cache miss
 * each. Below CLASS_EXACT_LIMIT every parked block
 * of class c is exactly 16 * c bytes. */
struct qlist {
    void *head;           /* payloads linked through their first word */
    uint32_t count;
    uint32_t asked;       /* the arena's release_epoch at the last refill of the class */
    size_t bytes;
};

/* Classes below CLASS_EXACT_LIMIT: exact 16-byte steps (class c holds
 * blocks of 16 * c bytes when cached or parked). */
#define EXACT_CLASSES (CLASS_EXACT_LIMIT / 16)

/* A segment's record, in its first block: the next segment and the length
 * in the third payload word; above the exact classes the bytes in the
 * fourth (below them the bytes follow from the length). */
#define SEG_COUNT_SHIFT 48
#define SEG_PTR_MASK (((uintptr_t)1 << SEG_COUNT_SHIFT) - 1)
/* The next-segment pointer is stored mangled like a link. */
static inline void *seg_next(const void *head)
{
    return (void *)((((const uintptr_t *)head)[2] ^ ma_link_key) & SEG_PTR_MASK);
}
static inline uint32_t seg_count(const void *head) { return (uint32_t)(((const uintptr_t *)head)[2] >> SEG_COUNT_SHIFT); }
static inline size_t seg_bytes(const void *head, unsigned cls)
{
    return cls < EXACT_CLASSES ? (size_t)seg_count(head) * cls * 16 : ((const uintptr_t *)head)[3];
}
struct arena;

struct chunk {
    uint64_t magic;           /* set once: CHUNK_MAGIC ^ address */
    struct arena *arena;      /* set once: the owner */
    struct chunk *next;       /* guarded by arena->lock */
    struct chunk *prev;       /* guarded by arena->lock */
    size_t size;              /* set once: bytes mapped */
};

#define CHUNK_MAGIC ((uint64_t)0x6d61436875e4b3a7ull)

struct arena {
    struct ma_lock lock;
    unsigned index;                   /* set once */
    size_t chunk_size;                /* set once: power of two */
    unsigned reserve;                 /* set once: wholly free chunks kept */
    unsigned retain_ms;               /* set once: unused free memory is kept this long (0: not kept) */
    uint64_t bitmap_top;              /* guarded by lock: bit w set iff bitmap[w] != 0 */
    uint64_t bitmap[N_WORDS];         /* guarded by lock: bit c set iff heads[c] != NULL */
    struct block *heads[N_CLASSES];   /* guarded by lock */
    struct chunk *chunks;             /* guarded by lock */
    size_t nchunks;                   /* guarded by lock */
    size_t empty_chunks;              /* guarded by lock: chunks holding one free block */
    size_t spare_low;                 /* guarded by lock: fewest empty_chunks since the last decay pass */
    uint64_t decay_ms;                /* guarded by lock: when the last decay pass ran */
    uint64_t epoch;                   /* guarded by lock: decay passes run (stamps free blocks) */
    uint64_t orphan_epoch;            /* guarded by lock: the epoch when its last thread left */
    size_t mapped, in_use, free_bytes, free_blocks; /* guarded by lock */
    size_t peak_in_use;               /* guarded by lock */
    size_t dirty;                     /* guarded by lock: bytes coalesced since the last purge */
    uint64_t purges;                  /* guarded by lock: purge passes run */
    uint64_t last_purge_ms;           /* guarded by lock: when the last pass ran */
    uint64_t purge_looked;            /* guarded by lock: lock_acquires when arena_purge last read the clock */
    uint64_t last_grow_purge_ms;      /* guarded by lock: when the last pass before growing ran */
    uint64_t last_leave_purge_ms;     /* guarded by lock: when the last pass for a leaving thread ran */
    int reclaiming;                   /* guarded by lock: in consolidate or purge */
    struct qlist quick[QUICK_CLASSES];/* guarded by lock */
    size_t quick_bytes, quick_blocks; /* guarded by lock */
    /* guarded by lock: counts the passes that coalesce parked blocks for a
     * request (block.c, index_take_releasing) */
    uint32_t release_epoch;
    /* guarded by lock: bytes realloc's growth has cut from big free blocks
     * since the last consolidation without coalescing what is parked
     * (block.c, arena_alloc_growing) */
    size_t grow_cut;
    uint64_t idle_releases;           /* guarded by lock: blocks thread caches gave back as idle */
    uint64_t allocs, frees, remote_frees, lock_acquires, lock_waits; /* guarded by lock */
    unsigned threads;                 /* atomic: threads whose arena this is (steers moves; 0: orphaned) */
    /* ---- remote frees: written by any thread ---- */
    /* Accessed only through __atomic builtins (no _Atomic qualifier, which
     * clang refuses to combine with them). One lock-free stack per quick
     * class (blocks a thread cache could hold), and one more for bigger
     * blocks: the owner can then take a whole stack as the contents of one
     * bin, with no lock and without touching a block. Each word holds the
     * top payload in the low REMOTE_PTR_BITS and the number of blocks pushed
     * since it was last emptied (saturating) above them, so one
     * compare-and-swap pushes a block and counts it. Payloads are linked
     * through their first word, as in a bin. */
    /* Pending blocks at which a pusher drains the stack itself if the lock
     * is free: REMOTE_DRAIN_BOUND, or 1 while the arena has no threads
     * (arena_orphaned). Atomic; on a line of its own, read by every push. */
    uint64_t remote_drain_at __attribute__((aligned(64)));
    uintptr_t remote_top[REMOTE_STACKS] __attribute__((aligned(64))); /* atomic */
    /* 1: a bin took stack cls whole since the last arena_drain_stale.
     * Atomic (set by takers without the lock, cleared under it); off the
     * pushers' lines. */
    uint8_t remote_taken[REMOTE_STACKS] __attribute__((aligned(64)));
};

#define REMOTE_PTR_BITS 48
#define REMOTE_PTR_MASK (((uintptr_t)1 << REMOTE_PTR_BITS) - 1)
#define REMOTE_COUNT_MAX ((uintptr_t)0xffff)
/* An empty stack's word: LIST_END with a count of 0, so that a push links
 * its block to the top payload as it stands, and a stack a bin takes whole
 * ends as a bin's list does. */
#define REMOTE_EMPTY ((uintptr_t)LIST_END)
static inline void *remote_payload(uintptr_t top) { return (void *)(top & REMOTE_PTR_MASK); }
static inline uint64_t remote_count(uintptr_t top) { return top >> REMOTE_PTR_BITS; }

/* A block pending on a remote-free stack carries the same key as a parked
 * one (cached_key): freed, not yet back in the free lists. */

/* ---- inline helpers on blocks ---- */

/* Relaxed: a thread freeing a block of another arena reads its head while
 * the owner may flip the PREV_INUSE bit; a plain load on x86-64 and arm64. */
static inline size_t block_size(const struct block *b)
{
    return __atomic_load_n(&b->head, __ATOMIC_RELAXED) & ~B_FLAGS;
}
static inline struct block *block_next(const struct block *b)
{
    return (struct block *)((char *)b + block_size(b));
}
/* Sets (on) or clears the profiler's B_SAMPLED flag of allocated block b,
 * by its holder (the thread that was just handed it, or that is freeing
 * it), without the arena lock: the arena, which may be changing the
 * head's PREV_INUSE bit meanwhile under its lock, does so by an atomic
 * read-modify-write too (engine.h), so neither change undoes the other. */
static inline void block_set_sampled(struct block *b, int on)
{
    if (on)
        __atomic_fetch_or(&b->head, B_SAMPLED, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&b->head, ~B_SAMPLED, __ATOMIC_RELAXED);
}
static inline int block_sampled(const struct block *b)
{
    return (__atomic_load_n(&b->head, __ATOMIC_RELAXED) & B_SAMPLED) != 0;
}
static inline void *block_payload(struct block *b) { return (char *)b + B_HDR; }
static inline struct block *block_of(const void *p) { return (struct block *)((char *)p - B_HDR); }
static inline size_t block_usable(const struct block *b) { return block_size(b) - B_OVERHEAD; }

/* The block size that serves a request of n bytes (n below the threshold). */
static inline size_t block_size_for(size_t n)
{
    size_t s = MA_ALIGN_UP(n + B_OVERHEAD, MA_ALIGN);
    return s < B_MIN ? B_MIN : s;
}

static inline struct chunk *chunk_of(const void *p, size_t chunk_size)
{
    return (struct chunk *)((uintptr_t)p & ~(uintptr_t)(chunk_size - 1));
}
static inline size_t chunk_capacity(size_t chunk_size) { return chunk_size - CHUNK_HDR - CHUNK_FENCE; }

/* Size class of a free block of size s: exact 16-byte classes below
 * CLASS_EXACT_LIMIT, then 16 per power of two. */
static inline unsigned arena_class_of(size_t s)
{
    if (s < CLASS_EXACT_LIMIT)
        return (unsigned)(s >> 4);
    unsigned fl = 63u - (unsigned)__builtin_clzl(s);
    unsigned sl = (unsigned)(s >> (fl - CLASS_SUB_LOG)) & ((1u << CLASS_SUB_LOG) - 1);
    return 64u + (fl - 10u) * (1u << CLASS_SUB_LOG) + sl;
}

/* The smallest size in class c. */
static inline size_t arena_class_lo(unsigned c)
{
    if (c < 64)
        return (size_t)c * 16;
    unsigned fl = 10 + (c - 64) / 16, sl = (c - 64) % 16;
    return ((size_t)1 << fl) + ((size_t)sl << (fl - CLASS_SUB_LOG));
}

/* ---- arena.c, block.c, chunk.c, purge.c, remote.c ---- */

/* Sets up an arena in zeroed memory. */
MA_HIDDEN void arena_init(struct arena *a, unsigned index, size_t chunk_size, unsigned reserve, unsigned retain_ms);
/* The decay pass, at most once per retain_ms: gives back what stayed unused
 * since the pass before (wholly free chunks beyond the reserve, the pages
 * of big free blocks). Runs as the lock is taken and from the background
 * purger (force: whenever the purger asks, still at most once per
 * retain_ms). Lock held. */
MA_HIDDEN void arena_decay(struct arena *a);
/* Takes the lock, counting acquisitions and waits; returns 1 if it had to
 * wait. */
MA_HIDDEN int arena_lock(struct arena *a);
MA_HIDDEN void arena_unlock(struct arena *a);
/* Moves every block on the remote stacks to the quick lists (bigger ones
 * into the free lists), checking each. Lock held. */
MA_HIDDEN void arena_drain(struct arena *a);
/* The periodic drain: only the stacks that no bin took whole since the
 * last such call (a class some thread allocates is taken whole again, with
 * no block walked under the lock). Lock held. */
MA_HIDDEN void arena_drain_stale(struct arena *a);
/* A payload of a block of at least `bsize` bytes, or NULL if no chunk could
 * be mapped. Lock held. */
MA_HIDDEN void *arena_alloc(struct arena *a, size_t bsize);
/* As arena_alloc, for a block that is growing (realloc): prefers a free
 * block that leaves as much again free after it. Lock held. */
MA_HIDDEN void *arena_alloc_growing(struct arena *a, size_t bsize);
/* Carves up to n blocks of at least bsize bytes (a block size; exactly bsize
 * below CLASS_EXACT_LIMIT) for a thread cache and puts their payloads,
 * keyed as cached blocks, in front of the list *head (a bin; linked
 * through the first payload word) in the order they were carved. Counts
 * them in in_use, not in allocs, and adds their bytes to *bytes. Returns
 * how many (fewer only if no chunk could be mapped). Lock held. */
MA_HIDDEN unsigned arena_alloc_batch(struct arena *a, size_t bsize, unsigned n, void **head, size_t *bytes);
/* A payload aligned to `align` (power of two, > 16), block at least `bsize`.
 * Lock held. */
MA_HIDDEN void *arena_alloc_aligned(struct arena *a, size_t bsize, size_t align);
/* Frees the block at payload p of this arena. Lock held. */
MA_HIDDEN void arena_free(struct arena *a, void *p);

/* Pushes payload p of a block of `size` bytes, owned by `a`, on the remote
 * stack of its class: no lock, one CAS. */
MA_HIDDEN void arena_free_remote(struct arena *a, void *p, size_t size);
/* Empties the remote stack of quick class cls and returns its payloads
 * (linked through their first word, each keyed), storing their number in
 * *count: no lock, one atomic exchange, no block touched. NULL if the
 * stack is empty or holds more than `max` blocks (one thread's bin would
 * hoard what the arena's other threads could use: arena_drain_class parks
 * them for everyone). */
MA_HIDDEN void *arena_remote_take(struct arena *a, unsigned cls, uint32_t max, uint32_t *count);
/* Moves the blocks on remote stack cls to the quick lists (bigger ones into
 * the free lists), checking each. Lock held. */
MA_HIDDEN void arena_drain_class(struct arena *a, unsigned cls);
/* Resizes the block at p in place to at least `bsize`; returns 1 on success,
 * 0 if it must move. Lock held. */
MA_HIDDEN int arena_resize(struct arena *a, void *p, size_t bsize);
/* Validates that payload p is an allocated block of chunk c (cheap checks);
 * aborts naming `fn` otherwise. */
MA_HIDDEN void arena_validate(const struct chunk *c, const void *p, const char *fn);
/* Releases wholly free chunks (all of them) and the interior pages of large
 * free blocks; returns bytes given back. Lock held. */
MA_HIDDEN size_t arena_trim(struct arena *a);

/* The arena's last thread has left it: drains the remote stacks,
 * coalesces what is parked and, if enough is idle, discards the pages of
 * free blocks (see purge.c). Lock held. */
MA_HIDDEN void arena_orphaned(struct arena *a);
/* A thread has left the arena, others remain: the same page discarding,
 * if three quarters of the arena is idle. Lock held. */
MA_HIDDEN void arena_thread_left(struct arena *a);
/* Sets whether a remote free drains the arena's stack at once (orphan: no
 * thread of the arena will) or only past the bound. Any thread. */
MA_HIDDEN void arena_set_orphan(struct arena *a, int orphan);

/* ---- check.c ---- */

/* Verifies every invariant of the arena; aborts with a message on the first
 * violation. Lock held. */
MA_HIDDEN void arena_check(struct arena *a);
/* Writes the arena's free lists and usage through b. Lock held. */
MA_HIDDEN void arena_print(struct arena *a, struct ma_buf *b);

/* ---- quick.c ---- */

/* Parks a NULL-terminated list of count cached blocks of class cls (each
 * keyed, `bytes` in all) on the quick list; coalesces everything parked if
 * that passes the limit (quick_over). `idle`: a thread cache gives them back because the
 * thread has not asked for their size lately (counted; without retention
 * they are coalesced at once instead of parked). Lock held. */
MA_HIDDEN void arena_quick_put(struct arena *a, unsigned cls, void *head, uint32_t count, size_t bytes, int idle);
/* Releases a NULL-terminated list of count cached blocks (keyed, of any
 * class) into the free lists, as free would. Lock held. */
MA_HIDDEN void arena_release_cached(struct arena *a, void *head, uint32_t count);
/* Moves up to n parked blocks of class cls (at least one segment) onto the
 * list *head (keys kept), which ends in LIST_END and is LIST_END when empty
 * (a thread-cache bin). Returns how many. Lock held. */
MA_HIDDEN unsigned arena_quick_take(struct arena *a, unsigned cls, unsigned n, void **head);
/* Coalesces into the free lists the first segment of the biggest
 * non-empty quick list below class *cls, which it lowers to that list's
 * class + 1; 0 if none is. Lock held. */
MA_HIDDEN int arena_release_segment(struct arena *a, unsigned *cls);
/* Coalesces every quick list whose class no refill has asked for since
 * the last such pass, and starts a new one. Lock held. */
MA_HIDDEN void arena_release_unasked(struct arena *a);
/* Coalesces every parked block into the free lists. Lock held. */
MA_HIDDEN void arena_consolidate(struct arena *a);
/* Called, the arena's lock held, before an arena maps a chunk of `bytes`:
 * releases memory that the layers above keep resident for reuse (src/
 * sets it to large_shed at init; NULL: nothing to release). It must take
 * no arena lock. */
MA_HIDDEN extern size_t (*arena_chunk_shed)(size_t bytes);

/* What arena_walk reports: each chunk, then each of its blocks in address
 * order (the fence excluded). */
struct arena_visitor {
    void (*chunk)(void *ctx, const struct chunk *c);
    void (*block)(void *ctx, const struct chunk *c, const struct block *b, size_t size, int in_use);
    void *ctx;
};
/* Visits every chunk and block of the arena. Lock held. */
MA_HIDDEN void arena_walk(struct arena *a, const struct arena_visitor *v);
/* First block of a chunk. */
static inline struct block *chunk_first_block(const struct chunk *c)
{
    return (struct block *)((char *)c + CHUNK_HDR);
}

#endif /* MA_ARENA_H */
