/*
 * sh8bench.c - batches drawn from a size histogram, freed in changing
 * orders and partly by another thread (after MicroQuill's sh8bench, the
 * SmartHeap multi-threaded benchmark, as described by its authors and by
 * the suites that run it; written from those descriptions).
 *
 * Each of T threads runs R rounds. A round first frees the blocks that
 * the previous thread handed over (below), then allocates a batch of N/T
 * blocks whose sizes come from a histogram, 8 B to 168 KiB, mostly small:
 *
 *     8-32 B 30%   33-64 B 20%   65-128 B 15%   129-256 B 10%
 *     257-512 B 8%   513 B-1 KiB 6%   1-4 KiB 6%   4-16 KiB 3%
 *     16-64 KiB 1.5%   64-168 KiB 0.5%
 *
 * and frees the batch in an order that alternates from round to round:
 * first-allocated first (forward) in even rounds, last-allocated first
 * (reverse) in odd ones. One block in 8 is not freed by its thread but
 * collected into a parcel that goes onto the inbox (a lock-free stack) of
 * thread (id + 1) % T, which checks and frees the blocks at the start of
 * its next round, so those frees are cross-thread. (With T = 1 the parcel
 * comes back to the same thread a round later.) After the last round the
 * threads wait for each other and empty their inboxes once more.
 *
 * Usage: sh8bench [-t threads] [-r rounds] [-n blocks] [-X]
 *   -n  N, the blocks of one round across all threads (default 4000)
 *   -r  R rounds (default 100)
 *   -X  corrupt one block on purpose (the run must fail: proves the checks)
 * ops = R * N allocations (each freed once), whatever T is.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SH_SEED 0x73683862656e6368ULL
#define SH_MIN 8
#define SH_MAX (168 * 1024)
#define SH_HANDOFF 8 /* one block in SH_HANDOFF goes to the next thread */

/* The size histogram: bands and their weights in thousandths. */
static const struct { size_t lo, hi; unsigned weight; } bands[] = {
    { 8, 32, 300 },          { 33, 64, 200 },          { 65, 128, 150 },
    { 129, 256, 100 },       { 257, 512, 80 },         { 513, 1024, 60 },
    { 1025, 4096, 60 },      { 4097, 16384, 30 },      { 16385, 65536, 15 },
    { 65537, SH_MAX, 5 },
};

/* Blocks handed to another thread: allocated with malloc like everything
 * else, and freed by the receiver. */
struct parcel {
    struct parcel *next;
    size_t count;
    void *blocks[];
};

struct worker {
    pthread_t thread;
    unsigned id;
    size_t batch;
    _Atomic(struct parcel *) inbox; /* pushed by the previous thread, taken whole by this one */
};

static struct worker *workers;
static unsigned threads = 1;
static unsigned long long rounds = 100;
static int corrupt;
static pthread_barrier_t start_barrier, end_barrier;

static size_t size_draw(uint64_t *rng)
{
    unsigned w = (unsigned)(bench_rand(rng) % 1000);
    for (size_t b = 0; b < sizeof bands / sizeof bands[0]; b++) {
        if (w < bands[b].weight)
            return bench_range(rng, bands[b].lo, bands[b].hi);
        w -= bands[b].weight;
    }
    return bench_range(rng, bands[0].lo, bands[0].hi); /* unreachable: weights sum to 1000 */
}

/* Takes the whole inbox and checks and frees every block in it. */
static void inbox_drain(struct worker *w)
{
    struct parcel *p = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    while (p != NULL) {
        struct parcel *next = p->next;
        for (size_t i = 0; i < p->count; i++) {
            bench_check_any(p->blocks[i], SH_SEED, SH_MIN, SH_MAX, "sh8bench handed-over block");
            free(p->blocks[i]);
        }
        free(p);
        p = next;
    }
}

static void inbox_push(struct worker *to, struct parcel *p)
{
    struct parcel *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
    do
        p->next = head;
    while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, p, memory_order_release,
                                                  memory_order_relaxed));
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct worker *next = &workers[(w->id + 1) % threads];
    uint64_t rng = bench_mix(SH_SEED + w->id);
    void **batch = bench_malloc(w->batch * sizeof *batch);
    size_t *sizes = bench_malloc(w->batch * sizeof *sizes);
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long r = 0; r < rounds; r++) {
        inbox_drain(w);
        for (size_t i = 0; i < w->batch; i++) {
            sizes[i] = size_draw(&rng);
            batch[i] = bench_malloc(sizes[i]);
            bench_stamp(batch[i], sizes[i], SH_SEED);
        }
        if (corrupt && w->id == 0 && r == rounds / 2)
            bench_corrupt(batch[w->batch / 2]);
        struct parcel *parcel = bench_malloc(sizeof *parcel +
                                             (w->batch / SH_HANDOFF + 1) * sizeof(void *));
        parcel->count = 0;
        for (size_t k = 0; k < w->batch; k++) {
            size_t i = (r & 1) ? w->batch - 1 - k : k;
            if (i % SH_HANDOFF == SH_HANDOFF - 1) {
                parcel->blocks[parcel->count++] = batch[i];
                continue;
            }
            bench_check(batch[i], sizes[i], SH_SEED, "sh8bench batch");
            free(batch[i]);
        }
        inbox_push(next, parcel);
    }
    /* Every thread has pushed its last parcel once all are past this. */
    pthread_barrier_wait(&end_barrier);
    inbox_drain(w);
    bench_span_end();
    free(batch);
    free(sizes);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t blocks = 4000;
    int opt;
    bench_init("sh8bench");
    while ((opt = getopt(argc, argv, "t:r:n:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'r': rounds = bench_parse("-r", optarg, 0); break;
        case 'n': blocks = (size_t)bench_parse("-n", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-r rounds] [-n blocks] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || blocks < threads)
        bench_fail("need threads >= 1, rounds >= 1, blocks >= threads");

    workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&start_barrier, NULL, threads + 1);
    pthread_barrier_init(&end_barrier, NULL, threads);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].batch = blocks / threads + (t < blocks % threads ? 1 : 0);
        atomic_init(&workers[t].inbox, NULL);
    }
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(workers[t].thread, NULL);
    double secs = bench_span_secs();
    for (unsigned t = 0; t < threads; t++) {
        if (atomic_load(&workers[t].inbox) != NULL)
            bench_fail("thread %u's inbox is not empty at the end", t);
    }
    pthread_barrier_destroy(&start_barrier);
    pthread_barrier_destroy(&end_barrier);
    free(workers);
    bench_result((int)threads, (double)rounds * (double)blocks, secs,
                 "blocks=%zu rounds=%llu handoff=1/%d", blocks, rounds, SH_HANDOFF);
    return 0;
}
