/*
 * tcache.h - the thread cache: per thread, per size class, a bounded LIFO
 * of free blocks of the thread's own arena. malloc pops and free pushes
 * with no lock and no atomic operation; refill and flush move a batch under
 * one acquisition of the arena lock.
 *
 * A cached block stays "allocated" as far as its arena's heap is concerned
 * (in-use bit set); its first payload word links the list and its second
 * holds the cached key (arena.h), so a second free of a cached block is
 * recognised instead of linking the block twice. Bins go back to the arena's
 * quick lists of the same classes, and come from them, as list splices.
 */
#ifndef MA_TCACHE_H
#define MA_TCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "process.h"
#include "../arenas/arena.h"

#define TC_MAX_BLOCK QUICK_MAX_BLOCK                 /* largest block size on the inline fast paths */
#define TC_MAX_REQUEST (TC_MAX_BLOCK - B_OVERHEAD)   /* largest request they serve */
#define TC_SLOTS (TC_MAX_BLOCK / 16 + 1)             /* size/16 -> class tables */
/* Medium blocks, of the classes from QUICK_CLASSES up to TC_NCLASS (8 KiB
 * to 256 KiB; bigger ones up to the mmap threshold come from the arena
 * under its lock), are cached in bins of the same
 * kind, reached through the miss paths (tcache_medium_pop, free_located):
 * no lock either, a few dozen instructions more than a small block. Their
 * bins hold at most MEDIUM_BIN_BYTES each and TC_MEDIUM_BUDGET in all. */
#define TC_NCLASS 193                                /* arena_class_of(256 KiB) + 1 */
#ifndef TC_MEDIUM_BUDGET
#define TC_MEDIUM_BUDGET ((size_t)4 << 20)
#endif

#define TC_EXACT_LIMIT CLASS_EXACT_LIMIT  /* below it, a block of size s is in class s / 16 */

/* The bins are parallel arrays rather than an array of structs so that the
 * fast paths address them directly off the thread pointer (an element
 * scale of 8 or 4; a 16-byte struct would need its address computed). A
 * bin may take room[c] more blocks before it flushes: pushing tests the
 * decrement's sign, no bound to load.
 *
 * head[] comes first and starts at the smallest class (TC_FIRST), so that
 * the fast paths, which load and then store a head, address it with no
 * displacement: gcc 12 spends an instruction on the address (a lea) when
 * an element it loads and stores needs one. The other arrays are indexed
 * by class. */
#define TC_FIRST (B_MIN / 16) /* the smallest class: blocks of B_MIN bytes */
struct tcache {
    /* head[c - TC_FIRST]: payloads of class c, linked through their first
     * word; the last is TC_NOBIN's, always empty. */
    void *head[TC_NCLASS + 1 - TC_FIRST];
    int32_t room[TC_NCLASS];  /* max[c] - blocks held (in head[] and reserve[]) */
    uint32_t max[TC_NCLASS];  /* bound of each bin: starts small, grows on overflow */
    size_t grown_bytes;       /* what the bounds grew by since setup, in bytes of blocks */
    /* Each bin's older blocks, which the fast paths do not see: at an
     * overflow the list the thread has pushed becomes the reserve whole, and
     * the reserve it replaces goes to the arena whole, so a run of frees
     * parks half a bin at a time without walking it to find where to cut.
     * A pop that finds head[] empty takes the reserve back, without a lock.
     * NULL-terminated; reserve_n[c] blocks. */
    void *reserve[TC_NCLASS];
    uint32_t reserve_n[TC_NCLASS];
    /* Blocks pushed since the thread started (a pop is not counted, see
     * counters_merge), and what that count was at the last merge into the
     * arena's counters; since that merge, blocks that came into the bins
     * from the arena and that went back to it; and what the bins held at
     * that merge. */
    uint64_t frees, frees_merged;
    uint64_t moved_in, moved_out, held;
    uint64_t remote_taken;    /* blocks taken from remote stacks since then */
    /* The pagemap tag (PAGEMAP_CHUNK + index) of the arena this thread
     * caches for, or PAGEMAP_NEVER when it does not cache: free() compares
     * the freed granule's byte with it, one comparison for "ours, cached". */
    unsigned char tag;
    struct arena *arena;      /* the thread's arena; NULL until first use */
    struct arena *cache_for;  /* == arena while caching, NULL when off */
    uint32_t ops;             /* locked operations since the thread started (wraps) */
    uint32_t swept;           /* ops at the last sweep of idle bins */
    uint32_t used[TC_NCLASS]; /* ops at the last refill of each bin */
    uint32_t own[TC_NCLASS];  /* of the ops since, the bin's own flushes */
    uint32_t patience[TC_NCLASS]; /* ops added to TC_IDLE_OPS before bin c counts as idle (tcache.c) */
    uint8_t idled[TC_NCLASS];     /* 1: bin c went back to the arena as idle since its last refill */
    struct arena *hint;       /* the arena of the first block freed before any allocation */
    uint8_t refilled[TC_NCLASS]; /* 1 once the thread has allocated from bin c (since the last full flush) */
    uint32_t freed_at[TC_NCLASS]; /* frees at the last refill of bin c (wraps) */
    uint32_t taken[TC_NCLASS];    /* blocks that refill brought */
    unsigned lock_ops;        /* locked operations in this window */
    unsigned lock_waited;     /* of those, how many waited for the lock */
    int off;                  /* 1: this thread does not cache (user or exit) */
    int exited;               /* 1: the exit destructor ran (no longer counted in an arena) */
    int internal;             /* 1: allocations serve memalloc itself (decay.c), from its own buffer */
    /* TC_MEDIUM_BUDGET minus the bytes of the blocks the medium bins hold
     * (their own sizes, which a free has at hand and a pop reads from the
     * header it has just loaded): a free tests the sign of its
     * subtraction. Negative past the budget (a refill may bring more). */
    int64_t medium_room;
    uint64_t checked;         /* the tc_check_epoch this cache last verified */
    /* Bytes the thread may still allocate before the next profiler sample
     * (prof.h); INT64_MAX while profiling is off or a sample is being
     * taken, so the count never runs out then. */
    int64_t prof_left;
};

MA_HIDDEN extern __thread struct tcache ma_tc;
/* Request size n (0..TC_MAX_REQUEST) -> the class that serves it, minus
 * TC_FIRST (an index of head[]). Indexed by n itself, not n / 16: one
 * instruction less on malloc's fast path than rounding n first, for 8 KiB
 * that the common sizes touch only the start of. All zero until init:
 * every bin is empty until the thread's cache is set up, so a pop from
 * head[0] finds nothing and takes the slow path. set once at init. */
MA_HIDDEN extern uint8_t tc_request_bin[TC_MAX_REQUEST + 1];
MA_HIDDEN extern uint8_t tc_free_class[TC_SLOTS];  /* block size/16 -> class it can serve */

MA_HIDDEN MA_COLD MA_NORETURN void tcache_corrupt(const void *p);

/* A pop read a misaligned link from head p: the bin is empty (NULL), or
 * block p's link was overwritten (an abort). */
static inline void *tcache_pop_failed(void *p)
{
    if (ma_likely(p == LIST_END))
        return NULL;
    tcache_corrupt(p);
}

/* Bin c's list as the slow paths walk it: NULL when it is empty. */
static inline void *tcache_list(size_t c)
{
    void *h = ma_tc.head[c - TC_FIRST];
    return h != LIST_END ? h : NULL;
}

/* Blocks bin c holds. */
static inline uint32_t tcache_count(unsigned c) { return ma_tc.max[c] - (uint32_t)ma_tc.room[c]; }

/* The head of bin c. */
static inline void **tcache_head(size_t c) { return &ma_tc.head[c - TC_FIRST]; }

/* Counts an allocation of n bytes (at most MA_MAX_REQUEST, so the count
 * cannot overflow) towards the next profiler sample; 1 when this one is to
 * be sampled. */
static inline int prof_due(size_t n)
{
    return ma_unlikely((ma_tc.prof_left -= (int64_t)n) < 0);
}

/* Pops the head of bin i + TC_FIRST, or NULL. Indexed as head[] is, so
 * that the fast paths address the arrays with i plus a constant (as
 * tcache_push_at does). */
static inline void *tcache_pop_at(size_t i)
{
    void *p = ma_tc.head[i];
#if defined(__x86_64__)
    /* p in the return register from the start: gcc 12 puts it elsewhere
     * (the thread pointer's offset takes %rax) and spends a move at the
     * end of malloc. */
    __asm__("" : "+a"(p));
#endif
    /* An empty bin's head is LIST_END, whose link is misaligned, as is
     * the link of a cached block a use-after-free write went over (arena.h,
     * "free-list links"): one test for both. */
    void *next = link_raw(p);
    if (ma_unlikely((uintptr_t)next & (MA_ALIGN - 1)))
        return tcache_pop_failed(p);
    ma_tc.head[i] = next;
    /* The next pop reads that block's link: a block parked or freed long
     * ago is out of the cache, and loading it now overlaps the miss with
     * the caller's work instead of stalling the next malloc (bench/NOTES.md,
     * "The next block of a bin, fetched at the pop"). An empty bin's
     * LIST_END is a valid address too. */
    __builtin_prefetch(next);
    ((uintptr_t *)p)[1] = 0;
    ma_tc.room[i + TC_FIRST]++;
    return p;
}

/* Pops a block for an n-byte request (n <= TC_MAX_REQUEST), or NULL. */
static inline void *tcache_pop(size_t n) { return tcache_pop_at(tc_request_bin[n]); }

/* Pops the head of bin c, or NULL. */
static inline void *tcache_pop_class(unsigned c) { return tcache_pop_at(c - TC_FIRST); }

MA_HIDDEN MA_COLD void tcache_flush_bin(unsigned c);

/* Bin c was used as a refill uses it: it does not count as idle for
 * another TC_IDLE_OPS (plus its patience) of the thread's locked operations. */
static inline void tcache_mark_used(unsigned c)
{
    ma_tc.used[c] = ma_tc.ops;
    ma_tc.own[c] = 0;
}

/* The bin a free block of `size` bytes (B_MIN..TC_MAX_BLOCK) goes to: below
 * 1 KiB the class is the size in 16-byte units, no table. */
static inline size_t tcache_class_of(size_t size)
{
    return ma_likely(size < TC_EXACT_LIMIT) ? size >> 4 : tc_free_class[size >> 4];
}

/* Pushes block p, of class i + TC_FIRST, owned by the thread's arena;
 * flushes half the bin to the arena when it overflows. The decrement is
 * written in assembly for its sign: gcc 12 computes the address of a
 * flag-tested decrement with a separate lea otherwise. */
static inline void tcache_push_at(void *p, size_t i)
{
    /* The key first: stored after the link, it would be loaded again
     * (gcc cannot tell that the link's store leaves it unchanged). */
    ((uintptr_t *)p)[1] = cached_key(p);
    link_set_raw(p, ma_tc.head[i]); /* a head is never NULL (LIST_END when empty) */
    ma_tc.head[i] = p;
    ma_tc.frees++;
#if defined(__x86_64__)
    int full;
    __asm__("subl $1, %0" : "+m"(ma_tc.room[i + TC_FIRST]), "=@ccs"(full));
#else
    int full = --ma_tc.room[i + TC_FIRST] < 0;
#endif
    if (ma_unlikely(full))
        tcache_flush_bin((unsigned)(i + TC_FIRST));
}

/* Pushes block p, of class c. */
static inline void tcache_push(void *p, size_t c) { tcache_push_at(p, c - TC_FIRST); }

/* The calling thread's arena, assigning one (and setting up the cache) on
 * first use. */
MA_HIDDEN struct arena *tcache_arena_slow(void);
/* The same with a hint, the arena of the first block the thread freed
 * before it allocated: it joins that arena unless another has two threads
 * fewer. A thread that takes over the blocks of one that exited (a server
 * handing work to a new thread) then frees them locally instead of
 * remotely; one that only frees (a consumer) never takes an arena. */
MA_HIDDEN struct arena *tcache_adopt(struct arena *hint);
static inline struct arena *tcache_arena(void)
{
    struct arena *a = ma_tc.arena;
    return ma_likely(a != NULL) ? a : tcache_arena_slow();
}

/* Locks the thread's own arena (a), keeping the contention figures that
 * decide whether the thread should move to another arena. */
MA_HIDDEN void tcache_lock(struct arena *a);
/* Unlocks it after a locked operation, then acts on what the thread's
 * recent acquisitions show (a move to another arena) and on a pending
 * ma_check request. */
MA_HIDDEN void tcache_unlock(struct arena *a);
/* Medium bins use every TC_MEDIUM_STEP-th arena class (4 per power of
 * two, where the arena has 16): a request is rounded up to the next of them
 * and a freed block goes to the one at or below its size. Fewer, wider
 * classes let a bin of each hold enough blocks for programs whose sizes
 * spread over the whole range (bench/NOTES.md, "Medium classes"). Every
 * such class starts at a multiple of TC_MEDIUM_GRAIN, so two small tables
 * indexed by size / TC_MEDIUM_GRAIN map a request or a block to its bin. */
#ifndef TC_MEDIUM_STEP
#define TC_MEDIUM_STEP 4u
#define TC_MEDIUM_GRAIN_LOG 11
#endif
#define TC_MEDIUM_MAX_BLOCK ((size_t)256 << 10)                /* the block of class TC_NCLASS - 1 */
#define TC_MEDIUM_MAX_REQUEST (TC_MEDIUM_MAX_BLOCK - B_OVERHEAD)
#define TC_MEDIUM_SLOTS ((TC_MEDIUM_MAX_BLOCK >> TC_MEDIUM_GRAIN_LOG) + 1)
static inline unsigned tcache_medium_floor(unsigned c) { return c & ~(TC_MEDIUM_STEP - 1); }

/* A bin that never holds a block: requests the medium bins must not serve
 * (at or above ma_fast_limit: check mode, the mmap threshold, before init)
 * map to it, so that their pop fails without a test of its own. */
#define TC_NOBIN TC_NCLASS
/* ceil(block / grain) -> the bin that serves it (TC_NOBIN where any
 * request of the slot is at or above ma_fast_limit); block / grain -> the
 * bin a freed block of that size goes to, or 0 where no bin is (below the
 * medium range). Set at init (tcache_set_limit). */
MA_HIDDEN extern uint8_t tc_medium_request_bin[TC_MEDIUM_SLOTS];
MA_HIDDEN extern uint8_t tc_medium_free_bin[TC_MEDIUM_SLOTS];
MA_HIDDEN extern uint32_t tc_class_size[TC_NCLASS];  /* block size a refill of class c carves */

/* The bin of a medium request of n bytes (TC_MAX_REQUEST < n <=
 * TC_MEDIUM_MAX_REQUEST). */
static inline unsigned tcache_medium_class(size_t n)
{
    return tc_medium_request_bin[(n + B_OVERHEAD + ((size_t)1 << TC_MEDIUM_GRAIN_LOG) - 1) >> TC_MEDIUM_GRAIN_LOG];
}

/* Pops a block of medium bin c, or NULL, keeping the count of bytes the
 * medium bins hold. */
static inline void *tcache_medium_pop(unsigned c)
{
    void *p = tcache_pop_class(c);
    if (ma_likely(p != NULL))
        ma_tc.medium_room += block_size(block_of(p));
    return p;
}

/* The medium bins would hold more than TC_MEDIUM_BUDGET with block p, of
 * bin c (medium_room already counts p): under one acquisition of the lock,
 * blocks go back to the arena, the biggest classes first, until they hold
 * at most half of it; then p goes into its bin. */
MA_HIDDEN MA_COLD void tcache_medium_trim_push(void *p, unsigned c, size_t size);

/* Caches freed medium block p of `size` bytes (TC_MAX_BLOCK < size <=
 * TC_MEDIUM_MAX_BLOCK), owned by the thread's arena while it caches; 0 if
 * no bin takes it (the caller frees it). A free that finds the budget
 * spent trims the bins first, so that a batch of medium frees takes the
 * lock once per half budget rather than once a block. */
static inline int tcache_medium_free(void *p, size_t size)
{
    unsigned c = tc_medium_free_bin[size >> TC_MEDIUM_GRAIN_LOG];
    if (ma_unlikely(c == 0))
        return 0;
    if (ma_unlikely((ma_tc.medium_room -= (int64_t)size) < 0)) {
        tcache_medium_trim_push(p, c, size); /* a call of its own: no frame on the common path */
        return 1;
    }
    tcache_push(p, c);
    return 1;
}

/* Serves a medium request of bin c (tcache_medium_class) from the bin, or
 * by refilling it; NULL + ENOMEM if the arena cannot grow. */
MA_HIDDEN void *tcache_medium_alloc(unsigned c);
/* Serves an n-byte request (n <= TC_MAX_REQUEST) by refilling its bin from
 * the arena; NULL + ENOMEM if the arena cannot grow. */
MA_HIDDEN void *tcache_refill(size_t n);
/* Returns every cached block to the arena. */
MA_HIDDEN void tcache_flush_all(void);
/* Turns caching off (flushing) or back on for the calling thread. Returns
 * the previous setting. */
MA_HIDDEN int tcache_set(int on);
/* 1 if p sits in one of the calling thread's bins (a double free). */
MA_HIDDEN int tcache_holds(const void *p);
/* Verifies the calling thread's cache; aborts on a violation. */
MA_HIDDEN void tcache_check(void);
/* ma_check's request to every thread: a cache is private (another thread
 * cannot walk it without racing its owner), so ma_check verifies its own and
 * bumps this epoch, and every other thread verifies its cache at its next
 * refill or flush. */
MA_HIDDEN void tcache_check_all(void);
/* The calling thread is exiting: its cached blocks go back to the arena,
 * and anything it frees from now on goes there directly. */
MA_HIDDEN void tcache_thread_exit(void);
/* In a child after fork: only the calling thread is left in its arena. */
MA_HIDDEN void tcache_fork_child(void);
/* Fills the class tables; called once at init. */
MA_HIDDEN void tcache_init(void);
/* Maps medium requests of limit bytes or more (every one for 0) to
 * TC_NOBIN; called at init and by mallopt, before any allocation, with
 * ma_fast_limit. */
MA_HIDDEN void tcache_set_limit(size_t limit);

#endif /* MA_TCACHE_H */
