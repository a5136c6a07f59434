# examples/examples.mk - `make run`: build the library and the examples, then
# run them. Included by the top Makefile.
#
#   make run     build/examples/basic: memalloc's own API (ma_*), linked
#                with build/libmemalloc.a; it writes a heap map to
#                build/examples/heap.svg
#                build/examples/threads: plain malloc/free on four threads,
#                run through the launcher with --stats, i.e. under
#                LD_PRELOAD=build/libmemalloc.so MEMALLOC_STATS=1
#
# Only EXAMPLES_* variables are defined here; BUILD and CC keep the values
# the including Makefile gives them. Including this file never changes the
# default goal.

EXAMPLES_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
CC ?= cc

EXAMPLES_BIN := $(BUILD)/examples
EXAMPLES_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -pthread -Wall -Wextra -Werror

.PHONY: run examples

examples: $(EXAMPLES_BIN)/basic $(EXAMPLES_BIN)/threads

$(EXAMPLES_BIN)/basic: examples/basic.c include/memalloc.h $(BUILD)/libmemalloc.a
	@mkdir -p $(@D)
	$(CC) $(EXAMPLES_CFLAGS) -Iinclude -o $@ $< $(BUILD)/libmemalloc.a

# threads.c knows nothing of memalloc: it is linked with nothing but libc.
$(EXAMPLES_BIN)/threads: examples/threads.c
	@mkdir -p $(@D)
	$(CC) $(EXAMPLES_CFLAGS) -o $@ $<

run: $(BUILD)/libmemalloc.so $(BUILD)/memalloc examples
	@echo
	@echo "==== examples/basic.c: the ma_* API"
	$(EXAMPLES_BIN)/basic $(EXAMPLES_BIN)/heap.svg
	@echo
	@echo "==== examples/threads.c: plain malloc/free on 4 threads, under the launcher"
	@echo "==== (the same as LD_PRELOAD=$(BUILD)/libmemalloc.so MEMALLOC_STATS=1 $(EXAMPLES_BIN)/threads)"
	$(BUILD)/memalloc --stats $(EXAMPLES_BIN)/threads

.DEFAULT_GOAL := $(EXAMPLES_SAVED_GOAL)
