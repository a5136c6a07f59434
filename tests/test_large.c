/*
 * test_large.c - the large-object path (direct mappings, mremap), the cache
 * of freed mappings and blocks assembled from its pieces, aligned
 * allocations from 16 B to 1 MiB and beyond, and calloc on fresh and
 * reused pages.
 */
#include <sys/mman.h>

#include "testutil.h"

#define THRESHOLD (256u << 10)

Test(large, at_threshold_bypasses_arenas)
{
    ma_arena_stats_t s1 = my_stats();
    char *p = ma_malloc(THRESHOLD);
    cr_assert_not_null(p);
    cr_assert_eq(ma_arena_of(p), -1, "large blocks belong to no arena");
    cr_assert_eq(my_stats().in_use, s1.in_use);
    cr_assert_geq(ma_usable_size(p), THRESHOLD);
    fill(p, THRESHOLD, 3);
    cr_assert(intact(p, THRESHOLD, 3));
    ma_check();
    ma_free(p);
    ma_check();
    /* (check mode adds 9 bytes of canary and size to every request) */
    char *q = ma_malloc(THRESHOLD - (check_mode() ? 10 : 1));
    cr_assert_geq(ma_arena_of(q), 0, "just below the threshold is an arena block");
    ma_free(q);
}

static ma_stats_t large_stats(void)
{
    ma_stats_t s;
    s.size = sizeof s;
    cr_assert_eq(ma_stats_get(&s), 0);
    return s;
}

Test(large, freed_mapping_is_reused_for_a_close_size)
{
    char *p = ma_malloc(1u << 20);
    memset(p, 0x5a, 1u << 20);
    ma_free(p);
    ma_stats_t s1 = large_stats();
    cr_assert_eq(s1.large_cached, 1);
    cr_assert_eq(s1.large_cached_bytes, (1u << 20) + 4096);
    /* A slightly smaller request reuses it, and calloc clears it. */
    unsigned char *q = ma_calloc(1, (1u << 20) - 10000);
    cr_assert_eq((char *)q, p, "the cached mapping is handed out again");
    for (size_t i = 0; i < (1u << 20) - 10000; i += 997)
        cr_assert_eq(q[i], 0);
    ma_stats_t s2 = large_stats();
    cr_assert_eq(s2.large_reuses, s1.large_reuses + 1);
    cr_assert_eq(s2.large_maps, s1.large_maps, "no new mapping");
    cr_assert_eq(s2.large_cached, 0);
    /* A much smaller one is served from it cut down: it keeps at most a
     * quarter more than it asked for. */
    ma_free(q);
    char *r = ma_malloc(300u << 10);
    cr_assert_eq(r, (char *)q, "the mapping is reused");
    cr_assert_leq(ma_usable_size(r), (300u << 10) + (75u << 10));
    cr_assert_eq(large_stats().large_maps, s1.large_maps, "still no new mapping");
    ma_free(r);
    ma_check();
    /* ma_trim gives the cached mappings back. */
    cr_assert_geq(ma_trim(), 300u << 10);
    cr_assert_eq(large_stats().large_cached, 0);
    ma_check();
}

static int page_resident(const void *p)
{
    unsigned char vec[1] = { 0 };
    char *page = (char *)((uintptr_t)p & ~(uintptr_t)4095);
    cr_assert_eq(mincore(page, 4096, vec), 0);
    return vec[0] & 1;
}

static int page_mapped(const void *p)
{
    unsigned char vec[1];
    return mincore((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, vec) == 0;
}

/* Freed mappings stay cached with their pages resident, so a later request
 * reuses them without page faults; a bigger one is cut to size and its
 * tail cached on its own; once unused for MEMALLOC_RETAIN_MS (200 ms in
 * make test, 1 s by default) they are unmapped with no further call into
 * the allocator (the background purger). */
Test(large, cached_mappings_stay_resident_then_go_back_when_unused)
{
    char *small = ma_malloc(1u << 20), *big = ma_malloc(8u << 20);
    memset(small, 0x11, 1u << 20);
    memset(big, 0x22, 8u << 20);
    ma_free(small);
    ma_free(big);
    ma_stats_t s1 = large_stats();
    cr_assert_eq(s1.large_cached, 2, "both mappings are cached");
    cr_assert_eq(page_resident(small + (512u << 10)), 1, "the small one stays resident");
    cr_assert_eq(page_resident(big + (6u << 20)), 1, "the big one stays resident");
    ma_check();
    /* 3 MiB from the 8 MiB mapping: its first 4 MiB serve (cut at the
     * granule past the request), the other 4 MiB are cached on their own. */
    char *again = ma_malloc(3u << 20);
    cr_assert_eq(again, big, "the cached mapping serves again");
    cr_assert_eq(large_stats().large_cached, 2, "the small one and the tail");
    cr_assert_eq(large_stats().large_maps, s1.large_maps + 1, "the tail counts as a mapping of its own");
    memset(again, 0x33, 3u << 20);
    cr_assert_eq(large_stats().large_reuses, s1.large_reuses + 1);
    ma_free(again);
    ma_check();
    /* Unused from now on: within a few intervals, without a call. */
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        usleep(50 * 1000);
        gone = !page_mapped(big) && !page_mapped(small);
    }
    cr_assert(gone, "unused cached mappings are unmapped within 10 s");
    cr_assert_eq(large_stats().large_cached, 0);
    ma_check();
}

/* Pages cached for large blocks go back before an arena maps a chunk: a
 * program that frees a big buffer and goes on with small blocks does not
 * hold both. */
Test(large, cached_mappings_go_back_before_an_arena_maps_a_chunk)
{
    char *big = ma_malloc(8u << 20);
    memset(big, 0x22, 8u << 20);
    ma_free(big);
    cr_assert_geq(large_stats().large_cached_bytes, 8u << 20, "freed, the mapping is cached");
    cr_assert_eq(page_resident(big + (6u << 20)), 1);
    unsigned me = ma_thread_arena();
    size_t mapped = arena_stats(me).mapped;
    enum { MAX = 16384 };
    static char *small[MAX];
    int n = 0;
    while (n < MAX && arena_stats(me).mapped == mapped) {
        small[n] = ma_malloc(4000);
        cr_assert_not_null(small[n]);
        memset(small[n], 0x33, 4000);
        n++;
    }
    cr_assert_gt(arena_stats(me).mapped, mapped, "the arena mapped a chunk");
    cr_assert_eq(large_stats().large_cached_bytes, 0, "the cached mapping went back first");
    cr_assert_eq(page_mapped(big), 0);
    while (n > 0)
        ma_free(small[--n]);
    ma_check();
}

/* Freed mappings are kept up to what was live lately (at least 32 MiB)
 * and 32 pieces; room is made from the oldest, and the newest is served
 * first. */
Test(large, the_cache_is_bounded)
{
    char *p[40];
    for (int i = 0; i < 20; i++)
        p[i] = ma_malloc(3u << 20);
    size_t peak = large_stats().large_bytes;
    for (int i = 0; i < 20; i++)
        ma_free(p[i]);
    ma_stats_t s = large_stats();
    cr_assert_eq(s.large_cached, 20, "all of a peak's blocks are kept");
    cr_assert_eq(s.large_cached_bytes, peak);
    cr_assert_eq(s.large_live, 0);
    char *q = ma_malloc(3u << 20);
    cr_assert_eq(q, p[19], "the newest is served first");
    ma_free(q);
    ma_trim();
    for (int i = 0; i < 40; i++)
        p[i] = ma_malloc(2u << 20);
    for (int i = 0; i < 40; i++)
        ma_free(p[i]);
    s = large_stats();
    cr_assert_eq(s.large_cached, 32, "at most 32 pieces");
    cr_assert_eq(page_mapped(p[0]), 0, "the oldest went");
    cr_assert_eq(page_mapped(p[39]), 1);
    ma_check();
}

/* Past the peak, the bound is what was live lately, never less than
 * 32 MiB: a mapping freed into a full cache keeps only its head. */
Test(large, the_cache_bound_follows_the_recent_peak)
{
    char *small = ma_malloc(20u << 20);
    memset(small, 1, 20u << 20);
    ma_free(small);
    char *big = ma_malloc(40u << 20); /* 20 MiB from the cache, 20 fresh */
    size_t peak = large_stats().large_peak_bytes;
    memset(big, 2, 40u << 20);
    ma_free(big);
    ma_stats_t s = large_stats();
    cr_assert_leq(s.large_cached_bytes, peak);
    cr_assert_geq(s.large_cached_bytes, 40u << 20, "the freed peak is kept");
    ma_check();
}

/* MEMALLOC_RETAIN_MS=0 keeps nothing: a freed mapping is unmapped at once,
 * and so are wholly free chunks beyond the reserve (tests/probe.c). */
Test(large, no_retention_gives_back_at_free)
{
    char *argv[] = { "no-retention", NULL };
    char *env[] = { "MEMALLOC_RETAIN_MS=0", "MEMALLOC_ARENAS=2", "MEMALLOC_CHUNK_SIZE=1M", NULL };
    char out[512];
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0, "%s", out);
}

Test(large, calloc_of_fresh_mapping_is_zero)
{
    for (int round = 0; round < 4; round++) {
        unsigned char *p = ma_calloc(1, 3u << 20);
        cr_assert_not_null(p);
        for (size_t i = 0; i < (3u << 20); i += 511)
            cr_assert_eq(p[i], 0);
        memset(p, 0xee, 3u << 20);
        ma_free(p);
    }
}

/* A calloc of 128 KiB or more below the threshold is a mapping of its
 * own: fresh, it is zero without being written, so its pages stay out of
 * memory until the program touches them; reused after a free (the freed
 * mapping is cached), it is cleared. */
Test(large, a_big_calloc_below_the_threshold_leaves_its_pages_untouched)
{
    if (check_mode())
        return; /* check mode serves every calloc through its checked path */
    size_t n = 160u << 10; /* above 128 KiB, below this suite's 256 KiB threshold */
    for (int round = 0; round < 3; round++) {
        unsigned char *p = ma_calloc(1, n);
        cr_assert_not_null(p);
        cr_assert_eq(ma_arena_of(p), -1, "round %d: a mapping of its own", round);
        if (round == 0) {
            uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
            unsigned char vec[64];
            cr_assert_eq(mincore((void *)lo, hi - lo, vec), 0);
            unsigned resident = 0;
            for (size_t i = 0; i < (hi - lo) / 4096; i++)
                resident += vec[i] & 1;
            cr_assert_eq(resident, 0, "%u of %zu pages written by calloc", resident, (hi - lo) / 4096);
        }
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(p[i], 0, "round %d: byte %zu", round, i);
        memset(p, 0xee, n);
        ma_free(p);
    }
    ma_check();
}

Test(large, realloc_grows_by_mremap_and_keeps_contents)
{
    size_t n = 300u << 10;
    char *p = ma_malloc(n);
    fill(p, n, 4);
    for (int i = 0; i < 6; i++) {
        size_t m = n * 2;
        p = ma_realloc(p, m);
        cr_assert_not_null(p);
        cr_assert(intact(p, n, 4), "contents survive growing to %zu", m);
        fill(p, m, 4);
        n = m;
        cr_assert_eq(ma_arena_of(p), -1);
        ma_check();
    }
    /* Shrink within the large range stays in place. */
    char *q = ma_realloc(p, n / 2);
    cr_assert_eq(q, p);
    cr_assert(intact(q, n / 2, 4));
    /* Shrink below the threshold moves to an arena. */
    char *r = ma_realloc(q, 1000);
    cr_assert_geq(ma_arena_of(r), 0);
    cr_assert(intact(r, 1000, 4));
    ma_free(r);
    ma_check();
}

Test(large, small_realloc_crosses_into_large)
{
    char *p = ma_malloc(1000);
    fill(p, 1000, 5);
    char *q = ma_realloc(p, 1u << 20);
    cr_assert_eq(ma_arena_of(q), -1);
    cr_assert(intact(q, 1000, 5));
    ma_free(q);
    ma_check();
}

Test(large, aligned_from_16_bytes_to_1_mib)
{
    for (size_t align = 16; align <= (1u << 20); align <<= 1) {
        size_t sizes[] = { 1, 24, 100, 4000, 70000, 300000 };
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            char *p = ma_aligned_alloc(align, sizes[i]);
            cr_assert_not_null(p, "align %zu size %zu", align, sizes[i]);
            cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu", align, sizes[i]);
            cr_assert_geq(ma_usable_size(p), sizes[i]);
            fill(p, sizes[i], (unsigned)i);
            void *q;
            cr_assert_eq(ma_posix_memalign(&q, align, sizes[i]), 0);
            cr_assert_eq((uintptr_t)q % align, 0);
            cr_assert(intact(p, sizes[i], (unsigned)i));
            ma_free(q);
            ma_free(p);
        }
        ma_check();
    }
}

Test(large, aligned_beyond_a_granule)
{
    for (size_t align = 2u << 20; align <= (64u << 20); align <<= 1) {
        char *p = ma_aligned_alloc(align, 5000);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0);
        fill(p, 5000, 6);
        char *q = ma_realloc(p, 9u << 20);
        cr_assert(intact(q, 5000, 6));
        ma_free(q);
    }
    ma_check();
}

Test(large, aligned_small_blocks_leave_a_consistent_arena)
{
    void *p[200];
    for (int i = 0; i < 200; i++) {
        p[i] = ma_aligned_alloc((size_t)64 << (i % 7), (size_t)(i * 37 % 500));
        cr_assert_eq((uintptr_t)p[i] % ((size_t)64 << (i % 7)), 0);
    }
    ma_check();
    for (int i = 0; i < 200; i += 2)
        ma_free(p[i]);
    ma_check();
    for (int i = 1; i < 200; i += 2)
        ma_free(p[i]);
    ma_check();
    ma_thread_cache(0); /* hand the thread's cached blocks back */
    cr_assert_eq(my_stats().in_use, 0);
}

/* ---- blocks assembled from cached pieces ---- */

/* maps - unmaps counts the mappings that exist: the live blocks and the
 * cached pieces. */
static void stats_add_up(void)
{
    ma_stats_t s = large_stats();
    cr_assert_eq(s.large_maps - s.large_unmaps, s.large_live + s.large_cached,
                 "maps %llu - unmaps %llu != live %zu + cached %zu", (unsigned long long)s.large_maps,
                 (unsigned long long)s.large_unmaps, s.large_live, s.large_cached);
}

/* Frees blocks of 2, 3 and 4 MiB, each filled with its own pattern; no
 * single one can serve 8 MiB. */
static void cache_three_pieces(char **piece)
{
    size_t mib[3] = { 2, 3, 4 };
    for (int i = 0; i < 3; i++) {
        piece[i] = ma_malloc(mib[i] << 20);
        memset(piece[i], 0xa0 + i, mib[i] << 20);
    }
    for (int i = 0; i < 3; i++)
        ma_free(piece[i]);
    cr_assert_eq(large_stats().large_cached, 3);
}

/* A request no cached mapping can serve alone takes the pages of several:
 * the 4 and 3 MiB pieces whole and the tail of the 2 MiB one, which stays
 * cached with its head. The pages arrive resident (moved, not faulted),
 * and the block keeps every byte written to it. */
Test(large, a_block_is_assembled_from_cached_pieces)
{
    char *piece[3];
    cache_three_pieces(piece);
    ma_stats_t s1 = large_stats();
    size_t n = (8u << 20) + 12345;
    char *p = ma_malloc(n);
    cr_assert_not_null(p);
    ma_stats_t s2 = large_stats();
    cr_assert_eq(s2.large_reuses, s1.large_reuses + 1, "served from the cache");
    cr_assert_eq(s2.large_maps, s1.large_maps + 1, "one new mapping: the block");
    cr_assert_eq(s2.large_unmaps, s1.large_unmaps + 2, "the two pieces moved whole are gone");
    cr_assert_eq(s2.large_cached, 1, "the head of the 2 MiB piece stays cached");
    cr_assert_lt(s2.large_cached_bytes, 2u << 20);
    for (size_t off = 0; off < n; off += 4096)
        cr_assert_eq(page_resident(p + off), 1, "page at %zu was moved in, not left to fault", off);
    cr_assert_eq(page_mapped(piece[1]), 0, "the 3 MiB piece left its old place");
    stats_add_up();
    ma_check();
    fill(p, n, 7);
    cr_assert(intact(p, n, 7));
    /* Grown by realloc: its pages move kernel mapping by kernel mapping. */
    char *q = ma_realloc(p, 3 * n);
    cr_assert_not_null(q);
    cr_assert(intact(q, n, 7), "realloc keeps the assembled block's bytes");
    fill(q, 3 * n, 8);
    cr_assert(intact(q, 3 * n, 8));
    stats_add_up();
    ma_check();
    /* Shrunk in place, then freed: a piece that serves again. */
    char *r = ma_realloc(q, n);
    cr_assert_eq(r, q);
    cr_assert(intact(r, n, 8));
    ma_check();
    ma_free(r);
    stats_add_up();
    char *again = ma_malloc(n);
    cr_assert_eq(again, r, "the freed assembled block is cut to serve again");
    fill(again, n, 9);
    cr_assert(intact(again, n, 9));
    ma_free(again);
    stats_add_up();
    ma_check();
}

/* A cached piece with free address space after it is grown where it lies
 * (mremap in place): no move, the growth fresh pages of the same kernel
 * mapping. */
Test(large, a_piece_with_room_after_it_grows_in_place)
{
    /* The background purger starts at the first cached free; its stack is
     * mapped now, not between the blocks below. */
    ma_free(ma_malloc(1u << 20));
    ma_trim();
    /* A 4 MiB block mapped right below an 8 MiB one that is then unmapped
     * has free address space after it. The kernel maps top-down into the
     * highest gap that fits, so either may land in an older gap instead:
     * then both are kept (filling those gaps) and the pair is mapped again,
     * until the small one lies right below the big one. */
    size_t n = 6u << 20;
    char *kept[32];
    unsigned nkept = 0;
    char *a = NULL;
    while (a == NULL && nkept + 2 <= sizeof kept / sizeof kept[0]) {
        char *above = ma_malloc(8u << 20);
        char *b = ma_malloc(4u << 20);
        cr_assert(above != NULL && b != NULL);
        if (above > b && (size_t)(above - b) < n) { /* adjacent mappings */
            ma_free(above);
            ma_trim(); /* unmaps `above` */
            int room = 1;
            for (size_t off = (4u << 20) + 4096; room && off < n + 4096; off += 4096)
                room = !page_mapped(b + off);
            if (room)
                a = b;
            else
                kept[nkept++] = b;
        } else {
            kept[nkept++] = b;
            kept[nkept++] = above;
        }
    }
    cr_assert_not_null(a, "no 4 MiB block with free address space after it in %u tries", nkept);
    memset(a, 0x5a, 4u << 20);
    ma_free(a);
    ma_stats_t s1 = large_stats();
    char *p = ma_malloc(n);
    cr_assert_eq(p, a, "grown where it lay");
    cr_assert_eq(page_resident(p + (1u << 20)), 1, "its old pages stay");
    cr_assert_eq(page_resident(p + (5u << 20)), 0, "the growth is fresh");
    ma_stats_t s2 = large_stats();
    cr_assert_eq(s2.large_reuses, s1.large_reuses + 1);
    fill(p, n, 3);
    cr_assert(intact(p, n, 3));
    stats_add_up();
    ma_check();
    ma_free(p);
    while (nkept > 0)
        ma_free(kept[--nkept]);
}

/* calloc of an assembled block: the moved pages held old data and are
 * cleared; the fresh ones past them are zero already. */
Test(large, calloc_of_an_assembled_block_is_zero)
{
    char *piece[3];
    cache_three_pieces(piece);
    size_t n = 12u << 20; /* 9 MiB from the cache, the rest fresh */
    unsigned char *p = ma_calloc(1, n);
    cr_assert_not_null(p);
    cr_assert_eq(large_stats().large_cached, 0, "every piece went into the block");
    cr_assert_eq(page_resident(p + (1u << 20)), 1, "its start is made of moved pages");
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        cr_assert_eq(w, 0, "byte %zu of a calloc'ed block", i);
    }
    stats_add_up();
    ma_check();
    ma_free(p);
}

/* A block assembled from pieces that were themselves assembled: the
 * pieces' own seams are followed when their pages move, and aligned
 * requests are served the same way. */
Test(large, assembled_blocks_serve_as_pieces_again)
{
    char *piece[3];
    cache_three_pieces(piece);
    char *a = ma_malloc(8u << 20);
    fill(a, 8u << 20, 1);
    char *b = ma_malloc(5u << 20); /* fresh: the cache is nearly empty */
    fill(b, 5u << 20, 2);
    ma_free(a);
    ma_free(b);
    stats_add_up();
    for (int round = 0; round < 4; round++) {
        size_t align = (size_t)4096 << (round * 3); /* 4 KiB .. 2 MiB */
        size_t n = (11u << 20) + (size_t)round * 777777;
        char *p = ma_aligned_alloc(align, n);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0);
        fill(p, n, (unsigned)round);
        cr_assert(intact(p, n, (unsigned)round));
        stats_add_up();
        ma_check();
        ma_free(p);
    }
    ma_check();
}

/* Assembled or not, cached pages go back once unused for
 * MEMALLOC_RETAIN_MS (200 ms in make test), with no call. */
Test(large, assembled_blocks_go_back_when_unused)
{
    char *piece[3];
    cache_three_pieces(piece);
    char *p = ma_malloc(8u << 20);
    memset(p, 1, 8u << 20);
    ma_free(p);
    cr_assert_geq(large_stats().large_cached_bytes, 8u << 20);
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        usleep(50 * 1000);
        gone = large_stats().large_cached == 0 && !page_mapped(p) && !page_mapped(p + (8u << 20) - 1);
    }
    cr_assert(gone, "unused cached pieces are unmapped within 10 s");
    for (size_t off = 0; off < (8u << 20); off += 4096)
        cr_assert_eq(page_mapped(p + off), 0, "page at %zu went back", off);
    stats_add_up();
    ma_check();
}

/* Moves the kernel refuses (here: no room for another kernel mapping) fall
 * back to fresh pages for a new block and to copying for a realloc, and
 * every piece is kept or unmapped, none lost (tests/probe.c). */
Test(large, refused_moves_fall_back_cleanly)
{
    char *argv[] = { "move-refused", NULL };
    char *env[] = { "MEMALLOC_RETAIN_MS=60000", NULL };
    char out[512];
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0, "%s", out);
    unsigned fresh_ok, copy_ok, pieces_kept, add_up, moved_later;
    cr_assert_eq(sscanf(out, "fresh_ok=%u copy_ok=%u pieces_kept=%u add_up=%u moved_later=%u", &fresh_ok, &copy_ok,
                        &pieces_kept, &add_up, &moved_later),
                 5, "%s", out);
    cr_assert_eq(fresh_ok, 1, "%s", out);
    cr_assert_eq(copy_ok, 1, "%s", out);
    cr_assert_eq(pieces_kept, 1, "%s", out);
    cr_assert_eq(add_up, 1, "%s", out);
    cr_assert_eq(moved_later, 1, "%s", out);
}
