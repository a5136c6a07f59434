/*
 * pagemap.c - the registry of address ranges memalloc owns, so that a
 * pointer can be validated before anything is read through it: free() of a
 * stack, global or foreign pointer is reported instead of faulting.
 *
 * A two-level radix map over the 47-bit user address space, one byte per
 * MA_REGION_SIZE granule. The root is static (64 KiB of zero pages); leaves
 * are mapped on first use and never freed. Lookups are lock-free loads;
 * leaves are published with a compare-and-swap. Never allocates via malloc.
 */
#include "internal.h"
#include "os.h"

#define LEAF_SIZE ((size_t)1 << PAGEMAP_LEAF_BITS)
#define SLOT_BITS PAGEMAP_SLOT_BITS
#define LEAF_BITS PAGEMAP_LEAF_BITS
#define root pagemap_root

/* atomic: each entry written once (NULL -> leaf) by CAS. */
unsigned char *pagemap_root[(size_t)1 << PAGEMAP_ROOT_BITS];

static unsigned char *leaf_get(size_t slot, int create)
{
    size_t r = slot >> LEAF_BITS;
    unsigned char *leaf = __atomic_load_n(&root[r], __ATOMIC_ACQUIRE);
    if (leaf != NULL || !create)
        return leaf;
    unsigned char *fresh = os_map(LEAF_SIZE);
    if (fresh == NULL)
        return NULL;
    unsigned char *expected = NULL;
    if (!__atomic_compare_exchange_n(&root[r], &expected, fresh, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        os_unmap(fresh, LEAF_SIZE);
        return expected;
    }
    return fresh;
}

int pagemap_set(uintptr_t base, size_t size, int kind)
{
    size_t first = base >> MA_REGION_SHIFT;
    size_t last = (base + size - 1) >> MA_REGION_SHIFT;
    if (last >> SLOT_BITS)
        return -1;
    for (size_t s = first; s <= last; s++) {
        unsigned char *leaf = leaf_get(s, kind != PAGEMAP_NONE);
        if (leaf == NULL) {
            if (kind == PAGEMAP_NONE)
                continue;
            /* Undo what was marked so the registry never claims a range
             * whose owner failed to register. */
            if (s > first)
                pagemap_set(base, (s - first) << MA_REGION_SHIFT, PAGEMAP_NONE);
            return -1;
        }
        __atomic_store_n(&leaf[s & (LEAF_SIZE - 1)], (unsigned char)kind, __ATOMIC_RELEASE);
    }
    return 0;
}
