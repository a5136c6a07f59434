/*
 * sh6bench.c - sweeps of small sizes through a ring of slots, freed a
 * fifth at a time forward and in reverse (after MicroQuill's sh6bench, the
 * SmartHeap portable benchmark, in the form mimalloc-bench runs it; written
 * from its description and a reading of its published source, no code
 * taken from it).
 *
 * Each of T threads owns a ring of n = C/T slots (C, the "call count") and
 * makes R/T repetitions of one sweep. A sweep walks base sizes from min
 * up to (not including) max, each the last one * 3/2 + 1 (1, 2, 4, 7, 11,
 * 17, ... 709 for 1..1000), and for each base the sizes base, base/2,
 * base/4, ... 1; every size is allocated 250 times below 100 bytes, 50
 * times below 1000 and 10 times below 10000 (once above), so a sweep of
 * 1..1000 makes 19,300 allocations, 54% of them of 1-7 bytes (mean 23 B).
 *
 * Allocations fill the ring slot after slot. One window of n/5 slots is
 * kept: the fill skips over it. When the fill reaches the end of the ring
 * the next n/5 slots become the kept window, every slot below it is freed
 * in the order it was filled and every slot above it in reverse order, and
 * the fill restarts at slot 0. When the kept window has wrapped round to
 * slot 0, the fill writes over it at once: the original loses those
 * blocks (never frees them), one window every fifth lap of the ring, about
 * 4.8% of all allocations, and that is what makes its memory grow for the
 * whole run. This version keeps the same blocks live to the end on a side
 * list (12 bytes a block, whatever the allocator) and checks and frees
 * them after the timed part; at the end of the sweeps the ring's filled
 * part is freed in order, as the original does, and its remainder with the
 * kept blocks. Nothing crosses threads.
 *
 * Every block is stamped when allocated (a block under 8 bytes gets the
 * tag's bytes) and checked before it is freed.
 *
 * Usage: sh6bench [-t threads] [-n calls] [-r repetitions] [-m min] [-M max] [-X]
 *   defaults: mimalloc-bench's: -n 10000 (its patched call count), -r = C
 *   (the original repeats C/T sweeps per thread), -m 1 -M 1000
 *   -X  corrupt one block on purpose (the run must fail: proves the checks)
 * ops = R sweeps of allocations (19,300 each for 1..1000), each block freed
 * once, whatever T is.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SH_SEED 0x73683662656e6368ULL
#define SH_KEPT_CHUNK 4096 /* blocks per chunk of the list of lost-then-kept blocks */

/* Blocks the original loses: kept here until the end of the run. */
struct kept {
    struct kept *next;
    size_t count;
    void *block[SH_KEPT_CHUNK];
    uint32_t size[SH_KEPT_CHUNK];
};

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long reps;
    unsigned long long allocs;
    unsigned long long kept;
};

static unsigned threads = 1;
static size_t ring_slots;          /* n = C / T, set once */
static size_t min_size = 1, max_size = 1000;
static int corrupt;
static pthread_barrier_t start_barrier;

/* ---- one thread ---- */

struct ring {
    void **block;
    uint32_t *size;
    struct kept *kept;
};

static void ring_free(struct ring *r, size_t i, const char *what)
{
    bench_check(r->block[i], r->size[i], SH_SEED, what);
    free(r->block[i]);
    r->block[i] = NULL;
}

static void kept_add(struct worker *w, struct ring *r, void *p, uint32_t size)
{
    if (r->kept == NULL || r->kept->count == SH_KEPT_CHUNK) {
        struct kept *k = bench_malloc(sizeof *k);
        k->next = r->kept;
        k->count = 0;
        r->kept = k;
    }
    r->kept->block[r->kept->count] = p;
    r->kept->size[r->kept->count++] = size;
    w->kept++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const size_t n = ring_slots, window = ring_slots / 5;
    struct ring r = { bench_malloc(n * sizeof *r.block), bench_malloc(n * sizeof *r.size), NULL };
    for (size_t i = 0; i < n; i++)
        r.block[i] = NULL;
    size_t fill = 0, keep_from = n, keep_to = n;
    int armed = corrupt && w->id == 0;

    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long rep = 0; rep < w->reps; rep++) {
        for (size_t base = min_size; base < max_size; base = base * 3 / 2 + 1) {
            for (size_t size = base; size > 0; size /= 2) {
                unsigned times = size < 100 ? 250 : size < 1000 ? 50 : size < 10000 ? 10 : 1;
                while (times-- > 0) {
                    /* A block still here is one of the kept window's that
                     * the original overwrites: it stays live to the end. */
                    if (r.block[fill] != NULL)
                        kept_add(w, &r, r.block[fill], r.size[fill]);
                    void *p = bench_malloc(size);
                    bench_stamp(p, size, SH_SEED);
                    if (armed && size >= 8 && rep >= w->reps / 2) {
                        bench_corrupt(p);
                        armed = 0;
                    }
                    r.block[fill] = p;
                    r.size[fill] = (uint32_t)size;
                    w->allocs++;
                    if (++fill == keep_from)
                        fill = keep_to;
                    if (fill < n)
                        continue;
                    /* End of the ring: move the kept window on by a fifth,
                     * free below it forward and above it in reverse. */
                    fill = 0;
                    keep_from = keep_to < n ? keep_to : 0;
                    keep_to = keep_from + window < n ? keep_from + window : n;
                    for (size_t i = 0; i < keep_from; i++)
                        ring_free(&r, i, "sh6bench forward free");
                    for (size_t i = n; i > keep_to; i--)
                        ring_free(&r, i - 1, "sh6bench reverse free");
                }
            }
        }
    }
    /* The residue, in order, as the original frees it. */
    for (size_t i = 0; i < fill; i++) {
        if (r.block[i] != NULL)
            ring_free(&r, i, "sh6bench residue");
    }
    bench_span_end();

    /* Untimed: what the original never frees. */
    for (size_t i = 0; i < n; i++) {
        if (r.block[i] != NULL)
            ring_free(&r, i, "sh6bench kept window");
    }
    while (r.kept != NULL) {
        struct kept *next = r.kept->next;
        for (size_t i = 0; i < r.kept->count; i++) {
            bench_check(r.kept->block[i], r.kept->size[i], SH_SEED, "sh6bench lost block");
            free(r.kept->block[i]);
        }
        free(r.kept);
        r.kept = next;
    }
    free(r.block);
    free(r.size);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t calls = 10000;
    unsigned long long reps = 0;
    int opt;
    bench_init("sh6bench");
    while ((opt = getopt(argc, argv, "t:n:r:m:M:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'n': calls = (size_t)bench_parse("-n", optarg, 0); break;
        case 'r': reps = bench_parse("-r", optarg, 0); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-n calls] [-r repetitions] [-m min] [-M max] [-X]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps == 0)
        reps = calls;
    if (threads < 1 || calls / (threads ? threads : 1) < 5 || reps < threads || min_size < 1 ||
        max_size <= min_size || max_size > (1u << 30))
        bench_fail("need threads >= 1, calls >= 5 * threads, repetitions >= threads, "
                   "1 <= min < max <= 1G");
    ring_slots = calls / threads;

    struct worker *workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&start_barrier, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].reps = reps / threads + (t < reps % threads ? 1 : 0);
        workers[t].allocs = 0;
        workers[t].kept = 0;
    }
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    unsigned long long allocs = 0, kept = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        allocs += workers[t].allocs;
        kept += workers[t].kept;
    }
    double secs = bench_span_secs();
    pthread_barrier_destroy(&start_barrier);
    free(workers);
    bench_result((int)threads, (double)allocs, secs,
                 "calls=%zu ring=%zu repetitions=%llu min=%zu max=%zu lost_kept=%llu",
                 calls, ring_slots, reps, min_size, max_size, kept);
    return 0;
}
