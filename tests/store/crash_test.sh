#!/usr/bin/env bash
# crash_test.sh AMBER-STORE AMBER-ORACLE-CHECK
#
# The crash test (design.md sections 6 and 7): run `amber-store serve --load 0
# --oracle` on an instance, kill -9 it at a random moment, then `amber-store
# dump` (which recovers the instance) must satisfy `amber-oracle-check`:
# every acknowledged transaction present, no other one half-applied, nothing
# else.  The oracle accumulates over the rounds of one instance (each round
# recovers the state the previous one left); a fresh instance is created
# every CRASH_FRESH_EVERY rounds.  Every 10 rounds every database is also
# verified with `amber-store check`.
#
# Environment:
#   CRASH_ROUNDS       rounds (default 100)
#   CRASH_FRESH_EVERY  rounds per instance (default 25)
#   CRASH_SEED         seed of the round parameters (default: random)
#   CRASH_CREATE_ARGS  extra arguments for `amber-store create`
#   CRASH_KEEP=1       keep the temporary directory even on success
#   TMPDIR             where the temporary directory goes (default /tmp)
#
# Exit 0 when every round passed; 1 at the first failure, keeping the
# temporary directory (its path is printed); 2 bad usage.
set -u

STORE=${1:-}
CHECK=${2:-}
if [ -z "$STORE" ] || [ -z "$CHECK" ] || [ ! -x "$STORE" ] || [ ! -x "$CHECK" ]; then
	echo "usage: crash_test.sh PATH-TO-amber-store PATH-TO-amber-oracle-check" >&2
	exit 2
fi
ROUNDS=${CRASH_ROUNDS:-100}
FRESH_EVERY=${CRASH_FRESH_EVERY:-25}
SEED=${CRASH_SEED:-$(( (RANDOM << 15) | RANDOM ))}
STEP_TIMEOUT=${CRASH_STEP_TIMEOUT:-180}
read -r -a CREATE_ARGS <<<"${CRASH_CREATE_ARGS:-}"
RANDOM=$SEED

T=$(mktemp -d "${TMPDIR:-/tmp}/amber-crash.XXXXXX") || exit 1
serve_pid=
keep=1

cleanup() {
	if [ -n "$serve_pid" ]; then
		kill -9 "$serve_pid" 2>/dev/null
		wait "$serve_pid" 2>/dev/null
		serve_pid=
	fi
	if [ "$keep" = 1 ]; then
		echo "crash test: kept $T for debugging"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'echo "crash test: interrupted"; keep=${CRASH_KEEP:-0}; exit 130' INT TERM HUP

passed=0
failed=0
round=0

fail() {
	failed=$((failed + 1))
	echo "round $round: FAILED: $*"
	echo "crash test: $passed rounds passed, $failed failed (seed $SEED; rerun with CRASH_SEED=$SEED)"
	echo "crash test: instance $D, oracle $O"
	exit 1
}

# show a file indented (for failure reports), at most 40 lines
show() {
	[ -s "$1" ] && sed -n '1,40s/^/    /p' "$1"
}

# run a command with a time limit if timeout(1) is there
limited() {
	if command -v timeout >/dev/null 2>&1; then
		timeout -k 5 "$STEP_TIMEOUT" "$@"
	else
		"$@"
	fi
}

new_instance() {
	local n=$1
	[ -n "${D:-}" ] && [ "${CRASH_KEEP:-0}" != 1 ] && rm -rf "$D" "$O"
	D=$T/inst$n
	O=$T/oracle$n
	if ! "$STORE" create "$D" "${CREATE_ARGS[@]}" >"$T/create.out" 2>&1; then
		show "$T/create.out"
		fail "amber-store create $D ${CREATE_ARGS[*]} failed"
	fi
	: >"$O"
}

echo "crash test: $ROUNDS rounds, a fresh instance every $FRESH_EVERY, seed $SEED, in $T"
D=
O=
total_start=$SECONDS
for ((round = 1; round <= ROUNDS; round++)); do
	if (((round - 1) % FRESH_EVERY == 0)); then
		new_instance $(((round - 1) / FRESH_EVERY))
	fi
	threads=$((1 + RANDOM % 8))
	ms=$((50 + RANDOM % 951))
	delay=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))

	"$STORE" serve "$D" --load 0 --oracle "$O" --quiet --threads "$threads" \
		>"$T/serve.out" 2>&1 &
	serve_pid=$!
	sleep "$delay"
	if ! kill -0 "$serve_pid" 2>/dev/null; then
		wait "$serve_pid"
		rc=$?
		serve_pid=
		show "$T/serve.out"
		fail "serve exited by itself (status $rc) before the kill"
	fi
	kill -9 "$serve_pid" 2>/dev/null
	wait "$serve_pid" 2>/dev/null # (no "Killed" job notice)
	rc=$?
	serve_pid=
	if [ "$rc" -ne 137 ]; then
		show "$T/serve.out"
		fail "serve ended with status $rc, not by the kill"
	fi

	limited "$STORE" dump "$D" >"$T/dump" 2>"$T/dump.err"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		show "$T/dump.err"
		fail "amber-store dump $D: exit $rc"
	fi

	limited "$CHECK" "$O" "$T/dump" >"$T/check.out" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		show "$T/check.out"
		cp "$T/dump" "$T/dump.failed"
		fail "oracle check: exit $rc (dump kept in $T/dump.failed)"
	fi
	summary=$(tail -n 1 "$T/check.out")

	checked=
	if ((round % 10 == 0)); then
		for db in "$D"/*.edb; do
			if [ ! -e "$db" ]; then
				fail "no database in $D"
			fi
			limited "$STORE" check "$db" >"$T/check-db.out" 2>&1
			rc=$?
			if [ "$rc" -ne 0 ]; then
				show "$T/check-db.out"
				fail "amber-store check $db: exit $rc"
			fi
		done
		checked=", databases checked"
	fi

	passed=$((passed + 1))
	echo "round $round/$ROUNDS: $threads threads, killed after ${delay}s: $summary$checked"
done

# the workload must have done something: the last instance's oracle holds
# acknowledged transactions
if ! grep -q '^ack ' "$O"; then
	fail "no transaction was ever acknowledged in $O"
fi

echo "crash test: $passed rounds passed, $failed failed in $((SECONDS - total_start)) s (seed $SEED)"
if [ "${CRASH_KEEP:-0}" != 1 ]; then
	keep=0
fi
exit 0
