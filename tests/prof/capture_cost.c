/*
 * capture_cost.c - what a profiler sample costs (not a test: the figures
 * go in README.md). Recurses to a chosen depth through noinline frames,
 * then times N malloc/free pairs of `size` bytes with clock_gettime and
 * prints nanoseconds a pair. Run it under LD_PRELOAD=libmemalloc.so with
 * MEMALLOC_PROF=0, then MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=1 (every
 * allocation sampled): the difference is the cost of one sample (capture,
 * record and forget, and the slow paths a sampled block takes).
 *
 *   capture_cost DEPTH N SIZE
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

static __attribute__((noinline)) double run(long n, size_t size)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        void *p = malloc(size);
        sink = p;
        free(p);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
}

static __attribute__((noinline)) double descend(int depth, long n, size_t size)
{
    double r = depth > 0 ? descend(depth - 1, n, size) : run(n, size);
    __asm__ volatile("" : "+x"(r)); /* keeps the recursion from becoming a loop */
    return r;
}

int main(int argc, char **argv)
{
    int depth = argc > 1 ? atoi(argv[1]) : 10;
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 64;
    printf("depth %d: %.1f ns a pair\n", depth, descend(depth, n, size));
    return 0;
}
