#!/usr/bin/env python3
"""Smoke check for the benchmark binaries (CTest): run the command given as
arguments, require exit status 0 and JSON on stdout.

sockmem-bench prints one object with mode/params/results/alloc;
sockmem-charge-bench prints one object per line with variant/threads/ns_per_op;
sockmem-page-probe one object with lines/pages/ns_per_line/ns_per_page.
No timing is asserted: the figures only have to be present and positive."""
import json
import subprocess
import sys


def fail(msg):
    print("check-json: " + msg, file=sys.stderr)
    sys.exit(1)


def check_loadgen(objs):
    if len(objs) != 1:
        fail("expected exactly one JSON object, got %d" % len(objs))
    o = objs[0]
    for k in ("mode", "params", "results", "alloc", "env"):
        if k not in o:
            fail("missing key %r" % k)
    if not o["results"]:
        fail("empty results")
    for k, v in o["results"].items():
        if v is None or v < 0:
            fail("result %s=%r" % (k, v))
    if o["alloc"].get("allocated_bytes") is None:
        fail("jemalloc counters unavailable (is jemalloc the allocator?)")


def check_charge(objs):
    for o in objs:
        for k in ("variant", "threads", "procs", "ns_per_op"):
            if k not in o:
                fail("missing key %r in %r" % (k, o))
        if not o["ns_per_op"] > 0:
            fail("ns_per_op not positive in %r" % o)


def check_probe(objs):
    o = objs[0]
    for v in ("lines", "pages"):
        if not o.get(v) or any(not x > 0 for x in o[v].values()):
            fail("%s: missing or not positive in %r" % (v, o))
    for k in ("ns_per_line", "ns_per_page"):
        if k not in o:
            fail("missing key %r" % k)


def main():
    if len(sys.argv) < 2:
        fail("usage: check-json.py COMMAND [ARGS...]")
    p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120, text=True)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        fail("exit status %d" % p.returncode)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    try:
        objs = [json.loads(l) for l in lines]
    except ValueError as e:
        fail("not JSON: %s\n%s" % (e, p.stdout))
    if not objs:
        fail("no output")
    print(p.stdout, end="")
    if "variant" in objs[0]:
        check_charge(objs)
    elif "ns_per_page" in objs[0]:
        check_probe(objs)
    else:
        check_loadgen(objs)


if __name__ == "__main__":
    main()
