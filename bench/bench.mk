# bench/bench.mk - benchmark suite, included by the top-level Makefile
# (`-include bench/bench.mk`); also usable alone: make -f bench/bench.mk bench-build
#
# Targets:
#   bench-build   build the benchmark programs into $(BUILD)/bench/
#   bench         full suite, every allocator, 1..16 threads -> BENCHMARK.md
#   bench-quick   the same, small sizes and 3 repetitions (< 10 minutes)
#   bench-check   smoke test: every program runs, prints one RESULT line, and
#                 fails (exit 2, no result) when a block is corrupted on purpose
#   bench-report  regenerate BENCHMARK.md and the plots from the last results
#   perf          perf stat + perf record of one benchmark (callgrind when the
#                 hardware counters are not available)
#   bench-prof    what the heap profiler costs (MEMALLOC_PROF=1 against
#                 unset): whole-program instructions under callgrind, CPU time
#                 and ops/s of the suite's programs, Redis under
#                 redis-benchmark (bench/prof_cost.py; about 8 minutes) ->
#                 bench/results/prof-cost.md, which bench-report copies into
#                 BENCHMARK.md
#   bench-clean   remove $(BUILD)/bench
#
# Knobs: BENCH_ARGS (extra run.py options, e.g. --allocators glibc,jemalloc
# --benches larson --threads 1,4 --reps 5), PERF_BENCH, PERF_ALLOC,
# PROF_COST_ARGS (extra prof_cost.py options, e.g. --only instructions
# --reps 9 --redis-callgrind).
# The programs use only the standard malloc names, so each one is measured
# under every allocator by LD_PRELOAD; see bench/run.py.

BUILD ?= build
CC ?= cc
CXX ?= g++
PYTHON ?= python3

BENCH_SRC_DIR := bench
BENCH_OUT := $(BUILD)/bench
BENCH_CFLAGS := -std=gnu11 -O2 -g -pthread -Wall -Wextra -Werror
BENCH_CXXFLAGS := -std=c++17 -O2 -g -pthread -Wall -Wextra -Werror
BENCH_LDLIBS := -pthread
# larson-kr, hoard-threadtest and malloc-large are C++ (bench/*.cc): like
# the C programs they are linked normally, never against memalloc, so that
# operator new/delete reach whichever allocator is preloaded.
BENCH_PROGRAMS := threadtest larson xmalloc cache-thrash cache-scratch \
                  fragmentation realloc churn threadchurn \
                  larson-kr hoard-threadtest sh8bench malloc-large mstress \
                  rptest sh6bench
BENCH_BINS := $(addprefix $(BENCH_OUT)/,$(BENCH_PROGRAMS))
BENCH_COMMON := $(BENCH_OUT)/common.o
BENCH_LIB := $(BUILD)/libmemalloc.so
BENCH_ARGS ?=
PERF_BENCH ?= larson
PERF_ALLOC ?= memalloc
PROF_COST_ARGS ?=
# bench-prof drives Redis (Debian's redis-server, memalloc preloaded).
DEPS_EXTRA += redis-server

.PHONY: bench bench-quick bench-build bench-check bench-report perf bench-prof bench-clean

bench-build: $(BENCH_BINS)

$(BENCH_OUT):
	@mkdir -p $@

$(BENCH_COMMON): $(BENCH_SRC_DIR)/common.c $(BENCH_SRC_DIR)/common.h | $(BENCH_OUT)
	$(CC) $(BENCH_CFLAGS) -c -o $@ $<

$(BENCH_OUT)/cache-thrash: $(BENCH_SRC_DIR)/cache.c $(BENCH_COMMON) $(BENCH_SRC_DIR)/common.h | $(BENCH_OUT)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_COMMON) $(BENCH_LDLIBS)

$(BENCH_OUT)/cache-scratch: $(BENCH_SRC_DIR)/cache.c $(BENCH_COMMON) $(BENCH_SRC_DIR)/common.h | $(BENCH_OUT)
	$(CC) $(BENCH_CFLAGS) -DCACHE_SCRATCH -o $@ $< $(BENCH_COMMON) $(BENCH_LDLIBS)

$(BENCH_OUT)/%: $(BENCH_SRC_DIR)/%.c $(BENCH_COMMON) $(BENCH_SRC_DIR)/common.h | $(BENCH_OUT)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_COMMON) $(BENCH_LDLIBS)

$(BENCH_OUT)/%: $(BENCH_SRC_DIR)/%.cc $(BENCH_COMMON) $(BENCH_SRC_DIR)/common.h | $(BENCH_OUT)
	$(CXX) $(BENCH_CXXFLAGS) -o $@ $< $(BENCH_COMMON) $(BENCH_LDLIBS)

bench: $(BENCH_BINS) $(BENCH_LIB)
	$(PYTHON) $(BENCH_SRC_DIR)/run.py --full --bin-dir $(BENCH_OUT) --lib $(BENCH_LIB) $(BENCH_ARGS)

bench-quick: $(BENCH_BINS) $(BENCH_LIB)
	$(PYTHON) $(BENCH_SRC_DIR)/run.py --quick --bin-dir $(BENCH_OUT) --lib $(BENCH_LIB) $(BENCH_ARGS)

bench-check: $(BENCH_BINS)
	$(PYTHON) $(BENCH_SRC_DIR)/run.py --check --bin-dir $(BENCH_OUT) --lib $(BENCH_LIB) $(BENCH_ARGS)

bench-report:
	$(PYTHON) $(BENCH_SRC_DIR)/run.py --report-only $(BENCH_ARGS)

perf: $(BENCH_BINS) $(BENCH_LIB)
	$(PYTHON) $(BENCH_SRC_DIR)/run.py --perf $(PERF_BENCH) --perf-alloc $(PERF_ALLOC) \
		--bin-dir $(BENCH_OUT) --lib $(BENCH_LIB) $(BENCH_ARGS)

bench-prof: $(BENCH_BINS) $(BENCH_LIB)
	$(PYTHON) $(BENCH_SRC_DIR)/prof_cost.py --bin-dir $(BENCH_OUT) --lib $(BENCH_LIB) \
		--redis-callgrind --out $(BENCH_SRC_DIR)/results/prof-cost.md $(PROF_COST_ARGS)

bench-clean:
	rm -rf $(BENCH_OUT)
