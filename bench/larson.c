/*
 * larson.c - server-like churn over a shared slot array (after Larson &
 * Krishnan's benchmark).
 *
 * A shared array holds T*N live blocks. Each thread repeatedly picks a
 * random slot, allocates a block of random size in [min, max], stamps it,
 * atomically swaps it into the slot and checks and frees the block it took
 * out. The block taken out was most often allocated by another thread, so
 * about (T-1)/T of all frees are cross-thread, and the live set stays fixed
 * at T*N blocks. Runs for a fixed time and reports malloc/free pairs per
 * second.
 *
 * Usage: larson [-t threads] [-d seconds] [-m min] [-M max] [-n slots/thread] [-X]
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LARSON_SEED 0x6c6172736f6e2121ULL

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long ops;
};

static _Atomic(void *) *slots;
static size_t slot_count;
static size_t min_size = 8, max_size = 1000;
static atomic_int stop;
static int corrupt;
static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = bench_mix(0x1234567ULL + w->id);
    unsigned long long ops = 0;
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        size_t idx = (size_t)(bench_rand(&rng) % slot_count);
        size_t size = bench_range(&rng, min_size, max_size);
        void *p = bench_malloc(size);
        bench_stamp(p, size, LARSON_SEED);
        if (corrupt && w->id == 0 && ops == 1000)
            bench_corrupt(p);
        void *old = atomic_exchange_explicit(&slots[idx], p, memory_order_acq_rel);
        bench_check_any(old, LARSON_SEED, min_size, max_size, "larson slot");
        free(old);
        ops++;
    }
    bench_span_end();
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    size_t per_thread = 1000;
    double duration = 1.0;
    int opt;
    bench_init("larson");
    while ((opt = getopt(argc, argv, "t:d:m:M:n:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'd': duration = bench_parse_secs("-d", optarg); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 'n': per_thread = (size_t)bench_parse("-n", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-d seconds] [-m min] [-M max] [-n slots/thread] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || per_thread < 1 || min_size < 8 || max_size < min_size)
        bench_fail("need threads >= 1, slots >= 1, 8 <= min <= max");

    slot_count = per_thread * threads;
    slots = bench_malloc(slot_count * sizeof *slots);
    uint64_t rng = 42;
    for (size_t i = 0; i < slot_count; i++) {
        size_t size = bench_range(&rng, min_size, max_size);
        void *p = bench_malloc(size);
        bench_stamp(p, size, LARSON_SEED);
        atomic_init(&slots[i], p);
    }

    struct worker *workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&start_barrier, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].ops = 0;
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    struct timespec nap = { (time_t)duration,
                            (long)((duration - (double)(time_t)duration) * 1e9) };
    while (nanosleep(&nap, &nap) != 0)
        ;
    atomic_store(&stop, 1);
    unsigned long long ops = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        ops += workers[t].ops;
    }
    double secs = bench_span_secs();

    for (size_t i = 0; i < slot_count; i++) {
        void *p = atomic_load(&slots[i]);
        bench_check_any(p, LARSON_SEED, min_size, max_size, "larson final");
        free(p);
    }
    free(slots);
    free(workers);
    pthread_barrier_destroy(&start_barrier);
    bench_result((int)threads, (double)ops, secs, "min=%zu max=%zu slots=%zu",
                 min_size, max_size, slot_count);
    return 0;
}
