/*
 * tcache.c - the slow half of the thread cache: giving a thread its arena,
 * refilling and flushing bins in batches under one lock, moving a thread off
 * an arena whose lock it keeps waiting for, and returning the cache to the
 * arena when the thread exits. The fast half (pop and push) is inline in
 * tcache.h.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "tcache.h"
#include "prof.h"
#include "decay.h"
#include "../base/error.h"

/* Initialised, not zero: a thread starts with the tag that matches no
 * granule, so its first free takes the slow path (which sets it up). */
/* Every bin starts empty: its head is LIST_END (arena.h). */
__thread struct tcache ma_tc __attribute__((tls_model("initial-exec"))) = {
    .head = {[0 ... TC_NCLASS - TC_FIRST] = LIST_END}, .tag = PAGEMAP_NEVER, .medium_room = TC_MEDIUM_BUDGET,
    .prof_left = INT64_MAX};
uint8_t tc_request_bin[TC_MAX_REQUEST + 1];
uint8_t tc_free_class[TC_SLOTS];
uint32_t tc_class_size[TC_NCLASS];
uint8_t tc_medium_request_bin[TC_MEDIUM_SLOTS] = {[0 ... TC_MEDIUM_SLOTS - 1] = TC_NOBIN};
uint8_t tc_medium_free_bin[TC_MEDIUM_SLOTS];
static uint32_t bin_base[TC_NCLASS];   /* a bin's starting bound (bin_blocks of BIN_BYTES) */
static uint32_t bin_cap[TC_NCLASS];    /* the most it may grow to (of BIN_GROW_BYTES) */
static uint32_t take_blocks[TC_NCLASS]; /* blocks of class c in REMOTE_TAKE_BYTES */

static unsigned next_arena;            /* atomic: round-robin assignment */
static uint64_t check_epoch;           /* atomic: bumped by every ma_check */

/* Bytes of blocks a bin may hold before it flushes, to start with: small
 * enough that a thousand idle threads hold little, big enough that a batch
 * amortises the lock. A bin that overflows grows by half instead of
 * flushing, up to BIN_GROW_BYTES, while what the thread's bins have grown
 * by stays within TC_GROWTH bytes; a flush of the whole cache (trim, thread
 * exit, a move to another arena) puts the bounds back. So a class a thread
 * keeps freeing in bursts gets big batches and an idle one stays small
 * (bench/NOTES.md, "Tuning constants"). */
#ifndef BIN_BYTES
#define BIN_BYTES 4096u
#endif
#define BIN_GROW_BYTES 65536u
#ifndef TC_GROWTH
#define TC_GROWTH ((size_t)1 << 20)
#endif
/* An empty bin takes its class's remote stack whole, unwalked, if it holds
 * at most the bin's bound or this many bytes of blocks, whichever is more
 * (the bin then holds more than its bound until it drains or the next push
 * flushes it). Up to the bound alone, a producer that only allocates would
 * have most of its stacks drained block by block under the lock; the price
 * is what the producers' bins hold (bench/NOTES.md, "Tuning constants"). */
#ifndef REMOTE_TAKE_BYTES
#define REMOTE_TAKE_BYTES 32768u
#endif
/* A bin holds at least BIN_MIN blocks and grows to at most BIN_MAX (and
 * BIN_GROW_BYTES), which only bounds classes below 64 bytes: big enough that
 * many threads allocating tiny objects rarely meet at the arena lock
 * (bench/NOTES.md, "Bins of up to 1024 small blocks"). */
#define BIN_MIN 4u
/* The bytes of blocks a medium bin (8 KiB - 256 KiB, tcache.h) may hold. */
#ifndef MEDIUM_BIN_BYTES
#define MEDIUM_BIN_BYTES (512u << 10)
#endif
#define BIN_MAX 1024u

/* A bin the thread has not refilled in this many of its locked operations,
 * not counting its own flushes (a thread that frees a batch of one size,
 * then allocates it again, is not idle in between), is idle: when it
 * overflows it goes back to the arena whole, at its starting bound, and a
 * sweep every as many operations returns every idle bin that holds blocks.
 * A bin the thread allocates from is refilled from time to time; one it
 * only frees into (sizes it no longer allocates) serves nothing
 * (bench/NOTES.md, "Tuning constants"). A bin that is allocated from again
 * after such a return was only used in long rounds: its patience, added to
 * TC_IDLE_OPS, doubles (up to TC_PATIENCE_MAX) (bench/NOTES.md, "Patient
 * bins"). */
#ifndef TC_IDLE_OPS
#define TC_IDLE_OPS 256u
#endif

/* The most a bin's patience grows to: a bin of a class the thread keeps
 * coming back to is returned only after this many more operations. */
#define TC_PATIENCE_MAX ((uint32_t)1 << 16)

/* Window of locked operations over which lock waits are counted, and the
 * share of waits beyond which a thread moves to a less loaded arena. */
#define CONTENTION_WINDOW 64u
#ifndef CONTENTION_WAITS /* -DCONTENTION_WAITS=1000000 builds the no-move variant */
#define CONTENTION_WAITS 16u
#endif


/* Blocks of class c that `bytes` allow, within [BIN_MIN, BIN_MAX]. */
static uint32_t bin_blocks(unsigned c, size_t bytes)
{
    if (tc_class_size[c] == 0)
        return 0;
    size_t n = bytes / tc_class_size[c];
    return (uint32_t)(n < BIN_MIN ? BIN_MIN : n > BIN_MAX ? BIN_MAX : n);
}

void tcache_init(void)
{
    /* A block of class c is at least arena_class_lo(c): a freed block goes
     * to its own (floor) class, a request takes the first class whose lower
     * bound covers its block. */
    for (unsigned k = 0; k < TC_SLOTS; k++)
        tc_free_class[k] = (uint8_t)arena_class_of((size_t)k * 16 < B_MIN ? B_MIN : (size_t)k * 16);
    /* Requests of n bytes share a block size (block_size_for) in runs of
     * 16: each run's bin is worked out once and stored over the run. Every
     * process pays for this table at start, so it is filled per block
     * size, not per request. */
    for (size_t size = B_MIN; size <= TC_MAX_BLOCK; size += MA_ALIGN) {
        size_t lo = size == B_MIN ? 0 : size - B_OVERHEAD - (MA_ALIGN - 1), hi = size - B_OVERHEAD;
        unsigned floor_c = arena_class_of(size);
        memset(&tc_request_bin[lo], (uint8_t)((arena_class_lo(floor_c) < size ? floor_c + 1 : floor_c) - TC_FIRST),
               hi - lo + 1);
    }
    /* Medium bins: the last coarse class at or below a freed block's size.
     * Blocks just above TC_MAX_BLOCK fall below the first medium bin: not
     * cached (0). The request table waits for the limit. */
    for (size_t k = 0; k < TC_MEDIUM_SLOTS; k++) {
        unsigned down = tcache_medium_floor(arena_class_of(k << TC_MEDIUM_GRAIN_LOG));
        tc_medium_free_bin[k] = (uint8_t)(down >= QUICK_CLASSES && down < TC_NCLASS ? down : 0);
    }
    for (unsigned c = 0; c < TC_NCLASS; c++) {
        tc_class_size[c] = c < 2 ? 0 : (uint32_t)arena_class_lo(c);
        take_blocks[c] = tc_class_size[c] ? REMOTE_TAKE_BYTES / tc_class_size[c] : 0;
        bin_base[c] = bin_blocks(c, BIN_BYTES);
        bin_cap[c] = bin_blocks(c, BIN_GROW_BYTES);
        if (c >= QUICK_CLASSES) {
            /* A medium bin starts at one block, so a thread that allocates
             * a size once carves one, and grows on overflow to
             * MEDIUM_BIN_BYTES of blocks (at least one). */
            uint32_t n = MEDIUM_BIN_BYTES / tc_class_size[c];
            bin_base[c] = 1;
            bin_cap[c] = n != 0 ? n : 1;
        }
    }
}

void tcache_set_limit(size_t limit)
{
    /* The first coarse class at or above a request's block; TC_NOBIN for
     * a slot whose biggest request reaches the limit. */
    for (size_t k = 0; k < TC_MEDIUM_SLOTS; k++) {
        size_t bytes = k << TC_MEDIUM_GRAIN_LOG;
        unsigned down = arena_class_of(bytes), up = down + (arena_class_lo(down) < bytes);
        up = tcache_medium_floor(up + TC_MEDIUM_STEP - 1);
        unsigned c = bytes > TC_MAX_BLOCK && up < TC_NCLASS ? up : 0;
        if (bytes - B_OVERHEAD >= limit)
            c = TC_NOBIN;
        tc_medium_request_bin[k] = (uint8_t)c;
    }
}

/* ---- arena assignment ---- */

/* Puts every bound back to its start. The bins must be empty. */
static void bins_reset(void)
{
    ma_tc.grown_bytes = 0;
    for (unsigned c = 0; c < TC_NCLASS; c++) {
        uint32_t max = bin_base[c];
        ma_tc.max[c] = max;
        ma_tc.room[c] = (int32_t)max;
        ma_tc.refilled[c] = 0;
    }
}

/* Bin c overflowed: lets it hold half as many blocks again, if its class
 * and the thread's budget allow. Returns 1 if it grew (nothing to flush). */
static int bin_grow(unsigned c)
{
    uint32_t max = ma_tc.max[c], cap = bin_cap[c];
    if (max >= cap)
        return 0;
    uint32_t half = max / 2 != 0 ? max / 2 : 1;
    uint32_t more = half < cap - max ? half : cap - max;
    /* Medium bins are bounded by the thread's medium budget instead. */
    size_t bytes = c < QUICK_CLASSES ? (size_t)more * tc_class_size[c] : 0;
    if (more == 0 || ma_tc.grown_bytes + bytes > TC_GROWTH)
        return 0;
    ma_tc.max[c] += more;
    ma_tc.room[c] += (int32_t)more;
    ma_tc.grown_bytes += bytes;
    return 1;
}

/* Counts the thread out of its arena (if it has one) and into a (NULL for
 * a thread that is exiting): the per-arena thread counts that steer moves
 * and tell an orphaned arena. Returns 1 if the thread was the last of the
 * arena it left. */
static int arena_join(struct arena *a)
{
    int last = 0;
    if (ma_tc.arena != NULL)
        last = __atomic_sub_fetch(&ma_tc.arena->threads, 1, __ATOMIC_RELAXED) == 0;
    if (a != NULL)
        __atomic_fetch_add(&a->threads, 1, __ATOMIC_RELAXED);
    return last;
}

/* In a forked child only the forking thread lives on: every other arena
 * is orphaned (what the child frees into it coalesces at once). */
void tcache_fork_child(void)
{
    for (unsigned i = 0; i < ma_narenas; i++) {
        __atomic_store_n(&ma_arenas[i].threads, 0, __ATOMIC_RELAXED);
        arena_set_orphan(&ma_arenas[i], 1);
    }
    if (ma_tc.arena != NULL && !ma_tc.exited) {
        __atomic_store_n(&ma_tc.arena->threads, 1, __ATOMIC_RELAXED);
        arena_set_orphan(ma_tc.arena, 0);
    }
}

static inline int bin_idle(unsigned c)
{
    return ma_tc.ops - ma_tc.used[c] - ma_tc.own[c] > TC_IDLE_OPS + ma_tc.patience[c];
}

/* Bin c is empty: back to its starting bound, its growth returned to the
 * thread's budget. */
static void bin_shrink(unsigned c)
{
    uint32_t base = bin_base[c];
    if (ma_tc.max[c] > base) {
        if (c < QUICK_CLASSES)
            ma_tc.grown_bytes -= (size_t)(ma_tc.max[c] - base) * tc_class_size[c];
        ma_tc.max[c] = base;
    }
    ma_tc.room[c] = (int32_t)base;
}

static void arena_set(struct arena *a)
{
    ma_tc.arena = a;
    ma_tc.cache_for = (ma_tc.off || ma_cfg.check) ? NULL : a;
    ma_tc.tag = (unsigned char)(ma_tc.cache_for != NULL ? PAGEMAP_CHUNK + (int)a->index : PAGEMAP_NEVER);
}

/* The arena for a new thread. With a hint (the arena of the block the
 * thread frees first) the hinted arena, unless another has at least two
 * threads fewer: the rule of contention moves (arena_move), under which
 * joining it still keeps the load even. Else an arena that has no thread
 * but still holds memory, that of threads that exited. Else the next
 * round-robin, so N threads on N arenas get one each (a least-loaded pick
 * counts idle threads, such as a main thread that only starts workers, and
 * piles the workers onto the other arenas: bench/NOTES.md, "New threads
 * and the arenas of exited ones"). */
static struct arena *arena_pick(struct arena *hint)
{
    unsigned start = __atomic_fetch_add(&next_arena, 1, __ATOMIC_RELAXED) % ma_narenas;
    unsigned fewest = ~0u;
    struct arena *kept = NULL;
    size_t kept_bytes = 0;
    for (unsigned k = 0; k < ma_narenas; k++) {
        struct arena *a = &ma_arenas[k];
        unsigned t = __atomic_load_n(&a->threads, __ATOMIC_RELAXED);
        size_t mapped = __atomic_load_n(&a->mapped, __ATOMIC_RELAXED);
        fewest = t < fewest ? t : fewest;
        if (t == 0 && mapped > kept_bytes) {
            kept = a;
            kept_bytes = mapped;
        }
    }
    if (hint != NULL && __atomic_load_n(&hint->threads, __ATOMIC_RELAXED) < fewest + 2)
        return hint;
    /* An arena whose threads have all exited keeps their memory for the
     * threads to come (purge.c): the next one takes it over, the arena
     * holding the most first, rather than growing another. */
    if (kept != NULL)
        return kept;
    return &ma_arenas[start];
}

struct arena *tcache_adopt(struct arena *hint)
{
    ma_ensure_init();
    process_note_allocation();
    struct arena *a = arena_pick(hint);
    bins_reset();
    arena_join(a);
    arena_set(a);
    process_thread_start();
    ma_tc.prof_left = prof_next_interval();
    return ma_tc.arena;
}

struct arena *tcache_arena_slow(void)
{
    return tcache_adopt(ma_tc.hint);
}

/* Merges the cache's counters into its arena. A pop is not counted (it
 * would cost malloc's fast path an instruction): the blocks the bins handed
 * out are the blocks pushed, plus those that came in from the arena, minus
 * those that went back, minus what the bins gained. Run once per window of
 * locked operations and on a full flush, so the arena's allocs and frees
 * lag the thread by at most that much. Lock held. */
static void counters_merge(struct arena *a)
{
    uint64_t held = 0;
    for (unsigned c = 0; c < TC_NCLASS; c++)
        held += tcache_count(c);
    uint64_t frees = ma_tc.frees - ma_tc.frees_merged;
    a->allocs += frees + ma_tc.moved_in - ma_tc.moved_out + ma_tc.held - held;
    a->frees += frees + ma_tc.remote_taken;
    a->remote_frees += ma_tc.remote_taken;
    ma_tc.held = held;
    ma_tc.frees_merged = ma_tc.frees;
    ma_tc.moved_in = 0;
    ma_tc.moved_out = 0;
    ma_tc.remote_taken = 0;
}

/* Called when a quarter of the thread's recent lock acquisitions waited:
 * moves it to the arena with the fewest threads, if that has at least two
 * fewer than its own, so that a move always evens the load out. Moving
 * between equally loaded arenas only trades one wait for another, and it
 * costs memory: what the thread freed stays in the old arena's heap while
 * its new blocks grow the other's (bench/NOTES.md, "Does moving a contended
 * thread to another arena help?"). */
static MA_COLD void arena_move(void)
{
    struct arena *own = ma_tc.arena, *best = own;
    unsigned own_threads = __atomic_load_n(&own->threads, __ATOMIC_RELAXED), best_threads = own_threads;
    for (unsigned i = 0; i < ma_narenas; i++) {
        unsigned t = __atomic_load_n(&ma_arenas[i].threads, __ATOMIC_RELAXED);
        if (t < best_threads) {
            best = &ma_arenas[i];
            best_threads = t;
        }
    }
    if (best == own || best_threads + 2 > own_threads)
        return;
    /* The place is claimed first, from the count this thread saw: two
     * threads that saw the same empty arena must not both move to it (each
     * would even the load out alone; together they only trade places).
     * The one that loses stays, and reviews again in its next window. */
    if (!__atomic_compare_exchange_n(&best->threads, &best_threads, best_threads + 1, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    tcache_flush_all();
    __atomic_fetch_sub(&own->threads, 1, __ATOMIC_RELAXED);
    arena_set(best);
}

void tcache_lock(struct arena *a)
{
    ma_tc.lock_waited += (unsigned)arena_lock(a);
    ma_tc.lock_ops++;
    ma_tc.ops++;
}

/* After the unlock that ends a slow-path operation: verifies the cache if
 * an ma_check asked since the last time, then reviews contention. */
static void contention_review(void)
{
    uint64_t e = __atomic_load_n(&check_epoch, __ATOMIC_RELAXED);
    if (ma_unlikely(e != ma_tc.checked)) {
        ma_tc.checked = e;
        tcache_check();
    }
    if (ma_tc.lock_ops < CONTENTION_WINDOW)
        return;
    /* A thread past its exit destructor (other destructors may still
     * allocate) is counted nowhere and must not be counted in again. */
    int move = ma_tc.lock_waited >= CONTENTION_WAITS && ma_narenas > 1 && !ma_tc.exited;
    ma_tc.lock_ops = 0;
    ma_tc.lock_waited = 0;
    if (move)
        arena_move();
}

/* Whether arena a holds memory a decay pass would give back: wholly free
 * chunks beyond the reserve, or megabytes of free blocks. Lock held. */
static int arena_retaining(const struct arena *a)
{
    return a->empty_chunks > a->reserve || a->free_bytes + a->quick_bytes >= ((size_t)8 << 20);
}

void tcache_unlock(struct arena *a)
{
    int retaining = arena_retaining(a);
    arena_unlock(a);
    decay_wake(retaining);
    contention_review();
}

/* ---- refill and flush ---- */

static void bin_park(struct arena *a, unsigned c, uint32_t n);
static void reserve_park(struct arena *a, unsigned c);

/* Parks every block bin c holds, its reserve and the rest. Lock held.
 * Always inline: out of line, gcc stops inlining bin_return into the
 * flush paths (churn 64k: 0.12 instructions a pair more). */
static inline __attribute__((always_inline)) void bin_park_all(struct arena *a, unsigned c)
{
    reserve_park(a, c);
    bin_park(a, c, tcache_count(c));
}

/* An idle bin goes back to the arena whole, at its starting bound, marked
 * idle (which blocks_park tells the arena). Lock held. */
static void bin_return(struct arena *a, unsigned c)
{
    ma_tc.idled[c] = 1;
    bin_park_all(a, c);
    bin_shrink(c);
}

/* Upkeep at the start of a refill or flush, lock held. Remote frees of
 * classes this thread does not refill are otherwise taken only when the
 * arena runs out (block_find) or at a bound: at the end of a window of
 * locked operations, every stack that no bin took whole since the last
 * such drain is drained. A stack that bins keep taking whole is left to
 * them: walking it here, block by block under the lock, would touch lines
 * the freeing CPUs had just written (bench/NOTES.md, "The periodic drain
 * leaves stacks that bins take whole"). Idle bins (TC_IDLE_OPS) go back to
 * the arena. */
static void locked_upkeep(struct arena *a)
{
    if (ma_tc.lock_ops == CONTENTION_WINDOW) {
        arena_drain_stale(a);
        counters_merge(a);
    }
    if (ma_tc.ops - ma_tc.swept >= TC_IDLE_OPS) {
        ma_tc.swept = ma_tc.ops;
        for (unsigned c = TC_FIRST; c < TC_NCLASS; c++) {
            if ((*tcache_head(c) != LIST_END || ma_tc.reserve_n[c] != 0) && bin_idle(c))
                bin_return(a, c);
        }
    }
}

/* Pops the head of bin c, small or medium, or NULL. */
static inline void *bin_pop(unsigned c)
{
    return c >= QUICK_CLASSES ? tcache_medium_pop(c) : tcache_pop_class(c);
}

/* Serves a request of bin c (n bytes, for a thread that does not cache):
 * the bin's reserve, its class's remote stack, else a refill under the
 * lock. */
static void *refill_class(unsigned c, size_t n)
{
    struct arena *a = tcache_arena();
    int small = c < QUICK_CLASSES;
    void *p;
    /* A small bin that runs empty again while the thread freed fewer
     * blocks (of any size) than the bin's last refill brought is serving
     * a run of allocations, a batch bigger than the bin: it grows, as it
     * does when it overflows, so that the run takes the lock for ever
     * bigger refills instead of one per half bin. A bin that empties amid
     * as many frees as allocations (sizes that come and go at random)
     * keeps its bound: more blocks would only come back at the next
     * overflow (bench/NOTES.md, "Bins that run empty in a batch grow").
     * Nor does a thread that has never freed (a producer whose blocks
     * other threads free): its bins would only hold more of what it hands
     * out. Medium bins grow only on overflow. */
    uint32_t freed = (uint32_t)ma_tc.frees - ma_tc.freed_at[c];
    int grow = small && ma_tc.refilled[c] && freed < ma_tc.taken[c] && ma_tc.frees != 0;
    ma_tc.freed_at[c] = (uint32_t)ma_tc.frees;
    tcache_mark_used(c);
    if (ma_unlikely(ma_tc.idled[c])) {
        /* Returned as idle, yet allocated from again: the thread uses the
         * class in rounds longer than its patience (a batch allocated, all
         * of it freed, then again), so it waits twice as long next time. */
        ma_tc.idled[c] = 0;
        uint32_t p = ma_tc.patience[c];
        ma_tc.patience[c] = p == 0 ? TC_IDLE_OPS : p < TC_PATIENCE_MAX ? 2 * p : TC_PATIENCE_MAX;
    }
    ma_tc.refilled[c] = 1;
    if (ma_tc.cache_for == a) {
        /* The bin may still hold blocks: realloc comes here directly. */
        if ((p = bin_pop(c)) != NULL)
            return p;
        if (ma_tc.reserve_n[c] != 0) {
            /* The bin's older blocks: no lock, no block touched. */
            *tcache_head(c) = ma_tc.reserve[c];
            ma_tc.reserve[c] = NULL;
            ma_tc.reserve_n[c] = 0;
            return bin_pop(c);
        }
        /* What other threads freed into this class becomes the bin as it
         * stands, if it fits the bin: one exchange, no lock, no block
         * touched. (Medium blocks share one remote stack.) */
        uint32_t k;
        uint32_t cap = ma_tc.max[c] > take_blocks[c] ? ma_tc.max[c] : take_blocks[c];
        void *list = small ? arena_remote_take(a, c, cap, &k) : NULL;
        if (list != NULL) {
            *tcache_head(c) = list;
            ma_tc.room[c] -= (int32_t)k;
            ma_tc.remote_taken += k;
            ma_tc.moved_in += k;
            return bin_pop(c);
        }
    }
    tcache_lock(a);
    locked_upkeep(a);
    if (ma_tc.cache_for == a) {
        if (grow)
            bin_grow(c);
        unsigned want = ma_tc.max[c] / 2 ? ma_tc.max[c] / 2 : 1;
        unsigned got = 0;
        size_t carved = 0;
        if (small) {
            arena_drain_class(a, c); /* a stack too big to take whole */
            /* Parked blocks first (a splice, keys already set), then fresh
             * blocks carved in one batch, marked as they join the bin. */
            got = arena_quick_take(a, c, want, tcache_head(c));
        }
        if (got < want) {
            /* Below 1 KiB a bin holds blocks of exactly its size (the quick
             * lists count on it), and a batch carves nothing else. */
            got += arena_alloc_batch(a, tc_class_size[c], want - got, tcache_head(c), &carved);
        }
        ma_tc.room[c] -= (int32_t)got;
        ma_tc.taken[c] = got;
        ma_tc.moved_in += got;
        if (!small)
            ma_tc.medium_room -= (int64_t)carved; /* a carve may leave a block a little bigger than its class */
        p = bin_pop(c);
    } else {
        p = arena_alloc(a, block_size_for(n));
    }
    tcache_unlock(a);
    if (p == NULL)
        errno = ENOMEM;
    return p;
}

void *tcache_refill(size_t n)
{
    return refill_class(tc_request_bin[n] + TC_FIRST, n);
}

void *tcache_medium_alloc(unsigned c)
{
    void *p = tcache_medium_pop(c);
    if (p != NULL)
        return p;
    /* An empty bin with no reserve takes a block of the next bin up (a
     * class at most a quarter bigger; the block goes back there when
     * freed) before it refills: where sizes spread over the medium range,
     * one bin runs dry while its neighbour holds blocks, and a refill
     * carves under the lock what a flush will coalesce again
     * (bench/NOTES.md, "A medium miss takes the next bin's block"). */
    unsigned up = c + TC_MEDIUM_STEP;
    if (ma_tc.reserve_n[c] == 0 && up < TC_NCLASS && (p = tcache_medium_pop(up)) != NULL)
        return p;
    return refill_class(c, arena_class_lo(c));
}


/* Blocks in head[c], the part of bin c the fast paths see. */
static inline uint32_t top_count(unsigned c) { return tcache_count(c) - ma_tc.reserve_n[c]; }

/* Parks the first n (>= 1) of the blocks linked from `first` on the
 * arena's quick list of class c, as one segment, and returns the block that
 * followed them (LIST_END if none). `whole`: they are the whole list, so
 * below 1 KiB nothing is walked (above it the walk sums their bytes). A bin
 * not refilled since it went back as idle parks them as idle. Lock held. */
static void *blocks_park(struct arena *a, unsigned c, void *first, uint32_t n, int whole)
{
    int exact = c < EXACT_CLASSES;
    size_t bytes = (size_t)n * tc_class_size[c];
    void *rest = LIST_END;
    if (!exact || !whole) {
        void *last = first;
        if (!exact)
            bytes = block_size(block_of(first));
        for (uint32_t i = 1; i < n; i++) {
            void *next = link_raw(last);
            link_check(last, next, PAGEMAP_CHUNK + (int)a->index);
            last = next;
            if (!exact)
                bytes += block_size(block_of(last));
        }
        rest = link_raw(last);
        link_set(last, NULL);
    }
    ma_tc.room[c] += (int32_t)n;
    ma_tc.moved_out += n;
    if (c < QUICK_CLASSES) {
        arena_quick_put(a, c, first, n, bytes, ma_tc.idled[c]);
    } else {
        /* No quick lists of medium blocks: they go back to the free lists. */
        ma_tc.medium_room += (int64_t)bytes;
        arena_release_cached(a, first, n);
    }
    return rest;
}

/* Cuts the first n blocks off head[c] and parks them. Lock held. */
static void bin_park(struct arena *a, unsigned c, uint32_t n)
{
    if (n != 0)
        *tcache_head(c) = blocks_park(a, c, *tcache_head(c), n, n == top_count(c));
}

/* Parks bin c's reserve whole. Lock held. */
static void reserve_park(struct arena *a, unsigned c)
{
    if (ma_tc.reserve_n[c] == 0)
        return;
    blocks_park(a, c, ma_tc.reserve[c], ma_tc.reserve_n[c], 1);
    ma_tc.reserve[c] = NULL;
    ma_tc.reserve_n[c] = 0;
}

/* Bin c overflowed: half of it goes back to the arena, or all of it if
 * the bin is idle. The half is the reserve if there is one (the blocks
 * pushed before the last overflow), else the newest blocks beyond half the
 * bound (found by walking); what remains becomes the reserve. */
void tcache_flush_bin(unsigned c)
{
    /* A bin grows only for a class the thread allocates: a thread that
     * only frees (a consumer) would otherwise hoard its producers' blocks
     * in bins grown to their most. */
    if (!bin_idle(c) && ma_tc.refilled[c] && bin_grow(c))
        return;
    struct arena *a = ma_tc.arena;
    tcache_lock(a);
    ma_tc.own[c]++;
    locked_upkeep(a);
    if (bin_idle(c)) {
        bin_return(a, c); /* unless the upkeep's sweep just did */
    } else {
        if (ma_tc.reserve_n[c] != 0)
            reserve_park(a, c);
        else
            bin_park(a, c, tcache_count(c) - ma_tc.max[c] / 2);
        ma_tc.reserve[c] = tcache_list(c);
        ma_tc.reserve_n[c] = top_count(c);
        *tcache_head(c) = LIST_END;
    }
    tcache_unlock(a);
}

void tcache_medium_trim_push(void *p, unsigned c, size_t size)
{
    struct arena *a = ma_tc.arena;
    tcache_lock(a);
    ma_tc.medium_room += (int64_t)size; /* p is not in a bin yet */
    for (unsigned k = TC_NCLASS; k-- > QUICK_CLASSES && ma_tc.medium_room < (int64_t)TC_MEDIUM_BUDGET / 2;)
        reserve_park(a, k);
    for (unsigned k = TC_NCLASS; k-- > QUICK_CLASSES && ma_tc.medium_room < (int64_t)TC_MEDIUM_BUDGET / 2;)
        bin_park(a, k, tcache_count(k));
    /* p goes into its bin before the unlock, whose contention review may
     * move the thread to another arena (p is a block of this one); so the
     * push must not overflow the bin, whose flush would take the lock. */
    if (ma_tc.room[c] <= 0)
        bin_park_all(a, c);
    ma_tc.medium_room -= (int64_t)size;
    tcache_push(p, c);
    tcache_unlock(a);
}

void tcache_flush_all(void)
{
    struct arena *a = ma_tc.arena;
    if (a == NULL)
        return;
    tcache_lock(a);
    arena_drain(a);
    counters_merge(a);
    for (unsigned c = TC_FIRST; c < TC_NCLASS; c++)
        bin_park_all(a, c);
    arena_unlock(a);
    bins_reset();
}

int tcache_set(int on)
{
    int was = !ma_tc.off;
    if (!on)
        tcache_flush_all();
    ma_tc.off = !on;
    if (ma_tc.arena != NULL)
        arena_set(ma_tc.arena);
    return was;
}

/* The last thread of an arena leaves it emptied of what only its threads
 * would have reused (arena_orphaned). */
void tcache_thread_exit(void)
{
    tcache_flush_all();
    struct arena *a = ma_tc.arena;
    if (a != NULL) {
        int last = arena_join(NULL);
        arena_lock(a);
        if (last)
            arena_orphaned(a);
        else
            arena_thread_left(a);
        /* What the arena keeps for the threads to come goes back by age:
         * the purger must be running to see it age. */
        int retaining = arena_retaining(a);
        arena_unlock(a);
        decay_wake(retaining);
    }
    ma_tc.exited = 1;
    ma_tc.off = 1;
    ma_tc.cache_for = NULL;
    ma_tc.tag = PAGEMAP_NEVER;
}

/* ---- checking ---- */

void tcache_corrupt(const void *p)
{
    ma_fatal("malloc", "corrupted free list", p);
}

static int list_holds(const void *x, const void *p)
{
    for (; x != NULL; x = link_get(x))
        if (x == p)
            return 1;
    return 0;
}

int tcache_holds(const void *p)
{
    for (unsigned c = TC_FIRST; c < TC_NCLASS; c++)
        if (list_holds(tcache_list(c), p) || list_holds(ma_tc.reserve[c], p))
            return 1;
    return 0;
}

void tcache_check_all(void)
{
    ma_tc.checked = __atomic_add_fetch(&check_epoch, 1, __ATOMIC_RELAXED);
    tcache_check();
}

/* Verifies the blocks of one list of bin c (its head list or its
 * reserve), counting them on from *n; aborts beyond `count` in all. */
static void bin_list_check(unsigned c, void *x, uint32_t *n, uint32_t count, size_t *bytes)
{
    for (; x != NULL; x = link_get(x)) {
        if (++*n > count)
            ma_fatal("ma_check", "thread cache bin longer than its count (cycle?)", x);
        if (!pagemap_is_chunk(pagemap_get((uintptr_t)x)))
            ma_fatal("ma_check", "thread cache holds a pointer outside every chunk", x);
        struct chunk *ch = chunk_of(x, ma_cfg.chunk_size);
        const struct block *b = block_of(x);
        if (ch->arena != ma_tc.arena || !(b->head & B_INUSE))
            ma_fatal("ma_check", "thread cache holds a foreign or free block", x);
        /* A block may exceed its class (above 1 KiB a class spans sizes),
         * never fall short of it; below 1 KiB it is exact. */
        if (block_size(b) < tc_class_size[c] || (c < EXACT_CLASSES && block_size(b) != tc_class_size[c]) ||
            ((const uintptr_t *)x)[1] != cached_key(x))
            ma_fatal("ma_check", "thread cache block in the wrong bin or unmarked", x);
        *bytes += block_size(b);
    }
}

void tcache_check(void)
{
    size_t medium = 0;
    for (unsigned c = TC_FIRST; c < TC_NCLASS; c++) {
        /* room may go below 0 (a refill of a bin that was not empty, flushed
         * by the next push), never above max. */
        if (ma_tc.room[c] > (int32_t)ma_tc.max[c])
            ma_fatal("ma_check", "thread cache bin count below zero", *tcache_head(c));
        uint32_t n = 0, count = tcache_count(c);
        size_t bytes = 0;
        if (ma_tc.reserve_n[c] > count || (ma_tc.reserve_n[c] == 0) != (ma_tc.reserve[c] == NULL))
            ma_fatal("ma_check", "thread cache reserve count wrong", ma_tc.reserve[c]);
        bin_list_check(c, tcache_list(c), &n, count, &bytes);
        if (ma_tc.reserve[c] != NULL) {
            if (n != count - ma_tc.reserve_n[c])
                ma_fatal("ma_check", "thread cache reserve count disagrees with its list", ma_tc.reserve[c]);
            bin_list_check(c, ma_tc.reserve[c], &n, count, &bytes);
        }
        if (n != count)
            ma_fatal("ma_check", "thread cache count disagrees with its bin", *tcache_head(c));
        if (c >= QUICK_CLASSES)
            medium += bytes;
    }
    if ((int64_t)medium != (int64_t)TC_MEDIUM_BUDGET - ma_tc.medium_room)
        ma_fatal("ma_check", "thread cache medium bytes disagree with its bins", NULL);
}
