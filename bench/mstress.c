/*
 * mstress.c - a multi-threaded stress test in the spirit of mimalloc's
 * test-stress (written from its description, not from its code).
 *
 * R rounds; each round starts T new threads and joins them, so no thread
 * lives longer than a round. A thread runs S/T steps over its own list of
 * live objects; each step, at random:
 *
 *   50%  allocate an object and fill it (every word) with a pattern
 *        derived from its address and size;
 *   25%  check a random object of its list and free it;
 *   25%  swap a random object of its list (or nothing, when the list is
 *        empty) with a random slot of a shared transfer array, by atomic
 *        exchange: what comes back, made by some other thread in this
 *        round or an earlier one, joins the list.
 *
 * Sizes are mostly small with a rare large one: 90% 8-256 B, 9% 257 B-4 KiB,
 * 0.9% 4-64 KiB, 0.1% 64 KiB-1 MiB. When a thread ends it frees three
 * quarters of its list (checking each object) and leaves the rest for the
 * thread of the same number in the next round, so objects outlive their
 * threads both ways (through the transfer array and the retained lists).
 * Every object is checked in full, every word, before it is freed; main
 * checks and frees what is left at the end.
 *
 * Usage: mstress [-t threads] [-r rounds] [-s steps] [-x slots] [-X]
 *   -s  S, the steps of one round across all threads (default 200k)
 *   -r  R rounds (default 10)     -x  transfer slots (default 1000)
 *   -X  corrupt one object on purpose (the run must fail: proves the checks)
 * ops = allocations made (about R * S / 2, exact count reported); the time
 * includes creating and joining every round's threads.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MS_SEED 0x6d73747265737321ULL
#define MS_MIN 8
#define MS_MAX (1024 * 1024)
#define MS_LIVE_MAX 4096 /* a thread's list; a full list turns allocations into frees */

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long round;
    unsigned long long steps;
    unsigned long long allocs;
};

/* What thread i leaves for the thread i of the next round: written by a
 * thread before it ends and read by the next one after main joined the
 * first and created the second, so the joins order it. */
struct retained {
    size_t count;
    void *objs[MS_LIVE_MAX];
};

static _Atomic(void *) *transfer;
static size_t transfer_slots = 1000;
static struct retained *retained;
static int corrupt;

static size_t size_draw(uint64_t *rng)
{
    unsigned r = (unsigned)(bench_rand(rng) % 1000);
    if (r == 0)
        return bench_range(rng, 65537, MS_MAX);
    if (r < 10)
        return bench_range(rng, 4097, 65536);
    if (r < 100)
        return bench_range(rng, 257, 4096);
    return bench_range(rng, MS_MIN, 256);
}

/* The whole-object pattern: word 0 encodes the size (tag ^ size, as the
 * common stamps do), word k >= 1 is tag + k; trailing bytes past the last
 * whole word are not used. */
static inline uint64_t obj_tag(const void *p)
{
    return bench_mix((uint64_t)(uintptr_t)p ^ MS_SEED);
}

BENCH_OPAQUE static void obj_fill(void *p, size_t size)
{
    uint64_t *w = p, tag = obj_tag(p);
    w[0] = tag ^ size;
    for (size_t k = 1; k < size / 8; k++)
        w[k] = tag + k;
}

BENCH_OPAQUE static void obj_check(const void *p, const char *what)
{
    const uint64_t *w = p;
    uint64_t tag = obj_tag(p);
    size_t size = (size_t)(w[0] ^ tag);
    if (size < MS_MIN || size > MS_MAX)
        bench_fail("corrupted object %p (%s): first word %016llx encodes size %zu",
                   p, what, (unsigned long long)w[0], size);
    for (size_t k = 1; k < size / 8; k++) {
        if (w[k] != tag + k)
            bench_fail("corrupted object %p (%zu bytes, %s): word %zu is %016llx, expected %016llx",
                       p, size, what, k, (unsigned long long)w[k], (unsigned long long)(tag + k));
    }
}

static void obj_free(void *p, const char *what)
{
    obj_check(p, what);
    free(p);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = bench_mix(MS_SEED ^ ((uint64_t)w->round << 32) ^ w->id);
    struct retained *mine = &retained[w->id];
    void **live = bench_malloc(MS_LIVE_MAX * sizeof *live);
    size_t count = mine->count;
    for (size_t i = 0; i < count; i++)
        live[i] = mine->objs[i];
    unsigned long long allocs = 0;
    for (unsigned long long s = 0; s < w->steps; s++) {
        unsigned action = (unsigned)(bench_rand(&rng) % 4);
        if (action <= 1 && count < MS_LIVE_MAX) {
            size_t size = size_draw(&rng);
            void *p = bench_malloc(size);
            obj_fill(p, size);
            if (corrupt && w->id == 0 && w->round == 0 && allocs == 100)
                bench_corrupt(p);
            live[count++] = p;
            allocs++;
        } else if (action <= 2) {
            if (count == 0)
                continue;
            size_t i = (size_t)(bench_rand(&rng) % count);
            obj_free(live[i], "mstress free");
            live[i] = live[--count];
        } else {
            size_t slot = (size_t)(bench_rand(&rng) % transfer_slots);
            size_t i = count > 0 ? (size_t)(bench_rand(&rng) % count) : 0;
            void *give = count > 0 ? live[i] : NULL;
            void *got = atomic_exchange_explicit(&transfer[slot], give, memory_order_acq_rel);
            if (count == 0) {
                if (got != NULL)
                    live[count++] = got;
            } else if (got != NULL) {
                live[i] = got;
            } else {
                live[i] = live[--count];
            }
        }
    }
    /* Keep a quarter (at random) for the next round's thread, free the rest. */
    mine->count = 0;
    for (size_t i = 0; i < count; i++) {
        if (bench_rand(&rng) % 4 == 0)
            mine->objs[mine->count++] = live[i];
        else
            obj_free(live[i], "mstress thread end");
    }
    free(live);
    w->allocs = allocs;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    unsigned long long rounds = 10, steps = 200000;
    int opt;
    bench_init("mstress");
    while ((opt = getopt(argc, argv, "t:r:s:x:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'r': rounds = bench_parse("-r", optarg, 0); break;
        case 's': steps = bench_parse("-s", optarg, 0); break;
        case 'x': transfer_slots = (size_t)bench_parse("-x", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-r rounds] [-s steps] [-x slots] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || steps < threads || transfer_slots < 1)
        bench_fail("need threads >= 1, rounds >= 1, steps >= threads, slots >= 1");

    transfer = bench_malloc(transfer_slots * sizeof *transfer);
    for (size_t i = 0; i < transfer_slots; i++)
        atomic_init(&transfer[i], NULL);
    retained = bench_malloc(threads * sizeof *retained);
    for (unsigned t = 0; t < threads; t++)
        retained[t].count = 0;
    struct worker *workers = bench_malloc(threads * sizeof *workers);

    unsigned long long allocs = 0;
    double t0 = bench_now();
    for (unsigned long long r = 0; r < rounds; r++) {
        for (unsigned t = 0; t < threads; t++) {
            workers[t].id = t;
            workers[t].round = r;
            workers[t].steps = steps / threads + (t < steps % threads ? 1 : 0);
            if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
                bench_fail("pthread_create failed (round %llu)", r);
        }
        for (unsigned t = 0; t < threads; t++) {
            pthread_join(workers[t].thread, NULL);
            allocs += workers[t].allocs;
        }
    }
    double secs = bench_now() - t0;

    for (unsigned t = 0; t < threads; t++) {
        for (size_t i = 0; i < retained[t].count; i++)
            obj_free(retained[t].objs[i], "mstress final retained");
    }
    for (size_t i = 0; i < transfer_slots; i++) {
        void *p = atomic_load(&transfer[i]);
        if (p != NULL)
            obj_free(p, "mstress final transfer");
    }
    free(transfer);
    free(retained);
    free(workers);
    bench_result((int)threads, (double)allocs, secs, "rounds=%llu steps=%llu slots=%zu",
                 rounds, steps, transfer_slots);
    return 0;
}
