#!/usr/bin/env bash
# start_test.sh BINDIR - amberd's start-up error paths (no root needed):
# a bad configuration (unknown key, bad value, unknown section, missing
# --config file) exits 2 naming FILE:LINE; a damaged shadow registry exits 1
# naming the file and leaves it as it was; a second amberd on the same state
# directory or socket exits 1 while the first keeps serving; a stale socket
# file is replaced; without --foreground amberd detaches once ready; event
# sequence numbers keep increasing across restarts.
set -uo pipefail
BIN=${1:?usage: start_test.sh BINDIR}
AMBERD=$BIN/src/daemon/amberd
AMBER=$BIN/src/cli/amber
T=$(mktemp -d "${TMPDIR:-/tmp}/amberd-start.XXXXXX") || exit 1
PIDS=()
cleanup() {
	local rc=$? p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	pkill -9 -f -- "--socket $T/" 2>/dev/null
	[ "$rc" = 0 ] && rm -rf "$T" || echo "files kept in $T"
	exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
export AMBER_SOCKET=$T/sock

# expect_start WANT PATTERN CONFIG-LINES...: amberd must exit WANT, saying PATTERN
expect_start() {
	local want=$1 pattern=$2 out rc
	shift 2
	printf '%s\n' "$@" >"$T/bad.conf"
	out=$(timeout 10 "$AMBERD" --foreground --config "$T/bad.conf" --socket "$T/sock2" \
		--state-dir "$T/state2" 2>&1)
	rc=$?
	[ "$rc" = "$want" ] || fail "config [$*]: exit $rc, expected $want: $out"
	grep -q -- "$pattern" <<<"$out" || fail "config [$*]: message lacks '$pattern': $out"
}
expect_start 2 "bad.conf:3: unknown key: colour = red" "[amberd]" "hold_ms = 5" "colour = red"
expect_start 2 "bad.conf:2: bad value: hold_ms = 0" "[amberd]" "hold_ms = 0"
expect_start 2 "bad.conf:2: bad value: event_timeout_ms = 1e3" "[amberd]" "event_timeout_ms = 1e3"
expect_start 2 "bad.conf:2: bad value: presync = sometimes" "[amberd]" "presync = sometimes"
expect_start 2 "bad.conf:2: unknown section \[writers\]" "[writers]" "x = 1"
for v in "a/b" "." ".." "/" "/srv/../etc" "/srv//x" "/srv/./x" "/srv/x/" "/srv/x/.."; do
	expect_start 2 "bad.conf:2: bad value: shadow_dir = $v" "[amberd]" "shadow_dir = $v"
done
expect_start 2 "not an absolute normalized path" "[shadowstorage]" "srv/mail = 1G"
expect_start 2 "bad value: /srv = 12Q" "[shadowstorage]" "/srv = 12Q"
out=$("$AMBERD" --foreground --config "$T/none.conf" --socket "$T/sock2" 2>&1)
[ $? = 2 ] && grep -q "none.conf: No such file" <<<"$out" || fail "missing --config file: $out"
out=$("$AMBERD" --bogus 2>&1)
[ $? = 2 ] || fail "unknown option: $out"
ok "bad configurations and options exit 2 naming file and line"

# a damaged registry: exit 1, file untouched
mkdir -p "$T/state3"
printf '{"version": 1, "shadows": [ {"id": "x"' >"$T/state3/shadows.json"
sum=$(sha256sum <"$T/state3/shadows.json")
out=$(timeout 10 "$AMBERD" --foreground --socket "$T/sock3" --state-dir "$T/state3" 2>&1)
[ $? = 1 ] || fail "damaged registry: amberd started: $out"
grep -q "shadows.json" <<<"$out" || fail "damaged registry: message does not name the file: $out"
[ "$(sha256sum <"$T/state3/shadows.json")" = "$sum" ] || fail "a damaged registry was changed"
printf '{"version": 7, "shadows": []}' >"$T/state3/shadows.json"
out=$(timeout 10 "$AMBERD" --foreground --socket "$T/sock3" --state-dir "$T/state3" 2>&1)
[ $? = 1 ] && grep -q "not an amber shadow registry of version 1" <<<"$out" ||
	fail "registry of another version: $out"
printf '{"version": 1, "shadows": [{"id": "01234567-89ab-4cde-8f01-23456789abcd", "set": "s"}]}' \
	>"$T/state3/shadows.json"
out=$(timeout 10 "$AMBERD" --foreground --socket "$T/sock3" --state-dir "$T/state3" 2>&1)
[ $? = 1 ] && grep -q "shadow record 0 is damaged" <<<"$out" || fail "damaged record: $out"
ok "a damaged shadow registry stops amberd (exit 1, file named and untouched)"

# one amberd per state directory and per socket
printf '[amberd]\njournald = no\npresync = no\n' >"$T/ok.conf"
"$AMBERD" --foreground --config "$T/ok.conf" --socket "$T/sock" --state-dir "$T/state" \
	>"$T/a.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do "$AMBER" list providers >/dev/null 2>&1 && break; sleep 0.05; done
"$AMBER" list providers >/dev/null || fail "amberd did not start"
out=$(timeout 10 "$AMBERD" --foreground --config "$T/ok.conf" --socket "$T/sockB" \
	--state-dir "$T/state" 2>&1)
[ $? = 1 ] && grep -q "another amberd uses this state directory" <<<"$out" ||
	fail "second amberd on the same state directory: $out"
out=$(timeout 10 "$AMBERD" --foreground --config "$T/ok.conf" --socket "$T/sock" \
	--state-dir "$T/stateB" 2>&1)
[ $? = 1 ] && grep -q "another amberd is listening" <<<"$out" ||
	fail "second amberd on the same socket: $out"
"$AMBER" list providers >/dev/null || fail "the first amberd stopped serving"
seq1=$("$AMBER" events --json | grep -o '"seq": *[0-9]*' | grep -o '[0-9]*$' | tail -1)
kill -9 "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null
ok "a second amberd on the same state directory or socket exits 1; the first serves on"

# the socket file a killed amberd left is replaced; detached start; seq goes on
[ -S "$T/sock" ] || fail "expected the killed amberd's socket file to remain"
"$AMBERD" --config "$T/ok.conf" --socket "$T/sock" --state-dir "$T/state" ||
	fail "detached start failed"
"$AMBER" list providers >/dev/null || fail "the detached amberd does not answer at once"
seq2=$("$AMBER" events --json | grep -o '"seq": *[0-9]*' | grep -o '[0-9]*$' | head -1)
seq3=$("$AMBER" events --json --since "$seq1" | grep -o '"seq": *[0-9]*' | grep -o '[0-9]*$' | head -1)
[ -n "$seq3" ] && [ "$seq3" -gt "$seq1" ] || fail "event seq did not continue after a restart ($seq1, $seq3)"
[ "$seq2" = 1 ] || fail "the event log lost its first events ($seq2)"
pkill -TERM -f -- "--socket $T/sock --state-dir" || fail "no detached amberd to stop"
for _ in $(seq 100); do [ -S "$T/sock" ] || break; sleep 0.05; done
[ -S "$T/sock" ] && fail "amberd did not remove its socket on SIGTERM"
ok "a stale socket is replaced, --foreground-less start detaches when ready, event seq continues"
echo PASS
