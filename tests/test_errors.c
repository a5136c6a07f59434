/*
 * test_errors.c - bad input gets a clear error and loses nothing: ENOMEM
 * for sizes that cannot be served (calloc and reallocarray overflow
 * included), EINVAL for bad alignments, free(NULL) a no-op, errno kept by
 * free, and out-of-memory under RLIMIT_AS (in a child).
 */
#include "testutil.h"

Test(errors, impossible_sizes_give_enomem)
{
    size_t bad[] = { SIZE_MAX, SIZE_MAX - 8, SIZE_MAX / 2, (size_t)1 << 62 };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_null(ma_malloc(bad[i]));
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(ma_aligned_alloc(64, bad[i]));
        cr_assert_eq(errno, ENOMEM);
        void *p = (void *)1;
        cr_assert_eq(ma_posix_memalign(&p, 64, bad[i]), ENOMEM);
        cr_assert_eq(p, (void *)1, "*out untouched on failure");
    }
    ma_check();
}

/* Sizes go through volatile so the compiler cannot see (and warn about)
 * the deliberate overflow. */
static volatile size_t big_count = SIZE_MAX / 2 + 2, two32 = (size_t)1 << 32, huge = SIZE_MAX - 100,
                       quarter = SIZE_MAX / 4;

Test(errors, calloc_overflow_gives_enomem)
{
    errno = 0;
    cr_assert_null(ma_calloc(big_count, 2));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(ma_calloc(two32, two32));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(my_stats().in_use, 0, "nothing leaked");
}

Test(errors, realloc_failure_keeps_the_old_block)
{
    char *p = ma_malloc(100);
    fill(p, 100, 7);
    errno = 0;
    cr_assert_null(ma_realloc(p, huge));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(ma_reallocarray(p, quarter, 8));
    cr_assert_eq(errno, ENOMEM);
    cr_assert(intact(p, 100, 7), "old block intact and still valid");
    char *q = ma_reallocarray(p, 50, 4);
    cr_assert_not_null(q);
    cr_assert(intact(q, 100, 7));
    ma_free(q);
    ma_check();
}

Test(errors, bad_alignments_give_einval)
{
    size_t bad[] = { 0, 3, 24, 48, 100, (size_t)1 << 31 };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_null(ma_aligned_alloc(bad[i], 64), "alignment %zu", bad[i]);
        cr_assert_eq(errno, EINVAL);
        void *p = (void *)1;
        errno = 1234;
        cr_assert_eq(ma_posix_memalign(&p, bad[i], 64), EINVAL);
        cr_assert_eq(errno, 1234, "posix_memalign leaves errno alone");
        cr_assert_eq(p, (void *)1);
    }
    void *p;
    cr_assert_eq(ma_posix_memalign(&p, 4, 64), EINVAL, "below sizeof(void *)");
    cr_assert_eq(ma_posix_memalign(&p, 8, 64), 0);
    ma_free(p);
}

Test(errors, free_null_and_errno)
{
    errno = 77;
    ma_free(NULL);
    cr_assert_eq(errno, 77);
    void *small = ma_malloc(10), *large = ma_malloc(1u << 20);
    errno = 78;
    ma_free(small);
    cr_assert_eq(errno, 78);
    ma_free(large);
    cr_assert_eq(errno, 78, "free keeps errno");
    cr_assert_null(ma_realloc(NULL, huge));
    void *z = ma_realloc(NULL, 0);
    cr_assert_not_null(z);
    void *z2 = ma_realloc(z, 0);
    cr_assert_not_null(z2, "realloc(p, 0) returns a fresh minimum block");
    ma_free(z2);
}

Test(errors, out_of_memory_under_rlimit)
{
    char out[4096];
    char *argv[] = { "oom", NULL };
    char *env[] = { NULL };
    int st = run_probe(argv, env, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", out);
    int big, enomem, huge, small;
    cr_assert_eq(sscanf(out, "big=%d enomem=%d huge_enomem=%d small_ok=%d", &big, &enomem, &huge, &small), 4,
                 "%s", out);
    cr_assert_gt(big, 10, "some 1 MiB blocks fit under the limit");
    cr_assert_lt(big, 4096, "the limit was hit");
    cr_assert_eq(enomem, 1, "failure reports ENOMEM");
    cr_assert_eq(huge, 1);
    cr_assert_eq(small, 1, "small requests still served after the failure");
}
