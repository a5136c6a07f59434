#!/bin/sh
# tests/frontdoor/make_targets.sh - `make install` and `make run`.
#
#   VERSION=0.1.0 MAKE=make BUILD=build tests/frontdoor/make_targets.sh
#
# Installs into a scratch PREFIX and checks that the installed launcher
# preloads the installed library (wherever the launcher is copied), that the
# man pages are installed where man finds them, and that DESTDIR stages
# without changing the paths the launcher uses; then runs `make run` and
# checks what the examples print. Prints one line per check and exits 1 if
# any failed.
set -eu

VERSION=${VERSION:?VERSION must be set (the Makefile passes it)}
MAKE=${MAKE:-make}
BUILD=${BUILD:-build}

T=$(mktemp -d "${TMPDIR:-/tmp}/memalloc-install.XXXXXX")
trap 'rm -rf "$T"' EXIT

failed=0
ok() { echo "ok   $1"; }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
}
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}

# ---- make install PREFIX=... ----
P=$T/prefix
if ! $MAKE --no-print-directory install BUILD="$BUILD" PREFIX="$P" > "$T/install.log" 2>&1; then
    cat "$T/install.log"
    echo "make_targets: make install PREFIX=$P failed"
    exit 1
fi
check "installed: bin/memalloc, lib/libmemalloc.so, man1/memalloc.1, man3/memalloc.3" \
    test -x "$P/bin/memalloc" -a -f "$P/lib/libmemalloc.so" \
    -a -f "$P/share/man/man1/memalloc.1" -a -f "$P/share/man/man3/memalloc.3"
check "installed launcher: --version says $VERSION" test "$("$P/bin/memalloc" --version)" = "memalloc $VERSION"

# The installed launcher names the installed library by its absolute path,
# so a copy of it anywhere else still preloads that library.
"$P/bin/memalloc" cat /proc/self/maps > "$T/maps"
check "installed launcher: the program maps $P/lib/libmemalloc.so" grep -q " $P/lib/libmemalloc.so\$" "$T/maps"
check "installed launcher: and no other libmemalloc" test "$(grep -c libmemalloc "$T/maps")" = "$(grep -c " $P/lib/libmemalloc.so\$" "$T/maps")"
mkdir "$T/elsewhere"
cp "$P/bin/memalloc" "$T/elsewhere/"
check "a copy of the installed launcher elsewhere preloads the installed library" \
    test "$("$T/elsewhere/memalloc" sh -c 'printf "%s\n" "$LD_PRELOAD"')" = "$P/lib/libmemalloc.so"
rc=0
"$P/bin/memalloc" --stats ls / > "$T/ls.out" 2> "$T/ls.err" || rc=$?
check "installed launcher: --stats ls / prints the statistics" \
    sh -c '[ "$1" = 0 ] && [ -s "$2" ] && grep -q "^memalloc statistics" "$3"' sh "$rc" "$T/ls.out" "$T/ls.err"
rc=0
"$P/bin/memalloc" sh -c 'exit 7' || rc=$?
check "installed launcher: exit status passed through" test "$rc" = 7

if command -v man > /dev/null 2>&1; then
    check "man -M PREFIX/share/man finds memalloc(1) and memalloc(3)" sh -c '
        MANPAGER=cat PAGER=cat man -M "$1" 1 memalloc 2>/dev/null | grep -q "run a program with the memalloc allocator" &&
        MANPAGER=cat PAGER=cat man -M "$1" 3 memalloc 2>/dev/null | grep -q "ma_stats_get"' sh "$P/share/man"
else
    fail "man is not installed (apt-get install man-db)"
fi

# ---- DESTDIR ----
if ! $MAKE --no-print-directory install BUILD="$BUILD" DESTDIR="$T/stage" PREFIX=/opt/memalloc > "$T/stage.log" 2>&1; then
    cat "$T/stage.log"
    fail "make install DESTDIR=... PREFIX=/opt/memalloc"
else
    check "DESTDIR: the staged launcher names /opt/memalloc/lib/libmemalloc.so, not the stage" \
        sh -c 'grep -q "^lib=./opt/memalloc/lib/libmemalloc.so.\$" "$1" && ! grep -q "$2" "$1"' \
        sh "$T/stage/opt/memalloc/bin/memalloc" "$T/stage"
fi

# ---- make run ----
rc=0
$MAKE --no-print-directory run BUILD="$BUILD" > "$T/run.out" 2>&1 || rc=$?
check "make run: succeeds" test "$rc" = 0
check "make run: basic prints usable sizes, a free list, statistics, ma_check() = 0, a heap map" sh -c '
    grep -q "^ma_malloc(  1000) -> usable" "$1" && grep -q "^ma_memdup: \"hello from memalloc\"" "$1" &&
    grep -q "^arena 0: chunks" "$1" && grep -q "^== ma_stats_get:" "$1" && grep -q "^== ma_check() = 0" "$1" &&
    grep -q "^== ma_heap_map: wrote" "$1"' sh "$T/run.out"
check "make run: build/examples/heap.svg is an SVG" grep -q "<svg" "$BUILD/examples/heap.svg"
check "make run: threads ran under the launcher and the statistics followed" sh -c '
    grep -q "^threads: 4 threads passed 256000 blocks around a ring; every block arrived intact" "$1" &&
    grep -q "memalloc --stats .*examples/threads" "$1" && grep -q "^still allocated:" "$1"' sh "$T/run.out"

if [ "$failed" -gt 0 ]; then
    echo "make_targets: $failed check(s) failed"
    exit 1
fi
echo "make_targets: every check passed"
