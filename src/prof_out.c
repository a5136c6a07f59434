/*
 * prof_out.c - the heap profile written out: google-pprof's heap-profile
 * text format, folded stacks (one line per stack, for flame-graph tools),
 * an SVG flame graph of live bytes, and the exit report's leak sites.
 *
 * Everything works from a snapshot (prof.c), without the profile's lock:
 * naming a frame calls dladdr, which takes the dynamic loader's lock. Never
 * allocates: buffers are on the stack or mapped with os_map, and output goes
 * through write(2).
 */
#include <dlfcn.h>
#include <link.h>
#include <string.h>

#include "prof.h"
#include "../base/error.h"
#include "../base/os.h"

/* ---- naming frames ---- */

/* What dladdr says of one return address. key names the function (its
 * start when the symbol is known, else the address itself), so frames of
 * one function merge in a flame graph. */
struct sym {
    uintptr_t pc, key;
    const char *name;   /* the symbol, or NULL */
    const char *module; /* the object's path, or NULL */
    uintptr_t offset;   /* pc - 1 from the object's base */
};

/* The program's own path: dladdr names the main program after argv[0],
 * which programs may rewrite (redis-server puts its address there). Read
 * once; a race between two first readers writes the same bytes. */
static char exe_path[256];
static int exe_read; /* atomic */

static const char *program_path(void)
{
    if (!__atomic_load_n(&exe_read, __ATOMIC_ACQUIRE)) {
        if (os_readlink("/proc/self/exe", exe_path, sizeof exe_path) < 0)
            memcpy(exe_path, "program", sizeof "program");
        __atomic_store_n(&exe_read, 1, __ATOMIC_RELEASE);
    }
    return exe_path;
}

static void sym_resolve(struct sym *s, uintptr_t pc)
{
    Dl_info info;
    struct link_map *map = NULL;
    memset(s, 0, sizeof *s);
    s->pc = pc;
    s->key = pc - 1;
    /* pc - 1 lies in the call instruction, so a call that ends a function
     * is not named after the next one. */
    if (dladdr1((void *)(pc - 1), &info, (void **)&map, RTLD_DL_LINKMAP) == 0)
        return;
    s->module = map != NULL && map->l_name != NULL && map->l_name[0] == '\0' ? program_path() : info.dli_fname;
    s->offset = pc - 1 - (uintptr_t)info.dli_fbase;
    if (info.dli_sname != NULL && info.dli_saddr != NULL) {
        s->name = info.dli_sname;
        s->key = (uintptr_t)info.dli_saddr;
    }
}

/* Appends s with every character outside [!-~] and `avoid` replaced by '_'
 * (folded stacks separate frames with ';' and the count with a space). */
static void buf_clean(struct ma_buf *b, const char *s, const char *avoid)
{
    char one[2] = { 0, 0 };
    for (; *s; s++) {
        one[0] = (*s <= ' ' || *s > '~' || strchr(avoid, *s) != NULL) ? '_' : *s;
        buf_str(b, one);
    }
}

static void buf_sym(struct ma_buf *b, const struct sym *s, const char *avoid)
{
    if (s->name != NULL) {
        buf_clean(b, s->name, avoid);
        return;
    }
    if (s->module != NULL) {
        const char *base = strrchr(s->module, '/');
        buf_clean(b, base != NULL ? base + 1 : (s->module[0] ? s->module : "?"), avoid);
        buf_str(b, "+");
        buf_hex(b, s->offset);
        return;
    }
    buf_hex(b, s->pc - 1);
}

void prof_symbol(struct ma_buf *b, uintptr_t pc)
{
    struct sym s;
    sym_resolve(&s, pc);
    buf_sym(b, &s, "");
}

/* Each distinct return address resolved once: a flame graph of a few
 * thousand stacks names the same frames over and over, and dladdr walks
 * symbol tables linearly. Open addressing in mapped memory. */
struct symcache {
    struct sym *slot;
    size_t cap;
    size_t bytes;
};

static int symcache_init(struct symcache *c, const struct prof_snapshot *s)
{
    size_t frames = 1;
    for (size_t i = 0; i < s->nstacks; i++)
        frames += s->stacks[i]->depth;
    c->cap = 16;
    while (c->cap < frames * 2)
        c->cap *= 2;
    c->bytes = MA_ALIGN_UP(c->cap * sizeof(struct sym), MA_PAGE_SIZE);
    c->slot = os_map(c->bytes);
    return c->slot != NULL ? 0 : -1;
}

static const struct sym *symcache_get(struct symcache *c, uintptr_t pc)
{
    size_t mask = c->cap - 1;
    uint64_t h = pc * 0x9e3779b97f4a7c15ull;
    for (size_t j = (size_t)(h ^ (h >> 29)) & mask;; j = (j + 1) & mask) {
        if (c->slot[j].pc == pc)
            return &c->slot[j];
        if (c->slot[j].pc == 0) {
            sym_resolve(&c->slot[j], pc);
            return &c->slot[j];
        }
    }
}

static void symcache_drop(struct symcache *c)
{
    os_unmap(c->slot, c->bytes);
}

/* ---- google-pprof's heap profile ---- */

static void buf_counts(struct ma_buf *b, uint64_t n1, uint64_t s1, uint64_t n2, uint64_t s2)
{
    buf_u64w(b, n1, 6);
    buf_str(b, ": ");
    buf_u64w(b, s1, 8);
    buf_str(b, " [");
    buf_u64w(b, n2, 6);
    buf_str(b, ": ");
    buf_u64w(b, s2, 8);
    buf_str(b, "]");
}

/* The heap_v2 form: raw sample counts and bytes per stack, with the rate in
 * the header, and pprof scales each stack by 1 / (1 - exp(-avg / rate)).
 * The process's mappings follow so pprof can symbolize every address. */
void prof_write_pprof(int fd, const struct prof_snapshot *s)
{
    char mem[4096];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    uint64_t n1 = 0, s1 = 0, n2 = 0, s2 = 0;
    for (size_t i = 0; i < s->nstacks; i++) {
        n1 += s->stacks[i]->live_count;
        s1 += s->stacks[i]->live_bytes;
        n2 += s->stacks[i]->alloc_count;
        s2 += s->stacks[i]->alloc_bytes;
    }
    buf_str(&b, "heap profile: ");
    buf_counts(&b, n1, s1, n2, s2);
    buf_str(&b, " @ heap_v2/");
    buf_u64(&b, s->rate);
    buf_str(&b, "\n");
    for (size_t i = 0; i < s->nstacks; i++) {
        const struct prof_stack *st = s->stacks[i];
        buf_counts(&b, st->live_count, st->live_bytes, st->alloc_count, st->alloc_bytes);
        buf_str(&b, " @");
        /* pprof takes 1 from every address but the first (return
         * addresses); the first is a return address too. */
        for (unsigned f = 0; f < st->depth; f++) {
            buf_str(&b, " ");
            buf_hex(&b, st->frames[f] - (f == 0));
        }
        buf_str(&b, "\n");
    }
    buf_str(&b, "\nMAPPED_LIBRARIES:\n");
    buf_flush(&b);
    int maps = os_open_read("/proc/self/maps");
    if (maps < 0)
        return;
    long got;
    while ((got = os_read(maps, mem, sizeof mem)) > 0)
        os_write(fd, mem, (size_t)got);
    os_close(maps);
}

/* ---- folded stacks ---- */

/* "main;serve;parse 1048576": outermost frame first, estimated live bytes;
 * stacks with nothing live left are left out. */
void prof_write_folded(int fd, const struct prof_snapshot *s)
{
    char mem[4096];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    struct symcache c;
    if (symcache_init(&c, s) != 0) {
        ma_warn("cannot map memory to name the profile's frames");
        return;
    }
    for (size_t i = 0; i < s->nstacks; i++) {
        const struct prof_stack *st = s->stacks[i];
        if (st->est_live_bytes < 0.5 || st->depth == 0)
            continue;
        for (unsigned f = st->depth; f-- > 0;) {
            buf_sym(&b, symcache_get(&c, st->frames[f]), "; ");
            buf_str(&b, f ? ";" : " ");
        }
        buf_u64(&b, (uint64_t)(st->est_live_bytes + 0.5));
        buf_str(&b, "\n");
    }
    buf_flush(&b);
    symcache_drop(&c);
}

/* ---- SVG flame graph ---- */

/* The stacks merged into a tree by function, outermost at the root. */
struct node {
    const struct sym *sym; /* NULL at the root */
    uint32_t child, sibling; /* indexes; 0 means none (0 is the root) */
    double bytes;
};

#define SVG_WIDTH 1200
#define SVG_ROW 16
#define SVG_TOP 40
#define SVG_PAD 10

struct flame {
    struct node *n;
    size_t used, cap;
    struct ma_buf *b;
    double scale; /* pixels per byte */
    unsigned rows;
};

static uint32_t flame_child(struct flame *f, uint32_t parent, const struct sym *sym)
{
    for (uint32_t c = f->n[parent].child; c != 0; c = f->n[c].sibling)
        if (f->n[c].sym->key == sym->key)
            return c;
    uint32_t c = (uint32_t)f->used++;
    f->n[c].sym = sym;
    f->n[c].sibling = f->n[parent].child;
    f->n[parent].child = c;
    return c;
}

/* Writes v with one decimal. */
static void buf_tenths(struct ma_buf *b, double v)
{
    uint64_t t = (uint64_t)(v * 10.0 + 0.5);
    buf_u64(b, t / 10);
    buf_str(b, ".");
    buf_u64(b, t % 10);
}

/* Appends at most `max` characters of s, escaped for XML ("..." when cut). */
static void buf_xml(struct ma_buf *b, const char *s, size_t max)
{
    size_t n = strlen(s);
    int cut = n > max;
    if (cut)
        n = max > 2 ? max - 2 : 0;
    char one[2] = { 0, 0 };
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '<': buf_str(b, "&lt;"); break;
        case '>': buf_str(b, "&gt;"); break;
        case '&': buf_str(b, "&amp;"); break;
        case '"': buf_str(b, "&quot;"); break;
        default:
            one[0] = (s[i] < ' ' || s[i] > '~') ? '?' : s[i];
            buf_str(b, one);
        }
    }
    if (cut)
        buf_str(b, "..");
}

/* The name of a frame as text, in a caller's buffer. */
static const char *sym_text(const struct sym *s, char *out, size_t cap)
{
    struct ma_buf t = { out, 0, cap - 1, -1 };
    if (s == NULL)
        buf_str(&t, "all");
    else
        buf_sym(&t, s, "");
    out[t.len] = '\0';
    return out;
}

static void flame_draw(struct flame *f, uint32_t i, unsigned depth, double x, double total)
{
    const struct node *nd = &f->n[i];
    double w = nd->bytes * f->scale;
    if (w < 0.3)
        return;
    char name[256];
    sym_text(nd->sym, name, sizeof name);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    struct ma_buf *b = f->b;
    double y = SVG_TOP + (double)(f->rows - 1 - depth) * SVG_ROW;
    buf_str(b, "<g><title>");
    buf_xml(b, name, sizeof name);
    buf_str(b, " (");
    buf_u64(b, (uint64_t)(nd->bytes + 0.5));
    buf_str(b, " bytes, ");
    buf_tenths(b, total > 0 ? 100.0 * nd->bytes / total : 0.0);
    buf_str(b, "%)</title><rect x=\"");
    buf_tenths(b, x);
    buf_str(b, "\" y=\"");
    buf_tenths(b, y);
    buf_str(b, "\" width=\"");
    buf_tenths(b, w);
    buf_str(b, "\" height=\"15\" rx=\"2\" fill=\"rgb(");
    buf_u64(b, 205 + h % 50);
    buf_str(b, ",");
    buf_u64(b, 60 + (h >> 8) % 150);
    buf_str(b, ",");
    buf_u64(b, (h >> 16) % 55);
    buf_str(b, ")\"/>");
    if (w > 24) {
        buf_str(b, "<text x=\"");
        buf_tenths(b, x + 3);
        buf_str(b, "\" y=\"");
        buf_tenths(b, y + 11.5);
        buf_str(b, "\">");
        buf_xml(b, name, (size_t)((w - 6) / 6.6));
        buf_str(b, "</text>");
    }
    buf_str(b, "</g>\n");
    for (uint32_t c = nd->child; c != 0; c = f->n[c].sibling) {
        flame_draw(f, c, depth + 1, x, total);
        x += f->n[c].bytes * f->scale;
    }
}

void prof_write_svg(int fd, const struct prof_snapshot *s)
{
    char mem[4096];
    struct ma_buf b = { mem, 0, sizeof mem, fd };
    struct symcache c;
    if (symcache_init(&c, s) != 0) {
        ma_warn("cannot map memory to name the profile's frames");
        return;
    }
    struct flame f = { NULL, 1, 1, &b, 0.0, 1 };
    for (size_t i = 0; i < s->nstacks; i++)
        f.cap += s->stacks[i]->depth;
    size_t bytes = MA_ALIGN_UP(f.cap * sizeof(struct node), MA_PAGE_SIZE);
    f.n = os_map(bytes);
    if (f.n == NULL) {
        symcache_drop(&c);
        ma_warn("cannot map memory for the flame graph");
        return;
    }
    for (size_t i = 0; i < s->nstacks; i++) {
        const struct prof_stack *st = s->stacks[i];
        if (st->est_live_bytes < 0.5)
            continue;
        uint32_t at = 0;
        f.n[0].bytes += st->est_live_bytes;
        for (unsigned k = st->depth; k-- > 0;) {
            at = flame_child(&f, at, symcache_get(&c, st->frames[k]));
            f.n[at].bytes += st->est_live_bytes;
        }
        if (st->depth + 1 > f.rows)
            f.rows = st->depth + 1;
    }
    double total = f.n[0].bytes;
    f.scale = total > 0 ? (double)(SVG_WIDTH - 2 * SVG_PAD) / total : 0.0;
    unsigned height = SVG_TOP + f.rows * SVG_ROW + SVG_PAD;
    buf_str(&b, "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"");
    buf_u64(&b, SVG_WIDTH);
    buf_str(&b, "\" height=\"");
    buf_u64(&b, height);
    buf_str(&b, "\" viewBox=\"0 0 ");
    buf_u64(&b, SVG_WIDTH);
    buf_str(&b, " ");
    buf_u64(&b, height);
    buf_str(&b, "\" xmlns=\"http://www.w3.org/2000/svg\">\n"
                "<style>text{font-family:Verdana,sans-serif;font-size:11px;fill:#000}"
                "rect:hover{stroke:#000;stroke-width:0.5}</style>\n"
                "<rect width=\"100%\" height=\"100%\" fill=\"#fdfdf5\"/>\n"
                "<text x=\"10\" y=\"20\" style=\"font-size:15px\">memalloc heap profile: live bytes by call stack</text>\n"
                "<text x=\"10\" y=\"34\">");
    buf_u64(&b, (uint64_t)(total + 0.5));
    buf_str(&b, " bytes live (estimated from one sample per ");
    buf_u64(&b, s->rate);
    buf_str(&b, " bytes allocated); width is bytes, callers below callees; hover for figures</text>\n");
    if (total > 0)
        flame_draw(&f, 0, 0, SVG_PAD, total);
    buf_str(&b, "</svg>\n");
    buf_flush(&b);
    os_unmap(f.n, bytes);
    symcache_drop(&c);
}

/* ---- the exit report ---- */

/* Stacks by estimated live bytes, most first (shell sort: no recursion, no
 * memory, and a few thousand stacks at most in practice). */
static void sort_by_live(struct prof_stack **a, size_t n)
{
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && a[j - gap]->est_live_bytes < a[j]->est_live_bytes; j -= gap) {
                struct prof_stack *t = a[j];
                a[j] = a[j - gap];
                a[j - gap] = t;
            }
}

#define LEAK_FRAMES 8

void prof_print_leaks(struct ma_buf *b, unsigned top)
{
    struct prof_snapshot s;
    if (prof_snapshot_take(&s) != 0)
        return;
    sort_by_live(s.stacks, s.nstacks);
    double total = 0.0;
    size_t sites = 0;
    for (size_t i = 0; i < s.nstacks; i++)
        if (s.stacks[i]->live_count) {
            total += s.stacks[i]->est_live_bytes;
            sites++;
        }
    buf_str(b, "still allocated, by call stack (estimated from one sample per ");
    buf_u64(b, s.rate);
    buf_str(b, " bytes): ");
    buf_u64(b, (uint64_t)(total + 0.5));
    buf_str(b, " bytes from ");
    buf_u64(b, sites);
    buf_str(b, sites == 1 ? " stack\n" : " stacks\n");
    for (size_t i = 0; i < s.nstacks && i < top; i++) {
        const struct prof_stack *st = s.stacks[i];
        if (st->live_count == 0)
            break;
        buf_str(b, "  ");
        buf_u64w(b, (uint64_t)(st->est_live_bytes + 0.5), 12);
        buf_str(b, " bytes in ");
        buf_u64(b, (uint64_t)(st->est_live_count + 0.5));
        buf_str(b, " blocks: ");
        for (unsigned f = 0; f < st->depth && f < LEAK_FRAMES; f++) {
            if (f)
                buf_str(b, " < ");
            prof_symbol(b, st->frames[f]);
        }
        if (st->depth > LEAK_FRAMES)
            buf_str(b, " < ...");
        buf_str(b, "\n");
    }
    prof_snapshot_drop(&s);
}
