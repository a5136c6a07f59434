/*
 * chunk.c - an arena's chunks: mapping a new one when the index has no
 * block to offer, unmapping one that is wholly free beyond what the arena
 * keeps, the spare chunks kept while they are reused, and ma_trim's pass
 * over every chunk. Lock held throughout.
 */
#include <errno.h>

#include "engine.h"

size_t (*arena_chunk_shed)(size_t bytes);

struct block *chunk_grow(struct arena *a)
{
    size_t cs = a->chunk_size;
    /* Pages cached for large blocks go back first: a program that now
     * allocates small blocks where it used large ones (a buffer grown to
     * megabytes, copied out, freed) would otherwise hold both. */
    if (arena_chunk_shed != NULL)
        arena_chunk_shed(cs);
    struct chunk *c = os_map_chunk(cs);
    if (c == NULL)
        return NULL;
    if (pagemap_set((uintptr_t)c, cs, PAGEMAP_CHUNK + (int)a->index) != 0) {
        (void)os_unmap_chunk(c, cs);
        errno = ENOMEM;
        return NULL;
    }
    c->magic = CHUNK_MAGIC ^ (uintptr_t)c;
    c->arena = a;
    c->size = cs;
    c->prev = NULL;
    c->next = a->chunks;
    if (a->chunks != NULL)
        a->chunks->prev = c;
    a->chunks = c;
    a->nchunks++;
    /* Atomic: a new thread reads it without the lock (tcache.c, arena_pick). */
    __atomic_store_n(&a->mapped, a->mapped + cs, __ATOMIC_RELAXED);
    a->empty_chunks++;

    size_t cap = chunk_capacity(cs);
    struct block *b = chunk_first_block(c);
    hd_set(b, cap | B_PREV_INUSE);
    struct block *fence = (struct block *)((char *)b + cap);
    fence->prev_size = cap;
    hd_set(fence, B_INUSE);
    index_insert(a, b, cap);
    return b;
}

void chunk_release(struct arena *a, struct chunk *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->chunks = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->nchunks--;
    __atomic_store_n(&a->mapped, a->mapped - c->size, __ATOMIC_RELAXED);
    size_t size = c->size;
    c->magic = 0;
    pagemap_set((uintptr_t)c, size, PAGEMAP_FREED);
    if (os_unmap_chunk(c, size) != 0)
        ma_fatal("munmap", "kernel would not unmap a chunk (corrupted chunk header?)", c);
}

/* ---- retained chunks ---- */

/* A chunk that falls wholly free beyond the reserve stays mapped
 * (chunk_retained): a program that frees a batch and allocates the next,
 * or a thread that takes over the arena of one that exited, reuses it
 * without a system call or a page fault. A decay pass (purge.c) unmaps the
 * ones that stayed wholly free since the pass before: spare_low is the
 * fewest wholly free chunks seen in between. ma_trim unmaps them all. */

size_t chunks_release_free(struct arena *a, size_t n)
{
    size_t cap = chunk_capacity(a->chunk_size), released = 0;
    for (struct chunk *c = a->chunks, *next; c != NULL && n != 0; c = next) {
        next = c->next;
        struct block *b = chunk_first_block(c);
        if ((hd_get(b) & ~B_PURGED) == (cap | B_PREV_INUSE)) {
            index_remove(a, b, cap);
            a->empty_chunks--;
            released += c->size;
            chunk_release(a, c);
            n--;
        }
    }
    return released;
}

void chunks_release_unused(struct arena *a)
{
    /* ma_trim may have unmapped some since (it does not lower spare_low). */
    size_t low = a->spare_low < a->empty_chunks ? a->spare_low : a->empty_chunks;
    if (low > a->reserve)
        chunks_release_free(a, low - a->reserve);
    a->spare_low = a->empty_chunks;
}

/* ---- giving memory back ---- */

size_t arena_trim(struct arena *a)
{
    arena_consolidate(a);
    size_t released = chunks_release_free(a, SIZE_MAX);
    for (struct chunk *c = a->chunks; c != NULL; c = c->next) {
        for (struct block *b = chunk_first_block(c); (hd_get(b) & ~B_FLAGS) != 0; b = block_next(b)) {
            if (hd_get(b) & B_INUSE)
                continue;
            released += block_purge(b);
            hd_set(b, hd_get(b) | B_PURGED);
        }
    }
    return released;
}
