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

/* NONE: not ours. LARGE: the first granule of a large mapping (its header
 * sits at the granule's start). FREED: a granule we mapped and gave back; a
 * pointer into it is a dangling pointer (double free) unless someone else
 * mapped the range since. CHUNK + i: every granule of a chunk of arena i, so
 * that free() learns the owning arena from the byte it must read anyway.
 * NEVER is stored nowhere: it is the tag of a thread without a cache, which
 * therefore matches no granule. */
enum { PAGEMAP_NONE = 0, PAGEMAP_NEVER = 1, PAGEMAP_LARGE = 2, PAGEMAP_FREED = 3, PAGEMAP_CHUNK = 4 };
/* Arenas a byte can name (MEMALLOC_ARENAS is capped here). */
#define MA_MAX_ARENAS (256 - PAGEMAP_CHUNK)

static inline int pagemap_is_chunk(int kind) { return kind >= PAGEMAP_CHUNK; }

/* Marks [base, base + size) as `kind` (base aligned to MA_REGION_SIZE).
 * Returns 0, or -1 if the range is outside the 47-bit space. */
MA_HIDDEN int pagemap_set(uintptr_t base, size_t size, int kind);

/* The map: one byte per granule of the 47-bit user address space, flat, so a
 * lookup is one shift and one load. 128 MiB of address space in .bss; only
 * the pages covering granules in use are ever touched (one 4 KiB page of the
 * map covers 4 GiB of addresses). */
#define PAGEMAP_ADDR_BITS 47
#define PAGEMAP_SLOTS ((size_t)1 << (PAGEMAP_ADDR_BITS - MA_REGION_SHIFT))
/* Address bits that no granule of ours can have: above the 47-bit space. */
#define PAGEMAP_OUTSIDE (~(((uintptr_t)1 << PAGEMAP_ADDR_BITS) - 1))
MA_HIDDEN extern unsigned char pagemap_map[PAGEMAP_SLOTS]; /* atomic bytes */

/* The kind of the granule holding `addr`: never faults, whatever addr is.
 * Inline: every free asks. */
static inline int pagemap_get(uintptr_t addr)
{
    if (ma_unlikely(addr & PAGEMAP_OUTSIDE))
        return PAGEMAP_NONE;
    return __atomic_load_n(&pagemap_map[addr >> MA_REGION_SHIFT], __ATOMIC_ACQUIRE);
}

#endif /* MA_INTERNAL_H */
