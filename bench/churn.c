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
 *   16, 256, 4k, 64k   uniform from 1 byte to 16 B, 256 B, 4 KiB, 64 KiB
 *
 * (The four bands from 1 byte include blocks smaller than the 8-byte
 * stamp; those get a byte-wise stamp that stays inside the request.)
 *
 * Every malloc and free goes through churn_malloc / churn_free, two tiny
 * functions that are never inlined: run under
 *   valgrind --tool=callgrind --collect-atstart=no \
 *            --toggle-collect=churn_malloc --toggle-collect=churn_free
 * the collected instruction count is exactly the allocator's cost (plus the
 * one jump of each wrapper) for ops = N + W malloc/free pairs, which is what
 * the runner divides by. Natively the result line gives pairs per second.
 *
 * With -t T > 1, T threads each run the same loop on a window of their
 * own (nothing crosses threads), each doing N/T steps from its own place
 * in the tables; the time runs from the first thread's start to the last
 * one's end. -t 1 runs the loop in the main thread, as callgrind expects.
 *
 * Usage: churn [-m small|medium|mixed|16|256|4k|64k] [-n steps] [-w window]
 *              [-t threads] [-X]
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHURN_SEED 0x636875726e212121ULL
#define TABLE 4096 /* power of two */
#define MAX_WINDOW 65536

static size_t sizes[TABLE];     /* set once before the run */
static unsigned slot_of[TABLE]; /* set once before the run */

/* One thread's window: its live blocks and their sizes. */
struct churn_window {
    pthread_t thread;
    unsigned id;
    unsigned long long steps;
    void *slots[MAX_WINDOW];
    size_t size[MAX_WINDOW];
};

static struct churn_window window0; /* the main thread's (-t 1) */
static size_t window = 256;
static int corrupt;
static pthread_barrier_t start_barrier;

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

/* The churn loop of one window: fill it, N steps, free it. Thread k starts
 * k * 1021 entries into the tables so that threads do not run in step. */
static void churn_run(struct churn_window *w)
{
    size_t base = (size_t)w->id * 1021;
    for (size_t i = 0; i < window; i++) {
        w->size[i] = sizes[(base + i) % TABLE];
        w->slots[i] = churn_new(w->size[i]);
    }
    for (unsigned long long k = 0; k < w->steps; k++) {
        size_t e = (size_t)((base + k) % TABLE);
        unsigned slot = slot_of[e];
        bench_check(w->slots[slot], w->size[slot], CHURN_SEED, "churn window block");
        churn_free(w->slots[slot]);
        w->size[slot] = sizes[e];
        w->slots[slot] = churn_new(sizes[e]);
        /* Corrupt the first block of 8 bytes or more past the middle (byte 3
         * of a smaller block is outside it). */
        if (w->id == 0 && corrupt == 1 && k >= w->steps / 2 && sizes[e] >= 8) {
            bench_corrupt(w->slots[slot]);
            corrupt = 2;
        }
    }
    for (size_t i = 0; i < window; i++) {
        bench_check(w->slots[i], w->size[i], CHURN_SEED, "churn final block");
        churn_free(w->slots[i]);
    }
}

static void *churn_thread(void *arg)
{
    struct churn_window *w = arg;
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    churn_run(w);
    bench_span_end();
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = "small";
    unsigned long long steps = 1000000;
    unsigned threads = 1;
    int opt;
    bench_init("churn");
    while ((opt = getopt(argc, argv, "m:n:w:t:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'm': mode = optarg; break;
        case 'n':
            /* 0 is allowed: a run with only the window's pairs */
            steps = strcmp(optarg, "0") == 0 ? 0 : bench_parse("-n", optarg, 0);
            break;
        case 'w': window = (size_t)bench_parse("-w", optarg, 0); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-m small|medium|mixed|16|256|4k|64k] [-n steps] [-w window] "
                    "[-t threads] [-X]\n", argv[0]);
            return 2;
        }
    }
    int small_share = -1; /* out of 4, for small/medium/mixed */
    size_t band_max = 0;  /* for the bands from 1 byte */
    if (strcmp(mode, "small") == 0)
        small_share = 4;
    else if (strcmp(mode, "medium") == 0)
        small_share = 0;
    else if (strcmp(mode, "mixed") == 0)
        small_share = 3;
    else if (strcmp(mode, "16") == 0)
        band_max = 16;
    else if (strcmp(mode, "256") == 0)
        band_max = 256;
    else if (strcmp(mode, "4k") == 0)
        band_max = 4096;
    else if (strcmp(mode, "64k") == 0)
        band_max = 65536;
    else
        bench_fail("unknown mode '%s' (small, medium, mixed, 16, 256, 4k or 64k)", mode);
    if (window < 1 || window > MAX_WINDOW)
        bench_fail("window must be in [1, %d]", MAX_WINDOW);
    if (threads < 1)
        bench_fail("need threads >= 1");

    uint64_t rng = CHURN_SEED;
    for (size_t i = 0; i < TABLE; i++) {
        if (small_share >= 0) {
            int small = (int)(bench_rand(&rng) % 4) < small_share;
            sizes[i] = small ? bench_range(&rng, 16, 128) : bench_range(&rng, 256, 4096);
        } else {
            sizes[i] = bench_range(&rng, 1, band_max);
        }
        slot_of[i] = (unsigned)(bench_rand(&rng) % window);
    }

    double secs;
    if (threads == 1) {
        double t0 = bench_now();
        window0.steps = steps;
        churn_run(&window0);
        secs = bench_now() - t0;
    } else {
        struct churn_window *ws = bench_malloc(threads * sizeof *ws);
        pthread_barrier_init(&start_barrier, NULL, threads + 1);
        for (unsigned t = 0; t < threads; t++) {
            ws[t].id = t;
            ws[t].steps = steps / threads + (t < steps % threads ? 1 : 0);
            if (pthread_create(&ws[t].thread, NULL, churn_thread, &ws[t]) != 0)
                bench_fail("pthread_create failed");
        }
        pthread_barrier_wait(&start_barrier);
        for (unsigned t = 0; t < threads; t++)
            pthread_join(ws[t].thread, NULL);
        secs = bench_span_secs();
        pthread_barrier_destroy(&start_barrier);
        free(ws);
    }
    bench_result((int)threads, (double)(steps + window * threads), secs,
                 "mode=%s window=%zu steps=%llu", mode, window, steps);
    return 0;
}
