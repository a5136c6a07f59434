/*
 * check.c - the full verification of an arena's invariants and the
 * printout of its free lists. Slow by design (walks every block); used by
 * ma_check, MEMALLOC_CHECK and the tests. Never allocates.
 */
#include "arena.h"

static MA_COLD MA_NORETURN void check_fail(const char *what, const void *p)
{
    ma_fatal("ma_check", what, p);
}

static int chunk_belongs(const struct arena *a, const struct chunk *c)
{
    for (const struct chunk *x = a->chunks; x != NULL; x = x->next)
        if (x == c)
            return 1;
    return 0;
}

void arena_check(struct arena *a)
{
    size_t cap = chunk_capacity(a->chunk_size);
    size_t nfree = 0, free_bytes = 0, in_use = 0, nchunks = 0, empty = 0;

    /* ---- blocks pending on the remote stacks ---- */
    /* The owner's threads empty a stack without the lock, so a stack cannot
     * be walked in place: take every stack, verifying each block (in use,
     * keyed, ours, no cycle) as it moves to the quick lists checked below. */
    arena_drain(a);

    /* ---- walk every chunk: blocks must tile it exactly ---- */
    const struct chunk *prevc = NULL;
    for (struct chunk *c = a->chunks; c != NULL; c = c->next) {
        if (c->magic != (CHUNK_MAGIC ^ (uintptr_t)c) || c->arena != a || c->size != a->chunk_size)
            check_fail("corrupted chunk header", c);
        if (c->prev != prevc)
            check_fail("chunk list broken (prev link)", c);
        if (((uintptr_t)c & (a->chunk_size - 1)) != 0 || pagemap_get((uintptr_t)c) != PAGEMAP_CHUNK + (int)a->index)
            check_fail("chunk not aligned or not registered", c);
        if (++nchunks > a->nchunks)
            check_fail("chunk list longer than its count (cycle?)", c);
        prevc = c;

        const char *end = (const char *)c + c->size - CHUNK_FENCE;
        struct block *b = chunk_first_block(c);
        int prev_inuse = 1;
        for (;;) {
            size_t h = b->head;
            size_t s = h & ~B_FLAGS;
            if (!!(h & B_PREV_INUSE) != prev_inuse)
                check_fail("PREV_INUSE bit disagrees with the previous block", block_payload(b));
            if (s == 0) {
                if ((const char *)b != end || !(h & B_INUSE))
                    check_fail("blocks do not tile the chunk (fence misplaced)", b);
                break;
            }
            if (s < B_MIN || (s & B_FLAGS) || (const char *)b + s > end)
                check_fail("block size out of bounds", block_payload(b));
            struct block *n = (struct block *)((char *)b + s);
            if (h & B_INUSE) {
                in_use += s;
            } else {
                if (!prev_inuse)
                    check_fail("two free neighbours not coalesced", block_payload(b));
                if (n->prev_size != s)
                    check_fail("footer does not match header", block_payload(b));
                nfree++;
                free_bytes += s;
                if (s == cap)
                    empty++;
            }
            prev_inuse = (h & B_INUSE) != 0;
            b = n;
        }
    }
    if (nchunks != a->nchunks || a->mapped != nchunks * a->chunk_size)
        check_fail("chunk count or mapped bytes wrong", a);

    /* ---- walk every free list: entries free, in their class, linked both ways ---- */
    size_t listed = 0, listed_bytes = 0;
    for (unsigned c = 0; c < N_CLASSES; c++) {
        int bit = (a->bitmap[c >> 6] >> (c & 63)) & 1;
        if (bit != (a->heads[c] != NULL))
            check_fail("bitmap disagrees with the free lists", a->heads[c]);
        struct block *prev = NULL;
        for (struct block *b = a->heads[c]; b != NULL; prev = b, b = b->next) {
            if (++listed > nfree)
                check_fail("more blocks listed than free (cycle or stale entry)", block_payload(b));
            struct chunk *ch = chunk_of(b, a->chunk_size);
            if (!chunk_belongs(a, ch))
                check_fail("listed block outside the arena's chunks", block_payload(b));
            size_t s = b->head & ~B_FLAGS;
            if (b->head & B_INUSE)
                check_fail("listed block is allocated", block_payload(b));
            if (arena_class_of(s) != c)
                check_fail("listed block in the wrong size class", block_payload(b));
            if (b->prev != prev)
                check_fail("free-list back link broken", block_payload(b));
            listed_bytes += s;
        }
    }
    for (unsigned w = 0; w < N_WORDS; w++)
        if (((a->bitmap_top >> w) & 1) != (a->bitmap[w] != 0))
            check_fail("bitmap summary disagrees with the bitmap", a);
    if (a->bitmap_top >> N_WORDS)
        check_fail("bitmap summary has stray bits", a);
    if (listed != nfree || listed_bytes != free_bytes)
        check_fail("free lists do not hold every free block", a);
    /* ---- quick lists: parked blocks are allocated in the heap, keyed, ours ---- */
    size_t parked = 0, parked_bytes = 0;
    for (unsigned c = 0; c < QUICK_CLASSES; c++) {
        const struct qlist *q = &a->quick[c];
        size_t n = 0, bytes = 0;
        /* Segment by segment: each a NULL-terminated list exactly as long
         * as the record in its first block says. */
        for (void *h = q->head; h != NULL;) {
            size_t k = seg_count(h), bytes_seen = 0, i = 0;
            for (void *p = h; p != NULL; p = link_get(p), i++) {
                if (++n > q->count || k == 0)
                    check_fail("quick list longer than its count (cycle?)", p);
                struct block *b = block_of(p);
                if (((uintptr_t)p & (MA_ALIGN - 1)) || !chunk_belongs(a, chunk_of(b, a->chunk_size)) ||
                    !(b->head & B_INUSE))
                    check_fail("quick list holds a foreign or free block", p);
                size_t s = b->head & ~B_FLAGS;
                /* At least its class's size, exactly it below 1 KiB. */
                if (s < arena_class_lo(c) || (c < EXACT_CLASSES && s != arena_class_lo(c)) ||
                    ((uintptr_t *)p)[1] != cached_key(p))
                    check_fail("quick list block in the wrong class or unmarked", p);
                bytes_seen += s;
            }
            if (i != k || seg_bytes(h, c) != bytes_seen)
                check_fail("quick list segment record wrong (length or bytes)", h);
            bytes += bytes_seen;
            h = seg_next(h);
        }
        if (n != q->count || bytes != q->bytes)
            check_fail("quick list count or bytes wrong", q->head);
        parked += n;
        parked_bytes += bytes;
    }
    if (parked != a->quick_blocks || parked_bytes != a->quick_bytes)
        check_fail("quick list totals disagree with the lists", a);

    if (a->free_blocks != nfree || a->free_bytes != free_bytes || a->in_use + a->quick_bytes != in_use ||
        a->empty_chunks != empty)
        check_fail("arena counters disagree with the heap", a);
    /* Without retention a chunk that falls wholly free beyond the reserve
     * is unmapped at once. */
    if (a->retain_ms == 0 && empty > (size_t)a->reserve)
        check_fail("more wholly free chunks than the reserve", a);
}

void arena_walk(struct arena *a, const struct arena_visitor *v)
{
    for (struct chunk *c = a->chunks; c != NULL; c = c->next) {
        if (v->chunk != NULL)
            v->chunk(v->ctx, c);
        for (struct block *b = chunk_first_block(c); (b->head & ~B_FLAGS) != 0; b = block_next(b))
            if (v->block != NULL)
                v->block(v->ctx, c, b, b->head & ~B_FLAGS, (b->head & B_INUSE) != 0);
    }
}

void arena_print(struct arena *a, struct ma_buf *b)
{
    buf_str(b, "arena ");
    buf_u64(b, a->index);
    buf_str(b, ": chunks ");
    buf_u64(b, a->nchunks);
    buf_str(b, ", mapped ");
    buf_u64(b, a->mapped);
    buf_str(b, ", in use ");
    buf_u64(b, a->in_use);
    buf_str(b, ", free ");
    buf_u64(b, a->free_bytes);
    buf_str(b, " in ");
    buf_u64(b, a->free_blocks);
    buf_str(b, " blocks\n");
    for (unsigned c = 0; c < N_CLASSES; c++) {
        if (a->heads[c] == NULL)
            continue;
        size_t n = 0, bytes = 0, largest = 0;
        for (struct block *x = a->heads[c]; x != NULL; x = x->next) {
            size_t s = x->head & ~B_FLAGS;
            n++;
            bytes += s;
            if (s > largest)
                largest = s;
        }
        buf_str(b, "  class ");
        buf_u64w(b, c, 3);
        buf_str(b, ": ");
        buf_u64w(b, n, 6);
        buf_str(b, " blocks ");
        buf_u64w(b, bytes, 11);
        buf_str(b, " bytes, largest ");
        buf_u64(b, largest);
        buf_str(b, "\n");
    }
}
