#!/bin/sh
# tests/fuzz/run.sh - runs the libFuzzer harness for tests/fuzz/fuzz.mk.
#
#   run.sh ci    BIN SECONDS OUT   replay tests/fuzz/regressions/*, then fuzz
#                                  SECONDS per configuration from the corpus
#   run.sh fuzz  BIN SECONDS OUT   fuzz SECONDS per configuration
#   run.sh merge BIN 0 OUT         minimise OUT/corpus-* into tests/fuzz/corpus
#
# The configurations run side by side, one process each (the CI box has two
# cores): rel = memalloc's defaults, chk = MEMALLOC_CHECK=1 (canaries and the
# checked slow paths, a full heap check every 1024 operations on top of the
# harness's own). Both use MEMALLOC_ARENAS=4, one arena per worker thread.
# Exit status: 0 when every run and every regression input passed.
set -u

mode=$1 bin=$2 seconds=$3 out=$4
dir=$(dirname "$0")
corpus=$dir/corpus
regressions=$dir/regressions
configs="rel chk"
# Each regression input runs this many times per configuration: some of them
# reproduce races, which a single run may miss.
replay_runs=${FUZZ_REPLAY_RUNS:-30}

FUZZ_FLAGS=${FUZZ_FLAGS:--max_len=1024 -timeout=30 -rss_limit_mb=2048 -print_final_stats=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:handle_abort=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs "$@" in configuration $1 (the rest: the fuzzer's arguments).
with_config() {
    cfg=$1
    shift
    case $cfg in
    rel) env MEMALLOC_ARENAS=4 MEMALLOC_CHECK=0 "$@" ;;
    chk) env MEMALLOC_ARENAS=4 MEMALLOC_CHECK=1 MEMALLOC_CHECK_EVERY=1024 "$@" ;;
    esac
}

# Prints the figures of one run from its log: the last status line
# (executions, cov, ft, corpus, exec/s) and the final statistics.
summary() {
    cfg=$1 log=$2
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    echo "fuzz[$cfg]: ${execs:-?} executions, ${rate:-?} exec/s, ${new:-?} new units, peak RSS ${rss:-?} MB"
    echo "fuzz[$cfg]: $last"
}

fail=0

replay() {
    files=$(find "$regressions" -type f ! -name '*.md' 2>/dev/null | sort)
    if [ -z "$files" ]; then
        echo "fuzz: no regression inputs in $regressions"
        return
    fi
    n=$(echo "$files" | wc -l)
    for cfg in $configs; do
        log=$out/replay-$cfg.log
        # shellcheck disable=SC2086
        if with_config "$cfg" "$bin" -runs="$replay_runs" $files >"$log" 2>&1; then
            echo "fuzz[$cfg]: $n regression inputs pass ($replay_runs runs each)"
        else
            echo "fuzz[$cfg]: a regression input FAILS; log $log:"
            tail -n 40 "$log"
            fail=1
        fi
    done
}

fuzz_all() {
    mkdir -p "$out/artifacts"
    pids=
    for cfg in $configs; do
        mkdir -p "$out/corpus-$cfg"
        # shellcheck disable=SC2086
        with_config "$cfg" "$bin" "$out/corpus-$cfg" "$corpus" -max_total_time="$seconds" \
            -artifact_prefix="$out/artifacts/$cfg-" $FUZZ_FLAGS >"$out/fuzz-$cfg.log" 2>&1 &
        pids="$pids $!"
    done
    echo "fuzz: $configs running for $seconds s each (logs $out/fuzz-*.log)"
    i=0
    for pid in $pids; do
        i=$((i + 1))
        cfg=$(echo $configs | cut -d' ' -f$i)
        if wait "$pid"; then
            summary "$cfg" "$out/fuzz-$cfg.log"
        else
            echo "fuzz[$cfg]: FAILED; end of $out/fuzz-$cfg.log:"
            tail -n 60 "$out/fuzz-$cfg.log"
            echo "fuzz[$cfg]: crash inputs: $(ls "$out"/artifacts/"$cfg"-* 2>/dev/null | tr '\n' ' ')"
            echo "fuzz[$cfg]: reproduce with: MEMALLOC_ARENAS=4 $bin <input>;" \
                 "a real bug's input goes to $regressions/"
            fail=1
        fi
    done
}

mkdir -p "$out"
case $mode in
ci)
    start=$(date +%s)
    replay
    fuzz_all
    echo "fuzz: done in $(($(date +%s) - start)) s"
    ;;
fuzz)
    fuzz_all
    ;;
merge)
    with_config rel "$bin" -merge=1 -max_len=1024 "$corpus" "$out"/corpus-* || fail=1
    ;;
*)
    echo "usage: $0 ci|fuzz|merge BIN SECONDS OUT" >&2
    exit 2
    ;;
esac
exit $fail
