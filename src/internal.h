/*
 * internal.h - declarations shared by the files of src/ (and the few that
 * arenas/ needs: error reporting and the chunk registry).
 *
 * Nothing declared here is exported from the library: every function is
 * hidden. Nothing here may allocate through malloc.
 */
#ifndef MA_INTERNAL_H
#define MA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define MA_HIDDEN __attribute__((visibility("hidden")))
#define MA_COLD __attribute__((noinline, cold))
#define MA_NORETURN __attribute__((noreturn))
#define ma_likely(x) __builtin_expect(!!(x), 1)
#define ma_unlikely(x) __builtin_expect(!!(x), 0)

/* Every payload is aligned to this; every block size is a multiple of it. */
#define MA_ALIGN 16u
#define MA_ALIGN_UP(n, a) (((n) + ((a) - 1)) & ~((size_t)(a) - 1))

/* Largest request we try to serve: anything above cannot be mapped anyway
 * on a 47-bit address space, and staying far below SIZE_MAX keeps every size
 * computation (header + alignment + rounding) free of overflow. */
#define MA_MAX_REQUEST ((size_t)1 << 46)

/* ---- configuration (config.c) ---- */

/* The effective options, parsed once from the environment at initialisation.
 * set once at init, read-only afterwards. */
struct ma_config {
    unsigned arenas;         /* MEMALLOC_ARENAS */
    size_t chunk_size;       /* MEMALLOC_CHUNK_SIZE, power of two */
    size_t mmap_threshold;   /* MEMALLOC_MMAP_THRESHOLD */
    unsigned chunk_reserve;  /* MEMALLOC_CHUNK_RESERVE: free chunks kept per arena */
    unsigned check;          /* MEMALLOC_CHECK: 0 off, 1 canaries + periodic ma_check */
    unsigned check_every;    /* MEMALLOC_CHECK_EVERY: operations between full checks */
    unsigned verbose;        /* MEMALLOC_VERBOSE */
    unsigned stats;          /* MEMALLOC_STATS: 0 off, 1 table at exit, 2 JSON at exit */
    char stats_file[256];    /* MEMALLOC_STATS_FILE: "" means stderr */
    char heap_map[256];      /* MEMALLOC_HEAP_MAP: SVG written at exit, "" for none */
};

MA_HIDDEN extern struct ma_config ma_cfg;

/* Parses MEMALLOC_* from `envp` into ma_cfg; warns once per bad value. */
MA_HIDDEN void config_load(char **envp, unsigned ncpus);
/* Writes the effective options to fd (MEMALLOC_VERBOSE=1). */
MA_HIDDEN void config_print(int fd);

/* ---- error reporting (error.c) ---- */

/* Writes "memalloc: <fn>(): <what> at 0x<ptr>\n" and aborts. */
MA_HIDDEN MA_COLD MA_NORETURN void ma_fatal(const char *fn, const char *what, const void *ptr);
/* Writes "memalloc: <msg>\n" (no abort). */
MA_HIDDEN MA_COLD void ma_warn(const char *msg);

/* A tiny formatter over a caller-owned buffer, for messages and tables that
 * must be produced without allocating. */
struct ma_buf {
    char *p;
    size_t len, cap;
    int fd;          /* flushed here when full; -1 means truncate */
};
MA_HIDDEN void buf_str(struct ma_buf *b, const char *s);
MA_HIDDEN void buf_u64(struct ma_buf *b, uint64_t v);
MA_HIDDEN void buf_u64w(struct ma_buf *b, uint64_t v, unsigned width);
MA_HIDDEN void buf_hex(struct ma_buf *b, uint64_t v);
MA_HIDDEN void buf_flush(struct ma_buf *b);

/* ---- the arena table and start-up (memalloc.c) ---- */

struct arena;
MA_HIDDEN extern struct arena *ma_arenas;   /* set once at init */
MA_HIDDEN extern unsigned ma_narenas;       /* set once at init */
/* Initialises the allocator if nothing has yet. */
MA_HIDDEN void ma_ensure_init(void);

/* ---- statistics (stats.c) ---- */

/* Writes what MEMALLOC_STATS and MEMALLOC_HEAP_MAP ask for. */
MA_HIDDEN void stats_exit_report(void);
/* At init: keeps a private copy of stderr for the exit report, which some
 * programs (GNU coreutils) close before exiting. */
MA_HIDDEN void stats_init(void);

/* ---- chunk registry (pagemap.c) ---- */

/* Granule of the registry: every chunk and every large mapping starts on a
 * multiple of it, so one byte per granule tells whether an address is ours. */
#define MA_REGION_SHIFT 20
#define MA_REGION_SIZE ((size_t)1 << MA_REGION_SHIFT)

/* NONE: not ours. CHUNK: every granule of an arena chunk. LARGE: the first
 * granule of a large mapping (its header sits at the granule's start).
 * FREED: a granule we mapped and gave back; a pointer into it is a dangling
 * pointer (double free) unless someone else mapped the range since. */
enum { PAGEMAP_NONE = 0, PAGEMAP_CHUNK = 1, PAGEMAP_LARGE = 2, PAGEMAP_FREED = 3 };

/* Marks [base, base + size) as `kind` (base aligned to MA_REGION_SIZE).
 * Returns 0, or -1 if the registry itself could not be mapped. */
MA_HIDDEN int pagemap_set(uintptr_t base, size_t size, int kind);
/* The radix map: 47-bit addresses, 27 bits of granule number split 13/14. */
#define PAGEMAP_SLOT_BITS (47 - MA_REGION_SHIFT)
#define PAGEMAP_LEAF_BITS 14
#define PAGEMAP_ROOT_BITS (PAGEMAP_SLOT_BITS - PAGEMAP_LEAF_BITS)
MA_HIDDEN extern unsigned char *pagemap_root[(size_t)1 << PAGEMAP_ROOT_BITS];

/* The kind of the granule holding `addr`: never faults, whatever addr is.
 * Inline: every free asks. */
static inline int pagemap_get(uintptr_t addr)
{
    size_t slot = addr >> MA_REGION_SHIFT;
    if (ma_unlikely(slot >> PAGEMAP_SLOT_BITS))
        return PAGEMAP_NONE;
    unsigned char *leaf = __atomic_load_n(&pagemap_root[slot >> PAGEMAP_LEAF_BITS], __ATOMIC_ACQUIRE);
    if (ma_unlikely(leaf == NULL))
        return PAGEMAP_NONE;
    return __atomic_load_n(&leaf[slot & (((size_t)1 << PAGEMAP_LEAF_BITS) - 1)], __ATOMIC_ACQUIRE);
}

#endif /* MA_INTERNAL_H */
