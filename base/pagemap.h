/*
 * pagemap.h - the registry of address ranges memalloc owns: one byte per
 * MA_REGION_SIZE granule of the 47-bit user address space, so that any
 * pointer can be classified (ours or not, chunk of which arena, large
 * mapping) with one shift and one load, before anything is read through it.
 */
#ifndef MA_PAGEMAP_H
#define MA_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Granule of the registry: every chunk and every large mapping starts on a
 * multiple of it, so one byte per granule tells whether an address is ours. */
#define MA_REGION_SHIFT 20
#define MA_REGION_SIZE ((size_t)1 << MA_REGION_SHIFT)

/* NONE: not ours. LARGE: the first granule of a large mapping (its header
 * sits at the granule's start). FREED: a granule we mapped and gave back; a
 * pointer into it is a dangling pointer (double free) unless someone else
 * mapped the range since. CHUNK + i: every granule of a chunk of arena i, so
 * that free() learns the owning arena from the byte it must read anyway.
 * NEVER is stored nowhere: it is the tag of a thread without a cache, which
 * therefore matches no granule. */
enum { PAGEMAP_NONE = 0, PAGEMAP_NEVER = 1, PAGEMAP_LARGE = 2, PAGEMAP_FREED = 3, PAGEMAP_CHUNK = 4 };
/* Arenas a byte can name (MEMALLOC_ARENAS is capped here). */
#define MA_MAX_ARENAS (256 - PAGEMAP_CHUNK)

static inline int pagemap_is_chunk(int kind) { return kind >= PAGEMAP_CHUNK; }

/* Marks [base, base + size) as `kind` (base aligned to MA_REGION_SIZE).
 * Returns 0, or -1 if the range is outside the 47-bit space. */
MA_HIDDEN int pagemap_set(uintptr_t base, size_t size, int kind);

/* The map: one byte per granule of the 47-bit user address space, flat, so a
 * lookup is one shift and one load. 128 MiB of address space in .bss; only
 * the pages covering granules in use are ever touched (one 4 KiB page of the
 * map covers 4 GiB of addresses). */
#define PAGEMAP_ADDR_BITS 47
#define PAGEMAP_SLOTS ((size_t)1 << (PAGEMAP_ADDR_BITS - MA_REGION_SHIFT))
/* Address bits that no granule of ours can have: above the 47-bit space. */
#define PAGEMAP_OUTSIDE (~(((uintptr_t)1 << PAGEMAP_ADDR_BITS) - 1))
MA_HIDDEN extern unsigned char pagemap_map[PAGEMAP_SLOTS]; /* atomic bytes */

/* The kind of the granule holding `addr`: never faults, whatever addr is.
 * Inline: every free asks. */
static inline int pagemap_get(uintptr_t addr)
{
    if (ma_unlikely(addr & PAGEMAP_OUTSIDE))
        return PAGEMAP_NONE;
    return __atomic_load_n(&pagemap_map[addr >> MA_REGION_SHIFT], __ATOMIC_ACQUIRE);
}

#endif /* MA_PAGEMAP_H */
