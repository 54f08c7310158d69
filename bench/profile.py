#!/usr/bin/env python3
"""Where the CPU goes: the shim's share of a workload's CPU time, from a
sampling profile (perf, cpu-clock, DWARF call chains).

  bench/profile.py [--build-dir build] [--runs 3] [--json] [--cpu auto]

Throughput ratios taken side by side on a shared machine scatter by several
percent from batch to batch; a profile does not: it counts where the
program's own CPU time went. Each workload runs preloaded in a group of a
private namespace (no limit), under `perf record -e cpu-clock`, and every
sample of the process (all its threads) is put in one of three classes:

  shim code      the sampled instruction is in libsockmem.so;
  shim calls     the sample is in libc or the kernel, called from shim code:
                 the nearest libsockmem.so frame is not an interposer making
                 the program's own call (the reconcile getsockopt, the
                 helper thread's work, ...);
  program        everything else, including the real send/recv an
                 interposer forwards (its nearest libsockmem.so frame is an
                 exported interposer calling libc_<name>).

Samples whose chain does not reach a thread's root are counted apart
("unwound short"): a truncated chain may hide a shim frame, so the share
is also given as an upper bound that counts them all as the shim's.
The same runs preloaded without a group (pass-through) are the control.
Prints the median over --runs of each share, per workload.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def workloads(quick):
    """(name, sockmem-bench arguments, one thread: pinned to --cpu)."""
    n, d = (2000, "0.3") if quick else (20000, "3")
    return (("percall_64", ["percall", "-s", "64", "-i", str(n), "-b", "10"], True),
            ("percall_64k", ["percall", "-s", "64K", "-i", str(n // 2), "-b", "10"], True),
            ("stream_1", ["stream", "-c", "1", "-t", "1", "-d", d], True),
            ("stream_8", ["stream", "-c", "8", "-t", "2", "-d", d], False))


ROOTS = ("start_thread", "clone3", "clone", "_start", "__libc_start_call_main",
         "__libc_start_main")


def exported(lib):
    """The interposers: the functions libsockmem.so exports."""
    p = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                       check=True)
    return {ln.split()[-1] for ln in p.stdout.splitlines() if " T " in ln or " W " in ln}


def frames(block):
    """The call chain of one `perf script` sample, leaf first, as a list of
    (dso, [symbols innermost first]) per address (inlined frames share their
    caller's address and dso)."""
    out = []
    for ln in block[1:]:
        parts = ln.strip().split(None, 1)
        if len(parts) < 2:
            continue
        ip, rest = parts
        sym, _, dso = rest.rpartition(" (")
        dso = dso.rstrip(")")
        if out and out[-1][0] == ip:
            out[-1][2].append(sym)
            if dso != "inlined":
                out[-1][1] = dso
        else:
            out.append([ip, None if dso == "inlined" else dso, [sym]])
    return [(d or "", s) for _ip, d, s in out]


def classify(chain, lib, interposers):
    """'code', 'calls', 'program' or 'short' for one sample's chain."""
    ours = [i for i, (dso, _s) in enumerate(chain) if dso == lib]
    if ours and ours[0] == 0:
        return "code"
    if ours:
        syms = chain[ours[0]][1]
        forwarding = syms[-1] in interposers and syms[0].startswith("libc_")
        return "program" if forwarding else "calls"
    if not chain or not any(s in ROOTS for _d, syms in chain[-2:] for s in syms):
        return "short"
    return "program"


def profile_once(a, args, env, pin, interposers, tmp):
    data = os.path.join(tmp, "perf.data")
    rec = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.freq), "--call-graph",
           "dwarf,8192", "-o", data, "--", a.bench] + args
    p = subprocess.run(rec, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=300,
                       preexec_fn=(lambda: os.sched_setaffinity(0, {a.cpu})) if pin else None)
    if p.returncode != 0:
        raise SystemExit("profile: %s failed (exit %d): %s"
                         % (" ".join(rec), p.returncode, p.stderr.strip()[-400:]))
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                            capture_output=True, text=True, timeout=600)
    if script.returncode != 0:
        raise SystemExit("profile: perf script failed: %s" % script.stderr.strip()[-400:])
    counts = {"code": 0, "calls": 0, "program": 0, "short": 0}
    block = []
    for ln in script.stdout.splitlines() + [""]:
        if ln.strip():
            block.append(ln)
            continue
        if block and block[0].split()[0] == "sockmem-bench":
            counts[classify(frames(block), a.lib, interposers)] += 1
        block = []
    return counts


def check_perf():
    """perf installed and allowed to sample here; exit 77 (a skip) if not."""
    try:
        p = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o", "/dev/null",
                            "--", "true"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        print("profile: perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        sys.exit(77)
    if p.returncode != 0:
        print("profile: perf cannot sample here: %s" % (p.stderr.strip().splitlines() or
                                                        ["exit %d" % p.returncode])[-1],
              file=sys.stderr)
        sys.exit(77)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--freq", type=int, default=4000, help="samples per second (4000)")
    ap.add_argument("--cpu", default="auto",
                    help="CPU for the one-thread workloads: auto, none or a number")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--quick", action="store_true",
                    help="workloads a tenth as long (a smoke run; too few samples to judge)")
    a = ap.parse_args()
    a.build_dir = os.path.abspath(a.build_dir)
    a.bench = os.path.join(a.build_dir, "sockmem-bench")
    a.lib = os.path.join(a.build_dir, "libsockmem.so")
    for f in (a.bench, a.lib):
        if not os.path.exists(f):
            raise SystemExit("profile: %s not found (use --build-dir)" % f)
    check_perf()
    a.cpu = benchlib.pin_cpu(a.cpu)
    interposers = exported(a.lib)
    ns = "prof%d" % os.getpid()
    configs = {"group": benchlib.preload_env(a.lib, "prof/g", ns),
               "nogroup": benchlib.preload_env(a.lib)}
    result = {}
    try:
        with tempfile.TemporaryDirectory(prefix="sockmem-prof") as tmp:
            for name, args, one_cpu in workloads(a.quick):
                per = {c: [] for c in configs}
                for r in range(a.runs):
                    for c in (configs if r % 2 == 0 else reversed(list(configs))):
                        benchlib.log("profile: %s, %s, run %d/%d" % (name, c, r + 1, a.runs))
                        per[c].append(profile_once(a, args, configs[c],
                                                   one_cpu and a.cpu is not None,
                                                   interposers, tmp))
                result[name] = {c: summarize(v) for c, v in per.items()}
    finally:
        benchlib.remove_namespace(a.build_dir, ns, "prof/g")
    if a.json:
        print(json.dumps(result))
        return
    print("%-12s %-8s %8s %10s %10s %10s %12s" % ("workload", "config", "samples", "shim code",
                                                 "shim calls", "shim", "upper bound"))
    for name, by in result.items():
        for c, s in by.items():
            print("%-12s %-8s %8d %9.2f%% %9.2f%% %9.2f%% %11.2f%%"
                  % (name, c, s["samples"], s["code"], s["calls"], s["shim"], s["upper"]))


def summarize(runs):
    """Median over runs of each share, in percent of the process's samples."""
    def med(f):
        return statistics.median(f(r) / max(sum(r.values()), 1) * 100 for r in runs)
    return {"samples": int(statistics.median(sum(r.values()) for r in runs)),
            "code": med(lambda r: r["code"]), "calls": med(lambda r: r["calls"]),
            "shim": med(lambda r: r["code"] + r["calls"]),
            "short": med(lambda r: r["short"]),
            "upper": med(lambda r: r["code"] + r["calls"] + r["short"])}


if __name__ == "__main__":
    main()
