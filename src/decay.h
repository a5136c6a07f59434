/*
 * decay.h - the background purger: one thread, started the first time the
 * allocator retains free memory, that runs the decay passes of every arena
 * and of the large cache once per MEMALLOC_RETAIN_MS, so that a program
 * that goes idle still gives back what it no longer uses.
 */
#ifndef MA_DECAY_H
#define MA_DECAY_H

#include "../base/base.h"

MA_HIDDEN extern int decay_started; /* atomic: 0 not yet, 1 running, -1 could not start */

MA_HIDDEN MA_COLD void decay_start(void);
/* Starts the purger if memory is being retained and it is not running.
 * Call with no lock held. */
static inline void decay_wake(int retaining)
{
    if (ma_unlikely(retaining) && ma_unlikely(__atomic_load_n(&decay_started, __ATOMIC_RELAXED) == 0))
        decay_start();
}
/* What the C library allocates while it creates the purger (the thread's
 * TLS vector) is memalloc's own, not the program's: it comes from a small
 * static buffer, so the heap statistics show only the program's blocks.
 * Such a block is never freed while the purger lives; a free of it is a
 * no-op. */
MA_HIDDEN void *decay_internal_alloc(size_t n, size_t align);
/* Whether p is in that buffer, and the size served there. */
MA_HIDDEN int decay_owns(const void *p);
MA_HIDDEN size_t decay_internal_size(const void *p);
/* In a child after fork: the purger did not come along. */
MA_HIDDEN void decay_fork_child(void);

#endif /* MA_DECAY_H */
