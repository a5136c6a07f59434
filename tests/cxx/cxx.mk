# tests/cxx/cxx.mk - memalloc's C++ operator new/delete (make test-cxx),
# included by the top Makefile. Adds test-cxx to `make test`.
CXX_TEST_BIN := $(BUILD)/cxx
CXX_TEST_FLAGS := -std=c++17 -O1 -g -Wall -Wextra -Werror -fsized-deallocation -faligned-new

$(CXX_TEST_BIN)/new_delete: tests/cxx/new_delete.cc
	@mkdir -p $(@D)
	g++ $(CXX_TEST_FLAGS) -o $@ $< -ldl
$(CXX_TEST_BIN)/new_delete_static: tests/cxx/new_delete.cc $(LIB)
	@mkdir -p $(@D)
	g++ $(CXX_TEST_FLAGS) -o $@ $< $(LIB) -pthread -ldl
$(CXX_TEST_BIN)/nolibstdcxx: tests/cxx/nolibstdcxx.c
	@mkdir -p $(@D)
	$(CC) -O1 -Wall -Wextra -Werror -o $@ $<
$(CXX_TEST_BIN)/nolibstdcxx_static: tests/cxx/nolibstdcxx.c $(LIB)
	@mkdir -p $(@D)
	$(CC) -O1 -Wall -Wextra -Werror -o $@ $< $(LIB) -pthread

.PHONY: test-cxx
test-cxx: $(SO) $(addprefix $(CXX_TEST_BIN)/,new_delete new_delete_static nolibstdcxx nolibstdcxx_static)
	tests/cxx/run.sh $(SO) $(LIB) $(CXX_TEST_BIN)
TEST_EXTRA += test-cxx
DEPS_EXTRA += g++
