#!/bin/sh
# tests/frontdoor/reports.sh BUILD - mallopt, and exit reports that name
# their process: %p in MEMALLOC_STATS_FILE and MEMALLOC_HEAP_MAP becomes the
# pid, so a program that runs children gets one report per process, each
# naming its pid and program. Prints one line per check; exits 1 if any
# failed.
set -eu
BUILD=${1:-build}
SO=$(cd "$BUILD" && pwd -P)/libmemalloc.so
T=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-reports.XXXXXX")
trap 'rm -rf "$T"' EXIT
failed=0
ok() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

cc -O1 -Wall -Wextra -Werror -Iinclude -o "$T/mallopt_pre" tests/frontdoor/mallopt.c "$SO"
cc -O1 -Wall -Wextra -Werror -Iinclude -o "$T/mallopt_static" tests/frontdoor/mallopt.c "$BUILD/libmemalloc.a" -pthread
if out=$(LD_PRELOAD=$SO "$T/mallopt_pre" 2>&1); then ok "mallopt preloaded: $out"; else fail "mallopt preloaded: $out"; fi
if out=$("$T/mallopt_static" 2>&1); then ok "mallopt linked: $out"; else fail "mallopt linked: $out"; fi

# A shell that runs two children: three processes, three reports.
MEMALLOC_STATS=1 MEMALLOC_STATS_FILE="$T/stats-%p.txt" MEMALLOC_HEAP_MAP="$T/heap-%p.svg" LD_PRELOAD=$SO \
    bash -c 'ls / > /dev/null; sort /dev/null; exit 0'
n=$(ls "$T"/stats-*.txt | wc -l)
if [ "$n" -ge 2 ]; then ok "%p: $n statistics files for a shell and its children"; else fail "%p: $n statistics files"; fi
for f in "$T"/stats-*.txt; do
    pid=${f##*stats-}; pid=${pid%.txt}
    if head -n 1 "$f" | grep -q "^memalloc statistics (pid $pid, program [a-z]*)"; then :; else
        fail "$f does not name pid $pid: $(head -n 1 "$f")"
    fi
done
grep -l "program ls)" "$T"/stats-*.txt > /dev/null && grep -l "program sort)" "$T"/stats-*.txt > /dev/null &&
    ok "the reports name their programs (ls, sort)" || fail "no report names ls and sort"
m=$(ls "$T"/heap-*.svg | wc -l)
[ "$m" = "$n" ] && grep -q "memalloc heap (pid [0-9]*, program ls)" "$T"/heap-*.svg &&
    ok "%p: $m heap maps, each naming its process" || fail "heap maps: $m for $n statistics files"
# JSON carries the same two fields.
out=$(MEMALLOC_STATS=json LD_PRELOAD=$SO ls / 2>&1 > /dev/null)
echo "$out" | grep -q '^{"schema":"memalloc-stats","version":1,"pid":[0-9]*,"program":"ls",' &&
    ok "JSON report: pid and program" || fail "JSON report: $out"
exit $((failed != 0))
