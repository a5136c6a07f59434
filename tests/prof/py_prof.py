# tests/prof/py_prof.py - a Python workload for the heap profiler under
# LD_PRELOAD (PYTHONMALLOC=malloc puts every object on memalloc). Builds a
# table of dicts and strings, keeps it, and has memalloc write the profile
# to each path given (ma_prof_dump through ctypes: the preloaded library's
# symbols are visible to dlsym(RTLD_DEFAULT)).
import ctypes
import sys


def build_table(n):
    return [{'k': i, 'v': str(i) * 10} for i in range(n)]


table = build_table(200000)
lib = ctypes.CDLL(None)
for path in sys.argv[1:]:
    print(path, lib.ma_prof_dump(path.encode()))
print(len(table))
