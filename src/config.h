/*
 * config.h - the effective options: every MEMALLOC_* variable is parsed
 * once, at initialisation, by config.c and read from ma_cfg afterwards.
 */
#ifndef MA_CONFIG_H
#define MA_CONFIG_H

#include <stddef.h>

#include "../base/base.h"

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
    unsigned prof;           /* MEMALLOC_PROF: 1 samples allocations by call stack */
    size_t prof_sample;      /* MEMALLOC_PROF_SAMPLE: mean bytes between samples */
    char prof_file[256];     /* MEMALLOC_PROF_FILE: profile written at exit, "" for none */
    char prof_svg[256];      /* MEMALLOC_PROF_SVG: flame graph written at exit, "" for none */
    unsigned retain_ms;      /* MEMALLOC_RETAIN_MS: unused free memory kept this long */
};

MA_HIDDEN extern struct ma_config ma_cfg;

/* Parses MEMALLOC_* from `envp` into ma_cfg; warns once per bad value. */
MA_HIDDEN void config_load(char **envp, unsigned ncpus);
/* Writes the effective options to fd (MEMALLOC_VERBOSE=1). */
MA_HIDDEN void config_print(int fd);
/* Copies the file name `in` to out[cap] with every "%p" replaced by the
 * process id and "%%" by "%" (so a program that forks writes one file per
 * process). 0, or -1 when the result does not fit (out is then unusable).
 * Allocates nothing; call it when the file is opened, not at start-up, so
 * a forked child gets its own pid. */
MA_HIDDEN int config_path_expand(const char *in, char *out, size_t cap);

#endif /* MA_CONFIG_H */
