#!/usr/bin/env bash
# The first command of the README: on a fresh Debian 12 machine, install the
# dependencies, build sockmem, and show it holding a real workload to a limit
# the workload would otherwise blow through.
#
# The workload is the bundled load generator: 16 TCP streams on loopback whose
# receivers read 4 MiB/s each, so data piles up in the kernel's socket queues.
#  1. Without sockmem: the kernel's peak for its sockets (sampled from outside
#     with ss, scripts/kernel-skmem.py).
#  2. The same workload in the group "demo" (max 8M, high 6M, low 4M): the
#     kernel's peak sampled the same way, what the group held (sockmemctl
#     stat), the group's sock next to the kernel's figure for the same sockets
#     at the same moments, failcnt, pressure, clamped buffers, reclaim, and a
#     plot of usage over time (sockmemctl record + plot).
# Exits 0 when the limit held and the figures agree; otherwise 1 with one line.
#
#   bash scripts/demo.sh [--max SIZE] [--high SIZE] [--low SIZE] [--duration SEC]
#                        [--build-dir DIR]
# Environment: SOCKMEM_BUILD_DIR (default build); the output goes to DIR/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
max=8M high=6M low=4M duration=8 conns=16 rate=4M base_s=3
build=${SOCKMEM_BUILD_DIR:-build}
while (($#)); do
  case $1 in
    --max) max=$2; shift 2 ;;
    --high) high=$2; shift 2 ;;
    --low) low=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ $duration =~ ^[0-9]+$ ]] && ((duration >= 5)) ||
  { echo "demo.sh: --duration must be a whole number of seconds, at least 5" >&2; exit 2; }

mkdir -p "$build/demo"
B=$(cd "$build" && pwd) out=$(cd "$build/demo" && pwd)
log=$out/demo.log
: >"$log"
tty=false; [ -t 1 ] && tty=true
export SOCKMEM_NAMESPACE="demo-$$-$RANDOM"
group=demo
step="starting"
pids=()

fail() { # one clear line, then exit 1
  $tty && printf '\r\033[K' >&2
  echo "demo.sh: FAILED: $*" >&2
  step=done
  exit 1
}
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "/dev/shm/sockmem-$SOCKMEM_NAMESPACE"
  if ((rc != 0)) && [ "$step" != done ]; then
    $tty && printf '\r\033[K' >&2
    echo "demo.sh: FAILED while $step (exit $rc); details in $log" >&2
  fi
}
trap cleanup EXIT
trap '$tty && printf "\r\033[K" >&2; echo "demo.sh: interrupted while $step" >&2; step=done; exit 130' INT TERM

# Progress on a terminal: a countdown while a run lasts; nothing otherwise.
show_left() { # show_left LABEL END (END: a $SECONDS value)
  local left=$(($2 - SECONDS))
  ((left < 0)) && left=0
  printf '\r\033[K   %s: %ds left' "$1" "$left"
}
sleep_progress() { # sleep_progress SECONDS LABEL END
  local until=$((SECONDS + $1))
  if $tty; then
    while ((SECONDS < until)); do show_left "$2" "$3"; sleep 0.5; done
    printf '\r\033[K'
  else
    sleep "$1"
  fi
}
wait_progress() { # wait_progress PID LABEL END
  if $tty; then
    while kill -0 "$1" 2>/dev/null; do show_left "$2" "$3"; sleep 0.5; done
    printf '\r\033[K'
  fi
  wait "$1"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ctl() { "$B/sockmemctl" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$@"; }

echo "== 1/5 dependencies (scripts/deps.sh)"
step="installing the dependencies (scripts/deps.sh)"
bash scripts/deps.sh

echo "== 2/5 building into $build/"
step="configuring the build (cmake -S . -B $build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >>"$log" 2>&1
step="building (cmake --build $build)"
if $tty; then
  cmake --build "$build" -j "$(nproc)" --target sockmem_shim sockmemctl sockmem-bench 2>&1 |
    tee -a "$log" | while IFS= read -r l; do
      if [[ $l =~ ^\[([0-9]+/[0-9]+)\] ]]; then printf '\r\033[K   building %s' "${BASH_REMATCH[1]}"; fi
    done
  printf '\r\033[K'
else
  cmake --build "$build" -j "$(nproc)" --target sockmem_shim sockmemctl sockmem-bench >>"$log" 2>&1
fi

bench=("$B/sockmem-bench" stream -c "$conns" -t 2 --slow-reader "$rate" --json)
echo "== 3/5 the workload without sockmem: sockmem-bench stream, $conns connections," \
  "receivers read $rate/s each, ${base_s}s"
step="running the workload without sockmem"
python3 scripts/kernel-skmem.py watch --interval 50 --out "$out/kernel-unlimited.csv" \
  --summary "$out/kernel-unlimited.json" -- "${bench[@]}" -d "$base_s" \
  >"$out/bench-unlimited.json" 2>>"$log" &
bpid=$!; pids+=("$bpid")
wait_progress "$bpid" "without sockmem" $((SECONDS + base_s + 1)) || fail "the workload without sockmem failed (see $log)"
pids=()
u_peak=$(json "$out/kernel-unlimited.json" peak_bytes)
echo "   kernel peak (ss): $(mib "$u_peak") over $(json "$out/kernel-unlimited.json" peak_sockets) sockets"

echo "== 4/5 the same workload in group '$group' (max=$max high=$high low=$low), ${duration}s"
step="setting up the group"
ctl set "$group" "max=$max" "high=$high" "low=$low" >>"$log" 2>&1 ||
  fail "setting up the group: $(tail -n 1 "$log")"
t0=$(date +%s.%N)
"$B/sockmemctl" record "$group" --interval 50 --out "$out/usage.csv" --duration $((duration + 4)) >>"$log" 2>&1 &
rpid=$!; pids+=("$rpid")
step="running the workload in the group"
python3 scripts/kernel-skmem.py watch --interval 50 --out "$out/kernel-limited.csv" \
  --t0 "$t0" --summary "$out/kernel-limited.json" -- \
  "$B/sockmemctl" run -g "$group" -- "${bench[@]}" -d "$duration" >"$out/bench.json" 2>>"$log" &
bpid=$!; pids+=("$bpid")
end=$((SECONDS + duration + 1))
# Mid-run: the group's sock and the kernel's figure for the group's pids, read
# back to back (group, kernel, group) a few times.
sleep_progress 4 "in the group" "$end"
$tty && printf '   in the group: comparing the group with the kernel\r' || true
step="comparing the group with the kernel mid-run"
ctl stat "$group" >"$out/stat-midrun.txt"
python3 scripts/kernel-skmem.py compare --ctl "$B/sockmemctl" "$group" --samples 5 \
  >"$out/compare.json" 2>>"$log" || fail "the group had no live processes to compare mid-run"
step="running the workload in the group"
wait_progress "$bpid" "in the group" "$end" || fail "the workload in the group failed (see $log)"
wait "$rpid" || fail "sockmemctl record failed (see $log)"
pids=()
ctl stat "$group" --json >"$out/stat.json"

echo "   what the group held mid-run (sockmemctl stat $group):"
sed 's/^/     /' "$out/stat-midrun.txt"

echo "== 5/5 results"
step="reporting"
python3 - "$out" <<'PY' || fail "$(tail -n 1 "$out/verdict.txt" 2>/dev/null || echo "the report failed")"
import csv, json, os, sys
out = sys.argv[1]
ld = lambda n: json.load(open(os.path.join(out, n)))
ku, kl = ld("kernel-unlimited.json"), ld("kernel-limited.json")
bu, bl = ld("bench-unlimited.json")["results"], ld("bench.json")["results"]
st, cmp_ = ld("stat.json"), ld("compare.json")
mx = st["max"]
mib = lambda b: f"{b / 1048576:.1f} MiB"
kib = lambda b: f"{b / 1024:.0f} KiB" if b < 1 << 20 else mib(b)
# The kernel's peak: the larger of ss from outside and the workload's own
# SO_MEMINFO samples (both every 50 ms; either may miss a moment).
pu = max(ku["peak_bytes"], bu["kmem_peak_bytes"])
pl = max(kl["peak_bytes"], bl["kmem_peak_bytes"])

print("   the kernel's peak for the workload's sockets (wmem_queued + rmem_alloc):")
print(f"     without sockmem : {mib(pu):>9}   (ss from outside {mib(ku['peak_bytes'])},"
      f" the workload's SO_MEMINFO {mib(bu['kmem_peak_bytes'])})")
print(f"     in the group    : {mib(pl):>9}   (ss from outside {mib(kl['peak_bytes'])},"
      f" the workload's SO_MEMINFO {mib(bl['kmem_peak_bytes'])}); max {mib(mx)}")
print(f"   received per connection: {bu['rx_mib_per_s_per_conn']:.2f} MiB/s without,"
      f" {bl['rx_mib_per_s_per_conn']:.2f} MiB/s in the group (the readers' pace either way)")

print("   the group's sock next to the kernel's figure (ss) for the same sockets, read back to back:")
print("          group        ss     group   sockets (ss / group)")
for i, r in enumerate(cmp_["samples"], 1):
    print(f"     {i}: {mib(r['group_before']):>9} {mib(r['kernel']):>9} {mib(r['group_after']):>9}"
          f"   {r['sockets']} / {r['group_sockets']}")
# The kernel's figure moves between the two group readings, and the group
# is reconciled with the kernel every 100 ms tick: the nearer reading is the
# comparison.
diffs = sorted(min(abs(r["kernel"] - r["group_before"]), abs(r["kernel"] - r["group_after"]))
               / max(r["kernel"], 1) for r in cmp_["samples"])
med = diffs[len(diffs) // 2]
g_all = [r[k] for r in cmp_["samples"] for k in ("group_before", "group_after")]
k_all = [r["kernel"] for r in cmp_["samples"]]
bias = (sum(g_all) / len(g_all)) / max(sum(k_all) / len(k_all), 1) - 1
print(f"     median difference (nearer group reading): {100 * med:.1f}% of the kernel's figure;"
      f" all group readings on average {100 * abs(bias):.1f}% {'below' if bias < 0 else 'above'} it")

e, rc = st["events"], st["reclaim"]
# usage.csv and kernel-limited.csv share a clock (the recording's start);
# the workload started at the sampler's first sample.
rows = list(csv.DictReader(open(os.path.join(out, "usage.csv"))))
t_run = float(next(csv.DictReader(open(os.path.join(out, "kernel-limited.csv"))))["time_s"])
t_peak = next((float(r["time_s"]) - t_run for r in rows if int(r["peak"]) == st["peak"]), None)
later = [int(r["sock"]) for r in rows if t_peak is not None and float(r["time_s"]) - t_run >= 1]
print(f"   group '{st['group']}' (sockmemctl stat, after the run): max {mib(mx)}, peak {mib(st['peak'])}"
      + (f" {t_peak:.2f} s into the run" if t_peak is not None else "")
      + (f"; at most {mib(max(later))} after the first second" if later else ""))
print(f"     failcnt {st['failcnt']}; events: max {e['max']}, high {e['high']},"
      f" pressure {e['pressure']}, low {e['low']}, throttled {e['throttled']}")
print(f"     reclaim: {rc['passes']} passes, {mib(rc['drained'])} of idle caches drained,"
      f" {mib(rc['reconciled'])} released by reconciling, {rc['clamped']} sockets clamped")
print(f"   largest buffers the kernel gave a socket (ss tb/rb): send {kib(ku['sndbuf_max'])},"
      f" receive {kib(ku['rcvbuf_max'])} without sockmem;")
print(f"     send {kib(kl['sndbuf_max'])}, receive {kib(kl['rcvbuf_max'])} in the group"
      " (sockmem's per-socket budget share; held where they are under pressure)")

problems = []
if pu < 2 * mx:
    problems.append(f"the workload did not blow through max without sockmem "
                    f"(kernel peak {mib(pu)} < 2 x {mib(mx)}): nothing to show")
# The kernel holds the limit up to its slack (a segment or so per queue).
slack = mx // 4
if pl > mx + slack:
    problems.append(f"the kernel held {mib(pl)} in the group, over max {mib(mx)} + {mib(slack)}")
if len(cmp_["samples"]) < 3:
    problems.append("fewer than 3 comparisons of the group with the kernel were taken")
elif med > 0.15:
    problems.append(f"the group's sock and the kernel's figure differ by {100 * med:.0f}%"
                    " (median over the samples)")
with open(os.path.join(out, "verdict.txt"), "w") as f:
    for p in problems:
        print(p, file=f)
if problems:
    sys.exit(1)
print(f"   => the limit held: the kernel peaked at {mib(pl)} in the group against {mib(pu)} without"
      f" ({pu / max(pl, 1):.1f}x less), and the group's figure matched the kernel's")
PY

step="drawing the plot (sockmemctl plot)"
ctl plot "$out/usage.csv" --out "$out/usage.png" \
  --title "sockmem demo: $conns slow-reader streams in group $group (max=$max high=$high low=$low)" \
  >>"$log" 2>&1
echo "   plot of the group's usage over time: $out/usage.png"
step="drawing the kernel plot (gnuplot)"
off=$(awk -F, 'NR == 2 { print $1 }' "$out/kernel-limited.csv")
gnuplot >>"$log" 2>&1 <<GP
set terminal pngcairo size 1100,550 font ",10"
set output "$out/kernel.png"
set title "sockmem demo: the kernel's figure for the workload's sockets (ss), without sockmem and in group $group"
set datafile separator ","
set xlabel "time since the workload started (s)"
set xrange [0:*]
set ylabel "socket memory (MiB)"
set key outside right top
set grid
set yrange [0:*]
plot "$out/kernel-unlimited.csv" skip 1 using 1:(\$2/1048576) with lines lw 2 lc rgb "#808080" title "kernel, without sockmem", \\
     "$out/kernel-limited.csv" skip 1 using (\$1-$off):(\$2/1048576) with lines lw 2 lc rgb "#1f4e99" title "kernel, in the group", \\
     "$out/usage.csv" skip 1 using (\$1-$off):(\$3/1048576) with lines dt 2 lc rgb "#2a9d3a" title "group sock (sockmemctl record)", \\
     $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max"] / 1048576)' "$out/stat.json") with lines lw 2 lc rgb "#d62728" title "max"
GP
echo "   plot of the kernel's figure with and without sockmem: $out/kernel.png"
echo "   data: $out/{usage.csv,kernel-limited.csv,kernel-unlimited.csv,stat.json,compare.json}"
step=done
