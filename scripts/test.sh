#!/usr/bin/env bash
# Set up a fresh Debian 12 machine and pass the tests: the default build, then
# the sanitizer build (ASan+UBSan), each with the whole CTest suite; the TSan
# build with its stress tests (label tsan); then a short libFuzzer run of
# every fuzz target (clang, ASan+UBSan).
#
#   FUZZ_SECONDS  seconds per fuzz target (default 20; 0 skips the fuzz stage)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
for cfg in RelWithDebInfo:build Sanitize:build-san; do
  type=${cfg%%:*} dir=${cfg##*:}
  echo "== $type build ($dir)"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" >/dev/null
  cmake --build "$dir" -j "$jobs"
  # One retry for a failed test: a few tests sample the kernel's figures or
  # a helper thread's timing on a shared 2-core machine; a retried failure
  # still prints its output above the summary.
  ctest --test-dir "$dir" --output-on-failure --timeout 300 -j 2 --repeat until-pass:2
done
echo "== TSan build (build-tsan): the stress programs as plain executables"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=TSan >/dev/null
cmake --build build-tsan -j "$jobs"
ctest --test-dir build-tsan -L tsan --output-on-failure --timeout 600 -j 2
fuzz_secs=${FUZZ_SECONDS:-20}
if ((fuzz_secs > 0)); then
  echo "== fuzz: ${fuzz_secs}s per target (build-fuzz)"
  bash tests/fuzz/run.sh "$fuzz_secs"
fi
