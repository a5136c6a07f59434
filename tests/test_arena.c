/*
 * test_arena.c - the arena engine through the API: splitting, coalescing in
 * every neighbour combination, best fit across classes, in-place realloc,
 * usable size, and ma_check after every step. Criterion runs each test in a
 * fresh process, so each starts with an empty memalloc heap.
 */
#include <sys/mman.h>

#include "testutil.h"

/* These tests watch the arena itself: no thread cache in between. */
TestSuite(arena, .init = cache_off);

/* Three adjacent blocks a, b, c followed by a guard that keeps the tail of
 * the chunk from merging in. */
struct trio {
    char *a, *b, *c, *guard;
};

static struct trio trio_make(size_t n)
{
    struct trio t = { ma_malloc(n), ma_malloc(n), ma_malloc(n), ma_malloc(n) };
    size_t step = (size_t)(t.b - t.a);
    cr_assert_eq(step, block_for(n), "blocks are carved one after another");
    cr_assert_eq((size_t)(t.c - t.b), step);
    cr_assert_eq((size_t)(t.guard - t.c), step);
    return t;
}

Test(arena, split_serves_consecutive_blocks_with_8_byte_overhead)
{
    size_t bs = block_for(24);
    cr_assert_eq(bs, check_mode() ? 48 : 32, "24-byte requests take 32-byte blocks");
    char *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = ma_malloc(24);
    for (int i = 1; i < 10; i++)
        cr_assert_eq((size_t)(p[i] - p[i - 1]), bs);
    ma_arena_stats_t s = my_stats();
    cr_assert_eq(s.in_use, 10 * bs);
    cr_assert_eq(s.free_blocks, 1, "one remainder block after splitting");
    /* Per chunk: the 64-byte header, the 16-byte fence and the 8 KiB after
     * it that no block covers (arena.h, CHUNK_FENCE). */
    cr_assert_eq(s.in_use + s.free, s.mapped - s.chunks * (64 + 16 + 8192));
    for (int i = 0; i < 10; i++)
        ma_free(p[i]);
    ma_check();
}

/* Frees a subset of a, b, c (bit 0 = a, bit 1 = b, bit 2 = c) in the given
 * order and checks the number of free blocks the coalescing leaves. */
static void coalesce_case(unsigned mask, int order_reversed)
{
    struct trio t = trio_make(100);
    char *blk[3] = { t.a, t.b, t.c };
    ma_arena_stats_t before = my_stats();
    for (int k = 0; k < 3; k++) {
        int i = order_reversed ? 2 - k : k;
        if (mask & (1u << i)) {
            ma_free(blk[i]);
            ma_check();
        }
    }
    /* Runs of adjacent freed blocks become one block each. */
    unsigned runs = 0;
    for (int i = 0; i < 3; i++)
        if ((mask & (1u << i)) && !(i > 0 && (mask & (1u << (i - 1)))))
            runs++;
    ma_arena_stats_t after = my_stats();
    cr_assert_eq(after.free_blocks, before.free_blocks + runs, "mask %u: %u runs", mask, runs);
    /* A request the size of the longest run lands at the start of a run of
     * that length: the coalesced block is found and reused whole. */
    if (mask) {
        int start[3], len[3], nruns = 0, longest = 0;
        for (int i = 0; i < 3; i++) {
            if (!(mask & (1u << i)) || (i > 0 && (mask & (1u << (i - 1)))))
                continue;
            start[nruns] = i;
            len[nruns] = 0;
            while (i + len[nruns] < 3 && (mask & (1u << (i + len[nruns]))))
                len[nruns]++;
            if (len[nruns] > longest)
                longest = len[nruns];
            nruns++;
        }
        size_t bytes = (size_t)(t.b - t.a) * (size_t)longest - overhead();
        char *p = ma_malloc(bytes);
        int hit = 0;
        for (int r = 0; r < nruns; r++)
            hit |= len[r] == longest && p == blk[start[r]];
        cr_assert(hit, "mask %u: coalesced block of %d reused whole", mask, longest);
        ma_free(p);
    }
    ma_free(t.guard);
    for (int i = 0; i < 3; i++)
        if (!(mask & (1u << i)))
            ma_free(blk[i]);
    ma_check();
}

Test(arena, coalesce_every_neighbour_combination)
{
    for (unsigned mask = 0; mask < 8; mask++) {
        coalesce_case(mask, 0);
        coalesce_case(mask, 1);
    }
}

Test(arena, coalesce_with_the_chunk_tail)
{
    size_t bs = block_for(500);
    char *a = ma_malloc(500);
    ma_arena_stats_t s1 = my_stats();
    ma_free(a);
    ma_arena_stats_t s2 = my_stats();
    cr_assert_eq(s2.free_blocks, s1.free_blocks, "freed block merged with the tail remainder");
    cr_assert_eq(s2.largest_free, s1.largest_free + bs);
    ma_check();
}

Test(arena, best_fit_across_classes)
{
    /* Free blocks of 64, 256 and 2048 bytes separated by live guards. */
    size_t sizes[] = { 56, 248, 2040 };
    char *blocks[3], *guards[3];
    for (int i = 0; i < 3; i++) {
        blocks[i] = ma_malloc(sizes[i]);
        guards[i] = ma_malloc(16);
    }
    for (int i = 0; i < 3; i++)
        ma_free(blocks[i]);
    ma_check();
    /* 40 first: 200 from the 256-byte block would leave a 48-byte remainder,
     * which is then the best fit for 40. */
    cr_assert_eq(ma_malloc(40), blocks[0], "40 bytes fit best in the 64-byte block");
    cr_assert_eq(ma_malloc(200), blocks[1], "200 bytes fit best in the 256-byte block");
    cr_assert_eq(ma_malloc(1500), blocks[2], "1500 bytes fit best in the 2 KiB block");
    ma_check();
    (void)guards;
}

Test(arena, best_fit_prefers_exact_class_over_bigger)
{
    char *big = ma_malloc(4000), *g1 = ma_malloc(16);
    char *exact = ma_malloc(120), *g2 = ma_malloc(16);
    ma_free(big);
    ma_free(exact);
    cr_assert_eq(ma_malloc(120), exact);
    cr_assert_eq(ma_malloc(3000), big);
    (void)g1;
    (void)g2;
    ma_check();
}

Test(arena, realloc_grows_in_place_into_free_successor)
{
    struct trio t = trio_make(100);
    fill(t.a, 100, 1);
    ma_free(t.b);
    char *p = ma_realloc(t.a, 200);
    cr_assert_eq(p, t.a, "grew into the free next block");
    cr_assert(intact(p, 100, 1));
    cr_assert_geq(ma_usable_size(p), 200);
    ma_check();
    /* Next block in use: must move, keeping contents. */
    char *q = ma_realloc(p, 400);
    cr_assert_neq(q, p);
    cr_assert(intact(q, 100, 1));
    ma_check();
}

/* Growing into a free successor whose rest stays in the successor's size
 * class leaves the rest where the successor was on its free list (in the
 * middle of the list, then at its head): the links must stay consistent
 * (ma_check walks them), the counts exact, and the rest must still serve. */
Test(arena, realloc_growth_keeps_the_rest_in_its_list_place)
{
    enum { BIG = 40000 }; /* blocks of 40016 bytes: class [38912, 40960) */
    char *a = ma_malloc(100), *b = ma_malloc(BIG), *g1 = ma_malloc(16);
    char *c = ma_malloc(BIG), *g2 = ma_malloc(16);
    char *d = ma_malloc(BIG), *g3 = ma_malloc(16);
    cr_assert_eq((size_t)(b - a), block_for(100), "b follows a");
    fill(a, 100, 5);
    ma_free(c);
    ma_free(b);
    ma_free(d); /* the class's list: d, b, c */
    ma_arena_stats_t s0 = my_stats();
    size_t n = 100;
    for (int step = 0; step < 2; step++) {
        if (step == 1) {
            /* d leaves the list: the rest of b is its head now. */
            d = ma_malloc(BIG);
            s0 = my_stats();
        }
        size_t grown = n + 40;
        char *p = ma_realloc(a, grown);
        cr_assert_eq(p, a, "step %d: grew in place", step);
        cr_assert(intact(a, 100, 5));
        ma_arena_stats_t s1 = my_stats();
        size_t more = block_for(grown) - block_for(n);
        cr_assert_eq(s1.free_blocks, s0.free_blocks, "step %d: the rest is still one free block", step);
        cr_assert_eq(s1.free, s0.free - more, "step %d: the free bytes lost what a gained", step);
        cr_assert_eq(s1.in_use, s0.in_use + more);
        ma_check();
        n = grown;
    }
    /* The rest serves a request of its class, and everything coalesces. */
    char *e = ma_malloc(BIG - 2000);
    cr_assert_eq(e, a + block_for(n), "the rest of b served it");
    ma_check();
    ma_free(e);
    ma_free(a);
    ma_free(d);
    ma_free(g1);
    ma_free(g2);
    ma_free(g3);
    ma_check();
}

Test(arena, realloc_shrinks_in_place_and_frees_the_tail)
{
    size_t big = block_for(1000), small = block_for(100);
    char *p = ma_malloc(1000), *guard = ma_malloc(16);
    fill(p, 1000, 2);
    ma_arena_stats_t s1 = my_stats();
    char *q = ma_realloc(p, 100);
    cr_assert_eq(q, p);
    cr_assert(intact(q, 100, 2));
    ma_arena_stats_t s2 = my_stats();
    cr_assert_eq(s2.in_use, s1.in_use - (big - small), "tail returned");
    cr_assert_eq(s2.free_blocks, s1.free_blocks + 1);
    /* Shrinking by less than a block keeps the block as it is. */
    cr_assert_eq(ma_realloc(q, 96), q);
    cr_assert_eq(my_stats().in_use, s2.in_use);
    ma_free(guard);
    ma_free(q);
    ma_check();
}

Test(arena, realloc_shrink_tail_coalesces_with_free_successor)
{
    char *p = ma_malloc(1000), *n = ma_malloc(100), *guard = ma_malloc(16);
    ma_free(n);
    ma_arena_stats_t s1 = my_stats();
    cr_assert_eq(ma_realloc(p, 100), p);
    ma_arena_stats_t s2 = my_stats();
    cr_assert_eq(s2.free_blocks, s1.free_blocks, "the tail merged with the free block after it");
    (void)guard;
    ma_check();
}

Test(arena, usable_size_covers_the_request)
{
    for (size_t n = 0; n < 3000; n += 7) {
        char *p = ma_malloc(n);
        size_t u = ma_usable_size(p);
        cr_assert_geq(u, n);
        cr_assert_lt(u, n + 40, "n=%zu usable=%zu", n, u);
        memset(p, 0xab, u); /* the whole usable size is ours to write */
        ma_free(p);
    }
    cr_assert_eq(ma_usable_size(NULL), 0);
    ma_check();
}

Test(arena, zero_size_gives_distinct_freeable_blocks)
{
    void *a = ma_malloc(0), *b = ma_malloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    ma_free(a);
    ma_free(b);
    ma_check();
}

Test(arena, payloads_are_16_byte_aligned)
{
    for (size_t n = 1; n < 2000; n += 13) {
        void *p = ma_malloc(n);
        cr_assert_eq((uintptr_t)p % 16, 0);
    }
    ma_check();
}

Test(arena, wholly_free_chunks_go_back_beyond_the_reserve)
{
    /* Fill eight chunks' worth and free everything: the chunks stay mapped
     * while they may be reused, so allocating it all again maps nothing.
     * Once they have stayed wholly free through a whole decay interval
     * (MEMALLOC_RETAIN_MS: 200 ms in make test, 1 s by default) they go
     * back, the reserve excepted, with no further call into the allocator
     * (the background purger). */
    enum { N = 8 * 1024 };
    static char *p[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++)
            p[i] = ma_malloc(1000);
        ma_arena_stats_t s1 = my_stats();
        cr_assert_geq(s1.chunks, 8);
        for (int i = 0; i < N; i++)
            ma_free(p[i]);
        ma_arena_stats_t s2 = my_stats();
        cr_assert_eq(s2.in_use, 0);
        cr_assert_eq(s2.chunks, s1.chunks, "freed chunks stay mapped for reuse");
        ma_check();
    }
    /* The chunks the blocks came from, watched with mincore (which fails
     * on unmapped memory) so that nothing here calls the allocator. */
    static char *chunk[N];
    size_t nchunks = 0;
    for (int i = 0; i < N; i++) {
        char *c = (char *)((uintptr_t)p[i] & ~(uintptr_t)((1u << 20) - 1));
        if (nchunks == 0 || chunk[nchunks - 1] != c)
            chunk[nchunks++] = c;
    }
    size_t mapped = nchunks;
    for (int i = 0; i < 200 && mapped > 1; i++) {
        usleep(50 * 1000);
        mapped = 0;
        for (size_t k = 0; k < nchunks; k++) {
            unsigned char vec[1];
            mapped += mincore(chunk[k] + 4096, 4096, vec) == 0;
        }
    }
    cr_assert_leq(mapped, 1, "unused chunks beyond the reserve go back within 10 s");
    size_t chunks = my_stats().chunks;
    cr_assert_leq(chunks, 1);
    ma_check();
    cr_assert_geq(ma_trim(), chunks << 20);
    cr_assert_eq(my_stats().chunks, 0, "ma_trim releases the reserve too");
}

Test(arena, calloc_zeroes_reused_memory)
{
    char *p = ma_malloc(500);
    memset(p, 0xff, 500);
    ma_free(p);
    char *q = ma_calloc(50, 10);
    cr_assert_eq(q, p, "reuses the dirty block");
    for (int i = 0; i < 500; i++)
        cr_assert_eq(q[i], 0);
    ma_free(q);
}

Test(arena, memdup_copies)
{
    char src[300];
    fill(src, sizeof src, 9);
    char *d = ma_memdup(src, sizeof src);
    cr_assert(intact(d, sizeof src, 9));
    ma_free(d);
}

Test(arena, print_free_list_lists_classes)
{
    size_t bs = block_for(100);
    char want[128];
    snprintf(want, sizeof want, "class %3zu:      1 blocks %11zu bytes", bs / 16, bs);
    char *a = ma_malloc(100), *g = ma_malloc(100);
    ma_free(a);
    char out[8192];
    CAPTURE_FD(out, sizeof out, ma_print_free_list(fd));
    cr_assert(strstr(out, "arena ") != NULL, "%s", out);
    cr_assert(strstr(out, want) != NULL, "want '%s' in %s", want, out);
    cr_assert(strstr(out, "large: 0 mappings") != NULL, "%s", out);
    (void)g;
}

Test(arena, a_fragmented_arena_gives_back_free_pages_before_it_grows)
{
    /* 8 MiB of 12 KiB blocks, then every other one freed: half the arena is
     * free, in holes of 12 KiB that nothing bigger fits and no regular pass
     * touches (they purge from 64 KiB, after 8 MiB of frees). The next
     * chunk the arena maps for a bigger block must first discard those
     * holes' pages. */
    enum { N = 680, BIG = 12 * 1024 };
    static char *big[N];
    for (int i = 0; i < N; i++) {
        big[i] = ma_malloc(BIG);
        memset(big[i], 0x5c, BIG);
    }
    for (int i = 1; i < N; i += 2)
        ma_free(big[i]);
    char *probe = (char *)(((uintptr_t)big[N / 2 + 1] + 4096) & ~(uintptr_t)4095);
    unsigned char vec[1];
    cr_assert_eq(mincore(probe, 4096, vec), 0);
    cr_assert_eq(vec[0] & 1, 1, "the freed hole is resident before the arena grows");
    /* Blocks of 200 KiB until one needs a new chunk. */
    size_t chunks = my_stats().chunks;
    static char *grow[64];
    int n = 0;
    while (n < 64 && my_stats().chunks == chunks)
        grow[n++] = ma_malloc(200 * 1024);
    cr_assert_gt(my_stats().chunks, chunks, "a chunk was mapped");
    cr_assert_eq(mincore(probe, 4096, vec), 0);
    cr_assert_eq(vec[0] & 1, 0, "the hole's pages were discarded before the arena grew");
    /* The discarded holes serve again. */
    char *again = ma_malloc(BIG);
    memset(again, 1, BIG);
    ma_free(again);
    for (int i = 0; i < n; i++)
        ma_free(grow[i]);
    for (int i = 0; i < N; i += 2)
        ma_free(big[i]);
    ma_check();
}

Test(arena, free_pages_of_pinned_chunks_go_back_without_trim)
{
    /* 24 MiB of 2000-byte blocks, then everything freed but one block per
     * chunk: no chunk is wholly free, so none can be unmapped, but the pages
     * of the big free blocks must be given back by the purge pass. */
    enum { N = 12 * 1024 };
    static char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = ma_malloc(2000);
        memset(p[i], 0x77, 2000);
    }
    char *kept_chunk = NULL;
    for (int i = 0; i < N; i++) {
        char *chunk = (char *)((uintptr_t)p[i] & ~(uintptr_t)((1u << 20) - 1));
        if (chunk != kept_chunk) {
            kept_chunk = chunk; /* the first block of each chunk stays */
            continue;
        }
        ma_free(p[i]);
    }
    ma_check();
    /* A page in the middle of a freed run: discarded once it has stayed
     * free through a whole decay interval (see above), with no further
     * call into the allocator. (A wait for the documented interval, not a
     * speed bound.) */
    char *probe = (char *)(((uintptr_t)p[N / 2] + 8192) & ~(uintptr_t)4095);
    unsigned char vec[1] = { 1 };
    for (int i = 0; i < 200 && (vec[0] & 1); i++) {
        usleep(50 * 1000);
        cr_assert_eq(mincore(probe, 4096, vec), 0);
    }
    cr_assert_eq(vec[0] & 1, 0, "freed page still resident after 10 s");
    cr_assert_gt(my_stats().chunks, 20, "the chunks are still mapped (pinned)");
    /* Reusing purged memory works and reads as the allocator left it. */
    char *q = ma_malloc(100000);
    memset(q, 1, 100000);
    ma_free(q);
    ma_check();
}
