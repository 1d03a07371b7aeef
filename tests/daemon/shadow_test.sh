#!/usr/bin/env bash
# shadow_test.sh BINDIR btrfs|xfs - run by with_fs.sh (AMB_TEST_BTRFS or
# AMB_TEST_XFS is the mount point of a fresh loop filesystem).
#
# Issue 3, "must show": a persistent shadow taken while
# `amber-store serve --load` runs, exposed and copied out, recovers to a
# state that the oracle accepts and that holds every transaction
# acknowledged before the request; the store keeps committing afterwards.
# Also: the shadow is listed (text and --json) and survives an amberd
# restart, the exposure is read-only/nosuid/nodev, a second set requested
# while one is in creation is refused as busy (exit 3), delete by exposed
# path removes it, and the events of the sequence are logged with their IDs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=daemon_lib.sh
. "$here/daemon_lib.sh"

d_init "${1:?usage: shadow_test.sh BINDIR btrfs|xfs}"
fs=${2:?}
case $fs in
btrfs) MNT=${AMB_TEST_BTRFS:?} ; want_provider=btrfs ;;
xfs) MNT=${AMB_TEST_XFS:?} ; want_provider=reflink ;;
*) fail "unknown filesystem $fs" ;;
esac

# the volume: a btrfs subvolume, or a directory tree on xfs
VOL=$MNT/vol
if [ "$fs" = btrfs ]; then
	btrfs -q subvolume create "$VOL" || fail "btrfs subvolume create"
else
	mkdir "$VOL"
fi
"$STORE" create "$VOL/store" >/dev/null || fail "amber-store create"

d_start_amberd
ORACLE=$DW/oracle
d_start_serve "$VOL/store" 200 "$ORACLE"
d_wait_acks "$ORACLE" 20 20000 >/dev/null || fail "serve is not committing"

# a second set while the first is in creation: amberd stalls the first
# after prepare-snapshot (before the hold, so that the stall can be long
# enough for a second CLI on a slow machine: a stall after freeze must fit
# in the hold), and the second is asked for once amberd has logged it
d_stop_amberd
AMBERD_ENV="AMBERD_TEST_STALL=prepare-snapshot:5000" d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again after amberd restarted"
"$AMBER" create shadow "$VOL" >"$DW/first.out" 2>&1 &
first=$!
D_PIDS+=("$first")
d_wait_for 20000 grep -q 'test hook: stalling 5000 ms after prepare-snapshot' "$DW/amberd.log" ||
	fail "the first set never reached amberd's stall: $(cat "$DW/first.out")"
"$AMBER" create shadow "$VOL" >"$DW/second.out" 2>&1
rc=$?
[ $rc = 3 ] || fail "a second concurrent set: exit $rc, expected 3 (busy): $(cat "$DW/second.out")"
grep -qi busy "$DW/second.out" || fail "the busy refusal does not say busy"
wait "$first" || fail "the first set failed: $(cat "$DW/first.out")"
ok "a second set during creation is refused with exit 3 (busy)"

# a provider that cannot serve the volume is refused as bad input (exit 2).
# (That the writers are not told first is not checked here: the store
# under load rolls its 1 MiB logs by itself, so its generations cannot
# show a roll for the refused set.)
if [ "$fs" = xfs ]; then
	"$AMBER" create shadow "$VOL" --provider btrfs >"$DW/wrongprov.out" 2>&1
	rc=$?
	[ $rc = 2 ] || fail "--provider btrfs on xfs: exit $rc, expected 2: $(cat "$DW/wrongprov.out")"
	ok "a provider that cannot serve the volume: exit 2"
fi
d_stop_amberd
AMBERD_ENV="" d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
# the volatile shadow of the first create went with the amberd that made it
[ -z "$(d_shadow_ids)" ] || fail "a volatile shadow survived an amberd restart"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "volatile shadow left on disk: $(d_shadow_dirs "$MNT")"
ok "volatile shadows are removed when amberd restarts"

# A btrfs shadow's sidecar is written without fsync and made durable by the
# presync's syncfs (docs/providers.md): a power cut before that can leave
# it empty, with no snapshot made from it.  amberd killed while the set is
# in creation, the sidecar emptied as such a cut may leave it: when amberd
# starts again it removes the record and the sidecar (event 3011).
if [ "$fs" = btrfs ]; then
	d_stop_amberd
	AMBERD_ENV="AMBERD_TEST_STALL=prepare-snapshot:30000" d_start_amberd
	d_wait_writer amber-store 10 || fail "serve did not register again"
	mark=$(wc -l <"$DW/amberd.log")
	"$AMBER" create shadow "$VOL" >"$DW/cut.out" 2>&1 &
	req=$!
	D_PIDS+=("$req")
	d_wait_for 20000 grep -q 'test hook: stalling 30000 ms after prepare-snapshot' "$DW/amberd.log" ||
		fail "the set never reached amberd's stall: $(cat "$DW/cut.out")"
	sides=$(ls "$MNT"/.amber-shadows/*.amber-shadow 2>/dev/null)
	[ "$(echo "$sides" | grep -c .)" = 1 ] || fail "expected one sidecar, found: [$sides]"
	[ -z "$(d_shadow_dirs "$MNT")" ] || fail "a snapshot exists before the freeze"
	kill -9 "$AMBERD_PID"
	wait "$AMBERD_PID" 2>/dev/null
	AMBERD_PID=""
	wait "$req" && fail "the set succeeded although amberd was killed"
	: >"$sides"
	AMBERD_ENV="" d_start_amberd
	d_wait_writer amber-store 10 || fail "serve did not register again"
	[ ! -e "$sides" ] || fail "the empty sidecar $sides was left behind"
	[ -z "$(d_shadow_ids)" ] || fail "a shadow is listed: $(d_shadow_ids)"
	grep -q '"shadows": \[\]' "$DW/state/shadows.json" ||
		fail "the registry still has a record: $(cat "$DW/state/shadows.json")"
	tail -n +"$((mark + 1))" "$DW/amberd.log" | has 'event 3011 ' ||
		fail "no event 3011 for the removed record"
	ok "an emptied sidecar of an unfinished btrfs set is removed when amberd starts again"

	# with the presync off amberd fsyncs the sidecar itself (amb_provider_settle)
	d_stop_amberd
	AMBERD_ENV="" d_start_amberd "presync = no"
	d_wait_writer amber-store 10 || fail "serve did not register again"
	id=$("$AMBER" create shadow "$VOL" --persistent 2>"$DW/nopresync.err") ||
		fail "a set with presync = no: $(cat "$DW/nopresync.err")"
	grep -q 'state committed' "$MNT/.amber-shadows/$id.amber-shadow" ||
		fail "presync = no: the sidecar of $id is not committed"
	"$AMBER" delete shadows --shadow "$id" >/dev/null || fail "cannot delete $id"
	d_stop_amberd
	AMBERD_ENV="" d_start_amberd
	d_wait_writer amber-store 10 || fail "serve did not register again"
	ok "with presync = no a btrfs set is made (its sidecar fsynced instead)"

	# a sidecar that cannot be made durable (its fsync fails: amberd's test
	# hook AMBERD_TEST_FAIL=settle, since a real fsync cannot be made to
	# fail here) fails the set before any writer is frozen: the requestor
	# is told why, nothing of the shadow is left, and the next set works
	d_stop_amberd
	AMBERD_ENV="AMBERD_TEST_FAIL=settle" d_start_amberd "presync = no"
	d_wait_writer amber-store 10 || fail "serve did not register again"
	mark=$(wc -l <"$DW/amberd.log")
	if "$AMBER" create shadow "$VOL" --persistent >"$DW/settle.out" 2>&1; then
		fail "a set succeeded although its sidecar could not be made durable"
	else
		rc=$?
	fi
	[ "$rc" = 1 ] || fail "a failed settle: exit $rc, expected 1: $(cat "$DW/settle.out")"
	grep -q 'sidecar cannot be made durable: Input/output error' "$DW/settle.out" ||
		fail "the requestor was not told why: $(cat "$DW/settle.out")"
	tail -n +"$((mark + 1))" "$DW/amberd.log" | has 'test hook: failing settle' ||
		fail "the hook did not fire: the set failed for another reason"
	tail -n +"$((mark + 1))" "$DW/amberd.log" | has 'event 2007 ' &&
		fail "a writer was frozen although the set failed before the freeze"
	tail -n +"$((mark + 1))" "$DW/amberd.log" | has 'event 1014 ' ||
		fail "no event 1014 (set aborted on a failure)"
	[ -z "$(d_shadow_ids)" ] || fail "a shadow is listed after a failed settle: $(d_shadow_ids)"
	[ -z "$(ls "$MNT"/.amber-shadows/*.amber-shadow 2>/dev/null)" ] ||
		fail "a sidecar was left: $(ls "$MNT"/.amber-shadows/)"
	[ -z "$(d_shadow_dirs "$MNT")" ] || fail "a snapshot was made: $(d_shadow_dirs "$MNT")"
	grep -q '"shadows": \[\]' "$DW/state/shadows.json" ||
		fail "the registry still has a record: $(cat "$DW/state/shadows.json")"
	d_stop_amberd
	AMBERD_ENV="" d_start_amberd
	d_wait_writer amber-store 10 || fail "serve did not register again"
	id=$("$AMBER" create shadow "$VOL" --persistent 2>"$DW/after.err") ||
		fail "the set after a failed settle: $(cat "$DW/after.err")"
	"$AMBER" delete shadows --shadow "$id" >/dev/null || fail "cannot delete $id"
	ok "a sidecar that cannot be made durable fails the set cleanly (exit 1, nothing left)"
fi

# session-close is answered before the set's volatile shadows are deleted
# (a btrfs deletion waits for a transaction commit; the requestor need not):
# with the deletion stalled, the requestor has returned while its shadow is
# still listed; amberd killed in that window leaks nothing.  amberd logs the
# stall after it has sent the answer, so the line may come a little after
# the requestor returns; the stall is long (amberd is killed in it, so it
# costs nothing) so that the checks below surely fall inside it.
d_stop_amberd
AMBERD_ENV="AMBERD_TEST_STALL=close:30000" d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
mark=$(wc -l <"$DW/amberd.log")
"$TREQ" --socket "$AMBER_SOCKET" "$VOL" >"$DW/treq.out" 2>&1 ||
	fail "requestor: $(cat "$DW/treq.out")"
sid=$(awk '$1 == "shadow" { print $2; exit }' "$DW/treq.out")
[ -n "$sid" ] || fail "the requestor printed no shadow: $(cat "$DW/treq.out")"
d_wait_for 10000 grep -q 'test hook: stalling 30000 ms after close' "$DW/amberd.log" ||
	fail "the requestor returned but amberd never reached the close stall"
d_shadow_ids | has "$sid" || fail "the volatile shadow was deleted before the requestor got its answer"
kill -9 "$AMBERD_PID"
wait "$AMBERD_PID" 2>/dev/null
AMBERD_PID=""
# (the kill came inside the stall: the session never got to its end, where
# its shadow is deleted (3002) and the session closed (1002))
tail -n +"$((mark + 1))" "$DW/amberd.log" | has -E 'event (1002|3002) ' &&
	fail "amberd ended the session before it was killed: the kill missed the close stall"
AMBERD_ENV="" d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
[ -z "$(d_shadow_ids)" ] || fail "the volatile shadow survived amberd's death during the close: $(d_shadow_ids)"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "volatile shadow left on disk: $(d_shadow_dirs "$MNT")"
"$TREQ" --socket "$AMBER_SOCKET" "$VOL" >"$DW/treq.out" 2>&1 ||
	fail "requestor: $(cat "$DW/treq.out")"
d_no_shadows 20000 || fail "the volatile shadow of a closed session was not deleted"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "volatile shadow left on disk: $(d_shadow_dirs "$MNT")"
ok "session-close answers first, then deletes the volatile shadows (none leaked when amberd dies between)"

# amber events --follow sees the sequence as it happens
"$AMBER" events --follow --json >"$DW/follow.out" 2>&1 &
follow=$!
D_PIDS+=("$follow")
sleep 0.2

# the shadow: everything acknowledged before this point must be in it
cut=$(stat -c %s "$ORACLE")
acks_before=$(d_acks "$ORACLE")
id=$("$AMBER" create shadow "$VOL" --persistent 2>"$DW/create.err")
rc=$?
[ $rc = 0 ] || fail "amber create shadow: exit $rc: $(cat "$DW/create.err")"
[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
	fail "create shadow printed '$id', not a shadow id"
ok "persistent shadow $id created under load ($acks_before acks before the request)"

list=$("$AMBER" list shadows)
grep -q "$id" <<<"$list" || fail "the shadow is not listed"
grep -q "Provider: '$want_provider'" <<<"$list" || fail "provider is not $want_provider: $list"
"$AMBER" list shadows --json | has "\"$id\"" || fail "the shadow is not in --json"
for code in 1006 1007 1008 1009 1010 2007 2008 3001; do
	grep -q "event $code " "$DW/amberd.log" || fail "event $code was not logged"
done
"$AMBER" events --json | has '"code": *1010' || fail "amber events lacks event 1010"
d_wait_for 10000 grep -q '"code": *1010' "$DW/follow.out" || fail "amber events --follow did not see event 1010"
kill -INT "$follow"
wait "$follow"
rc=$?
[ $rc = 0 ] || fail "amber events --follow exited $rc on SIGINT"
ok "listed (text, --json) with provider $want_provider; events 1006-1010, 2007, 2008, 3001 logged and followed"

# the store keeps committing afterwards
n=$(d_acks "$ORACLE")
d_wait_acks "$ORACLE" "$n" 3000 >/dev/null || fail "the store stopped committing after the shadow"
ok "the store keeps committing after the shadow"

# amberd restart: the persistent shadow stays
d_stop_amberd
d_start_amberd
d_shadow_ids | has "$id" || fail "the persistent shadow is gone after an amberd restart"
d_wait_writer amber-store 10 || fail "serve did not register again"
ok "the persistent shadow survives an amberd restart; the writer registered again"

# expose read-only, copy out
EXP=$DW/exposed
"$AMBER" expose "$id" "$EXP" || fail "amber expose"
opts=$(awk -v m="$EXP" '$2 == m { print $4 }' /proc/self/mounts)
for o in ro nosuid nodev; do
	grep -qw "$o" <<<"${opts//,/ }" || fail "exposed without $o ($opts)"
done
touch "$EXP/store/x" 2>/dev/null && fail "the exposed shadow is writable"
"$AMBER" list shadows | has "Exposed at: $EXP" || fail "exposure not listed"
cp -a "$EXP/store" "$DW/copy" || fail "copying out of the shadow"
ok "exposed read-only,nosuid,nodev at $EXP and copied out"

# the copy recovers to a state the oracle accepts
"$STORE" dump "$DW/copy" >"$DW/dump" 2>"$DW/dump.err" || fail "dump of the copy: $(cat "$DW/dump.err")"
"$OCHECK" --acks-before "$cut" "$ORACLE" "$DW/dump" >"$DW/check.out" 2>&1 ||
	fail "oracle check of the shadow: $(tail -5 "$DW/check.out")"
ok "the copy recovers; oracle: $(tail -1 "$DW/check.out")"

# delete by exposed path: unmounted and gone
"$AMBER" delete shadows --exposed "$EXP" >"$DW/del.out" 2>&1 || fail "delete shadows --exposed: $(cat "$DW/del.out")"
grep -q "$id" "$DW/del.out" || fail "delete did not print the id"
awk -v m="$EXP" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts &&
	fail "still mounted after delete"
[ -z "$(d_shadow_ids)" ] || fail "still listed after delete"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "shadow data left after delete: $(d_shadow_dirs "$MNT")"
ok "delete shadows --exposed unmounts and removes it"

kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
rc=$?
[ $rc = 0 ] || fail "serve exited $rc"
"$STORE" check "$VOL/store/$(ls "$VOL/store" | grep -m1 '\.edb$')" >/dev/null || fail "check of the live store"
echo "PASS"
