#!/usr/bin/env python3
"""Side-by-side cost of the shim, measured in one interleaved run.

For three configurations of the same program (sockmem-bench):
  none     no preload
  nogroup  LD_PRELOAD=libsockmem.so, SOCKMEM_GROUP unset (pass-through)
  group    LD_PRELOAD=libsockmem.so, SOCKMEM_GROUP set, no limit reached,
           in a private namespace removed at the end
it measures the same-thread per-call time (64 B, 16 KiB and 64 KiB send+recv pairs)
and bulk stream throughput (1 and 8 connections), --runs times each.

The three configurations of a workload run at the same time in lockstep
(sockmem-bench --turns): a driver hands one token around, in a new order
every round, and only its holder measures a batch, so batch k of every
configuration is taken within milliseconds of the others and the slow drifts
of a noisy machine cancel in the paired ratios.
Each run also times the charge path (sockmem-charge-bench).

Prints a markdown table of medians with min/max and the ratios against no
preload (from the same run) on stdout, progress on stderr, and writes every
raw measurement to a CSV file.
"""
import argparse
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib
from benchlib import (clean_env, fmt, load_csv, log, machine, med_cell, preload_env,
                      ratio_cell, run_json, values)

CONFIGS = ("none", "nogroup", "group")
CONFIG_LABEL = {"none": "no preload", "nogroup": "preload, no group",
                "group": "preload, group active"}
GROUP = "bench/percall"


def workloads(a):
    """name -> (sockmem-bench arguments, result key, unit, higher is better).
    Every workload runs -b batches (stream: slices) in lockstep."""
    d = str(a.stream_seconds)
    b = ["-b", str(a.batches)]
    extra = {}
    if a.with_pingpong:
        extra["pingpong_64"] = (["pingpong", "-s", "64", "-i", str(a.iterations * a.batches),
                                 "-d", "600"] + b, "p50_us", "p50 us", False)
    return {**extra,
            "percall_64": (["percall", "-s", "64", "-i", str(a.iterations)] + b,
                           "ns_per_pair", "ns/pair", False),
            "percall_16k": (["percall", "-s", "16K", "-i", str(max(a.iterations // 2, 1))] + b,
                            "ns_per_pair", "ns/pair", False),
            # The same, timed by the thread's CPU clock: preemption left out.
            "percall_64_cpu": (["percall", "-s", "64", "-i", str(a.iterations),
                                "--clock", "cpu"] + b, "ns_per_pair", "CPU ns/pair", False),
            "percall_16k_cpu": (["percall", "-s", "16K", "-i", str(max(a.iterations // 2, 1)),
                                 "--clock", "cpu"] + b, "ns_per_pair", "CPU ns/pair", False),
            # Bulk cost without a stream's noise: 64 KiB pairs (sockmem-bench
            # stream's message size) on one CPU like the per-call workloads.
            "percall_64k": (["percall", "-s", "64K", "-i", str(max(a.iterations // 2, 1))] + b,
                            "ns_per_pair", "ns/pair", False),
            "percall_64k_cpu": (["percall", "-s", "64K", "-i", str(max(a.iterations // 2, 1)),
                                 "--clock", "cpu"] + b, "ns_per_pair", "CPU ns/pair", False),
            "stream_1": (["stream", "-c", "1", "-t", "1", "-d", d] + b,
                         "gbit_per_s", "Gbit/s", True),
            "stream_8": (["stream", "-c", "8", "-t", "2", "-d", d] + b,
                         "gbit_per_s", "Gbit/s", True),
            # Throughput per CPU-second of the process: what a stream costs,
            # whatever else the machine runs.
            "stream_1_cpu": (["stream", "-c", "1", "-t", "1", "-d", d, "--clock", "cpu"] + b,
                             "gbit_per_cpu_s", "Gbit per CPU-s", True),
            "stream_8_cpu": (["stream", "-c", "8", "-t", "2", "-d", d, "--clock", "cpu"] + b,
                             "gbit_per_cpu_s", "Gbit per CPU-s", True)}


def config_env(cfg, lib, ns):
    if cfg == "none":
        return clean_env()
    return preload_env(lib, GROUP if cfg == "group" else None, ns)


def run_charge(a, rows, run):
    env = clean_env()
    cb = os.path.join(a.build_dir, "sockmem-charge-bench")
    common = ["--repeat", "1", "--duration-ms", str(a.charge_ms)]
    for extra in ([], ["--procs", "2"]):
        for o in run_json([cb] + common + extra, env, who="run-percall"):
            name = "charge_%s_t%d_p%d" % (o["variant"], o["threads"], o["procs"])
            for metric in ("ns_per_op", "cpu_ns_per_op"):
                rows.append({"run": run, "workload": name, "config": "core",
                             "metric": metric, "batch": "", "value": o[metric],
                             "alloc_bytes": ""})


def lockstep(a, args, order, lib, ns, seed):
    """{config: JSON object} of one lockstep run; order[0] measures first,
    later rounds go in orders drawn from seed. The same-thread per-call
    workloads run on one CPU (--cpu)."""
    cpu = a.cpu if args[0] == "percall" else None
    try:
        return benchlib.lockstep(os.path.join(a.build_dir, "sockmem-bench"), args, order,
                                 {c: (config_env(c, lib, ns), []) for c in order},
                                 who="run-percall", cpu=cpu, seed=seed)
    except benchlib.LockstepError as e:
        raise SystemExit(str(e))


def one_run(a, wl, run, lib, ns, rows):
    for wi, name in enumerate(wl):
        args, key, _unit, _hib = wl[name]
        k = (run + wi) % len(CONFIGS)
        order = CONFIGS[k:] + CONFIGS[:k]
        log("[run %d/%d] %-12s lockstep %s" % (run + 1, a.runs, name, " > ".join(order)))
        res = lockstep(a, args, order, lib, ns, 1000 * run + wi)
        for cfg, o in res.items():
            rows.append({"run": run, "workload": name, "config": cfg, "metric": key,
                         "batch": "", "value": o["results"][key],
                         "alloc_bytes": o["alloc"]["allocated_bytes"]})
            for i, v in enumerate(o.get("samples", [])):
                rows.append({"run": run, "workload": name, "config": cfg, "metric": "sample",
                             "batch": i, "value": v, "alloc_bytes": ""})
    if not a.no_charge:
        log("[run %d/%d] charge-bench" % (run + 1, a.runs))
        run_charge(a, rows, run)


def group_stat(a, ns):
    ctl = os.path.join(a.build_dir, "sockmemctl")
    try:
        p = subprocess.run([ctl, "--namespace", ns, "stat", GROUP, "--json"],
                           env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        return json.loads(p.stdout) if p.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def print_header(m):
    print("Date: %s; commit %s; %s CPUs (%s); kernel %s." % (
        m["date"], m["commit"], m["cpus"], m["cpu"], m["kernel"]))
    print("Command: `%s`\n" % " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]))


def print_tables(a, wl, rows, stat):
    m = machine()
    if a.commit:
        m["commit"] = a.commit
    print_header(m)
    print("### Shim cost (%d runs of %d lockstep batches; per-run medians, min–max in "
          "brackets)\n" % (a.runs, a.batches))
    print("| workload | unit | no preload | preload, no group | ratio | "
          "group active | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, (_args, _key, unit, hib) in wl.items():
        cells = [med_cell(values(rows, name, c)) for c in CONFIGS]
        print("| %s | %s%s | %s | %s | %s | %s | %s |" % (
            name, unit, " (higher is better)" if hib else "", cells[0], cells[1],
            ratio_cell(rows, name, "nogroup"), cells[2], ratio_cell(rows, name, "group")))
    print("\nRatio: configuration / no preload. In bold the median over all runs and "
          "batches of the paired ratio (batch k of the configuration / batch k of no "
          "preload, taken back to back), with its interquartile range; then the ratio of "
          "the per-run medians. For ns/pair and us lower is better (1.02 = 2% slower); "
          "for Gbit/s higher is better (0.97 = 97% of the throughput).\n")
    print("### Bytes jemalloc counted for the measured loops (max over runs)\n")
    print("| workload | no preload | preload, no group | group active |")
    print("|---|---|---|---|")
    for name in wl:
        cells = [str(max(int(r["alloc_bytes"]) for r in rows
                         if r["workload"] == name and r["config"] == c
                         and r["metric"] != "sample")) for c in CONFIGS]
        print("| %s | %s | %s | %s |" % (name, *cells))
    if stat:
        print("\nGroup `%s` after the runs: current %s, sock %s, peak %s bytes, "
              "sockets %s, processes %s." % (GROUP, stat.get("current"), stat.get("sock"),
                                             stat.get("peak"), stat.get("sockets"),
                                             stat.get("processes")))
    print_charge(rows)


def print_charge(rows):
    order = {"cache": 0, "atomic": 1, "mutex": 2, "counter": 3}
    names = sorted({r["workload"] for r in rows if r["config"] == "core"},
                   key=lambda n: (order.get(n.split("_")[1], 9), n.split("_")[3], n))
    if not names:
        return
    print("\n### Charge path (sockmem-charge-bench; ns per charge+uncharge pair per "
          "thread, median of the runs)\n")
    print("| variant | threads | procs | wall ns, median (min–max) | CPU ns, median | "
          "on-CPU share |")
    print("|---|---|---|---|---|---|")
    for n in names:
        v, t, p = n[len("charge_"):].rsplit("_", 2)
        wall = values(rows, n, "core", "ns_per_op")
        cpu = values(rows, n, "core", "cpu_ns_per_op")
        print("| %s | %s | %s | %s | %s | %.0f%% |" % (
            v, t[1:], p[1:], med_cell(wall), fmt(statistics.median(cpu)),
            100.0 * statistics.median(c / w for c, w in zip(cpu, wall))))
    print("\nWall ns is what the brief asks for; CPU ns (CLOCK_THREAD_CPUTIME_ID) does not "
          "grow when the thread is descheduled, so it is the steadier figure on a busy "
          "machine, but it hides contention that happens while the thread is not running. "
          "On-CPU share (CPU ns / wall ns) shows how much of the window a thread really ran: "
          "well below 100% at 2 threads means the threads seldom ran at the same time, so "
          "the shared atomic and mutex were seldom contended.")
    for t, p in (("t1", "p1"), ("t2", "p1"), ("t1", "p2")):
        c = values(rows, "charge_cache_%s_%s" % (t, p), "core", "ns_per_op")
        at = values(rows, "charge_atomic_%s_%s" % (t, p), "core", "ns_per_op")
        cc = values(rows, "charge_cache_%s_%s" % (t, p), "core", "cpu_ns_per_op")
        ac = values(rows, "charge_atomic_%s_%s" % (t, p), "core", "cpu_ns_per_op")
        if c and at:
            print("\natomic / cache at %s thread(s) x %s process(es): %.2fx wall, "
                  "%.2fx CPU" % (t[1:], p[1:], statistics.median(at) / statistics.median(c),
                                 statistics.median(ac) / statistics.median(cc)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.environ.get("SOCKMEM_BUILD_DIR", "build"),
                    help="where sockmem-bench, libsockmem.so, sockmemctl are (build)")
    ap.add_argument("--runs", type=int, help="runs per configuration (5; --quick 3)")
    ap.add_argument("--iterations", type=int,
                    help="percall pairs per batch for 64 B, 16 and 64 KiB use half (2000)")
    ap.add_argument("--batches", type=int, help="lockstep batches per run (15)")
    ap.add_argument("--stream-seconds", type=float,
                    help="per stream measurement, all slices (3)")
    ap.add_argument("--charge-ms", type=int, help="per charge-bench measurement (200)")
    ap.add_argument("--no-charge", action="store_true", help="skip sockmem-charge-bench")
    ap.add_argument("--with-pingpong", action="store_true",
                    help="also cross-process ping-pong latency (p50, 64 B)")
    ap.add_argument("--csv", default="run-percall.csv", help="raw results (run-percall.csv)")
    ap.add_argument("--cpu", default="auto",
                    help="CPU for the per-call workloads, every configuration on it: auto "
                    "(the highest-numbered allowed CPU), none (no pinning) or a number")
    ap.add_argument("--only", metavar="REGEX",
                    help="only the workloads whose name matches (e.g. 'stream')")
    ap.add_argument("--commit", help="commit to print in the header (default: git HEAD "
                    "of the script's tree; set it when --build-dir holds another build)")
    ap.add_argument("--from-csv", metavar="FILE",
                    help="print the tables of an earlier run's CSV instead of measuring")
    ap.add_argument("--quick", action="store_true",
                    help="3 runs, short measurements (a smoke run, not for RESULTS.md)")
    a = ap.parse_args()
    defaults = (3, 500, 5, 0.5, 50) if a.quick else (5, 2000, 15, 3.0, 200)
    for name, d in zip(("runs", "iterations", "batches", "stream_seconds", "charge_ms"),
                       defaults):
        if getattr(a, name) is None:
            setattr(a, name, d)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    a.build_dir = os.path.abspath(a.build_dir)
    a.cpu = benchlib.pin_cpu(a.cpu)
    if a.from_csv:
        return a
    for f in ("sockmem-bench", "libsockmem.so", "sockmem-charge-bench"):
        if not os.path.exists(os.path.join(a.build_dir, f)):
            ap.error("%s not found in %s (use --build-dir)" % (f, a.build_dir))
    return a


def main():
    # SIGTERM/SIGINT unwind through `finally`, so the namespace is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    a = parse_args()
    wl = workloads(a)
    if a.only:
        wl = {k: v for k, v in wl.items() if re.search(a.only, k)}
    if a.from_csv:
        rows = load_csv(a.from_csv)
        a.runs = len({r["run"] for r in rows})
        seen = {r["workload"] for r in rows}
        print_tables(a, {k: v for k, v in wl.items() if k in seen}, rows, None)
        return
    lib = os.path.join(a.build_dir, "libsockmem.so")
    ns = "rp-%d-%d" % (os.getpid(), int(time.time()))
    rows = []
    try:
        for run in range(a.runs):
            one_run(a, wl, run, lib, ns, rows)
        stat = group_stat(a, ns)
    finally:
        try:
            os.unlink("/dev/shm/sockmem-" + ns)
        except FileNotFoundError:
            pass
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "workload", "config", "metric", "batch",
                                          "value", "alloc_bytes"])
        w.writeheader()
        w.writerows(rows)
    print_tables(a, wl, rows, stat)
    log("raw results: %s" % os.path.abspath(a.csv))


if __name__ == "__main__":
    main()
