#!/usr/bin/env bash
# The README's option table must be exactly what the option table prints
# (tests/preload/print_options.c); on a difference, show it and how to fix.
set -euo pipefail
printer=$1 readme=$2
want=$("$printer")
have=$(grep -E '^\| `?SOCKMEM_|^\| (name|variable|---)' "$readme" || true)
want_rows=$(grep -E '^\| `?SOCKMEM_' <<<"$want")
have_rows=$(grep -E '^\| `?SOCKMEM_' <<<"$have")
if [[ "$want_rows" != "$have_rows" ]]; then
  echo "README.md's option table differs from lib/config.c (regenerate it with $printer):"
  diff <(echo "$have_rows") <(echo "$want_rows") || true
  exit 1
fi
echo "README.md option table: $(wc -l <<<"$want_rows") options, as lib/config.c prints them"
