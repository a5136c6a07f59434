/*
 * thread_churn.c - tens of thousands of short-lived threads, each allocating,
 * handing blocks to later threads and exiting; then the memory held must be
 * bounded and the heap consistent.
 *
 * The main thread starts NTHREADS threads, at most MAXLIVE alive at once
 * (it joins the oldest before starting a new one). Every thread:
 *   - churns a private set of blocks (malloc, calloc, realloc, free, with
 *     small, medium and a few large sizes), verifying each block's pattern;
 *   - swaps a few of its blocks into a shared mailbox, and verifies and
 *     frees whatever it takes out: blocks left by earlier, mostly dead,
 *     threads of any arena;
 *   - every fourth thread leaves a block to a thread-specific-data
 *     destructor, so free also runs while the thread is being torn down.
 * The main thread runs the heap checker (memalloc's ma_check, when it is
 * the allocator) while threads run, drains the mailbox at the end, and
 * requires the resident set after all threads are gone to be within
 * RSS_SLACK (96 MiB) of the resident set before the first thread started,
 * and within TRIM_SLACK (32 MiB) of it after malloc_trim(0): a leak of a
 * couple of KiB per dead thread would exceed either (memory, not time).
 * Measured on the 2-core machine: glibc ends at ~45 MiB and ~8 MiB after
 * trim, memalloc at ~42 MiB and 2 MiB. Figures are printed as
 * "thread_churn: key=value" lines.
 */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 20000
#define MAXLIVE 32
#define OPS 160                 /* private allocations per thread */
#define PRIVATE_SLOTS 24        /* private blocks alive at once */
#define MAILBOX 4096            /* blocks passed between threads */
#define SWAPS 6                 /* mailbox swaps per thread */
#define RSS_SLACK ((size_t)96 << 20)       /* allowed growth of RSS over the run */
#define TRIM_SLACK ((size_t)32 << 20)      /* ... and after malloc_trim(0) */

static _Atomic(struct blk *) mailbox[MAILBOX];
static pthread_key_t exit_key;
static atomic_long destructor_runs;

static size_t pick_size(uint64_t r)
{
    unsigned k = (unsigned)(r & 127);
    r >>= 8;
    if (k == 0)
        return 256 * 1024 + r % (192 * 1024);   /* large path */
    if (k < 16)
        return 1024 + r % (63 * 1024);          /* medium */
    return r % 480;                             /* small */
}

static void exit_destructor(void *p)
{
    blk_free(p, "thread-exit destructor");
    atomic_fetch_add(&destructor_runs, 1);
}

static void *thread_main(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t s = rng_seed(id, 77);
    struct blk *mine[PRIVATE_SLOTS] = { 0 };

    for (int i = 0; i < OPS; i++) {
        uint64_t r = rng_next(&s);
        struct blk **slot = &mine[r % PRIVATE_SLOTS];
        uint64_t tag = (id << 20) | (uint64_t)i;
        if (*slot == NULL)
            *slot = blk_new(pick_size(rng_next(&s)), tag, (r >> 32) % 8 == 0);
        else if ((r >> 32) % 4 == 0)
            *slot = blk_resize(*slot, pick_size(rng_next(&s)), tag);
        else {
            blk_free(*slot, "private block");
            *slot = NULL;
        }
    }
    /* hand some blocks on; take (and free) what earlier threads left */
    for (int i = 0; i < SWAPS; i++) {
        uint64_t r = rng_next(&s);
        struct blk *give = mine[i];
        mine[i] = NULL;
        if (give == NULL)
            give = blk_new(pick_size(r >> 3) % 4096, (id << 20) | 0xFFFFFu, 0);
        struct blk *got = atomic_exchange(&mailbox[r % MAILBOX], give);
        if (got != NULL)
            blk_free(got, "mailbox block");
    }
    for (int i = 0; i < PRIVATE_SLOTS; i++)
        if (mine[i] != NULL)
            blk_free(mine[i], "private block at exit");
    if (id % 4 == 0) {
        struct blk *b = blk_new(100 + id % 3000, id ^ 0xD15EA5E, 0);
        if (pthread_setspecific(exit_key, b) != 0)
            prog_die("pthread_setspecific failed");
    }
    return NULL;
}

int main(void)
{
    prog_name = "thread_churn";
    expect_allocator();
    if (pthread_key_create(&exit_key, exit_destructor) != 0)
        prog_die("pthread_key_create failed");

    /* Warm up the main thread's allocator and stdio first, so the starting
     * RSS includes what any process has. */
    free(blk_new(1000, 1, 0));
    size_t rss_start = rss_bytes();
    size_t rss_peak = rss_start;
    int checks = 0;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t live[MAXLIVE];
    for (long i = 0; i < NTHREADS; i++) {
        int slot = (int)(i % MAXLIVE);
        if (i >= MAXLIVE && pthread_join(live[slot], NULL) != 0)
            prog_die("pthread_join failed at thread %ld", i);
        int err = pthread_create(&live[slot], &attr, thread_main, (void *)(uintptr_t)i);
        if (err != 0)
            prog_die("pthread_create failed at thread %ld: %s", i, strerror(err));
        if (i % 2500 == 1250) {
            size_t r = rss_bytes();
            if (r > rss_peak)
                rss_peak = r;
            checks += heap_check();   /* concurrently with running threads */
        }
    }
    for (long i = NTHREADS - MAXLIVE; i < NTHREADS; i++)
        if (pthread_join(live[i % MAXLIVE], NULL) != 0)
            prog_die("pthread_join failed at the end");
    pthread_attr_destroy(&attr);

    size_t left = 0;
    for (int i = 0; i < MAILBOX; i++) {
        struct blk *b = atomic_exchange(&mailbox[i], NULL);
        if (b != NULL) {
            blk_free(b, "mailbox block freed by main");
            left++;
        }
    }
    long dtors = atomic_load(&destructor_runs);
    if (dtors != NTHREADS / 4)
        prog_die("%ld thread-exit destructors ran, expected %d", dtors, NTHREADS / 4);
    checks += heap_check();
    size_t rss_end = rss_bytes();
    if (rss_end > rss_peak)
        rss_peak = rss_end;
    malloc_trim(0);
    size_t rss_trim = rss_bytes();

    printf("thread_churn: threads=%d max_alive=%d mailbox_blocks_freed_by_main=%zu ma_check_runs=%d\n",
           NTHREADS, MAXLIVE, left, checks);
    printf("thread_churn: rss_start_mib=%.1f rss_peak_sampled_mib=%.1f rss_end_mib=%.1f "
           "rss_after_trim_mib=%.1f bound_mib=%.1f\n",
           mib(rss_start), mib(rss_peak), mib(rss_end), mib(rss_trim), mib(rss_start + RSS_SLACK));
    fflush(stdout);
    if (rss_start == 0 || rss_end == 0)
        prog_die("cannot read /proc/self/statm");
    if (rss_end > rss_start + RSS_SLACK)
        prog_die("RSS after all threads are gone is %.1f MiB, more than %.1f MiB above the start (%.1f MiB)",
                 mib(rss_end), mib(RSS_SLACK), mib(rss_start));
    if (rss_trim > rss_start + TRIM_SLACK)
        prog_die("RSS after all threads are gone and malloc_trim(0) is %.1f MiB, more than %.1f MiB above "
                 "the start (%.1f MiB): memory of dead threads kept?",
                 mib(rss_trim), mib(TRIM_SLACK), mib(rss_start));
    printf("thread_churn: ok\n");
    return 0;
}
