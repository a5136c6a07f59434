/*
 * threadtest.c - thread-local batch allocation (after Hoard's threadtest).
 *
 * T threads share a fixed total of N objects (each thread owns N/T). In each
 * of I iterations a thread allocates its whole batch of S-byte objects,
 * stamps each one, then checks and frees them all. Nothing crosses threads,
 * so a scalable allocator should run this T times faster on T cores; a
 * single shared lock makes it slower with every thread added.
 *
 * Usage: threadtest [-t threads] [-i iterations] [-n objects] [-s size] [-X]
 *   -X  corrupt one block on purpose (the run must fail: proves the checks)
 * Work is fixed: ops = I * N malloc/free pairs whatever T is.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct worker {
    pthread_t thread;
    unsigned id;
    size_t objects;
};

static unsigned long long iterations = 50;
static size_t object_size = 8;
static int corrupt;
static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t seed = 0x7468726561647465ULL + w->id;
    void **slots = bench_malloc(w->objects * sizeof *slots);
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long it = 0; it < iterations; it++) {
        for (size_t i = 0; i < w->objects; i++) {
            void *p = bench_malloc(object_size);
            bench_stamp(p, object_size, seed);
            slots[i] = p;
        }
        if (corrupt && w->id == 0 && it == iterations / 2)
            bench_corrupt(slots[w->objects / 2]);
        for (size_t i = 0; i < w->objects; i++) {
            bench_check(slots[i], object_size, seed, "threadtest batch");
            free(slots[i]);
        }
    }
    bench_span_end();
    free(slots);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    size_t objects = 100000;
    int opt;
    bench_init("threadtest");
    while ((opt = getopt(argc, argv, "t:i:n:s:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'i': iterations = bench_parse("-i", optarg, 0); break;
        case 'n': objects = (size_t)bench_parse("-n", optarg, 0); break;
        case 's': object_size = (size_t)bench_parse("-s", optarg, 1); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-i iterations] [-n objects] [-s size] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || objects < threads || object_size < 8 || iterations < 1)
        bench_fail("need threads >= 1, objects >= threads, size >= 8, iterations >= 1");

    struct worker *workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&start_barrier, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].objects = objects / threads + (t < objects % threads ? 1 : 0);
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(workers[t].thread, NULL);
    double secs = bench_span_secs();
    pthread_barrier_destroy(&start_barrier);
    free(workers);
    bench_result((int)threads, (double)iterations * (double)objects, secs,
                 "size=%zu objects=%zu iterations=%llu", object_size, objects, iterations);
    return 0;
}
