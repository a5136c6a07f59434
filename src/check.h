/*
 * check.h - check mode (MEMALLOC_CHECK=1, the debug build's default):
 * canaries after every block, verified on free and realloc, and a full
 * ma_check every MEMALLOC_CHECK_EVERY operations.
 */
#ifndef MA_CHECK_H
#define MA_CHECK_H

#include <stddef.h>

#include "../base/base.h"

/* In check mode a request of n bytes gets n + CANARY_EXTRA: at least one
 * canary byte after the caller's bytes, and the requested size (keyed) in the
 * last 8 usable bytes, so free and realloc can verify every byte between. */
#define CANARY_EXTRA 9u

/* Writes the canary after the n bytes asked for, in a block of `usable`. */
MA_HIDDEN void canary_set(void *p, size_t n, size_t usable);
/* Returns the size the caller asked for; aborts naming fn on an
 * overwritten canary. */
MA_HIDDEN size_t canary_verify(const void *p, size_t usable, const char *fn);
/* Counts an operation; runs ma_check every MEMALLOC_CHECK_EVERY of them. */
MA_HIDDEN void check_tick(void);

#endif /* MA_CHECK_H */
