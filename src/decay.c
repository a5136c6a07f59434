/*
 * decay.c - the background purger. The decay passes also run as arena
 * locks are taken and as large blocks come and go, but a program that stops
 * allocating would then keep its free memory for ever; this thread runs
 * them once per MEMALLOC_RETAIN_MS. It is started lazily, from an
 * allocation path with no lock held, the first time memory is retained; it
 * blocks every signal (the program's handlers never run on it) and never
 * allocates.
 */
#include <pthread.h>
#include <signal.h>

#include "decay.h"
#include "config.h"
#include "large.h"
#include "process.h"
#include "tcache.h"
#include "../arenas/arena.h"
#include "../base/os.h"

int decay_started;

/* The buffer of decay_internal_alloc: each block a 16-byte header (its
 * size) and its payload, bumped forward; once full, requests go to the
 * ordinary heap. */
#define INTERNAL_BYTES ((size_t)64 << 10)
static char internal_buf[INTERNAL_BYTES] __attribute__((aligned(4096)));
static size_t internal_used; /* guarded by decay_started's transition (one creator at a time) */

void *decay_internal_alloc(size_t n, size_t align)
{
    if (align < MA_ALIGN)
        align = MA_ALIGN;
    if (n > INTERNAL_BYTES || align > 4096)
        return NULL;
    size_t at = MA_ALIGN_UP(internal_used + 16, align);
    if (at + n > INTERNAL_BYTES)
        return NULL;
    internal_used = MA_ALIGN_UP(at + n, MA_ALIGN);
    ((size_t *)(internal_buf + at))[-1] = n;
    return internal_buf + at;
}

int decay_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)internal_buf < INTERNAL_BYTES;
}

size_t decay_internal_size(const void *p)
{
    return ((const size_t *)p)[-1];
}

static void *purger(void *unused)
{
    (void)unused;
    for (;;) {
        os_sleep_ms(ma_cfg.retain_ms);
        for (unsigned i = 0; i < ma_narenas; i++) {
            struct arena *a = &ma_arenas[i];
            arena_lock(a);
            arena_decay(a);
            arena_unlock(a);
        }
        large_decay();
    }
    return NULL;
}

void decay_start(void)
{
    int expected = 0;
    if (ma_cfg.retain_ms == 0 ||
        !__atomic_compare_exchange_n(&decay_started, &expected, 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t t;
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, (size_t)64 << 10);
    /* The new thread inherits this mask: every signal blocked. What
     * pthread_create allocates comes from the internal buffer: the
     * countdown made negative sends every allocation to the sampling path,
     * which serves it from there while `internal` is set. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int64_t left = ma_tc.prof_left;
    ma_tc.internal = 1;
    ma_tc.prof_left = -1;
    int err = pthread_create(&t, &attr, purger, NULL);
    ma_tc.internal = 0;
    ma_tc.prof_left = left;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0)
        __atomic_store_n(&decay_started, -1, __ATOMIC_RELAXED); /* the passes still run on activity */
}

void decay_fork_child(void)
{
    if (__atomic_load_n(&decay_started, __ATOMIC_RELAXED) == 1)
        __atomic_store_n(&decay_started, 0, __ATOMIC_RELAXED);
}
