#!/bin/bash
# Soak (issue 7; not part of the default CI): PROCS member processes with
# CONNS outgoing loopback connections each (plus the ones they accept), all
# preloaded with libsockmem.so in one group, traffic flowing, while the
# group's limits are changed at random, live, with `sockmemctl set`.
#
# At the end:
#  - every member goes quiet (SIGUSR1: no more sends or reads, sockets and
#    their queued data kept); after a few reconcile ticks the group's `sock`
#    must agree with the kernel's own figures for the members' sockets
#    (ss -tmpin skmem r + w, i.e. SO_MEMINFO rmem_alloc + wmem_queued) within
#    5% or 64 KiB, whichever is larger;
#  - VmRSS of every member did not grow between the end of the warm-up and
#    the end (tolerance --rss-slack KiB, default 512);
#  - after every member exits: usage, sock, sockets and processes exactly 0,
#    no process record, no slot, no busy/steal flag left in the segment.
#
# Usage: scripts/soak.sh [--duration S] [--procs N] [--conns C] [--msg B]
#                        [--pace US] [--buf B] [--build DIR] [--out FILE] [--rss-slack KiB]
# Defaults: 300 s, 32 processes, 50 connections, 4096-byte messages, a
# worker round (one message per connection) every 50 ms, SO_SNDBUF and
# SO_RCVBUF of 16 KiB on every socket (--buf B; bounds what piles up),
# build directory $SOCKMEM_BUILD_DIR or ./build. Exit 0 when every check
# passed. Needs: ss (iproute2), python3.
set -u

duration=300 procs=32 conns=50 msg=4096 out= rss_slack=512 pace=50000 buf=16384
build=${SOCKMEM_BUILD_DIR:-$(dirname "$0")/../build}
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--procs) procs=$2; shift 2 ;;
	--conns) conns=$2; shift 2 ;;
	--msg) msg=$2; shift 2 ;;
	--pace) pace=$2; shift 2 ;;
	--buf) buf=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--rss-slack) rss_slack=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
done
build=$(cd "$build" && pwd) || exit 2
member=$build/tests/sockmem-fault-member
segcheck=$build/tests/sockmem-fault-segcheck
ctl=$build/sockmemctl
for f in "$member" "$segcheck" "$ctl" "$build/libsockmem.so"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "soak.sh: missing $f (build first)" >&2; exit 2; }
done
command -v ss >/dev/null && command -v python3 >/dev/null ||
	{ echo "soak.sh: needs ss and python3" >&2; exit 2; }

ns="soak-$$"
group=soak
tmp=$(mktemp -d /tmp/sockmem-soak.XXXXXX)
declare -a pids
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
	rm -f "/dev/shm/sockmem-$ns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

threads=2
per_thread=$(((conns + threads - 1) / threads))
fail=0
report=()
say() { echo "$*"; report+=("$*"); }
check() { # ok-flag, message
	if [ "$1" = 1 ]; then say "PASS  $2"; else say "FAIL  $2"; fail=1; fi
}

rss_of() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stat_json() { "$ctl" -n "$ns" stat "$group" --json 2>/dev/null; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

# ---- start -----------------------------------------------------------------
t0=$(date +%s)
say "soak: $procs processes x $conns connections ($threads threads x $per_thread), msg $msg B" \
	"every ${pace} us, buffers $buf B, duration ${duration}s, namespace $ns, build $build"
for ((i = 0; i < procs; i++)); do
	LD_PRELOAD="$build/libsockmem.so" SOCKMEM_NAMESPACE="$ns" SOCKMEM_GROUP="$group" \
		FAULT_MEMBER_BUF="$buf" "$member" "$tmp" "$i" "$procs" "$threads" "$per_thread" "$msg" "$pace" \
		>"$tmp/out.$i" 2>"$tmp/err.$i" &
	pids[$i]=$!
done
for ((i = 0; i < procs; i++)); do
	for ((k = 0; k < 200; k++)); do
		grep -q READY "$tmp/out.$i" 2>/dev/null && break
		sleep 0.05
	done
	grep -q READY "$tmp/out.$i" || { say "FAIL  member $i did not start"; exit 1; }
done
warm=$((duration / 5 < 20 ? duration / 5 : 20))
sleep "$warm"
declare -a rss0
for ((i = 0; i < procs; i++)); do rss0[$i]=$(rss_of "${pids[$i]}"); done

# ---- random limits, live -------------------------------------------------------
csv=$tmp/series.csv
echo "t,current,sock,max,events_max,failcnt,sockets,processes,rss_member0_kib,rss_sum_kib" >"$csv"
deadline=$((t0 + duration))
changes=0 peak_sockets=0 peak_current=0
RANDOM=$$
while [ "$(date +%s)" -lt "$deadline" ]; do
	case $((RANDOM % 4)) in
	0) lim="max=max high=max low=0" ;;
	*)
		m=$((4 + RANDOM % 124))
		h=$((m * (50 + RANDOM % 50) / 100))
		l=$((h * (RANDOM % 90) / 100))
		lim="max=${m}M high=${h}M low=${l}M"
		;;
	esac
	# low/high/max must stay ordered at every step: widen first.
	"$ctl" -n "$ns" set "$group" max=max high=max >/dev/null 2>&1
	if "$ctl" -n "$ns" set "$group" $lim >/dev/null 2>"$tmp/set.err"; then
		changes=$((changes + 1))
	else
		say "FAIL  sockmemctl set $group $lim: $(cat "$tmp/set.err")"
		fail=1
	fi
	j=$(stat_json)
	line=$(echo "$j" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(",".join(str(x) for x in (d["current"], d["sock"], d["max"], d["events"]["max"],
                                d["failcnt"], d["sockets"], d["processes"])))')
	rsum=0
	for p in "${pids[@]}"; do rsum=$((rsum + $(rss_of "$p"))); done
	echo "$(($(date +%s) - t0)),$line,$(rss_of "${pids[0]}"),$rsum" >>"$csv"
	cur=${line%%,*}
	[ "$cur" -gt "$peak_current" ] 2>/dev/null && peak_current=$cur
	s=$(echo "$line" | cut -d, -f6)
	[ "$s" -gt "$peak_sockets" ] 2>/dev/null && peak_sockets=$s
	alive=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
	[ "$alive" -eq "$procs" ] || { say "FAIL  only $alive of $procs members alive"; fail=1; break; }
	sleep $((2 + RANDOM % 3))
done
"$ctl" -n "$ns" set "$group" max=max high=max low=0 >/dev/null
say "limits changed live $changes times; peak usage sampled $peak_current B; peak sockets $peak_sockets"
jend=$(stat_json)
say "events: max $(echo "$jend" | field '["events"]["max"]'), failcnt $(echo "$jend" | field '["failcnt"]')," \
	"pressure $(echo "$jend" | field '["events"]["pressure"]'), underflows $(echo "$jend" | field '["underflows"]')"

# ---- quiet: counters against the kernel ------------------------------------
for p in "${pids[@]}"; do kill -USR1 "$p"; done
sleep 2
pidlist=$(IFS=,; echo "${pids[*]}")
cmp_line() {
	ss -tmpin >"$tmp/ss.txt" 2>/dev/null
	sockb=$(stat_json | field '["sock"]')
	python3 - "$tmp/ss.txt" "$pidlist" "$sockb" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
pids = set(sys.argv[2].split(","))
sock = int(sys.argv[3])
# One socket per entry: a line starting with a state, continuation lines
# indented (skmem and tcp_info).
entries, cur = [], ""
for line in text.splitlines()[1:]:
    if line and not line[0].isspace():
        if cur:
            entries.append(cur)
        cur = line
    else:
        cur += " " + line.strip()
if cur:
    entries.append(cur)
kern = n = 0
for e in entries:
    owners = set(re.findall(r"pid=(\d+)", e))
    m = re.search(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f\d+,w(\d+)", e)
    if not m or not owners & pids:
        continue
    n += 1
    kern += int(m.group(1)) + int(m.group(2))
tol = max(kern * 5 // 100, 64 * 1024)
print(f"{n} {kern} {sock} {abs(sock - kern)} {tol} {1 if abs(sock - kern) <= tol else 0}")
PY
}
read -r nsock kern sockb diff tol ok < <(cmp_line)
if [ "$ok" != 1 ]; then # one more reconcile interval and try again
	sleep 1
	read -r nsock kern sockb diff tol ok < <(cmp_line)
fi
check "$ok" "quiet: group sock $sockb B vs kernel (ss skmem r+w over $nsock member sockets) $kern B: |diff| $diff B (tolerance $tol B)"

# ---- memory of each member --------------------------------------------------
maxg=0 maxgi=0 grown=0 sum0=0 sum1=0
for ((i = 0; i < procs; i++)); do
	r1=$(rss_of "${pids[$i]}")
	g=$((r1 - rss0[i]))
	sum0=$((sum0 + rss0[i])) sum1=$((sum1 + r1))
	[ "$g" -gt "$maxg" ] && maxg=$g maxgi=$i
	[ "$g" -gt "$rss_slack" ] && grown=$((grown + 1))
done
check $([ "$grown" -eq 0 ] && echo 1 || echo 0) \
	"VmRSS: mean $((sum0 / procs)) KiB after warm-up, $((sum1 / procs)) KiB at the end; largest growth $maxg KiB (member $maxgi); $grown members grew more than $rss_slack KiB"

# ---- exit: nothing left -----------------------------------------------------
for p in "${pids[@]}"; do kill -TERM "$p"; done
bad=0
for ((i = 0; i < procs; i++)); do
	for ((k = 0; k < 200; k++)); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "${pids[$i]}" 2>/dev/null; then
		kill -KILL "${pids[$i]}"
		bad=$((bad + 1))
	fi
	wait "${pids[$i]}"
	st=$?
	[ "$st" -eq 0 ] || { [ "$bad" -gt 0 ] || say "member $i exited $st: $(tail -3 "$tmp/err.$i")"; bad=$((bad + 1)); }
done
check $([ "$bad" -eq 0 ] && echo 1 || echo 0) "every member exited 0 on SIGTERM ($bad did not)"
seg=$("$segcheck" "$ns" "$group")
say "segment after exit: $seg"
clean=1
for kv in current=0 sock=0 cached=0 sockets=0 processes=0 records=0 slots=0 flags=0 underflows=0; do
	case " $seg " in *" $kv "*) ;; *) clean=0 ;; esac
done
check "$clean" "nothing left in the segment (usage 0, no record, no slot, no flag)"
say "time series: $(($(wc -l <"$csv") - 1)) samples (t, current, sock, max, events.max, failcnt, sockets, processes, VmRSS of member 0 and of all, KiB)"
if [ -n "$out" ]; then
	cp "$csv" "${out%.md}.csv"
	{
		echo "## Soak $(date -u +%Y-%m-%dT%H:%MZ): $([ $fail = 0 ] && echo PASS || echo FAIL)"
		echo
		echo '```'
		printf '%s\n' "${report[@]}"
		echo '```'
		echo
		echo "Samples (every 2-4 s; first 5 and last 5; all in $(basename "${out%.md}.csv")):"
		echo
		echo '```'
		head -6 "$csv"
		echo "..."
		tail -5 "$csv"
		echo '```'
	} >>"$out"
fi
exit $fail
