/*
 * crshim.h - just enough of Criterion's interface to build a suite as a
 * plain program, for ThreadSanitizer: Criterion's own sandbox cannot set up
 * its shared arena under TSan's memory layout. Each test runs in a forked
 * child, as under Criterion, and a failed assertion prints its condition,
 * message and line, and fails the run.
 */
#ifndef MA_CRSHIM_H
#define MA_CRSHIM_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*shim_fn)(void);
static struct { const char *name; shim_fn fn; } shim_tests[64];
static int shim_count;

static inline void shim_register(const char *name, shim_fn fn)
{
    if (shim_count < 64) {
        shim_tests[shim_count].name = name;
        shim_tests[shim_count].fn = fn;
        shim_count++;
    }
}

#define Test(suite, name, ...)                                                                   \
    static void suite##_##name(void);                                                            \
    __attribute__((constructor)) static void shim_reg_##suite##_##name(void)                     \
    {                                                                                            \
        shim_register(#suite "::" #name, suite##_##name);                                        \
    }                                                                                            \
    static void suite##_##name(void)

#define TestSuite(suite, ...) extern int shim_suite_##suite

#define cr_assert(cond, ...)                                                                     \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: assertion failed: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, " " __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                               \
            _exit(1);                                                                            \
        }                                                                                        \
    } while (0)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_null(a, ...) cr_assert((a) == NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)

int main(void)
{
    int failed = 0;
    for (int i = 0; i < shim_count; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            shim_tests[i].fn();
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        printf("[%s] %s\n", ok ? "PASS" : "FAIL", shim_tests[i].name);
        failed += !ok;
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", shim_count, shim_count - failed, failed);
    return failed != 0;
}

#endif
