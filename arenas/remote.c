/*
 * remote.c - blocks freed by threads of other arenas: pushed on the
 * owner's lock-free stacks (one per quick class and one for bigger
 * blocks) with one compare-and-swap, taken whole by the owner's bins
 * without the lock, or drained under the lock into the quick and free
 * lists, each block checked on the way.
 */
#include "engine.h"

/* ---- the freeing thread's side ---- */

static inline unsigned remote_class(size_t size)
{
    return size <= QUICK_MAX_BLOCK ? arena_class_of(size) : REMOTE_BIG;
}

void arena_free_remote(struct arena *a, void *p, size_t size)
{
    unsigned cls = remote_class(size);
    /* The key in the second payload word marks the block as pending, so a
     * second free of it is caught instead of linking it twice (which would
     * make the stack a cycle). */
    ((uintptr_t *)p)[1] = cached_key(p);
    uintptr_t *top = &a->remote_top[cls];
    uintptr_t old = __atomic_load_n(top, __ATOMIC_RELAXED), pending;
    do {
        link_set_raw(p, remote_payload(old)); /* LIST_END on an empty stack */
        pending = remote_count(old) + (remote_count(old) < REMOTE_COUNT_MAX);
    } while (!__atomic_compare_exchange_n(top, &old, (uintptr_t)p | (pending << REMOTE_PTR_BITS), 1,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (ma_unlikely(pending >= __atomic_load_n(&a->remote_drain_at, __ATOMIC_RELAXED) ||
                    pending * size >= REMOTE_DRAIN_BYTES) &&
        ma_lock_try(&a->lock)) {
        a->lock_acquires++;
        arena_drain_class(a, cls);
        /* An arena with no threads left has no owner to drain it: the
         * pusher does, at every push (arena_orphaned lowered the bound),
         * and the blocks coalesce at once. A thread that has joined since
         * is the owner again: the bound goes back up. */
        if (__atomic_load_n(&a->threads, __ATOMIC_RELAXED) == 0)
            leave_purge(a, 1);
        else
            __atomic_store_n(&a->remote_drain_at, REMOTE_DRAIN_BOUND, __ATOMIC_RELAXED);
        ma_lock_release(&a->lock);
    }
}

/* ---- the owner's side ---- */

/* Empties remote stack cls and returns its old word (REMOTE_EMPTY if it
 * was empty): a plain load first, so an empty stack costs no write to a
 * shared line. */
static inline uintptr_t stack_take(struct arena *a, unsigned cls)
{
    if (__atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED) == REMOTE_EMPTY)
        return REMOTE_EMPTY;
    return __atomic_exchange_n(&a->remote_top[cls], REMOTE_EMPTY, __ATOMIC_ACQUIRE);
}

void *arena_remote_take(struct arena *a, unsigned cls, uint32_t max, uint32_t *count)
{
    uintptr_t top = __atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED);
    if (top == REMOTE_EMPTY || remote_count(top) > max)
        return NULL;
    top = __atomic_exchange_n(&a->remote_top[cls], REMOTE_EMPTY, __ATOMIC_ACQUIRE);
    if (top == REMOTE_EMPTY)
        return NULL;
    if (!__atomic_load_n(&a->remote_taken[cls], __ATOMIC_RELAXED))
        __atomic_store_n(&a->remote_taken[cls], 1, __ATOMIC_RELAXED);
    void *head = remote_payload(top);
    uint64_t n = remote_count(top);
    if (ma_unlikely(n >= REMOTE_COUNT_MAX)) /* the count saturated: count them */
        for (n = 0, top = (uintptr_t)head; top != 0; top = (uintptr_t)link_get_aligned((void *)top))
            n++;
    *count = (uint32_t)n;
    return head;
}

void arena_drain_class(struct arena *a, unsigned cls)
{
    void *p = remote_payload(stack_take(a, cls));
    if (p == LIST_END)
        return;
    /* Parked for the arena's threads, if it has any. */
    int park = __atomic_load_n(&a->threads, __ATOMIC_RELAXED) != 0;
    uint64_t n = 0;
    while (p != LIST_END) {
        /* Validated in full when it was pushed; what can have changed since
         * is a second free of it, or a write over it after the free (so the
         * link is checked against the pagemap before it is followed). */
        void *next = link_raw(p);
        link_check(p, next, PAGEMAP_CHUNK + (int)a->index);
        struct block *b = block_of(p);
        if (ma_unlikely(!(hd_get(b) & B_INUSE) || ((uintptr_t *)p)[1] != cached_key(p)))
            ma_fatal("free", "double free detected or freed block overwritten (remote-free stack)", p);
        if (ma_unlikely(++n > a->mapped / B_MIN))
            ma_fatal("free", "remote-free stack is a cycle", p);
        size_t size = block_size(b);
        if (size <= QUICK_MAX_BLOCK && park) {
            /* Parked like a thread cache's flush, no coalescing per block;
             * it keeps the key it was pushed with (the parked key). */
            /* Totals kept per block: block_release below may purge or
             * consolidate, which must see the lists and totals agree. */
            link_set(p, NULL);
            quick_push(a, arena_class_of(size), p, 1, size);
        } else {
            ((uintptr_t *)p)[1] = 0;
            block_release(a, b);
        }
        p = next;
    }
    a->remote_frees += n;
    a->frees += n;
    if (ma_unlikely(quick_over(a)))
        arena_consolidate(a);
}

void arena_drain_stale(struct arena *a)
{
    for (unsigned cls = 0; cls < REMOTE_STACKS; cls++) {
        if (__atomic_load_n(&a->remote_top[cls], __ATOMIC_RELAXED) == REMOTE_EMPTY)
            continue;
        if (__atomic_load_n(&a->remote_taken[cls], __ATOMIC_RELAXED))
            __atomic_store_n(&a->remote_taken[cls], 0, __ATOMIC_RELAXED);
        else
            arena_drain_class(a, cls);
    }
}

void arena_drain(struct arena *a)
{
    for (unsigned cls = 0; cls < REMOTE_STACKS; cls++)
        arena_drain_class(a, cls);
}

void arena_set_orphan(struct arena *a, int orphan)
{
    __atomic_store_n(&a->remote_drain_at, orphan ? 1 : REMOTE_DRAIN_BOUND, __ATOMIC_RELAXED);
}
