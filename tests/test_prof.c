/*
 * test_prof.c - the profiler's fast stack walk (src/prof_unwind.c) against
 * libgcc's _Unwind_Backtrace, which reads the same unwind tables the slow
 * way: at every depth, through frames addressed from rsp and from rbp
 * (alloca), in threads, and in a signal handler (where the fast walk must
 * either give up or agree). Then the samples prof_record files from a
 * given frame, as the sampled path passes it, including the ones that
 * reuse the thread's last walk: each stack must be the one libgcc walks,
 * with the count of calls made through it, when calls alternate between
 * callers that leave the sampling frame at the same address. The profile
 * itself is tested end to end by tests/prof/run.sh. Last, the sampling
 * intervals' distribution.
 */
#include "testutil.h"

#include <alloca.h>
#include <pthread.h>
#include <unwind.h>

#include "../src/config.h"
#include "../src/prof.h"

#define MAXF 200

struct trace {
    unsigned n;
    uintptr_t pc[MAXF];
};

static _Unwind_Reason_Code take(struct _Unwind_Context *ctx, void *arg)
{
    struct trace *t = arg;
    /* libgcc reports one frame of pc 0 past the outermost one (whose
     * return address is undefined); prof.c stops there too. */
    if (t->n == MAXF || _Unwind_GetIP(ctx) == 0)
        return _URC_END_OF_STACK;
    t->pc[t->n++] = _Unwind_GetIP(ctx);
    return _URC_NO_REASON;
}

static volatile int walked, fast_gave_up, keep_trail;

/* Walks the stack both ways here (the fast walk keeping its trail when
 * keep_trail is set) and requires the same frames above this one (the
 * first frame differs: each walk starts at its own call). */
static __attribute__((noinline)) void compare_here(void)
{
    static __thread struct trace slow;
    static __thread uintptr_t fast[MAXF], starts[16];
    static __thread struct prof_trail trail;
    slow.n = 0;
    _Unwind_Backtrace(take, &slow);
    struct prof_frame f;
    prof_regs(&f);
    unsigned n = prof_unwind_from(&f, fast, starts, MAXF, 16, keep_trail ? &trail : NULL);
    if (n == 0) {
        fast_gave_up++;
        return;
    }
    cr_assert_geq(n, 1);
    /* Both stop at MAXF frames on the deepest stacks: compare what both
     * have then. */
    if (n < MAXF && slow.n < MAXF)
        cr_assert_eq(n, slow.n, "fast walk %u frames, libgcc %u", n, slow.n);
    for (unsigned i = 1; i < n && i < slow.n; i++)
        cr_assert_eq(fast[i], slow.pc[i], "frame %u: fast %#lx, libgcc %#lx", i, (unsigned long)fast[i],
                     (unsigned long)slow.pc[i]);
    walked++;
}

static void *volatile sink;

static __attribute__((noinline)) void down(int depth);

/* A frame addressed from rbp: alloca of a size that changes each call. */
static __attribute__((noinline)) void down_alloca(int depth)
{
    char *buf = alloca(16 + (size_t)depth * 24);
    buf[0] = (char)depth;
    sink = buf;
    down(depth - 1);
    sink = buf;
}

static __attribute__((noinline)) void down(int depth)
{
    if (depth <= 0) {
        compare_here();
        return;
    }
    if (depth % 3 == 0)
        down_alloca(depth);
    else
        down(depth - 1);
    sink = (void *)&walked; /* no tail call */
}

Test(prof, fast_walk_matches_libgcc_at_every_depth)
{
    prof_unwind_init();
    walked = fast_gave_up = 0;
    keep_trail = 0;
    for (int d = 0; d < 150; d++)
        down(d);
    /* Twice: the second walks come from the rule cache, and keep a trail
     * (up to the depth where it fills and the walk goes on without). */
    keep_trail = 1;
    for (int d = 0; d < 150; d++)
        down(d);
    cr_assert_eq(walked, 300, "the fast walk gave up %d times on ordinary frames", fast_gave_up);
}

static void *thread_walks(void *arg)
{
    (void)arg;
    for (int d = 0; d < 40; d++)
        down(d);
    return NULL;
}

Test(prof, fast_walk_matches_libgcc_in_threads)
{
    prof_unwind_init();
    walked = fast_gave_up = 0;
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, thread_walks, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(fast_gave_up, 0);
}

static void on_signal(int sig)
{
    (void)sig;
    down(5);
}

Test(prof, fast_walk_in_a_signal_handler_agrees_or_gives_up)
{
    prof_unwind_init();
    walked = fast_gave_up = 0;
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    cr_assert_eq(walked + fast_gave_up, 1);
}

/* ---- samples from a frame, and the thread's last walk ---- */

/* The stacks the test expects: each distinct caller chain (frames from the
 * sampling function's caller outwards, as libgcc walks them) and how many
 * samples were filed through it. */
#define EXPECT_MAX 64
static struct expected {
    unsigned n, calls;
    uintptr_t pc[MAXF];
} expect[EXPECT_MAX];
static unsigned nexpect;
static uintptr_t next_key = 16;

/* Files a sample as the sampled path does (the frame is this function's,
 * at its call to prof_regs) and notes the stack libgcc walks from here. */
static __attribute__((noinline)) void sample_here(void)
{
    struct prof_frame f;
    prof_regs(&f);
    prof_record((void *)next_key, 100, &f);
    next_key += 16;
    struct trace slow = { 0 };
    _Unwind_Backtrace(take, &slow);
    /* slow.pc[0] lies in this function after its call to
     * _Unwind_Backtrace; the callers follow. */
    unsigned n = slow.n - 1 < PROF_MAX_FRAMES - 1 ? slow.n - 1 : PROF_MAX_FRAMES - 1;
    unsigned i;
    for (i = 0; i < nexpect; i++)
        if (expect[i].n == n && memcmp(expect[i].pc, slow.pc + 1, n * sizeof(uintptr_t)) == 0)
            break;
    cr_assert_lt(i, EXPECT_MAX);
    if (i == nexpect) {
        expect[i].n = n;
        memcpy(expect[i].pc, slow.pc + 1, n * sizeof(uintptr_t));
        nexpect++;
    }
    expect[i].calls++;
}

static void prof_start(void)
{
    ma_cfg.prof = 1;
    ma_cfg.prof_sample = 512 << 10;
    prof_init();
    cr_assert(prof_on);
    nexpect = 0;
    memset(expect, 0, sizeof expect);
}

/* Every stack in the profile is one that was expected, with the count of
 * samples filed through it, and every expected one is there. */
static void prof_compare(void)
{
    struct prof_snapshot s;
    cr_assert_eq(prof_snapshot_take(&s), 0);
    unsigned found = 0;
    for (size_t k = 0; k < s.nstacks; k++) {
        const struct prof_stack *st = s.stacks[k];
        cr_assert_geq(st->depth, 1);
        unsigned i;
        for (i = 0; i < nexpect; i++)
            if (expect[i].n == st->depth - 1 &&
                memcmp(expect[i].pc, st->frames + 1, expect[i].n * sizeof(uintptr_t)) == 0)
                break;
        cr_assert_lt(i, nexpect, "a recorded stack of %u frames that no call made", st->depth);
        cr_assert_eq(st->alloc_count, expect[i].calls, "stack %u: %lu samples, %u calls", i,
                     (unsigned long)st->alloc_count, expect[i].calls);
        found++;
    }
    cr_assert_eq(found, nexpect, "%u stacks recorded, %u expected", found, nexpect);
    prof_snapshot_drop(&s);
}

static volatile int pad_sink;

/* Two callers with frames of the same size, called from the same place:
 * sample_here runs at the same address (return address and stack pointer)
 * under either, above a different return address. */
static __attribute__((noinline)) void via_a(void)
{
    volatile char pad[48];
    pad[0] = 1;
    sample_here();
    pad_sink = pad[0];
}

static __attribute__((noinline)) void via_b(void)
{
    volatile char pad[48];
    pad[0] = 2;
    sample_here();
    pad_sink = pad[0];
}

Test(prof, samples_from_one_frame_under_two_callers)
{
    prof_start();
    for (int i = 0; i < 100; i++) {
        if (i % 3 == 0)
            via_b();
        else
            via_a();
    }
    cr_assert_eq(nexpect, 2);
    prof_compare();
}

/* Depth d, frames addressed from rsp and (every third) from rbp. */
static __attribute__((noinline)) void sample_down(int depth);

static __attribute__((noinline)) void sample_down_alloca(int depth)
{
    char *buf = alloca(16 + (size_t)depth * 24);
    buf[0] = (char)depth;
    sink = buf;
    sample_down(depth - 1);
    sink = buf;
}

static __attribute__((noinline)) void sample_down(int depth)
{
    if (depth <= 0) {
        sample_here();
        return;
    }
    if (depth % 3 == 0)
        sample_down_alloca(depth);
    else
        sample_down(depth - 1);
    sink = (void *)&walked;
}

Test(prof, samples_repeated_and_alternating_at_many_depths)
{
    prof_start();
    /* Runs of the same depth (the last walk is reused), changes of depth
     * (it is not), and stacks too deep for the trail (walked each time). */
    static const int depths[] = { 0, 0, 3, 3, 3, 1, 2, 2, 9, 30, 30, 4, 4, 60, 60, 120, 120, 5, 5, 5 };
    for (int r = 0; r < 3; r++)
        for (unsigned i = 0; i < sizeof depths / sizeof depths[0]; i++)
            sample_down(depths[i]);
    prof_compare();
}

/* ---- sampling intervals ---- */

/* The intervals are exponential with mean MEMALLOC_PROF_SAMPLE: a million
 * of them, counted in 64 bins an eighth of the mean wide and one for the
 * rest, against the counts e^(-x/mean) gives (Pearson's chi-square, 64
 * degrees of freedom: a correct generator exceeds 130 with probability
 * near 1e-6; one that keeps every point of a layer's edge, or draws the
 * edge's height from the wrong layer, scores above 190), and their mean
 * within 0.5% (5 standard deviations). */
Test(prof, sampling_intervals_are_exponential)
{
    prof_start();
    enum { N = 1000000, BINS = 64 };
    static unsigned count[BINS + 1];
    const double mean = 512 << 10, width = mean / 8;
    double sum = 0;
    for (int i = 0; i < N; i++) {
        int64_t x = prof_next_interval();
        cr_assert_geq(x, 1);
        sum += (double)x;
        size_t b = (size_t)((double)x / width);
        count[b < BINS ? b : BINS]++;
    }
    double m = sum / N / mean - 1.0;
    cr_assert_lt(m < 0 ? -m : m, 0.005, "mean %.0f", sum / N);
    /* e^(-1/8) from its series (no libm here), then each bin's share. */
    double q = 1.0, term = 1.0;
    for (int k = 1; k < 12; k++)
        q += (term *= -0.125 / k);
    double tail = 1.0, chi2 = 0;
    for (int b = 0; b <= BINS; b++) {
        double next = b < BINS ? tail * q : 0.0;
        double expect = N * (tail - next), d = count[b] - expect;
        chi2 += d * d / expect;
        tail = next;
    }
    cr_assert_lt(chi2, 130.0, "chi-square %.1f over 64 degrees of freedom", chi2);
}
