/*
 * process.h - process-wide state and its lifecycle (process.c): the arena
 * table, lazy initialisation, the fork handlers and the thread-exit hook.
 */
#ifndef MA_PROCESS_H
#define MA_PROCESS_H

#include <stddef.h>

#include "../base/base.h"

struct arena;
MA_HIDDEN extern struct arena *ma_arenas;   /* set once at init */
MA_HIDDEN extern unsigned ma_narenas;       /* set once at init */

/* Requests below this may be served from an arena: the mmap threshold, or
 * 0 before init and in check mode, so that one comparison on malloc's fast
 * path sends both of those to the slow path. set once at init. */
MA_HIDDEN extern size_t ma_fast_limit;

/* 1 once initialisation is complete. */
MA_HIDDEN extern int ma_ready; /* atomic */

/* Initialises the allocator (never allocates; thread-safe). */
MA_HIDDEN MA_COLD void process_init(void);
/* Initialises the allocator if nothing has yet. */
static inline void ma_ensure_init(void)
{
    if (ma_unlikely(!__atomic_load_n(&ma_ready, __ATOMIC_ACQUIRE)))
        process_init();
}

/* 1 once any allocation has been served (a thread took an arena, or a
 * large block was mapped): mallopt's structural options are refused from
 * then on. */
MA_HIDDEN extern int ma_allocated; /* atomic */
static inline void process_note_allocation(void)
{
    if (ma_unlikely(!__atomic_load_n(&ma_allocated, __ATOMIC_RELAXED)))
        __atomic_store_n(&ma_allocated, 1, __ATOMIC_RELEASE);
}
/* mallopt(): M_MMAP_THRESHOLD and M_ARENA_MAX before the first allocation
 * (else refused), M_TRIM_THRESHOLD and M_TOP_PAD accepted, anything else
 * refused; 1 if accepted, 0 if not, as glibc. */
MA_HIDDEN int process_mallopt(int param, int value);
/* Registers the calling thread for the thread-exit hook (its cache goes back
 * to its arena when it exits). Once per thread, from its first slow path. */
MA_HIDDEN void process_thread_start(void);

#endif /* MA_PROCESS_H */
