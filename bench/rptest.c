/*
 * rptest.c - scattered allocate / free / cross-thread free loops (after
 * rpmalloc's benchmark by Mattias Jansson, in the variant mimalloc-bench
 * runs as rptest; written from their published descriptions and a reading
 * of that source, no code taken from it).
 *
 * Each of T threads owns an array of B slots. One loop iteration:
 *
 *   1. takes its inbox: the parcels other threads handed it (below);
 *   2. frees F blocks at slots scattered over the array (a prime stride
 *      that does not divide B; empty slots are skipped), F = 0.8 * O * u
 *      with u drawn in [0.30, 0.99] each iteration;
 *   3. checks and frees every block of the parcels it took;
 *   4. allocates A = O * u' blocks (u' in [0.30, 0.99]) into slots at another
 *      prime stride, freeing whatever a slot still holds;
 *   5. every C-th iteration (C, the cross rate; none with one thread) also
 *      allocates a parcel of A blocks (the parcel and its pointer array are
 *      two allocations of their own) and pushes it onto the inbox of the
 *      next other thread in turn, which frees them: cross-thread frees.
 *      Parcels stop once any thread has finished its iterations.
 *
 * Sizes lie in [min, max]: "even" draws them uniformly; "linear" (the
 * default, as mimalloc-bench runs it) scales a uniform draw by
 * |1 - u0 - u1|, a factor whose density falls linearly from 0 to 1, so
 * small blocks are more frequent (mean about min + (max - min) / 6); "exp"
 * scales by (1 - u0)(1 - u1), falling off faster; "fixed" always uses min.
 * As in mimalloc-bench's version every byte of a block is written: blocks
 * under 4 KiB take turns between calloc and memalign with alignment 8 and
 * 16 (then filled with 0xCD), larger ones come from calloc; a calloc block
 * is checked to be zero where the stamps of freed blocks would have been.
 * Every block is stamped, and checked before it is freed.
 *
 * A thread runs its L/T iterations twice; between the two passes the
 * threads wait for each other, empty their inboxes and free every block
 * they hold. The threads then exit and T new ones run the same two passes
 * again, so the figure includes starting fresh threads on a warm heap.
 *
 * Usage: rptest [-t threads] [-l loops] [-b blocks] [-o ops] [-d even|linear|exp|fixed]
 *               [-m min] [-M max] [-c cross-rate] [-X]
 *   -l  L, the iterations of one pass across all threads (the original
 *       counts them per thread; here the total stays fixed whatever T is)
 *   defaults: mimalloc-bench's `rptest 16 0 1 2 500 1000 100 8 16000`:
 *   -l 8000 (500 per thread with -t 16) -b 1000 -o 100 -d linear -m 8
 *   -M 16000 -c 2 (every second iteration)
 *   -X  corrupt one block on purpose (the run must fail: proves the checks)
 * ops = memory operations (every allocation and every free counted, as the
 * original counts them). The time runs from the first thread's start to the
 * last thread's end and includes creating the second generation of threads.
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RP_SEED 0x7270746573742d31ULL
#define RP_MIN_SIZE 8           /* a stamp needs 8 bytes */
#define RP_ALIGNED_BELOW 4096   /* smaller blocks rotate calloc / memalign 8 / 16 */
#define RP_PASSES 2             /* passes per thread, and generations of threads */

enum size_mode { SIZES_EVEN, SIZES_LINEAR, SIZES_EXP, SIZES_FIXED };
static const char *const mode_names[] = { "even", "linear", "exp", "fixed" };

/* Blocks handed to another thread. */
struct parcel {
    struct parcel *next;
    size_t count;
    void **blocks; /* a separate allocation, as in the original */
};

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned generation;
    size_t loops;                  /* iterations per pass */
    unsigned long long ops;        /* allocations + frees, this generation */
    unsigned long long cross_frees; /* blocks from other threads freed */
    _Atomic(struct parcel *) inbox; /* pushed by any thread, taken whole by its owner */
};

static struct worker *workers;
static unsigned threads = 1;
static size_t loops = 8000, slots_per_thread = 1000, op_count = 100;
static size_t min_size = 8, max_size = 16000, cross_rate = 2;
static enum size_mode size_mode = SIZES_LINEAR;
static size_t alloc_stride, free_stride;
static int corrupt;
static pthread_barrier_t barrier;
static atomic_uint finished; /* threads done with this pass's loops */

/* ---- sizes and blocks ---- */

static double unit(uint64_t *rng)
{
    return (double)(bench_rand(rng) >> 11) * 0x1p-53;
}

static size_t size_draw(uint64_t *rng)
{
    double f, t;
    switch (size_mode) {
    case SIZES_FIXED:
        return min_size;
    case SIZES_EVEN:
        f = unit(rng);
        break;
    case SIZES_LINEAR:
        t = 1.0 - unit(rng) - unit(rng);
        f = unit(rng) * (t < 0 ? -t : t);
        break;
    default: /* SIZES_EXP */
        f = (1.0 - unit(rng)) * (1.0 - unit(rng)) * unit(rng);
        break;
    }
    size_t size = min_size + (size_t)(f * (double)(max_size - min_size + 1));
    return size > max_size ? max_size : size;
}

/* Offset of a stamp's last word (common.c writes it there). */
static size_t last_word(size_t size)
{
    return (size - 8) & ~(size_t)7;
}

/* Allocates, fills and stamps one block; *turn rotates the allocation call
 * for blocks under RP_ALIGNED_BELOW. */
static void *block_new(size_t size, unsigned *turn)
{
    unsigned kind = size < RP_ALIGNED_BELOW ? (*turn)++ % 3 : 0;
    void *p;
    if (kind == 0) {
        p = calloc(1, size);
        if (p == NULL || ((uintptr_t)p & 7) != 0)
            bench_fail("calloc(1, %zu) returned %p", size, p);
        uint64_t first = *(const volatile uint64_t *)p;
        uint64_t last = *(const volatile uint64_t *)((const char *)p + last_word(size));
        if (first != 0 || last != 0)
            bench_fail("calloc(1, %zu) returned %p not zeroed: first word %016llx, last %016llx",
                       size, p, (unsigned long long)first, (unsigned long long)last);
    } else {
        size_t align = kind == 1 ? 8 : 16;
        p = memalign(align, size);
        if (p == NULL || ((uintptr_t)p & (align - 1)) != 0)
            bench_fail("memalign(%zu, %zu) returned %p", align, size, p);
        memset(p, 0xcd, size);
    }
    bench_stamp(p, size, RP_SEED);
    return p;
}

static void block_free(void *p, const char *what)
{
    bench_check_any(p, RP_SEED, min_size, max_size, what);
    free(p);
}

/* ---- inboxes ---- */

static void inbox_push(struct worker *to, struct parcel *p)
{
    struct parcel *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
    do
        p->next = head;
    while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, p, memory_order_release,
                                                  memory_order_relaxed));
}

/* Checks and frees every block of a list of parcels, then the parcels. */
static void parcels_free(struct worker *w, struct parcel *p)
{
    while (p != NULL) {
        struct parcel *next = p->next;
        for (size_t i = 0; i < p->count; i++)
            block_free(p->blocks[i], "rptest handed-over block");
        w->ops += p->count + 2;
        w->cross_frees += p->count;
        free(p->blocks);
        free(p);
        p = next;
    }
}

static struct parcel *inbox_take(struct worker *w)
{
    return atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
}

/* ---- one thread ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = bench_mix(RP_SEED ^ ((uint64_t)w->generation << 32) ^ w->id);
    void **slot = calloc(slots_per_thread, sizeof *slot);
    if (slot == NULL)
        bench_fail("calloc of %zu slots failed", slots_per_thread);
    size_t alloc_idx = 0, free_idx = 0;
    unsigned turn = w->id, cross_to = w->id;
    int cross = threads > 1 && cross_rate > 0;
    w->ops = 1;

    for (unsigned pass = 0; pass < RP_PASSES; pass++) {
        pthread_barrier_wait(&barrier);
        bench_span_begin();
        for (size_t loop = 0; loop < w->loops; loop++) {
            struct parcel *taken = inbox_take(w);
            size_t frees = (size_t)(0.8 * (double)op_count *
                                    (double)bench_range(&rng, 30, 99) / 100.0);
            size_t allocs = (size_t)((double)op_count * (double)bench_range(&rng, 30, 99) / 100.0);
            for (size_t k = 0; k < frees; k++) {
                if (slot[free_idx] != NULL) {
                    block_free(slot[free_idx], "rptest scattered free");
                    slot[free_idx] = NULL;
                    w->ops++;
                }
                free_idx = (free_idx + free_stride) % slots_per_thread;
            }
            parcels_free(w, taken);
            for (size_t k = 0; k < allocs; k++) {
                if (slot[alloc_idx] != NULL) {
                    block_free(slot[alloc_idx], "rptest replaced block");
                    w->ops++;
                }
                slot[alloc_idx] = block_new(size_draw(&rng), &turn);
                w->ops++;
                if (corrupt && k == 0 && w->id == 0 && w->generation == 0 && pass == 0 &&
                    loop == w->loops / 2)
                    bench_corrupt(slot[alloc_idx]);
                alloc_idx = (alloc_idx + alloc_stride) % slots_per_thread;
            }
            if (cross && loop % cross_rate == 0 && allocs > 0 &&
                atomic_load_explicit(&finished, memory_order_relaxed) == 0) {
                struct parcel *p = bench_malloc(sizeof *p);
                p->blocks = bench_malloc(allocs * sizeof *p->blocks);
                p->count = allocs;
                for (size_t k = 0; k < allocs; k++)
                    p->blocks[k] = block_new(size_draw(&rng), &turn);
                w->ops += allocs + 2;
                do
                    cross_to = (cross_to + 1) % threads;
                while (cross_to == w->id);
                inbox_push(&workers[cross_to], p);
            }
        }
        atomic_fetch_add_explicit(&finished, 1, memory_order_relaxed);
        /* Past this barrier no thread pushes a parcel any more. */
        if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
            atomic_store_explicit(&finished, 0, memory_order_relaxed);
        parcels_free(w, inbox_take(w));
        for (size_t i = 0; i < slots_per_thread; i++) {
            if (slot[i] != NULL) {
                block_free(slot[i], "rptest end of pass");
                slot[i] = NULL;
                w->ops++;
            }
        }
        bench_span_end();
    }
    free(slot);
    w->ops++;
    return NULL;
}

/* The first prime of a fixed list above `after` that does not divide n. */
static size_t stride_pick(size_t n, size_t after)
{
    static const size_t primes[] = { 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53 };
    for (size_t i = 0; i < sizeof primes / sizeof primes[0]; i++) {
        if (primes[i] > after && n % primes[i] != 0)
            return primes[i];
    }
    return 1;
}

int main(int argc, char **argv)
{
    int opt;
    bench_init("rptest");
    while ((opt = getopt(argc, argv, "t:l:b:o:d:m:M:c:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'l': loops = (size_t)bench_parse("-l", optarg, 0); break;
        case 'b': slots_per_thread = (size_t)bench_parse("-b", optarg, 0); break;
        case 'o': op_count = (size_t)bench_parse("-o", optarg, 0); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 'c': cross_rate = (size_t)bench_parse("-c", optarg, 0); break;
        case 'd': {
            size_t m = 0;
            while (m < 4 && strcmp(optarg, mode_names[m]) != 0)
                m++;
            if (m == 4)
                bench_fail("bad size distribution '%s' for -d (even, linear, exp or fixed)", optarg);
            size_mode = (enum size_mode)m;
            break;
        }
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-l loops] [-b blocks] [-o ops] "
                    "[-d even|linear|exp|fixed] [-m min] [-M max] [-c cross-rate] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (size_mode == SIZES_FIXED)
        max_size = min_size;
    if (threads < 1 || loops < threads || slots_per_thread < 2 || op_count < 2 ||
        min_size < RP_MIN_SIZE || max_size < min_size)
        bench_fail("need threads >= 1, loops >= threads, blocks >= 2, ops >= 2, 8 <= min <= max");
    alloc_stride = stride_pick(slots_per_thread, 0);
    free_stride = stride_pick(slots_per_thread, alloc_stride);

    workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&barrier, NULL, threads);
    atomic_init(&finished, 0);
    unsigned long long ops = 0, cross_frees = 0;
    for (unsigned g = 0; g < RP_PASSES; g++) {
        for (unsigned t = 0; t < threads; t++) {
            workers[t].id = t;
            workers[t].generation = g;
            workers[t].loops = loops / threads + (t < loops % threads ? 1 : 0);
            workers[t].cross_frees = 0;
            atomic_init(&workers[t].inbox, NULL);
        }
        for (unsigned t = 0; t < threads; t++) {
            if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
                bench_fail("pthread_create failed (generation %u)", g);
        }
        for (unsigned t = 0; t < threads; t++) {
            pthread_join(workers[t].thread, NULL);
            ops += workers[t].ops;
            cross_frees += workers[t].cross_frees;
        }
        for (unsigned t = 0; t < threads; t++) {
            if (atomic_load(&workers[t].inbox) != NULL)
                bench_fail("thread %u's inbox is not empty at the end", t);
        }
    }
    double secs = bench_span_secs();
    pthread_barrier_destroy(&barrier);
    free(workers);
    bench_result((int)threads, (double)ops, secs,
                 "loops=%zu blocks=%zu opcount=%zu sizes=%s min=%zu max=%zu cross_rate=%zu"
                 " cross_frees=%llu",
                 loops, slots_per_thread, op_count, mode_names[size_mode], min_size, max_size,
                 threads > 1 ? cross_rate : 0, cross_frees);
    return 0;
}
