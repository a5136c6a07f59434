/*
 * testutil.h - helpers shared by the Criterion suites: byte patterns to
 * verify block contents, the calling thread's arena figures, and running
 * the probe program in a child process with a chosen environment.
 */
#ifndef MA_TESTUTIL_H
#define MA_TESTUTIL_H

#ifdef MA_CRSHIM
#include "crshim.h"
#else
#include <criterion/criterion.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memalloc.h"

static inline unsigned char pat(unsigned seed, size_t i)
{
    return (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

static inline void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = pat(seed, i);
}

/* 1 if p holds the pattern `seed` over n bytes. */
static inline int intact(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat(seed, i))
            return 0;
    return 1;
}

/* 1 when MEMALLOC_CHECK canaries are on (the debug build's default): then
 * usable size is exactly what was asked. */
static inline int check_mode(void)
{
    void *p = ma_malloc(1);
    size_t u = ma_usable_size(p);
    ma_free(p);
    return u == 1;
}

/* Bytes a block costs beyond the request: the 8-byte header, plus 9 bytes
 * of canary and stored size in check mode. */
static inline size_t overhead(void)
{
    return check_mode() ? 17 : 8;
}

/* The block size that serves an n-byte request. */
static inline size_t block_for(size_t n)
{
    size_t s = (n + overhead() + 15) & ~(size_t)15;
    return s < 32 ? 32 : s;
}

/* Suites that watch the arena itself (exact layouts, exact counters) turn
 * the calling thread's cache off first: `TestSuite(name, .init = cache_off)`. */
static inline void cache_off(void)
{
    ma_thread_cache(0);
}

static inline ma_arena_stats_t arena_stats(unsigned idx)
{
    ma_arena_stats_t s;
    cr_assert_eq(ma_arena_stats_get(idx, &s), 0);
    return s;
}

static inline ma_arena_stats_t my_stats(void)
{
    return arena_stats(ma_thread_arena());
}

/* Runs `call` (an expression using the file descriptor `fd`) and collects
 * what it writes into out. */
#define CAPTURE_FD(out, cap, call)                                              \
    do {                                                                        \
        int fds_[2];                                                            \
        cr_assert_eq(pipe(fds_), 0);                                            \
        int fd = fds_[1];                                                       \
        call;                                                                   \
        close(fds_[1]);                                                         \
        size_t len_ = 0;                                                        \
        ssize_t r_;                                                             \
        while ((r_ = read(fds_[0], (out) + len_, (cap) - 1 - len_)) > 0)        \
            len_ += (size_t)r_;                                                 \
        (out)[len_] = '\0';                                                     \
        close(fds_[0]);                                                         \
        cr_assert_gt(len_, 0, "nothing written");                              \
    } while (0)

#ifdef PROBE
/* Runs the probe with argv and exactly the environment env (NULL-ended),
 * collects stdout+stderr into out, and returns the wait status. */
static inline int run_probe(char *const argv[], char *const env[], char *out, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        char *args[16] = { (char *)PROBE };
        for (int i = 0; argv[i] != NULL && i < 14; i++)
            args[i + 1] = argv[i];
        execve(PROBE, args, env);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}
#endif

#endif
