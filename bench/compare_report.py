"""bench/compare's output: RESULTS.md and the bar plots (gnuplot)."""
import contextlib
import io
import os
import statistics
import subprocess
import sys

import benchlib
from benchlib import fmt, med_cell, ratio_cell, ratio_stats, values

def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


# ---------------------------------------------------------------- plots

def bar_plots(a, wl, rows, pdir, configs, label):
    """throughput.png and latency.png: per-run medians of each configuration,
    error bars from the fastest to the slowest run."""
    os.makedirs(pdir, exist_ok=True)
    cfgs = [c for c in configs if values(rows, next(iter(wl)), c)]
    out = {}
    thr = [(n, t) for n, t in (("stream_1", "1 stream\\nGbit/s"),
                               ("stream_8", "8 streams\\nGbit/s"),
                               ("stream_1_cpu", "1 stream\\nGbit per CPU-s"),
                               ("stream_8_cpu", "8 streams\\nGbit per CPU-s")) if n in wl]
    lat = [(n, t) for n, t in (("pingpong_64", "ping-pong 64 B\\np50 round trip"),
                               ("percall_64_cpu", "send+recv 64 B\\nCPU per pair"),
                               ("percall_16k_cpu", "send+recv 16 KiB\\nCPU per pair"),
                               ("percall_64", "send+recv 64 B\\nwall per pair"),
                               ("percall_16k", "send+recv 16 KiB\\nwall per pair"))
           if n in wl]
    scale = {"pingpong_64": 1.0}  # us already; percall ns -> us
    if thr:
        out["throughput"] = bar_plot(
            rows, thr, cfgs, label, {}, os.path.join(pdir, "throughput.png"),
            "Bulk TCP throughput on loopback (higher is better; median of runs, bars: min-max)",
            "Gbit/s")
    if lat:
        out["latency"] = bar_plot(
            rows, lat, cfgs, label, {n: scale.get(n, 1e-3) for n, _ in lat},
            os.path.join(pdir, "latency.png"),
            "Latency and per-call cost (lower is better; median of runs, bars: min-max)",
            "microseconds")
    return out


def bar_plot(rows, items, cfgs, label, scale, png, title, ylabel):
    dat = png[:-4] + ".dat"
    with open(dat, "w") as f:
        f.write("# workload " + " ".join("%s_med %s_min %s_max" % (c, c, c) for c in cfgs)
                + "\n")
        for n, t in items:
            k = scale.get(n, 1.0)
            cells = []
            for c in cfgs:
                v = values(rows, n, c) or [0.0]
                cells += ["%.6g" % (statistics.median(v) * k), "%.6g" % (min(v) * k),
                          "%.6g" % (max(v) * k)]
            f.write('"%s" %s\n' % (t, " ".join(cells)))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    plots = []
    for i, c in enumerate(cfgs):
        col = 2 + 3 * i
        plots.append("'%s' using %d:%d:%d%s title '%s' lc rgb '%s'" % (
            dat, col, col + 1, col + 2, ":xtic(1)" if i == 0 else "", label[c],
            colors[i % len(colors)]))
    script = "\n".join([
        "set terminal pngcairo size 1100,560 font 'sans,11'",
        "set output '%s'" % png,
        "set title '%s'" % title,
        "set ylabel '%s'" % ylabel,
        "set style data histogram",
        "set style histogram errorbars gap 1.5 lw 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set key outside right top vertical",
        "set grid ytics",
        "set yrange [0:*]",
        "set xtics nomirror",
        "set bmargin 5",
        "plot " + ", ".join(plots), ""])
    p = subprocess.run(["gnuplot"], input=script, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        benchlib.log("compare: gnuplot failed for %s: %s" % (png, p.stderr.strip()))
        return None
    return png


# ---------------------------------------------------------------- markdown

def rel(a, path):
    return os.path.relpath(path, a.out_dir)


def markdown(a, wl, rows, recs, stats, loadsum, meta, plots, configs, label):
    o = io.StringIO()
    w = lambda s="": o.write(s + "\n")  # noqa: E731
    cfgs = [c for c in configs if any(values(rows, n, c) for n in wl)]
    idle, ld = loadsum
    w("# sockmem benchmark results")
    w()
    w("Produced by `bench/compare` in one run: what the shim costs an unmodified "
      "program, against no preload and against another interposer (trickle); what a "
      "limit holds; what the per-thread charge cache buys. Raw figures: "
      "[RESULTS.csv](RESULTS.csv) (every run and batch, with date, commit and machine "
      "on each row). Longer side-by-side runs of one workload at a time (`bench/ab-libs.py "
      "--record`): [AB-RESULTS.md](AB-RESULTS.md).")
    w()
    w("## The run")
    w()
    w("- **Date:** %s. **Commit:** `%s`." % (meta["date"], meta["commit"]))
    w("- **Machine:** %s CPUs (%s), %s, kernel %s." % (meta["cpus"], meta["cpu"],
                                                      meta["memory"], meta["kernel"]))
    w("- **Load during the run:** %.0f%% of the CPU time idle; %s. Other sessions "
      "share this machine, so every figure that matters is a ratio taken within the "
      "run (see Method)." % (idle, ld or "load average not sampled"))
    w("- **Command:** `bench/compare %s`" % " ".join(sys.argv[1:]))
    launches = getattr(a, "percall_launches", 1)
    w("- **Sizes:** %d runs; each run: %d lockstep batches per workload (percall %d "
      "pairs of 64 B / %d of 16 and of 64 KiB per batch, %s; ping-pong %d round trips; "
      "streams %.3g s in %d slices), charge-bench %d ms per measurement, kernel-peak runs "
      "of %.3g s."
      % (a.runs, a.batches, a.iterations, max(a.iterations // 2, 1),
         "in each of %d launches of fresh processes" % launches if launches > 1
         else "one launch", a.iterations * a.batches, a.stream_seconds, a.batches,
         a.charge_ms, a.kmem_seconds))
    w()
    method(w, a, label)
    cost_table(w, wl, rows, cfgs, label, a)
    if plots:
        w("![throughput per configuration](%s)" % rel(a, plots["throughput"])
          if plots.get("throughput") else "")
        w()
        w("![latency per configuration](%s)" % rel(a, plots["latency"])
          if plots.get("latency") else "")
        w()
    held_note(w, rows, stats)
    profile_section(w, a, recs.get("profile"))
    kmem_section(w, a, rows)
    usage_section(w, a, recs)
    charge_section(w, rows)
    alloc_section(w, wl, rows, cfgs, label)
    targets(w, a, rows, recs)
    return o.getvalue()


def method(w, a, label):
    w("## Method")
    w()
    w("| configuration | how `sockmem-bench` runs |")
    w("|---|---|")
    w("| %s | no `LD_PRELOAD`, no `SOCKMEM_*` |" % label["none"])
    w("| %s | `LD_PRELOAD=libsockmem.so`, `SOCKMEM_GROUP` unset (pass-through) |"
      % label["nogroup"])
    w("| %s | preloaded in group `bench/active` (no limit) of a private namespace |"
      % label["group"])
    w("| %s | preloaded in group `bench/held` with `max=%s`, which a background "
      "`sockmem-bench stream -c 16 -t 2 --slow-reader %s` in the same group keeps at "
      "its max and under pressure for the whole run |" % (label["limit"], a.max,
                                                         a.holder_rate))
    w("| %s | `trickle -s -d %s -u %s` (KB/s, far above the traffic): trickle's "
      "LD_PRELOAD library interposes socket, send, recv, read, write, poll... and "
      "shapes nothing |" % (label["trickle"], "100000000", "100000000"))
    w()
    w("All five run **in lockstep**: one process per configuration, a driver hands one "
      "token around (`sockmem-bench --turns`), and only its holder measures a "
      "batch, so batch *k* of every configuration is taken within milliseconds of "
      "the others. Every round of the token goes in a new order (seeded), so which "
      "configuration measures first, and which one measures right before another, "
      "changes from batch to batch: with a fixed ring, a periodic disturbance (the "
      "background workload's timers) could fall on one configuration's turns for a "
      "whole run. The first round starts once every member is set up and warmed up. Something "
      "fixed for a process's life (where its buffers, its sockets' kernel memory and its "
      "slot of the segment land are the suspects) moved whole runs of one configuration, "
      "pass-through too, several percent off the others; so each run measures the per-call workloads in "
      "several launches of fresh processes (`--percall-launches`) and pools their batches. "
      "The same-thread per-call "
      "workloads run every configuration on one CPU (%s), so that none of them gets a "
      "better or busier CPU than another (placement alone moved single runs by 30%%); "
      "so does the one-stream workload (one thread pumps both ends); ping-pong (two "
      "processes) and the 8 streams (two threads) are not pinned. The **paired ratio** "
      "(batch *k* of a configuration / batch *k* of no preload) cancels the slow "
      "drifts of a shared machine. Tables give per-run medians with min–max, and "
      "ratios as the median paired ratio (bold) with its interquartile range, then "
      "the ratio of the per-run medians. `_cpu` rows use CPU clocks (the thread's for "
      "per-call pairs, the process's for streams: Gbit per CPU-second), which leave "
      "out the time the program was preempted by other work; they are the honest "
      "figure for cost on a loaded machine. Wall-clock rows are kept to show the "
      "noise. The holder adds load while every configuration measures, so it does "
      "not bias the ratios." % ("CPU %d, `--cpu`" % a.cpu if a.cpu is not None
                                else "not here: `--cpu none`"))
    w()
    w("trickle does not take part in the 8-stream workloads (2 threads): trickle "
      "1.07 keeps its state without locks, and with two threads pumping 8 streams it "
      "spun forever in every attempt (5 of 5 in a quick run), so its cells there are "
      "empty.")
    w()
    w("(sockmem-bench creates its sockets with plain `SOCK_STREAM` and `accept()`: "
      "trickle 1.07 ignores `SOCK_STREAM|SOCK_CLOEXEC` sockets and does not wrap "
      "`accept4`, so it would otherwise have interposed nothing.)")
    w()


def cost_table(w, wl, rows, cfgs, label, a):
    w("## Cost of interposition, side by side")
    w()
    head = ["workload", "unit"]
    for c in cfgs:
        head.append(label[c])
        if c != "none":
            head.append("ratio")
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    for name, (_args, _key, unit, hib) in wl.items():
        cells = [name, unit + (" (higher is better)" if hib else "")]
        for c in cfgs:
            cells.append(med_cell(values(rows, name, c)))
            if c != "none":
                cells.append(ratio_cell(rows, name, c))
        w("| " + " | ".join(cells) + " |")
    w()
    w("Ratio: configuration / no preload (for time lower is better, 1.02 = 2% "
      "slower; for throughput higher is better, 0.97 = 97%).")
    w()
    failed = {}
    for r in rows:
        if r["metric"] == "failed":
            failed[r["workload"]] = failed.get(r["workload"], 0) + 1
    if failed:
        w("**trickle hung or failed** (and the workload was measured again without it) "
          "in: %s run(s) of %d. trickle 1.07 keeps its state without locks; a "
          "multi-threaded program can hang in it." % (
              ", ".join("%s %d" % kv for kv in sorted(failed.items())), a.runs))
        w()


PROFILED = (("percall_64", "64 B pairs on one CPU"), ("percall_64k", "64 KiB pairs on one CPU"),
            ("stream_1", "1 stream, one thread, on one CPU"),
            ("stream_8", "8 streams, 2 threads, not pinned"))


def profile_section(w, a, prof):
    if not prof:
        return
    w("## Where the CPU goes: the shim's share of a profile")
    w()
    w("`bench/profile.py --runs %d`: each workload runs alone, preloaded in a group with no "
      "limit (and, as the control, without a group), under `perf record -e cpu-clock "
      "--call-graph dwarf`. A sample is the shim's if the sampled instruction is in "
      "libsockmem.so (*code*) or if libc or the kernel was called from shim code rather than "
      "from an interposer forwarding the program's own call (*calls*: the reconcile "
      "`getsockopt`, the helper thread). This counts the shim's direct CPU cost with none "
      "of the batch-to-batch scatter of the throughput ratios above; it does not see "
      "indirect costs (caches and TLB the shim's code and data displace). Medians over the "
      "runs, in %% of all the process's samples; *upper bound* also counts the samples "
      "whose call chain did not unwind to a thread's root." % a.profile_runs)
    w()
    w("| workload | samples per run | group: shim code | shim calls | **shim total** | "
      "upper bound | no group: shim total |")
    w("|---|---|---|---|---|---|---|")
    for key, what in PROFILED:
        g, n = prof.get(key, {}).get("group"), prof.get(key, {}).get("nogroup")
        if not g:
            continue
        w("| %s (`%s`) | %d | %.2f%% | %.2f%% | **%.2f%%** | %.2f%% | %s |"
          % (what, key, g["samples"], g["code"], g["calls"], g["shim"], g["upper"],
             "%.2f%%" % n["shim"] if n else "–"))
    w()


def held_note(w, rows, stats):
    held = stats.get("held")
    cur = values(rows, "held_group", "limit", "current")
    if not held:
        return
    w("Group `bench/held` (the *%s* column) over the run: current usage sampled "
      "after each lockstep %s, peak %s bytes against max %s, failcnt %s, events.max "
      "%s, pressure periods %s. Group `bench/active`: peak %s bytes, failcnt %s."
      % ("group at its max", med_cell(cur) + " bytes" if cur else "–",
         held.get("peak"), held.get("max"), held.get("failcnt"),
         held.get("events", {}).get("max"), held.get("events", {}).get("pressure"),
         (stats.get("active") or {}).get("peak"), (stats.get("active") or {}).get("failcnt")))
    w()


def kmem_section(w, a, rows):
    peak_n = values(rows, "kmem_slow8", "none", "kmem_peak_bytes")
    peak_l = values(rows, "kmem_slow8", "limit", "kmem_peak_bytes")
    if not peak_n or not peak_l:
        return
    mx = parse_size(a.max)
    thr_n = values(rows, "kmem_slow8", "none", "gbit_per_s")
    thr_l = values(rows, "kmem_slow8", "limit", "gbit_per_s")
    gp = values(rows, "kmem_slow8", "limit", "group_peak")
    w("## What a limit holds: kernel memory of a slow reader")
    w()
    w("`sockmem-bench stream -c 8 -t 2 --slow-reader %s -d %g --sample-ms 20`: 8 "
      "loopback streams whose receivers read %s bytes/s each, so data piles up in "
      "the kernel's queues. Peak = the highest sum over all the run's sockets of "
      "SO_MEMINFO `rmem_alloc + wmem_queued`, sampled every 20 ms. Run alone, once "
      "per run, without the shim and in a group with `max=%s`; medians of %d runs "
      "(min–max)." % (a.slow_reader, a.kmem_seconds, a.slow_reader, a.max, len(peak_n),
                      ))
    w()
    w("| configuration | kernel peak, bytes | peak / max | throughput, Gbit/s |")
    w("|---|---|---|---|")
    w("| no preload | %s | %.2f | %s |" % (med_cell(peak_n), statistics.median(peak_n) / mx,
                                         med_cell(thr_n)))
    w("| group, max=%s | %s | %.2f (worst run %.2f) | %s |" % (
        a.max, med_cell(peak_l), statistics.median(peak_l) / mx, max(peak_l) / mx,
        med_cell(thr_l)))
    w()
    w("Without the shim the workload peaks at %.1fx what it peaks at under the "
      "limit (median); throughput under the limit is %.3f of unlimited (the readers "
      "set the pace here). The group's own counter peaked at %s bytes (max over runs)."
      % (statistics.median(peak_n) / statistics.median(peak_l),
         statistics.median(thr_l) / statistics.median(thr_n),
         fmt(max(gp)) if gp else "?"))
    w()


def usage_section(w, a, recs):
    if not (recs.get("held") or recs.get("watermark")):
        return
    w("## Usage over time")
    w()
    w("`sockmemctl record` (every 50 ms) of the slow-reader workload in a fresh group, "
      "drawn by `sockmemctl plot`. Shaded: the group under pressure.")
    w()
    for key, what in (("held", "16 streams reading %s/s each, in a group with max=%s (the buffers it is given keep the kernel under max)"
                       % (a.holder_rate, a.max)),
                      ("watermark", "8 streams reading %s/s each, with high=6M, low=4M "
                       "(max=16M): the reclaimer" % a.watermark_rate)):
        r = recs.get(key)
        if not r:
            continue
        st = r["stat"] or {}
        ev = st.get("events", {})
        rc = st.get("reclaim", {})
        w("**%s.** Peak %s bytes, failcnt %s, events max %s / high %s / pressure %s; "
          "reclaim passes %s (drained %s, reconciled %s bytes, %s sockets clamped); "
          "throughput %.3g Gbit/s, kernel peak %s bytes."
          % (what, st.get("peak"), st.get("failcnt"), ev.get("max"), ev.get("high"),
             ev.get("pressure"), rc.get("passes"), rc.get("drained"), rc.get("reconciled"),
             rc.get("clamped"), r["bench"].get("gbit_per_s", 0),
             r["bench"].get("kmem_peak_bytes")))
        w()
        w("![usage %s](%s)" % (key, rel(a, r["png"])))
        w()


def charge_section(w, rows):
    buf = io.StringIO()
    import importlib
    rp = importlib.import_module("run-percall")
    with contextlib.redirect_stdout(buf):
        rp.print_charge(rows)
    text = buf.getvalue().replace("### Charge path", "## Charge path")
    if text.strip():
        w(text.strip())
        w()


def alloc_section(w, wl, rows, cfgs, label):
    w("## Bytes allocated in the measured loops (jemalloc counters, max over runs)")
    w()
    w("| workload | " + " | ".join(label[c] for c in cfgs) + " |")
    w("|" + "---|" * (len(cfgs) + 1))
    for name in wl:
        cells = []
        for c in cfgs:
            v = [int(r["alloc_bytes"]) for r in rows if r["workload"] == name
                 and r["config"] == c and r["metric"] != "sample"
                 and r["alloc_bytes"] != ""]
            cells.append(str(max(v)) if v else "–")
        w("| %s | %s |" % (name, " | ".join(cells)))
    w()


def verdict_ratio(rows, wl, cfg, limit, higher_better, as_rate=False):
    """as_rate: wl measures time per pair; judge its inverse, the
    throughput ratio (1.032 as time is 0.969 as throughput)."""
    med, q1, q3, _m = ratio_stats(rows, wl, cfg)
    if med is None:
        return "–", "not measured"
    if as_rate:
        med, q1, q3 = 1 / med, 1 / q3, 1 / q1
        wl += " as throughput"
    cell = "%s %.3f (IQR %.3f–%.3f)" % (wl, med, q1, q3)
    ok = med >= limit if higher_better else med <= limit
    lo, hi = (q1, q3)
    spans = (lo < limit < hi)
    if ok and not spans:
        return cell, "met"
    if ok:
        return cell, "met by the median; the IQR spans the target"
    return cell, ("missed" if not spans else "missed by the median; the IQR spans the target")


def with_control(rows, wl, limit, as_rate, cell, v):
    """Add pass-through's ratio on the same workload: the shim preloaded
    but doing nothing, so its distance from 1 is the run's noise on that
    measure. Where it is further from 1 than the group's target margin, the
    run cannot tell whether the group met the target: the verdict says so."""
    med = ratio_stats(rows, wl, "nogroup")[0]
    if med is None:
        return cell, v
    if as_rate:
        med = 1 / med
    cell += "; pass-through %.3f" % med
    if abs(med - 1) > abs(limit - 1):
        v += " (pass-through is %.1f%% off 1 on this measure: more than the margin)" % (
            100 * abs(med - 1))
    return cell, v


def targets(w, a, rows, recs):
    w("## Against the targets (computed from this run)")
    w()
    w("| issue | target | measured | verdict |")
    w("|---|---|---|---|")
    pc, bulk = "(per call, %s)", "bulk >= 97%% (group active, %s)"
    for wl, cfg, lim, hib, tgt, rate in (
            ("percall_64_cpu", "nogroup", 1.02, False, "no group within 2% " + pc % "CPU", False),
            ("percall_16k_cpu", "nogroup", 1.02, False, "no group within 2% " + pc % "CPU", False),
            ("percall_64_cpu", "group", 1.05, False, "group active within 5% " + pc % "CPU", False),
            ("percall_16k_cpu", "group", 1.05, False, "group active within 5% " + pc % "CPU",
             False),
            ("percall_64", "group", 1.05, False, "group active within 5% " + pc % "wall", False),
            ("percall_16k", "group", 1.05, False, "group active within 5% " + pc % "wall", False),
            ("stream_1", "group", 0.97, True, bulk % "Gbit/s, one CPU", False),
            ("stream_1_cpu", "group", 0.97, True, bulk % "per CPU-s", False),
            ("stream_8_cpu", "group", 0.97, True, bulk % "per CPU-s", False),
            ("percall_64k_cpu", "group", 0.97, True, bulk % "64 KiB pairs on one CPU, CPU", True),
            ("percall_64k", "group", 0.97, True, bulk % "64 KiB pairs on one CPU, wall", True)):
        cell, v = verdict_ratio(rows, wl, cfg, lim, hib, rate)
        if cfg == "group":
            cell, v = with_control(rows, wl, lim, rate, cell, v)
        w("| 3 | %s | %s | %s |" % (tgt, cell, v))
    prof = recs.get("profile") or {}
    for key, what in PROFILED[1:]:
        g = prof.get(key, {}).get("group")
        if g:
            w("| 3 | bulk >= 97%%: the shim's direct share of CPU at most 3%% (%s, profile) "
              "| %.2f%% (upper bound %.2f%%) | %s |"
              % (what, g["shim"], g["upper"], "met" if g["upper"] <= 3 else "missed"))
    cc = [values(rows, "charge_cache_t%d_p%d" % tp, "core", "cpu_ns_per_op")
          for tp in ((1, 1), (2, 1), (1, 2))]
    cw = [values(rows, "charge_cache_t%d_p%d" % tp, "core", "ns_per_op")
          for tp in ((1, 1), (2, 1), (1, 2))]
    if all(cc):
        worst_cpu = max(statistics.median(v) for v in cc)
        worst_wall = max(statistics.median(v) for v in cw)
        w("| 2 | cache path <= 10 ns per charge+uncharge pair | worst median %.2f ns CPU, "
          "%.2f ns wall (1 and 2 threads, 2 processes) | CPU: %s; wall: %s |"
          % (worst_cpu, worst_wall, "met" if worst_cpu <= 10 else "missed",
             "met" if worst_wall <= 10 else "missed (wall time includes preemption)"))
    at = values(rows, "charge_atomic_t2_p1", "core", "ns_per_op")
    c2 = values(rows, "charge_cache_t2_p1", "core", "ns_per_op")
    atc = values(rows, "charge_atomic_t2_p1", "core", "cpu_ns_per_op")
    c2c = values(rows, "charge_cache_t2_p1", "core", "cpu_ns_per_op")
    if at and c2:
        rw = statistics.median(at) / statistics.median(c2)
        rc = statistics.median(atc) / statistics.median(c2c)
        share = statistics.median(c / w_ for c, w_ in zip(atc, at))
        w("| 2 | cache >= 3x faster than the shared atomic at 2 threads | %.2fx wall, "
          "%.2fx CPU; the atomic's threads were on a CPU %.0f%% of the window | %s |"
          % (rw, rc, 100 * share, "met" if rw >= 3 else
             "missed (the atomic is only slow when both threads run at once on "
             "separate cores, which a shared 2-CPU box seldom gives)"))
    peak_n = values(rows, "kmem_slow8", "none", "kmem_peak_bytes")
    peak_l = values(rows, "kmem_slow8", "limit", "kmem_peak_bytes")
    if peak_n and peak_l:
        mx = parse_size(a.max)
        w("| 4 | kernel peak under max=%s at most max + 10%% | worst run %.2f x max, "
          "median %.2f | %s |" % (a.max, max(peak_l) / mx, statistics.median(peak_l) / mx,
                                  "met" if max(peak_l) <= 1.1 * mx else "missed"))
        w("| 4 | without the shim at least 3x higher | lowest run %.2f x max "
          "(median %.1fx the limited peak) | %s |"
          % (min(peak_n) / mx, statistics.median(peak_n) / statistics.median(peak_l),
             "met" if min(peak_n) >= 3 * mx else "missed"))
    w()
