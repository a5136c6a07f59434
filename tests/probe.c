/*
 * probe.c - a plain program linked with memalloc's core (no override, so
 * malloc here is the system's) that tests run as a child process: to give
 * it an environment of its own (MEMALLOC_*), or to watch it abort on misuse.
 * Each command prints what the test asserts on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "memalloc.h"

/* The chunk size in effect (MEMALLOC_CHUNK_SIZE or the default): the
 * calling thread's arena's mapped bytes over its chunks, once it has one. */
static uintptr_t chunk_bytes(void)
{
    ma_free(ma_malloc(16));
    ma_arena_stats_t s;
    if (ma_arena_stats_get(ma_thread_arena(), &s) != 0 || s.chunks == 0)
        abort();
    return (uintptr_t)(s.mapped / s.chunks);
}

static pthread_barrier_t barrier;
static unsigned thread_arena_of[256];
static int owner_ok[256];

static void *arena_thread(void *arg)
{
    long i = (long)arg;
    void *p = ma_malloc(64);
    thread_arena_of[i] = ma_thread_arena();
    owner_ok[i] = ma_arena_of(p) == (int)thread_arena_of[i];
    pthread_barrier_wait(&barrier); /* all alive at once */
    ma_free(p);
    return NULL;
}

/* arenas T: T threads, each reports its arena; prints the count, how many
 * distinct arenas served, and the most threads on one arena. */
static int cmd_arenas(int t)
{
    pthread_t th[256];
    unsigned load[1024] = { 0 };
    pthread_barrier_init(&barrier, NULL, (unsigned)t);
    for (long i = 0; i < t; i++)
        pthread_create(&th[i], NULL, arena_thread, (void *)i);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    unsigned n = ma_arena_count(), used = 0, maxload = 0, owners = 0;
    for (int i = 0; i < t; i++) {
        if (load[thread_arena_of[i]]++ == 0)
            used++;
        if (load[thread_arena_of[i]] > maxload)
            maxload = load[thread_arena_of[i]];
        owners += (unsigned)owner_ok[i];
    }
    printf("count=%u used=%u maxload=%u owners=%u\n", n, used, maxload, owners);
    return 0;
}

static int cmd_oom(void)
{
    /* The arena's first chunk exists before the limit bites (one small block
     * allocated and freed; the empty chunk stays as the reserve). */
    ma_free(ma_malloc(24));
    /* Room for what is mapped already plus a little, then ask for more. */
    struct rlimit rl = { 256u << 20, 256u << 20 };
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 2;
    void *keep[4096];
    int n = 0, saw_enomem = 0;
    for (; n < 4096; n++) {
        errno = 0;
        keep[n] = ma_malloc(1u << 20);
        if (keep[n] == NULL) {
            saw_enomem = errno == ENOMEM;
            break;
        }
        memset(keep[n], n, 1u << 20);
    }
    errno = 0;
    void *huge = ma_malloc((size_t)1 << 40);
    int huge_enomem = huge == NULL && errno == ENOMEM;
    /* Smaller requests keep working after the failures. */
    int small_ok = 1;
    for (int i = 0; i < 1000; i++) {
        void *p = ma_malloc(24);
        if (p == NULL) {
            small_ok = 0;
            break;
        }
        ma_free(p);
    }
    for (int i = 0; i < n; i++)
        ma_free(keep[i]);
    ma_check();
    printf("big=%d enomem=%d huge_enomem=%d small_ok=%d\n", n, saw_enomem, huge_enomem, small_ok);
    return 0;
}

static void *remote_free_thread(void *p)
{
    ma_free(p);
    return NULL;
}

int g_global;

/* Each misuse command does one wrong thing that must abort. */
/* A thread whose own cache gets an aligned link into its stack (a use after
 * free that the pop check cannot see) while another thread runs ma_check:
 * the check cannot walk a cache it does not own, so it asks, and the owner
 * verifies its cache at its next refill. */
static pthread_barrier_t corrupt_done, check_done;
static void *cache_corrupting_thread(void *arg)
{
    (void)arg;
    char local[64] __attribute__((aligned(16)));
    void **p = ma_malloc(48);
    ma_free(p);
    p[0] = local;
    pthread_barrier_wait(&corrupt_done);
    pthread_barrier_wait(&check_done);
    for (int i = 0; i < 100000; i++) {
        void *volatile q = ma_malloc(200); /* other class: refills, never pops p */
        (void)q;
    }
    puts("thread survived");
    return NULL;
}

static int cmd_misuse(const char *what)
{
    if (strcmp(what, "double-free-small") == 0) {
        char *p = ma_malloc(40);
        ma_free(p);
        ma_free(p);
    } else if (strcmp(what, "double-free-sampled") == 0) {
        /* Run with every allocation sampled: the first free of each block
         * takes the profiler's way back to the bins, the second must still
         * be caught. */
        char *q = ma_malloc(20000), *p = ma_malloc(40);
        ma_free(q);
        ma_free(p);
        ma_free(p);
    } else if (strcmp(what, "double-free-sampled-medium") == 0) {
        ma_free(ma_malloc(40)); /* the thread's first allocation starts the countdown */
        char *q = ma_malloc(20000);
        ma_free(q);
        ma_free(q);
    } else if (strcmp(what, "double-free-reserve") == 0) {
        /* 300 blocks of 48 bytes overflow a bin of 256: the first 128 freed
         * become the bin's reserve, which the fast path does not see. */
        static char *q[300];
        for (int i = 0; i < 300; i++)
            q[i] = ma_malloc(40);
        for (int i = 0; i < 300; i++)
            ma_free(q[i]);
        ma_free(q[0]);
    } else if (strcmp(what, "double-free-large") == 0) {
        char *p = ma_malloc(1 << 20);
        ma_free(p);
        ma_free(p);
    } else if (strcmp(what, "double-free-remote") == 0) {
        /* Both frees from a thread of another arena: the block is still
         * on the owner's remote stack when the second one arrives. */
        char *p = ma_malloc(40);
        pthread_t t;
        pthread_create(&t, NULL, remote_free_thread, p);
        pthread_join(t, NULL);
        pthread_create(&t, NULL, remote_free_thread, p);
        pthread_join(t, NULL);
    } else if (strcmp(what, "free-stack") == 0) {
        char buf[64];
        ma_free(buf + 16);
        printf("%c", buf[0]);
    } else if (strcmp(what, "free-global") == 0) {
        ma_free(&g_global);
    } else if (strcmp(what, "free-interior") == 0) {
        char *p = ma_malloc(200);
        memset(p, 0, 200);
        ma_free(p + 64);
    } else if (strcmp(what, "free-chunk-tail") == 0) {
        /* A pointer into the 8 KiB at the end of a chunk that no block
         * covers: the fast path reads a head there without a bounds test,
         * so it must find nothing plausible and let the slow path name it
         * (a fault here would mean the tail was written or too short). */
        char *p = ma_malloc(64);
        uintptr_t chunk = (uintptr_t)p & ~(chunk_bytes() - 1);
        ma_free((void *)(chunk + chunk_bytes() - 4096));
    } else if (strcmp(what, "free-chunk-base") == 0) {
        /* A pointer at a chunk's very start: the fast path reads the 8
         * bytes before it, in the page below the chunk, which must be
         * mapped (the 1 MiB below is otherwise usually unmapped). */
        char *p = ma_malloc(64);
        uintptr_t chunk = (uintptr_t)p & ~(chunk_bytes() - 1);
        ma_free((void *)chunk);
    } else if (strcmp(what, "free-foreign") == 0) {
        void *p = malloc(100); /* the system allocator's block */
        ma_free(p);
    } else if (strcmp(what, "double-free-medium") == 0) {
        char *p = ma_malloc(20000);
        ma_free(p);
        ma_free(p);
    } else if (strcmp(what, "free-medium-interior") == 0) {
        char *p = ma_malloc(20000);
        memset(p, 0, 20000);
        ma_free(p + 4096);
    } else if (strcmp(what, "overflow-medium-header") == 0) {
        /* Two medium blocks carved one after the other: the lower one's
         * overflow rewrites the upper one's head with a medium-looking
         * size that runs past the chunk's end. */
        char *a = ma_malloc(20000), *b = ma_malloc(20000);
        char *lo = a < b ? a : b, *hi = a < b ? b : a;
        memset(lo, 0, (size_t)(hi - lo));
        ((size_t *)hi)[-1] = ((size_t)200 << 10) | 1;
        ma_free(hi);
    } else if (strcmp(what, "overflow-header") == 0) {
        /* Overflow the lower block far enough to wipe the upper one's head
         * (the thread cache may hand them out in either order). */
        char *a = ma_malloc(40), *b = ma_malloc(40);
        char *lo = a < b ? a : b, *hi = a < b ? b : a;
        memset(lo, 0x41, (size_t)(hi - lo));
        ma_free(hi);
    } else if (strcmp(what, "corrupt-link") == 0) {
        /* Use after free: overwrite a free block's list links, then make
         * the allocator unlink it. */
        char *a = ma_malloc(100), *sep = ma_malloc(100), *b = ma_malloc(100), *sep2 = ma_malloc(100);
        ma_free(a);
        ma_free(b);
        memset(b, 0x42, 16);
        void *c = ma_malloc(100); /* takes b off its list: the check fires */
        printf("%p %p %p\n", (void *)sep, (void *)sep2, c);
    } else if (strcmp(what, "corrupt-last-link") == 0) {
        /* The same for the only block of a bin, whose link is the list's
         * end: a medium bin starts at one block, so the first allocation
         * of its size leaves it empty and the free makes p its only block. */
        char *p = ma_malloc(100000);
        char *q = ma_malloc(100000); /* the bin empty again: a refill */
        ma_free(p);
        memset(p, 0, 16);
        void *c = ma_malloc(100000);
        printf("%p %p\n", (void *)q, c);
    } else if (strcmp(what, "cache-link-to-stack") == 0) {
        /* Use after free: point a cached block's link at the stack (aligned,
         * so the pop check cannot see it); ma_check must. */
        char local[64] __attribute__((aligned(16)));
        void **p = ma_malloc(48);
        ma_free(p);
        p[0] = local;
        ma_check();
    } else if (strcmp(what, "cache-link-other-thread") == 0) {
        pthread_t t;
        pthread_barrier_init(&corrupt_done, NULL, 2);
        pthread_barrier_init(&check_done, NULL, 2);
        pthread_create(&t, NULL, cache_corrupting_thread, NULL);
        pthread_barrier_wait(&corrupt_done);
        ma_check();
        puts("check returned");
        fflush(stdout);
        pthread_barrier_wait(&check_done);
        pthread_join(t, NULL);
    } else if (strcmp(what, "canary") == 0) {
        char *p = ma_malloc(100);
        p[100] = 'x'; /* one byte past the end */
        ma_free(p);
    } else if (strcmp(what, "usable-freed") == 0) {
        /* The block sits in the thread's bin, marked cached: the fast
         * path's header checks must refuse it. */
        char *p = ma_malloc(40);
        ma_free(p);
        printf("%zu\n", ma_usable_size(p));
    } else if (strcmp(what, "usable-interior") == 0) {
        char *p = ma_malloc(200);
        memset(p, 0, 200);
        printf("%zu\n", ma_usable_size(p + 64));
    } else if (strcmp(what, "usable-chunk-tail") == 0) {
        char *p = ma_malloc(64);
        uintptr_t chunk = (uintptr_t)p & ~(chunk_bytes() - 1);
        printf("%zu\n", ma_usable_size((void *)(chunk + chunk_bytes() - 4096)));
    } else if (strcmp(what, "realloc-invalid") == 0) {
        char buf[64];
        void *q = ma_realloc(buf + 16, 10);
        printf("%p\n", q);
    } else if (strcmp(what, "realloc-freed-grow") == 0 || strcmp(what, "realloc-freed-fit") == 0) {
        /* The block sits in the thread's bin, marked cached: realloc's
         * small path must refuse it, whether the new size fits the block
         * or needs a move. */
        char *p = ma_malloc(40);
        ma_free(p);
        void *q = ma_realloc(p, strcmp(what, "realloc-freed-grow") == 0 ? 400 : 40);
        printf("%p\n", q);
    } else if (strcmp(what, "realloc-freed-big") == 0 || strcmp(what, "realloc-freed-medium") == 0) {
        /* The same above 1 KiB, where realloc takes the path for bigger
         * blocks of the thread's own arena: a 3000-byte block in a small
         * bin, a 20000-byte one in a medium bin. */
        size_t n = strcmp(what, "realloc-freed-big") == 0 ? 3000 : 20000;
        char *p = ma_malloc(n);
        ma_free(p);
        void *q = ma_realloc(p, 2 * n);
        printf("%p\n", q);
    } else if (strcmp(what, "realloc-interior") == 0) {
        char *p = ma_malloc(200);
        memset(p, 0, 200);
        void *q = ma_realloc(p + 64, 100);
        printf("%p\n", q);
    } else {
        return 2;
    }
    puts("survived");
    return 0;
}

/* move STAY: with two arenas, threads A and C share arena 0 while thread B
 * is counted on arena 1 (STAY=1) or has exited (STAY=0). A takes arena 0's
 * lock at every step (16 KiB blocks aligned to 64 bytes, which are always
 * carved under the lock), a few
 * microseconds apart; C holds a heap of small blocks there and runs
 * ma_check over and over, which walks that heap under the same lock, so
 * most of A's acquisitions wait whether or not the two threads get a CPU
 * each (the waits that matter are A's: C's checks are not the thread
 * cache's locked operations, which are what a thread reviews). Prints
 * whether A moved and the thread counts the two arenas report at the end. */
static pthread_barrier_t mv_ready, mv_go, mv_end;
static int mv_stay, mv_moved;
static void *mv_handed; /* a block of A's, which C frees first so as to join A's arena */
static int mv_done; /* atomic: A has moved or finished; C stops */

static void *move_idle(void *arg)
{
    (void)arg;
    ma_free(ma_malloc(16));
    pthread_barrier_wait(&mv_ready);
    if (mv_stay)
        pthread_barrier_wait(&mv_end);
    return NULL;
}

static void *move_busy(void *arg)
{
    (void)arg;
    ma_free(ma_malloc(16));
    mv_handed = ma_malloc(16);
    pthread_barrier_wait(&mv_ready);
    pthread_barrier_wait(&mv_go);
    unsigned start = ma_thread_arena();
    for (long k = 0; k < 400 && !mv_moved; k++) {
        volatile char *p = ma_aligned_alloc(64, 16384);
        p[k % 16384] = (char)k;
        ma_free((void *)p);
        if (ma_thread_arena() != start)
            mv_moved = 1;
        usleep(20);
    }
    __atomic_store_n(&mv_done, 1, __ATOMIC_RELAXED);
    pthread_barrier_wait(&mv_end);
    return NULL;
}

static void *move_checker(void *arg)
{
    (void)arg;
    enum { HELD = 5000 };
    /* A thread whose first act is a free joins the freed block's arena
     * unless another has two threads fewer. */
    ma_free(mv_handed);
    void **held = ma_malloc(HELD * sizeof *held);
    for (int i = 0; i < HELD; i++)
        held[i] = ma_malloc(48);
    pthread_barrier_wait(&mv_ready);
    pthread_barrier_wait(&mv_go);
    while (!__atomic_load_n(&mv_done, __ATOMIC_RELAXED))
        ma_check();
    for (int i = 0; i < HELD; i++)
        ma_free(held[i]);
    ma_free(held);
    pthread_barrier_wait(&mv_end);
    return NULL;
}

static int cmd_move(int stay)
{
    pthread_t a, b, c;
    mv_stay = stay;
    pthread_barrier_init(&mv_ready, NULL, 2);
    pthread_barrier_init(&mv_go, NULL, 3); /* A, C and this thread, once it has read the counts */
    pthread_barrier_init(&mv_end, NULL, stay ? 3u : 2u);
    /* One at a time: A takes arena 0 and B arena 1 (round-robin), and C,
     * which first frees a block of A's, joins A. */
    pthread_create(&a, NULL, move_busy, NULL);
    pthread_barrier_wait(&mv_ready);
    pthread_create(&b, NULL, move_idle, NULL);
    pthread_barrier_wait(&mv_ready);
    if (!stay)
        pthread_join(b, NULL);
    pthread_create(&c, NULL, move_checker, NULL);
    pthread_barrier_wait(&mv_ready);
    ma_arena_stats_t s0, s1;
    ma_arena_stats_get(0, &s0);
    ma_arena_stats_get(1, &s1);
    printf("before=%llu/%llu ", (unsigned long long)s0.threads, (unsigned long long)s1.threads);
    pthread_barrier_wait(&mv_go);
    pthread_join(a, NULL);
    pthread_join(c, NULL);
    if (stay)
        pthread_join(b, NULL);
    ma_arena_stats_get(0, &s0);
    ma_arena_stats_get(1, &s1);
    printf("moved=%d after=%llu/%llu\n", mv_moved, (unsigned long long)s0.threads, (unsigned long long)s1.threads);
    return 0;
}

/* orphan: with two arenas, a worker (arena 1) allocates 4000 blocks of
 * 1000 bytes for this thread (arena 0), frees some small blocks through its
 * cache, and leaves 9.6 MB of 12 KiB holes between 12 KiB blocks that it
 * keeps; then it exits. Prints whether a hole's page is resident right
 * after the exit (kept for the next thread), after 50 remote frees into
 * the threadless arena (still kept), and once the arena has had no
 * thread for three retain intervals (MEMALLOC_RETAIN_MS, which the caller
 * sets), the locks that 100 remote frees into the threadless arena took,
 * the same once a thread has joined it, and the chunks it keeps three
 * intervals after everything is freed. */
enum { ORPH_BIG = 1600, ORPH_SMALL = 4000, ORPH_BIG_SIZE = 12 * 1024, ORPH_EARLY = 50 };
static char *orph_big[ORPH_BIG], *orph_small[ORPH_SMALL];
static pthread_barrier_t orph_joined, orph_leave;

static void *orphan_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ORPH_SMALL; i++)
        memset(orph_small[i] = ma_malloc(1000), 0x33, 1000);
    void *cached[300];
    for (int i = 0; i < 300; i++)
        cached[i] = ma_malloc(64);
    for (int i = 0; i < 300; i++)
        ma_free(cached[i]);
    for (int i = 0; i < ORPH_BIG; i++)
        memset(orph_big[i] = ma_malloc(ORPH_BIG_SIZE), 0x44, ORPH_BIG_SIZE);
    for (int i = 1; i < ORPH_BIG; i += 2)
        ma_free(orph_big[i]);
    return NULL;
}

static void *orphan_joiner(void *arg)
{
    (void)arg;
    ma_free(ma_malloc(16));
    pthread_barrier_wait(&orph_joined);
    pthread_barrier_wait(&orph_leave);
    return NULL;
}

static uint64_t arena1_locks(void)
{
    ma_arena_stats_t s;
    ma_arena_stats_get(1, &s);
    return s.lock_acquires;
}

static int cmd_orphan(void)
{
    ma_free(ma_malloc(16)); /* this thread: arena 0 */
    pthread_t w, other, joiner;
    pthread_create(&w, NULL, orphan_worker, NULL); /* arena 1 */
    pthread_join(w, NULL);
    char *page = (char *)(((uintptr_t)orph_big[ORPH_BIG / 2 + 1] + 4096) & ~(uintptr_t)4095);
    unsigned char vec[1] = { 0 };
    if (mincore(page, 4096, vec) != 0)
        return 1;
    int kept = vec[0] & 1;
    /* Remote frees into the threadless arena drain it at once; with
     * retention they discard nothing: the hole is still resident. */
    for (int i = ORPH_SMALL - ORPH_EARLY; i < ORPH_SMALL; i++)
        ma_free(orph_small[i]);
    if (mincore(page, 4096, vec) != 0)
        return 1;
    int kept_remote = vec[0] & 1;
    const char *ms = getenv("MEMALLOC_RETAIN_MS");
    unsigned wait_ms = 3 * (unsigned)(ms != NULL ? atoi(ms) : 1000) + 50;
    usleep(wait_ms * 1000u);
    if (mincore(page, 4096, vec) != 0)
        return 1;
    ma_arena_stats_t s;
    ma_arena_stats_get(1, &s);
    printf("threads=%llu kept=%d kept_remote=%d hole_resident=%d ", (unsigned long long)s.threads, kept, kept_remote,
           vec[0] & 1);
    uint64_t before = arena1_locks();
    for (int i = 0; i < 100; i++)
        ma_free(orph_small[i]);
    printf("orphan_locks=%llu ", (unsigned long long)(arena1_locks() - before));
    /* The next thread takes over arena 1, threadless but holding memory;
     * the one after goes round-robin. */
    pthread_barrier_init(&orph_joined, NULL, 2);
    pthread_barrier_init(&orph_leave, NULL, 3);
    pthread_create(&other, NULL, orphan_joiner, NULL);
    pthread_barrier_wait(&orph_joined);
    pthread_create(&joiner, NULL, orphan_joiner, NULL);
    pthread_barrier_wait(&orph_joined);
    before = arena1_locks();
    for (int i = 100; i < 200; i++)
        ma_free(orph_small[i]);
    printf("joined_locks=%llu ", (unsigned long long)(arena1_locks() - before));
    pthread_barrier_wait(&orph_leave);
    pthread_join(other, NULL);
    pthread_join(joiner, NULL);
    for (int i = 200; i < ORPH_SMALL - ORPH_EARLY; i++)
        ma_free(orph_small[i]);
    for (int i = 0; i < ORPH_BIG; i += 2)
        ma_free(orph_big[i]);
    usleep(wait_ms * 1000u);
    ma_arena_stats_get(1, &s);
    printf("chunks=%zu in_use=%zu\n", s.chunks, s.in_use);
    return 0;
}

/* With MEMALLOC_RETAIN_MS=0: a freed large block is unmapped at once, and
 * chunks that fall wholly free go back beyond the reserve at once. */
static int cmd_no_retention(void)
{
    size_t n = 20u << 20;
    char *p = ma_malloc(n);
    memset(p, 1, n);
    unsigned char vec[1];
    char *page = (char *)((uintptr_t)p & ~(uintptr_t)4095);
    if (mincore(page, 4096, vec) != 0) {
        printf("FAIL: the large block is not mapped while allocated\n");
        return 1;
    }
    ma_free(p);
    errno = 0;
    if (mincore(page, 4096, vec) != -1 || errno != ENOMEM) {
        printf("FAIL: a freed large block stayed mapped\n");
        return 1;
    }
    enum { N = 8 * 1024 };
    static char *q[N];
    ma_thread_cache(0); /* every free reaches the arena at once */
    for (int i = 0; i < N; i++)
        q[i] = ma_malloc(1000);
    ma_arena_stats_t s;
    ma_arena_stats_get(ma_thread_arena(), &s);
    size_t before = s.chunks;
    for (int i = 0; i < N; i++)
        ma_free(q[i]);
    ma_arena_stats_get(ma_thread_arena(), &s);
    printf("chunks %zu -> %zu\n", before, s.chunks);
    if (before < 8 || s.chunks > 1) {
        printf("FAIL: wholly free chunks beyond the reserve were kept\n");
        return 1;
    }
    return 0;
}

/* move-refused: large blocks while the kernel refuses every page move (the
 * process holds as many kernel mappings as it may, and mremap keeps a
 * margin below that limit). A block that would be assembled from cached
 * pieces gets fresh pages, a realloc of a block made of several kernel
 * mappings copies it, and every piece stays cached; once mappings are free
 * again, moves resume. Prints what the test asserts on. */
#define HOGS 100000
static void *hog[HOGS];

static int resident(const void *p)
{
    unsigned char vec[1] = { 0 };
    if (mincore((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, vec) != 0)
        return 0;
    return vec[0] & 1;
}

static unsigned char move_pat(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 12));
}

static int large_add_up(void)
{
    ma_stats_t s;
    s.size = sizeof s;
    ma_stats_get(&s);
    return s.large_maps - s.large_unmaps == s.large_live + s.large_cached;
}

static int cmd_move_refused(void)
{
    /* x: assembled from pieces of 2, 3 and 4 MiB, so several kernel
     * mappings; then pieces of 3 and 4 MiB stay cached. */
    size_t mib[3] = { 2, 3, 4 };
    char *piece[3];
    for (int i = 0; i < 3; i++)
        memset(piece[i] = ma_malloc(mib[i] << 20), 1, mib[i] << 20);
    for (int i = 0; i < 3; i++)
        ma_free(piece[i]);
    size_t xn = 8u << 20;
    unsigned char *x = ma_malloc(xn);
    for (size_t i = 0; i < xn; i++)
        x[i] = move_pat(i);
    char *a = ma_malloc(3u << 20), *b = ma_malloc(4u << 20);
    memset(a, 2, 3u << 20);
    memset(b, 3, 4u << 20);
    ma_free(a);
    ma_free(b);
    /* One-page mappings until the kernel gives no more, alternately
     * readable and not so that neighbours never merge; then one back, for
     * the new block's range. */
    size_t n = 0;
    while (n < HOGS) {
        void *h = mmap(NULL, 4096, (n & 1) ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (h == MAP_FAILED)
            break;
        hog[n++] = h;
    }
    if (n == HOGS || n < 3)
        return 3;
    munmap(hog[--n], 4096);
    char *q = ma_malloc(6u << 20);
    int fresh_ok = q != NULL && !resident(q + (1u << 20));
    if (q != NULL) {
        memset(q, 0x5c, 6u << 20);
        for (size_t i = 0; i < (6u << 20); i += 4096)
            fresh_ok &= q[i] == 0x5c;
    }
    ma_check();
    /* Room for the realloc's range only: x's pages cannot move, so they are
     * copied. */
    munmap(hog[--n], 4096);
    munmap(hog[--n], 4096);
    unsigned char *x2 = ma_realloc(x, 2 * xn);
    int copy_ok = x2 != NULL;
    for (size_t i = 0; copy_ok && i < xn; i++)
        copy_ok = x2[i] == move_pat(i);
    ma_check();
    ma_stats_t s;
    s.size = sizeof s;
    ma_stats_get(&s);
    int pieces_kept = s.large_cached == 2 && s.large_cached_bytes >= (7u << 20);
    int add_up = large_add_up();
    while (n > 0)
        munmap(hog[--n], 4096);
    /* Moves work again: a block from q's and the cached pages. */
    ma_free(q);
    char *y = ma_malloc(12u << 20);
    int moved_later = y != NULL && resident(y) && resident(y + (11u << 20));
    if (y != NULL)
        memset(y, 4, 12u << 20);
    add_up &= large_add_up();
    ma_free(y);
    if (x2 != NULL)
        ma_free(x2);
    add_up &= large_add_up();
    ma_check();
    printf("fresh_ok=%d copy_ok=%d pieces_kept=%d add_up=%d moved_later=%d\n", fresh_ok, copy_ok, pieces_kept, add_up,
           moved_later);
    return 0;
}

/* link KIND MODE: a use-after-free write into the link word of a freed
 * block cached in a bin, a bin's reserve, an arena's quick list or a
 * remote-free stack (KIND: bin, reserve, quick, remote), of the address of
 * a static array (MODE plant) or of the word's own value (MODE benign).
 * Then blocks of that size are allocated until every cached one came back:
 * a planted address must never be handed out (the allocator aborts with
 * "malloc(): corrupted free list" first); a benign rewrite changes
 * nothing. Prints "handed out" if the planted address comes back. */
static char link_target[256] __attribute__((aligned(64)));
static void *link_blocks[1200];
static pthread_barrier_t link_pushed;

static void *link_remote_freer(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    ma_free(ma_malloc(16)); /* this thread's own arena (the other one) */
    for (size_t i = 0; i < n; i++)
        ma_free(link_blocks[i]);
    pthread_barrier_wait(&link_pushed);
    return NULL;
}

static void link_write(void *block, int plant)
{
    volatile uintptr_t *w = (volatile uintptr_t *)block;
    *w = plant ? (uintptr_t)link_target : *w;
}

static int cmd_link(const char *kind, const char *mode, size_t size)
{
    int plant = strcmp(mode, "plant") == 0;
    size_t n = 3;
    void *victim;
    if (strcmp(kind, "bin") == 0) {
        /* A medium bin (above 8 KiB) starts at one block and a second
         * free would send its newest to the arena: one block there. */
        if (size > 8192)
            n = 1;
        for (size_t i = 0; i < n; i++)
            link_blocks[i] = ma_malloc(size);
        for (size_t i = 0; i < n; i++)
            ma_free(link_blocks[i]);
        victim = link_blocks[n - 1]; /* the bin's head */
    } else if (strcmp(kind, "reserve") == 0 || strcmp(kind, "quick") == 0) {
        /* 1200 blocks overflow a bin of 64-byte blocks even grown to its
         * most (1024): the newest half at that moment goes to the arena's
         * quick list, the older half becomes the bin's reserve, and the
         * rest of the frees start the bin again. */
        n = 1200;
        for (size_t i = 0; i < n; i++)
            link_blocks[i] = ma_malloc(size);
        for (size_t i = 0; i < n; i++)
            ma_free(link_blocks[i]);
        victim = strcmp(kind, "reserve") == 0 ? link_blocks[0] : link_blocks[700];
    } else if (strcmp(kind, "remote") == 0) {
        /* Another thread, on the other of two arenas, frees them: they
         * wait on this arena's remote stack, the last pushed on top. */
        for (size_t i = 0; i < n; i++)
            link_blocks[i] = ma_malloc(size);
        pthread_t t;
        pthread_barrier_init(&link_pushed, NULL, 2);
        pthread_create(&t, NULL, link_remote_freer, (void *)(uintptr_t)n);
        pthread_barrier_wait(&link_pushed);
        pthread_join(t, NULL);
        victim = link_blocks[n - 1];
    } else {
        return 2;
    }
    link_write(victim, plant);
    /* Every cached block of the size comes back, and more. */
    for (size_t i = 0; i < n + 64; i++) {
        void *p = ma_malloc(size);
        if ((char *)p >= link_target && (char *)p < link_target + sizeof link_target) {
            printf("handed out the planted address %p\n", p);
            return 1;
        }
    }
    printf("survived\n");
    return 0;
}

/* Requests around the mmap threshold, three times over (each block freed
 * before the next request, so the medium bins hold the sizes just asked
 * for): every one below the threshold must be an arena block, every one at
 * or above it a mapping of its own, whichever bin the bins would offer. In
 * check mode a request takes 9 bytes more (canary and stored size), so the
 * 16 bytes below the threshold may be mapped too. */
static int cmd_threshold(size_t t)
{
    void *one = ma_malloc(1);
    size_t slack = ma_usable_size(one) == 1 ? 16 : 0;
    ma_free(one);
    for (int pass = 0; pass < 3; pass++) {
        for (size_t n = t - 6000; n <= t + 6000; n += 4) {
            char *p = ma_malloc(n);
            if (p == NULL) {
                printf("malloc(%zu) failed\n", n);
                return 1;
            }
            p[0] = 1;
            p[n - 1] = 2;
            if ((ma_arena_of(p) >= 0) != (n < t) && !(n < t && n + slack >= t && ma_arena_of(p) < 0)) {
                printf("malloc(%zu) with a threshold of %zu: arena %d\n", n, t, ma_arena_of(p));
                return 1;
            }
            ma_free(p);
        }
    }
    printf("threshold ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "threshold") == 0)
        return cmd_threshold((size_t)atol(argv[2]));
    if (argc >= 5 && strcmp(argv[1], "link") == 0)
        return cmd_link(argv[2], argv[3], (size_t)atol(argv[4]));
    if (argc >= 2 && strcmp(argv[1], "no-retention") == 0)
        return cmd_no_retention();
    if (argc >= 2 && strcmp(argv[1], "move-refused") == 0)
        return cmd_move_refused();
    if (argc >= 3 && strcmp(argv[1], "arenas") == 0)
        return cmd_arenas(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "move") == 0)
        return cmd_move(atoi(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "orphan") == 0)
        return cmd_orphan();
    if (argc >= 2 && strcmp(argv[1], "oom") == 0)
        return cmd_oom();
    if (argc >= 2 && strcmp(argv[1], "touch") == 0) {
        void *p = ma_malloc(1);
        ma_free(p);
        printf("arenas=%u\n", ma_arena_count());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "leak") == 0) {
        /* Leaves three 100-byte blocks and one large block for the exit
         * report to find. */
        for (int i = 0; i < 3; i++)
            memset(ma_malloc(100), i, 100);
        memset(ma_malloc(1u << 20), 1, 1u << 20);
        void *freed = ma_malloc(200);
        ma_free(freed);
        if (argc >= 3 && strcmp(argv[2], "close-stderr") == 0)
            close(2); /* as GNU coreutils do before exiting */
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "misuse") == 0)
        return cmd_misuse(argv[2]);
    fprintf(stderr, "usage: probe threshold BYTES | arenas T | move STAY | orphan | oom | touch | leak | misuse CASE | no-retention | move-refused\n");
    return 2;
}
