/*
 * larson-kr.cc - the Larson & Krishnan server benchmark as published
 * ("Memory allocation for long-running server applications", ISMM 1998),
 * written from the paper's description, in C++ as its best-known version is.
 *
 * Each of T lanes owns an array of B blocks of random size in [min, max]
 * (all allocated by the main thread before the timed part, as in the
 * original warm-up). A lane's thread repeatedly picks a random slot, checks
 * and deletes the block there and puts a new block of random size in its
 * place. After a round of R * B such replacements the thread starts a NEW
 * thread, hands it the lane (the array and the random state) and exits, so
 * blocks routinely outlive the thread that allocated them and each thread
 * inherits a heap full of its predecessors' blocks: the pattern of a server
 * whose worker threads come and go while its data stays. Runs for a fixed
 * wall time and reports replacements (delete + new pairs) per second.
 *
 * Blocks come from `new char[n]`. By default they go back with `delete[]`;
 * with -z with the sized form `::operator delete[](p, n)` (C++14 sized
 * deallocation), which allocators that define it can use to skip looking
 * the size up. The same binary serves both suite ids, larson-kr and
 * larson-kr-sized.
 *
 * Usage: larson-kr [-t threads] [-d seconds] [-m min] [-M max]
 *                  [-n blocks/thread] [-r rounds] [-z] [-X]
 *   -n  B, the blocks each lane owns (default 1000)
 *   -r  R: a thread does R * B replacements before it hands over (default 100)
 *   -z  sized delete
 *   -X  corrupt one block on purpose (the run must fail: proves the checks)
 */
extern "C" {
#include "common.h"
}

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace {

const uint64_t KR_SEED = 0x6c6172736f6e4b52ULL;

/* One lane: the array a chain of threads hands from one to the next.
 * Only the lane's current thread touches it (the handover is a
 * pthread_create, which orders memory), and main after `done`. */
struct lane {
    unsigned id;
    char **blocks;
    size_t *sizes;
    uint64_t rng;
    unsigned long long ops;   /* replacements done by the lane's threads */
    unsigned long long generations; /* threads the lane has had */
};

size_t min_size = 10, max_size = 500;
size_t per_lane = 1000;
unsigned long long rounds = 100;
bool sized = false;
bool corrupt = false;

std::atomic<bool> stop{false};
std::atomic<unsigned> lanes_done{0};
pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
pthread_barrier_t start_barrier;

char *block_new(size_t size)
{
    char *p = new char[size];
    if (((uintptr_t)p & 7) != 0)
        bench_fail("new char[%zu] returned misaligned %p", size, (void *)p);
    bench_stamp(p, size, KR_SEED);
    return p;
}

void block_delete(char *p, size_t size, const char *what)
{
    bench_check(p, size, KR_SEED, what);
    if (sized)
        ::operator delete[](p, size);
    else
        delete[] p;
}

void *lane_thread(void *arg);

/* Starts the lane's next thread, detached: nobody joins a lane's threads,
 * the lane reports its end through lanes_done (as the original never
 * joins them either). */
void lane_spawn(struct lane *l)
{
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, lane_thread, l) != 0)
        bench_fail("pthread_create failed (lane %u, generation %llu)", l->id, l->generations);
    pthread_attr_destroy(&attr);
}

/* One generation: up to R * B replacements, then hand the lane over (or,
 * once the time is up, report the lane finished). The stop flag is read
 * every 64 replacements so that a lane ends promptly. */
void *lane_thread(void *arg)
{
    struct lane *l = static_cast<struct lane *>(arg);
    unsigned long long todo = rounds * per_lane, done = 0;
    uint64_t rng = l->rng;
    if (l->generations++ == 0) {
        pthread_barrier_wait(&start_barrier);
        bench_span_begin();
    }
    while (done < todo) {
        if ((done & 63) == 0 && stop.load(std::memory_order_relaxed))
            break;
        size_t victim = (size_t)(bench_rand(&rng) % per_lane);
        block_delete(l->blocks[victim], l->sizes[victim], "larson-kr slot");
        size_t size = bench_range(&rng, min_size, max_size);
        l->blocks[victim] = block_new(size);
        l->sizes[victim] = size;
        if (corrupt && l->id == 0 && l->ops + done == 1000)
            bench_corrupt(l->blocks[victim]);
        done++;
    }
    l->ops += done;
    l->rng = rng;
    if (!stop.load(std::memory_order_relaxed)) {
        lane_spawn(l);
        return nullptr;
    }
    bench_span_end();
    pthread_mutex_lock(&done_lock);
    lanes_done.fetch_add(1);
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return nullptr;
}

} // namespace

int main(int argc, char **argv)
{
    unsigned threads = 1;
    double duration = 1.0;
    int opt;
    bench_init("larson-kr");
    while ((opt = getopt(argc, argv, "t:d:m:M:n:r:zX")) != -1) {
        switch (opt) {
        case 't': threads = (unsigned)bench_parse("-t", optarg, 0); break;
        case 'd': duration = bench_parse_secs("-d", optarg); break;
        case 'm': min_size = (size_t)bench_parse("-m", optarg, 1); break;
        case 'M': max_size = (size_t)bench_parse("-M", optarg, 1); break;
        case 'n': per_lane = (size_t)bench_parse("-n", optarg, 0); break;
        case 'r': rounds = bench_parse("-r", optarg, 0); break;
        case 'z': sized = true; break;
        case 'X': corrupt = true; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-d seconds] [-m min] [-M max] "
                    "[-n blocks/thread] [-r rounds] [-z] [-X]\n", argv[0]);
            return 2;
        }
    }
    if (sized)
        bench_init("larson-kr-sized");
    if (threads < 1 || per_lane < 1 || rounds < 1 || min_size < 8 || max_size < min_size)
        bench_fail("need threads >= 1, blocks >= 1, rounds >= 1, 8 <= min <= max");

    /* Warm-up, untimed: main allocates every lane's blocks, so the first
     * deletes of every lane free blocks made by another thread. */
    struct lane *lanes = new struct lane[threads];
    uint64_t rng = KR_SEED;
    for (unsigned t = 0; t < threads; t++) {
        struct lane *l = &lanes[t];
        l->id = t;
        l->blocks = new char *[per_lane];
        l->sizes = new size_t[per_lane];
        l->rng = bench_mix(KR_SEED + t);
        l->ops = 0;
        l->generations = 0;
        for (size_t i = 0; i < per_lane; i++) {
            l->sizes[i] = bench_range(&rng, min_size, max_size);
            l->blocks[i] = block_new(l->sizes[i]);
        }
    }

    pthread_barrier_init(&start_barrier, nullptr, threads + 1);
    for (unsigned t = 0; t < threads; t++)
        lane_spawn(&lanes[t]);
    pthread_barrier_wait(&start_barrier);
    struct timespec nap = { (time_t)duration,
                            (long)((duration - (double)(time_t)duration) * 1e9) };
    while (nanosleep(&nap, &nap) != 0)
        ;
    stop.store(true);
    pthread_mutex_lock(&done_lock);
    while (lanes_done.load() < threads)
        pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    double secs = bench_span_secs();

    unsigned long long ops = 0, generations = 0;
    for (unsigned t = 0; t < threads; t++) {
        struct lane *l = &lanes[t];
        ops += l->ops;
        generations += l->generations;
        for (size_t i = 0; i < per_lane; i++)
            block_delete(l->blocks[i], l->sizes[i], "larson-kr final");
        delete[] l->blocks;
        delete[] l->sizes;
    }
    delete[] lanes;
    pthread_barrier_destroy(&start_barrier);
    bench_result((int)threads, (double)ops, secs,
                 "min=%zu max=%zu blocks=%zu rounds=%llu sized=%d generations=%llu",
                 min_size, max_size, per_lane, rounds, sized ? 1 : 0, generations);
    return 0;
}
