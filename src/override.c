/*
 * override.c - the standard allocation names, so that LD_PRELOAD or
 * -lmemalloc replaces the system allocator. The only file that defines
 * malloc and friends; each forwards to its ma_* function and adds nothing
 * but the argument shape the standard name requires.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "memalloc.h"

#define MA_PUBLIC __attribute__((visibility("default")))

#define PAGE ((size_t)4096)

MA_PUBLIC void *malloc(size_t n) { return ma_malloc(n); }
MA_PUBLIC void free(void *p) { ma_free(p); }
MA_PUBLIC void *calloc(size_t count, size_t size) { return ma_calloc(count, size); }
MA_PUBLIC void *realloc(void *p, size_t n) { return ma_realloc(p, n); }
MA_PUBLIC void *reallocarray(void *p, size_t count, size_t size) { return ma_reallocarray(p, count, size); }
MA_PUBLIC int posix_memalign(void **out, size_t align, size_t n) { return ma_posix_memalign(out, align, n); }
MA_PUBLIC void *aligned_alloc(size_t align, size_t n) { return ma_aligned_alloc(align, n); }
MA_PUBLIC void *memalign(size_t align, size_t n) { return ma_aligned_alloc(align, n); }
MA_PUBLIC void *valloc(size_t n) { return ma_aligned_alloc(PAGE, n); }
MA_PUBLIC size_t malloc_usable_size(void *p) { return ma_usable_size(p); }
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
