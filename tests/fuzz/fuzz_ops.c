/*
 * fuzz_ops.c - libFuzzer harness for memalloc's ma_* API.
 *
 * Each input is a program of allocator operations (malloc, calloc, realloc,
 * reallocarray, aligned_alloc, posix_memalign, free, usable_size, trim,
 * check, requests that must fail) run by four persistent worker threads, so
 * a block allocated by one thread (one arena) is often resized or freed by
 * another: the remote-free stack, its drains and cross-arena realloc all get
 * exercised. A shadow table remembers every live block (size, id, alignment,
 * owning arena); the block's bytes hold a pattern derived from the id and
 * the offset, verified before every free and realloc, after every realloc
 * (the kept prefix), and at the end. ma_check() runs every few operations
 * and at the end of each input; everything is freed at the end (thread
 * caches flushed), after which no large mapping may remain and, once
 * trimmed, no arena may hold an allocated byte or a chunk: inputs are
 * independent and a leaked block shows.
 *
 * The harness is linked against memalloc's objects without override.o:
 * libFuzzer and the sanitizers keep their own malloc, and only ma_* reaches
 * memalloc. memalloc reads its options from the environment when it loads;
 * unless MEMALLOC_ARENAS is already set, the harness sets it to 4 (one arena
 * per worker) and re-executes itself, so running the binary on a crash file
 * reproduces the configuration of the fuzzing run.
 *
 * ---- input format ----
 *
 *   byte 0        header: bit 0 = mode (0 lockstep, 1 concurrent rounds),
 *                 bits 1-2 = ma_check() every 16 << k operations
 *   then ops:     [op] [slot] operands...
 *     op          bits 0-3 kind, bits 4-5 thread (worker 0-3), bits 6-7 variant
 *     slot        index into the shadow table (see modes)
 *     size        3 bytes [sel] [lo] [hi] -> a size from one of eight ranges
 *                 (see size_decode)
 *     align       1 byte (aligned_alloc, posix_memalign)
 *   Missing bytes at the end read as 0.
 *
 *   kinds: 0 malloc(size) (variant 3: memdup up to 64 KiB)
 *          1 calloc(size split by variant)
 *          2 realloc: variant 0 new size, 1 grow, 2 shrink, 3 to 0
 *            (realloc(NULL, size) when the slot is empty)
 *          3 aligned_alloc(1 B .. 64 KiB; align >= 224: 128 KiB .. 2 MiB)
 *          4 posix_memalign(8 << (align % 14), size)
 *          5 free   6 usable_size (+ write the slack)
 *          7 ma_check() (variant 2: ma_stats_print, 3: ma_heap_map or
 *            ma_print_free_list, to /dev/null)
 *          8 ma_trim()   9 requests that must fail (variant picks which)
 *          10 end of round   11 reallocarray(count, elem)
 *          12 malloc   13 free   14 realloc   (more weight)
 *          15 burst: 4 << 2 * variant malloc/realloc/free of the thread's
 *             own four blocks around `size`, in a tight loop (see op_burst)
 *   An allocation into an occupied slot frees the old block first.
 *
 * ---- modes ----
 *
 * Lockstep: the operations run one after another in input order, each on the
 * thread it names (consecutive operations of one thread form one hand-off):
 * fully deterministic, any slot reachable from any thread.
 * Concurrent rounds: the input is cut into rounds (op kind 10, or every
 * ROUND_OPS operations); in round r, slot s belongs to worker (s + r) % 4, and
 * an operation's slot byte is mapped into its thread's slots. The four
 * workers run their operations of a round at the same time, with no data
 * shared between them but the allocator; ownership rotates every round, so
 * a block allocated in one round is freed or resized by another thread in a
 * later one while its owner keeps allocating and draining.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memalloc.h"

#define NTHREADS 4
#define NSLOTS 64               /* a multiple of NTHREADS */
#define MAX_OPS 1024
#define ROUND_OPS 32            /* concurrent mode: automatic round length */
#define LIVE_CAP ((size_t)64 << 20) /* live bytes; bigger requests shrink */
#define FULL_LIMIT ((size_t)16 << 10) /* blocks up to this get a full pattern */
#define EDGE ((size_t)2048)     /* bigger ones: head and tail bytes, */
#define STRIPE_STEP ((size_t)32768) /* and STRIPE bytes every 32 KiB */
#define STRIPE ((size_t)64)
#define SLACK_MAX ((size_t)4096)
#define MEMDUP_MAX ((size_t)64 << 10)
#define ERRNO_MARK 0x4d41

enum {
    K_MALLOC, K_CALLOC, K_REALLOC, K_ALIGNED, K_MEMALIGN, K_FREE, K_USABLE, K_CHECK,
    K_TRIM, K_BAD, K_ROUND, K_REALLOCARRAY, K_BURST,
};
static const unsigned char kind_map[16] = {
    K_MALLOC, K_CALLOC, K_REALLOC, K_ALIGNED, K_MEMALIGN, K_FREE, K_USABLE, K_CHECK,
    K_TRIM, K_BAD, K_ROUND, K_REALLOCARRAY, K_MALLOC, K_FREE, K_REALLOC, K_BURST,
};

struct op {
    unsigned char kind, variant, thread, slot;
    uint16_t sizebits;       /* lo | hi << 8, for variants that scale a size */
    size_t size;
    size_t align;
};

struct slot {
    unsigned char *p;        /* NULL when empty */
    size_t n;                /* bytes asked for (the pattern covers these) */
    uint64_t id;             /* seeds the pattern */
    size_t align;            /* alignment asked for (16 for plain requests) */
    int arena;               /* ma_arena_of(p): -1 for large blocks */
};

struct worker {
    pthread_t tid;
    unsigned index;
    int arena;               /* ma_thread_arena() before the current op */
    sem_t go, done;
    const struct op *ops;    /* the hand-off: ops to run, then post done */
    size_t nops;
    int cleanup;             /* free every slot this worker owns in round `round` */
    unsigned round;
    uint64_t next_id;
};

/* The shadow table. A slot is touched only by the worker that owns it at
 * that moment (lockstep: the one running; concurrent: the round's owner);
 * the semaphores of the hand-off order every access. */
static struct slot slots[NSLOTS];
static struct worker workers[NTHREADS];
static size_t live_bytes;    /* atomic */
static unsigned check_every = 64;
static uint64_t inputs_run;
static int devnull = -1;     /* where the reports go */

/* ---- failures ---- */

static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_ops: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* ---- the pattern ---- */

static inline uint64_t pat_word(uint64_t id, size_t w)
{
    uint64_t x = (id + 1) * 0x9e3779b97f4a7c15ull ^ (w + 1) * 0xd6e8feb86659fd93ull;
    return x ^ (x >> 29);
}

static inline unsigned char pat_byte(uint64_t id, size_t i)
{
    return (unsigned char)(pat_word(id, i >> 3) >> (8 * (i & 7)));
}

static void span_fill(unsigned char *p, uint64_t id, size_t lo, size_t hi)
{
    size_t i = lo;
    for (; i < hi && (i & 7); i++)
        p[i] = pat_byte(id, i);
    for (; i + 8 <= hi; i += 8) {
        uint64_t w = pat_word(id, i >> 3);
        memcpy(p + i, &w, 8);
    }
    for (; i < hi; i++)
        p[i] = pat_byte(id, i);
}

static __attribute__((noreturn)) void span_mismatch(const unsigned char *p, uint64_t id, size_t i,
                                                   size_t n, const char *when)
{
    fail("block %p (id %llu, %zu bytes): byte %zu is 0x%02x, expected 0x%02x (%s)", (void *)p,
         (unsigned long long)id, n, i, p[i], id == UINT64_MAX ? 0 : pat_byte(id, i), when);
}

static void span_verify(const unsigned char *p, uint64_t id, size_t lo, size_t hi, size_t n,
                        const char *when)
{
    size_t i = lo;
    for (; i < hi && (i & 7); i++)
        if (p[i] != pat_byte(id, i))
            span_mismatch(p, id, i, n, when);
    for (; i + 8 <= hi; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != pat_word(id, i >> 3))
            for (size_t j = i; j < i + 8; j++)
                if (p[j] != pat_byte(id, j))
                    span_mismatch(p, id, j, n, when);
    }
    for (; i < hi; i++)
        if (p[i] != pat_byte(id, i))
            span_mismatch(p, id, i, n, when);
}

static void span_zero(const unsigned char *p, size_t lo, size_t hi, size_t n, const char *when)
{
    for (size_t i = lo; i < hi; i++)
        if (p[i] != 0)
            span_mismatch(p, UINT64_MAX, i, n, when);
}

/* The bytes of an n-byte block that carry the pattern: all of them up to
 * FULL_LIMIT; above, the first and last EDGE bytes and STRIPE bytes every
 * STRIPE_STEP: a page lost or shifted by mremap, trim or a bad copy shows in
 * the stripes, and a 4 MiB block costs 128 page faults instead of 1024. Calls fn on each span within
 * [lo, hi). */
enum span_op { SPAN_FILL, SPAN_VERIFY, SPAN_ZERO };

static void span_apply(enum span_op what, unsigned char *p, uint64_t id, size_t n, size_t lo,
                       size_t hi, const char *when)
{
    size_t spans[3][2];
    size_t count = 0;
    if (n <= FULL_LIMIT) {
        spans[count][0] = 0, spans[count][1] = n, count++;
    } else {
        spans[count][0] = 0, spans[count][1] = EDGE, count++;
        spans[count][0] = n - EDGE, spans[count][1] = n, count++;
    }
    for (size_t k = 0; k < count; k++) {
        size_t a = spans[k][0] > lo ? spans[k][0] : lo;
        size_t b = spans[k][1] < hi ? spans[k][1] : hi;
        if (a >= b)
            continue;
        if (what == SPAN_FILL)
            span_fill(p, id, a, b);
        else if (what == SPAN_VERIFY)
            span_verify(p, id, a, b, n, when);
        else
            span_zero(p, a, b, n, when);
    }
    if (n <= FULL_LIMIT)
        return;
    for (size_t s = STRIPE_STEP; s < n - EDGE; s += STRIPE_STEP) {
        size_t a = s > lo ? s : lo;
        size_t e = s + STRIPE < n ? s + STRIPE : n;
        size_t b = e < hi ? e : hi;
        if (a >= b)
            continue;
        if (what == SPAN_FILL)
            span_fill(p, id, a, b);
        else if (what == SPAN_VERIFY)
            span_verify(p, id, a, b, n, when);
        else
            span_zero(p, a, b, n, when);
    }
}

/* ---- sizes ---- */

/* Eight ranges, chosen where the allocator changes behaviour: 0 and tiny
 * requests (minimum block), the exact 16-byte classes below 1 KiB, powers of
 * two +- 64 (class and block-size boundaries, 1 KiB where the exact classes
 * end), medium blocks, the 256 KiB mmap threshold +- 512, large mappings, and
 * powers of two from 256 KiB to 4 MiB +- 2 KiB (chunk-sized requests). */
static size_t size_decode(unsigned char sel, unsigned r)
{
    switch (sel & 7) {
    case 0:
        return (r & 3) == 0 ? 0 : r % 16;
    case 1:
        return 1 + r % 128;
    case 2:
        return r % 1024;
    case 3: {
        size_t base = (size_t)1 << (4 + (r >> 8) % 17);
        long d = (long)(r & 0x7f) - 64;
        return d < 0 && (size_t)-d > base ? 0 : (size_t)((long)base + d);
    }
    case 4:
        return 1024 + r;
    case 5:
        return ((size_t)256 << 10) + (size_t)(r % 1024) - 512;
    case 6:
        return ((size_t)256 << 10) + (size_t)r * 64;
    default: {
        size_t base = (size_t)1 << (18 + (r >> 12) % 5);
        return base + (size_t)(r & 0xfff) - 2048;
    }
    }
}

/* ---- decoding ---- */

struct reader {
    const uint8_t *p;
    size_t n, i;
};

static unsigned rd(struct reader *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static void rd_size(struct reader *r, struct op *o)
{
    unsigned sel = rd(r);
    unsigned lo = rd(r), hi = rd(r);
    o->sizebits = (uint16_t)(lo | hi << 8);
    o->size = size_decode((unsigned char)sel, o->sizebits);
}

/* Decodes the whole input; returns the number of ops. `rounds` gets each
 * op's round (concurrent mode) through o->slot already mapped. */
static size_t decode(const uint8_t *data, size_t size, int concurrent, struct op *ops)
{
    struct reader r = { data, size, 1 };
    size_t n = 0;
    unsigned round = 0, in_round = 0;
    while (r.i < r.n && n < MAX_OPS) {
        unsigned b = rd(&r);
        struct op *o = &ops[n];
        memset(o, 0, sizeof *o);
        o->kind = kind_map[b & 15];
        o->thread = (unsigned char)((b >> 4) & 3);
        o->variant = (unsigned char)(b >> 6);
        unsigned sb = rd(&r);
        switch (o->kind) {
        case K_MALLOC:
        case K_CALLOC:
        case K_REALLOC:
        case K_REALLOCARRAY:
        case K_BURST:
            rd_size(&r, o);
            break;
        case K_ALIGNED:
        case K_MEMALIGN:
            o->align = rd(&r);
            rd_size(&r, o);
            break;
        default:
            break;
        }
        if (concurrent) {
            /* Slot of this thread in this round: (slot + round) % 4 == thread. */
            unsigned group = sb % (NSLOTS / NTHREADS);
            o->slot = (unsigned char)(group * NTHREADS + ((o->thread + NTHREADS - round % NTHREADS) % NTHREADS));
            if (o->kind == K_ROUND || ++in_round == ROUND_OPS) {
                round++;
                in_round = 0;
                o->kind = K_ROUND; /* marks the cut; runs as nothing */
            }
        } else {
            o->slot = (unsigned char)(sb % NSLOTS);
        }
        n++;
    }
    return n;
}

/* ---- operations (run on a worker) ---- */

static void shadow_check_alignment(const void *p, size_t align, const char *what)
{
    size_t a = align < 16 ? 16 : align;
    if ((uintptr_t)p & (a - 1))
        fail("%s returned %p, not aligned to %zu", what, p, a);
}

/* How shadow_add treats the new block's bytes. */
enum fresh { FRESH_FILL, FRESH_ZEROED, FRESH_COPIED };

/* Records a new block in slot s: checks alignment and arena, then fills it
 * with its pattern (FRESH_ZEROED: after checking it is zero; FRESH_COPIED:
 * ma_memdup already put the pattern there, verify it). */
static void shadow_add(struct worker *w, struct slot *s, void *p, size_t n, size_t align,
                       const char *what, enum fresh fresh)
{
    shadow_check_alignment(p, align, what);
    s->p = p;
    s->n = n;
    s->align = align;
    s->id = (w->next_id++ << 2) | w->index;
    s->arena = ma_arena_of(p);
    /* A small block comes from the thread's arena: the one it had before the
     * call, or the one it moved to during it (the thread cache moves a
     * thread away from a contended arena). */
    int now = (int)ma_thread_arena();
    if (s->arena >= 0 && s->arena != w->arena && s->arena != now)
        fail("%s by thread %u (arena %d, then %d) returned %p of arena %d", what, w->index,
             w->arena, now, p, s->arena);
    size_t u = ma_usable_size(p);
    if (u < n)
        fail("%s(%zu) returned %p with usable size %zu", what, n, p, u);
    if (fresh == FRESH_COPIED) {
        span_apply(SPAN_VERIFY, s->p, s->id, n, 0, n, "memdup copy");
    } else {
        if (fresh == FRESH_ZEROED)
            span_apply(SPAN_ZERO, s->p, 0, n, 0, n, "calloc memory not zeroed");
        span_apply(SPAN_FILL, s->p, s->id, n, 0, n, NULL);
    }
    __atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
}

static void shadow_verify(const struct slot *s, const char *when)
{
    if (ma_arena_of(s->p) != s->arena)
        fail("block %p moved from arena %d to %d (%s)", (void *)s->p, s->arena,
             ma_arena_of(s->p), when);
    span_apply(SPAN_VERIFY, s->p, s->id, s->n, 0, s->n, when);
}

static void slot_free(struct slot *s)
{
    if (s->p == NULL)
        return;
    shadow_verify(s, "before free");
    errno = ERRNO_MARK;
    ma_free(s->p);
    if (errno != ERRNO_MARK)
        fail("free(%p) changed errno to %d", (void *)s->p, errno);
    __atomic_sub_fetch(&live_bytes, s->n, __ATOMIC_RELAXED);
    s->p = NULL;
}

/* Requests that would take the live total past LIVE_CAP are cut down to
 * keep each input's memory and time bounded. */
static size_t capped(size_t n)
{
    if (__atomic_load_n(&live_bytes, __ATOMIC_RELAXED) + n > LIVE_CAP)
        return n & 1023;
    return n;
}

static void op_alloc(struct worker *w, const struct op *o, struct slot *s)
{
    slot_free(s);
    size_t n = capped(o->size);
    void *p = NULL;
    size_t align = 16;
    enum fresh fresh = FRESH_FILL;
    const char *what = "malloc";
    switch (o->kind) {
    case K_MALLOC:
        if (o->variant == 3 && n <= MEMDUP_MAX) {
            /* memdup of a buffer holding the pattern of the id to come */
            static unsigned char src[NTHREADS][MEMDUP_MAX];
            span_fill(src[w->index], (w->next_id << 2) | w->index, 0, n);
            p = ma_memdup(src[w->index], n);
            fresh = FRESH_COPIED;
            what = "memdup";
        } else {
            p = ma_malloc(n);
        }
        break;
    case K_CALLOC: {
        size_t count = 1, elem = n;
        if (o->variant == 1)
            count = n, elem = 1;
        else if (o->variant == 2)
            count = n / 16, elem = 16;
        else if (o->variant == 3)
            count = n ? 0 : 1, elem = n ? n : 0;
        n = count * elem;
        p = ma_calloc(count, elem);
        fresh = FRESH_ZEROED;
        what = "calloc";
        break;
    }
    case K_ALIGNED:
        /* 1 B .. 64 KiB, and 1 in 8 from 128 KiB to 2 MiB (the large
         * path's over-granule alignment) */
        align = (size_t)1 << (o->align < 224 ? o->align % 17 : 17 + (o->align - 224) % 5);
        p = ma_aligned_alloc(align, n);
        what = "aligned_alloc";
        break;
    default: { /* K_MEMALIGN */
        align = sizeof(void *) << (o->align % 14);
        void *q = (void *)&q;
        errno = ERRNO_MARK;
        int rc = ma_posix_memalign(&q, align, n);
        if (errno != ERRNO_MARK)
            fail("posix_memalign changed errno to %d", errno);
        if (rc != 0)
            fail("posix_memalign(%zu, %zu) returned %d", align, n, rc);
        p = q;
        what = "posix_memalign";
        break;
    }
    }
    if (p == NULL)
        fail("%s(%zu, align %zu) returned NULL, errno %d", what, n, align, errno);
    shadow_add(w, s, p, n, align, what, fresh);
}

static void op_realloc(struct worker *w, const struct op *o, struct slot *s)
{
    if (s->p == NULL) { /* realloc(NULL, n) is malloc(n) */
        size_t n = capped(o->size);
        void *p = o->kind == K_REALLOCARRAY ? ma_reallocarray(NULL, 1, n) : ma_realloc(NULL, n);
        if (p == NULL)
            fail("realloc(NULL, %zu) returned NULL, errno %d", n, errno);
        shadow_add(w, s, p, n, 16, "realloc(NULL)", FRESH_FILL);
        return;
    }
    size_t old = s->n, n;
    switch (o->variant) {
    case 0:
        n = o->size;
        break;
    case 1: /* grow: by up to 255 bytes plus up to the old size again */
        n = old + 1 + (o->sizebits & 0xff) + ((old * (o->sizebits >> 8)) >> 8);
        break;
    case 2: /* shrink: to a fraction of the old size */
        n = (old * o->sizebits) >> 16;
        break;
    default:
        n = 0;
        break;
    }
    if (n > old)
        n = old + capped(n - old);
    shadow_verify(s, "before realloc");
    unsigned char *q;
    if (o->kind == K_REALLOCARRAY) {
        size_t count = (o->sizebits & 7) + 1;
        n -= n % count;
        q = ma_reallocarray(s->p, count, n / count);
    } else {
        q = ma_realloc(s->p, n);
    }
    if (q == NULL)
        fail("realloc(%p, %zu) returned NULL, errno %d", (void *)s->p, n, errno);
    shadow_check_alignment(q, 16, "realloc");
    int arena = ma_arena_of(q);
    if (q == s->p && arena != s->arena)
        fail("realloc(%p) in place changed the arena from %d to %d", (void *)q, s->arena, arena);
    int now = (int)ma_thread_arena();
    if (q != s->p && arena >= 0 && arena != w->arena && arena != now)
        fail("realloc by thread %u (arena %d, then %d) moved the block to %p of arena %d",
             w->index, w->arena, now, (void *)q, arena);
    size_t u = ma_usable_size(q);
    if (u < n)
        fail("realloc(%zu) returned %p with usable size %zu", n, (void *)q, u);
    /* The kept prefix still holds the old pattern (same id, same offsets). */
    span_apply(SPAN_VERIFY, q, s->id, old, 0, old < n ? old : n, "prefix after realloc");
    s->p = q;
    s->n = n;
    s->arena = arena;
    span_apply(SPAN_FILL, q, s->id, n, 0, n, NULL);
    if (n > old)
        __atomic_add_fetch(&live_bytes, n - old, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(&live_bytes, old - n, __ATOMIC_RELAXED);
}

/* usable_size >= n, and every byte up to it may be written without harming
 * this block's pattern (or, through ma_check, any neighbour). */
static void op_usable(struct slot *s)
{
    if (s->p == NULL) {
        if (ma_usable_size(NULL) != 0)
            fail("usable_size(NULL) != 0");
        return;
    }
    size_t u = ma_usable_size(s->p);
    if (u < s->n)
        fail("usable_size(%p) = %zu < %zu", (void *)s->p, u, s->n);
    size_t end = u - s->n > SLACK_MAX ? s->n + SLACK_MAX : u;
    memset(s->p + s->n, 0xa5, end - s->n);
    shadow_verify(s, "after writing the slack");
}

/* Requests that must fail cleanly, leaving the heap and errno as specified. */
static void op_bad(const struct op *o, struct slot *s)
{
    void *p;
    errno = 0;
    switch (o->variant) {
    case 0:
        p = ma_malloc(SIZE_MAX - (o->sizebits & 0xff));
        if (p != NULL || errno != ENOMEM)
            fail("malloc(huge) = %p, errno %d", p, errno);
        p = ma_malloc((size_t)1 << 62);
        if (p != NULL || errno != ENOMEM)
            fail("malloc(2^62) = %p, errno %d", p, errno);
        break;
    case 1:
        p = ma_calloc((size_t)1 << 33, (size_t)1 << 33);
        if (p != NULL || errno != ENOMEM)
            fail("calloc(overflow) = %p, errno %d", p, errno);
        errno = 0;
        p = ma_reallocarray(NULL, SIZE_MAX / 2, 3);
        if (p != NULL || errno != ENOMEM)
            fail("reallocarray(overflow) = %p, errno %d", p, errno);
        break;
    case 2: {
        static const size_t bad[] = { 0, 3, 24, 48, 1000, 4097 };
        p = ma_aligned_alloc(bad[s - slots < 6 ? s - slots : 5], 64);
        if (p != NULL || errno != EINVAL)
            fail("aligned_alloc(bad alignment) = %p, errno %d", p, errno);
        void *q = (void *)s;
        errno = ERRNO_MARK;
        int rc = ma_posix_memalign(&q, 4, 64);
        if (rc != EINVAL || q != (void *)s || errno != ERRNO_MARK)
            fail("posix_memalign(4) = %d, out changed %d, errno %d", rc, q != (void *)s, errno);
        rc = ma_posix_memalign(&q, 24, 64);
        if (rc != EINVAL || q != (void *)s)
            fail("posix_memalign(24) = %d", rc);
        break;
    }
    default:
        /* A failed realloc leaves the old block intact. */
        if (s->p == NULL)
            break;
        p = ma_realloc(s->p, SIZE_MAX - 4096);
        if (p != NULL || errno != ENOMEM)
            fail("realloc(%p, huge) = %p, errno %d", (void *)s->p, p, errno);
        errno = 0;
        p = ma_reallocarray(s->p, SIZE_MAX / 4, 5);
        if (p != NULL || errno != ENOMEM)
            fail("reallocarray(%p, overflow) = %p, errno %d", (void *)s->p, p, errno);
        shadow_verify(s, "after a failed realloc");
        break;
    }
}

/* A tight loop of allocations the shadow table does not see: four blocks of
 * this thread, sizes from o->size / 2 to 1.5 * o->size, each malloc'ed, realloc'ed (grown or
 * shrunk) or freed in turn, with a head and tail mark checked at every step.
 * In concurrent mode the bursts of several workers overlap for long enough
 * to expose races between threads (a remote free against a drain, an
 * mremap against another thread's mmap) that one operation per hand-off
 * rarely reaches. */
#define BURST_MAX ((size_t)1 << 20)
#define BURST_BYTES ((size_t)64 << 20)
#define BURST_MARK ((size_t)32)

static void burst_mark(unsigned char *p, uint64_t id, size_t n, int verify, const char *when)
{
    size_t head = n < BURST_MARK ? n : BURST_MARK;
    size_t tail = n - head < BURST_MARK ? n - head : BURST_MARK;
    if (verify) {
        span_verify(p, id, 0, head, n, when);
        span_verify(p, id, n - tail, n, n, when);
    } else {
        span_fill(p, id, 0, head);
        span_fill(p, id, n - tail, n);
    }
}

static void op_burst(struct worker *w, const struct op *o)
{
    struct { unsigned char *p; size_t n; uint64_t id; } b[4] = { { NULL, 0, 0 } };
    size_t base = o->size < BURST_MAX ? o->size : BURST_MAX;
    unsigned iters = 4u << (2 * o->variant);
    /* At most BURST_BYTES through each burst: large blocks cost a few system
     * calls each (mmap, two trims, munmap), and a munmap in a process with
     * five threads is a TLB shootdown. */
    if (iters > 4 && (size_t)iters * base > BURST_BYTES)
        iters = base > BURST_BYTES / 4 ? 4 : (unsigned)(BURST_BYTES / base);
    for (unsigned i = 0; i < iters; i++) {
        unsigned j = i & 3;
        size_t n = base / 2 + (size_t)((i * 2654435761u) % (base + 16));
        if (b[j].p == NULL) {
            b[j].p = ma_malloc(n);
            if (b[j].p == NULL)
                fail("burst: malloc(%zu) returned NULL, errno %d", n, errno);
            shadow_check_alignment(b[j].p, 16, "burst malloc");
            b[j].n = n;
            b[j].id = (w->next_id++ << 2) | w->index;
            burst_mark(b[j].p, b[j].id, n, 0, NULL);
        } else if ((i >> 2) % 3 != 2) {
            burst_mark(b[j].p, b[j].id, b[j].n, 1, "burst: before realloc");
            unsigned char *q = ma_realloc(b[j].p, n);
            if (q == NULL)
                fail("burst: realloc(%zu) returned NULL, errno %d", n, errno);
            shadow_check_alignment(q, 16, "burst realloc");
            /* The kept head must have survived; then mark the new size. */
            size_t keep = (n < b[j].n ? n : b[j].n) < BURST_MARK ? (n < b[j].n ? n : b[j].n) : BURST_MARK;
            span_verify(q, b[j].id, 0, keep, n, "burst: head after realloc");
            b[j].p = q;
            b[j].n = n;
            burst_mark(q, b[j].id, n, 0, NULL);
        } else {
            burst_mark(b[j].p, b[j].id, b[j].n, 1, "burst: before free");
            ma_free(b[j].p);
            b[j].p = NULL;
        }
    }
    for (unsigned j = 0; j < 4; j++) {
        if (b[j].p != NULL) {
            burst_mark(b[j].p, b[j].id, b[j].n, 1, "burst: before free");
            ma_free(b[j].p);
        }
    }
}

static void op_run(struct worker *w, const struct op *o)
{
    struct slot *s = &slots[o->slot];
    w->arena = (int)ma_thread_arena();
    switch (o->kind) {
    case K_MALLOC:
    case K_CALLOC:
    case K_ALIGNED:
    case K_MEMALIGN:
        op_alloc(w, o, s);
        break;
    case K_REALLOC:
    case K_REALLOCARRAY:
        op_realloc(w, o, s);
        break;
    case K_FREE:
        slot_free(s);
        break;
    case K_USABLE:
        op_usable(s);
        break;
    case K_CHECK:
        /* The reports walk every arena too, while other workers run. */
        if (o->variant == 2)
            ma_stats_print(devnull, o->slot & 15);
        else if (o->variant == 3 && (o->slot & 1))
            ma_heap_map(devnull);
        else if (o->variant == 3)
            ma_print_free_list(devnull);
        else
            ma_check();
        break;
    case K_TRIM:
        ma_trim();
        break;
    case K_BAD:
        op_bad(o, s);
        break;
    case K_BURST:
        op_burst(w, o);
        break;
    default: /* K_ROUND: handled by the dispatcher */
        break;
    }
}

/* ---- workers and hand-off ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->arena = (int)ma_thread_arena();
    sem_post(&w->done);
    for (;;) {
        while (sem_wait(&w->go) != 0)
            ;
        if (w->cleanup) {
            for (unsigned s = 0; s < NSLOTS; s++)
                if ((s + w->round) % NTHREADS == w->index)
                    slot_free(&slots[s]);
            /* Hand the thread cache's blocks back to the arena, so that the
             * end-of-input check sees every block freed. */
            ma_thread_cache(0);
            ma_thread_cache(1);
        } else {
            for (size_t i = 0; i < w->nops; i++)
                op_run(w, &w->ops[i]);
        }
        sem_post(&w->done);
    }
    return NULL;
}

static void worker_wait(struct worker *w)
{
    while (sem_wait(&w->done) != 0)
        ;
}

/* Runs ops[0..n) on worker t and waits for it. */
static void run_on(unsigned t, const struct op *ops, size_t n)
{
    struct worker *w = &workers[t];
    w->ops = ops;
    w->nops = n;
    w->cleanup = 0;
    sem_post(&w->go);
    worker_wait(w);
}

static void workers_start(void)
{
    /* One at a time, so worker t takes arena t % arenas (round-robin on
     * first use): deterministic arenas for lockstep runs. */
    for (unsigned t = 0; t < NTHREADS; t++) {
        struct worker *w = &workers[t];
        w->index = t;
        sem_init(&w->go, 0, 0);
        sem_init(&w->done, 0, 0);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
            fail("pthread_create failed");
        worker_wait(w);
    }
}

/* Once every block is freed (and the workers' thread caches flushed), no
 * large mapping is left and no remote free is pending; blocks may still be
 * parked in an arena's quick lists and chunks kept as reserve, but after
 * ma_trim() every arena must hold no allocated byte and no chunk. ma_trim()
 * runs only when needed, so the reserve usually carries over to the next
 * input as it would in a program. */
static ma_stats_t stats;

static int heap_empty(int trimmed)
{
    static long reserve = -1;
    if (reserve < 0) {
        const char *e = getenv("MEMALLOC_CHUNK_RESERVE");
        reserve = e != NULL ? strtol(e, NULL, 10) : 1;
    }
    stats.size = sizeof stats;
    if (ma_stats_get(&stats) != 0)
        fail("ma_stats_get failed, errno %d", errno);
    if (stats.large_live != 0)
        fail("%zu large blocks (%zu bytes) still mapped after freeing everything",
             stats.large_live, stats.large_bytes);
    unsigned n = stats.arenas < MA_STATS_MAX_ARENAS ? stats.arenas : MA_STATS_MAX_ARENAS;
    for (unsigned i = 0; i < n; i++) {
        const ma_arena_stats_t *st = &stats.arena[i];
        if (st->remote_pending != 0)
            fail("arena %u: %llu remote frees pending after ma_stats_get drained it", i,
                 (unsigned long long)st->remote_pending);
        if (trimmed && (st->in_use != 0 || st->chunks != 0))
            fail("arena %u not empty after freeing everything and ma_trim(): in_use %zu, "
                 "chunks %zu, mapped %zu",
                 i, st->in_use, st->chunks, st->mapped);
        if (st->in_use != 0 || (long)st->chunks > reserve)
            return 0;
    }
    return 1;
}

static void heap_verify_empty(void)
{
    if (!heap_empty(0)) {
        ma_trim();
        heap_empty(1);
    }
}

/* ---- libFuzzer entry points ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    if (getenv("MEMALLOC_ARENAS") == NULL) {
        setenv("MEMALLOC_ARENAS", "4", 1);
        execv("/proc/self/exe", *argv);
        fail("cannot re-execute with MEMALLOC_ARENAS=4");
    }
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0)
        fail("cannot open /dev/null");
    workers_start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct op ops[MAX_OPS];
    if (size == 0)
        return 0;
    int concurrent = data[0] & 1;
    check_every = 16u << ((data[0] >> 1) & 3);
    size_t n = decode(data, size, concurrent, ops);
    inputs_run++;

    size_t since_check = 0;
    unsigned round = 0;
    if (!concurrent) {
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && ops[j].thread == ops[i].thread && since_check + (j - i) < check_every)
                j++;
            run_on(ops[i].thread, ops + i, j - i);
            since_check += j - i;
            if (since_check >= check_every) {
                ma_check();
                since_check = 0;
            }
            i = j;
        }
        /* Free what is left, worker by worker: slot s by worker (s + 1) % 4. */
        for (unsigned t = 0; t < NTHREADS; t++) {
            struct worker *w = &workers[t];
            w->cleanup = 1;
            w->round = 1;
            sem_post(&w->go);
            worker_wait(w);
        }
    } else {
        /* Per round, each worker's ops in input order, all four at once. */
        static struct op mine[NTHREADS][MAX_OPS];
        size_t count[NTHREADS];
        for (size_t i = 0; i < n;) {
            memset(count, 0, sizeof count);
            size_t j = i;
            for (; j < n && ops[j].kind != K_ROUND; j++)
                mine[ops[j].thread][count[ops[j].thread]++] = ops[j];
            for (unsigned t = 0; t < NTHREADS; t++) {
                workers[t].ops = mine[t];
                workers[t].nops = count[t];
                workers[t].cleanup = 0;
                sem_post(&workers[t].go);
            }
            for (unsigned t = 0; t < NTHREADS; t++)
                worker_wait(&workers[t]);
            since_check += j - i;
            if (since_check >= check_every) {
                ma_check();
                since_check = 0;
            }
            round++;
            i = j + 1;
        }
        /* Everything left is freed in the next round, by its owners then. */
        for (unsigned t = 0; t < NTHREADS; t++) {
            workers[t].cleanup = 1;
            workers[t].round = round;
            sem_post(&workers[t].go);
        }
        for (unsigned t = 0; t < NTHREADS; t++)
            worker_wait(&workers[t]);
    }
    ma_check();
    heap_verify_empty();
    return 0;
}
