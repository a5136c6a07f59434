# tests/fuzz/fuzz.mk - libFuzzer harness for the ma_* API, included by the top
# Makefile (-include $(wildcard tests/*/*.mk)).
#
#   make fuzz          fuzz for FUZZ_SECONDS (default 600) per configuration
#   make test-fuzz     CI run: FUZZ_CI_SECONDS (default 75) from the committed
#                      corpus, then replay every file of tests/fuzz/regressions/
#   make fuzz-build    only build $(BUILD)/fuzz/fuzz_ops
#   make fuzz-corpus   regenerate the seed corpus (tests/fuzz/make_corpus.py)
#   make fuzz-merge    minimise what `make fuzz` found into tests/fuzz/corpus/
#
# Two configurations run side by side, one process each (the CI box has two
# cores): `rel`, the default options, and `chk`, MEMALLOC_CHECK=1 (canaries,
# periodic full checks, the checked slow paths). Both use MEMALLOC_ARENAS=4,
# one arena per worker thread of the harness. New inputs go to
# $(BUILD)/fuzz/corpus-<config>/, crashes to $(BUILD)/fuzz/artifacts/; a crash
# that shows a real bug is copied to tests/fuzz/regressions/ so that every
# `make test-fuzz` replays it.
#
# Only FUZZ_* variables are defined here; including this file never changes
# the default goal.

FUZZ_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
FUZZ_CC ?= clang
FUZZ_DIR := tests/fuzz
FUZZ_OUT := $(BUILD)/fuzz
FUZZ_BIN := $(FUZZ_OUT)/fuzz_ops
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 75
FUZZ_RUN := $(FUZZ_DIR)/run.sh

# The library without override.c: libFuzzer, ASan and UBSan keep their own
# malloc and the harness reaches memalloc only through ma_*.
FUZZ_LIB_SRC := $(if $(CORE_SRC),$(CORE_SRC),$(filter-out src/override.c,$(wildcard base/*.c arenas/*.c src/*.c)))
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_OUT)/%.o)

# The library's own flags (LIBFLAGS of the top Makefile) minus -Werror: a
# warning only clang gives must not stop the fuzzing run; the library's
# warnings are policed by the gcc build.
# -D_Atomic=: clang rejects the __atomic_* builtins on _Atomic-qualified
# objects (arena.h declares remote_head and remote_pending _Atomic, and
# arena.c uses __atomic_load_n & co. on them); gcc accepts both. The builtins
# already make every access atomic, so dropping the qualifier for this build
# changes nothing. Remove once arena.h drops the qualifier.
FUZZ_LIBFLAGS := -std=c11 -D_GNU_SOURCE -D_Atomic= -fPIC -fvisibility=hidden \
                 -ftls-model=initial-exec -fno-builtin -pthread -Wall -Wextra \
                 -Iinclude -MMD -MP
# Sanitizers: coverage (fuzzer-no-link), ASan and UBSan on the library too.
# Every block memalloc hands out and all its own metadata (arena table, chunk
# headers, free lists, bitmaps, pagemap leaves) live in memory it mmaps
# itself, which ASan neither poisons nor tracks, so ASan cannot see an
# overflow between blocks (the harness's patterns and ma_check do). What it
# still checks in the library: globals (the pagemap root, the option table),
# stack buffers (message and report formatting) and every memcpy/memset
# range. Measured on the 2-core VM, the 42 seeds x 20 runs: user time
# 0.52 s without ASan on the library, 0.59 s with it, system time 1.2 s
# either way (mmap, munmap and page faults dominate): about 4% of wall time,
# so it stays on. UBSan checks what matters most inside memalloc: array
# indexes with known bounds (heads[N_CLASSES], bitmap[N_WORDS], the pagemap
# root: -fsanitize=bounds), shifts by class indexes, misaligned loads through
# block pointers, signed and pointer-arithmetic overflow; it aborts on the
# first report (-fno-sanitize-recover) so libFuzzer saves the input.
FUZZ_SAN_LIB := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_SAN_BIN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_OPT ?= -O1 -g -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=gnu11 -pthread -Wall -Wextra -Werror -Iinclude -MMD -MP

.PHONY: fuzz test-fuzz fuzz-build fuzz-corpus fuzz-merge fuzz-clean

fuzz-build: $(FUZZ_BIN)

$(FUZZ_OUT)/%.o: %.c $(FUZZ_DIR)/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) $(FUZZ_OPT) $(FUZZ_SAN_LIB) -c $< -o $@

$(FUZZ_BIN): $(FUZZ_DIR)/fuzz_ops.c $(FUZZ_DIR)/fuzz.mk $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_OPT) $(FUZZ_SAN_BIN) -o $@ $< $(FUZZ_LIB_OBJ)

fuzz: $(FUZZ_BIN)
	$(FUZZ_RUN) fuzz $(FUZZ_BIN) $(FUZZ_SECONDS) $(FUZZ_OUT)

test-fuzz: $(FUZZ_BIN)
	$(FUZZ_RUN) ci $(FUZZ_BIN) $(FUZZ_CI_SECONDS) $(FUZZ_OUT)

fuzz-corpus:
	python3 $(FUZZ_DIR)/make_corpus.py $(FUZZ_DIR)/corpus

fuzz-merge: $(FUZZ_BIN)
	$(FUZZ_RUN) merge $(FUZZ_BIN) 0 $(FUZZ_OUT)

fuzz-clean:
	rm -rf $(FUZZ_OUT)

TEST_EXTRA += test-fuzz
DEPS_EXTRA += clang libclang-rt-14-dev python3

.DEFAULT_GOAL := $(FUZZ_SAVED_GOAL)
