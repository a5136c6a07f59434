/*
 * prof_unwind.c - the profiler's fast stack walk (x86-64). libgcc's
 * _Unwind_Backtrace interprets a function's unwind table (its CFI) again
 * for every frame of every capture and keeps a whole register context:
 * about 1,700 instructions a frame. Here each return address's rule (where
 * the caller's frame starts, where the return address and the caller's rbp
 * are saved) is worked out once from the same tables, found through libgcc's
 * _Unwind_Find_FDE, and kept in a cache; a capture then costs a few dozen
 * instructions a frame.
 *
 * Only the rules compilers emit for ordinary code are taken (the frame
 * address as rsp or rbp plus a constant, rbp and the return address saved
 * at constant offsets from it); anything else (signal frames, DWARF
 * expressions, an address that does not look like the stack) makes the walk
 * give up, and prof.c falls back to _Unwind_Backtrace. Never allocates.
 */
#include <string.h>

#include "prof.h"
#include "../base/lock.h"
#include "../base/os.h"

#if defined(__x86_64__)

/* libgcc's own lookup (unwind-dw2-fde.h), exported by libgcc_s and
 * libgcc_eh: the FDE covering pc, with the function's start in bases. */
struct dwarf_eh_bases {
    void *tbase, *dbase, *func;
};
extern const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases);

/* How to step from a frame at a given return address to its caller. */
struct rule {
    uintptr_t pc;      /* the return address this rule is for; 0: empty */
    uintptr_t start;   /* the function it lies in */
    int32_t cfa_off;   /* frame address = (cfa_rbp ? rbp : rsp) + cfa_off */
    int16_t rbp_off;   /* caller's rbp saved at frame address + rbp_off; 0: rbp unchanged */
    int8_t cfa_rbp;
    int8_t last;       /* the return address is undefined: the outermost frame */
};

#define RULES 8192
static struct rule *rules;       /* guarded by rule_lock; direct-mapped by pc */
static struct ma_lock rule_lock;

void prof_unwind_init(void)
{
    rules = os_map(RULES * sizeof *rules);
}

void prof_unwind_lock(void)
{
    ma_lock_acquire(&rule_lock);
}

void prof_unwind_unlock(void)
{
    ma_lock_release(&rule_lock);
}

void prof_unwind_reset(void)
{
    rule_lock.word = 0;
}

/* ---- reading the tables ---- */

static uint64_t uleb(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    unsigned shift = 0;
    while (*p < end) {
        uint8_t b = *(*p)++;
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    return v;
}

static int64_t sleb(const uint8_t **p, const uint8_t *end)
{
    int64_t v = 0;
    unsigned shift = 0;
    uint8_t b = 0;
    while (*p < end) {
        b = *(*p)++;
        if (shift < 64)
            v |= (int64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    if (shift < 64 && (b & 0x40))
        v |= -((int64_t)1 << shift);
    return v;
}

/* Bytes an encoded pointer of DW_EH_PE encoding `enc` takes at p (its
 * value is not needed, only skipped); -1 for an encoding not handled. */
static int enc_size(uint8_t enc, const uint8_t *p, const uint8_t *end)
{
    if (enc == 0xff) /* DW_EH_PE_omit */
        return 0;
    switch (enc & 0x0f) {
    case 0x00: return 8;                /* absptr */
    case 0x02: case 0x0a: return 2;     /* udata2, sdata2 */
    case 0x03: case 0x0b: return 4;     /* udata4, sdata4 */
    case 0x04: case 0x0c: return 8;     /* udata8, sdata8 */
    case 0x01: case 0x09: {             /* uleb128, sleb128 */
        const uint8_t *q = p;
        uleb(&q, end);
        return (int)(q - p);
    }
    default: return -1;
    }
}

/* The register state the CFA program builds, for the registers we follow:
 * the frame address, rbp (6) and the return address (16). */
struct cfa_state {
    int64_t cfa_off;
    int cfa_reg;
    int64_t rbp_off;  /* 0: unchanged */
    int64_t ra_off;   /* 0: unknown */
    int ra_undef;
    int bad;          /* a rule we do not follow */
};

/* Runs CFA instructions [p, end) until the row holding `target`; returns 1
 * when it stopped there (or ran out), 0 when an instruction is not handled. */
static int cfa_run(const uint8_t *p, const uint8_t *end, uintptr_t *loc, uintptr_t target,
                   uint64_t caf, int64_t daf, struct cfa_state *st, const struct cfa_state *init)
{
    struct cfa_state saved[8];
    unsigned nsaved = 0;
    while (p < end) {
        uint8_t op = *p++;
        uint64_t reg, delta = 0;
        int64_t off;
        switch (op >> 6) {
        case 1: /* advance_loc */
            delta = (op & 0x3f) * caf;
            goto advance;
        case 2: /* offset */
            reg = op & 0x3f;
            off = (int64_t)uleb(&p, end) * daf;
            goto set_offset;
        case 3: /* restore */
            reg = op & 0x3f;
            goto restore;
        }
        switch (op) {
        case 0x00: /* nop */
            continue;
        case 0x02: /* advance_loc1 */
            if (p + 1 > end)
                return 0;
            delta = p[0] * caf;
            p += 1;
            goto advance;
        case 0x03: { /* advance_loc2 */
            uint16_t d;
            if (p + 2 > end)
                return 0;
            memcpy(&d, p, 2);
            p += 2;
            delta = d * caf;
            goto advance;
        }
        case 0x04: { /* advance_loc4 */
            uint32_t d;
            if (p + 4 > end)
                return 0;
            memcpy(&d, p, 4);
            p += 4;
            delta = d * caf;
            goto advance;
        }
        case 0x05: /* offset_extended */
            reg = uleb(&p, end);
            off = (int64_t)uleb(&p, end) * daf;
            goto set_offset;
        case 0x11: /* offset_extended_sf */
            reg = uleb(&p, end);
            off = sleb(&p, end) * daf;
            goto set_offset;
        case 0x06: /* restore_extended */
            reg = uleb(&p, end);
            goto restore;
        case 0x07: /* undefined */
            reg = uleb(&p, end);
            if (reg == 16)
                st->ra_undef = 1;
            else if (reg == 6 || reg == 7)
                return 0;
            continue;
        case 0x08: /* same_value */
            reg = uleb(&p, end);
            if (reg == 6)
                st->rbp_off = 0;
            else if (reg == 16)
                return 0;
            continue;
        case 0x09: /* register */
            reg = uleb(&p, end);
            uleb(&p, end);
            if (reg == 6 || reg == 7 || reg == 16)
                return 0;
            continue;
        case 0x0a: /* remember_state */
            if (nsaved == sizeof saved / sizeof saved[0])
                return 0;
            saved[nsaved++] = *st;
            continue;
        case 0x0b: /* restore_state */
            if (nsaved == 0)
                return 0;
            *st = saved[--nsaved];
            continue;
        case 0x0c: /* def_cfa */
            st->cfa_reg = (int)uleb(&p, end);
            st->cfa_off = (int64_t)uleb(&p, end);
            continue;
        case 0x12: /* def_cfa_sf */
            st->cfa_reg = (int)uleb(&p, end);
            st->cfa_off = sleb(&p, end) * daf;
            continue;
        case 0x0d: /* def_cfa_register */
            st->cfa_reg = (int)uleb(&p, end);
            continue;
        case 0x0e: /* def_cfa_offset */
            st->cfa_off = (int64_t)uleb(&p, end);
            continue;
        case 0x13: /* def_cfa_offset_sf */
            st->cfa_off = sleb(&p, end) * daf;
            continue;
        case 0x10: /* expression */
        case 0x16: /* val_expression */
            reg = uleb(&p, end);
            off = (int64_t)uleb(&p, end);
            if (reg == 6 || reg == 7 || reg == 16 || off < 0 || off > end - p)
                return 0;
            p += off;
            continue;
        case 0x14: /* val_offset */
        case 0x15: /* val_offset_sf */
            reg = uleb(&p, end);
            if (op == 0x14)
                uleb(&p, end);
            else
                sleb(&p, end);
            if (reg == 6 || reg == 7 || reg == 16)
                return 0;
            continue;
        case 0x2e: /* GNU_args_size */
            uleb(&p, end);
            continue;
        case 0x2f: /* GNU_negative_offset_extended */
            reg = uleb(&p, end);
            off = -(int64_t)uleb(&p, end) * daf;
            goto set_offset;
        default: /* def_cfa_expression, set_loc and the rest */
            return 0;
        }
    advance:
        if (*loc + delta > target)
            return 1;
        *loc += delta;
        continue;
    set_offset:
        if (reg == 6)
            st->rbp_off = off;
        else if (reg == 16)
            st->ra_off = off;
        continue;
    restore:
        if (init == NULL)
            return 0;
        if (reg == 6)
            st->rbp_off = init->rbp_off;
        else if (reg == 16)
            st->ra_off = init->ra_off;
        continue;
    }
    return 1;
}

/* Works out the rule for return address pc from its FDE and CIE. 0 when
 * it is not one we follow. Code without an FDE ends the stack, as it ends
 * _Unwind_Backtrace's: the rule says so. Out of line and cold: a walk finds
 * almost every rule in the cache, and its loop stays in registers. */
static MA_COLD __attribute__((noinline)) int rule_make(uintptr_t pc, struct rule *r)
{
    struct dwarf_eh_bases bases;
    const uint8_t *fde = _Unwind_Find_FDE((void *)(pc - 1), &bases);
    if (fde == NULL) {
        memset(r, 0, sizeof *r);
        r->pc = pc;
        r->last = 1;
        return 1;
    }
    uint32_t len, cie_ptr;
    memcpy(&len, fde, 4);
    memcpy(&cie_ptr, fde + 4, 4);
    if (len == 0 || len == 0xffffffffu || cie_ptr == 0)
        return 0;
    const uint8_t *fde_end = fde + 4 + len;
    const uint8_t *cie = fde + 4 - cie_ptr;
    uint32_t cie_len;
    memcpy(&cie_len, cie, 4);
    if (cie_len == 0 || cie_len == 0xffffffffu)
        return 0;
    const uint8_t *cie_end = cie + 4 + cie_len, *p = cie + 8;
    uint8_t version = *p++;
    const char *aug = (const char *)p;
    size_t aug_len = strnlen(aug, (size_t)(cie_end - p));
    p += aug_len + 1;
    if (p > cie_end || (version != 1 && version != 3) || strchr(aug, 'S') != NULL || (aug[0] != 'z' && aug[0] != '\0'))
        return 0;
    uint64_t caf = uleb(&p, cie_end);
    int64_t daf = sleb(&p, cie_end);
    uint64_t ra_reg = version == 1 ? *p++ : uleb(&p, cie_end);
    if (ra_reg != 16)
        return 0;
    uint8_t fde_enc = 0;
    const uint8_t *init_insns = p;
    if (aug[0] == 'z') {
        uint64_t alen = uleb(&p, cie_end);
        const uint8_t *q = p;
        init_insns = p + alen;
        for (const char *a = aug + 1; *a; a++) {
            if (*a == 'R') {
                fde_enc = *q++;
            } else if (*a == 'P') {
                uint8_t enc = *q++;
                int n = enc_size(enc, q, cie_end);
                if (n < 0)
                    return 0;
                q += n;
            } else if (*a == 'L') {
                q++;
            } else {
                return 0;
            }
        }
    }
    if (init_insns > cie_end)
        return 0;
    /* The FDE: pc_begin, pc_range (libgcc found it covers pc, and gave us
     * the function's start), then its instructions. */
    p = fde + 8;
    int n = enc_size(fde_enc, p, fde_end);
    if (n <= 0)
        return 0;
    p += 2 * n;
    if (aug[0] == 'z')
        p += uleb(&p, fde_end);
    if (p > fde_end)
        return 0;

    struct cfa_state st = { 0, 7, 0, 0, 0, 0 }, init;
    uintptr_t loc = (uintptr_t)bases.func;
    uintptr_t target = pc - 1;
    if (!cfa_run(init_insns, cie_end, &loc, target, caf, daf, &st, NULL))
        return 0;
    init = st;
    loc = (uintptr_t)bases.func;
    if (!cfa_run(p, fde_end, &loc, target, caf, daf, &st, &init))
        return 0;
    if ((st.cfa_reg != 7 && st.cfa_reg != 6) || st.cfa_off <= 0 || st.cfa_off > INT32_MAX ||
        st.rbp_off < INT16_MIN || st.rbp_off > INT16_MAX || (!st.ra_undef && st.ra_off != -8))
        return 0;
    r->pc = pc;
    r->start = (uintptr_t)bases.func;
    r->cfa_off = (int32_t)st.cfa_off;
    r->cfa_rbp = st.cfa_reg == 6;
    r->rbp_off = (int16_t)st.rbp_off;
    r->last = (int8_t)st.ra_undef;
    return 1;
}

/* ---- the walk ---- */

/* prof_regs (prof.h): a leaf without a frame. */
__asm__(".text\n"
        ".p2align 4\n"
        ".globl prof_regs\n"
        ".hidden prof_regs\n"
        ".type prof_regs, @function\n"
        "prof_regs:\n"
        "  movq (%rsp), %rax\n"
        "  movq %rax, 0(%rdi)\n"
        "  leaq 8(%rsp), %rax\n"
        "  movq %rax, 8(%rdi)\n"
        "  movq %rbp, 16(%rdi)\n"
        "  ret\n"
        ".size prof_regs, .-prof_regs\n");

/* A frame may not be larger than this: an address further up is taken for
 * garbage, and the walk gives up rather than read it. */
#define MAX_FRAME ((uintptr_t)64 << 20)

/* The walk between two frames: the frame's return address, stack pointer
 * and rbp, how many frames are stored, and which trail entry holds the
 * saved rbp that bp came from (-1: the starting frame's). */
struct walk {
    uintptr_t pc, sp, bp;
    unsigned n;
    int bp_from;
};

enum walk_end { WALK_DONE, WALK_GAVE_UP, WALK_TRAIL_FULL };

/* Steps from frame to frame, storing each return address (and, for the
 * first nstarts, its function's start), until the stack ends (WALK_DONE),
 * a frame is not one the walk follows (WALK_GAVE_UP) or, when `record`,
 * the trail has no room for another frame's two reads (WALK_TRAIL_FULL,
 * w at the start of that frame). Inlined twice, with and without the
 * trail, so the walk that keeps none pays nothing for it. rule_lock held. */
static inline __attribute__((always_inline)) enum walk_end walk_frames(struct walk *w, uintptr_t *pcs,
                                                                       uintptr_t *starts, unsigned max,
                                                                       unsigned nstarts, struct prof_trail *t,
                                                                       const int record)
{
    uintptr_t pc = w->pc, sp = w->sp, bp = w->bp;
    unsigned n = w->n, tn = record ? t->n : 0;
    int bp_from = w->bp_from;
    enum walk_end end = WALK_DONE;
    const struct rule *table = rules;
    for (;;) {
        if (record && tn + 2 > PROF_TRAIL) {
            end = WALK_TRAIL_FULL;
            break;
        }
        struct rule *ru = (struct rule *)&table[((pc * 0x9e3779b97f4a7c15ull) >> 40) & (RULES - 1)];
        if (ma_unlikely(ru->pc != pc) && !rule_make(pc, ru)) {
            ru->pc = 0;
            end = WALK_GAVE_UP;
            break;
        }
        if (n < nstarts)
            starts[n] = ru->start;
        pcs[n++] = pc;
        if (ru->last || n == max)
            break;
        uintptr_t cfa;
        if (ru->cfa_rbp) {
            cfa = bp + (uintptr_t)(intptr_t)ru->cfa_off;
            if (record) {
                if (bp_from < 0)
                    t->bp_used = 1;
                else
                    t->read[bp_from].addr &= ~(uintptr_t)1;
            }
        } else {
            cfa = sp + (uintptr_t)(intptr_t)ru->cfa_off;
        }
        /* One unsigned compare: cfa above sp by at most MAX_FRAME. */
        if (ma_unlikely(cfa - sp - 1 >= MAX_FRAME || (cfa & 7) != 0)) {
            end = WALK_GAVE_UP;
            break;
        }
        pc = *(const uintptr_t *)(cfa - 8);
        if (record) {
            t->read[tn].addr = cfa - 8;
            t->read[tn++].value = pc;
        }
        if (ru->rbp_off != 0) {
            uintptr_t at = cfa + (uintptr_t)(intptr_t)ru->rbp_off;
            bp = *(const uintptr_t *)at;
            if (record) {
                /* bit 0 set: no frame has used this one yet (the words
                 * are 8-byte aligned) */
                bp_from = (int)tn;
                t->read[tn].addr = at | 1;
                t->read[tn++].value = bp;
            }
        }
        sp = cfa;
        if (pc == 0)
            break;
    }
    w->pc = pc;
    w->sp = sp;
    w->bp = bp;
    w->n = n;
    w->bp_from = bp_from;
    if (record)
        t->n = tn;
    return end;
}

/* Drops from trail t the saved rbp values no frame used: a later walk
 * need not find them unchanged. */
static void trail_finish(struct prof_trail *t)
{
    unsigned i = 0, n = t->n;
    while (i < n && !(t->read[i].addr & 1))
        i++;
    unsigned k = i;
    for (; i < n; i++)
        if (!(t->read[i].addr & 1))
            t->read[k++] = t->read[i];
    t->n = k;
}

unsigned prof_unwind_from(const struct prof_frame *f, uintptr_t *pcs, uintptr_t *starts, unsigned max,
                          unsigned nstarts, struct prof_trail *t)
{
    if (t != NULL)
        t->whole = 0;
    if (rules == NULL || max == 0)
        return 0;
    struct walk w = { f->pc, f->sp, f->bp, 0, -1 };
    enum walk_end end = WALK_TRAIL_FULL;
    ma_lock_acquire(&rule_lock);
    if (t != NULL) {
        t->n = 0;
        t->bp_used = 0;
        end = walk_frames(&w, pcs, starts, max, nstarts, t, 1);
        if (end == WALK_DONE) {
            trail_finish(t);
            t->whole = 1;
        }
    }
    if (end == WALK_TRAIL_FULL)
        end = walk_frames(&w, pcs, starts, max, nstarts, NULL, 0);
    ma_lock_release(&rule_lock);
    return end == WALK_GAVE_UP ? 0 : w.n;
}

#else /* not x86-64: prof.c always uses _Unwind_Backtrace */

void prof_unwind_init(void) {}
void prof_unwind_lock(void) {}
void prof_unwind_unlock(void) {}
void prof_unwind_reset(void) {}
unsigned prof_unwind_from(const struct prof_frame *f, uintptr_t *pcs, uintptr_t *starts, unsigned max,
                          unsigned nstarts, struct prof_trail *t)
{
    (void)f, (void)pcs, (void)starts, (void)max, (void)nstarts;
    if (t != NULL)
        t->whole = 0;
    return 0;
}
void prof_regs(struct prof_frame *f)
{
    f->pc = f->sp = f->bp = 0;
}

#endif
