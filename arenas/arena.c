/*
 * arena.c - an arena's life: setting it up, the per-process key that marks
 * cached blocks, and the lock with its bookkeeping. The work happens in the
 * engine's other files: block.c (allocation and release), chunk.c,
 * purge.c, quick.c and remote.c; check.c verifies it all.
 */
#include <string.h>
#include <sys/auxv.h>

#include "engine.h"

uintptr_t ma_block_key = CACHED_KEY;
uintptr_t ma_link_key = (CACHED_KEY << 4) | LINK_KEY_LOW;
/* Zero: decoded with any key it has LINK_KEY_LOW as its low bits. */
const uintptr_t ma_list_end[2] __attribute__((aligned(MA_ALIGN))) = {0, 0};

void arena_key_init(void)
{
    uintptr_t k = CACHED_KEY;
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r != NULL) {
        uintptr_t x;
        memcpy(&x, r + 8, sizeof x); /* bytes 0-7 are the stack canary's */
        k ^= x;
    }
    ma_block_key = k != 0 ? k : CACHED_KEY;
    /* The link key is drawn on its own: the block key sits in every freed
     * block's second word, where a use-after-free read can see it. */
    uintptr_t l;
    if (os_random(&l, sizeof l) != 0)
        l = ((uintptr_t)os_now_ms() * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)&l >> 4) * 0xbf58476d1ce4e5b9ull;
    ma_link_key = (l & ~(uintptr_t)(MA_ALIGN - 1)) | LINK_KEY_LOW;
}

void arena_init(struct arena *a, unsigned index, size_t chunk_size, unsigned reserve, unsigned retain_ms)
{
    memset(a, 0, sizeof *a);
    a->index = index;
    a->chunk_size = chunk_size;
    a->reserve = reserve;
    a->retain_ms = retain_ms;
    a->remote_drain_at = REMOTE_DRAIN_BOUND;
    for (unsigned c = 0; c < REMOTE_STACKS; c++)
        a->remote_top[c] = REMOTE_EMPTY;
}

int arena_lock(struct arena *a)
{
    int waited = ma_lock_acquire(&a->lock);
    if (ma_unlikely(waited)) {
        /* Read without the lock by threads choosing a less contended
         * arena, hence the atomic store. */
        __atomic_store_n(&a->lock_waits, a->lock_waits + 1, __ATOMIC_RELAXED);
    }
    a->lock_acquires++;
    if (ma_unlikely((a->lock_acquires & (DECAY_CHECK_OPS - 1)) == 0))
        arena_decay(a);
    return waited;
}

void arena_unlock(struct arena *a)
{
    ma_lock_release(&a->lock);
}
