/*
 * threads_churn.c - thousands of short-lived threads, under any allocator.
 *
 * NTHREADS threads run, at most MAXALIVE at a time. Each one allocates as
 * its very first action, then allocates PER_THREAD patterned blocks of many
 * sizes (malloc, calloc, realloc, posix_memalign), frees a third itself,
 * hands a third to the main thread and leaves a third in a pool that later
 * threads free (so most frees hit blocks whose allocating thread is gone).
 * A thread-specific-data destructor allocates and frees while its thread
 * exits, after the allocator may already have torn down the thread's state.
 * Every block is verified before it is freed, and the totals must balance.
 *
 * Prints one deterministic line on success; any failure writes a line
 * starting with "threads_churn: " to stderr and exits non-zero.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTHREADS 5000
#define MAXALIVE 64
#define PER_THREAD 36        /* blocks per thread, a multiple of 3 */
#define POOL_TAKE 12         /* pooled blocks each thread frees */

static void die(const char *msg)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "threads_churn: %s\n", msg);
    if (n > 0)
        (void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    _exit(1);
}

/* ---- patterned blocks ---- */

/* Header at the start of every block; the payload after it is a byte
 * pattern derived from (tid, idx), so any thread can verify any block. */
struct blk {
    struct blk *next;   /* link while on the handoff list or in the pool */
    size_t size;
    uint32_t tid;
    uint32_t idx;
};

static unsigned char pat(const struct blk *b, size_t i)
{
    return (unsigned char)(b->tid * 131u + b->idx * 29u + i * 7u + (i >> 8));
}

static void fill(struct blk *b, size_t size, uint32_t tid, uint32_t idx)
{
    b->next = NULL;
    b->size = size;
    b->tid = tid;
    b->idx = idx;
    unsigned char *p = (unsigned char *)(b + 1);
    for (size_t i = 0; i < size - sizeof *b; i++)
        p[i] = pat(b, i);
}

static void verify(const struct blk *b, size_t upto, const char *what)
{
    if (b->size < sizeof *b || b->size > (1u << 20) || b->tid >= NTHREADS)
        die(what);
    if (upto > b->size)
        upto = b->size;
    const unsigned char *p = (const unsigned char *)(b + 1);
    for (size_t i = 0; i < upto - sizeof *b; i++)
        if (p[i] != pat(b, i))
            die(what);
}

static atomic_long n_alloc, n_free_self, n_free_main, n_free_pool, n_dtor;

static void release(struct blk *b, atomic_long *counter, const char *what)
{
    verify(b, SIZE_MAX, what);
    free(b);
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* ---- shared lists (intrusive: no allocation) ---- */

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct blk *handoff;  /* guarded by list_lock; freed by main */
static struct blk *pool;     /* guarded by list_lock; freed by later threads */
static long pool_len;        /* guarded by list_lock */

static void push(struct blk **list, struct blk *b)
{
    pthread_mutex_lock(&list_lock);
    b->next = *list;
    *list = b;
    if (list == &pool)
        pool_len++;
    pthread_mutex_unlock(&list_lock);
}

/* ---- thread exit: a destructor that allocates ---- */

static pthread_key_t key;

static void on_thread_exit(void *v)
{
    struct blk *b = v;
    release(b, &n_dtor, "TSD block corrupted at thread exit");
    /* allocate again during thread teardown */
    struct blk *c = malloc(sizeof *c + 100);
    if (c == NULL)
        die("malloc in a thread-exit destructor returned NULL");
    fill(c, sizeof *c + 100, 0, 7);
    verify(c, SIZE_MAX, "block allocated in a destructor corrupted");
    free(c);
}

/* ---- one short-lived thread ---- */

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static size_t pick_size(uint32_t r)
{
    if (r % 211 == 0)
        return 140000 + r % 200000;        /* large path */
    if (r % 11 == 0)
        return 2048 + r % 30000;
    return sizeof(struct blk) + r % 600;
}

static struct blk *alloc_block(uint32_t tid, uint32_t idx)
{
    uint32_t r = mix(tid * 1000003u + idx);
    size_t size = pick_size(r);
    struct blk *b;
    switch (r >> 29) {
    case 0: {
        b = calloc(1, size);
        if (b == NULL)
            die("calloc returned NULL");
        const unsigned char *z = (const unsigned char *)b;
        for (size_t i = 0; i < size; i++)
            if (z[i] != 0)
                die("calloc memory not zeroed");
        break;
    }
    case 1: {
        size_t align = (size_t)64 << (r % 7);   /* 64 .. 4096 */
        void *p = NULL;
        if (posix_memalign(&p, align, size) != 0 || p == NULL)
            die("posix_memalign failed");
        if ((uintptr_t)p % align != 0)
            die("posix_memalign result misaligned");
        b = p;
        break;
    }
    default:
        b = malloc(size);
        if (b == NULL)
            die("malloc returned NULL");
    }
    if ((uintptr_t)b % 16 != 0)
        die("block not 16-byte aligned");
    fill(b, size, tid, idx);
    atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
    return b;
}

static void *thread_main(void *arg)
{
    uint32_t tid = (uint32_t)(uintptr_t)arg;

    /* the first thing this thread does is allocate */
    struct blk *first = malloc(sizeof *first + 40);
    if (first == NULL)
        die("first malloc in a new thread returned NULL");
    fill(first, sizeof *first + 40, tid, 9999);
    atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
    if (pthread_setspecific(key, first) != 0)
        die("pthread_setspecific failed");

    struct blk *mine[PER_THREAD];
    for (uint32_t i = 0; i < PER_THREAD; i++)
        mine[i] = alloc_block(tid, i);

    /* resize some blocks in place or by moving them */
    for (uint32_t i = 0; i < PER_THREAD; i += 5) {
        size_t old = mine[i]->size;
        size_t size = pick_size(mix(tid ^ (i << 20) ^ 0x5bd1e995u));
        struct blk *b = realloc(mine[i], size);
        if (b == NULL)
            die("realloc returned NULL");
        verify(b, size < old ? size : old, "realloc lost the block's contents");
        fill(b, size, tid, i);
        mine[i] = b;
    }

    /* free blocks left by earlier (mostly finished) threads */
    struct blk *taken = NULL;
    pthread_mutex_lock(&list_lock);
    for (int i = 0; i < POOL_TAKE && pool != NULL && pool_len > MAXALIVE * PER_THREAD / 3; i++) {
        struct blk *b = pool;
        pool = b->next;
        pool_len--;
        b->next = taken;
        taken = b;
    }
    pthread_mutex_unlock(&list_lock);
    while (taken != NULL) {
        struct blk *next = taken->next;
        release(taken, &n_free_pool, "pooled block corrupted");
        taken = next;
    }

    /* a third freed here, a third to main, a third to the pool */
    for (uint32_t i = 0; i < PER_THREAD; i++) {
        verify(mine[i], SIZE_MAX, "block corrupted in its own thread");
        switch (i % 3) {
        case 0:
            release(mine[i], &n_free_self, "block corrupted in its own thread");
            break;
        case 1:
            push(&handoff, mine[i]);
            break;
        default:
            push(&pool, mine[i]);
        }
    }
    return NULL;
}

/* ---- main ---- */

static void drain(struct blk **list, atomic_long *counter, const char *what)
{
    pthread_mutex_lock(&list_lock);
    struct blk *b = *list;
    *list = NULL;
    if (list == &pool)
        pool_len = 0;
    pthread_mutex_unlock(&list_lock);
    while (b != NULL) {
        struct blk *next = b->next;
        release(b, counter, what);
        b = next;
    }
}

int main(void)
{
    if (pthread_key_create(&key, on_thread_exit) != 0)
        die("pthread_key_create failed");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);

    pthread_t ring[MAXALIVE];
    for (int i = 0; i < NTHREADS; i++) {
        int slot = i % MAXALIVE;
        if (i >= MAXALIVE) {
            if (pthread_join(ring[slot], NULL) != 0)
                die("pthread_join failed");
            if (slot == 0)
                drain(&handoff, &n_free_main, "handed-off block corrupted");
        }
        if (pthread_create(&ring[slot], &attr, thread_main, (void *)(uintptr_t)i) != 0)
            die("pthread_create failed");
    }
    for (int i = 0; i < MAXALIVE && i < NTHREADS; i++)
        if (pthread_join(ring[i], NULL) != 0)
            die("pthread_join failed");
    pthread_attr_destroy(&attr);
    drain(&handoff, &n_free_main, "handed-off block corrupted");
    drain(&pool, &n_free_main, "pooled block corrupted");

    long alloc = atomic_load(&n_alloc);
    long freed = atomic_load(&n_free_self) + atomic_load(&n_free_main) +
                 atomic_load(&n_free_pool) + atomic_load(&n_dtor);
    if (alloc != (long)NTHREADS * (PER_THREAD + 1) || freed != alloc) {
        char msg[128];
        snprintf(msg, sizeof msg, "counts do not balance: %ld allocated, %ld freed", alloc, freed);
        die(msg);
    }
    if (atomic_load(&n_dtor) != NTHREADS)
        die("a thread-exit destructor did not run");
    if (atomic_load(&n_free_pool) == 0)
        die("no thread freed another thread's block (test is not testing)");
    printf("threads_churn: %d threads (at most %d alive), %ld blocks: ok\n",
           NTHREADS, MAXALIVE, alloc);
    return 0;
}
