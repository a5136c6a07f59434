#!/usr/bin/env bash
# tests/preload/run.sh - interposition tests: run real programs twice, once on
# the system allocator and once with LD_PRELOAD=<library>, and require the two
# runs to agree exactly (stdout, stderr and exit status).
#
# Usage: tests/preload/run.sh [path/to/libmemalloc.so]
#
# Environment:
#   PRELOAD_BIN      where the C test programs live (default: build/preload);
#                    missing or stale programs are compiled there with $CC.
#   PRELOAD_TIMEOUT  seconds allowed to each run (default 120); a run that
#                    exceeds it is a FAIL (hang or deadlock), never a hang.
#   PRELOAD_ONLY     space-separated case names to run (default: all).
#   PRELOAD_LOGS     where the outputs of failing cases are kept
#                    (default: build/preload/logs).
#
# Prints "PASS name" or "FAIL name: reason" per case and exits 1 if any case
# failed. No case measures time: the timeout only turns a hang into a FAIL.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

LIB_ARG=${1:-build/libmemalloc.so}
if [[ ! -f $LIB_ARG ]]; then
    echo "FAIL setup: preload library '$LIB_ARG' not found" >&2
    exit 2
fi
# LD_PRELOAD must be absolute: several cases change directory.
LIB=$(realpath "$LIB_ARG")

PRELOAD_BIN=${PRELOAD_BIN:-$ROOT/build/preload}
PRELOAD_TIMEOUT=${PRELOAD_TIMEOUT:-120}
PRELOAD_ONLY=${PRELOAD_ONLY:-}
PRELOAD_LOGS=${PRELOAD_LOGS:-$ROOT/build/preload/logs}
CC=${CC:-cc}

# errno_free only asserts "the library really is memalloc" (ma_malloc is
# exported and malloc resolves into it) when we are testing memalloc.
case $(basename "$LIB") in
    *memalloc*) MEMALLOC_EXPECT=1 ;;
    *) MEMALLOC_EXPECT=0 ;;
esac

# Everything both runs see is fixed here, so differences come from the
# allocator and nothing else.
export LC_ALL=C TZ=UTC
unset LD_PRELOAD MALLOC_CHECK_ MALLOC_PERTURB_ PYTHONMALLOC 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-preload.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

FAILED=0
PASSED=0

# ---- building the C programs ----

PROGS=(fork_mt threads_churn errno_free)
mkdir -p "$PRELOAD_BIN"
for p in "${PROGS[@]}"; do
    src=$HERE/$p.c
    bin=$PRELOAD_BIN/$p
    if [[ ! -x $bin || $src -nt $bin ]]; then
        if ! $CC -O2 -g -pthread -Wall -Wextra -Werror -o "$bin" "$src" 2>"$TMP/cc.err"; then
            echo "FAIL build $p: $(head -c 400 "$TMP/cc.err" | tr '\n' ' ')"
            FAILED=1
        fi
    fi
done

# ---- running one case ----

# run_mode MODE DIR CMD...: runs CMD with the allocator MODE (sys or pre),
# stdout and stderr into DIR/MODE.out and DIR/MODE.err, exit status into
# DIR/MODE.rc. The command is bounded by timeout (TERM, then KILL 10 s later).
run_mode() {
    local mode=$1 dir=$2
    shift 2
    local rc=0
    local -a envs=()
    if [[ $mode == pre ]]; then
        envs=("LD_PRELOAD=$LIB" "MEMALLOC_EXPECT=$MEMALLOC_EXPECT")
    fi
    # the outer 2>/dev/null silences bash's own "Segmentation fault" notice;
    # the exit status still says which signal ended the run
    { timeout -k 10 "$PRELOAD_TIMEOUT" env "${envs[@]}" "$@" \
        >"$dir/$mode.out" 2>"$dir/$mode.err" </dev/null; } 2>/dev/null || rc=$?
    echo "$rc" >"$dir/$mode.rc"
}

# describe_rc RC: a phrase for an exit status.
describe_rc() {
    local rc=$1
    if [[ $rc == 124 ]]; then
        echo "timed out after ${PRELOAD_TIMEOUT}s (hang or deadlock?)"
    elif [[ $rc == 137 ]]; then
        echo "killed after ignoring the timeout (hang or deadlock?)"
    elif (( rc > 128 )); then
        echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
    else
        echo "exit status $rc"
    fi
}

# first_line FILE: the first non-empty line of FILE, shortened.
first_line() {
    grep -m1 -v '^[[:space:]]*$' "$1" 2>/dev/null | cut -c1-200 || true
}

# first_diff A B: the first differing line pair of two files, on one line.
first_diff() {
    diff "$1" "$2" 2>/dev/null | grep -m2 '^[<>]' | cut -c1-160 | tr '\n' ' ' || true
}

# compare NAME DIR: decides PASS/FAIL from DIR/{sys,pre}.{out,err,rc}.
compare() {
    local name=$1 dir=$2 reason=
    local rs rp
    rs=$(cat "$dir/sys.rc")
    rp=$(cat "$dir/pre.rc")
    if [[ $rs != 0 ]]; then
        reason="reference run (system allocator) failed: $(describe_rc "$rs"): $(first_line "$dir/sys.err")"
    elif [[ $rp != 0 ]]; then
        reason="$(describe_rc "$rp"); stderr: $(first_line "$dir/pre.err")"
    elif ! cmp -s "$dir/sys.out" "$dir/pre.out"; then
        reason="stdout differs ($(wc -c <"$dir/sys.out") vs $(wc -c <"$dir/pre.out") bytes): $(first_diff "$dir/sys.out" "$dir/pre.out")"
    elif ! cmp -s "$dir/sys.err" "$dir/pre.err"; then
        reason="stderr differs: $(first_diff "$dir/sys.err" "$dir/pre.err")"
    fi
    if [[ -z $reason ]]; then
        echo "PASS $name"
        PASSED=$((PASSED + 1))
    else
        FAILED=1
        rm -rf "${PRELOAD_LOGS:?}/$name"
        mkdir -p "$PRELOAD_LOGS"
        cp -r "$dir" "$PRELOAD_LOGS/$name"
        echo "FAIL $name: $reason [logs: $PRELOAD_LOGS/$name]"
    fi
}

# wanted NAME: true if the case should run (PRELOAD_ONLY filter).
wanted() {
    [[ -z $PRELOAD_ONLY ]] && return 0
    [[ " $PRELOAD_ONLY " == *" $1 "* ]]
}

# run_case NAME CMD...: the same command on both allocators, compared.
run_case() {
    local name=$1
    shift
    wanted "$name" || return 0
    local dir=$TMP/case-$name
    mkdir -p "$dir"
    run_mode sys "$dir" "$@"
    run_mode pre "$dir" "$@"
    compare "$name" "$dir"
}

# ---- preflight: the library loads and is mapped into the process ----

if wanted preflight; then
    dir=$TMP/case-preflight
    mkdir -p "$dir"
    echo 0 >"$dir/sys.rc"
    : >"$dir/sys.out"
    : >"$dir/sys.err"
    run_mode pre "$dir" grep -c -F "$LIB" /proc/self/maps
    if [[ $(cat "$dir/pre.rc") == 0 && -s $dir/pre.out && ! -s $dir/pre.err ]]; then
        echo "PASS preflight"
        PASSED=$((PASSED + 1))
    else
        FAILED=1
        echo "FAIL preflight: library not mapped under LD_PRELOAD ($(describe_rc "$(cat "$dir/pre.rc")")): $(first_line "$dir/pre.err")"
    fi
fi

# ---- 1. ls: many small allocations, qsort, stdio, getpwuid/locale ----

if wanted ls; then
    dir=$TMP/case-ls
    mkdir -p "$dir"
    run_mode sys "$dir" ls -lR /usr/include
    run_mode pre "$dir" ls -lR /usr/include
    # /usr/include may change under us (a package being installed): if the
    # outputs differ, take a second reference and accept the preload run when
    # it matches that one.
    if ! cmp -s "$dir/sys.out" "$dir/pre.out"; then
        mv "$dir/sys.out" "$dir/sys1.out"
        run_mode sys "$dir" ls -lR /usr/include
    fi
    compare ls "$dir"
fi

# ---- 2. sort: big inputs, temporary files and merges, threads ----

SORT_IN=$TMP/sort-input.txt
if wanted sort || wanted sort-merge || wanted sort-keys || wanted sort-unique; then
    # ~5 MB of deterministic lines: word,number,word,text. A 32-bit LCG whose
    # products stay below 2^53, so awk's doubles compute it exactly.
    awk 'BEGIN {
        x = 20240601
        split("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", w, " ")
        for (i = 0; i < 120000; i++) {
            line = ""
            n = 0
            for (j = 0; j < 3; j++) {
                x = (x * 69069 + 1) % 4294967296
                n = int(x / 65536)
                line = line w[n % 12 + 1] (n % 997) ","
            }
            x = (x * 69069 + 1) % 4294967296
            len = int(x / 16777216) % 40
            tail = ""
            for (k = 0; k < len; k++) {
                x = (x * 69069 + 1) % 4294967296
                tail = tail sprintf("%c", 97 + int(x / 16777216) % 26)
            }
            printf "%s%d,%s\n", line, int(x / 4096) % 100000, tail
        }
    }' >"$SORT_IN"
fi
run_case sort sort "$SORT_IN"
run_case sort-merge sort -S 1M -T "$TMP" --parallel=2 "$SORT_IN"
run_case sort-keys sort -s -t, -k4,4n -k2,2r "$SORT_IN"
run_case sort-unique env LC_ALL=C.UTF-8 sort -u -f -t, -k1,1 -k3,3 "$SORT_IN"

# ---- 3. python: dicts, lists, sets, strings, threads on malloc ----

# Resolve the real interpreter: python3 may be a shell shim (pyenv).
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3 || true)
if [[ -n $PY ]]; then
    run_case python env PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$PY" "$HERE/py_workload.py"
elif wanted python; then
    FAILED=1
    echo "FAIL python: python3 not found"
fi

# ---- 4. git: init, add, commit, diff, log, gc on a scratch repository ----

# Each run gets its own directory with the same relative layout; the script
# prints nothing that depends on the directory's name.
if wanted git; then
    dir=$TMP/case-git
    mkdir -p "$dir/sys-repo" "$dir/pre-repo"
    run_mode sys "$dir" bash "$HERE/git_case.sh" "$dir/sys-repo"
    run_mode pre "$dir" bash "$HERE/git_case.sh" "$dir/pre-repo"
    compare git "$dir"
fi

# ---- 5-7. the C programs ----

run_case fork_mt "$PRELOAD_BIN/fork_mt"
run_case threads_churn "$PRELOAD_BIN/threads_churn"
run_case errno_free "$PRELOAD_BIN/errno_free"

if [[ $FAILED != 0 ]]; then
    echo "preload tests: FAILED (library: $LIB)"
    exit 1
fi
echo "preload tests: all $PASSED passed (library: $LIB)"
