/*
 * os.h - the seam between memalloc and the kernel. os.c is the only file
 * that makes system calls; it never allocates, never uses stdio and calls
 * nothing else of memalloc's (error reporting writes through os_write).
 */
#ifndef MA_OS_H
#define MA_OS_H

#include <stddef.h>
#include <stdint.h>
#include "base.h"

/* Maps `size` bytes of zeroed read-write memory; NULL on failure (errno kept
 * as the kernel set it, normally ENOMEM). */
MA_HIDDEN void *os_map(size_t size);
/* Maps `size` bytes aligned to `align` (a power of two >= page size). */
MA_HIDDEN void *os_map_aligned(size_t size, size_t align);
/* A chunk of `size` bytes (a power of two) aligned to its size, with the
 * page below it mapped as well: free()'s fast path reads the 8 bytes before
 * any pointer the pagemap places in a chunk, and for a pointer at the
 * chunk's very start those are in that page (zeros, which send it to the
 * slow path and its message, instead of a fault). That page is address
 * space only and is not counted in the mapped totals. */
MA_HIDDEN void *os_map_chunk(size_t size);
/* Unmaps a chunk from os_map_chunk; 0, or -1 if the kernel refuses. */
MA_HIDDEN int os_unmap_chunk(void *p, size_t size);
/* Unmaps; 0, or -1 if the kernel refuses (a corrupted size): the caller
 * reports it. */
MA_HIDDEN int os_unmap(void *p, size_t size);
/* Resizes the mapping [p, p + old_size) in place (one kernel mapping: it
 * must not span pages moved in from elsewhere); 0, or -1 if the kernel
 * cannot (the mapping intact, errno unchanged). */
MA_HIDDEN int os_resize(void *p, size_t old_size, size_t new_size);
/* Moves the pages of [src, src + size), which lie in one kernel mapping, to
 * dst, inside a mapping of ours, replacing the pages there (the kernel
 * moves page tables: no copy, no zeroing, no faults); src is then
 * unmapped. 0, or -1 if the kernel refuses (errno unchanged): src is intact
 * and [dst, dst + size) is still mapped (fresh zero pages if the kernel had
 * unmapped it). */
MA_HIDDEN int os_move(void *src, size_t size, void *dst);
/* Tells the kernel the pages in [p, p + size) may be dropped (contents become
 * zero on next touch). p and size must be page aligned. */
MA_HIDDEN void os_discard(void *p, size_t size);
/* Number of CPUs this process may run on (at least 1). */
MA_HIDDEN unsigned os_ncpus(void);
/* Bytes mapped through this file now, and the most ever. */
MA_HIDDEN void os_mapped(size_t *now, size_t *peak);
/* Opens (creates, truncates) a file for writing; -1 on failure. */
MA_HIDDEN int os_open_write(const char *path);
MA_HIDDEN void os_close(int fd);
/* Like os_open_write, but on failure stores the kernel's reason in *err
 * (errno itself is kept), for callers that report or return it. */
MA_HIDDEN int os_create(const char *path, int *err);
/* Opens a file for reading; -1 on failure. */
MA_HIDDEN int os_open_read(const char *path);
/* read(2), retrying on EINTR: bytes read, 0 at the end, -1 on error. */
MA_HIDDEN long os_read(int fd, void *buf, size_t n);
/* readlink(2) into buf[cap], NUL-terminated (cut if too long); the
 * length, or -1. */
MA_HIDDEN long os_readlink(const char *path, char *buf, size_t cap);
/* The calling process's id (a system call: the child of a fork sees its own). */
MA_HIDDEN int os_getpid(void);
/* Milliseconds of a coarse monotonic clock (a vDSO read, no system call). */
MA_HIDDEN uint64_t os_now_ms(void);
/* Fills buf with n random bytes from the kernel; 0, or -1 if it has none
 * to give. */
MA_HIDDEN int os_random(void *buf, size_t n);
/* Sleeps for ms milliseconds (less if a signal interrupts it). */
MA_HIDDEN void os_sleep_ms(unsigned ms);
/* A close-on-exec duplicate of fd (numbered 3 or above), or -1. */
MA_HIDDEN int os_dup(int fd);
/* Sleeps while *word == val (or until woken, or spuriously); and wakes one
 * thread sleeping on word. The futex calls behind struct ma_lock (lock.h). */
MA_HIDDEN void os_futex_wait(uint32_t *word, uint32_t val);
MA_HIDDEN void os_futex_wake(uint32_t *word);
/* write(2) all of it, retrying on EINTR; errors are ignored. */
MA_HIDDEN void os_write(int fd, const char *s, size_t n);

#endif /* MA_OS_H */
