/*
 * fork_storm.c - hundreds of fork()s from a process whose other threads
 * never stop allocating.
 *
 * NWORKERS threads allocate, verify, realloc and free without pause, and
 * trade blocks through shared slots (so many frees are cross-thread). The
 * main thread forks NFORKS_MAIN times with up to INFLIGHT children alive at
 * once, while FORKERS other threads fork NFORKS_THREAD times each, all at
 * the same time. Every child:
 *   - verifies and frees every block it inherited (blocks of threads that
 *     do not exist in the child, and of arenas whose locks were held by
 *     them at the moment of the fork);
 *   - churns blocks in its main thread, starts a thread that allocates
 *     blocks which the child's main thread frees (cross-thread in the
 *     child), and every GRANDCHILD_EVERY-th child forks a grandchild that
 *     allocates and exits;
 *   - runs memalloc's heap checker when memalloc is the allocator, and
 *     returns from main (exit(), atexit and stdio included).
 * A pthread_atfork handler that allocates runs in every fork.
 *
 * Nothing can hang: each child arms alarm(CHILD_DEADLINE) first thing, the
 * parent kills a child that outlives its deadline (for one stuck in fork's
 * own child handlers, before it could arm the alarm), and a watchdog thread
 * ends the parent if no fork completes for WATCHDOG seconds. The first
 * failure ends the run with a "fork_storm[pid]: ..." line on stderr.
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define NWORKERS 6
#define FORKERS 2
#define NFORKS_MAIN 400
#define NFORKS_THREAD 50
#define INFLIGHT 4
#define WORKER_SLOTS 96
#define SHARED_SLOTS 64
#define CHILD_OPS 1500
#define GRANDCHILD_EVERY 10
#define CHILD_DEADLINE 30
#define WATCHDOG 90

static _Atomic(struct blk *) worker_slot[NWORKERS][WORKER_SLOTS];
static _Atomic(struct blk *) shared_slot[SHARED_SLOTS];
static atomic_int stop;
static atomic_long worker_ops;
static atomic_long forks_done;
static atomic_int prepare_runs, parent_runs, child_runs;
static atomic_long child_checks;   /* children that ran ma_check (counted by exit code) */

static size_t pick_size(uint64_t r)
{
    unsigned k = (unsigned)(r & 255);
    r >>= 8;
    if (k == 0)
        return 256 * 1024 + r % (768 * 1024);   /* large path */
    if (k < 20)
        return 1024 + r % (24 * 1024);
    return r % 400;
}

/* ---- the allocating threads ---- */

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = rng_seed((uint64_t)id, 99);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&s);
        _Atomic(struct blk *) *slot = &worker_slot[id][r % WORKER_SLOTS];
        /* a slot holds only complete blocks: take it out before working */
        struct blk *b = atomic_exchange(slot, NULL);
        switch ((r >> 32) % 8) {
        case 0: {   /* trade through the shared slots */
            struct blk *n = blk_new(pick_size(rng_next(&s)), r, 0);
            n = atomic_exchange(&shared_slot[(r >> 16) % SHARED_SLOTS], n);
            if (n != NULL)
                blk_free(n, "shared block in a worker");
            break;
        }
        case 1:
            if (b != NULL)
                b = blk_resize(b, pick_size(rng_next(&s)), r);
            break;
        default:
            if (b != NULL) {
                blk_free(b, "worker block");
                b = NULL;
            } else {
                b = blk_new(pick_size(rng_next(&s)), r, (r >> 40) % 16 == 0);
            }
        }
        if (b != NULL)
            atomic_store(slot, b);
        atomic_fetch_add_explicit(&worker_ops, 1, memory_order_relaxed);
    }
    return NULL;
}

/* ---- atfork handlers that allocate ---- */

static void handler_churn(uint64_t tag)
{
    struct blk *a = blk_new(180, tag, 0);
    struct blk *b = blk_new(300 * 1024, tag + 1, 1);
    blk_free(a, "atfork block");
    blk_free(b, "atfork large block");
}

static void at_prepare(void) { handler_churn(11); atomic_fetch_add(&prepare_runs, 1); }
static void at_parent(void) { handler_churn(22); atomic_fetch_add(&parent_runs, 1); }
static void at_child(void) { handler_churn(33); atomic_fetch_add(&child_runs, 1); }

/* ---- the child ---- */

static void on_alarm(int sig)
{
    (void)sig;
    prog_die("deadline of %d s expired (deadlock?)", CHILD_DEADLINE);
}

static void churn(uint64_t seed, int ops)
{
    struct blk *slots[64] = { 0 };
    uint64_t s = rng_seed(seed, 5);
    for (int i = 0; i < ops; i++) {
        uint64_t r = rng_next(&s);
        struct blk **slot = &slots[r % 64];
        if (*slot == NULL)
            *slot = blk_new(pick_size(rng_next(&s)), r, 0);
        else if ((r >> 32) % 5 == 0)
            *slot = blk_resize(*slot, pick_size(rng_next(&s)), r);
        else {
            blk_free(*slot, "child block");
            *slot = NULL;
        }
    }
    for (int i = 0; i < 64; i++)
        if (slots[i] != NULL)
            blk_free(slots[i], "child block");
}

/* blocks passed from the child's second thread to its main thread */
#define HANDOFF 64
static struct blk *handoff[HANDOFF];
static int handoff_n, handoff_done;
static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t handoff_cond = PTHREAD_COND_INITIALIZER;

static void *child_thread(void *arg)
{
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 6);
    churn(rng_next(&s), CHILD_OPS / 4);
    for (int i = 0; i < 500; i++) {
        struct blk *b = blk_new(pick_size(rng_next(&s)), rng_next(&s), 0);
        pthread_mutex_lock(&handoff_lock);
        while (handoff_n == HANDOFF)
            pthread_cond_wait(&handoff_cond, &handoff_lock);
        handoff[handoff_n++] = b;
        pthread_cond_broadcast(&handoff_cond);
        pthread_mutex_unlock(&handoff_lock);
    }
    pthread_mutex_lock(&handoff_lock);
    handoff_done = 1;
    pthread_cond_broadcast(&handoff_cond);
    pthread_mutex_unlock(&handoff_lock);
    return NULL;
}

static int wait_child(pid_t pid, double secs, const char *who);

static int child_main(uint64_t seed)
{
    alarm(CHILD_DEADLINE);
    if (atomic_load(&child_runs) != 1 || atomic_load(&prepare_runs) == 0)
        prog_die("atfork handlers did not run as expected in the child");
    /* everything inherited is complete and ours to free */
    for (int w = 0; w < NWORKERS; w++)
        for (int i = 0; i < WORKER_SLOTS; i++) {
            struct blk *b = atomic_exchange(&worker_slot[w][i], NULL);
            if (b != NULL)
                blk_free(b, "inherited worker block");
        }
    for (int i = 0; i < SHARED_SLOTS; i++) {
        struct blk *b = atomic_exchange(&shared_slot[i], NULL);
        if (b != NULL)
            blk_free(b, "inherited shared block");
    }
    churn(seed, CHILD_OPS);

    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)seed) != 0)
        prog_die("pthread_create failed in the child");
    int freed = 0;
    pthread_mutex_lock(&handoff_lock);
    for (;;) {
        while (handoff_n > 0) {
            blk_free(handoff[--handoff_n], "block from the child's thread");
            freed++;
        }
        pthread_cond_broadcast(&handoff_cond);
        if (handoff_done)
            break;
        pthread_cond_wait(&handoff_cond, &handoff_lock);
    }
    pthread_mutex_unlock(&handoff_lock);
    if (pthread_join(t, NULL) != 0)
        prog_die("pthread_join failed in the child");
    if (freed != 500)
        prog_die("the child's thread handed over %d blocks, expected 500", freed);

    if (seed % GRANDCHILD_EVERY == 0) {
        pid_t g = fork();
        if (g < 0)
            prog_die("fork of a grandchild failed: %s", strerror(errno));
        if (g == 0) {
            alarm(CHILD_DEADLINE);
            churn(seed + 1, CHILD_OPS / 2);
            heap_check();
            _exit(0);
        }
        if (!wait_child(g, CHILD_DEADLINE, "grandchild"))
            prog_die("grandchild failed");
    }
    churn(seed + 2, CHILD_OPS / 4);
    return heap_check() ? 3 : 0;   /* 3: passed, and ma_check ran */
}

/* ---- the parent ---- */

/* Waits at most `secs` for `pid`, then kills it. Returns 1 for exit status
 * 0 (or 3: success after running ma_check), else reports and returns 0. */
static int wait_child(pid_t pid, double secs, const char *who)
{
    double end = now_sec() + secs;
    long nap = 20000;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            prog_say("waitpid(%s %d): %s", who, (int)pid, strerror(errno));
            return 0;
        }
        if (now_sec() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            prog_say("%s %d still running after %.0f s: killed (deadlock in fork?)", who, (int)pid, secs);
            return 0;
        }
        struct timespec ts = { 0, nap };
        nanosleep(&ts, NULL);
        if (nap < 5000000)
            nap *= 2;
    }
    if (WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3)) {
        if (WEXITSTATUS(st) == 3)
            atomic_fetch_add(&child_checks, 1);
        return 1;
    }
    if (WIFSIGNALED(st))
        prog_say("%s %d killed by signal %d (%s)", who, (int)pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        prog_say("%s %d exited with status %d", who, (int)pid, WEXITSTATUS(st));
    return 0;
}

static pid_t fork_child(uint64_t seed)
{
    pid_t pid = fork();
    if (pid < 0)
        prog_die("fork failed: %s", strerror(errno));
    if (pid == 0)
        exit(child_main(seed));
    return pid;
}

static void *forker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < NFORKS_THREAD; i++) {
        pid_t pid = fork_child(100000u * (unsigned)(id + 1) + (unsigned)i);
        if (!wait_child(pid, CHILD_DEADLINE + 10, "child of a forking thread"))
            prog_die("stopping at the first failed child");
        atomic_fetch_add(&forks_done, 1);
    }
    return NULL;
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    long last = -1;
    double since = now_sec();
    while (!atomic_load(&stop)) {
        long d = atomic_load(&forks_done);
        if (d != last) {
            last = d;
            since = now_sec();
        } else if (now_sec() - since > WATCHDOG) {
            prog_die("no fork completed for %d s after %ld forks (deadlock?)", WATCHDOG, d);
        }
        struct timespec ts = { 0, 100000000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(void)
{
    prog_name = "fork_storm";
    expect_allocator();
    signal(SIGALRM, on_alarm);
    /* nothing may sit in a stdio buffer across fork: children exit() */
    setvbuf(stdout, NULL, _IONBF, 0);
    free(blk_new(64, 1, 0));
    if (pthread_atfork(at_prepare, at_parent, at_child) != 0)
        prog_die("pthread_atfork failed");

    pthread_t workers[NWORKERS], forkers[FORKERS], watchdog;
    if (pthread_create(&watchdog, NULL, watchdog_main, NULL) != 0)
        prog_die("pthread_create failed");
    for (int i = 0; i < NWORKERS; i++)
        if (pthread_create(&workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0)
            prog_die("pthread_create failed");
    while (atomic_load(&worker_ops) < 20000) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < FORKERS; i++)
        if (pthread_create(&forkers[i], NULL, forker_main, (void *)(intptr_t)i) != 0)
            prog_die("pthread_create failed");

    pid_t inflight[INFLIGHT] = { 0 };
    for (int f = 0; f < NFORKS_MAIN; f++) {
        int k = f % INFLIGHT;
        if (inflight[k] != 0) {
            if (!wait_child(inflight[k], CHILD_DEADLINE + 10, "child"))
                prog_die("stopping at the first failed child (fork %d)", f - INFLIGHT);
            atomic_fetch_add(&forks_done, 1);
        }
        inflight[k] = fork_child((uint64_t)f);
    }
    for (int k = 0; k < INFLIGHT; k++)
        if (inflight[k] != 0) {
            if (!wait_child(inflight[k], CHILD_DEADLINE + 10, "child"))
                prog_die("stopping at the first failed child");
            atomic_fetch_add(&forks_done, 1);
        }
    for (int i = 0; i < FORKERS; i++)
        if (pthread_join(forkers[i], NULL) != 0)
            prog_die("pthread_join failed");
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++)
        if (pthread_join(workers[i], NULL) != 0)
            prog_die("pthread_join failed");
    pthread_join(watchdog, NULL);

    for (int w = 0; w < NWORKERS; w++)
        for (int i = 0; i < WORKER_SLOTS; i++) {
            struct blk *b = atomic_exchange(&worker_slot[w][i], NULL);
            if (b != NULL)
                blk_free(b, "worker block at the end");
        }
    for (int i = 0; i < SHARED_SLOTS; i++) {
        struct blk *b = atomic_exchange(&shared_slot[i], NULL);
        if (b != NULL)
            blk_free(b, "shared block at the end");
    }
    int checked = heap_check();
    long total = NFORKS_MAIN + FORKERS * NFORKS_THREAD;
    if (atomic_load(&forks_done) != total)
        prog_die("%ld forks completed, expected %ld", atomic_load(&forks_done), total);
    if (atomic_load(&prepare_runs) != total || atomic_load(&parent_runs) != total ||
        atomic_load(&child_runs) != 0)
        prog_die("atfork handlers ran %d/%d/%d times, expected %ld/%ld/0",
                 atomic_load(&prepare_runs), atomic_load(&parent_runs), atomic_load(&child_runs), total, total);
    printf("fork_storm: forks=%ld (from %d threads, up to %d children at once) allocating_threads=%d "
           "worker_ops=%ld children_that_ran_ma_check=%ld parent_ma_check=%d\n",
           total, 1 + FORKERS, INFLIGHT + FORKERS, NWORKERS, atomic_load(&worker_ops),
           atomic_load(&child_checks), checked);
    printf("fork_storm: ok\n");
    return 0;
}
