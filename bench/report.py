"""bench/report.py - BENCHMARK.md and its plots from a results file.

Reads the JSON lines written by bench/run.py (one "meta" record, one record
per run, "instr" records for the callgrind counts, an "end" record) and
writes BENCHMARK.md: the machine, the exact commands, per benchmark a table
of allocator x threads (median and min-max over the repetitions) and the
ratios to glibc and to the best other allocator, SVG plots made with
gnuplot, and a summary of where memalloc wins and loses that is computed
from the numbers (a win or a loss needs the min-max ranges not to overlap;
anything else is called a tie). Nothing in the report is written by hand.
Only the Python standard library is used.
"""

import json
import math
import re
import os
import shutil
import subprocess
import tempfile

ORDER = ["memalloc", "glibc", "jemalloc", "tcmalloc", "mimalloc"]
COLORS = {"memalloc": "#d62728", "glibc": "#7f7f7f", "jemalloc": "#1f77b4",
          "tcmalloc": "#2ca02c", "mimalloc": "#9467bd"}

# id -> (title, what one op is, description)
BENCHES = {
    "threadtest": ("threadtest", "malloc/free pairs",
                   "Each thread allocates a batch of small (8-byte) objects and frees them all; "
                   "no block crosses threads. Fixed total work split among the threads."),
    "larson": ("larson", "malloc/free pairs",
               "Server-like: threads replace random slots of a shared array with blocks of "
               "random size (8-1000 bytes), freeing the block they take out, which another "
               "thread usually allocated. Runs for a fixed time."),
    "xmalloc": ("xmalloc", "malloc/free pairs",
                "Producer threads allocate blocks (16-512 bytes) and pass them through lock-free "
                "rings to consumer threads, which free them: every free is cross-thread. "
                "threads=T means ceil(T/2) producers and max(1, T-ceil(T/2)) consumers "
                "(T=1 runs one of each)."),
    "cache-thrash": ("cache-thrash", "object write passes",
                     "Active false sharing: each thread allocates an 8-byte object, writes it "
                     "many times, frees it, again. Slow when objects of different threads share "
                     "a cache line."),
    "cache-scratch": ("cache-scratch", "object write passes",
                      "Passive false sharing: the main thread allocates one 8-byte object per "
                      "thread and hands them out; each thread frees its object, then runs the "
                      "cache-thrash loop. Slow when the freed blocks are reused by the thread "
                      "that freed them."),
    "realloc": ("realloc", "realloc calls",
                "Growth and shrink patterns: strings grown by exact-size appends then halved, "
                "vectors doubling their capacity, a 256 KiB block cut by 3/4 steps and regrown."),
    "threadchurn": ("threadchurn", "threads",
                    "Threads that come and go: the main thread keeps T short-lived threads alive "
                    "at a time, joining the oldest before it starts the next; each allocates 64 "
                    "blocks of 2-21 KB, checks and frees them, four times, and exits. What a "
                    "thread-per-task program pays for a thread's first and last allocations and "
                    "for the memory it leaves behind."),
    "churn-small": ("churn (small)", "malloc/free pairs",
                    "Single-threaded churn over a window of 256 live blocks, 16-128 bytes."),
    "churn-medium": ("churn (medium)", "malloc/free pairs",
                     "Single-threaded churn over a window of 256 live blocks, 256-4096 bytes."),
    "churn-mixed": ("churn (mixed)", "malloc/free pairs",
                    "Single-threaded churn, 3 in 4 blocks small (16-128 B), 1 in 4 medium "
                    "(256-4096 B)."),
    "larson-kr": ("larson-kr", "delete/new pairs",
                  "Larson & Krishnan's server benchmark as published: each thread owns an array "
                  "of blocks (10-500 bytes, C++ new[]/delete[]), replaces random ones, and after "
                  "each round of 100 x 1000 replacements starts a new thread, hands it the array "
                  "and exits, so blocks outlive the threads that made them. Runs for a fixed time."),
    "larson-kr-sized": ("larson-kr (sized delete)", "delete/new pairs",
                        "larson-kr with C++14 sized deallocation: blocks go back through "
                        "`operator delete[](p, size)`."),
    "hoard-threadtest": ("hoard-threadtest", "new/delete pairs",
                         "Hoard's threadtest as published: each thread news and deletes batches "
                         "of an 8-byte C++ object, 10,000 objects per iteration split among the "
                         "threads; no object crosses threads. Fixed total work."),
    "sh8bench": ("sh8bench", "malloc/free pairs",
                 "After SmartHeap's sh8bench: batches of sizes from a histogram (8 B-168 KiB, "
                 "mostly small), freed forward and in reverse on alternate rounds; one block in 8 "
                 "is freed by the next thread. 4,000 blocks per round split among the threads."),
    "mstress": ("mstress", "allocations",
                "In the spirit of mimalloc's test-stress: threads re-created every round, objects "
                "(90% 8-256 B, rare ones up to 1 MiB) swapped between threads through a shared "
                "slot array by atomic exchange, a quarter kept for the next round's thread; every "
                "word checked before free. Time includes creating the threads."),
    "churn-64k": ("churn (1-64 KiB)", "malloc/free pairs",
                  "Churn over a window of 256 live blocks per thread, uniform sizes 1 B-64 KiB; "
                  "each thread its own window, steps split among the threads."),
    "malloc-large": ("malloc-large", "allocations",
                     "After mimalloc-bench's malloc-large: a ring of 20 live buffers of 5-25 MiB, "
                     "each new one value-initialised (zero-filled, as std::vector<char>(n)), the "
                     "oldest replaced each step. Single-threaded."),
    "rptest": ("rptest", "memory operations",
               "After rpmalloc's benchmark as mimalloc-bench runs it: each thread frees and "
               "allocates 24-99 blocks an iteration at scattered slots of its 1000 (sizes "
               "8-16000 B, falling off linearly; calloc or memalign, every byte written) and "
               "every second iteration hands a parcel of new blocks to another thread, which "
               "frees them. Two passes, then the threads are replaced and run two more. Each "
               "allocation and each free is one operation; iterations split among the threads."),
    "sh6bench": ("sh6bench", "malloc/free pairs",
                 "After SmartHeap's sh6bench as mimalloc-bench runs it: sweeps of sizes 1-709 B "
                 "(54% under 8 B) fill a ring of 10,000 slots split among the threads; at the end "
                 "of the ring a fifth is kept and the rest freed, below it in order and above it "
                 "in reverse; the kept fifth the original loses every fifth lap stays live to the "
                 "end. Fixed total work; nothing crosses threads."),
}
THROUGHPUT = list(BENCHES)
FRAG = "fragmentation"
# churn's size bands as callgrind measures them (bench/run.py CALLGRIND_MODES)
INSTR_MODES = ["small", "medium", "mixed", "16", "256", "4k", "64k"]
INSTR_LABELS = {"small": "small (16-128 B)", "medium": "medium (256-4096 B)",
                "mixed": "mixed", "16": "1-16 B", "256": "1-256 B", "4k": "1-4 KiB",
                "64k": "1-64 KiB"}
PHASES = ["grow", "shrink", "pow2", "odd", "mixed"]


# ---- loading and statistics --------------------------------------------------

def latest_results(results_dir):
    """results.jsonl if present (a full run), else quick.jsonl, else None."""
    for name in ("results.jsonl", "quick.jsonl"):
        path = os.path.join(results_dir, name)
        if os.path.exists(path):
            return path
    return None


def load(path):
    meta, end, runs, instr = {}, {}, [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            kind = rec.get("type")
            if kind == "meta":
                meta = rec
            elif kind == "end":
                end = rec
            elif kind == "run":
                runs.append(rec)
            elif kind == "instr":
                instr.append(rec)
    return meta, end, runs, instr


def stats(values):
    """(median, min, max) of a non-empty list."""
    v = sorted(values)
    n = len(v)
    med = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return med, v[0], v[-1]


def collect(runs, bench, key):
    """{(alloc, threads): [value]} of the successful runs of one benchmark."""
    out = {}
    for r in runs:
        if r["bench"] != bench or not r.get("ok"):
            continue
        v = (r.get("result") or {}).get(key)
        if isinstance(v, (int, float)):
            out.setdefault((r["alloc"], r["threads"]), []).append(float(v))
    return out


def ordered(allocs):
    return [a for a in ORDER if a in allocs] + sorted(a for a in allocs if a not in ORDER)


# ---- formatting ----------------------------------------------------------------

def si(v):
    """3 significant digits with k/M/G."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return "%s%s" % (sig3(v / div), suffix)
    return sig3(v)


def sig3(v):
    if v == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return "%.*f" % (digits, v)


def mib(kb):
    return kb / 1024.0


def cell(values, fmt):
    if not values:
        return "—"
    med, lo, hi = stats(values)
    if len(values) == 1 or lo == hi:
        return fmt(med)
    return "%s (%s–%s)" % (fmt(med), fmt(lo), fmt(hi))


def md_table(header, rows, numeric=True):
    """A Markdown table; columns after the first right-aligned if numeric."""
    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return lines


def best_other(data, alloc, threads, allocs, higher, exclude_memalloc=True):
    """(name, values) of the best allocator other than `alloc` (by median),
    not counting memalloc when `exclude_memalloc`: memalloc's peers."""
    best = None
    for other in allocs:
        if other == alloc or (exclude_memalloc and other == "memalloc"):
            continue
        vals = data.get((other, threads))
        if not vals:
            continue
        med = stats(vals)[0]
        if best is None or (med > best[2] if higher else med < best[2]):
            best = (other, vals, med)
    return (best[0], best[1]) if best else (None, None)


def verdict(mine, theirs, higher):
    """'win', 'loss' or 'tie' for memalloc's values against another's."""
    _, m_lo, m_hi = stats(mine)
    _, t_lo, t_hi = stats(theirs)
    if higher:
        return "win" if m_lo > t_hi else "loss" if m_hi < t_lo else "tie"
    return "win" if m_hi < t_lo else "loss" if m_lo > t_hi else "tie"


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


# ---- plots -----------------------------------------------------------------------

def gnuplot(script, workdir):
    if not shutil.which("gnuplot"):
        return False
    path = os.path.join(workdir, "plot.gp")
    with open(path, "w") as f:
        f.write(script)
    p = subprocess.run(["gnuplot", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print("report: gnuplot failed: " + p.stdout.strip()[:500])
    return p.returncode == 0


SVG_HEAD = ("set terminal svg size 760,440 dynamic enhanced font 'sans,12' background rgb 'white'\n"
            "set key outside right top\nset grid ytics lc rgb '#dddddd'\n")


def plot_scaling(bench, title, unit, data, allocs, threads, out_svg, workdir):
    dat = os.path.join(workdir, bench + ".dat")
    plots = []
    with open(dat, "w") as f:
        idx = 0
        for a in allocs:
            pts = [(t, stats(data[(a, t)])) for t in threads if data.get((a, t))]
            if not pts:
                continue
            f.write("# %s\n" % a)
            for t, (med, lo, hi) in pts:
                f.write("%d %g %g %g\n" % (t, med / 1e6, lo / 1e6, hi / 1e6))
            f.write("\n\n")
            lw = 3 if a == "memalloc" else 1.5
            plots.append("'%s' index %d using 1:2:3:4 with yerrorlines lw %s pt 7 ps 0.6 "
                         "lc rgb '%s' title '%s'" % (dat, idx, lw, COLORS.get(a, "#000000"), a))
            idx += 1
    if not plots:
        return False
    script = SVG_HEAD + (
        "set output '%s'\nset title '%s: throughput vs threads (median, bars = min-max)'\n"
        "set xlabel 'threads'\nset ylabel 'million %s per second'\nset logscale x 2\n"
        "set xtics (%s)\nset xrange [%g:%g]\nset yrange [0:*]\nplot %s\n"
        % (out_svg, title, unit, ", ".join(str(t) for t in threads),
           min(threads) / 1.3, max(threads) * 1.3, ", \\\n     ".join(plots)))
    return gnuplot(script, workdir)


def plot_bars(name, title, ylabel, groups, allocs, values, out_svg, workdir, log_y=False):
    """Clustered bars: one cluster per group, one bar per allocator.
    values[(group, alloc)] = number or None. A group label may hold one
    space-separated word per line."""
    dat = os.path.join(workdir, name + ".dat")
    with open(dat, "w") as f:
        for g in groups:
            row = [str(groups.index(g))]
            for a in allocs:
                v = values.get((g, a))
                row.append("%g" % v if v is not None else "?")
            f.write(" ".join(row) + "\n")
    cols = ", \\\n     ".join(
        "'%s' using %d title '%s' lc rgb '%s'" % (dat, i + 2, a, COLORS.get(a, "#000000"))
        for i, a in enumerate(allocs))
    tics = ", ".join('"%s" %d' % (g.replace(" ", "\\n"), i) for i, g in enumerate(groups))
    script = SVG_HEAD.replace("760,440", "%d,460" % max(760, 90 * len(groups) + 200)) + (
        "set output '%s'\nset title '%s'\nset ylabel '%s'\nset datafile missing '?'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
        "set xtics (%s) scale 0 font ',10'\nset bmargin 4\n%splot %s\n"
        % (out_svg, title, ylabel, tics,
           "set logscale y\n" if log_y else "set yrange [0:*]\n", cols))
    return gnuplot(script, workdir)


def plot_phases(data, allocs, out_svg, workdir):
    """data[alloc] = [rss MiB after each phase]."""
    dat = os.path.join(workdir, "phases.dat")
    plots = []
    with open(dat, "w") as f:
        for idx, a in enumerate(allocs):
            for i, v in enumerate(data[a]):
                f.write("%d %g\n" % (i, v))
            f.write("\n\n")
            plots.append("'%s' index %d using 1:2 with linespoints lw %s pt 7 lc rgb '%s' title '%s'"
                         % (dat, idx, 3 if a == "memalloc" else 1.5, COLORS.get(a, "#000"), a))
    script = SVG_HEAD + (
        "set output '%s'\nset title 'fragmentation (1 thread): resident set at the end of each phase'\n"
        "set ylabel 'RSS, MiB'\nset xtics (%s)\nset xrange [-0.3:%g]\nset yrange [0:*]\nplot %s\n"
        % (out_svg, ", ".join("'%s' %d" % (p, i) for i, p in enumerate(PHASES)),
           len(PHASES) - 0.7, ", \\\n     ".join(plots)))
    return gnuplot(script, workdir)


# ---- the report ------------------------------------------------------------------

def write_report(results_path, report_path, plots_dir, root):
    meta, end, runs, instr = load(results_path)
    allocs = ordered({r["alloc"] for r in runs} | {r["alloc"] for r in instr})
    threads_all = sorted({r["threads"] for r in runs})
    has_mem = "memalloc" in allocs
    mode = meta.get("mode", "?")
    os.makedirs(plots_dir, exist_ok=True)
    for old in os.listdir(plots_dir):
        if old.endswith(".svg"):
            os.remove(os.path.join(plots_dir, old))
    plots_rel = os.path.relpath(plots_dir, os.path.dirname(os.path.abspath(report_path)))
    workdir = tempfile.mkdtemp(prefix="bench-report-")

    summary_items = []   # (kind, bench, threads, verdict, ratio, other)
    vs_glibc = []        # memalloc / glibc throughput ratios
    body = []

    # ---- throughput benchmarks ----
    for bench in THROUGHPUT:
        data = collect(runs, bench, "ops_per_sec")
        if not data:
            continue
        title, unit, desc = BENCHES[bench]
        threads = sorted({t for (_, t) in data})
        body += ["", "### %s" % title, "", desc, ""]
        cmd = next((r["cmd"] for r in runs if r["bench"] == bench and r["alloc"] != "glibc"), None)
        if cmd:
            body += ["Command: `%s` (T = thread count; LD_PRELOAD per allocator as listed under Machine)"
                     % re.sub(r" -t \d+", " -t T", cmd), ""]
        body.append("Throughput, %s per second: median (min–max) of %s; higher is better."
                    % (unit, plural(meta.get("reps", 0), "run")))
        body.append("")
        rows = []
        for a in allocs:
            label = "**%s**" % a if a == "memalloc" else a
            rows.append([label] + [cell(data.get((a, t), []), si) for t in threads])
        body += md_table(["allocator"] + ["%d thr" % t for t in threads], rows)
        body += ["", "Ratios of medians: ÷ glibc · ÷ the best other allocator "
                 "(named; for memalloc the best peer). Above 1 is faster.", ""]
        rows = []
        for a in allocs:
            cells = []
            for t in threads:
                mine = data.get((a, t))
                if not mine:
                    cells.append("—")
                    continue
                med = stats(mine)[0]
                g = data.get(("glibc", t))
                part = "%.2f" % (med / stats(g)[0]) if g and a != "glibc" else "—"
                other, ov = best_other(data, a, t, allocs, True)
                if ov:
                    part += " · %.2f (%s)" % (med / stats(ov)[0], other)
                cells.append(part)
                if a == "memalloc":
                    if g:
                        vs_glibc.append(med / stats(g)[0])
                    if ov:
                        summary_items.append(("speed", title, t, verdict(mine, ov, True),
                                              med / stats(ov)[0], other))
            rows.append(["**%s**" % a if a == "memalloc" else a] + cells)
        body += md_table(["allocator"] + ["%d thr" % t for t in threads], rows)
        svg = os.path.join(plots_dir, bench + ".svg")
        if len(threads) > 1 and plot_scaling(bench, title, unit, data, allocs, threads, svg, workdir):
            body += ["", "![%s throughput vs threads](%s/%s.svg)" % (title, plots_rel, bench)]

    # ---- fragmentation ----
    frag_runs = [r for r in runs if r["bench"] == FRAG and r.get("ok")]
    if frag_runs:
        body += ["", "### fragmentation / memory", "",
                 "A long pattern of allocations and random frees under a live-set cap, through "
                 "five phases whose size mix changes (sizes growing from 64 B to 64 KiB, shrinking "
                 "back, powers of two, odd sizes, all mixed); one block in 64 is long-lived and "
                 "pins memory until the end. Every page of every block is written and checked.", ""]
        cmd = next((r["cmd"] for r in frag_runs if r["alloc"] != "glibc"), None)
        if cmd:
            body += ["Command: `%s`" % cmd, ""]
        body += ["Peak RSS = the process's resident high-water mark (VmHWM); *live* = bytes requested and not "
                 "yet freed; *pinned* = RSS with only the long-lived blocks left; *empty* = RSS "
                 "after freeing everything; lower is better everywhere. Median (min–max).", ""]
        for t in sorted({r["threads"] for r in frag_runs}):
            rows = []
            mem = {}
            for a in allocs:
                rs = [r["result"] for r in frag_runs if r["alloc"] == a and r["threads"] == t]
                if not rs:
                    continue
                peak = [x["maxrss_kb"] / 1024 for x in rs]
                mem[a] = [x["maxrss_kb"] for x in rs]
                over = [x["maxrss_kb"] / max(1, x["peak_live_kb"]) for x in rs]
                rows.append(["**%s**" % a if a == "memalloc" else a,
                             cell(peak, sig3), cell(over, lambda v: "%.2f" % v),
                             cell([x["final_rss_kb"] / 1024 for x in rs], sig3),
                             cell([x["empty_rss_kb"] / 1024 for x in rs], sig3),
                             cell([x["secs"] for x in rs], lambda v: "%.3f" % v)])
            live = [r["result"]["peak_live_kb"] for r in frag_runs if r["threads"] == t]
            body += ["%d thread%s (peak live %.1f MiB):" % (t, "" if t == 1 else "s", mib(max(live))), ""]
            body += md_table(["allocator", "peak RSS MiB", "peak RSS ÷ peak live",
                              "pinned RSS MiB", "empty RSS MiB", "time s"], rows)
            body.append("")
            if has_mem and mem.get("memalloc"):
                other, ov = best_other({(a, t): v for a, v in mem.items()}, "memalloc", t, allocs, False)
                if ov:
                    summary_items.append(("memory", "fragmentation peak RSS", t,
                                          verdict(mem["memalloc"], ov, False),
                                          stats(ov)[0] / stats(mem["memalloc"])[0], other))
        phase = {}
        for a in allocs:
            rs = [r["result"] for r in frag_runs if r["alloc"] == a and r["threads"] == 1]
            if rs:
                phase[a] = [stats([x["rss_%s_kb" % p] for x in rs])[0] / 1024 for p in PHASES]
        if phase and plot_phases(phase, [a for a in allocs if a in phase],
                                 os.path.join(plots_dir, "fragmentation-phases.svg"), workdir):
            body += ["![fragmentation: RSS per phase](%s/fragmentation-phases.svg)" % plots_rel]

    # ---- instructions per pair ----
    ok_instr = [r for r in instr if r.get("ok")]
    if ok_instr:
        modes = [m for m in INSTR_MODES if any(r["mode"] == m for r in ok_instr)]
        body += ["", "### instructions per malloc/free pair (callgrind)", "",
                 "churn run under `valgrind --tool=callgrind` with the allocator preloaded, counting "
                 "only inside the two wrapper functions that call malloc and free; the count of a run "
                 "with no steps (allocator start-up, the window's own pairs) is subtracted and the "
                 "rest divided by the steps (%s). The count includes the few jumps of the wrappers "
                 "and the PLT, the same for every allocator. Deterministic, so one run each. Lower "
                 "is better."
                 % si(meta.get("callgrind_steps")), ""]
        cmd = next((r["cmd"] for r in ok_instr if r["alloc"] != "glibc"), None)
        if cmd:
            body += ["Command: `%s` (N = steps, then 0)" % cmd, ""]
        val = {(r["mode"], r["alloc"]): r["instr_per_pair"] for r in ok_instr}
        rows = []
        for a in allocs:
            cells = []
            for m in modes:
                v = val.get((m, a))
                g = val.get((m, "glibc"))
                cells.append("—" if v is None else "%.1f" % v + (" (%.2f× glibc)" % (v / g) if g and a != "glibc" else ""))
            rows.append(["**%s**" % a if a == "memalloc" else a] + cells)
        body += md_table(["allocator"] + [INSTR_LABELS.get(m, m) for m in modes], rows)
        g_small = val.get(("small", "glibc"))
        if g_small is not None:
            body += ["", "Sanity check of the method: glibc's small-size count, %.0f instructions per "
                     "pair, is %s the 50–150 expected of its tcache/fastbin paths." %
                     (g_small, "within" if 50 <= g_small <= 150 else "**outside** (check the measurement)")]
            direct = {r["mode"]: r["direct_per_pair"] for r in ok_instr
                      if r["alloc"] == "glibc" and "direct_per_pair" in r}
            if direct:
                body[-1] += (" Counted inside glibc's own malloc and free instead of the wrappers, "
                             "glibc gives " + ", ".join("%.1f (%s)" % (direct[m], m) for m in modes
                                                        if m in direct) + ".")
        if has_mem:
            for m in modes:
                mine = val.get((m, "memalloc"))
                others = [(val[(m, a)], a) for a in allocs if a != "memalloc" and (m, a) in val]
                if mine is not None and others:
                    best, who = min(others)
                    # deterministic counts: call anything within 2% a tie
                    v = "win" if mine < best * 0.98 else "loss" if mine > best * 1.02 else "tie"
                    summary_items.append(("instr", "instructions per pair (%s)" % INSTR_LABELS.get(m, m),
                                          1, v, best / mine, who))
        labels = [INSTR_LABELS.get(m, m) for m in modes]
        if plot_bars("instr", "instructions per malloc+free pair (callgrind; lower is better)",
                     "instructions", labels, allocs,
                     {(INSTR_LABELS.get(m, m), a): val.get((m, a)) for m in modes for a in allocs},
                     os.path.join(plots_dir, "instructions.svg"), workdir,
                     # the bands from 1 byte span tens to hundreds of instructions
                     log_y=max(val.values()) > 20 * min(val.values())):
            body += ["", "![instructions per pair](%s/instructions.svg)" % plots_rel]

    # ---- peak RSS across benchmarks ----
    groups, rssvals = [], {}
    for bench in THROUGHPUT + [FRAG]:
        brs = [r for r in runs if r["bench"] == bench and r.get("ok")]
        if not brs:
            continue
        t = max(r["threads"] for r in brs)
        label = "%s %dt" % (bench, t)  # one word per line in the plot
        groups.append(label)
        for a in allocs:
            vals = [r["result"]["maxrss_kb"] / 1024 for r in brs if r["alloc"] == a and r["threads"] == t]
            rssvals[(label, a)] = stats(vals)[0] if vals else None
    rss_section = []
    if groups:
        rss_section += ["", "### peak RSS per benchmark", "",
                        "Median peak resident set (MiB, VmHWM of the benchmark process) "
                        "at each benchmark's largest thread count. Lower is better.", ""]
        rows = [[g] + [("%.1f" % rssvals[(g, a)]) if rssvals.get((g, a)) is not None else "—"
                       for a in allocs] for g in groups]
        rss_section += md_table(["benchmark"] + allocs, rows)
        if plot_bars("rss", "peak RSS per benchmark (MiB, log scale; lower is better)", "MiB",
                     groups, allocs, rssvals, os.path.join(plots_dir, "rss.svg"), workdir, log_y=True):
            rss_section += ["", "![peak RSS per allocator](%s/rss.svg)" % plots_rel]
        if has_mem:
            for g in groups:
                if g.startswith(FRAG):
                    continue  # already judged above with its spread
                mine = rssvals.get((g, "memalloc"))
                others = [(rssvals[(g, a)], a) for a in allocs
                          if a != "memalloc" and rssvals.get((g, a)) is not None]
                if mine and others:
                    best, who = min(others)
                    v = "win" if mine < best * 0.9 else "loss" if mine > best * 1.1 else "tie"
                    summary_items.append(("rss", "peak RSS, " + g, 0, v, best / mine, who))

    # ---- perf counters (only where perf stat could count them) ----
    perf_section = []
    for event in meta.get("perf_events") or []:
        per_op = {}
        for r in runs:
            c = (r.get("perf") or {}).get(event)
            ops = (r.get("result") or {}).get("ops")
            if r.get("ok") and c is not None and ops:
                per_op.setdefault(("%s %dt" % (r["bench"], r["threads"]), r["alloc"]), []).append(c / ops)
        if not per_op:
            continue
        configs = []
        for (g, _) in per_op:
            if g not in configs:
                configs.append(g)
        perf_section += ["", "### perf stat: %s per operation" % event, "",
                         "Median over the repetitions of `perf stat -e %s` for the whole process "
                         "(start-up included) divided by the benchmark's operation count. Lower is "
                         "better." % event, ""]
        perf_section += md_table(["benchmark"] + allocs,
                                 [[g] + [("%.1f" % stats(per_op[(g, a)])[0]) if (g, a) in per_op else "—"
                                         for a in allocs] for g in configs])

    # ---- failures ----
    failed = [r for r in runs + instr if not r.get("ok")]

    # ---- assemble ----
    m = meta.get("machine", {})
    v = m.get("versions", {})
    out = ["# memalloc benchmarks", "",
           "<!-- Generated by bench/report.py from %s; do not edit by hand: "
           "`make bench` (or `make bench-report`) rewrites it. -->"
           % os.path.relpath(results_path, root), ""]
    if mode == "quick":
        out += ["> **Quick run** (`make bench-quick`): reduced sizes and %s on a shared "
                "machine. These numbers prove the suite and its report, they are not the reference "
                "measurement; run `make bench` for that." % plural(meta.get("reps", 0), "repetition"), ""]
    out += ["## Where memalloc wins and loses", ""]
    out += summary_text(summary_items, vs_glibc, has_mem, allocs, meta)
    out += ["", "## Machine", "",
            "| | |", "|---|---|",
            "| CPU | %s |" % m.get("cpu", "?"),
            "| cores | %s (usable by the runs: %s) |" % (m.get("cores", "?"), m.get("cores_usable", "?")),
            "| memory | %s |" % mem_text(m.get("mem_total")),
            "| kernel | Linux %s %s |" % (m.get("kernel", "?"), m.get("arch", "")),
            "| compiler | %s |" % m.get("compiler", "?"),
            "| memalloc | %s |" % (v.get("memalloc") or "?"),
            "| glibc | %s |" % (v.get("glibc") or "?")]
    for peer, pkg in (("jemalloc", "libjemalloc2"), ("tcmalloc", "libtcmalloc-minimal4"),
                      ("mimalloc", "libmimalloc2.0")):
        out.append("| %s | %s |" % (peer, "%s %s" % (pkg, v[peer]) if v.get(peer) else "not installed"))
    out += ["| run | %s mode, %s repetitions, started %s, %s s |"
            % (mode, meta.get("reps", "?"), meta.get("started", "?"), end.get("seconds", "?")),
            "| perf counters | %s |" % (", ".join(meta.get("perf_events") or []) or
                                        "not available (`perf stat -e instructions` unsupported here)")]
    if meta.get("skipped"):
        out += ["", "Skipped allocators: " + "; ".join("%s (%s)" % kv for kv in meta["skipped"].items())]
    out += ["", "Allocators are loaded with `LD_PRELOAD`: " + ", ".join(
        "%s = `%s`" % (a, os.path.relpath(p, root) if p.startswith(root) else p)
        for a, p in (m.get("libraries") or {}).items() if p) + "; glibc is the system malloc with "
        "nothing preloaded. Each benchmark checks that the intended library is mapped in the process "
        "(a run where it is not counts as failed). Runs are interleaved: for each benchmark and "
        "thread count, every allocator runs once, then again, with the starting allocator rotated.", ""]
    out += ["## Benchmarks", "",
            "Every program writes a pattern into every block it allocates and verifies it before "
            "freeing; a corrupted block makes the run fail (exit 2) instead of producing a number. "
            "Multi-threaded times run from the first worker's start to the last worker's end. "
            "Peak RSS is the high-water mark of the benchmark's own address space (VmHWM in "
            "/proc/self/status, read at exit); getrusage's ru_maxrss is recorded too but not used, "
            "because Linux carries it across execve from the parent (the Python runner), which "
            "hides any peak smaller than the runner's own."]
    out += body
    out += rss_section
    out += perf_section
    if failed:
        out += ["", "## Failed runs", "", "These runs produced no number (a corrupted block, a crash "
                "or a timeout); they are left out of the tables above.", ""]
        out += md_table(["benchmark", "allocator", "threads", "error"],
                        [[r["bench"] + (" " + r["mode"] if "mode" in r else ""), r["alloc"],
                          str(r.get("threads", "")), (r.get("error") or "?").replace("|", "\\|")]
                         for r in failed], numeric=False)
    # The profiler's cost (make bench-prof, bench/prof_cost.py), copied verbatim.
    prof_cost = os.path.join(root, "bench", "results", "prof-cost.md")
    if os.path.exists(prof_cost):
        with open(prof_cost) as f:
            out += ["", f.read().rstrip()]
    # Hand-measured notes (commands included in the file), copied verbatim.
    notes = os.path.join(root, "bench", "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            out += ["", f.read().rstrip()]
    out += ["", "## Reproducing", "",
            "```sh",
            "sudo apt-get install -y build-essential python3 gnuplot-nox valgrind linux-perf redis-server \\",
            "    libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev",
            "make bench          # full suite (%s) -> bench/results/results.jsonl, BENCHMARK.md, bench/plots/"
            % "5 repetitions",
            "make bench-quick    # the same with small sizes and 3 repetitions, under 10 minutes",
            "make bench-report   # regenerate this file and the plots from the last results",
            "make bench-check    # every program runs, and a deliberately corrupted block is caught",
            "make perf           # perf stat/record of one benchmark (callgrind without counters)",
            "make bench-prof     # what MEMALLOC_PROF=1 costs -> bench/results/prof-cost.md (then bench-report)",
            "```", "",
            "Subsets: `make bench-quick BENCH_ARGS='--benches larson,xmalloc --threads 1,4 "
            "--allocators memalloc,glibc,jemalloc --reps 5'`. Runner options: "
            "`python3 bench/run.py --help`. The raw results (one JSON line per run, with the exact "
            "command, the RESULT line, rusage and perf counters) are in `%s`."
            % os.path.relpath(results_path, root),
            "", "This run: `python3 bench/run.py %s`." % " ".join(meta.get("argv", [])), ""]
    with open(report_path, "w") as f:
        f.write("\n".join(out))
    shutil.rmtree(workdir, ignore_errors=True)
    print("report: wrote %s and %d plots in %s" % (
        os.path.relpath(report_path, root),
        len([p for p in os.listdir(plots_dir) if p.endswith(".svg")]),
        os.path.relpath(plots_dir, root)))


def mem_text(meminfo):
    """'24683656 kB' -> '23.5 GiB'."""
    try:
        return "%.1f GiB" % (int(meminfo.split()[0]) / 1024.0 / 1024.0)
    except (AttributeError, ValueError, IndexError):
        return "?"


def plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def summary_text(items, vs_glibc, has_mem, allocs, meta):
    if not has_mem:
        return ["memalloc was not measured in this run (%s), so there is nothing to compare; "
                "the tables below show the other allocators only."
                % ((meta.get("skipped") or {}).get("memalloc") or "not selected")]
    lines = ["Computed from the tables below. memalloc is compared with the best of the other "
             "allocators in each configuration; a **win** or a **loss** means the min–max ranges of "
             "the repetitions do not overlap, anything else is a tie (for the deterministic "
             "instruction counts: a difference under 2%; for peak RSS across benchmarks: under 10%).",
             ""]
    for kind, label in (("speed", "Throughput"), ("instr", "Instructions per malloc/free pair"),
                        ("memory", "Memory (fragmentation peak RSS)"), ("rss", "Peak RSS of the other benchmarks")):
        its = [i for i in items if i[0] == kind]
        if not its:
            continue
        w = [i for i in its if i[3] == "win"]
        l = [i for i in its if i[3] == "loss"]
        t = [i for i in its if i[3] == "tie"]
        lines.append("**%s** (%s): %d win%s, %d loss%s, %d tie%s; geometric mean of "
                     "memalloc's advantage over the best other: %.2f×."
                     % (label, plural(len(its), "configuration"), len(w), "" if len(w) == 1 else "s",
                        len(l), "" if len(l) == 1 else "es", len(t), "" if len(t) == 1 else "s",
                        geomean([i[4] for i in its])))
        lines.append("")

        def fmt(i):
            where = i[1] + (", %d thr" % i[2] if kind == "speed" else
                            ", %d thr" % i[2] if kind == "memory" else "")
            return "%s: %.2f× %s" % (where, i[4], i[5])
        if kind == "speed":
            # one row per benchmark, one column per thread count
            threads = sorted({i[2] for i in its})
            benches = []
            for i in its:
                if i[1] not in benches:
                    benches.append(i[1])
            mark = {"win": "**win**", "loss": "loss", "tie": "tie"}
            rows = []
            for b in benches:
                row = [b]
                for t in threads:
                    hit = [i for i in its if i[1] == b and i[2] == t]
                    row.append("%.2f %s (%s)" % (hit[0][4], mark[hit[0][3]], hit[0][5]) if hit else "")
                rows.append(row)
            lines += ["memalloc's throughput ÷ the best other allocator's (named), per benchmark "
                      "and thread count:", ""]
            lines += md_table(["benchmark"] + ["%d thr" % t for t in threads], rows)
            lines.append("")
            continue
        if w:
            lines.append("- wins: " + "; ".join(fmt(i) for i in sorted(w, key=lambda i: -i[4])))
        if l:
            lines.append("- losses: " + "; ".join(fmt(i) for i in sorted(l, key=lambda i: i[4])))
        if t:
            lines.append("- ties: " + "; ".join(fmt(i) for i in t))
        lines.append("")
    if vs_glibc:
        faster = sum(1 for r in vs_glibc if r > 1)
        lines.append("Against glibc alone, memalloc's throughput is higher in %d of %d configurations "
                     "(geometric mean ratio %.2f×, range %.2f×–%.2f×)."
                     % (faster, len(vs_glibc), geomean(vs_glibc), min(vs_glibc), max(vs_glibc)))
        lines.append("")
    lines.append("(×N = how many times better memalloc is than the named allocator: its throughput "
                 "divided by theirs, or their memory or instruction count divided by memalloc's; "
                 "below 1 means memalloc is worse.)")
    return lines
