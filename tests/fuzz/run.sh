#!/usr/bin/env bash
# Build the libFuzzer targets with clang and fuzz each for SECONDS (default 30).
#
#   tests/fuzz/run.sh [SECONDS]
#
# Environment:
#   FUZZ_BUILD_DIR  build directory (default: <repo>/build-fuzz)
#   FUZZ_TARGETS    targets to run (default: "config names segment segment_mut")
#   FUZZ_NO_BUILD=1 skip configure/build (the binaries already exist)
#   FUZZ_ARGS       extra libFuzzer flags (e.g. "-jobs=2 -workers=2")
#
# The seed corpus in tests/fuzz/corpus/<target> is read, never written; new
# inputs go to $FUZZ_BUILD_DIR/fuzz/work/<target>, crash reproducers and logs
# to $FUZZ_BUILD_DIR/fuzz/artifacts/<target>/ and $FUZZ_BUILD_DIR/fuzz/<target>.log.
# Prints one summary line per target; exits 1 if any target crashed (or
# failed to run), 0 otherwise.
set -uo pipefail

secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-config names segment segment_mut}
cc=${CC_FUZZ:-$(command -v clang || command -v clang-14)}

if [[ -z "$cc" ]]; then
  echo "run.sh: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
if [[ "${FUZZ_NO_BUILD:-0}" != 1 ]]; then
  mkdir -p "$build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER="$cc" -DSOCKMEM_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/fuzz-configure.log" 2>&1 ||
    { cat "$build/fuzz-configure.log" >&2; exit 2; }
  cmake --build "$build" --target $(printf 'fuzz_%s ' $targets) || exit 2
fi

# Per-target libFuzzer options: input size bound and dictionary.
opts_for() {
  case $1 in
  config) echo "-max_len=4096 -dict=$here/config.dict" ;;
  names) echo "-max_len=512 -dict=$here/names.dict" ;;
  segment) echo "-max_len=8192 -use_value_profile=1" ;;
  segment_mut) echo "-max_len=2400 -use_value_profile=1" ;;
  esac
}

# Stack traces for UBSan findings; abort on the first one.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $targets; do
  bin=$build/fuzz/fuzz_$t
  work=$build/fuzz/work/$t
  art=$build/fuzz/artifacts/$t
  log=$build/fuzz/$t.log
  mkdir -p "$work" "$art"
  start=$SECONDS
  touch "$art/.start" # only this run's reproducers count
  # shellcheck disable=SC2046
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" $(opts_for "$t") ${FUZZ_ARGS:-} \
    "$work" "$here/corpus/$t" >"$log" 2>&1
  rc=$?
  took=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "$art" -type f -newer "$art/.start" \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  verdict=ok
  if [[ $rc -ne 0 || $crashes -ne 0 ]]; then
    why=$(grep -m1 -E 'fuzz property violated|runtime error|SUMMARY:' "$log" | sed 's/^.*\(fuzz property\)/\1/')
    verdict="FAILED (exit $rc: ${why:-see the log}; log $log)"
    status=1
  fi
  echo "fuzz_$t: ${took}s, ${execs:-?} execs (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, crashes $crashes: $verdict"
done
exit $status
