/*
 * process.c - process-wide state and its lifecycle: the arena table and
 * the options, lazy initialisation (which never allocates), the library's
 * constructor and destructor, the fork handlers, and the hook that returns
 * a thread's cache to its arena when the thread exits.
 */
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include "process.h"
#include "config.h"
#include "decay.h"
#include "large.h"
#include "prof.h"
#include "stats.h"
#include "tcache.h"
#include "../arenas/arena.h"
#include "../base/os.h"

struct arena *ma_arenas;            /* set once at init */
unsigned ma_narenas;                /* set once at init */
size_t ma_fast_limit;               /* set once at init */
int ma_ready;                       /* atomic: 1 once init is complete */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t exit_key;      /* set once at init: runs thread_exit */

static void thread_exit(void *unused)
{
    (void)unused;
    tcache_thread_exit();
}

/* Maps and sets up a table of n arenas. Before any allocation only: the
 * table it replaces (mallopt(M_ARENA_MAX)) must hold nothing. */
static int arenas_map(unsigned n)
{
    struct arena *t = os_map(MA_ALIGN_UP(n * sizeof(struct arena), MA_PAGE_SIZE));
    if (t == NULL)
        return -1;
    for (unsigned i = 0; i < n; i++)
        arena_init(&t[i], i, ma_cfg.chunk_size, ma_cfg.chunk_reserve, ma_cfg.retain_ms);
    struct arena *old = ma_arenas;
    size_t old_bytes = MA_ALIGN_UP(ma_narenas * sizeof(struct arena), MA_PAGE_SIZE);
    ma_arenas = t;
    ma_narenas = n;
    if (old != NULL)
        (void)os_unmap(old, old_bytes);
    return 0;
}

void process_init(void)
{
    pthread_mutex_lock(&init_lock);
    if (!__atomic_load_n(&ma_ready, __ATOMIC_ACQUIRE)) {
        config_load(environ, os_ncpus());
        if (arenas_map(ma_cfg.arenas) != 0)
            ma_fatal("init", "cannot map the arena table", NULL);
        arena_key_init();
        tcache_init();
        arena_chunk_shed = large_shed;
        pthread_key_create(&exit_key, thread_exit);
        stats_init();
        prof_init();
        ma_fast_limit = ma_cfg.check ? 0 : ma_cfg.mmap_threshold;
        tcache_set_limit(ma_fast_limit);
        if (ma_cfg.verbose)
            config_print(2);
        __atomic_store_n(&ma_ready, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_lock);
}

int ma_allocated;

int process_mallopt(int param, int value)
{
    ma_ensure_init();
    int ok = 0;
    pthread_mutex_lock(&init_lock);
    int early = !__atomic_load_n(&ma_allocated, __ATOMIC_ACQUIRE);
    switch (param) {
    case M_MMAP_THRESHOLD:
        if (early && value >= 4096 && (size_t)value <= ma_cfg.chunk_size / 4) {
            ma_cfg.mmap_threshold = (size_t)value;
            ma_fast_limit = ma_cfg.check ? 0 : ma_cfg.mmap_threshold;
            tcache_set_limit(ma_fast_limit);
            ok = 1;
        }
        break;
    case M_ARENA_MAX:
        if (early && value >= 1 && value <= MA_MAX_ARENAS && arenas_map((unsigned)value) == 0) {
            ma_cfg.arenas = (unsigned)value;
            ok = 1;
        }
        break;
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
        /* Accepted: memalloc gives free memory back by age
         * (MEMALLOC_RETAIN_MS), not by the size of a heap top. */
        ok = 1;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&init_lock);
    return ok;
}

void process_thread_start(void)
{
    /* The value only has to be non-NULL for the destructor to run; no
     * allocation for our key. */
    pthread_setspecific(exit_key, &ma_narenas);
}

/* ---- fork ---- */

/* Take every lock before fork() so the child never inherits one held by a
 * thread that does not exist there; both sides then release them: in the
 * child the forking thread is the one that holds them all. */
static void fork_prepare(void)
{
    ma_ensure_init();
    pthread_mutex_lock(&init_lock);
    /* The profiler's locks first: a stack walk holding one may allocate
     * (libgcc's FDE lookup can), which needs an arena lock. */
    prof_fork_prepare();
    for (unsigned i = 0; i < ma_narenas; i++)
        ma_lock_acquire(&ma_arenas[i].lock);
    large_lock_all();
}

static void fork_release(void)
{
    large_unlock_all();
    for (unsigned i = ma_narenas; i-- > 0;)
        ma_lock_release(&ma_arenas[i].lock);
    prof_fork_release();
    pthread_mutex_unlock(&init_lock);
}

/* The child has one thread: the others' arena counts go with them. */
static void fork_child(void)
{
    tcache_fork_child();
    decay_fork_child();
    /* The profiler's locks are made anew (prof_fork_child), the others
     * released by the thread that took them. */
    prof_fork_child();
    large_unlock_all();
    for (unsigned i = ma_narenas; i-- > 0;)
        ma_lock_release(&ma_arenas[i].lock);
    pthread_mutex_unlock(&init_lock);
}

/* ---- load and unload ---- */

/* Registered when the library loads, not on the first allocation, so that
 * an application's own fork handler that allocates cannot deadlock against
 * ours (handlers registered later run first in prepare). */
__attribute__((constructor)) static void memalloc_load(void)
{
    ma_ensure_init();
    pthread_atfork(fork_prepare, fork_release, fork_child);
}

/* The exit report (MEMALLOC_STATS, MEMALLOC_HEAP_MAP, the profiler's
 * files). A destructor runs after the program's own atexit handlers, so it
 * sees the final heap. */
__attribute__((destructor)) static void memalloc_unload(void)
{
    if (!__atomic_load_n(&ma_ready, __ATOMIC_ACQUIRE))
        return;
    if (ma_cfg.stats || ma_cfg.heap_map[0])
        stats_exit_report();
    prof_exit();
}
