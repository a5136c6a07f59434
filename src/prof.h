/*
 * prof.h - the heap profiler (MEMALLOC_PROF=1): a random sample of
 * allocations, on average one per MEMALLOC_PROF_SAMPLE bytes, records its
 * call stack; the profile (live and allocated bytes by stack) is written in
 * google-pprof's heap format, as folded stacks or as an SVG flame graph.
 *
 * prof.c keeps the tables and captures stacks; prof_out.c writes them.
 * Neither ever calls malloc: everything lives in memory mapped with os_map.
 */
#ifndef MA_PROF_H
#define MA_PROF_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../base/error.h"

/* ---- the interface of the allocation paths' hooks ---- */

/* set once at init: 1 when MEMALLOC_PROF=1 */
MA_HIDDEN extern int prof_on;
/* At process init, after config_load: reads the options, maps its tables. */
MA_HIDDEN void prof_init(void);
/* Bytes until this thread's next sample: drawn from an exponential
 * distribution with mean MEMALLOC_PROF_SAMPLE; INT64_MAX when profiling is
 * off. */
MA_HIDDEN int64_t prof_next_interval(void);
/* A frame to start a stack walk from: a return address, the stack pointer
 * once that call has returned, and rbp at that moment (what the walk would
 * have worked out for that frame itself). */
struct prof_frame {
    uintptr_t pc, sp, bp;
};

/* Block p (the caller asked for n bytes) was sampled: captures the call
 * stack (up to PROF_MAX_FRAMES frames, memalloc's own left out) from frame
 * `from` (NULL: from the caller's own frame) and records p in the live set
 * and the stack's allocated-over-the-run totals. Takes no lock while it
 * unwinds, so an allocation made by the unwinder cannot deadlock. */
MA_HIDDEN void prof_record(void *p, size_t n, const struct prof_frame *from);
/* The sampled path's work, profiling on: prof_record(p, n, frame) when p is
 * not NULL, the frame given in registers (pc 0: from the profiler's own
 * frame, as for a NULL `from`), with *left INT64_MAX while a stack is
 * walked; then the next interval (prof_next_interval()) stored in *left.
 * Returns p, so that the sampled
 * path can end in a jump here; the frame comes last, in the registers
 * where ma_alloc_sampled_at receives it. */
MA_HIDDEN void *prof_sample(void *p, size_t n, int64_t *left, uintptr_t pc, uintptr_t sp, uintptr_t bp);
/* The live set: the sampled blocks not yet freed, by address, in open
 * addressing. Inserts, rebuilds and snapshots hold prof.c's lock;
 * prof_forget takes a block out without it, by exchanging its key for
 * LIVE_GONE, a slot that probes go on past. A rebuild first ors
 * LIVE_MOVED into every key, so that a removal racing with it fails its
 * exchange and takes the lock, which the rebuild holds until the set is
 * whole again. */
struct live {
    uintptr_t key;              /* atomic: the block's address, or LIVE_* */
    struct prof_stack *stack;   /* guarded by the lock */
    uint64_t n;                 /* guarded by the lock: bytes asked */
};
struct live_set {
    size_t mask;                /* slots - 1 */
    struct live slot[];
};
#define LIVE_EMPTY ((uintptr_t)0)
#define LIVE_GONE ((uintptr_t)1)
#define LIVE_MOVED ((uintptr_t)2)

/* atomic: replaced under the lock; a replaced set stays mapped */
MA_HIDDEN extern struct live_set *prof_live;

/* A key's place in the live set (and a stack's hash step). */
static inline size_t prof_hash(uint64_t h)
{
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29));
}

/* prof_forget's way when its exchange did not happen: the set was being
 * rebuilt, or the key is not in it (a sample dropped for want of memory). */
MA_HIDDEN void prof_forget_locked(uintptr_t key);

/* p, a sampled block, is being freed or moved: drops it from the live set
 * without the lock and returns 1, or returns 0 when prof_forget_locked
 * must do it. Profiling on (only then is a block flagged as sampled).
 * Inline, so that the free of a sampled block makes no call. */
static inline int prof_forget_fast(void *p)
{
    uintptr_t key = (uintptr_t)p, k;
    struct live_set *t = __atomic_load_n(&prof_live, __ATOMIC_ACQUIRE);
    size_t j = prof_hash(key) & t->mask;
    /* A key with LIVE_MOVED (or the zero pages of a replaced set) ends
     * the run, as the empty slot does. */
    while ((k = __atomic_load_n(&t->slot[j].key, __ATOMIC_RELAXED)) != key) {
        if (k == LIVE_EMPTY || (k & LIVE_MOVED))
            return 0;
        j = (j + 1) & t->mask;
    }
    return __atomic_compare_exchange_n(&t->slot[j].key, &k, LIVE_GONE, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* p, a sampled block, is being freed or moved: drops it from the live set. */
static inline void prof_forget(void *p)
{
    if (ma_unlikely(!prof_forget_fast(p)))
        prof_forget_locked((uintptr_t)p);
}

/* At exit: writes MEMALLOC_PROF_FILE and MEMALLOC_PROF_SVG if set. */
MA_HIDDEN void prof_exit(void);

/* Fork handlers (process.c): the profile's lock is taken before fork and
 * released in the parent, re-initialised in the child. */
MA_HIDDEN void prof_fork_prepare(void);
MA_HIDDEN void prof_fork_release(void);
MA_HIDDEN void prof_fork_child(void);

/* The exit report's addition (stats.c): the `top` stacks holding the most
 * live bytes, estimated from the samples, with their frames symbolized. */
MA_HIDDEN void prof_print_leaks(struct ma_buf *b, unsigned top);

/* ---- between prof.c and prof_out.c ---- */

#define PROF_MAX_FRAMES 64

/* One distinct call stack and what was sampled through it. Raw figures
 * count the sampled blocks themselves (pprof scales those by the rate);
 * the est_ figures are scaled to estimated real blocks and bytes. In the
 * stack table only the allocated totals are kept up to date: the live
 * figures are summed from the live set when a snapshot is taken, so a
 * sample and its free touch one record less. */
struct prof_stack {
    uint64_t hash;
    uint32_t depth;             /* frames[0] is the allocating function */
    uint32_t index;             /* the record's place in the snapshot being taken */
    uint64_t alloc_count, alloc_bytes;  /* raw samples, over the run */
    uint64_t live_count, live_bytes;    /* raw samples live: in a snapshot only */
    double est_live_count, est_live_bytes; /* scaled: in a snapshot only */
    uintptr_t frames[];         /* return addresses, innermost first */
};

/* A consistent copy of the profile, taken under the lock and read without
 * it (symbolizing takes the dynamic loader's lock, which must never be
 * waited for while holding ours). */
struct prof_snapshot {
    struct prof_stack **stacks; /* nstacks pointers into the copy */
    size_t nstacks;
    uint64_t rate;              /* MEMALLOC_PROF_SAMPLE */
    void *map;                  /* the mapping holding all of it */
    size_t map_bytes;
};

/* 0, or -1 (errno ENOMEM) when the copy cannot be mapped. */
MA_HIDDEN int prof_snapshot_take(struct prof_snapshot *s);
MA_HIDDEN void prof_snapshot_drop(struct prof_snapshot *s);

/* The words of memory a walk's result depended on, in the order it read
 * them: each return address it followed (and the 0 that ended it), and
 * each saved rbp that a later frame's address was computed from. A walk
 * from the same frame that finds every one of them unchanged would read
 * the same words and give the same frames (prof.c). */
#define PROF_TRAIL 48
struct prof_trail {
    unsigned n;          /* reads kept */
    int whole;           /* 1: all of them fitted; 0: the walk cannot be replayed */
    int bp_used;         /* the walk used the starting frame's bp */
    struct prof_read {
        uintptr_t addr, value;
    } read[PROF_TRAIL + 1]; /* one more for prof.c's end marker */
};

/* The fast stack walk (prof_unwind.c) from frame f, which must be a frame
 * of the calling thread's stack that is still live: fills pcs[0..max)
 * with return addresses, innermost first (pcs[0] is f->pc), and
 * starts[0..nstarts) with the functions they lie in; returns how many, or
 * 0 when it cannot walk this stack (use _Unwind_Backtrace then). When t
 * is not NULL, it keeps the walk's trail there. */
MA_HIDDEN unsigned prof_unwind_from(const struct prof_frame *f, uintptr_t *pcs, uintptr_t *starts, unsigned max,
                                    unsigned nstarts, struct prof_trail *t);
/* Stores the caller's frame in f: its return address (the pc after the
 * call to prof_regs), its stack pointer after that call, and rbp. */
MA_HIDDEN void prof_regs(struct prof_frame *f);
MA_HIDDEN void prof_unwind_init(void);
/* Its lock, for the fork handlers. */
MA_HIDDEN void prof_unwind_lock(void);
MA_HIDDEN void prof_unwind_unlock(void);
MA_HIDDEN void prof_unwind_reset(void);

/* The output formats (prof_out.c), each written to fd from a snapshot. */
MA_HIDDEN void prof_write_pprof(int fd, const struct prof_snapshot *s);
MA_HIDDEN void prof_write_folded(int fd, const struct prof_snapshot *s);
MA_HIDDEN void prof_write_svg(int fd, const struct prof_snapshot *s);
/* Appends the name of the function holding return address pc: its symbol
 * (dladdr) or module+0xoffset. */
MA_HIDDEN void prof_symbol(struct ma_buf *b, uintptr_t pc);

#endif /* MA_PROF_H */
