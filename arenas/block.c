/*
 * block.c - allocation and release inside one arena: taking the best fit
 * from the index, carving (single blocks, a batch for a thread cache, an
 * aligned block), growing and shrinking in place, and returning a block
 * with coalescing. Lock held throughout.
 */
#include "engine.h"

/* ---- allocation ---- */

/* Removes and returns a free block of at least bsize bytes, the best fit
 * the index can name: below 1 KiB classes are exact, so the first non-empty
 * class at or above bsize's is the best fit; above, a class spans 1/16 of a
 * power of two, so a few blocks of bsize's own class are tried first. */
static struct block *index_take(struct arena *a, size_t bsize)
{
    unsigned c = arena_class_of(bsize);
    if (bsize >= CLASS_EXACT_LIMIT) {
        struct block *b = a->heads[c];
        for (int tries = 0; b != NULL && tries < 4; tries++, b = b->next) {
            size_t s = hd_get(b) & ~B_FLAGS;
            if (s >= bsize) {
                index_remove(a, b, s);
                return b;
            }
        }
        c++;
    }
    int f = index_find(a, c);
    if (f < 0)
        return NULL;
    struct block *b = a->heads[f];
    index_remove(a, b, hd_get(b) & ~B_FLAGS);
    return b;
}

/* Marks free block b (already out of the index) allocated with bsize bytes,
 * splitting off the rest as a free block when it can be one. */
static void *block_carve(struct arena *a, struct block *b, size_t bsize)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    size_t rest = size - bsize;
    if (size == chunk_capacity(a->chunk_size))
        chunk_taken(a);
    if (rest >= B_MIN) {
        hd_set(b, bsize | B_INUSE | (h & B_PREV_INUSE));
        struct block *r = (struct block *)((char *)b + bsize);
        hd_set(r, rest | B_PREV_INUSE);
        block_next(r)->prev_size = rest;
        index_insert(a, r, rest);
        size = bsize;
    } else {
        hd_set(b, (h & ~B_PURGED) | B_INUSE);
        struct block *n = block_next(b);
        hd_prev_inuse_set(n);
    }
    a->in_use += size;
    if (a->in_use > a->peak_in_use)
        a->peak_in_use = a->in_use;
    return block_payload(b);
}

/* Whether free block b, taken for a block of bsize bytes, is one to cut
 * only once what is parked has been coalesced: bigger than that by
 * CARVE_REST or more while more than carve_reuse_min() is parked
 * (engine.h): parked memory is reused before a big free block, often fresh
 * pages, is cut. */
static inline int reuse_first(const struct arena *a, const struct block *b, size_t bsize)
{
    return a->quick_bytes > carve_reuse_min(a) && block_size(b) - bsize >= CARVE_REST;
}

/* Takes a free block of at least need bytes for a block of bsize bytes
 * once parked blocks have been coalesced as far as the request needs:
 * first every quick list whose class no refill has asked for since the
 * last such pass (sizes the program has left, which would otherwise stay
 * parked between the big blocks for good), then a segment at a time, the
 * biggest classes first, until the index holds a block reuse_first lets
 * it cut, or nothing is parked. Returns that block (out of the index),
 * else the best fit then, NULL if none. Big blocks go first because they
 * coalesce into room for the request soonest; a crowd of small ones that
 * refills still ask for, the costliest to coalesce per byte, often stays
 * parked for its own sizes (bench/NOTES.md, "Parked blocks coalesced
 * biggest first"). */
static struct block *index_take_releasing(struct arena *a, size_t need, size_t bsize)
{
    unsigned cls = QUICK_CLASSES;
    a->grow_cut = 0;
    arena_release_unasked(a);
    do {
        struct block *b = index_take(a, need);
        if (b != NULL) {
            if (!reuse_first(a, b, bsize))
                return b;
            index_link(a, b, block_size(b));
        }
    } while (arena_release_segment(a, &cls));
    return index_take(a, need);
}

/* Puts b back and takes again once what is parked has been coalesced as
 * far as the request needs. */
static struct block *index_retake_released(struct arena *a, struct block *b, size_t need, size_t bsize)
{
    index_link(a, b, block_size(b));
    return index_take_releasing(a, need, bsize);
}

/* index_take(a, need) for a block of bsize bytes, coalescing what is
 * parked first if reuse_first says so. */
static struct block *index_take_reusing(struct arena *a, size_t need, size_t bsize)
{
    struct block *b = index_take(a, need);
    if (b != NULL && reuse_first(a, b, bsize))
        b = index_retake_released(a, b, need, bsize);
    return b;
}

/* A free block of at least bsize bytes out of the index, mapping a new
 * chunk if none is left; NULL if that fails. */
static struct block *block_find(struct arena *a, size_t bsize)
{
    struct block *b = index_take_reusing(a, bsize, bsize);
    if (ma_unlikely(b == NULL)) {
        /* Take what other threads freed and coalesce what is parked
         * before asking the OS for more. */
        arena_drain(a);
        if (a->quick_blocks != 0 && (b = index_take_releasing(a, bsize, bsize)) != NULL)
            return b;
        arena_purge_fragmented(a);
        if (chunk_grow(a) == NULL)
            return NULL;
        b = index_take(a, bsize);
    }
    return b;
}

void *arena_alloc(struct arena *a, size_t bsize)
{
    struct block *b = block_find(a, bsize);
    if (b == NULL)
        return NULL;
    a->allocs++;
    return block_carve(a, b, bsize);
}

/* realloc's growth coalesces what is parked only once it has cut
 * GROW_PATIENCE bytes per parked block from big free blocks (counted in
 * grow_cut since the last consolidation): a program that grows a string or
 * an array while thousands of small blocks are parked (CPython's
 * json.dumps: 30,000 blocks of 70 bytes on average) would otherwise
 * coalesce all of them, some 70 instructions a block, for one growth of a
 * kilobyte or two, and carve them again when their sizes are asked for. A
 * few big parked blocks (a program growing its buffers in turn) are
 * coalesced after a cut or two (bench/NOTES.md, "realloc's growth and
 * parked blocks"). */
#define GROW_PATIENCE ((size_t)64)

void *arena_alloc_growing(struct arena *a, size_t bsize)
{
    /* A free block with as much again after the new one, if there is one,
     * so the next growth finds the free space in place; else the best fit. */
    size_t need = 2 * bsize;
    struct block *b = index_take(a, need);
    if (b != NULL && reuse_first(a, b, bsize) && (a->grow_cut += bsize) >= a->quick_blocks * GROW_PATIENCE)
        b = index_retake_released(a, b, need, bsize);
    if (b == NULL)
        return arena_alloc(a, bsize);
    a->allocs++;
    return block_carve(a, b, bsize);
}

/* Appends payload p, keyed as cached, to the batch list first..last. */
static inline void batch_append(void **first, void **last, void *p)
{
    ((uintptr_t *)p)[1] = cached_key(p);
    if (*last != NULL)
        link_set(*last, p);
    else
        *first = p;
    *last = p;
}

unsigned arena_alloc_batch(struct arena *a, size_t bsize, unsigned n, void **head, size_t *bytes)
{
    unsigned got = 0;
    /* The blocks are linked in the order they are carved, in front of what
     * *head held: the bin hands them out in address order. */
    void *first = NULL, *last = NULL;
    while (got < n) {
        /* Below 1 KiB every block of a batch must be exactly bsize (bins
         * and quick lists of those classes hold one size): a free block
         * bigger by less than B_MIN cannot be split, and carved whole it is
         * a block of another class, of no use to this refill. So unless
         * bsize's own list (class bsize / 16) has a block, look for one
         * that splits. */
        size_t fit = bsize < CLASS_EXACT_LIMIT && a->heads[bsize / 16] == NULL ? bsize + B_MIN : bsize;
        struct block *b = block_find(a, fit);
        if (b == NULL)
            break;
        size_t h = hd_get(b);
        size_t size = h & ~B_FLAGS;
        size_t k = size / bsize;
        if (k > n - got)
            k = n - got;
        if (k <= 1) {
            void *p = block_carve(a, b, bsize);
            *bytes += block_size(block_of(p));
            batch_append(&first, &last, p);
            got++;
            continue;
        }
        /* Bulk carve: k consecutive blocks out of one free block, the rest
         * back to the index, one index operation instead of k. */
        if (size == chunk_capacity(a->chunk_size))
            chunk_taken(a);
        size_t rest = size - k * bsize;
        /* Every block exactly bsize (a quick list below 1 KiB relies on
         * it): a remainder too small to be a block joins the last one,
         * which then stays free. */
        if (rest != 0 && rest < B_MIN) {
            k--;
            rest += bsize;
        }
        /* Each block keyed and linked to the one after it, the keys read
         * once (the stores could alias them); the first joins the batch,
         * the last is linked by what follows. */
        char *pay = (char *)block_payload(b);
        uintptr_t key = cached_key(pay), link_key = ma_link_key;
        batch_append(&first, &last, pay);
        hd_set(b, bsize | B_INUSE | (h & B_PREV_INUSE));
        for (size_t i = 1; i < k; i++, pay += bsize) {
            hd_set(block_of(pay + bsize), bsize | B_INUSE | B_PREV_INUSE);
            ((uintptr_t *)(pay + bsize))[1] = key;
            *(uintptr_t *)pay = (uintptr_t)(pay + bsize) ^ link_key;
        }
        last = pay;
        struct block *after = (struct block *)((char *)b + k * bsize);
        if (rest >= B_MIN) {
            hd_set(after, rest | B_PREV_INUSE);
            block_next(after)->prev_size = rest;
            index_insert(a, after, rest);
            a->in_use += size - rest;
        } else {
            hd_prev_inuse_set(after);
            a->in_use += size;
        }
        if (a->in_use > a->peak_in_use)
            a->peak_in_use = a->in_use;
        *bytes += k * bsize;
        got += (unsigned)k;
    }
    if (last != NULL) {
        link_set(last, *head);
        *head = first;
    }
    return got;
}

/* ---- freeing ---- */

void block_release(struct arena *a, struct block *b)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    struct block *n = (struct block *)((char *)b + size);
    a->in_use -= size;

    if (!(h & B_PREV_INUSE)) {
        size_t ps = b->prev_size;
        struct block *pb = (struct block *)((char *)b - ps);
        struct chunk *c = chunk_of(b, a->chunk_size);
        if (ma_unlikely(ps < B_MIN || (ps & B_FLAGS) || (char *)pb < (char *)chunk_first_block(c) ||
                        (hd_get(pb) & ~B_FLAGS) != ps || (hd_get(pb) & B_INUSE)))
            ma_fatal("free", "corrupted footer of the previous block", block_payload(b));
        index_remove(a, pb, ps);
        size += ps;
        b = pb;
    }
    size_t nh = hd_get(n);
    if (!(nh & B_INUSE)) {
        size_t ns = nh & ~B_FLAGS;
        index_remove(a, n, ns);
        size += ns;
    }
    hd_set(b, size | B_PREV_INUSE);
    struct block *after = (struct block *)((char *)b + size);
    after->prev_size = size;
    hd_prev_inuse_clear(after);

    if (ma_unlikely(size == chunk_capacity(a->chunk_size))) {
        if (a->empty_chunks >= a->reserve && !chunk_retained(a)) {
            chunk_release(a, chunk_of(b, a->chunk_size));
            return;
        }
        a->empty_chunks++;
    }
    index_insert(a, b, size);
    a->dirty += size;
    if (ma_unlikely(a->dirty > purge_trigger(a)))
        arena_purge(a);
}

void arena_validate(const struct chunk *c, const void *p, const char *fn)
{
    const struct block *b = block_of(p);
    if (ma_unlikely((uintptr_t)p < (uintptr_t)chunk_first_block(c) + B_HDR))
        ma_fatal(fn, "invalid pointer (inside a chunk header)", p);
    size_t h = hd_get(b);
    size_t s = h & ~B_FLAGS;
    /* Sizes compared, not pointers: a garbage size must not wrap around. */
    if (ma_unlikely(s < B_MIN || s > (size_t)((const char *)c + c->size - CHUNK_FENCE - (const char *)b)))
        ma_fatal(fn, "invalid pointer or corrupted block header", p);
    if (ma_unlikely(!(h & B_INUSE)))
        ma_fatal(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected" : "block is not allocated (already freed?)", p);
    const struct block *n = (const struct block *)((const char *)b + s);
    if (ma_unlikely(!(hd_get(n) & B_PREV_INUSE)))
        ma_fatal(fn, "invalid pointer or corrupted block header", p);
    uintptr_t key = ((const uintptr_t *)p)[1];
    if (ma_unlikely(key == cached_key(p)))
        ma_fatal(fn, fn[0] == 'f' && fn[1] == 'r' ? "double free detected" : "block is not allocated (already freed?)", p);
}

void arena_free(struct arena *a, void *p)
{
    a->frees++;
    block_release(a, block_of(p));
}

/* ---- resizing and alignment ---- */

/* Cuts allocated block b down to bsize bytes when the rest can be a block,
 * and frees the rest (which coalesces with a free successor). */
static void block_shrink(struct arena *a, struct block *b, size_t bsize)
{
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    if (size - bsize < B_MIN)
        return;
    hd_set(b, bsize | (h & B_FLAGS));
    struct block *r = (struct block *)((char *)b + bsize);
    hd_set(r, (size - bsize) | B_INUSE | B_PREV_INUSE);
    block_release(a, r);
}

int arena_resize(struct arena *a, void *p, size_t bsize)
{
    struct block *b = block_of(p);
    size_t h = hd_get(b);
    size_t size = h & ~B_FLAGS;
    if (bsize > size) {
        struct block *n = block_next(b);
        size_t nh = hd_get(n);
        if (nh & B_INUSE)
            return 0;
        size_t ns = nh & ~B_FLAGS;
        if (size + ns < bsize)
            return 0;
        /* Split the free neighbour directly: its rest stays free where it
         * was (its successor is in use, or they would have coalesced), with
         * no release, coalescing or purge accounting of its bytes. */
        size_t rest = size + ns - bsize;
        if (rest >= B_MIN) {
            hd_set(b, bsize | (h & B_FLAGS));
            index_shrink_front(a, n, ns, rest, B_PREV_INUSE | (nh & B_PURGED));
            a->in_use += bsize - size;
        } else {
            index_remove(a, n, ns);
            hd_set(b, (size + ns) | (h & B_FLAGS));
            struct block *after = block_next(b);
            hd_prev_inuse_set(after);
            a->in_use += ns;
        }
        if (a->in_use > a->peak_in_use)
            a->peak_in_use = a->in_use;
        return 1;
    }
    block_shrink(a, b, bsize);
    return 1;
}

void *arena_alloc_aligned(struct arena *a, size_t bsize, size_t align)
{
    void *p = arena_alloc(a, bsize + align + B_MIN);
    if (p == NULL)
        return NULL;
    struct block *b = block_of(p);
    if ((uintptr_t)p & (align - 1)) {
        /* Skip at least B_MIN so the leading piece can be a free block. */
        uintptr_t q = ((uintptr_t)p + B_MIN + align - 1) & ~(uintptr_t)(align - 1);
        size_t lead = q - (uintptr_t)p;
        size_t h = hd_get(b);
        struct block *nb = block_of((void *)q);
        hd_set(nb, ((h & ~B_FLAGS) - lead) | B_INUSE | B_PREV_INUSE);
        hd_set(b, lead | B_INUSE | (h & B_PREV_INUSE));
        block_release(a, b);
        b = nb;
        p = (void *)q;
    }
    block_shrink(a, b, bsize);
    return p;
}
