/*
 * pagemap.c - the registry of address ranges memalloc owns, so that a
 * pointer can be validated before anything is read through it: free() of a
 * stack, global or foreign pointer is reported instead of faulting, and a
 * chunk's byte names its arena, so free() routes a block without reading the
 * chunk header.
 *
 * A flat map over the 47-bit user address space, one byte per
 * MA_REGION_SIZE granule (pagemap.h). It lives in .bss: zero (PAGEMAP_NONE)
 * before anything runs, so lookups need no initialisation and never fault.
 * Bytes are written with release stores by the thread that maps or unmaps
 * the range; lookups are plain loads. Never allocates.
 */
#include "pagemap.h"

/* atomic bytes: written by whoever maps or unmaps the granule. */
unsigned char pagemap_map[PAGEMAP_SLOTS];

int pagemap_set(uintptr_t base, size_t size, int kind)
{
    if ((base | (base + size - 1)) & PAGEMAP_OUTSIDE)
        return -1;
    size_t first = base >> MA_REGION_SHIFT;
    size_t last = (base + size - 1) >> MA_REGION_SHIFT;
    for (size_t s = first; s <= last; s++)
        __atomic_store_n(&pagemap_map[s], (unsigned char)kind, __ATOMIC_RELEASE);
    return 0;
}
