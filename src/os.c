/*
 * os.c - the only file that calls the kernel for memory, CPU count and
 * output. It never allocates, never uses stdio, and keeps errno as the
 * kernel set it on failure so callers can report ENOMEM faithfully.
 */
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "os.h"

void *os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *os_map_aligned(size_t size, size_t align)
{
    if (align <= MA_PAGE_SIZE)
        return os_map(size);
    /* Over-map by the alignment and cut off both ends: costs address space
     * only, never resident memory. */
    size_t span = size + align;
    if (span < size)
        return NULL;
    char *raw = os_map(span);
    if (raw == NULL)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + size, tail);
    return (void *)start;
}

void os_unmap(void *p, size_t size)
{
    if (munmap(p, size) != 0)
        ma_fatal("munmap", "kernel refused to unmap a region (corrupted size?)", p);
}

void *os_remap(void *p, size_t old_size, size_t new_size, size_t align)
{
    void *q = mremap(p, old_size, new_size, 0);
    if (q != MAP_FAILED)
        return q;
    /* Cannot grow in place: reserve an aligned destination and let the
     * kernel move the pages there (no copy), replacing the reservation. */
    void *dst = os_map_aligned(new_size, align);
    if (dst == NULL)
        return NULL;
    q = mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    if (q == MAP_FAILED) {
        int saved = errno;
        munmap(dst, new_size);
        errno = saved;
        return NULL;
    }
    return q;
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
