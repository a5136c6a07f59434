/*
 * test_random.c - long randomized sequences of malloc, calloc, realloc,
 * aligned allocation and free, each block's contents checked against a
 * shadow pattern, with ma_check after every single step.
 */
#include "testutil.h"

#define SLOTS 512

struct slot {
    char *p;
    size_t n;
    unsigned seed;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t random_size(void)
{
    uint64_t r = next_rand();
    switch (r % 10) {
    case 0: return (size_t)(r >> 8) % 16;
    case 1: case 2: case 3: return (size_t)(r >> 8) % 256;
    case 4: case 5: return (size_t)(r >> 8) % 4096;
    case 6: return (size_t)(r >> 8) % 65536;
    case 7: return (size_t)(r >> 8) % (400u << 10); /* crosses the threshold */
    default: return ((size_t)1 << (3 + (r >> 8) % 12)) - 8 * ((r >> 20) % 2);
    }
}

static void run_sequence(int steps, uint64_t seed)
{
    static struct slot s[SLOTS];
    memset(s, 0, sizeof s);
    rng = seed;
    for (int step = 0; step < steps; step++) {
        struct slot *x = &s[next_rand() % SLOTS];
        if (x->p != NULL)
            cr_assert(intact(x->p, x->n, x->seed), "step %d: contents of a %zu-byte block changed", step, x->n);
        unsigned op = (unsigned)(next_rand() % 8);
        if (x->p == NULL || op == 0) {
            if (x->p != NULL)
                ma_free(x->p);
            x->n = random_size();
            x->seed = (unsigned)step;
            unsigned how = (unsigned)(next_rand() % 4);
            if (how == 0) {
                x->p = ma_calloc(1, x->n);
                for (size_t i = 0; i < x->n; i++)
                    cr_assert_eq(x->p[i], 0, "calloc zeroes");
            } else if (how == 1) {
                size_t align = (size_t)32 << (next_rand() % 10);
                x->p = ma_aligned_alloc(align, x->n);
                cr_assert_eq((uintptr_t)x->p % align, 0);
            } else {
                x->p = ma_malloc(x->n);
            }
            cr_assert_not_null(x->p, "step %d: how %u size %zu errno %d", step, how, x->n, errno);
            fill(x->p, x->n, x->seed);
        } else if (op <= 3) {
            size_t m = random_size();
            char *q = ma_realloc(x->p, m);
            cr_assert_not_null(q);
            size_t keep = m < x->n ? m : x->n;
            cr_assert(intact(q, keep, x->seed), "step %d: realloc %zu -> %zu lost data", step, x->n, m);
            x->p = q;
            x->n = m;
            fill(x->p, x->n, x->seed);
        } else {
            ma_free(x->p);
            x->p = NULL;
        }
        cr_assert_geq(x->p ? ma_usable_size(x->p) : 0, x->p ? x->n : 0);
        ma_check();
    }
    for (int i = 0; i < SLOTS; i++) {
        if (s[i].p != NULL) {
            cr_assert(intact(s[i].p, s[i].n, s[i].seed));
            ma_free(s[i].p);
        }
    }
    ma_check();
    ma_thread_cache(0); /* hand the thread's cached blocks back */
    cr_assert_eq(my_stats().in_use, 0, "everything freed");
}

Test(random, twenty_thousand_checked_steps_seed1, .timeout = 600) { run_sequence(20000, 0x9e3779b97f4a7c15ull); }
Test(random, twenty_thousand_checked_steps_seed2, .timeout = 600) { run_sequence(20000, 0x1234567887654321ull); }
Test(random, twenty_thousand_checked_steps_seed3, .timeout = 600) { run_sequence(20000, 0xdeadbeefcafef00dull); }
