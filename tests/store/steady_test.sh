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
#      delete yet), less than a quarter as much per put as the plain load;
#   3. `check` of every database and the logs, and the oracle (every
#      acknowledged transaction present, the deleted messages gone);
#   4. an instance with 64 KiB log files, where serve cuts a transaction's
#      puts to fit the log: no acknowledged transaction deletes more
#      messages than it delivers (before the fix, ~130 of ~1,300 in 3 s
#      did: they deleted as many as were drawn before the cut).
# Also: --steady without --load is accepted with a warning.
set -uo pipefail
STORE=${1:?usage: steady_test.sh AMBER-STORE AMBER-ORACLE-CHECK}
OCHECK=${2:?usage: steady_test.sh AMBER-STORE AMBER-ORACLE-CHECK}
T=$(mktemp -d "${TMPDIR:-/tmp}/amber-steady.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
dbsize() { stat -c %s "$T/i"/*.edb | awk '{ s += $1 } END { print s }'; }
# ops FIRST_SEQ [ORACLE]: "puts dels over" over the transactions with seq
# >= FIRST_SEQ that were acknowledged (from the oracle's begin/ack lines);
# over: how many of them deleted more messages than they put
ops() {
	awk -v first="$1" '
		$1 == "begin" && $2 >= first { p[$2] = 0; d[$2] = 0
			for (i = 3; i <= NF; i++) { if ($i ~ /^put:/) p[$2]++; else if ($i ~ /^del:/) d[$2]++ } }
		$1 == "ack" && ($2 in p) { P += p[$2]; D += d[$2]; if (d[$2] > p[$2]) X++ }
		END { printf "%d %d %d\n", P, D, X }' "${2:-$T/i.oracle}"
}
lastseq() { awk '$1 == "begin" { s = $2 } END { print s + 0 }' "$T/i.oracle"; }
serve() { # LABEL ARGS... (on $DIR, default $T/i, oracle $DIR.oracle)
	local label=$1 dir=${DIR:-$T/i}
	shift
	"$STORE" serve "$dir" --load 0 --threads 2 --duration 3 --oracle "$dir.oracle" --no-writer \
		"$@" >"$T/$label.log" 2>&1 || fail "$label: serve failed: $(tail -3 "$T/$label.log")"
}

"$STORE" create "$T/i" >/dev/null || fail "create"
s0=$(dbsize)
serve plain
s1=$(dbsize)
read -r p1 d1 _ <<<"$(ops 1)"
[ "$p1" -gt 0 ] || fail "the plain load acknowledged no put"
[ "$s1" -gt "$s0" ] || fail "the plain load did not grow the databases ($s0 -> $s1 bytes)"
ok "plain load: $p1 puts, $d1 deletes; databases $s0 -> $s1 bytes"

first=$(($(lastseq) + 1))
serve steady --steady
s2=$(dbsize)
read -r p2 d2 x2 <<<"$(ops "$first")"
[ "$p2" -gt 100 ] || fail "the steady load acknowledged only $p2 puts"
# the pool of deletable messages holds only acknowledged ones: the first
# transactions of each thread (at most WL_MAX_PUTS = 4 puts each) and those
# in flight on the two threads find fewer than they put
[ "$d2" -ge $((p2 - 32)) ] || fail "the steady load deleted $d2 messages for $p2 delivered"
[ "$d2" -le "$p2" ] || fail "the steady load deleted $d2 messages, more than the $p2 delivered"
[ "$x2" = 0 ] || fail "$x2 steady transactions deleted more messages than they delivered"
step=$((s1 / 16 + 2 * 1048576))
[ $((s2 - s1)) -le "$step" ] ||
	fail "the steady load grew the databases by $((s2 - s1)) bytes (more than $step) for $p2 messages of 1-64 KiB"
# and per message delivered, by less than a quarter of what the plain load
# grew them by (the databases grow in whole extension steps, so this is
# compared with the plain load's growth per put, not with the bytes
# delivered: under ASan on a slow machine the steady load delivered 6.6 MiB
# in 3 s and one 2 MiB step was taken)
[ $((4 * (s2 - s1) * p1)) -lt $(((s1 - s0) * p2)) ] ||
	fail "the steady load grew the databases by $((s2 - s1)) bytes for $p2 puts, the plain load by $((s1 - s0)) for $p1: not a quarter as much per put"
ok "steady load: $p2 puts, $d2 deletes; databases $s1 -> $s2 bytes (at most $step allowed)"

for f in "$T/i"/*.edb; do
	"$STORE" check "$f" >/dev/null || fail "check $f"
done
"$STORE" check "$T/i" >/dev/null || fail "check of the logs"
"$STORE" dump "$T/i" >"$T/dump" || fail "dump"
"$OCHECK" "$T/i.oracle" "$T/dump" >"$T/ocheck" 2>&1 || fail "oracle: $(tail -3 "$T/ocheck")"
ok "check of every database and the logs; oracle: $(tail -1 "$T/ocheck")"

# 64 KiB log files: a transaction's values are cut to 32 KiB, so many
# deliver fewer messages than they drew.  Some are also refused as too
# large for two log files (the freed pages of their deletes are logged
# too): the messages they took from the delete pool are never deleted (the
# oracle allows one delete per key), so here the deletes fall short of the
# deliveries overall; per transaction they never exceed them.
"$STORE" create "$T/small" --log-size 64K >/dev/null || fail "create --log-size 64K"
DIR=$T/small serve small --steady
read -r p3 d3 x3 <<<"$(ops 1 "$T/small.oracle")"
[ "$p3" -gt 50 ] && [ "$d3" -gt 0 ] || fail "small logs: the steady load acknowledged $p3 puts, $d3 deletes"
[ "$x3" = 0 ] || fail "small logs: $x3 transactions deleted more messages than they delivered"
"$STORE" dump "$T/small" >"$T/small.dump" || fail "small logs: dump"
"$OCHECK" "$T/small.oracle" "$T/small.dump" >"$T/small.ocheck" 2>&1 ||
	fail "small logs: oracle: $(tail -3 "$T/small.ocheck")"
ok "64 KiB log files: $p3 puts, $d3 deletes; oracle: $(tail -1 "$T/small.ocheck")"

out=$("$STORE" serve "$T/i" --steady --duration 0.2 --no-writer 2>&1) ||
	fail "serve --steady without --load failed: $out"
grep -q -- "--steady without --load" <<<"$out" || fail "no warning for --steady without --load: $out"
ok "--steady without --load: a warning, and serve runs"
