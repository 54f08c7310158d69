#!/bin/bash
# valgrind memcheck of the fault helpers with libsockmem.so preloaded into
# the guest (valgrind passes LD_PRELOAD on to the program it runs, behind its
# own preloads). Any memcheck error or definite/indirect leak fails the run;
# at the end the group must be back to 0.
#   valgrind.sh BUILD_DIR
set -u
build=$1
ns="t-fvg-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /dev/shm/sockmem-"$ns"' EXIT
fail=0

vg() { # name, then the command
	local name=$1
	shift
	LD_PRELOAD="$build/libsockmem.so" SOCKMEM_NAMESPACE="$ns" SOCKMEM_GROUP=vg \
		SOCKMEM_RECONCILE_MS=50 timeout 120 valgrind -q --error-exitcode=99 \
		--leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --track-fds=no \
		--log-file="$tmp/vg.$name.%p" "$@" </dev/null >"$tmp/out.$name" 2>&1
	local st=$?
	if [ $st -ne 0 ]; then
		echo "FAIL: $name: exit $st"
		cat "$tmp"/vg."$name".* "$tmp/out.$name" 2>/dev/null | head -80
		fail=1
	else
		echo "ok: $name"
	fi
}

cases="$build/tests/sockmem-fault-cases"
vg traffic "$cases" traffic
vg threads "$cases" threads 100
vg fork_mt "$cases" fork_mt 5
vg vfork_exec "$cases" vfork_exec 3
# Not signal_send: a 20 kHz timer under valgrind's serialised signal
# delivery does not finish in any useful time.
vg ctor "$cases" ctor
vg highfd "$cases" highfd
# A member with traffic against a second (unpreloaded-by-valgrind) member.
"$build/tests/sockmem-fault-member" "$tmp" 1 2 2 2 4000 >/dev/null 2>&1 &
peer=$!
LD_PRELOAD="$build/libsockmem.so" SOCKMEM_NAMESPACE="$ns" SOCKMEM_GROUP=vg \
	timeout 60 valgrind -q --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
	--log-file="$tmp/vg.member.%p" "$build/tests/sockmem-fault-member" "$tmp" 0 2 2 2 4000 \
	>/dev/null 2>&1 &
vgpid=$!
sleep 4
kill -TERM $vgpid 2>/dev/null
wait $vgpid
st=$?
kill -TERM $peer
wait $peer
if [ $st -ne 0 ]; then
	echo "FAIL: member: exit $st"
	cat "$tmp"/vg.member.* | head -80
	fail=1
else
	echo "ok: member"
fi

usage=$("$build/sockmemctl" -n "$ns" stat vg --json 2>/dev/null |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["current"])' 2>/dev/null)
echo "group vg current after all: ${usage:-?}"
[ "$usage" = 0 ] || fail=1
exit $fail
