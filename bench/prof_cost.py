#!/usr/bin/env python3
"""bench/prof_cost.py - what the heap profiler (MEMALLOC_PROF=1, one sample
per 512 KiB allocated on average) costs: the same programs under
LD_PRELOAD=libmemalloc.so with MEMALLOC_PROF unset and =1.

Three measurements, each a Markdown table, printed and (--out) written to
the file BENCHMARK.md's "Profiling cost" section is made from
(bench/results/prof-cost.md; bench/report.py copies it in):

  instructions  whole-program instruction counts under callgrind, off and
                on, for single-threaded runs of the suite's programs: the
                repeatable figure. A setting's count still moves between
                runs (the sampling intervals are random; the decay passes
                of MEMALLOC_RETAIN_MS follow the clock, and callgrind's is
                slow), so each setting runs --cg-reps times and the fewest
                instructions count. Beside them, the instructions inside the
                profiler's own functions in one run with it on.
  time          the suite's programs at their full sizes (bench/run.py),
                off and on interleaved (off on, then on off, ...), --reps
                repetitions: the medians of each program's CPU time (user +
                system, which other load on the machine disturbs less) and
                ops/s, and the median of the on/off ratios of the two runs
                of each repetition (made one after the other). On a busy machine the spread between runs of one
                setting is wider than 3%: read it beside the instruction
                counts.
  redis         redis-server (Debian's, linked with jemalloc, so memalloc
                is preloaded) driven by
                redis-benchmark -q -n 200000 -P 16 -d 256 -t set,get,lpush,
                a fresh server per run, off and on interleaved, --reps
                repetitions, median requests/s per command; with
                --redis-callgrind also the server's instructions under
                callgrind (redis-benchmark -n 30000), total and inside the
                profiler's functions.

Usage (make bench-prof runs all three, Redis when it is installed, and
writes bench/results/prof-cost.md; make bench-report then puts it in
BENCHMARK.md):
  bench/prof_cost.py [--lib build/libmemalloc.so] [--bin-dir build/bench]
                     [--only instructions,time,redis] [--reps 5] [--cg-reps 3]
                     [--benches churn-64k,threadtest,...] [--redis-callgrind]
                     [--out FILE]
Only the Python standard library is used.
"""

import argparse
import datetime
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import run  # noqa: E402  (bench/run.py: the suite's sizes, one run, RESULT lines)

# ---- what is measured ----------------------------------------------------------

# Timed: (id, program, thread count, arguments): the suite's full sizes
# (run.SUITE), at 1 thread for the single-threaded programs and 2 (the
# machine's cores) for the others.
def timed_programs():
    pick = [("churn-small", 1), ("churn-medium", 1), ("churn-mixed", 1), ("churn-64k", 1),
            ("threadtest", 1), ("threadtest", 2), ("larson", 2), ("xmalloc", 2),
            ("sh8bench", 2), ("mstress", 2), ("larson-kr", 2), ("hoard-threadtest", 2),
            ("realloc", 1), ("threadchurn", 2), ("fragmentation", 1), ("malloc-large", 1)]
    specs = {s["id"]: s for s in run.SUITE}
    return [("%s t=%d" % (i, t), specs[i]["prog"], t, specs[i]["full"]) for i, t in pick]


# Under callgrind: single-threaded runs that do a fixed amount of work
# (larson and larson-kr run for a time, so they are left out), sized to
# take a few seconds each under valgrind.
CALLGRIND = [
    ("churn-small", "churn", ["-m", "small", "-n", "1000000"]),
    ("churn-medium", "churn", ["-m", "medium", "-n", "1000000"]),
    ("churn-mixed", "churn", ["-m", "mixed", "-n", "1000000"]),
    ("churn-64k", "churn", ["-m", "64k", "-n", "100000"]),
    ("threadtest", "threadtest", ["-t", "1", "-i", "30", "-n", "50000"]),
    ("xmalloc", "xmalloc", ["-t", "1", "-n", "1M"]),
    ("sh8bench", "sh8bench", ["-t", "1", "-r", "5", "-n", "20000"]),
    ("mstress", "mstress", ["-t", "1", "-r", "2"]),
    ("hoard-threadtest", "hoard-threadtest", ["-t", "1", "-i", "300"]),
    ("realloc", "realloc", ["-t", "1", "-r", "20"]),
    ("fragmentation", "fragmentation", ["-t", "1", "-n", "100k", "-m", "32M"]),
    ("malloc-large", "malloc-large", ["-t", "1", "-n", "30"]),
]

REDIS_TESTS = "set,get,lpush"
REDIS_ARGS = ["-q", "-n", "200000", "-P", "16", "-d", "256", "-t", REDIS_TESTS]
REDIS_CG_ARGS = ["-q", "-n", "30000", "-P", "16", "-d", "256", "-t", REDIS_TESTS]

# The profiler's own functions, callgrind's inclusive counts: prof_sample
# (a sample's record and the next interval), and the two frees of a sampled
# block, sample_free_cached (the thread's own arena; the live set's removal
# is inline there) and sample_clear (every other path). The two frees
# include the block's ordinary free, a few dozen instructions, so the share
# is a little high. Left out: the flag's set (one instruction) and the few
# dozen instructions of ma_alloc_sampled's entry.
PROFILER_FUNCTIONS = ["prof_sample", "sample_free_cached", "sample_clear"]


def env_for(lib, prof):
    env = run.preload_env(lib)
    for k in [k for k in env if k.startswith("MEMALLOC_")]:
        del env[k]
    if prof:
        env["MEMALLOC_PROF"] = "1"
    return env


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pct(on, off):
    return 100.0 * (on - off) / off


def spread(xs):
    """(max - min) / min of a setting's runs, in percent."""
    return pct(max(xs), min(xs))


def fmt_rate(x):
    if x >= 1e6:
        return "%.2f M" % (x / 1e6)
    return "%.0f k" % (x / 1e3) if x >= 1e4 else "%.1f" % x


class Report:
    """The Markdown printed and, with --out, written to a file."""

    def __init__(self):
        self.lines = []

    def add(self, *lines):
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)


# ---- instructions ------------------------------------------------------------------

def callgrind_run(lib, prof, cmd, out_file="/dev/null", timeout=900):
    """Whole-program instructions of cmd under callgrind, or None."""
    vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out_file] + cmd
    status, out, err, _, _ = run.run_process(vg, env_for(lib, prof), timeout)
    m = re.search(r"Collected\s*:\s*(\d+)", err)
    if status != 0 or not m:
        log("  callgrind failed (%s): %s" % (status, (err.strip().splitlines() or [""])[-1][:200]))
        return None
    return int(m.group(1))


def cg_inclusive(path, functions):
    """Sum of the inclusive counts of `functions` in a callgrind file."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                       capture_output=True, text=True)
    total = 0
    for fn in functions:
        for line in r.stdout.splitlines():
            m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+\S*:%s \[" % re.escape(fn), line)
            if m:
                total += int(m.group(1).replace(",", ""))
                break
    return total


def measure_instructions(args, rep):
    rows = []
    for name, prog, pargs in CALLGRIND:
        if args.benches and name not in args.benches:
            continue
        cmd = [os.path.join(args.bin_dir, prog)] + pargs
        counts = {0: [], 1: []}
        own = None
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.cg_reps):
                for prof in ((0, 1) if r % 2 == 0 else (1, 0)):
                    out_file = os.path.join(tmp, "cg.out") if prof and own is None else "/dev/null"
                    c = callgrind_run(args.lib, prof, cmd, out_file)
                    if c is None:
                        continue
                    counts[prof].append(c)
                    if out_file != "/dev/null":
                        own = 100.0 * cg_inclusive(out_file, PROFILER_FUNCTIONS) / c
        if not counts[0] or not counts[1]:
            continue
        off, on = min(counts[0]), min(counts[1])
        rows.append((name, " ".join([prog] + pargs), off, on, pct(on, off), own,
                     max(spread(counts[0]), spread(counts[1]))))
        log("  %-18s %14d %14d %+6.2f%%  profiler's own %.2f%%" % (name, off, on, pct(on, off), own or 0))
    rep.add("", "**Instructions**, whole program, under callgrind (`valgrind --tool=callgrind "
            "PROGRAM` with `LD_PRELOAD=build/libmemalloc.so`; the fewest of %d runs of each "
            "setting; *profiler's own*: the instructions inside %s, inclusive, in a run with it "
            "on, as a share of that run's):" % (args.cg_reps, ", ".join(PROFILER_FUNCTIONS)), "",
            "| program | command | off | on | on vs off | profiler's own | runs of a setting differ by |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, cmd, off, on, d, own, sp in rows:
        rep.add("| %s | `%s` | %.2f M | %.2f M | %+.2f%% | %.2f%% | up to %.2f%% |"
                % (name, cmd, off / 1e6, on / 1e6, d, own or 0.0, sp))
    return rows


# ---- time ---------------------------------------------------------------------------

def one_run(lib, prof, cmd):
    """(ops/s, CPU seconds) of one run, or None."""
    status, out, err, wall, ru = run.run_process(cmd, env_for(lib, prof), 300)
    res = run.parse_result(out)
    if status != 0 or res is None or res.get("lib") != "memalloc" or ru is None:
        log("  run failed (%s): %s" % (status, (err.strip().splitlines() or [""])[-1][:200]))
        return None
    return res["ops_per_sec"], ru.ru_utime + ru.ru_stime


def measure_time(args, rep):
    rows = []
    for name, prog, t, pargs in timed_programs():
        if args.benches and name.split()[0] not in args.benches:
            continue
        cmd = [os.path.join(args.bin_dir, prog), "-t", str(t)] + pargs
        v = {0: [], 1: []}
        pairs = []  # (off, on) of one repetition, run back to back
        for r in range(args.reps):
            got = {}
            for prof in ((0, 1) if r % 2 == 0 else (1, 0)):
                x = one_run(args.lib, prof, cmd)
                if x is not None:
                    v[prof].append(x)
                    got[prof] = x
            if len(got) == 2:
                pairs.append((got[0], got[1]))
        if not v[0] or not v[1]:
            continue
        ops = {k: statistics.median(x[0] for x in v[k]) for k in v}
        cpu = {k: statistics.median(x[1] for x in v[k]) for k in v}
        # Each repetition's two runs share the machine's state of the
        # moment: the median of their ratios is less disturbed by the
        # load's drift than the ratio of the two medians.
        paired = pct(statistics.median(on[1] / off[1] for off, on in pairs), 1.0) if pairs else float("nan")
        row = (name, " ".join([prog, "-t", str(t)] + pargs), cpu[0], cpu[1], pct(cpu[1], cpu[0]), paired,
               ops[0], ops[1], pct(ops[0] / ops[1], 1.0), max(spread([x[1] for x in v[k]]) for k in v))
        rows.append(row)
        log("  %-22s cpu %.3f %.3f s %+6.2f%%  paired %+6.2f%%  per op %+6.2f%%  (spread %.0f%%)"
            % (name, row[2], row[3], row[4], row[5], row[8], row[9]))
    rep.add("", "**Time**, the suite's programs at their full sizes (the medians of %d runs of "
            "each setting, interleaved; CPU time is the process's user + system time; *paired*: "
            "the median, over the repetitions, of the CPU time of the run with profiling on "
            "divided by that of the run off made next to it; *per op* compares the programs' own "
            "ops/s):" % args.reps, "",
            "| program | command | CPU off | CPU on | CPU on vs off | paired | ops/s off | ops/s on | "
            "per op, on vs off | runs of a setting differ by |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, cmd, c0, c1, dc, pc, o0, o1, do, sp in rows:
        rep.add("| %s | `%s` | %.3f s | %.3f s | %+.1f%% | %+.1f%% | %s | %s | %+.1f%% | up to %.0f%% |"
                % (name, cmd, c0, c1, dc, pc, fmt_rate(o0), fmt_rate(o1), do, sp))
    return rows


# ---- redis ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_up(port, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return True
        time.sleep(0.1)
    return False


def redis_session(lib, prof, bench_args, tmp, callgrind=False):
    """Starts a server in directory tmp (under callgrind if asked), runs
    redis-benchmark against it, shuts it down. Returns {command:
    requests/s}; the callgrind file is tmp/callgrind.out."""
    port = free_port()
    server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", tmp, "--logfile", os.path.join(tmp, "log")]
    if callgrind:
        server = ["valgrind", "--tool=callgrind",
                  "--callgrind-out-file=" + os.path.join(tmp, "callgrind.out")] + server
    proc = subprocess.Popen(server, env=env_for(lib, prof), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        if not redis_up(port, 120 if callgrind else 20):
            raise RuntimeError("redis-server did not answer on port %d" % port)
        with open("/proc/%d/maps" % proc.pid) as f:
            if os.path.basename(lib) not in f.read():
                raise RuntimeError("%s is not mapped in redis-server" % lib)
        b = subprocess.run(["redis-benchmark", "-p", str(port)] + bench_args,
                           capture_output=True, text=True, timeout=1800)
        rates = {}
        for line in b.stdout.replace("\r", "\n").splitlines():
            m = re.match(r"^(\w+): ([\d.]+) requests per second", line.strip())
            if m:
                rates[m.group(1)] = float(m.group(2))
        # The server's own CPU time (INFO cpu: user + system seconds).
        info = subprocess.run(["redis-cli", "-p", str(port), "info", "cpu"], capture_output=True, text=True).stdout
        cpu = [float(x) for x in re.findall(r"^used_cpu_(?:user|sys):([\d.]+)", info, re.M)]
        if len(cpu) == 2:
            rates["server CPU"] = sum(cpu)
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rates


def measure_redis(args, rep):
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        log("redis-server or redis-benchmark not installed (apt-get install redis-server): skipped")
        return None
    v = {0: {}, 1: {}}
    for r in range(args.reps):
        for prof in ((0, 1) if r % 2 == 0 else (1, 0)):
            with tempfile.TemporaryDirectory(prefix="memalloc-redis.") as tmp:
                rates = redis_session(args.lib, prof, REDIS_ARGS, tmp)
            for k, x in rates.items():
                v[prof].setdefault(k, []).append(x)
            log("  redis rep %d prof=%d %s" % (r + 1, prof, " ".join("%s %.3g" % kv for kv in rates.items())))
    rep.add("", "**Redis**: `redis-benchmark %s` against a fresh `LD_PRELOAD=build/libmemalloc.so "
            "redis-server --save '' --appendonly no` per run (Debian's %s; the medians of %d runs "
            "of each setting, interleaved; *server CPU*: the server's user + system seconds for "
            "the whole run, from `INFO cpu`):" % (" ".join(REDIS_ARGS), redis_version(), args.reps), "",
            "| command | off | on | on vs off (time) | runs of a setting differ by |",
            "| --- | ---: | ---: | ---: | ---: |")
    rows = []
    for k in v[0]:
        if k not in v[1]:
            continue
        off, on = statistics.median(v[0][k]), statistics.median(v[1][k])
        sp = max(spread(v[0][k]), spread(v[1][k]))
        if k == "server CPU":
            d = pct(on, off)
            cells = ("%.3f s" % off, "%.3f s" % on)
        else:
            d = pct(off / on, 1.0)
            cells = (fmt_rate(off) + " requests/s", fmt_rate(on) + " requests/s")
        rows.append((k, off, on, d, sp))
        rep.add("| %s | %s | %s | %+.1f%% | up to %.0f%% |" % ((k,) + cells + (d, sp)))
    if args.redis_callgrind:
        totals, own = {}, None
        for prof in (0, 1):
            with tempfile.TemporaryDirectory(prefix="memalloc-redis.") as tmp:
                redis_session(args.lib, prof, REDIS_CG_ARGS, tmp, callgrind=True)
                path = os.path.join(tmp, "callgrind.out")
                totals[prof] = cg_total(path)
                if prof:
                    own = cg_inclusive(path, PROFILER_FUNCTIONS)
        log("  redis under callgrind: %s, profiler's own %s" % (totals, own))
        rep.add("", "redis-server under callgrind, driven by `redis-benchmark %s`: %.1f M "
                "instructions off, %.1f M on (%+.2f%%; the server's idle ticks move this total by "
                "about 1%% between runs of one setting); inside the profiler's own functions "
                "(%s, inclusive): %.2f M, %.3f%% of the run with it on."
                % (" ".join(REDIS_CG_ARGS), totals[0] / 1e6, totals[1] / 1e6, pct(totals[1], totals[0]),
                   ", ".join(PROFILER_FUNCTIONS), own / 1e6, 100.0 * own / totals[1]))
    return rows


def redis_version():
    r = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    m = re.search(r"v=(\S+)", r.stdout)
    return "redis-server %s" % m.group(1) if m else "redis-server"


def cg_total(path):
    r = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True)
    m = re.search(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", r.stdout, re.M)
    return int(m.group(1).replace(",", "")) if m else None


# ---- main ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libmemalloc.so"))
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--only", default="instructions,time,redis",
                    help="which measurements, comma-separated: instructions, time, redis")
    ap.add_argument("--reps", type=int, default=5, help="timed runs of each setting")
    ap.add_argument("--cg-reps", type=int, default=3, help="callgrind runs of each setting")
    ap.add_argument("--benches", default="", help="only these program ids (comma-separated)")
    ap.add_argument("--redis-callgrind", action="store_true",
                    help="also count the Redis server's instructions under callgrind (slow)")
    ap.add_argument("--out", help="also write the tables to this Markdown file")
    args = ap.parse_args()
    args.lib = os.path.abspath(args.lib)
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.benches = [b for b in args.benches.split(",") if b]
    only = set(args.only.split(","))
    if not os.path.exists(args.lib):
        sys.exit("prof_cost.py: %s not found (make)" % args.lib)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    # Local changes to what the library is built from (not the documents).
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--",
                            "base", "arenas", "src", "include", "Makefile"],
                           capture_output=True, text=True).stdout.strip()
    rep = Report()
    rep.add("## Profiling cost", "",
            "What `MEMALLOC_PROF=1` (one sample per 512 KiB allocated, on average) costs against "
            "profiling off, the same programs under `LD_PRELOAD=build/libmemalloc.so`. Made by "
            "`make bench-prof` (bench/prof_cost.py) at %s%s, %s, load average %s at the start "
            "(the machine is shared). The instruction counts are the repeatable figure; the "
            "times and Redis's rates move by more than the difference between the settings "
            "from one run to the next here."
            % (commit, " (with local changes)" if dirty else "",
               datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
               " ".join(open("/proc/loadavg").read().split()[:3])))
    if "instructions" in only:
        if shutil.which("valgrind"):
            log("instructions under callgrind, %d runs of each setting" % args.cg_reps)
            measure_instructions(args, rep)
        else:
            log("valgrind not installed: no instruction counts")
    if "time" in only:
        log("time, %d interleaved runs of each setting" % args.reps)
        measure_time(args, rep)
    if "redis" in only:
        log("redis, %d interleaved runs of each setting" % args.reps)
        measure_redis(args, rep)
    rep.add("", "Reproduce: `make bench-prof` (about 8 minutes; `PROF_COST_ARGS='--only "
            "instructions'` for the counts alone, `PROF_COST_ARGS='--reps 9'` for more timed "
            "runs), then `make bench-report` to copy the tables here.")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rep.lines) + "\n")
        log("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
