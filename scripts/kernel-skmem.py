#!/usr/bin/env python3
"""The kernel's own socket-memory figures for a set of processes.

Independent of sockmem: the sockets of a process are the socket inodes in
/proc/PID/fd, and their memory is what `ss -tuanmeH` (skmem) reports for
those inodes: wmem_queued (w) + rmem_alloc (r), exactly what sockmem charges
a socket, plus the buffer sizes the kernel allows them (rb, tb). A socket
shared by several processes is counted once.

usage:
  kernel-skmem.py PID [PID...]
      one sample; prints: <bytes> <sockets>
  kernel-skmem.py watch [--interval MS] [--out FILE.csv] [--t0 EPOCH]
                        [--summary FILE] (PID | -- COMMAND [ARGS...])
      sample PID, or COMMAND (started here, so its first moments are seen),
      and its descendants every MS milliseconds (default 50) until it
      exits; FILE.csv gets time_s,bytes,sockets,rcvbuf_max,sndbuf_max
      (time_s: seconds since EPOCH, a Unix time with decimals, default the
      start; rcvbuf/sndbuf: ss's rb/tb, the largest of any socket). Writes
      one JSON object to FILE (default stdout): peak_bytes, peak_sockets,
      rcvbuf_max, sndbuf_max (the largest buffers any socket had), samples.
      With COMMAND, exits with its status.
  kernel-skmem.py compare --ctl PATH [--namespace NS] GROUP [--samples N]
      N times (default 5): read the group's sock with `PATH stat GROUP
      --json`, the kernel's figure for the group's pids, and the group's sock
      again; prints one JSON object with every sample
      {group_before, kernel, group_after, sockets} and the sample whose group
      readings moved least (the fairest comparison).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

SKMEM = re.compile(r"skmem:\(r(\d+),rb(\d+),t\d+,tb(\d+),f\d+,w(\d+),")
INO = re.compile(r"\bino:(\d+)")


def socket_inodes(pids):
    inos = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # exited
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inos.add(int(link[8:-1]))
    return inos


def descendants(pid):
    """pid and every live descendant (via /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def sample(pids):
    """(bytes, sockets, rcvbuf_max, sndbuf_max) over the pids' sockets."""
    inos = socket_inodes(pids)
    if not inos:
        return 0, 0, 0, 0
    out = subprocess.run(["ss", "-tuanmeH"], capture_output=True, text=True,
                         check=True).stdout
    total = nsock = rbmax = tbmax = 0
    ino = None
    seen = set()
    # ss prints a socket's skmem on the line after the socket's line (or on
    # the same line, depending on the width); take the last ino seen.
    for line in out.splitlines():
        m = INO.search(line)
        if m:
            ino = int(m.group(1))
        s = SKMEM.search(line)
        if s and ino in inos and ino not in seen:
            seen.add(ino)
            r, rb, tb, w = (int(x) for x in s.groups())
            total += r + w
            nsock += 1
            rbmax, tbmax = max(rbmax, rb), max(tbmax, tb)
        if s:
            ino = None
    return total, nsock, rbmax, tbmax


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmd_watch(args):
    interval, out, pid, t0, summary, cmd = 50, None, None, None, None, None
    while args:
        a = args.pop(0)
        if a == "--interval":
            interval = int(args.pop(0))
        elif a == "--out":
            out = args.pop(0)
        elif a == "--t0":
            t0 = float(args.pop(0))
        elif a == "--summary":
            summary = args.pop(0)
        elif a == "--":
            cmd, args = args, []
        elif a.isdigit() and pid is None:
            pid = int(a)
        else:
            return usage(f"watch: unexpected '{a}'")
    if (pid is None) == (not cmd):
        return usage("watch: give the pid to follow or -- COMMAND")
    if t0 is None:
        t0 = time.time()
    f = open(out, "w") if out else None
    if f:
        print("time_s,bytes,sockets,rcvbuf_max,sndbuf_max", file=f, flush=True)
    child = None
    if cmd:
        try:
            child = subprocess.Popen(cmd)
        except OSError as e:
            print(f"kernel-skmem.py: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
            return 127
        pid = child.pid

        def stop(signum, _frame):  # take the command along
            child.send_signal(signum)
            child.wait()
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    peak = peak_sock = rbmax = tbmax = n = 0
    while child.poll() is None if child else alive(pid):
        ts = time.time() - t0
        b, s, rb, tb = sample(descendants(pid))
        n += 1
        peak, peak_sock = max(peak, b), max(peak_sock, s)
        rbmax, tbmax = max(rbmax, rb), max(tbmax, tb)
        if f:
            print(f"{ts:.3f},{b},{s},{rb},{tb}", file=f, flush=True)
        time.sleep(interval / 1000)
    res = json.dumps({"peak_bytes": peak, "peak_sockets": peak_sock, "rcvbuf_max": rbmax,
                      "sndbuf_max": tbmax, "samples": n})
    if summary:
        with open(summary, "w") as sf:
            print(res, file=sf)
    else:
        print(res)
    if child:
        rc = child.wait()
        return rc if rc >= 0 else 128 - rc
    return 0


def cmd_compare(args):
    ctl, ns, group, n = None, None, None, 5
    while args:
        a = args.pop(0)
        if a == "--ctl":
            ctl = args.pop(0)
        elif a == "--namespace":
            ns = args.pop(0)
        elif a == "--samples":
            n = int(args.pop(0))
        elif group is None:
            group = a
        else:
            return usage(f"compare: unexpected '{a}'")
    if not ctl or not group:
        return usage("compare: give --ctl PATH and GROUP")
    cmd = [ctl] + (["--namespace", ns] if ns else []) + ["stat", group, "--json"]

    def stat():
        return json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                         check=True).stdout)

    rows = []
    for _ in range(n):
        before = stat()
        if not before["pids"]:
            break
        k, s, _, _ = sample(before["pids"])
        after = stat()
        rows.append({"group_before": before["sock"], "kernel": k, "group_after": after["sock"],
                     "sockets": s, "group_sockets": before["sockets"]})
        time.sleep(0.2)
    if not rows:
        print("kernel-skmem.py: the group has no live processes to compare", file=sys.stderr)
        return 1
    best = min(rows, key=lambda r: abs(r["group_after"] - r["group_before"]))
    print(json.dumps({"samples": rows, "best": best}))
    return 0


def usage(msg):
    print(f"kernel-skmem.py: {msg} (see the docstring: head -25 {sys.argv[0]})", file=sys.stderr)
    return 2


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "watch":
        return cmd_watch(args[1:])
    if args and args[0] == "compare":
        return cmd_compare(args[1:])
    pids = [int(p) for p in args if p.isdigit()]
    if not pids or len(pids) != len(args):
        return usage("give the pids whose sockets to sum")
    b, s, _, _ = sample(pids)
    print(b, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
