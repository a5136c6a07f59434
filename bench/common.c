/*
 * common.c - clock, stamps, failure and result line for the benchmarks.
 *
 * Linked into every bench program. Never defines an allocation function:
 * the allocator under test is whatever malloc the process resolves to.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *bench_name = "bench";

void bench_init(const char *name)
{
    bench_name = name;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static pthread_mutex_t span_lock = PTHREAD_MUTEX_INITIALIZER;
static double span_first = -1, span_last = -1; /* guarded by span_lock */

void bench_span_begin(void)
{
    double t = bench_now();
    pthread_mutex_lock(&span_lock);
    if (span_first < 0 || t < span_first)
        span_first = t;
    pthread_mutex_unlock(&span_lock);
}

void bench_span_end(void)
{
    double t = bench_now();
    pthread_mutex_lock(&span_lock);
    if (t > span_last)
        span_last = t;
    pthread_mutex_unlock(&span_lock);
}

double bench_span_secs(void)
{
    pthread_mutex_lock(&span_lock);
    double secs = span_last - span_first;
    pthread_mutex_unlock(&span_lock);
    return secs;
}

void bench_fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "BENCH-ERROR %s: %s\n", bench_name, msg);
    fflush(stderr);
    _exit(2); /* no atexit handlers: the heap may be in any state */
}

void *bench_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL)
        bench_fail("malloc(%zu) returned NULL (errno %d)", size, errno);
    if (((uintptr_t)p & 7) != 0)
        bench_fail("malloc(%zu) returned misaligned %p", size, p);
    return p;
}

/* ---- stamps ---- */

static inline uint64_t stamp_tag(const void *p, size_t size, uint64_t seed)
{
    return bench_mix((uint64_t)(uintptr_t)p ^ seed) ^ (uint64_t)size;
}

/* Offset of the last aligned word; only meaningful for size >= 16. */
static inline size_t stamp_tail(size_t size)
{
    return (size - 8) & ~(size_t)7;
}

BENCH_OPAQUE void bench_stamp(void *p, size_t size, uint64_t seed)
{
    volatile unsigned char *b = p;
    uint64_t tag = stamp_tag(p, size, seed);
    if (size < 8) {
        for (size_t i = 0; i < size; i++)
            b[i] = (unsigned char)(tag >> (8 * i));
        return;
    }
    *(volatile uint64_t *)b = tag;
    if (size < 16)
        return;
    size_t tail = stamp_tail(size);
    for (size_t off = 4096; off < tail; off += 4096)
        *(volatile uint64_t *)(b + off) = tag + off;
    *(volatile uint64_t *)(b + tail) = ~bench_mix(tag);
}

static void stamp_verify(const void *p, size_t size, uint64_t tag, const char *what)
{
    const volatile unsigned char *b = p;
    if (size < 8) {
        for (size_t i = 0; i < size; i++) {
            if (b[i] != (unsigned char)(tag >> (8 * i)))
                bench_fail("corrupted block %p (%zu bytes, %s): byte %zu is 0x%02x, expected 0x%02x",
                           p, size, what, i, b[i], (unsigned)(unsigned char)(tag >> (8 * i)));
        }
        return;
    }
    uint64_t got = *(const volatile uint64_t *)b;
    if (got != tag)
        bench_fail("corrupted block %p (%zu bytes, %s): first word %016llx, expected %016llx",
                   p, size, what, (unsigned long long)got, (unsigned long long)tag);
    if (size < 16)
        return;
    size_t tail = stamp_tail(size);
    for (size_t off = 4096; off < tail; off += 4096) {
        got = *(const volatile uint64_t *)(b + off);
        if (got != tag + off)
            bench_fail("corrupted block %p (%zu bytes, %s): word at offset %zu is %016llx, expected %016llx",
                       p, size, what, off, (unsigned long long)got,
                       (unsigned long long)(tag + off));
    }
    got = *(const volatile uint64_t *)(b + tail);
    if (got != ~bench_mix(tag))
        bench_fail("corrupted block %p (%zu bytes, %s): last word %016llx, expected %016llx",
                   p, size, what, (unsigned long long)got,
                   (unsigned long long)~bench_mix(tag));
}

BENCH_OPAQUE void bench_check(const void *p, size_t size, uint64_t seed, const char *what)
{
    stamp_verify(p, size, stamp_tag(p, size, seed), what);
}

BENCH_OPAQUE size_t bench_check_any(const void *p, uint64_t seed, size_t min_size,
                                    size_t max_size, const char *what)
{
    uint64_t first = *(const volatile uint64_t *)p;
    uint64_t size = first ^ bench_mix((uint64_t)(uintptr_t)p ^ seed);
    if (size < min_size || size > max_size)
        bench_fail("corrupted block %p (%s): first word %016llx encodes size %llu, outside [%zu, %zu]",
                   p, what, (unsigned long long)first, (unsigned long long)size,
                   min_size, max_size);
    stamp_verify(p, (size_t)size, first, what);
    return (size_t)size;
}

BENCH_OPAQUE void bench_fill(void *p, size_t from, size_t to, uint64_t seed)
{
    unsigned char *b = p;
    size_t i = from;
    for (; i < to && i % 8 != 0; i++)
        b[i] = bench_pattern_byte(seed, i);
    for (; i + 8 <= to; i += 8)
        *(uint64_t *)(b + i) = bench_pattern_word(seed, i / 8);
    for (; i < to; i++)
        b[i] = bench_pattern_byte(seed, i);
}

static void __attribute__((noreturn)) verify_fail(const void *p, size_t size, uint64_t seed,
                                                  const char *what)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < size; i++) {
        if (b[i] != bench_pattern_byte(seed, i))
            bench_fail("corrupted block %p (%zu bytes, %s): byte %zu is 0x%02x, expected 0x%02x",
                       p, size, what, i, b[i], bench_pattern_byte(seed, i));
    }
    bench_fail("corrupted block %p (%zu bytes, %s): mismatch vanished on re-read", p, size, what);
}

BENCH_OPAQUE void bench_verify(const void *p, size_t size, uint64_t seed, const char *what)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        if (*(const uint64_t *)(b + i) != bench_pattern_word(seed, i / 8))
            verify_fail(p, size, seed, what);
    }
    for (; i < size; i++) {
        if (b[i] != bench_pattern_byte(seed, i))
            verify_fail(p, size, seed, what);
    }
}

BENCH_OPAQUE void bench_corrupt(void *p)
{
    volatile unsigned char *b = p;
    b[3] ^= 0x5a;
}

/* ---- reporting ---- */

/* Reads a small /proc file into buf with read(2) (no allocation). */
static int read_proc(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    while (used < size - 1) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    return used > 0 ? 0 : -1;
}

long bench_maxrss_kb(void)
{
    char buf[8192];
    long kb = -1;
    if (read_proc("/proc/self/status", buf, sizeof buf) == 0) {
        const char *line = strstr(buf, "\nVmHWM:");
        if (line != NULL && sscanf(line + 7, "%ld", &kb) == 1)
            return kb;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss;
}

long bench_rss_kb(void)
{
    /* statm: size resident shared text lib data dt, in pages */
    char buf[256];
    long size = 0, resident = -1;
    if (read_proc("/proc/self/statm", buf, sizeof buf) != 0 ||
        sscanf(buf, "%ld %ld", &size, &resident) != 2)
        return -1;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Name of the allocator library mapped into this process, from
 * /proc/self/maps, so the runner can tell a preload that silently failed
 * (ld.so only warns about a missing LD_PRELOAD file) from a real one. */
static const char *mapped_allocator(void)
{
    static const struct { const char *needle, *name; } known[] = {
        { "libmemalloc", "memalloc" },
        { "libjemalloc", "jemalloc" },
        { "libtcmalloc", "tcmalloc" },
        { "libmimalloc", "mimalloc" },
    };
    char line[1024];
    const char *found = "glibc";
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return "unknown";
    while (fgets(line, sizeof line, f) != NULL) {
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            if (strstr(line, known[i].needle) != NULL) {
                found = known[i].name;
                goto done;
            }
        }
    }
done:
    fclose(f);
    return found;
}

void bench_result(int threads, double ops, double secs, const char *extra_fmt, ...)
{
    char extra[1024] = "";
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_SELF, &ru);
    long rss = bench_rss_kb();
    long peak = bench_maxrss_kb();
    if (extra_fmt != NULL) {
        va_list ap;
        va_start(ap, extra_fmt);
        vsnprintf(extra, sizeof extra, extra_fmt, ap);
        va_end(ap);
    }
    const char *lib = mapped_allocator();
    if (secs <= 0)
        secs = 1e-9;
    printf("RESULT bench=%s threads=%d ops=%.0f secs=%.6f ops_per_sec=%.1f%s%s"
           " maxrss_kb=%ld ru_maxrss_kb=%ld rss_kb=%ld minflt=%ld nvcsw=%ld nivcsw=%ld lib=%s\n",
           bench_name, threads, ops, secs, ops / secs, extra[0] ? " " : "", extra,
           peak, ru.ru_maxrss, rss, ru.ru_minflt, ru.ru_nvcsw, ru.ru_nivcsw, lib);
    fflush(stdout);
}

unsigned long long bench_parse(const char *opt, const char *text, int binary)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        bench_fail("bad value '%s' for %s", text, opt);
    unsigned long long unit = 1, k = binary ? 1024 : 1000;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': unit = k; end++; break;
    case 'm': case 'M': unit = k * k; end++; break;
    case 'g': case 'G': unit = k * k * k; end++; break;
    default: bench_fail("bad value '%s' for %s", text, opt);
    }
    if (*end != '\0')
        bench_fail("bad value '%s' for %s", text, opt);
    return v * unit;
}

double bench_parse_secs(const char *opt, const char *text)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v > 0))
        bench_fail("bad duration '%s' for %s", text, opt);
    return v;
}
