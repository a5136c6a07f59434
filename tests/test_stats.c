/*
 * test_stats.c - every statistic checked against a known sequence of
 * operations; the JSON printout parsed by Python and compared with the
 * struct; the SVG heap map checked by xmllint with its block counts compared
 * with the statistics; the exit report (MEMALLOC_STATS, _STATS_FILE,
 * _HEAP_MAP) run in a child.
 */
#include <stdlib.h>

#include "testutil.h"

/* These tests watch the arena itself: no thread cache in between. */
TestSuite(stats, .init = cache_off);

/* A chunk's room for blocks: 1 MiB less the 64-byte header, the 16-byte
 * fence and the 8 KiB after it that no block covers (arena.h, CHUNK_FENCE). */
#define CAP ((size_t)(1u << 20) - 64 - 16 - 8192)

static ma_stats_t stats(void)
{
    ma_stats_t s;
    s.size = sizeof s;
    cr_assert_eq(ma_stats_get(&s), 0);
    cr_assert_eq(s.version, MA_STATS_VERSION);
    return s;
}

static unsigned p2(size_t s)
{
    return 63u - (unsigned)__builtin_clzl(s) - 5u;
}

Test(stats, figures_follow_a_known_sequence)
{
    unsigned me = ma_thread_arena();
    size_t bs = block_for(100); /* (probes with one malloc and free) */
    ma_arena_stats_t a0 = arena_stats(me);
    cr_assert_eq(a0.in_use, 0);
    char *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = ma_malloc(100);
    ma_arena_stats_t a = arena_stats(me);
    cr_assert_eq(a.chunks, 1);
    cr_assert_eq(a.mapped, 1u << 20);
    cr_assert_eq(a.in_use, 10 * bs);
    cr_assert_eq(a.peak_in_use, 10 * bs);
    cr_assert_eq(a.free, CAP - 10 * bs);
    cr_assert_eq(a.largest_free, CAP - 10 * bs);
    cr_assert_eq(a.free_blocks, 1);
    cr_assert_eq(a.allocs, a0.allocs + 10);
    cr_assert_eq(a.frees, a0.frees);
    cr_assert_eq(a.fragmentation, 0.0);
    cr_assert_eq(a.free_by_class[p2(CAP - 10 * bs)], 1);

    /* Free two non-adjacent blocks: three free blocks, two of size bs. */
    ma_free(p[1]);
    ma_free(p[3]);
    a = arena_stats(me);
    cr_assert_eq(a.in_use, 8 * bs);
    cr_assert_eq(a.peak_in_use, 10 * bs, "the peak stays");
    cr_assert_eq(a.free, CAP - 8 * bs);
    cr_assert_eq(a.free_blocks, 3);
    cr_assert_eq(a.frees, a0.frees + 2);
    cr_assert_eq(a.free_by_class[p2(bs)], 2);
    double want = 1.0 - (double)(CAP - 10 * bs) / (double)(CAP - 8 * bs);
    cr_assert(a.fragmentation > want - 1e-12 && a.fragmentation < want + 1e-12, "%f vs %f", a.fragmentation,
              want);

    /* Freeing p[2] joins p[1..3] into one block. */
    ma_free(p[2]);
    a = arena_stats(me);
    cr_assert_eq(a.free_blocks, 2);
    cr_assert_eq(a.free_by_class[p2(3 * bs)], 1);

    /* Lock acquisitions: each malloc takes the lock once, and so does the
     * statistics call itself. */
    uint64_t before = arena_stats(me).lock_acquires;
    for (int i = 0; i < 5; i++)
        ma_free(ma_malloc(50));
    cr_assert_eq(arena_stats(me).lock_acquires, before + 10 + 1);
    cr_assert_eq(arena_stats(me).lock_waits, 0, "nobody else is here");
}

Test(stats, totals_and_large_objects)
{
    ma_stats_t s0 = stats();
    cr_assert_eq(s0.large_live, 0);
    char *big = ma_malloc(1u << 20);
    memset(big, 1, 1u << 20);
    char *small = ma_malloc(1000);
    ma_stats_t s1 = stats();
    cr_assert_eq(s1.large_live, 1);
    cr_assert_eq(s1.large_bytes, (1u << 20) + 4096, "payload + a page for the header");
    cr_assert_eq(s1.large_maps, s0.large_maps + 1);
    cr_assert_eq(s1.in_use, s0.in_use + block_for(1000));
    cr_assert_geq(s1.total_mapped, s1.mapped + s1.large_bytes, "totals include every mapping");
    cr_assert_geq(s1.peak_mapped, s1.total_mapped);
    ma_free(big);
    ma_free(small);
    ma_stats_t s2 = stats();
    cr_assert_eq(s2.large_live, 0);
    cr_assert_eq(s2.large_bytes, 0);
    /* Freed, the mapping is kept for reuse (not unmapped) until ma_trim. */
    cr_assert_eq(s2.large_unmaps, s0.large_unmaps);
    cr_assert_eq(s2.large_cached_bytes, s1.large_bytes);
    cr_assert_eq(s2.large_peak_bytes, (1u << 20) + 4096);
    cr_assert_eq(s2.total_mapped, s1.total_mapped);
    ma_trim();
    ma_stats_t s3 = stats();
    cr_assert_eq(s3.large_unmaps, s0.large_unmaps + 1);
    cr_assert_eq(s3.large_cached_bytes, 0);
    cr_assert_eq(s3.total_mapped, s1.total_mapped - s1.large_bytes - s1.mapped + s3.mapped);
    cr_assert_eq(s2.arenas, ma_arena_count());
    /* Totals are the sums of the arenas. */
    size_t mapped = 0, in_use = 0, free_b = 0;
    for (unsigned i = 0; i < s2.arenas; i++) {
        mapped += s2.arena[i].mapped;
        in_use += s2.arena[i].in_use;
        free_b += s2.arena[i].free;
    }
    cr_assert_eq(s2.mapped, mapped);
    cr_assert_eq(s2.in_use, in_use);
    cr_assert_eq(s2.free, free_b);
    cr_assert_eq(s2.free_ratio, (double)s2.free / (double)s2.mapped);
}

Test(stats, wrong_struct_size_is_refused)
{
    ma_stats_t s;
    s.size = sizeof s - 8;
    errno = 0;
    cr_assert_eq(ma_stats_get(&s), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(ma_stats_get(NULL), -1);
    ma_arena_stats_t a;
    cr_assert_eq(ma_arena_stats_get(ma_arena_count(), &a), -1);
}

/* Runs a shell command and returns its standard output (first line). */
static void shell(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s failed: %s", cmd, out);
}

Test(stats, json_parses_and_matches_the_struct)
{
    char *p[40];
    for (int i = 0; i < 40; i++)
        p[i] = ma_malloc((size_t)(i * 97));
    for (int i = 0; i < 40; i += 3)
        ma_free(p[i]);
    char *big = ma_malloc(2u << 20);
    char path[] = "/tmp/memalloc-json-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    ma_stats_print(fd, MA_PRINT_JSON | MA_PRINT_LEAKS);
    close(fd);
    ma_stats_t s = stats();
    char cmd[512], out[512];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.load(open(\"%s\")); t=d[\"totals\"]; "
             "print(d[\"schema\"], d[\"version\"], len(d[\"arenas\"]), t[\"in_use\"], t[\"free\"], t[\"mapped\"], "
             "t[\"free_blocks\"], d[\"large\"][\"live\"], d[\"leaks\"][\"blocks\"], "
             "sum(a[\"allocs\"] for a in d[\"arenas\"]))'",
             path);
    shell(cmd, out, sizeof out);
    char want[512];
    uint64_t allocs = 0;
    for (unsigned i = 0; i < s.arenas; i++)
        allocs += s.arena[i].allocs;
    snprintf(want, sizeof want, "memalloc-stats 1 %u %zu %zu %zu %zu %zu %zu %llu\n", s.arenas, s.in_use, s.free,
             s.mapped, s.free_blocks, s.large_live, (size_t)(40 - 14 + 1), (unsigned long long)allocs);
    cr_assert_str_eq(out, want);
    unlink(path);
    ma_free(big);
}

Test(stats, table_names_every_arena)
{
    ma_free(ma_malloc(10));
    char out[16384];
    CAPTURE_FD(out, sizeof out, ma_stats_print(fd, MA_PRINT_CLASSES | MA_PRINT_LEAKS));
    cr_assert(strstr(out, "memalloc statistics") != NULL, "%s", out);
    cr_assert(strstr(out, "\ntotal") != NULL, "%s", out);
    cr_assert(strstr(out, "still allocated:") != NULL, "%s", out);
    cr_assert(strstr(out, "in all: 0 blocks, 0 bytes") != NULL, "%s", out);
}

Test(stats, heap_map_is_well_formed_and_counts_match)
{
    char *p[300];
    for (int i = 0; i < 300; i++)
        p[i] = ma_malloc((size_t)(16 + i * 41 % 3000));
    for (int i = 0; i < 300; i += 4)
        ma_free(p[i]);
    char *big = ma_malloc(3u << 20);
    char path[] = "/tmp/memalloc-map-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_eq(ma_heap_map(fd), 0);
    close(fd);
    ma_stats_t s = stats();
    char cmd[640], out[256], want[256];
    snprintf(cmd, sizeof cmd, "xmllint --noout %s && python3 -c 'import xml.etree.ElementTree as E; "
                              "r=E.parse(\"%s\").getroot(); ns=\"{http://www.w3.org/2000/svg}\"; "
                              "n=lambda c: sum(int(x.get(\"data-n\",0)) for x in r.iter(ns+\"rect\") if x.get(\"class\")==c); "
                              "print(n(\"used\"), n(\"free\"), n(\"large\"))'",
             path, path);
    shell(cmd, out, sizeof out);
    uint64_t used = 0;
    for (unsigned i = 0; i < s.arenas; i++)
        used += s.arena[i].allocs - s.arena[i].frees;
    snprintf(want, sizeof want, "%llu %zu %zu\n", (unsigned long long)used, s.free_blocks, s.large_live);
    cr_assert_str_eq(out, want);
    cr_assert_eq(used, 300 - 75);
    unlink(path);
    ma_free(big);
}

Test(stats, exit_report_lists_what_leaked)
{
    char out[16384];
    char *argv[] = { "leak", NULL };
    char *env[] = { "MEMALLOC_STATS=1", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "memalloc statistics") != NULL, "%s", out);
    cr_assert(strstr(out, "large: 1 blocks, 1052672 bytes") != NULL, "%s", out);
    cr_assert(strstr(out, "in all: 4 blocks") != NULL, "%s", out);
}

Test(stats, exit_report_survives_a_closed_stderr)
{
    char out[16384];
    char *argv[] = { "leak", "close-stderr", NULL };
    char *env[] = { "MEMALLOC_STATS=1", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "in all: 4 blocks") != NULL, "%s", out);
}

Test(stats, exit_report_as_json_to_a_file_and_heap_map)
{
    char out[4096];
    char json[] = "/tmp/memalloc-exit-XXXXXX", svg[] = "/tmp/memalloc-svg-XXXXXX";
    close(mkstemp(json));
    close(mkstemp(svg));
    char v1[128], v2[128];
    snprintf(v1, sizeof v1, "MEMALLOC_STATS_FILE=%s", json);
    snprintf(v2, sizeof v2, "MEMALLOC_HEAP_MAP=%s", svg);
    char *argv[] = { "leak", NULL };
    char *env[] = { "MEMALLOC_STATS=json", v1, v2, NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0, "%s", out);
    cr_assert_eq(out[0], '\0', "nothing on stderr when a file is given: %s", out);
    char cmd[512], res[256];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json; d=json.load(open(\"%s\")); l=d[\"leaks\"]; "
             "print(l[\"blocks\"], l[\"large_blocks\"], [c[\"blocks\"] for c in l[\"by_class\"]])' && "
             "xmllint --noout %s",
             json, svg);
    shell(cmd, res, sizeof res);
    cr_assert_str_eq(res, "4 1 [3]\n");
    unlink(json);
    unlink(svg);
}
