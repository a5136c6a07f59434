/*
 * realloc.c - realloc growth and shrink patterns.
 *
 * Each round runs three patterns, each over several objects at once (so the
 * neighbour of a growing block is often another growing block and in-place
 * growth is not free):
 *
 *   strings  8 strings grow by appends of 1..64 bytes, one exact-size
 *            realloc per append (naive string building), then shrink by
 *            halves down to 16 bytes;
 *   vectors  16 arrays of 8-byte elements double their capacity from 4 to
 *            V elements as elements are pushed (the amortised pattern);
 *   shrink   one 256 KiB block is cut to 3/4 of its size again and again
 *            down to 16 bytes, then grown by 3/2 back up.
 *
 * Every byte written follows a position-based pattern; after each realloc
 * the first and last preserved bytes are checked and at the end of each
 * pattern the whole object is verified, so a realloc that loses or
 * misplaces data fails the run.
 *
 * Usage: realloc [-t threads] [-r rounds] [-a appends] [-v max-elements] [-X]
 * A fixed total of R rounds is split among the threads; ops = number of
 * realloc calls made.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NSTRINGS 8
#define NVECTORS 16
#define SHRINK_START (256u << 10)

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long rounds;
    unsigned long long reallocs;
};

static unsigned long long appends = 1000;
static size_t max_elements = 4096;
static int corrupt;
static pthread_barrier_t start_barrier;

/* realloc that fails the run on NULL and checks that the bytes [0, keep)
 * survived: cheaply (first and last byte) on every call. */
static unsigned char *grow_to(unsigned char *p, size_t keep, size_t size, uint64_t seed,
                              unsigned long long *count)
{
    uintptr_t old = (uintptr_t)p; /* for messages only: p is dead after realloc */
    unsigned char *q = realloc(p, size);
    if (q == NULL)
        bench_fail("realloc(%#lx, %zu) returned NULL", (unsigned long)old, size);
    (*count)++;
    if (keep > 0) {
        volatile unsigned char *v = q;
        if (v[0] != bench_pattern_byte(seed, 0) ||
            v[keep - 1] != bench_pattern_byte(seed, keep - 1))
            bench_fail("realloc(%#lx, %zu) to %p lost data within the first %zu bytes",
                       (unsigned long)old, size, (void *)q, keep);
    }
    return q;
}

static unsigned long long run_strings(unsigned id, uint64_t *rng, int inject)
{
    unsigned long long count = 0;
    unsigned char *s[NSTRINGS] = { 0 };
    size_t len[NSTRINGS] = { 0 };
    uint64_t seed[NSTRINGS];
    for (int k = 0; k < NSTRINGS; k++)
        seed[k] = bench_mix(((uint64_t)id << 32) + (uint64_t)k + 1);
    for (unsigned long long step = 0; step < appends; step++) {
        for (int k = 0; k < NSTRINGS; k++) {
            size_t add = bench_range(rng, 1, 64);
            s[k] = grow_to(s[k], len[k], len[k] + add, seed[k], &count);
            bench_fill(s[k], len[k], len[k] + add, seed[k]);
            len[k] += add;
        }
    }
    if (inject)
        bench_corrupt(s[0] + len[0] / 2 - 4);
    for (int k = 0; k < NSTRINGS; k++) {
        bench_verify(s[k], len[k], seed[k], "realloc string after growth");
        while (len[k] > 16) {
            len[k] /= 2;
            s[k] = grow_to(s[k], len[k], len[k], seed[k], &count);
        }
        bench_verify(s[k], len[k], seed[k], "realloc string after shrink");
        free(s[k]);
    }
    return count;
}

static unsigned long long run_vectors(unsigned id)
{
    unsigned long long count = 0;
    unsigned char *v[NVECTORS] = { 0 };
    size_t n[NVECTORS] = { 0 }, cap[NVECTORS] = { 0 };
    uint64_t seed[NVECTORS];
    for (int k = 0; k < NVECTORS; k++)
        seed[k] = bench_mix(((uint64_t)id << 32) + 0x100 + (uint64_t)k);
    for (size_t i = 0; i < max_elements; i++) {
        for (int k = 0; k < NVECTORS; k++) {
            if (n[k] == cap[k]) {
                cap[k] = cap[k] ? cap[k] * 2 : 4;
                v[k] = grow_to(v[k], n[k] * 8, cap[k] * 8, seed[k], &count);
            }
            bench_fill(v[k], n[k] * 8, (n[k] + 1) * 8, seed[k]);
            n[k]++;
        }
    }
    for (int k = 0; k < NVECTORS; k++) {
        bench_verify(v[k], n[k] * 8, seed[k], "realloc vector");
        free(v[k]);
    }
    return count;
}

static unsigned long long run_shrink(unsigned id)
{
    unsigned long long count = 0;
    uint64_t seed = bench_mix(((uint64_t)id << 32) + 0x200);
    size_t size = SHRINK_START;
    unsigned char *p = bench_malloc(size);
    bench_fill(p, 0, size, seed);
    while (size > 16) {
        size = size * 3 / 4;
        p = grow_to(p, size, size, seed, &count);
    }
    bench_verify(p, size, seed, "realloc block after shrinking");
    while (size < SHRINK_START) {
        size_t bigger = size * 3 / 2 + 1;
        p = grow_to(p, size, bigger, seed, &count);
        bench_fill(p, size, bigger, seed);
        size = bigger;
    }
    bench_verify(p, size, seed, "realloc block after regrowing");
    free(p);
    return count;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = bench_mix(0x7265616c6c6f63ULL + w->id);
    unsigned long long count = 0;
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long r = 0; r < w->rounds; r++) {
        count += run_strings(w->id, &rng, corrupt && w->id == 0 && r == w->rounds / 2);
        count += run_vectors(w->id);
        count += run_shrink(w->id);
    }
    bench_span_end();
    w->reallocs = count;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    unsigned long long rounds = 100;
    int opt;
    bench_init("realloc");
    while ((opt = getopt(argc, argv, "t:r:a:v:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'r': rounds = bench_parse("-r", optarg, 0); break;
        case 'a': appends = bench_parse("-a", optarg, 0); break;
        case 'v': max_elements = (size_t)bench_parse("-v", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-r rounds] [-a appends] [-v max-elements] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || rounds < threads || appends < 1 || max_elements < 1)
        bench_fail("need threads >= 1, rounds >= threads, appends >= 1, elements >= 1");

    struct worker *workers = bench_malloc(threads * sizeof *workers);
    pthread_barrier_init(&start_barrier, NULL, threads);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].rounds = rounds / threads + (t < rounds % threads ? 1 : 0);
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    unsigned long long ops = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        ops += workers[t].reallocs;
    }
    double secs = bench_span_secs();
    pthread_barrier_destroy(&start_barrier);
    free(workers);
    bench_result((int)threads, (double)ops, secs, "rounds=%llu appends=%llu elements=%zu",
                 rounds, appends, max_elements);
    return 0;
}
