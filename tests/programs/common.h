/*
 * common.h - helpers shared by the stress programs in tests/programs/.
 *
 * The programs run unchanged on the system allocator and under
 * LD_PRELOAD=libmemalloc.so, so they only use the standard allocation
 * names; memalloc's own checker is reached through dlsym when it is there.
 * Failure messages go through write(2) from a stack buffer, so they work in
 * a forked child, a signal handler or while the heap is suspect.
 */
#ifndef PROGRAMS_COMMON_H
#define PROGRAMS_COMMON_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The program's name, set by main before anything can fail. */
static const char *prog_name = "program";

static void prog_vsay(const char *fmt, va_list ap)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s[%d]: ", prog_name, (int)getpid());
    if (n < 0)
        n = 0;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    (void)!write(2, buf, len);
}

static void prog_say(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void prog_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    prog_vsay(fmt, ap);
    va_end(ap);
}

/* Reports a failure and ends the process at once (no atexit, no flush). */
static void prog_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn, unused));
static void prog_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    prog_vsay(fmt, ap);
    va_end(ap);
    _exit(1);
}

/* ---- deterministic random numbers ---- */

/* xorshift64*: one private state per thread, never zero. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t rng_seed(uint64_t a, uint64_t b)
{
    uint64_t s = a * 0x9E3779B97F4A7C15ULL + b * 0xBF58476D1CE4E5B9ULL + 1;
    return s ? s : 1;
}

/* ---- patterned blocks ---- */

/* The byte at offset i of a block with tag t: different tags and offsets
 * give different bytes, so a block moved, overlapped or reused too early
 * is caught by pattern_check. */
static inline unsigned char pattern_byte(uint64_t tag, size_t i)
{
    uint64_t x = tag ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 29;
    return (unsigned char)(x ^ (x >> 8) ^ (tag >> 32));
}

/* Bytes between two pattern bytes in a block of n bytes: every byte of a
 * small block, every 16th of a medium one, every 64th above 4 KiB (plus the
 * last byte of each): enough to catch overlap and reuse, cheap enough for
 * gigabytes, and every page is still written. */
static inline size_t pattern_step(size_t n)
{
    return n <= 256 ? 1 : n <= 4096 ? 16 : 64;
}

/* Fills the n bytes at p with the pattern of `tag` (see pattern_step). */
static void pattern_fill(void *p, size_t n, uint64_t tag) __attribute__((unused));
static void pattern_fill(void *p, size_t n, uint64_t tag)
{
    unsigned char *b = p;
    size_t step = pattern_step(n);
    for (size_t i = 0; i < n; i += step)
        b[i] = pattern_byte(tag, i);
    if (n > 0)
        b[n - 1] = pattern_byte(tag, n - 1);
}

/* Returns 1 when the first `upto` bytes of a block of n bytes filled by
 * pattern_fill(p, n, tag) still hold their pattern (the stride is the one
 * pattern_fill used for n bytes). */
static int pattern_prefix_ok(const void *p, size_t n, size_t upto, uint64_t tag) __attribute__((unused));
static int pattern_prefix_ok(const void *p, size_t n, size_t upto, uint64_t tag)
{
    const unsigned char *b = p;
    size_t step = pattern_step(n);
    if (upto > n)
        upto = n;
    for (size_t i = 0; i < upto; i += step)
        if (b[i] != pattern_byte(tag, i))
            return 0;
    return upto < n || n == 0 || b[n - 1] == pattern_byte(tag, n - 1);
}

/* Returns 1 when the n bytes at p still hold the pattern of `tag`. */
static inline int pattern_ok(const void *p, size_t n, uint64_t tag)
{
    return pattern_prefix_ok(p, n, n, tag);
}

/* ---- verified blocks ---- */

/* A test block: this header, then `size` bytes of the pattern of `tag`. */
struct blk {
    uint64_t tag;
    size_t size;                /* bytes after the header */
};

#define BLK_MAX_SIZE ((size_t)64 << 20)

/* Allocates a block with malloc (or calloc when `zeroed`, checking the
 * zeroes), and fills it. Dies on NULL or a misaligned result. */
static struct blk *blk_new(size_t size, uint64_t tag, int zeroed) __attribute__((unused));
static struct blk *blk_new(size_t size, uint64_t tag, int zeroed)
{
    struct blk *b = zeroed ? calloc(1, sizeof *b + size) : malloc(sizeof *b + size);
    if (b == NULL)
        prog_die("allocation of %zu bytes failed", sizeof *b + size);
    if (((uintptr_t)b & 15) != 0)
        prog_die("block %p not 16-byte aligned", (void *)b);
    if (zeroed) {
        const unsigned char *z = (const unsigned char *)(b + 1);
        size_t step = size > 4096 ? 61 : 1;
        for (size_t i = 0; i < size; i += step)
            if (z[i] != 0)
                prog_die("calloc block not zeroed at offset %zu", i);
    }
    b->tag = tag;
    b->size = size;
    pattern_fill(b + 1, size, tag);
    return b;
}

static void blk_verify(const struct blk *b, const char *what) __attribute__((unused));
static void blk_verify(const struct blk *b, const char *what)
{
    if (b->size > BLK_MAX_SIZE || !pattern_ok(b + 1, b->size, b->tag))
        prog_die("%s: block %p (tag %llx, size %zu) corrupted", what, (const void *)b,
                 (unsigned long long)b->tag, b->size);
}

/* Verifies and frees a block. */
static void blk_free(struct blk *b, const char *what) __attribute__((unused));
static void blk_free(struct blk *b, const char *what)
{
    blk_verify(b, what);
    free(b);
}

/* Verifies a block, reallocs it to `size` bytes, checks the part realloc
 * must keep, and refills it with the pattern of `tag`. */
static struct blk *blk_resize(struct blk *b, size_t size, uint64_t tag) __attribute__((unused));
static struct blk *blk_resize(struct blk *b, size_t size, uint64_t tag)
{
    blk_verify(b, "before realloc");
    size_t oldsize = b->size;
    size_t keep = oldsize < size ? oldsize : size;
    uint64_t old = b->tag;
    struct blk *n = realloc(b, sizeof *n + size);
    if (n == NULL)
        prog_die("realloc to %zu bytes failed", size);
    if (((uintptr_t)n & 15) != 0)
        prog_die("realloc result %p not 16-byte aligned", (void *)n);
    if (n->tag != old || !pattern_prefix_ok(n + 1, oldsize, keep, old))
        prog_die("realloc from %zu to %zu bytes lost the contents", oldsize, size);
    n->tag = tag;
    n->size = size;
    pattern_fill(n + 1, size, tag);
    return n;
}

/* ---- memory figures ---- */

/* Resident set size of this process in bytes (/proc/self/statm, second
 * field), read without allocating. Returns 0 if it cannot be read. */
static size_t rss_bytes(void) __attribute__((unused));
static size_t rss_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long size = 0, resident = 0;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static inline double mib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* ---- memalloc's checker, when memalloc is the allocator ---- */

/* Runs ma_check() if the process's allocator exports it (memalloc, linked
 * or preloaded) and returns 1; returns 0 on any other allocator. ma_check
 * aborts with a "memalloc: ma_check(): ..." line on a broken heap. */
static int heap_check(void) __attribute__((unused));
static int heap_check(void)
{
    int (*check)(void);
    *(void **)&check = dlsym(RTLD_DEFAULT, "ma_check");
    if (check == NULL)
        return 0;
    if (check() != 0)
        prog_die("ma_check() returned non-zero");
    return 1;
}

/* MEMALLOC_EXPECT=1 (set by run.sh for the preloaded runs) makes a program
 * refuse to pass when memalloc is not really the allocator. */
static void expect_allocator(void) __attribute__((unused));
static void expect_allocator(void)
{
    const char *e = getenv("MEMALLOC_EXPECT");
    if (e != NULL && strcmp(e, "1") == 0 && dlsym(RTLD_DEFAULT, "ma_check") == NULL)
        prog_die("MEMALLOC_EXPECT=1 but ma_check is not exported: memalloc is not loaded");
}

static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* PROGRAMS_COMMON_H */
