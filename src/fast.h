/*
 * fast.h - the fast paths of malloc and free, inline so that each entry
 * point that serves them (ma_malloc and ma_free in memalloc.c, malloc and
 * free in override.c) is the whole fast path rather than a jump to it.
 *
 * What the fast paths do: malloc pops a block from the thread's bin; free
 * checks the pointer and the block's header and pushes it on the bin. No
 * lock, no atomic read-modify-write, no call. Everything else (an empty
 * bin, a block of another arena, a large block, a bad pointer, check mode)
 * leaves through one call to memalloc.c, which names any problem it finds.
 */
#ifndef MA_FAST_H
#define MA_FAST_H

#include <stddef.h>
#include <stdint.h>

#include "process.h"
#include "tcache.h"
#include "../arenas/arena.h"

/* An allocation the profiler samples (prof_due said so): n bytes aligned
 * to align (0: the default), zeroed when zero. */
MA_HIDDEN MA_COLD void *ma_alloc_sampled(size_t n, size_t align, int zero);
/* The same, the stack to be walked from the frame (pc, sp, bp) (prof.h's
 * struct prof_frame; pc 0: from the sampled path's own frame).
 * ma_alloc_sampled passes its caller's frame (memalloc.c). */
MA_HIDDEN __attribute__((noinline)) void *ma_alloc_sampled_at(size_t n, size_t align, int zero, uintptr_t pc,
                                                              uintptr_t sp, uintptr_t bp);
/* malloc when the thread's bin had nothing (or n is not cached). */
MA_HIDDEN void *ma_malloc_miss(size_t n);
/* free of anything the fast path does not take. */
MA_HIDDEN void ma_free_miss(void *p);
/* free of a block whose pagemap byte is the thread's cache tag but which
 * the inline path did not take; x is its head as the caller read it. */
MA_HIDDEN void ma_free_local(void *p, size_t x);
/* The same for a block whose head the inline path decoded as an allocated,
 * unsampled medium block (TC_MAX_BLOCK < size <= TC_MEDIUM_MAX_BLOCK). */
MA_HIDDEN void ma_free_medium(void *p, size_t size);
/* operator delete with a size in check mode: aborts unless the size is the
 * one the block was asked for, then frees. */
MA_HIDDEN MA_COLD void ma_free_sized(void *p, size_t n);
/* malloc_usable_size of anything fast_usable_size does not answer. */
MA_HIDDEN size_t ma_usable_size_miss(const void *p);

static inline __attribute__((always_inline)) void *fast_malloc(size_t n)
{
    if (ma_likely(n <= TC_MAX_REQUEST)) {
        if (prof_due(n))
            return ma_alloc_sampled(n, 0, 0);
        void *p = tcache_pop(n);
        if (ma_likely(p != NULL))
            return p;
    }
    return ma_malloc_miss(n);
}

/* The pagemap byte of the granule of u, or PAGEMAP_NONE when u is not
 * 16-byte aligned or lies outside the 47-bit space (NULL included): one
 * mask, so every such pointer reads as no chunk. */
static inline int pointer_tag(uintptr_t u)
{
    if (ma_unlikely((u & (PAGEMAP_OUTSIDE | (MA_ALIGN - 1))) != 0))
        return PAGEMAP_NONE;
    return __atomic_load_n(&pagemap_map[u >> MA_REGION_SHIFT], __ATOMIC_RELAXED);
}

/* The cheap checks of a small block's header that a fast path makes before
 * trusting it (the slow path makes them all and names what failed):
 * allocated, at most TC_MAX_BLOCK long, the next block agreeing that this
 * one is in use, and not already in a cache or on a remote stack.
 *
 * Reading the next block's head cannot fault: the pagemap said u lies in a
 * chunk, and every chunk ends in CHUNK_FENCE bytes (more than TC_MAX_BLOCK)
 * that no block covers, so u + size stays inside the chunk's mapping. */

/* The checks that need the size: the next block's head (the last word of
 * this block's span) says this one is in use, and the block carries no
 * cached/pending key. The head is read as a relaxed atomic (its owner may be
 * changing it under the arena lock); on x86-64 a testb of its low byte is
 * that read, one instruction where gcc will not fold an atomic load into
 * the test. */
static inline int block_rest_plausible(uintptr_t u, size_t size)
{
    const unsigned char *nh = (const unsigned char *)(u + size - B_OVERHEAD);
#if defined(__x86_64__)
    int prev_inuse;
    __asm__("testb %2, %1" : "=@ccnz"(prev_inuse) : "m"(*nh), "i"(B_PREV_INUSE));
#else
    int prev_inuse = (__atomic_load_n((const size_t *)nh, __ATOMIC_RELAXED) & B_PREV_INUSE) != 0;
#endif
    return prev_inuse && ((const uintptr_t *)u)[1] != cached_key((const void *)u);
}

/* A block of `size` bytes at u, in a chunk (the pagemap said so), ends
 * inside it: needed above TC_MAX_BLOCK, which the chunk's fence covers,
 * before the next block's head is read. A chunk is a whole number of
 * pagemap regions (at least one, aligned), so a block that ends in the
 * region it starts in needs no look at the chunk size. */
static inline int block_ends_in_chunk(uintptr_t u, size_t size)
{
    return ma_likely(((u ^ (u + size - 1)) >> MA_REGION_SHIFT) == 0) ||
           (u & (ma_cfg.chunk_size - 1)) + size <= ma_cfg.chunk_size;
}

/* All of them for a block of lo to hi bytes (constants) whose head h the
 * caller has read, and not sampled by the profiler (whose blocks take the
 * slow path); returns the block size, or 0 if any check fails. Above
 * TC_MAX_BLOCK, which the chunk's fence covers, the block is first proved
 * to end inside its chunk. */
static inline size_t block_head_plausible(uintptr_t u, size_t h, size_t lo, size_t hi)
{
    size_t size = h & ~B_FLAGS;
    if ((h & (B_INUSE | B_SAMPLED)) != B_INUSE || size - lo > hi - lo)
        return 0;
    if (hi > TC_MAX_BLOCK && !block_ends_in_chunk(u, size))
        return 0;
    return block_rest_plausible(u, size) ? size : 0;
}

/* The same, the head read here. */
static inline size_t block_plausible_in(uintptr_t u, size_t lo, size_t hi)
{
    return block_head_plausible(u, __atomic_load_n((const size_t *)(u - B_OVERHEAD), __ATOMIC_RELAXED), lo, hi);
}

/* A small block (the sizes the inline fast paths serve). */
static inline size_t block_plausible(uintptr_t u) { return block_plausible_in(u, B_MIN, TC_MAX_BLOCK); }

static inline __attribute__((always_inline)) void fast_free(void *p)
{
    /* The pointer is 16-byte aligned and inside the 47-bit space (one mask,
     * so NULL and every error take the slow path), its granule's pagemap
     * byte equals the thread's cache tag (a chunk block of the arena this
     * thread caches for), and the header passes the checks of
     * block_plausible, made here in an order that lets a block below 1 KiB
     * find its bin with one range test and a shift. */
    uintptr_t u = (uintptr_t)p;
    if (ma_likely((u & (PAGEMAP_OUTSIDE | (MA_ALIGN - 1))) == 0) &&
        ma_likely(__atomic_load_n(&pagemap_map[u >> MA_REGION_SHIFT], __ATOMIC_RELAXED) == ma_tc.tag)) {
        /* One range test decodes the header: with the previous-in-use bit
         * masked, an allocated block's head is size | B_INUSE and nothing
         * else, so subtracting B_MIN | B_INUSE leaves (size - B_MIN) with a
         * zero low nibble, and rotating that nibble to the top makes every
         * other header (free, purged, size below B_MIN) a huge number. */
        size_t x = __atomic_load_n((const size_t *)(u - B_OVERHEAD), __ATOMIC_RELAXED) & ~B_PREV_INUSE;
        size_t k = x - (B_MIN | B_INUSE);
        k = (k >> 4) | (k << 60);
        /* Written twice so that the common case indexes the bins with k
         * plus a constant (gcc merges the two otherwise, one add more). */
        if (ma_likely(k < (TC_EXACT_LIMIT - B_MIN) / 16)) {
            if (ma_likely(block_rest_plausible(u, x - B_INUSE))) {
                tcache_push_at(p, k);
                return;
            }
        } else if (k <= (TC_MAX_BLOCK - B_MIN) / 16) {
            if (ma_likely(block_rest_plausible(u, x - B_INUSE))) {
                tcache_push(p, tc_free_class[k + B_MIN / 16]);
                return;
            }
        } else if (k <= (TC_MEDIUM_MAX_BLOCK - B_MIN) / 16) {
            /* The same range test said allocated, unsampled, medium. */
            ma_free_medium(p, x - B_INUSE);
            return;
        }
        ma_free_local(p, x);
        return;
    }
    ma_free_miss(p);
}

/* Programs that keep count of their memory call malloc_usable_size for
 * every block they allocate and free (Redis's zmalloc_size). A small chunk
 * block whose header passes free's checks (block_plausible) is answered
 * from them; every other pointer, and check mode (ma_fast_limit is 0), take
 * the full validation, which names any problem. */
static inline size_t fast_usable_size(const void *p)
{
    uintptr_t u = (uintptr_t)p;
    if (ma_likely(ma_fast_limit != 0 && pagemap_is_chunk(pointer_tag(u)))) {
        size_t size = block_plausible(u);
        if (ma_likely(size != 0))
            return size - B_OVERHEAD;
    }
    return ma_usable_size_miss(p);
}

#endif /* MA_FAST_H */
