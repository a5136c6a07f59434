/*
 * malloc-large.cc - large buffers replaced in a ring (after the
 * malloc-large test of the mimalloc-bench suite), written from its
 * description.
 *
 * A ring of 20 slots holds buffers of random size in [5, 25] MiB. Each of
 * N steps replaces the oldest buffer: the old one is checked and deleted,
 * a new one is allocated value-initialised (`new char[n]()`, zero-filled
 * as `std::vector<char>(n)` would be: the program writes every byte, so
 * every page is faulted in whatever the allocator does), then stamped.
 * What it measures is how an allocator serves and recycles multi-MiB
 * blocks: fresh mappings each time (page faults and zeroing by the kernel
 * plus the program's own writes) or reused ones.
 *
 * Single-threaded: -t is accepted so the suite's command line is uniform,
 * but must be 1.
 *
 * Usage: malloc-large [-n allocations] [-l live] [-m min] [-M max] [-t 1] [-X]
 *   defaults: -n 2000 -l 20 -m 5M -M 25M
 * ops = N allocations (each one deleted later).
 */
extern "C" {
#include "common.h"
}

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {

const uint64_t ML_SEED = 0x6d616c6c6f632d4cULL;

/* Checks that a value-initialised buffer is still zero where the stamp did
 * not write: one word in the middle of every page, read through volatile.
 * The stamp's last word lies in [size - 15, size - 8], so the words checked
 * stop 24 bytes before the end. */
void check_zero(const char *p, size_t size)
{
    for (size_t off = 2048; off + 24 <= size; off += 4096) {
        uint64_t v = *(const volatile uint64_t *)(p + off);
        if (v != 0)
            bench_fail("corrupted buffer %p (%zu bytes): word at offset %zu is %016llx, expected 0",
                       (const void *)p, size, off, (unsigned long long)v);
    }
}

} // namespace

int main(int argc, char **argv)
{
    unsigned long long steps = 2000;
    size_t live = 20, min_size = 5 << 20, max_size = 25 << 20;
    bool corrupt = false;
    int opt;
    bench_init("malloc-large");
    while ((opt = getopt(argc, argv, "n:l:m:M:t:X")) != -1) {
        switch (opt) {
        case 'n': steps = bench_parse("-n", optarg, 0); break;
        case 'l': live = (size_t)bench_parse("-l", optarg, 0); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 't':
            if (bench_parse("-t", optarg, 0) != 1)
                bench_fail("malloc-large is single-threaded: -t must be 1");
            break;
        case 'X': corrupt = true; break;
        default:
            fprintf(stderr, "usage: %s [-n allocations] [-l live] [-m min] [-M max] [-t 1] [-X]\n",
                    argv[0]);
            return 2;
        }
    }
    if (live < 1 || steps < 1 || min_size < 4096 || max_size < min_size)
        bench_fail("need live >= 1, allocations >= 1, 4 KiB <= min <= max");

    char **ring = new char *[live]();
    size_t *sizes = new size_t[live]();
    uint64_t rng = ML_SEED;
    double t0 = bench_now();
    for (unsigned long long k = 0; k < steps; k++) {
        size_t slot = (size_t)(k % live);
        if (ring[slot] != nullptr) {
            bench_check(ring[slot], sizes[slot], ML_SEED, "malloc-large ring");
            check_zero(ring[slot], sizes[slot]);
            delete[] ring[slot];
        }
        size_t size = bench_range(&rng, min_size, max_size);
        char *p = new char[size]();
        if (((uintptr_t)p & 7) != 0)
            bench_fail("new char[%zu]() returned misaligned %p", size, (void *)p);
        bench_stamp(p, size, ML_SEED);
        ring[slot] = p;
        sizes[slot] = size;
        if (corrupt && k == steps / 2)
            bench_corrupt(p);
    }
    for (size_t slot = 0; slot < live; slot++) {
        if (ring[slot] == nullptr)
            continue;
        bench_check(ring[slot], sizes[slot], ML_SEED, "malloc-large final");
        check_zero(ring[slot], sizes[slot]);
        delete[] ring[slot];
    }
    double secs = bench_now() - t0;
    delete[] ring;
    delete[] sizes;
    bench_result(1, (double)steps, secs, "live=%zu min=%zu max=%zu", live, min_size, max_size);
    return 0;
}
