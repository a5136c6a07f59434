# tests/programs/programs.mk - real programs (CPython's regression tests,
# Redis, gcc, git, sqlite3, Lua) and thread/process stress programs under
# LD_PRELOAD, each compared with the system allocator. Included by the top
# Makefile (-include $(wildcard tests/*/*.mk)).
#
#   make test-programs   build the library and the C programs, then run
#                        tests/programs/run.sh on build/libmemalloc.so;
#                        figures go to $(BUILD)/programs/results.txt
#
# Only PROGRAMS_* variables are defined here (plus appending to TEST_EXTRA
# and DEPS_EXTRA); BUILD and CC keep the values the including Makefile
# gives them. Including this file never changes the default goal.

PROGRAMS_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
CC ?= cc

PROGRAMS_DIR := tests/programs
PROGRAMS_BIN := $(BUILD)/programs
PROGRAMS_LIB := $(BUILD)/libmemalloc.so
PROGRAMS_CFLAGS := -O2 -g -pthread -Wall -Wextra -Werror
PROGRAMS_C := thread_churn ring_storm fork_storm mem_return
PROGRAMS_EXE := $(addprefix $(PROGRAMS_BIN)/,$(PROGRAMS_C))

TEST_EXTRA += test-programs
# python3.11 is Debian's /usr/bin/python3; its test package is separate.
DEPS_EXTRA += redis-server redis-tools sqlite3 python3.11 libpython3.11-testsuite gcc git procps lua5.4

.PHONY: test-programs programs-progs

programs-progs: $(PROGRAMS_EXE)

$(PROGRAMS_EXE): $(PROGRAMS_BIN)/%: $(PROGRAMS_DIR)/%.c $(PROGRAMS_DIR)/common.h include/memalloc.h
	@mkdir -p $(@D)
	$(CC) $(PROGRAMS_CFLAGS) -o $@ $<

test-programs: $(PROGRAMS_LIB) $(PROGRAMS_EXE)
	PROGRAMS_BIN=$(PROGRAMS_BIN) CC="$(CC)" $(PROGRAMS_DIR)/run.sh $(PROGRAMS_LIB)

.DEFAULT_GOAL := $(PROGRAMS_SAVED_GOAL)
