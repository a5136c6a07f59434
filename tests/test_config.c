/*
 * test_config.c - MEMALLOC_* variables, each set for a child process only
 * (the probe): valid values take effect, observable through the API; bad
 * values give one warning line and the default, never a crash.
 */
#include "testutil.h"

static char out[16384];

static unsigned default_arenas(void)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    unsigned n = 0;
    cr_assert_eq(sscanf(out, "arenas=%u", &n), 1, "%s", out);
    return n;
}

Test(config, default_arena_count_is_the_cpu_count)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(default_arenas(), (unsigned)cpus);
}

static void arenas_case(const char *value, int threads, unsigned want_count, unsigned want_used,
                        unsigned want_maxload)
{
    char var[64], t[16];
    snprintf(var, sizeof var, "MEMALLOC_ARENAS=%s", value);
    snprintf(t, sizeof t, "%d", threads);
    char *argv[] = { "arenas", t, NULL };
    char *env[] = { var, NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert_eq(st, 0, "%s", out);
    unsigned count, used, maxload, owners;
    cr_assert_eq(sscanf(out, "count=%u used=%u maxload=%u owners=%u", &count, &used, &maxload, &owners), 4,
                 "%s", out);
    cr_assert_eq(count, want_count, "%s: %s", var, out);
    cr_assert_eq(used, want_used, "%s: %s", var, out);
    cr_assert_eq(maxload, want_maxload, "%s: %s", var, out);
    cr_assert_eq(owners, (unsigned)threads, "every block belongs to its thread's arena");
    cr_assert_null(strstr(out, "memalloc:"), "no warning for a valid value: %s", out);
}

Test(config, one_arena_serves_every_thread) { arenas_case("1", 8, 1, 1, 8); }
Test(config, several_arenas_are_balanced) { arenas_case("4", 8, 4, 4, 2); }
Test(config, n_threads_on_n_arenas_get_one_each) { arenas_case("6", 6, 6, 6, 1); }
Test(config, more_arenas_than_threads) { arenas_case("64", 5, 64, 5, 1); }

static void bad_value(const char *var, const char *must_say)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { (char *)var, NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s must not crash: %s", var, out);
    cr_assert(strstr(out, must_say) != NULL, "%s: %s", var, out);
    /* Exactly one warning line. */
    int lines = 0;
    for (const char *s = out; (s = strstr(s, "memalloc:")) != NULL; s++)
        lines++;
    cr_assert_eq(lines, 1, "%s: %s", var, out);
}

Test(config, bad_values_warn_once_and_use_the_default)
{
    bad_value("MEMALLOC_ARENAS=abc", "ignoring MEMALLOC_ARENAS=abc (not a number); using the default");
    bad_value("MEMALLOC_ARENAS=0", "MEMALLOC_ARENAS=0 (out of range)");
    bad_value("MEMALLOC_ARENAS=-3", "MEMALLOC_ARENAS=-3 (not a number)");
    bad_value("MEMALLOC_ARENAS=99999999999999999999999", "(not a number)");
    bad_value("MEMALLOC_ARENAS=", "MEMALLOC_ARENAS= (not a number)");
    bad_value("MEMALLOC_CHUNK_SIZE=3M", "(not a power of two)");
    bad_value("MEMALLOC_CHUNK_SIZE=64k", "(out of range)");
    bad_value("MEMALLOC_MMAP_THRESHOLD=12X", "(not a number)");
    bad_value("MEMALLOC_CHECK=2", "(out of range)");
}

Test(config, bad_arena_value_leaves_the_default_count)
{
    unsigned def = default_arenas();
    char *argv[] = { "touch", NULL };
    char *env[] = { "MEMALLOC_ARENAS=lots", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    char want[32];
    snprintf(want, sizeof want, "arenas=%u", def);
    cr_assert(strstr(out, want) != NULL, "%s", out);
}

Test(config, verbose_prints_the_effective_options)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { "MEMALLOC_VERBOSE=1", "MEMALLOC_CHUNK_SIZE=4M", "MEMALLOC_MMAP_THRESHOLD=128k", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    cr_assert(strstr(out, "MEMALLOC_CHUNK_SIZE=4194304 (set)") != NULL, "%s", out);
    cr_assert(strstr(out, "MEMALLOC_MMAP_THRESHOLD=131072 (set)") != NULL, "%s", out);
    cr_assert(strstr(out, "MEMALLOC_ARENAS=") != NULL, "%s", out);
}

Test(config, threshold_above_a_quarter_chunk_is_clamped)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { "MEMALLOC_VERBOSE=1", "MEMALLOC_CHUNK_SIZE=1M", "MEMALLOC_MMAP_THRESHOLD=512k", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    cr_assert(strstr(out, "using a quarter") != NULL, "%s", out);
    cr_assert(strstr(out, "MEMALLOC_MMAP_THRESHOLD=262144") != NULL, "%s", out);
}

Test(config, defaults_are_4_mib_chunks_and_a_1_mib_threshold)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { "MEMALLOC_VERBOSE=1", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    cr_assert(strstr(out, "MEMALLOC_CHUNK_SIZE=4194304 (default)") != NULL, "%s", out);
    cr_assert(strstr(out, "MEMALLOC_MMAP_THRESHOLD=1048576 (default)") != NULL, "%s", out);
}

Test(config, a_smaller_chunk_takes_the_default_threshold_down_silently)
{
    char *argv[] = { "touch", NULL };
    char *env[] = { "MEMALLOC_VERBOSE=1", "MEMALLOC_CHUNK_SIZE=1M", NULL };
    cr_assert_eq(run_probe(argv, env, out, sizeof out), 0);
    cr_assert(strstr(out, "MEMALLOC_MMAP_THRESHOLD=262144 (default)") != NULL, "%s", out);
    cr_assert_null(strstr(out, "using a quarter"), "%s", out);
}

Test(config, by_default_blocks_below_1_mib_come_from_an_arena)
{
    /* (check mode adds a few bytes of canary and size to every request) */
    size_t below = (1u << 20) - 64;
    char *p = ma_malloc(below), *q = ma_malloc(1u << 20);
    cr_assert_geq(ma_arena_of(p), 0, "a block just under 1 MiB is an arena block");
    cr_assert_eq(ma_arena_of(q), -1, "a 1 MiB block has its own mapping");
    memset(p, 1, below);
    memset(q, 2, 1u << 20);
    ma_free(p);
    ma_free(q);
    ma_check();
}

/* The medium bins serve requests below the threshold only, also where a
 * threshold that is not a multiple of their 2 KiB grain cuts through the
 * sizes that share a slot of their request table. */
static void threshold_holds(const char *t)
{
    char var[64];
    snprintf(var, sizeof var, "MEMALLOC_MMAP_THRESHOLD=%s", t);
    char *argv[] = { "threshold", (char *)t, NULL };
    char *env[] = { var, NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert(st == 0 && strstr(out, "threshold ok") != NULL, "threshold %s: status %d, %s", t, st, out);
}

Test(config, requests_at_or_above_the_threshold_are_mapped_whatever_the_bins_hold)
{
    threshold_holds("61000");
    threshold_holds("65536");
    threshold_holds("20000");
}
