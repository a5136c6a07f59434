/*
 * test_misuse.c - heap misuse the allocator can detect aborts at once with
 * one "memalloc: ..." line. Each case runs in the probe, a child process,
 * and the test asserts the signal and the message.
 */
#include "testutil.h"

static void expect_abort(const char *what, char *const env[], const char *message)
{
    char out[4096];
    char *argv[] = { "misuse", (char *)what, NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: expected SIGABRT, got status %#x: %s", what, st,
              out);
    cr_assert(strstr(out, message) != NULL, "%s: message was: %s", what, out);
    cr_assert(strncmp(out, "memalloc: ", 10) == 0, "%s: one memalloc: line: %s", what, out);
    cr_assert_null(strstr(out, "survived"));
    const char *nl = strchr(out, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "%s: exactly one line: %s", what, out);
}

static char *no_env[] = { NULL };
static char *check_env[] = { "MEMALLOC_CHECK=1", NULL };

Test(misuse, double_free_small) { expect_abort("double-free-small", no_env, "free(): double free detected at 0x"); }
Test(misuse, double_free_large) { expect_abort("double-free-large", no_env, "free(): double free detected"); }
Test(misuse, double_free_from_another_arena)
{
    char *env[] = { "MEMALLOC_ARENAS=4", NULL };
    expect_abort("double-free-remote", env, "free(): double free detected");
}
Test(misuse, double_free_of_a_sampled_block)
{
    char *env[] = { "MEMALLOC_PROF=1", "MEMALLOC_PROF_SAMPLE=1", "MEMALLOC_CHECK=0", NULL };
    expect_abort("double-free-sampled", env, "free(): double free detected at 0x");
    expect_abort("double-free-sampled-medium", env, "free(): double free detected at 0x");
}
Test(misuse, double_free_of_a_medium_block) { expect_abort("double-free-medium", no_env, "free(): double free detected at 0x"); }
Test(misuse, free_of_an_interior_pointer_of_a_medium_block)
{
    expect_abort("free-medium-interior", no_env, "free(): invalid pointer");
}
Test(misuse, overflow_into_a_medium_blocks_header)
{
    expect_abort("overflow-medium-header", no_env, "free(): invalid pointer or corrupted block header");
}
Test(misuse, free_of_a_stack_pointer) { expect_abort("free-stack", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_a_global) { expect_abort("free-global", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_an_interior_pointer) { expect_abort("free-interior", no_env, "free(): invalid pointer"); }
Test(misuse, free_into_a_chunks_unused_tail) { expect_abort("free-chunk-tail", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_a_chunks_first_byte) { expect_abort("free-chunk-base", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_another_allocators_block) { expect_abort("free-foreign", no_env, "free(): invalid pointer"); }
Test(misuse, overflow_into_the_next_header) { expect_abort("overflow-header", no_env, "free(): invalid pointer or corrupted block header"); }
Test(misuse, corrupted_free_list_link) { expect_abort("corrupt-link", no_env, "malloc(): corrupted free list at 0x"); }
Test(misuse, realloc_of_an_invalid_pointer) { expect_abort("realloc-invalid", no_env, "realloc(): invalid pointer"); }
Test(misuse, realloc_of_a_freed_block_to_a_bigger_size)
{
    expect_abort("realloc-freed-grow", no_env, "realloc(): block is not allocated (already freed?)");
}
Test(misuse, realloc_of_a_freed_block_to_a_size_it_fits)
{
    expect_abort("realloc-freed-fit", no_env, "realloc(): block is not allocated (already freed?)");
}
Test(misuse, realloc_of_a_freed_block_above_1_kib)
{
    expect_abort("realloc-freed-big", no_env, "realloc(): block is not allocated (already freed?)");
    expect_abort("realloc-freed-medium", no_env, "realloc(): block is not allocated (already freed?)");
}
Test(misuse, realloc_of_an_interior_pointer) { expect_abort("realloc-interior", no_env, "realloc(): invalid pointer"); }
Test(misuse, usable_size_of_a_freed_block)
{
    expect_abort("usable-freed", no_env, "malloc_usable_size(): block is not allocated (already freed?)");
}
Test(misuse, usable_size_of_an_interior_pointer)
{
    expect_abort("usable-interior", no_env, "malloc_usable_size(): invalid pointer");
}
Test(misuse, usable_size_of_a_pointer_into_a_chunks_unused_tail)
{
    expect_abort("usable-chunk-tail", no_env, "malloc_usable_size(): invalid pointer");
}
Test(misuse, one_byte_overflow_caught_by_canary) { expect_abort("canary", check_env, "free(): heap buffer overflow detected"); }

/* ---- free-list links a use-after-free write cannot aim (arenas/arena.h) ----
 *
 * The address of a static array written over the link word of a freed
 * block in a bin, a bin's reserve, a quick list or a remote-free stack:
 * an allocation of that size aborts with one "malloc(): corrupted free
 * list" line before the address is ever handed out. Writing the word's own
 * value back changes nothing. Caching is on in both builds (the debug
 * build's check mode turns it off, so MEMALLOC_CHECK=0). */
static void link_case(const char *kind, const char *size, int plant)
{
    char out[4096];
    char *argv[] = { "link", (char *)kind, plant ? "plant" : "benign", (char *)size, NULL };
    char *env[] = { "MEMALLOC_CHECK=0", "MEMALLOC_ARENAS=2", NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert_null(strstr(out, "handed out"), "%s %s: %s", kind, size, out);
    if (plant) {
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s %s: expected SIGABRT, got %#x: %s", kind, size,
                  st, out);
        cr_assert(strncmp(out, "memalloc: malloc(): corrupted free list at 0x", 45) == 0, "%s %s: %s", kind, size,
                  out);
        const char *nl = strchr(out, '\n');
        cr_assert(nl != NULL && nl[1] == '\0', "%s %s: exactly one line: %s", kind, size, out);
    } else {
        cr_assert_eq(st, 0, "%s %s: a benign rewrite: %s", kind, size, out);
        cr_assert_not_null(strstr(out, "survived"), "%s %s: %s", kind, size, out);
    }
}

Test(misuse, planted_link_in_a_bin)
{
    const char *sizes[] = { "16", "64", "1000", "8000", "20000", "200000" };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        link_case("bin", sizes[i], 1);
        link_case("bin", sizes[i], 0);
    }
}
Test(misuse, planted_link_in_a_reserve)
{
    link_case("reserve", "48", 1);
    link_case("reserve", "48", 0);
}
Test(misuse, planted_link_in_a_quick_list)
{
    link_case("quick", "48", 1);
    link_case("quick", "48", 0);
}
Test(misuse, planted_link_on_a_remote_stack)
{
    link_case("remote", "64", 1);
    link_case("remote", "64", 0);
    link_case("remote", "20000", 1);
    link_case("remote", "20000", 0);
}
