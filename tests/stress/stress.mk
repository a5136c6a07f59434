# tests/stress/stress.mk - the native stress program (tests/stress/stress.c),
# included by the top Makefile (-include $(wildcard tests/*/*.mk)).
#
#   make stress         STRESS_OPS allocator calls (default 1e8) with the
#                       default options, then STRESS_OPS/STRESS_CHECK_DIV with
#                       MEMALLOC_CHECK=1 (canaries, a full heap check every
#                       4096 operations); fails on any mismatch. Options of
#                       the program (-t threads, -r rounds, -s seed, ...) go
#                       in STRESS_ARGS
#   make stress STRESS_OPS=1e9    the release check
#   make test-stress    CI's share (run by `make test`): STRESS_CI_OPS in
#                       release and STRESS_CI_CHECK_OPS in check mode
#
# The program links build/libmemalloc.a, so memalloc is the whole program's
# malloc and ma_check / ma_stats_get are at hand. Only STRESS_* variables are
# defined here (plus appending to TEST_EXTRA); BUILD, CC, LIB and WARN keep
# the values the including Makefile gives them. Including this file never
# changes the default goal.

STRESS_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
CC ?= cc

STRESS_DIR := tests/stress
STRESS_BIN := $(BUILD)/stress/stress
STRESS_LIB := $(if $(LIB),$(LIB),$(BUILD)/libmemalloc.a)
STRESS_CFLAGS := -std=gnu11 -O2 -g -pthread -Wall -Wextra -Werror -Iinclude
STRESS_OPS ?= 1e8
STRESS_CHECK_DIV ?= 4
STRESS_CI_OPS ?= 1e7
STRESS_CI_CHECK_OPS ?= 1e7
STRESS_ARGS ?=

TEST_EXTRA += test-stress

.PHONY: stress test-stress stress-build

stress-build: $(STRESS_BIN)

$(STRESS_BIN): $(STRESS_DIR)/stress.c include/memalloc.h $(STRESS_LIB)
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -o $@ $< $(STRESS_LIB)

stress: $(STRESS_BIN)
	$(STRESS_BIN) -n $(STRESS_OPS) $(STRESS_ARGS)
	MEMALLOC_CHECK=1 $(STRESS_BIN) -n $(STRESS_OPS)/$(STRESS_CHECK_DIV) $(STRESS_ARGS)

# The first command shows the checks can fail: a byte flipped on purpose
# (-x) must end the run with the pattern mismatch and status 1.
test-stress: $(STRESS_BIN)
	@if $(STRESS_BIN) -n 1e5 -x 100 2>$(BUILD)/stress/flip.err; then \
	  echo "test-stress: a run with a flipped byte (-x 100) passed"; exit 1; fi; \
	  grep -q 'differs from its pattern' $(BUILD)/stress/flip.err || \
	  { echo "test-stress: the flipped byte was not reported:"; cat $(BUILD)/stress/flip.err; exit 1; }; \
	  echo "test-stress: a flipped byte is caught: $$(cat $(BUILD)/stress/flip.err)"
	$(STRESS_BIN) -n $(STRESS_CI_OPS)
	MEMALLOC_CHECK=1 $(STRESS_BIN) -n $(STRESS_CI_CHECK_OPS)

.DEFAULT_GOAL := $(STRESS_SAVED_GOAL)
