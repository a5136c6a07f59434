/*
 * test_prof.c - the profiler's fast stack walk (src/prof_unwind.c) against
 * libgcc's _Unwind_Backtrace, which reads the same unwind tables the slow
 * way: at every depth, through frames addressed from rsp and from rbp
 * (alloca), in threads, and in a signal handler (where the fast walk must
 * either give up or agree). The profile itself is tested end to end by
 * tests/prof/run.sh.
 */
#include "testutil.h"

#include <alloca.h>
#include <pthread.h>
#include <unwind.h>

/* Hidden functions of the library objects this suite links (src/prof.h). */
unsigned prof_unwind_fast(uintptr_t *pcs, uintptr_t *starts, unsigned max, unsigned nstarts);
void prof_unwind_init(void);

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

static volatile int walked, fast_gave_up;

/* Walks the stack both ways here and requires the same frames above this
 * one (the first frames differ: each walk starts inside its own call). */
static __attribute__((noinline)) void compare_here(void)
{
    static __thread struct trace slow;
    static __thread uintptr_t fast[MAXF], starts[16];
    slow.n = 0;
    _Unwind_Backtrace(take, &slow);
    unsigned n = prof_unwind_fast(fast, starts, MAXF, 16);
    if (n == 0) {
        fast_gave_up++;
        return;
    }
    cr_assert_geq(n, 2);
    /* Both stop at MAXF frames on the deepest stacks: compare what both
     * have then. */
    if (n < MAXF && slow.n < MAXF)
        cr_assert_eq(n - 2, slow.n - 1, "fast walk %u frames, libgcc %u", n - 2, slow.n - 1);
    for (unsigned i = 2; i < n && i - 1 < slow.n; i++)
        cr_assert_eq(fast[i], slow.pc[i - 1], "frame %u: fast %#lx, libgcc %#lx", i, (unsigned long)fast[i],
                     (unsigned long)slow.pc[i - 1]);
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
    for (int d = 0; d < 150; d++)
        down(d);
    /* Twice: the second walks come from the rule cache. */
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
