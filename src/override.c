/*
 * override.c - the standard allocation names, C and C++, so that LD_PRELOAD
 * or -lmemalloc replaces the system allocator. The only file that defines
 * malloc, operator new and friends; each forwards to its ma_* function and
 * adds nothing but the argument shape the standard name requires. malloc,
 * free, new and delete expand the same inline fast paths as ma_malloc and
 * ma_free (fast.h), so a program's call reaches the bin without a further
 * jump.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memalloc.h"
#include "fast.h"
#include "process.h"
#include "../base/error.h"

#define MA_PUBLIC __attribute__((visibility("default")))

#define PAGE ((size_t)4096)

MA_PUBLIC void *malloc(size_t n) { return fast_malloc(n); }
MA_PUBLIC void free(void *p) { fast_free(p); }
MA_PUBLIC void *calloc(size_t count, size_t size) { return ma_calloc(count, size); }
MA_PUBLIC void *realloc(void *p, size_t n) { return ma_realloc(p, n); }
MA_PUBLIC void *reallocarray(void *p, size_t count, size_t size) { return ma_reallocarray(p, count, size); }
MA_PUBLIC int posix_memalign(void **out, size_t align, size_t n) { return ma_posix_memalign(out, align, n); }
MA_PUBLIC void *aligned_alloc(size_t align, size_t n) { return ma_aligned_alloc(align, n); }
MA_PUBLIC void *memalign(size_t align, size_t n) { return ma_aligned_alloc(align, n); }
MA_PUBLIC void *valloc(size_t n) { return ma_aligned_alloc(PAGE, n); }
MA_PUBLIC size_t malloc_usable_size(void *p) { return fast_usable_size(p); }
MA_PUBLIC int malloc_trim(size_t pad) { (void)pad; return ma_trim() > 0; }
MA_PUBLIC int mallopt(int param, int value) { return process_mallopt(param, value); }

MA_PUBLIC void *pvalloc(size_t n)
{
    /* pvalloc rounds the size up to whole pages (and 0 to one page). */
    size_t rounded = n == 0 ? PAGE : (n + PAGE - 1) & ~(PAGE - 1);
    if (rounded < n) {
        errno = ENOMEM;
        return NULL;
    }
    return ma_aligned_alloc(PAGE, rounded);
}

/* ---- glibc's introspection names ---- */

MA_PUBLIC void malloc_stats(void) { ma_stats_print(2, 0); }

MA_PUBLIC struct mallinfo2 mallinfo2(void)
{
    ma_stats_t s;
    s.size = sizeof s;
    struct mallinfo2 m;
    memset(&m, 0, sizeof m);
    if (ma_stats_get(&s) == 0) {
        m.arena = s.mapped;          /* bytes in arena chunks */
        m.ordblks = s.free_blocks;   /* free blocks */
        m.hblks = s.large_live;      /* directly mapped blocks */
        m.hblkhd = s.large_bytes;
        m.usmblks = s.peak_mapped;
        m.uordblks = s.in_use + s.large_bytes;
        m.fordblks = s.free;
    }
    return m;
}

/* The old int-sized form: figures above INT_MAX are clamped, not wrapped. */
MA_PUBLIC struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo m;
#define MA_CLAMP(v) ((v) > 0x7fffffff ? 0x7fffffff : (int)(v))
    m.arena = MA_CLAMP(m2.arena);
    m.ordblks = MA_CLAMP(m2.ordblks);
    m.smblks = 0;
    m.hblks = MA_CLAMP(m2.hblks);
    m.hblkhd = MA_CLAMP(m2.hblkhd);
    m.usmblks = MA_CLAMP(m2.usmblks);
    m.fsmblks = 0;
    m.uordblks = MA_CLAMP(m2.uordblks);
    m.fordblks = MA_CLAMP(m2.fordblks);
    m.keepcost = 0;
#undef MA_CLAMP
    return m;
}

/* Writes the XML to the stream's descriptor; a stream without one (e.g.
 * open_memstream) gets EINVAL rather than a partial document. */
MA_PUBLIC int malloc_info(int options, FILE *fp)
{
    int fd = fp != NULL ? fileno(fp) : -1;
    if (options != 0 || fd < 0) {
        errno = EINVAL;
        return -1;
    }
    fflush(fp);
    ma_stats_print(fd, MA_PRINT_XML);
    return 0;
}

/* ---- C++: the replaceable global operator new and operator delete ----
 *
 * Defined in C under their Itanium-ABI (mangled) names, so the library
 * needs no libstdc++: a C program that links or preloads it loads none.
 * The two things only libstdc++ can do, running the installed new-handler
 * and throwing std::bad_alloc, are reached through weak references, which
 * the dynamic linker binds when the program brings libstdc++ (every program
 * that calls operator new does) and which stay NULL otherwise. This file is
 * compiled with -fexceptions so that the exception unwinds through it. */

typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak)); /* std::get_new_handler() */
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn)); /* std::__throw_bad_alloc() */

/* An allocation for new: align 0 for the default alignment. */
static void *cxx_alloc(size_t n, size_t align)
{
    return align == 0 ? fast_malloc(n) : ma_aligned_alloc(align, n);
}

/* new could not allocate: call the new-handler and retry while there is
 * one, as the standard says; then throw std::bad_alloc (nothrow: return
 * NULL). A new-handler may itself throw, which ends the loop. */
static MA_COLD void *cxx_new_failed(size_t n, size_t align, int nothrow)
{
    for (;;) {
        new_handler_fn h = _ZSt15get_new_handlerv != NULL ? _ZSt15get_new_handlerv() : NULL;
        if (h == NULL)
            break;
        h();
        void *p = cxx_alloc(n, align);
        if (p != NULL)
            return p;
    }
    if (nothrow)
        return NULL;
    if (_ZSt17__throw_bad_allocv != NULL)
        _ZSt17__throw_bad_allocv();
    ma_fatal("operator new", "out of memory and no C++ runtime to throw std::bad_alloc", NULL);
}

/* Everything but a pop from the bin: a tail call from the operators, so
 * that their fast path keeps no frame and no register across a call. */
static __attribute__((noinline)) void *cxx_new_miss(size_t n, size_t align, int nothrow)
{
    void *p = align == 0 ? ma_malloc_miss(n) : ma_aligned_alloc(align, n);
    if (ma_likely(p != NULL))
        return p;
    return cxx_new_failed(n, align, nothrow);
}

/* A sampled allocation (prof_due said so), also a tail call. */
static __attribute__((noinline)) void *cxx_new_sampled(size_t n, int nothrow)
{
    void *p = ma_alloc_sampled(n, 0, 0);
    if (ma_likely(p != NULL))
        return p;
    return cxx_new_failed(n, 0, nothrow);
}

/* fast_malloc's work, and new's when it fails. */
static inline __attribute__((always_inline)) void *cxx_new(size_t n, size_t align, int nothrow)
{
    if (ma_likely(align == 0 && n <= TC_MAX_REQUEST)) {
        if (prof_due(n))
            return cxx_new_sampled(n, nothrow);
        void *p = tcache_pop(n);
        if (ma_likely(p != NULL))
            return p;
    }
    return cxx_new_miss(n, align, nothrow);
}

/* A delete that passes the size: in check mode (ma_fast_limit is 0 then,
 * and before init) ma_free_sized verifies it against the block. */
static inline __attribute__((always_inline)) void cxx_delete_sized(void *p, size_t n)
{
    if (ma_unlikely(ma_fast_limit == 0))
        ma_free_sized(p, n);
    else
        fast_free(p);
}

MA_PUBLIC void *_Znwm(size_t n) { return cxx_new(n, 0, 0); }
MA_PUBLIC void *_Znam(size_t n) { return cxx_new(n, 0, 0); }
MA_PUBLIC void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return cxx_new(n, 0, 1); }
MA_PUBLIC void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return cxx_new(n, 0, 1); }
MA_PUBLIC void *_ZnwmSt11align_val_t(size_t n, size_t al) { return cxx_new(n, al, 0); }
MA_PUBLIC void *_ZnamSt11align_val_t(size_t n, size_t al) { return cxx_new(n, al, 0); }
MA_PUBLIC void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt) { (void)nt; return cxx_new(n, al, 1); }
MA_PUBLIC void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt) { (void)nt; return cxx_new(n, al, 1); }

MA_PUBLIC void _ZdlPv(void *p) { fast_free(p); }
MA_PUBLIC void _ZdaPv(void *p) { fast_free(p); }
MA_PUBLIC void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; fast_free(p); }
MA_PUBLIC void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; fast_free(p); }
MA_PUBLIC void _ZdlPvm(void *p, size_t n) { cxx_delete_sized(p, n); }
MA_PUBLIC void _ZdaPvm(void *p, size_t n) { cxx_delete_sized(p, n); }
MA_PUBLIC void _ZdlPvSt11align_val_t(void *p, size_t al) { (void)al; fast_free(p); }
MA_PUBLIC void _ZdaPvSt11align_val_t(void *p, size_t al) { (void)al; fast_free(p); }
MA_PUBLIC void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { (void)al; (void)nt; fast_free(p); }
MA_PUBLIC void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { (void)al; (void)nt; fast_free(p); }
MA_PUBLIC void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)al; cxx_delete_sized(p, n); }
MA_PUBLIC void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)al; cxx_delete_sized(p, n); }
