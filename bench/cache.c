/*
 * cache.c - false sharing induced by the allocator (after Hoard's
 * cache-thrash and cache-scratch). Built twice by bench.mk:
 *
 *   cache-thrash  (active false sharing): each thread repeatedly allocates a
 *       small object, writes every byte of it many times, checks it and
 *       frees it. An allocator that hands concurrently used objects of
 *       different threads out of one cache line makes the line bounce
 *       between cores on every write.
 *
 *   cache-scratch (passive false sharing, -DCACHE_SCRATCH): the main thread
 *       first allocates T small objects back to back (so they likely share
 *       cache lines) and hands object t to thread t, which frees it and then
 *       runs the same loop. An allocator that gives a freed block back to
 *       the freeing thread keeps the threads writing into the main thread's
 *       shared lines.
 *
 * Usage: cache-thrash|cache-scratch [-t threads] [-i iterations] [-r writes] [-s size] [-X]
 * A fixed total of I iterations is split among the threads; each iteration
 * is one malloc, R passes of read-modify-write over every byte, one check
 * and one free. ops = I * R object passes.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef CACHE_SCRATCH
#define CACHE_NAME "cache-scratch"
#else
#define CACHE_NAME "cache-thrash"
#endif

#define CACHE_SEED 0x6361636865212121ULL

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long iterations;
    void *handed; /* cache-scratch: the object the main thread allocated */
};

static unsigned long long writes = 1000;
static size_t object_size = 8;
static int corrupt;
static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    if (w->handed != NULL) {
        bench_check(w->handed, object_size, CACHE_SEED, "object handed out by main");
        free(w->handed);
    }
    for (unsigned long long it = 0; it < w->iterations; it++) {
        volatile unsigned char *p = bench_malloc(object_size);
        unsigned char base = (unsigned char)(w->id * 37 + it);
        for (size_t j = 0; j < object_size; j++)
            p[j] = (unsigned char)(base + j);
        for (unsigned long long r = 0; r < writes; r++) {
            for (size_t j = 0; j < object_size; j++)
                p[j]++;
        }
        if (corrupt && w->id == 0 && it == w->iterations / 2)
            p[0] ^= 1;
        for (size_t j = 0; j < object_size; j++) {
            unsigned char want = (unsigned char)(base + j + writes);
            if (p[j] != want)
                bench_fail("corrupted object %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x",
                           (void *)p, object_size, j, p[j], want);
        }
        free((void *)p);
    }
    bench_span_end();
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    unsigned long long iterations = 10000;
    int opt;
    bench_init(CACHE_NAME);
    while ((opt = getopt(argc, argv, "t:i:r:s:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'i': iterations = bench_parse("-i", optarg, 0); break;
        case 'r': writes = bench_parse("-r", optarg, 0); break;
        case 's': object_size = (size_t)bench_parse("-s", optarg, 1); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-i iterations] [-r writes] [-s size] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || iterations < threads || writes < 1 || object_size < 8)
        bench_fail("need threads >= 1, iterations >= threads, writes >= 1, size >= 8");

    struct worker *workers = bench_malloc(threads * sizeof *workers);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].iterations = iterations / threads + (t < iterations % threads ? 1 : 0);
        workers[t].handed = NULL;
#ifdef CACHE_SCRATCH
        workers[t].handed = bench_malloc(object_size);
        bench_stamp(workers[t].handed, object_size, CACHE_SEED);
#endif
    }
    pthread_barrier_init(&start_barrier, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(workers[t].thread, NULL);
    double secs = bench_span_secs();
    free(workers);
    pthread_barrier_destroy(&start_barrier);
    bench_result((int)threads, (double)iterations * (double)writes, secs,
                 "size=%zu iterations=%llu writes=%llu", object_size, iterations, writes);
    return 0;
}
