/*
 * basic.c - a tour of memalloc's own API (include/memalloc.h).
 *
 * Built by `make run` against build/libmemalloc.a:
 *
 *     cc -Iinclude examples/basic.c build/libmemalloc.a -pthread
 *
 * Linking the static library makes memalloc this program's malloc too, so
 * printf's buffers and the ma_* calls below share one heap. The program
 * allocates a few blocks, copies one with ma_memdup, asks how big they
 * really are, frees some and prints the free lists, reads and prints the
 * statistics, checks the heap, and writes a picture of it to an SVG file
 * (the first argument, or heap.svg).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "memalloc.h"

int main(int argc, char **argv)
{
    const char *svg = argc > 1 ? argv[1] : "heap.svg";

    /* ma_print_free_list, ma_stats_print and ma_heap_map write straight to
     * a file descriptor with write(2) (they never allocate), so stdout is
     * made unbuffered to keep printf's lines in order with theirs. */
    setvbuf(stdout, NULL, _IONBF, 0);

    printf("== %u arenas; this thread allocates from arena %u\n",
           ma_arena_count(), ma_thread_arena());

    /* ---- allocate ---- */
    /* Small requests are rounded up to a block (8 bytes of header, 16-byte
     * alignment); ma_usable_size says how much of it the caller may use.
     * 300 KiB is above the default MEMALLOC_MMAP_THRESHOLD (256 KiB), so
     * that block gets a mapping of its own and belongs to no arena (-1). */
    static const size_t sizes[] = { 1, 24, 100, 1000, 5000, 300 * 1024 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = ma_malloc(sizes[i]);
        if (p[i] == NULL) {
            perror("ma_malloc");
            return 1;
        }
        memset(p[i], 0xab, sizes[i]);
        printf("ma_malloc(%6zu) -> usable %6zu bytes, arena %d\n",
               sizes[i], ma_usable_size(p[i]), ma_arena_of(p[i]));
    }

    /* ma_memdup copies bytes into a new block: strings, or any buffer. */
    const char *hello = "hello from memalloc";
    char *copy = ma_memdup(hello, strlen(hello) + 1);
    if (copy == NULL) {
        perror("ma_memdup");
        return 1;
    }
    printf("ma_memdup: \"%s\" (usable %zu bytes)\n", copy, ma_usable_size(copy));

    /* ma_calloc zeroes, and reports count * size overflow instead of
     * allocating too little. */
    int *zeros = ma_calloc(64, sizeof *zeros);
    if (zeros == NULL) {
        perror("ma_calloc");
        return 1;
    }
    printf("ma_calloc(64, %zu): zeros[63] = %d\n", sizeof *zeros, zeros[63]);

    /* ---- free some, look at the free lists ---- */
    /* ma_thread_cache(0) hands this thread's cache of small free blocks
     * back to its arena, so the frees below land on the arena's free lists
     * where ma_print_free_list can show them (with the cache on, the most
     * recently freed small blocks wait in the thread's bins instead). */
    ma_thread_cache(0);
    ma_free(p[1]);
    ma_free(p[3]);
    printf("\n== ma_print_free_list(1) after freeing the 24- and 1000-byte blocks:\n");
    ma_print_free_list(1);

    /* ---- statistics ---- */
    /* ma_stats_get fills a plain struct; .size tells the library which
     * version of the struct this program was compiled with. */
    ma_stats_t s;
    s.size = sizeof s;
    if (ma_stats_get(&s) != 0) {
        perror("ma_stats_get");
        return 1;
    }
    printf("\n== ma_stats_get: %zu bytes in use in %zu mapped by the arenas, "
           "%zu large block(s) of %zu bytes, %llu allocations, %llu frees\n",
           s.in_use, s.mapped, s.large_live, s.large_bytes,
           (unsigned long long)s.allocs, (unsigned long long)s.frees);

    /* The same figures as a table; MA_PRINT_JSON gives one line of JSON,
     * MA_PRINT_LEAKS adds what is still allocated. */
    printf("\n== ma_stats_print(1, MA_PRINT_LEAKS):\n");
    ma_stats_print(1, MA_PRINT_LEAKS);

    /* ---- check the heap ---- */
    /* ma_check verifies every invariant of every arena; it returns 0, or
     * prints one "memalloc: ma_check(): ..." line and aborts. */
    printf("\n== ma_check() = %d\n", ma_check());

    /* ---- the heap map ---- */
    int fd = open(svg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ma_heap_map(fd) != 0) {
        perror(svg);
        return 1;
    }
    off_t bytes = lseek(fd, 0, SEEK_END);
    close(fd);
    printf("== ma_heap_map: wrote %s (%lld bytes; open it in a browser)\n", svg, (long long)bytes);

    /* ---- give everything back ---- */
    for (int i = 0; i < N; i++)
        if (i != 1 && i != 3)
            ma_free(p[i]);
    ma_free(copy);
    ma_free(zeros);
    printf("== ma_trim() released %zu bytes to the OS\n", ma_trim());
    return 0;
}
