#!/usr/bin/env bash
# steady_test.sh AMBER-STORE AMBER-ORACLE-CHECK
#
# `amber-store serve --load --steady`: every transaction deletes as many
# delivered messages as it delivers, so the databases stop growing (the
# backup bench runs its load that way, so that its copies made minutes
# apart copy the same store).  On one instance:
#   1. a plain load for 3 s (the store grows: the test's baseline);
#   2. a steady load for 3 s: every acknowledged transaction after the
#      delete pool's warm-up deleted as many messages as it put (counted in
#      the oracle), and the databases grew by at most one extension step
#      (1/16 of a database, serve's first transactions find no message to
#      delete yet), far less than the bytes delivered;
#   3. `check` of every database and the logs, and the oracle (every
#      acknowledged transaction present, the deleted messages gone).
# Also: --steady without --load is accepted with a warning.
set -uo pipefail
STORE=${1:?usage: steady_test.sh AMBER-STORE AMBER-ORACLE-CHECK}
OCHECK=${2:?usage: steady_test.sh AMBER-STORE AMBER-ORACLE-CHECK}
T=$(mktemp -d "${TMPDIR:-/tmp}/amber-steady.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
dbsize() { stat -c %s "$T/i"/*.edb | awk '{ s += $1 } END { print s }'; }
# ops FIRST_SEQ: "puts dels min_value_bytes" over the transactions with
# seq >= FIRST_SEQ that were acknowledged (from the oracle's begin/ack lines)
ops() {
	awk -v first="$1" '
		$1 == "begin" && $2 >= first { p[$2] = 0; d[$2] = 0
			for (i = 3; i <= NF; i++) { if ($i ~ /^put:/) p[$2]++; else if ($i ~ /^del:/) d[$2]++ } }
		$1 == "ack" && ($2 in p) { P += p[$2]; D += d[$2] }
		END { printf "%d %d\n", P, D }' "$T/oracle"
}
lastseq() { awk '$1 == "begin" { s = $2 } END { print s + 0 }' "$T/oracle"; }
serve() { # LABEL ARGS...
	local label=$1
	shift
	"$STORE" serve "$T/i" --load 0 --threads 2 --duration 3 --oracle "$T/oracle" --no-writer \
		"$@" >"$T/$label.log" 2>&1 || fail "$label: serve failed: $(tail -3 "$T/$label.log")"
}

"$STORE" create "$T/i" >/dev/null || fail "create"
s0=$(dbsize)
serve plain
s1=$(dbsize)
read -r p1 d1 <<<"$(ops 1)"
[ "$p1" -gt 0 ] || fail "the plain load acknowledged no put"
[ "$s1" -gt "$s0" ] || fail "the plain load did not grow the databases ($s0 -> $s1 bytes)"
ok "plain load: $p1 puts, $d1 deletes; databases $s0 -> $s1 bytes"

first=$(($(lastseq) + 1))
serve steady --steady
s2=$(dbsize)
read -r p2 d2 <<<"$(ops "$first")"
[ "$p2" -gt 100 ] || fail "the steady load acknowledged only $p2 puts"
# the pool of deletable messages holds only acknowledged ones: the first
# transactions of each thread (at most WL_MAX_PUTS = 4 puts each) and those
# in flight on the two threads find fewer than they put
[ "$d2" -ge $((p2 - 32)) ] || fail "the steady load deleted $d2 messages for $p2 delivered"
[ "$d2" -le "$p2" ] || fail "the steady load deleted $d2 messages, more than the $p2 delivered"
# every message is at least 1 KiB: the bytes delivered are at least p2 KiB
step=$((s1 / 16 + 2 * 1048576))
[ $((s2 - s1)) -le "$step" ] ||
	fail "the steady load grew the databases by $((s2 - s1)) bytes (more than $step) for $p2 messages of 1-64 KiB"
[ $((p2 * 1024)) -gt $((4 * (s2 - s1))) ] ||
	fail "the steady load grew the databases by $((s2 - s1)) bytes, a quarter of the $p2 KiB delivered at least"
ok "steady load: $p2 puts, $d2 deletes; databases $s1 -> $s2 bytes (at most $step allowed)"

for f in "$T/i"/*.edb; do
	"$STORE" check "$f" >/dev/null || fail "check $f"
done
"$STORE" check "$T/i" >/dev/null || fail "check of the logs"
"$STORE" dump "$T/i" >"$T/dump" || fail "dump"
"$OCHECK" "$T/oracle" "$T/dump" >"$T/ocheck" 2>&1 || fail "oracle: $(tail -3 "$T/ocheck")"
ok "check of every database and the logs; oracle: $(tail -1 "$T/ocheck")"

out=$("$STORE" serve "$T/i" --steady --duration 0.2 --no-writer 2>&1) ||
	fail "serve --steady without --load failed: $out"
grep -q -- "--steady without --load" <<<"$out" || fail "no warning for --steady without --load: $out"
ok "--steady without --load: a warning, and serve runs"
