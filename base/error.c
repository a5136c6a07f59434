/*
 * error.c - messages without allocation: a small formatter over caller
 * buffers, one-line warnings, and the fatal path that reports heap misuse
 * and aborts. Never uses stdio (which may allocate, or hold locks the
 * crashing thread already holds).
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "os.h"

void buf_flush(struct ma_buf *b)
{
    if (b->fd >= 0 && b->len > 0)
        os_write(b->fd, b->p, b->len);
    if (b->fd >= 0)
        b->len = 0;
}

static void buf_putc(struct ma_buf *b, char c)
{
    if (b->len == b->cap) {
        if (b->fd < 0)
            return;
        buf_flush(b);
    }
    b->p[b->len++] = c;
}

void buf_str(struct ma_buf *b, const char *s)
{
    while (*s)
        buf_putc(b, *s++);
}

void buf_u64w(struct ma_buf *b, uint64_t v, unsigned width)
{
    char tmp[24];
    unsigned n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (width > n) {
        buf_putc(b, ' ');
        width--;
    }
    while (n)
        buf_putc(b, tmp[--n]);
}

void buf_u64(struct ma_buf *b, uint64_t v)
{
    buf_u64w(b, v, 0);
}

void buf_hex(struct ma_buf *b, uint64_t v)
{
    char tmp[16];
    unsigned n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf_str(b, "0x");
    while (n)
        buf_putc(b, tmp[--n]);
}

void ma_warn(const char *msg)
{
    char mem[256];
    struct ma_buf b = { mem, 0, sizeof mem - 1, -1 };
    buf_str(&b, "memalloc: ");
    buf_str(&b, msg);
    b.p[b.len++] = '\n';
    os_write(2, b.p, b.len);
}

void ma_fatal(const char *fn, const char *what, const void *ptr)
{
    char mem[256];
    struct ma_buf b = { mem, 0, sizeof mem - 1, -1 };
    buf_str(&b, "memalloc: ");
    buf_str(&b, fn);
    buf_str(&b, "(): ");
    buf_str(&b, what);
    if (ptr != NULL) {
        buf_str(&b, " at ");
        buf_hex(&b, (uintptr_t)ptr);
    }
    b.p[b.len++] = '\n';
    os_write(2, b.p, b.len);
    abort();
}
