/*
 * purge.c - giving the pages of free memory back to the kernel while the
 * address space stays mapped: the regular pass after megabytes of frees,
 * the pass before a fragmented arena grows, and the passes when threads
 * leave an arena (its last thread orphans it). Lock held throughout.
 */
#include "engine.h"

/* Without retention (MEMALLOC_RETAIN_MS=0) the regular pass runs after
 * purge_trigger() bytes were coalesced (engine.h), at most once per
 * PURGE_INTERVAL_MS, so memory a workload keeps recycling is not discarded
 * and faulted back in over and over (bench/NOTES.md, "Tuning constants").
 * With retention the decay pass below takes its place. */
#define PURGE_INTERVAL_MS 50

/* An arena about to map a chunk while a quarter or more of what it has
 * mapped (and a chunk's worth at least) is free is fragmented: its free
 * blocks are too small for what is asked now. Before it grows, it discards
 * the pages of its free blocks of GROW_PURGE_MIN_BLOCK and more (the
 * smallest with a whole page inside), at most once per
 * GROW_PURGE_INTERVAL_MS: memory that cannot serve the requests of the
 * moment need not stay resident while the heap grows around it
 * (bench/NOTES.md, "Tuning constants"). */
#define GROW_PURGE_MIN_BLOCK ((size_t)8 << 10)
#ifndef GROW_PURGE_INTERVAL_MS
#define GROW_PURGE_INTERVAL_MS 10
#endif

/* Discards the whole pages inside free block b, keeping its head and links
 * at the start and its footer (in the next block) intact. */
size_t block_purge(struct block *b)
{
    uintptr_t lo = MA_ALIGN_UP((uintptr_t)b + sizeof(struct block), MA_PAGE_SIZE);
    uintptr_t hi = ((uintptr_t)b + block_size(b)) & ~(uintptr_t)(MA_PAGE_SIZE - 1);
    if (hi <= lo)
        return 0;
    os_discard((void *)lo, hi - lo);
    return hi - lo;
}

/* Discards the pages of every free block of at least `min` bytes not yet
 * purged; with `aged`, only of those free since before the last decay pass
 * (stamped with an older epoch). Lock held. */
static void purge_blocks(struct arena *a, size_t min, int aged)
{
    a->reclaiming = 1;
    a->purges++;
    for (unsigned c = arena_class_of(min); c < N_CLASSES; c++) {
        for (struct block *b = a->heads[c]; b != NULL; b = b->next) {
            size_t h = hd_get(b);
            if ((h & B_PURGED) || (aged && block_stamp_of(b) + 1 >= a->epoch))
                continue;
            block_purge(b);
            hd_set(b, h | B_PURGED);
        }
    }
    a->reclaiming = 0;
}

/* Once the trigger is passed, the pass waits for the interval; the clock is
 * read at the first release past the trigger in each acquisition of the
 * lock, not at every one: a flush that releases a bin of hundreds of blocks
 * reads it once, and a pass is late by at most the rest of one lock hold. */
void arena_purge(struct arena *a)
{
    if (a->retain_ms != 0) {
        a->dirty = 0; /* the decay pass gives back what stays unused */
        return;
    }
    if (a->reclaiming)
        return; /* runs again at the next release past the trigger */
    if (a->purge_looked == a->lock_acquires)
        return;
    a->purge_looked = a->lock_acquires;
    if (!pass_due(&a->last_purge_ms, PURGE_INTERVAL_MS))
        return;
    arena_consolidate(a);
    a->dirty = 0;
    purge_blocks(a, PURGE_MIN_BLOCK, 0);
}

/* ---- decay: giving back what stays unused ---- */

void arena_decay(struct arena *a)
{
    if (a->retain_ms == 0 || a->reclaiming || !pass_due(&a->decay_ms, a->retain_ms))
        return;
    a->epoch++;
    chunks_release_unused(a);
    if (a->quick_blocks != 0)
        arena_consolidate(a);
    purge_blocks(a, PURGE_MIN_BLOCK, 1);
    /* An arena that has had no thread for a whole interval: nobody came to
     * reuse its holes, so their pages go too, as far down as a thread's
     * leaving would discard them. */
    if (__atomic_load_n(&a->threads, __ATOMIC_RELAXED) == 0 && a->epoch >= a->orphan_epoch + 2)
        purge_blocks(a, GROW_PURGE_MIN_BLOCK, 0);
}


void arena_purge_fragmented(struct arena *a)
{
    if (a->reclaiming || a->free_bytes < a->chunk_size || a->free_bytes < a->mapped / 4 ||
        !pass_due(&a->last_grow_purge_ms, GROW_PURGE_INTERVAL_MS))
        return;
    purge_blocks(a, GROW_PURGE_MIN_BLOCK, 0);
}

/* ---- threads leaving an arena ---- */

/* An arena that its last thread has left (the thread exited) has nobody
 * to reuse what it holds back: its parked blocks, its remote stacks and
 * the resident pages of its free blocks would stay as they are for as long
 * as other threads keep blocks of it alive, or for the rest of the
 * process. So the last thread out drains the stacks and coalesces what is
 * parked (arena_orphaned), and from then on every remote free into the
 * arena drains its stack at once, so those blocks coalesce too. A thread
 * that joins the arena again is its owner: the first remote free to see it
 * puts the drain bound back.
 *
 * With retention (MEMALLOC_RETAIN_MS, on by default) the memory itself
 * stays for the threads to come, as a living thread's does: programs that
 * start a thread per task or per round reuse it without page faults. The
 * decay passes unmap the chunks that stay wholly free and, once the arena
 * has had no thread for a whole interval, discard its holes' pages as the
 * passes below would (arena_decay).
 *
 * Without retention, wholly free chunks go back at once, and pages are
 * discarded (free blocks of GROW_PURGE_MIN_BLOCK and more, as before an
 * arena grows) when a thread leaves an arena that then holds
 * at least LEAVE_PURGE_MIN_IDLE bytes free or parked, and, if other
 * threads remain, three quarters of what it has mapped: the end of a
 * phase of the program, not one of many threads that come and go over a
 * heap they keep reusing. At most once per LEAVE_PURGE_INTERVAL_MS
 * (bench/NOTES.md, "Memory after threads exit" and "Tuning constants"). */
#define LEAVE_PURGE_MIN_IDLE ((size_t)8 << 20)
#ifndef LEAVE_PURGE_INTERVAL_MS
#define LEAVE_PURGE_INTERVAL_MS 10
#endif

/* orphan: the arena has no threads. With retention nothing is discarded
 * here, not even by the remote frees that drain a threadless arena: what
 * the next thread would reuse stays resident, and the decay passes give
 * back what stays unused (arena_decay). */
void leave_purge(struct arena *a, int orphan)
{
    size_t idle = a->free_bytes + a->quick_bytes;
    if (a->retain_ms != 0 || a->reclaiming || idle < LEAVE_PURGE_MIN_IDLE || (!orphan && idle < a->mapped - a->mapped / 4) ||
        !pass_due(&a->last_leave_purge_ms, LEAVE_PURGE_INTERVAL_MS))
        return;
    arena_consolidate(a);
    purge_blocks(a, GROW_PURGE_MIN_BLOCK, 0);
}

void arena_orphaned(struct arena *a)
{
    arena_set_orphan(a, 1);
    arena_drain(a);
    arena_consolidate(a);
    if (a->retain_ms != 0) {
        /* Kept for the next thread to come, as a thread's own memory is:
         * the decay passes give back what stays unused (arena_decay). */
        a->orphan_epoch = a->epoch;
        return;
    }
    if (a->empty_chunks > a->reserve)
        chunks_release_free(a, a->empty_chunks - a->reserve);
    leave_purge(a, 1);
}

void arena_thread_left(struct arena *a)
{
    leave_purge(a, 0);
}
