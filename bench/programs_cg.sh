#!/usr/bin/env bash
# bench/programs_cg.sh - instructions that real programs execute with each
# allocator, counted by callgrind (repeatable, unlike their run times on a
# small shared machine: cc1 below took 3.1-5.2 s natively with every
# allocator in turn).
#
# Usage: bench/programs_cg.sh [workload...]
#   workloads: python-json python-dict python-pc perl-hash cc1 lua redis
#   (default: all)
#   python-pc: a producer thread builds dicts that a consumer thread takes
#   from a queue.Queue and drops, so CPython frees them in another thread
#   than the one that allocated them
#   lua: tests/programs/lua_work.lua at depth 12 (Lua allocates every
#   object with realloc(NULL, n))
#   redis: redis-server (Debian's, whose own allocator is jemalloc: the
#   "glibc" column is that build's jemalloc too) under callgrind, driven by
#   redis-benchmark -q -n 30000 -P 16 -d 256 -t set,get,lpush; its idle
#   ticks move its count by about 1% between runs
# Environment: MEMALLOC_SO (default build/libmemalloc.so), ALLOCS (default
# "memalloc glibc jemalloc tcmalloc mimalloc").
#
# Prints one line per workload: millions of instructions per allocator
# (the whole process: program and allocator), then memalloc / each other.
# CPython runs with PYTHONMALLOC=malloc (else objects up to 512 bytes come
# from its own pools) and PYTHONHASHSEED=0 (else the count varies by run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SO=${MEMALLOC_SO:-$ROOT/build/libmemalloc.so}
LIBDIR=/usr/lib/x86_64-linux-gnu
ALLOCS=${ALLOCS:-memalloc glibc jemalloc tcmalloc mimalloc}
PY=/usr/bin/python3
CC1=$(gcc -print-prog-name=cc1)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

lib_of() {
    case $1 in
    memalloc) echo "$SO" ;;
    glibc) echo "" ;;
    jemalloc) echo "$LIBDIR/libjemalloc.so.2" ;;
    tcmalloc) echo "$LIBDIR/libtcmalloc_minimal.so.4" ;;
    mimalloc) echo "$LIBDIR/libmimalloc.so.2" ;;
    *) echo "unknown allocator $1" >&2; exit 2 ;;
    esac
}

for t in valgrind "$PY" perl gcc; do
    command -v "$t" >/dev/null || { echo "programs_cg: $t is missing (make deps)" >&2; exit 2; }
done
[[ -f $SO ]] || { echo "programs_cg: $SO not built (make)" >&2; exit 2; }

cat >"$TMP/doc_json.py" <<'EOF'
import json
d = [{"k%d" % i: [i, str(i) * 3, {"x": i}]} for i in range(30000)]
s = json.dumps(d)
json.loads(s)
EOF
cat >"$TMP/producer_consumer.py" <<'EOF'
import queue
import threading
q = queue.Queue(maxsize=256)
N = 40000
def produce():
    for i in range(N):
        q.put({"id": i, "name": "item%d" % i, "tags": [str(i), str(i * 7)], "payload": b"x" * (i % 300)})
    q.put(None)
def consume():
    total = 0
    while True:
        o = q.get()
        if o is None:
            break
        total += len(o["payload"]) + len(o["tags"])
    assert total > 0
threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
for t in threads:
    t.start()
for t in threads:
    t.join()
EOF
cat >"$TMP/dict_lists.py" <<'EOF'
d = {}
for i in range(200000):
    d.setdefault(i % 5000, []).append(str(i) * (i % 40))
EOF
"$PY" "$ROOT/tests/programs/gen_big_c.py" 200 >"$TMP/big.c"

run_workload() { # workload -> runs it (under whatever wraps this call)
    case $1 in
    python-json) PYTHONHASHSEED=0 PYTHONMALLOC=malloc "${@:2}" "$PY" "$TMP/doc_json.py" ;;
    python-dict) PYTHONHASHSEED=0 PYTHONMALLOC=malloc "${@:2}" "$PY" "$TMP/dict_lists.py" ;;
    python-pc) PYTHONHASHSEED=0 PYTHONMALLOC=malloc "${@:2}" "$PY" "$TMP/producer_consumer.py" ;;
    perl-hash) "${@:2}" perl -e 'my %h; $h{"key$_"} = "v" x ($_ % 50) for 1..100000; my @k = sort keys %h; exit(@k != 100000)' ;;
    cc1) "${@:2}" "$CC1" -quiet -O2 "$TMP/big.c" -o "$TMP/big.s" ;;
    lua) "${@:2}" lua5.4 "$ROOT/tests/programs/lua_work.lua" 12 >/dev/null ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
    esac
}

count_redis() { # allocator -> the server's instructions
    local lib port dir i
    lib=$(lib_of "$1")
    port=$((20000 + RANDOM % 20000))
    dir=$(mktemp -d "$TMP/redis.XXXXXX")
    LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" redis-server --port "$port" \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --logfile "$dir/log" >/dev/null 2>"$dir/err" &
    local pid=$!
    for i in $(seq 1 240); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    redis-benchmark -p "$port" -q -n 30000 -P 16 -d 256 -t set,get,lpush >/dev/null 2>&1 || {
        echo "programs_cg: redis-benchmark failed with $1" >&2
        kill "$pid" 2>/dev/null
        exit 1
    }
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/err" | tail -1
}

count() { # workload allocator -> instructions
    local lib out
    if [[ $1 == redis ]]; then
        count_redis "$2"
        return
    fi
    lib=$(lib_of "$2")
    out=$(LD_PRELOAD=$lib run_workload "$1" valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" 2>&1) || {
        echo "programs_cg: $1 failed with $2:" >&2
        echo "$out" | grep -v "^==" | tail -5 >&2
        exit 1
    }
    echo "$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -1
}

WORKLOADS=${*:-python-json python-dict python-pc perl-hash cc1 lua redis}
for w in $WORKLOADS; do
    if [[ $w == redis ]] && ! command -v redis-server >/dev/null; then
        echo "redis: redis-server is not installed (apt-get install redis-server)"
        continue
    fi
    if [[ $w == lua ]] && ! command -v lua5.4 >/dev/null; then
        echo "lua: lua5.4 is not installed (apt-get install lua5.4)"
        continue
    fi
    line="$w:"
    declare -A n=()
    for a in $ALLOCS; do
        n[$a]=$(count "$w" "$a")
        line+=$(printf ' %s %.1f M' "$a" "$(echo "${n[$a]} / 1000000" | bc -l)")
    done
    ratios=""
    for a in $ALLOCS; do
        [[ $a == memalloc || -z ${n[memalloc]:-} ]] && continue
        ratios+=$(printf ' %s %.3f' "$a" "$(echo "${n[memalloc]} / ${n[$a]}" | bc -l)")
    done
    echo "$line"
    [[ -n $ratios ]] && echo "  memalloc / other:$ratios"
    unset n
done
