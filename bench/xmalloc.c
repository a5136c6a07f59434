/*
 * xmalloc.c - producer/consumer allocation: every free is cross-thread
 * (after the xmalloc-test of Lever and Boreham).
 *
 * T threads are split into P = ceil(T/2) producers and C = max(1, T - P)
 * consumers (T = 1 still needs one of each, so it runs 2 threads; the
 * result line says nthreads=). Each producer owns a single-producer /
 * single-consumer lock-free ring; consumer j serves rings j, j+C, j+2C...
 * Producers allocate blocks of random size in [min, max], stamp them and
 * push them; consumers pop, check and free them, so every block is freed by
 * a thread other than the one that allocated it, at the full rate the
 * allocator allows. When a ring is full or empty the thread yields.
 *
 * Usage: xmalloc [-t threads] [-n objects] [-m min] [-M max] [-X]
 * Work is fixed: ops = N malloc/free pairs, split among the producers.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define XM_SEED 0x786d616c6c6f6321ULL
#define RING_SIZE 1024 /* power of two */

struct ring {
    _Alignas(64) atomic_size_t head;  /* next slot to pop; written by the consumer */
    _Alignas(64) atomic_size_t tail;  /* next slot to push; written by the producer */
    atomic_int done;                  /* the producer has pushed everything */
    _Alignas(64) void *slot[RING_SIZE];
};

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long objects; /* producers: how many to make */
};

static struct ring *rings;
static unsigned producers, consumers;
static size_t min_size = 16, max_size = 512;
static int corrupt;
static pthread_barrier_t start_barrier;

static void *producer_main(void *arg)
{
    struct worker *w = arg;
    struct ring *r = &rings[w->id];
    uint64_t rng = bench_mix(0xabcdefULL + w->id);
    size_t tail = 0, head_seen = 0; /* head_seen: cached consumer position */
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long i = 0; i < w->objects; i++) {
        size_t size = bench_range(&rng, min_size, max_size);
        void *p = bench_malloc(size);
        bench_stamp(p, size, XM_SEED);
        if (corrupt && w->id == 0 && i == w->objects / 2)
            bench_corrupt(p);
        while (tail - head_seen >= RING_SIZE) {
            head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail - head_seen >= RING_SIZE)
                sched_yield();
        }
        r->slot[tail & (RING_SIZE - 1)] = p;
        tail++;
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    atomic_store_explicit(&r->done, 1, memory_order_release);
    bench_span_end();
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (;;) {
        int progressed = 0, all_done = 1;
        for (unsigned i = w->id; i < producers; i += consumers) {
            struct ring *r = &rings[i];
            /* Read done before tail: if done was set, tail is final. */
            int done = atomic_load_explicit(&r->done, memory_order_acquire);
            size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
            size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (head != tail)
                progressed = 1;
            /* Free the whole batch, then hand its slots back at once so the
             * two threads do not bounce the head line once per block. */
            while (head != tail) {
                void *p = r->slot[head & (RING_SIZE - 1)];
                head++;
                bench_check_any(p, XM_SEED, min_size, max_size, "xmalloc consumer");
                free(p);
            }
            atomic_store_explicit(&r->head, head, memory_order_release);
            if (!done)
                all_done = 0;
        }
        if (all_done && !progressed)
            break;
        if (!progressed)
            sched_yield();
    }
    bench_span_end();
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    unsigned long long objects = 1000000;
    int opt;
    bench_init("xmalloc");
    while ((opt = getopt(argc, argv, "t:n:m:M:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'n': objects = bench_parse("-n", optarg, 0); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-n objects] [-m min] [-M max] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || objects < 1 || min_size < 8 || max_size < min_size)
        bench_fail("need threads >= 1, objects >= 1, 8 <= min <= max");

    producers = (threads + 1) / 2;
    consumers = threads > producers ? threads - producers : 1;
    unsigned nthreads = producers + consumers;
    rings = aligned_alloc(64, producers * sizeof *rings);
    if (rings == NULL)
        bench_fail("aligned_alloc failed");
    struct worker *workers = bench_malloc(nthreads * sizeof *workers);
    for (unsigned i = 0; i < producers; i++) {
        atomic_init(&rings[i].head, 0);
        atomic_init(&rings[i].tail, 0);
        atomic_init(&rings[i].done, 0);
    }
    pthread_barrier_init(&start_barrier, NULL, nthreads + 1);
    for (unsigned i = 0; i < nthreads; i++) {
        struct worker *w = &workers[i];
        int is_producer = i < producers;
        w->id = is_producer ? i : i - producers;
        w->objects = is_producer ? objects / producers + (i < objects % producers ? 1 : 0) : 0;
        if (pthread_create(&w->thread, NULL, is_producer ? producer_main : consumer_main, w) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(workers[i].thread, NULL);
    double secs = bench_span_secs();
    for (unsigned i = 0; i < producers; i++) {
        if (atomic_load(&rings[i].head) != atomic_load(&rings[i].tail))
            bench_fail("ring %u not drained", i);
    }
    free(rings);
    free(workers);
    pthread_barrier_destroy(&start_barrier);
    bench_result((int)threads, (double)objects, secs,
                 "producers=%u consumers=%u nthreads=%u min=%zu max=%zu",
                 producers, consumers, nthreads, min_size, max_size);
    return 0;
}
