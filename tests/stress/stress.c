/*
 * stress.c - a native stress program for memalloc, in the spirit of
 * mimalloc's test-stress: no sanitizer, full speed, many operations.
 *
 * Linked with build/libmemalloc.a, so every malloc of the program (and of
 * libc on its behalf) is memalloc's, and ma_check/ma_stats_get/ma_trim are
 * at hand. Each round the main thread starts THREADS workers and joins them;
 * a worker owns a private table of blocks and, per step, allocates (malloc,
 * calloc, posix_memalign, aligned_alloc, memalign, realloc(NULL)), frees,
 * reallocs (grow, shrink, or a fresh size) or swaps a block with a slot of
 * the shared table (one atomic exchange), so a block allocated by one
 * thread is freed or realloc'ed by another, often after its first owner has
 * exited (the shared table outlives the rounds).
 *
 * Every block carries a pattern derived from its address, its size and the
 * run's seed, written when it is allocated and checked before every free and
 * realloc (and the kept prefix is checked again after a realloc); calloc's
 * zeroes and every alignment are checked on arrival. Blocks up to FULL_MAX
 * bytes are written and checked byte for byte; bigger ones in their first
 * and last HEAD_TAIL bytes and SAMPLE bytes of every 4 KiB page, at an
 * offset that moves from page to page (checking a multi-MiB block in full on
 * every free would make the run measure memcpy, not the allocator).
 *
 * Worker 0 calls ma_check() every CHECK_EVERY of its operations, the main
 * thread after every round. At the end everything is freed, ma_trim()
 * flushes the caches, and the bytes in use (arena blocks and large
 * mappings, from ma_stats_get) must equal what they were at the start.
 *
 * Sizes: 1 B to 1 KiB for most requests (log-uniform, so half are 32 bytes
 * or less), 1-256 KiB for MEDIUM_PER_10K in 10,000, 256 KiB-8 MiB for
 * LARGE_PER_10K in 10,000; reallocs walk sizes up and down from there.
 *
 * Deterministic per seed: each worker draws from its own xorshift seeded by
 * (seed, round, worker), so a worker's sequence of requests repeats from run
 * to run; what the shared table hands it depends on the interleaving.
 *
 * One line of figures on stdout; on any mismatch one "stress: ..." line on
 * stderr and exit status 1 (memalloc's own checks abort with theirs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "memalloc.h"

#define MAX_THREADS 256
#define LOCAL_MAX 512           /* private slots of the busiest worker */
#define SHARED_SLOTS 1024       /* blocks in flight between threads */
#define FULL_MAX 4096           /* blocks up to this size are checked in full */
#define HEAD_TAIL 1024          /* bigger ones: first and last KiB ... */
#define PAGE 4096
#define SAMPLE 64               /* ... and 64 bytes of every page */
#define MEDIUM_PER_10K 300      /* requests of 1-256 KiB, per 10,000 */
#define LARGE_PER_10K 2         /* requests of 256 KiB-8 MiB, per 10,000 */
#define MAX_SIZE ((size_t)8 << 20)
#define INLINE_MAX 65536        /* sizes below this travel in the reference */

/* ---- options and run-wide state ---- */

static uint64_t opt_ops = 100000000;    /* allocator calls to make */
static unsigned opt_threads = 16;
static unsigned opt_rounds = 50;
static uint64_t opt_seed = 1;
static uint64_t opt_check_every = 4096;   /* worker 0's ma_check period */
static uint64_t opt_corrupt_at;         /* 0, or worker 0's call at which to flip a byte */
/* Calls made by worker 0 in the rounds before the current one (for -x);
 * written by the main thread while no worker runs. */
static uint64_t w0_calls;

/* The shared table: references (see ref_t) swapped in and out with atomic
 * exchange; 0 is an empty slot. Outlives the rounds. */
static _Atomic uint64_t shared[SHARED_SLOTS];

/* Allocator calls made, by kind, summed from the workers after each join. */
enum { K_MALLOC, K_CALLOC, K_MEMALIGN, K_REALLOC, K_FREE, K_XCHG, K_CHECK, K_NKINDS };
static uint64_t totals[K_NKINDS];

/* ---- failure ---- */

/* One line on stderr and exit status 1, without touching the heap (it may
 * be what is broken). _exit: other workers may still be running. */
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "stress: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    (void)!write(2, buf, len);
    _exit(1);
}

/* ---- random numbers ---- */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: every input bit reaches every output bit. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* xorshift64*: one per worker, never 0. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* A size from the mix real programs show: mostly small, a tail of medium,
 * rarely large. Log-uniform inside each band. */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s);
    unsigned band = (unsigned)(r % 10000);
    r >>= 16;
    unsigned lo, hi; /* log2 of the band's bounds */
    if (band < LARGE_PER_10K)
        lo = 18, hi = 23;               /* 256 KiB - 8 MiB */
    else if (band < LARGE_PER_10K + MEDIUM_PER_10K)
        lo = 10, hi = 18;               /* 1 KiB - 256 KiB */
    else
        lo = 0, hi = 10;                /* 1 B - 1 KiB */
    unsigned b = lo + (unsigned)(r % (hi - lo));
    r >>= 8;
    size_t n = ((size_t)1 << b) + (size_t)(r % ((size_t)1 << b));
    return n > MAX_SIZE ? MAX_SIZE : n;
}

/* ---- references: a block's address and size in one word ----
 *
 * The shared table must move a block and its size together with one atomic
 * exchange. Bits 0-47 hold the address (user space sits below 2^47 on
 * x86-64); bits 48-63 the size when it is below INLINE_MAX. A block of
 * INLINE_MAX bytes or more has 0 there and keeps its size in its own first
 * word, in place of the pattern's first word. 0 is no block. */
typedef uint64_t ref_t;

static ref_t ref_make(void *p, size_t size)
{
    uint64_t a = (uint64_t)(uintptr_t)p;
    if (a >> 48)
        fail("block at %p lies above 2^48: cannot pack its address", p);
    /* block_fill has written the size word of a big block. */
    return size >= INLINE_MAX ? a : a | (uint64_t)size << 48;
}

static unsigned char *ref_ptr(ref_t r) { return (unsigned char *)(uintptr_t)(r & ((1ull << 48) - 1)); }

static size_t ref_size(ref_t r)
{
    if (r >> 48)
        return (size_t)(r >> 48);
    uint64_t n;
    memcpy(&n, ref_ptr(r), sizeof n);
    if (n < INLINE_MAX || n > MAX_SIZE)
        fail("block %p: the size word in its first 8 bytes reads %llu; it was overwritten",
             (void *)ref_ptr(r), (unsigned long long)n);
    return (size_t)n;
}

/* ---- patterns ----
 *
 * Word k of a block (8 bytes at offset 8k) holds key + k * golden, where the
 * key hashes the block's address, size and the seed: neighbouring words
 * differ, and a block's bytes found in another block, or at another offset,
 * do not match. A block of INLINE_MAX bytes or more has its size as word 0
 * (see ref_t). Bytes of a partial word are that word's bytes in memory
 * order, so byte and word accesses agree. */
#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t block_key(const void *p, size_t size)
{
    return mix64((uint64_t)(uintptr_t)p ^ mix64(opt_seed + size));
}

static uint64_t word_at(uint64_t key, size_t size, size_t k)
{
    if (k == 0 && size >= INLINE_MAX)
        return size;
    return key + k * GOLDEN;
}

enum { V_FILL, V_CHECK, V_ZERO };

/* Result of a check: the first bad offset, with what was expected there. */
struct bad {
    size_t off;
    unsigned char want, got;
};

/* Fills, checks against the pattern, or checks for zeroes the bytes
 * [from, to) of block p. Returns 1 if all matched (always for V_FILL);
 * otherwise 0 with *bad set. */
static int range_visit(unsigned char *p, size_t size, uint64_t key, size_t from, size_t to, int how,
                       struct bad *bad)
{
    size_t i = from;
    /* Bytes up to the next word boundary, the whole words, the rest: the
     * same bytes either way, see above. */
    while (i < to) {
        size_t k = i / 8;
        if (i % 8 == 0 && i + 8 <= to) {
            uint64_t *w = (uint64_t *)(void *)(p + i);
            size_t nw = (to - i) / 8;
            if (how == V_FILL) {
                /* Word 0 apart, so the loop is a plain induction. */
                size_t j = 0;
                if (k == 0)
                    w[j++] = word_at(key, size, 0);
                for (; j < nw; j++)
                    w[j] = key + (k + j) * GOLDEN;
            } else {
                for (size_t j = 0; j < nw; j++) {
                    uint64_t want = how == V_ZERO ? 0 : word_at(key, size, k + j);
                    if (w[j] != want) {
                        /* Find the first differing byte for the report. */
                        unsigned char wb[8], gb[8];
                        memcpy(wb, &want, 8);
                        memcpy(gb, &w[j], 8);
                        unsigned b = 0;
                        while (wb[b] == gb[b])
                            b++;
                        *bad = (struct bad){ (k + j) * 8 + b, wb[b], gb[b] };
                        return 0;
                    }
                }
            }
            i += nw * 8;
            continue;
        }
        uint64_t wv = how == V_ZERO ? 0 : word_at(key, size, k);
        unsigned char wb[8];
        memcpy(wb, &wv, 8);
        if (how == V_FILL)
            p[i] = wb[i % 8];
        else if (p[i] != wb[i % 8]) {
            *bad = (struct bad){ i, wb[i % 8], p[i] };
            return 0;
        }
        i++;
    }
    return 1;
}

/* Visits the bytes of block p (of `size` bytes) below `limit` that carry the
 * pattern: all of them up to FULL_MAX, else the head, one SAMPLE per page
 * and the tail. */
static int block_visit(unsigned char *p, size_t size, uint64_t key, size_t limit, int how, struct bad *bad)
{
    if (limit > size)
        limit = size;
    if (size <= FULL_MAX)
        return range_visit(p, size, key, 0, limit, how, bad);
    if (!range_visit(p, size, key, 0, limit < HEAD_TAIL ? limit : HEAD_TAIL, how, bad))
        return 0;
    for (size_t k = 1;; k++) {
        /* The sample's offset in its page moves by 7 * 64 bytes a page, so
         * every part of a page gets sampled somewhere in a big block. */
        size_t off = k * PAGE + ((k * 7 * SAMPLE) & (PAGE - 1) & ~(size_t)(SAMPLE - 1));
        if (off + SAMPLE > size - HEAD_TAIL || off >= limit)
            break;
        if (!range_visit(p, size, key, off, off + SAMPLE < limit ? off + SAMPLE : limit, how, bad))
            return 0;
    }
    if (size - HEAD_TAIL < limit)
        return range_visit(p, size, key, size - HEAD_TAIL, limit, how, bad);
    return 1;
}

/* ---- workers ---- */

struct worker {
    unsigned id, round;
    uint64_t rng;
    uint64_t quota;             /* allocator calls to make this round */
    uint64_t calls;             /* allocator calls made */
    uint64_t count[K_NKINDS];
    size_t nlocal;
    ref_t local[LOCAL_MAX];     /* private blocks; 0 = empty */
};

static struct worker workers[MAX_THREADS];

/* Writes the pattern (and so, for a big block, its size word). */
static void block_fill(void *p, size_t size)
{
    struct bad unused;
    block_visit(p, size, block_key(p, size), size, V_FILL, &unused);
}

/* Checks the pattern of a block about to be freed or realloc'ed. */
static void block_check(const struct worker *w, ref_t r, const char *before)
{
    unsigned char *p = ref_ptr(r);
    size_t size = ref_size(r);
    struct bad bad;
    if (!block_visit(p, size, block_key(p, size), size, V_CHECK, &bad))
        fail("block %p (%zu bytes) differs from its pattern at offset %zu before %s: expected 0x%02x, "
             "found 0x%02x (worker %u, round %u, call %llu, seed %llu)",
             (void *)p, size, bad.off, before, bad.want, bad.got, w->id, w->round,
             (unsigned long long)w->calls, (unsigned long long)opt_seed);
}

static void *checked(const struct worker *w, void *p, size_t size, const char *what)
{
    if (p == NULL)
        fail("%s(%zu) returned NULL, errno %d (worker %u, round %u, call %llu)", what, size, errno, w->id,
             w->round, (unsigned long long)w->calls);
    /* Every block is at least 16-byte aligned (memalloc.h). */
    if ((uintptr_t)p % 16 != 0)
        fail("%s(%zu) returned %p, not 16-byte aligned", what, size, p);
    return p;
}

/* Allocates a block of a random size by a random route, checks what the
 * route promises (zeroes, alignment, usable size) and fills the pattern. */
static ref_t worker_alloc(struct worker *w)
{
    size_t size = pick_size(&w->rng);
    uint64_t r = rnd(&w->rng);
    unsigned route = (unsigned)(r % 100);
    r >>= 8;
    void *p;
    if (route < 70) {
        p = checked(w, malloc(size), size, "malloc");
        w->count[K_MALLOC]++;
    } else if (route < 80) {
        /* As count x elem when the size allows it, so the product path runs. */
        size_t elem = size % 24 == 0 ? 24 : size % 8 == 0 ? 8 : 1;
        p = checked(w, calloc(size / elem, elem), size, "calloc");
        struct bad bad;
        if (!block_visit(p, size, 0, size, V_ZERO, &bad))
            fail("calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not zero (worker %u, round %u, call %llu)",
                 size / elem, elem, p, bad.off, bad.got, w->id, w->round, (unsigned long long)w->calls);
        w->count[K_CALLOC]++;
    } else if (route < 97) {
        /* Alignments 8 B - 4 KiB; one in 256 from 8 KiB to 1 MiB (memalloc
         * serves the biggest from their own mappings: a system call each). */
        unsigned lg = (r & 255) == 0 ? 13 + (unsigned)((r >> 8) % 8) : 3 + (unsigned)((r >> 8) % 10);
        size_t align = (size_t)1 << lg;
        const char *how;
        if (route < 88) {
            how = "posix_memalign";
            int e = posix_memalign(&p, align, size);
            if (e != 0)
                fail("posix_memalign(%zu, %zu) failed: error %d", align, size, e);
        } else if (route < 94) {
            how = "aligned_alloc";
            p = aligned_alloc(align, size);
        } else {
            how = "memalign";
            p = memalign(align, size);
        }
        checked(w, p, size, how);
        if ((uintptr_t)p & (align - 1))
            fail("%s(%zu, %zu) returned %p, not aligned to %zu", how, align, size, p, align);
        w->count[K_MEMALIGN]++;
    } else {
        p = checked(w, realloc(NULL, size), size, "realloc(NULL)");
        w->count[K_REALLOC]++;
    }
    w->calls++;
    if ((r & 7) == 0 && malloc_usable_size(p) < size)
        fail("malloc_usable_size(%p) = %zu, below the %zu bytes asked", p, malloc_usable_size(p), size);
    block_fill(p, size);
    /* The deliberate fault of -x: one byte of a live block flipped behind
     * the allocator's back, as a stray write would. Only a pattern check can
     * see it. */
    if (w->id == 0 && opt_corrupt_at && w0_calls + w->calls >= opt_corrupt_at) {
        ((unsigned char *)p)[size - 1] ^= 0x40;
        opt_corrupt_at = 0;
    }
    return ref_make(p, size);
}

static void worker_free(struct worker *w, ref_t r, const char *why)
{
    block_check(w, r, why);
    free(ref_ptr(r));
    w->calls++;
    w->count[K_FREE]++;
}

/* Resizes a block: bigger (up to twice), smaller, or a fresh size; checks it
 * before, checks the kept prefix after, then writes the new pattern. */
static ref_t worker_realloc(struct worker *w, ref_t r)
{
    block_check(w, r, "realloc");
    unsigned char *p = ref_ptr(r);
    size_t old = ref_size(r);
    uint64_t x = rnd(&w->rng);
    size_t size;
    if (x % 10 == 0)
        size = pick_size(&w->rng);
    else if (x % 2 == 0)
        size = old + 1 + (size_t)((x >> 8) % old);
    else
        size = 1 + (size_t)((x >> 8) % old);
    if (size > MAX_SIZE)
        size = 1 + (size_t)((x >> 8) % old);
    uint64_t key = block_key(p, old);
    uintptr_t was = (uintptr_t)p; /* for the report only: p is dead once realloc returns */
    unsigned char *q = checked(w, realloc(p, size), size, "realloc");
    w->calls++;
    w->count[K_REALLOC]++;
    /* The kept bytes still hold the old block's pattern (old address and
     * size), wherever the block now is. */
    struct bad bad;
    if (!block_visit(q, old, key, size, V_CHECK, &bad))
        fail("realloc(%#lx, %zu -> %zu) = %p lost the contents at offset %zu: expected 0x%02x, found 0x%02x "
             "(worker %u, round %u, call %llu)",
             (unsigned long)was, old, size, (void *)q, bad.off, bad.want, bad.got, w->id, w->round,
             (unsigned long long)w->calls);
    block_fill(q, size);
    return ref_make(q, size);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t next_check = opt_check_every;
    while (w->calls < w->quota) {
        uint64_t r = rnd(&w->rng);
        size_t i = (size_t)(r % w->nlocal);
        unsigned what = (unsigned)((r >> 32) % 100);
        ref_t *slot = &w->local[i];
        if (*slot == 0) {
            *slot = worker_alloc(w);
        } else if (what < 40) {
            worker_free(w, *slot, "free");
            *slot = 0;
        } else if (what < 65) {
            *slot = worker_realloc(w, *slot);
        } else if (what < 80) {
            /* Hand the block to whichever thread takes this slot next and
             * take over what was there: a block of another worker, maybe of
             * a worker of an earlier round that has exited. */
            size_t j = (size_t)(rnd(&w->rng) % SHARED_SLOTS);
            *slot = atomic_exchange_explicit(&shared[j], *slot, memory_order_acq_rel);
            w->count[K_XCHG]++;
        } else if (what < 99) {
            worker_free(w, *slot, "free");
            *slot = worker_alloc(w);
        } else {
            /* realloc(p, 0) frees p and returns a minimum-size block. */
            block_check(w, *slot, "realloc to 0");
            void *q = realloc(ref_ptr(*slot), 0);
            checked(w, q, 0, "realloc(p, 0)");
            free(q);
            w->calls += 2;
            w->count[K_REALLOC]++;
            w->count[K_FREE]++;
            *slot = 0;
        }
        if (w->id == 0 && opt_check_every && w->calls >= next_check) {
            ma_check();
            w->count[K_CHECK]++;
            next_check += opt_check_every;
        }
    }
    /* Whatever the worker still holds dies with it; the shared table keeps
     * its share for the workers of later rounds. */
    for (size_t i = 0; i < w->nlocal; i++)
        if (w->local[i]) {
            worker_free(w, w->local[i], "free at thread exit");
            w->local[i] = 0;
        }
    return NULL;
}

/* ---- the run ---- */

/* Thread stacks of our own, mapped once per worker and reused by every
 * round. glibc keeps the stacks it allocates for exited threads (40 MiB of
 * them: four of the default 8 MiB) together with each one's TLS vector, a
 * block it callocs from us; a stack of the caller's is never cached, its
 * TLS vector is freed at pthread_join. So at the end of the run the heap
 * holds nothing of glibc's either, and the bytes in use must be exactly
 * those at the start. */
#define STACK_SIZE ((size_t)1 << 20)
static void *stacks[MAX_THREADS];

static void thread_start(pthread_t *th, unsigned t, void *(*fn)(void *), void *arg)
{
    if (stacks[t] == NULL) {
        void *s = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (s == MAP_FAILED)
            fail("mmap of a %zu-byte thread stack: errno %d", STACK_SIZE, errno);
        /* A guard page below, as glibc's own stacks have. */
        if (mprotect(s, PAGE, PROT_NONE) != 0)
            fail("mprotect of a stack guard page: errno %d", errno);
        stacks[t] = s;
    }
    pthread_attr_t attr;
    int e = pthread_attr_init(&attr);
    if (e == 0)
        e = pthread_attr_setstack(&attr, stacks[t], STACK_SIZE);
    if (e == 0)
        e = pthread_create(th, &attr, fn, arg);
    if (e != 0)
        fail("pthread_create: error %d", e);
    pthread_attr_destroy(&attr);
}

static uint64_t parse_count(const char *s, const char *what)
{
    /* "1e8", "100000000", or "1e8/10": scientific notation, and a divisor
     * so the Makefile can scale one figure for the slower check mode. */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end == '/') {
        double d = strtod(end + 1, &end);
        if (d < 1)
            fail("%s: bad divisor in '%s'", what, s);
        v /= d;
    }
    if (errno || end == s || *end != '\0' || v < 0 || v > 1e15)
        fail("%s: '%s' is not a count (examples: 1e8, 250000, 1e8/10)", what, s);
    return (uint64_t)v;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void stats(ma_stats_t *s)
{
    s->size = sizeof *s;
    if (ma_stats_get(s) != 0)
        fail("ma_stats_get failed, errno %d", errno);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: stress [-n OPS] [-t THREADS] [-r ROUNDS] [-s SEED] [-c CHECK_EVERY] [-x CALL]\n"
            "  -n  allocator calls in all (default 1e8; 1e9, 5e6/10 accepted)\n"
            "  -t  worker threads, started anew every round (default 16, at most %d)\n"
            "  -r  rounds (default 50)\n"
            "  -s  seed (default 1)\n"
            "  -c  worker 0 calls ma_check() every this many of its calls (default 4096; 0: never)\n"
            "  -x  flip the last byte of the block worker 0 allocates at this call, counted over\n"
            "      its rounds (to see a mismatch reported: the run must then fail)\n",
            MAX_THREADS);
    exit(2);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:t:r:s:c:x:h")) != -1) {
        switch (c) {
        case 'n': opt_ops = parse_count(optarg, "-n"); break;
        case 't': opt_threads = (unsigned)parse_count(optarg, "-t"); break;
        case 'r': opt_rounds = (unsigned)parse_count(optarg, "-r"); break;
        case 's': opt_seed = parse_count(optarg, "-s"); break;
        case 'c': opt_check_every = parse_count(optarg, "-c"); break;
        case 'x': opt_corrupt_at = parse_count(optarg, "-x"); break;
        default: usage();
        }
    }
    if (optind != argc || opt_threads < 1 || opt_threads > MAX_THREADS || opt_rounds < 1)
        usage();

    /* The bytes in use before the first block: the figure to come back to.
     * ma_trim first, so no cache holds blocks counted as in use. */
    ma_trim();
    ma_stats_t before, after;
    stats(&before);

    pthread_t th[MAX_THREADS];
    double t0 = now();
    uint64_t per_round = opt_ops / opt_rounds;
    for (unsigned round = 0; round < opt_rounds; round++) {
        /* The calls of this round, spread over the workers; the last round
         * takes the remainder of the division by rounds. */
        uint64_t n = round + 1 == opt_rounds ? opt_ops - per_round * (opt_rounds - 1) : per_round;
        for (unsigned t = 0; t < opt_threads; t++) {
            struct worker *w = &workers[t];
            memset(w, 0, sizeof *w);
            w->id = t;
            w->round = round;
            w->rng = mix64(opt_seed ^ mix64((uint64_t)round << 32 | t)) | 1;
            w->quota = n / opt_threads + (t < n % opt_threads);
            /* Live sets of 64 to 512 blocks, so threads differ in heap size. */
            w->nlocal = (size_t)LOCAL_MAX >> (t % 4);
            thread_start(&th[t], t, worker_main, w);
        }
        for (unsigned t = 0; t < opt_threads; t++) {
            pthread_join(th[t], NULL);
            for (int k = 0; k < K_NKINDS; k++)
                totals[k] += workers[t].count[k];
        }
        w0_calls += workers[0].calls;
        ma_check();
        totals[K_CHECK]++;
    }
    /* Drain the shared table: the last blocks are freed by a thread that
     * allocated none of them. */
    struct worker *m = &workers[0];
    memset(m, 0, sizeof *m);
    m->id = opt_threads; /* reported as the main thread's number */
    m->round = opt_rounds;
    for (size_t j = 0; j < SHARED_SLOTS; j++) {
        ref_t r = atomic_exchange(&shared[j], 0);
        if (r)
            worker_free(m, r, "the final free");
    }
    totals[K_FREE] += m->count[K_FREE];
    double secs = now() - t0;
    ma_check();
    ma_trim();
    stats(&after);
    if (opt_corrupt_at)
        fail("-x %llu: worker 0 made only %llu calls, so no byte was flipped; ask for fewer",
             (unsigned long long)opt_corrupt_at, (unsigned long long)w0_calls);

    /* Every byte back: arena blocks in use and large mappings as at start. */
    if (after.in_use != before.in_use || after.allocs - after.frees != before.allocs - before.frees ||
        after.large_live != before.large_live || after.large_bytes != before.large_bytes) {
        /* What is still allocated, by class and arena, to go with the line. */
        ma_stats_print(2, MA_PRINT_LEAKS);
        fail("not every byte went back: arena bytes in use %zu at start, %zu at the end; arena blocks "
             "allocated and not freed %lld at start, %lld at the end; large mappings %zu (%zu bytes) at "
             "start, %zu (%zu bytes) at the end",
             before.in_use, after.in_use, (long long)(before.allocs - before.frees),
             (long long)(after.allocs - after.frees), before.large_live, before.large_bytes,
             after.large_live, after.large_bytes);
    }

    uint64_t calls = totals[K_MALLOC] + totals[K_CALLOC] + totals[K_MEMALIGN] + totals[K_REALLOC] +
                     totals[K_FREE];
    const char *check = getenv("MEMALLOC_CHECK");
    printf("stress: %llu ops in %.2f s, %.2f M ops/s; %u rounds x %u threads, seed %llu, MEMALLOC_CHECK=%s; "
           "malloc %llu calloc %llu aligned %llu realloc %llu free %llu, %llu exchanges, %llu ma_check; "
           "in use back to %zu bytes\n",
           (unsigned long long)calls, secs, (double)calls / secs / 1e6, opt_rounds, opt_threads,
           (unsigned long long)opt_seed, check ? check : "0", (unsigned long long)totals[K_MALLOC],
           (unsigned long long)totals[K_CALLOC], (unsigned long long)totals[K_MEMALIGN],
           (unsigned long long)totals[K_REALLOC], (unsigned long long)totals[K_FREE],
           (unsigned long long)totals[K_XCHG], (unsigned long long)totals[K_CHECK], after.in_use);
    return 0;
}
