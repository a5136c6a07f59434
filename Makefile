# memalloc - one Makefile for the libraries, tests, checking builds and
# benchmarks. `make help` lists the targets.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
VERSION := 0.1.0

WARN    := -Wall -Wextra -Werror
# -fno-builtin: GCC would turn malloc + memset inside our calloc into a call
# to calloc, which recurses forever. initial-exec TLS: reaching the thread's
# state never allocates.
LIBFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -ftls-model=initial-exec \
            -fno-builtin -pthread $(WARN) -Iinclude -MMD -MP
OPT     ?= -O2 -g
TESTFLAGS := -std=gnu11 -O1 -g -pthread $(WARN) -Iinclude -MMD -MP

# Three floors, each including only from itself and below (docs/ARCHITECTURE.md):
# base/ (kernel, lock, errors, pagemap) -> arenas/ (the engine) -> src/.
BASE_SRC  := $(wildcard base/*.c)
ARENA_SRC := $(wildcard arenas/*.c)
CORE_SRC := $(BASE_SRC) $(ARENA_SRC) $(filter-out src/override.c,$(wildcard src/*.c))
LIB_SRC  := $(CORE_SRC) src/override.c

# Variants: rel (the shipped library), dbg (-O0, MEMALLOC_CHECK on by
# default), tsan (ThreadSanitizer, for the threaded tests).
REL_OBJ  := $(LIB_SRC:%.c=$(BUILD)/rel/%.o)
DBG_OBJ  := $(LIB_SRC:%.c=$(BUILD)/dbg/%.o)
TSAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/tsan/%.o)
core = $(filter-out %/override.o,$(1))

SO  := $(BUILD)/libmemalloc.so
LIB := $(BUILD)/libmemalloc.a

# Fragments add their own targets: each may append a test target to
# TEST_EXTRA (run by `make test`) and Debian packages to DEPS_EXTRA.
TEST_EXTRA :=
DEPS_EXTRA :=
.DEFAULT_GOAL := all
-include $(wildcard tests/*/*.mk)
-include bench/bench.mk
-include examples/examples.mk tools/tools.mk

.SECONDARY:
.PHONY: all debug tsan test test-unit test-debug test-tsan test-preload-check clean install help deps
all: $(SO) $(LIB)

# operator new throws std::bad_alloc through override.c's frames.
$(BUILD)/rel/src/override.o $(BUILD)/dbg/src/override.o $(BUILD)/tsan/src/override.o: LIBFLAGS += -fexceptions
# The profiler's sampled path adds to two neighbouring counters: gcc's
# straight-line vectorizer makes that six instructions instead of two.
$(BUILD)/rel/src/prof.o: LIBFLAGS += -fno-tree-slp-vectorize

$(BUILD)/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAGS) $(OPT) -c $< -o $@
$(BUILD)/dbg/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAGS) -O0 -g -DMA_DEBUG=1 -c $< -o $@
$(BUILD)/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAGS) -O1 -g -fsanitize=thread -c $< -o $@

# libgcc's unwinder (the profiler's _Unwind_Find_FDE and _Unwind_Backtrace)
# is linked in, hidden, rather than loading libgcc_s.so into every program:
# a program that never profiles would map and fault in its pages for
# nothing (bench/NOTES.md, "Fixed memory").
$(SO): $(REL_OBJ)
	$(CC) -shared -pthread -static-libgcc -Wl,--exclude-libs,ALL -Wl,-soname,libmemalloc.so -Wl,-z,now \
		-Wl,-Bsymbolic-functions -o $@ $^
$(LIB): $(REL_OBJ)
	@rm -f $@
	ar rcs $@ $^

debug: $(BUILD)/debug/libmemalloc.so
$(BUILD)/debug/libmemalloc.so: $(DBG_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -pthread -Wl,-soname,libmemalloc.so -o $@ $^

# ---- tests ----
# Criterion suites link the library's objects without override.o, so the
# test runner keeps the system allocator and the suites reach memalloc only
# through ma_*. Each suite runs against the release objects, again against
# the debug objects (internal checks and canaries on), and the threaded
# suite once more under ThreadSanitizer.
UNIT_SRC := $(wildcard tests/test_*.c)
UNIT_REL := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/rel/%)
UNIT_DBG := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/dbg/%)
TSAN_TESTS := $(BUILD)/tests/tsan/test_threads
PROBE_REL := $(BUILD)/tests/rel/probe
PROBE_DBG := $(BUILD)/tests/dbg/probe

$(BUILD)/tests/rel/test_%: tests/test_%.c tests/testutil.h $(call core,$(REL_OBJ)) | $(PROBE_REL)
	@mkdir -p $(dir $@)
	$(CC) $(TESTFLAGS) -DPROBE='"$(abspath $(PROBE_REL))"' -o $@ $< $(call core,$(REL_OBJ)) -lcriterion
$(BUILD)/tests/dbg/test_%: tests/test_%.c tests/testutil.h $(call core,$(DBG_OBJ)) | $(PROBE_DBG)
	@mkdir -p $(dir $@)
	$(CC) $(TESTFLAGS) -DPROBE='"$(abspath $(PROBE_DBG))"' -o $@ $< $(call core,$(DBG_OBJ)) -lcriterion
# Criterion's sandbox cannot start under TSan, so the TSan build of a suite
# uses tests/crshim.h: the same source, each test in a forked child.
$(BUILD)/tests/tsan/test_%: tests/test_%.c tests/testutil.h tests/crshim.h $(call core,$(TSAN_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(TESTFLAGS) -DMA_CRSHIM -fsanitize=thread -o $@ $< $(call core,$(TSAN_OBJ))
$(PROBE_REL): tests/probe.c $(call core,$(REL_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(TESTFLAGS) -o $@ $< $(filter %.o,$^)
$(PROBE_DBG): tests/probe.c $(call core,$(DBG_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(TESTFLAGS) -o $@ $< $(filter %.o,$^)

# Criterion runs each test in its own process; --jobs 2 matches the CI box.
# Check mode bypasses the thread cache by design (every free verifies its
# canary), so the cache suite's debug pass runs with MEMALLOC_CHECK=0.
CRITERION_ARGS ?= --jobs 2 --short-filename
# The suites about chunk, large-path and statistics mechanics count chunks
# and place blocks relative to chunk bounds; they run at the smallest chunk
# (1 MiB, threshold 256 KiB), where a test's few MiB cross many chunks.
# Every other suite runs at the defaults (4 MiB, 1 MiB).
UNIT_ENV = MEMALLOC_ARENAS=4 MEMALLOC_RETAIN_MS=200 $$(case "$${t\#\#*/}" in test_arena|test_large|test_stats) echo MEMALLOC_CHUNK_SIZE=1M;; esac)

test: test-unit test-debug test-tsan test-preload test-preload-check $(TEST_EXTRA)
test-unit: $(UNIT_REL) $(SO)
	@set -e; for t in $(UNIT_REL); do echo "== $$t"; env $(UNIT_ENV) $$t $(CRITERION_ARGS); done
test-debug: $(UNIT_DBG)
	@set -e; for t in $(UNIT_DBG); do echo "== $$t (debug build: checks on)"; \
	  env $(UNIT_ENV) $$( [ "$${t##*/}" = test_tcache ] && echo MEMALLOC_CHECK=0 ) $$t $(CRITERION_ARGS); done
test-tsan: $(TSAN_TESTS)
	@set -e; for t in $(TSAN_TESTS); do echo "== $$t (ThreadSanitizer)"; \
	  env TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" $(UNIT_ENV) $$t; done

# The threaded and forking programs again, with canaries and a full heap
# check every 64 operations: races between the checker and the allocation
# paths show up here (a large-realloc one did).
test-preload-check: $(SO) preload-progs
	MEMALLOC_CHECK=1 MEMALLOC_CHECK_EVERY=64 PRELOAD_ONLY="fork_mt threads_churn errno_free sort" \
	  PRELOAD_BIN=$(BUILD)/preload tests/preload/run.sh $(SO)

# ---- set-up on a fresh Debian/Ubuntu machine ----
# Everything the build, the tests and the benchmarks use. Runs apt-get as
# root, or through sudo.
DEPS = build-essential pkg-config libcriterion-dev libtsan2 valgrind python3 git time \
       libxml2-utils libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev gnuplot-nox hyperfine \
       $(DEPS_EXTRA)
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEPS)

# ---- install ----
install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/memalloc.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' memalloc.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/memalloc.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBMEMALLOC@|$(PREFIX)/lib/libmemalloc.so|g' tools/memalloc.in \
	  > $(DESTDIR)$(PREFIX)/bin/memalloc
	chmod 755 $(DESTDIR)$(PREFIX)/bin/memalloc
	install -m 644 docs/memalloc.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 docs/memalloc.3 $(DESTDIR)$(PREFIX)/share/man/man3/

clean:
	rm -rf $(BUILD)

help:
	@echo "make deps       install build, test and benchmark dependencies (apt-get)"
	@echo "make            build $(SO), $(LIB) and the launcher $(BUILD)/memalloc"
	@echo "make run        build and run examples/ (the ma_* API; threads under the launcher)"
	@echo "make debug      -O0 -g build with internal checks: $(BUILD)/debug/libmemalloc.so"
	@echo "make test       unit tests (release, debug, ThreadSanitizer) and LD_PRELOAD programs"
	@echo "make bench      the benchmark suite against glibc, jemalloc, tcmalloc, mimalloc"
	@echo "make bench-prof what MEMALLOC_PROF=1 costs: instructions, time, Redis (BENCHMARK.md)"
	@echo "make install PREFIX=/usr/local"
	@echo "make clean"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
