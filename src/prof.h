/*
 * prof.h - the sampling heap profiler (MEMALLOC_PROF=1): on average one
 * allocation per MEMALLOC_PROF_SAMPLE bytes is sampled; its call stack and
 * size are kept until it is freed, and written as a pprof heap profile,
 * folded stacks or an SVG flame graph.
 *
 * The allocation paths count bytes down in the thread cache (tcache.h,
 * prof_left); when the count runs out the allocation is made as usual, its
 * block is flagged (B_SAMPLED in a chunk block's head, `sampled` in a large
 * header, so free's fast path passes it to the slow path) and prof_record
 * is called; a flagged block that is freed or moved calls prof_forget.
 */
#ifndef MA_PROF_H
#define MA_PROF_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

/* set once at init: 1 when MEMALLOC_PROF=1 */
MA_HIDDEN extern int prof_on;
/* At process init, after config_load: reads the options, maps its tables. */
MA_HIDDEN void prof_init(void);
/* Bytes until this thread's next sample: exponentially distributed with
 * mean MEMALLOC_PROF_SAMPLE; INT64_MAX when profiling is off. */
MA_HIDDEN int64_t prof_next_interval(void);
/* Block p (n bytes asked) was sampled: records it with its call stack. An
 * allocation made meanwhile (by the unwinder) is never itself sampled. */
MA_HIDDEN void prof_record(void *p, size_t n);
/* p, a sampled block, is being freed or moved: drops it from the live set. */
MA_HIDDEN void prof_forget(void *p);
/* At exit: writes MEMALLOC_PROF_FILE and MEMALLOC_PROF_SVG if set. */
MA_HIDDEN void prof_exit(void);

#endif /* MA_PROF_H */
