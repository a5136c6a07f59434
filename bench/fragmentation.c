/*
 * fragmentation.c - memory use under a long alloc/free pattern whose size
 * mix keeps changing.
 *
 * Each of T threads keeps a live set capped at CAP/T bytes: every step it
 * allocates a block, and while the new block would not fit it frees random
 * live blocks first, so frees punch holes all over the heap. The run goes
 * through five phases of N/5 steps each, all threads together (a barrier
 * ends each phase and the resident set is sampled there):
 *
 *   grow    sizes drawn from a window that slides from ~64 B up to 64 KiB
 *   shrink  the same window sliding back down (holes left by big blocks
 *           must be reused by small ones)
 *   pow2    powers of two from 16 B to 64 KiB
 *   odd     odd sizes between 17 B and ~20 KB (nothing fits a class exactly)
 *   mixed   each step picks one of the four above at random
 *
 * One allocation in 64 is long-lived (up to CAP/16 bytes in all): it is kept
 * until the very end, pinning whatever chunk or page it lands in. Every
 * block is stamped on every page and checked before it is freed.
 *
 * Reported (KiB): maxrss_kb (peak RSS, getrusage), base_rss_kb (before the
 * pattern), rss_<phase>_kb at the end of each phase, peak_live_kb (largest
 * sum of requested bytes live at once), final_rss_kb with only the
 * long-lived blocks left, empty_rss_kb after freeing those too, and the
 * time of the whole pattern.
 *
 * Usage: fragmentation [-t threads] [-n steps] [-m cap] [-X]
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FRAG_SEED 0x667261676d656e74ULL
#define PHASES 5
#define LONG_LIVED_EVERY 64
#define SMALLEST 16
#define LARGEST 65536

static const char *const phase_names[PHASES] = { "grow", "shrink", "pow2", "odd", "mixed" };

struct live {
    void *p;
    size_t size;
};

struct worker {
    pthread_t thread;
    unsigned id;
    unsigned long long steps; /* per phase */
    size_t cap;
    struct live *live;       /* blocks that may be freed at any step */
    size_t nlive, live_bytes;
    struct live *pinned;     /* long-lived blocks, freed at the end */
    size_t npinned, pinned_bytes, pinned_cap;
};

static unsigned threads = 1;
static int corrupt;
static pthread_barrier_t phase_barrier;
static long phase_rss[PHASES];
static atomic_size_t live_total, live_peak;

static void live_add(size_t size)
{
    size_t now = atomic_fetch_add_explicit(&live_total, size, memory_order_relaxed) + size;
    size_t peak = atomic_load_explicit(&live_peak, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&live_peak, &peak, now,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static void live_sub(size_t size)
{
    atomic_fetch_sub_explicit(&live_total, size, memory_order_relaxed);
}

/* Size of step i of n in phase `phase` (phase 4 picks one of the others). */
static size_t step_size(int phase, unsigned long long i, unsigned long long n, uint64_t *rng)
{
    if (phase == 4)
        phase = (int)(bench_rand(rng) % 4);
    double f = n > 1 ? (double)i / (double)(n - 1) : 0.0;
    size_t hi, lo;
    switch (phase) {
    case 0: /* grow: window [hi/4, hi], hi from 64 B to 64 KiB */
    case 1: /* shrink: the same window going down */
        if (phase == 1)
            f = 1.0 - f;
        hi = 64 + (size_t)(f * (double)(LARGEST - 64));
        lo = hi / 4 < SMALLEST ? SMALLEST : hi / 4;
        return bench_range(rng, lo, hi);
    case 2:
        return (size_t)1 << bench_range(rng, 4, 16);
    default:
        return bench_range(rng, 8, 10000) * 2 + 1;
    }
}

static void free_random(struct worker *w, uint64_t *rng)
{
    size_t k = (size_t)(bench_rand(rng) % w->nlive);
    struct live b = w->live[k];
    w->live[k] = w->live[--w->nlive];
    bench_check(b.p, b.size, FRAG_SEED, "fragmentation live block");
    free(b.p);
    w->live_bytes -= b.size;
    live_sub(b.size);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = bench_mix(FRAG_SEED + w->id);
    unsigned long long count = 0;
    pthread_barrier_wait(&phase_barrier);
    bench_span_begin();
    for (int phase = 0; phase < PHASES; phase++) {
        for (unsigned long long i = 0; i < w->steps; i++, count++) {
            size_t size = step_size(phase, i, w->steps, &rng);
            int pin = count % LONG_LIVED_EVERY == LONG_LIVED_EVERY - 1 &&
                      w->pinned_bytes + size <= w->cap / 16 && w->npinned < w->pinned_cap;
            while (!pin && w->nlive > 0 && w->live_bytes + size > w->cap)
                free_random(w, &rng);
            void *p = bench_malloc(size);
            bench_stamp(p, size, FRAG_SEED);
            if (corrupt && w->id == 0 && phase == 2 && i == 0)
                bench_corrupt(p);
            live_add(size);
            if (pin) {
                w->pinned[w->npinned++] = (struct live){ p, size };
                w->pinned_bytes += size;
            } else {
                w->live[w->nlive++] = (struct live){ p, size };
                w->live_bytes += size;
            }
        }
        pthread_barrier_wait(&phase_barrier);
        if (w->id == 0)
            phase_rss[phase] = bench_rss_kb();
        pthread_barrier_wait(&phase_barrier);
    }
    while (w->nlive > 0)
        free_random(w, &rng);
    bench_span_end();
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long long steps = 1000000;
    size_t cap = 64u << 20;
    int opt;
    bench_init("fragmentation");
    while ((opt = getopt(argc, argv, "t:n:m:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'n': steps = bench_parse("-n", optarg, 0); break;
        case 'm': cap = (size_t)bench_parse("-m", optarg, 1); break;
        case 'X': corrupt = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-n steps] [-m cap] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || steps < (unsigned long long)PHASES * threads || cap / threads < 4 * LARGEST)
        bench_fail("need threads >= 1, steps >= 5 * threads, cap >= 256 KiB per thread");

    long base_rss = bench_rss_kb();
    struct worker *workers = bench_malloc(threads * sizeof *workers);
    for (unsigned t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        w->steps = steps / PHASES / threads;
        w->cap = cap / threads;
        /* Every live block is at least SMALLEST bytes, so this many entries
         * always suffice; only the entries used are ever touched. */
        w->live = bench_malloc((w->cap / SMALLEST + 1) * sizeof *w->live);
        w->nlive = w->live_bytes = 0;
        w->pinned_cap = (size_t)(w->steps * PHASES / LONG_LIVED_EVERY + 1);
        w->pinned = bench_malloc(w->pinned_cap * sizeof *w->pinned);
        w->npinned = w->pinned_bytes = 0;
    }
    pthread_barrier_init(&phase_barrier, NULL, threads);
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    for (unsigned t = 0; t < threads; t++)
        pthread_join(workers[t].thread, NULL);
    double secs = bench_span_secs();
    pthread_barrier_destroy(&phase_barrier);

    size_t final_live = atomic_load(&live_total);
    long final_rss = bench_rss_kb();
    for (unsigned t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        for (size_t i = 0; i < w->npinned; i++) {
            bench_check(w->pinned[i].p, w->pinned[i].size, FRAG_SEED, "fragmentation long-lived block");
            free(w->pinned[i].p);
        }
        free(w->pinned);
        free(w->live);
    }
    free(workers);
    long empty_rss = bench_rss_kb();

    char phases[256];
    int len = 0;
    for (int p = 0; p < PHASES; p++)
        len += snprintf(phases + len, sizeof phases - (size_t)len, "%srss_%s_kb=%ld",
                        p ? " " : "", phase_names[p], phase_rss[p]);
    bench_result((int)threads, (double)(steps / PHASES / threads * PHASES * threads), secs,
                 "cap_kb=%zu base_rss_kb=%ld %s peak_live_kb=%zu final_live_kb=%zu"
                 " final_rss_kb=%ld empty_rss_kb=%ld",
                 cap / 1024, base_rss, phases, atomic_load(&live_peak) / 1024,
                 final_live / 1024, final_rss, empty_rss);
    return 0;
}
