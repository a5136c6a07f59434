/*
 * mem_return.c - memory goes back to the system, and a long run stays
 * bounded.
 *
 * Part 1, "peak": PEAK_THREADS threads together allocate PEAK_BYTES (1 GiB)
 * of requested bytes in a mix of small (16-512 B), medium (1-200 KiB) and
 * large (256 KiB - 4 MiB) blocks, a third of the bytes each, writing every
 * page. Each thread then frees half of its blocks; the main thread verifies
 * and frees the rest after the threads have exited (frees into arenas no
 * live thread owns). Then, with no call into the allocator at all, the
 * resident set must come back within TRIM_SLACK (64 MiB) of what it was
 * before the first allocation within DECAY_WAIT_MS (10 s; memalloc keeps
 * unused free memory for MEMALLOC_RETAIN_MS, 1 s by default, and its
 * background purger gives it back within about twice that); and after
 * malloc_trim(0) too.
 *
 * Part 2, "soak": SOAK_THREADS threads each keep about SOAK_LIVE bytes
 * alive through SOAK_CYCLES cycles. Every cycle uses another size
 * distribution (from 48-byte to 600 KiB blocks, with small long-lived
 * blocks sprinkled between bigger ones), replaces every block of the set
 * and then half of them again, and the threads swap sets between cycles
 * so that half of all frees are cross-thread. No malloc_trim. The resident
 * set at the end of cycle 50 must be at most 1.5 times the one at the end
 * of cycle 5 (cycles 5 and 50 use the same distribution).
 *
 * Every block is verified before it is freed. Figures are printed as
 * "mem_return: key=value" lines; the bounds are on memory, never on time.
 * Usage: mem_return [peak|soak] (default: both).
 */
#include "common.h"

#include <malloc.h>
#include <pthread.h>

#define PEAK_THREADS 4
#define PEAK_BYTES ((size_t)1 << 30)
#define TRIM_SLACK ((size_t)64 << 20)
#define DECAY_WAIT_MS 10000

#define SOAK_THREADS 2
#define SOAK_LIVE ((size_t)16 << 20)
#define SOAK_CYCLES 60
#define SOAK_EARLY 5
#define SOAK_LATE 50
#define SOAK_NDIST 9            /* 50 - 5 is a multiple of it */

/* ---- part 1: peak, free, trim ---- */

struct peak_thread {
    int id;
    struct blk **blocks;
    size_t n;
    size_t bytes;
    pthread_barrier_t *filled;   /* every thread has allocated its share */
    pthread_barrier_t *measured; /* the main thread has read the peak */
};

static size_t peak_size(int kind, uint64_t r)
{
    switch (kind) {
    case 0: return 16 + r % 497;                       /* small */
    case 1: return 1024 + r % (199 * 1024);            /* medium */
    default: return 256 * 1024 + r % (3840 * 1024);   /* large */
    }
}

static void *peak_main(void *arg)
{
    struct peak_thread *t = arg;
    uint64_t s = rng_seed((uint64_t)t->id, 1);
    size_t share = PEAK_BYTES / PEAK_THREADS;
    size_t cap = share / 3 / 16 + share / 3 / 1024 + share / 3 / (256 * 1024) + 64;
    t->blocks = malloc(cap * sizeof *t->blocks);
    if (t->blocks == NULL)
        prog_die("cannot allocate the block table");
    size_t per_kind[3] = { 0, 0, 0 };
    /* interleave the three kinds so they share chunks and neighbours */
    while (t->bytes < share) {
        uint64_t r = rng_next(&s);
        int kind = (int)(r % 3);
        if (per_kind[kind] >= share / 3) {
            kind = per_kind[0] < share / 3 ? 0 : per_kind[1] < share / 3 ? 1 : 2;
        }
        size_t size = peak_size(kind, r >> 8);
        if (t->n == cap)
            prog_die("block table full");
        t->blocks[t->n] = blk_new(size, ((uint64_t)t->id << 56) | t->n, (r >> 60) == 0);
        t->n++;
        per_kind[kind] += size;
        t->bytes += size;
    }
    pthread_barrier_wait(t->filled);
    pthread_barrier_wait(t->measured);
    /* this thread frees every other block (in reverse, for variety) */
    for (size_t i = t->n; i-- > 0;)
        if (i % 2 == 1) {
            blk_free(t->blocks[i], "peak block freed by its thread");
            t->blocks[i] = NULL;
        }
    return NULL;
}

static int run_peak(void)
{
    free(blk_new(100, 7, 0));
    size_t rss_start = rss_bytes();

    pthread_barrier_t filled, measured;
    pthread_barrier_init(&filled, NULL, PEAK_THREADS + 1);
    pthread_barrier_init(&measured, NULL, PEAK_THREADS + 1);
    struct peak_thread th[PEAK_THREADS];
    pthread_t tid[PEAK_THREADS];
    for (int i = 0; i < PEAK_THREADS; i++) {
        th[i] = (struct peak_thread){ .id = i, .filled = &filled, .measured = &measured };
        if (pthread_create(&tid[i], NULL, peak_main, &th[i]) != 0)
            prog_die("pthread_create failed");
    }
    pthread_barrier_wait(&filled);
    size_t rss_peak = rss_bytes();
    size_t requested = 0, nblocks = 0;
    for (int i = 0; i < PEAK_THREADS; i++) {
        requested += th[i].bytes;
        nblocks += th[i].n;
    }
    pthread_barrier_wait(&measured);
    for (int i = 0; i < PEAK_THREADS; i++)
        if (pthread_join(tid[i], NULL) != 0)
            prog_die("pthread_join failed");
    /* the other half, from a thread that did not allocate them */
    for (int i = 0; i < PEAK_THREADS; i++) {
        for (size_t k = 0; k < th[i].n; k++)
            if (th[i].blocks[k] != NULL)
                blk_free(th[i].blocks[k], "peak block freed by main");
        free(th[i].blocks);
    }
    pthread_barrier_destroy(&filled);
    pthread_barrier_destroy(&measured);
    size_t rss_freed = rss_bytes();
    /* Idle: only sleeps and reads of /proc, until the memory is back. The
     * bound holds memalloc to its retention policy; the system allocator's
     * run (glibc keeps freed arena memory until malloc_trim) only reports
     * what it does after a second. */
    int memalloc = dlsym(RTLD_DEFAULT, "ma_check") != NULL;
    int wait_ms = memalloc ? DECAY_WAIT_MS : 1000;
    int waited_ms = 0;
    size_t rss_idle = rss_freed;
    while (rss_idle > rss_start + TRIM_SLACK && waited_ms < wait_ms) {
        usleep(50 * 1000);
        waited_ms += 50;
        rss_idle = rss_bytes();
    }
    int checked = heap_check();
    malloc_trim(0);
    size_t rss_trimmed = rss_bytes();
    checked += heap_check();

    printf("mem_return: peak_blocks=%zu requested_mib=%.1f threads=%d ma_check_runs=%d\n",
           nblocks, mib(requested), PEAK_THREADS, checked);
    printf("mem_return: rss_start_mib=%.1f rss_peak_mib=%.1f rss_after_free_mib=%.1f "
           "rss_idle_mib=%.1f idle_wait_ms=%d rss_after_trim_mib=%.1f bound_mib=%.1f\n",
           mib(rss_start), mib(rss_peak), mib(rss_freed), mib(rss_idle), waited_ms, mib(rss_trimmed),
           mib(rss_start + TRIM_SLACK));
    fflush(stdout);
    if (rss_start == 0 || rss_trimmed == 0)
        prog_die("cannot read /proc/self/statm");
    if (rss_peak < PEAK_BYTES - PEAK_BYTES / 8)
        prog_die("peak RSS %.1f MiB: the blocks were not all resident?", mib(rss_peak));
    if (memalloc && rss_idle > rss_start + TRIM_SLACK) {
        prog_say("FAIL peak: RSS %d ms after the frees, without malloc_trim, is %.1f MiB, start was %.1f MiB "
                 "(allowed +%.0f MiB)",
                 waited_ms, mib(rss_idle), mib(rss_start), mib(TRIM_SLACK));
        return 1;
    }
    if (rss_trimmed > rss_start + TRIM_SLACK) {
        prog_say("FAIL peak: RSS after free + malloc_trim(0) is %.1f MiB, start was %.1f MiB (allowed +%.0f MiB)",
                 mib(rss_trimmed), mib(rss_start), mib(TRIM_SLACK));
        return 1;
    }
    return 0;
}

/* ---- part 2: soak ---- */

struct soak_set {
    struct blk **slot;
    size_t cap;
};

static struct soak_set sets[SOAK_THREADS];
static pthread_barrier_t soak_done, soak_go;
static size_t soak_nslots[SOAK_NDIST];

/* mean block size of each distribution; live bytes stay ~SOAK_LIVE */
static const size_t soak_mean[SOAK_NDIST] = {
    48, 160, 600, 2500, 9000, 40000, 120000, 200, 600000,
};

static size_t soak_size(int d, uint64_t r)
{
    if ((r & 15) == 0)
        return 16 + (r >> 8) % 240;   /* small blocks between the big ones */
    size_t m = soak_mean[d];
    return m / 2 + (r >> 8) % (m + 1);
}

static void *soak_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = rng_seed((uint64_t)id, 2);
    for (int c = 0; c < SOAK_CYCLES; c++) {
        struct soak_set *set = &sets[(id + c) % SOAK_THREADS];   /* swap sets */
        int d = c % SOAK_NDIST;
        size_t n = soak_nslots[d];
        /* replace every block (or drop it when this cycle keeps fewer) */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < set->cap; i++) {
                uint64_t r = rng_next(&s);
                if (pass == 1 && (r >> 62) < 2)
                    continue;
                if (set->slot[i] != NULL) {
                    blk_free(set->slot[i], "soak block");
                    set->slot[i] = NULL;
                }
                if (i < n)
                    set->slot[i] = blk_new(soak_size(d, r), r, 0);
            }
        }
        pthread_barrier_wait(&soak_done);
        pthread_barrier_wait(&soak_go);
    }
    return NULL;
}

static int run_soak(void)
{
    size_t cap = 0;
    for (int d = 0; d < SOAK_NDIST; d++) {
        soak_nslots[d] = SOAK_LIVE / soak_mean[d];
        if (soak_nslots[d] > cap)
            cap = soak_nslots[d];
    }
    for (int t = 0; t < SOAK_THREADS; t++) {
        sets[t].cap = cap;
        sets[t].slot = calloc(cap, sizeof *sets[t].slot);
        if (sets[t].slot == NULL)
            prog_die("cannot allocate the soak tables");
    }
    pthread_barrier_init(&soak_done, NULL, SOAK_THREADS + 1);
    pthread_barrier_init(&soak_go, NULL, SOAK_THREADS + 1);
    pthread_t tid[SOAK_THREADS];
    for (int t = 0; t < SOAK_THREADS; t++)
        if (pthread_create(&tid[t], NULL, soak_main, (void *)(intptr_t)t) != 0)
            prog_die("pthread_create failed");
    size_t rss[SOAK_CYCLES], rss_max = 0;
    for (int c = 0; c < SOAK_CYCLES; c++) {
        pthread_barrier_wait(&soak_done);
        rss[c] = rss_bytes();
        if (rss[c] > rss_max)
            rss_max = rss[c];
        pthread_barrier_wait(&soak_go);
    }
    for (int t = 0; t < SOAK_THREADS; t++)
        if (pthread_join(tid[t], NULL) != 0)
            prog_die("pthread_join failed");
    for (int t = 0; t < SOAK_THREADS; t++) {
        for (size_t i = 0; i < sets[t].cap; i++)
            if (sets[t].slot[i] != NULL)
                blk_free(sets[t].slot[i], "soak block at the end");
        free(sets[t].slot);
    }
    int checked = heap_check();
    pthread_barrier_destroy(&soak_done);
    pthread_barrier_destroy(&soak_go);

    printf("mem_return: soak_cycles=%d threads=%d live_per_thread_mib=%.0f ma_check_runs=%d\n",
           SOAK_CYCLES, SOAK_THREADS, mib(SOAK_LIVE), checked);
    printf("mem_return: soak_rss_cycle%d_mib=%.1f soak_rss_cycle%d_mib=%.1f soak_rss_max_mib=%.1f "
           "soak_ratio=%.2f bound_ratio=1.50\n",
           SOAK_EARLY, mib(rss[SOAK_EARLY]), SOAK_LATE, mib(rss[SOAK_LATE]), mib(rss_max),
           (double)rss[SOAK_LATE] / (double)rss[SOAK_EARLY]);
    printf("mem_return: soak_rss_by_cycle_mib=");
    for (int c = 0; c < SOAK_CYCLES; c++)
        printf("%s%.0f", c ? "," : "", mib(rss[c]));
    printf("\n");
    fflush(stdout);
    if (rss[SOAK_EARLY] == 0)
        prog_die("cannot read /proc/self/statm");
    if ((double)rss[SOAK_LATE] > 1.5 * (double)rss[SOAK_EARLY]) {
        prog_say("FAIL soak: RSS at the end of cycle %d is %.1f MiB, more than 1.5 x %.1f MiB at the end of cycle %d",
                 SOAK_LATE, mib(rss[SOAK_LATE]), mib(rss[SOAK_EARLY]), SOAK_EARLY);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    prog_name = "mem_return";
    expect_allocator();
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "all";
    int fails = 0;
    if (strcmp(what, "all") != 0 && strcmp(what, "peak") != 0 && strcmp(what, "soak") != 0)
        prog_die("usage: mem_return [peak|soak]");
    if (strcmp(what, "soak") != 0)
        fails += run_peak();
    if (strcmp(what, "peak") != 0)
        fails += run_soak();
    if (fails != 0)
        return 1;
    printf("mem_return: ok\n");
    return 0;
}
