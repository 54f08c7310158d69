#!/usr/bin/env python3
"""Side by side: several builds (or settings) of libsockmem.so against no
preload, in lockstep, to see what one change to the shim costs or saves.

  bench/ab-libs.py [--runs 6] [--batches 20] [--workload percall] \\
      old=/tmp/old/libsockmem.so new=build/libsockmem.so \\
      wide=build/libsockmem.so@RECONCILE_BYTES=4M pass=build/libsockmem.so:nogroup

Each NAME=PATH is one configuration: PATH preloaded in a group of a private
namespace; PATH@KEY=VAL[,KEY=VAL] also sets SOCKMEM_KEY=VAL; PATH:nogroup
preloads it without a group (pass-through). Build the old side from a git
worktree (`git worktree add /tmp/old <commit>`, then cmake there).

Workloads: percall (64 B and 16 KiB pairs, wall and thread CPU, every
configuration on one CPU), bulk (64 KiB pairs, likewise), stream (one
connection and one thread, 0.1 s slices, pinned with --pin-stream) or stream8
(8 connections, 2 threads, never pinned). Prints, per workload, the median of
the paired ratios (configuration / no preload, batch k against batch k)
with its interquartile range. A ratio of time: lower is better; of Gbit/s:
higher is better. --record FILE appends them, dated, to a markdown file
(bench/AB-RESULTS.md keeps the long side-by-side runs behind RESULTS.md).

--holder adds bench/compare's background for the whole run: 16 slow-reader
streams (2 threads, never pinned) reading 1M/s each, held at max=8M in
ab/held, a sibling of the measured group ab/g (--holder sibling), in a group
of its own parent (other), or without the shim (plain). A configuration
PATH@GROUP=ab/held measures inside the held group, as compare's "limit".
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

WORKLOADS = {
    "percall": (("64 B wall", ["percall", "-s", "64", "-i", "2000"]),
                ("64 B CPU", ["percall", "-s", "64", "-i", "2000", "--clock", "cpu"]),
                ("16 KiB CPU", ["percall", "-s", "16K", "-i", "1000", "--clock", "cpu"])),
    "bulk": (("64 KiB wall", ["percall", "-s", "64K", "-i", "2000"]),
             ("64 KiB CPU", ["percall", "-s", "64K", "-i", "2000", "--clock", "cpu"])),
    "stream": (("1 stream wall", ["stream", "-c", "1", "-t", "1", "-d", "2"]),
               ("1 stream CPU", ["stream", "-c", "1", "-t", "1", "-d", "2", "--clock", "cpu"])),
    "stream8": (("8 streams wall", ["stream", "-c", "8", "-t", "2", "-d", "2"]),
                ("8 streams CPU", ["stream", "-c", "8", "-t", "2", "-d", "2", "--clock", "cpu"])),
}


def setup(spec, ns):
    """(environment, prefix) of one NAME=PATH[@K=V,...|:nogroup] spec."""
    if spec.endswith(":nogroup"):
        return benchlib.preload_env(spec[:-len(":nogroup")]), []
    extra = {}
    if "@" in spec:
        spec, kv = spec.split("@", 1)
        for item in kv.split(","):
            k, _, v = item.partition("=")
            extra[k.lower()] = v
    return benchlib.preload_env(spec, extra.pop("group", "ab/g"), ns, **extra), []


HOLDER_GROUP = {"sibling": "ab/held", "other": "bg/held", "plain": None}


def start_holder(a, ns):
    """bench/compare's background workload (see --holder), preloading the
    build directory's libsockmem.so; None if none."""
    if not a.holder:
        return None
    group = HOLDER_GROUP[a.holder]
    ctl = os.path.join(a.build_dir, "sockmemctl")
    if group:
        subprocess.run([ctl, "--namespace", ns, "set", group, "max=8M"], check=True,
                       env=benchlib.clean_env())
        env = benchlib.preload_env(os.path.join(a.build_dir, "libsockmem.so"), group, ns)
    else:
        env = benchlib.clean_env()
    p = subprocess.Popen([os.path.join(a.build_dir, "sockmem-bench"), "stream", "-c", "16",
                          "-t", "2", "--slow-reader", "1M", "-d", "3600", "--sample-ms", "0",
                          "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # the queues fill up to the max
    if p.poll() is not None:
        raise SystemExit("ab-libs: the holder ended: %s" % p.stderr.read().decode().strip())
    return p


def stop_holder(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def record(a, libs, table, loadsum):
    """Append one dated block of results to a.record (markdown)."""
    m = benchlib.machine()
    idle, ld = loadsum
    with open(a.record, "a") as f:
        f.write("\n### %s, commit %s: %s\n\n" % (m["date"], m["commit"], a.workload))
        f.write("- Machine: %s x %s, %s, kernel %s; during the run %.0f%% of the CPU time "
                "idle, %s.\n" % (m["cpus"], m["cpu"], m["memory"], m["kernel"], idle, ld))
        f.write("- Command: `bench/ab-libs.py %s`\n" % " ".join(sys.argv[1:]))
        if a.holder:
            f.write("- Background (--holder %s): 16 slow-reader streams at 1M/s held at max=8M "
                    "%s.\n" % (a.holder, {"sibling": "in ab/held, a sibling of ab/g",
                                          "other": "in bg/held (another parent)",
                                          "plain": "without the shim (no group)"}[a.holder]))
        f.write("- Median paired ratio against no preload (batch k against batch k) with its "
                "interquartile range, over %d runs x %d batches. Rows in time per pair: lower "
                "is better (1.02 = 2%% slower, 0.980 of the throughput); rows in Gbit/s: "
                "higher is better.\n\n" % (a.runs, a.batches))
        f.write("| workload | %s |\n|---|%s\n" % (" | ".join(libs), "---|" * len(libs)))
        for label, is_time, cells in table:
            unit = "time" if is_time else "Gbit per CPU-s" if "CPU" in label else "Gbit/s"
            f.write("| %s (%s) | %s |\n" % (label, unit, " | ".join(cells)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="percall")
    ap.add_argument("--build-dir", default="build", help="where sockmem-bench is (build)")
    ap.add_argument("--cpu", default="auto",
                    help="CPU for the pinned workloads: auto, none or a number")
    ap.add_argument("--pin-stream", action="store_true",
                    help="run the stream workload (one thread) on --cpu too")
    ap.add_argument("--record", metavar="FILE",
                    help="also append the results, with date, commit, machine, load and "
                    "this command, to FILE (markdown; e.g. bench/AB-RESULTS.md)")
    ap.add_argument("--holder", choices=sorted(HOLDER_GROUP),
                    help="run bench/compare's background workload throughout (see above)")
    ap.add_argument("configs", nargs="+", metavar="NAME=PATH")
    a = ap.parse_args()
    libs = dict(c.split("=", 1) for c in a.configs if "=" in c)
    if len(libs) != len(a.configs) or "none" in libs:
        raise SystemExit("ab-libs: each configuration is NAME=PATH (NAME not 'none')")
    ns = "ab%d" % os.getpid()
    setups = {"none": (benchlib.clean_env(), [])}
    setups.update({k: setup(v, ns) for k, v in libs.items()})
    pinned = {"stream": a.pin_stream, "stream8": False}.get(a.workload, True)
    cpu = benchlib.pin_cpu(a.cpu) if pinned else None
    bench = os.path.join(a.build_dir, "sockmem-bench")
    cfgs = list(setups)
    load, table = benchlib.CpuLoad(), []
    holder = None
    try:
        holder = start_holder(a, ns)
        for label, args in WORKLOADS[a.workload]:
            ratios = {k: [] for k in libs}
            for r in range(a.runs):
                order = list(cfgs)  # a new order every round (seeded)
                random.Random(r).shuffle(order)
                res = benchlib.lockstep(bench, args + ["-b", str(a.batches)], order, setups,
                                        who="ab-libs", cpu=cpu, seed=r)
                base = res["none"]["samples"]
                for c in libs:
                    ratios[c] += [x / y for x, y in zip(res[c]["samples"], base)]
            load.sample()
            cells = ["%.3f (IQR %.3f-%.3f)" % (statistics.median(v),
                                               *statistics.quantiles(v, n=4)[::2])
                     for v in ratios.values()]
            table.append((label, args[0] == "percall", cells))
            print("%-14s %s" % (label, "  ".join(
                "%s %s" % (c, cell) for c, cell in zip(libs, cells))), flush=True)
    except benchlib.LockstepError as e:
        raise SystemExit(str(e))
    else:
        if a.record:
            record(a, libs, table, load.summary())
    finally:
        stop_holder(holder)
        benchlib.remove_namespace(a.build_dir, ns, "ab/g")


if __name__ == "__main__":
    main()
