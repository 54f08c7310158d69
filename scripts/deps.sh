#!/usr/bin/env bash
# Install everything sockmem needs to build, test, benchmark and demo on Debian 12.
# Each package and why: README.md, "Dependencies".
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config          # toolchain
  liburcu-dev libunwind-dev libjemalloc-dev             # core/shim/bench dependencies
  libcriterion-dev                                      # unit tests
  iproute2 iperf3 socat curl python3 tmux jq            # integration tests (ss, real programs, tty)
  gnuplot-nox                                           # sockmemctl plot, bench plots
  trickle                                               # interposition-cost peer in bench/compare
  clang libclang-rt-14-dev                              # fuzz targets (libFuzzer)
  clang-format                                          # style.clang_format test
  valgrind                                              # memcheck of the fault helpers
  linux-perf                                            # bench/profile.py (the shim's share of CPU)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
