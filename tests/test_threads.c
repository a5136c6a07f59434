/*
 * test_threads.c - many threads at once, and blocks freed by threads of
 * other arenas: contents stay intact, every free reaches the owning arena,
 * and the owner (not the freeing thread's arena) reuses the block; large
 * blocks cut and assembled from one cache by several threads at once; the
 * heap profiler's live set, filled by some threads while others take
 * samples out of it without its lock. Also built with ThreadSanitizer by
 * `make test`.
 */
#include <pthread.h>
#include <sched.h>

#include "testutil.h"

#include "../src/config.h"
#include "../src/prof.h"

/* ---- many threads, thread-local churn ---- */

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    enum { SLOTS = 64 };
    char *p[SLOTS] = { 0 };
    size_t n[SLOTS] = { 0 };
    uint64_t r = seed * 2654435761u + 1;
    for (int i = 0; i < 20000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)(r >> 33) % SLOTS;
        if (p[k] != NULL) {
            if (!intact(p[k], n[k], seed + k))
                return (void *)1;
            ma_free(p[k]);
        }
        n[k] = (size_t)(r >> 20) % 2000;
        p[k] = ma_malloc(n[k]);
        if (p[k] == NULL)
            return (void *)1;
        fill(p[k], n[k], seed + k);
    }
    for (int k = 0; k < SLOTS; k++) {
        if (p[k] != NULL && !intact(p[k], n[k], seed + k))
            return (void *)1;
        ma_free(p[k]);
    }
    return NULL;
}

/* Runs fn((void *)i) in n threads at once (i = 0 .. n - 1, n <= 16) and
 * requires each to return NULL (what it saw was intact). */
static void run_threads(void *(*fn)(void *), unsigned n)
{
    pthread_t t[16];
    cr_assert_leq(n, 16);
    for (uintptr_t i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, fn, (void *)i), 0);
    for (unsigned i = 0; i < n; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_null(ret, "thread %u saw corrupted contents", i);
    }
}

Test(threads, sixteen_threads_churn_with_intact_contents, .timeout = 300)
{
    run_threads(churn, 16);
    ma_check();
    for (unsigned a = 0; a < ma_arena_count(); a++)
        cr_assert_eq(arena_stats(a).in_use, 0, "arena %u holds nothing", a);
}

/* ---- producer / consumer across arenas ---- */

#define RING 256
#define ITEMS 20000

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *items[RING];
    size_t sizes[RING];
    unsigned head, tail;
    int round_done;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, { 0 }, 0, 0, 0 };

static unsigned producer_arena, consumer_arena;
static char *first_round[ITEMS];
static int reused_own, reused_same_address, produced_bad;
static size_t mapped_before_round2, mapped_after_round2;
static pthread_barrier_t ready_barrier, round_barrier;

static void push(char *p, size_t n)
{
    pthread_mutex_lock(&q.lock);
    while (q.head - q.tail == RING)
        pthread_cond_wait(&q.cond, &q.lock);
    q.items[q.head % RING] = p;
    q.sizes[q.head % RING] = n;
    q.head++;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
}

static char *pop(size_t *n)
{
    pthread_mutex_lock(&q.lock);
    while (q.head == q.tail)
        pthread_cond_wait(&q.cond, &q.lock);
    char *p = q.items[q.tail % RING];
    *n = q.sizes[q.tail % RING];
    q.tail++;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    return p;
}

static void *producer(void *arg)
{
    (void)arg;
    producer_arena = ma_thread_arena();
    pthread_barrier_wait(&ready_barrier);
    for (int i = 0; i < ITEMS; i++) {
        size_t n = 16 + (size_t)(i * 37) % 1000;
        char *p = ma_malloc(n);
        if (ma_arena_of(p) != (int)producer_arena)
            produced_bad++;
        fill(p, n, (unsigned)i);
        first_round[i] = p;
        push(p, n);
    }
    pthread_barrier_wait(&round_barrier); /* consumer freed all of them */
    /* Round two: the owner reuses what the other arena's thread freed. */
    ma_arena_stats_t st;
    ma_arena_stats_get(producer_arena, &st);
    mapped_before_round2 = st.mapped;
    char *again[64];
    for (int i = 0; i < 64; i++) {
        again[i] = ma_malloc(16 + (size_t)(i * 37) % 1000);
        reused_own += ma_arena_of(again[i]) == (int)producer_arena;
        for (int j = 0; j < ITEMS; j++)
            if (first_round[j] == again[i]) {
                reused_same_address++;
                break;
            }
    }
    ma_arena_stats_get(producer_arena, &st);
    mapped_after_round2 = st.mapped;
    for (int i = 0; i < 64; i++)
        ma_free(again[i]);
    return NULL;
}

static void *consumer(void *arg)
{
    int *bad = arg;
    consumer_arena = ma_thread_arena();
    pthread_barrier_wait(&ready_barrier);
    for (int i = 0; i < ITEMS; i++) {
        size_t n;
        char *p = pop(&n);
        if (!intact(p, n, (unsigned)i))
            (*bad)++;
        ma_free(p);
    }
    pthread_barrier_wait(&round_barrier);
    return NULL;
}

Test(threads, producer_consumer_frees_route_to_the_owner, .timeout = 300)
{
    cr_assert_geq(ma_arena_count(), 2, "needs two arenas (make test sets MEMALLOC_ARENAS=4)");
    pthread_barrier_init(&ready_barrier, NULL, 2);
    pthread_barrier_init(&round_barrier, NULL, 2);
    int bad = 0;
    pthread_t p, c;
    /* Round-robin assignment gives consecutive new threads different arenas. */
    pthread_create(&p, NULL, producer, NULL);
    pthread_create(&c, NULL, consumer, &bad);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    cr_assert_neq(producer_arena, consumer_arena);
    cr_assert_eq(bad, 0, "consumer saw corrupted blocks");
    cr_assert_eq(produced_bad, 0);
    ma_arena_stats_t ps = arena_stats(producer_arena), cs = arena_stats(consumer_arena);
    cr_assert_eq(ps.remote_frees, ITEMS, "every consumer free went to the producer's arena");
    cr_assert_eq(ps.frees, ITEMS + 64);
    cr_assert_eq(ps.in_use, 0);
    cr_assert_eq(ps.remote_pending, 0);
    cr_assert_eq(cs.allocs, 0, "the consumer's arena served nothing");
    cr_assert_eq(cs.frees, 0, "and received no blocks");
    cr_assert_eq(reused_own, 64, "owner allocates from its own arena");
    cr_assert_gt(reused_same_address, 0, "owner hands out blocks freed remotely again");
    cr_assert_eq(mapped_after_round2, mapped_before_round2, "round two fits in the recycled memory");
    cr_assert_gt(mapped_before_round2, 0);
    ma_check();
}

/* ---- a ring of threads, each freeing its neighbour's blocks ---- */

#define RING_THREADS 8
#define BATCH 2000

static char *volatile handoff[RING_THREADS][BATCH];
static pthread_barrier_t ring_barrier;

static void *ring_member(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    unsigned left = (me + RING_THREADS - 1) % RING_THREADS;
    int bad = 0;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < BATCH; i++) {
            size_t n = 8 + (size_t)(i * 13 + me) % 600;
            char *p = ma_malloc(n);
            fill(p, n, me * 1000 + (unsigned)i);
            handoff[me][i] = p;
        }
        pthread_barrier_wait(&ring_barrier);
        for (int i = 0; i < BATCH; i++) {
            size_t n = 8 + (size_t)(i * 13 + left) % 600;
            if (!intact(handoff[left][i], n, left * 1000 + (unsigned)i))
                bad++;
            ma_free(handoff[left][i]);
        }
        pthread_barrier_wait(&ring_barrier);
    }
    return (void *)(uintptr_t)bad;
}

Test(threads, ring_of_cross_arena_frees, .timeout = 300)
{
    pthread_barrier_init(&ring_barrier, NULL, RING_THREADS);
    pthread_t t[RING_THREADS];
    for (uintptr_t i = 0; i < RING_THREADS; i++)
        pthread_create(&t[i], NULL, ring_member, (void *)i);
    for (int i = 0; i < RING_THREADS; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        cr_assert_null(bad, "thread %d saw corrupted blocks", i);
    }
    ma_check();
    uint64_t remote = 0;
    for (unsigned a = 0; a < ma_arena_count(); a++) {
        ma_arena_stats_t s = arena_stats(a);
        cr_assert_eq(s.in_use, 0);
        cr_assert_eq(s.allocs, s.frees, "arena %u: every block came back", a);
        remote += s.remote_frees;
    }
    cr_assert_gt(remote, 0, "some frees crossed arenas");
}

/* ---- owners exiting while their blocks are freed ---- */

/* Each round, four threads allocate blocks, hand them over and exit at
 * once, while this thread and a helper free them: the last thread of an
 * arena leaves it (draining its stacks, coalescing what is parked) while
 * remote frees are being pushed onto it, and later frees find it
 * threadless and drain its stacks themselves. Under ThreadSanitizer too
 * (make test-tsan). */
#define OWNERS 4
#define OWNED 1500

static char *owned[OWNERS][OWNED];
static pthread_barrier_t owned_barrier;

static void *owner(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < OWNED; i++) {
        size_t n = 8 + (size_t)(i * 29 + me) % 3000;
        owned[me][i] = ma_malloc(n);
        fill(owned[me][i], n, me * 7919 + (unsigned)i);
    }
    pthread_barrier_wait(&owned_barrier);
    return NULL; /* exits while the blocks are being freed */
}

static void *owned_freer(void *arg)
{
    unsigned half = (unsigned)(uintptr_t)arg;
    int bad = 0;
    for (unsigned t = 0; t < OWNERS; t++)
        for (int i = (int)half; i < OWNED; i += 2) {
            size_t n = 8 + (size_t)(i * 29 + (int)t) % 3000;
            if (!intact(owned[t][i], n, t * 7919 + (unsigned)i))
                bad++;
            ma_free(owned[t][i]);
        }
    return (void *)(uintptr_t)bad;
}

Test(threads, blocks_freed_while_their_owners_exit, .timeout = 300)
{
    ma_free(ma_malloc(16)); /* this thread has its arena before the owners */
    for (int round = 0; round < 20; round++) {
        pthread_barrier_init(&owned_barrier, NULL, OWNERS + 1);
        pthread_t t[OWNERS], helper;
        for (uintptr_t i = 0; i < OWNERS; i++)
            pthread_create(&t[i], NULL, owner, (void *)i);
        pthread_barrier_wait(&owned_barrier);
        pthread_create(&helper, NULL, owned_freer, (void *)1);
        void *bad = owned_freer((void *)0);
        cr_assert_null(bad, "round %d: corrupted blocks", round);
        pthread_join(helper, &bad);
        cr_assert_null(bad, "round %d: corrupted blocks (helper)", round);
        for (int i = 0; i < OWNERS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&owned_barrier);
    }
    ma_check();
    ma_thread_cache(0); /* this thread's cached blocks back, to count */
    for (unsigned a = 0; a < ma_arena_count(); a++) {
        ma_arena_stats_t s = arena_stats(a);
        cr_assert_eq(s.in_use, 0, "arena %u", a);
        cr_assert_eq(s.allocs, s.frees, "arena %u: every block came back", a);
    }
}

/* ---- threads sharing an arena's lock ---- */

/* Aligned requests are carved under the arena lock every time (a bin
 * never serves them), so threads that share an arena keep taking the lock
 * from each other; a lock that let two in at once would corrupt the free lists
 * (an abort in their integrity checks, or a failed ma_check) or the
 * contents, and under ThreadSanitizer would show as a race. */
#define SHARERS 8
#define SHARED_OPS 3000

static void *sharer(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    char *p[4] = { 0 };
    size_t n[4] = { 0 };
    for (unsigned i = 0; i < SHARED_OPS; i++) {
        unsigned k = i % 4;
        if (p[k] != NULL) {
            if (!intact(p[k], n[k], me * 131 + k))
                return (void *)1;
            ma_free(p[k]);
        }
        n[k] = 8300 + (size_t)((i * 2654435761u + me) % 9000);
        p[k] = ma_aligned_alloc(64, n[k]);
        if (p[k] == NULL)
            return (void *)1;
        fill(p[k], n[k], me * 131 + k);
    }
    for (unsigned k = 0; k < 4; k++) {
        if (!intact(p[k], n[k], me * 131 + k))
            return (void *)1;
        ma_free(p[k]);
    }
    return (void *)(uintptr_t)(ma_thread_arena() + 2);
}

Test(threads, threads_sharing_an_arena_take_turns_at_its_lock, .timeout = 300)
{
    uint64_t before = 0, after = 0;
    for (unsigned a = 0; a < ma_arena_count(); a++)
        before += arena_stats(a).lock_acquires;
    pthread_t t[SHARERS];
    unsigned per_arena[64] = { 0 };
    for (uintptr_t i = 0; i < SHARERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, sharer, (void *)i), 0);
    for (int i = 0; i < SHARERS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_neq((uintptr_t)ret, 1, "thread %d saw corrupted contents", i);
        per_arena[((uintptr_t)ret - 2) % 64]++;
    }
    unsigned most = 0;
    for (unsigned a = 0; a < 64; a++)
        most = per_arena[a] > most ? per_arena[a] : most;
    cr_assert_geq(most, 2, "some arena served two of the threads (%u arenas)", ma_arena_count());
    ma_check();
    for (unsigned a = 0; a < ma_arena_count(); a++) {
        ma_arena_stats_t s = arena_stats(a);
        after += s.lock_acquires;
        cr_assert_eq(s.in_use, 0, "arena %u holds nothing", a);
    }
    cr_assert_geq(after - before, (uint64_t)SHARERS * SHARED_OPS, "every malloc took the lock");
}

/* ---- large blocks from several threads ---- */

/* One word in every 256 bytes of a large block carries its seed. */
static void stamp_large(char *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i + 8 <= n; i += 256) {
        uint64_t w = seed ^ i;
        memcpy(p + i, &w, 8);
    }
}

static int stamped_large(const char *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i + 8 <= n; i += 256) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != (seed ^ i))
            return 0;
    }
    return 1;
}

static int zero_large(const char *p, size_t n)
{
    for (size_t i = 0; i + 8 <= n; i += 256) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != 0)
            return 0;
    }
    return 1;
}

static int large_stop;

/* Mallocs, callocs, reallocs and frees blocks of 256 KiB - 6 MiB: the
 * threads cut and assemble blocks from one cache at once. */
static void *large_churn(void *arg)
{
    uint64_t r = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    enum { SLOTS = 6 };
    char *p[SLOTS] = { 0 };
    size_t n[SLOTS] = { 0 };
    uint64_t seed[SLOTS] = { 0 };
    for (int i = 0; i < 300; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)(r >> 33) % SLOTS;
        size_t m = (256u << 10) + (size_t)(r >> 17) % (6u << 20);
        if (p[k] != NULL && !stamped_large(p[k], n[k], seed[k]))
            return (void *)1;
        if (p[k] != NULL && (r & 0x300) == 0) {
            char *q = ma_realloc(p[k], m);
            if (q == NULL || !stamped_large(q, m < n[k] ? m : n[k], seed[k]))
                return (void *)1;
            p[k] = q;
        } else {
            ma_free(p[k]);
            p[k] = (r & 0x400) ? ma_calloc(1, m) : ma_malloc(m);
            if (p[k] == NULL)
                return (void *)1;
            if ((r & 0x400) && !zero_large(p[k], m))
                return (void *)1;
        }
        n[k] = m;
        seed[k] = r;
        stamp_large(p[k], m, r);
    }
    for (int k = 0; k < SLOTS; k++) {
        if (p[k] != NULL && !stamped_large(p[k], n[k], seed[k]))
            return (void *)1;
        ma_free(p[k]);
    }
    return NULL;
}

static void *large_checker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&large_stop, __ATOMIC_RELAXED)) {
        ma_check();
        usleep(2000);
    }
    return NULL;
}

Test(threads, large_blocks_cut_and_assembled_by_many_threads, .timeout = 300)
{
    pthread_t checker;
    cr_assert_eq(pthread_create(&checker, NULL, large_checker, NULL), 0);
    run_threads(large_churn, 4);
    __atomic_store_n(&large_stop, 1, __ATOMIC_RELAXED);
    pthread_join(checker, NULL);
    ma_check();
    ma_stats_t s;
    s.size = sizeof s;
    cr_assert_eq(ma_stats_get(&s), 0);
    cr_assert_eq(s.large_live, 0);
    cr_assert_gt(s.large_reuses, 0, "blocks were served from the cache");
    cr_assert_eq(s.large_maps - s.large_unmaps, s.large_cached, "every mapping is counted");
}

/* ---- the profiler's live set ---- */

/* Each thread files LS_KEYS samples (prof_record) and takes the samples
 * its neighbour filed out of the set (prof_forget, which takes no lock),
 * all but every fifth, while the main thread takes snapshots. The set
 * grows from its first 4096 slots past 32 K and is rebuilt in place as
 * freed slots pile up, with removals racing against both. At the end it
 * holds exactly the kept samples. The keys are never dereferenced. */
#define LS_THREADS 4
#define LS_KEYS 30000u
static unsigned ls_filed[LS_THREADS];
static int ls_stop;

static uintptr_t ls_key(unsigned t, unsigned i) { return ((uintptr_t)(t + 1) << 40) + (uintptr_t)i * 16; }
static int ls_kept(unsigned i) { return i % 5 == 0; }
static size_t ls_size(unsigned i) { return 100 + i % 7; }

static void *ls_worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg, from = (t + 1) % LS_THREADS, done = 0;
    for (unsigned i = 0; i < LS_KEYS || done < LS_KEYS; i++) {
        if (i < LS_KEYS) {
            prof_record((void *)ls_key(t, i), ls_size(i), NULL);
            __atomic_store_n(&ls_filed[t], i + 1, __ATOMIC_RELEASE);
        } else {
            sched_yield();
        }
        unsigned filed = __atomic_load_n(&ls_filed[from], __ATOMIC_ACQUIRE);
        for (; done < filed; done++)
            if (!ls_kept(done))
                prof_forget((void *)ls_key(from, done));
    }
    return NULL;
}

static void ls_totals(uint64_t *alloc, uint64_t *live, uint64_t *live_bytes)
{
    struct prof_snapshot s;
    cr_assert_eq(prof_snapshot_take(&s), 0);
    *alloc = *live = *live_bytes = 0;
    for (size_t k = 0; k < s.nstacks; k++) {
        *alloc += s.stacks[k]->alloc_count;
        *live += s.stacks[k]->live_count;
        *live_bytes += s.stacks[k]->live_bytes;
    }
    prof_snapshot_drop(&s);
}

static void *ls_watcher(void *arg)
{
    (void)arg;
    uint64_t alloc, live, bytes;
    while (!__atomic_load_n(&ls_stop, __ATOMIC_RELAXED)) {
        ls_totals(&alloc, &live, &bytes);
        if (live > alloc)
            return (void *)1;
        usleep(1000);
    }
    return NULL;
}

Test(threads, profile_live_set_is_exact_under_lock_free_removals, .timeout = 300)
{
    ma_cfg.prof = 1;
    ma_cfg.prof_sample = (size_t)1 << 30;
    prof_init();
    cr_assert(prof_on);
    /* A block the set does not hold: nothing happens. */
    prof_forget((void *)(uintptr_t)0x7000);
    pthread_t watcher;
    cr_assert_eq(pthread_create(&watcher, NULL, ls_watcher, NULL), 0);
    run_threads(ls_worker, LS_THREADS);
    __atomic_store_n(&ls_stop, 1, __ATOMIC_RELAXED);
    void *ret;
    pthread_join(watcher, &ret);
    cr_assert_null(ret, "a snapshot counted more live samples than were filed");
    uint64_t want_live = 0, want_bytes = 0;
    for (unsigned i = 0; i < LS_KEYS; i++)
        if (ls_kept(i)) {
            want_live += LS_THREADS;
            want_bytes += LS_THREADS * ls_size(i);
        }
    uint64_t alloc, live, bytes;
    ls_totals(&alloc, &live, &bytes);
    cr_assert_eq(alloc, (uint64_t)LS_THREADS * LS_KEYS, "%lu samples filed", (unsigned long)alloc);
    cr_assert_eq(live, want_live, "%lu samples live, %lu kept", (unsigned long)live, (unsigned long)want_live);
    cr_assert_eq(bytes, want_bytes, "%lu live bytes, %lu kept", (unsigned long)bytes, (unsigned long)want_bytes);
    /* Taking the kept ones out empties it. */
    for (unsigned t2 = 0; t2 < LS_THREADS; t2++)
        for (unsigned i = 0; i < LS_KEYS; i += 5)
            prof_forget((void *)ls_key(t2, i));
    ls_totals(&alloc, &live, &bytes);
    cr_assert_eq(live, 0);
}
