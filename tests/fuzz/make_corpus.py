#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py - writes the seed corpus of tests/fuzz/fuzz_ops.c.

Usage: make_corpus.py DIR   (make fuzz-corpus writes tests/fuzz/corpus/)

Each seed is a small program in the harness's input format (see the comment
at the top of fuzz_ops.c): one per operation type, per size range and per
mode, plus a few mixed ones, so that the fuzzer starts with every path of
the harness reached. The output is deterministic.
"""
import os
import random
import sys

# Operation kinds (bits 0-3 of the op byte).
MALLOC, CALLOC, REALLOC, ALIGNED, MEMALIGN, FREE, USABLE, CHECK = range(8)
TRIM, BAD, ROUND, REALLOCARRAY, BURST = 8, 9, 10, 11, 15

# Size selectors (the first size byte, low 3 bits).
ZERO, TINY, SMALL, POW2, MEDIUM, THRESHOLD, LARGE, CHUNKISH = range(8)


def op(kind, thread=0, variant=0, slot=0):
    return bytes([kind | (thread & 3) << 4 | (variant & 3) << 6, slot & 0xFF])


def size(sel, r=0):
    return bytes([sel, r & 0xFF, (r >> 8) & 0xFF])


def malloc(slot, sel, r=0, t=0):
    return op(MALLOC, t, 0, slot) + size(sel, r)


def calloc(slot, sel, r=0, t=0, variant=0):
    return op(CALLOC, t, variant, slot) + size(sel, r)


def realloc(slot, variant, sel=0, r=0, t=0):
    return op(REALLOC, t, variant, slot) + size(sel, r)


def reallocarray(slot, variant, sel=0, r=0, t=0):
    return op(REALLOCARRAY, t, variant, slot) + size(sel, r)


def aligned(slot, shift, sel, r=0, t=0):
    return op(ALIGNED, t, 0, slot) + bytes([shift]) + size(sel, r)


def memalign(slot, shift, sel, r=0, t=0):
    return op(MEMALIGN, t, 0, slot) + bytes([shift]) + size(sel, r)


def burst(sel, r=0, t=0, variant=0):
    return op(BURST, t, variant, 0) + size(sel, r)


def free(slot, t=0):
    return op(FREE, t, 0, slot)


def usable(slot, t=0):
    return op(USABLE, t, 0, slot)


def simple(kind, t=0, variant=0, slot=0):
    return op(kind, t, variant, slot)


LOCKSTEP, CONCURRENT = 0, 1


def header(mode, check=2):
    return bytes([mode | (check & 3) << 1])


def seeds():
    s = {}
    # One per size range: allocate on thread 0, free on thread 1.
    for sel, name in enumerate(["zero", "tiny", "small", "pow2", "medium",
                                "threshold", "large", "chunk"]):
        body = b""
        for i, r in enumerate([0, 1, 0x0a17, 0xffff]):
            body += malloc(i, sel, r, t=i % 4)
        for i in range(4):
            body += usable(i, t=(i + 1) % 4) + free(i, t=(i + 1) % 4)
        s["size-" + name] = header(LOCKSTEP) + body
    # Every calloc split.
    s["calloc"] = header(LOCKSTEP) + b"".join(
        calloc(v, sel, 0x321, t=v, variant=v) for v in range(4)
        for sel in (TINY, MEDIUM, LARGE))
    # Realloc: grow, shrink, to zero, from NULL, across the threshold.
    s["realloc-grow"] = header(LOCKSTEP) + malloc(1, SMALL, 100) + b"".join(
        realloc(1, 1, 0, 0xff40, t=i % 4) for i in range(8))
    s["realloc-shrink"] = header(LOCKSTEP) + malloc(2, LARGE, 3000) + b"".join(
        realloc(2, 2, 0, 0xc000, t=i % 4) for i in range(8))
    s["realloc-zero"] = header(LOCKSTEP) + malloc(3, MEDIUM, 5000) + realloc(3, 3, t=1) + \
        realloc(3, 3, t=2) + free(3, t=3)
    s["realloc-null"] = header(LOCKSTEP) + realloc(4, 0, SMALL, 77) + realloc(5, 0, LARGE, 9) + \
        realloc(4, 0, THRESHOLD, 600, t=1) + realloc(5, 0, TINY, 3, t=2)
    s["realloc-threshold"] = header(LOCKSTEP) + malloc(6, THRESHOLD, 100) + b"".join(
        realloc(6, 0, THRESHOLD, r, t=i % 4) for i, r in enumerate([1000, 0, 513, 511, 512, 20]))
    s["realloc-inplace"] = header(LOCKSTEP) + malloc(7, SMALL, 200) + malloc(8, SMALL, 200) + \
        free(8) + realloc(7, 1, 0, 0x0180) + realloc(7, 2, 0, 0x4000) + realloc(7, 1, 0, 0x2010)
    s["reallocarray"] = header(LOCKSTEP) + b"".join(
        reallocarray(9, v, SMALL if v == 0 else 0, 0x1234 + v, t=v) for v in range(4))
    # Alignments 1 .. 64 KiB, small and large.
    s["aligned-small"] = header(LOCKSTEP) + b"".join(
        aligned(k, k, SMALL, 40 * k, t=k % 4) for k in range(17)) + b"".join(
        free(k, t=(k + 2) % 4) for k in range(17))
    s["aligned-large"] = header(LOCKSTEP) + b"".join(
        aligned(k, 12 + k, THRESHOLD, 300, t=k % 4) for k in range(5))
    s["memalign"] = header(LOCKSTEP) + b"".join(
        memalign(k, k, POW2, 0x0a00 + k, t=k % 4) for k in range(14))
    s["aligned-huge"] = header(LOCKSTEP) + b"".join(
        aligned(k, 224 + k, [TINY, THRESHOLD, LARGE][k % 3], 77, t=k % 4) for k in range(5)) + \
        realloc(0, 1, 0, 0x4040, t=1) + realloc(1, 2, 0, 0x8000, t=2)
    s["memdup"] = header(LOCKSTEP) + b"".join(
        op(MALLOC, k % 4, 3, k) + size(sel, 0x0777) for k, sel in enumerate(range(5))) + \
        b"".join(free(k, t=(k + 1) % 4) for k in range(5))
    s["reports"] = header(CONCURRENT) + b"".join(
        malloc(i, SMALL, 77 * i, t=i % 4) for i in range(8)) + b"".join(
        simple(CHECK, t, 2 + t % 2, slot=t * 5) for t in range(4)) + simple(ROUND) + b"".join(
        free(i, t=i % 4) + simple(CHECK, i % 4, 2 + i % 2, slot=i) for i in range(8))
    # Free, usable, check, trim, bad requests.
    s["free-cross"] = header(LOCKSTEP) + b"".join(malloc(i, TINY, i, t=0) for i in range(16)) + \
        b"".join(free(i, t=1 + i % 3) for i in range(16)) + malloc(0, TINY, 5, t=0)
    s["usable-slack"] = header(LOCKSTEP) + malloc(0, TINY, 1) + usable(0) + \
        malloc(1, SMALL, 1001) + usable(1, t=3) + usable(2)
    s["check-trim"] = header(LOCKSTEP, 0) + malloc(0, MEDIUM, 60000) + malloc(1, MEDIUM, 60000) + \
        free(0) + simple(TRIM, 1) + simple(CHECK, 2) + usable(1)
    s["bad"] = header(LOCKSTEP) + malloc(3, SMALL, 50) + b"".join(
        simple(BAD, v, v, slot=3) for v in range(4))
    # Concurrent rounds.
    s["rounds-basic"] = header(CONCURRENT) + b"".join(
        malloc(i, SMALL, 31 * i, t=i % 4) for i in range(16)) + simple(ROUND) + b"".join(
        free(i, t=i % 4) for i in range(16))
    s["rounds-realloc"] = header(CONCURRENT) + b"".join(
        malloc(i, MEDIUM, 999 * i, t=i % 4) for i in range(8)) + simple(ROUND) + b"".join(
        realloc(i, 1 + i % 2, 0, 0x8080, t=i % 4) for i in range(8)) + simple(ROUND) + \
        b"".join(realloc(i, 0, LARGE, i, t=i % 4) for i in range(8))
    s["rounds-remote-storm"] = header(CONCURRENT, 3) + (b"".join(
        malloc(i, TINY, i, t=i % 4) for i in range(32)) + simple(ROUND)) * 4
    s["rounds-check"] = header(CONCURRENT, 0) + b"".join(
        malloc(i, POW2, 0x0300 + i, t=i % 4) + simple(CHECK, (i + 1) % 4) for i in range(12))
    # Bursts: tight loops of each thread's own blocks, overlapping in time.
    s["burst-lockstep"] = header(LOCKSTEP) + b"".join(
        burst(sel, 0x0123 * (sel + 1), t=sel % 4, variant=1) for sel in range(8))
    s["burst-small-remote"] = header(CONCURRENT) + (b"".join(
        burst(SMALL, 0x0200 + t, t=t, variant=2) + malloc(t, TINY, t, t=t) for t in range(4)) +
        simple(ROUND)) * 3
    # Large blocks moved by realloc (mremap) while other threads map and
    # unmap large blocks: the window in which a vacated range can be mapped
    # again by another thread.
    s["burst-large-realloc"] = header(CONCURRENT, 3) + (
        burst(THRESHOLD, 0x0100, t=0, variant=3) + burst(LARGE, 0x0800, t=1, variant=3) +
        burst(THRESHOLD, 0x0200, t=2, variant=3) + burst(MEDIUM, 0xf000, t=3, variant=3) +
        simple(ROUND)) * 2
    # Random mixes, deterministic.
    rng = random.Random(4)
    for n in range(12):
        mode = n & 1
        body = header(mode, n % 4)
        for _ in range(rng.randrange(10, 60)):
            kind = rng.choice([MALLOC] * 4 + [FREE] * 3 + [REALLOC] * 2 +
                              [CALLOC, ALIGNED, MEMALIGN, USABLE, REALLOCARRAY, BURST])
            t, v, slot = rng.randrange(4), rng.randrange(4), rng.randrange(64)
            sel = rng.choice([ZERO, TINY, SMALL, SMALL, POW2, MEDIUM, THRESHOLD, LARGE, CHUNKISH])
            r = rng.randrange(65536)
            if kind in (FREE, USABLE):
                body += op(kind, t, v, slot)
            elif kind in (ALIGNED, MEMALIGN):
                body += op(kind, t, v, slot) + bytes([rng.randrange(256)]) + size(sel, r)
            else:
                body += op(kind, t, v, slot) + size(sel, r)
        s["mix-%02d" % n] = body
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds()), out))


if __name__ == "__main__":
    main()
