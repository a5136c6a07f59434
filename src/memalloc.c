/*
 * memalloc.c - the ma_* entry points: every request of the public API (and,
 * through override.c, of the standard names) starts here and is dispatched
 * to the thread cache, the thread's arena or the large-object path, with
 * check mode's canaries around it when MEMALLOC_CHECK is on.
 *
 * Never calls the system allocator and never allocates to reach its own
 * state: the thread's arena lives in initial-exec TLS and the arena table is
 * mapped directly (process.c).
 */
#include <errno.h>
#include <string.h>

#include "memalloc.h"
#include "check.h"
#include "config.h"
#include "decay.h"
#include "fast.h"
#include "large.h"
#include "process.h"
#include "prof.h"
#include "tcache.h"
#include "../arenas/arena.h"

/* ---- locating and validating a pointer ---- */

/* Returns the chunk holding small block p, or NULL and *lp for a large
 * block. Aborts (naming fn) on anything memalloc did not hand out. */
static inline struct chunk *locate(const void *p, const char *fn, struct large **lp)
{
    if (ma_unlikely((uintptr_t)p & (MA_ALIGN - 1)))
        ma_fatal(fn, "invalid pointer (not a block start)", p);
    if (ma_likely(pagemap_is_chunk(pagemap_get((uintptr_t)p)))) {
        struct chunk *c = chunk_of(p, ma_cfg.chunk_size);
        if (ma_unlikely(c->magic != (CHUNK_MAGIC ^ (uintptr_t)c)))
            ma_fatal(fn, "corrupted chunk header", p);
        /* Also refuses a block that carries the key of a cached, parked or
         * pending block. */
        arena_validate(c, p, fn);
        return c;
    }
    *lp = large_lookup(p, fn);
    return NULL;
}

static inline size_t raw_usable(const void *p, const struct chunk *c, const struct large *l)
{
    return c != NULL ? block_usable(block_of(p)) : large_usable(l);
}

/* ---- profiler samples ----
 *
 * The sampled path is rare per call but is the whole of what profiling
 * costs, so its functions are noinline (out of the callers' fast paths)
 * without being cold: gcc optimizes cold functions for size, and does not
 * inline the lock helpers into them. */

static inline int is_sampled(const void *p, const struct chunk *c, const struct large *l)
{
    return c != NULL ? block_sampled(block_of((void *)p)) : l->sampled;
}

/* Sampled block p is being freed or moved: the profiler forgets it and the
 * flag goes, so the block is an ordinary one again. */
static __attribute__((noinline)) void sample_clear(void *p, struct chunk *c, struct large *l)
{
    prof_forget(p);
    if (c != NULL)
        block_set_sampled(block_of(p), 0);
    else
        l->sampled = 0;
}

/* Flags p (n bytes asked, NULL if the allocation failed), a block this
 * thread was just handed, as sampled and records it, its stack walked from
 * frame (pc, sp, bp) (pc 0: from the profiler's own), and starts the count
 * towards the next sample again; returns p. While the stack is walked
 * the count is INT64_MAX (prof_sample sets it), so that nothing the
 * unwinder allocates counts towards or takes a sample. The block needs no
 * validation: `chunk` says it is a chunk's block, else the pagemap tells
 * a chunk's block from a large one. */
static inline __attribute__((always_inline)) void *sample_mark(void *p, size_t n, int chunk, uintptr_t pc,
                                                                 uintptr_t sp, uintptr_t bp)
{
    if (ma_unlikely(!prof_on)) {
        ma_tc.prof_left = INT64_MAX;
        return p;
    }
    if (p != NULL) {
        if (chunk || pagemap_is_chunk(pagemap_get((uintptr_t)p)))
            block_set_sampled(block_of(p), 1);
        else
            large_lookup(p, "malloc")->sampled = 1;
    }
    return prof_sample(p, n, &ma_tc.prof_left, pc, sp, bp);
}

/* sample_mark out of line: for realloc's block, and for a block from the
 * API (whose malloc attribute would make gcc take block_of(p) for a read
 * outside the object). */
static __attribute__((noinline)) void sample_take(void *p, size_t n, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    ma_tc.prof_left = INT64_MAX;
    sample_mark(p, n, 0, pc, sp, bp);
}

/* The allocation ma_alloc_sampled stands for, made through the API. */
static void *alloc_as(size_t n, size_t align, int zero)
{
    return align != 0 ? ma_aligned_alloc(align, n) : zero ? ma_calloc(1, n) : ma_malloc(n);
}

/* memalloc's own allocation (decay.c): the countdown stays negative, so
 * every one comes to the sampled path, and none is sampled. */
static MA_COLD void *alloc_internal(size_t n, size_t align, int zero)
{
    void *q = decay_internal_alloc(n, align);
    if (q != NULL) {
        if (zero)
            memset(q, 0, n);
        return q;
    }
    ma_tc.internal = 0;
    q = alloc_as(n, align, zero);
    ma_tc.internal = 1;
    ma_tc.prof_left = -1;
    return q;
}

/* ma_alloc_sampled_at's cases other than a bin's block: memalloc's own
 * allocation, an aligned or zeroed one, an empty bin. Out of line, so
 * that a bin's block is sampled with no call before prof_sample and no
 * register saved. */
static __attribute__((noinline)) void *sample_other(size_t n, size_t align, int zero, uintptr_t pc, uintptr_t sp,
                                                     uintptr_t bp)
{
    if (ma_unlikely(ma_tc.internal))
        return alloc_internal(n, align, zero);
    /* The block itself neither counts towards nor takes a sample. */
    ma_tc.prof_left = INT64_MAX;
    if (align == 0 && !zero) {
        /* ma_malloc's miss path, its count left out. Below ma_fast_limit
         * (0 in check mode) the block is a chunk's. */
        return sample_mark(ma_malloc_miss(n), n, n < ma_fast_limit, pc, sp, bp);
    }
    void *p = alloc_as(n, align, zero);
    sample_take(p, n, pc, sp, bp);
    return p;
}

void *ma_alloc_sampled_at(size_t n, size_t align, int zero, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    /* ma_malloc's own steps, its count left out: a bin's block if it
     * holds one (a chunk's block), else sample_other. */
    void *p = NULL;
    if (ma_likely(!ma_tc.internal && align == 0 && !zero)) {
        if (n <= TC_MAX_REQUEST)
            p = tcache_pop(n);
        else if (n <= TC_MEDIUM_MAX_REQUEST && n < ma_fast_limit)
            p = tcache_medium_pop(tcache_medium_class(n));
    }
    if (ma_unlikely(p == NULL))
        return sample_other(n, align, zero, pc, sp, bp);
    /* prof_sample sets the count to INT64_MAX before it walks. */
    return sample_mark(p, n, 1, pc, sp, bp);
}

/* ma_alloc_sampled is reached by a jump (a tail call) from malloc, calloc,
 * aligned_alloc and the ma_* entry points, so on entry its return address
 * and stack pointer are those of the program's call into memalloc. On
 * x86-64 it passes that frame (return address, stack pointer after the
 * return, rbp) in the argument registers that follow n, align and zero,
 * and jumps to ma_alloc_sampled_at: the stack walk starts at the
 * program's frame, instead of walking memalloc's own frames only to drop
 * them. When it is called rather than jumped to, the frame is the
 * caller's inside memalloc, and the walk drops that one as usual. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl ma_alloc_sampled\n"
        ".hidden ma_alloc_sampled\n"
        ".type ma_alloc_sampled, @function\n"
        "ma_alloc_sampled:\n"
        "  .cfi_startproc\n"
        "  movq (%rsp), %rcx\n" /* pc: our return address */
        "  leaq 8(%rsp), %r8\n" /* sp: the caller's, once we return */
        "  movq %rbp, %r9\n"    /* bp */
        "  jmp ma_alloc_sampled_at\n"
        "  .cfi_endproc\n"
        ".size ma_alloc_sampled, .-ma_alloc_sampled\n");
#else
void *ma_alloc_sampled(size_t n, size_t align, int zero)
{
    return ma_alloc_sampled_at(n, align, zero, 0, 0, 0);
}
#endif

/* ---- raw allocation: no canaries ---- */

/* A request below the threshold: through the thread cache when the size is
 * cached (its bin was empty, or we would not be here), else from the arena. */
static void *alloc_small(size_t n)
{
    struct arena *a = tcache_arena();
    if (ma_tc.cache_for == a) {
        if (n <= TC_MAX_REQUEST)
            return tcache_refill(n);
        unsigned c = n <= TC_MEDIUM_MAX_REQUEST ? tcache_medium_class(n) : 0;
        if (c != 0 && c != TC_NOBIN) /* TC_NOBIN: a slot the limit cuts through */
            return tcache_medium_alloc(c);
    }
    tcache_lock(a);
    void *p = arena_alloc(a, block_size_for(n));
    tcache_unlock(a);
    if (ma_unlikely(p == NULL))
        errno = ENOMEM;
    return p;
}

/* Any request: small, large, aligned; zeroed when `zero`. */
static void *alloc_raw(size_t n, size_t align, int zero)
{
    ma_ensure_init();
    if (ma_unlikely(n > MA_MAX_REQUEST)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p;
    if (align <= MA_ALIGN) {
        if (n >= ma_cfg.mmap_threshold)
            return large_alloc(n, 0, zero);
        p = alloc_small(n);
    } else if (align <= MA_PAGE_SIZE && block_size_for(n) + align + B_MIN < ma_cfg.mmap_threshold) {
        struct arena *a = tcache_arena();
        tcache_lock(a);
        p = arena_alloc_aligned(a, block_size_for(n), align);
        tcache_unlock(a);
        if (p == NULL)
            errno = ENOMEM;
    } else {
        return large_alloc(n, align, zero);
    }
    if (p != NULL && zero)
        memset(p, 0, n);
    return p;
}

/* Frees chunk block p into arena a, the thread's own, under its lock. */
static void free_to_arena(struct arena *a, void *p)
{
    tcache_lock(a);
    arena_free(a, p);
    tcache_unlock(a);
}

static void free_located(void *p, struct chunk *c, struct large *l)
{
    if (ma_unlikely(is_sampled(p, c, l)))
        sample_clear(p, c, l);
    if (ma_likely(c != NULL)) {
        struct arena *a = c->arena;
        size_t size = block_size(block_of(p));
        if (a == ma_tc.cache_for && size <= TC_MAX_BLOCK) {
            tcache_push(p, tcache_class_of(size));
        } else if (a == ma_tc.cache_for && size <= TC_MEDIUM_MAX_BLOCK && tcache_medium_free(p, size)) {
            return;
        } else if (a == ma_tc.arena) {
            free_to_arena(a, p);
        } else {
            arena_free_remote(a, p, size);
        }
        return;
    }
    large_free(l);
}

/* A sampled block of the arena this thread caches for (ma_free_local saw
 * its chunk's tag; h is its head as read there): when its header passes
 * the fast path's checks, the
 * profiler forgets it and, the flag aside, it goes where an unsampled
 * block of its size goes (a bin, as free_located would put it, which is
 * only called when the bins refuse it), without the slow path's locate
 * and validation. Forgotten first: a bin that overflows hands blocks to
 * the arena, where another thread may sample this one again at once. Any
 * other block takes the slow path, which looks at it and names what is
 * wrong. A second free of it is caught as any other: the first left the
 * cached key in it. */
static MA_COLD void free_slow(void *p);

/* sample_free_cached's end: p (size bytes, out of the live set) is an
 * ordinary block again and goes to its bin, or to the arena. */
static inline void sample_free_to_bin(void *p, size_t size)
{
    block_set_sampled(block_of(p), 0);
    if (size <= TC_MAX_BLOCK)
        tcache_push(p, tcache_class_of(size));
    else if (!tcache_medium_free(p, size))
        free_located(p, chunk_of(p, ma_cfg.chunk_size), NULL);
}

/* The same, when the live set has to be changed under the profiler's lock. */
static __attribute__((noinline)) void sample_free_locked(void *p, size_t size)
{
    prof_forget_locked((uintptr_t)p);
    sample_free_to_bin(p, size);
}

static __attribute__((noinline)) void sample_free_cached(void *p, size_t h)
{
    size_t size = (h & B_SAMPLED) ? block_head_plausible((uintptr_t)p, h & ~B_SAMPLED, B_MIN, TC_MEDIUM_MAX_BLOCK) : 0;
    if (size == 0) {
        free_slow(p);
        return;
    }
    /* No call on the common path, so that it keeps no frame. */
    if (ma_unlikely(!prof_forget_fast(p))) {
        sample_free_locked(p, size);
        return;
    }
    sample_free_to_bin(p, size);
}

/* ---- MEMALLOC_CHECK ---- */

static MA_COLD void *alloc_checked(size_t n, size_t align, int zero)
{
    check_tick();
    if (n > MA_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = alloc_raw(n + CANARY_EXTRA, align, zero);
    if (p != NULL) {
        struct large *l = NULL;
        struct chunk *c = locate(p, "malloc", &l);
        canary_set(p, n, raw_usable(p, c, l));
    }
    return p;
}

/* ---- the API ---- */

static MA_COLD void *malloc_slow(size_t n)
{
    ma_ensure_init();
    if (ma_cfg.check)
        return alloc_checked(n, 0, 0);
    return alloc_raw(n, 0, 0);
}

void *ma_malloc_miss(size_t n)
{
    /* fast_malloc counted the sizes it serves, not the bigger ones. A
     * medium request (one range test) whose bin holds a block takes no
     * lock and makes no call. */
    if (n - (TC_MAX_REQUEST + 1) < TC_MEDIUM_MAX_REQUEST - TC_MAX_REQUEST) {
        if (prof_due(n))
            return ma_alloc_sampled(n, 0, 0);
        /* A request at or above ma_fast_limit maps to TC_NOBIN, whose pop
         * fails: the limit is tested only on the way out. */
        void *p = tcache_medium_pop(tcache_medium_class(n));
        if (ma_likely(p != NULL))
            return p;
        return ma_likely(n < ma_fast_limit) ? alloc_small(n) : malloc_slow(n);
    }
    if (n > TC_MAX_REQUEST && n <= MA_MAX_REQUEST && prof_due(n))
        return ma_alloc_sampled(n, 0, 0);
    if (ma_likely(n < ma_fast_limit))
        return alloc_small(n);
    return malloc_slow(n);
}

void *ma_malloc(size_t n)
{
    return fast_malloc(n);
}

static MA_COLD void free_slow(void *p)
{
    if (p == NULL || decay_owns(p))
        return;
    struct large *l = NULL;
    struct chunk *c = locate(p, "free", &l);
    if (ma_unlikely(ma_cfg.check)) {
        canary_verify(p, raw_usable(p, c, l), "free");
        check_tick();
    }
    free_located(p, c, l);
}

/* A block of the arena this thread caches for that fast_free did not
 * take: a medium one whose header passes the same checks goes to its bin,
 * a block the profiler sampled to the profiler first, anything else to
 * the slow path. */
void ma_free_local(void *p, size_t x)
{
    size_t size = block_head_plausible((uintptr_t)p, x, TC_MAX_BLOCK + 1, TC_MEDIUM_MAX_BLOCK);
    if (ma_likely(size != 0) && tcache_medium_free(p, size))
        return;
    if (ma_unlikely(prof_on))
        sample_free_cached(p, x);
    else
        free_slow(p);
}

void ma_free_medium(void *p, size_t size)
{
    /* The rest of block_head_plausible's checks: the block ends inside its
     * chunk, the next block says it is in use, it carries no cached key. */
    uintptr_t u = (uintptr_t)p;
    if (ma_likely(block_ends_in_chunk(u, size) && block_rest_plausible(u, size)) && tcache_medium_free(p, size))
        return;
    ma_free_local(p, size | B_INUSE);
}

/* free() that fast_free did not finish: a small block of another arena (or
 * of the thread's own arena while it does not cache) is validated and goes
 * straight onto its owner's remote stack; everything else (NULL, large
 * blocks, check mode with its canary, the own arena's lock, a bad pointer)
 * takes the slow path, which names any problem. */
void ma_free_miss(void *p)
{
    uintptr_t u = (uintptr_t)p;
    int tag = pointer_tag(u);
    if (tag == ma_tc.tag) {
        ma_free_local(p, __atomic_load_n((const size_t *)(u - B_OVERHEAD), __ATOMIC_RELAXED));
        return;
    } else if (pagemap_is_chunk(tag)) {
        struct arena *a = &ma_arenas[tag - PAGEMAP_CHUNK];
        size_t size;
        /* A thread that frees before it ever allocates remembers the
         * block's arena: its first allocation joins it (tcache_adopt). */
        if (ma_unlikely(ma_tc.arena == NULL) && ma_tc.hint == NULL)
            ma_tc.hint = a;
        if (ma_likely(a != ma_tc.arena && !ma_cfg.check && (size = block_plausible(u)) != 0)) {
            arena_free_remote(a, p, size);
            return;
        }
    }
    free_slow(p);
}

void ma_free(void *p)
{
    fast_free(p);
}

void ma_free_sized(void *p, size_t n)
{
    if (p != NULL && ma_cfg.check) {
        struct large *l = NULL;
        struct chunk *c = locate(p, "operator delete", &l);
        if (canary_verify(p, raw_usable(p, c, l), "operator delete") != n)
            ma_fatal("operator delete", "sized delete's size does not match the block's", p);
    }
    ma_free(p);
}

/* calloc of at least this many bytes takes the large path even below the
 * mmap threshold: a fresh mapping is zero already, so nothing is written
 * and only the pages the program touches become resident, where an arena
 * block would be cleared whole (CPython callocs 384 KiB at start and
 * touches a third of it). A reused mapping is cleared as an arena block
 * would be. */
#define CALLOC_MAP_MIN ((size_t)128 << 10)

/* calloc of n bytes that the bin did not serve: out of line, so that the
 * fast path keeps no frame and ends in a jump to memset. */
static __attribute__((noinline)) void *calloc_miss(size_t n)
{
    if (ma_likely(n < ma_fast_limit)) {
        if (n >= CALLOC_MAP_MIN)
            return large_alloc(n, 0, 1);
        void *p = alloc_small(n);
        if (p != NULL)
            memset(p, 0, n);
        return p;
    }
    ma_ensure_init();
    if (ma_cfg.check)
        return alloc_checked(n, 0, 1);
    return alloc_raw(n, 0, 1);
}

/* count * size overflows: NULL + ENOMEM (a call, so calloc keeps no frame). */
static MA_COLD __attribute__((noinline)) void *calloc_overflow(void)
{
    errno = ENOMEM;
    return NULL;
}

/* Zeroes the first n <= 32 bytes of a block from a bin, in whole words:
 * a block for n bytes has at least n + B_OVERHEAD rounded up to 16, so its
 * usable bytes cover n rounded up to 8, and at least B_MIN - B_OVERHEAD;
 * the words written stay inside it. The sizes CPython callocs most (8 to
 * 32 bytes) take two to four stores instead of a call to memset. */
_Static_assert(B_MIN - B_OVERHEAD >= 16 && B_OVERHEAD == 8, "zero_small's words fit every block it is given");
static inline void *zero_small(void *p, size_t n)
{
    uint64_t *w = p;
    w[0] = 0;
    w[1] = 0;
    if (n > 16) {
        w[2] = 0;
        if (n > 24)
            w[3] = 0;
    }
    return p;
}

void *ma_calloc(size_t count, size_t size)
{
    size_t n;
    if (ma_unlikely(__builtin_mul_overflow(count, size, &n)))
        return calloc_overflow();
    if (n <= MA_MAX_REQUEST && prof_due(n))
        return ma_alloc_sampled(n, 0, 1);
    if (ma_likely(n <= TC_MAX_REQUEST)) {
        void *p = tcache_pop(n);
        if (ma_likely(p != NULL))
            return n <= 32 ? zero_small(p, n) : memset(p, 0, n);
    }
    return calloc_miss(n);
}

/* Growth to at most this many bytes that cannot happen in place moves
 * through the thread's bins (no lock; a copy that small costs less than
 * the locked carving that would let the next growth happen in place).
 * Growth that can happen in place still does: that is what keeps the heap
 * compact (bench/NOTES.md, "Tuning constants"). */
#define REALLOC_BIN_MOVE_MAX ((size_t)1024)

/* realloc of chunk block p (of arena a, `usable` bytes) to `need` bytes
 * without moving it: p if it still fits, wasting at most an eighth, or if
 * arena_resize shrinks it or grows it into a free next block; NULL if it
 * must move. */
static inline void *resize_in_place(void *p, struct arena *a, size_t usable, size_t need)
{
    if (need <= usable && usable - need <= usable / 8) {
        /* Still fits, wasting at most an eighth: no lock. A shrink by
         * more goes to the arena and gives the tail back (programs such
         * as Redis shrink buffers with realloc and size them by
         * malloc_usable_size; keeping half a block made its RSS 2x). */
        return p;
    }
    if (need < ma_cfg.mmap_threshold &&
        (need < usable || !(__atomic_load_n(&block_next(block_of(p))->head, __ATOMIC_RELAXED) & B_INUSE))) {
        /* Growing in place needs the next block free: a glance at its
         * head first (an atomic read, as free's fast path makes), so a
         * block hemmed in by an allocated neighbour moves without
         * taking the lock; arena_resize decides under it. */
        arena_lock(a);
        int ok = arena_resize(a, p, block_size_for(need));
        arena_unlock(a);
        if (ok)
            return p;
    }
    return NULL;
}

/* The bin's block for a realloc that moves to `need` bytes, as malloc
 * would pop it (the profiler counts n at the end of realloc), or NULL. A
 * realloc that moves to a bin counts as the bin's use, as a refill does:
 * growth that moves blocks from one class to the next would otherwise
 * leave the bin it takes from looking idle (bin_idle) to a thread that
 * also frees into it. */
static inline void *bin_pop_moving(size_t need)
{
    void *q = need <= TC_MAX_REQUEST ? tcache_pop(need) : NULL;
    if (q != NULL)
        tcache_mark_used(tc_request_bin[need] + TC_FIRST);
    return q;
}

static __attribute__((noinline)) void *realloc_slow(void *p, size_t n);
static __attribute__((noinline)) void *realloc_own(void *p, size_t n);

/* realloc of a small block p of the arena this thread caches for to n
 * bytes (at most REALLOC_BIN_MOVE_MAX), when its header passes free's fast
 * checks (block_plausible: allocated, unsampled, the next block agreeing,
 * no cached key), without realloc_slow's full validation: what it would
 * do with such a block, done here, except that a shrink to less than half
 * moves to the bin of the new size if that holds a block. A size the block
 * still fits, wasting at most an eighth, keeps it; a shrink by more, or
 * growth into a free next block, resizes it in place under the arena
 * lock; growth that cannot happen in place moves through the bins, with no
 * lock. When none of that serves (an empty bin, a resize refused),
 * realloc_slow decides: a jump, so that ma_realloc keeps no frame. */
static __attribute__((noinline)) void *realloc_small(void *p, size_t n)
{
    size_t size = block_plausible((uintptr_t)p);
    if (ma_unlikely(size == 0))
        return realloc_slow(p, n);
    size_t usable = size - B_OVERHEAD;
    /* A shrink to less than half moves to a block of the new size when its
     * bin has one: no lock, and both blocks stay in the classes they were
     * carved for. Shrunk in place, the block would become one of a class
     * the thread may never ask for (CPython formats a string in an
     * oversized buffer and shrinks it; another thread frees the string),
     * parked until a consolidation coalesces it. Smaller shrinks stay in
     * place: moved, a block that shrinks by halves would leave one block in
     * a bin at every step (bench/realloc's strings: peak RSS +16%). */
    void *q = 2 * n < usable ? bin_pop_moving(n) : NULL;
    /* The tag said p is a block of the arena the thread caches for. */
    if (q == NULL && (q = resize_in_place(p, ma_tc.cache_for, usable, n)) == NULL && n > usable)
        q = bin_pop_moving(n);
    if (q == NULL)
        return realloc_slow(p, n);
    if (q != p) {
        memcpy(q, p, n < usable ? n : usable);
        tcache_push(p, tcache_class_of(size));
    }
    if (prof_due(n))
        sample_take(q, n, 0, 0, 0); /* the resized block, moved or not */
    return q;
}

void *ma_realloc(void *p, size_t n)
{
    /* realloc(NULL, n) is malloc(n), and some programs allocate mostly
     * through it (Lua's allocator; arrays that grow from empty): malloc's
     * own fast path, inline. */
    if (p == NULL)
        return fast_malloc(n);
    /* The pointer's pagemap byte against the thread's cache tag (which no
     * pointer matches in check mode or while the thread does not cache),
     * then the size, pick the small path or the one for bigger blocks of
     * the thread's own arena. */
    if (pointer_tag((uintptr_t)p) == ma_tc.tag)
        return n <= REALLOC_BIN_MOVE_MAX ? realloc_small(p, n) : realloc_own(p, n);
    return realloc_slow(p, n);
}

/* The move of a realloc that could not resize block p (of chunk c, or of
 * large block l; `usable` bytes, the first `keep` of them worth copying)
 * to n bytes (`need` with check mode's canary): a new block, the bytes
 * copied, p freed. NULL + ENOMEM if no block can be had (p is kept). */
static void *realloc_move(void *p, size_t n, struct chunk *c, struct large *l, size_t usable, size_t keep, size_t need)
{
    void *q;
    struct arena *back_to_arena = NULL;
    /* Exactly what was asked: slack on growth feeds back through
     * programs that size their buffers by malloc_usable_size (Redis's
     * peak in-use doubles; bench/NOTES.md). */
    if (c != NULL && need > usable && need > REALLOC_BIN_MOVE_MAX && need < ma_fast_limit) {
        /* Growth that moves: from the arena itself, not from a bin. A
         * bin's blocks were carved in a batch, each next to another
         * cached block, so the following growth would move again; a
         * block carved from free space often has free space after it
         * and grows in place. */
        struct arena *a = tcache_arena();
        tcache_lock(a);
        q = arena_alloc_growing(a, block_size_for(need));
        tcache_unlock(a);
        if (q == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        /* A medium block left behind goes back to the arena, not to
         * a bin: growth seldom asks again for the size it leaves, and
         * the arena can coalesce it for the next growth, where a bin
         * would hold it (bench/NOTES.md, "Medium blocks that growth
         * leaves behind"). */
        back_to_arena = c->arena == a && usable > TC_MAX_REQUEST ? a : NULL;
    } else {
        /* A small block from the bin, else the allocation's own path. */
        q = bin_pop_moving(need);
        if (q == NULL && (q = alloc_raw(need, 0, 0)) == NULL)
            return NULL;
    }
    memcpy(q, p, keep < n ? keep : n);
    if (back_to_arena != NULL)
        free_to_arena(back_to_arena, p);
    else
        free_located(p, c, l);
    return q;
}

/* realloc of a block p (never NULL: ma_realloc serves that) that the
 * faster paths did not take. */
static __attribute__((noinline)) void *realloc_slow(void *p, size_t n)
{
    if (ma_unlikely(n > MA_MAX_REQUEST)) {
        errno = ENOMEM;
        return NULL;
    }
    if (ma_unlikely(decay_owns(p))) {
        void *q = ma_malloc(n);
        if (q != NULL)
            memcpy(q, p, n < decay_internal_size(p) ? n : decay_internal_size(p));
        return q;
    }
    struct large *l = NULL;
    struct chunk *c = locate(p, "realloc", &l);
    if (ma_unlikely(is_sampled(p, c, l)))
        sample_clear(p, c, l);
    size_t usable = raw_usable(p, c, l);
    size_t keep = usable; /* bytes of the old block worth copying */
    size_t need = n;
    if (ma_unlikely(ma_cfg.check)) {
        keep = canary_verify(p, usable, "realloc");
        need = n + CANARY_EXTRA;
        check_tick();
    }

    void *q = NULL;
    if (c != NULL) {
        q = resize_in_place(p, c->arena, usable, need);
    } else if (need >= ma_cfg.mmap_threshold) {
        q = large_realloc(l, need);
        if (q == NULL)
            return NULL;
    }
    if (q == NULL && (q = realloc_move(p, n, c, l, usable, keep, need)) == NULL)
        return NULL;
    if (ma_unlikely(ma_cfg.check)) {
        struct large *ql = NULL;
        struct chunk *qc = locate(q, "realloc", &ql);
        canary_set(q, n, raw_usable(q, qc, ql));
    }
    if (prof_due(n))
        sample_take(q, n, 0, 0, 0); /* the resized block, moved or not */
    return q;
}

/* realloc to more than REALLOC_BIN_MOVE_MAX bytes of a block p of the arena
 * this thread caches for, of up to TC_MEDIUM_MAX_BLOCK bytes, when its
 * header passes free's fast checks (block_head_plausible): what
 * realloc_slow would do with it, without the full validation (a string
 * grown by a few bytes at a time resizes in place on every call). Anything
 * else, a sampled block included, goes to realloc_slow. */
static __attribute__((noinline)) void *realloc_own(void *p, size_t n)
{
    size_t size = block_plausible_in((uintptr_t)p, B_MIN, TC_MEDIUM_MAX_BLOCK);
    if (ma_unlikely(size == 0 || n >= ma_fast_limit))
        return realloc_slow(p, n);
    size_t usable = size - B_OVERHEAD;
    void *q = resize_in_place(p, ma_tc.cache_for, usable, n);
    if (q == NULL &&
        (q = realloc_move(p, n, chunk_of(p, ma_cfg.chunk_size), NULL, usable, usable, n)) == NULL)
        return NULL;
    if (prof_due(n))
        sample_take(q, n, 0, 0, 0); /* the resized block, moved or not */
    return q;
}

void *ma_reallocarray(void *p, size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return ma_realloc(p, n);
}

void *ma_aligned_alloc(size_t align, size_t n)
{
    if (align == 0 || (align & (align - 1)) != 0 || align > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    /* Every block is MA_ALIGN-aligned: such a request is a malloc, bins
     * and all (memalign(16, n) is common in portable code). */
    if (align <= MA_ALIGN)
        return fast_malloc(n);
    if (n <= MA_MAX_REQUEST && prof_due(n))
        return ma_alloc_sampled(n, align, 0);
    ma_ensure_init();
    if (ma_cfg.check)
        return alloc_checked(n, align, 0);
    return alloc_raw(n, align, 0);
}

int ma_posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0 || align > ((size_t)1 << 30))
        return EINVAL;
    int saved = errno;
    void *p = ma_aligned_alloc(align, n);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

size_t ma_usable_size_miss(const void *p)
{
    if (p == NULL)
        return 0;
    if (decay_owns(p))
        return decay_internal_size(p);
    struct large *l = NULL;
    struct chunk *c = locate(p, "malloc_usable_size", &l);
    size_t usable = raw_usable(p, c, l);
    if (ma_unlikely(ma_cfg.check))
        return canary_verify(p, usable, "malloc_usable_size");
    return usable;
}

size_t ma_usable_size(const void *p)
{
    return fast_usable_size(p);
}

void *ma_memdup(const void *src, size_t n)
{
    void *p = ma_malloc(n);
    if (p != NULL && n > 0)
        memcpy(p, src, n);
    return p;
}

/* ---- whole-heap operations ---- */

size_t ma_trim(void)
{
    ma_ensure_init();
    tcache_flush_all(); /* to the quick lists, which arena_trim coalesces */
    size_t released = 0;
    for (unsigned i = 0; i < ma_narenas; i++) {
        arena_lock(&ma_arenas[i]);
        arena_drain(&ma_arenas[i]);
        released += arena_trim(&ma_arenas[i]);
        arena_unlock(&ma_arenas[i]);
    }
    return released + large_trim();
}

int ma_check(void)
{
    ma_ensure_init();
    tcache_check_all();
    /* One arena at a time: never two arena locks held together, so no lock
     * order can deadlock against the allocation paths. */
    for (unsigned i = 0; i < ma_narenas; i++) {
        arena_lock(&ma_arenas[i]);
        arena_check(&ma_arenas[i]); /* drains the remote stacks itself, verifying each block */
        arena_unlock(&ma_arenas[i]);
    }
    large_check();
    return 0;
}

void ma_print_free_list(int fd)
{
    ma_ensure_init();
    char mem[2048];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    for (unsigned i = 0; i < ma_narenas; i++) {
        arena_lock(&ma_arenas[i]);
        arena_drain(&ma_arenas[i]);
        arena_print(&ma_arenas[i], &b);
        arena_unlock(&ma_arenas[i]);
    }
    struct large_totals lt;
    large_totals(&lt);
    buf_str(&b, "large: ");
    buf_u64(&b, lt.live);
    buf_str(&b, " mappings, ");
    buf_u64(&b, lt.bytes);
    buf_str(&b, " bytes\n");
    buf_flush(&b);
}

unsigned ma_arena_count(void)
{
    ma_ensure_init();
    return ma_narenas;
}

unsigned ma_thread_arena(void)
{
    return tcache_arena()->index;
}

int ma_thread_cache(int on)
{
    ma_ensure_init();
    return tcache_set(on);
}

int ma_arena_of(const void *p)
{
    struct large *l = NULL;
    struct chunk *c = locate(p, "ma_arena_of", &l);
    return c != NULL ? (int)c->arena->index : -1;
}
