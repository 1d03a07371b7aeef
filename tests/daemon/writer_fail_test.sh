#!/usr/bin/env bash
# writer_fail_test.sh BINDIR - run by with_fs.sh on xfs (AMB_TEST_XFS).
#
# Issue 3, "must show": a writer that never answers Freeze: the set is
# aborted within the hold deadline, the writer is listed as failed at
# freeze (timeout), the other writers were thawed.  Also the other failure
# classes of design.md section 3: a writer that says its writes were not
# held (the set is deleted, retryable, event 1017), a writer failing at
# prepare-snapshot (it drops out, the set goes on without it), a writer
# failing freeze non-retryably (exit 1), and `--no-writers` (no events).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=daemon_lib.sh
. "$here/daemon_lib.sh"

HOLD_MS=1500
EVENT_MS=10000
d_init "${1:?usage: writer_fail_test.sh BINDIR}"
MNT=${AMB_TEST_XFS:?}
VOL=$MNT/vol
mkdir -p "$VOL/other"
"$STORE" create "$VOL/store" >/dev/null || fail "amber-store create"
ORACLE=$DW/oracle
d_start_amberd
d_start_serve "$VOL/store" 150 "$ORACLE"

TW_PID=""
test_writer() {
	[ -n "$TW_PID" ] && { kill -TERM "$TW_PID"; wait "$TW_PID" 2>/dev/null; }
	"$TWRITER" --socket "$AMBER_SOCKET" --name bad-writer --dir "$VOL/other" "$@" \
		>"$DW/tw.out" 2>>"$DW/tw.err" &
	TW_PID=$!
	D_PIDS+=("$TW_PID")
	d_wait_writer bad-writer 10 || fail "the test writer did not register"
}

writer_json() {
	"$AMBER" list writers --json
}

# --- a writer that never answers freeze ------------------------------------
# The hold is timed from amberd's own events, not around the CLI (whose
# start-up, prepare-snapshot, precommit and presync come before the hold):
# event 1006 (snapshot-started) is logged right before Freeze is sent, 1014
# when the abort is done.  Bounded by HOLD_MS + 1 s, far below the event
# timeout (EVENT_MS), so it is the hold deadline that aborted the set.
test_writer --hang-at freeze
n0=$(d_acks "$ORACLE")
seq0=$(d_event_seq)
"$AMBER" create shadow "$VOL" >"$DW/out" 2>&1
rc=$?
[ $rc = 3 ] || fail "hang at freeze: exit $rc, expected 3: $(cat "$DW/out")"
t0=$(d_event_time 1006 "$seq0")
t1=$(d_event_time 1014 "$seq0")
[ -n "$t0" ] && [ -n "$t1" ] ||
	fail "hang at freeze: events 1006 and 1014 not both in the event log (1006 at '$t0', 1014 at '$t1')"
[ $((t1 - t0)) -le $((HOLD_MS + 1000)) ] ||
	fail "hang at freeze: the set took $((t1 - t0)) ms from freeze to abort (hold $HOLD_MS ms, event timeout $EVENT_MS ms)"
list=$("$AMBER" list writers)
grep -A4 "Writer name: 'bad-writer'" <<<"$list" | has "State: \[9\] Failed at freeze" ||
	fail "the hanging writer is not listed as failed at freeze: $list"
grep -A5 "Writer name: 'bad-writer'" <<<"$list" | has -i "timeout" ||
	fail "the hanging writer's last error is not a timeout: $list"
grep -A4 "Writer name: 'amber-store'" <<<"$list" | has "State: \[1\] Stable" ||
	fail "amber-store is not stable again: $list"
writer_json | has '"timeout"' || fail "--json lacks the timeout class"
grep -q 'event 2006 ' "$DW/amberd.log" || fail "event 2006 (writer timeout) not logged"
grep -q 'event 1014 ' "$DW/amberd.log" || fail "event 1014 (set aborted) not logged"
# (amber-store's own deadline, also HOLD_MS from the freeze, comes at about
# the same time as the abort here, so only "thawed" is checked, not by whom)
d_wait_acks "$ORACLE" "$(d_acks "$ORACLE")" 10000 >/dev/null || fail "amber-store was not thawed"
[ "$(d_acks "$ORACLE")" -gt "$n0" ] || fail "no commits"
[ -z "$(d_shadow_ids)$(d_shadow_dirs "$MNT")" ] || fail "the aborted set left a shadow"
ok "a writer hanging at freeze: aborted $((t1 - t0)) ms after the freeze (hold $HOLD_MS), listed failed at freeze (timeout), amber-store thawed"

# --- writes not held --------------------------------------------------------
test_writer --not-held
"$AMBER" create shadow "$VOL" >"$DW/out" 2>&1
rc=$?
[ $rc = 3 ] || fail "not held: exit $rc, expected 3: $(cat "$DW/out")"
grep -qi "not held" "$DW/out" || fail "not held: message does not say so: $(cat "$DW/out")"
grep -q 'event 1017 ' "$DW/amberd.log" || fail "event 1017 not logged"
[ -z "$(d_shadow_ids)$(d_shadow_dirs "$MNT")" ] || fail "a set with writes not held was kept"
ok "a writer whose writes were not held: set deleted, exit 3, event 1017"

# --- failing prepare-snapshot: drops out, the set goes on --------------------
test_writer --fail-at prepare-snapshot:retryable
id=$("$AMBER" create shadow "$VOL" 2>"$DW/err")
rc=$?
[ $rc = 0 ] || fail "fail at prepare-snapshot: exit $rc: $(cat "$DW/err")"
list=$("$AMBER" list writers)
grep -A4 "Writer name: 'bad-writer'" <<<"$list" | has "Failed at prepare snapshot" ||
	fail "not listed as failed at prepare snapshot: $list"
grep -q "event freeze" "$DW/tw.out" && fail "a writer that dropped out was frozen"
"$AMBER" delete shadows --shadow "$id" >/dev/null || fail "delete --shadow"
ok "a writer failing prepare-snapshot drops out; the set is made without it"

# --- failing freeze, non-retryable: exit 1, the store thawed ----------------
# amber-store is told to abort (which thaws a frozen writer at once, not at
# its own hold deadline) and commits again
test_writer --fail-at freeze:non-retryable
smark=$(wc -l <"$DW/serve.log")
"$AMBER" create shadow "$VOL" >"$DW/out" 2>&1
rc=$?
[ $rc = 1 ] || fail "non-retryable freeze failure: exit $rc, expected 1: $(cat "$DW/out")"
serve_aborted() { tail -n +"$((smark + 1))" "$DW/serve.log" | has "amber-store serve: abort of session"; }
d_wait_for 10000 serve_aborted || fail "amber-store was not told to abort: $(tail -n +"$((smark + 1))" "$DW/serve.log")"
d_wait_acks "$ORACLE" "$(d_acks "$ORACLE")" 10000 >/dev/null || fail "amber-store was not thawed"
ok "a non-retryable freeze failure: exit 1, other writers thawed"

# --- no writers: nobody is asked ---------------------------------------------
test_writer
d_wait_for 10000 grep -q '^registered' "$DW/tw.out" || fail "the test writer did not print 'registered'"
lines=$(wc -l <"$DW/tw.out")
id=$("$AMBER" create shadow "$VOL" --no-writers 2>"$DW/err") || fail "--no-writers: $(cat "$DW/err")"
[ "$(wc -l <"$DW/tw.out")" = "$lines" ] || fail "--no-writers still sent events"
"$AMBER" list shadows | has "without writers" || fail "--no-writers shadow not marked"
"$AMBER" delete shadows --all >/dev/null
ok "--no-writers makes a crash-consistent shadow without writer events"

# --- backup sessions (requestor API) -----------------------------------------
# a full session: verify amber-store, snapshot, backup-complete, close
"$TREQ" --type full --verify amber-store --verify bad-writer "$VOL" >"$DW/req.out" 2>&1 ||
	fail "a full backup session failed: $(cat "$DW/req.out")"
grep -q 'event 1011 ' "$DW/amberd.log" || fail "event 1011 (backup complete) not logged"
grep -q "^event backup-complete .*type=full .*data:ok" "$DW/tw.out" ||
	fail "the test writer did not get backup-complete with its component: $(tail -3 "$DW/tw.out")"
# amberd deletes a session's volatile shadows right after it answers
# session-close (docs/protocol.md): wait for it, bounded
no_shadows() { [ -z "$(d_shadow_ids)$(d_shadow_dirs "$MNT")" ]; }
d_wait_for 20000 no_shadows || fail "a closed volatile session left its shadow"
ok "a full backup session: backup-complete reaches the writers; close removes volatile shadows"
# verify of a writer that is not there fails the session at once
"$TREQ" --verify no-such-writer "$VOL" >"$DW/req.out" 2>&1
[ $? = 2 ] || fail "verify of an unknown writer: $(cat "$DW/req.out")"
# the requestor drops after the snapshot: volatile shadows go, persistent stay
"$TREQ" --drop-after snapshot "$VOL" >"$DW/req.out" 2>&1 || fail "session: $(cat "$DW/req.out")"
d_wait_for 10000 grep -q 'event 1016 ' "$DW/amberd.log" || fail "event 1016 (requestor lost) not logged"
d_wait_for 20000 no_shadows || fail "a dropped volatile session left its shadow"
# the persistent shadow is checked once amberd has finished with the
# dropped session: its abort (event 1013, logged after the volatile
# shadows are removed and the writers are stable again)
mark=$(wc -l <"$DW/amberd.log")
"$TREQ" --persistent --drop-after snapshot "$VOL" >"$DW/req.out" 2>&1 || fail "session: $(cat "$DW/req.out")"
pid=$(awk '$1 == "shadow" { print $2 }' "$DW/req.out")
session_done() { tail -n +"$((mark + 1))" "$DW/amberd.log" | has 'event 1013 '; }
d_wait_for 20000 session_done || fail "amberd did not abort the dropped session (no event 1013)"
[ "$(d_shadow_ids)" = "$pid" ] || fail "a dropped session lost its persistent shadow (listed: $(d_shadow_ids))"
"$AMBER" list writers | has "State: \[1\] Stable" || fail "writers not stable after the dropped session"
"$AMBER" delete shadows --all >/dev/null
ok "a requestor that drops after the snapshot: volatile shadows go (event 1016), persistent ones stay"

# --- shadow-storage limit, delete --oldest / --set -----------------------------
d_stop_amberd
d_start_amberd "[shadowstorage]" "$VOL = 1K"
d_wait_writer amber-store 10 || fail "serve did not register again"
"$AMBER" list shadowstorage | has "$VOL" || fail "the configured limit is not listed"
a=$("$AMBER" create shadow "$VOL" --persistent) || fail "create a"
b=$("$AMBER" create shadow "$VOL" --persistent) || fail "create b"
ids=$(d_shadow_ids)
[ "$ids" = "$b" ] || fail "over the limit: expected only the newest shadow $b, listed: $ids"
grep -q "event 3005 .*$a" "$DW/amberd.log" || fail "event 3005 does not name the deleted shadow $a"
[ "$(d_shadow_dirs "$MNT")" = "$b" ] || fail "the deleted shadow's data is still on disk"
ok "the shadow-storage limit deletes the oldest shadow first (event 3005), never the newest"
d_stop_amberd
d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
c=$("$AMBER" create shadow "$VOL" --persistent) || fail "create c"
"$AMBER" delete shadows --oldest "$VOL" >"$DW/del.out" || fail "delete --oldest"
[ "$(cat "$DW/del.out")" = "$b" ] || fail "delete --oldest removed $(cat "$DW/del.out"), not $b"
set=$("$AMBER" list shadows --json | grep -o '"set": *"[0-9a-f-]*"' | grep -o '[0-9a-f-]\{36\}' | head -1)
"$AMBER" delete shadows --set "$set" >"$DW/del.out" || fail "delete --set"
[ "$(cat "$DW/del.out")" = "$c" ] || fail "delete --set removed $(cat "$DW/del.out"), not $c"
[ -z "$(d_shadow_ids)$(d_shadow_dirs "$MNT")" ] || fail "shadows left after delete --set"
"$AMBER" delete shadows --oldest "$VOL" >"$DW/del.out" 2>&1
[ $? = 2 ] || fail "delete --oldest with nothing to delete should exit 2: $(cat "$DW/del.out")"
ok "delete shadows --oldest VOLUME and --set ID"
echo "PASS"
