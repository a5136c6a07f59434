# tests/preload/py_workload.py - a Python workload for the interposition tests.
#
# Run with PYTHONMALLOC=malloc (so every object really comes from malloc) and
# PYTHONHASHSEED=0. It builds and tears down dicts, lists, sets, strings and
# bytes in the main thread and in worker threads, then prints digests that
# depend only on the computed values, never on addresses or timing, so the
# output is identical on any correct allocator.
import hashlib
import sys
import threading


def lcg(seed):
    """Deterministic 32-bit pseudo-random stream (no global state)."""
    x = seed & 0xFFFFFFFF
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        yield x >> 8


def word(rnd, n):
    return "".join(chr(97 + next(rnd) % 26) for _ in range(n))


def workload(seed, rounds):
    """Returns a digest of everything computed; allocates a lot on the way."""
    rnd = lcg(seed)
    h = hashlib.sha256()
    table = {}
    for r in range(rounds):
        # dict growth and shrink with string keys and list values
        for i in range(2000):
            k = word(rnd, 3 + next(rnd) % 12)
            table.setdefault(k, []).append(i * r)
        for k in list(table)[::3]:
            del table[k]
        # sets: union / intersection of derived strings
        a = {k[::-1] for k in table}
        b = {k.upper().lower()[::-1] for k in list(table)[::2]}
        inter = a & b
        h.update(("%d:%d:%d:%d" % (r, len(table), len(a), len(inter))).encode())
        # lists: sort, slice, concatenate, big temporary lists
        lst = sorted(table.items(), key=lambda kv: (len(kv[1]), kv[0]))
        flat = [x for _, v in lst for x in v]
        h.update(repr(lst[:50]).encode())
        h.update(str(sum(flat)).encode())
        # strings and bytes of many sizes, joins and splits
        s = "-".join(k * (1 + len(k) % 7) for k, _ in lst[:500])
        parts = s.split("-")
        h.update(hashlib.md5(s.encode()).digest())
        h.update(str(len(parts)).encode())
        blob = bytearray()
        for i in range(200):
            blob += bytes([next(rnd) & 0xFF]) * (next(rnd) % 3000)
        h.update(hashlib.sha1(bytes(blob)).digest())
        del blob, s, parts, flat, lst, a, b, inter
        # a few big objects (large allocation path), grown and dropped
        big = [0] * (100000 + next(rnd) % 200000)
        big.extend(range(50000))
        h.update(str(len(big)).encode())
        del big
        # keep the table bounded
        if len(table) > 20000:
            for k in sorted(table)[: len(table) // 2]:
                del table[k]
    h.update(repr(sorted(table.items())[:100]).encode())
    return h.hexdigest()


def main():
    nthreads = 6
    results = [None] * nthreads
    errors = []

    def run(i):
        try:
            results[i] = workload(1000 + i, 10)
        except BaseException as e:  # report, never hang the join
            errors.append("thread %d: %r" % (i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    # the main thread works at the same time as the workers
    main_digest = workload(7, 10)
    for t in threads:
        t.join()
    if errors:
        for e in errors:
            print(e)
        sys.exit(1)
    # short-lived threads: each allocates and returns a value
    short = []
    lock = threading.Lock()

    def small(i):
        d = {str(j): [j] * (j % 17) for j in range(300 + i)}
        with lock:
            short.append((i, sum(len(v) for v in d.values())))

    for batch in range(10):
        ts = [threading.Thread(target=small, args=(batch * 20 + j,)) for j in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print("main", main_digest)
    for i, d in enumerate(results):
        print("thread", i, d)
    print("short", hashlib.sha256(repr(sorted(short)).encode()).hexdigest())


if __name__ == "__main__":
    main()
