/*
 * memalloc.h - the public API of memalloc, a multi-arena, thread-scalable
 * memory allocator.
 *
 * Every function here is thread-safe and never calls the system allocator.
 * The same library also exports the standard names (malloc, free, ...), so
 * a program can use memalloc through this header, through -lmemalloc, or
 * unchanged through LD_PRELOAD=libmemalloc.so.
 *
 * Failure conventions:
 *   - a request that cannot be served returns NULL with errno = ENOMEM;
 *   - an invalid alignment returns NULL (or the error code) with EINVAL;
 *   - heap misuse that can be detected (double free, a pointer memalloc
 *     never returned, a corrupted block header) aborts the process at once
 *     after one line on stderr that starts with "memalloc: ".
 */
#ifndef MEMALLOC_H
#define MEMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MA_EXPORT __attribute__((visibility("default")))
#define MA_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#define MA_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define MA_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#define MA_ALLOC_ALIGN(n) __attribute__((alloc_align(n)))
#else
#define MA_EXPORT
#define MA_MALLOC_ATTR
#define MA_ALLOC_SIZE(n)
#define MA_ALLOC_SIZE2(n, m)
#define MA_ALLOC_ALIGN(n)
#endif

#define MEMALLOC_VERSION_MAJOR 0
#define MEMALLOC_VERSION_MINOR 1

/* ---- allocation ---- */

/* Allocates at least `size` bytes aligned to 16 bytes and returns a pointer
 * to them (uninitialised). ma_malloc(0) returns a unique pointer that can be
 * freed. Returns NULL with errno = ENOMEM if the request cannot be served. */
MA_EXPORT void *ma_malloc(size_t size) MA_MALLOC_ATTR MA_ALLOC_SIZE(1);

/* Releases a block returned by any ma_* allocation function (or malloc and
 * friends of this library). ma_free(NULL) does nothing. Never changes errno.
 * Aborts with a "memalloc: free(): ..." message on a double free or on a
 * pointer memalloc did not return. */
MA_EXPORT void ma_free(void *ptr);

/* Allocates zeroed memory for `count` objects of `size` bytes. Returns NULL
 * with errno = ENOMEM if count * size overflows or cannot be served. */
MA_EXPORT void *ma_calloc(size_t count, size_t size) MA_MALLOC_ATTR MA_ALLOC_SIZE2(1, 2);

/* Resizes the block at `ptr` to `size` bytes, keeping its contents up to the
 * smaller of the two sizes. The block grows in place when the following
 * block is free or shrinks in place; otherwise it moves. ma_realloc(NULL, n)
 * is ma_malloc(n); ma_realloc(p, 0) frees p and returns a fresh minimum-size
 * block (the glibc-compatible choice that never returns a dangling pointer
 * with success). On failure returns NULL with errno = ENOMEM and `ptr` is
 * left untouched and still valid. */
MA_EXPORT void *ma_realloc(void *ptr, size_t size) MA_ALLOC_SIZE(2) __attribute__((warn_unused_result));

/* ma_realloc(ptr, count * size) with overflow detection (ENOMEM). */
MA_EXPORT void *ma_reallocarray(void *ptr, size_t count, size_t size) MA_ALLOC_SIZE2(2, 3) __attribute__((warn_unused_result));

/* Allocates `size` bytes aligned to `alignment`, which must be a power of two
 * (any power of two up to 1 GiB is served; 16 or less gives the default
 * alignment). Returns NULL with errno = EINVAL for a bad alignment and
 * ENOMEM when the request cannot be served. */
MA_EXPORT void *ma_aligned_alloc(size_t alignment, size_t size) MA_MALLOC_ATTR MA_ALLOC_ALIGN(1) MA_ALLOC_SIZE(2);

/* POSIX form of ma_aligned_alloc: stores the block in *out and returns 0, or
 * returns EINVAL (alignment not a power of two multiple of sizeof(void *))
 * or ENOMEM, leaving *out and errno unchanged. */
MA_EXPORT int ma_posix_memalign(void **out, size_t alignment, size_t size);

/* Number of bytes the caller may use at `ptr` (at least what was asked).
 * Returns 0 for NULL. Aborts on a pointer memalloc did not return. */
MA_EXPORT size_t ma_usable_size(const void *ptr);

/* Copies `size` bytes from `src` into a new block. NULL + ENOMEM on failure. */
MA_EXPORT void *ma_memdup(const void *src, size_t size) MA_MALLOC_ATTR MA_ALLOC_SIZE(2);

/* Returns every page memalloc can give back to the OS: drains pending remote
 * frees, releases wholly free chunks (reserves included) and the unused
 * pages inside free blocks. Returns the number of bytes released. */
MA_EXPORT size_t ma_trim(void);

/* ---- checking and introspection ---- */

/* Walks every arena and verifies every invariant: chunks tiled exactly by
 * blocks, no two free neighbours, footers equal headers, every listed block
 * free and in its right size class, the bitmap index equal to the lists,
 * every large mapping intact, blocks parked or pending on remote-free stacks
 * well-formed, and the calling thread's cache; every other thread verifies
 * its own cache at its next refill or flush after the call (a cache is
 * private to its thread). Returns 0 when all holds; on a violation it writes
 * one "memalloc: ma_check(): ..." line and aborts. */
MA_EXPORT int ma_check(void);

/* Writes every arena's free lists (class, count, bytes) and usage to the
 * file descriptor `fd` without allocating. */
MA_EXPORT void ma_print_free_list(int fd);

/* Number of arenas in use (MEMALLOC_ARENAS or the default). */
MA_EXPORT unsigned ma_arena_count(void);

/* Index of the arena the calling thread allocates from (assigning one on
 * first use). */
MA_EXPORT unsigned ma_thread_arena(void);

/* Turns the calling thread's cache of small free blocks off (on = 0: its
 * blocks go back to the arena, and from then on every small malloc and free
 * takes the arena lock) or back on (on = 1, the default). Returns the
 * previous setting. Useful for a thread that allocates rarely, and to watch
 * the arenas themselves. */
MA_EXPORT int ma_thread_cache(int on);

/* Index of the arena that owns `ptr`, or -1 if `ptr` is a large (directly
 * mapped) block. Aborts on a pointer memalloc did not return. */
MA_EXPORT int ma_arena_of(const void *ptr);

/* ---- statistics ---- */

#define MA_STATS_VERSION 1
/* Arenas reported in full by ma_stats_get (more may exist: see .arenas). */
#define MA_STATS_MAX_ARENAS 64
/* Free blocks are counted by power-of-two size: class i holds free blocks of
 * 2^(i+5) to 2^(i+6)-1 bytes (32 bytes is the smallest block). */
#define MA_STATS_CLASSES 26

/* Figures of one arena, consistent with each other at the moment of the
 * call (taken under the arena's lock). Byte figures count whole blocks,
 * headers included. */
typedef struct ma_arena_stats {
    size_t mapped;          /* bytes of chunks mapped by this arena */
    size_t in_use;          /* bytes in allocated blocks (thread caches included) */
    size_t peak_in_use;     /* highest in_use seen */
    size_t free;            /* bytes in free blocks */
    size_t largest_free;    /* size of the largest free block */
    size_t chunks;          /* chunks currently mapped */
    size_t free_blocks;     /* blocks on the free lists */
    uint64_t allocs;        /* allocations served */
    uint64_t frees;         /* blocks freed into this arena */
    uint64_t remote_frees;  /* of those, freed by a thread of another arena */
    uint64_t remote_pending;/* remote frees pushed but not yet drained (up to 65535 per size class) */
    uint64_t lock_acquires; /* times the arena lock was taken */
    uint64_t lock_waits;    /* of those, times the lock was busy */
    uint64_t threads;       /* threads whose arena this is now */
    uint64_t idle_releases; /* blocks thread caches gave back because their thread had not asked for their size lately */
    double fragmentation;   /* 1 - largest_free / free (0 when nothing is free) */
    uint64_t free_by_class[MA_STATS_CLASSES]; /* free blocks per power-of-two class */
} ma_arena_stats_t;

/* Fills *out with arena `index`'s figures (after draining its remote-free
 * stack). Returns 0, or -1 with errno = EINVAL for a bad index. */
MA_EXPORT int ma_arena_stats_get(unsigned index, ma_arena_stats_t *out);

/* The whole allocator. The caller sets .size = sizeof(ma_stats_t) before
 * calling, so a program built against an older header is told apart. */
typedef struct ma_stats {
    size_t size;            /* in: sizeof(ma_stats_t) */
    unsigned version;       /* out: MA_STATS_VERSION */
    unsigned arenas;        /* arenas in use; arena[] holds the first MA_STATS_MAX_ARENAS */
    /* totals over arena chunks */
    size_t mapped, in_use, free, largest_free, free_blocks;
    uint64_t allocs, frees, remote_frees, lock_acquires, lock_waits;
    double fragmentation;   /* 1 - largest_free / free over all arenas */
    double free_ratio;      /* free / mapped over arena chunks */
    /* large objects (own mappings) */
    size_t large_live, large_bytes, large_peak_bytes;
    /* mappings made (fresh, a cut tail cached on its own, a block assembled)
     * and ended (unmapped, or moved whole into a block): maps - unmaps =
     * large_live + large_cached */
    uint64_t large_maps, large_unmaps;
    uint64_t large_reuses;  /* requests served wholly or partly from cached mappings */
    size_t large_cached, large_cached_bytes; /* freed mappings kept for reuse */
    /* everything mapped: arena chunks + large mappings */
    size_t total_mapped, peak_mapped;
    ma_arena_stats_t arena[MA_STATS_MAX_ARENAS];
} ma_stats_t;

/* Fills *s (see .size). Returns 0, or -1 with errno = EINVAL if s is NULL or
 * s->size is not sizeof(ma_stats_t). Takes each arena lock in turn. */
MA_EXPORT int ma_stats_get(ma_stats_t *s);

#define MA_PRINT_JSON 1u     /* one line of JSON (schema "memalloc-stats", version 1) */
#define MA_PRINT_CLASSES 2u  /* tables: add free blocks per class for each arena */
#define MA_PRINT_LEAKS 4u    /* add what is still allocated, by class and arena */
#define MA_PRINT_XML 8u      /* glibc's malloc_info() XML instead of a table */

/* Writes the statistics to file descriptor fd: a readable table, or with
 * MA_PRINT_JSON one line of JSON. Allocates nothing (stack buffer, write(2)). */
MA_EXPORT void ma_stats_print(int fd, unsigned opts);

/* Writes an SVG picture of the heap to fd: every chunk of every arena as a
 * strip, allocated and free blocks in different colours, large mappings
 * beside them, with a legend and the totals. Allocates nothing. Returns 0,
 * or -1 if writing failed. */
MA_EXPORT int ma_heap_map(int fd);

/* ---- heap profile (MEMALLOC_PROF=1) ---- */

/* Writes the heap profile as it stands to the file `path` ("%p" in it
 * becomes the process id): google-pprof's heap-profile text format (live
 * and allocated-over-the-run sampled bytes by call stack, with the sampling
 * rate, then the process's mappings), or folded stacks of live bytes when
 * the name ends in ".folded", or an SVG flame graph of live bytes when it
 * ends in ".svg". Safe while other threads allocate. Returns 0, or -1 with
 * errno: ENOTSUP when MEMALLOC_PROF is not 1, EINVAL for a NULL or empty
 * path, the reason the file could not be created (also reported in one
 * "memalloc: " line on stderr; the program goes on). */
MA_EXPORT int ma_prof_dump(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* MEMALLOC_H */
