/*
 * override.c - the standard allocation names, so that LD_PRELOAD or
 * -lmemalloc replaces the system allocator. The only file that defines
 * malloc and friends; each forwards to its ma_* function and adds nothing
 * but the argument shape the standard name requires. malloc and free
 * expand the same inline fast paths as ma_malloc and ma_free (fast.h), so a
 * program's call reaches the bin without a further jump.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memalloc.h"
#include "fast.h"

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

