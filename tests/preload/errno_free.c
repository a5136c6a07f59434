/*
 * errno_free.c - the standard allocation functions' edge cases: errno,
 * overflow, alignment, usable size, first use in a new thread.
 *
 * Portable checks hold for any correct allocator (glibc, jemalloc, ...).
 * With MEMALLOC_EXPECT=1 (run.sh sets it when the preloaded library is
 * memalloc) it also checks that the process really runs on memalloc (ma_malloc
 * is visible and every standard name resolves into the same object) and the
 * points where memalloc's documented contract is stricter than POSIX, so the
 * test cannot pass silently on the system allocator.
 *
 * All calls go through volatile function pointers so the compiler can
 * neither fold nor elide them (it knows what malloc(SIZE_MAX) "returns").
 *
 * Prints one line on success (the same line on every allocator); each failed
 * check writes a "errno_free: FAIL ..." line to stderr; exit status 1 then.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- opaque entry points ---- */

static void *(*volatile f_malloc)(size_t) = malloc;
static void (*volatile f_free)(void *) = free;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void *(*volatile f_reallocarray)(void *, size_t, size_t) = reallocarray;
static int (*volatile f_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*volatile f_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile f_memalign)(size_t, size_t) = memalign;
static void *(*volatile f_valloc)(size_t) = valloc;
static void *(*volatile f_pvalloc)(size_t) = pvalloc;
static size_t (*volatile f_usable)(void *) = malloc_usable_size;

static volatile size_t v_max = SIZE_MAX;   /* opaque huge sizes */

/* ---- reporting ---- */

static int failures;
static int checks;
static int strict;   /* MEMALLOC_EXPECT=1 */

#define CHECK(cond, ...) check_((cond) != 0, __LINE__, __VA_ARGS__)

static void __attribute__((format(printf, 3, 4)))
check_(int ok, int line, const char *fmt, ...)
{
    checks++;
    if (ok)
        return;
    failures++;
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(buf, sizeof buf, "errno_free: FAIL (line %d): ", line);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof buf - 1)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    (void)!write(2, buf, (size_t)n);
}

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + i * 13 + (i >> 9));
}

static int intact(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 13 + (i >> 9)))
            return 0;
    return 1;
}

static int aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* ---- which functions does the allocator provide? ---- */

/* True if `name` resolves into the same object as malloc. An allocator that
 * lacks, say, pvalloc (jemalloc) leaves glibc's, whose blocks its free()
 * cannot take: such functions are skipped here, except that with
 * MEMALLOC_EXPECT=1 test_is_memalloc() requires memalloc to provide all. */
static int provided(const char *name)
{
    Dl_info a, b;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    void *f = dlsym(RTLD_DEFAULT, name);
    return m != NULL && f != NULL && dladdr(m, &a) != 0 && dladdr(f, &b) != 0 &&
           a.dli_fbase == b.dli_fbase;
}

/* ---- free() preserves errno ---- */

static void test_free_errno(void)
{
    static const size_t sizes[] = { 0, 1, 24, 100, 1000, 5000, 70000, 300000, 10u << 20 };
    static const int values[] = { 0, ENOMEM, EINVAL, 12345 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t j = 0; j < sizeof values / sizeof *values; j++) {
            void *p = f_malloc(sizes[i]);
            CHECK(p != NULL, "malloc(%zu) returned NULL", sizes[i]);
            fill(p, sizes[i], 1);
            errno = values[j];
            f_free(p);
            CHECK(errno == values[j], "free of a %zu-byte block changed errno %d to %d",
                  sizes[i], values[j], errno);
        }
    errno = 777;
    f_free(NULL);
    CHECK(errno == 777, "free(NULL) changed errno");

    /* many frees in a row: caches flush, chunks empty and get unmapped */
    enum { N = 20000 };
    void **v = f_malloc(N * sizeof *v);
    CHECK(v != NULL, "malloc of the pointer array failed");
    if (v == NULL)
        return;
    for (int i = 0; i < N; i++) {
        v[i] = f_malloc((size_t)(16 + (i % 61) * 24 + (i % 997 == 0 ? 200000 : 0)));
        CHECK(v[i] != NULL, "malloc #%d returned NULL", i);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        errno = 4242;
        f_free(v[i]);
        if (errno != 4242)
            bad++;
    }
    CHECK(bad == 0, "%d of %d frees in a burst changed errno", bad, N);
    /* blocks from calloc, realloc and aligned allocations too */
    void *p = f_calloc(100, 7);
    void *q = f_realloc(f_malloc(10), 5000);
    void *r = f_aligned_alloc(4096, 300);
    CHECK(p && q && r, "calloc/realloc/aligned_alloc returned NULL");
    errno = 99;
    f_free(p);
    f_free(q);
    f_free(r);
    CHECK(errno == 99, "free of calloc/realloc/aligned_alloc blocks changed errno");
    f_free(v);
}

/* free() of a block allocated by another thread (the remote path) */
static void *remote_free_thread(void *arg)
{
    void **blocks = arg;
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        errno = 31337;
        f_free(blocks[i]);
        if (errno != 31337)
            bad++;
    }
    return (void *)(intptr_t)bad;
}

static void test_remote_free_errno(void)
{
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = f_malloc((size_t)(16 + (i % 40) * 16));
        CHECK(blocks[i] != NULL, "malloc returned NULL");
    }
    pthread_t t;
    void *bad = NULL;
    CHECK(pthread_create(&t, NULL, remote_free_thread, blocks) == 0, "pthread_create");
    pthread_join(t, &bad);
    CHECK(bad == NULL, "%ld cross-thread frees changed errno", (long)(intptr_t)bad);
}

/* ---- impossible sizes ---- */

static void test_huge(void)
{
    const size_t huge[] = {
        v_max, v_max - 1, v_max - 15, v_max - 16, v_max - 4095, v_max - 4096,
        v_max - (1u << 20), v_max / 2 + 1, v_max / 2, (size_t)PTRDIFF_MAX + 1,
        (v_max >> 1),
    };
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        errno = 0;
        void *p = f_malloc(huge[i]);
        CHECK(p == NULL && errno == ENOMEM, "malloc(%#zx) = %p, errno %d (want NULL, ENOMEM)",
              huge[i], p, errno);
        if (p != NULL)
            f_free(p);
        errno = 0;
        p = f_calloc(1, huge[i]);
        CHECK(p == NULL && errno == ENOMEM, "calloc(1, %#zx) = %p, errno %d", huge[i], p, errno);
        errno = 0;
        p = f_aligned_alloc(4096, huge[i]);
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(4096, %#zx) = %p, errno %d",
              huge[i], p, errno);
        void *out = &out;
        int rc = f_posix_memalign(&out, 64, huge[i]);
        CHECK(rc == ENOMEM && out == &out, "posix_memalign(64, %#zx) = %d", huge[i], rc);
        if (provided("memalign")) {
            errno = 0;
            p = f_memalign(1u << 20, huge[i]);
            /* memalign is not POSIX: jemalloc leaves errno alone */
            CHECK(p == NULL && (errno == ENOMEM || !strict), "memalign(1M, %#zx) = %p, errno %d",
                  huge[i], p, errno);
        }
    }
    /* count * size overflows */
    const size_t pairs[][2] = {
        { v_max / 2 + 1, 2 }, { 2, v_max / 2 + 1 }, { v_max, v_max },
        { (size_t)1 << 32, (size_t)1 << 32 }, { 3, v_max / 3 + 1 }, { v_max / 16 + 1, 16 },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        errno = 0;
        void *p = f_calloc(pairs[i][0], pairs[i][1]);
        CHECK(p == NULL && errno == ENOMEM, "calloc(%#zx, %#zx) = %p, errno %d",
              pairs[i][0], pairs[i][1], p, errno);

        void *old = f_malloc(200);
        CHECK(old != NULL, "malloc(200)");
        fill(old, 200, 5);
        errno = 0;
        p = f_reallocarray(old, pairs[i][0], pairs[i][1]);
        CHECK(p == NULL && errno == ENOMEM, "reallocarray(p, %#zx, %#zx) = %p, errno %d",
              pairs[i][0], pairs[i][1], p, errno);
        CHECK(intact(old, 200, 5), "failed reallocarray damaged the old block");
        f_free(p == NULL ? old : p);
    }
    /* realloc to an impossible size keeps the old block, small and large */
    const size_t olds[] = { 40, 3000, 400000 };
    for (size_t i = 0; i < 3; i++) {
        void *old = f_malloc(olds[i]);
        CHECK(old != NULL, "malloc(%zu)", olds[i]);
        fill(old, olds[i], 9);
        for (size_t j = 0; j < 4; j++) {
            errno = 0;
            void *p = f_realloc(old, huge[j * 2]);
            /* POSIX wants ENOMEM, but jemalloc leaves errno alone here */
            CHECK(p == NULL && (errno == ENOMEM || !strict),
                  "realloc(%zu-byte block, %#zx) = %p, errno %d", olds[i], huge[j * 2], p, errno);
            if (p != NULL)
                old = p;
        }
        CHECK(intact(old, olds[i], 9), "failed realloc damaged the old %zu-byte block", olds[i]);
        void *p = f_reallocarray(old, 2, olds[i]);   /* a valid reallocarray */
        CHECK(p != NULL && intact(p, olds[i], 9), "reallocarray(p, 2, %zu) lost the contents",
              olds[i]);
        f_free(p != NULL ? p : old);
    }
}

/* ---- alignment ---- */

static void test_alignment(void)
{
    long page = sysconf(_SC_PAGESIZE);
    const size_t bad[] = { 0, 3, 4, 12, 24, 48, 100, 4097 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *out = &out;
        errno = 1234;
        int rc = f_posix_memalign(&out, bad[i], 8);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) returned %d, want EINVAL", bad[i], rc);
        CHECK(out == &out, "posix_memalign(align %zu) changed *out on failure", bad[i]);
        if (strict)
            CHECK(errno == 1234, "posix_memalign(align %zu) changed errno to %d", bad[i], errno);
    }
    const size_t bad_aa[] = { 3, 5, 24, 100, 4097 };
    for (size_t i = 0; i < sizeof bad_aa / sizeof *bad_aa; i++) {
        errno = 0;
        void *p = f_aligned_alloc(bad_aa[i], 8);
        /* glibc before 2.38 rounds a bad alignment up instead of failing */
        if (strict || p == NULL)
            CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu, 8) = %p, errno %d, want NULL EINVAL",
                  bad_aa[i], p, errno);
        if (p != NULL)
            f_free(p);
    }
    for (size_t a = 1; a <= ((size_t)16 << 20); a <<= 1) {
        /* small, exact, odd, and above the usual mmap threshold (not a
         * whole number of pages: the large path must round it) */
        size_t sizes[] = { 1, a, 3 * a + 5 < 40000 ? 3 * a + 5 : 40000, 300001 };
        for (int k = 0; k < 4; k++) {
            size_t n = sizes[k];
            void *p = f_aligned_alloc(a, n);
            /* C only promises `a`; memalloc promises at least 16 */
            CHECK(p != NULL && aligned(p, strict && a < 16 ? 16 : a), "aligned_alloc(%zu, %zu) = %p",
                  a, n, p);
            if (p != NULL) {
                CHECK(f_usable(p) >= n, "aligned_alloc(%zu, %zu): usable size %zu", a, n, f_usable(p));
                fill(p, n, 3);
            }
            void *m = NULL;
            if (provided("memalign")) {
                m = f_memalign(a, n);
                CHECK(m != NULL && aligned(m, a), "memalign(%zu, %zu) = %p", a, n, m);
            }
            if (m != NULL)
                fill(m, n, 4);
            void *q = NULL;
            if (a >= sizeof(void *)) {
                int rc = f_posix_memalign(&q, a, n);
                CHECK(rc == 0 && q != NULL && aligned(q, a), "posix_memalign(%zu, %zu) = %d, %p",
                      a, n, rc, q);
                if (q != NULL)
                    fill(q, n, 5);
            }
            CHECK(p == NULL || intact(p, n, 3), "aligned block %zu/%zu overwritten", a, n);
            CHECK(m == NULL || intact(m, n, 4), "memalign block %zu/%zu overwritten", a, n);
            f_free(p);
            f_free(m);
            f_free(q);
        }
    }
    const size_t vs[] = { 1, 100, 4096, 5000, 200000 };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        if (!provided("valloc") || !provided("pvalloc"))
            break;
        void *v = f_valloc(vs[i]);
        CHECK(v != NULL && aligned(v, (size_t)page), "valloc(%zu) = %p", vs[i], v);
        if (v != NULL) {
            CHECK(f_usable(v) >= vs[i], "valloc(%zu): usable size %zu", vs[i], f_usable(v));
            fill(v, vs[i], 6);
        }
        void *pv = f_pvalloc(vs[i]);
        size_t rounded = (vs[i] + (size_t)page - 1) & ~((size_t)page - 1);
        CHECK(pv != NULL && aligned(pv, (size_t)page), "pvalloc(%zu) = %p", vs[i], pv);
        if (pv != NULL) {
            CHECK(f_usable(pv) >= rounded, "pvalloc(%zu): usable size %zu < %zu", vs[i],
                  f_usable(pv), rounded);
            fill(pv, rounded, 7);   /* pvalloc gives whole pages */
        }
        CHECK(v == NULL || intact(v, vs[i], 6), "valloc block overwritten");
        f_free(v);
        f_free(pv);
    }
}

/* ---- sizes, zeroing, realloc ---- */

static void test_basics(void)
{
    void *a = f_malloc(0), *b = f_malloc(0);
    CHECK(a != NULL && b != NULL && a != b, "malloc(0) twice gave %p and %p", a, b);
    f_free(a);
    f_free(b);
    CHECK(f_usable(NULL) == 0, "malloc_usable_size(NULL) != 0");

    /* usable size: at least what was asked, and all of it is writable */
    void *keep[64];
    for (int i = 0; i < 64; i++) {
        size_t n = (size_t)i * i * 37 + (size_t)i;
        if (i == 63)
            n = 1u << 20;
        keep[i] = f_malloc(n);
        /* jemalloc gives 8-byte alignment below 16 bytes; memalloc 16 always */
        CHECK(keep[i] != NULL && aligned(keep[i], n >= 16 || strict ? 16 : 8), "malloc(%zu) = %p",
              n, keep[i]);
        size_t u = keep[i] != NULL ? f_usable(keep[i]) : 0;
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        if (keep[i] != NULL)
            fill(keep[i], u, (unsigned)i);
    }
    for (int i = 0; i < 64; i++) {
        CHECK(intact(keep[i], f_usable(keep[i]), (unsigned)i),
              "writing the usable size of one block damaged block %d", i);
        f_free(keep[i]);
    }

    /* calloc really zeroes, also memory just dirtied and freed */
    const size_t cs[] = { 8, 100, 1000, 20000, 300000, 3u << 20 };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        for (int round = 0; round < 3; round++) {
            void *d = f_malloc(cs[i]);
            CHECK(d != NULL, "malloc(%zu)", cs[i]);
            if (d != NULL)
                memset(d, 0xA5, cs[i]);
            f_free(d);
            unsigned char *z = f_calloc(cs[i] / 4, 4);
            CHECK(z != NULL, "calloc(%zu, 4)", cs[i] / 4);
            size_t nz = 0;
            for (size_t k = 0; z != NULL && k < cs[i] / 4 * 4; k++)
                nz += z[k] != 0;
            CHECK(nz == 0, "calloc(%zu, 4) returned %zu non-zero bytes", cs[i] / 4, nz);
            f_free(z);
        }
    }

    /* realloc keeps contents through every size path */
    const size_t steps[] = { 1, 16, 17, 100, 1000, 4000, 70000, 300000, 2u << 20, 5000, 30, 600000, 8 };
    unsigned char *p = f_realloc(NULL, 10);
    CHECK(p != NULL, "realloc(NULL, 10)");
    if (p == NULL)
        return;
    fill(p, 10, 11);
    size_t cur = 10;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        size_t n = steps[i];
        unsigned char *q = f_realloc(p, n);
        CHECK(q != NULL, "realloc(%zu -> %zu) returned NULL", cur, n);
        if (q == NULL)
            break;
        size_t keep_n = cur < n ? cur : n;
        CHECK(intact(q, keep_n, 11), "realloc(%zu -> %zu) lost contents", cur, n);
        CHECK(f_usable(q) >= n, "realloc(%zu -> %zu): usable size %zu", cur, n, f_usable(q));
        fill(q, n, 11);
        p = q;
        cur = n;
    }
    /* realloc(p, 0): POSIX allows NULL (glibc frees p); memalloc documents a
     * fresh minimum-size block. Either way nothing may leak or crash. */
    void *z = f_realloc(p, 0);
    if (strict)
        CHECK(z != NULL, "realloc(p, 0) returned NULL (memalloc documents a fresh block)");
    f_free(z);

    /* blocks allocated inside libc (strdup, getline, open_memstream) come
     * from the same malloc and are freed by our free */
    char *s = strdup("interposition");
    CHECK(s != NULL && strcmp(s, "interposition") == 0, "strdup");
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fmemopen((void *)"first line\nsecond\n", 18, "r");
    CHECK(f != NULL, "fmemopen");
    if (f != NULL) {
        CHECK(getline(&line, &cap, f) == 11 && strcmp(line, "first line\n") == 0, "getline");
        fclose(f);
    }
    char *ms = NULL;
    size_t mlen = 0;
    FILE *m = open_memstream(&ms, &mlen);
    CHECK(m != NULL, "open_memstream");
    if (m != NULL) {
        for (int i = 0; i < 2000; i++)
            fprintf(m, "%d,", i);
        fclose(m);
        CHECK(mlen > 8000 && ms != NULL && strncmp(ms, "0,1,2,", 6) == 0, "open_memstream contents");
    }
    errno = 55;
    f_free(s);
    f_free(line);
    f_free(ms);
    CHECK(errno == 55, "free of libc-allocated blocks changed errno");
}

/* ---- first use in a new thread ---- */

static void *first_malloc(void *arg)
{
    (void)arg;
    char *p = f_malloc(24);   /* nothing else ran in this thread before */
    if (p == NULL)
        return (void *)1;
    memcpy(p, "hello from a new thread", 24);
    int ok = strcmp(p, "hello from a new thread") == 0 && aligned(p, 16);
    errno = 8;
    f_free(p);
    return (void *)(intptr_t)(ok && errno == 8 ? 0 : 2);
}

static void *first_calloc(void *arg)
{
    (void)arg;
    unsigned char *p = f_calloc(1000, 3);
    if (p == NULL)
        return (void *)1;
    for (int i = 0; i < 3000; i++)
        if (p[i] != 0)
            return (void *)2;
    f_free(p);
    return NULL;
}

static void *first_memalign(void *arg)
{
    (void)arg;
    void *p = NULL;
    if (f_posix_memalign(&p, 256, 1000) != 0 || !aligned(p, 256))
        return (void *)1;
    f_free(p);
    return NULL;
}

static void *first_free(void *arg)
{
    /* this thread's first allocator call is free() of a foreign block */
    errno = 17;
    f_free(arg);
    if (errno != 17)
        return (void *)1;
    void *p = f_malloc(100);
    if (p == NULL)
        return (void *)2;
    f_free(p);
    return NULL;
}

static void *first_realloc(void *arg)
{
    /* first call: realloc of a block the main thread allocated */
    char *p = f_realloc(arg, 100000);
    if (p == NULL || strcmp(p, "moved by another thread") != 0)
        return (void *)1;
    f_free(p);
    return NULL;
}

static void *first_huge(void *arg)
{
    (void)arg;
    errno = 0;
    void *p = f_malloc(v_max);
    return (void *)(intptr_t)(p == NULL && errno == ENOMEM ? 0 : 1);
}

static void test_new_threads(void)
{
    struct {
        const char *name;
        void *(*fn)(void *);
    } cases[] = {
        { "malloc", first_malloc }, { "calloc", first_calloc },
        { "posix_memalign", first_memalign }, { "free", first_free },
        { "realloc", first_realloc }, { "malloc(SIZE_MAX)", first_huge },
    };
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            void *arg = NULL;
            if (cases[i].fn == first_free)
                arg = f_malloc(64);
            if (cases[i].fn == first_realloc) {
                arg = f_malloc(40);
                if (arg != NULL)
                    strcpy(arg, "moved by another thread");
            }
            pthread_t t;
            void *res = (void *)-1;
            int rc = pthread_create(&t, NULL, cases[i].fn, arg);
            CHECK(rc == 0, "pthread_create: %d", rc);
            if (rc == 0)
                pthread_join(t, &res);
            CHECK(res == NULL, "first %s in a new thread failed (code %ld)", cases[i].name,
                  (long)(intptr_t)res);
        }
}

/* ---- is this really memalloc? ---- */

static void test_is_memalloc(void)
{
    void *ma = dlsym(RTLD_DEFAULT, "ma_malloc");
    CHECK(ma != NULL, "MEMALLOC_EXPECT=1 but ma_malloc is not visible: library not preloaded?");
    if (ma == NULL)
        return;
    Dl_info mi;
    CHECK(dladdr(ma, &mi) != 0 && mi.dli_fname != NULL, "dladdr(ma_malloc)");
    static const char *const names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info si;
        int found = sym != NULL && dladdr(sym, &si) != 0;
        CHECK(found && si.dli_fbase == mi.dli_fbase, "%s resolves to %s, not to memalloc (%s)",
              names[i], found ? si.dli_fname : "nothing", mi.dli_fname);
    }
    /* the pointers this program calls are memalloc's too */
    CHECK(dlsym(RTLD_DEFAULT, "malloc") == (void *)f_malloc, "the program's malloc is not the global one");

    /* a block from malloc (and from inside libc) is a memalloc block */
    size_t (*ma_usable)(const void *) = (size_t (*)(const void *))dlsym(RTLD_DEFAULT, "ma_usable_size");
    CHECK(ma_usable != NULL, "ma_usable_size is not visible");
    void *(*ma_malloc)(size_t) = (void *(*)(size_t))ma;
    if (ma_usable != NULL) {
        void *p = f_malloc(100);
        CHECK(p != NULL && ma_usable(p) == f_usable(p) && ma_usable(p) >= 100,
              "ma_usable_size and malloc_usable_size disagree");
        f_free(p);
        char *s = strdup("libc's own malloc call");
        CHECK(s != NULL && ma_usable(s) >= 23, "ma_usable_size(strdup(...))");
        free(s);
        void *q = ma_malloc(50);   /* and memalloc's blocks go to free() */
        CHECK(q != NULL && f_usable(q) >= 50, "malloc_usable_size(ma_malloc(50))");
        f_free(q);
    }
}

int main(void)
{
    const char *e = getenv("MEMALLOC_EXPECT");
    strict = e != NULL && strcmp(e, "1") == 0;

    if (strict)
        test_is_memalloc();
    test_free_errno();
    test_remote_free_errno();
    test_huge();
    test_alignment();
    test_basics();
    test_new_threads();

    if (failures != 0) {
        fprintf(stderr, "errno_free: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("errno_free: all checks passed\n");
    return 0;
}
