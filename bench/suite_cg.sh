#!/usr/bin/env bash
# bench/suite_cg.sh - compares two builds of memalloc by the instructions
# that fixed-work bench programs execute at one thread under callgrind
# (repeatable where run times on a small machine are not). The decay
# passes are held off (MEMALLOC_RETAIN_MS=3600000): under callgrind the
# programs run some 50 times slower, so the passes would come 50 times as
# often per operation and vary from run to run.
#
# Usage: bench/suite_cg.sh OLD.so NEW.so   (after make bench-build)
# Prints, per program: M instructions under OLD and NEW, and NEW / OLD.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 OLD.so NEW.so" >&2; exit 2; }
export MEMALLOC_RETAIN_MS=3600000
count() { # lib prog args... -> instructions
    local lib=$1; shift
    LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ROOT/build/bench/$@" 2>&1 >/dev/null |
        sed -n 's/.*Collected : //p'
}
while read -r prog; do
    [ -n "$prog" ] || continue
    # shellcheck disable=SC2086
    a=$(count "$1" $prog)
    # shellcheck disable=SC2086
    b=$(count "$2" $prog)
    awk -v p="$prog" -v a="$a" -v b="$b" 'BEGIN { printf "%-40s %9.1f %9.1f %7.4f\n", p, a / 1e6, b / 1e6, b / a }'
done <<'LIST'
threadtest -t 1 -i 20 -n 50000
xmalloc -t 1 -n 300k
fragmentation -t 1 -n 100k -m 16M
realloc -t 1 -r 40
churn -t 1 -m mixed -n 300k
hoard-threadtest -t 1 -i 200
sh8bench -t 1 -r 10 -n 20000
mstress -t 1 -r 3
rptest -t 1 -l 2000
sh6bench -t 1 -r 100
churn -t 1 -m 64k -n 200k
LIST
