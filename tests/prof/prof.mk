# tests/prof/prof.mk - the heap profiler (MEMALLOC_PROF), included by the top
# Makefile. Adds test-prof to `make test`.
#
#   make test-prof   tests/prof/run.sh: the known-sites program (dynamic and
#                    static link) through google-pprof, the exit leak report,
#                    folded stacks and the SVG; 8 threads; fork; ma_prof_dump
#                    while threads allocate; python3 under LD_PRELOAD; bad
#                    paths and values
#
# Only PROF_* variables are defined here; including this file never changes
# the default goal.
PROF_SAVED_GOAL := $(.DEFAULT_GOAL)

PROF_BIN := $(BUILD)/prof
# -rdynamic: dladdr (and so the folded stacks, the SVG and the exit report)
# names the program's own functions from its dynamic symbol table.
PROF_CFLAGS := -std=gnu11 -O1 -g -pthread -Wall -Wextra -Werror -Iinclude -rdynamic

$(PROF_BIN)/sites: tests/prof/sites.c $(SO)
	@mkdir -p $(@D)
	$(CC) $(PROF_CFLAGS) -o $@ $< -L$(BUILD) -lmemalloc -Wl,-rpath,$(abspath $(BUILD))
$(PROF_BIN)/sites_static: tests/prof/sites.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(PROF_CFLAGS) -o $@ $< $(LIB)
$(PROF_BIN)/capture_cost: tests/prof/capture_cost.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -o $@ $<

.PHONY: test-prof
test-prof: $(SO) $(PROF_BIN)/sites $(PROF_BIN)/sites_static
	tests/prof/run.sh $(SO) $(PROF_BIN)
TEST_EXTRA += test-prof
DEPS_EXTRA += google-perftools python3

.DEFAULT_GOAL := $(PROF_SAVED_GOAL)
