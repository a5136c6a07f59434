/*
 * os.c - the only file that calls the kernel: memory, CPU count, files,
 * output and the lock's sleeps. It never allocates, never uses stdio, calls
 * nothing else of memalloc's, and keeps errno as the kernel set it on
 * failure so callers can report ENOMEM faithfully.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os.h"

/* Bytes memalloc has mapped (chunks, large blocks and its own tables) and
 * the highest that figure reached. atomic. */
static size_t mapped_now, mapped_peak;

static void account(size_t add, size_t sub)
{
    size_t now = __atomic_add_fetch(&mapped_now, add - sub, __ATOMIC_RELAXED);
    size_t peak = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&mapped_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static size_t page_round(size_t n)
{
    return (n + MA_PAGE_SIZE - 1) & ~(MA_PAGE_SIZE - 1);
}

void os_mapped(size_t *now, size_t *peak)
{
    *now = __atomic_load_n(&mapped_now, __ATOMIC_RELAXED);
    *peak = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
}

void *os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    account(page_round(size), 0);
    return p;
}

/* Maps `size` bytes aligned to `align`, with `below` bytes (whole pages)
 * mapped just under them: over-map by the alignment and cut off both ends,
 * which costs address space only, never resident memory. Both cuts fall on
 * page boundaries. */
static void *map_aligned(size_t size, size_t align, size_t below)
{
    size = page_round(size);
    size_t span = size + align + below;
    if (span < size)
        return NULL;
    char *raw = os_map(span);
    if (raw == NULL)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + below + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - below - (uintptr_t)raw;
    size_t tail = span - head - below - size;
    /* Trimming an exact sub-range of our own mapping cannot fail. */
    if (head)
        (void)os_unmap(raw, head);
    if (tail)
        (void)os_unmap((char *)start + size, tail);
    return (void *)start;
}

void *os_map_aligned(size_t size, size_t align)
{
    return align <= MA_PAGE_SIZE ? os_map(size) : map_aligned(size, align, 0);
}

void *os_map_chunk(size_t size)
{
    void *p = map_aligned(size, size, MA_PAGE_SIZE);
    if (p != NULL)
        account(0, MA_PAGE_SIZE); /* the page below is not counted as mapped */
    return p;
}

int os_unmap_chunk(void *p, size_t size)
{
    if (os_unmap((char *)p - MA_PAGE_SIZE, size + MA_PAGE_SIZE) != 0)
        return -1;
    account(MA_PAGE_SIZE, 0);
    return 0;
}

int os_unmap(void *p, size_t size)
{
    if (munmap(p, size) != 0)
        return -1;
    account(0, page_round(size));
    return 0;
}

int os_resize(void *p, size_t old_size, size_t new_size)
{
    int saved = errno;
    if (mremap(p, old_size, new_size, 0) == MAP_FAILED) {
        errno = saved;
        return -1;
    }
    account(page_round(new_size), page_round(old_size));
    return 0;
}

int os_move(void *src, size_t size, void *dst)
{
    int saved = errno;
    if (mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED) {
        account(0, page_round(size)); /* dst was counted when it was mapped */
        return 0;
    }
    /* Some kernels unmap the destination before they check the source: map
     * fresh pages there again. Where the range is still mapped (kernels that
     * check first), MAP_FIXED_NOREPLACE fails and changes nothing; a kernel
     * that ignores the flag and maps elsewhere gets that mapping back. */
    void *q = mmap(dst, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q != MAP_FAILED && q != dst)
        (void)munmap(q, size);
    errno = saved;
    return -1;
}

void os_discard(void *p, size_t size)
{
    int saved = errno;
    (void)madvise(p, size, MADV_DONTNEED);
    errno = saved;
}

unsigned os_ncpus(void)
{
    cpu_set_t set;
    /* sched_getaffinity fills a stack set: no allocation, unlike some
     * sysconf paths, and it honours taskset/cgroup cpusets. */
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (unsigned)n;
    }
    return 1;
}

int os_open_write(const char *path)
{
    int saved = errno;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    errno = saved;
    return fd;
}

int os_create(const char *path, int *err)
{
    int saved = errno;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && err != NULL)
        *err = errno;
    errno = saved;
    return fd;
}

int os_open_read(const char *path)
{
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    errno = saved;
    return fd;
}

long os_read(int fd, void *buf, size_t n)
{
    int saved = errno;
    ssize_t r;
    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    errno = saved;
    return (long)r;
}

long os_readlink(const char *path, char *buf, size_t cap)
{
    int saved = errno;
    ssize_t n = cap > 0 ? readlink(path, buf, cap - 1) : -1;
    errno = saved;
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (long)n;
}

int os_getpid(void)
{
    return (int)getpid();
}

uint64_t os_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int os_random(void *buf, size_t n)
{
    int saved = errno;
    long got = syscall(SYS_getrandom, buf, n, 1 /* GRND_NONBLOCK */);
    errno = saved;
    return got == (long)n ? 0 : -1;
}

void os_sleep_ms(unsigned ms)
{
    int saved = errno;
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    errno = saved;
}

/* errno is kept: a futex call fails with EAGAIN whenever the word changed
 * first, and a caller of malloc must not see that. */
void os_futex_wait(uint32_t *word, uint32_t val)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
    errno = saved;
}

void os_futex_wake(uint32_t *word)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

int os_dup(int fd)
{
    int saved = errno;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    errno = saved;
    return copy;
}

void os_close(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

void os_write(int fd, const char *s, size_t n)
{
    int saved = errno;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        s += w;
        n -= (size_t)w;
    }
    errno = saved;
}
