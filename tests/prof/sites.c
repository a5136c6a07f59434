/*
 * sites.c - a program with known allocation sites, for the heap profiler's
 * tests (tests/prof/run.sh). Run under LD_PRELOAD=libmemalloc.so with
 * MEMALLOC_PROF=1; linked with -rdynamic so dladdr names its functions.
 *
 *   alloc_a   keeps 64 MiB in 1 KiB blocks
 *   alloc_b   keeps 16 MiB in 64 KiB blocks
 *   churn_c   allocates 1 GiB in 4 KiB blocks, keeping nothing
 *   leak_d    leaks 4 MiB in 512-byte blocks (never freed)
 *
 * Modes (argv[1]):
 *   sites     the four sites, then prints "done" (the exit files and report
 *             come from memalloc)
 *   threads   8 threads, each running thread_site_<i> (2 MiB in 256-byte
 *             blocks, kept), while main waits
 *   fork      alloc_a in the parent, then a child runs leak_d and exits;
 *             both write MEMALLOC_PROF_FILE with %p
 *   dump PATH 4 threads allocate and free in a loop while main calls
 *             ma_prof_dump(PATH) 20 times; prints "dumps=N"
 *   dumpret PATH  prints "ret=R errno=E" of ma_prof_dump(PATH)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memalloc.h"

#define KEEP __attribute__((noinline, used))

static void *volatile sink;
void **kept_a, **kept_b; /* global: the compiler cannot drop the blocks */

KEEP void alloc_a(void)
{
    size_t n = (64u << 20) / 1024;
    kept_a = calloc(n, sizeof *kept_a);
    for (size_t i = 0; i < n; i++) {
        kept_a[i] = malloc(1024);
        memset(kept_a[i], 1, 16);
    }
}

KEEP void alloc_b(void)
{
    size_t n = (16u << 20) / 65536;
    kept_b = calloc(n, sizeof *kept_b);
    for (size_t i = 0; i < n; i++)
        kept_b[i] = malloc(65536);
}

KEEP void churn_c(void)
{
    size_t n = (1024u << 20) / 4096;
    for (size_t i = 0; i < n; i++) {
        void *p = malloc(4096);
        sink = p;
        free(p);
    }
}

KEEP void leak_d(void)
{
    for (size_t i = 0; i < (4u << 20) / 512; i++) {
        sink = malloc(512);
        memset(sink, 2, 8);
    }
}

/* 8 distinct functions so each thread's stacks are told apart. */
#define THREAD_SITE(i)                                                                        \
    KEEP void *thread_site_##i(void *arg)                                                     \
    {                                                                                         \
        (void)arg;                                                                            \
        void **keep = malloc(sizeof(void *) * 8192);                                          \
        for (int k = 0; k < 8192; k++)                                                        \
            keep[k] = malloc(256);                                                            \
        return keep;                                                                          \
    }
THREAD_SITE(0) THREAD_SITE(1) THREAD_SITE(2) THREAD_SITE(3)
THREAD_SITE(4) THREAD_SITE(5) THREAD_SITE(6) THREAD_SITE(7)

static void *(*const thread_sites[8])(void *) = {
    thread_site_0, thread_site_1, thread_site_2, thread_site_3,
    thread_site_4, thread_site_5, thread_site_6, thread_site_7,
};

static volatile int stop;

KEEP void *dump_churn(void *arg)
{
    (void)arg;
    void *ring[64] = { 0 };
    unsigned long i = 0;
    while (!stop) {
        free(ring[i % 64]);
        ring[i % 64] = malloc(16 + (i * 37) % 3000);
        i++;
    }
    for (int k = 0; k < 64; k++)
        free(ring[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "sites";
    if (strcmp(mode, "sites") == 0) {
        alloc_a();
        alloc_b();
        churn_c();
        leak_d();
        printf("done\n");
        return 0;
    }
    if (strcmp(mode, "threads") == 0) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
            pthread_create(&t[i], NULL, thread_sites[i], NULL);
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        printf("done\n");
        return 0;
    }
    if (strcmp(mode, "fork") == 0) {
        alloc_a();
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            leak_d();
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        printf("child=%d status=%d\n", (int)pid, st);
        return 0;
    }
    if (strcmp(mode, "dump") == 0 && argc > 2) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, dump_churn, NULL);
        alloc_b();
        int ok = 0;
        for (int i = 0; i < 20; i++)
            ok += ma_prof_dump(argv[2]) == 0;
        stop = 1;
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        printf("dumps=%d\n", ok);
        return 0;
    }
    if (strcmp(mode, "dumpret") == 0 && argc > 2) {
        errno = 0;
        int r = ma_prof_dump(argv[2]);
        printf("ret=%d errno=%d\n", r, errno);
        return 0;
    }
    fprintf(stderr, "usage: sites [sites|threads|fork|dump PATH|dumpret PATH]\n");
    return 2;
}
