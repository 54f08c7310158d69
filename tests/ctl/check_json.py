#!/usr/bin/env python3
"""Check `sockmemctl stat --json` output with a real JSON parser.

usage: check_json.py [--array MIN] [--group G] [EXPR...]
  Reads stdin; with --array the document must be an array of at least MIN
  group objects and --group picks the one to check, else it must be one
  object. Every object must have the documented keys with the documented
  types. EXPR is KEY=JSON, KEY>NUMBER, KEY<NUMBER, or KEY~NUMBER (a list
  containing the number); KEY may be dotted (events.max).
Exit 0 if all holds, else 1 with one line on stderr.
"""
import json
import re
import sys

BYTES = ['current', 'sock', 'cached', 'peak']
LIMITS = ['max', 'high', 'low']
COUNTS = ['failcnt', 'sockets', 'processes', 'underflows', 'throttle_ns']
EVENTS = ['low', 'high', 'max', 'pressure', 'throttled']
RECLAIM = ['passes', 'drained', 'reconciled', 'clamped']


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_shape(o):
    if not isinstance(o, dict):
        raise ValueError('not an object: %r' % (o,))
    if not isinstance(o.get('group'), str) or not o['group']:
        raise ValueError('group missing or not a string')
    for k in BYTES + COUNTS:
        if not is_int(o.get(k)) or o[k] < 0:
            raise ValueError('%s missing or not a non-negative integer' % k)
    for k in LIMITS:
        if not (is_int(o.get(k)) and o[k] >= 0) and o.get(k) != 'max':
            raise ValueError('%s is neither an integer nor "max"' % k)
    if not isinstance(o.get('under_pressure'), bool):
        raise ValueError('under_pressure missing or not a boolean')
    if not isinstance(o.get('pids'), list) or not all(is_int(p) for p in o['pids']):
        raise ValueError('pids missing or not a list of integers')
    for sub, keys in (('events', EVENTS), ('reclaim', RECLAIM)):
        if not isinstance(o.get(sub), dict):
            raise ValueError('%s missing or not an object' % sub)
        for k in keys:
            if not is_int(o[sub].get(k)):
                raise ValueError('%s.%s missing or not an integer' % (sub, k))


def get(o, dotted):
    for part in dotted.split('.'):
        o = o[part]
    return o


def check_expr(o, expr):
    m = re.fullmatch(r'([a-z_.]+)([=<>~])(.*)', expr)
    if not m:
        raise ValueError('bad expression %r' % expr)
    key, op, want = m.groups()
    have = get(o, key)
    ok = {
        '=': lambda: have == json.loads(want),
        '>': lambda: is_int(have) and have > int(want),
        '<': lambda: is_int(have) and have < int(want),
        '~': lambda: int(want) in have,
    }[op]()
    if not ok:
        raise ValueError('%s is %r, wanted %s%s' % (key, have, op, want))


def main(argv):
    array_min, group, exprs = None, None, []
    while argv:
        a = argv.pop(0)
        if a == '--array':
            array_min = int(argv.pop(0))
        elif a == '--group':
            group = argv.pop(0)
        else:
            exprs.append(a)
    doc = json.load(sys.stdin)
    if array_min is not None:
        if not isinstance(doc, list) or len(doc) < array_min:
            raise ValueError('wanted an array of at least %d objects' % array_min)
        for o in doc:
            check_shape(o)
        if group is None:
            return
        found = [o for o in doc if o['group'] == group]
        if len(found) != 1:
            raise ValueError('group %r appears %d times' % (group, len(found)))
        doc = found[0]
    check_shape(doc)
    for e in exprs:
        check_expr(doc, e)


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except (ValueError, KeyError, TypeError) as e:
        print('check_json: %s' % e, file=sys.stderr)
        sys.exit(1)
