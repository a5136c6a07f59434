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
Test(misuse, free_of_a_stack_pointer) { expect_abort("free-stack", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_a_global) { expect_abort("free-global", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_an_interior_pointer) { expect_abort("free-interior", no_env, "free(): invalid pointer"); }
Test(misuse, free_into_a_chunks_unused_tail) { expect_abort("free-chunk-tail", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_a_chunks_first_byte) { expect_abort("free-chunk-base", no_env, "free(): invalid pointer"); }
Test(misuse, free_of_another_allocators_block) { expect_abort("free-foreign", no_env, "free(): invalid pointer"); }
Test(misuse, overflow_into_the_next_header) { expect_abort("overflow-header", no_env, "free(): invalid pointer or corrupted block header"); }
Test(misuse, corrupted_free_list_link) { expect_abort("corrupt-link", no_env, "corrupted free-list link"); }
Test(misuse, realloc_of_an_invalid_pointer) { expect_abort("realloc-invalid", no_env, "realloc(): invalid pointer"); }
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
