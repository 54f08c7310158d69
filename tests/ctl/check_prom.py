#!/usr/bin/env python3
"""Strict checker of the Prometheus text exposition format (version 0.0.4).

Reads the exposition on stdin; exits 0 if valid, else 1 with one line per
problem on stderr. Stricter than Prometheus itself where sockmemctl makes
promises: every family has HELP and TYPE before its samples, one TYPE per
family, families are contiguous, no duplicate series, counters end in
_total and are non-negative, and (options) a name prefix and a label on
every sample.

usage: check_prom.py [--prefix P] [--require-label NAME] [--min-families N]
"""
import argparse
import re
import sys

METRIC = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
FLOAT = re.compile(r'[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN)\Z')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}
SUFFIXES = ('_bucket', '_count', '_sum')


class Bad(Exception):
    pass


def parse_labels(s, i):
    """Parse '{a="x",b="y"}' starting at s[i] == '{'; return (labels, next i)."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == '}':
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Bad('bad label name at column %d' % (i + 1))
        name = m.group(0)
        if name.startswith('__'):
            raise Bad('reserved label name %r' % name)
        if name in labels:
            raise Bad('duplicate label %r' % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise Bad('expected =" after label %r' % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise Bad('unterminated label value')
            c = s[i]
            if c == '\\':
                nxt = s[i + 1:i + 2]
                if nxt not in ('\\', '"', 'n'):
                    raise Bad('bad escape \\%s in label value' % nxt)
                val.append('\n' if nxt == 'n' else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                raise Bad('raw newline in label value')
            else:
                val.append(c)
                i += 1
        labels[name] = ''.join(val)
        if i < len(s) and s[i] == ',':
            i += 1
        elif i < len(s) and s[i] == '}':
            continue
        else:
            raise Bad('expected , or } after label value')


def family_of(name, types):
    """The family a sample name belongs to (histogram/summary suffixes)."""
    if name in types:
        return name
    for suf in SUFFIXES:
        if name.endswith(suf) and name[:-len(suf)] in types:
            return name[:-len(suf)]
    return name


class Checker:
    def __init__(self, args):
        self.args = args
        self.types, self.helps = {}, {}
        self.done = set()      # families whose samples are finished
        self.current = None    # family of the previous sample
        self.series = set()
        self.samples = 0

    def comment(self, line):
        parts = line.split(None, 3)
        if len(parts) < 2 or parts[1] not in ('HELP', 'TYPE'):
            return  # a plain comment
        if len(parts) < 3 or not METRIC.fullmatch(parts[2]):
            raise Bad('bad metric name in %s line' % parts[1])
        name = parts[2]
        if name in self.done or name == self.current:
            raise Bad('%s for %s after its samples' % (parts[1], name))
        if parts[1] == 'HELP':
            if name in self.helps:
                raise Bad('second HELP for %s' % name)
            if len(parts) < 4 or not parts[3].strip():
                raise Bad('empty HELP for %s' % name)
            if re.search(r'\\[^\\n]', parts[3]):
                raise Bad('bad escape in HELP for %s' % name)
            self.helps[name] = parts[3]
        else:
            if name in self.types:
                raise Bad('second TYPE for %s' % name)
            if len(parts) != 4 or parts[3] not in TYPES:
                raise Bad('bad TYPE for %s' % name)
            self.types[name] = parts[3]

    def sample(self, line):
        m = METRIC.match(line)
        if not m:
            raise Bad('bad metric name')
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == '{':
            labels, i = parse_labels(line, i)
        if i >= len(line) or line[i] != ' ':
            raise Bad('expected a space before the value')
        rest = line[i + 1:].split(' ')
        if not 1 <= len(rest) <= 2 or not FLOAT.match(rest[0]):
            raise Bad('bad value %r' % line[i + 1:])
        if len(rest) == 2 and not re.fullmatch(r'-?\d+', rest[1]):
            raise Bad('bad timestamp %r' % rest[1])
        self.check_sample(name, labels, rest[0])

    def check_sample(self, name, labels, value):
        fam = family_of(name, self.types)
        if fam not in self.types:
            raise Bad('sample %s without a TYPE line before it' % name)
        if fam not in self.helps:
            raise Bad('sample %s without a HELP line before it' % name)
        if fam != self.current:
            if fam in self.done:
                raise Bad('family %s is not contiguous' % fam)
            if self.current:
                self.done.add(self.current)
            self.current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in self.series:
            raise Bad('duplicate series %s%s' % (name, labels))
        self.series.add(key)
        if self.types[fam] == 'counter':
            if not name.endswith('_total'):
                raise Bad('counter %s does not end in _total' % name)
            if value.lower().endswith('nan') or float(value) < 0:
                raise Bad('counter %s has value %s' % (name, value))
        if self.args.prefix and not name.startswith(self.args.prefix):
            raise Bad('metric %s lacks the prefix %s' % (name, self.args.prefix))
        if self.args.require_label and self.args.require_label not in labels:
            raise Bad('sample %s lacks the label %s' % (name, self.args.require_label))
        self.samples += 1

    def finish(self):
        for fam in self.types:
            if fam not in self.helps:
                raise Bad('family %s has TYPE but no HELP' % fam)
        if len(self.types) < self.args.min_families:
            raise Bad('only %d families' % len(self.types))
        if not self.samples:
            raise Bad('no samples')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--prefix', default='')
    ap.add_argument('--require-label', default='')
    ap.add_argument('--min-families', type=int, default=1)
    args = ap.parse_args()
    text = sys.stdin.read()
    errors = []
    if not text.endswith('\n'):
        errors.append('input does not end with a newline')
    chk = Checker(args)
    for no, line in enumerate(text.split('\n')[:-1], 1):
        try:
            if not line:
                raise Bad('empty line')
            if line != line.strip(' \t'):
                raise Bad('leading or trailing whitespace')
            if line.startswith('#'):
                chk.comment(line)
            else:
                chk.sample(line)
        except Bad as e:
            errors.append('line %d: %s: %r' % (no, e, line))
    try:
        chk.finish()
    except Bad as e:
        errors.append(str(e))
    for e in errors:
        print('check_prom: ' + e, file=sys.stderr)
    if not errors:
        print('ok: %d families, %d samples' % (len(chk.types), chk.samples))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
