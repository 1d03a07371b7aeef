#!/usr/bin/env bash
# freeze_test.sh FREEZE-TOOL - the FIFREEZE guard on a real xfs filesystem
# (run under with_fs.sh "xfs tmpfs": AMB_TEST_XFS is frozen, AMB_TEST_TMPFS
# holds this script's own files, which must not be on the frozen one).
#
#  1. the freezer's whole process group is SIGKILLed while frozen: a write
#     that was blocked completes within the deadline + 1 s (in practice at
#     once: the guard sees the freezer's socket close)
#  2. the same with no guard executable (the forked child runs the guard)
#  3. the freezer lives but never thaws: the write completes within
#     deadline + 1 s of the freeze
#  4. a normal thaw returns 0; a thaw after the deadline returns -ETIMEDOUT
#
# Where a check needs the filesystem still frozen (blocked_write) the
# freezer keeps it so for seconds, not a few hundred ms: on a loaded
# machine the test's own process spawns between "frozen" and the check
# can take that long.
#  5. the guard is SIGKILLed: the freezer thaws by itself
#  6. the guard gets SIGTERM: it thaws at once, the freezer is told
#  7. errors: tmpfs cannot be frozen; a second freeze of a frozen filesystem
#
# A write that never completes must not hang the test: every wait has a
# limit, and the EXIT trap thaws the filesystem before anything else.
set -uo pipefail
tool=${1:?usage: freeze_test.sh FREEZE-TOOL}
mnt=${AMB_TEST_XFS:?run under with_fs.sh}
tmp=${AMB_TEST_TMPFS:?run under with_fs.sh}
work=$(mktemp -d "$tmp/freeze.XXXXXX") || exit 1
pids=()

cleanup() {
	local rc=$? p
	fsfreeze -u "$mnt" 2>/dev/null
	for p in "${pids[@]}"; do
		kill -9 -- "-$p" 2>/dev/null
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

fail() {
	echo "FAIL: $*"
	for f in "$work"/*.out; do
		[ -e "$f" ] && { echo "--- $f"; cat "$f"; }
	done
	exit 1
}
now_ms() { date +%s%3N; }

# a second FIFREEZE fails with EBUSY exactly while the filesystem is frozen
is_frozen() {
	if fsfreeze -f "$mnt" 2>/dev/null; then
		fsfreeze -u "$mnt"
		return 1
	fi
	return 0
}

# start_freezer NAME ARGS...: the tool in its own session and process group
# (its pid is the group id); waits for "frozen GUARDPID", sets $guard
start_freezer() {
	local name=$1 end
	shift
	setsid "$tool" "$@" >"$work/$name.out" 2>&1 &
	freezer=$!
	pids+=("$freezer")
	end=$(($(now_ms) + 10000))
	until grep -q '^frozen ' "$work/$name.out" 2>/dev/null; do
		alive "$freezer" || fail "$name: the freezer exited early"
		[ "$(now_ms)" -lt $end ] || fail "$name: no freeze after 10 s"
		sleep 0.02
	done
	t_frozen=$(now_ms)
	[ "$(ps -o pgid= "$freezer" | tr -d ' ')" = "$freezer" ] ||
		fail "$name: the freezer does not lead its own process group"
	guard=$(awk '/^frozen / { print $2; exit }' "$work/$name.out")
}

# start_write NAME: a write to the frozen filesystem in the background; it
# creates $work/NAME.done (on tmpfs) once it got through
start_write() {
	(echo data >"$mnt/$1" && touch "$work/$1.done") &
	pids+=("$!")
}

# wait_write NAME LIMIT_MS: until the write got through (0) or the limit (1)
wait_write() {
	local end=$(($(now_ms) + $2))
	while [ ! -e "$work/$1.done" ]; do
		[ "$(now_ms)" -lt $end ] || return 1
		sleep 0.02
	done
	return 0
}

# wait_gone PID LIMIT_MS: the process exited (a zombie counts: once its
# parent is dead, reaping it is up to init, which may take its time)
alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in Z*) return 1 ;; esac
	return 0
}
wait_gone() {
	local end=$(($(now_ms) + $2))
	while alive "$1"; do
		[ "$(now_ms)" -lt $end ] || return 1
		sleep 0.02
	done
	return 0
}

# blocked_write NAME: a write that must still be blocked 200 ms later (the
# caller makes sure the filesystem stays frozen well beyond that)
blocked_write() {
	start_write "$1"
	sleep 0.2
	[ -e "$work/$1.done" ] && fail "$1: a write went through while frozen"
}

# ---- 1. SIGKILL of the freezer's process group ----
deadline=3000
start_freezer kill hold "$mnt" $deadline
[ "$(ps -o comm= -p "$guard")" = amber-thaw-guar ] ||
	fail "kill: the guard is not amber-thaw-guard"
is_frozen || fail "kill: not frozen after the freezer said so"
blocked_write w1
t0=$(now_ms)
kill -9 -- "-$freezer"
limit=$((deadline + 1000))
wait_write w1 $limit || fail "kill: the write is still blocked $limit ms after SIGKILL"
echo "1. freezer SIGKILLed: write completed after $(($(now_ms) - t0)) ms (limit $limit)"
wait_gone "$guard" 10000 || fail "kill: the guard $guard did not exit"
grep -q 'freezer went away: thawed' "$work/kill.out" || fail "kill: no guard log line"
is_frozen && fail "kill: still frozen"

# ---- 2. no guard executable: the forked child is the guard ----
AMBER_THAW_GUARD=/nonexistent/amber-thaw-guard start_freezer inproc hold "$mnt" $deadline
[ "$(ps -o comm= -p "$guard")" = amber-prov-free ] ||
	fail "inproc: the guard is not the forked child"
is_frozen || fail "inproc: not frozen"
blocked_write w2
t0=$(now_ms)
kill -9 -- "-$freezer"
wait_write w2 $((deadline + 1000)) || fail "inproc: the write is still blocked after SIGKILL"
echo "2. in-process guard: write completed after $(($(now_ms) - t0)) ms"
wait_gone "$guard" 10000 || fail "inproc: the guard did not exit"

# ---- 3. the freezer never thaws: the deadline does ----
# (deadline + 1 s is the documented bound, docs/providers.md; the deadline
# is long enough that the write really is blocked first)
deadline=3000
start_freezer stuck hold "$mnt" $deadline
blocked_write w3
limit=$((deadline + 1000))
wait_write w3 $((t_frozen + limit - $(now_ms))) ||
	fail "deadline: the write is still blocked $limit ms after the freeze"
echo "3. deadline ${deadline} ms: write completed $(($(now_ms) - t_frozen)) ms after the freeze"
grep -q 'freeze deadline passed: thawed' "$work/stuck.out" || fail "deadline: no guard log line"
kill -9 -- "-$freezer"

# ---- 4. normal thaw, and a thaw after the deadline ----
start_freezer normal thaw-after "$mnt" 20000 3000
blocked_write w4
wait "$freezer"
rc=$?
[ $rc = 0 ] || fail "normal: the freezer exited with $rc"
grep -q '^thaw 0 ok' "$work/normal.out" || fail "normal: thaw did not return 0"
wait_write w4 10000 || fail "normal: the write is still blocked after the thaw"
wait_gone "$guard" 10000 || fail "normal: the guard did not exit"
start_freezer late thaw-after "$mnt" 300 800
wait "$freezer"
rc=$?
[ $rc = 3 ] || fail "late: want exit 3 (-ETIMEDOUT), got $rc"
grep -q 'deadline (300 ms) passed' "$work/late.out" || fail "late: message"
echo "4. thaw in time: 0; thaw after the deadline: -ETIMEDOUT"

# ---- 5. the guard is killed: the freezer thaws by itself ----
start_freezer noguard thaw-after "$mnt" 20000 3000
kill -9 "$guard"
blocked_write w5
wait "$freezer"
rc=$?
[ $rc = 0 ] || fail "noguard: the freezer exited with $rc"
wait_write w5 10000 || fail "noguard: the write is still blocked after the thaw"
echo "5. guard SIGKILLed: the freezer thawed by itself"

# ---- 6. SIGTERM to the guard: thawed at once, the freezer is told ----
# (the freezer's own thaw comes 5 s after the freeze; its exit 3 shows that
# the guard had thawed before it asked)
start_freezer term thaw-after "$mnt" 20000 5000
blocked_write w6
t0=$(now_ms)
kill -TERM "$guard"
wait_write w6 3000 || fail "term: the write is still blocked 3 s after SIGTERM to the guard"
echo "6. guard SIGTERMed: write completed after $(($(now_ms) - t0)) ms"
wait "$freezer"
rc=$?
[ $rc = 3 ] || fail "term: want exit 3 (-ETIMEDOUT), got $rc"

# ---- 7. errors ----
"$tool" try "$tmp" 1000 >"$work/tmpfs.out" 2>&1 && fail "tmpfs: froze"
grep -q 'cannot be frozen' "$work/tmpfs.out" || fail "tmpfs: message"
"$tool" try "$mnt/nonexistent" 1000 >"$work/enoent.out" 2>&1 && fail "enoent: froze"
grep -q "error -2 " "$work/enoent.out" || fail "enoent: want -ENOENT"
start_freezer first hold "$mnt" 20000
"$tool" try "$mnt" 1000 >"$work/second.out" 2>&1 && fail "second: froze twice"
grep -q 'already frozen' "$work/second.out" || fail "second: message"
kill -9 -- "-$freezer"
wait_gone "$guard" 10000 || fail "second: the first guard did not exit"
is_frozen && fail "second: still frozen at the end"
echo "7. errors: tmpfs cannot be frozen, missing path, already frozen"
echo "PASS"
