/*
 * threadchurn.c - threads that come and go.
 *
 * The main thread runs N short-lived threads, T of them alive at a time: it
 * joins the oldest before it starts the next. Each thread allocates a
 * working set of 64 blocks of 2,000 to 20,900 bytes, stamps them, checks
 * and frees them, four times over, and exits. What is measured is what a
 * thread-per-task program pays: the allocator's work for a thread's first
 * and last allocations (picking an arena, filling and emptying its cache)
 * and what it does with the memory a thread leaves behind, besides the
 * blocks themselves. ops = threads run; the time is the whole run.
 *
 * Usage: threadchurn [-t alive] [-n threads] [-r rounds] [-X]
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHURN_SEED 0x746872636875726eULL
#define BLOCKS 64
#define MAX_ALIVE 1024

static unsigned long long rounds = 4;
static unsigned long long corrupt_at = ~0ull; /* -X: the thread that corrupts a block */

static size_t block_size(int i)
{
    return 2000 + 300 * (size_t)i;
}

static void *worker_main(void *arg)
{
    unsigned long long id = (unsigned long long)(uintptr_t)arg;
    uint64_t seed = CHURN_SEED + id;
    void *blocks[BLOCKS];
    for (unsigned long long r = 0; r < rounds; r++) {
        for (int i = 0; i < BLOCKS; i++) {
            blocks[i] = bench_malloc(block_size(i));
            bench_stamp(blocks[i], block_size(i), seed);
        }
        if (id == corrupt_at && r == 0)
            bench_corrupt(blocks[BLOCKS / 2]);
        for (int i = 0; i < BLOCKS; i++) {
            bench_check(blocks[i], block_size(i), seed, "threadchurn block");
            free(blocks[i]);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned alive = 1;
    unsigned long long threads = 2000;
    int corrupt = 0, opt;
    bench_init("threadchurn");
    while ((opt = getopt(argc, argv, "t:n:r:X")) != -1) {
        switch (opt) {
        case 't': alive = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'n': threads = bench_parse("-n", optarg, 0); break;
        case 'r': rounds = bench_parse("-r", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t alive] [-n threads] [-r rounds] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (alive < 1 || alive > MAX_ALIVE || threads < alive || rounds < 1)
        bench_fail("need 1 <= alive <= %d, threads >= alive, rounds >= 1", MAX_ALIVE);
    if (corrupt)
        corrupt_at = threads / 2;

    pthread_t *t = bench_malloc(alive * sizeof *t);
    double start = bench_now();
    for (unsigned long long i = 0; i < threads; i++) {
        if (i >= alive)
            pthread_join(t[i % alive], NULL);
        if (pthread_create(&t[i % alive], NULL, worker_main, (void *)(uintptr_t)i) != 0)
            bench_fail("pthread_create failed");
    }
    for (unsigned i = 0; i < alive; i++)
        pthread_join(t[i], NULL);
    double secs = bench_now() - start;
    free(t);
    bench_result((int)alive, (double)threads, secs, "threads_run=%llu rounds=%llu", threads, rounds);
    return 0;
}
