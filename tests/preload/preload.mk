# tests/preload/preload.mk - interposition tests, included by the top Makefile
# (-include tests/preload/preload.mk).
#
#   make test-preload            build the library and the test programs, then
#                                run tests/preload/run.sh on build/libmemalloc.so
#
# Only PRELOAD_* variables are defined here; BUILD and CC keep the values the
# including Makefile gives them. Including this file never changes the
# default goal.

PRELOAD_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
CC ?= cc

PRELOAD_DIR := tests/preload
PRELOAD_BIN := $(BUILD)/preload
PRELOAD_LIB := $(BUILD)/libmemalloc.so
PRELOAD_CFLAGS := -O2 -g -pthread -Wall -Wextra -Werror
PRELOAD_PROGS := $(addprefix $(PRELOAD_BIN)/,fork_mt threads_churn errno_free)

.PHONY: test-preload preload-progs

preload-progs: $(PRELOAD_PROGS)

$(PRELOAD_PROGS): $(PRELOAD_BIN)/%: $(PRELOAD_DIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -o $@ $<

test-preload: $(PRELOAD_LIB) $(PRELOAD_PROGS)
	PRELOAD_BIN=$(PRELOAD_BIN) CC="$(CC)" $(PRELOAD_DIR)/run.sh $(PRELOAD_LIB)

.DEFAULT_GOAL := $(PRELOAD_SAVED_GOAL)
