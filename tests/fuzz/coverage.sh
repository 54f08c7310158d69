#!/usr/bin/env bash
# Source-level coverage of lib/ reached by the fuzz corpora.
#
#   tests/fuzz/coverage.sh [CORPUS_ROOT...]
#
# Builds the replay drivers with clang's source-based coverage into
# $FUZZ_COV_DIR (default <repo>/build-fuzz-cov), replays each target's seed
# corpus plus <CORPUS_ROOT>/<target> for every CORPUS_ROOT given (e.g. the
# work corpora a run.sh run left in build-fuzz/fuzz/work), and prints
# llvm-cov's per-file report for lib/. Needs clang and llvm (llvm-cov,
# llvm-profdata; Debian's clang package pulls them in).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${FUZZ_COV_DIR:-$root/build-fuzz-cov}
cc=$(command -v clang || command -v clang-14)
profdata=$(command -v llvm-profdata || command -v llvm-profdata-14)
cov=$(command -v llvm-cov || command -v llvm-cov-14)
flags=(-O1 -g -std=gnu11 -D_GNU_SOURCE -I"$root/include" -I"$root/lib"
  -fprofile-instr-generate -fcoverage-mapping)
mkdir -p "$out/obj" "$out/prof"
rm -f "$out"/prof/*.profraw

for f in "$root"/lib/*.c; do
  # See clang_compat.h: lib/internal.h's sm_log_once needs it under clang.
  "$cc" "${flags[@]}" -include "$here/clang_compat.h" -c "$f" -o "$out/obj/$(basename "$f" .c).o"
done
bins=()
for t in config names segment segment_mut; do
  extra=()
  [[ $t == segment* ]] && extra=("$here/segfuzz.c")
  "$cc" "${flags[@]}" "$here/fuzz_$t.c" "$here/replay.c" "$here/util.c" "${extra[@]}" \
    "$out"/obj/*.o -lpthread -ldl -lrt -o "$out/replay_$t"
  dirs=("$here/corpus/$t")
  for r in "$@"; do [[ -d $r/$t ]] && dirs+=("$r/$t"); done
  LLVM_PROFILE_FILE="$out/prof/$t.profraw" SOCKMEM_FUZZ_KNOWN=${SOCKMEM_FUZZ_KNOWN:-all} \
    "$out/replay_$t" "${dirs[@]}" >/dev/null
  bins+=(-object "$out/replay_$t")
done
"$profdata" merge -sparse "$out"/prof/*.profraw -o "$out/all.profdata"
"$cov" report "${bins[@]:1}" -instr-profile="$out/all.profdata" "$root"/lib/*.c
