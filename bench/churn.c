/*
 * churn.c - single-threaded malloc/free churn, for the cost of one pair.
 *
 * A window of W live blocks is filled first; then each of N steps frees the
 * block in a pseudo-random slot (after checking its stamp) and allocates a
 * new one of a pseudo-random size into it; at the end every block is freed.
 * Sizes and slots come from tables computed before the run, so the loop
 * itself does little besides the two calls. Modes:
 *
 *   small   16..128 bytes
 *   medium  256..4096 bytes
 *   mixed   3 steps in 4 small, 1 in 4 medium
 *
 * Every malloc and free goes through churn_malloc / churn_free, two tiny
 * functions that are never inlined: run under
 *   valgrind --tool=callgrind --collect-atstart=no \
 *            --toggle-collect=churn_malloc --toggle-collect=churn_free
 * the collected instruction count is exactly the allocator's cost (plus the
 * one jump of each wrapper) for ops = N + W malloc/free pairs, which is what
 * the runner divides by. Natively the result line gives pairs per second.
 *
 * Usage: churn [-m small|medium|mixed] [-n steps] [-w window] [-t 1] [-X]
 * (-t is accepted for a uniform command line; churn is single-threaded.)
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHURN_SEED 0x636875726e212121ULL
#define TABLE 4096 /* power of two */
#define MAX_WINDOW 65536

static size_t sizes[TABLE];
static unsigned slot_of[TABLE];
static void *window_slots[MAX_WINDOW];

BENCH_OPAQUE void *churn_malloc(size_t size)
{
    return malloc(size);
}

BENCH_OPAQUE void churn_free(void *p)
{
    free(p);
}

static void *churn_new(size_t size)
{
    void *p = churn_malloc(size);
    if (p == NULL)
        bench_fail("malloc(%zu) returned NULL", size);
    bench_stamp(p, size, CHURN_SEED);
    return p;
}

int main(int argc, char **argv)
{
    const char *mode = "small";
    unsigned long long steps = 1000000;
    size_t window = 256;
    int corrupt = 0, opt;
    bench_init("churn");
    while ((opt = getopt(argc, argv, "m:n:w:t:X")) != -1) {
        switch (opt) {
        case 't':
            if (bench_parse("-t", optarg, 0) != 1)
                bench_fail("churn is single-threaded: -t must be 1");
            break;
        case 'm': mode = optarg; break;
        case 'n':
            /* 0 is allowed: a run with only the window's pairs */
            steps = strcmp(optarg, "0") == 0 ? 0 : bench_parse("-n", optarg, 0);
            break;
        case 'w': window = (size_t)bench_parse("-w", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-m small|medium|mixed] [-n steps] [-w window] [-t 1] [-X]\n", argv[0]);
            return 2;
        }
    }
    int small_share; /* out of 4 */
    if (strcmp(mode, "small") == 0)
        small_share = 4;
    else if (strcmp(mode, "medium") == 0)
        small_share = 0;
    else if (strcmp(mode, "mixed") == 0)
        small_share = 3;
    else
        bench_fail("unknown mode '%s' (small, medium or mixed)", mode);
    if (window < 1 || window > MAX_WINDOW)
        bench_fail("window must be in [1, %d]", MAX_WINDOW);

    uint64_t rng = CHURN_SEED;
    for (size_t i = 0; i < TABLE; i++) {
        int small = (int)(bench_rand(&rng) % 4) < small_share;
        sizes[i] = small ? bench_range(&rng, 16, 128) : bench_range(&rng, 256, 4096);
        slot_of[i] = (unsigned)(bench_rand(&rng) % window);
    }

    double t0 = bench_now();
    for (size_t i = 0; i < window; i++)
        window_slots[i] = churn_new(sizes[i % TABLE]);
    for (unsigned long long k = 0; k < steps; k++) {
        unsigned slot = slot_of[k % TABLE];
        void *p = window_slots[slot];
        bench_check_any(p, CHURN_SEED, 16, 4096, "churn window block");
        churn_free(p);
        window_slots[slot] = churn_new(sizes[k % TABLE]);
        if (corrupt && k == steps / 2)
            bench_corrupt(window_slots[slot]);
    }
    for (size_t i = 0; i < window; i++) {
        bench_check_any(window_slots[i], CHURN_SEED, 16, 4096, "churn final block");
        churn_free(window_slots[i]);
    }
    double secs = bench_now() - t0;
    bench_result(1, (double)(steps + window), secs, "mode=%s window=%zu steps=%llu",
                 mode, window, steps);
    return 0;
}
