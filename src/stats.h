/*
 * stats.h - the exit report (stats.c, heapmap.c): statistics, leaks and the
 * heap map that MEMALLOC_STATS and MEMALLOC_HEAP_MAP ask for.
 */
#ifndef MA_STATS_H
#define MA_STATS_H

#include "../base/base.h"
#include "../base/error.h"

/* Writes what MEMALLOC_STATS and MEMALLOC_HEAP_MAP ask for. */
MA_HIDDEN void stats_exit_report(void);
/* Writes "pid N, program NAME" (json: "pid":N,"program":"NAME", with the
 * trailing comma) for the headers of reports. */
MA_HIDDEN void stats_buf_process(struct ma_buf *b, int json);
/* At init: keeps a private copy of stderr for the exit report, which some
 * programs (GNU coreutils) close before exiting. */
MA_HIDDEN void stats_init(void);

#endif /* MA_STATS_H */
