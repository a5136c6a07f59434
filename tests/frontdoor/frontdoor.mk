# tests/frontdoor/frontdoor.mk - the launcher, the man pages, make install and
# make run. Included by the top Makefile (-include $(wildcard tests/*/*.mk)).
#
#   make test-frontdoor   launcher.sh: build/memalloc on ls, sort, sh and
#                         python3 (preloading, options, exit status, usage
#                         errors); docs_sync.sh: every ma_* function and
#                         MEMALLOC_* variable in docs/memalloc.3 and README.md,
#                         every launcher option in docs/memalloc.1 and
#                         README.md; make_targets.sh: make install into a
#                         scratch prefix and the installed launcher, make run;
#                         reports.sh: mallopt, and %p and the pid and program
#                         in the exit reports
#
# Only FRONTDOOR_* variables are defined here (plus appending to TEST_EXTRA
# and DEPS_EXTRA); BUILD, CC and VERSION keep the values the including
# Makefile gives them. Including this file never changes the default goal.

FRONTDOOR_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
CC ?= cc

FRONTDOOR_DIR := tests/frontdoor

TEST_EXTRA += test-frontdoor
# groff renders the man pages in docs_sync.sh; man-db's man finds the
# installed ones in make_targets.sh.
DEPS_EXTRA += groff-base man-db

# The recipe names make through this variable, not $(MAKE): a recipe line
# that mentions $(MAKE) runs even under `make -n`, and this one installs.
FRONTDOOR_MAKE = $(MAKE)

.PHONY: test-frontdoor

test-frontdoor: $(BUILD)/libmemalloc.so $(BUILD)/libmemalloc.a $(BUILD)/memalloc
	VERSION=$(VERSION) CC="$(CC)" $(FRONTDOOR_DIR)/launcher.sh $(BUILD)/memalloc
	VERSION=$(VERSION) $(FRONTDOOR_DIR)/docs_sync.sh $(BUILD)/memalloc
	VERSION=$(VERSION) MAKE="$(FRONTDOOR_MAKE)" BUILD=$(BUILD) $(FRONTDOOR_DIR)/make_targets.sh
	$(FRONTDOOR_DIR)/reports.sh $(BUILD)

.DEFAULT_GOAL := $(FRONTDOOR_SAVED_GOAL)
