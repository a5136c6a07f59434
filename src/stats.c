/*
 * stats.c - the statistics API and its printouts: a readable table, one
 * line of JSON, glibc's malloc_info XML, the leak summary, and the exit
 * report. Never allocates: figures are gathered arena by arena under each
 * arena's lock and written through a stack buffer with write(2).
 *
 * Counters cost nothing on the allocation path beyond what the arena keeps
 * anyway under its lock (allocs, frees, in_use, lock waits); everything
 * else (free blocks per class, largest free block, fragmentation, leaks) is
 * computed here, when asked, by walking the lists or the heap.
 */
#include <errno.h>
#include <string.h>

#include "memalloc.h"
#include "config.h"
#include "large.h"
#include "process.h"
#include "prof.h"
#include "stats.h"
#include "tcache.h"
#include "../base/os.h"
#include "../arenas/arena.h"

/* Power-of-two class of a block size: 32..63 -> 0, 64..127 -> 1, ... */
static unsigned p2_class(size_t s)
{
    unsigned c = 63u - (unsigned)__builtin_clzl(s) - 5u;
    return c < MA_STATS_CLASSES ? c : MA_STATS_CLASSES - 1;
}

/* Fills o from arena a. Lock held. */
static void arena_fill(struct arena *a, ma_arena_stats_t *o)
{
    memset(o, 0, sizeof *o);
    o->mapped = a->mapped;
    o->in_use = a->in_use;
    o->peak_in_use = a->peak_in_use;
    /* Parked (quick-list) blocks are free in all but name. */
    o->free = a->free_bytes + a->quick_bytes;
    o->chunks = a->nchunks;
    o->free_blocks = a->free_blocks + a->quick_blocks;
    o->allocs = a->allocs;
    o->frees = a->frees;
    o->remote_frees = a->remote_frees;
    o->remote_pending = 0;
    for (unsigned c = 0; c < REMOTE_STACKS; c++)
        o->remote_pending += remote_count(__atomic_load_n(&a->remote_top[c], __ATOMIC_RELAXED));
    o->lock_acquires = a->lock_acquires;
    o->lock_waits = a->lock_waits;
    o->threads = __atomic_load_n(&a->threads, __ATOMIC_RELAXED);
    o->idle_releases = a->idle_releases;
    for (unsigned c = 0; c < N_CLASSES; c++) {
        for (struct block *b = a->heads[c]; b != NULL; b = b->next) {
            size_t s = block_size(b);
            if (s > o->largest_free)
                o->largest_free = s;
            o->free_by_class[p2_class(s)]++;
        }
    }
    for (unsigned c = 0; c < QUICK_CLASSES; c++)
        if (a->quick[c].count)
            o->free_by_class[p2_class(arena_class_lo(c))] += a->quick[c].count;
    o->fragmentation = o->free ? 1.0 - (double)o->largest_free / (double)o->free : 0.0;
}

/* Locks arena i, drains its remote frees, fills o, unlocks. */
static void arena_snapshot(unsigned i, ma_arena_stats_t *o)
{
    struct arena *a = &ma_arenas[i];
    arena_lock(a);
    arena_drain(a);
    arena_fill(a, o);
    arena_unlock(a);
}

int ma_arena_stats_get(unsigned index, ma_arena_stats_t *out)
{
    ma_ensure_init();
    if (index >= ma_narenas || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    arena_snapshot(index, out);
    return 0;
}

/* ---- totals ---- */

static void totals_add(ma_stats_t *s, const ma_arena_stats_t *a)
{
    s->mapped += a->mapped;
    s->in_use += a->in_use;
    s->free += a->free;
    s->free_blocks += a->free_blocks;
    if (a->largest_free > s->largest_free)
        s->largest_free = a->largest_free;
    s->allocs += a->allocs;
    s->frees += a->frees;
    s->remote_frees += a->remote_frees;
    s->lock_acquires += a->lock_acquires;
    s->lock_waits += a->lock_waits;
}

static void totals_finish(ma_stats_t *s)
{
    s->fragmentation = s->free ? 1.0 - (double)s->largest_free / (double)s->free : 0.0;
    s->free_ratio = s->mapped ? (double)s->free / (double)s->mapped : 0.0;
    struct large_totals lt;
    large_totals(&lt);
    s->large_live = lt.live;
    s->large_bytes = lt.bytes;
    s->large_peak_bytes = lt.peak_bytes;
    s->large_maps = lt.maps;
    s->large_unmaps = lt.unmaps;
    s->large_reuses = lt.reuses;
    s->large_cached = lt.cached;
    s->large_cached_bytes = lt.cached_bytes;
    os_mapped(&s->total_mapped, &s->peak_mapped);
    s->version = MA_STATS_VERSION;
    s->arenas = ma_narenas;
}

int ma_stats_get(ma_stats_t *s)
{
    if (s == NULL || s->size != sizeof(ma_stats_t)) {
        errno = EINVAL;
        return -1;
    }
    ma_ensure_init();
    size_t size = s->size;
    memset(s, 0, sizeof *s);
    s->size = size;
    for (unsigned i = 0; i < ma_narenas; i++) {
        ma_arena_stats_t one;
        arena_snapshot(i, &one);
        totals_add(s, &one);
        if (i < MA_STATS_MAX_ARENAS)
            s->arena[i] = one;
    }
    totals_finish(s);
    return 0;
}

/* ---- leak summary: what is still allocated ---- */

struct leaks {
    uint64_t blocks[MA_STATS_CLASSES], bytes[MA_STATS_CLASSES];
    uint64_t arena_blocks, arena_bytes;
};

static void leak_block(void *ctx, const struct chunk *c, const struct block *b, size_t size, int in_use)
{
    (void)c;
    (void)b;
    struct leaks *l = ctx;
    if (!in_use || ((const uintptr_t *)block_payload((struct block *)b))[1] == cached_key(block_payload((struct block *)b)))
        return; /* free, or parked in a cache: not a leak */
    l->blocks[p2_class(size)]++;
    l->bytes[p2_class(size)] += size;
    l->arena_blocks++;
    l->arena_bytes += size;
}

/* ---- number formatting ---- */

/* Writes v (a ratio, >= 0) with four decimals. */
static void buf_ratio(struct ma_buf *b, double v)
{
    if (!(v >= 0.0))
        v = 0.0;
    uint64_t scaled = (uint64_t)(v * 10000.0 + 0.5);
    char frac[6] = ".0000";
    uint64_t f = scaled % 10000;
    for (int i = 4; i >= 1; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    buf_u64(b, scaled / 10000);
    buf_str(b, frac);
}

static void json_key(struct ma_buf *b, const char *k, int first)
{
    if (!first)
        buf_str(b, ",");
    buf_str(b, "\"");
    buf_str(b, k);
    buf_str(b, "\":");
}

static void json_u64(struct ma_buf *b, const char *k, uint64_t v, int first)
{
    json_key(b, k, first);
    buf_u64(b, v);
}

static void json_ratio(struct ma_buf *b, const char *k, double v)
{
    json_key(b, k, 0);
    buf_ratio(b, v);
}

static void json_arena(struct ma_buf *b, unsigned i, const ma_arena_stats_t *a)
{
    buf_str(b, i ? ",{" : "{");
    json_u64(b, "index", i, 1);
    json_u64(b, "mapped", a->mapped, 0);
    json_u64(b, "in_use", a->in_use, 0);
    json_u64(b, "peak_in_use", a->peak_in_use, 0);
    json_u64(b, "free", a->free, 0);
    json_u64(b, "largest_free", a->largest_free, 0);
    json_u64(b, "chunks", a->chunks, 0);
    json_u64(b, "free_blocks", a->free_blocks, 0);
    json_u64(b, "allocs", a->allocs, 0);
    json_u64(b, "frees", a->frees, 0);
    json_u64(b, "remote_frees", a->remote_frees, 0);
    json_u64(b, "remote_pending", a->remote_pending, 0);
    json_u64(b, "lock_acquires", a->lock_acquires, 0);
    json_u64(b, "lock_waits", a->lock_waits, 0);
    json_u64(b, "threads", a->threads, 0);
    json_u64(b, "idle_releases", a->idle_releases, 0);
    json_ratio(b, "fragmentation", a->fragmentation);
    json_key(b, "free_by_class", 0);
    buf_str(b, "[");
    for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
        if (c)
            buf_str(b, ",");
        buf_u64(b, a->free_by_class[c]);
    }
    buf_str(b, "]}");
}

static void json_totals(struct ma_buf *b, const ma_stats_t *s)
{
    buf_str(b, "],\"totals\":{");
    json_u64(b, "mapped", s->mapped, 1);
    json_u64(b, "in_use", s->in_use, 0);
    json_u64(b, "free", s->free, 0);
    json_u64(b, "largest_free", s->largest_free, 0);
    json_u64(b, "free_blocks", s->free_blocks, 0);
    json_u64(b, "allocs", s->allocs, 0);
    json_u64(b, "frees", s->frees, 0);
    json_u64(b, "remote_frees", s->remote_frees, 0);
    json_u64(b, "lock_acquires", s->lock_acquires, 0);
    json_u64(b, "lock_waits", s->lock_waits, 0);
    json_ratio(b, "fragmentation", s->fragmentation);
    json_ratio(b, "free_ratio", s->free_ratio);
    json_u64(b, "total_mapped", s->total_mapped, 0);
    json_u64(b, "peak_mapped", s->peak_mapped, 0);
    buf_str(b, "},\"large\":{");
    json_u64(b, "live", s->large_live, 1);
    json_u64(b, "bytes", s->large_bytes, 0);
    json_u64(b, "peak_bytes", s->large_peak_bytes, 0);
    json_u64(b, "maps", s->large_maps, 0);
    json_u64(b, "unmaps", s->large_unmaps, 0);
    json_u64(b, "reuses", s->large_reuses, 0);
    json_u64(b, "cached", s->large_cached, 0);
    json_u64(b, "cached_bytes", s->large_cached_bytes, 0);
    buf_str(b, "}");
}

/* ---- tables ---- */

/* The process a report is about: "pid N, program NAME" (JSON: the two
 * fields), so the reports of a program's children can be told apart. The
 * name is the C library's short program name; characters that would need
 * quoting are shown as '?'. */
void stats_buf_process(struct ma_buf *b, int json)
{
    const char *name = program_invocation_short_name != NULL ? program_invocation_short_name : "?";
    char clean[64];
    size_t n = 0;
    for (; name[n] != '\0' && n < sizeof clean - 1; n++)
        clean[n] = (name[n] < 0x20 || name[n] == '"' || name[n] == '\\' || name[n] == 0x7f) ? '?' : name[n];
    clean[n] = '\0';
    buf_str(b, json ? "\"pid\":" : "pid ");
    buf_u64(b, (uint64_t)os_getpid());
    buf_str(b, json ? ",\"program\":\"" : ", program ");
    buf_str(b, clean);
    if (json)
        buf_str(b, "\",");
}

static void table_header(struct ma_buf *b)
{
    buf_str(b, "memalloc statistics (");
    stats_buf_process(b, 0);
    buf_str(b, ")\n"
               "arena      mapped      in use   peak used        free  largest free  frag  "
               "    allocs       frees     remote  lock waits/acquires\n");
}

/* One row of the table: an arena's figures, or the totals (peak blank). */
static void table_row(struct ma_buf *b, const char *label, unsigned index, const ma_arena_stats_t *a, int peak)
{
    if (label != NULL)
        buf_str(b, label);
    else
        buf_u64w(b, index, 5);
    buf_u64w(b, a->mapped, 12);
    buf_u64w(b, a->in_use, 12);
    if (peak)
        buf_u64w(b, a->peak_in_use, 12);
    else
        buf_str(b, "            ");
    buf_u64w(b, a->free, 12);
    buf_u64w(b, a->largest_free, 14);
    buf_str(b, "  ");
    buf_ratio(b, a->fragmentation);
    buf_u64w(b, a->allocs, 12);
    buf_u64w(b, a->frees, 12);
    buf_u64w(b, a->remote_frees, 11);
    buf_u64w(b, a->lock_waits, 12);
    buf_str(b, "/");
    buf_u64(b, a->lock_acquires);
}

static void table_arena(struct ma_buf *b, unsigned i, const ma_arena_stats_t *a, unsigned opts)
{
    table_row(b, NULL, i, a, 1);
    buf_str(b, "\n");
    if (opts & MA_PRINT_CLASSES) {
        for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
            if (!a->free_by_class[c])
                continue;
            buf_str(b, "        free blocks of ");
            buf_u64(b, (uint64_t)32 << c);
            buf_str(b, "+ bytes: ");
            buf_u64(b, a->free_by_class[c]);
            buf_str(b, "\n");
        }
    }
}

static void table_totals(struct ma_buf *b, const ma_stats_t *s)
{
    ma_arena_stats_t t;
    memset(&t, 0, sizeof t);
    t.mapped = s->mapped;
    t.in_use = s->in_use;
    t.free = s->free;
    t.largest_free = s->largest_free;
    t.fragmentation = s->fragmentation;
    t.allocs = s->allocs;
    t.frees = s->frees;
    t.remote_frees = s->remote_frees;
    t.lock_waits = s->lock_waits;
    t.lock_acquires = s->lock_acquires;
    table_row(b, "total", 0, &t, 0);
    buf_str(b, "\nfree/mapped ");
    buf_ratio(b, s->free_ratio);
    buf_str(b, "; large objects: ");
    buf_u64(b, s->large_live);
    buf_str(b, " live, ");
    buf_u64(b, s->large_bytes);
    buf_str(b, " bytes (peak ");
    buf_u64(b, s->large_peak_bytes);
    buf_str(b, "), ");
    buf_u64(b, s->large_maps);
    buf_str(b, " maps, ");
    buf_u64(b, s->large_unmaps);
    buf_str(b, " unmaps, ");
    buf_u64(b, s->large_reuses);
    buf_str(b, " reuses, ");
    buf_u64(b, s->large_cached_bytes);
    buf_str(b, " bytes cached\nmapped in all: ");
    buf_u64(b, s->total_mapped);
    buf_str(b, " bytes (peak ");
    buf_u64(b, s->peak_mapped);
    buf_str(b, ")\n");
}

/* ---- malloc_info XML ---- */

static void xml_arena(struct ma_buf *b, unsigned i, const ma_arena_stats_t *a)
{
    buf_str(b, "<heap nr=\"");
    buf_u64(b, i);
    buf_str(b, "\">\n<sizes>\n");
    for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
        if (!a->free_by_class[c])
            continue;
        buf_str(b, "  <size from=\"");
        buf_u64(b, (uint64_t)32 << c);
        buf_str(b, "\" to=\"");
        buf_u64(b, ((uint64_t)64 << c) - 1);
        buf_str(b, "\" count=\"");
        buf_u64(b, a->free_by_class[c]);
        buf_str(b, "\"/>\n");
    }
    buf_str(b, "</sizes>\n<total type=\"rest\" count=\"");
    buf_u64(b, a->free_blocks);
    buf_str(b, "\" size=\"");
    buf_u64(b, a->free);
    buf_str(b, "\"/>\n<system type=\"current\" size=\"");
    buf_u64(b, a->mapped);
    buf_str(b, "\"/>\n<aspace type=\"total\" size=\"");
    buf_u64(b, a->mapped);
    buf_str(b, "\"/>\n</heap>\n");
}

static void xml_totals(struct ma_buf *b, const ma_stats_t *s)
{
    buf_str(b, "<total type=\"rest\" count=\"");
    buf_u64(b, s->free_blocks);
    buf_str(b, "\" size=\"");
    buf_u64(b, s->free);
    buf_str(b, "\"/>\n<total type=\"mmap\" count=\"");
    buf_u64(b, s->large_live);
    buf_str(b, "\" size=\"");
    buf_u64(b, s->large_bytes);
    buf_str(b, "\"/>\n<system type=\"current\" size=\"");
    buf_u64(b, s->total_mapped);
    buf_str(b, "\"/>\n<system type=\"max\" size=\"");
    buf_u64(b, s->peak_mapped);
    buf_str(b, "\"/>\n</malloc>\n");
}

/* ---- printing ---- */

static void print_leaks(struct ma_buf *b, unsigned opts)
{
    int json = (opts & MA_PRINT_JSON) != 0;
    struct leaks all;
    memset(&all, 0, sizeof all);
    json ? buf_str(b, ",\"leaks\":{\"by_arena\":[") : buf_str(b, "still allocated:\n");
    for (unsigned i = 0; i < ma_narenas; i++) {
        struct leaks one;
        memset(&one, 0, sizeof one);
        struct arena_visitor v = { NULL, leak_block, &one };
        arena_lock(&ma_arenas[i]);
        arena_drain(&ma_arenas[i]);
        arena_walk(&ma_arenas[i], &v);
        arena_unlock(&ma_arenas[i]);
        for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
            all.blocks[c] += one.blocks[c];
            all.bytes[c] += one.bytes[c];
        }
        all.arena_blocks += one.arena_blocks;
        all.arena_bytes += one.arena_bytes;
        if (json) {
            buf_str(b, i ? ",{" : "{");
            json_u64(b, "arena", i, 1);
            json_u64(b, "blocks", one.arena_blocks, 0);
            json_u64(b, "bytes", one.arena_bytes, 0);
            buf_str(b, "}");
        } else if (one.arena_blocks) {
            buf_str(b, "  arena ");
            buf_u64(b, i);
            buf_str(b, ": ");
            buf_u64(b, one.arena_blocks);
            buf_str(b, " blocks, ");
            buf_u64(b, one.arena_bytes);
            buf_str(b, " bytes\n");
        }
    }
    struct large_totals lt;
    large_totals(&lt);
    if (json) {
        buf_str(b, "],\"by_class\":[");
        int first = 1;
        for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
            if (!all.blocks[c])
                continue;
            buf_str(b, first ? "{" : ",{");
            first = 0;
            json_u64(b, "class_min", (uint64_t)32 << c, 1);
            json_u64(b, "blocks", all.blocks[c], 0);
            json_u64(b, "bytes", all.bytes[c], 0);
            buf_str(b, "}");
        }
        buf_str(b, "]");
        json_u64(b, "blocks", all.arena_blocks + lt.live, 0);
        json_u64(b, "bytes", all.arena_bytes + lt.bytes, 0);
        json_u64(b, "large_blocks", lt.live, 0);
        json_u64(b, "large_bytes", lt.bytes, 0);
        buf_str(b, "}");
        return;
    }
    for (unsigned c = 0; c < MA_STATS_CLASSES; c++) {
        if (!all.blocks[c])
            continue;
        buf_str(b, "  blocks of ");
        buf_u64(b, (uint64_t)32 << c);
        buf_str(b, "+ bytes: ");
        buf_u64(b, all.blocks[c]);
        buf_str(b, " blocks, ");
        buf_u64(b, all.bytes[c]);
        buf_str(b, " bytes\n");
    }
    buf_str(b, "  large: ");
    buf_u64(b, lt.live);
    buf_str(b, " blocks, ");
    buf_u64(b, lt.bytes);
    buf_str(b, " bytes\n  in all: ");
    buf_u64(b, all.arena_blocks + lt.live);
    buf_str(b, " blocks, ");
    buf_u64(b, all.arena_bytes + lt.bytes);
    buf_str(b, " bytes\n");
}

void ma_stats_print(int fd, unsigned opts)
{
    ma_ensure_init();
    char mem[4096];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    ma_stats_t s;
    memset(&s, 0, sizeof s);
    int json = (opts & MA_PRINT_JSON) != 0, xml = (opts & MA_PRINT_XML) != 0;
    if (json)
    {
        buf_str(&b, "{\"schema\":\"memalloc-stats\",\"version\":1,");
        stats_buf_process(&b, 1);
        buf_str(&b, "\"arenas\":[");
    }
    else if (xml)
        buf_str(&b, "<malloc version=\"1\">\n");
    else
        table_header(&b);
    /* One arena at a time: constant stack however many arenas there are. */
    for (unsigned i = 0; i < ma_narenas; i++) {
        ma_arena_stats_t a;
        arena_snapshot(i, &a);
        totals_add(&s, &a);
        if (json)
            json_arena(&b, i, &a);
        else if (xml)
            xml_arena(&b, i, &a);
        else
            table_arena(&b, i, &a, opts);
    }
    totals_finish(&s);
    if (json)
        json_totals(&b, &s);
    else if (xml)
        xml_totals(&b, &s);
    else
        table_totals(&b, &s);
    if ((opts & MA_PRINT_LEAKS) && !xml)
        print_leaks(&b, opts);
    if (json)
        buf_str(&b, "}\n");
    buf_flush(&b);
}

/* ---- at exit ---- */

static int report_fd = 2; /* set once at init */

void stats_init(void)
{
    if (ma_cfg.stats && !ma_cfg.stats_file[0]) {
        int copy = os_dup(2);
        if (copy >= 0)
            report_fd = copy;
    }
}

void stats_exit_report(void)
{
    /* Cached blocks are free in all but name: give them back so the leak
     * summary shows only what the program still holds. */
    tcache_flush_all();
    char path[sizeof ma_cfg.stats_file + 32];
    if (ma_cfg.stats) {
        int fd = report_fd;
        if (ma_cfg.stats_file[0]) {
            /* %p: the pid, so that a program's children write their own. */
            fd = config_path_expand(ma_cfg.stats_file, path, sizeof path) == 0 ? os_open_write(path) : -1;
            if (fd < 0) {
                ma_warn("cannot open MEMALLOC_STATS_FILE; writing the statistics to stderr");
                fd = 2;
            }
        }
        ma_stats_print(fd, MA_PRINT_LEAKS | (ma_cfg.stats == 2 ? MA_PRINT_JSON : MA_PRINT_CLASSES));
        if (prof_on && ma_cfg.stats == 1) {
            /* The leak summary by who allocated it (the JSON line stays one
             * line and leaves it out). */
            char mem[4096];
            struct ma_buf b = { mem, 0, sizeof mem, fd };
            prof_print_leaks(&b, 10);
            buf_flush(&b);
        }
        if (fd != report_fd && fd != 2)
            os_close(fd);
    }
    if (ma_cfg.heap_map[0]) {
        int fd = config_path_expand(ma_cfg.heap_map, path, sizeof path) == 0 ? os_open_write(path) : -1;
        if (fd < 0) {
            ma_warn("cannot open MEMALLOC_HEAP_MAP for writing");
            return;
        }
        ma_heap_map(fd);
        os_close(fd);
    }
}
