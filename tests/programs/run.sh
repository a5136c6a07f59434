#!/usr/bin/env bash
# tests/programs/run.sh - real programs and thread/process stress runs under
# LD_PRELOAD=<library>, each compared with the same run on the system
# allocator.
#
# Usage: tests/programs/run.sh [path/to/libmemalloc.so]
#
# Cases (one "PASS name" or "FAIL name: why" line each):
#   python        CPython's own regression tests (PYTHONMALLOC=malloc, so
#                 every object is malloc'd), /usr/bin/python3 -m test -j2;
#                 per module, the memalloc run must pass wherever the system
#                 allocator run passes
#   redis         redis-server driven by redis-benchmark (requests/s of both
#                 runs go to the results file), then a data set written,
#                 read back, mutated and read again; replies and DEBUG DIGEST
#                 must match; once more with MEMALLOC_CHECK=1 (canaries)
#   gcc           gcc -O2 -c on a generated 2000-function file: the object
#                 files must be byte-identical
#   git           tests/programs/git_work.sh on a 3000-file scratch repo:
#                 identical output (object ids, status, log, gc, fsck, ...)
#   sqlite        tests/programs/sqlite_work.sql, a million rows in memory:
#                 identical output
#   lua           tests/programs/lua_work.lua at depth 16 (Lua allocates
#                 every object with realloc(NULL, n)): identical output
#   thread_churn, ring_storm, fork_storm, mem_return
#                 the C programs of this directory (see each file's header);
#                 each must succeed on both allocators
#
# Environment:
#   PROGRAMS_BIN      where the C programs are, and where results.txt and
#                     logs/ go (default: build/programs); missing or stale
#                     programs are compiled there with $CC
#   PROGRAMS_ONLY     space-separated case names to run (default: all)
#   PROGRAMS_TIMEOUT  multiplier for every time limit (default 1); limits
#                     only turn a hang into a FAIL, no case measures time
#
# Exit status: 0 when every case passed, 1 otherwise, 2 on a setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

LIB_ARG=${1:-$ROOT/build/libmemalloc.so}
if [[ ! -f $LIB_ARG ]]; then
    echo "FAIL setup: library '$LIB_ARG' not found" >&2
    exit 2
fi
LIB=$(realpath "$LIB_ARG")   # absolute: cases change directory

PROGRAMS_BIN=$(mkdir -p "${PROGRAMS_BIN:-$ROOT/build/programs}" && cd "${PROGRAMS_BIN:-$ROOT/build/programs}" && pwd)
PROGRAMS_ONLY=${PROGRAMS_ONLY:-}
PROGRAMS_TIMEOUT=${PROGRAMS_TIMEOUT:-1}
CC=${CC:-cc}
PY=/usr/bin/python3          # Debian's, with the test package; not a pyenv one
RESULTS=$PROGRAMS_BIN/results.txt
LOGS=$PROGRAMS_BIN/logs

# Everything both runs see is fixed here, so differences come from the
# allocator alone.
export LC_ALL=C TZ=UTC
unset LD_PRELOAD MALLOC_CHECK_ MALLOC_PERTURB_ PYTHONMALLOC PYTHONPATH PYTHONHOME 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-programs.XXXXXX")
REDIS_PID=
REDIS_PORT=
WHY=
cleanup() {
    if [[ -n $REDIS_PID ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

rm -rf "$LOGS"
mkdir -p "$LOGS"
START=$(date +%s)
{
    echo "# tests/programs/run.sh results"
    echo "# library: $LIB"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -srm), $(nproc) CPUs"
    echo "# 'sys' is the system allocator (glibc; Debian's redis-server: its own"
    echo "# jemalloc), 'memalloc' the same run with LD_PRELOAD=$LIB_ARG"
} >"$RESULTS"

FAILED=0
PASSED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() {
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
    echo "FAIL $1: $2" >>"$RESULTS"
}
result() { echo "$*" >>"$RESULTS"; }
wanted() { [[ -z $PROGRAMS_ONLY || " $PROGRAMS_ONLY " == *" $1 "* ]]; }
limit() { echo $(($1 * PROGRAMS_TIMEOUT)); }

# bounded SECS CMD...: runs CMD under timeout (TERM, then KILL 10 s later);
# returns its exit status (124/137 on timeout) without tripping set -e.
bounded() {
    local secs
    secs=$(limit "$1")
    shift
    local rc=0
    timeout -k 10 "$secs" "$@" || rc=$?
    return "$rc"
}

# describe RC SECS: a phrase for an exit status
describe() {
    local rc=$1 secs
    secs=$(limit "$2")
    if [[ $rc == 124 || $rc == 137 ]]; then
        echo "timed out after ${secs}s (hang or deadlock?)"
    elif ((rc > 128)); then
        echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
    else
        echo "exit status $rc"
    fi
}

# first_line FILE: the first line worth quoting from a log (a memalloc
# message if there is one)
first_line() {
    local l
    l=$(grep -m1 -E 'memalloc: |FAIL|Error|error|corrupt|failed' "$1" 2>/dev/null || true)
    [[ -n $l ]] || l=$(head -n 1 "$1" 2>/dev/null || true)
    echo "${l:0:300}"
}

# keep NAME FILES...: keeps a failing case's files in the logs directory
keep() {
    local name=$1
    shift
    mkdir -p "$LOGS/$name"
    cp -r "$@" "$LOGS/$name/" 2>/dev/null || true
}

need() {
    local miss=() c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || [[ -x $c ]] || miss+=("$c")
    done
    if ((${#miss[@]})); then
        echo "missing: ${miss[*]} (make deps installs them)"
        return 1
    fi
}

echo "== tests/programs: library $LIB"

# ---- the C programs ----

PROGS=(thread_churn ring_storm fork_storm mem_return)
for p in "${PROGS[@]}"; do
    bin=$PROGRAMS_BIN/$p
    if [[ ! -x $bin || $HERE/$p.c -nt $bin || $HERE/common.h -nt $bin ]]; then
        if ! $CC -O2 -g -pthread -Wall -Wextra -Werror -o "$bin" "$HERE/$p.c" 2>"$TMP/cc.err"; then
            fail "build $p" "$(head -c 400 "$TMP/cc.err" | tr '\n' ' ')"
        fi
    fi
done

# c_case NAME SECS ARGS...: runs a program of this directory on both
# allocators (extra environment for the memalloc run in C_CASE_ENV); both
# must exit 0. Its "prog: key=value" lines go to the results.
c_case() {
    local name=$1 secs=$2
    shift 2
    local bin=$PROGRAMS_BIN/$1
    shift
    local dir=$TMP/$name rc
    mkdir -p "$dir"
    if [[ ! -x $bin ]]; then
        fail "$name" "program $bin was not built"
        return
    fi
    rc=0
    bounded "$secs" "$bin" "$@" >"$dir/sys.out" 2>"$dir/sys.err" </dev/null || rc=$?
    if [[ $rc != 0 ]]; then
        keep "$name" "$dir"
        fail "$name" "system allocator run failed ($(describe "$rc" "$secs")): $(first_line "$dir/sys.err") [logs: $LOGS/$name]"
        return
    fi
    rc=0
    bounded "$secs" env LD_PRELOAD="$LIB" MEMALLOC_EXPECT=1 ${C_CASE_ENV:-} "$bin" "$@" \
        >"$dir/pre.out" 2>"$dir/pre.err" </dev/null || rc=$?
    grep -E '=' "$dir/sys.out" | sed -e 's/^[a-z_]*: //' -e "s/^/sys      $name: /" >>"$RESULTS" || true
    grep -E '=' "$dir/pre.out" | sed -e 's/^[a-z_]*: //' -e "s/^/memalloc $name: /" >>"$RESULTS" || true
    if [[ $rc != 0 ]]; then
        keep "$name" "$dir"
        fail "$name" "memalloc run failed ($(describe "$rc" "$secs")): $(first_line "$dir/pre.err") [logs: $LOGS/$name]"
        return
    fi
    pass "$name"
}

if wanted thread_churn; then
    c_case thread_churn 600 thread_churn
fi
if wanted ring_storm; then
    c_case ring_storm 600 ring_storm 8
    C_CASE_ENV=MEMALLOC_ARENAS=8 c_case ring_storm_8_arenas 600 ring_storm 8
    C_CASE_ENV=MEMALLOC_ARENAS=1 c_case ring_storm_1_arena 600 ring_storm 4
fi
if wanted fork_storm; then
    c_case fork_storm 600 fork_storm
fi
if wanted mem_return; then
    c_case mem_return 900 mem_return
fi

# ---- Python's regression tests ----

# Modules that allocate hard: containers, strings, bytes, the cyclic GC,
# weak references, serialisation, regexes, threads. Measured on the 2-core
# CI-sized machine: about 80 s with -j2 on glibc, every one passing.
# Not included, each measured: test_io (34 s on its own, mostly I/O),
# test_sqlite3 (Debian's libpython3.11-testsuite does not ship it:
# "No module named 'test.test_sqlite3'" on glibc too; the sqlite case below
# covers SQLite), test_str (not a module in 3.11: test_unicode is).
PY_MODULES=(
    test_dict test_list test_set test_tuple test_bytes test_unicode test_string
    test_memoryview test_array test_struct test_deque test_heapq test_bisect
    test_sort test_ordered_dict test_collections test_itertools test_functools
    test_builtin test_copy test_userdict test_userlist test_enum test_dataclasses
    test_gc test_weakref test_threading test_thread test_threading_local test_queue
    test_json test_pickle test_marshal test_csv test_xml_etree test_re
    test_decimal test_long test_float test_unicodedata test_ast
    test_zlib test_bz2 test_lzma test_hashlib
)

# py_status LOG: "module status" lines from a regrtest log
py_status() {
    grep -oE '\] test_[A-Za-z0-9_]+ (passed|failed|skipped|crashed|timed out|interrupted|resource denied|run no tests)' "$1" \
        | sed -e 's/^\] //' -e 's/ timed out$/ timed_out/' -e 's/ resource denied$/ skipped/' \
              -e 's/ run no tests$/ no_tests/' | sort -u
}

py_run() {
    local mode=$1 dir=$2 rc=0
    local -a envs=(PYTHONMALLOC=malloc TMPDIR="$dir/tmp")
    [[ $mode == pre ]] && envs+=(LD_PRELOAD="$LIB")
    mkdir -p "$dir/tmp" "$dir/cwd"
    (cd "$dir/cwd" && bounded 1500 env "${envs[@]}" "$PY" -m test -j2 --timeout "$(limit 900)" \
        "${PY_MODULES[@]}" >"$dir/$mode.log" 2>&1 </dev/null) || rc=$?
    echo "$rc" >"$dir/$mode.rc"
    py_status "$dir/$mode.log" >"$dir/$mode.status"
}

if wanted python; then
    dir=$TMP/python
    mkdir -p "$dir"
    if ! why=$(need "$PY"); then
        fail python "$why"
    elif [[ ! -f /usr/lib/python3.11/test/libregrtest/__init__.py ]] && ! "$PY" -c 'import test.libregrtest' 2>/dev/null; then
        fail python "CPython's test package is missing (Debian package libpython3.11-testsuite; make deps)"
    else
        # memalloc really serves Python's objects, and its heap is sound
        # after an interpreter start-up and a little work
        rc=0
        bounded 120 env PYTHONMALLOC=malloc LD_PRELOAD="$LIB" "$PY" -c '
import ctypes, json
data = [{"k": i, "v": str(i) * (i % 50)} for i in range(20000)]
assert json.loads(json.dumps(data)) == data
libc = ctypes.CDLL(None)
assert libc.ma_check() == 0
print("ma_check ok")' >"$dir/probe.out" 2>&1 || rc=$?
        if [[ $rc != 0 ]]; then
            keep python "$dir"
            fail python "python3 with memalloc preloaded: $(describe "$rc" 120): $(first_line "$dir/probe.out")"
        else
            py_run sys "$dir"
            py_run pre "$dir"
            # per module: memalloc must pass wherever the system allocator passes
            bad=()
            skipped_both=()
            for m in "${PY_MODULES[@]}"; do
                s=$(awk -v m="$m" '$1 == m { print $2 }' "$dir/sys.status")
                p=$(awk -v m="$m" '$1 == m { print $2 }' "$dir/pre.status")
                s=${s:-missing}
                p=${p:-missing}
                if [[ $s == passed && $p == failed ]]; then
                    # A plain test failure (not a crash or a hang) may be a
                    # timing-sensitive test on a busy machine: that module
                    # alone gets one more memalloc run, and the retry is
                    # written to the results either way.
                    rc=0
                    (cd "$dir/cwd" && bounded 900 env PYTHONMALLOC=malloc TMPDIR="$dir/tmp" LD_PRELOAD="$LIB" \
                        "$PY" -m test "$m" >"$dir/retry_$m.log" 2>&1 </dev/null) || rc=$?
                    if [[ $rc == 0 ]] && grep -q "^Tests result: SUCCESS" "$dir/retry_$m.log"; then
                        result "python: $m failed once with memalloc and passed when run again alone (flaky?)"
                        keep python "$dir/pre.log" "$dir/retry_$m.log"
                    else
                        bad+=("$m:$p(failed again alone)")
                    fi
                elif [[ $s == passed && $p != passed ]]; then
                    bad+=("$m:$p")
                elif [[ $s != passed && $p != passed && $p != "$s" ]]; then
                    bad+=("$m:$p(sys:$s)")
                elif [[ $s != passed ]]; then
                    skipped_both+=("$m:$s")
                fi
            done
            npass_sys=$(grep -c ' passed$' "$dir/sys.status" || true)
            npass_pre=$(grep -c ' passed$' "$dir/pre.status" || true)
            result "python: modules=${#PY_MODULES[@]} passed_sys=$npass_sys passed_memalloc=$npass_pre" \
                "(/usr/bin/python3 -m test -j2, PYTHONMALLOC=malloc)"
            result "python: duration_sys='$(grep -m1 'Total duration' "$dir/sys.log" | sed 's/Total duration: //')'" \
                "duration_memalloc='$(grep -m1 'Total duration' "$dir/pre.log" | sed 's/Total duration: //')'"
            result "python: modules run: ${PY_MODULES[*]}"
            if ((${#skipped_both[@]})); then
                result "python: not passing on the system allocator either (ignored): ${skipped_both[*]}"
            fi
            if ((${#bad[@]})); then
                keep python "$dir"
                fail python "modules that pass on the system allocator but not with memalloc: ${bad[*]} [logs: $LOGS/python]"
            elif [[ $npass_pre == 0 ]]; then
                keep python "$dir"
                fail python "no module passed at all (regrtest exit $(cat "$dir/pre.rc")) [logs: $LOGS/python]"
            else
                pass python
            fi
        fi
    fi
fi

# ---- Redis ----

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# redis_start MODE DIR [extra env...]: starts redis-server on a free
# loopback port, sets REDIS_PID and REDIS_PORT; returns 1 if it never
# answers PING.
redis_start() {
    local mode=$1 dir=$2
    shift 2
    local -a envs=("$@")
    [[ $mode != sys ]] && envs+=(LD_PRELOAD="$LIB")
    REDIS_PORT=$(free_port)
    mkdir -p "$dir"
    timeout -k 10 "$(limit 1800)" env "${envs[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
        --enable-debug-command local >"$dir/server.out" 2>&1 </dev/null &
    REDIS_PID=$!
    for _ in $(seq 1 200); do
        if [[ $(timeout 5 redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# redis_stop: SHUTDOWN NOSAVE, then the server's exit status (0 expected).
# A server that does not go within 30 s gets TERM (timeout passes it on),
# then KILL.
redis_stop() {
    local rc=0
    [[ -n $REDIS_PID ]] || return 0
    timeout 10 redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 300); do
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        sleep 10
        pkill -KILL -P "$REDIS_PID" 2>/dev/null || true
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    wait "$REDIS_PID" || rc=$?
    REDIS_PID=
    return "$rc"
}

rcli() { bounded 120 redis-cli -p "$REDIS_PORT" "$@"; }

# redis_bench MODE DIR: the benchmark runs, "mode label TEST rps" lines into
# DIR/bench.txt
REDIS_TESTS=set,get,lpush,lpop,hset
REDIS_BENCH=(
    "d16:-n 50000 -d 16"
    "d16_P16:-n 200000 -P 16 -d 16"
    "d512_P16:-n 200000 -P 16 -d 512"
    "d4096_P16:-n 100000 -P 16 -d 4096"
)
redis_bench() {
    local mode=$1 dir=$2 b label args
    for b in "${REDIS_BENCH[@]}"; do
        label=${b%%:*}
        args=${b#*:}
        # shellcheck disable=SC2086
        bounded 300 redis-benchmark -p "$REDIS_PORT" -r 30000 $args -t "$REDIS_TESTS" --csv \
            >"$dir/bench_$label.csv" 2>"$dir/bench_$label.err" || return 1
        tr -d '"' <"$dir/bench_$label.csv" | awk -F, -v m="$mode" -v l="$label" \
            'NR > 1 && $2 + 0 > 0 { print m, l, $1, $2 }' >>"$dir/bench.txt"
    done
}

# redis_consistency DIR: writes the data set, reads it back, mutates it and
# reads it again; replies must be the expected ones. DEBUG DIGEST values
# and memory figures go to DIR/digest.txt (compared between runs).
redis_consistency() {
    local dir=$1 A=$HERE/redis_data.awk
    rcli flushall >/dev/null || return 1
    awk -v what=load -f "$A" | bounded 300 redis-cli -p "$REDIS_PORT" --pipe >"$dir/load.out" 2>&1 || return 1
    grep -q 'errors: 0, replies: 25000' "$dir/load.out" || { echo "loading: $(tail -n 1 "$dir/load.out")"; return 1; }
    awk -v what=probe -f "$A" | rcli >"$dir/probe1.out" || return 1
    awk -v what=expect -f "$A" >"$dir/expect1.out"
    cmp -s "$dir/probe1.out" "$dir/expect1.out" || { echo "replies after loading differ from the data written"; return 1; }
    echo "digest1 $(rcli debug digest)" >"$dir/digest.txt"
    awk -v what=mutate -f "$A" | bounded 300 redis-cli -p "$REDIS_PORT" --pipe >"$dir/mutate.out" 2>&1 || return 1
    grep -q 'errors: 0,' "$dir/mutate.out" || { echo "mutating: $(tail -n 1 "$dir/mutate.out")"; return 1; }
    awk -v what=probe2 -f "$A" | rcli >"$dir/probe2.out" || return 1
    awk -v what=expect2 -f "$A" >"$dir/expect2.out"
    cmp -s "$dir/probe2.out" "$dir/expect2.out" || { echo "replies after the changes differ from the expected ones"; return 1; }
    echo "digest2 $(rcli debug digest)" >>"$dir/digest.txt"
    rcli info memory | tr -d '\r' | grep -E '^used_memory(_rss)?:' >"$dir/memory.txt" || true
}

# redis_mode MODE DIR BENCH [env...]: one server life: benchmark (if BENCH
# is 1), consistency, shutdown. Sets WHY and returns 1 on failure. Not run in a
# subshell, so that REDIS_PID stays known to the EXIT trap.
redis_mode() {
    local mode=$1 dir=$2 bench=$3
    shift 3
    if ! redis_start "$mode" "$dir" "$@"; then
        WHY="redis-server ($mode) did not answer PING: $(first_line "$dir/server.out") $(tail -n 2 "$dir/redis.log" 2>/dev/null | tr '\n' ' ')"
        redis_stop || true
        return 1
    fi
    if [[ $bench == 1 ]]; then
        if ! redis_bench "$mode" "$dir"; then
            WHY="redis-benchmark failed against the $mode server: $(cat "$dir"/bench_*.err | head -n 2 | tr '\n' ' ')"
            redis_stop || true
            return 1
        fi
        rcli info memory | tr -d '\r' | grep -E '^used_memory(_rss|_peak)?:' >"$dir/memory_bench.txt" || true
    fi
    if [[ $bench == 2 ]]; then
        bounded 300 redis-benchmark -p "$REDIS_PORT" -r 10000 -n 20000 -P 16 -d 512 -t "$REDIS_TESTS" -q \
            >"$dir/bench_small.out" 2>&1 || { WHY="redis-benchmark failed ($mode)"; redis_stop || true; return 1; }
    fi
    local why
    if ! why=$(redis_consistency "$dir"); then
        WHY="consistency check ($mode): ${why:-redis-cli failed}"
        redis_stop || true
        return 1
    fi
    local rc=0
    redis_stop || rc=$?
    if [[ $rc != 0 ]]; then
        WHY="redis-server ($mode) ended with $(describe "$rc" 1800): $(first_line "$dir/server.out") $(grep -m1 -iE 'crash|memalloc' "$dir/redis.log" || true)"
        return 1
    fi
    if grep -qE 'memalloc: ' "$dir/server.out" "$dir/redis.log" 2>/dev/null; then
        WHY="memalloc reported a problem: $(grep -hm1 'memalloc: ' "$dir/server.out" "$dir/redis.log")"
        return 1
    fi
}

if wanted redis; then
    dir=$TMP/redis
    mkdir -p "$dir"
    if ! why=$(need redis-server redis-cli redis-benchmark "$PY"); then
        fail redis "$why"
    elif ! redis_mode sys "$dir/sys" 1; then
        keep redis "$dir"
        fail redis "system allocator run: $WHY [logs: $LOGS/redis]"
    elif ! redis_mode pre "$dir/pre" 1; then
        keep redis "$dir"
        fail redis "memalloc run: $WHY [logs: $LOGS/redis]"
    elif ! redis_mode check "$dir/check" 2 MEMALLOC_CHECK=1; then
        keep redis "$dir"
        fail redis "memalloc run with MEMALLOC_CHECK=1: $WHY [logs: $LOGS/redis]"
    elif ! cmp -s "$dir/sys/digest.txt" "$dir/pre/digest.txt" || ! cmp -s "$dir/sys/digest.txt" "$dir/check/digest.txt"; then
        keep redis "$dir"
        fail redis "DEBUG DIGEST of the data set differs between the runs [logs: $LOGS/redis]"
    else
        {
            echo "redis: redis-benchmark -r 30000 -t $REDIS_TESTS --csv, requests per second (sys = Debian's jemalloc-linked build unchanged):"
            printf '%-9s %-10s %-6s %12s %12s\n' redis-rps config test sys memalloc
            join -j1 <(awk '{ print $2 "/" $3, $4 }' "$dir/sys/bench.txt" | sort) \
                     <(awk '{ print $2 "/" $3, $4 }' "$dir/pre/bench.txt" | sort) |
                awk '{ split($1, k, "/"); printf "redis-rps %-10s %-6s %12.0f %12.0f\n", k[1], k[2], $2, $3 }'
            for m in sys pre; do
                echo "redis: $m memory after the benchmarks: $(tr '\n' ' ' <"$dir/$m/memory_bench.txt")"
                echo "redis: $m memory after FLUSHALL, loading and changing the data set: $(tr '\n' ' ' <"$dir/$m/memory.txt")"
            done
        } >>"$RESULTS"
        pass redis
    fi
fi

# ---- compilers and tools ----

# same_output NAME SECS CMD...: runs CMD (a shell command line, in a fresh
# directory each time) on both allocators; exit statuses must be 0 and
# stdout identical.
same_output() {
    local name=$1 secs=$2 cmd=$3
    local dir=$TMP/$name rc mode
    for mode in sys pre; do
        mkdir -p "$dir/$mode"
        local -a envs=()
        [[ $mode == pre ]] && envs=(LD_PRELOAD="$LIB")
        rc=0
        (cd "$dir/$mode" && bounded "$secs" env "${envs[@]}" bash -c "$cmd" >"$dir/$mode.out" 2>"$dir/$mode.err" </dev/null) || rc=$?
        if [[ $rc != 0 ]]; then
            keep "$name" "$dir/sys.out" "$dir/sys.err" "$dir/$mode.out" "$dir/$mode.err"
            fail "$name" "$( [[ $mode == sys ]] && echo "system allocator" || echo memalloc) run: $(describe "$rc" "$secs"): $(first_line "$dir/$mode.err") [logs: $LOGS/$name]"
            return 1
        fi
    done
    if ! cmp -s "$dir/sys.out" "$dir/pre.out"; then
        keep "$name" "$dir/sys.out" "$dir/pre.out" "$dir/sys.err" "$dir/pre.err"
        fail "$name" "output differs between the system allocator and memalloc: $(diff "$dir/sys.out" "$dir/pre.out" | head -n 3 | tr '\n' ' ' | cut -c1-300) [logs: $LOGS/$name]"
        return 1
    fi
    return 0
}

if wanted gcc; then
    if ! why=$(need gcc "$PY"); then
        fail gcc "$why"
    else
        mkdir -p "$TMP/gcc-src"
        "$PY" "$HERE/gen_big_c.py" 2000 >"$TMP/gcc-src/big.c"
        # the object goes to stdout as a hex dump, so same_output compares it
        if same_output gcc 900 "gcc -O2 -c '$TMP/gcc-src/big.c' -o big.o && od -An -tx1 -v big.o | sha256sum && wc -c <big.o"; then
            result "gcc: $(wc -l <"$TMP/gcc-src/big.c") lines, 2000 functions; object $(tail -n 1 "$TMP/gcc/sys.out") bytes, identical"
            pass gcc
        fi
    fi
fi

if wanted git; then
    if ! why=$(need git awk); then
        fail git "$why"
    elif same_output git 900 "'$HERE/git_work.sh' \"\$PWD\""; then
        result "git: $(grep -m1 '^commit1' "$TMP/git/sys.out"); $(grep -A1 'ls-tree' "$TMP/git/sys.out" | tail -n 1) files; identical output"
        pass git
    fi
fi

if wanted sqlite; then
    if ! why=$(need sqlite3); then
        fail sqlite "$why"
    elif same_output sqlite 900 "sqlite3 :memory: <'$HERE/sqlite_work.sql'"; then
        if ! grep -q '^integrity|ok$' "$TMP/sqlite/sys.out"; then
            fail sqlite "integrity_check did not say ok"
        else
            result "sqlite: $(grep -m1 '^rows' "$TMP/sqlite/sys.out"); identical output"
            pass sqlite
        fi
    fi
fi

if wanted lua; then
    if ! why=$(need lua5.4); then
        fail lua "$why"
    elif same_output lua 600 "lua5.4 '$HERE/lua_work.lua' 16"; then
        result "lua: $(tr '\t\n' '  ' <"$TMP/lua/sys.out"); identical output"
        pass lua
    fi
fi

END=$(date +%s)
result "# total time: $((END - START)) s; passed $PASSED, failed $FAILED"
echo "== results in $RESULTS"
grep -vE '^#' "$RESULTS" | grep -E 'rss|rps|python:|redis:|soak|forks=' | sed 's/^/   /' || true
if [[ $FAILED != 0 ]]; then
    echo "programs: $PASSED passed, $FAILED failed"
    exit 1
fi
echo "programs: $PASSED passed, 0 failed"
