#!/bin/bash
# TSan run of the shim's multi-threaded fault helpers, as plain processes:
#   run_shim.sh BUILD_DIR LIBTSAN CASE
# Both the helpers and libsockmem.so are built with -fsanitize=thread in a
# TSan build directory; libtsan is preloaded first, then the shim. A
# ThreadSanitizer report makes the helper exit 66 (TSAN_OPTIONS exitcode),
# and every report is printed. Cases: members (3 busy members for a few
# seconds, one killed and restarted, then SIGTERM), or a subcommand of
# sockmem-fault-cases.
set -u
build=$1 tsan=$2 case=$3
ns="t-ftsan-$case-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /dev/shm/sockmem-"$ns"' EXIT
export LD_PRELOAD="$tsan:$build/libsockmem.so"
export SOCKMEM_NAMESPACE="$ns" SOCKMEM_GROUP=tsan SOCKMEM_RECONCILE_MS=50
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 exitcode=66} suppressions=$(dirname "$0")/suppressions.txt log_path=$tmp/tsan"
fail=0

check() { # name status
	if [ "$2" -ne 0 ]; then
		echo "FAIL: $1 exited $2$([ "$2" -eq 66 ] && echo ' (ThreadSanitizer report)')"
		fail=1
	fi
}

if [ "$case" = members ]; then
	start() {
		"$build/tests/sockmem-fault-member" "$tmp" "$1" 3 3 2 8000 >"$tmp/out.$1" 2>"$tmp/err.$1" &
		pids[$1]=$!
	}
	declare -a pids
	for i in 0 1 2; do start $i; done
	sleep 3
	kill -9 "${pids[1]}"; wait "${pids[1]}" 2>/dev/null
	start 1
	sleep 3
	for i in 0 1 2; do kill -TERM "${pids[$i]}"; done
	for i in 0 1 2; do
		wait "${pids[$i]}"; st=$?
		cat "$tmp/err.$i"
		check "member $i" $st
	done
else
	arg=
	case $case in
	fork_mt) arg=20 ;; vfork_exec) arg=10 ;; signal_send) arg=2 ;; threads) arg=300 ;;
	exit_busy) arg=50 ;;
	esac
	timeout 240 "$build/tests/sockmem-fault-cases" $case $arg </dev/null >"$tmp/out" 2>"$tmp/err"
	st=$?
	cat "$tmp/err"
	check "$case" $st
fi
# Reports go to files (a helper may close its stderr: closeall).
for f in "$tmp"/tsan.*; do
	[ -e "$f" ] && cat "$f"
done
grep -h 'SUMMARY: ThreadSanitizer' "$tmp"/tsan.* 2>/dev/null | sort | uniq -c
exit $fail
