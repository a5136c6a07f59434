#!/usr/bin/env bash
# tests/prof/run.sh - the heap profiler (MEMALLOC_PROF=1) end to end.
#
# Usage: tests/prof/run.sh [build/libmemalloc.so] [build/prof]
#
# The second directory holds sites (linked with -lmemalloc) and
# sites_static (linked with libmemalloc.a), both -rdynamic (prof.mk builds
# them). Their known sites: alloc_a keeps 64 MiB in 1 KiB blocks, alloc_b
# 16 MiB in 64 KiB blocks, churn_c allocates 1 GiB in 4 KiB blocks and
# keeps nothing, leak_d leaks 4 MiB in 512-byte blocks.
#
# The figures are estimates from random samples. The precise cases sample
# every 4 KiB on average: leak_d, the smallest site, then gets about 1000
# samples, a standard deviation near 3%, so 15% is five of them; no case
# measures time. Prints "PASS name" or "FAIL name: why" per case, keeps the
# outputs of failed cases in build/prof/logs, and exits 1 if any failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB=$(realpath "${1:-build/libmemalloc.so}")
BIN=$(realpath "${2:-build/prof}")
LOGS=$BIN/logs
export LC_ALL=C
unset LD_PRELOAD PYTHONMALLOC 2>/dev/null || true
for v in $(env | sed -n 's/^\(MEMALLOC_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

T=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-prof.XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILED=0
PASSED=0
MIB=1048576

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() {
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
    mkdir -p "$LOGS/$1"
    cp -r "$T"/. "$LOGS/$1/" 2>/dev/null || true
}

# within ACTUAL TRUTH PERCENT: 0 when |actual - truth| <= percent% of truth.
within() {
    awk -v a="$1" -v t="$2" -v p="$3" 'BEGIN { d = a - t; if (d < 0) d = -d; exit !(a != "" && d <= t * p / 100) }'
}

# flat BYTES of function NAME in `google-pprof --text --show_bytes` output.
pprof_flat() {
    awk -v f="$2" '$NF == f { print $1; exit }' "$1"
}

# Estimated live bytes of the site NAME in the exit report's leak lines
# ("  BYTES bytes in N blocks: NAME < main < ...").
report_bytes() {
    awk -v f="$2" '$2 == "bytes" && $5 == "blocks:" && $6 == f { print $1; exit }' "$1"
}

# Folded stacks: the value of the line whose innermost frame is NAME.
folded_bytes() {
    awk -v f="$2" '{ n = split($1, fr, ";"); if (fr[n] == f) { s += $2 } } END { if (s != "") print s }' "$1"
}

# ---- 1. the known sites, dynamic and static link: pprof, report, files ----

sites_case() {
    local prog=$1 name=$2
    rm -rf "${T:?}"/*
    if ! (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=4K MEMALLOC_PROF_FILE="$T/p.%p.heap" \
        MEMALLOC_PROF_SVG="$T/p.svg" MEMALLOC_STATS=1 MEMALLOC_STATS_FILE="$T/report" \
        "$BIN/$prog" sites > "$T/out" 2> "$T/err"); then
        fail "$name" "the program failed: $(head -c 300 "$T/err")"
        return
    fi
    local heap
    heap=$(ls "$T"/p.*.heap 2>/dev/null | head -1)
    if [[ -z $heap ]] || ! head -1 "$heap" | grep -q '^heap profile: .* @ heap_v2/4096$'; then
        fail "$name" "no profile with a heap_v2/4096 header: $(ls "$T")"
        return
    fi
    if ! grep -q '^MAPPED_LIBRARIES:$' "$heap" || ! grep -q "libmemalloc\|$prog" "$heap"; then
        fail "$name" "the profile has no MAPPED_LIBRARIES section with the mappings"
        return
    fi
    google-pprof --text --show_bytes "$BIN/$prog" "$heap" > "$T/inuse" 2> "$T/pprof.err" || true
    google-pprof --text --show_bytes --alloc_space "$BIN/$prog" "$heap" > "$T/alloc" 2>> "$T/pprof.err" || true
    local why=""
    within "$(pprof_flat "$T/inuse" alloc_a)" $((64 * MIB)) 15 || why+=" alloc_a live $(pprof_flat "$T/inuse" alloc_a) (64 MiB);"
    within "$(pprof_flat "$T/inuse" alloc_b)" $((16 * MIB)) 15 || why+=" alloc_b live $(pprof_flat "$T/inuse" alloc_b) (16 MiB);"
    within "$(pprof_flat "$T/inuse" leak_d)" $((4 * MIB)) 15 || why+=" leak_d live $(pprof_flat "$T/inuse" leak_d) (4 MiB);"
    local churn_live
    churn_live=$(pprof_flat "$T/inuse" churn_c)
    [[ -z $churn_live || $churn_live -lt $MIB ]] || why+=" churn_c live $churn_live (0);"
    within "$(pprof_flat "$T/alloc" churn_c)" $((1024 * MIB)) 15 || why+=" churn_c allocated $(pprof_flat "$T/alloc" churn_c) (1 GiB);"
    within "$(pprof_flat "$T/alloc" alloc_a)" $((64 * MIB)) 15 || why+=" alloc_a allocated $(pprof_flat "$T/alloc" alloc_a) (64 MiB);"
    [[ -z $why ]] && pass "$name: google-pprof --text lists each site's live and allocated bytes within 15%" ||
        fail "$name" "google-pprof:$why"

    why=""
    grep -q '^still allocated, by call stack' "$T/report" || why+=" no leak sites in the report;"
    within "$(report_bytes "$T/report" leak_d)" $((4 * MIB)) 15 || why+=" leak_d $(report_bytes "$T/report" leak_d) (4 MiB);"
    within "$(report_bytes "$T/report" alloc_a)" $((64 * MIB)) 15 || why+=" alloc_a $(report_bytes "$T/report" alloc_a) (64 MiB);"
    within "$(report_bytes "$T/report" alloc_b)" $((16 * MIB)) 15 || why+=" alloc_b $(report_bytes "$T/report" alloc_b) (16 MiB);"
    grep -q 'blocks: churn_c' "$T/report" && why+=" churn_c is named as holding memory;"
    grep -q 'blocks: leak_d < main' "$T/report" || why+=" leak_d's line does not show its caller main;"
    [[ -z $why ]] && pass "$name: the exit report names leak_d, alloc_a and alloc_b with their bytes" ||
        fail "$name" "exit report:$why"

    why=""
    if ! python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$T/p.svg" 2> "$T/svg.err"; then
        why+=" p.svg is not well-formed XML ($(head -c 200 "$T/svg.err"));"
    fi
    for f in alloc_a alloc_b leak_d main; do
        grep -q "<title>$f (" "$T/p.svg" || why+=" no $f box in the flame graph;"
    done
    grep -q '<title>churn_c (' "$T/p.svg" && why+=" churn_c has a box in the flame graph of live bytes;"
    [[ -z $why ]] && pass "$name: MEMALLOC_PROF_SVG writes a well-formed flame graph with the live sites" ||
        fail "$name" "svg:$why"
}
sites_case sites "sites (-lmemalloc)"
sites_case sites_static "sites (libmemalloc.a)"

# ---- 2. folded stacks ----

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=4K MEMALLOC_PROF_FILE="$T/p.folded" "$BIN/sites" sites > /dev/null 2> "$T/err"); then
    why=""
    grep -q '^_start;.*;main;alloc_a [0-9][0-9]*$' "$T/p.folded" || why+=" no _start;...;main;alloc_a N line;"
    within "$(folded_bytes "$T/p.folded" alloc_a)" $((64 * MIB)) 15 || why+=" alloc_a $(folded_bytes "$T/p.folded" alloc_a);"
    within "$(folded_bytes "$T/p.folded" leak_d)" $((4 * MIB)) 15 || why+=" leak_d $(folded_bytes "$T/p.folded" leak_d);"
    grep -q 'churn_c ' "$T/p.folded" && why+=" churn_c has live bytes;"
    [[ -z $why ]] && pass "folded stacks (a .folded name): one line per stack, live bytes within 15%" || fail folded "$why"
else
    fail folded "the program failed: $(head -c 300 "$T/err")"
fi

# ---- 3. stacks from 8 threads at once ----

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=2K MEMALLOC_PROF_FILE="$T/t.heap" "$BIN/sites" threads > /dev/null 2> "$T/err"); then
    google-pprof --text --show_bytes "$BIN/sites" "$T/t.heap" > "$T/inuse" 2> /dev/null || true
    why=""
    # Each thread keeps 8192 blocks of 256 bytes and its 64 KiB array.
    for i in 0 1 2 3 4 5 6 7; do
        within "$(pprof_flat "$T/inuse" "thread_site_$i")" $((8192 * 256 + 65536)) 15 ||
            why+=" thread_site_$i $(pprof_flat "$T/inuse" "thread_site_$i");"
    done
    grep -q 'start_thread' "$T/inuse" || why+=" no start_thread frame;"
    [[ -z $why ]] && pass "threads: 8 threads' stacks, each thread's site within 15%" || fail threads "$why"
else
    fail threads "the program failed: $(head -c 300 "$T/err")"
fi

# ---- 4. fork: the child writes its own profile (%p) ----

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=4K MEMALLOC_PROF_FILE="$T/f.%p.heap" "$BIN/sites" fork > "$T/out" 2> "$T/err"); then
    child=$(sed -n 's/^child=\([0-9]*\) status=0$/\1/p' "$T/out")
    parent=$(ls "$T" | sed -n 's/^f\.\([0-9]*\)\.heap$/\1/p' | grep -vx "${child:-none}" | head -1)
    why=""
    if [[ -z $child || ! -f $T/f.$child.heap || -z $parent ]]; then
        why+=" expected f.<parent>.heap and f.<child>.heap, found: $(ls "$T" | tr '\n' ' ') ($(cat "$T/out"))"
    else
        google-pprof --text --show_bytes "$BIN/sites" "$T/f.$child.heap" > "$T/child" 2> /dev/null || true
        google-pprof --text --show_bytes "$BIN/sites" "$T/f.$parent.heap" > "$T/parent" 2> /dev/null || true
        within "$(pprof_flat "$T/child" leak_d)" $((4 * MIB)) 15 || why+=" child's leak_d $(pprof_flat "$T/child" leak_d);"
        within "$(pprof_flat "$T/child" alloc_a)" $((64 * MIB)) 15 || why+=" child's alloc_a (inherited) $(pprof_flat "$T/child" alloc_a);"
        within "$(pprof_flat "$T/parent" alloc_a)" $((64 * MIB)) 15 || why+=" parent's alloc_a $(pprof_flat "$T/parent" alloc_a);"
        [[ -z $(pprof_flat "$T/parent" leak_d) ]] || why+=" the parent's profile has the child's leak_d;"
    fi
    [[ -z $why ]] && pass "fork: parent and child each write their own profile (%p)" || fail fork "$why"
else
    fail fork "the program failed: $(head -c 300 "$T/err")"
fi

# ---- 5. ma_prof_dump while other threads allocate ----

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=4K "$BIN/sites" dump "$T/d.heap" > "$T/out" 2> "$T/err"); then
    google-pprof --text --show_bytes "$BIN/sites" "$T/d.heap" > "$T/inuse" 2> /dev/null || true
    why=""
    grep -q '^dumps=20$' "$T/out" || why+=" $(cat "$T/out");"
    within "$(pprof_flat "$T/inuse" alloc_b)" $((16 * MIB)) 15 || why+=" alloc_b $(pprof_flat "$T/inuse" alloc_b);"
    grep -q 'dump_churn' "$T/inuse" || why+=" no dump_churn frame;"
    [[ -s $T/err ]] && why+=" stderr: $(head -c 200 "$T/err");"
    [[ -z $why ]] && pass "ma_prof_dump 20 times while 4 threads allocate and free" || fail dump "$why"
else
    fail dump "the program failed: $(head -c 300 "$T/err")"
fi

# ---- 6. a real program under LD_PRELOAD: python3 ----

PY=$(command -v python3 || true)
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
PYREAL=$(realpath "$PY")
rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=64K PYTHONMALLOC=malloc LD_PRELOAD="$LIB" \
    "$PYREAL" "$HERE/py_prof.py" "$T/py.heap" "$T/py.folded" > "$T/out" 2> "$T/err"); then
    google-pprof --text --show_bytes "$PYREAL" "$T/py.heap" > "$T/inuse" 2> /dev/null || true
    why=""
    grep -q 'py.heap 0$' "$T/out" || why+=" ma_prof_dump failed: $(cat "$T/out");"
    # The table holds ~200,000 dicts and strings: tens of MB live.
    total=$(awk '{ s += $1 } END { print s + 0 }' "$T/inuse")
    [[ $total -gt $((10 * MIB)) ]] || why+=" only $total bytes live in pprof's output;"
    grep -q ' Py[A-Za-z_]*$\| _Py[A-Za-z_]*$' "$T/inuse" || why+=" google-pprof names no Py* function;"
    grep -q ';Py_RunMain;' "$T/py.folded" || why+=" the folded stacks do not name Py_RunMain;"
    grep -q ';_PyEval_EvalFrameDefault;' "$T/py.folded" || why+=" the folded stacks do not name _PyEval_EvalFrameDefault;"
    [[ -z $why ]] && pass "python3 (PYTHONMALLOC=malloc, LD_PRELOAD): the profile symbolizes to CPython's functions" ||
        fail python "$why"
else
    fail python "python3 failed: $(head -c 300 "$T/err")"
fi

# ---- 7. bad input ----

# one_warning FILE: exactly one memalloc: line.
one_warning() { [[ $(grep -c '^memalloc:' "$1") == 1 ]]; }

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_FILE=/nonexistent/dir/p.heap "$BIN/sites" sites > "$T/out" 2> "$T/err") &&
    grep -q '^done$' "$T/out" && one_warning "$T/err" && grep -q '/nonexistent/dir/p.heap' "$T/err"; then
    pass "an unwritable MEMALLOC_PROF_FILE: one memalloc: line, the program goes on"
else
    fail unwritable "status, output or warnings wrong: $(cat "$T/out" "$T/err" | head -c 400)"
fi

rm -rf "${T:?}"/*
if (cd "$T" && MEMALLOC_PROF=1 "$BIN/sites" dumpret /nonexistent/dir/x.heap > "$T/out" 2> "$T/err") &&
    grep -q '^ret=-1 errno=2$' "$T/out" && one_warning "$T/err"; then
    pass "ma_prof_dump to an unwritable path: -1, errno ENOENT, one memalloc: line"
else
    fail dump-unwritable "$(cat "$T/out" "$T/err" | head -c 400)"
fi

rm -rf "${T:?}"/*
if (cd "$T" && "$BIN/sites" dumpret "$T/x.heap" > "$T/out" 2> "$T/err") &&
    grep -q '^ret=-1 errno=95$' "$T/out" && [[ ! -s $T/err && ! -e $T/x.heap ]]; then
    pass "ma_prof_dump with profiling off: -1, errno ENOTSUP, nothing written"
else
    fail dump-off "$(cat "$T/out" "$T/err" | head -c 400)"
fi

for bad in abc 0; do
    rm -rf "${T:?}"/*
    if (cd "$T" && MEMALLOC_PROF=1 MEMALLOC_PROF_SAMPLE=$bad MEMALLOC_PROF_FILE="$T/b.heap" "$BIN/sites" dumpret "$T/x.heap" > "$T/out" 2> "$T/err") &&
        one_warning "$T/err" && grep -q "^memalloc: ignoring MEMALLOC_PROF_SAMPLE=$bad (.*); using the default$" "$T/err" &&
        head -1 "$T/b.heap" | grep -q 'heap_v2/524288$'; then
        pass "MEMALLOC_PROF_SAMPLE=$bad: one warning line, the default 512 KiB"
    else
        fail "sample-$bad" "$(cat "$T/err" | head -c 300); header: $(head -1 "$T/b.heap" 2>&1)"
    fi
done

echo "prof: $PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
