/*
 * threads.c - threads passing blocks to each other, with plain malloc and
 * free: nothing here knows about memalloc. `make run` runs it as
 *
 *     build/memalloc --stats build/examples/threads
 *
 * which is LD_PRELOAD=build/libmemalloc.so MEMALLOC_STATS=1, so memalloc
 * serves every malloc and prints its statistics when the program exits.
 *
 * THREADS threads stand in a ring, each with a small bounded queue. A thread
 * allocates a burst of blocks of assorted sizes, fills each with a pattern
 * that names its sender and sequence number, and pushes them onto the next
 * thread's queue; then it pops as many from its own queue, checks each
 * pattern and frees the block. Most blocks are therefore freed by a thread
 * other than the one that allocated them, often one of another arena: the
 * "remote" column of the statistics counts those frees.
 *
 * No deadlock: a queue holds QUEUE_CAP >= BURST blocks, so a thread blocked
 * pushing means its successor is behind by a whole queue, and a thread
 * blocked popping means its predecessor has not finished its own burst;
 * neither can hold all the way round the ring.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    THREADS = 4,
    ROUNDS = 2000,  /* bursts per thread */
    BURST = 32,     /* blocks per burst */
    QUEUE_CAP = 64, /* blocks a queue holds */
};

/* What every block starts with; the rest of the block is filled with a
 * byte derived from the sender and sequence number. */
struct msg {
    unsigned sender;
    unsigned seq;
    size_t size; /* bytes allocated, header included */
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* signalled on every push and pop */
    struct msg *slot[QUEUE_CAP];
    unsigned head, count;   /* guarded by lock */
};

static struct queue queues[THREADS];

static void queue_push(struct queue *q, struct msg *m)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE_CAP)
        pthread_cond_wait(&q->changed, &q->lock);
    q->slot[(q->head + q->count) % QUEUE_CAP] = m;
    q->count++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static struct msg *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->changed, &q->lock);
    struct msg *m = q->slot[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return m;
}

static unsigned char fill_byte(unsigned sender, unsigned seq)
{
    return (unsigned char)(sender * 31u + seq * 7u + 1u);
}

/* Sizes from 16 bytes to 4 KiB, mostly small, as a server's messages are;
 * one block in 1000 is 512 KiB, above the 256 KiB threshold, so the
 * statistics also show large objects (their own mappings). */
static size_t pick_size(unsigned seq)
{
    if (seq % 1000 == 999)
        return 512 * 1024;
    return sizeof(struct msg) + 16u + (seq * 2654435761u) % (seq % 8 ? 256u : 4096u);
}

static void *worker(void *arg)
{
    unsigned self = (unsigned)(uintptr_t)arg;
    struct queue *next = &queues[(self + 1) % THREADS];
    struct queue *mine = &queues[self];
    unsigned seq = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned i = 0; i < BURST; i++, seq++) {
            size_t size = pick_size(seq);
            struct msg *m = malloc(size);
            if (m == NULL) {
                perror("malloc");
                exit(1);
            }
            m->sender = self;
            m->seq = seq;
            m->size = size;
            memset(m + 1, fill_byte(self, seq), size - sizeof *m);
            queue_push(next, m);
        }
        for (unsigned i = 0; i < BURST; i++) {
            struct msg *m = queue_pop(mine);
            /* Every byte must still be what its sender wrote. */
            const unsigned char *bytes = (const unsigned char *)(m + 1);
            unsigned char want = fill_byte(m->sender, m->seq);
            for (size_t k = 0; k < m->size - sizeof *m; k++) {
                if (bytes[k] != want) {
                    fprintf(stderr, "threads: block %u from thread %u corrupted at byte %zu\n",
                            m->seq, m->sender, k);
                    exit(1);
                }
            }
            free(m);
        }
    }
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_mutex_init(&queues[i].lock, NULL);
        pthread_cond_init(&queues[i].changed, NULL);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            return 1;
        }
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("threads: %d threads passed %d blocks around a ring; every block arrived intact\n",
           THREADS, THREADS * ROUNDS * BURST);
    /* Flushed now: the statistics are written when the library unloads,
     * which is before exit() flushes a piped stdout. */
    fflush(stdout);
    return 0;
}
