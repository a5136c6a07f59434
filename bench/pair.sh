#!/usr/bin/env bash
# bench/pair.sh - compares two builds of the allocator on one bench program
# by paired runs: the builds alternate, REP times each, and the median of
# the per-pair ratios of ops per second is printed (> 1: B is faster), with
# its quartiles. On a small shared machine a program's time moves by 20%
# from one batch of runs to the next; a pair run back to back shares most
# of that drift, so the ratio is steadier than two separate medians.
#
# Usage: bench/pair.sh REP "program args" A.so B.so   (after make bench-build)
# A or B may be "glibc" (no preload).
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 REP \"program args\" A.so B.so" >&2
    exit 2
fi
rep=$1 prog=$2 a=$3 b=$4
dir=$(dirname "$0")/../build/bench
ops() {
    local lib=$1
    [ "$lib" = glibc ] && lib=
    # $prog is split into the program and its arguments on purpose.
    # shellcheck disable=SC2086
    LD_PRELOAD=$lib "$dir"/$prog 2>&1 | sed -n 's/.* ops_per_sec=\([0-9.]*\).*/\1/p'
}
ratios=""
for _ in $(seq "$rep"); do
    x=$(ops "$a") y=$(ops "$b")
    if [ -z "$x" ] || [ -z "$y" ]; then
        echo "$0: a run of $prog failed" >&2
        exit 1
    fi
    ratios="$ratios $(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.4f", y / x }')"
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -g |
    awk -v p="$prog" '{ r[NR] = $1 } END {
        printf "%s: B/A median %.3f (quartiles %.3f-%.3f, %d pairs)\n",
               p, r[int((NR + 1) / 2)], r[int(NR / 4) + 1], r[int(3 * NR / 4)], NR }'
