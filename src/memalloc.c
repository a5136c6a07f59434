/*
 * memalloc.c - the one entry point for every request: lazy initialisation,
 * the thread -> arena mapping, the dispatch between arenas and the
 * large-object path, the MEMALLOC_CHECK canaries, introspection, and fork
 * safety.
 *
 * Never calls the system allocator and never allocates to reach its own
 * state: the thread's arena lives in initial-exec TLS and the arena table is
 * mapped directly.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "memalloc.h"
#include "internal.h"
#include "large.h"
#include "os.h"
#include "fast.h"
#include "tcache.h"
#include "../arenas/arena.h"

/* ---- global state ---- */

struct arena *ma_arenas;            /* set once at init */
unsigned ma_narenas;                /* set once at init */
static int ready;                   /* atomic: 1 once init is complete */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t check_ops;          /* atomic: operations since start, check mode */

size_t ma_fast_limit;               /* set once at init; see fast.h */

static void fork_prepare(void);
static void fork_release(void);
static void fork_child(void);

static MA_COLD void init_slow(void)
{
    pthread_mutex_lock(&init_lock);
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        config_load(environ, os_ncpus());
        ma_narenas = ma_cfg.arenas;
        size_t bytes = MA_ALIGN_UP(ma_narenas * sizeof(struct arena), MA_PAGE_SIZE);
        ma_arenas = os_map(bytes);
        if (ma_arenas == NULL)
            ma_fatal("init", "cannot map the arena table", NULL);
        for (unsigned i = 0; i < ma_narenas; i++)
            arena_init(&ma_arenas[i], i, ma_cfg.chunk_size, ma_cfg.chunk_reserve);
        arena_key_init();
        tcache_init();
        stats_init();
        ma_fast_limit = ma_cfg.check ? 0 : ma_cfg.mmap_threshold;
        if (ma_cfg.verbose)
            config_print(2);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_lock);
}

static inline void ensure_init(void)
{
    if (ma_unlikely(!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)))
        init_slow();
}

void ma_ensure_init(void)
{
    ensure_init();
}

/* Registered when the library loads, not on the first allocation, so that
 * an application's own fork handler that allocates cannot deadlock against
 * ours (handlers registered later run first in prepare). */
__attribute__((constructor)) static void memalloc_load(void)
{
    ensure_init();
    pthread_atfork(fork_prepare, fork_release, fork_child);
}

/* The exit report (MEMALLOC_STATS, MEMALLOC_HEAP_MAP). A destructor runs
 * after the program's own atexit handlers, so it sees the final heap. */
__attribute__((destructor)) static void memalloc_unload(void)
{
    if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) && (ma_cfg.stats || ma_cfg.heap_map[0]))
        stats_exit_report();
}

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

/* ---- raw allocation: no canaries ---- */

/* A request below the threshold: through the thread cache when the size is
 * cached (its bin was empty, or we would not be here), else from the arena. */
static void *alloc_small(size_t n)
{
    struct arena *a = tcache_arena();
    if (n <= TC_MAX_REQUEST && ma_tc.cache_for == a)
        return tcache_refill(n);
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
    ensure_init();
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

static void free_located(void *p, struct chunk *c, struct large *l)
{
    if (ma_likely(c != NULL)) {
        struct arena *a = c->arena;
        size_t size = block_size(block_of(p));
        if (a == ma_tc.cache_for && size <= TC_MAX_BLOCK) {
            tcache_push(p, tcache_class_of(size));
        } else if (a == ma_tc.arena) {
            tcache_lock(a);
            arena_free(a, p);
            tcache_unlock(a);
        } else {
            arena_free_remote(a, p, size);
        }
        return;
    }
    large_free(l);
}

/* ---- MEMALLOC_CHECK: canaries and periodic full checks ---- */

/* In check mode a request of n bytes gets n + CANARY_EXTRA: at least one
 * canary byte after the caller's bytes, and the requested size (keyed) in the
 * last 8 usable bytes, so free and realloc can verify every byte between. */
#define CANARY_EXTRA 9u
#define CANARY_BYTE 0xcb
#define CANARY_KEY ((size_t)0x9e3779b97f4a7c15ull)

static void canary_set(void *p, size_t n, size_t usable)
{
    memset((char *)p + n, CANARY_BYTE, usable - 8 - n);
    size_t key = n ^ CANARY_KEY ^ (uintptr_t)p;
    memcpy((char *)p + usable - 8, &key, 8);
}

/* Returns the size the caller asked for; aborts on an overwritten canary. */
static size_t canary_verify(const void *p, size_t usable, const char *fn)
{
    size_t key;
    memcpy(&key, (const char *)p + usable - 8, 8);
    size_t n = key ^ CANARY_KEY ^ (uintptr_t)p;
    if (usable < CANARY_EXTRA || n > usable - CANARY_EXTRA)
        ma_fatal(fn, "heap buffer overflow detected (canary size overwritten)", p);
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = n; i < usable - 8; i++)
        if (c[i] != CANARY_BYTE)
            ma_fatal(fn, "heap buffer overflow detected (canary overwritten)", p);
    return n;
}

static void check_tick(void)
{
    uint64_t n = __atomic_add_fetch(&check_ops, 1, __ATOMIC_RELAXED);
    if (n % ma_cfg.check_every == 0)
        ma_check();
}

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
    ensure_init();
    if (ma_cfg.check)
        return alloc_checked(n, 0, 0);
    return alloc_raw(n, 0, 0);
}

void *ma_malloc_miss(size_t n)
{
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
    if (p == NULL)
        return;
    struct large *l = NULL;
    struct chunk *c = locate(p, "free", &l);
    if (ma_unlikely(ma_cfg.check)) {
        canary_verify(p, raw_usable(p, c, l), "free");
        check_tick();
    }
    free_located(p, c, l);
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
    if (pagemap_is_chunk(tag)) {
        struct arena *a = &ma_arenas[tag - PAGEMAP_CHUNK];
        size_t size;
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

void *ma_calloc(size_t count, size_t size)
{
    size_t n;
    if (ma_unlikely(__builtin_mul_overflow(count, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    if (ma_likely(n <= TC_MAX_REQUEST)) {
        void *p = tcache_pop(n);
        if (ma_likely(p != NULL))
            return memset(p, 0, n);
    }
    if (ma_likely(n < ma_fast_limit)) {
        void *p = alloc_small(n);
        if (p != NULL)
            memset(p, 0, n);
        return p;
    }
    ensure_init();
    if (ma_cfg.check)
        return alloc_checked(n, 0, 1);
    return alloc_raw(n, 0, 1);
}

/* Growth to at most this many bytes that cannot happen in place moves
 * through the thread's bins (no lock; a copy that small costs less than
 * the locked carving that would let the next growth happen in place).
 * callgrind, bench/realloc -t 1 -r 40, with the limit at 0 (every move from
 * the arena) / 256 / 1024 / 8184: 426.6 / 425.1 / 394.1 / 414.4 M
 * instructions; perl filling a 100k-key hash 636.6 / 628.4 / 627.7 /
 * 628.2 M. Natively (realloc -r 400, medians of 5): 6.57 -> 7.84 M and 5.68
 * -> 5.93 M reallocs/s, peak RSS 3.47 -> 3.40 and 3.47 -> 3.44 MB. Moving
 * every small growth, in place or not, cost 373.6 M instructions but 3.95
 * MB peak RSS: growing in place is what keeps the heap compact. */
#define REALLOC_BIN_MOVE_MAX ((size_t)1024)

void *ma_realloc(void *p, size_t n)
{
    if (p == NULL)
        return ma_malloc(n);
    if (ma_unlikely(n > MA_MAX_REQUEST)) {
        errno = ENOMEM;
        return NULL;
    }
    struct large *l = NULL;
    struct chunk *c = locate(p, "realloc", &l);
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
        if (need <= usable && usable - need <= usable / 8) {
            /* Still fits, wasting at most an eighth: no lock. A shrink by
             * more goes to the arena and gives the tail back (programs such
             * as Redis shrink buffers with realloc and size them by
             * malloc_usable_size; keeping half a block made its RSS 2x). */
            q = p;
        } else if (need < ma_cfg.mmap_threshold &&
                   (need < usable ||
                    !(__atomic_load_n(&block_next(block_of(p))->head, __ATOMIC_RELAXED) & B_INUSE))) {
            /* Growing in place needs the next block free: a glance at its
             * head first (an atomic read, as free's fast path makes), so a
             * block hemmed in by an allocated neighbour moves without
             * taking the lock; arena_resize decides under it. */
            struct arena *a = c->arena;
            arena_lock(a);
            int ok = arena_resize(a, p, block_size_for(need));
            arena_unlock(a);
            if (ok)
                q = p;
        }
    } else if (need >= ma_cfg.mmap_threshold) {
        q = large_realloc(l, need);
        if (q == NULL)
            return NULL;
    }
    if (q == NULL) {
        /* Exactly what was asked: extra slack on growth was tried and fed
         * back through programs that size their buffers by
         * malloc_usable_size (Redis's peak in-use doubled: 646 MB -> 1.17 GB
         * for the same data set). */
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
        } else {
            q = alloc_raw(need, 0, 0);
            if (q == NULL)
                return NULL;
        }
        memcpy(q, p, keep < n ? keep : n);
        free_located(p, c, l);
    }
    if (ma_unlikely(ma_cfg.check)) {
        struct large *ql = NULL;
        struct chunk *qc = locate(q, "realloc", &ql);
        canary_set(q, n, raw_usable(q, qc, ql));
    }
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
    ensure_init();
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
    ensure_init();
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
    ensure_init();
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
    ensure_init();
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
    ensure_init();
    return ma_narenas;
}

unsigned ma_thread_arena(void)
{
    return tcache_arena()->index;
}

int ma_thread_cache(int on)
{
    ensure_init();
    return tcache_set(on);
}

int ma_arena_of(const void *p)
{
    struct large *l = NULL;
    struct chunk *c = locate(p, "ma_arena_of", &l);
    return c != NULL ? (int)c->arena->index : -1;
}

/* ---- fork ---- */

/* Take every lock before fork() so the child never inherits one held by a
 * thread that does not exist there; both sides then release them: in the
 * child the forking thread is the one that holds them all. */
static void fork_prepare(void)
{
    ensure_init();
    pthread_mutex_lock(&init_lock);
    for (unsigned i = 0; i < ma_narenas; i++)
        ma_lock_acquire(&ma_arenas[i].lock);
    large_lock_all();
}

static void fork_release(void)
{
    large_unlock_all();
    for (unsigned i = ma_narenas; i-- > 0;)
        ma_lock_release(&ma_arenas[i].lock);
    pthread_mutex_unlock(&init_lock);
}

/* The child has one thread: the others' arena counts go with them. */
static void fork_child(void)
{
    tcache_fork_child();
    fork_release();
}
