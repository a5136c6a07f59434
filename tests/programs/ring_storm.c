/*
 * ring_storm.c - producers and consumers on ring buffers across arenas.
 *
 * NTHREADS threads form a ring: thread i produces messages into ring i and
 * consumes ring i-1 (the ring of its predecessor). Each message is a block
 * of random size (small, medium and a few large) holding a pattern derived
 * from its origin thread, sequence number and hop count, so every byte is
 * verified by the thread that receives it. A consumer then either frees the
 * message (a free by a thread that did not allocate it: with threads spread
 * round-robin over the arenas, most of these are remote frees), or reallocs
 * it to another size and forwards it one more hop (realloc of a block owned
 * by another thread's arena). Per origin and hop count, messages must
 * arrive in order, exactly once.
 *
 * The amount of work is fixed (MSGS messages per thread) and no thread ever
 * blocks on a full ring (it consumes instead, or frees a message it cannot
 * forward), so the run cannot deadlock; it ends when every message produced
 * has been freed. Usage: ring_storm [threads] (default 8, at most 64).
 */
#include "common.h"
#include "../../include/memalloc.h"   /* ma_arena_stats_t, reached via dlsym */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define MAXTHREADS 64
#define MSGS 60000              /* messages produced per thread */
#define RING 256                /* slots per ring (power of two) */
#define MAXHOPS 3               /* a message travels at most this many rings */

struct msg {
    uint32_t origin;            /* producing thread */
    uint32_t hops;              /* rings travelled so far, 1 on first receipt */
    uint64_t seq;               /* per origin, increasing */
    size_t size;                /* payload bytes after this header */
};

/* single-producer single-consumer ring: head written by the consumer only,
 * tail by the producer only (atomics with acquire/release) */
struct ring {
    _Atomic(uint64_t) head;
    char pad1[56];
    _Atomic(uint64_t) tail;
    char pad2[56];
    struct msg *slot[RING];
};

static int nthreads = 8;
static struct ring rings[MAXTHREADS];
static atomic_long freed_total;
static long produced_total;     /* set once before threads start */
static atomic_long remote_realloc, forwarded;

static int ring_push(struct ring *r, struct msg *m)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t - h == RING)
        return 0;
    r->slot[t % RING] = m;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static struct msg *ring_pop(struct ring *r)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (h == t)
        return NULL;
    struct msg *m = r->slot[h % RING];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return m;
}

static uint64_t msg_tag(const struct msg *m)
{
    return ((uint64_t)m->origin << 48) ^ (m->seq << 4) ^ m->hops;
}

static size_t pick_size(uint64_t r)
{
    unsigned k = (unsigned)(r & 255);
    r >>= 8;
    if (k == 0)
        return 256 * 1024 + r % (256 * 1024);   /* large path */
    if (k < 24)
        return 1024 + r % (32 * 1024);
    return 8 + r % 600;
}

struct worker {
    int id;
    uint64_t last_seq[MAXTHREADS][MAXHOPS + 1];   /* next expected seq + 1 */
    long received;
};

static void consume(struct worker *w, struct msg *m, uint64_t *s)
{
    if (m->origin >= (uint32_t)nthreads || m->hops >= MAXHOPS || m->size > 1024 * 1024)
        prog_die("thread %d: received a message with a corrupted header", w->id);
    /* the payload pattern was written for the hop count it arrives with */
    uint64_t oldtag = msg_tag(m);
    if (!pattern_ok(m + 1, m->size, oldtag))
        prog_die("thread %d: message %llu from %u (hop %u, %zu bytes) corrupted",
                 w->id, (unsigned long long)m->seq, m->origin, m->hops + 1, m->size);
    m->hops++;
    uint64_t *last = &w->last_seq[m->origin][m->hops];
    if (m->seq + 1 <= *last)
        prog_die("thread %d: message %llu from %u (hop %u) out of order or duplicated",
                 w->id, (unsigned long long)m->seq, m->origin, m->hops);
    *last = m->seq + 1;
    w->received++;

    uint64_t r = rng_next(s);
    if (m->hops < MAXHOPS && (r & 3) == 0) {
        /* resize the block someone else allocated and pass it on */
        size_t size = pick_size(r >> 8);
        size_t keep = m->size < size ? m->size : size;
        size_t oldsize = m->size;
        struct msg *n = realloc(m, sizeof *n + size);
        if (n == NULL)
            prog_die("thread %d: realloc to %zu bytes failed", w->id, size);
        if (!pattern_prefix_ok(n + 1, oldsize, keep, oldtag))
            prog_die("thread %d: realloc of a received message lost its contents", w->id);
        n->size = size;
        pattern_fill(n + 1, size, msg_tag(n));
        atomic_fetch_add_explicit(&remote_realloc, 1, memory_order_relaxed);
        if (ring_push(&rings[w->id], n)) {
            atomic_fetch_add_explicit(&forwarded, 1, memory_order_relaxed);
            return;
        }
        m = n;   /* our ring is full: this message ends here */
    }
    free(m);
    atomic_fetch_add_explicit(&freed_total, 1, memory_order_release);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ring *in = &rings[(w->id + nthreads - 1) % nthreads];
    struct ring *out = &rings[w->id];
    uint64_t s = rng_seed((uint64_t)w->id, 4242);
    uint64_t seq = 0;
    struct msg *pending = NULL;   /* produced but not yet pushed */
    long idle = 0;

    while (seq < MSGS || pending != NULL ||
           atomic_load_explicit(&freed_total, memory_order_acquire) < produced_total) {
        int progress = 0;
        /* produce a few */
        for (int k = 0; k < 4 && (pending != NULL || seq < MSGS); k++) {
            if (pending == NULL) {
                size_t size = pick_size(rng_next(&s));
                pending = malloc(sizeof *pending + size);
                if (pending == NULL)
                    prog_die("thread %d: malloc(%zu) failed", w->id, size);
                pending->origin = (uint32_t)w->id;
                pending->hops = 0;
                pending->seq = seq++;
                pending->size = size;
                pattern_fill(pending + 1, size, msg_tag(pending));
            }
            if (!ring_push(out, pending))
                break;
            pending = NULL;
            progress = 1;
        }
        /* consume what is there */
        for (int k = 0; k < 8; k++) {
            struct msg *m = ring_pop(in);
            if (m == NULL)
                break;
            consume(w, m, &s);
            progress = 1;
        }
        if (!progress && ++idle % 16 == 0)
            sched_yield();
    }
    return NULL;
}

/* Sum of remote frees over memalloc's arenas, or -1 on another allocator. */
static long remote_frees(unsigned *arenas)
{
    unsigned (*count)(void);
    int (*get)(unsigned, ma_arena_stats_t *);
    *(void **)&count = dlsym(RTLD_DEFAULT, "ma_arena_count");
    *(void **)&get = dlsym(RTLD_DEFAULT, "ma_arena_stats_get");
    if (count == NULL || get == NULL)
        return -1;
    long sum = 0;
    *arenas = count();
    for (unsigned i = 0; i < *arenas; i++) {
        ma_arena_stats_t st;
        if (get(i, &st) != 0)
            prog_die("ma_arena_stats_get(%u) failed", i);
        sum += (long)st.remote_frees;
    }
    return sum;
}

int main(int argc, char **argv)
{
    prog_name = "ring_storm";
    expect_allocator();
    if (argc > 1)
        nthreads = atoi(argv[1]);
    if (nthreads < 2 || nthreads > MAXTHREADS)
        prog_die("thread count must be 2..%d", MAXTHREADS);
    produced_total = (long)nthreads * MSGS;

    static struct worker workers[MAXTHREADS];
    pthread_t tid[MAXTHREADS];
    for (int i = 0; i < nthreads; i++) {
        workers[i].id = i;
        if (pthread_create(&tid[i], NULL, worker_main, &workers[i]) != 0)
            prog_die("pthread_create failed");
    }
    int checks = 0;
    for (int i = 0; i < nthreads; i++)
        if (pthread_join(tid[i], NULL) != 0)
            prog_die("pthread_join failed");
    long received = 0;
    for (int i = 0; i < nthreads; i++)
        received += workers[i].received;
    for (int i = 0; i < nthreads; i++)
        if (ring_pop(&rings[i]) != NULL)
            prog_die("ring %d not empty at the end", i);
    long freed = atomic_load(&freed_total);
    if (freed != produced_total || received != produced_total + atomic_load(&forwarded))
        prog_die("%ld messages produced, %ld freed, %ld received, %ld forwarded: lost or duplicated",
                 produced_total, freed, received, atomic_load(&forwarded));
    checks += heap_check();
    unsigned arenas = 0;
    long remote = remote_frees(&arenas);
    if (remote == 0 && arenas > 1)
        prog_die("memalloc counted no remote frees over %u arenas: threads did not spread", arenas);
    printf("ring_storm: threads=%d messages=%ld receipts=%ld reallocs_of_received=%ld forwarded=%ld ma_check_runs=%d\n",
           nthreads, produced_total, received, atomic_load(&remote_realloc), atomic_load(&forwarded), checks);
    if (remote >= 0)
        printf("ring_storm: memalloc_arenas=%u remote_frees=%ld\n", arenas, remote);
    printf("ring_storm: ok\n");
    return 0;
}
