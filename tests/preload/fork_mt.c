/*
 * fork_mt.c - fork() while other threads allocate, under any allocator.
 *
 * Worker threads allocate, fill, verify and free blocks without pause while
 * the main thread forks NFORKS times (and a second thread forks NTFORKS
 * times at the same moments). Each child, before doing anything else of its
 * own, verifies and frees the blocks it inherited (from the main thread and
 * from workers that do not exist in the child), then churns a few thousand
 * blocks in its main thread and in a new thread, and _exit()s. A
 * pthread_atfork handler that itself calls malloc/free runs in every fork.
 *
 * A deadlock cannot hang the test: each child gets alarm(CHILD_DEADLINE) as
 * soon as fork returns, the parent polls each child with a deadline and
 * kills it if it never finishes (e.g. stuck inside fork's child handlers),
 * and the parent arms alarm() around each fork() it performs. The first
 * failed child ends the test, so a broken allocator fails in seconds.
 *
 * Prints one deterministic line on success; any failure writes a line
 * starting with "fork_mt: " to stderr and exits non-zero.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NWORKERS 3          /* threads allocating during the forks */
#define NFORKS 200          /* forks from the main thread */
#define NTFORKS 20          /* forks from a second thread, concurrently */
#define WORKER_SLOTS 128    /* live blocks per worker */
#define NSHARED 64          /* blocks exchanged between workers */
#define NHELD 64            /* blocks the main thread holds across forks */
#define CHILD_OPS 2000      /* allocations per child thread */
#define CHILD_DEADLINE 20   /* seconds a child may live */
#define PARENT_DEADLINE 30  /* seconds for one fork + wait in the parent */

/* ---- failure reporting (no stdio, no malloc: usable anywhere) ---- */

static const char *volatile phase = "start";

static void say(const char *msg)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "fork_mt: [pid %d, %s] %s\n",
                     (int)getpid(), phase, msg);
    if (n > 0)
        (void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void die(const char *msg)
{
    say(msg);
    _exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    die("deadline expired (deadlock?)");
}

/* ---- patterned blocks ---- */

/* Every test block starts with this header; the rest of the block is a
 * pattern derived from the seed, so a block can be verified by anyone. */
struct hdr {
    size_t size;
    uint64_t seed;
};

static uint64_t rnd_next(uint64_t *s)
{
    /* xorshift64*: a private stream per thread, no shared state */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t pick_size(uint64_t r)
{
    if ((r & 255) == 0)
        return 65536 + (r >> 8) % (1024 * 1024);   /* large path */
    if ((r & 15) == 0)
        return 1024 + (r >> 8) % 16384;
    return sizeof(struct hdr) + (r >> 8) % 512;
}

static void fill(void *p, size_t size, uint64_t seed)
{
    struct hdr *h = p;
    h->size = size;
    h->seed = seed;
    unsigned char *b = (unsigned char *)(h + 1);
    size_t n = size - sizeof *h;
    size_t words = n / 8;
    uint64_t w = seed;
    for (size_t i = 0; i < words; i++) {
        w = w * 6364136223846793005ULL + 1442695040888963407ULL;
        memcpy(b + i * 8, &w, 8);
    }
    for (size_t i = words * 8; i < n; i++)
        b[i] = (unsigned char)(seed + i);
}

/* Checks the first `upto` bytes (the whole block when upto >= size). */
static int check_prefix(const void *p, size_t upto)
{
    const struct hdr *h = p;
    size_t size = h->size;
    if (size < sizeof *h || size > 2 * 1024 * 1024)
        return 0;
    if (upto > size)
        upto = size;
    const unsigned char *b = (const unsigned char *)(h + 1);
    size_t n = upto - sizeof *h;
    size_t full = size - sizeof *h;
    size_t words = full / 8;
    uint64_t w = h->seed;
    for (size_t i = 0; i < words && (i + 1) * 8 <= n; i++) {
        w = w * 6364136223846793005ULL + 1442695040888963407ULL;
        if (memcmp(b + i * 8, &w, 8) != 0)
            return 0;
    }
    for (size_t i = words * 8; i < n; i++)
        if (b[i] != (unsigned char)(h->seed + i))
            return 0;
    return 1;
}

static void *new_block(size_t size, uint64_t seed)
{
    void *p = malloc(size);
    if (p == NULL)
        die("malloc returned NULL");
    if (((uintptr_t)p & 15) != 0)
        die("malloc result not 16-byte aligned");
    fill(p, size, seed);
    return p;
}

static void drop_block(void *p)
{
    if (!check_prefix(p, SIZE_MAX))
        die("block contents corrupted");
    free(p);
}

/* Verifies p, reallocs it to a new size, checks the preserved prefix and
 * refills the block. */
static void *regrow_block(void *p, size_t size, uint64_t seed)
{
    if (!check_prefix(p, SIZE_MAX))
        die("block corrupted before realloc");
    size_t old = ((struct hdr *)p)->size;
    void *q = realloc(p, size);
    if (q == NULL)
        die("realloc returned NULL");
    /* the header still says `old`; only min(old, size) bytes survived */
    if (!check_prefix(q, size < old ? size : old))
        die("realloc lost the block's contents");
    fill(q, size, seed);
    return q;
}

/* ---- worker threads ---- */

static atomic_int stop;
static atomic_long worker_ops[NWORKERS];
/* A slot holds a block that is completely written and not being touched:
 * owners take a block out (exchange with NULL) before working on it, so a
 * child forked at any moment may verify and free whatever it finds. */
static _Atomic(void *) worker_slot[NWORKERS][WORKER_SLOTS];
static _Atomic(void *) shared_slot[NSHARED];

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = 0x9E3779B97F4A7C15ULL * (uint64_t)(id + 1);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rnd_next(&s);
        _Atomic(void *) *slot = &worker_slot[id][r % WORKER_SLOTS];
        void *p = atomic_exchange(slot, NULL);
        switch ((r >> 40) & 7) {
        case 0: /* cross-thread: trade a block through the shared slots */
            if (p != NULL)
                drop_block(p);
            p = new_block(pick_size(rnd_next(&s)), r);
            p = atomic_exchange(&shared_slot[(r >> 20) % NSHARED], p);
            if (p != NULL)
                drop_block(p);
            p = NULL;
            break;
        case 1: /* realloc to another size */
            if (p != NULL)
                p = regrow_block(p, pick_size(rnd_next(&s)), r);
            break;
        default:
            if (p != NULL) {
                drop_block(p);
                p = NULL;
            } else {
                p = new_block(pick_size(rnd_next(&s)), r);
            }
        }
        if (p != NULL)
            atomic_store(slot, p);
        atomic_fetch_add_explicit(&worker_ops[id], 1, memory_order_relaxed);
    }
    for (int i = 0; i < WORKER_SLOTS; i++) {
        void *p = atomic_exchange(&worker_slot[id][i], NULL);
        if (p != NULL)
            drop_block(p);
    }
    return NULL;
}

/* ---- atfork handlers that allocate ---- */

/* per-process counts; atomic: two threads fork concurrently */
static atomic_int prepare_runs, parent_runs, child_runs;

static void handler_work(uint64_t seed)
{
    void *a = new_block(200, seed);
    void *b = new_block(300000, seed + 1);   /* large path too */
    void *c = calloc(10, 100);
    if (c == NULL)
        die("calloc in an atfork handler returned NULL");
    for (int i = 0; i < 1000; i++)
        if (((unsigned char *)c)[i] != 0)
            die("calloc in an atfork handler: memory not zeroed");
    free(c);
    drop_block(b);
    drop_block(a);
}

static void at_prepare(void)
{
    handler_work(1);
    prepare_runs++;
}

static void at_parent(void)
{
    handler_work(2);
    parent_runs++;
}

static void at_child(void)
{
    handler_work(3);
    child_runs++;
}

/* ---- the child ---- */

static void churn(uint64_t seed, int ops)
{
    void *slots[256] = { 0 };
    uint64_t s = seed | 1;
    for (int i = 0; i < ops; i++) {
        uint64_t r = rnd_next(&s);
        void **slot = &slots[r % 256];
        if (*slot == NULL)
            *slot = new_block(pick_size(rnd_next(&s)), r);
        else if ((r >> 40) % 8 == 0)
            *slot = regrow_block(*slot, pick_size(rnd_next(&s)), r);
        else {
            drop_block(*slot);
            *slot = NULL;
        }
    }
    for (int i = 0; i < 256; i++)
        if (slots[i] != NULL)
            drop_block(slots[i]);
}

static void *child_thread(void *arg)
{
    churn((uint64_t)(uintptr_t)arg, CHILD_OPS);
    return NULL;
}

static void **held;   /* the main thread's blocks, inherited by children */

static void child_main(uint64_t seed, int from_main)
{
    alarm(CHILD_DEADLINE);
    phase = "child";
    if (child_runs != 1 || prepare_runs == 0)
        die("atfork handlers did not run as expected in the child");
    /* everything inherited must be intact and freeable here */
    if (from_main) {
        for (int i = 0; i < NHELD; i++)
            drop_block(held[i]);
        free(held);
    }
    for (int w = 0; w < NWORKERS; w++)
        for (int i = 0; i < WORKER_SLOTS; i++) {
            void *p = atomic_load(&worker_slot[w][i]);
            if (p != NULL)
                drop_block(p);
        }
    for (int i = 0; i < NSHARED; i++) {
        void *p = atomic_load(&shared_slot[i]);
        if (p != NULL)
            drop_block(p);
    }
    churn(seed, CHILD_OPS);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(seed * 3 + 1)) != 0)
        die("pthread_create failed in the child");
    if (pthread_join(t, NULL) != 0)
        die("pthread_join failed in the child");
    churn(seed + 7, CHILD_OPS / 4);
    _exit(0);
}

/* ---- the parent ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for `pid` at most `secs` seconds, then kills it. Returns 1 if the
 * child exited with status 0. */
static int wait_child(pid_t pid, double secs, int nth)
{
    double end = now() + secs;
    long nap = 50000; /* ns */
    int st;
    char msg[160];
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(msg, sizeof msg, "waitpid(child %d) failed: %s", nth, strerror(errno));
            say(msg);
            return 0;
        }
        if (now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            snprintf(msg, sizeof msg, "child %d did not finish within %.0f s (deadlock in fork/child?)", nth, secs);
            say(msg);
            return 0;
        }
        struct timespec ts = { 0, nap };
        nanosleep(&ts, NULL);
        if (nap < 10000000)
            nap *= 2;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 1;
    if (WIFSIGNALED(st))
        snprintf(msg, sizeof msg, "child %d killed by signal %d (%s)", nth, WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(msg, sizeof msg, "child %d exited with status %d", nth, WEXITSTATUS(st));
    say(msg);
    return 0;
}

/* Forks from a thread other than the main one, at the same time. */
static void *thread_forker(void *arg)
{
    (void)arg;
    for (int i = 0; i < NTFORKS; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork failed in the forking thread");
        if (pid == 0)
            child_main(1000 + (uint64_t)i, 0);
        if (!wait_child(pid, PARENT_DEADLINE, 1000 + i))
            die("stopping at the first failed child");
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Register after a first allocation, as a real program would: the
     * allocator's own fork handlers (if any) are then registered first. */
    held = malloc(NHELD * sizeof *held);
    if (held == NULL)
        die("malloc failed");
    for (int i = 0; i < NHELD; i++)
        held[i] = new_block(pick_size((uint64_t)i * 977 + 3), (uint64_t)i);
    if (pthread_atfork(at_prepare, at_parent, at_child) != 0)
        die("pthread_atfork failed");

    pthread_t workers[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        if (pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) != 0)
            die("pthread_create failed");
    /* make sure every worker is really running before the first fork */
    for (int i = 0; i < NWORKERS; i++)
        while (atomic_load(&worker_ops[i]) < 1000) {
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
        }

    pthread_t forker;
    if (pthread_create(&forker, NULL, thread_forker, NULL) != 0)
        die("pthread_create failed");

    uint64_t s = 12345;
    for (int f = 0; f < NFORKS; f++) {
        /* the held blocks change between forks */
        uint64_t r = rnd_next(&s);
        int i = (int)(r % NHELD);
        drop_block(held[i]);
        held[i] = new_block(pick_size(rnd_next(&s)), r);

        phase = "fork in parent";
        alarm(PARENT_DEADLINE);
        pid_t pid = fork();
        if (pid == 0)
            child_main(r, 1);
        alarm(0);
        if (pid < 0)
            die("fork failed");
        phase = "waiting for a child";
        if (!wait_child(pid, PARENT_DEADLINE, f))
            die("stopping at the first failed child");
    }
    phase = "joining";
    if (pthread_join(forker, NULL) != 0)
        die("pthread_join failed");
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++)
        if (pthread_join(workers[i], NULL) != 0)
            die("pthread_join failed");
    for (int i = 0; i < NSHARED; i++) {
        void *p = atomic_exchange(&shared_slot[i], NULL);
        if (p != NULL)
            drop_block(p);
    }
    for (int i = 0; i < NHELD; i++)
        drop_block(held[i]);
    free(held);

    if (prepare_runs != NFORKS + NTFORKS || parent_runs != NFORKS + NTFORKS)
        die("atfork prepare/parent handlers ran a wrong number of times");
    if (child_runs != 0)
        die("atfork child handler ran in the parent");
    printf("fork_mt: %d forks (%d from a second thread) with %d allocating threads: ok\n",
           NFORKS + NTFORKS, NTFORKS, NWORKERS);
    return 0;
}
