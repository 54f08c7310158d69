#!/usr/bin/env python3
"""Check `sockmemctl traces GROUP --json` (stdin): the document is valid JSON
with the documented keys, and some site names FUNCTION with count > 0 and
bytes > 0. Usage: check_traces_json.py FUNCTION. Exit 0 if so, 1 (with the
reason on stderr) otherwise."""
import json
import sys


def fail(msg):
    print("check_traces_json: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    want = sys.argv[1]
    doc = json.load(sys.stdin)
    for key in ("group", "events", "sites"):
        if key not in doc:
            fail("missing key %r" % key)
    if set(doc["events"]) != {"max", "throttled"}:
        fail("events keys: %r" % sorted(doc["events"]))
    keys = {"rank", "group", "count", "bytes", "kinds", "program", "pid", "records",
            "first_seen_ns", "last_seen_ns", "frames"}
    counts = []
    for site in doc["sites"]:
        if set(site) != keys:
            fail("site keys: %r" % sorted(site))
        counts.append(site["count"])
        for fr in site["frames"]:
            if set(fr) != {"function", "offset", "object", "address"}:
                fail("frame keys: %r" % sorted(fr))
    if counts != sorted(counts, reverse=True):
        fail("sites not sorted by count: %r" % counts)
    for site in doc["sites"]:
        if any(fr["function"] == want for fr in site["frames"]):
            if site["count"] <= 0 or site["bytes"] <= 0:
                fail("site of %s has count %d bytes %d" % (want, site["count"], site["bytes"]))
            if "max" not in site["kinds"]:
                fail("site of %s has kinds %r" % (want, site["kinds"]))
            print("ok %s count %d bytes %d" % (want, site["count"], site["bytes"]))
            return
    fail("no site names %s" % want)


main()
