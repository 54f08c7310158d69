#!/usr/bin/env python3
"""Sum the kernel's own socket-memory figures for a set of processes.

Reads `ss -tuanmpH` (every TCP/UDP socket with its skmem and owning
processes) and, for the sockets owned by the given pids, adds up
wmem_queued (w) + rmem_alloc (r): what sockmem charges a socket.
A socket shared by several of the pids is counted once.

usage: kernel-skmem.py PID [PID...]      prints: <bytes> <sockets>
"""
import re
import subprocess
import sys


def main() -> int:
    pids = {int(p) for p in sys.argv[1:] if p.isdigit()}
    if not pids:
        print("kernel-skmem.py: give the pids whose sockets to sum", file=sys.stderr)
        return 2
    out = subprocess.run(["ss", "-tuanmpH"], capture_output=True, text=True, check=True).stdout
    # ss prints a socket's skmem on its own line, after the socket's line.
    total = nsock = 0
    owned = False
    for line in out.splitlines():
        if "users:(" in line or "skmem:(" not in line:
            owned = any(int(p) in pids for p in re.findall(r"pid=(\d+)", line))
        if owned and "skmem:(" in line:
            m = re.search(r"skmem:\(r(\d+),.*?,w(\d+),", line)
            if m:
                total += int(m.group(1)) + int(m.group(2))
                nsock += 1
            owned = False
    print(total, nsock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
