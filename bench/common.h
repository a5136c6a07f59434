/*
 * common.h - helpers shared by the benchmark programs in bench/.
 *
 * Every benchmark calls only the standard allocation names (malloc, free,
 * calloc, realloc), so the same binary measures whichever allocator is
 * loaded with LD_PRELOAD (or glibc's when nothing is). This header gives
 * them one clock, one random generator, one way to stamp and check blocks,
 * one way to fail and one result-line format.
 *
 * Result line (stdout, exactly one per successful run):
 *   RESULT bench=NAME threads=T key=value key=value ...
 * Failure: a line starting with "BENCH-ERROR NAME: " on stderr, exit code 2,
 * and no RESULT line.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__clang__)
#define BENCH_OPAQUE __attribute__((noinline))
#else
/* noipa: gcc may neither inline these nor reason about their bodies across
 * the call, so a malloc/write/check/free sequence can never be folded away. */
#define BENCH_OPAQUE __attribute__((noipa))
#endif

/* ---- clock and random numbers ---- */

/* Monotonic wall-clock time in seconds. */
double bench_now(void);

/* Multi-thread timing: each worker calls bench_span_begin() right after the
 * start barrier and bench_span_end() when its work is done; bench_span_secs()
 * is then the time from the first begin to the last end. Measuring in the
 * workers (not around the barrier in main) keeps a descheduled main thread
 * from shortening the measured time when threads outnumber cores. */
void bench_span_begin(void);
void bench_span_end(void);
double bench_span_secs(void);

/* splitmix64 step: advances *state and returns the next 64 random bits. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi] (hi >= lo). */
static inline size_t bench_range(uint64_t *state, size_t lo, size_t hi)
{
    return lo + (size_t)(bench_rand(state) % (uint64_t)(hi - lo + 1));
}

/* A 64-bit hash, used to derive block tags from addresses. */
static inline uint64_t bench_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* ---- block stamps ----
 *
 * A stamp writes a tag derived from the block's address, its size and a
 * seed into the block's first word, its last word and one word in every
 * 4 KiB page in between (so every page is really touched and counted in
 * the RSS). Two blocks handed out over each other, a block written by
 * someone else, or a block freed and reused early overwrite a stamp, and the
 * check finds it. A block under 8 bytes holds the tag's low bytes instead
 * (written and read through volatile); bigger ones must be 8-byte aligned. */

/* Stamps the block p of `size` bytes. */
void bench_stamp(void *p, size_t size, uint64_t seed);

/* Checks the stamp of a block whose size the caller knows; on a mismatch
 * fails the benchmark with a message naming `what`. */
void bench_check(const void *p, size_t size, uint64_t seed, const char *what);

/* Checks a stamp whose size the caller does not know (the first word encodes
 * it): returns the size, which must be in [min_size, max_size], or fails. */
size_t bench_check_any(const void *p, uint64_t seed, size_t min_size,
                       size_t max_size, const char *what);

/* Word k (bytes 8k..8k+7) of the fill pattern for `seed`. The pattern
 * depends only on the seed and the position, so a prefix of a filled block
 * is itself a valid filled block (what realloc must preserve). */
static inline uint64_t bench_pattern_word(uint64_t seed, size_t k)
{
    return seed ^ ((uint64_t)k * 0x9e3779b97f4a7c15ULL);
}

/* Byte i of the fill pattern (little-endian bytes of the words). */
static inline unsigned char bench_pattern_byte(uint64_t seed, size_t i)
{
    return (unsigned char)(bench_pattern_word(seed, i / 8) >> ((i % 8) * 8));
}

/* Writes the pattern into bytes [from, to) of the block / verifies bytes
 * [0, size) (used where every byte matters, e.g. realloc must copy all of
 * them). The block must be 8-byte aligned; whole words are written and
 * compared where possible. */
void bench_fill(void *p, size_t from, size_t to, uint64_t seed);
void bench_verify(const void *p, size_t size, uint64_t seed, const char *what);

/* Flips one byte of the block's first word: used by -X to prove the checks
 * work (the run must then fail instead of printing a result). */
void bench_corrupt(void *p);

/* ---- allocation with a check ---- */

/* malloc that fails the benchmark on NULL (so a NULL can never be stamped). */
void *bench_malloc(size_t size);

/* ---- reporting ---- */

/* Sets the benchmark name used by bench_fail and bench_result. */
void bench_init(const char *name);

/* Prints "BENCH-ERROR NAME: message" on stderr and exits with status 2. */
void bench_fail(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* Peak resident set of this process in KiB: VmHWM from /proc/self/status,
 * the high-water mark of this program's own address space. (getrusage's
 * ru_maxrss is not used for this: Linux carries it across execve, so a
 * program started by a big parent, e.g. the Python runner, reports the
 * parent's size when its own is smaller.) Falls back to ru_maxrss. */
long bench_maxrss_kb(void);

/* Current resident set in KiB (from /proc/self/statm). */
long bench_rss_kb(void);

/* Prints the RESULT line: bench, threads, ops, secs, ops_per_sec, then the
 * caller's extra "key=value ..." text (may be NULL), then maxrss_kb (peak,
 * as bench_maxrss_kb), ru_maxrss_kb (getrusage, as is), rss_kb (now),
 * minflt (minor page faults), the voluntary/involuntary context switches and
 * lib= the allocator library found mapped in this process ("glibc" when
 * none of the known ones is). */
void bench_result(int threads, double ops, double secs, const char *extra_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses a positive integer option value with an optional K/M/G suffix
 * (powers of 1000 for counts when `binary` is 0, of 1024 when 1). */
unsigned long long bench_parse(const char *opt, const char *text, int binary);

/* Parses a duration in seconds (may be fractional). */
double bench_parse_secs(const char *opt, const char *text);

#endif /* BENCH_COMMON_H */
