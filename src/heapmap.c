/*
 * heapmap.c - ma_heap_map: an SVG picture of the heap. Every chunk of every
 * arena is a strip 1024 units wide; allocated blocks are blue, free blocks
 * orange, chunk headers and fences grey; large mappings are drawn beside on
 * the same scale. Runs of adjacent allocated blocks are merged into one
 * rectangle whose data-n attribute says how many blocks it stands for (so a
 * heap of millions of small blocks stays a small file); every free block is
 * its own rectangle. Written through a stack buffer: allocates nothing.
 */
#include <string.h>

#include "memalloc.h"
#include "config.h"
#include "large.h"
#include "process.h"
#include "stats.h"
#include "../arenas/arena.h"

#define STRIP_W 1024u    /* units across one chunk */
#define STRIP_H 12u
#define ROW_GAP 4u
#define LEFT 70u         /* room for the row labels */
#define TOP 70u          /* title, totals, legend */
#define MAX_LARGE 256u   /* large mappings drawn; the rest are counted */

#define COLOR_USED "#4c78a8"
#define COLOR_FREE "#f58518"
#define COLOR_META "#bbbbbb"
#define COLOR_LARGE "#54a24b"
#define COLOR_CACHED "#9ecae9"

/* Writes v / 100 with two decimals (coordinates are kept in 1/100 units). */
static void buf_fixed(struct ma_buf *b, uint64_t v)
{
    char frac[4] = ".00";
    frac[1] = (char)('0' + (v / 10) % 10);
    frac[2] = (char)('0' + v % 10);
    buf_u64(b, v / 100);
    buf_str(b, frac);
}

static void rect(struct ma_buf *b, uint64_t x100, uint64_t y, uint64_t w100, unsigned h, const char *cls,
                 uint64_t n)
{
    buf_str(b, "<rect class=\"");
    buf_str(b, cls);
    buf_str(b, "\" x=\"");
    buf_fixed(b, x100);
    buf_str(b, "\" y=\"");
    buf_u64(b, y);
    buf_str(b, "\" width=\"");
    buf_fixed(b, w100 ? w100 : 1);
    buf_str(b, "\" height=\"");
    buf_u64(b, h);
    buf_str(b, "\"");
    if (n) {
        buf_str(b, " data-n=\"");
        buf_u64(b, n);
        buf_str(b, "\"");
    }
    buf_str(b, "/>\n");
}

static void text(struct ma_buf *b, unsigned x, uint64_t y, const char *s)
{
    buf_str(b, "<text x=\"");
    buf_u64(b, x);
    buf_str(b, "\" y=\"");
    buf_u64(b, y);
    buf_str(b, "\">");
    buf_str(b, s);
    buf_str(b, "</text>\n");
}

/* ---- drawing one arena's chunks ---- */

struct draw {
    struct ma_buf *b;
    size_t chunk_size;
    uint64_t row, rows_left;       /* current strip's y; strips still allowed */
    const struct chunk *chunk;     /* strip being drawn, NULL when skipped */
    uintptr_t run_start;           /* allocated run being merged, 0 if none */
    uint64_t run_n;
    uint64_t used_blocks, free_blocks, cached_blocks;
};

static uint64_t x_of(const struct draw *d, uintptr_t addr)
{
    return (uint64_t)(addr - (uintptr_t)d->chunk) * STRIP_W * 100 / d->chunk_size + LEFT * 100;
}

static void run_flush(struct draw *d, uintptr_t end)
{
    if (d->run_start == 0)
        return;
    uint64_t x = x_of(d, d->run_start);
    rect(d->b, x, d->row, x_of(d, end) - x, STRIP_H, "used", d->run_n);
    d->run_start = 0;
    d->run_n = 0;
}

static void strip_end(struct draw *d)
{
    if (d->chunk == NULL)
        return;
    uintptr_t fence = (uintptr_t)d->chunk + d->chunk_size - CHUNK_FENCE;
    run_flush(d, fence);
    rect(d->b, x_of(d, fence), d->row, x_of(d, fence + CHUNK_FENCE) - x_of(d, fence), STRIP_H, "meta", 0);
    d->row += STRIP_H + ROW_GAP;
    d->chunk = NULL;
}

static void on_chunk(void *ctx, const struct chunk *c)
{
    struct draw *d = ctx;
    strip_end(d);
    if (d->rows_left == 0)
        return;
    d->rows_left--;
    d->chunk = c;
    uintptr_t first = (uintptr_t)chunk_first_block(c);
    rect(d->b, x_of(d, (uintptr_t)c), d->row, x_of(d, first) - x_of(d, (uintptr_t)c), STRIP_H, "meta", 0);
}

static void on_block(void *ctx, const struct chunk *c, const struct block *blk, size_t size, int in_use)
{
    struct draw *d = ctx;
    if (d->chunk != c)
        return;
    uintptr_t start = (uintptr_t)blk;
    void *p = block_payload((struct block *)blk);
    if (in_use && ((const uintptr_t *)p)[1] == cached_key(p)) {
        /* Parked in a thread cache or a quick list: free to reuse, not yet
         * coalesced. */
        run_flush(d, start);
        uint64_t x = x_of(d, start);
        rect(d->b, x, d->row, x_of(d, start + size) - x, STRIP_H, "cached", 1);
        d->cached_blocks++;
        return;
    }
    if (in_use) {
        if (d->run_start == 0)
            d->run_start = start;
        d->run_n++;
        d->used_blocks++;
        return;
    }
    run_flush(d, start);
    uint64_t x = x_of(d, start);
    rect(d->b, x, d->row, x_of(d, start + size) - x, STRIP_H, "free", 1);
    d->free_blocks++;
}

/* ---- large mappings ---- */

struct large_draw {
    struct ma_buf *b;
    size_t chunk_size;
    uint64_t row;
    unsigned drawn;
};

static void on_large(void *ctx, const struct large *l)
{
    struct large_draw *d = ctx;
    uint64_t w = (uint64_t)l->map_size * STRIP_W * 100 / d->chunk_size;
    if (w > (uint64_t)STRIP_W * 100)
        w = (uint64_t)STRIP_W * 100; /* longer than a chunk: clipped, size in the label */
    rect(d->b, LEFT * 100, d->row, w, STRIP_H, "large", 1);
    d->row += STRIP_H + ROW_GAP;
    d->drawn++;
}

int ma_heap_map(int fd)
{
    ma_ensure_init();
    if (fd < 0)
        return -1;
    ma_stats_t s;
    s.size = sizeof s;
    ma_stats_get(&s);
    size_t chunk_size = ma_cfg.chunk_size;

    /* The height is fixed before drawing from the chunk counts just taken;
     * chunks mapped since are left out rather than drawn outside the box. */
    uint64_t strips = 0;
    for (unsigned i = 0; i < ma_narenas; i++)
        strips += i < MA_STATS_MAX_ARENAS ? s.arena[i].chunks : 0;
    uint64_t large_rows = s.large_live < MAX_LARGE ? s.large_live : MAX_LARGE;
    uint64_t height = TOP + (strips + large_rows) * (STRIP_H + ROW_GAP) + (uint64_t)(ma_narenas + 2) * 20 + 20;

    char mem[4096];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    buf_str(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"");
    buf_u64(&b, LEFT + STRIP_W + 20);
    buf_str(&b, "\" height=\"");
    buf_u64(&b, height);
    buf_str(&b, "\" font-family=\"monospace\" font-size=\"11\">\n<style>.used{fill:" COLOR_USED
                "}.free{fill:" COLOR_FREE "}.cached{fill:" COLOR_CACHED "}.meta{fill:" COLOR_META "}.large{fill:" COLOR_LARGE
                "}text{fill:#222}</style>\n<title>memalloc heap map</title>\n"
                "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");

    /* Title, totals and legend. */
    char line[256];
    struct ma_buf t = { line, 0, sizeof line - 1, -1 };
    buf_str(&t, "memalloc heap (");
    stats_buf_process(&t, 0);
    buf_str(&t, "): ");
    buf_u64(&t, s.arenas);
    buf_str(&t, " arenas, ");
    buf_u64(&t, s.mapped);
    buf_str(&t, " B in chunks (");
    buf_u64(&t, s.in_use);
    buf_str(&t, " used, ");
    buf_u64(&t, s.free);
    buf_str(&t, " free), ");
    buf_u64(&t, s.large_live);
    buf_str(&t, " large = ");
    buf_u64(&t, s.large_bytes);
    buf_str(&t, " B");
    line[t.len] = '\0';
    text(&b, 10, 16, line);
    t.len = 0;
    buf_str(&t, "one strip = one chunk of ");
    buf_u64(&t, chunk_size);
    buf_str(&t, " B; fragmentation (1 - largest free / free) ");
    buf_u64(&t, (uint64_t)(s.fragmentation * 100.0 + 0.5));
    buf_str(&t, "%");
    line[t.len] = '\0';
    text(&b, 10, 32, line);
    rect(&b, 1000, 42, 1000, 10, "used", 0);
    text(&b, 24, 52, "allocated");
    rect(&b, 10000, 42, 1000, 10, "free", 0);
    text(&b, 114, 52, "free");
    rect(&b, 16000, 42, 1000, 10, "meta", 0);
    text(&b, 174, 52, "chunk header / fence");
    rect(&b, 33000, 42, 1000, 10, "large", 0);
    text(&b, 344, 52, "large mapping (own mmap)");
    rect(&b, 54000, 42, 1000, 10, "cached", 0);
    text(&b, 554, 52, "parked in a cache (free, not coalesced)");

    uint64_t row = TOP;
    uint64_t used = 0, freeb = 0, cached = 0;
    for (unsigned i = 0; i < ma_narenas && i < MA_STATS_MAX_ARENAS; i++) {
        t.len = 0;
        buf_str(&t, "arena ");
        buf_u64(&t, i);
        line[t.len] = '\0';
        text(&b, 4, row + STRIP_H, line);
        struct draw d = { &b, chunk_size, row, s.arena[i].chunks, NULL, 0, 0, 0, 0, 0 };
        struct arena_visitor v = { on_chunk, on_block, &d };
        arena_lock(&ma_arenas[i]);
        arena_walk(&ma_arenas[i], &v);
        strip_end(&d);
        arena_unlock(&ma_arenas[i]);
        used += d.used_blocks;
        freeb += d.free_blocks;
        cached += d.cached_blocks;
        row = d.row > row ? d.row : row + STRIP_H + ROW_GAP;
    }
    if (s.large_live) {
        text(&b, 4, row + STRIP_H, "large");
        struct large_draw ld = { &b, chunk_size, row, 0 };
        large_each(on_large, &ld, large_rows);
        row = ld.row;
        if (s.large_live > ld.drawn) {
            t.len = 0;
            buf_str(&t, "... and ");
            buf_u64(&t, s.large_live - ld.drawn);
            buf_str(&t, " more large mappings");
            line[t.len] = '\0';
            text(&b, LEFT, row + STRIP_H, line);
        }
    }
    /* Counts drawn, for readers and for the tests that compare them with
     * the statistics. */
    buf_str(&b, "<desc id=\"counts\" data-used-blocks=\"");
    buf_u64(&b, used);
    buf_str(&b, "\" data-free-blocks=\"");
    buf_u64(&b, freeb);
    buf_str(&b, "\" data-cached-blocks=\"");
    buf_u64(&b, cached);
    buf_str(&b, "\" data-large=\"");
    buf_u64(&b, s.large_live);
    buf_str(&b, "\">memalloc heap map</desc>\n</svg>\n");
    buf_flush(&b);
    return 0;
}
