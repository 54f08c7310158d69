"""Shared machinery of bench/compare and bench/run-percall.py.

Configurations are run in lockstep (sockmem-bench --turns): one process per
configuration, a driver hands one token around (in a new order every round)
and only its holder measures a batch, so batch k of every configuration is
taken within milliseconds of the others and the slow drifts of a noisy
machine cancel in paired ratios.
"""
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

# Under the Sanitize build the ASan runtime must be preloaded ahead of the
# sanitized libsockmem.so (CTest passes it in SOCKMEM_ASAN_LIB).
ASAN_LIB = os.environ.get("SOCKMEM_ASAN_LIB", "")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def clean_env():
    """The caller's environment without any preload or sockmem setting."""
    return {k: v for k, v in os.environ.items()
            if k != "LD_PRELOAD" and not k.startswith("SOCKMEM_")}


def preload_env(lib, group=None, ns=None, **extra):
    """Environment preloading lib (behind the ASan runtime if any), in group
    of namespace ns when given; extra adds SOCKMEM_<KEY>=value."""
    env = clean_env()
    env["LD_PRELOAD"] = (ASAN_LIB + ":" + lib) if ASAN_LIB else lib
    if group:
        env["SOCKMEM_GROUP"] = group
        env["SOCKMEM_NAMESPACE"] = ns
    for k, v in extra.items():
        env["SOCKMEM_" + k.upper()] = str(v)
    return env


def remove_namespace(build_dir, ns, group):
    """Remove a script's private namespace: its group, then the segment."""
    subprocess.run([os.path.join(build_dir, "sockmemctl"), "--namespace", ns, "rm", group],
                   capture_output=True)
    try:
        os.unlink("/dev/shm/sockmem-" + ns)
    except OSError:
        pass


def run_json(cmd, env, timeout=180, who="bench"):
    """Run cmd, return the JSON objects it printed (one per line)."""
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit("%s: %s failed (exit %d): %s"
                         % (who, " ".join(cmd), p.returncode, p.stderr.strip()))
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


class LockstepError(Exception):
    """A member of a lockstep run failed or hung; cfg names the first."""

    def __init__(self, msg, cfg):
        super().__init__(msg)
        self.cfg = cfg


def pin_cpu(arg):
    """--cpu: "auto" -> the highest-numbered CPU this process may run on
    (CPU 0 tends to take more of the machine's interrupts), "none" -> None
    (no pinning), else that CPU number."""
    if arg == "none":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if arg == "auto":
        return allowed[-1]
    try:
        cpu = int(arg)
    except ValueError:
        raise SystemExit("--cpu: expected auto, none or a CPU number, got '%s'" % arg)
    if cpu not in allowed:
        raise SystemExit("--cpu: CPU %d is not one this process may use (%s)"
                         % (cpu, ",".join(map(str, allowed))))
    return cpu


def _drive_turns(order, ends, seed, holder):
    """The token's rounds (see lockstep), once every member said it is
    ready (set up and warmed up: none of them still busy while another
    measures its first batch). A member that has measured its last batch
    (or failed) exits: its pipe back reads end-of-file and it leaves the
    rounds. Closes every pipe end it was given; holder[0] is the member
    the driver waits for."""
    rng = random.Random(seed)
    live = list(order)
    for cfg in order:
        holder[0] = cfg
        if not os.read(ends[cfg][1], 1):  # it failed before it was ready
            live.remove(cfg)
            os.close(ends[cfg][0])
            os.close(ends[cfg][1])
    while live:
        for cfg in list(live):
            tin, tout = ends[cfg]
            holder[0] = cfg
            try:
                os.write(tin, b"t")
                got = os.read(tout, 1)
            except OSError:  # EPIPE: it exited without reading the token
                got = b""
            if not got:
                live.remove(cfg)
                os.close(tin)
                os.close(tout)
        rng.shuffle(live)
    holder[0] = None


def lockstep(bench, args, order, setups, who="bench", timeout=600, cpu=None, seed=0):
    """Run one sockmem-bench per configuration in lockstep and return
    {config: JSON object}. setups[cfg] is (environment, command prefix),
    e.g. (env, ["trickle", ...]). A driver thread hands one token around:
    the member holding it measures one batch and hands it back, then the
    next one gets it; the others wait on a pipe. Round 0 goes in `order`;
    every later round in a new order (random.Random(seed)), so that no
    configuration always measures right after the same one, or at the same
    phase of a periodic disturbance (another workload's timers, a helper
    thread's ticks), which a fixed ring would turn into a bias of one
    configuration for the whole run. cpu: run every member on that one CPU
    (same-thread workloads: then no configuration gets a better or busier
    CPU than another). Raises LockstepError if a member fails or the run
    outlasts timeout seconds."""
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    procs, ends = [], {}
    try:
        for cfg in order:
            rin, tin = os.pipe()  # driver -> member
            ends[cfg] = (tin, None)
            try:
                tout, wout = os.pipe()  # member -> driver
            except OSError:
                os.close(rin)
                raise
            ends[cfg] = (tin, tout)
            env, prefix = setups[cfg]
            cmd = list(prefix) + [bench] + args + [
                "--json", "--samples", "--turns", "%d:%d" % (rin, wout)]
            try:
                procs.append((cfg, cmd, subprocess.Popen(
                    cmd, env=env, pass_fds=(rin, wout), preexec_fn=pin,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
            finally:
                os.close(rin)
                os.close(wout)
    except BaseException:
        for t, f in ends.values():
            os.close(t)
            if f is not None:
                os.close(f)
        for _c, _m, p in procs:
            p.kill()
            p.wait()
        raise
    holder = [order[0]]
    driver = threading.Thread(target=_drive_turns, args=(list(order), ends, seed, holder),
                              daemon=True)
    driver.start()
    out, failed, hung = {}, None, None
    deadline = time.monotonic() + timeout
    for cfg, cmd, p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            # The member the driver waits for at the deadline (to be ready,
            # or to hand the token back) is the one that hung.
            hung = hung or holder[0] or cfg
            for _c, _m, q in procs:
                if q.poll() is None:
                    q.kill()
            stdout, stderr = p.communicate()
        if p.returncode != 0:
            failed = failed or ("%s: %s (%s) failed (exit %d): %s"
                                % (who, " ".join(cmd), cfg, p.returncode, stderr.strip()),
                                cfg)
            continue
        out[cfg] = json.loads(stdout)
    driver.join()
    if hung:
        raise LockstepError("%s: lockstep %s: %s hung (no result after %d s)"
                            % (who, " ".join(args), hung, timeout), hung)
    if failed:
        # A member that failed left the rounds; the others finished.
        raise LockstepError(*failed)
    return out


def values(rows, wl, cfg, metric=None):
    """Per-run values (metric None: the summary rows, not the samples nor
    the notes of failed runs)."""
    return [r["value"] for r in rows if r["workload"] == wl and r["config"] == cfg
            and (r["metric"] == metric if metric else r["metric"] not in ("sample", "failed"))]


def fmt(v):
    return "%.0f" % v if abs(v) >= 1000 else "%.4g" % v


def med_cell(v):
    if not v:
        return "–"
    return "%s (%s–%s)" % (fmt(statistics.median(v)), fmt(min(v)), fmt(max(v)))


def paired_ratios(rows, wl, cfg, base="none"):
    """cfg / base for every batch k of every run: batch k of each
    configuration was measured back to back with the others."""
    idx = {}
    for r in rows:
        if r["workload"] == wl and r["metric"] == "sample":
            idx[(r["run"], int(r["batch"]), r["config"])] = r["value"]
    out = []
    for (run, b, c), v in idx.items():
        ref = idx.get((run, b, base))
        if c == cfg and ref:
            out.append(v / ref)
    return out


def ratio_stats(rows, wl, cfg, base="none"):
    """(median paired ratio, q1, q3, ratio of per-run medians); the
    paired entries are None with fewer than 4 pairs."""
    v, ref = values(rows, wl, cfg), values(rows, wl, base)
    of_medians = statistics.median(v) / statistics.median(ref) if v and ref else None
    pr = paired_ratios(rows, wl, cfg, base)
    if len(pr) < 4:
        return None, None, None, of_medians
    q = statistics.quantiles(pr, n=4)
    return statistics.median(pr), q[0], q[2], of_medians


def ratio_cell(rows, wl, cfg, base="none"):
    """Median of the paired per-batch ratios with their interquartile range,
    and the ratio of the per-run medians."""
    med, q1, q3, of_medians = ratio_stats(rows, wl, cfg, base)
    if of_medians is None:
        return "–"
    if med is None:
        return "%.3f" % of_medians
    return "**%.3f** (IQR %.3f–%.3f; medians %.3f)" % (med, q1, q3, of_medians)


def sh(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine():
    """Date, commit of the script's tree, CPUs, CPU model, kernel, memory."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1048576.0)
    src = os.path.dirname(os.path.abspath(__file__))
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": sh(["git", "-C", src, "rev-parse", "--short", "HEAD"]) or "?",
            "cpus": str(os.cpu_count()), "cpu": model, "kernel": os.uname().release,
            "memory": mem}


class CpuLoad:
    """Machine load over an interval, from /proc/stat and /proc/loadavg:
    the share of CPU time that was idle, and the 1-minute load average."""

    @staticmethod
    def _stat():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    def __init__(self):
        self.t0, self.i0 = self._stat()
        self.loads = []

    def sample(self):
        with open("/proc/loadavg") as f:
            self.loads.append(float(f.read().split()[0]))

    def summary(self):
        t1, i1 = self._stat()
        idle = 100.0 * (i1 - self.i0) / max(t1 - self.t0, 1)
        ld = ("load average (1 min) %.1f–%.1f" % (min(self.loads), max(self.loads))
              if self.loads else "")
        return idle, ld


class Progress:
    """Which step, which run, time left: rewritten in place on a terminal,
    plain lines otherwise (stderr)."""

    def __init__(self, total_units):
        self.total = max(total_units, 1e-9)
        self.done = 0.0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, what, units=0.0):
        """Announce what runs next; units is its share of the total work."""
        el = time.monotonic() - self.start
        left = el * (self.total - self.done) / self.done if self.done > 0 else None
        pct = 100.0 * self.done / self.total
        msg = "[%3.0f%%] %s" % (pct, what)
        if left is not None:
            msg += "  (%s elapsed, ~%s left)" % (mmss(el), mmss(left))
        if self.tty:
            sys.stderr.write("\r\033[K" + msg[:max(20, term_width() - 1)])
            sys.stderr.flush()
        else:
            log(msg)
        self.done += units

    def finish(self, msg):
        if self.tty:
            sys.stderr.write("\r\033[K")
        log("%s (%s)" % (msg, mmss(time.monotonic() - self.start)))


def term_width():
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        return 80


def mmss(s):
    s = int(s + 0.5)
    return "%d:%02d" % (s // 60, s % 60)


def write_csv(path, rows, fields, meta=None):
    """Rows to CSV; meta (date, commit, machine...) repeated on every row so
    each line stands alone."""
    meta = meta or {}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(meta) + fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**meta, **r})


def load_csv(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            r["run"] = int(r["run"])
            r["value"] = float(r["value"])
            rows.append(r)
    return rows
