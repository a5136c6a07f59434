/*
 * base.h - the macros every floor shares: symbol visibility, branch hints,
 * the payload alignment and the largest request. Includes nothing of
 * memalloc's; nothing here allocates.
 */
#ifndef MA_BASE_H
#define MA_BASE_H

#include <stddef.h>
#include <stdint.h>

/* Every internal function shared between files is hidden: the library
 * exports only the public API and the standard names. */
#define MA_HIDDEN __attribute__((visibility("hidden")))
#define MA_COLD __attribute__((noinline, cold))
#define MA_NORETURN __attribute__((noreturn))
#define ma_likely(x) __builtin_expect(!!(x), 1)
#define ma_unlikely(x) __builtin_expect(!!(x), 0)

/* Every payload is aligned to this; every block size is a multiple of it. */
#define MA_ALIGN 16u
#define MA_ALIGN_UP(n, a) (((n) + ((a) - 1)) & ~((size_t)(a) - 1))

/* Largest request we try to serve: anything above cannot be mapped anyway
 * on a 47-bit address space, and staying far below SIZE_MAX keeps every size
 * computation (header + alignment + rounding) free of overflow. */
#define MA_MAX_REQUEST ((size_t)1 << 46)

#define MA_PAGE_SIZE ((size_t)4096)

#endif /* MA_BASE_H */
