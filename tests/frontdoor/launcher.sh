#!/bin/sh
# tests/frontdoor/launcher.sh - the memalloc launcher on real programs.
#
#   VERSION=0.1.0 tests/frontdoor/launcher.sh [LAUNCHER]   (default build/memalloc)
#
# Checks that the library is really preloaded (it is mapped into the
# program, the exit statistics appear, the statistics file and heap map are
# written), that each option sets its variable, that the program's output
# and exit status are its own, and that usage errors give one line and
# status 2. Prints one line per check and exits 1 if any failed.
set -eu

LAUNCHER=${1:-build/memalloc}
VERSION=${VERSION:?VERSION must be set (the Makefile passes it)}
case $LAUNCHER in
/*) ;;
*) LAUNCHER=$PWD/$LAUNCHER ;;
esac
LIB=$(cd "$(dirname "$LAUNCHER")" && pwd -P)/libmemalloc.so
TOP=$PWD

T=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-launcher.XXXXXX")
trap 'rm -rf "$T"' EXIT

failed=0
ok() { echo "ok   $1"; }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
}
# check DESCRIPTION COMMAND...: ok if COMMAND succeeds.
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}
# run COMMAND...: runs it with stdout in $T/out, stderr in $T/err and its
# exit status in $rc.
run() {
    rc=0
    "$@" > "$T/out" 2> "$T/err" || rc=$?
}
has() { grep -q -- "$1" "$2"; }
lines() { wc -l < "$1" | tr -d ' '; }
# A usage error: status $1, nothing on stdout, exactly the line $2 on stderr.
usage_error() {
    [ "$rc" = "$1" ] && [ ! -s "$T/out" ] && [ "$(lines "$T/err")" = 1 ] && [ "$(cat "$T/err")" = "$2" ]
}

# ---- --version, --help ----
run "$LAUNCHER" --version
check "--version prints 'memalloc $VERSION'" \
    test "$rc" = 0 -a "$(cat "$T/out")" = "memalloc $VERSION" -a ! -s "$T/err"
run "$LAUNCHER" --help
check "--help: status 0, usage on stdout, every option listed" \
    sh -c '[ "$1" = 0 ] && [ ! -s "$2/err" ] && grep -q "^usage: memalloc" "$2/out" &&
           for o in --arenas --check --stats --stats=json --stats-file --heap-map --prof --verbose --version --help; do
               grep -qE -- "^ +(-h, )?$o( |\$)" "$2/out" || exit 1; done' sh "$rc" "$T"
run "$LAUNCHER" -h
check "-h is --help" test "$rc" = 0 -a -s "$T/out"

# ---- usage errors: one line, status 2 ----
run "$LAUNCHER" --foo ls
check "unknown option: status 2, one line" usage_error 2 "memalloc: unknown option --foo; see memalloc --help"
run "$LAUNCHER" -x ls
check "unknown short option: status 2, one line" usage_error 2 "memalloc: unknown option -x; see memalloc --help"
run "$LAUNCHER"
check "no program: status 2, one line" usage_error 2 "memalloc: no program to run; see memalloc --help"
run "$LAUNCHER" --stats --check
check "options but no program: status 2, one line" usage_error 2 "memalloc: no program to run; see memalloc --help"
run "$LAUNCHER" --arenas
check "--arenas without its value: status 2, one line" usage_error 2 "memalloc: --arenas needs a value; see memalloc --help"
run "$LAUNCHER" --arenas abc ls
check "--arenas abc: status 2, one line" usage_error 2 "memalloc: --arenas needs a number, not 'abc'; see memalloc --help"
run "$LAUNCHER" --stats=xml ls
check "--stats=xml: status 2, one line" usage_error 2 "memalloc: --stats takes json or table, not 'xml'; see memalloc --help"
run "$LAUNCHER" --check=1 ls
check "--check=1 (a flag given a value): status 2, one line" usage_error 2 "memalloc: --check takes no value; see memalloc --help"
run "$LAUNCHER" memalloc-no-such-program
check "a program that does not exist: status 127, one line" \
    usage_error 127 "memalloc: memalloc-no-such-program: command not found"
run "$LAUNCHER" "$T"
check "a directory as the program: status 126, one line" usage_error 126 "memalloc: $T: not an executable file"

# ---- the program's exit status and arguments are its own ----
run "$LAUNCHER" sh -c 'exit 7'
check "exit status passed through (sh -c 'exit 7' gives 7)" test "$rc" = 7
run "$LAUNCHER" -- sh -c 'exit 3'
check "-- ends the options (sh -c 'exit 3' gives 3)" test "$rc" = 3
run "$LAUNCHER" sh -c 'kill -TERM $$'
check "death by SIGTERM passed through (status 143)" test "$rc" = 143
run "$LAUNCHER" echo --stats -x
check "options after PROGRAM are PROGRAM's (echo --stats -x)" \
    test "$rc" = 0 -a "$(cat "$T/out")" = "--stats -x" -a ! -s "$T/err"

# ---- the library is preloaded ----
run "$LAUNCHER" cat /proc/self/maps
check "the program maps $LIB" has " $LIB\$" "$T/out"
run "$LAUNCHER" sh -c 'printf "%s\n" "$LD_PRELOAD"'
check "LD_PRELOAD is the library alone when it was unset" test "$(cat "$T/out")" = "$LIB"
printf 'int memalloc_frontdoor_dummy;\n' > "$T/dummy.c"
${CC:-cc} -shared -fPIC -o "$T/dummy.so" "$T/dummy.c"
# The shell prints LD_PRELOAD, then the paths of both libraries as its own
# /proc/PID/maps lists them.
run env LD_PRELOAD="$T/dummy.so" "$LAUNCHER" sh -c 'printf "%s\n" "$LD_PRELOAD"; grep -F -e dummy.so -e libmemalloc.so /proc/$$/maps | awk "{print \$6}" | sort -u'
check "an existing LD_PRELOAD is kept in front, memalloc appended, both loaded" \
    test "$(sed -n 1p "$T/out")" = "$T/dummy.so:$LIB" -a \
    "$(sed -n '2,$p' "$T/out")" = "$(printf '%s\n' "$T/dummy.so" "$LIB" | sort -u)"
run "$LAUNCHER" "$LAUNCHER" sh -c 'printf "%s\n" "$LD_PRELOAD"'
check "a launcher run under the launcher does not add the library twice" test "$(cat "$T/out")" = "$LIB"

# ---- statistics: ls, sort, python3 ----
(cd "$TOP" && ls -lR tests/frontdoor docs) > "$T/ls.plain"
run sh -c 'cd "$1" && shift && exec "$@"' sh "$TOP" "$LAUNCHER" --stats ls -lR tests/frontdoor docs
check "--stats ls -lR: same listing as without memalloc" cmp -s "$T/out" "$T/ls.plain"
check "--stats ls -lR: the statistics table and leak summary on stderr" \
    sh -c 'grep -q "^memalloc statistics" "$1" && grep -q "^still allocated:" "$1" && grep -q "^total " "$1"' sh "$T/err"

seq 1 20000 | awk '{ print ($1 * 7919) % 20011 }' > "$T/numbers"
sort -n "$T/numbers" > "$T/sorted.plain"
run "$LAUNCHER" --stats-file "$T/sort-stats.txt" sort -n "$T/numbers"
check "--stats-file sort: same output as without memalloc" cmp -s "$T/out" "$T/sorted.plain"
check "--stats-file sort: nothing on stderr" test ! -s "$T/err"
check "--stats-file sort: the file holds the statistics table" \
    sh -c 'head -1 "$1" | grep -q "^memalloc statistics" && grep -q "^still allocated:" "$1"' sh "$T/sort-stats.txt"

run env MEMALLOC_STATS=json "$LAUNCHER" --stats-file "$T/sort-stats.json" sort -n "$T/numbers"
check "--stats-file with MEMALLOC_STATS=json already set: the file holds JSON" \
    sh -c 'head -c 29 "$1" | grep -q "^{\"schema\":\"memalloc-stats\""' sh "$T/sort-stats.json"

# A relative file name is taken from where memalloc ran, even though the
# program then changes directory.
mkdir "$T/here" "$T/there"
run sh -c 'cd "$1/here" && exec "$2" --stats-file rel.txt sh -c "cd \"\$0\" && ls >/dev/null" "$1/there"' sh "$T" "$LAUNCHER"
check "--stats-file rel.txt is written where memalloc ran, not where the program went" \
    sh -c '[ "$1" = 0 ] && [ -s "$2/here/rel.txt" ] && [ ! -e "$2/there/rel.txt" ]' sh "$rc" "$T"

run "$LAUNCHER" --stats=json python3 -c 'import json; print(json.dumps(sorted({str(i): i for i in range(1000)}.values())[:3]))'
check "--stats=json python3: the program's output" test "$rc" = 0 -a "$(cat "$T/out")" = "[0, 1, 2]"
# Every line on stderr is a memalloc-stats JSON object (a python3 that is a
# wrapper script prints one per process); parsed with memalloc not loaded.
check "--stats=json python3: stderr holds only memalloc-stats JSON lines" python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no report"
for line in lines:
    d = json.loads(line)
    assert d["schema"] == "memalloc-stats" and d["version"] == 1, line[:80]
    assert d["totals"]["allocs"] > 0 and "leaks" in d, line[:80]
' "$T/err"

run "$LAUNCHER" --check python3 -c '
import threading
out = []
def work(k):
    d = {}
    for i in range(20000):
        d[i] = str(i * k)
    out.append(sum(len(v) for v in d.values()))
ts = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
for t in ts: t.start()
for t in ts: t.join()
print(len(out))'
check "--check python3 with 4 threads: runs clean" test "$rc" = 0 -a "$(cat "$T/out")" = 4 -a ! -s "$T/err"

run "$LAUNCHER" --heap-map "$T/heap.svg" ls /
check "--heap-map: an SVG file is written" sh -c '[ "$1" = 0 ] && grep -q "<svg" "$2" && grep -q "</svg>" "$2"' sh "$rc" "$T/heap.svg"

# ---- options become variables ----
run "$LAUNCHER" --arenas 3 --verbose ls /
check "--arenas 3 --verbose: the library reports MEMALLOC_ARENAS=3" \
    sh -c 'grep -q "^memalloc: MEMALLOC_ARENAS=3 (set)" "$1" && grep -q "^memalloc: MEMALLOC_VERBOSE=1 (set)" "$1"' sh "$T/err"
run "$LAUNCHER" --arenas=5 --check --verbose ls /
check "--arenas=5 --check: MEMALLOC_ARENAS=5, MEMALLOC_CHECK=1" \
    sh -c 'grep -q "^memalloc: MEMALLOC_ARENAS=5 (set)" "$1" && grep -q "^memalloc: MEMALLOC_CHECK=1 (set)" "$1"' sh "$T/err"
run env MEMALLOC_CHUNK_SIZE=2M "$LAUNCHER" --verbose ls /
check "MEMALLOC_* variables already set are passed on" has "^memalloc: MEMALLOC_CHUNK_SIZE=2097152 (set)" "$T/err"
run sh -c 'cd "$1" && exec "$2" --prof prof.out sh -c "echo \"\$MEMALLOC_PROF \$MEMALLOC_PROF_FILE\""' sh "$T" "$LAUNCHER"
check "--prof FILE sets MEMALLOC_PROF=1 and an absolute MEMALLOC_PROF_FILE" test "$(cat "$T/out")" = "1 $T/prof.out"
run "$LAUNCHER" --stats=table sh -c 'echo "$MEMALLOC_STATS"'
check "--stats=table sets MEMALLOC_STATS=table" test "$(cat "$T/out")" = table

if [ "$failed" -gt 0 ]; then
    echo "launcher: $failed check(s) failed"
    exit 1
fi
echo "launcher: every check passed"
