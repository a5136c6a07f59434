/*
 * hoard-threadtest.cc - Hoard's threadtest as published (Berger et al.,
 * "Hoard: a scalable memory allocator for multithreaded applications",
 * ASPLOS 2000), written from its description, in C++ as the original is.
 *
 * T threads each run I iterations; in each iteration a thread creates N/T
 * objects of a small 8-byte class with `new`, then deletes them all. The
 * N objects are split among the threads, so the total work is fixed and a
 * scalable allocator should finish T times faster on T cores. No object
 * crosses threads. (The original can also spin W units of busy work
 * between operations; the suite runs it with W = 0, so this version has
 * no W.)
 *
 * Every object's two fields are set by its constructor from the thread,
 * the iteration and the object's index, and read back through a volatile
 * pointer before the object is deleted; a mismatch fails the run.
 *
 * Usage: hoard-threadtest [-t threads] [-i iterations] [-n objects] [-X]
 *   -n  N, the objects of one iteration across all threads (default 10000)
 *   -X  corrupt one object on purpose (the run must fail: proves the checks)
 * ops = I * N new/delete pairs, whatever T is.
 */
extern "C" {
#include "common.h"
}

#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {

/* The object: 8 bytes, like the original's two-int class. */
class Foo {
public:
    Foo(uint32_t a, uint32_t b) : x(a), y(b) {}
    uint32_t x, y;
};
static_assert(sizeof(Foo) == 8, "Foo must be 8 bytes");

/* The fields object i of iteration `it` on thread `id` must hold. */
inline uint32_t foo_x(unsigned id, unsigned long long it, size_t i)
{
    return (uint32_t)bench_mix(((uint64_t)id << 48) ^ (it << 24) ^ i);
}

inline uint32_t foo_y(uint32_t x)
{
    return ~x * 0x9e3779b9u;
}

struct worker {
    pthread_t thread;
    unsigned id;
    size_t objects;
};

unsigned long long iterations = 2000;
bool corrupt = false;
pthread_barrier_t start_barrier;

void *worker_main(void *arg)
{
    struct worker *w = static_cast<struct worker *>(arg);
    Foo **objs = new Foo *[w->objects];
    pthread_barrier_wait(&start_barrier);
    bench_span_begin();
    for (unsigned long long it = 0; it < iterations; it++) {
        for (size_t i = 0; i < w->objects; i++) {
            uint32_t x = foo_x(w->id, it, i);
            objs[i] = new Foo(x, foo_y(x));
        }
        if (corrupt && w->id == 0 && it == iterations / 2)
            bench_corrupt(objs[w->objects / 2]);
        for (size_t i = 0; i < w->objects; i++) {
            const volatile Foo *f = objs[i];
            uint32_t x = foo_x(w->id, it, i);
            if (f->x != x || f->y != foo_y(x))
                bench_fail("corrupted object %p (thread %u, iteration %llu, index %zu): "
                           "%08x %08x, expected %08x %08x", (void *)objs[i], w->id, it, i,
                           (unsigned)f->x, (unsigned)f->y, (unsigned)x, (unsigned)foo_y(x));
            delete objs[i];
        }
    }
    bench_span_end();
    delete[] objs;
    return nullptr;
}

} // namespace

int main(int argc, char **argv)
{
    unsigned threads = 1;
    size_t objects = 10000;
    int opt;
    bench_init("hoard-threadtest");
    while ((opt = getopt(argc, argv, "t:i:n:X")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'i': iterations = bench_parse("-i", optarg, 0); break;
        case 'n': objects = (size_t)bench_parse("-n", optarg, 0); break;
        case 'X': corrupt = true; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-i iterations] [-n objects] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || objects < threads || iterations < 1)
        bench_fail("need threads >= 1, objects >= threads, iterations >= 1");

    struct worker *workers = new struct worker[threads];
    pthread_barrier_init(&start_barrier, nullptr, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        workers[t].id = t;
        workers[t].objects = objects / threads + (t < objects % threads ? 1 : 0);
        if (pthread_create(&workers[t].thread, nullptr, worker_main, &workers[t]) != 0)
            bench_fail("pthread_create failed");
    }
    pthread_barrier_wait(&start_barrier);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(workers[t].thread, nullptr);
    double secs = bench_span_secs();
    pthread_barrier_destroy(&start_barrier);
    delete[] workers;
    bench_result((int)threads, (double)iterations * (double)objects, secs,
                 "size=%zu objects=%zu iterations=%llu", sizeof(Foo), objects, iterations);
    return 0;
}
