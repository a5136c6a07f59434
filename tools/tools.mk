# tools/tools.mk - the `memalloc` launcher, included by the top Makefile.
#
#   make                 also writes $(BUILD)/memalloc, the launcher for the
#                        build tree: it preloads the libmemalloc.so beside it
#   make install         writes PREFIX/bin/memalloc (the install recipe in
#                        the top Makefile), which preloads PREFIX/lib's
#
# Only TOOLS_* variables are defined here; BUILD and VERSION keep the values
# the including Makefile gives them. Including this file never changes the
# default goal.

TOOLS_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build

TOOLS_LAUNCHER := $(BUILD)/memalloc

all: $(TOOLS_LAUNCHER)

# @LIBMEMALLOC@ left empty: the script then finds the library in its own
# directory. Depends on the Makefile for VERSION.
$(TOOLS_LAUNCHER): tools/memalloc.in Makefile
	@mkdir -p $(@D)
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBMEMALLOC@||g' $< > $@.tmp
	chmod 755 $@.tmp
	mv $@.tmp $@

.DEFAULT_GOAL := $(TOOLS_SAVED_GOAL)
