/*
 * test_tcache.c - the thread cache: pairs served without the arena lock,
 * LIFO reuse, bounded bins, counters merged into the arena, the cache
 * returned when a thread exits or turns caching off, and misuse of cached
 * blocks caught.
 */
#include <pthread.h>
#include <stdlib.h>

#include "testutil.h"

Test(tcache, pairs_are_served_without_the_arena_lock)
{
    unsigned me = ma_thread_arena();
    ma_free(ma_malloc(64)); /* warm the bin */
    uint64_t locks = arena_stats(me).lock_acquires;
    for (int i = 0; i < 1000; i++) {
        volatile char *p = ma_malloc(64);
        p[0] = 1;
        ma_free((void *)p);
    }
    /* Only the statistics call itself takes the lock. */
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1);
}

/* realloc(NULL, n) is malloc(n), down to the bin: the block a free just
 * cached comes back, with no lock. */
Test(tcache, realloc_of_null_takes_the_bins_block)
{
    if (check_mode())
        return; /* check mode caches nothing */
    unsigned me = ma_thread_arena();
    void *p = ma_malloc(48);
    ma_free(p);
    uint64_t locks = arena_stats(me).lock_acquires;
    for (int i = 0; i < 1000; i++) {
        volatile char *q = ma_realloc(NULL, 48);
        cr_assert_eq((void *)q, p);
        q[47] = 1;
        ma_free((void *)q);
    }
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1); /* the statistics call */
}

/* Every medium request (8 KiB to 256 KiB) gets a block that holds it and
 * wastes at most a quarter (4 bins per power of two), and a pair of one
 * size is served from its bin: the same block back, no lock. */
Test(tcache, medium_requests_fit_their_bins_and_pairs_take_no_lock)
{
    if (check_mode())
        return; /* check mode caches nothing */
    unsigned me = ma_thread_arena();
    for (size_t n = 8180; n <= (256u << 10) - 8; n += 7) {
        void *p = ma_malloc(n);
        cr_assert_not_null(p);
        size_t u = ma_usable_size(p);
        cr_assert_geq(u, n, "request %zu: usable %zu", n, u);
        cr_assert_leq(u + 8, (n + 8) + (n + 8) / 4 + 16, "request %zu: usable %zu", n, u);
        memset(p, 0x5a, n);
        ma_free(p);
    }
    const size_t sizes[] = { 9000, 20000, 65536, 100000, 200000 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = ma_malloc(sizes[i]);
        ma_free(p);
        uint64_t locks = arena_stats(me).lock_acquires;
        for (int k = 0; k < 100; k++) {
            volatile char *q = ma_malloc(sizes[i]);
            cr_assert_eq((void *)q, p, "size %zu: the bin's block", sizes[i]);
            q[sizes[i] - 1] = 1;
            ma_free((void *)q);
        }
        cr_assert_eq(arena_stats(me).lock_acquires, locks + 1, "size %zu", sizes[i]);
    }
    ma_check();
}

/* A medium request whose bin is empty takes a block the next bin up holds
 * (40,000 bytes are in the 40 KiB class, 30,000 in the 32 KiB one), with
 * no lock, and the block goes back to its own bin when freed. Run in a
 * fresh thread, whose bins start empty. */
static void *medium_neighbour(void *arg)
{
    (void)arg;
    unsigned me = ma_thread_arena();
    void *p = ma_malloc(40000);
    cr_assert_not_null(p);
    ma_free(p);
    uint64_t locks = arena_stats(me).lock_acquires;
    volatile char *q = ma_malloc(30000);
    cr_assert_eq((void *)q, p, "the 40 KiB bin's block serves the 32 KiB request");
    cr_assert_geq(ma_usable_size((void *)q), 40000);
    q[29999] = 1;
    ma_free((void *)q);
    cr_assert_eq(ma_malloc(40000), p, "freed, it is back in its own bin");
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1); /* the first statistics call */
    ma_free(p);
    /* With both bins empty, the request is served by a refill: a block of
     * its own class. */
    void *r = ma_malloc(30000), *s = ma_malloc(30000);
    cr_assert_lt(ma_usable_size(s), 40000);
    ma_free(r);
    ma_free(s);
    return NULL;
}

Test(tcache, a_medium_request_takes_the_next_bins_block_when_its_own_is_empty)
{
    if (check_mode())
        return; /* check mode caches nothing */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, medium_neighbour, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

/* The block of the smallest class that holds an n-byte request (n up to 8
 * KiB): exact 16-byte classes below 1 KiB, 16 per power of two above. */
static size_t class_block_for(size_t n)
{
    size_t s = (n + 8 + 15) & ~(size_t)15;
    if (s < 32)
        s = 32;
    if (s < 1024)
        return s;
    unsigned fl = 63u - (unsigned)__builtin_clzl(s);
    size_t step = (size_t)1 << (fl - 4);
    return (s + step - 1) / step * step;
}

/* The fast path finds a request's bin in a table indexed by the request's
 * size: every size from 0 to the largest it serves gets the smallest
 * block that holds it, whether the bin is empty (a refill carves it) or
 * holds a block freed a moment ago. */
Test(tcache, every_small_request_gets_the_smallest_block_that_holds_it)
{
    if (check_mode())
        return; /* check mode's blocks carry canaries */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t n = 0; n <= 8192 - 8; n++) {
            char *p = ma_malloc(n);
            cr_assert_not_null(p);
            size_t u = ma_usable_size(p);
            cr_assert_eq(u, class_block_for(n) - 8, "request %zu: usable %zu, want %zu", n, u, class_block_for(n) - 8);
            if (n != 0)
                p[n - 1] = 1;
            ma_free(p);
        }
    }
    ma_check();
}

struct remote_job {
    void **blocks;
    int n;
    unsigned arena; /* the freeing thread's */
};

static void *free_them(void *arg)
{
    struct remote_job *j = arg;
    j->arena = ma_thread_arena();
    for (int i = 0; i < j->n; i++)
        ma_free(j->blocks[i]);
    return NULL;
}

/* n blocks of `size` bytes are allocated here, freed by a thread of another
 * arena, then allocated here again until all have come back (or 4n tries).
 * Returns how many came back; *locks gets the arena lock acquisitions
 * between the frees and the end, statistics calls excluded. */
static int remote_round_trip(int n, size_t size, uint64_t *locks)
{
    unsigned me = ma_thread_arena();
    void **p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++)
        memset(p[i] = ma_malloc(size), 0x5a, size);
    /* Read before the frees: a statistics call drains the remote stacks. */
    ma_arena_stats_t before = arena_stats(me);
    /* Freed by a thread of another arena (round-robin gives the next one). */
    struct remote_job job = { p, n, me };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_them, &job), 0);
    pthread_join(t, NULL);
    cr_assert_neq(job.arena, me, "the freeing thread must use another arena");
    int found = 0;
    for (int k = 0; k < 4 * n && found < n; k++) {
        void *q = ma_malloc(size);
        for (int i = 0; i < n; i++)
            found += q == p[i];
    }
    *locks = arena_stats(me).lock_acquires - before.lock_acquires - 1;
    ma_thread_cache(0); /* merges the cache's counters into the arena */
    cr_assert_eq(arena_stats(me).remote_frees, before.remote_frees + (uint64_t)n);
    ma_check();
    free(p);
    return found;
}

/* 432-byte blocks: a bin starts at 37 of them. */
Test(tcache, remote_frees_come_back_as_a_bin_without_the_lock)
{
    /* A stack that fits the bin becomes the bin as it stands. */
    uint64_t locks;
    cr_assert_eq(remote_round_trip(30, 424, &locks), 30, "all remotely freed blocks reused by their owner");
    cr_assert_eq(locks, 0, "no lock taken: %llu", (unsigned long long)locks);
}

Test(tcache, a_remote_stack_of_up_to_32_KiB_becomes_the_bin_too)
{
    /* 60 blocks (25 KiB) are more than the bin's 37, within 32 KiB. */
    uint64_t locks;
    cr_assert_eq(remote_round_trip(60, 424, &locks), 60, "all remotely freed blocks reused by their owner");
    cr_assert_eq(locks, 0, "no lock taken: %llu", (unsigned long long)locks);
}

Test(tcache, a_remote_stack_bigger_than_a_bin_is_parked_for_the_arena)
{
    /* One thread's bin must not hoard too much: a stack beyond 32 KiB (300
     * blocks, 127 KiB) goes to the quick lists under the lock, and the
     * blocks still come back. */
    uint64_t locks;
    cr_assert_eq(remote_round_trip(300, 424, &locks), 300, "all remotely freed blocks reused by their owner");
    cr_assert_geq(locks, 1);
}

/* Blocks freed by another thread into a size their owner does not allocate
 * for a while: no bin takes that remote stack, so the owner's periodic
 * upkeep (at the end of a window of 64 locked operations that ends in a
 * refill or a flush) drains it. Seen at the owner's next allocation of the
 * size: a stack still pending would become the bin whole, its top (the
 * last block freed) served first; drained, the blocks were parked or
 * coalesced, and what comes back is not that block. No statistics call may
 * come between: one drains the stacks itself. */
Test(tcache, a_remote_stack_no_bin_takes_is_drained_by_its_owner)
{
    /* OTHER blocks of 100 bytes are 560 KB: within the first chunk, so no
     * chunk is mapped (which would drain the stacks first). */
    enum { N = 128, SIZE = 240, OTHER = 5000 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = ma_malloc(SIZE);
    struct remote_job job = { p, N, ma_thread_arena() };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_them, &job), 0);
    pthread_join(t, NULL);
    cr_assert_neq(job.arena, ma_thread_arena(), "the freeing thread must use another arena");
    /* Some 280 refills of 100-byte blocks: four windows. */
    void **q = calloc(OTHER, sizeof *q);
    for (int i = 0; i < OTHER; i++)
        q[i] = ma_malloc(100);
    void *again = ma_malloc(SIZE);
    cr_assert_neq(again, p[N - 1], "the remote stack was still pending: its top came back first");
    for (int i = 0; i < OTHER; i++)
        ma_free(q[i]);
    free(q);
    ma_free(again);
    ma_check();
}

Test(tcache, reuse_is_lifo)
{
    char *a = ma_malloc(100), *b = ma_malloc(100);
    ma_free(a);
    ma_free(b);
    cr_assert_eq(ma_malloc(100), b);
    cr_assert_eq(ma_malloc(100), a);
}

Test(tcache, bins_are_bounded)
{
    unsigned me = ma_thread_arena();
    enum { N = 10000 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = ma_malloc(24);
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    /* Whatever the cache keeps of 10000 freed 32-byte blocks is one bin,
     * grown at most to BIN_MAX (1024) blocks. */
    cr_assert_leq(arena_stats(me).in_use, 1024 * 32);
    ma_check();
}

Test(tcache, a_run_of_frees_keeps_the_latest_blocks_and_parks_the_rest_whole)
{
    /* 4000 blocks of 32 bytes through a bin that grows to 1024 (BIN_MAX)
     * as the allocations empty it. At each overflow the blocks pushed since
     * the last one become the bin's reserve and the reserve before them
     * goes to the arena, so what the cache keeps are the latest blocks
     * freed (the hot ones), 814 of them here: blocks 3186-3999. A bin cut
     * by walking would keep its oldest blocks at the bottom throughout. */
    unsigned me = ma_thread_arena();
    enum { N = 4000, BACK = 814 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = ma_malloc(24);
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    ma_check(); /* walks the bins and their reserves against their counts */
    uint64_t locks = arena_stats(me).lock_acquires;
    for (int k = 0; k < BACK; k++) {
        void *q = ma_malloc(24);
        int i = 0;
        while (i < N && p[i] != q)
            i++;
        cr_assert(i < N && i >= N - BACK, "allocation %d came from block %d", k, i);
    }
    /* The latest blocks first, then the reserve, all without the lock. */
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1);
    ma_check();
}

Test(tcache, a_bin_that_overflows_grows_within_its_bound)
{
    unsigned me = ma_thread_arena();
    enum { N = 1000, SIZE = 2000 }; /* 2048-byte blocks: bins start at 4 (BIN_MIN) */
    static void *p[N];
    size_t before = arena_stats(me).in_use;
    for (int i = 0; i < N; i++)
        p[i] = ma_malloc(SIZE);
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    /* Cached blocks count as in use: what the size holds now is what its
     * bin holds. Grown to 32 blocks (64 KiB), the bin flushes down to 16
     * and holds 16-32; without growth it would hold 4-8. */
    size_t held = arena_stats(me).in_use - before;
    cr_assert_geq(held, 16 * 2048, "the bin grew: %zu bytes held", held);
    cr_assert_leq(held, 32 * 2048, "and stayed within 64 KiB: %zu bytes held", held);
    ma_trim(); /* flushes the cache and puts the bounds back */
    for (int i = 0; i < 4; i++)
        p[i] = ma_malloc(SIZE);
    size_t live = arena_stats(me).in_use;
    for (int i = 0; i < 4; i++)
        ma_free(p[i]);
    cr_assert_eq(arena_stats(me).in_use, live, "4 blocks fit the reset bin");
    ma_check();
}

Test(tcache, counters_merge_into_the_arena)
{
    unsigned me = ma_thread_arena();
    ma_thread_cache(0);
    ma_arena_stats_t before = arena_stats(me);
    ma_thread_cache(1);
    for (int i = 0; i < 500; i++)
        ma_free(ma_malloc((size_t)(i % 50) * 8));
    cr_assert_eq(ma_thread_cache(0), 1, "caching was on");
    cr_assert_eq(ma_thread_cache(0), 0, "and is now off");
    ma_arena_stats_t after = arena_stats(me);
    cr_assert_eq(after.allocs - before.allocs, 500);
    cr_assert_eq(after.frees - before.frees, 500);
    cr_assert_eq(after.in_use, 0, "turning the cache off hands every block back");
}

/* Pops are not counted on the fast path; the arena's allocs follow from the
 * pushes and the blocks that moved between bins and arena. Refills,
 * flushes, growth and parked blocks taken back must all add up. */
Test(tcache, allocations_add_up_across_refills_and_flushes)
{
    unsigned me = ma_thread_arena();
    ma_thread_cache(0);
    ma_arena_stats_t before = arena_stats(me);
    ma_thread_cache(1);
    enum { N = 3000 };
    static void *p[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++)
            p[i] = ma_malloc((size_t)(i % 97) * 24 + 1);
        for (int i = 0; i < N; i++)
            ma_free(p[i]);
    }
    for (int i = 0; i < 1000; i++)
        ma_free(ma_malloc(200));
    ma_thread_cache(0);
    ma_arena_stats_t after = arena_stats(me);
    cr_assert_eq(after.allocs - before.allocs, 2 * N + 1000);
    cr_assert_eq(after.frees - before.frees, 2 * N + 1000);
    cr_assert_eq(after.in_use, 0);
    ma_check();
}

Test(tcache, without_cache_every_pair_takes_the_lock)
{
    unsigned me = ma_thread_arena();
    ma_thread_cache(0);
    uint64_t locks = arena_stats(me).lock_acquires;
    for (int i = 0; i < 100; i++)
        ma_free(ma_malloc(64));
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 200 + 1);
}

static void *exiting_thread(void *arg)
{
    unsigned *arena = arg;
    *arena = ma_thread_arena();
    void *p[300];
    for (int i = 0; i < 300; i++)
        p[i] = ma_malloc((size_t)(16 + i % 200));
    for (int i = 0; i < 300; i++)
        ma_free(p[i]);
    return NULL;
}

Test(tcache, thread_exit_returns_the_cache)
{
    unsigned arena;
    pthread_t t;
    pthread_create(&t, NULL, exiting_thread, &arena);
    pthread_join(t, NULL);
    ma_arena_stats_t s = arena_stats(arena);
    cr_assert_eq(s.in_use, 0, "the exiting thread's cached blocks went back");
    cr_assert_geq(s.allocs, 300);
    cr_assert_eq(s.allocs, s.frees);
    ma_check();
}

Test(tcache, many_threads_leave_nothing_cached)
{
    for (int round = 0; round < 50; round++) {
        pthread_t t[8];
        unsigned a[8];
        for (int i = 0; i < 8; i++)
            pthread_create(&t[i], NULL, exiting_thread, &a[i]);
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
    }
    ma_thread_cache(0);
    ma_stats_t s;
    s.size = sizeof s;
    ma_stats_get(&s);
    cr_assert_eq(s.in_use, 0);
    ma_check();
}

static void expect_abort(const char *what, const char *message)
{
    char out[4096];
    char *argv[] = { "misuse", (char *)what, NULL };
    char *env[] = { "MEMALLOC_CHECK=0", NULL }; /* the cache is off in check mode */
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: status %#x: %s", what, st, out);
    cr_assert(strstr(out, message) != NULL, "%s: %s", what, out);
}

Test(tcache, double_free_of_a_cached_block) { expect_abort("double-free-small", "free(): double free detected"); }
Test(tcache, double_free_of_a_block_in_a_bins_reserve) { expect_abort("double-free-reserve", "free(): double free detected"); }
Test(tcache, overwritten_link_caught_on_pop) { expect_abort("corrupt-link", "malloc(): corrupted free list at 0x"); }
Test(tcache, overwritten_end_of_a_bin_caught_on_pop) { expect_abort("corrupt-last-link", "malloc(): corrupted free list at 0x"); }
Test(tcache, check_walks_the_cache) { expect_abort("cache-link-to-stack", "ma_check(): thread cache holds a pointer outside every chunk"); }
/* Another thread's cache: verified by its owner at the refill after the
 * check (the check itself returned, which the output shows first). */
Test(tcache, check_reaches_other_threads_caches)
{
    expect_abort("cache-link-other-thread", "ma_check(): thread cache holds a pointer outside every chunk");
}

/* Two threads on arena 0 of two, one of which keeps its lock busy with
 * ma_check while the other's locked operations wait for it (tests/probe.c,
 * move: the waits do not depend on the two getting a CPU each, so the case
 * holds on a loaded machine). A thread moves only to an arena with at
 * least two fewer threads: the waiting one goes when arena 1 is empty, and
 * does not while a third thread is counted there. */
static void move_case(const char *stay, const char *want)
{
    char out[4096];
    char *argv[] = { "move", (char *)stay, NULL };
    char *env[] = { "MEMALLOC_ARENAS=2", NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, want) != NULL, "stay=%s: want \"%s\", got %s", stay, want, out);
}

Test(tcache, a_contended_thread_moves_only_to_an_emptier_arena, .timeout = 60)
{
    move_case("0", "before=2/0 moved=1 after=0/0");
    move_case("1", "before=2/1 moved=0 after=0/0");
}

/* An arena whose last thread has exited (tests/probe.c, orphan): it keeps
 * the pages of its free blocks for the next thread (remote frees that
 * drain it discard nothing), and discards them once it has had no thread
 * for an interval; a remote free into it drains at
 * once (one lock each), a thread that joins it again owns the stacks
 * again (the bound goes back up), and once everything is freed the decay
 * passes leave it no more than its reserve chunk. */
Test(tcache, an_arena_its_last_thread_left_gives_back_what_it_held)
{
    char out[4096];
    char *argv[] = { "orphan", NULL };
    char *env[] = { "MEMALLOC_ARENAS=2", "MEMALLOC_RETAIN_MS=100", NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert_eq(st, 0, "%s", out);
    unsigned long long threads, orphan_locks, joined_locks, in_use;
    int kept, kept_remote, resident;
    size_t chunks;
    cr_assert_eq(sscanf(out,
                        "threads=%llu kept=%d kept_remote=%d hole_resident=%d orphan_locks=%llu joined_locks=%llu "
                        "chunks=%zu in_use=%llu",
                        &threads, &kept, &kept_remote, &resident, &orphan_locks, &joined_locks, &chunks, &in_use),
                 8, "%s", out);
    cr_assert_eq(threads, 0, "%s", out);
    cr_assert_eq(kept, 1, "the holes stay resident for the next thread: %s", out);
    cr_assert_eq(kept_remote, 1, "remote frees that drain the threadless arena discard nothing: %s", out);
    cr_assert_eq(resident, 0, "threadless for an interval, the arena discarded the holes' pages: %s", out);
    cr_assert_geq(orphan_locks, 100, "each remote free drained the threadless arena: %s", out);
    cr_assert_leq(joined_locks, 10, "with a thread again, remote frees wait for it: %s", out);
    cr_assert_leq(chunks, 1, "only the reserve chunk is kept: %s", out);
    cr_assert_eq(in_use, 0, "%s", out);
}

/* A thread that starts after another exited takes over the exited one's
 * arena, which kept its memory, instead of the next arena round-robin. */
static void *arena_user(void *arg)
{
    void *blocks[256];
    for (int i = 0; i < 256; i++)
        memset(blocks[i] = ma_malloc(4000), 1, 4000);
    for (int i = 0; i < 256; i++)
        ma_free(blocks[i]);
    *(unsigned *)arg = ma_thread_arena();
    return NULL;
}

Test(tcache, a_new_thread_takes_over_the_arena_an_exited_one_left)
{
    unsigned first, second, third;
    ma_free(ma_malloc(16)); /* this thread's arena */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, arena_user, &first), 0);
    pthread_join(t, NULL);
    cr_assert_eq(arena_stats(first).threads, 0);
    cr_assert_gt(arena_stats(first).mapped, 0, "the exited thread's arena kept its memory");
    cr_assert_eq(pthread_create(&t, NULL, arena_user, &second), 0);
    pthread_join(t, NULL);
    cr_assert_eq(second, first, "the next thread took over arena %u (it got %u)", first, second);
    /* Round-robin would have given it another: with the arena left to
     * nobody, a third thread takes it again. */
    cr_assert_eq(pthread_create(&t, NULL, arena_user, &third), 0);
    pthread_join(t, NULL);
    cr_assert_eq(third, first);
    ma_check();
}

/* n malloc/free pairs of 20 KiB blocks aligned to 64 bytes: an aligned
 * request is carved under the arena lock, never taken from a bin, so each
 * counts as a locked operation of another size. */
static void uncached_pairs(int n)
{
    for (int i = 0; i < n; i++) {
        volatile char *q = ma_aligned_alloc(64, 20000);
        q[0] = 1;
        ma_free((void *)q);
    }
}

/* A size the thread no longer allocates: once the thread has done enough
 * locked operations of other sizes (TC_IDLE_OPS, 256), its bin goes back to
 * the arena as idle (parked there until the arena needs the space). */
Test(tcache, the_bin_of_a_size_no_longer_allocated_goes_back_to_the_arena)
{
    unsigned me = ma_thread_arena();
    enum { N = 64 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = ma_malloc(100);
    for (int i = 0; i < N; i++)
        ma_free(p[i]); /* into the bin, which holds them all */
    uint64_t before = arena_stats(me).idle_releases;
    /* 600 locked operations of another size, kept so that no free flushes
     * a bin meanwhile (a flush sweeps too): aligned requests are carved
     * under the lock. */
    enum { LOCKED = 600 };
    static void *held[LOCKED];
    for (int i = 0; i < LOCKED; i++)
        held[i] = ma_aligned_alloc(64, 20000);
    cr_assert_eq(arena_stats(me).idle_releases, before, "only a refill or a flush sweeps");
    ma_free(ma_malloc(3000)); /* a refill of another size sweeps */
    cr_assert_geq(arena_stats(me).idle_releases, before + N, "the 100-byte bin went back to the arena");
    for (int i = 0; i < LOCKED; i++)
        ma_free(held[i]);
    ma_check();
    void *again = ma_malloc(100); /* the size still works: a fresh refill */
    cr_assert_not_null(again);
    ma_free(again);
    ma_check();
}

/* Allocates n blocks of `size` bytes into p and sets [*lo, *hi) to the
 * span of memory they cover. */
static void malloc_spanning(void **p, int n, size_t size, char **lo, char **hi)
{
    *lo = NULL;
    *hi = NULL;
    for (int i = 0; i < n; i++) {
        p[i] = ma_malloc(size);
        cr_assert_not_null(p[i]);
        if (*lo == NULL || (char *)p[i] < *lo)
            *lo = p[i];
        if ((char *)p[i] + size > *hi)
            *hi = (char *)p[i] + size;
    }
}

/* What thread caches give back is parked in the arena uncoalesced, and
 * coalesced when the arena needs the space: before a big free block (here
 * the rest of the chunk) is cut for another size, so that size lands in the
 * memory the first one left. */
Test(tcache, parked_blocks_are_reused_before_a_big_free_block_is_cut)
{
    if (check_mode())
        return; /* check mode caches nothing: every free coalesces */
    enum { N = 8192, M = 256 }; /* 8192 208-byte blocks: 1.6 MiB, most of it parked */
    static void *p[N], *q[M];
    char *lo, *hi;
    malloc_spanning(p, N, 200, &lo, &hi);
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    unsigned inside = 0;
    for (int k = 0; k < M; k++) {
        q[k] = ma_malloc(3000);
        cr_assert_not_null(q[k]);
        inside += (char *)q[k] >= lo && (char *)q[k] < hi;
    }
    cr_assert_geq(inside, M / 2, "%u of %d 3000-byte blocks in the space the 200-byte ones left", inside, M);
    for (int k = 0; k < M; k++)
        ma_free(q[k]);
    ma_check();
}

/* When a big cut must wait for parked blocks (the test above), the arena
 * coalesces the biggest parked classes first and stops once a free block
 * fits: here a run of 2000-byte blocks serves the first 20000-byte
 * request, and the crowd of 48-byte blocks, which coalescing would cost
 * the most per byte, stays parked for their own size. At the next such
 * wait, a class no refill has asked for since the one before is coalesced
 * whole: blocks of sizes the program has left do not stay parked between
 * the big ones for good. */
Test(tcache, a_big_cut_coalesces_the_biggest_parked_blocks_first)
{
    if (check_mode())
        return; /* check mode caches nothing: every free coalesces */
    enum { BIG = 1000, SMALL = 4000, M = 64 }; /* 2 MB and 256 KB, most of it parked */
    static void *b[BIG], *s[SMALL];
    static void *q[M];
    char *lo, *hi;
    malloc_spanning(b, BIG, 2000, &lo, &hi);
    for (int i = 0; i < SMALL; i++) {
        s[i] = ma_malloc(48);
        cr_assert_not_null(s[i]);
    }
    for (int i = 0; i < BIG; i++)
        ma_free(b[i]);
    for (int i = 0; i < SMALL; i++)
        ma_free(s[i]);
    size_t parked = my_stats().free_blocks;
    cr_assert_geq(parked, (BIG + SMALL) / 2, "parked one by one: %zu free blocks", parked);
    q[0] = ma_malloc(20000);
    cr_assert((char *)q[0] >= lo && (char *)q[0] < hi, "the first 20000-byte block is in the space the 2000-byte ones left");
    size_t after = my_stats().free_blocks;
    cr_assert_geq(after, SMALL / 2, "the 48-byte blocks stay parked: %zu free blocks, %zu before", after, parked);
    /* More big cuts, and no 48-byte request between them. */
    for (int k = 1; k < M; k++) {
        q[k] = ma_malloc(20000);
        cr_assert_not_null(q[k]);
    }
    size_t later = my_stats().free_blocks;
    cr_assert_lt(later, SMALL / 4, "the 48-byte blocks no refill asked for were coalesced: %zu free blocks", later);
    for (int k = 0; k < M; k++)
        ma_free(q[k]);
    ma_check();
}

/* realloc's growth coalesces a crowd of small parked blocks only once it
 * has cut 64 bytes per parked block from big free blocks (GROW_PATIENCE,
 * arenas/block.c): one growth that moves leaves them parked; growth that
 * adds up to that much coalesces them. free_blocks counts parked blocks
 * one by one, and a run of them coalesced as one. */
Test(tcache, realloc_growth_coalesces_parked_blocks_once_it_has_cut_enough)
{
    if (check_mode())
        return; /* check mode caches nothing: every free coalesces */
    enum { N = 8192, MOVES = 24, GROWN = 60000 }; /* 8192 208-byte blocks: 1.6 MiB, most of it parked */
    static void *p[N];
    void *x[MOVES], *y[MOVES];
    for (int i = 0; i < N; i++) {
        p[i] = ma_malloc(200);
        cr_assert_not_null(p[i]);
    }
    /* Pairs of neighbours from one bin: x[k] cannot grow in place. A pair
     * that is not adjacent is kept allocated and another drawn, a bounded
     * number of times. */
    for (int k = 0; k < MOVES; k++) {
        int tries = 0;
        do {
            cr_assert_lt(tries++, 64, "no adjacent pair of 3000-byte blocks in 64 draws");
            x[k] = ma_malloc(3000);
            y[k] = ma_malloc(3000);
            cr_assert(x[k] != NULL && y[k] != NULL);
        } while ((char *)y[k] != (char *)x[k] + ma_usable_size(x[k]) + 8);
    }
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    size_t parked = my_stats().free_blocks;
    cr_assert_geq(parked, N / 2, "the 200-byte blocks are parked one by one: %zu free blocks", parked);

    fill(x[0], 3000, 1);
    void *moved = ma_realloc(x[0], GROWN);
    cr_assert(moved != NULL && moved != x[0], "a block with an allocated neighbour moves to grow");
    cr_assert(intact(moved, 3000, 1));
    x[0] = moved;
    size_t after_one = my_stats().free_blocks;
    cr_assert_geq(after_one + 64, parked, "one growth of 60 KB left them parked: %zu free blocks, %zu before", after_one,
                  parked);

    /* 24 growths of 60 KB cut 1.4 MB, more than 64 bytes for each of the
     * parked blocks: at some point they were coalesced. */
    for (int k = 1; k < MOVES; k++) {
        moved = ma_realloc(x[k], GROWN);
        cr_assert(moved != NULL && moved != x[k], "growth %d moved", k);
        x[k] = moved;
    }
    size_t after_all = my_stats().free_blocks;
    cr_assert_lt(after_all, parked / 4, "enough growth coalesced them: %zu free blocks, %zu before", after_all, parked);
    for (int k = 0; k < MOVES; k++) {
        ma_free(x[k]);
        ma_free(y[k]);
    }
    ma_check();
}

/* Every small size, on a dirty block between two live neighbours: calloc
 * zeroes all n bytes and nothing of the neighbours (the smallest sizes are
 * zeroed in whole words, src/memalloc.c zero_small). The bin hands the
 * freed block straight back. */
Test(tcache, calloc_of_small_sizes_zeroes_exactly_its_block)
{
    for (size_t n = 1; n <= 80; n++) {
        unsigned char *a = ma_malloc(n), *b = ma_malloc(n), *c = ma_malloc(n);
        cr_assert(a != NULL && b != NULL && c != NULL);
        fill(a, ma_usable_size(a), 1);
        memset(b, 0xa5, ma_usable_size(b));
        fill(c, ma_usable_size(c), 3);
        ma_free(b);
        unsigned char *z = ma_calloc(1, n);
        cr_assert_not_null(z);
        if (!check_mode())
            cr_assert_eq(z, b, "the bin gives the dirty block back to calloc(1, %zu)", n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(z[i], 0, "byte %zu of calloc(1, %zu)", i, n);
        cr_assert(intact(a, ma_usable_size(a), 1) && intact(c, ma_usable_size(c), 3), "neighbours of calloc(1, %zu)", n);
        ma_check();
        ma_free(a);
        ma_free(z);
        ma_free(c);
    }
}

/* The thread's own bins have the same patience: a bin returned to the
 * arena as idle (no refill in TC_IDLE_OPS, 256, of the thread's locked
 * operations) and then allocated from again waits twice as long before the
 * next return, so the same pause leaves its blocks in the bin, where the
 * next allocation finds one without the lock. */
Test(tcache, a_bin_allocated_from_after_an_idle_return_waits_longer)
{
    if (check_mode())
        return; /* check mode caches nothing */
    unsigned me = ma_thread_arena();
    enum { N = 16, LOCKED = 400 }; /* 112-byte blocks: the bin holds 36; 256 < 400 < 512 */
    void *p[N];
    static void *held[2][LOCKED]; /* freed at the end: their frees would be locked operations too */
    uint64_t locks[2];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++)
            p[i] = ma_malloc(100);
        for (int i = 0; i < N; i++)
            ma_free(p[i]);
        for (int i = 0; i < LOCKED; i++)
            held[round][i] = ma_aligned_alloc(64, 20000);
        ma_free(ma_malloc(3000 + 1000 * round)); /* a refill of a size not yet cached sweeps idle bins */
        uint64_t before = arena_stats(me).lock_acquires;
        void *q = ma_malloc(100);
        locks[round] = arena_stats(me).lock_acquires - before - 1;
        ma_free(q);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < LOCKED; i++)
            ma_free(held[round][i]);
    ma_check();
    cr_assert_eq(locks[0], 1, "the first pause returned the 100-byte bin: its next allocation refilled it");
    cr_assert_eq(locks[1], 0, "the same pause after the bin was used again left it whole (%llu)", (unsigned long long)locks[1]);
}

/* Freeing a batch of medium blocks (8-256 KiB) bigger than the thread's
 * medium budget (4 MiB) takes the lock once per half budget: a free that
 * finds the budget spent hands the biggest classes back to the arena
 * until the bins hold at most half of it, instead of taking the lock for
 * every block past the budget. */
Test(tcache, a_batch_of_medium_frees_past_the_budget_takes_few_locks)
{
    if (check_mode())
        return;
    unsigned me = ma_thread_arena();
    enum { N = 600 };
    static void *p[N];
    size_t bytes = 0;
    for (int i = 0; i < N; i++) {
        size_t n = 9000 + (size_t)i * 7919 % 120000; /* every medium bin from 8 to 128 KiB */
        cr_assert_not_null(p[i] = ma_malloc(n));
        memset(p[i], 0x5a, n);
        bytes += n;
    }
    cr_assert_gt(bytes, (size_t)30 << 20, "%zu bytes: many budgets' worth", bytes);
    uint64_t before = arena_stats(me).lock_acquires;
    for (int i = 0; i < N; i++)
        ma_free(p[i]);
    uint64_t locks = arena_stats(me).lock_acquires - before - 1;
    /* Each trim frees 2 MiB or more: at most 16 of them for 32 MiB, plus
     * the overflows of single bins, each of which parks half the bin. */
    cr_assert_leq(locks, N / 6, "%llu locked operations for %d frees", (unsigned long long)locks, N);
    ma_check();
}

/* A thread that frees a long batch of one size and then allocates that size
 * again (bench/threadtest's rounds) is not idle in between: its own flushes
 * do not count, so the batch stays parked for the next round. */
Test(tcache, a_size_freed_in_a_long_batch_stays_parked_for_its_next_round)
{
    unsigned me = ma_thread_arena();
    enum { N = 40000 }; /* 64-byte requests: ~80 flushes to free them */
    void **p = calloc(N, sizeof *p);
    cr_assert_not_null(p);
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < N; i++)
            cr_assert_not_null(p[i] = ma_malloc(64));
        for (int i = 0; i < N; i++)
            ma_free(p[i]);
    }
    ma_arena_stats_t s = arena_stats(me);
    cr_assert_eq(s.idle_releases, 0, "%llu blocks were coalesced", (unsigned long long)s.idle_releases);
    cr_assert_gt(s.lock_acquires, 3 * 256, "the rounds took more locked operations than TC_IDLE_OPS");
    free(p);
    ma_check();
}

/* realloc's small path (a small block of the thread's own arena, sizes up
 * to 1 KiB): a size the block fits keeps it; growth next to an allocated
 * block moves through the bins without the lock and sends the old block to
 * its bin; a shrink to half or more stays in place and gives the tail
 * back; a shrink to less than half moves to the bin of the new size when
 * that holds a block (no lock, the old block to its bin), and otherwise
 * stays in place too. */
Test(tcache, realloc_of_a_small_block_keeps_it_moves_it_or_shrinks_it_in_place)
{
    unsigned me = ma_thread_arena();
    ma_free(ma_malloc(400)); /* warm the bin the growth moves to */
    char *p = ma_malloc(100); /* from a bin: its neighbour is a cached block */
    fill(p, 100, 5);
    uint64_t locks = arena_stats(me).lock_acquires;
    char *q = ma_realloc(p, 95);
    cr_assert_eq(q, p, "95 bytes fit the block of 100 with less than an eighth to spare");
    char *r = ma_realloc(q, 400);
    /* Only the statistics call itself takes the lock. */
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1);
    cr_assert_neq(r, p, "the cached neighbour forces a move");
    cr_assert(intact(r, 95, 5));
    char *again = ma_malloc(100);
    cr_assert_eq(again, p, "the old block went back to its bin");
    ma_free(again);
    fill(r, 400, 6);
    ma_free(ma_malloc(300)); /* the bin of the new size holds a block */
    char *s = ma_realloc(r, 300);
    cr_assert_eq(s, r, "a shrink to half or more stays in place");
    cr_assert_lt(ma_usable_size(s), 400 - 400 / 8, "the tail went back (usable %zu)", ma_usable_size(s));
    cr_assert(intact(s, 300, 6));
    ma_free(ma_malloc(40)); /* the bin of the next shrink's size holds a block */
    locks = arena_stats(me).lock_acquires;
    char *t = ma_realloc(s, 40);
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1, "a shrink that moves takes no lock");
    cr_assert_neq(t, s, "a shrink to less than half moves to the bin of the new size");
    cr_assert(intact(t, 40, 6));
    char *back = ma_malloc(300);
    cr_assert_eq(back, s, "the old block went back to its bin");
    ma_free(back);
    /* No block of 456 bytes was freed here: that bin is empty. */
    char *v = ma_malloc(1000);
    fill(v, 1000, 7);
    char *w = ma_realloc(v, 456);
    cr_assert_eq(w, v, "with the bin of the new size empty, a shrink to less than half stays in place");
    cr_assert_lt(ma_usable_size(w), 500, "the tail went back (usable %zu)", ma_usable_size(w));
    cr_assert(intact(w, 456, 7));
    ma_free(w);
    ma_free(t);
    ma_check();
}

Test(tcache, a_block_moved_by_realloc_growth_grows_in_place_next)
{
    char *p = ma_malloc(1500); /* from a bin: its neighbour is a cached block */
    fill(p, 1500, 7);
    char *q = ma_realloc(p, 3000);
    cr_assert_neq(q, p, "the cached neighbour forces a move");
    cr_assert(intact(q, 1500, 7));
    fill(q, 3000, 8);
    char *r = ma_realloc(q, 5000);
    cr_assert_eq(r, q, "the moved block grew in place");
    cr_assert(intact(r, 3000, 8));
    ma_free(r);
    ma_check();
}

/* A medium block that moves to grow goes back to the arena, not to a
 * medium bin: growing vectors leave behind blocks of sizes they will not
 * ask for again, which the bins would hold up to their budget while the
 * arena could coalesce them for the next growth. The arena counts a block
 * in a bin as in use, so its in-use bytes grow by the difference. */
Test(tcache, a_medium_block_moved_by_realloc_growth_goes_back_to_the_arena)
{
    if (check_mode())
        return; /* check mode caches nothing */
    /* A block whose neighbour is allocated cannot grow in place. */
    enum { TRIES = 16 };
    char *p[TRIES], *wall[TRIES];
    int k = 0;
    for (;; k++) {
        cr_assert_lt(k, TRIES, "no adjacent pair of 20000-byte blocks in %d draws", TRIES);
        p[k] = ma_malloc(20000);
        wall[k] = ma_malloc(20000);
        cr_assert(p[k] != NULL && wall[k] != NULL);
        if (wall[k] == p[k] + ma_usable_size(p[k]) + 8)
            break;
    }
    fill(p[k], 20000, 5);
    size_t before = my_stats().in_use;
    char *q = ma_realloc(p[k], 60000);
    cr_assert_neq(q, p[k], "the allocated neighbour forces a move");
    cr_assert(intact(q, 20000, 5));
    size_t after = my_stats().in_use;
    cr_assert_lt(after - before, 60000 - 16000, "in use grew by %zu: the 20000-byte block left it", after - before);
    ma_free(q);
    for (int i = 0; i <= k; i++) {
        if (i < k)
            ma_free(p[i]);
        ma_free(wall[i]);
    }
    ma_check();
}

/* Growth to 1 KiB or less that cannot happen in place moves through the
 * bins: no lock, when the bin of the new size has a block. */
Test(tcache, a_small_block_moved_by_realloc_growth_takes_no_lock)
{
    unsigned me = ma_thread_arena();
    ma_free(ma_malloc(1000)); /* warm the bins of both sizes */
    char *p = ma_malloc(100); /* from a bin: its neighbour is a cached block */
    fill(p, 100, 9);
    uint64_t locks = arena_stats(me).lock_acquires;
    char *q = ma_realloc(p, 1000);
    /* Only the statistics call itself takes the lock. */
    cr_assert_eq(arena_stats(me).lock_acquires, locks + 1);
    cr_assert_neq(q, p, "the cached neighbour forces a move");
    cr_assert(intact(q, 100, 9));
    ma_free(q);
    ma_check();
}

Test(tcache, a_refill_does_not_carve_blocks_of_the_next_class_up)
{
    /* 48-byte holes between allocated 48-byte blocks, in the free lists
     * (ma_trim coalesces what the cache held), and no free 32-byte block.
     * A bin of 32-byte blocks refilled from those holes would get 48-byte
     * blocks (a remainder of 16 bytes cannot be a block), which serve the
     * next class up instead, and go back to the holes when that bin
     * overflows: a Redis server spent most of its time in that loop. */
    enum { N = 200 };
    static void *keep[N], *hole[N];
    for (int i = 0; i < N; i++) {
        hole[i] = ma_malloc(40);
        keep[i] = ma_malloc(40);
    }
    for (int i = 0; i < N; i++)
        ma_free(hole[i]);
    ma_trim();
    unsigned holes = 0;
    for (int i = 0; i < N; i++) {
        char *h = hole[i];
        for (int j = 0; j < N; j++)
            if ((char *)keep[j] == h + 48 || (char *)keep[j] == h - 48)
                holes++;
    }
    cr_assert_gt(holes, N, "the holes lie between kept blocks (%u neighbours)", holes);
    for (int i = 0; i < 300; i++) {
        void *p = ma_malloc(24);
        cr_assert_eq(ma_usable_size(p), 24, "malloc(24) #%d got a block of %zu usable bytes", i, ma_usable_size(p));
    }
    ma_check();
}

/* A bin given back to the arena is parked as one segment and released (here
 * by ma_trim) a run of neighbours at a time (blocks carved in one batch and
 * freed in order lie next to each other in the bin's list, in either
 * direction). Whatever the order, and around
 * blocks that stay allocated, every byte comes back: with everything freed
 * and trimmed, nothing is left in use, and the blocks kept meanwhile are
 * intact. order 0: freed first to last (the bin lists them last to first);
 * 1: last to first; 2: every other one, first to last, the rest later. */
static void release_in_order(int order)
{
    unsigned me = ma_thread_arena();
    enum { N = 32, SIZE = 100 };
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = ma_malloc(SIZE);
        fill(p[i], SIZE, (unsigned)i);
    }
    int adjacent = 0;
    for (int i = 0; i + 1 < N; i++)
        adjacent += p[i + 1] == p[i] + 112;
    cr_assert_geq(adjacent, N / 2, "the blocks were carved next to each other (%d pairs)", adjacent);
    int freed = 0;
    for (int k = 0; k < N; k++) {
        int i = order == 1 ? N - 1 - k : k;
        if (order == 2 && i % 2 == 1)
            continue;
        ma_free(p[i]);
        p[i] = NULL;
        freed++;
    }
    uint64_t before = arena_stats(me).idle_releases;
    uncached_pairs(600);
    ma_free(ma_malloc(3000)); /* a refill, which sweeps the idle bin */
    cr_assert_geq(arena_stats(me).idle_releases, before + (uint64_t)freed, "the bin was released");
    ma_check();
    for (int i = 0; i < N; i++) {
        if (p[i] != NULL) {
            cr_assert(intact(p[i], SIZE, (unsigned)i), "kept block %d", i);
            ma_free(p[i]);
        }
    }
    ma_trim();
    ma_check();
    cr_assert_eq(arena_stats(me).in_use, 0, "%zu bytes still in use", arena_stats(me).in_use);
}

Test(tcache, runs_released_first_to_last_give_every_byte_back) { release_in_order(0); }
Test(tcache, runs_released_last_to_first_give_every_byte_back) { release_in_order(1); }
Test(tcache, runs_around_kept_blocks_give_every_byte_back) { release_in_order(2); }
