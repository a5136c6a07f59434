/* tests/frontdoor/mallopt.c - mallopt under memalloc, run by reports.sh
 * (preloaded and linked): M_MMAP_THRESHOLD and M_ARENA_MAX are honoured
 * before the first allocation and refused after it, M_TRIM_THRESHOLD and
 * M_TOP_PAD are accepted, an unknown parameter is refused (0), as glibc
 * does. Exits 1 on the first wrong answer. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memalloc.h"

static int failures;
#define EXPECT(cond)                                              \
    do {                                                          \
        if (!(cond)) {                                            \
            fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond); \
            failures++;                                           \
        }                                                         \
    } while (0)

int main(void)
{
    EXPECT(mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1);
    EXPECT(mallopt(M_ARENA_MAX, 3) == 1);
    EXPECT(mallopt(M_ARENA_MAX, 0) == 0);
    EXPECT(mallopt(M_MMAP_THRESHOLD, 100) == 0);
    EXPECT(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
    EXPECT(mallopt(M_TOP_PAD, 4096) == 1);
    EXPECT(mallopt(12345, 1) == 0);
    EXPECT(ma_arena_count() == 3);
    /* 100 KB is above the new threshold: a mapping of its own. */
    char *volatile p = malloc(100000);
    memset(p, 1, 100000);
    EXPECT(ma_arena_of(p) == -1);
    char *volatile q = malloc(1000);
    memset(q, 2, 1000);
    EXPECT(ma_arena_of(q) >= 0 && ma_arena_of(q) < 3);
    /* After the first allocation the structural options are refused. */
    EXPECT(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 0);
    EXPECT(mallopt(M_ARENA_MAX, 2) == 0);
    EXPECT(ma_arena_count() == 3);
    EXPECT(mallopt(M_TRIM_THRESHOLD, 0) == 1);
    free(p);
    free(q);
    if (failures == 0)
        printf("mallopt: ok\n");
    return failures != 0;
}
