/*
 * prof.c - the heap profiler's state: the sampling intervals, stack
 * capture, the live set (sampled blocks not yet freed, by address) and the
 * stack table (each distinct call stack once, with its live and allocated
 * figures), ma_prof_dump and the files written at exit.
 *
 * Never calls malloc: the tables live in memory mapped with os_map, and a
 * stack is captured before the profile's lock is taken, so an allocation
 * the unwinder makes (it is never sampled: the hooks see to that) cannot
 * wait for a lock its own thread holds.
 */
#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unwind.h>

#include "memalloc.h"
#include "config.h"
#include "process.h"
#include "prof.h"
#include "../base/error.h"
#include "../base/lock.h"
#include "../base/os.h"

int prof_on; /* set once at init */

/* set once at init: MEMALLOC_PROF_SAMPLE as a double, for the weights. */
static double prof_rate;

/* Guards every table below (a leaf lock: nothing is called under it that
 * could take another of memalloc's locks or allocate). */
static struct ma_lock prof_lock;

/* ---- arithmetic without libm ---- */

#define LN2 0.69314718055994530942

/* Natural logarithm of x > 0: x = m * 2^e with m in [0.71, 1.42), then
 * log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172: seven terms of
 * atanh's series leave an error below 1e-12. */
static double prof_log(double x)
{
    union { double d; uint64_t u; } v = { x };
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    double s = (m - 1.0) / (m + 1.0), z = s * s;
    double series = 1.0 + z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z * (1.0 / 13))))));
    return 2.0 * s * series + e * LN2;
}

/* exp(-x) for x >= 0: x = k ln 2 + r with r in [0, ln 2), exp(-r) from 13
 * terms of its series (relative error below 1e-12). */
static double prof_exp_neg(double x)
{
    if (x > 700.0)
        return 0.0;
    int k = (int)(x / LN2);
    double r = -(x - k * LN2), sum = 1.0;
    static const double inv_fact[] = { 1.0 / 12, 1.0 / 11, 1.0 / 10, 1.0 / 9, 1.0 / 8, 1.0 / 7,
                                       1.0 / 6,  1.0 / 5,  1.0 / 4,  1.0 / 3, 1.0 / 2, 1.0 };
    /* Horner: 1 + r(1 + r/2(1 + r/3(...))) */
    for (unsigned i = 0; i < sizeof inv_fact / sizeof inv_fact[0]; i++)
        sum = 1.0 + r * inv_fact[i] * sum;
    union { double d; uint64_t u; } scale;
    scale.u = (uint64_t)(1023 - k) << 52;
    return sum * scale.d;
}

/* 1 - exp(-x) for x >= 0, accurate for small x too. */
static double prof_one_minus_exp_neg(double x)
{
    if (x < 1e-4)
        return x * (1.0 - x * (0.5 - x / 6.0));
    return 1.0 - prof_exp_neg(x);
}

/* How many blocks of n bytes one sample of that size stands for: a block
 * of n bytes is sampled with probability 1 - exp(-n / rate) (the sampling
 * is a Poisson process over the bytes allocated). */
static double prof_weight(size_t n)
{
    return 1.0 / prof_one_minus_exp_neg((double)(n ? n : 1) / prof_rate);
}

/* ---- sampling intervals ---- */

/* The thread's generator state: 0 until its first draw seeds it. */
static __thread uint64_t prof_rng __attribute__((tls_model("initial-exec")));
static uint64_t prof_seeds; /* atomic: tells threads seeded at once apart */

/* The first draw's seed, out of line: the draw itself then needs no
 * saved registers. */
static MA_COLD void prof_seed(void)
{
    uint64_t n = __atomic_add_fetch(&prof_seeds, 1, __ATOMIC_RELAXED);
    prof_rng = (uintptr_t)&prof_rng ^ ((uint64_t)os_getpid() << 32) ^ (n * 0xd1342543de82ef95ull) ^ os_now_ms();
}

/* The generator: a counter stepped by PROF_WEYL (odd, so it runs through
 * every 64-bit value), multiplied by itself with a constant's bits flipped
 * into the 128-bit product, whose two halves are folded together. One
 * multiply where splitmix64's mixer takes two and three shifts; the layer
 * (the low 8 bits) and the point across it (the top 53) pass chi-square
 * tests of uniformity alone, together and in successive pairs. */
#define PROF_WEYL 0x9e3779b97f4a7c15ull
static inline uint64_t prof_mix(uint64_t z)
{
    unsigned __int128 m = (unsigned __int128)z * (z ^ 0xbf58476d1ce4e5b9ull);
    return (uint64_t)(m >> 64) ^ (uint64_t)m;
}

static inline uint64_t prof_random(void)
{
    if (ma_unlikely(prof_rng == 0))
        prof_seed();
    return prof_mix(prof_rng += PROF_WEYL);
}

/* A uniform double in [0, 1) from 53 random bits (through int64_t: one
 * instruction, where an unsigned conversion takes a branch and several). */
static inline double prof_uniform(uint64_t bits)
{
    return (double)(int64_t)(bits >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- exponential variates: the ziggurat ----
 *
 * The area under e^-x is cut into ZIG_LAYERS layers of area ZIG_V each.
 * Layer 0 is the base: the rectangle [0, ZIG_R] x [0, e^-ZIG_R] and the
 * tail beyond ZIG_R. Layer i >= 1 is the rectangle [0, x[i-1]] x [e^-x[i-1],
 * e^-x[i]], where x[0] = ZIG_R, e^-x[i] = e^-x[i-1] + ZIG_V / x[i-1], and
 * the last layer reaches e^0 = 1 (ZIG_R is the base's width for which 256
 * layers of that area close there). A draw picks a layer and a point
 * across its width; left of x[i] (97.8% of draws) the point is under the
 * curve whatever its height, and is the variate: an integer compare and a
 * multiply. Otherwise a height is drawn too, and the point kept if it is
 * under the curve, else the draw starts again; past the base's rectangle,
 * the variate is ZIG_R + an exponential variate of the tail, -log u. The
 * result has e^-x as its density, as -log u does, and the common case
 * needs no logarithm. */
#define ZIG_LAYERS 256
#define ZIG_R 7.69711747013104972
#define ZIG_V 0.0039496598225815571993
/* set once at init: draws j < k of layer i are under the curve, at x =
 * j * w / prof_rate bytes (w: its width / 2^53, times the rate, so a draw
 * is in bytes at once); one 16-byte entry, so a draw reads one line */
static struct zig_layer {
    uint64_t k;
    double w;
} zig[ZIG_LAYERS];
static double zig_f[ZIG_LAYERS];    /* set once at init: e^-x[i] */
static double zig_unit[ZIG_LAYERS]; /* set once at init: the widths / 2^53 (mean 1), for the edges */

static void zig_init(void)
{
    double x[ZIG_LAYERS];
    x[0] = ZIG_R;
    zig_f[0] = prof_exp_neg(ZIG_R);
    for (unsigned i = 1; i < ZIG_LAYERS - 1; i++) {
        zig_f[i] = zig_f[i - 1] + ZIG_V / x[i - 1];
        x[i] = -prof_log(zig_f[i]);
    }
    x[ZIG_LAYERS - 1] = 0.0;
    zig_f[ZIG_LAYERS - 1] = 1.0;
    const double two53 = 9007199254740992.0;
    zig[0].k = (uint64_t)(two53 * ZIG_R * zig_f[0] / ZIG_V); /* the base: rectangle of its virtual width */
    zig_unit[0] = ZIG_V / zig_f[0] / two53;
    for (unsigned i = 1; i < ZIG_LAYERS; i++) {
        zig[i].k = (uint64_t)(two53 * x[i] / x[i - 1]);
        zig_unit[i] = x[i - 1] / two53;
    }
    for (unsigned i = 0; i < ZIG_LAYERS; i++)
        zig[i].w = zig_unit[i] * prof_rate;
}

/* The draws that fall outside the rectangles' common part: draw j of
 * layer i. Returns the variate in units of the mean. */
static double zig_edge(unsigned i, uint64_t j)
{
    double x = (double)(int64_t)j * zig_unit[i];
    for (;;) {
        if (i == 0)
            return ZIG_R - prof_log(1.0 - prof_uniform(prof_random())); /* 1 - u in (0, 1] */
        double y = zig_f[i - 1] + prof_uniform(prof_random()) * (zig_f[i] - zig_f[i - 1]);
        if (y < prof_exp_neg(x))
            return x;
        uint64_t u = prof_random();
        i = (unsigned)u & (ZIG_LAYERS - 1);
        j = u >> 11;
        x = (double)(int64_t)j * zig_unit[i];
        if (j < zig[i].k)
            return x;
    }
}

/* An edge draw as an interval in bytes, at least 1. */
static MA_COLD int64_t zig_edge_bytes(unsigned i, uint64_t j)
{
    double bytes = zig_edge(i, j) * prof_rate;
    if (bytes < 1.0)
        return 1;
    if (bytes > 9.0e18)
        return INT64_MAX;
    return (int64_t)bytes;
}

/* An exponential variate of mean prof_rate, in whole bytes and at least 1
 * (a draw below one byte counts as one). The layer comes from the low 8
 * bits of the draw, the point across it from the top 53. Inside a layer's
 * common part the variate is below ZIG_R times the rate (at most 2^40), far
 * from int64_t's limit. */
static inline int64_t interval_draw(void)
{
    uint64_t u = prof_random();
    unsigned i = (unsigned)u & (ZIG_LAYERS - 1);
    uint64_t j = u >> 11;
    if (ma_likely(j < zig[i].k)) {
        int64_t bytes = (int64_t)((double)(int64_t)j * zig[i].w);
        return bytes + (bytes == 0);
    }
    return zig_edge_bytes(i, j);
}

int64_t prof_next_interval(void)
{
    if (!prof_on)
        return INT64_MAX;
    return interval_draw();
}

/* ---- stack capture ---- */

/* Frames looked at for memalloc's own before the program's begin. */
#define SKIP_ROOM 16

struct capture {
    unsigned n;
    uintptr_t pc[PROF_MAX_FRAMES + SKIP_ROOM];
    uintptr_t start[SKIP_ROOM]; /* the function each of the first frames is in */
};

static _Unwind_Reason_Code capture_frame(struct _Unwind_Context *ctx, void *arg)
{
    struct capture *c = arg;
    uintptr_t pc = _Unwind_GetIP(ctx);
    if (pc == 0)
        return _URC_END_OF_STACK;
    if (c->n < SKIP_ROOM)
        c->start[c->n] = _Unwind_GetRegionStart(ctx);
    c->pc[c->n++] = pc;
    return c->n == sizeof c->pc / sizeof c->pc[0] ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* Where memalloc's own code lies, found at the first capture: when the
 * library is a shared object (LD_PRELOAD, -lmemalloc) every leading frame
 * inside its executable segment is ours. Linked statically into the
 * program, it shares that segment with the program's code, and the entry
 * points below are looked for instead. */
enum { SELF_UNKNOWN, SELF_RANGE, SELF_ENTRIES };
static int self_mode;              /* atomic: SELF_* */
static uintptr_t self_lo, self_hi; /* set before self_mode, read after it */

static int self_find(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    unsigned *index = arg;
    uintptr_t me = (uintptr_t)&prof_record;
    for (unsigned i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo && me < lo + ph->p_memsz) {
            self_lo = lo;
            self_hi = lo + ph->p_memsz;
            return (int)*index + 1; /* the first object listed is the program */
        }
    }
    (*index)++;
    return 0;
}

static MA_COLD void self_locate(void)
{
    unsigned index = 0;
    int found = dl_iterate_phdr(self_find, &index);
    __atomic_store_n(&self_mode, found > 1 ? SELF_RANGE : SELF_ENTRIES, __ATOMIC_RELEASE);
}

/* memalloc.c's sampled path and malloc's miss path (weak: prof.c does not
 * depend on them being linked, only compares their addresses). */
MA_HIDDEN extern void *ma_alloc_sampled(size_t n, size_t align, int zero) __attribute__((weak));
MA_HIDDEN extern void *ma_alloc_sampled_at(size_t n, size_t align, int zero, uintptr_t pc, uintptr_t sp,
                                           uintptr_t bp) __attribute__((weak));
MA_HIDDEN extern void *ma_malloc_miss(size_t n) __attribute__((weak));

/* The C++ allocation functions, when override.c is linked in. */
extern void *_Znwm(size_t) __attribute__((weak));
extern void *_Znam(size_t) __attribute__((weak));
extern void *_ZnwmRKSt9nothrow_t(size_t, const void *) __attribute__((weak));
extern void *_ZnamRKSt9nothrow_t(size_t, const void *) __attribute__((weak));
extern void *_ZnwmSt11align_val_t(size_t, size_t) __attribute__((weak));
extern void *_ZnamSt11align_val_t(size_t, size_t) __attribute__((weak));

/* 1 when a function starting at `start` is one through which a program
 * enters memalloc to allocate (or the sampled path those tail-call). */
static int is_entry(uintptr_t start)
{
    const uintptr_t entries[] = {
        (uintptr_t)&malloc, (uintptr_t)&calloc, (uintptr_t)&realloc, (uintptr_t)&reallocarray,
        (uintptr_t)&posix_memalign, (uintptr_t)&aligned_alloc, (uintptr_t)&valloc,
        (uintptr_t)&ma_malloc, (uintptr_t)&ma_calloc, (uintptr_t)&ma_realloc,
        (uintptr_t)&ma_reallocarray, (uintptr_t)&ma_aligned_alloc, (uintptr_t)&ma_posix_memalign,
        (uintptr_t)&ma_memdup, (uintptr_t)&ma_alloc_sampled, (uintptr_t)&ma_alloc_sampled_at,
        (uintptr_t)&ma_malloc_miss,
        (uintptr_t)&_Znwm, (uintptr_t)&_Znam, (uintptr_t)&_ZnwmRKSt9nothrow_t,
        (uintptr_t)&_ZnamRKSt9nothrow_t, (uintptr_t)&_ZnwmSt11align_val_t,
        (uintptr_t)&_ZnamSt11align_val_t,
    };
    for (unsigned i = 0; i < sizeof entries / sizeof entries[0]; i++)
        if (entries[i] == start && start != 0)
            return 1;
    return 0;
}

/* Fills c with the calling thread's stack from frame `from` (t, if not
 * NULL, gets the walk's trail) and returns how many leading frames are
 * memalloc's own: at least `ours` (the frames known to be memalloc's at
 * the start of the walk) when they are told apart by the entry points.
 * noinline: when the fast walk gives up and libgcc's walks from here, it
 * is among them. */
static __attribute__((noinline)) unsigned capture_stack(struct capture *c, const struct prof_frame *from,
                                                         unsigned ours, struct prof_trail *t)
{
    int mode = __atomic_load_n(&self_mode, __ATOMIC_ACQUIRE);
    if (ma_unlikely(mode == SELF_UNKNOWN)) {
        self_locate();
        mode = __atomic_load_n(&self_mode, __ATOMIC_ACQUIRE);
    }
    /* The functions the first frames lie in are only looked at to find
     * the entry points. */
    unsigned nstarts = mode == SELF_ENTRIES ? SKIP_ROOM : 0;
    unsigned skip = ours;
    c->n = prof_unwind_from(from, c->pc, c->start, sizeof c->pc / sizeof c->pc[0], nstarts, t);
    if (c->n == 0) {
        _Unwind_Backtrace(capture_frame, c);
        nstarts = SKIP_ROOM;
        skip = 3; /* capture_stack, record_walked and prof_record or sample_slow */
    }
    if (mode == SELF_RANGE) {
        /* pc - 1: a return address may be the first byte after a call
         * that ends a function. */
        skip = 0;
        while (skip < c->n && c->pc[skip] - 1 >= self_lo && c->pc[skip] - 1 < self_hi)
            skip++;
    } else {
        /* The deepest entry point among the first frames: operator new
         * calling malloc leaves both on the stack, and both are ours. */
        unsigned lim = c->n < nstarts ? c->n : nstarts;
        for (unsigned i = 0; i < lim; i++)
            if (is_entry(c->start[i]))
                skip = i + 1;
    }
    return skip < c->n ? skip : c->n;
}

/* ---- the tables ---- */

struct live_set *prof_live; /* atomic: replaced under prof_lock */
/* guarded by prof_lock: empty slots an insert may still take, so that the
 * set stays at most half full, counting LIVE_GONE slots as taken */
static size_t live_room;
#define LIVE_FIRST_SLOTS 4096

static struct prof_stack **stack_tab; /* guarded by prof_lock: open addressing */
static size_t stack_cap, stack_used;
static size_t stack_bytes;      /* guarded by prof_lock: bytes of all records */
static char *bump;              /* guarded by prof_lock: where records are carved */
static size_t bump_left;
static uint64_t prof_dropped;   /* guarded by prof_lock: samples lost to a failed map */

#define BUMP_CHUNK ((size_t)256 << 10)

static size_t stack_size(unsigned depth)
{
    return sizeof(struct prof_stack) + depth * sizeof(uintptr_t);
}

/* Bytes of a live set of `slots` slots. */
static size_t live_set_bytes(size_t slots)
{
    return MA_ALIGN_UP(sizeof(struct live_set) + slots * sizeof(struct live), MA_PAGE_SIZE);
}

/* Puts (key, stack, n) into set t, in the first slot of its probe run
 * that is empty or LIVE_GONE; returns 1 when that slot was empty (it
 * counts against live_room). The key is stored last: a removal that finds
 * it finds the whole entry. prof_lock held. */
static inline int live_put(struct live_set *t, uintptr_t key, struct prof_stack *stack, uint64_t n)
{
    uintptr_t k;
    size_t j = prof_hash(key) & t->mask;
    while ((k = __atomic_load_n(&t->slot[j].key, __ATOMIC_RELAXED)) > LIVE_GONE)
        j = (j + 1) & t->mask;
    t->slot[j].stack = stack;
    t->slot[j].n = n;
    __atomic_store_n(&t->slot[j].key, key, __ATOMIC_RELAXED);
    return k == LIVE_EMPTY;
}

/* Makes room in the live set: the live entries go into a set at most a
 * quarter full, without the LIVE_GONE slots; the same slots are reused
 * when they are enough, else a set twice as big (or more) replaces them.
 * A replaced set is discarded but stays mapped, as a removal may still be
 * reading it: its zero pages send that removal to the lock. 0, or -1 when
 * memory cannot be mapped (the set stays as it was). prof_lock held. */
static int live_rebuild(void)
{
    struct live_set *t = prof_live;
    size_t cap = t->mask + 1, live = 0;
    for (size_t i = 0; i < cap; i++)
        live += __atomic_load_n(&t->slot[i].key, __ATOMIC_RELAXED) > LIVE_GONE;
    size_t ncap = cap;
    while ((live + 1) * 4 > ncap)
        ncap *= 2;
    /* the live entries (removals only ever take some away meanwhile) */
    size_t scratch_bytes = MA_ALIGN_UP((live + 1) * sizeof(struct live), MA_PAGE_SIZE);
    struct live *keep = os_map(scratch_bytes);
    struct live_set *u = ncap == cap ? t : os_map(live_set_bytes(ncap));
    if (keep == NULL || u == NULL) {
        if (keep != NULL)
            os_unmap(keep, scratch_bytes);
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < cap; i++) {
        uintptr_t k = __atomic_fetch_or(&t->slot[i].key, LIVE_MOVED, __ATOMIC_RELAXED);
        if (k > LIVE_GONE)
            keep[kept++] = (struct live){ k, t->slot[i].stack, t->slot[i].n };
    }
    if (u == t) {
        for (size_t i = 0; i < cap; i++)
            __atomic_store_n(&t->slot[i].key, LIVE_EMPTY, __ATOMIC_RELAXED);
    } else {
        u->mask = ncap - 1;
    }
    for (size_t i = 0; i < kept; i++)
        live_put(u, keep[i].key, keep[i].stack, keep[i].n);
    os_unmap(keep, scratch_bytes);
    if (u != t) {
        __atomic_store_n(&prof_live, u, __ATOMIC_RELEASE);
        os_discard(t, live_set_bytes(cap));
    }
    live_room = ncap / 2 - kept;
    return 0;
}

static int stack_grow(void)
{
    size_t cap = stack_cap * 2;
    struct prof_stack **t = os_map(cap * sizeof *t);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < stack_cap; i++) {
        if (stack_tab[i] == NULL)
            continue;
        size_t j = prof_hash(stack_tab[i]->hash) & (cap - 1);
        while (t[j] != NULL)
            j = (j + 1) & (cap - 1);
        t[j] = stack_tab[i];
    }
    os_unmap(stack_tab, stack_cap * sizeof *stack_tab);
    stack_tab = t;
    stack_cap = cap;
    return 0;
}

/* The record of the stack pcs[0..depth), made when new; NULL when memory
 * for it cannot be mapped. prof_lock held. */
static struct prof_stack *stack_intern(const uintptr_t *pcs, unsigned depth, uint64_t hash)
{
    size_t j = prof_hash(hash) & (stack_cap - 1);
    for (struct prof_stack *s; (s = stack_tab[j]) != NULL; j = (j + 1) & (stack_cap - 1))
        if (s->hash == hash && s->depth == depth && memcmp(s->frames, pcs, depth * sizeof *pcs) == 0)
            return s;
    if ((stack_used + 1) * 2 > stack_cap) {
        if (stack_grow() != 0)
            return NULL;
        j = prof_hash(hash) & (stack_cap - 1);
        while (stack_tab[j] != NULL)
            j = (j + 1) & (stack_cap - 1);
    }
    size_t size = MA_ALIGN_UP(stack_size(depth), 16);
    if (bump_left < size) {
        char *m = os_map(BUMP_CHUNK);
        if (m == NULL)
            return NULL;
        bump = m;
        bump_left = BUMP_CHUNK;
    }
    struct prof_stack *s = (struct prof_stack *)bump;
    bump += size;
    bump_left -= size;
    memset(s, 0, sizeof *s);
    s->hash = hash;
    s->depth = depth;
    memcpy(s->frames, pcs, depth * sizeof *pcs);
    stack_tab[j] = s;
    stack_used++;
    stack_bytes += stack_size(depth);
    return s;
}

/* ---- the hooks ---- */

void prof_init(void)
{
    prof_on = 0;
    if (!ma_cfg.prof)
        return;
    prof_rate = (double)ma_cfg.prof_sample;
    zig_init();
    prof_live = os_map(live_set_bytes(LIVE_FIRST_SLOTS));
    if (prof_live != NULL) {
        prof_live->mask = LIVE_FIRST_SLOTS - 1;
        live_room = LIVE_FIRST_SLOTS / 2;
    }
    stack_cap = 1024;
    stack_tab = os_map(stack_cap * sizeof *stack_tab);
    prof_unwind_init();
    if (prof_live == NULL || stack_tab == NULL) {
        ma_warn("cannot map the heap profile's tables; MEMALLOC_PROF is off");
        return;
    }
    prof_on = 1;
}

/* ---- the thread's last walk ----
 *
 * A thread that samples again from the same frame (the same return address
 * and stack pointer, and rbp if the walk used it) is most often in the
 * same call stack as the last time: a loop that allocates. If every word
 * the last walk's result depended on (its trail) still holds what it held
 * then, the walk would read the same words again and give the same frames,
 * and the stack record it found then is the answer now, with no walk, hash
 * or table lookup. The words are read in the walk's order and each one's
 * address follows from the words before it, so this reads nothing a walk
 * would not. */
struct last_walk {
    struct prof_frame from;   /* from.pc NO_WALK: none kept */
    uintptr_t bp_mask;        /* ~0 when the walk used from.bp, else 0 */
    struct prof_stack *stack; /* the record the walk found */
    struct prof_trail trail;
};
/* No walk kept: a pc that neither a frame nor the 0 of no frame given
 * can be. */
#define NO_WALK (~(uintptr_t)0)
static __thread struct last_walk prof_last __attribute__((tls_model("initial-exec"))) = { .from.pc = NO_WALK };

/* The word the read after a kept trail's last reads: it never holds that
 * read's value, 1. */
static const uintptr_t trail_stop = 0;

static inline int last_walk_holds(const struct last_walk *lw, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    if (((lw->from.pc ^ pc) | (lw->from.sp ^ sp) | ((lw->from.bp ^ bp) & lw->bp_mask)) != 0)
        return 0;
    /* The trail ends in a read that fails (trail_stop). */
    const struct prof_read *r = lw->trail.read;
    while (*(const uintptr_t *)r->addr == r->value)
        r++;
    return r->addr == (uintptr_t)&trail_stop;
}

/* Adds sample p (n bytes, of stack s) to the live set and s's totals, in
 * the first slot of its probe run that is empty or LIVE_GONE. p is not in
 * the set already: every path that frees or moves a sampled block calls
 * prof_forget first (sample_clear, sample_free_cached). prof_lock held. */
static inline void record_locked(void *p, size_t n, struct prof_stack *s)
{
    if (ma_unlikely(live_room == 0) && live_rebuild() != 0) {
        prof_dropped++;
        return;
    }
    s->alloc_bytes += n;
    s->alloc_count++;
    live_room -= (size_t)live_put(prof_live, (uintptr_t)p, s, n);
}

/* prof_record's walk from frame (pc, sp, bp) (`ours` of its first frames
 * are memalloc's): the stack captured, hashed and found (or added) in the
 * stack table; kept as the thread's last walk when its trail fitted. */
static __attribute__((noinline)) void record_walked(void *p, size_t n, uintptr_t pc, uintptr_t sp, uintptr_t bp,
                                                     unsigned ours)
{
    struct last_walk *lw = &prof_last;
    const struct prof_frame from = { pc, sp, bp };
    lw->from.pc = NO_WALK;
    struct capture c;
    unsigned skip = capture_stack(&c, &from, ours, &lw->trail);
    unsigned depth = c.n - skip;
    if (depth > PROF_MAX_FRAMES)
        depth = PROF_MAX_FRAMES;
    const uintptr_t *pcs = c.pc + skip;
    uint64_t hash = depth;
    for (unsigned i = 0; i < depth; i++)
        hash = prof_hash(hash ^ pcs[i]);

    ma_lock_acquire(&prof_lock);
    struct prof_stack *s = stack_intern(pcs, depth, hash);
    if (s != NULL)
        record_locked(p, n, s);
    else
        prof_dropped++;
    ma_lock_release(&prof_lock);
    if (s != NULL && lw->trail.whole) {
        lw->trail.read[lw->trail.n] = (struct prof_read){ (uintptr_t)&trail_stop, 1 };
        lw->from = from;
        lw->bp_mask = lw->trail.bp_used ? ~(uintptr_t)0 : 0;
        lw->stack = s;
    }
}

/* prof_record's work, p not NULL and profiling on, from frame (pc, sp,
 * bp); inline in both of the functions that record. */
static inline __attribute__((always_inline)) void record(void *p, size_t n, uintptr_t pc, uintptr_t sp,
                                                         uintptr_t bp)
{
    /* No frame given: the recording function's own, which stays live
     * while the stack is walked, and is memalloc's. */
    unsigned ours = 0;
    if (pc == 0) {
        struct prof_frame here;
        prof_regs(&here);
        pc = here.pc;
        sp = here.sp;
        bp = here.bp;
        ours = 1;
    }
    struct last_walk *lw = &prof_last;
    if (!last_walk_holds(lw, pc, sp, bp)) {
        record_walked(p, n, pc, sp, bp, ours);
        return;
    }
    ma_lock_acquire(&prof_lock);
    record_locked(p, n, lw->stack);
    ma_lock_release(&prof_lock);
}

void prof_record(void *p, size_t n, const struct prof_frame *from)
{
    if (!prof_on || p == NULL)
        return;
    if (from == NULL)
        record(p, n, 0, 0, 0);
    else
        record(p, n, from->pc, from->sp, from->bp);
}

/* prof_sample's paths other than its common one: a failed allocation, no
 * frame given, or a walk to make. Out of line, as are sample_held and
 * sample_wake, so that the common path calls nothing and keeps few values
 * live: it saves no registers. */
static __attribute__((noinline)) void *sample_slow(void *p, size_t n, int64_t *left, uintptr_t pc, uintptr_t sp,
                                                    uintptr_t bp)
{
    /* Nothing the walk allocates counts towards or takes a sample. */
    *left = INT64_MAX;
    if (p != NULL)
        record(p, n, pc, sp, bp);
    *left = interval_draw();
    return p;
}

/* The last walk holds but the common path cannot finish: a draw outside
 * the layers' common part (the generator was stepped back, so that
 * interval_draw makes the same draw), the lock taken, or the live set
 * full (`locked`: the common path holds the lock). */
static __attribute__((noinline)) void *sample_held(void *p, size_t n, int64_t *left, int locked)
{
    if (!locked)
        ma_lock_acquire(&prof_lock);
    record_locked(p, n, prof_last.stack);
    ma_lock_release(&prof_lock);
    *left = interval_draw();
    return p;
}

/* The common path's release of a lock another thread sleeps on. */
static __attribute__((noinline)) void *sample_wake(void *p)
{
    os_futex_wake(&prof_lock.word);
    return p;
}

/* The common path: the last walk holds, the draw falls in a layer's
 * common part, the lock is free and the live set has room. The thread's
 * generator was seeded by its first interval (tcache_init's
 * prof_next_interval), or by the walk this one replays after a fork reset
 * both. */
void *prof_sample(void *p, size_t n, int64_t *left, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    struct last_walk *lw = &prof_last;
    if (ma_unlikely(p == NULL) || !last_walk_holds(lw, pc, sp, bp))
        return sample_slow(p, n, left, pc, sp, bp);
    uint64_t u = prof_mix(prof_rng += PROF_WEYL);
    unsigned i = (unsigned)u & (ZIG_LAYERS - 1);
    uint64_t j = u >> 11;
    if (ma_unlikely(j >= zig[i].k)) {
        prof_rng -= PROF_WEYL;
        return sample_held(p, n, left, 0);
    }
    int64_t bytes = (int64_t)((double)(int64_t)j * zig[i].w);
    *left = bytes + (bytes == 0);
    if (ma_unlikely(!ma_lock_try(&prof_lock))) {
        prof_rng -= PROF_WEYL;
        return sample_held(p, n, left, 0);
    }
    if (ma_unlikely(live_room == 0)) {
        prof_rng -= PROF_WEYL;
        return sample_held(p, n, left, 1);
    }
    record_locked(p, n, lw->stack);
    if (ma_unlikely(__atomic_exchange_n(&prof_lock.word, 0, __ATOMIC_RELEASE) == 2))
        return sample_wake(p);
    return p;
}

void prof_forget_locked(uintptr_t key)
{
    /* Under the lock no rebuild is under way, so no key carries
     * LIVE_MOVED: the lock-free removal finds the key if the set holds it. */
    ma_lock_acquire(&prof_lock);
    (void)prof_forget_fast((void *)key);
    ma_lock_release(&prof_lock);
}

/* ---- snapshots ---- */

int prof_snapshot_take(struct prof_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->rate = ma_cfg.prof_sample;
    if (!prof_on)
        return 0;
    ma_lock_acquire(&prof_lock);
    size_t bytes = MA_ALIGN_UP(stack_used * sizeof(void *) + stack_bytes + 16, MA_PAGE_SIZE);
    char *m = os_map(bytes);
    if (m == NULL) {
        ma_lock_release(&prof_lock);
        errno = ENOMEM;
        return -1;
    }
    s->map = m;
    s->map_bytes = bytes;
    s->stacks = (struct prof_stack **)m;
    char *at = m + stack_used * sizeof(void *);
    for (size_t i = 0; i < stack_cap; i++) {
        struct prof_stack *st = stack_tab[i];
        if (st == NULL)
            continue;
        size_t size = stack_size(st->depth);
        st->index = (uint32_t)s->nstacks;
        memcpy(at, st, size);
        s->stacks[s->nstacks++] = (struct prof_stack *)at;
        at += MA_ALIGN_UP(size, 8);
    }
    /* The live figures, from the live set: each sample stands for the
     * blocks its size makes it likely to have been sampled from. */
    const struct live_set *t = prof_live;
    for (size_t i = 0; i <= t->mask; i++) {
        const struct live *e = &t->slot[i];
        if (__atomic_load_n(&e->key, __ATOMIC_RELAXED) <= LIVE_GONE)
            continue;
        struct prof_stack *st = s->stacks[e->stack->index];
        double w = prof_weight(e->n);
        st->live_count++;
        st->live_bytes += e->n;
        st->est_live_count += w;
        st->est_live_bytes += w * (double)e->n;
    }
    ma_lock_release(&prof_lock);
    return 0;
}

void prof_snapshot_drop(struct prof_snapshot *s)
{
    if (s->map != NULL)
        os_unmap(s->map, s->map_bytes);
    s->map = NULL;
}

/* ---- writing files ---- */

/* A few words for the errors a profile's path meets (strerror may
 * allocate: it translates). */
static const char *why(int err)
{
    switch (err) {
    case EACCES: return "permission denied";
    case ENOENT: return "no such file or directory";
    case ENOTDIR: return "not a directory";
    case EISDIR: return "is a directory";
    case EROFS: return "read-only file system";
    case ENOSPC: return "no space left on device";
    case ENAMETOOLONG: return "file name too long";
    case ENOMEM: return "out of memory";
    default: return "cannot open";
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

enum prof_format { FMT_BY_NAME, FMT_SVG };

/* Writes the profile to `path` (%p expanded): a flame graph for FMT_SVG or
 * a name ending in .svg, folded stacks for a name ending in .folded, else
 * google-pprof's heap profile. On failure, one warning line naming `what`
 * and -1 with errno set. */
static int prof_write_file(const char *path, enum prof_format fmt, const char *what)
{
    char name[512];
    int err = 0;
    int fd = -1;
    if (config_path_expand(path, name, sizeof name) != 0) {
        err = ENAMETOOLONG;
        size_t shown = strnlen(path, 64);
        memcpy(name, path, shown);
        memcpy(name + shown, "...", 4);
    } else {
        fd = os_create(name, &err);
    }
    if (fd < 0) {
        char mem[700];
        struct ma_buf b = { mem, 0, sizeof mem - 1, -1 };
        buf_str(&b, "memalloc: cannot write ");
        buf_str(&b, what);
        buf_str(&b, " to ");
        buf_str(&b, name);
        buf_str(&b, " (");
        buf_str(&b, why(err));
        buf_str(&b, ")\n");
        os_write(2, b.p, b.len);
        errno = err;
        return -1;
    }
    struct prof_snapshot s;
    if (prof_snapshot_take(&s) != 0) {
        os_close(fd);
        ma_warn("cannot map memory to copy the heap profile");
        errno = ENOMEM;
        return -1;
    }
    if (fmt == FMT_SVG || ends_with(name, ".svg"))
        prof_write_svg(fd, &s);
    else if (ends_with(name, ".folded"))
        prof_write_folded(fd, &s);
    else
        prof_write_pprof(fd, &s);
    prof_snapshot_drop(&s);
    os_close(fd);
    return 0;
}

int ma_prof_dump(const char *path)
{
    ma_ensure_init();
    if (path == NULL || path[0] == '\0') {
        errno = EINVAL;
        return -1;
    }
    if (!prof_on) {
        errno = ENOTSUP;
        return -1;
    }
    int saved = errno;
    if (prof_write_file(path, FMT_BY_NAME, "the heap profile") != 0)
        return -1;
    errno = saved;
    return 0;
}

void prof_exit(void)
{
    if (!prof_on)
        return;
    if (ma_cfg.prof_file[0])
        prof_write_file(ma_cfg.prof_file, FMT_BY_NAME, "MEMALLOC_PROF_FILE");
    if (ma_cfg.prof_svg[0])
        prof_write_file(ma_cfg.prof_svg, FMT_SVG, "MEMALLOC_PROF_SVG");
}

/* ---- fork ---- */

void prof_fork_prepare(void)
{
    if (prof_on) {
        prof_unwind_lock();
        ma_lock_acquire(&prof_lock);
    }
}

void prof_fork_release(void)
{
    if (prof_on) {
        ma_lock_release(&prof_lock);
        prof_unwind_unlock();
    }
}

/* The child's one thread held the lock across fork: a fresh lock, and a
 * fresh generator so the child's samples do not repeat the parent's. */
void prof_fork_child(void)
{
    prof_lock.word = 0;
    prof_unwind_reset();
    prof_rng = 0;
    prof_last.from.pc = NO_WALK; /* prof_sample's common path draws unseeded */
}
