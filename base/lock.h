/*
 * lock.h - the arenas' lock: one 32-bit word, taken with one compare-and-swap
 * and given back with one exchange, inline in the caller; the kernel (a
 * futex) only when a thread must sleep. It never allocates.
 *
 * A pthread mutex does the same through two calls into libc that first
 * dispatch on the mutex's kind (bench/NOTES.md, "The arena lock"). The
 * protocol is the classic three-state one that glibc's normal mutex also
 * uses: 0 free, 1 held, 2 held and someone may be sleeping, so the owner
 * makes the wake-up call only when it must.
 *
 * Acquire and release orders make it a lock for ThreadSanitizer too, which
 * models the atomics rather than knowing the function names.
 */
#ifndef MA_LOCK_H
#define MA_LOCK_H

#include <stdint.h>

#include "base.h"
#include "os.h"

struct ma_lock {
    uint32_t word; /* atomic: 0 free, 1 held, 2 held with possible sleepers */
};

/* Takes l if it is free; 1 on success. */
static inline int ma_lock_try(struct ma_lock *l)
{
    uint32_t free_word = 0;
    return __atomic_compare_exchange_n(&l->word, &free_word, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* The wait after a failed ma_lock_try: sleep until the word is free, and
 * leave holding it at 2, since other sleepers may remain. No spin first:
 * with more threads than CPUs a waiter that spins takes the CPU from the
 * holder it waits for (bench/NOTES.md, "The arena lock"). */
static MA_COLD void ma_lock_wait(struct ma_lock *l)
{
    while (__atomic_exchange_n(&l->word, 2, __ATOMIC_ACQUIRE) != 0)
        os_futex_wait(&l->word, 2);
}

/* Takes l; returns 1 if it had to wait for it (the contention count). */
static inline int ma_lock_acquire(struct ma_lock *l)
{
    if (ma_likely(ma_lock_try(l)))
        return 0;
    ma_lock_wait(l);
    return 1;
}

static inline void ma_lock_release(struct ma_lock *l)
{
    if (ma_unlikely(__atomic_exchange_n(&l->word, 0, __ATOMIC_RELEASE) == 2))
        os_futex_wake(&l->word);
}

#endif /* MA_LOCK_H */
