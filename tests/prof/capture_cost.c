/*
 * capture_cost.c - what a profiler sample costs (not a test: the figures
 * go in README.md). Recurses to a chosen depth through noinline frames,
 * then times N malloc/free pairs of `size` bytes with clock_gettime and
 * prints nanoseconds a pair. Run it under LD_PRELOAD=libmemalloc.so with
 * MEMALLOC_PROF=0, then MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=1 (every
 * allocation sampled): the difference is the cost of one sample (capture,
 * record and forget, and the slow paths a sampled block takes).
 *
 * With `same`, every malloc is made from the same call, so each sample
 * after the first reuses the thread's last stack walk (src/prof.c); with
 * `alternate`, the calls alternate between two call sites, so every
 * sample walks the stack. Under callgrind, the instructions with
 * MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=1 less those with profiling off,
 * divided by N, are a sample's.
 *
 *   capture_cost DEPTH N SIZE [same|alternate]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *volatile sink;

static __attribute__((noinline)) void *alloc_here(size_t size)
{
    void *p = malloc(size);
    sink = p;
    return p;
}

static __attribute__((noinline)) void *alloc_there(size_t size)
{
    void *p = malloc(size);
    sink = p;
    return p;
}

static __attribute__((noinline)) double run(long n, size_t size, int alternate)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        void *p = alternate && (i & 1) ? alloc_there(size) : alloc_here(size);
        free(p);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
}

static __attribute__((noinline)) double descend(int depth, long n, size_t size, int alternate)
{
    double r = depth > 0 ? descend(depth - 1, n, size, alternate) : run(n, size, alternate);
    __asm__ volatile("" : "+x"(r)); /* keeps the recursion from becoming a loop */
    return r;
}

int main(int argc, char **argv)
{
    int depth = argc > 1 ? atoi(argv[1]) : 10;
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 64;
    int alternate = argc > 4 && strcmp(argv[4], "alternate") == 0;
    printf("depth %d (%s): %.1f ns a pair\n", depth, alternate ? "alternate" : "same",
           descend(depth, n, size, alternate));
    return 0;
}
