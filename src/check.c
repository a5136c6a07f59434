/*
 * check.c - check mode's canaries and periodic full checks. Only the entry
 * points call it, and only when MEMALLOC_CHECK is on.
 */
#include <string.h>

#include "memalloc.h"
#include "check.h"
#include "config.h"
#include "../base/error.h"

#define CANARY_BYTE 0xcb
#define CANARY_KEY ((size_t)0x9e3779b97f4a7c15ull)

static uint64_t check_ops; /* atomic: operations since start */

void canary_set(void *p, size_t n, size_t usable)
{
    memset((char *)p + n, CANARY_BYTE, usable - 8 - n);
    size_t key = n ^ CANARY_KEY ^ (uintptr_t)p;
    memcpy((char *)p + usable - 8, &key, 8);
}

size_t canary_verify(const void *p, size_t usable, const char *fn)
{
    size_t key;
    memcpy(&key, (const char *)p + usable - 8, 8);
    size_t n = key ^ CANARY_KEY ^ (uintptr_t)p;
    if (usable < CANARY_EXTRA || n > usable - CANARY_EXTRA)
        ma_fatal(fn, "heap buffer overflow detected (canary size overwritten)", p);
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = n; i < usable - 8; i++)
        if (c[i] != CANARY_BYTE)
            ma_fatal(fn, "heap buffer overflow detected (canary overwritten)", p);
    return n;
}

void check_tick(void)
{
    uint64_t n = __atomic_add_fetch(&check_ops, 1, __ATOMIC_RELAXED);
    if (n % ma_cfg.check_every == 0)
        ma_check();
}
