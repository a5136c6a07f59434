/*
 * error.h - messages without allocation: a small formatter over caller
 * buffers, one-line warnings, and the fatal report of heap misuse. Output
 * goes through os_write, which calls nothing back.
 */
#ifndef MA_ERROR_H
#define MA_ERROR_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Writes "memalloc: <fn>(): <what> at 0x<ptr>\n" and aborts. */
MA_HIDDEN MA_COLD MA_NORETURN void ma_fatal(const char *fn, const char *what, const void *ptr);
/* Writes "memalloc: <msg>\n" (no abort). */
MA_HIDDEN MA_COLD void ma_warn(const char *msg);

/* A tiny formatter over a caller-owned buffer, for messages and tables that
 * must be produced without allocating. */
struct ma_buf {
    char *p;
    size_t len, cap;
    int fd;          /* flushed here when full; -1 means truncate */
};
MA_HIDDEN void buf_str(struct ma_buf *b, const char *s);
MA_HIDDEN void buf_u64(struct ma_buf *b, uint64_t v);
MA_HIDDEN void buf_u64w(struct ma_buf *b, uint64_t v, unsigned width);
MA_HIDDEN void buf_hex(struct ma_buf *b, uint64_t v);
MA_HIDDEN void buf_flush(struct ma_buf *b);

#endif /* MA_ERROR_H */
