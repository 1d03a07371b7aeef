#!/usr/bin/env bash
# nocow_test.sh BINDIR - run by with_fs.sh (AMB_TEST_BTRFS, AMB_TEST_XFS).
#
# `amber-store create --nocow`: on btrfs the instance's files inherit the
# NOCOW attribute (lsattr shows C) and the instance works under load (serve,
# a clean shutdown, `check` of every database and of the logs, the oracle);
# the extents of its databases and of a plain instance's under the same
# load are printed (bench/ANALYSIS.md has the measurement). Refused with
# exit 2 and a message on xfs (nothing created) and over an existing
# instance (ams_create's own check, before the attribute is set: nothing
# changed); refused where DIR is a file.
set -uo pipefail
bindir=${1:?usage: nocow_test.sh BINDIR}
STORE=$bindir/src/store/tool/amber-store
OCHECK=$bindir/tests/tools/amber-oracle-check
B=${AMB_TEST_BTRFS:?}
X=${AMB_TEST_XFS:?}
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }

# DIR LABEL: serve --load 0 (as fast as it goes) for 3 s, stop cleanly,
# check every file and the oracle
load() {
	local dir=$1 label=$2
	"$STORE" serve "$dir" --load 0 --threads 2 --oracle "$dir.oracle" --no-writer --quiet \
		>"$dir.serve.log" 2>&1 &
	pid=$!
	sleep 3
	kill -TERM "$pid"
	wait "$pid" || fail "$label: serve did not stop cleanly: $(tail -3 "$dir.serve.log")"
	pid=""
	for f in "$dir"/*.edb; do
		"$STORE" check "$f" >/dev/null || fail "$label: check $f"
	done
	"$STORE" check "$dir" >/dev/null || fail "$label: check of the logs"
	"$STORE" dump "$dir" >"$dir.dump" || fail "$label: dump"
	"$OCHECK" "$dir.oracle" "$dir.dump" >"$dir.ocheck" 2>&1 ||
		fail "$label: oracle: $(tail -3 "$dir.ocheck")"
}
extents() { filefrag "$@" | awk '{ n += $(NF - 2) } END { print n }'; }

d=$B/nocow
out=$("$STORE" create "$d" --nocow 2>&1) || fail "create --nocow on btrfs: $out"
lsattr -d "$d" | awk '{ print $1 }' | grep -q C || fail "$d lacks NOCOW: $(lsattr -d "$d")"
for f in "$d"/*.edb "$d"/E00.log "$d"/E00.chk; do
	lsattr "$f" | awk '{ print $1 }' | grep -q C || fail "$f lacks NOCOW: $(lsattr "$f")"
done
ok "create --nocow on btrfs: the directory, the databases, the log and the checkpoint are NOCOW"
load "$d" nocow
for f in "$d"/E00*.log; do
	lsattr "$f" | awk '{ print $1 }' | grep -q C || fail "$f (made under load) lacks NOCOW"
done
"$STORE" create "$B/cow" >/dev/null || fail "create on btrfs"
load "$B/cow" cow
ok "a NOCOW instance under load: check and oracle pass, its new logs are NOCOW too;" \
	"database extents: NOCOW $(extents "$d"/*.edb), copy-on-write $(extents "$B/cow"/*.edb)"

# over an existing instance: refused, nothing changed
before=$(ls -l "$B/cow")
"$STORE" create "$B/cow" --nocow >"$B/again.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "create --nocow over an instance: exit $rc, expected 2"
grep -q "already holds an instance" "$B/again.out" || fail "no reason given: $(cat "$B/again.out")"
lsattr -d "$B/cow" | awk '{ print $1 }' | grep -q C && fail "the existing instance's directory became NOCOW"
[ "$(ls -l "$B/cow")" = "$before" ] || fail "the existing instance changed"
ok "create --nocow over an existing instance: exit 2, nothing changed"

# DIR is a file: refused with the reason, the file untouched
echo data >"$B/afile"
"$STORE" create "$B/afile" --nocow >"$B/afile.out" 2>&1 && fail "create --nocow on a file succeeded"
grep -q "Not a directory" "$B/afile.out" || fail "no reason given: $(cat "$B/afile.out")"
[ "$(cat "$B/afile")" = data ] || fail "the file changed"
ok "create --nocow where DIR is a file: refused with the reason, the file untouched"

# xfs: refused, nothing created
"$STORE" create "$X/nocow" --nocow >"$X/nocow.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "create --nocow on xfs: exit $rc, expected 2"
grep -q "is for btrfs" "$X/nocow.out" || fail "no reason given: $(cat "$X/nocow.out")"
[ ! -e "$X/nocow" ] || fail "--nocow on xfs created $X/nocow"
mkdir "$X/empty"
"$STORE" create "$X/empty" --nocow >"$X/empty.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "create --nocow in an existing xfs directory: exit $rc, expected 2"
[ -z "$(ls -A "$X/empty")" ] || fail "files were created on xfs: $(ls "$X/empty")"
ok "create --nocow on xfs: exit 2 with the reason, nothing created"
