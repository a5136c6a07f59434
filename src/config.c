/*
 * config.c - every MEMALLOC_* option, in one table, parsed once at
 * initialisation straight from the environment block (getenv is avoided:
 * the table is walked over `environ` so nothing allocates and nothing runs
 * before the allocator itself is ready). A bad value gets one warning line
 * and the default, never a crash.
 */
#include <string.h>

#include "config.h"
#include "../base/error.h"
#include "../base/os.h"
#include "../base/pagemap.h"

struct ma_config ma_cfg;

#ifdef MA_DEBUG
#define MA_CHECK_DEFAULT 1
#else
#define MA_CHECK_DEFAULT 0
#endif

enum opt_kind { OPT_COUNT, OPT_SIZE, OPT_POW2_SIZE, OPT_PATH, OPT_STATS };

struct option {
    const char *name;     /* the variable, without the MEMALLOC_ prefix */
    enum opt_kind kind;   /* OPT_SIZE accepts K/M/G suffixes */
    uint64_t def;         /* default; 0 for arenas means "one per CPU" */
    uint64_t min, max;
    const char *doc;
    int seen;             /* set once at init */
};

static struct option options[] = {
    /* Default arenas = CPUs: with per-arena locks the contention that
     * matters is between threads running at once, and no more threads than
     * CPUs run at once; see README.md for the measurement. */
    { "ARENAS", OPT_COUNT, 0, 1, MA_MAX_ARENAS, "arenas (default: online CPUs)", 0 },
    /* 4 MiB chunks and a 1 MiB threshold: blocks of 256 KiB to 1 MiB
     * come back from the arena, already resident, instead of being mapped
     * and faulted in afresh (README.md, "How the defaults were chosen"). */
    { "CHUNK_SIZE", OPT_POW2_SIZE, (uint64_t)4 << 20, (uint64_t)1 << 20, (uint64_t)1 << 30,
      "bytes an arena maps at a time (power of two)", 0 },
    { "MMAP_THRESHOLD", OPT_SIZE, (uint64_t)1 << 20, 4096, (uint64_t)1 << 28,
      "requests this big or bigger are mapped directly (at most a quarter of the chunk size)", 0 },
    { "CHUNK_RESERVE", OPT_COUNT, 1, 0, 1024, "wholly free chunks each arena keeps", 0 },
    { "CHECK", OPT_COUNT, MA_CHECK_DEFAULT, 0, 1, "1: canaries and periodic ma_check", 0 },
    { "CHECK_EVERY", OPT_COUNT, 4096, 1, (uint64_t)1 << 32, "operations between full checks", 0 },
    { "VERBOSE", OPT_COUNT, 0, 0, 1, "1: print the effective options at start", 0 },
    { "STATS", OPT_STATS, 0, 0, 2, "1 (or table): statistics and leaks at exit; json: as JSON", 0 },
    { "STATS_FILE", OPT_PATH, 0, 0, 0, "write the exit statistics here instead of stderr", 0 },
    { "HEAP_MAP", OPT_PATH, 0, 0, 0, "write an SVG picture of the heap here at exit", 0 },
    { "PROF", OPT_COUNT, 0, 0, 1, "1: sample allocations by call stack (heap profile)", 0 },
    /* 512 KiB, as jemalloc and tcmalloc sample: a few samples per MiB keeps
     * the stack captures rare on the allocation path. */
    { "PROF_SAMPLE", OPT_SIZE, (uint64_t)512 << 10, 1, (uint64_t)1 << 40,
      "mean bytes allocated between two samples", 0 },
    { "PROF_FILE", OPT_PATH, 0, 0, 0, "write the heap profile here at exit (%p: pid)", 0 },
    { "PROF_SVG", OPT_PATH, 0, 0, 0, "write a flame graph of live bytes here at exit (%p: pid)", 0 },
    /* How long free memory that nothing reuses stays mapped and resident:
     * long enough to span a program's cycle of freeing and allocating
     * again, short enough that an idle program gives its memory back
     * (bench/NOTES.md, "Retained memory"). */
    { "RETAIN_MS", OPT_COUNT, 1000, 0, 3600000,
      "ms that unused free memory is kept before it goes back to the OS (0: at once)", 0 },
};

enum { O_ARENAS, O_CHUNK, O_THRESHOLD, O_RESERVE, O_CHECK, O_CHECK_EVERY, O_VERBOSE,
       O_STATS, O_STATS_FILE, O_HEAP_MAP, O_PROF, O_PROF_SAMPLE, O_PROF_FILE, O_PROF_SVG, O_RETAIN, O_COUNT };

_Static_assert(sizeof options / sizeof options[0] == O_COUNT, "option table and enum agree");

static uint64_t values[O_COUNT];

/* Parses a decimal number with an optional K/M/G suffix (sizes only).
 * Returns 0 and sets *out, or -1 on any malformed or overflowing value. */
static int parse_value(const char *s, enum opt_kind kind, uint64_t *out)
{
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    if ((kind == OPT_SIZE || kind == OPT_POW2_SIZE) && *s != '\0') {
        unsigned shift = 0;
        switch (*s) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
        s++;
        if (*s == 'i' || *s == 'B' || *s == 'b') /* accept KiB / KB */
            s += (*s == 'i') ? 1 : 0, s += (*s == 'B' || *s == 'b') ? 1 : 0;
        if (v > (UINT64_MAX >> shift))
            return -1;
        v <<= shift;
    }
    if (*s != '\0')
        return -1;
    *out = v;
    return 0;
}

static void warn_bad(const struct option *o, const char *value, const char *why)
{
    char mem[256];
    struct ma_buf b = { mem, 0, sizeof mem - 1, -1 };
    buf_str(&b, "memalloc: ignoring MEMALLOC_");
    buf_str(&b, o->name);
    buf_str(&b, "=");
    /* Bound what we echo so a huge value cannot push out the explanation. */
    char shown[40];
    size_t n = strnlen(value, sizeof shown - 1);
    memcpy(shown, value, n);
    shown[n] = '\0';
    buf_str(&b, shown);
    buf_str(&b, " (");
    buf_str(&b, why);
    buf_str(&b, "); using the default\n");
    os_write(2, b.p, b.len);
}

/* Copies a path option into its fixed buffer (paths longer than the buffer
 * are refused rather than truncated). */
static void option_path(struct option *o, const char *value, char *dst, size_t cap)
{
    size_t n = strnlen(value, cap);
    if (n == 0 || n >= cap) {
        warn_bad(o, value, n == 0 ? "empty" : "too long");
        return;
    }
    memcpy(dst, value, n + 1);
    o->seen = 1;
}

static void option_parse(struct option *o, const char *value, uint64_t *out)
{
    uint64_t v;
    if (o->kind == OPT_STATS) {
        if (strcmp(value, "json") == 0 || strcmp(value, "JSON") == 0) {
            *out = 2;
            o->seen = 1;
            return;
        }
        if (strcmp(value, "table") == 0) {
            *out = 1;
            o->seen = 1;
            return;
        }
    }
    if (parse_value(value, o->kind, &v) != 0) {
        warn_bad(o, value, "not a number");
        return;
    }
    if (v < o->min || v > o->max) {
        warn_bad(o, value, "out of range");
        return;
    }
    if (o->kind == OPT_POW2_SIZE && (v & (v - 1)) != 0) {
        warn_bad(o, value, "not a power of two");
        return;
    }
    *out = v;
    o->seen = 1;
}

void config_load(char **envp, unsigned ncpus)
{
    for (unsigned i = 0; i < O_COUNT; i++)
        values[i] = options[i].def;
    values[O_ARENAS] = ncpus < 1 ? 1 : (ncpus > MA_MAX_ARENAS ? MA_MAX_ARENAS : ncpus);

    for (char **e = envp; e != NULL && *e != NULL; e++) {
        const char *s = *e;
        if (strncmp(s, "MEMALLOC_", 9) != 0)
            continue;
        s += 9;
        for (unsigned i = 0; i < O_COUNT; i++) {
            size_t n = strlen(options[i].name);
            if (strncmp(s, options[i].name, n) == 0 && s[n] == '=') {
                if (i == O_STATS_FILE)
                    option_path(&options[i], s + n + 1, ma_cfg.stats_file, sizeof ma_cfg.stats_file);
                else if (i == O_HEAP_MAP)
                    option_path(&options[i], s + n + 1, ma_cfg.heap_map, sizeof ma_cfg.heap_map);
                else if (i == O_PROF_FILE)
                    option_path(&options[i], s + n + 1, ma_cfg.prof_file, sizeof ma_cfg.prof_file);
                else if (i == O_PROF_SVG)
                    option_path(&options[i], s + n + 1, ma_cfg.prof_svg, sizeof ma_cfg.prof_svg);
                else
                    option_parse(&options[i], s + n + 1, &values[i]);
                break;
            }
        }
    }

    /* The threshold must leave room for several blocks in a chunk, so that
     * every request below it fits an arena chunk. */
    if (values[O_THRESHOLD] > values[O_CHUNK] / 4) {
        /* A default threshold follows a smaller chunk size silently. */
        if (options[O_THRESHOLD].seen)
            ma_warn("MEMALLOC_MMAP_THRESHOLD is above a quarter of MEMALLOC_CHUNK_SIZE; using a quarter");
        values[O_THRESHOLD] = values[O_CHUNK] / 4;
    }

    ma_cfg.arenas = (unsigned)values[O_ARENAS];
    ma_cfg.chunk_size = (size_t)values[O_CHUNK];
    ma_cfg.mmap_threshold = (size_t)values[O_THRESHOLD];
    ma_cfg.chunk_reserve = (unsigned)values[O_RESERVE];
    ma_cfg.check = (unsigned)values[O_CHECK];
    ma_cfg.check_every = (unsigned)values[O_CHECK_EVERY];
    ma_cfg.verbose = (unsigned)values[O_VERBOSE];
    ma_cfg.stats = (unsigned)values[O_STATS];
    ma_cfg.prof = (unsigned)values[O_PROF];
    ma_cfg.prof_sample = (size_t)values[O_PROF_SAMPLE];
    ma_cfg.retain_ms = (unsigned)values[O_RETAIN];
}

void config_print(int fd)
{
    char mem[512];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    for (unsigned i = 0; i < O_COUNT; i++) {
        buf_str(&b, "memalloc: MEMALLOC_");
        buf_str(&b, options[i].name);
        buf_str(&b, "=");
        if (i == O_STATS_FILE)
            buf_str(&b, ma_cfg.stats_file);
        else if (i == O_HEAP_MAP)
            buf_str(&b, ma_cfg.heap_map);
        else if (i == O_PROF_FILE)
            buf_str(&b, ma_cfg.prof_file);
        else if (i == O_PROF_SVG)
            buf_str(&b, ma_cfg.prof_svg);
        else
            buf_u64(&b, values[i]);
        buf_str(&b, options[i].seen ? " (set)  # " : " (default)  # ");
        buf_str(&b, options[i].doc);
        buf_str(&b, "\n");
    }
    buf_flush(&b);
}

int config_path_expand(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *s = in; *s != '\0'; s++) {
        char num[24];
        const char *piece = num;
        size_t len;
        if (s[0] == '%' && s[1] == 'p') {
            /* The pid in decimal: written backwards, then used from its
             * first digit. */
            unsigned v = (unsigned)os_getpid();
            char *e = num + sizeof num;
            do
                *--e = (char)('0' + v % 10);
            while ((v /= 10) != 0);
            piece = e;
            len = (size_t)(num + sizeof num - e);
            s++;
        } else if (s[0] == '%' && s[1] == '%') {
            piece = "%";
            len = 1;
            s++;
        } else {
            piece = s;
            len = 1;
        }
        if (n + len >= cap)
            return -1;
        memcpy(out + n, piece, len);
        n += len;
    }
    if (cap == 0)
        return -1;
    out[n] = '\0';
    return 0;
}
