#!/usr/bin/env python3
"""bench/run.py - run the memalloc benchmark suite and write BENCHMARK.md.

Every program in build/bench/ uses only the standard malloc names, so the
same binary is run once per allocator: memalloc, jemalloc, tcmalloc
(minimal) and mimalloc through LD_PRELOAD, glibc with nothing preloaded.
Runs are interleaved (A B C D E, then again, with the starting allocator
rotated each repetition), each configuration is repeated, and every run is
one JSON line in the results file as soon as it finishes. The report
(bench/report.py) is then regenerated from that file.

Modes (see --help):  --quick | --full    the suite (writes results + report)
                     --check             smoke test of every program
                     --report-only       report from an existing results file
                     --perf BENCH        perf stat/record (or callgrind) of one
Only the Python standard library is used.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import report  # noqa: E402  (bench/report.py, beside this file)

# ---- allocators ------------------------------------------------------------

# name -> (library file, Debian package that ships it, -dev package to install)
PEERS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc2", "libjemalloc-dev"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4", "libgoogle-perftools-dev"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc2.0", "libmimalloc-dev"),
}
ALL_ALLOCATORS = ["memalloc", "glibc", "jemalloc", "tcmalloc", "mimalloc"]

# ---- the suite ---------------------------------------------------------------
#
# Each benchmark: program, arguments per mode (the thread count is added as
# -t T) and which thread counts it runs at ("all" = the --threads list).
# Quick sizes keep a run near 0.1-0.5 s under glibc, so the quick suite
# (~1125 runs at 1-16 threads, 540 of them the benchmarks before the
# classic ones) takes about 7-8 minutes on a 2-core machine (an estimate
# from the runs of each part); full sizes are 3-5x longer and run 5 times.

SUITE = [
    dict(id="threadtest", prog="threadtest", threads="all",
         quick=["-i", "60", "-n", "50000"], full=["-i", "150", "-n", "100000"]),
    dict(id="larson", prog="larson", threads="all",
         quick=["-d", "0.3"], full=["-d", "1.5"]),
    dict(id="xmalloc", prog="xmalloc", threads="all",
         quick=["-n", "1500k"], full=["-n", "8M"]),
    dict(id="cache-thrash", prog="cache-thrash", threads="all",
         quick=["-i", "5000", "-r", "4000"], full=["-i", "20000", "-r", "5000"]),
    dict(id="cache-scratch", prog="cache-scratch", threads="all",
         quick=["-i", "5000", "-r", "4000"], full=["-i", "20000", "-r", "5000"]),
    dict(id="fragmentation", prog="fragmentation", threads=[1, 4],
         quick=["-n", "300k", "-m", "32M"], full=["-n", "1500k", "-m", "64M"]),
    dict(id="realloc", prog="realloc", threads=[1],
         quick=["-r", "80"], full=["-r", "400"]),
    dict(id="threadchurn", prog="threadchurn", threads="all",
         quick=["-n", "500"], full=["-n", "2000"]),
    dict(id="churn-small", prog="churn", threads=[1],
         quick=["-m", "small", "-n", "6M"], full=["-m", "small", "-n", "30M"]),
    dict(id="churn-medium", prog="churn", threads=[1],
         quick=["-m", "medium", "-n", "3M"], full=["-m", "medium", "-n", "15M"]),
    dict(id="churn-mixed", prog="churn", threads=[1],
         quick=["-m", "mixed", "-n", "6M"], full=["-m", "mixed", "-n", "30M"]),
    # The classic published benchmarks (bench/NOTES.md, "The classic
    # benchmarks"): quick sizes take 0.2-0.5 s under glibc at 1 thread,
    # full ones about 1 s.
    dict(id="larson-kr", prog="larson-kr", threads="all",
         quick=["-d", "0.3"], full=["-d", "1"]),
    dict(id="larson-kr-sized", prog="larson-kr", threads="all",
         quick=["-z", "-d", "0.3"], full=["-z", "-d", "1"]),
    dict(id="hoard-threadtest", prog="hoard-threadtest", threads="all",
         quick=["-i", "800"], full=["-i", "2500"]),
    # Batches of 20,000 blocks (36 MB at 1 thread): big enough that whole
    # chunks fall free between batches, as in the published sh8bench.
    dict(id="sh8bench", prog="sh8bench", threads="all",
         quick=["-r", "30", "-n", "20000"], full=["-r", "100", "-n", "20000"]),
    dict(id="mstress", prog="mstress", threads="all",
         quick=["-r", "5"], full=["-r", "15"]),
    # rpmalloc's benchmark as mimalloc-bench runs it (sizes 8-16000, linear
    # falloff, 1000 slots a thread, parcels to other threads every second
    # iteration); -l counts the iterations of all threads together, so the
    # work stays fixed as T grows (mimalloc-bench's run is -l 8000 -t 16).
    dict(id="rptest", prog="rptest", threads="all",
         quick=["-l", "5000"], full=["-l", "16000"]),
    # SmartHeap's sh6bench with mimalloc-bench's call count (a ring of
    # 10,000 slots split among the threads), sizes 1-1000; mimalloc-bench
    # makes 10,000 sweeps of 19,300 allocations, these runs 200 and 600.
    dict(id="sh6bench", prog="sh6bench", threads="all",
         quick=["-r", "200"], full=["-r", "600"]),
    dict(id="churn-64k", prog="churn", threads=[1, 2, 4],
         quick=["-m", "64k", "-n", "600k"], full=["-m", "64k", "-n", "2M"]),
    # Single-threaded by design; each allocation writes 5-25 MiB. The ring
    # holds 20, so the runs measure 80 (quick) and 280 (full) replacements
    # in the steady state, about 0.3 s and 1 s under glibc.
    dict(id="malloc-large", prog="malloc-large", threads=[1],
         quick=["-n", "100"], full=["-n", "300"]),
]

# Instructions per malloc+free pair: churn under callgrind, counting only
# inside churn_malloc/churn_free, minus a run with no steps (which removes
# the allocator's start-up and the window's own pairs), divided by steps.
CALLGRIND_MODES = ["small", "medium", "mixed", "16", "256", "4k", "64k"]
CALLGRIND_STEPS = {"quick": 100000, "full": 500000}

PERF_EVENTS = ["instructions", "cycles", "cache-misses", "branch-misses"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    """Runs a command, returns (returncode, stdout+stderr); never raises."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, **kw)
        return p.returncode, p.stdout
    except OSError as e:
        return 127, str(e)


def lib_dirs():
    dirs = []
    rc, out = sh([os.environ.get("CC", "cc"), "-print-multiarch"])
    if rc == 0 and out.strip():
        dirs.append("/usr/lib/" + out.strip())
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
             "/usr/lib", "/usr/local/lib"]
    return dirs


def find_lib(name):
    for d in lib_dirs():
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return None


def dpkg_version(pkg):
    rc, out = sh(["dpkg-query", "-W", "-f=${Version}", pkg])
    return out.strip() if rc == 0 and out.strip() else None


def resolve_allocators(wanted, memalloc_lib, install, allow_missing_memalloc):
    """Returns ({name: preload path or None for glibc}, {name: why skipped})."""
    libs, skipped = {}, {}
    missing = [n for n in wanted if n in PEERS and find_lib(PEERS[n][0]) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        pkgs = [PEERS[n][2] for n in missing]
        log("installing missing peers: " + " ".join(pkgs))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        rc, _ = sh(["apt-get", "install", "-y"] + pkgs, env=env)
        if rc != 0:
            sh(["apt-get", "update"], env=env)
            sh(["apt-get", "install", "-y"] + pkgs, env=env)
    for name in wanted:
        if name == "glibc":
            libs[name] = None
        elif name == "memalloc":
            path = os.path.abspath(memalloc_lib)
            if os.path.exists(path):
                libs[name] = path
            elif allow_missing_memalloc:
                skipped[name] = "%s not built" % memalloc_lib
            else:
                sys.exit("run.py: %s is missing (build it with `make %s`)"
                         % (memalloc_lib, memalloc_lib))
        elif name in PEERS:
            path = find_lib(PEERS[name][0])
            if path:
                libs[name] = path
            else:
                why = "%s not found" % PEERS[name][0]
                if os.geteuid() != 0 or not install:
                    why += " (install %s)" % PEERS[name][2]
                skipped[name] = why
        else:
            sys.exit("run.py: unknown allocator %r (known: %s)" % (name, ", ".join(ALL_ALLOCATORS)))
    return libs, skipped


# ---- machine description -----------------------------------------------------

def machine_info(libs):
    info = {}
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu"] = cpu
    info["cores"] = os.cpu_count()
    try:
        info["cores_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cores_usable"] = os.cpu_count()
    info["kernel"] = platform.release()
    info["arch"] = platform.machine()
    try:
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    cc = os.environ.get("CC", "cc")
    rc, out = sh([cc, "--version"])
    info["compiler"] = out.splitlines()[0] if rc == 0 and out else cc
    info["python"] = platform.python_version()
    versions = {"glibc": dpkg_version("libc6") or platform.libc_ver()[1]}
    for name, (_, pkg, _) in PEERS.items():
        versions[name] = dpkg_version(pkg)
    rc, out = sh(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    versions["memalloc"] = "git " + out.strip() if rc == 0 else None
    info["versions"] = versions
    info["libraries"] = {k: v for k, v in libs.items()}
    return info


# ---- perf support ------------------------------------------------------------

def perf_events_supported():
    """Hardware counters perf stat can count here ([] when none or no perf)."""
    if not shutil.which("perf"):
        return []
    ok = []
    for ev in PERF_EVENTS:
        rc, out = sh(["perf", "stat", "-x", ",", "-e", ev, "true"])
        if rc != 0:
            continue
        for line in out.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and ev in fields[2] and re.match(r"^\d", fields[0]):
                ok.append(ev)
    return ok


def parse_perf(path):
    counters = {}
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and re.match(r"^\d+(\.\d+)?$", fields[0]):
                    counters[fields[2].split(":")[0]] = float(fields[0])
    except OSError:
        pass
    return counters


# ---- one run -----------------------------------------------------------------

def parse_result(text):
    """The RESULT line's key=value pairs (numbers converted), or None."""
    lines = [l for l in text.splitlines() if l.startswith("RESULT ")]
    if len(lines) != 1:
        return None
    out = {}
    for tok in lines[0].split()[1:]:
        if "=" not in tok:
            continue
        k, v = tok.split("=", 1)
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def preload_env(lib):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
    return env


def run_process(cmd, env, timeout):
    """Runs cmd; returns (status, stdout, stderr, wall seconds, rusage or None).
    status is the exit code, -signal, or None on timeout. Uses os.wait4 so
    the child's own peak RSS and CPU times come back with it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        status, ru = None, None
        while True:
            pid, st, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                status = os.waitstatus_to_exitcode(st)
                ru = usage
                break
            if time.monotonic() - t0 > timeout:
                proc.kill()
                _, st, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.002)
        proc.returncode = status if status is not None else -9  # already reaped
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return status, out.read(), err.read(), wall, ru


def command_text(lib, cmd):
    rel = [os.path.relpath(c, ROOT) if os.path.isabs(c) and c.startswith(ROOT) else c for c in cmd]
    prefix = "LD_PRELOAD=%s " % os.path.relpath(lib, ROOT) if lib and lib.startswith(ROOT) else (
        "LD_PRELOAD=%s " % lib if lib else "")
    return prefix + " ".join(rel)


def timed_run(bench, alloc, lib, threads, cmd, timeout, perf_events, perf_tmp):
    full_cmd = list(cmd)
    if perf_events:
        full_cmd = ["perf", "stat", "-x", ",", "-o", perf_tmp, "-e", ",".join(perf_events), "--"] + full_cmd
    status, out, err, wall, ru = run_process(full_cmd, preload_env(lib), timeout)
    rec = {"type": "run", "bench": bench, "alloc": alloc, "threads": threads,
           "cmd": command_text(lib, cmd), "wall": round(wall, 4), "ok": False, "error": None}
    if ru is not None:
        rec["rusage"] = {"maxrss_kb": ru.ru_maxrss, "utime": round(ru.ru_utime, 4),
                         "stime": round(ru.ru_stime, 4), "minflt": ru.ru_minflt}
    result = parse_result(out)
    if status is None:
        rec["error"] = "timeout after %ds" % timeout
    elif status != 0:
        msg = (err.strip().splitlines() or ["(no message)"])[-1]
        rec["error"] = "exit %d: %s" % (status, msg[:300])
    elif result is None:
        rec["error"] = "no single RESULT line in output"
    elif result.get("lib") != alloc:
        rec["error"] = "preload not in effect: the process used %s" % result.get("lib")
    else:
        rec["ok"] = True
    rec["result"] = result
    if perf_events:
        rec["perf"] = parse_perf(perf_tmp)
    return rec


WRAPPERS = ["churn_malloc", "churn_free"]
# glibc's own entry points, for the cross-check of the wrapper method
GLIBC_ENTRIES = ["malloc", "free", "__libc_malloc", "__libc_free"]


def callgrind_count(lib, cmd, timeout, functions=None):
    """Instructions collected inside `functions` (default: churn's two
    wrappers) and everything they call, or (None, why)."""
    toggles = ["--toggle-collect=" + fn for fn in functions or WRAPPERS]
    with tempfile.TemporaryDirectory() as tmp:
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(tmp, "cg.out"),
              "--collect-atstart=no"] + toggles + cmd
        status, out, err, _, _ = run_process(vg, preload_env(lib), timeout)
        if status != 0:
            return None, "valgrind exit %s: %s" % (status, (err.strip().splitlines() or [""])[-1][:200])
        m = re.search(r"Collected\s*:\s*(\d+)", err)
        if not m:
            return None, "no 'Collected' line from callgrind"
        return int(m.group(1)), None


# ---- progress ----------------------------------------------------------------

class Progress:
    def __init__(self, total):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def show(self, text):
        self.done += 1
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0
        line = "[%4d/%d] %-48s %4.0fs elapsed, ~%.0fs left" % (self.done, self.total, text, elapsed, eta)
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
            sys.stderr.flush()
        elif time.monotonic() - self.last_line > 10 or self.done == self.total:
            log(line)
            self.last_line = time.monotonic()

    def note(self, text):
        if self.tty:
            sys.stderr.write("\n")
        log(text)

    def finish(self):
        if self.tty:
            sys.stderr.write("\n")


# ---- the suite ---------------------------------------------------------------

def bench_threads(spec, threads):
    if spec["threads"] == "all":
        return list(threads)
    chosen = [t for t in spec["threads"] if t in threads]
    return chosen or [min(threads)]


def run_suite(args, libs, skipped, out_path):
    mode = "quick" if args.quick else "full"
    reps = args.reps or (3 if args.quick else 5)
    allocs = [a for a in args.allocators if a in libs]
    suite = [s for s in SUITE if not args.benches or s["id"] in args.benches
             or s["prog"] in args.benches]
    do_callgrind = (not args.no_callgrind and shutil.which("valgrind") is not None
                    and (not args.benches or "churn" in args.benches or "churn-instr" in args.benches))
    perf_events = [] if args.no_perf else perf_events_supported()
    timeout = 120 if args.quick else 600

    jobs = []
    for spec in suite:
        for t in bench_threads(spec, args.threads):
            for rep in range(reps):
                order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
                for alloc in order:
                    jobs.append((spec, t, rep, alloc))
    n_cg = (len(allocs) + ("glibc" in allocs)) * len(CALLGRIND_MODES) * 2 if do_callgrind else 0

    meta = {"type": "meta", "mode": mode, "reps": reps, "threads": list(args.threads),
            "allocators": allocs, "skipped": skipped,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(libs), "perf_events": perf_events,
            "callgrind": do_callgrind, "callgrind_steps": CALLGRIND_STEPS[mode],
            "argv": sys.argv[1:],
            "suite": [{"id": s["id"], "prog": s["prog"], "args": s[mode],
                       "threads": bench_threads(s, args.threads)} for s in suite]}
    for name, why in skipped.items():
        log("skipping %s: %s" % (name, why))
    if not perf_events:
        log("perf hardware counters not available here: recording rusage only")
    log("%s suite: %d runs + %d callgrind runs, allocators: %s, threads: %s, %d repetitions"
        % (mode, len(jobs), n_cg, " ".join(allocs), ",".join(map(str, args.threads)), reps))

    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    progress = Progress(len(jobs) + n_cg)
    failures = 0
    with open(out_path, "w") as f, tempfile.NamedTemporaryFile(suffix=".perf") as perf_tmp:
        f.write(json.dumps(meta) + "\n")
        for spec, t, rep, alloc in jobs:
            cmd = [os.path.join(args.bin_dir, spec["prog"]), "-t", str(t)] + spec[mode]
            rec = timed_run(spec["id"], alloc, libs[alloc], t, cmd, timeout, perf_events, perf_tmp.name)
            rec["rep"] = rep
            f.write(json.dumps(rec) + "\n")
            f.flush()
            progress.show("%s t=%d %s rep %d/%d" % (spec["id"], t, alloc, rep + 1, reps))
            if not rec["ok"]:
                failures += 1
                progress.note("FAILED %s t=%d %s: %s" % (spec["id"], t, alloc, rec["error"]))
        if do_callgrind:
            steps = CALLGRIND_STEPS[mode]
            for cg_mode in CALLGRIND_MODES:
                for alloc in allocs:
                    counts, err = {}, None
                    for n in (steps, 0):
                        cmd = [os.path.join(args.bin_dir, "churn"), "-m", cg_mode, "-n", str(n)]
                        c, why = callgrind_count(libs[alloc], cmd, timeout * 4)
                        progress.show("callgrind churn %s %s n=%d" % (cg_mode, alloc, n))
                        if c is None:
                            err = why
                        counts[n] = c
                    rec = {"type": "instr", "bench": "churn-instr", "mode": cg_mode, "alloc": alloc,
                           "threads": 1, "steps": steps, "ok": err is None, "error": err,
                           "collected": counts.get(steps), "baseline": counts.get(0),
                           "cmd": command_text(libs[alloc], [
                               "valgrind", "--tool=callgrind", "--collect-atstart=no",
                               "--toggle-collect=churn_malloc", "--toggle-collect=churn_free",
                               os.path.join(args.bin_dir, "churn"), "-m", cg_mode, "-n", "N"])}
                    if err is None:
                        rec["instr_per_pair"] = round((counts[steps] - counts[0]) / steps, 2)
                    if err is None and alloc == "glibc":
                        # Cross-check: the same difference counted inside glibc's
                        # malloc/free themselves (no wrapper, no PLT jump).
                        direct = {}
                        for n in (steps, 0):
                            cmd = [os.path.join(args.bin_dir, "churn"), "-m", cg_mode, "-n", str(n)]
                            direct[n], _ = callgrind_count(None, cmd, timeout * 4, GLIBC_ENTRIES)
                            progress.show("callgrind churn %s glibc direct n=%d" % (cg_mode, n))
                        if None not in direct.values():
                            rec["direct_per_pair"] = round((direct[steps] - direct[0]) / steps, 2)
                    if err is not None:
                        failures += 1
                        progress.note("FAILED callgrind %s %s: %s" % (cg_mode, alloc, err))
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
        f.write(json.dumps({"type": "end", "finished": datetime.datetime.now().astimezone()
                            .isoformat(timespec="seconds"),
                            "seconds": round(time.monotonic() - progress.t0, 1),
                            "failures": failures}) + "\n")
    progress.finish()
    log("wrote %s (%d failures) in %.0fs" % (os.path.relpath(out_path, ROOT), failures,
                                             time.monotonic() - progress.t0))
    return failures


# ---- smoke test ----------------------------------------------------------------

CHECK_ARGS = {
    "threadtest": ["-t", "2", "-i", "3", "-n", "2000"],
    "larson": ["-t", "2", "-d", "0.05", "-n", "100"],
    "xmalloc": ["-t", "2", "-n", "20000"],
    "cache-thrash": ["-t", "2", "-i", "100", "-r", "100"],
    "cache-scratch": ["-t", "2", "-i", "100", "-r", "100"],
    "fragmentation": ["-t", "2", "-n", "5000", "-m", "2M"],
    "realloc": ["-t", "2", "-r", "2", "-a", "100", "-v", "256"],
    "churn": ["-m", "mixed", "-n", "20000"],
    "threadchurn": ["-t", "2", "-n", "20", "-r", "2"],
    "larson-kr": ["-t", "2", "-d", "0.05", "-n", "100", "-r", "20"],
    "larson-kr-sized": ["-t", "2", "-d", "0.05", "-n", "100", "-r", "20", "-z"],
    "hoard-threadtest": ["-t", "2", "-i", "3", "-n", "2000"],
    "sh8bench": ["-t", "2", "-r", "4", "-n", "400"],
    "mstress": ["-t", "2", "-r", "2", "-s", "5000"],
    "rptest": ["-t", "2", "-l", "200", "-b", "200"],
    "sh6bench": ["-t", "2", "-n", "1000", "-r", "4"],
    "churn-16": ["-m", "16", "-n", "20000"],
    "churn-64k": ["-m", "64k", "-t", "2", "-n", "20000"],
    "malloc-large": ["-n", "25", "-m", "1M", "-M", "2M"],
}
# CHECK_ARGS entries that are not named after their program.
CHECK_PROG = {"larson-kr-sized": "larson-kr", "churn-16": "churn", "churn-64k": "churn"}


def run_check(args, libs):
    """Every program, under every available allocator: one RESULT line with
    the right lib=, exit 0; with -X (a block corrupted on purpose): exit 2, a
    BENCH-ERROR message and no RESULT line. Returns the number of failures."""
    failures = 0
    for prog, pargs in CHECK_ARGS.items():
        exe = os.path.join(args.bin_dir, CHECK_PROG.get(prog, prog))
        for alloc, lib in libs.items():
            status, out, err, _, _ = run_process([exe] + pargs, preload_env(lib), 60)
            res = parse_result(out)
            good = status == 0 and res is not None and res.get("lib") == alloc
            status_x, out_x, err_x, _, _ = run_process([exe] + pargs + ["-X"], preload_env(lib), 60)
            caught = (status_x == 2 and "BENCH-ERROR" in err_x and "RESULT" not in out_x)
            verdict = "ok" if good and caught else "FAIL"
            detail = ""
            if not good:
                detail += " run: status %s %s" % (status, (err.strip().splitlines() or [""])[-1][:160])
            if not caught:
                detail += " corruption not caught: status %s" % status_x
            print("%-4s %-16s %-9s%s" % (verdict, prog, alloc, detail), flush=True)
            failures += verdict != "ok"
    print("bench-check: %s" % ("all passed" if failures == 0 else "%d FAILED" % failures))
    return failures


# ---- perf / callgrind of one benchmark -----------------------------------------

def run_perf(args, libs):
    spec = next((s for s in SUITE if s["id"] == args.perf or s["prog"] == args.perf), None)
    if spec is None:
        sys.exit("run.py: unknown benchmark %r" % args.perf)
    alloc = args.perf_alloc
    if alloc not in libs:
        sys.exit("run.py: allocator %s not available" % alloc)
    lib = libs[alloc]
    threads = 2
    cmd = [os.path.join(args.bin_dir, spec["prog"])] + \
        ([] if spec["threads"] == [1] else ["-t", str(threads)]) + spec["quick"]
    env = preload_env(lib)
    hw = perf_events_supported()
    print("== %s under %s: %s" % (spec["id"], alloc, command_text(lib, cmd)), flush=True)
    if shutil.which("perf"):
        events = hw + ["task-clock", "page-faults", "context-switches", "cpu-migrations"]
        subprocess.run(["perf", "stat", "-e", ",".join(events), "--"] + cmd, env=env)
    if hw:
        data = os.path.join(args.bin_dir, "perf.data")
        subprocess.run(["perf", "record", "-g", "-o", data, "--"] + cmd, env=env)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--percent-limit", "1"], stdout=subprocess.PIPE, text=True)
        print("\n".join(rep.stdout.splitlines()[:80]))
        print("perf data: %s" % data)
        return 0
    if not shutil.which("valgrind"):
        print("no hardware counters and no valgrind: nothing more to show")
        return 0
    print("== hardware counters unavailable: callgrind instead (slow)", flush=True)
    out = os.path.join(args.bin_dir, "callgrind.out")
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + cmd, env=env)
    if shutil.which("callgrind_annotate"):
        ann = subprocess.run(["callgrind_annotate", out], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        print("\n".join(ann.stdout.splitlines()[:60]))
    print("callgrind data: %s (open with callgrind_annotate or kcachegrind)" % out)
    return 0


# ---- main ----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions (default)")
    what.add_argument("--full", action="store_true", help="full sizes, 5 repetitions")
    what.add_argument("--check", action="store_true", help="smoke-test every program and its checks")
    what.add_argument("--report-only", action="store_true", help="only regenerate the report")
    what.add_argument("--perf", metavar="BENCH", help="perf stat/record (or callgrind) of one benchmark")
    ap.add_argument("--perf-alloc", default="memalloc", help="allocator for --perf (default memalloc)")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libmemalloc.so"),
                    help="memalloc's shared library")
    ap.add_argument("--allocators", default=",".join(ALL_ALLOCATORS),
                    help="comma-separated subset of " + ",".join(ALL_ALLOCATORS))
    ap.add_argument("--allow-missing-memalloc", action="store_true",
                    help="skip memalloc (instead of failing) when its library is missing")
    ap.add_argument("--benches", default="", help="comma-separated benchmark ids or programs")
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 3 quick, 5 full)")
    ap.add_argument("--out", help="results file (default bench/results/quick.jsonl or results.jsonl)")
    ap.add_argument("--report", default=os.path.join(ROOT, "BENCHMARK.md"))
    ap.add_argument("--plots", default=os.path.join(HERE, "plots"))
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing peers")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-perf", action="store_true", help="never wrap runs in perf stat")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.allocators = [a for a in args.allocators.split(",") if a]
    args.benches = [b for b in args.benches.split(",") if b]
    args.threads = sorted({int(t) for t in args.threads.split(",") if t})
    if args.reps and args.reps < 1:
        sys.exit("run.py: --reps must be >= 1")
    results_dir = os.path.join(HERE, "results")

    if args.report_only:
        path = args.out or report.latest_results(results_dir)
        if not path:
            sys.exit("run.py: no results file in %s" % results_dir)
        report.write_report(path, args.report, args.plots, ROOT)
        return 0

    if args.check:
        libs, skipped = resolve_allocators(args.allocators, args.lib, False, True)
        for name, why in skipped.items():
            print("skip %-9s %s" % (name, why))
        return 1 if run_check(args, libs) else 0

    if args.perf:
        libs, _ = resolve_allocators([args.perf_alloc], args.lib, not args.no_install, False)
        return run_perf(args, libs)

    if not args.full:
        args.quick = True
    libs, skipped = resolve_allocators(args.allocators, args.lib, not args.no_install,
                                       args.allow_missing_memalloc)
    if not libs:
        sys.exit("run.py: no allocator available")
    for prog in {s["prog"] for s in SUITE}:
        if not os.access(os.path.join(args.bin_dir, prog), os.X_OK):
            sys.exit("run.py: %s/%s missing (make bench-build)" % (args.bin_dir, prog))
    out_path = args.out or os.path.join(results_dir, "quick.jsonl" if args.quick else "results.jsonl")
    failures = run_suite(args, libs, skipped, out_path)
    if not args.no_report:
        report.write_report(out_path, args.report, args.plots, ROOT)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
