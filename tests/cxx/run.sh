#!/usr/bin/env bash
# tests/cxx/run.sh SO LIB BIN - memalloc's C++ operators, under LD_PRELOAD and
# linked: every form, out of memory, the new-handler, a size-mismatched
# sized delete in check mode; and C programs that load no libstdc++.
set -euo pipefail
SO=$(realpath "$1"); BIN=$3
fail=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fail=1; }

for mode in preload linked; do
    if [ $mode = preload ]; then
        prog=$BIN/new_delete; run() { LD_PRELOAD=$SO "$@"; }
    else
        prog=$BIN/new_delete_static; run() { "$@"; }
    fi
    echo "== C++ operators ($mode)"
    for m in forms oom handler; do
        if out=$(run "$prog" $m 2>&1); then ok "$m: $(echo "$out" | tail -n 1)"; else bad "$m: $out"; fi
    done
    set +e
    out=$(MEMALLOC_CHECK=1 run "$prog" mismatch 2>&1); rc=$?
    set -e
    if [ $rc -ge 128 ] && echo "$out" | grep -q "^memalloc: operator delete(): sized delete's size does not match"; then
        ok "mismatch: aborted (status $rc): $(echo "$out" | grep '^memalloc:')"
    else
        bad "mismatch: status $rc, output: $out"
    fi
    # Without check mode a wrong size is not verified (the fast path frees
    # by the block's header), and nothing breaks.
    set +e
    out=$(run "$prog" mismatch 2>&1); rc=$?
    set -e
    [ $rc -eq 1 ] && echo "$out" | grep -q "not stopped" && ok "mismatch without check mode: freed by the header" ||
        bad "mismatch without check mode: status $rc: $out"
done

echo "== C programs load no libstdc++"
if readelf -d "$SO" | grep NEEDED | grep -q 'libstdc++'; then bad "libmemalloc.so needs libstdc++"; else ok "libmemalloc.so does not need libstdc++"; fi
if out=$(LD_PRELOAD=$SO "$BIN/nolibstdcxx" 2>&1); then ok "preloaded: $out"; else bad "preloaded: $out"; fi
if out=$("$BIN/nolibstdcxx_static" 2>&1); then ok "linked with libmemalloc.a: $out"; else bad "linked: $out"; fi
if readelf -d "$BIN/nolibstdcxx_static" | grep NEEDED | grep -q 'libstdc++'; then bad "C program linked with libmemalloc.a needs libstdc++"; fi
if LD_PRELOAD=$SO ls / >/dev/null && ! LD_PRELOAD=$SO sh -c 'grep -q libstdc /proc/$$/maps'; then ok "ls and sh under LD_PRELOAD: no libstdc++"; else bad "ls/sh under LD_PRELOAD"; fi
exit $fail
