#!/usr/bin/env python3
"""tests/fuzz/show_input.py - prints a fuzz_ops input as the operations the
harness runs, one per line, to triage a crash file.

Usage: show_input.py FILE

Mirrors decode() and size_decode() of fuzz_ops.c; in concurrent mode the
slot shown is the one the op's thread owns in that round.
"""
import sys

KINDS = ["malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign", "free",
         "usable_size", "ma_check", "ma_trim", "bad", "round", "reallocarray",
         "malloc", "free", "realloc", "burst"]
SIZED = {"malloc", "malloc/memdup", "calloc", "realloc", "reallocarray", "burst"}
ALIGNED = {"aligned_alloc", "posix_memalign"}
NTHREADS, NSLOTS, ROUND_OPS, MAX_OPS = 4, 64, 32, 1024


def size_decode(sel, r):
    sel &= 7
    if sel == 0:
        return 0 if (r & 3) == 0 else r % 16
    if sel == 1:
        return 1 + r % 128
    if sel == 2:
        return r % 1024
    if sel == 3:
        base = 1 << (4 + (r >> 8) % 17)
        return max(0, base + (r & 0x7F) - 64)
    if sel == 4:
        return 1024 + r
    if sel == 5:
        return (256 << 10) + r % 1024 - 512
    if sel == 6:
        return (256 << 10) + r * 64
    return (1 << (18 + (r >> 12) % 5)) + (r & 0xFFF) - 2048


def main():
    data = open(sys.argv[1], "rb").read()
    if not data:
        print("empty input")
        return
    concurrent = data[0] & 1
    print("mode %s, ma_check every %d ops" % ("concurrent rounds" if concurrent else "lockstep",
                                             16 << ((data[0] >> 1) & 3)))
    pos = 1

    def rd():
        nonlocal pos
        v = data[pos] if pos < len(data) else 0
        pos += 1
        return v

    n = rnd = in_round = 0
    while pos < len(data) and n < MAX_OPS:
        b = rd()
        kind, thread, variant = KINDS[b & 15], (b >> 4) & 3, b >> 6
        if kind == "malloc" and variant == 3:
            kind = "malloc/memdup"
        if kind == "ma_check" and variant >= 2:
            kind = "stats_print" if variant == 2 else "heap_map/print"
        sb = rd()
        extra = ""
        if kind in ALIGNED:
            a = rd()
            if kind == "aligned_alloc":
                align = 1 << (a % 17 if a < 224 else 17 + (a - 224) % 5)
            else:
                align = 8 << (a % 14)
            extra = "align %d " % align
        if kind in SIZED or kind in ALIGNED:
            sel, lo, hi = rd(), rd(), rd()
            r = lo | hi << 8
            extra += "size %d (bits %#06x)" % (size_decode(sel, r), r)
        if concurrent:
            slot = (sb % (NSLOTS // NTHREADS)) * NTHREADS + (thread - rnd) % NTHREADS
            in_round += 1
            if kind == "round" or in_round == ROUND_OPS:
                print("---- end of round %d" % rnd)
                rnd += 1
                in_round = 0
                n += 1
                continue
        else:
            slot = sb % NSLOTS
        print("%4d  thread %d  %-15s v%d  slot %2d  %s" % (n, thread, kind, variant, slot, extra))
        n += 1


if __name__ == "__main__":
    main()
